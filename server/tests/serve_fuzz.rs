//! Random requests at the router (proptest): any method, path, token, parameters and body. The
//! server must answer every one with a status below 500 (501 for endpoints not in this build),
//! errors as `{"message": .., "status": ..}`, and keep answering.

mod common;

use std::sync::LazyLock;

use common::*;
use proptest::prelude::*;

struct Fixture {
    rt: tokio::runtime::Runtime,
    h: Harness,
    admin: parking_lot::Mutex<String>,
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let (h, admin) = rt.block_on(async {
        let h = Harness::start_with(|o| o.max_body_bytes = 256 << 10).await;
        let admin = h.init_admin().await;
        (h, admin)
    });
    Fixture { rt, h, admin: parking_lot::Mutex::new(admin) }
});

fn path() -> impl Strategy<Value = String> {
    let known: Vec<String> = m1::endpoint::ENDPOINTS.iter().map(|r| r.path.replace("{name}", "cors")).collect();
    prop_oneof![
        4 => proptest::sample::select(known),
        1 => "[a-z/._%-]{0,24}",
        1 => proptest::sample::select(known_paths_with_noise()),
    ]
}

fn known_paths_with_noise() -> Vec<String> {
    vec!["system/".into(), "//get".into(), "get/".into(), "user/get/x".into(), "%2e%2e/get".into(), "".into()]
}

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        "-?[0-9]{1,20}",
        "[ -~]{0,24}",
        Just("[1,2,3]".to_string()),
        Just(r#"["_m1key","n"]"#.to_string()),
        Just(r#"[{"name": "p", "type": "string"}]"#.to_string()),
        Just(r#"[{"a": {"b": [1, 2, {"c": null}]}}]"#.to_string()),
        Just("true".to_string()),
        Just("1e400".to_string()),
        Just("\u{0}\u{ffff}é".to_string()),
        (1usize..3000).prop_map(|n| format!("{}{}", "[".repeat(n), "]".repeat(n))),
        (1usize..200).prop_map(|n| "{\"a\":".repeat(n)),
    ]
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => proptest::sample::select(vec![
            "ids", "properties", "start", "end", "items", "publish", "async", "rules", "q", "rows", "sort", "fl",
            "facets", "format", "store", "name", "username", "password", "rights", "token", "ttl", "ip", "value",
            "env", "account", "servers", "bucket", "enable", "group", "arn", "type", "shards", "ops", "key",
        ]).prop_map(str::to_string),
        1 => "[a-zA-Z_.-]{1,12}",
    ]
}

#[derive(Debug, Clone)]
enum Body {
    Form(Vec<(String, String)>),
    Raw(&'static str, Vec<u8>),
}

fn body() -> impl Strategy<Value = Body> {
    prop_oneof![
        4 => proptest::collection::vec((key(), value()), 0..6).prop_map(Body::Form),
        1 => (
            proptest::sample::select(vec![
                "application/json", "multipart/form-data; boundary=xyz", "multipart/form-data",
                "application/x-www-form-urlencoded", "text/plain",
            ]),
            proptest::collection::vec(any::<u8>(), 0..512),
        ).prop_map(|(t, b)| Body::Raw(t, b)),
        1 => Just(Body::Raw("multipart/form-data; boundary=xyz",
            b"--xyz\r\nContent-Disposition: form-data; name=\"ids\"\r\n\r\n[1]\r\n--xyz--\r\n".to_vec())),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_requests_never_fail_the_server(
        method in proptest::sample::select(vec!["GET", "POST", "POST", "PUT", "DELETE", "OPTIONS", "HEAD"]),
        prefix in proptest::sample::select(vec!["test-m1", "test-m1", "test-m1", "ops", "nope"]),
        path in path(),
        token in proptest::sample::select(vec![0u8, 1, 1, 1, 2]),
        query in proptest::collection::vec((key(), value()), 0..3),
        body in body(),
    ) {
        let f = &*FIXTURE;
        let h = &f.h;
        let admin = f.admin.lock().clone();
        let (status, text) = f.rt.block_on(async {
            let url = h.url(prefix, &path);
            let mut req = h.client.request(method.parse().unwrap(), &url).query(&query);
            match token {
                1 => req = req.header("m1-auth-token", &admin),
                2 => req = req.header("m1-auth-token", "garbage token"),
                _ => {}
            }
            req = match &body {
                Body::Form(params) => req.form(params),
                Body::Raw(ct, bytes) => req.header("content-type", *ct).body(bytes.clone()),
            };
            let r = req.send().await.unwrap_or_else(|e| panic!("{method} {url}: {e}"));
            let status = r.status().as_u16();
            (status, r.text().await.unwrap_or_default())
        });
        prop_assert!(status < 500 || status == 501, "{method} /{prefix}/{path} {query:?} {body:?}: {status} {text}");
        if status >= 400 && method != "HEAD" {
            let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
            prop_assert_eq!(&v["status"], &serde_json::json!(status), "{}", text);
            prop_assert!(v["message"].is_string(), "{}", text);
        }
        // Calls that can end the admin's tokens: log in again.
        if path.starts_with("token/delete") || path.starts_with("user/") {
            let fresh = f.rt.block_on(async {
                let r = h.env("POST", "auth", None, &[("username", ADMIN), ("password", PASSWORD)]).await;
                r.json["token"].as_str().map(str::to_string)
            });
            if let Some(t) = fresh {
                *f.admin.lock() = t;
            }
        }
        let ping = f.rt.block_on(h.env("GET", "ping", None, &[]));
        prop_assert_eq!(ping.status, 200);
    }
}
