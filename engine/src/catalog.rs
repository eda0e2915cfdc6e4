//! The local catalog (`$M1_HOME`, default `~/.m1`): which environments exist and where they live.
//!
//! Invariant: names are unique. The catalog file is replaced atomically (write, fsync, rename),
//! so a crash leaves the old or the new catalog, never a torn one.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::environment::{EnvConfig, Environment, now_ms};
use crate::error::{EngineError, Result};
use crate::schema::validate_name;
use crate::service::{ServiceSettings, WorkspaceGroup};
use crate::storage::ObjectStoreOptions;

/// One environment in the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CatalogEntry {
    /// Unique name.
    pub name: String,
    /// Environment id (also accepted wherever a name is).
    pub id: String,
    /// Where the environment lives: a local path or object-store URL.
    pub url: String,
    /// Worker threads (the seeds call them `servers`).
    #[serde(rename = "servers")]
    pub workers: u32,
    /// Lake shards.
    pub shards: u32,
    /// Creation time, epoch ms.
    pub created: i64,
    /// Object-store settings for the environment's own location (endpoint, credentials).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
    /// Whether `/publish` may read from the internet (`http(s)://`), set by `env/outbound`.
    #[serde(default)]
    pub outbound: bool,
    /// Buckets registered for this environment, with their object-store settings.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub buckets: Vec<Bucket>,
    /// Roles granted read access to the environment's buckets (`env/bucket/grant`), recorded.
    #[serde(default)]
    pub read_roles: Vec<String>,
    /// How it is managed as a service: state, settings, IP access list (the management API).
    #[serde(default, skip_serializing_if = "is_default")]
    pub service: ServiceSettings,
}

fn is_default(s: &ServiceSettings) -> bool {
    *s == ServiceSettings::default()
}

/// A bucket registered with an environment (`env/bucket/register`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bucket {
    /// Bucket name (the host part of `s3://`, `gs://` or `az://` URLs).
    pub name: String,
    /// Object-store settings used for URLs in this bucket (endpoint, region, credentials).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
}

impl CatalogEntry {
    /// The object-store settings for `url`: the environment's own, then a registered bucket's.
    pub fn options_for(&self, url: &str) -> ObjectStoreOptions {
        let host = url::Url::parse(url).ok().and_then(|u| u.host_str().map(str::to_string));
        let mut out: BTreeMap<String, String> = BTreeMap::new();
        if let Some(b) = self.buckets.iter().find(|b| Some(&b.name) == host.as_ref()) {
            out.extend(b.options.clone());
        }
        if url == self.url {
            out.extend(self.options.clone());
        }
        out.into_iter().collect()
    }

    /// A copy safe to print: option values that look secret are masked.
    pub fn redacted(&self) -> CatalogEntry {
        let mask = |m: &BTreeMap<String, String>| {
            m.iter()
                .map(|(k, v)| {
                    let secret =
                        ["secret", "key", "token", "password", "sas"].iter().any(|s| k.to_lowercase().contains(s))
                            && !k.to_lowercase().contains("key_id");
                    (k.clone(), if secret { "****".to_string() } else { v.clone() })
                })
                .collect()
        };
        let mut e = self.clone();
        e.options = mask(&self.options);
        for b in &mut e.buckets {
            b.options = mask(&b.options);
        }
        e
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct CatalogFile {
    environments: Vec<CatalogEntry>,
    /// Workspace groups (the management API's); absent in catalogs written before them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    groups: Vec<WorkspaceGroup>,
}

/// The local catalog.
#[derive(Debug, Clone)]
pub struct Catalog {
    home: PathBuf,
}

impl Catalog {
    /// The catalog directory from `$M1_HOME`, else `~/.m1`.
    pub fn default_home() -> PathBuf {
        if let Some(h) = std::env::var_os("M1_HOME") {
            return PathBuf::from(h);
        }
        let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
        home.join(".m1")
    }

    /// Opens (creating if needed) the catalog in `home`.
    pub fn open(home: impl Into<PathBuf>) -> Result<Catalog> {
        let home = home.into();
        std::fs::create_dir_all(&home).map_err(|e| EngineError::io(&home, e))?;
        Ok(Catalog { home })
    }

    /// The catalog directory.
    pub fn home(&self) -> &Path {
        &self.home
    }

    fn file(&self) -> PathBuf {
        self.home.join("catalog.json")
    }

    fn load(&self) -> Result<CatalogFile> {
        let path = self.file();
        match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b)
                .map_err(|e| EngineError::CatalogDamaged { path: path.clone(), reason: e.to_string() }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(CatalogFile::default()),
            Err(e) => Err(EngineError::io(path, e)),
        }
    }

    fn save(&self, file: &CatalogFile) -> Result<()> {
        let path = self.file();
        let tmp = self.home.join(format!(".catalog.{}.tmp", std::process::id()));
        let io = |e| EngineError::io(&tmp, e);
        let mut open = std::fs::OpenOptions::new();
        open.write(true).create(true).truncate(true);
        // The catalog may hold credentials: only the owner may read it.
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut open, 0o600);
        let mut f = open.open(&tmp).map_err(io)?;
        f.write_all(&serde_json::to_vec_pretty(file)?).map_err(io)?;
        f.sync_all().map_err(io)?;
        std::fs::rename(&tmp, &path).map_err(|e| EngineError::io(&path, e))
    }

