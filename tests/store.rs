//! Data stores end to end: administration, freshness, errors, deep paging and streaming, boost
//! stores, the CLI, and a SIGKILL during indexing. Query semantics against an oracle are in
//! `store_oracle.rs`.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema as ArrowSchema};
use m1::{EnvConfig, Environment, Property, PropertyType, QueryError, QueryRequest, StoreDef, StoreKind};
use serde_json::{Value, json};

/// An environment with `n` records: `n` (0..n), `group` (`g{n % 7}`), `word` text.
fn numbers(dir: &Path, n: i64, segment_rows: usize) -> Environment {
    let config = EnvConfig { segment_rows, ..EnvConfig::default() };
    let env = Environment::create_with(dir.to_str().unwrap(), config).unwrap();
    env.add_properties(&[
        Property::new("n", PropertyType::Integer),
        Property::new("group", PropertyType::String),
        Property::new("word", PropertyType::Text),
    ])
    .unwrap();
    append_numbers(&env, 0, n);
    env
}

fn append_numbers(env: &Environment, from: i64, to: i64) {
    let schema = Arc::new(ArrowSchema::new(vec![
        Field::new("n", DataType::Int64, true),
        Field::new("group", DataType::Utf8, true),
        Field::new("word", DataType::Utf8, true),
    ]));
    let n: ArrayRef = Arc::new(Int64Array::from_iter_values(from..to));
    let group: ArrayRef = Arc::new(StringArray::from_iter_values((from..to).map(|i| format!("g{}", i % 7))));
    let word: ArrayRef = Arc::new(StringArray::from_iter_values(
        (from..to).map(|i| if i % 2 == 0 { "even Number" } else { "odd number" }),
    ));
    env.append_batches([RecordBatch::try_new(schema, vec![n, group, word]).unwrap()]).unwrap();
}

fn count(env: &Environment, store: &str, q: &str) -> u64 {
    env.query(&QueryRequest::new(store, q)).unwrap().count
}

fn json_answer(env: &Environment, req: &QueryRequest) -> Value {
    let mut out = Vec::new();
    env.query(req).unwrap().write_json(env.engine(), &mut out).unwrap();
    serde_json::from_slice(&out).unwrap()
}

#[test]
fn store_administration_and_freshness() {
    let dir = tempfile::tempdir().unwrap();
    let env = numbers(dir.path(), 1000, 256);
    let stores = env.stores();
    let e = env.engine();
    // Every environment starts with `index`, which follows the lake.
    let list = stores.list(e).unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].def, StoreDef::new("index", StoreKind::Standard, 1, 1));
    assert_eq!(count(&env, "index", "*:*"), 1000);
    assert_eq!(stores.list(e).unwrap()[0].documents, 1000);
    assert!(stores.list(e).unwrap()[0].bytes > 0);

    // A new store is backfilled; boost stores live in RAM only.
    let status = stores.create(e, StoreDef::new("fast", StoreKind::Boost, 2, 2)).unwrap();
    assert_eq!(status.documents, 1000);
    assert_eq!(status.bytes, 0);
    assert!(!dir.path().join("stores/fast").exists());
    assert_eq!(count(&env, "fast", "group:g3"), (0..1000).filter(|i| i % 7 == 3).count() as u64);
    assert!(stores.create(e, StoreDef::new("fast", StoreKind::Standard, 1, 1)).is_err(), "names are unique");
    assert!(stores.create(e, StoreDef::new("no/slash", StoreKind::Standard, 1, 1)).is_err());

    // New records are visible at once, in every store.
    append_numbers(&env, 1000, 1500);
    assert_eq!(count(&env, "index", "n:[1000 TO *]"), 500);
    assert_eq!(count(&env, "fast", "n:[1000 TO *]"), 500);

    // Autocommit off: the store keeps its contents until a commit.
    stores.configure(e, "index", None, Some(false)).unwrap();
    append_numbers(&env, 1500, 1600);
    assert_eq!(count(&env, "index", "*:*"), 1500);
    assert_eq!(stores.commit(e, "index").unwrap(), 100);
    assert_eq!(count(&env, "index", "*:*"), 1600);

    // Disabled stores refuse queries; rename and destroy.
    stores.configure(e, "fast", Some(false), None).unwrap();
    let err = env.query(&QueryRequest::new("fast", "*")).unwrap_err().to_string();
    assert!(err.contains("disabled"), "{err}");
    stores.configure(e, "fast", Some(true), None).unwrap();
    stores.rename(e, "index", "main").unwrap();
    assert_eq!(count(&env, "main", "*:*"), 1600);
    assert!(dir.path().join("stores/main").exists() && !dir.path().join("stores/index").exists());
    stores.destroy(e, "main").unwrap();
    assert!(!dir.path().join("stores/main").exists());
    let names: Vec<String> = stores.list(e).unwrap().into_iter().map(|s| s.def.name).collect();
    assert_eq!(names, vec!["fast"]);
    match env.query(&QueryRequest::new("main", "*")) {
        Err(m1::Error::Query(QueryError::UnknownStore(s))) => assert_eq!(s, "main"),
        other => panic!("expected an unknown store error, got {other:?}"),
    }
    // Another process (a new handle) sees the registry and a boost store rebuilt in its RAM.
    drop(env);
    let env = Environment::open(dir.path().to_str().unwrap()).unwrap();
    assert_eq!(count(&env, "fast", "word:even"), 800);
}

