//! An environment: one lake root with its configuration, schema, table log and segment cache.

use std::sync::Arc;
use std::time::Duration;

use arrow::array::{ArrayRef, Float64Array, Int64Array, RecordBatch, new_null_array};
use arrow::compute::cast;
use arrow::datatypes::SchemaRef;
use bytes::Bytes;
use parking_lot::RwLock;
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::checkpoint;
use crate::error::{EngineError, Result};
use crate::log::{self, Action, Protocol, SegmentInfo, TableState};
use crate::rows::{RowsBuilder, flatten};
use crate::schema::{KEY, Property, RAND, Schema};
use crate::segment::{self, SegmentCache, SegmentOptions};
use crate::storage::{ObjectStoreOptions, Storage};

/// File holding the environment's configuration, relative to its root.
pub const CONFIG_FILE: &str = "env.json";
/// Where version 0's `commitInfo` carries the environment settings.
pub(crate) const CONFIG_PARAM: &str = "m1.config";
/// Directory of the lake's segments.
pub const LAKE_DIR: &str = "lake";
/// The directories m1 writes at the top of an environment's root: the table log, the lake, the
/// `/write` archive, data stores, session stores and the publish stage.
pub const OWNED_DIRS: &[&str] =
    &[crate::log::LOG_DIR, LAKE_DIR, "archive", "stores", "sessions", "stage", crate::backup::BACKUPS_DIR];
/// The files m1 writes at the top of an environment's root: settings, system parameters, the
/// data-store registry and the server's users and tokens.
pub const OWNED_FILES: &[&str] =
    &[CONFIG_FILE, crate::system::SYSTEM_FILE, "stores.json", "auth.json", "auth.json.lock"];
/// How many times a commit is retried after losing a race before giving up.
const MAX_COMMIT_ATTEMPTS: usize = 10_000;

/// Settings fixed when an environment is created (stored in `env.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvConfig {
    /// Environment id.
    pub id: String,
    /// Creation time, epoch ms.
    pub created: i64,
    /// Number of lake shards segments are spread over.
    pub shards: u32,
    /// Worker threads for encoding and indexing (the seeds call them `servers`).
    #[serde(rename = "servers")]
    pub workers: u32,
    /// Records per segment file.
    pub segment_rows: usize,
    /// Records per Parquet data page.
    pub page_rows: usize,
    /// Page compression (environments created before it existed used zstd).
    #[serde(default = "legacy_codec")]
    pub codec: segment::Codec,
    /// On-disk format version of m1.
    pub format: u32,
}

impl Default for EnvConfig {
    fn default() -> Self {
        let seg = SegmentOptions::default();
        EnvConfig {
            id: uuid::Uuid::new_v4().simple().to_string(),
            created: now_ms(),
            shards: 4,
            workers: 2,
            segment_rows: seg.segment_rows,
            page_rows: seg.page_rows,
            codec: seg.codec,
            format: 1,
        }
    }
}

impl EnvConfig {
    fn segment_options(&self) -> SegmentOptions {
        SegmentOptions {
            segment_rows: self.segment_rows.max(1),
            page_rows: self.page_rows.max(1),
            row_group_rows: SegmentOptions::default().row_group_rows.min(self.segment_rows.max(1)),
            page_bytes: SegmentOptions::default().page_bytes,
            codec: self.codec,
        }
    }
}

fn legacy_codec() -> segment::Codec {
    segment::Codec::Zstd
}

/// Current time in epoch milliseconds.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// An open environment. Cheap to share behind an `Arc`; all methods take `&self`.
pub struct Environment {
    storage: Storage,
    config: EnvConfig,
    state: RwLock<Arc<TableState>>,
    cache: SegmentCache,
    /// When this handle last looked for other writers' commits (for [`Environment::fresh_snapshot`]).
    checked: parking_lot::Mutex<std::time::Instant>,
    /// Parsed versions and rebuilt old states (time travel).
    history: crate::history::History,
    /// What its caches and in-memory indexes may hold.
    memory: Arc<crate::memory::MemoryBudget>,
}

