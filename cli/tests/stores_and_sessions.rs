//! The data-store and session-store endpoints through the `m1` binary, as the seeds show them.

use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};

fn m1(home: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_m1")).env("M1_HOME", home).args(args).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

#[test]
fn cli_store_and_query_endpoints() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let data = h.join("people.jsonl");
    std::fs::write(
        &data,
        "{\"name\":\"ada\",\"age\":36,\"city\":\"London\"}\n{\"name\":\"grace\",\"age\":85,\"city\":\"New York\"}\n\
         {\"name\":\"alan\",\"age\":41,\"city\":\"London\"}\n",
    )
    .unwrap();
    assert!(m1(h, &["ops", "env/create", "-env", "t"]).0);
    let props = r#"[{"name":"name","type":"string"},{"name":"age","type":"integer"},{"name":"city","type":"string"}]"#;
    assert!(m1(h, &["t", "schema/add", "-properties", props]).0);
    let (ok, _, err) = m1(h, &["t", "publish", "-file", data.to_str().unwrap()]);
    assert!(ok, "{err}");
    let (ok, out, err) = m1(
        h,
        &[
            "t",
            "query",
            "-store",
            "index",
            "-q",
            "city:London",
            "-rows",
            "10",
            "-sort",
            "age desc",
            "-fl",
            "name,age",
            "-facets",
            r#"{"c": {"type": "terms", "field": "city"}}"#,
        ],
    );
    assert!(ok, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        v,
        json!({"count": 2, "items": [{"_m1key": 2, "name": "alan", "age": 41}, {"_m1key": 0, "name": "ada", "age": 36}],
               "facets": {"c": {"buckets": [{"val": "London", "count": 2}]}}})
    );
    let (ok, out, _) =
        m1(h, &["t", "query", "-q", "age:[40 TO *]", "-rows", "5", "-fl", "[\"name\"]", "-format", "csv"]);
    assert!(ok);
    assert_eq!(out, "_m1key,name\n1,grace\n2,alan\n");
    let (ok, out, _) = m1(h, &["t", "query", "-q", "*:*"]);
    assert!(ok);
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap(), json!({"count": 3, "items": []}));
    // Ops side of stores, as in the seed.
    let (ok, out, err) = m1(
        h,
        &[
            "ops",
            "env/store/create",
            "-env",
            "t",
            "-store",
            "second",
            "-type",
            "boost",
            "-shards",
            "2",
            "-replicas",
            "2",
        ],
    );
    assert!(ok, "{err}");
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap()["documents"], 3);
    assert!(m1(h, &["ops", "env/store/rename", "-env", "t", "-store", "second", "-name", "third"]).0);
    let (_, out, _) = m1(h, &["t", "store/list"]);
    let list: Value = serde_json::from_str(&out).unwrap();
    let names: Vec<&str> = list.as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, vec!["index", "third"]);
    assert_eq!(list[1]["type"], "boost");
    assert_eq!(list[1]["shards"], 2);
    assert!(m1(h, &["ops", "env/store/destroy", "-env", "t", "-store", "third"]).0);
    let (ok, _, err) = m1(h, &["t", "query", "-store", "third", "-q", "*"]);
    assert!(!ok && err.contains("unknown store 'third'"), "{err}");
    let (ok, _, err) = m1(h, &["t", "query", "-q", "name:(ada"]);
    assert!(!ok && err.contains("query syntax"), "{err}");
    let (ok, out, _) = m1(h, &["t", "store/rebuild", "-store", "index"]);
    assert!(ok);
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap(), json!({"documents": 3}));
}

/// Child mode: rebuilds the `index` store of `M1_STORE_CRASH_ENV` (the parent kills it).
#[test]
fn cli_session_endpoints() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let m1 = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_m1")).args(args).env("M1_HOME", &home).output().unwrap();
        (out.status.success(), String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
    };
    assert!(m1(&["ops", "env/create", "-env", "test-m1"]).0);
    let (ok, out, _) =
        m1(&["ops", "env/session/create", "-env", "test-m1", "-store", "stash", "-shards", "1", "-replicas", "2"]);
    assert!(ok);
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap()["replicas"], 2);
    let (ok, out, err) = m1(&[
        "test-m1",
        "session/update",
        "-store",
        "stash",
        "-ops",
        r#"[{"upsert": [{"ip": "65.29.29.190","session": {"id": "0295aed9-5872-4586-8086-57d3d8c40fb8","start": 1612497996184}, "_m1": {"ip": "64.150.5.135"}}]},{"delete": ["78ba3dac-3e45-4e17-940e-e66584882ce4"]}]"#,
    ]);
    assert!(ok && out.is_empty(), "{err}");
    let (ok, out, _) = m1(&["test-m1", "session/query", "-store", "stash", "-q", "_m1.ip:64.150.5.135"]);
    assert!(ok);
    let r: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["count"], 1);
    assert_eq!(r["items"][0]["session"]["start"], 1612497996184i64);
    let (ok, _, err) = m1(&["test-m1", "session/update", "-store", "stash", "-ops", r#"[{"upsert": [{"x": 1}]}]"#]);
    assert!(!ok && err.contains("ops[0].upsert[0]: document has no key property 'session.id'"), "{err}");
    assert!(m1(&["test-m1", "session/add", "-store", "b", "-key", "user.id", "-shards", "2", "-replicas", "1"]).0);
    assert!(m1(&["test-m1", "session/key", "-store", "stash", "-key", "ip"]).0);
    assert!(m1(&["test-m1", "session/rename", "-store", "stash", "-name", "newSessionStoreName"]).0);
    let (ok, out, _) = m1(&["test-m1", "session/list"]);
    assert!(ok);
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap(),
        json!([{"name": "b", "key": "user.id", "shards": 2, "replicas": 1, "documents": 0},
               {"name": "newSessionStoreName", "key": "ip", "shards": 1, "replicas": 2, "documents": 1}])
    );
    let (ok, out, _) = m1(&["test-m1", "session/get", "-store", "newSessionStoreName", "-ids", r#"["65.29.29.190"]"#]);
    assert!(ok && out.contains("0295aed9"));
    assert!(m1(&["ops", "env/session/rename", "-env", "test-m1", "-store", "b", "-name", "c"]).0);
    assert!(m1(&["test-m1", "session/drop", "-store", "c"]).0);
    assert!(m1(&["ops", "env/session/destroy", "-env", "test-m1", "-store", "newSessionStoreName"]).0);
    let (ok, out, _) = m1(&["test-m1", "session/list"]);
    assert!(ok && serde_json::from_str::<Value>(&out).unwrap() == json!([]));
    let (ok, _, err) = m1(&["test-m1", "session/query", "-store", "gone", "-q", "*"]);
    assert!(!ok && err.contains("no session store named 'gone'"), "{err}");
}
