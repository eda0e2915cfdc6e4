//! `/query` (SPEC §6): a request, its search over a store's shards, and the answer's encodings.
//!
//! The index answers which records match, in what order, and the facet counts; the items
//! themselves are read from the lake by key, `fl` properties only, a batch at a time. Under the
//! default sort (`_m1key`), a page reaching past [`STREAM_ABOVE`] items is not collected at all:
//! its keys are found window by window of at most [`KEY_WINDOW`] keys while the items are written, so an
//! answer of millions of items, or a page millions deep, streams in bounded memory. Under other
//! sorts the best `start + rows` hits are kept, which is what the sort needs.
//!
//! Every store indexes every lake record, so naming several stores asks the same question of
//! the same records: each named store must exist and be enabled, and the first one answers.

use std::io::Write;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use m1_engine::values::{format_date_ms, parse_date};
use m1_engine::{Environment, KEY, PropertyType, Schema, TableState};
use serde_json::{Map, Value, json};

use std::ops::Bound;

use tantivy::Term;
use tantivy::query::{BooleanQuery, Occur, RangeQuery};

use super::collect::{FacetSpec, FacetValue, Gather, Gathered, SortBy, SortKey, range_buckets};
use super::indexer::KeyRanges;
use super::shard::Generation;
use super::translate::{check_properties, translate};
use super::{DataStore, Stores};
use crate::encode::{value_at, write_json_array};
use crate::error::{QueryError, Result};
use crate::lake::{get_in, output_schema};
use crate::syntax::{self, Query};

/// Keys read from the lake per batch of items.
pub const ITEM_BATCH: usize = 4096;

/// Pages under the `_m1key` sort that end beyond this many items are streamed by key windows.
pub const STREAM_ABOVE: usize = 10_000;

/// Most keys searched per window when streaming (a lake is cut into about 64 windows of 4,096
/// to this many keys).
pub const KEY_WINDOW: u64 = 1 << 18;

fn window_size(end_key: u64) -> u64 {
    (end_key / 64).clamp(4096, KEY_WINDOW)
}

/// Most buckets a range facet may ask for.
pub const MAX_RANGE_BUCKETS: usize = 100_000;

/// A `/query` request.
#[derive(Debug, Clone, Default)]
pub struct QueryRequest {
    /// Store names (at least one).
    pub stores: Vec<String>,
    /// Query text.
    pub q: String,
    /// Properties of each item (`_m1key` always comes first); all when `None`.
    pub fl: Option<Vec<String>>,
    /// Items to skip.
    pub start: usize,
    /// Items to return (0: count and facets only).
    pub rows: usize,
    /// `prop asc|desc, ...`, `score desc`; default `_m1key asc`.
    pub sort: Option<String>,
    /// Facet requests, a JSON object of `{"name": {"type": "terms"|"range", ...}}`.
    pub facets: Option<Value>,
    /// Answer as the environment was at this table version (time travel); `None`: now.
    pub version: Option<u64>,
}

impl QueryRequest {
    /// A count-only request of `q` against one store.
    pub fn new(store: &str, q: &str) -> QueryRequest {
        QueryRequest { stores: vec![store.to_string()], q: q.to_string(), ..Default::default() }
    }
}

/// The answer: the count, the keys of the requested page in order, and facets; items are read
/// from the lake on demand.
pub struct QueryAnswer {
    /// Matching records.
    pub count: u64,
    /// Facet results, when asked: `{"name": {"buckets": [{"val": v, "count": c}, ..]}}`.
    pub facets: Option<Map<String, Value>>,
    /// Columns of each item.
    pub schema: SchemaRef,
    state: Arc<TableState>,
    page: Page,
}

impl std::fmt::Debug for QueryAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryAnswer").field("count", &self.count).field("facets", &self.facets).finish_non_exhaustive()
    }
}

/// Where the page's keys come from.
enum Page {
    /// Collected while searching.
    Keys(Vec<u64>),
    /// Found window by window of keys while the items are read (`_m1key` sort, large pages).
    Windows(Windows),
}

