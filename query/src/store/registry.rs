//! Which data stores an environment has: `stores.json` at the environment root.
//!
//! The file is small and rewritten whole. An environment without the file has the default
//! store `index` (standard, one shard), so every environment, old or new, starts with it.

use bytes::Bytes;
use m1_engine::Storage;
use serde::{Deserialize, Serialize};

use crate::error::{QueryError, Result};

/// File listing the stores, relative to the environment root.
pub const STORES_FILE: &str = "stores.json";

/// Name of the store every environment starts with.
pub const DEFAULT_STORE: &str = "index";

/// Where a store's index lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// On disk, memory-mapped.
    Standard,
    /// Held in RAM; rebuilt from the lake when a process opens it.
    Boost,
}

impl StoreKind {
    /// Parses `standard` or `boost`.
    pub fn parse(s: &str) -> Result<StoreKind> {
        match s {
            "standard" => Ok(StoreKind::Standard),
            "boost" => Ok(StoreKind::Boost),
            other => Err(QueryError::BadRequest(format!("store type must be standard or boost, not '{other}'"))),
        }
    }
}

/// One data store's settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreDef {
    /// Unique within the environment.
    pub name: String,
    /// Standard (disk) or boost (RAM).
    #[serde(rename = "type")]
    pub kind: StoreKind,
    /// Number of independent indexes the records are spread over.
    pub shards: u32,
    /// Kept for the API; an embedded store has one copy (the lake is the durable copy).
    pub replicas: u32,
    /// Whether the store is indexed and answers queries.
    pub active: bool,
    /// Whether the store follows the lake by itself (on publish and before queries); when off,
    /// it changes only on `store/commit` or `store/rebuild`.
    pub autocommit: bool,
}

impl StoreDef {
    /// A new, active, autocommitting store.
    pub fn new(name: &str, kind: StoreKind, shards: u32, replicas: u32) -> StoreDef {
        StoreDef { name: name.to_string(), kind, shards, replicas, active: true, autocommit: true }
    }
}

#[derive(Serialize, Deserialize)]
struct File {
    stores: Vec<StoreDef>,
}

/// The stores of the environment.
pub fn load(storage: &Storage) -> Result<Vec<StoreDef>> {
    match storage.get(STORES_FILE)? {
        None => Ok(vec![StoreDef::new(DEFAULT_STORE, StoreKind::Standard, 1, 1)]),
        Some(bytes) => {
            let file: File = serde_json::from_slice(&bytes).map_err(|e| {
                QueryError::Engine(m1_engine::EngineError::BadData(format!("{STORES_FILE} is damaged: {e}")))
            })?;
            Ok(file.stores)
        }
    }
}

/// Replaces the list of stores.
pub fn save(storage: &Storage, stores: &[StoreDef]) -> Result<()> {
    let body = serde_json::to_vec_pretty(&File { stores: stores.to_vec() }).expect("serializable");
    storage.put(STORES_FILE, Bytes::from(body))?;
    Ok(())
}

/// Checks a store name: letters, digits, `_` and `-`, 1 to 64 of them.
pub fn validate_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(QueryError::BadRequest(format!("bad store name '{name}': use 1 to 64 letters, digits, '_' or '-'")))
    }
}
