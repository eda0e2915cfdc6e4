//! Parquet segments: writing one contiguous key range to a file, and reading rows back by offset.
//!
//! A segment holds keys `start..end` in order, so the row of key `k` is `k - start`. Reads use that
//! offset with a row selection; the footer and page index of each opened segment stay cached so a
//! point read touches only the pages that hold the row.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{RecordBatch, new_null_array};
use arrow::datatypes::SchemaRef;
use bytes::Bytes;
use parking_lot::RwLock;
use parquet::arrow::ArrowWriter;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder, RowSelection,
    RowSelector,
};
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::PageIndexPolicy;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::file::reader::{ChunkReader, Length};

use crate::error::{EngineError, Result};
use crate::log::SegmentInfo;
use crate::storage::Storage;

mod pages;

/// How data pages are compressed.
///
/// LZ4 is the default: parquet-rs creates a zstd context for every column chunk it opens, which
/// costs more than the whole rest of a point read on machines where that setup traps to the
/// hypervisor, and LZ4 decodes faster. zstd files are about 30% smaller.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Codec {
    /// LZ4 (Parquet's `LZ4_RAW`).
    #[default]
    Lz4,
    /// zstd level 1.
    Zstd,
}

/// How segments are laid out; the defaults favour fast point reads at a small cost in size.
#[derive(Debug, Clone)]
pub struct SegmentOptions {
    /// Records per segment file (the target size).
    pub segment_rows: usize,
    /// Records per row group.
    pub row_group_rows: usize,
    /// Most records per data page: small pages make point reads decode less.
    pub page_rows: usize,
    /// Most bytes per data page (before compression). A point read decompresses one page per
    /// column, so wide columns (text) get pages of fewer rows than narrow ones.
    pub page_bytes: usize,
    /// Page compression.
    pub codec: Codec,
}

impl Default for SegmentOptions {
    fn default() -> Self {
        SegmentOptions {
            segment_rows: 1 << 18,
            row_group_rows: 1 << 17,
            page_rows: 1024,
            page_bytes: 4 << 10,
            codec: Codec::default(),
        }
    }
}

impl SegmentOptions {
    fn writer_properties(&self) -> Result<WriterProperties> {
        Ok(WriterProperties::builder()
            .set_compression(match self.codec {
                Codec::Lz4 => Compression::LZ4_RAW,
                Codec::Zstd => Compression::ZSTD(ZstdLevel::try_new(1)?),
            })
            .set_statistics_enabled(EnabledStatistics::Page)
            // No dictionaries: a point read would decode a whole dictionary page per column,
            // and building them costs ingest time; zstd already removes the repetition.
            .set_dictionary_enabled(false)
            .set_data_page_row_count_limit(self.page_rows)
            .set_data_page_size_limit(self.page_bytes)
            // The writer checks the limits after each batch of this many records.
            .set_write_batch_size(self.page_rows.min(WRITE_BATCH_ROWS))
            .set_max_row_group_row_count(Some(self.row_group_rows))
            .set_created_by(concat!("m1 ", env!("CARGO_PKG_VERSION")).to_string())
            .build())
    }
}

/// Records the Parquet writer encodes between checks of the page limits: a page of a wide column
/// ends within this many records of reaching [`SegmentOptions::page_bytes`].
const WRITE_BATCH_ROWS: usize = 64;

/// Encodes record batches (already carrying `_m1key` and `_m1rand`) as one Parquet file.
pub fn encode(schema: &SchemaRef, batches: &[RecordBatch], options: &SegmentOptions) -> Result<Bytes> {
    let mut out = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut out, schema.clone(), Some(options.writer_properties()?))?;
    for b in batches {
        writer.write(b)?;
    }
    writer.close()?;
    Ok(Bytes::from(out))
}

/// The bytes of a segment: a memory map for local files, ranged requests for remote ones.
#[derive(Clone)]
enum SegmentBytes {
    Mapped(Bytes),
    Remote { storage: Storage, path: String, len: u64 },
}

impl Length for SegmentBytes {
    fn len(&self) -> u64 {
        match self {
            SegmentBytes::Mapped(b) => b.len() as u64,
            SegmentBytes::Remote { len, .. } => *len,
        }
    }
}

impl ChunkReader for SegmentBytes {
    type T = bytes::buf::Reader<Bytes>;

