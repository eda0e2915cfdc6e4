//! Request bodies that are data, not parameters (`stage/put`): streamed to the blocking handler
//! through a small bounded channel, so a 1 GB upload holds a few chunks in memory, never the file.
//! A multipart body (seed 003's `file` field) is unwrapped on the way.

use std::io::Read;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, header};
use bytes::Bytes;
use futures::StreamExt;

/// Chunks in flight between the connection and the handler.
const IN_FLIGHT: usize = 8;

/// The reading end: what the handler reads the body from.
pub struct BodyReader {
    chunks: tokio::sync::mpsc::Receiver<std::io::Result<Bytes>>,
    current: Bytes,
}

impl Read for BodyReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            // Read on a blocking thread (the handler's), so waiting blocks only it.
            match self.chunks.blocking_recv() {
                Some(Ok(b)) => self.current = b,
                Some(Err(e)) => return Err(e),
                // The sender is done: the body ended.
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

/// Starts moving `body` into a [`BodyReader`]; a pause longer than `timeout` between chunks
/// fails the read (so a stalled client cannot hold an upload open).
pub fn reader(headers: &HeaderMap, body: Body, timeout: Duration) -> BodyReader {
    let (tx, rx) = tokio::sync::mpsc::channel(IN_FLIGHT);
    let boundary = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .filter(|ct| ct.starts_with("multipart/form-data"))
        .and_then(|ct| multer::parse_boundary(ct).ok());
    tokio::spawn(async move {
        match boundary {
            None => pump(body.into_data_stream(), &tx, timeout).await,
            Some(boundary) => {
                let mut parts = multer::Multipart::new(body.into_data_stream(), boundary);
                loop {
                    match tokio::time::timeout(timeout, parts.next_field()).await {
                        Ok(Ok(Some(field))) if field.name() == Some("file") => {
                            return pump(field, &tx, timeout).await;
                        }
                        Ok(Ok(Some(_))) => continue,
                        Ok(Ok(None)) => return,
                        Ok(Err(e)) => return fail(&tx, format!("bad multipart body: {e}")).await,
                        Err(_) => return fail(&tx, stalled(timeout)).await,
                    }
                }
            }
        }
    });
    BodyReader { chunks: rx, current: Bytes::new() }
}

type Sender = tokio::sync::mpsc::Sender<std::io::Result<Bytes>>;

/// Moves a stream of chunks into the channel until it ends, fails or stalls.
async fn pump<E: std::fmt::Display>(
    mut chunks: impl futures::Stream<Item = Result<Bytes, E>> + Unpin,
    tx: &Sender,
    timeout: Duration,
) {
    loop {
        match tokio::time::timeout(timeout, chunks.next()).await {
            Ok(Some(Ok(b))) => {
                if tx.send(Ok(b)).await.is_err() {
                    return;
                }
            }
            Ok(None) => return,
            Ok(Some(Err(e))) => return fail(tx, format!("the upload broke off: {e}")).await,
            Err(_) => return fail(tx, stalled(timeout)).await,
        }
    }
}

async fn fail(tx: &Sender, what: String) {
    let _ = tx.send(Err(std::io::Error::other(what))).await;
}

fn stalled(timeout: Duration) -> String {
    format!("the upload stalled for {} ms", timeout.as_millis())
}
