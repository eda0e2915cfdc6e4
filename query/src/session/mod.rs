//! Session stores (SPEC §7): mutable keyed document stores with upsert, RFC 7386 merge and
//! delete, queried with the SPEC §6 language on dotted paths into nested documents.
//!
//! # Design
//!
//! Each store is a directory (`<env root>/sessions/<store>/`) holding `store.json`, a
//! write-ahead log ([`wal`]) and checkpoints ([`snapshot`]). Documents live in memory as their
//! JSON bytes, spread over shards by a stable hash of the key ([`shard`]); each shard keeps an
//! inverted index of hashed terms ([`index`]) that narrows a query to candidates, which the
//! [`crate::Matcher`] then checks, so query answers are exactly the matcher's semantics.
//!
//! Why our own index and not tantivy: the targets are 100,000 durable upserts/s on one core
//! with repeated updates of a key costing no extra index work, reads by key at once and queries
//! within 1 s. A tantivy writer pays for every version it is given (a delete term plus a full
//! document analysis per upsert, segment flushes and merges per commit), and its query
//! semantics for untyped values would have to be re-derived from the matcher's. Here an update
//! only appends the document to the log and to a shard; indexing is deferred to the refresh
//! (background every 200 ms, and before every query), and a key rewritten between refreshes is
//! indexed once. The cost is memory: documents and postings are held in RAM (see
//! BENCHMARKS.md for figures), like a data store of type `boost`.
//!
//! - Atomic: a call is one log record; replay cuts a torn tail. Durable: the call returns after
//!   `fdatasync` (group commit). Checkpoints every [`store::CHECKPOINT_BYTES`] of log keep
//!   reopening to one sequential read plus a short replay; checkpoints save the term index too,
//!   so a reopen re-reads no document to index it.
//! - Keys are strings; an integer key is its decimal form (`5` and `"5"` are one document).
//! - Shards are fixed at creation. Replicas are recorded for the API; an embedded store has
//!   one copy (durability comes from the log, not from replicas).
//! - One process writes a store at a time (a file lock); a second process gets a clear error.
//! - Environments on object stores (`s3://`, ...) cannot host a log that needs `fsync`: their
//!   session stores live on this machine under `$M1_HOME/session-stores/<env url, escaped>/`.
//! - `session/drop` and `env/session/destroy` both delete the store with its documents.

pub mod doc;
pub mod index;
pub mod ops;
pub mod search;
pub mod shard;
pub mod snapshot;
pub mod store;
pub mod wal;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};

use parking_lot::Mutex;
use serde::Serialize;
use serde_json::Value;

pub use doc::key_value;
pub use search::{DEFAULT_ROWS, RawPage, SessionQuery, SessionResult};
pub use store::{SessionStore, StoreConfig, UpdateReport};

use crate::error::{QueryError, Result};
use wal::sync_dir;

/// The default key property (the system parameter `property-session-id`).
pub const DEFAULT_KEY: &str = "session.id";

/// A store as `session/list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoreInfo {
    /// Store name.
    pub name: String,
    /// Key property.
    pub key: String,
    /// Shards.
    pub shards: u32,
    /// Replicas (recorded only).
    pub replicas: u32,
    /// Documents stored; `None` when another process has the store open.
    pub documents: Option<u64>,
}

/// Stores open in this process, by directory: one instance each, shared by every handle, kept
/// open until closed (opening replays the log and rebuilds the index, too dear per call).
static OPEN: LazyLock<Mutex<HashMap<PathBuf, Arc<SessionStore>>>> = LazyLock::new(Default::default);

/// The session stores of one environment.
#[derive(Debug, Clone)]
pub struct Sessions {
    root: PathBuf,
}

fn valid_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if ok {
        Ok(())
    } else {
        Err(QueryError::BadRequest(format!(
            "invalid session store name '{name}': use 1 to 128 letters, digits, '_', '-' or '.', not starting with '.'"
        )))
    }
}

impl Sessions {
    /// Session stores kept in directory `root` (one subdirectory per store).
    pub fn at(root: impl Into<PathBuf>) -> Sessions {
        Sessions { root: root.into() }
    }

