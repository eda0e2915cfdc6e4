//! The seeds' curl examples against the real `m1 serve` binary (tests/seeds/curl_examples.txt),
//! with the CLI as a remote client for the setup: `m1 signup`/`m1 auth` (ops) and
//! `m1 auth test-m1` store tokens in $M1_HOME owner-only, then `m1 ops ...` and `m1 test-m1 ...`
//! go over HTTP.

mod common;
#[path = "../../tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::Stdio;

use common::{Server, m1, start_server_with};
use serde_json::{Value, json};
use support::Moto;

/// Runs the CLI and returns stdout parsed as JSON (Null when empty); panics on failure.
fn cli(home: &Path, args: &[&str]) -> Value {
    let out = m1(home).args(args).stdin(Stdio::null()).output().unwrap();
    assert!(out.status.success(), "m1 {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    if text.trim().is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap() }
}

/// One example: its name, what it must give, the command.
struct Example {
    name: String,
    expect: String,
    command: String,
}

fn examples(file: &str) -> Vec<Example> {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/seeds").join(file)).unwrap();
    let mut out: Vec<Example> = Vec::new();
    for line in text.lines() {
        if let Some(head) = line.strip_prefix("## ") {
            let (name, expect) = head.split_once(" -> ").unwrap();
            out.push(Example { name: name.to_string(), expect: expect.to_string(), command: String::new() });
        } else if !line.starts_with('#')
            && let Some(e) = out.last_mut()
        {
            e.command.push_str(line);
            e.command.push('\n');
        }
    }
    out
}

/// Splits a shell command line the way bash would for these examples: quotes, and
/// backslash-newline continuations.
fn shell_words(s: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' | '"' => {
                in_word = true;
                for d in chars.by_ref() {
                    if d == c {
                        break;
                    }
                    cur.push(d);
                }
            }
            '\\' if chars.peek() == Some(&'\n') => {
                chars.next();
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    words
}

/// A curl invocation: method, URL, headers, body (`-d` parts joined with `&`, sent unencoded
/// as curl does).
fn curl(agent: &ureq::Agent, words: &[String]) -> (u16, String) {
    assert_eq!(words[0], "curl");
    let (mut method, mut url, mut headers, mut data) = (None, None, Vec::new(), Vec::new());
    let mut it = words[1..].iter();
    while let Some(w) = it.next() {
        match w.as_str() {
            "-d" => data.push(it.next().unwrap().clone()),
            "-H" => headers.push(it.next().unwrap().clone()),
            "-X" => method = Some(it.next().unwrap().clone()),
            u => url = Some(u.to_string()),
        }
    }
    let url = url.unwrap();
    let method = method.unwrap_or_else(|| if data.is_empty() { "GET".into() } else { "POST".into() });
    let mut req = ureq::http::Request::builder().method(method.as_str()).uri(&url);
    for h in &headers {
        let (k, v) = h.split_once(':').unwrap();
        req = req.header(k.trim(), v.trim());
    }
    let response = if data.is_empty() {
        agent.run(req.body(()).unwrap())
    } else {
        req = req.header("content-type", "application/x-www-form-urlencoded");
        agent.run(req.body(data.join("&")).unwrap())
    }
    .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = response.status().as_u16();
    (status, response.into_body().read_to_string().unwrap())
}

fn shape_of(text: &str) -> &'static str {
    if text.is_empty() {
        return "none";
    }
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(m)) if m.contains_key("message") && m.contains_key("status") => "error",
        Ok(Value::Object(_)) => "object",
        Ok(Value::Array(_)) => "array",
        Ok(Value::Number(_)) => "number",
        _ => "not json",
    }
}