/// A streamed page under the `_m1key` sort.
struct Windows {
    query: Query,
    generations: Vec<Generation>,
    desc: bool,
    start: usize,
    rows: usize,
    /// One past the largest key of the snapshot searched.
    end_key: u64,
}

impl Windows {
    /// Matching keys in `[lo, hi)`, in the sort's order.
    fn keys_in(&self, state: &TableState, lo: u64, hi: u64) -> Result<Vec<u64>> {
        let mut keys = Vec::new();
        for g in &self.generations {
            let field = g.index.schema().get_field(KEY)?;
            let window = RangeQuery::new(
                Bound::Included(Term::from_field_i64(field, lo as i64)),
                Bound::Excluded(Term::from_field_i64(field, hi as i64)),
            );
            let q = BooleanQuery::new(vec![
                (Occur::Must, translate(&self.query, &state.schema, &g.index)?),
                (Occur::Must, Box::new(window)),
            ]);
            keys.extend(g.reader.searcher().search(&q, &KeyCollector)?);
        }
        keys.sort_unstable();
        if self.desc {
            keys.reverse();
        }
        Ok(keys)
    }
}

/// Iterates the keys of a streamed page, window by window.
struct WindowKeys<'a> {
    windows: &'a Windows,
    state: &'a TableState,
    /// Next window: its lower end (ascending) or upper end (descending).
    cursor: u64,
    skip: usize,
    left: usize,
    buffer: std::vec::IntoIter<u64>,
}

impl WindowKeys<'_> {
    /// The next chunk of at most `n` keys, or `None` at the end.
    fn next_chunk(&mut self, n: usize) -> Result<Option<Vec<u64>>> {
        let mut out = Vec::with_capacity(n.min(self.left));
        while out.len() < n && self.left > 0 {
            match self.buffer.next() {
                Some(k) if self.skip > 0 => {
                    let _ = k;
                    self.skip -= 1;
                }
                Some(k) => {
                    out.push(k);
                    self.left -= 1;
                }
                None => {
                    let w = self.windows;
                    let (lo, hi) = if w.desc {
                        if self.cursor == 0 {
                            break;
                        }
                        (self.cursor.saturating_sub(window_size(w.end_key)), self.cursor)
                    } else {
                        if self.cursor >= w.end_key {
                            break;
                        }
                        (self.cursor, (self.cursor + window_size(w.end_key)).min(w.end_key))
                    };
                    self.cursor = if w.desc { lo } else { hi };
                    self.buffer = w.keys_in(self.state, lo, hi)?.into_iter();
                }
            }
        }
        Ok((!out.is_empty()).then_some(out))
    }
}

/// Collects the `_m1key` of every match.
struct KeyCollector;

/// [`KeyCollector`] for one segment.
struct SegmentKeys(Option<tantivy::columnar::Column<i64>>, Vec<u64>);

impl tantivy::collector::SegmentCollector for SegmentKeys {
    type Fruit = Vec<u64>;

    fn collect(&mut self, doc: tantivy::DocId, _score: tantivy::Score) {
        if let Some(k) = self.0.as_ref().and_then(|c| c.first(doc)) {
            self.1.push(k as u64);
        }
    }

    fn harvest(self) -> Vec<u64> {
        self.1
    }
}

impl tantivy::collector::Collector for KeyCollector {
    type Fruit = Vec<u64>;
    type Child = SegmentKeys;

    fn for_segment(&self, _: tantivy::SegmentOrdinal, reader: &tantivy::SegmentReader) -> tantivy::Result<SegmentKeys> {
        Ok(SegmentKeys(reader.fast_fields().column_opt(KEY)?, Vec::new()))
    }

    fn requires_scoring(&self) -> bool {
        false
    }

    fn merge_fruits(&self, fruits: Vec<Vec<u64>>) -> tantivy::Result<Vec<u64>> {
        Ok(fruits.concat())
    }
}

