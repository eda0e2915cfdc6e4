//! Lake benchmarks: key gets, key ranges and append throughput over a lake of 10 million records.
//!
//! Run with `cargo bench --workspace --bench lake`. The lake is generated once (deterministically)
//! into `target/bench-lake-10m` and reused while its version marker matches; `M1_BENCH_ROWS`
//! picks a smaller (or larger) lake, `M1_BENCH_APPEND_ROWS` the size of the append benchmark.
//! The marker includes a fingerprint of `engine/src/segment.rs` and the default settings, so a
//! layout change regenerates the lake (about a minute); `M1_BENCH_REBUILD=1` forces it.
//!
//! After the criterion groups, every question is timed call by call (warm-up first) and the
//! median and p99 are printed and written to `target/bench-results/m1-lake.json`, which
//! `benches/compare.py` reads to put DuckDB and polars figures beside m1's.
//!
//! Keys are drawn with the same splitmix64 sequence as `benches/compare.py`, so both ask the
//! very same questions.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};
use m1::{EnvConfig, Environment};

/// Keys per range question.
const RANGE_KEYS: u64 = 100_000;
/// The three properties of the narrow range.
const RANGE_PROPS: [&str; 3] = ["country", "age", "score"];

#[path = "common/dataset.rs"]
mod dataset;
use dataset::*;

// ---------------------------------------------------------------------------------------------
// Questions
// ---------------------------------------------------------------------------------------------

/// Key streams shared with compare.py.
const STREAM_GET1: u64 = 1;
const STREAM_GET100: u64 = 2;
const STREAM_RANGE: u64 = 3;

fn get1_key(n: u64, rows: u64) -> u64 {
    key(STREAM_GET1, n, rows)
}

fn get100_keys(n: u64, rows: u64) -> Vec<u64> {
    (0..100).map(|j| key(STREAM_GET100, n * 100 + j, rows)).collect()
}

fn range_start(n: u64, rows: u64) -> u64 {
    key(STREAM_RANGE, n, rows.saturating_sub(RANGE_KEYS).max(1))
}

fn range_props() -> Vec<String> {
    RANGE_PROPS.iter().map(|s| s.to_string()).collect()
}

fn get(env: &Environment, keys: &[u64]) -> usize {
    let b = env.get(keys, None).expect("get");
    assert_eq!(b.num_rows(), keys.len());
    b.num_rows()
}

/// The same get through parquet-rs's own reader with a row selection (m1's read path before the
/// direct page reads): the baseline the direct path is measured against in the same run.
fn get_parquet_rs(env: &Environment, keys: &[u64]) -> usize {
    let e = env.engine();
    let state = e.snapshot();
    let schema = std::sync::Arc::new(arrow::datatypes::Schema::new(
        state.schema.all().iter().map(m1::Property::field).collect::<Vec<_>>(),
    ));
    let mut by_segment: std::collections::BTreeMap<usize, Vec<u64>> = Default::default();
    for &k in keys {
        let s = state.segment_of(k).expect("a key of the lake");
        by_segment.entry(s).or_default().push(k - state.segments[s].start);
    }
    let mut rows = 0;
    for (s, mut offsets) in by_segment {
        offsets.sort_unstable();
        offsets.dedup();
        let info = &state.segments[s];
        let open = e.segment_cache().get(e.storage(), info).expect("segment");
        let selection = m1_engine::segment::select_rows(&offsets, info.rows());
        for b in open.read(selection, &schema, offsets.len()).expect("read") {
            rows += black_box(b.expect("batch")).num_rows();
        }
    }
    assert_eq!(rows, keys.len());
    rows
}

fn range(env: &Environment, start: u64, props: Option<&[String]>) -> usize {
    let mut rows = 0;
    for b in env.range(start, start + RANGE_KEYS, props).expect("range") {
        rows += black_box(b.expect("range batch")).num_rows();
    }
    rows
}

// ---------------------------------------------------------------------------------------------
// Criterion groups
// ---------------------------------------------------------------------------------------------

