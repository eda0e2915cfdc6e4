//! The OpenAPI 3 document of the whole HTTP API (`/openapi.json`), written from the endpoint
//! table ([`super::ENDPOINTS`]) and the management routes ([`super::v1::ROUTES`]), so it cannot
//! say anything the server does not do.

use serde_json::{Map, Value, json};

use super::v1::{self, Field, Reply, Ty};
use super::{Access, Answer, ENDPOINTS, Endpoint, Kind, Scope};

/// Statuses any operation may answer besides its success, with the error body.
const ERRORS: &[(u16, &str)] = &[
    (400, "bad input: the message names the parameter or field"),
    (401, "no token, or one that is unknown, expired or bound to another address"),
    (403, "the token's user lacks the right, or the caller's address is not allowed"),
    (404, "no such environment, endpoint, id or file"),
    (405, "the path takes other verbs"),
    (408, "the request came too slowly"),
    (409, "it exists already, or conflicts with the state (a stopped environment)"),
    (413, "the body or upload is over the limit"),
    (429, "too many failed logins: retry after Retry-After seconds"),
    (503, "too much work at once: retry"),
];

fn error_responses(out: &mut Map<String, Value>) {
    for (status, why) in ERRORS {
        out.insert(
            status.to_string(),
            json!({"description": why, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}),
        );
    }
}

fn kind_schema(kind: Kind) -> Value {
    match kind {
        Kind::Int => json!({"type": "integer"}),
        Kind::Bool => json!({"type": "boolean"}),
        // JSON-valued parameters travel as text (the seeds' convention), as do key lists.
        Kind::Json => json!({"type": "string", "description": "JSON text"}),
        Kind::Keys => json!({"type": "string", "description": "keys: 7, 1,2,3 or [1,2,3]"}),
        Kind::List => json!({"type": "string", "description": "a list: a,b or [\"a\",\"b\"]"}),
        Kind::Text => json!({"type": "string"}),
    }
}

fn ty_schema(ty: Ty) -> Value {
    match ty {
        Ty::Str => json!({"type": "string"}),
        Ty::Uuid => json!({"type": "string", "format": "uuid"}),
        Ty::Time => json!({"type": "string", "format": "date-time"}),
        Ty::Enum(options) => json!({"type": "string", "enum": options}),
        Ty::Int => json!({"type": "integer"}),
        Ty::Num => json!({"type": "number"}),
        Ty::Bool => json!({"type": "boolean"}),
        Ty::Strs => json!({"type": "array", "items": {"type": "string"}}),
        Ty::Obj(fields) => object_schema(fields, false),
        Ty::Objs(fields) => json!({"type": "array", "items": object_schema(fields, false)}),
        Ty::Any => json!({}),
    }
}

/// An object of fields: in answers every field may be null (what is not set is reported as
/// null, never left out silently); in requests the required ones are required.
fn object_schema(fields: &[Field], request: bool) -> Value {
    let mut props = Map::new();
    for f in fields {
        let mut s = ty_schema(f.ty);
        if let Some(o) = s.as_object_mut() {
            o.insert("description".into(), json!(f.help));
            if !request && !o.is_empty() {
                o.insert("nullable".into(), json!(true));
            }
        }
        props.insert(f.name.into(), s);
    }
    let mut schema = json!({"type": "object", "properties": props});
    let required: Vec<&str> = fields.iter().filter(|f| f.required).map(|f| f.name).collect();
    if request {
        // A field the route does not define is refused (400), so none may be generated.
        schema["additionalProperties"] = json!(false);
        if !required.is_empty() {
            schema["required"] = json!(required);
        }
    }
    schema
}