    /// Every environment, by name.
    pub fn list(&self) -> Result<Vec<CatalogEntry>> {
        let mut envs = self.load()?.environments;
        envs.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(envs)
    }

    /// The environment named (or with id) `name`.
    pub fn get(&self, name: &str) -> Result<Option<CatalogEntry>> {
        Ok(self.load()?.environments.into_iter().find(|e| e.name == name || e.id == name))
    }

    fn require(&self, name: &str) -> Result<CatalogEntry> {
        self.get(name)?.ok_or_else(|| EngineError::UnknownEnvironment(name.to_string()))
    }

    /// Opens a catalog environment with its recorded object-store settings.
    pub fn open_env(&self, name: &str) -> Result<Environment> {
        let entry = self.require(name)?;
        Environment::open_with(&entry.url, &entry.options_for(&entry.url))
    }

    /// Creates an environment and records it. Without `url` it lives in `$M1_HOME/envs/<name>`.
    pub fn create(&self, name: &str, url: Option<&str>, config: EnvConfig) -> Result<CatalogEntry> {
        self.create_with(name, url, BTreeMap::new(), config)
    }

    /// [`Catalog::create`] with object-store settings for the location (kept in the catalog).
    pub fn create_with(
        &self,
        name: &str,
        url: Option<&str>,
        options: BTreeMap<String, String>,
        config: EnvConfig,
    ) -> Result<CatalogEntry> {
        self.create_by(name, url, options, |url, options| Environment::create_with(url, options, config))
    }

    /// Adds an environment named `name` at `url` (default `$M1_HOME/envs/NAME`) that `make`
    /// creates there (a new one, or one restored from a backup), after checking the name and
    /// the location.
    pub fn create_by(
        &self,
        name: &str,
        url: Option<&str>,
        options: BTreeMap<String, String>,
        make: impl FnOnce(&str, &ObjectStoreOptions) -> Result<Environment>,
    ) -> Result<CatalogEntry> {
        check_env_name(name)?;
        let mut file = self.load()?;
        if file.environments.iter().any(|e| e.name == name) {
            return Err(EngineError::EnvironmentNameTaken(name.to_string()));
        }
        let url = match url {
            Some(u) => u.to_string(),
            None => self.home.join("envs").join(name).display().to_string(),
        };
        check_location(&url, &file.environments)?;
        let object_store_options: ObjectStoreOptions = options.clone().into_iter().collect();
        let env = make(&url, &object_store_options)?;
        let entry = CatalogEntry {
            name: name.to_string(),
            id: env.config().id.clone(),
            url: env.storage().url().to_string(),
            workers: env.config().workers,
            shards: env.config().shards,
            created: now_ms(),
            options,
            outbound: false,
            buckets: Vec::new(),
            read_roles: Vec::new(),
            service: ServiceSettings::default(),
        };
        file.environments.push(entry.clone());
        self.save(&file)?;
        Ok(entry)
    }

