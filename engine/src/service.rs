//! An environment managed as a service (seeds 003 and 004): its lifecycle state, the settings the
//! management API takes (tier, memory bounds, idle suspension, size), its IP access list, and the
//! workspace groups environments may belong to.
//!
//! These live in the catalog with the environment's entry, so `m1 ops` and `m1 serve` see the
//! same service. Fields that mean nothing for an embedded engine (provider, tier, size) are
//! validated as the seeds say, kept and reported, never dropped.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::error::{EngineError, Result};

/// The shortest idle timeout the seed allows (ClickHouse: "Must be >= 5 minutes").
pub const MIN_IDLE_TIMEOUT_MINUTES: u64 = 5;

/// A service's management settings (ClickHouse service, SingleStore workspace).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ServiceSettings {
    /// Stopped by an operator (`state stop`, workspace `suspend`): requests get a state error
    /// until it is started again. Idle suspension is not this: it lasts only in the server that
    /// suspended it and the next request undoes it.
    pub stopped: bool,
    /// When it was last stopped or started, epoch ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_changed: Option<i64>,
    /// ClickHouse tier, recorded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    /// Cloud provider, recorded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// The region (storage location) it was asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Lower memory bound in GB (bounds caches and boost stores together with the upper one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_total_memory_gb: Option<u64>,
    /// Upper memory bound in GB.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_total_memory_gb: Option<u64>,
    /// Whether it suspends itself when nobody called it for `idle_timeout_minutes`.
    pub idle_scaling: bool,
    /// Minutes without a request before an idle suspension.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle_timeout_minutes: Option<u64>,
    /// Who may connect: `None` is everyone (an environment nobody restricted), an empty list
    /// nobody (seed 003: "An empty list indicates that no inbound requests are allowed").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip_access_list: Option<Vec<IpAccess>>,
    /// The workspace group it belongs to (SingleStore).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// SingleStore workspace size ("S-00"), recorded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<String>,
    /// SingleStore cache multiplier (1, 2 or 4), recorded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_config: Option<u64>,
    /// SingleStore deployment type, recorded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deployment_type: Option<String>,
    /// `env/rescale`'s threshold: the parallelism above which a publish splits its input.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threshold: Option<u32>,
}

/// One entry of an IP access list (ClickHouse `{source, description}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpAccess {
    /// An address or CIDR range, IPv4 or IPv6.
    pub source: String,
    /// What it is for.
    #[serde(default)]
    pub description: String,
}

/// A new random id in the seeds' UUID form.
#[cfg(feature = "storage")]
pub fn new_uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// A parsed address range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpRange(ipnet::IpNet);

impl IpRange {
    /// Parses `a.b.c.d`, `a.b.c.d/n`, an IPv6 address or an IPv6 range.
    pub fn parse(text: &str) -> Option<IpRange> {
        let text = text.trim();
        if let Ok(net) = text.parse::<ipnet::IpNet>() {
            return Some(IpRange(net.trunc()));
        }
        text.parse::<IpAddr>().ok().map(|ip| IpRange(ipnet::IpNet::from(ip)))
    }

    /// Whether `ip` is in the range (an IPv4-mapped IPv6 address counts as its IPv4 one).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        };
        self.0.contains(&ip)
    }
}

/// Checks every range of a list, naming the first that is not one.
pub fn check_ranges<'a>(field: &str, ranges: impl IntoIterator<Item = &'a str>) -> Result<Vec<IpRange>> {
    ranges
        .into_iter()
        .map(|r| {
            IpRange::parse(r).ok_or_else(|| {
                EngineError::bad_parameter(
                    field,
                    format!("'{r}' is not an IP address or CIDR range (e.g. 10.0.0.0/8, 2001:db8::/32)"),
                )
            })
        })
        .collect()
}

/// Whether `ip` may connect under `list` (`None`: no restriction).
pub fn allows(list: Option<&[IpRange]>, ip: IpAddr) -> bool {
    list.is_none_or(|l| l.iter().any(|r| r.contains(ip)))
}

/// A workspace group (SingleStore): environments sharing a storage location, firewall ranges
/// and DR settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkspaceGroup {
    /// Its id (a UUID).
    pub id: String,
    /// Its name.
    pub name: String,
    /// The region (storage location) id its environments live in.
    pub region_id: String,
    /// Inbound ranges allowed to its environments; empty is nobody unless `allow_all_traffic`.
    #[serde(default)]
    pub firewall_ranges: Vec<String>,
    /// Everyone may connect, whatever the ranges say.
    #[serde(default)]
    pub allow_all_traffic: bool,
    /// Creation time, epoch ms.
    pub created: i64,
    /// When it expires, as given (recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// The update window `{day, hour}` (recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_window: Option<serde_json::Value>,
    /// Whether SmartDR was asked for (recorded).
    #[serde(default)]
    pub smart_dr: bool,
    /// The ops account (organization) it belongs to; `None` is the machine's account `default`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// The Argon2 hash of its workspaces' admin password, given to each workspace made in it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_password_hash: Option<String>,
    /// When it was terminated, epoch ms (terminated groups are kept for `includeTerminated`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terminated: Option<i64>,
}

