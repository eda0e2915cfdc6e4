//! Record readers: turn a UTF-8 byte stream into flattened records (SPEC §4 `format`).
//!
//! - `csv`, `txt`: RFC 4180 delimited text ([`csv`](self::csv)), comma resp. tab by default;
//!   values are JSON strings (typing happens later), empty fields stay `""`.
//! - `jsonl`: one JSON object per line ([`json`](self::json)).
//! - `json`: one array of objects, streamed element by element, or one object (several
//!   top-level objects in a row are read one after the other).
//!
//! Nested objects are flattened to dotted names ([`m1_engine::record::flatten`]); arrays stay.
//!
//! [`open_records`] reads one stream in one format; [`read_source`] does the whole pipeline of
//! a published file: decompression, charset decoding and the format, with each zip entry read as
//! a file of its own (its own header row, its own line numbers, named `archive.zip!entry`).

pub mod csv;
pub mod json;

use std::fmt;
use std::io::Read;

use m1_engine::record::Record;

use crate::charset::{Utf8Policy, decode_charset_checked, encoding_for_label};
use crate::compression::{Compression, decompress, zip_entries};
use crate::error::{IngestError, Result};

/// The layout of a file's records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputFormat {
    /// Comma-separated values with a header row (RFC 4180).
    Csv,
    /// Delimited text, tab-separated by default, otherwise as [`Format::Csv`].
    Txt,
    /// One JSON array of objects, or one object.
    Json,
    /// One JSON object per line.
    Jsonl,
}

impl InputFormat {
    /// Parses the `format` parameter: `csv`, `txt` (or `tsv`), `json`, `jsonl` (or `ndjson`),
    /// any case.
    pub fn parse(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "csv" => Ok(Self::Csv),
            "txt" | "tsv" => Ok(Self::Txt),
            "json" => Ok(Self::Json),
            "jsonl" | "ndjson" => Ok(Self::Jsonl),
            _ => {
                Err(IngestError::InvalidOption(format!("unknown format {s:?}: expected one of txt, csv, json, jsonl")))
            }
        }
    }

    /// The format a file name implies, after removing a compression suffix: `x.csv.gz` is csv,
    /// `.tsv`/`.txt`/`.tab` txt, `.json` json, `.jsonl`/`.ndjson` jsonl; `None` otherwise.
    pub fn from_name(name: &str) -> Option<Self> {
        let (name, _) = Compression::split_name(name);
        let ext = name.rsplit_once('.')?.1.to_ascii_lowercase();
        match ext.as_str() {
            "csv" => Some(Self::Csv),
            "txt" | "tsv" | "tab" => Some(Self::Txt),
            "json" => Some(Self::Json),
            "jsonl" | "ndjson" => Some(Self::Jsonl),
            _ => None,
        }
    }

    /// The parameter value naming this format.
    pub fn name(self) -> &'static str {
        match self {
            Self::Csv => "csv",
            Self::Txt => "txt",
            Self::Json => "json",
            Self::Jsonl => "jsonl",
        }
    }

    /// The delimiter of a delimited format when none is given: `,` for csv, tab for txt.
    pub fn default_delimiter(self) -> u8 {
        if self == Self::Txt { b'\t' } else { b',' }
    }
}

/// How to read records from a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormatOptions {
    /// The format; `None` means from the source name ([`Format::from_name`]).
    pub format: Option<InputFormat>,
    /// Field delimiter of csv/txt; `None` means [`Format::default_delimiter`].
    pub delimiter: Option<u8>,
    /// Whether csv/txt files start with a header row naming the columns (default true).
    pub headers: bool,
    /// Column names by position for csv/txt (the `columns` rule). Required when `headers` is
    /// false; when `headers` is true they replace the header row's names (the row is skipped).
    pub columns: Option<Vec<String>>,
    /// Stop after this many records (`None` = all). Rows that fail to parse do not count.
    pub rows: Option<u64>,
}

