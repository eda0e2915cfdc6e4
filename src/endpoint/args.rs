//! Parameters: how each is declared ([`Param`]) and decoded ([`Args`]).
//!
//! Invariant: every front-end hands the endpoint layer the same thing, named text values (the
//! CLI's `-name value`, a form field, a query-string pair, a JSON body member), and all decoding
//! happens here, once, when [`Args::new`] checks them against the endpoint's declaration. A
//! handler only reads values that were declared, so a parameter cannot be accepted by one
//! front-end and refused by another.

use std::collections::BTreeMap;

use serde_json::Value;

use super::Endpoint;
use crate::error::{Error, Result};

/// The type of a parameter's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Any text.
    Text,
    /// A whole number (negative allowed where the endpoint says so).
    Int,
    /// `true`/`false` (also `1`/`0`, `yes`/`no`).
    Bool,
    /// A JSON value (object, array, ...).
    Json,
    /// A list of names: a JSON array of strings or `a,b,c`.
    List,
    /// A list of `_m1key`s: a JSON array of integers or `1,2,3`.
    Keys,
}

impl Kind {
    /// What a value of this kind looks like, for help and errors.
    pub fn expected(self) -> &'static str {
        match self {
            Kind::Text => "text",
            Kind::Int => "a whole number",
            Kind::Bool => "true or false",
            Kind::Json => "JSON",
            Kind::List => "a list (JSON array of names, or a,b,c)",
            Kind::Keys => "a list of keys (JSON array of integers, or 1,2,3)",
        }
    }
}

/// One declared parameter of an endpoint.
#[derive(Debug, Clone, Copy)]
pub struct Param {
    /// Its name, as the seeds spell it.
    pub name: &'static str,
    /// The type of its value.
    pub kind: Kind,
    /// Whether a call must give it.
    pub required: bool,
    /// The value used when it is not given, as text (shown in help).
    pub default: Option<&'static str>,
    /// One line saying what it is for.
    pub help: &'static str,
}

impl Param {
    /// A parameter every call must give.
    pub const fn required(name: &'static str, kind: Kind, help: &'static str) -> Param {
        Param { name, kind, required: true, default: None, help }
    }

    /// A parameter a call may leave out.
    pub const fn optional(name: &'static str, kind: Kind, help: &'static str) -> Param {
        Param { name, kind, required: false, default: None, help }
    }

    /// A parameter with the value `default` when left out.
    pub const fn with_default(name: &'static str, kind: Kind, default: &'static str, help: &'static str) -> Param {
        Param { name, kind, required: false, default: Some(default), help }
    }
}

/// A decoded parameter value.
#[derive(Debug, Clone, PartialEq)]
enum Decoded {
    Text(String),
    Int(i64),
    Bool(bool),
    Json(Value),
    List(Vec<String>),
    Keys(Vec<u64>),
}

/// The parameters of one call, checked and decoded against the endpoint's declaration.
#[derive(Debug, Clone)]
pub struct Args {
    endpoint: &'static str,
    values: BTreeMap<String, Decoded>,
    /// Parameters of endpoints that take any name (`system`), as text.
    open: BTreeMap<String, String>,
    /// The `{name}` of a `system/{name}` call.
    path_name: Option<String>,
}

/// The one boolean parser of m1.
pub fn parse_bool(text: &str) -> Option<bool> {
    match text.trim() {
        "true" | "1" | "yes" => Some(true),
        "false" | "0" | "no" => Some(false),
        _ => None,
    }
}

impl Args {
    /// Checks `raw` against `endpoint`'s parameters: unknown names and missing required ones are
    /// errors naming them; every value is decoded by its declared kind.
    pub fn new(endpoint: &Endpoint, raw: impl IntoIterator<Item = (String, String)>) -> Result<Args> {
        let mut values = BTreeMap::new();
        let mut open = BTreeMap::new();
        for (name, text) in raw {
            match endpoint.params.iter().find(|p| p.name == name) {
                Some(param) => {
                    values.insert(name, decode(endpoint.path, param, &text)?);
                }
                None if endpoint.open_params => {
                    open.insert(name, text);
                }
                None => {
                    return Err(Error::UnknownParameter {
                        endpoint: endpoint.path.to_string(),
                        name,
                        known: endpoint.params.iter().map(|p| p.name).collect(),
                    });
                }
            }
        }
        for p in endpoint.params {
            if values.contains_key(p.name) {
                continue;
            }
            if p.required {
                return Err(Error::MissingParameter {
                    endpoint: endpoint.path.to_string(),
                    name: p.name.to_string(),
                    expected: p.kind.expected(),
                });
            }
            if let Some(d) = p.default {
                values.insert(p.name.to_string(), decode(endpoint.path, p, d)?);
            }
        }
        Ok(Args { endpoint: endpoint.path, values, open, path_name: None })
    }

