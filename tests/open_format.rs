//! The open-format promise: what m1 writes is plain Parquet plus a Delta Lake table log, and
//! independent readers (pyarrow, duckdb, polars, and delta-rs through the Python `deltalake`
//! package) see the same records m1 itself returns.
//!
//! The readers run as Python subprocesses (`tests/support/python.py`). Python is `$M1_PYTHON`,
//! else `<repo>/.venv/bin/python`, which the tests create with the pinned packages of
//! `tests/support/requirements.txt` the first time any of them needs it.

mod support;
use support::run_python;

use std::path::Path;

use arrow::array::{Array, AsArray};
use arrow::datatypes::Int64Type;
use m1::{EnvConfig, Environment, Property, PropertyType, Record};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

/// The schema before any data: every property type, a multi string and a dotted name.
fn first_properties() -> Vec<Property> {
    vec![
        Property::new("name", PropertyType::String),
        Property::new("body", PropertyType::Text),
        Property::new("count", PropertyType::Integer),
        Property::new("score", PropertyType::Double),
        Property::new("when", PropertyType::Date),
        Property::new("flag", PropertyType::Boolean),
        Property::new("tags", PropertyType::String).multi(),
        Property::new("user.name", PropertyType::String),
    ]
}

/// The property added once data exists.
const LATER: &str = "later";

/// Record number `i`: a mix of values, explicit nulls and missing properties.
fn record(i: usize, rng: &mut StdRng, with_later: bool) -> Record {
    let mut r = Record::new();
    match i % 7 {
        0 => {}
        1 => {
            r.insert("name".into(), Value::Null);
        }
        2 => {
            r.insert("name".into(), json!(format!("Zoë 🚀 #{i}")));
        }
        3 => {
            r.insert("name".into(), json!(format!("名前{i}")));
        }
        4 => {
            r.insert("name".into(), json!(format!("quote\" back\\slash\nnew line\ttab {i}")));
        }
        _ => {
            r.insert("name".into(), json!(format!("n{i}")));
        }
    }
    if !i.is_multiple_of(5) {
        r.insert("body".into(), json!(format!("Ελληνικά και English, record {i}: ∑ ≠ ∞")));
    }
    let count = match i {
        17 => Some(i64::MAX),
        18 => Some(i64::MIN),
        _ if i.is_multiple_of(11) => None,
        _ => Some(rng.random_range(-1_000_000_000_000i64..1_000_000_000_000)),
    };
    match count {
        Some(c) if i % 10 == 3 => r.insert("count".into(), json!(c.to_string())),
        Some(c) => r.insert("count".into(), json!(c)),
        None => r.insert("count".into(), Value::Null),
    };
    if !i.is_multiple_of(13) {
        let score: f64 = match i % 4 {
            0 => -rng.random_range(0.0..1e6),
            1 => rng.random_range(-1e-300..1e-300),
            _ => rng.random_range(-1e12..1e12),
        };
        r.insert("score".into(), json!(score));
    }
    match i % 5 {
        // ISO strings, before and after 1970
        0 => {
            r.insert(
                "when".into(),
                json!(format!(
                    "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
                    1900 + i % 150,
                    1 + i % 12,
                    1 + i % 28,
                    i % 24,
                    i % 60,
                    (i * 7) % 60,
                    i % 1000
                )),
            );
        }
        // epoch milliseconds, negative ones included (magnitudes below 10^11 are seconds)
        1 => {
            let ms = rng.random_range(100_000_000_000i64..2_000_000_000_000);
            r.insert("when".into(), json!(if i.is_multiple_of(2) { ms } else { -ms }));
        }
        // epoch seconds
        2 => {
            r.insert("when".into(), json!(rng.random_range(0i64..2_000_000_000)));
        }
        3 => {
            r.insert("when".into(), Value::Null);
        }
        _ => {}
    }
    match i % 4 {
        0 => r.insert("flag".into(), json!(true)),
        1 => r.insert("flag".into(), json!(false)),
        2 => r.insert("flag".into(), json!("yes")),
        _ => None,
    };
    match i % 6 {
        0 => {}
        1 => {
            r.insert("tags".into(), json!([]));
        }
        2 => {
            r.insert("tags".into(), json!(["a", "b"]));
        }
        3 => {
            r.insert("tags".into(), json!(["ü", null, "x y", format!("t{}", i % 9)]));
        }
        4 => {
            r.insert("tags".into(), json!("single"));
        }
        _ => {
            r.insert("tags".into(), Value::Null);
        }
    }
    match i % 9 {
        0 => {}
        // the dotted name written flat
        1 => {
            r.insert("user.name".into(), json!(format!("flat-{i}")));
        }
        // nested objects flatten to the dotted name
        _ => {
            r.insert("user".into(), json!({"name": format!("u{}", i % 50)}));
        }
    }
    if i % 17 == 5 {
        r.insert("not.in.schema".into(), json!(i));
    }
    if with_later && !i.is_multiple_of(3) {
        r.insert(LATER.into(), json!(i as i64 * 3 - 10_000));
    }
    r
}