impl Default for FormatOptions {
    fn default() -> Self {
        Self { format: None, delimiter: None, headers: true, columns: None, rows: None }
    }
}

impl FormatOptions {
    /// Options for `format` with everything else at its default.
    pub fn new(format: InputFormat) -> Self {
        Self { format: Some(format), ..Self::default() }
    }

    fn resolve_format(&self, source_name: &str) -> Result<InputFormat> {
        self.format.or_else(|| InputFormat::from_name(source_name)).ok_or_else(|| {
            IngestError::InvalidOption(format!(
                "{source_name}: cannot tell the format from the name; pass format (txt, csv, json or jsonl)"
            ))
        })
    }
}

/// One record read from a source.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceRecord {
    /// 1-based line of the source where the record starts.
    pub line: u64,
    /// The record, flattened to dotted names.
    pub record: Record,
}

/// A record that could not be read, and where.
///
/// `line` is 1-based (0 when the error has no line, e.g. a zip archive that cannot be opened);
/// `column` is the 1-based field number for csv/txt and the 1-based byte column for json/jsonl.
/// When `fatal` is true the source cannot be read further and the iterator ends after this
/// error (I/O and decompression errors, a JSON syntax error inside an array, an unterminated
/// quoted field); otherwise only this record is lost and reading goes on with the next one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct RecordError {
    /// The source (file name, or `archive.zip!entry`).
    pub file: String,
    /// 1-based line, 0 if none.
    pub line: u64,
    /// 1-based field (csv/txt) or byte column (json), if known.
    pub column: Option<u64>,
    /// What is wrong.
    pub message: String,
    /// Whether reading stopped here.
    pub fatal: bool,
}

impl RecordError {
    pub(crate) fn new(file: &str, line: u64, column: Option<u64>, message: impl Into<String>, fatal: bool) -> Self {
        Self { file: file.to_string(), line, column, message: message.into(), fatal }
    }
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.column) {
            (0, _) => write!(f, "{}: {}", self.file, self.message),
            (line, None) => write!(f, "{}:{line}: {}", self.file, self.message),
            (line, Some(col)) => write!(f, "{}:{line}:{col}: {}", self.file, self.message),
        }
    }
}

/// The largest record m1 reads (64 MiB): a line of csv, txt or jsonl, or one value of a json
/// document. A longer one ends the source with an error naming its line, so a hostile input (an
/// endless line, a zip bomb of zeros) cannot take the memory of the process.
pub const MAX_RECORD_BYTES: usize = 64 << 20;

/// The error for a record over [`MAX_RECORD_BYTES`].
pub(crate) fn too_long() -> std::io::Error {
    std::io::Error::other(format!(
        "a record is longer than {} MiB, the most m1 reads as one record (is the format right?)",
        MAX_RECORD_BYTES >> 20
    ))
}

/// A reader that fails once a line grows past `limit` bytes (quoted csv fields with newlines
/// count per line, which is what bounds the csv reader's buffers).
struct LineBound<R> {
    inner: R,
    run: usize,
    limit: usize,
}

impl<R: Read> Read for LineBound<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        match buf[..n].iter().rposition(|b| *b == b'\n') {
            Some(i) => self.run = n - i - 1,
            None => self.run += n,
        }
        if self.run > self.limit {
            return Err(too_long());
        }
        Ok(n)
    }
}

/// The records of a source, in order; see [`RecordError`] for which errors end it.
pub type Records = Box<dyn Iterator<Item = Result<SourceRecord, RecordError>> + Send>;

