//! The benchmarks' data set: 10 million deterministic records with the fifteen properties of the
//! lake-foundation benchmark, generated once into `target/bench-lake-<n>` and reused.
#![allow(dead_code)]

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{
    ArrayRef, BooleanBuilder, Float64Builder, Int64Builder, ListBuilder, RecordBatch, StringBuilder,
    TimestampMicrosecondBuilder,
};
use arrow::datatypes::{Schema as ArrowSchema, SchemaRef};
use m1::{EnvConfig, Environment, Property, PropertyType};

/// Bump when the generated data or the lake layout changes, so cached lakes are rebuilt.
pub const LAKE_VERSION: &str = "m1-bench-lake v1";
/// Marker written into the lake root once it is complete.
pub const MARKER: &str = "bench-version.txt";
/// Rows per generated Arrow batch (divides the default segment size of 2^20).
pub const GEN_BATCH: usize = 1 << 16;

// ---------------------------------------------------------------------------------------------
// Deterministic data
// ---------------------------------------------------------------------------------------------

/// splitmix64: the same function `compare.py` uses to draw keys.
pub fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A value for row `i` and column `salt`.
pub fn h(i: u64, salt: u64) -> u64 {
    mix(i.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

/// The `n`-th key of stream `stream` over a lake of `rows` records.
pub fn key(stream: u64, n: u64, rows: u64) -> u64 {
    mix(stream.wrapping_mul(1_000_003).wrapping_add(n)) % rows
}

pub const COUNTRIES: [&str; 40] = [
    "US", "GB", "DE", "FR", "IT", "ES", "NL", "BE", "SE", "NO", "DK", "FI", "PL", "CZ", "AT", "CH", "IE", "PT", "GR",
    "HU", "RO", "BG", "HR", "SI", "SK", "EE", "LV", "LT", "CA", "MX", "BR", "AR", "CL", "JP", "KR", "CN", "IN", "AU",
    "NZ", "ZA",
];
pub const STATUSES: [&str; 6] = ["active", "pending", "suspended", "closed", "trial", "invited"];
pub const SYLLABLES: [&str; 32] = [
    "ka", "lo", "mi", "ne", "ru", "ta", "vo", "zi", "bel", "cor", "dan", "fen", "gir", "hol", "jun", "kes", "lim",
    "mor", "nar", "pel", "qui", "ros", "sul", "tor", "urn", "vex", "wal", "yor", "zen", "ash", "ith", "oth",
];
pub const TAGS: [&str; 24] = [
    "alpha",
    "beta",
    "gamma",
    "delta",
    "sale",
    "promo",
    "vip",
    "new",
    "returning",
    "mobile",
    "desktop",
    "email",
    "search",
    "social",
    "partner",
    "b2b",
    "b2c",
    "eu",
    "na",
    "apac",
    "latam",
    "churn-risk",
    "upsell",
    "beta-tester",
];

/// A pseudo word from a vocabulary of 32^2 + 32^3 words, chosen by `v`.
pub fn word(out: &mut String, v: u64) {
    let n = if v & 3 == 0 { 3 } else { 2 };
    let mut v = v >> 2;
    for _ in 0..n {
        out.push_str(SYLLABLES[(v & 31) as usize]);
        v >>= 5;
    }
}

/// Words `lo..=hi` long, drawn from `seed`.
pub fn sentence(out: &mut String, seed: u64, lo: u64, hi: u64) {
    let words = lo + seed % (hi - lo + 1);
    let mut s = seed;
    for w in 0..words {
        if w > 0 {
            out.push(' ');
        }
        s = mix(s);
        word(out, s);
    }
}

/// The 15 user properties: strings of low and high cardinality, texts, integers, doubles,
/// dates, booleans and one multi string.
pub fn properties() -> Vec<Property> {
    let mut p = properties_with_text(true);
    p[4].ty = PropertyType::Text;
    p
}

/// The properties with at most one full-text property: `description` is `text` if `text`, else
/// `string`; `title` is `string`.
pub fn properties_with_text(text: bool) -> Vec<Property> {
    use PropertyType::*;
    let description = if text { Text } else { String };
    vec![
        Property::new("country", String),
        Property::new("status", String),
        Property::new("user.id", String),
        Property::new("email", String),
        Property::new("title", String),
        Property::new("description", description),
        Property::new("age", Integer),
        Property::new("visits", Integer),
        Property::new("score", Double),
        Property::new("price", Double),
        Property::new("created", Date),
        Property::new("lastSeen", Date),
        Property::new("active", Boolean),
        Property::new("verified", Boolean),
        Property::new("tags", String).multi(),
    ]
}

pub fn batch_schema() -> SchemaRef {
    Arc::new(ArrowSchema::new(properties().iter().map(Property::field).collect::<Vec<_>>()))
}

/// Rows `first..first + n` of the generated data set (row `i` gets key `i` in a fresh lake).
pub fn generate(schema: &SchemaRef, first: u64, n: usize) -> RecordBatch {
    let ts = || TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
    let mut country = StringBuilder::with_capacity(n, n * 2);
    let mut status = StringBuilder::with_capacity(n, n * 7);
    let mut user = StringBuilder::with_capacity(n, n * 17);
    let mut email = StringBuilder::with_capacity(n, n * 24);
    let mut title = StringBuilder::with_capacity(n, n * 24);
    let mut description = StringBuilder::with_capacity(n, n * 150);
    let mut age = Int64Builder::with_capacity(n);
    let mut visits = Int64Builder::with_capacity(n);
    let mut score = Float64Builder::with_capacity(n);
    let mut price = Float64Builder::with_capacity(n);
    let mut created = ts();
    let mut last_seen = ts();
    let mut active = BooleanBuilder::with_capacity(n);
    let mut verified = BooleanBuilder::with_capacity(n);
    let mut tags = ListBuilder::new(StringBuilder::new());
    let mut s = String::with_capacity(512);
    const BASE_US: i64 = 1_577_836_800_000_000; // 2020-01-01T00:00:00Z
    for i in first..first + n as u64 {
        let r = h(i, 1);
        country.append_value(COUNTRIES[(r % 40) as usize]);
        status.append_value(STATUSES[((r >> 8) % 6) as usize]);
        s.clear();
        let _ = write!(s, "u{:016x}", h(i, 2));
        user.append_value(&s);
        s.clear();
        word(&mut s, h(i, 3));
        let _ = write!(s, ".{}@", (r >> 16) % 10_000);
        word(&mut s, (r >> 32) % 200);
        s.push_str(".example.com");
        email.append_value(&s);
        s.clear();
        sentence(&mut s, h(i, 4), 2, 5);
        title.append_value(&s);
        s.clear();
        sentence(&mut s, h(i, 5), 10, 40);
        description.append_value(&s);
        age.append_value(18 + ((r >> 40) % 72) as i64);
        let v = h(i, 6);
        visits.append_value((v % 1_000) as i64 * ((v >> 10) % 1_000) as i64);
        score.append_value((h(i, 7) >> 11) as f64 / (1u64 << 53) as f64 * 100.0);
        price.append_value(((h(i, 8) % 1_000_000) as f64) / 100.0);
        // Roughly monotone in the key (one record every 10 s) with an hour of jitter, in ms.
        created.append_value(BASE_US + (i as i64 * 10_000 + (r % 3_600_000) as i64) * 1_000);
        last_seen.append_value(BASE_US + ((h(i, 9) % (5 * 365 * 86_400_000)) as i64) * 1_000);
        active.append_value(r >> 60 != 0);
        if (r >> 48).is_multiple_of(20) {
            verified.append_null();
        } else {
            verified.append_value((r >> 52) & 1 == 1);
        }
        let t = h(i, 10);
        for k in 0..t % 6 {
            tags.values().append_value(TAGS[((t >> (8 + 5 * k)) % TAGS.len() as u64) as usize]);
        }
        tags.append(true);
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(country.finish()),
        Arc::new(status.finish()),
        Arc::new(user.finish()),
        Arc::new(email.finish()),
        Arc::new(title.finish()),
        Arc::new(description.finish()),
        Arc::new(age.finish()),
        Arc::new(visits.finish()),
        Arc::new(score.finish()),
        Arc::new(price.finish()),
        Arc::new(created.finish()),
        Arc::new(last_seen.finish()),
        Arc::new(active.finish()),
        Arc::new(verified.finish()),
        Arc::new(tags.finish()),
    ];
    // The list builder names its items "item" and makes them nullable, as the schema does.
    RecordBatch::try_new(schema.clone(), columns).expect("generated batch matches its schema")
}

/// Arrow bytes of a batch (buffers actually used, not capacity).
pub fn arrow_bytes(b: &RecordBatch) -> u64 {
    b.columns().iter().map(|c| c.to_data().get_slice_memory_size().unwrap_or(0) as u64).sum()
}

// ---------------------------------------------------------------------------------------------
// The lake
// ---------------------------------------------------------------------------------------------

pub fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().map(|v| v.replace('_', "")).and_then(|v| v.parse().ok()).unwrap_or(default)
}

pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
}

