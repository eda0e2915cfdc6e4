//! One pass over the matching documents that counts them, keeps the best `limit` under a sort,
//! and counts facet buckets over the whole match set.
//!
//! Sorting: every sort key compares present values by type (strings by bytes); a missing value
//! sorts last whatever the direction; ties end with `_m1key` ascending, so an order is total and
//! pages never overlap. A multi-valued property sorts by its first value. Within a segment
//! strings compare by term ordinal (the dictionary is sorted), and only the kept hits have their
//! ordinals turned into strings, so merging segments compares real strings.

use std::cmp::Ordering;

use m1_engine::{KEY, PropertyType};
use rustc_hash::FxHashMap;
use tantivy::collector::{Collector, SegmentCollector};
use tantivy::columnar::{Cardinality, Column, StrColumn};
use tantivy::{DocId, Score, SegmentOrdinal, SegmentReader};

/// What to sort by.
#[derive(Debug, Clone, PartialEq)]
pub enum SortBy {
    /// Relevance (BM25).
    Score,
    /// A property with a fast column (anything but `text`), `_m1key` included.
    Property { name: String, ty: PropertyType },
}

/// One sort key.
#[derive(Debug, Clone, PartialEq)]
pub struct SortKey {
    /// What.
    pub by: SortBy,
    /// Largest first.
    pub desc: bool,
}

/// A sort value; strings hold a segment's term ordinal until the hit leaves the segment.
#[derive(Debug, Clone, PartialEq)]
pub enum SortValue {
    /// No value (sorts last).
    Missing,
    /// integer, date (ms) and boolean values.
    Int(i64),
    /// double values and scores.
    Float(f64),
    /// A term ordinal within one segment.
    Ord(u64),
    /// A string.
    Str(String),
}

impl SortValue {
    fn cmp_present(&self, other: &SortValue) -> Ordering {
        match (self, other) {
            (SortValue::Int(a), SortValue::Int(b)) => a.cmp(b),
            (SortValue::Float(a), SortValue::Float(b)) => a.total_cmp(b),
            (SortValue::Ord(a), SortValue::Ord(b)) => a.cmp(b),
            (SortValue::Str(a), SortValue::Str(b)) => a.as_bytes().cmp(b.as_bytes()),
            _ => Ordering::Equal,
        }
    }
}

/// A kept document: its sort values and key.
#[derive(Debug, Clone)]
pub struct Hit {
    /// One value per sort key.
    pub values: Vec<SortValue>,
    /// The record's `_m1key`.
    pub key: u64,
}

/// Orders hits under `keys` (then by key ascending).
pub fn compare(keys: &[SortKey], a: &Hit, b: &Hit) -> Ordering {
    compare_parts(keys, &a.values, a.key, &b.values, b.key)
}

fn compare_parts(keys: &[SortKey], a: &[SortValue], a_key: u64, b: &[SortValue], b_key: u64) -> Ordering {
    for (k, (x, y)) in keys.iter().zip(a.iter().zip(b)) {
        let o = match (x, y) {
            (SortValue::Missing, SortValue::Missing) => Ordering::Equal,
            (SortValue::Missing, _) => Ordering::Greater,
            (_, SortValue::Missing) => Ordering::Less,
            _ if k.desc => y.cmp_present(x),
            _ => x.cmp_present(y),
        };
        if o != Ordering::Equal {
            return o;
        }
    }
    a_key.cmp(&b_key)
}

/// Keeps the best `limit` of `hits` in order.
pub fn top(keys: &[SortKey], mut hits: Vec<Hit>, limit: usize) -> Vec<Hit> {
    if hits.len() > limit && limit > 0 {
        hits.select_nth_unstable_by(limit - 1, |a, b| compare(keys, a, b));
    }
    hits.truncate(limit);
    hits.sort_unstable_by(|a, b| compare(keys, a, b));
    hits
}

/// A facet request, checked against the schema.
#[derive(Debug, Clone, PartialEq)]
pub enum FacetSpec {
    /// Counts per distinct value, the `limit` largest.
    Terms { field: String, ty: PropertyType, limit: usize },
    /// Counts per bucket `[start + i*gap, start + (i+1)*gap)` below `end`; numbers, dates in ms.
    Range { field: String, ty: PropertyType, start: f64, end: f64, gap: f64 },
}