fn env_operation(e: &Endpoint, verb: &str, scope_param: Option<&Value>) -> Value {
    let mut params: Vec<Value> = Vec::new();
    if let Some(p) = scope_param {
        params.push(p.clone());
    }
    if e.path.ends_with("{name}") {
        params.push(json!({"name": "name", "in": "path", "required": true, "schema": {"type": "string"},
                           "description": "the system parameter"}));
    }
    let fields = || {
        let mut props = Map::new();
        for p in e.params {
            let mut s = kind_schema(p.kind);
            s["description"] = json!(p.help);
            props.insert(p.name.into(), s);
        }
        let required: Vec<&str> = e.params.iter().filter(|p| p.required).map(|p| p.name).collect();
        let mut schema = json!({"type": "object", "properties": props});
        if !required.is_empty() {
            schema["required"] = json!(required);
        }
        schema
    };
    let mut op = json!({
        "summary": e.summary,
        "operationId": format!("{}:{verb}:{}", if e.scope == Scope::Ops { "ops" } else { "env" }, e.path),
        "tags": [if e.scope == Scope::Ops { "ops (seed 000)" } else { "environment (seeds 001, 002)" }],
    });
    if verb == "get" || e.takes_body {
        for p in e.params {
            params.push(json!({"name": p.name, "in": "query", "required": p.required, "schema": kind_schema(p.kind),
                               "description": p.help}));
        }
    } else if !e.params.is_empty() {
        op["requestBody"] = json!({"required": e.params.iter().any(|p| p.required),
                                   "content": {"application/x-www-form-urlencoded": {"schema": fields()}}});
    }
    if e.takes_body {
        op["requestBody"] =
            json!({"content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}});
    }
    op["parameters"] = Value::Array(params);
    if e.access != Access::Public {
        op["security"] = json!([{"token": []}, {"bearer": []}]);
    }
    let mut responses = Map::new();
    let ok = match e.answer {
        Answer::Json => json!({"description": "the answer", "content": {"application/json": {"schema": {}}}}),
        Answer::Empty | Answer::EmptyOrJson => {
            json!({"description": "done (no body; write with async=false answers its report)"})
        }
        Answer::Stream => json!({"description": "the answer, streamed", "content": {
            "application/json": {"schema": {}}, "text/csv": {"schema": {}},
            "application/octet-stream": {"schema": {}}}}),
    };
    responses.insert("200".into(), ok);
    if e.path == "stage/get" {
        responses.insert(
            "206".into(),
            json!({"description": "the bytes of a Range", "content": {"application/octet-stream": {"schema": {}}}}),
        );
    }
    error_responses(&mut responses);
    op["responses"] = Value::Object(responses);
    op
}

fn route_operation(r: &v1::Route) -> Value {
    let mut params = Vec::new();
    let mut rest = r.path;
    while let Some(start) = rest.find('{') {
        let end = rest[start..].find('}').map_or(rest.len(), |e| start + e);
        let name = &rest[start + 1..end];
        params.push(json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}));
        rest = &rest[end..];
    }
    for q in r.query {
        params.push(json!({"name": q.name, "in": "query", "required": q.required, "schema": ty_schema(q.ty),
                           "description": q.help}));
    }
    let mut op = json!({
        "summary": r.summary, "tags": [r.tag], "parameters": params,
        "operationId": format!("{} {}", r.method, r.path),
        "security": [{"bearer": []}, {"token": []}],
        "description": format!("Needs the ops right '{}' in the organization concerned.", r.right),
    });
    if let Some(fields) = r.body {
        op["requestBody"] =
            json!({"required": true, "content": {"application/json": {"schema": object_schema(fields, true)}}});
    }
    if matches!(r.handler, v1::Handler::Stage(v1::StageOp::Put)) {
        op["requestBody"] = json!({"content": {
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            "multipart/form-data": {"schema": {"type": "object", "properties": {"file": {"type": "string", "format": "binary"}}}}}});
    }
    let ok = match r.reply {
        Reply::Obj(fields) => {
            json!({"description": "OK", "content": {"application/json": {"schema": object_schema(fields, false)}}})
        }
        Reply::List(fields) => json!({"description": "OK", "content": {"application/json": {"schema":
            {"type": "array", "items": object_schema(fields, false)}}}}),
        Reply::Empty => json!({"description": "OK"}),
        Reply::Text => {
            json!({"description": "OpenMetrics text", "content": {"application/openmetrics-text": {"schema": {"type": "string"}}}})
        }
        Reply::FileOrObj(fields) => {
            json!({"description": "a folder's listing, a file's metadata, or its bytes", "content": {
            "application/json": {"schema": object_schema(fields, false)},
            "application/octet-stream": {"schema": {}}}})
        }
    };
    let mut responses = Map::new();
    responses.insert("200".into(), ok);
    if matches!(r.handler, v1::Handler::Stage(v1::StageOp::Get)) {
        responses.insert(
            "206".into(),
            json!({"description": "the bytes of a Range", "content": {"application/octet-stream": {"schema": {}}}}),
        );
    }
    error_responses(&mut responses);
    op["responses"] = Value::Object(responses);
    op
}