/// How stale a read may be about other processes' commits; this process's own commits are
/// always visible at once.
pub const FRESHNESS: Duration = Duration::from_millis(50);

impl std::fmt::Debug for Environment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Environment").field("url", &self.storage.url()).field("id", &self.config.id).finish()
    }
}

/// What an append committed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AppendReport {
    /// Records committed.
    pub rows: u64,
    /// First key assigned, if any record was committed.
    pub first_key: Option<u64>,
    /// Last key assigned, if any record was committed.
    pub last_key: Option<u64>,
    /// The key ranges `[start, end)` this append holds, in order. An append spanning several
    /// segments reserves keys segment by segment, so another writer's segments may sit between
    /// its `first_key` and `last_key`; these ranges say exactly which keys are this append's.
    pub key_ranges: Vec<(u64, u64)>,
    /// Segments written.
    pub segments: usize,
    /// Table log version of the commit (unchanged when nothing was appended).
    pub version: u64,
    /// Property names seen in JSON records that are not in the schema.
    pub unmapped: Vec<String>,
}

/// What a vacuum removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VacuumReport {
    /// Lake files deleted: no version inside the retention window and no kept backup needs them.
    pub files_deleted: usize,
    /// Their total size.
    pub bytes_deleted: u64,
    /// Unneeded files kept because they are younger than the safety window.
    pub files_kept: usize,
    /// Table log commits and checkpoints deleted (older than the retention window).
    pub log_files_deleted: usize,
    /// The oldest version a read or restore can ask for, after this vacuum.
    pub oldest_version: u64,
}

impl Environment {
    /// Creates a new environment at `location`; fails if one exists there.
    pub fn create(location: &str, config: EnvConfig) -> Result<Environment> {
        Self::create_with(location, &ObjectStoreOptions::new(), config)
    }

    /// [`Environment::create`] with object-store options (endpoint, credentials).
    pub fn create_with(location: &str, options: &ObjectStoreOptions, config: EnvConfig) -> Result<Environment> {
        let storage = Storage::open(location, options)?;
        // Retention may have removed version 0 of an old environment; its checkpoint remains.
        if storage.head(&log::version_path(0))?.is_some() || storage.head(checkpoint::LAST_CHECKPOINT)?.is_some() {
            return Err(EngineError::EnvironmentExists(storage.url().to_string()));
        }
        let now = now_ms();
        // The settings travel in version 0, so only the creator that wins version 0 decides them;
        // env.json is a readable copy written afterwards.
        let v0 = log::encode(&[
            log::commit_info("CREATE TABLE", now, serde_json::json!({ CONFIG_PARAM: config })),
            Action::Protocol(Protocol { min_reader_version: 1, min_writer_version: 2 }),
            log::metadata_action(&config.id, &Schema::default(), &[], None, now),
            log::next_key_action(0, now),
        ]);
        if !storage.put_if_absent(&log::version_path(0), v0)? {
            return Err(EngineError::EnvironmentExists(storage.url().to_string()));
        }
        storage.put(CONFIG_FILE, Bytes::from(serde_json::to_vec_pretty(&config)?))?;
        Self::open_storage(storage)
    }

    /// Opens the environment at `location`.
    pub fn open(location: &str) -> Result<Environment> {
        Self::open_with(location, &ObjectStoreOptions::new())
    }

    /// [`Environment::open`] with object-store options (endpoint, credentials).
    pub fn open_with(location: &str, options: &ObjectStoreOptions) -> Result<Environment> {
        Self::open_storage(Storage::open(location, options)?)
    }

    fn open_storage(storage: Storage) -> Result<Environment> {
        let state = TableState::load(&storage)?.ok_or_else(|| EngineError::NoEnvironment(storage.url().into()))?;
        let config = match storage.get(CONFIG_FILE)? {
            Some(b) => serde_json::from_slice(&b)?,
            None => Self::config_from_log(&storage, &state)?,
        };
        let memory = Arc::new(crate::memory::MemoryBudget::default());
        Ok(Environment {
            storage,
            config,
            state: RwLock::new(Arc::new(state)),
            cache: SegmentCache::with_budget(memory.clone()),
            checked: parking_lot::Mutex::new(std::time::Instant::now()),
            history: Default::default(),
            memory,
        })
    }

