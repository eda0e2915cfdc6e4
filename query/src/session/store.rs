//! One open session store: its shards, its log, the background refresher and checkpoints.
//!
//! An update call: parse and check every op (no lock), then under the writer lock compute the
//! final document of every key it touches (merges read the current document), append them to
//! the log as one record and apply them to the shards; then, without the lock, wait for the log
//! to be fsynced (group commit: concurrent callers share the fsync). The new documents are
//! readable by key at once; a query indexes whatever is pending before it runs, and a
//! background thread indexes pending documents every [`REFRESH`] so that work stays small.
//!
//! The store's directory is locked (an OS file lock on `LOCK`) while it is open: one process
//! at a time writes it. Within a process, [`super::Sessions`] hands out one shared instance.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::{Mutex, RwLock, RwLockWriteGuard};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::doc::{key_of, merge_patch, stamp};
use super::index::{self, Frozen};
use super::ops::{self, Change};
use super::search::{Hit, RawPage, SessionQuery, SessionResult, SortSpec, TopK};
use super::shard::{Image, SessionShard};
use super::snapshot::{self, Content, ShardToWrite};
use super::wal::{self, Entry, Wal, sync_dir};
use crate::error::{QueryError, Result};
use crate::matcher::Matcher;
use crate::syntax::{Query, parse};

/// How often the background thread indexes pending documents.
pub const REFRESH: Duration = Duration::from_millis(200);
/// Log size after which the background thread writes a checkpoint.
pub const CHECKPOINT_BYTES: u64 = 256 << 20;
/// Documents indexed per lock acquisition by the background thread.
const BATCH: usize = 20_000;

/// The configuration file of a store, `store.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoreConfig {
    /// The key property (a cache of the log's; the log wins).
    pub key: String,
    /// Shards (fixed at creation).
    pub shards: u32,
    /// Replicas (recorded; an embedded store has one copy).
    pub replicas: u32,
    /// Creation time, epoch ms.
    pub created: i64,
}

impl StoreConfig {
    /// Reads `store.json` in `dir`.
    pub fn read(dir: &Path) -> Result<StoreConfig> {
        let path = dir.join("store.json");
        let bytes = std::fs::read(&path).map_err(|e| QueryError::session_io(&path, e))?;
        serde_json::from_slice(&bytes)
            .map_err(|e| QueryError::SessionCorrupt { path: path.clone(), message: e.to_string() })
    }

    /// Writes `store.json` in `dir` atomically.
    pub fn write(&self, dir: &Path) -> Result<()> {
        let path = dir.join("store.json");
        let tmp = dir.join("store.json.tmp");
        let bytes = serde_json::to_vec_pretty(self).expect("a config serializes");
        std::fs::write(&tmp, bytes)
            .and_then(|()| File::open(&tmp)?.sync_all())
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|e| QueryError::session_io(&path, e))?;
        sync_dir(dir)
    }
}

/// A key's document at the end of a call (`None`: deleted).
type Final = (Arc<str>, Option<Map<String, Value>>);

/// What an update did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct UpdateReport {
    /// Documents upserted.
    pub upserted: u64,
    /// Documents merged.
    pub merged: u64,
    /// Ids deleted (whether or not they existed).
    pub deleted: u64,
}

/// An open session store.
pub struct SessionStore {
    name: String,
    dir: PathBuf,
    config: StoreConfig,
    key_path: RwLock<String>,
    shards: Vec<RwLock<SessionShard>>,
    /// Serialises writers: log order is apply order.
    writer: Mutex<()>,
    wal: Wal,
    checkpointing: Mutex<()>,
    checkpoint_bytes: AtomicU64,
    closed: AtomicBool,
    /// The OS lock on `LOCK`, released by [`SessionStore::close`].
    lock: Mutex<Option<File>>,
}

impl std::fmt::Debug for SessionStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionStore").field("name", &self.name).field("dir", &self.dir).finish_non_exhaustive()
    }
}

/// Stable shard of a key: FNV-1a, so placement never depends on the build.
pub fn shard_of(key: &str, shards: usize) -> usize {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in key.as_bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (h % shards as u64) as usize
}

