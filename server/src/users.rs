//! The environment endpoints that only a server has (seed 001's users and tokens): `init`,
//! `auth`, `user/*`, `token/*`. Their parameters are declared in the library's endpoint table
//! like every other endpoint's, and decoded by it.

use m1::endpoint::{Args, ENV_RIGHTS, Endpoint};
use serde_json::{Value, json};

use crate::auth::{AuthStore, Backing};
use crate::auth::{User, check_password, check_rights, check_username, hash_password, now_ms, token_hash, token_id};
use crate::dispatch::{App, Caller, EnvHandle};
use crate::error::{Result, ServerError};
use crate::stream::Reply;

/// Answers served endpoint `ep` of an environment (route, verb and rights already checked).
pub fn call(app: &App, h: &EnvHandle, caller: &Caller, ep: &Endpoint, a: &Args) -> Result<Reply> {
    match ep.path {
        "init" => {
            // Over HTTP only an environment that ops made over HTTP can be claimed; one made on
            // this machine gets its first admin from the operator (`m1 init <env>`).
            let id = &h.env.engine().config().id;
            if !app.ops.read(|d| d.open_init.contains(id)) {
                return Err(ServerError::Forbidden(format!(
                    "/init over HTTP is for environments created through ops; the operator makes the first admin of '{}' with `m1 init {} -username NAME -password PASSWORD`",
                    h.name, h.name
                )));
            }
            init(h, a)?;
            app.ops.update(|d| {
                d.open_init.remove(id);
                Ok(())
            })?;
            Ok(Reply::Empty)
        }
        "auth" => {
            let keys = [format!("env:{}:user:{}", h.name, a.req("username")?), format!("ip:{}", caller.ip)];
            app.throttle.check(&keys)?;
            match auth(h, caller, a) {
                Err(ServerError::Unauthorized(m)) => {
                    app.throttle.failed(&keys);
                    Err(ServerError::Unauthorized(m))
                }
                Ok(reply) => {
                    app.throttle.succeeded(&keys[0]);
                    Ok(reply)
                }
                other => other,
            }
        }
        "user/password" => user_password(h, caller, a),
        "user/list" => {
            Ok(Reply::Json(h.auth.read(|d| Value::Array(d.users.iter().map(|(name, u)| user_json(name, u)).collect()))))
        }
        "user/get" => {
            let name = a.req("username")?;
            h.auth.read(|d| d.users.get(name).map(|u| user_json(name, u))).map(Reply::Json).ok_or_else(|| no_user(name))
        }
        "user/add" => user_add(h, a),
        "user/update" => {
            let name = a.req("username")?;
            let rights = a.list("rights").unwrap_or_default().to_vec();
            check_rights(&rights)?;
            h.auth.update(|d| {
                d.users.get_mut(name).ok_or_else(|| no_user(name))?.rights = rights;
                Ok(())
            })?;
            Ok(Reply::Empty)
        }
        "user/remove" => {
            let name = a.req("username")?;
            h.auth.update(|d| {
                d.users.remove(name).ok_or_else(|| no_user(name))?;
                d.tokens.retain(|_, t| t.username != name);
                Ok(())
            })?;
            Ok(Reply::Empty)
        }
        "token/list" => {
            let now = now_ms();
            Ok(Reply::Json(h.auth.read(|d| {
                Value::Array(
                    d.tokens
                        .iter()
                        .filter(|(_, t)| t.expires > now)
                        .map(|(hash, t)| {
                            json!({"id": token_id(hash), "username": t.username, "ip": t.ip.as_deref().unwrap_or("..."),
                                   "issued": t.issued, "expires": t.expires})
                        })
                        .collect(),
                )
            })))
        }
        "token/data" => {
            let hash = token_hash(a.req("token")?);
            h.auth
                .read(|d| {
                    let t = d.tokens.get(&hash)?;
                    let rights = d.users.get(&t.username).map(|u| u.rights.clone()).unwrap_or_default();
                    Some(json!({"id": token_id(&hash), "username": t.username, "rights": rights,
                                "ip": t.ip.as_deref().unwrap_or("..."), "issued": t.issued, "expires": t.expires,
                                "expired": t.expires <= now_ms()}))
                })
                .map(Reply::Json)
                .ok_or_else(|| ServerError::NotFound("no such token (it may have expired or been deleted)".into()))
        }
        "token/delete" => {
            h.auth.update(|d| {
                d.tokens.clear();
                Ok(())
            })?;
            Ok(Reply::Empty)
        }
        other => Err(ServerError::NotFound(format!("unknown endpoint '/{other}'"))),
    }
}

/// Adds the users' part to an environment's `/health`: whether `/init` has made its admin.
///
/// Only callers with a token learn how many users there are: to anyone else an environment
/// without users would be an invitation.
pub fn add_health(h: &EnvHandle, caller: &Caller, health: &mut Value) {
    let users = h.auth.read(|d| d.users.len());
    let known = caller.token.as_deref().is_some_and(|t| h.auth.check(t, &caller.ip).is_ok());
    health["components"]["auth"] =
        if known { json!({"status": "ok", "users": users, "initialized": users > 0}) } else { json!({"status": "ok"}) };
}

