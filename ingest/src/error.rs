//! The ingest crate's error type.

use std::path::PathBuf;

use m1_engine::EngineError;

/// What can go wrong publishing files.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The file could not be opened or read.
    #[error("{path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    /// A line is not a JSON object.
    #[error("{path}:{line}: not a JSON object: {reason}")]
    BadRecord { path: PathBuf, line: u64, reason: String },
    /// A value does not fit the schema.
    #[error("{path}:{line}: {source}")]
    BadValue { path: PathBuf, line: u64, source: EngineError },
    /// The format or compression is not supported yet.
    #[error("{0}")]
    Unsupported(String),
    /// The storage core failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// Result type of the ingest crate.
pub type Result<T, E = IngestError> = std::result::Result<T, E>;
