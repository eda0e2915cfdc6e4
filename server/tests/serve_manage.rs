//! Managing environments as services over HTTP: stop and start with truthful states and a
//! state error for requests in between, idle suspension that the next request undoes, settings
//! checked as the seeds say, and IP access lists enforced before authentication, live.

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use common::{Harness, Resp, assert_error, call};
use serde_json::{Value, json};

async fn env_get(h: &Harness, ops: &str) -> Value {
    let r = h.ops("GET", "env/get", Some(ops), &[("env", "test-m1")]).await;
    assert_eq!(r.status, 200, "{r:?}");
    r.json
}

async fn get_one(h: &Harness, token: &str) -> Resp {
    h.env("GET", "get", Some(token), &[("ids", "[3]")]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_and_start_report_their_state_and_refuse_requests_in_between() {
    let h = Harness::start().await;
    let admin = h.init_admin().await;
    let ops = h.ops_owner("owner").await;
    assert_eq!(get_one(&h, &admin).await.status, 200);
    let env = env_get(&h, &ops).await;
    assert_eq!(env["state"], "running", "{env}");
    assert!(env["endpoints"].as_array().is_some_and(|e| !e.is_empty()), "{env}");

    let r = h.ops("POST", "env/suspend", Some(&ops), &[("env", "test-m1")]).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json["state"], "stopped");
    assert_eq!(env_get(&h, &ops).await["state"], "stopped");
    let r = get_one(&h, &admin).await;
    assert_error(&r, 409);
    assert!(r.json["message"].as_str().unwrap().contains("stopped"), "{r:?}");
    // A stopped environment refuses before anything is opened: ping too.
    assert_error(&h.env("GET", "ping", None, &[]).await, 409);

    let r = h.ops("POST", "env/resume", Some(&ops), &[("env", "test-m1")]).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json["state"], "running");
    let r = get_one(&h, &admin).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json[0]["name"], "row3");

    // The state is the catalog's: the CLI's stop reaches the running server.
    let home = h.home.path().to_path_buf();
    tokio::task::spawn_blocking(move || {
        let cat = m1::Catalog::open(&home).unwrap();
        let opener = m1::endpoint::FreshOpener(&cat);
        let call = m1::endpoint::OpsCall { catalog: &cat, envs: &opener };
        m1::endpoint::call_ops(&call, "env/suspend", [("env".to_string(), "test-m1".to_string())]).unwrap();
    })
    .await
    .unwrap();
    assert_error(&get_one(&h, &admin).await, 409);
    assert_eq!(h.ops("POST", "env/resume", Some(&ops), &[("env", "test-m1")]).await.status, 200);
    assert_eq!(get_one(&h, &admin).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_environment_suspends_itself_and_the_next_request_resumes_it() {
    let h = Harness::start().await;
    let admin = h.init_admin().await;
    let ops = h.ops_owner("owner").await;
    let settings = json!({"idleScaling": true, "idleTimeoutMinutes": 5}).to_string();
    let r = h.ops("POST", "env/settings", Some(&ops), &[("env", "test-m1"), ("settings", &settings)]).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json["service"]["idleScaling"], true);
    assert_eq!(r.json["service"]["idleTimeoutMinutes"], 5);
    // Tests cannot wait 5 minutes: the environment's system parameter shortens it.
    let r = h.env("POST", "system", Some(&admin), &[("idle-timeout-ms", "1000")]).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(env_get(&h, &ops).await["state"], "running");
    let mut state = String::new();
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        state = env_get(&h, &ops).await["state"].as_str().unwrap().to_string();
        if state == "idle" {
            break;
        }
    }
    assert_eq!(state, "idle");
    // Tokens survive: they are the environment's, on disk.
    let r = get_one(&h, &admin).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json[0]["n"], 3);
    assert_eq!(env_get(&h, &ops).await["state"], "running");

    // Requests keep it awake.
    for _ in 0..8 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(get_one(&h, &admin).await.status, 200);
        assert_eq!(env_get(&h, &ops).await["state"], "running");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_are_checked_stored_and_reported() {
    let h = Harness::start().await;
    let ops = h.ops_owner("owner").await;
    let set = |v: Value| {
        let h = &h;
        let ops = ops.clone();
        async move {
            let s = v.to_string();
            h.ops("POST", "env/settings", Some(&ops), &[("env", "test-m1"), ("settings", &s)]).await
        }
    };
    let r = set(json!({"tier": "production", "minTotalMemoryGb": 24, "maxTotalMemoryGb": 48, "provider": "aws",
                       "size": "S-00", "cacheConfig": 2}))
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    for (bad, field) in [
        (json!({"tier": "huge"}), "tier"),
        (json!({"minTotalMemoryGb": 25}), "minTotalMemoryGb"),
        (json!({"idleTimeoutMinutes": 1}), "idleTimeoutMinutes"),
        (json!({"idleScaling": "yes"}), "idleScaling"),
        (json!({"stopped": true}), "stopped"),
        (json!({"cacheConfig": 3}), "cacheConfig"),
    ] {
        let r = set(bad.clone()).await;
        assert_error(&r, 400);
        assert!(r.json["message"].as_str().unwrap().contains(field), "{bad}: {r:?}");
    }
    let env = env_get(&h, &ops).await;
    assert_eq!(env["service"]["tier"], "production", "{env}");
    assert_eq!(env["service"]["maxTotalMemoryGb"], 48);
    assert_eq!(env["service"]["provider"], "aws");
    assert_eq!(env["service"]["cacheConfig"], 2);
    // null clears one.
    assert_eq!(set(json!({"provider": null})).await.status, 200);
    assert!(env_get(&h, &ops).await["service"].get("provider").is_none());

    // rescale honours its threshold or says why not.
    let r = h.ops("POST", "env/rescale", Some(&ops), &[("env", "test-m1"), ("servers", "2"), ("threshold", "3")]).await;
    assert_error(&r, 400);
    assert!(r.json["message"].as_str().unwrap().contains("threshold"), "{r:?}");
    let r = h.ops("POST", "env/rescale", Some(&ops), &[("env", "test-m1"), ("servers", "3"), ("threshold", "2")]).await;
    assert_eq!(r.status, 200, "{r:?}");
    let env = env_get(&h, &ops).await;
    assert_eq!(env["servers"], 3);
    assert_eq!(env["service"]["threshold"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ip_access_lists_apply_before_authentication_and_change_live() {
    let h = Harness::start().await;
    let admin = h.init_admin().await;
    let ops = h.ops_owner("owner").await;
    let other = |path: &str| format!("http://{}/test-m1/{path}", h.addr);
    let set = |list: Option<Value>| {
        let h = &h;
        let ops = ops.clone();
        async move {
            let list = list.map(|l| l.to_string());
            let mut params = vec![("env", "test-m1")];
            if let Some(l) = &list {
                params.push(("list", l));
            }
            h.ops("POST", "env/access", Some(&ops), &params).await
        }
    };
    // Nobody restricted it: both addresses get in.
    assert_eq!(call(&h.other_ip, "GET", &other("get"), Some(&admin), &[("ids", "[1]")]).await.status, 401);
    assert_eq!(get_one(&h, &admin).await.status, 200);

    let r = set(Some(json!([{"source": "127.0.0.1/32", "description": "this machine"}]))).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json["service"]["ipAccessList"][0]["source"], "127.0.0.1/32");
    assert_eq!(get_one(&h, &admin).await.status, 200);
    // 127.0.0.2 is refused before its token is looked at (a token bound to another address
    // would otherwise be a 401), on every endpoint, public ones too.
    for path in ["get", "ping", "auth", "query"] {
        let r = call(&h.other_ip, "GET", &other(path), Some(&admin), &[("ids", "[1]")]).await;
        assert_error(&r, 403);
        assert!(r.json["message"].as_str().unwrap().contains("IP access list"), "{path}: {r:?}");
    }
    // A range.
    assert_eq!(set(Some(json!([{"source": "127.0.0.0/30"}]))).await.status, 200);
    assert_eq!(call(&h.other_ip, "GET", &other("ping"), None, &[]).await.status, 200);
    // Empty: nobody; ops still answers, so the list can be changed back.
    assert_eq!(set(Some(json!([]))).await.status, 200);
    assert_error(&get_one(&h, &admin).await, 403);
    // Bad ranges are refused and change nothing.
    let r = set(Some(json!([{"source": "10.0.0.0/40"}]))).await;
    assert_error(&r, 400);
    assert!(r.json["message"].as_str().unwrap().contains("10.0.0.0/40"), "{r:?}");
    assert_error(&get_one(&h, &admin).await, 403);
    let r = set(Some(json!("127.0.0.1"))).await;
    assert_error(&r, 400);
    // Absent: everyone again.
    assert_eq!(set(None).await.status, 200);
    assert_eq!(get_one(&h, &admin).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ip_access_lists_match_ipv6_clients() {
    // A server on the IPv6 wildcard takes IPv4 clients as mapped addresses too.
    let h = Harness::start_with(|o| o.bind = IpAddr::V6(Ipv6Addr::UNSPECIFIED)).await;
    let ops = h.ops_owner("owner").await;
    let port = h.addr.port();
    let v6 = reqwest::Client::builder().local_address(IpAddr::V6(Ipv6Addr::LOCALHOST)).build().unwrap();
    let v4 = reqwest::Client::builder().local_address(IpAddr::V4(Ipv4Addr::LOCALHOST)).build().unwrap();
    let (u6, u4) = (format!("http://[::1]:{port}/test-m1/ping"), format!("http://127.0.0.1:{port}/test-m1/ping"));
    if call(&v6, "GET", &u6, None, &[]).await.status != 200 {
        eprintln!("no IPv6 loopback here: skipping");
        return;
    }
    let list = json!([{"source": "::1/128", "description": "v6 loopback"}]).to_string();
    let r = h.ops("POST", "env/access", Some(&ops), &[("env", "test-m1"), ("list", &list)]).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(call(&v6, "GET", &u6, None, &[]).await.status, 200);
    assert_error(&call(&v4, "GET", &u4, None, &[]).await, 403);
    let list = json!([{"source": "127.0.0.1"}]).to_string();
    assert_eq!(h.ops("POST", "env/access", Some(&ops), &[("env", "test-m1"), ("list", &list)]).await.status, 200);
    assert_error(&call(&v6, "GET", &u6, None, &[]).await, 403);
    assert_eq!(call(&v4, "GET", &u4, None, &[]).await.status, 200);
}
