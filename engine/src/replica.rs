//! Storage DR for the lake: asynchronous replication of the table log and its files to a second
//! location, failover to it and failback (SingleStore's `storage/DR`).
//!
//! Which location may commit is recorded in the log itself (`m1.primary` in `metaData`, see
//! [`crate::log`]): setting DR up commits the primary's own location, failover commits the
//! replica's at the old primary (a fence) and at the replica (its promotion), failback commits
//! the original location at the current primary (a handover) and ships it. Every process holding
//! a location therefore learns that it was fenced from the log it already reads, and a commit
//! there fails with [`EngineError::Fenced`] instead of forking history.
//!
//! Invariants:
//! - A commit is shipped after every data file it adds, and commits are shipped in version order
//!   with put-if-absent; so the replica's log is always a prefix of the primary's and every
//!   version it has is complete (nothing partial is visible).
//! - The replica never commits on its own while it is a replica (its log names another primary).
//! - `dr.json` (the settings and the state) is written to both locations; the one at the
//!   location that is primary now is authoritative.

use serde::{Deserialize, Serialize};

use crate::backup::copy_file;
use crate::environment::{Environment, now_ms};
use crate::error::{EngineError, Result};
use crate::log::{self, Action, TableState};
use crate::storage::{ObjectStoreOptions, Storage};

/// The DR settings and state, at the root of both locations.
pub const DR_FILE: &str = "dr.json";

/// Where DR is in its life (SingleStore's states).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DrState {
    /// The replica is being seeded.
    SettingUp,
    /// Commits are shipped to the replica as they land.
    Replicating,
    /// The replica took over; the original location is fenced.
    FailedOver,
    /// The original location is being brought back.
    FailingBack,
}

/// The DR settings (`dr.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DrConfig {
    /// The location that takes writes now.
    pub primary: String,
    /// The other location.
    pub replica: String,
    /// Object-store settings of the primary's location.
    #[serde(default)]
    pub primary_options: ObjectStoreOptions,
    /// Object-store settings of the replica's location.
    #[serde(default)]
    pub replica_options: ObjectStoreOptions,
    /// Where DR is.
    pub state: DrState,
    /// When it entered that state, epoch ms.
    pub since: i64,
    /// The version both locations shared when the replica took over.
    #[serde(default)]
    pub failover_version: Option<u64>,
    /// The last replication error and when it happened.
    #[serde(default)]
    pub last_error: Option<String>,
    /// Epoch ms of the last error.
    #[serde(default)]
    pub last_error_at: Option<i64>,
}

impl DrConfig {
    /// Reads the settings at a location, if DR was ever set up there.
    pub fn read(storage: &Storage) -> Result<Option<DrConfig>> {
        match storage.get(DR_FILE)? {
            None => Ok(None),
            Some(b) => Ok(Some(
                serde_json::from_slice(&b).map_err(|e| EngineError::BadData(format!("{DR_FILE} is damaged: {e}")))?,
            )),
        }
    }

    /// Writes the settings at a location (owner-only on a local disk: they may hold credentials).
    pub fn write(&self, storage: &Storage) -> Result<()> {
        storage.put(DR_FILE, serde_json::to_vec_pretty(self)?.into())?;
        if let Some(root) = storage.local_root() {
            use std::os::unix::fs::PermissionsExt;
            let path = root.join(DR_FILE);
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                .map_err(|e| EngineError::io(&path, e))?;
        }
        Ok(())
    }

    /// The primary's and the replica's storage.
    pub fn open(&self) -> Result<(Storage, Storage)> {
        Ok((Storage::open(&self.primary, &self.primary_options)?, Storage::open(&self.replica, &self.replica_options)?))
    }
}

/// What one round of shipping did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ShipReport {
    /// Commits shipped.
    pub commits: u64,
    /// Files shipped (data files, checkpoints, settings).
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
    /// The replica's version afterwards.
    pub replica_version: u64,
}