/// Restricts `query` to the records of `state` when the store holds others (segments a restore
/// removed, or committed after an old version asked for); refuses an old version whose records
/// the store has not all indexed.
fn confine_to_state(
    env: &Environment,
    query: Query,
    store: &DataStore,
    state: &TableState,
    old: bool,
) -> Result<Query> {
    let mut live = KeyRanges::default();
    for s in &state.segments {
        live.insert(s.start, s.end);
    }
    let mut indexed = store.indexed()?;
    if old && !indexed.contains_all(&live) && store.def.autocommit {
        // Segments a restore has since removed were never indexed: they are still in the lake.
        store.index_state(env, state)?;
        for s in &store.shards {
            s.reload()?;
        }
        indexed = store.indexed()?;
    }
    if old && !indexed.contains_all(&live) {
        return Err(QueryError::BadRequest(format!(
            "store '{}' cannot answer version {}: it lacks records of that version and does not follow \
             the lake by itself (autocommit is off); query the lake with get/range, or turn autocommit on",
            store.def.name, state.version
        )));
    }
    if live.contains_all(&indexed) {
        return Ok(query);
    }
    let ranges = live
        .ranges()
        .iter()
        .map(|&(s, e)| Query::Range {
            field: Some(KEY.to_string()),
            lower: Bound::Included(s.to_string()),
            upper: Bound::Excluded(e.to_string()),
        })
        .collect();
    let within = if live.ranges().is_empty() {
        // No record at all: nothing matches.
        Query::Bool { must: vec![], should: vec![], must_not: vec![Query::All] }
    } else {
        Query::Bool { must: vec![], should: ranges, must_not: vec![] }
    };
    Ok(Query::Bool { must: vec![query, within], should: vec![], must_not: vec![] })
}

/// Runs a query.
pub fn run(env: &Environment, stores: &Stores, req: &QueryRequest) -> Result<QueryAnswer> {
    let mut query = syntax::parse(&req.q)?;
    let state = match req.version {
        Some(v) => env.state_at(v)?,
        None => env.fresh_snapshot()?,
    };
    check_properties(&query, &state.schema)?;
    let keys = parse_sort(req.sort.as_deref(), &state.schema)?;
    let facets = match &req.facets {
        Some(f) => parse_facets(f, &state.schema)?,
        None => Vec::new(),
    };
    let schema = output_schema(&state.schema, req.fl.as_deref())?;
    if req.stores.is_empty() {
        return Err(QueryError::BadRequest("name a store to query, e.g. store=index".into()));
    }
    let mut opened = Vec::new();
    for name in &req.stores {
        opened.push(stores.store(env, name)?);
    }
    let store = &opened[0];
    store.freshen(env)?;
    query = confine_to_state(env, query, store, &state, req.version.is_some())?;
    let limit = req.start.saturating_add(req.rows);
    let by_key = matches!(keys.as_slice(), [SortKey { by: SortBy::Property { name, .. }, .. }] if name == KEY);
    let streamed = by_key && req.rows > 0 && limit > STREAM_ABOVE;
    let kept = if req.rows == 0 || streamed { 0 } else { limit };
    let collector = Gather::new(keys.clone(), kept, facets.clone());
    let searchers: Vec<_> = store.shards.iter().flat_map(|s| s.generations()).collect();
    let search = |g: &Generation| -> Result<Gathered> {
        let tq = translate(&query, &state.schema, &g.index)?;
        Ok(super::collect::search(&g.reader.searcher(), &*tq, &collector)?)
    };
    let parts = match searchers.as_slice() {
        // One index: no thread to start and join.
        [one] => vec![search(one)?],
        _ => std::thread::scope(|scope| {
            let jobs: Vec<_> = searchers.iter().map(|g| scope.spawn(|| search(g))).collect();
            jobs.into_iter().map(|j| crate::error::joined("a search thread", j.join())).collect::<Result<Vec<_>>>()
        })?,
    };
    let gathered = Gathered::merge(&keys, collector.limit, parts, facets.len());
    let page = if streamed {
        Page::Windows(Windows {
            query,
            generations: searchers,
            desc: keys[0].desc,
            start: req.start,
            rows: req.rows,
            end_key: state.next_key,
        })
    } else {
        Page::Keys(gathered.hits.iter().skip(req.start).map(|h| h.key).collect())
    };
    let facets = (!facets.is_empty()).then(|| render_facets(req.facets.as_ref(), &facets, &gathered));
    Ok(QueryAnswer { count: gathered.count, facets, schema, state, page })
}

