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
    /// No catalog environment has this name or id.
    #[error("no environment named '{0}' (see `m1 ops env/list`)")]
    UnknownEnvironment(String),
    /// The catalog has an environment of this name already.
    #[error("an environment named '{0}' already exists")]
    EnvironmentNameTaken(String),
    /// Nothing is at this path of the environment's stage.
    #[error("nothing at stage path '{0}' (list the stage: stage/list, or GET /v1/stage/ID/fs/)")]
    StageNotFound(String),
    /// Input over a configured limit.
    #[error("{0}")]
    TooLarge(String),
    /// No workspace group has this id.
    #[error("no workspace group with id '{0}' (see GET /v1/workspaceGroups)")]
    UnknownGroup(String),
    /// A live workspace group has this name already.
    #[error("a workspace group named '{0}' already exists")]
    GroupNameTaken(String),
    /// The environment was stopped by an operator and answers nothing until it is started.
    #[error(
        "environment '{env}' is {state}: start it first (m1 ops env/start -env {env}, or PATCH /v1/organizations/ORG/services/ID/state {{\"command\":\"start\"}})"
    )]
    NotRunning { env: String, state: String },
    /// The catalog file cannot be read as a catalog.
    #[error("catalog {path} is damaged: {reason}")]
    CatalogDamaged { path: PathBuf, reason: String },
    /// A parameter of a catalog or environment operation is not valid.
    #[error("parameter '{name}': {reason}")]
    BadParameter { name: String, reason: String },
    /// A bucket named in a request is not registered with the environment.
    #[error("bucket '{bucket}' is not registered with '{env}'")]
    UnknownBucket { env: String, bucket: String },
    /// A read or restore named a table version the log has not reached.
    #[error("version {version} does not exist: the newest is {newest} (see `m1 <env> versions`)")]
    UnknownVersion { version: u64, newest: u64 },
    /// A read or restore named a version retention has removed from the log.
    #[error(
        "version {version} is no longer restorable: retention removed it; the oldest restorable version is {oldest} \
         (backups keep older states: see `m1 <env> backup/list`)"
    )]
    VersionGone { version: u64, oldest: u64 },
    /// An `asOf` time before the first version still in the log.
    #[error("no version as of {time}: the oldest restorable version was committed at {oldest}")]
    BeforeHistory { time: String, oldest: String },
    /// No backup has this id or name.
    #[error("no backup '{0}' (see `m1 <env> backup/list`)")]
    UnknownBackup(String),
    /// A backup or copy was to be written where one exists already.
    #[error("a backup exists already at '{0}'; choose an empty location")]
    BackupExists(String),
    /// The environment is fenced: another location became its writable primary.
    #[error("this location is fenced: {0}")]
    Fenced(String),
    /// A worker thread panicked; the operation was abandoned and nothing was committed.
    #[error("internal error: {0}")]
    WorkerPanicked(String),
    /// An object store request failed.
    #[cfg(feature = "storage")]
    #[error("storage: {0}")]
    Store(#[from] object_store::Error),
    /// A conditional put reported an error and reading the file back failed too, so whether the
    /// write landed is unknown until the store answers again.
    #[cfg(feature = "storage")]
    #[error(
        "storage: cannot tell whether {path} was written: the write failed ({put}) and reading it back \
         failed too ({read}); once the store answers again, reopen the environment to see its state"
    )]
    CommitUnknown { path: String, put: object_store::Error, read: Box<EngineError> },
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
    /// A [`EngineError::BadParameter`].
    pub fn bad_parameter(name: &str, reason: impl Into<String>) -> Self {
        EngineError::BadParameter { name: name.to_string(), reason: reason.into() }
    }

    /// What kind of failure this is, for callers that map errors to statuses or exit codes.
    pub fn kind(&self) -> ErrorKind {
        use EngineError::*;
        match self {
            BadLocation { .. }
            | Schema(_)
            | UnknownProperty(_)
            | BadData(_)
            | BadValue { .. }
            | BadParameter { .. } => ErrorKind::BadInput,
            NoEnvironment(_)
            | UnknownEnvironment(_)
            | UnknownBucket { .. }
            | UnknownVersion { .. }
            | VersionGone { .. }
            | BeforeHistory { .. }
            | UnknownGroup(_)
            | StageNotFound(_)
            | UnknownBackup(_) => ErrorKind::NotFound,
            EnvironmentExists(_) | EnvironmentNameTaken(_) | GroupNameTaken(_) | BackupExists(_) => ErrorKind::Exists,
            Fenced(_) | NotRunning { .. } => ErrorKind::Conflict,
            TooLarge(_) => ErrorKind::TooLarge,
            TooManyConflicts(_) => ErrorKind::Busy,
            CorruptLog { .. } | CatalogDamaged { .. } | WorkerPanicked(_) | Json(_) | Io { .. } | Arrow(_) => {
                ErrorKind::Internal
            }
            #[cfg(feature = "storage")]
            Store(object_store::Error::NotFound { .. }) => ErrorKind::NotFound,
            #[cfg(feature = "storage")]
            Store(_) | Parquet(_) | CommitUnknown { .. } => ErrorKind::Internal,
        }
    }

    #[cfg_attr(not(feature = "storage"), allow(dead_code))]
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        EngineError::Io { path: path.into(), source }
    }
}

/// The situation an error describes, independent of its wording: what front-ends map to HTTP
/// statuses and exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The request is malformed or does not fit the data (400).
    BadInput,
    /// What the request names does not exist (404).
    NotFound,
    /// The caller may not do this (403).
    Forbidden,
    /// What the request would create exists already (409).
    Exists,
    /// The request conflicts with the current state (409).
    Conflict,
    /// The environment is suspended and cannot answer now (503).
    Suspended,
    /// The input is over a configured limit (413).
    TooLarge,
    /// Too much contention or load right now; retrying may succeed (503).
    Busy,
    /// A failure of m1 or the machine itself, not of the request (500).
    Internal,
}

/// The message of a panic payload (what `std::thread::JoinHandle::join` returns on a panic).
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a worker thread panicked".to_string()
    }
}
