//! Ops over HTTP (seed 000 as SPEC §1 maps it): ops users, tokens and accounts kept in
//! `$M1_HOME/ops-auth.json`, and the account checks around the library's environment
//! endpoints (`env/*`), which manage the catalog.
//!
//! Accounts: the account `default` holds every catalog environment not assigned to another
//! account (so environments made with `m1 ops env/create` on the command line belong to it). Its
//! owner is made by the operator on the machine (`m1 owner -username U -password P`), never over
//! HTTP. Signup is off unless the operator turns it on (`m1 serve -signup true`); every signup
//! gets an account of their own, with the four rights. Rights are per account and checked against
//! the account the request is about (the `account` parameter, or the account of the environment
//! named).
//!
//! Over HTTP an environment may only be created where the operator allows
//! (`-allowLocation`, default `$M1_HOME/envs`), and the catalog refuses locations that would mix
//! with other files, so `env/destroy` can only ever remove what m1 wrote.

use std::collections::BTreeMap;
use std::sync::Arc;

use m1::endpoint::{Access, Args, Endpoint, EnvOpener, Handler, OPS_RIGHTS, OpsCall};
use serde_json::{Value, json};

use crate::auth::{
    Account, AuthData, AuthStore, Backing, User, check_password, check_rights, check_username, hash_password, now_ms,
    random_id,
};
use crate::dispatch::{App, Caller};
use crate::error::{Result, ServerError};
use crate::stream::Reply;

/// Minimum ops password length (ops has no system parameters).
const OPS_PASSWORD_MIN: usize = 8;

/// Answers ops endpoint `ep` (route, verb and token already checked).
pub fn call(app: &App, caller: &Caller, ep: &Endpoint, a: &Args) -> Result<Reply> {
    let needed = match ep.access {
        Access::Account(right) => Some(right),
        _ => None,
    };
    match ep.handler {
        Handler::Served => served(app, caller, ep.path, a, needed),
        Handler::Ops(f) => environments(app, caller, ep.path, a, needed, f),
        Handler::Env(_) => Err(ServerError::Internal(format!("{ep:?} is not an ops endpoint"))),
    }
}

/// The library's ops endpoints, reaching environments through the server's open handles.
struct Opener<'a>(&'a App);

impl EnvOpener for Opener<'_> {
    fn open(&self, name: &str) -> m1::Result<Arc<m1::Environment>> {
        self.0.env(name).map(|h| h.env.clone()).map_err(|e| match e {
            ServerError::Api(e) => e,
            other => m1::EngineError::UnknownEnvironment(format!("{name} ({other})")).into(),
        })
    }

    fn forget(&self, id: &str) {
        self.0.evict(id);
    }

    fn state(&self, id: &str) -> &'static str {
        self.0.state(id)
    }

    fn if_open(&self, id: &str) -> Option<Arc<m1::Environment>> {
        self.0.open_handles().into_iter().find(|h| h.env.engine().config().id == id).map(|h| h.env.clone())
    }

    fn endpoints(&self, entry: &m1::CatalogEntry) -> Vec<Value> {
        let Some(addr) = self.0.addr.get() else { return Vec::new() };
        let port = addr.port();
        vec![
            json!({"protocol": "http", "host": format!("{}.localhost", entry.name), "port": port}),
            json!({"protocol": "http", "host": addr.ip().to_string(), "port": port, "path": format!("/{}/", entry.name)}),
        ]
    }
}

