//! Ingest benchmarks: `/publish` of gzipped jsonl and csv, against the floor of the same work
//! (decompressing, and decompressing plus parsing every line on every core).
//!
//! Run with `cargo bench --workspace --bench ingest`. The input files are generated once,
//! deterministically, into `target/bench-ingest/` (about 100 MB uncompressed each; pick another
//! size with `M1_BENCH_INGEST_MB`) and reused while their name (size and generator version)
//! matches.
//!
//! The binary doubles as the tool `benches/ingest_compare.py` drives for the 1 GB comparison
//! with DuckDB and polars (it finds it with `cargo bench --no-run`):
//!
//! ```text
//! ingest generate jsonl|csv BYTES OUT.gz [LEVEL]   deterministic events, gzip LEVEL (default 6)
//! ingest schema jsonl|csv                          the m1 schema of those events (JSON)
//! ingest floor  jsonl|csv FILE.gz [scan|value]     decompress + parse every record, all cores
//! ingest inflate FILE.gz                           decompress only (same zlib-rs as m1)
//! ingest reader jsonl|csv FILE.gz                  m1_ingest::read_source over every record
//! ingest index-peer SCHEMA.json FILE.jsonl.gz [THREADS]  tantivy alone indexing the same
//!                                                  documents as an m1 store (the index peer)
//! ```
//! The tool commands print one JSON object (`rows`, `bytes` of uncompressed input, `seconds`).

use std::fmt::Write as _;
use std::fs::File;
use std::hint::black_box;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::mpsc::{Receiver, sync_channel};
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, SamplingMode, Throughput};
use m1::{EnvConfig, Environment, Property, PropertyType, PublishRequest};

// Same allocator as the `m1` binary, so in-process figures match it.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Bump when the generated data changes: it is part of the file names, so old files are not
/// reused.
const GEN_VERSION: u32 = 1;
/// Text handed from the reader to the parsing workers of the floor, cut after a newline.
const FLOOR_CHUNK: usize = 1 << 20;

// ---------------------------------------------------------------------------------------------
// Deterministic events
// ---------------------------------------------------------------------------------------------

