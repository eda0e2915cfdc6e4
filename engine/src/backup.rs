//! Backups: named, immutable, consistent points of an environment, and environments made from
//! them.
//!
//! A backup is a directory: `backup.json` (the [`Backup`] manifest), `state.json` (the table state
//! at its version, as the actions of a Delta checkpoint, one per line), and the copies the
//! library adds of the data-store indexes (`stores/`) and session-store documents (`sessions/`).
//! A backup made in an environment lives in `<root>/backups/<id>/` and refers to the lake files
//! in place; [`Environment::copy_backup`] makes a deep copy elsewhere that holds the lake files
//! too (`lake/...`, same relative paths) and needs nothing from the source.
//!
//! Invariants:
//! - A backup's manifest is written with status `creating` before anything else and `complete`
//!   last, so an interrupted backup is never taken for a usable one, and `vacuum` already keeps
//!   its files while it is being made.
//! - `vacuum` never deletes a file a kept backup of this environment lists (see
//!   [`Environment::vacuum`]).
//! - An environment restored from a backup hands out keys above every key the backup's source
//!   had issued when the backup was taken (and above the source's current watermark when the
//!   source can still be read), so a key is never reused across a restore.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::environment::{CONFIG_FILE, EnvConfig, Environment, now_ms};
use crate::error::{EngineError, Result};
use crate::log::{self, Action, Protocol, TableState};
use crate::storage::{ObjectStoreOptions, Storage};

/// Directory of an environment's own backups, relative to its root.
pub const BACKUPS_DIR: &str = "backups";
/// The manifest file of a backup.
pub const MANIFEST: &str = "backup.json";
/// The table state file of a backup.
const STATE: &str = "state.json";

/// Where a backup is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackupStatus {
    /// Being written; not usable yet.
    Creating,
    /// Usable.
    Complete,
    /// Writing failed; the files kept are not usable.
    Failed,
}

/// One lake file a backup needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupFile {
    /// Path relative to the environment root (and to a deep copy's root).
    pub path: String,
    /// Size in bytes.
    pub size: u64,
}

/// A backup's manifest (`backup.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Backup {
    /// Unique id, sortable by creation time.
    pub id: String,
    /// The name given (the id when none was).
    pub name: String,
    /// Where it is in its life.
    pub status: BackupStatus,
    /// Creation time, epoch ms.
    pub created: i64,
    /// When it completed, epoch ms.
    #[serde(default)]
    pub completed: Option<i64>,
    /// The table version it holds.
    pub version: u64,
    /// Records at that version.
    pub rows: u64,
    /// First `_m1key` at that version.
    pub key_start: Option<u64>,
    /// Last `_m1key` at that version.
    pub key_end: Option<u64>,
    /// The next key the source would have handed out.
    pub next_key: u64,
    /// Bytes of lake files plus store and session copies.
    pub bytes: u64,
    /// Where the backup's own files are (the source environment for one made in place).
    pub location: String,
    /// The environment it was taken from.
    pub source: String,
    /// Whether it holds the lake files itself (a deep copy) or refers to the source's.
    pub deep: bool,
    /// Made by the schedule (`backup-interval-ms`) rather than on demand.
    #[serde(default)]
    pub scheduled: bool,
    /// The source's settings, for an environment restored from it.
    pub config: EnvConfig,
    /// The lake files of its version.
    pub files: Vec<BackupFile>,
    /// Data-store definitions (the library's `stores.json` entries) saved with it.
    #[serde(default)]
    pub stores: Vec<serde_json::Value>,
    /// Session stores saved with it.
    #[serde(default)]
    pub sessions: Vec<String>,
    /// Why it failed, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// An opened backup: its manifest, where its own files are and where its lake files are.
#[derive(Debug, Clone)]
pub struct BackupSource {
    /// The manifest.
    pub manifest: Backup,
    /// The backup's directory (`backup.json`, `state.json`, `stores/`, `sessions/`).
    pub root: Storage,
    /// Where its lake files are: the source environment, or the deep copy itself.
    pub data: Storage,
}

