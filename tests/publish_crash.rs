//! `/publish` is atomic under SIGKILL: a child process publishes a large generated jsonl file
//! (many segments are written before the one commit) and the parent kills it at random moments.
//! After every kill the parent reopens the environment and checks that the lake holds either none
//! or all of that publish's records (never part), in file order with contiguous keys, and that
//! the publishes committed before are intact.
//!
//! The test binary re-executes itself: `publish_crash_child` publishes when `M1_PUBLISH_CRASH_ENV`
//! names an environment, and returns at once otherwise. The same kills run on a local directory
//! and, with fewer rounds, on S3, Azure Blob and GCS servers on loopback (`support::clouds`).

mod support;
use support::Moto;
use support::clouds::{Azurite, Cloud, FakeGcs};
use support::iso;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use arrow::array::{Array, AsArray};
use arrow::datatypes::Int64Type;
use m1::{EnvConfig, Environment, Property, PropertyType, PublishRequest, Record};
use rand::Rng;
use serde_json::{Value, json};

/// Environment the child publishes into; absent in the parent.
const CHILD_ENV: &str = "M1_PUBLISH_CRASH_ENV";
/// The file the child publishes.
const FILE_ENV: &str = "M1_PUBLISH_CRASH_FILE";
/// object_store options of the environment, as JSON pairs.
const OPTIONS_ENV: &str = "M1_PUBLISH_CRASH_OPTIONS";
/// The round number the child stamps on every record (a `const` rule).
const ROUND_ENV: &str = "M1_PUBLISH_CRASH_ROUND";
/// Name of the child test, for `--exact`.
const CHILD_TEST: &str = "publish_crash_child";
/// Records of the big file.
const ROWS: u64 = 60_000;
/// Records per segment: the big publish writes ROWS / SEGMENT_ROWS segments before committing.
const SEGMENT_ROWS: usize = 5_000;
/// Kills at random moments (plus one after the publish has finished).
const RANDOM_KILLS: usize = 10;

/// How many kills to make: `$M1_KILLS` (the kill campaign, `scripts/kill-campaign`), else
/// the default for CI.
fn kills(default: usize) -> usize {
    std::env::var("M1_KILLS").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Records of the publish made before any kill.
const BASE_ROWS: u64 = 1000;

fn schema() -> Vec<Property> {
    vec![
        Property::new("round", PropertyType::Integer),
        Property::new("row", PropertyType::Integer),
        Property::new("name", PropertyType::String),
        Property::new("val", PropertyType::Double),
        Property::new("at", PropertyType::Date),
        Property::new("tags", PropertyType::String).multi(),
        Property::new("ok", PropertyType::Boolean),
    ]
}

/// Line `row` of a generated file (before the `round` rule).
fn line(row: u64) -> Value {
    json!({
        "row": row,
        "name": format!("name {row} ✓"),
        "val": row as f64 * 0.25,
        "at": 1_614_107_884_000i64 + row as i64 * 1000,
        "tags": [format!("t{}", row % 7), "all"],
        "ok": row.is_multiple_of(3),
    })
}

fn write_jsonl(path: &std::path::Path, rows: u64) {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    for row in 0..rows {
        serde_json::to_writer(&mut out, &line(row)).unwrap();
        out.write_all(b"\n").unwrap();
    }
    out.flush().unwrap();
}

fn round_rules(round: i64) -> String {
    json!([{"op": "const", "property": "round", "value": round}]).to_string()
}

/// The child: publishes the file once, reports, then waits to be killed.
#[test]
#[ignore = "child process of publish_is_atomic_under_sigkill; runs only when re-executed by it"]
fn publish_crash_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let file = std::env::var(FILE_ENV).unwrap();
    let round: i64 = std::env::var(ROUND_ENV).unwrap().parse().unwrap();
    let options: Vec<(String, String)> = serde_json::from_str(&std::env::var(OPTIONS_ENV).unwrap()).unwrap();
    let env = open(&dir, &options);
    let mut req = PublishRequest::new(file);
    req.rules = Some(round_rules(round));
    let begun = Instant::now();
    let report = env.publish(&req).unwrap();
    let mut out = std::io::stdout().lock();
    // The lake commit ends `report.lake_seconds` after the publish began; the data-store sync that
    // follows takes longer, and a kill during it finds the publish complete. The parent aims
    // its kills at the commit, so it needs both times.
    out.write_all(
        format!(
            "PUBLISHED {} {} {} {} {}\n",
            report.first_key.unwrap(),
            report.last_key.unwrap(),
            report.rows_published,
            (report.lake_seconds * 1000.0) as u64,
            begun.elapsed().as_millis()
        )
        .as_bytes(),
    )
    .unwrap();
    out.flush().unwrap();
    // The parent kills us; the limit only stops an orphaned child.
    std::thread::sleep(Duration::from_secs(120));
}