    fn get_read(&self, start: u64) -> parquet::errors::Result<Self::T> {
        let len = self.len().saturating_sub(start) as usize;
        Ok(bytes::Buf::reader(self.get_bytes(start, len)?))
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        match self {
            SegmentBytes::Mapped(b) => {
                let end = start as usize + length;
                if end > b.len() {
                    return Err(parquet::errors::ParquetError::EOF(format!("read past end of segment at {end}")));
                }
                Ok(b.slice(start as usize..end))
            }
            SegmentBytes::Remote { storage, path, .. } => storage
                .get_range(path, start..start + length as u64)
                .map_err(|e| parquet::errors::ParquetError::External(Box::new(e))),
        }
    }
}

/// How a segment's footer is read: with the offset index (where each page starts, which point
/// reads need) and without the column index (per-page minimum and maximum, which no m1 read
/// uses and which costs most of opening a segment: a page's statistics of a text column hold
/// two whole values). Files still carry both, for other readers.
pub fn reader_options() -> ArrowReaderOptions {
    ArrowReaderOptions::new()
        .with_offset_index_policy(PageIndexPolicy::Optional)
        .with_column_index_policy(PageIndexPolicy::Skip)
}

/// An opened segment: its bytes and its decoded footer with page index.
pub struct OpenSegment {
    bytes: SegmentBytes,
    meta: ArrowReaderMetadata,
    /// Root column index of every column in the file, by name.
    columns: HashMap<String, usize>,
    /// Per root column, how to read a few rows straight from their pages (`None`: the ordinary way).
    direct: Vec<Option<pages::DirectColumn>>,
}

impl OpenSegment {
    fn open(storage: &Storage, info: &SegmentInfo) -> Result<OpenSegment> {
        let bytes = match storage.local_root() {
            Some(root) => {
                let path = root.join(&info.path);
                let file = std::fs::File::open(&path).map_err(|e| EngineError::io(&path, e))?;
                // SAFETY: segment files are immutable once committed; m1 never writes to them again
                // and vacuum removes only files that no commit references.
                let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| EngineError::io(&path, e))?;
                SegmentBytes::Mapped(Bytes::from_owner(map))
            }
            None => SegmentBytes::Remote { storage: storage.clone(), path: info.path.clone(), len: info.size },
        };
        let meta = ArrowReaderMetadata::load(&bytes, reader_options())?;
        let columns = meta.schema().fields().iter().enumerate().map(|(i, f)| (f.name().clone(), i)).collect();
        let direct = pages::plan(meta.metadata());
        Ok(OpenSegment { bytes, meta, columns, direct })
    }

    /// Reads the rows at `rows` (sorted, distinct offsets) as one batch shaped as `schema`,
    /// each column straight from the pages that hold them (see [`pages`]).
    pub fn read_rows(&self, rows: &[u64], schema: &SchemaRef) -> Result<RecordBatch> {
        if rows.is_empty() {
            return Ok(RecordBatch::new_empty(schema.clone()));
        }
        let mut columns = Vec::with_capacity(schema.fields().len());
        for f in schema.fields() {
            let Some(&root) = self.columns.get(f.name()) else {
                columns.push(new_null_array(f.data_type(), rows.len()));
                continue;
            };
            let column = match &self.direct[root] {
                Some(direct) => pages::read_column(
                    &self.bytes,
                    self.meta.metadata(),
                    root,
                    self.meta.schema().fields(),
                    direct,
                    rows,
                )?,
                _ => {
                    let one = Arc::new(arrow::datatypes::Schema::new(vec![f.clone()]));
                    let batches = self
                        .read(select_rows(rows, self.rows()), &one, rows.len().max(1))?
                        .collect::<Result<Vec<_>>>()?;
                    arrow::compute::concat_batches(&one, &batches)?.column(0).clone()
                }
            };
            columns.push(column);
        }
        Ok(RecordBatch::try_new_with_options(
            schema.clone(),
            columns,
            &arrow::array::RecordBatchOptions::new().with_row_count(Some(rows.len())),
        )?)
    }

    /// Reads the rows chosen by `selection`, shaped as `schema` (columns the file lacks are null).
    pub fn read(&self, selection: RowSelection, schema: &SchemaRef, batch_size: usize) -> Result<SegmentRows> {
        let roots: Vec<usize> = schema.fields().iter().filter_map(|f| self.columns.get(f.name()).copied()).collect();
        let mask = ProjectionMask::roots(self.meta.metadata().file_metadata().schema_descr(), roots);
        let reader = ParquetRecordBatchReaderBuilder::new_with_metadata(self.bytes.clone(), self.meta.clone())
            .with_projection(mask)
            .with_row_selection(selection)
            .with_batch_size(batch_size)
            .build()?;
        Ok(SegmentRows { reader, schema: schema.clone() })
    }

    /// Number of rows in the file.
    pub fn rows(&self) -> u64 {
        self.meta.metadata().file_metadata().num_rows() as u64
    }
}