/// Appends before and after the schema change.
const BEFORE: [usize; 4] = [900, 1234, 700, 1];
const AFTER: [usize; 2] = [1000, 333];

struct Lake {
    _dir: tempfile::TempDir,
    path: String,
    env: Environment,
    /// Every record appended, by key (one writer, so key = position).
    input: Vec<Record>,
    /// Key of the first record that may set `later`.
    later_from: u64,
}

fn build_lake() -> Lake {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("env").to_str().unwrap().to_string();
    let env = Environment::create_with(&path, EnvConfig { segment_rows: 700, shards: 3, ..Default::default() })
        .expect("create environment");
    env.add_properties(&first_properties()).unwrap();
    let mut rng = StdRng::seed_from_u64(0x6d31);
    let mut input = Vec::new();
    for n in BEFORE {
        let records: Vec<Record> = (input.len()..input.len() + n).map(|i| record(i, &mut rng, false)).collect();
        let report = env.append_json(records.clone()).unwrap();
        assert_eq!(report.rows, n as u64);
        assert_eq!(report.first_key, Some(input.len() as u64));
        input.extend(records);
    }
    let later_from = input.len() as u64;
    env.add_properties(&[Property::new(LATER, PropertyType::Integer)]).unwrap();
    for n in AFTER {
        let records: Vec<Record> = (input.len()..input.len() + n).map(|i| record(i, &mut rng, true)).collect();
        env.append_json(records.clone()).unwrap();
        input.extend(records);
    }
    assert_eq!(env.next_key().unwrap(), input.len() as u64);
    Lake { _dir: dir, path, env, input, later_from }
}

impl Lake {
    /// Keys to compare: both ends of every segment, a stride through the lake, and two keys that
    /// do not exist.
    fn sample_keys(&self) -> Vec<u64> {
        let mut keys = Vec::new();
        for s in &self.env.engine().snapshot().segments {
            keys.extend([s.start, s.end - 1]);
        }
        keys.extend((0..self.input.len() as u64).step_by(37));
        keys.extend([17, 18, self.later_from - 1, self.later_from]);
        keys.sort_unstable();
        keys.dedup();
        keys
    }

    /// m1's own summary of the whole lake, read with `range`.
    fn m1_summary(&self) -> (u64, Vec<(String, u64)>, i128) {
        let end = self.env.next_key().unwrap();
        let mut rows = 0u64;
        let mut non_null: Vec<(String, u64)> = Vec::new();
        let mut sum = 0i128;
        for batch in self.env.range(0, end, None).unwrap() {
            let batch = batch.unwrap();
            if non_null.is_empty() {
                non_null = batch.schema().fields().iter().map(|f| (f.name().clone(), 0)).collect();
            }
            rows += batch.num_rows() as u64;
            for (i, col) in batch.columns().iter().enumerate() {
                non_null[i].1 += (col.len() - col.null_count()) as u64;
            }
            let count = batch.column_by_name("count").unwrap().as_primitive::<Int64Type>();
            sum += count.iter().flatten().map(i128::from).sum::<i128>();
        }
        (rows, non_null, sum)
    }

    fn m1_records(&self, keys: &[u64]) -> Vec<Record> {
        self.env.get_json(keys, None).unwrap()
    }
}

