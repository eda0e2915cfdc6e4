//! `GET /metrics`, parsed by a real OpenMetrics parser (Python's `prometheus_client`), with
//! values checked against what the test did.

mod common;
#[path = "../../tests/support/mod.rs"]
mod support;

use common::{Harness, assert_error};
use serde_json::{Value, json};

/// The samples of family `name` (without the `m1_` prefix) whose labels include `labels`.
fn samples<'a>(families: &'a Value, name: &str, labels: &[(&str, &str)]) -> Vec<&'a Value> {
    let fam = families
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == format!("m1_{name}"))
        .unwrap_or_else(|| panic!("no family m1_{name}"));
    fam["samples"].as_array().unwrap().iter().filter(|s| labels.iter().all(|(k, v)| s["labels"][*k] == *v)).collect()
}

fn family_type(families: &Value, name: &str) -> String {
    families.as_array().unwrap().iter().find(|f| f["name"] == format!("m1_{name}")).unwrap()["type"]
        .as_str()
        .unwrap()
        .to_string()
}

fn value(families: &Value, sample: &str, family: &str, labels: &[(&str, &str)]) -> f64 {
    samples(families, family, labels)
        .into_iter()
        .find(|s| s["name"] == format!("m1_{sample}"))
        .unwrap_or_else(|| panic!("no sample m1_{sample} {labels:?}"))["value"]
        .as_f64()
        .unwrap()
}

async fn scrape(h: &Harness, token: &str) -> Value {
    let r = h.client.get(format!("http://{}/metrics", h.addr)).bearer_auth(token).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("application/openmetrics-text"));
    let text = r.text().await.unwrap();
    assert!(text.ends_with("# EOF\n"), "{text}");
    let file = h.home.path().join("metrics.txt");
    std::fs::write(&file, &text).unwrap();
    let path = file.to_str().unwrap().to_string();
    tokio::task::spawn_blocking(move || support::run_python(&["openmetrics", &path])).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_as_openmetrics_and_count_what_happened() {
    let h = Harness::start().await;
    let admin = h.init_admin().await;
    let ops = h.ops_owner("owner").await;
    for _ in 0..5 {
        assert_eq!(h.env("GET", "get", Some(&admin), &[("ids", "[1]")]).await.status, 200);
    }
    assert_eq!(h.env("GET", "get", Some(&admin), &[("ids", "nope")]).await.status, 400);
    let file = h.home.path().join("more.jsonl");
    std::fs::write(&file, "{\"name\": \"a\", \"n\": 1}\n{\"name\": \"b\", \"n\": 2}\n{\"name\": \"c\", \"n\": 3}\n")
        .unwrap();
    let r = h.env("POST", "publish", Some(&admin), &[("file", file.to_str().unwrap())]).await;
    assert_eq!(r.status, 200, "{r:?}");
    let r = h.env("POST", "session/add", Some(&admin), &[("store", "s"), ("shards", "1"), ("replicas", "1")]).await;
    assert_eq!(r.status, 200, "{r:?}");
    let ops_json = json!([{"upsert": [{"session": {"id": "a"}}, {"session": {"id": "b"}}]}]).to_string();
    let r = h.env("POST", "session/update", Some(&admin), &[("store", "s"), ("ops", &ops_json)]).await;
    assert_eq!(r.status, 200, "{r:?}");
    let r = h.env("POST", "store/create", Some(&admin), &[("store", "idx")]).await;
    assert_eq!(r.status, 200, "{r:?}");
    let r = h.ops("POST", "env/create", Some(&ops), &[("env", "other")]).await;
    assert_eq!(r.status, 200, "{r:?}");
    let r = h.ops("POST", "env/suspend", Some(&ops), &[("env", "other")]).await;
    assert_eq!(r.status, 200, "{r:?}");

    // Who may scrape: an operator of the machine's account, by bearer or m1-auth-token.
    let url = format!("http://{}/metrics", h.addr);
    assert_error(&common::call(&h.client, "GET", &url, None, &[]).await, 401);
    let stranger = h.ops_signup("stranger").await;
    assert_error(&common::call(&h.client, "GET", &url, Some(&stranger), &[]).await, 403);
    assert_eq!(common::call(&h.client, "GET", &url, Some(&ops), &[]).await.status, 200);

    // Sizes and states are sampled every 2 s: wait for a sample taken after the work above.
    let mut m = scrape(&h, &ops).await;
    for _ in 0..20 {
        let stopped = samples(&m, "environments", &[("state", "stopped")]);
        if stopped.first().is_some_and(|s| s["value"] == 1.0)
            && !samples(&m, "data_store_documents", &[("store", "idx")]).is_empty()
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        m = scrape(&h, &ops).await;
    }
    assert_eq!(family_type(&m, "http_requests"), "counter");
    // Counters are live.
    assert_eq!(value(&m, "http_requests_total", "http_requests", &[("endpoint", "env/get"), ("status", "200")]), 5.0);
    assert_eq!(value(&m, "http_requests_total", "http_requests", &[("endpoint", "env/get"), ("status", "400")]), 1.0);
    assert_eq!(family_type(&m, "http_request_duration_seconds"), "histogram");
    let count =
        value(&m, "http_request_duration_seconds_count", "http_request_duration_seconds", &[("endpoint", "env/get")]);
    assert_eq!(count, 6.0);
    let inf = value(
        &m,
        "http_request_duration_seconds_bucket",
        "http_request_duration_seconds",
        &[("endpoint", "env/get"), ("le", "+Inf")],
    );
    assert_eq!(inf, 6.0);
    assert_eq!(value(&m, "publish_rows_total", "publish_rows", &[("environment", "test-m1")]), 3.0);
    let bytes = value(&m, "publish_bytes_total", "publish_bytes", &[("environment", "test-m1")]);
    assert_eq!(bytes, std::fs::metadata(&file).unwrap().len() as f64);
    assert!(value(&m, "session_wal_fsync_seconds_count", "session_wal_fsync_seconds", &[]) >= 1.0);
    assert_eq!(value(&m, "session_store_documents", "session_store_documents", &[("store", "s")]), 2.0);
    assert_eq!(value(&m, "data_store_documents", "data_store_documents", &[("store", "idx")]), 103.0);
    assert_eq!(value(&m, "data_store_index_lag_records", "data_store_index_lag_records", &[("store", "idx")]), 0.0);
    assert!(value(&m, "data_store_bytes", "data_store_bytes", &[("store", "idx")]) > 0.0);
    assert_eq!(value(&m, "environments", "environments", &[("state", "stopped")]), 1.0);
    assert_eq!(value(&m, "environments", "environments", &[("state", "running")]), 1.0);
    // The scrape itself is counted.
    let m = scrape(&h, &ops).await;
    assert!(value(&m, "http_requests_total", "http_requests", &[("endpoint", "metrics"), ("status", "200")]) >= 2.0);
}
