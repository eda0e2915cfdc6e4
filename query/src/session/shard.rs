//! One shard of a session store: its documents by key, in numbered slots, and the index over
//! those slots.
//!
//! A write never edits a slot: it kills the key's old slot (if any) and appends a new one,
//! which waits in `pending` until the next refresh indexes it. A key written many times
//! between refreshes leaves dead pending slots that are never indexed, so repeated updates of
//! one key cost no index work. Dead slots stay in posting lists (queries skip them) until a
//! compaction renumbers the live slots without re-reading any document.
//!
//! Invariants:
//! - `by_key[k]` is the one live slot of `k`; every other slot of `k` is dead (`doc == None`).
//! - `pending` is sorted and every pending slot is greater than every indexed slot, so posting
//!   lists stay sorted (slots only grow between compactions).
//! - `epoch` changes whenever slots are renumbered; a refresh prepared under an older epoch is
//!   discarded.

use std::collections::HashMap;
use std::sync::Arc;

use rustc_hash::FxBuildHasher;

use super::index::{Frozen, Index, Layer, terms_of_json};

#[derive(Debug)]
struct Slot {
    key: Arc<str>,
    doc: Option<Arc<[u8]>>,
    /// Indexed, and without dotted or empty object keys (see [`super::index::Candidates`]).
    plain: bool,
}

/// Documents and index of one shard.
#[derive(Debug, Default)]
pub struct SessionShard {
    by_key: HashMap<Arc<str>, u32, FxBuildHasher>,
    slots: Vec<Slot>,
    pending: Vec<u32>,
    /// Slots below this were considered by a refresh: indexed if they were live then.
    indexed_below: u32,
    index: Index,
    dead: usize,
    epoch: u64,
}

/// A live candidate of a query: key, document, and whether it surely matches.
pub type Candidate<'a> = (&'a Arc<str>, &'a Arc<[u8]>, bool);

/// Work taken from a shard for indexing outside its lock.
#[derive(Debug)]
pub struct Batch {
    epoch: u64,
    docs: Vec<(u32, Arc<[u8]>)>,
    upto: u32,
}

impl Batch {
    /// Computes the terms of every document (no lock held).
    pub fn analyse(self) -> Analysed {
        let docs = self
            .docs
            .into_iter()
            .map(|(slot, doc)| {
                let (terms, plain) = terms_of_json(&doc).unwrap_or_default();
                (slot, terms, plain)
            })
            .collect();
        Analysed { epoch: self.epoch, docs, upto: self.upto }
    }
}

/// A batch with its terms, ready to enter the index.
#[derive(Debug)]
pub struct Analysed {
    epoch: u64,
    docs: Vec<(u32, Vec<u64>, bool)>,
    upto: u32,
}

/// A saved slot: key, document and whether it was indexed as plain; `None` for a dead slot.
pub type SavedSlot = Option<(Arc<str>, Arc<[u8]>, bool)>;

/// A shard as a checkpoint saves it: every slot in order (dead ones empty, so the saved index
/// needs no renumbering), how far indexing got, and the index layers over those slots.
#[derive(Debug)]
pub struct Image {
    /// Every slot.
    pub slots: Vec<SavedSlot>,
    /// Slots below this were considered by a refresh; live ones above it are pending.
    pub indexed_below: u32,
    /// The sealed index, covering exactly the live slots below `indexed_below`.
    pub layers: Vec<Arc<Layer>>,
}

impl SessionShard {
    /// Live documents.
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    /// Whether the shard holds no document.
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    /// The document stored under `key`.
    pub fn get(&self, key: &str) -> Option<&Arc<[u8]>> {
        self.slots[*self.by_key.get(key)? as usize].doc.as_ref()
    }

    /// Stores `doc` under `key`, replacing any document there.
    pub fn put(&mut self, key: Arc<str>, doc: Arc<[u8]>) {
        let slot = self.slots.len() as u32;
        if let Some(old) = self.by_key.insert(Arc::clone(&key), slot) {
            self.kill(old);
        }
        self.slots.push(Slot { key, doc: Some(doc), plain: false });
        self.pending.push(slot);
    }

    /// Removes the document under `key`, if any.
    pub fn delete(&mut self, key: &str) {
        if let Some(old) = self.by_key.remove(key) {
            self.kill(old);
        }
    }

    fn kill(&mut self, slot: u32) {
        self.slots[slot as usize].doc = None;
        self.dead += 1;
    }

    /// Every live document, in slot order.
    pub fn docs(&self) -> impl Iterator<Item = (&Arc<str>, &Arc<[u8]>)> {
        self.slots.iter().filter_map(|s| s.doc.as_ref().map(|d| (&s.key, d)))
    }

    /// Whether documents wait to be indexed.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Slots waiting to be indexed.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Takes up to `max` pending slots (live ones with their documents) for indexing.
    pub fn take_batch(&self, max: usize) -> Batch {
        let n = self.pending.len().min(max);
        let docs = self.pending[..n]
            .iter()
            .filter_map(|&s| self.slots[s as usize].doc.as_ref().map(|d| (s, Arc::clone(d))))
            .collect();
        let upto = if n == 0 { self.indexed_below } else { self.pending[n - 1] + 1 };
        Batch { epoch: self.epoch, docs, upto }
    }