    /// The settings recorded in version 0, for when env.json is missing (a crash right after
    /// creation, or a copy of the lake without it).
    fn config_from_log(storage: &Storage, state: &TableState) -> Result<EnvConfig> {
        let fallback = EnvConfig { id: state.table_id.clone(), ..EnvConfig::default() };
        let Some(v0) = storage.get(&log::version_path(0))? else { return Ok(fallback) };
        for line in v0.split(|b| *b == b'\n') {
            if let Ok(Action::CommitInfo(info)) = serde_json::from_slice::<Action>(line)
                && let Some(config) = info.get("operationParameters").and_then(|p| p.get(CONFIG_PARAM))
            {
                return Ok(serde_json::from_value(config.clone())?);
            }
        }
        Ok(fallback)
    }

    /// The system parameters (defaults overlaid with what was set).
    pub fn system(&self) -> Result<std::collections::BTreeMap<String, Value>> {
        crate::system::load(&self.storage)
    }

    /// Sets system parameters; returns them all.
    pub fn set_system(
        &self,
        changes: &std::collections::BTreeMap<String, Value>,
    ) -> Result<std::collections::BTreeMap<String, Value>> {
        crate::system::set(&self.storage, changes)
    }

    pub(crate) fn history(&self) -> &crate::history::History {
        &self.history
    }

    /// The environment's storage.
    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// The environment's configuration.
    pub fn config(&self) -> &EnvConfig {
        &self.config
    }

    /// Opened segments, shared by readers.
    pub fn segment_cache(&self) -> &SegmentCache {
        &self.cache
    }

    /// The bound on what its caches and in-memory indexes hold, and what they hold.
    pub fn memory(&self) -> &Arc<crate::memory::MemoryBudget> {
        &self.memory
    }

    /// The table state as last seen by this handle (no I/O).
    pub fn snapshot(&self) -> Arc<TableState> {
        self.state.read().clone()
    }

    /// The table state, having looked for other processes' commits if the last look is older
    /// than [`FRESHNESS`]. Reads use this so a hot point lookup does no log I/O.
    pub fn fresh_snapshot(&self) -> Result<Arc<TableState>> {
        if self.checked.lock().elapsed() < FRESHNESS {
            return Ok(self.snapshot());
        }
        self.refresh()
    }

    /// Reads commits made by other processes since the last look, and returns the new state.
    pub fn refresh(&self) -> Result<Arc<TableState>> {
        *self.checked.lock() = std::time::Instant::now();
        let current = self.snapshot();
        if self.storage.head(&log::version_path(current.version + 1))?.is_none() {
            return Ok(current);
        }
        let mut next = (*current).clone();
        next.catch_up(&self.storage)?;
        let next = Arc::new(next);
        let mut slot = self.state.write();
        if slot.version < next.version {
            *slot = next.clone();
        }
        Ok(slot.clone())
    }

    /// The current schema (after catching up with the log).
    pub fn schema(&self) -> Result<Schema> {
        Ok(self.refresh()?.schema.clone())
    }

    /// The next key a record will get.
    pub fn next_key(&self) -> Result<u64> {
        Ok(self.refresh()?.next_key)
    }

    /// Commits the actions `build` derives from the latest state, retrying when another writer
    /// commits first. `build` returning `None` means there is nothing to commit.
    pub(crate) fn commit<F>(&self, build: F) -> Result<Arc<TableState>>
    where
        F: FnMut(&TableState) -> Result<Option<Vec<Action>>>,
    {
        self.commit_as(true, build)
    }

