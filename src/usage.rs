//! Usage over time: per environment, storage bytes by part (lake, data stores, session stores,
//! archive, stage, backups), records, documents, requests and compute seconds, sampled into a
//! small durable series (`$M1_HOME/usage/<environment id>.jsonl`, one JSON line per sample,
//! appended and synced), and summed into seed 003's `BillingUsage` for a time window.
//!
//! Requests and compute seconds are the sampling process's running totals; a total lower than
//! the one before it means the process restarted, so the increase over a period is the sum of
//! the steps between samples, restarts counted from zero.

use std::io::Write;
use std::path::{Path, PathBuf};

use m1_query::store::indexer::dir_bytes;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::Environment;
use crate::endpoint::v1::{iso, uuid};
use crate::error::Result;
use m1_engine::{Catalog, CatalogEntry, EngineError};

/// Storage bytes by part.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StorageBytes {
    /// Lake segments and the table log.
    pub lake: u64,
    /// Data-store indexes.
    pub stores: u64,
    /// Session stores.
    pub sessions: u64,
    /// Archived raw items (`/write`).
    pub archive: u64,
    /// The stage.
    pub stage: u64,
    /// Backups.
    pub backups: u64,
}

impl StorageBytes {
    /// All parts together.
    pub fn total(&self) -> u64 {
        self.lake + self.stores + self.sessions + self.archive + self.stage + self.backups
    }
}

/// One sample of one environment.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Sample {
    /// When, epoch ms.
    pub time: i64,
    /// Storage bytes by part.
    pub storage: StorageBytes,
    /// Records in the lake (`None` when the environment was not open to count them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
    /// Documents in its data stores and session stores.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub documents: Option<u64>,
    /// Requests answered by the sampling process, since it started.
    pub requests: u64,
    /// Seconds the sampling process spent answering them, since it started.
    pub compute_seconds: f64,
}

/// The storage of an environment on local disk, by part (object-store environments count 0:
/// listing a bucket per sample would cost more than the figure is worth).
pub fn storage_of(entry: &CatalogEntry) -> StorageBytes {
    let Some(root) = m1_engine::catalog::local_path(&entry.url) else { return StorageBytes::default() };
    StorageBytes {
        lake: dir_bytes(&root.join(m1_engine::environment::LAKE_DIR)) + dir_bytes(&root.join("_delta_log")),
        stores: dir_bytes(&root.join("stores")),
        sessions: dir_bytes(&root.join("sessions")),
        archive: dir_bytes(&root.join("archive")),
        stage: dir_bytes(&root.join("stage")),
        backups: dir_bytes(&root.join(m1_engine::backup::BACKUPS_DIR)),
    }
}

/// Records and documents of an open environment.
pub fn counts_of(env: &Environment) -> (u64, u64) {
    let rows = env.engine().snapshot().segments.iter().map(|s| s.rows()).sum();
    let stores: u64 = env.stores().list(env.engine()).map(|l| l.iter().map(|s| s.documents).sum()).unwrap_or(0);
    let sessions: u64 = env.sessions().list().map(|l| l.iter().filter_map(|s| s.documents).sum()).unwrap_or(0);
    (rows, stores + sessions)
}

/// The series file of an environment.
fn file(catalog: &Catalog, id: &str) -> PathBuf {
    catalog.home().join("usage").join(format!("{id}.jsonl"))
}

/// A series file over this size is compacted before the next sample is appended.
const COMPACT_ABOVE_BYTES: u64 = 4 << 20;
/// Samples younger than this are kept as taken; older ones one per hour (the last of it).
const FULL_RESOLUTION_MS: i64 = 7 * 86_400_000;

/// Rewrites a series keeping every sample newer than `now - keep_ms` and the last sample of each
/// older hour, so the series stays small and sums over it stay right (running totals: the last
/// sample of an hour carries its total; storage: an hour's last figure stands for it).
pub fn compact(path: &Path, now: i64, keep_ms: i64) -> Result<()> {
    let text = std::fs::read_to_string(path).map_err(|e| EngineError::io(path, e))?;
    let samples: Vec<Sample> = text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let mut kept: Vec<&Sample> = Vec::new();
    for (i, s) in samples.iter().enumerate() {
        let recent = s.time >= now - keep_ms;
        let last_of_hour = samples.get(i + 1).is_none_or(|n| n.time / 3_600_000 != s.time / 3_600_000);
        if recent || last_of_hour {
            kept.push(s);
        }
    }
    let mut out = Vec::new();
    for s in kept {
        out.extend(serde_json::to_vec(s)?);
        out.push(b'\n');
    }
    let tmp = path.with_extension("jsonl.tmp");
    std::fs::write(&tmp, &out)
        .and_then(|()| std::fs::File::open(&tmp)?.sync_all())
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| EngineError::io(path, e))?;
    Ok(())
}