#[test]
fn a_cached_store_registry_follows_changes_made_by_another_handle() {
    let dir = tempfile::tempdir().unwrap();
    let env = numbers(dir.path(), 300, 256);
    // `other` stands for another process on the same environment (the CLI beside a server).
    let other = Environment::open(dir.path().to_str().unwrap()).unwrap();
    assert_eq!(count(&env, "index", "*:*"), 300);
    for round in 0..20 {
        // Changes of the same size one after another: the cache must not take one for the other.
        let on = round % 2 == 1;
        other.stores().configure(other.engine(), "index", Some(on), None).unwrap();
        match env.query(&QueryRequest::new("index", "*:*")) {
            Ok(a) => assert!(on, "round {round}: a disabled store answered {}", a.count),
            Err(e) => assert!(!on && e.to_string().contains("disabled"), "round {round}: {e}"),
        }
    }
    other.stores().create(other.engine(), StoreDef::new("more", StoreKind::Standard, 1, 1)).unwrap();
    assert_eq!(count(&env, "more", "group:g1"), (0..300).filter(|i| i % 7 == 1).count() as u64);
    other.stores().rename(other.engine(), "more", "renamed").unwrap();
    assert!(matches!(env.query(&QueryRequest::new("more", "*")), Err(m1::Error::Query(QueryError::UnknownStore(_)))));
    assert_eq!(count(&env, "renamed", "*:*"), 300);
    let names: Vec<String> = env.stores().list(env.engine()).unwrap().into_iter().map(|s| s.def.name).collect();
    assert_eq!(names, vec!["index", "renamed"]);
}

#[test]
fn bad_queries_get_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let env = numbers(dir.path(), 10, 256);
    let err = |q: &str, sort: Option<&str>, facets: Option<Value>| -> String {
        let mut req = QueryRequest::new("index", q);
        req.sort = sort.map(str::to_string);
        req.facets = facets;
        req.rows = 1;
        env.query(&req).unwrap_err().to_string()
    };
    assert_eq!(err("n:[1 TO", None, None), "query syntax: unterminated range at 2");
    assert!(err("(n:1", None, None).contains("at 0"), "{}", err("(n:1", None, None));
    assert!(err("nope:1", None, None).contains("unknown property 'nope'"));
    assert!(err("n:1 AND (x.y:2 OR group:g1)", None, None).contains("unknown property 'x.y'"));
    assert!(err("*", Some("nope desc"), None).contains("unknown property 'nope'"));
    assert!(err("*", Some("word asc"), None).contains("text property"));
    assert!(err("*", Some("n sideways"), None).contains("asc or desc"));
    assert!(err("*", None, Some(json!({"f": {"type": "terms", "field": "word"}}))).contains("text property"));
    assert!(err("*", None, Some(json!({"f": {"type": "range", "field": "n", "start": 0, "end": 10}}))).contains("gap"));
    assert!(
        err("*", None, Some(json!({"f": {"type": "range", "field": "group", "start": 0, "end": 1, "gap": 1}})))
            .contains("integer, double or date")
    );
    assert!(err("*", None, Some(json!({"f": {"type": "histogram", "field": "n"}}))).contains("terms or range"));
    assert!(err("*", None, Some(json!([1]))).contains("JSON object"));
}

