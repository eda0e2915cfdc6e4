//! Responses, and streaming ones: a producer on a blocking thread writes into a bounded channel
//! that the response body drains, so memory stays at a few chunks whatever the result size, and
//! a client that stops reading stops the producer (its sends fail).

use std::io::Write;

use axum::body::Body;
use bytes::Bytes;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::error::{Result, ServerError};

/// What an endpoint answers.
pub enum Reply {
    /// No body ("No response when successful").
    Empty,
    /// A JSON value.
    Json(Value),
    /// A body produced while it is sent, with its content type.
    Stream(Body, &'static str),
}

/// Chunks buffered between producer and socket.
const CHANNEL_CHUNKS: usize = 8;
/// Bytes per chunk.
const CHUNK_BYTES: usize = 64 << 10;

/// A `Write` that sends full chunks down the channel; fails once the client has gone.
pub struct ChunkWriter {
    tx: mpsc::Sender<std::io::Result<Bytes>>,
    buf: Vec<u8>,
}

impl ChunkWriter {
    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK_BYTES)));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the client went away"))
    }

    /// Ends the body with an error (the client sees a truncated response, never a false end).
    pub fn fail(mut self, message: String) {
        let _ = self.send();
        let _ = self.tx.blocking_send(Err(std::io::Error::other(message)));
    }
}

impl Drop for ChunkWriter {
    fn drop(&mut self) {
        let _ = self.send();
    }
}

impl Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK_BYTES {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

/// Runs `produce` on a blocking thread and streams what it writes. `produce` first returns its
/// setup result through `ready` so errors found before any byte is written (bad parameters,
/// unknown properties) still answer with a proper status.
pub async fn stream<F>(content_type: &'static str, produce: F) -> Result<Reply>
where
    F: FnOnce(&mut dyn FnMut() -> Result<ChunkWriter>) -> Result<()> + Send + 'static,
{
    let (tx, mut rx) = mpsc::channel::<std::io::Result<Bytes>>(CHANNEL_CHUNKS);
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<Result<()>>();
    tokio::task::spawn_blocking(move || {
        let mut ready_tx = Some(ready_tx);
        let mut tx = Some(tx);
        let mut start = || {
            if let Some(r) = ready_tx.take() {
                let _ = r.send(Ok(()));
            }
            let tx = tx.take().ok_or_else(|| ServerError::Internal("a stream was started twice".into()))?;
            Ok(ChunkWriter { tx, buf: Vec::with_capacity(CHUNK_BYTES) })
        };
        let result = produce(&mut start);
        if let (Err(e), Some(r)) = (result, ready_tx) {
            let _ = r.send(Err(e));
        }
    });
    match ready_rx.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(e),
        Err(_) => return Err(ServerError::Internal("the result producer stopped before answering".into())),
    }
    let body = futures::stream::poll_fn(move |cx| rx.poll_recv(cx));
    Ok(Reply::Stream(Body::from_stream(body), content_type))
}

/// Runs a blocking endpoint on the blocking pool.
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| ServerError::Internal(format!("the request failed: {e}")))?
}