/// splitmix64.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A value for row `i` and field `salt`.
fn h(i: u64, salt: u64) -> u64 {
    mix(i.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

const EVENT_TYPES: [&str; 8] =
    ["page_view", "click", "add_to_cart", "purchase", "signup", "login", "search", "session_start"];
/// City, latitude and longitude in micro-degrees.
const CITIES: [(&str, i64, i64); 16] = [
    ("Oslo", 59_913_868, 10_752_245),
    ("Zürich", 47_376_887, 8_541_694),
    ("São Paulo", -23_550_520, -46_633_308),
    ("New York", 40_712_776, -74_005_974),
    ("Tokyo", 35_676_192, 139_650_311),
    ("Lisbon", 38_722_252, -9_139_337),
    ("Nairobi", -1_292_066, 36_821_946),
    ("Toronto", 43_653_226, -79_383_184),
    ("Lima", -12_046_374, -77_042_793),
    ("Berlin", 52_520_007, 13_404_954),
    ("Paris", 48_856_614, 2_352_222),
    ("Sydney", -33_868_820, 151_209_296),
    ("Mumbai", 19_075_984, 72_877_656),
    ("Cape Town", -33_924_869, 18_424_055),
    ("Reykjavík", 64_146_582, -21_942_635),
    ("Kraków", 50_064_650, 19_944_980),
];
const SYLLABLES: [&str; 32] = [
    "ka", "lo", "mi", "ne", "ru", "ta", "vo", "zi", "bel", "cor", "dan", "fen", "gir", "hol", "jun", "kes", "lim",
    "mor", "nar", "pel", "qui", "ros", "sul", "tor", "urn", "vex", "wal", "yor", "zen", "ash", "ith", "oth",
];
const TAGS: [&str; 16] = [
    "mobile",
    "desktop",
    "promo",
    "vip",
    "new",
    "returning",
    "email",
    "search",
    "social",
    "ads",
    "eu",
    "na",
    "apac",
    "beta",
    "b2b",
    "b2c",
];
/// 2023-11-14T22:13:20Z in epoch ms.
const BASE_MS: i64 = 1_700_000_000_000;

/// Input formats.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Fmt {
    Jsonl,
    Csv,
}

impl Fmt {
    fn parse(s: &str) -> Fmt {
        match s {
            "jsonl" => Fmt::Jsonl,
            "csv" => Fmt::Csv,
            _ => panic!("format must be jsonl or csv, got {s:?}"),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Fmt::Jsonl => "jsonl",
            Fmt::Csv => "csv",
        }
    }
}

/// The fields of row `i`.
struct Event {
    id: u64,
    kind: &'static str,
    time_ms: i64,
    session: u64,
    city: &'static str,
    lat: i64,
    lon: i64,
    user: u64,
    returning: bool,
    /// Words of the text, and whether a comma follows the second word.
    text_seed: u64,
    amount_cents: Option<u64>,
    items: u64,
    tags: u64,
}

impl Event {
    fn new(i: u64) -> Event {
        let r = h(i, 1);
        let (city, lat, lon) = CITIES[(r % 16) as usize];
        let jitter = h(i, 2);
        let kind = EVENT_TYPES[((r >> 8) % 8) as usize];
        Event {
            id: h(i, 3),
            kind,
            // About one event every 20 ms with up to 10 s of jitter: roughly time-ordered.
            time_ms: BASE_MS + i as i64 * 20 + (jitter % 10_000) as i64,
            session: h(i / 16, 4) >> 24,
            city,
            lat: lat + (jitter >> 16) as i64 % 50_000 - 25_000,
            lon: lon + (jitter >> 32) as i64 % 50_000 - 25_000,
            user: h(i / 64, 5) % 10_000_000,
            returning: (r >> 12) & 1 == 1,
            text_seed: h(i, 6),
            // A fifth of the events have no amount (null in jsonl, empty in csv).
            amount_cents: (!(r >> 16).is_multiple_of(5)).then(|| h(i, 7) % 100_000),
            items: (r >> 24) % 50,
            tags: h(i, 8),
        }
    }

    /// A short text of 3 to 12 pseudo words; some have a comma (so csv quotes them).
    fn text(&self, out: &mut String) {
        let words = 3 + self.text_seed % 10;
        let mut s = self.text_seed;
        for w in 0..words {
            if w > 0 {
                out.push(' ');
            }
            s = mix(s);
            let n = if s & 3 == 0 { 3 } else { 2 };
            let mut v = s >> 2;
            for _ in 0..n {
                out.push_str(SYLLABLES[(v & 31) as usize]);
                v >>= 5;
            }
            if w == 1 && self.text_seed >> 60 == 0 {
                out.push(',');
            }
        }
    }

    /// 0 to 3 distinct tags.
    fn tag_list(&self) -> impl Iterator<Item = &'static str> {
        let n = (self.tags % 4) as usize;
        let first = (self.tags >> 8) as usize % 16;
        let step = 1 + (self.tags >> 16) as usize % 5;
        (0..n).map(move |k| TAGS[(first + k * step) % 16])
    }

    fn write_jsonl(&self, out: &mut String) {
        let _ = write!(
            out,
            r#"{{"event":{{"id":"e{:016x}","type":"{}","time":{}}},"session":{{"id":"s{:010x}"}},"geo":{{"city":"{}","lat":{},"lon":{}}},"user":{{"id":"u{:07}","returning":{}}},"text":""#,
            self.id,
            self.kind,
            self.time_ms,
            self.session,
            self.city,
            Micro(self.lat),
            Micro(self.lon),
            self.user,
            self.returning,
        );
        self.text(out);
        out.push_str(r#"","amount":"#);
        match self.amount_cents {
            Some(c) => {
                let _ = write!(out, "{}.{:02}", c / 100, c % 100);
            }
            None => out.push_str("null"),
        }
        let _ = write!(out, r#","items":{},"tags":["#, self.items);
        for (k, t) in self.tag_list().enumerate() {
            if k > 0 {
                out.push(',');
            }
            out.push('"');
            out.push_str(t);
            out.push('"');
        }
        out.push_str("]}\n");
    }

    fn write_csv(&self, out: &mut String) {
        let time = chrono::DateTime::from_timestamp_millis(self.time_ms).expect("in range");
        let _ = write!(
            out,
            "e{:016x},{},{},s{:010x},{},{},{},u{:07},{},",
            self.id,
            self.kind,
            time.format("%Y-%m-%dT%H:%M:%S%.3fZ"),
            self.session,
            self.city,
            Micro(self.lat),
            Micro(self.lon),
            self.user,
            self.returning,
        );
        let start = out.len();
        self.text(out);
        if out[start..].contains(',') {
            out.insert(start, '"');
            out.push('"');
        }
        out.push(',');
        if let Some(c) = self.amount_cents {
            let _ = write!(out, "{}.{:02}", c / 100, c % 100);
        }
        let _ = write!(out, ",{},", self.items);
        for (k, t) in self.tag_list().enumerate() {
            if k > 0 {
                out.push(';');
            }
            out.push_str(t);
        }
        out.push('\n');
    }
}

/// Micro-degrees printed as a decimal with six places.
struct Micro(i64);

impl std::fmt::Display for Micro {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let a = self.0.unsigned_abs();
        write!(f, "{sign}{}.{:06}", a / 1_000_000, a % 1_000_000)
    }
}

const CSV_HEADER: &str = "event.id,event.type,event.time,session.id,geo.city,geo.lat,geo.lon,user.id,user.returning,text,amount,items,tags\n";

/// The m1 schema of the events: the nested jsonl objects become dotted names, which are also
/// the csv header. `tags` is a list in jsonl and one `;`-separated string in csv.
fn schema(fmt: Fmt) -> Vec<Property> {
    use PropertyType::*;
    let tags = Property::new("tags", String);
    vec![
        Property::new("event.id", String),
        Property::new("event.type", String),
        Property::new("event.time", Date),
        Property::new("session.id", String),
        Property::new("geo.city", String),
        Property::new("geo.lat", Double),
        Property::new("geo.lon", Double),
        Property::new("user.id", String),
        Property::new("user.returning", Boolean),
        Property::new("text", Text),
        Property::new("amount", Double),
        Property::new("items", Integer),
        if fmt == Fmt::Jsonl { tags.multi() } else { tags },
    ]
}

/// Writes events until at least `bytes` of text (uncompressed) are out, gzipped at `level`.
/// Generation and compression run on two threads. Returns (rows, uncompressed bytes).
fn generate(fmt: Fmt, bytes: u64, out: &Path, level: u32) -> (u64, u64) {
    let tmp = out.with_extension("partial");
    let file = BufWriter::with_capacity(1 << 20, File::create(&tmp).expect("create output"));
    let mut gz = flate2::write::GzEncoder::new(file, flate2::Compression::new(level));
    let (tx, rx) = sync_channel::<String>(4);
    let producer = std::thread::spawn(move || {
        let (mut rows, mut written) = (0u64, 0u64);
        let mut block = String::with_capacity(FLOOR_CHUNK + 4096);
        if fmt == Fmt::Csv {
            block.push_str(CSV_HEADER);
        }
        while written + block.len() as u64 <= bytes {
            let e = Event::new(rows);
            match fmt {
                Fmt::Jsonl => e.write_jsonl(&mut block),
                Fmt::Csv => e.write_csv(&mut block),
            }
            rows += 1;
            if block.len() >= FLOOR_CHUNK {
                written += block.len() as u64;
                tx.send(std::mem::replace(&mut block, String::with_capacity(FLOOR_CHUNK + 4096))).unwrap();
            }
        }
        written += block.len() as u64;
        tx.send(block).unwrap();
        (rows, written)
    });
    for block in rx {
        gz.write_all(block.as_bytes()).expect("write output");
    }
    gz.finish().expect("finish gzip").flush().expect("flush output");
    let counts = producer.join().unwrap();
    std::fs::rename(&tmp, out).expect("rename output");
    counts
}

// ---------------------------------------------------------------------------------------------
// Floors
// ---------------------------------------------------------------------------------------------

/// Decompresses `path` with the decoder m1 uses and sends the text in chunks cut after a
/// newline. Returns the uncompressed size.
fn read_chunks(path: &Path, tx: std::sync::mpsc::SyncSender<Vec<u8>>) -> u64 {
    let file = File::open(path).expect("open input");
    let mut gz = flate2::bufread::MultiGzDecoder::new(BufReader::with_capacity(1 << 16, file));
    let (mut total, mut carry) = (0u64, Vec::new());
    loop {
        let mut buf = std::mem::take(&mut carry);
        let start = buf.len();
        buf.resize(start + FLOOR_CHUNK, 0);
        let mut n = 0;
        while start + n < buf.len() {
            match gz.read(&mut buf[start + n..]).expect("decompress") {
                0 => break,
                k => n += k,
            }
        }
        total += n as u64;
        buf.truncate(start + n);
        if n == 0 {
            if !buf.is_empty() {
                tx.send(buf).unwrap();
            }
            return total;
        }
        if let Some(cut) = buf.iter().rposition(|b| *b == b'\n') {
            carry = buf.split_off(cut + 1);
            tx.send(buf).unwrap();
        } else {
            carry = buf;
        }
    }
}

/// Splits one csv chunk into fields (RFC 4180 quoting, unescaped into a scratch buffer, as a
/// csv reader does); returns the records. Records never span chunks in the generated files.
fn tokenize_csv(text: &[u8], scratch: &mut Vec<u8>, fields: &mut Vec<usize>) -> u64 {
    let (mut rows, mut i) = (0u64, 0usize);
    while i < text.len() {
        scratch.clear();
        fields.clear();
        loop {
            if text.get(i) == Some(&b'"') {
                i += 1;
                while i < text.len() {
                    if text[i] == b'"' {
                        if text.get(i + 1) == Some(&b'"') {
                            scratch.push(b'"');
                            i += 2;
                            continue;
                        }
                        i += 1;
                        break;
                    }
                    scratch.push(text[i]);
                    i += 1;
                }
            }
            while i < text.len() && text[i] != b',' && text[i] != b'\n' {
                scratch.push(text[i]);
                i += 1;
            }
            fields.push(scratch.len());
            match text.get(i) {
                Some(b',') => i += 1,
                _ => {
                    i += 1;
                    break;
                }
            }
        }
        rows += 1;
        black_box((&scratch, &fields));
    }
    rows
}

/// How far the floor parses jsonl.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Depth {
    /// Every line scanned and validated by serde_json, no value built
    /// (`serde::de::IgnoredAny`): the least any JSON reader must do.
    Scan,
    /// Every line parsed into a `serde_json::Value` (maps, strings and numbers built).
    Value,
}

