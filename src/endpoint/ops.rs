//! Handlers of the ops endpoints that manage environments (seed 000 as SPEC §1 maps them): the
//! catalog (`$M1_HOME`) and the stores of its environments. Accounts and rights are `m1 serve`'s
//! business: it checks them before calling these, and records which account owns what.

use std::collections::BTreeMap;
use std::sync::Arc;

use m1_engine::{Catalog, CatalogEntry, EnvConfig};
use serde_json::Value;

use super::{Args, Output};
use crate::Environment;
use crate::error::{Error, Result};

type Out = Result<Output<'static>>;

/// How ops endpoints reach an environment of the catalog: the CLI opens it for the one call,
/// `m1 serve` hands out its open handle (one per environment, so stores are not opened twice).
pub trait EnvOpener {
    /// The environment with this catalog name or id.
    fn open(&self, name: &str) -> Result<Arc<Environment>>;
    /// Drops any open handle of the environment with this id (after rename, destroy, settings).
    fn forget(&self, id: &str);
    /// The state of a running environment as this front-end sees it: `running`, or `idle` when
    /// a server suspended it for being idle (a local call has no idle state).
    fn state(&self, _id: &str) -> &'static str {
        "running"
    }
    /// The environment with this id if this front-end has it open (a local call has none open).
    fn if_open(&self, _id: &str) -> Option<Arc<Environment>> {
        None
    }
    /// The addresses this front-end answers the environment at (none for local calls).
    fn endpoints(&self, _entry: &CatalogEntry) -> Vec<Value> {
        Vec::new()
    }
}

/// The context of an ops endpoint.
pub struct OpsCall<'a> {
    /// The catalog.
    pub catalog: &'a Catalog,
    /// Opens its environments.
    pub envs: &'a dyn EnvOpener,
}

/// Opens catalog environments afresh for each call (the CLI).
#[derive(Debug)]
pub struct FreshOpener<'a>(pub &'a Catalog);

impl EnvOpener for FreshOpener<'_> {
    fn open(&self, name: &str) -> Result<Arc<Environment>> {
        Ok(Arc::new(Environment::open_in(self.0, name)?))
    }

    fn forget(&self, _id: &str) {}
}

/// An entry as ops answers it: secrets masked.
pub fn entry_json(entry: &CatalogEntry) -> Value {
    serde_json::to_value(entry.redacted()).unwrap_or(Value::Null)
}

/// An entry with its state and endpoints, as the opener sees them.
fn entry_with_state(c: &OpsCall<'_>, entry: &CatalogEntry) -> Value {
    let mut v = entry_json(entry);
    v["state"] = Value::from(state_of(c, entry));
    v["endpoints"] = Value::Array(c.envs.endpoints(entry));
    v
}

/// `stopped` (by an operator), `idle` (suspended by a server for being idle) or `running`.
pub fn state_of(c: &OpsCall<'_>, entry: &CatalogEntry) -> &'static str {
    if entry.service.stopped { "stopped" } else { c.envs.state(&entry.id) }
}

fn entry<'a>(c: &OpsCall<'_>, a: &'a Args) -> Result<(CatalogEntry, &'a str)> {
    let name = a.req("env")?;
    let entry = c.catalog.get(name)?.ok_or_else(|| m1_engine::EngineError::UnknownEnvironment(name.to_string()))?;
    Ok((entry, name))
}

/// Done with an environment's settings: open handles must reopen to see them.
fn changed(c: &OpsCall<'_>, entry: &CatalogEntry) -> Out {
    c.envs.forget(&entry.id);
    Ok(Output::Empty)
}

pub(super) fn ping(_: &OpsCall<'_>, _: &Args) -> Out {
    Ok(Output::Json(serde_json::json!({"status": "ok"})))
}

pub(super) fn env_get(c: &OpsCall<'_>, a: &Args) -> Out {
    Ok(Output::Json(entry_with_state(c, &entry(c, a)?.0)))
}

