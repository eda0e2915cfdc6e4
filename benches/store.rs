//! Data-store benchmarks: `/query` over the 10-million-record lake of the lake benchmark, and
//! indexing throughput.
//!
//! Run with `cargo bench --workspace --bench store`, then `.venv/bin/python benches/store_compare.py`
//! for DuckDB's figures on the same questions over the same Parquet files. The lake is shared
//! with `benches/lake.rs` (built on first use); the bench creates a store `bench` (2 shards)
//! over it once, timing the backfill, and reuses it afterwards.
//!
//! Indexing throughput per core is measured on scratch lakes of `M1_BENCH_INDEX_ROWS` records
//! (default 500,000) with one indexing thread: once with one full-text property (`description`)
//! and once with none. Input size is the records' JSON (JSON lines, as published).
//!
//! Medians and p99 are printed and written to `target/bench-results/m1-store.json`.

#[path = "common/dataset.rs"]
mod dataset;

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::Criterion;
use dataset::*;
use m1::{EnvConfig, Environment, QueryRequest, StoreDef, StoreKind};
use serde_json::{Value, json};

const STORE: &str = "bench";

/// The questions: name, query, sort, rows, facets.
fn questions(word: &str) -> Vec<(&'static str, QueryRequest)> {
    let req = |q: &str, sort: Option<&str>, rows: usize, facets: Option<Value>| {
        let mut r = QueryRequest::new(STORE, q);
        r.sort = sort.map(str::to_string);
        r.rows = rows;
        r.facets = facets;
        r
    };
    vec![
        ("term_count", req("country:NO", None, 0, None)),
        ("bool3_count", req("country:US AND status:active AND age:[30 TO 40]", None, 0, None)),
        ("range_count", req("visits:[1000 TO 50000]", None, 0, None)),
        ("top100_by_date", req("status:active", Some("created desc"), 100, None)),
        (
            "facet_terms_1000",
            req("*:*", None, 0, Some(json!({"v": {"type": "terms", "field": "visits", "limit": 1000}}))),
        ),
        (
            "facet_terms_country",
            req("*:*", None, 0, Some(json!({"c": {"type": "terms", "field": "country", "limit": 10}}))),
        ),
        ("fulltext_top10", req(&format!("description:{word}"), Some("score desc"), 10, None)),
    ]
}

/// Runs a question to the end, items included (written as JSON to a sink).
fn ask(env: &Environment, req: &QueryRequest) -> u64 {
    let answer = env.query(req).expect("query");
    answer.write_json(env.engine(), &mut std::io::sink()).expect("items");
    black_box(answer.count)
}

fn median_p99(mut f: impl FnMut(), budget: Duration) -> (f64, f64, usize) {
    for _ in 0..3 {
        f();
    }
    let deadline = Instant::now() + budget;
    let mut t = Vec::new();
    while t.len() < 10 || (Instant::now() < deadline && t.len() < 1000) {
        let s = Instant::now();
        f();
        t.push(s.elapsed().as_secs_f64() * 1e3);
    }
    t.sort_by(f64::total_cmp);
    let pct = |p: f64| t[((t.len() as f64 * p).ceil() as usize).clamp(1, t.len()) - 1];
    (pct(0.5), pct(0.99), t.len())
}

