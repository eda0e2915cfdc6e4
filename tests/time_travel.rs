//! Time travel through the library's endpoints: every version read back as an in-memory model
//! says it was, delta-rs at the same version agreeing, restore in place, and retention that
//! cleans the log and the lake without losing what a backup or the window needs.

mod support;

use std::collections::BTreeMap;

use m1::endpoint::{EnvCall, Output, call_env};
use m1::{EnvConfig, Environment, Property, PropertyType, Record};
use serde_json::{Value, json};
use support::run_python;

fn rec(v: Value) -> Record {
    v.as_object().expect("object").clone()
}

/// Calls an environment endpoint locally and returns its JSON (streams read whole).
fn call(env: &Environment, path: &str, params: &[(&str, String)]) -> Result<Value, m1::Error> {
    let params = params.iter().map(|(k, v)| (k.to_string(), v.clone()));
    match call_env(&EnvCall::local(env), path, params)? {
        Output::Json(v) => Ok(v),
        Output::Empty => Ok(Value::Null),
        Output::Stream { write, .. } => {
            let mut out = Vec::new();
            write(&mut out)?;
            Ok(serde_json::from_slice(&out).expect("a JSON answer"))
        }
    }
}

/// What the environment holds at one version.
#[derive(Clone, Debug, Default)]
struct Model {
    records: BTreeMap<u64, Value>,
    properties: Vec<String>,
    next_key: u64,
}

fn at(version: u64) -> (&'static str, String) {
    ("version", version.to_string())
}

fn check_version(env: &Environment, version: u64, model: &Model) {
    let ctx = format!("version {version}");
    let schema = call(env, "schema", &[at(version)]).unwrap();
    let names: Vec<&str> = schema.as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    let mut want: Vec<&str> = vec!["_m1key", "_m1rand"];
    want.extend(model.properties.iter().map(String::as_str));
    assert_eq!(names, want, "{ctx}: schema");
    assert_eq!(call(env, "next", &[at(version)]).unwrap(), json!(model.next_key), "{ctx}: next");
    let end = model.next_key + 5;
    let range = call(env, "range", &[("start", "0".into()), ("end", end.to_string()), at(version)]).unwrap();
    let got: Vec<u64> = range.as_array().unwrap().iter().map(|r| r["_m1key"].as_u64().unwrap()).collect();
    assert_eq!(got, model.records.keys().copied().collect::<Vec<_>>(), "{ctx}: range keys");
    for r in range.as_array().unwrap() {
        let k = r["_m1key"].as_u64().unwrap();
        for p in &model.properties {
            let want = model.records[&k].get(p).cloned().unwrap_or(Value::Null);
            assert_eq!(r.get(p).cloned().unwrap_or(Value::Null), want, "{ctx}: key {k} property {p}");
        }
    }
    // Keys that do not exist at this version (later or removed) are absent from a get.
    let ids: Vec<u64> = (0..end).step_by(3).collect();
    let got = call(env, "get", &[("ids", serde_json::to_string(&ids).unwrap()), at(version)]).unwrap();
    let got: Vec<u64> = got.as_array().unwrap().iter().map(|r| r["_m1key"].as_u64().unwrap()).collect();
    let want: Vec<u64> = ids.iter().copied().filter(|k| model.records.contains_key(k)).collect();
    assert_eq!(got, want, "{ctx}: get");
    let count = call(env, "query", &[("q", "*:*".into()), at(version)]).unwrap();
    assert_eq!(count["count"], json!(model.records.len()), "{ctx}: query count");
    if model.properties.iter().any(|p| p == "group") {
        let even = model.records.values().filter(|r| r["group"] == "even").count();
        let q = call(env, "query", &[("q", "group:even".into()), at(version)]).unwrap();
        assert_eq!(q["count"], json!(even), "{ctx}: term count");
    }
}

