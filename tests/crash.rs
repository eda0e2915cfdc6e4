//! End-to-end crash safety: a child process appends in a loop and is killed with SIGKILL at
//! random moments; after every kill the parent reopens the environment and checks that every
//! append the child reported is there with exactly its content, that at most one unreported
//! append became visible and only as a whole, and that keys stay unique and ordered. At the end
//! a vacuum must remove exactly the segment files the killed appends left behind.
//!
//! The test binary re-executes itself: `crash_child` does the appending when `M1_CRASH_CHILD`
//! names an environment, and returns at once otherwise.

mod support;
use support::{check_dense, log_files};

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use arrow::array::{Array, AsArray};
use arrow::datatypes::Int64Type;
use m1::{EnvConfig, Environment, Property, PropertyType, Record};
use rand::Rng;
use serde_json::{Value, json};

/// Environment directory the child appends to; absent in the parent.
const CHILD_ENV: &str = "M1_CRASH_CHILD";
/// First append sequence number the child uses.
const SEQ_ENV: &str = "M1_CRASH_SEQ";
/// Name of the child test, for `--exact`.
const CHILD_TEST: &str = "crash_child";
/// The only writer of this test.
const WRITER: u64 = 0;
/// Appends have 1..MAX_ROWS records.
const MAX_ROWS: u64 = 2000;
/// Records per segment: appends above this size span several segments.
const SEGMENT_ROWS: usize = 300;
/// How many times the child is killed.
const KILLS: usize = 25;

/// How many kills to make: `$M1_KILLS` (the kill campaign, `scripts/kill-campaign`), else
/// the default for CI.
fn kills(default: usize) -> usize {
    std::env::var("M1_KILLS").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

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

/// Record `row` of append `seq` of `writer`, as the child writes it. Reads return exactly this
/// (nulls are left out, dates come back as ISO-8601 UTC with milliseconds).
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
    r.insert("val".into(), json!(seq as f64 * 0.5 + row as f64 / 1024.0 + 0.25));
    r.insert("at".into(), json!(at));
    if !row.is_multiple_of(5) {
        r.insert("flag".into(), json!((seq + row).is_multiple_of(2)));
    }
    r.insert("labels".into(), json!((0..=(row % 3)).map(|j| format!("{seq}.{row}.{j}")).collect::<Vec<_>>()));
    r
}

/// The record a read returns for `key` holding row `row` of append `seq`.
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

/// Reads every record with a key in `start..end`. With `full`, reads every property and checks
/// each record's whole content against what its writer/seq/row say it must be; otherwise reads
/// only the identifying columns.
fn scan(env: &Environment, start: u64, end: u64, full: bool) -> Vec<Found> {
    let mut out = Vec::new();
    if full {
        for batch in env.range(start, end, Some(&props())).unwrap() {
            let batch = batch.unwrap();
            for r in m1::encode::records(&batch) {
                let f = Found {
                    key: int(&r, "_m1key"),
                    writer: int(&r, "writer"),
                    seq: int(&r, "seq"),
                    row: int(&r, "row"),
                };
                assert_eq!(r, expected(f.key, f.writer, f.seq, f.row), "content of key {}", f.key);
                out.push(f);
            }
        }
    } else {
        let names: Vec<String> = ["writer", "seq", "row"].map(String::from).into();
        for batch in env.range(start, end, Some(&names)).unwrap() {
            let batch = batch.unwrap();
            let col = |i: usize| {
                let c = batch.column(i).as_primitive::<Int64Type>();
                assert_eq!(c.null_count(), 0, "null identifying column {i}");
                c.clone()
            };
            let (k, w, s, r) = (col(0), col(1), col(2), col(3));
            for i in 0..batch.num_rows() {
                out.push(Found {
                    key: k.value(i) as u64,
                    writer: w.value(i) as u64,
                    seq: s.value(i) as u64,
                    row: r.value(i) as u64,
                });
            }
        }
    }
    for f in &out {
        assert!((start..end).contains(&f.key), "range {start}..{end} returned key {}", f.key);
    }
    out
}

/// A committed append as the parent knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Append {
    first: u64,
    last: u64,
    rows: u64,
    /// The child printed COMMITTED for it (otherwise it was found in the lake after a kill).
    reported: bool,
}

