//! From a connection to an endpoint: the accept loop (with a header timeout for slow clients),
//! target resolution (host `<env>.localhost` / `ops.localhost`, or path prefix `/<env>/`,
//! `/ops/`, or the one environment served at the root), the route and verb, the token and
//! rights, then the parameters and the endpoint.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use m1::endpoint::{Access, Args, EnvCall, Handler, Output, Scope};
use m1::{Catalog, Environment};
use parking_lot::{Mutex, RwLock};
use serde_json::Value;

use crate::auth::{AuthStore, Backing};
use crate::error::{Result, ServerError};
use crate::params::Params;
use crate::stream::{Reply, blocking, respond};
use crate::{ServeOptions, accounts, users};

/// Header carrying the token.
pub const TOKEN_HEADER: &str = "m1-auth-token";

/// One open environment with its users, tokens and cached system parameters.
pub struct EnvHandle {
    /// Catalog name (or the location, for an environment outside the catalog).
    pub name: String,
    /// The environment (with its catalog entry and data stores).
    pub env: Arc<Environment>,
    /// Its users and tokens.
    pub auth: AuthStore,
    /// System parameters, reloaded whenever `/system` changes them or (on local disk) their
    /// file changes, so a change made with the CLI reaches a running server.
    system: RwLock<(BTreeMap<String, Value>, Option<std::time::SystemTime>)>,
    /// When a request last reached it or ended, epoch ms (idle suspension counts from here).
    last_used: std::sync::atomic::AtomicI64,
    /// Requests being answered now (an environment at work is never idle).
    active: std::sync::atomic::AtomicUsize,
}

impl EnvHandle {
    fn open(name: String, env: Environment) -> Result<EnvHandle> {
        let env = Arc::new(env);
        // Storage DR: a primary this server opens ships its commits while it is open.
        Environment::replicate_in_background(&env);
        let system = RwLock::new((env.engine().system()?, system_stamp(&env)));
        let auth = AuthStore::open(Backing::Env(env.clone()))?;
        let last_used = std::sync::atomic::AtomicI64::new(m1_engine::environment::now_ms());
        Ok(EnvHandle { name, env, auth, system, last_used, active: Default::default() })
    }

    /// Reloads the cached system parameters (after `/system` changed them).
    fn reload_system(&self) -> Result<()> {
        *self.system.write() = (self.env.engine().system()?, system_stamp(&self.env));
        Ok(())
    }

    /// A system parameter.
    pub fn param(&self, name: &str) -> Option<Value> {
        let stamp = system_stamp(&self.env);
        if stamp.is_some() && stamp != self.system.read().1 {
            let _ = self.reload_system();
        }
        self.system.read().0.get(name).cloned()
    }

    /// Notes that a request reached it now.
    pub fn touch(&self) {
        self.last_used.store(m1_engine::environment::now_ms(), std::sync::atomic::Ordering::Relaxed);
    }

    /// A numeric system parameter, or `default`.
    pub fn param_i64(&self, name: &str, default: i64) -> i64 {
        self.param(name).and_then(|v| v.as_i64()).unwrap_or(default)
    }
}

/// When the system parameters' file of an environment on local disk last changed.
fn system_stamp(env: &Environment) -> Option<std::time::SystemTime> {
    let root = env.engine().storage().local_root()?;
    std::fs::metadata(root.join(m1_engine::system::SYSTEM_FILE)).and_then(|m| m.modified()).ok()
}

/// Shared state of a running server.
pub struct App {
    /// The local catalog.
    pub catalog: Catalog,
    /// Options it runs with.
    pub options: ServeOptions,
    /// The environment served at the root (`-env`).
    pub root: Option<Arc<EnvHandle>>,
    envs: Mutex<HashMap<String, Arc<EnvHandle>>>,
    /// Ops users, tokens and accounts (`$M1_HOME/ops-auth.json`).
    pub ops: AuthStore,
    /// Publishes running now.
    publishes: Arc<std::sync::atomic::AtomicUsize>,
    /// Failed logins, environments' and ops'.
    pub throttle: crate::throttle::Throttle,
    /// Environments suspended by this server for being idle (by id): the next request resumes
    /// them.
    idle: Mutex<std::collections::HashSet<String>>,
    /// The catalog's service settings, reread when its file changes.
    services: RwLock<Services>,
    /// The address the server listens on, once it does.
    pub addr: std::sync::OnceLock<SocketAddr>,
    /// `/metrics`.
    pub metrics: crate::metrics::Metrics,
    /// When the sampled metrics were last refreshed.
    sampled: Mutex<Option<std::time::Instant>>,
    /// Requests answered and seconds spent per environment id since the server started (the
    /// usage series' running totals).
    pub usage_totals: Mutex<HashMap<String, (u64, f64)>>,
    /// When usage was last sampled.
    usage_sampled: Mutex<Option<std::time::Instant>>,
}

