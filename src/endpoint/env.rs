//! Handlers of the environment endpoints (seeds 001 and 002, SPEC §5-§8).

use std::collections::BTreeMap;

use m1_ingest::{Compression, InputFormat, PublishRequest, WriteOptions};
use m1_query::session::SessionQuery;
use m1_query::store::{StoreDef, StoreKind};
use serde_json::{Value, json};

use super::{Args, EnvCall, Output};
use crate::error::{Error, Result};
use crate::{Property, QueryRequest};

type Out<'a> = Result<Output<'a>>;

/// Plain data as JSON (serializing it cannot fail).
fn to_json<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

fn json<'a, T: serde::Serialize>(v: &T) -> Out<'a> {
    Ok(Output::Json(to_json(v)))
}

pub(super) fn ping<'a>(_: &EnvCall<'a>, _: &Args) -> Out<'a> {
    Ok(Output::Json(json!({"status": "ok"})))
}

pub(super) fn health<'a>(c: &EnvCall<'a>, _: &Args) -> Out<'a> {
    Ok(Output::Json(c.env.health()))
}

/// The table version a read asks for with `version` or `asOf` (`None`: the current one).
pub(crate) fn point_in_time(c: &EnvCall<'_>, a: &Args) -> Result<Option<u64>> {
    match (a.count("version", 0)?, a.text("asOf")) {
        (Some(_), Some(_)) => {
            Err(a.bad("asOf", "either version or asOf, not both", a.text("asOf").unwrap_or_default()))
        }
        (Some(v), None) => Ok(Some(v)),
        (None, Some(t)) => Ok(Some(c.env.engine().version_as_of(time_ms(a, "asOf", t)?)?)),
        (None, None) => Ok(None),
    }
}

/// A time parameter (`asOf`, `from`, `to`): epoch milliseconds, or an ISO-8601 / RFC 3339 date.
pub(super) fn time_ms(a: &Args, name: &str, t: &str) -> Result<i64> {
    let t = t.trim();
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        return t.parse().map_err(|_| a.bad(name, "epoch milliseconds or an ISO-8601 date", t));
    }
    m1_engine::values::parse_date(t).ok_or_else(|| a.bad(name, "epoch milliseconds or an ISO-8601 date", t))
}

pub(super) fn schema<'a>(c: &EnvCall<'a>, a: &Args) -> Out<'a> {
    let state = m1_query::state_for(c.env.engine(), point_in_time(c, a)?)?;
    json(&state.schema.all())
}

pub(super) fn versions<'a>(c: &EnvCall<'a>, _: &Args) -> Out<'a> {
    json(&c.env.engine().versions()?)
}

pub(super) fn schema_add<'a>(c: &EnvCall<'a>, a: &Args) -> Out<'a> {
    let props: Vec<Property> = a.json("properties")?.unwrap_or_default();
    c.env.add_properties(&props)?;
    Ok(Output::Empty)
}

pub(super) fn schema_wipe<'a>(c: &EnvCall<'a>, _: &Args) -> Out<'a> {
    c.env.wipe_schema()?;
    Ok(Output::Empty)
}

pub(super) fn write<'a>(c: &EnvCall<'a>, a: &Args) -> Out<'a> {
    let items: Vec<Value> = a.json("items")?.unwrap_or_default();
    let options = WriteOptions {
        ip: c.ip.map(str::to_string),
        publish: a.bool("publish").unwrap_or(false),
        rules: a.json_value("rules").map(Value::to_string),
        permissive: a.bool("permissive"),
    };
    let report = c.env.write(items, &options)?;
    // The seed's /write answers nothing unless asked to wait (`async=false`).
    if a.bool("async").unwrap_or(true) { Ok(Output::Empty) } else { json(&report) }
}

