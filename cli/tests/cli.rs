//! The `m1` binary: the seeds' `m1 <env> <endpoint> -param value` syntax, JSON out, errors out.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::{Value, json};

fn m1(home: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_m1")).env("M1_HOME", home).args(args).output().expect("m1 runs")
}

/// Runs m1, expects success, and parses stdout as JSON (`Null` when empty).
fn ok(home: &Path, args: &[&str]) -> Value {
    let out = m1(home, args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "m1 {args:?} failed: {stderr}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    if stdout.trim().is_empty() { Value::Null } else { serde_json::from_str(&stdout).unwrap() }
}

/// Runs m1, expects failure, and returns stderr.
fn fails(home: &Path, args: &[&str]) -> String {
    let out = m1(home, args);
    assert!(!out.status.success(), "m1 {args:?} should fail");
    assert!(out.stdout.is_empty(), "errors print nothing on stdout");
    String::from_utf8(out.stderr).unwrap()
}

#[test]
fn seed_examples_work_against_a_catalog_environment() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let created = ok(h, &["ops", "env/create", "-env", "test-m1", "-servers", "2"]);
    assert_eq!(created["name"], "test-m1");
    assert_eq!(created["servers"], 2);
    assert!(fails(h, &["ops", "env/create", "-env", "test-m1"]).contains("already exists"));

    // The seed's schema/add example, once inline and once from a file.
    ok(
        h,
        &[
            "test-m1",
            "schema/add",
            "-properties",
            r#"[{"name": "myTags", "type": "string", "multi": true,
        "description": "Represents important tags."}, {"name": "myBoolean", "type": "boolean"}]"#,
        ],
    );
    let file = h.join("schema.json");
    std::fs::write(&file, r#"[{"name":"session.id","type":"string"},{"name":"event.time","type":"date"}]"#).unwrap();
    ok(h, &["test-m1", "schema/add", "-properties", &format!("@{}", file.display())]);
    let schema = ok(h, &["test-m1", "schema"]);
    let names: Vec<&str> = schema.as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["_m1key", "_m1rand", "myTags", "myBoolean", "session.id", "event.time"]);
    assert_eq!(
        schema[2],
        json!({"name": "myTags", "type": "string", "multi": true, "description": "Represents important tags."})
    );

    let data = h.join("events.jsonl");
    let lines: String = (0..40)
        .map(|i| {
            format!(
                "{{\"session\":{{\"id\":\"s{i}\"}},\"event\":{{\"time\":{}}},\"myTags\":[\"t{i}\"],\"extra\":1}}\n",
                946702800 + i
            )
        })
        .collect();
    std::fs::write(&data, lines).unwrap();
    let report = ok(h, &["test-m1", "publish", "-file", data.to_str().unwrap()]);
    assert_eq!(
        (report["rowsPublished"].as_u64(), report["firstKey"].as_u64(), report["lastKey"].as_u64()),
        (Some(40), Some(0), Some(39))
    );
    assert_eq!(report["unmapped"], json!(["extra"]));
    assert_eq!(ok(h, &["test-m1", "next"]), json!(40));

    let got = ok(h, &["test-m1", "get", "-ids", "[30,10,20,1000]", "-properties", r#"["_m1key","session.id"]"#]);
    assert_eq!(
        got,
        json!([{"_m1key": 30, "session.id": "s30"}, {"_m1key": 10, "session.id": "s10"}, {"_m1key": 20, "session.id": "s20"}])
    );
    let range = ok(h, &["test-m1", "range", "-start", "38", "-end", "45"]);
    let rows = range.as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["event.time"], "2000-01-01T05:00:38.000Z");
    assert_eq!(rows[1]["myTags"], json!(["t39"]));

    // A path works as well as a name.
    let url = created["url"].as_str().unwrap();
    assert_eq!(ok(h, &[url, "next"]), json!(40));

    ok(h, &["test-m1", "schema/wipe"]);
    assert_eq!(ok(h, &["test-m1", "schema"]).as_array().unwrap().len(), 2);

    ok(
        h,
        &[
            "ops",
            "env/bucket/register",
            "-env",
            "test-m1",
            "-bucket",
            "myBucket",
            "-options",
            r#"{"aws_endpoint":"http://127.0.0.1:9","aws_secret_access_key":"hush"}"#,
        ],
    );
    let entry = ok(h, &["ops", "env/get", "-env", "test-m1"]);
    assert_eq!(
        entry["buckets"],
        json!([{"name": "myBucket", "options": {"aws_endpoint": "http://127.0.0.1:9", "aws_secret_access_key": "****"}}])
    );
    let catalog = std::fs::read_to_string(h.join("catalog.json")).unwrap();
    assert!(catalog.contains("hush"), "the catalog keeps the secret for the engine");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(h.join("catalog.json")).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "only the owner may read the catalog");
    }
    assert!(
        fails(h, &["ops", "env/bucket/deregister", "-env", "test-m1", "-bucket", "other"]).contains("not registered")
    );
    ok(h, &["ops", "env/bucket/deregister", "-env", "test-m1", "-bucket", "myBucket"]);
    assert!(ok(h, &["ops", "env/get", "-env", "test-m1"]).get("buckets").is_none());

    ok(h, &["ops", "env/rename", "-env", "test-m1", "-name", "renamed-m1"]);
    assert_eq!(ok(h, &["ops", "env/get", "-env", "renamed-m1"])["url"], created["url"]);
    let list = ok(h, &["ops", "env/list"]);
    assert_eq!(list.as_array().unwrap().len(), 1);
    ok(h, &["ops", "env/destroy", "-env", "renamed-m1"]);
    assert_eq!(ok(h, &["ops", "env/list"]), json!([]));
    assert!(!Path::new(url).exists(), "destroy removes the data");
}

