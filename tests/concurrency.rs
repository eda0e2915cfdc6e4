//! Concurrent writers on one environment: two processes (the test binary re-executing itself as
//! `concurrency_child`), and threads of one process with their own handles (and two sharing
//! one). Afterwards every reported append must read back whole and with its content, keys must
//! be unique and ordered per writer, and the table log must have dense versions.

mod support;
use support::{check_dense, log_files};

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use m1::{EnvConfig, Environment, Property, PropertyType, Record};
use serde_json::{Value, json};

/// Environment directory the child appends to; absent in the parent.
const CHILD_ENV: &str = "M1_CONC_CHILD";
/// Writer id of the child.
const WRITER_ENV: &str = "M1_CONC_WRITER";
/// Epoch ms at which children start appending, so they overlap.
const START_ENV: &str = "M1_CONC_START";
/// Name of the child test, for `--exact`.
const CHILD_TEST: &str = "concurrency_child";
/// Appends have 1..MAX_ROWS records.
const MAX_ROWS: u64 = 500;
/// Records per segment: many appends span several segments (one key reservation each).
const SEGMENT_ROWS: usize = 200;
/// Appends per child process.
const PROCESS_APPENDS: u64 = 30;
/// Appends per thread.
const THREAD_APPENDS: u64 = 15;
/// Properties of every record, in the order reads return them (after `_m1key`).
const PROPS: [&str; 9] = ["tag", "writer", "seq", "row", "total", "val", "at", "flag", "labels"];

fn schema() -> Vec<Property> {
    vec![
        Property::new("tag", PropertyType::String),
        Property::new("writer", PropertyType::Integer),
        Property::new("seq", PropertyType::Integer),
        Property::new("row", PropertyType::Integer),
        Property::new("total", PropertyType::Integer),
        Property::new("val", PropertyType::Double),
        Property::new("at", PropertyType::Date),
        Property::new("flag", PropertyType::Boolean),
        Property::new("labels", PropertyType::String).multi(),
    ]
}

fn create(dir: &str) {
    let env = Environment::create_with(dir, EnvConfig { segment_rows: SEGMENT_ROWS, shards: 3, ..Default::default() })
        .unwrap();
    env.add_properties(&schema()).unwrap();
}

fn mix(mut x: u64) -> u64 {
    // splitmix64
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Number of records of append `seq` of `writer`: a deterministic 1..MAX_ROWS.
fn append_size(writer: u64, seq: u64) -> u64 {
    1 + mix(writer.wrapping_mul(1_000_003) ^ mix(seq)) % (MAX_ROWS - 1)
}

/// Record `row` of append `seq` of `writer`. Reads return exactly this (nulls are left out,
/// dates come back as ISO-8601 UTC with milliseconds).
fn record(writer: u64, seq: u64, row: u64) -> Record {
    let total = append_size(writer, seq);
    let day = 1 + seq % 28;
    let ms = (seq * 7919 + row * 1013 + writer * 3_600_000) % 86_400_000;
    let at = format!(
        "2021-03-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000
    );
    let mut r = Record::new();
    r.insert("tag".into(), json!(format!("w{writer}-s{seq}-r{row}")));
    r.insert("writer".into(), json!(writer));
    r.insert("seq".into(), json!(seq));
    r.insert("row".into(), json!(row));
    r.insert("total".into(), json!(total));
    r.insert("val".into(), json!(seq as f64 * 0.5 + row as f64 / 1024.0 + writer as f64 * 1000.0));
    r.insert("at".into(), json!(at));
    if !row.is_multiple_of(5) {
        r.insert("flag".into(), json!((seq + row + writer).is_multiple_of(2)));
    }
    r.insert("labels".into(), json!((0..=(row % 3)).map(|j| format!("{writer}.{seq}.{row}.{j}")).collect::<Vec<_>>()));
    r
}

/// The record a read returns for `key` holding row `row` of append `seq` of `writer`.
fn expected(key: u64, writer: u64, seq: u64, row: u64) -> Record {
    let mut r = Record::new();
    r.insert("_m1key".into(), json!(key));
    r.extend(record(writer, seq, row));
    r
}

fn props() -> Vec<String> {
    PROPS.iter().map(|s| s.to_string()).collect()
}

fn int(r: &Record, name: &str) -> u64 {
    r.get(name).and_then(Value::as_u64).unwrap_or_else(|| panic!("record lacks integer '{name}': {r:?}"))
}

/// One record found in the lake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Found {
    key: u64,
    writer: u64,
    seq: u64,
    row: u64,
}

