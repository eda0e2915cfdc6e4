//! Seed 003 (SingleStore Management API) over m1: the organization is the caller's ops account,
//! a workspace an environment, a workspace group a catalog group of environments sharing a
//! storage location and firewall ranges, a region a configured storage location.

use serde_json::{Value, json};

use super::clickhouse::{location_of, url_in};
use super::{Backend, Org, Request, bad, group_members, iso, m1_id, select_fields, unknown, uuid};
use crate::error::{Error, Result};
use m1_engine::service::WorkspaceGroup;

/// A stable UUID-shaped id of a storage location (the same on every call).
pub fn region_id(location: &str) -> String {
    // FNV-1a, twice with different offsets: 128 bits of a short string, enough to tell apart
    // the handful of locations a server has.
    let hash = |seed: u64| location.bytes().fold(seed, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3));
    uuid(&format!("{:016x}{:016x}", hash(0xcbf2_9ce4_8422_2325), hash(0x8422_2325_cbf2_9ce4)))
}

fn provider(location: &str) -> &'static str {
    match location.split_once("://").map(|(s, _)| s) {
        Some("s3") => "AWS",
        Some("gs") => "GCP",
        Some("az" | "abfs" | "azure") => "Azure",
        _ => "local",
    }
}

fn region_json(location: &str) -> Value {
    json!({"regionID": region_id(location), "region": location, "provider": provider(location)})
}

pub(super) fn organization(b: &dyn Backend, _: &Request) -> Result<Value> {
    let org = b.org(None, "view")?;
    Ok(json!({"orgID": org.id, "name": org.name, "firewallRanges": org.firewall_ranges.unwrap_or_default()}))
}

pub(super) fn regions(b: &dyn Backend, req: &Request) -> Result<Value> {
    b.org(None, "view")?;
    Ok(select_fields(req, Value::Array(b.locations().iter().map(|l| region_json(l)).collect())))
}

pub(super) fn billing_usage(b: &dyn Backend, req: &Request) -> Result<Value> {
    let org = b.org(None, "view")?;
    let time = |name: &str| -> Result<i64> {
        let t =
            req.query.get(name).ok_or_else(|| bad(name, "is required (UTC ISO-8601, e.g. 2023-07-30T18:30:00Z)"))?;
        m1_engine::values::parse_date(t).ok_or_else(|| bad(name, format!("'{t}' is not a UTC ISO-8601 time")))
    };
    let (from, to) = (time("startTime")?, time("endTime")?);
    if from >= to {
        return Err(bad("startTime", "must be before endTime"));
    }
    let by = req.query.get("aggregateBy").map_or("hour", String::as_str);
    if !["hour", "day", "month"].contains(&by) {
        return Err(bad("aggregateBy", format!("'{by}' is not hour, day or month")));
    }
    let metric = req.query.get("metric").map(String::as_str);
    if let Some(m) = metric
        && !["ComputeCredit", "StorageAvgByte"].contains(&m)
    {
        return Err(bad("metric", format!("'{m}' is not ComputeCredit or StorageAvgByte")));
    }
    let envs = b.ops("env/list", vec![("account".into(), org.id.clone())])?;
    // Bounded work and answer: at most 100,000 entries (periods times environments) per metric.
    let periods = crate::usage::periods(from, to, by).len();
    let count = envs.as_array().map_or(0, Vec::len).max(1);
    if periods.saturating_mul(count) > 100_000 {
        return Err(bad(
            "endTime",
            format!(
                "the window holds {periods} periods of {count} workspaces, over 100,000 entries: aggregate by a longer period or ask for less time"
            ),
        ));
    }
    let envs: Vec<(String, String)> = envs
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|e| (e["id"].as_str().unwrap_or_default().to_string(), e["name"].as_str().unwrap_or_default().to_string()))
        .collect();
    crate::usage::billing(b.catalog(), &envs, &org.id, metric, from, to, by)
}

