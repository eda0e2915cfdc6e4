//! `/publish`: files into the lake as one atomic append, through a pipeline of threads.
//!
//! ```text
//!  reader thread                 worker threads (servers)           this thread
//!  source -> decompress ->  ==>  rules -> typing into Arrow   ==>   reorder by chunk number ->
//!  charset -> parse, in chunks   columns, per chunk                 Appender (segments are
//!                                                                   encoded on its threads)
//! ```
//! Channels are bounded, so memory stays bounded whatever the file size. Chunks carry sequence
//! numbers and are appended in order, so keys follow input order. Nothing is visible until the
//! final commit: any strict-mode error, or a crash, leaves the lake as it was.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arrow::array::ArrayRef;
use crossbeam_channel::{Receiver, Sender, bounded};
use m1_engine::rows::{JsonPush, PushJsonError, RowsBuilder};
use m1_engine::schema::{Property, PropertyType};
use m1_engine::storage::ObjectStoreOptions;
use m1_engine::{EngineError, Environment};
use serde::Serialize;
use serde_json::Value;

use crate::charset::Utf8Policy;
use crate::compression::Compression;
use crate::error::{IngestError, Result};
use crate::format::{FormatOptions, InputFormat, RecordError, SourceOptions, SourceRecord, read_source};
use crate::rules::RuleSet;
use crate::source::{SourceFile, resolve};

/// Records per chunk handed from the reader to the workers.
const CHUNK_RECORDS: usize = 2048;
/// Rejections listed in a report (all are counted).
const MAX_LISTED: usize = 100;
/// Records sampled to infer the types of new properties.
const INFER_SAMPLE: usize = 1000;

/// Everything `/publish` takes (SPEC §4).
#[derive(Debug, Clone)]
pub struct PublishRequest {
    /// Path, URL, directory, prefix or glob.
    pub file: String,
    /// TransformRuleSet JSON.
    pub rules: Option<String>,
    /// Format; from each file's name when absent.
    pub format: Option<InputFormat>,
    /// Compression; from each file's name when absent.
    pub compression: Option<Compression>,
    /// Charset label (UTF-8 when absent).
    pub encoding: Option<String>,
    /// Delimiter for csv/txt.
    pub delimiter: Option<u8>,
    /// Whether delimited files start with a header row.
    pub headers: bool,
    /// Stop after this many records (all when absent).
    pub rows: Option<u64>,
    /// Add properties missing from the schema with inferred types before publishing.
    pub infer: bool,
    /// Null values that fail coercion and skip unparseable rows instead of failing; `None`
    /// follows the environment's `publish-permissive` system parameter.
    pub permissive: Option<bool>,
    /// Allow `http(s)://` sources.
    pub outbound: bool,
    /// Object-store settings for remote sources.
    pub object_store_options: ObjectStoreOptions,
    /// For zip files: only these entries.
    pub zip_entries: Option<Vec<String>>,
    /// Where local files may be read from; `None` reads anything the process may (the CLI, as
    /// the user it runs as). `m1 serve` sets its `-allowRead` directories and the stage.
    pub read_roots: Option<Vec<std::path::PathBuf>>,
    /// Set by the caller to stop the publish (its client went away); nothing is committed.
    pub cancel: Option<Arc<AtomicBool>>,
}

impl PublishRequest {
    /// A request for `file` with every other parameter at its default.
    pub fn new(file: impl Into<String>) -> PublishRequest {
        PublishRequest {
            file: file.into(),
            rules: None,
            format: None,
            compression: None,
            encoding: None,
            delimiter: None,
            headers: true,
            rows: None,
            infer: false,
            permissive: None,
            outbound: false,
            object_store_options: ObjectStoreOptions::new(),
            zip_entries: None,
            read_roots: None,
            cancel: None,
        }
    }
}

/// A record or value a permissive publish skipped or nulled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rejection {
    /// File it came from.
    pub file: String,
    /// Line where the record starts.
    pub line: u64,
    /// Column, for delimited files.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<u64>,
    /// What happened: the error message.
    pub reason: String,
    /// `skipped` (the record) or `nulled` (one value).
    pub action: &'static str,
}

/// What a publish is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Reading, typing and writing the records into the lake, up to the commit.
    Lake,
    /// The commit stands; the data stores are indexing it.
    Index,
}

/// Live progress of a publish.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    /// What the publish is doing.
    pub phase: Phase,
    /// Bytes read from the sources (compressed size).
    pub bytes_read: u64,
    /// Total size of the sources, when known.
    pub bytes_total: Option<u64>,
    /// Records typed so far.
    pub rows: u64,
    /// Time since the publish started.
    pub elapsed: Duration,
}