    /// Renames an environment (its data stays where it is).
    pub fn rename(&self, name: &str, new_name: &str) -> Result<CatalogEntry> {
        check_env_name(new_name)?;
        let mut file = self.load()?;
        if file.environments.iter().any(|e| e.name == new_name) {
            return Err(EngineError::EnvironmentNameTaken(new_name.to_string()));
        }
        let entry = file
            .environments
            .iter_mut()
            .find(|e| e.name == name || e.id == name)
            .ok_or_else(|| EngineError::UnknownEnvironment(name.to_string()))?;
        entry.name = new_name.to_string();
        let out = entry.clone();
        self.save(&file)?;
        Ok(out)
    }

    /// Deletes an environment's data and forgets it.
    pub fn destroy(&self, name: &str) -> Result<CatalogEntry> {
        let entry = self.require(name)?;
        match Environment::open_with(&entry.url, &entry.options_for(&entry.url)) {
            Ok(env) => env.destroy()?,
            Err(EngineError::NoEnvironment(_)) => {}
            Err(e) => return Err(e),
        }
        let mut file = self.load()?;
        file.environments.retain(|e| e.id != entry.id);
        self.save(&file)?;
        Ok(entry)
    }
}

impl Catalog {
    fn update<F: FnOnce(&mut CatalogEntry) -> Result<()>>(&self, name: &str, change: F) -> Result<CatalogEntry> {
        let mut file = self.load()?;
        let entry = file
            .environments
            .iter_mut()
            .find(|e| e.name == name || e.id == name)
            .ok_or_else(|| EngineError::UnknownEnvironment(name.to_string()))?;
        change(entry)?;
        let out = entry.clone();
        self.save(&file)?;
        Ok(out)
    }

    /// Registers a bucket (with optional object-store settings) for an environment; registering
    /// it again replaces its settings.
    pub fn register_bucket(&self, env: &str, bucket: &str, options: BTreeMap<String, String>) -> Result<CatalogEntry> {
        if bucket.is_empty() || bucket.contains('/') {
            return Err(EngineError::bad_parameter(
                "bucket",
                format!("'{bucket}' is not a bucket name: give the name only"),
            ));
        }
        self.update(env, |e| {
            e.buckets.retain(|b| b.name != bucket);
            e.buckets.push(Bucket { name: bucket.to_string(), options });
            Ok(())
        })
    }

    /// Points an environment's name at another location (storage DR failover and failback).
    pub fn relocate(&self, env: &str, url: &str, options: &ObjectStoreOptions) -> Result<CatalogEntry> {
        self.update(env, |e| {
            e.url = url.to_string();
            e.options = options.iter().cloned().collect();
            Ok(())
        })
    }

    /// Turns reads from the internet on or off for an environment (`env/outbound`).
    pub fn set_outbound(&self, env: &str, enable: bool) -> Result<CatalogEntry> {
        self.update(env, |e| {
            e.outbound = enable;
            Ok(())
        })
    }

    /// Changes an environment's worker parallelism (`env/rescale`), in its `env.json` and here;
    /// handles opened afterwards use it.
    pub fn rescale(&self, env: &str, workers: u32) -> Result<CatalogEntry> {
        if workers == 0 {
            return Err(EngineError::bad_parameter("servers", "must be at least 1"));
        }
        let opened = self.open_env(env)?;
        let mut config = opened.config().clone();
        config.workers = workers;
        let body = bytes::Bytes::from(serde_json::to_vec_pretty(&config)?);
        opened.storage().put(crate::environment::CONFIG_FILE, body)?;
        self.update(env, |e| {
            e.workers = workers;
            Ok(())
        })
    }

    /// Grants (or revokes) a read role (`env/bucket/grant`, `env/bucket/revoke`).
    pub fn set_read_role(&self, env: &str, role: &str, granted: bool) -> Result<CatalogEntry> {
        self.update(env, |e| {
            e.read_roles.retain(|r| r != role);
            if granted {
                e.read_roles.push(role.to_string());
            }
            Ok(())
        })
    }

    /// Changes an environment's service settings (checked before they are saved).
    pub fn update_service<F: FnOnce(&mut ServiceSettings) -> Result<()>>(
        &self,
        env: &str,
        change: F,
    ) -> Result<CatalogEntry> {
        self.update(env, |e| {
            change(&mut e.service)?;
            e.service.check()
        })
    }

