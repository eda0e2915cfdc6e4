//! Backups and restore across the whole environment: the lake's part comes from the engine
//! ([`m1_engine::backup`]); this adds the data-store indexes and session-store documents that
//! match it, the schedule, and restoring all of it.
//!
//! A backup's directory holds `stores/<store>/...` (each standard store's index files, copied
//! while this process's syncs of it wait) and `sessions/<store>/` (each session store's documents
//! at one instant). Data stores are derived from the lake, so a store copy taken a moment after
//! the lake's version may hold a few later records: queries of the restored environment leave
//! out every record its lake lacks, and a sync indexes what the copy misses.

use std::path::{Path, PathBuf};

use m1_engine::backup::{Backup, BackupSource, BackupStatus};
use m1_engine::storage::ObjectStoreOptions;
use m1_engine::{EngineError, Storage};
use serde_json::{Value, json};

use crate::error::Result;
use crate::{Environment, StoreDef};

/// Where to restore an environment in place from.
#[derive(Debug, Clone)]
pub enum RestorePoint {
    /// A table version still in the log.
    Version(u64),
    /// A backup of this environment, by id or name.
    Backup(String),
}

/// Copies local directory `dir` to `prefix` of `storage`.
fn upload(dir: &Path, storage: &Storage, prefix: &str) -> Result<u64> {
    if let Some(root) = storage.local_root() {
        m1_query::store::copy_tree(dir, &root.join(prefix))?;
        return Ok(m1_query::store::indexer::dir_bytes(dir));
    }
    let mut bytes = 0;
    for e in std::fs::read_dir(dir).map_err(|e| EngineError::Io { path: dir.into(), source: e })?.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        let rel = format!("{prefix}/{name}");
        if e.path().is_dir() {
            bytes += upload(&e.path(), storage, &rel)?;
        } else if !name.ends_with(".lock") {
            let body = std::fs::read(e.path()).map_err(|err| EngineError::Io { path: e.path(), source: err })?;
            bytes += body.len() as u64;
            storage.put(&rel, body.into())?;
        }
    }
    Ok(bytes)
}

/// The local directory holding `prefix` of `storage`: the directory itself when local, else a
/// download into `scratch`.
fn local_copy(storage: &Storage, prefix: &str, scratch: &Path) -> Result<PathBuf> {
    if let Some(root) = storage.local_root() {
        return Ok(root.join(prefix));
    }
    let dest = scratch.join(prefix);
    for meta in storage.list(prefix)? {
        let rel = storage.relative(&meta.location);
        let to = scratch.join(&rel);
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent).map_err(|e| EngineError::Io { path: parent.into(), source: e })?;
        }
        let body = storage.get(&rel)?.unwrap_or_default();
        std::fs::write(&to, &body).map_err(|e| EngineError::Io { path: to.clone(), source: e })?;
    }
    std::fs::create_dir_all(&dest).map_err(|e| EngineError::Io { path: dest.clone(), source: e })?;
    Ok(dest)
}

impl Environment {
    /// Takes a backup now (`backup/create`): the current version of the lake, a copy of every
    /// data store and the documents of every session store, without stopping writers.
    pub fn backup_create(&self, name: Option<&str>) -> Result<Backup> {
        self.backup_with(name, false)
    }

    fn backup_with(&self, name: Option<&str>, scheduled: bool) -> Result<Backup> {
        let engine = self.engine();
        let mut backup = engine.begin_backup(name, scheduled)?;
        let result = (|| -> Result<()> {
            let root = engine.storage().sub(&engine.backup_dir(&backup.id))?;
            let scratch = tempfile::tempdir().map_err(|e| EngineError::Io { path: std::env::temp_dir(), source: e })?;
            for def in m1_query::store::registry::load(engine.storage())? {
                let prefix = format!("stores/{}", def.name);
                backup.bytes += self.stores().with_files(engine, &def.name, |dir| match dir {
                    Some(dir) => upload(dir, &root, &prefix),
                    None => Ok(0),
                })?;
                backup.stores.push(serde_json::to_value(&def).unwrap_or(Value::Null));
            }
            for info in self.sessions().list()? {
                let dest = scratch.path().join(&info.name);
                self.sessions().export(&info.name, &dest)?;
                backup.bytes += upload(&dest, &root, &format!("sessions/{}", info.name))?;
                backup.sessions.push(info.name);
            }
            Ok(())
        })();
        let error = result.as_ref().err().map(ToString::to_string);
        engine.finish_backup(&mut backup, error)?;
        result.map(|()| backup)
    }

    /// The backups of this environment, oldest first (`backup/list`).
    pub fn backup_list(&self) -> Result<Vec<Backup>> {
        Ok(self.engine().backups()?)
    }

    /// One backup by id or name (`backup/get`).
    pub fn backup_get(&self, id: &str) -> Result<Backup> {
        Ok(self.engine().backup(id)?)
    }

    /// Deletes a backup (`backup/delete`).
    pub fn backup_delete(&self, id: &str) -> Result<Backup> {
        Ok(self.engine().delete_backup(id)?)
    }