#[test]
fn deep_pages_and_streamed_answers() {
    let dir = tempfile::tempdir().unwrap();
    let env = numbers(dir.path(), 30_000, 4096);
    // Deep page under a sort: n descending, from the 25,000th record.
    let mut req = QueryRequest::new("index", "word:odd OR word:even");
    req.start = 25_000;
    req.rows = 10;
    req.sort = Some("n desc".into());
    req.fl = Some(vec!["n".into()]);
    let answer = json_answer(&env, &req);
    assert_eq!(answer["count"], 30_000);
    let got: Vec<i64> = answer["items"].as_array().unwrap().iter().map(|i| i["n"].as_i64().unwrap()).collect();
    assert_eq!(got, (4_990..5_000).rev().collect::<Vec<_>>());
    // Every item: the whole answer streams batch by batch, in key order.
    let mut req = QueryRequest::new("index", "group:g1 OR group:g2");
    req.rows = 1_000_000;
    let answer = env.query(&req).unwrap();
    let expect: Vec<u64> = (0..30_000u64).filter(|i| i % 7 == 1 || i % 7 == 2).collect();
    assert_eq!(answer.keys().unwrap(), expect);
    let batches: Vec<RecordBatch> = answer.batches(env.engine()).collect::<Result<_, _>>().unwrap();
    assert!(batches.len() > 1, "items come in several batches");
    assert!(batches.iter().all(|b| b.num_rows() <= m1_query::store::search::ITEM_BATCH));
    assert_eq!(batches.iter().map(RecordBatch::num_rows).sum::<usize>(), expect.len());
    // Streamed pages under the key sort, either direction, deep starts, compared with the same
    // page under an equivalent sort that is collected instead (n equals the key here).
    for (sort, same) in [("_m1key asc", "n asc"), ("_m1key desc", "n desc")] {
        for (start, rows) in [(0, 30_000), (25_000, 10), (9_000, 15_000), (29_990, 100)] {
            let mut a = QueryRequest::new("index", "word:even OR group:g3");
            a.sort = Some(sort.into());
            a.start = start;
            a.rows = rows;
            let mut b = a.clone();
            b.sort = Some(same.into());
            let (a, b) = (env.query(&a).unwrap(), env.query(&b).unwrap());
            assert_eq!(a.count, b.count);
            assert_eq!(a.keys().unwrap(), b.keys().unwrap(), "{sort} start {start} rows {rows}");
        }
    }
    // Small pages under a number sort over many documents: kept hits get cut and later blocks
    // are screened against the worst kept one.
    for (sort, start, rows, expect) in [
        ("n desc", 0, 10, (29_990..30_000).rev().collect::<Vec<u64>>()),
        ("n asc", 5, 10, (5..15).collect()),
        ("n desc", 1_000, 3, vec![28_999, 28_998, 28_997]),
    ] {
        let mut req = QueryRequest::new("index", "*:*");
        req.sort = Some(sort.into());
        req.start = start;
        req.rows = rows;
        assert_eq!(env.query(&req).unwrap().keys().unwrap(), expect, "{sort} start {start}");
    }
    // CSV: a header, then one line per item, `fl` order.
    let mut req = QueryRequest::new("index", "n:[10 TO 12]");
    req.rows = 10;
    req.fl = Some(vec!["group".into(), "n".into()]);
    let mut out = Vec::new();
    env.query(&req).unwrap().write_csv(env.engine(), &mut out).unwrap();
    assert_eq!(String::from_utf8(out).unwrap(), "_m1key,group,n\n10,g3,10\n11,g4,11\n12,g5,12\n");
}

#[test]
fn store_crash_child() {
    let Ok(env) = std::env::var("M1_STORE_CRASH_ENV") else { return };
    let env = Environment::open(&env).unwrap();
    env.stores().commit(env.engine(), "index").unwrap();
}