impl QueryAnswer {
    /// The page's keys, [`ITEM_BATCH`] at a time, in order.
    pub fn key_chunks(&self) -> impl Iterator<Item = Result<Vec<u64>>> + '_ {
        let mut fixed = match &self.page {
            Page::Keys(k) => Some(k.chunks(ITEM_BATCH)),
            Page::Windows(_) => None,
        };
        let mut streamed = match &self.page {
            Page::Windows(w) => Some(WindowKeys {
                windows: w,
                state: &self.state,
                cursor: if w.desc { w.end_key } else { 0 },
                skip: w.start,
                left: w.rows,
                buffer: Vec::new().into_iter(),
            }),
            Page::Keys(_) => None,
        };
        std::iter::from_fn(move || match (&mut fixed, &mut streamed) {
            (Some(chunks), _) => chunks.next().map(|c| Ok(c.to_vec())),
            (None, Some(w)) => w.next_chunk(ITEM_BATCH).transpose(),
            (None, None) => None,
        })
    }

    /// The page's keys, in order (all held in memory).
    pub fn keys(&self) -> Result<Vec<u64>> {
        let mut out = Vec::new();
        for chunk in self.key_chunks() {
            out.extend(chunk?);
        }
        Ok(out)
    }

    /// The page's items as Arrow batches, read from the lake [`ITEM_BATCH`] at a time.
    pub fn batches<'a>(&'a self, env: &'a Environment) -> impl Iterator<Item = Result<RecordBatch>> + 'a {
        self.key_chunks().map(move |keys| get_in(env, &self.state, &self.schema, &keys?))
    }

    /// The page's items as JSON records.
    pub fn items(&self, env: &Environment) -> Result<Vec<Map<String, Value>>> {
        let mut out = Vec::new();
        for b in self.batches(env) {
            out.extend(crate::encode::records(&b?));
        }
        Ok(out)
    }

    /// Writes `{"count": N, "items": [...], "facets": {...}}`, streaming the items.
    pub fn write_json<W: Write>(&self, env: &Environment, out: &mut W) -> Result<()> {
        write!(out, "{{\"count\": {}, \"items\": ", self.count)?;
        write_json_array(out, self.batches(env))?;
        if let Some(f) = &self.facets {
            out.write_all(b", \"facets\": ")?;
            serde_json::to_writer(&mut *out, f).map_err(std::io::Error::from)?;
        }
        out.write_all(b"}\n")?;
        Ok(())
    }

    /// Writes the items as CSV with a header row (`_m1key` then the `fl` properties); lists are
    /// JSON arrays. CSV carries no count and no facets.
    pub fn write_csv<W: Write>(&self, env: &Environment, out: &mut W) -> Result<()> {
        let mut w = csv::Writer::from_writer(out);
        let names: Vec<&str> = self.schema.fields().iter().map(|f| f.name().as_str()).collect();
        w.write_record(&names).map_err(csv_error)?;
        let mut row_buf: Vec<String> = Vec::with_capacity(names.len());
        for batch in self.batches(env) {
            let batch = batch?;
            for row in 0..batch.num_rows() {
                row_buf.clear();
                for col in batch.columns() {
                    row_buf.push(match value_at(col.as_ref(), row) {
                        None | Some(Value::Null) => String::new(),
                        Some(Value::String(s)) => s,
                        Some(v) => v.to_string(),
                    });
                }
                w.write_record(&row_buf).map_err(csv_error)?;
            }
        }
        w.flush()?;
        Ok(())
    }
}

fn csv_error(e: csv::Error) -> QueryError {
    QueryError::Output(std::io::Error::other(e.to_string()))
}