fn bench_reads(c: &mut Criterion, env: &Environment, rows: u64) {
    let mut g = c.benchmark_group("get");
    g.measurement_time(Duration::from_secs(8));
    let mut n = 0;
    g.bench_function("1_key_all_props", |b| {
        b.iter(|| {
            n += 1;
            get(env, &[get1_key(n, rows)])
        })
    });
    let mut n = 0;
    g.bench_function("1_key_all_props_parquet_rs_reader", |b| {
        b.iter(|| {
            n += 1;
            get_parquet_rs(env, &[get1_key(n, rows)])
        })
    });
    let same = get1_key(0, rows);
    g.bench_function("1_key_all_props_same_key", |b| b.iter(|| get(env, &[same])));
    g.sample_size(30);
    let mut n = 0;
    g.bench_function("100_random_keys_all_props", |b| {
        b.iter(|| {
            n += 1;
            get(env, &get100_keys(n, rows))
        })
    });
    let mut n = 0;
    g.bench_function("100_random_keys_all_props_parquet_rs_reader", |b| {
        b.iter(|| {
            n += 1;
            get_parquet_rs(env, &get100_keys(n, rows))
        })
    });
    g.finish();

    let mut g = c.benchmark_group("range_100k");
    g.sample_size(20).measurement_time(Duration::from_secs(15)).throughput(Throughput::Elements(RANGE_KEYS));
    let props = range_props();
    let mut n = 0;
    g.bench_function("3_props", |b| {
        b.iter(|| {
            n += 1;
            range(env, range_start(n, rows), Some(&props))
        })
    });
    let mut n = 0;
    g.bench_function("all_props", |b| {
        b.iter(|| {
            n += 1;
            range(env, range_start(n, rows), None)
        })
    });
    g.finish();
}

/// The batches one append benchmark iteration writes, and their Arrow size.
fn append_input(rows: u64) -> (Vec<RecordBatch>, u64) {
    let schema = batch_schema();
    let mut batches = Vec::new();
    let mut at = 0;
    while at < rows {
        let n = (rows - at).min(GEN_BATCH as u64) as usize;
        batches.push(generate(&schema, at, n));
        at += n as u64;
    }
    let bytes = batches.iter().map(arrow_bytes).sum();
    (batches, bytes)
}

/// Appends `batches` into a fresh environment under `scratch`; returns the time of the append
/// alone and the Parquet bytes written.
fn append_once(scratch: &Path, batches: &[RecordBatch]) -> (Duration, u64) {
    let dir = tempfile::tempdir_in(scratch).expect("scratch dir");
    let env = Environment::create_with(dir.path().to_str().unwrap(), EnvConfig::default()).expect("create");
    env.add_properties(&properties()).expect("schema");
    let t = Instant::now();
    let report = env.append_batches(batches.iter().cloned()).expect("append");
    let took = t.elapsed();
    let size = env.engine().snapshot().segments.iter().map(|s| s.size).sum();
    assert_eq!(report.rows, batches.iter().map(|b| b.num_rows() as u64).sum::<u64>());
    (took, size)
}

fn scratch_dir() -> PathBuf {
    let d = target_dir().join("bench-scratch");
    std::fs::create_dir_all(&d).expect("scratch dir");
    d
}

fn bench_append(c: &mut Criterion, batches: &[RecordBatch], arrow_size: u64) {
    let rows: u64 = batches.iter().map(|b| b.num_rows() as u64).sum();
    let scratch = scratch_dir();
    let mut g = c.benchmark_group("append");
    g.sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(30))
        .throughput(Throughput::ElementsAndBytes { elements: rows, bytes: arrow_size });
    g.bench_function(BenchmarkId::new("arrow_batches", rows), |b| {
        b.iter_custom(|iters| (0..iters).map(|_| append_once(&scratch, batches).0).sum::<Duration>())
    });
    g.finish();
}

// ---------------------------------------------------------------------------------------------
// Call-by-call latencies (for p50 / p99 and the comparison with DuckDB and polars)
// ---------------------------------------------------------------------------------------------

/// Most time spent timing one question call by call.
const LATENCY_BUDGET: Duration = Duration::from_secs(30);

struct Stats {
    name: &'static str,
    reps: usize,
    p50_us: f64,
    p99_us: f64,
    mean_us: f64,
    min_us: f64,
}

