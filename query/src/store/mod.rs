//! Data stores (SPEC §1, §6): tantivy indexes over every lake record, sharded, derived from the
//! lake and rebuildable from it at any time.
//!
//! - [`registry`]: which stores an environment has (`stores.json`).
//! - [`fields`]: property types to tantivy fields, lake rows to documents.
//! - [`shard`] and [`indexer`]: a shard's indexes and bringing them up to date with the lake.
//! - [`translate`]: the query language to tantivy queries.
//! - [`collect`]: sorting and facet counting.
//! - [`search`]: the `/query` request and its answer.
//!
//! A store follows the lake on its own: [`Stores::sync`] indexes whatever committed segments it
//! lacks (publish calls it, and every query calls it when the lake has moved), so a published
//! record is searchable as soon as the publish returns. Indexes of a local environment live in
//! `<root>/stores/<store>/<shard>/`; those of an object-store environment in
//! `$M1_HOME/stores/<table id>/`, since tantivy needs a local file system.

pub mod collect;
pub mod fields;
pub mod indexer;
pub mod registry;
mod safe_seek;
pub mod search;
pub mod shard;
pub mod translate;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use m1_engine::{Catalog, Environment};
use parking_lot::Mutex;
use serde::Serialize;

pub use registry::{DEFAULT_STORE, StoreDef, StoreKind};
pub use search::{QueryAnswer, QueryRequest};

use crate::error::{QueryError, Result};
use indexer::{dir_bytes, sync_shard};
use shard::IndexShard;

/// How long a process trusts its readers before looking for other processes' commits.
const READER_FRESHNESS: Duration = Duration::from_millis(500);

/// A store's settings and figures, as `store/list` reports them.
#[derive(Debug, Clone, Serialize)]
pub struct StoreStatus {
    /// The settings.
    #[serde(flatten)]
    pub def: StoreDef,
    /// Documents searchable now.
    pub documents: u64,
    /// Bytes of index files on disk (0 for boost stores, which are in RAM).
    pub bytes: u64,
}

/// An open data store.
pub struct DataStore {
    /// Its settings when opened.
    pub def: StoreDef,
    /// The shards, in order.
    pub shards: Vec<IndexShard>,
    /// Lake version this process last synced to, and when readers were last reloaded.
    synced: Mutex<(Option<u64>, Instant)>,
    /// The key ranges indexed, as of the last sync or reload (`None`: to be read).
    indexed: Mutex<Option<indexer::KeyRanges>>,
}

impl DataStore {
    fn open(def: StoreDef, dir: PathBuf, env: &Environment) -> Result<DataStore> {
        let dir = (def.kind == StoreKind::Standard).then_some(dir);
        let budget = dir.is_none().then(|| env.memory().clone());
        let shards = (0..def.shards)
            .map(|n| IndexShard::open(n, def.shards, dir.as_ref().map(|d| d.join(n.to_string())), budget.clone()))
            .collect::<Result<Vec<_>>>()?;
        Ok(DataStore { def, shards, synced: Mutex::new((None, Instant::now())), indexed: Mutex::new(None) })
    }

    /// Indexes every committed segment the store lacks, shards in parallel; returns documents added.
    pub fn sync(&self, env: &Environment) -> Result<u64> {
        let state = env.fresh_snapshot()?;
        let added = self.index_state(env, &state)?;
        *self.synced.lock() = (Some(state.version), Instant::now());
        Ok(added)
    }

    /// Indexes the segments of `state` (the current or an older version) the store lacks.
    pub fn index_state(&self, env: &Environment, state: &m1_engine::TableState) -> Result<u64> {
        let workers = env.config().workers.max(1) as usize;
        let per_shard = (workers / self.shards.len().max(1)).max(1);
        let added = std::thread::scope(|scope| {
            let jobs: Vec<_> =
                self.shards.iter().map(|s| scope.spawn(|| sync_shard(env, state, s, per_shard))).collect();
            jobs.into_iter().map(|j| crate::error::joined("a shard sync", j.join())).sum::<Result<u64>>()
        })?;
        *self.indexed.lock() = None;
        Ok(added)
    }