/// A facet value.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FacetValue {
    /// boolean
    Bool(bool),
    /// integer, or date in ms
    Int(i64),
    /// double, as its total-order bits
    Float(u64),
    /// string
    Str(String),
}

/// Counts of one facet.
#[derive(Debug, Clone, Default)]
pub struct FacetCounts {
    /// Terms facets: count per value.
    pub terms: FxHashMap<FacetValue, u64>,
    /// Terms facets on integers and dates of a small span: counts per value from `min`.
    pub dense: Option<Dense>,
    /// Range facets: count per bucket.
    pub buckets: Vec<u64>,
}

/// Counts of consecutive integers: `counts[i]` is the count of `min + i`.
#[derive(Debug, Clone)]
pub struct Dense {
    /// The value of `counts[0]`.
    pub min: i64,
    /// Count per value.
    pub counts: Vec<u64>,
}

impl Dense {
    /// The two as one array, or `None` if together they span too many values.
    fn merged(mut self, other: Dense) -> Result<Dense, (Dense, Dense)> {
        let min = self.min.min(other.min);
        let end = (self.min + self.counts.len() as i64).max(other.min + other.counts.len() as i64);
        if end.abs_diff(min) > 4 * DENSE_SPAN {
            return Err((self, other));
        }
        if min < self.min {
            let mut counts = vec![0; end.abs_diff(min) as usize];
            counts[self.min.abs_diff(min) as usize..][..self.counts.len()].copy_from_slice(&self.counts);
            self = Dense { min, counts };
        }
        self.counts.resize(end.abs_diff(min) as usize, 0);
        for (i, c) in other.counts.into_iter().enumerate() {
            self.counts[other.min.abs_diff(min) as usize + i] += c;
        }
        Ok(self)
    }

    fn into_terms(self, terms: &mut FxHashMap<FacetValue, u64>) {
        for (i, c) in self.counts.into_iter().enumerate() {
            if c > 0 {
                *terms.entry(FacetValue::Int(self.min + i as i64)).or_default() += c;
            }
        }
    }
}

impl FacetCounts {
    /// Every (value, count) with a count above zero.
    pub fn entries(&self) -> Vec<(FacetValue, u64)> {
        let dense = self.dense.iter().flat_map(|d| {
            d.counts.iter().enumerate().filter(|(_, c)| **c > 0).map(|(i, c)| (FacetValue::Int(d.min + i as i64), *c))
        });
        if self.terms.is_empty() {
            return dense.collect();
        }
        // Some parts spilled into the map: a value may be in both.
        let mut all = self.terms.clone();
        for (v, c) in dense {
            *all.entry(v).or_default() += c;
        }
        all.into_iter().collect()
    }

    /// The `limit` values with the largest counts, ties by `order`. Counts held only in a dense
    /// array are ranked by position (value order), so only the values kept are materialised.
    pub fn top_terms(
        &self,
        limit: usize,
        order: impl Fn(&(FacetValue, u64), &(FacetValue, u64)) -> Ordering,
    ) -> Vec<(FacetValue, u64)> {
        if limit == 0 {
            return Vec::new();
        }
        if let (true, Some(d)) = (self.terms.is_empty(), &self.dense) {
            let mut at: Vec<u32> = (0..d.counts.len() as u32).filter(|&i| d.counts[i as usize] > 0).collect();
            let by = |a: &u32, b: &u32| d.counts[*b as usize].cmp(&d.counts[*a as usize]).then(a.cmp(b));
            if at.len() > limit {
                at.select_nth_unstable_by(limit - 1, by);
                at.truncate(limit);
            }
            at.sort_unstable_by(by);
            return at.into_iter().map(|i| (FacetValue::Int(d.min + i64::from(i)), d.counts[i as usize])).collect();
        }
        let mut terms = self.entries();
        if terms.len() > limit {
            terms.select_nth_unstable_by(limit - 1, &order);
            terms.truncate(limit);
        }
        terms.sort_by(order);
        terms
    }

