//! The server's error type and how each error becomes an HTTP answer
//! (`{"message": .., "status": ..}`).
//!
//! Invariant: the status comes from the error's variant or, for the library's errors, from its
//! [`m1::ErrorKind`], never from its wording. Bad input maps to a 4xx; only failures of the
//! machine itself (I/O, a damaged table log, a panicked worker) map to 5xx, and those are logged.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use m1::ErrorKind;

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
    /// Too many failed logins; retry after this many seconds (429 with `Retry-After`).
    #[error("{0}")]
    TooManyAttempts(String, u64),
    /// Too much work at once; retry later (503).
    #[error("{0}")]
    Busy(String),
    /// A failure of the server itself (500).
    #[error("{0}")]
    Internal(String),
    /// From the library (an endpoint).
    #[error(transparent)]
    Api(#[from] m1::Error),
}

impl From<m1::EngineError> for ServerError {
    fn from(e: m1::EngineError) -> Self {
        ServerError::Api(e.into())
    }
}

/// Result type of the server.
pub type Result<T, E = ServerError> = std::result::Result<T, E>;

/// The HTTP status of a kind of library error.
pub fn kind_status(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::BadInput => StatusCode::BAD_REQUEST,
        ErrorKind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Forbidden => StatusCode::FORBIDDEN,
        ErrorKind::Exists | ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::Suspended | ErrorKind::Busy => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

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
            ServerError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ServerError::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
            ServerError::TooManyAttempts(..) => StatusCode::TOO_MANY_REQUESTS,
            ServerError::Api(e) => kind_status(e.kind()),
        }
    }
}

/// The JSON error body every failure answers with.
pub fn error_body(status: StatusCode, message: &str) -> Response {
    let body = serde_json::json!({"message": message, "status": status.as_u16()});
    (status, [(axum::http::header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

impl IntoResponse for ServerError {
    fn into_response(self) -> Response {
        let status = self.status();
        let message = self.to_string();
        if status.is_server_error() {
            // The client sees the message too; the operator needs it in the log.
            eprintln!("m1 serve: {} {message}", status.as_u16());
        }
        let mut response = error_body(status, &message);
        let retry_after = match &self {
            ServerError::TooManyAttempts(_, secs) => Some(*secs),
            ServerError::Busy(_) => Some(1),
            _ => None,
        };
        if let Some(secs) = retry_after {
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from(secs));
        }
        response
    }
}