type OpsHandler = fn(&OpsCall<'_>, &Args) -> m1::Result<m1::endpoint::Output<'static>>;

fn run(app: &App, f: OpsHandler, a: &Args) -> Result<Option<Value>> {
    let call = OpsCall { catalog: &app.catalog, envs: &Opener(app) };
    Ok(match f(&call, a)? {
        m1::endpoint::Output::Json(v) => Some(v),
        _ => None,
    })
}

fn reply(v: Option<Value>) -> Reply {
    v.map_or(Reply::Empty, Reply::Json)
}

fn environments(
    app: &App,
    caller: &Caller,
    path: &str,
    a: &Args,
    needed: Option<&str>,
    f: OpsHandler,
) -> Result<Reply> {
    if path == "ping" {
        return Ok(reply(run(app, f, a)?));
    }
    let me = caller.username()?;
    match path {
        "env/list" => {
            let accounts: Vec<Account> = match a.text("account") {
                Some(acc) => vec![require(app, caller, acc, needed)?],
                None => app.ops.read(|d| d.accounts.iter().filter(|acc| has_right(acc, me, "view")).cloned().collect()),
            };
            let all = run(app, f, a)?.unwrap_or_default();
            let mut out = Vec::new();
            for mut env in all.as_array().cloned().unwrap_or_default() {
                let id = env["id"].as_str().unwrap_or_default().to_string();
                if let Some(acc) = env_account(app, &id)
                    && accounts.iter().any(|x| x.id == acc.id)
                {
                    env["account"] = json!(acc.id);
                    out.push(env);
                }
            }
            Ok(Reply::Json(Value::Array(out)))
        }
        "env/create" => {
            check_location(app, a)?;
            let account = match a.text("account") {
                Some(acc) => require(app, caller, acc, needed)?,
                None => app
                    .ops
                    .read(|d| d.accounts.iter().find(|acc| has_right(acc, me, "manage")).cloned())
                    .ok_or_else(|| ServerError::Forbidden("you hold the 'manage' right in no account".into()))?,
            };
            let mut created = run(app, f, a)?.unwrap_or_default();
            let id = created["id"].as_str().unwrap_or_default().to_string();
            app.ops.update(|d| {
                d.env_accounts.insert(id.clone(), account.id.clone());
                d.open_init.insert(id.clone());
                Ok(())
            })?;
            created["account"] = json!(account.id);
            Ok(Reply::Json(created))
        }
        "env/restore" => {
            check_location(app, a)?;
            if let Some(location) = a.text("location") {
                m1::endpoint::check_copy_location(Some(&app.copy_locations()), "location", location)?;
            }
            if let Some(from) = a.text("from") {
                let entry = app.catalog.get(from)?;
                let account = entry.as_ref().and_then(|e| env_account(app, &e.id));
                let Some(account) = account else {
                    return Err(ServerError::Forbidden(format!("no environment '{from}' you can access")));
                };
                require(app, caller, &account.id, needed)?;
            }
            let account = match a.text("account") {
                Some(acc) => require(app, caller, acc, needed)?,
                None => app
                    .ops
                    .read(|d| d.accounts.iter().find(|acc| has_right(acc, me, "admin")).cloned())
                    .ok_or_else(|| ServerError::Forbidden("you hold the 'admin' right in no account".into()))?,
            };
            let mut created = run(app, f, a)?.unwrap_or_default();
            let id = created["id"].as_str().unwrap_or_default().to_string();
            app.ops.update(|d| {
                d.env_accounts.insert(id.clone(), account.id.clone());
                d.open_init.insert(id.clone());
                Ok(())
            })?;
            created["account"] = json!(account.id);
            Ok(Reply::Json(created))
        }
        _ => {
            // Unknown environments answer 403 like environments of other accounts, so names
            // cannot be probed by users without access.
            let name = a.req("env")?;
            let entry = app.catalog.get(name)?;
            let account = entry.as_ref().and_then(|e| env_account(app, &e.id));
            let (Some(entry), Some(account)) = (entry, account) else {
                return Err(ServerError::Forbidden(format!("no environment '{name}' you can access")));
            };
            require(app, caller, &account.id, needed)?;
            let mut answer = run(app, f, a)?;
            if path == "env/destroy" {
                app.ops.update(|d| {
                    d.env_accounts.remove(&entry.id);
                    d.open_init.remove(&entry.id);
                    Ok(())
                })?;
            }
            if path == "env/get"
                && let Some(v) = answer.as_mut()
            {
                v["account"] = json!(account.id);
            }
            Ok(reply(answer))
        }
    }
}

fn served(app: &App, caller: &Caller, path: &str, a: &Args, needed: Option<&str>) -> Result<Reply> {
    match path {
        "signup" => signup(app, a),
        "auth" => {
            let name = a.req("username")?;
            let keys = [format!("ops:user:{name}"), format!("ip:{}", caller.ip)];
            app.throttle.check(&keys)?;
            if !app.ops.verify_password(name, a.req("password")?) {
                app.throttle.failed(&keys);
                return Err(ServerError::Unauthorized("wrong username or password".into()));
            }
            app.throttle.succeeded(&keys[0]);
            let ttl = a.int("ttl").filter(|t| *t > 0).unwrap_or(86_400_000);
            let (secret, token) = app.ops.issue(name, Some(caller.ip.clone()), ttl)?;
            Ok(Reply::Json(json!({"token": secret, "expires": token.expires})))
        }
        "user/password" => {
            let me = caller.username()?;
            let password = a.req("password")?;
            check_password(password, OPS_PASSWORD_MIN)?;
            let hash = hash_password(password)?;
            app.ops.update(|d| {
                d.users.get_mut(me).ok_or_else(|| ServerError::Unauthorized("no such user".into()))?.password = hash;
                Ok(())
            })?;
            Ok(Reply::Empty)
        }
        "account/list" => {
            let me = caller.username()?;
            Ok(Reply::Json(app.ops.read(|d| {
                Value::Array(
                    d.accounts
                        .iter()
                        .filter_map(|acc| {
                            acc.users.get(me).map(|r| json!({"id": acc.id, "name": acc.name, "rights": r}))
                        })
                        .collect(),
                )
            })))
        }
        "account/user/list" => {
            let account = member_account(app, caller, a.req("account")?)?;
            Ok(Reply::Json(Value::Array(
                account.users.iter().map(|(u, r)| json!({"username": u, "rights": r})).collect(),
            )))
        }
        "account/user/add" | "account/user/update" => {
            let account = require(app, caller, a.req("account")?, needed)?;
            let name = a.req("username")?;
            let rights = a.list("rights").unwrap_or_default().to_vec();
            check_rights(&rights)?;
            app.ops.update(|d| {
                if !d.users.contains_key(name) {
                    return Err(ServerError::NotFound(format!("no ops user named '{name}' (they sign up first)")));
                }
                let acc = account_mut(d, &account.id)?;
                if path == "account/user/update" && !acc.users.contains_key(name) {
                    return Err(ServerError::NotFound(format!("'{name}' has no access to account {}", acc.id)));
                }
                acc.users.insert(name.to_string(), rights);
                Ok(())
            })?;
            Ok(Reply::Empty)
        }
        "account/firewall" => {
            let account = require(app, caller, a.req("account")?, needed)?;
            let ranges: Option<Vec<String>> = a.json("ranges")?;
            if let Some(r) = &ranges {
                m1_engine::service::check_ranges("ranges", r.iter().map(String::as_str))?;
            }
            app.ops.update(|d| {
                account_mut(d, &account.id)?.firewall_ranges = ranges.clone();
                Ok(())
            })?;
            Ok(Reply::Json(json!({"id": account.id, "firewallRanges": ranges})))
        }
        "account/user/remove" => {
            let account = require(app, caller, a.req("account")?, needed)?;
            let name = a.req("username")?;
            app.ops.update(|d| {
                let acc = account_mut(d, &account.id)?;
                acc.users
                    .remove(name)
                    .ok_or_else(|| ServerError::NotFound(format!("'{name}' has no access to account {}", acc.id)))?;
                Ok(())
            })?;
            Ok(Reply::Empty)
        }
        "token/list" => {
            let me = caller.username()?;
            let now = now_ms();
            Ok(Reply::Json(app.ops.read(|d| {
                Value::Array(
                    d.tokens
                        .iter()
                        .filter(|(_, t)| t.username == me && t.expires > now)
                        .map(|(h, t)| {
                            json!({"id": crate::auth::token_id(h), "username": t.username, "ip": t.ip,
                                   "issued": t.issued, "expires": t.expires})
                        })
                        .collect(),
                )
            })))
        }
        "token/delete" => {
            let me = caller.username()?.to_string();
            app.ops.update(|d| {
                d.tokens.retain(|_, t| t.username != me);
                Ok(())
            })?;
            Ok(Reply::Empty)
        }
        other => Err(ServerError::NotFound(format!("unknown ops endpoint '/{other}'"))),
    }
}

fn signup(app: &App, a: &Args) -> Result<Reply> {
    if !app.options.signup {
        return Err(ServerError::Forbidden(
            "signup is off on this server (the operator turns it on with `m1 serve -signup true`)".into(),
        ));
    }
    add_user(&app.ops, a.req("username")?, a.req("password")?, false)?;
    Ok(Reply::Empty)
}

/// The account environments of this machine's catalog belong to unless assigned elsewhere.
pub const DEFAULT_ACCOUNT: &str = "default";

/// An ops user with the four rights in an account: their own, or (`owner`) the account
/// `default`, which must not have an owner yet.
fn add_user(ops: &AuthStore, name: &str, password: &str, owner: bool) -> Result<()> {
    check_username(name)?;
    check_password(password, OPS_PASSWORD_MIN)?;
    let hash = hash_password(password)?;
    ops.update(|d| {
        if d.users.contains_key(name) {
            return Err(ServerError::Conflict(format!("an ops user named '{name}' exists already")));
        }
        if owner && d.accounts.iter().any(|acc| acc.id == DEFAULT_ACCOUNT) {
            return Err(ServerError::Conflict(format!("the account '{DEFAULT_ACCOUNT}' has an owner already")));
        }
        d.users.insert(name.to_string(), User { password: hash, rights: Vec::new(), created: now_ms() });
        let all: Vec<String> = OPS_RIGHTS.iter().map(|r| r.to_string()).collect();
        let (id, account_name) = if owner {
            (DEFAULT_ACCOUNT.to_string(), DEFAULT_ACCOUNT.to_string())
        } else {
            (random_id(), name.to_string())
        };
        d.accounts.push(Account {
            id,
            name: account_name,
            users: BTreeMap::from([(name.to_string(), all)]),
            firewall_ranges: None,
        });
        Ok(())
    })
}

/// The operator's `m1 owner`: makes `username` the owner of the account `default` in the ops
/// file of the catalog at `home` (a running server sees it at once).
pub fn init_owner(home: &std::path::Path, username: &str, password: &str) -> Result<()> {
    let ops = AuthStore::open(Backing::File(home.join(OPS_FILE)))?;
    add_user(&ops, username, password, true)
}

/// The ops users, tokens and accounts, in `$M1_HOME`.
pub const OPS_FILE: &str = "ops-auth.json";

/// Refuses an `env/create` location outside what the operator allows.
fn check_location(app: &App, a: &Args) -> Result<()> {
    let Some(url) = a.text("url") else { return Ok(()) };
    let default = app.catalog.home().join("envs").display().to_string();
    let allowed: Vec<&str> = if app.options.locations.is_empty() {
        vec![default.as_str()]
    } else {
        app.options.locations.iter().map(String::as_str).collect()
    };
    if allowed.iter().any(|root| m1_engine::catalog::location_within(url, root)) {
        return Ok(());
    }
    Err(ServerError::Forbidden(format!(
        "'{url}' is not a location this server creates environments in ({}); the operator allows more with `m1 serve -allowLocation DIR_OR_URL`",
        allowed.join(", ")
    )))
}

pub(crate) fn has_right(a: &Account, user: &str, right: &str) -> bool {
    a.users.get(user).is_some_and(|r| r.iter().any(|x| x == right))
}

pub(crate) fn find_account(d: &AuthData, id: &str) -> Option<Account> {
    d.accounts.iter().find(|a| a.id == id || a.name == id).cloned()
}

fn account_mut<'d>(d: &'d mut AuthData, id: &str) -> Result<&'d mut Account> {
    d.accounts.iter_mut().find(|a| a.id == id).ok_or_else(|| ServerError::NotFound(format!("no account '{id}'")))
}