/// Parses `prop asc, prop desc, score desc`; the default is `_m1key asc`.
pub fn parse_sort(sort: Option<&str>, schema: &Schema) -> Result<Vec<SortKey>> {
    let Some(text) = sort.map(str::trim).filter(|s| !s.is_empty()) else {
        return Ok(vec![SortKey { by: SortBy::Property { name: KEY.into(), ty: PropertyType::Integer }, desc: false }]);
    };
    let mut keys = Vec::new();
    for part in text.split(',') {
        let mut words = part.split_whitespace();
        let name = words.next().ok_or_else(|| {
            QueryError::BadRequest(format!("sort '{text}' has an empty key; use e.g. 'date desc, name asc'"))
        })?;
        let desc = match words.next() {
            None => name == "score",
            Some(d) if d.eq_ignore_ascii_case("asc") => false,
            Some(d) if d.eq_ignore_ascii_case("desc") => true,
            Some(d) => return Err(QueryError::BadRequest(format!("sort direction must be asc or desc, not '{d}'"))),
        };
        if let Some(extra) = words.next() {
            return Err(QueryError::BadRequest(format!("unexpected '{extra}' in sort key '{}'", part.trim())));
        }
        let by = if name == "score" {
            SortBy::Score
        } else {
            let p = schema.get(name).ok_or_else(|| QueryError::UnknownProperty(name.to_string()))?;
            if p.ty == PropertyType::Text {
                return Err(QueryError::BadRequest(format!(
                    "cannot sort by '{name}': it is a text property (tokenized); sort by a string property"
                )));
            }
            if !p.is_fast() {
                return Err(QueryError::BadRequest(format!(
                    "cannot sort by '{name}': it is declared with fast false, so the data stores keep no \
                     column of it; add a property with \"fast\": true to sort on"
                )));
            }
            SortBy::Property { name: p.name, ty: p.ty }
        };
        keys.push(SortKey { by, desc });
    }
    Ok(keys)
}

/// Checks and reads the `facets` parameter.
pub fn parse_facets(facets: &Value, schema: &Schema) -> Result<Vec<FacetSpec>> {
    let bad = |m: String| QueryError::BadRequest(m);
    let obj = facets.as_object().ok_or_else(|| bad("facets must be a JSON object of named facets".into()))?;
    let mut out = Vec::new();
    for (name, spec) in obj {
        let field = spec
            .get("field")
            .and_then(Value::as_str)
            .ok_or_else(|| bad(format!("facet '{name}' needs a \"field\"")))?;
        let p = schema.get(field).ok_or_else(|| QueryError::UnknownProperty(field.to_string()))?;
        if p.ty == PropertyType::Text {
            return Err(bad(format!("facet '{name}': cannot facet on text property '{field}'; use a string property")));
        }
        if !p.is_fast() {
            return Err(bad(format!(
                "facet '{name}': cannot facet on '{field}': it is declared with fast false, so the data \
                 stores keep no column of it; add a property with \"fast\": true to facet on"
            )));
        }
        let kind = spec.get("type").and_then(Value::as_str).unwrap_or("terms");
        out.push(match kind {
            "terms" => {
                let limit = match spec.get("limit") {
                    None => 10,
                    Some(v) => v
                        .as_u64()
                        .filter(|&n| n > 0)
                        .ok_or_else(|| bad(format!("facet '{name}': limit must be a positive integer")))?
                        as usize,
                };
                FacetSpec::Terms { field: p.name, ty: p.ty, limit }
            }
            "range" => {
                if !matches!(p.ty, PropertyType::Integer | PropertyType::Double | PropertyType::Date) {
                    return Err(bad(format!("facet '{name}': range facets need an integer, double or date property")));
                }
                let num = |key: &str| -> Result<f64> {
                    let v = spec.get(key).ok_or_else(|| bad(format!("range facet '{name}' needs \"{key}\"")))?;
                    facet_number(v, p.ty, key == "gap").ok_or_else(|| {
                        bad(format!("range facet '{name}': \"{key}\" = {v} is not a valid {}", p.ty.name()))
                    })
                };
                let (start, end, gap) = (num("start")?, num("end")?, num("gap")?);
                if gap <= 0.0 || end <= start {
                    return Err(bad(format!("range facet '{name}': needs start < end and gap > 0")));
                }
                if range_buckets(start, end, gap) > MAX_RANGE_BUCKETS {
                    return Err(bad(format!("range facet '{name}': more than {MAX_RANGE_BUCKETS} buckets")));
                }
                FacetSpec::Range { field: p.name, ty: p.ty, start, end, gap }
            }
            other => return Err(bad(format!("facet '{name}': type must be terms or range, not '{other}'"))),
        });
    }
    Ok(out)
}

