//! Backups and restore as a user runs them: a backup taken while a publisher runs restores to
//! exactly the records of its version (checked against a model of what was committed and against
//! DuckDB over the restored lake), from the source location and from a deep copy in a second S3
//! bucket after the source was vacuumed and destroyed; session stores come back as they were;
//! bad requests change nothing.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use m1::{EnvConfig, Environment, Property, PropertyType, Record, StoreDef, StoreKind};
use serde_json::{Value, json};
use support::{Moto, run_python};

fn rec(v: Value) -> Record {
    v.as_object().expect("object").clone()
}

fn properties() -> Vec<Property> {
    vec![
        Property::new("n", PropertyType::Integer),
        Property::new("group", PropertyType::String),
        Property::new("count", PropertyType::Integer),
    ]
}

/// The record holding publish counter `n`.
fn record(n: u64) -> Value {
    let group = ["a", "b", "c"][(n % 3) as usize];
    json!({"n": n, "group": group, "count": n * 7 % 101})
}

/// What a query answers: count, a term count and a terms facet.
fn query_figures(env: &Environment) -> Value {
    let mut all = m1::QueryRequest::new("index", "*:*");
    all.facets = Some(json!({"g": {"type": "terms", "field": "group"}}));
    let answer = env.query(&all).unwrap();
    let mut buckets: Vec<(String, u64)> = answer.facets.unwrap()["g"]["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| (b["val"].as_str().unwrap().to_string(), b["count"].as_u64().unwrap()))
        .collect();
    buckets.sort();
    let b = env.query(&m1::QueryRequest::new("index", "group:b")).unwrap().count;
    json!({"count": answer.count, "b": b, "facet": buckets})
}

/// The same figures from DuckDB over the environment's Parquet files.
fn duckdb_figures(root: &std::path::Path) -> Value {
    let queries = tempfile::NamedTempFile::new().unwrap();
    let sql = json!([
        "SELECT count(*), sum(count) FROM lake",
        "SELECT count(*) FROM lake WHERE \"group\" = 'b'",
        "SELECT \"group\", count(*) FROM lake GROUP BY 1 ORDER BY 1",
    ]);
    std::fs::write(queries.path(), sql.to_string()).unwrap();
    let out = run_python(&["duckdb-sql", root.to_str().unwrap(), "SELECT 1", queries.path().to_str().unwrap()]);
    let facet: Vec<(String, u64)> = out[2]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r[0].as_str().unwrap().to_string(), r[1].as_u64().unwrap()))
        .collect();
    json!({"count": out[0][0][0], "sum": out[0][0][1], "b": out[1][0][0], "facet": facet})
}

/// Checks a restored environment holds exactly `model` (key -> publish counter).
fn check_restored(env: &Environment, root: &std::path::Path, model: &BTreeMap<u64, u64>, ctx: &str) {
    let max = model.keys().last().copied().unwrap_or(0) + 100;
    let mut keys = Vec::new();
    let mut sum = 0u64;
    for batch in env.range(0, max, None).unwrap() {
        for r in m1::encode::records(&batch.unwrap()) {
            let k = r["_m1key"].as_u64().unwrap();
            keys.push(k);
            sum += r["count"].as_u64().unwrap();
            assert_eq!(r["n"], json!(model[&k]), "{ctx}: key {k}");
        }
    }
    assert_eq!(keys, model.keys().copied().collect::<Vec<_>>(), "{ctx}: exactly the keys of the backup's version");
    let want_sum: u64 = model.values().map(|&n| n * 7 % 101).sum();
    assert_eq!(sum, want_sum, "{ctx}: checksum of count");
    // 100 sampled records by key, with every property.
    let sample: Vec<u64> = model.keys().copied().step_by((model.len() / 100).max(1)).take(100).collect();
    let got = env.get_json(&sample, None).unwrap();
    assert_eq!(got.len(), sample.len(), "{ctx}: sampled gets");
    for (k, r) in sample.iter().zip(&got) {
        let want = record(model[k]);
        for p in ["n", "group", "count"] {
            assert_eq!(r[p], want[p], "{ctx}: key {k} property {p}");
        }
    }
    let ours = query_figures(env);
    let theirs = duckdb_figures(root);
    assert_eq!(ours["count"], json!(model.len()), "{ctx}: query count");
    assert_eq!(
        (&ours["count"], &ours["b"], &ours["facet"]),
        (&theirs["count"], &theirs["b"], &theirs["facet"]),
        "{ctx}: m1 {ours} vs DuckDB {theirs}"
    );
    assert_eq!(theirs["sum"], json!(want_sum), "{ctx}: DuckDB checksum");
}

