//! `/publish` from object stores: a prefix (every object under it, in name order), a glob and a
//! single object, plain and gzip, csv and jsonl, read from S3 (moto), Azure Blob (Azurite) and GCS
//! (fake-gcs-server) on loopback, with the endpoint and credentials passed as
//! `object_store_options`.
//!
//! Each test starts its own server on a free port of 127.0.0.1 and stops it when done; the tests
//! provision the servers themselves (`tests/support/clouds.rs`).

mod support;
use support::Moto;
use support::clouds::{Azurite, Cloud, FakeGcs};

use std::io::Write;

use m1::{EnvConfig, Environment, Property, PropertyType, PublishReport, PublishRequest, Record};
use serde_json::{Value, json};

fn rec(v: Value) -> Record {
    v.as_object().unwrap().clone()
}

fn gz(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// The records a publish committed, without `_m1rand`.
fn published(env: &Environment, report: &PublishReport) -> Vec<Record> {
    let mut out = Vec::new();
    for &(start, end) in &report.key_ranges {
        for batch in env.range(start, end, None).unwrap() {
            for mut r in m1::encode::records(&batch.unwrap()) {
                let rand = r.shift_remove("_m1rand").unwrap().as_f64().unwrap();
                assert!((0.0..1.0).contains(&rand));
                out.push(r);
            }
        }
    }
    out
}

/// Record `id` as the test files hold it, as a read returns it at `key`.
fn row(key: u64, id: i64, src: &str) -> Record {
    let mut r = rec(json!({"_m1key": key, "id": id, "src": src, "n": id * 10}));
    if src.contains(".jsonl") {
        r.insert("geo.city".into(), json!(format!("city {id} ✓")));
    }
    r
}

fn csv(ids: &[i64], src: &str) -> Vec<u8> {
    let mut out = String::from("id,src,n\n");
    for id in ids {
        out.push_str(&format!("{id},{src},{}\n", id * 10));
    }
    out.into_bytes()
}

fn jsonl(ids: &[i64], src: &str) -> Vec<u8> {
    ids.iter()
        .map(|id| format!("{}\n", json!({"id": id, "src": src, "n": id * 10, "geo": {"city": format!("city {id} ✓")}})))
        .collect::<String>()
        .into_bytes()
}

fn assert_records(got: &[Record], want: &[Record], ctx: &str) {
    assert_eq!(got, want, "{ctx}");
    for (g, w) in got.iter().zip(want) {
        assert_eq!(g.keys().collect::<Vec<_>>(), w.keys().collect::<Vec<_>>(), "{ctx}: key order");
    }
}

#[test]
fn publish_from_s3_prefix_glob_and_object() {
    publish_from_prefix_glob_and_object(&Moto::start());
}

#[test]
fn publish_from_azure_prefix_glob_and_object() {
    publish_from_prefix_glob_and_object(&Azurite::start());
}

#[test]
fn publish_from_gcs_prefix_glob_and_object() {
    publish_from_prefix_glob_and_object(&FakeGcs::start());
}

fn publish_from_prefix_glob_and_object(cloud: &dyn Cloud) {
    let bucket = "m1-src";
    cloud.create_bucket(bucket);
    let options = cloud.options();
    let scheme = cloud.scheme();
    let store = m1_engine::storage::Storage::open(&cloud.url(bucket, ""), &options).unwrap();
    let objects: Vec<(&str, Vec<u8>)> = vec![
        ("feed/c.jsonl", jsonl(&[4, 5], "c.jsonl")),
        ("feed/a.csv", csv(&[1, 2], "a.csv")),
        ("feed/b.csv.gz", gz(&csv(&[3], "b.csv.gz"))),
        ("feed/d.jsonl.gz", gz(&jsonl(&[6], "d.jsonl.gz"))),
        ("feed/sub/e.csv.gz", gz(&csv(&[7, 8], "e.csv.gz"))),
        // Outside the prefix: a sibling sharing its first letters, and another folder.
        ("feedback.csv", csv(&[100], "feedback.csv")),
        ("other/x.csv.gz", gz(&csv(&[101], "x.csv.gz"))),
        ("bad/1.csv", csv(&[200], "1.csv")),
        (
            "bad/2.jsonl",
            b"{\"id\": 201, \"src\": \"2.jsonl\"}\n{\"id\": \"two hundred\", \"src\": \"2.jsonl\"}\n".to_vec(),
        ),
    ];
    for (path, bytes) in &objects {
        store.put(path, bytes.clone().into()).unwrap();
    }
    let size = |prefix: &str, suffix: &str| -> u64 {
        objects.iter().filter(|(p, _)| p.starts_with(prefix) && p.ends_with(suffix)).map(|(_, b)| b.len() as u64).sum()
    };

    let tmp = tempfile::tempdir().unwrap();
    let env = Environment::create_with(
        tmp.path().join("env").to_str().unwrap(),
        EnvConfig { segment_rows: 3, shards: 2, ..EnvConfig::default() },
    )
    .unwrap();
    env.add_properties(&[
        Property::new("id", PropertyType::Integer),
        Property::new("src", PropertyType::String),
        Property::new("n", PropertyType::Integer),
        Property::new("geo.city", PropertyType::String),
    ])
    .unwrap();
    let request = |file: String| {
        let mut req = PublishRequest::new(file);
        req.object_store_options = options.clone();
        req
    };

    // A prefix: every object under it, recursively, in name order.
    let mut next = 0;
    for url in [format!("{scheme}://{bucket}/feed/"), format!("{scheme}://{bucket}/feed")] {
        let report = env.publish(&request(url.clone())).unwrap_or_else(|e| panic!("publish {url}: {e}"));
        assert_eq!(report.files, 5, "{url}: {report:?}");
        assert_eq!(report.bytes, size("feed/", ""), "{url}");
        assert_eq!((report.rows_read, report.rows_published), (8, 8), "{url}");
        assert_eq!(report.first_key, Some(next));
        let want: Vec<Record> = [
            (1, "a.csv"),
            (2, "a.csv"),
            (3, "b.csv.gz"),
            (4, "c.jsonl"),
            (5, "c.jsonl"),
            (6, "d.jsonl.gz"),
            (7, "e.csv.gz"),
            (8, "e.csv.gz"),
        ]
        .iter()
        .enumerate()
        .map(|(i, (id, src))| row(next + i as u64, *id, src))
        .collect();
        assert_records(&published(&env, &report), &want, &url);
        next += 8;
    }

    // A glob.
    let url = format!("{scheme}://{bucket}/feed/*.csv.gz");
    let report = env.publish(&request(url.clone())).unwrap_or_else(|e| panic!("publish {url}: {e}"));
    assert_eq!(report.bytes, size("feed/", ".csv.gz"), "{url}");
    let want = vec![row(next, 3, "b.csv.gz"), row(next + 1, 7, "e.csv.gz"), row(next + 2, 8, "e.csv.gz")];
    assert_records(&published(&env, &report), &want, &url);
    next += 3;

    // One object.
    let url = format!("{scheme}://{bucket}/feed/d.jsonl.gz");
    let report = env.publish(&request(url.clone())).unwrap_or_else(|e| panic!("publish {url}: {e}"));
    assert_eq!((report.files, report.bytes), (1, size("feed/d.jsonl.gz", "")));
    assert_records(&published(&env, &report), &[row(next, 6, "d.jsonl.gz")], &url);
    next += 1;
    let url = format!("{scheme}://{bucket}/feed/a.csv");
    let report = env.publish(&request(url.clone())).unwrap_or_else(|e| panic!("publish {url}: {e}"));
    assert_records(&published(&env, &report), &[row(next, 1, "a.csv"), row(next + 1, 2, "a.csv")], &url);
    next += 2;
    assert_eq!(env.next_key().unwrap(), next);

    // A bad object in a prefix: the error names the object and line; nothing is committed.
    let url = format!("{scheme}://{bucket}/bad/");
    let err = env.publish(&request(url.clone())).unwrap_err().to_string();
    assert!(err.contains(&format!("{scheme}://{bucket}/bad/2.jsonl:2")) && err.contains("'id'"), "{err}");
    let all: usize = env.range(0, env.next_key().unwrap(), None).unwrap().map(|b| b.unwrap().num_rows()).sum();
    assert_eq!(all as u64, next, "nothing of the failed publish is visible");

    // Nothing there.
    let err = env.publish(&request(format!("{scheme}://{bucket}/nothing/"))).unwrap_err().to_string();
    assert!(err.contains("matches no files"), "{err}");
    let err = env.publish(&request(format!("{scheme}://{bucket}/feed/*.parquet"))).unwrap_err().to_string();
    assert!(err.contains("matches no files"), "{err}");
}
