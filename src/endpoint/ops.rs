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
    Ok(Output::Json(entry_json(&entry(c, a)?.0)))
}

pub(super) fn env_list(c: &OpsCall<'_>, _: &Args) -> Out {
    Ok(Output::Json(Value::Array(c.catalog.list()?.iter().map(entry_json).collect())))
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
    positive(a, "threshold")?;
    if let Some(s) = positive(a, "servers")? {
        c.catalog.rescale(&e.id, s)?;
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
