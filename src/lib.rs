//! m1: an embedded data-lake storage engine, the embedded form of MinusOneDB.
//!
//! ```
//! use m1::{Environment, Property, PropertyType};
//!
//! let dir = tempfile::tempdir().expect("a temporary directory");
//! let env = Environment::create(dir.path().to_str().unwrap())?;
//! env.add_properties(&[Property::new("name", PropertyType::String)])?;
//! let rows = [serde_json::json!({"name": "ada"}), serde_json::json!({"name": "grace"})];
//! env.append_json(rows.iter().map(|r| r.as_object().unwrap().clone()))?;
//! assert_eq!(env.next_key()?, 2);
//! let found = env.get_json(&[1], None)?;
//! assert_eq!(found[0]["name"], "grace");
//! # Ok::<(), m1::Error>(())
//! ```

use arrow::array::RecordBatch;
use serde_json::json;

pub mod backup;
pub mod dr;
pub mod endpoint;
pub mod error;
pub mod stage;
pub mod usage;

pub use backup::RestorePoint;
pub use error::{Error, ErrorKind, Result};
pub use m1_engine::backup::{Backup, BackupSource, BackupStatus};
pub use m1_engine::history::VersionInfo;

pub use m1_engine::storage::register_object_store;
pub use m1_engine::{
    AppendReport, Appender, Catalog, CatalogEntry, EngineError, EnvConfig, KEY, Property, PropertyType, RAND, Schema,
    VacuumReport,
};
pub use m1_ingest::{
    IngestError, InputFormat, Phase, Progress, PublishReport, PublishRequest, WriteOptions, WriteReport,
};
pub use m1_query::store::{StoreDef, StoreKind, StoreStatus};
pub use m1_query::{QueryAnswer, QueryError, QueryRequest, Range, Stores};

/// A JSON record: a flat map of dotted property names.
pub type Record = serde_json::Map<String, serde_json::Value>;

/// An open environment: the lake, its schema, and reads over it.
#[derive(Debug)]
pub struct Environment {
    inner: m1_engine::Environment,
    stores: std::sync::OnceLock<Stores>,
    /// Its catalog entry, when opened from the catalog: where publish may read from (outbound,
    /// registered buckets and their settings).
    entry: Option<CatalogEntry>,
    /// Storage DR shipping in this process.
    replication: dr::Replication,
}

impl Environment {
    /// Creates an environment at a local path or object-store URL, with default settings.
    pub fn create(location: &str) -> Result<Environment> {
        Self::create_with(location, EnvConfig::default())
    }

    /// Creates an environment with explicit settings.
    pub fn create_with(location: &str, config: EnvConfig) -> Result<Environment> {
        Ok(Self::from_engine(m1_engine::Environment::create(location, config)?))
    }

    /// Opens the environment at a local path or object-store URL.
    pub fn open(location: &str) -> Result<Environment> {
        Ok(Self::from_engine(m1_engine::Environment::open(location)?))
    }

    /// Opens the catalog environment with this name or id, with its recorded settings.
    pub fn open_in(catalog: &Catalog, name: &str) -> Result<Environment> {
        let entry = catalog.get(name)?.ok_or_else(|| EngineError::UnknownEnvironment(name.to_string()))?;
        if entry.service.stopped {
            return Err(EngineError::NotRunning { env: entry.name, state: "stopped".into() }.into());
        }
        let mut engine = catalog.open_env(&entry.id)?;
        // After a storage DR failover the name follows the new primary.
        if let Some(cfg) = Self::failed_over_to(&engine) {
            engine = m1_engine::Environment::open_with(&cfg.primary, &cfg.primary_options)?;
        }
        let mut env = Self::from_engine(engine);
        env.entry = Some(entry);
        env.apply_memory_bounds(None);
        Ok(env)
    }

    /// Wraps an engine environment.
    pub fn from_engine(inner: m1_engine::Environment) -> Environment {
        Environment { inner, stores: std::sync::OnceLock::new(), entry: None, replication: Default::default() }
    }

    /// The directory a server's callers may publish local files from (`<root>/stage`), for an
    /// environment on local disk.
    pub fn stage_dir(&self) -> Option<std::path::PathBuf> {
        self.inner.storage().local_root().map(|r| r.join("stage"))
    }