/// A publish request from the `publish` parameters.
pub(crate) fn publish_request(a: &Args) -> Result<PublishRequest> {
    let file = a.req("file")?;
    let mut req = PublishRequest::new(file.strip_prefix("file=").unwrap_or(file));
    req.rules = a.json_value("rules").map(Value::to_string);
    req.format = a.text("format").map(InputFormat::parse).transpose()?;
    req.compression = a.text("compression").map(Compression::parse).transpose()?;
    req.encoding = a.text("encoding").map(str::to_string);
    req.delimiter = match a.text("delimiter") {
        None => None,
        Some("\\t" | "tab" | "\t") => Some(b'\t'),
        Some(d) if d.len() == 1 => Some(d.as_bytes()[0]),
        Some(d) => return Err(a.bad("delimiter", "one character, or 'tab'", d)),
    };
    req.headers = a.bool("headers").unwrap_or(true);
    req.rows = a.int("rows").and_then(|n| u64::try_from(n).ok());
    req.infer = a.bool("infer").unwrap_or(false);
    req.permissive = a.bool("permissive");
    req.zip_entries = a.json("entries")?;
    Ok(req)
}

pub(super) fn publish<'a>(c: &EnvCall<'a>, a: &Args) -> Out<'a> {
    let mut req = publish_request(a)?;
    if req.file.starts_with(crate::stage::SCHEME) {
        req.file = crate::stage::Stage::of(c.env)?.source(&req.file)?.display().to_string();
    }
    if let Some(roots) = c.read_roots {
        req.read_roots = Some(roots.iter().cloned().chain(c.env.stage_dir()).collect());
    }
    req.cancel = c.cancel.clone();
    let report = match c.progress {
        Some(p) => c.env.publish_with_progress(&req, p)?,
        None => c.env.publish(&req)?,
    };
    json(&report)
}

pub(super) fn next<'a>(c: &EnvCall<'a>, a: &Args) -> Out<'a> {
    match point_in_time(c, a)? {
        Some(v) => Ok(Output::Json(json!(c.env.engine().state_at(v)?.next_key))),
        None => Ok(Output::Json(json!(c.env.next_key()?))),
    }
}

pub(super) fn get<'a>(c: &EnvCall<'a>, a: &Args) -> Out<'a> {
    let ids = a.keys("ids").unwrap_or_default();
    let batch = m1_query::get_at(c.env.engine(), point_in_time(c, a)?, ids, a.list("properties"))?;
    let records = m1_query::encode::records(&batch);
    Ok(Output::Json(Value::Array(records.into_iter().map(Value::Object).collect())))
}

pub(super) fn range<'a>(c: &EnvCall<'a>, a: &Args) -> Out<'a> {
    let start = a.count_req("start", 0)?;
    let end = a.count_req("end", 0)?;
    let range = m1_query::range_at(c.env.engine(), point_in_time(c, a)?, start, end, a.list("properties"))?;
    Ok(Output::Stream {
        content_type: "application/json",
        write: Box::new(move |mut out| {
            m1_query::encode::write_json_array(&mut out, range)?;
            out.write_all(b"\n")?;
            Ok(())
        }),
    })
}

/// A form value as JSON when it parses, else as a string (the seeds send numbers and booleans
/// as form text).
fn json_or_string(v: &str) -> Value {
    serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.to_string()))
}

fn refuse_change_on_get(c: &EnvCall<'_>, changes: bool) -> Result<()> {
    if c.read_only && changes {
        return Err(Error::BadParameter {
            endpoint: "system".into(),
            name: "(verb)".into(),
            expected: "POST to change system parameters",
            value: "GET".into(),
            detail: String::new(),
        });
    }
    Ok(())
}

pub(super) fn system<'a>(c: &EnvCall<'a>, a: &Args) -> Out<'a> {
    let changes: BTreeMap<String, Value> = a.open().iter().map(|(k, v)| (k.clone(), json_or_string(v))).collect();
    refuse_change_on_get(c, !changes.is_empty())?;
    let engine = c.env.engine();
    let params = if changes.is_empty() { engine.system()? } else { engine.set_system(&changes)? };
    c.env.apply_memory_bounds(None);
    json(&params)
}

pub(super) fn system_one<'a>(c: &EnvCall<'a>, a: &Args) -> Out<'a> {
    let name = a.path_name().unwrap_or_default().to_string();
    refuse_change_on_get(c, a.has("value"))?;
    let engine = c.env.engine();
    let params = match a.text("value") {
        Some(v) => engine.set_system(&BTreeMap::from([(name.clone(), json_or_string(v))]))?,
        None => engine.system()?,
    };
    c.env.apply_memory_bounds(None);
    let value = params
        .get(&name)
        .cloned()
        .ok_or_else(|| Error::UnknownEndpoint { path: format!("system/{name}"), known: Vec::new() })?;
    Ok(Output::Json(json!({ name: value })))
}