fn open(location: &str, options: &[(String, String)]) -> Environment {
    Environment::from_engine(m1_engine::Environment::open_with(location, &options.to_vec()).unwrap())
}

/// `(key, round, row)` of every record with a key in `start..end`.
fn scan(env: &Environment, start: u64, end: u64) -> Vec<(u64, i64, i64)> {
    let names = vec!["round".to_string(), "row".to_string()];
    let mut out = Vec::new();
    for batch in env.range(start, end, Some(&names)).unwrap() {
        let batch = batch.unwrap();
        let col = |i: usize| {
            let c = batch.column(i).as_primitive::<Int64Type>();
            assert_eq!(c.null_count(), 0, "null in column {i}");
            c.clone()
        };
        let (k, r, w) = (col(0), col(1), col(2));
        for i in 0..batch.num_rows() {
            out.push((k.value(i) as u64, r.value(i), w.value(i)));
        }
    }
    out
}

/// The record a read returns for row `row` of round `round` at `key`.
fn expected(key: u64, round: i64, row: u64) -> Record {
    let l = line(row);
    let mut r = Record::new();
    r.insert("_m1key".into(), json!(key));
    r.insert("round".into(), json!(round));
    r.insert("row".into(), json!(row));
    r.insert("name".into(), l["name"].clone());
    r.insert("val".into(), l["val"].clone());
    r.insert("at".into(), json!(iso(1_614_107_884_000i64 + row as i64 * 1000)));
    r.insert("tags".into(), l["tags"].clone());
    r.insert("ok".into(), l["ok"].clone());
    r
}

/// Full content of some keys of a committed publish.
fn check_content(env: &Environment, first: u64, rows: u64, round: i64, rng: &mut impl Rng) {
    let mut picks = vec![0, rows - 1];
    picks.extend((0..20).map(|_| rng.random_range(0..rows)));
    let keys: Vec<u64> = picks.iter().map(|p| first + p).collect();
    let props: Vec<String> = schema().into_iter().map(|p| p.name).collect();
    let got = env.get_json(&keys, Some(&props)).unwrap();
    assert_eq!(got.len(), keys.len(), "get of {keys:?}");
    for (g, p) in got.iter().zip(&picks) {
        assert_eq!(g, &expected(first + p, round, *p), "round {round}, row {p}");
    }
}

/// A publish known to be committed.
#[derive(Debug, Clone, Copy)]
struct Done {
    round: i64,
    first: u64,
}

/// Checks the lake after a kill during round `round`, which started when the next key was
/// `start`; `reported` is what the child printed, if it got that far. Returns the round's first
/// key if its publish is in the lake.
fn check_round(env: &Environment, round: i64, start: u64, reported: Option<(u64, u64, u64)>) -> Option<u64> {
    let next = env.next_key().unwrap();
    let found = scan(env, start, next);
    if let Some((first, last, rows)) = reported {
        assert_eq!(rows, ROWS, "round {round}: the child reported {rows} rows");
        assert_eq!(last - first + 1, ROWS, "round {round}");
        assert_eq!(found.len() as u64, ROWS, "round {round}: reported as published, {} records found", found.len());
    }
    if found.is_empty() {
        return None;
    }
    assert_eq!(
        found.len() as u64,
        ROWS,
        "round {round}: the lake holds {} of the publish's {ROWS} records — a partial publish is visible",
        found.len()
    );
    let first = found[0].0;
    for (i, &(key, r, row)) in found.iter().enumerate() {
        assert_eq!((key, r, row), (first + i as u64, round, i as i64), "round {round}: record {i}");
    }
    if let Some((f, _, _)) = reported {
        assert_eq!(f, first, "round {round}: reported first key");
    }
    Some(first)
}