impl BackupSource {
    /// Opens the deep copy at `location`.
    pub fn open(location: &str, options: &ObjectStoreOptions) -> Result<BackupSource> {
        let root = Storage::open(location, options)?;
        let manifest = read_manifest(&root, "")?.ok_or_else(|| EngineError::UnknownBackup(location.to_string()))?;
        if manifest.status != BackupStatus::Complete {
            return Err(incomplete(&manifest));
        }
        Ok(BackupSource { manifest, data: root.clone(), root })
    }

    /// The table state the backup holds.
    pub fn state(&self) -> Result<TableState> {
        let body = self
            .root
            .get(STATE)?
            .ok_or_else(|| EngineError::BadData(format!("backup '{}' lacks {STATE}", self.manifest.id)))?;
        let mut state = TableState::default();
        state.apply(self.manifest.version, &body)?;
        Ok(state)
    }
}

fn incomplete(b: &Backup) -> EngineError {
    EngineError::BadParameter {
        name: "backup".into(),
        reason: format!("backup '{}' is {:?}, not complete: it cannot be restored", b.id, b.status).to_lowercase(),
    }
}

fn read_manifest(storage: &Storage, dir: &str) -> Result<Option<Backup>> {
    let path = if dir.is_empty() { MANIFEST.to_string() } else { format!("{dir}/{MANIFEST}") };
    match storage.get(&path)? {
        None => Ok(None),
        Some(b) => {
            Ok(Some(serde_json::from_slice(&b).map_err(|e| EngineError::BadData(format!("{path} is damaged: {e}")))?))
        }
    }
}

fn write_manifest(storage: &Storage, dir: &str, b: &Backup) -> Result<()> {
    let path = if dir.is_empty() { MANIFEST.to_string() } else { format!("{dir}/{MANIFEST}") };
    storage.put(&path, Bytes::from(serde_json::to_vec_pretty(b)?))
}

/// Checks a backup name: 1 to 128 printable characters.
fn check_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > 128 || name.chars().any(char::is_control) {
        return Err(EngineError::bad_parameter(
            "name",
            format!("a backup name is 1 to 128 printable characters, not {name:?}"),
        ));
    }
    Ok(())
}

/// Copies one file between storages: a hard link or a file-system copy when both are local
/// directories, else a read and a write.
pub fn copy_file(from: &Storage, from_path: &str, to: &Storage, to_path: &str) -> Result<u64> {
    if let (Some(a), Some(b)) = (from.local_root(), to.local_root()) {
        let (src, dst) = (a.join(from_path), b.join(to_path));
        if let Some(parent) = dst.parent() {
            std::fs::create_dir_all(parent).map_err(|e| EngineError::io(parent, e))?;
        }
        let size = std::fs::metadata(&src).map_err(|e| EngineError::io(&src, e))?.len();
        // Lake files are never changed once written, so a link is as good as a copy.
        if std::fs::hard_link(&src, &dst).is_err() {
            // A name of its own, so two copies of one file at once do not mix.
            let tmp = dst.with_extension(format!("m1-copy-{}-{:08x}", std::process::id(), rand::random::<u32>()));
            std::fs::copy(&src, &tmp).map_err(|e| EngineError::io(&src, e))?;
            std::fs::File::open(&tmp).and_then(|f| f.sync_all()).map_err(|e| EngineError::io(&tmp, e))?;
            std::fs::rename(&tmp, &dst).map_err(|e| EngineError::io(&dst, e))?;
        }
        return Ok(size);
    }
    let bytes = from
        .get(from_path)?
        .ok_or_else(|| EngineError::BadData(format!("{} lacks {from_path}, which the backup needs", from.url())))?;
    let size = bytes.len() as u64;
    to.put(to_path, bytes)?;
    Ok(size)
}