/// What the server keeps of each environment's service settings: who may connect, whether it
/// is stopped, when it goes idle. Keyed by name and by id.
#[derive(Default)]
struct Services {
    stamp: Option<(std::time::SystemTime, u64)>,
    by_key: HashMap<String, Arc<ServiceView>>,
}

/// One environment's settings as the server enforces them.
pub struct ServiceView {
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Stopped by an operator.
    pub stopped: bool,
    /// Its own IP access list and its workspace group's ranges (`None`: anyone).
    inbound: [Option<Vec<m1_engine::service::IpRange>>; 2],
    /// Minutes without requests before it suspends itself, when idle scaling is on.
    pub idle_minutes: Option<u64>,
}

impl ServiceView {
    /// Whether a client at `ip` may connect.
    pub fn admits(&self, ip: IpAddr) -> bool {
        self.inbound.iter().all(|l| m1_engine::service::allows(l.as_deref(), ip))
    }
}

impl App {
    /// Opens the catalog, the ops store and the root environment.
    pub fn new(options: ServeOptions) -> Result<App> {
        let home = options.home.clone().unwrap_or_else(Catalog::default_home);
        let catalog = Catalog::open(&home)?;
        let ops = AuthStore::open(Backing::File(home.join(crate::accounts::OPS_FILE)))?;
        let root = match &options.env {
            None => None,
            Some(target) => Some(Arc::new(match catalog.get(target)? {
                Some(entry) => EnvHandle::open(entry.name.clone(), Environment::open_in(&catalog, target)?)?,
                None => EnvHandle::open(target.clone(), Environment::open(target)?)?,
            })),
        };
        Ok(App {
            catalog,
            options,
            root,
            envs: Mutex::new(HashMap::new()),
            ops,
            publishes: Default::default(),
            throttle: Default::default(),
            idle: Default::default(),
            services: Default::default(),
            addr: Default::default(),
            metrics: Default::default(),
            sampled: Default::default(),
            usage_totals: Default::default(),
            usage_sampled: Default::default(),
        })
    }

    /// The service settings of the environment named (or with id) `key`, from the catalog as it
    /// is now (a stat per call; reread when the file changed, so a change made with the CLI
    /// applies at once).
    pub fn service(&self, key: &str) -> Option<Arc<ServiceView>> {
        let file = self.catalog.home().join("catalog.json");
        let stamp = std::fs::metadata(&file).ok().and_then(|m| Some((m.modified().ok()?, m.len())));
        if self.services.read().stamp != stamp || stamp.is_none() {
            let mut by_key = HashMap::new();
            let groups = self.catalog.groups().unwrap_or_default();
            for e in self.catalog.list().unwrap_or_default() {
                let group = e.service.group.as_ref().and_then(|g| groups.iter().find(|x| &x.id == g));
                let view = Arc::new(ServiceView {
                    id: e.id.clone(),
                    name: e.name.clone(),
                    stopped: e.service.stopped,
                    inbound: [e.service.inbound(), group.and_then(|g| g.inbound())],
                    idle_minutes: e.service.idle_scaling.then(|| e.service.idle_timeout_minutes.unwrap_or(15)),
                });
                by_key.insert(e.id.clone(), view.clone());
                by_key.insert(e.name.clone(), view);
            }
            *self.services.write() = Services { stamp, by_key };
        }
        self.services.read().by_key.get(key).cloned()
    }

