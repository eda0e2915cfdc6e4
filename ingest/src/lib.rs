//! m1-ingest: getting files into the lake.
//!
//! Sources ([`source`]) give byte streams, [`compression`] and [`charset`] turn them into UTF-8
//! text, [`format`] parses records, [`rules`] transforms them, and [`publish`] (with the default
//! `publish` feature) runs all of it as a parallel pipeline into one atomic append.

#[cfg(feature = "publish")]
pub mod archive;
pub mod charset;
pub mod compression;
pub mod error;
pub mod format;
#[cfg(feature = "publish")]
pub mod publish;
pub mod rules;
#[cfg(feature = "publish")]
pub mod source;

#[cfg(feature = "publish")]
pub use archive::{WriteOptions, WriteReport, write};
pub use charset::decode_charset;
pub use compression::{Compression, decompress};
pub use error::{IngestError, Result};
pub use format::{FormatOptions, InputFormat, RecordError, SourceOptions, SourceRecord, open_records, read_source};
#[cfg(feature = "publish")]
pub use publish::{Phase, Progress, PublishReport, PublishRequest, Rejection, publish, publish_records};
pub use rules::{RuleError, RuleSet};
