//! Ops endpoints (seed 000 as SPEC §1 maps them): ops users and accounts kept in
//! `$M1_HOME/ops-auth.json`, environments in the local catalog.
//!
//! Accounts: the first user to sign up becomes owner, admin, viewer and manager of the account
//! `default`, which holds every catalog environment not assigned to another account (so
//! environments made with `m1 ops env/create` on the command line belong to it). Every later
//! signup gets an account of their own with the same four rights. Rights are per account and
//! checked against the account the request is about (the `account` parameter, or the account of
//! the environment named).

use std::collections::BTreeMap;
use std::sync::Arc;

use m1_engine::{CatalogEntry, EnvConfig};
use serde_json::{Value, json};

use crate::auth::{
    Account, AuthData, User, check_password, check_rights, check_username, hash_password, now_ms, random_id,
};
use crate::dispatch::{App, Caller};
use crate::error::{Result, ServerError};
use crate::params::Params;
use crate::routes::{self, Access, OPS_RIGHTS};
use crate::stream::{Reply, blocking};

/// Minimum ops password length (ops has no system parameters).
const OPS_PASSWORD_MIN: usize = 8;

/// Calls ops endpoint `path` (route, verb and token already checked).
pub async fn call(app: Arc<App>, path: &str, caller: Caller, p: Params) -> Result<Reply> {
    let path = path.to_string();
    blocking(move || call_blocking(&app, &path, &caller, &p)).await
}

fn call_blocking(app: &App, path: &str, caller: &Caller, p: &Params) -> Result<Reply> {
    // Account-scoped endpoints: find the account and check the right before anything else.
    let needed = match routes::find(routes::OPS_ROUTES, path).map(|r| r.access) {
        Some(Access::Account(right)) => Some(right),
        _ => None,
    };
    match path {
        "ping" => Ok(Reply::Json(json!({"status": "ok"}))),
        "signup" => signup(app, p),
        "auth" => {
            let name = p.req("username")?;
            let password = p.req("password")?;
            if !app.ops.verify_password(name, password) {
                return Err(ServerError::Unauthorized("wrong username or password".into()));
            }
            let ttl = p.num::<i64>("ttl")?.filter(|t| *t > 0).unwrap_or(86_400_000);
            let (secret, token) = app.ops.issue(name, Some(caller.ip.clone()), ttl)?;
            Ok(Reply::Json(json!({"token": secret, "expires": token.expires})))
        }
        "user/password" => {
            let me = caller.username()?;
            let password = p.req("password")?;
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
                        .filter_map(|a| a.users.get(me).map(|r| json!({"id": a.id, "name": a.name, "rights": r})))
                        .collect(),
                )
            })))
        }
        "account/user/list" => {
            let account = member_account(app, caller, p.req("account")?)?;
            Ok(Reply::Json(Value::Array(
                account.users.iter().map(|(u, r)| json!({"username": u, "rights": r})).collect(),
            )))
        }
        "account/user/add" | "account/user/update" => {
            let account = require(app, caller, p.req("account")?, needed)?;
            let name = p.req("username")?;
            let rights = match p.list("rights")? {
                Some(r) => r,
                None if path == "account/user/add" => Vec::new(),
                None => return Err(ServerError::BadRequest("missing required parameter 'rights'".into())),
            };
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
        "account/user/remove" => {
            let account = require(app, caller, p.req("account")?, needed)?;
            let name = p.req("username")?;
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
        "env/list" => {
            let me = caller.username()?;
            let accounts: Vec<Account> = match p.opt("account") {
                Some(a) => vec![require(app, caller, a, needed)?],
                None => app.ops.read(|d| d.accounts.iter().filter(|a| has_right(a, me, "view")).cloned().collect()),
            };
            let mut out = Vec::new();
            for entry in app.catalog.list()? {
                let acc = env_account(app, &entry)?;
                if accounts.iter().any(|a| a.id == acc.id) {
                    out.push(env_json(app, &entry, &acc));
                }
            }
            Ok(Reply::Json(Value::Array(out)))
        }
        "env/create" => env_create(app, caller, p, needed),
        _ if path.starts_with("env/") => env_endpoint(app, path, caller, p, needed),
        other => Err(ServerError::NotFound(format!("unknown ops endpoint '/{other}'"))),
    }
}

fn signup(app: &App, p: &Params) -> Result<Reply> {
    let name = p.req("username")?;
    let password = p.req("password")?;
    check_username(name)?;
    check_password(password, OPS_PASSWORD_MIN)?;
    let hash = hash_password(password)?;
    app.ops.update(|d| {
        if d.users.contains_key(name) {
            return Err(ServerError::Conflict(format!("an ops user named '{name}' exists already")));
        }
        d.users.insert(name.to_string(), User { password: hash, rights: Vec::new(), created: now_ms() });
        let all: Vec<String> = OPS_RIGHTS.iter().map(|r| r.to_string()).collect();
        let (id, account_name) = if d.accounts.is_empty() {
            ("default".to_string(), "default".to_string())
        } else {
            (random_id(), name.to_string())
        };
        d.accounts.push(Account { id, name: account_name, users: BTreeMap::from([(name.to_string(), all)]) });
        Ok(())
    })?;
    Ok(Reply::Empty)
}

fn has_right(a: &Account, user: &str, right: &str) -> bool {
    a.users.get(user).is_some_and(|r| r.iter().any(|x| x == right))
}

