//! End-to-end behaviour of the lake through the facade: schema, keys, get and range.

use std::collections::BTreeMap;

use arrow::array::{ArrayRef, Int32Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema as ArrowSchema};
use m1::{EnvConfig, Environment, Property, PropertyType, Record};
use proptest::prelude::*;
use serde_json::{Value, json};
use std::sync::Arc;

fn rec(v: Value) -> Record {
    v.as_object().expect("object").clone()
}

fn small_env(dir: &tempfile::TempDir, segment_rows: usize) -> Environment {
    let config = EnvConfig { segment_rows, shards: 3, ..EnvConfig::default() };
    Environment::create_with(dir.path().to_str().unwrap(), config).unwrap()
}

fn base_schema() -> Vec<Property> {
    vec![
        Property::new("name", PropertyType::String),
        Property::new("n", PropertyType::Integer),
        Property::new("x", PropertyType::Double),
        Property::new("when", PropertyType::Date),
        Property::new("ok", PropertyType::Boolean),
        Property::new("tags", PropertyType::String).multi(),
        Property::new("body", PropertyType::Text),
    ]
}

#[test]
fn schema_add_wipe_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let env = small_env(&dir, 100);
    let names = |env: &Environment| env.schema().unwrap().all().into_iter().map(|p| p.name).collect::<Vec<_>>();
    assert_eq!(names(&env), ["_m1key", "_m1rand"]);
    env.add_properties(&base_schema()).unwrap();
    let version = env.engine().snapshot().version;
    env.add_properties(&base_schema()[..2]).unwrap();
    assert_eq!(env.engine().snapshot().version, version, "an identical re-add commits nothing");
    let err = env.add_properties(&[Property::new("n", PropertyType::Double)]).unwrap_err().to_string();
    assert!(err.contains("'n' already exists as integer"), "{err}");
    let err = env.add_properties(&[Property::new("a b", PropertyType::Double)]).unwrap_err().to_string();
    assert!(err.contains("bad property name 'a b'"), "{err}");
    let err = serde_json::from_str::<Vec<Property>>(r#"[{"name":"q","type":"uuid"}]"#).unwrap_err().to_string();
    assert!(err.contains("unknown type 'uuid'"), "{err}");

    env.wipe_schema().unwrap();
    assert_eq!(names(&env), ["_m1key", "_m1rand"]);
    // A reopened handle sees the same schema: it lives in the table log.
    let again = Environment::open(dir.path().to_str().unwrap()).unwrap();
    assert_eq!(names(&again), ["_m1key", "_m1rand"]);
}

#[test]
fn properties_added_after_data_read_back_null_and_wiped_ones_disappear() {
    let dir = tempfile::tempdir().unwrap();
    let env = small_env(&dir, 100);
    env.add_properties(&base_schema()[..2]).unwrap();
    env.append_json((0..150).map(|i| rec(json!({"name": format!("r{i}"), "n": i, "late": "ignored"})))).unwrap();
    env.add_properties(&[Property::new("late", PropertyType::String)]).unwrap();
    env.append_json((150..200).map(|i| rec(json!({"name": format!("r{i}"), "late": format!("L{i}")})))).unwrap();

    let got = env.get_json(&[5, 160], None).unwrap();
    assert_eq!(got[0]["name"], "r5");
    assert!(got[0].get("late").is_none(), "old segments have no value for a new property");
    assert_eq!(got[1]["late"], "L160");
    assert!(got[1].get("n").is_none(), "a missing value is left out");

    env.wipe_schema().unwrap();
    let got = env.get_json(&[5], None).unwrap();
    assert_eq!(got[0].keys().collect::<Vec<_>>(), ["_m1key", "_m1rand"]);
    // The column still exists in the files: it can come back only with its old type.
    let err = env.add_properties(&[Property::new("n", PropertyType::String)]).unwrap_err().to_string();
    assert!(err.contains("still holds it as integer"), "{err}");
    env.add_properties(&[Property::new("n", PropertyType::Integer)]).unwrap();
    assert_eq!(env.get_json(&[7], None).unwrap()[0]["n"], 7);
}

