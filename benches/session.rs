//! Session store benchmarks (issue 5): durable upserts and merges in calls of 1,000 documents,
//! repeated updates of hot keys, and queries over 4.5 million documents in one shard.
//!
//! ```text
//! cargo bench --workspace --bench session --no-run
//! taskset -c 0 target/release/deps/session-<hash> --bench      # one core, as the targets ask
//! python3 benches/session_compare.py                           # SQLite on the same workload
//! ```
//!
//! Criterion measures the update calls and the queries. After the groups, one-shot figures are
//! printed and written to `target/bench-results/m1-session.json` (which `session_compare.py`
//! reads): build time and memory of the 4.5 M store, reopening time, a range query, and how
//! soon an update is visible.
//!
//! Documents are generated from splitmix64 of their number with the same formulas as
//! `session_compare.py`, so SQLite stores and is asked exactly the same things.
//! Environment: `M1_BENCH_SESSION_DOCS` (default 4,500,000) sizes the query store.

use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use m1::session::{SessionQuery, SessionStore, Sessions};
use serde_json::{Value, json};

// As the `m1` binary does: the system allocator spends a third of an update call in malloc.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// splitmix64, as in `session_compare.py`.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn uuid(a: u64) -> String {
    let (h, g) = (mix(a), mix(a ^ 0x5555_5555));
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        h >> 32,
        (h >> 16) & 0xffff,
        h & 0xffff,
        g >> 48,
        g & 0xffff_ffff_ffff
    )
}

const TYPES: [&str; 5] = ["heartbeat", "click", "view", "purchase", "login"];
const COUNTRIES: [&str; 8] = ["US", "GB", "DE", "FR", "NO", "JP", "BR", "IN"];
/// Distinct keys of the update workload.
const KEYS: u64 = 200_000;
/// Documents per update call.
const CALL: u64 = 1000;
/// Calls generated for the update workloads (cycled).
const CALLS: u64 = 60;

/// A session document of about 1 KB: key `k`, version `v`.
fn doc_1k(k: u64, v: u64) -> Value {
    let data: serde_json::Map<String, Value> =
        (0..56).map(|f| (format!("f{f:02}"), json!(format!("w{}", mix(v * 64 + f) % 5000)))).collect();
    json!({
        "ip": format!("10.{}.{}.{}", k % 256, (k >> 8) % 256, v % 256),
        "session": {"id": uuid(k), "start": 1_612_497_996_184u64 + k},
        "user": {"id": uuid((k / 4) | (1 << 40))},
        "event": {"id": uuid(v | (1 << 41)), "time": 1_612_497_996_000u64 + v * 37, "type": TYPES[(mix(v) % 5) as usize], "data": data},
    })
}

/// A small document (about 250 bytes) of the 4.5 M query store.
fn doc_small(i: u64) -> Value {
    json!({
        "session": {"id": uuid(i), "start": 1_612_497_996_184u64 + i},
        "user": {"id": format!("u{}", mix(i) % 100_000)},
        "event": {"type": TYPES[(mix(i ^ 1) % 5) as usize], "time": 1_612_497_996_000u64 + i * 10},
        "geo": {"country": COUNTRIES[(mix(i ^ 2) % 8) as usize]},
        "score": (mix(i ^ 3) % 1000) as f64 / 10.0,
    })
}

/// Call `c` of the upsert workload: 1,000 documents over 200,000 keys.
fn upsert_call(c: u64) -> String {
    let docs: Vec<Value> = (0..CALL).map(|j| doc_1k(mix(c * CALL + j) % KEYS, c * CALL + j)).collect();
    json!([{ "upsert": docs }]).to_string()
}

/// Call `c` of the hot-key workload: 1,000 documents over 1,000 keys, rewritten by every call.
fn hot_call(c: u64) -> String {
    let docs: Vec<Value> = (0..CALL).map(|j| doc_1k(j, c * CALL + j)).collect();
    json!([{ "upsert": docs }]).to_string()
}

/// Call `c` of the merge workload: 1,000 small patches onto existing keys.
fn merge_call(c: u64) -> String {
    let patches: Vec<Value> = (0..CALL)
        .map(|j| {
            let v = c * CALL + j;
            json!({"session": {"id": uuid(mix(v ^ 0xabcd) % KEYS)}, "event": {"time": 1_700_000_000_000u64 + v, "type": TYPES[(v % 5) as usize]}, "counter": v})
        })
        .collect();
    json!([{ "merge": patches }]).to_string()
}

