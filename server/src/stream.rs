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

/// A `Write` that holds the first chunk back: an answer that ends within it is sent whole (with
/// its length, and with a proper status if the endpoint fails before it is full); a longer one
/// goes down the channel chunk by chunk and fails once the client has gone.
struct ChunkWriter {
    /// Until the first chunk is full: where the answer's start goes.
    ready: Option<tokio::sync::oneshot::Sender<Result<Ready>>>,
    content_type: &'static str,
    tx: mpsc::Sender<std::io::Result<Bytes>>,
    buf: Vec<u8>,
}

impl ChunkWriter {
    fn send(&mut self) -> std::io::Result<()> {
        if let Some(ready) = self.ready.take() {
            let _ = ready.send(Ok(Ready::Stream(self.content_type)));
        }
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK_BYTES)));
        self.push(chunk)
    }

    /// Sends one chunk to the socket's side; fails once the client has gone.
    fn push(&self, chunk: Bytes) -> std::io::Result<()> {
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the client went away"))
    }

    /// The answer is complete: whole if it fits in one chunk, else its last chunk.
    fn finish(mut self) {
        match self.ready.take() {
            Some(ready) => {
                let body = Bytes::from(std::mem::take(&mut self.buf));
                let _ = ready.send(Ok(Ready::Whole(self.content_type, body)));
            }
            None => {
                let _ = self.send();
            }
        }
    }

    /// Ends the answer with an error: a proper error status if nothing was sent yet, else a
    /// truncated body (the client never sees a false end).
    fn fail(mut self, e: ServerError) {
        match self.ready.take() {
            Some(ready) => {
                let _ = ready.send(Err(e));
            }
            None => {
                let _ = self.send();
                let _ = self.tx.blocking_send(Err(std::io::Error::other(e.to_string())));
            }
        }
    }
}

impl Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        // A large write once streaming has started goes out as it is (one copy, not two).
        if self.ready.is_none() && self.buf.is_empty() && data.len() >= CHUNK_BYTES {
            self.push(Bytes::copy_from_slice(data))?;
            return Ok(data.len());
        }
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK_BYTES {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        // Held back until the first chunk is full or the answer ends: a flush of a small answer
        // must not turn it into a stream.
        if self.ready.is_some() { Ok(()) } else { self.send() }
    }
}

/// What a library endpoint answered, before any body byte is sent.
enum Ready {
    Empty,
    Json(Value),
    /// A streamed answer that fitted in one chunk.
    Whole(&'static str, Bytes),
    Stream(&'static str),
}

/// Runs `produce` on a blocking thread; it calls an endpoint and hands the endpoint's
/// [`Output`] to `deliver`. JSON and empty answers come back whole, and so do streams that end
/// within their first chunk; a longer stream starts once that chunk is full, so errors found
/// before (bad parameters, unknown properties) still answer with a proper status.
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
                    let tx = tx.take().ok_or_else(|| ServerError::Internal("a stream was started twice".into()))?;
                    let mut out = ChunkWriter { ready: Some(ready), content_type, tx, buf: Vec::with_capacity(4096) };
                    match write(&mut out) {
                        Ok(()) => out.finish(),
                        Err(e) => out.fail(e.into()),
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
        Ok(Ok(Ready::Whole(content_type, bytes))) => Ok(Reply::Stream(Body::from(bytes), content_type)),
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