    fn merge(&mut self, other: FacetCounts) {
        for (v, c) in other.terms {
            *self.terms.entry(v).or_default() += c;
        }
        self.dense = match (self.dense.take(), other.dense) {
            (Some(a), Some(b)) => match a.merged(b) {
                Ok(d) => Some(d),
                Err((a, b)) => {
                    a.into_terms(&mut self.terms);
                    b.into_terms(&mut self.terms);
                    None
                }
            },
            (a, b) => a.or(b),
        };
        if self.buckets.len() < other.buckets.len() {
            self.buckets.resize(other.buckets.len(), 0);
        }
        for (i, c) in other.buckets.into_iter().enumerate() {
            self.buckets[i] += c;
        }
    }
}

/// Number of buckets of a range facet.
pub fn range_buckets(start: f64, end: f64, gap: f64) -> usize {
    ((end - start) / gap).ceil().max(0.0) as usize
}

/// What a search gathered.
#[derive(Debug, Default)]
pub struct Gathered {
    /// Matching documents.
    pub count: u64,
    /// The best `limit` hits, in order.
    pub hits: Vec<Hit>,
    /// One per facet request.
    pub facets: Vec<FacetCounts>,
}

impl Gathered {
    /// Combines the answers of several segments or indexes.
    pub fn merge(keys: &[SortKey], limit: usize, parts: Vec<Gathered>, facets: usize) -> Gathered {
        let mut out = Gathered { facets: vec![FacetCounts::default(); facets], ..Default::default() };
        let mut hits = Vec::new();
        for p in parts {
            out.count += p.count;
            hits.extend(p.hits);
            for (mine, theirs) in out.facets.iter_mut().zip(p.facets) {
                mine.merge(theirs);
            }
        }
        out.hits = top(keys, hits, limit);
        out
    }
}

/// The collector.
pub struct Gather {
    /// Sort keys.
    pub keys: Vec<SortKey>,
    /// Hits to keep (0: count only).
    pub limit: usize,
    /// Facets to count.
    pub facets: Vec<FacetSpec>,
    /// The worst of `limit` hits that one segment already holds, shared by every segment and
    /// shard of the search: later documents must beat it.
    pub bar: Bar,
}

impl Gather {
    /// A collector of the best `limit` hits under `keys`, with `facets`.
    pub fn new(keys: Vec<SortKey>, limit: usize, facets: Vec<FacetSpec>) -> Gather {
        Gather { keys, limit, facets, bar: Bar::default() }
    }

    /// The sort key by which whole segments are ordered and skipped: the one sort key when it is
    /// an integer or date property (segments record its minimum and maximum), and only when hits
    /// are kept and no facet needs every segment.
    fn skip_key(&self) -> Option<(&str, bool)> {
        if self.limit == 0 || !self.facets.is_empty() {
            return None;
        }
        match self.keys.as_slice() {
            [SortKey { by: SortBy::Property { name, ty: PropertyType::Integer | PropertyType::Date }, desc }] => {
                Some((name.as_str(), *desc))
            }
            _ => None,
        }
    }

    /// Whether a segment whose values lie within `bounds` (`None`: it has none) can hold a hit
    /// that beats the bar.
    fn can_beat(&self, desc: bool, bounds: Option<(i64, i64)>) -> bool {
        match (self.bar.first_int(), bounds) {
            (None, _) => true,
            // A missing value sorts last: a segment without values cannot beat a full page.
            (Some(_), None) => false,
            (Some(b), Some((min, max))) => {
                if desc {
                    max >= b
                } else {
                    min <= b
                }
            }
        }
    }

    /// The segments of `searcher` in the order most likely to fill the page first: by the
    /// largest (descending sort) or smallest (ascending) value of an integer or date sort key.
    fn order(&self, readers: &[SegmentReader]) -> Vec<usize> {
        let mut order: Vec<usize> = (0..readers.len()).collect();
        if let Some((name, desc)) = self.skip_key() {
            let bounds: Vec<Option<(i64, i64)>> = readers.iter().map(|r| int_bounds(r, name)).collect();
            order.sort_by_key(|&i| match bounds[i] {
                None => (1, 0),
                Some((min, max)) => (0, if desc { max.saturating_neg() } else { min }),
            });
        }
        order
    }
}