/// The newest version a reader of `storage` sees (`None`: no table there).
pub fn version_at(storage: &Storage) -> Result<Option<u64>> {
    Ok(TableState::load(storage)?.map(|s| s.version))
}

/// The data files a commit adds.
fn added(body: &[u8]) -> Vec<(String, u64)> {
    body.split(|b| *b == b'\n')
        .filter_map(|line| match serde_json::from_slice::<Action>(line) {
            Ok(Action::Add(a)) => Some((a.path, a.size.max(0) as u64)),
            _ => None,
        })
        .collect()
}

fn present(to: &Storage, path: &str, size: u64) -> Result<bool> {
    Ok(to.head(path)?.is_some_and(|m| m.size == size))
}

/// Ships the commits of `from` after the version `to` has, in order, each after its files;
/// then the checkpoints and settings files. `upto` bounds the versions shipped.
pub fn ship(from: &Storage, to: &Storage, upto: Option<u64>) -> Result<ShipReport> {
    let mut report = ShipReport::default();
    let newest = match upto {
        Some(v) => v,
        None => version_at(from)?.ok_or_else(|| EngineError::NoEnvironment(from.url().into()))?,
    };
    let mut next = match version_at(to)? {
        Some(v) => v + 1,
        None => seed(from, to, &mut report)?,
    };
    while next <= newest {
        let path = log::version_path(next);
        let Some(body) = from.get(&path)? else {
            return Err(EngineError::BadData(format!(
                "cannot ship version {next} from {}: it is not in its log (retention removed it before it was shipped; \
                 set DR up again)",
                from.url()
            )));
        };
        for (file, size) in added(&body) {
            if !present(to, &file, size)? {
                report.bytes += copy_file(from, &file, to, &file)?;
                report.files += 1;
            }
        }
        if !to.put_if_absent(&path, body.clone())? && to.get(&path)?.as_deref() != Some(&body[..]) {
            return Err(EngineError::BadData(format!(
                "the log at {} differs from {} at version {next}: the locations have diverged",
                to.url(),
                from.url()
            )));
        }
        report.commits += 1;
        next += 1;
    }
    report.replica_version = next.saturating_sub(1);
    // Checkpoints the replica lacks (readers open faster), and the newest pointer.
    let listing = crate::history::listing(from)?;
    for &c in listing.checkpoints.iter().filter(|&&c| c <= report.replica_version) {
        let p = crate::checkpoint::checkpoint_path(c);
        if to.head(&p)?.is_none() {
            report.bytes += copy_file(from, &p, to, &p)?;
            report.files += 1;
        }
    }
    if let Some(c) = listing.checkpoints.range(..=report.replica_version).next_back()
        && crate::checkpoint::pointer(to) < Some(*c)
    {
        let state = crate::history::rebuild(to, *c, report.replica_version)?;
        crate::checkpoint::write_pointer(to, &state)?;
    }
    Ok(report)
}

/// Starts an empty replica: from version 0 when the log still starts there, else from the oldest
/// checkpoint still usable, with the files of its state. Returns the first version to ship.
fn seed(from: &Storage, to: &Storage, report: &mut ShipReport) -> Result<u64> {
    let listing = crate::history::listing(from)?;
    if listing.commits.contains(&0) {
        return Ok(0);
    }
    let newest = version_at(from)?.unwrap_or(0);
    let base = listing.oldest_restorable(newest);
    let state = crate::history::rebuild(from, base, newest)?;
    for s in &state.segments {
        report.bytes += copy_file(from, &s.path, to, &s.path)?;
        report.files += 1;
    }
    crate::checkpoint::write(to, &state)?;
    report.files += 1;
    Ok(base + 1)
}

impl Environment {
    /// The DR settings of this environment, if DR was set up.
    pub fn dr_config(&self) -> Result<Option<DrConfig>> {
        DrConfig::read(self.storage())
    }

