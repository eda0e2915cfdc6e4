//! Seed 004's Services (ClickHouse Cloud) over m1: a service is an environment of the
//! organization (ops account) named in the path.

use serde_json::{Value, json};

use super::{Backend, Org, Request, bad, iso, m1_id, unknown, uuid};
use crate::error::{Error, Result};

/// An environment (as `env/get` answers it) in seed 004's `Service` shape.
pub(super) fn service_json(e: &Value) -> Value {
    let s = &e["service"];
    let or_null = |v: &Value| if v.is_null() { Value::Null } else { v.clone() };
    json!({
        "id": uuid(e["id"].as_str().unwrap_or_default()),
        "name": e["name"],
        "provider": or_null(&s["provider"]),
        "region": s.get("region").cloned().filter(|v| !v.is_null()).unwrap_or_else(|| e["url"].clone()),
        "state": e["state"],
        "endpoints": e["endpoints"],
        "tier": or_null(&s["tier"]),
        "minTotalMemoryGb": or_null(&s["minTotalMemoryGb"]),
        "maxTotalMemoryGb": or_null(&s["maxTotalMemoryGb"]),
        "idleScaling": s["idleScaling"].as_bool().unwrap_or(false),
        "idleTimeoutMinutes": or_null(&s["idleTimeoutMinutes"]),
        "ipAccessList": s.get("ipAccessList").cloned().unwrap_or(Value::Null),
        "createdAt": iso(e["created"].as_i64().unwrap_or_default()),
    })
}

fn org(b: &dyn Backend, req: &Request, right: &str) -> Result<Org> {
    b.org(Some(req.param("organizationId")), right)
}

/// The organization's environments as `env/list` answers them.
fn services(b: &dyn Backend, org: &Org) -> Result<Vec<Value>> {
    Ok(b.ops("env/list", vec![("account".into(), org.id.clone())])?.as_array().cloned().unwrap_or_default())
}

/// The environment `serviceId` of the organization, or 404.
pub(super) fn find(b: &dyn Backend, org: &Org, id: &str) -> Result<Value> {
    let want = m1_id(id);
    services(b, org)?.into_iter().find(|e| e["id"] == want).ok_or_else(|| unknown("service", id))
}

fn env_param(e: &Value) -> (String, String) {
    ("env".into(), e["id"].as_str().unwrap_or_default().to_string())
}

fn fresh(b: &dyn Backend, e: &Value) -> Result<Value> {
    Ok(service_json(&b.ops("env/get", vec![env_param(e)])?))
}

pub(super) fn list(b: &dyn Backend, req: &Request) -> Result<Value> {
    let org = org(b, req, "view")?;
    Ok(Value::Array(services(b, &org)?.iter().map(service_json).collect()))
}

/// The settings of a create or scaling body, as `env/settings` takes them.
fn settings_of(body: &Value, names: &[&str]) -> serde_json::Map<String, Value> {
    names.iter().filter_map(|n| body.get(*n).filter(|v| !v.is_null()).map(|v| (n.to_string(), v.clone()))).collect()
}

const CREATE_SETTINGS: &[&str] =
    &["tier", "provider", "region", "minTotalMemoryGb", "maxTotalMemoryGb", "idleScaling", "idleTimeoutMinutes"];
const SCALING_SETTINGS: &[&str] = &["minTotalMemoryGb", "maxTotalMemoryGb", "idleScaling", "idleTimeoutMinutes"];

/// Checks settings before anything is made, so a bad one leaves nothing behind.
pub(super) fn check_settings(patch: &serde_json::Map<String, Value>) -> Result<()> {
    let mut s = m1_engine::service::ServiceSettings::default();
    super::super::ops::apply_settings(&mut s, patch.clone())?;
    s.check()?;
    Ok(())
}

fn check_access(list: &Value) -> Result<Vec<m1_engine::service::IpAccess>> {
    let list: Vec<m1_engine::service::IpAccess> = serde_json::from_value(list.clone())
        .map_err(|e| bad("ipAccessList", format!("an array of {{\"source\", \"description\"}}: {e}")))?;
    m1_engine::service::check_ranges("ipAccessList", list.iter().map(|e| e.source.as_str()))?;
    Ok(list)
}

