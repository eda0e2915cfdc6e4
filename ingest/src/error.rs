//! The ingest crate's error type.

use std::path::PathBuf;

use m1_engine::EngineError;

/// What can go wrong publishing files.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The file could not be opened or read.
    #[error("{path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    /// A record does not fit: a value of the wrong type, a failed `cast` (strict mode).
    #[error("{file}:{line}{}: {message}", column.map(|c| format!(":{c}")).unwrap_or_default())]
    Row { file: String, line: u64, column: Option<u64>, message: String },
    /// The TransformRuleSet is not valid.
    #[error("rules: {0}")]
    Rules(#[from] crate::rules::RuleError),
    /// Something this machine cannot do for the input (e.g. start a decoder).
    #[error("{0}")]
    Unsupported(String),
    /// A source could not be listed or opened.
    #[error("{0}")]
    Source(String),
    /// A record could not be read at a known place: a bad header row, a JSON syntax error, a
    /// corrupt or truncated compressed stream.
    #[error(transparent)]
    Record(#[from] crate::format::RecordError),
    /// A reader option is not valid: an unknown format, compression or charset name, a bad
    /// delimiter, `headers=false` without column names, duplicate column names.
    #[error("{0}")]
    InvalidOption(String),
    /// The storage core failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// A local file outside the directories this caller may read (`m1 serve -allowRead`).
    #[error(
        "'{0}' is not in a directory this server lets you read (its stage, or one given with `m1 serve -allowRead DIR`)"
    )]
    NotAllowed(String),
    /// The caller stopped the publish (its client went away); nothing was committed.
    #[error("the publish was cancelled (its caller went away); nothing was committed")]
    Cancelled,
    /// A worker thread of the pipeline panicked; nothing was committed.
    #[error("internal error: {0}")]
    WorkerPanicked(String),
}

impl IngestError {
    /// What kind of failure this is (see [`m1_engine::ErrorKind`]).
    pub fn kind(&self) -> m1_engine::ErrorKind {
        use m1_engine::ErrorKind;
        match self {
            IngestError::Engine(e) => e.kind(),
            IngestError::WorkerPanicked(_) => ErrorKind::Internal,
            IngestError::NotAllowed(_) => ErrorKind::Forbidden,
            IngestError::Cancelled => ErrorKind::Conflict,
            // The caller named the file and the options; a file that cannot be read or parsed is
            // their input.
            IngestError::Read { .. }
            | IngestError::Row { .. }
            | IngestError::Rules(_)
            | IngestError::Unsupported(_)
            | IngestError::Source(_)
            | IngestError::Record(_)
            | IngestError::InvalidOption(_) => ErrorKind::BadInput,
        }
    }
}

/// Result type of the ingest crate.
pub type Result<T, E = IngestError> = std::result::Result<T, E>;
