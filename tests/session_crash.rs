//! Session updates are atomic and durable under SIGKILL: a child process applies a
//! deterministic sequence of calls (upserts, merges and deletes over a small key pool, with
//! checkpoints every few kilobytes of log) and prints `ACK n` after call `n` returns; the
//! parent kills it at random moments, reopens the store and checks that it equals the model
//! after exactly the acknowledged calls, or after one more (the call in flight may have
//! reached the disk before the kill) — never a part of a call.
//!
//! The test binary re-executes itself: `session_crash_child` works when `M1_SESSION_CRASH_DIR`
//! names a store root, and returns at once otherwise.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use m1::session::doc::merge_patch;
use m1::session::{SessionQuery, Sessions};
use rand::Rng;
use serde_json::{Value, json};

const CHILD_DIR: &str = "M1_SESSION_CRASH_DIR";
const START: &str = "M1_SESSION_CRASH_START";
const CHILD_TEST: &str = "session_crash_child";
const KILLS: usize = 8;

/// How many kills to make: `$M1_KILLS` (the kill campaign, `scripts/kill-campaign`), else
/// the default for CI.
fn kills(default: usize) -> usize {
    std::env::var("M1_KILLS").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

const KEYS: u64 = 150;

fn mix(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

/// The ops of call `n`: a deterministic mix of upserts, merges and deletes.
fn call(n: u64) -> Value {
    let key = |j: u64| format!("k{}", mix(n * 31 + j) % KEYS);
    let upserts: Vec<Value> = (0..1 + mix(n) % 8)
        .map(|j| json!({"session": {"id": key(j)}, "call": n, "j": j, "pad": "x".repeat((mix(n + j) % 300) as usize)}))
        .collect();
    let merges: Vec<Value> = (0..mix(n + 7) % 4)
        .map(|j| json!({"session": {"id": key(100 + j)}, "m": {"call": n, "j": j}, "pad": null}))
        .collect();
    let deletes: Vec<Value> = (0..mix(n + 9) % 3).map(|j| json!(key(200 + j))).collect();
    json!([{"upsert": upserts}, {"merge": merges}, {"delete": deletes}])
}

/// The store after calls `0..n`, without stamps.
fn model(n: u64) -> BTreeMap<String, Value> {
    let mut m = BTreeMap::new();
    for c in 0..n {
        let ops = call(c);
        for d in ops[0]["upsert"].as_array().unwrap() {
            m.insert(d["session"]["id"].as_str().unwrap().to_string(), d.clone());
        }
        for d in ops[1]["merge"].as_array().unwrap() {
            // The library's RFC 7386 merge: tests/session.rs checks it against its own model.
            merge_patch(m.entry(d["session"]["id"].as_str().unwrap().to_string()).or_insert_with(|| json!({})), d);
        }
        for k in ops[2]["delete"].as_array().unwrap() {
            m.remove(k.as_str().unwrap());
        }
    }
    m
}

fn unstamped(mut d: Value) -> Value {
    let m1 = d.as_object_mut().unwrap().shift_remove("_m1").expect("a stamp");
    assert!(m1["session"]["lastUpdated"].is_i64());
    d
}

/// Queries the index answers (terms, numbers, existence, AND/OR): each one's count and keys.
fn indexed_answers(s: &Sessions) -> Vec<(u64, Vec<String>)> {
    let qs = ["j:0", "j:3", "call:5 OR call:17", "m.call:*", "m.j:1 AND pad:*", "session.id:k7", "pad:x*"];
    qs.iter()
        .map(|q| {
            let r = s.query("st", &SessionQuery { rows: 10_000, ..SessionQuery::new(*q) }).unwrap();
            let keys = r.items.iter().map(|d| d["session"]["id"].as_str().unwrap().to_string()).collect();
            (r.count, keys)
        })
        .collect()
}

/// The store's documents by key, without stamps.
fn state(s: &Sessions) -> BTreeMap<String, Value> {
    let r = s.query("st", &SessionQuery { rows: 10_000, ..SessionQuery::new("*") }).unwrap();
    r.items.into_iter().map(unstamped).map(|d| (d["session"]["id"].as_str().unwrap().to_string(), d)).collect()
}

#[test]
#[ignore = "child process of session_updates_survive_sigkill; runs only when re-executed by it"]
fn session_crash_child() {
    let Ok(dir) = std::env::var(CHILD_DIR) else { return };
    let start: u64 = std::env::var(START).unwrap().parse().unwrap();
    let s = Sessions::at(dir);
    let store = s.store("st").unwrap();
    store.set_checkpoint_bytes(16 << 10);
    let mut out = std::io::stdout().lock();
    for n in start.. {
        store.update(&call(n).to_string()).unwrap();
        use std::io::Write;
        writeln!(out, "ACK {n}").unwrap();
        out.flush().unwrap();
    }
}

#[test]
fn session_updates_survive_sigkill() {
    let kills = kills(KILLS);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("sessions");
    let s = Sessions::at(&root);
    s.add("st", None, 2, 1).unwrap();
    s.close("st").unwrap();
    let mut rng = rand::rng();
    let mut done = 0u64;
    let mut checkpoints_seen = 0;
    let mut loaded_index = 0;
    for round in 0..kills {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", CHILD_TEST, "--ignored", "--nocapture", "--test-threads", "1"])
            .env(CHILD_DIR, &root)
            .env(START, done.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                // The test harness may start the first line with "test NAME ... ".
                .filter_map(|l| l.split_once("ACK ").and_then(|(_, n)| n.trim().parse::<u64>().ok()))
                .last()
        });
        std::thread::sleep(Duration::from_millis(rng.random_range(150..700)));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let acked = reader.join().unwrap();
        let acked_calls = acked.map_or(done, |n| n + 1);
        assert!(acked_calls >= done, "round {round}: acknowledgements go backwards");
        // Before any query indexes what is pending: terms here were loaded from a checkpoint.
        loaded_index += usize::from(s.store("st").unwrap().index_stats()[0] > 0);
        let got = state(&s);
        let n = if got == model(acked_calls) {
            acked_calls
        } else if got == model(acked_calls + 1) {
            acked_calls + 1
        } else {
            panic!(
                "round {round}: the store after the kill matches neither the {acked_calls} acknowledged calls nor one more \
                 ({} documents found, model has {})",
                got.len(),
                model(acked_calls).len()
            );
        };
        // Reopened from a checkpoint's saved index: exactly the answers of an index rebuilt
        // from the documents.
        let saved = indexed_answers(&s);
        s.store("st").unwrap().rebuild_index().unwrap();
        assert_eq!(indexed_answers(&s), saved, "round {round}: the saved index answers differently from a rebuilt one");
        assert!(saved[0].0 > 0 && saved[3].0 > 0, "round {round}: the queries match nothing ({saved:?})");
        checkpoints_seen += usize::from(std::fs::read_dir(root.join("st")).unwrap().any(|e| {
            let e = e.unwrap();
            e.file_name().to_string_lossy().starts_with("snap-")
                && std::fs::read(e.path()).is_ok_and(|b| b.starts_with(b"M1SESS02"))
        }));
        s.close("st").unwrap();
        eprintln!("round {round}: {n} calls durable ({acked_calls} acknowledged)");
        done = n;
    }
    assert!(done > 20, "the child made too little progress ({done} calls) to test anything");
    assert!(checkpoints_seen > 0, "no checkpoint was written during the test");
    assert!(loaded_index > 0, "no reopen loaded a saved index");
}