/// The floor of a publish: decompress on one thread (gzip cannot be split), parse every record
/// on every core (jsonl: see [`Depth`]; csv: RFC 4180 fields unescaped). Returns (records,
/// uncompressed bytes).
fn floor(fmt: Fmt, depth: Depth, path: &Path) -> (u64, u64) {
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let (tx, rx) = sync_channel::<Vec<u8>>(workers * 2);
    let rx = Mutex::new(rx);
    std::thread::scope(|s| {
        let reader = s.spawn(|| read_chunks(path, tx));
        let handles: Vec<_> = (0..workers).map(|_| s.spawn(|| parse_worker(fmt, depth, &rx))).collect();
        let mut rows: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
        if fmt == Fmt::Csv {
            rows -= 1; // the header
        }
        (rows, reader.join().unwrap())
    })
}

fn parse_worker(fmt: Fmt, depth: Depth, rx: &Mutex<Receiver<Vec<u8>>>) -> u64 {
    let (mut rows, mut scratch, mut fields) = (0u64, Vec::new(), Vec::new());
    loop {
        let Ok(chunk) = rx.lock().unwrap().recv() else { return rows };
        match fmt {
            Fmt::Jsonl => {
                for line in chunk.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                    if depth == Depth::Scan {
                        let v: serde::de::IgnoredAny = serde_json::from_slice(line).expect("valid json");
                        black_box(v);
                    } else {
                        let v: serde_json::Value = serde_json::from_slice(line).expect("valid json");
                        black_box(v);
                    }
                    rows += 1;
                }
            }
            Fmt::Csv => rows += tokenize_csv(&chunk, &mut scratch, &mut fields),
        }
    }
}