#[test]
fn a_backup_taken_while_publishing_restores_exactly_its_version() {
    support::scratch_home();
    let dir = tempfile::tempdir().unwrap();
    let src_path = dir.path().join("source");
    let config = EnvConfig { segment_rows: 40, shards: 2, ..EnvConfig::default() };
    let env = Arc::new(Environment::create_with(src_path.to_str().unwrap(), config).unwrap());
    env.add_properties(&properties()).unwrap();
    env.stores().create(env.engine(), StoreDef::new("fast", StoreKind::Boost, 2, 1)).unwrap();
    env.sessions().add("carts", None, 2, 1).unwrap();
    let upsert = |ids: std::ops::Range<u32>, tag: &str| {
        let docs: Vec<Value> = ids.map(|i| json!({"session": {"id": format!("s{i}")}, "tag": tag})).collect();
        env.sessions().update("carts", &json!([{"upsert": docs}]).to_string()).unwrap();
    };
    upsert(0..50, "before");

    // A publisher commits batches until told to stop; each report says which keys it holds.
    let stop = Arc::new(AtomicBool::new(false));
    let publisher = {
        let (env, stop) = (env.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut reports = Vec::new();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) || reports.len() < 6 {
                let batch: Vec<u64> = (n..n + 37).collect();
                n += 37;
                let report = env.append_json(batch.iter().map(|&i| rec(record(i)))).unwrap();
                let keys: Vec<u64> = report.key_ranges.iter().flat_map(|&(s, e)| s..e).collect();
                assert_eq!(keys.len(), batch.len());
                reports.push((report.version, keys.into_iter().zip(batch).collect::<Vec<_>>()));
            }
            reports
        })
    };
    while env.engine().refresh().unwrap().segments.len() < 4 {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let backup = env.backup_create(Some("while-publishing")).unwrap();
    upsert(50..60, "after");
    stop.store(true, Ordering::Relaxed);
    let reports = publisher.join().unwrap();
    let model: BTreeMap<u64, u64> =
        reports.iter().filter(|(v, _)| *v <= backup.version).flat_map(|(_, kv)| kv.iter().copied()).collect();
    assert!(
        !model.is_empty() && model.len() < reports.iter().map(|r| r.1.len()).sum::<usize>(),
        "the publisher ran on after the backup"
    );
    assert_eq!(backup.rows, model.len() as u64, "the backup's row count");
    assert_eq!((backup.key_start, backup.key_end), (model.keys().next().copied(), model.keys().last().copied()));
    assert_eq!(backup.sessions, ["carts"]);
    let store_names: Vec<&str> = backup.stores.iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(store_names, ["index", "fast"]);

    // 1. A new environment from the backup where it was taken.
    let first = dir.path().join("restored-here");
    let src = env.engine().backup_source("while-publishing").unwrap();
    let issued = env.next_key().unwrap();
    let here = Environment::restore_new(&src, first.to_str().unwrap(), &Vec::new(), issued).unwrap();
    check_restored(&here, &first, &model, "restored from the source location");
    let fast = here.query(&m1::QueryRequest::new("fast", "group:a")).unwrap().count;
    assert_eq!(fast, model.values().filter(|n| *n % 3 == 0).count() as u64, "the boost store is rebuilt");
    let carts = here
        .sessions()
        .query("carts", &m1::session::SessionQuery { q: "*".into(), sort: None, start: 0, rows: 100 })
        .unwrap();
    assert_eq!(carts.count, 50, "session documents as at backup time");
    let after = here
        .sessions()
        .query("carts", &m1::session::SessionQuery { q: "tag:after".into(), sort: None, start: 0, rows: 10 })
        .unwrap();
    assert_eq!(after.count, 0, "updates after the backup are not in it");
    let report = here.append_json([rec(record(999_999))]).unwrap();
    assert!(report.first_key.unwrap() >= issued, "keys continue above every key the source issued");

    // 2. A deep copy in a second bucket, then the source vacuumed and destroyed.
    let moto = Moto::start();
    moto.create_bucket("second");
    let options = moto.options();
    let copy = env.backup_copy("while-publishing", "s3://second/copies/b1", &options).unwrap();
    assert!(copy.deep && copy.status == m1::BackupStatus::Complete, "{copy:?}");
    let err = env.backup_copy("while-publishing", "s3://second/copies/b1", &options).unwrap_err();
    assert_eq!(err.kind(), m1::ErrorKind::Exists, "{err}");
    env.engine().set_system(&BTreeMap::from([("retention-ms".to_string(), json!(0))])).unwrap();
    env.vacuum(std::time::Duration::ZERO).unwrap();
    env.sessions().close("carts").unwrap();
    drop(here);
    let env = Arc::into_inner(env).expect("the publisher is done");
    drop(env);
    m1_engine::Environment::open(src_path.to_str().unwrap()).unwrap().destroy().unwrap();
    assert!(!src_path.exists(), "the source is gone");

    let second = dir.path().join("restored-from-copy");
    let deep = m1::BackupSource::open("s3://second/copies/b1", &options).unwrap();
    let from_copy = Environment::restore_new(&deep, second.to_str().unwrap(), &Vec::new(), 0).unwrap();
    check_restored(&from_copy, &second, &model, "restored from the deep copy");
    assert_eq!(from_copy.next_key().unwrap(), backup.next_key, "the backup's own watermark");
    let carts = from_copy
        .sessions()
        .query("carts", &m1::session::SessionQuery { q: "tag:before".into(), sort: None, start: 0, rows: 100 })
        .unwrap();
    assert_eq!(carts.count, 50);
}

