//! Delta checkpoints: the table state at one version as a Parquet file, so opening an environment
//! reads one file plus the few commits after it instead of replaying the whole log.
//!
//! Layout (Delta protocol, classic checkpoints): `_delta_log/<version>.checkpoint.parquet` with one
//! action per row in the columns `txn`, `add`, `remove`, `metaData`, `protocol`, and
//! `_delta_log/_last_checkpoint` naming the newest one. Invariant: a checkpoint is written only
//! after its version is committed, and `_last_checkpoint` only after the checkpoint file, so a
//! reader that finds `_last_checkpoint` always finds a complete checkpoint. A missing or unreadable
//! checkpoint is never fatal: the log is replayed from version 0 instead.

use std::sync::{Arc, LazyLock};

use arrow::datatypes::{DataType, Field, Fields, Schema as ArrowSchema, SchemaRef};
use bytes::Bytes;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde::{Deserialize, Serialize};

use crate::error::{EngineError, Result};
use crate::log::{self, Action, LOG_DIR, Protocol, TableState};
use crate::storage::Storage;

/// A checkpoint is written after every this many commits.
pub const CHECKPOINT_INTERVAL: u64 = 100;

/// The file naming the newest checkpoint.
pub(crate) const LAST_CHECKPOINT: &str = "_delta_log/_last_checkpoint";

#[derive(Debug, Serialize, Deserialize)]
struct LastCheckpoint {
    version: u64,
    size: u64,
}

pub(crate) fn checkpoint_path(version: u64) -> String {
    format!("{LOG_DIR}/{version:020}.checkpoint.parquet")
}

fn string_map() -> DataType {
    let entries = Field::new(
        "key_value",
        DataType::Struct(Fields::from(vec![
            Field::new("key", DataType::Utf8, false),
            Field::new("value", DataType::Utf8, true),
        ])),
        false,
    );
    DataType::Map(Arc::new(entries), false)
}

fn strukt(fields: Vec<Field>) -> DataType {
    DataType::Struct(Fields::from(fields))
}

/// The Arrow schema of a checkpoint file (the fields m1 writes).
static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    use DataType::{Boolean, Int32, Int64, Utf8};
    Arc::new(ArrowSchema::new(vec![
        Field::new(
            "txn",
            strukt(vec![
                Field::new("appId", Utf8, true),
                Field::new("version", Int64, true),
                Field::new("lastUpdated", Int64, true),
            ]),
            true,
        ),
        Field::new(
            "add",
            strukt(vec![
                Field::new("path", Utf8, true),
                Field::new("partitionValues", string_map(), true),
                Field::new("size", Int64, true),
                Field::new("modificationTime", Int64, true),
                Field::new("dataChange", Boolean, true),
                Field::new("stats", Utf8, true),
                Field::new("tags", string_map(), true),
            ]),
            true,
        ),
        Field::new(
            "remove",
            strukt(vec![
                Field::new("path", Utf8, true),
                Field::new("deletionTimestamp", Int64, true),
                Field::new("dataChange", Boolean, true),
            ]),
            true,
        ),
        Field::new(
            "metaData",
            strukt(vec![
                Field::new("id", Utf8, true),
                Field::new("name", Utf8, true),
                Field::new("description", Utf8, true),
                Field::new(
                    "format",
                    strukt(vec![Field::new("provider", Utf8, true), Field::new("options", string_map(), true)]),
                    true,
                ),
                Field::new("schemaString", Utf8, true),
                Field::new("partitionColumns", DataType::List(Arc::new(Field::new("element", Utf8, true))), true),
                Field::new("configuration", string_map(), true),
                Field::new("createdTime", Int64, true),
            ]),
            true,
        ),
        Field::new(
            "protocol",
            strukt(vec![Field::new("minReaderVersion", Int32, true), Field::new("minWriterVersion", Int32, true)]),
            true,
        ),
    ]))
});

/// The actions that recreate `state`.
pub(crate) fn state_actions(state: &TableState) -> Vec<Action> {
    let now = crate::environment::now_ms();
    let mut actions = vec![
        Action::Protocol(Protocol { min_reader_version: 1, min_writer_version: 2 }),
        log::metadata_action(&state.table_id, &state.schema, &state.columns, state.primary.as_deref(), now),
        log::next_key_action(state.next_key, now),
    ];
    actions.extend(state.segments.iter().map(|s| Action::Add(s.to_add(now))));
    actions
}

