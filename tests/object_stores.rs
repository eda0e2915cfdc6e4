//! Environments on object stores: every engine path (create, append, open, get, range, schema
//! changes, conditional puts under concurrent writers) on S3 (moto), Azure Blob (Azurite) and GCS
//! (fake-gcs-server), each a server on loopback, and delta-rs reading the same table from there.
//!
//! Each test starts its own server on a free port of 127.0.0.1 and stops it when done; the tests
//! provision the servers themselves (`tests/support/clouds.rs`).

mod support;
use support::clouds::{Azurite, Cloud, FakeGcs};
use support::{Moto, run_python};

use m1::{EngineError, EnvConfig, Environment, Property, PropertyType, Record};
use serde_json::{Value, json};

fn create(url: &str, cloud: &dyn Cloud, config: EnvConfig) -> Environment {
    Environment::from_engine(
        m1_engine::Environment::create_with(url, &cloud.options(), config)
            .unwrap_or_else(|e| panic!("create {url}: {e}")),
    )
}

fn open(url: &str, cloud: &dyn Cloud) -> Environment {
    Environment::from_engine(
        m1_engine::Environment::open_with(url, &cloud.options()).unwrap_or_else(|e| panic!("open {url}: {e}")),
    )
}

fn rec(v: Value) -> Record {
    v.as_object().unwrap().clone()
}

/// Record number `i` of the lifecycle test.
fn item(i: usize) -> Record {
    let mut r = rec(json!({
        "name": format!("item-{i} ✓"),
        "n": i as i64 - 100,
        "score": i as f64 / 4.0,
        "when": 1_614_107_884_399i64 + i as i64 * 1000,
        "tags": [format!("t{}", i % 3), "all"],
        "ok": i.is_multiple_of(2),
    }));
    if i % 10 == 7 {
        r.remove("name");
    }
    r
}

fn keys_of(records: &[Record]) -> Vec<u64> {
    records.iter().map(|r| r["_m1key"].as_u64().unwrap()).collect()
}

#[test]
fn environment_lifecycle_on_s3() {
    let moto = Moto::start();
    environment_lifecycle(&moto);
}

#[test]
fn environment_lifecycle_on_azure() {
    environment_lifecycle(&Azurite::start());
}

#[test]
fn environment_lifecycle_on_gcs() {
    environment_lifecycle(&FakeGcs::start());
}

