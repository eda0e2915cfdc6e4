//! Parity: every endpoint of the library's table, called with the same inputs through the local
//! CLI and through the CLI as a remote client of a real `m1 serve`, answers the same (modulo
//! ids, locations, timestamps and durations). Two homes hold two identically made environments
//! and receive the same calls in the same order, so their answers must match exactly.
//!
//! Endpoints about users and tokens exist only on a server: locally they must say so, and the
//! remote CLI runs each of them in `serve_seeds` (the seeds' `m1` examples). The test ends by
//! checking that every endpoint of the table was called, so a new endpoint cannot skip parity.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use common::Server;
use m1::endpoint::{ENDPOINTS, Handler, Scope};
use serde_json::Value;

const ENV: &str = "p";

struct Out {
    ok: bool,
    stdout: String,
    stderr: String,
}

fn m1(home: &Path, args: &[&str]) -> Out {
    let out = common::m1(home).args(args).stdin(Stdio::null()).output().unwrap();
    Out {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into(),
        stderr: String::from_utf8_lossy(&out.stderr).into(),
    }
}

fn must(home: &Path, args: &[&str]) -> String {
    let o = m1(home, args);
    assert!(o.ok, "m1 {args:?}: {}", o.stderr);
    o.stdout
}

/// Values that differ between two environments made the same way.
const VARYING: &[&str] = &[
    "id",
    "url",
    "created",
    "seconds",
    "lakeSeconds",
    "indexSeconds",
    "rowsPerSecond",
    "lastUpdated",
    "bytes",
    "expires",
    "issued",
    "file",
    "completed",
    "location",
    "source",
    "timestamp",
    "endpoints",
    "stateChanged",
    "last_modified",
    "storageNow",
    "storageNowBytes",
    "samples",
    "from",
    "to",
];