    /// The key ranges of the lake segments the store has indexed (every shard, every generation).
    pub fn indexed(&self) -> Result<indexer::KeyRanges> {
        let mut cached = self.indexed.lock();
        if let Some(r) = &*cached {
            return Ok(r.clone());
        }
        let mut all = indexer::KeyRanges::default();
        for s in &self.shards {
            for g in s.generations() {
                all.extend(&g.payload()?.indexed);
            }
        }
        *cached = Some(all.clone());
        Ok(all)
    }

    /// Before a search: follows the lake if autocommitting, and picks up other processes' commits.
    pub fn freshen(&self, env: &Environment) -> Result<()> {
        if self.def.autocommit {
            let version = env.fresh_snapshot()?.version;
            if self.synced.lock().0 != Some(version) {
                self.sync(env)?;
                return Ok(());
            }
        }
        let mut synced = self.synced.lock();
        if synced.1.elapsed() > READER_FRESHNESS {
            for s in &self.shards {
                s.rescan()?;
                s.reload()?;
            }
            synced.1 = Instant::now();
            *self.indexed.lock() = None;
        }
        Ok(())
    }

    /// Documents searchable now.
    pub fn documents(&self) -> u64 {
        self.shards.iter().map(IndexShard::documents).sum()
    }
}

/// The data stores of one environment, opened on first use.
pub struct Stores {
    base: PathBuf,
    open: Mutex<HashMap<String, Arc<DataStore>>>,
    /// The registry as last read, for the read paths (every query names its stores).
    defs: Mutex<Option<(RegistryStamp, Arc<Vec<StoreDef>>)>>,
}

/// When the registry was read. Invariant: a cached registry is used only while its stamp still
/// holds, and every change this process makes clears the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
enum RegistryStamp {
    /// On local disk: the file's inode, length and modification time (or its absence). Every
    /// save replaces the file by a rename, so a change made by another process changes the
    /// inode even within one tick of the file system's clock.
    File(Option<(u64, u64, std::time::SystemTime)>),
    /// On an object store: when it was read (it is read again after [`READER_FRESHNESS`]).
    Read(Instant),
}

impl RegistryStamp {
    fn now(env: &Environment) -> RegistryStamp {
        match env.storage().local_root() {
            Some(root) => RegistryStamp::File(std::fs::metadata(root.join(registry::STORES_FILE)).ok().map(|m| {
                use std::os::unix::fs::MetadataExt;
                (m.ino(), m.len(), m.modified().unwrap_or(std::time::UNIX_EPOCH))
            })),
            None => RegistryStamp::Read(Instant::now()),
        }
    }

    fn holds(&self, now: &RegistryStamp) -> bool {
        match (self, now) {
            (RegistryStamp::File(a), RegistryStamp::File(b)) => a == b,
            (RegistryStamp::Read(at), RegistryStamp::Read(_)) => at.elapsed() < READER_FRESHNESS,
            _ => false,
        }
    }
}

impl std::fmt::Debug for Stores {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stores").field("base", &self.base).finish_non_exhaustive()
    }
}

impl Stores {
    /// The stores of `env`.
    pub fn new(env: &Environment) -> Stores {
        let base = match env.storage().local_root() {
            Some(root) => root.join("stores"),
            None => Catalog::default_home().join("stores").join(&env.snapshot().table_id),
        };
        Stores { base, open: Mutex::new(HashMap::new()), defs: Mutex::new(None) }
    }

    fn dir(&self, name: &str) -> PathBuf {
        self.base.join(name)
    }