fn environment_lifecycle(cloud: &dyn Cloud) {
    let bucket = "m1-lake";
    cloud.create_bucket(bucket);
    let url = cloud.url(bucket, "envs/t1");

    let env = create(&url, cloud, EnvConfig { segment_rows: 50, shards: 2, ..Default::default() });
    env.add_properties(&[
        Property::new("name", PropertyType::String),
        Property::new("n", PropertyType::Integer),
        Property::new("score", PropertyType::Double),
        Property::new("when", PropertyType::Date),
        Property::new("tags", PropertyType::String).multi(),
        Property::new("ok", PropertyType::Boolean),
    ])
    .unwrap();
    let first = env.append_json((0..120).map(item)).unwrap();
    assert_eq!((first.rows, first.first_key), (120, Some(0)));
    assert_eq!(first.segments, 3);
    let second = env.append_json((120..200).map(item)).unwrap();
    assert_eq!((second.rows, second.first_key), (80, Some(120)));
    assert_eq!(env.next_key().unwrap(), 200);

    // A second handle opened from the URL sees everything.
    let reopened = open(&url, cloud);
    assert_eq!(reopened.next_key().unwrap(), 200);
    assert_eq!(reopened.schema().unwrap(), env.schema().unwrap());

    // get: values, the order asked, unknown ids absent.
    let got = reopened.get_json(&[150, 3, 999, 0, 199, 200], None).unwrap();
    assert_eq!(keys_of(&got), vec![150, 3, 0, 199]);
    let g150 = &got[0];
    assert_eq!(g150["name"], "item-150 ✓");
    assert_eq!(g150["n"], 50);
    assert_eq!(g150["score"], 37.5);
    assert_eq!(g150["when"], "2021-02-23T19:20:34.399Z");
    assert_eq!(g150["tags"], json!(["t0", "all"]));
    assert_eq!(g150["ok"], true);
    assert!(g150["_m1rand"].is_f64());
    assert_eq!(got[1]["n"], -97);
    assert_eq!(got[1]["ok"], false);
    assert_eq!(got[2]["when"], "2021-02-23T19:18:04.399Z");
    assert!(reopened.get_json(&[17], None).unwrap()[0].get("name").is_none());
    let narrow = reopened.get_json(&[5, 4], Some(&["n".to_string()])).unwrap();
    assert_eq!(narrow, vec![rec(json!({"_m1key": 5, "n": -95})), rec(json!({"_m1key": 4, "n": -96}))]);

    // range: key order, bounds respected, across segments and appends.
    let mut seen = Vec::new();
    for batch in reopened.range(40, 160, None).unwrap() {
        for r in m1::encode::records(&batch.unwrap()) {
            assert_eq!(r["n"], r["_m1key"].as_i64().unwrap() - 100);
            seen.push(r["_m1key"].as_u64().unwrap());
        }
    }
    assert_eq!(seen, (40..160).collect::<Vec<_>>());
    let tail: usize = reopened.range(190, 1000, None).unwrap().map(|b| b.unwrap().num_rows()).sum();
    assert_eq!(tail, 10);

    // A schema change after data, from the second handle; old rows read null for it.
    reopened.add_properties(&[Property::new("extra", PropertyType::Double)]).unwrap();
    let third = reopened
        .append_json((200..230).map(|i| {
            let mut r = item(i);
            r.insert("extra".into(), json!(i as f64 + 0.5));
            r
        }))
        .unwrap();
    assert_eq!(third.first_key, Some(200));
    assert!(third.unmapped.is_empty(), "{:?}", third.unmapped);
    // The first handle catches up with the other handle's commits.
    assert!(env.schema().unwrap().get("extra").is_some());
    assert_eq!(env.next_key().unwrap(), 230);
    let mixed = env.get_json(&[10, 210, 199, 200], None).unwrap();
    assert_eq!(keys_of(&mixed), vec![10, 210, 199, 200]);
    assert!(mixed[0].get("extra").is_none(), "{:?}", mixed[0]);
    assert_eq!(mixed[1]["extra"], 210.5);
    assert!(mixed[2].get("extra").is_none(), "{:?}", mixed[2]);
    assert_eq!(mixed[3]["extra"], 200.5);
    assert_eq!(mixed[1]["name"], "item-210 ✓");
    let extra_only = env.get_json(&[3, 203], Some(&["extra".to_string()])).unwrap();
    assert_eq!(extra_only, vec![rec(json!({"_m1key": 3})), rec(json!({"_m1key": 203, "extra": 203.5}))]);

    // Creating again at the same URL is refused.
    match m1_engine::Environment::create_with(&url, &cloud.options(), EnvConfig::default()) {
        Err(EngineError::EnvironmentExists(at)) => assert!(at.contains("envs/t1"), "{at}"),
        Err(e) => panic!("second create failed with the wrong error: {e}"),
        Ok(_) => panic!("second create at {url} succeeded"),
    }
    assert_eq!(open(&url, cloud).next_key().unwrap(), 230);

    // Conditional create, the primitive the table log's concurrency rests on, works here.
    let storage = env.engine().storage();
    assert!(
        !storage.put_if_absent("_delta_log/00000000000000000000.json", Default::default()).unwrap(),
        "put-if-absent overwrote log version 0"
    );
    assert!(storage.put_if_absent("probe", Default::default()).unwrap());
    assert!(!storage.put_if_absent("probe", Default::default()).unwrap());
    storage.delete("probe").unwrap();
    assert_eq!(open(&url, cloud).next_key().unwrap(), 230);

    // The objects are in the bucket, seen through object_store ...
    let listed: Vec<String> = storage.list("").unwrap().iter().map(|m| storage.relative(&m.location)).collect();
    let state = env.engine().snapshot();
    assert!(listed.contains(&"_delta_log/00000000000000000000.json".to_string()), "{listed:?}");
    let logs = listed.iter().filter(|p| p.starts_with("_delta_log/")).count();
    assert_eq!(logs as u64, state.version + 1, "{listed:?}");
    let mut parquet: Vec<&String> = listed.iter().filter(|p| p.ends_with(".parquet")).collect();
    parquet.sort();
    let mut segments: Vec<&String> = state.segments.iter().map(|s| &s.path).collect();
    segments.sort();
    assert_eq!(parquet, segments, "one object per committed segment");
    assert!(parquet.iter().all(|p| p.starts_with("lake/shard=")));
    assert!(listed.contains(&"env.json".to_string()), "{listed:?}");

    // delta-rs reads the table straight from the bucket.
    let delta = run_python(&["delta", &url, "[0, 150, 229]", &cloud.delta_options().to_string()]);
    assert_eq!(delta["rows"], 230);
    assert_eq!(delta["version"], json!(state.version));
    assert_eq!(delta["txn_m1_next"], 230);
    let m1_rows = env.get_json(&[0, 150, 229], None).unwrap();
    for r in &m1_rows {
        let k = r["_m1key"].to_string();
        let theirs = &delta["records"][&k];
        for (name, v) in r {
            if name == "_m1rand" || name == "score" || name == "extra" {
                let (a, b) = (v.as_f64().unwrap(), theirs[name].as_f64().unwrap());
                assert!((a - b).abs() <= 1e-14 * a.abs().max(b.abs()), "{name} of {k}");
            } else {
                assert_eq!(&theirs[name], v, "{name} of {k}");
            }
        }
        assert_eq!(theirs.as_object().unwrap().len(), r.len(), "{theirs}");
    }
}

