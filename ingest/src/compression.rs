//! Decompression of published files: gzip, zip and zstd, all streaming (no `Seek`).
//!
//! - `gz`: every member of a multi-member file is read (`cat a.gz b.gz > c.gz` works).
//! - `zst`: every frame of a multi-frame file is read.
//! - `zip`: entries are read in archive order straight from the stream, from their local headers;
//!   the central directory at the end is not consulted. Directories and macOS `__MACOSX/`
//!   resource entries are skipped. Entries may be `stored`, `deflate` or `zstd`. An entry whose
//!   sizes follow its data (a "data descriptor", as Java's `ZipOutputStream` writes) is read when
//!   it is `deflate` or `zstd` (their streams mark their own end); a `stored` entry with a data
//!   descriptor cannot be delimited in a stream and is an error, as are encrypted entries.
//!   Unzipping runs on a helper thread that hands 64 KiB chunks to the reader.
//!
//! A corrupt or truncated stream gives an I/O error whose message starts with the compression
//! (`gz: truncated stream: ...`, `zip: corrupt archive: ...`).

use std::io::{self, BufRead, BufReader, Cursor, Read};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};

use crate::error::{IngestError, Result};

/// Buffer size of the readers under the decompressors.
const BUF_SIZE: usize = 256 * 1024;
/// Size of the chunks the unzip thread hands over.
const CHUNK: usize = 64 * 1024;

/// How a file is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    /// Not compressed.
    #[default]
    None,
    /// gzip (`.gz`), one or more members.
    Gz,
    /// A zip archive (`.zip`): the records of its entries, in archive order.
    Zip,
    /// Zstandard (`.zst`), one or more frames.
    Zst,
}

impl Compression {
    /// Parses the `compression` parameter: `gz`/`gzip`, `zip`, `zst`/`zstd`, `none` (any case).
    pub fn parse(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "gz" | "gzip" => Ok(Self::Gz),
            "zip" => Ok(Self::Zip),
            "zst" | "zstd" => Ok(Self::Zst),
            "none" | "" => Ok(Self::None),
            _ => Err(IngestError::InvalidOption(format!(
                "unknown compression {s:?}: expected one of gz, zip, zst, none"
            ))),
        }
    }

    /// The compression a file name implies by its suffix (`.gz`, `.gzip`, `.zip`, `.zst`,
    /// `.zstd`, any case); [`Compression::None`] otherwise.
    pub fn from_name(name: &str) -> Self {
        Self::split_name(name).1
    }

    /// Splits a file name into the name without its compression suffix and the compression:
    /// `x.csv.gz` gives (`x.csv`, `Gz`).
    pub fn split_name(name: &str) -> (&str, Self) {
        if let Some(dot) = name.rfind('.') {
            let c = match name[dot + 1..].to_ascii_lowercase().as_str() {
                "gz" | "gzip" => Self::Gz,
                "zip" => Self::Zip,
                "zst" | "zstd" => Self::Zst,
                _ => Self::None,
            };
            if c != Self::None {
                return (&name[..dot], c);
            }
        }
        (name, Self::None)
    }

    /// The short name used in messages: `none`, `gz`, `zip`, `zst`.
    pub fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Gz => "gz",
            Self::Zip => "zip",
            Self::Zst => "zst",
        }
    }
}

/// Decompresses a stream. For [`Compression::Zip`] the result is the concatenation of every
/// entry in archive order, or of only the entries named in `zip_entries` (still in archive order;
/// a name not in the archive is an error at the end of the stream); a newline is inserted between
/// entries when one does not end with a newline. Use [`zip_entries`] to read entries one by one
/// (as [`crate::format::read_source`] does, so each CSV entry keeps its own header row).
/// `zip_entries` is ignored for other compressions.
pub fn decompress(
    reader: Box<dyn Read + Send>,
    compression: Compression,
    zip_entries: Option<&[String]>,
) -> Result<Box<dyn Read + Send>> {
    Ok(match compression {
        Compression::None => reader,
        Compression::Gz => {
            let gz = flate2::bufread::MultiGzDecoder::new(BufReader::with_capacity(BUF_SIZE, reader));
            Box::new(Labeled { inner: gz, label: "gz" })
        }
        Compression::Zst => {
            let zst = zstd::stream::read::Decoder::with_buffer(BufReader::with_capacity(BUF_SIZE, reader))
                .map_err(|e| IngestError::Source(format!("zst: cannot start the decoder: {e}")))?;
            Box::new(Labeled { inner: zst, label: "zst" })
        }
        Compression::Zip => Box::new(ZipConcat { entries: zip_entries_impl(reader, zip_entries)?, last: None }),
    })
}