/// 20 versions of appends, schema changes and a restore; every version reads back as the model,
/// through get, range, next, schema and query, and delta-rs reads each one the same.
#[test]
fn every_version_reads_back_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("env");
    let config = EnvConfig { segment_rows: 7, shards: 2, ..EnvConfig::default() };
    let env = Environment::create_with(path.to_str().unwrap(), config).unwrap();
    let mut models: BTreeMap<u64, Model> = BTreeMap::new();
    let mut model = Model::default();
    models.insert(env.engine().snapshot().version, model.clone());
    let mut step = 0u64;
    while models.len() < 20 {
        step += 1;
        let version = match step % 5 {
            1 if step == 1 => {
                env.add_properties(&[Property::new("n", PropertyType::Integer)]).unwrap();
                model.properties.push("n".into());
                env.engine().snapshot().version
            }
            3 if !model.properties.iter().any(|p| p == "group") => {
                env.add_properties(&[Property::new("group", PropertyType::String)]).unwrap();
                model.properties.push("group".into());
                env.engine().snapshot().version
            }
            4 if step == 9 => {
                // Bring back an older version: its records and schema, keys never reused.
                let (&old, old_model) = models.iter().nth(models.len() / 2).unwrap();
                let answer = call(&env, "restore", &[at(old)]).unwrap();
                let next_key = model.next_key;
                model = Model { next_key, ..old_model.clone() };
                answer["version"].as_u64().unwrap()
            }
            _ => {
                let rows: Vec<Record> = (0..(step * 3 % 11 + 1))
                    .map(|i| {
                        let n = step * 100 + i;
                        rec(json!({"n": n, "group": if n.is_multiple_of(2) { "even" } else { "odd" }}))
                    })
                    .collect();
                let report = env.append_json(rows.clone()).unwrap();
                let keys = report.key_ranges.iter().flat_map(|&(s, e)| s..e);
                for (key, r) in keys.zip(rows) {
                    let mut kept = serde_json::Map::new();
                    kept.insert("_m1key".into(), json!(key));
                    for p in &model.properties {
                        if let Some(v) = r.get(p) {
                            kept.insert(p.clone(), v.clone());
                        }
                    }
                    model.records.insert(key, Value::Object(kept));
                }
                model.next_key = report.last_key.unwrap() + 1;
                report.version
            }
        };
        // Key reservations commit versions of their own: the model holds for all of them.
        let before = *models.keys().last().unwrap();
        for v in before + 1..version {
            let prior = models[&before].clone();
            models.insert(v, Model { next_key: env.engine().state_at(v).unwrap().next_key, ..prior });
        }
        models.insert(version, model.clone());
    }
    for (&v, m) in &models {
        check_version(&env, v, m);
    }
    let newest = env.engine().snapshot().version;
    assert!(matches!(env.engine().state_at(newest + 1), Err(m1::EngineError::UnknownVersion { .. })));
    let versions = call(&env, "versions", &[]).unwrap();
    let listed: Vec<u64> = versions.as_array().unwrap().iter().map(|v| v["version"].as_u64().unwrap()).collect();
    assert_eq!(listed, (0..=newest).collect::<Vec<_>>(), "versions lists every version");
    let restores: Vec<&Value> = versions.as_array().unwrap().iter().filter(|v| v["operation"] == "RESTORE").collect();
    assert_eq!(restores.len(), 1, "{versions}");
    assert!(restores[0]["segmentsRemoved"].as_u64().unwrap() > 0, "{}", restores[0]);
    for v in versions.as_array().unwrap() {
        if v["operation"] == "WRITE" {
            let (s, e) = (v["keyStart"].as_u64().unwrap(), v["keyEnd"].as_u64().unwrap());
            assert_eq!(v["rowsAdded"].as_u64().unwrap(), e - s, "{v}");
        }
    }

    // asOf: the version current at a commit's time is that commit (or a later one at the same ms).
    for v in versions.as_array().unwrap().iter().step_by(4) {
        let ts = v["timestamp"].as_i64().unwrap();
        let found = env.engine().version_as_of(ts).unwrap();
        let same_ms = versions.as_array().unwrap().iter().filter(|x| x["timestamp"].as_i64() == Some(ts));
        assert_eq!(found, same_ms.map(|x| x["version"].as_u64().unwrap()).max().unwrap());
        let iso = support::iso(ts);
        let by_date = call(&env, "next", &[("asOf", iso.clone())]).unwrap();
        assert_eq!(by_date, json!(models[&found].next_key), "asOf {iso}");
    }
    let err = call(&env, "get", &[("ids", "[0]".into()), ("asOf", "1000".into())]).unwrap_err();
    assert_eq!(err.kind(), m1::ErrorKind::NotFound, "{err}");
    assert!(err.to_string().contains("no version as of 1970-01-01T00:00:01.000Z"), "{err}");
    let err = call(&env, "get", &[("ids", "[0]".into()), ("asOf", "yesterday".into())]).unwrap_err();
    assert!(err.to_string().contains("epoch milliseconds or an ISO-8601 date"), "{err}");
    let err = call(&env, "get", &[("ids", "[0]".into()), at(newest + 7)]).unwrap_err();
    assert!(
        err.to_string().contains(&format!("version {} does not exist: the newest is {newest}", newest + 7)),
        "{err}"
    );
    let err = call(&env, "restore", &[at(newest + 1)]).unwrap_err();
    assert_eq!(err.kind(), m1::ErrorKind::NotFound, "{err}");
    assert_eq!(env.engine().refresh().unwrap().version, newest, "a refused restore commits nothing");

    // delta-rs opens the table at each version with the same rows.
    let asked: Vec<u64> = models.keys().copied().collect();
    let keys: Vec<u64> = (0..model.next_key).collect();
    let out = run_python(&[
        "delta-versions",
        path.to_str().unwrap(),
        &serde_json::to_string(&asked).unwrap(),
        &serde_json::to_string(&keys).unwrap(),
    ]);
    for (&v, m) in &models {
        let theirs = &out[v.to_string()];
        assert_eq!(theirs["version"], json!(v), "delta-rs version {v}");
        assert_eq!(theirs["rows"], json!(m.records.len()), "delta-rs rows at version {v}");
        let got: Vec<u64> = theirs["records"].as_object().unwrap().keys().map(|k| k.parse().unwrap()).collect();
        let mut got = got;
        got.sort_unstable();
        assert_eq!(got, m.records.keys().copied().collect::<Vec<_>>(), "delta-rs keys at version {v}");
        for (k, r) in theirs["records"].as_object().unwrap() {
            assert_eq!(r["n"], m.records[&k.parse::<u64>().unwrap()]["n"], "delta-rs n of key {k} at version {v}");
        }
    }
}

