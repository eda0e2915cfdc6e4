//! Load test of `m1 serve` on loopback, run by hand (not in CI):
//!
//! ```text
//! cargo bench --workspace --bench serve_load            # 64 clients, 30 s
//! M1_LOAD_CLIENTS=16 M1_LOAD_SECS=10 cargo bench --workspace --bench serve_load
//! ```
//!
//! An environment of 100,000 records (a data store over them) is served in-process; each client
//! loops over a mix of requests with its own connection pool slot and the admin's token: 45%
//! `/get` of 10 random keys, 45% `/query` (a term or a range query, 10 items, sorted, a terms
//! facet on every fourth), 10% `/session/update` upserting 5 documents into the session store
//! `stash` (a client rewrites its own 5,000 keys). It prints throughput, latency percentiles per
//! endpoint and the error count; any error fails the run.
//!
//! Baseline, in the same run: the same mix called directly on the library (no HTTP, no auth,
//! answers still encoded to JSON) from as many threads for `M1_LOAD_DIRECT_SECS` (default 10),
//! so the report gives the server's throughput as a ratio of the engine's.

use std::time::{Duration, Instant};

use m1_engine::{Catalog, EnvConfig, Property, PropertyType};
use rand::{Rng, SeedableRng};
use serde_json::json;

const RECORDS: u64 = 100_000;

/// One request of the mix: (endpoint index, endpoint, parameters).
type Op = (usize, &'static str, Vec<(&'static str, String)>);