#[test]
fn keys_follow_input_order_and_get_returns_the_order_asked() {
    let dir = tempfile::tempdir().unwrap();
    let env = small_env(&dir, 64);
    env.add_properties(&base_schema()).unwrap();
    let report = env.append_json((0..300).map(|i| rec(json!({"n": i})))).unwrap();
    assert_eq!((report.rows, report.first_key, report.last_key, report.segments), (300, Some(0), Some(299), 5));
    assert_eq!(report.key_ranges, [(0, 300)]);
    let report = env.append_json((300..310).map(|i| rec(json!({"n": i})))).unwrap();
    assert_eq!((report.first_key, report.last_key), (Some(300), Some(309)));
    assert_eq!(env.next_key().unwrap(), 310);

    let ids = [299, 0, 64, 5000, 63, 299, 305];
    let got = env.get_json(&ids, Some(&["n".to_string()])).unwrap();
    let keys: Vec<_> = got.iter().map(|r| r["_m1key"].as_u64().unwrap()).collect();
    assert_eq!(keys, [299, 0, 64, 63, 299, 305], "order asked, unknown ids absent, repeats kept");
    for r in &got {
        assert_eq!(r["n"], r["_m1key"], "values belong to their keys");
        assert_eq!(r.len(), 2, "only _m1key and the properties asked for");
    }
    let err = env.get_json(&[1], Some(&["nope".to_string()])).unwrap_err().to_string();
    assert!(err.contains("unknown property 'nope'"), "{err}");
    assert!(env.get_json(&[], None).unwrap().is_empty());
    // Segments are spread over the shards.
    let shards: std::collections::BTreeSet<u32> = env.engine().snapshot().segments.iter().map(|s| s.shard).collect();
    assert_eq!(shards.len(), 3);
}

#[test]
fn typed_values_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let env = small_env(&dir, 1000);
    env.add_properties(&base_schema()).unwrap();
    env.append_json([
        rec(json!({"name": "Zoë", "n": -7, "x": 1.5, "when": "2021-02-23T19:18:04.399Z", "ok": true,
                   "tags": ["a", "b"], "body": "some long text"})),
        rec(json!({"when": 946702800, "x": "2.25", "n": "12", "ok": "false", "tags": "solo"})),
        rec(json!({"when": 1614107884399i64, "name": {"nested": 1}})),
    ])
    .unwrap();
    let got = env.get_json(&[0, 1, 2], None).unwrap();
    let strip = |mut r: Record| {
        let rand = r.shift_remove("_m1rand").unwrap().as_f64().unwrap();
        assert!((0.0..1.0).contains(&rand));
        Value::Object(r)
    };
    assert_eq!(
        strip(got[0].clone()),
        json!({"_m1key": 0, "name": "Zoë", "n": -7, "x": 1.5, "when": "2021-02-23T19:18:04.399Z", "ok": true,
               "tags": ["a", "b"], "body": "some long text"})
    );
    assert_eq!(
        strip(got[1].clone()),
        json!({"_m1key": 1, "n": 12, "x": 2.25, "when": "2000-01-01T05:00:00.000Z", "ok": false, "tags": ["solo"]})
    );
    // Nested objects are flattened, so "name" is absent and "name.nested" is unmapped.
    assert_eq!(strip(got[2].clone()), json!({"_m1key": 2, "when": "2021-02-23T19:18:04.399Z"}));
}

#[test]
fn a_bad_record_commits_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let env = small_env(&dir, 50);
    env.add_properties(&base_schema()).unwrap();
    let rows = (0..120).map(|i| if i == 110 { rec(json!({"n": "twelve"})) } else { rec(json!({"n": i})) });
    let err = env.append_json(rows).unwrap_err().to_string();
    assert_eq!(err, "record 111: property 'n': value \"twelve\" is not a valid integer");
    assert!(env.engine().snapshot().segments.is_empty(), "no segment of the failed append is visible");
    assert!(env.range(0, 1000, None).unwrap().next().is_none());
    // Keys reserved by the failed append are never handed out again.
    let next = env.next_key().unwrap();
    let report = env.append_json([rec(json!({"n": 1}))]).unwrap();
    assert_eq!(report.first_key, Some(next));
}

