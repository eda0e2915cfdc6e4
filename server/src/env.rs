//! Environment endpoints (seeds 001 and 002, SPEC §5-§8): auth, users, tokens, schema, write,
//! publish, reads, system parameters, health, data stores (`/query`, `/store/*`) and session
//! stores (`/session/*`).

use std::collections::BTreeMap;
use std::sync::Arc;

use m1_engine::Property;
use m1_ingest::{PublishRequest, WriteOptions};
use serde_json::{Value, json};

use crate::auth::{User, check_password, check_rights, check_username, hash_password, now_ms, token_hash, token_id};
use crate::dispatch::{App, Caller, EnvHandle};
use crate::error::{Result, ServerError};
use crate::params::Params;
use crate::routes::ENV_RIGHTS;
use crate::stream::{Reply, blocking, stream};

/// Calls environment endpoint `path` (route, verb and rights already checked).
pub async fn call(app: Arc<App>, h: Arc<EnvHandle>, path: &str, caller: Caller, p: Params) -> Result<Reply> {
    match path {
        "range" => return range(h, p).await,
        "query" => return query(h, p).await,
        "session/query" => return session_query(h, p).await,
        "ping" => return Ok(Reply::Json(json!({"status": "ok"}))),
        _ => {}
    }
    let path = path.to_string();
    blocking(move || call_blocking(&app, &h, &path, &caller, &p)).await
}

fn call_blocking(app: &App, h: &EnvHandle, path: &str, caller: &Caller, p: &Params) -> Result<Reply> {
    let env = &h.env;
    match path {
        "health" => health(h),
        "init" => init(h, p),
        "auth" => auth(h, caller, p),
        "user/password" => user_password(h, caller, p),
        "user/list" => {
            Ok(Reply::Json(h.auth.read(|d| Value::Array(d.users.iter().map(|(name, u)| user_json(name, u)).collect()))))
        }
        "user/get" => {
            let name = p.req("username")?;
            h.auth
                .read(|d| d.users.get(name).map(|u| user_json(name, u)))
                .map(Reply::Json)
                .ok_or_else(|| ServerError::NotFound(format!("no user named '{name}'")))
        }
        "user/add" => user_add(h, p),
        "user/update" => {
            let name = p.req("username")?;
            let rights = p.list("rights")?.ok_or_else(|| missing("rights"))?;
            check_rights(&rights)?;
            h.auth.update(|d| {
                let user =
                    d.users.get_mut(name).ok_or_else(|| ServerError::NotFound(format!("no user named '{name}'")))?;
                user.rights = rights;
                Ok(())
            })?;
            Ok(Reply::Empty)
        }
        "user/remove" => {
            let name = p.req("username")?;
            h.auth.update(|d| {
                d.users.remove(name).ok_or_else(|| ServerError::NotFound(format!("no user named '{name}'")))?;
                d.tokens.retain(|_, t| t.username != name);
                Ok(())
            })?;
            Ok(Reply::Empty)
        }
        "token/list" => {
            let now = now_ms();
            Ok(Reply::Json(h.auth.read(|d| {
                Value::Array(
                    d.tokens
                        .iter()
                        .filter(|(_, t)| t.expires > now)
                        .map(|(hash, t)| {
                            json!({"id": token_id(hash), "username": t.username, "ip": t.ip.as_deref().unwrap_or("..."),
                                   "issued": t.issued, "expires": t.expires})
                        })
                        .collect(),
                )
            })))
        }
        "token/data" => {
            let secret = p.req("token")?;
            let hash = token_hash(secret);
            h.auth
                .read(|d| {
                    let t = d.tokens.get(&hash)?;
                    let rights = d.users.get(&t.username).map(|u| u.rights.clone()).unwrap_or_default();
                    Some(json!({"id": token_id(&hash), "username": t.username, "rights": rights,
                                "ip": t.ip.as_deref().unwrap_or("..."), "issued": t.issued, "expires": t.expires,
                                "expired": t.expires <= now_ms()}))
                })
                .map(Reply::Json)
                .ok_or_else(|| ServerError::NotFound("no such token (it may have expired or been deleted)".into()))
        }
        "token/delete" => {
            h.auth.update(|d| {
                d.tokens.clear();
                Ok(())
            })?;
            Ok(Reply::Empty)
        }
        "schema" => Ok(Reply::Json(serde_json::to_value(env.schema()?.all()).map_err(internal)?)),
        "schema/add" => {
            let props: Vec<Property> = p.json("properties")?.ok_or_else(|| missing("properties"))?;
            env.add_properties(&props)?;
            Ok(Reply::Empty)
        }
        "schema/wipe" => {
            env.wipe_schema()?;
            Ok(Reply::Empty)
        }
        "next" => Ok(Reply::Json(json!(env.next_key()?))),
        "get" => {
            let ids = p.keys("ids")?.ok_or_else(|| missing("ids"))?;
            let props = p.list("properties")?;
            let batch = m1_query::get(env, &ids, props.as_deref())?;
            Ok(Reply::Json(Value::Array(m1_query::encode::records(&batch).into_iter().map(Value::Object).collect())))
        }
        "write" => write(h, caller, p),
        "publish" => {
            let req = publish_request(h, p)?;
            let report = m1_ingest::publish(env, &req, &|_| {})?;
            if report.rows_published > 0 {
                h.stores.sync(env)?;
            }
            Ok(Reply::Json(serde_json::to_value(report).map_err(internal)?))
        }
        "system" if caller.read_only && !p.0.is_empty() => {
            Err(ServerError::BadRequest("system parameters change with POST, not GET".into()))
        }
        "system" => system(h, p),
        name if name.starts_with("system/") => {
            if caller.read_only && !p.0.is_empty() {
                return Err(ServerError::BadRequest("system parameters change with POST, not GET".into()));
            }
            system_one(h, &name["system/".len()..], p)
        }
        "vacuum" => {
            let ms: u64 = p.num("olderThanMs")?.unwrap_or(3_600_000);
            let report = env.vacuum(std::time::Duration::from_millis(ms))?;
            Ok(Reply::Json(serde_json::to_value(report).map_err(internal)?))
        }
        s if s.starts_with("store/") => Ok(match m1_query::store::params::admin(&h.stores, env, s, |k| p.opt(k))? {
            Some(v) => Reply::Json(v),
            None => Reply::Empty,
        }),
        s if s.starts_with("session/") => {
            let sessions = m1_query::session::Sessions::for_env(env);
            Ok(match m1_query::session::params::call(&sessions, s, |k| p.opt(k))? {
                Some(v) => Reply::Json(v),
                None => Reply::Empty,
            })
        }
        other => {
            let _ = app;
            Err(ServerError::NotFound(format!("unknown endpoint '/{other}'")))
        }
    }
}