/// Equality of JSON values with a little slack for doubles printed by Python and parsed back.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            x == y || (x - y).abs() <= 1e-14 * x.abs().max(y.abs())
        }
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

/// Checks one reader's output against m1.
fn check_reader(lake: &Lake, out: &Value, keys: &[u64]) {
    let reader = out["reader"].as_str().unwrap_or("?").to_string();
    let (rows, non_null, sum) = lake.m1_summary();
    let n = lake.input.len() as u64;
    assert_eq!(rows, n, "m1 range returns every record");
    assert_eq!(out["rows"], json!(n), "{reader}: row count");
    assert_eq!(out["distinct_keys"], json!(n), "{reader}: distinct keys");
    assert_eq!(out["min_key"], json!(0), "{reader}: first key");
    assert_eq!(out["max_key"], json!(n - 1), "{reader}: last key");
    assert_eq!(out["sum_count"].as_i64().map(i128::from), Some(sum), "{reader}: sum of `count`");
    let columns: Vec<&str> = non_null.iter().map(|(c, _)| c.as_str()).collect();
    let mut theirs: Vec<&str> = out["columns"].as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
    let mut ours = columns.clone();
    theirs.sort_unstable();
    ours.sort_unstable();
    assert_eq!(theirs, ours, "{reader}: columns");
    for (col, count) in &non_null {
        assert_eq!(out["non_null"][col], json!(count), "{reader}: non-null values of '{col}'");
    }
    let types = &out["types"];
    assert_eq!(types["_m1key"], "int64", "{reader}: type of _m1key");
    let when = types["when"].as_str().unwrap_or_default();
    assert!(
        when.starts_with("timestamp[") && when.contains("UTC"),
        "{reader}: `when` should be a UTC timestamp, is {when}"
    );

    let m1 = lake.m1_records(keys);
    let records = out["records"].as_object().unwrap();
    assert_eq!(records.len(), m1.len(), "{reader}: sampled keys found (m1 found {})", m1.len());
    for rec in &m1 {
        let key = rec["_m1key"].as_u64().unwrap();
        let theirs = records.get(&key.to_string()).unwrap_or_else(|| panic!("{reader}: key {key} missing"));
        assert!(
            same(&Value::Object(rec.clone()), theirs),
            "{reader}: key {key} differs\n   m1: {}\n{reader}: {theirs}",
            Value::Object(rec.clone())
        );
        if key < lake.later_from {
            assert!(
                rec.get(LATER).is_none() && theirs.get(LATER).is_none(),
                "{reader}: key {key} was written before '{LATER}' existed and must read null"
            );
        }
    }
}

/// Checks m1's reads of the sampled keys against the records appended.
fn check_m1_against_input(lake: &Lake, keys: &[u64]) {
    let got = lake.m1_records(keys);
    let existing: Vec<u64> = keys.iter().copied().filter(|&k| k < lake.input.len() as u64).collect();
    assert_eq!(got.len(), existing.len(), "unknown keys are absent");
    for (rec, &key) in got.iter().zip(&existing) {
        assert_eq!(rec["_m1key"], json!(key), "records come in the order asked");
        let input = &lake.input[key as usize];
        let expect_count = match input.get("count") {
            Some(Value::String(s)) => json!(s.parse::<i64>().unwrap()),
            Some(v) => v.clone(),
            None => Value::Null,
        };
        assert_eq!(rec.get("count").cloned().unwrap_or(Value::Null), expect_count, "count of {key}");
        assert_eq!(rec.get("name"), input.get("name").filter(|v| !v.is_null()));
        assert_eq!(rec.get(LATER), input.get(LATER), "{LATER} of {key}");
        let user = input.get("user.name").cloned().or_else(|| input.get("user").map(|u| u["name"].clone()));
        assert_eq!(rec.get("user.name").cloned(), user, "user.name of {key}");
        let when = rec.get("when").and_then(Value::as_str);
        if let Some(Value::String(s)) = input.get("when") {
            assert_eq!(when, Some(s.as_str()), "date of {key} as ISO-8601");
        }
    }
}