    /// [`Environment::commit`]; `checked: false` commits at a location that is not the primary
    /// (only storage DR does, to promote a replica).
    pub(crate) fn commit_as<F>(&self, checked: bool, mut build: F) -> Result<Arc<TableState>>
    where
        F: FnMut(&TableState) -> Result<Option<Vec<Action>>>,
    {
        for _ in 0..MAX_COMMIT_ATTEMPTS {
            let state = self.refresh()?;
            if checked {
                self.check_writable(&state)?;
            }
            let Some(actions) = build(&state)? else {
                return Ok(state);
            };
            let version = state.version + 1;
            let body = log::encode(&actions);
            if self.storage.put_if_absent(&log::version_path(version), body.clone())? {
                let mut next = (*state).clone();
                next.apply(version, &body)?;
                if version % checkpoint::CHECKPOINT_INTERVAL == 0 {
                    // The commit stands either way; without a checkpoint, readers replay the log.
                    let _ = checkpoint::write(&self.storage, &next);
                }
                let next = Arc::new(next);
                let mut slot = self.state.write();
                if slot.version < next.version {
                    *slot = next.clone();
                }
                return Ok(next);
            }
            // Lost the race for this version: catch up and rebuild on the winner's state.
            std::thread::yield_now();
        }
        Err(EngineError::TooManyConflicts(MAX_COMMIT_ATTEMPTS))
    }

    /// Refuses writes at a location storage DR does not name as the primary (a replica, or a
    /// primary that was failed over): its log would fork from the primary's.
    pub(crate) fn check_writable(&self, state: &TableState) -> Result<()> {
        match &state.primary {
            Some(p) if p != self.storage.url() => Err(EngineError::Fenced(format!(
                "'{}' is read-only: storage DR made '{p}' the writable primary (this location is its \
                 replica, or was failed over); write there, or bring this location back with dr/failback",
                self.storage.url()
            ))),
            _ => Ok(()),
        }
    }

    /// Whether this location may take writes now (reads the log's newest commits first). Writers
    /// outside the table log, like session stores, ask before every change.
    pub fn writable(&self) -> Result<()> {
        let state = self.fresh_snapshot()?;
        self.check_writable(&state)
    }

    /// Adds properties to the schema (`/schema/add`). Identical re-adds are no-ops.
    pub fn add_properties(&self, properties: &[Property]) -> Result<()> {
        self.commit(|state| {
            let mut schema = state.schema.clone();
            if !schema.add(properties, &state.columns)? {
                return Ok(None);
            }
            let mut columns = state.columns.clone();
            for p in schema.properties() {
                if !columns.iter().any(|c| c.name == p.name) {
                    columns.push(p.clone());
                }
            }
            let now = now_ms();
            let names: Vec<_> = properties.iter().map(|p| p.name.as_str()).collect();
            Ok(Some(vec![
                log::commit_info("ADD COLUMNS", now, serde_json::json!({"properties": names})),
                log::metadata_action(&state.table_id, &schema, &columns, state.primary.as_deref(), now),
            ]))
        })?;
        Ok(())
    }

    /// Removes every user property from the schema (`/schema/wipe`); data already written stays.
    pub fn wipe_schema(&self) -> Result<()> {
        self.commit(|state| {
            if state.schema.properties().is_empty() {
                return Ok(None);
            }
            let now = now_ms();
            Ok(Some(vec![
                log::commit_info("WIPE SCHEMA", now, serde_json::json!({})),
                log::metadata_action(
                    &state.table_id,
                    &Schema::default(),
                    &state.columns,
                    state.primary.as_deref(),
                    now,
                ),
            ]))
        })?;
        Ok(())
    }

    /// Reserves `count` consecutive keys by committing a larger next-key watermark.
    fn reserve_keys(&self, count: u64) -> Result<u64> {
        let mut first = 0;
        self.commit(|state| {
            first = state.next_key;
            let now = now_ms();
            Ok(Some(vec![
                log::commit_info("RESERVE KEYS", now, serde_json::json!({"start": first, "count": count})),
                log::next_key_action(first + count, now),
            ]))
        })?;
        Ok(first)
    }