/// Writes a checkpoint of `state` (which must be the committed state at `state.version`).
pub fn write(storage: &Storage, state: &TableState) -> Result<()> {
    let actions = state_actions(state);
    let json = log::encode(&actions);
    let mut decoder = arrow::json::ReaderBuilder::new(SCHEMA.clone()).with_batch_size(8192).build(&json[..])?;
    let mut out = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut out, SCHEMA.clone(), None)?;
    for batch in &mut decoder {
        writer.write(&batch?)?;
    }
    writer.close()?;
    storage.put(&checkpoint_path(state.version), Bytes::from(out))?;
    let newer = read_last(storage).is_some_and(|last| last.version >= state.version);
    if !newer {
        let last = LastCheckpoint { version: state.version, size: actions.len() as u64 };
        storage.put(LAST_CHECKPOINT, Bytes::from(serde_json::to_vec(&last)?))?;
    }
    Ok(())
}

/// The version `_last_checkpoint` names, if any.
pub(crate) fn pointer(storage: &Storage) -> Option<u64> {
    read_last(storage).map(|l| l.version)
}

/// Points `_last_checkpoint` at the checkpoint of `state` (which must exist), even if older than
/// the one named now (storage DR cutting a log back).
pub(crate) fn write_pointer(storage: &Storage, state: &TableState) -> Result<()> {
    let last = LastCheckpoint { version: state.version, size: state_actions(state).len() as u64 };
    storage.put(LAST_CHECKPOINT, Bytes::from(serde_json::to_vec(&last)?))
}

fn read_last(storage: &Storage) -> Option<LastCheckpoint> {
    let bytes = storage.get(LAST_CHECKPOINT).ok()??;
    serde_json::from_slice(&bytes).ok()
}

/// The state at the newest checkpoint, or `None` when there is none (or it cannot be read).
pub fn load(storage: &Storage) -> Option<TableState> {
    let last = read_last(storage)?;
    read(storage, last.version).ok()
}

pub(crate) fn read(storage: &Storage, version: u64) -> Result<TableState> {
    let corrupt = |reason: String| EngineError::CorruptLog { version, reason };
    let bytes = storage.get(&checkpoint_path(version))?.ok_or_else(|| corrupt("checkpoint file is missing".into()))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)?.build()?;
    let mut json = Vec::new();
    {
        let mut writer = arrow::json::LineDelimitedWriter::new(&mut json);
        for batch in reader {
            writer.write(&batch?)?;
        }
        writer.finish()?;
    }
    let mut state = TableState::default();
    state.apply(version, &json)?;
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::SegmentInfo;
    use crate::schema::{Property, PropertyType, Schema};

    #[test]
    fn a_checkpoint_restores_the_state() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(dir.path().to_str().unwrap(), &Vec::new()).unwrap();
        let mut schema = Schema::default();
        let props = [Property::new("a.b", PropertyType::Date), Property::new("t", PropertyType::String).multi()];
        schema.add(&props, &[]).unwrap();
        let segments = (0..3)
            .map(|i| SegmentInfo {
                path: format!("lake/shard={i}/{i}.parquet"),
                shard: i,
                start: i as u64 * 10,
                end: i as u64 * 10 + 10,
                size: 99,
            })
            .collect();
        let state = TableState {
            version: 200,
            table_id: "tid".into(),
            schema: schema.clone(),
            columns: props.to_vec(),
            next_key: 45,
            segments,
            primary: Some("s3://b/p".into()),
        };
        write(&storage, &state).unwrap();
        let back = load(&storage).expect("checkpoint loads");
        assert_eq!((back.version, back.table_id.as_str(), back.next_key), (200, "tid", 45));
        assert_eq!(back.schema, schema);
        assert_eq!(back.columns, state.columns);
        assert_eq!(back.segments, state.segments);
        assert_eq!(back.primary, state.primary);
        // An older checkpoint never replaces a newer one in _last_checkpoint.
        write(&storage, &TableState { version: 100, ..state.clone() }).unwrap();
        assert_eq!(load(&storage).unwrap().version, 200);
    }
}
