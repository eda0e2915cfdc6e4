//! Injected storage faults (issue 11): an `object_store` wrapper that fails chosen or random calls
//! (errors, timeouts, resets, short reads, a put that lands but reports failure), under every path
//! of an environment: publish, append, commit, get, range, vacuum and data-store sync.
//!
//! What must hold: transient faults are retried through (bounded, with back-off); a permanent one
//! fails the call with a clear error and leaves the lake as it was; a call that returns `Ok` has
//! committed, and one that returns an error has not (checked against an in-memory model through a
//! second, fault-free view of the same files). Run against local files and against the S3
//! emulator (moto) the tests start.
//!
//! The wrapper is registered with `m1::register_object_store` under a
//! `faulty://NAME` location; `clean://NAME` is the same files without faults.

/// Shared with the fault tests; not in `support` because the CLI tests include that too.
#[path = "support/faulty.rs"]
mod faulty;
mod support;

use std::collections::HashMap;
use std::sync::Arc;

use m1::{Environment, Property, PropertyType, PublishRequest, Record};
use object_store::ObjectStore;
use serde_json::{Value, json};

use faulty::{Fault, Faulty, Op};

fn register(name: &str, inner: Arc<dyn ObjectStore>) -> Faulty {
    let faulty = Faulty::new(inner.clone());
    m1::register_object_store(&format!("faulty://{name}"), Arc::new(faulty.clone()));
    m1::register_object_store(&format!("clean://{name}"), inner);
    faulty
}

fn local_store(dir: &std::path::Path) -> Arc<dyn ObjectStore> {
    Arc::new(object_store::local::LocalFileSystem::new_with_prefix(dir).unwrap())
}

fn properties() -> Vec<Property> {
    vec![
        Property::new("name", PropertyType::String),
        Property::new("n", PropertyType::Integer),
        Property::new("tag", PropertyType::String),
    ]
}

fn item(i: u64) -> Record {
    json!({"name": format!("item {i}"), "n": i as i64, "tag": format!("t{}", i % 3)}).as_object().unwrap().clone()
}

/// Everything in the lake, through `env`, as (key, n) pairs in key order.
fn lake(env: &Environment) -> Vec<(u64, i64)> {
    env.engine().refresh().unwrap();
    let mut out = Vec::new();
    for batch in env.range(0, u64::MAX, None).unwrap() {
        for r in m1::encode::records(&batch.unwrap()) {
            out.push((r["_m1key"].as_u64().unwrap(), r["n"].as_i64().unwrap()));
        }
    }
    out
}

/// Reads keys 0..10 with `range`; the error as text.
fn read_range(env: &Environment) -> Result<usize, String> {
    let mut rows = 0;
    for batch in env.range(0, 10, None).map_err(|e| e.to_string())? {
        rows += batch.map_err(|e| e.to_string())?.num_rows();
    }
    Ok(rows)
}

