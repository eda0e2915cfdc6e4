//! A wrapper that keeps a query's scorer out of tantivy's "danger zone" seeks.
//!
//! tantivy 0.27 lets intersections and exclusions call `seek_danger` on their parts. Two of its
//! scorers mishandle a target below where they already stand (a scorer that an exclusion built
//! and advanced, then probed from doc 0): the phrase scorer trips `target >= self.doc()`, and the
//! fast-field range scorer subtracts past zero. Both panic in debug builds and seek from a state
//! the contract calls invalid in release; `tests/store_matcher.rs` found them with
//! `-body:"the the"` and `NOT (+n:{-5 TO 0} -t:"1969-12-31T00:00:00.000Z")`. Wrapped, a scorer
//! answers `seek_danger` with the trait's default, a plain `seek` that never leaves it invalid.
//! m1 wraps every prohibited clause and every phrase; the lost shortcut costs little there.

use tantivy::query::{EnableScoring, Explanation, Query, Scorer, Weight};
use tantivy::{DocId, DocSet, Score, SegmentReader};

/// `inner`, with scorers that only ever seek safely.
#[derive(Debug)]
pub(crate) struct SafeSeek(pub(crate) Box<dyn Query>);

impl Clone for SafeSeek {
    fn clone(&self) -> Self {
        SafeSeek(self.0.box_clone())
    }
}

impl Query for SafeSeek {
    fn weight(&self, enable_scoring: EnableScoring<'_>) -> tantivy::Result<Box<dyn Weight>> {
        Ok(Box::new(SafeSeekWeight(self.0.weight(enable_scoring)?)))
    }

    fn query_terms<'a>(&'a self, visitor: &mut dyn FnMut(&'a tantivy::Term, bool)) {
        self.0.query_terms(visitor)
    }
}

struct SafeSeekWeight(Box<dyn Weight>);

impl Weight for SafeSeekWeight {
    fn scorer(&self, reader: &SegmentReader, boost: Score) -> tantivy::Result<Box<dyn Scorer>> {
        Ok(Box::new(SafeSeekScorer(self.0.scorer(reader, boost)?)))
    }

    fn explain(&self, reader: &SegmentReader, doc: DocId) -> tantivy::Result<Explanation> {
        self.0.explain(reader, doc)
    }

    fn count(&self, reader: &SegmentReader) -> tantivy::Result<u32> {
        self.0.count(reader)
    }
}

/// Delegates everything but `seek_danger`, which keeps the trait's safe default.
struct SafeSeekScorer(Box<dyn Scorer>);

impl DocSet for SafeSeekScorer {
    fn advance(&mut self) -> DocId {
        self.0.advance()
    }

    fn seek(&mut self, target: DocId) -> DocId {
        self.0.seek(target)
    }

    fn doc(&self) -> DocId {
        self.0.doc()
    }

    fn size_hint(&self) -> u32 {
        self.0.size_hint()
    }

    fn cost(&self) -> u64 {
        self.0.cost()
    }
}

impl Scorer for SafeSeekScorer {
    fn score(&mut self) -> Score {
        self.0.score()
    }
}