// --- workspace groups ---

fn owned(g: &WorkspaceGroup, org: &Org) -> bool {
    g.account.as_deref().unwrap_or("default") == org.id
}

/// The group `id` of the organization (live ones unless `terminated`), or 404.
fn group(b: &dyn Backend, org: &Org, id: &str) -> Result<WorkspaceGroup> {
    let want = m1_id(id);
    b.catalog()
        .groups()?
        .into_iter()
        .find(|g| m1_id(&g.id) == want && owned(g, org) && g.terminated.is_none())
        .ok_or_else(|| unknown("workspace group", id))
}

fn group_json(g: &WorkspaceGroup) -> Value {
    json!({
        "workspaceGroupID": g.id, "name": g.name, "regionID": g.region_id,
        "state": if g.terminated.is_some() { "TERMINATED" } else { "ACTIVE" },
        "firewallRanges": g.firewall_ranges, "allowAllTraffic": g.allow_all_traffic,
        "createdAt": iso(g.created), "expiresAt": g.expires_at,
        "terminatedAt": g.terminated.map(iso), "updateWindow": g.update_window,
    })
}

pub(super) fn groups(b: &dyn Backend, req: &Request) -> Result<Value> {
    let org = b.org(None, "view")?;
    let all = req.flag("includeTerminated")?;
    let list = b.catalog().groups()?.into_iter().filter(|g| owned(g, &org) && (all || g.terminated.is_none()));
    Ok(select_fields(req, Value::Array(list.map(|g| group_json(&g)).collect())))
}

pub(super) fn group_create(b: &dyn Backend, req: &Request) -> Result<Value> {
    let org = b.org(None, "manage")?;
    let region = req.text("regionID").unwrap_or_default();
    location_of(b, Some(region), "regionID")?;
    let ranges: Vec<String> = serde_json::from_value(req.body["firewallRanges"].clone()).unwrap_or_default();
    let (password, generated) = match req.text("adminPassword") {
        Some(p) => (p.to_string(), false),
        None => (b.new_password(), true),
    };
    let group = WorkspaceGroup {
        id: m1_engine::service::new_uuid(),
        name: req.text("name").unwrap_or_default().to_string(),
        region_id: region.to_string(),
        firewall_ranges: ranges,
        allow_all_traffic: req.field("allowAllTraffic").and_then(Value::as_bool).unwrap_or(false),
        created: m1_engine::environment::now_ms(),
        expires_at: req.text("expiresAt").map(str::to_string),
        update_window: req.field("updateWindow").cloned(),
        smart_dr: req.field("smartDR").and_then(Value::as_bool).unwrap_or(false),
        account: Some(org.id.clone()),
        admin_password_hash: Some(b.hash_password(&password)?),
        terminated: None,
    };
    let g = b.catalog().add_group(group)?;
    let mut out = json!({"workspaceGroupID": g.id});
    if generated {
        out["adminPassword"] = json!(password);
    }
    Ok(out)
}

pub(super) fn group_get(b: &dyn Backend, req: &Request) -> Result<Value> {
    let org = org_of_group(b, "view", req.param("workspaceGroupID"))?;
    Ok(select_fields(req, group_json(&group(b, &org, req.param("workspaceGroupID"))?)))
}