fn missing(key: &str) -> ServerError {
    ServerError::BadRequest(format!("missing required parameter '{key}'"))
}

fn internal(e: impl std::fmt::Display) -> ServerError {
    ServerError::Internal(e.to_string())
}

fn user_json(name: &str, u: &User) -> Value {
    json!({"username": name, "rights": u.rights, "created": u.created})
}

fn min_password(h: &EnvHandle) -> usize {
    h.param_i64("password-min-length", 8).max(0) as usize
}

/// `/init`: the first admin, holding every environment right; refused once any user exists.
fn init(h: &EnvHandle, p: &Params) -> Result<Reply> {
    let name = p.req("username")?;
    let password = p.req("password")?;
    check_username(name)?;
    check_password(password, min_password(h))?;
    let hash = hash_password(password)?;
    h.auth.update(|d| {
        if !d.users.is_empty() {
            return Err(ServerError::Conflict(
                "this environment has users already; /init only creates the first".into(),
            ));
        }
        let rights = ENV_RIGHTS.iter().map(|r| r.to_string()).collect();
        d.users.insert(name.to_string(), User { password: hash, rights, created: now_ms() });
        Ok(())
    })?;
    Ok(Reply::Empty)
}

/// `/auth`: a token for the user. `ip` (`...` = any address) and `ttl` need admin: the user's own,
/// or an admin token sent along.
fn auth(h: &EnvHandle, caller: &Caller, p: &Params) -> Result<Reply> {
    let name = p.req("username")?;
    let password = p.req("password")?;
    let ip = p.opt("ip").map(str::trim).filter(|s| !s.is_empty());
    let ttl: Option<i64> = p.num("ttl")?;
    if ttl.is_some_and(|t| t <= 0) {
        return Err(ServerError::BadRequest("parameter 'ttl' must be a positive number of milliseconds".into()));
    }
    if !h.auth.verify_password(name, password) {
        return Err(ServerError::Unauthorized("wrong username or password".into()));
    }
    if ip.is_some() || ttl.is_some() {
        let own_admin = h.auth.read(|d| d.users.get(name).is_some_and(|u| u.rights.iter().any(|r| r == "admin")));
        let token_admin = caller
            .token
            .as_deref()
            .and_then(|t| h.auth.check(t, &caller.ip).ok())
            .is_some_and(|(_, u)| u.rights.iter().any(|r| r == "admin"));
        if !own_admin && !token_admin {
            return Err(ServerError::Forbidden("/auth with 'ip' or 'ttl' needs the admin right".into()));
        }
    }
    let bound = match ip {
        Some("...") => None,
        Some(ip) => Some(ip.parse::<std::net::IpAddr>().map(crate::dispatch::client_ip).map_err(|_| {
            ServerError::BadRequest(format!("parameter 'ip' must be an IP address or '...', got '{ip}'"))
        })?),
        None => Some(caller.ip.clone()),
    };
    let ttl = ttl.unwrap_or_else(|| h.param_i64("token-expire-ms", 86_400_000));
    let (secret, token) = h.auth.issue(name, bound, ttl)?;
    Ok(Reply::Json(json!({"token": secret, "expires": token.expires})))
}