/// Parses the complete `COMMITTED seq first last rows` lines of the child's output.
fn committed_lines(out: &str) -> Vec<(u64, u64, u64, u64)> {
    out.split_inclusive('\n')
        .filter(|l| l.ends_with('\n'))
        .filter_map(|l| l.trim_end().split_once("COMMITTED ").map(|(_, rest)| rest))
        .map(|l| {
            let v: Vec<u64> = l.split(' ').map(|x| x.parse().unwrap_or_else(|_| panic!("bad line {l:?}"))).collect();
            assert_eq!(v.len(), 4, "bad line {l:?}");
            (v[0], v[1], v[2], v[3])
        })
        .collect()
}

/// The child: appends forever (until killed), reporting each commit on stdout.
#[test]
#[ignore = "child process of crash_safety_under_sigkill; runs only when re-executed by it"]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let start: u64 = std::env::var(SEQ_ENV).unwrap().parse().unwrap();
    let env = Environment::open(&dir).unwrap();
    let began = Instant::now();
    let mut out = std::io::stdout().lock();
    let mut seq = start;
    // The parent kills us long before this; the limit only stops an orphaned child.
    while began.elapsed() < Duration::from_secs(60) {
        let n = append_size(WRITER, seq);
        let report = env.append_json((0..n).map(|row| record(WRITER, seq, row))).unwrap();
        let (first, last) = (report.first_key.unwrap(), report.last_key.unwrap());
        assert_eq!(report.rows, n);
        assert!(report.unmapped.is_empty(), "{report:?}");
        // A pause between commit and report, so that some kills find an append committed but
        // not reported (the one append the parent may find without a report).
        std::thread::sleep(Duration::from_millis(mix(seq) % 25));
        // One write per line so a kill can cut at most the line being written.
        out.write_all(format!("COMMITTED {seq} {first} {last} {n}\n").as_bytes()).unwrap();
        out.flush().unwrap();
        seq += 1;
    }
}

