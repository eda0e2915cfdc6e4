//! The query crate's error type.

use m1_engine::EngineError;

use crate::syntax::SyntaxError;

/// What can go wrong answering a read.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The storage core failed or refused.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// Arrow failed while assembling results.
    #[cfg(feature = "lake")]
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    /// Writing results to the output failed.
    #[error("writing results: {0}")]
    Output(#[from] std::io::Error),
    /// A query does not parse.
    #[error("query syntax: {0}")]
    Syntax(#[from] SyntaxError),
    /// A query, sort, facet or `fl` names a property the schema lacks.
    #[error("unknown property '{0}': it is not in the schema (see the schema endpoint)")]
    UnknownProperty(String),
    /// No data store has that name.
    #[error("unknown store '{0}': see store/list for the stores of this environment")]
    UnknownStore(String),
    /// A data store of that name exists already.
    #[error("a store named '{0}' already exists")]
    StoreExists(String),
    /// A store's files are not what m1 wrote; `store/rebuild` recreates them from the lake.
    #[error("store is damaged ({0}); rebuild it with store/rebuild")]
    StoreDamaged(String),
    /// The index library failed.
    #[cfg(feature = "stores")]
    #[error("index: {0}")]
    Index(#[from] tantivy::TantivyError),
    /// A tantivy directory could not be opened.
    #[cfg(feature = "stores")]
    #[error("index directory: {0}")]
    IndexDirectory(#[from] tantivy::directory::error::OpenDirectoryError),
    /// A worker thread panicked; the request was abandoned.
    #[error("internal error: {0}")]
    WorkerPanicked(String),
    /// A request parameter is invalid.
    #[error("{0}")]
    BadRequest(String),
    /// No session store has this name.
    #[error("no session store named '{0}' (see session/list)")]
    NoSessionStore(String),
    /// A session store call was refused (a conflict, not bad syntax), with the reason.
    #[error("session store '{store}': {reason}")]
    SessionRefused { store: String, reason: String },
    /// A boost store would grow past the environment's memory bound.
    #[error(
        "the boost stores of this environment hold {held} bytes, over their share ({share} bytes) of its memory bound (maxTotalMemoryGb, or the system parameter memory-limit-bytes): raise it with env/settings, or use a standard store"
    )]
    OverMemory { held: u64, share: u64 },
    /// Reading or writing a session store's files failed.
    #[error("session store file {}: {source}", path.display())]
    SessionIo { path: std::path::PathBuf, source: std::io::Error },
    /// A session store's files are damaged.
    #[error("session store file {} is damaged: {message}", path.display())]
    SessionCorrupt { path: std::path::PathBuf, message: String },
}

#[cfg(feature = "stores")]
/// The result of a joined worker thread, a panic turned into [`QueryError::WorkerPanicked`].
pub(crate) fn joined<T>(what: &str, r: std::thread::Result<Result<T>>) -> Result<T> {
    r.map_err(|p| QueryError::WorkerPanicked(format!("{what} panicked: {}", m1_engine::panic_message(&*p))))?
}

impl QueryError {
    /// What kind of failure this is (see [`m1_engine::ErrorKind`]).
    pub fn kind(&self) -> m1_engine::ErrorKind {
        use m1_engine::ErrorKind;
        match self {
            QueryError::Engine(e) => e.kind(),
            QueryError::Syntax(_) | QueryError::BadRequest(_) | QueryError::UnknownProperty(_) => ErrorKind::BadInput,
            QueryError::UnknownStore(_) | QueryError::NoSessionStore(_) => ErrorKind::NotFound,
            QueryError::StoreExists(_) => ErrorKind::Exists,
            QueryError::SessionRefused { .. } | QueryError::OverMemory { .. } => ErrorKind::Conflict,
            _ => ErrorKind::Internal,
        }
    }

    /// A session store I/O error at `path`.
    pub fn session_io(path: impl Into<std::path::PathBuf>, source: std::io::Error) -> QueryError {
        QueryError::SessionIo { path: path.into(), source }
    }
}

/// Result type of the query crate.
pub type Result<T, E = QueryError> = std::result::Result<T, E>;