pub(super) fn env_list(c: &OpsCall<'_>, _: &Args) -> Out {
    Ok(Output::Json(Value::Array(c.catalog.list()?.iter().map(|e| entry_with_state(c, e)).collect())))
}

pub(super) fn env_suspend(c: &OpsCall<'_>, a: &Args) -> Out {
    let (e, _) = entry(c, a)?;
    // Recorded first, so no request reopens it between the close and the record.
    let e = c.catalog.update_service(&e.id, |s| {
        s.stopped = true;
        s.state_changed = Some(m1_engine::environment::now_ms());
        Ok(())
    })?;
    c.envs.forget(&e.id);
    Ok(Output::Json(entry_with_state(c, &e)))
}

pub(super) fn env_resume(c: &OpsCall<'_>, a: &Args) -> Out {
    let (e, _) = entry(c, a)?;
    let e = c.catalog.update_service(&e.id, |s| {
        if s.stopped {
            s.stopped = false;
            s.state_changed = Some(m1_engine::environment::now_ms());
        }
        Ok(())
    })?;
    // Opened now, so the first request after a resume finds it ready.
    c.envs.open(&e.id)?;
    Ok(Output::Json(entry_with_state(c, &e)))
}

pub(super) fn env_settings(c: &OpsCall<'_>, a: &Args) -> Out {
    let (e, _) = entry(c, a)?;
    let patch: serde_json::Map<String, Value> = a.json("settings")?.unwrap_or_default();
    let e = c.catalog.update_service(&e.id, |s| apply_settings(s, patch))?;
    // The memory bound applies to an open environment at once (others get it when opened).
    if let Some(env) = c.envs.if_open(&e.id) {
        env.apply_memory_bounds(Some(&e.service));
    }
    Ok(Output::Json(entry_with_state(c, &e)))
}

/// The settings `env/settings` may change, by their JSON names; `stopped` is changed only by
/// suspend and resume, and `ipAccessList` by `env/access`.
const SETTINGS: &[&str] = &[
    "tier",
    "provider",
    "region",
    "minTotalMemoryGb",
    "maxTotalMemoryGb",
    "idleScaling",
    "idleTimeoutMinutes",
    "group",
    "size",
    "cacheConfig",
    "deploymentType",
    "threshold",
];

/// Merges a JSON object of settings into `s` (`null` clears one), naming the field that does not
/// fit.
pub fn apply_settings(
    s: &mut m1_engine::service::ServiceSettings,
    patch: serde_json::Map<String, Value>,
) -> m1_engine::Result<()> {
    let mut current = match serde_json::to_value(&*s)? {
        Value::Object(m) => m,
        _ => serde_json::Map::new(),
    };
    for (k, v) in patch {
        if !SETTINGS.contains(&k.as_str()) {
            return Err(m1_engine::EngineError::bad_parameter(
                "settings",
                format!("'{k}' is not a setting; the settings are {}", SETTINGS.join(", ")),
            ));
        }
        if v.is_null() {
            current.remove(&k);
            continue;
        }
        // Alone first, so a value of the wrong type is named by its field.
        let alone = serde_json::Map::from_iter([(k.clone(), v.clone())]);
        if let Err(e) = serde_json::from_value::<m1_engine::service::ServiceSettings>(Value::Object(alone)) {
            return Err(m1_engine::EngineError::bad_parameter(&k, format!("{v} does not fit: {e}")));
        }
        current.insert(k, v);
    }
    *s = serde_json::from_value(Value::Object(current))
        .map_err(|e| m1_engine::EngineError::bad_parameter("settings", format!("{e}")))?;
    Ok(())
}