/// The smallest and largest value of an integer column in a segment; `None` when it has none.
fn int_bounds(reader: &SegmentReader, name: &str) -> Option<(i64, i64)> {
    let col = reader.fast_fields().column_opt::<i64>(name).ok()??;
    (col.values.num_vals() > 0).then(|| (col.min_value(), col.max_value()))
}

/// Runs `query` over every segment of `searcher`, most promising first (see [`Gather::order`]).
pub fn search(
    searcher: &tantivy::Searcher,
    query: &dyn tantivy::query::Query,
    gather: &Gather,
) -> tantivy::Result<Gathered> {
    use tantivy::query::EnableScoring;
    let scoring = if gather.requires_scoring() {
        EnableScoring::enabled_from_searcher(searcher)
    } else {
        EnableScoring::disabled_from_searcher(searcher)
    };
    let weight = query.weight(scoring)?;
    let readers = searcher.segment_readers();
    let mut fruits = Vec::with_capacity(readers.len());
    for i in gather.order(readers) {
        fruits.push(gather.collect_segment(weight.as_ref(), i as SegmentOrdinal, &readers[i])?);
    }
    gather.merge_fruits(fruits)
}

/// The shared bar of a search (see [`Gather::bar`]).
#[derive(Debug, Default)]
pub struct Bar(parking_lot::Mutex<Option<Hit>>);

impl Bar {
    fn get(&self) -> Option<Hit> {
        self.0.lock().clone()
    }

    /// The bar's first sort value when it is an integer or date.
    fn first_int(&self) -> Option<i64> {
        match self.0.lock().as_ref()?.values.first()? {
            SortValue::Int(v) => Some(*v),
            _ => None,
        }
    }

    /// Raises the bar to `hit` if it is better than the bar (a segment holds `limit` hits at
    /// least as good as it).
    fn raise(&self, keys: &[SortKey], hit: &Hit) {
        let mut bar = self.0.lock();
        if bar.as_ref().is_none_or(|b| compare(keys, hit, b) == Ordering::Less) {
            *bar = Some(hit.clone());
        }
    }
}

enum SortColumn {
    Score,
    Int(Option<Column<i64>>),
    Bool(Option<Column<bool>>),
    Float(Option<Column<f64>>),
    Str(Option<StrColumn>),
}

impl SortColumn {
    fn value(&self, doc: DocId, score: Score) -> SortValue {
        let v = match self {
            SortColumn::Score => Some(SortValue::Float(f64::from(score))),
            SortColumn::Int(c) => c.as_ref().and_then(|c| c.first(doc)).map(SortValue::Int),
            SortColumn::Bool(c) => c.as_ref().and_then(|c| c.first(doc)).map(|b| SortValue::Int(i64::from(b))),
            SortColumn::Float(c) => c.as_ref().and_then(|c| c.first(doc)).map(SortValue::Float),
            SortColumn::Str(c) => c.as_ref().and_then(|c| c.ords().first(doc)).map(SortValue::Ord),
        };
        v.unwrap_or(SortValue::Missing)
    }
}

fn sort_column(reader: &SegmentReader, key: &SortKey) -> tantivy::Result<SortColumn> {
    let ff = reader.fast_fields();
    Ok(match &key.by {
        SortBy::Score => SortColumn::Score,
        SortBy::Property { name, ty } => match ty {
            PropertyType::Integer | PropertyType::Date => SortColumn::Int(ff.column_opt(name)?),
            PropertyType::Double => SortColumn::Float(ff.column_opt(name)?),
            PropertyType::Boolean => SortColumn::Bool(ff.column_opt(name)?),
            PropertyType::String | PropertyType::Text => SortColumn::Str(ff.str(name)?),
        },
    })
}

enum FacetColumn {
    Str(Option<StrColumn>, Vec<u32>),
    /// Integers (and dates) whose values span a small range, counted in an array from `min`.
    DenseInt(Column<i64>, i64, Vec<u32>),
    Int(Option<Column<i64>>),
    Bool(Option<Column<bool>>),
    Float(Option<Column<f64>>),
}