/// Decompression alone, with the decoder m1 uses; returns (lines, uncompressed bytes).
fn inflate(path: &Path) -> (u64, u64) {
    let file = File::open(path).expect("open input");
    let mut gz = flate2::bufread::MultiGzDecoder::new(BufReader::with_capacity(1 << 16, file));
    let mut buf = vec![0u8; 1 << 20];
    let (mut lines, mut total) = (0u64, 0u64);
    loop {
        let n = gz.read(&mut buf).expect("decompress");
        if n == 0 {
            return (lines, total);
        }
        total += n as u64;
        lines += buf[..n].iter().filter(|b| **b == b'\n').count() as u64;
    }
}

/// m1's own reader on one thread: decompression and the format parser into flat records.
fn reader(fmt: Fmt, path: &Path) -> (u64, u64) {
    let name = path.display().to_string();
    let mut options = m1_ingest::FormatOptions::new(match fmt {
        Fmt::Jsonl => m1_ingest::InputFormat::Jsonl,
        Fmt::Csv => m1_ingest::InputFormat::Csv,
    });
    options.headers = true;
    let options = m1_ingest::SourceOptions {
        compression: Some(m1_ingest::Compression::Gz),
        encoding: None,
        zip_entries: None,
        format: options,
        utf8: Default::default(),
    };
    let file = Box::new(File::open(path).expect("open input"));
    let mut rows = 0u64;
    for r in m1_ingest::read_source(file, &options, &name).expect("open source") {
        black_box(r.expect("valid record"));
        rows += 1;
    }
    (rows, 0)
}

