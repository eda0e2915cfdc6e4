//! The endpoint layer: one table ([`ENDPOINTS`]) of every endpoint of the API, with its path,
//! verbs, rights, parameters, answer and handler.
//!
//! Every front-end derives from this table: the `m1` CLI (local calls, remote calls, `--help`),
//! `m1 serve` (routing, verbs, rights, parameters), and the tests (rights matrix, parity). So an
//! endpoint cannot exist in one front-end and not another, and a parameter is decoded the same
//! way everywhere ([`args`]).
//!
//! Handlers are plain functions on typed arguments ([`Args`]) and a context: an open
//! [`Environment`] for environment endpoints ([`EnvCall`]), the catalog for ops ([`OpsCall`]).
//! Endpoints about users and tokens ([`Handler::Served`]) belong to `m1 serve`: a local call has
//! no users to authenticate.

pub mod args;
mod env;
pub mod openapi;
mod ops;
mod stage;
pub mod v1;

pub use args::{Args, Kind, Param, parse_bool};
pub use env::check_copy_location;
pub use ops::{EnvOpener, FreshOpener, OpsCall, entry_json};
pub use stage::max_bytes as stage_max_bytes;

use crate::error::{Error, Result};
use crate::{Environment, Progress};

/// Which API an endpoint belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// An environment's API (seeds 001, 002): `m1 <env> <path>`, `http://<env>.localhost/<path>`.
    Env,
    /// The ops API (seed 000): `m1 ops <path>`, `http://ops.localhost/<path>`.
    Ops,
}

/// Who may call an endpoint over HTTP (local calls are the machine's owner, and are trusted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone (no token needed).
    Public,
    /// Any valid token (the endpoint may check more itself).
    Token,
    /// A valid token whose user holds at least one of these environment rights.
    AnyOf(&'static [&'static str]),
    /// Ops: a valid token whose user holds this right in the account the request is about.
    Account(&'static str),
}

/// The verbs an endpoint takes over HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verbs {
    /// GET only: it changes nothing.
    Get,
    /// POST only.
    Post,
    /// Either (GET with a query string, POST with a body).
    Both,
}

impl Verbs {
    /// The verb names.
    pub fn names(self) -> &'static [&'static str] {
        match self {
            Verbs::Get => &["GET"],
            Verbs::Post => &["POST"],
            Verbs::Both => &["GET", "POST"],
        }
    }
}

/// What an endpoint answers when it succeeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// A JSON value.
    Json,
    /// Nothing (the seeds' "No response when successful").
    Empty,
    /// Nothing, or JSON when asked to wait (`write` with `async=false`).
    EmptyOrJson,
    /// A body written while it is sent (JSON or CSV), for results of any size.
    Stream,
}

/// Writes a streamed answer.
pub type StreamWriter<'a> = Box<dyn FnOnce(&mut dyn std::io::Write) -> Result<()> + 'a>;

/// What a handler returns.
pub enum Output<'a> {
    /// No body.
    Empty,
    /// A JSON value.
    Json(serde_json::Value),
    /// A streamed body: `write` produces it; errors found before it runs were already returned.
    Stream {
        /// Its media type (`application/json`, `text/csv`).
        content_type: &'static str,
        /// Writes the body.
        write: StreamWriter<'a>,
    },
}

impl std::fmt::Debug for Output<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Output::Empty => f.write_str("Empty"),
            Output::Json(v) => write!(f, "Json({v})"),
            Output::Stream { content_type, .. } => write!(f, "Stream({content_type})"),
        }
    }
}

/// The context of an environment endpoint.
pub struct EnvCall<'a> {
    /// The environment.
    pub env: &'a Environment,
    /// The caller's address (`/write` stamps it); `None` for local calls.
    pub ip: Option<&'a str>,
    /// Whether the call came as a GET, which must change nothing.
    pub read_only: bool,
    /// Called about ten times a second during a publish.
    pub progress: Option<&'a (dyn Fn(&Progress) + Sync)>,
    /// Where a publish may read local files (besides the environment's stage); `None` for
    /// anywhere the process may read (local calls, which run as their user).
    pub read_roots: Option<&'a [std::path::PathBuf]>,
    /// Becomes true when the caller has gone away: long work (a publish) stops, committing
    /// nothing.
    pub cancel: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
    /// Where copies (a backup's deep copy) may be written or read; `None` for anywhere (local
    /// calls).
    pub locations: Option<&'a [String]>,
    /// The request's body, for endpoints that take one (`stage/put`): read as it arrives.
    pub body: Option<&'a std::sync::Mutex<dyn std::io::Read + Send + 'a>>,
}

