//! The write-ahead log of a session store: one record per `session/update` call, fsynced with
//! group commit before the call returns.
//!
//! Files are `wal-<gen>.log` (16 decimal digits). A record is
//! `len: u32 LE | crc32(payload): u32 LE | payload`, the payload a run of entries
//! `tag: u8 | key_len: u32 | key | (doc_len: u32 | doc)` (tag 1 put, 2 delete, 3 set-key, whose
//! "key" is the new key property). Entries are physical (whole documents after merging and
//! stamping), so replay needs no clock and no merge logic.
//!
//! Invariants:
//! - A call is one record, so a crash leaves all of it or none: a torn or checksum-failing tail
//!   of the newest file is an unacknowledged call and is cut off when reopening.
//! - A call is acknowledged only after `sync` saw `fdatasync` cover its record; concurrent callers
//!   share one `fdatasync` (group commit).
//! - After a failed `fdatasync` the log refuses every later call (the page cache state is unknown).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::{Condvar, Mutex};

use crate::error::{QueryError, Result};

const PUT: u8 = 1;
const DELETE: u8 = 2;
const SET_KEY: u8 = 3;

/// One change as logged.
#[derive(Debug, Clone)]
pub enum Entry {
    /// The whole document (JSON bytes) under `key`.
    Put { key: Arc<str>, doc: Arc<[u8]> },
    /// `key` is gone.
    Delete { key: Arc<str> },
    /// Documents are keyed by property `path` from here on.
    SetKey { path: String },
}

/// Encodes one call's entries as a record.
pub fn encode(entries: &[Entry]) -> Vec<u8> {
    let size: usize = entries
        .iter()
        .map(|e| match e {
            Entry::Put { key, doc } => 9 + key.len() + doc.len(),
            Entry::Delete { key } => 5 + key.len(),
            Entry::SetKey { path } => 5 + path.len(),
        })
        .sum();
    let mut out = Vec::with_capacity(8 + size);
    out.extend_from_slice(&[0; 8]);
    for e in entries {
        let (tag, key, doc): (u8, &[u8], Option<&[u8]>) = match e {
            Entry::Put { key, doc } => (PUT, key.as_bytes(), Some(doc)),
            Entry::Delete { key } => (DELETE, key.as_bytes(), None),
            Entry::SetKey { path } => (SET_KEY, path.as_bytes(), None),
        };
        out.push(tag);
        put_bytes(&mut out, key);
        if let Some(doc) = doc {
            put_bytes(&mut out, doc);
        }
    }
    let len = (out.len() - 8) as u32;
    let crc = crc32fast::hash(&out[8..]);
    out[..4].copy_from_slice(&len.to_le_bytes());
    out[4..8].copy_from_slice(&crc.to_le_bytes());
    out
}

/// Appends a length-prefixed byte string.
pub fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

/// Reads a length-prefixed byte string at `*pos`.
pub fn get_bytes<'a>(buf: &'a [u8], pos: &mut usize) -> Option<&'a [u8]> {
    let len = u32::from_le_bytes(buf.get(*pos..*pos + 4)?.try_into().ok()?) as usize;
    let b = buf.get(*pos + 4..*pos + 4 + len)?;
    *pos += 4 + len;
    Some(b)
}

fn utf8(b: &[u8]) -> Option<Arc<str>> {
    std::str::from_utf8(b).ok().map(Arc::from)
}

/// Decodes the records of a log file: every complete, intact record, and the length of the
/// intact prefix (anything after it is a torn tail).
pub fn decode(buf: &[u8]) -> (Vec<Vec<Entry>>, usize) {
    let mut records = Vec::new();
    let mut pos = 0;
    while let Some(head) = buf.get(pos..pos + 8) {
        let len = u32::from_le_bytes(head[..4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(head[4..].try_into().expect("4 bytes"));
        let Some(payload) = buf.get(pos + 8..pos + 8 + len) else { break };
        if crc32fast::hash(payload) != crc {
            break;
        }
        let Some(entries) = decode_payload(payload) else { break };
        records.push(entries);
        pos += 8 + len;
    }
    (records, pos)
}

fn decode_payload(p: &[u8]) -> Option<Vec<Entry>> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < p.len() {
        let tag = p[pos];
        pos += 1;
        let key = get_bytes(p, &mut pos)?;
        out.push(match tag {
            PUT => Entry::Put { key: utf8(key)?, doc: Arc::from(get_bytes(p, &mut pos)?) },
            DELETE => Entry::Delete { key: utf8(key)? },
            SET_KEY => Entry::SetKey { path: String::from_utf8(key.to_vec()).ok()? },
            _ => return None,
        });
    }
    Some(out)
}

/// The file name of generation `gen`.
pub fn file_name(generation: u64) -> String {
    format!("wal-{generation:016}.log")
}

/// Generations of the log files in `dir`, ascending.
pub fn generations(dir: &Path, prefix: &str, suffix: &str) -> Result<Vec<u64>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).map_err(|e| QueryError::session_io(dir, e))? {
        let e = e.map_err(|e| QueryError::session_io(dir, e))?;
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(g) = name.strip_prefix(prefix).and_then(|n| n.strip_suffix(suffix))
            && let Ok(g) = g.parse()
        {
            out.push(g);
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// Makes a directory's entries (new, renamed or removed files) durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| QueryError::session_io(dir, e))
}

struct Active {
    file: Arc<File>,
    path: PathBuf,
    generation: u64,
    len: u64,
    /// Records appended so far (over all generations).
    seq: u64,
}

#[derive(Default)]
struct SyncState {
    synced: u64,
    syncing: bool,
    failed: Option<String>,
}

/// An open log, appending to its newest generation.
pub struct Wal {
    dir: PathBuf,
    active: Mutex<Active>,
    sync: Mutex<SyncState>,
    synced: Condvar,
}

impl std::fmt::Debug for Wal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wal").field("dir", &self.dir).finish_non_exhaustive()
    }
}