/// Builds a scratch lake of `rows` records and times indexing it with one thread.
fn index_throughput(rows: u64, text: bool) -> Value {
    let dir = target_dir().join(format!("bench-store-index-{}", if text { "text" } else { "notext" }));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let config = EnvConfig { workers: 1, ..EnvConfig::default() };
    let env = Environment::create_with(dir.to_str().unwrap(), config).unwrap();
    env.add_properties(&properties_with_text(text)).unwrap();
    // No store follows this lake while it is filled: the default store is removed first.
    env.stores().destroy(env.engine(), "index").unwrap();
    let mut batches = Vec::new();
    let mut at = 0;
    while at < rows {
        let n = (rows - at).min(GEN_BATCH as u64) as usize;
        batches.push(generate(&batch_schema(), at, n));
        at += n as u64;
    }
    env.append_batches(batches).unwrap();
    // JSON size of the input, as /publish would read it (JSON lines).
    let mut json_bytes = 0u64;
    for b in env.range(0, rows, None).unwrap() {
        let b = b.unwrap();
        for r in m1::encode::records(&b) {
            json_bytes += serde_json::to_vec(&r).unwrap().len() as u64 + 1;
        }
    }
    let started = Instant::now();
    let status = env.stores().create(env.engine(), StoreDef::new("one", StoreKind::Standard, 1, 1)).unwrap();
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(status.documents, rows);
    let mbs = json_bytes as f64 / 1e6 / secs;
    eprintln!(
        "index {} rows ({}): {:.1} MB of JSON in {:.2} s = {:.1} MB/s per core, {:.0} docs/s",
        rows,
        if text { "one text property" } else { "no text property" },
        json_bytes as f64 / 1e6,
        secs,
        mbs,
        rows as f64 / secs
    );
    let _ = std::fs::remove_dir_all(&dir);
    json!({"rows": rows, "text": text, "json_mb": json_bytes as f64 / 1e6, "seconds": secs, "mb_per_s": mbs})
}

fn main() {
    let rows = env_u64("M1_BENCH_ROWS", 10_000_000);
    let index_rows = env_u64("M1_BENCH_INDEX_ROWS", 500_000);
    let env = lake(rows);
    warm_page_cache(&lake_dir(rows));

    let existing = env.stores().list(env.engine()).unwrap().into_iter().find(|s| s.def.name == STORE);
    let mut backfill = Value::Null;
    if existing.as_ref().map(|s| s.documents) != Some(rows) {
        if existing.is_some() {
            env.stores().destroy(env.engine(), STORE).unwrap();
        }
        let started = Instant::now();
        let status = env.stores().create(env.engine(), StoreDef::new(STORE, StoreKind::Standard, 2, 1)).unwrap();
        let secs = started.elapsed().as_secs_f64();
        eprintln!(
            "backfilled store '{STORE}' with {} documents in {secs:.1} s ({:.0} docs/s, {} threads), {:.0} MB",
            status.documents,
            status.documents as f64 / secs,
            env.engine().config().workers,
            status.bytes as f64 / 1e6
        );
        backfill = json!({"documents": status.documents, "seconds": secs, "bytes": status.bytes});
    }

    // A word that occurs in descriptions: the first word of record 0's.
    let first = env.get_json(&[0], Some(&["description".to_string()])).unwrap();
    let word = first[0]["description"].as_str().unwrap().split_whitespace().next().unwrap().to_lowercase();
    let qs = questions(&word);

    let mut c = Criterion::default().configure_from_args().sample_size(20).warm_up_time(Duration::from_secs(1));
    {
        let mut g = c.benchmark_group("store");
        g.measurement_time(Duration::from_secs(4));
        for (name, req) in &qs {
            g.bench_function(*name, |b| b.iter(|| ask(&env, req)));
        }
        g.finish();
    }

    let mut results = serde_json::Map::new();
    for (name, req) in &qs {
        let count = env.query(req).unwrap().count;
        let (p50, p99, reps) = median_p99(
            || {
                ask(&env, req);
            },
            Duration::from_secs(5),
        );
        eprintln!("{name:>22}: p50 {p50:9.3} ms  p99 {p99:9.3} ms  ({reps} reps, count {count})");
        results.insert(
            name.to_string(),
            json!({"q": req.q, "sort": req.sort, "rows": req.rows, "facets": req.facets, "count": count,
                   "p50_ms": p50, "p99_ms": p99, "reps": reps}),
        );
    }
    let with_text = index_throughput(index_rows, true);
    let without_text = index_throughput(index_rows, false);
    let out = json!({
        "rows": rows,
        "lake": lake_dir(rows),
        "word": word,
        "questions": results,
        "backfill": backfill,
        "index_one_text": with_text,
        "index_no_text": without_text,
    });
    let dir = target_dir().join("bench-results");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("m1-store.json"), serde_json::to_vec_pretty(&out).unwrap()).unwrap();
    c.final_summary();
}