fn find_account(d: &AuthData, id: &str) -> Option<Account> {
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

/// The account an environment belongs to (the first account when unassigned).
fn env_account(app: &App, entry: &CatalogEntry) -> Result<Account> {
    app.ops
        .read(|d| match d.env_accounts.get(&entry.id) {
            Some(id) => find_account(d, id),
            None => d.accounts.first().cloned(),
        })
        .ok_or_else(|| ServerError::Forbidden("no ops account holds this environment yet".into()))
}

fn env_json(app: &App, entry: &CatalogEntry, account: &Account) -> Value {
    let mut v = serde_json::to_value(entry.redacted()).unwrap_or_default();
    let roles = app.ops.read(|d| d.read_roles.get(&entry.id).cloned().unwrap_or_default());
    if let Some(map) = v.as_object_mut() {
        map.insert("account".into(), json!(account.id));
        map.insert("readRoles".into(), json!(roles));
    }
    v
}

fn env_create(app: &App, caller: &Caller, p: &Params, needed: Option<&str>) -> Result<Reply> {
    let name = p
        .opt("env")
        .or(p.opt("name"))
        .ok_or_else(|| ServerError::BadRequest("missing required parameter 'env'".into()))?;
    let me = caller.username()?;
    let account = match p.opt("account") {
        Some(a) => require(app, caller, a, needed)?,
        None => app
            .ops
            .read(|d| d.accounts.iter().find(|a| has_right(a, me, "manage")).cloned())
            .ok_or_else(|| ServerError::Forbidden("you hold the 'manage' right in no account".into()))?,
    };
    let config = EnvConfig::from_params(|k| p.opt(k))?;
    let options: BTreeMap<String, String> = p.json("options")?.unwrap_or_default();
    let entry = app.catalog.create_with(name, p.opt("url"), options, config)?;
    app.ops.update(|d| {
        d.env_accounts.insert(entry.id.clone(), account.id.clone());
        Ok(())
    })?;
    Ok(Reply::Json(env_json(app, &entry, &account)))
}

/// Endpoints about one existing environment (`env=<name or id>`).
fn env_endpoint(app: &App, path: &str, caller: &Caller, p: &Params, needed: Option<&str>) -> Result<Reply> {
    let name = p.req("env")?;
    // Unknown environments answer 403 like environments of other accounts, so names cannot be
    // probed by users without access.
    let entry = app.catalog.get(name)?;
    let account = match &entry {
        Some(e) => env_account(app, e)?,
        None => return Err(ServerError::Forbidden(format!("no environment '{name}' you can access"))),
    };
    let entry = entry.expect("checked above");
    require(app, caller, &account.id, needed)?;
    let id = entry.id.clone();
    let done = |app: &App| {
        app.evict(&id);
        Ok(Reply::Empty)
    };
    match path {
        "env/get" => Ok(Reply::Json(env_json(app, &entry, &account))),
        "env/rename" => {
            app.catalog.rename(&entry.id, p.req("name")?)?;
            done(app)
        }
        "env/destroy" => {
            app.catalog.destroy(&entry.id)?;
            app.ops.update(|d| {
                d.env_accounts.remove(&id);
                d.read_roles.remove(&id);
                Ok(())
            })?;
            done(app)
        }
        "env/rescale" => {
            let servers: Option<u32> = p.num("servers")?;
            let _threshold: Option<u32> = p.num("threshold")?;
            if servers == Some(0) {
                return Err(ServerError::BadRequest("parameter 'servers' must be at least 1".into()));
            }
            if let Some(s) = servers {
                app.catalog.rescale(&entry.id, s)?;
            }
            done(app)
        }
        "env/reboot" => {
            p.req("group")?;
            done(app)
        }
        "env/bucket/register" => {
            let options: BTreeMap<String, String> = p.json("options")?.unwrap_or_default();
            app.catalog.register_bucket(&entry.id, p.req("bucket")?, options)?;
            done(app)
        }
        "env/bucket/deregister" => {
            app.catalog.deregister_bucket(&entry.id, p.req("bucket")?)?;
            done(app)
        }
        "env/bucket/grant" | "env/bucket/revoke" => {
            let arn = p.req("arn")?.trim().to_string();
            if arn.is_empty() {
                return Err(ServerError::BadRequest("parameter 'arn' is empty".into()));
            }
            app.ops.update(|d| {
                let roles = d.read_roles.entry(id.clone()).or_default();
                roles.retain(|r| *r != arn);
                if path == "env/bucket/grant" {
                    roles.push(arn.clone());
                }
                Ok(())
            })?;
            Ok(Reply::Empty)
        }
        "env/outbound" => {
            let enable = p
                .flag("enable")?
                .ok_or_else(|| ServerError::BadRequest("missing required parameter 'enable'".into()))?;
            app.catalog.set_outbound(&entry.id, enable)?;
            done(app)
        }
        s if s.starts_with("env/store/") => {
            let h = app.env(&entry.id)?;
            Ok(match m1_query::store::params::admin(&h.stores, &h.env, &s["env/".len()..], |k| p.opt(k))? {
                Some(v) => Reply::Json(v),
                None => Reply::Empty,
            })
        }
        s if s.starts_with("env/session/") => {
            let h = app.env(&entry.id)?;
            let sessions = m1_query::session::Sessions::for_env(&h.env);
            Ok(match m1_query::session::params::call(&sessions, s, |k| p.opt(k))? {
                Some(v) => Reply::Json(v),
                None => Reply::Empty,
            })
        }
        other => Err(ServerError::NotFound(format!("unknown ops endpoint '/{other}'"))),
    }
}
