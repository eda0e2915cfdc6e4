//! The server's error type and how each error becomes an HTTP answer
//! (`{"message": .., "status": ..}`).
//!
//! Invariant: bad input maps to a 4xx; only failures of the machine itself (I/O, a damaged
//! table log, a panicked worker) map to 5xx.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use m1_engine::EngineError;
use m1_ingest::IngestError;
use m1_query::QueryError;

/// Everything a request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Malformed or missing parameters (400).
    #[error("{0}")]
    BadRequest(String),
    /// No token, or one that is unknown, expired or bound to another address (401).
    #[error("{0}")]
    Unauthorized(String),
    /// A valid token whose user lacks the right (403).
    #[error("{0}")]
    Forbidden(String),
    /// No such endpoint, environment, user or store (404).
    #[error("{0}")]
    NotFound(String),
    /// The endpoint exists but not for this verb (405).
    #[error("{0}")]
    MethodNotAllowed(String),
    /// The client was too slow sending its request (408).
    #[error("{0}")]
    Timeout(String),
    /// The thing to create exists already (409).
    #[error("{0}")]
    Conflict(String),
    /// The body is over the configured limit (413).
    #[error("{0}")]
    TooLarge(String),
    /// The endpoint is part of the API but this build cannot serve it yet (501).
    #[error("{0}")]
    NotImplemented(String),
    /// A failure of the server itself (500).
    #[error("{0}")]
    Internal(String),
    /// From the storage core.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// From a publish or write.
    #[error(transparent)]
    Ingest(#[from] IngestError),
    /// From a read.
    #[error(transparent)]
    Query(#[from] QueryError),
}

/// Result type of the server.
pub type Result<T, E = ServerError> = std::result::Result<T, E>;

impl ServerError {
    /// The HTTP status this error answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            ServerError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ServerError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ServerError::Forbidden(_) => StatusCode::FORBIDDEN,
            ServerError::NotFound(_) => StatusCode::NOT_FOUND,
            ServerError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ServerError::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
            ServerError::Conflict(_) => StatusCode::CONFLICT,
            ServerError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ServerError::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
            ServerError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ServerError::Engine(e) => engine_status(e),
            ServerError::Ingest(e) => match e {
                IngestError::Engine(e) => engine_status(e),
                // The caller named the file; a file that cannot be read is their input.
                _ => StatusCode::BAD_REQUEST,
            },
            ServerError::Query(e) => match e {
                QueryError::Engine(e) => engine_status(e),
                QueryError::Syntax(_) | QueryError::BadRequest(_) | QueryError::UnknownProperty(_) => {
                    StatusCode::BAD_REQUEST
                }
                QueryError::UnknownStore(_) | QueryError::NoSessionStore(_) => StatusCode::NOT_FOUND,
                QueryError::SessionRefused { .. } => StatusCode::CONFLICT,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            },
        }
    }
}

fn engine_status(e: &EngineError) -> StatusCode {
    match e {
        EngineError::BadLocation { .. }
        | EngineError::Schema(_)
        | EngineError::UnknownProperty(_)
        | EngineError::BadData(_)
        | EngineError::BadValue { .. } => StatusCode::BAD_REQUEST,
        EngineError::NoEnvironment(_) => StatusCode::NOT_FOUND,
        EngineError::EnvironmentExists(_) => StatusCode::CONFLICT,
        EngineError::Catalog(m) if m.starts_with("no environment") => StatusCode::NOT_FOUND,
        EngineError::Catalog(m) if m.contains("already exists") => StatusCode::CONFLICT,
        EngineError::Catalog(m) if m.contains("damaged") => StatusCode::INTERNAL_SERVER_ERROR,
        EngineError::Catalog(_) => StatusCode::BAD_REQUEST,
        EngineError::TooManyConflicts(_) => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The JSON error body every failure answers with.
pub fn error_body(status: StatusCode, message: &str) -> Response {
    let body = serde_json::json!({"message": message, "status": status.as_u16()});
    (status, [(axum::http::header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

impl IntoResponse for ServerError {
    fn into_response(self) -> Response {
        error_body(self.status(), &self.to_string())
    }
}