#[test]
fn plain_parquet_readers_agree_with_m1() {
    let lake = build_lake();
    let mut keys = lake.sample_keys();
    keys.push(lake.input.len() as u64 + 5);
    check_m1_against_input(&lake, &keys);
    let keys_json = serde_json::to_string(&keys).unwrap();
    let segments = lake.env.engine().snapshot().segments.len();
    for mode in ["parquet-pyarrow", "parquet-duckdb", "parquet-polars"] {
        let out = run_python(&[mode, &lake.path, &keys_json]);
        assert_eq!(out["files"], json!(segments), "{mode}: one Parquet file per committed segment");
        check_reader(&lake, &out, &keys);
    }
}

#[test]
fn delta_reader_agrees_with_m1() {
    let lake = build_lake();
    let keys = lake.sample_keys();
    let keys_json = serde_json::to_string(&keys).unwrap();
    let out = run_python(&["delta", &lake.path, &keys_json]);

    let log_files = std::fs::read_dir(Path::new(&lake.path).join("_delta_log"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().ends_with(".json"))
        .count() as u64;
    let state = lake.env.engine().snapshot();
    assert_eq!(state.version + 1, log_files, "m1 version vs log files");
    assert_eq!(out["version"], json!(log_files - 1), "DeltaTable.version() vs files in _delta_log");
    assert_eq!(out["history_len"], json!(log_files), "DeltaTable.history()");
    assert_eq!(out["protocol"], json!([1, 2]));
    assert_eq!(out["delta_files"], json!(state.segments.len()), "DeltaTable.file_uris() vs m1 segments");
    assert_eq!(out["txn_m1_next"], json!(lake.env.next_key().unwrap()), "txn m1.next");
    let mut fields = vec!["_m1key".to_string(), "_m1rand".to_string()];
    fields.extend(first_properties().into_iter().map(|p| p.name));
    fields.push(LATER.into());
    assert_eq!(out["delta_fields"], json!(fields), "Delta schema");
    assert!(
        out["configuration"]["m1.schema"].as_str().is_some_and(|s| s.contains(LATER)),
        "metaData configuration carries the m1 schema: {}",
        out["configuration"]
    );
    check_reader(&lake, &out, &keys);
}

/// After enough commits m1 writes Delta checkpoints; delta-rs must read them even when the JSON
/// commits they summarise are gone (as after Delta's own log cleanup), and so must m1.
#[test]
fn delta_reader_reads_m1_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_str().unwrap().to_string();
    let env =
        Environment::create_with(&path, EnvConfig { segment_rows: 50, shards: 2, ..EnvConfig::default() }).unwrap();
    env.add_properties(&[
        Property::new("n", PropertyType::Integer),
        Property::new("tags", PropertyType::String).multi(),
    ])
    .unwrap();
    for i in 0..105i64 {
        let r = json!({"n": i, "tags": [format!("t{i}")]});
        env.append_json([r.as_object().unwrap().clone()]).unwrap();
    }
    let state = env.engine().snapshot();
    assert!(state.version > 200);
    let log = Path::new(&path).join("_delta_log");
    for v in 0..=200u64 {
        std::fs::remove_file(log.join(format!("{v:020}.json"))).unwrap();
    }
    let reopened = Environment::open(&path).unwrap();
    assert_eq!(reopened.engine().snapshot().segments, state.segments);
    assert_eq!(reopened.get_json(&[104], None).unwrap()[0]["tags"], json!(["t104"]));

    let keys: Vec<u64> = vec![0, 57, 104];
    let out = run_python(&["delta", &path, &serde_json::to_string(&keys).unwrap()]);
    assert_eq!(out["version"], json!(state.version), "DeltaTable.version()");
    assert_eq!(out["rows"], json!(105));
    assert_eq!(out["delta_files"], json!(state.segments.len()));
    assert_eq!(out["txn_m1_next"], json!(state.next_key), "the txn watermark survives the checkpoint");
    for k in &keys {
        let theirs = &out["records"][k.to_string()];
        assert_eq!(theirs["n"], json!(k), "delta-rs record for key {k}: {theirs}");
        assert_eq!(theirs["tags"], json!([format!("t{k}")]), "delta-rs record for key {k}: {theirs}");
    }
}