fn bench_dir() -> PathBuf {
    let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
    PathBuf::from(target).join("bench-session")
}

fn fresh(s: &Sessions, name: &str) -> Arc<SessionStore> {
    if s.store(name).is_ok() {
        s.drop_store(name).unwrap();
    }
    s.add(name, None, 1, 1).unwrap();
    s.store(name).unwrap()
}

/// CPU seconds (user + system) this process has used, all threads.
fn cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the command name.
    (ticks(11) + ticks(12)) / 100.0
}

fn rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn bench_updates(c: &mut Criterion, s: &Sessions, out: &mut serde_json::Map<String, Value>) {
    let upserts: Vec<String> = (0..CALLS).map(upsert_call).collect();
    let hot: Vec<String> = (0..CALLS).map(hot_call).collect();
    let merges: Vec<String> = (0..CALLS).map(merge_call).collect();
    let bytes: usize = upserts.iter().map(String::len).sum();
    eprintln!("update workload: {:.0} bytes per document", bytes as f64 / (CALLS * CALL) as f64);
    out.insert("doc_bytes".into(), json!(bytes as f64 / (CALLS * CALL) as f64));

    // Fill the store with every key once, so merges find their documents and upserts replace.
    let store = fresh(s, "upserts");
    for c in 0..KEYS / CALL {
        let docs: Vec<Value> = (0..CALL).map(|j| doc_1k(c * CALL + j, j)).collect();
        store.update(&json!([{ "upsert": docs }]).to_string()).unwrap();
    }
    store.refresh();

    let mut g = c.benchmark_group("session_update");
    g.throughput(Throughput::Elements(CALL));
    g.sample_size(30).measurement_time(Duration::from_secs(15));
    let mut i = 0;
    g.bench_function("upsert_1000x1KB_200k_keys", |b| {
        b.iter(|| {
            i += 1;
            store.update(&upserts[i % upserts.len()]).unwrap()
        })
    });
    // Two callers: one's fsync overlaps the other's work (group commit), still on one core.
    let mut i = 0;
    g.bench_function("upsert_1000x1KB_200k_keys_2_callers", |b| {
        b.iter_custom(|iters| {
            let t = Instant::now();
            std::thread::scope(|scope| {
                for w in 0..2 {
                    let (store, upserts) = (&store, &upserts);
                    let base = i;
                    scope.spawn(move || {
                        for n in (w..iters as usize).step_by(2) {
                            store.update(&upserts[(base + n) % upserts.len()]).unwrap();
                        }
                    });
                }
            });
            i += iters as usize;
            t.elapsed()
        })
    });
    let mut i = 0;
    g.bench_function("merge_1000_200k_keys", |b| {
        b.iter(|| {
            i += 1;
            store.update(&merges[i % merges.len()]).unwrap()
        })
    });
    let hot_store = fresh(s, "hot");
    let before = hot_store.index_stats();
    let mut i = 0;
    let mut calls = 0u64;
    g.bench_function("upsert_1000x1KB_1000_hot_keys", |b| {
        b.iter(|| {
            i += 1;
            calls += 1;
            hot_store.update(&hot[i % hot.len()]).unwrap()
        })
    });
    g.finish();
    hot_store.refresh();
    let after = hot_store.index_stats();
    let per_doc = m1::session::index::terms_of_json(&serde_json::to_vec(&doc_1k(1, 1)).unwrap()).unwrap().0.len();
    eprintln!(
        "hot keys: {} upserts indexed as {} postings ({:.3} per upsert; indexing every version would add {per_doc} each)",
        calls * CALL,
        after[1] - before[1],
        (after[1] - before[1]) as f64 / (calls * CALL) as f64,
    );
    out.insert("terms_per_doc".into(), json!(per_doc));
    out.insert("hot_upserts".into(), json!(calls * CALL));
    out.insert("hot_postings".into(), json!(after[1] - before[1]));

    // One-shot: sustained throughput over 300 calls, the CPU they cost (writing and indexing),
    // then how soon the last write is visible.
    store.refresh();
    let (t, cpu) = (Instant::now(), cpu_secs());
    for c in 0..300 {
        store.update(&upserts[c % upserts.len()]).unwrap();
    }
    let write = t.elapsed();
    let t = Instant::now();
    store.refresh();
    let catch_up = t.elapsed();
    let cpu_us = (cpu_secs() - cpu) / 300_000.0 * 1e6;
    out.insert("cpu_us_per_upsert".into(), json!(cpu_us));
    eprintln!("CPU per upsert, writing and indexing: {cpu_us:.1} µs (= {:.0} upserts per CPU-second)", 1e6 / cpu_us);
    out.insert("sustained_upserts_per_s".into(), json!(300_000.0 / write.as_secs_f64()));
    out.insert("index_catch_up_ms".into(), json!(catch_up.as_secs_f64() * 1e3));
    eprintln!(
        "sustained: 300 calls x 1000 upserts in {:.2} s = {:.0} upserts/s; indexing what was left: {:.1} ms",
        write.as_secs_f64(),
        300_000.0 / write.as_secs_f64(),
        catch_up.as_secs_f64() * 1e3
    );
    let probe = json!([{"upsert": [{"session": {"id": "probe"}, "marker": "visible-now"}]}]).to_string();
    store.update(&upserts[0]).unwrap();
    let t = Instant::now();
    store.update(&probe).unwrap();
    let by_key = store.get(&["probe".into()]).unwrap().len();
    let got = store.query(&SessionQuery::new("marker:visible-now")).unwrap().count;
    let visible = t.elapsed();
    assert_eq!((by_key, got), (1, 1));
    out.insert("update_then_query_ms".into(), json!(visible.as_secs_f64() * 1e3));
    eprintln!(
        "update + get + query seeing it (1,000 pending docs indexed first): {:.1} ms",
        visible.as_secs_f64() * 1e3
    );
    s.drop_store("hot").unwrap();
    s.drop_store("upserts").unwrap();
}

