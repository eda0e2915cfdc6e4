//! Point reads that go straight to the pages holding the rows.
//!
//! parquet-rs reads a column chunk from its first page on, skipping page after page up to the
//! selected rows, with one reader set up for all the columns of a row group. For a few rows that
//! walk and that set-up cost more than the decoding. Here each column is read on its own from a
//! *virtual* chunk made of only the pages that hold a selected row (found by binary search in the
//! offset index): the page reader is given those pages' locations, renumbered from row 0, and a
//! chunk description that starts at the first of them, so it decodes nothing else. Row groups
//! that hold selected rows follow one another in the same virtual chunk.
//!
//! The files are read as written, so every Parquet reader still reads them; a column whose chunk
//! has a dictionary page (segments written before dictionaries were turned off) or a file without
//! an offset index is read the ordinary way.

use std::sync::{Arc, OnceLock};

use arrow::array::{Array, ArrayRef};
use arrow::datatypes::Fields;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, RowGroups};
use parquet::arrow::{FieldLevels, ProjectionMask, parquet_to_arrow_field_levels};
use parquet::column::page::{PageIterator, PageReader};
use parquet::errors::ParquetError;
use parquet::file::metadata::{ColumnChunkMetaData, ParquetMetaData, RowGroupMetaData};
use parquet::file::page_index::offset_index::PageLocation;
use parquet::file::serialized_reader::SerializedPageReader;

use super::{SegmentBytes, select_rows};
use crate::error::Result;

/// What a segment needs to read one root column straight from its pages.
pub(super) struct DirectColumn {
    /// The column's one leaf in the file schema.
    leaf: usize,
    /// The column alone as the Arrow reader sees it, set up on first use.
    levels: OnceLock<std::result::Result<FieldLevels, String>>,
}

/// Per root column of a file: how to read it directly, or `None` to read it the ordinary way.
pub(super) fn plan(meta: &ParquetMetaData) -> Vec<Option<DirectColumn>> {
    let descr = meta.file_metadata().schema_descr();
    let roots = descr.root_schema().get_fields().len();
    let mut leaves: Vec<Vec<usize>> = vec![Vec::new(); roots];
    for leaf in 0..descr.num_columns() {
        leaves[descr.get_column_root_idx(leaf)].push(leaf);
    }
    let Some(index) = meta.page_index().filter(|i| i.has_offset_indexes()) else {
        return (0..roots).map(|_| None).collect();
    };
    leaves
        .into_iter()
        .map(|l| match l.as_slice() {
            // One leaf (a scalar or a list of scalars), no dictionary and an offset index in every
            // row group: the pages alone describe the column.
            &[leaf]
                if meta.row_groups().iter().enumerate().all(|(g, rg)| {
                    rg.column(leaf).dictionary_page_offset().is_none() && index.page_locations(g, leaf).is_some()
                }) =>
            {
                Some(DirectColumn { leaf, levels: OnceLock::new() })
            }
            _ => None,
        })
        .collect()
}

/// The pages of one row group that hold selected rows.
struct Window {
    group: usize,
    /// The chunk, cut down to start at the first chosen page.
    chunk: ColumnChunkMetaData,
    /// The chosen pages, renumbered from row 0.
    pages: Vec<PageLocation>,
    rows: usize,
}