/// Gives a message that names the compression and says what kind of failure it is.
fn labeled(label: &str, e: io::Error) -> io::Error {
    let what = match e.kind() {
        io::ErrorKind::UnexpectedEof => "truncated stream",
        io::ErrorKind::InvalidData | io::ErrorKind::InvalidInput | io::ErrorKind::Other => "corrupt stream",
        _ => "read failed",
    };
    io::Error::new(e.kind(), format!("{label}: {what}: {e}"))
}

/// A decompressor whose errors name the compression.
struct Labeled<R> {
    inner: R,
    label: &'static str,
}

impl<R: Read> Read for Labeled<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf).map_err(|e| labeled(self.label, e))
    }
}

/// The entries of a zip archive read from a stream, one at a time.
///
/// Each entry's reader reads until the entry ends; asking for the next entry skips whatever is
/// left of the current one, and the previous entry's reader then reads nothing more.
pub struct ZipEntries {
    shared: Arc<Mutex<ZipShared>>,
}

impl std::fmt::Debug for ZipEntries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZipEntries").finish_non_exhaustive()
    }
}

/// Reads a zip archive from a stream, entry by entry (see the module documentation for what
/// can be read). With `names`, only those entries are returned; a name not in the archive is an
/// error once the archive has been read.
pub fn zip_entries(reader: Box<dyn Read + Send>, names: Option<&[String]>) -> Result<ZipEntries> {
    zip_entries_impl(reader, names)
}

fn zip_entries_impl(reader: Box<dyn Read + Send>, names: Option<&[String]>) -> Result<ZipEntries> {
    let (tx, rx) = sync_channel(4);
    let names = names.map(<[String]>::to_vec);
    std::thread::Builder::new()
        .name("m1-unzip".into())
        .spawn(move || unzip(reader, names, tx))
        .map_err(|e| IngestError::Source(format!("zip: cannot start the unzip thread: {e}")))?;
    let shared =
        ZipShared { rx, buf: Vec::new(), pos: 0, pending: None, pending_error: None, done: false, generation: 0 };
    Ok(ZipEntries { shared: Arc::new(Mutex::new(shared)) })
}

impl ZipEntries {
    /// The next entry: its name and a reader of its (decompressed) bytes; `None` after the last.
    /// A corrupt archive gives an error, after which there are no more entries.
    pub fn next_entry(&mut self) -> Option<io::Result<(String, Box<dyn Read + Send>)>> {
        let mut shared = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        match shared.next_entry() {
            Ok(Some(name)) => {
                let generation = shared.generation;
                drop(shared);
                let reader = ZipEntryReader { shared: Arc::clone(&self.shared), generation };
                Some(Ok((name, Box::new(reader))))
            }
            Ok(None) => None,
            Err(e) => Some(Err(e)),
        }
    }
}

impl Iterator for ZipEntries {
    type Item = io::Result<(String, Box<dyn Read + Send>)>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_entry()
    }
}

/// What the unzip thread sends.
enum Msg {
    /// A new entry starts.
    Entry(String),
    /// Bytes of the current entry.
    Data(Vec<u8>),
    /// The archive cannot be read further: inside an entry's data (`true`), or between entries
    /// (`false`, then the entry read so far is complete and the error comes with the next one).
    Error(io::Error, bool),
}

/// The receiving side, shared by [`ZipEntries`] and the entry readers.
struct ZipShared {
    rx: Receiver<Msg>,
    buf: Vec<u8>,
    pos: usize,
    /// An entry start received while reading the previous entry.
    pending: Option<String>,
    /// An archive error received at the end of an entry, for the next `next_entry`.
    pending_error: Option<io::Error>,
    done: bool,
    /// Counts entries handed out, so a stale entry reader reads nothing.
    generation: u64,
}

