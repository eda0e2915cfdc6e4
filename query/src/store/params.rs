//! `/query` and the data-store administration endpoints from named text parameters, as the CLI
//! (`-store x`) and the HTTP API (`store=x`) both receive them, so the two cannot drift apart.

use m1_engine::Environment;
use serde_json::{Value, json};

use super::{DEFAULT_STORE, StoreDef, StoreKind, Stores};
use crate::error::{QueryError, Result};
use crate::store::QueryRequest;

/// Output format of `/query`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `{"count", "items", "facets"}`.
    Json,
    /// A header row and one row per item; no count, no facets.
    Csv,
}

fn bad(m: String) -> QueryError {
    QueryError::BadRequest(m)
}

fn num<T: std::str::FromStr>(value: Option<&str>, key: &str) -> Result<Option<T>> {
    value
        .map(|v| v.trim().parse::<T>().map_err(|_| bad(format!("parameter '{key}' must be a number, got '{v}'"))))
        .transpose()
}

fn flag(value: Option<&str>, key: &str) -> Result<Option<bool>> {
    value
        .map(|v| match v.trim() {
            "true" | "1" | "yes" => Ok(true),
            "false" | "0" | "no" => Ok(false),
            other => Err(bad(format!("parameter '{key}' must be true or false, got '{other}'"))),
        })
        .transpose()
}

fn req<'a>(value: Option<&'a str>, key: &str) -> Result<&'a str> {
    value.ok_or_else(|| bad(format!("missing required parameter '{key}'")))
}

/// A `/query` request from `store`, `q`, `fl`, `start`, `rows`, `sort`, `facets`, `format`.
pub fn query_request<'a>(get: impl Fn(&str) -> Option<&'a str>) -> Result<(QueryRequest, Format)> {
    let store = get("store").unwrap_or(DEFAULT_STORE);
    let mut req = QueryRequest::new(store, req(get("q"), "q")?);
    req.stores = store.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect();
    req.fl = match get("fl").map(str::trim) {
        None | Some("") => None,
        Some(v) if v.starts_with('[') => Some(
            serde_json::from_str(v).map_err(|e| bad(format!("parameter 'fl' must be a JSON array of names: {e}")))?,
        ),
        Some(v) => Some(v.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect()),
    };
    req.start = num(get("start"), "start")?.unwrap_or(0);
    req.rows = num(get("rows"), "rows")?.unwrap_or(0);
    req.sort = get("sort").map(str::to_string);
    req.facets = get("facets")
        .map(|v| serde_json::from_str(v).map_err(|e| bad(format!("parameter 'facets' is not valid JSON: {e}"))))
        .transpose()?;
    let format = match get("format").unwrap_or("json") {
        "json" => Format::Json,
        "csv" if req.facets.is_some() => return Err(bad("format csv cannot carry facets; use format json".into())),
        "csv" => Format::Csv,
        other => return Err(bad(format!("parameter 'format' must be json or csv, got '{other}'"))),
    };
    Ok((req, format))
}

/// The administration endpoints: `store/list`, `store/create`, `store/rename`, `store/destroy`,
/// `store/enable`, `store/autocommit`, `store/rebuild`, `store/commit`. Returns the answer, or
/// `None` for endpoints that answer nothing.
pub fn admin<'a>(
    stores: &Stores,
    env: &Environment,
    endpoint: &str,
    get: impl Fn(&str) -> Option<&'a str>,
) -> Result<Option<Value>> {
    let out = match endpoint {
        "store/list" => Some(to_json(&stores.list(env)?)),
        "store/create" => {
            let kind = StoreKind::parse(get("type").unwrap_or("standard"))?;
            let shards = num(get("shards"), "shards")?.unwrap_or(1);
            let replicas = num(get("replicas"), "replicas")?.unwrap_or(2);
            if shards == 0 {
                return Err(bad("parameter 'shards' must be at least 1".into()));
            }
            let def = StoreDef::new(req(get("store"), "store")?, kind, shards, replicas);
            Some(to_json(&stores.create(env, def)?))
        }
        "store/rename" => {
            stores.rename(env, req(get("store"), "store")?, req(get("name"), "name")?)?;
            None
        }
        "store/destroy" => {
            stores.destroy(env, req(get("store"), "store")?)?;
            None
        }
        "store/enable" => {
            let on = flag(get("enable"), "enable")?.or(flag(get("active"), "active")?).unwrap_or(true);
            Some(to_json(&stores.configure(env, req(get("store"), "store")?, Some(on), None)?))
        }
        "store/autocommit" => {
            let on = flag(get("autocommit"), "autocommit")?
                .or(flag(get("enable"), "enable")?)
                .ok_or_else(|| bad("missing required parameter 'enable'".into()))?;
            Some(to_json(&stores.configure(env, req(get("store"), "store")?, None, Some(on))?))
        }
        "store/rebuild" => Some(json!({"documents": stores.rebuild(env, req(get("store"), "store")?)?})),
        "store/commit" => Some(json!({"documents": stores.commit(env, req(get("store"), "store")?)?})),
        other => return Err(bad(format!("unknown data store endpoint '{other}'"))),
    };
    Ok(out)
}

/// An answer as JSON (plain data, so this cannot fail).
fn to_json<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}
