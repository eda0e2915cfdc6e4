//! The CLI as a client of a remote `m1 serve`: `m1 auth <env> -remote URL`, `m1 signup` /
//! `m1 auth` (ops), then `m1 <env> ...` and `m1 ops ...` go over HTTP with the stored token.
//!
//! Logins live in `$M1_HOME/remote.json`, written owner-only (0600) since it holds tokens. An
//! environment with a stored login is reached remotely even if the local catalog has one of the
//! same name; `-remote URL` (or `$M1_REMOTE`) on any command forces a remote call for that
//! command. The verb is the endpoint's own from the library's table.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::PathBuf;

use anyhow::{Context, Result, anyhow};
use m1::Catalog;
use m1::endpoint::{Answer, Endpoint, Scope, Verbs};
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

/// The address given with `-remote`, else `$M1_REMOTE`.
fn remote_url(given: Option<&str>) -> Option<String> {
    given.map(str::to_string).or_else(|| std::env::var("M1_REMOTE").ok().filter(|u| !u.is_empty()))
}

/// The stored login of `env` (`None` for ops), with `-remote` / `$M1_REMOTE` overriding its
/// address; `None` when the call is local.
pub fn login_for(env: Option<&str>, url: Option<&str>) -> Result<Option<Login>> {
    let logins = load()?;
    let stored = match env {
        Some(e) => logins.envs.get(e).cloned(),
        None => logins.ops.clone(),
    };
    let url = remote_url(url).map(|u| u.trim_end_matches('/').to_string());
    Ok(match (stored, url) {
        (Some(mut l), Some(u)) => {
            if l.url != u {
                l.token = None;
            }
            l.url = u;
            Some(l)
        }
        (Some(l), None) => Some(l),
        (None, Some(u)) => Some(Login { url: u, token: None }),
        (None, None) => None,
    })
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder().http_status_as_error(false).build().into()
}

fn endpoint_url(login: &Login, env: Option<&str>, path: &str) -> String {
    match env {
        Some(e) => format!("{}/{e}/{path}", login.url),
        None => format!("{}/ops/{path}", login.url),
    }
}

/// Sends a call; returns the status and the response.
fn send(
    login: &Login,
    env: Option<&str>,
    ep: &Endpoint,
    path: &str,
    params: &[(String, String)],
) -> Result<(u16, ureq::http::Response<ureq::Body>, String)> {
    // POST when the endpoint takes it and there is something to send (or it changes things).
    let post = match ep.verbs {
        Verbs::Post => true,
        Verbs::Get => false,
        Verbs::Both => !params.is_empty(),
    };
    let url = endpoint_url(login, env, path);
    let form: Vec<(&str, &str)> = params.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let agent = agent();
    // An upload: the local file is the body, streamed; the other parameters go in the query.
    if ep.takes_body {
        let query: Vec<(&str, &str)> = form.iter().filter(|(k, _)| *k != "file").copied().collect();
        let mut req = agent.post(&url).query_pairs(query).header("content-type", "application/octet-stream");
        if let Some(t) = &login.token {
            req = req.header("m1-auth-token", t);
        }
        let response = match params.iter().find(|(k, _)| k == "file") {
            Some((_, file)) => {
                let mut f = std::fs::File::open(file).with_context(|| format!("opening {file}"))?;
                req.send(ureq::SendBody::from_reader(&mut f))
            }
            None => req.send_empty(),
        }
        .with_context(|| format!("calling {url}"))?;
        return Ok((response.status().as_u16(), response, url));
    }
    let response = if post {
        let mut req = agent.post(&url);
        if let Some(t) = &login.token {
            req = req.header("m1-auth-token", t);
        }
        req.send_form(form)
    } else {
        let mut req = agent.get(&url).query_pairs(form);
        if let Some(t) = &login.token {
            req = req.header("m1-auth-token", t);
        }
        req.call()
    }
    .with_context(|| format!("calling {url}"))?;
    Ok((response.status().as_u16(), response, url))
}