impl ZipShared {
    /// Reads bytes of the current entry; `Ok(0)` at its end.
    fn read_data(&mut self, out: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.pos < self.buf.len() {
                let n = out.len().min(self.buf.len() - self.pos);
                out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
                self.pos += n;
                return Ok(n);
            }
            if self.done || self.pending.is_some() || self.pending_error.is_some() || out.is_empty() {
                return Ok(0);
            }
            match self.rx.recv() {
                Ok(Msg::Data(v)) => {
                    self.buf = v;
                    self.pos = 0;
                }
                Ok(Msg::Entry(name)) => self.pending = Some(name),
                Ok(Msg::Error(e, false)) => self.pending_error = Some(e),
                Ok(Msg::Error(e, true)) => {
                    self.done = true;
                    return Err(e);
                }
                Err(_) => self.done = true,
            }
        }
    }

    /// Skips the rest of the current entry and returns the next entry's name.
    fn next_entry(&mut self) -> io::Result<Option<String>> {
        self.buf.clear();
        self.pos = 0;
        self.generation += 1;
        if let Some(name) = self.pending.take() {
            return Ok(Some(name));
        }
        if let Some(e) = self.pending_error.take() {
            self.done = true;
            return Err(e);
        }
        while !self.done {
            match self.rx.recv() {
                Ok(Msg::Data(_)) => {}
                Ok(Msg::Entry(name)) => return Ok(Some(name)),
                Ok(Msg::Error(e, _)) => {
                    self.done = true;
                    return Err(e);
                }
                Err(_) => self.done = true,
            }
        }
        Ok(None)
    }
}

/// Reads one entry of a [`ZipEntries`].
struct ZipEntryReader {
    shared: Arc<Mutex<ZipShared>>,
    generation: u64,
}

impl Read for ZipEntryReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let mut shared = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        if shared.generation != self.generation {
            return Ok(0);
        }
        shared.read_data(out)
    }
}

/// All entries of a zip archive as one stream, with a newline between entries when needed.
struct ZipConcat {
    entries: ZipEntries,
    /// Last byte of the current entry; `None` before any entry or right after one started.
    last: Option<u8>,
}

impl Read for ZipConcat {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        let mut shared = self.entries.shared.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            let n = shared.read_data(out)?;
            if n > 0 {
                self.last = Some(out[n - 1]);
                return Ok(n);
            }
            match shared.next_entry()? {
                Some(_) => {
                    if self.last.take().is_some_and(|b| b != b'\n') {
                        out[0] = b'\n';
                        return Ok(1);
                    }
                }
                None => return Ok(0),
            }
        }
    }
}

/// A buffered reader that counts the bytes consumed, for error offsets.
struct Counted<R> {
    inner: BufReader<R>,
    offset: u64,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.offset += n as u64;
        Ok(n)
    }
}

impl<R: Read> BufRead for Counted<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.inner.fill_buf()
    }

    fn consume(&mut self, amt: usize) {
        self.offset += amt as u64;
        self.inner.consume(amt);
    }
}

const LOCAL_HEADER: u32 = 0x0403_4b50;
const CENTRAL_HEADER: u32 = 0x0201_4b50;
const END_OF_CENTRAL: u32 = 0x0605_4b50;
const ZIP64_END_OF_CENTRAL: u32 = 0x0606_4b50;
const DATA_DESCRIPTOR: u32 = 0x0807_4b50;

fn corrupt(msg: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("zip: corrupt archive: {msg}"))
}

fn truncated(offset: u64) -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, format!("zip: truncated archive: the stream ends at byte {offset}"))
}

