//! Bringing a store shard up to date with the lake.
//!
//! Invariants:
//! - Each lake segment belongs to exactly one shard of a store ([`shard_of`], a hash of its first
//!   key, so the answer never changes as segments are added).
//! - A segment is indexed whole or not at all: its documents and the record that it is indexed
//!   (its key range in the commit payload of the generation holding it) are one tantivy commit.
//!   A crash mid-indexing therefore loses only uncommitted work, and the next sync redoes it.
//! - A shard's indexed key ranges are the union of its generations' payloads; a segment whose
//!   range is covered is never indexed again, so a record appears once.
//! - A generation's schema is fixed. When the lake schema gains a property, the next segments
//!   go to a new generation whose schema has it; older generations simply lack the field.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use m1_engine::segment::select_span;
use m1_engine::{Environment, SegmentInfo, TableState};
use serde::{Deserialize, Serialize};
use tantivy::{IndexWriter, TantivyDocument};

use super::fields::{covers, documents};
use super::shard::IndexShard;
use crate::error::{QueryError, Result};

/// Rows read per batch while indexing.
const INDEX_BATCH_ROWS: usize = 8192;

/// Indexing memory per writer thread.
const WRITER_MEMORY_PER_THREAD: usize = 64 << 20;

/// Rows after which a long backfill commits, so a crash loses at most this much work.
const COMMIT_EVERY_ROWS: u64 = 2_000_000;

/// The shard (of `shards`) a segment belongs to.
pub fn shard_of(segment: &SegmentInfo, shards: u32) -> u32 {
    ((segment.start.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 33) % u64::from(shards.max(1))) as u32
}

/// Sorted, disjoint, non-adjacent key ranges `[start, end)`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRanges(Vec<(u64, u64)>);

impl KeyRanges {
    /// Whether `[start, end)` lies inside one range.
    pub fn covers(&self, start: u64, end: u64) -> bool {
        let i = self.0.partition_point(|r| r.1 < end);
        self.0.get(i).is_some_and(|r| r.0 <= start && end <= r.1)
    }

    /// Adds `[start, end)`, merging with neighbours.
    pub fn insert(&mut self, start: u64, end: u64) {
        self.0.push((start, end));
        self.0.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(self.0.len());
        for &(s, e) in &self.0 {
            match merged.last_mut() {
                Some(last) if s <= last.1 => last.1 = last.1.max(e),
                _ => merged.push((s, e)),
            }
        }
        self.0 = merged;
    }

    /// Whether every range of `other` lies inside one of these.
    pub fn contains_all(&self, other: &KeyRanges) -> bool {
        other.0.iter().all(|&(s, e)| self.covers(s, e))
    }

    /// The ranges, sorted.
    pub fn ranges(&self) -> &[(u64, u64)] {
        &self.0
    }

    /// Adds every range of `other`.
    pub fn extend(&mut self, other: &KeyRanges) {
        for &(s, e) in &other.0 {
            self.insert(s, e);
        }
    }
}

/// What a generation's commit payload records.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Payload {
    /// Key ranges of the lake segments indexed in this generation.
    pub indexed: KeyRanges,
}

impl Payload {
    /// Reads a commit payload; no payload (a fresh index) means nothing indexed.
    pub fn parse(text: Option<&str>) -> Result<Payload> {
        match text {
            None => Ok(Payload::default()),
            Some(t) => serde_json::from_str(t)
                .map_err(|e| QueryError::StoreDamaged(format!("unreadable commit payload '{t}': {e}"))),
        }
    }
}