    /// Refuses a client the environment's access list does not admit (before any token is
    /// looked at), and a stopped environment.
    fn admit_client(&self, key: &str, ip: IpAddr) -> Result<()> {
        let Some(view) = self.service(key) else { return Ok(()) };
        if !view.admits(ip) {
            return Err(ServerError::Forbidden(format!(
                "your address {} is not in the IP access list of environment '{}'",
                client_ip(ip),
                view.name
            )));
        }
        if view.stopped {
            self.evict(&view.id);
            return Err(m1::EngineError::NotRunning { env: view.name.clone(), state: "stopped".into() }.into());
        }
        Ok(())
    }

    /// The environments open now (the root one too).
    pub fn open_handles(&self) -> Vec<Arc<EnvHandle>> {
        let mut seen = std::collections::HashSet::new();
        self.root
            .iter()
            .cloned()
            .chain(self.envs.lock().values().cloned())
            .filter(|h| seen.insert(h.env.engine().config().id.clone()))
            .collect()
    }

    /// Refreshes the sampled metrics if they are older than `max_age`.
    pub fn sample_metrics(&self, max_age: Duration) {
        let due = self.sampled.lock().is_none_or(|t| t.elapsed() >= max_age);
        if due {
            self.metrics.sample(self);
            *self.sampled.lock() = Some(std::time::Instant::now());
        }
    }

    /// Appends a usage sample of every catalog environment when `-usageIntervalMs` has passed:
    /// storage by part always, records and documents of the open ones, and this server's
    /// request totals.
    pub fn sample_usage(&self) {
        let due = self.usage_sampled.lock().is_none_or(|t| t.elapsed() >= self.options.usage_interval);
        if !due {
            return;
        }
        *self.usage_sampled.lock() = Some(std::time::Instant::now());
        let open: HashMap<String, Arc<EnvHandle>> =
            self.open_handles().into_iter().map(|h| (h.env.engine().config().id.clone(), h)).collect();
        let now = m1_engine::environment::now_ms();
        for e in self.catalog.list().unwrap_or_default() {
            let (requests, compute_seconds) = self.usage_totals.lock().get(&e.id).copied().unwrap_or_default();
            let (rows, documents) = match open.get(&e.id) {
                Some(h) => {
                    let (r, d) = m1::usage::counts_of(&h.env);
                    (Some(r), Some(d))
                }
                None => (None, None),
            };
            let sample = m1::usage::Sample {
                time: now,
                storage: m1::usage::storage_of(&e),
                rows,
                documents,
                requests,
                compute_seconds,
            };
            if let Err(err) = m1::usage::record(&self.catalog, &e.id, &sample) {
                eprintln!("m1 serve: usage sample of '{}' failed: {err}", e.name);
            }
        }
    }

    /// The ops user of `token` if they may see server-wide figures (the `view` right in the
    /// machine's account `default`): `/metrics`, and the environments' names in `/openapi.json`.
    fn operator(&self, token: Option<&str>, ip: &str) -> Result<String> {
        let token = token.ok_or_else(|| {
            ServerError::Unauthorized("this needs an ops token (m1-auth-token or Authorization: Bearer)".into())
        })?;
        let (user, _) = self.ops.check(token, ip)?;
        accounts::require_server_view(self, &user)?;
        Ok(user)
    }