/// Appends a sample to an environment's series (synced, so a crash keeps what was sampled).
pub fn record(catalog: &Catalog, id: &str, sample: &Sample) -> Result<()> {
    let path = file(catalog, id);
    let dir = path.parent().expect("in usage/");
    std::fs::create_dir_all(dir).map_err(|e| EngineError::io(dir, e))?;
    if std::fs::metadata(&path).is_ok_and(|m| m.len() > COMPACT_ABOVE_BYTES) {
        compact(&path, sample.time, FULL_RESOLUTION_MS)?;
    }
    let mut f =
        std::fs::OpenOptions::new().create(true).append(true).open(&path).map_err(|e| EngineError::io(&path, e))?;
    let mut line = Vec::new();
    // A torn last line (a crash while appending) must not swallow this one.
    let len = f.metadata().map_err(|e| EngineError::io(&path, e))?.len();
    if len > 0 {
        use std::io::{Read, Seek, SeekFrom};
        let mut last = [0u8; 1];
        let mut r = std::fs::File::open(&path).map_err(|e| EngineError::io(&path, e))?;
        r.seek(SeekFrom::Start(len - 1))
            .and_then(|_| r.read_exact(&mut last))
            .map_err(|e| EngineError::io(&path, e))?;
        if last[0] != b'\n' {
            line.push(b'\n');
        }
    }
    line.extend(serde_json::to_vec(sample)?);
    line.push(b'\n');
    f.write_all(&line).and_then(|()| f.sync_data()).map_err(|e| EngineError::io(&path, e))?;
    Ok(())
}

/// An environment's samples with `from <= time < to`, oldest first (a torn last line, from a
/// crash while appending, is skipped).
pub fn series(catalog: &Catalog, id: &str, from: i64, to: i64) -> Result<Vec<Sample>> {
    let path = file(catalog, id);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(EngineError::io(&path, e).into()),
    };
    Ok(text
        .lines()
        .filter_map(|l| serde_json::from_str::<Sample>(l).ok())
        .filter(|s| s.time >= from && s.time < to)
        .collect())
}

/// The increase of a running total over consecutive samples (restarts count from zero).
fn increase(values: impl IntoIterator<Item = f64>, before: Option<f64>) -> f64 {
    let mut last = before;
    let mut sum = 0.0;
    for v in values {
        sum += match last {
            Some(l) if v >= l => v - l,
            // The first sample of the series, or the first after a restart: its total began
            // at zero.
            _ => v,
        };
        last = Some(v);
    }
    sum
}

/// The periods of `[from, to)` for an aggregation (`hour`, `day`, `month`).
pub fn periods(from: i64, to: i64, by: &str) -> Vec<(i64, i64)> {
    use chrono::{Datelike, TimeZone, Timelike, Utc};
    let Some(start) = Utc.timestamp_millis_opt(from).single() else { return Vec::new() };
    let mut at = match by {
        "day" => start.with_hour(0).and_then(|t| t.with_minute(0)).and_then(|t| t.with_second(0)),
        "month" => Utc.with_ymd_and_hms(start.year(), start.month(), 1, 0, 0, 0).single(),
        _ => start.with_minute(0).and_then(|t| t.with_second(0)),
    }
    .and_then(|t| t.with_nanosecond(0))
    .unwrap_or(start);
    let mut out = Vec::new();
    while at.timestamp_millis() < to && out.len() <= 100_000 {
        let next = match by {
            "day" => at + chrono::Duration::days(1),
            "month" => {
                let (y, m) = if at.month() == 12 { (at.year() + 1, 1) } else { (at.year(), at.month() + 1) };
                Utc.with_ymd_and_hms(y, m, 1, 0, 0, 0).single().unwrap_or(at + chrono::Duration::days(31))
            }
            _ => at + chrono::Duration::hours(1),
        };
        out.push((at.timestamp_millis().max(from), next.timestamp_millis().min(to)));
        at = next;
    }
    out
}