/// Times `f(n)` call by call: `warmup` calls first (at most a sixth of the budget), then `reps` calls or as many as fit in
/// [`LATENCY_BUDGET`] (at least 10). Key indices are the ones compare.py uses.
fn measure(name: &'static str, warmup: usize, reps: usize, mut f: impl FnMut(u64)) -> Stats {
    let warm_until = Instant::now() + LATENCY_BUDGET / 6;
    for i in 0..warmup {
        f(1_000_000 + i as u64);
        if Instant::now() > warm_until {
            break;
        }
    }
    let deadline = Instant::now() + LATENCY_BUDGET;
    let mut t = Vec::with_capacity(reps);
    for i in 0..reps {
        let s = Instant::now();
        f(i as u64);
        t.push(s.elapsed().as_secs_f64() * 1e6);
        if t.len() >= 10 && Instant::now() > deadline {
            break;
        }
    }
    t.sort_by(f64::total_cmp);
    let pct = |p: f64| t[((t.len() as f64 * p).ceil() as usize).clamp(1, t.len()) - 1];
    Stats {
        name,
        reps: t.len(),
        p50_us: pct(0.50),
        p99_us: pct(0.99),
        mean_us: t.iter().sum::<f64>() / t.len() as f64,
        min_us: t[0],
    }
}

fn latencies(env: &Environment, rows: u64) -> Vec<Stats> {
    let props = range_props();
    vec![
        measure("get_1_all", 1_000, 20_000, |n| {
            black_box(get(env, &[get1_key(n, rows)]));
        }),
        measure("get_1_all_parquet_rs_reader", 1_000, 20_000, |n| {
            black_box(get_parquet_rs(env, &[get1_key(n, rows)]));
        }),
        measure("get_100_all_parquet_rs_reader", 100, 1_000, |n| {
            black_box(get_parquet_rs(env, &get100_keys(n, rows)));
        }),
        measure("get_1_all_same_key", 1_000, 20_000, |_| {
            black_box(get(env, &[get1_key(0, rows)]));
        }),
        measure("get_100_all", 100, 1_000, |n| {
            black_box(get(env, &get100_keys(n, rows)));
        }),
        measure("range_100k_3", 10, 200, |n| {
            black_box(range(env, range_start(n, rows), Some(&props)));
        }),
        measure("range_100k_all", 3, 40, |n| {
            black_box(range(env, range_start(n, rows), None));
        }),
    ]
}

/// Time to answer a get right after opening the environment (segment cache empty, page cache
/// warm): the cost of opening a segment (mmap, footer and page index decoding).
fn cold_open(dir: &Path) -> (f64, f64, usize) {
    let env = Environment::open(dir.to_str().unwrap()).expect("open");
    let segments = env.engine().snapshot().segments.clone();
    let mut firsts = Vec::new();
    for s in &segments {
        let k = s.start + (s.end - s.start) / 2;
        let t = Instant::now();
        black_box(get(&env, &[k]));
        firsts.push(t.elapsed().as_secs_f64() * 1e6);
    }
    // The same keys again, now with the segments cached.
    let t = Instant::now();
    for s in &segments {
        black_box(get(&env, &[s.start + (s.end - s.start) / 2]));
    }
    let again = t.elapsed().as_secs_f64() * 1e6 / segments.len().max(1) as f64;
    firsts.sort_by(f64::total_cmp);
    (firsts[firsts.len() / 2], again, segments.len())
}

/// Decoding a segment's footer with the whole page index (as m1 did before) and with the offset
/// index only (as it does now), each the median over the lake's segments: what opening costs.
fn footer_cost(env: &Environment) -> (f64, f64) {
    use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions};
    use parquet::file::metadata::PageIndexPolicy;
    let e = env.engine();
    let root = e.storage().local_root().expect("a local lake").to_path_buf();
    let mut full = Vec::new();
    let mut offsets = Vec::new();
    for s in &e.snapshot().segments {
        let bytes = bytes::Bytes::from(std::fs::read(root.join(&s.path)).expect("segment"));
        for (options, out) in [
            (ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Optional), &mut full),
            (m1_engine::segment::reader_options(), &mut offsets),
        ] {
            let t = Instant::now();
            black_box(ArrowReaderMetadata::load(&bytes, options).expect("footer"));
            out.push(t.elapsed().as_secs_f64() * 1e6);
        }
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    (median(full), median(offsets))
}

