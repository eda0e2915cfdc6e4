//! The CLI as a client of a remote `m1 serve`: `m1 auth <env> -url URL`, `m1 signup` / `m1 auth`
//! (ops), then `m1 <env> ...` and `m1 ops ...` go over HTTP with the stored token.
//!
//! Logins live in `$M1_HOME/remote.json`, written owner-only (0600) since it holds tokens. An
//! environment with a stored login is reached remotely even if the local catalog has one of the
//! same name; `-url` on any command forces a remote call for that command. `m1 signup` and
//! `m1 auth` take the address from `-url`, else from `$M1_URL`, else from the stored login.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::PathBuf;

use anyhow::{Context, Result, anyhow, bail};
use m1::Catalog;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One remote login.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Login {
    /// Server base URL, e.g. `http://127.0.0.1:8080`.
    pub url: String,
    /// The token `/auth` returned.
    pub token: Option<String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Logins {
    #[serde(default)]
    envs: BTreeMap<String, Login>,
    #[serde(default)]
    ops: Option<Login>,
}

fn path() -> PathBuf {
    Catalog::default_home().join("remote.json")
}

fn load() -> Result<Logins> {
    match std::fs::read(path()) {
        Ok(b) => serde_json::from_slice(&b).with_context(|| format!("{} is damaged", path().display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Logins::default()),
        Err(e) => Err(e).with_context(|| format!("reading {}", path().display())),
    }
}

fn save(logins: &Logins) -> Result<()> {
    use std::io::Write;
    let path = path();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("json.tmp");
    let mut open = std::fs::OpenOptions::new();
    open.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut open, 0o600);
    let mut f = open.open(&tmp).with_context(|| format!("writing {}", tmp.display()))?;
    f.write_all(&serde_json::to_vec_pretty(logins)?)?;
    f.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    Ok(())
}

/// The address for a new login: `-url`, else `$M1_URL`.
fn login_url(params: &BTreeMap<String, String>) -> Option<String> {
    params.get("url").cloned().or_else(|| std::env::var("M1_URL").ok().filter(|u| !u.is_empty()))
}

/// The stored login of `env` (`None` for ops), with `-url` overriding its address.
pub fn login_for(env: Option<&str>, url: Option<&str>) -> Result<Option<Login>> {
    let logins = load()?;
    let stored = match env {
        Some(e) => logins.envs.get(e).cloned(),
        None => logins.ops.clone(),
    };
    Ok(match (stored, url) {
        (Some(mut l), Some(u)) => {
            if l.url != u.trim_end_matches('/') {
                l.token = None;
            }
            l.url = u.trim_end_matches('/').to_string();
            Some(l)
        }
        (Some(l), None) => Some(l),
        (None, Some(u)) => Some(Login { url: u.trim_end_matches('/').to_string(), token: None }),
        (None, None) => None,
    })
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder().http_status_as_error(false).build().into()
}

fn endpoint_url(login: &Login, env: Option<&str>, endpoint: &str) -> String {
    match env {
        Some(e) => format!("{}/{e}/{endpoint}", login.url),
        None => format!("{}/ops/{endpoint}", login.url),
    }
}

/// Calls an endpoint and returns its JSON (Null for an empty body); non-2xx is an error with the
/// server's message.
pub fn call(login: &Login, env: Option<&str>, endpoint: &str, params: &BTreeMap<String, String>) -> Result<Value> {
    let table = if env.is_some() { m1_server::routes::ENV_ROUTES } else { m1_server::routes::OPS_ROUTES };
    // POST when the endpoint takes it and there is something to send, else its first verb.
    let methods = m1_server::routes::find(table, endpoint).map_or(&["POST"][..], |r| r.methods);
    let method = if methods.contains(&"POST") && params.keys().any(|k| k != "url") { "POST" } else { methods[0] };
    let url = endpoint_url(login, env, endpoint);
    let form: Vec<(&str, &str)> =
        params.iter().filter(|(k, _)| *k != "url").map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let agent = agent();
    let response = if method == "GET" {
        let mut req = agent.get(&url).query_pairs(form);
        if let Some(t) = &login.token {
            req = req.header("m1-auth-token", t);
        }
        req.call()
    } else {
        let mut req = agent.post(&url);
        if let Some(t) = &login.token {
            req = req.header("m1-auth-token", t);
        }
        req.send_form(form)
    }
    .with_context(|| format!("calling {url}"))?;
    let status = response.status().as_u16();
    let text = response.into_body().read_to_string().with_context(|| format!("reading the answer of {url}"))?;
    let value: Value =
        if text.trim().is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
    if !(200..300).contains(&status) {
        let message =
            value.get("message").and_then(Value::as_str).map(str::to_string).unwrap_or_else(|| value.to_string());
        let hint = if status == 401 { " (log in again with `m1 auth ...`)" } else { "" };
        bail!("{url}: {status}: {message}{hint}");
    }
    Ok(value)
}

fn credentials(params: &BTreeMap<String, String>) -> Result<(String, String)> {
    let read = |name: &str| -> Result<String> {
        if let Some(v) = params.get(name) {
            return Ok(v.clone());
        }
        eprint!("{name}: ");
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        Ok(line.trim_end_matches(['\r', '\n']).to_string())
    };
    Ok((read("username")?, read("password")?))
}

/// `m1 auth <env> -url URL` (or ops with `env` = None): logs in and stores the token.
pub fn auth(env: Option<&str>, params: &BTreeMap<String, String>) -> Result<Value> {
    let mut login = login_for(env, login_url(params).as_deref())?
        .ok_or_else(|| anyhow!("give the server's address with -url http://HOST:PORT (or set M1_URL)"))?;
    let (username, password) = credentials(params)?;
    let mut form = params.clone();
    form.insert("username".into(), username);
    form.insert("password".into(), password);
    login.token = None;
    let answer = call(&login, env, "auth", &form)?;
    let token = answer.get("token").and_then(Value::as_str).ok_or_else(|| anyhow!("the server sent no token"))?;
    login.token = Some(token.to_string());
    let mut logins = load()?;
    match env {
        Some(e) => {
            logins.envs.insert(e.to_string(), login);
        }
        None => logins.ops = Some(login),
    }
    save(&logins)?;
    Ok(serde_json::json!({"expires": answer.get("expires")}))
}

/// `m1 signup -url URL -username U -password P`: an ops user on the server.
pub fn signup(params: &BTreeMap<String, String>) -> Result<Value> {
    let login = login_for(None, login_url(params).as_deref())?
        .ok_or_else(|| anyhow!("give the server's address with -url http://HOST:PORT (or set M1_URL)"))?;
    let (username, password) = credentials(params)?;
    let mut form = params.clone();
    form.insert("username".into(), username);
    form.insert("password".into(), password);
    call(&Login { token: None, ..login.clone() }, None, "signup", &form)?;
    let mut logins = load()?;
    if logins.ops.is_none() {
        logins.ops = Some(Login { url: login.url, token: None });
        save(&logins)?;
    }
    Ok(Value::Null)
}