/// Indexes the lake segments of `state` that belong to this shard and are not indexed yet,
/// using `threads` threads. Returns the number of documents added. If another process holds
/// the shard's writer, does nothing: that process is indexing the same segments.
pub fn sync_shard(env: &Environment, state: &TableState, shard: &IndexShard, threads: usize) -> Result<u64> {
    let _one_sync = shard.sync_lock.lock();
    let mut indexed = KeyRanges::default();
    let generations = shard.rescan()?;
    for g in &generations {
        indexed.extend(&g.payload()?.indexed);
    }
    let todo: Vec<&SegmentInfo> = state
        .segments
        .iter()
        .filter(|s| shard_of(s, shard.of) == shard.number && !indexed.covers(s.start, s.end))
        .collect();
    if todo.is_empty() {
        return Ok(0);
    }
    let properties = state.schema.all();
    let generation = match generations.last() {
        Some(g) if covers(&g.index.schema(), &properties) => g.clone(),
        _ => shard.new_generation(&properties)?,
    };
    let threads = threads.max(1);
    let mut writer: IndexWriter<TantivyDocument> =
        match generation.index.writer_with_num_threads(threads, threads * WRITER_MEMORY_PER_THREAD) {
            Ok(w) => w,
            Err(tantivy::TantivyError::LockFailure(..)) => return Ok(0),
            Err(e) => return Err(e.into()),
        };
    let mut payload = generation.payload()?;
    let schema = generation.index.schema();
    let arrow_schema = state.schema.arrow_schema();
    let mut added = 0u64;
    // A boost shard under a memory bound commits (and is measured) in smaller steps, so it
    // stops close to the bound.
    let every = if shard.memory_bounded() { BOUNDED_COMMIT_EVERY_ROWS } else { COMMIT_EVERY_ROWS };
    for chunk in chunks_by_rows(&todo, every) {
        if let Err(e) = shard.check_memory() {
            writer.rollback()?;
            generation.reload()?;
            return Err(e);
        }
        let next = AtomicUsize::new(0);
        let failure = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..threads.min(chunk.len()))
                .map(|_| {
                    scope.spawn(|| -> Result<()> {
                        while let Some(seg) = chunk.get(next.fetch_add(1, Ordering::Relaxed)) {
                            let open = env.segment_cache().get(env.storage(), seg)?;
                            let rows = seg.rows();
                            for batch in open.read(select_span(0, rows, rows), &arrow_schema, INDEX_BATCH_ROWS)? {
                                for doc in documents(&schema, &properties, &batch?) {
                                    writer.add_document(doc)?;
                                }
                            }
                        }
                        Ok(())
                    })
                })
                .collect();
            workers.into_iter().map(|w| crate::error::joined("an indexing thread", w.join())).find(Result::is_err)
        });
        if let Some(Err(e)) = failure {
            writer.rollback()?;
            return Err(e);
        }
        for seg in chunk {
            payload.indexed.insert(seg.start, seg.end);
            added += seg.rows();
        }
        let mut prepared = writer.prepare_commit()?;
        prepared.set_payload(&serde_json::to_string(&payload).expect("serializable"));
        prepared.commit()?;
        shard.recharge();
    }
    generation.reload()?;
    // What was committed stands (and answers queries); past the bound, the store says so.
    shard.check_memory()?;
    Ok(added)
}

/// Rows per commit of a boost shard under a memory bound.
const BOUNDED_COMMIT_EVERY_ROWS: u64 = 20_000;

/// Splits segments into consecutive groups of about `rows` rows each.
fn chunks_by_rows<'a>(segments: &[&'a SegmentInfo], rows: u64) -> Vec<Vec<&'a SegmentInfo>> {
    let mut out: Vec<Vec<&SegmentInfo>> = vec![Vec::new()];
    let mut in_last = 0;
    for &s in segments {
        if in_last >= rows {
            out.push(Vec::new());
            in_last = 0;
        }
        in_last += s.rows();
        out.last_mut().expect("never empty").push(s);
    }
    out
}

/// Size in bytes of the files under `dir` (0 if it does not exist).
pub fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_bytes(&e.path()),
            _ => e.metadata().map(|m| m.len()).unwrap_or(0),
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_ranges_merge_and_cover() {
        let mut r = KeyRanges::default();
        r.insert(10, 20);
        r.insert(0, 5);
        assert!(r.covers(0, 5) && r.covers(12, 20) && !r.covers(4, 11) && !r.covers(20, 21));
        r.insert(5, 10);
        assert_eq!(r, KeyRanges(vec![(0, 20)]));
        r.insert(30, 40);
        r.insert(25, 35);
        assert_eq!(r, KeyRanges(vec![(0, 20), (25, 40)]));
        assert!(r.covers(25, 40) && !r.covers(19, 26));
    }

    #[test]
    fn shard_assignment_is_stable_and_spread() {
        let seg = |start| SegmentInfo { path: String::new(), shard: 0, start, end: start + 1, size: 0 };
        let mut counts = [0u32; 4];
        for i in 0..400 {
            let s = shard_of(&seg(i * 262_144), 4);
            assert_eq!(s, shard_of(&seg(i * 262_144), 4));
            counts[s as usize] += 1;
        }
        assert!(counts.iter().all(|&c| c > 60), "uneven: {counts:?}");
    }
}
