//! Checkpoints of a session store: every document and the term index at a log-generation
//! boundary, so reopening reads one sequential file plus the short log written since, and
//! re-reads no document to rebuild the index.
//!
//! `snap-<gen>.bin` holds the state produced by every log generation below `gen`. Version 2:
//! `"M1SESS02" | key property (len-prefixed) | shards: u32 | per shard: (slots: u32 |
//! indexed below: u32 | per slot: tag u8 (0 dead, 1 live, 2 live and plain) then, if live,
//! key and document len-prefixed | terms: u64 | terms: u64 each | starts: u64 each, terms + 1 |
//! postings: u32 each, as many as the last start) | crc32 of all the preceding bytes: u32`.
//! Integers are little-endian; the index is [`Frozen`]'s arrays as they are.
//!
//! Version 1 (`"M1SESS01"`, written before the index was saved; still read, the index is then
//! rebuilt): `key property | shards: u32 | documents: u64 | (key, doc) len-prefixed pairs | crc32`.
//!
//! Invariant: a snapshot is written to a temporary name, fsynced, renamed and the directory
//! fsynced before the log generations it replaces are deleted; so at every instant the newest
//! `snap-*.bin` plus the logs from its generation on hold every acknowledged call.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::index::Frozen;
use super::shard::SavedSlot;
use super::wal::sync_dir;
use crate::error::{QueryError, Result};

const MAGIC_V1: &[u8; 8] = b"M1SESS01";
const MAGIC: &[u8; 8] = b"M1SESS02";

/// One shard of a version-2 checkpoint.
#[derive(Debug)]
pub struct SavedShard {
    /// Every slot, dead ones empty.
    pub slots: Vec<SavedSlot>,
    /// Live slots below this are in `index`; the others are indexed after loading.
    pub indexed_below: u32,
    /// The index over the slots below `indexed_below`.
    pub index: Frozen,
}

/// What a checkpoint holds besides its header.
#[derive(Debug)]
pub enum Content {
    /// Version 1: live documents only, to be spread over shards and indexed.
    Docs(Vec<(Arc<str>, Arc<[u8]>)>),
    /// Version 2: each shard as it was, with its index.
    Shards(Vec<SavedShard>),
}

/// A loaded checkpoint.
#[derive(Debug)]
pub struct Snapshot {
    /// The key property at the checkpoint.
    pub key_path: String,
    /// Shard count (must match the store's).
    pub shards: u32,
    /// Documents, and the index when saved.
    pub content: Content,
}

/// A shard to write: its slots, how far indexing got, and its index merged into one layer.
pub struct ShardToWrite<'a> {
    /// Every slot, dead ones empty.
    pub slots: &'a [SavedSlot],
    /// See [`SavedShard::indexed_below`].
    pub indexed_below: u32,
    /// The index over the slots below `indexed_below`.
    pub index: &'a Frozen,
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

