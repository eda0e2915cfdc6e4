//! `session/query` requests and answers: paging, the sort order and merging shard results.
//!
//! Sort: `prop asc|desc, ...` on dotted paths (direction defaults to `asc`). Values order as
//! booleans < numbers < strings; a document without a value at the path sorts last in either
//! direction; the first scalar of an array is its sort value; ties go to the key (ascending,
//! as strings). With no sort, documents come in key order. `score` is accepted and ignored
//! (there is no relevance score).

use std::cmp::{Ordering, Reverse};
use std::sync::Arc;

use serde::Serialize;
use serde_json::{Map, Value};

use super::doc::lookup;
use crate::error::{QueryError, Result};

/// Rows returned when a query does not say.
pub const DEFAULT_ROWS: u64 = 10;

/// A `session/query` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionQuery {
    /// Query text (SPEC §6 syntax, dotted names).
    pub q: String,
    /// `prop asc|desc, ...`, if any.
    pub sort: Option<String>,
    /// Matches to skip.
    pub start: u64,
    /// Matches to return (0: only count them).
    pub rows: u64,
}

impl SessionQuery {
    /// A query for `q` with the defaults: no sort, start 0, [`DEFAULT_ROWS`] rows.
    pub fn new(q: impl Into<String>) -> SessionQuery {
        SessionQuery { q: q.into(), sort: None, start: 0, rows: DEFAULT_ROWS }
    }
}

/// The answer: how many documents match, and the requested page of them as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SessionResult {
    /// Matching documents.
    pub count: u64,
    /// The page, in sort order.
    pub items: Vec<Value>,
}

/// An answer whose documents are the stored JSON bytes (shared, not copied), for callers that
/// write them out as they are.
#[derive(Debug, Clone)]
pub struct RawPage {
    /// Matching documents.
    pub count: u64,
    /// The page, in sort order: each document's JSON.
    pub docs: Vec<std::sync::Arc<[u8]>>,
}

impl RawPage {
    /// Writes `{"count": N, "items": [...]}`, one document at a time.
    pub fn write_json<W: std::io::Write>(&self, out: &mut W) -> std::io::Result<()> {
        write!(out, "{{\"count\": {}, \"items\": [", self.count)?;
        for (i, d) in self.docs.iter().enumerate() {
            out.write_all(if i == 0 { b"\n" } else { b",\n" })?;
            out.write_all(d)?;
        }
        out.write_all(if self.docs.is_empty() { b"]}\n" } else { b"\n]}\n" })
    }
}

/// A parsed sort order.
#[derive(Debug, Clone, Default)]
pub struct SortSpec {
    fields: Vec<(String, bool)>,
}

impl SortSpec {
    /// Parses `prop asc|desc, ...`.
    pub fn parse(sort: Option<&str>) -> Result<SortSpec> {
        let mut fields = Vec::new();
        for part in sort.unwrap_or("").split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let mut words = part.split_whitespace();
            let name = words.next().unwrap_or_default();
            let desc = match words.next().map(str::to_ascii_lowercase).as_deref() {
                None | Some("asc") => false,
                Some("desc") => true,
                Some(other) => {
                    return Err(QueryError::BadRequest(format!(
                        "sort: '{part}': direction must be asc or desc, not '{other}'"
                    )));
                }
            };
            if words.next().is_some() {
                return Err(QueryError::BadRequest(format!("sort: '{part}': expected 'property asc|desc'")));
            }
            if name != "score" {
                fields.push((name.to_string(), desc));
            }
        }
        Ok(SortSpec { fields })
    }

    /// Whether documents must be read to sort (otherwise the key alone orders them).
    pub fn needs_docs(&self) -> bool {
        !self.fields.is_empty()
    }

    /// The sort key of a document.
    pub fn key_of(&self, doc: &Map<String, Value>) -> Vec<Cell> {
        self.fields
            .iter()
            .map(|(path, desc)| {
                let v = lookup(doc, path).and_then(sort_value);
                match (v, desc) {
                    (None, _) => Cell::Missing,
                    (Some(v), false) => Cell::Asc(v),
                    (Some(v), true) => Cell::Desc(Reverse(v)),
                }
            })
            .collect()
    }
}