pub(super) fn group_update(b: &dyn Backend, req: &Request) -> Result<Value> {
    let org = org_of_group(b, "manage", req.param("workspaceGroupID"))?;
    let g = group(b, &org, req.param("workspaceGroupID"))?;
    let hash = req.text("adminPassword").map(|p| b.hash_password(p)).transpose()?;
    let g = b.catalog().update_group(&g.id, |g| {
        if let Some(n) = req.text("name") {
            g.name = n.to_string();
        }
        if let Some(r) = req.field("firewallRanges") {
            g.firewall_ranges = serde_json::from_value(r.clone()).unwrap_or_default();
        }
        if let Some(a) = req.field("allowAllTraffic").and_then(Value::as_bool) {
            g.allow_all_traffic = a;
        }
        if let Some(e) = req.text("expiresAt") {
            g.expires_at = Some(e.to_string());
        }
        if let Some(w) = req.field("updateWindow") {
            g.update_window = Some(w.clone());
        }
        if hash.is_some() {
            g.admin_password_hash = hash.clone();
        }
        Ok(())
    })?;
    // A new admin password is every workspace's of the group.
    if let Some(h) = &hash {
        for e in group_members(b, &g.id, &org)? {
            b.set_admin_hash(e["id"].as_str().unwrap_or_default(), h)?;
        }
    }
    Ok(json!({"workspaceGroupID": g.id}))
}

pub(super) fn group_delete(b: &dyn Backend, req: &Request) -> Result<Value> {
    let org = org_of_group(b, "manage", req.param("workspaceGroupID"))?;
    let g = group(b, &org, req.param("workspaceGroupID"))?;
    let members = group_members(b, &g.id, &org)?;
    if !members.is_empty() && !req.flag("force")? {
        return Err(Error::Conflict(format!(
            "workspace group '{}' has {} workspaces: terminate them first, or pass force=true",
            g.name,
            members.len()
        )));
    }
    for e in members {
        b.ops("env/destroy", vec![("env".into(), e["id"].as_str().unwrap_or_default().to_string())])?;
    }
    b.catalog().update_group(&g.id, |g| {
        g.terminated = Some(m1_engine::environment::now_ms());
        Ok(())
    })?;
    Ok(json!({"workspaceGroupID": g.id}))
}

// --- workspaces ---

/// The organization (of the caller's, holding `right`) that has workspace `id`, or 404.
fn org_of_workspace(b: &dyn Backend, right: &str, id: &str) -> Result<Org> {
    let want = m1_id(id);
    for org_id in b.org_ids(right) {
        let envs = b.ops("env/list", vec![("account".into(), org_id.clone())])?;
        if envs.as_array().is_some_and(|l| l.iter().any(|e| e["id"] == want)) {
            return b.org(Some(&org_id), right);
        }
    }
    Err(unknown("workspace", id))
}

/// The organization (of the caller's, holding `right`) that has workspace group `id`, or 404.
fn org_of_group(b: &dyn Backend, right: &str, id: &str) -> Result<Org> {
    let want = m1_id(id);
    let owner = b
        .catalog()
        .groups()?
        .into_iter()
        .find(|g| m1_id(&g.id) == want && g.terminated.is_none())
        .map(|g| g.account.unwrap_or_else(|| "default".into()));
    match owner {
        Some(o) if b.org_ids(right).contains(&o) => b.org(Some(&o), right),
        _ => Err(unknown("workspace group", id)),
    }
}

/// The environment `id` of the organization, or 404.
fn workspace(b: &dyn Backend, org: &Org, id: &str) -> Result<Value> {
    let want = m1_id(id);
    let envs = b.ops("env/list", vec![("account".into(), org.id.clone())])?;
    envs.as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .find(|e| e["id"] == want)
        .ok_or_else(|| unknown("workspace", id))
}

fn env_param(e: &Value) -> Vec<(String, String)> {
    vec![("env".into(), e["id"].as_str().unwrap_or_default().to_string())]
}