    /// `idle` if this server suspended the environment for being idle, else `running`.
    pub fn state(&self, id: &str) -> &'static str {
        if self.idle.lock().contains(id) { "idle" } else { "running" }
    }

    /// Suspends open environments nobody called for their idle timeout (the system parameter
    /// `idle-timeout-ms` of an environment overrides its minutes, for tests).
    fn suspend_idle(&self) {
        let now = m1_engine::environment::now_ms();
        let open: Vec<Arc<EnvHandle>> = self.envs.lock().values().cloned().collect();
        for h in open {
            let id = h.env.engine().config().id.clone();
            let Some(view) = self.service(&id) else { continue };
            let Some(minutes) = view.idle_minutes else { continue };
            if h.active.load(std::sync::atomic::Ordering::Relaxed) > 0 {
                continue;
            }
            let timeout = h.param("idle-timeout-ms").and_then(|v| v.as_i64()).unwrap_or(minutes as i64 * 60_000);
            if now - h.last_used.load(std::sync::atomic::Ordering::Relaxed) >= timeout {
                self.idle.lock().insert(id.clone());
                self.evict(&id);
            }
        }
    }

    /// Where backups may be copied to or restored from: the `-allowLocation` list, else
    /// `$M1_HOME/backups`.
    pub fn copy_locations(&self) -> Vec<String> {
        if self.options.locations.is_empty() {
            vec![self.catalog.home().join("backups").display().to_string()]
        } else {
            self.options.locations.clone()
        }
    }

    /// Runs the environments' backup schedules (`backup-interval-ms`) on a thread that ends with
    /// the server.
    pub fn start_schedules(app: &Arc<App>) {
        let weak = Arc::downgrade(app);
        let _ = std::thread::Builder::new().name("m1-backup-schedule".into()).spawn(move || {
            loop {
                std::thread::sleep(std::time::Duration::from_secs(1));
                let Some(app) = weak.upgrade() else { return };
                app.suspend_idle();
                app.sample_metrics(crate::metrics::SAMPLE_EVERY);
                app.sample_usage();
                // Each environment once, whatever names it is open under.
                let open = app.open_handles();
                drop(app);
                for h in open {
                    if let Err(e) = h.env.backup_tick() {
                        eprintln!("m1 serve: scheduled backup of '{}' failed: {e}", h.name);
                    }
                }
            }
        });
    }

    /// The environment named (or with id) `name`, opened once and cached.
    pub fn env(&self, name: &str) -> Result<Arc<EnvHandle>> {
        Ok(self.env_if(name, true)?.expect("opened when asked to"))
    }

    /// The environment named `name` if it is open already; with `open`, opens it if not (which
    /// reads the catalog and may take long: only on a blocking thread).
    fn env_if(&self, name: &str, open: bool) -> Result<Option<Arc<EnvHandle>>> {
        if let Some(h) = self.envs.lock().get(name) {
            return Ok(Some(h.clone()));
        }
        if !open {
            return Ok(None);
        }
        let entry = self
            .catalog
            .get(name)?
            .ok_or_else(|| ServerError::NotFound(format!("no environment named '{name}' on this server")))?;
        // One handle per environment, whatever it is called by (name or id): users, tokens and
        // open stores must not exist twice in memory. Opening happens under the lock for that.
        let mut envs = self.envs.lock();
        if let Some(h) = envs.values().find(|h| h.env.engine().config().id == entry.id).cloned() {
            envs.insert(name.to_string(), h.clone());
            return Ok(Some(h));
        }
        let handle = Arc::new(EnvHandle::open(entry.name.clone(), Environment::open_in(&self.catalog, &entry.id)?)?);
        envs.insert(name.to_string(), handle.clone());
        self.idle.lock().remove(&entry.id);
        Ok(Some(handle))
    }

    /// A slot for a publish, or 503 when `-maxPublishes` are running already.
    fn publish_slot(&self) -> Result<PublishSlot> {
        let running = self.publishes.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let slot = PublishSlot(self.publishes.clone());
        if running >= self.options.max_publishes.max(1) {
            return Err(ServerError::Busy(format!(
                "{running} publishes are running, the most this server runs at once (-maxPublishes); retry later"
            )));
        }
        Ok(slot)
    }

    /// Forgets cached handles of an environment (after rename, destroy, settings or reboot),
    /// so the next request reopens it.
    pub fn evict(&self, id: &str) {
        self.envs.lock().retain(|_, h| h.env.engine().config().id != id);
    }
}

/// Where a request goes.
enum Target {
    Ops(String),
    Env(Arc<EnvHandle>, String),
}