impl FacetColumn {
    fn open(reader: &SegmentReader, spec: &FacetSpec) -> tantivy::Result<FacetColumn> {
        let ff = reader.fast_fields();
        let (field, ty) = match spec {
            FacetSpec::Terms { field, ty, .. } | FacetSpec::Range { field, ty, .. } => (field.as_str(), *ty),
        };
        if let (FacetSpec::Terms { .. }, PropertyType::Integer | PropertyType::Date) = (spec, ty)
            && let Some(col) = ff.column_opt::<i64>(field)?
            && col.values.num_vals() > 0
        {
            let span = col.max_value().abs_diff(col.min_value());
            if span < DENSE_SPAN {
                let min = col.min_value();
                return Ok(FacetColumn::DenseInt(col, min, vec![0; span as usize + 1]));
            }
        }
        Ok(match ty {
            PropertyType::String | PropertyType::Text => {
                let col = ff.str(field)?;
                let n = col.as_ref().map_or(0, |c| c.num_terms());
                FacetColumn::Str(col, vec![0; n])
            }
            PropertyType::Integer | PropertyType::Date => FacetColumn::Int(ff.column_opt(field)?),
            PropertyType::Double => FacetColumn::Float(ff.column_opt(field)?),
            PropertyType::Boolean => FacetColumn::Bool(ff.column_opt(field)?),
        })
    }

    /// The document's distinct values as numbers (dates in ms, booleans 0/1); `Ord` for strings.
    fn numbers(&self, doc: DocId, out: &mut Vec<f64>) {
        out.clear();
        match self {
            FacetColumn::Int(Some(c)) => out.extend(c.values_for_doc(doc).map(|v| v as f64)),
            FacetColumn::Float(Some(c)) => out.extend(c.values_for_doc(doc)),
            FacetColumn::Bool(Some(c)) => out.extend(c.values_for_doc(doc).map(|b| f64::from(u8::from(b)))),
            _ => {}
        }
        if out.len() > 1 {
            out.sort_unstable_by(f64::total_cmp);
            out.dedup();
        }
    }
}

/// Widest value span of an integer column counted in an array rather than a hash map.
const DENSE_SPAN: u64 = 1 << 22;

/// Adds one to `counts[i]` for each distinct `i` of a document's values (a document counts once
/// per bucket, however often a list repeats a value).
fn count_each_once(scratch: &mut Vec<u64>, values: impl Iterator<Item = u64>, counts: &mut [u32]) {
    scratch.clear();
    scratch.extend(values);
    if scratch.len() > 1 {
        scratch.sort_unstable();
        scratch.dedup();
    }
    for &i in scratch.iter() {
        counts[i as usize] += 1;
    }
}

/// Counting state of one facet in one segment.
struct SegmentFacet {
    spec: FacetSpec,
    column: FacetColumn,
    counts: FacetCounts,
    scratch: Vec<f64>,
    ords: Vec<u64>,
    block_i64: Vec<Option<i64>>,
    block_u64: Vec<Option<u64>>,
}

impl SegmentFacet {
    /// Counts a block of documents; single-valued columns are read a block at a time.
    fn collect_block(&mut self, docs: &[DocId]) {
        let single = |c: &Column<u64>| c.get_cardinality() != Cardinality::Multivalued;
        match &mut self.column {
            FacetColumn::DenseInt(col, min, counts) if col.get_cardinality() != Cardinality::Multivalued => {
                self.block_i64.clear();
                self.block_i64.clear();
                self.block_i64.resize(docs.len(), None);
                col.first_vals(docs, &mut self.block_i64);
                for v in self.block_i64.iter().flatten() {
                    counts[v.abs_diff(*min) as usize] += 1;
                }
            }
            FacetColumn::Str(Some(col), counts) if single(col.ords()) => {
                self.block_u64.clear();
                self.block_u64.clear();
                self.block_u64.resize(docs.len(), None);
                col.ords().first_vals(docs, &mut self.block_u64);
                for &o in self.block_u64.iter().flatten() {
                    counts[o as usize] += 1;
                }
            }
            _ => {
                for &doc in docs {
                    self.collect(doc);
                }
            }
        }
    }