    /// These arguments for a call to `.../{name}` with this name.
    pub fn with_name(mut self, name: &str) -> Args {
        self.path_name = Some(name.to_string());
        self
    }

    /// The `{name}` of a call to `.../{name}`.
    pub fn path_name(&self) -> Option<&str> {
        self.path_name.as_deref()
    }

    /// Whether the call gave `name` (or it has a default).
    pub fn has(&self, name: &str) -> bool {
        self.values.contains_key(name)
    }

    /// The text of `name`, if given.
    pub fn text(&self, name: &str) -> Option<&str> {
        match self.values.get(name) {
            Some(Decoded::Text(s)) => Some(s),
            _ => None,
        }
    }

    /// The text of a required parameter.
    pub fn req(&self, name: &str) -> Result<&str> {
        self.text(name).ok_or_else(|| self.missing(name, Kind::Text))
    }

    /// The number `name`, if given.
    pub fn int(&self, name: &str) -> Option<i64> {
        match self.values.get(name) {
            Some(Decoded::Int(n)) => Some(*n),
            _ => None,
        }
    }

    /// A number that must be at least `min` (e.g. shards ≥ 1, a key ≥ 0).
    pub fn count(&self, name: &str, min: u64) -> Result<Option<u64>> {
        match self.int(name) {
            None => Ok(None),
            Some(n) if n >= 0 && n as u64 >= min => Ok(Some(n as u64)),
            Some(n) => Err(self.bad(name, if min == 0 { "zero or more" } else { "at least 1" }, &n.to_string())),
        }
    }

    /// A required number of at least `min`.
    pub fn count_req(&self, name: &str, min: u64) -> Result<u64> {
        self.count(name, min)?.ok_or_else(|| self.missing(name, Kind::Int))
    }

    /// The boolean `name`, if given.
    pub fn bool(&self, name: &str) -> Option<bool> {
        match self.values.get(name) {
            Some(Decoded::Bool(b)) => Some(*b),
            _ => None,
        }
    }

    /// The JSON `name` as a `T`, if given; a value of the wrong shape names the parameter.
    pub fn json<T: serde::de::DeserializeOwned>(&self, name: &str) -> Result<Option<T>> {
        match self.values.get(name) {
            Some(Decoded::Json(v)) => serde_json::from_value(v.clone()).map(Some).map_err(|e| Error::BadParameter {
                endpoint: self.endpoint.to_string(),
                name: name.to_string(),
                expected: "JSON of the expected shape",
                value: short(&v.to_string()),
                detail: e.to_string(),
            }),
            _ => Ok(None),
        }
    }

    /// The JSON `name` as given.
    pub fn json_value(&self, name: &str) -> Option<&Value> {
        match self.values.get(name) {
            Some(Decoded::Json(v)) => Some(v),
            _ => None,
        }
    }

    /// The list `name`, if given.
    pub fn list(&self, name: &str) -> Option<&[String]> {
        match self.values.get(name) {
            Some(Decoded::List(l)) => Some(l),
            _ => None,
        }
    }

    /// The keys `name`, if given.
    pub fn keys(&self, name: &str) -> Option<&[u64]> {
        match self.values.get(name) {
            Some(Decoded::Keys(k)) => Some(k),
            _ => None,
        }
    }

    /// The undeclared parameters of an endpoint that takes any name (`system`).
    pub fn open(&self) -> &BTreeMap<String, String> {
        &self.open
    }

    /// An error for a value that decoded but is out of range for the endpoint.
    pub fn bad(&self, name: &str, expected: &'static str, value: &str) -> Error {
        Error::BadParameter {
            endpoint: self.endpoint.to_string(),
            name: name.to_string(),
            expected,
            value: short(value),
            detail: String::new(),
        }
    }