/// The target of a request; `None` if it is an environment that is not open yet and `open` is
/// false.
fn resolve(app: &App, headers: &HeaderMap, uri: &axum::http::Uri, open: bool, ip: IpAddr) -> Result<Option<Target>> {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| uri.host())
        .unwrap_or("")
        .to_ascii_lowercase();
    let host = host.rsplit_once(':').filter(|(_, p)| p.chars().all(|c| c.is_ascii_digit())).map_or(&*host, |(h, _)| h);
    let path = uri.path().trim_start_matches('/');
    if host == "ops.localhost" || host.starts_with("ops.") {
        return Ok(Some(Target::Ops(path.to_string())));
    }
    let (first, rest) = path.split_once('/').unwrap_or((path, ""));
    if first == "ops" {
        return Ok(Some(Target::Ops(rest.to_string())));
    }
    if let Some(root) = &app.root {
        app.admit_client(&root.env.engine().config().id, ip)?;
        // `/<its name>/...` also reaches it, so clients that address by prefix work unchanged.
        let path = if first == root.name || first == root.env.engine().config().id { rest } else { path };
        return Ok(Some(Target::Env(root.clone(), path.to_string())));
    }
    if let Some(label) = host.strip_suffix(".localhost").filter(|l| !l.is_empty() && !l.contains('.')) {
        app.admit_client(label, ip)?;
        return Ok(app.env_if(label, open)?.map(|h| Target::Env(h, path.to_string())));
    }
    if first.is_empty() {
        return Err(ServerError::NotFound(
            "name an environment: http://<env>.localhost:PORT/<endpoint> or http://HOST:PORT/<env>/<endpoint>; ops at /ops/".into(),
        ));
    }
    app.admit_client(first, ip)?;
    Ok(app.env_if(first, open)?.map(|h| Target::Env(h, rest.to_string())))
}

/// Who is calling.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The client's address.
    pub ip: String,
    /// The authenticated user, for endpoints that need a token.
    pub user: Option<String>,
    /// The user's environment rights (empty for ops).
    pub rights: Vec<String>,
    /// The token sent, if any (for `/auth` on behalf of others).
    pub token: Option<String>,
    /// Whether the request is a GET (which must not change anything).
    pub read_only: bool,
}

impl Caller {
    /// Whether the caller holds `right`.
    pub fn has(&self, right: &str) -> bool {
        self.rights.iter().any(|r| r == right)
    }

    /// The authenticated user (endpoints behind a token only).
    pub fn username(&self) -> Result<&str> {
        self.user.as_deref().ok_or_else(|| ServerError::Unauthorized("this endpoint needs an m1-auth-token".into()))
    }
}

fn authorize(store: &AuthStore, access: Access, caller: &mut Caller, endpoint: &str) -> Result<()> {
    if access == Access::Public {
        return Ok(());
    }
    let token = caller.token.as_deref().ok_or_else(|| {
        ServerError::Unauthorized(format!("/{endpoint} needs an m1-auth-token header (get one from /auth)"))
    })?;
    let (name, user) = store.check(token, &caller.ip)?;
    caller.user = Some(name);
    caller.rights = user.rights;
    if let Access::AnyOf(rights) = access
        && !rights.iter().any(|r| caller.has(r))
    {
        return Err(ServerError::Forbidden(format!("/{endpoint} needs one of the rights {}", rights.join(", "))));
    }
    Ok(())
}

/// The canonical text of a client address (IPv4-mapped IPv6 as IPv4).
pub fn client_ip(ip: IpAddr) -> String {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or_else(|| v6.to_string(), |v4| v4.to_string()),
        IpAddr::V4(v4) => v4.to_string(),
    }
}

/// Handles one request.
pub async fn handle(app: Arc<App>, addr: SocketAddr, req: Request) -> Response {
    let started = std::time::Instant::now();
    let (parts, body) = req.into_parts();
    let cors = Arc::new(Mutex::new(None::<String>));
    let label = Arc::new(Mutex::new(None::<String>));
    let env_id = Arc::new(Mutex::new(None::<String>));
    let mut response =
        match route_request(app.clone(), addr, parts, body, cors.clone(), label.clone(), env_id.clone()).await {
            Ok(r) => r,
            Err(e) => e.into_response(),
        };
    let endpoint = label.lock().take().unwrap_or_else(|| "unknown".into());
    let took = started.elapsed();
    app.metrics.request(&endpoint, response.status().as_u16(), took);
    if let Some(id) = env_id.lock().take() {
        let mut totals = app.usage_totals.lock();
        let t = totals.entry(id).or_default();
        t.0 += 1;
        t.1 += took.as_secs_f64();
    }
    // The body of a request refused as too large or too slow was not read, so the connection
    // cannot carry another request: say so, or a client may reuse it and fail.
    if matches!(response.status(), StatusCode::PAYLOAD_TOO_LARGE | StatusCode::REQUEST_TIMEOUT) {
        response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    if let Some(origin) = cors.lock().take()
        && let Ok(v) = HeaderValue::from_str(&origin)
    {
        let h = response.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
        h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static("m1-auth-token, content-type"));
        h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, POST, OPTIONS"));
    }
    response
}

