//! What an environment's caches and in-memory indexes may hold: the service's
//! `maxTotalMemoryGb` (or the system parameter `memory-limit-bytes`), split between the segment
//! cache (a quarter) and boost stores (the rest).
//!
//! Invariant: `index` is the sum of what every open in-memory index shard has charged and not
//! refunded; a shard refunds what it charged when it is dropped, so a destroyed or closed boost
//! store gives its share back.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// An environment's memory bound and what is charged against it.
#[derive(Debug, Default)]
pub struct MemoryBudget {
    /// The bound in bytes; 0 is none.
    limit: AtomicU64,
    /// Bytes the in-memory indexes (boost stores) hold.
    index: AtomicI64,
}

impl MemoryBudget {
    /// Sets the bound (`None`: none).
    pub fn set_limit(&self, bytes: Option<u64>) {
        self.limit.store(bytes.unwrap_or(0), Ordering::Relaxed);
    }

    /// The bound, if any.
    pub fn limit(&self) -> Option<u64> {
        Some(self.limit.load(Ordering::Relaxed)).filter(|b| *b > 0)
    }

    /// What the segment cache may hold.
    pub fn cache_limit(&self) -> Option<u64> {
        self.limit().map(|l| l / 4)
    }

    /// What boost stores may hold together.
    pub fn index_limit(&self) -> Option<u64> {
        self.limit().map(|l| l - l / 4)
    }

    /// Adds (or, negative, refunds) bytes held by an in-memory index.
    pub fn charge_index(&self, delta: i64) {
        self.index.fetch_add(delta, Ordering::Relaxed);
    }

    /// Bytes the in-memory indexes hold.
    pub fn index_bytes(&self) -> u64 {
        self.index.load(Ordering::Relaxed).max(0) as u64
    }

    /// Whether the in-memory indexes are over their share: `(held, share)`.
    pub fn index_over(&self) -> Option<(u64, u64)> {
        let share = self.index_limit()?;
        let held = self.index_bytes();
        (held > share).then_some((held, share))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_and_charges() {
        let b = MemoryBudget::default();
        assert_eq!((b.limit(), b.index_over()), (None, None));
        b.set_limit(Some(1000));
        assert_eq!((b.cache_limit(), b.index_limit()), (Some(250), Some(750)));
        b.charge_index(700);
        assert_eq!(b.index_over(), None);
        b.charge_index(100);
        assert_eq!(b.index_over(), Some((800, 750)));
        b.charge_index(-800);
        assert_eq!(b.index_bytes(), 0);
    }
}