    fn missing(&self, name: &str, kind: Kind) -> Error {
        Error::MissingParameter {
            endpoint: self.endpoint.to_string(),
            name: name.to_string(),
            expected: kind.expected(),
        }
    }
}

/// A value shortened for an error message.
fn short(v: &str) -> String {
    const MAX: usize = 120;
    if v.len() <= MAX {
        return v.to_string();
    }
    let mut end = MAX;
    while !v.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &v[..end])
}

fn decode(endpoint: &str, p: &Param, text: &str) -> Result<Decoded> {
    let bad = |detail: String| Error::BadParameter {
        endpoint: endpoint.to_string(),
        name: p.name.to_string(),
        expected: p.kind.expected(),
        value: short(text),
        detail,
    };
    Ok(match p.kind {
        Kind::Text => Decoded::Text(text.to_string()),
        Kind::Int => Decoded::Int(text.trim().parse().map_err(|_| bad(String::new()))?),
        Kind::Bool => Decoded::Bool(parse_bool(text).ok_or_else(|| bad(String::new()))?),
        Kind::Json => Decoded::Json(serde_json::from_str(text).map_err(|e| bad(e.to_string()))?),
        Kind::List => {
            let t = text.trim();
            if t.starts_with('[') {
                Decoded::List(serde_json::from_str(t).map_err(|e| bad(e.to_string()))?)
            } else {
                Decoded::List(t.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect())
            }
        }
        Kind::Keys => {
            let t = text.trim();
            if t.starts_with('[') {
                Decoded::Keys(serde_json::from_str(t).map_err(|e| bad(e.to_string()))?)
            } else {
                let keys = t
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| s.parse::<u64>().map_err(|_| bad(format!("'{s}' is not a key"))))
                    .collect::<Result<Vec<u64>>>()?;
                Decoded::Keys(keys)
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoint::{Scope, find};

    fn args(path: &str, raw: &[(&str, &str)]) -> Result<Args> {
        let ep = find(Scope::Env, path).expect("endpoint exists");
        Args::new(ep, raw.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    #[test]
    fn keys_and_lists_take_json_and_commas() {
        let a = args("get", &[("ids", "[1, 2,3]"), ("properties", "a, b")]).unwrap();
        assert_eq!(a.keys("ids"), Some(&[1, 2, 3][..]));
        assert_eq!(a.list("properties"), Some(&["a".to_string(), "b".to_string()][..]));
        let a = args("get", &[("ids", "1,2"), ("properties", r#"["a"]"#)]).unwrap();
        assert_eq!(a.keys("ids"), Some(&[1, 2][..]));
        assert_eq!(a.list("properties"), Some(&["a".to_string()][..]));
    }

    #[test]
    fn errors_name_the_parameter_and_what_was_expected() {
        let e = args("get", &[("ids", "1,x")]).unwrap_err().to_string();
        assert!(e.contains("'ids'") && e.contains("'x' is not a key"), "{e}");
        let e = args("get", &[("idz", "1")]).unwrap_err().to_string();
        assert!(e.contains("no parameter 'idz'") && e.contains("ids, properties"), "{e}");
        let e = args("get", &[]).unwrap_err().to_string();
        assert!(e.contains("missing required parameter 'ids'"), "{e}");
        let e = args("write", &[("items", "[]"), ("publish", "maybe")]).unwrap_err().to_string();
        assert!(e.contains("'publish' must be true or false, got 'maybe'"), "{e}");
    }

    #[test]
    fn defaults_come_from_the_declaration() {
        let a = args("vacuum", &[]).unwrap();
        assert_eq!(a.int("olderThanMs"), Some(3_600_000));
        let a = args("write", &[("items", "[]")]).unwrap();
        assert_eq!(a.bool("publish"), Some(false));
        assert_eq!(a.bool("async"), Some(true));
        assert_eq!(a.bool("permissive"), None);
    }

    #[test]
    fn booleans() {
        for (t, v) in [("true", true), ("1", true), ("yes", true), ("false", false), ("0", false), (" no ", false)] {
            assert_eq!(parse_bool(t), Some(v));
        }
        assert_eq!(parse_bool("TRUE"), None);
    }
}
