//! m1-engine: the storage core of m1.
//!
//! An [`Environment`] is one lake root (a local directory or an object-store URL). Records are
//! appended through an [`Appender`], which gives each a sequential `_m1key`, writes Parquet
//! segments and commits them atomically to a Delta Lake table log. Readers find a key's segment
//! from the key ranges in the log and its row by offset.

pub mod catalog;
pub mod checkpoint;
pub mod environment;
pub mod error;
pub mod log;
pub mod rows;
pub mod schema;
pub mod segment;
pub mod storage;
pub mod values;

pub use catalog::{Bucket, Catalog, CatalogEntry};
pub use environment::{AppendReport, Appender, EnvConfig, Environment, VacuumReport};
pub use error::{EngineError, Result};
pub use log::{SegmentInfo, TableState};
pub use schema::{KEY, Property, PropertyType, RAND, Schema};
pub use storage::Storage;