#[test]
fn arrow_batches_are_cast_to_the_schema() {
    let dir = tempfile::tempdir().unwrap();
    let env = small_env(&dir, 1000);
    env.add_properties(&base_schema()).unwrap();
    let schema = Arc::new(ArrowSchema::new(vec![
        Field::new("n", DataType::Int32, true),
        Field::new("name", DataType::Utf8, true),
    ]));
    let cols: Vec<ArrayRef> = vec![
        Arc::new(Int32Array::from(vec![Some(1), None, Some(3)])),
        Arc::new(StringArray::from(vec!["a", "b", "c"])),
    ];
    env.append_batches([RecordBatch::try_new(schema, cols).unwrap()]).unwrap();
    let got = env.get_json(&[0, 1, 2], Some(&["n".into(), "name".into()])).unwrap();
    assert_eq!(
        Value::Array(got.into_iter().map(Value::Object).collect()),
        json!([
            {"_m1key": 0, "n": 1, "name": "a"}, {"_m1key": 1, "name": "b"}, {"_m1key": 2, "n": 3, "name": "c"}
        ])
    );
    let bad = Arc::new(ArrowSchema::new(vec![Field::new("zzz", DataType::Int32, true)]));
    let batch = RecordBatch::try_new(bad, vec![Arc::new(Int32Array::from(vec![1])) as ArrayRef]).unwrap();
    let err = env.append_batches([batch]).unwrap_err().to_string();
    assert!(err.contains("column 'zzz' is not a schema property"), "{err}");
}

#[test]
fn range_streams_in_bounded_batches_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let env = small_env(&dir, 10_000);
    env.add_properties(&base_schema()).unwrap();
    env.append_json((0..25_000).map(|i| rec(json!({"n": i})))).unwrap();
    let props = ["n".to_string()];
    let mut expected = 5;
    for batch in env.range(5, 24_990, Some(&props)).unwrap() {
        let batch = batch.unwrap();
        assert!(batch.num_rows() <= m1_query::lake::RANGE_BATCH_ROWS, "a range never materialises more than a batch");
        for r in m1::encode::records(&batch) {
            assert_eq!((r["_m1key"].as_u64(), r["n"].as_u64()), (Some(expected), Some(expected)));
            expected += 1;
        }
    }
    assert_eq!(expected, 24_990);
    assert_eq!(env.range(30_000, 40_000, None).unwrap().count(), 0);
    assert_eq!(env.range(10, 5, None).unwrap().count(), 0);
}

#[test]
fn memory_urls_are_environments_too() {
    let env = Environment::create("memory://lake-test/envs/a").unwrap();
    env.add_properties(&base_schema()[..1]).unwrap();
    env.append_json([rec(json!({"name": "m"}))]).unwrap();
    let again = Environment::open("memory://lake-test/envs/a").unwrap();
    assert_eq!(again.get_json(&[0], Some(&["name".into()])).unwrap()[0]["name"], "m");
    let err = Environment::create("memory://lake-test/envs/a").unwrap_err().to_string();
    assert!(err.contains("already exists"), "{err}");
    let err = Environment::open("memory://lake-test/envs/none").unwrap_err().to_string();
    assert!(err.contains("no m1 environment"), "{err}");
}

/// One step of the model test: append records with these optional values, or read.
#[derive(Debug, Clone)]
enum Step {
    Append(Vec<(Option<i64>, Option<String>)>),
    Get(Vec<u64>),
    Range(u64, u64),
}