/// Reads every record with a key in `start..end`, checking each one's whole content against
/// what its writer/seq/row say it must be.
fn scan(env: &Environment, start: u64, end: u64) -> Vec<Found> {
    let mut out = Vec::new();
    for batch in env.range(start, end, Some(&props())).unwrap() {
        for r in m1::encode::records(&batch.unwrap()) {
            let f =
                Found { key: int(&r, "_m1key"), writer: int(&r, "writer"), seq: int(&r, "seq"), row: int(&r, "row") };
            assert!((start..end).contains(&f.key), "{start}..{end} gave {f:?}");
            assert_eq!(r, expected(f.key, f.writer, f.seq, f.row), "content of key {}", f.key);
            out.push(f);
        }
    }
    out
}

/// An append a writer reported as committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Reported {
    writer: u64,
    seq: u64,
    first: u64,
    last: u64,
    rows: u64,
}

/// Appends `count` appends as `writer`, calling `report` after each commit.
fn write_appends(env: &Environment, writer: u64, count: u64, mut report: impl FnMut(Reported)) {
    for seq in 0..count {
        let n = append_size(writer, seq);
        let r = env.append_json((0..n).map(|row| record(writer, seq, row))).unwrap();
        assert_eq!(r.rows, n, "{r:?}");
        assert!(r.unmapped.is_empty(), "{r:?}");
        assert_eq!(r.segments as u64, n.div_ceil(SEGMENT_ROWS as u64), "{r:?}");
        report(Reported { writer, seq, first: r.first_key.unwrap(), last: r.last_key.unwrap(), rows: n });
    }
}