/// How many kills to make: `$M1_KILLS` (the kill campaign, `scripts/kill-campaign`), else
/// the default for CI.
fn kills(default: usize) -> usize {
    std::env::var("M1_KILLS").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[test]
fn killed_indexing_never_corrupts_a_store() {
    let dir = tempfile::tempdir().unwrap();
    let env = numbers(dir.path(), 120_000, 2_000);
    env.stores().configure(env.engine(), "index", None, Some(false)).unwrap();
    let root = dir.path().to_str().unwrap().to_string();
    let mut rng_state = 0x2545_f491_4f6c_dd1du64;
    let mut killed = 0;
    for round in 0..kills(6) {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "store_crash_child", "--nocapture"])
            .env("M1_STORE_CRASH_ENV", &root)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 7;
        rng_state ^= rng_state << 17;
        let wait = Duration::from_millis(150 + rng_state % (400 + 200 * (round as u64 % 6)));
        let start = Instant::now();
        while start.elapsed() < wait {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let finished = child.try_wait().unwrap().is_some();
        if !finished {
            child.kill().unwrap();
            killed += 1;
        }
        child.wait().unwrap();
        // Whatever was committed is whole: a reopened store answers consistently, never more
        // documents than the lake has, and every document once.
        let env = Environment::open(&root).unwrap();
        let total = count(&env, "index", "*:*");
        assert!(total <= 120_000, "round {round}: {total} documents for 120,000 records");
        assert_eq!(count(&env, "index", "word:even") + count(&env, "index", "word:odd"), total);
        // A long campaign outlasts the work: once a child finishes, start the store afresh.
        if finished && total == 120_000 {
            let def = env.stores().destroy(env.engine(), "index").unwrap();
            env.stores().create(env.engine(), def).unwrap();
        }
    }
    eprintln!("store crash test: {killed} kills in {} rounds", kills(6));
    assert!(killed >= 1, "no child was killed mid-indexing; the test proved nothing");
    // Resuming finishes the job exactly.
    let env = Environment::open(&root).unwrap();
    env.stores().commit(env.engine(), "index").unwrap();
    assert_eq!(count(&env, "index", "*:*"), 120_000);
    assert_eq!(count(&env, "index", "n:[119990 TO *]"), 10);
    assert_eq!(count(&env, "index", "group:g0"), (0..120_000).filter(|i| i % 7 == 0).count() as u64);
}

#[test]
fn dotted_names_and_relevance() {
    let dir = tempfile::tempdir().unwrap();
    let env = Environment::create(dir.path().to_str().unwrap()).unwrap();
    env.add_properties(&[
        Property::new("geo.city.name", PropertyType::String),
        Property::new("a.b.c.d.e", PropertyType::Integer),
        Property::new("doc.body", PropertyType::Text),
    ])
    .unwrap();
    let rows = [
        json!({"geo": {"city": {"name": "Oslo"}}, "a": {"b": {"c": {"d": {"e": 5}}}}, "doc": {"body": "rust"}}),
        json!({"geo": {"city": {"name": "Bergen"}}, "a": {"b": {"c": {"d": {"e": -7}}}},
               "doc": {"body": "rust rust rust is fast"}}),
        json!({"geo.city.name": "Oslo", "doc.body": "a long text that mentions rust once among many other words"}),
    ];
    let mut req = m1::PublishRequest::new(dir.path().join("in.jsonl").to_str().unwrap());
    std::fs::write(&req.file, rows.iter().map(|r| r.to_string() + "\n").collect::<String>()).unwrap();
    req.format = Some(m1_ingest::InputFormat::Jsonl);
    env.publish(&req).unwrap();
    assert_eq!(count(&env, "index", "geo.city.name:Oslo"), 2);
    assert_eq!(count(&env, "index", "a.b.c.d.e:[-10 TO 0]"), 1);
    assert_eq!(count(&env, "index", "geo.city.name:Oslo AND NOT a.b.c.d.e:*"), 1);
    // Relevance: more occurrences in a shorter text rank first.
    let mut req = QueryRequest::new("index", "doc.body:rust");
    req.rows = 3;
    req.sort = Some("score desc".into());
    assert_eq!(env.query(&req).unwrap().keys().unwrap(), vec![1, 0, 2]);
}