/// Re-keys every document by property `path`; refuses (with the reason) when a document has
/// no usable key there or two documents would share one.
fn rekey<'a>(
    docs: impl Iterator<Item = (&'a Arc<str>, &'a Arc<[u8]>)>,
    path: &str,
    shards: usize,
) -> std::result::Result<Vec<SessionShard>, String> {
    let mut out: Vec<SessionShard> = (0..shards).map(|_| SessionShard::default()).collect();
    let mut seen: HashMap<Arc<str>, Arc<str>> = HashMap::new();
    for (old, doc) in docs {
        let map: Map<String, Value> =
            serde_json::from_slice(doc).map_err(|e| format!("document '{old}' is not JSON: {e}"))?;
        let key: Arc<str> =
            key_of(&map, path).map_err(|why| format!("cannot key by '{path}': document '{old}': {why}"))?.into();
        if let Some(other) = seen.insert(Arc::clone(&key), Arc::clone(old)) {
            return Err(format!("cannot key by '{path}': documents '{other}' and '{old}' both have {path} = '{key}'"));
        }
        out[shard_of(&key, shards)].put(key, Arc::clone(doc));
    }
    Ok(out)
}

fn apply(shards: &mut [SessionShard], key_path: &mut String, entries: Vec<Entry>) -> std::result::Result<(), String> {
    let n = shards.len();
    for e in entries {
        match e {
            Entry::Put { key, doc } => shards[shard_of(&key, n)].put(key, doc),
            Entry::Delete { key } => shards[shard_of(&key, n)].delete(&key),
            Entry::SetKey { path } => {
                if path != *key_path {
                    let fresh = rekey(shards.iter().flat_map(SessionShard::docs), &path, n)?;
                    shards.iter_mut().zip(fresh).for_each(|(s, f)| *s = f);
                    *key_path = path;
                }
            }
        }
    }
    Ok(())
}

