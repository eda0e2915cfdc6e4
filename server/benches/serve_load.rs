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
//!
//! The soak (issue 11): `M1_LOAD_SERVER=target/release/m1` serves from that binary in a process of
//! its own, whose RSS is sampled every second; `M1_LOAD_IDLE=1000` opens that many idle
//! connections halfway and keeps them open (reconnecting those the server closes), and the
//! report compares the two halves. `scripts/serve-soak` runs it for 10 minutes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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
    // The first admin, as `m1 init` makes it (a server of its own process cannot be /init-ed by
    // anyone who asks).
    let env = m1::Environment::open_in(&cat, "test-m1").unwrap();
    m1_server::init_admin(std::sync::Arc::new(env), "admin", "passphrase").unwrap();
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

/// Keeps `count` idle connections to `addr` open until `stop`; counts reconnects (the server may
/// close idle connections after its read timeout, as it should).
fn hold_idle(addr: std::net::SocketAddr, count: usize, stop: Arc<AtomicBool>, reconnects: Arc<AtomicU64>) {
    let mut conns: Vec<std::net::TcpStream> =
        (0..count).filter_map(|_| std::net::TcpStream::connect(addr).ok()).collect();
    assert_eq!(conns.len(), count, "could not open {count} idle connections");
    for c in &conns {
        c.set_nonblocking(true).unwrap();
    }
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_secs(1));
        for c in conns.iter_mut() {
            let mut buf = [0u8; 64];
            let closed = match std::io::Read::read(c, &mut buf) {
                Ok(0) => true,
                Ok(_) => false,
                Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
            };
            // Closed by the server (after its read timeout) or reset: open it again.
            if closed && let Ok(fresh) = std::net::TcpStream::connect(addr) {
                fresh.set_nonblocking(true).unwrap();
                *c = fresh;
                reconnects.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// The resident set of process `pid`, in KiB.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse().ok()
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
    let idle = env_num("M1_LOAD_IDLE", 0) as usize;
    let external = std::env::var("M1_LOAD_SERVER").ok();
    let served_rate = rt.block_on(async {
        // The server: in this process, or the binary in a process of its own (its RSS sampled).
        let (addr, mut child, server) = match &external {
            Some(bin) => {
                let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
                let child = std::process::Command::new(bin)
                    .args(["serve", "-port", &port.to_string()])
                    .env("M1_HOME", home.path())
                    .stdout(std::process::Stdio::null())
                    .spawn()
                    .unwrap();
                let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
                let up = Instant::now();
                while std::net::TcpStream::connect(addr).is_err() {
                    assert!(up.elapsed() < Duration::from_secs(60), "{bin} serve did not listen within 60 s");
                    std::thread::sleep(Duration::from_millis(50));
                }
                (addr, Some(child), None)
            }
            None => {
                let options =
                    m1_server::ServeOptions { port: 0, home: Some(home.path().to_path_buf()), ..Default::default() };
                let server = m1_server::start(options).await.unwrap();
                (server.addr, None, Some(server))
            }
        };
        let base = format!("http://{addr}/test-m1");
        let client = reqwest::Client::new();
        let login = [("username", "admin"), ("password", "passphrase")];
        let auth: serde_json::Value =
            client.post(format!("{base}/auth")).form(&login).send().await.unwrap().json().await.unwrap();
        let token = auth["token"].as_str().unwrap().to_string();
        // The first query indexes the lake into the default store.
        let t = Instant::now();
        let warm = client.post(format!("{base}/query")).header("m1-auth-token", &token).form(&[("q", "*")]);
        assert!(warm.send().await.unwrap().status().is_success());
        eprintln!("index warm-up: {:.1}s; running {clients} clients for {secs}s", t.elapsed().as_secs_f64());
        let sampling = Arc::new(AtomicBool::new(true));
        let sampler = child.as_ref().map(|c| {
            let (pid, sampling) = (c.id(), sampling.clone());
            std::thread::spawn(move || {
                let mut samples = Vec::new();
                while sampling.load(Ordering::Relaxed) {
                    samples.extend(rss_kib(pid));
                    std::thread::sleep(Duration::from_secs(1));
                }
                samples
            })
        });
        // Without idle connections, then (if asked) with them, half the time each.
        let halves = if idle > 0 { [secs / 2, secs - secs / 2] } else { [secs, 0] };
        let (latencies, mut errors) = served(base.clone(), token.clone(), clients, halves[0]).await;
        let mut all = latencies.clone();
        if idle > 0 {
            let (stop, reconnects) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
            let holder = {
                let (stop, reconnects) = (stop.clone(), reconnects.clone());
                std::thread::spawn(move || hold_idle(addr, idle, stop, reconnects))
            };
            std::thread::sleep(Duration::from_secs(2));
            let (with_idle, more_errors) = served(base, token, clients, halves[1]).await;
            stop.store(true, Ordering::Relaxed);
            holder.join().unwrap();
            report(&format!("first half, no idle connections ({} s):", halves[0]), &latencies, halves[0] as f64);
            report(
                &format!(
                    "second half, {idle} idle connections open ({} s; the server closed and the client reopened {} \
                     of them):",
                    halves[1],
                    reconnects.load(Ordering::Relaxed)
                ),
                &with_idle,
                halves[1] as f64,
            );
            all.extend(with_idle);
            errors.extend(more_errors);
        }
        sampling.store(false, Ordering::Relaxed);
        if let Some(samples) = sampler.map(|s| s.join().unwrap()) {
            // Growth after the first minute (allocator pools, caches and the index warm up first).
            let settled = samples.get(60.min(samples.len().saturating_sub(1))).copied().unwrap_or(0);
            let (last, max) = (samples.last().copied().unwrap_or(0), samples.iter().max().copied().unwrap_or(0));
            println!(
                "server RSS: {} samples; at 60 s {} MiB, max {} MiB, last {} MiB; growth after 60 s {:+.1}%",
                samples.len(),
                settled / 1024,
                max / 1024,
                last / 1024,
                (last as f64 / settled.max(1) as f64 - 1.0) * 100.0
            );
        }
        if let Some(server) = server {
            server.stop().await;
        }
        if let Some(c) = child.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
        println!(
            "m1 serve load: {clients} clients, {secs} s, {RECORDS} records, loopback, server {}",
            if external.is_some() { "in its own process" } else { "in-process" }
        );
        println!("requests ok: {}, errors: {}", all.len(), errors.len());
        report("served over HTTP:", &all, secs as f64);
        for e in errors.iter().take(10) {
            println!("error: {e}");
        }
        assert!(errors.is_empty(), "{} errors", errors.len());
        all.len() as f64 / secs as f64
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