    /// The workspace groups (terminated ones too).
    pub fn groups(&self) -> Result<Vec<WorkspaceGroup>> {
        Ok(self.load()?.groups)
    }

    /// The workspace group with this id.
    pub fn group(&self, id: &str) -> Result<WorkspaceGroup> {
        self.load()?
            .groups
            .into_iter()
            .find(|g| g.id == id && g.terminated.is_none())
            .ok_or_else(|| EngineError::UnknownGroup(id.to_string()))
    }

    /// Adds a workspace group.
    pub fn add_group(&self, group: WorkspaceGroup) -> Result<WorkspaceGroup> {
        crate::service::check_ranges("firewallRanges", group.firewall_ranges.iter().map(String::as_str))?;
        let mut file = self.load()?;
        if file.groups.iter().any(|g| g.name == group.name && g.terminated.is_none()) {
            return Err(EngineError::GroupNameTaken(group.name));
        }
        file.groups.push(group.clone());
        self.save(&file)?;
        Ok(group)
    }

    /// Changes a workspace group.
    pub fn update_group<F: FnOnce(&mut WorkspaceGroup) -> Result<()>>(
        &self,
        id: &str,
        change: F,
    ) -> Result<WorkspaceGroup> {
        let mut file = self.load()?;
        let names: Vec<(String, String)> =
            file.groups.iter().filter(|g| g.terminated.is_none()).map(|g| (g.id.clone(), g.name.clone())).collect();
        let group = file
            .groups
            .iter_mut()
            .find(|g| g.id == id && g.terminated.is_none())
            .ok_or_else(|| EngineError::UnknownGroup(id.to_string()))?;
        change(group)?;
        crate::service::check_ranges("firewallRanges", group.firewall_ranges.iter().map(String::as_str))?;
        if names.iter().any(|(other, name)| *other != group.id && *name == group.name) {
            return Err(EngineError::GroupNameTaken(group.name.clone()));
        }
        let out = group.clone();
        self.save(&file)?;
        Ok(out)
    }

    /// Forgets a registered bucket.
    pub fn deregister_bucket(&self, env: &str, bucket: &str) -> Result<CatalogEntry> {
        self.update(env, |e| {
            let before = e.buckets.len();
            e.buckets.retain(|b| b.name != bucket);
            if e.buckets.len() == before {
                return Err(EngineError::UnknownBucket { env: e.name.clone(), bucket: bucket.to_string() });
            }
            Ok(())
        })
    }
}

/// A local path of a location (`/p`, `file:///p`), if it is one.
pub fn local_path(location: &str) -> Option<PathBuf> {
    match location.strip_prefix("file://") {
        Some(rest) => Some(PathBuf::from(rest)),
        None if location.contains("://") => None,
        None => Some(PathBuf::from(location)),
    }
}

/// A path made absolute with symbolic links resolved as far as it exists (the rest appended), so
/// two spellings of one place compare equal.
pub fn resolved(path: &Path) -> PathBuf {
    use std::path::Component;
    let abs =
        if path.is_absolute() { path.to_path_buf() } else { std::env::current_dir().unwrap_or_default().join(path) };
    let mut out = PathBuf::new();
    for part in abs.components() {
        match part {
            Component::Prefix(_) | Component::RootDir => out.push(part),
            Component::CurDir => {}
            // After a link, `out` is already where it points: `..` goes to that parent, as the
            // system does; past what exists, `..` is lexical.
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(name) => {
                out.push(name);
                if let Ok(real) = std::fs::canonicalize(&out) {
                    out = real;
                }
            }
        }
    }
    out
}

/// A location as a prefix to compare: a resolved local path or a URL, ending in `/`.
fn location_key(location: &str) -> String {
    let key = match local_path(location) {
        Some(p) => resolved(&p).display().to_string(),
        None => location.to_string(),
    };
    format!("{}/", key.trim_end_matches('/'))
}

/// Whether `location` is at or under `root` (both as given to the catalog or a server option).
pub fn location_within(location: &str, root: &str) -> bool {
    location_key(location).starts_with(&location_key(root))
}