impl SessionStore {
    /// Creates the files of a new store in `dir` (which must not exist yet).
    pub(crate) fn create(dir: &Path, config: &StoreConfig) -> Result<()> {
        let parent = dir.parent().expect("a store directory has a parent");
        let tmp = parent.join(format!(
            ".{}.{}.creating",
            dir.file_name().and_then(|n| n.to_str()).unwrap_or("store"),
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).map_err(|e| QueryError::session_io(&tmp, e))?;
        // The key property lives in the log, so it is never out of step with the documents.
        let w = Wal::open(&tmp, 0, 0)?;
        let seq = w.append(&wal::encode(&[Entry::SetKey { path: config.key.clone() }]))?;
        w.sync(seq)?;
        config.write(&tmp)?;
        std::fs::rename(&tmp, dir).map_err(|e| {
            let _ = std::fs::remove_dir_all(&tmp);
            QueryError::session_io(dir, e)
        })?;
        sync_dir(parent)
    }

    /// Opens the store in `dir`: locks it, loads the newest checkpoint, replays the log (cutting
    /// a torn tail) and starts the background refresher.
    pub(crate) fn open(name: &str, dir: &Path) -> Result<Arc<SessionStore>> {
        let mut config = StoreConfig::read(dir)?;
        let lock_path = dir.join("LOCK");
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| QueryError::session_io(&lock_path, e))?;
        // A short wait covers a handle being released right now (or a child process between
        // fork and exec holding a copy of the descriptor).
        let mut tries = 0;
        while let Err(e) = lock.try_lock() {
            tries += 1;
            if tries == 20 {
                return Err(QueryError::SessionRefused {
                    store: name.to_string(),
                    reason: format!("it is open in another process ({e})"),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // Leftovers of a checkpoint or config write cut short by a crash.
        for e in std::fs::read_dir(dir).map_err(|e| QueryError::session_io(dir, e))?.flatten() {
            if e.file_name().to_str().is_some_and(|n| n.ends_with(".tmp")) {
                let _ = std::fs::remove_file(e.path());
            }
        }
        let n = config.shards as usize;
        let mut shards: Vec<SessionShard> = (0..n).map(|_| SessionShard::default()).collect();
        let mut key_path = config.key.clone();
        let snaps = wal::generations(dir, "snap-", ".bin")?;
        let base = snaps.last().copied().unwrap_or(0);
        if let Some(&g) = snaps.last() {
            let path = dir.join(snapshot::file_name(g));
            let snap = snapshot::read(&path)?;
            if snap.shards != config.shards {
                return Err(QueryError::SessionCorrupt { path, message: "shard count differs from store.json".into() });
            }
            key_path = snap.key_path;
            match snap.content {
                Content::Docs(docs) => {
                    for (k, d) in docs {
                        shards[shard_of(&k, n)].put(k, d);
                    }
                }
                Content::Shards(saved) => {
                    let corrupt = |message: String| QueryError::SessionCorrupt { path: path.clone(), message };
                    if saved.len() != n {
                        return Err(corrupt(format!("{} shards saved, {n} configured", saved.len())));
                    }
                    for (i, s) in saved.into_iter().enumerate() {
                        if let Some((k, ..)) = s.slots.iter().flatten().find(|(k, ..)| shard_of(k, n) != i) {
                            return Err(corrupt(format!("key '{k}' is saved in shard {i}, which does not hold it")));
                        }
                        shards[i] = SessionShard::from_saved(s.slots, s.indexed_below, s.index)
                            .map_err(|m| corrupt(format!("shard {i}: {m}")))?;
                    }
                }
            }
        }
        let gens: Vec<u64> = wal::generations(dir, "wal-", ".log")?.into_iter().filter(|&g| g >= base).collect();
        let mut active = (base, 0);
        for (i, &g) in gens.iter().enumerate() {
            let path = dir.join(wal::file_name(g));
            let bytes = std::fs::read(&path).map_err(|e| QueryError::session_io(&path, e))?;
            let (records, end) = wal::decode(&bytes);
            if end < bytes.len() {
                if i + 1 < gens.len() {
                    return Err(QueryError::SessionCorrupt {
                        path,
                        message: format!("damaged record at byte {end} of a closed log"),
                    });
                }
                // An unacknowledged call that was cut short: it never happened.
                let f = File::options().write(true).open(&path).map_err(|e| QueryError::session_io(&path, e))?;
                f.set_len(end as u64).and_then(|()| f.sync_all()).map_err(|e| QueryError::session_io(&path, e))?;
            }
            for r in records {
                apply(&mut shards, &mut key_path, r)
                    .map_err(|message| QueryError::SessionCorrupt { path: path.clone(), message })?;
            }
            active = (g, end as u64);
        }
        let wal = Wal::open(dir, active.0, active.1)?;
        if key_path != config.key {
            config.key.clone_from(&key_path);
            config.write(dir)?;
        }
        let store = Arc::new(SessionStore {
            name: name.to_string(),
            dir: dir.to_path_buf(),
            config,
            key_path: RwLock::new(key_path),
            shards: shards.into_iter().map(RwLock::new).collect(),
            writer: Mutex::new(()),
            wal,
            checkpointing: Mutex::new(()),
            checkpoint_bytes: AtomicU64::new(CHECKPOINT_BYTES),
            closed: AtomicBool::new(false),
            lock: Mutex::new(Some(lock)),
        });
        let weak = Arc::downgrade(&store);
        std::thread::Builder::new()
            .name(format!("m1-session-{name}"))
            .spawn(move || background(weak))
            .map_err(|e| QueryError::session_io(dir, e))?;
        Ok(store)
    }

    /// The store's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Shards and replicas as configured.
    pub fn config(&self) -> StoreConfig {
        StoreConfig { key: self.key_path(), ..self.config.clone() }
    }

    /// The key property.
    pub fn key_path(&self) -> String {
        self.key_path.read().clone()
    }

    /// Documents stored.
    pub fn len(&self) -> u64 {
        self.shards.iter().map(|s| s.read().len() as u64).sum()
    }

    /// Whether the store holds no document.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sets the log size after which a checkpoint is written (default [`CHECKPOINT_BYTES`]).
    pub fn set_checkpoint_bytes(&self, bytes: u64) {
        self.checkpoint_bytes.store(bytes, Ordering::Relaxed);
    }

    fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(QueryError::SessionRefused {
                store: self.name.clone(),
                reason: "this handle was closed (the store was renamed or dropped)".into(),
            });
        }
        Ok(())
    }

    /// Stops the store: later calls fail; waits for running writes and checkpoints.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        let _c = self.checkpointing.lock();
        let _w = self.writer.lock();
        self.lock.lock().take();
    }

    /// Applies `ops` (the JSON text of `session/update`) atomically and durably.
    pub fn update(&self, ops: &str) -> Result<UpdateReport> {
        let value: Value = serde_json::from_str(ops).map_err(|e| {
            QueryError::BadRequest(format!("session/update: ops is not valid JSON: {e}; nothing was applied"))
        })?;
        self.update_value(value)
    }

    /// [`SessionStore::update`] with `ops` already parsed.
    pub fn update_value(&self, ops: Value) -> Result<UpdateReport> {
        self.check_open()?;
        let mut report = UpdateReport::default();
        let w = self.writer.lock();
        self.check_open()?;
        // Checked under the writer lock: the key property cannot change meanwhile.
        let changes = ops::from_value(ops, &self.key_path.read())?;
        let now = m1_engine::environment::now_ms();
        let n = self.shards.len();
        let mut finals: Vec<Final> = Vec::with_capacity(changes.len());
        let mut at: HashMap<Arc<str>, usize> = HashMap::with_capacity(changes.len());
        let set = |key: String,
                   doc: Option<Map<String, Value>>,
                   finals: &mut Vec<Final>,
                   at: &mut HashMap<Arc<str>, usize>| {
            let key: Arc<str> = key.into();
            match at.get(&key) {
                Some(&i) => finals[i].1 = doc,
                None => {
                    at.insert(Arc::clone(&key), finals.len());
                    finals.push((key, doc));
                }
            }
        };
        for change in changes {
            match change {
                Change::Upsert { key, mut doc } => {
                    report.upserted += 1;
                    stamp(&mut doc, now);
                    set(key, Some(doc), &mut finals, &mut at);
                }
                Change::Merge { key, patch } => {
                    report.merged += 1;
                    let base = match at.get(key.as_str()) {
                        Some(&i) => finals[i].1.take(),
                        None => self.shards[shard_of(&key, n)]
                            .read()
                            .get(&key)
                            .map(|d| serde_json::from_slice(d).expect("stored documents are JSON objects")),
                    };
                    let mut doc = Value::Object(base.unwrap_or_default());
                    merge_patch(&mut doc, &Value::Object(patch));
                    let Value::Object(mut doc) = doc else { unreachable!("a patch object keeps an object") };
                    stamp(&mut doc, now);
                    set(key, Some(doc), &mut finals, &mut at);
                }
                Change::Delete { key } => {
                    report.deleted += 1;
                    set(key, None, &mut finals, &mut at);
                }
            }
        }
        let entries: Vec<Entry> = finals
            .into_iter()
            .map(|(key, doc)| match doc {
                Some(doc) => Entry::Put {
                    key,
                    doc: serde_json::to_vec(&doc).expect("a JSON map serializes").into_boxed_slice().into(),
                },
                None => Entry::Delete { key },
            })
            .collect();
        if entries.is_empty() {
            return Ok(report);
        }
        let seq = self.wal.append(&wal::encode(&entries))?;
        let mut by_shard: Vec<Vec<Entry>> = (0..n).map(|_| Vec::new()).collect();
        for e in entries {
            let key = match &e {
                Entry::Put { key, .. } | Entry::Delete { key } => key,
                Entry::SetKey { .. } => unreachable!("updates hold no key change"),
            };
            by_shard[shard_of(key, n)].push(e);
        }
        for (shard, entries) in self.shards.iter().zip(by_shard) {
            if !entries.is_empty() {
                let mut s = shard.write();
                for e in entries {
                    match e {
                        Entry::Put { key, doc } => s.put(key, doc),
                        Entry::Delete { key } => s.delete(&key),
                        Entry::SetKey { .. } => {}
                    }
                }
            }
        }
        drop(w);
        self.wal.sync(seq)?;
        Ok(report)
    }

    /// The documents stored under `keys`, in the order asked; absent keys are skipped.
    pub fn get(&self, keys: &[String]) -> Result<Vec<Value>> {
        self.check_open()?;
        let n = self.shards.len();
        keys.iter()
            .filter_map(|k| self.shards[shard_of(k, n)].read().get(k).cloned())
            .map(|d| serde_json::from_slice(&d).map_err(|e| QueryError::BadRequest(e.to_string())))
            .collect()
    }

    /// Indexes every pending document now (queries do this first).
    pub fn refresh(&self) {
        for shard in &self.shards {
            drop(refresh_shard(shard, usize::MAX));
        }
    }

    /// Answers a `session/query` with the documents as stored JSON bytes.
    pub fn query_raw(&self, req: &SessionQuery) -> Result<RawPage> {
        self.check_open()?;
        let q = parse(&req.q)?;
        let sort = SortSpec::parse(req.sort.as_deref())?;
        let k = usize::try_from(req.start.saturating_add(req.rows)).unwrap_or(usize::MAX);
        let matcher = Matcher::untyped(&q);
        let one = |shard: &RwLock<SessionShard>| -> (u64, Vec<Hit>) {
            let s = refresh_shard(shard, usize::MAX);
            search_shard(&s, &q, &matcher, &sort, k)
        };
        let parts: Vec<(u64, Vec<Hit>)> = if self.shards.len() == 1 {
            vec![one(&self.shards[0])]
        } else {
            std::thread::scope(|scope| {
                let handles: Vec<_> = self.shards.iter().map(|s| scope.spawn(move || one(s))).collect();
                handles.into_iter().map(|h| h.join().expect("a shard search does not panic")).collect()
            })
        };
        let count = parts.iter().map(|p| p.0).sum();
        let mut hits: Vec<Hit> = parts.into_iter().flat_map(|p| p.1).collect();
        hits.sort_unstable();
        let docs = hits
            .into_iter()
            .skip(usize::try_from(req.start).unwrap_or(usize::MAX))
            .take(usize::try_from(req.rows).unwrap_or(usize::MAX))
            .map(|h| h.doc)
            .collect();
        Ok(RawPage { count, docs })
    }

    /// Answers a query with the page's documents parsed.
    pub fn query(&self, req: &SessionQuery) -> Result<SessionResult> {
        let page = self.query_raw(req)?;
        let items = page.docs.iter().map(|d| serde_json::from_slice(d).expect("stored documents are JSON")).collect();
        Ok(SessionResult { count: page.count, items })
    }

    /// Changes the key property, re-keying every document; refused (nothing changes) when a
    /// document has no usable key there or two would collide.
    pub fn set_key(&self, path: &str) -> Result<()> {
        self.check_open()?;
        if path.trim().is_empty() {
            return Err(QueryError::BadRequest("session/key: key must not be empty".into()));
        }
        let _w = self.writer.lock();
        self.check_open()?;
        if *self.key_path.read() == path {
            return Ok(());
        }
        let mut guards: Vec<RwLockWriteGuard<'_, SessionShard>> = self.shards.iter().map(|s| s.write()).collect();
        let fresh = rekey(guards.iter().flat_map(|g| g.docs()), path, self.shards.len())
            .map_err(|reason| QueryError::SessionRefused { store: self.name.clone(), reason })?;
        let seq = self.wal.append(&wal::encode(&[Entry::SetKey { path: path.to_string() }]))?;
        self.wal.sync(seq)?;
        for (g, f) in guards.iter_mut().zip(fresh) {
            **g = f;
        }
        *self.key_path.write() = path.to_string();
        drop(guards);
        self.config().write(&self.dir)
    }

    /// Writes every document as it is now, with the store's settings, into `dest` (a checkpoint
    /// a store opens from, for backups); returns the documents written. Updates wait meanwhile
    /// only while the documents are gathered, not while they are written.
    pub fn export(&self, dest: &Path) -> Result<u64> {
        let _c = self.checkpointing.lock();
        self.check_open()?;
        let (key_path, images) = {
            let _w = self.writer.lock();
            (self.key_path(), self.images())
        };
        std::fs::create_dir_all(dest).map_err(|e| QueryError::session_io(dest, e))?;
        let mut config = self.config();
        config.key.clone_from(&key_path);
        config.write(dest)?;
        let docs = images.iter().map(|im| im.slots.iter().flatten().count() as u64).sum();
        self.save(dest, 1, &key_path, images)?;
        Ok(docs)
    }

    /// Every shard's image (see [`SessionShard::image`]); call under the writer lock.
    fn images(&self) -> Vec<Image> {
        self.shards.iter().map(|s| s.write().image()).collect()
    }

    /// Writes images as the checkpoint `generation` in `dir`, each shard's index layers merged
    /// into one (outside every lock), and puts the merged layers in the shards' indexes.
    fn save(&self, dir: &Path, generation: u64, key_path: &str, images: Vec<Image>) -> Result<()> {
        let merged: Vec<Option<Frozen>> = images
            .iter()
            .map(|im| match &im.layers[..] {
                [one] if one.frozen().is_some() => None,
                layers => Some(index::merge(&layers.iter().map(|l| &**l).collect::<Vec<_>>(), None)),
            })
            .collect();
        let shards: Vec<ShardToWrite<'_>> = images
            .iter()
            .zip(&merged)
            .map(|(im, m)| ShardToWrite {
                slots: &im.slots,
                indexed_below: im.indexed_below,
                // Not merged: the one layer is frozen already.
                index: m.as_ref().or_else(|| im.layers[0].frozen()).expect("a merge or one frozen layer"),
            })
            .collect();
        snapshot::write(dir, generation, key_path, &shards)?;
        drop(shards);
        for ((shard, im), m) in self.shards.iter().zip(images).zip(merged) {
            if let Some(m) = m {
                shard.write().install(&im.layers, m);
            }
        }
        Ok(())
    }

    /// Writes a checkpoint now and deletes the log generations and checkpoints it replaces.
    pub fn checkpoint(&self) -> Result<()> {
        let _c = self.checkpointing.lock();
        self.check_open()?;
        let (generation, key_path, images) = {
            let _w = self.writer.lock();
            if self.wal.is_empty() && self.dir.join(snapshot::file_name(self.wal.generation())).exists() {
                return Ok(());
            }
            let generation = self.wal.rotate()?;
            (generation, self.key_path(), self.images())
        };
        self.save(&self.dir, generation, &key_path, images)?;
        for g in wal::generations(&self.dir, "wal-", ".log")?.into_iter().filter(|&g| g < generation) {
            let p = self.dir.join(wal::file_name(g));
            std::fs::remove_file(&p).map_err(|e| QueryError::session_io(&p, e))?;
        }
        for g in wal::generations(&self.dir, "snap-", ".bin")?.into_iter().filter(|&g| g < generation) {
            let p = self.dir.join(snapshot::file_name(g));
            std::fs::remove_file(&p).map_err(|e| QueryError::session_io(&p, e))?;
        }
        sync_dir(&self.dir)
    }

    /// Drops every shard's index and rebuilds it from the documents (the index a checkpoint
    /// saved is then no longer used; a check that both answer alike).
    pub fn rebuild_index(&self) -> Result<()> {
        self.check_open()?;
        for shard in &self.shards {
            shard.write().reindex();
            drop(refresh_shard(shard, usize::MAX));
        }
        Ok(())
    }

    /// Index figures summed over shards: distinct terms, postings, slots, dead slots.
    pub fn index_stats(&self) -> [usize; 4] {
        let mut out = [0; 4];
        for s in &self.shards {
            for (o, x) in out.iter_mut().zip(s.read().stats()) {
                *o += x;
            }
        }
        out
    }
}

/// Indexes up to `max` pending documents of a shard, analysing them outside the lock; returns
/// the shard read-locked (fully indexed when `max` is unlimited).
fn refresh_shard(shard: &RwLock<SessionShard>, max: usize) -> parking_lot::RwLockReadGuard<'_, SessionShard> {
    let mut budget = max;
    loop {
        let batch = {
            let s = shard.read();
            if !s.has_pending() || budget == 0 {
                return s;
            }
            s.take_batch(BATCH.min(budget))
        };
        budget = budget.saturating_sub(BATCH);
        let analysed = batch.analyse();
        let mut s = shard.write();
        s.apply(analysed);
        if max == usize::MAX && s.pending_len() < BATCH {
            // What arrived while analysing is little: finish under this lock, so the loop ends.
            s.refresh();
        }
        if !s.has_pending() {
            return RwLockWriteGuard::downgrade(s);
        }
    }
}

