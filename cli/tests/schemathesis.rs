//! Schemathesis (from PyPI, pinned in tests/support/requirements.txt) against a live `m1 serve`
//! and its own `/openapi.json`: every operation of the environment API, ops and the management
//! API, with generated and boundary inputs; no answer may be a 5xx, and every answer must have a
//! documented status, content type and body shape.

mod common;
#[path = "../../tests/support/mod.rs"]
mod support;

use std::path::Path;
use std::process::{Command, Stdio};

use common::{m1, start_server_with};

fn must(home: &Path, args: &[&str]) {
    let out = m1(home).args(args).stdin(Stdio::null()).output().unwrap();
    assert!(out.status.success(), "m1 {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn the_openapi_document_holds_for_every_operation() {
    let dir = tempfile::tempdir().unwrap();
    let (served, client, data) = (dir.path().join("served"), dir.path().join("client"), dir.path().join("data"));
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("rows.jsonl"), "{\"name\": \"a\", \"n\": 1}\n{\"name\": \"b\", \"n\": 2}\n").unwrap();
    let server = start_server_with(&served, &["-allowRead", data.to_str().unwrap()]);
    let base = server.base.clone();
    must(&served, &["owner", "-username", "owner", "-password", "passphrase"]);
    must(&client, &["auth", "-remote", &base, "-username", "owner", "-password", "passphrase"]);
    must(&client, &["ops", "env/create", "-env", "test-m1", "-remote", &base]);
    must(&client, &["test-m1", "init", "-remote", &base, "-username", "admin", "-password", "passphrase"]);
    must(&client, &["auth", "test-m1", "-remote", &base, "-username", "admin", "-password", "passphrase"]);
    must(&client, &["test-m1", "publish", "-file", data.join("rows.jsonl").to_str().unwrap(), "-remote", &base]);
    must(&client, &["test-m1", "session/add", "-store", "s", "-shards", "1", "-replicas", "1", "-remote", &base]);
    let logins: serde_json::Value =
        serde_json::from_slice(&std::fs::read(client.join("remote.json")).unwrap()).unwrap();
    let ops = logins["ops"]["token"].as_str().unwrap();
    let env = logins["envs"]["test-m1"]["token"].as_str().unwrap();

    // The document as an operator sees it: it names the environments, so the generated calls
    // reach a real one.
    let schema = dir.path().join("openapi.json");
    let python = support::python();
    let fetch = Command::new(&python)
        .args(["-c", "import sys, urllib.request; r = urllib.request.Request(sys.argv[1], headers={'Authorization': 'Bearer ' + sys.argv[2]}); open(sys.argv[3], 'wb').write(urllib.request.urlopen(r).read())"])
        .args([&format!("{base}/openapi.json"), ops, schema.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(fetch.success());
    assert!(
        std::fs::read_to_string(&schema).unwrap().contains("\"test-m1\""),
        "an operator's document names the environments"
    );
    let out = Command::new(&python)
        .args(["-c", "import sys; from schemathesis.cli import schemathesis; sys.argv[0] = 'schemathesis'; sys.exit(schemathesis())"])
        .args(["run", schema.to_str().unwrap(), "--url", &base])
        .args(["--checks", "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"])
        .args(["--phases", "examples,coverage,fuzzing", "--max-examples", "10", "--workers", "1"])
        .args(["--request-timeout", "30", "--seed", "20261203"])
        .args(["-H", &format!("m1-auth-token: {env}"), "-H", &format!("Authorization: Bearer {ops}")])
        // Calls that end the run's own sessions (revoking its tokens, changing or removing its
        // users, stopping or destroying environments by a fuzzed name) are tested elsewhere;
        // here they would only turn every later call into a 401.
        .args(["--exclude-path-regex", "(token/delete|user/password|user/remove|/ops/env/destroy|/ops/env/suspend)$"])
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "schemathesis found problems:\n{stdout}\n{stderr}");
    // It ran every operation and generated cases for them.
    let tested = stdout.lines().find(|l| l.trim_start().starts_with("Tested:")).unwrap_or_default().to_string();
    let selected = stdout.lines().find(|l| l.trim_start().starts_with("Selected:")).unwrap_or_default().to_string();
    let count = |l: &str| l.split(':').nth(1).and_then(|v| v.trim().split('/').next()?.trim().parse::<u32>().ok());
    assert!(
        count(&tested).is_some_and(|n| n >= 150) && count(&tested) == count(&selected),
        "{tested} / {selected}\n{stdout}"
    );
    assert!(stdout.contains("passed") && !stdout.contains("failed"), "{stdout}");
    drop(server);
}