impl<'a> EnvCall<'a> {
    /// A local call on `env` (no address, may change things, no progress).
    pub fn local(env: &'a Environment) -> EnvCall<'a> {
        EnvCall {
            env,
            ip: None,
            read_only: false,
            progress: None,
            read_roots: None,
            cancel: None,
            locations: None,
            body: None,
        }
    }
}

/// The code behind an endpoint.
#[derive(Clone, Copy)]
pub enum Handler {
    /// An environment endpoint.
    Env(for<'a> fn(&EnvCall<'a>, &Args) -> Result<Output<'a>>),
    /// An ops endpoint.
    Ops(fn(&OpsCall<'_>, &Args) -> Result<Output<'static>>),
    /// Users, tokens, accounts: answered by `m1 serve` (its `auth` module).
    Served,
}

/// One endpoint of the API.
pub struct Endpoint {
    /// The API it belongs to.
    pub scope: Scope,
    /// Its path without the leading slash (`schema/add`); `system/{name}` matches any name.
    pub path: &'static str,
    /// HTTP verbs.
    pub verbs: Verbs,
    /// Rights needed over HTTP.
    pub access: Access,
    /// Parameters.
    pub params: &'static [Param],
    /// Whether it also takes parameters it does not declare (`system name=value`).
    pub open_params: bool,
    /// Whether its request body is data (an upload) rather than parameters: over HTTP its
    /// parameters come in the query string.
    pub takes_body: bool,
    /// What it answers.
    pub answer: Answer,
    /// One line saying what it does.
    pub summary: &'static str,
    /// Its code.
    pub handler: Handler,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?} /{}", self.scope, self.path)
    }
}

impl Endpoint {
    /// Whether the answer has a body when it succeeds (the seeds' "No response" ones have none).
    pub fn has_body(&self) -> bool {
        !matches!(self.answer, Answer::Empty | Answer::EmptyOrJson)
    }

    /// Help text: usage line, summary, verbs, rights and parameters.
    pub fn help(&self) -> String {
        let target = match self.scope {
            Scope::Env => "<env>",
            Scope::Ops => "ops",
        };
        let mut out = format!("m1 {target} {}", self.path);
        for p in self.params {
            let v = format!("-{} {}", p.name, p.name.to_uppercase());
            if p.required {
                out += &format!(" {v}");
            } else {
                out += &format!(" [{v}]");
            }
        }
        out += &format!("\n\n{}\n\nHTTP: {} /{}", self.summary, self.verbs.names().join(" or "), self.path);
        out += &match self.access {
            Access::Public => ", no token needed".to_string(),
            Access::Token => ", any valid m1-auth-token".to_string(),
            Access::AnyOf(r) => format!(", rights: one of {}", r.join(", ")),
            Access::Account(r) => format!(", right '{r}' in the account"),
        };
        if matches!(self.handler, Handler::Served) {
            out += "\nAnswered by `m1 serve` only (call it with -remote URL).";
        }
        if !self.params.is_empty() {
            out += "\n\nParameters:";
            let width = self.params.iter().map(|p| p.name.len()).max().unwrap_or(0);
            for p in self.params {
                let mut line = format!("\n  -{:width$}  {}", p.name, p.kind.expected());
                if p.required {
                    line += ", required";
                }
                if let Some(d) = p.default {
                    line += &format!(", default {d}");
                }
                line += &format!(": {}", p.help);
                out += &line;
            }
        }
        if self.open_params {
            out += "\n  -NAME VALUE  sets system parameter NAME";
        }
        out
    }
}

/// The endpoint at `path` in `scope` (`system/<name>` matches `system/{name}`).
pub fn find(scope: Scope, path: &str) -> Option<&'static Endpoint> {
    let path = path.trim_matches('/');
    let in_scope = || ENDPOINTS.iter().filter(move |e| e.scope == scope);
    in_scope().find(|e| e.path == path).or_else(|| {
        let (head, rest) = path.split_once('/')?;
        if rest.is_empty() || rest.contains('/') {
            return None;
        }
        in_scope().find(|e| e.path.strip_suffix("/{name}") == Some(head))
    })
}

/// The endpoint at `path`, or an error listing the scope's endpoints.
pub fn require(scope: Scope, path: &str) -> Result<&'static Endpoint> {
    find(scope, path).ok_or_else(|| Error::UnknownEndpoint {
        path: path.to_string(),
        known: ENDPOINTS.iter().filter(|e| e.scope == scope).map(|e| e.path).collect(),
    })
}

/// The endpoints of a scope, in table order.
pub fn of(scope: Scope) -> impl Iterator<Item = &'static Endpoint> {
    ENDPOINTS.iter().filter(move |e| e.scope == scope)
}

/// The endpoint at `path` and its parameters, checked and decoded.
pub fn prepare(
    scope: Scope,
    path: &str,
    params: impl IntoIterator<Item = (String, String)>,
) -> Result<(&'static Endpoint, Args)> {
    let ep = require(scope, path)?;
    let mut args = Args::new(ep, params)?;
    if let Some(name) = system_name(ep, path) {
        args = args.with_name(name);
    }
    Ok((ep, args))
}