fn user_password(h: &EnvHandle, caller: &Caller, p: &Params) -> Result<Reply> {
    let me = caller.username()?;
    let target = p.opt("username").unwrap_or(me);
    if target != me && !caller.has("admin") {
        return Err(ServerError::Forbidden("changing another user's password needs the admin right".into()));
    }
    let password = p.req("password")?;
    check_password(password, min_password(h))?;
    let hash = hash_password(password)?;
    h.auth.update(|d| {
        let user = d.users.get_mut(target).ok_or_else(|| ServerError::NotFound(format!("no user named '{target}'")))?;
        user.password = hash;
        Ok(())
    })?;
    Ok(Reply::Empty)
}

fn user_add(h: &EnvHandle, p: &Params) -> Result<Reply> {
    let name = p.req("username")?;
    let password = p.req("password")?;
    let rights = p.list("rights")?.ok_or_else(|| missing("rights"))?;
    check_username(name)?;
    check_rights(&rights)?;
    check_password(password, min_password(h))?;
    let hash = hash_password(password)?;
    h.auth.update(|d| {
        if d.users.contains_key(name) {
            return Err(ServerError::Conflict(format!("a user named '{name}' exists already")));
        }
        d.users.insert(name.to_string(), User { password: hash, rights, created: now_ms() });
        Ok(())
    })?;
    Ok(Reply::Empty)
}

fn write(h: &EnvHandle, caller: &Caller, p: &Params) -> Result<Reply> {
    let items: Vec<Value> = p.json("items")?.ok_or_else(|| missing("items"))?;
    let options = WriteOptions {
        ip: Some(caller.ip.clone()),
        publish: p.flag("publish")?.unwrap_or(false),
        rules: p.opt("rules").map(str::to_string),
        permissive: p.flag("permissive")?,
    };
    let report = m1_ingest::write(&h.env, items, &options)?;
    if options.publish {
        h.stores.sync(&h.env)?;
    }
    // The seed's /write answers nothing unless asked to wait (`async=false`).
    if p.flag("async")?.unwrap_or(true) {
        return Ok(Reply::Empty);
    }
    Ok(Reply::Json(serde_json::to_value(report).map_err(internal)?))
}

fn publish_request(h: &EnvHandle, p: &Params) -> Result<PublishRequest> {
    let mut req = PublishRequest::from_params(|k| p.opt(k))?;
    if let Some(entry) = &h.entry {
        req.outbound = entry.outbound;
        req.store_options = entry.options_for(&req.file);
    }
    Ok(req)
}

fn system(h: &EnvHandle, p: &Params) -> Result<Reply> {
    let changes: BTreeMap<String, Value> = p.0.iter().map(|(k, v)| (k.clone(), json_or_string(v))).collect();
    let params = if changes.is_empty() { h.env.system()? } else { h.env.set_system(&changes)? };
    *h.system.write() = params.clone();
    Ok(Reply::Json(serde_json::to_value(params).map_err(internal)?))
}