    /// Enters an analysed batch into the index (slots that died meanwhile are skipped).
    pub fn apply(&mut self, batch: Analysed) {
        if batch.epoch != self.epoch {
            return;
        }
        for (slot, terms, plain) in &batch.docs {
            // Two refreshers (a query and the background thread) may take the same slots:
            // those below `indexed_below` were entered by the other one already.
            if *slot < self.indexed_below {
                continue;
            }
            let s = &mut self.slots[*slot as usize];
            if s.doc.is_some() {
                s.plain = *plain;
                self.index.add(*slot, terms);
            }
        }
        let done = self.pending.partition_point(|&s| s < batch.upto);
        self.pending.drain(..done);
        self.indexed_below = self.indexed_below.max(batch.upto);
    }

    /// Indexes everything pending, under the caller's lock.
    pub fn refresh(&mut self) {
        while self.has_pending() {
            let batch = self.take_batch(usize::MAX).analyse();
            self.apply(batch);
        }
    }

    /// Whether enough slots are dead that [`Shard::compact`] is worth its pass.
    pub fn needs_compaction(&self) -> bool {
        self.dead > 65_536 && self.dead > self.by_key.len()
    }

    /// Drops dead slots and renumbers the rest (index and pending lists follow).
    pub fn compact(&mut self) {
        let mut remap = vec![u32::MAX; self.slots.len()];
        let mut kept = Vec::with_capacity(self.by_key.len());
        let mut indexed_below = 0;
        for (old, slot) in std::mem::take(&mut self.slots).into_iter().enumerate() {
            if slot.doc.is_some() {
                remap[old] = kept.len() as u32;
                kept.push(slot);
                if (old as u32) < self.indexed_below {
                    indexed_below = kept.len() as u32;
                }
            }
        }
        self.slots = kept;
        self.index.remap(&remap);
        self.pending = self.pending.iter().map(|&s| remap[s as usize]).filter(|&s| s != u32::MAX).collect();
        for slot in self.by_key.values_mut() {
            *slot = remap[*slot as usize];
        }
        self.indexed_below = indexed_below;
        self.dead = 0;
        self.epoch += 1;
    }