fn normalize(v: &mut Value) {
    match v {
        Value::Object(map) => {
            // The server says which ops account holds an environment, and whether an
            // environment's users exist (health); locally there are neither.
            map.remove("account");
            if let Some(Value::Object(components)) = map.get_mut("components") {
                components.remove("auth");
            }
            // `/write` over HTTP stamps the caller's address (`_m1.ip`); a local call has none.
            if let Some(Value::Array(unmapped)) = map.get_mut("unmapped") {
                unmapped.retain(|u| u != "_m1.ip");
            }
            for (k, x) in map.iter_mut() {
                if VARYING.contains(&k.as_str()) {
                    *x = Value::String("*".into());
                } else {
                    normalize(x);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(normalize),
        _ => {}
    }
}

/// stdout as compared: JSON normalized, anything else (CSV) as it is.
fn answer(text: &str) -> String {
    match serde_json::from_str::<Value>(text) {
        Ok(mut v) => {
            normalize(&mut v);
            v.to_string()
        }
        Err(_) => text.to_string(),
    }
}

/// The message of a failed call: local `m1: MSG`, remote `m1: URL: STATUS: MSG`.
fn message(stderr: &str) -> String {
    let line = stderr.trim().trim_start_matches("m1: ");
    match line.split_once("://").and_then(|(_, rest)| rest.split_once(": ")) {
        Some((_, rest)) => rest.split_once(": ").map_or(rest, |(_, m)| m).to_string(),
        None => line.to_string(),
    }
}

struct Parity {
    local: PathBuf,
    client: PathBuf,
    server: Server,
    called: BTreeSet<(bool, String)>,
}

impl Parity {
    /// Calls `args` (`[target, endpoint, params...]`) both ways; answers must match.
    fn same(&mut self, args: &[&str]) -> (bool, String) {
        self.called.insert((args[0] == "ops", args[1].to_string()));
        let local = m1(&self.local, args);
        let mut remote_args = args.to_vec();
        remote_args.extend(["-remote", self.server.base.as_str()]);
        let remote = m1(&self.client, &remote_args);
        assert_eq!(local.ok, remote.ok, "{args:?}: local {} / remote {}", local.stderr, remote.stderr);
        if local.ok {
            assert_eq!(answer(&local.stdout), answer(&remote.stdout), "{args:?}");
            (true, local.stdout)
        } else {
            assert_eq!(message(&local.stderr), message(&remote.stderr), "{args:?}");
            (false, local.stderr)
        }
    }

    /// Like [`Parity::same`], and the call must succeed.
    fn ok(&mut self, args: &[&str]) -> Value {
        let (ok, out) = self.same(args);
        assert!(ok, "{args:?}: {out}");
        if out.trim().is_empty() { Value::Null } else { serde_json::from_str(&out).unwrap_or(Value::String(out)) }
    }

    /// Like [`Parity::same`], and the call must fail with `needle` in its message.
    fn fails(&mut self, args: &[&str], needle: &str) {
        let (ok, err) = self.same(args);
        assert!(!ok, "{args:?} should fail");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}

#[test]
fn every_endpoint_answers_the_same_locally_and_remotely() {
    let dir = tempfile::tempdir().unwrap();
    let (local, served, client) = (dir.path().join("local"), dir.path().join("served"), dir.path().join("client"));
    let copies = dir.path().join("copies");
    let server = common::start_server_with(
        &served,
        &["-allowRead", &dir.path().display().to_string(), "-allowLocation", &copies.display().to_string()],
    );
    let base = server.base.clone();
    // The remote side's logins: the operator's owner of the account `default`, then (once ops
    // has made it over HTTP) the environment's admin.
    must(&served, &["owner", "-username", "owner", "-password", "passphrase"]);
    must(&client, &["auth", "-remote", &base, "-username", "owner", "-password", "passphrase"]);
    let mut p = Parity { local, client: client.clone(), server, called: BTreeSet::new() };

    // --- ops, as the seeds call them ---
    p.ok(&["ops", "ping"]);
    let created = p.ok(&["ops", "env/create", "-env", ENV, "-servers", "2", "-shards", "3"]);
    assert_eq!((created["name"].as_str(), &created["shards"]), (Some(ENV), &Value::from(3)));
    p.fails(&["ops", "env/create", "-env", ENV], "already exists");
    p.fails(&["ops", "env/create", "-env", "x y"], "not a valid environment name");
    must(&client, &[ENV, "init", "-remote", &base, "-username", "admin", "-password", "passphrase"]);
    must(&client, &["auth", ENV, "-remote", &base, "-username", "admin", "-password", "passphrase"]);

    // --- environment endpoints ---
    p.ok(&[ENV, "ping"]);
    let health = p.ok(&[ENV, "health"]);
    assert_eq!(health["environment"], ENV);
    assert_eq!(p.ok(&[ENV, "schema"]).as_array().unwrap().len(), 2);
    let props = r#"[{"name":"name","type":"string"},{"name":"n","type":"integer"},{"name":"tags","type":"string","multi":true}]"#;
    p.ok(&[ENV, "schema/add", "-properties", props]);
    p.fails(&[ENV, "schema/add", "-properties", r#"[{"name":"x","type":"float"}]"#], "unknown type 'float'");
    let data = dir.path().join("rows.jsonl");
    let rows: String =
        (0..50).map(|i| format!("{{\"name\":\"n{i}\",\"n\":{i},\"tags\":[\"t{}\"]}}\n", i % 3)).collect();
    std::fs::write(&data, rows).unwrap();
    let report = p.ok(&[ENV, "publish", "-file", data.to_str().unwrap()]);
    assert_eq!(report["rowsPublished"], 50);
    p.fails(&[ENV, "publish", "-file", data.to_str().unwrap(), "-delimiter", "ab"], "one character");
    assert_eq!(p.ok(&[ENV, "next"]), Value::from(50));
    let got = p.ok(&[ENV, "get", "-ids", "3,1", "-properties", "name,n"]);
    assert_eq!(got[0]["name"], "n3");
    p.ok(&[ENV, "get", "-ids", "[7]", "-properties", r#"["tags"]"#]);
    p.fails(&[ENV, "get", "-ids", "1,x"], "'x' is not a key");
    p.fails(&[ENV, "get", "-ids", "1", "-url", "file:///x"], "get takes no parameter 'url'");
    p.fails(&[ENV, "get", "-ids", "1", "-properties", "nope"], "unknown property 'nope'");
    let range = p.ok(&[ENV, "range", "-start", "10", "-end", "13", "-properties", "n"]);
    assert_eq!(range.as_array().unwrap().len(), 3);
    let written = p.ok(&[ENV, "write", "-items", r#"[{"name":"w","n":1000}]"#, "-publish", "true", "-async", "false"]);
    assert!(written.is_object(), "{written}");
    p.ok(&[ENV, "write", "-items", r#"[{"name":"w2"}]"#]);
    p.ok(&[ENV, "system"]);
    p.ok(&[ENV, "system", "-publish-permissive", "true"]);
    let one = p.ok(&[ENV, "system/publish-permissive"]);
    assert_eq!(one["publish-permissive"], true);
    p.ok(&[ENV, "system/publish-permissive", "-value", "false"]);
    p.fails(&[ENV, "system/no-such-parameter"], "no-such-parameter");
    p.ok(&[ENV, "vacuum", "-olderThanMs", "3600000"]);

    let q = p.ok(&[
        ENV,
        "query",
        "-q",
        "n:[10 TO 19]",
        "-rows",
        "3",
        "-sort",
        "n desc",
        "-fl",
        "name,n",
        "-facets",
        r#"{"t": {"type": "terms", "field": "tags"}}"#,
    ]);
    assert_eq!(q["count"], 10);
    assert_eq!(q["items"][0]["n"], 19);
    let csv = p.ok(&[ENV, "query", "-q", "n:[1 TO 2]", "-rows", "5", "-fl", "n", "-format", "csv"]);
    assert_eq!(csv, Value::String("_m1key,n\n1,1\n2,2\n".into()));
    p.fails(&[ENV, "query", "-q", "name:(n1"], "query syntax");
    p.fails(&[ENV, "query", "-q", "*", "-store", "nope"], "unknown store 'nope'");
    p.ok(&[ENV, "store/list"]);
    p.ok(&[ENV, "store/create", "-store", "second", "-type", "boost"]);
    p.fails(&[ENV, "store/create", "-store", "second"], "already exists");
    p.ok(&[ENV, "store/rename", "-store", "second", "-name", "third"]);
    p.ok(&[ENV, "store/enable", "-store", "third", "-enable", "false"]);
    p.ok(&[ENV, "store/autocommit", "-store", "third", "-enable", "true"]);
    p.ok(&[ENV, "store/rebuild", "-store", "index"]);
    p.ok(&[ENV, "store/commit", "-store", "index"]);
    p.ok(&[ENV, "store/destroy", "-store", "third"]);

    p.ok(&[ENV, "session/add", "-store", "stash", "-shards", "1", "-replicas", "2"]);
    let ops = r#"[{"upsert": [{"session": {"id": "s1"}, "ip": "1.2.3.4"}, {"session": {"id": "s2"}, "n": 2}]},
                  {"merge": [{"session": {"id": "s1"}, "user": {"id": "u7"}}]}, {"delete": ["s0"]}]"#;
    p.ok(&[ENV, "session/update", "-store", "stash", "-ops", ops]);
    p.fails(&[ENV, "session/update", "-store", "stash", "-ops", r#"[{"upsert": [{"x": 1}]}]"#], "ops[0].upsert[0]");
    let found = p.ok(&[ENV, "session/query", "-store", "stash", "-q", "user.id:u7"]);
    assert_eq!(found["count"], 1);
    let docs = p.ok(&[ENV, "session/get", "-store", "stash", "-ids", r#"["s2", "s1"]"#]);
    assert_eq!(docs[0]["n"], 2);
    p.ok(&[ENV, "session/list"]);
    p.ok(&[ENV, "session/key", "-store", "stash", "-key", "session.id"]);
    p.ok(&[ENV, "session/rename", "-store", "stash", "-name", "kept"]);
    p.fails(&[ENV, "session/query", "-store", "gone", "-q", "*"], "no session store named 'gone'");
    p.ok(&[ENV, "session/drop", "-store", "kept"]);

    // --- ops on the environment ---
    assert_eq!(p.ok(&["ops", "env/list"]).as_array().unwrap().len(), 1);
    p.ok(&["ops", "env/get", "-env", ENV]);
    p.ok(&["ops", "env/rescale", "-env", ENV, "-servers", "3", "-threshold", "3"]);
    assert_eq!(p.ok(&["ops", "env/get", "-env", ENV])["servers"], 3);
    p.ok(&["ops", "env/reboot", "-env", ENV, "-group", "index"]);
    p.ok(&["ops", "env/store/create", "-env", ENV, "-store", "ops1", "-shards", "2"]);
    p.ok(&["ops", "env/store/rename", "-env", ENV, "-store", "ops1", "-name", "ops2"]);
    p.ok(&["ops", "env/store/destroy", "-env", ENV, "-store", "ops2"]);
    p.ok(&["ops", "env/session/create", "-env", ENV, "-store", "s", "-shards", "1"]);
    p.ok(&["ops", "env/session/rename", "-env", ENV, "-store", "s", "-name", "s2"]);
    p.ok(&["ops", "env/session/destroy", "-env", ENV, "-store", "s2"]);
    p.ok(&["ops", "env/bucket/register", "-env", ENV, "-bucket", "b1", "-options", r#"{"aws_region":"us-east-1"}"#]);
    p.fails(&["ops", "env/bucket/register", "-env", ENV, "-bucket", "b/x"], "not a bucket name");
    p.ok(&["ops", "env/bucket/grant", "-env", ENV, "-arn", "arn:aws:iam::1:role/r"]);
    let entry = p.ok(&["ops", "env/get", "-env", ENV]);
    assert_eq!(entry["readRoles"], serde_json::json!(["arn:aws:iam::1:role/r"]));
    assert_eq!(entry["buckets"][0]["name"], "b1");
    p.ok(&["ops", "env/bucket/revoke", "-env", ENV, "-arn", "arn:aws:iam::1:role/r"]);
    p.ok(&["ops", "env/bucket/deregister", "-env", ENV, "-bucket", "b1"]);
    p.ok(&["ops", "env/outbound", "-env", ENV, "-enable", "true"]);
    assert_eq!(p.ok(&["ops", "env/get", "-env", ENV])["outbound"], true);
    // --- the stage ---
    let staged = dir.path().join("staged.csv");
    std::fs::write(&staged, "name,n\nfrom-stage,77\n").unwrap();
    let up = p.ok(&[ENV, "stage/put", "-path", "in/a.csv", "-file", staged.to_str().unwrap()]);
    assert_eq!(up["size"], 21);
    p.ok(&[ENV, "stage/put", "-path", "empty/"]);
    p.fails(&[ENV, "stage/put", "-path", "../x.csv", "-file", staged.to_str().unwrap()], "climbs out");
    let listed = p.ok(&[ENV, "stage/list", "-path", "in/"]);
    assert_eq!(listed["content"][0]["name"], "a.csv");
    let (_, text) = p.same(&[ENV, "stage/get", "-path", "in/a.csv"]);
    assert_eq!(text, "name,n\nfrom-stage,77\n");
    p.same(&[ENV, "stage/get", "-path", "in/a.csv", "-offset", "7", "-length", "10"]);
    p.ok(&[ENV, "stage/move", "-path", "in/a.csv", "-newPath", "done/a.csv"]);
    p.fails(&[ENV, "stage/get", "-path", "in/a.csv"], "nothing at stage path 'in/a.csv'");
    p.ok(&[ENV, "stage/delete", "-path", "done/"]);
    // --- the environment as a service: settings, access list, stop and start ---
    let s =
        p.ok(&["ops", "env/settings", "-env", ENV, "-settings", r#"{"tier": "development", "maxTotalMemoryGb": 48}"#]);
    assert_eq!(s["service"]["tier"], "development");
    p.fails(&["ops", "env/settings", "-env", ENV, "-settings", r#"{"tier": "x"}"#], "tier");
    let s = p.ok(&["ops", "env/access", "-env", ENV, "-list", r#"[{"source": "127.0.0.0/8", "description": "here"}]"#]);
    assert_eq!(s["service"]["ipAccessList"][0]["source"], "127.0.0.0/8");
    p.fails(&["ops", "env/access", "-env", ENV, "-list", r#"[{"source": "nope"}]"#], "'nope' is not an IP address");
    p.ok(&["ops", "env/access", "-env", ENV]);
    let usage = p.ok(&["ops", "usage", "-env", ENV, "-from", "2020-01-01", "-to", "2100-01-01"]);
    assert!(usage["storageNowBytes"].as_u64().unwrap() > 0, "{usage}");
    p.fails(&["ops", "usage", "-env", ENV, "-from", "2100-01-01", "-to", "2020-01-01"], "before 'to'");
    assert_eq!(p.ok(&["ops", "env/suspend", "-env", ENV])["state"], "stopped");
    p.fails(&[ENV, "get", "-ids", "1"], "is stopped");
    assert_eq!(p.ok(&["ops", "env/resume", "-env", ENV])["state"], "running");
    p.ok(&[ENV, "get", "-ids", "1", "-properties", "name"]);
    p.ok(&["ops", "env/rename", "-env", ENV, "-name", "q"]);
    p.ok(&["ops", "env/rename", "-env", "q", "-name", ENV]);
    // --- time travel, backups, restore ---
    let versions = p.ok(&[ENV, "versions"]);
    let published =
        versions.as_array().unwrap().iter().find(|v| v["operation"] == "WRITE").unwrap()["version"].to_string();
    assert_eq!(p.ok(&[ENV, "next", "-version", &published]), Value::from(50));
    assert_eq!(p.ok(&[ENV, "schema", "-version", "0"]).as_array().unwrap().len(), 2);
    p.ok(&[ENV, "get", "-ids", "3", "-properties", "name", "-version", &published]);
    let old = p.ok(&[ENV, "query", "-q", "*", "-version", &published]);
    assert_eq!(old["count"], 50);
    p.fails(&[ENV, "get", "-ids", "3", "-version", "100000"], "version 100000 does not exist");
    let b = p.ok(&[ENV, "backup/create", "-name", "b1"]);
    assert_eq!((b["name"].as_str(), b["status"].as_str()), (Some("b1"), Some("complete")));
    p.fails(&[ENV, "backup/create", "-name", "b1"], "exists already");
    assert_eq!(p.ok(&[ENV, "backup/list"]).as_array().unwrap().len(), 1);
    p.ok(&[ENV, "backup/get", "-id", "b1"]);
    p.fails(&[ENV, "backup/get", "-id", "nope"], "no backup 'nope'");
    std::fs::create_dir_all(copies.join("taken")).unwrap();
    std::fs::write(copies.join("taken/backup.json"), "{}").unwrap();
    p.fails(
        &[ENV, "backup/copy", "-id", "b1", "-to", copies.join("taken").to_str().unwrap()],
        "a backup exists already",
    );
    p.ok(&["ops", "env/backup/create", "-env", ENV, "-name", "b2"]);
    assert_eq!(p.ok(&["ops", "env/backup/list", "-env", ENV]).as_array().unwrap().len(), 2);
    p.ok(&[ENV, "backup/delete", "-id", "b2"]);
    let restored = p.ok(&["ops", "env/restore", "-env", "r", "-from", ENV, "-backup", "b1"]);
    assert_eq!(restored["restoredFrom"]["name"], "b1");
    // A restored environment is a new one: its first admin is made with init, as for env/create.
    let base = p.server.base.clone();
    must(&client, &["r", "init", "-remote", &base, "-username", "admin", "-password", "passphrase"]);
    must(&client, &["auth", "r", "-remote", &base, "-username", "admin", "-password", "passphrase"]);
    assert_eq!(p.ok(&["r", "query", "-q", "*"])["count"], 51);
    p.fails(&["ops", "env/restore", "-env", "r", "-from", ENV, "-backup", "b1"], "already exists");
    p.ok(&["ops", "env/destroy", "-env", "r"]);
    let answer = p.ok(&[ENV, "restore", "-version", &published]);
    assert_eq!(answer["restoredVersion"].to_string(), published);
    assert_eq!(p.ok(&[ENV, "query", "-q", "*"])["count"], 50);
    p.ok(&[ENV, "restore", "-backup", "b1"]);
    assert_eq!(p.ok(&[ENV, "query", "-q", "*"])["count"], 51);

    // --- storage DR (the flows themselves: tests/dr.rs, server/tests/serve.rs) ---
    std::fs::write(copies.join("a-file"), "x").unwrap();
    p.fails(&[ENV, "dr/setup", "-replica", copies.join("a-file").to_str().unwrap()], "a-file");
    p.fails(&[ENV, "dr/status"], "DR is not set up");
    p.fails(&[ENV, "dr/failover"], "DR is not set up");
    p.fails(&[ENV, "dr/failback"], "not a failed-over primary");
    assert_eq!(p.ok(&[ENV, "dr/regions"])[0]["role"], "primary");
    p.fails(&[ENV, "dr/startPreProvision"], "DR is not set up");
    p.ok(&[ENV, "dr/stopPreProvision"]);
    p.fails(&["ops", "env/dr/status", "-env", ENV], "DR is not set up");
    p.fails(&["ops", "env/dr/failover", "-env", ENV], "DR is not set up");
    p.fails(&["ops", "env/dr/failback", "-env", ENV], "not a failed-over primary");

    p.ok(&[ENV, "schema/wipe"]);
    assert_eq!(p.ok(&[ENV, "schema"]).as_array().unwrap().len(), 2);
    p.ok(&["ops", "env/destroy", "-env", ENV]);
    assert_eq!(p.ok(&["ops", "env/list"]), serde_json::json!([]));

    // Users, tokens and accounts: only a server has them.
    for e in ENDPOINTS.iter().filter(|e| matches!(e.handler, Handler::Served)) {
        let target = if e.scope == Scope::Ops { "ops" } else { ENV };
        let o = m1(&p.local, &[target, e.path]);
        assert!(!o.ok && o.stderr.contains("answered by `m1 serve` only"), "{e:?}: {}", o.stderr);
        p.called.insert((e.scope == Scope::Ops, e.path.to_string()));
    }
    let missing: Vec<String> = ENDPOINTS
        .iter()
        .filter(|e| !p.called.contains(&(e.scope == Scope::Ops, e.path.replace("{name}", "publish-permissive"))))
        .filter(|e| !p.called.contains(&(e.scope == Scope::Ops, e.path.to_string())))
        .map(|e| format!("{e:?}"))
        .collect();
    assert!(missing.is_empty(), "endpoints without a parity call: {missing:?}");
}