fn open_append(path: &Path) -> Result<File> {
    OpenOptions::new().create(true).append(true).open(path).map_err(|e| QueryError::session_io(path, e))
}

impl Wal {
    /// Opens generation `generation` in `dir` for appending (creating it if needed); its intact
    /// length must be `len` (the caller cut any torn tail).
    pub fn open(dir: &Path, generation: u64, len: u64) -> Result<Wal> {
        let path = dir.join(file_name(generation));
        let existed = path.exists();
        let file = open_append(&path)?;
        if !existed {
            sync_dir(dir)?;
        }
        Ok(Wal {
            dir: dir.to_path_buf(),
            active: Mutex::new(Active { file: Arc::new(file), path, generation, len, seq: 0 }),
            sync: Mutex::new(SyncState::default()),
            synced: Condvar::new(),
        })
    }

    fn check(&self) -> Result<()> {
        match &self.sync.lock().failed {
            Some(why) => Err(QueryError::SessionIo {
                path: self.dir.clone(),
                source: std::io::Error::other(format!("an earlier fsync failed ({why}); reopen the store")),
            }),
            None => Ok(()),
        }
    }

    /// Appends one record (from [`encode`]); returns its sequence number for [`Wal::sync`].
    pub fn append(&self, record: &[u8]) -> Result<u64> {
        self.check()?;
        let mut a = self.active.lock();
        let file = Arc::clone(&a.file);
        if let Err(e) = (&*file).write_all(record) {
            // A partial record would hide every later one at replay: cut it off again.
            let _ = file.set_len(a.len);
            return Err(QueryError::session_io(&a.path, e));
        }
        a.len += record.len() as u64;
        a.seq += 1;
        Ok(a.seq)
    }

    /// Returns once record `seq` is on disk. One caller runs `fdatasync` for everyone waiting.
    pub fn sync(&self, seq: u64) -> Result<()> {
        let mut st = self.sync.lock();
        loop {
            if let Some(why) = &st.failed {
                return Err(QueryError::SessionIo {
                    path: self.dir.clone(),
                    source: std::io::Error::other(why.clone()),
                });
            }
            if st.synced >= seq {
                return Ok(());
            }
            if st.syncing {
                self.synced.wait(&mut st);
                continue;
            }
            st.syncing = true;
            drop(st);
            let (file, target) = {
                let a = self.active.lock();
                (Arc::clone(&a.file), a.seq)
            };
            let started = std::time::Instant::now();
            let result = file.sync_data();
            observe_fsync(started.elapsed());
            st = self.sync.lock();
            st.syncing = false;
            match result {
                Ok(()) => st.synced = st.synced.max(target),
                Err(e) => st.failed = Some(e.to_string()),
            }
            self.synced.notify_all();
        }
    }

    /// Bytes in the current generation.
    pub fn len(&self) -> u64 {
        self.active.lock().len
    }

    /// Whether the current generation is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The current generation.
    pub fn generation(&self) -> u64 {
        self.active.lock().generation
    }

    /// Syncs the current generation and continues in a new one; returns the new generation.
    /// Callers hold the store's writer lock, so no append races with this.
    pub fn rotate(&self) -> Result<u64> {
        self.check()?;
        let mut a = self.active.lock();
        let started = std::time::Instant::now();
        a.file.sync_data().map_err(|e| QueryError::session_io(&a.path, e))?;
        observe_fsync(started.elapsed());
        {
            let mut st = self.sync.lock();
            st.synced = st.synced.max(a.seq);
        }
        let generation = a.generation + 1;
        let path = self.dir.join(file_name(generation));
        let file = open_append(&path)?;
        sync_dir(&self.dir)?;
        a.file = Arc::new(file);
        a.path = path;
        a.generation = generation;
        a.len = 0;
        Ok(generation)
    }
}

/// Where the process reports how long each WAL fsync took (`m1 serve`'s metrics); none by default.
static FSYNC_OBSERVER: std::sync::OnceLock<fn(std::time::Duration)> = std::sync::OnceLock::new();

/// Reports every WAL fsync's duration to `observer` from now on (the first caller wins).
pub fn on_fsync(observer: fn(std::time::Duration)) {
    let _ = FSYNC_OBSERVER.set(observer);
}

fn observe_fsync(took: std::time::Duration) {
    if let Some(f) = FSYNC_OBSERVER.get() {
        f(took);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_torn_tails_are_cut() {
        let a = encode(&[
            Entry::Put { key: "k".into(), doc: Arc::from(&b"{\"a\":1}"[..]) },
            Entry::Delete { key: "x".into() },
        ]);
        let b = encode(&[Entry::SetKey { path: "user.id".into() }]);
        let mut buf = [a.clone(), b.clone()].concat();
        let (recs, end) = decode(&buf);
        assert_eq!((recs.len(), end), (2, buf.len()));
        assert!(matches!(&recs[0][0], Entry::Put { key, doc } if &**key == "k" && &doc[..] == b"{\"a\":1}"));
        assert!(matches!(&recs[1][0], Entry::SetKey { path } if path == "user.id"));
        for cut in 0..b.len() {
            let (recs, end) = decode(&buf[..a.len() + cut]);
            assert_eq!((recs.len(), end), (1, a.len()), "cut at {cut}");
        }
        let last = buf.len() - 1;
        buf[last] ^= 1;
        assert_eq!(decode(&buf).1, a.len(), "a damaged record ends the log");
    }
}
