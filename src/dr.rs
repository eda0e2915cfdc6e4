//! Storage DR across the whole environment: the lake's log and files are shipped by the engine
//! ([`m1_engine::replica`]); this adds the data-store indexes, session-store documents, archive
//! and stage files, the background replicator, and pre-opening the replica's readers.
//!
//! What ships when: every lake commit as soon as the replicator sees it (it looks every
//! [`POLL`], and a publish ships before it returns); the other parts at most every
//! [`PARTS_EVERY`], since they are derived (stores), bulky (session snapshots) or append-only
//! (archive, stage). Data-store indexes ship to a replica on a local disk; a replica on an object
//! store rebuilds its stores from its lake when it is opened.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use m1_engine::replica::{DrConfig, DrState, ShipReport};
use m1_engine::storage::ObjectStoreOptions;
use m1_engine::{EngineError, Storage};
use serde_json::{Value, json};

use crate::Environment;
use crate::error::Result;

/// How often the background replicator looks for new commits.
pub const POLL: Duration = Duration::from_millis(100);
/// How often store indexes, session stores, archive and stage files are shipped at most.
pub const PARTS_EVERY: Duration = Duration::from_secs(2);

/// Files under `prefix` of `from` that `to` lacks (or holds at another size) are copied.
fn sync_prefix(from: &Storage, to: &Storage, prefix: &str) -> Result<u64> {
    let mut shipped = 0;
    for meta in from.list(prefix)? {
        let rel = from.relative(&meta.location);
        if to.head(&rel)?.is_none_or(|m| m.size != meta.size) {
            shipped += m1_engine::backup::copy_file(from, &rel, to, &rel)?;
        }
    }
    Ok(shipped)
}

/// Moves `tmp` to `file` within `storage` (a rename on a local disk, else a copy).
fn copy_into_place(storage: &Storage, tmp: &str, file: &str) -> Result<()> {
    if let Some(root) = storage.local_root() {
        std::fs::rename(root.join(tmp), root.join(file))
            .map_err(|e| EngineError::Io { path: root.join(file), source: e })?;
        return Ok(());
    }
    let body = storage.get(tmp)?.unwrap_or_default();
    storage.put(file, body)?;
    storage.delete(tmp)?;
    Ok(())
}

/// Makes directory `dst` hold what `src` holds: missing or resized files copied, tantivy's
/// `meta.json` last (so a reader of `dst` sees one complete commit), files gone from `src` removed.
fn sync_dir(src: &std::path::Path, dst: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dst)?;
    let mut metas = Vec::new();
    let mut names = std::collections::HashSet::new();
    for e in std::fs::read_dir(src)?.flatten() {
        let name = e.file_name();
        names.insert(name.clone());
        let (from, to) = (e.path(), dst.join(&name));
        if e.file_type()?.is_dir() {
            sync_dir(&from, &to)?;
        } else if name.to_string_lossy().ends_with(".lock") {
        } else if name == "meta.json" || name == ".managed.json" {
            metas.push((from, to));
        } else if std::fs::metadata(&to).map(|m| m.len()).ok() != Some(e.metadata()?.len()) {
            let tmp = to.with_extension("m1-dr");
            std::fs::copy(&from, &tmp)?;
            std::fs::rename(&tmp, &to)?;
        }
    }
    for (from, to) in metas {
        let tmp = to.with_extension("m1-dr");
        std::fs::copy(&from, &tmp)?;
        std::fs::rename(&tmp, &to)?;
    }
    for e in std::fs::read_dir(dst)?.flatten() {
        if !names.contains(&e.file_name()) {
            let p = e.path();
            if p.is_dir() { std::fs::remove_dir_all(&p)? } else { std::fs::remove_file(&p)? }
        }
    }
    Ok(())
}

/// This process's replication of one environment: one shipper at a time, and when the other
/// parts last went.
#[derive(Default)]
pub(crate) struct Replication {
    shipping: parking_lot::Mutex<Option<Instant>>,
    preprovisioned: parking_lot::Mutex<Option<Arc<Environment>>>,
}

impl std::fmt::Debug for Replication {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replication").finish_non_exhaustive()
    }
}

impl Environment {
    /// Sets up storage DR to `replica` (`dr/setup`) and ships everything there.
    pub fn dr_setup(&self, replica: &str, options: &ObjectStoreOptions) -> Result<Value> {
        self.engine().dr_setup(replica, options)?;
        self.ship_now(true)?;
        self.dr_status()
    }

    /// Settings, state, versions and lag (`dr/status`).
    pub fn dr_status(&self) -> Result<Value> {
        Ok(self.engine().dr_status()?)
    }

    /// Ships to the replica what it lacks, if this location is a replicating primary: lake
    /// commits always, the other parts when [`PARTS_EVERY`] has passed (or `all`).
    pub fn ship_now(&self, all: bool) -> Result<Option<ShipReport>> {
        let mut last_parts = self.replication().shipping.lock();
        let Some(report) = self.engine().ship_to_replica()? else { return Ok(None) };
        if all || last_parts.is_none_or(|t| t.elapsed() >= PARTS_EVERY) {
            let cfg = self.engine().dr_config()?.expect("shipping means DR is set up");
            let result = self.ship_parts(&cfg);
            if let Err(e) = &result {
                let mut cfg = cfg;
                cfg.last_error = Some(format!("shipping stores and files: {e}"));
                cfg.last_error_at = Some(m1_engine::environment::now_ms());
                let _ = cfg.write(self.engine().storage());
            }
            result?;
            *last_parts = Some(Instant::now());
        }
        Ok(Some(report))
    }