/// Checks every committed publish is intact: the segment rows add up, the base publish is
/// there in full, and the committed rounds read back at their keys.
fn check_committed(env: &Environment, done: &[Done], base_first: u64, rng: &mut impl Rng) {
    let state = env.engine().snapshot();
    let rows: u64 = state.segments.iter().map(|s| s.rows()).sum();
    assert_eq!(rows, BASE_ROWS + ROWS * done.len() as u64, "committed rows; done: {done:?}");
    let base = scan(env, base_first, base_first + BASE_ROWS);
    assert_eq!(base.len() as u64, BASE_ROWS, "the base publish");
    for (i, &(key, r, row)) in base.iter().enumerate() {
        assert_eq!((key, r, row), (base_first + i as u64, -1, i as i64));
    }
    check_content(env, base_first, BASE_ROWS, -1, rng);
    for d in done {
        check_content(env, d.first, ROWS, d.round, rng);
    }
}

/// [`check_committed`] after one more base-sized publish.
fn check_committed_after(env: &Environment, done: &[Done], base_first: u64, rng: &mut impl Rng) {
    let state = env.engine().snapshot();
    let rows: u64 = state.segments.iter().map(|s| s.rows()).sum();
    assert_eq!(rows, 2 * BASE_ROWS + ROWS * done.len() as u64);
    check_content(env, base_first, BASE_ROWS, -1, rng);
    for d in done {
        check_content(env, d.first, ROWS, d.round, rng);
    }
}

#[test]
fn publish_is_atomic_under_sigkill() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("env").to_str().unwrap().to_string();
    kill_publishes(&dir, &[], tmp.path(), kills(RANDOM_KILLS));
}

/// Fewer kills on the object stores (`$M1_KILLS` still sets them): each round costs the server's
/// upload and read time, and fake-gcs-server reads slowest (a GCS round takes about 25 s here).
fn kill_publishes_on(cloud: &dyn Cloud, default_kills: usize) {
    support::scratch_home();
    cloud.create_bucket("crash");
    let tmp = tempfile::tempdir().unwrap();
    kill_publishes(&cloud.url("crash", "env"), &cloud.options(), tmp.path(), kills(default_kills));
}

#[test]
fn publish_is_atomic_under_sigkill_on_s3() {
    kill_publishes_on(&Moto::start(), 3);
}

#[test]
fn publish_is_atomic_under_sigkill_on_azure() {
    kill_publishes_on(&Azurite::start(), 3);
}

#[test]
fn publish_is_atomic_under_sigkill_on_gcs() {
    kill_publishes_on(&FakeGcs::start(), 1);
}

