//! m1-ingest: getting files into the lake.
//!
//! [`publish::publish_jsonl`] publishes a local `.jsonl` file as one atomic append.

pub mod error;
pub mod publish;

pub use error::{IngestError, Result};
pub use publish::{PublishOptions, PublishReport, publish_jsonl};