fn pick_op(rng: &mut rand::rngs::StdRng, i: u64, client: usize) -> Op {
    let pick = rng.random_range(0..100);
    if pick < 45 {
        let ids: Vec<u64> = (0..10).map(|_| rng.random_range(0..RECORDS)).collect();
        (0, "get", vec![("ids", serde_json::to_string(&ids).unwrap())])
    } else if pick < 90 {
        let q = if i.is_multiple_of(2) {
            format!("user:u{}", rng.random_range(0..5000))
        } else {
            let a = rng.random_range(0..RECORDS);
            format!("n:[{a} TO {}] AND kind:buy", a + 1000)
        };
        let mut form = vec![("q", q), ("rows", "10".into()), ("sort", "n desc".into())];
        if i.is_multiple_of(4) {
            form.push(("facets", r#"{"k": {"type": "terms", "field": "kind"}}"#.into()));
        }
        (1, "query", form)
    } else {
        let docs: Vec<_> = (0..5)
            .map(
                |k| json!({"session": {"id": format!("c{client}-{}", (i * 5 + k) % 5000)}, "seq": i, "page": {"n": k}}),
            )
            .collect();
        (2, "session/update", vec![("store", "stash".into()), ("ops", json!([{"upsert": docs}]).to_string())])
    }
}

/// The same operation on the library's endpoint layer (the code the server calls), its answer
/// encoded as the server would.
fn direct(env: &m1::Environment, op: &Op) -> Result<usize, String> {
    let params = op.2.iter().map(|(k, v)| (k.to_string(), v.clone()));
    let output = m1::endpoint::call_env(&m1::endpoint::EnvCall::local(env), op.1, params).map_err(|e| e.to_string())?;
    Ok(match output {
        m1::endpoint::Output::Empty => 0,
        m1::endpoint::Output::Json(v) => v.to_string().len(),
        m1::endpoint::Output::Stream { write, .. } => {
            let mut out = Vec::new();
            write(&mut out).map_err(|e| e.to_string())?;
            out.len()
        }
    })
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn report(label: &str, latencies: &[(usize, Duration)], secs: f64) {
    println!("{label}");
    for (op, name) in
        [(0, "get (10 keys)"), (1, "query (10 items)"), (2, "session/update (5 docs)"), (usize::MAX, "all")]
    {
        let mut l: Vec<Duration> =
            latencies.iter().filter(|(o, _)| op == usize::MAX || *o == op).map(|(_, d)| *d).collect();
        l.sort();
        println!(
            "  {name:<18} n={:<8} {:>7.0} req/s  p50 {:>7.2} ms  p99 {:>7.2} ms  max {:>7.2} ms",
            l.len(),
            l.len() as f64 / secs,
            percentile(&l, 0.5).as_secs_f64() * 1e3,
            percentile(&l, 0.99).as_secs_f64() * 1e3,
            l.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
        );
    }
}

fn setup(home: &std::path::Path) {
    let cat = Catalog::open(home).unwrap();
    cat.create("test-m1", None, EnvConfig::default()).unwrap();
    let env = cat.open_env("test-m1").unwrap();
    env.add_properties(&[
        Property::new("user", PropertyType::String),
        Property::new("kind", PropertyType::String),
        Property::new("n", PropertyType::Integer),
        Property::new("text", PropertyType::Text),
    ])
    .unwrap();
    let kinds = ["view", "click", "buy", "share"];
    let rows = (0..RECORDS).map(|i| {
        let kind = kinds[(i % 4) as usize];
        json!({"user": format!("u{}", i % 5000), "kind": kind, "n": i, "text": format!("event number {i} of kind {kind}")})
            .as_object()
            .unwrap()
            .clone()
    });
    env.append_json(rows).unwrap();
    m1::session::Sessions::for_env(&env).add("stash", None, 1, 1).unwrap();
}

/// Runs the clients against the server; returns (latencies, errors).
async fn served(base: String, token: String, clients: usize, secs: u64) -> (Vec<(usize, Duration)>, Vec<String>) {
    let client = reqwest::Client::builder().pool_max_idle_per_host(clients).build().unwrap();
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (client, base, token) = (client.clone(), base.clone(), token.clone());
        tasks.push(tokio::spawn(async move {
            let (mut latencies, mut errors) = (Vec::new(), Vec::new());
            let mut rng = rand::rngs::StdRng::seed_from_u64(c as u64);
            let mut i = 0u64;
            while Instant::now() < deadline {
                i += 1;
                let (op, path, form) = pick_op(&mut rng, i, c);
                let t = Instant::now();
                let sent = client.post(format!("{base}/{path}")).header("m1-auth-token", &token).form(&form).send();
                match sent.await {
                    Ok(r) if r.status().is_success() => match r.bytes().await {
                        Ok(_) => latencies.push((op, t.elapsed())),
                        Err(e) => errors.push(format!("{path}: body: {e}")),
                    },
                    Ok(r) => errors.push(format!("{path}: {} {}", r.status(), r.text().await.unwrap_or_default())),
                    Err(e) => errors.push(format!("{path}: {e}")),
                }
            }
            (latencies, errors)
        }));
    }
    let (mut latencies, mut errors) = (Vec::new(), Vec::new());
    for t in tasks {
        let (l, e) = t.await.unwrap();
        latencies.extend(l);
        errors.extend(e);
    }
    (latencies, errors)
}

fn main() {
    let env_num = |name: &str, default: u64| std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default);
    let clients = env_num("M1_LOAD_CLIENTS", 64) as usize;
    let secs = env_num("M1_LOAD_SECS", 30);
    let direct_secs = env_num("M1_LOAD_DIRECT_SECS", 10);
    let home = tempfile::tempdir().unwrap();
    let started = Instant::now();
    setup(home.path());
    eprintln!("setup: {RECORDS} records in {:.1}s", started.elapsed().as_secs_f64());

    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let served_rate = rt.block_on(async {
        let options = m1_server::ServeOptions { port: 0, home: Some(home.path().to_path_buf()), ..Default::default() };
        let server = m1_server::start(options).await.unwrap();
        let base = format!("http://{}/test-m1", server.addr);
        let client = reqwest::Client::new();
        let login = [("username", "admin"), ("password", "passphrase")];
        assert!(client.post(format!("{base}/init")).form(&login).send().await.unwrap().status().is_success());
        let auth: serde_json::Value =
            client.post(format!("{base}/auth")).form(&login).send().await.unwrap().json().await.unwrap();
        let token = auth["token"].as_str().unwrap().to_string();
        // The first query indexes the lake into the default store.
        let t = Instant::now();
        let warm = client.post(format!("{base}/query")).header("m1-auth-token", &token).form(&[("q", "*")]);
        assert!(warm.send().await.unwrap().status().is_success());
        eprintln!("index warm-up: {:.1}s; running {clients} clients for {secs}s", t.elapsed().as_secs_f64());
        let (latencies, errors) = served(base, token, clients, secs).await;
        server.stop().await;
        println!("m1 serve load: {clients} clients, {secs} s, {RECORDS} records, loopback, server in-process");
        println!("requests ok: {}, errors: {}", latencies.len(), errors.len());
        report("served over HTTP:", &latencies, secs as f64);
        for e in errors.iter().take(10) {
            println!("error: {e}");
        }
        assert!(errors.is_empty(), "{} errors", errors.len());
        latencies.len() as f64 / secs as f64
    });

    // Baseline: the library, same mix, same concurrency, no HTTP.
    let env = m1::Environment::open_in(&Catalog::open(home.path()).unwrap(), "test-m1").unwrap();
    let deadline = Instant::now() + Duration::from_secs(direct_secs);
    let latencies: Vec<(usize, Duration)> = std::thread::scope(|scope| {
        let jobs: Vec<_> = (0..clients)
            .map(|c| {
                let env = &env;
                scope.spawn(move || {
                    let mut rng = rand::rngs::StdRng::seed_from_u64(1000 + c as u64);
                    let (mut out, mut i) = (Vec::new(), 0u64);
                    while Instant::now() < deadline {
                        i += 1;
                        let op = pick_op(&mut rng, i, c);
                        let t = Instant::now();
                        direct(env, &op).unwrap();
                        out.push((op.0, t.elapsed()));
                    }
                    out
                })
            })
            .collect();
        jobs.into_iter().flat_map(|j| j.join().unwrap()).collect()
    });
    let direct_rate = latencies.len() as f64 / direct_secs as f64;
    report(
        &format!("baseline, library calls from {clients} threads for {direct_secs} s:"),
        &latencies,
        direct_secs as f64,
    );
    println!("served / library throughput: {:.2}", served_rate / direct_rate);
}
