//! The table log: the subset of the Delta Lake protocol m1 writes and reads.
//!
//! Versions are JSON files `_delta_log/<20-digit version>.json`, one action per line, created
//! with put-if-absent so two writers can never both create the same version (optimistic
//! concurrency). m1 uses these actions:
//! - `protocol` (reader 1, writer 2) and `metaData` (Delta schema = every column ever written;
//!   `configuration["m1.schema"]` = the m1 schema, so schema changes are atomic log commits);
//! - `add` for each Parquet segment, tagged with `m1.shard`, `m1.keyStart`, `m1.keyEnd`;
//! - `txn` with `appId = "m1.next"`: its `version` is the next `_m1key` to hand out. Reserving
//!   keys is a commit of a larger `txn` version, so concurrent writers get disjoint key ranges
//!   before they write any data and never rewrite data after losing a race;
//! - `commitInfo` with the operation name, for people reading the log.

use std::collections::HashMap;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::error::{EngineError, Result};
use crate::schema::{Property, Schema};
use crate::storage::Storage;

/// Directory of the table log, relative to the environment root.
pub const LOG_DIR: &str = "_delta_log";
/// Application id of the `txn` action that carries the next key.
pub const NEXT_KEY_APP: &str = "m1.next";
/// Configuration key of the m1 schema inside `metaData`.
const SCHEMA_CONF: &str = "m1.schema";
/// Configuration key of the columns ever written (m1's view of the Delta schema).
const COLUMNS_CONF: &str = "m1.columns";
/// Configuration key of the location that may commit (storage DR): every other location holding
/// this log is a replica or a fenced former primary, and refuses commits.
const PRIMARY_CONF: &str = "m1.primary";

/// One line of a log version.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Action {
    /// Reader/writer protocol versions.
    Protocol(Protocol),
    /// Table metadata.
    MetaData(Metadata),
    /// A data file joins the table.
    Add(Add),
    /// A data file leaves the table.
    Remove(Remove),
    /// Application transaction watermark.
    Txn(Txn),
    /// Free-form information about the commit.
    CommitInfo(serde_json::Value),
    /// Actions m1 does not use are kept out of its state.
    #[serde(untagged)]
    Other(serde_json::Value),
}

/// The `protocol` action.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Protocol {
    /// Minimum reader version.
    pub min_reader_version: i32,
    /// Minimum writer version.
    pub min_writer_version: i32,
}

/// The `metaData` action.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Metadata {
    /// Table id.
    pub id: String,
    /// Storage format.
    pub format: FileFormat,
    /// Delta schema as a JSON string.
    pub schema_string: String,
    /// No partition columns: shards are directories named in each `add`.
    pub partition_columns: Vec<String>,
    /// m1 keeps its schema here.
    pub configuration: HashMap<String, String>,
    /// Creation time in epoch ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_time: Option<i64>,
}

/// The `format` of `metaData`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FileFormat {
    /// Always `parquet`.
    pub provider: String,
    /// Unused options.
    pub options: HashMap<String, String>,
}

/// The `add` action.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Add {
    /// Path relative to the table root.
    pub path: String,
    /// Empty: m1 does not partition by column.
    pub partition_values: HashMap<String, Option<String>>,
    /// File size in bytes.
    pub size: i64,
    /// Epoch ms.
    pub modification_time: i64,
    /// Always true for appends.
    pub data_change: bool,
    /// Delta statistics JSON (row count and `_m1key` bounds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats: Option<String>,
    /// m1's shard and key range.
    #[serde(default)]
    pub tags: HashMap<String, String>,
}

/// The `remove` action.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Remove {
    /// Path relative to the table root.
    pub path: String,
    /// Epoch ms.
    #[serde(default)]
    pub deletion_timestamp: Option<i64>,
    /// Whether data changed.
    pub data_change: bool,
}

/// The `txn` action.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Txn {
    /// Application id.
    pub app_id: String,
    /// Application version: for `m1.next`, the next key.
    pub version: i64,
    /// Epoch ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_updated: Option<i64>,
}

/// A committed segment as the state knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentInfo {
    /// Path relative to the environment root.
    pub path: String,
    /// Shard the segment belongs to.
    pub shard: u32,
    /// First key (inclusive).
    pub start: u64,
    /// Last key + 1.
    pub end: u64,
    /// File size in bytes.
    pub size: u64,
}

impl SegmentInfo {
    /// Number of records in the segment (keys are contiguous).
    pub fn rows(&self) -> u64 {
        self.end - self.start
    }