    /// Copies a backup to another location as a self-contained deep copy (`backup/copy`).
    pub fn backup_copy(&self, id: &str, to: &str, options: &ObjectStoreOptions) -> Result<Backup> {
        let target = Storage::open(to, options)?;
        Ok(self.engine().copy_backup(id, &target)?)
    }

    /// Takes a scheduled backup if `backup-interval-ms` has passed since the last one, then
    /// deletes scheduled backups beyond `backup-keep-count` or older than `backup-keep-age-ms`.
    /// Returns the backup taken, if any. `m1 serve` calls this for its open environments.
    pub fn backup_tick(&self) -> Result<Option<Backup>> {
        use m1_engine::system::{BACKUP_INTERVAL, BACKUP_KEEP_AGE, BACKUP_KEEP_COUNT};
        let params = self.engine().system()?;
        let int = |k: &str| params.get(k).and_then(Value::as_i64).unwrap_or(0).max(0);
        let interval = int(BACKUP_INTERVAL);
        if interval == 0 {
            return Ok(None);
        }
        let now = m1_engine::environment::now_ms();
        let scheduled: Vec<Backup> = self.backup_list()?.into_iter().filter(|b| b.scheduled).collect();
        let due = scheduled.iter().map(|b| b.created).max().is_none_or(|last| now - last >= interval);
        let taken = if due { Some(self.backup_with(None, true)?) } else { None };
        let mut kept: Vec<Backup> =
            self.backup_list()?.into_iter().filter(|b| b.scheduled && b.status == BackupStatus::Complete).collect();
        kept.sort_by_key(|b| std::cmp::Reverse(b.created));
        let (count, age) = (int(BACKUP_KEEP_COUNT) as usize, int(BACKUP_KEEP_AGE));
        for (i, b) in kept.iter().enumerate() {
            if (count > 0 && i >= count) || (age > 0 && now - b.created > age) {
                self.backup_delete(&b.id)?;
            }
        }
        Ok(taken)
    }

    /// Brings an old state back as a new commit (`restore`): a version of the log, or a backup
    /// of this environment, whose session stores then replace the current ones. History is
    /// kept, no key is reused, and the data stores answer for the restored records only.
    pub fn restore(&self, point: &RestorePoint) -> Result<Value> {
        let engine = self.engine();
        let (version, backup) = match point {
            RestorePoint::Version(v) => (*v, None),
            RestorePoint::Backup(id) => {
                let src = engine.backup_source(id)?;
                (src.manifest.version, Some(src))
            }
        };
        let committed = match &backup {
            // The backup's own state, so a backup older than the log's history still restores.
            Some(src) if engine.oldest_restorable()? > version => {
                let state = src.state()?;
                engine.restore_state(&state, &format!("backup {}", src.manifest.id))?
            }
            _ => engine.restore_version(version)?,
        };
        let mut sessions = Vec::new();
        if let Some(src) = &backup {
            let scratch = tempfile::tempdir().map_err(|e| EngineError::Io { path: std::env::temp_dir(), source: e })?;
            for name in &src.manifest.sessions {
                let dir = local_copy(&src.root, &format!("sessions/{name}"), scratch.path())?;
                self.sessions().import(name, &dir)?;
                sessions.push(name.clone());
            }
        }
        let documents = self.stores().sync(engine)?;
        Ok(json!({"restoredVersion": version, "version": committed, "sessionStores": sessions,
                  "documentsIndexed": documents}))
    }

    /// Creates a new environment at `location` from a backup (ClickHouse's "new service from a
    /// backup"): the lake at the backup's version, its data stores and session stores.
    pub fn restore_new(
        src: &BackupSource,
        location: &str,
        options: &ObjectStoreOptions,
        next_key_floor: u64,
    ) -> Result<Environment> {
        let engine = m1_engine::Environment::restore_new(src, location, options, next_key_floor)?;
        let env = Environment::from_engine(engine);
        env.install_parts(src)?;
        Ok(env)
    }

    /// Puts a backup's data stores and session stores into this (just restored) environment.
    pub fn install_parts(&self, src: &BackupSource) -> Result<()> {
        let scratch = tempfile::tempdir().map_err(|e| EngineError::Io { path: std::env::temp_dir(), source: e })?;
        for def in &src.manifest.stores {
            let def: StoreDef = serde_json::from_value(def.clone()).map_err(EngineError::from)?;
            let prefix = format!("stores/{}", def.name);
            let has_files = !src.root.list(&prefix)?.is_empty();
            let dir = if has_files { Some(local_copy(&src.root, &prefix, scratch.path())?) } else { None };
            self.stores().install(self.engine(), def, dir.as_deref())?;
        }
        for name in &src.manifest.sessions {
            let dir = local_copy(&src.root, &format!("sessions/{name}"), scratch.path())?;
            self.sessions().import(name, &dir)?;
        }
        self.stores().sync(self.engine())?;
        Ok(())
    }
}
