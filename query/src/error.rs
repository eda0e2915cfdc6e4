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
    /// A request parameter is invalid.
    #[error("{0}")]
    BadRequest(String),
    /// No session store has this name.
    #[error("no session store named '{0}' (see session/list)")]
    NoSessionStore(String),
    /// A session store call was refused (a conflict, not bad syntax), with the reason.
    #[error("session store '{store}': {reason}")]
    SessionRefused { store: String, reason: String },
    /// Reading or writing a session store's files failed.
    #[error("session store file {}: {source}", path.display())]
    SessionIo { path: std::path::PathBuf, source: std::io::Error },
    /// A session store's files are damaged.
    #[error("session store file {} is damaged: {message}", path.display())]
    SessionCorrupt { path: std::path::PathBuf, message: String },
}

impl QueryError {
    /// A session store I/O error at `path`.
    pub fn session_io(path: impl Into<std::path::PathBuf>, source: std::io::Error) -> QueryError {
        QueryError::SessionIo { path: path.into(), source }
    }
}

/// Result type of the query crate.
pub type Result<T, E = QueryError> = std::result::Result<T, E>;