    /// Sets up DR to `replica` (`dr/setup`): names this location the primary in the log, seeds
    /// the replica and ships what is committed. From then on [`Environment::ship_to_replica`]
    /// keeps it up to date.
    pub fn dr_setup(&self, replica: &str, options: &ObjectStoreOptions) -> Result<DrConfig> {
        let to = Storage::open(replica, options)?;
        if to.url() == self.storage().url() {
            return Err(EngineError::bad_parameter("replica", "the replica must be another location than the primary"));
        }
        if let Some(cfg) = self.dr_config()?
            && !(cfg.state == DrState::SettingUp && cfg.replica == to.url())
        {
            // (A setup cut short is resumed: shipping is idempotent.)
            return Err(EngineError::bad_parameter(
                "replica",
                format!("DR is set up already (to '{}', {:?}); see dr/status", cfg.replica, cfg.state),
            ));
        }
        match TableState::load(&to)? {
            Some(theirs) if theirs.table_id != self.snapshot().table_id => {
                return Err(EngineError::EnvironmentExists(to.url().to_string()));
            }
            _ => {}
        }
        let mut cfg = DrConfig {
            primary: self.storage().url().to_string(),
            replica: to.url().to_string(),
            primary_options: self.storage().options().clone(),
            replica_options: options.clone(),
            state: DrState::SettingUp,
            since: now_ms(),
            failover_version: None,
            last_error: None,
            last_error_at: None,
        };
        cfg.write(self.storage())?;
        self.set_primary(&cfg.primary, "DR SETUP", true, None)?;
        ship(self.storage(), &to, None)?;
        for f in [crate::environment::CONFIG_FILE, crate::system::SYSTEM_FILE] {
            if self.storage().head(f)?.is_some() {
                copy_file(self.storage(), f, &to, f)?;
            }
        }
        cfg.state = DrState::Replicating;
        cfg.since = now_ms();
        cfg.write(self.storage())?;
        cfg.write(&to)?;
        Ok(cfg)
    }

    /// Ships what the replica lacks, if this location is a replicating primary; returns what
    /// was shipped (`None`: nothing to do here). An error is recorded in `dr/status`.
    pub fn ship_to_replica(&self) -> Result<Option<ShipReport>> {
        let Some(mut cfg) = self.dr_config()? else { return Ok(None) };
        if cfg.primary != self.storage().url() || cfg.state != DrState::Replicating {
            return Ok(None);
        }
        let result = (|| {
            let (_, to) = cfg.open()?;
            let state = self.refresh()?;
            // A fenced primary ships nothing: its newest commits are not the history any more.
            self.check_writable(&state)?;
            ship(self.storage(), &to, Some(state.version))
        })();
        match &result {
            Err(e) => {
                cfg.last_error = Some(e.to_string());
                cfg.last_error_at = Some(now_ms());
                let _ = cfg.write(self.storage());
            }
            Ok(_) if cfg.last_error.is_some() => {
                cfg.last_error = None;
                let _ = cfg.write(self.storage());
            }
            Ok(_) => {}
        }
        result.map(Some)
    }

