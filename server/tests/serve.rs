//! End-to-end tests of `m1 serve` over real HTTP on loopback: routing, auth, users, tokens,
//! system parameters, reads and writes, ops, persistence, and bad input.

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::*;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_by_host_and_path_and_reads() {
    let h = Harness::start().await;
    let admin = h.init_admin().await;
    // Path prefix and host name reach the same environment.
    let by_path = h.env("GET", "next", Some(&admin), &[]).await;
    assert_eq!((by_path.status, &by_path.json), (200, &json!(100)));
    let url = format!("http://test-m1.localhost:{}/next", h.addr.port());
    let by_host = call(&h.client, "GET", &url, Some(&admin), &[]).await;
    assert_eq!((by_host.status, &by_host.json), (200, &json!(100)));
    let ping = call(&h.client, "GET", &format!("http://ops.localhost:{}/ping", h.addr.port()), None, &[]).await;
    assert_eq!(ping.status, 200);
    // Unknown environment and endpoint.
    assert_error(&h.env("GET", "nope", Some(&admin), &[]).await, 404);
    assert_error(&call(&h.client, "GET", &h.url("other-env", "next"), None, &[]).await, 404);
    // get in the order asked, missing ids absent; properties narrow the columns.
    let got = h.env("POST", "get", Some(&admin), &[("ids", "[5,1,999]"), ("properties", r#"["name"]"#)]).await;
    assert_eq!(got.json, json!([{"_m1key": 5, "name": "row5"}, {"_m1key": 1, "name": "row1"}]), "{got:?}");
    let got = h.env("GET", "get", Some(&admin), &[("ids", "2,3")]).await;
    assert_eq!(got.json.as_array().unwrap().len(), 2);
    assert_eq!(got.json[1]["n"], 3);
    // range streams the records in key order.
    let range = h.env("POST", "range", Some(&admin), &[("start", "10"), ("end", "90")]).await;
    let rows = range.json.as_array().unwrap_or_else(|| panic!("{range:?}"));
    assert_eq!(rows.len(), 80);
    assert!(rows.iter().enumerate().all(|(i, r)| r["_m1key"] == json!(10 + i) && r["n"] == json!(10 + i)));
    let schema = h.env("GET", "schema", Some(&admin), &[]).await;
    assert!(schema.json.as_array().unwrap().iter().any(|p| p["name"] == "session.id"), "{schema:?}");
    let health = h.env("GET", "health", None, &[]).await;
    assert_eq!(
        (health.json["status"].as_str(), &health.json["components"]["lake"]["nextKey"]),
        (Some("ok"), &json!(100))
    );
    // /query on the default store: count, items in sort order, facets; CSV; unknown store.
    let facets = r#"{"names": {"type": "terms", "field": "name", "limit": 2}}"#;
    let params = [
        ("store", "index"),
        ("q", "n:[10 TO 19]"),
        ("rows", "3"),
        ("sort", "n desc"),
        ("fl", "name"),
        ("facets", facets),
    ];
    let q = h.env("POST", "query", Some(&admin), &params).await;
    assert_eq!(q.json["count"], 10, "{q:?}");
    assert_eq!(
        q.json["items"],
        json!([{"_m1key": 19, "name": "row19"}, {"_m1key": 18, "name": "row18"}, {"_m1key": 17, "name": "row17"}])
    );
    assert_eq!(q.json["facets"]["names"]["buckets"].as_array().unwrap().len(), 2, "{q:?}");
    let csv = h
        .env("GET", "query", Some(&admin), &[("q", "n:[1 TO 2]"), ("rows", "5"), ("fl", "n"), ("format", "csv")])
        .await;
    assert_eq!(csv.text, "_m1key,n\n1,1\n2,2\n", "{csv:?}");
    assert_error(&h.env("POST", "query", Some(&admin), &[("store", "nope"), ("q", "*")]).await, 404);
    assert_error(&h.env("POST", "query", Some(&admin), &[("q", "n:(1")]).await, 400);
    assert_error(&h.env("POST", "query", Some(&admin), &[("q", "*"), ("rows", "many")]).await, 400);
    // Wrong verb.
    assert_error(&h.env("POST", "schema", Some(&admin), &[]).await, 405);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_write_publish_and_parameter_encodings() {
    let h = Harness::start().await;
    let admin = h.init_admin().await;
    let props = r#"[{"name": "myTags", "type": "string", "multi": true}, {"name": "myBoolean", "type": "boolean"}]"#;
    let r = h.env("POST", "schema/add", Some(&admin), &[("properties", props)]).await;
    assert_eq!((r.status, r.text.as_str()), (200, ""), "no body when successful");
    // JSON body and multipart carry the same parameters as a form.
    let r = h
        .client
        .post(h.url("test-m1", "write"))
        .header("m1-auth-token", &admin)
        .json(&json!({"items": [{"myTags": ["a", "b"], "myBoolean": true}], "publish": true, "async": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let report: Value = r.json().await.unwrap();
    assert_eq!(report["keys"], json!([100]), "{report}");
    let form = reqwest::multipart::Form::new().text("ids", "[100]");
    let r =
        h.client.post(h.url("test-m1", "get")).header("m1-auth-token", &admin).multipart(form).send().await.unwrap();
    let got: Value = r.json().await.unwrap();
    assert_eq!(got[0]["myTags"], json!(["a", "b"]));
    assert_eq!(got[0]["myBoolean"], json!(true));
    // /write stamps the client address and reception time (kept in the archive).
    let r = h.env("POST", "write", Some(&admin), &[("items", r#"[{"x": 1}]"#), ("async", "false")]).await;
    assert_eq!(r.status, 200, "{r:?}");
    // publish a local file.
    let file = h.home.path().join("in.jsonl");
    std::fs::write(&file, "{\"name\": \"p1\", \"n\": 7}\n{\"name\": \"p2\", \"n\": 8}\n").unwrap();
    let r = h.env("POST", "publish", Some(&admin), &[("file", file.to_str().unwrap())]).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json["rowsPublished"], 2, "{r:?}");
    let next = h.env("GET", "next", Some(&admin), &[]).await;
    assert_eq!(next.json, json!(103));
    // A bad row in strict mode is the caller's input: 400 with the place.
    std::fs::write(&file, "{\"n\": \"seven\"}\n").unwrap();
    let r = h.env("POST", "publish", Some(&admin), &[("file", file.to_str().unwrap())]).await;
    assert_error(&r, 400);
    assert!(r.json["message"].as_str().unwrap().contains("in.jsonl"), "{r:?}");
    let r = h.env("POST", "schema/wipe", Some(&admin), &[]).await;
    assert_eq!(r.status, 200);
    let schema = h.env("GET", "schema", Some(&admin), &[]).await;
    assert_eq!(schema.json.as_array().unwrap().len(), 2, "only _m1key and _m1rand remain: {schema:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_tokens_and_ip_binding() {
    let h = Harness::start().await;
    let admin = h.init_admin().await;
    // /init over HTTP: never for an environment made on the machine (see serve_security).
    assert_error(&h.env("POST", "init", None, &[("username", "x"), ("password", PASSWORD)]).await, 403);
    assert_error(&h.env("POST", "auth", None, &[("username", ADMIN), ("password", "wrong-pass")]).await, 401);
    assert_error(&h.env("POST", "auth", None, &[("username", "ghost"), ("password", PASSWORD)]).await, 401);
    // Seed form: rights comma separated.
    let r = h
        .env(
            "POST",
            "user/add",
            Some(&admin),
            &[("username", "newUser"), ("password", PASSWORD), ("rights", "schema,get")],
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let r =
        h.env("POST", "user/add", Some(&admin), &[("username", "short"), ("password", "abc"), ("rights", "get")]).await;
    assert_error(&r, 400);
    let list = h.env("GET", "user/list", Some(&admin), &[]).await;
    assert!(!list.text.contains("argon2") && !list.text.contains(PASSWORD), "no hashes or passwords: {list:?}");
    let user = h.env("GET", "user/get", Some(&admin), &[("username", "newUser")]).await;
    assert_eq!(user.json["rights"], json!(["schema", "get"]));
    let r = h
        .env("POST", "user/update", Some(&admin), &[("username", "newUser"), ("rights", r#"["get","publish"]"#)])
        .await;
    assert_eq!(r.status, 200);
    let token = h.login("newUser", PASSWORD).await;
    // Rights apply live: publish now, schema no longer.
    assert_eq!(h.env("GET", "next", Some(&token), &[]).await.status, 200);
    assert_error(&h.env("POST", "schema/wipe", Some(&token), &[]).await, 403);
    // Another address cannot use the token.
    let other = call(&h.other_ip, "GET", &h.url("test-m1", "next"), Some(&token), &[]).await;
    assert_error(&other, 401);
    // A user changes their own password, not another's.
    let r = h.env("POST", "user/password", Some(&token), &[("password", "newpassphrase")]).await;
    assert_eq!(r.status, 200);
    let r = h.env("POST", "user/password", Some(&token), &[("password", "newpassphrase"), ("username", ADMIN)]).await;
    assert_error(&r, 403);
    let token = h.login("newUser", "newpassphrase").await;
    // ip and ttl need admin.
    let r = h.env("POST", "auth", None, &[("username", "newUser"), ("password", "newpassphrase"), ("ip", "...")]).await;
    assert_error(&r, 403);
    let r = h
        .env("POST", "auth", Some(&admin), &[("username", "newUser"), ("password", "newpassphrase"), ("ip", "...")])
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let anywhere = r.json["token"].as_str().unwrap().to_string();
    assert!(anywhere.len() >= 32);
    let other = call(&h.other_ip, "GET", &h.url("test-m1", "next"), Some(&anywhere), &[]).await;
    assert_eq!(other.status, 200, "{other:?}");
    let r = h
        .env(
            "POST",
            "auth",
            Some(&admin),
            &[("username", "newUser"), ("password", "newpassphrase"), ("ip", "127.0.0.2")],
        )
        .await;
    let for_other = r.json["token"].as_str().unwrap().to_string();
    assert_eq!(call(&h.other_ip, "GET", &h.url("test-m1", "next"), Some(&for_other), &[]).await.status, 200);
    assert_error(&h.env("GET", "next", Some(&for_other), &[]).await, 401);
    // ttl expires.
    let r = h.env("POST", "auth", None, &[("username", ADMIN), ("password", PASSWORD), ("ttl", "50")]).await;
    let short = r.json["token"].as_str().unwrap().to_string();
    assert_eq!(h.env("GET", "next", Some(&short), &[]).await.status, 200);
    tokio::time::sleep(Duration::from_millis(80)).await;
    assert_error(&h.env("GET", "next", Some(&short), &[]).await, 401);
    // token/list shows ids, never secrets; token/data decodes one.
    let list = h.env("GET", "token/list", Some(&admin), &[]).await;
    assert!(list.json.as_array().unwrap().len() >= 3, "{list:?}");
    assert!(!list.text.contains(&token) && !list.text.contains(&admin));
    let data = h.env("POST", "token/data", Some(&admin), &[("token", &token)]).await;
    assert_eq!((data.json["username"].as_str(), &data.json["ip"]), (Some("newUser"), &json!("127.0.0.1")), "{data:?}");
    assert_eq!(data.json["rights"], json!(["get", "publish"]));
    // user/remove ends the user's tokens; token/delete ends everyone's.
    assert_eq!(h.env("POST", "user/remove", Some(&admin), &[("username", "newUser")]).await.status, 200);
    assert_error(&h.env("GET", "next", Some(&token), &[]).await, 401);
    assert_eq!(h.env("POST", "token/delete", Some(&admin), &[]).await.status, 200);
    assert_error(&h.env("GET", "next", Some(&admin), &[]).await, 401);
    assert_error(&h.env("GET", "next", None, &[]).await, 401);
    assert_error(&h.env("GET", "next", Some("not-a-token"), &[]).await, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn system_parameters_apply_live_and_everything_persists() {
    let mut h = Harness::start().await;
    let admin = h.init_admin().await;
    let all = h.env("GET", "system", Some(&admin), &[]).await;
    assert_eq!(all.json["password-min-length"], 8, "{all:?}");
    let r = h.env("POST", "system", Some(&admin), &[("password-min-length", "12"), ("my-app-key", "hello")]).await;
    assert_eq!((r.json["password-min-length"].clone(), r.json["my-app-key"].clone()), (json!(12), json!("hello")));
    let r = h
        .env("POST", "user/add", Some(&admin), &[("username", "u"), ("password", "elevenchars"), ("rights", "get")])
        .await;
    assert_error(&r, 400);
    let r = h.env("POST", "system/token-expire-ms", Some(&admin), &[("value", "1000")]).await;
    assert_eq!(r.json, json!({"token-expire-ms": 1000}), "{r:?}");
    assert_error(&h.env("POST", "system/token-expire-ms", Some(&admin), &[("value", "soon")]).await, 400);
    let quick = h.login(ADMIN, PASSWORD).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_error(&h.env("GET", "next", Some(&quick), &[]).await, 401);
    assert_eq!(h.env("GET", "system/my-app-key", Some(&admin), &[]).await.json, json!({"my-app-key": "hello"}));
    assert_error(&h.env("GET", "system/unknown-key", Some(&admin), &[]).await, 404);
    assert_error(&h.env("GET", "system", Some(&admin), &[("geo", "true")]).await, 400);
    assert_error(&h.env("GET", "system/geo", Some(&admin), &[("value", "true")]).await, 400);
    // cors: the header appears once set.
    h.env("POST", "system/cors", Some(&admin), &[("value", "https://app.example")]).await;
    let r = h.client.get(h.url("test-m1", "ping")).send().await.unwrap();
    assert_eq!(r.headers()["access-control-allow-origin"], "https://app.example");
    // property-ip applies to /write.
    h.env("POST", "system/property-ip", Some(&admin), &[("value", "client.addr")]).await;
    h.env("POST", "system/token-expire-ms", Some(&admin), &[("value", "600000")]).await;
    let r = h.env("POST", "write", Some(&admin), &[("items", r#"[{"x": 1}]"#), ("async", "false")]).await;
    let file = r.json["file"].as_str().unwrap().to_string();
    let env_dir = h.home.path().join("envs/test-m1");
    let archived = zstd_lines(&env_dir.join(&file));
    assert_eq!(archived[0]["client"]["addr"], "127.0.0.1", "{archived:?}");
    // Restart on the same home: users, tokens and parameters are still there.
    let token = h.login(ADMIN, PASSWORD).await;
    h.server.take().unwrap().stop().await;
    let auth_file = std::fs::read_to_string(env_dir.join("auth.json")).unwrap();
    assert!(auth_file.contains("$argon2id$") && !auth_file.contains(PASSWORD) && !auth_file.contains(&token));
    let options = m1_server::ServeOptions { port: 0, home: Some(h.home.path().to_path_buf()), ..Default::default() };
    let server = m1_server::start(options).await.unwrap();
    let url = format!("http://{}/test-m1/system/my-app-key", server.addr);
    let r = call(&h.client, "GET", &url, Some(&token), &[]).await;
    assert_eq!(r.json, json!({"my-app-key": "hello"}), "{r:?}");
}

fn zstd_lines(path: &std::path::Path) -> Vec<Value> {
    let bytes = std::fs::read(path).unwrap();
    let mut text = String::new();
    zstd_decode(&bytes, &mut text);
    text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn zstd_decode(bytes: &[u8], out: &mut String) {
    let raw = zstd::stream::decode_all(bytes).unwrap();
    out.push_str(&String::from_utf8(raw).unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_4xx_never_5xx() {
    let h = Harness::start_with(|o| {
        o.max_body_bytes = 64 << 10;
        o.read_timeout = Duration::from_millis(500);
    })
    .await;
    let admin = h.init_admin().await;
    let t = Some(admin.as_str());
    type Case<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)], u16);
    let cases: &[Case] = &[
        ("POST", "get", &[("ids", "[1,2")], 400),
        ("POST", "get", &[("ids", r#"["a"]"#)], 400),
        ("POST", "get", &[("ids", "-1")], 400),
        ("POST", "get", &[], 400),
        ("POST", "get", &[("ids", "[1]"), ("properties", r#"["nope"]"#)], 400),
        ("POST", "range", &[("start", "x"), ("end", "2")], 400),
        ("POST", "range", &[("start", "0"), ("end", "2"), ("properties", r#"["nope"]"#)], 400),
        ("POST", "schema/add", &[("properties", r#"[{"name": "x", "type": "nonsense"}]"#)], 400),
        ("POST", "schema/add", &[("properties", "{}")], 400),
        ("POST", "write", &[("items", "[1, 2]"), ("async", "false")], 400),
        ("POST", "write", &[("items", "[]"), ("publish", "maybe")], 400),
        // Refused alike whether it exists or not: no probing of the server's files.
        ("POST", "publish", &[("file", "/no/such/file.jsonl")], 403),
        ("POST", "publish", &[("file", "x.csv"), ("delimiter", ";;")], 400),
        ("POST", "publish", &[("file", "x.csv"), ("rules", "[{\"op\": \"nope\"}]")], 400),
        ("POST", "auth", &[("username", "admin"), ("password", PASSWORD), ("ttl", "-5")], 400),
        ("POST", "user/add", &[("username", "u"), ("password", PASSWORD), ("rights", "a b")], 400),
        ("POST", "user/update", &[("username", "ghost"), ("rights", "get")], 404),
        ("POST", "session/update", &[("store", "nope"), ("ops", "[]")], 404),
        ("POST", "session/add", &[("store", "bad name!"), ("shards", "1"), ("replicas", "1")], 400),
        ("POST", "session/add", &[("store", "s"), ("shards", "x"), ("replicas", "1")], 400),
        ("POST", "get", &[("ids", "1"), ("idz", "2")], 400),
        ("POST", "query", &[("q", "*"), ("store", "index"), ("url", "x")], 400),
    ];
    for (method, path, params, status) in cases {
        let r = h.env(method, path, t, params).await;
        assert_error(&r, *status);
        assert!(r.status < 500 || *status == 501, "{path} {params:?}: {r:?}");
    }
    // A JSON bomb: nesting deeper than the parser allows.
    let bomb = format!("{}{}", "[".repeat(8_000), "]".repeat(8_000));
    assert_error(&h.env("POST", "get", t, &[("ids", &bomb)]).await, 400);
    let deep = format!("{}1{}", "[".repeat(2000), "]".repeat(2000));
    assert_error(&h.env("POST", "write", t, &[("items", &deep)]).await, 400);
    // Oversized body.
    let big = "x".repeat(100 << 10);
    assert_error(&h.env("POST", "write", t, &[("items", &big)]).await, 413);
    // A JSON body that is not an object.
    let r = h
        .client
        .post(h.url("test-m1", "get"))
        .header("m1-auth-token", &admin)
        .body("[1]")
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // A slow client: headers never finish -> the connection is closed; a body that stalls -> 408.
    let addr = h.addr;
    let slow = tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(b"GET /test-m1/ping HTTP/1.1\r\nHost: x\r\n").unwrap();
        let started = std::time::Instant::now();
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf);
        (started.elapsed(), String::from_utf8_lossy(&buf).to_string())
    });
    let (waited, _) = slow.await.unwrap();
    assert!(waited < Duration::from_secs(5), "slow headers held the connection {waited:?}");
    let token = admin.clone();
    let stalled = tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(s, "POST /test-m1/get HTTP/1.1\r\nHost: x\r\nm1-auth-token: {token}\r\nContent-Length: 100\r\n\r\nids=")
            .unwrap();
        let mut buf = [0u8; 4096];
        let n = s.read(&mut buf).unwrap_or(0);
        String::from_utf8_lossy(&buf[..n]).to_string()
    });
    let answer = stalled.await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    // The server is still fine.
    assert_eq!(h.env("GET", "next", t, &[]).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ops_accounts_and_environments() {
    let h = Harness::start().await;
    let owner = h.ops_owner("owner-user").await;
    let other = h.ops_signup("other-user").await;
    let accounts = h.ops("GET", "account/list", Some(&owner), &[]).await;
    assert_eq!(accounts.json[0]["id"], "default", "{accounts:?}");
    // The first user's default account holds the catalog's environments.
    let envs = h.ops("GET", "env/list", Some(&owner), &[("account", "default")]).await;
    assert_eq!(envs.json.as_array().unwrap().len(), 1, "{envs:?}");
    let got = h.ops("GET", "env/get", Some(&owner), &[("env", "test-m1")]).await;
    assert_eq!(got.json["name"], "test-m1");
    // Another account's user sees nothing of it.
    assert_error(&h.ops("GET", "env/get", Some(&other), &[("env", "test-m1")]).await, 403);
    assert_eq!(h.ops("GET", "env/list", Some(&other), &[]).await.json, json!([]));
    // Until added with view.
    let r = h
        .ops(
            "POST",
            "account/user/add",
            Some(&owner),
            &[("account", "default"), ("username", "other-user"), ("rights", r#"["view"]"#)],
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(h.ops("GET", "env/get", Some(&other), &[("env", "test-m1")]).await.status, 200);
    assert_error(&h.ops("POST", "env/outbound", Some(&other), &[("env", "test-m1"), ("enable", "true")]).await, 403);
    let users = h.ops("GET", "account/user/list", Some(&other), &[("account", "default")]).await;
    assert_eq!(users.json.as_array().unwrap().len(), 2);
    // Manage: create, settings, rename, destroy.
    let r = h.ops("POST", "env/create", Some(&owner), &[("env", "newenvironment-m1"), ("servers", "2")]).await;
    assert_eq!((r.status, r.json["servers"].clone()), (200, json!(2)), "{r:?}");
    let r = h.ops("POST", "env/rescale", Some(&owner), &[("env", "newenvironment-m1"), ("servers", "3")]).await;
    assert_eq!(r.status, 200, "{r:?}");
    for (path, params) in [
        ("env/outbound", vec![("enable", "true")]),
        ("env/bucket/register", vec![("bucket", "myBucket")]),
        ("env/bucket/grant", vec![("arn", "arn:aws:iam::1:role/read-role")]),
        ("env/reboot", vec![("group", "index")]),
    ] {
        let mut params = params;
        params.push(("env", "newenvironment-m1"));
        let r = h.ops("POST", path, Some(&owner), &params).await;
        assert_eq!(r.status, 200, "{path}: {r:?}");
    }
    let got = h.ops("GET", "env/get", Some(&owner), &[("env", "newenvironment-m1")]).await;
    assert_eq!(
        (&got.json["outbound"], &got.json["buckets"][0]["name"], &got.json["readRoles"], &got.json["servers"]),
        (&json!(true), &json!("myBucket"), &json!(["arn:aws:iam::1:role/read-role"]), &json!(3)),
        "{got:?}"
    );
    let r = h.ops("POST", "env/rename", Some(&owner), &[("env", "newenvironment-m1"), ("name", "mynewenv-m1")]).await;
    assert_eq!(r.status, 200);
    // The renamed environment answers under its new name.
    let r = call(&h.client, "GET", &h.url("mynewenv-m1", "ping"), None, &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(h.ops("POST", "env/destroy", Some(&owner), &[("env", "mynewenv-m1")]).await.status, 200);
    assert_error(&call(&h.client, "GET", &h.url("mynewenv-m1", "ping"), None, &[]).await, 404);
    assert_error(&h.ops("GET", "account/list", None, &[]).await, 401);
    assert_error(&h.ops("POST", "signup", None, &[("username", "owner-user"), ("password", PASSWORD)]).await, 409);
    let r = h.ops("POST", "env/session/create", Some(&owner), &[("env", "test-m1"), ("store", "stash")]).await;
    assert_eq!((r.status, &r.json["key"]), (200, &json!("session.id")), "{r:?}");
    assert_error(
        &h.ops("POST", "env/session/create", Some(&owner), &[("env", "test-m1"), ("store", "stash")]).await,
        409,
    );
    // Data stores through ops, then queried on the environment.
    let r = h
        .ops("POST", "env/store/create", Some(&owner), &[("env", "test-m1"), ("store", "fast"), ("type", "boost")])
        .await;
    assert_eq!((r.status, &r.json["documents"]), (200, &json!(100)), "{r:?}");
    assert_error(&h.ops("POST", "env/store/create", Some(&owner), &[("env", "test-m1"), ("store", "fast")]).await, 409);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_environment_at_the_root() {
    let h = Harness::start().await;
    let home = h.home.path().to_path_buf();
    let options =
        m1_server::ServeOptions { port: 0, home: Some(home), env: Some("test-m1".into()), ..Default::default() };
    let root = m1_server::start(options).await.unwrap();
    let base = format!("http://{}", root.addr);
    h.init_admin().await;
    let r =
        call(&h.client, "POST", &format!("{base}/auth"), None, &[("username", ADMIN), ("password", PASSWORD)]).await;
    let token = r.json["token"].as_str().unwrap().to_string();
    let next = call(&h.client, "GET", &format!("{base}/next"), Some(&token), &[]).await;
    assert_eq!(next.json, json!(100));
    let prefixed = call(&h.client, "GET", &format!("{base}/test-m1/next"), Some(&token), &[]).await;
    assert_eq!(prefixed.json, json!(100));
    // The same environment through the other server, with the same users.
    assert_eq!(h.env("GET", "next", Some(&h.login(ADMIN, PASSWORD).await), &[]).await.json, json!(100));
    assert_eq!(call(&h.client, "GET", &format!("{base}/ops/ping"), None, &[]).await.status, 200);
    root.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_results_stream() {
    let h = Harness::start().await;
    let admin = h.init_admin().await;
    let path = h.home.path().to_path_buf();
    tokio::task::spawn_blocking(move || {
        let env = m1_engine::Catalog::open(&path).unwrap().open_env("test-m1").unwrap();
        let rows = (0..50_000).map(|i| json!({"name": "bulk", "n": i}).as_object().unwrap().clone());
        env.append_json(rows).unwrap();
    })
    .await
    .unwrap();
    // The whole range arrives chunked (no Content-Length: it was not built in memory first).
    let r = h
        .client
        .post(h.url("test-m1", "range"))
        .header("m1-auth-token", &admin)
        .form(&[("start", "0"), ("end", "50100"), ("properties", r#"["n"]"#)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("content-length").is_none(), "{:?}", r.headers());
    let rows: Vec<serde_json::Value> = r.json().await.unwrap();
    assert_eq!(rows.len(), 50_100);
    // A small answer of a streaming endpoint comes whole, with its length.
    let small = h
        .client
        .post(h.url("test-m1", "range"))
        .header("m1-auth-token", &admin)
        .form(&[("start", "100"), ("end", "110"), ("properties", r#"["n"]"#)])
        .send()
        .await
        .unwrap();
    assert_eq!(small.status(), 200);
    let length: usize = small.headers()["content-length"].to_str().unwrap().parse().unwrap();
    let body = small.bytes().await.unwrap();
    assert_eq!(body.len(), length);
    let small: Vec<serde_json::Value> = serde_json::from_slice(&body).unwrap();
    assert_eq!(small.iter().map(|r| r["n"].as_i64().unwrap()).collect::<Vec<_>>(), (0..10).collect::<Vec<_>>());
    assert_eq!(rows[50_099], json!({"_m1key": 50_099, "n": 49_999}));
    // A query over every record streams its items the same way.
    let q = h.env("POST", "query", Some(&admin), &[("q", "name:bulk"), ("rows", "40000"), ("fl", "n")]).await;
    assert_eq!((q.json["count"].clone(), q.json["items"].as_array().map(Vec::len)), (json!(50_000), Some(40_000)));
    // A client that stops reading mid-stream does not hurt the server.
    for _ in 0..3 {
        let mut r = h
            .client
            .post(h.url("test-m1", "range"))
            .header("m1-auth-token", &admin)
            .form(&[("start", "0"), ("end", "50100")])
            .send()
            .await
            .unwrap();
        let first = r.chunk().await.unwrap().unwrap();
        assert!(first.starts_with(b"["));
        drop(r);
    }
    assert_eq!(h.env("GET", "next", Some(&admin), &[]).await.json, json!(50_100));
    // A session query's page streams too: documents are written as stored, chunked.
    let add = [("store", "big"), ("shards", "2"), ("replicas", "1")];
    assert_eq!(h.env("POST", "session/add", Some(&admin), &add).await.status, 200);
    for part in 0..4 {
        let docs: Vec<_> =
            (part * 5000..(part + 1) * 5000).map(|i| json!({"session": {"id": format!("s{i}")}, "n": i})).collect();
        let ops = json!([{"upsert": docs}]).to_string();
        let r = h.env("POST", "session/update", Some(&admin), &[("store", "big"), ("ops", &ops)]).await;
        assert_eq!(r.status, 200, "{r:?}");
    }
    let r = h
        .client
        .post(h.url("test-m1", "session/query"))
        .header("m1-auth-token", &admin)
        .form(&[("store", "big"), ("q", "n:[5000 TO *]"), ("rows", "100000"), ("sort", "n asc")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("content-length").is_none(), "{:?}", r.headers());
    let page: serde_json::Value = r.json().await.unwrap();
    assert_eq!(page["count"], 15_000);
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 15_000);
    assert_eq!((&items[0]["n"], &items[14_999]["n"]), (&json!(5000), &json!(19_999)));
    // Errors still come back as JSON errors, before any item is written.
    let bad = h.env("POST", "session/query", Some(&admin), &[("store", "nope"), ("q", "*")]).await;
    assert!(bad.status >= 400 && bad.status < 500 && bad.json["message"].is_string(), "{bad:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_stores_over_http() {
    let h = Harness::start().await;
    let admin = h.init_admin().await;
    let t = Some(admin.as_str());
    let r = h.env("POST", "session/add", t, &[("store", "stash"), ("shards", "1"), ("replicas", "1")]).await;
    assert_eq!((r.status, r.text.as_str()), (200, ""));
    let ops = r#"[{"upsert": [{"ip": "65.29.29.190", "session": {"id": "s1", "start": 5}}, {"session": {"id": "s2"}}]},
                  {"merge": [{"session": {"id": "s1"}, "user": {"id": "u7"}}]}, {"delete": ["s2"]}]"#;
    let r = h.env("POST", "session/update", t, &[("store", "stash"), ("ops", ops)]).await;
    assert_eq!(r.status, 200, "{r:?}");
    let q = h.env("POST", "session/query", t, &[("store", "stash"), ("q", "user.id:u7"), ("rows", "5")]).await;
    assert_eq!(q.json["count"], 1, "{q:?}");
    let doc = &q.json["items"][0];
    assert_eq!((&doc["session"]["start"], &doc["ip"]), (&json!(5), &json!("65.29.29.190")));
    assert!(doc["_m1"]["session"]["lastUpdated"].is_i64(), "{doc}");
    let got = h.env("POST", "session/get", t, &[("store", "stash"), ("ids", r#"["s1", "s2"]"#)]).await;
    assert_eq!(got.json.as_array().map(Vec::len), Some(1), "{got:?}");
    // A document without the key rejects the whole call; nothing of it is applied.
    let bad = r#"[{"upsert": [{"session": {"id": "s3"}}, {"nokey": 1}]}]"#;
    let r = h.env("POST", "session/update", t, &[("store", "stash"), ("ops", bad)]).await;
    assert!(r.status == 400 || r.status == 409, "{r:?}");
    let q = h.env("POST", "session/query", t, &[("store", "stash"), ("q", "*")]).await;
    assert_eq!(q.json["count"], 1, "{q:?}");
    assert_eq!(h.env("GET", "session/list", t, &[]).await.json[0]["name"], "stash");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_dr_over_http_replicates_fails_over_and_back() {
    let h = Harness::start_with(|o| {
        o.locations = vec![o.home.as_ref().unwrap().join("dr").display().to_string()];
    })
    .await;
    let admin = h.init_admin().await;
    let replica = h.home.path().join("dr/replica").display().to_string();
    let outside = h.home.path().join("elsewhere").display().to_string();
    assert_error(&h.env("POST", "dr/setup", Some(&admin), &[("replica", &outside)]).await, 403);
    let r = h.env("POST", "dr/setup", Some(&admin), &[("replica", &replica)]).await;
    assert_eq!((r.status, r.json["state"].as_str()), (200, Some("replicating")), "{r:?}");
    let items = json!([{"name": "late", "n": 1000}]).to_string();
    let w = h.env("POST", "write", Some(&admin), &[("items", &items), ("publish", "true"), ("async", "false")]).await;
    assert_eq!(w.status, 200, "{w:?}");
    // The server's replicator ships the commit on its own.
    let mut status = Value::Null;
    for _ in 0..100 {
        status = h.env("GET", "dr/status", Some(&admin), &[]).await.json;
        if status["lagCommits"] == json!(0) && status["replicaVersion"] == status["primaryVersion"] {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status["lagCommits"], json!(0), "{status}");
    let regions = h.env("GET", "dr/regions", Some(&admin), &[]).await;
    assert_eq!(regions.json[1]["location"], json!(replica), "{regions:?}");
    let pre = h.env("POST", "dr/startPreProvision", Some(&admin), &[]).await;
    assert_eq!(pre.json["segments"].as_u64().map(|s| s > 0), Some(true), "{pre:?}");

    // Failover through ops: the name now answers from the replica, with its users, and writes.
    let owner = h.ops_owner("owner-user").await;
    let f = h.ops("POST", "env/dr/failover", Some(&owner), &[("env", "test-m1")]).await;
    assert_eq!((f.status, f.json["state"].as_str()), (200, Some("failed-over")), "{f:?}");
    let entry = h.ops("GET", "env/get", Some(&owner), &[("env", "test-m1")]).await;
    assert!(entry.json["url"].as_str().unwrap().ends_with("dr/replica"), "{entry:?}");
    let q = h.env("GET", "query", Some(&admin), &[("q", "*")]).await;
    assert_eq!((q.status, &q.json["count"]), (200, &json!(101)), "{q:?}");
    let items = json!([{"name": "on-replica", "n": 2000}]).to_string();
    let w = h.env("POST", "write", Some(&admin), &[("items", &items), ("publish", "true"), ("async", "false")]).await;
    assert_eq!(w.status, 200, "{w:?}");
    let reader = h.env("GET", "dr/status", Some(&admin), &[]).await;
    assert_eq!(reader.json["state"], "failed-over", "{reader:?}");

    // Failback: the original location is primary again and holds everything.
    let b = h.ops("POST", "env/dr/failback", Some(&owner), &[("env", "test-m1")]).await;
    assert_eq!((b.status, b.json["state"].as_str()), (200, Some("replicating")), "{b:?}");
    let entry = h.ops("GET", "env/get", Some(&owner), &[("env", "test-m1")]).await;
    assert!(entry.json["url"].as_str().unwrap().ends_with("envs/test-m1"), "{entry:?}");
    let q = h.env("GET", "query", Some(&admin), &[("q", "n:[1000 TO 2000]")]).await;
    assert_eq!(q.json["count"], json!(2), "{q:?}");
    let w = h.env("POST", "write", Some(&admin), &[("items", &items), ("publish", "true"), ("async", "false")]).await;
    assert_eq!(w.status, 200, "{w:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_takes_scheduled_backups() {
    let h = Harness::start().await;
    let admin = h.init_admin().await;
    assert_eq!(h.env("GET", "backup/list", Some(&admin), &[]).await.json, json!([]));
    let r = h.env("POST", "system", Some(&admin), &[("backup-interval-ms", "3600000")]).await;
    assert_eq!(r.status, 200, "{r:?}");
    let mut list = Value::Null;
    for _ in 0..50 {
        list = h.env("GET", "backup/list", Some(&admin), &[]).await.json;
        if list.as_array().is_some_and(|l| !l.is_empty()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
    assert_eq!((list[0]["scheduled"].as_bool(), list[0]["rows"].as_u64()), (Some(true), Some(100)), "{list}");
}
