//! Key lookups (`/get`) and key ranges (`/range`) over the lake's segments.
//!
//! A get never scans: each key's segment comes from the key ranges in the table log (binary
//! search) and its row is `key - segment.start`, read with a row selection that the page index
//! narrows to the pages holding those rows. A range reads segment after segment, batch by batch.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::compute::interleave_record_batch;
use arrow::datatypes::{Schema as ArrowSchema, SchemaRef};
use m1_engine::segment::{SegmentRows, select_span};
use m1_engine::{EngineError, Environment, KEY, Property, Schema, TableState};

use crate::error::Result;

/// Rows per batch when streaming a range.
pub const RANGE_BATCH_ROWS: usize = 8192;

/// The columns a read returns: `_m1key` first, then the properties asked for in the order asked
/// (all of the schema, built-ins included, when `properties` is `None`).
pub fn output_schema(schema: &Schema, properties: Option<&[String]>) -> Result<SchemaRef> {
    let props: Vec<Property> = match properties {
        None => schema.all(),
        Some(names) => {
            let mut out = vec![schema.get(KEY).expect("built in")];
            for n in names {
                if n == KEY || out.iter().any(|p| &p.name == n) {
                    continue;
                }
                out.push(schema.get(n).ok_or_else(|| EngineError::UnknownProperty(n.clone()))?);
            }
            out
        }
    };
    Ok(Arc::new(ArrowSchema::new(props.iter().map(Property::field).collect::<Vec<_>>())))
}

/// Reads the records with keys `ids`, in the order asked; keys that do not exist are absent.
pub fn get(env: &Environment, ids: &[u64], properties: Option<&[String]>) -> Result<RecordBatch> {
    get_at(env, None, ids, properties)
}

/// The table state a read asks for: `version`, or the current one.
pub fn state_for(env: &Environment, version: Option<u64>) -> Result<Arc<TableState>> {
    Ok(match version {
        Some(v) => env.state_at(v)?,
        None => env.fresh_snapshot()?,
    })
}

/// [`get`] as the lake was at `version` (the current version when `None`).
pub fn get_at(
    env: &Environment,
    version: Option<u64>,
    ids: &[u64],
    properties: Option<&[String]>,
) -> Result<RecordBatch> {
    let state = state_for(env, version)?;
    let schema = output_schema(&state.schema, properties)?;
    get_in(env, &state, &schema, ids)
}

/// [`get`] against a given table state and output schema.
pub fn get_in(env: &Environment, state: &TableState, schema: &SchemaRef, ids: &[u64]) -> Result<RecordBatch> {
    // Distinct row offsets per segment, in key order.
    let mut by_segment: BTreeMap<usize, Vec<u64>> = BTreeMap::new();
    for &id in ids {
        if let Some(s) = state.segment_of(id) {
            by_segment.entry(s).or_default().push(id - state.segments[s].start);
        }
    }
    let mut batches = Vec::new();
    // key -> (batch, row), to put rows back in the order asked.
    let mut located: std::collections::HashMap<u64, (usize, usize)> = std::collections::HashMap::new();
    for (seg, mut offsets) in by_segment {
        offsets.sort_unstable();
        offsets.dedup();
        let info = &state.segments[seg];
        let open = env.segment_cache().get(env.storage(), info)?;
        let batch = open.read_rows(&offsets, schema)?;
        for (row, offset) in offsets.iter().enumerate() {
            located.insert(info.start + offset, (batches.len(), row));
        }
        batches.push(batch);
    }
    let picks: Vec<(usize, usize)> = ids.iter().filter_map(|id| located.get(id).copied()).collect();
    if batches.is_empty() {
        return Ok(RecordBatch::new_empty(schema.clone()));
    }
    let refs: Vec<&RecordBatch> = batches.iter().collect();
    Ok(interleave_record_batch(&refs, &picks)?)
}

/// Streams the records with keys in `start..end`, in key order, batch by batch.
pub fn range<'e>(env: &'e Environment, start: u64, end: u64, properties: Option<&[String]>) -> Result<Range<'e>> {
    range_at(env, None, start, end, properties)
}

/// [`range`] as the lake was at `version` (the current version when `None`).
pub fn range_at<'e>(
    env: &'e Environment,
    version: Option<u64>,
    start: u64,
    end: u64,
    properties: Option<&[String]>,
) -> Result<Range<'e>> {
    let state = state_for(env, version)?;
    let schema = output_schema(&state.schema, properties)?;
    let segments = state.segments_in(start, end);
    Ok(Range { env, state, schema, start, end, segments, current: None })
}

/// An iterator over the batches of a key range; it holds one segment's reader at a time.
pub struct Range<'e> {
    env: &'e Environment,
    state: Arc<TableState>,
    schema: SchemaRef,
    start: u64,
    end: u64,
    segments: std::ops::Range<usize>,
    current: Option<SegmentRows>,
}

impl Range<'_> {
    /// The schema of every batch.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn open_next(&mut self) -> Result<bool> {
        let Some(seg) = self.segments.next() else {
            return Ok(false);
        };
        let info = &self.state.segments[seg];
        let from = self.start.max(info.start) - info.start;
        let to = self.end.min(info.end) - info.start;
        let open = self.env.segment_cache().get(self.env.storage(), info)?;
        self.current = Some(open.read(select_span(from, to, info.rows()), &self.schema, RANGE_BATCH_ROWS)?);
        Ok(true)
    }
}

impl Iterator for Range<'_> {
    type Item = Result<RecordBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(rows) = &mut self.current {
                match rows.next() {
                    Some(Ok(b)) if b.num_rows() == 0 => continue,
                    Some(r) => return Some(r.map_err(Into::into)),
                    None => self.current = None,
                }
            }
            match self.open_next() {
                Ok(true) => {}
                Ok(false) => return None,
                Err(e) => return Some(Err(e)),
            }
        }
    }
}