fn workspace_json(e: &Value) -> Value {
    let s = &e["service"];
    let state = match e["state"].as_str() {
        Some("running") => "ACTIVE",
        _ => "SUSPENDED",
    };
    let endpoint = e["endpoints"]
        .as_array()
        .and_then(|l| l.last())
        .map(|p| format!("{}:{}{}", p["host"].as_str().unwrap_or(""), p["port"], p["path"].as_str().unwrap_or("")))
        .unwrap_or_default();
    let auto = if s["idleScaling"].as_bool() == Some(true) {
        json!({"suspendType": "IDLE", "idleAfterSeconds": s["idleTimeoutMinutes"].as_u64().unwrap_or(15) * 60})
    } else {
        Value::Null
    };
    json!({
        "workspaceID": uuid(e["id"].as_str().unwrap_or_default()),
        "workspaceGroupID": s["group"], "name": e["name"],
        "size": s.get("size").cloned().filter(|v| !v.is_null()).unwrap_or_else(|| json!("S-00")),
        "state": state, "endpoint": endpoint, "createdAt": iso(e["created"].as_i64().unwrap_or_default()),
        "lastResumedAt": s["stateChanged"].as_i64().filter(|_| state == "ACTIVE").map(iso),
        "cacheConfig": s["cacheConfig"], "deploymentType": s["deploymentType"], "autoSuspend": auto,
    })
}

pub(super) fn workspaces(b: &dyn Backend, req: &Request) -> Result<Value> {
    let gid = req.query.get("workspaceGroupID").ok_or_else(|| bad("workspaceGroupID", "is required"))?;
    let org = org_of_group(b, "view", gid)?;
    let g = group(b, &org, gid)?;
    let list: Vec<Value> = group_members(b, &g.id, &org)?.iter().map(workspace_json).collect();
    Ok(select_fields(req, Value::Array(list)))
}

/// The settings of an `autoSuspend` object.
fn auto_suspend(req: &Request, settings: &mut serde_json::Map<String, Value>) -> Result<()> {
    let Some(a) = req.field("autoSuspend") else { return Ok(()) };
    match a["suspendType"].as_str() {
        Some("IDLE") => {
            let secs = a["suspendAfterSeconds"].as_f64().unwrap_or(1200.0);
            if secs < 300.0 {
                return Err(bad("autoSuspend.suspendAfterSeconds", format!("{secs} must be at least 300 (5 minutes)")));
            }
            settings.insert("idleScaling".into(), json!(true));
            settings.insert("idleTimeoutMinutes".into(), json!((secs / 60.0).ceil() as u64));
        }
        Some("SCHEDULED") => {
            return Err(bad(
                "autoSuspend.suspendType",
                "SCHEDULED is not taken: m1 suspends when idle (IDLE) or on request",
            ));
        }
        _ => {
            settings.insert("idleScaling".into(), json!(false));
        }
    }
    Ok(())
}

pub(super) fn workspace_create(b: &dyn Backend, req: &Request) -> Result<Value> {
    let org = org_of_group(b, "manage", req.text("workspaceGroupID").unwrap_or_default())?;
    let g = group(b, &org, req.text("workspaceGroupID").unwrap_or_default())?;
    if req.field("enableKai").and_then(Value::as_bool) == Some(true) {
        return Err(bad("enableKai", "m1 has no MongoDB (Kai) API: leave it out or false"));
    }
    let mut settings = serde_json::Map::new();
    settings.insert("group".into(), json!(g.id));
    for k in ["size", "cacheConfig"] {
        if let Some(v) = req.field(k) {
            settings.insert(k.into(), v.clone());
        }
    }
    auto_suspend(req, &mut settings)?;
    super::clickhouse::check_settings(&settings)?;
    let name = req.text("name").unwrap_or_default().to_string();
    let mut params = vec![("env".to_string(), name.clone()), ("account".to_string(), org.id.clone())];
    if let Some(loc) = b.locations().into_iter().find(|l| region_id(l) == g.region_id) {
        params.push(("url".into(), url_in(&loc, &name)));
    }
    let made = b.ops("env/create", params)?;
    let id = made["id"].as_str().unwrap_or_default().to_string();
    b.ops("env/settings", vec![("env".into(), id.clone()), ("settings".into(), Value::Object(settings).to_string())])?;
    if let Some(h) = &g.admin_password_hash {
        b.set_admin_hash(&id, h)?;
    }
    Ok(json!({"workspaceID": uuid(&id)}))
}

