//! The inverted index of one shard: hashed terms to sorted lists of document slots. It only
//! narrows a query to candidates; every candidate is then checked with the [`crate::Matcher`],
//! so answers are exactly the matcher's (the in-memory model of the tests) by construction.
//!
//! Terms, per dotted path of every scalar leaf (arrays expanded, nested objects walked):
//! - every word of the value's string form, as [`crate::matcher::tokenize`] cuts and
//!   lowercases it;
//! - the value as a number, when it reads as one (`f64` bits, `-0` folded into `0`);
//! - an "exists" term.
//!
//! A term is a 64-bit hash of (path, kind, bytes); a collision only adds candidates. For an
//! untyped property the matcher accepts a term when the numbers are equal, the string forms are
//! equal, or the query's words occur in the value's words — each case implies one of the terms
//! above, so the candidates are a superset of the matches.
//!
//! Invariant: slots are added in ascending order, so every posting list is sorted.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use serde_json::Value;

use crate::matcher::tokenize;
use crate::syntax::Query;

const WORD: u8 = 1;
const NUMBER: u8 = 2;
const EXISTS: u8 = 3;

/// Term hashes are already well mixed: the map uses them as they are.
#[derive(Default, Clone, Copy)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

fn fnv(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn finish(mut h: u64) -> u64 {
    // splitmix64's finaliser: spreads FNV's weak high bits for the hash table.
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

fn path_hash(path: &str) -> u64 {
    fnv(0xcbf2_9ce4_8422_2325, path.as_bytes())
}

fn term(path: u64, kind: u8, bytes: &[u8]) -> u64 {
    finish(fnv(fnv(path, &[0xff, kind]), bytes))
}

/// A number as the matcher reads an untyped value: integers, or anything with a digit that
/// parses as a float.
fn strict_number(s: &str) -> Option<f64> {
    let s = s.trim();
    if let Ok(i) = s.parse::<i64>() {
        return Some(i as f64);
    }
    if !s.bytes().any(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<f64>().ok()
}

fn number_term(path: u64, n: f64) -> Option<u64> {
    if n.is_nan() {
        return None;
    }
    let n = if n == 0.0 { 0.0 } else { n };
    Some(term(path, NUMBER, &n.to_bits().to_le_bytes()))
}

/// Calls `f` with each word of `text` as [`tokenize`] cuts and lowercases it, without
/// allocating for ASCII words.
fn for_each_word(text: &str, buf: &mut String, f: &mut impl FnMut(&str)) {
    for word in text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()) {
        if word.is_ascii() {
            buf.clear();
            buf.push_str(word);
            buf.make_ascii_lowercase();
            f(buf);
        } else {
            f(&word.to_lowercase());
        }
    }
}

fn scalar_terms(path: u64, v: &Value, buf: &mut String, out: &mut Vec<u64>) {
    let text: std::borrow::Cow<'_, str> = match v {
        Value::String(s) => s.into(),
        Value::Number(n) => n.to_string().into(),
        Value::Bool(b) => (if *b { "true" } else { "false" }).into(),
        _ => return,
    };
    out.push(term(path, EXISTS, &[]));
    for_each_word(&text, buf, &mut |word| out.push(term(path, WORD, word.as_bytes())));
    let n = match v {
        Value::Number(n) => n.as_i64().map(|i| i as f64).or_else(|| n.as_f64()),
        _ => strict_number(&text),
    };
    if let Some(t) = n.and_then(|n| number_term(path, n)) {
        out.push(t);
    }
}

/// Walks a document; returns whether it is plain: no object key is empty or holds a dot, so
/// every dotted path names one place (the matcher then agrees with the index exactly).
fn walk(path: &mut String, v: &Value, buf: &mut String, out: &mut Vec<u64>) -> bool {
    match v {
        Value::Object(m) => {
            let mut plain = true;
            for (k, v) in m {
                plain &= !k.is_empty() && !k.contains('.');
                let len = path.len();
                if len > 0 {
                    path.push('.');
                }
                path.push_str(k);
                plain &= walk(path, v, buf, out);
                path.truncate(len);
            }
            plain
        }
        Value::Array(items) => {
            let mut plain = true;
            for e in items {
                plain &= walk(path, e, buf, out);
            }
            plain
        }
        Value::Null => true,
        scalar => {
            scalar_terms(path_hash(path), scalar, buf, out);
            true
        }
    }
}

/// The distinct terms of a document, sorted, and whether it is plain (see [`Candidates`]).
pub fn terms(doc: &Value) -> (Vec<u64>, bool) {
    let mut out = Vec::new();
    let plain = walk(&mut String::new(), doc, &mut String::new(), &mut out);
    out.sort_unstable();
    out.dedup();
    (out, plain)
}

/// [`terms`] read straight from a document's JSON bytes, without building a `Value` (the
/// refresh's main cost). `None` if the bytes are not JSON.
pub fn terms_of_json(bytes: &[u8]) -> Option<(Vec<u64>, bool)> {
    use serde::de::DeserializeSeed;
    let mut sink = Sink { path: String::new(), buf: String::new(), out: Vec::new(), plain: true };
    let mut de = serde_json::Deserializer::from_slice(bytes);
    Walk(&mut sink).deserialize(&mut de).ok()?;
    de.end().ok()?;
    let Sink { mut out, plain, .. } = sink;
    out.sort_unstable();
    out.dedup();
    Some((out, plain))
}

struct Sink {
    path: String,
    buf: String,
    out: Vec<u64>,
    plain: bool,
}

impl Sink {
    fn scalar(&mut self, v: &Value) {
        scalar_terms(path_hash(&self.path), v, &mut self.buf, &mut self.out);
    }
}

/// Walks one value at `sink.path`, as [`walk`] does over a `Value`.
struct Walk<'s>(&'s mut Sink);