fn no_user(name: &str) -> ServerError {
    ServerError::NotFound(format!("no user named '{name}'"))
}

fn user_json(name: &str, u: &User) -> Value {
    json!({"username": name, "rights": u.rights, "created": u.created})
}

fn min_password(h: &EnvHandle) -> usize {
    h.param_i64("password-min-length", 8).max(0) as usize
}

/// `/init`: the first admin, holding every environment right; refused once any user exists.
fn init(h: &EnvHandle, a: &Args) -> Result<Reply> {
    first_admin(&h.auth, a.req("username")?, a.req("password")?, min_password(h))?;
    Ok(Reply::Empty)
}

/// The operator's `m1 init <env>`: the environment's first admin, written to its `auth.json`.
pub fn init_admin(env: std::sync::Arc<m1::Environment>, username: &str, password: &str) -> Result<()> {
    let min = env.engine().system()?.get("password-min-length").and_then(Value::as_i64).unwrap_or(8).max(0);
    first_admin(&AuthStore::open(Backing::Env(env))?, username, password, min as usize)
}

fn first_admin(auth: &AuthStore, name: &str, password: &str, min_password: usize) -> Result<()> {
    check_username(name)?;
    check_password(password, min_password)?;
    let hash = hash_password(password)?;
    auth.update(|d| {
        if !d.users.is_empty() {
            return Err(ServerError::Conflict(
                "this environment has users already; /init only creates the first".into(),
            ));
        }
        let rights = ENV_RIGHTS.iter().map(|r| r.to_string()).collect();
        d.users.insert(name.to_string(), User { password: hash, rights, created: now_ms() });
        Ok(())
    })
}

/// `/auth`: a token for the user. `ip` (`...` = any address) and `ttl` need admin: the user's own,
/// or an admin token sent along.
fn auth(h: &EnvHandle, caller: &Caller, a: &Args) -> Result<Reply> {
    let name = a.req("username")?;
    let password = a.req("password")?;
    let ip = a.text("ip").map(str::trim).filter(|s| !s.is_empty());
    let ttl = a.int("ttl");
    if ttl.is_some_and(|t| t <= 0) {
        return Err(ServerError::BadRequest("parameter 'ttl' must be a positive number of milliseconds".into()));
    }
    if !h.auth.verify_password(name, password) {
        return Err(ServerError::Unauthorized("wrong username or password".into()));
    }
    if ip.is_some() || ttl.is_some() {
        let own_admin = h.auth.read(|d| d.users.get(name).is_some_and(|u| u.rights.iter().any(|r| r == "admin")));
        let token_admin = caller
            .token
            .as_deref()
            .and_then(|t| h.auth.check(t, &caller.ip).ok())
            .is_some_and(|(_, u)| u.rights.iter().any(|r| r == "admin"));
        if !own_admin && !token_admin {
            return Err(ServerError::Forbidden("/auth with 'ip' or 'ttl' needs the admin right".into()));
        }
    }
    let bound = match ip {
        Some("...") => None,
        Some(ip) => Some(ip.parse::<std::net::IpAddr>().map(crate::dispatch::client_ip).map_err(|_| {
            ServerError::BadRequest(format!("parameter 'ip' must be an IP address or '...', got '{ip}'"))
        })?),
        None => Some(caller.ip.clone()),
    };
    let ttl = ttl.unwrap_or_else(|| h.param_i64("token-expire-ms", 86_400_000));
    let (secret, token) = h.auth.issue(name, bound, ttl)?;
    Ok(Reply::Json(json!({"token": secret, "expires": token.expires})))
}

fn user_password(h: &EnvHandle, caller: &Caller, a: &Args) -> Result<Reply> {
    let me = caller.username()?;
    let target = a.text("username").unwrap_or(me);
    if target != me && !caller.has("admin") {
        return Err(ServerError::Forbidden("changing another user's password needs the admin right".into()));
    }
    let password = a.req("password")?;
    check_password(password, min_password(h))?;
    let hash = hash_password(password)?;
    h.auth.update(|d| {
        d.users.get_mut(target).ok_or_else(|| no_user(target))?.password = hash;
        Ok(())
    })?;
    Ok(Reply::Empty)
}

fn user_add(h: &EnvHandle, a: &Args) -> Result<Reply> {
    let name = a.req("username")?;
    let password = a.req("password")?;
    let rights = a.list("rights").unwrap_or_default().to_vec();
    check_username(name)?;
    check_rights(&rights)?;
    check_password(password, min_password(h))?;
    let hash = hash_password(password)?;
    h.auth.update(|d| {
        if d.users.contains_key(name) {
            return Err(ServerError::Conflict(format!("a user named '{name}' exists already")));
        }
        d.users.insert(name.to_string(), User { password: hash, rights, created: now_ms() });
        Ok(())
    })?;
    Ok(Reply::Empty)
}
