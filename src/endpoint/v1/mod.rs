//! The management API (`/v1/...`): every operation of seed 003 (SingleStore Management API) and
//! of seed 004's Services (ClickHouse Cloud), as one table ([`ROUTES`]) mapped onto m1's own
//! concepts: an organization is an ops account, a service or workspace an environment, a
//! workspace group a named group of environments, a region a storage location.
//!
//! Each route declares its path, verb, the ops right it needs, its request fields and its answer's
//! fields; the same declaration checks a request's body ([`check_body`]: a field of the wrong
//! type or one the seed does not define is a 400 naming it) and writes the route into the OpenAPI
//! document ([`super::openapi`]), so the two cannot drift. Handlers reach environments only
//! through ops endpoints called as the caller ([`Backend::ops`]), so the rights and account
//! checks are the ops API's own and creating a service here makes an environment that `m1 ops
//! env/list` shows.

mod clickhouse;
mod singlestore;

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::error::Result;
use m1_engine::{Catalog, EngineError};

/// A JSON type a field may have.
#[derive(Debug, Clone, Copy)]
pub enum Ty {
    /// A string.
    Str,
    /// A string holding a UUID.
    Uuid,
    /// A string holding an ISO-8601 time.
    Time,
    /// One of these strings.
    Enum(&'static [&'static str]),
    /// A whole number.
    Int,
    /// Any number.
    Num,
    /// true or false.
    Bool,
    /// An array of strings.
    Strs,
    /// An object with these fields.
    Obj(&'static [Field]),
    /// An array of objects with these fields.
    Objs(&'static [Field]),
    /// Anything (accepted as is).
    Any,
}

/// One field of a request body or an answer.
#[derive(Debug, Clone, Copy)]
pub struct Field {
    /// Its JSON name.
    pub name: &'static str,
    /// Its type.
    pub ty: Ty,
    /// Whether a request must give it.
    pub required: bool,
    /// What it means here.
    pub help: &'static str,
}

const fn f(name: &'static str, ty: Ty, help: &'static str) -> Field {
    Field { name, ty, required: false, help }
}

const fn must(name: &'static str, ty: Ty, help: &'static str) -> Field {
    Field { name, ty, required: true, help }
}

/// What a route answers.
#[derive(Debug, Clone, Copy)]
pub enum Reply {
    /// An object with these fields.
    Obj(&'static [Field]),
    /// An array of objects with these fields.
    List(&'static [Field]),
    /// An empty body.
    Empty,
    /// OpenMetrics text.
    Text,
    /// A stage file (bytes) or a folder's listing (JSON).
    FileOrObj(&'static [Field]),
}

/// A query parameter of a route.
#[derive(Debug, Clone, Copy)]
pub struct QueryParam {
    /// Its name.
    pub name: &'static str,
    /// Its type.
    pub ty: Ty,
    /// Whether it must be given.
    pub required: bool,
    /// What it means.
    pub help: &'static str,
}

/// How a route is answered.
#[derive(Clone, Copy)]
pub enum Handler {
    /// By the library, from the request, through the caller's backend.
    Json(fn(&dyn Backend, &Request) -> Result<Value>),
    /// By the server, which streams the stage's bytes (upload, download) itself.
    Stage(StageOp),
    /// By the server: a workspace group's metrics (OpenMetrics text).
    Metrics,
}

/// The stage operations, answered by the server with the library's [`crate::stage`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StageOp {
    /// GET: list a folder, or download a file (`metadata=true`: describe it).
    Get,
    /// PUT: upload a file, or make a folder.
    Put,
    /// PATCH: move or rename.
    Move,
    /// DELETE: delete a file or folder.
    Delete,
}

/// One operation of the management API.
pub struct Route {
    /// The HTTP verb.
    pub method: &'static str,
    /// The path, with `{name}` for path parameters (`{path}` of the stage takes the rest).
    pub path: &'static str,
    /// The seed's summary.
    pub summary: &'static str,
    /// The seed it comes from, as an OpenAPI tag.
    pub tag: &'static str,
    /// The ops right the caller needs in the organization concerned.
    pub right: &'static str,
    /// Query parameters.
    pub query: &'static [QueryParam],
    /// Request body fields (`None`: no body).
    pub body: Option<&'static [Field]>,
    /// What it answers.
    pub reply: Reply,
    /// Its code.
    pub handler: Handler,
}

impl std::fmt::Debug for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.method, self.path)
    }
}

/// A request to a route.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// Path parameters by name.
    pub path: BTreeMap<String, String>,
    /// Query parameters.
    pub query: BTreeMap<String, String>,
    /// The JSON body, checked against the route's fields (`Null` when none was sent).
    pub body: Value,
}

impl Request {
    /// A path parameter (present by construction).
    pub fn param(&self, name: &str) -> &str {
        self.path.get(name).map_or("", String::as_str)
    }

    /// A body field.
    pub fn field(&self, name: &str) -> Option<&Value> {
        self.body.get(name).filter(|v| !v.is_null())
    }

    /// A string body field.
    pub fn text(&self, name: &str) -> Option<&str> {
        self.field(name).and_then(Value::as_str)
    }

    /// A boolean query parameter (`true`/`false`).
    pub fn flag(&self, name: &str) -> Result<bool> {
        match self.query.get(name).map(String::as_str) {
            None | Some("false") => Ok(false),
            Some("true") => Ok(true),
            Some(other) => Err(bad(name, format!("'{other}' is not true or false"))),
        }
    }
}