// ---------------------------------------------------------------------------------------------
// Publishing
// ---------------------------------------------------------------------------------------------

/// A fresh environment (default settings, as `m1 ops env/create`) with the events' schema.
fn fresh_env(fmt: Fmt) -> (tempfile::TempDir, Environment) {
    let dir = tempfile::Builder::new().prefix("m1-ingest-").tempdir_in(scratch_root()).expect("temp dir");
    let env = Environment::create_with(dir.path().join("env").to_str().unwrap(), EnvConfig::default()).unwrap();
    env.add_properties(&schema(fmt)).unwrap();
    (dir, env)
}

fn publish(env: &Environment, path: &Path) -> m1::PublishReport {
    env.publish(&PublishRequest::new(path.display().to_string())).expect("publish")
}

fn bench_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target").join("bench-ingest")
}

fn scratch_root() -> PathBuf {
    let dir = bench_root().join("scratch");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The generated input of `fmt` with `bytes` of text, made if missing; with its row count
/// and exact uncompressed size (kept in a side file).
fn input(fmt: Fmt, bytes: u64) -> (PathBuf, u64, u64) {
    let root = bench_root();
    std::fs::create_dir_all(&root).unwrap();
    let path = root.join(format!("events-v{GEN_VERSION}-{bytes}.{}.gz", fmt.name()));
    let meta = path.with_extension("gz.meta");
    if let (true, Ok(text)) = (path.exists(), std::fs::read_to_string(&meta)) {
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        return (path, v["rows"].as_u64().unwrap(), v["bytes"].as_u64().unwrap());
    }
    eprintln!("generating {} ...", path.display());
    let (rows, written) = generate(fmt, bytes, &path, 6);
    std::fs::write(&meta, serde_json::json!({"rows": rows, "bytes": written}).to_string()).unwrap();
    (path, rows, written)
}

fn bench(c: &mut Criterion, fmt: Fmt, mb: u64) {
    let (path, rows, bytes) = input(fmt, mb * 1_000_000);
    let gz = std::fs::metadata(&path).unwrap().len();
    eprintln!(
        "{}: {rows} rows, {:.1} MB uncompressed, {:.1} MB gzipped",
        path.display(),
        bytes as f64 / 1e6,
        gz as f64 / 1e6
    );
    let mut g = c.benchmark_group(format!("ingest_{}_gz_{mb}MB", fmt.name()));
    g.sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(8))
        .throughput(Throughput::BytesDecimal(bytes));
    g.bench_function("publish", |b| {
        b.iter_batched(
            || fresh_env(fmt),
            |(dir, env)| {
                let report = publish(&env, &path);
                assert_eq!(report.rows_published, rows);
                (dir, env, report)
            },
            BatchSize::PerIteration,
        )
    });
    g.bench_function("floor_decompress_scan_all_cores", |b| {
        b.iter(|| assert_eq!(floor(fmt, Depth::Scan, &path).0, rows))
    });
    if fmt == Fmt::Jsonl {
        g.bench_function("floor_decompress_value_all_cores", |b| {
            b.iter(|| assert_eq!(floor(fmt, Depth::Value, &path).0, rows))
        });
    }
    g.bench_function("floor_decompress", |b| b.iter(|| black_box(inflate(&path))));
    g.bench_function("m1_reader_one_thread", |b| b.iter(|| assert_eq!(reader(fmt, &path).0, rows)));
    g.finish();
}