pub(super) fn vacuum<'a>(c: &EnvCall<'a>, a: &Args) -> Out<'a> {
    let ms = a.count("olderThanMs", 0)?.unwrap_or(3_600_000);
    json(&c.env.vacuum(std::time::Duration::from_millis(ms))?)
}

/// Output format of `/query`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ResultFormat {
    Json,
    Csv,
}

pub(super) fn query<'a>(c: &EnvCall<'a>, a: &Args) -> Out<'a> {
    let store = a.text("store").unwrap_or(m1_query::store::DEFAULT_STORE);
    let mut req = QueryRequest::new(store, a.req("q")?);
    req.stores = store.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect();
    req.fl = a.list("fl").filter(|l| !l.is_empty()).map(<[String]>::to_vec);
    req.start = a.count("start", 0)?.unwrap_or(0) as usize;
    req.rows = a.count("rows", 0)?.unwrap_or(0) as usize;
    req.sort = a.text("sort").map(str::to_string);
    req.facets = a.json_value("facets").cloned();
    req.version = point_in_time(c, a)?;
    let format = match a.text("format").unwrap_or("json") {
        "json" => ResultFormat::Json,
        "csv" if req.facets.is_some() => return Err(a.bad("format", "json when facets are asked for", "csv")),
        "csv" => ResultFormat::Csv,
        other => return Err(a.bad("format", "json or csv", other)),
    };
    let answer = c.env.query(&req)?;
    let env = c.env;
    Ok(Output::Stream {
        content_type: if format == ResultFormat::Csv { "text/csv" } else { "application/json" },
        write: Box::new(move |mut out| {
            match format {
                ResultFormat::Csv => answer.write_csv(env.engine(), &mut out)?,
                ResultFormat::Json => answer.write_json(env.engine(), &mut out)?,
            }
            Ok(())
        }),
    })
}

pub(super) fn store_list<'a>(c: &EnvCall<'a>, _: &Args) -> Out<'a> {
    json(&c.env.stores().list(c.env.engine())?)
}

/// `store/create` and ops' `env/store/create`.
pub(crate) fn create_store(env: &crate::Environment, a: &Args) -> Result<Value> {
    let kind = StoreKind::parse(a.text("type").unwrap_or("standard"))?;
    let shards = a.count("shards", 1)?.unwrap_or(1) as u32;
    let replicas = a.count("replicas", 0)?.unwrap_or(2) as u32;
    let def = StoreDef::new(a.req("store")?, kind, shards, replicas);
    Ok(to_json(&env.stores().create(env.engine(), def)?))
}

pub(super) fn store_create<'a>(c: &EnvCall<'a>, a: &Args) -> Out<'a> {
    Ok(Output::Json(create_store(c.env, a)?))
}

pub(super) fn store_rename<'a>(c: &EnvCall<'a>, a: &Args) -> Out<'a> {
    c.env.stores().rename(c.env.engine(), a.req("store")?, a.req("name")?)?;
    Ok(Output::Empty)
}

pub(super) fn store_destroy<'a>(c: &EnvCall<'a>, a: &Args) -> Out<'a> {
    c.env.stores().destroy(c.env.engine(), a.req("store")?)?;
    Ok(Output::Empty)
}

pub(super) fn store_enable<'a>(c: &EnvCall<'a>, a: &Args) -> Out<'a> {
    let on = a.bool("enable").or(a.bool("active")).unwrap_or(true);
    json(&c.env.stores().configure(c.env.engine(), a.req("store")?, Some(on), None)?)
}

pub(super) fn store_autocommit<'a>(c: &EnvCall<'a>, a: &Args) -> Out<'a> {
    let on = a.bool("autocommit").or(a.bool("enable")).ok_or_else(|| Error::MissingParameter {
        endpoint: "store/autocommit".into(),
        name: "enable".into(),
        expected: super::Kind::Bool.expected(),
    })?;
    json(&c.env.stores().configure(c.env.engine(), a.req("store")?, None, Some(on))?)
}