    /// Live candidate documents for a query, each with whether it surely matches (else the
    /// matcher must check it). Call after [`Shard::refresh`] so nothing is pending.
    pub fn candidates(&self, q: &crate::syntax::Query) -> Vec<Candidate<'_>> {
        fn live(slot: &Slot, exact: bool) -> Option<Candidate<'_>> {
            slot.doc.as_ref().map(|d| (&slot.key, d, exact && slot.plain))
        }
        let c = self.index.candidates(q);
        match &c.slots {
            Some(slots) => slots.iter().filter_map(|&s| live(&self.slots[s as usize], c.exact)).collect(),
            None => self.slots.iter().filter_map(|s| live(s, c.exact)).collect(),
        }
    }

    /// Seals the index and copies the slots (documents are shared, not copied) for a
    /// checkpoint. Call under the store's writer lock, so the image is one instant of the log.
    pub fn image(&mut self) -> Image {
        let slots =
            self.slots.iter().map(|s| s.doc.as_ref().map(|d| (Arc::clone(&s.key), Arc::clone(d), s.plain))).collect();
        Image { slots, indexed_below: self.indexed_below, layers: self.index.seal() }
    }

    /// Puts `merged` (the layers of an [`Image`] merged) in their place, unless a
    /// compaction or re-keying replaced them meanwhile.
    pub fn install(&mut self, old: &[Arc<Layer>], merged: Frozen) {
        self.index.install(old, merged);
    }

    /// A shard from a saved image with its index frozen: nothing is re-read but the slots at
    /// or above `indexed_below`.
    pub fn from_saved(saved: Vec<SavedSlot>, indexed_below: u32, index: Frozen) -> Result<SessionShard, String> {
        if saved.len() >= u32::MAX as usize || indexed_below as usize > saved.len() {
            return Err(format!("{indexed_below} indexed slots of {}", saved.len()));
        }
        index.check(indexed_below)?;
        let mut shard = SessionShard { indexed_below, index: Index::from_frozen(index), ..SessionShard::default() };
        shard.slots.reserve_exact(saved.len());
        shard.by_key.reserve(saved.len());
        let none: Arc<str> = Arc::from("");
        for (i, s) in saved.into_iter().enumerate() {
            let slot = i as u32;
            match s {
                None => {
                    shard.slots.push(Slot { key: Arc::clone(&none), doc: None, plain: false });
                    shard.dead += 1;
                }
                Some((key, doc, plain)) => {
                    if shard.by_key.insert(Arc::clone(&key), slot).is_some() {
                        return Err(format!("key '{key}' is saved twice"));
                    }
                    let indexed = slot < indexed_below;
                    if !indexed {
                        shard.pending.push(slot);
                    }
                    shard.slots.push(Slot { key, doc: Some(doc), plain: plain && indexed });
                }
            }
        }
        Ok(shard)
    }

    /// Drops the index and queues every live document to be indexed again.
    pub fn reindex(&mut self) {
        self.index = Index::default();
        self.pending = (0..self.slots.len() as u32).filter(|&s| self.slots[s as usize].doc.is_some()).collect();
        for s in &mut self.slots {
            s.plain = false;
        }
        self.indexed_below = 0;
        self.epoch += 1;
    }

    /// Distinct terms, postings, slots and dead slots (for memory figures).
    pub fn stats(&self) -> [usize; 4] {
        let (terms, postings) = self.index.size();
        [terms, postings, self.slots.len(), self.dead]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syntax::parse;

    fn doc(v: &str) -> Arc<[u8]> {
        Arc::from(format!("{{\"v\":\"{v}\"}}").into_bytes().into_boxed_slice())
    }

    fn keys(s: &SessionShard, q: &str) -> Vec<String> {
        s.candidates(&parse(q).unwrap()).into_iter().map(|(k, _, _)| k.to_string()).collect()
    }

    #[test]
    fn concurrent_refreshes_index_each_slot_once() {
        let mut s = SessionShard::default();
        for i in 0..5 {
            s.put(format!("k{i}").into(), doc("x"));
        }
        let (a, b) = (s.take_batch(3).analyse(), s.take_batch(usize::MAX).analyse());
        s.apply(b);
        s.apply(a);
        assert!(!s.has_pending());
        s.put("k5".into(), doc("x"));
        let (a, b) = (s.take_batch(usize::MAX).analyse(), s.take_batch(usize::MAX).analyse());
        s.apply(a);
        s.apply(b);
        assert_eq!(s.stats()[1], 6 * 2, "each document's two terms, once");
        assert_eq!(keys(&s, "v:x").len(), 6);
    }

    #[test]
    fn rewrites_kill_old_slots_and_compaction_keeps_answers() {
        let mut s = SessionShard::default();
        s.put("a".into(), doc("x"));
        s.put("b".into(), doc("x"));
        s.refresh();
        for i in 0..10 {
            s.put("a".into(), doc(&format!("y{i}")));
        }
        s.delete("b");
        s.refresh();
        assert_eq!(keys(&s, "v:x"), Vec::<String>::new());
        assert_eq!(keys(&s, "v:y9"), ["a"]);
        assert_eq!(s.stats()[1], 2 * 2 + 2, "one indexing of a per refresh (exists + word terms)");
        s.put("c".into(), doc("y9"));
        s.compact();
        assert_eq!(s.stats()[2], 2);
        s.refresh();
        assert_eq!(keys(&s, "v:y9"), ["a", "c"]);
        assert_eq!(&s.get("a").unwrap()[..], br#"{"v":"y9"}"#);
    }

    /// What a shard answers, and the same shard saved (its layers merged, as a checkpoint
    /// does) and loaded, and rebuilt from its documents: each query's live candidates.
    fn answers(s: &SessionShard) -> Vec<Vec<String>> {
        let qs = ["v:x", "v:y1", "v:y2", "w:3", "w:*", "v:x OR w:1", "*"];
        qs.iter().map(|q| keys(s, q)).collect()
    }

    fn saved_copy(s: &mut SessionShard) -> SessionShard {
        let im = s.image();
        let layers: Vec<&Layer> = im.layers.iter().map(|l| &**l).collect();
        let merged = super::super::index::merge(&layers, None);
        let copy = SessionShard::from_saved(im.slots, im.indexed_below, merged.clone()).unwrap();
        s.install(&im.layers, merged);
        copy
    }

    proptest::proptest! {
        /// Saving, merging, installing and compacting never change an answer.
        #[test]
        fn saved_and_rebuilt_indexes_answer_alike(ops in proptest::collection::vec((0u8..6, 0u8..12, 0u8..4), 1..120)) {
            let mut s = SessionShard::default();
            for (op, k, v) in ops {
                let key: Arc<str> = format!("k{k}").into();
                match op {
                    0 | 1 => {
                        let body = if v == 0 { "x".to_string() } else { format!("y{v}") };
                        s.put(key, Arc::from(format!("{{\"v\":\"{body}\",\"w\":{k}}}").into_bytes().into_boxed_slice()));
                    }
                    2 => s.delete(&key),
                    3 => s.refresh(),
                    4 => {
                        let mut copy = saved_copy(&mut s);
                        s.refresh();
                        copy.refresh();
                        proptest::prop_assert_eq!(answers(&copy), answers(&s));
                    }
                    _ => s.compact(),
                }
            }
            s.refresh();
            let want = answers(&s);
            let mut copy = saved_copy(&mut s);
            copy.refresh();
            proptest::prop_assert_eq!(&answers(&copy), &want);
            s.reindex();
            s.refresh();
            proptest::prop_assert_eq!(&answers(&s), &want);
        }
    }
}