/// A jsonl file of items `from..to`.
fn jsonl(dir: &std::path::Path, from: u64, to: u64) -> String {
    let path = dir.join(format!("items-{from}-{to}.jsonl"));
    let text: String = (from..to).map(|i| format!("{}\n", Value::Object(item(i)))).collect();
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

fn count(env: &Environment, q: &str) -> u64 {
    let mut request = m1::QueryRequest::new("index", q);
    request.rows = 0;
    env.query(&request).unwrap().count
}

/// Every kind of call fails its first two tries with a transient fault (reset, timeout, a short
/// read, a write that lands but reports failure): every path succeeds through its retries, with
/// the same answers as without faults.
fn transient_faults_are_retried(faulty: &Faulty, name: &str, files: &std::path::Path) {
    support::scratch_home();
    let env = Environment::create(&format!("faulty://{name}/env")).unwrap();
    env.add_properties(&properties()).unwrap();
    faulty.first_tries(
        2,
        vec![Fault::Reset, Fault::ShortRead, Fault::LandsButFails(true), Fault::Timeout, Fault::LandsButFails(true)],
    );
    let report = env.publish(&PublishRequest::new(jsonl(files, 0, 500))).unwrap();
    assert_eq!((report.rows_published, report.first_key, report.index_error.as_deref()), (500, Some(0), None));
    let appended = env.append_json((500..600).map(item)).unwrap();
    assert_eq!((appended.rows, appended.first_key), (100, Some(500)));
    let expected: Vec<(u64, i64)> = (0..600).map(|i| (i, i as i64)).collect();
    assert_eq!(lake(&env), expected);
    let got = env.get_json(&[599, 3, 250], None).unwrap();
    assert_eq!(got.iter().map(|r| r["n"].as_i64().unwrap()).collect::<Vec<_>>(), [599, 3, 250]);
    assert_eq!(count(&env, "tag:t1"), 200);
    // An orphan (a segment no commit references) for vacuum to remove.
    let clean = Environment::open(&format!("clean://{name}/env")).unwrap();
    clean.engine().storage().put("lake/orphan.parquet", bytes::Bytes::from_static(b"not referenced")).unwrap();
    let vacuumed = env.vacuum(std::time::Duration::ZERO).unwrap();
    assert_eq!(vacuumed.files_deleted, 1);
    // The same answers through the fault-free view, and one commit per call (no commit retried
    // at a second version because its first answer was lost).
    assert_eq!(lake(&clean), expected);
    let storage = clean.engine().storage();
    let mut adds = 0;
    for meta in storage.list("_delta_log").unwrap() {
        let rel = storage.relative(&meta.location);
        if rel.ends_with(".json") {
            let text = String::from_utf8(storage.get(&rel).unwrap().unwrap().to_vec()).unwrap();
            adds += usize::from(text.contains("{\"add\":"));
        }
    }
    assert_eq!(adds, 2, "one commit with segments for the publish, one for the append");
    for op in [Op::Put, Op::Get, Op::Head, Op::List, Op::Delete] {
        assert!(faulty.injected(op) > 0, "no fault was injected into {op:?}: the test would prove nothing");
    }
}

#[test]
fn transient_faults_on_local_files_are_retried_through() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("store")).unwrap();
    let faulty = register("transient-local", local_store(&dir.path().join("store")));
    transient_faults_are_retried(&faulty, "transient-local", dir.path());
}