#[test]
fn bad_input_gives_a_clear_error_and_a_failing_exit() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    ok(h, &["ops", "env/create", "-env", "e1"]);
    assert!(fails(h, &["nope", "next"]).contains("no environment named 'nope'"));
    assert!(fails(h, &["e1", "frobnicate"]).contains("unknown endpoint 'frobnicate'"));
    assert!(fails(h, &["e1", "get"]).contains("get: missing required parameter 'ids'"));
    let err = fails(h, &["e1", "get", "-ids", "[1,"]);
    assert!(err.contains("parameter 'ids' must be a list of keys") && err.contains("got '[1,'"), "{err}");
    let err = fails(h, &["e1", "range", "-start", "x", "-end", "2"]);
    assert!(err.contains("parameter 'start' must be a whole number, got 'x'"), "{err}");
    let err = fails(h, &["e1", "get", "-ids", "1", "-url", "http://x"]);
    assert!(err.contains("get takes no parameter 'url'; its parameters are: ids, properties"), "{err}");
    let err = fails(h, &["e1", "write", "-items", "[]", "-async", "perhaps"]);
    assert!(err.contains("parameter 'async' must be true or false, got 'perhaps'"), "{err}");
    let err = fails(h, &["e1", "user/add", "-username", "u", "-password", "p", "-rights", "get"]);
    assert!(err.contains("answered by `m1 serve` only"), "{err}");
    assert!(
        fails(h, &["e1", "schema/add", "-properties", r#"[{"name":"a","type":"float"}]"#])
            .contains("unknown type 'float'")
    );
    assert!(
        fails(h, &["e1", "schema/add", "-properties", "@/no/such/file"])
            .contains("reading -properties from /no/such/file")
    );
    ok(h, &["e1", "schema/add", "-properties", r#"[{"name":"n","type":"integer"}]"#]);
    let data = h.join("bad.jsonl");
    std::fs::write(&data, "{\"n\": 1}\n{\"n\": 2}\n{\"n\": \"three\"}\n").unwrap();
    let err = fails(h, &["e1", "publish", "-file", data.to_str().unwrap()]);
    assert!(err.contains("bad.jsonl:3: property 'n': value \"three\" is not a valid integer"), "{err}");
    std::fs::write(&data, "{\"n\": 1}\n[1]\n").unwrap();
    assert!(fails(h, &["e1", "publish", "-file", data.to_str().unwrap()]).contains("bad.jsonl:2:1: not a JSON object"));
    assert_eq!(ok(h, &["e1", "range", "-start", "0", "-end", "100"]), json!([]), "failed publishes commit nothing");
}

#[test]
fn quickstart_runs_and_shows_its_records() {
    let home = tempfile::tempdir().unwrap();
    let out = m1(home.path(), &["quickstart"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("\"rowsPublished\": 1000"), "{text}");
    assert!(text.contains("4. m1 quickstart next\n1000\n"), "{text}");
    assert!(text.contains("\"_m1key\": 500"), "{text}");
    // It can run again: the demo environment is rebuilt.
    assert!(m1(home.path(), &["quickstart"]).status.success());
    // Afterwards the demo is an ordinary catalog environment.
    assert_eq!(ok(home.path(), &["quickstart", "next"]), json!(1000));
}

/// Help comes from the endpoint table: every endpoint is listed, and each explains its
/// parameters, verbs and rights.
#[test]
fn help_is_derived_from_the_endpoint_table() {
    let home = tempfile::tempdir().unwrap();
    let out = m1(home.path(), &["--help"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for e in m1::endpoint::ENDPOINTS {
        assert!(text.contains(&format!("  {:20} {}", e.path, e.summary)), "{e:?} missing from m1 --help");
    }
    let out = m1(home.path(), &["anyenv", "get", "--help"]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("m1 <env> get -ids IDS [-properties PROPERTIES]"), "{text}");
    assert!(text.contains("HTTP: GET or POST /get, rights: one of get"), "{text}");
    assert!(
        text.contains("-ids         a list of keys (JSON array of integers, or 1,2,3), required: the keys"),
        "{text}"
    );
    let out = m1(home.path(), &["ops", "env/create", "--help"]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("-url") && text.contains("right 'manage' in the account"), "{text}");
    let out = m1(home.path(), &["serve", "--help"]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("m1 serve") && text.contains("-allowRead"), "{text}");
    assert!(fails(home.path(), &["anyenv", "nope", "--help"]).contains("unknown endpoint 'nope'"));
}