    /// DR as `dr/status` reports it: settings, state, versions and lag.
    pub fn dr_status(&self) -> Result<serde_json::Value> {
        let Some(cfg) = self.dr_config()? else {
            return Err(EngineError::bad_parameter(
                "dr",
                "DR is not set up for this environment; set it up with dr/setup",
            ));
        };
        let (primary, replica) = cfg.open()?;
        let primary_version = version_at(&primary)?.unwrap_or(0);
        let (replica_version, replica_error) = match version_at(&replica) {
            Ok(v) => (v, None),
            Err(e) => (None, Some(e.to_string())),
        };
        let shipped = replica_version.unwrap_or(0);
        let (mut lag_bytes, mut oldest_pending) = (0u64, None);
        if cfg.state == DrState::Replicating {
            for v in shipped + 1..=primary_version {
                if let Some(body) = primary.get(&log::version_path(v))? {
                    lag_bytes += added(&body).iter().map(|(_, s)| s).sum::<u64>();
                    if oldest_pending.is_none() {
                        oldest_pending = crate::history::commit_time(&body);
                    }
                }
            }
        }
        let lag_commits = if cfg.state == DrState::Replicating { primary_version.saturating_sub(shipped) } else { 0 };
        let lag_seconds = oldest_pending.map_or(0.0, |t| (now_ms() - t).max(0) as f64 / 1000.0);
        Ok(serde_json::json!({
            "state": cfg.state,
            "since": cfg.since,
            "primary": cfg.primary,
            "replica": cfg.replica,
            "primaryVersion": primary_version,
            "replicaVersion": replica_version,
            "lagCommits": lag_commits,
            "lagBytes": lag_bytes,
            "lagSeconds": lag_seconds,
            "failoverVersion": cfg.failover_version,
            "lastError": cfg.last_error.or(replica_error),
            "lastErrorAt": cfg.last_error_at,
        }))
    }

    /// Commits `primary` as the only location that may commit (`checked: false` commits even
    /// though this location is not the primary now: a promotion).
    fn set_primary(&self, primary: &str, operation: &str, checked: bool, next_key: Option<u64>) -> Result<u64> {
        let state = self.commit_as(checked, |state| {
            let now = now_ms();
            let mut actions = vec![
                log::commit_info(operation, now, serde_json::json!({"primary": primary})),
                log::metadata_action(&state.table_id, &state.schema, &state.columns, Some(primary), now),
            ];
            if let Some(k) = next_key.filter(|&k| k > state.next_key) {
                actions.push(log::next_key_action(k, now));
            }
            Ok(Some(actions))
        })?;
        Ok(state.version)
    }

    /// Makes the replica named in `replica`'s `dr.json` the writable primary (`dr/failover`):
    /// fences the old primary if it can be reached (a commit there naming the replica, so every
    /// writer of it fails from then on), then promotes the replica with keys above every key
    /// either location issued. Returns the new settings.
    pub fn dr_failover(replica: &str, options: &ObjectStoreOptions) -> Result<DrConfig> {
        let r = Storage::open(replica, options)?;
        let mut cfg = DrConfig::read(&r)?.filter(|c| c.replica == r.url()).ok_or_else(|| {
            EngineError::bad_parameter("dr", format!("'{}' is not a DR replica: nothing to fail over to", r.url()))
        })?;
        if cfg.state != DrState::Replicating {
            return Err(EngineError::bad_parameter(
                "dr",
                format!("DR is {:?}, not replicating: no failover", cfg.state),
            ));
        }
        let replica_env = Environment::open_with(&cfg.replica, &cfg.replica_options)?;
        let shared = replica_env.snapshot().version;
        // Fence the old primary; if it cannot be reached it is lost anyway, and says so when back.
        let fenced = Environment::open_with(&cfg.primary, &cfg.primary_options)
            .and_then(|old| Ok((old.set_primary(&cfg.replica, "DR FENCE", true, None)?, old.snapshot().next_key)));
        let next_key = fenced.as_ref().ok().map(|(_, k)| *k);
        replica_env.set_primary(&cfg.replica, "DR FAILOVER", false, next_key)?;
        let old_primary = std::mem::replace(&mut cfg.primary, cfg.replica.clone());
        cfg.replica = old_primary;
        std::mem::swap(&mut cfg.primary_options, &mut cfg.replica_options);
        cfg.state = DrState::FailedOver;
        cfg.since = now_ms();
        cfg.failover_version = Some(shared);
        cfg.last_error = fenced.err().map(|e| format!("the old primary could not be fenced: {e}"));
        cfg.last_error_at = cfg.last_error.as_ref().map(|_| now_ms());
        cfg.write(&r)?;
        if let Ok((_, old)) = cfg.open() {
            let _ = cfg.write(&old);
        }
        Ok(cfg)
    }