/// Refuses a location for a new environment that would mix its files with someone else's: one
/// that overlaps an environment of the catalog, lies inside any m1 environment, or is a
/// non-empty directory that is not an m1 environment (`env/destroy` must never remove files m1
/// did not write).
fn check_location(url: &str, others: &[CatalogEntry]) -> Result<()> {
    let bad = |reason: String| EngineError::BadLocation { url: url.to_string(), reason };
    let key = location_key(url);
    for e in others {
        let other = location_key(&e.url);
        if key.starts_with(&other) || other.starts_with(&key) {
            return Err(bad(format!("it overlaps environment '{}' at {}", e.name, e.url)));
        }
    }
    let Some(path) = local_path(url) else { return Ok(()) };
    let path = resolved(&path);
    if let Some(env) = path.ancestors().skip(1).find(|a| a.join(crate::log::LOG_DIR).is_dir()) {
        return Err(bad(format!("it is inside the m1 environment at {}", env.display())));
    }
    let is_env = path.join(crate::log::LOG_DIR).is_dir();
    let non_empty = std::fs::read_dir(&path).is_ok_and(|mut d| d.next().is_some());
    if non_empty && !is_env {
        return Err(bad("it is a directory that holds other files; choose a new or empty directory".into()));
    }
    Ok(())
}