/// Appends an object key to `sink.path`.
struct Key<'s>(&'s mut Sink);

impl<'de> serde::de::DeserializeSeed<'de> for Walk<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::DeserializeSeed<'de> for Key<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Key<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E: serde::de::Error>(self, k: &str) -> Result<(), E> {
        let sink = self.0;
        sink.plain &= !k.is_empty() && !k.contains('.');
        if !sink.path.is_empty() {
            sink.path.push('.');
        }
        sink.path.push_str(k);
        Ok(())
    }
}

impl<'de> serde::de::Visitor<'de> for Walk<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, b: bool) -> Result<(), E> {
        self.0.scalar(&Value::Bool(b));
        Ok(())
    }

    fn visit_i64<E>(self, n: i64) -> Result<(), E> {
        self.0.scalar(&Value::from(n));
        Ok(())
    }

    fn visit_u64<E>(self, n: u64) -> Result<(), E> {
        self.0.scalar(&Value::from(n));
        Ok(())
    }

    fn visit_f64<E>(self, n: f64) -> Result<(), E> {
        // As `Value` holds it: a non-finite float is null.
        self.0.scalar(&Value::from(n));
        Ok(())
    }

    fn visit_str<E>(self, s: &str) -> Result<(), E> {
        let sink = self.0;
        let path = path_hash(&sink.path);
        // A string's terms without copying it into a `Value`.
        sink.out.push(term(path, EXISTS, &[]));
        let out = &mut sink.out;
        for_each_word(s, &mut sink.buf, &mut |word| out.push(term(path, WORD, word.as_bytes())));
        if let Some(t) = strict_number(s).and_then(|n| number_term(path, n)) {
            sink.out.push(t);
        }
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let sink = self.0;
        while seq.next_element_seed(Walk(sink))?.is_some() {}
        Ok(())
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let sink = self.0;
        let len = sink.path.len();
        while map.next_key_seed(Key(sink))?.is_some() {
            map.next_value_seed(Walk(sink))?;
            sink.path.truncate(len);
        }
        Ok(())
    }
}

/// A query's candidates in one shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidates {
    /// Sorted slots; `None`: every live document.
    pub slots: Option<Vec<u32>>,
    /// Every candidate that is a plain document matches: the matcher need not check it.
    /// True for `*`, `prop:*`, a one-word non-numeric term or phrase, and AND/OR of exact
    /// clauses without NOT: for those the matcher accepts exactly the documents holding the
    /// term, up to 64-bit hash collisions.
    pub exact: bool,
}

impl Candidates {
    fn some(slots: Vec<u32>, exact: bool) -> Candidates {
        Candidates { slots: Some(slots), exact }
    }

