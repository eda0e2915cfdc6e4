//! The management API (`/v1/...`, `/v2/.../metrics`) on `m1 serve`: the library's route table
//! (`m1::endpoint::v1`) with the caller's ops token (bearer or `m1-auth-token`), the caller's
//! organizations (ops accounts) and their firewall ranges, the ops endpoints the routes call, and
//! the stage's streamed uploads and downloads.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use m1::endpoint::v1::{self, Handler, Org, Route, StageOp};
use m1::endpoint::{EnvCall, Output, Scope};
use serde_json::Value;

use crate::accounts::{self, find_account, has_right};
use crate::auth::{User, check_password, hash_password};
use crate::dispatch::{App, Caller, client_ip, download_response, json_response, request_token, stage_range};
use crate::error::{Result, ServerError};
use crate::params::Params;
use crate::stream::{Reply, blocking, respond};

/// Whether a request is for the management API.
pub fn is_management(path: &str) -> bool {
    path.starts_with("/v1/") || path.starts_with("/v2/")
}

/// Answers a management request; `label` gets its route for the metrics.
pub async fn handle(
    app: Arc<App>,
    addr: SocketAddr,
    parts: Parts,
    body: Body,
    label: &parking_lot::Mutex<Option<String>>,
) -> Result<Response> {
    let method = parts.method.as_str().to_string();
    let path = parts.uri.path().to_string();
    let (route, mut path_params) = v1::route(&method, &path).map_err(|verbs| {
        if verbs.is_empty() {
            ServerError::NotFound(format!("no management operation at {path} (see /openapi.json)"))
        } else {
            ServerError::MethodNotAllowed(format!("{path} takes {}, not {method}", verbs.join(", ")))
        }
    })?;
    *label.lock() = Some(format!("{} {}", route.method, route.path));
    // Path parameters may come URL-encoded (`parent%2Ffile.csv`), as the seed allows.
    for v in path_params.values_mut() {
        let decoded = percent_encoding::percent_decode_str(v)
            .decode_utf8()
            .map_err(|_| ServerError::BadRequest(format!("path part '{v}' is not UTF-8 once decoded")))?;
        *v = decoded.into_owned();
    }
    let token = request_token(&parts.headers, true).ok_or_else(|| {
        ServerError::Unauthorized(
            "the management API needs an ops token: Authorization: Bearer TOKEN (from ops /auth)".into(),
        )
    })?;
    let ip = client_ip(addr.ip());
    let (user, _) = app.ops.check(&token, &ip)?;
    let caller = Caller { ip, user: Some(user), rights: Vec::new(), token: Some(token), read_only: method == "GET" };
    let query: BTreeMap<String, String> = Params::from_query(parts.uri.query().unwrap_or("")).0;
    check_query(route, &query)?;
    let mut request = v1::Request { path: path_params, query, body: Value::Null };
    match route.handler {
        Handler::Stage(op) => stage(app, caller, route, request, op, &parts, body).await,
        Handler::Metrics => {
            blocking(move || {
                let backend = Backend { app: &app, caller: &caller, addr };
                group_metrics(&backend, &request)
            })
            .await
        }
        Handler::Json(f) => {
            if let Some(fields) = route.body {
                request.body = read_json(&app, &parts, body).await?;
                v1::check_body(fields, &request.body)?;
            }
            let answer = blocking(move || {
                let backend = Backend { app: &app, caller: &caller, addr };
                Ok(f(&backend, &request)?)
            })
            .await?;
            Ok(if answer.is_null() { StatusCode::OK.into_response() } else { json_response(&answer) })
        }
    }
}

/// Checks the query parameters a route declares: required ones given, typed ones of their type.
fn check_query(route: &Route, query: &BTreeMap<String, String>) -> Result<()> {
    for q in route.query {
        match (query.get(q.name), q.ty) {
            (None, _) if q.required => {
                return Err(ServerError::BadRequest(format!("query parameter '{}' is required: {}", q.name, q.help)));
            }
            (Some(v), v1::Ty::Bool) if v != "true" && v != "false" => {
                return Err(ServerError::BadRequest(format!(
                    "query parameter '{}' must be true or false, got '{v}'",
                    q.name
                )));
            }
            (Some(v), v1::Ty::Enum(options)) if !options.contains(&v.as_str()) => {
                return Err(ServerError::BadRequest(format!(
                    "query parameter '{}' must be one of {}, got '{v}'",
                    q.name,
                    options.join(", ")
                )));
            }
            _ => {}
        }
    }
    Ok(())
}

async fn read_json(app: &App, parts: &Parts, body: Body) -> Result<Value> {
    let limit = app.options.max_body_bytes;
    let bytes = tokio::time::timeout(app.options.read_timeout, axum::body::to_bytes(body, limit))
        .await
        .map_err(|_| ServerError::Timeout("the request body did not arrive in time".into()))?
        .map_err(|_| ServerError::TooLarge(format!("the request body is over {limit} bytes")))?;
    let _ = parts;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Object(Default::default()));
    }
    serde_json::from_slice(&bytes).map_err(|e| ServerError::BadRequest(format!("the body is not JSON: {e}")))
}