    /// The `add` action that commits this segment.
    pub fn to_add(&self, now_ms: i64) -> Add {
        let tags = HashMap::from([
            ("m1.shard".to_string(), self.shard.to_string()),
            ("m1.keyStart".to_string(), self.start.to_string()),
            ("m1.keyEnd".to_string(), self.end.to_string()),
        ]);
        let stats = serde_json::json!({
            "numRecords": self.rows(),
            "minValues": {"_m1key": self.start},
            "maxValues": {"_m1key": self.end - 1},
            "nullCount": {"_m1key": 0},
        });
        Add {
            path: self.path.clone(),
            partition_values: HashMap::new(),
            size: self.size as i64,
            modification_time: now_ms,
            data_change: true,
            stats: Some(stats.to_string()),
            tags,
        }
    }

    pub(crate) fn from_add(add: &Add, version: u64) -> Result<SegmentInfo> {
        let tag = |name: &str| -> Result<u64> {
            add.tags.get(name).and_then(|v| v.parse().ok()).ok_or_else(|| EngineError::CorruptLog {
                version,
                reason: format!("add of '{}' lacks a numeric tag '{name}'", add.path),
            })
        };
        Ok(SegmentInfo {
            path: add.path.clone(),
            shard: tag("m1.shard")? as u32,
            start: tag("m1.keyStart")?,
            end: tag("m1.keyEnd")?,
            size: add.size as u64,
        })
    }
}

/// The table state after replaying the log up to `version`.
#[derive(Debug, Clone, Default)]
pub struct TableState {
    /// Last version applied.
    pub version: u64,
    /// Table id from `metaData`.
    pub table_id: String,
    /// The m1 schema.
    pub schema: Schema,
    /// Every column ever written (the Delta schema).
    pub columns: Vec<Property>,
    /// The next key to hand out.
    pub next_key: u64,
    /// Live segments, sorted by first key.
    pub segments: Vec<SegmentInfo>,
    /// The only location that may commit, once storage DR has named one.
    pub primary: Option<String>,
}

/// Path of a log version file.
pub fn version_path(version: u64) -> String {
    format!("{LOG_DIR}/{version:020}.json")
}

/// Builds the `metaData` action for a schema.
pub fn metadata_action(
    table_id: &str,
    schema: &Schema,
    columns: &[Property],
    primary: Option<&str>,
    created_ms: i64,
) -> Action {
    let mut all = Schema::builtins().to_vec();
    all.extend(columns.iter().cloned());
    let mut configuration = HashMap::from([
        (SCHEMA_CONF.to_string(), serde_json::to_string(schema.properties()).expect("schema serializes")),
        (COLUMNS_CONF.to_string(), serde_json::to_string(columns).expect("columns serialize")),
    ]);
    if let Some(p) = primary {
        configuration.insert(PRIMARY_CONF.to_string(), p.to_string());
    }
    Action::MetaData(Metadata {
        id: table_id.to_string(),
        format: FileFormat { provider: "parquet".into(), options: HashMap::new() },
        schema_string: Schema::delta_schema_string(&all),
        partition_columns: vec![],
        configuration,
        created_time: Some(created_ms),
    })
}

/// The `txn` action recording the next key.
pub fn next_key_action(next: u64, now_ms: i64) -> Action {
    Action::Txn(Txn { app_id: NEXT_KEY_APP.into(), version: next as i64, last_updated: Some(now_ms) })
}

/// A `commitInfo` action naming the operation.
pub fn commit_info(operation: &str, now_ms: i64, extra: serde_json::Value) -> Action {
    Action::CommitInfo(serde_json::json!({
        "timestamp": now_ms,
        "operation": operation,
        "operationParameters": extra,
        "engineInfo": concat!("m1/", env!("CARGO_PKG_VERSION")),
    }))
}

/// Serializes a commit: one JSON action per line.
pub fn encode(actions: &[Action]) -> Bytes {
    let mut out = Vec::with_capacity(256 * actions.len());
    for a in actions {
        serde_json::to_writer(&mut out, a).expect("actions serialize");
        out.push(b'\n');
    }
    Bytes::from(out)
}