pub(super) fn workspace_get(b: &dyn Backend, req: &Request) -> Result<Value> {
    let org = org_of_workspace(b, "view", req.param("workspaceID"))?;
    Ok(select_fields(req, workspace_json(&workspace(b, &org, req.param("workspaceID"))?)))
}

pub(super) fn workspace_update(b: &dyn Backend, req: &Request) -> Result<Value> {
    let org = org_of_workspace(b, "manage", req.param("workspaceID"))?;
    let e = workspace(b, &org, req.param("workspaceID"))?;
    let mut settings = serde_json::Map::new();
    for k in ["size", "cacheConfig", "deploymentType"] {
        if let Some(v) = req.field(k) {
            settings.insert(k.into(), v.clone());
        }
    }
    auto_suspend(req, &mut settings)?;
    let mut params = env_param(&e);
    params.push(("settings".into(), Value::Object(settings).to_string()));
    b.ops("env/settings", params)?;
    Ok(json!({"workspaceID": uuid(e["id"].as_str().unwrap_or_default())}))
}

pub(super) fn workspace_delete(b: &dyn Backend, req: &Request) -> Result<Value> {
    let org = org_of_workspace(b, "manage", req.param("workspaceID"))?;
    let e = workspace(b, &org, req.param("workspaceID"))?;
    b.ops("env/destroy", env_param(&e))?;
    Ok(json!({"workspaceID": uuid(e["id"].as_str().unwrap_or_default())}))
}

pub(super) fn suspend(b: &dyn Backend, req: &Request) -> Result<Value> {
    let org = org_of_workspace(b, "manage", req.param("workspaceID"))?;
    let e = workspace(b, &org, req.param("workspaceID"))?;
    b.ops("env/suspend", env_param(&e))?;
    Ok(json!({"workspaceID": uuid(e["id"].as_str().unwrap_or_default())}))
}

pub(super) fn resume(b: &dyn Backend, req: &Request) -> Result<Value> {
    let org = org_of_workspace(b, "manage", req.param("workspaceID"))?;
    let e = workspace(b, &org, req.param("workspaceID"))?;
    if req.field("disableAutoSuspend").and_then(Value::as_bool) == Some(true) {
        let mut params = env_param(&e);
        params.push(("settings".into(), json!({"idleScaling": false}).to_string()));
        b.ops("env/settings", params)?;
    }
    b.ops("env/resume", env_param(&e))?;
    Ok(json!({"workspaceID": uuid(e["id"].as_str().unwrap_or_default())}))
}

pub(super) fn kai(b: &dyn Backend, req: &Request) -> Result<Value> {
    let org = org_of_workspace(b, "view", req.param("workspaceID"))?;
    workspace(b, &org, req.param("workspaceID"))?;
    // Not applicable: m1 has no MongoDB wire protocol, so there is no service to connect to.
    Ok(json!({"serviceName": ""}))
}

pub(super) fn outbound(b: &dyn Backend, req: &Request) -> Result<Value> {
    let org = org_of_workspace(b, "view", req.param("workspaceID"))?;
    let e = workspace(b, &org, req.param("workspaceID"))?;
    Ok(if e["outbound"].as_bool() == Some(true) { json!([{"outboundAllowList": "*"}]) } else { json!([]) })
}

// --- storage DR: each workspace of the group is replicated on its own (dr/*) ---

fn dr_each(b: &dyn Backend, envs: &[Value], op: &str) -> Result<Value> {
    let mut out = serde_json::Map::new();
    for e in envs {
        let id = e["id"].as_str().unwrap_or_default();
        let answer = match op {
            "failover" => b.ops("env/dr/failover", env_param(e))?,
            "failback" => b.ops("env/dr/failback", env_param(e))?,
            "start" => b.env(id, "admin", "dr/startPreProvision", Vec::new())?,
            _ => b.env(id, "admin", "dr/stopPreProvision", Vec::new())?,
        };
        out.insert(e["name"].as_str().unwrap_or_default().to_string(), answer);
    }
    Ok(json!({"databases": out}))
}

