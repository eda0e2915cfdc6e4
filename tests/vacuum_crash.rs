//! `vacuum` is safe under SIGKILL: a child process appends and vacuums in turn while old orphans
//! (unreferenced files, as killed writers leave them) wait in the lake, and prints `ACK n` after
//! append `n` returns; the parent kills it at random moments and checks the reopened
//! environment: every acknowledged append is readable in full (no vacuum removed a file that a
//! commit references, however far it got), and a last vacuum removes every orphan left.
//!
//! The test binary re-executes itself: `vacuum_crash_child` works when `M1_VACUUM_CRASH_ENV`
//! names an environment, and returns at once otherwise.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use m1::{EnvConfig, Environment, Property, PropertyType};
use rand::Rng;
use serde_json::json;

const CHILD_ENV: &str = "M1_VACUUM_CRASH_ENV";
const START: &str = "M1_VACUUM_CRASH_START";
const CHILD_TEST: &str = "vacuum_crash_child";
const KILLS: usize = 6;
/// Rows per append; segments hold 50, so each append writes several files.
const ROWS: u64 = 400;
/// Orphans are older than this; vacuum in the child keeps younger files (an append in flight).
const MIN_AGE: Duration = Duration::from_secs(3600);

/// How many kills to make: `$M1_KILLS` (the kill campaign, `scripts/kill-campaign`), else
/// the default for CI.
fn kills(default: usize) -> usize {
    std::env::var("M1_KILLS").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Leaves `count` unreferenced files in the lake, two hours old.
fn plant_orphans(root: &std::path::Path, round: usize, count: usize) {
    let old = SystemTime::now() - Duration::from_secs(7200);
    for i in 0..count {
        let dir = root.join(format!("lake/shard={}", i % 2));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("orphan-{round}-{i}.parquet"));
        let file = std::fs::File::create(&path).unwrap();
        (&file).write_all(&vec![b'o'; 4096]).unwrap();
        file.set_modified(old).unwrap();
    }
}

fn orphans_left(root: &std::path::Path) -> usize {
    (0..2)
        .filter_map(|s| std::fs::read_dir(root.join(format!("lake/shard={s}"))).ok())
        .flatten()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with("orphan-"))
        .count()
}

#[test]
#[ignore = "child process of vacuum_is_safe_under_sigkill; runs only when re-executed by it"]
fn vacuum_crash_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else { return };
    let start: u64 = std::env::var(START).unwrap().parse().unwrap();
    let env = Environment::open(&dir).unwrap();
    let mut out = std::io::stdout().lock();
    for n in start.. {
        env.append_json((0..ROWS).map(|i| json!({"n": n, "i": i}).as_object().unwrap().clone())).unwrap();
        writeln!(out, "ACK {n}").unwrap();
        out.flush().unwrap();
        env.vacuum(MIN_AGE).unwrap();
    }
}

#[test]
fn vacuum_is_safe_under_sigkill() {
    let kills = kills(KILLS);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("env");
    let config = EnvConfig { segment_rows: 50, shards: 2, ..EnvConfig::default() };
    let env = Environment::create_with(root.to_str().unwrap(), config).unwrap();
    env.add_properties(&[Property::new("n", PropertyType::Integer), Property::new("i", PropertyType::Integer)])
        .unwrap();
    let mut rng = rand::rng();
    let mut next = 0u64;
    let mut removed = 0usize;
    for round in 0..kills {
        plant_orphans(&root, round, 300);
        let before = orphans_left(&root);
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", CHILD_TEST, "--ignored", "--nocapture", "--test-threads", "1"])
            .env(CHILD_ENV, &root)
            .env(START, next.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<u64>();
        let reader = std::thread::spawn(move || {
            BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                // The test harness may start the first line with "test NAME ... ".
                .filter_map(|l| l.split_once("ACK ").and_then(|(_, n)| n.trim().parse::<u64>().ok()))
                .for_each(|n| {
                    let _ = tx.send(n);
                });
        });
        // The kill comes at a random moment after the child's first append of the round (its
        // vacuum follows at once), however long a cold start of the child takes on a busy
        // machine: a kill before the child got going would test nothing.
        let first = rx.recv_timeout(Duration::from_secs(120)).ok();
        if first.is_none() {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "round {round}: the child acknowledged no append ({}):\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(rng.random_range(0..700)));
        child.kill().unwrap();
        child.wait().unwrap();
        reader.join().unwrap();
        let acked = rx.try_iter().last().or(first).map_or(next, |n| n + 1);
        removed += before - orphans_left(&root);

        // Every committed append reads back whole: each referenced file is still there.
        let env = Environment::open(root.to_str().unwrap()).unwrap();
        let mut per_append = std::collections::BTreeMap::<u64, u64>::new();
        for batch in env.range(0, u64::MAX, None).unwrap() {
            let batch = batch.unwrap_or_else(|e| panic!("round {round}: a committed file is gone: {e}"));
            for r in m1::encode::records(&batch) {
                *per_append.entry(r["n"].as_u64().unwrap()).or_default() += 1;
            }
        }
        for n in 0..acked {
            assert_eq!(per_append.get(&n), Some(&ROWS), "round {round}: acknowledged append {n}");
        }
        assert!(per_append.values().all(|&c| c == ROWS), "round {round}: an append is in the lake in part");
        eprintln!("round {round}: {} appends, {} orphans left", per_append.len(), orphans_left(&root));
        next = per_append.keys().next_back().map_or(acked, |n| n + 1).max(acked);
    }
    assert!(removed > 0, "no vacuum ran before a kill: the test proved nothing");
    // A last vacuum removes every orphan, and nothing that is referenced.
    let env = Environment::open(root.to_str().unwrap()).unwrap();
    env.vacuum(MIN_AGE).unwrap();
    assert_eq!(orphans_left(&root), 0);
    let rows: usize = env.range(0, u64::MAX, None).unwrap().map(|b| b.unwrap().num_rows()).sum();
    assert_eq!(rows as u64, next * ROWS);
}