/// Retention removes old log entries and files no kept version needs, says which version is the
/// oldest left, keeps a backup's files, and a new environment can never be created over the
/// cleaned log.
#[test]
fn retention_cleans_log_and_lake_but_keeps_backups() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("env");
    let config = EnvConfig { segment_rows: 5, shards: 1, ..EnvConfig::default() };
    let env = Environment::create_with(path.to_str().unwrap(), config).unwrap();
    env.add_properties(&[Property::new("n", PropertyType::Integer)]).unwrap();
    for i in 0..6 {
        env.append_json((0..4).map(|j| rec(json!({"n": i * 10 + j})))).unwrap();
    }
    let before_backup = env.engine().snapshot().version;
    let backup = call(&env, "backup/create", &[("name", "nightly".into())]).unwrap();
    assert_eq!(backup["status"], "complete");
    assert_eq!(backup["rows"], json!(24));
    assert_eq!(backup["version"], json!(before_backup));
    for i in 6..9 {
        env.append_json((0..4).map(|j| rec(json!({"n": i * 10 + j})))).unwrap();
    }
    // Restore an early version: the segments added since leave the table but stay on disk.
    let early = env.engine().versions().unwrap().iter().find(|v| v.rows_added > 0).unwrap().version;
    call(&env, "restore", &[at(early)]).unwrap();
    let current = env.engine().snapshot();
    assert_eq!(current.segments.iter().map(|s| s.rows()).sum::<u64>(), 4);
    let files = |p: &std::path::Path| {
        let mut out = Vec::new();
        for e in walk(&p.join("lake")) {
            out.push(e.strip_prefix(p).unwrap().display().to_string());
        }
        out.sort();
        out
    };
    let lake_before = files(&path);
    assert_eq!(lake_before.len(), 9, "one segment per append");

    // With the default window (7 days) nothing a version or backup needs goes.
    let report = call(&env, "vacuum", &[("olderThanMs", "0".into())]).unwrap();
    assert_eq!((report["filesDeleted"].as_u64(), report["logFilesDeleted"].as_u64()), (Some(0), Some(0)), "{report}");
    assert_eq!(report["oldestVersion"], json!(0));

    // With no window, only the current version and the backup's files are kept.
    call(&env, "system", &[("retention-ms", "0".into())]).unwrap();
    let report = call(&env, "vacuum", &[("olderThanMs", "0".into())]).unwrap();
    let newest = env.engine().snapshot().version;
    assert_eq!(report["oldestVersion"], json!(newest), "{report}");
    assert_eq!(report["logFilesDeleted"], json!(newest), "every commit before the newest: {report}");
    let backup_files: std::collections::BTreeSet<String> =
        env.backup_get("nightly").unwrap().files.into_iter().map(|f| f.path).collect();
    let kept: std::collections::BTreeSet<String> = files(&path).into_iter().collect();
    let live: std::collections::BTreeSet<String> = current.segments.iter().map(|s| s.path.clone()).collect();
    assert_eq!(kept, backup_files.union(&live).cloned().collect(), "kept = backup ∪ current");
    assert_eq!(report["filesDeleted"], json!(lake_before.len() - kept.len()));
    let (commits, checkpoints, _) = support::log_files(&path);
    assert_eq!((commits, checkpoints), (vec![newest], vec![newest]), "the log starts at a checkpoint of the newest");
    assert_eq!(env.engine().oldest_restorable().unwrap(), newest);
    let err = call(&env, "get", &[("ids", "[0]".into()), at(early)]).unwrap_err();
    assert!(err.to_string().contains(&format!("the oldest restorable version is {newest}")), "{err}");
    assert_eq!(call(&env, "versions", &[]).unwrap().as_array().unwrap().len(), 1);

    // The lake still opens (from the checkpoint), reads, takes appends, and delta-rs agrees.
    let reopened = Environment::open(path.to_str().unwrap()).unwrap();
    assert_eq!(reopened.next_key().unwrap(), 36);
    reopened.append_json([rec(json!({"n": 1000}))]).unwrap();
    assert_eq!(reopened.get_json(&[36], None).unwrap()[0]["n"], json!(1000));
    let out = run_python(&["delta", path.to_str().unwrap(), "[0, 36]"]);
    assert_eq!(out["rows"], json!(5));
    assert_eq!(out["records"]["36"]["n"], json!(1000));
    assert!(matches!(
        Environment::create(path.to_str().unwrap()),
        Err(m1::Error::Engine(m1::EngineError::EnvironmentExists(_)))
    ));

    // The backup restores after all of that, in place.
    let answer = call(&reopened, "restore", &[("backup", "nightly".into())]).unwrap();
    assert_eq!(answer["restoredVersion"], json!(before_backup));
    let all = call(&reopened, "range", &[("start", "0".into()), ("end", "100".into())]).unwrap();
    let ns: Vec<i64> = all.as_array().unwrap().iter().map(|r| r["n"].as_i64().unwrap()).collect();
    let want: Vec<i64> = (0..6).flat_map(|i| (0..4).map(move |j| i * 10 + j)).collect();
    assert_eq!(ns, want);
    assert_eq!(call(&reopened, "query", &[("q", "*:*".into())]).unwrap()["count"], json!(24));
    assert_eq!(reopened.next_key().unwrap(), 37, "no key is reused after a restore");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Opened segments (footers and page indexes) stay cached across calls: a get never answers
