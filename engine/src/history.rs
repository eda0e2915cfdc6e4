//! Time travel: the table as it was at any version still in the log, the list of versions, and
//! bringing an old version back as a new commit (Delta's RESTORE).
//!
//! Invariants:
//! - The commits in the log are one contiguous run `lo..=newest`: retention deletes a prefix, in
//!   ascending order, and only after writing a checkpoint at the first version it keeps. So a
//!   version `v` can be rebuilt exactly when a checkpoint `c <= v` with `c + 1 >= lo` exists, or
//!   `lo == 0` (replay from the start).
//! - Rebuilding never writes: old states come from checkpoints and commits that are immutable
//!   once written, so a state computed once is cached and shared.
//! - A restore adds what the old version had and removes what it lacked, in one new commit; the
//!   next-key watermark only grows, so keys issued after the restored version are never reused.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use parking_lot::Mutex;
use serde::Serialize;

use crate::environment::{Environment, now_ms};
use crate::error::{EngineError, Result};
use crate::log::{self, Action, LOG_DIR, SegmentInfo, TableState};
use crate::storage::Storage;

/// Old states kept per environment handle (each is the segment list of one version).
const CACHED_STATES: usize = 32;

/// One committed version, as `versions` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VersionInfo {
    /// Table log version.
    pub version: u64,
    /// Commit time, epoch ms.
    pub timestamp: i64,
    /// What the commit did (`WRITE`, `RESTORE`, `ADD COLUMNS`, ...).
    pub operation: String,
    /// Records the commit added.
    pub rows_added: u64,
    /// Segments it added.
    pub segments_added: usize,
    /// Segments it removed (a restore).
    pub segments_removed: usize,
    /// First key it added, if any.
    pub key_start: Option<u64>,
    /// Key after the last it added, if any.
    pub key_end: Option<u64>,
}

/// What the log holds: its commit and checkpoint versions.
#[derive(Debug, Default)]
pub(crate) struct Listing {
    pub(crate) commits: BTreeSet<u64>,
    pub(crate) checkpoints: BTreeSet<u64>,
}

impl Listing {
    /// The oldest version that can be rebuilt (see the module invariants); `newest` when the
    /// listing is empty.
    pub(crate) fn oldest_restorable(&self, newest: u64) -> u64 {
        let lo = self.commits.first().copied().unwrap_or(newest);
        if lo == 0 {
            return 0;
        }
        self.checkpoints.iter().copied().find(|&c| c + 1 >= lo && c <= newest).unwrap_or(newest)
    }
}

/// Per-handle caches of parsed versions and rebuilt states.
#[derive(Default)]
pub(crate) struct History {
    infos: Mutex<BTreeMap<u64, VersionInfo>>,
    states: Mutex<Vec<Arc<TableState>>>,
}

impl History {
    /// Drops what is cached about versions below `oldest` (after retention removed them).
    pub(crate) fn forget_before(&self, oldest: u64) {
        self.infos.lock().retain(|&v, _| v >= oldest);
        self.states.lock().retain(|s| s.version >= oldest);
    }
}

fn version_of(name: &str, suffix: &str) -> Option<u64> {
    let digits = name.strip_suffix(suffix)?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit())).then(|| digits.parse().ok())?
}

pub(crate) fn listing(storage: &Storage) -> Result<Listing> {
    let mut out = Listing::default();
    for meta in storage.list(LOG_DIR)? {
        let rel = storage.relative(&meta.location);
        let Some(name) = rel.strip_prefix(LOG_DIR).map(|n| n.trim_start_matches('/')) else { continue };
        if let Some(v) = version_of(name, ".json") {
            out.commits.insert(v);
        } else if let Some(v) = version_of(name, ".checkpoint.parquet") {
            out.checkpoints.insert(v);
        }
    }
    Ok(out)
}

/// The time a commit records, epoch ms.
pub(crate) fn commit_time(body: &[u8]) -> Option<i64> {
    Some(describe(0, body).timestamp).filter(|&t| t > 0)
}