    /// Starts an atomic append: nothing is visible until [`Appender::commit`].
    pub fn appender(&self) -> Result<Appender<'_>> {
        let state = self.refresh()?;
        Ok(Appender::new(self, state.schema.clone()))
    }

    /// Appends Arrow batches whose columns are schema properties, atomically.
    pub fn append_batches<I: IntoIterator<Item = RecordBatch>>(&self, batches: I) -> Result<AppendReport> {
        let mut a = self.appender()?;
        for b in batches {
            a.write_batch(&b)?;
        }
        a.commit()
    }

    /// Appends JSON records (nested objects are flattened to dotted names), atomically.
    pub fn append_json<I: IntoIterator<Item = Map<String, Value>>>(&self, records: I) -> Result<AppendReport> {
        let mut a = self.appender()?;
        for (i, r) in records.into_iter().enumerate() {
            a.write_json(r).map_err(|e| EngineError::BadData(format!("record {}: {e}", i + 1)))?;
        }
        a.commit()
    }

    /// The retention window (system parameter `retention-ms`): how long replaced versions stay
    /// readable.
    pub fn retention(&self) -> Result<Duration> {
        let ms = self.system()?.get(crate::system::RETENTION).and_then(Value::as_i64).unwrap_or(0);
        Ok(Duration::from_millis(ms.max(0) as u64))
    }

    /// Deletes what no reader can need any more:
    /// - lake files that no version inside the retention window (`retention-ms`) and no kept
    ///   backup refers to, once older than `min_age` (a safety window for appends in flight);
    /// - log commits and checkpoints older than the window, after checkpointing the first
    ///   version it keeps, so the log does not grow without bound.
    ///
    /// Invariant: every version from [`VacuumReport::oldest_version`] on stays readable with all
    /// its files, and so does every complete or in-progress backup.
    pub fn vacuum(&self, min_age: Duration) -> Result<VacuumReport> {
        let state = self.refresh()?;
        // A replica's log and files are the primary's to clean.
        self.check_writable(&state)?;
        let mut report = VacuumReport::default();
        let listing = crate::history::listing(&self.storage)?;
        let oldest = listing.oldest_restorable(state.version);
        let boundary = now_ms().saturating_sub(self.retention()?.as_millis().min(i64::MAX as u128) as i64);
        // The first kept version is the one that was current when the window opened.
        let keep_from = match self.version_as_of(boundary) {
            Ok(v) => v.max(oldest),
            Err(_) => oldest,
        };
        // Storage DR: the replica still needs every commit it has not received.
        let keep_from = match self.dr_config()? {
            Some(cfg) if cfg.primary == self.storage.url() && cfg.state == crate::replica::DrState::Replicating => {
                match cfg.open().and_then(|(_, r)| crate::replica::version_at(&r)) {
                    Ok(Some(shipped)) => keep_from.min(shipped + 1).min(state.version).max(oldest),
                    _ => oldest,
                }
            }
            _ => keep_from,
        };
        let base = self.state_at(keep_from)?;
        let mut needed: std::collections::HashSet<String> = base.segments.iter().map(|s| s.path.clone()).collect();
        for v in keep_from + 1..=state.version {
            let body =
                self.storage.get(&log::version_path(v))?.ok_or(EngineError::VersionGone { version: v, oldest })?;
            for line in body.split(|b| *b == b'\n') {
                if let Ok(Action::Add(add)) = serde_json::from_slice::<Action>(line) {
                    needed.insert(add.path);
                }
            }
        }
        for backup in self.backups()? {
            if !backup.deep && backup.status != crate::backup::BackupStatus::Failed {
                needed.extend(backup.files.into_iter().map(|f| f.path));
            }
        }
        if keep_from > oldest {
            if !listing.checkpoints.contains(&keep_from) {
                checkpoint::write(&self.storage, &base)?;
            }
            // Ascending, so an interrupted cleanup leaves a contiguous log (see `history`).
            for v in listing.commits.range(..keep_from) {
                self.storage.delete(&log::version_path(*v))?;
                report.log_files_deleted += 1;
            }
            for v in listing.checkpoints.range(..keep_from) {
                self.storage.delete(&checkpoint::checkpoint_path(*v))?;
                report.log_files_deleted += 1;
            }
        }
        report.oldest_version = keep_from;
        self.history.forget_before(keep_from);
        let cutoff = chrono::Utc::now() - chrono::Duration::from_std(min_age).unwrap_or(chrono::Duration::MAX);
        for meta in self.storage.list(LAKE_DIR)? {
            let rel = self.storage.relative(&meta.location);
            if needed.contains(rel.as_str()) {
                continue;
            }
            if meta.last_modified > cutoff {
                report.files_kept += 1;
                continue;
            }
            self.storage.delete(&rel)?;
            report.files_deleted += 1;
            report.bytes_deleted += meta.size;
        }
        if let Some(root) = self.storage.local_root() {
            // A writer killed mid-upload leaves `<name>#<n>` staging files, which the local object
            // store hides from listings; only the filesystem shows them.
            let cutoff = std::time::SystemTime::now().checked_sub(min_age).unwrap_or(std::time::UNIX_EPOCH);
            for dir in [LAKE_DIR, log::LOG_DIR] {
                for (path, meta) in staging_files(&root.join(dir)) {
                    if meta.modified().map_or(true, |m| m > cutoff) {
                        report.files_kept += 1;
                    } else if std::fs::remove_file(&path).is_ok() {
                        report.files_deleted += 1;
                        report.bytes_deleted += meta.len();
                    }
                }
            }
        }
        Ok(report)
    }

    /// Deletes every file of the environment.
    ///
    /// Invariant: only what m1 wrote goes ([`OWNED_DIRS`], [`OWNED_FILES`]); anything else in the
    /// root survives, and a symbolic link is removed, never followed. A local root is removed
    /// only when nothing else is left in it.
    pub fn destroy(self) -> Result<()> {
        self.cache.clear();
        let Some(root) = self.storage.local_root() else {
            for dir in OWNED_DIRS {
                self.storage.delete_prefix(dir)?;
            }
            for file in OWNED_FILES {
                self.storage.delete(file)?;
            }
            return Ok(());
        };
        for name in OWNED_DIRS.iter().chain(OWNED_FILES) {
            let path = root.join(name);
            let removed = match std::fs::symlink_metadata(&path) {
                Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(&path),
                Ok(_) => std::fs::remove_file(&path),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(e),
            };
            removed.map_err(|e| EngineError::io(&path, e))?;
        }
        let _ = std::fs::remove_dir(root);
        Ok(())
    }
}