/// The peer of m1's index phase: tantivy alone, the way its own example indexer (tantivy-cli's
/// `index`) works, on the same documents and with the same field options as an m1 store
/// (`schema` is m1's property list): every line of a jsonl.gz decompressed, parsed by serde_json
/// and added as a document, on `threads` indexing threads, then one commit. Prints the total
/// time and, from a second run over documents already built in memory, the indexing alone.
fn index_peer(schema: &Path, file: &Path, threads: usize) {
    use m1_query::store::fields::{register_tokenizers, tantivy_schema};
    use tantivy::TantivyDocument;
    let props: Vec<Property> = serde_json::from_slice(&std::fs::read(schema).unwrap()).unwrap();
    let all: Vec<Property> = m1::Schema::builtins().into_iter().chain(props).collect();
    let tschema = tantivy_schema(&all);
    let fields: Vec<(tantivy::schema::Field, &Property)> =
        all.iter().map(|p| (tschema.get_field(&p.name).unwrap(), p)).collect();
    let doc_of = |line: &str, key: u64| -> TantivyDocument {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let mut doc = TantivyDocument::new();
        for (f, p) in &fields {
            let one = |doc: &mut TantivyDocument, x: &serde_json::Value| match p.ty {
                PropertyType::String | PropertyType::Text => {
                    if let Some(s) = x.as_str() {
                        doc.add_text(*f, s)
                    }
                }
                PropertyType::Integer => {
                    if let Some(i) = x.as_i64() {
                        doc.add_i64(*f, i)
                    }
                }
                PropertyType::Double => {
                    if let Some(d) = x.as_f64() {
                        doc.add_f64(*f, d)
                    }
                }
                PropertyType::Date => match x {
                    serde_json::Value::String(s) => {
                        if let Some(ms) = m1_engine::values::parse_date(s) {
                            doc.add_i64(*f, ms)
                        }
                    }
                    other => {
                        if let Some(ms) = other.as_i64() {
                            doc.add_i64(*f, ms)
                        }
                    }
                },
                PropertyType::Boolean => {
                    if let Some(b) = x.as_bool() {
                        doc.add_bool(*f, b)
                    }
                }
            };
            match p.name.as_str() {
                "_m1key" => doc.add_i64(*f, key as i64),
                "_m1rand" => doc.add_f64(*f, (key as f64 * 0.618_033_988_7).fract()),
                name => match v.pointer(&format!("/{}", name.replace('.', "/"))) {
                    Some(serde_json::Value::Array(xs)) => xs.iter().for_each(|x| one(&mut doc, x)),
                    Some(x) => one(&mut doc, x),
                    None => {}
                },
            }
        }
        doc
    };
    let index_into = |docs: &mut dyn Iterator<Item = TantivyDocument>| -> (u64, f64) {
        let dir = tempfile::tempdir().unwrap();
        let index = tantivy::Index::create_in_dir(dir.path(), tschema.clone()).unwrap();
        register_tokenizers(&index);
        let t = Instant::now();
        let mut writer: tantivy::IndexWriter<TantivyDocument> =
            index.writer_with_num_threads(threads, threads * (64 << 20)).unwrap();
        let mut n = 0u64;
        for d in docs {
            writer.add_document(d).unwrap();
            n += 1;
        }
        writer.commit().unwrap();
        (n, t.elapsed().as_secs_f64())
    };
    let lines = || {
        let text = BufReader::new(flate2::read::MultiGzDecoder::new(File::open(file).unwrap()));
        std::io::BufRead::lines(text).map(Result::unwrap).filter(|l| !l.trim().is_empty())
    };
    let (rows, total) = index_into(&mut lines().enumerate().map(|(i, l)| doc_of(&l, i as u64)));
    let built: Vec<TantivyDocument> = lines().enumerate().map(|(i, l)| doc_of(&l, i as u64)).collect();
    let (_, index_only) = index_into(&mut built.into_iter());
    println!(
        "{}",
        serde_json::json!({"rows": rows, "seconds": total, "index_only_seconds": index_only, "threads": threads})
    );
}