impl TableState {
    /// Applies one version's actions.
    pub fn apply(&mut self, version: u64, body: &[u8]) -> Result<()> {
        let corrupt = |reason: String| EngineError::CorruptLog { version, reason };
        let mut added = Vec::new();
        let mut removed = Vec::new();
        for (i, line) in body.split(|b| *b == b'\n').enumerate() {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let action: Action = serde_json::from_slice(line).map_err(|e| corrupt(format!("line {}: {e}", i + 1)))?;
            match action {
                Action::MetaData(m) => {
                    self.table_id = m.id;
                    let conf = |k: &str| -> Result<Vec<Property>> {
                        match m.configuration.get(k) {
                            Some(s) => serde_json::from_str(s).map_err(|e| corrupt(format!("{k}: {e}"))),
                            None => Ok(Vec::new()),
                        }
                    };
                    let mut schema = Schema::default();
                    let props = conf(SCHEMA_CONF)?;
                    self.columns = conf(COLUMNS_CONF)?;
                    schema.add(&props, &self.columns).map_err(|e| corrupt(e.to_string()))?;
                    self.schema = schema;
                    self.primary = m.configuration.get(PRIMARY_CONF).cloned();
                }
                Action::Txn(t) if t.app_id == NEXT_KEY_APP => {
                    self.next_key = self.next_key.max(t.version.max(0) as u64);
                }
                Action::Add(a) => added.push(SegmentInfo::from_add(&a, version)?),
                Action::Remove(r) => removed.push(r.path),
                Action::Protocol(p) => {
                    if p.min_reader_version > 1 {
                        return Err(corrupt(format!(
                            "needs Delta reader version {}; m1 reads version 1",
                            p.min_reader_version
                        )));
                    }
                }
                Action::Txn(_) | Action::CommitInfo(_) | Action::Other(_) => {}
            }
        }
        if !removed.is_empty() {
            self.segments.retain(|s| !removed.contains(&s.path));
        }
        for seg in added {
            self.next_key = self.next_key.max(seg.end);
            let at = self.segments.partition_point(|s| s.start < seg.start);
            self.segments.insert(at, seg);
        }
        self.version = version;
        Ok(())
    }

    /// Reads every version after `self.version` that exists, in order.
    ///
    /// Versions are dense, so reading stops at the first missing one; a version being written by
    /// another process becomes visible only once complete (put-if-absent is atomic).
    pub fn catch_up(&mut self, storage: &Storage) -> Result<bool> {
        let mut advanced = false;
        while let Some(body) = storage.get(&version_path(self.version + 1))? {
            self.apply(self.version + 1, &body)?;
            advanced = true;
        }
        Ok(advanced)
    }

    /// Loads the state from the newest checkpoint and the commits after it, or by replaying
    /// the log from version 0 when there is no usable checkpoint.
    pub fn load(storage: &Storage) -> Result<Option<TableState>> {
        let mut state = match crate::checkpoint::load(storage) {
            Some(state) => state,
            None => {
                let Some(body) = storage.get(&version_path(0))? else { return Ok(None) };
                let mut state = TableState::default();
                state.apply(0, &body)?;
                state
            }
        };
        state.catch_up(storage)?;
        Ok(Some(state))
    }

    /// The segment holding `key`, if any.
    pub fn segment_of(&self, key: u64) -> Option<usize> {
        let i = self.segments.partition_point(|s| s.start <= key);
        (i > 0 && key < self.segments[i - 1].end).then(|| i - 1)
    }

    /// Indices of the segments overlapping `[start, end)`, in key order.
    pub fn segments_in(&self, start: u64, end: u64) -> std::ops::Range<usize> {
        if start >= end {
            return 0..0;
        }
        let first = self.segments.partition_point(|s| s.end <= start);
        let last = self.segments.partition_point(|s| s.start < end);
        first..last.max(first)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(start: u64, end: u64) -> SegmentInfo {
        SegmentInfo { path: format!("lake/shard=0/{start}.parquet"), shard: 0, start, end, size: 10 }
    }

    #[test]
    fn replay_tracks_segments_and_next_key() {
        let mut st = TableState::default();
        let v0 = encode(&[
            Action::Protocol(Protocol { min_reader_version: 1, min_writer_version: 2 }),
            metadata_action("t", &Schema::default(), &[], None, 0),
            next_key_action(0, 0),
        ]);
        st.apply(0, &v0).unwrap();
        st.apply(1, &encode(&[next_key_action(30, 0)])).unwrap();
        st.apply(2, &encode(&[Action::Add(seg(10, 20).to_add(0)), Action::Add(seg(0, 10).to_add(0))])).unwrap();
        assert_eq!(st.next_key, 30);
        assert_eq!(st.segments, vec![seg(0, 10), seg(10, 20)]);
        assert_eq!(st.segment_of(0), Some(0));
        assert_eq!(st.segment_of(19), Some(1));
        assert_eq!(st.segment_of(20), None);
        assert_eq!(st.segments_in(5, 15), 0..2);
        assert_eq!(st.segments_in(20, 30), 2..2);
        assert_eq!(st.segments_in(15, 16), 1..2);
        assert_eq!(st.segments_in(15, 5), 0..0);
    }

    #[test]
    fn unknown_actions_are_ignored_and_bad_lines_are_errors() {
        let mut st = TableState::default();
        st.apply(0, b"{\"cdc\":{\"path\":\"x\"}}\n").unwrap();
        let err = st.apply(1, b"{not json").unwrap_err();
        assert!(err.to_string().contains("table log version 1: line 1"), "{err}");
    }
}