#[test]
fn transient_faults_on_s3_are_retried_through() {
    let moto = support::Moto::start();
    moto.create_bucket("faults");
    let inner = m1_engine::storage::object_store_for("s3://faults", &moto.options()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let faulty = register("transient-s3", inner);
    transient_faults_are_retried(&faulty, "transient-s3", dir.path());
}

/// A permanent fault at each step fails the call with an error that says what failed, and the
/// lake is as before; once the store is healed the same call works. A commit that lands but
/// reports failure is recognised as landed: it succeeds, once.
#[test]
fn permanent_faults_fail_cleanly_and_leave_the_lake_unchanged() {
    support::scratch_home();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("store")).unwrap();
    let faulty = register("permanent", local_store(&dir.path().join("store")));
    let env = Environment::create("faulty://permanent/env").unwrap();
    env.add_properties(&properties()).unwrap();
    env.append_json((0..50).map(item)).unwrap();
    let clean = Environment::open("clean://permanent/env").unwrap();
    let mut expected: Vec<(u64, i64)> = (0..50).map(|i| (i, i as i64)).collect();

    // Each step returns the rows committed and the first key; a failed one leaves a gap in the
    // keys (they are reserved before the commit), never a reused key.
    type Step<'a> = Box<dyn Fn() -> m1::Result<(u64, u64)> + 'a>;
    let next = std::cell::Cell::new(50u64);
    let publish: Step = Box::new(|| {
        let from = next.get();
        let report = env.publish(&PublishRequest::new(jsonl(dir.path(), from, from + 30)))?;
        Ok((report.rows_published, report.first_key.unwrap()))
    });
    let append: Step = Box::new(|| {
        let from = next.get();
        let report = env.append_json((from..from + 30).map(item))?;
        Ok((report.rows, report.first_key.unwrap()))
    });
    let commit = |expected: &mut Vec<(u64, i64)>, (rows, first): (u64, u64), what: &str| {
        assert_eq!(rows, 30, "{what}");
        assert!(first >= expected.last().map_or(0, |l| l.0 + 1), "{what}: key {first} reused");
        let from = next.get();
        expected.extend((0..30).map(|j| (first + j, (from + j) as i64)));
        next.set(from + 30);
    };
    let cases: [(&str, Op, &'static str, &Step); 5] = [
        ("publish, writing a segment", Op::Put, "/lake/", &publish),
        ("publish, writing the commit", Op::Put, "_delta_log", &publish),
        ("publish, reading the log", Op::Head, "_delta_log", &publish),
        ("append, writing a segment", Op::Put, "/lake/", &append),
        ("append, writing the commit", Op::Put, "_delta_log", &append),
    ];
    for (what, op, path, step) in cases {
        faulty.chosen(op, path, 0, 1, Fault::Error);
        let err = step().expect_err(what).to_string();
        assert!(err.contains("injected Error") && err.contains("storage"), "{what}: {err}");
        faulty.heal();
        assert_eq!(lake(&clean), expected, "{what}: the lake changed");
        // Healed, the same call works.
        commit(&mut expected, step().unwrap(), what);
        assert_eq!(lake(&clean), expected, "{what}, healed");
    }

    // A commit that lands and then reports a permanent failure: read back, it is this commit, and
    // it is not made again at the next version (an append commits twice: its key reservation,
    // then its segments).
    let versions = |e: &Environment| e.engine().refresh().unwrap().version;
    let before = versions(&clean);
    faulty.chosen(Op::Put, "_delta_log", 0, 1, Fault::LandsButFails(false));
    commit(&mut expected, append().unwrap(), "a commit that lands but reports failure");
    assert_eq!((lake(&clean), versions(&clean)), (expected.clone(), before + 2));

    // Reads: a clear error, nothing changed.
    for (what, op) in [("get", Op::Get), ("range", Op::Get)] {
        let fresh = Environment::open("faulty://permanent/env").unwrap();
        faulty.chosen(op, "/lake/", 0, u32::MAX, Fault::Error);
        let err = if what == "get" {
            fresh.get_json(&[1], None).unwrap_err().to_string()
        } else {
            read_range(&fresh).unwrap_err()
        };
        assert!(err.contains("injected Error"), "{what}: {err}");
        faulty.heal();
        assert_eq!(lake(&fresh), expected, "{what}, healed");
    }

    // Vacuum: listing or deleting fails; nothing referenced is touched, and healed it finishes.
    for (what, op) in [("vacuum, listing", Op::List), ("vacuum, deleting", Op::Delete)] {
        clean.engine().storage().put("lake/orphan.parquet", bytes::Bytes::from_static(b"x")).unwrap();
        faulty.chosen(op, "lake", 0, 1, Fault::Error);
        let err = env.vacuum(std::time::Duration::ZERO).unwrap_err().to_string();
        assert!(err.contains("injected Error"), "{what}: {err}");
        faulty.heal();
        assert_eq!(lake(&clean), expected, "{what}");
        assert_eq!(env.vacuum(std::time::Duration::ZERO).unwrap().files_deleted, 1, "{what}, healed");
    }

    // Data-store sync: the publish stands and says the index could not follow; healed, the
    // store catches up with the lake.
    let before_count = count(&env, "tag:t0");
    faulty.chosen(Op::Get, "/lake/", 0, u32::MAX, Fault::Error);
    let report = env.publish(&PublishRequest::new(jsonl(dir.path(), next.get(), next.get() + 30))).unwrap();
    faulty.heal();
    let index_error = report.index_error.clone().expect("the store could not read the new segment");
    assert!(index_error.contains("injected Error"), "{index_error}");
    commit(&mut expected, (report.rows_published, report.first_key.unwrap()), "publish, syncing the store");
    assert_eq!(lake(&clean), expected);
    assert_eq!(count(&env, "tag:t0"), before_count + 10);
}

/// Random faults of every kind on every call, against a model: after each append, publish, get
/// or vacuum, an `Ok` has committed exactly what was asked and an error has committed nothing.
fn random_faults_against_a_model(faulty: &Faulty, name: &str, files: &std::path::Path, rounds: u64, seed: u64) {
    support::scratch_home();
    let env = Environment::create(&format!("faulty://{name}/env")).unwrap();
    env.add_properties(&properties()).unwrap();
    let clean = Environment::open(&format!("clean://{name}/env")).unwrap();
    let faults = vec![
        Fault::Error,
        Fault::Timeout,
        Fault::Reset,
        Fault::ShortRead,
        Fault::LandsButFails(true),
        Fault::LandsButFails(false),
    ];
    faulty.random(0.08, faults, seed);
    let mut model: HashMap<u64, i64> = HashMap::new();
    let mut next_n = 0u64;
    let (mut ok, mut failed) = (0, 0);
    for round in 0..rounds {
        let before = clean.engine().next_key().unwrap();
        let n = 10 + round % 7 * 5;
        let result = match round % 4 {
            0 => env.append_json((next_n..next_n + n).map(item)).map(|r| (r.rows, r.first_key)),
            1 => env
                .publish(&PublishRequest::new(jsonl(files, next_n, next_n + n)))
                .map(|r| (r.rows_published, r.first_key)),
            2 => {
                let result = env.get_json(&[0, before.saturating_sub(1)], None);
                if let Ok(records) = &result {
                    for r in records {
                        let key = r["_m1key"].as_u64().unwrap();
                        assert_eq!(Some(&r["n"].as_i64().unwrap()), model.get(&key), "round {round}: get {key}");
                    }
                }
                result.map(|_| (0, None))
            }
            _ => env.vacuum(std::time::Duration::ZERO).map(|_| (0, None)),
        };
        match result {
            Ok((rows, first)) if rows > 0 => {
                ok += 1;
                assert_eq!(rows, n, "round {round}");
                let first = first.unwrap();
                assert!(first >= before, "round {round}: a key was reused");
                for (k, i) in (first..first + n).zip(next_n..) {
                    model.insert(k, i as i64);
                }
                next_n += n;
            }
            Ok(_) => ok += 1,
            Err(e) => {
                failed += 1;
                let text = e.to_string();
                assert!(text.contains("injected") || text.contains("storage"), "round {round}: unclear error {text}");
            }
        }
        let mut want: Vec<(u64, i64)> = model.iter().map(|(k, v)| (*k, *v)).collect();
        want.sort_unstable();
        assert_eq!(lake(&clean), want, "round {round}: the lake differs from the model");
    }
    faulty.heal();
    assert!(ok > 0 && failed > 0, "{ok} calls succeeded and {failed} failed: the faults were too rare or too many");
    // Healed, the environment works and the store agrees with the lake.
    env.append_json((next_n..next_n + 3).map(item)).unwrap();
    let total = lake(&clean).len() as u64;
    assert_eq!(count(&env, "*:*"), total);
    eprintln!("random faults ({name}): {rounds} rounds, {ok} ok, {failed} failed");
}

#[test]
fn random_faults_on_local_files_keep_the_lake_equal_to_the_model() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("store")).unwrap();
    let faulty = register("random-local", local_store(&dir.path().join("store")));
    let rounds = std::env::var("M1_FAULT_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(60);
    random_faults_against_a_model(&faulty, "random-local", dir.path(), rounds, 11);
}

#[test]
fn random_faults_on_s3_keep_the_lake_equal_to_the_model() {
    let moto = support::Moto::start();
    moto.create_bucket("random");
    let inner = m1_engine::storage::object_store_for("s3://random", &moto.options()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let faulty = register("random-s3", inner);
    random_faults_against_a_model(&faulty, "random-s3", dir.path(), 30, 12);
}

/// The registry itself: a registered store serves its locations, a second registration of the
/// same name replaces the first, and the names do not leak into each other.
#[test]
fn registered_stores_serve_their_own_locations() {
    let a: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
    let b: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
    m1::register_object_store("custom://a", a);
    m1::register_object_store("custom://b/", b.clone());
    let env = Environment::create("custom://a/x").unwrap();
    env.add_properties(&properties()).unwrap();
    env.append_json((0..5).map(item)).unwrap();
    assert!(Environment::open("custom://b/x").is_err(), "b holds nothing");
    assert_eq!(lake(&Environment::open("CUSTOM://a/x").unwrap()).len(), 5);
    m1::register_object_store("custom://a", b);
    assert!(Environment::open("custom://a/x").is_err(), "a now names b's store");
}