    /// Brings the original location back (`dr/failback`), called on the current primary: cuts
    /// its log back to the version both shared, ships everything committed here since, hands the
    /// primary role back with a commit here (from which on this location is the replica again),
    /// ships that too and resumes replication. Returns the new settings.
    pub fn dr_failback(&self) -> Result<DrConfig> {
        let mut cfg = self
            .dr_config()?
            .filter(|c| c.primary == self.storage().url() && c.state == DrState::FailedOver)
            .ok_or_else(|| {
                EngineError::bad_parameter("dr", "this location is not a failed-over primary: nothing to fail back")
            })?;
        let shared = cfg.failover_version.unwrap_or(0);
        cfg.state = DrState::FailingBack;
        cfg.since = now_ms();
        cfg.write(self.storage())?;
        let (_, original) = cfg.open()?;
        // The original's commits after the shared version (its fence, any it never shipped) go.
        let listing = crate::history::listing(&original)?;
        for &v in listing.commits.iter().rev().filter(|&&v| v > shared) {
            original.delete(&log::version_path(v))?;
        }
        for &c in listing.checkpoints.iter().filter(|&&c| c > shared) {
            original.delete(&crate::checkpoint::checkpoint_path(c))?;
        }
        match listing.checkpoints.range(..=shared).next_back() {
            Some(&c) => {
                let state = crate::history::rebuild(&original, c, shared)?;
                crate::checkpoint::write_pointer(&original, &state)?;
            }
            None => original.delete(crate::checkpoint::LAST_CHECKPOINT)?,
        }
        ship(self.storage(), &original, None)?;
        self.set_primary(&cfg.replica, "DR FAILBACK", true, None)?;
        let report = ship(self.storage(), &original, None)?;
        for f in [crate::environment::CONFIG_FILE, crate::system::SYSTEM_FILE] {
            if self.storage().head(f)?.is_some() {
                copy_file(self.storage(), f, &original, f)?;
            }
        }
        let back = std::mem::replace(&mut cfg.replica, cfg.primary.clone());
        cfg.primary = back;
        std::mem::swap(&mut cfg.primary_options, &mut cfg.replica_options);
        cfg.state = DrState::Replicating;
        cfg.since = now_ms();
        cfg.failover_version = None;
        cfg.last_error = None;
        cfg.last_error_at = None;
        cfg.write(&original)?;
        cfg.write(self.storage())?;
        debug_assert_eq!(Some(report.replica_version), version_at(self.storage())?);
        Ok(cfg)
    }

    /// The DR locations and their roles (`dr/regions`).
    pub fn dr_regions(&self) -> Result<serde_json::Value> {
        let cfg = self.dr_config()?;
        let mut out = vec![serde_json::json!({"location": self.storage().url(), "role": "primary"})];
        if let Some(c) = cfg {
            out[0]["role"] = if c.primary == self.storage().url() { "primary" } else { "replica" }.into();
            let other = if c.primary == self.storage().url() { &c.replica } else { &c.primary };
            let role = if c.primary == self.storage().url() { "replica" } else { "primary" };
            out.push(serde_json::json!({"location": other, "role": role}));
        }
        Ok(serde_json::Value::Array(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_round_trip_and_states_are_kebab_case() {
        let cfg = DrConfig {
            primary: "/a".into(),
            replica: "s3://b/r".into(),
            primary_options: vec![],
            replica_options: vec![("aws_region".into(), "us-east-1".into())],
            state: DrState::FailingBack,
            since: 5,
            failover_version: Some(3),
            last_error: None,
            last_error_at: None,
        };
        let text = serde_json::to_string(&cfg).unwrap();
        assert!(text.contains("\"state\":\"failing-back\""), "{text}");
        assert_eq!(serde_json::from_str::<DrConfig>(&text).unwrap(), cfg);
    }
}