/// The storage location of a region id or location named in a request (`None`: the default).
pub(super) fn location_of(b: &dyn Backend, region: Option<&str>, field: &str) -> Result<Option<String>> {
    let Some(region) = region else { return Ok(None) };
    b.locations()
        .into_iter()
        .find(|l| super::singlestore::region_id(l) == region || l == region)
        .map(Some)
        .ok_or_else(|| bad(field, format!("'{region}' is not a region here (see GET /v1/regions)")))
}

/// Where a new environment named `name` goes in `location`.
pub(super) fn url_in(location: &str, name: &str) -> String {
    format!("{}/{name}", location.trim_end_matches('/'))
}

pub(super) fn create(b: &dyn Backend, req: &Request) -> Result<Value> {
    let org = org(b, req, "manage")?;
    let name = req.text("name").unwrap_or_default().to_string();
    let patch = settings_of(&req.body, CREATE_SETTINGS);
    check_settings(&patch)?;
    let access = req.field("ipAccessList").map(check_access).transpose()?;
    let url = location_of(b, req.text("region"), "region")?.map(|l| url_in(&l, &name));
    let mut params = vec![("env".to_string(), name.clone()), ("account".to_string(), org.id.clone())];
    if let Some(u) = url {
        params.push(("url".into(), u));
    }
    let made = match req.text("backupId") {
        None => b.ops("env/create", params)?,
        Some(backup) => {
            // The backup is one of a service of this organization.
            let mut source = None;
            for e in services(b, &org)? {
                let list = b.ops("env/backup/list", vec![env_param(&e)])?;
                if list.as_array().is_some_and(|l| l.iter().any(|x| x["id"] == backup || x["name"] == backup)) {
                    source = Some(e);
                    break;
                }
            }
            let source = source.ok_or_else(|| {
                Error::Engine(m1_engine::EngineError::UnknownBackup(format!(
                    "{backup} (of no service of this organization)"
                )))
            })?;
            params.push(("from".into(), source["id"].as_str().unwrap_or_default().to_string()));
            params.push(("backup".into(), backup.to_string()));
            b.ops("env/restore", params)?
        }
    };
    let id = made["id"].as_str().unwrap_or_default().to_string();
    if !patch.is_empty() {
        b.ops("env/settings", vec![("env".into(), id.clone()), ("settings".into(), Value::Object(patch).to_string())])?;
    }
    if let Some(list) = access {
        b.ops("env/access", vec![("env".into(), id.clone()), ("list".into(), serde_json::to_string(&list)?)])?;
    }
    let password = b.new_password();
    b.set_admin_hash(&id, &b.hash_password(&password)?)?;
    Ok(json!({"service": fresh(b, &made)?, "password": password}))
}

pub(super) fn get(b: &dyn Backend, req: &Request) -> Result<Value> {
    let org = org(b, req, "view")?;
    fresh(b, &find(b, &org, req.param("serviceId"))?)
}

pub(super) fn update(b: &dyn Backend, req: &Request) -> Result<Value> {
    let org = org(b, req, "manage")?;
    let e = find(b, &org, req.param("serviceId"))?;
    // The list first: a bad one is refused before the name changes.
    let list = match req.field("ipAccessList") {
        None => None,
        Some(Value::Array(_)) => Some(check_access(&req.body["ipAccessList"])?),
        Some(Value::Object(change)) => {
            let mut list: Vec<m1_engine::service::IpAccess> =
                serde_json::from_value(e["service"]["ipAccessList"].clone()).unwrap_or_default();
            if let Some(k) = change.keys().find(|k| !matches!(k.as_str(), "add" | "remove")) {
                return Err(bad(&format!("ipAccessList.{k}"), "is not a field here; the fields are add, remove"));
            }
            if let Some(remove) = change.get("remove") {
                let remove = check_access(remove)?;
                list.retain(|x| !remove.iter().any(|r| r.source == x.source));
            }
            if let Some(add) = change.get("add") {
                list.extend(check_access(add)?);
            }
            Some(list)
        }
        Some(other) => {
            return Err(bad("ipAccessList", format!("must be an array or {{\"add\", \"remove\"}}, got {other}")));
        }
    };
    if let Some(list) = list {
        b.ops("env/access", vec![env_param(&e), ("list".into(), serde_json::to_string(&list)?)])?;
    }
    if let Some(name) = req.text("name")
        && e["name"] != name
    {
        b.ops("env/rename", vec![env_param(&e), ("name".into(), name.to_string())])?;
    }
    fresh(b, &e)
}