    fn collect(&mut self, doc: DocId) {
        match &mut self.column {
            FacetColumn::DenseInt(col, min, counts) => {
                let min = *min;
                return count_each_once(&mut self.ords, col.values_for_doc(doc).map(|v| v.abs_diff(min)), counts);
            }
            FacetColumn::Str(Some(col), counts) => {
                return count_each_once(&mut self.ords, col.ords().values_for_doc(doc), counts);
            }
            _ => {}
        }
        self.column.numbers(doc, &mut self.scratch);
        match &self.spec {
            FacetSpec::Terms { ty, .. } => {
                for &v in &self.scratch {
                    let key = match ty {
                        PropertyType::Boolean => FacetValue::Bool(v != 0.0),
                        PropertyType::Double => FacetValue::Float(v.to_bits()),
                        _ => FacetValue::Int(v as i64),
                    };
                    *self.counts.terms.entry(key).or_default() += 1;
                }
            }
            FacetSpec::Range { start, end, gap, .. } => {
                for &v in &self.scratch {
                    if v >= *start && v < *end {
                        let i = ((v - start) / gap) as usize;
                        if let Some(c) = self.counts.buckets.get_mut(i) {
                            *c += 1;
                        }
                    }
                }
            }
        }
    }

    fn harvest(mut self) -> FacetCounts {
        if let FacetColumn::DenseInt(_, min, counts) = &self.column {
            self.counts.dense = Some(Dense { min: *min, counts: counts.iter().map(|&c| u64::from(c)).collect() });
        }
        if let FacetColumn::Str(Some(col), counts) = &self.column {
            let mut s = String::new();
            for (ord, &c) in counts.iter().enumerate() {
                if c > 0 && col.ord_to_str(ord as u64, &mut s).unwrap_or(false) {
                    self.counts.terms.insert(FacetValue::Str(s.clone()), u64::from(c));
                }
            }
        }
        self.counts
    }
}

/// The per-segment side of [`Gather`].
pub struct SegmentGather {
    keys: Vec<SortKey>,
    limit: usize,
    key_column: Option<Column<i64>>,
    columns: Vec<SortColumn>,
    count: u64,
    hits: Vec<Hit>,
    /// The worst kept hit once `hits` has been cut to `limit`: later documents must beat it.
    worst: Option<Hit>,
    scratch: Vec<SortValue>,
    block: Vec<Option<i64>>,
    facets: Vec<SegmentFacet>,
}

impl SegmentGather {
    /// Keeps `doc` if it beats the worst kept hit. The key is read only when the sort values
    /// tie with that hit or the document is kept.
    fn consider(&mut self, doc: DocId, score: Score) {
        self.scratch.clear();
        self.scratch.extend(self.columns.iter().map(|c| c.value(doc, score)));
        let key = || self.key_column.as_ref().and_then(|c| c.first(doc)).unwrap_or(i64::MAX) as u64;
        if let Some(w) = &self.worst {
            match compare_parts(&self.keys, &self.scratch, 0, &w.values, 0) {
                Ordering::Greater => return,
                Ordering::Equal if key() >= w.key => return,
                _ => {}
            }
        }
        // Values went to a reused buffer: only kept documents cost an allocation.
        self.hits.push(Hit { values: self.scratch.clone(), key: key() });
        if self.hits.len() >= self.limit.saturating_mul(2).max(1024) {
            self.cut();
        }
    }

    fn cut(&mut self) {
        let hits = std::mem::take(&mut self.hits);
        self.hits = top(&self.keys, hits, self.limit);
        self.worst = self.hits.last().cloned();
    }
}

impl SegmentCollector for SegmentGather {
    type Fruit = Gathered;

    fn collect(&mut self, doc: DocId, score: Score) {
        self.count += 1;
        for f in &mut self.facets {
            f.collect(doc);
        }
        if self.limit > 0 {
            self.consider(doc, score);
        }
    }