fn backup_id(now: i64) -> String {
    format!("{now:013x}{:08x}", rand::random::<u32>())
}

impl Environment {
    /// Starts a backup of the current version: writes its manifest (status `creating`) and
    /// table state under `backups/<id>/`. The caller adds store copies, then calls
    /// [`Environment::finish_backup`].
    pub fn begin_backup(&self, name: Option<&str>, scheduled: bool) -> Result<Backup> {
        let state = self.refresh()?;
        let now = now_ms();
        let id = backup_id(now);
        let name = name.unwrap_or(&id).to_string();
        check_name(&name)?;
        if self.backups()?.iter().any(|b| b.name == name) {
            return Err(EngineError::bad_parameter("name", format!("a backup named '{name}' exists already")));
        }
        let files: Vec<BackupFile> =
            state.segments.iter().map(|s| BackupFile { path: s.path.clone(), size: s.size }).collect();
        let backup = Backup {
            id: id.clone(),
            name,
            status: BackupStatus::Creating,
            created: now,
            completed: None,
            version: state.version,
            rows: state.segments.iter().map(|s| s.rows()).sum(),
            key_start: state.segments.first().map(|s| s.start),
            key_end: state.segments.iter().map(|s| s.end).max().map(|e| e - 1),
            next_key: state.next_key,
            bytes: files.iter().map(|f| f.size).sum(),
            location: self.storage().url().to_string(),
            source: self.storage().url().to_string(),
            deep: false,
            scheduled,
            config: self.config().clone(),
            files,
            stores: Vec::new(),
            sessions: Vec::new(),
            error: None,
        };
        let dir = self.backup_dir(&id);
        write_manifest(self.storage(), &dir, &backup)?;
        let body = log::encode(&crate::checkpoint::state_actions(&state));
        self.storage().put(&format!("{dir}/{STATE}"), body)?;
        Ok(backup)
    }

    /// Marks a backup complete (or failed, with `error`), recording what the caller added.
    pub fn finish_backup(&self, backup: &mut Backup, error: Option<String>) -> Result<()> {
        backup.status = if error.is_some() { BackupStatus::Failed } else { BackupStatus::Complete };
        backup.error = error;
        backup.completed = Some(now_ms());
        write_manifest(self.storage(), &self.backup_dir(&backup.id), backup)
    }

    /// The directory of backup `id`, relative to the root.
    pub fn backup_dir(&self, id: &str) -> String {
        format!("{BACKUPS_DIR}/{id}")
    }

    /// The environment's backups, oldest first.
    pub fn backups(&self) -> Result<Vec<Backup>> {
        let mut ids = std::collections::BTreeSet::new();
        for meta in self.storage().list(BACKUPS_DIR)? {
            let rel = self.storage().relative(&meta.location);
            if let Some(rest) = rel.strip_prefix(BACKUPS_DIR).map(|r| r.trim_start_matches('/'))
                && let Some((id, file)) = rest.split_once('/')
                && file == MANIFEST
            {
                ids.insert(id.to_string());
            }
        }
        let mut out = Vec::new();
        for id in ids {
            if let Some(b) = read_manifest(self.storage(), &self.backup_dir(&id))? {
                out.push(b);
            }
        }
        Ok(out)
    }

    /// The backup with this id or name.
    pub fn backup(&self, id: &str) -> Result<Backup> {
        self.backups()?
            .into_iter()
            .find(|b| b.id == id || b.name == id)
            .ok_or_else(|| EngineError::UnknownBackup(id.to_string()))
    }

    /// A complete backup of this environment, ready to restore from.
    pub fn backup_source(&self, id: &str) -> Result<BackupSource> {
        let manifest = self.backup(id)?;
        if manifest.status != BackupStatus::Complete {
            return Err(incomplete(&manifest));
        }
        let root = self.storage().sub(&self.backup_dir(&manifest.id))?;
        Ok(BackupSource { manifest, root, data: self.storage().clone() })
    }

