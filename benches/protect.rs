//! Data-protection figures (issue 13), each beside its baseline from the same run:
//! - a backup of the 10 M-record bench lake (with its data store), in place;
//! - a deep copy of it to another file system (`/dev/shm`, so files are copied, not linked),
//!   beside `cp -r` of the same files;
//! - a new environment restored from the backup, on the same file system;
//! - a get and a range at an old version beside the same call at the current version;
//! - replication lag while flights-sized files are published one after another to a primary
//!   whose replica is a local directory.
//!
//! Run with `cargo bench --workspace --bench protect` (needs the flights file that
//! `benches/publish_compare.py` writes to `target/bench-publish/`; `M1_BENCH_ROWS` picks another
//! lake size). Figures are printed and written to `target/bench-results/m1-protect.json`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use m1::Environment;

#[path = "common/dataset.rs"]
mod dataset;
use dataset::*;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn pct(mut v: Vec<f64>, p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn du(dir: &Path) -> u64 {
    let mut total = 0;
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let m = e.metadata().unwrap();
        total += if m.is_dir() { du(&e.path()) } else { m.len() };
    }
    total
}

fn timed<T>(f: impl FnOnce() -> T) -> (f64, T) {
    let t = Instant::now();
    let out = f();
    (t.elapsed().as_secs_f64(), out)
}

fn scratch(name: &str) -> PathBuf {
    let dir = target_dir().join("bench-protect").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.parent().unwrap()).unwrap();
    dir
}

/// Calls per second of `f`, as the median microseconds of `reps` calls after a warm-up.
fn micros(reps: usize, mut f: impl FnMut(usize)) -> f64 {
    for i in 0..reps / 10 {
        f(i);
    }
    let mut v = Vec::with_capacity(reps);
    for i in 0..reps {
        let t = Instant::now();
        f(i);
        v.push(t.elapsed().as_secs_f64() * 1e6);
    }
    median(v)
}

fn main() {
    let rows = env_u64("M1_BENCH_ROWS", 10_000_000);
    let env = lake(rows);
    let dir = lake_dir(rows);
    let (index_s, _) = timed(|| env.stores().sync(env.engine()).unwrap());
    let bytes = du(&dir.join("lake")) + du(&dir.join("stores"));
    eprintln!("lake: {rows} records, {:.0} MB with its store (indexed in {index_s:.1} s)", bytes as f64 / 1e6);
    let mut out = serde_json::Map::new();
    out.insert("rows".into(), rows.into());
    out.insert("bytes".into(), bytes.into());

    // Backups in place.
    let mut made = Vec::new();
    for i in 0..5 {
        let (s, b) = timed(|| env.backup_create(Some(&format!("bench-{i}-{}", std::process::id()))).unwrap());
        made.push((s, b));
    }
    let backup_s = median(made.iter().map(|m| m.0).collect());
    for (_, b) in &made[1..] {
        env.backup_delete(&b.id).unwrap();
    }
    let backup = made[0].1.clone();
    eprintln!("backup in place: {:.3} s (median of 5)", backup_s);
    out.insert("backupSeconds".into(), backup_s.into());

    // Deep copy to another file system, beside cp -r of the same files.
    let shm = Path::new("/dev/shm/m1-bench-protect");
    let (mut ours, mut cps) = (Vec::new(), Vec::new());
    for round in 0..3 {
        let _ = std::fs::remove_dir_all(shm);
        let to = shm.join(format!("copy-{round}"));
        let (s, _) = timed(|| env.backup_copy(&backup.id, to.to_str().unwrap(), &Vec::new()).unwrap());
        ours.push(s);
        let _ = std::fs::remove_dir_all(shm);
        std::fs::create_dir_all(shm).unwrap();
        let (s, status) = timed(|| {
            std::process::Command::new("cp")
                .arg("-r")
                .arg(dir.join("lake"))
                .arg(dir.join("stores"))
                .arg(shm)
                .status()
                .unwrap()
        });
        assert!(status.success());
        cps.push(s);
    }
    let _ = std::fs::remove_dir_all(shm);
    let (copy_s, cp_s) = (median(ours), median(cps));
    eprintln!(
        "deep copy: {copy_s:.2} s ({:.0} MB/s); cp -r {cp_s:.2} s ({:.0} MB/s): {:.0}% of cp",
        bytes as f64 / 1e6 / copy_s,
        bytes as f64 / 1e6 / cp_s,
        100.0 * cp_s / copy_s
    );
    out.insert("deepCopySeconds".into(), copy_s.into());
    out.insert("cpSeconds".into(), cp_s.into());

    // A new environment from the backup, on the same file system.
    let src = env.engine().backup_source(&backup.id).unwrap();
    let mut restores = Vec::new();
    let mut restored = None;
    for round in 0..3 {
        let at = scratch(&format!("restored-{round}"));
        let (s, e) = timed(|| Environment::restore_new(&src, at.to_str().unwrap(), &Vec::new(), 0).unwrap());
        restores.push(s);
        restored = Some((e, at));
    }
    let restore_s = median(restores);
    eprintln!("restore into a new environment: {restore_s:.2} s");
    out.insert("restoreSeconds".into(), restore_s.into());
    env.backup_delete(&backup.id).unwrap();

    // Reads at an old version beside the same reads now.
    let (restored, restored_dir) = restored.unwrap();
    let old = restored.engine().snapshot().version;
    let more = generate(&batch_schema(), 0, 1000);
    restored.append_batches([more]).unwrap();
    let keys: Vec<u64> = (0..1000).map(|n| key(1, n, rows)).collect();
    let now_get = micros(2000, |i| assert_eq!(restored.get(&[keys[i % keys.len()]], None).unwrap().num_rows(), 1));
    let old_get = micros(2000, |i| {
        let b = m1_query::get_at(restored.engine(), Some(old), &[keys[i % keys.len()]], None).unwrap();
        assert_eq!(b.num_rows(), 1);
    });
    let props: Vec<String> = ["country", "age", "score"].iter().map(|s| s.to_string()).collect();
    let range_rows = |version: Option<u64>, start: u64| -> usize {
        m1_query::range_at(restored.engine(), version, start, start + 100_000, Some(&props))
            .unwrap()
            .map(|b| b.unwrap().num_rows())
            .sum()
    };
    let starts: Vec<u64> = (0..20).map(|n| key(3, n, rows - 100_001)).collect();
    let now_range = micros(40, |i| assert_eq!(range_rows(None, starts[i % 20]), 100_000));
    let old_range = micros(40, |i| assert_eq!(range_rows(Some(old), starts[i % 20]), 100_000));
    eprintln!(
        "get 1 key: now {now_get:.1} µs, old version {old_get:.1} µs ({:.2}x); range 100k keys: now {:.1} ms, old {:.1} ms ({:.2}x)",
        old_get / now_get,
        now_range / 1e3,
        old_range / 1e3,
        old_range / now_range
    );
    out.insert("getMicros".into(), serde_json::json!({"now": now_get, "old": old_get}));
    out.insert("rangeMicros".into(), serde_json::json!({"now": now_range, "old": old_range}));
    drop(restored);
    let _ = std::fs::remove_dir_all(restored_dir.parent().unwrap());

    // Replication lag while publishing flights-sized files back to back.
    let flights = target_dir().join("bench-publish/flights-v1-x4.jsonl.gz");
    if flights.exists() {
        let lag = replication_lag(&flights, env_u64("M1_BENCH_PUBLISHES", 6) as usize);
        out.insert("replicationLagSeconds".into(), lag);
    } else {
        eprintln!("skipping replication lag: {} is missing (run benches/publish_compare.py)", flights.display());
    }
    let results = target_dir().join("bench-results");
    std::fs::create_dir_all(&results).unwrap();
    std::fs::write(results.join("m1-protect.json"), serde_json::to_string_pretty(&out).unwrap()).unwrap();
}