fn dr_setup(b: &dyn Backend, req: &Request, envs: Vec<Value>) -> Result<Value> {
    let location = location_of(b, req.text("regionID"), "regionID")?.unwrap_or_default();
    let names: Vec<String> = serde_json::from_value(req.body["databaseNames"].clone()).unwrap_or_default();
    for n in &names {
        if !envs.iter().any(|e| e["name"] == n.as_str()) {
            return Err(bad("databaseNames", format!("'{n}' is not a workspace here")));
        }
    }
    let mut out = serde_json::Map::new();
    for e in envs.iter().filter(|e| names.is_empty() || names.iter().any(|n| e["name"] == n.as_str())) {
        let name = e["name"].as_str().unwrap_or_default();
        let replica = url_in(&location, &format!("{name}-dr"));
        let answer =
            b.env(e["id"].as_str().unwrap_or_default(), "admin", "dr/setup", vec![("replica".into(), replica)])?;
        out.insert(name.to_string(), answer);
    }
    Ok(json!({"databases": out}))
}

fn dr_status(b: &dyn Backend, envs: &[Value]) -> Result<Value> {
    let mut storage = Vec::new();
    let mut done = 0;
    for e in envs {
        let status = b.env(e["id"].as_str().unwrap_or_default(), "view", "dr/status", Vec::new());
        let (state, region) = match &status {
            Ok(s) => {
                done += 1;
                let state = match s["state"].as_str() {
                    Some("replicating") if s["lastError"].is_null() => "Active",
                    Some("replicating") => "Error",
                    Some(_) => "Inactive",
                    None => "Pending",
                };
                (state, s["replica"].as_str().unwrap_or_default().to_string())
            }
            Err(_) => ("Inactive", String::new()),
        };
        storage.push(json!({"databaseName": e["name"], "region": region, "duplicationState": state}));
    }
    let total = envs.len();
    Ok(json!({
        "compute": {"storageDRType": "PreProvisionStart", "storageDRState": if done == total { "Completed" } else { "Active" },
                    "completedAttachments": done, "completedWorkspaces": done, "totalAttachments": total, "totalWorkspaces": total},
        "storage": storage,
    }))
}

fn group_envs(b: &dyn Backend, req: &Request, right: &str) -> Result<(WorkspaceGroup, Vec<Value>)> {
    let org = org_of_group(b, right, req.param("workspaceGroupID"))?;
    let g = group(b, &org, req.param("workspaceGroupID"))?;
    let members = group_members(b, &g.id, &org)?;
    Ok((g, members))
}

fn ws_envs(b: &dyn Backend, req: &Request, right: &str) -> Result<(Option<String>, Vec<Value>)> {
    let org = org_of_workspace(b, right, req.param("workspaceID"))?;
    let e = workspace(b, &org, req.param("workspaceID"))?;
    Ok((e["service"]["group"].as_str().map(str::to_string), vec![e]))
}

pub(super) fn group_dr_failover(b: &dyn Backend, req: &Request) -> Result<Value> {
    dr_each(b, &group_envs(b, req, "admin")?.1, "failover")
}
pub(super) fn group_dr_failback(b: &dyn Backend, req: &Request) -> Result<Value> {
    dr_each(b, &group_envs(b, req, "admin")?.1, "failback")
}
pub(super) fn group_dr_start(b: &dyn Backend, req: &Request) -> Result<Value> {
    dr_each(b, &group_envs(b, req, "admin")?.1, "start")
}
pub(super) fn group_dr_stop(b: &dyn Backend, req: &Request) -> Result<Value> {
    dr_each(b, &group_envs(b, req, "admin")?.1, "stop")
}
pub(super) fn group_dr_setup(b: &dyn Backend, req: &Request) -> Result<Value> {
    let envs = group_envs(b, req, "admin")?.1;
    dr_setup(b, req, envs)
}
pub(super) fn group_dr_status(b: &dyn Backend, req: &Request) -> Result<Value> {
    dr_status(b, &group_envs(b, req, "view")?.1)
}
pub(super) fn dr_regions(b: &dyn Backend, req: &Request) -> Result<Value> {
    let (g, _) = group_envs(b, req, "view")?;
    Ok(select_fields(req, other_regions(b, Some(&g.region_id))))
}

