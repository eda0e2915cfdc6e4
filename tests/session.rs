//! Session stores end to end: administration, update semantics (upsert, merge, delete, order,
//! atomic rejection), queries on nested documents, durability across reopening and
//! checkpoints, the CLI, and a proptest against a plain in-memory model.

use std::collections::BTreeMap;

use m1::session::{SessionQuery, Sessions};
use m1::{Environment, QueryError};
use m1_query::{Matcher, parse};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

fn env() -> (tempfile::TempDir, Environment) {
    let dir = tempfile::tempdir().unwrap();
    let env = Environment::create(dir.path().join("env").to_str().unwrap()).unwrap();
    (dir, env)
}

fn ops(v: Value) -> String {
    v.to_string()
}

fn q(s: &Sessions, store: &str, query: &str) -> (u64, Vec<Value>) {
    let r = s.query(store, &SessionQuery { rows: 1000, ..SessionQuery::new(query) }).unwrap();
    (r.count, r.items)
}

fn ids(items: &[Value]) -> Vec<String> {
    items
        .iter()
        .map(|d| d["session"]["id"].as_str().map(str::to_string).unwrap_or_else(|| d["session"]["id"].to_string()))
        .collect()
}

/// A document without its update stamp.
fn unstamped(mut d: Value) -> Value {
    let m1 = d.get_mut("_m1").and_then(Value::as_object_mut).expect("every stored document has _m1");
    let s = m1.get_mut("session").and_then(Value::as_object_mut).expect("_m1.session");
    assert!(s.shift_remove("lastUpdated").is_some_and(|t| t.as_i64().is_some_and(|t| t > 1_600_000_000_000)));
    if s.is_empty() {
        m1.shift_remove("session");
    }
    if m1.is_empty() {
        d.as_object_mut().unwrap().shift_remove("_m1");
    }
    d
}

#[test]
fn administration() {
    let (_d, env) = env();
    let s = env.sessions();
    assert_eq!(s.list().unwrap(), vec![]);
    s.add("stash", None, 2, 1).unwrap();
    s.add("other", Some("user.id"), 1, 2).unwrap();
    let err = s.add("stash", None, 1, 1).unwrap_err().to_string();
    assert!(err.contains("already exists"), "{err}");
    assert!(s.add("../x", None, 1, 1).unwrap_err().to_string().contains("invalid session store name"));
    assert!(s.add("z", None, 0, 1).unwrap_err().to_string().contains("shards"));
    assert!(matches!(s.update("nope", "[]"), Err(QueryError::NoSessionStore(_))));

    s.update(
        "stash",
        &ops(json!([{"upsert": [{"session": {"id": "a"}, "user": {"id": "u1"}},
        {"session": {"id": "b"}, "user": {"id": "u2"}}, {"session": {"id": "c"}}]}])),
    )
    .unwrap();
    let list = serde_json::to_value(s.list().unwrap()).unwrap();
    assert_eq!(
        list,
        json!([{"name": "other", "key": "user.id", "shards": 1, "replicas": 2, "documents": 0},
               {"name": "stash", "key": "session.id", "shards": 2, "replicas": 1, "documents": 3}])
    );

    // Re-keying is refused with a reason while a document lacks the property, or keys collide.
    let err = s.set_key("stash", "user.id").unwrap_err().to_string();
    assert!(err.contains("document 'c'") && err.contains("no key property 'user.id'"), "{err}");
    s.update("stash", &ops(json!([{"upsert": [{"session": {"id": "c"}, "user": {"id": "u1"}}]}]))).unwrap();
    let err = s.set_key("stash", "user.id").unwrap_err().to_string();
    assert!(err.contains("both have user.id = 'u1'"), "{err}");
    s.update("stash", &ops(json!([{"merge": [{"session": {"id": "c"}, "user": {"id": "u3"}}]}]))).unwrap();
    s.set_key("stash", "user.id").unwrap();
    assert_eq!(s.store("stash").unwrap().key_path(), "user.id");
    assert_eq!(s.get("stash", &["u3".into(), "c".into()]).unwrap().len(), 1);
    // The new key survives a restart and drives later updates.
    let store = s.reload("stash").unwrap();
    assert_eq!(store.key_path(), "user.id");
    assert_eq!(store.len(), 3);
    let err = s.update("stash", &ops(json!([{"upsert": [{"session": {"id": "d"}}]}]))).unwrap_err().to_string();
    assert!(err.contains("no key property 'user.id'"), "{err}");

    s.rename("stash", "stash2").unwrap();
    assert!(store.get(&["u1".into()]).unwrap_err().to_string().contains("closed"));
    assert!(matches!(s.query("stash", &SessionQuery::new("*")), Err(QueryError::NoSessionStore(_))));
    assert_eq!(q(&s, "stash2", "*").0, 3);
    assert!(s.rename("stash2", "other").unwrap_err().to_string().contains("exists"));
    s.drop_store("stash2").unwrap();
    assert_eq!(s.list().unwrap().iter().map(|i| i.name.as_str()).collect::<Vec<_>>(), ["other"]);
    assert!(!s.root().join("stash2").exists());
}