#[test]
fn environments_on_object_stores_back_up_and_restore_there() {
    support::scratch_home();
    let moto = Moto::start();
    moto.create_bucket("lakes");
    let options = moto.options();
    let env = Environment::from_engine(
        m1_engine::Environment::create_with(
            "s3://lakes/a",
            &options,
            EnvConfig { segment_rows: 30, ..EnvConfig::default() },
        )
        .unwrap(),
    );
    env.add_properties(&properties()).unwrap();
    let report = env.append_json((0..100).map(|n| rec(record(n)))).unwrap();
    env.stores().sync(env.engine()).unwrap();
    env.sessions().add("s", None, 1, 1).unwrap();
    env.sessions().update("s", r#"[{"upsert": [{"session": {"id": "x"}, "v": 1}]}]"#).unwrap();
    let backup = env.backup_create(None).unwrap();
    assert_eq!(backup.name, backup.id, "an unnamed backup is called by its id");
    assert!(backup.bytes > 0);
    env.append_json((100..120).map(|n| rec(record(n)))).unwrap();
    let src = env.engine().backup_source(&backup.id).unwrap();
    let restored = Environment::restore_new(&src, "s3://lakes/b", &options, 0).unwrap();
    assert_eq!(restored.query(&m1::QueryRequest::new("index", "*:*")).unwrap().count, 100);
    assert_eq!(restored.next_key().unwrap(), report.last_key.unwrap() + 1);
    assert_eq!(restored.get_json(&[42], None).unwrap()[0]["n"], json!(42));
    assert_eq!(restored.sessions().get("s", &["x".into()]).unwrap()[0]["v"], json!(1));
    assert_eq!(env.backup_list().unwrap().len(), 1);
    env.backup_delete(&backup.id).unwrap();
    assert!(env.backup_list().unwrap().is_empty());
}

#[test]
fn bad_backup_requests_are_clear_errors_and_change_nothing() {
    support::scratch_home();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("env");
    let env = Environment::create(path.to_str().unwrap()).unwrap();
    env.add_properties(&properties()).unwrap();
    env.append_json((0..10).map(|n| rec(record(n)))).unwrap();
    let version = env.engine().snapshot().version;
    for id in ["nope", "../../etc", ""] {
        let err = env.backup_get(id).unwrap_err();
        assert_eq!(err.kind(), m1::ErrorKind::NotFound, "{err}");
        assert!(err.to_string().contains(&format!("no backup '{id}'")), "{err}");
        assert_eq!(env.backup_delete(id).unwrap_err().kind(), m1::ErrorKind::NotFound);
        assert_eq!(env.restore(&m1::RestorePoint::Backup(id.into())).unwrap_err().kind(), m1::ErrorKind::NotFound);
        assert_eq!(
            env.backup_copy(id, dir.path().join("c").to_str().unwrap(), &Vec::new()).unwrap_err().kind(),
            m1::ErrorKind::NotFound
        );
    }
    let err = env.backup_create(Some("bad\nname")).unwrap_err();
    assert!(err.to_string().contains("a backup name is 1 to 128 printable characters"), "{err}");
    env.backup_create(Some("b")).unwrap();
    let err = env.backup_create(Some("b")).unwrap_err();
    assert!(err.to_string().contains("a backup named 'b' exists already"), "{err}");
    // A copy target that cannot be written: its parent is a file.
    let blocker = dir.path().join("file");
    std::fs::write(&blocker, "x").unwrap();
    let err = env.backup_copy("b", blocker.join("copy").to_str().unwrap(), &Vec::new()).unwrap_err();
    assert!(err.to_string().contains("file"), "{err}");
    // Restoring onto an existing environment.
    let src = env.engine().backup_source("b").unwrap();
    let err = Environment::restore_new(&src, path.to_str().unwrap(), &Vec::new(), 0).unwrap_err();
    assert_eq!(err.kind(), m1::ErrorKind::Exists, "{err}");
    let catalog = m1::Catalog::open(dir.path().join("home")).unwrap();
    catalog.create("taken", Some(dir.path().join("taken").to_str().unwrap()), EnvConfig::default()).unwrap();
    let err = catalog
        .create_by("taken", None, Default::default(), |url, o| m1_engine::Environment::restore_new(&src, url, o, 0))
        .unwrap_err();
    assert!(err.to_string().contains("an environment named 'taken' already exists"), "{err}");
    assert_eq!(env.engine().refresh().unwrap().version, version, "no request committed anything");
    assert_eq!(env.backup_list().unwrap().len(), 1);
    assert_eq!(env.get_json(&[3], None).unwrap()[0]["n"], json!(3));
}

#[test]
fn scheduled_backups_are_taken_and_pruned() {
    support::scratch_home();
    let dir = tempfile::tempdir().unwrap();
    let env = Environment::create(dir.path().join("env").to_str().unwrap()).unwrap();
    env.add_properties(&properties()).unwrap();
    env.append_json((0..5).map(|n| rec(record(n)))).unwrap();
    assert!(env.backup_tick().unwrap().is_none(), "no schedule by default");
    env.backup_create(Some("by-hand")).unwrap();
    let set = |k: &str, v: Value| env.engine().set_system(&BTreeMap::from([(k.to_string(), v)])).unwrap();
    set("backup-interval-ms", json!(1));
    set("backup-keep-count", json!(2));
    let mut taken = Vec::new();
    for i in 0..4 {
        env.append_json([rec(record(100 + i))]).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(3));
        taken.push(env.backup_tick().unwrap().expect("the interval has passed"));
    }
    let scheduled: Vec<String> = env.backup_list().unwrap().into_iter().filter(|b| b.scheduled).map(|b| b.id).collect();
    assert_eq!(scheduled, [taken[2].id.clone(), taken[3].id.clone()], "the newest two are kept");
    assert!(env.backup_get("by-hand").is_ok(), "a backup made on demand is never pruned");
    assert_eq!(taken[3].rows, 9);
    // Not due yet: nothing taken.
    set("backup-interval-ms", json!(3_600_000));
    assert!(env.backup_tick().unwrap().is_none());
    // Kept no longer than the age limit.
    set("backup-keep-age-ms", json!(1));
    std::thread::sleep(std::time::Duration::from_millis(3));
    assert!(env.backup_tick().unwrap().is_none());
    assert_eq!(env.backup_list().unwrap().iter().filter(|b| b.scheduled).count(), 0);
    assert_eq!(env.backup_list().unwrap().len(), 1);
}