    fn collect_block(&mut self, docs: &[DocId]) {
        self.count += docs.len() as u64;
        for f in &mut self.facets {
            f.collect_block(docs);
        }
        if self.limit == 0 {
            return;
        }
        // One integer or date sort key (the common case): read the block's values at once and
        // look closer only at documents that can beat the worst kept hit.
        if let ([SortColumn::Int(Some(col))], Some(worst)) = (self.columns.as_slice(), &self.worst)
            && col.get_cardinality() != Cardinality::Multivalued
        {
            let desc = self.keys[0].desc;
            let bar = match worst.values[0] {
                SortValue::Int(v) => Some(v),
                _ => None,
            };
            self.block.clear();
            self.block.resize(docs.len(), None);
            col.first_vals(docs, &mut self.block);
            let candidates: Vec<DocId> = docs
                .iter()
                .zip(&self.block)
                .filter(|(_, v)| match (v, bar) {
                    (_, None) => true,
                    (None, Some(_)) => false,
                    (Some(v), Some(b)) => {
                        if desc {
                            *v >= b
                        } else {
                            *v <= b
                        }
                    }
                })
                .map(|(d, _)| *d)
                .collect();
            for doc in candidates {
                self.consider(doc, 0.0);
            }
            return;
        }
        for &doc in docs {
            self.consider(doc, 0.0);
        }
    }

    fn harvest(mut self) -> Gathered {
        self.cut();
        // Ordinals mean nothing outside the segment: turn them into strings.
        let mut s = String::new();
        for hit in &mut self.hits {
            for (v, col) in hit.values.iter_mut().zip(&self.columns) {
                if let (SortValue::Ord(o), SortColumn::Str(Some(col))) = (&*v, col) {
                    *v = match col.ord_to_str(*o, &mut s) {
                        Ok(true) => SortValue::Str(s.clone()),
                        _ => SortValue::Missing,
                    };
                }
            }
        }
        Gathered {
            count: self.count,
            hits: self.hits,
            facets: self.facets.into_iter().map(SegmentFacet::harvest).collect(),
        }
    }
}

impl Collector for Gather {
    type Fruit = Gathered;
    type Child = SegmentGather;

    fn for_segment(&self, _ord: SegmentOrdinal, reader: &SegmentReader) -> tantivy::Result<SegmentGather> {
        let columns = self.keys.iter().map(|k| sort_column(reader, k)).collect::<tantivy::Result<Vec<_>>>()?;
        let facets = self
            .facets
            .iter()
            .map(|spec| {
                let mut counts = FacetCounts::default();
                if let FacetSpec::Range { start, end, gap, .. } = spec {
                    counts.buckets = vec![0; range_buckets(*start, *end, *gap)];
                }
                Ok(SegmentFacet {
                    spec: spec.clone(),
                    column: FacetColumn::open(reader, spec)?,
                    counts,
                    scratch: Vec::new(),
                    ords: Vec::new(),
                    block_i64: Vec::new(),
                    block_u64: Vec::new(),
                })
            })
            .collect::<tantivy::Result<Vec<_>>>()?;
        Ok(SegmentGather {
            keys: self.keys.clone(),
            limit: self.limit,
            key_column: reader.fast_fields().column_opt(KEY)?,
            columns,
            count: 0,
            hits: Vec::new(),
            // Within a segment strings compare by ordinal, which the bar (strings) is not.
            worst: if self
                .keys
                .iter()
                .any(|k| matches!(k.by, SortBy::Property { ty: PropertyType::String | PropertyType::Text, .. }))
            {
                None
            } else {
                self.bar.get()
            },
            scratch: Vec::with_capacity(self.keys.len()),
            block: Vec::new(),
            facets,
        })
    }

    fn requires_scoring(&self) -> bool {
        self.keys.iter().any(|k| k.by == SortBy::Score)
    }

    fn collect_segment(
        &self,
        weight: &dyn tantivy::query::Weight,
        segment_ord: SegmentOrdinal,
        reader: &SegmentReader,
    ) -> tantivy::Result<Gathered> {
        let count_only = self.limit == 0 && self.facets.is_empty();
        // A page already filled by other segments with values this segment's range cannot beat:
        // only its count is needed.
        let beaten = self.skip_key().is_some_and(|(name, desc)| !self.can_beat(desc, int_bounds(reader, name)));
        if count_only || beaten {
            // A term query answers from its document frequency, no scan.
            let count = u64::from(weight.count(reader)?);
            return Ok(Gathered { count, ..Default::default() });
        }
        let mut child = self.for_segment(segment_ord, reader)?;
        let alive = reader.alive_bitset();
        if self.requires_scoring() {
            weight.for_each(reader, &mut |doc, score| {
                if alive.is_none_or(|a| a.is_alive(doc)) {
                    child.collect(doc, score);
                }
            })?;
        } else {
            weight.for_each_no_score(reader, &mut |docs| match alive {
                // Stores never delete, so this is the path taken.
                None => child.collect_block(docs),
                Some(a) => {
                    for &doc in docs {
                        if a.is_alive(doc) {
                            child.collect(doc, 0.0);
                        }
                    }
                }
            })?;
        }
        let gathered = child.harvest();
        if self.limit > 0 && gathered.hits.len() >= self.limit {
            self.bar.raise(&self.keys, &gathered.hits[self.limit - 1]);
        }
        Ok(gathered)
    }