    /// Deletes a backup (its lake files stay while the lake or another backup needs them;
    /// `vacuum` removes the rest).
    pub fn delete_backup(&self, id: &str) -> Result<Backup> {
        let b = self.backup(id)?;
        let dir = self.backup_dir(&b.id);
        // The manifest goes first, so a crash midway leaves no backup that looks usable.
        self.storage().delete(&format!("{dir}/{MANIFEST}"))?;
        self.storage().delete_prefix(&dir)?;
        Ok(b)
    }

    /// Copies backup `id` to `target` as a self-contained deep copy: manifest, state, store
    /// copies and every lake file. `target` must hold no backup.
    pub fn copy_backup(&self, id: &str, target: &Storage) -> Result<Backup> {
        let src = self.backup_source(id)?;
        if target.head(MANIFEST)?.is_some() {
            return Err(EngineError::BackupExists(target.url().to_string()));
        }
        let mut copy = src.manifest.clone();
        copy.status = BackupStatus::Creating;
        copy.deep = true;
        copy.location = target.url().to_string();
        write_manifest(target, "", &copy)?;
        let result = (|| -> Result<u64> {
            let mut bytes = 0;
            for f in &src.manifest.files {
                bytes += copy_file(&src.data, &f.path, target, &f.path)?;
            }
            for meta in src.root.list("")? {
                let rel = src.root.relative(&meta.location);
                if rel != MANIFEST {
                    bytes += copy_file(&src.root, &rel, target, &rel)?;
                }
            }
            Ok(bytes)
        })();
        match result {
            Ok(_) => {
                copy.status = BackupStatus::Complete;
                copy.completed = Some(now_ms());
                write_manifest(target, "", &copy)?;
                Ok(copy)
            }
            Err(e) => {
                copy.status = BackupStatus::Failed;
                copy.error = Some(e.to_string());
                let _ = write_manifest(target, "", &copy);
                Err(e)
            }
        }
    }

    /// Creates a new environment at `location` holding exactly the backup's version: its lake
    /// files are linked or copied, its table log starts with one commit of that state. Keys
    /// continue above `next_key_floor` and the backup's own watermark.
    pub fn restore_new(
        src: &BackupSource,
        location: &str,
        options: &ObjectStoreOptions,
        next_key_floor: u64,
    ) -> Result<Environment> {
        let storage = Storage::open(location, options)?;
        if storage.head(&log::version_path(0))?.is_some() || storage.head(crate::checkpoint::LAST_CHECKPOINT)?.is_some()
        {
            return Err(EngineError::EnvironmentExists(storage.url().to_string()));
        }
        let state = src.state()?;
        for seg in &state.segments {
            copy_file(&src.data, &seg.path, &storage, &seg.path)?;
        }
        let now = now_ms();
        let config =
            EnvConfig { id: uuid::Uuid::new_v4().simple().to_string(), created: now, ..src.manifest.config.clone() };
        let next_key = state.next_key.max(next_key_floor).max(src.manifest.next_key);
        let mut actions = vec![
            log::commit_info(
                "CREATE TABLE",
                now,
                serde_json::json!({
                    crate::environment::CONFIG_PARAM: config,
                    "m1.restoredFrom": {"backup": src.manifest.id, "source": src.manifest.source,
                                        "version": src.manifest.version},
                }),
            ),
            Action::Protocol(Protocol { min_reader_version: 1, min_writer_version: 2 }),
            log::metadata_action(&config.id, &state.schema, &state.columns, None, now),
            log::next_key_action(next_key, now),
        ];
        actions.extend(state.segments.iter().map(|s| Action::Add(s.to_add(now))));
        if !storage.put_if_absent(&log::version_path(0), log::encode(&actions))? {
            return Err(EngineError::EnvironmentExists(storage.url().to_string()));
        }
        storage.put(CONFIG_FILE, Bytes::from(serde_json::to_vec_pretty(&config)?))?;
        Environment::open_with(location, options)
    }
}