impl WorkspaceGroup {
    /// The ranges its environments accept connections from (`None`: everyone).
    pub fn inbound(&self) -> Option<Vec<IpRange>> {
        if self.allow_all_traffic {
            return None;
        }
        Some(self.firewall_ranges.iter().filter_map(|r| IpRange::parse(r)).collect())
    }
}

impl ServiceSettings {
    /// The ranges of its own access list (`None`: everyone).
    pub fn inbound(&self) -> Option<Vec<IpRange>> {
        self.ip_access_list.as_ref().map(|l| l.iter().filter_map(|e| IpRange::parse(&e.source)).collect())
    }

    /// Checks the settings as the seeds define them.
    pub fn check(&self) -> Result<()> {
        if let Some(tier) = &self.tier
            && !["development", "production", "dedicated_high_mem", "dedicated_high_cpu", "dedicated_standard"]
                .contains(&tier.as_str())
        {
            return Err(EngineError::bad_parameter(
                "tier",
                format!(
                    "'{tier}' is not one of development, production, dedicated_high_mem, dedicated_high_cpu, dedicated_standard"
                ),
            ));
        }
        for (field, gb) in
            [("minTotalMemoryGb", self.min_total_memory_gb), ("maxTotalMemoryGb", self.max_total_memory_gb)]
        {
            if let Some(gb) = gb
                && (gb % 12 != 0 || !(24..=720).contains(&gb))
            {
                return Err(EngineError::bad_parameter(field, format!("{gb} must be a multiple of 12 from 24 to 720")));
            }
        }
        if let (Some(lo), Some(hi)) = (self.min_total_memory_gb, self.max_total_memory_gb)
            && lo > hi
        {
            return Err(EngineError::bad_parameter("minTotalMemoryGb", format!("{lo} is above maxTotalMemoryGb {hi}")));
        }
        if let Some(m) = self.idle_timeout_minutes
            && m < MIN_IDLE_TIMEOUT_MINUTES
        {
            return Err(EngineError::bad_parameter("idleTimeoutMinutes", format!("{m} must be at least 5 minutes")));
        }
        if let Some(c) = self.cache_config
            && ![1, 2, 4].contains(&c)
        {
            return Err(EngineError::bad_parameter("cacheConfig", format!("{c} must be 1, 2 or 4")));
        }
        if let Some(d) = &self.deployment_type
            && !["PRODUCTION", "NON-PRODUCTION"].contains(&d.as_str())
        {
            return Err(EngineError::bad_parameter(
                "deploymentType",
                format!("'{d}' must be PRODUCTION or NON-PRODUCTION"),
            ));
        }
        if let Some(list) = &self.ip_access_list {
            check_ranges("ipAccessList", list.iter().map(|e| e.source.as_str()))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_match_v4_v6_and_mapped_addresses() {
        let r = IpRange::parse("127.0.0.1/32").unwrap();
        assert!(r.contains("127.0.0.1".parse().unwrap()));
        assert!(!r.contains("127.0.0.2".parse().unwrap()));
        assert!(r.contains("::ffff:127.0.0.1".parse().unwrap()));
        let r = IpRange::parse("10.1.2.3/8").unwrap();
        assert!(r.contains("10.200.0.1".parse().unwrap()));
        let r = IpRange::parse("2001:db8::/32").unwrap();
        assert!(r.contains("2001:db8:1::5".parse().unwrap()));
        assert!(!r.contains("2001:db9::1".parse().unwrap()));
        assert!(IpRange::parse("::1").unwrap().contains("::1".parse().unwrap()));
        for bad in ["", "10.0.0.0/33", "x", "1.2.3", "10.0.0.0/8/1"] {
            assert!(IpRange::parse(bad).is_none(), "{bad}");
        }
        assert!(allows(None, "1.2.3.4".parse().unwrap()));
        assert!(!allows(Some(&[]), "1.2.3.4".parse().unwrap()));
    }

    #[test]
    fn settings_are_checked_as_the_seeds_say() {
        let ok = ServiceSettings {
            tier: Some("production".into()),
            min_total_memory_gb: Some(24),
            max_total_memory_gb: Some(48),
            idle_timeout_minutes: Some(5),
            ..Default::default()
        };
        ok.check().unwrap();
        let bad = |s: ServiceSettings, field: &str| {
            let e = s.check().unwrap_err().to_string();
            assert!(e.contains(field), "{e}");
        };
        bad(ServiceSettings { tier: Some("huge".into()), ..ok.clone() }, "tier");
        bad(ServiceSettings { min_total_memory_gb: Some(25), ..ok.clone() }, "minTotalMemoryGb");
        bad(ServiceSettings { max_total_memory_gb: Some(12), ..ok.clone() }, "maxTotalMemoryGb");
        bad(ServiceSettings { idle_timeout_minutes: Some(4), ..ok.clone() }, "idleTimeoutMinutes");
        bad(
            ServiceSettings {
                ip_access_list: Some(vec![IpAccess { source: "1.2.3.4/40".into(), description: String::new() }]),
                ..ok.clone()
            },
            "ipAccessList",
        );
    }
}