#[test]
fn update_semantics() {
    let (_d, env) = env();
    let s = env.sessions();
    s.add("st", None, 3, 1).unwrap();
    s.update(
        "st",
        &ops(json!([
            {"upsert": [{"session": {"id": "a", "n": 1}, "geo": {"city": "Oslo", "zip": "0150"}, "tags": ["x"]}]},
            {"upsert": [{"session": {"id": 7}, "v": true}]},
            {"merge": [{"session": {"id": "a"}, "geo": {"zip": null, "country": "NO"}, "tags": ["y", "z"]}]},
            {"merge": [{"session": {"id": "new"}, "deep": {"a": {"b": 1}}, "gone": null}]},
            {"upsert": [{"session": {"id": "tmp"}}], "delete": ["tmp", "never-there"]},
        ])),
    )
    .unwrap();
    let got = s.get("st", &["a".into(), "7".into(), "new".into(), "tmp".into()]).unwrap();
    assert_eq!(got.len(), 3);
    assert_eq!(
        unstamped(got[0].clone()),
        json!({"session": {"id": "a", "n": 1}, "geo": {"city": "Oslo", "country": "NO"}, "tags": ["y", "z"]})
    );
    assert_eq!(unstamped(got[1].clone()), json!({"session": {"id": 7}, "v": true}));
    assert_eq!(unstamped(got[2].clone()), json!({"session": {"id": "new"}, "deep": {"a": {"b": 1}}}));
    // An upsert replaces the whole document; a later delete in the same call wins.
    s.update("st", &ops(json!([{"upsert": [{"session": {"id": "a"}, "only": 1}]}, {"delete": [7]}]))).unwrap();
    assert_eq!(unstamped(s.get("st", &["a".into()]).unwrap()[0].clone()), json!({"session": {"id": "a"}, "only": 1}));
    assert!(s.get("st", &["7".into()]).unwrap().is_empty());

    // Bad input anywhere rejects the whole call, naming the op and position.
    let before = q(&s, "st", "*");
    for (bad, want) in [
        (
            json!([{"upsert": [{"session": {"id": "z1"}}]}, {"upsert": [{"session": {"id": "ok"}}, {"nokey": 1}]}]),
            "ops[1].upsert[1]: document has no key property 'session.id'",
        ),
        (
            json!([{"upsert": [{"session": {"id": "z1"}}]}, {"merge": [{"session": {"id": 1.5}}]}]),
            "ops[1].merge[0]: key property 'session.id' must be a string or an integer",
        ),
        (json!([{"delete": ["a"]}, {"remove": ["a"]}]), "ops[1]: unknown op 'remove'"),
        (json!([{"delete": ["a", {"x": 1}]}]), "ops[0].delete[1]"),
    ] {
        let err = s.update("st", &bad.to_string()).unwrap_err().to_string();
        assert!(err.contains(want) && err.contains("nothing was applied"), "{err}");
    }
    let err = s.update("st", r#"[{"delete": ["a"]}"#).unwrap_err().to_string();
    assert!(err.contains("not valid JSON") && err.contains("column"), "{err}");
    assert_eq!(q(&s, "st", "*"), before);
}

#[test]
fn queries_on_nested_documents() {
    let (_d, env) = env();
    let s = env.sessions();
    s.add("st", None, 4, 1).unwrap();
    let docs: Vec<Value> = (0..40)
        .map(|i| {
            json!({
                "session": {"id": format!("s{i:02}"), "start": 1_612_497_996_000i64 + i * 1000},
                "user": {"id": format!("u{}", i % 5), "vip": i % 4 == 0},
                "event": {"type": if i % 3 == 0 { "heartbeat" } else { "click" }, "score": i as f64 / 4.0,
                          "at": format!("2021-02-{:02}T10:00:00Z", 1 + i % 28), "data": {"words": format!("the quick fox {i}")}},
                "items": [{"sku": format!("k{}", i % 7)}, {"sku": "all"}],
            })
        })
        .collect();
    s.update("st", &ops(json!([{"upsert": docs}]))).unwrap();
    let count = |query: &str| q(&s, "st", query).0;
    assert_eq!(count("*"), 40);
    assert_eq!(count("user.id:u3"), 8);
    assert_eq!(count("event.type:heartbeat"), 14);
    assert_eq!(count("user.vip:true"), 10);
    assert_eq!(count("event.score:[2 TO 3}"), 4);
    assert_eq!(count("session.start:[1612497996000 TO 1612497999000]"), 4);
    assert_eq!(count("event.at:[2021-02-01T00:00:00Z TO 2021-02-03T00:00:00Z]"), 4);
    assert_eq!(count("items.sku:k6"), 5);
    assert_eq!(count("event.data.words:fox"), 40);
    assert_eq!(count("event.data.words:\"fox 7\""), 1);
    assert_eq!(count("event.type:click AND NOT user.id:u0"), 21);
    assert_eq!(count("user.id:(u1 OR u2) -event.type:heartbeat"), 11);
    assert_eq!(count("session.id:s1*"), 10);
    assert_eq!(count("missing:*"), 0);
    assert_eq!(count("fox"), 40);
    // Sort, paging, count; documents come back as stored (nested).
    let r = s
        .query("st", &SessionQuery { q: "user.id:u1".into(), sort: Some("event.score desc".into()), start: 1, rows: 3 })
        .unwrap();
    assert_eq!(r.count, 8);
    assert_eq!(ids(&r.items), ["s31", "s26", "s21"]);
    assert_eq!(r.items[0]["event"]["data"]["words"], "the quick fox 31");
    let r = s.query("st", &SessionQuery { rows: 2, ..SessionQuery::new("*") }).unwrap();
    assert_eq!((r.count, ids(&r.items)), (40, vec!["s00".to_string(), "s01".to_string()]));
    let r = s.query("st", &SessionQuery { rows: 0, ..SessionQuery::new("event.type:click") }).unwrap();
    assert_eq!((r.count, r.items.len()), (26, 0));
    assert!(matches!(s.query("st", &SessionQuery::new("a:(b")), Err(QueryError::Syntax(_))));
    // An update is visible to the next query and get.
    s.update("st", &ops(json!([{"merge": [{"session": {"id": "s00"}, "event": {"type": "purchase"}}]}]))).unwrap();
    assert_eq!(ids(&q(&s, "st", "event.type:purchase").1), ["s00"]);
    assert_eq!(count("event.type:heartbeat"), 13);
}

#[test]
fn durable_across_reopen_checkpoints_and_torn_tails() {
    let (_d, env) = env();
    let s = env.sessions();
    s.add("st", Some("k"), 2, 1).unwrap();
    for i in 0..50 {
        s.update("st", &ops(json!([{"upsert": [{"k": i, "v": i}, {"k": i + 1000, "v": -i}]}, {"delete": [i + 999]}])))
            .unwrap();
        if i == 20 {
            s.store("st").unwrap().checkpoint().unwrap();
        }
    }
    let expect = q(&s, "st", "*");
    assert_eq!(expect.0, 51);
    let store = s.reload("st").unwrap();
    assert_eq!(q(&s, "st", "*"), expect);
    // A torn record at the end of the log (a call cut short) is dropped on reopening.
    let wal = std::fs::read_dir(store.dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .max()
        .unwrap();
    drop(store);
    s.update("st", &ops(json!([{"upsert": [{"k": "late", "v": 1}]}]))).unwrap();
    let len = std::fs::metadata(&wal).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&wal).unwrap();
    f.set_len(len - 3).unwrap();
    drop(f);
    s.reload("st").unwrap();
    assert_eq!(q(&s, "st", "*"), expect);
    s.update("st", &ops(json!([{"upsert": [{"k": "after", "v": 1}]}]))).unwrap();
    s.store("st").unwrap().checkpoint().unwrap();
    s.reload("st").unwrap();
    assert_eq!(q(&s, "st", "*").0, 52);
    let files: Vec<String> = std::fs::read_dir(s.root().join("st"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(files.iter().filter(|f| f.starts_with("snap-")).count(), 1, "{files:?}");
}

#[test]
fn concurrent_writers_share_fsyncs_and_all_survive() {
    let (_d, env) = env();
    let s = env.sessions();
    s.add("st", None, 2, 1).unwrap();
    std::thread::scope(|scope| {
        for t in 0..4 {
            let s = s.clone();
            scope.spawn(move || {
                for i in 0..25 {
                    let doc = json!({"session": {"id": format!("{t}-{i}")}, "t": t});
                    s.update("st", &ops(json!([{"upsert": [doc]}]))).unwrap();
                }
            });
        }
    });
    s.reload("st").unwrap();
    assert_eq!(q(&s, "st", "*").0, 100);
    assert_eq!(q(&s, "st", "t:3").0, 25);
}

// ---- proptest against an in-memory model ----

#[derive(Debug, Clone)]
enum Step {
    Update(Vec<(u8, Vec<Value>)>),
    Query(String, Option<String>, u64, u64),
    Reopen,
}

fn key_strategy() -> impl Strategy<Value = Value> {
    prop_oneof![(0..12u8).prop_map(|k| json!(format!("k{k}"))), (0..4i64).prop_map(|k| json!(k))]
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        (-5i64..20).prop_map(Value::from),
        (-20i64..20).prop_map(|x| Value::from(x as f64 / 4.0)),
        prop::sample::select(vec!["red", "Red car", "blue", "2021-02-01T00:00:00Z", "2021-03-05", "7", ""])
            .prop_map(Value::from),
    ]
}

fn body() -> impl Strategy<Value = Map<String, Value>> {
    let inner = prop::collection::btree_map(prop::sample::select(vec!["x", "y", "z"]), leaf(), 0..3)
        .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect()));
    let field = prop_oneof![3 => leaf(), 2 => inner, 1 => prop::collection::vec(leaf(), 0..3).prop_map(Value::Array)];
    prop::collection::btree_map(prop::sample::select(vec!["a", "b", "c", "n", "a.x"]), field, 0..4)
        .prop_map(|m| m.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

fn doc() -> impl Strategy<Value = Value> {
    (key_strategy(), body()).prop_map(|(k, mut b)| {
        b.insert("s".into(), json!({"id": k}));
        Value::Object(b)
    })
}

fn query_text() -> impl Strategy<Value = String> {
    let field = prop::sample::select(vec!["a", "b", "c", "n", "a.x", "b.y", "c.z", "s.id", "n.x"]);
    let value = prop::sample::select(vec![
        "red",
        "car",
        "\"red car\"",
        "blue",
        "true",
        "false",
        "3",
        "-1.25",
        "7",
        "k3",
        "2021-02-01T00:00:00Z",
        "re*",
        "?lue",
    ]);
    let range =
        prop::sample::select(vec!["[0 TO 5]", "{-2 TO 3]", "[* TO 0}", "[a TO c]", "[2021-01-01 TO 2021-02-15]"]);
    let atom = prop_oneof![
        (field.clone(), value).prop_map(|(f, v)| format!("{f}:{v}")),
        (field.clone(), range).prop_map(|(f, r)| format!("{f}:{r}")),
        field.prop_map(|f| format!("{f}:*")),
        Just("*".to_string()),
        Just("red".to_string()),
    ];
    (atom.clone(), prop::option::of((prop::sample::select(vec!["AND", "OR", "AND NOT"]), atom))).prop_map(
        |(a, rest)| match rest {
            Some((op, b)) => format!("{a} {op} {b}"),
            None => a,
        },
    )
}

fn step() -> impl Strategy<Value = Step> {
    let op = prop_oneof![
        (Just(0u8), prop::collection::vec(doc(), 1..4)),
        (Just(1u8), prop::collection::vec(doc(), 1..4)),
        (Just(2u8), prop::collection::vec(key_strategy(), 1..3)),
    ];
    prop_oneof![
        5 => prop::collection::vec(op, 1..4).prop_map(Step::Update),
        4 => (query_text(), prop::option::of(prop::sample::select(vec!["n asc", "a desc", "c.z asc, n desc"])), 0..3u64, 0..6u64)
            .prop_map(|(q, s, start, rows)| Step::Query(q, s.map(str::to_string), start, rows)),
        1 => Just(Step::Reopen),
    ]
}

/// RFC 7386, written again for the model.
fn model_merge(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = json!({});
            }
            let t = target.as_object_mut().unwrap();
            for (k, v) in p {
                if v.is_null() {
                    t.shift_remove(k);
                } else {
                    model_merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        other => *target = other.clone(),
    }
}

fn model_key(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A sort value as the model orders it: booleans < numbers < strings, missing last.
fn model_sort_value(doc: &Value, path: &str) -> Option<(u8, f64, String)> {
    let mut v = doc;
    for part in path.split('.') {
        v = v.get(part)?;
    }
    let v = match v {
        Value::Array(items) => items.iter().find(|e| e.is_boolean() || e.is_number() || e.is_string())?,
        other => other,
    };
    match v {
        Value::Bool(b) => Some((0, f64::from(u8::from(*b)), String::new())),
        Value::Number(n) => Some((1, n.as_f64()?, String::new())),
        Value::String(s) => Some((2, 0.0, s.clone())),
        _ => None,
    }
}

fn model_order(a: &(String, Value), b: &(String, Value), sort: &Option<String>) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    for part in sort.as_deref().unwrap_or("").split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let mut w = part.split_whitespace();
        let path = w.next().unwrap();
        let desc = w.next() == Some("desc");
        let (x, y) = (model_sort_value(&a.1, path), model_sort_value(&b.1, path));
        let o = match (x, y) {
            (None, None) => Ordering::Equal,
            (None, Some(_)) => Ordering::Greater,
            (Some(_), None) => Ordering::Less,
            (Some(x), Some(y)) => {
                let o = x.0.cmp(&y.0).then(x.1.total_cmp(&y.1)).then(x.2.cmp(&y.2));
                if desc { o.reverse() } else { o }
            }
        };
        if o != Ordering::Equal {
            return o;
        }
    }
    a.0.cmp(&b.0)
}

fn run_steps(steps: Vec<Step>) -> Result<(), TestCaseError> {
    let (_d, env) = env();
    let s = env.sessions();
    s.add("p", Some("s.id"), 3, 1).unwrap();
    let mut model: BTreeMap<String, Value> = BTreeMap::new();
    for step in steps {
        match step {
            Step::Update(list) => {
                let mut opv = Vec::new();
                for (kind, items) in list {
                    match kind {
                        0 => {
                            for d in &items {
                                model.insert(model_key(&d["s"]["id"]), d.clone());
                            }
                            opv.push(json!({"upsert": items}));
                        }
                        1 => {
                            for d in &items {
                                let entry = model.entry(model_key(&d["s"]["id"])).or_insert_with(|| json!({}));
                                model_merge(entry, d);
                            }
                            opv.push(json!({"merge": items}));
                        }
                        _ => {
                            for k in &items {
                                model.remove(&model_key(k));
                            }
                            opv.push(json!({"delete": items}));
                        }
                    }
                }
                s.update("p", &Value::Array(opv).to_string()).unwrap();
            }
            Step::Reopen => {
                s.reload("p").unwrap();
            }
            Step::Query(text, sort, start, rows) => {
                let query = parse(&text).unwrap();
                let m = Matcher::untyped(&query);
                let mut hits: Vec<(String, Value)> = model
                    .iter()
                    .filter(|(_, d)| m.matches(d.as_object().unwrap()))
                    .map(|(k, d)| (k.clone(), d.clone()))
                    .collect();
                hits.sort_by(|a, b| model_order(a, b, &sort));
                let want: Vec<Value> =
                    hits.iter().skip(start as usize).take(rows as usize).map(|h| h.1.clone()).collect();
                let got = s.query("p", &SessionQuery { q: text.clone(), sort: sort.clone(), start, rows }).unwrap();
                prop_assert_eq!(got.count, hits.len() as u64, "count of {} ", text);
                let got: Vec<Value> = got.items.into_iter().map(unstamped).collect();
                prop_assert_eq!(got, want, "items of {} sorted by {:?}", text, sort);
            }
        }
    }
    // Every document by key, as the model has it.
    let keys: Vec<String> = model.keys().cloned().collect();
    let got: Vec<Value> = s.get("p", &keys).unwrap().into_iter().map(unstamped).collect();
    prop_assert_eq!(got, model.into_values().collect::<Vec<_>>());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
    #[test]
    fn session_store_matches_model(steps in prop::collection::vec(step(), 1..30)) {
        run_steps(steps)?;
    }
}