    const ANY: Candidates = Candidates { slots: None, exact: false };
}

/// A posting list; most terms of keys and ids have one document, kept without a heap block.
#[derive(Debug, Clone)]
enum Postings {
    One(u32),
    Many(Vec<u32>),
}

impl Postings {
    fn as_slice(&self) -> &[u32] {
        match self {
            Postings::One(s) => std::slice::from_ref(s),
            Postings::Many(v) => v,
        }
    }
}

type TermMap = HashMap<u64, Postings, BuildHasherDefault<IdHasher>>;

/// An index frozen into sorted arrays: what a checkpoint saves and a reopen loads without
/// reading any document. Also about half the memory of the term map.
///
/// Invariant: `terms` is strictly increasing; `starts` has one more entry than `terms` and
/// the postings of `terms[i]` are `postings[starts[i]..starts[i + 1]]`, sorted.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Frozen {
    /// Distinct terms, ascending.
    pub terms: Vec<u64>,
    /// Where each term's postings start, and the end of the last.
    pub starts: Vec<u64>,
    /// Every term's slots, term after term.
    pub postings: Vec<u32>,
}

impl Frozen {
    /// The directory of the terms: terms are hashes, evenly spread, so a lookup through it
    /// searches a few hundred terms instead of millions.
    fn directory(&self) -> Dir {
        // About 256 terms per entry, at most 2^16 entries.
        let bits = (usize::BITS - (self.terms.len() >> 8).leading_zeros()).min(16);
        let mut first = Vec::with_capacity((1 << bits) + 1);
        let mut i = 0;
        for b in 0..=(1u64 << bits) {
            while i < self.terms.len() && top(self.terms[i], bits) < b {
                i += 1;
            }
            first.push(i as u32);
        }
        Dir { bits, first }
    }

    fn get(&self, t: u64, dir: &Dir) -> &[u32] {
        let b = top(t, dir.bits) as usize;
        let (lo, hi) = (dir.first[b] as usize, dir.first[b + 1] as usize);
        match self.terms[lo..hi].binary_search(&t) {
            Ok(i) => &self.postings[self.starts[lo + i] as usize..self.starts[lo + i + 1] as usize],
            Err(_) => &[],
        }
    }

    /// Checks the invariant (for a loaded checkpoint); `slots` bounds every posting.
    pub fn check(&self, slots: u32) -> std::result::Result<(), String> {
        let ok = self.starts.len() == self.terms.len() + 1
            && self.starts.first() == Some(&0)
            && self.starts.last() == Some(&(self.postings.len() as u64))
            && self.terms.windows(2).all(|w| w[0] < w[1])
            && self.starts.windows(2).all(|w| w[0] < w[1])
            && self.postings.iter().all(|&s| s < slots);
        let sorted = || {
            self.starts.windows(2).all(|w| self.postings[w[0] as usize..w[1] as usize].windows(2).all(|p| p[0] < p[1]))
        };
        if ok && sorted() { Ok(()) } else { Err("the saved index is inconsistent".into()) }
    }
}

/// A part of an index that no longer changes: the term map sealed by a checkpoint, or the
/// frozen arrays it is merged into.
#[derive(Debug)]
pub struct Layer(Part);

#[derive(Debug)]
enum Part {
    /// A sealed term map, not yet merged.
    Map(TermMap),
    /// Sorted arrays, with their directory (see [`Frozen::directory`]).
    Frozen(Frozen, Dir),
}

/// Where terms start by their top `bits` bits: `first[b]` is the first term whose top bits
/// are `b` or more.
#[derive(Debug)]
struct Dir {
    bits: u32,
    first: Vec<u32>,
}

fn top(t: u64, bits: u32) -> u64 {
    t.checked_shr(64 - bits).unwrap_or(0)
}

impl Layer {
    fn frozen_layer(f: Frozen) -> Arc<Layer> {
        let dir = f.directory();
        Arc::new(Layer(Part::Frozen(f, dir)))
    }

    /// The frozen arrays, when this layer is one.
    pub fn frozen(&self) -> Option<&Frozen> {
        match &self.0 {
            Part::Frozen(f, _) => Some(f),
            Part::Map(_) => None,
        }
    }

