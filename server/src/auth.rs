//! Users, password hashes and tokens, for one environment or for ops.
//!
//! Passwords are kept only as Argon2id PHC strings (salted by argon2 itself). Tokens are 256
//! random bits shown to the client once, as hex; the server keeps only their BLAKE2b hash, so a
//! copy of the auth file grants nothing. A token carries its user, the address it is bound to
//! (none = any) and its expiry; rights are looked up live from the user, so `user/update` and
//! `user/remove` take effect on the next request.
//!
//! Invariant: every change is written (whole file, atomically) before it is acknowledged.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use argon2::{Argon2, PasswordHasher, PasswordVerifier};
use blake2::{Blake2b512, Digest};
use parking_lot::Mutex;
use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::error::{Result, ServerError};

/// A user and the rights they hold.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct User {
    /// Argon2id PHC string; never the password.
    pub password: String,
    /// Rights (environment users; ops users hold theirs per account).
    #[serde(default)]
    pub rights: Vec<String>,
    /// Creation time, epoch ms.
    pub created: i64,
}

/// An issued token, stored by the hash of its secret.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Token {
    /// Whose token.
    pub username: String,
    /// Address it may be used from; `None` for any.
    pub ip: Option<String>,
    /// Issue time, epoch ms.
    pub issued: i64,
    /// Expiry, epoch ms.
    pub expires: i64,
}

/// An ops account: its members and their rights.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Account {
    /// Account id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// username -> rights.
    pub users: BTreeMap<String, Vec<String>>,
    /// Addresses that may call the management API (`/v1`) for it (SingleStore's organization
    /// `firewallRanges`); `None`: anyone.
    #[serde(default, rename = "firewallRanges", skip_serializing_if = "Option::is_none")]
    pub firewall_ranges: Option<Vec<String>>,
}

/// Everything an auth file holds. The account fields are used by ops only.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthData {
    /// username -> user.
    #[serde(default)]
    pub users: BTreeMap<String, User>,
    /// token hash -> token.
    #[serde(default)]
    pub tokens: BTreeMap<String, Token>,
    /// Ops accounts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub accounts: Vec<Account>,
    /// Ops: environment id -> account id (environments not listed belong to the account
    /// `default`, whose owner the operator makes with `m1 owner`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env_accounts: BTreeMap<String, String>,
    /// Ops: environments created over HTTP whose first admin `/init` may still make.
    #[serde(default, skip_serializing_if = "std::collections::BTreeSet::is_empty")]
    pub open_init: std::collections::BTreeSet<String>,
}

/// Where an auth file lives.
pub enum Backing {
    /// `auth.json` at an environment's root (local or object store).
    Env(std::sync::Arc<m1::Environment>),
    /// A local file written owner-only (ops, in `$M1_HOME`).
    File(PathBuf),
}

impl Backing {
    /// The local auth file, if there is one.
    fn local_file(&self) -> Option<PathBuf> {
        match self {
            Backing::File(path) => Some(path.clone()),
            Backing::Env(env) => Some(env.engine().storage().local_root()?.join(ENV_AUTH_FILE)),
        }
    }

    /// Holds the file's exclusive lock until dropped (nothing on object stores).
    fn lock(&self) -> Result<Option<std::fs::File>> {
        let Some(path) = self.local_file() else { return Ok(None) };
        let lock = path.with_extension("json.lock");
        let io = |e: std::io::Error| ServerError::Internal(format!("{}: {e}", lock.display()));
        if let Some(dir) = lock.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&lock).map_err(io)?;
        file.lock().map_err(io)?;
        Ok(Some(file))
    }

    /// When a local auth file last changed (`None` on object stores, where a stat per request
    /// would cost a round trip).
    fn modified(&self) -> Option<std::time::SystemTime> {
        std::fs::metadata(self.local_file()?).and_then(|m| m.modified()).ok()
    }
}

/// File name of an environment's users and tokens, relative to its root.
pub const ENV_AUTH_FILE: &str = "auth.json";

/// Users and tokens with write-through persistence.
pub struct AuthStore {
    backing: Backing,
    data: Mutex<(AuthData, Option<std::time::SystemTime>)>,
}

impl AuthStore {
    /// Loads the store (empty when no file exists yet).
    pub fn open(backing: Backing) -> Result<AuthStore> {
        let data = AuthStore::open_data(&backing)?;
        let stamp = backing.modified();
        Ok(AuthStore { backing, data: Mutex::new((data, stamp)) })
    }

    fn open_data(backing: &Backing) -> Result<AuthData> {
        let bytes = match backing {
            Backing::Env(env) => env.engine().storage().get(ENV_AUTH_FILE)?.map(|b| b.to_vec()),
            Backing::File(path) => match std::fs::read(path) {
                Ok(b) => Some(b),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => return Err(ServerError::Internal(format!("{}: {e}", path.display()))),
            },
        };
        Ok(match bytes {
            Some(b) => serde_json::from_slice(&b)
                .map_err(|e| ServerError::Internal(format!("the auth file is damaged: {e}")))?,
            None => AuthData::default(),
        })
    }