/// The 4.5 M store, built (and checkpointed) once and kept between runs.
fn query_store(s: &Sessions, docs: u64, out: &mut serde_json::Map<String, Value>) -> Arc<SessionStore> {
    let name = format!("q{docs}");
    if let Ok(store) = s.store(&name)
        && store.len() == docs
    {
        s.close(&name).unwrap();
    } else {
        let store = fresh(s, &name);
        let t = Instant::now();
        let per_call = 10_000;
        for c in 0..docs.div_ceil(per_call) {
            let batch: Vec<Value> = (c * per_call..((c + 1) * per_call).min(docs)).map(doc_small).collect();
            store.update(&json!([{ "upsert": batch }]).to_string()).unwrap();
        }
        let written = t.elapsed();
        store.refresh();
        let indexed = t.elapsed();
        store.checkpoint().unwrap();
        eprintln!(
            "built {docs} documents: written in {:.1} s, indexed after {:.1} s, checkpointed after {:.1} s",
            written.as_secs_f64(),
            indexed.as_secs_f64(),
            t.elapsed().as_secs_f64()
        );
        out.insert("build_write_s".into(), json!(written.as_secs_f64()));
        out.insert("build_indexed_s".into(), json!(indexed.as_secs_f64()));
        s.close(&name).unwrap();
    }
    let rss0 = rss_mb();
    let t = Instant::now();
    let store = s.store(&name).unwrap();
    let opened = t.elapsed();
    // The first query indexes whatever the checkpoint left pending; since checkpoints save the
    // index, that is nothing here, and before, it was every document.
    let first = store.query(&SessionQuery::new("event.type:purchase")).unwrap();
    let indexed = t.elapsed();
    let rss = rss_mb() - rss0;
    let stats = store.index_stats();
    eprintln!(
        "reopened {docs} documents in {:.2} s (first query answered after {:.2} s, {} matches); resident memory +{rss:.0} MB ({:.0} MB in all); {} terms, {} postings",
        opened.as_secs_f64(),
        indexed.as_secs_f64(),
        first.count,
        rss_mb(),
        stats[0],
        stats[1]
    );
    out.insert("docs".into(), json!(docs));
    out.insert("reopen_s".into(), json!(opened.as_secs_f64()));
    out.insert("reopen_indexed_s".into(), json!(indexed.as_secs_f64()));
    out.insert("rss_mb".into(), json!(rss));
    out.insert("rss_total_mb".into(), json!(rss_mb()));
    out.insert("terms".into(), json!(stats[0]));
    out.insert("postings".into(), json!(stats[1]));
    store
}