fn sort_value(v: &Value) -> Option<SortValue> {
    match v {
        Value::Bool(b) => Some(SortValue::Bool(*b)),
        Value::Number(n) => n.as_f64().map(|f| SortValue::Num(Num(f))),
        Value::String(s) => Some(SortValue::Str(s.clone())),
        Value::Array(items) => items.iter().find_map(sort_value),
        _ => None,
    }
}

/// A number ordered by `f64::total_cmp`.
#[derive(Debug, Clone, Copy)]
pub struct Num(f64);

impl PartialEq for Num {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Num {}
impl PartialOrd for Num {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Num {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// One sortable value; the variant order is the order between types.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum SortValue {
    /// A boolean.
    Bool(bool),
    /// A number.
    Num(Num),
    /// A string.
    Str(String),
}

/// One field of a sort key. Within one field every document has `Asc`/`Missing` or
/// `Desc`/`Missing`, and `Missing` is the last variant, so missing values sort last either way.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Cell {
    /// Ascending.
    Asc(SortValue),
    /// Descending.
    Desc(Reverse<SortValue>),
    /// No value.
    Missing,
}

/// A match on its way to the page.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Hit {
    /// Sort key.
    pub sort: Vec<Cell>,
    /// Document key (the tie-break).
    pub key: Arc<str>,
    /// The stored document.
    pub doc: Arc<[u8]>,
}

/// Keeps the `k` smallest hits.
#[derive(Debug)]
pub struct TopK {
    k: usize,
    heap: std::collections::BinaryHeap<Hit>,
}

impl TopK {
    /// Keeps up to `k`.
    pub fn new(k: usize) -> TopK {
        TopK { k, heap: std::collections::BinaryHeap::with_capacity(k.min(4096) + 1) }
    }

    /// Whether a hit with this sort key could enter (lets callers skip work).
    pub fn wants(&self, sort: &[Cell], key: &str) -> bool {
        if self.heap.len() < self.k {
            return true;
        }
        self.heap.peek().is_some_and(|top| (sort, key) < (&top.sort[..], &top.key[..]))
    }

    /// Offers a hit.
    pub fn push(&mut self, hit: Hit) {
        if self.k == 0 {
            return;
        }
        if self.heap.len() < self.k {
            self.heap.push(hit);
        } else if let Some(mut top) = self.heap.peek_mut()
            && hit < *top
        {
            *top = hit;
        }
    }

    /// The kept hits, smallest first.
    pub fn into_sorted(self) -> Vec<Hit> {
        self.heap.into_sorted_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sort_order_missing_last_both_ways() {
        let docs = [json!({"n": 2}), json!({"n": "b"}), json!({}), json!({"n": [1, 5]}), json!({"n": true})];
        let order = |s: &str| {
            let spec = SortSpec::parse(Some(s)).unwrap();
            let mut keyed: Vec<(Vec<Cell>, usize)> =
                docs.iter().enumerate().map(|(i, d)| (spec.key_of(d.as_object().unwrap()), i)).collect();
            keyed.sort();
            keyed.into_iter().map(|(_, i)| i).collect::<Vec<_>>()
        };
        assert_eq!(order("n asc"), [4, 3, 0, 1, 2]);
        assert_eq!(order("n desc"), [1, 0, 3, 4, 2]);
        assert_eq!(order("n"), order("n asc"));
        assert!(SortSpec::parse(Some("n up")).is_err());
        assert!(!SortSpec::parse(Some("score desc")).unwrap().needs_docs());
    }

    #[test]
    fn top_k_keeps_the_smallest() {
        let mut t = TopK::new(2);
        for k in ["d", "a", "c", "b"] {
            t.push(Hit { sort: vec![], key: k.into(), doc: Arc::from(&b""[..]) });
        }
        let keys: Vec<_> = t.into_sorted().into_iter().map(|h| h.key.to_string()).collect();
        assert_eq!(keys, ["a", "b"]);
    }
}