    fn get(&self, t: u64) -> &[u32] {
        match &self.0 {
            Part::Map(m) => m.get(&t).map_or(&[], Postings::as_slice),
            Part::Frozen(f, dir) => f.get(t, dir),
        }
    }

    /// Terms with their postings, ascending by term.
    fn sorted(&self) -> Box<dyn Iterator<Item = (u64, &[u32])> + '_> {
        match &self.0 {
            Part::Map(m) => {
                let mut v: Vec<(u64, &[u32])> = m.iter().map(|(&t, p)| (t, p.as_slice())).collect();
                v.sort_unstable_by_key(|e| e.0);
                Box::new(v.into_iter())
            }
            Part::Frozen(f, _) => Box::new(
                f.terms.iter().zip(f.starts.windows(2)).map(|(&t, w)| (t, &f.postings[w[0] as usize..w[1] as usize])),
            ),
        }
    }

    fn size(&self) -> (usize, usize) {
        match &self.0 {
            Part::Map(m) => (m.len(), m.values().map(|p| p.as_slice().len()).sum()),
            Part::Frozen(f, _) => (f.terms.len(), f.postings.len()),
        }
    }
}

/// Merges layers (each holding only slots above the previous ones') into one frozen layer,
/// renumbering slots through `remap` when given (`u32::MAX`: dropped).
pub fn merge(layers: &[&Layer], remap: Option<&[u32]>) -> Frozen {
    let mut heads: Vec<_> = layers.iter().map(|l| l.sorted().peekable()).collect();
    let mut out = Frozen { starts: vec![0], ..Frozen::default() };
    while let Some(t) = heads.iter_mut().filter_map(|h| h.peek().map(|e| e.0)).min() {
        let before = out.postings.len();
        // Layers in slot order: concatenating their lists keeps the result sorted.
        for h in &mut heads {
            if let Some((_, list)) = h.next_if(|e| e.0 == t) {
                match remap {
                    None => out.postings.extend_from_slice(list),
                    Some(r) => out.postings.extend(list.iter().map(|&s| r[s as usize]).filter(|&s| s != u32::MAX)),
                }
            }
        }
        if out.postings.len() > before {
            out.terms.push(t);
            out.starts.push(out.postings.len() as u64);
        }
    }
    out
}

/// Terms to the slots holding them: sealed layers (older slots) and the live term map.
///
/// Invariant: every slot in `layers[i]` is below every slot in `layers[i + 1]` and in `live`,
/// so a term's postings are the concatenation of its lists, in order.
#[derive(Debug, Default)]
pub struct Index {
    layers: Vec<Arc<Layer>>,
    live: TermMap,
}

impl Index {
    /// An index of one frozen layer (a loaded checkpoint).
    pub fn from_frozen(f: Frozen) -> Index {
        let layers = if f.terms.is_empty() { Vec::new() } else { vec![Layer::frozen_layer(f)] };
        Index { layers, live: TermMap::default() }
    }

    /// Adds `slot` (greater than every slot added before) under each of `terms`.
    pub fn add(&mut self, slot: u32, terms: &[u64]) {
        for &t in terms {
            match self.live.get_mut(&t) {
                None => {
                    self.live.insert(t, Postings::One(slot));
                }
                Some(Postings::One(s)) => {
                    let first = *s;
                    self.live.insert(t, Postings::Many(vec![first, slot]));
                }
                Some(Postings::Many(v)) => v.push(slot),
            }
        }
    }

    /// Seals the live term map into a layer and returns every layer, for a checkpoint to
    /// merge and save without holding the shard's lock.
    pub fn seal(&mut self) -> Vec<Arc<Layer>> {
        if !self.live.is_empty() {
            self.layers.push(Arc::new(Layer(Part::Map(std::mem::take(&mut self.live)))));
        }
        self.layers.clone()
    }

    /// Replaces `old` (what [`Index::seal`] returned) by `merged`, unless the layers changed
    /// meanwhile (a compaction or re-keying): then the merge is simply not used.
    pub fn install(&mut self, old: &[Arc<Layer>], merged: Frozen) {
        let same = self.layers.len() >= old.len() && self.layers.iter().zip(old).all(|(a, b)| Arc::ptr_eq(a, b));
        if same && !old.is_empty() {
            self.layers.splice(..old.len(), [Layer::frozen_layer(merged)]);
        }
    }