/// Publishes `file` `times` times to a primary replicating to a local directory; returns the
/// p50, p99 and max seconds between a commit and its arrival at the replica.
fn replication_lag(file: &Path, times: usize) -> serde_json::Value {
    let (p, r) = (scratch("dr-primary"), scratch("dr-replica"));
    let env = Arc::new(Environment::create(p.to_str().unwrap()).unwrap());
    env.dr_setup(r.to_str().unwrap(), &Vec::new()).unwrap();
    Environment::replicate_in_background(&env);
    let replica = m1_engine::Storage::open(r.to_str().unwrap(), &Vec::new()).unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut seen: Vec<(u64, i64)> = Vec::new();
            let mut last = 0;
            while !done.load(Ordering::Relaxed) {
                if let Ok(Some(v)) = m1_engine::replica::version_at(&replica)
                    && v > last
                {
                    let now = chrono_ms();
                    seen.extend((last + 1..=v).map(|x| (x, now)));
                    last = v;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            seen
        })
    };
    let mut rows = 0;
    let started = Instant::now();
    for _ in 0..times {
        let mut req = m1::PublishRequest::new(file.to_str().unwrap());
        req.infer = true;
        rows += env.publish(&req).unwrap().rows_published;
    }
    let publish_s = started.elapsed().as_secs_f64();
    let newest = env.engine().snapshot().version;
    let deadline = Instant::now() + Duration::from_secs(60);
    while m1_engine::replica::version_at(&m1_engine::Storage::open(r.to_str().unwrap(), &Vec::new()).unwrap())
        .unwrap()
        .unwrap_or(0)
        < newest
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(5));
    }
    done.store(true, Ordering::Relaxed);
    let seen = watcher.join().unwrap();
    let committed: std::collections::HashMap<u64, i64> =
        env.engine().versions().unwrap().into_iter().map(|v| (v.version, v.timestamp)).collect();
    let lags: Vec<f64> =
        seen.iter().filter_map(|(v, at)| committed.get(v).map(|c| (at - c).max(0) as f64 / 1000.0)).collect();
    let (p50, p99, max) = (pct(lags.clone(), 0.5), pct(lags.clone(), 0.99), pct(lags.clone(), 1.0));
    eprintln!(
        "replication lag over {} commits ({rows} rows published in {publish_s:.1} s): p50 {p50:.3} s, p99 {p99:.3} s, max {max:.3} s",
        lags.len()
    );
    drop(env);
    serde_json::json!({"commits": lags.len(), "rows": rows, "p50": p50, "p99": p99, "max": max})
}

fn chrono_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}