fn failure(status: u16, url: &str, text: &str) -> anyhow::Error {
    let value: Value = serde_json::from_str(text).unwrap_or(Value::String(text.to_string()));
    let message = value.get("message").and_then(Value::as_str).map(str::to_string).unwrap_or_else(|| value.to_string());
    let hint = if status == 401 { " (log in again with `m1 auth ...`)" } else { "" };
    anyhow!("{url}: {status}: {message}{hint}")
}

/// Calls an endpoint and returns its JSON (Null for an empty body); non-2xx is an error with the
/// server's message.
fn call_json(
    login: &Login,
    env: Option<&str>,
    ep: &Endpoint,
    path: &str,
    params: &[(String, String)],
) -> Result<Value> {
    let (status, response, url) = send(login, env, ep, path, params)?;
    let text = response.into_body().read_to_string().with_context(|| format!("reading the answer of {url}"))?;
    if !(200..300).contains(&status) {
        return Err(failure(status, &url, &text));
    }
    Ok(if text.trim().is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) })
}

/// `m1 <env> <endpoint> ...` on a server: prints what the local call would print (JSON
/// pretty-printed, streams copied as they arrive).
pub fn call(login: &Login, env: Option<&str>, ep: &Endpoint, path: &str, params: &[(String, String)]) -> Result<()> {
    if ep.answer != Answer::Stream {
        let v = call_json(login, env, ep, path, params)?;
        if v.is_null() {
            return Ok(());
        }
        return crate::cli::print_output(m1::endpoint::Output::Json(v), &mut std::io::stdout().lock());
    }
    let (status, response, url) = send(login, env, ep, path, params)?;
    let mut body = response.into_body();
    if !(200..300).contains(&status) {
        let text = body.read_to_string().unwrap_or_default();
        return Err(failure(status, &url, &text));
    }
    let mut reader = body.as_reader();
    let mut out = std::io::stdout().lock();
    std::io::copy(&mut reader, &mut out).with_context(|| format!("reading the answer of {url}"))?;
    out.flush()?;
    Ok(())
}

/// The parameters with `username` and `password` asked for on the terminal when not given.
fn with_credentials(mut params: Vec<(String, String)>) -> Result<Vec<(String, String)>> {
    for name in ["username", "password"] {
        if !params.iter().any(|(k, _)| k == name) {
            let v = ask(name)?;
            params.push((name.to_string(), v));
        }
    }
    Ok(params)
}

fn ask(name: &str) -> Result<String> {
    eprint!("{name}: ");
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

fn scope_endpoint(env: Option<&str>, path: &str) -> Result<&'static Endpoint> {
    Ok(m1::endpoint::require(if env.is_some() { Scope::Env } else { Scope::Ops }, path)?)
}

/// `m1 auth [<env>] -remote URL`: logs in and stores the token.
pub fn auth(env: Option<&str>, url: Option<&str>, params: Vec<(String, String)>) -> Result<Value> {
    let mut login = login_for(env, url)?
        .ok_or_else(|| anyhow!("give the server's address with -remote http://HOST:PORT (or set M1_REMOTE)"))?;
    let form = with_credentials(params)?;
    login.token = None;
    let answer = call_json(&login, env, scope_endpoint(env, "auth")?, "auth", &form)?;
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

/// `m1 signup -remote URL -username U -password P`: an ops user on the server.
pub fn signup(url: Option<&str>, params: Vec<(String, String)>) -> Result<()> {
    let login = login_for(None, url)?
        .ok_or_else(|| anyhow!("give the server's address with -remote http://HOST:PORT (or set M1_REMOTE)"))?;
    let form = with_credentials(params)?;
    call_json(&Login { token: None, ..login.clone() }, None, scope_endpoint(None, "signup")?, "signup", &form)?;
    let mut logins = load()?;
    if logins.ops.is_none() {
        logins.ops = Some(Login { url: login.url, token: None });
        save(&logins)?;
    }
    Ok(())
}