    /// Runs `copy` on the index directory of store `name` while no sync of this process changes
    /// it (tantivy files are immutable once committed, so what `copy` sees is one commit of
    /// each shard); `copy` gets `None` for a boost store, which has no files.
    pub fn with_files<R, E: From<QueryError>>(
        &self,
        env: &Environment,
        name: &str,
        copy: impl FnOnce(Option<&std::path::Path>) -> std::result::Result<R, E>,
    ) -> std::result::Result<R, E> {
        let (defs, i) = self.find(env, name)?;
        let store = self.handle(env, &defs[i])?;
        let _quiet: Vec<_> = store.shards.iter().map(|s| s.sync_lock.lock()).collect();
        let dir = self.dir(name);
        copy((defs[i].kind == StoreKind::Standard && dir.exists()).then_some(dir.as_path()))
    }

    /// Puts a copy of store `def`'s index files (from [`Stores::with_files`]) in place and
    /// registers the store, replacing one of that name; an empty `src` means it is rebuilt from
    /// the lake on first use.
    pub fn install(&self, env: &Environment, def: StoreDef, src: Option<&std::path::Path>) -> Result<()> {
        let mut defs = registry::load(env.storage())?;
        self.open.lock().remove(&def.name);
        let dir = self.dir(&def.name);
        remove_dir(&dir)?;
        if let Some(src) = src {
            copy_tree(src, &dir)?;
        }
        defs.retain(|d| d.name != def.name);
        defs.push(def);
        self.save(env, &defs)
    }

    fn find(&self, env: &Environment, name: &str) -> Result<(Arc<Vec<StoreDef>>, usize)> {
        let defs = self.registry(env)?;
        let i = defs.iter().position(|d| d.name == name).ok_or_else(|| QueryError::UnknownStore(name.to_string()))?;
        Ok((defs, i))
    }

    /// The registry, read again only when it may have changed.
    fn registry(&self, env: &Environment) -> Result<Arc<Vec<StoreDef>>> {
        let now = RegistryStamp::now(env);
        if let Some((stamp, defs)) = &*self.defs.lock()
            && stamp.holds(&now)
        {
            return Ok(defs.clone());
        }
        let defs = Arc::new(registry::load(env.storage())?);
        *self.defs.lock() = Some((now, defs.clone()));
        Ok(defs)
    }

    /// Saves the registry and forgets the cached one.
    fn save(&self, env: &Environment, defs: &[StoreDef]) -> Result<()> {
        let saved = registry::save(env.storage(), defs);
        *self.defs.lock() = None;
        saved
    }

    /// Every store with its figures.
    pub fn list(&self, env: &Environment) -> Result<Vec<StoreStatus>> {
        let defs = self.registry(env)?;
        defs.iter()
            .cloned()
            .map(|def| {
                let documents = if def.active { self.handle(env, &def)?.documents() } else { 0 };
                let bytes = if def.kind == StoreKind::Standard { dir_bytes(&self.dir(&def.name)) } else { 0 };
                Ok(StoreStatus { def, documents, bytes })
            })
            .collect()
    }

    /// Creates a store and fills it from the lake.
    pub fn create(&self, env: &Environment, def: StoreDef) -> Result<StoreStatus> {
        registry::validate_name(&def.name)?;
        if def.shards == 0 || def.shards > 1024 {
            return Err(QueryError::BadRequest(format!("shards must be 1 to 1024, not {}", def.shards)));
        }
        let mut defs = registry::load(env.storage())?;
        if defs.iter().any(|d| d.name == def.name) {
            return Err(QueryError::StoreExists(def.name.clone()));
        }
        // Leftovers of an earlier store of that name are not this store's.
        remove_dir(&self.dir(&def.name))?;
        defs.push(def.clone());
        self.save(env, &defs)?;
        self.open.lock().remove(&def.name);
        let store = self.handle(env, &def)?;
        store.sync(env)?;
        Ok(StoreStatus { documents: store.documents(), bytes: dir_bytes(&self.dir(&def.name)), def })
    }