/// Parses what one commit did.
fn describe(version: u64, body: &[u8]) -> VersionInfo {
    let mut info = VersionInfo {
        version,
        timestamp: 0,
        operation: String::new(),
        rows_added: 0,
        segments_added: 0,
        segments_removed: 0,
        key_start: None,
        key_end: None,
    };
    for line in body.split(|b| *b == b'\n') {
        match serde_json::from_slice::<Action>(line) {
            Ok(Action::CommitInfo(ci)) => {
                info.timestamp = ci.get("timestamp").and_then(serde_json::Value::as_i64).unwrap_or(0);
                info.operation = ci.get("operation").and_then(|o| o.as_str()).unwrap_or_default().to_string();
            }
            Ok(Action::Add(add)) => {
                info.segments_added += 1;
                if let Ok(seg) = SegmentInfo::from_add(&add, version) {
                    info.rows_added += seg.rows();
                    info.key_start = Some(info.key_start.map_or(seg.start, |s| s.min(seg.start)));
                    info.key_end = Some(info.key_end.map_or(seg.end, |e| e.max(seg.end)));
                }
                if info.timestamp == 0 {
                    info.timestamp = add.modification_time;
                }
            }
            Ok(Action::Remove(_)) => info.segments_removed += 1,
            _ => {}
        }
    }
    info
}

impl Environment {
    /// The versions still in the log, oldest first, with what each commit did.
    pub fn versions(&self) -> Result<Vec<VersionInfo>> {
        let newest = self.refresh()?.version;
        let listing = listing(self.storage())?;
        let oldest = listing.oldest_restorable(newest);
        let mut infos = self.history().infos.lock();
        infos.retain(|&v, _| v >= oldest);
        for v in oldest..=newest {
            if infos.contains_key(&v) {
                continue;
            }
            let body = self
                .storage()
                .get(&log::version_path(v))?
                .ok_or(EngineError::VersionGone { version: v, oldest: self.oldest_restorable()? })?;
            infos.insert(v, describe(v, &body));
        }
        Ok(infos.values().cloned().collect())
    }

    /// The oldest version a read or restore can ask for.
    pub fn oldest_restorable(&self) -> Result<u64> {
        let newest = self.refresh()?.version;
        Ok(listing(self.storage())?.oldest_restorable(newest))
    }