/// The unzip thread: sends entries and their bytes until the central directory, an error, or
/// the receiver going away.
fn unzip(reader: Box<dyn Read + Send>, names: Option<Vec<String>>, tx: SyncSender<Msg>) {
    let mut found = vec![false; names.as_ref().map_or(0, Vec::len)];
    let mut r = Counted { inner: BufReader::with_capacity(BUF_SIZE, reader), offset: 0 };
    let mut in_entry = false;
    let result = (|| -> io::Result<bool> {
        let mut entries = 0u64;
        loop {
            let start = r.offset;
            let mut magic = [0u8; 4];
            match read_full(&mut r, &mut magic)? {
                0 if entries == 0 && start == 0 => return Err(corrupt("the stream is empty")),
                4 => {}
                _ => return Err(truncated(r.offset)),
            }
            match u32::from_le_bytes(magic) {
                LOCAL_HEADER => {}
                CENTRAL_HEADER | END_OF_CENTRAL | ZIP64_END_OF_CENTRAL => {
                    check_central_directory(&mut r, magic)?;
                    return Ok(true);
                }
                DATA_DESCRIPTOR if start == 0 => continue, // a split-archive marker
                m => return Err(corrupt(format_args!("bad signature {m:#010x} at byte {start}"))),
            }
            entries += 1;
            let mut block = [0u8; 26];
            if read_full(&mut r, &mut block)? < block.len() {
                return Err(truncated(r.offset));
            }
            let u16_at = |i: usize| u16::from_le_bytes([block[i], block[i + 1]]);
            let flags = u16_at(2);
            let method = u16_at(4);
            let mut name_raw = vec![0u8; u16_at(22) as usize];
            let mut extra = vec![0u8; u16_at(24) as usize];
            if read_full(&mut r, &mut name_raw)? < name_raw.len() || read_full(&mut r, &mut extra)? < extra.len() {
                return Err(truncated(r.offset));
            }
            let name = String::from_utf8_lossy(&name_raw).into_owned();
            let wanted = match &names {
                Some(names) => match names.iter().position(|n| *n == name) {
                    Some(i) => {
                        found[i] = true;
                        true
                    }
                    None => false,
                },
                None => !name.ends_with('/') && !name.starts_with("__MACOSX/"),
            };
            let ctx = |e: io::Error| {
                if e.to_string().starts_with("zip: ") {
                    e
                } else {
                    io::Error::new(e.kind(), format!("zip: entry {name:?}: {e}"))
                }
            };
            if wanted && tx.send(Msg::Entry(name.clone())).is_err() {
                return Ok(false);
            }
            in_entry = wanted;
            if flags & 0x0008 == 0 {
                // Sizes are in the local header: the zip crate reads the entry.
                let mut header = Vec::with_capacity(30 + name_raw.len() + extra.len());
                header.extend_from_slice(&magic);
                header.extend_from_slice(&block);
                header.extend_from_slice(&name_raw);
                header.extend_from_slice(&extra);
                let mut chained = Cursor::new(header).chain(&mut r);
                let file = zip::read::read_zipfile_from_stream(&mut chained)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("zip: entry {name:?}: {e}")))?
                    .ok_or_else(|| corrupt(format_args!("entry {name:?}: no local header")))?;
                if wanted && !pump(file, &tx).map_err(ctx)? {
                    return Ok(false);
                }
            } else {
                // Sizes follow the data: only self-delimiting streams can be read.
                let zip64 = has_zip64_extra(&extra);
                let mut crc = flate2::Crc::new();
                let sink = |chunk: &[u8], crc: &mut flate2::Crc| crc.update(chunk);
                let ok = match method {
                    8 => {
                        let d = flate2::bufread::DeflateDecoder::new(&mut r);
                        pump_with(d, &tx, wanted, &mut crc, sink).map_err(ctx)?
                    }
                    93 => {
                        let d = zstd::stream::read::Decoder::with_buffer(&mut r).map_err(ctx)?.single_frame();
                        pump_with(d, &tx, wanted, &mut crc, sink).map_err(ctx)?
                    }
                    0 => {
                        return Err(corrupt(format_args!(
                            "entry {name:?} is stored with its size after the data, which cannot be read \
                             from a stream; recompress the archive"
                        )));
                    }
                    m => return Err(corrupt(format_args!("entry {name:?}: unsupported compression method {m}"))),
                };
                if !ok {
                    return Ok(false);
                }
                read_descriptor(&mut r, zip64, &crc).map_err(ctx)?;
            }
            in_entry = false;
        }
    })();
    let message = match result {
        Ok(false) => return,
        Ok(true) => {
            let missing: Vec<&String> =
                names.iter().flatten().zip(&found).filter(|(_, f)| !**f).map(|(n, _)| n).collect();
            if missing.is_empty() {
                return;
            }
            let msg = format!("zip: no entry named {missing:?} in the archive");
            Msg::Error(io::Error::new(io::ErrorKind::NotFound, msg), false)
        }
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof && !e.to_string().starts_with("zip: ") => {
            Msg::Error(truncated(r.offset), in_entry)
        }
        Err(e) => Msg::Error(e, in_entry),
    };
    let _ = tx.send(message);
}

