//! The route tables: every endpoint, its verbs and the rights it needs, as the seeds list them.
//! The dispatcher enforces the verbs and rights from here; the rights-matrix test reads the
//! same tables, so an endpoint cannot be served without being tested.

/// Who may call an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone (no token needed).
    Public,
    /// Any valid token (the endpoint may check more itself, e.g. `admin` to act for others).
    Token,
    /// A valid token whose user holds at least one of these rights.
    AnyOf(&'static [&'static str]),
    /// Ops: a valid token whose user holds this right in the account the request is about
    /// (checked by the endpoint, which knows the account).
    Account(&'static str),
}

/// One endpoint.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    /// Path without the leading slash (`schema/add`); `system/{name}` matches any name.
    pub path: &'static str,
    /// Verbs accepted.
    pub methods: &'static [&'static str],
    /// Rights needed.
    pub access: Access,
    /// Whether the response has a body (the seeds' "No response when successful" have none).
    pub body: bool,
}

const GET: &[&str] = &["GET"];
const POST: &[&str] = &["POST"];
const BOTH: &[&str] = &["GET", "POST"];

const fn r(path: &'static str, methods: &'static [&'static str], access: Access, body: bool) -> Route {
    Route { path, methods, access, body }
}

use Access::{AnyOf, Public, Token};

/// Environment rights of SPEC §8.
pub const ENV_RIGHTS: &[&str] = &["admin", "schema", "get", "publish", "sessionQuery", "sessionUpdate"];
/// Ops rights of seed 000.
pub const OPS_RIGHTS: &[&str] = &["owner", "admin", "view", "manage"];

const ADMIN: Access = AnyOf(&["admin"]);

/// Environment endpoints (seeds 001 and 002, SPEC §5-§8).
pub const ENV_ROUTES: &[Route] = &[
    r("ping", BOTH, Public, true),
    r("health", GET, Public, true),
    r("init", POST, Public, false),
    r("auth", POST, Public, true),
    r("user/password", POST, Token, false),
    r("user/list", GET, ADMIN, true),
    r("user/get", GET, ADMIN, true),
    r("user/add", POST, ADMIN, false),
    r("user/update", POST, ADMIN, false),
    r("user/remove", POST, ADMIN, false),
    r("token/list", GET, ADMIN, true),
    r("token/data", POST, ADMIN, true),
    r("token/delete", POST, ADMIN, false),
    r("schema", GET, AnyOf(&["schema", "get", "publish"]), true),
    r("schema/add", POST, AnyOf(&["schema"]), false),
    r("schema/wipe", POST, AnyOf(&["schema"]), false),
    r("write", POST, AnyOf(&["publish"]), false),
    r("publish", POST, AnyOf(&["publish"]), true),
    r("next", GET, AnyOf(&["admin", "publish"]), true),
    r("get", BOTH, AnyOf(&["get"]), true),
    r("range", BOTH, AnyOf(&["get"]), true),
    r("system", BOTH, ADMIN, true),
    r("system/{name}", BOTH, ADMIN, true),
    r("vacuum", POST, ADMIN, true),
    r("query", BOTH, AnyOf(&["get"]), true),
    r("store/list", GET, AnyOf(&["get", "admin"]), true),
    r("store/create", POST, ADMIN, true),
    r("store/rename", POST, ADMIN, false),
    r("store/destroy", POST, ADMIN, false),
    r("store/enable", POST, ADMIN, true),
    r("store/autocommit", POST, ADMIN, true),
    r("store/rebuild", POST, ADMIN, true),
    r("store/commit", POST, ADMIN, true),
    r("session/update", POST, AnyOf(&["sessionUpdate"]), false),
    r("session/query", BOTH, AnyOf(&["sessionQuery"]), true),
    r("session/list", GET, AnyOf(&["get", "admin"]), true),
    r("session/get", BOTH, AnyOf(&["sessionQuery"]), true),
    r("session/key", POST, ADMIN, false),
    r("session/add", POST, ADMIN, false),
    r("session/rename", POST, ADMIN, false),
    r("session/drop", POST, ADMIN, false),
];

const VIEW: Access = Access::Account("view");
const MANAGE: Access = Access::Account("manage");
const ACCOUNT_ADMIN: Access = Access::Account("admin");

/// Ops endpoints (seed 000, as SPEC §1 maps them).
pub const OPS_ROUTES: &[Route] = &[
    r("ping", BOTH, Public, true),
    r("signup", POST, Public, false),
    r("auth", POST, Public, true),
    r("user/password", POST, Token, false),
    r("account/list", GET, Token, true),
    r("account/user/list", GET, Token, true),
    r("account/user/add", POST, ACCOUNT_ADMIN, false),
    r("account/user/update", POST, ACCOUNT_ADMIN, false),
    r("account/user/remove", POST, ACCOUNT_ADMIN, false),
    r("token/list", GET, Token, true),
    r("token/delete", POST, Token, false),
    r("env/get", GET, VIEW, true),
    r("env/list", GET, VIEW, true),
    r("env/create", POST, MANAGE, true),
    r("env/rename", POST, MANAGE, false),
    r("env/destroy", POST, MANAGE, false),
    r("env/rescale", POST, MANAGE, false),
    r("env/reboot", POST, MANAGE, false),
    r("env/store/create", POST, MANAGE, true),
    r("env/store/rename", POST, MANAGE, false),
    r("env/store/destroy", POST, MANAGE, false),
    r("env/session/create", POST, MANAGE, true),
    r("env/session/rename", POST, MANAGE, false),
    r("env/session/destroy", POST, MANAGE, false),
    r("env/bucket/register", POST, MANAGE, false),
    r("env/bucket/deregister", POST, MANAGE, false),
    r("env/bucket/grant", POST, MANAGE, false),
    r("env/bucket/revoke", POST, MANAGE, false),
    r("env/outbound", POST, MANAGE, false),
];

/// The route for `path` in `table` (`system/<name>` matches `system/{name}`).
pub fn find(table: &'static [Route], path: &str) -> Option<&'static Route> {
    let path = path.trim_matches('/');
    table.iter().find(|r| r.path == path).or_else(|| {
        let (head, rest) = path.split_once('/')?;
        if rest.is_empty() || rest.contains('/') {
            return None;
        }
        table.iter().find(|r| r.path.strip_suffix("/{name}") == Some(head))
    })
}