    fn ship_parts(&self, cfg: &DrConfig) -> Result<()> {
        let engine = self.engine();
        let (_, to) = cfg.open()?;
        for prefix in ["archive", "stage"] {
            sync_prefix(engine.storage(), &to, prefix)?;
        }
        // Settings, system parameters, and the server's users and tokens (owner-only files
        // keep their mode: copies are links or `fs::copy`).
        for file in [m1_engine::environment::CONFIG_FILE, m1_engine::system::SYSTEM_FILE, "auth.json"] {
            if engine.storage().head(file)?.is_some() {
                let tmp = format!("{file}.m1-dr");
                m1_engine::backup::copy_file(engine.storage(), file, &to, &tmp)?;
                copy_into_place(&to, &tmp, file)?;
            }
        }
        if engine.storage().head(m1_query::store::registry::STORES_FILE)?.is_some() {
            m1_engine::backup::copy_file(
                engine.storage(),
                m1_query::store::registry::STORES_FILE,
                &to,
                m1_query::store::registry::STORES_FILE,
            )?;
        }
        if let Some(root) = to.local_root() {
            for def in m1_query::store::registry::load(engine.storage())? {
                let dst = root.join("stores").join(&def.name);
                self.stores().with_files(engine, &def.name, |dir| -> Result<()> {
                    if let Some(dir) = dir {
                        sync_dir(dir, &dst).map_err(|e| EngineError::Io { path: dst.clone(), source: e })?;
                    }
                    Ok(())
                })?;
            }
        }
        let replica = m1_engine::Environment::open_with(&cfg.replica, &cfg.replica_options)?;
        let theirs = m1_query::session::Sessions::for_env(&replica);
        let scratch = tempfile::tempdir().map_err(|e| EngineError::Io { path: std::env::temp_dir(), source: e })?;
        for info in self.sessions().list()? {
            let dir = scratch.path().join(&info.name);
            self.sessions().export(&info.name, &dir)?;
            theirs.import(&info.name, &dir)?;
        }
        Ok(())
    }

    /// Runs [`Environment::ship_now`] every [`POLL`] on a thread that ends when the last handle
    /// of `env` is dropped (what `m1 serve` does for the environments it opens).
    pub fn replicate_in_background(env: &Arc<Environment>) {
        let weak: Weak<Environment> = Arc::downgrade(env);
        let _ = std::thread::Builder::new().name("m1-dr-ship".into()).spawn(move || {
            loop {
                std::thread::sleep(POLL);
                let Some(env) = weak.upgrade() else { return };
                // Errors are recorded in dr/status; the next round retries.
                let _ = env.ship_now(false);
            }
        });
    }

    /// Makes the replica the writable primary (`dr/failover`); the old primary is fenced.
    pub fn dr_failover(&self) -> Result<Value> {
        let cfg = self.engine().dr_config()?.ok_or_else(|| {
            EngineError::bad_parameter(
                "dr",
                "DR is not set up for this environment: there is no replica to fail over to",
            )
        })?;
        if cfg.primary != self.engine().storage().url() {
            return Err(EngineError::bad_parameter(
                "dr",
                format!("'{}' is not the primary; '{}' is", self.engine().storage().url(), cfg.primary),
            )
            .into());
        }
        let cfg = m1_engine::Environment::dr_failover(&cfg.replica, &cfg.replica_options)?;
        Ok(json!({"state": cfg.state, "primary": cfg.primary, "replica": cfg.replica,
                  "failoverVersion": cfg.failover_version, "lastError": cfg.last_error}))
    }

    /// Re-syncs the original location from this (failed-over) primary and switches back
    /// (`dr/failback`).
    pub fn dr_failback(&self) -> Result<Value> {
        // The stores and session stores changed here since the failover go back first.
        if let Some(cfg) = self.engine().dr_config()?.filter(|c| c.state == DrState::FailedOver) {
            self.ship_parts(&cfg)?;
        }
        let cfg = self.engine().dr_failback()?;
        Ok(json!({"state": cfg.state, "primary": cfg.primary, "replica": cfg.replica}))
    }

    /// Opens the replica and reads its segment footers and store readers now, so a failover
    /// answers at once (`dr/startPreProvision`).
    pub fn dr_preprovision(&self, on: bool) -> Result<Value> {
        let mut slot = self.replication().preprovisioned.lock();
        if !on {
            *slot = None;
            return Ok(json!({"preProvisioned": false}));
        }
        let cfg = self.engine().dr_config()?.ok_or_else(|| {
            EngineError::bad_parameter("dr", "DR is not set up for this environment: there is no replica to pre-open")
        })?;
        let replica = Environment::from_engine(m1_engine::Environment::open_with(&cfg.replica, &cfg.replica_options)?);
        let state = replica.engine().snapshot();
        for s in &state.segments {
            replica.engine().segment_cache().get(replica.engine().storage(), s)?;
        }
        let stores = replica.stores().list(replica.engine())?.len();
        *slot = Some(Arc::new(replica));
        Ok(json!({"preProvisioned": true, "replica": cfg.replica, "segments": state.segments.len(), "stores": stores,
                  "version": state.version}))
    }

    /// The configured locations and their roles (`dr/regions`).
    pub fn dr_regions(&self) -> Result<Value> {
        Ok(self.engine().dr_regions()?)
    }

    /// Whether DR has made another location this environment's primary (this one failed over).
    pub(crate) fn failed_over_to(engine: &m1_engine::Environment) -> Option<DrConfig> {
        let cfg = engine.dr_config().ok()??;
        (cfg.primary != engine.storage().url() && matches!(cfg.state, DrState::FailedOver)).then_some(cfg)
    }
}