/// Query text, sort and rows of each measured question (`session_compare.py` asks the same).
fn questions(n: u64) -> Vec<(&'static str, String, u64)> {
    vec![
        ("term_user_id_rows10", format!("user.id:u{}", mix(n) % 100_000), 10),
        ("term_session_uuid", format!("session.id:{}", uuid(mix(n ^ 7) % 4_500_000)), 10),
        (
            "term_country_and_type_count",
            format!("geo.country:{} AND event.type:purchase", COUNTRIES[(n % 8) as usize]),
            0,
        ),
        ("term_event_type_count", format!("event.type:{}", TYPES[(n % 5) as usize]), 0),
        ("term_event_type_rows10", format!("event.type:{}", TYPES[(n % 5) as usize]), 10),
    ]
}

fn bench_queries(c: &mut Criterion, store: &SessionStore, docs: u64, out: &mut serde_json::Map<String, Value>) {
    let mut g = c.benchmark_group(format!("session_query_{docs}"));
    g.sample_size(30).measurement_time(Duration::from_secs(8));
    for (i, (name, _, _)) in questions(0).into_iter().enumerate() {
        let mut n = 0u64;
        g.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| {
                n += 1;
                let (_, q, rows) = questions(n).swap_remove(i);
                black_box(store.query(&SessionQuery { rows, ..SessionQuery::new(q) }).unwrap())
            })
        });
    }
    let mut n = 0u64;
    g.bench_function("get_by_key", |b| {
        b.iter(|| {
            n += 1;
            black_box(store.get(&[uuid(mix(n) % docs)]).unwrap())
        })
    });
    g.finish();

    // Call-by-call medians for the comparison, and a range query (the index only narrows it to
    // documents with the property, then the matcher checks each: a scan).
    let mut lat = serde_json::Map::new();
    for (i, (name, _, _)) in questions(0).into_iter().enumerate() {
        let mut times: Vec<f64> = (0..51)
            .map(|n| {
                let (_, q, rows) = questions(1000 + n).swap_remove(i);
                let t = Instant::now();
                black_box(store.query(&SessionQuery { rows, ..SessionQuery::new(q) }).unwrap());
                t.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        times.sort_by(f64::total_cmp);
        lat.insert(name.into(), json!(times[times.len() / 2]));
    }
    let mut times: Vec<f64> = (0..1001)
        .map(|n| {
            let t = Instant::now();
            black_box(store.get(&[uuid(mix(n) % docs)]).unwrap());
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    times.sort_by(f64::total_cmp);
    lat.insert("get_by_key".into(), json!(times[times.len() / 2]));
    let t = Instant::now();
    let r = store.query(&SessionQuery::new("score:[10 TO 10.5]")).unwrap();
    let range = t.elapsed().as_secs_f64() * 1e3;
    eprintln!("range score:[10 TO 10.5]: {} matches in {range:.0} ms", r.count);
    lat.insert("range_score".into(), json!(range));
    eprintln!("medians (ms): {}", Value::Object(lat.clone()));
    out.insert("query_ms".into(), Value::Object(lat));
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    let docs: u64 = std::env::var("M1_BENCH_SESSION_DOCS").ok().and_then(|v| v.parse().ok()).unwrap_or(4_500_000);
    // `updates`, `queries` or both (default); figures are merged into the results file.
    let parts = std::env::var("M1_BENCH_SESSION_PARTS").unwrap_or_else(|_| "updates,queries".into());
    let s = Sessions::at(bench_dir());
    let dir =
        PathBuf::from(std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into())).join("bench-results");
    let path = dir.join("m1-session.json");
    let mut out: serde_json::Map<String, Value> =
        std::fs::read(&path).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
    if parts.contains("updates") {
        bench_updates(&mut c, &s, &mut out);
    }
    if parts.contains("queries") {
        let store = query_store(&s, docs, &mut out);
        bench_queries(&mut c, &store, docs, &mut out);
    }
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(&path, serde_json::to_string_pretty(&Value::Object(out)).unwrap()).unwrap();
    c.final_summary();
}