async fn route_request(
    app: Arc<App>,
    addr: SocketAddr,
    parts: axum::http::request::Parts,
    body: Body,
    cors: Arc<Mutex<Option<String>>>,
    label: Arc<Mutex<Option<String>>>,
    env_id: Arc<Mutex<Option<String>>>,
) -> Result<Response> {
    if parts.uri.path() == "/metrics" {
        *label.lock() = Some("metrics".into());
        return metrics_response(app, addr, request_token(&parts.headers, true)).await;
    }
    if parts.uri.path() == "/openapi.json" && parts.method == Method::GET {
        *label.lock() = Some("openapi".into());
        // The document is public; the environments' names are not (they are listed, as the
        // values of `{environment}`, only for an operator of the machine's account).
        let token = request_token(&parts.headers, true);
        let ip = client_ip(addr.ip());
        let app2 = app.clone();
        let names = blocking(move || {
            Ok(if app2.operator(token.as_deref(), &ip).is_ok() {
                app2.catalog.list().unwrap_or_default().into_iter().map(|e| e.name).collect()
            } else {
                Vec::new()
            })
        })
        .await?;
        return Ok(json_response(&m1::endpoint::openapi::document(&names)));
    }
    if crate::manage::is_management(parts.uri.path()) {
        return crate::manage::handle(app, addr, parts, body, &label).await;
    }
    let read_only = parts.method == Method::GET;
    // Ops prefers a bearer token, environments their m1-auth-token (see `request_token`); which
    // one applies is known once the target is.
    let tokens = (request_token(&parts.headers, false), request_token(&parts.headers, true));
    let caller =
        Caller { ip: client_ip(addr.ip()), user: None, rights: Vec::new(), token: tokens.0.clone(), read_only };
    let method = parts.method.clone();
    // Resolve the target and check the token before reading any body: here when its
    // environment is open (memory only, and a stat of the users' file), else on a blocking
    // thread, since opening an environment reads files.
    let ip = addr.ip();
    let (target, path, caller) = match resolve(&app, &parts.headers, &parts.uri, false, ip)? {
        Some(target) => admit(&app, target, &method, caller, &cors, &label, tokens.1)?,
        None => {
            let app = app.clone();
            let headers = parts.headers.clone();
            let uri = parts.uri.clone();
            let method = method.clone();
            blocking(move || {
                let target = resolve(&app, &headers, &uri, true, ip)?.expect("opened when asked to");
                admit(&app, target, &method, caller, &cors, &label, tokens.1)
            })
            .await?
        }
    };
    if method == Method::OPTIONS {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let mut params = Params::from_query(parts.uri.query().unwrap_or(""));
    let upload =
        matches!(target, Target::Env(..)) && m1::endpoint::find(Scope::Env, &path).is_some_and(|e| e.takes_body);
    let body = if upload {
        Some(crate::upload::reader(&parts.headers, body, app.options.read_timeout))
    } else {
        params.read_body(&parts.headers, body, app.options.max_body_bytes, app.options.read_timeout).await?;
        None
    };
    // A ranged download: the file's size first, for the range and its Content-Range.
    let mut ranged = None;
    if let (Some(r), Target::Env(h, _), "stage/get") =
        (parts.headers.get(header::RANGE).and_then(|v| v.to_str().ok()), &target, path.as_str())
        && let Some(file) = params.0.get("path").cloned()
    {
        let (size, span) = stage_range(h.env.clone(), file, Some(r), &mut params).await?;
        ranged = Some((span, size));
    }
    let _working = match &target {
        Target::Env(h, _) => {
            *env_id.lock() = Some(h.env.engine().config().id.clone());
            Some(Working::new(h.clone()))
        }
        Target::Ops(_) => None,
    };
    let mut reply = match target {
        Target::Ops(_) => {
            blocking(move || {
                let (ep, args) = m1::endpoint::prepare(Scope::Ops, &path, params.into_pairs())?;
                accounts::call(&app, &caller, ep, &args)
            })
            .await?
        }
        Target::Env(handle, _) => env_call(app, handle, path, caller, params, body).await?,
    };
    if let (Some((span, size)), Reply::Stream(body, content_type)) = (ranged, &mut reply) {
        return download_response(std::mem::replace(body, Body::empty()), content_type, span, size);
    }
    Ok(match reply {
        Reply::Empty => StatusCode::OK.into_response(),
        Reply::Json(v) => json_response(&v),
        Reply::Stream(body, content_type) => Response::builder()
            .header(header::CONTENT_TYPE, content_type)
            .body(body)
            .map_err(|e| ServerError::Internal(e.to_string()))?,
    })
}

/// Checks that the target's endpoint exists for this verb and that the caller may call it;
/// returns the target, the endpoint's path and the caller with its user and rights.
fn admit(
    app: &App,
    target: Target,
    method: &Method,
    mut caller: Caller,
    cors: &Mutex<Option<String>>,
    label: &Mutex<Option<String>>,
    ops_token: Option<String>,
) -> Result<(Target, String, Caller)> {
    let (scope, path, store) = match &target {
        Target::Ops(p) => {
            caller.token = ops_token;
            (Scope::Ops, p.clone(), &app.ops)
        }
        Target::Env(h, p) => {
            h.touch();
            let origin = h.param("cors").and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
            if !origin.is_empty() {
                *cors.lock() = Some(origin);
            }
            (Scope::Env, p.clone(), &h.auth)
        }
    };
    let path = path.trim_end_matches('/').to_string();
    let ep =
        m1::endpoint::find(scope, &path).ok_or_else(|| ServerError::NotFound(format!("unknown endpoint '/{path}'")))?;
    *label.lock() = Some(format!("{}/{}", if scope == Scope::Ops { "ops" } else { "env" }, ep.path));
    if method == Method::OPTIONS {
        return Ok((target, path, caller));
    }
    let verbs = ep.verbs.names();
    if !verbs.iter().any(|m| *m == method.as_str()) {
        return Err(ServerError::MethodNotAllowed(format!("/{path} takes {}, not {method}", verbs.join(" or "))));
    }
    authorize(store, ep.access, &mut caller, &path)?;
    Ok((target, path, caller))
}

/// Calls an environment endpoint: the library's handler (streamed when it streams), or the
/// server's own for users and tokens.
async fn env_call(
    app: Arc<App>,
    h: Arc<EnvHandle>,
    path: String,
    caller: Caller,
    params: Params,
    body: Option<crate::upload::BodyReader>,
) -> Result<Reply> {
    let (ep, args): (_, Args) = m1::endpoint::prepare(Scope::Env, &path, params.into_pairs())?;
    // Dropped with this request: when the client hangs up, hyper drops the future and the
    // endpoint's work (a publish) is told to stop.
    let cancel = CancelOnDrop(Arc::new(std::sync::atomic::AtomicBool::new(false)));
    let flag = cancel.0.clone();
    // Held by the work itself, so a cancelled publish frees its slot when it has really stopped.
    let slot = match ep.path {
        "publish" | "write" => Some(app.publish_slot()?),
        _ => None,
    };
    match ep.handler {
        Handler::Env(f) => {
            let app = app.clone();
            respond(move |deliver| {
                let _slot = slot;
                let copy_locations = app.copy_locations();
                let body = body.map(std::sync::Mutex::new);
                let call = EnvCall {
                    env: &h.env,
                    ip: Some(&caller.ip),
                    read_only: caller.read_only,
                    progress: None,
                    read_roots: Some(&app.options.allow_read),
                    cancel: Some(flag),
                    locations: Some(&copy_locations),
                    body: body.as_ref().map(|b| b as &std::sync::Mutex<dyn std::io::Read + Send>),
                };
                let mut output = f(&call, &args)?;
                if let (Output::Json(report), "publish" | "write") = (&output, ep.path) {
                    let n = |k: &str| report[k].as_u64().unwrap_or(0);
                    app.metrics.published(&h.name, n("rowsPublished"), n("bytes"));
                }
                if ep.path.starts_with("system") {
                    h.reload_system()?;
                }
                if matches!(ep.path, "dr/failover" | "dr/failback") {
                    // The open handle is of the location that stopped (or started) being the
                    // primary: the next request opens the name afresh, following it.
                    app.evict(&h.env.engine().config().id);
                }
                if let (Output::Json(health), "health") = (&mut output, ep.path) {
                    users::add_health(&h, &caller, health);
                }
                deliver(output)
            })
            .await
        }
        _ => blocking(move || users::call(&app, &h, &caller, ep, &args)).await,
    }
}

/// The token of a request: `m1-auth-token`, or a bearer `Authorization` header (what the
/// management API's clients and metrics scrapers send).
///
/// With both, ops and the management API (`prefer_bearer`) take the bearer one and environments
/// the `m1-auth-token`, so one client can hold an ops and an environment token at once.
pub fn request_token(headers: &HeaderMap, prefer_bearer: bool) -> Option<String> {
    let header_token = || headers.get(TOKEN_HEADER).and_then(|v| v.to_str().ok()).map(|t| t.trim().to_string());
    let bearer = || {
        let auth = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
        let (scheme, token) = auth.split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| token.trim().to_string())
    };
    if prefer_bearer { bearer().or_else(header_token) } else { header_token().or_else(bearer) }
}