/// An organization (an ops account) as the caller sees it.
#[derive(Debug, Clone)]
pub struct Org {
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Addresses allowed to call the management API for it (`None`: anyone).
    pub firewall_ranges: Option<Vec<String>>,
}

/// What the routes need from the front-end that serves them (`m1 serve`).
pub trait Backend {
    /// Calls an ops endpoint as the caller (its rights and accounts checked); `Null` for an
    /// empty answer.
    fn ops(&self, path: &str, params: Vec<(String, String)>) -> Result<Value>;
    /// The caller's organization: `id` (which must be one of theirs, else 404), or the first
    /// where they hold `right`.
    fn org(&self, id: Option<&str>, right: &str) -> Result<Org>;
    /// The ids of the caller's organizations where they hold `right`.
    fn org_ids(&self, right: &str) -> Vec<String>;
    /// The catalog (workspace groups, storage locations).
    fn catalog(&self) -> &Catalog;
    /// The configured storage locations (regions).
    fn locations(&self) -> Vec<String>;
    /// Calls an environment endpoint on environment `env_id` as an operator holding `right` in
    /// its account (checked).
    fn env(&self, env_id: &str, right: &str, path: &str, params: Vec<(String, String)>) -> Result<Value>;
    /// A new random password.
    fn new_password(&self) -> String;
    /// The stored form (a slow salted hash) of a password, after checking its length.
    fn hash_password(&self, password: &str) -> Result<String>;
    /// Makes `hash` the password of the environment's admin user (created if it has none).
    fn set_admin_hash(&self, env_id: &str, hash: &str) -> Result<()>;
}

/// A 400 naming a field.
pub fn bad(field: &str, reason: impl Into<String>) -> crate::Error {
    EngineError::bad_parameter(field, reason).into()
}

/// A 404 for an id the caller cannot see.
pub fn unknown(what: &str, id: &str) -> crate::Error {
    EngineError::UnknownEnvironment(format!("{id} (no {what} with this id in your organization)")).into()
}

/// An m1 id (32 hex digits) as the seeds' hyphenated UUID.
pub fn uuid(id: &str) -> String {
    if id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        format!("{}-{}-{}-{}-{}", &id[..8], &id[8..12], &id[12..16], &id[16..20], &id[20..])
    } else {
        id.to_string()
    }
}

/// A caller's id (hyphenated or not) as m1 keeps it.
pub fn m1_id(id: &str) -> String {
    let plain: String = id.chars().filter(|c| *c != '-').collect();
    if plain.len() == 32 && plain.bytes().all(|b| b.is_ascii_hexdigit()) {
        plain.to_ascii_lowercase()
    } else {
        id.to_string()
    }
}