pub(super) fn env_access(c: &OpsCall<'_>, a: &Args) -> Out {
    let (e, _) = entry(c, a)?;
    let list: Option<Vec<m1_engine::service::IpAccess>> = match a.json_value("list") {
        None | Some(Value::Null) => None,
        Some(v) => Some(serde_json::from_value(v.clone()).map_err(|err| {
            m1_engine::EngineError::bad_parameter(
                "list",
                format!("a JSON array of {{\"source\": \"10.0.0.0/8\", \"description\": \"...\"}}: {err}"),
            )
        })?),
    };
    let e = c.catalog.update_service(&e.id, |s| {
        s.ip_access_list = list;
        Ok(())
    })?;
    Ok(Output::Json(entry_with_state(c, &e)))
}

fn positive(a: &Args, name: &str) -> Result<Option<u32>> {
    match a.count(name, 1)? {
        Some(n) if n > u32::MAX as u64 => Err(a.bad(name, "a number up to 4294967295", &n.to_string())),
        other => Ok(other.map(|n| n as u32)),
    }
}

pub(super) fn env_create(c: &OpsCall<'_>, a: &Args) -> Out {
    let name = a.text("env").or(a.text("name")).ok_or_else(|| Error::MissingParameter {
        endpoint: "env/create".into(),
        name: "env".into(),
        expected: "the new environment's name",
    })?;
    let mut config = EnvConfig::default();
    if let Some(n) = positive(a, "servers")? {
        config.workers = n;
    }
    if let Some(n) = positive(a, "shards")? {
        config.shards = n;
    }
    if let Some(n) = a.count("segmentRows", 1)? {
        config.segment_rows = n as usize;
    }
    let options: BTreeMap<String, String> = a.json("options")?.unwrap_or_default();
    let entry = c.catalog.create_with(name, a.text("url"), options, config)?;
    Ok(Output::Json(entry_json(&entry)))
}

pub(super) fn env_restore(c: &OpsCall<'_>, a: &Args) -> Out {
    let name = a.text("env").ok_or_else(|| Error::MissingParameter {
        endpoint: "env/restore".into(),
        name: "env".into(),
        expected: "the new environment's name",
    })?;
    let options: BTreeMap<String, String> = a.json("options")?.unwrap_or_default();
    let store_options: m1_engine::storage::ObjectStoreOptions = options.clone().into_iter().collect();
    // Keys of the new environment continue above everything the source has issued, when the
    // source can still be read.
    let (src, floor) = match (a.text("from"), a.text("location")) {
        (Some(from), None) => {
            let env = c.envs.open(from)?;
            let src = env.engine().backup_source(a.req("backup")?)?;
            (src, env.engine().next_key()?)
        }
        (None, Some(location)) => {
            let src = m1_engine::BackupSource::open(location, &store_options)?;
            let floor = m1_engine::Environment::open_with(&src.manifest.source, &store_options)
                .and_then(|e| e.next_key())
                .unwrap_or(0);
            (src, floor)
        }
        _ => {
            return Err(Error::MissingParameter {
                endpoint: "env/restore".into(),
                name: "from and backup, or location".into(),
                expected: "an environment and its backup, or where a deep copy of a backup is",
            });
        }
    };
    let entry = c.catalog.create_by(name, a.text("url"), options, |url, opts| {
        m1_engine::Environment::restore_new(&src, url, opts, floor)
    })?;
    let env = c.envs.open(&entry.id)?;
    env.install_parts(&src)?;
    let mut out = entry_json(&entry);
    out["restoredFrom"] = serde_json::json!({"id": src.manifest.id, "name": src.manifest.name,
                                            "version": src.manifest.version, "source": src.manifest.source});
    Ok(Output::Json(out))
}

pub(super) fn env_backup_create(c: &OpsCall<'_>, a: &Args) -> Out {
    let env = c.envs.open(a.req("env")?)?;
    let b = env.backup_create(a.text("name"))?;
    Ok(Output::Json(super::env::backup_json(&env, &b)?))
}

