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
    /// Records per data page: small pages make point reads decode less.
    pub page_rows: usize,
    /// Page compression.
    pub codec: Codec,
}

impl Default for SegmentOptions {
    fn default() -> Self {
        SegmentOptions { segment_rows: 1 << 18, row_group_rows: 1 << 17, page_rows: 1024, codec: Codec::default() }
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
            .set_write_batch_size(self.page_rows)
            .set_max_row_group_row_count(Some(self.row_group_rows))
            .set_created_by(concat!("m1 ", env!("CARGO_PKG_VERSION")).to_string())
            .build())
    }
}

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

/// An opened segment: its bytes and its decoded footer with page index.
pub struct OpenSegment {
    bytes: SegmentBytes,
    meta: ArrowReaderMetadata,
    /// Root column index of every column in the file, by name.
    columns: HashMap<String, usize>,
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
        let options = ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Optional);
        let meta = ArrowReaderMetadata::load(&bytes, options)?;
        let columns = meta.schema().fields().iter().enumerate().map(|(i, f)| (f.name().clone(), i)).collect();
        Ok(OpenSegment { bytes, meta, columns })
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
}

/// How many opened segments the cache keeps before starting over.
const CACHE_LIMIT: usize = 8192;

impl SegmentCache {
    /// The opened segment, from the cache or freshly opened.
    pub fn get(&self, storage: &Storage, info: &SegmentInfo) -> Result<Arc<OpenSegment>> {
        if let Some(seg) = self.open.read().get(&info.path) {
            return Ok(seg.clone());
        }
        let seg = Arc::new(OpenSegment::open(storage, info)?);
        let mut open = self.open.write();
        if open.len() >= CACHE_LIMIT {
            open.clear();
        }
        open.insert(info.path.clone(), seg.clone());
        Ok(seg)
    }

    /// Drops every cached segment (after a vacuum, or to release memory).
    pub fn clear(&self) {
        self.open.write().clear();
    }
}
