//! Checkpoints of a session store: every live document at a log-generation boundary, so
//! reopening reads one sequential file plus the short log written since.
//!
//! `snap-<gen>.bin` holds the state produced by every log generation below `gen`:
//! `"M1SESS01" | key property (len-prefixed) | shards: u32 | documents: u64 |
//! (key, doc) len-prefixed pairs | crc32 of all the preceding bytes: u32`.
//!
//! Invariant: a snapshot is written to a temporary name, fsynced, renamed and the directory
//! fsynced before the log generations it replaces are deleted; so at every instant the newest
//! `snap-*.bin` plus the logs from its generation on hold every acknowledged call.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::wal::{get_bytes, sync_dir};
use crate::error::{QueryError, Result};

const MAGIC: &[u8; 8] = b"M1SESS01";

/// A loaded checkpoint.
#[derive(Debug)]
pub struct Snapshot {
    /// The key property at the checkpoint.
    pub key_path: String,
    /// Shard count (must match the store's).
    pub shards: u32,
    /// Live documents: key and JSON bytes.
    pub docs: Vec<(Arc<str>, Arc<[u8]>)>,
}

/// The file name of the checkpoint at generation `generation`.
pub fn file_name(generation: u64) -> String {
    format!("snap-{generation:016}.bin")
}

struct CrcWriter<W: Write> {
    inner: W,
    crc: crc32fast::Hasher,
}

impl<W: Write> Write for CrcWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.crc.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn len_prefixed(w: &mut impl Write, b: &[u8]) -> std::io::Result<()> {
    w.write_all(&(b.len() as u32).to_le_bytes())?;
    w.write_all(b)
}

/// Writes the checkpoint of generation `generation` durably; returns its path.
pub fn write(
    dir: &Path,
    generation: u64,
    key_path: &str,
    shards: u32,
    docs: &[(Arc<str>, Arc<[u8]>)],
) -> Result<PathBuf> {
    let path = dir.join(file_name(generation));
    let tmp = dir.join(format!("{}.tmp", file_name(generation)));
    let io = |e| QueryError::session_io(&tmp, e);
    let file = File::create(&tmp).map_err(io)?;
    let mut w = CrcWriter { inner: BufWriter::with_capacity(1 << 20, file), crc: crc32fast::Hasher::new() };
    w.write_all(MAGIC).map_err(io)?;
    len_prefixed(&mut w, key_path.as_bytes()).map_err(io)?;
    w.write_all(&shards.to_le_bytes()).map_err(io)?;
    w.write_all(&(docs.len() as u64).to_le_bytes()).map_err(io)?;
    for (k, d) in docs {
        len_prefixed(&mut w, k.as_bytes()).map_err(io)?;
        len_prefixed(&mut w, d).map_err(io)?;
    }
    let crc = w.crc.clone().finalize();
    let mut inner = w.inner;
    inner.write_all(&crc.to_le_bytes()).map_err(io)?;
    let file = inner.into_inner().map_err(|e| io(e.into_error()))?;
    file.sync_all().map_err(io)?;
    drop(file);
    std::fs::rename(&tmp, &path).map_err(io)?;
    sync_dir(dir)?;
    Ok(path)
}

/// Reads and checks a checkpoint.
pub fn read(path: &Path) -> Result<Snapshot> {
    let corrupt = |m: &str| QueryError::SessionCorrupt { path: path.to_path_buf(), message: m.to_string() };
    let mut buf = Vec::new();
    File::open(path).and_then(|mut f| f.read_to_end(&mut buf)).map_err(|e| QueryError::session_io(path, e))?;
    if buf.len() < MAGIC.len() + 4 || &buf[..8] != MAGIC {
        return Err(corrupt("not a session checkpoint"));
    }
    let body = &buf[..buf.len() - 4];
    let crc = u32::from_le_bytes(buf[buf.len() - 4..].try_into().expect("4 bytes"));
    if crc32fast::hash(body) != crc {
        return Err(corrupt("checksum mismatch"));
    }
    let mut pos = 8;
    let key_path = get_bytes(body, &mut pos)
        .and_then(|b| std::str::from_utf8(b).ok())
        .ok_or_else(|| corrupt("bad key property"))?
        .to_string();
    let num = |pos: &mut usize, n: usize| -> Result<u64> {
        let b = body.get(*pos..*pos + n).ok_or_else(|| corrupt("truncated header"))?;
        *pos += n;
        Ok(b.iter().rev().fold(0u64, |acc, &x| (acc << 8) | u64::from(x)))
    };
    let shards = num(&mut pos, 4)? as u32;
    let count = num(&mut pos, 8)?;
    let mut docs = Vec::with_capacity(count.min(1 << 24) as usize);
    for _ in 0..count {
        let key =
            get_bytes(body, &mut pos).and_then(|b| std::str::from_utf8(b).ok()).ok_or_else(|| corrupt("bad key"))?;
        let doc = get_bytes(body, &mut pos).ok_or_else(|| corrupt("truncated document"))?;
        docs.push((Arc::from(key), Arc::from(doc)));
    }
    if pos != body.len() {
        return Err(corrupt("trailing bytes"));
    }
    Ok(Snapshot { key_path, shards, docs })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_round_trip_and_damage_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let docs = vec![(Arc::from("a"), Arc::from(&b"{}"[..])), (Arc::from("b"), Arc::from(&b"[1]"[..]))];
        let path = write(dir.path(), 3, "session.id", 2, &docs).unwrap();
        let s = read(&path).unwrap();
        assert_eq!((s.key_path.as_str(), s.shards, s.docs.len()), ("session.id", 2, 2));
        assert_eq!(&s.docs[1].1[..], b"[1]");
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[12] ^= 0xff;
        std::fs::write(&path, bytes).unwrap();
        assert!(matches!(read(&path), Err(QueryError::SessionCorrupt { .. })));
    }
}