pub(super) fn env_backup_list(c: &OpsCall<'_>, a: &Args) -> Out {
    let env = c.envs.open(a.req("env")?)?;
    let list = env.backup_list()?.iter().map(|b| super::env::backup_json(&env, b)).collect::<Result<Vec<_>>>()?;
    Ok(Output::Json(Value::Array(list)))
}

pub(super) fn env_dr_failover(c: &OpsCall<'_>, a: &Args) -> Out {
    let (e, _) = entry(c, a)?;
    // The replica's own settings say everything; the primary may be unreachable.
    let (replica, options) = match a.text("replica") {
        Some(r) => (r.to_string(), super::env::store_options(a)?),
        None => {
            let cfg = c.envs.open(&e.id)?.engine().dr_config()?.ok_or_else(|| {
                m1_engine::EngineError::bad_parameter(
                    "dr",
                    "DR is not set up for this environment: nothing to fail over to",
                )
            })?;
            (cfg.replica, cfg.replica_options)
        }
    };
    c.envs.forget(&e.id);
    let cfg = m1_engine::Environment::dr_failover(&replica, &options)?;
    c.catalog.relocate(&e.id, &cfg.primary, &cfg.primary_options)?;
    c.envs.forget(&e.id);
    Ok(Output::Json(serde_json::json!({"state": cfg.state, "primary": cfg.primary, "replica": cfg.replica,
                                       "failoverVersion": cfg.failover_version, "lastError": cfg.last_error})))
}

pub(super) fn env_dr_failback(c: &OpsCall<'_>, a: &Args) -> Out {
    let (e, _) = entry(c, a)?;
    let answer = c.envs.open(&e.id)?.dr_failback()?;
    let cfg = c.envs.open(&e.id)?.engine().dr_config()?.expect("failback leaves DR set up");
    c.catalog.relocate(&e.id, &cfg.primary, &cfg.primary_options)?;
    c.envs.forget(&e.id);
    Ok(Output::Json(answer))
}

pub(super) fn env_dr_status(c: &OpsCall<'_>, a: &Args) -> Out {
    let (e, _) = entry(c, a)?;
    Ok(Output::Json(c.envs.open(&e.id)?.dr_status()?))
}

pub(super) fn env_rename(c: &OpsCall<'_>, a: &Args) -> Out {
    let (e, _) = entry(c, a)?;
    c.catalog.rename(&e.id, a.req("name")?)?;
    changed(c, &e)
}

pub(super) fn env_destroy(c: &OpsCall<'_>, a: &Args) -> Out {
    let (e, _) = entry(c, a)?;
    // Close what is open first: its stores hold files inside the environment.
    c.envs.forget(&e.id);
    c.catalog.destroy(&e.id)?;
    changed(c, &e)
}

pub(super) fn env_rescale(c: &OpsCall<'_>, a: &Args) -> Out {
    let (e, _) = entry(c, a)?;
    let servers = positive(a, "servers")?;
    let threshold = positive(a, "threshold")?;
    // The threshold is the parallelism a publish splits its input at: above the servers it
    // could never be reached.
    if let Some(t) = threshold {
        let workers = servers.unwrap_or(e.workers);
        if t > workers {
            return Err(m1_engine::EngineError::bad_parameter(
                "threshold",
                format!("{t} is above the {workers} servers it would split work across; give at most {workers}"),
            )
            .into());
        }
    }
    if let Some(s) = servers {
        c.catalog.rescale(&e.id, s)?;
    }
    if threshold.is_some() {
        c.catalog.update_service(&e.id, |s| {
            s.threshold = threshold;
            Ok(())
        })?;
    }
    changed(c, &e)
}

pub(super) fn env_reboot(c: &OpsCall<'_>, a: &Args) -> Out {
    let (e, _) = entry(c, a)?;
    changed(c, &e)
}

pub(super) fn env_store_create(c: &OpsCall<'_>, a: &Args) -> Out {
    let env = c.envs.open(a.req("env")?)?;
    Ok(Output::Json(super::env::create_store(&env, a)?))
}

