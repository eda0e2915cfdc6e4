//! The session-store endpoints from named text parameters, as the CLI (`-store x`) and the HTTP
//! API (`store=x`) both receive them: `session/add`, `list`, `key`, `rename`, `drop`, `update`,
//! `query`, `get`, and ops' `env/session/create`, `rename`, `destroy`.

use serde_json::Value;

use super::{DEFAULT_ROWS, SessionQuery, Sessions};
use crate::error::{QueryError, Result};

fn bad(m: String) -> QueryError {
    QueryError::BadRequest(m)
}

fn req<'a>(value: Option<&'a str>, key: &str) -> Result<&'a str> {
    value.ok_or_else(|| bad(format!("missing required parameter '{key}'")))
}

fn num<T: std::str::FromStr>(value: Option<&str>, key: &str) -> Result<Option<T>> {
    value
        .map(|v| v.trim().parse::<T>().map_err(|_| bad(format!("parameter '{key}' must be a number, got '{v}'"))))
        .transpose()
}

fn to_json<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// The store and query of a `session/query` call.
pub fn session_query<'a>(get: impl Fn(&str) -> Option<&'a str>) -> Result<(&'a str, SessionQuery)> {
    let query = SessionQuery {
        q: req(get("q"), "q")?.to_string(),
        sort: get("sort").map(str::to_string),
        start: num(get("start"), "start")?.unwrap_or(0),
        rows: num(get("rows"), "rows")?.unwrap_or(DEFAULT_ROWS),
    };
    Ok((req(get("store"), "store")?, query))
}

/// Runs one session endpoint; returns its answer, or `None` for endpoints that answer nothing.
pub fn call<'a>(sessions: &Sessions, endpoint: &str, get: impl Fn(&str) -> Option<&'a str>) -> Result<Option<Value>> {
    let store = || req(get("store"), "store");
    Ok(match endpoint {
        "session/add" => {
            let shards =
                num(get("shards"), "shards")?.ok_or_else(|| bad("missing required parameter 'shards'".into()))?;
            let replicas =
                num(get("replicas"), "replicas")?.ok_or_else(|| bad("missing required parameter 'replicas'".into()))?;
            sessions.add(store()?, get("key"), shards, replicas)?;
            None
        }
        "env/session/create" => {
            let shards = num(get("shards"), "shards")?.unwrap_or(1);
            let replicas = num(get("replicas"), "replicas")?.unwrap_or(2);
            Some(to_json(&sessions.add(store()?, get("key"), shards, replicas)?))
        }
        "session/list" => Some(to_json(&sessions.list()?)),
        "session/key" => {
            sessions.set_key(store()?, req(get("key"), "key")?)?;
            None
        }
        "session/rename" | "env/session/rename" => {
            sessions.rename(store()?, req(get("name"), "name")?)?;
            None
        }
        "session/drop" | "env/session/destroy" => {
            sessions.drop_store(store()?)?;
            None
        }
        "session/update" => {
            sessions.update(store()?, req(get("ops"), "ops")?)?;
            None
        }
        "session/query" => {
            let (store, query) = session_query(get)?;
            Some(to_json(&sessions.query(store, &query)?))
        }
        "session/get" => {
            let ids: Vec<Value> = serde_json::from_str(req(get("ids"), "ids")?)
                .map_err(|e| bad(format!("parameter 'ids' must be a JSON array of keys: {e}")))?;
            let keys = ids
                .iter()
                .map(|v| super::doc::key_value(v).ok_or_else(|| bad(format!("ids: {v} is not a string or an integer"))))
                .collect::<Result<Vec<_>>>()?;
            Some(Value::Array(sessions.get(store()?, &keys)?))
        }
        other => return Err(bad(format!("unknown session endpoint '{other}'"))),
    })
}