    /// The data as it is on disk: a local file changed by another process (the operator's
    /// `m1 owner`, another server) is read again.
    fn current(&self) -> parking_lot::MutexGuard<'_, (AuthData, Option<std::time::SystemTime>)> {
        let mut guard = self.data.lock();
        let stamp = self.backing.modified();
        if stamp.is_some()
            && stamp != guard.1
            && let Ok(fresh) = AuthStore::open_data(&self.backing)
        {
            *guard = (fresh, stamp);
        }
        guard
    }

    /// Reads the data.
    pub fn read<R>(&self, f: impl FnOnce(&AuthData) -> R) -> R {
        f(&self.current().0)
    }

    /// Changes the data and persists it; nothing changes if `f` fails or the write fails.
    ///
    /// On local disk the change is made under an exclusive lock of the file's `.lock`
    /// companion, on the data as the file holds it then: two servers on one environment (or the
    /// operator's `m1 owner` while a server runs) merge their changes instead of losing one.
    pub fn update<R>(&self, f: impl FnOnce(&mut AuthData) -> Result<R>) -> Result<R> {
        let _lock = self.backing.lock()?;
        let mut guard = self.current();
        let mut next = guard.0.clone();
        let now = now_ms();
        next.tokens.retain(|_, t| t.expires > now);
        let out = f(&mut next)?;
        self.persist(&next)?;
        *guard = (next, self.backing.modified());
        Ok(out)
    }

    fn persist(&self, data: &AuthData) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(data).map_err(|e| ServerError::Internal(e.to_string()))?;
        match &self.backing {
            // Password and token hashes: only the owner may read them, on local disk.
            Backing::Env(env) => match env.engine().storage().local_root() {
                Some(root) => write_private(&root.join(ENV_AUTH_FILE), &bytes),
                None => Ok(env.engine().storage().put(ENV_AUTH_FILE, bytes.into())?),
            },
            Backing::File(path) => write_private(path, &bytes),
        }
    }

    /// Checks a password; the same work is done for unknown users, so timing tells nothing.
    pub fn verify_password(&self, username: &str, password: &str) -> bool {
        let hash = self.read(|d| d.users.get(username).map(|u| u.password.clone()));
        match hash {
            Some(h) => Argon2::default().verify_password(password.as_bytes(), h.as_str()).is_ok(),
            None => {
                let _ = hash_password(password);
                false
            }
        }
    }

    /// Issues a token for `username`, bound to `ip` (`None` = any), valid for `ttl_ms`.
    /// Returns the secret (shown once) and the stored token.
    pub fn issue(&self, username: &str, ip: Option<String>, ttl_ms: i64) -> Result<(String, Token)> {
        let mut secret = [0u8; 32];
        rand::rng().fill_bytes(&mut secret);
        let secret = hex(&secret);
        let now = now_ms();
        let token = Token { username: username.to_string(), ip, issued: now, expires: now.saturating_add(ttl_ms) };
        let stored = token.clone();
        self.update(|d| {
            d.tokens.insert(token_hash(&secret), stored);
            Ok(())
        })?;
        Ok((secret, token))
    }

    /// The user a token authenticates from `ip`, or why not (401).
    pub fn check(&self, secret: &str, ip: &str) -> Result<(String, User)> {
        let hash = token_hash(secret);
        self.read(|d| {
            let bad = |why: &str| ServerError::Unauthorized(format!("the m1-auth-token is {why}"));
            let t = d.tokens.get(&hash).ok_or_else(|| bad("not valid"))?;
            if t.expires <= now_ms() {
                return Err(bad("expired; authenticate again with /auth"));
            }
            if t.ip.as_deref().is_some_and(|bound| bound != ip) {
                return Err(bad("bound to another address"));
            }
            let user = d.users.get(&t.username).ok_or_else(|| bad("for a user who no longer exists"))?;
            Ok((t.username.clone(), user.clone()))
        })
    }
}

/// Hashes a password with Argon2id and a fresh salt (PHC string).
pub fn hash_password(password: &str) -> Result<String> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| ServerError::Internal(format!("hashing a password: {e}")))
}

/// The stored form of a token: BLAKE2b-512 of the secret, hex.
pub fn token_hash(secret: &str) -> String {
    hex(&Blake2b512::digest(secret.trim().as_bytes()))
}

/// The short public id of a token (a prefix of its hash), for `/token/list`.
pub fn token_id(hash: &str) -> &str {
    &hash[..16.min(hash.len())]
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Current time in epoch milliseconds.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// A random id in UUID layout.
pub fn random_id() -> String {
    let mut b = [0u8; 16];
    rand::rng().fill_bytes(&mut b);
    let h = hex(&b);
    format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
}

/// Writes a file atomically, readable by its owner only.
pub fn write_private(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    let io = |e: std::io::Error| ServerError::Internal(format!("{}: {e}", path.display()));
    let tmp = path.with_extension(format!("{}.tmp", std::process::id()));
    let mut open = std::fs::OpenOptions::new();
    open.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut open, 0o600);
    let mut f = open.open(&tmp).map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// Checks a new password against the minimum length.
pub fn check_password(password: &str, min_len: usize) -> Result<()> {
    if password.chars().count() < min_len {
        return Err(ServerError::BadRequest(format!("the password must have at least {min_len} characters")));
    }
    Ok(())
}

/// Checks rights given by a client: non-empty names without spaces or commas.
pub fn check_rights(rights: &[String]) -> Result<()> {
    for r in rights {
        if r.is_empty() || r.len() > 64 || r.chars().any(|c| c.is_whitespace() || c == ',' || c.is_control()) {
            return Err(ServerError::BadRequest(format!("'{r}' is not a valid right name")));
        }
    }
    Ok(())
}

/// Checks a username: 1-256 characters, no control characters.
pub fn check_username(name: &str) -> Result<()> {
    if name.trim().is_empty() || name.len() > 256 || name.chars().any(char::is_control) {
        return Err(ServerError::BadRequest(format!("'{name}' is not a valid username")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `env/destroy` removes exactly the files m1 owns: the server's must be among them.
    #[test]
    fn the_environment_knows_the_servers_files() {
        let owned = m1_engine::environment::OWNED_FILES;
        assert!(owned.contains(&ENV_AUTH_FILE) && owned.contains(&"auth.json.lock"), "{owned:?}");
        assert!(owned.contains(&m1_query::store::registry::STORES_FILE));
    }
}