/// Calls environment endpoint `path` with text parameters.
pub fn call_env<'a>(
    call: &EnvCall<'a>,
    path: &str,
    params: impl IntoIterator<Item = (String, String)>,
) -> Result<Output<'a>> {
    let (ep, args) = prepare(Scope::Env, path, params)?;
    match ep.handler {
        Handler::Env(f) => f(call, &args),
        _ => Err(Error::ServedOnly(format!("/{}", ep.path))),
    }
}

/// Calls ops endpoint `path` with text parameters.
pub fn call_ops(
    call: &OpsCall<'_>,
    path: &str,
    params: impl IntoIterator<Item = (String, String)>,
) -> Result<Output<'static>> {
    let (ep, args) = prepare(Scope::Ops, path, params)?;
    match ep.handler {
        Handler::Ops(f) => f(call, &args),
        _ => Err(Error::ServedOnly(format!("ops /{}", ep.path))),
    }
}

/// The `{name}` part of a call to a `.../{name}` endpoint.
fn system_name<'p>(ep: &Endpoint, path: &'p str) -> Option<&'p str> {
    let prefix = ep.path.strip_suffix("{name}")?;
    path.trim_matches('/').strip_prefix(prefix)
}

/// Environment rights of SPEC §8.
pub const ENV_RIGHTS: &[&str] = &["admin", "schema", "get", "publish", "sessionQuery", "sessionUpdate"];
/// Ops rights of seed 000.
pub const OPS_RIGHTS: &[&str] = &["owner", "admin", "view", "manage"];

// --- The table ---

use Access::{AnyOf, Public, Token};
use Kind::{Bool, Int, Json, Keys, List, Text};
use Scope::{Env as E, Ops as O};
use Verbs::{Both, Get, Post};

const ADMIN: Access = AnyOf(&["admin"]);
const VIEW: Access = Access::Account("view");
const MANAGE: Access = Access::Account("manage");
const ACCOUNT_ADMIN: Access = Access::Account("admin");

const fn req(name: &'static str, kind: Kind, help: &'static str) -> Param {
    Param::required(name, kind, help)
}
const fn opt(name: &'static str, kind: Kind, help: &'static str) -> Param {
    Param::optional(name, kind, help)
}
const fn def(name: &'static str, kind: Kind, default: &'static str, help: &'static str) -> Param {
    Param::with_default(name, kind, default, help)
}

#[allow(clippy::too_many_arguments)]
const fn ep(
    scope: Scope,
    path: &'static str,
    verbs: Verbs,
    access: Access,
    params: &'static [Param],
    answer: Answer,
    summary: &'static str,
    handler: Handler,
) -> Endpoint {
    Endpoint { scope, path, verbs, access, params, open_params: false, takes_body: false, answer, summary, handler }
}

const SERVED: Handler = Handler::Served;
const J: Answer = Answer::Json;
const N: Answer = Answer::Empty;

const USERNAME: Param = req("username", Text, "the user's name");
const PASSWORD: Param = req("password", Text, "the password");
const STORE: Param = req("store", Text, "the store's name");
const NEW_NAME: Param = req("name", Text, "the new name");
const ENV: Param = req("env", Text, "the environment's name or id");
const ACCOUNT: Param = opt("account", Text, "the account (id or name); default: your first account with the right");

const VERSION: Param = opt("version", Int, "answer as at this table version (see versions)");
const AS_OF: Param = opt("asOf", Text, "answer as at this time: epoch ms or an ISO-8601 date");
const STAGE_PATH: Param = req("path", Text, "a path in the stage: a/b.csv (a folder ends in /)");
const BACKUP_ID: Param = req("id", Text, "the backup's id or name");

const PUBLISH_PARAMS: &[Param] = &[
    req("file", Text, "path, directory, glob or URL (s3://, gs://, az://, http(s)://) of the files"),
    opt("rules", Json, "TransformRuleSet: a JSON array of rules"),
    opt("format", Text, "csv, txt, json or jsonl (default: from the file name)"),
    opt("compression", Text, "gz, zip or zst (default: from the file name)"),
    opt("encoding", Text, "charset label (default utf-8)"),
    opt("delimiter", Text, "csv field delimiter: one character, or 'tab'"),
    def("headers", Bool, "true", "whether csv/txt files start with a header row"),
    opt("rows", Int, "publish at most this many records (negative: all)"),
    def("infer", Bool, "false", "add properties the schema lacks, with inferred types"),
    opt("permissive", Bool, "skip records that do not fit instead of failing (default: system publish-permissive)"),
    opt("entries", Json, "zip: a JSON array of the entry names to read"),
];

const SESSION_CREATE: &[Param] = &[
    ENV,
    STORE,
    opt("key", Text, "the key property (default session.id)"),
    def("shards", Int, "1", "shards"),
    def("replicas", Int, "2", "replicas (recorded)"),
];