/// `GET /metrics`: for an ops user with the `view` right in the machine's account `default`.
async fn metrics_response(app: Arc<App>, addr: SocketAddr, token: Option<String>) -> Result<Response> {
    let ip = client_ip(addr.ip());
    let body = blocking(move || {
        app.operator(token.as_deref(), &ip)?;
        // Sampled figures are at most two sampling periods old, even if the background sampler lags.
        app.sample_metrics(2 * crate::metrics::SAMPLE_EVERY);
        Ok(app.metrics.render())
    })
    .await?;
    Ok((StatusCode::OK, [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], body).into_response())
}

/// The size of stage file `path` and, for a `Range` header, the span it asks for (set in
/// `params` as `offset` and `length`, which `stage/get` takes).
pub async fn stage_range(
    env: Arc<Environment>,
    path: String,
    range: Option<&str>,
    params: &mut Params,
) -> Result<(u64, Option<(u64, u64)>)> {
    let size = blocking(move || Ok(m1::stage::Stage::of(&env)?.open(&path)?.1)).await?;
    Ok((size, range.map(|r| params.set_range(r, size)).transpose()?))
}

/// A download of `size` bytes with its length: 206 with `Content-Range` for a span, else 200.
pub fn download_response(body: Body, content_type: &str, span: Option<(u64, u64)>, size: u64) -> Result<Response> {
    let b = Response::builder().header(header::CONTENT_TYPE, content_type);
    let b = match span {
        Some((start, end)) => b
            .status(StatusCode::PARTIAL_CONTENT)
            .header(header::CONTENT_RANGE, format!("bytes {start}-{end}/{size}"))
            .header(header::CONTENT_LENGTH, end - start + 1),
        None => b.header(header::CONTENT_LENGTH, size),
    };
    b.body(body).map_err(|e| ServerError::Internal(e.to_string()))
}

