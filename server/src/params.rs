//! Request parameters as the seeds send them: query string, form fields
//! (`application/x-www-form-urlencoded`, also when no content type is given), multipart fields,
//! or a JSON object body, as text; the endpoint layer (`m1::endpoint::Args`) decodes them.
//!
//! Invariant: reading a body never holds more than the configured limit and never waits longer
//! than the configured timeout, so a huge or slow client gets 413 or 408, not the server's memory
//! or a worker.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, header};
use bytes::Bytes;
use futures::StreamExt;
use serde_json::Value;

use crate::error::{Result, ServerError};

/// Named parameters of one request (a later value of a name replaces an earlier one).
#[derive(Debug, Clone, Default)]
pub struct Params(pub BTreeMap<String, String>);

impl Params {
    /// Parses a query string.
    pub fn from_query(query: &str) -> Params {
        Params(form_urlencoded::parse(query.as_bytes()).into_owned().collect())
    }

    /// A single `Range: bytes=A-B` (or `A-`, or `-N` for the last N bytes) as `offset` and
    /// `length` over a file of `size` bytes: the range sent, for `Content-Range`. 416-style
    /// errors (a range starting past the end) are a 400 naming the header.
    pub fn set_range(&mut self, header: &str, size: u64) -> Result<(u64, u64)> {
        let bad =
            || ServerError::BadRequest(format!("Range '{header}': give one range, bytes=START-END, START- or -LAST"));
        let spec = header.trim().strip_prefix("bytes=").ok_or_else(bad)?;
        if spec.contains(',') {
            return Err(bad());
        }
        let (a, b) = spec.split_once('-').ok_or_else(bad)?;
        let num = |t: &str| t.trim().parse::<u64>().map_err(|_| bad());
        let (start, end) = match (a.trim().is_empty(), b.trim().is_empty()) {
            (false, true) => (num(a)?, size.saturating_sub(1)),
            (false, false) => (num(a)?, num(b)?.min(size.saturating_sub(1))),
            (true, false) => (size.saturating_sub(num(b)?), size.saturating_sub(1)),
            (true, true) => return Err(bad()),
        };
        if start >= size || end < start {
            return Err(ServerError::BadRequest(format!("Range '{header}' is outside the file's {size} bytes")));
        }
        self.0.insert("offset".into(), start.to_string());
        self.0.insert("length".into(), (end - start + 1).to_string());
        Ok((start, end))
    }

    /// Adds the body's parameters (decoded by content type), reading at most `limit` bytes
    /// within `timeout`.
    pub async fn read_body(&mut self, headers: &HeaderMap, body: Body, limit: usize, timeout: Duration) -> Result<()> {
        let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        if let Some(len) = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
            && len > limit as u64
        {
            return Err(too_large(limit));
        }
        let read = async {
            if content_type.starts_with("multipart/form-data") {
                self.read_multipart(&content_type, body, limit).await
            } else {
                let bytes = collect(body, limit).await?;
                self.read_bytes(&content_type, &bytes)
            }
        };
        match tokio::time::timeout(timeout, read).await {
            Ok(r) => r,
            Err(_) => {
                Err(ServerError::Timeout(format!("the request body did not arrive within {} ms", timeout.as_millis())))
            }
        }
    }

    fn read_bytes(&mut self, content_type: &str, bytes: &[u8]) -> Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        if content_type.starts_with("application/json") {
            let value: Value = serde_json::from_slice(bytes)
                .map_err(|e| ServerError::BadRequest(format!("the JSON body is not valid: {e}")))?;
            let Value::Object(map) = value else {
                return Err(ServerError::BadRequest("a JSON body must be an object of parameters".into()));
            };
            for (k, v) in map {
                let text = match v {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                self.0.insert(k, text);
            }
            return Ok(());
        }
        self.0.extend(form_urlencoded::parse(bytes).into_owned());
        Ok(())
    }

    async fn read_multipart(&mut self, content_type: &str, body: Body, limit: usize) -> Result<()> {
        let boundary = multer::parse_boundary(content_type)
            .map_err(|e| ServerError::BadRequest(format!("multipart body: {e}")))?;
        let constraints = multer::Constraints::new().size_limit(multer::SizeLimit::new().whole_stream(limit as u64));
        let stream = body.into_data_stream();
        let mut parts = multer::Multipart::with_constraints(stream, boundary, constraints);
        loop {
            let field = match parts.next_field().await {
                Ok(Some(f)) => f,
                Ok(None) => return Ok(()),
                Err(multer::Error::StreamSizeExceeded { .. }) => return Err(too_large(limit)),
                Err(e) => return Err(ServerError::BadRequest(format!("multipart body: {e}"))),
            };
            let name = field.name().unwrap_or("").to_string();
            let text = field.text().await.map_err(|e| match e {
                multer::Error::StreamSizeExceeded { .. } => too_large(limit),
                e => ServerError::BadRequest(format!("multipart field '{name}': {e}")),
            })?;
            if !name.is_empty() {
                self.0.insert(name, text);
            }
        }
    }

    /// The parameters as name/value pairs, for the endpoint layer to decode.
    pub fn into_pairs(self) -> impl Iterator<Item = (String, String)> {
        self.0.into_iter()
    }
}

fn too_large(limit: usize) -> ServerError {
    ServerError::TooLarge(format!("the request body is over the limit of {limit} bytes"))
}

/// Reads a whole body, failing past `limit` bytes.
async fn collect(body: Body, limit: usize) -> Result<Bytes> {
    let mut stream = body.into_data_stream();
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ServerError::BadRequest(format!("reading the request body: {e}")))?;
        if out.len() + chunk.len() > limit {
            return Err(too_large(limit));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(out))
}