const STORE_CREATE: &[Param] = &[
    STORE,
    def("type", Text, "standard", "standard (on disk) or boost (in memory)"),
    def("shards", Int, "1", "index shards"),
    def("replicas", Int, "2", "replicas (recorded)"),
];

const ENV_STORE_CREATE: &[Param] = &[
    ENV,
    STORE,
    def("type", Text, "standard", "standard (on disk) or boost (in memory)"),
    def("shards", Int, "1", "index shards"),
    def("replicas", Int, "2", "replicas (recorded)"),
];

/// Every endpoint of the API.
#[rustfmt::skip]
pub static ENDPOINTS: &[Endpoint] = &[
    // --- Environment: service ---
    ep(E, "ping", Both, Public, &[], J, "answers {\"status\": \"ok\"}", Handler::Env(env::ping)),
    ep(E, "health", Get, Public,
       &[],
       J, "the state of the lake, the data stores and the session stores", Handler::Env(env::health)),
    // --- Environment: users and tokens (m1 serve) ---
    ep(E, "init", Post, Public, &[USERNAME, PASSWORD], N, "creates the first admin user, once", SERVED),
    ep(E, "auth", Post, Public,
       &[USERNAME, PASSWORD, opt("ip", Text, "bind the token to this address ('...' = any; admin)"),
         opt("ttl", Int, "token lifetime in ms (admin)")],
       J, "a token for the user", SERVED),
    ep(E, "user/password", Post, Token,
       &[opt("username", Text, "whose password (admin for others)"), PASSWORD],
       N, "changes a password", SERVED),
    ep(E, "user/list", Get, ADMIN, &[], J, "the users and their rights", SERVED),
    ep(E, "user/get", Get, ADMIN, &[USERNAME], J, "one user and their rights", SERVED),
    ep(E, "user/add", Post, ADMIN,
       &[USERNAME, PASSWORD, req("rights", List, "the user's rights")],
       N, "adds a user", SERVED),
    ep(E, "user/update", Post, ADMIN,
       &[USERNAME, req("rights", List, "the user's rights")],
       N, "replaces a user's rights", SERVED),
    ep(E, "user/remove", Post, ADMIN, &[USERNAME], N, "removes a user and their tokens", SERVED),
    ep(E, "token/list", Get, ADMIN, &[], J, "the live tokens", SERVED),
    ep(E, "token/data", Post, ADMIN,
       &[req("token", Text, "the token")],
       J, "what a token is: user, rights, address, expiry", SERVED),
    ep(E, "token/delete", Post, ADMIN, &[], N, "revokes every token", SERVED),
    // --- Environment: schema and data ---
    ep(E, "schema", Get, AnyOf(&["schema", "get", "publish"]),
       &[VERSION, AS_OF],
       J, "the schema's properties", Handler::Env(env::schema)),
    ep(E, "schema/add", Post, AnyOf(&["schema"]),
       &[req("properties", Json, "a JSON array of {name, type, multi?, description?, indexed?, fast?}")],
       N, "adds properties to the schema", Handler::Env(env::schema_add)),
    ep(E, "schema/wipe", Post, AnyOf(&["schema"]),
       &[],
       N, "removes every user property", Handler::Env(env::schema_wipe)),
    ep(E, "write", Post, AnyOf(&["publish"]),
       &[req("items", Json, "a JSON array of records"),
         def("publish", Bool, "false", "also publish them to the lake"),
         opt("rules", Json, "TransformRuleSet for publishing"), opt("permissive", Bool, "publish permissively"),
         def("async", Bool, "true", "answer at once; false waits and answers the report")],
       Answer::EmptyOrJson, "archives raw items and, if asked, publishes them", Handler::Env(env::write)),
    ep(E, "publish", Post, AnyOf(&["publish"]),
       PUBLISH_PARAMS,
       J, "publishes files into the lake, atomically", Handler::Env(env::publish)),
    ep(E, "next", Get, AnyOf(&["admin", "publish"]),
       &[VERSION, AS_OF],
       J, "the key the next record will get", Handler::Env(env::next)),
    ep(E, "get", Both, AnyOf(&["get"]),
       &[req("ids", Keys, "the keys"), opt("properties", List, "the properties to return (default all)"),
         VERSION, AS_OF],
       J, "the records with these keys, in the order asked", Handler::Env(env::get)),
    ep(E, "range", Both, AnyOf(&["get"]),
       &[req("start", Int, "first key"), req("end", Int, "key after the last"),
         opt("properties", List, "the properties to return (default all)"), VERSION, AS_OF],
       Answer::Stream, "the records with keys in start..end, streamed in key order", Handler::Env(env::range)),
    Endpoint {
        open_params: true,
        ..ep(E, "system", Both, ADMIN,
             &[],
             J, "the system parameters; POST name=value pairs to change them", Handler::Env(env::system))
    },
    ep(E, "system/{name}", Both, ADMIN,
       &[opt("value", Text, "the new value (POST)")],
       J, "one system parameter; POST value= to change it", Handler::Env(env::system_one)),
    ep(E, "vacuum", Post, ADMIN,
       &[def("olderThanMs", Int, "3600000", "only files unreferenced for this long")],
       J, "deletes lake files and log entries no version in the retention window and no backup needs",
       Handler::Env(env::vacuum)),
    // --- Environment: time travel, backups, restore ---
    ep(E, "versions", Get, AnyOf(&["get", "admin"]),
       &[],
       J, "the table versions still restorable: time, operation, rows and keys added", Handler::Env(env::versions)),
    ep(E, "backup/create", Post, ADMIN,
       &[opt("name", Text, "a name for it (default: its id)")],
       J, "takes a backup: the lake's current version, the data stores and the session stores",
       Handler::Env(env::backup_create)),
    ep(E, "backup/list", Get, ADMIN, &[], J, "the backups", Handler::Env(env::backup_list)),
    ep(E, "backup/get", Get, ADMIN, &[BACKUP_ID], J, "one backup", Handler::Env(env::backup_get)),
    ep(E, "backup/delete", Post, ADMIN, &[BACKUP_ID], N, "deletes a backup", Handler::Env(env::backup_delete)),
    ep(E, "backup/copy", Post, ADMIN,
       &[BACKUP_ID, req("to", Text, "an empty directory or object-store URL"),
         opt("options", Json, "object-store settings for it: {\"aws_endpoint\": ...}")],
       J, "copies a backup elsewhere as a self-contained deep copy", Handler::Env(env::backup_copy)),
    ep(E, "restore", Post, ADMIN,
       &[opt("backup", Text, "a backup of this environment (id or name)"), VERSION, AS_OF],
       J, "brings a version or backup back as a new commit (history is kept)", Handler::Env(env::restore)),
    // --- Environment: storage DR ---
    ep(E, "dr/setup", Post, ADMIN,
       &[req("replica", Text, "the second location: a directory or object-store URL"),
         opt("options", Json, "object-store settings for it: {\"aws_endpoint\": ...}")],
       J, "starts replicating every commit to a second location", Handler::Env(env::dr_setup)),
    ep(E, "dr/status", Get, AnyOf(&["admin", "get"]),
       &[],
       J, "DR state, replica version and lag (commits, bytes, seconds), last error", Handler::Env(env::dr_status)),
    ep(E, "dr/failover", Post, ADMIN,
       &[],
       J, "makes the replica the writable primary and fences this location", Handler::Env(env::dr_failover)),
    ep(E, "dr/failback", Post, ADMIN,
       &[],
       J, "re-syncs the original location from this primary and switches back", Handler::Env(env::dr_failback)),
    ep(E, "dr/regions", Get, AnyOf(&["admin", "get"]),
       &[], J, "the DR locations and their roles", Handler::Env(env::dr_regions)),
    ep(E, "dr/startPreProvision", Post, ADMIN,
       &[], J, "opens the replica's readers now, so a failover answers at once",
       Handler::Env(env::dr_start_preprovision)),
    ep(E, "dr/stopPreProvision", Post, ADMIN,
       &[], J, "closes the replica's pre-opened readers", Handler::Env(env::dr_stop_preprovision)),
    // --- Environment: stage (its file area) ---
    Endpoint {
        takes_body: true,
        ..ep(E, "stage/put", Post, AnyOf(&["publish", "admin"]),
             &[STAGE_PATH, opt("file", Text, "local calls: the file to upload (over HTTP the body is the file)")],
             J, "uploads a file to the stage (a path ending in / makes a folder)", Handler::Env(stage::put))
    },
    ep(E, "stage/list", Get, AnyOf(&["publish", "admin", "get"]),
       &[opt("path", Text, "a folder of the stage, ending in / (default: its root)")],
       J, "the files and folders in a stage folder: name, path, size, modified time", Handler::Env(stage::list)),
    ep(E, "stage/get", Get, AnyOf(&["publish", "admin", "get"]),
       &[STAGE_PATH, opt("offset", Int, "first byte to send"), opt("length", Int, "bytes to send"),
         def("metadata", Bool, "false", "answer the file's metadata instead of its bytes")],
       Answer::Stream, "downloads a file of the stage (HTTP Range requests work too)", Handler::Env(stage::get)),
    ep(E, "stage/move", Post, AnyOf(&["publish", "admin"]),
       &[STAGE_PATH, req("newPath", Text, "where it goes")],
       J, "moves or renames a file or folder of the stage", Handler::Env(stage::move_to)),
    ep(E, "stage/delete", Post, AnyOf(&["publish", "admin"]),
       &[STAGE_PATH],
       J, "deletes a file, or a folder (path ending in /) and all in it", Handler::Env(stage::delete)),
    // --- Environment: data stores ---
    ep(E, "query", Both, AnyOf(&["get"]),
       &[def("store", Text, "index", "the data store(s), comma separated"),
         req("q", Text, "the query (Lucene-style)"), opt("fl", List, "the properties of each item"),
         def("start", Int, "0", "items to skip"), def("rows", Int, "0", "items to return"),
         opt("sort", Text, "'prop desc, other asc'"), opt("facets", Json, "JSON object of named facets"),
         def("format", Text, "json", "json or csv"), VERSION, AS_OF],
       Answer::Stream, "searches a data store: count, items, facets", Handler::Env(env::query)),
    ep(E, "store/list", Get, AnyOf(&["get", "admin"]),
       &[],
       J, "the data stores and their state", Handler::Env(env::store_list)),
    ep(E, "store/create", Post, ADMIN,
       STORE_CREATE,
       J, "creates a data store, backfilled from the lake", Handler::Env(env::store_create)),
    ep(E, "store/rename", Post, ADMIN, &[STORE, NEW_NAME], N, "renames a data store", Handler::Env(env::store_rename)),
    ep(E, "store/destroy", Post, ADMIN, &[STORE], N, "deletes a data store", Handler::Env(env::store_destroy)),
    ep(E, "store/enable", Post, ADMIN,
       &[STORE, opt("enable", Bool, "on or off (default true)"), opt("active", Bool, "the same as enable")],
       J, "turns a data store on or off", Handler::Env(env::store_enable)),
    ep(E, "store/autocommit", Post, ADMIN,
       &[STORE, opt("enable", Bool, "on or off"), opt("autocommit", Bool, "the same as enable")],
       J, "whether a store follows the lake by itself", Handler::Env(env::store_autocommit)),
    ep(E, "store/rebuild", Post, ADMIN,
       &[STORE],
       J, "rebuilds a data store from the lake", Handler::Env(env::store_rebuild)),
    ep(E, "store/commit", Post, ADMIN,
       &[STORE],
       J, "indexes what the lake has that the store lacks", Handler::Env(env::store_commit)),
    // --- Environment: session stores ---
    ep(E, "session/update", Post, AnyOf(&["sessionUpdate"]),
       &[STORE, req("ops", Json, "[{\"upsert\": [docs]}, {\"merge\": [docs]}, {\"delete\": [keys]}]")],
       N, "applies upserts, merges and deletes atomically and durably", Handler::Env(env::session_update)),
    ep(E, "session/query", Both, AnyOf(&["sessionQuery"]),
       &[STORE, req("q", Text, "the query"), opt("sort", Text, "'path asc|desc'"),
         def("start", Int, "0", "documents to skip"), def("rows", Int, "10", "documents to return")],
       Answer::Stream, "searches a session store", Handler::Env(env::session_query)),
    ep(E, "session/list", Get, AnyOf(&["get", "admin"]), &[], J, "the session stores", Handler::Env(env::session_list)),
    ep(E, "session/get", Both, AnyOf(&["sessionQuery"]),
       &[STORE, req("ids", Json, "a JSON array of keys")],
       J, "documents by key (our addition)", Handler::Env(env::session_get)),
    ep(E, "session/key", Post, ADMIN,
       &[STORE, req("key", Text, "the new key property")],
       N, "re-keys a session store", Handler::Env(env::session_key)),
    ep(E, "session/add", Post, ADMIN,
       &[STORE, opt("key", Text, "the key property (default session.id)"), req("shards", Int, "shards"),
         req("replicas", Int, "replicas (recorded)")],
       N, "creates a session store", Handler::Env(env::session_add)),
    ep(E, "session/rename", Post, ADMIN,
       &[STORE, NEW_NAME],
       N, "renames a session store", Handler::Env(env::session_rename)),
    ep(E, "session/drop", Post, ADMIN, &[STORE], N, "deletes a session store", Handler::Env(env::session_drop)),
    // --- Ops: users and accounts (m1 serve) ---
    ep(O, "ping", Both, Public, &[], J, "answers {\"status\": \"ok\"}", Handler::Ops(ops::ping)),
    ep(O, "signup", Post, Public, &[USERNAME, PASSWORD], N, "creates an ops user with an account of their own", SERVED),
    ep(O, "auth", Post, Public,
       &[USERNAME, PASSWORD, opt("ttl", Int, "token lifetime in ms")],
       J, "an ops token", SERVED),
    ep(O, "user/password", Post, Token, &[PASSWORD], N, "changes your password", SERVED),
    ep(O, "account/list", Get, Token, &[], J, "your accounts and your rights in them", SERVED),
    ep(O, "account/user/list", Get, Token, &[req("account", Text, "the account")], J, "an account's users", SERVED),
    ep(O, "account/user/add", Post, ACCOUNT_ADMIN,
       &[req("account", Text, "the account"), USERNAME, opt("rights", List, "owner, admin, view, manage")],
       N, "gives a user access to an account", SERVED),
    ep(O, "account/user/update", Post, ACCOUNT_ADMIN,
       &[req("account", Text, "the account"), USERNAME, req("rights", List, "owner, admin, view, manage")],
       N, "changes a user's rights in an account", SERVED),
    ep(O, "account/user/remove", Post, ACCOUNT_ADMIN,
       &[req("account", Text, "the account"), USERNAME],
       N, "removes a user from an account", SERVED),
    ep(O, "account/firewall", Post, ACCOUNT_ADMIN,
       &[req("account", Text, "the account"),
         opt("ranges", Json, "a JSON array of CIDR ranges that may call /v1 for it; [] nobody; absent anyone")],
       J, "sets who may call the management API for an account (its organization's firewallRanges)", SERVED),
    ep(O, "token/list", Get, Token, &[], J, "your live tokens", SERVED),
    ep(O, "token/delete", Post, Token, &[], N, "revokes your tokens", SERVED),
    // --- Ops: environments ---
    ep(O, "env/get", Get, VIEW, &[ENV], J, "one environment", Handler::Ops(ops::env_get)),
    ep(O, "env/list", Get, VIEW, &[ACCOUNT], J, "the environments", Handler::Ops(ops::env_list)),
    ep(O, "env/create", Post, MANAGE,
       &[opt("env", Text, "the new environment's name (required, or as name)"),
         opt("name", Text, "the same as env (the seed's parameter table spells it so)"),
         opt("url", Text, "where it lives: a path or object-store URL (default $M1_HOME/envs/NAME)"),
         opt("options", Json, "object-store settings for the location: {\"aws_endpoint\": ...}"),
         opt("servers", Int, "worker threads (default 2)"), opt("shards", Int, "lake shards (default 4)"),
         opt("segmentRows", Int, "records per segment file"), ACCOUNT],
       J, "creates an environment", Handler::Ops(ops::env_create)),
    ep(O, "env/rename", Post, MANAGE, &[ENV, NEW_NAME], N, "renames an environment", Handler::Ops(ops::env_rename)),
    ep(O, "env/destroy", Post, MANAGE,
       &[ENV],
       N, "deletes an environment and its data", Handler::Ops(ops::env_destroy)),
    ep(O, "env/rescale", Post, MANAGE,
       &[ENV, opt("servers", Int, "worker threads"), opt("threshold", Int, "at most servers; recorded (default: servers)")],
       N, "changes an environment's worker threads", Handler::Ops(ops::env_rescale)),
    ep(O, "env/suspend", Post, MANAGE,
       &[ENV],
       J, "stops an environment: closes it and answers its requests with a state error until resumed",
       Handler::Ops(ops::env_suspend)),
    ep(O, "env/resume", Post, MANAGE,
       &[ENV],
       J, "starts a stopped environment again and opens it", Handler::Ops(ops::env_resume)),
    ep(O, "env/settings", Post, MANAGE,
       &[ENV, req("settings", Json, "a JSON object: tier, provider, region, minTotalMemoryGb, maxTotalMemoryGb, idleScaling, idleTimeoutMinutes, group, size, cacheConfig, deploymentType, threshold (null clears)")],
       J, "changes an environment's service settings", Handler::Ops(ops::env_settings)),
    ep(O, "env/access", Post, MANAGE,
       &[ENV, opt("list", Json, "a JSON array of {\"source\": CIDR or address, \"description\": ..}; [] admits nobody; absent or null admits everyone")],
       J, "sets who may connect to an environment (checked before authentication)", Handler::Ops(ops::env_access)),
    ep(O, "usage", Get, VIEW,
       &[ENV, opt("from", Text, "start: epoch ms or ISO-8601 (default a day ago)"),
         opt("to", Text, "end: epoch ms or ISO-8601 (default now)")],
       J, "an environment's usage samples (storage by part, records, documents, requests, compute seconds)",
       Handler::Ops(ops::env_usage)),
    ep(O, "env/reboot", Post, MANAGE,
       &[ENV, req("group", Text, "the server group (a store)")],
       N, "reopens an environment", Handler::Ops(ops::env_reboot)),
    ep(O, "env/store/create", Post, MANAGE,
       ENV_STORE_CREATE,
       J, "creates a data store", Handler::Ops(ops::env_store_create)),
    ep(O, "env/store/rename", Post, MANAGE,
       &[ENV, STORE, NEW_NAME],
       N, "renames a data store", Handler::Ops(ops::env_store_rename)),
    ep(O, "env/store/destroy", Post, MANAGE,
       &[ENV, STORE],
       N, "deletes a data store", Handler::Ops(ops::env_store_destroy)),
    ep(O, "env/session/create", Post, MANAGE,
       SESSION_CREATE,
       J, "creates a session store", Handler::Ops(ops::env_session_create)),
    ep(O, "env/session/rename", Post, MANAGE,
       &[ENV, STORE, NEW_NAME],
       N, "renames a session store", Handler::Ops(ops::env_session_rename)),
    ep(O, "env/session/destroy", Post, MANAGE,
       &[ENV, STORE],
       N, "deletes a session store", Handler::Ops(ops::env_session_destroy)),
    ep(O, "env/bucket/register", Post, MANAGE,
       &[ENV, req("bucket", Text, "the bucket name"), opt("options", Json, "object-store settings for URLs in it")],
       N, "registers a bucket publish may read from", Handler::Ops(ops::env_bucket_register)),
    ep(O, "env/bucket/deregister", Post, MANAGE,
       &[ENV, req("bucket", Text, "the bucket name")],
       N, "forgets a bucket", Handler::Ops(ops::env_bucket_deregister)),
    ep(O, "env/bucket/grant", Post, MANAGE,
       &[ENV, req("arn", Text, "the role")],
       N, "records a read role", Handler::Ops(ops::env_bucket_grant)),
    ep(O, "env/bucket/revoke", Post, MANAGE,
       &[ENV, req("arn", Text, "the role")],
       N, "forgets a read role", Handler::Ops(ops::env_bucket_revoke)),
    ep(O, "env/restore", Post, ACCOUNT_ADMIN,
       &[opt("env", Text, "the new environment's name"),
         opt("from", Text, "the environment whose backup to restore"),
         opt("backup", Text, "that environment's backup (id or name)"),
         opt("location", Text, "or: where a deep copy of a backup is (directory or URL)"),
         opt("options", Json, "object-store settings for the deep copy's location"),
         opt("url", Text, "where the new environment lives (default $M1_HOME/envs/NAME)"), ACCOUNT],
       J, "creates a new environment from a backup", Handler::Ops(ops::env_restore)),
    ep(O, "env/backup/create", Post, MANAGE,
       &[ENV, opt("name", Text, "a name for it (default: its id)")],
       J, "takes a backup of an environment", Handler::Ops(ops::env_backup_create)),
    ep(O, "env/backup/list", Get, VIEW, &[ENV], J, "an environment's backups", Handler::Ops(ops::env_backup_list)),
    ep(O, "env/dr/failover", Post, ACCOUNT_ADMIN,
       &[ENV, opt("replica", Text, "the replica's location, when the primary cannot be reached"),
         opt("options", Json, "object-store settings for the replica's location")],
       J, "fails an environment over to its DR replica and points its name there",
       Handler::Ops(ops::env_dr_failover)),
    ep(O, "env/dr/failback", Post, ACCOUNT_ADMIN,
       &[ENV],
       J, "fails an environment back to its original location", Handler::Ops(ops::env_dr_failback)),
    ep(O, "env/dr/status", Get, VIEW, &[ENV], J, "an environment's DR state and lag", Handler::Ops(ops::env_dr_status)),
    ep(O, "env/outbound", Post, MANAGE,
       &[ENV, req("enable", Bool, "whether publish may read http(s) URLs")],
       N, "turns internet reads on or off", Handler::Ops(ops::env_outbound)),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_unique_per_scope_and_params_unique_per_endpoint() {
        let mut seen = std::collections::HashSet::new();
        for e in ENDPOINTS {
            assert!(seen.insert((e.scope, e.path)), "{e:?} twice");
            let mut names = std::collections::HashSet::new();
            for p in e.params {
                assert!(names.insert(p.name), "{e:?}: parameter {} twice", p.name);
                assert!(!(p.required && p.default.is_some()), "{e:?}: {} is required and has a default", p.name);
            }
        }
    }

    #[test]
    fn defaults_decode() {
        for e in ENDPOINTS {
            Args::new(e, e.params.iter().filter(|p| p.required).map(|p| (p.name.to_string(), sample(p.kind))))
                .unwrap_or_else(|err| panic!("{e:?}: {err}"));
        }
    }

    fn sample(kind: Kind) -> String {
        match kind {
            Kind::Text | Kind::List => "x".into(),
            Kind::Int => "1".into(),
            Kind::Bool => "true".into(),
            Kind::Json => "[]".into(),
            Kind::Keys => "1".into(),
        }
    }

    #[test]
    fn find_matches_named_parameters() {
        assert_eq!(find(Scope::Env, "system/token-expire-ms").unwrap().path, "system/{name}");
        assert_eq!(find(Scope::Env, "/get/").unwrap().path, "get");
        assert!(find(Scope::Env, "system/a/b").is_none());
        assert!(find(Scope::Ops, "get").is_none());
        let e = require(Scope::Env, "nope").unwrap_err().to_string();
        assert!(e.contains("unknown endpoint 'nope'") && e.contains("schema/add"), "{e}");
    }
}