/// Checks the lake and its log after concurrent writers finished with these reports.
fn check(dir: &str, reports: &[Reported]) {
    let env = Environment::open(dir).unwrap();
    let next_key = env.next_key().unwrap();
    let all = scan(&env, 0, next_key);

    // Keys are unique; next_key is above all of them.
    for w in all.windows(2) {
        assert!(w[0].key < w[1].key, "{:?} then {:?}", w[0], w[1]);
    }
    if let Some(last) = all.last() {
        assert!(next_key > last.key, "next_key {next_key}, key {}", last.key);
    }

    // Every record belongs to a reported append, and every reported append is there whole, its
    // rows in key order inside its reported range.
    let mut found: BTreeMap<(u64, u64), Vec<Found>> = BTreeMap::new();
    for f in &all {
        found.entry((f.writer, f.seq)).or_default().push(*f);
    }
    let mut by_id: BTreeMap<(u64, u64), Reported> = BTreeMap::new();
    for r in reports {
        assert!(by_id.insert((r.writer, r.seq), *r).is_none(), "reported twice: {r:?}");
        assert_eq!(r.rows, append_size(r.writer, r.seq), "{r:?}");
        assert!(r.last >= r.first && r.last - r.first + 1 >= r.rows, "{r:?}");
        assert!(r.last < next_key, "{r:?} but next_key is {next_key}");
    }
    for (id, recs) in &found {
        let r = by_id.get(id).unwrap_or_else(|| panic!("records of unreported append {id:?}"));
        assert_eq!(recs.len() as u64, r.rows, "{r:?}");
        assert_eq!((recs[0].key, recs[recs.len() - 1].key), (r.first, r.last), "{r:?}");
        for (i, f) in recs.iter().enumerate() {
            assert_eq!(f.row, i as u64, "{r:?}: {f:?}");
        }
    }
    for (id, r) in &by_id {
        assert!(found.contains_key(id), "reported append lost: {r:?}");
    }
    let rows: u64 = reports.iter().map(|r| r.rows).sum();
    assert_eq!(all.len() as u64, rows, "records in the lake");

    // Within a writer, keys grow with the sequence and reported ranges are disjoint.
    let mut per_writer: BTreeMap<u64, Vec<Reported>> = BTreeMap::new();
    for r in by_id.values() {
        per_writer.entry(r.writer).or_default().push(*r);
    }
    for list in per_writer.values() {
        for w in list.windows(2) {
            assert_eq!(w[0].seq + 1, w[1].seq);
            assert!(w[0].last < w[1].first, "{:?} then {:?}", w[0], w[1]);
        }
    }

    // Across writers, reported ranges are disjoint unless one append spans several segments:
    // keys are reserved segment by segment, so another writer's segments may fall between two
    // segments of the same append. An append's range then holds its own records plus whole
    // segments of other writers, never records of the same writer. A dense range (as many keys
    // as records) holds nobody else's record.
    let mut interleaved = 0;
    for r in by_id.values() {
        let inside = scan(&env, r.first, r.last + 1);
        let own = inside.iter().filter(|f| (f.writer, f.seq) == (r.writer, r.seq)).count() as u64;
        assert_eq!(own, r.rows, "{r:?}");
        for f in &inside {
            assert!((f.writer, f.seq) == (r.writer, r.seq) || f.writer != r.writer, "{f:?} inside the range of {r:?}");
        }
        if r.last - r.first + 1 == r.rows {
            assert_eq!(inside.len() as u64, r.rows, "{r:?}");
        } else {
            assert!(r.rows > SEGMENT_ROWS as u64, "single segment gapped: {r:?}");
            interleaved += 1;
        }
    }
    let dense: Vec<_> = by_id.values().filter(|r| r.last - r.first + 1 == r.rows).collect();
    for (i, a) in dense.iter().enumerate() {
        for b in &dense[i + 1..] {
            assert!(a.last < b.first || b.last < a.first, "{a:?} and {b:?}");
        }
    }

    // The log: versions 0..=v with none missing, and exactly the commits expected: create,
    // schema, one key reservation per segment, one commit per append.
    let (versions, checkpoints, staging) = log_files(Path::new(dir));
    assert!(staging.is_empty(), "staging files in the log without any crash: {staging:?}");
    let last = check_dense(&versions, &checkpoints);
    let state = env.engine().refresh().unwrap();
    assert_eq!(state.version, last);
    let segments = state.segments.len() as u64;
    assert_eq!(
        state.version,
        1 + segments + reports.len() as u64,
        "log versions: create, schema, {segments} reservations, {} appends",
        reports.len()
    );
    // Every segment holds keys of one append only.
    for s in &state.segments {
        let recs = scan(&env, s.start, s.end);
        assert_eq!(recs.len() as u64, s.rows(), "{s:?}");
        assert!(recs.iter().all(|f| (f.writer, f.seq) == (recs[0].writer, recs[0].seq)), "segment {s:?} mixes appends");
    }

    // Point reads agree with the ranges.
    let keys: Vec<u64> = all.iter().step_by(7).map(|f| f.key).collect();
    let got = env.get_json(&keys, Some(&props())).unwrap();
    let want: Vec<Record> = all.iter().step_by(7).map(|f| expected(f.key, f.writer, f.seq, f.row)).collect();
    assert_eq!(got, want);
    eprintln!(
        "{} appends by {} writers, {rows} records, {segments} segments, {} log versions, \
         {interleaved} appends interleaved with another writer",
        reports.len(),
        per_writer.len(),
        versions.len()
    );
}