/// Reads the records of one UTF-8 stream (already decompressed and decoded, see
/// [`read_source`]) in `options.format` (or the format `source_name` implies).
/// `source_name` names the source in errors. Option errors and csv/txt header errors (an empty
/// or duplicate column name) are returned before any record.
pub fn open_records(reader: Box<dyn Read + Send>, options: &FormatOptions, source_name: &str) -> Result<Records> {
    let format = options.resolve_format(source_name)?;
    // A json document may be one long line; its values are bounded as they are captured.
    let reader: Box<dyn Read + Send> = match format {
        InputFormat::Json => reader,
        _ => Box::new(LineBound { inner: reader, run: 0, limit: MAX_RECORD_BYTES }),
    };
    let records: Records = match format {
        InputFormat::Csv | InputFormat::Txt => Box::new(csv::open(reader, format, options, source_name)?),
        InputFormat::Jsonl => Box::new(json::JsonLines::new(reader, source_name)),
        InputFormat::Json => Box::new(json::JsonDocument::new(reader, source_name)),
    };
    Ok(Box::new(Capped { inner: records, left: options.rows, done: false }))
}

/// Stops after `left` records or a fatal error.
struct Capped {
    inner: Records,
    left: Option<u64>,
    done: bool,
}

impl Iterator for Capped {
    type Item = Result<SourceRecord, RecordError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done || self.left == Some(0) {
            return None;
        }
        let item = self.inner.next();
        match &item {
            None => self.done = true,
            Some(Ok(_)) => self.left = self.left.map(|n| n - 1),
            Some(Err(e)) => self.done = e.fatal,
        }
        item
    }
}

/// How to read a published file: compression, charset and format.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceOptions {
    /// `None` means from the source name ([`Compression::from_name`]).
    pub compression: Option<Compression>,
    /// Charset label (WHATWG or Java name); `None` means UTF-8.
    pub encoding: Option<String>,
    /// For zip: only these entries (in archive order); `None` means all.
    pub zip_entries: Option<Vec<String>>,
    /// Format and parsing options. For zip, a `None` format is taken from each entry's name.
    pub format: FormatOptions,
    /// What invalid UTF-8 input does: replaced by U+FFFD (and perhaps counted), or an error.
    pub utf8: Utf8Policy,
}

/// Reads the records of a published file: decompresses (`options.compression` or from the name),
/// decodes the charset, and parses the format. Each zip entry is read as a file of its own,
/// named `source_name!entry` in errors; `rows` caps the records of the whole file.
/// Invalid options (format, charset, delimiter, columns) are errors before anything is read.
pub fn read_source(reader: Box<dyn Read + Send>, options: &SourceOptions, source_name: &str) -> Result<Records> {
    let compression = options.compression.unwrap_or_else(|| Compression::from_name(source_name));
    if let Some(label) = &options.encoding {
        encoding_for_label(label)?;
    }
    csv::check_options(&options.format)?;
    if compression != Compression::Zip {
        let reader = decompress(reader, compression, None)?;
        let reader = decode_charset_checked(reader, options.encoding.as_deref(), &options.utf8)?;
        return open_records(reader, &options.format, source_name);
    }
    let entries = zip_entries(reader, options.zip_entries.as_deref())?;
    let mut per_entry = options.format.clone();
    per_entry.rows = None;
    let records = ZipRecords {
        entries,
        options: per_entry,
        encoding: options.encoding.clone(),
        utf8: options.utf8.clone(),
        source_name: source_name.to_string(),
        current: None,
        done: false,
    };
    Ok(Box::new(Capped { inner: Box::new(records), left: options.format.rows, done: false }))
}

/// The records of every entry of a zip archive, entry after entry.
struct ZipRecords {
    entries: crate::compression::ZipEntries,
    options: FormatOptions,
    encoding: Option<String>,
    utf8: Utf8Policy,
    source_name: String,
    current: Option<Records>,
    done: bool,
}

impl ZipRecords {
    fn open_entry(&self, name: &str, reader: Box<dyn Read + Send>) -> Result<Records, RecordError> {
        let entry_source = format!("{}!{name}", self.source_name);
        let fail = |e: IngestError| match e {
            IngestError::Record(mut r) => {
                r.fatal = true;
                r
            }
            other => RecordError::new(&entry_source, 0, None, other.to_string(), true),
        };
        let reader = decode_charset_checked(reader, self.encoding.as_deref(), &self.utf8).map_err(fail)?;
        open_records(reader, &self.options, &entry_source).map_err(fail)
    }
}