    /// Renumbers slots after dead ones were dropped: `remap[old]` is the new slot, or
    /// `u32::MAX` for a dropped one. `remap` is increasing on kept slots, so lists stay sorted.
    pub fn remap(&mut self, remap: &[u32]) {
        let live = Layer(Part::Map(std::mem::take(&mut self.live)));
        let mut all: Vec<&Layer> = self.layers.iter().map(|l| &**l).collect();
        all.push(&live);
        let merged = merge(&all, Some(remap));
        *self = Index::from_frozen(merged);
    }

    /// Distinct terms (counted once per layer holding them) and postings held.
    pub fn size(&self) -> (usize, usize) {
        let (mut terms, mut postings) = (self.live.len(), self.live.values().map(|p| p.as_slice().len()).sum());
        for l in &self.layers {
            let (t, p) = l.size();
            terms += t;
            postings += p;
        }
        (terms, postings)
    }

    fn get(&self, t: u64) -> Vec<u32> {
        let mut out = Vec::new();
        for l in &self.layers {
            out.extend_from_slice(l.get(t));
        }
        if let Some(p) = self.live.get(&t) {
            out.extend_from_slice(p.as_slice());
        }
        out
    }

    /// The candidates for `q`: a superset of the matches (see the module docs).
    pub fn candidates(&self, q: &Query) -> Candidates {
        match q {
            Query::All => Candidates { slots: None, exact: true },
            Query::Term { field: Some(f), text } | Query::Phrase { field: Some(f), text } => {
                let path = path_hash(f);
                let mut words = tokenize(text);
                words.sort_unstable();
                words.dedup();
                let number = strict_number(text).and_then(|n| number_term(path, n));
                let exact = words.len() == 1 && strict_number(text).is_none() && tokenize(text).len() == 1;
                let mut set = if words.is_empty() {
                    self.get(term(path, EXISTS, &[]))
                } else {
                    // Rarest list first keeps the intersection short.
                    let mut lists: Vec<Vec<u32>> =
                        words.iter().map(|w| self.get(term(path, WORD, w.as_bytes()))).collect();
                    lists.sort_by_key(Vec::len);
                    let mut it = lists.into_iter();
                    let first = it.next().unwrap_or_default();
                    it.fold(first, |acc, l| intersect(&acc, &l))
                };
                if let Some(t) = number {
                    set = union(&set, &self.get(t));
                }
                Candidates::some(set, exact)
            }
            Query::Wildcard { field: Some(f), .. } | Query::Range { field: Some(f), .. } => {
                Candidates::some(self.get(term(path_hash(f), EXISTS, &[])), false)
            }
            Query::Exists { field } => Candidates::some(self.get(term(path_hash(field), EXISTS, &[])), true),
            Query::Term { field: None, .. }
            | Query::Phrase { field: None, .. }
            | Query::Wildcard { field: None, .. }
            | Query::Range { field: None, .. } => Candidates::ANY,
            Query::Bool { must, should, must_not } => {
                let no_not = must_not.is_empty();
                if !must.is_empty() {
                    let mut exact = no_not;
                    let mut sets = Vec::new();
                    for c in must {
                        let c = self.candidates(c);
                        exact &= c.exact;
                        sets.extend(c.slots);
                    }
                    sets.sort_by_key(Vec::len);
                    let mut it = sets.into_iter();
                    match it.next() {
                        Some(first) => Candidates::some(it.fold(first, |acc, l| intersect(&acc, &l)), exact),
                        None => Candidates { slots: None, exact },
                    }
                } else if !should.is_empty() {
                    let mut acc = Vec::new();
                    let mut exact = no_not;
                    for c in should {
                        let c = self.candidates(c);
                        exact &= c.exact;
                        match c.slots {
                            Some(s) => acc = union(&acc, &s),
                            None => return Candidates { slots: None, exact },
                        }
                    }
                    Candidates::some(acc, exact)
                } else {
                    Candidates::ANY
                }
            }
        }
    }
}