pub(super) fn env_store_rename(c: &OpsCall<'_>, a: &Args) -> Out {
    let env = c.envs.open(a.req("env")?)?;
    env.stores().rename(env.engine(), a.req("store")?, a.req("name")?)?;
    Ok(Output::Empty)
}

pub(super) fn env_store_destroy(c: &OpsCall<'_>, a: &Args) -> Out {
    let env = c.envs.open(a.req("env")?)?;
    env.stores().destroy(env.engine(), a.req("store")?)?;
    Ok(Output::Empty)
}

pub(super) fn env_session_create(c: &OpsCall<'_>, a: &Args) -> Out {
    let env = c.envs.open(a.req("env")?)?;
    Ok(Output::Json(super::env::add_session_store(&env, a)?))
}

pub(super) fn env_session_rename(c: &OpsCall<'_>, a: &Args) -> Out {
    let env = c.envs.open(a.req("env")?)?;
    env.sessions().rename(a.req("store")?, a.req("name")?)?;
    Ok(Output::Empty)
}

pub(super) fn env_session_destroy(c: &OpsCall<'_>, a: &Args) -> Out {
    let env = c.envs.open(a.req("env")?)?;
    env.sessions().drop_store(a.req("store")?)?;
    Ok(Output::Empty)
}

pub(super) fn env_bucket_register(c: &OpsCall<'_>, a: &Args) -> Out {
    let (e, _) = entry(c, a)?;
    let options: BTreeMap<String, String> = a.json("options")?.unwrap_or_default();
    c.catalog.register_bucket(&e.id, a.req("bucket")?, options)?;
    changed(c, &e)
}

pub(super) fn env_bucket_deregister(c: &OpsCall<'_>, a: &Args) -> Out {
    let (e, _) = entry(c, a)?;
    c.catalog.deregister_bucket(&e.id, a.req("bucket")?)?;
    changed(c, &e)
}

fn read_role(c: &OpsCall<'_>, a: &Args, granted: bool) -> Out {
    let (e, _) = entry(c, a)?;
    let arn = a.req("arn")?.trim();
    if arn.is_empty() {
        return Err(a.bad("arn", "a role name", arn));
    }
    c.catalog.set_read_role(&e.id, arn, granted)?;
    changed(c, &e)
}

pub(super) fn env_bucket_grant(c: &OpsCall<'_>, a: &Args) -> Out {
    read_role(c, a, true)
}

pub(super) fn env_bucket_revoke(c: &OpsCall<'_>, a: &Args) -> Out {
    read_role(c, a, false)
}

pub(super) fn env_outbound(c: &OpsCall<'_>, a: &Args) -> Out {
    let (e, _) = entry(c, a)?;
    c.catalog.set_outbound(&e.id, a.bool("enable").unwrap_or(false))?;
    changed(c, &e)
}

/// `from`/`to` of `usage`, or `default`.
fn time_param(a: &Args, name: &str, default: i64) -> Result<i64> {
    a.text(name).map_or(Ok(default), |t| super::env::time_ms(a, name, t))
}

pub(super) fn env_usage(c: &OpsCall<'_>, a: &Args) -> Out {
    let (e, _) = entry(c, a)?;
    let now = m1_engine::environment::now_ms();
    let from = time_param(a, "from", now - 86_400_000)?;
    let to = time_param(a, "to", now + 1)?;
    if from >= to {
        return Err(a.bad("from", "a time before 'to'", a.text("from").unwrap_or_default()));
    }
    let samples = crate::usage::series(c.catalog, &e.id, from, to)?;
    let storage = crate::usage::storage_of(&e);
    Ok(Output::Json(serde_json::json!({
        "environment": e.name, "id": e.id, "from": from, "to": to,
        "samples": samples, "storageNow": storage, "storageNowBytes": storage.total(),
    })))
}
