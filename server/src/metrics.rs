//! `GET /metrics`: the server's OpenMetrics text exposition (`prometheus-client`).
//!
//! Counted as they happen: requests by endpoint and status, their latency, rows and bytes
//! published, WAL fsync times. Sampled in the background (every [`SAMPLE_EVERY`], so a scrape
//! only formats numbers, whatever the number of environments): data-store documents, bytes and
//! index lag, session-store documents, backups, DR state and lag, environments by state.
//!
//! Invariant: label values come from the endpoint table, the catalog and a fixed set of states,
//! never from what a caller sends, so a hostile client cannot grow the series without bound.

use std::sync::LazyLock;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::dispatch::App;

/// The media type of the exposition.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// How often sampled figures are refreshed.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(2);

type Labels = Vec<(&'static str, String)>;
type Histograms = Family<Labels, Histogram, fn() -> Histogram>;
type FloatGauge = Gauge<f64, AtomicU64>;

fn latency_histogram() -> Histogram {
    // 50 µs to about 26 s.
    Histogram::new(exponential_buckets(0.000_05, 2.0, 20))
}

/// Every WAL fsync of the process (session stores report them through a hook).
static WAL_FSYNC: LazyLock<Histogram> = LazyLock::new(|| Histogram::new(exponential_buckets(0.000_01, 2.0, 20)));

fn observe_fsync(took: Duration) {
    WAL_FSYNC.observe(took.as_secs_f64());
}

/// The server's metrics.
pub struct Metrics {
    registry: Registry,
    requests: Family<Labels, Counter>,
    latency: Histograms,
    publish_rows: Family<Labels, Counter>,
    publish_bytes: Family<Labels, Counter>,
    store_documents: Family<Labels, Gauge>,
    store_bytes: Family<Labels, Gauge>,
    index_lag: Family<Labels, Gauge>,
    session_documents: Family<Labels, Gauge>,
    backups: Family<Labels, Gauge>,
    dr_lag_commits: Family<Labels, Gauge>,
    dr_lag_seconds: Family<Labels, FloatGauge>,
    dr_state: Family<Labels, Gauge>,
    environments: Family<Labels, Gauge>,
    stage_bytes: Family<Labels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// A registry with every metric, all zero.
    pub fn new() -> Metrics {
        m1::session::wal::on_fsync(observe_fsync);
        let mut registry = Registry::with_prefix("m1");
        let m = Metrics {
            requests: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
            publish_rows: Family::default(),
            publish_bytes: Family::default(),
            store_documents: Family::default(),
            store_bytes: Family::default(),
            index_lag: Family::default(),
            session_documents: Family::default(),
            backups: Family::default(),
            dr_lag_commits: Family::default(),
            dr_lag_seconds: Family::default(),
            dr_state: Family::default(),
            environments: Family::default(),
            stage_bytes: Family::default(),
            registry: Registry::default(),
        };
        registry.register("http_requests", "HTTP requests answered, by endpoint and status", m.requests.clone());
        registry.register(
            "http_request_duration_seconds",
            "time to answer a request (until its headers), by endpoint",
            m.latency.clone(),
        );
        registry.register("publish_rows", "records published, by environment", m.publish_rows.clone());
        registry.register("publish_bytes", "bytes read by publishes, by environment", m.publish_bytes.clone());
        registry.register("data_store_documents", "documents in a data store", m.store_documents.clone());
        registry.register("data_store_bytes", "bytes on disk of a data store", m.store_bytes.clone());
        registry.register(
            "data_store_index_lag_records",
            "lake records a data store has not indexed yet",
            m.index_lag.clone(),
        );
        registry.register("session_store_documents", "documents in a session store", m.session_documents.clone());
        registry.register("backups", "backups kept, by environment", m.backups.clone());
        registry.register("dr_lag_commits", "commits the DR replica lacks", m.dr_lag_commits.clone());
        registry.register("dr_lag_seconds", "age of the oldest commit the DR replica lacks", m.dr_lag_seconds.clone());
        registry.register("dr_state", "storage DR state of an environment (1 for its state)", m.dr_state.clone());
        registry.register("environments", "environments by state (running, idle, stopped)", m.environments.clone());
        registry.register("stage_bytes", "bytes in an environment's stage", m.stage_bytes.clone());
        registry.register("session_wal_fsync_seconds", "time each session-store WAL fsync took", WAL_FSYNC.clone());
        Metrics { registry, ..m }
    }

    /// Counts an answered request.
    pub fn request(&self, endpoint: &str, status: u16, took: Duration) {
        let endpoint = endpoint.to_string();
        self.requests.get_or_create(&vec![("endpoint", endpoint.clone()), ("status", status.to_string())]).inc();
        self.latency.get_or_create(&vec![("endpoint", endpoint)]).observe(took.as_secs_f64());
    }

    /// Counts a publish's rows and bytes.
    pub fn published(&self, env: &str, rows: u64, bytes: u64) {
        let labels = vec![("environment", env.to_string())];
        self.publish_rows.get_or_create(&labels).inc_by(rows);
        self.publish_bytes.get_or_create(&labels).inc_by(bytes);
    }

    /// The exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }

    /// Refreshes the sampled figures from the catalog and the open environments.
    pub fn sample(&self, app: &App) {
        let mut counts = [("running", 0i64), ("idle", 0), ("stopped", 0)];
        let entries = app.catalog.list().unwrap_or_default();
        for e in &entries {
            let state = if e.service.stopped { "stopped" } else { app.state(&e.id) };
            if let Some(c) = counts.iter_mut().find(|(s, _)| *s == state) {
                c.1 += 1;
            }
        }
        for (state, n) in counts {
            self.environments.get_or_create(&vec![("state", state.to_string())]).set(n);
        }
        // Gauges of environments that closed or went away must not linger.
        for family in [
            &self.store_documents,
            &self.store_bytes,
            &self.index_lag,
            &self.session_documents,
            &self.backups,
            &self.stage_bytes,
            &self.dr_lag_commits,
            &self.dr_state,
        ] {
            family.clear();
        }
        self.dr_lag_seconds.clear();
        for h in app.open_handles() {
            let env = &h.env;
            let name = h.name.clone();
            let lake_rows: u64 = env.engine().snapshot().segments.iter().map(|s| s.rows()).sum();
            for s in env.stores().list(env.engine()).unwrap_or_default() {
                let labels = vec![("environment", name.clone()), ("store", s.def.name.clone())];
                self.store_documents.get_or_create(&labels).set(s.documents as i64);
                self.store_bytes.get_or_create(&labels).set(s.bytes as i64);
                self.index_lag.get_or_create(&labels).set(lake_rows.saturating_sub(s.documents) as i64);
            }
            for s in env.sessions().list().unwrap_or_default() {
                let labels = vec![("environment", name.clone()), ("store", s.name.clone())];
                self.session_documents.get_or_create(&labels).set(s.documents.unwrap_or(0) as i64);
            }
            let labels = vec![("environment", name.clone())];
            self.backups.get_or_create(&labels).set(env.backup_list().map_or(0, |b| b.len() as i64));
            if let Ok(stage) = m1::stage::Stage::of(env) {
                self.stage_bytes.get_or_create(&labels).set(stage.bytes() as i64);
            }
            if let Ok(Some(_)) = env.engine().dr_config()
                && let Ok(status) = env.dr_status()
            {
                self.dr_lag_commits.get_or_create(&labels).set(status["lagCommits"].as_i64().unwrap_or(0));
                self.dr_lag_seconds.get_or_create(&labels).set(status["lagSeconds"].as_f64().unwrap_or(0.0));
                let state = status["state"].as_str().unwrap_or("unknown").to_string();
                self.dr_state.get_or_create(&vec![("environment", name.clone()), ("state", state)]).set(1);
            }
        }
    }
}