/// The routes' view of the server, as one caller.
struct Backend<'a> {
    app: &'a App,
    caller: &'a Caller,
    addr: SocketAddr,
}

impl Backend<'_> {
    fn user(&self) -> &str {
        self.caller.user.as_deref().unwrap_or_default()
    }
}

impl v1::Backend for Backend<'_> {
    fn ops(&self, path: &str, params: Vec<(String, String)>) -> m1::Result<Value> {
        let (ep, args) = m1::endpoint::prepare(Scope::Ops, path, params)?;
        match accounts::call(self.app, self.caller, ep, &args).map_err(to_api)? {
            Reply::Json(v) => Ok(v),
            _ => Ok(Value::Null),
        }
    }

    fn org(&self, id: Option<&str>, right: &str) -> m1::Result<Org> {
        let me = self.user();
        let account = self.app.ops.read(|d| match id {
            Some(id) => find_account(d, id).filter(|a| a.users.contains_key(me)),
            None => d.accounts.iter().find(|a| has_right(a, me, right)).cloned(),
        });
        let account = match (account, id) {
            (Some(a), _) => a,
            (None, Some(id)) => return Err(v1::unknown("organization", id)),
            (None, None) => {
                return Err(m1::Error::Forbidden(format!(
                    "you hold the '{right}' right in no organization (ops account)"
                )));
            }
        };
        if !has_right(&account, me, right) {
            return Err(m1::Error::Forbidden(format!(
                "this needs the '{right}' right in organization '{}'",
                account.id
            )));
        }
        if let Some(ranges) = &account.firewall_ranges {
            let ranges = m1_engine::service::check_ranges("firewallRanges", ranges.iter().map(String::as_str))?;
            if !m1_engine::service::allows(Some(&ranges), self.addr.ip()) {
                return Err(m1::Error::Forbidden(format!(
                    "your address {} is not in the firewall ranges of organization '{}'",
                    self.caller.ip, account.id
                )));
            }
        }
        Ok(Org { id: account.id, name: account.name, firewall_ranges: account.firewall_ranges })
    }

    fn org_ids(&self, right: &str) -> Vec<String> {
        let me = self.user();
        self.app.ops.read(|d| d.accounts.iter().filter(|a| has_right(a, me, right)).map(|a| a.id.clone()).collect())
    }

    fn catalog(&self) -> &m1::Catalog {
        &self.app.catalog
    }

    fn locations(&self) -> Vec<String> {
        if self.app.options.locations.is_empty() {
            vec![self.app.catalog.home().join("envs").display().to_string()]
        } else {
            self.app.options.locations.clone()
        }
    }

    fn env(&self, env_id: &str, right: &str, path: &str, params: Vec<(String, String)>) -> m1::Result<Value> {
        let account = accounts::env_account(self.app, env_id);
        if !account.is_some_and(|a| has_right(&a, self.user(), right)) {
            return Err(m1::Error::Forbidden(format!("this needs the '{right}' right in the environment's account")));
        }
        let h = self.app.env(env_id).map_err(to_api)?;
        let locations = self.app.copy_locations();
        let call = EnvCall { locations: Some(&locations), ..EnvCall::local(&h.env) };
        match m1::endpoint::call_env(&call, path, params)? {
            Output::Json(v) => Ok(v),
            _ => Ok(Value::Null),
        }
    }

    fn new_password(&self) -> String {
        crate::auth::random_id()
    }

    fn hash_password(&self, password: &str) -> m1::Result<String> {
        check_password(password, 8).and_then(|()| hash_password(password)).map_err(to_api)
    }

    fn set_admin_hash(&self, env_id: &str, hash: &str) -> m1::Result<()> {
        let h = self.app.env(env_id).map_err(to_api)?;
        h.auth
            .update(|d| {
                match d.users.get_mut("admin") {
                    Some(u) => u.password = hash.to_string(),
                    None => {
                        let rights = m1::endpoint::ENV_RIGHTS.iter().map(|r| r.to_string()).collect();
                        d.users.insert(
                            "admin".into(),
                            User { password: hash.to_string(), rights, created: m1_engine::environment::now_ms() },
                        );
                    }
                }
                // A new password ends the admin's sessions.
                d.tokens.retain(|_, t| t.username != "admin");
                Ok(())
            })
            .map_err(to_api)
    }
}

/// A server error as the library's, for the routes (keeping its status).
fn to_api(e: ServerError) -> m1::Error {
    match e {
        ServerError::Api(e) => e,
        ServerError::Forbidden(m) => m1::Error::Forbidden(m),
        ServerError::NotFound(m) => m1_engine::EngineError::UnknownEnvironment(m).into(),
        ServerError::Conflict(m) => m1::Error::Conflict(m),
        ServerError::BadRequest(m) => m1_engine::EngineError::bad_parameter("request", m).into(),
        other => m1_engine::EngineError::bad_parameter("request", other.to_string()).into(),
    }
}