/// An environment's request in progress: counted while it lasts, and its end counts as use.
struct Working(Arc<EnvHandle>);

impl Working {
    fn new(h: Arc<EnvHandle>) -> Working {
        h.active.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Working(h)
    }
}

impl Drop for Working {
    fn drop(&mut self) {
        self.0.touch();
        self.0.active.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Sets its flag when dropped.
struct CancelOnDrop(Arc<std::sync::atomic::AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// One of the server's publish slots, given back when dropped.
pub struct PublishSlot(Arc<std::sync::atomic::AtomicUsize>);

impl Drop for PublishSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// A JSON response.
pub fn json_response(v: &Value) -> Response {
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], v.to_string()).into_response()
}

/// Accepts connections until `stop` fires; each connection is served by hyper with a header
/// read timeout, so a client that never finishes its headers is dropped.
pub async fn accept_loop(
    listener: tokio::net::TcpListener,
    app: Arc<App>,
    read_timeout: Duration,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    loop {
        let (stream, addr) = tokio::select! {
            _ = &mut stop => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                // Out of file descriptors and the like: wait a little rather than spin.
                Err(_) => { tokio::time::sleep(Duration::from_millis(50)).await; continue; }
            },
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let app = app.clone();
                async move {
                    let req = req.map(Body::new);
                    Ok::<_, std::convert::Infallible>(handle(app, addr, req).await)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(read_timeout)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