/// Every regular file under `dir`, as paths relative to `root` with `/` separators.
fn files_under(root: &Path, dir: &str) -> BTreeSet<String> {
    fn walk(root: &Path, at: &Path, out: &mut BTreeSet<String>) {
        let Ok(entries) = std::fs::read_dir(at) else {
            return;
        };
        for e in entries {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                let rel = p.strip_prefix(root).unwrap();
                let parts: Vec<_> = rel.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
                out.insert(parts.join("/"));
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(root, &root.join(dir), &mut out);
    out
}

/// Whether a file is an object-store staging file of an interrupted write (`<name>#<digits>`).
fn is_staging(path: &str) -> bool {
    path.rsplit_once('#').is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// The table log's versions must be dense after any kill; returns the staging files
/// interrupted writes left in it.
fn check_log(root: &Path, env: &Environment) -> Vec<String> {
    let (versions, checkpoints, staging) = log_files(root);
    let last = check_dense(&versions, &checkpoints);
    assert_eq!(env.engine().refresh().unwrap().version, last);
    staging
}

/// Checks the lake against every append known so far; `in_flight_seq` is the sequence number of
/// the append that was running when the child was killed, the only one that may be in the lake
/// without having been reported. Returns the seqs added to `known`.
fn check_after_kill(
    env: &Environment,
    known: &mut BTreeMap<u64, Append>,
    in_flight_seq: u64,
    full_content: bool,
) -> Vec<u64> {
    let next_key = env.next_key().unwrap();
    let all = scan(env, 0, next_key, full_content);

    // Keys are unique and come back in order.
    for w in all.windows(2) {
        assert!(w[0].key < w[1].key, "keys out of order or repeated: {:?} then {:?}", w[0], w[1]);
    }
    if let Some(last) = all.last() {
        assert!(next_key > last.key, "next_key {next_key} is not above key {}", last.key);
    }

    let mut by_seq: BTreeMap<u64, Vec<Found>> = BTreeMap::new();
    for f in &all {
        assert_eq!(f.writer, WRITER, "{f:?}");
        by_seq.entry(f.seq).or_default().push(*f);
    }

    let mut added = Vec::new();
    for (&seq, found) in &by_seq {
        let first = found[0].key;
        // Keys of one append are contiguous (a single writer reserves them back to back), and
        // row i has key first + i.
        for (i, f) in found.iter().enumerate() {
            assert_eq!((f.key, f.row), (first + i as u64, i as u64), "append {seq}: record {i} is {f:?}");
        }
        let rows = found.len() as u64;
        match known.get(&seq) {
            Some(a) => assert_eq!(
                (a.first, a.last, a.rows),
                (first, first + rows - 1, rows),
                "append {seq} changed: known {a:?}, found keys {first}..={} ",
                first + rows - 1
            ),
            None => {
                // Committed but killed before it could report: the one append in flight, and
                // all of it.
                assert_eq!(
                    seq, in_flight_seq,
                    "unreported append {seq} in the lake, but only {in_flight_seq} was in flight"
                );
                assert_eq!(
                    rows,
                    append_size(WRITER, seq),
                    "append {seq} is only partly visible: {rows} of {} records",
                    append_size(WRITER, seq)
                );
                known.insert(seq, Append { first, last: first + rows - 1, rows, reported: false });
                added.push(seq);
            }
        }
    }
    for (seq, a) in known.iter() {
        assert!(by_seq.contains_key(seq), "committed append {seq} {a:?} lost");
    }
    let expected_rows: u64 = known.values().map(|a| a.rows).sum();
    assert_eq!(all.len() as u64, expected_rows, "records in the lake");

    // Later appends have larger keys.
    let appends: Vec<_> = known.iter().collect();
    for w in appends.windows(2) {
        assert!(
            w[0].1.last < w[1].1.first,
            "append {} {:?} is not before append {} {:?}",
            w[0].0,
            w[0].1,
            w[1].0,
            w[1].1
        );
    }
    assert!(known.values().all(|a| a.last < next_key));
    added
}

/// Point reads of random committed keys and of random keys no committed append holds.
fn check_gets(env: &Environment, known: &BTreeMap<u64, Append>, rng: &mut impl Rng, n: usize) {
    let appends: Vec<_> = known.iter().map(|(s, a)| (*s, *a)).collect();
    if appends.is_empty() {
        return;
    }
    let mut keys = Vec::new();
    let mut want = Vec::new();
    for _ in 0..n {
        let (seq, a) = appends[rng.random_range(0..appends.len())];
        let row = rng.random_range(0..a.rows);
        keys.push(a.first + row);
        want.push(expected(a.first + row, WRITER, seq, row));
    }
    let got = env.get_json(&keys, Some(&props())).unwrap();
    assert_eq!(got.len(), want.len(), "get of {keys:?}");
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g, w);
    }

    // Keys reserved by killed appends were never committed: gets find nothing.
    let next_key = env.next_key().unwrap();
    let mut gaps = Vec::new();
    let mut at = 0;
    for a in known.values() {
        if at < a.first {
            gaps.push(at..a.first);
        }
        at = a.last + 1;
    }
    if at < next_key {
        gaps.push(at..next_key);
    }
    if !gaps.is_empty() {
        let keys: Vec<u64> = (0..20)
            .map(|_| {
                let gap = gaps[rng.random_range(0..gaps.len())].clone();
                rng.random_range(gap)
            })
            .collect();
        let got = env.get_json(&keys, None).unwrap();
        assert!(got.is_empty(), "uncommitted keys {keys:?} read back {got:?}");
    }
}

#[test]
fn crash_safety_under_sigkill() {
    let kills = kills(KILLS);
    let began = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("env");
    let dir = root.to_str().unwrap().to_string();
    {
        let env =
            Environment::create_with(&dir, EnvConfig { segment_rows: SEGMENT_ROWS, shards: 3, ..Default::default() })
                .unwrap();
        env.add_properties(&schema()).unwrap();
    }
    let root = std::fs::canonicalize(&root).unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut rng = rand::rng();
    let mut known: BTreeMap<u64, Append> = BTreeMap::new();
    let mut next_seq = 0u64;
    let (mut reported_total, mut unreported_total) = (0usize, 0usize);

    for round in 0..kills {
        let mut child = Command::new(&exe)
            .args(["--exact", CHILD_TEST, "--nocapture", "--include-ignored"])
            .env(CHILD_ENV, &dir)
            .env(SEQ_ENV, next_seq.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(rng.random_range(20..400)));
        let early = child.try_wait().unwrap();
        child.kill().unwrap();
        let status = child.wait().unwrap();
        let mut out = String::new();
        child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
        let mut err = String::new();
        child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
        assert!(early.is_none(), "round {round}: the child exited on its own ({status}):\n{out}\n{err}");

        let lines = committed_lines(&out);
        let mut expect_seq = next_seq;
        for &(seq, first, last, rows) in &lines {
            assert_eq!(seq, expect_seq, "round {round}: child reported out of order");
            assert_eq!(rows, append_size(WRITER, seq));
            assert_eq!(
                last - first + 1,
                rows,
                "round {round}: append {seq} reported keys {first}..={last} for {rows} rows"
            );
            known.insert(seq, Append { first, last, rows, reported: true });
            expect_seq += 1;
        }
        reported_total += lines.len();

        let env = Environment::open(&dir).unwrap();
        // Full content of the whole lake every few rounds (and at the end); ids otherwise.
        let full = round % 5 == 4;
        check_log(&root, &env);
        let added = check_after_kill(&env, &mut known, expect_seq, full);
        unreported_total += added.len();
        // Whole content of this round's appends, through `range` over each reported range.
        for &(seq, first, last, rows) in &lines {
            let found = scan(&env, first, last + 1, true);
            assert_eq!(found.len() as u64, rows, "append {seq}");
            for (i, f) in found.iter().enumerate() {
                assert_eq!((f.key, f.seq, f.row), (first + i as u64, seq, i as u64), "append {seq}");
            }
        }
        for seq in &added {
            let a = known[seq];
            assert_eq!(scan(&env, a.first, a.last + 1, true).len() as u64, a.rows);
        }
        check_gets(&env, &known, &mut rng, 100);
        next_seq = known.keys().next_back().map_or(0, |s| s + 1).max(expect_seq);
    }

    // Vacuum removes exactly the files of killed appends.
    let env = Environment::open(&dir).unwrap();
    let live: BTreeSet<String> = env.engine().snapshot().segments.iter().map(|s| s.path.clone()).collect();
    let before = files_under(&root, "lake");
    let parquet_before: BTreeSet<_> = before.iter().filter(|p| p.ends_with(".parquet")).collect();
    let other_before: Vec<_> = before.iter().filter(|p| !p.ends_with(".parquet")).collect();
    for p in &live {
        assert!(before.contains(p), "committed segment {p} has no file");
    }
    let orphans = parquet_before.len() - live.len();
    assert!(orphans > 0, "no kill left an orphan segment in {kills} rounds");
    let log_staging = files_under(&root, "_delta_log").iter().filter(|p| is_staging(p)).count();
    let vacuum = env.vacuum(Duration::ZERO).unwrap();
    let after = files_under(&root, "lake");
    let parquet_after: BTreeSet<String> = after.iter().filter(|p| p.ends_with(".parquet")).cloned().collect();
    assert_eq!(parquet_after, live, "after vacuum the lake holds exactly the committed segments");
    assert_eq!(parquet_after.len(), env.engine().snapshot().segments.len());
    assert_eq!(vacuum.files_kept, 0, "{vacuum:?}");
    assert_eq!(vacuum.files_deleted, before.len() - after.len() + log_staging, "{vacuum:?}");
    assert!(vacuum.files_deleted >= orphans, "{vacuum:?}");
    // A kill in the middle of writing a segment or a commit leaves the object store's staging
    // file (`<name>#<n>`); vacuum removes those too, so nothing but live segments remains.
    let other_after: Vec<_> = after.iter().filter(|p| !p.ends_with(".parquet")).collect();
    assert!(
        other_after.is_empty(),
        "unexpected files under lake/ after vacuum: {other_after:?} (before: {other_before:?})"
    );
    assert!(files_under(&root, "_delta_log").iter().all(|p| !is_staging(p)), "staging files left in the log");

    // Everything still reads back, with a fresh handle too.
    drop(env);
    let env = Environment::open(&dir).unwrap();
    let in_flight = known.keys().next_back().map_or(0, |s| s + 1);
    assert!(check_after_kill(&env, &mut known, in_flight, true).is_empty());
    check_gets(&env, &known, &mut rng, 300);

    // And the environment still takes appends, after every key handed out so far.
    let next = env.next_key().unwrap();
    let seq = in_flight;
    let n = append_size(WRITER, seq);
    let report = env.append_json((0..n).map(|row| record(WRITER, seq, row))).unwrap();
    assert!(report.first_key.unwrap() >= next);
    known.insert(
        seq,
        Append { first: report.first_key.unwrap(), last: report.last_key.unwrap(), rows: n, reported: true },
    );
    assert!(check_after_kill(&env, &mut known, seq + 1, true).is_empty());

    let rows: u64 = known.values().map(|a| a.rows).sum();
    eprintln!(
        "crash test: {kills} kills, {reported_total} reported appends, {unreported_total} \
         committed-but-unreported, {rows} records, {} segments, vacuum deleted {} files \
         ({orphans} orphan segments); staging files left by kills: {:?} in lake/, {log_staging:?} \
         in the log; {:.1?}",
        live.len(),
        vacuum.files_deleted,
        other_after,
        began.elapsed()
    );
    assert!(known.values().filter(|a| a.reported).count() > 0);
}
