//! Responses, and streaming ones: a producer on a blocking thread writes into a bounded channel
//! that the response body drains, so memory stays at a few chunks whatever the result size, and
//! a client that stops reading stops the producer (its sends fail).

use std::io::Write;

use axum::body::Body;
use bytes::Bytes;
use serde_json::Value;
use tokio::sync::mpsc;

use m1::endpoint::Output;

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
struct ChunkWriter {
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
    fn fail(mut self, message: String) {
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

/// What a library endpoint answered, before any body byte is sent.
enum Ready {
    Empty,
    Json(Value),
    Stream(&'static str),
}

/// Runs `produce` on a blocking thread; it calls an endpoint and hands the endpoint's
/// [`Output`] to `deliver`. JSON and empty answers come back whole; a stream starts only once
/// the endpoint has returned, so errors found before any byte is written (bad parameters,
/// unknown properties) still answer with a proper status.
pub async fn respond<F>(produce: F) -> Result<Reply>
where
    F: FnOnce(&mut dyn FnMut(Output<'_>) -> Result<()>) -> Result<()> + Send + 'static,
{
    let (tx, mut rx) = mpsc::channel::<std::io::Result<Bytes>>(CHANNEL_CHUNKS);
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<Result<Ready>>();
    tokio::task::spawn_blocking(move || {
        let mut ready_tx = Some(ready_tx);
        let mut tx = Some(tx);
        let mut deliver = |output: Output<'_>| -> Result<()> {
            let ready = ready_tx.take().ok_or_else(|| ServerError::Internal("an answer was delivered twice".into()))?;
            match output {
                Output::Empty => {
                    let _ = ready.send(Ok(Ready::Empty));
                }
                Output::Json(v) => {
                    let _ = ready.send(Ok(Ready::Json(v)));
                }
                Output::Stream { content_type, write } => {
                    let _ = ready.send(Ok(Ready::Stream(content_type)));
                    let tx = tx.take().ok_or_else(|| ServerError::Internal("a stream was started twice".into()))?;
                    let mut out = ChunkWriter { tx, buf: Vec::with_capacity(CHUNK_BYTES) };
                    if let Err(e) = write(&mut out) {
                        out.fail(e.to_string());
                    }
                }
            }
            Ok(())
        };
        let result = produce(&mut deliver);
        if let (Err(e), Some(r)) = (result, ready_tx) {
            let _ = r.send(Err(e));
        }
    });
    match ready_rx.await {
        Ok(Ok(Ready::Empty)) => Ok(Reply::Empty),
        Ok(Ok(Ready::Json(v))) => Ok(Reply::Json(v)),
        Ok(Ok(Ready::Stream(content_type))) => {
            let body = futures::stream::poll_fn(move |cx| rx.poll_recv(cx));
            Ok(Reply::Stream(Body::from_stream(body), content_type))
        }
        Ok(Err(e)) => Err(e),
        Err(_) => Err(ServerError::Internal("the endpoint stopped before answering (it panicked)".into())),
    }
}

/// Runs a blocking endpoint on the blocking pool.
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| match e.try_into_panic() {
        Ok(p) => ServerError::Internal(format!("the request panicked: {}", m1_engine::panic_message(&*p))),
        Err(e) => ServerError::Internal(format!("the request failed: {e}")),
    })?
}