pub(super) fn delete(b: &dyn Backend, req: &Request) -> Result<Value> {
    let org = org(b, req, "manage")?;
    let e = find(b, &org, req.param("serviceId"))?;
    if e["state"] != "stopped" {
        return Err(Error::Conflict(format!(
            "service '{}' is {}: stop it first (PATCH .../state {{\"command\": \"stop\"}}), then delete it",
            e["name"].as_str().unwrap_or_default(),
            e["state"].as_str().unwrap_or_default()
        )));
    }
    b.ops("env/destroy", vec![env_param(&e)])?;
    Ok(Value::Null)
}

pub(super) fn state(b: &dyn Backend, req: &Request) -> Result<Value> {
    let org = org(b, req, "manage")?;
    let e = find(b, &org, req.param("serviceId"))?;
    let path = if req.text("command") == Some("stop") { "env/suspend" } else { "env/resume" };
    Ok(service_json(&b.ops(path, vec![env_param(&e)])?))
}

pub(super) fn scaling(b: &dyn Backend, req: &Request) -> Result<Value> {
    let org = org(b, req, "manage")?;
    let e = find(b, &org, req.param("serviceId"))?;
    let patch = settings_of(&req.body, SCALING_SETTINGS);
    Ok(service_json(
        &b.ops("env/settings", vec![env_param(&e), ("settings".into(), Value::Object(patch).to_string())])?,
    ))
}

pub(super) fn password(b: &dyn Backend, req: &Request) -> Result<Value> {
    let org = org(b, req, "admin")?;
    let e = find(b, &org, req.param("serviceId"))?;
    if req.field("newPasswordHash").is_some() {
        return Err(bad(
            "newPasswordHash",
            "m1 keeps only salted Argon2 hashes, which cannot be made from a SHA-256 one: leave it out to get a generated password",
        ));
    }
    let password = b.new_password();
    b.set_admin_hash(e["id"].as_str().unwrap_or_default(), &b.hash_password(&password)?)?;
    Ok(json!({"password": password}))
}

fn backup_json(service: &Value, x: &Value) -> Value {
    let status = match x["status"].as_str() {
        Some("complete") => "done",
        Some("failed") => "error",
        _ => "in_progress",
    };
    json!({
        "id": x["id"],
        "status": status,
        "serviceId": uuid(service["id"].as_str().unwrap_or_default()),
        "startedAt": iso(x["created"].as_i64().unwrap_or_default()),
        "finishedAt": x["completed"].as_i64().map(iso),
    })
}

fn backup_list(b: &dyn Backend, req: &Request) -> Result<(Value, Vec<Value>)> {
    let org = org(b, req, "view")?;
    let e = find(b, &org, req.param("serviceId"))?;
    let mut list = b.ops("env/backup/list", vec![env_param(&e)])?.as_array().cloned().unwrap_or_default();
    list.sort_by_key(|x| std::cmp::Reverse(x["created"].as_i64().unwrap_or_default()));
    Ok((e, list))
}

pub(super) fn backups(b: &dyn Backend, req: &Request) -> Result<Value> {
    let (e, list) = backup_list(b, req)?;
    Ok(Value::Array(list.iter().map(|x| backup_json(&e, x)).collect()))
}

pub(super) fn backup(b: &dyn Backend, req: &Request) -> Result<Value> {
    let (e, list) = backup_list(b, req)?;
    let id = req.param("backupId");
    list.iter()
        .find(|x| x["id"] == id || x["name"] == id)
        .map(|x| backup_json(&e, x))
        .ok_or_else(|| Error::Engine(m1_engine::EngineError::UnknownBackup(id.to_string())))
}