/// Reads the central directory (after its first signature, `magic`) to the end of the stream
/// and checks that it ends with a complete end-of-central-directory record: otherwise the
/// archive is truncated.
fn check_central_directory(r: &mut Counted<impl Read>, magic: [u8; 4]) -> io::Result<()> {
    let mut rest = magic.to_vec();
    r.read_to_end(&mut rest)?;
    let complete = memchr::memmem::rfind_iter(&rest, &END_OF_CENTRAL.to_le_bytes()).any(|pos| {
        rest.len() >= pos + 22
            && usize::from(u16::from_le_bytes([rest[pos + 20], rest[pos + 21]])) == rest.len() - pos - 22
    });
    if complete { Ok(()) } else { Err(truncated(r.offset)) }
}

/// Reads until `buf` is full or the stream ends; returns the bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Sends an entry's bytes; `Ok(false)` when the receiver is gone.
fn pump(mut entry: impl Read, tx: &SyncSender<Msg>) -> io::Result<bool> {
    loop {
        let mut chunk = vec![0u8; CHUNK];
        let n = read_full(&mut entry, &mut chunk)?;
        if n == 0 {
            return Ok(true);
        }
        chunk.truncate(n);
        if tx.send(Msg::Data(chunk)).is_err() {
            return Ok(false);
        }
    }
}

/// Like [`pump`], also feeding each chunk to `each`; sends nothing unless `send`.
fn pump_with<S>(
    mut entry: impl Read,
    tx: &SyncSender<Msg>,
    send: bool,
    state: &mut S,
    each: impl Fn(&[u8], &mut S),
) -> io::Result<bool> {
    loop {
        let mut chunk = vec![0u8; CHUNK];
        let n = read_full(&mut entry, &mut chunk)?;
        if n == 0 {
            return Ok(true);
        }
        chunk.truncate(n);
        each(&chunk, state);
        if send && tx.send(Msg::Data(chunk)).is_err() {
            return Ok(false);
        }
    }
}

/// Whether a local header's extra field has a zip64 record (then the descriptor has 8-byte sizes).
fn has_zip64_extra(extra: &[u8]) -> bool {
    let mut i = 0;
    while i + 4 <= extra.len() {
        let id = u16::from_le_bytes([extra[i], extra[i + 1]]);
        let len = u16::from_le_bytes([extra[i + 2], extra[i + 3]]) as usize;
        if id == 0x0001 {
            return true;
        }
        i += 4 + len;
    }
    false
}