impl Iterator for ZipRecords {
    type Item = Result<SourceRecord, RecordError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.done {
                return None;
            }
            if let Some(records) = &mut self.current {
                match records.next() {
                    Some(item) => return Some(item),
                    None => self.current = None,
                }
            }
            match self.entries.next_entry() {
                None => {
                    self.done = true;
                    return None;
                }
                Some(Err(e)) => {
                    self.done = true;
                    return Some(Err(RecordError::new(&self.source_name, 0, None, e.to_string(), true)));
                }
                Some(Ok((name, reader))) => match self.open_entry(&name, reader) {
                    Ok(records) => self.current = Some(records),
                    Err(e) => {
                        self.done = true;
                        return Some(Err(e));
                    }
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use serde_json::{Value, json};
    use zip::CompressionMethod;

    use super::*;

    #[test]
    fn an_endless_record_ends_the_source_with_an_error_not_with_the_memory() {
        for (name, prefix) in
            [("big.jsonl", "{\"a\": \""), ("big.csv", "a\n"), ("big.txt", "a\n"), ("big.json", "[{\"a\": \"")]
        {
            let endless = std::io::Cursor::new(prefix.as_bytes().to_vec()).chain(std::io::repeat(b'x').take(80 << 20));
            let mut records = read_source(Box::new(endless), &SourceOptions::default(), name).unwrap();
            let err = records.find_map(Result::err).expect("an error");
            assert!(err.fatal && err.message.contains("longer than 64 MiB"), "{name}: {err}");
            assert!(records.next().is_none(), "{name}: the source ends");
        }
    }
    use crate::compression::tests::{gz, zip_archive, zst};

    /// Renders each item: `L<line> {json}` or `E <error>`.
    fn render(records: Records) -> Vec<String> {
        records
            .map(|r| match r {
                Ok(r) => format!("L{} {}", r.line, Value::Object(r.record)),
                Err(e) => format!("E {e}{}", if e.fatal { " (fatal)" } else { "" }),
            })
            .collect()
    }

    fn read(data: Vec<u8>, options: &SourceOptions, name: &str) -> Vec<String> {
        render(read_source(Box::new(Cursor::new(data)), options, name).unwrap())
    }

    /// The file text of `rows` (id, name) in `format`.
    fn file_text(format: InputFormat, rows: &[(&str, &str)]) -> String {
        let quote = |s: &str, d: char| {
            if s.contains([d, '"', '\n', '\r']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s.to_string() }
        };
        match format {
            InputFormat::Csv | InputFormat::Txt => {
                let d = if format == InputFormat::Csv { ',' } else { '\t' };
                let mut out = format!("id{d}name\r\n");
                for (id, name) in rows {
                    out.push_str(&format!("{id}{d}{}\r\n", quote(name, d)));
                }
                out
            }
            InputFormat::Jsonl => {
                rows.iter().map(|(id, name)| format!("{}\n", json!({"id": id, "person": {"name": name}}))).collect()
            }
            InputFormat::Json => {
                let items: Vec<String> =
                    rows.iter().map(|(id, name)| json!({"id": id, "person": {"name": name}}).to_string()).collect();
                format!("[\n{}\n]\n", items.join(",\n"))
            }
        }
    }

    fn encode(text: &str, charset: &str) -> Vec<u8> {
        match charset {
            "UTF-16LE" => {
                let mut out = vec![0xFF, 0xFE];
                out.extend(text.encode_utf16().flat_map(u16::to_le_bytes));
                out
            }
            _ => {
                let (bytes, _, unmappable) = encoding_for_label(charset).unwrap().encode(text);
                assert!(!unmappable);
                bytes.into_owned()
            }
        }
    }

    #[test]
    fn every_format_compression_and_charset() {
        let western: &[(&str, &str)] = &[("1", "José Müller"), ("2", "Zoë, \"quoted\""), ("3", "Ærø\tå")];
        let japanese: &[(&str, &str)] = &[("1", "山田太郎"), ("2", "東京, \"駅\""), ("3", "ｶﾀｶﾅ\tテスト")];
        let cases: &[(&str, &[(&str, &str)])] = &[
            ("UTF-8", western),
            ("latin1", western),
            ("windows-1252", western),
            ("UTF-16LE", japanese),
            ("Shift_JIS", japanese),
        ];
        let mut checked = 0;
        for format in [InputFormat::Csv, InputFormat::Txt, InputFormat::Json, InputFormat::Jsonl] {
            for (charset, rows) in cases {
                let text = file_text(format, rows);
                let bytes = encode(&text, charset);
                let first_line = if format == InputFormat::Jsonl { 1 } else { 2 };
                let want: Vec<String> = rows
                    .iter()
                    .enumerate()
                    .map(|(i, (id, name))| {
                        let key = if matches!(format, InputFormat::Json | InputFormat::Jsonl) {
                            "person.name"
                        } else {
                            "name"
                        };
                        format!("L{} {}", first_line + i, json!({"id": id, key: name}))
                    })
                    .collect();
                let ext = format.name();
                let options = SourceOptions { encoding: Some(charset.to_string()), ..SourceOptions::default() };
                for (compression, data) in [("", bytes.clone()), (".gz", gz(&bytes)), (".zst", zst(&bytes))] {
                    let name = format!("data.{ext}{compression}");
                    assert_eq!(read(data, &options, &name), want, "{name} in {charset}");
                    checked += 1;
                }
                for method in [CompressionMethod::Deflated, CompressionMethod::Zstd] {
                    let entry = format!("part.{ext}");
                    let data = zip_archive(&[(entry.as_str(), &bytes)], method);
                    assert_eq!(read(data, &options, "data.zip"), want, "{entry} in {charset} {method:?}");
                    checked += 1;
                }
            }
        }
        assert_eq!(checked, 4 * 5 * 5);
    }

    #[test]
    fn zip_entries_are_read_as_files_of_their_own() {
        let data = zip_archive(
            &[
                ("a.csv", b"id,x\n1,a\n"),
                ("b.csv", b"\xEF\xBB\xBFid,y\n2,b\n3,c,extra\n4,d"),
                ("c.jsonl", b"{\"id\":5}\n"),
            ],
            CompressionMethod::Deflated,
        );
        let got = read(data.clone(), &SourceOptions::default(), "s3://bucket/data.zip");
        assert_eq!(
            got,
            [
                r#"L2 {"id":"1","x":"a"}"#,
                r#"L2 {"id":"2","y":"b"}"#,
                "E s3://bucket/data.zip!b.csv:3:3: 3 fields, but there are 2 columns: field 3 has no column name",
                r#"L4 {"id":"4","y":"d"}"#,
                r#"L1 {"id":5}"#,
            ]
        );
        let options = SourceOptions { zip_entries: Some(vec!["c.jsonl".into()]), ..SourceOptions::default() };
        assert_eq!(read(data.clone(), &options, "data.zip"), [r#"L1 {"id":5}"#]);
        // rows caps the whole archive.
        let options = SourceOptions {
            format: FormatOptions { rows: Some(3), ..FormatOptions::default() },
            ..SourceOptions::default()
        };
        assert_eq!(read(data.clone(), &options, "data.zip").len(), 4, "3 records and the error between them");
        // An explicit format applies to every entry.
        let options = SourceOptions { format: FormatOptions::new(InputFormat::Jsonl), ..SourceOptions::default() };
        let got = read(data, &options, "data.zip");
        assert_eq!(got[0], "E data.zip!a.csv:1:1: not a JSON object: expected value");
    }

    #[test]
    fn stream_errors_are_fatal_and_name_the_source() {
        let text: String = (0..2000).map(|i| format!("{{\"i\":{i}}}\n")).collect();
        let data = gz(text.as_bytes());
        let got = read(data[..data.len() / 2].to_vec(), &SourceOptions::default(), "big.jsonl.gz");
        let last = got.last().unwrap();
        assert!(got.len() > 100, "{}", got.len());
        assert!(last.starts_with(&format!("E big.jsonl.gz:{}: gz: truncated stream", got.len())), "{last}");
        assert!(last.ends_with("(fatal)"), "{last}");

        let data = zip_archive(&[("a.csv", b"x\n1\n")], CompressionMethod::Deflated);
        let got = read(data[..data.len() - 10].to_vec(), &SourceOptions::default(), "t.zip");
        assert_eq!(got[0], r#"L2 {"x":"1"}"#);
        assert!(got[1].starts_with("E t.zip: zip: truncated archive"), "{got:?}");
        let big: String = std::iter::once("x\n".to_string()).chain((0..5000).map(|i| format!("{i}\n"))).collect();
        let data = zip_archive(&[("a.csv", big.as_bytes()), ("b.csv", b"x\n2\n")], CompressionMethod::Deflated);
        let got = read(data[..data.len() / 2].to_vec(), &SourceOptions::default(), "t.zip");
        let last = got.last().unwrap();
        assert!(last.starts_with("E t.zip!a.csv:") && last.contains("zip: "), "{last}");
        let got = read(b"garbage!".to_vec(), &SourceOptions::default(), "t.zip");
        assert_eq!(got, ["E t.zip: zip: corrupt archive: bad signature 0x62726167 at byte 0 (fatal)"]);

        let got = read(b"a,b\n1,\"2\n".to_vec(), &SourceOptions::default(), "q.csv");
        assert_eq!(got.len(), 1);
        assert!(got[0].starts_with("E q.csv:2:2: unterminated quoted field"), "{got:?}");
    }

    #[test]
    fn options_are_checked_before_reading() {
        let err =
            |options: &SourceOptions, name: &str| match read_source(Box::new(Cursor::new(Vec::new())), options, name) {
                Ok(_) => panic!("expected an error"),
                Err(e) => e.to_string(),
            };
        let options = SourceOptions { encoding: Some("EBCDIC-klingon".into()), ..SourceOptions::default() };
        assert!(err(&options, "a.csv").starts_with("unknown charset \"EBCDIC-klingon\""));
        assert!(err(&options, "a.zip").starts_with("unknown charset"));
        assert!(err(&SourceOptions::default(), "a.parquet").contains("cannot tell the format"));
        let options = SourceOptions {
            format: FormatOptions { headers: false, ..FormatOptions::new(InputFormat::Csv) },
            ..SourceOptions::default()
        };
        assert!(err(&options, "a.zip").starts_with("headers=false needs column names"));
        assert_eq!(InputFormat::parse("NDJSON").unwrap(), InputFormat::Jsonl);
        assert!(InputFormat::parse("xml").unwrap_err().to_string().contains("\"xml\""));
        assert_eq!(InputFormat::from_name("x.csv.gz"), Some(InputFormat::Csv));
        assert_eq!(InputFormat::from_name("x.TSV"), Some(InputFormat::Txt));
        assert_eq!(InputFormat::from_name("dir.d/x.ndjson.zst"), Some(InputFormat::Jsonl));
        assert_eq!(InputFormat::from_name("x.json"), Some(InputFormat::Json));
        assert_eq!(InputFormat::from_name("x.gz"), None);
        assert_eq!(InputFormat::from_name("x"), None);
    }

    #[test]
    fn record_error_display() {
        let e = RecordError::new("data.csv", 12, Some(3), "unterminated quoted field", true);
        assert_eq!(e.to_string(), "data.csv:12:3: unterminated quoted field");
        assert_eq!(RecordError::new("a", 2, None, "m", false).to_string(), "a:2: m");
        assert_eq!(RecordError::new("a", 0, None, "m", false).to_string(), "a: m");
    }
}

/// Throughput of the readers, run by hand:
/// `cargo test --workspace --release --lib throughput -- --ignored --nocapture`.
#[cfg(test)]
mod throughput {
    use std::io::Cursor;
    use std::time::Instant;

    use super::*;
    use crate::compression::tests::gz;

    const TARGET: usize = 100 << 20;

    fn jsonl() -> Vec<u8> {
        let mut out = Vec::with_capacity(TARGET + 1024);
        let mut i = 0u64;
        while out.len() < TARGET {
            out.extend_from_slice(
                format!(
                    "{{\"id\":{i},\"user\":{{\"name\":\"user {}\",\"ip\":\"10.0.{}.{}\"}},\"event\":\"click\",\
                     \"time\":\"2021-02-23T19:18:{:02}.399Z\",\"score\":{}.5,\"tags\":[\"a\",\"b\"],\"ok\":true}}\n",
                    i % 1000,
                    i % 256,
                    i % 100,
                    i % 60,
                    i % 977
                )
                .as_bytes(),
            );
            i += 1;
        }
        out
    }

    fn csv() -> Vec<u8> {
        let mut out = b"id,user.name,user.ip,event,time,score,note\n".to_vec();
        let mut i = 0u64;
        while out.len() < TARGET {
            out.extend_from_slice(
                format!(
                    "{i},user {},10.0.{}.{},click,2021-02-23T19:18:{:02}.399Z,{}.5,\"quoted, with comma\"\n",
                    i % 1000,
                    i % 256,
                    i % 100,
                    i % 60,
                    i % 977
                )
                .as_bytes(),
            );
            i += 1;
        }
        out
    }

    fn measure(label: &str, data: Vec<u8>, raw_len: usize, name: &str) {
        let start = Instant::now();
        let records = read_source(Box::new(Cursor::new(data)), &SourceOptions::default(), name).unwrap();
        let mut n = 0u64;
        for r in records {
            r.unwrap();
            n += 1;
        }
        let secs = start.elapsed().as_secs_f64();
        println!(
            "{label:<12} {n:>9} records  {:>7.1} MB/s  ({:.0} records/s)",
            raw_len as f64 / secs / 1e6,
            n as f64 / secs
        );
    }

    /// Where the time goes: charset decoding alone, JSON parsing alone.
    fn phases(data: &[u8]) {
        use std::io::{BufRead, Read};
        let start = Instant::now();
        let mut sink = Vec::with_capacity(data.len());
        crate::charset::decode_charset(Box::new(Cursor::new(data.to_vec())), None)
            .unwrap()
            .read_to_end(&mut sink)
            .unwrap();
        let secs = start.elapsed().as_secs_f64();
        println!("  utf-8 check  {:>7.1} MB/s", data.len() as f64 / secs / 1e6);
        let start = Instant::now();
        let mut n = 0;
        for line in data.lines() {
            let v: serde_json::Value = serde_json::from_str(&line.unwrap()).unwrap();
            n += usize::from(v.is_object());
        }
        let secs = start.elapsed().as_secs_f64();
        println!("  json parse   {:>7.1} MB/s ({n} objects)", data.len() as f64 / secs / 1e6);
    }

    #[test]
    #[ignore = "run by hand in release mode"]
    fn throughput() {
        for (label, data, ext) in [("jsonl", jsonl(), "jsonl"), ("csv", csv(), "csv")] {
            let len = data.len();
            if ext == "jsonl" {
                phases(&data);
            }
            let compressed = gz(&data);
            measure(label, data, len, &format!("x.{ext}"));
            measure(&format!("{label}.gz"), compressed, len, &format!("x.{ext}.gz"));
        }
    }
}
