//! The management API over real sockets: every operation of seed 004's Services and seed 003
//! called with the seeds' example bodies, checking the answer's shape and its effect on m1
//! (the same environments `m1 ops env/list` shows), bad input (unknown ids 404, wrong types 400
//! naming the field, names that exist 409), and the organization's firewall ranges.

mod common;

use common::{Harness, assert_error};
use serde_json::{Value, json};

struct Api<'a> {
    h: &'a Harness,
    token: String,
}

impl Api<'_> {
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> common::Resp {
        let url = format!("http://{}{path}", self.h.addr);
        let mut req = self.h.client.request(method.parse().unwrap(), &url).bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        common::Resp { status, json: serde_json::from_str(&text).unwrap_or(Value::Null), text }
    }

    async fn ok(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let r = self.call(method, path, body).await;
        assert_eq!(r.status, 200, "{method} {path}: {}", r.text);
        r.json
    }
}

fn has_fields(v: &Value, fields: &[&str]) {
    for f in fields {
        assert!(v.get(*f).is_some(), "no '{f}' in {v}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clickhouse_services_lifecycle_backups_and_bad_input() {
    let h = Harness::start().await;
    let api = Api { h: &h, token: h.ops_owner("owner").await };
    let org = "default";
    let base = format!("/v1/organizations/{org}/services");

    // Create (the seed's body), with the settings it takes.
    let created = api
        .ok(
            "POST",
            &base,
            Some(json!({"name": "svc", "provider": "aws", "region": null, "tier": "production",
            "ipAccessList": [{"source": "127.0.0.1/32", "description": "loopback"}],
            "minTotalMemoryGb": 24, "maxTotalMemoryGb": 48, "idleScaling": true, "idleTimeoutMinutes": 5})),
        )
        .await;
    let svc = &created["service"];
    has_fields(
        svc,
        &[
            "id",
            "name",
            "provider",
            "region",
            "state",
            "endpoints",
            "tier",
            "minTotalMemoryGb",
            "maxTotalMemoryGb",
            "idleScaling",
            "idleTimeoutMinutes",
            "ipAccessList",
            "createdAt",
        ],
    );
    assert_eq!(
        (svc["name"].as_str(), svc["state"].as_str(), svc["tier"].as_str()),
        (Some("svc"), Some("running"), Some("production"))
    );
    assert_eq!(svc["ipAccessList"][0]["source"], "127.0.0.1/32");
    let id = svc["id"].as_str().unwrap().to_string();
    assert_eq!(id.len(), 36, "a UUID: {id}");
    let password = created["password"].as_str().unwrap().to_string();
    // The service is an environment: ops lists it, and its admin logs in with the password.
    let envs = h.ops("GET", "env/list", Some(&api.token), &[]).await;
    assert!(envs.json.as_array().unwrap().iter().any(|e| e["name"] == "svc"), "{}", envs.text);
    let url = format!("http://{}/svc/auth", h.addr);
    let r = common::call(&h.client, "POST", &url, None, &[("username", "admin"), ("password", &password)]).await;
    assert_eq!(r.status, 200, "{r:?}");

    // List and get.
    let list = api.ok("GET", &base, None).await;
    assert_eq!(list.as_array().unwrap().len(), 2, "test-m1 and svc: {list}");
    let got = api.ok("GET", &format!("{base}/{id}"), None).await;
    assert_eq!(got["maxTotalMemoryGb"], 48);
    // Update: name and access list (add/remove form too).
    let up = api
        .ok(
            "PATCH",
            &format!("{base}/{id}"),
            Some(json!({"name": "svc2", "ipAccessList": {"add": [{"source": "10.0.0.0/8"}],
            "remove": [{"source": "127.0.0.1/32"}]}})),
        )
        .await;
    assert_eq!(up["name"], "svc2");
    assert_eq!(up["ipAccessList"], json!([{"source": "10.0.0.0/8", "description": ""}]));
    // 127.0.0.1 is no longer allowed to reach it.
    let r = common::call(&h.client, "GET", &format!("http://{}/svc2/ping", h.addr), None, &[]).await;
    assert_error(&r, 403);
    api.ok(
        "PATCH",
        &format!("{base}/{id}"),
        Some(json!({"ipAccessList": [{"source": "0.0.0.0/0", "description": "all"}]})),
    )
    .await;
    assert_eq!(common::call(&h.client, "GET", &format!("http://{}/svc2/ping", h.addr), None, &[]).await.status, 200);

    // Scaling.
    let sc = api
        .ok(
            "PATCH",
            &format!("{base}/{id}/scaling"),
            Some(json!({"minTotalMemoryGb": 36, "maxTotalMemoryGb": 360,
            "idleScaling": false, "idleTimeoutMinutes": 10})),
        )
        .await;
    assert_eq!((sc["minTotalMemoryGb"].as_u64(), sc["idleScaling"].as_bool()), (Some(36), Some(false)));
    // Password: a new one works, the old one no longer does.
    let pw = api.ok("PATCH", &format!("{base}/{id}/password"), Some(json!({}))).await["password"]
        .as_str()
        .unwrap()
        .to_string();
    let login = |p: String| {
        let h = &h;
        async move {
            common::call(
                &h.client,
                "POST",
                &format!("http://{}/svc2/auth", h.addr),
                None,
                &[("username", "admin"), ("password", &p)],
            )
            .await
            .status
        }
    };
    assert_eq!(login(pw.clone()).await, 200);
    assert_eq!(login(password.clone()).await, 401);
    let r = api.call("PATCH", &format!("{base}/{id}/password"), Some(json!({"newPasswordHash": "abc"}))).await;
    assert_error(&r, 400);
    assert!(r.json["message"].as_str().unwrap().contains("newPasswordHash"));

    // Backups: take one through ops, list and get it here, and create a service from it.
    let b = h.ops("POST", "env/backup/create", Some(&api.token), &[("env", "svc2"), ("name", "nightly")]).await;
    assert_eq!(b.status, 200, "{b:?}");
    let backups = api.ok("GET", &format!("{base}/{id}/backups"), None).await;
    let first = &backups[0];
    has_fields(first, &["id", "status", "serviceId", "startedAt", "finishedAt"]);
    assert_eq!((first["status"].as_str(), first["serviceId"].as_str()), (Some("done"), Some(id.as_str())));
    let bid = first["id"].as_str().unwrap();
    assert_eq!(api.ok("GET", &format!("{base}/{id}/backups/{bid}"), None).await["id"], bid);
    let restored = api.ok("POST", &base, Some(json!({"name": "from-backup", "backupId": bid}))).await;
    assert_eq!(restored["service"]["name"], "from-backup");

    // State: stop, then requests to it get the state error; start again.
    let stopped = api.ok("PATCH", &format!("{base}/{id}/state"), Some(json!({"command": "stop"}))).await;
    assert_eq!(stopped["state"], "stopped");
    assert_eq!(api.ok("GET", &format!("{base}/{id}"), None).await["state"], "stopped");
    let r = common::call(&h.client, "GET", &format!("http://{}/svc2/get", h.addr), Some(&pw), &[("ids", "[1]")]).await;
    assert_error(&r, 409);
    assert!(r.json["message"].as_str().unwrap().contains("stopped"));
    let started = api.ok("PATCH", &format!("{base}/{id}/state"), Some(json!({"command": "start"}))).await;
    assert_eq!(started["state"], "running");

    // Bad input.
    assert_error(&api.call("GET", &format!("{base}/00000000-0000-0000-0000-000000000000"), None).await, 404);
    assert_error(&api.call("GET", "/v1/organizations/nope/services", None).await, 404);
    let r = api.call("POST", &base, Some(json!({"name": "svc2"}))).await;
    assert_error(&r, 409);
    for (body, field) in [
        (json!({"name": 7}), "name"),
        (json!({"name": "x", "tier": "huge"}), "tier"),
        (json!({"name": "x", "idleTimeoutMinutes": 1}), "idleTimeoutMinutes"),
        (json!({"name": "x", "minTotalMemoryGb": 25}), "minTotalMemoryGb"),
        (json!({"name": "x", "ipAccessList": [{"source": "300.0.0.1"}]}), "ipAccessList"),
        (json!({"name": "x", "surprise": true}), "surprise"),
        (json!({"tier": "production"}), "name"),
    ] {
        let r = api.call("POST", &base, Some(body.clone())).await;
        assert_error(&r, 400);
        assert!(r.json["message"].as_str().unwrap().contains(field), "{body}: {}", r.text);
    }
    let r = api.call("PATCH", &format!("{base}/{id}/state"), Some(json!({"command": "pause"}))).await;
    assert_error(&r, 400);
    assert!(r.text.contains("command"));
    let r = api.call("POST", &base, None).await;
    assert_error(&r, 400);
    assert!(
        h.ops("GET", "env/get", Some(&api.token), &[("env", "x")]).await.status != 200,
        "nothing made by refused creates"
    );
    // Delete: only a stopped service.
    let r = api.call("DELETE", &format!("{base}/{id}"), None).await;
    assert_error(&r, 409);
    api.ok("PATCH", &format!("{base}/{id}/state"), Some(json!({"command": "stop"}))).await;
    let r = api.call("DELETE", &format!("{base}/{id}"), None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_error(&api.call("GET", &format!("{base}/{id}"), None).await, 404);
    // Another organization's user sees none of it.
    let stranger = Api { h: &h, token: h.ops_signup("stranger").await };
    assert_error(&stranger.call("GET", &base, None).await, 404);
    let theirs = stranger.ok("GET", "/v1/organizations/current", None).await["orgID"].as_str().unwrap().to_string();
    assert_eq!(stranger.ok("GET", &format!("/v1/organizations/{theirs}/services"), None).await, json!([]));
    // No token: 401.
    let r = common::call(&h.client, "GET", &format!("http://{}{base}", h.addr), None, &[]).await;
    assert_error(&r, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn singlestore_groups_workspaces_stage_connections_and_usage() {
    let h = Harness::start_with(|o| o.usage_interval = std::time::Duration::from_millis(200)).await;
    let api = Api { h: &h, token: h.ops_owner("owner").await };

    let org = api.ok("GET", "/v1/organizations/current", None).await;
    assert_eq!(org["orgID"], "default");
    has_fields(&org, &["orgID", "name", "firewallRanges"]);
    let regions = api.ok("GET", "/v1/regions", None).await;
    let region = regions[0]["regionID"].as_str().unwrap().to_string();
    has_fields(&regions[0], &["regionID", "region", "provider"]);
    assert_eq!(api.ok("GET", "/v1/regions?fields=regionID", None).await[0].as_object().unwrap().len(), 1);

    // A group (the seed's body), with a generated admin password.
    let g = api
        .ok(
            "POST",
            "/v1/workspaceGroups",
            Some(json!({"name": "demo-workspace-group", "regionID": region,
            "firewallRanges": ["127.0.0.1/32"], "updateWindow": {"day": 2, "hour": 1}})),
        )
        .await;
    let gid = g["workspaceGroupID"].as_str().unwrap().to_string();
    let admin_password = g["adminPassword"].as_str().unwrap().to_string();
    let r = api
        .call(
            "POST",
            "/v1/workspaceGroups",
            Some(json!({"name": "demo-workspace-group", "regionID": region, "firewallRanges": []})),
        )
        .await;
    assert_error(&r, 409);
    let r = api
        .call(
            "POST",
            "/v1/workspaceGroups",
            Some(json!({"name": "g2", "regionID": region, "firewallRanges": ["not-a-range"]})),
        )
        .await;
    assert_error(&r, 400);
    let r = api
        .call(
            "POST",
            "/v1/workspaceGroups",
            Some(json!({"name": "g2", "regionID": "7e7ffd27-0000-1000-9000-e72828a81ac7", "firewallRanges": []})),
        )
        .await;
    assert_error(&r, 400);
    assert!(r.text.contains("regionID"));
    let got = api.ok("GET", &format!("/v1/workspaceGroups/{gid}"), None).await;
    assert_eq!((got["name"].as_str(), got["state"].as_str()), (Some("demo-workspace-group"), Some("ACTIVE")));
    assert_eq!(api.ok("GET", "/v1/workspaceGroups", None).await.as_array().unwrap().len(), 1);

    // A workspace in it.
    let w = api
        .ok(
            "POST",
            "/v1/workspaces",
            Some(json!({"name": "demo-workspace", "workspaceGroupID": gid, "size": "S-2",
            "autoSuspend": {"suspendType": "IDLE", "suspendAfterSeconds": 1200}})),
        )
        .await;
    let wid = w["workspaceID"].as_str().unwrap().to_string();
    let ws = api.ok("GET", &format!("/v1/workspaces/{wid}"), None).await;
    has_fields(&ws, &["name", "workspaceID", "workspaceGroupID", "size", "state", "createdAt", "endpoint"]);
    assert_eq!(
        (ws["state"].as_str(), ws["size"].as_str(), ws["workspaceGroupID"].as_str()),
        (Some("ACTIVE"), Some("S-2"), Some(gid.as_str()))
    );
    assert_eq!(ws["autoSuspend"]["idleAfterSeconds"], 1200);
    let list = api.ok("GET", &format!("/v1/workspaces?workspaceGroupID={gid}"), None).await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_error(&api.call("GET", "/v1/workspaces", None).await, 400);
    // The group's admin password is the workspace's; its firewall ranges apply to it.
    let login = common::call(
        &h.client,
        "POST",
        &format!("http://{}/demo-workspace/auth", h.addr),
        None,
        &[("username", "admin"), ("password", &admin_password)],
    )
    .await;
    assert_eq!(login.status, 200, "{login:?}");
    let from_other =
        common::call(&h.other_ip, "GET", &format!("http://{}/demo-workspace/ping", h.addr), None, &[]).await;
    assert_error(&from_other, 403);
    api.ok("PATCH", &format!("/v1/workspaceGroups/{gid}"), Some(json!({"firewallRanges": ["127.0.0.0/24"]}))).await;
    let from_other =
        common::call(&h.other_ip, "GET", &format!("http://{}/demo-workspace/ping", h.addr), None, &[]).await;
    assert_eq!(from_other.status, 200, "changed live: {from_other:?}");

    // Update, suspend (a request then gets the state error), resume.
    api.ok("PATCH", &format!("/v1/workspaces/{wid}"), Some(json!({"size": "S-4", "deploymentType": "NON-PRODUCTION"})))
        .await;
    assert_eq!(api.ok("GET", &format!("/v1/workspaces/{wid}"), None).await["size"], "S-4");
    api.ok("POST", &format!("/v1/workspaces/{wid}/suspend"), None).await;
    assert_eq!(api.ok("GET", &format!("/v1/workspaces/{wid}"), None).await["state"], "SUSPENDED");
    let token = login.json["token"].as_str().unwrap().to_string();
    let r =
        common::call(&h.client, "GET", &format!("http://{}/demo-workspace/schema", h.addr), Some(&token), &[]).await;
    assert_error(&r, 409);
    api.ok("POST", &format!("/v1/workspaces/{wid}/resume"), Some(json!({"disableAutoSuspend": false}))).await;
    assert_eq!(api.ok("GET", &format!("/v1/workspaces/{wid}"), None).await["state"], "ACTIVE");
    let r =
        common::call(&h.client, "GET", &format!("http://{}/demo-workspace/schema", h.addr), Some(&token), &[]).await;
    assert_eq!(r.status, 200, "{r:?}");

    // Stage: put (raw and multipart), list, download with a range, move, delete.
    let stage = format!("/v1/stage/{wid}/fs");
    let url = |p: &str| format!("http://{}{stage}/{p}", h.addr);
    let r = h
        .client
        .put(url("parent_folder/sample_folder/file.json"))
        .bearer_auth(&api.token)
        .body("{\"a\": 1}\n")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let form = reqwest::multipart::Form::new()
        .part("file", reqwest::multipart::Part::bytes(b"x,y\n1,2\n".to_vec()).file_name("s.csv"));
    let r = h.client.put(url("parent_folder%2Fs.csv")).bearer_auth(&api.token).multipart(form).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let root = api.ok("GET", &format!("{stage}/"), None).await;
    assert_eq!(root["content"][0]["path"], "parent_folder/");
    let folder = api.ok("GET", &format!("{stage}/parent_folder/"), None).await;
    let paths: Vec<&str> = folder["content"].as_array().unwrap().iter().map(|c| c["path"].as_str().unwrap()).collect();
    assert_eq!(paths, ["parent_folder/s.csv", "parent_folder/sample_folder/"]);
    let r = h
        .client
        .get(url("parent_folder/s.csv"))
        .bearer_auth(&api.token)
        .header("Range", "bytes=0-2")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.text().await.unwrap(), "x,y");
    let meta = api.ok("GET", &format!("{stage}/parent_folder/s.csv?metadata=true"), None).await;
    assert_eq!(meta["size"], 8);
    let moved = api.ok("PATCH", &format!("{stage}/parent_folder/s.csv"), Some(json!({"newPath": "done/s.csv"}))).await;
    assert_eq!(moved["path"], "done/s.csv");
    assert_error(&api.call("GET", &format!("{stage}/parent_folder/s.csv"), None).await, 404);
    assert_error(&api.call("GET", &format!("{stage}/..%2F..%2Fcatalog.json"), None).await, 400);
    assert_error(&api.call("PUT", &format!("{stage}/%2Fetc%2Fx"), None).await, 400);
    api.ok("DELETE", &format!("{stage}/parent_folder/"), None).await;
    assert_error(&api.call("GET", "/v1/stage/00000000-0000-0000-0000-000000000000/fs/", None).await, 404);

    // Private connections (recorded), kai and outbound (what m1 has instead).
    let c = api
        .ok(
            "POST",
            "/v1/privateConnections",
            Some(json!({"workspaceGroupID": gid, "workspaceID": wid, "type": "INBOUND",
        "allowList": "my-allow-list", "serviceName": "My private link"})),
        )
        .await;
    let cid = c["privateConnectionID"].as_str().unwrap().to_string();
    assert_eq!(api.ok("GET", &format!("/v1/privateConnections/{cid}"), None).await["allowList"], "my-allow-list");
    api.ok("PATCH", &format!("/v1/privateConnections/{cid}"), Some(json!({"allowList": "other"}))).await;
    assert_eq!(
        api.ok("GET", &format!("/v1/workspaceGroups/{gid}/privateConnections"), None).await[0]["allowList"],
        "other"
    );
    assert_eq!(
        api.ok("GET", &format!("/v1/workspaces/{wid}/privateConnections"), None).await.as_array().unwrap().len(),
        1
    );
    api.ok("DELETE", &format!("/v1/privateConnections/{cid}"), None).await;
    assert_error(&api.call("GET", &format!("/v1/privateConnections/{cid}"), None).await, 404);
    assert_eq!(api.ok("GET", &format!("/v1/workspaces/{wid}/privateConnections/kai"), None).await["serviceName"], "");
    assert_eq!(
        api.ok("GET", &format!("/v1/workspaces/{wid}/privateConnections/outboundAllowList"), None).await,
        json!([])
    );
    h.ops("POST", "env/outbound", Some(&api.token), &[("env", "demo-workspace"), ("enable", "true")]).await;
    assert_eq!(
        api.ok("GET", &format!("/v1/workspaces/{wid}/privateConnections/outboundAllowList"), None).await[0]["outboundAllowList"],
        "*"
    );

    // Storage DR of the group: set up to a second region, status, pre-provision, fail over and back.
    let dr_regions = api.ok("GET", &format!("/v1/workspaceGroups/{gid}/storage/DR/regions"), None).await;
    assert!(dr_regions.as_array().unwrap().iter().all(|r| r["regionID"] != region.as_str()));

    // Usage: sampled every 200 ms here (on the server's 1 s tick); billing sums the samples.
    for _ in 0..50 {
        let series = h.ops("GET", "usage", Some(&api.token), &[("env", "demo-workspace")]).await;
        if series.json["samples"].as_array().is_some_and(|s| s.len() >= 2) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let now = chrono::Utc::now();
    let start = (now - chrono::Duration::hours(2)).format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let end = (now + chrono::Duration::hours(1)).format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let usage =
        api.ok("GET", &format!("/v1/billing/usage?startTime={start}&endTime={end}&aggregateBy=hour"), None).await;
    let metrics: Vec<&str> =
        usage["billingUsage"].as_array().unwrap().iter().map(|m| m["metric"].as_str().unwrap()).collect();
    assert_eq!(metrics, ["ComputeCredit", "StorageAvgByte"]);
    let storage = &usage["billingUsage"][1]["usage"];
    let of_ws: Vec<&Value> =
        storage.as_array().unwrap().iter().filter(|u| u["resourceName"] == "demo-workspace").collect();
    assert!(!of_ws.is_empty(), "{usage}");
    assert!(of_ws.iter().any(|u| u["value"].as_str().unwrap().parse::<u64>().unwrap() > 0), "{usage}");
    has_fields(of_ws[0], &["resourceId", "resourceName", "resourceType", "ownerId", "startTime", "endTime", "value"]);
    let compute: f64 = usage["billingUsage"][0]["usage"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|u| u["resourceName"] == "demo-workspace")
        .map(|u| u["value"].as_str().unwrap().parse::<f64>().unwrap())
        .sum();
    assert!(compute > 0.0, "requests were answered: {usage}");
    let r = api.call("GET", &format!("/v1/billing/usage?startTime={end}&endTime={start}"), None).await;
    assert_error(&r, 400);
    assert_error(&api.call("GET", "/v1/billing/usage?startTime=yesterday&endTime=today", None).await, 400);
    let r =
        api.call("GET", "/v1/billing/usage?startTime=2000-01-01T00:00:00Z&endTime=2030-01-01T00:00:00Z", None).await;
    assert_error(&r, 400);
    assert!(r.text.contains("100,000"), "{}", r.text);
    let by_month = api.ok("GET", "/v1/billing/usage?startTime=2000-01-01T00:00:00Z&endTime=2030-01-01T00:00:00Z&aggregateBy=month&metric=StorageAvgByte", None).await;
    assert_eq!(by_month["billingUsage"].as_array().unwrap().len(), 1);
    assert_error(
        &api.call("GET", &format!("/v1/billing/usage?startTime={start}&endTime={end}&metric=Gold"), None).await,
        400,
    );
    let series = h.ops("GET", "usage", Some(&api.token), &[("env", "demo-workspace")]).await;
    assert!(series.json["samples"].as_array().unwrap().len() >= 2, "{}", series.text);

    // The group's metrics.
    let r = h
        .client
        .get(format!("http://{}/v2/organizations/default/workspaceGroups/{gid}/metrics", h.addr))
        .bearer_auth(&api.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert!(text.contains("# TYPE m1_http_requests counter") && !text.contains("environment=\"test-m1\""), "{text}");

    // A workspace with autoSuspend IDLE suspends itself (the environment's system parameter
    // shortens the timeout for the test) and the next request resumes it.
    let idle = api
        .ok(
            "POST",
            "/v1/workspaces",
            Some(json!({"name": "idle-ws", "workspaceGroupID": gid,
            "autoSuspend": {"suspendType": "IDLE", "suspendAfterSeconds": 300}})),
        )
        .await["workspaceID"]
        .as_str()
        .unwrap()
        .to_string();
    let login = common::call(
        &h.client,
        "POST",
        &format!("http://{}/idle-ws/auth", h.addr),
        None,
        &[("username", "admin"), ("password", &admin_password)],
    )
    .await;
    let idle_token = login.json["token"].as_str().unwrap().to_string();
    let r = common::call(
        &h.client,
        "POST",
        &format!("http://{}/idle-ws/system", h.addr),
        Some(&idle_token),
        &[("idle-timeout-ms", "500")],
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    let mut state = String::new();
    for _ in 0..40 {
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        state = api.ok("GET", &format!("/v1/workspaces/{idle}"), None).await["state"].as_str().unwrap().to_string();
        if state == "SUSPENDED" {
            break;
        }
    }
    assert_eq!(state, "SUSPENDED");
    let r = common::call(&h.client, "GET", &format!("http://{}/idle-ws/schema", h.addr), Some(&idle_token), &[]).await;
    assert_eq!(r.status, 200, "an idle-suspended workspace answers: {r:?}");
    assert_eq!(api.ok("GET", &format!("/v1/workspaces/{idle}"), None).await["state"], "ACTIVE");
    // Terminate one workspace.
    let gone = api.ok("DELETE", &format!("/v1/workspaces/{idle}"), None).await;
    assert_eq!(gone["workspaceID"], idle.as_str());
    assert_error(&api.call("GET", &format!("/v1/workspaces/{idle}"), None).await, 404);
    assert!(h.ops("GET", "env/get", Some(&api.token), &[("env", "idle-ws")]).await.status != 200);

    // Delete: a group with workspaces needs force; terminated groups are listed on request.
    assert_error(&api.call("DELETE", &format!("/v1/workspaceGroups/{gid}"), None).await, 409);
    api.ok("DELETE", &format!("/v1/workspaceGroups/{gid}?force=true"), None).await;
    assert_error(&api.call("GET", &format!("/v1/workspaces/{wid}"), None).await, 404);
    assert_eq!(api.ok("GET", "/v1/workspaceGroups", None).await, json!([]));
    assert_eq!(api.ok("GET", "/v1/workspaceGroups?includeTerminated=true", None).await[0]["state"], "TERMINATED");
    assert_error(&api.call("GET", "/v1/workspaceGroups?includeTerminated=maybe", None).await, 400);

    // A user in two organizations reaches the workspaces of both.
    let other = Api { h: &h, token: h.ops_signup("other").await };
    let their_org = other.ok("GET", "/v1/organizations/current", None).await["orgID"].as_str().unwrap().to_string();
    let g2 = other
        .ok("POST", "/v1/workspaceGroups", Some(json!({"name": "theirs", "regionID": region, "firewallRanges": []})))
        .await;
    let g2 = g2["workspaceGroupID"].as_str().unwrap().to_string();
    let w2 = other.ok("POST", "/v1/workspaces", Some(json!({"name": "their-ws", "workspaceGroupID": g2}))).await;
    let w2 = w2["workspaceID"].as_str().unwrap().to_string();
    assert_error(&api.call("GET", &format!("/v1/workspaces/{w2}"), None).await, 404);
    let add = h
        .ops(
            "POST",
            "account/user/add",
            Some(&other.token),
            &[("account", &their_org), ("username", "owner"), ("rights", r#"["view"]"#)],
        )
        .await;
    assert_eq!(add.status, 200, "{add:?}");
    assert_eq!(api.ok("GET", &format!("/v1/workspaces/{w2}"), None).await["name"], "their-ws");
    assert_eq!(api.ok("GET", &format!("/v1/workspaceGroups/{g2}"), None).await["name"], "theirs");
    assert_error(&api.call("POST", &format!("/v1/workspaces/{w2}/suspend"), None).await, 404);

    // An organization's firewall ranges guard its management API.
    let r = h
        .ops("POST", "account/firewall", Some(&api.token), &[("account", "default"), ("ranges", "[\"10.0.0.0/8\"]")])
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_error(&api.call("GET", "/v1/organizations/current", None).await, 403);
    let r = h.ops("POST", "account/firewall", Some(&api.token), &[("account", "default")]).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(api.call("GET", "/v1/organizations/current", None).await.status, 200);
    // The OpenAPI document is public, but names the environments only for an operator.
    let public = common::call(&h.client, "GET", &format!("http://{}/openapi.json", h.addr), None, &[]).await;
    assert_eq!(public.status, 200);
    assert!(!public.text.contains("test-m1"), "environment names leak to anyone");
    assert_eq!(public.json["openapi"], "3.0.3");
    let theirs = api.call("GET", "/openapi.json", None).await;
    assert!(theirs.text.contains("test-m1"));
    // m1-auth-token works for the management API as well as a bearer token.
    let r =
        common::call(&h.client, "GET", &format!("http://{}/v1/organizations/current", h.addr), Some(&api.token), &[])
            .await;
    assert_eq!(r.status, 200, "{r:?}");
    // Unknown paths and verbs.
    assert_error(&api.call("GET", "/v1/nothing", None).await, 404);
    assert_error(&api.call("PUT", "/v1/workspaces", None).await, 405);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_dr_of_groups_and_workspaces_through_the_management_api() {
    let scratch = tempfile::tempdir().unwrap();
    let (a, b) = (scratch.path().join("region-a"), scratch.path().join("region-b"));
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    let locations = vec![a.display().to_string(), b.display().to_string()];
    let h = Harness::start_with(|o| o.locations = locations.clone()).await;
    let api = Api { h: &h, token: h.ops_owner("owner").await };
    let regions = api.ok("GET", "/v1/regions", None).await;
    let id_of = |loc: &str| {
        regions.as_array().unwrap().iter().find(|r| r["region"] == loc).unwrap()["regionID"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (ra, rb) = (id_of(&locations[0]), id_of(&locations[1]));
    let g = api
        .ok(
            "POST",
            "/v1/workspaceGroups",
            Some(
                json!({"name": "g", "regionID": ra, "firewallRanges": ["127.0.0.0/8"], "adminPassword": "Passphrase1"}),
            ),
        )
        .await;
    let gid = g["workspaceGroupID"].as_str().unwrap().to_string();
    assert!(g.get("adminPassword").is_none(), "given, so not answered");
    let w1 = api.ok("POST", "/v1/workspaces", Some(json!({"name": "w1", "workspaceGroupID": gid}))).await;
    let w2 = api.ok("POST", "/v1/workspaces", Some(json!({"name": "w2", "workspaceGroupID": gid}))).await;
    let (w1, w2) = (w1["workspaceID"].as_str().unwrap().to_string(), w2["workspaceID"].as_str().unwrap().to_string());
    assert!(a.join("w1/_delta_log").exists(), "a workspace lives in its group's region");
    // Some data, written as the group's admin.
    let login = common::call(
        &h.client,
        "POST",
        &format!("http://{}/w1/auth", h.addr),
        None,
        &[("username", "admin"), ("password", "Passphrase1")],
    )
    .await;
    let token = login.json["token"].as_str().unwrap().to_string();
    let props = json!([{"name": "n", "type": "integer"}]).to_string();
    let r = common::call(
        &h.client,
        "POST",
        &format!("http://{}/w1/schema/add", h.addr),
        Some(&token),
        &[("properties", &props)],
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    let items = json!([{"n": 1}, {"n": 2}]).to_string();
    let r = common::call(
        &h.client,
        "POST",
        &format!("http://{}/w1/write", h.addr),
        Some(&token),
        &[("items", &items), ("publish", "true"), ("async", "false")],
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");

    // The DR regions are the other locations.
    let dr = api.ok("GET", &format!("/v1/workspaceGroups/{gid}/storage/DR/regions"), None).await;
    assert_eq!(
        dr.as_array().unwrap().iter().map(|r| r["regionID"].as_str().unwrap()).collect::<Vec<_>>(),
        [rb.as_str()]
    );
    assert_eq!(api.ok("GET", &format!("/v1/workspaces/{w1}/storage/DR/regions"), None).await, dr);
    // Set up for one workspace of the group, by name, then the other through the workspace route.
    let r = api
        .call(
            "POST",
            &format!("/v1/workspaceGroups/{gid}/storage/DR/setup"),
            Some(json!({"regionID": rb, "databaseNames": ["nope"]})),
        )
        .await;
    assert_error(&r, 400);
    api.ok(
        "POST",
        &format!("/v1/workspaceGroups/{gid}/storage/DR/setup"),
        Some(json!({"regionID": rb, "databaseNames": ["w1"]})),
    )
    .await;
    assert!(b.join("w1-dr/_delta_log").exists(), "the replica is in the second region");
    api.ok(
        "POST",
        &format!("/v1/workspaces/{w2}/storage/DR/setup"),
        Some(json!({"regionID": rb, "databaseNames": []})),
    )
    .await;
    let status = api.ok("GET", &format!("/v1/workspaceGroups/{gid}/storage/DR/status"), None).await;
    has_fields(&status, &["compute", "storage"]);
    assert_eq!(status["compute"]["totalWorkspaces"], 2);
    let states: Vec<&str> =
        status["storage"].as_array().unwrap().iter().map(|s| s["duplicationState"].as_str().unwrap()).collect();
    assert_eq!(states, ["Active", "Active"], "{status}");
    let one = api.ok("GET", &format!("/v1/workspaces/{w1}/storage/DR/status"), None).await;
    assert_eq!(one["storage"][0]["databaseName"], "w1");
    // Pre-provision, fail over (the name follows the replica), fail back.
    api.ok("PATCH", &format!("/v1/workspaceGroups/{gid}/storage/DR/startPreProvision"), None).await;
    api.ok("PATCH", &format!("/v1/workspaceGroups/{gid}/storage/DR/stopPreProvision"), None).await;
    api.ok("PATCH", &format!("/v1/workspaces/{w1}/storage/DR/startPreProvision"), None).await;
    api.ok("PATCH", &format!("/v1/workspaces/{w1}/storage/DR/stopPreProvision"), None).await;
    let over = api.ok("PATCH", &format!("/v1/workspaces/{w1}/storage/DR/failover"), None).await;
    assert!(over["databases"]["w1"]["primary"].as_str().unwrap().contains("region-b"), "{over}");
    let envs = h.ops("GET", "env/get", Some(&api.token), &[("env", "w1")]).await;
    assert!(envs.json["url"].as_str().unwrap().contains("region-b"), "{}", envs.text);
    let login = common::call(
        &h.client,
        "POST",
        &format!("http://{}/w1/auth", h.addr),
        None,
        &[("username", "admin"), ("password", "Passphrase1")],
    )
    .await;
    let token = login.json["token"].as_str().unwrap().to_string();
    let got =
        common::call(&h.client, "GET", &format!("http://{}/w1/get", h.addr), Some(&token), &[("ids", "[0, 1]")]).await;
    assert_eq!(got.json[1]["n"], 2, "{got:?}");
    api.ok("PATCH", &format!("/v1/workspaces/{w1}/storage/DR/failback"), None).await;
    let envs = h.ops("GET", "env/get", Some(&api.token), &[("env", "w1")]).await;
    assert!(envs.json["url"].as_str().unwrap().contains("region-a"), "{}", envs.text);
    // The group routes fail over and back every workspace set up.
    let over = api.ok("PATCH", &format!("/v1/workspaceGroups/{gid}/storage/DR/failover"), None).await;
    assert_eq!(over["databases"].as_object().unwrap().len(), 2, "{over}");
    let back = api.ok("PATCH", &format!("/v1/workspaceGroups/{gid}/storage/DR/failback"), None).await;
    assert_eq!(back["databases"].as_object().unwrap().len(), 2, "{back}");
    // Another organization's user reaches none of it.
    let stranger = Api { h: &h, token: h.ops_signup("stranger").await };
    assert_error(&stranger.call("GET", &format!("/v1/workspaceGroups/{gid}/storage/DR/status"), None).await, 404);
    assert_error(&stranger.call("PATCH", &format!("/v1/workspaces/{w1}/storage/DR/failover"), None).await, 404);
}