fn search_shard(s: &SessionShard, q: &Query, matcher: &Matcher<'_>, sort: &SortSpec, k: usize) -> (u64, Vec<Hit>) {
    let mut count = 0;
    let mut top = TopK::new(k);
    for (key, doc, sure) in s.candidates(q) {
        let need_doc = !sure || (k > 0 && sort.needs_docs());
        let parsed: Option<Map<String, Value>> = if need_doc {
            match serde_json::from_slice(doc) {
                Ok(m) => Some(m),
                Err(_) => continue,
            }
        } else {
            None
        };
        if !sure && !parsed.as_ref().is_some_and(|m| matcher.matches(m)) {
            continue;
        }
        count += 1;
        if k > 0 {
            let cells = parsed.as_ref().map(|m| sort.key_of(m)).unwrap_or_default();
            if top.wants(&cells, key) {
                top.push(Hit { sort: cells, key: Arc::clone(key), doc: Arc::clone(doc) });
            }
        }
    }
    (count, top.into_sorted())
}

/// The background thread: indexes pending documents, compacts, checkpoints a long log. Holds
/// the store only while working, so dropping the last handle stops it.
fn background(store: Weak<SessionStore>) {
    loop {
        std::thread::sleep(REFRESH);
        let Some(store) = store.upgrade() else { return };
        if store.closed.load(Ordering::Acquire) {
            return;
        }
        for shard in &store.shards {
            drop(refresh_shard(shard, 4 * BATCH));
            if shard.read().needs_compaction() {
                shard.write().compact();
            }
        }
        if store.wal.len() > store.checkpoint_bytes.load(Ordering::Relaxed) {
            // A failed checkpoint leaves the log in place; the next round tries again.
            let _ = store.checkpoint();
        }
    }
}