/// Files under `dir` (recursively) named like the local store's staging files: `<name>#<digits>`.
fn staging_files(dir: &std::path::Path) -> Vec<(std::path::PathBuf, std::fs::Metadata)> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return out };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(meta) = entry.metadata() else { continue };
        if meta.is_dir() {
            out.extend(staging_files(&path));
            continue;
        }
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if let Some((_, n)) = name.rsplit_once('#')
            && !n.is_empty()
            && n.bytes().all(|b| b.is_ascii_digit())
        {
            out.push((path, meta));
        }
    }
    out
}

/// An append in progress. Segments are written as they fill; the records become visible all at
/// once when [`Appender::commit`] commits every segment in one log version. Dropping an appender
/// without committing leaves only unreferenced files (which `vacuum` removes) and a key gap.
pub struct Appender<'e> {
    env: &'e Environment,
    schema: Schema,
    /// `_m1key`, `_m1rand`, then the properties.
    full: SchemaRef,
    json: RowsBuilder,
    /// Property columns waiting to be written, aligned to `schema.properties()`.
    /// Column chunks with their row counts (a schema without user properties has no columns,
    /// so the count cannot come from them).
    pending: std::collections::VecDeque<(Vec<ArrayRef>, usize)>,
    pending_rows: usize,
    /// Segments being encoded and uploaded on worker threads, oldest first.
    in_flight: std::collections::VecDeque<std::thread::JoinHandle<Result<SegmentInfo>>>,
    written: Vec<SegmentInfo>,
    unmapped: std::collections::BTreeSet<String>,
}

/// Rows buffered from JSON before they become an Arrow chunk.
const JSON_CHUNK: usize = 8192;