fn other_regions(b: &dyn Backend, own: Option<&str>) -> Value {
    Value::Array(b.locations().iter().filter(|l| Some(region_id(l).as_str()) != own).map(|l| region_json(l)).collect())
}

pub(super) fn ws_dr_failover(b: &dyn Backend, req: &Request) -> Result<Value> {
    dr_each(b, &ws_envs(b, req, "admin")?.1, "failover")
}
pub(super) fn ws_dr_failback(b: &dyn Backend, req: &Request) -> Result<Value> {
    dr_each(b, &ws_envs(b, req, "admin")?.1, "failback")
}
pub(super) fn ws_dr_start(b: &dyn Backend, req: &Request) -> Result<Value> {
    dr_each(b, &ws_envs(b, req, "admin")?.1, "start")
}
pub(super) fn ws_dr_stop(b: &dyn Backend, req: &Request) -> Result<Value> {
    dr_each(b, &ws_envs(b, req, "admin")?.1, "stop")
}
pub(super) fn ws_dr_setup(b: &dyn Backend, req: &Request) -> Result<Value> {
    let envs = ws_envs(b, req, "admin")?.1;
    dr_setup(b, req, envs)
}
pub(super) fn ws_dr_status(b: &dyn Backend, req: &Request) -> Result<Value> {
    dr_status(b, &ws_envs(b, req, "view")?.1)
}
pub(super) fn ws_dr_regions(b: &dyn Backend, req: &Request) -> Result<Value> {
    let (group, envs) = ws_envs(b, req, "view")?;
    let own = group.and_then(|g| b.catalog().group(&g).ok()).map(|g| g.region_id);
    let _ = envs;
    Ok(select_fields(req, other_regions(b, own.as_deref())))
}

// --- private connections: recorded, changing nothing (m1 serve binds where its operator says) ---

const CONNECTIONS: &str = "private-connections.json";

fn connections(b: &dyn Backend) -> Result<Vec<Value>> {
    let path = b.catalog().home().join(CONNECTIONS);
    match std::fs::read(&path) {
        Ok(bytes) => Ok(serde_json::from_slice(&bytes)?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(m1_engine::EngineError::io(&path, e).into()),
    }
}

fn save_connections(b: &dyn Backend, list: &[Value]) -> Result<()> {
    let path = b.catalog().home().join(CONNECTIONS);
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(list)?)
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|e| m1_engine::EngineError::io(&path, e).into())
}

fn now_text() -> String {
    iso(m1_engine::environment::now_ms())
}

pub(super) fn connection_create(b: &dyn Backend, req: &Request) -> Result<Value> {
    let org = org_of_group(b, "manage", req.text("workspaceGroupID").unwrap_or_default())?;
    let g = group(b, &org, req.text("workspaceGroupID").unwrap_or_default())?;
    if let Some(w) = req.text("workspaceID") {
        let e = workspace(b, &org, w)?;
        if e["service"]["group"] != g.id.as_str() {
            return Err(bad("workspaceID", format!("workspace {w} is not in workspace group {}", g.id)));
        }
    }
    let id = m1_engine::service::new_uuid();
    let mut list = connections(b)?;
    list.push(json!({
        "privateConnectionID": id, "workspaceGroupID": g.id, "workspaceID": req.text("workspaceID").map(|w| uuid(&m1_id(w))),
        "type": req.text("type").unwrap_or("INBOUND"), "status": "ACTIVE", "allowList": req.text("allowList"),
        "serviceName": req.text("serviceName"), "kaiEndpointID": req.text("kaiEndpointID"),
        "createdAt": now_text(), "updatedAt": now_text(), "activeAt": now_text(), "account": org.id,
    }));
    save_connections(b, &list)?;
    Ok(json!({"privateConnectionID": id}))
}

