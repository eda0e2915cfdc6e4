//! m1-ingest: getting files into the lake.
//!
//! With the `publish` feature (default), [`publish::publish_jsonl`] publishes a local `.jsonl`
//! file as one atomic append.

pub mod error;
#[cfg(feature = "publish")]
pub mod publish;
pub mod rules;

pub use error::{IngestError, Result};
#[cfg(feature = "publish")]
pub use publish::{PublishOptions, PublishReport, publish_jsonl};
pub use rules::{RuleError, RuleSet};