/// Reads the rows `rows` (sorted, distinct offsets within the file) of root column `root`.
pub(super) fn read_column(
    bytes: &SegmentBytes,
    meta: &ParquetMetaData,
    root: usize,
    fields: &Fields,
    column: &DirectColumn,
    rows: &[u64],
) -> Result<ArrayRef> {
    let levels = column
        .levels
        .get_or_init(|| {
            let descr = meta.file_metadata().schema_descr();
            // The file's Arrow schema, all of it: the reader picks the projected root from it.
            parquet_to_arrow_field_levels(descr, ProjectionMask::roots(descr, [root]), Some(fields))
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| ParquetError::General(e.clone()))?;
    let index = meta.page_index().expect("planned only with an offset index");
    let leaf = column.leaf;

    let mut windows = Vec::new();
    let mut selected = Vec::with_capacity(rows.len());
    let mut group_start = 0u64;
    let mut next = rows.iter().copied().peekable();
    for (group, rg) in meta.row_groups().iter().enumerate() {
        let group_rows = rg.num_rows() as u64;
        let group_end = group_start + group_rows;
        if next.peek().is_none_or(|&r| r >= group_end) {
            group_start = group_end;
            continue;
        }
        let locations = index.page_locations(group, leaf).expect("checked by plan");
        let page_end = |p: usize| locations.get(p + 1).map_or(group_rows, |l| l.first_row_index as u64);
        // Rows of this group are numbered after those of the groups before it.
        let before: u64 = windows.iter().map(|w: &Window| w.rows as u64).sum();
        let mut virtual_rows = 0u64;
        let mut pages: Vec<PageLocation> = Vec::new();
        // The page last chosen: its index, its first row in the group, its first row in the window.
        let mut current: Option<(usize, u64, u64)> = None;
        while let Some(r) = next.next_if(|&r| r < group_end) {
            let at = r - group_start;
            let (_, first, base) = match current {
                Some((p, first, base)) if at >= first && at < page_end(p) => (p, first, base),
                _ => {
                    let p = locations.partition_point(|l| l.first_row_index as u64 <= at) - 1;
                    let first = locations[p].first_row_index as u64;
                    pages.push(PageLocation {
                        offset: locations[p].offset,
                        compressed_page_size: locations[p].compressed_page_size,
                        first_row_index: virtual_rows as i64,
                    });
                    let chosen = (p, first, virtual_rows);
                    virtual_rows += page_end(p) - first;
                    current = Some(chosen);
                    chosen
                }
            };
            selected.push(before + base + (at - first));
        }
        let first = &pages[0];
        let last = pages.last().expect("a row was chosen");
        let chunk = rg
            .column(leaf)
            .clone()
            .into_builder()
            .set_dictionary_page_offset(None)
            .set_data_page_offset(first.offset)
            .set_total_compressed_size(last.offset + i64::from(last.compressed_page_size) - first.offset)
            .build()?;
        windows.push(Window { group, chunk, pages, rows: virtual_rows as usize });
        group_start = group_end;
    }
    let total: usize = windows.iter().map(|w| w.rows).sum();
    let groups = Chosen { bytes: Arc::new(bytes.clone()), meta, windows, total };
    let reader = ParquetRecordBatchReader::try_new_with_row_groups(
        levels,
        &groups,
        rows.len().max(1),
        Some(select_rows(&selected, total as u64)),
    )?;
    let mut parts = Vec::new();
    for batch in reader {
        parts.push(batch?.column(0).clone());
    }
    Ok(match parts.len() {
        1 => parts.pop().expect("one part"),
        _ => {
            let refs: Vec<&dyn Array> = parts.iter().map(|a| a.as_ref()).collect();
            arrow::compute::concat(&refs)?
        }
    })
}

/// The virtual chunks of one column, as the Arrow reader asks for them.
struct Chosen<'m> {
    bytes: Arc<SegmentBytes>,
    meta: &'m ParquetMetaData,
    windows: Vec<Window>,
    total: usize,
}

impl RowGroups for Chosen<'_> {
    fn num_rows(&self) -> usize {
        self.total
    }

    fn column_chunks(&self, _leaf: usize) -> parquet::errors::Result<Box<dyn PageIterator>> {
        let readers = self
            .windows
            .iter()
            .map(|w| -> parquet::errors::Result<Box<dyn PageReader>> {
                Ok(Box::new(SerializedPageReader::new(self.bytes.clone(), &w.chunk, w.rows, Some(w.pages.clone()))?))
            })
            .collect::<Vec<_>>();
        Ok(Box::new(Readers(readers.into_iter())))
    }

    fn row_groups(&self) -> Box<dyn Iterator<Item = &RowGroupMetaData> + '_> {
        Box::new(self.windows.iter().map(|w| self.meta.row_group(w.group)))
    }

    fn metadata(&self) -> &ParquetMetaData {
        self.meta
    }
}

struct Readers(std::vec::IntoIter<parquet::errors::Result<Box<dyn PageReader>>>);

impl Iterator for Readers {
    type Item = parquet::errors::Result<Box<dyn PageReader>>;

    fn next(&mut self) -> Option<Self::Item> {
        self.0.next()
    }
}

impl PageIterator for Readers {}