fn connection_json(c: &Value) -> Value {
    let mut c = c.clone();
    if let Some(o) = c.as_object_mut() {
        o.remove("account");
        o.remove("kaiEndpointID");
    }
    c
}

/// The organization (of the caller's, holding `right`) that has private connection `id`.
fn org_of_connection(b: &dyn Backend, right: &str, id: &str) -> Result<Org> {
    let owner = connections(b)?.into_iter().find(|c| c["privateConnectionID"] == id && c["status"] != "DELETED");
    match owner.as_ref().and_then(|c| c["account"].as_str()) {
        Some(o) if b.org_ids(right).iter().any(|x| x == o) => b.org(Some(o), right),
        _ => Err(unknown("private connection", id)),
    }
}

fn find_connection(b: &dyn Backend, org: &Org, id: &str) -> Result<(usize, Vec<Value>)> {
    let list = connections(b)?;
    let at = list
        .iter()
        .position(|c| c["privateConnectionID"] == id && c["account"] == org.id.as_str() && c["status"] != "DELETED")
        .ok_or_else(|| unknown("private connection", id))?;
    Ok((at, list))
}

pub(super) fn connection_get(b: &dyn Backend, req: &Request) -> Result<Value> {
    let org = org_of_connection(b, "view", req.param("connectionID"))?;
    let (at, list) = find_connection(b, &org, req.param("connectionID"))?;
    Ok(select_fields(req, connection_json(&list[at])))
}

pub(super) fn connection_update(b: &dyn Backend, req: &Request) -> Result<Value> {
    let org = org_of_connection(b, "manage", req.param("connectionID"))?;
    let (at, mut list) = find_connection(b, &org, req.param("connectionID"))?;
    if let Some(a) = req.text("allowList") {
        list[at]["allowList"] = json!(a);
    }
    list[at]["updatedAt"] = json!(now_text());
    save_connections(b, &list)?;
    Ok(json!({"privateConnectionID": req.param("connectionID")}))
}

pub(super) fn connection_delete(b: &dyn Backend, req: &Request) -> Result<Value> {
    let org = org_of_connection(b, "manage", req.param("connectionID"))?;
    let (at, mut list) = find_connection(b, &org, req.param("connectionID"))?;
    list[at]["status"] = json!("DELETED");
    list[at]["deletedAt"] = json!(now_text());
    save_connections(b, &list)?;
    Ok(json!({"privateConnectionID": req.param("connectionID")}))
}

fn connections_where(b: &dyn Backend, org: &Org, key: &str, id: &str) -> Result<Value> {
    Ok(Value::Array(
        connections(b)?
            .iter()
            .filter(|c| c["account"] == org.id.as_str() && c["status"] != "DELETED" && c[key] == id)
            .map(connection_json)
            .collect(),
    ))
}

pub(super) fn group_connections(b: &dyn Backend, req: &Request) -> Result<Value> {
    let org = org_of_group(b, "view", req.param("workspaceGroupID"))?;
    let g = group(b, &org, req.param("workspaceGroupID"))?;
    Ok(select_fields(req, connections_where(b, &org, "workspaceGroupID", &g.id)?))
}

pub(super) fn workspace_connections(b: &dyn Backend, req: &Request) -> Result<Value> {
    let org = org_of_workspace(b, "view", req.param("workspaceID"))?;
    let e = workspace(b, &org, req.param("workspaceID"))?;
    Ok(select_fields(req, connections_where(b, &org, "workspaceID", &uuid(e["id"].as_str().unwrap_or_default()))?))
}
