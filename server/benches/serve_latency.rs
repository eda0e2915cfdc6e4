//! Latency of single requests to `m1 serve` on loopback, one client, keep-alive, each beside the
//! same call on the library's endpoint layer in the same run (issue 16's HTTP rows):
//!
//! ```text
//! cargo bench --workspace --bench serve_latency
//! M1_LATENCY_REPS=2000 cargo bench --workspace --bench serve_latency
//! ```
//!
//! Data: the flights of `target/bench-publish/flights-v1-x4.jsonl.gz` (1.35 M records, written by
//! `benches/publish_compare.py`) when that file exists, else 1.35 M generated flight-like records
//! (carrier, origin, dest, dep_delay, distance, tailnum), published into a served environment
//! with its default data store. Questions: `/ping`; `/get` of one random key; `/query` term count
//! `carrier:UA` (no items); `/query` `origin:JFK` top 100 by `dep_delay desc` with 2 fields.
//! Prints p50 and p99 per question over HTTP and on the library, the ratio, and writes them to
//! `target/bench-results/m1-serve-latency.json`.

use std::time::{Duration, Instant};

use m1_engine::{Catalog, EnvConfig};
use rand::{Rng, SeedableRng};
use serde_json::json;

const GENERATED: u64 = 1_350_000;

fn target_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"))
}

/// Fills the environment; returns its number of records.
fn setup(home: &std::path::Path) -> u64 {
    let cat = Catalog::open(home).unwrap();
    cat.create("flights", None, EnvConfig::default()).unwrap();
    let env = m1::Environment::open_in(&cat, "flights").unwrap();
    let file = target_dir().join("bench-publish/flights-v1-x4.jsonl.gz");
    let rows = if file.exists() {
        let mut req = m1::PublishRequest::new(file.to_str().unwrap());
        req.infer = true;
        env.publish(&req).unwrap().rows_published
    } else {
        eprintln!("{} is missing: generating {GENERATED} flight-like records", file.display());
        use m1_engine::{Property, PropertyType};
        env.add_properties(&[
            Property::new("carrier", PropertyType::String),
            Property::new("origin", PropertyType::String),
            Property::new("dest", PropertyType::String),
            Property::new("tailnum", PropertyType::String),
            Property::new("dep_delay", PropertyType::Integer),
            Property::new("distance", PropertyType::Integer),
        ])
        .unwrap();
        let carriers = ["UA", "B6", "EV", "DL", "AA", "MQ", "US", "9E", "WN", "VX", "FL", "AS", "F9", "YV", "HA", "OO"];
        let airports = ["JFK", "LGA", "EWR"];
        let mut rng = rand::rngs::StdRng::seed_from_u64(13);
        let rows: Vec<_> = (0..GENERATED)
            .map(|i| {
                json!({
                    "carrier": carriers[rng.random_range(0..carriers.len())],
                    "origin": airports[(i % 3) as usize],
                    "dest": format!("D{}", rng.random_range(0..100)),
                    "tailnum": format!("N{}", rng.random_range(0..4000)),
                    "dep_delay": rng.random_range(-30i64..600),
                    "distance": rng.random_range(80..5000),
                })
                .as_object()
                .unwrap()
                .clone()
            })
            .collect();
        env.append_json(rows).unwrap();
        GENERATED
    };
    m1_server::init_admin(std::sync::Arc::new(env), "admin", "passphrase").unwrap();
    rows
}

