//! Idle suspension in a real `m1 serve` process: an environment with a loaded boost store (an
//! in-memory index) that nobody calls suspends itself, the process gives the memory back, and
//! the next request resumes it transparently.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{m1, start_server_with};

fn must(home: &Path, args: &[&str]) -> String {
    let out = m1(home).args(args).stdin(Stdio::null()).output().unwrap();
    assert!(out.status.success(), "m1 {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Resident memory of a process, in bytes (Linux).
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

fn state(home: &Path, base: &str) -> String {
    let v: serde_json::Value =
        serde_json::from_str(&must(home, &["ops", "env/get", "-env", "test-m1", "-remote", base])).unwrap();
    v["state"].as_str().unwrap().to_string()
}

#[test]
fn an_idle_environment_gives_its_memory_back_and_resumes_on_the_next_request() {
    if !Path::new("/proc/self/status").exists() {
        eprintln!("no /proc here: skipping");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (served, client) = (dir.path().join("served"), dir.path().join("client"));
    // An environment with 300,000 records and a boost store over them, made on the machine.
    must(&served, &["ops", "env/create", "-env", "test-m1"]);
    let data = dir.path().join("rows.jsonl");
    let rows: String = (0..300_000)
        .map(|i| {
            format!(
                "{{\"name\": \"user {i} of the idle test\", \"n\": {i}, \"city\": \"c{}\", \"tag\": \"t{}\"}}\n",
                i % 977,
                i % 31
            )
        })
        .collect();
    std::fs::write(&data, rows).unwrap();
    must(&served, &["test-m1", "publish", "-file", data.to_str().unwrap(), "-infer", "true"]);
    must(&served, &["test-m1", "store/create", "-store", "fast", "-type", "boost"]);
    must(&served, &["test-m1", "system", "-idle-timeout-ms", "1500"]);
    must(
        &served,
        &["ops", "env/settings", "-env", "test-m1", "-settings", r#"{"idleScaling": true, "idleTimeoutMinutes": 5}"#],
    );

    let server = start_server_with(&served, &[]);
    let base = server.base.clone();
    must(&served, &["owner", "-username", "owner", "-password", "passphrase"]);
    must(&served, &["init", "test-m1", "-username", "admin", "-password", "passphrase"]);
    must(&client, &["auth", "-remote", &base, "-username", "owner", "-password", "passphrase"]);
    must(&client, &["auth", "test-m1", "-remote", &base, "-username", "admin", "-password", "passphrase"]);
    let pid = server.pid();
    let idle_rss = rss(pid);
    // Load the boost store.
    let answer = must(&client, &["test-m1", "query", "-store", "fast", "-q", "city:c7", "-remote", &base]);
    let count: serde_json::Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(count["count"], 300_000 / 977 + 1);
    assert_eq!(state(&client, &base), "running");
    let loaded = rss(pid);
    assert!(loaded > idle_rss + (20 << 20), "the boost store should take memory: {idle_rss} -> {loaded}");

    // Nobody calls: it suspends itself.
    let start = Instant::now();
    while state(&client, &base) != "idle" {
        assert!(start.elapsed() < Duration::from_secs(20), "never went idle");
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_millis(500));
    let suspended = rss(pid);
    let held = suspended.saturating_sub(idle_rss);
    eprintln!(
        "RSS: before loading {} MB, loaded {} MB, suspended {} MB (held {} KB)",
        idle_rss >> 20,
        loaded >> 20,
        suspended >> 20,
        held >> 10
    );
    assert!(
        suspended < loaded - (loaded - idle_rss) / 2,
        "suspending gave back less than half the store's memory: {idle_rss} -> {loaded} -> {suspended}"
    );

    // The next request resumes it and answers the same.
    let again = must(&client, &["test-m1", "query", "-store", "fast", "-q", "city:c7", "-remote", &base]);
    assert_eq!(serde_json::from_str::<serde_json::Value>(&again).unwrap()["count"], count["count"]);
    assert_eq!(state(&client, &base), "running");
}