/// The document. `environments` are the names the environment paths may take (a server lists
/// its catalog's; empty leaves the name free).
pub fn document(environments: &[String]) -> Value {
    let mut paths = Map::new();
    let mut env_param = json!({"name": "environment", "in": "path", "required": true, "schema": {"type": "string"},
                               "description": "the environment's name or id (or use http://<env>.localhost/...)"});
    if !environments.is_empty() {
        env_param["schema"]["enum"] = json!(environments);
    }
    for e in ENDPOINTS {
        let (path, scope_param) = match e.scope {
            Scope::Env => (format!("/{{environment}}/{}", e.path), Some(&env_param)),
            Scope::Ops => (format!("/ops/{}", e.path), None),
        };
        let mut item = Map::new();
        for verb in e.verbs.names() {
            let verb = verb.to_ascii_lowercase();
            item.insert(verb.clone(), env_operation(e, &verb, scope_param));
        }
        paths.insert(path, Value::Object(item));
    }
    for r in v1::ROUTES {
        let item = paths.entry(r.path.to_string()).or_insert_with(|| json!({}));
        item[r.method.to_ascii_lowercase()] = route_operation(r);
    }
    let mut metrics = Map::new();
    error_responses(&mut metrics);
    metrics.insert("200".into(), json!({"description": "OpenMetrics text", "content": {"application/openmetrics-text": {"schema": {"type": "string"}}}}));
    paths.insert("/metrics".into(), json!({"get": {"summary": "the server's metrics (operators of the account default)",
        "operationId": "metrics", "tags": ["server"], "security": [{"bearer": []}, {"token": []}], "responses": metrics}}));
    paths.insert("/openapi.json".into(), json!({"get": {"summary": "this document", "operationId": "openapi",
        "tags": ["server"], "responses": {"200": {"description": "OpenAPI 3", "content": {"application/json": {"schema": {"type": "object"}}}}}}}));
    json!({
        "openapi": "3.0.3",
        "info": {"title": "m1", "version": env!("CARGO_PKG_VERSION"),
                 "description": "m1 serve: the environment API (seeds 001, 002), ops (seed 000), and the management API of seeds 003 (SingleStore) and 004 (ClickHouse Cloud)."},
        "paths": paths,
        "components": {
            "schemas": {"Error": {"type": "object", "required": ["message", "status"],
                                  "properties": {"message": {"type": "string"}, "status": {"type": "integer"}}}},
            "securitySchemes": {
                "token": {"type": "apiKey", "in": "header", "name": "m1-auth-token"},
                "bearer": {"type": "http", "scheme": "bearer"},
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_endpoint_and_route_is_in_the_document() {
        let doc = document(&[]);
        let paths = doc["paths"].as_object().unwrap();
        for e in ENDPOINTS {
            let p = match e.scope {
                Scope::Env => format!("/{{environment}}/{}", e.path),
                Scope::Ops => format!("/ops/{}", e.path),
            };
            for v in e.verbs.names() {
                assert!(paths[&p].get(v.to_ascii_lowercase()).is_some(), "{p} {v}");
            }
        }
        for r in v1::ROUTES {
            assert!(paths[r.path].get(r.method.to_ascii_lowercase()).is_some(), "{r:?}");
        }
        let create = &paths["/v1/organizations/{organizationId}/services"]["post"];
        let schema = &create["requestBody"]["content"]["application/json"]["schema"];
        assert_eq!(schema["required"], json!(["name"]));
        assert_eq!(schema["properties"]["tier"]["enum"][0], "development");
    }
}