/// Batches read from one segment, aligned to the requested schema.
pub struct SegmentRows {
    reader: ParquetRecordBatchReader,
    schema: SchemaRef,
}

impl Iterator for SegmentRows {
    type Item = Result<RecordBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        let batch = match self.reader.next()? {
            Ok(b) => b,
            Err(e) => return Some(Err(e.into())),
        };
        Some(align(&batch, &self.schema))
    }
}

/// Reorders a file's columns into `schema`, with nulls for the columns added after it was written.
fn align(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
    let file_schema = batch.schema();
    let columns = schema
        .fields()
        .iter()
        .map(|f| match file_schema.index_of(f.name()) {
            Ok(i) => batch.column(i).clone(),
            Err(_) => new_null_array(f.data_type(), batch.num_rows()),
        })
        .collect();
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

/// Selects the sorted, distinct row offsets `rows` out of a segment of `total` rows.
pub fn select_rows(rows: &[u64], total: u64) -> RowSelection {
    let mut selectors = Vec::with_capacity(rows.len() * 2 + 1);
    let mut at = 0u64;
    for &r in rows {
        if r > at {
            selectors.push(RowSelector::skip((r - at) as usize));
        }
        selectors.push(RowSelector::select(1));
        at = r + 1;
    }
    if total > at {
        selectors.push(RowSelector::skip((total - at) as usize));
    }
    RowSelection::from(selectors)
}

/// Selects the contiguous rows `from..to` out of a segment of `total` rows.
pub fn select_span(from: u64, to: u64, total: u64) -> RowSelection {
    let mut selectors = Vec::with_capacity(3);
    if from > 0 {
        selectors.push(RowSelector::skip(from as usize));
    }
    selectors.push(RowSelector::select((to - from) as usize));
    if total > to {
        selectors.push(RowSelector::skip((total - to) as usize));
    }
    RowSelection::from(selectors)
}

/// Opened segments by path, so footers and page indexes are decoded once.
#[derive(Default)]
pub struct SegmentCache {
    open: RwLock<HashMap<String, Arc<OpenSegment>>>,
    /// Heap bytes of the cached segments' metadata (footers, page indexes).
    bytes: std::sync::atomic::AtomicU64,
    /// The environment's memory bound, whose quarter the cache may hold.
    budget: Arc<crate::memory::MemoryBudget>,
}

/// How many opened segments the cache keeps before starting over.
const CACHE_LIMIT: usize = 8192;

impl SegmentCache {
    /// A cache held to a quarter of `budget`'s bound.
    pub fn with_budget(budget: Arc<crate::memory::MemoryBudget>) -> SegmentCache {
        SegmentCache { budget, ..Default::default() }
    }

    /// The opened segment, from the cache or freshly opened.
    pub fn get(&self, storage: &Storage, info: &SegmentInfo) -> Result<Arc<OpenSegment>> {
        if let Some(seg) = self.open.read().get(&info.path) {
            return Ok(seg.clone());
        }
        let seg = Arc::new(OpenSegment::open(storage, info)?);
        let size = seg.meta.metadata().memory_size() as u64;
        let mut open = self.open.write();
        let over_bytes = self
            .budget
            .cache_limit()
            .is_some_and(|limit| self.bytes.load(std::sync::atomic::Ordering::Relaxed) + size > limit);
        if open.len() >= CACHE_LIMIT || over_bytes {
            open.clear();
            self.bytes.store(0, std::sync::atomic::Ordering::Relaxed);
        }
        if open.insert(info.path.clone(), seg.clone()).is_none() {
            self.bytes.fetch_add(size, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(seg)
    }

    /// Heap bytes the cache holds now (segment metadata).
    pub fn bytes(&self) -> u64 {
        self.bytes.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Drops every cached segment (after a vacuum, or to release memory).
    pub fn clear(&self) {
        self.open.write().clear();
        self.bytes.store(0, std::sync::atomic::Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{BooleanArray, Float64Array, Int64Array, ListBuilder, StringArray, StringBuilder};
    use arrow::datatypes::{DataType, Field, Schema};
    use proptest::prelude::*;

    /// A file of `n` rows: an integer key, a nullable string, a list of strings, a double with
    /// nulls and a boolean, in small row groups and pages so reads cross both.
    fn file(n: usize, dictionary: bool) -> (RecordBatch, OpenSegment) {
        file_with(n, dictionary, Layout::Current)
    }

    /// Segment layouts m1 has written: today's small LZ4 pages, and the earlier zstd pages bounded
    /// by rows only (the files of older environments, which must read the same).
    #[derive(Debug, Clone, Copy)]
    enum Layout {
        Current,
        ZstdRowPages,
    }

    fn file_with(n: usize, dictionary: bool, layout: Layout) -> (RecordBatch, OpenSegment) {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, false),
            Field::new("s", DataType::Utf8, true),
            Field::new("tags", DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))), true),
            Field::new("x", DataType::Float64, true),
            Field::new("b", DataType::Boolean, true),
        ]));
        let mut tags = ListBuilder::new(StringBuilder::new());
        for i in 0..n {
            if i % 7 == 3 {
                tags.append_null();
                continue;
            }
            for t in 0..i % 4 {
                tags.values().append_value(format!("t{}", (i + t) % 5));
            }
            tags.append(true);
        }
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from_iter_values(0..n as i64)),
                Arc::new(StringArray::from_iter(
                    (0..n).map(|i| (i % 5 != 0).then(|| format!("v{}", i * 31 % 97).repeat(i % 9))),
                )),
                Arc::new(tags.finish()),
                Arc::new(Float64Array::from_iter((0..n).map(|i| (i % 3 != 1).then_some(i as f64 / 4.0)))),
                Arc::new(BooleanArray::from_iter((0..n).map(|i| (i % 11 != 0).then_some(i % 2 == 0)))),
            ],
        )
        .unwrap();
        let options = match layout {
            Layout::Current => SegmentOptions {
                segment_rows: n,
                row_group_rows: 300,
                page_rows: 32,
                page_bytes: 200,
                codec: Codec::Lz4,
            },
            Layout::ZstdRowPages => SegmentOptions {
                segment_rows: n,
                row_group_rows: 300,
                page_rows: 64,
                page_bytes: 1 << 20,
                codec: Codec::Zstd,
            },
        };
        let mut props = options.writer_properties().unwrap().into_builder();
        if dictionary {
            props = props.set_dictionary_enabled(true);
        }
        let mut out = Vec::new();
        let mut w = ArrowWriter::try_new(&mut out, schema.clone(), Some(props.build())).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        let bytes = SegmentBytes::Mapped(Bytes::from(out));
        let meta = ArrowReaderMetadata::load(&bytes, reader_options()).unwrap();
        let columns = meta.schema().fields().iter().enumerate().map(|(i, f)| (f.name().clone(), i)).collect();
        let direct = pages::plan(meta.metadata());
        (batch, OpenSegment { bytes, meta, columns, direct })
    }

    #[test]
    fn direct_reads_are_planned_only_without_dictionaries() {
        let (_, plain) = file(1000, false);
        assert!(plain.direct.iter().all(Option::is_some));
        let (_, dict) = file(1000, true);
        // Strings get dictionaries; the integer key, doubles and booleans may too: at least the
        // string columns must take the ordinary way.
        assert!(dict.direct[1].is_none() && dict.direct[2].is_none());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn direct_reads_match_the_ordinary_reader(
            picks in proptest::collection::btree_set(0u64..1000, 0..40),
            dictionary in any::<bool>(),
            extra in any::<bool>(),
            old in any::<bool>(),
        ) {
            let layout = if old { Layout::ZstdRowPages } else { Layout::Current };
            let (source, seg) = file_with(1000, dictionary, layout);
            let schema = source.schema();
            let rows: Vec<u64> = picks.into_iter().collect();
            // A property the file lacks reads as nulls.
            let asked = if extra {
                let mut f: Vec<_> = schema.fields().iter().rev().cloned().collect();
                f.push(Arc::new(Field::new("later", DataType::Int64, true)));
                Arc::new(Schema::new(f))
            } else {
                schema.clone()
            };
            let got = seg.read_rows(&rows, &asked).unwrap();
            prop_assert_eq!(got.num_rows(), rows.len());
            for f in asked.fields() {
                let col = got.column_by_name(f.name()).unwrap();
                if f.name() == "later" {
                    prop_assert_eq!(col.null_count(), rows.len());
                    continue;
                }
                // The model: the rows taken from the batch that was written.
                let picked = arrow::array::UInt64Array::from(rows.clone());
                let want = arrow::compute::take(source.column_by_name(f.name()).unwrap(), &picked, None).unwrap();
                prop_assert_eq!(col.as_ref(), want.as_ref(), "column {}", f.name());
            }
        }
    }
}