    /// Sets what its caches and boost stores may hold: the lower of the service's
    /// `maxTotalMemoryGb` (from `service`, else its catalog entry as opened) and the system
    /// parameter `memory-limit-bytes`; neither set is no bound.
    pub fn apply_memory_bounds(&self, service: Option<&m1_engine::service::ServiceSettings>) {
        let service = service.or(self.entry.as_ref().map(|e| &e.service));
        let gb = service.and_then(|s| s.max_total_memory_gb).map(|g| g << 30);
        let param = self.inner.system().ok().and_then(|s| s.get("memory-limit-bytes").and_then(|v| v.as_u64()));
        self.inner.memory().set_limit(gb.into_iter().chain(param).min());
    }

    /// Its catalog entry, if it was opened from the catalog.
    pub fn entry(&self) -> Option<&CatalogEntry> {
        self.entry.as_ref()
    }

    pub(crate) fn replication(&self) -> &dr::Replication {
        &self.replication
    }

    /// The storage core's handle, for everything not wrapped here.
    pub fn engine(&self) -> &m1_engine::Environment {
        &self.inner
    }

    /// The current schema.
    pub fn schema(&self) -> Result<Schema> {
        Ok(self.inner.schema()?)
    }

    /// Adds properties to the schema.
    pub fn add_properties(&self, properties: &[Property]) -> Result<()> {
        Ok(self.inner.add_properties(properties)?)
    }

    /// Removes every user property from the schema.
    pub fn wipe_schema(&self) -> Result<()> {
        Ok(self.inner.wipe_schema()?)
    }

    /// The key the next record will get.
    pub fn next_key(&self) -> Result<u64> {
        Ok(self.inner.next_key()?)
    }

    /// Appends JSON records atomically.
    pub fn append_json<I: IntoIterator<Item = Record>>(&self, records: I) -> Result<AppendReport> {
        Ok(self.inner.append_json(records)?)
    }

    /// Appends Arrow batches atomically.
    pub fn append_batches<I: IntoIterator<Item = RecordBatch>>(&self, batches: I) -> Result<AppendReport> {
        Ok(self.inner.append_batches(batches)?)
    }

    /// Publishes the files `request.file` names, atomically (`/publish`).
    pub fn publish(&self, request: &PublishRequest) -> Result<PublishReport> {
        self.publish_with_progress(request, &|_| {})
    }

    /// [`Environment::publish`], calling `progress` about ten times a second.
    pub fn publish_with_progress(
        &self,
        request: &PublishRequest,
        progress: &(dyn Fn(&Progress) + Sync),
    ) -> Result<PublishReport> {
        let mut request = request.clone();
        if let Some(entry) = &self.entry {
            request.outbound = entry.outbound;
            request.object_store_options = entry.options_for(&request.file);
        }
        let started = std::time::Instant::now();
        let mut report = m1_ingest::publish(&self.inner, &request, progress)?;
        // Invariant: a publish returns with the data stores in sync, so what it committed is
        // searchable at once. If they cannot follow (say the disk is full), the commit still
        // stands: the report says so rather than calling a committed publish a failure.
        if report.rows_published > 0 {
            progress(&Progress {
                phase: m1_ingest::Phase::Index,
                bytes_read: report.bytes,
                bytes_total: Some(report.bytes),
                rows: report.rows_published,
                elapsed: started.elapsed(),
            });
            let indexing = std::time::Instant::now();
            if let Err(e) = self.stores().sync(&self.inner) {
                report.index_error = Some(e.to_string());
            }
            report.index_seconds = indexing.elapsed().as_secs_f64();
            // Storage DR: what was committed reaches the replica before the publish returns
            // (a failure is reported in dr/status and retried by the next shipment).
            let _ = self.ship_now(false);
        }
        report.seconds = report.lake_seconds + report.index_seconds;
        report.rows_per_second = if report.seconds > 0.0 { report.rows_published as f64 / report.seconds } else { 0.0 };
        Ok(report)
    }

    /// Archives raw JSON items (`/write`) and, if asked, publishes them.
    pub fn write(&self, items: Vec<serde_json::Value>, options: &WriteOptions) -> Result<WriteReport> {
        let report = m1_ingest::write(&self.inner, items, options)?;
        if options.publish {
            self.stores().sync(&self.inner)?;
        }
        Ok(report)
    }

    /// The records with these keys, in the order asked, as one Arrow batch.
    pub fn get(&self, ids: &[u64], properties: Option<&[String]>) -> Result<RecordBatch> {
        Ok(m1_query::get(&self.inner, ids, properties)?)
    }

