//! Handlers of the stage endpoints (`stage/*`): the environment's file area ([`crate::stage`]).

use std::io::{Read, Seek, SeekFrom, Write};

use super::{Args, EnvCall, Output};
use crate::error::Result;
use crate::stage::{DEFAULT_MAX_BYTES, Stage};

type Out<'a> = Result<Output<'a>>;

/// The largest upload the environment takes (system parameter `stage-max-bytes`).
pub fn max_bytes(c: &EnvCall<'_>) -> u64 {
    c.env
        .engine()
        .system()
        .ok()
        .and_then(|s| s.get("stage-max-bytes").and_then(|v| v.as_u64()))
        .unwrap_or(DEFAULT_MAX_BYTES)
}

pub(super) fn put<'a>(c: &EnvCall<'a>, a: &Args) -> Out<'a> {
    let stage = Stage::of(c.env)?;
    let path = a.req("path")?;
    let limit = max_bytes(c);
    let answer = match (c.body, a.text("file")) {
        (Some(body), None) => {
            let mut body = body.lock().unwrap_or_else(|p| p.into_inner());
            stage.put(path, &mut *body, limit)?
        }
        // Only a local call, which runs as its user, may name a file of this machine.
        (None, Some(file)) if c.read_roots.is_none() => {
            let mut f = std::fs::File::open(file).map_err(|e| m1_engine::EngineError::io(file, e))?;
            stage.put(path, &mut f, limit)?
        }
        (_, Some(_)) => {
            return Err(m1_engine::EngineError::bad_parameter(
                "file",
                "over HTTP the file is the request body (raw, or multipart field 'file'), not a path on the server",
            )
            .into());
        }
        (None, None) => stage.put(path, &mut std::io::empty(), limit)?,
    };
    Ok(Output::Json(answer))
}

pub(super) fn list<'a>(c: &EnvCall<'a>, a: &Args) -> Out<'a> {
    Ok(Output::Json(Stage::of(c.env)?.get(a.text("path").unwrap_or(""))?))
}

pub(super) fn get<'a>(c: &EnvCall<'a>, a: &Args) -> Out<'a> {
    let stage = Stage::of(c.env)?;
    let path = a.req("path")?;
    if a.bool("metadata").unwrap_or(false) || path.ends_with('/') || path.is_empty() {
        return Ok(Output::Json(stage.get(path)?));
    }
    let (mut file, size) = stage.open(path)?;
    let offset = a.count("offset", 0)?.unwrap_or(0).min(size);
    let length = a.count("length", 0)?.unwrap_or(size - offset).min(size - offset);
    file.seek(SeekFrom::Start(offset)).map_err(|e| m1_engine::EngineError::io(path, e))?;
    Ok(Output::Stream {
        content_type: "application/octet-stream",
        write: Box::new(move |out: &mut dyn Write| {
            // Read in 256 KiB pieces: each becomes one chunk of the answer, not dozens.
            std::io::copy(&mut std::io::BufReader::with_capacity(256 << 10, file.take(length)), out)?;
            Ok(())
        }),
    })
}

pub(super) fn move_to<'a>(c: &EnvCall<'a>, a: &Args) -> Out<'a> {
    Ok(Output::Json(Stage::of(c.env)?.rename(a.req("path")?, a.req("newPath")?)?))
}

pub(super) fn delete<'a>(c: &EnvCall<'a>, a: &Args) -> Out<'a> {
    Ok(Output::Json(Stage::of(c.env)?.delete(a.req("path")?)?))
}