fn write_body(w: &mut impl Write, key_path: &str, shards: &[ShardToWrite<'_>]) -> std::io::Result<()> {
    w.write_all(MAGIC)?;
    len_prefixed(w, key_path.as_bytes())?;
    w.write_all(&(shards.len() as u32).to_le_bytes())?;
    for s in shards {
        w.write_all(&(s.slots.len() as u32).to_le_bytes())?;
        w.write_all(&s.indexed_below.to_le_bytes())?;
        for slot in s.slots {
            match slot {
                None => w.write_all(&[0])?,
                Some((k, d, plain)) => {
                    w.write_all(&[1 + u8::from(*plain)])?;
                    len_prefixed(w, k.as_bytes())?;
                    len_prefixed(w, d)?;
                }
            }
        }
        w.write_all(&(s.index.terms.len() as u64).to_le_bytes())?;
        for t in &s.index.terms {
            w.write_all(&t.to_le_bytes())?;
        }
        for t in &s.index.starts {
            w.write_all(&t.to_le_bytes())?;
        }
        for p in &s.index.postings {
            w.write_all(&p.to_le_bytes())?;
        }
    }
    Ok(())
}

/// Writes the checkpoint of generation `generation` durably; returns its path.
pub fn write(dir: &Path, generation: u64, key_path: &str, shards: &[ShardToWrite<'_>]) -> Result<PathBuf> {
    let path = dir.join(file_name(generation));
    let tmp = dir.join(format!("{}.tmp", file_name(generation)));
    let io = |e| QueryError::session_io(&tmp, e);
    let file = File::create(&tmp).map_err(io)?;
    let mut w = CrcWriter { inner: BufWriter::with_capacity(1 << 20, file), crc: crc32fast::Hasher::new() };
    write_body(&mut w, key_path, shards).map_err(io)?;
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

/// Reads the body of a checkpoint, hashing it, and never allocating more than is left of it.
struct Body<R: Read> {
    inner: R,
    left: u64,
    crc: crc32fast::Hasher,
}

/// Why a checkpoint could not be read: the file, or a damaged body.
enum Bad {
    Io(std::io::Error),
    Corrupt(&'static str),
}

impl<R: Read> Body<R> {
    fn bytes(&mut self, n: u64, what: &'static str) -> std::result::Result<Vec<u8>, Bad> {
        if n > self.left {
            return Err(Bad::Corrupt(what));
        }
        let mut buf = vec![0; n as usize];
        self.inner.read_exact(&mut buf).map_err(Bad::Io)?;
        self.crc.update(&buf);
        self.left -= n;
        Ok(buf)
    }

    /// `N` bytes without a heap block (every slot reads several of these).
    fn fixed<const N: usize>(&mut self, what: &'static str) -> std::result::Result<[u8; N], Bad> {
        if N as u64 > self.left {
            return Err(Bad::Corrupt(what));
        }
        let mut buf = [0; N];
        self.inner.read_exact(&mut buf).map_err(Bad::Io)?;
        self.crc.update(&buf);
        self.left -= N as u64;
        Ok(buf)
    }

    fn u8(&mut self, what: &'static str) -> std::result::Result<u8, Bad> {
        Ok(self.fixed::<1>(what)?[0])
    }

    fn u32(&mut self, what: &'static str) -> std::result::Result<u32, Bad> {
        Ok(u32::from_le_bytes(self.fixed(what)?))
    }

    fn u64(&mut self, what: &'static str) -> std::result::Result<u64, Bad> {
        Ok(u64::from_le_bytes(self.fixed(what)?))
    }

    fn prefixed(&mut self, what: &'static str) -> std::result::Result<Vec<u8>, Bad> {
        let n = self.u32(what)?;
        self.bytes(u64::from(n), what)
    }

    fn text(&mut self, what: &'static str) -> std::result::Result<String, Bad> {
        String::from_utf8(self.prefixed(what)?).map_err(|_| Bad::Corrupt(what))
    }

    /// `n` little-endian integers of `W` bytes, read in blocks.
    fn array<T, const W: usize>(
        &mut self,
        n: u64,
        what: &'static str,
        from: fn([u8; W]) -> T,
    ) -> std::result::Result<Vec<T>, Bad> {
        if n.checked_mul(W as u64).is_none_or(|b| b > self.left) {
            return Err(Bad::Corrupt(what));
        }
        let mut out = Vec::with_capacity(n as usize);
        let mut left = n as usize;
        while left > 0 {
            let take = left.min(1 << 16);
            let block = self.bytes((take * W) as u64, what)?;
            out.extend(block.chunks_exact(W).map(|c| from(c.try_into().expect("W bytes"))));
            left -= take;
        }
        Ok(out)
    }
}

fn read_v1<R: Read>(b: &mut Body<R>) -> std::result::Result<Content, Bad> {
    let count = b.u64("truncated header")?;
    let mut docs = Vec::with_capacity(count.min(b.left / 8) as usize);
    for _ in 0..count {
        let key = b.text("bad key")?;
        let doc = b.prefixed("truncated document")?;
        docs.push((Arc::from(key), Arc::from(doc)));
    }
    Ok(Content::Docs(docs))
}

fn read_v2<R: Read>(b: &mut Body<R>, shards: u32) -> std::result::Result<Content, Bad> {
    let mut out = Vec::new();
    for _ in 0..shards {
        let n = b.u32("truncated shard")?;
        let indexed_below = b.u32("truncated shard")?;
        let mut slots = Vec::with_capacity((n as u64).min(b.left) as usize);
        for _ in 0..n {
            slots.push(match b.u8("truncated slot")? {
                0 => None,
                tag @ (1 | 2) => {
                    let key = b.text("bad key")?;
                    let doc = b.prefixed("truncated document")?;
                    Some((Arc::from(key), Arc::from(doc), tag == 2))
                }
                _ => return Err(Bad::Corrupt("bad slot tag")),
            });
        }
        let terms = b.u64("truncated index")?;
        let terms_v = b.array(terms, "truncated index", u64::from_le_bytes)?;
        let starts = b.array(terms.saturating_add(1), "truncated index", u64::from_le_bytes)?;
        let postings = b.array(*starts.last().expect("terms + 1 starts"), "truncated index", u32::from_le_bytes)?;
        out.push(SavedShard { slots, indexed_below, index: Frozen { terms: terms_v, starts, postings } });
    }
    Ok(Content::Shards(out))
}

/// Reads and checks a checkpoint (either version).
pub fn read(path: &Path) -> Result<Snapshot> {
    let corrupt = |m: &str| QueryError::SessionCorrupt { path: path.to_path_buf(), message: m.to_string() };
    let io = |e| QueryError::session_io(path, e);
    let file = File::open(path).map_err(io)?;
    let len = file.metadata().map_err(io)?.len();
    if len < 12 {
        return Err(corrupt("not a session checkpoint"));
    }
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut b = Body { inner: (&mut reader).take(len - 4), left: len - 4, crc: crc32fast::Hasher::new() };
    let parsed = (|| {
        let magic = b.bytes(8, "not a session checkpoint")?;
        let v2 = match &magic[..] {
            m if m == MAGIC => true,
            m if m == MAGIC_V1 => false,
            _ => return Err(Bad::Corrupt("not a session checkpoint")),
        };
        let key_path = b.text("bad key property")?;
        let shards = b.u32("truncated header")?;
        let content = if v2 { read_v2(&mut b, shards)? } else { read_v1(&mut b)? };
        if b.left != 0 {
            return Err(Bad::Corrupt("trailing bytes"));
        }
        Ok(Snapshot { key_path, shards, content })
    })();
    let crc = b.crc.clone().finalize();
    let mut tail = [0; 4];
    let read_tail = reader.read_exact(&mut tail);
    match parsed {
        Err(Bad::Io(e)) if e.kind() != std::io::ErrorKind::UnexpectedEof => Err(io(e)),
        // A damaged length runs into the end: the checksum says what happened.
        Err(Bad::Io(_)) => Err(corrupt("truncated")),
        Err(Bad::Corrupt(m)) => Err(corrupt(m)),
        Ok(snap) => {
            read_tail.map_err(io)?;
            if u32::from_le_bytes(tail) != crc {
                return Err(corrupt("checksum mismatch"));
            }
            Ok(snap)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn saved(k: &str, d: &[u8], plain: bool) -> SavedSlot {
        Some((Arc::from(k), Arc::from(d), plain))
    }

    #[test]
    fn checkpoints_round_trip_and_damage_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let slots = vec![saved("a", b"{}", true), None, saved("b", b"[1]", false)];
        let index = Frozen { terms: vec![3, 9], starts: vec![0, 1, 2], postings: vec![0, 0] };
        let empty = Frozen { starts: vec![0], ..Frozen::default() };
        let shards = [
            ShardToWrite { slots: &slots, indexed_below: 2, index: &index },
            ShardToWrite { slots: &[], indexed_below: 0, index: &empty },
        ];
        let path = write(dir.path(), 3, "session.id", &shards).unwrap();
        let s = read(&path).unwrap();
        assert_eq!((s.key_path.as_str(), s.shards), ("session.id", 2));
        let Content::Shards(got) = s.content else { panic!("a version-2 checkpoint") };
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].slots, slots);
        assert_eq!((got[0].indexed_below, &got[0].index), (2, &index));
        assert_eq!((got[1].slots.len(), &got[1].index), (0, &empty));
        let bytes = std::fs::read(&path).unwrap();
        for at in [12, bytes.len() / 2, bytes.len() - 1] {
            let mut damaged = bytes.clone();
            damaged[at] ^= 0xff;
            std::fs::write(&path, &damaged).unwrap();
            assert!(matches!(read(&path), Err(QueryError::SessionCorrupt { .. })), "byte {at}");
        }
        std::fs::write(&path, &bytes[..bytes.len() - 9]).unwrap();
        assert!(matches!(read(&path), Err(QueryError::SessionCorrupt { .. })), "truncated");
    }

    /// A version-1 checkpoint (written by m1 before the index was saved), byte for byte as
    /// the module docs describe it: still read, as documents without an index.
    #[test]
    fn version_1_checkpoints_still_load() {
        let dir = tempfile::tempdir().unwrap();
        let mut body = b"M1SESS01".to_vec();
        let lp = |b: &mut Vec<u8>, x: &[u8]| {
            b.extend((x.len() as u32).to_le_bytes());
            b.extend(x);
        };
        lp(&mut body, b"session.id");
        body.extend(2u32.to_le_bytes());
        body.extend(2u64.to_le_bytes());
        for (k, d) in [("a", &b"{}"[..]), ("b", b"[1]")] {
            lp(&mut body, k.as_bytes());
            lp(&mut body, d);
        }
        body.extend(crc32fast::hash(&body).to_le_bytes());
        let path = dir.path().join(file_name(1));
        std::fs::write(&path, &body).unwrap();
        let s = read(&path).unwrap();
        assert_eq!((s.key_path.as_str(), s.shards), ("session.id", 2));
        let Content::Docs(docs) = s.content else { panic!("a version-1 checkpoint") };
        assert_eq!(docs, vec![(Arc::from("a"), Arc::from(&b"{}"[..])), (Arc::from("b"), Arc::from(&b"[1]"[..]))]);
        let last = body.len() - 1;
        body[last] ^= 1;
        std::fs::write(&path, &body).unwrap();
        assert!(matches!(read(&path), Err(QueryError::SessionCorrupt { .. })));
    }
}