fn intersect(a: &[u32], b: &[u32]) -> Vec<u32> {
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                out.push(a[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out
}

fn union(a: &[u32], b: &[u32]) -> Vec<u32> {
    let (mut i, mut j, mut out) = (0, 0, Vec::with_capacity(a.len() + b.len()));
    while i < a.len() || j < b.len() {
        let next = match (a.get(i), b.get(j)) {
            (Some(&x), Some(&y)) if x == y => {
                i += 1;
                j += 1;
                x
            }
            (Some(&x), Some(&y)) if x < y => {
                i += 1;
                x
            }
            (Some(&x), None) => {
                i += 1;
                x
            }
            (_, Some(&y)) => {
                j += 1;
                y
            }
            (None, None) => unreachable!("loop condition"),
        };
        out.push(next);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syntax::parse;
    use serde_json::json;

    #[test]
    fn terms_from_bytes_equal_terms_from_values() {
        for d in [
            json!({"a": {"b": [1, -2, 2.5, 1e20, 18446744073709551615u64, "x Y-z", true, null, {"c": "Ærlig 3"}]}, "": 1}),
            json!({"s.id": "k", "n": "42.0", "e": "", "o": {}, "l": []}),
            json!([{"x": "y"}]),
        ] {
            assert_eq!(terms_of_json(d.to_string().as_bytes()), Some(terms(&d)), "{d}");
        }
        assert_eq!(terms_of_json(b"{"), None);
    }

    #[test]
    fn candidates_cover_words_numbers_and_existence() {
        let docs = [
            json!({"session": {"id": "0295aed9-5872"}, "n": 42, "tags": ["Red", "blue"]}),
            json!({"session": {"id": "x"}, "n": "42.0", "items": [{"sku": "a1"}]}),
            json!({"session.id": "y", "n": 7}),
        ];
        let mut ix = Index::default();
        for (i, d) in docs.iter().enumerate() {
            let (t, plain) = terms(d);
            assert_eq!(plain, i != 2, "doc {i} plain");
            ix.add(i as u32, &t);
        }
        let c = |q: &str| ix.candidates(&parse(q).unwrap()).slots;
        let exact = |q: &str| ix.candidates(&parse(q).unwrap()).exact;
        assert!(exact("tags:red") && exact("*") && exact("n:* AND tags:red") && exact("tags:red OR items.sku:a1"));
        assert!(
            !exact("n:42") && !exact("session.id:0295aed9-5872") && !exact("tags:red -n:7") && !exact("n:[1 TO 2]")
        );
        assert_eq!(c("session.id:0295aed9-5872"), Some(vec![0]));
        assert_eq!(c("session.id:0295aed9"), Some(vec![0]));
        assert_eq!(c("session.id:y"), Some(vec![2]));
        assert_eq!(c("n:42"), Some(vec![0, 1]));
        assert_eq!(c("tags:red"), Some(vec![0]));
        assert_eq!(c("items.sku:a1"), Some(vec![1]));
        assert_eq!(c("n:[1 TO 5]"), Some(vec![0, 1, 2]));
        assert_eq!(c("n:7 OR tags:blue"), Some(vec![0, 2]));
        assert_eq!(c("+n:42 +items.sku:*"), Some(vec![1]));
        assert_eq!(c("-n:7"), None);
        assert_eq!(c("blue"), None);
        ix.remap(&[u32::MAX, 0, 1]);
        let c = |q: &str| ix.candidates(&parse(q).unwrap()).slots;
        assert_eq!(c("n:42"), Some(vec![0]));
        assert_eq!(c("session.id:y"), Some(vec![1]));
    }

    #[test]
    fn frozen_lookups_through_the_directory_find_every_term() {
        let mut terms: Vec<u64> = (0..200_000u64).map(|i| finish(i.wrapping_mul(0x9e37_79b9))).collect();
        terms.extend([0, u64::MAX]);
        terms.sort_unstable();
        terms.dedup();
        let n = terms.len() as u32;
        let f = Frozen { starts: (0..=u64::from(n)).collect(), postings: (0..n).collect(), terms };
        let dir = f.directory();
        assert!(dir.bits > 8, "a large layer gets a real directory");
        for (i, &t) in f.terms.iter().enumerate() {
            assert_eq!(f.get(t, &dir), [i as u32], "term {t:#x}");
        }
        for t in [1, 2, u64::MAX - 1, finish(12_345_678_901)] {
            assert_eq!(f.get(t, &dir), &[] as &[u32], "absent {t:#x}");
        }
    }
}