/// Publishes into the environment at `dir` (created here) in child processes and kills each:
/// once after its publish, then `random_kills` times at random moments.
fn kill_publishes(dir: &str, options: &[(String, String)], tmp: &std::path::Path, random_kills: usize) {
    let began = Instant::now();
    let options_json = serde_json::to_string(options).unwrap();
    let big = tmp.join("big.jsonl");
    write_jsonl(&big, ROWS);
    let base_file = tmp.join("base.jsonl");
    write_jsonl(&base_file, BASE_ROWS);
    let base_first = {
        let config = EnvConfig { segment_rows: SEGMENT_ROWS, shards: 3, ..Default::default() };
        let env =
            Environment::from_engine(m1_engine::Environment::create_with(dir, &options.to_vec(), config).unwrap());
        env.add_properties(&schema()).unwrap();
        let mut req = PublishRequest::new(base_file.to_str().unwrap());
        req.rules = Some(round_rules(-1));
        let report = env.publish(&req).unwrap();
        assert_eq!(report.rows_published, BASE_ROWS);
        report.first_key.unwrap()
    };
    let exe = std::env::current_exe().unwrap();
    let mut rng = rand::rng();
    let mut done: Vec<Done> = Vec::new();
    let mut full_publish = Duration::ZERO;
    let (mut complete, mut partial_kills) = (0usize, 0usize);

    // Round 0 waits for the child to report its publish, then kills it; later rounds kill at a
    // random moment within about the time a whole publish takes.
    for round in 0..=random_kills as i64 {
        let start = open(dir, options).next_key().unwrap();
        let spawned = Instant::now();
        let mut child = Command::new(&exe)
            .args(["--exact", CHILD_TEST, "--nocapture", "--include-ignored"])
            .env(CHILD_ENV, dir)
            .env(OPTIONS_ENV, &options_json)
            // Data stores of environments on object stores live under $M1_HOME.
            .env("M1_HOME", tmp.join("home"))
            .env(FILE_ENV, &big)
            .env(ROUND_ENV, round.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel::<String>();
        let reader = std::thread::spawn(move || {
            for l in BufReader::new(stdout).lines() {
                let Ok(l) = l else { break };
                if l.contains("PUBLISHED ") {
                    let _ = tx.send(l);
                }
            }
        });
        let mut reported = None;
        let parse = |l: String| {
            let v: Vec<u64> = l.split_once("PUBLISHED ").unwrap().1.split(' ').map(|x| x.parse().unwrap()).collect();
            (v[0], v[1], v[2], v[3], v[4])
        };
        if round == 0 {
            match rx.recv_timeout(Duration::from_secs(120)) {
                Ok(l) => reported = Some(parse(l)),
                Err(_) => {
                    let _ = child.kill();
                    let out = child.wait_with_output().unwrap();
                    panic!(
                        "the child did not report a publish within 120 s ({}):\n{}",
                        out.status,
                        String::from_utf8_lossy(&out.stderr)
                    );
                }
            }
            // Until the commit: the child's start, then the publish's lake part (what follows it,
            // the data-store sync, cannot lose the commit).
            let (.., commit_ms, publish_ms) = reported.unwrap();
            let start = spawned.elapsed().saturating_sub(Duration::from_millis(publish_ms));
            full_publish = start + Duration::from_millis(commit_ms);
            // Let it sit in its sleep a little: the kill comes well after the commit.
            std::thread::sleep(Duration::from_millis(50));
        } else {
            // The first random kill comes well before the commit, so that even a short run
            // interrupts a publish; the others anywhere up to a little after it.
            let ms = full_publish.as_millis() as u64;
            let upto = if round == 1 { ms / 2 } else { ms * 11 / 10 };
            std::thread::sleep(Duration::from_millis(rng.random_range(ms / 20..upto.max(ms / 20 + 1))));
        }
        let early = child.try_wait().unwrap();
        child.kill().unwrap();
        let status = child.wait().unwrap();
        reader.join().unwrap();
        if let Ok(l) = rx.try_recv() {
            reported = reported.or(Some(parse(l)));
        }
        if early.is_some() {
            let mut err = String::new();
            std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
            panic!("round {round}: the child exited on its own ({status}):\n{err}");
        }

        let env = open(dir, options);
        match check_round(&env, round, start, reported.map(|(f, l, r, _, _)| (f, l, r))) {
            Some(first) => {
                done.push(Done { round, first });
                complete += 1;
            }
            None => partial_kills += 1,
        }
        if round == 0 {
            assert_eq!(done.len(), 1, "the publish the child reported is in the lake");
        }
        check_committed(&env, &done, base_first, &mut rng);
        // Vacuum now and then: it must not touch committed data (killed publishes' files go).
        if round % 4 == 3 {
            env.vacuum(Duration::ZERO).unwrap();
            check_committed(&open(dir, options), &done, base_first, &mut rng);
        }
    }

    // The environment still takes publishes after all this, after every key handed out.
    let env = open(dir, options);
    let next = env.next_key().unwrap();
    let mut req = PublishRequest::new(base_file.to_str().unwrap());
    req.rules = Some(round_rules(1000));
    let report = env.publish(&req).unwrap();
    assert!(report.first_key.unwrap() >= next);
    let tail = scan(&env, next, env.next_key().unwrap());
    assert_eq!(tail.len() as u64, BASE_ROWS);
    let first = report.first_key.unwrap();
    for (i, &(key, r, row)) in tail.iter().enumerate() {
        assert_eq!((key, r, row), (first + i as u64, 1000, i as i64));
    }
    check_committed_after(&env, &done, base_first, &mut rng);
    let lake = env.engine().snapshot();
    eprintln!(
        "publish crash test ({dir}): {} kills, {complete} publishes found complete, {partial_kills} found absent, \
         a full publish of {ROWS} records took {full_publish:.1?} (child start included), {} segments; {:.1?}",
        random_kills + 1,
        lake.segments.len(),
        began.elapsed()
    );
    assert!(partial_kills > 0, "no kill interrupted a publish: the kill times do not test anything");
}