    /// The session stores of an environment: `<root>/sessions` for a local one, else under
    /// `$M1_HOME/session-stores/` (see the module docs).
    pub fn for_env(env: &m1_engine::Environment) -> Sessions {
        match env.storage().local_root() {
            Some(root) => Sessions::at(root.join("sessions")),
            None => {
                let url = env.storage().url();
                let escaped: String = url
                    .chars()
                    .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '.' { c } else { '_' })
                    .collect();
                Sessions::at(m1_engine::Catalog::default_home().join("session-stores").join(escaped))
            }
        }
    }

    /// The directory holding the stores.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn dir(&self, name: &str) -> Result<PathBuf> {
        valid_name(name)?;
        Ok(self.root.join(name))
    }

    fn exists(&self, name: &str) -> Result<PathBuf> {
        let dir = self.dir(name)?;
        if dir.join("store.json").is_file() { Ok(dir) } else { Err(QueryError::NoSessionStore(name.to_string())) }
    }

    /// Creates a store (`session/add`, `env/session/create`). `key` defaults to
    /// [`DEFAULT_KEY`].
    pub fn add(&self, name: &str, key: Option<&str>, shards: u32, replicas: u32) -> Result<StoreInfo> {
        let dir = self.dir(name)?;
        let key = key.map(str::trim).filter(|k| !k.is_empty()).unwrap_or(DEFAULT_KEY);
        if !(1..=1024).contains(&shards) {
            return Err(QueryError::BadRequest(format!("session/add: shards must be 1 to 1024, got {shards}")));
        }
        if !(1..=16).contains(&replicas) {
            return Err(QueryError::BadRequest(format!("session/add: replicas must be 1 to 16, got {replicas}")));
        }
        if dir.exists() {
            return Err(QueryError::SessionRefused {
                store: name.to_string(),
                reason: "a store with this name already exists".into(),
            });
        }
        std::fs::create_dir_all(&self.root).map_err(|e| QueryError::session_io(&self.root, e))?;
        let config = StoreConfig { key: key.to_string(), shards, replicas, created: m1_engine::environment::now_ms() };
        SessionStore::create(&dir, &config).map_err(|e| match e {
            QueryError::SessionIo { .. } if dir.exists() => QueryError::SessionRefused {
                store: name.to_string(),
                reason: "a store with this name already exists".into(),
            },
            other => other,
        })?;
        Ok(StoreInfo { name: name.to_string(), key: key.to_string(), shards, replicas, documents: Some(0) })
    }

    /// Every store, by name, with its document count (`session/list`).
    pub fn list(&self) -> Result<Vec<StoreInfo>> {
        let mut names = Vec::new();
        match std::fs::read_dir(&self.root) {
            Ok(entries) => {
                for e in entries {
                    let e = e.map_err(|e| QueryError::session_io(&self.root, e))?;
                    if let Some(name) = e.file_name().to_str()
                        && !name.starts_with('.')
                        && e.path().join("store.json").is_file()
                    {
                        names.push(name.to_string());
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(QueryError::session_io(&self.root, e)),
        }
        names.sort();
        names
            .into_iter()
            .map(|name| match self.store(&name) {
                Ok(s) => {
                    let c = s.config();
                    Ok(StoreInfo { name, key: c.key, shards: c.shards, replicas: c.replicas, documents: Some(s.len()) })
                }
                Err(QueryError::SessionRefused { .. }) => {
                    let c = StoreConfig::read(&self.root.join(&name))?;
                    Ok(StoreInfo { name, key: c.key, shards: c.shards, replicas: c.replicas, documents: None })
                }
                Err(e) => Err(e),
            })
            .collect()
    }

    /// The open store `name` (opened on first use; shared within the process).
    pub fn store(&self, name: &str) -> Result<Arc<SessionStore>> {
        let dir = self.exists(name)?;
        let mut open = OPEN.lock();
        if let Some(s) = open.get(&dir) {
            return Ok(Arc::clone(s));
        }
        let s = SessionStore::open(name, &dir)?;
        open.insert(dir, Arc::clone(&s));
        Ok(s)
    }

    /// Closes the store in `dir` if this process has it open.
    fn close_dir(dir: &Path) {
        let s = OPEN.lock().remove(dir);
        if let Some(s) = s {
            s.close();
        }
    }

    /// Closes store `name` in this process (its memory is freed once no handle is left;
    /// handles fail from now on). The next use opens it again from its files.
    pub fn close(&self, name: &str) -> Result<()> {
        Self::close_dir(&self.dir(name)?);
        Ok(())
    }

    /// Closes this process's instance of store `name` (handles to it fail from now on) and
    /// opens it again from its files, as a restart would.
    pub fn reload(&self, name: &str) -> Result<Arc<SessionStore>> {
        let dir = self.exists(name)?;
        Self::close_dir(&dir);
        self.store(name)
    }

    /// Changes the key property, re-keying the documents (`session/key`).
    pub fn set_key(&self, name: &str, key: &str) -> Result<()> {
        self.store(name)?.set_key(key.trim())
    }

    /// Renames a store (`session/rename`, `env/session/rename`).
    pub fn rename(&self, name: &str, new_name: &str) -> Result<()> {
        let from = self.exists(name)?;
        let to = self.dir(new_name)?;
        if to.exists() {
            return Err(QueryError::SessionRefused {
                store: name.to_string(),
                reason: format!("cannot rename to '{new_name}': a store with that name exists"),
            });
        }
        // Opening takes the file lock, so a store in use by another process is not moved.
        drop(self.store(name)?);
        Self::close_dir(&from);
        std::fs::rename(&from, &to).map_err(|e| QueryError::session_io(&from, e))?;
        sync_dir(&self.root)
    }

    /// Deletes a store and its documents (`session/drop`, `env/session/destroy`).
    pub fn drop_store(&self, name: &str) -> Result<()> {
        let dir = self.exists(name)?;
        drop(self.store(name)?);
        Self::close_dir(&dir);
        // Renamed first, so a crash midway leaves no half-deleted store under its name.
        let gone = self.root.join(format!(".{name}.{}.dropped", std::process::id()));
        std::fs::rename(&dir, &gone).map_err(|e| QueryError::session_io(&dir, e))?;
        sync_dir(&self.root)?;
        std::fs::remove_dir_all(&gone).map_err(|e| QueryError::session_io(&gone, e))
    }

    /// Writes store `name`'s documents as they are now into `dest`, for a backup; returns how
    /// many.
    pub fn export(&self, name: &str, dest: &Path) -> Result<u64> {
        self.store(name)?.export(dest)
    }

    /// Makes store `name` hold exactly the copy in `src` (written by [`Sessions::export`]),
    /// replacing the store of that name if there is one.
    ///
    /// The copy is put beside the store first and swapped in by renames, so a crash leaves
    /// either the old store or the restored one under the name (a restored copy left aside is
    /// moved in by the next [`Sessions::import`]).
    pub fn import(&self, name: &str, src: &Path) -> Result<()> {
        let dir = self.dir(name)?;
        std::fs::create_dir_all(&self.root).map_err(|e| QueryError::session_io(&self.root, e))?;
        let staged = self.root.join(format!(".{name}.restore"));
        let _ = std::fs::remove_dir_all(&staged);
        std::fs::create_dir_all(&staged).map_err(|e| QueryError::session_io(&staged, e))?;
        for e in std::fs::read_dir(src).map_err(|e| QueryError::session_io(src, e))?.flatten() {
            let to = staged.join(e.file_name());
            std::fs::copy(e.path(), &to).map_err(|err| QueryError::session_io(&to, err))?;
        }
        StoreConfig::read(&staged)?;
        sync_dir(&staged)?;
        if dir.exists() {
            // Opening takes the file lock, so a store in use by another process is not replaced.
            drop(self.store(name)?);
            Self::close_dir(&dir);
            let old = self.root.join(format!(".{name}.{}.replaced", std::process::id()));
            std::fs::rename(&dir, &old).map_err(|e| QueryError::session_io(&dir, e))?;
            std::fs::rename(&staged, &dir).map_err(|e| QueryError::session_io(&staged, e))?;
            sync_dir(&self.root)?;
            std::fs::remove_dir_all(&old).map_err(|e| QueryError::session_io(&old, e))?;
        } else {
            std::fs::rename(&staged, &dir).map_err(|e| QueryError::session_io(&staged, e))?;
            sync_dir(&self.root)?;
        }
        Ok(())
    }

    /// Applies `ops` to store `name` (`session/update`).
    pub fn update(&self, name: &str, ops: &str) -> Result<UpdateReport> {
        self.store(name)?.update(ops)
    }

    /// Queries store `name` (`session/query`).
    pub fn query(&self, name: &str, query: &SessionQuery) -> Result<SessionResult> {
        self.store(name)?.query(query)
    }

    /// [`Sessions::query`] with the documents as stored JSON bytes, for streaming them out.
    pub fn query_raw(&self, name: &str, query: &SessionQuery) -> Result<RawPage> {
        self.store(name)?.query_raw(query)
    }

    /// Documents of store `name` by key, in the order asked.
    pub fn get(&self, name: &str, keys: &[String]) -> Result<Vec<Value>> {
        self.store(name)?.get(keys)
    }
}