/// What a publish did.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PublishReport {
    /// The `file` parameter.
    pub file: String,
    /// Files read.
    pub files: usize,
    /// Records read from the files.
    pub rows_read: u64,
    /// Records committed.
    pub rows_published: u64,
    /// Records dropped by `filter` rules.
    pub rows_filtered: u64,
    /// Records skipped because they could not be parsed (permissive mode).
    pub rows_rejected: u64,
    /// Values set to null because they did not fit their type (permissive mode).
    pub values_nulled: u64,
    /// Input lines in which invalid UTF-8 was replaced by U+FFFD (permissive mode; a strict
    /// publish fails at the first). Files in another charset are not counted.
    pub invalid_utf8_lines: u64,
    /// The first rejections, with positions.
    pub rejections: Vec<Rejection>,
    /// Properties in the input that are not in the schema (not stored in the lake).
    pub unmapped: Vec<String>,
    /// Properties added to the schema by `infer`.
    pub inferred: Vec<Property>,
    /// First key assigned.
    pub first_key: Option<u64>,
    /// Last key assigned.
    pub last_key: Option<u64>,
    /// Exact key ranges `[start, end)` of the published records.
    pub key_ranges: Vec<(u64, u64)>,
    /// Bytes read (compressed size).
    pub bytes: u64,
    /// Wall time until the records were queryable: `lake_seconds + index_seconds`.
    pub seconds: f64,
    /// Wall time until the lake commit stood (reading, typing, writing, committing).
    pub lake_seconds: f64,
    /// Wall time the data stores took to index the commit, after it.
    pub index_seconds: f64,
    /// Records published per second, until queryable.
    pub rows_per_second: f64,
    /// Set when the records were committed but the data stores could not index them yet (say
    /// the disk is full): they are safe in the lake, and each store indexes them on its next
    /// sync or query.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index_error: Option<String>,
}

/// Counts bytes as they are read, for progress and the report.
struct Counted<R> {
    inner: R,
    count: Arc<AtomicU64>,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Compiles `filter` rules with the query language, typed by the environment's schema.
fn filter_compiler(
    schema: m1_engine::Schema,
) -> impl Fn(&str) -> std::result::Result<crate::rules::RecordTest, String> {
    move |q: &str| {
        let query = m1_query::syntax::parse(q).map_err(|e| e.to_string())?;
        let schema = schema.clone();
        let matcher = m1_query::matcher::Matcher::new(&query, move |name: &str| schema.get(name).map(|p| p.ty));
        Ok(Box::new(move |r: &m1_engine::record::Record| matcher.matches(r)) as crate::rules::RecordTest)
    }
}

fn source_options(req: &PublishRequest, rules: &RuleSet, file: &SourceFile) -> Result<SourceOptions> {
    let (base, named) = Compression::split_name(&file.name);
    let compression = req.compression.unwrap_or(named);
    let format = match (req.format, InputFormat::from_name(base)) {
        (Some(f), _) | (None, Some(f)) => Some(f),
        // Each zip entry is read in the format its own name gives.
        (None, None) if compression == Compression::Zip => None,
        (None, None) => {
            return Err(IngestError::Source(format!(
                "{}: cannot tell the format from the name; give -format (csv, txt, json or jsonl)",
                file.name
            )));
        }
    };
    let mut fo = FormatOptions::new(format.unwrap_or(InputFormat::Jsonl));
    fo.format = format;
    fo.delimiter = req.delimiter;
    fo.headers = req.headers;
    fo.columns = rules.columns().map(<[String]>::to_vec);
    Ok(SourceOptions {
        compression: Some(compression),
        encoding: req.encoding.clone(),
        zip_entries: req.zip_entries.clone(),
        format: fo,
        utf8: Default::default(),
    })
}

/// One chunk of input on its way to the workers.
struct RawChunk {
    seq: u64,
    file: Arc<str>,
    delimited: bool,
    items: Items,
}

/// Records parsed by the reader, or jsonl lines the workers parse (so parsing, the costliest
/// step for JSON, runs on every core).
enum Items {
    Parsed(Vec<std::result::Result<SourceRecord, RecordError>>),
    JsonLines {
        text: Vec<u8>,
        first_line: u64,
    },
    /// Whole records of a csv/txt file (cut at record boundaries), after its header.
    Delimited {
        text: Vec<u8>,
        first_line: u64,
        header: Arc<Header>,
    },
}

/// The columns of a delimited file, read once by the reader for all its chunks.
struct Header {
    names: Vec<String>,
    delimiter: u8,
}

impl Items {
    fn into_records(self, file: &str) -> Vec<std::result::Result<SourceRecord, RecordError>> {
        match self {
            Items::Parsed(items) => items,
            Items::Delimited { text, first_line, header } => {
                crate::format::csv::chunk_rows(text, first_line, header.delimiter, &header.names, file).collect()
            }
            Items::JsonLines { text, first_line } => text
                .split(|b| *b == b'\n')
                .enumerate()
                .filter_map(|(i, line)| crate::format::json::parse_line(line, first_line + i as u64, file))
                .collect(),
        }
    }
}

/// Bytes of jsonl or csv/txt text per chunk.
const TEXT_CHUNK_BYTES: usize = 1 << 20;

/// One chunk typed into columns.
struct TypedChunk {
    seq: u64,
    columns: Vec<ArrayRef>,
    rows: usize,
    read: u64,
    filtered: u64,
    rejected: u64,
    nulled: u64,
    rejections: Vec<Rejection>,
    unmapped: BTreeSet<String>,
}

impl TypedChunk {
    /// Lists a skipped record or a nulled value, while fewer than [`MAX_LISTED`] are.
    fn reject(&mut self, file: &str, line: u64, column: Option<u64>, reason: String, action: &'static str) {
        if self.rejections.len() < MAX_LISTED {
            self.rejections.push(Rejection { file: file.to_string(), line, column, reason, action });
        }
    }
}

/// Counts over every chunk of a publish, in input order.
#[derive(Default)]
struct Totals {
    read: u64,
    published: u64,
    filtered: u64,
    rejected: u64,
    nulled: u64,
    rejections: Vec<Rejection>,
    unmapped: BTreeSet<String>,
}

impl Totals {
    /// Counts a typed chunk and hands its columns to the appender.
    fn add(&mut self, chunk: TypedChunk, appender: &mut m1_engine::Appender<'_>) -> Result<()> {
        self.read += chunk.read;
        self.filtered += chunk.filtered;
        self.rejected += chunk.rejected;
        self.nulled += chunk.nulled;
        let room = MAX_LISTED.saturating_sub(self.rejections.len());
        self.rejections.extend(chunk.rejections.into_iter().take(room));
        self.unmapped.extend(chunk.unmapped);
        self.published += chunk.rows as u64;
        if chunk.rows > 0 {
            appender.write_columns(chunk.columns, chunk.rows)?;
        }
        Ok(())
    }