    fn merge_fruits(&self, fruits: Vec<Gathered>) -> tantivy::Result<Gathered> {
        Ok(Gathered::merge(&self.keys, self.limit, fruits, self.facets.len()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(v: SortValue, key: u64) -> Hit {
        Hit { values: vec![v], key }
    }

    #[test]
    fn missing_sorts_last_both_ways_and_key_breaks_ties() {
        for desc in [false, true] {
            let keys = vec![SortKey { by: SortBy::Score, desc }];
            let hits = vec![
                hit(SortValue::Missing, 1),
                hit(SortValue::Int(5), 4),
                hit(SortValue::Int(7), 3),
                hit(SortValue::Int(5), 2),
            ];
            let got: Vec<u64> = top(&keys, hits, 10).iter().map(|h| h.key).collect();
            assert_eq!(got, if desc { vec![3, 2, 4, 1] } else { vec![2, 4, 3, 1] });
        }
    }

    /// A deterministic generator of numbers below its argument (an LCG's high bits).
    fn below(mut seed: u64) -> impl FnMut(u64) -> u64 {
        move |n| {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (seed >> 33) % n
        }
    }

    #[test]
    fn dense_counts_merge_like_a_map() {
        let mut next = below(7);
        for _ in 0..200 {
            // The first part is far from the others, so merging spills into the map and later
            // parts are dense again: values then sit in both and must be summed.
            let mut parts = vec![Dense { min: 1 << 40, counts: vec![1] }];
            let mut model: std::collections::BTreeMap<i64, u64> = [(1 << 40, 1)].into();
            for _ in 0..1 + next(5) {
                let min = next(100) as i64 - 50;
                let counts: Vec<u64> = (0..1 + next(40)).map(|_| next(3)).collect();
                for (i, c) in counts.iter().enumerate() {
                    if *c > 0 {
                        *model.entry(min + i as i64).or_default() += c;
                    }
                }
                parts.push(Dense { min, counts });
            }
            let mut all = FacetCounts::default();
            for d in parts {
                all.merge(FacetCounts { dense: Some(d), ..Default::default() });
            }
            let mut got: Vec<(FacetValue, u64)> = all.entries();
            got.sort();
            let want: Vec<(FacetValue, u64)> = model.into_iter().map(|(v, c)| (FacetValue::Int(v), c)).collect();
            assert_eq!(got, want);
        }
    }

    #[test]
    fn top_terms_of_a_dense_array_match_a_full_sort() {
        let mut next = below(11);
        let order = |a: &(FacetValue, u64), b: &(FacetValue, u64)| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0));
        for _ in 0..100 {
            let counts: Vec<u64> = (0..1 + next(300)).map(|_| if next(3) == 0 { 0 } else { next(6) }).collect();
            let f = FacetCounts { dense: Some(Dense { min: next(50) as i64 - 25, counts }), ..Default::default() };
            let mut want = f.entries();
            want.sort_by(order);
            for limit in [0, 1, 5, 1000] {
                let got = f.top_terms(limit, order);
                assert_eq!(got, want.iter().take(limit).cloned().collect::<Vec<_>>(), "limit {limit}");
            }
        }
    }

    #[test]
    fn top_keeps_the_best() {
        let keys = vec![SortKey { by: SortBy::Score, desc: false }];
        let hits: Vec<Hit> = (0..100u64).rev().map(|i| hit(SortValue::Float(i as f64), i)).collect();
        let got: Vec<u64> = top(&keys, hits, 3).iter().map(|h| h.key).collect();
        assert_eq!(got, vec![0, 1, 2]);
    }
}