pub fn lake_dir(rows: u64) -> PathBuf {
    let name = if rows.is_multiple_of(1_000_000) {
        format!("bench-lake-{}m", rows / 1_000_000)
    } else {
        format!("bench-lake-{rows}")
    };
    target_dir().join(name)
}

/// The marker of a complete lake: the bench's data version, the record count, and a fingerprint
/// of the segment layout (the engine's segment writer and the default settings), so a change to
/// how segments are written rebuilds the lake instead of measuring the old layout.
pub fn marker(rows: u64) -> String {
    use std::hash::{Hash, Hasher};
    let mut layout = std::hash::DefaultHasher::new();
    include_str!("../../engine/src/segment.rs").hash(&mut layout);
    let config = EnvConfig::default();
    (config.shards, config.segment_rows, config.page_rows, config.format).hash(&mut layout);
    format!("{LAKE_VERSION} rows={rows} layout={:016x}\n", layout.finish())
}

/// Generates `rows` records into a fresh environment at `dir`: one thread builds the batches,
/// the appender encodes them.
pub fn build_lake(dir: &Path, rows: u64) -> Environment {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).expect("create lake dir");
    let env = Environment::create_with(dir.to_str().unwrap(), EnvConfig::default()).expect("create environment");
    env.add_properties(&properties()).expect("schema");
    let started = Instant::now();
    let (tx, rx) = std::sync::mpsc::sync_channel::<RecordBatch>(4);
    let producer = std::thread::spawn(move || {
        let schema = batch_schema();
        let mut at = 0;
        while at < rows {
            let n = (rows - at).min(GEN_BATCH as u64) as usize;
            if tx.send(generate(&schema, at, n)).is_err() {
                return;
            }
            at += n as u64;
        }
    });
    let report = env.append_batches(rx).expect("append");
    producer.join().expect("generator thread");
    assert_eq!(report.rows, rows);
    assert_eq!(report.first_key, Some(0));
    std::fs::write(dir.join(MARKER), marker(rows)).expect("write marker");
    eprintln!(
        "built {} records in {:.1?} ({} segments) at {}",
        rows,
        started.elapsed(),
        report.segments,
        dir.display()
    );
    env
}

/// The cached lake, rebuilt when missing, incomplete or from another version.
pub fn lake(rows: u64) -> Environment {
    let dir = lake_dir(rows);
    let current = std::fs::read_to_string(dir.join(MARKER)).ok();
    if env_u64("M1_BENCH_REBUILD", 0) == 0
        && current.as_deref() == Some(marker(rows).as_str())
        && let Ok(env) = Environment::open(dir.to_str().unwrap())
        && env.next_key().ok() == Some(rows)
    {
        eprintln!("reusing {} records at {}", rows, dir.display());
        return env;
    }
    eprintln!("generating {} records at {} ...", rows, dir.display());
    build_lake(&dir, rows)
}

/// Reads every segment once so the OS page cache holds the lake ("warm").
pub fn warm_page_cache(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.join("lake")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "parquet") {
                total += std::fs::read(&p).map(|b| b.len() as u64).unwrap_or(0);
            }
        }
    }
    total
}