/// Reads the data descriptor after an entry and checks its CRC and size.
fn read_descriptor(r: &mut impl Read, zip64: bool, crc: &flate2::Crc) -> io::Result<()> {
    let size_len = if zip64 { 8 } else { 4 };
    let mut buf = [0u8; 4 + 4 + 16];
    let want = 4 + 2 * size_len;
    if read_full(r, &mut buf[..4])? < 4 {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the data descriptor is missing"));
    }
    let (stored_crc, rest) = if u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) == DATA_DESCRIPTOR {
        if read_full(r, &mut buf[..want])? < want {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the data descriptor is truncated"));
        }
        (u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]), &buf[4..want])
    } else {
        if read_full(r, &mut buf[4..want])? < want - 4 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the data descriptor is truncated"));
        }
        (u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]), &buf[4..want])
    };
    if stored_crc != crc.sum() {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "CRC-32 mismatch: the entry is corrupt"));
    }
    // Crc::amount counts modulo 2^32, so compare the low 32 bits.
    let size = u64::from_le_bytes({
        let mut b = [0u8; 8];
        b[..size_len].copy_from_slice(&rest[size_len..2 * size_len]);
        b
    });
    if size & 0xffff_ffff != u64::from(crc.amount()) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "the uncompressed size does not match the data descriptor",
        ));
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use std::io::Write;

    use zip::CompressionMethod;
    use zip::write::SimpleFileOptions;

    use super::*;

    pub(crate) fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    pub(crate) fn zst(data: &[u8]) -> Vec<u8> {
        zstd::encode_all(data, 3).unwrap()
    }

    /// A zip archive written with a seekable writer (sizes in the local headers).
    pub(crate) fn zip_archive(entries: &[(&str, &[u8])], method: CompressionMethod) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        for (name, data) in entries {
            if name.ends_with('/') {
                w.add_directory(*name, SimpleFileOptions::default()).unwrap();
                continue;
            }
            w.start_file(*name, SimpleFileOptions::default().compression_method(method)).unwrap();
            w.write_all(data).unwrap();
        }
        w.finish().unwrap().into_inner()
    }

    /// A zip archive written to a stream (sizes in data descriptors after each entry).
    fn zip_streamed(entries: &[(&str, &[u8])], method: CompressionMethod) -> Vec<u8> {
        let mut out = Vec::new();
        let mut w = zip::ZipWriter::new_stream(&mut out);
        for (name, data) in entries {
            w.start_file(*name, SimpleFileOptions::default().compression_method(method)).unwrap();
            w.write_all(data).unwrap();
        }
        w.finish().unwrap();
        out
    }

    fn read_all(data: Vec<u8>, c: Compression, entries: Option<&[String]>) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        decompress(Box::new(Cursor::new(data)), c, entries).unwrap().read_to_end(&mut out)?;
        Ok(out)
    }

    /// The error of reading `data`, or a panic naming how many bytes were read instead.
    fn read_err(data: Vec<u8>, c: Compression, entries: Option<&[String]>) -> String {
        match read_all(data, c, entries) {
            Ok(v) => panic!("expected an error, read {} bytes", v.len()),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn names_and_parameters() {
        assert_eq!(Compression::from_name("x.csv.gz"), Compression::Gz);
        assert_eq!(Compression::from_name("s3://b/x.JSONL.ZST"), Compression::Zst);
        assert_eq!(Compression::from_name("x.zip"), Compression::Zip);
        assert_eq!(Compression::from_name("x.csv"), Compression::None);
        assert_eq!(Compression::split_name("a/b.tsv.gzip"), ("a/b.tsv", Compression::Gz));
        assert_eq!(Compression::parse("GZIP").unwrap(), Compression::Gz);
        assert_eq!(Compression::parse("zstd").unwrap(), Compression::Zst);
        let e = Compression::parse("bz2").unwrap_err().to_string();
        assert!(e.contains("\"bz2\""), "{e}");
    }

    #[test]
    fn gz_reads_every_member() {
        let mut data = gz(b"a\nb\n");
        data.extend(gz(b"c\n"));
        data.extend(gz(b""));
        data.extend(gz(b"d"));
        assert_eq!(read_all(data, Compression::Gz, None).unwrap(), b"a\nb\nc\nd");
    }

    #[test]
    fn gz_truncated_or_corrupt_is_an_error_naming_gz() {
        let data = gz(&b"line of text\n".repeat(1000));
        for cut in [data.len() - 4, data.len() / 2, 12] {
            let e = read_err(data[..cut].to_vec(), Compression::Gz, None);
            assert!(e.to_string().starts_with("gz: truncated stream"), "{cut}: {e}");
        }
        let mut bad = data.clone();
        bad[20] ^= 0xff;
        bad[21] ^= 0xff;
        let e = read_err(bad, Compression::Gz, None);
        assert!(e.to_string().starts_with("gz: "), "{e}");
        let e = read_err(b"plain text, not gzip".to_vec(), Compression::Gz, None);
        assert!(e.to_string().starts_with("gz: corrupt stream"), "{e}");
    }

    #[test]
    fn zst_reads_every_frame_and_reports_truncation() {
        let mut data = zst(b"one\n");
        data.extend(zst(b"two\n"));
        assert_eq!(read_all(data.clone(), Compression::Zst, None).unwrap(), b"one\ntwo\n");
        let e = read_err(data[..data.len() - 3].to_vec(), Compression::Zst, None);
        assert!(e.to_string().starts_with("zst: truncated stream"), "{e}");
        let e = read_err(b"not zstd at all".to_vec(), Compression::Zst, None);
        assert!(e.to_string().starts_with("zst: "), "{e}");
    }

    #[test]
    fn zip_concatenates_entries_in_order() {
        for method in [CompressionMethod::Deflated, CompressionMethod::Stored, CompressionMethod::Zstd] {
            let data = zip_archive(
                &[
                    ("a.jsonl", b"{\"a\":1}\n"),
                    ("dir/", b""),
                    ("dir/b.jsonl", b"{\"b\":2}"),
                    ("c.jsonl", b"{\"c\":3}\n"),
                ],
                method,
            );
            let out = read_all(data, Compression::Zip, None).unwrap();
            assert_eq!(String::from_utf8(out).unwrap(), "{\"a\":1}\n{\"b\":2}\n{\"c\":3}\n", "{method:?}");
        }
    }

    #[test]
    fn zip_named_entries_only() {
        let data = zip_archive(&[("a.txt", b"A\n"), ("b.txt", b"B\n"), ("c.txt", b"C\n")], CompressionMethod::Deflated);
        let names = ["c.txt".to_string(), "a.txt".to_string()];
        assert_eq!(read_all(data.clone(), Compression::Zip, Some(&names)).unwrap(), b"A\nC\n");
        let names = ["b.txt".to_string(), "missing.txt".to_string()];
        let e = read_err(data, Compression::Zip, Some(&names));
        assert!(e.to_string().contains("no entry named [\"missing.txt\"]"), "{e}");
    }

    #[test]
    fn zip_with_data_descriptors() {
        let big: Vec<u8> = (0..200_000u32).flat_map(|i| format!("{i}\n").into_bytes()).collect();
        for method in [CompressionMethod::Deflated, CompressionMethod::Zstd] {
            let data = zip_streamed(&[("a.txt", b"first\n"), ("big.txt", &big), ("c.txt", b"last\n")], method);
            assert_ne!(u16::from_le_bytes([data[6], data[7]]) & 8, 0, "the writer used a data descriptor");
            let out = read_all(data.clone(), Compression::Zip, None).unwrap();
            let mut want = b"first\n".to_vec();
            want.extend(&big);
            want.extend(b"last\n");
            assert!(out == want, "{method:?}");
            let names = ["c.txt".to_string()];
            assert_eq!(read_all(data, Compression::Zip, Some(&names)).unwrap(), b"last\n");
        }
        let data = zip_streamed(&[("a.txt", b"stored\n")], CompressionMethod::Stored);
        assert_ne!(u16::from_le_bytes([data[6], data[7]]) & 8, 0);
        let e = read_err(data, Compression::Zip, None);
        assert!(e.contains("cannot be read from a stream"), "{e}");
    }

    #[test]
    fn zip_corrupt_or_truncated_is_an_error_naming_zip() {
        let text = b"some text that compresses\n".repeat(2000);
        let data = zip_archive(&[("a.txt", &text), ("b.txt", b"B\n")], CompressionMethod::Deflated);
        for cut in [10, 40, data.len() / 2, data.len() - 30] {
            let e = read_err(data[..cut].to_vec(), Compression::Zip, None);
            assert!(e.to_string().starts_with("zip: "), "{cut}: {e}");
        }
        let mut bad = data.clone();
        for b in &mut bad[200..260] {
            *b ^= 0x5a;
        }
        let e = read_err(bad, Compression::Zip, None);
        assert!(e.to_string().starts_with("zip: "), "{e}");
        let e = read_err(b"PK not really".to_vec(), Compression::Zip, None);
        assert!(e.to_string().starts_with("zip: corrupt archive: bad signature"), "{e}");
        let e = read_err(Vec::new(), Compression::Zip, None);
        assert!(e.to_string().contains("empty"), "{e}");
        // An archive without entries is fine.
        assert_eq!(read_all(zip_archive(&[], CompressionMethod::Deflated), Compression::Zip, None).unwrap(), b"");
    }

    #[test]
    fn zip_entries_one_by_one() {
        let data = zip_archive(&[("a.csv", b"x\n1\n"), ("b.csv", b"x\n2\n")], CompressionMethod::Deflated);
        let mut entries = zip_entries(Box::new(Cursor::new(data)), None).unwrap();
        let (name, mut first) = entries.next_entry().unwrap().unwrap();
        assert_eq!(name, "a.csv");
        let mut one = [0u8; 2];
        first.read_exact(&mut one).unwrap();
        assert_eq!(&one, b"x\n");
        // Skipping the rest of an entry; its reader then reads nothing.
        let (name, mut second) = entries.next_entry().unwrap().unwrap();
        assert_eq!(name, "b.csv");
        let mut rest = Vec::new();
        first.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty());
        second.read_to_end(&mut rest).unwrap();
        assert_eq!(rest, b"x\n2\n");
        assert!(entries.next_entry().is_none());
    }
}