/// Epoch ms as the seeds' ISO-8601 time, to the second (`2023-09-18T09:56:56Z`).
pub fn iso(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map_or_else(|| ms.to_string(), |t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
}

/// Checks a body against fields: present fields have their type, required ones are there, and
/// nothing else is (a field without meaning anywhere would otherwise be silently dropped).
pub fn check_body(fields: &[Field], body: &Value) -> Result<()> {
    let Some(obj) = body.as_object() else {
        return Err(bad("body", "must be a JSON object"));
    };
    check_object(fields, obj, "")
}

fn check_object(fields: &[Field], obj: &Map<String, Value>, prefix: &str) -> Result<()> {
    for (k, v) in obj {
        let Some(field) = fields.iter().find(|f| f.name == k) else {
            let known: Vec<&str> = fields.iter().map(|f| f.name).collect();
            return Err(bad(
                &format!("{prefix}{k}"),
                format!("is not a field here; the fields are {}", known.join(", ")),
            ));
        };
        if !v.is_null() {
            check_value(field.ty, v, &format!("{prefix}{k}"))?;
        }
    }
    for f in fields.iter().filter(|f| f.required) {
        if obj.get(f.name).is_none_or(Value::is_null) {
            return Err(bad(&format!("{prefix}{}", f.name), "is required"));
        }
    }
    Ok(())
}

fn check_value(ty: Ty, v: &Value, name: &str) -> Result<()> {
    let wrong = |expected: &str| Err(bad(name, format!("must be {expected}, got {v}")));
    match ty {
        Ty::Str | Ty::Time if !v.is_string() => wrong("a string"),
        Ty::Uuid if v.as_str().is_none_or(|s| m1_id(s).len() != 32) => wrong("a UUID"),
        Ty::Enum(options) if !v.as_str().is_some_and(|s| options.contains(&s)) => {
            wrong(&format!("one of {}", options.join(", ")))
        }
        Ty::Int if !(v.is_i64() || v.is_u64()) => wrong("a whole number"),
        Ty::Num if !v.is_number() => wrong("a number"),
        Ty::Bool if !v.is_boolean() => wrong("true or false"),
        Ty::Strs => match v.as_array() {
            Some(items) if items.iter().all(Value::is_string) => Ok(()),
            _ => wrong("an array of strings"),
        },
        Ty::Obj(fields) => match v.as_object() {
            Some(o) => check_object(fields, o, &format!("{name}.")),
            None => wrong("an object"),
        },
        Ty::Objs(fields) => match v.as_array() {
            Some(items) => {
                for (i, item) in items.iter().enumerate() {
                    match item.as_object() {
                        Some(o) => check_object(fields, o, &format!("{name}[{i}]."))?,
                        None => return Err(bad(&format!("{name}[{i}]"), "must be an object")),
                    }
                }
                Ok(())
            }
            None => wrong("an array of objects"),
        },
        _ => Ok(()),
    }
}

/// The route for `method` and `path`, with its path parameters; `Err` with the verbs the path
/// takes when only the verb is wrong.
pub fn route(
    method: &str,
    path: &str,
) -> std::result::Result<(&'static Route, BTreeMap<String, String>), Vec<&'static str>> {
    let mut verbs = Vec::new();
    for r in ROUTES {
        if let Some(params) = matches(r.path, path) {
            if r.method == method {
                return Ok((r, params));
            }
            verbs.push(r.method);
        }
    }
    Err(verbs)
}

/// Path parameters of `path` under `template`; `{path}` takes the rest (and may be empty).
fn matches(template: &str, path: &str) -> Option<BTreeMap<String, String>> {
    let mut params = BTreeMap::new();
    let mut rest = path;
    let mut parts = template.split('/').peekable();
    while let Some(t) = parts.next() {
        if t == "{path}" {
            params.insert("path".to_string(), rest.to_string());
            return Some(params);
        }
        let (seg, tail) = match rest.split_once('/') {
            Some((s, r)) => (s, Some(r)),
            None => (rest, None),
        };
        if let Some(name) = t.strip_prefix('{').and_then(|t| t.strip_suffix('}')) {
            if seg.is_empty() {
                return None;
            }
            params.insert(name.to_string(), seg.to_string());
        } else if t != seg {
            return None;
        }
        match (tail, parts.peek()) {
            (Some(r), Some(_)) => rest = r,
            (None, None) => return Some(params),
            // `/v1/stage/{id}/fs/` with the folder part empty.
            (Some(""), None) => return Some(params),
            (None, Some(&"{path}")) => {
                params.insert("path".to_string(), String::new());
                return Some(params);
            }
            _ => return None,
        }
    }
    Some(params)
}

const CH: &str = "ClickHouse Cloud services (seed 004)";
const S2: &str = "SingleStore management (seed 003)";

use Ty::{Bool, Int, Num, Obj, Objs, Str, Strs, Time, Uuid};

const IP_ACCESS: &[Field] =
    &[must("source", Str, "an address or CIDR range, IPv4 or IPv6"), f("description", Str, "what it is for")];
const TIERS: &[&str] = &["development", "production", "dedicated_high_mem", "dedicated_high_cpu", "dedicated_standard"];
const ENDPOINT: &[Field] = &[
    f("protocol", Str, "http"),
    f("host", Str, "the host to call"),
    f("port", Int, "its port"),
    f("path", Str, "the path prefix, when addressed by path"),
];
const SERVICE: &[Field] = &[
    f("id", Uuid, "the environment's id"),
    f("name", Str, "the environment's name"),
    f("provider", Str, "recorded"),
    f("region", Str, "the storage location (region) asked for"),
    f(
        "state",
        Ty::Enum(&["running", "stopped", "idle", "starting", "stopping", "suspended"]),
        "what it is in this process",
    ),
    f("endpoints", Objs(ENDPOINT), "where m1 serve answers it"),
    f("tier", Str, "recorded"),
    f("minTotalMemoryGb", Num, "lower memory bound"),
    f("maxTotalMemoryGb", Num, "upper memory bound"),
    f("idleScaling", Bool, "whether it suspends itself when idle"),
    f("idleTimeoutMinutes", Num, "minutes without requests before it does"),
    f("ipAccessList", Objs(IP_ACCESS), "who may connect"),
    f("createdAt", Time, "creation time"),
];
const SCALING: &[Field] = &[
    f("minTotalMemoryGb", Num, "a multiple of 12, at least 24"),
    f("maxTotalMemoryGb", Num, "a multiple of 12, at most 720"),
    f("idleScaling", Bool, "suspend when idle"),
    f("idleTimeoutMinutes", Num, "at least 5"),
];
const SERVICE_CREATE: &[Field] = &[
    must("name", Str, "the new environment's name"),
    f("provider", Str, "recorded"),
    f("region", Str, "a region id or storage location from GET /v1/regions (default: the first)"),
    f("tier", Ty::Enum(TIERS), "recorded"),
    f("ipAccessList", Objs(IP_ACCESS), "who may connect (absent: anyone)"),
    f("minTotalMemoryGb", Num, "a multiple of 12, at least 24"),
    f("maxTotalMemoryGb", Num, "a multiple of 12, at most 720"),
    f("idleScaling", Bool, "suspend when idle"),
    f("idleTimeoutMinutes", Num, "at least 5"),
    f("backupId", Str, "start from this backup (of a service of the organization)"),
];
const SERVICE_PATCH: &[Field] =
    &[f("name", Str, "a new name"), f("ipAccessList", Ty::Any, "the new list, or {\"add\": [...], \"remove\": [...]}")];
const STATE: &[Field] = &[must("command", Ty::Enum(&["start", "stop"]), "start or stop")];
const PASSWORD_BODY: &[Field] = &[
    f("newPasswordHash", Str, "not taken: m1 keeps Argon2 hashes only"),
    f("newDoubleSha1Hash", Str, "not taken: no MySQL protocol here"),
];
const PASSWORD: &[Field] = &[f("password", Str, "the new password")];
const CREATED: &[Field] = &[f("service", Obj(SERVICE), "the new service"), f("password", Str, "its admin password")];
const BACKUP: &[Field] = &[
    f("id", Str, "the backup's id"),
    f("status", Ty::Enum(&["done", "error", "in_progress"]), "its state"),
    f("serviceId", Uuid, "the environment it was taken of"),
    f("startedAt", Time, "when it started"),
    f("finishedAt", Time, "when it finished"),
];

const ORG: &[Field] = &[
    f("orgID", Str, "the ops account's id"),
    f("name", Str, "its name"),
    f("firewallRanges", Strs, "who may call the management API for it"),
];
const REGION: &[Field] = &[
    f("regionID", Uuid, "an id of the storage location"),
    f("region", Str, "the location: a directory or object-store URL"),
    f("provider", Str, "where it is (local, AWS, GCP, Azure)"),
];
const UPDATE_WINDOW: &[Field] = &[must("day", Num, "0-6 from Sunday"), must("hour", Num, "0-23 UTC")];
const GROUP: &[Field] = &[
    f("workspaceGroupID", Uuid, "its id"),
    f("name", Str, "its name"),
    f("regionID", Uuid, "its storage location"),
    f("state", Ty::Enum(&["ACTIVE", "PENDING", "FAILED", "TERMINATED"]), "its state"),
    f("firewallRanges", Strs, "inbound ranges of its workspaces (empty: none)"),
    f("allowAllTraffic", Bool, "everyone may connect"),
    f("createdAt", Time, "creation time"),
    f("expiresAt", Str, "recorded"),
    f("terminatedAt", Time, "when it was terminated"),
    f("updateWindow", Obj(UPDATE_WINDOW), "recorded"),
];
const GROUP_CREATE: &[Field] = &[
    must("name", Str, "its name"),
    must("regionID", Uuid, "a region from GET /v1/regions"),
    must("firewallRanges", Strs, "inbound CIDR ranges (empty: none)"),
    f("adminPassword", Str, "the admin password of its workspaces (default: generated)"),
    f("allowAllTraffic", Bool, "everyone may connect"),
    f("backupBucketKMSKeyID", Str, "not applicable: recorded"),
    f("dataBucketKMSKeyID", Str, "not applicable: recorded"),
    f("expiresAt", Str, "recorded"),
    f("smartDR", Bool, "recorded; storage DR is set up per workspace"),
    f("updateWindow", Obj(UPDATE_WINDOW), "recorded"),
];
const GROUP_UPDATE: &[Field] = &[
    f("name", Str, "a new name"),
    f("adminPassword", Str, "a new admin password for its workspaces"),
    f("allowAllTraffic", Bool, "everyone may connect"),
    f("expiresAt", Str, "recorded"),
    f("firewallRanges", Strs, "inbound CIDR ranges"),
    f("updateWindow", Obj(UPDATE_WINDOW), "recorded"),
];
const GROUP_ID: &[Field] =
    &[must("workspaceGroupID", Uuid, "the group's id"), f("adminPassword", Str, "when generated")];
const AUTO_SUSPEND: &[Field] = &[
    f(
        "suspendType",
        Ty::Enum(&["IDLE", "SCHEDULED", "DISABLED"]),
        "IDLE suspends after suspendAfterSeconds without requests",
    ),
    f("suspendAfterSeconds", Num, "seconds (at least 300)"),
];
const WORKSPACE: &[Field] = &[
    f("workspaceID", Uuid, "the environment's id"),
    f("workspaceGroupID", Uuid, "its group"),
    f("name", Str, "its name"),
    f("size", Str, "recorded"),
    f("state", Ty::Enum(&["ACTIVE", "PENDING", "SUSPENDED", "FAILED", "TERMINATED"]), "what it is"),
    f("endpoint", Str, "where m1 serve answers it"),
    f("createdAt", Time, "creation time"),
    f("lastResumedAt", Time, "when it was last resumed"),
    f("cacheConfig", Num, "recorded"),
    f("deploymentType", Str, "recorded"),
    f("autoSuspend", Ty::Any, "idle suspension settings"),
];
const WORKSPACE_CREATE: &[Field] = &[
    must("name", Str, "its name"),
    must("workspaceGroupID", Uuid, "its group"),
    f("size", Str, "recorded (default S-00)"),
    f("autoSuspend", Obj(AUTO_SUSPEND), "idle suspension"),
    f("cacheConfig", Num, "1, 2 or 4 (recorded)"),
    f("enableKai", Bool, "not applicable (no MongoDB API here): false only"),
];
const WORKSPACE_UPDATE: &[Field] = &[
    f("size", Str, "recorded"),
    f("autoSuspend", Obj(AUTO_SUSPEND), "idle suspension"),
    f("cacheConfig", Num, "1, 2 or 4 (recorded)"),
    f("deploymentType", Ty::Enum(&["PRODUCTION", "NON-PRODUCTION"]), "recorded"),
];
const WORKSPACE_ID: &[Field] = &[must("workspaceID", Uuid, "the workspace's id")];
const RESUME: &[Field] = &[f("disableAutoSuspend", Bool, "turn idle suspension off")];
const CONNECTION: &[Field] = &[
    f("privateConnectionID", Uuid, "its id"),
    f("workspaceGroupID", Uuid, "its group"),
    f("workspaceID", Uuid, "its workspace"),
    f("type", Ty::Enum(&["INBOUND", "OUTBOUND"]), "recorded"),
    f("status", Ty::Enum(&["PENDING", "ACTIVE", "DELETED"]), "recorded, changes nothing"),
    f("allowList", Str, "recorded"),
    f("serviceName", Str, "recorded"),
    f("outboundAllowList", Str, "recorded"),
    f("createdAt", Str, "creation time"),
    f("updatedAt", Str, "last change"),
    f("activeAt", Str, "recorded"),
    f("deletedAt", Str, "recorded"),
];
const CONNECTION_CREATE: &[Field] = &[
    must("workspaceGroupID", Uuid, "its group"),
    f("workspaceID", Uuid, "its workspace"),
    f("type", Ty::Enum(&["INBOUND", "OUTBOUND"]), "recorded"),
    f("allowList", Str, "recorded"),
    f("kaiEndpointID", Str, "recorded"),
    f("serviceName", Str, "recorded"),
];
const CONNECTION_UPDATE: &[Field] = &[f("allowList", Str, "recorded")];
const CONNECTION_ID: &[Field] = &[must("privateConnectionID", Uuid, "its id")];
const KAI: &[Field] = &[f("serviceName", Str, "empty: m1 has no MongoDB API")];
const OUTBOUND: &[Field] = &[f("outboundAllowList", Str, "'*' when publish may read the internet (env/outbound)")];
const DR_SETUP: &[Field] = &[
    must("regionID", Uuid, "the secondary region (a storage location)"),
    must("databaseNames", Strs, "the workspaces (environments) to replicate, by name; all of the group's when empty"),
];
const REPLICATED: &[Field] = &[
    f("databaseName", Str, "the environment"),
    f("region", Str, "its replica's location"),
    f("duplicationState", Ty::Enum(&["Pending", "Active", "Inactive", "Error"]), "replication state"),
];
const DR_COMPUTE: &[Field] = &[
    f("storageDRType", Ty::Enum(&["Failover", "Failback", "PreProvisionStart", "PreProvisionStop"]), "last operation"),
    f("storageDRState", Ty::Enum(&["Active", "Completed", "Failed", "Expired", "Canceled"]), "its state"),
    f("completedAttachments", Int, "environments done"),
    f("completedWorkspaces", Int, "environments done"),
    f("totalAttachments", Int, "environments in all"),
    f("totalWorkspaces", Int, "environments in all"),
];
const DR_STATUS: &[Field] =
    &[f("compute", Obj(DR_COMPUTE), "the last DR operation"), f("storage", Objs(REPLICATED), "each environment")];
const DR_DONE: &[Field] = &[f("databases", Ty::Any, "what each environment answered")];
const STAGE_ENTRY: &[Field] = &[
    f("name", Str, "its name"),
    f("path", Str, "its path in the stage"),
    f("type", Ty::Any, "directory, json or empty"),
    f("size", Int, "bytes"),
    f("created", Str, "creation time"),
    f("last_modified", Str, "last change"),
    f("writable", Bool, "always true"),
    f("format", Ty::Any, "json"),
    f("mimetype", Str, "its media type"),
    f("content", Ty::Any, "a folder's entries"),
];
const STAGE_DONE: &[Field] = &[f("name", Str, "its name"), f("path", Str, "its path"), f("size", Int, "bytes written")];
const STAGE_MOVE: &[Field] = &[must("newPath", Str, "where it goes")];
const USAGE_ITEM: &[Field] = &[
    f("resourceId", Str, "the environment's id"),
    f("resourceName", Str, "its name"),
    f("resourceType", Str, "workspace"),
    f("ownerId", Str, "the organization"),
    f("startTime", Str, "start of the period"),
    f("endTime", Str, "end of the period"),
    f("value", Str, "the amount"),
];
const USAGE: &[Field] = &[
    f("description", Str, "what the unit is"),
    f("metric", Str, "ComputeCredit or StorageAvgByte"),
    f("usage", Objs(USAGE_ITEM), "by environment and period"),
];
const BILLING: &[Field] = &[f("billingUsage", Objs(USAGE), "one entry per metric")];

const FIELDS_Q: QueryParam =
    QueryParam { name: "fields", ty: Str, required: false, help: "comma-separated fields to keep" };
const TERMINATED_Q: QueryParam =
    QueryParam { name: "includeTerminated", ty: Bool, required: false, help: "also terminated ones" };

#[allow(clippy::too_many_arguments)]
const fn r(
    method: &'static str,
    path: &'static str,
    tag: &'static str,
    right: &'static str,
    body: Option<&'static [Field]>,
    reply: Reply,
    summary: &'static str,
    handler: fn(&dyn Backend, &Request) -> Result<Value>,
) -> Route {
    Route { method, path, summary, tag, right, query: &[], body, reply, handler: Handler::Json(handler) }
}

use clickhouse as ch;
use singlestore as ss;

/// Every operation of the management API.
#[rustfmt::skip]
pub static ROUTES: &[Route] = &[
    // --- ClickHouse Cloud: services (seed 004) ---
    r("GET", "/v1/organizations/{organizationId}/services", CH, "view", None, Reply::List(SERVICE),
      "List of organization services", ch::list),
    r("POST", "/v1/organizations/{organizationId}/services", CH, "manage", Some(SERVICE_CREATE), Reply::Obj(CREATED),
      "Create new service (from a backup with backupId)", ch::create),
    r("GET", "/v1/organizations/{organizationId}/services/{serviceId}", CH, "view", None, Reply::Obj(SERVICE),
      "Get service details", ch::get),
    r("PATCH", "/v1/organizations/{organizationId}/services/{serviceId}", CH, "manage", Some(SERVICE_PATCH),
      Reply::Obj(SERVICE), "Update service basic details", ch::update),
    r("DELETE", "/v1/organizations/{organizationId}/services/{serviceId}", CH, "manage", None, Reply::Empty,
      "Delete service (it must be stopped)", ch::delete),
    r("PATCH", "/v1/organizations/{organizationId}/services/{serviceId}/state", CH, "manage", Some(STATE),
      Reply::Obj(SERVICE), "Update service state (start, stop)", ch::state),
    r("PATCH", "/v1/organizations/{organizationId}/services/{serviceId}/scaling", CH, "manage", Some(SCALING),
      Reply::Obj(SERVICE), "Update service auto scaling settings", ch::scaling),
    r("PATCH", "/v1/organizations/{organizationId}/services/{serviceId}/password", CH, "admin", Some(PASSWORD_BODY),
      Reply::Obj(PASSWORD), "Update service password (the environment's admin user)", ch::password),
    r("GET", "/v1/organizations/{organizationId}/services/{serviceId}/backups", CH, "view", None, Reply::List(BACKUP),
      "List of service backups, newest first", ch::backups),
    r("GET", "/v1/organizations/{organizationId}/services/{serviceId}/backups/{backupId}", CH, "view", None,
      Reply::Obj(BACKUP), "Get backup details", ch::backup),
    // --- SingleStore: organization, regions, billing (seed 003) ---
    r("GET", "/v1/organizations/current", S2, "view", None, Reply::Obj(ORG),
      "Gets information about the current organization (your ops account)", ss::organization),
    Route { query: &[FIELDS_Q],
            ..r("GET", "/v1/regions", S2, "view", None, Reply::List(REGION),
                "Lists the regions (storage locations) workspaces can be created in", ss::regions) },
    Route { query: &[
                QueryParam { name: "metric", ty: Ty::Enum(&["ComputeCredit", "StorageAvgByte"]), required: false,
                             help: "default: both" },
                QueryParam { name: "startTime", ty: Time, required: true, help: "UTC ISO-8601 start" },
                QueryParam { name: "endTime", ty: Time, required: true, help: "UTC ISO-8601 end" },
                QueryParam { name: "aggregateBy", ty: Ty::Enum(&["hour", "day", "month"]), required: false,
                             help: "default hour" }],
            ..r("GET", "/v1/billing/usage", S2, "view", None, Reply::Obj(BILLING),
                "Lists the compute and storage usage of the organization", ss::billing_usage) },
    // --- SingleStore: workspace groups ---
    Route { query: &[TERMINATED_Q, FIELDS_Q],
            ..r("GET", "/v1/workspaceGroups", S2, "view", None, Reply::List(GROUP),
                "Lists the workspace groups", ss::groups) },
    r("POST", "/v1/workspaceGroups", S2, "manage", Some(GROUP_CREATE), Reply::Obj(GROUP_ID),
      "Creates a new workspace group", ss::group_create),
    Route { query: &[FIELDS_Q],
            ..r("GET", "/v1/workspaceGroups/{workspaceGroupID}", S2, "view", None, Reply::Obj(GROUP),
                "Gets information about a workspace group", ss::group_get) },
    r("PATCH", "/v1/workspaceGroups/{workspaceGroupID}", S2, "manage", Some(GROUP_UPDATE), Reply::Obj(GROUP_ID),
      "Updates a workspace group", ss::group_update),
    Route { query: &[QueryParam { name: "force", ty: Bool, required: false, help: "also terminate its workspaces" }],
            ..r("DELETE", "/v1/workspaceGroups/{workspaceGroupID}", S2, "manage", None, Reply::Obj(GROUP_ID),
                "Terminates a workspace group", ss::group_delete) },
    Route { query: &[FIELDS_Q],
            ..r("GET", "/v1/workspaceGroups/{workspaceGroupID}/privateConnections", S2, "view", None,
                Reply::List(CONNECTION), "Private connections of a workspace group (recorded only)",
                ss::group_connections) },
    r("PATCH", "/v1/workspaceGroups/{workspaceGroupID}/storage/DR/failback", S2, "admin", None, Reply::Obj(DR_DONE),
      "Starts failback to the primary region", ss::group_dr_failback),
    r("PATCH", "/v1/workspaceGroups/{workspaceGroupID}/storage/DR/failover", S2, "admin", None, Reply::Obj(DR_DONE),
      "Starts failover to the secondary region", ss::group_dr_failover),
    Route { query: &[FIELDS_Q],
            ..r("GET", "/v1/workspaceGroups/{workspaceGroupID}/storage/DR/regions", S2, "view", None,
                Reply::List(REGION), "Regions a group can use for disaster recovery", ss::dr_regions) },
    r("POST", "/v1/workspaceGroups/{workspaceGroupID}/storage/DR/setup", S2, "admin", Some(DR_SETUP),
      Reply::Obj(DR_DONE), "Sets up Storage DR for the workspace group", ss::group_dr_setup),
    r("PATCH", "/v1/workspaceGroups/{workspaceGroupID}/storage/DR/startPreProvision", S2, "admin", None,
      Reply::Obj(DR_DONE), "Start pre-provisioning from primary region", ss::group_dr_start),
    r("GET", "/v1/workspaceGroups/{workspaceGroupID}/storage/DR/status", S2, "view", None, Reply::Obj(DR_STATUS),
      "Storage DR status of the workspace group", ss::group_dr_status),
    r("PATCH", "/v1/workspaceGroups/{workspaceGroupID}/storage/DR/stopPreProvision", S2, "admin", None,
      Reply::Obj(DR_DONE), "Stops pre-provisioning from primary region", ss::group_dr_stop),
    // --- SingleStore: workspaces ---
    Route { query: &[QueryParam { name: "workspaceGroupID", ty: Uuid, required: true, help: "the group" },
                     TERMINATED_Q, FIELDS_Q],
            ..r("GET", "/v1/workspaces", S2, "view", None, Reply::List(WORKSPACE), "Lists the workspaces of a group",
                ss::workspaces) },
    r("POST", "/v1/workspaces", S2, "manage", Some(WORKSPACE_CREATE), Reply::Obj(WORKSPACE_ID),
      "Creates a new workspace (an environment)", ss::workspace_create),
    Route { query: &[FIELDS_Q],
            ..r("GET", "/v1/workspaces/{workspaceID}", S2, "view", None, Reply::Obj(WORKSPACE),
                "Gets information about a workspace", ss::workspace_get) },
    r("PATCH", "/v1/workspaces/{workspaceID}", S2, "manage", Some(WORKSPACE_UPDATE), Reply::Obj(WORKSPACE_ID),
      "Updates a workspace", ss::workspace_update),
    r("DELETE", "/v1/workspaces/{workspaceID}", S2, "manage", None, Reply::Obj(WORKSPACE_ID),
      "Terminates a workspace (deletes the environment)", ss::workspace_delete),
    Route { query: &[FIELDS_Q],
            ..r("GET", "/v1/workspaces/{workspaceID}/privateConnections", S2, "view", None, Reply::List(CONNECTION),
                "Private connections of a workspace (recorded only)", ss::workspace_connections) },
    r("GET", "/v1/workspaces/{workspaceID}/privateConnections/kai", S2, "view", None, Reply::Obj(KAI),
      "Kai connection details (not applicable: no MongoDB API)", ss::kai),
    r("GET", "/v1/workspaces/{workspaceID}/privateConnections/outboundAllowList", S2, "view", None,
      Reply::List(OUTBOUND), "The outbound allow list (env/outbound)", ss::outbound),
    r("POST", "/v1/workspaces/{workspaceID}/resume", S2, "manage", Some(RESUME), Reply::Obj(WORKSPACE_ID),
      "Resumes a workspace", ss::resume),
    r("POST", "/v1/workspaces/{workspaceID}/suspend", S2, "manage", None, Reply::Obj(WORKSPACE_ID),
      "Suspends a workspace", ss::suspend),
    r("PATCH", "/v1/workspaces/{workspaceID}/storage/DR/failback", S2, "admin", None, Reply::Obj(DR_DONE),
      "Starts failback to the primary region", ss::ws_dr_failback),
    r("PATCH", "/v1/workspaces/{workspaceID}/storage/DR/failover", S2, "admin", None, Reply::Obj(DR_DONE),
      "Starts failover to the secondary region", ss::ws_dr_failover),
    Route { query: &[FIELDS_Q],
            ..r("GET", "/v1/workspaces/{workspaceID}/storage/DR/regions", S2, "view", None, Reply::List(REGION),
                "Regions a workspace's group can use for disaster recovery", ss::ws_dr_regions) },
    r("POST", "/v1/workspaces/{workspaceID}/storage/DR/setup", S2, "admin", Some(DR_SETUP), Reply::Obj(DR_DONE),
      "Sets up Storage DR for the group of the workspace", ss::ws_dr_setup),
    r("PATCH", "/v1/workspaces/{workspaceID}/storage/DR/startPreProvision", S2, "admin", None, Reply::Obj(DR_DONE),
      "Start pre-provisioning from primary region", ss::ws_dr_start),
    r("GET", "/v1/workspaces/{workspaceID}/storage/DR/status", S2, "view", None, Reply::Obj(DR_STATUS),
      "Storage DR status of the workspace's group", ss::ws_dr_status),
    r("PATCH", "/v1/workspaces/{workspaceID}/storage/DR/stopPreProvision", S2, "admin", None, Reply::Obj(DR_DONE),
      "Stops pre-provisioning from primary region", ss::ws_dr_stop),
    // --- SingleStore: private connections (recorded; m1 serve binds where its operator says) ---
    r("POST", "/v1/privateConnections", S2, "manage", Some(CONNECTION_CREATE), Reply::Obj(CONNECTION_ID),
      "Creates a private connection (recorded only)", ss::connection_create),
    Route { query: &[FIELDS_Q],
            ..r("GET", "/v1/privateConnections/{connectionID}", S2, "view", None, Reply::Obj(CONNECTION),
                "Gets a private connection", ss::connection_get) },
    r("PATCH", "/v1/privateConnections/{connectionID}", S2, "manage", Some(CONNECTION_UPDATE),
      Reply::Obj(CONNECTION_ID), "Updates a private connection", ss::connection_update),
    r("DELETE", "/v1/privateConnections/{connectionID}", S2, "manage", None, Reply::Obj(CONNECTION_ID),
      "Deletes a private connection", ss::connection_delete),
    // --- SingleStore: stage (an environment's file area; the id is a workspace's) ---
    Route { method: "GET", path: "/v1/stage/{workspaceGroupID}/fs/", summary: "Lists the stage's root folder",
            tag: S2, right: "view", body: None, reply: Reply::FileOrObj(STAGE_ENTRY),
            handler: Handler::Stage(StageOp::Get), query: &[] },
    Route { method: "GET", path: "/v1/stage/{workspaceGroupID}/fs/{path}", summary:
            "Lists a folder (path ending in /) or downloads a file (metadata=true: describes it)", tag: S2,
            right: "view", body: None, reply: Reply::FileOrObj(STAGE_ENTRY), handler: Handler::Stage(StageOp::Get),
            query: &[QueryParam { name: "metadata", ty: Bool, required: false, help: "describe a file" }] },
    Route { method: "PUT", path: "/v1/stage/{workspaceGroupID}/fs/{path}", summary:
            "Uploads a file (raw or multipart field 'file'), or makes a folder (path ending in /)", tag: S2,
            right: "manage", body: None, reply: Reply::Obj(STAGE_DONE), handler: Handler::Stage(StageOp::Put),
            query: &[] },
    Route { method: "PATCH", path: "/v1/stage/{workspaceGroupID}/fs/{path}", summary: "Moves or renames a file or folder",
            tag: S2, right: "manage", body: Some(STAGE_MOVE), reply: Reply::Obj(STAGE_DONE),
            handler: Handler::Stage(StageOp::Move), query: &[] },
    Route { method: "DELETE", path: "/v1/stage/{workspaceGroupID}/fs/{path}", summary:
            "Deletes a file, or a folder (path ending in /)", tag: S2, right: "manage", body: None,
            reply: Reply::Obj(STAGE_DONE), handler: Handler::Stage(StageOp::Delete), query: &[] },
    // --- SingleStore: metrics of a workspace group ---
    Route { method: "GET", path: "/v2/organizations/{organizationID}/workspaceGroups/{workspaceGroupID}/metrics",
            summary: "OpenMetrics of the group's workspaces", tag: S2, right: "view", body: None, reply: Reply::Text,
            handler: Handler::Metrics, query: &[] },
];

/// The environment ids of a workspace group's workspaces, as the caller sees them.
pub fn group_members(b: &dyn Backend, group: &str, org: &Org) -> Result<Vec<Value>> {
    let envs = b.ops("env/list", vec![("account".into(), org.id.clone())])?;
    Ok(envs
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e["service"]["group"].as_str() == Some(group))
        .collect())
}

/// Keeps only `fields` (comma separated) of each answer object, when the caller asked for some.
pub fn select_fields(req: &Request, v: Value) -> Value {
    let Some(wanted) = req.query.get("fields").filter(|f| !f.trim().is_empty()) else { return v };
    let keep: Vec<&str> = wanted.split(',').map(str::trim).collect();
    let pick = |v: Value| match v {
        Value::Object(o) => Value::Object(o.into_iter().filter(|(k, _)| keep.contains(&k.as_str())).collect()),
        other => other,
    };
    match v {
        Value::Array(items) => Value::Array(items.into_iter().map(pick).collect()),
        other => pick(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_match_their_templates() {
        let (r, p) = route("GET", "/v1/organizations/o1/services/s1").unwrap();
        assert_eq!(
            (r.path, p["organizationId"].as_str(), p["serviceId"].as_str()),
            ("/v1/organizations/{organizationId}/services/{serviceId}", "o1", "s1")
        );
        let (r, p) = route("GET", "/v1/stage/g/fs/a/b/c.csv").unwrap();
        assert_eq!((r.handler_is_stage(), p["path"].as_str()), (true, "a/b/c.csv"));
        let (r, p) = route("GET", "/v1/stage/g/fs/").unwrap();
        assert_eq!((r.path, p.get("path")), ("/v1/stage/{workspaceGroupID}/fs/", None));
        let (_, p) = route("DELETE", "/v1/stage/g/fs/dir/").unwrap();
        assert_eq!(p["path"], "dir/");
        assert!(route("GET", "/v1/organizations/current").unwrap().0.summary.contains("current"));
        assert_eq!(route("PUT", "/v1/workspaces").unwrap_err(), vec!["GET", "POST"]);
        assert!(route("GET", "/v1/nope").unwrap_err().is_empty());
        let mut seen = std::collections::HashSet::new();
        for r in ROUTES {
            assert!(seen.insert((r.method, r.path)), "{r:?} twice");
        }
    }

    impl Route {
        fn handler_is_stage(&self) -> bool {
            matches!(self.handler, Handler::Stage(_))
        }
    }

    #[test]
    fn bodies_are_checked_field_by_field() {
        check_body(SERVICE_CREATE, &serde_json::json!({"name": "a", "tier": "production", "idleScaling": true}))
            .unwrap();
        let err = |body: Value| check_body(SERVICE_CREATE, &body).unwrap_err().to_string();
        assert!(err(serde_json::json!({"tier": "production"})).contains("'name'"));
        assert!(err(serde_json::json!({"name": 1})).contains("'name'"));
        assert!(err(serde_json::json!({"name": "a", "tier": "huge"})).contains("'tier'"));
        assert!(err(serde_json::json!({"name": "a", "idleScaling": "yes"})).contains("'idleScaling'"));
        assert!(err(serde_json::json!({"name": "a", "bogus": 1})).contains("'bogus'"));
        assert!(
            err(serde_json::json!({"name": "a", "ipAccessList": [{"description": "x"}]}))
                .contains("ipAccessList[0].source")
        );
        assert!(err(serde_json::json!([1])).contains("object"));
    }
}