fn check_env_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && name != "ops";
    if !ok {
        return Err(EngineError::bad_parameter(
            "env",
            format!("'{name}' is not a valid environment name: use 1-63 letters, digits, '-' or '_' (and not 'ops')"),
        ));
    }
    validate_name(name).map_err(|e| EngineError::bad_parameter("env", e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalogs_written_before_service_settings_still_load() {
        let dir = tempfile::tempdir().unwrap();
        // A catalog as written before the management API (no `service`, no `groups`).
        let old = r#"{"environments": [{"name": "old", "id": "0123456789abcdef0123456789abcdef",
            "url": "/nowhere", "servers": 2, "shards": 4, "created": 1, "outbound": false, "readRoles": []}]}"#;
        std::fs::write(dir.path().join("catalog.json"), old).unwrap();
        let cat = Catalog::open(dir.path()).unwrap();
        let e = cat.get("old").unwrap().unwrap();
        assert_eq!(e.service, ServiceSettings::default());
        assert!(cat.groups().unwrap().is_empty());
        // Default settings are not written, so older m1 versions read the file unchanged.
        cat.set_outbound("old", true).unwrap();
        let text = std::fs::read_to_string(dir.path().join("catalog.json")).unwrap();
        assert!(!text.contains("service") && !text.contains("groups"), "{text}");
        let e = cat
            .update_service("old", |s| {
                s.stopped = true;
                s.tier = Some("production".into());
                Ok(())
            })
            .unwrap();
        assert!(e.service.stopped);
        assert_eq!(cat.get("old").unwrap().unwrap().service, e.service);
        let err = cat.update_service("old", |s| {
            s.idle_timeout_minutes = Some(1);
            Ok(())
        });
        assert!(err.unwrap_err().to_string().contains("idleTimeoutMinutes"));
        assert_eq!(cat.get("old").unwrap().unwrap().service, e.service, "a refused change changes nothing");
    }

    #[test]
    fn create_list_rename_destroy() {
        let dir = tempfile::tempdir().unwrap();
        let cat = Catalog::open(dir.path()).unwrap();
        let e = cat.create("test-m1", None, EnvConfig::default()).unwrap();
        assert!(Path::new(&e.url).join("_delta_log").exists());
        let err = cat.create("test-m1", None, EnvConfig::default()).unwrap_err();
        assert!(err.to_string().contains("already exists"), "{err}");
        assert!(cat.create("bad name", None, EnvConfig::default()).is_err());
        cat.rename("test-m1", "other").unwrap();
        assert_eq!(cat.list().unwrap().iter().map(|e| e.name.as_str()).collect::<Vec<_>>(), ["other"]);
        assert_eq!(cat.get(&e.id).unwrap().unwrap().name, "other");
        cat.register_bucket(
            "other",
            "lake",
            BTreeMap::from([("aws_endpoint".into(), "http://x".into()), ("aws_secret_access_key".into(), "s".into())]),
        )
        .unwrap();
        let entry = cat.get("other").unwrap().unwrap();
        assert_eq!(
            entry.options_for("s3://lake/p"),
            vec![
                ("aws_endpoint".to_string(), "http://x".to_string()),
                ("aws_secret_access_key".to_string(), "s".to_string())
            ]
        );
        assert!(entry.options_for("s3://elsewhere/p").is_empty());
        assert_eq!(entry.redacted().buckets[0].options["aws_secret_access_key"], "****");
        assert!(cat.deregister_bucket("other", "nope").is_err());
        cat.deregister_bucket("other", "lake").unwrap();
        assert!(cat.get("other").unwrap().unwrap().buckets.is_empty());
        cat.destroy("other").unwrap();
        assert!(cat.list().unwrap().is_empty());
        assert!(!Path::new(&e.url).exists());
    }

    #[test]
    fn locations_never_mix_with_other_files() {
        let dir = tempfile::tempdir().unwrap();
        let cat = Catalog::open(dir.path().join("home")).unwrap();
        let foreign = dir.path().join("foreign");
        std::fs::create_dir_all(&foreign).unwrap();
        std::fs::write(foreign.join("keep.txt"), "mine").unwrap();
        let at = |p: &Path| Some(p.to_str().unwrap().to_string());
        let err = cat.create("a", at(&foreign).as_deref(), EnvConfig::default()).unwrap_err();
        assert!(err.to_string().contains("holds other files"), "{err}");
        let a = cat.create("a", at(&dir.path().join("envs/a")).as_deref(), EnvConfig::default()).unwrap();
        for inside in ["envs/a/lake", "envs/a/x/y", "envs"] {
            let err = cat.create("b", at(&dir.path().join(inside)).as_deref(), EnvConfig::default()).unwrap_err();
            assert!(err.to_string().contains("overlaps environment 'a'"), "{inside}: {err}");
        }
        let url = format!("file://{}", dir.path().join("envs/a/lake").display());
        assert!(cat.create("b", Some(&url), EnvConfig::default()).is_err());
        let dotted = dir.path().join("envs/new/../a/lake");
        let err = cat.create("b", at(&dotted).as_deref(), EnvConfig::default()).unwrap_err();
        assert!(err.to_string().contains("overlaps environment 'a'"), "{err}");
        // An environment outside the catalog is found by its table log.
        let outside = dir.path().join("outside");
        Environment::create(outside.to_str().unwrap(), EnvConfig::default()).unwrap();
        let err = cat.create("c", at(&outside.join("sub")).as_deref(), EnvConfig::default()).unwrap_err();
        assert!(err.to_string().contains("inside the m1 environment"), "{err}");
        // Destroy removes only what m1 wrote; a foreign file keeps the root.
        let root = PathBuf::from(&a.url);
        std::fs::write(root.join("notes.txt"), "keep").unwrap();
        std::os::unix::fs::symlink(&foreign, root.join("link")).unwrap();
        cat.destroy("a").unwrap();
        assert_eq!(std::fs::read_to_string(root.join("notes.txt")).unwrap(), "keep");
        assert!(!root.join("_delta_log").exists() && !root.join("env.json").exists());
        assert_eq!(std::fs::read_to_string(foreign.join("keep.txt")).unwrap(), "mine", "links are not followed");
    }

    /// Catalogs written before `readRoles` existed still open, with no roles.
    #[test]
    fn reads_catalogs_without_read_roles() {
        let dir = tempfile::tempdir().unwrap();
        let old = r#"{"environments": [{"name": "old", "id": "abc", "url": "/nowhere", "servers": 2,
                      "shards": 4, "created": 1, "outbound": false}]}"#;
        std::fs::write(dir.path().join("catalog.json"), old).unwrap();
        let cat = Catalog::open(dir.path()).unwrap();
        let e = cat.get("old").unwrap().unwrap();
        assert!(e.read_roles.is_empty());
        let e = cat.set_read_role("old", "arn:a", true).unwrap();
        assert_eq!(e.read_roles, ["arn:a"]);
        assert!(cat.set_read_role("abc", "arn:a", false).unwrap().read_roles.is_empty());
    }
}
