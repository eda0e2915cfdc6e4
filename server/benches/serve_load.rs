//! Load test of `m1 serve` on loopback, run by hand (not in CI):
//!
//! ```text
//! cargo bench --workspace --bench serve_load            # 64 clients, 30 s
//! M1_LOAD_CLIENTS=16 M1_LOAD_SECS=10 cargo bench --workspace --bench serve_load
//! ```
//!
//! An environment of 100,000 records (a data store over them) is served in-process; each client
//! loops over a mix of requests with its own token: 45% `/get` of 10 random keys, 45% `/query`
//! (a term or range query, 10 items, a terms facet on every fourth), 10% `/write` of 5 items
//! (archive only). Session stores are not in this build yet, so `/write` stands in for
//! `session/update`. It prints throughput, latency percentiles per endpoint and the error
//! count; any error fails the run.

use std::time::{Duration, Instant};

use m1_engine::{Catalog, EnvConfig, Property, PropertyType};
use rand::{Rng, SeedableRng};
use serde_json::json;

const RECORDS: u64 = 100_000;

#[derive(Default)]
struct Stats {
    latencies: Vec<(usize, Duration)>,
    errors: Vec<String>,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    // `cargo bench` passes --bench; nothing else to parse.
    let clients: usize = std::env::var("M1_LOAD_CLIENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(64);
    let secs: u64 = std::env::var("M1_LOAD_SECS").ok().and_then(|v| v.parse().ok()).unwrap_or(30);
    let home = tempfile::tempdir().unwrap();
    let started = Instant::now();
    {
        let cat = Catalog::open(home.path()).unwrap();
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
            json!({"user": format!("u{}", i % 5000), "kind": kinds[(i % 4) as usize], "n": i,
                   "text": format!("event number {i} of kind {}", kinds[(i % 4) as usize])})
            .as_object()
            .unwrap()
            .clone()
        });
        env.append_json(rows).unwrap();
    }
    eprintln!("setup: {RECORDS} records in {:.1}s", started.elapsed().as_secs_f64());
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async move {
        let options = m1_server::ServeOptions { port: 0, home: Some(home.path().to_path_buf()), ..Default::default() };
        let server = m1_server::start(options).await.unwrap();
        let base = format!("http://{}/test-m1", server.addr);
        let client = reqwest::Client::builder().pool_max_idle_per_host(clients).build().unwrap();
        let send = |path: &str, token: Option<&str>, form: Vec<(&str, String)>| {
            let mut r = client.post(format!("{base}/{path}")).form(&form);
            if let Some(t) = token {
                r = r.header("m1-auth-token", t);
            }
            r.send()
        };
        let init =
            send("init", None, vec![("username", "admin".into()), ("password", "passphrase".into())]).await.unwrap();
        assert!(init.status().is_success());
        let auth =
            send("auth", None, vec![("username", "admin".into()), ("password", "passphrase".into())]).await.unwrap();
        let token = auth.json::<serde_json::Value>().await.unwrap()["token"].as_str().unwrap().to_string();
        // Warm the data store (first query indexes the lake).
        let t = Instant::now();
        let r = send("query", Some(&token), vec![("q", "*".into())]).await.unwrap();
        assert!(r.status().is_success(), "{}", r.text().await.unwrap());
        eprintln!("index warm-up: {:.1}s; running {clients} clients for {secs}s", t.elapsed().as_secs_f64());
        let deadline = Instant::now() + Duration::from_secs(secs);
        let mut tasks = Vec::new();
        for c in 0..clients {
            let (client, base, token) = (client.clone(), base.clone(), token.clone());
            tasks.push(tokio::spawn(async move {
                let mut stats = Stats::default();
                let mut rng = rand::rngs::StdRng::seed_from_u64(c as u64);
                let mut i = 0u64;
                while Instant::now() < deadline {
                    i += 1;
                    let pick = rng.random_range(0..100);
                    let (op, path, form): (usize, &str, Vec<(&str, String)>) = if pick < 45 {
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
                        let items: Vec<_> = (0..5).map(|k| json!({"client": c, "seq": i, "k": k})).collect();
                        (2, "write", vec![("items", serde_json::to_string(&items).unwrap())])
                    };
                    let t = Instant::now();
                    let result =
                        client.post(format!("{base}/{path}")).header("m1-auth-token", &token).form(&form).send().await;
                    match result {
                        Ok(r) if r.status().is_success() => match r.bytes().await {
                            Ok(_) => stats.latencies.push((op, t.elapsed())),
                            Err(e) => stats.errors.push(format!("{path}: body: {e}")),
                        },
                        Ok(r) => {
                            stats.errors.push(format!("{path}: {} {}", r.status(), r.text().await.unwrap_or_default()))
                        }
                        Err(e) => stats.errors.push(format!("{path}: {e}")),
                    }
                }
                stats
            }));
        }
        let mut all = Stats::default();
        for t in tasks {
            let s = t.await.unwrap();
            all.latencies.extend(s.latencies);
            all.errors.extend(s.errors);
        }
        let total = all.latencies.len();
        println!("m1 serve load: {clients} clients, {secs} s, {RECORDS} records, loopback, server in-process");
        println!(
            "requests ok: {total}, errors: {}, throughput: {:.0} req/s",
            all.errors.len(),
            total as f64 / secs as f64
        );
        for (op, name) in [(0, "get (10 keys)"), (1, "query (10 items)"), (2, "write (5 items)"), (usize::MAX, "all")] {
            let mut l: Vec<Duration> =
                all.latencies.iter().filter(|(o, _)| op == usize::MAX || *o == op).map(|(_, d)| *d).collect();
            l.sort();
            println!(
                "{name:<18} n={:<8} {:>7.0} req/s  p50 {:>7.2} ms  p99 {:>7.2} ms  max {:>7.2} ms",
                l.len(),
                l.len() as f64 / secs as f64,
                percentile(&l, 0.5).as_secs_f64() * 1e3,
                percentile(&l, 0.99).as_secs_f64() * 1e3,
                l.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
            );
        }
        for e in all.errors.iter().take(10) {
            println!("error: {e}");
        }
        server.stop().await;
        assert!(all.errors.is_empty(), "{} errors", all.errors.len());
    });
}
