//! m1-engine: the storage core of m1.
//!
//! An [`Environment`] is one lake root (a local directory or an object-store URL). Records are
//! appended through an [`Appender`], which gives each a sequential `_m1key`, writes Parquet
//! segments and commits them atomically to a Delta Lake table log. Readers find a key's segment
//! from the key ranges in the log and its row by offset.

#[cfg(feature = "storage")]
pub mod backup;
#[cfg(feature = "storage")]
pub mod catalog;
#[cfg(feature = "storage")]
pub mod checkpoint;
#[cfg(feature = "storage")]
pub mod environment;
pub mod error;
#[cfg(feature = "storage")]
pub mod history;
#[cfg(feature = "storage")]
pub mod log;
pub mod memory;
pub mod record;
#[cfg(feature = "storage")]
pub mod replica;
#[cfg(feature = "storage")]
pub mod rows;
pub mod schema;
#[cfg(feature = "storage")]
pub mod segment;
pub mod service;
#[cfg(feature = "storage")]
pub mod storage;
#[cfg(feature = "storage")]
pub mod system;
pub mod values;

#[cfg(feature = "storage")]
pub use backup::{Backup, BackupSource, BackupStatus};
#[cfg(feature = "storage")]
pub use catalog::{Bucket, Catalog, CatalogEntry};
#[cfg(feature = "storage")]
pub use environment::{AppendReport, Appender, EnvConfig, Environment, VacuumReport};
pub use error::{EngineError, ErrorKind, Result, panic_message};
#[cfg(feature = "storage")]
pub use history::VersionInfo;
#[cfg(feature = "storage")]
pub use log::{SegmentInfo, TableState};
pub use schema::{KEY, Property, PropertyType, RAND, Schema};
#[cfg(feature = "storage")]
pub use storage::Storage;