/// from a cached segment the current version no longer holds, after a schema change, a
/// restore or a vacuum, and values always read as the current schema says.
#[test]
fn cached_segments_never_serve_a_stale_answer() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("env");
    let config = EnvConfig { segment_rows: 4, shards: 1, ..EnvConfig::default() };
    let env = Environment::create_with(path.to_str().unwrap(), config).unwrap();
    env.add_properties(&[Property::new("n", PropertyType::Integer)]).unwrap();
    env.append_json((0..8).map(|i| rec(json!({"n": i})))).unwrap();
    let get = |ids: &[u64]| -> Vec<Value> {
        env.get_json(ids, None).unwrap().into_iter().map(Value::Object).collect::<Vec<_>>()
    };
    let n = |v: &Value| v["n"].clone();
    assert_eq!(get(&[3]).iter().map(n).collect::<Vec<_>>(), [json!(3)]);
    let first = env.engine().snapshot().version;

    // Schema change: a new property reads as absent in the cached old segments.
    env.add_properties(&[Property::new("s", PropertyType::String)]).unwrap();
    env.append_json((8..12).map(|i| rec(json!({"n": i, "s": format!("v{i}")})))).unwrap();
    let got = get(&[3, 9]);
    assert_eq!(got.len(), 2);
    assert_eq!((n(&got[0]), got[0].get("s").cloned().unwrap_or(Value::Null)), (json!(3), Value::Null));
    assert_eq!((n(&got[1]), got[1]["s"].clone()), (json!(9), json!("v9")));

    // Restore the first version: records added since are gone although their segments were
    // opened and cached; new records get new keys and read back.
    call(&env, "restore", &[at(first)]).unwrap();
    assert!(get(&[9]).is_empty(), "a restored-away record is still served: {:?}", get(&[9]));
    assert_eq!(get(&[3]).iter().map(n).collect::<Vec<_>>(), [json!(3)]);
    env.append_json((0..4).map(|i| rec(json!({"n": 100 + i})))).unwrap();
    let new_key = env.next_key().unwrap() - 1;
    assert!(new_key >= 12, "no key is reused after a restore");
    assert_eq!(get(&[new_key]).iter().map(n).collect::<Vec<_>>(), [json!(103)]);

    // Vacuum deletes the files the restore left behind; every current record still reads.
    call(&env, "system", &[("retention-ms", "0".into())]).unwrap();
    let report = call(&env, "vacuum", &[("olderThanMs", "0".into())]).unwrap();
    assert!(report["filesDeleted"].as_u64().unwrap() > 0, "{report}");
    let keys: Vec<u64> = (0..8).chain(new_key - 3..=new_key).collect();
    let want: Vec<Value> = (0..8).chain(100..104).map(|i| json!(i)).collect();
    assert_eq!(get(&keys).iter().map(n).collect::<Vec<_>>(), want);
    assert!(get(&[9]).is_empty());
}