    /// The version that was current at `ms` (epoch ms): the newest committed at or before it.
    pub fn version_as_of(&self, ms: i64) -> Result<u64> {
        let versions = self.versions()?;
        let at = versions.iter().take_while(|v| v.timestamp <= ms).last();
        match at {
            Some(v) => Ok(v.version),
            None => {
                let fmt = |t: i64| {
                    chrono::DateTime::from_timestamp_millis(t)
                        .map_or_else(|| t.to_string(), |d| d.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
                };
                Err(EngineError::BeforeHistory {
                    time: fmt(ms),
                    oldest: versions.first().map_or_else(|| "never".into(), |v| fmt(v.timestamp)),
                })
            }
        }
    }

    /// The table as it was at `version` (the current state when it is the newest).
    pub fn state_at(&self, version: u64) -> Result<Arc<TableState>> {
        let current = self.fresh_snapshot()?;
        if version == current.version {
            return Ok(current);
        }
        if version > current.version {
            let current = self.refresh()?;
            if version > current.version {
                return Err(EngineError::UnknownVersion { version, newest: current.version });
            }
            if version == current.version {
                return Ok(current);
            }
        }
        if let Some(s) = self.history().states.lock().iter().find(|s| s.version == version) {
            return Ok(s.clone());
        }
        let state = Arc::new(rebuild(self.storage(), version, current.version)?);
        let mut states = self.history().states.lock();
        if states.len() >= CACHED_STATES {
            states.remove(0);
        }
        states.push(state.clone());
        Ok(state)
    }

    /// Brings `version` back as a new commit: the segments and schema it had, with history kept
    /// and no key reused. Returns the new version.
    pub fn restore_version(&self, version: u64) -> Result<u64> {
        let target = self.state_at(version)?;
        self.restore_state(&target, &format!("version {version}")).map_err(|e| match e {
            EngineError::BadData(_) => {
                EngineError::VersionGone { version, oldest: self.oldest_restorable().unwrap_or(version) }
            }
            other => other,
        })
    }

    /// Commits `target`'s segments and schema as the table's new state (`from` says what it
    /// is, for the log). Every file it names must still exist. Returns the new version.
    pub fn restore_state(&self, target: &TableState, from: &str) -> Result<u64> {
        for seg in &target.segments {
            if self.storage().head(&seg.path)?.is_none() {
                return Err(EngineError::BadData(format!("cannot restore {from}: its file {} is gone", seg.path)));
            }
        }
        let state = self.commit(|state| {
            let now = now_ms();
            let params = serde_json::json!({"version": target.version, "from": from});
            let mut actions = vec![log::commit_info("RESTORE", now, params)];
            actions.push(log::metadata_action(
                &state.table_id,
                &target.schema,
                &state.columns,
                state.primary.as_deref(),
                now,
            ));
            let keep: BTreeSet<&str> = target.segments.iter().map(|s| s.path.as_str()).collect();
            let live: BTreeSet<&str> = state.segments.iter().map(|s| s.path.as_str()).collect();
            for s in state.segments.iter().filter(|s| !keep.contains(s.path.as_str())) {
                actions.push(Action::Remove(log::Remove {
                    path: s.path.clone(),
                    deletion_timestamp: Some(now),
                    data_change: true,
                }));
            }
            for s in target.segments.iter().filter(|s| !live.contains(s.path.as_str())) {
                actions.push(Action::Add(s.to_add(now)));
            }
            Ok(Some(actions))
        })?;
        Ok(state.version)
    }
}

/// Rebuilds the state at `version` from the newest usable checkpoint and the commits after it.
pub(crate) fn rebuild(storage: &Storage, version: u64, newest: u64) -> Result<TableState> {
    let listing = listing(storage)?;
    let oldest = listing.oldest_restorable(newest);
    let gone = || EngineError::VersionGone { version, oldest };
    if version < oldest {
        return Err(gone());
    }
    let base = listing.checkpoints.range(..=version).next_back().copied();
    let mut state = match base {
        Some(c) => crate::checkpoint::read(storage, c)?,
        None => {
            let body = storage.get(&log::version_path(0))?.ok_or_else(gone)?;
            let mut s = TableState::default();
            s.apply(0, &body)?;
            s
        }
    };
    for v in state.version + 1..=version {
        let body = storage.get(&log::version_path(v))?.ok_or_else(gone)?;
        state.apply(v, &body)?;
    }
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oldest_restorable_follows_the_log_and_checkpoints() {
        let l = |commits: &[u64], cps: &[u64]| Listing {
            commits: commits.iter().copied().collect(),
            checkpoints: cps.iter().copied().collect(),
        };
        assert_eq!(l(&[0, 1, 2], &[]).oldest_restorable(2), 0);
        assert_eq!(l(&[5, 6, 7], &[5]).oldest_restorable(7), 5);
        assert_eq!(l(&[5, 6, 7], &[4]).oldest_restorable(7), 4);
        assert_eq!(l(&[5, 6, 7], &[2, 6]).oldest_restorable(7), 6, "checkpoint 2 lacks commits 3 and 4");
        assert_eq!(l(&[5, 6, 7], &[]).oldest_restorable(7), 7);
        assert_eq!(version_of("00000000000000000012.json", ".json"), Some(12));
        assert_eq!(version_of("00000000000000000012.checkpoint.parquet", ".json"), None);
        assert_eq!(version_of("12.json", ".json"), None);
    }
}