    /// Commits the append and builds the report.
    fn finish(
        self,
        appender: m1_engine::Appender<'_>,
        file: &str,
        files: usize,
        bytes: u64,
        inferred: Vec<Property>,
        started: Instant,
    ) -> Result<PublishReport> {
        let report = appender.commit()?;
        debug_assert_eq!(report.rows, self.published);
        let seconds = started.elapsed().as_secs_f64();
        Ok(PublishReport {
            file: file.to_string(),
            files,
            rows_read: self.read,
            rows_published: report.rows,
            rows_filtered: self.filtered,
            rows_rejected: self.rejected,
            values_nulled: self.nulled,
            invalid_utf8_lines: 0,
            rejections: self.rejections,
            unmapped: self.unmapped.into_iter().collect(),
            inferred,
            first_key: report.first_key,
            last_key: report.last_key,
            key_ranges: report.key_ranges,
            bytes,
            seconds,
            lake_seconds: seconds,
            index_seconds: 0.0,
            rows_per_second: if seconds > 0.0 { report.rows as f64 / seconds } else { 0.0 },
            index_error: None,
        })
    }
}

/// Publishes the files `req.file` names into `env`, atomically. `progress` is called about ten
/// times a second.
pub fn publish(
    env: &Environment,
    req: &PublishRequest,
    progress: &(dyn Fn(&Progress) + Sync),
) -> Result<PublishReport> {
    let started = Instant::now();
    let schema = env.schema()?;
    let compile = filter_compiler(schema.clone());
    let rules = match &req.rules {
        Some(json) => RuleSet::parse(json, &compile)?,
        None => RuleSet::empty(),
    };
    if let Some(roots) = &req.read_roots {
        crate::source::check_readable(&req.file, roots)?;
    }
    let files = resolve(&req.file, &req.object_store_options, req.outbound)?;
    if let Some(roots) = &req.read_roots {
        // A link inside an allowed directory may point anywhere: check where each file really is.
        for f in &files {
            if let crate::source::Location::Local(p) = &f.location {
                crate::source::check_readable(&p.display().to_string(), roots)?;
            }
        }
    }
    let permissive = match req.permissive {
        Some(p) => p,
        None => env.system()?.get("publish-permissive").and_then(Value::as_bool).unwrap_or(false),
    };
    let mut options: Vec<SourceOptions> =
        files.iter().map(|f| source_options(req, &rules, f)).collect::<Result<_>>()?;
    // Strict publishes refuse invalid UTF-8; permissive ones keep the record with U+FFFD and
    // count the lines that had any.
    let invalid_utf8 = crate::charset::InvalidUtf8Lines::default();
    for o in &mut options {
        o.utf8 = if permissive { Utf8Policy::Count(invalid_utf8.clone()) } else { Utf8Policy::Strict };
    }
    let inferred = if req.infer { infer(env, &files, &options, &rules)? } else { Vec::new() };
    let mut appender = env.appender()?;
    let properties = appender.schema().properties().to_vec();
    let bytes = Arc::new(AtomicU64::new(0));
    let abort = AtomicBool::new(false);
    let workers = env.config().workers.max(1) as usize;
    let (raw_tx, raw_rx) = bounded::<RawChunk>(workers * 2);
    let (typed_tx, typed_rx) = bounded::<Result<TypedChunk>>(workers * 2);
    let bytes_total = files.iter().map(|f| f.size).sum::<Option<u64>>();

    let totals = std::thread::scope(|s| {
        let reader = s.spawn(|| read_all(&files, &options, req, &bytes, &abort, raw_tx));
        for _ in 0..workers {
            let (rx, tx) = (raw_rx.clone(), typed_tx.clone());
            let (rules, properties, abort) = (&rules, &properties, &abort);
            s.spawn(move || work(rx, tx, rules, properties, permissive, abort));
        }
        drop((raw_rx, typed_tx));
        let mut pending: BTreeMap<u64, TypedChunk> = BTreeMap::new();
        let mut next_seq = 0u64;
        let mut totals = Totals::default();
        let mut last_progress = Instant::now();
        let mut failure = None;
        for typed in typed_rx.iter() {
            match typed {
                Ok(chunk) if failure.is_none() => {
                    pending.insert(chunk.seq, chunk);
                }
                Ok(_) => continue,
                Err(e) => {
                    abort.store(true, Ordering::Relaxed);
                    failure.get_or_insert(e);
                    continue;
                }
            }
            while let Some(chunk) = pending.remove(&next_seq) {
                next_seq += 1;
                if let Err(e) = totals.add(chunk, &mut appender) {
                    abort.store(true, Ordering::Relaxed);
                    failure.get_or_insert(e);
                    break;
                }
            }
            if req.cancel.as_ref().is_some_and(|c| c.load(Ordering::Relaxed)) && failure.is_none() {
                abort.store(true, Ordering::Relaxed);
                failure = Some(IngestError::Cancelled);
            }
            if last_progress.elapsed() >= Duration::from_millis(100) {
                last_progress = Instant::now();
                let bytes_read = bytes.load(Ordering::Relaxed);
                progress(&Progress {
                    phase: Phase::Lake,
                    bytes_read,
                    bytes_total,
                    rows: totals.published,
                    elapsed: started.elapsed(),
                });
            }
        }
        let read_result = reader.join().unwrap_or_else(|p| {
            Err(IngestError::WorkerPanicked(format!("the reader thread panicked: {}", m1_engine::panic_message(&*p))))
        });
        match failure {
            Some(e) => Err(e),
            None => read_result.map(|()| totals),
        }
    })?;
    let bytes = bytes.load(Ordering::Relaxed);
    let rows = totals.published;
    let mut report = totals.finish(appender, &req.file, files.len(), bytes, inferred, started)?;
    report.invalid_utf8_lines = invalid_utf8.get();
    progress(&Progress { phase: Phase::Lake, bytes_read: bytes, bytes_total, rows, elapsed: started.elapsed() });
    Ok(report)
}

/// The reader stage: every file in order, parsed into numbered chunks.
fn read_all(
    files: &[SourceFile],
    options: &[SourceOptions],
    req: &PublishRequest,
    bytes: &Arc<AtomicU64>,
    abort: &AtomicBool,
    tx: Sender<RawChunk>,
) -> Result<()> {
    let mut seq = 0u64;
    let mut remaining = req.rows.unwrap_or(u64::MAX);
    for (file, options) in files.iter().zip(options) {
        if remaining == 0 || abort.load(Ordering::Relaxed) {
            break;
        }
        let name: Arc<str> = Arc::from(file.name.as_str());
        let delimited = matches!(options.format.format, Some(InputFormat::Csv | InputFormat::Txt));
        let input = Box::new(Counted { inner: file.open()?, count: bytes.clone() });
        let send = |items: Items, seq: &mut u64| {
            let chunk = RawChunk { seq: *seq, file: name.clone(), delimited, items };
            *seq += 1;
            tx.send(chunk).is_ok() && !abort.load(Ordering::Relaxed)
        };
        let compression = options.compression.unwrap_or(Compression::None);
        if options.format.format == Some(InputFormat::Jsonl) && compression != Compression::Zip {
            if let Some(label) = &options.encoding {
                crate::charset::encoding_for_label(label)?;
            }
            let text = crate::compression::decompress(input, compression, None)?;
            let mut text = crate::charset::decode_charset_checked(text, options.encoding.as_deref(), &options.utf8)?;
            let mut line = 1u64;
            let mut carry: Vec<u8> = Vec::new();
            loop {
                let mut buf = std::mem::take(&mut carry);
                let start = buf.len();
                buf.resize(start + TEXT_CHUNK_BYTES, 0);
                let n = read_full(&mut text, &mut buf[start..])
                    .map_err(|e| IngestError::Record(RecordError::new(&file.name, line, None, e.to_string(), true)))?;
                buf.truncate(start + n);
                if buf.is_empty() {
                    break;
                }
                // Cut after the last newline; the rest starts the next chunk.
                if n > 0 {
                    match buf.iter().rposition(|b| *b == b'\n') {
                        Some(cut) => carry = buf.split_off(cut + 1),
                        // A line longer than a chunk: read on until it ends, up to the limit.
                        None if buf.len() > crate::format::MAX_RECORD_BYTES => {
                            let e = crate::format::too_long().to_string();
                            return Err(IngestError::Record(RecordError::new(&file.name, line, None, e, true)));
                        }
                        None => {
                            carry = buf;
                            continue;
                        }
                    }
                }
                let (buf, capped) = if remaining == u64::MAX { (buf, false) } else { cap_lines(buf, &mut remaining) };
                let lines = buf.iter().filter(|b| **b == b'\n').count() as u64;
                let first_line = line;
                line += lines;
                if !send(Items::JsonLines { text: buf, first_line }, &mut seq) {
                    return Ok(());
                }
                if capped || n == 0 {
                    break;
                }
            }
            continue;
        }
        if delimited && compression != Compression::Zip && req.rows.is_none() {
            if !read_delimited(
                input,
                options,
                compression,
                &file.name,
                TEXT_CHUNK_BYTES,
                &mut |text, first_line, header| send(Items::Delimited { text, first_line, header }, &mut seq),
            )? {
                return Ok(());
            }
            continue;
        }
        let records = read_source(input, options, &file.name)?;
        let mut items = Vec::with_capacity(CHUNK_RECORDS);
        for item in records {
            let fatal = matches!(&item, Err(e) if e.fatal);
            if item.is_ok() {
                remaining -= 1;
            }
            items.push(item);
            if (items.len() == CHUNK_RECORDS || remaining == 0 || fatal)
                && !send(Items::Parsed(std::mem::take(&mut items)), &mut seq)
            {
                return Ok(());
            }
            if remaining == 0 || fatal {
                break;
            }
        }
        if !items.is_empty() {
            send(Items::Parsed(items), &mut seq);
        }
    }
    Ok(())
}

/// The reader stage of a csv/txt file: decompresses and decodes it, reads its header, and cuts
/// the rest into chunks of whole records (a line break inside quotes ends nothing) that the
/// workers parse, so that parsing runs on every core. `send` returns false to stop; so does
/// this function then.
fn read_delimited(
    input: Box<dyn Read + Send>,
    options: &SourceOptions,
    compression: Compression,
    file: &str,
    chunk_bytes: usize,
    send: &mut dyn FnMut(Vec<u8>, u64, Arc<Header>) -> bool,
) -> Result<bool> {
    use crate::format::csv::{RecordCutter, check_options, open};
    if let Some(label) = &options.encoding {
        crate::charset::encoding_for_label(label)?;
    }
    check_options(&options.format)?;
    let format = options.format.format.unwrap_or(InputFormat::Csv);
    let delimiter = options.format.delimiter.unwrap_or(format.default_delimiter());
    let text = crate::compression::decompress(input, compression, None)?;
    let mut text = crate::charset::decode_charset_checked(text, options.encoding.as_deref(), &options.utf8)?;
    let failed =
        |line: u64, e: std::io::Error| IngestError::Record(RecordError::new(file, line, None, e.to_string(), true));
    let mut buf: Vec<u8> = Vec::new();
    // Reads up to a chunk more into `buf`; returns the bytes read (0 at the end).
    let mut more = |buf: &mut Vec<u8>, line: u64| -> Result<usize> {
        let start = buf.len();
        buf.resize(start + chunk_bytes, 0);
        let n = read_full(&mut text, &mut buf[start..]).map_err(|e| failed(line, e))?;
        buf.truncate(start + n);
        Ok(n)
    };
    // The header is the first record, read whole however long (up to the record limit).
    let (mut at, mut line, mut eof) = (0, 1, false);
    if options.format.headers {
        loop {
            if let Some(end) = RecordCutter::first_record_end(&buf, delimiter) {
                (at, line) = end;
                break;
            }
            if eof {
                at = buf.len();
                break;
            }
            if buf.len() > crate::format::MAX_RECORD_BYTES {
                return Err(failed(1, crate::format::too_long()));
            }
            eof = more(&mut buf, 1)? == 0;
        }
    }
    let head = open(Box::new(std::io::Cursor::new(buf[..at].to_vec())), format, &options.format, file)?;
    let header = Arc::new(Header { names: head.names().to_vec(), delimiter });
    let mut carry = buf.split_off(at);
    let mut cutter = RecordCutter::at_line(delimiter, line);
    let mut scanned = 0;
    loop {
        let cut = cutter.scan(&carry[scanned..]).map(|(offset, next)| (scanned + offset, next));
        scanned = carry.len();
        if eof {
            return Ok(carry.is_empty() || send(carry, line, header));
        }
        match cut {
            Some((offset, next)) => {
                let rest = carry.split_off(offset);
                if !send(std::mem::replace(&mut carry, rest), line, header.clone()) {
                    return Ok(false);
                }
                line = next;
                scanned = carry.len();
            }
            // A record longer than a chunk: read on until it ends, up to the limit.
            None if carry.len() > crate::format::MAX_RECORD_BYTES => {
                return Err(failed(line, crate::format::too_long()));
            }
            None => {}
        }
        eof = more(&mut carry, line)? == 0;
    }
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Keeps at most `remaining` non-blank lines of `text`, counting them off; says whether the cap
/// was reached.
fn cap_lines(mut text: Vec<u8>, remaining: &mut u64) -> (Vec<u8>, bool) {
    let mut at = 0;
    while at < text.len() {
        let end = text[at..].iter().position(|b| *b == b'\n').map_or(text.len(), |i| at + i + 1);
        if text[at..end].iter().any(|b| !b.is_ascii_whitespace()) {
            if *remaining == 0 {
                text.truncate(at);
                return (text, true);
            }
            *remaining -= 1;
        }
        at = end;
    }
    (text, *remaining == 0)
}

/// The worker stage: rules and typing for one chunk at a time.
fn work(
    rx: Receiver<RawChunk>,
    tx: Sender<Result<TypedChunk>>,
    rules: &RuleSet,
    properties: &[Property],
    permissive: bool,
    abort: &AtomicBool,
) {
    let mut builder = RowsBuilder::new(properties);
    for chunk in rx.iter() {
        if abort.load(Ordering::Relaxed) {
            continue;
        }
        let result = type_chunk(chunk, &mut builder, rules, permissive);
        if tx.send(result).is_err() {
            return;
        }
    }
}

fn type_chunk(chunk: RawChunk, builder: &mut RowsBuilder, rules: &RuleSet, permissive: bool) -> Result<TypedChunk> {
    let mut out = TypedChunk {
        seq: chunk.seq,
        columns: Vec::new(),
        rows: 0,
        read: 0,
        filtered: 0,
        rejected: 0,
        nulled: 0,
        rejections: Vec::new(),
        unmapped: BTreeSet::new(),
    };
    let file = &*chunk.file;
    if rules.is_empty()
        && let Items::JsonLines { text, first_line } = &chunk.items
    {
        type_json_lines(text, *first_line, file, builder, permissive, &mut out)?;
        out.rows = builder.len();
        out.unmapped = builder.unmapped().clone();
        out.columns = builder.finish();
        return Ok(out);
    }
    let items = match chunk.items {
        Items::Delimited { text, first_line, header } if rules.is_empty() => {
            type_delimited(text, first_line, &header, file, builder, permissive, &mut out)?;
            out.rows = builder.len();
            out.columns = builder.finish();
            return Ok(out);
        }
        items => items,
    };
    let mut casts = Vec::new();
    for item in items.into_records(file) {
        let source = match item {
            Ok(r) => r,
            Err(e) if permissive && !e.fatal => {
                out.rejected += 1;
                if out.rejections.len() < MAX_LISTED {
                    out.rejections.push(Rejection {
                        file: e.file,
                        line: e.line,
                        column: e.column,
                        reason: e.message,
                        action: "skipped",
                    });
                }
                continue;
            }
            Err(e) => return Err(IngestError::Record(e)),
        };
        out.read += 1;
        // Columns of a delimited file are positions in its header: keep them if rules may move
        // or rename properties.
        let header: Option<Vec<String>> =
            (chunk.delimited && !rules.is_empty()).then(|| source.record.keys().cloned().collect());
        let header_column =
            |property: &str| header.as_ref().and_then(|h| h.iter().position(|k| k == property)).map(|i| i as u64 + 1);
        let record = if permissive {
            casts.clear();
            let kept = rules.apply_lenient(source.record, &mut casts);
            for c in casts.drain(..) {
                out.nulled += 1;
                if out.rejections.len() < MAX_LISTED {
                    out.rejections.push(Rejection {
                        file: file.to_string(),
                        line: source.line,
                        column: header_column(&c.property),
                        reason: c.to_string(),
                        action: "nulled",
                    });
                }
            }
            kept
        } else {
            rules.apply(source.record).map_err(|e| IngestError::Row {
                file: file.to_string(),
                line: source.line,
                column: header_column(&e.property),
                message: e.to_string(),
            })?
        };
        let Some(record) = record else {
            out.filtered += 1;
            continue;
        };
        let column_of = |property: &str| match &header {
            Some(_) => header_column(property),
            None if chunk.delimited => record.keys().position(|k| k == property).map(|i| i as u64 + 1),
            None => None,
        };
        if permissive {
            for e in builder.push_lenient(&record) {
                out.nulled += 1;
                if out.rejections.len() < MAX_LISTED {
                    let column = match &e {
                        EngineError::BadValue { property, .. } => column_of(property),
                        _ => None,
                    };
                    let reason = e.to_string();
                    out.rejections.push(Rejection {
                        file: file.to_string(),
                        line: source.line,
                        column,
                        reason,
                        action: "nulled",
                    });
                }
            }
        } else if let Err(e) = builder.push(&record) {
            let column = match &e {
                EngineError::BadValue { property, .. } => column_of(property),
                _ => None,
            };
            return Err(IngestError::Row { file: file.to_string(), line: source.line, column, message: e.to_string() });
        }
    }
    out.rows = builder.len();
    out.unmapped = builder.unmapped().clone();
    out.columns = builder.finish();
    Ok(out)
}

/// The fast path for csv/txt without rules: each record's fields are typed straight into the
/// columns, by the position of their property in the header.
fn type_delimited(
    text: Vec<u8>,
    first_line: u64,
    header: &Header,
    file: &str,
    builder: &mut RowsBuilder,
    permissive: bool,
    out: &mut TypedChunk,
) -> Result<()> {
    let columns = builder.columns_of(&header.names);
    let mut rows = crate::format::csv::chunk_rows(text, first_line, header.delimiter, &header.names, file);
    while let Some(row) = rows.next_row() {
        let line = match row {
            Ok(line) => line,
            Err(e) if permissive && !e.fatal => {
                out.rejected += 1;
                out.reject(file, e.line, e.column, e.message, "skipped");
                continue;
            }
            Err(e) => return Err(IngestError::Record(e)),
        };
        out.read += 1;
        let fields = rows.fields();
        match builder.push_fields(&columns, |i| String::from_utf8_lossy(&fields[i]), permissive) {
            Ok(nulled) => {
                for (at, e) in nulled {
                    out.nulled += 1;
                    out.reject(file, line, Some(at as u64 + 1), e.to_string(), "nulled");
                }
            }
            Err((at, e)) => {
                let column = Some(at as u64 + 1);
                return Err(IngestError::Row { file: file.to_string(), line, column, message: e.to_string() });
            }
        }
    }
    if !builder.is_empty() {
        let mapped: BTreeSet<usize> = columns.iter().flatten().copied().collect();
        let unmapped = header.names.iter().enumerate().filter(|(i, _)| !mapped.contains(i));
        out.unmapped.extend(unmapped.map(|(_, n)| n.clone()));
    }
    Ok(())
}

/// The fast path for jsonl without rules: each line is parsed straight into the columns.
fn type_json_lines(
    text: &[u8],
    first_line: u64,
    file: &str,
    builder: &mut RowsBuilder,
    permissive: bool,
    out: &mut TypedChunk,
) -> Result<()> {
    for (i, bytes) in text.split(|b| *b == b'\n').enumerate() {
        let Some(first) = bytes.iter().position(|b| !b.is_ascii_whitespace()) else { continue };
        let line = first_line + i as u64;
        let not_object = |column: u64, message: String| RecordError::new(file, line, Some(column), message, false);
        let error = match builder.push_json(bytes, permissive) {
            Ok(JsonPush::Row(nulled)) => {
                out.read += 1;
                for e in nulled {
                    out.nulled += 1;
                    out.reject(file, line, None, e.to_string(), "nulled");
                }
                continue;
            }
            Ok(JsonPush::NotObject(kind)) => not_object(first as u64 + 1, format!("not a JSON object: found {kind}")),
            Err(PushJsonError::Syntax(e)) => {
                let message = e.to_string();
                let message = message.rfind(" at line ").map_or(message.clone(), |at| message[..at].to_string());
                not_object(e.column().max(1) as u64, format!("not a JSON object: {message}"))
            }
            Err(PushJsonError::Value(e)) => {
                return Err(IngestError::Row { file: file.to_string(), line, column: None, message: e.to_string() });
            }
        };
        if !permissive {
            return Err(IngestError::Record(error));
        }
        out.rejected += 1;
        out.reject(file, line, error.column, error.message, "skipped");
    }
    Ok(())
}

/// Reads a sample of every file and adds each property they have that the schema lacks, typed
/// by the values seen (or by a `cast` rule).
fn infer(env: &Environment, files: &[SourceFile], options: &[SourceOptions], rules: &RuleSet) -> Result<Vec<Property>> {
    let schema = env.schema()?;
    let mut seen: BTreeMap<String, (usize, Guess)> = BTreeMap::new();
    for (file, options) in files.iter().zip(options) {
        let records = read_source(file.open()?, options, &file.name)?;
        for item in records.take(INFER_SAMPLE) {
            let Ok(source) = item else { continue };
            let Ok(Some(record)) = rules.apply(source.record) else { continue };
            for (name, value) in record {
                if schema.get(&name).is_some() {
                    continue;
                }
                let order = seen.len();
                let entry = seen.entry(name).or_insert((order, Guess::default()));
                entry.1.observe(&value);
            }
        }
    }
    let mut found: Vec<(usize, Property)> = seen
        .into_iter()
        .filter_map(|(name, (order, guess))| {
            let cast = rules.casts().iter().find(|(p, _)| *p == name).map(|(_, t)| *t);
            let (ty, multi) = match (cast, guess.finish()) {
                (Some(t), Some((_, multi))) => (t, multi),
                (Some(t), None) => (t, false),
                (None, Some(g)) => g,
                (None, None) => return None,
            };
            if m1_engine::schema::validate_name(&name).is_err() {
                return None;
            }
            Some((order, Property { multi, ..Property::new(&name, ty) }))
        })
        .collect();
    found.sort_by_key(|(order, _)| *order);
    let properties: Vec<Property> = found.into_iter().map(|(_, p)| p).collect();
    if !properties.is_empty() {
        env.add_properties(&properties)?;
    }
    Ok(properties)
}

/// The narrowest type every non-null value seen fits.
#[derive(Default)]
struct Guess {
    any: bool,
    multi: bool,
    int: bool,
    double: bool,
    boolean: bool,
    date: bool,
    other: bool,
}

impl Guess {
    fn observe(&mut self, v: &Value) {
        match v {
            Value::Null => {}
            Value::Array(items) => {
                self.multi = true;
                for i in items {
                    self.observe(i);
                }
            }
            Value::Bool(_) => self.mark(|g| g.boolean = true),
            Value::Number(n) if n.is_i64() || n.is_u64() => self.mark(|g| g.int = true),
            Value::Number(_) => self.mark(|g| g.double = true),
            Value::String(s) if s.trim().is_empty() => {}
            Value::String(s) => {
                let s = s.trim();
                if s.parse::<i64>().is_ok() {
                    self.mark(|g| g.int = true)
                } else if s.parse::<f64>().is_ok() {
                    self.mark(|g| g.double = true)
                } else if s.eq_ignore_ascii_case("true") || s.eq_ignore_ascii_case("false") {
                    self.mark(|g| g.boolean = true)
                } else if s.len() >= 10 && s.as_bytes()[4] == b'-' && m1_engine::values::parse_date(s).is_some() {
                    self.mark(|g| g.date = true)
                } else {
                    self.mark(|g| g.other = true)
                }
            }
            Value::Object(_) => self.mark(|g| g.other = true),
        }
    }

    fn mark(&mut self, f: impl FnOnce(&mut Guess)) {
        self.any = true;
        f(self);
    }

    fn finish(&self) -> Option<(PropertyType, bool)> {
        if !self.any {
            return None;
        }
        let kinds = [self.int || self.double, self.boolean, self.date, self.other].iter().filter(|k| **k).count();
        let ty = if kinds > 1 || self.other {
            PropertyType::String
        } else if self.double {
            PropertyType::Double
        } else if self.int {
            PropertyType::Integer
        } else if self.boolean {
            PropertyType::Boolean
        } else {
            PropertyType::Date
        };
        Some((ty, self.multi))
    }
}

/// Publishes records already in memory (e.g. from `/write`) through `rules_json`, atomically,
/// on this thread. `source` names them in errors and the report.
pub fn publish_records(
    env: &Environment,
    records: Vec<m1_engine::record::Record>,
    rules_json: Option<&str>,
    permissive: bool,
    source: &str,
) -> Result<PublishReport> {
    let started = Instant::now();
    let compile = filter_compiler(env.schema()?);
    let rules = match rules_json {
        Some(json) => RuleSet::parse(json, &compile)?,
        None => RuleSet::empty(),
    };
    let mut appender = env.appender()?;
    let mut builder = RowsBuilder::new(appender.schema().properties());
    let file: Arc<str> = Arc::from(source);
    let mut totals = Totals::default();
    let mut line = 0u64;
    let mut items = records.into_iter().peekable();
    while items.peek().is_some() {
        let chunk_items = items
            .by_ref()
            .take(CHUNK_RECORDS)
            .map(|record| {
                line += 1;
                Ok(SourceRecord { line, record: m1_engine::record::flatten(record) })
            })
            .collect();
        let chunk = RawChunk { seq: 0, file: file.clone(), delimited: false, items: Items::Parsed(chunk_items) };
        totals.add(type_chunk(chunk, &mut builder, &rules, permissive)?, &mut appender)?;
    }
    totals.finish(appender, source, 0, 0, Vec::new(), started)
}

#[cfg(test)]
mod tests {
    use super::*;
    use m1_engine::EnvConfig;
    use std::io::Write;

    fn env(dir: &tempfile::TempDir) -> Environment {
        let env = Environment::create(dir.path().join("env").to_str().unwrap(), EnvConfig::default()).unwrap();
        env.add_properties(&[Property::new("n", PropertyType::Integer), Property::new("s", PropertyType::String)])
            .unwrap();
        env
    }

    /// jsonl is cut into chunks the workers parse: line numbers, long lines and the row cap must
    /// come out as if read line by line.
    #[test]
    fn jsonl_chunks_keep_lines_long_records_and_caps() {
        let dir = tempfile::tempdir().unwrap();
        let env = env(&dir);
        let path = dir.path().join("big.jsonl");
        let mut f = std::fs::File::create(&path).unwrap();
        let long = "x".repeat(3 * TEXT_CHUNK_BYTES / 2);
        for i in 0..60_000u64 {
            match i {
                10 => writeln!(f, "{{\"n\": {i}, \"s\": \"{long}\"}}").unwrap(),
                20 => writeln!(f).unwrap(),
                _ => writeln!(f, "{{\"n\": {i}, \"s\": \"row {i}\"}}").unwrap(),
            }
        }
        writeln!(f, "{{\"n\": \"bad\"}}").unwrap();
        drop(f);
        let err = publish(&env, &PublishRequest::new(path.display().to_string()), &|_| {}).unwrap_err().to_string();
        assert!(err.ends_with("big.jsonl:60001: property 'n': value \"bad\" is not a valid integer"), "{err}");
        assert_eq!(env.snapshot().segments.len(), 0);

        let mut req = PublishRequest::new(path.display().to_string());
        req.rows = Some(59_990);
        let report = publish(&env, &req, &|_| {}).unwrap();
        assert_eq!((report.rows_read, report.rows_published), (59_990, 59_990));
        let first = report.first_key.unwrap();
        let batch = m1_query::get(&env, &[first + 10, first + 20, first + 59_989], None).unwrap();
        let recs = m1_query::encode::records(&batch);
        assert_eq!(recs[0]["s"].as_str().map(str::len), Some(long.len()));
        assert_eq!(recs[1]["n"], 21, "the blank line 21 is skipped, not counted");
        assert_eq!(recs[2]["n"], 59_990);
    }
}

/// csv/txt cut into chunks of whole records reads exactly as the whole file does: the same
/// records, fields, line numbers and errors, wherever the chunks end (quoted line breaks,
/// CRLF, blank lines, a quote left open at the end).
#[cfg(test)]
mod delimited_chunks {
    use super::*;
    use crate::format::{FormatOptions, open_records};
    use proptest::prelude::*;

    fn render(item: std::result::Result<SourceRecord, RecordError>) -> String {
        match item {
            Ok(r) => format!("L{} {}", r.line, Value::Object(r.record)),
            Err(e) => format!("E {e}{}", if e.fatal { " (fatal)" } else { "" }),
        }
    }

    fn whole(text: &[u8], format: InputFormat) -> Vec<String> {
        let records = open_records(Box::new(std::io::Cursor::new(text.to_vec())), &FormatOptions::new(format), "d");
        match records {
            Ok(records) => records.map(render).collect(),
            Err(e) => vec![format!("open: {e}")],
        }
    }

    fn chunked(text: &[u8], format: InputFormat, chunk_bytes: usize) -> Vec<String> {
        let options = SourceOptions { format: FormatOptions::new(format), ..SourceOptions::default() };
        let mut out = Vec::new();
        let input = Box::new(std::io::Cursor::new(text.to_vec()));
        let read = read_delimited(input, &options, Compression::None, "d", chunk_bytes, &mut |text, line, header| {
            let rows = crate::format::csv::chunk_rows(text, line, header.delimiter, &header.names, "d");
            out.extend(rows.map(render));
            true
        });
        if let Err(e) = read {
            out.push(format!("open: {e}"));
        }
        // The whole-file reader stops at a fatal error.
        if let Some(i) = out.iter().position(|l| l.ends_with("(fatal)")) {
            out.truncate(i + 1);
        }
        out
    }

    fn text() -> impl Strategy<Value = Vec<u8>> {
        let piece = prop_oneof![
            4 => Just(&b"a"[..]), 2 => Just(&b"bc"[..]), 3 => Just(&b","[..]), 1 => Just(&b"\t"[..]),
            2 => Just(&b"\""[..]), 1 => Just(&b"\"\""[..]), 2 => Just(&b"\n"[..]), 1 => Just(&b"\r\n"[..]),
            1 => Just(&b"\r"[..]), 1 => Just(&b" "[..]), 1 => Just("é".as_bytes()),
        ];
        prop::collection::vec(piece, 0..120).prop_map(|p| p.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 600, ..ProptestConfig::default() })]
        #[test]
        fn chunks_read_like_the_whole_file(
            header in prop_oneof![Just(&b"a,b,c\n"[..]), Just(&b"a,\"b\nx\",c\r\n"[..]), Just(&b"\n\na\tb\n"[..]), Just(&b""[..])],
            body in text(),
            chunk in 1usize..40,
            txt in any::<bool>(),
        ) {
            let input = [header, &body[..]].concat();
            let format = if txt { InputFormat::Txt } else { InputFormat::Csv };
            prop_assert_eq!(chunked(&input, format, chunk), whole(&input, format));
        }
    }

    #[test]
    fn a_bom_a_long_header_and_records_longer_than_a_chunk() {
        let input = "\u{FEFF}id,\"long\nheader\"\n1,\"x\ny\"\n\n2,z\r\n3,\"unterminated\n".as_bytes();
        for chunk in [1, 2, 3, 7, 1 << 20] {
            assert_eq!(chunked(input, InputFormat::Csv, chunk), whole(input, InputFormat::Csv), "chunks of {chunk}");
        }
        assert_eq!(whole(input, InputFormat::Csv).len(), 3);
    }
}