/// Seed 003's `billingUsage` for environments `envs` (id, name) of organization `owner`.
pub fn billing(
    catalog: &Catalog,
    envs: &[(String, String)],
    owner: &str,
    metric: Option<&str>,
    from: i64,
    to: i64,
    by: &str,
) -> Result<Value> {
    let periods = periods(from, to, by);
    let mut compute = Vec::new();
    let mut storage = Vec::new();
    for (id, name) in envs {
        let all = series(catalog, id, i64::MIN, to)?;
        for &(start, end) in &periods {
            let before = all.iter().rev().find(|s| s.time < start);
            let inside: Vec<&Sample> = all.iter().filter(|s| s.time >= start && s.time < end).collect();
            let item = |value: String| {
                json!({"resourceId": uuid(id), "resourceName": name, "resourceType": "workspace",
                       "ownerId": owner, "startTime": iso(start), "endTime": iso(end), "value": value})
            };
            let seconds = increase(inside.iter().map(|s| s.compute_seconds), before.map(|s| s.compute_seconds));
            compute.push(item(format!("{seconds:.3}")));
            let avg = if inside.is_empty() {
                before.map_or(0, |s| s.storage.total())
            } else {
                inside.iter().map(|s| s.storage.total()).sum::<u64>() / inside.len() as u64
            };
            storage.push(item(avg.to_string()));
        }
    }
    let mut out = Vec::new();
    if metric.is_none_or(|m| m == "ComputeCredit") {
        out.push(json!({"metric": "ComputeCredit", "description": "compute seconds m1 serve spent answering requests",
                        "usage": compute}));
    }
    if metric.is_none_or(|m| m == "StorageAvgByte") {
        out.push(json!({"metric": "StorageAvgByte", "description": "average bytes stored (lake, stores, sessions, archive, stage, backups)",
                        "usage": storage}));
    }
    Ok(json!({"billingUsage": out}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn increases_count_restarts_from_zero() {
        assert_eq!(increase([1.0, 3.0, 6.0], Some(0.5)), 5.5);
        assert_eq!(increase([5.0, 2.0, 4.0], Some(4.0)), 1.0 + 2.0 + 2.0);
        assert_eq!(increase([5.0, 7.0], None), 7.0);
    }

    #[test]
    fn periods_cover_the_window() {
        let from = 1_700_000_000_000; // 2023-11-14T22:13:20Z
        let hours = periods(from, from + 3 * 3_600_000, "hour");
        assert_eq!(hours.len(), 4);
        assert_eq!(hours[0].0, from);
        assert_eq!(hours[1].0 % 3_600_000, 0);
        assert_eq!(hours.last().unwrap().1, from + 3 * 3_600_000);
        assert_eq!(periods(from, from + 40 * 86_400_000, "month").len(), 2);
        assert_eq!(periods(from, from + 86_400_000, "day").len(), 2);
    }

    #[test]
    fn compaction_keeps_recent_samples_and_the_last_of_each_older_hour() {
        let dir = tempfile::tempdir().unwrap();
        let cat = Catalog::open(dir.path()).unwrap();
        let hour = 3_600_000;
        // Ten hours of a sample a minute, with a running total and rising storage.
        let now = 10 * hour;
        for m in 0..600 {
            let s = Sample {
                time: m * 60_000,
                requests: m as u64,
                compute_seconds: m as f64,
                storage: StorageBytes { lake: m as u64, ..Default::default() },
                ..Default::default()
            };
            record(&cat, "e", &s).unwrap();
        }
        let before = series(&cat, "e", 0, now).unwrap();
        compact(&dir.path().join("usage/e.jsonl"), now, 2 * hour).unwrap();
        let after = series(&cat, "e", 0, now).unwrap();
        assert_eq!(after.len(), 8 + 120, "8 old hours of one sample, 2 recent hours whole");
        // Sums over whole hours come out the same.
        for (from, to) in [(0, now), (hour, 5 * hour), (7 * hour, now)] {
            let sum = |v: &[Sample]| {
                let before = v.iter().rev().find(|s| s.time < from).map(|s| s.compute_seconds);
                increase(v.iter().filter(|s| s.time >= from && s.time < to).map(|s| s.compute_seconds), before)
            };
            assert_eq!(sum(&before), sum(&after), "{from}..{to}");
        }
    }

    #[test]
    fn series_survive_a_torn_line() {
        let dir = tempfile::tempdir().unwrap();
        let cat = Catalog::open(dir.path()).unwrap();
        let s = Sample { time: 10, requests: 3, compute_seconds: 0.5, ..Default::default() };
        record(&cat, "e", &s).unwrap();
        record(&cat, "e", &Sample { time: 20, ..s.clone() }).unwrap();
        let path = dir.path().join("usage/e.jsonl");
        let mut f = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"time\": 30, \"stor").unwrap();
        let got = series(&cat, "e", 0, 100).unwrap();
        assert_eq!(got.len(), 2);
        record(&cat, "e", &Sample { time: 40, ..s.clone() }).unwrap();
        assert_eq!(series(&cat, "e", 0, 100).unwrap().len(), 3, "a sample after a torn line is kept");
        assert_eq!(got[0], s);
        assert_eq!(series(&cat, "e", 15, 100).unwrap().iter().map(|s| s.time).collect::<Vec<_>>(), [20, 40]);
    }
}