/// A range facet bound or gap: a number, or for dates an ISO date (bounds) or a duration like
/// `1d`, `+1DAY`, `6h`, `30m`, `10s` (gap; a bare number is milliseconds).
fn facet_number(v: &Value, ty: PropertyType, gap: bool) -> Option<f64> {
    if let Some(n) = v.as_f64() {
        return Some(if ty == PropertyType::Date && !gap { m1_engine::values::epoch_to_ms(n)? as f64 } else { n });
    }
    let s = v.as_str()?.trim();
    if let Ok(n) = s.parse::<f64>() {
        return facet_number(&json!(n), ty, gap);
    }
    if ty != PropertyType::Date {
        return None;
    }
    if !gap {
        return parse_date(s).map(|ms| ms as f64);
    }
    let s = s.trim_start_matches('+').to_ascii_lowercase();
    let split = s.find(|c: char| !c.is_ascii_digit() && c != '.')?;
    let (n, unit) = s.split_at(split);
    let n: f64 = n.parse().ok()?;
    let ms = match unit {
        "ms" | "millisecond" | "milliseconds" => 1.0,
        "s" | "second" | "seconds" => 1e3,
        "m" | "minute" | "minutes" => 60e3,
        "h" | "hour" | "hours" => 3_600e3,
        "d" | "day" | "days" => 86_400e3,
        "w" | "week" | "weeks" => 7.0 * 86_400e3,
        _ => return None,
    };
    Some(n * ms)
}

fn render_facets(raw: Option<&Value>, specs: &[FacetSpec], gathered: &Gathered) -> Map<String, Value> {
    let names: Vec<&String> = raw.and_then(Value::as_object).map(|o| o.keys().collect()).unwrap_or_default();
    let mut out = Map::new();
    for ((name, spec), counts) in names.into_iter().zip(specs).zip(&gathered.facets) {
        let buckets: Vec<Value> = match spec {
            FacetSpec::Terms { ty, limit, .. } => {
                let order =
                    |a: &(FacetValue, u64), b: &(FacetValue, u64)| b.1.cmp(&a.1).then_with(|| facet_order(&a.0, &b.0));
                counts
                    .top_terms(*limit, order)
                    .into_iter()
                    .map(|(v, c)| json!({"val": facet_json(&v, *ty), "count": c}))
                    .collect()
            }
            FacetSpec::Range { ty, start, gap, end, .. } => (0..range_buckets(*start, *end, *gap))
                .map(|i| {
                    let lo = start + i as f64 * gap;
                    let val = match ty {
                        PropertyType::Date => Value::String(format_date_ms(lo as i64)),
                        PropertyType::Integer if lo.fract() == 0.0 => json!(lo as i64),
                        _ => json!(lo),
                    };
                    json!({"val": val, "count": counts.buckets.get(i).copied().unwrap_or(0)})
                })
                .collect(),
        };
        out.insert(name.clone(), json!({"buckets": buckets}));
    }
    out
}

/// Ties in count are broken by value, ascending (doubles numerically).
fn facet_order(a: &FacetValue, b: &FacetValue) -> std::cmp::Ordering {
    match (a, b) {
        (FacetValue::Float(x), FacetValue::Float(y)) => f64::from_bits(*x).total_cmp(&f64::from_bits(*y)),
        (FacetValue::Str(x), FacetValue::Str(y)) => x.as_bytes().cmp(y.as_bytes()),
        _ => a.cmp(b),
    }
}

fn facet_json(v: &FacetValue, ty: PropertyType) -> Value {
    match v {
        FacetValue::Bool(b) => json!(b),
        FacetValue::Int(i) if ty == PropertyType::Date => Value::String(format_date_ms(*i)),
        FacetValue::Int(i) => json!(i),
        FacetValue::Float(bits) => json!(f64::from_bits(*bits)),
        FacetValue::Str(s) => Value::String(s.clone()),
    }
}