fn system_one(h: &EnvHandle, name: &str, p: &Params) -> Result<Reply> {
    if let Some(v) = p.opt("value") {
        let params = h.env.set_system(&BTreeMap::from([(name.to_string(), json_or_string(v))]))?;
        *h.system.write() = params;
    }
    let value = h.param(name).ok_or_else(|| ServerError::NotFound(format!("no system parameter named '{name}'")))?;
    Ok(Reply::Json(json!({ name: value })))
}

/// A form value as JSON when it parses, else as a string (the seeds send numbers and booleans
/// as form text).
fn json_or_string(v: &str) -> Value {
    serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.to_string()))
}

fn health(h: &EnvHandle) -> Result<Reply> {
    let lake = match h.env.fresh_snapshot() {
        Ok(state) => json!({"status": "ok", "segments": state.segments.len(),
                            "nextKey": h.env.next_key().unwrap_or_default()}),
        Err(e) => json!({"status": "error", "message": e.to_string()}),
    };
    let users = h.auth.read(|d| d.users.len());
    let stores = match h.stores.list(&h.env) {
        Ok(list) => json!({"status": "ok", "stores": list.len(),
                           "documents": list.iter().map(|s| s.documents).sum::<u64>()}),
        Err(e) => json!({"status": "error", "message": e.to_string()}),
    };
    let sessions = match m1_query::session::Sessions::for_env(&h.env).list() {
        Ok(list) => json!({"status": "ok", "stores": list.len()}),
        Err(e) => json!({"status": "error", "message": e.to_string()}),
    };
    let ok = lake["status"] == "ok" && stores["status"] == "ok" && sessions["status"] == "ok";
    Ok(Reply::Json(json!({
        "status": if ok { "ok" } else { "degraded" },
        "environment": h.name,
        "components": {
            "lake": lake,
            "auth": {"status": "ok", "users": users, "initialized": users > 0},
            "system": {"status": "ok"},
            "dataStores": stores,
            "sessionStores": sessions,
        }
    })))
}

/// `/range`: records streamed as one JSON array, one batch in memory at a time.
async fn range(h: Arc<EnvHandle>, p: Params) -> Result<Reply> {
    let start: u64 = p.num("start")?.ok_or_else(|| missing("start"))?;
    let end: u64 = p.num("end")?.ok_or_else(|| missing("end"))?;
    let props = p.list("properties")?;
    stream("application/json", move |begin| {
        let range = m1_query::range(&h.env, start, end, props.as_deref())?;
        let mut out = begin()?;
        if let Err(e) = m1_query::encode::write_json_array(&mut out, range) {
            out.fail(e.to_string());
        }
        Ok(())
    })
    .await
}

/// `/query`: the search runs first (errors answer with a status), then the items stream from
/// the lake a batch at a time.
/// `/session/query`: the page's documents are written as stored, one at a time.
async fn session_query(h: Arc<EnvHandle>, p: Params) -> Result<Reply> {
    stream("application/json", move |begin| {
        let (store, query) = m1_query::session::params::session_query(|k| p.opt(k))?;
        let page = m1_query::session::Sessions::for_env(&h.env).query_raw(store, &query)?;
        let mut out = begin()?;
        if let Err(e) = page.write_json(&mut out) {
            out.fail(e.to_string());
        }
        Ok(())
    })
    .await
}

async fn query(h: Arc<EnvHandle>, p: Params) -> Result<Reply> {
    use m1_query::store::params::{Format, query_request};
    let (req, format) = query_request(|k| p.opt(k))?;
    let content_type = if format == Format::Csv { "text/csv" } else { "application/json" };
    stream(content_type, move |begin| {
        let answer = m1_query::store::search::run(&h.env, &h.stores, &req)?;
        let mut out = begin()?;
        let written = match format {
            Format::Csv => answer.write_csv(&h.env, &mut out),
            Format::Json => answer.write_json(&h.env, &mut out),
        };
        if let Err(e) = written {
            out.fail(e.to_string());
        }
        Ok(())
    })
    .await
}