/// Words of 40 letters and more: tantivy's default analysis drops them, the matcher and the
/// session stores keep them; a data store must agree with the matcher.
#[test]
fn long_words_are_found_like_the_matcher_finds_them() {
    let dir = tempfile::tempdir().unwrap();
    let env = Environment::create(dir.path().to_str().unwrap()).unwrap();
    env.add_properties(&[Property::new("body", PropertyType::Text)]).unwrap();
    let long = "Pneumonoultramicroscopicsilicovolcanoconiosis".repeat(2);
    let rows = [json!({"body": format!("a {long} b")}), json!({"body": "short words only"})];
    env.append_json(rows.iter().map(|r| r.as_object().unwrap().clone())).unwrap();
    let q = format!("body:{}", long.to_lowercase());
    assert_eq!(count(&env, "index", &q), 1);
    let parsed = m1_query::syntax::parse(&q).unwrap();
    let schema = env.schema().unwrap();
    let record = rows[0].as_object().unwrap();
    assert!(m1_query::matcher::Matcher::with_schema(&parsed, &schema).matches(record), "the matcher finds it too");
}

/// Sorted pages come from several index segments, each appended on its own, with ties and
/// missing values: the shared bar that lets a search skip a segment whose values cannot make the
/// page must never change the page (checked against a model, both directions, several offsets).
#[test]
fn sorted_pages_over_many_segments_match_a_model() {
    let dir = tempfile::tempdir().unwrap();
    let env = Environment::create_with(dir.path().to_str().unwrap(), EnvConfig::default()).unwrap();
    env.add_properties(&[Property::new("v", PropertyType::Integer), Property::new("g", PropertyType::String)]).unwrap();
    let schema =
        Arc::new(ArrowSchema::new(vec![Field::new("v", DataType::Int64, true), Field::new("g", DataType::Utf8, true)]));
    // v rises with the key (so later segments hold larger values, as dates do, and most can be
    // skipped), in ties of three, and every tenth record has none; one batch spreads its values
    // over the whole range, so a page takes hits from it and from the segments at either end.
    let value = |i: i64| (i % 10 != 0).then_some(if (600..800).contains(&i) { i * 7919 % 1200 / 3 } else { i / 3 });
    let mut model: Vec<(u64, Option<i64>, bool)> = Vec::new();
    for b in 0..6i64 {
        let ids = b * 200..(b + 1) * 200;
        let v: ArrayRef = Arc::new(Int64Array::from_iter(ids.clone().map(value)));
        let g: ArrayRef =
            Arc::new(StringArray::from_iter_values(ids.clone().map(|i| if i % 3 == 0 { "a" } else { "b" })));
        env.append_batches([RecordBatch::try_new(schema.clone(), vec![v, g]).unwrap()]).unwrap();
        model.extend(ids.map(|i| (i as u64, value(i), i % 3 == 0)));
        // Index what is there, so each batch lands in a segment of its own.
        count(&env, "index", "*:*");
    }
    for (q, only_a) in [("*:*", false), ("g:a", true)] {
        for desc in [true, false] {
            for (start, rows) in [(0, 7), (3, 10), (0, 1), (590, 20)] {
                let mut want: Vec<&(u64, Option<i64>, bool)> = model.iter().filter(|r| !only_a || r.2).collect();
                want.sort_by(|a, b| {
                    let by_value = match (a.1, b.1) {
                        (None, None) => std::cmp::Ordering::Equal,
                        (None, _) => std::cmp::Ordering::Greater,
                        (_, None) => std::cmp::Ordering::Less,
                        (Some(x), Some(y)) if desc => y.cmp(&x),
                        (Some(x), Some(y)) => x.cmp(&y),
                    };
                    by_value.then(a.0.cmp(&b.0))
                });
                let want: Vec<u64> = want.iter().skip(start).take(rows).map(|r| r.0).collect();
                let req = QueryRequest {
                    rows,
                    start,
                    sort: Some(format!("v {}", if desc { "desc" } else { "asc" })),
                    ..QueryRequest::new("index", q)
                };
                let answer = env.query(&req).unwrap();
                assert_eq!(answer.keys().unwrap(), want, "{q} sorted {desc}, start {start}, rows {rows}");
                assert_eq!(answer.count, model.iter().filter(|r| !only_a || r.2).count() as u64);
            }
        }
    }
}