/// The account, if the caller holds `right` in it (403 otherwise; unknown accounts also answer
/// 403 so account ids cannot be probed).
fn require(app: &App, caller: &Caller, account: &str, right: Option<&str>) -> Result<Account> {
    let me = caller.username()?;
    let right = right.unwrap_or("view");
    app.ops
        .read(|d| find_account(d, account))
        .filter(|a| has_right(a, me, right))
        .ok_or_else(|| ServerError::Forbidden(format!("this needs the '{right}' right in account '{account}'")))
}

fn member_account(app: &App, caller: &Caller, account: &str) -> Result<Account> {
    let me = caller.username()?;
    app.ops
        .read(|d| find_account(d, account))
        .filter(|a| a.users.contains_key(me))
        .ok_or_else(|| ServerError::Forbidden(format!("you have no access to account '{account}'")))
}

/// The account an environment belongs to (`default` when unassigned).
pub(crate) fn env_account(app: &App, id: &str) -> Option<Account> {
    app.ops.read(|d| find_account(d, d.env_accounts.get(id).map_or(DEFAULT_ACCOUNT, String::as_str)))
}

/// Refuses a user without the `view` right in the account `default` (the machine's operators):
/// server-wide figures (`/metrics`) name every environment.
pub fn require_server_view(app: &App, user: &str) -> Result<()> {
    let ok = app.ops.read(|d| find_account(d, DEFAULT_ACCOUNT)).is_some_and(|a| has_right(&a, user, "view"));
    if ok {
        Ok(())
    } else {
        Err(ServerError::Forbidden(format!("this needs the 'view' right in account '{DEFAULT_ACCOUNT}'")))
    }
}
