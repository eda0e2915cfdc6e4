//! One shard of a data store: a list of tantivy indexes ("generations") that share the shard's
//! segments, oldest first, each with a reader.
//!
//! A standard shard keeps generation `n` in `<shard dir>/g<n>/` and memory-maps it; a boost
//! shard keeps its generations in RAM only.

use std::path::PathBuf;

use m1_engine::Property;
use parking_lot::{Mutex, RwLock};
use tantivy::directory::{MmapDirectory, RamDirectory};
use tantivy::{Index, IndexReader, ReloadPolicy};

use super::fields::tantivy_schema;
use super::indexer::Payload;
use crate::error::{QueryError, Result};

/// One tantivy index of a shard, with its reader.
#[derive(Clone)]
pub struct Generation {
    /// Position in the shard, from 0.
    pub number: u32,
    /// The index.
    pub index: Index,
    /// A reader reloaded after each sync.
    pub reader: IndexReader,
}

impl Generation {
    fn open(number: u32, index: Index) -> Result<Generation> {
        super::fields::register_tokenizers(&index);
        let reader = index.reader_builder().reload_policy(ReloadPolicy::Manual).try_into()?;
        Ok(Generation { number, index, reader })
    }

    /// What the last commit recorded as indexed.
    pub fn payload(&self) -> Result<Payload> {
        let metas = self.index.load_metas()?;
        Payload::parse(metas.payload.as_deref())
    }

    /// Makes the last commit visible to searches.
    pub fn reload(&self) -> Result<()> {
        Ok(self.reader.reload()?)
    }
}

/// A shard of a store.
pub struct IndexShard {
    /// This shard's number.
    pub number: u32,
    /// How many shards the store has.
    pub of: u32,
    /// Directory of a standard shard; `None` for boost.
    dir: Option<PathBuf>,
    generations: RwLock<Vec<Generation>>,
    /// Held while syncing, so one process runs one sync of a shard at a time.
    pub sync_lock: Mutex<()>,
    /// A boost shard's in-memory directories, and the environment's budget it charges them to.
    ram: Mutex<Vec<RamDirectory>>,
    budget: Option<std::sync::Arc<m1_engine::memory::MemoryBudget>>,
    /// What it has charged the budget.
    charged: std::sync::atomic::AtomicI64,
}

impl Drop for IndexShard {
    fn drop(&mut self) {
        if let Some(b) = &self.budget {
            b.charge_index(-self.charged.load(std::sync::atomic::Ordering::Relaxed));
        }
    }
}

impl IndexShard {
    /// Opens (or prepares) a shard kept in `dir`, or in RAM when `dir` is `None` (charged to
    /// `budget`).
    pub fn open(
        number: u32,
        of: u32,
        dir: Option<PathBuf>,
        budget: Option<std::sync::Arc<m1_engine::memory::MemoryBudget>>,
    ) -> Result<IndexShard> {
        let shard = IndexShard {
            number,
            of,
            dir,
            generations: RwLock::new(Vec::new()),
            sync_lock: Mutex::new(()),
            ram: Mutex::new(Vec::new()),
            budget,
            charged: Default::default(),
        };
        shard.rescan()?;
        Ok(shard)
    }

    /// The generations known to this process, oldest first. [`Shard::rescan`] picks up those
    /// other processes created; searches use this list without touching the disk.
    pub fn generations(&self) -> Vec<Generation> {
        self.generations.read().clone()
    }

    /// Opens the generations another process created since the last look; returns them all.
    pub fn rescan(&self) -> Result<Vec<Generation>> {
        let Some(dir) = &self.dir else { return Ok(self.generations()) };
        let mut on_disk: Vec<u32> = match std::fs::read_dir(dir) {
            Ok(entries) => entries
                .flatten()
                .filter_map(|e| e.file_name().to_str().and_then(|n| n.strip_prefix('g')).and_then(|n| n.parse().ok()))
                .filter(|n| dir.join(format!("g{n}")).join("meta.json").exists())
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(QueryError::Output(e)),
        };
        on_disk.sort_unstable();
        let known = self.generations.read().len();
        if on_disk.len() > known {
            let mut gens = self.generations.write();
            for &n in &on_disk[gens.len()..] {
                let directory = MmapDirectory::open(dir.join(format!("g{n}")))?;
                gens.push(Generation::open(n, Index::open(directory)?)?);
            }
        }
        Ok(self.generations())
    }

    /// Starts a new generation for `properties`.
    pub fn new_generation(&self, properties: &[Property]) -> Result<Generation> {
        let mut gens = self.generations.write();
        let number = gens.last().map_or(0, |g| g.number + 1);
        let schema = tantivy_schema(properties);
        let index = match &self.dir {
            None => {
                let ram = RamDirectory::create();
                self.ram.lock().push(ram.clone());
                Index::create(ram, schema, Default::default())?
            }
            Some(dir) => {
                let path = dir.join(format!("g{number}"));
                std::fs::create_dir_all(&path)?;
                Index::create(MmapDirectory::open(&path)?, schema, Default::default())?
            }
        };
        let generation = Generation::open(number, index)?;
        gens.push(generation.clone());
        Ok(generation)
    }

    /// Refuses to grow a boost shard whose environment's boost stores are over their memory share.
    pub fn check_memory(&self) -> Result<()> {
        match (&self.dir, &self.budget) {
            (None, Some(b)) => match b.index_over() {
                Some((held, share)) => Err(crate::error::QueryError::OverMemory { held, share }),
                None => Ok(()),
            },
            _ => Ok(()),
        }
    }

    /// Whether it is in memory and its environment has a memory bound.
    pub fn memory_bounded(&self) -> bool {
        self.dir.is_none() && self.budget.as_ref().is_some_and(|b| b.limit().is_some())
    }

    /// Charges the budget what the shard's in-memory directories hold now.
    pub fn recharge(&self) {
        let Some(b) = &self.budget else { return };
        let now: i64 = self.ram.lock().iter().map(|r| r.total_mem_usage() as i64).sum();
        let before = self.charged.swap(now, std::sync::atomic::Ordering::Relaxed);
        b.charge_index(now - before);
    }

    /// Documents visible to searches.
    pub fn documents(&self) -> u64 {
        self.generations.read().iter().map(|g| g.reader.searcher().num_docs()).sum()
    }

    /// Makes every generation's last commit visible.
    pub fn reload(&self) -> Result<()> {
        for g in self.generations() {
            g.reload()?;
        }
        Ok(())
    }
}
