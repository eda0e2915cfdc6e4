//! `/write` with `publish` is whole under SIGKILL: a child process makes write calls of a few
//! items each (ids `w-i`) and prints `ACK w` after call `w` returns; the parent kills it at
//! random moments and checks the reopened environment: every acknowledged call is in the lake,
//! each call's items are all there or none, no item twice, no key reused; every archive file is
//! a complete zstd stream holding one call's items; and the data store, synced, counts what the
//! lake holds.
//!
//! The test binary re-executes itself: `write_crash_child` works when `M1_WRITE_CRASH_ENV`
//! names an environment, and returns at once otherwise.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use m1::{Environment, Property, PropertyType, QueryRequest, WriteOptions};
use rand::Rng;
use serde_json::{Value, json};

const CHILD_ENV: &str = "M1_WRITE_CRASH_ENV";
const START: &str = "M1_WRITE_CRASH_START";
const CHILD_TEST: &str = "write_crash_child";
const KILLS: usize = 8;

/// How many kills to make: `$M1_KILLS` (the kill campaign, `scripts/kill-campaign`), else
/// the default for CI.
fn kills(default: usize) -> usize {
    std::env::var("M1_KILLS").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Items of call `w`: 1 to 40, ids `w-i`.
fn items(w: u64) -> Vec<Value> {
    (0..1 + w * 7 % 40)
        .map(|i| json!({"id": format!("{w}-{i}"), "w": w, "i": i, "pad": "y".repeat((w % 50) as usize)}))
        .collect()
}

#[test]
#[ignore = "child process of writes_are_whole_under_sigkill; runs only when re-executed by it"]
fn write_crash_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else { return };
    let start: u64 = std::env::var(START).unwrap().parse().unwrap();
    let env = Environment::open(&dir).unwrap();
    let options = WriteOptions { publish: true, ..WriteOptions::default() };
    let mut out = std::io::stdout().lock();
    for w in start.. {
        env.write(items(w), &options).unwrap();
        writeln!(out, "ACK {w}").unwrap();
        out.flush().unwrap();
    }
}

/// The lake's items: id → (key, w).
fn lake(env: &Environment) -> BTreeMap<String, (u64, u64)> {
    let mut out = BTreeMap::new();
    for batch in env.range(0, u64::MAX, None).unwrap() {
        for r in m1::encode::records(&batch.unwrap()) {
            let id = r["id"].as_str().unwrap().to_string();
            let entry = (r["_m1key"].as_u64().unwrap(), r["w"].as_u64().unwrap());
            if let Some(other) = out.insert(id.clone(), entry) {
                panic!("item {id} is in the lake twice, at keys {} and {}", other.0, entry.0);
            }
        }
    }
    out
}

/// Every archive file: the calls whose items it holds (each must be one whole call).
fn archived_calls(root: &std::path::Path) -> Vec<u64> {
    let mut calls = Vec::new();
    let mut stack = vec![root.join("archive")];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for e in entries {
            let path = e.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            // object_store's local writes go to a staging name and are renamed: a kill can leave
            // one, which is not an archive file (and never named like one).
            if !name.ends_with(".jsonl.zst") {
                assert!(name.contains('#'), "unexpected file in the archive: {}", path.display());
                continue;
            }
            let bytes = std::fs::read(&path).unwrap();
            let text =
                zstd::decode_all(&bytes[..]).unwrap_or_else(|e| panic!("{}: not whole zstd: {e}", path.display()));
            let text = String::from_utf8(text).unwrap();
            let got: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
            let w = got[0]["w"].as_u64().unwrap();
            let mut want = items(w);
            for (g, item) in got.iter().zip(&mut want) {
                let mut g = g.clone();
                g.as_object_mut().unwrap().shift_remove("_m1");
                assert_eq!(&g, item, "{}", path.display());
            }
            assert_eq!(got.len(), want.len(), "{}: call {w} archived in part", path.display());
            calls.push(w);
        }
    }
    calls
}

#[test]
fn writes_are_whole_under_sigkill() {
    let kills = kills(KILLS);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("env");
    {
        let env = Environment::create(root.to_str().unwrap()).unwrap();
        env.add_properties(&[
            Property::new("id", PropertyType::String),
            Property::new("w", PropertyType::Integer),
            Property::new("i", PropertyType::Integer),
        ])
        .unwrap();
    }
    let mut rng = rand::rng();
    let (mut next, mut max_key) = (0u64, None::<u64>);
    for round in 0..kills {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", CHILD_TEST, "--ignored", "--nocapture", "--test-threads", "1"])
            .env(CHILD_ENV, &root)
            .env(START, next.to_string())
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
        std::thread::sleep(Duration::from_millis(rng.random_range(200..900)));
        child.kill().unwrap();
        child.wait().unwrap();
        let acked = reader.join().unwrap().map_or(next, |w| w + 1);

        let env = Environment::open(root.to_str().unwrap()).unwrap();
        let lake = lake(&env);
        let mut per_call: BTreeMap<u64, usize> = BTreeMap::new();
        for (w, _) in lake.values().map(|(k, w)| (*w, *k)) {
            *per_call.entry(w).or_default() += 1;
        }
        for (&w, &n) in &per_call {
            assert_eq!(n, items(w).len(), "round {round}: call {w} is in the lake in part");
        }
        for w in 0..acked {
            assert!(per_call.contains_key(&w), "round {round}: acknowledged call {w} is not in the lake");
        }
        // The call in flight may have committed; nothing after it can have.
        let beyond: Vec<u64> = per_call.keys().copied().filter(|&w| w > acked).collect();
        assert!(
            beyond.is_empty(),
            "round {round}: calls {beyond:?} are in the lake, but only calls up to {acked} ran (the child started at {next})"
        );
        // Keys: each call's are above every key of an earlier round.
        let round_keys: BTreeSet<u64> = lake.values().filter(|(_, w)| *w >= next).map(|(k, _)| *k).collect();
        if let (Some(&low), Some(max)) = (round_keys.first(), max_key) {
            assert!(low > max, "round {round}: key {low} reused (earlier rounds reached {max})");
        }
        max_key = lake.values().map(|(k, _)| *k).max().or(max_key);
        // Every committed call was archived first.
        let archived: BTreeSet<u64> = archived_calls(&root).into_iter().collect();
        for w in per_call.keys() {
            assert!(archived.contains(w), "round {round}: call {w} is in the lake but not in the archive");
        }
        // The data store, synced, holds what the lake holds.
        env.stores().sync(env.engine()).unwrap();
        let mut q = QueryRequest::new("index", "*:*");
        q.rows = 0;
        assert_eq!(env.query(&q).unwrap().count, lake.len() as u64, "round {round}: the store differs from the lake");
        eprintln!("round {round}: {} calls in the lake ({acked} acknowledged)", per_call.len());
        next = per_call.keys().next_back().map_or(acked, |w| w + 1).max(acked);
    }
    assert!(next > 10, "the child made too little progress ({next} calls) to test anything");
}