fn gz(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// The set-up both runs share: the seeds' environment `test-m1`, `seed-env` standing for the
/// placeholder environment id, `myenv-m1` to rename, `s3://m1-public/reddit/us.jsonl.gz` on moto
/// (30,001 records with a session id), a server, the ops owner (through the CLI, which keeps
/// the login), the bucket registered for `test-m1`, its first admin, and the user `user`.
fn setup(home: &Path, moto: &Moto) -> (Server, Value) {
    cli(home, &["ops", "env/create", "-env", "test-m1"]);
    let scratch = cli(home, &["ops", "env/create", "-env", "seed-env"]);
    cli(home, &["ops", "env/create", "-env", "myenv-m1"]);
    moto.create_bucket("m1-public");
    let store = m1_engine::storage::Storage::open("s3://m1-public", &moto.options()).unwrap();
    let rows: String = (0..30_001).map(|i| format!("{{\"session\": {{\"id\": \"s{i}\"}}, \"n\": {i}}}\n")).collect();
    store.put("reddit/us.jsonl.gz", gz(rows.as_bytes()).into()).unwrap();
    // The operator's set-up: the owner of the machine's environments, the first admin of
    // test-m1, and a server that lets the seeds' `signup` examples sign up.
    cli(home, &["owner", "-username", "owner", "-password", "passphrase"]);
    cli(home, &["init", "test-m1", "-username", "admin", "-password", "passphrase"]);
    let server = start_server_with(home, &["-signup", "true"]);
    let url = server.base.clone();
    cli(home, &["auth", "-remote", &url, "-username", "owner", "-password", "passphrase"]);
    let options: BTreeMap<String, String> = moto.options().into_iter().collect();
    let options = serde_json::to_string(&options).unwrap();
    cli(home, &["ops", "env/bucket/register", "-env", "test-m1", "-bucket", "m1-public", "-options", &options]);
    cli(home, &["auth", "test-m1", "-remote", &url, "-username", "admin", "-password", "passphrase"]);
    cli(home, &["test-m1", "user/add", "-username", "user", "-password", "passphrase", "-rights", r#"["get"]"#]);
    (server, scratch)
}

/// The set-up steps between examples (see tests/seeds/curl_examples.txt): the seeds' examples
/// are not one script, e.g. they create `index`, rename it, then destroy `index`.
fn between_examples(home: &Path, name: &str, scratch: &Value) {
    let e = scratch["name"].as_str().unwrap();
    let steps: &[&[&str]] = match name {
        "000 env/store/create" => &[&["ops", "env/store/destroy", "-env", e, "-store", "index"]],
        "000 env/store/destroy" => &[&["ops", "env/store/create", "-env", e, "-store", "index"]],
        "000 env/session/destroy" => &[&["ops", "env/session/create", "-env", e, "-store", "stash"]],
        "002 session/update" => &[&["ops", "env/session/create", "-env", "test-m1", "-store", "stash"]],
        "002 session/add" => &[&["test-m1", "session/drop", "-store", "stash"]],
        "002 session/drop" => &[&["test-m1", "session/add", "-store", "stash", "-shards", "1", "-replicas", "1"]],
        _ => &[],
    };
    for args in steps {
        cli(home, args);
    }
}

/// Replaces what the seeds hold as placeholders (see tests/seeds/*.txt).
fn placeholders(text: &str, scratch: &Value) -> String {
    text.replace("31e1192e-5415-4d85-a45e-b88897c96c1bd", "default")
        .replace("31e1192e-5415-4d85-a45e-b88897c96c1b", "default")
        .replace("24e27632d234452ba37e60936c0e88eb", scratch["id"].as_str().unwrap())
        .replace(SAMPLE_TOKEN, "$myToken")
        // The stored seeds lost `username=<email>` to a web page's e-mail obfuscation ('=' is
        // legal in an address, so all of it became "[email protected]"); the m1 examples lost
        // only the address.
        .replace("-username [email\u{a0}protected]", "-username seed.user@example.com")
        .replace("[email\u{a0}protected]", "username=seed.user@example.com")
}

const SAMPLE_TOKEN: &str = "eFRxichv7cTeqks99XD+iNBqR3LlgILIZ3nhKieS8c8qajV9+JcNqSqZfngvS+gJM3IBKnvI2Crd66WOIswtlr7ps5DnOtCp5KjJu/lUKN2bCiUUGKJKHc8wYgUKienHOoL00LIbsLvCMQjcjoW9U+u88ZEqqvyE/qhSmTJSONdnEicbHYzy9pjJ0+RcrFyP";

#[test]
fn seed_curl_examples_and_remote_cli() {
    let home = tempfile::tempdir().unwrap();
    let home = home.path();
    let moto = Moto::start();
    let (server, scratch) = setup(home, &moto);
    let url = server.base.as_str();
    let logins = home.join("remote.json");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&logins).unwrap().permissions().mode() & 0o777, 0o600);
    }
    assert_eq!(cli(home, &["test-m1", "next"]), json!(0));
    assert_eq!(cli(home, &["ops", "env/list"]).as_array().unwrap().len(), 3);

    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let ops_token = {
        let (s, body) =
            curl(&agent, &shell_words(&format!("curl {url}/ops/auth -d username=owner&password=passphrase")));
        assert_eq!(s, 200);
        serde_json::from_str::<Value>(&body).unwrap()["token"].as_str().unwrap().to_string()
    };
    let mut admin_password = "passphrase".to_string();
    let env_login = |password: &str| -> String {
        let (s, body) =
            curl(&agent, &shell_words(&format!("curl {url}/test-m1/auth -d username=admin&password={password}")));
        assert_eq!(s, 200, "{body}");
        serde_json::from_str::<Value>(&body).unwrap()["token"].as_str().unwrap().to_string()
    };
    let mut env_token = env_login(&admin_password);
    let mut ran = 0;
    for ex in examples("curl_examples.txt") {
        let (status, shape) = ex.expect.split_once(' ').unwrap();
        let ops_host = ex.command.contains("https://ops.minusonedb.com/");
        between_examples(home, &ex.name, &scratch);
        if ex.name == "001 publish" {
            // After the schema/wipe example, give the published records a property to read back.
            let (s, _) = curl(
                &agent,
                &[
                    "curl".into(),
                    format!("{url}/test-m1/schema/add"),
                    "-d".into(),
                    r#"properties=[{"name": "session.id", "type": "string"}]"#.into(),
                    "-H".into(),
                    format!("m1-auth-token: {env_token}"),
                ],
            );
            assert_eq!(s, 200);
        }
        let command = placeholders(&ex.command, &scratch)
            .replace("https://ops.minusonedb.com/", &format!("{url}/ops/"))
            .replace("https://test-m1.minusonedb.com/", &format!("{url}/test-m1/"))
            .replace("$myToken", if ops_host { &ops_token } else { &env_token });
        let (got, body) = curl(&agent, &shell_words(&command));
        assert_eq!(got.to_string(), status, "{}: {body}\n{command}", ex.name);
        assert_eq!(shape_of(&body), shape, "{}: {body}", ex.name);
        ran += 1;
        let value: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        match ex.name.as_str() {
            "001 user/password" => admin_password = "newpassphrase".into(),
            "001 token/delete" => {
                env_token = env_login(&admin_password);
                // The CLI's stored login went too.
                cli(home, &["auth", "test-m1", "-remote", url, "-username", "admin", "-password", &admin_password]);
            }
            "001 publish" => assert_eq!(value["rowsPublished"], 30_001, "{body}"),
            "001 get" => assert_eq!(
                value,
                json!([{"_m1key": 10000, "session.id": "s9999"}, {"_m1key": 20000, "session.id": "s19999"},
                       {"_m1key": 30000, "session.id": "s29999"}])
            ),
            "001 range" => {
                let rows = value.as_array().unwrap();
                assert_eq!(
                    (rows.len(), &rows[0]["_m1key"], &rows[19_999]["session.id"]),
                    (20_000, &json!(10000), &json!("s29998"))
                );
            }
            "001 next" => assert_eq!(value, json!(30_002)),
            "000 env/create" => assert_eq!(value["name"], "newenvironment-m1"),
            _ => {}
        }
    }
    assert_eq!(ran, 51);
    // The CLI reads through the server too (seed 001's m1 examples).
    env_token.clear();
    cli(home, &["auth", "test-m1", "-remote", url, "-username", "admin", "-password", &admin_password]);
    let got =
        cli(home, &["test-m1", "get", "-ids", "[10000,20000,30000]", "-properties", r#"["_m1key","session.id"]"#]);
    assert_eq!(got[2]["session.id"], "s29999");
    let range = cli(home, &["test-m1", "range", "-start", "10000", "-end", "10003"]);
    assert_eq!(range.as_array().unwrap().len(), 3);
    let out = m1(home).args(["test-m1", "schema/wipe", "-remote", "http://127.0.0.1:9"]).output().unwrap();
    assert!(!out.status.success(), "an unreachable server is an error");
    drop(server);
}

/// Runs the CLI with `stdin`, returning (success, stdout, stderr).
fn cli_raw(home: &Path, url: &str, args: &[String], stdin: &str) -> (bool, String, String) {
    let mut child = m1(home)
        .args(args)
        .env("M1_REMOTE", url)
        .current_dir(home)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

#[test]
fn seed_m1_examples_through_remote_cli() {
    let home = tempfile::tempdir().unwrap();
    let home = home.path();
    let moto = Moto::start();
    let (server, scratch) = setup(home, &moto);
    let url = server.base.clone();
    std::fs::write(home.join("fileWithSchema.json"), r#"[{"name": "fromFile", "type": "string"}]"#).unwrap();
    let mut admin_password = "passphrase".to_string();
    let mut ran = 0;
    for ex in examples("m1_examples.txt") {
        let stdin = match ex.name.as_str() {
            "000 signup" => "seed.user@example.com\npassphrase\n".to_string(),
            "000 auth" => "owner\npassphrase\n".to_string(),
            "001 auth test-m1" => format!("admin\n{admin_password}\n"),
            _ => String::new(),
        };
        between_examples(home, &ex.name, &scratch);
        if ex.name == "001 publish" {
            cli(home, &["test-m1", "schema/add", "-properties", r#"[{"name": "session.id", "type": "string"}]"#]);
        }
        let logins: Value = serde_json::from_slice(&std::fs::read(home.join("remote.json")).unwrap()).unwrap();
        let env_token = logins["envs"]["test-m1"]["token"].as_str().unwrap_or_default().to_string();
        let command = placeholders(&ex.command, &scratch)
            .replace("$myToken", &env_token)
            .replace("your-env", "test-m1")
            .replace("$yourAccountEmail", "reader@project.iam.gserviceaccount.com");
        let args: Vec<String> = shell_words(&command).into_iter().skip(1).collect();
        let (ok, stdout, stderr) = cli_raw(home, &url, &args, &stdin);
        match ex.expect.as_str() {
            "ok" => assert!(ok, "{}: {command}\n{stderr}", ex.name),
            _ => {
                assert!(!ok, "{} should fail: {stdout}", ex.name);
                assert!(stderr.contains("501"), "{}: {stderr}", ex.name);
            }
        }
        ran += 1;
        let value: Value = serde_json::from_str(&stdout).unwrap_or(Value::Null);
        match ex.name.as_str() {
            "001 user/password" => admin_password = "newpassphrase".into(),
            "001 token/delete" => {
                let (ok, _, err) =
                    cli_raw(home, &url, &["auth".into(), "test-m1".into()], &format!("admin\n{admin_password}\n"));
                assert!(ok, "{err}");
            }
            "001 token/data" => assert_eq!(value["username"], "admin", "{stdout}"),
            "001 user/get" => assert_eq!(value["rights"], json!(["get"]), "{stdout}"),
            "001 publish" => assert_eq!(value["rowsPublished"], 30_001, "{stdout}"),
            "001 system" => assert_eq!(value["gcs-service-account"], "reader@project.iam.gserviceaccount.com"),
            "001 next" => assert_eq!(value, json!(30_002)),
            "001 get" => assert_eq!(value[1], json!({"_m1key": 20000, "session.id": "s19999"})),
            "001 range" => assert_eq!(value.as_array().map(Vec::len), Some(20_000)),
            "000 account/list" => assert!(value.as_array().is_some_and(|a| a.iter().any(|x| x["id"] == "default"))),
            _ => {}
        }
    }
    assert_eq!(ran, 54);
    drop(server);
}