/// One question: its name, endpoint and parameters (the keys drawn per call).
struct Question {
    name: &'static str,
    path: &'static str,
    params: fn(&mut rand::rngs::StdRng, u64) -> Vec<(&'static str, String)>,
}

const QUESTIONS: &[Question] = &[
    Question { name: "ping", path: "ping", params: |_, _| Vec::new() },
    Question {
        name: "get 1 key, all properties",
        path: "get",
        params: |rng, rows| vec![("ids", format!("[{}]", rng.random_range(0..rows)))],
    },
    Question {
        name: "query count carrier:UA",
        path: "query",
        params: |_, _| vec![("q", "carrier:UA".into()), ("rows", "0".into())],
    },
    Question {
        name: "query origin:JFK top 100 by dep_delay, 2 fields",
        path: "query",
        params: |_, _| {
            vec![
                ("q", "origin:JFK".into()),
                ("rows", "100".into()),
                ("sort", "dep_delay desc".into()),
                ("fl", "carrier,dep_delay".into()),
            ]
        },
    },
];

fn percentiles(mut v: Vec<Duration>) -> (f64, f64) {
    v.sort();
    let at = |p: f64| v[((v.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1e6;
    (at(0.5), at(0.99))
}

/// The library's answer to one question, encoded as the server would; returns its size.
fn direct(env: &m1::Environment, path: &str, params: Vec<(&'static str, String)>) -> usize {
    let params = params.into_iter().map(|(k, v)| (k.to_string(), v));
    match m1::endpoint::call_env(&m1::endpoint::EnvCall::local(env), path, params).unwrap() {
        m1::endpoint::Output::Empty => 0,
        m1::endpoint::Output::Json(v) => v.to_string().len(),
        m1::endpoint::Output::Stream { write, .. } => {
            let mut out = Vec::new();
            write(&mut out).unwrap();
            out.len()
        }
    }
}

fn main() {
    let reps = std::env::var("M1_LATENCY_REPS").ok().and_then(|v| v.parse().ok()).unwrap_or(3000usize);
    let home = tempfile::tempdir().unwrap();
    let t = Instant::now();
    let rows = setup(home.path());
    eprintln!("setup: {rows} records in {:.1} s", t.elapsed().as_secs_f64());

    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let served: Vec<(f64, f64)> = rt.block_on(async {
        let options = m1_server::ServeOptions { port: 0, home: Some(home.path().to_path_buf()), ..Default::default() };
        let server = m1_server::start(options).await.unwrap();
        let base = format!("http://{}/flights", server.addr);
        let client = reqwest::Client::new();
        let login = [("username", "admin"), ("password", "passphrase")];
        let auth: serde_json::Value =
            client.post(format!("{base}/auth")).form(&login).send().await.unwrap().json().await.unwrap();
        let token = auth["token"].as_str().unwrap().to_string();
        let t = Instant::now();
        let warm = client.post(format!("{base}/query")).header("m1-auth-token", &token).form(&[("q", "*")]);
        assert!(warm.send().await.unwrap().status().is_success());
        eprintln!("index warm-up: {:.1} s", t.elapsed().as_secs_f64());
        let mut out = Vec::new();
        for q in QUESTIONS {
            let mut rng = rand::rngs::StdRng::seed_from_u64(7);
            let mut times = Vec::with_capacity(reps);
            for i in 0..reps + reps / 10 {
                let form = (q.params)(&mut rng, rows);
                let started = Instant::now();
                let r = client.post(format!("{base}/{}", q.path)).header("m1-auth-token", &token).form(&form).send();
                let r = r.await.unwrap();
                assert!(r.status().is_success(), "{}: {}", q.name, r.status());
                let _ = r.bytes().await.unwrap();
                if i >= reps / 10 {
                    times.push(started.elapsed());
                }
            }
            out.push(percentiles(times));
        }
        server.stop().await;
        out
    });

    let env = m1::Environment::open_in(&Catalog::open(home.path()).unwrap(), "flights").unwrap();
    let mut results = Vec::new();
    println!("m1 serve latency: one client, keep-alive, {rows} records, {reps} calls per question (p50 / p99 µs)");
    println!(
        "{:<50} {:>10} {:>10} {:>10} {:>10} {:>8}",
        "question", "http p50", "http p99", "lib p50", "lib p99", "ratio"
    );
    for (q, (hp50, hp99)) in QUESTIONS.iter().zip(served) {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut times = Vec::with_capacity(reps);
        for i in 0..reps + reps / 10 {
            let params = (q.params)(&mut rng, rows);
            let started = Instant::now();
            direct(&env, q.path, params);
            if i >= reps / 10 {
                times.push(started.elapsed());
            }
        }
        let (lp50, lp99) = percentiles(times);
        println!("{:<50} {hp50:>10.0} {hp99:>10.0} {lp50:>10.0} {lp99:>10.0} {:>7.1}x", q.name, hp50 / lp50);
        results.push(
            json!({"question": q.name, "http": {"p50": hp50, "p99": hp99}, "library": {"p50": lp50, "p99": lp99}}),
        );
    }
    let dir = target_dir().join("bench-results");
    std::fs::create_dir_all(&dir).unwrap();
    let out = json!({"rows": rows, "reps": reps, "results": results});
    std::fs::write(dir.join("m1-serve-latency.json"), serde_json::to_string_pretty(&out).unwrap()).unwrap();
}