/// Runs one tool command (see the module documentation) and prints its JSON result.
fn tool(args: &[String]) {
    let arg = |i: usize| args.get(i).map(String::as_str).unwrap_or_else(|| panic!("missing argument {i}"));
    let timed = |f: &dyn Fn() -> (u64, u64)| {
        let t = Instant::now();
        let (rows, bytes) = f();
        println!("{}", serde_json::json!({"rows": rows, "bytes": bytes, "seconds": t.elapsed().as_secs_f64()}));
    };
    match arg(0) {
        "generate" => {
            let level = args.get(4).map_or(6, |l| l.parse().expect("level"));
            let bytes = arg(2).parse::<f64>().expect("bytes") as u64;
            timed(&|| generate(Fmt::parse(arg(1)), bytes, Path::new(arg(3)), level));
        }
        "schema" => println!("{}", serde_json::to_string_pretty(&schema(Fmt::parse(arg(1)))).unwrap()),
        "floor" => {
            let depth = match args.get(3).map(String::as_str) {
                None | Some("scan") => Depth::Scan,
                Some("value") => Depth::Value,
                Some(d) => panic!("depth must be scan or value, got {d:?}"),
            };
            timed(&|| floor(Fmt::parse(arg(1)), depth, Path::new(arg(2))))
        }
        "inflate" => timed(&|| inflate(Path::new(arg(1)))),
        "reader" => timed(&|| reader(Fmt::parse(arg(1)), Path::new(arg(2)))),
        "index-peer" => {
            index_peer(Path::new(arg(1)), Path::new(arg(2)), args.get(3).map_or(2, |t| t.parse().expect("threads")))
        }
        other => panic!("unknown command {other:?}"),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args
        .first()
        .is_some_and(|a| ["generate", "schema", "floor", "inflate", "reader", "index-peer"].contains(&a.as_str()))
    {
        tool(&args);
        return;
    }
    let mb = std::env::var("M1_BENCH_INGEST_MB").ok().and_then(|v| v.parse().ok()).unwrap_or(100u64);
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c, Fmt::Jsonl, mb);
    bench(&mut c, Fmt::Csv, mb);
    c.final_summary();
}