impl<'e> Appender<'e> {
    fn new(env: &'e Environment, schema: Schema) -> Appender<'e> {
        Appender {
            env,
            full: schema.arrow_schema(),
            json: RowsBuilder::new(schema.properties()),
            schema,
            pending: Default::default(),
            pending_rows: 0,
            in_flight: Default::default(),
            written: Vec::new(),
            unmapped: Default::default(),
        }
    }

    /// The schema this append types its records with.
    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// Adds a batch whose columns are named after schema properties (any subset, any order;
    /// castable types are cast). `_m1key` and `_m1rand` are assigned, not taken.
    pub fn write_batch(&mut self, batch: &RecordBatch) -> Result<()> {
        let bschema = batch.schema();
        for f in bschema.fields() {
            if self.schema.get(f.name()).is_none() || f.name() == KEY || f.name() == RAND {
                return Err(EngineError::BadData(format!(
                    "column '{}' is not a schema property (add it with schema/add; {KEY} and {RAND} are assigned by m1)",
                    f.name()
                )));
            }
        }
        let mut columns = Vec::with_capacity(self.schema.properties().len());
        for p in self.schema.properties() {
            columns.push(match bschema.index_of(&p.name) {
                Ok(i) => {
                    let col = batch.column(i);
                    let want = p.arrow_type();
                    if col.data_type() == &want {
                        col.clone()
                    } else {
                        cast(col, &want).map_err(|e| {
                            EngineError::BadData(format!("column '{}' cannot become {}: {e}", p.name, p.ty.name()))
                        })?
                    }
                }
                Err(_) => new_null_array(&p.arrow_type(), batch.num_rows()),
            });
        }
        self.write_columns(columns, batch.num_rows())
    }

    /// Adds one JSON record (nested objects are flattened). A bad value is an error and leaves
    /// the append as it was.
    pub fn write_json(&mut self, record: Map<String, Value>) -> Result<()> {
        self.json.push(&flatten(record))?;
        if self.json.len() >= JSON_CHUNK.min(self.env.config.segment_rows) {
            self.drain_json()?;
        }
        Ok(())
    }

    fn drain_json(&mut self) -> Result<()> {
        let rows = self.json.len();
        if rows > 0 {
            let cols = self.json.finish();
            self.write_columns(cols, rows)?;
        }
        Ok(())
    }

    /// Adds `rows` records given as one column per schema property, in schema order and of the
    /// properties' Arrow types (as [`RowsBuilder`] builds them).
    pub fn write_columns(&mut self, columns: Vec<ArrayRef>, rows: usize) -> Result<()> {
        if columns.len() != self.schema.properties().len() || columns.iter().any(|c| c.len() != rows) {
            return Err(EngineError::BadData(format!(
                "expected {} columns of {rows} rows, one per schema property",
                self.schema.properties().len()
            )));
        }
        if rows == 0 {
            return Ok(());
        }
        self.pending.push_back((columns, rows));
        self.pending_rows += rows;
        let target = self.env.config.segment_options().segment_rows;
        while self.pending_rows >= target {
            self.write_segment(target)?;
        }
        Ok(())
    }

    /// Writes the first `rows` pending records as one segment under freshly reserved keys.
    fn write_segment(&mut self, rows: usize) -> Result<()> {
        let mut chunks = Vec::new();
        let mut taken = 0;
        while taken < rows {
            let (cols, n) = self.pending.pop_front().expect("pending rows are counted");
            if taken + n <= rows {
                taken += n;
                chunks.push((cols, n));
            } else {
                let keep = rows - taken;
                chunks.push((cols.iter().map(|c| c.slice(0, keep)).collect(), keep));
                self.pending.push_front((cols.iter().map(|c| c.slice(keep, n - keep)).collect(), n - keep));
                taken = rows;
            }
        }
        self.pending_rows -= rows;
        let start = self.env.reserve_keys(rows as u64)?;
        let mut rng = rand::rng();
        let mut batches = Vec::with_capacity(chunks.len());
        let mut key = start as i64;
        for (cols, n) in chunks {
            let keys = Int64Array::from_iter_values(key..key + n as i64);
            let rand = Float64Array::from_iter_values((0..n).map(|_| rng.random::<f64>()));
            key += n as i64;
            let mut all: Vec<ArrayRef> = vec![Arc::new(keys), Arc::new(rand)];
            all.extend(cols);
            batches.push(RecordBatch::try_new(self.full.clone(), all)?);
        }
        let state = self.env.snapshot();
        let started = self.written.len() + self.in_flight.len();
        let shard = ((state.segments.len() + started) % self.env.config.shards.max(1) as usize) as u32;
        let path = format!("{LAKE_DIR}/shard={shard}/{start:020}-{}.parquet", uuid::Uuid::new_v4().simple());
        let (schema, options, storage) =
            (self.full.clone(), self.env.config.segment_options(), self.env.storage.clone());
        // Encoding and upload run on up to `servers` threads; keys are already fixed, so the
        // order in which segments finish does not matter.
        if self.in_flight.len() >= self.env.config.workers.max(1) as usize {
            self.join_oldest()?;
        }
        self.in_flight.push_back(std::thread::spawn(move || {
            let bytes = segment::encode(&schema, &batches, &options)?;
            let size = bytes.len() as u64;
            storage.put(&path, bytes)?;
            Ok(SegmentInfo { path, shard, start, end: start + rows as u64, size })
        }));
        Ok(())
    }

    fn join_oldest(&mut self) -> Result<()> {
        if let Some(handle) = self.in_flight.pop_front() {
            let info = handle.join().map_err(|p| {
                EngineError::WorkerPanicked(format!("a segment writer thread panicked: {}", crate::panic_message(&*p)))
            })??;
            self.written.push(info);
        }
        Ok(())
    }

    /// Writes what is pending and commits every segment of this append in one log version.
    pub fn commit(mut self) -> Result<AppendReport> {
        self.drain_json()?;
        if self.pending_rows > 0 {
            self.write_segment(self.pending_rows)?;
        }
        while !self.in_flight.is_empty() {
            self.join_oldest()?;
        }
        self.unmapped.extend(self.json.unmapped().iter().cloned());
        let unmapped = self.unmapped.iter().cloned().collect();
        if self.written.is_empty() {
            let version = self.env.snapshot().version;
            return Ok(AppendReport {
                rows: 0,
                first_key: None,
                last_key: None,
                key_ranges: Vec::new(),
                segments: 0,
                version,
                unmapped,
            });
        }
        let now = now_ms();
        let rows: u64 = self.written.iter().map(SegmentInfo::rows).sum();
        let mut actions = vec![log::commit_info("WRITE", now, serde_json::json!({"mode": "Append", "m1.rows": rows}))];
        actions.extend(self.written.iter().map(|s| Action::Add(s.to_add(now))));
        // Keys are already reserved, so a lost race only moves the commit to a later version.
        let state = self.env.commit(|_| Ok(Some(actions.clone())))?;
        Ok(AppendReport {
            rows,
            first_key: self.written.first().map(|s| s.start),
            last_key: self.written.last().map(|s| s.end - 1),
            key_ranges: self.written.iter().fold(Vec::new(), |mut ranges: Vec<(u64, u64)>, s| {
                match ranges.last_mut() {
                    Some(last) if last.1 == s.start => last.1 = s.end,
                    _ => ranges.push((s.start, s.end)),
                }
                ranges
            }),
            segments: self.written.len(),
            version: state.version,
            unmapped,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// After `/schema/wipe` no user property is left, so appended chunks have no columns; their
    /// rows must still be counted (this used to panic).
    #[test]
    fn append_with_no_user_properties() {
        let dir = tempfile::tempdir().unwrap();
        let env = Environment::create(dir.path().to_str().unwrap(), EnvConfig::default()).unwrap();
        let rows = (0..3).map(|i| serde_json::json!({"unmapped": i}).as_object().unwrap().clone());
        let report = env.append_json(rows).unwrap();
        assert_eq!(report.rows, 3);
        assert_eq!(env.next_key().unwrap(), 3);
    }
}