    /// The records with these keys, in the order asked, as JSON records.
    pub fn get_json(&self, ids: &[u64], properties: Option<&[String]>) -> Result<Vec<Record>> {
        Ok(m1_query::encode::records(&self.get(ids, properties)?))
    }

    /// The records with keys in `start..end`, streamed batch by batch in key order.
    pub fn range(&self, start: u64, end: u64, properties: Option<&[String]>) -> Result<m1_query::Range<'_>> {
        Ok(m1_query::range(&self.inner, start, end, properties)?)
    }

    /// The data stores (tantivy indexes over the lake): create, list, rebuild, ...
    pub fn stores(&self) -> &Stores {
        self.stores.get_or_init(|| Stores::new(&self.inner))
    }

    /// Answers a `/query`: count, the page's keys and facets; items are read on demand.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let env = m1::Environment::create(dir.path().to_str().unwrap())?;
    /// env.add_properties(&[m1::Property::new("city", m1::PropertyType::String)])?;
    /// let rows = [serde_json::json!({"city": "Oslo"}), serde_json::json!({"city": "Bergen"})];
    /// env.append_json(rows.iter().map(|r| r.as_object().unwrap().clone()))?;
    /// let mut request = m1::QueryRequest::new("index", "city:Oslo");
    /// request.rows = 10;
    /// let answer = env.query(&request)?;
    /// assert_eq!(answer.count, 1);
    /// assert_eq!(answer.items(env.engine())?[0]["city"], "Oslo");
    /// # Ok::<(), m1::Error>(())
    /// ```
    pub fn query(&self, request: &QueryRequest) -> Result<QueryAnswer> {
        Ok(m1_query::store::search::run(&self.inner, self.stores(), request)?)
    }

    /// The state of the lake, the data stores and the session stores (`/health`).
    pub fn health(&self) -> serde_json::Value {
        let lake = match self.inner.fresh_snapshot() {
            Ok(state) => json!({"status": "ok", "segments": state.segments.len(),
                                "nextKey": self.inner.next_key().unwrap_or_default()}),
            Err(e) => json!({"status": "error", "message": e.to_string()}),
        };
        let stores = match self.stores().list(&self.inner) {
            Ok(list) => json!({"status": "ok", "stores": list.len(),
                               "documents": list.iter().map(|s| s.documents).sum::<u64>()}),
            Err(e) => json!({"status": "error", "message": e.to_string()}),
        };
        let sessions = match self.sessions().list() {
            Ok(list) => json!({"status": "ok", "stores": list.len()}),
            Err(e) => json!({"status": "error", "message": e.to_string()}),
        };
        let ok = [&lake, &stores, &sessions].iter().all(|c| c["status"] == "ok");
        let name = self.entry.as_ref().map_or_else(|| self.inner.storage().url().to_string(), |e| e.name.clone());
        json!({
            "status": if ok { "ok" } else { "degraded" },
            "environment": name,
            "components": {"lake": lake, "system": {"status": "ok"}, "dataStores": stores, "sessionStores": sessions}
        })
    }

    /// Deletes lake files no commit references that are older than `min_age`.
    pub fn vacuum(&self, min_age: std::time::Duration) -> Result<VacuumReport> {
        Ok(self.inner.vacuum(min_age)?)
    }

    // --- Session stores (SPEC §7) ---

    /// The environment's session stores (`session/*`): add, list, key, rename, drop, update,
    /// query and get by key. See [`session`].
    pub fn sessions(&self) -> session::Sessions {
        session::Sessions::for_env(&self.inner)
    }

    /// Applies `session/update` ops (JSON text) to store `store`, atomically and durably.
    pub fn session_update(&self, store: &str, ops: &str) -> Result<session::UpdateReport> {
        self.inner.writable()?;
        Ok(self.sessions().update(store, ops)?)
    }

    /// Answers `session/query` on store `store`.
    pub fn session_query(&self, store: &str, query: &session::SessionQuery) -> Result<session::SessionResult> {
        Ok(self.sessions().query(store, query)?)
    }
}

pub use m1_query::encode;

/// The README's Rust example runs as a doctest, so it cannot go stale.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
/// Session stores: keyed, mutable, durable document stores (SPEC §7).
pub use m1_query::session;