/// The child: waits for the common start, then appends, reporting each commit on stdout.
#[test]
#[ignore = "child process of two_processes_append_concurrently; runs only when re-executed by it"]
fn concurrency_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let writer: u64 = std::env::var(WRITER_ENV).unwrap().parse().unwrap();
    let start: u128 = std::env::var(START_ENV).unwrap().parse().unwrap();
    let env = Environment::open(&dir).unwrap();
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis();
    std::thread::sleep(Duration::from_millis(start.saturating_sub(now) as u64));
    let mut out = std::io::stdout().lock();
    write_appends(&env, writer, PROCESS_APPENDS, |r| {
        out.write_all(format!("COMMITTED {} {} {} {} {}\n", r.writer, r.seq, r.first, r.last, r.rows).as_bytes())
            .unwrap();
        out.flush().unwrap();
    });
}

#[test]
fn two_processes_append_concurrently() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("env").to_str().unwrap().to_string();
    create(&dir);
    let exe = std::env::current_exe().unwrap();
    let start = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() + 500;
    let children: Vec<_> = [1u64, 2]
        .iter()
        .map(|w| {
            Command::new(&exe)
                .args(["--exact", CHILD_TEST, "--nocapture", "--include-ignored"])
                .env(CHILD_ENV, &dir)
                .env(WRITER_ENV, w.to_string())
                .env(START_ENV, start.to_string())
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut reports = Vec::new();
    for (child, writer) in children.into_iter().zip([1u64, 2]) {
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "writer {writer} failed ({}):\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let mine: Vec<Reported> = stdout
            .lines()
            .filter_map(|l| l.split_once("COMMITTED ").map(|(_, rest)| rest))
            .map(|l| {
                let v: Vec<u64> = l.split(' ').map(|x| x.parse().unwrap()).collect();
                assert_eq!(v.len(), 5, "bad line {l:?}");
                Reported { writer: v[0], seq: v[1], first: v[2], last: v[3], rows: v[4] }
            })
            .collect();
        // The child really ran: it reported every append, in order.
        assert_eq!(
            mine.iter().map(|r| (r.writer, r.seq)).collect::<Vec<_>>(),
            (0..PROCESS_APPENDS).map(|s| (writer, s)).collect::<Vec<_>>(),
            "writer {writer}:\n{stdout}"
        );
        reports.extend(mine);
    }
    check(&dir, &reports);
}

#[test]
fn threads_with_own_handles_append_concurrently() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("env").to_str().unwrap().to_string();
    create(&dir);
    // Four threads with a handle each, and two sharing one.
    let own: Vec<u64> = vec![10, 11, 12, 13];
    let shared_writers: Vec<u64> = vec![20, 21];
    let barrier = Arc::new(Barrier::new(own.len() + shared_writers.len()));
    let shared = Arc::new(Environment::open(&dir).unwrap());
    let mut handles = Vec::new();
    for &w in &own {
        let (dir, barrier) = (dir.clone(), barrier.clone());
        handles.push(std::thread::spawn(move || {
            let env = Environment::open(&dir).unwrap();
            let mut mine = Vec::new();
            barrier.wait();
            write_appends(&env, w, THREAD_APPENDS, |r| mine.push(r));
            mine
        }));
    }
    for &w in &shared_writers {
        let (env, barrier) = (shared.clone(), barrier.clone());
        handles.push(std::thread::spawn(move || {
            let mut mine = Vec::new();
            barrier.wait();
            write_appends(&env, w, THREAD_APPENDS, |r| mine.push(r));
            mine
        }));
    }
    let reports: Vec<Reported> = handles.into_iter().flat_map(|h| h.join().unwrap()).collect();
    let writers: BTreeSet<u64> = reports.iter().map(|r| r.writer).collect();
    assert_eq!(writers.len(), own.len() + shared_writers.len());
    check(&dir, &reports);
    // The shared handle sees everything too, without reopening.
    let all: u64 = reports.iter().map(|r| r.rows).sum();
    let next = shared.next_key().unwrap();
    let seen: usize = shared.range(0, next, None).unwrap().map(|b| b.unwrap().num_rows()).sum();
    assert_eq!(seen as u64, all);
}