pub(super) fn store_rebuild<'a>(c: &EnvCall<'a>, a: &Args) -> Out<'a> {
    Ok(Output::Json(json!({"documents": c.env.stores().rebuild(c.env.engine(), a.req("store")?)?})))
}

pub(super) fn store_commit<'a>(c: &EnvCall<'a>, a: &Args) -> Out<'a> {
    Ok(Output::Json(json!({"documents": c.env.stores().commit(c.env.engine(), a.req("store")?)?})))
}

pub(super) fn session_update<'a>(c: &EnvCall<'a>, a: &Args) -> Out<'a> {
    let ops = a.json_value("ops").map(Value::to_string).unwrap_or_default();
    c.env.session_update(a.req("store")?, &ops)?;
    Ok(Output::Empty)
}

pub(super) fn session_query<'a>(c: &EnvCall<'a>, a: &Args) -> Out<'a> {
    let query = SessionQuery {
        q: a.req("q")?.to_string(),
        sort: a.text("sort").map(str::to_string),
        start: a.count("start", 0)?.unwrap_or(0),
        rows: a.count("rows", 0)?.unwrap_or(m1_query::session::DEFAULT_ROWS),
    };
    let page = c.env.sessions().query_raw(a.req("store")?, &query)?;
    Ok(Output::Stream {
        content_type: "application/json",
        write: Box::new(move |mut out| Ok(page.write_json(&mut out)?)),
    })
}

pub(super) fn session_list<'a>(c: &EnvCall<'a>, _: &Args) -> Out<'a> {
    json(&c.env.sessions().list()?)
}

pub(super) fn session_get<'a>(c: &EnvCall<'a>, a: &Args) -> Out<'a> {
    let ids: Vec<Value> = a.json("ids")?.unwrap_or_default();
    let keys = ids
        .iter()
        .map(|v| {
            m1_query::session::key_value(v)
                .ok_or_else(|| a.bad("ids", "a JSON array of strings or integers", &v.to_string()))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Output::Json(Value::Array(c.env.sessions().get(a.req("store")?, &keys)?)))
}

pub(super) fn session_key<'a>(c: &EnvCall<'a>, a: &Args) -> Out<'a> {
    c.env.sessions().set_key(a.req("store")?, a.req("key")?)?;
    Ok(Output::Empty)
}

/// `session/add` and ops' `env/session/create`.
pub(crate) fn add_session_store(env: &crate::Environment, a: &Args) -> Result<Value> {
    let shards = a.count_req("shards", 1)? as u32;
    let replicas = a.count_req("replicas", 0)? as u32;
    Ok(to_json(&env.sessions().add(a.req("store")?, a.text("key"), shards, replicas)?))
}

pub(super) fn session_add<'a>(c: &EnvCall<'a>, a: &Args) -> Out<'a> {
    add_session_store(c.env, a)?;
    Ok(Output::Empty)
}

pub(super) fn session_rename<'a>(c: &EnvCall<'a>, a: &Args) -> Out<'a> {
    c.env.sessions().rename(a.req("store")?, a.req("name")?)?;
    Ok(Output::Empty)
}

pub(super) fn session_drop<'a>(c: &EnvCall<'a>, a: &Args) -> Out<'a> {
    c.env.sessions().drop_store(a.req("store")?)?;
    Ok(Output::Empty)
}

/// Refuses a location outside `locations` (`None`: anywhere), naming the parameter.
pub fn check_copy_location(locations: Option<&[String]>, param: &str, location: &str) -> Result<()> {
    match locations {
        Some(allowed) if !allowed.iter().any(|root| m1_engine::catalog::location_within(location, root)) => {
            Err(Error::Forbidden(format!(
                "{param}: '{location}' is not a location this server keeps copies in ({}); the operator allows more with `m1 serve -allowLocation DIR_OR_URL`",
                allowed.join(", ")
            )))
        }
        _ => Ok(()),
    }
}

