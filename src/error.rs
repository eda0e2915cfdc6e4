//! m1's error type: every failure of the library, with the situation it describes
//! ([`ErrorKind`]) so front-ends map it to an HTTP status or exit code without reading messages.

use m1_engine::EngineError;
pub use m1_engine::ErrorKind;
use m1_ingest::IngestError;
use m1_query::QueryError;

/// Any error m1 reports.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// From the storage core.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// From a read.
    #[error(transparent)]
    Query(#[from] QueryError),
    /// From a publish.
    #[error(transparent)]
    Ingest(#[from] IngestError),
    /// No endpoint has this path.
    #[error("unknown endpoint '{path}'{}", suggest(.known))]
    UnknownEndpoint { path: String, known: Vec<&'static str> },
    /// An endpoint was called with a parameter it does not take.
    #[error("{endpoint} takes no parameter '{name}'; its parameters are: {}", list(.known))]
    UnknownParameter { endpoint: String, name: String, known: Vec<&'static str> },
    /// A required parameter is missing.
    #[error("{endpoint}: missing required parameter '{name}' ({expected})")]
    MissingParameter { endpoint: String, name: String, expected: &'static str },
    /// A parameter's value is not of the expected shape.
    #[error("{endpoint}: parameter '{name}' must be {expected}, got '{value}'{}", paren(.detail))]
    BadParameter { endpoint: String, name: String, expected: &'static str, value: String, detail: String },
    /// The endpoint exists, but only `m1 serve` can answer it (users, tokens, accounts).
    #[error("{0} is answered by `m1 serve` only (users and tokens exist on a server): call it with -remote URL")]
    ServedOnly(String),
    /// The caller may not name this location (the server's confinement of copies).
    #[error("{0}")]
    Forbidden(String),
    /// The request conflicts with the state of what it names (a running service to delete, a
    /// workspace group that still has workspaces).
    #[error("{0}")]
    Conflict(String),
    /// Writing an answer failed (e.g. the reader went away).
    #[error("writing the answer: {0}")]
    Output(#[from] std::io::Error),
}

fn list(names: &[&'static str]) -> String {
    if names.is_empty() { "(none)".to_string() } else { names.join(", ") }
}

fn suggest(known: &[&'static str]) -> String {
    if known.is_empty() { String::new() } else { format!("; endpoints are: {}", known.join(", ")) }
}

fn paren(d: &str) -> String {
    if d.is_empty() { String::new() } else { format!(" ({d})") }
}

impl Error {
    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Engine(e) => e.kind(),
            Error::Query(e) => e.kind(),
            Error::Ingest(e) => e.kind(),
            Error::UnknownEndpoint { .. } => ErrorKind::NotFound,
            Error::UnknownParameter { .. } | Error::MissingParameter { .. } | Error::BadParameter { .. } => {
                ErrorKind::BadInput
            }
            Error::ServedOnly(_) => ErrorKind::BadInput,
            Error::Forbidden(_) => ErrorKind::Forbidden,
            Error::Conflict(_) => ErrorKind::Conflict,
            Error::Output(_) => ErrorKind::Internal,
        }
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error::Engine(EngineError::from(e))
    }
}

/// Result type of m1.
pub type Result<T, E = Error> = std::result::Result<T, E>;