/// The stage of workspace `{workspaceGroupID}` (an environment id), for a caller with `right` in
/// its account.
async fn stage(
    app: Arc<App>,
    caller: Caller,
    route: &'static Route,
    request: v1::Request,
    op: StageOp,
    parts: &Parts,
    body: Body,
) -> Result<Response> {
    let id = v1::m1_id(request.param("workspaceGroupID"));
    let path = request.param("path").to_string();
    let handle = {
        let app = app.clone();
        let user = caller.user.clone().unwrap_or_default();
        let right = route.right;
        blocking(move || {
            let entry = app.catalog.get(&id)?.filter(|e| e.id == id);
            let account = entry.as_ref().and_then(|e| accounts::env_account(&app, &e.id));
            match (entry, account) {
                (Some(e), Some(a)) if a.users.contains_key(&user) => {
                    if !has_right(&a, &user, right) {
                        return Err(ServerError::Forbidden(format!(
                            "this needs the '{right}' right in account '{}'",
                            a.id
                        )));
                    }
                    app.env(&e.id)
                }
                _ => Err(ServerError::NotFound(format!("no workspace with id '{id}' in your organization"))),
            }
        })
        .await?
    };
    match op {
        StageOp::Put => {
            let reader = crate::upload::reader(&parts.headers, body, app.options.read_timeout);
            let answer = blocking(move || {
                let call = EnvCall::local(&handle.env);
                let limit = m1::endpoint::stage_max_bytes(&call);
                let mut reader = reader;
                Ok(m1::stage::Stage::of(&handle.env)?.put(&path, &mut reader, limit)?)
            })
            .await?;
            Ok(json_response(&answer))
        }
        StageOp::Move => {
            let body = read_json(&app, parts, body).await?;
            if let Some(fields) = route.body {
                v1::check_body(fields, &body)?;
            }
            let to = body["newPath"].as_str().unwrap_or_default().to_string();
            let answer = blocking(move || Ok(m1::stage::Stage::of(&handle.env)?.rename(&path, &to)?)).await?;
            Ok(json_response(&answer))
        }
        StageOp::Delete => {
            let answer = blocking(move || Ok(m1::stage::Stage::of(&handle.env)?.delete(&path)?)).await?;
            Ok(json_response(&answer))
        }
        StageOp::Get => {
            let metadata = request.flag("metadata").map_err(ServerError::Api)?;
            if metadata || path.is_empty() || path.ends_with('/') {
                let answer = blocking(move || Ok(m1::stage::Stage::of(&handle.env)?.get(&path)?)).await?;
                return Ok(json_response(&answer));
            }
            let range = parts.headers.get(header::RANGE).and_then(|v| v.to_str().ok());
            let mut params = Params::default();
            let (size, span) = stage_range(handle.env.clone(), path.clone(), range, &mut params).await?;
            params.0.insert("path".into(), path);
            let reply = respond(move |deliver| {
                let call = EnvCall::local(&handle.env);
                deliver(m1::endpoint::call_env(&call, "stage/get", params.into_pairs())?)
            })
            .await?;
            let Reply::Stream(body, content_type) = reply else {
                return Err(ServerError::Internal("a download answered no stream".into()));
            };
            download_response(body, content_type, span, size)
        }
    }
}

/// `/v2/organizations/{organizationID}/workspaceGroups/{workspaceGroupID}/metrics`: the server's
/// metrics limited to the group's workspaces (and the series of no environment).
fn group_metrics(b: &Backend<'_>, req: &v1::Request) -> Result<Response> {
    use m1::endpoint::v1::Backend as _;
    let org = b.org(Some(req.param("organizationID")), "view")?;
    let gid = v1::m1_id(req.param("workspaceGroupID"));
    let group = b
        .catalog()
        .groups()?
        .into_iter()
        .find(|g| {
            v1::m1_id(&g.id) == gid && g.terminated.is_none() && g.account.as_deref().unwrap_or("default") == org.id
        })
        .ok_or_else(|| ServerError::Api(v1::unknown("workspace group", req.param("workspaceGroupID"))))?;
    let members = v1::group_members(b, &group.id, &org)?;
    let names: Vec<String> =
        members.iter().map(|e| format!("environment=\"{}\"", e["name"].as_str().unwrap_or_default())).collect();
    b.app.sample_metrics(2 * crate::metrics::SAMPLE_EVERY);
    let text: String = b
        .app
        .metrics
        .render()
        .lines()
        .filter(|l| l.starts_with('#') || !l.contains("environment=\"") || names.iter().any(|n| l.contains(n.as_str())))
        .flat_map(|l| [l, "\n"])
        .collect();
    Ok((StatusCode::OK, [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], text).into_response())
}
