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
}

/// Result type of the query crate.
pub type Result<T, E = QueryError> = std::result::Result<T, E>;
