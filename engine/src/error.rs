//! The engine's error type.

use std::path::PathBuf;

/// Everything that can go wrong in the storage core, named for the situation.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A location string is not a path or URL m1 can open.
    #[error("cannot use '{url}' as an environment location: {reason}")]
    BadLocation { url: String, reason: String },
    /// No environment exists at the location.
    #[error("no m1 environment at '{0}': create one with `m1 ops env/create -env NAME -url URL`")]
    NoEnvironment(String),
    /// An environment already exists where one was to be created.
    #[error("an m1 environment already exists at '{0}'")]
    EnvironmentExists(String),
    /// A schema change or property definition is invalid.
    #[error("schema: {0}")]
    Schema(String),
    /// A property named in a request is not in the schema.
    #[error("unknown property '{0}': it is not in the schema (see `m1 <env> schema`)")]
    UnknownProperty(String),
    /// Appended data does not fit the schema.
    #[error("{0}")]
    BadData(String),
    /// A value could not be coerced to its property's type.
    #[error("property '{property}': value {value} is not a valid {expected}")]
    BadValue { property: String, value: String, expected: String },
    /// The table log holds something m1 cannot read.
    #[error("table log version {version}: {reason}")]
    CorruptLog { version: u64, reason: String },
    /// A commit kept losing races with other writers.
    #[error("gave up committing after {0} conflicting attempts by other writers; retry")]
    TooManyConflicts(usize),
    /// A catalog operation failed.
    #[error("catalog: {0}")]
    Catalog(String),
    /// An object store request failed.
    #[cfg(feature = "storage")]
    #[error("storage: {0}")]
    Store(#[from] object_store::Error),
    /// Reading or writing Parquet failed.
    #[cfg(feature = "storage")]
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    /// An Arrow computation failed.
    #[error("arrow: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
    /// JSON in the log or catalog could not be (de)serialized.
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
    /// Local file I/O failed.
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

/// Result type of the engine.
pub type Result<T, E = EngineError> = std::result::Result<T, E>;

impl EngineError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        EngineError::Io { path: path.into(), source }
    }
}