/// Through boto3, the S3 client moto brings, the objects are under the URL's prefix.
#[test]
fn objects_on_s3_are_where_boto3_sees_them() {
    let moto = Moto::start();
    moto.create_bucket("m1-lake");
    let url = "s3://m1-lake/envs/t1";
    let env = create(url, &moto, EnvConfig { segment_rows: 50, shards: 2, ..Default::default() });
    env.add_properties(&[Property::new("n", PropertyType::Integer)]).unwrap();
    env.append_json((0..120).map(|i| rec(json!({"n": i})))).unwrap();
    let storage = env.engine().storage();
    let listed: Vec<String> = storage.list("").unwrap().iter().map(|m| storage.relative(&m.location)).collect();
    let segments = env.engine().snapshot().segments.len();
    let objects = run_python(&["s3-list", &moto.endpoint(), "m1-lake", "envs/t1/"]);
    let keys: Vec<&str> = objects["keys"].as_array().unwrap().iter().map(|k| k.as_str().unwrap()).collect();
    assert!(keys.contains(&"envs/t1/_delta_log/00000000000000000000.json"), "{keys:?}");
    assert_eq!(keys.iter().filter(|k| k.ends_with(".parquet")).count(), segments, "{keys:?}");
    assert_eq!(keys.len(), listed.len(), "{keys:?}");
}

#[test]
fn concurrent_appends_on_s3_get_disjoint_keys() {
    concurrent_appends_get_disjoint_keys(&Moto::start());
}

#[test]
fn concurrent_appends_on_azure_get_disjoint_keys() {
    concurrent_appends_get_disjoint_keys(&Azurite::start());
}

#[test]
fn concurrent_appends_on_gcs_get_disjoint_keys() {
    concurrent_appends_get_disjoint_keys(&FakeGcs::start());
}

fn concurrent_appends_get_disjoint_keys(cloud: &dyn Cloud) {
    let bucket = "m1-race";
    cloud.create_bucket(bucket);
    let url = cloud.url(bucket, "envs/race");
    let env = create(&url, cloud, EnvConfig { segment_rows: 25, shards: 3, ..Default::default() });
    env.add_properties(&[Property::new("writer", PropertyType::String), Property::new("seq", PropertyType::Integer)])
        .unwrap();

    const APPENDS: usize = 4;
    const ROWS: usize = 60;
    let barrier = std::sync::Barrier::new(2);
    let reports: Vec<Vec<m1::AppendReport>> = std::thread::scope(|s| {
        let handles: Vec<_> = ["a", "b"]
            .into_iter()
            .map(|writer| {
                let (barrier, url) = (&barrier, &url);
                s.spawn(move || {
                    let handle = open(url, cloud);
                    barrier.wait();
                    (0..APPENDS)
                        .map(|n| {
                            handle
                                .append_json((0..ROWS).map(|i| rec(json!({"writer": writer, "seq": n * ROWS + i}))))
                                .unwrap_or_else(|e| panic!("writer {writer}, append {n}: {e}"))
                        })
                        .collect()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for r in reports.iter().flatten() {
        assert_eq!(r.rows, ROWS as u64);
        assert_eq!(r.segments, 3, "{r:?}");
    }
    let mut versions: Vec<u64> = reports.iter().flatten().map(|r| r.version).collect();
    versions.sort_unstable();
    versions.dedup();
    assert_eq!(versions.len(), 2 * APPENDS, "every append has its own log version");

    let total = (2 * APPENDS * ROWS) as u64;
    assert_eq!(env.next_key().unwrap(), total, "no key was lost or handed out twice");
    let mut seen = std::collections::HashMap::new();
    let mut keys = Vec::new();
    for batch in env.range(0, u64::MAX, None).unwrap() {
        for r in m1::encode::records(&batch.unwrap()) {
            let key = r["_m1key"].as_u64().unwrap();
            keys.push(key);
            let id = (r["writer"].as_str().unwrap().to_string(), r["seq"].as_u64().unwrap());
            if let Some(other) = seen.insert(id.clone(), key) {
                panic!("record {id:?} stored twice, at keys {other} and {key}");
            }
        }
    }
    assert_eq!(keys, (0..total).collect::<Vec<_>>(), "keys are dense and unique");
    for writer in ["a", "b"] {
        for seq in 0..(APPENDS * ROWS) as u64 {
            assert!(seen.contains_key(&(writer.to_string(), seq)), "record {writer}/{seq} missing");
        }
    }
    // Every segment is a committed, disjoint key range.
    let state = env.engine().snapshot();
    for pair in state.segments.windows(2) {
        assert_eq!(pair[0].end, pair[1].start, "{:?}", state.segments);
    }
    assert_eq!(state.segments.len(), 2 * APPENDS * 3);
}