fn step() -> impl Strategy<Value = Step> {
    let row = (proptest::option::of(-1000i64..1000), proptest::option::of("[a-zé ]{0,6}"));
    prop_oneof![
        proptest::collection::vec(row, 0..40).prop_map(Step::Append),
        proptest::collection::vec(0u64..200, 0..12).prop_map(Step::Get),
        (0u64..200, 0u64..200).prop_map(|(a, b)| Step::Range(a, b)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// The lake behaves like a plain map from key to record.
    #[test]
    fn lake_matches_an_in_memory_model(steps in proptest::collection::vec(step(), 1..12), seg in 3usize..40) {
        let dir = tempfile::tempdir().unwrap();
        let env = small_env(&dir, seg);
        env.add_properties(&base_schema()).unwrap();
        let mut model: BTreeMap<u64, Value> = BTreeMap::new();
        let mut next = 0u64;
        let view = |r: &Record| {
            let mut r = r.clone();
            r.shift_remove("_m1rand");
            Value::Object(r)
        };
        for s in steps {
            match s {
                Step::Append(rows) => {
                    let recs: Vec<Record> = rows.iter().map(|(n, name)| {
                        let mut r = Record::new();
                        if let Some(n) = n { r.insert("n".into(), json!(n)); }
                        if let Some(s) = name { r.insert("name".into(), json!(s)); }
                        r
                    }).collect();
                    let report = env.append_json(recs.clone()).unwrap();
                    prop_assert_eq!(report.rows, recs.len() as u64);
                    if let Some(first) = report.first_key { prop_assert!(first >= next); next = first; }
                    for mut r in recs {
                        r.insert("_m1key".into(), json!(next));
                        let mut ordered = Record::new();
                        ordered.insert("_m1key".into(), json!(next));
                        for k in ["name", "n"] { if let Some(v) = r.get(k) { ordered.insert(k.into(), v.clone()); } }
                        model.insert(next, Value::Object(ordered));
                        next += 1;
                    }
                    prop_assert_eq!(env.next_key().unwrap(), next);
                }
                Step::Get(ids) => {
                    let got: Vec<Value> = env.get_json(&ids, Some(&["name".into(), "n".into()])).unwrap().iter().map(view).collect();
                    let want: Vec<Value> = ids.iter().filter_map(|i| model.get(i).cloned()).collect();
                    prop_assert_eq!(got, want);
                }
                Step::Range(a, b) => {
                    let mut got = Vec::new();
                    for batch in env.range(a, b, Some(&["name".into(), "n".into()])).unwrap() {
                        got.extend(m1::encode::records(&batch.unwrap()).iter().map(view));
                    }
                    let want: Vec<Value> = model.range(a..b.max(a)).map(|(_, v)| v.clone()).collect();
                    prop_assert_eq!(got, want);
                }
            }
        }
    }
}

#[test]
fn vacuum_removes_only_old_unreferenced_files() {
    let dir = tempfile::tempdir().unwrap();
    let env = small_env(&dir, 10);
    env.add_properties(&base_schema()).unwrap();
    env.append_json((0..25).map(|i| rec(json!({"n": i})))).unwrap();
    // An append abandoned after writing two full segments leaves two orphan files.
    let mut abandoned = env.engine().appender().unwrap();
    for i in 0..25 {
        abandoned.write_json(rec(json!({"n": 100 + i}))).unwrap();
    }
    drop(abandoned);
    let parquet_files =
        || walk(&dir.path().join("lake")).into_iter().filter(|p| p.extension().is_some_and(|e| e == "parquet")).count();
    // The abandoned append's writer threads may still be finishing their uploads.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while parquet_files() < 5 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(parquet_files(), 5, "3 committed segments and 2 orphans");

    let kept = env.vacuum(std::time::Duration::from_secs(3600)).unwrap();
    assert_eq!((kept.files_deleted, kept.files_kept), (0, 2), "young orphans may belong to an append in flight");
    // Staging files of a writer killed mid-upload are hidden from object-store listings.
    std::fs::write(dir.path().join("lake/shard=0/00000000000000000099-x.parquet#7"), b"partial").unwrap();
    std::fs::write(dir.path().join("_delta_log/00000000000000000999.json#2"), b"partial").unwrap();
    let gone = env.vacuum(std::time::Duration::ZERO).unwrap();
    assert_eq!((gone.files_deleted, gone.files_kept), (4, 0));
    assert!(!dir.path().join("lake/shard=0/00000000000000000099-x.parquet#7").exists());
    assert!(!dir.path().join("_delta_log/00000000000000000999.json#2").exists());
    assert!(gone.bytes_deleted > 0);
    assert_eq!(parquet_files(), 3);
    let all: Vec<i64> = env
        .range(0, env.next_key().unwrap(), Some(&["n".into()]))
        .unwrap()
        .flat_map(|b| m1::encode::records(&b.unwrap()))
        .map(|r| r["n"].as_i64().unwrap())
        .collect();
    assert_eq!(all, (0..25).collect::<Vec<_>>());
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = entry.path();
        if p.is_dir() { out.extend(walk(&p)) } else { out.push(p) }
    }
    out
}

#[test]
fn opening_uses_checkpoints_and_survives_losing_them() {
    let dir = tempfile::tempdir().unwrap();
    let env = small_env(&dir, 1000);
    env.add_properties(&base_schema()[..2]).unwrap();
    for i in 0..110 {
        env.append_json([rec(json!({"n": i, "name": format!("r{i}")}))]).unwrap();
    }
    let state = env.engine().snapshot();
    assert!(state.version >= 200, "each append is a key reservation and a data commit");
    let log = dir.path().join("_delta_log");
    assert!(log.join("_last_checkpoint").exists());
    assert!(log.join(format!("{:020}.checkpoint.parquet", 200)).exists());

    let same = |env: &Environment| {
        let s = env.engine().snapshot();
        assert_eq!(
            (s.version, s.next_key, &s.segments, &s.schema),
            (state.version, state.next_key, &state.segments, &state.schema)
        );
        assert_eq!(env.get_json(&[109], None).unwrap()[0]["name"], "r109");
    };
    same(&Environment::open(dir.path().to_str().unwrap()).unwrap());
    // A damaged checkpoint is not fatal: the log is replayed from the start.
    std::fs::write(log.join(format!("{:020}.checkpoint.parquet", 200)), b"garbage").unwrap();
    same(&Environment::open(dir.path().to_str().unwrap()).unwrap());
    std::fs::remove_file(log.join("_last_checkpoint")).unwrap();
    same(&Environment::open(dir.path().to_str().unwrap()).unwrap());
}

#[test]
fn racing_creators_agree_on_one_configuration() {
    for round in 0..20 {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("env").to_str().unwrap().to_string();
        let barrier = std::sync::Barrier::new(2);
        let results: Vec<_> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..2u32)
                .map(|i| {
                    let (path, barrier) = (&path, &barrier);
                    s.spawn(move || {
                        let config = EnvConfig { id: format!("creator{i}"), shards: 1 + i, ..EnvConfig::default() };
                        barrier.wait();
                        m1_engine::Environment::create(path, config).map(|e| e.config().id.clone())
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let winners: Vec<&String> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
        assert_eq!(winners.len(), 1, "round {round}: exactly one creator wins: {results:?}");
        let opened = m1_engine::Environment::open(&path).unwrap();
        assert_eq!(&opened.config().id, winners[0], "round {round}");
        assert_eq!(opened.snapshot().table_id, *winners[0]);
        assert_eq!(opened.config().shards, if winners[0] == "creator0" { 1 } else { 2 });
        // Without env.json the settings come from the log.
        std::fs::remove_file(dir.path().join("env").join("env.json")).unwrap();
        assert_eq!(&m1_engine::Environment::open(&path).unwrap().config().id, winners[0]);
    }
}

#[test]
fn environments_from_before_the_codec_setting_keep_zstd() {
    let dir = tempfile::tempdir().unwrap();
    let env = small_env(&dir, 100);
    assert_eq!(env.engine().config().codec, m1_engine::segment::Codec::Lz4);
    drop(env);
    // An env.json written before `codec` existed.
    let path = dir.path().join("env.json");
    let mut config: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    config.as_object_mut().unwrap().remove("codec");
    std::fs::write(&path, serde_json::to_vec(&config).unwrap()).unwrap();
    let env = Environment::open(dir.path().to_str().unwrap()).unwrap();
    assert_eq!(env.engine().config().codec, m1_engine::segment::Codec::Zstd);
    env.add_properties(&base_schema()[..2]).unwrap();
    env.append_json([rec(json!({"n": 5}))]).unwrap();
    assert_eq!(env.get_json(&[0], None).unwrap()[0]["n"], 5);
    let file = &env.engine().snapshot().segments[0].path;
    let reader = parquet::file::reader::SerializedFileReader::new(std::fs::File::open(dir.path().join(file)).unwrap());
    let meta = parquet::file::reader::FileReader::metadata(&reader.unwrap()).row_group(0).column(0).compression();
    assert!(matches!(meta, parquet::basic::Compression::ZSTD(_)), "{meta:?}");
}