fn write_results(
    rows: u64,
    dir: &Path,
    stats: &[Stats],
    cold: (f64, f64, usize),
    append: Option<(u64, u64, u64, Duration)>,
) {
    let mut out = serde_json::Map::new();
    out.insert("engine".into(), "m1".into());
    out.insert("rows".into(), rows.into());
    out.insert("lake".into(), dir.display().to_string().into());
    for s in stats {
        out.insert(
            s.name.into(),
            serde_json::json!({"reps": s.reps, "p50_us": s.p50_us, "p99_us": s.p99_us,
                               "mean_us": s.mean_us, "min_us": s.min_us}),
        );
    }
    out.insert(
        "get_1_after_open".into(),
        serde_json::json!({"segments": cold.2, "first_get_p50_us": cold.0, "cached_get_us": cold.1}),
    );
    if let Some((rows, arrow, parquet, took)) = append {
        let secs = took.as_secs_f64();
        out.insert(
            "append".into(),
            serde_json::json!({"rows": rows, "arrow_bytes": arrow, "parquet_bytes": parquet,
                "median_s": secs, "rows_per_s": rows as f64 / secs,
                "arrow_mb_per_s": arrow as f64 / 1e6 / secs,
                "parquet_mb_per_s": parquet as f64 / 1e6 / secs}),
        );
    }
    let results = target_dir().join("bench-results");
    let _ = std::fs::create_dir_all(&results);
    let path = results.join("m1-lake.json");
    let text = serde_json::to_string_pretty(&serde_json::Value::Object(out)).unwrap();
    std::fs::write(&path, &text).expect("write results");
    println!("\nm1 call-by-call latencies ({} records), written to {}:", rows, path.display());
    println!("{:<22} {:>8} {:>12} {:>12} {:>12}", "question", "reps", "p50 µs", "p99 µs", "mean µs");
    for s in stats {
        println!("{:<22} {:>8} {:>12.1} {:>12.1} {:>12.1}", s.name, s.reps, s.p50_us, s.p99_us, s.mean_us);
    }
    println!(
        "first get per segment right after open: p50 {:.1} µs ({} segments); same keys cached: {:.1} µs",
        cold.0, cold.2, cold.1
    );
    if let Some((rows, arrow, parquet, took)) = append {
        let secs = took.as_secs_f64();
        println!(
            "append {rows} rows (median of runs): {:.2} s = {:.0} rows/s, {:.1} MB/s Arrow in, {:.1} MB/s Parquet out",
            secs,
            rows as f64 / secs,
            arrow as f64 / 1e6 / secs,
            parquet as f64 / 1e6 / secs
        );
    }
}

fn main() {
    let rows = env_u64("M1_BENCH_ROWS", 10_000_000).max(RANGE_KEYS + 1);
    let append_rows = env_u64("M1_BENCH_APPEND_ROWS", 1_000_000).max(1);
    let mut c = Criterion::default().configure_from_args();

    let env = lake(rows);
    let dir = lake_dir(rows);
    let warmed = warm_page_cache(&dir);
    eprintln!(
        "lake: {} records, {} segments, {:.1} MB of Parquet (read once to warm the page cache)",
        rows,
        env.engine().snapshot().segments.len(),
        warmed as f64 / 1e6
    );

    bench_reads(&mut c, &env, rows);

    let (batches, arrow_size) = append_input(append_rows);
    bench_append(&mut c, &batches, arrow_size);

    // Call-by-call figures, comparable with compare.py (skipped with M1_BENCH_LATENCIES=0,
    // e.g. when profiling one criterion benchmark).
    if env_u64("M1_BENCH_LATENCIES", 1) == 0 {
        c.final_summary();
        return;
    }
    let cold = cold_open(&dir);
    let (footer_full, footer_offsets) = footer_cost(&env);
    println!(
        "decoding a segment's footer (median over segments): with the whole page index {footer_full:.1} µs, \
         with the offset index only {footer_offsets:.1} µs"
    );
    let stats = latencies(&env, rows);
    let scratch = scratch_dir();
    let mut runs: Vec<(Duration, u64)> = (0..3).map(|_| append_once(&scratch, &batches)).collect();
    runs.sort();
    let (took, parquet) = runs[runs.len() / 2];
    write_results(rows, &dir, &stats, cold, Some((append_rows, arrow_size, parquet, took)));

    c.final_summary();
}