/// A backup as the API answers it: the manifest without the file list, plus what can be
/// restored.
pub(crate) fn backup_json(env: &crate::Environment, b: &m1_engine::Backup) -> Result<Value> {
    let mut v = to_json(b);
    if let Some(o) = v.as_object_mut() {
        o.insert("files".into(), json!(b.files.len()));
        o.insert("oldestRestorableVersion".into(), json!(env.engine().oldest_restorable()?));
    }
    Ok(v)
}

pub(super) fn backup_create<'a>(c: &EnvCall<'a>, a: &Args) -> Out<'a> {
    let b = c.env.backup_create(a.text("name"))?;
    Ok(Output::Json(backup_json(c.env, &b)?))
}

pub(super) fn backup_list<'a>(c: &EnvCall<'a>, _: &Args) -> Out<'a> {
    let list = c.env.backup_list()?.iter().map(|b| backup_json(c.env, b)).collect::<Result<Vec<_>>>()?;
    Ok(Output::Json(Value::Array(list)))
}

pub(super) fn backup_get<'a>(c: &EnvCall<'a>, a: &Args) -> Out<'a> {
    Ok(Output::Json(backup_json(c.env, &c.env.backup_get(a.req("id")?)?)?))
}

pub(super) fn backup_delete<'a>(c: &EnvCall<'a>, a: &Args) -> Out<'a> {
    c.env.backup_delete(a.req("id")?)?;
    Ok(Output::Empty)
}

/// Object-store settings from an `options` JSON object.
pub(crate) fn store_options(a: &Args) -> Result<m1_engine::storage::ObjectStoreOptions> {
    let map: BTreeMap<String, String> = a.json("options")?.unwrap_or_default();
    Ok(map.into_iter().collect())
}

pub(super) fn backup_copy<'a>(c: &EnvCall<'a>, a: &Args) -> Out<'a> {
    let to = a.req("to")?;
    check_copy_location(c.locations, "to", to)?;
    let b = c.env.backup_copy(a.req("id")?, to, &store_options(a)?)?;
    Ok(Output::Json(backup_json(c.env, &b)?))
}

pub(super) fn restore<'a>(c: &EnvCall<'a>, a: &Args) -> Out<'a> {
    let point = match (a.text("backup"), a.has("version") || a.has("asOf")) {
        (Some(_), true) => return Err(a.bad("backup", "a backup, or a version or asOf, not both", a.req("backup")?)),
        (Some(id), false) => crate::RestorePoint::Backup(id.to_string()),
        (None, true) => crate::RestorePoint::Version(point_in_time(c, a)?.unwrap_or_default()),
        (None, false) => {
            return Err(Error::MissingParameter {
                endpoint: "restore".into(),
                name: "backup, version or asOf".into(),
                expected: "the backup (id or name), the version, or the time to restore",
            });
        }
    };
    Ok(Output::Json(c.env.restore(&point)?))
}

pub(super) fn dr_setup<'a>(c: &EnvCall<'a>, a: &Args) -> Out<'a> {
    let replica = a.req("replica")?;
    check_copy_location(c.locations, "replica", replica)?;
    Ok(Output::Json(c.env.dr_setup(replica, &store_options(a)?)?))
}

pub(super) fn dr_status<'a>(c: &EnvCall<'a>, _: &Args) -> Out<'a> {
    Ok(Output::Json(c.env.dr_status()?))
}

pub(super) fn dr_failover<'a>(c: &EnvCall<'a>, _: &Args) -> Out<'a> {
    Ok(Output::Json(c.env.dr_failover()?))
}

pub(super) fn dr_failback<'a>(c: &EnvCall<'a>, _: &Args) -> Out<'a> {
    Ok(Output::Json(c.env.dr_failback()?))
}

pub(super) fn dr_regions<'a>(c: &EnvCall<'a>, _: &Args) -> Out<'a> {
    Ok(Output::Json(c.env.dr_regions()?))
}

pub(super) fn dr_start_preprovision<'a>(c: &EnvCall<'a>, _: &Args) -> Out<'a> {
    Ok(Output::Json(c.env.dr_preprovision(true)?))
}

pub(super) fn dr_stop_preprovision<'a>(c: &EnvCall<'a>, _: &Args) -> Out<'a> {
    Ok(Output::Json(c.env.dr_preprovision(false)?))
}