    /// Renames a store.
    pub fn rename(&self, env: &Environment, name: &str, new_name: &str) -> Result<StoreDef> {
        registry::validate_name(new_name)?;
        let (defs, i) = self.find(env, name)?;
        let mut defs = (*defs).clone();
        if defs.iter().any(|d| d.name == new_name) {
            return Err(QueryError::StoreExists(new_name.to_string()));
        }
        let mut open = self.open.lock();
        open.remove(name);
        remove_dir(&self.dir(new_name))?;
        if self.dir(name).exists() {
            std::fs::rename(self.dir(name), self.dir(new_name))?;
        }
        defs[i].name = new_name.to_string();
        self.save(env, &defs)?;
        Ok(defs[i].clone())
    }

    /// Deletes a store and its index files.
    pub fn destroy(&self, env: &Environment, name: &str) -> Result<StoreDef> {
        let (defs, i) = self.find(env, name)?;
        let mut defs = (*defs).clone();
        let def = defs.remove(i);
        self.save(env, &defs)?;
        self.open.lock().remove(name);
        remove_dir(&self.dir(name))?;
        Ok(def)
    }

    /// Changes a store's `active` or `autocommit` setting.
    pub fn configure(
        &self,
        env: &Environment,
        name: &str,
        active: Option<bool>,
        autocommit: Option<bool>,
    ) -> Result<StoreDef> {
        let (defs, i) = self.find(env, name)?;
        let mut defs = (*defs).clone();
        if let Some(a) = active {
            defs[i].active = a;
        }
        if let Some(a) = autocommit {
            defs[i].autocommit = a;
        }
        self.save(env, &defs)?;
        self.open.lock().remove(name);
        Ok(defs[i].clone())
    }

    /// Deletes a store's indexes and builds them again from the lake; returns documents indexed.
    pub fn rebuild(&self, env: &Environment, name: &str) -> Result<u64> {
        let (defs, i) = self.find(env, name)?;
        self.open.lock().remove(name);
        remove_dir(&self.dir(name))?;
        self.handle(env, &defs[i])?.sync(env)
    }

    /// Indexes what a store lacks now, whatever its autocommit setting; returns documents added.
    pub fn commit(&self, env: &Environment, name: &str) -> Result<u64> {
        self.store(env, name)?.sync(env)
    }

    /// Brings every active autocommitting store up to date with the lake (after a publish).
    pub fn sync(&self, env: &Environment) -> Result<u64> {
        let mut added = 0;
        for def in registry::load(env.storage())? {
            if def.active && def.autocommit {
                added += self.handle(env, &def)?.sync(env)?;
            }
        }
        Ok(added)
    }

    /// An active store, ready to search.
    pub fn store(&self, env: &Environment, name: &str) -> Result<Arc<DataStore>> {
        let (defs, i) = self.find(env, name)?;
        if !defs[i].active {
            return Err(QueryError::BadRequest(format!("store '{name}' is disabled; enable it with store/enable")));
        }
        self.handle(env, &defs[i])
    }

    fn handle(&self, env: &Environment, def: &StoreDef) -> Result<Arc<DataStore>> {
        let mut open = self.open.lock();
        if let Some(s) = open.get(&def.name)
            && s.def == *def
        {
            return Ok(s.clone());
        }
        let store = Arc::new(DataStore::open(def.clone(), self.dir(&def.name), env)?);
        open.insert(def.name.clone(), store.clone());
        Ok(store)
    }
}

/// Copies a directory tree, linking files where the file system allows (index files never change
/// once written) and leaving out tantivy's lock files.
pub fn copy_tree(src: &std::path::Path, dst: &std::path::Path) -> Result<()> {
    std::fs::create_dir_all(dst)?;
    for e in std::fs::read_dir(src)?.flatten() {
        let name = e.file_name();
        let (from, to) = (e.path(), dst.join(&name));
        if e.file_type()?.is_dir() {
            copy_tree(&from, &to)?;
        } else if !name.to_string_lossy().ends_with(".lock") && std::fs::hard_link(&from, &to).is_err() {
            std::fs::copy(&from, &to)?;
        }
    }
    Ok(())
}

fn remove_dir(dir: &std::path::Path) -> Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(QueryError::Output(e)),
        _ => Ok(()),
    }
}
