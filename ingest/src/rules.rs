//! The TransformRuleSet: a JSON array of rules applied in order to each record after parsing and
//! before typing (SPEC §4).
//!
//! A rule set is parsed and checked completely before any row is read: an unknown `op`, a missing
//! or mistyped field, a bad regex, glob or filter query is a [`RuleError`] naming the rule's index.

use chrono::{DateTime, NaiveDate, NaiveDateTime};
use globset::{Glob, GlobMatcher};
use m1_engine::record::Record;
use m1_engine::schema::PropertyType;
use m1_engine::values::{Scalar, coerce, format_date_ms};
use regex::Regex;
use serde::Deserialize;
use serde_json::Value;

/// A rule set that is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("rule {index}{}: {message}", op.as_ref().map(|o| format!(" ({o})")).unwrap_or_default())]
pub struct RuleError {
    /// Position of the rule in the array, from 0.
    pub index: usize,
    /// The rule's `op`, when it has one.
    pub op: Option<String>,
    /// What is wrong.
    pub message: String,
}

/// A value a rule could not convert (a bad row, not a bad rule set).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("rule {index} (cast): property '{property}': value {value} is not a valid {expected}")]
pub struct CastError {
    /// Position of the rule.
    pub index: usize,
    /// The property cast.
    pub property: String,
    /// The value, as JSON.
    pub value: String,
    /// What the rule expected.
    pub expected: String,
}

/// How a `cast` to date reads its input.
#[derive(Debug, Clone)]
enum DateInput {
    /// ISO-8601 strings and epoch numbers (seconds below 10^11, else milliseconds).
    Auto,
    /// A strftime format.
    Format(String),
    /// Epoch numbers in a given unit.
    Unit(EpochUnit),
}

#[derive(Debug, Clone, Copy)]
enum EpochUnit {
    Seconds,
    Millis,
    Micros,
}

/// A test deciding whether a record is kept by a `filter` rule.
pub type RecordTest = Box<dyn Fn(&Record) -> bool + Send + Sync>;

/// Builds the test for a `filter` rule's query, or explains why the query is invalid.
pub type FilterCompiler<'a> = &'a dyn Fn(&str) -> Result<RecordTest, String>;

enum Rule {
    Columns,
    Rename { from: String, to: String },
    Copy { from: String, to: String },
    Drop(Vec<GlobMatcher>),
    Keep(Vec<GlobMatcher>),
    Const { property: String, value: Value },
    Default { property: String, value: Value },
    Cast { property: String, ty: PropertyType, date: DateInput },
    Split { property: String, separator: String },
    Regex { property: String, regex: Regex, groups: Vec<(String, String)> },
    Filter { test: RecordTest, exclude: bool },
    Lowercase(String),
    Trim(String),
}

/// A validated TransformRuleSet.
pub struct RuleSet {
    rules: Vec<Rule>,
    columns: Option<Vec<String>>,
    casts: Vec<(String, PropertyType)>,
}

impl std::fmt::Debug for RuleSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuleSet").field("rules", &self.rules.len()).field("columns", &self.columns).finish()
    }
}

// The JSON form of each rule; `deny_unknown_fields` catches misspelled fields.
#[derive(Deserialize)]
#[serde(tag = "op", rename_all = "lowercase", deny_unknown_fields)]
enum RuleSpec {
    Columns {
        names: Vec<String>,
    },
    Rename {
        from: String,
        to: String,
    },
    Copy {
        from: String,
        to: String,
    },
    Drop {
        properties: Vec<String>,
    },
    Keep {
        properties: Vec<String>,
    },
    Const {
        property: String,
        value: Value,
    },
    Default {
        property: String,
        value: Value,
    },
    Cast {
        property: String,
        #[serde(rename = "type")]
        ty: String,
        format: Option<String>,
        unit: Option<String>,
    },
    Split {
        property: String,
        separator: String,
    },
    Regex {
        property: String,
        pattern: String,
    },
    Filter {
        q: String,
        #[serde(default)]
        exclude: bool,
    },
    Lowercase {
        property: String,
    },
    Trim {
        property: String,
    },
}

const OPS: &str = "columns, rename, copy, drop, keep, const, default, cast, split, regex, filter, lowercase, trim";

impl RuleSet {
    /// The empty rule set.
    pub fn empty() -> RuleSet {
        RuleSet { rules: Vec::new(), columns: None, casts: Vec::new() }
    }

    /// Parses and validates a rule set. `filter` queries are compiled with `filter`.
    pub fn parse(json: &str, filter: FilterCompiler<'_>) -> Result<RuleSet, RuleError> {
        let whole = |message: String| RuleError { index: 0, op: None, message };
        let value: Value =
            serde_json::from_str(json).map_err(|e| whole(format!("the rule set is not valid JSON: {e}")))?;
        let Value::Array(items) = value else {
            return Err(whole("the rule set must be a JSON array of rule objects".into()));
        };
        let mut set = RuleSet::empty();
        for (index, item) in items.into_iter().enumerate() {
            let op = item.get("op").and_then(Value::as_str).map(str::to_string);
            let err = |message: String| RuleError { index, op: op.clone(), message };
            if !item.is_object() {
                return Err(err("a rule must be a JSON object with an \"op\"".into()));
            }
            match &op {
                None => return Err(err(format!("missing \"op\" (one of {OPS})"))),
                Some(o) if !OPS.split(", ").any(|k| k == o) => {
                    return Err(err(format!("unknown op '{o}' (expected one of {OPS})")));
                }
                _ => {}
            }
            let spec: RuleSpec = serde_json::from_value(item).map_err(|e| err(e.to_string()))?;
            let rule = set.compile(spec, filter).map_err(err)?;
            set.rules.push(rule);
        }
        Ok(set)
    }

    fn compile(&mut self, spec: RuleSpec, filter: FilterCompiler<'_>) -> Result<Rule, String> {
        let nonempty =
            |what: &str, s: &str| if s.is_empty() { Err(format!("\"{what}\" must not be empty")) } else { Ok(()) };
        Ok(match spec {
            RuleSpec::Columns { names } => {
                if names.is_empty() || names.iter().any(String::is_empty) {
                    return Err("\"names\" must be a non-empty list of non-empty names".into());
                }
                if self.columns.replace(names).is_some() {
                    return Err("only one columns rule is allowed".into());
                }
                Rule::Columns
            }
            RuleSpec::Rename { from, to } => {
                nonempty("from", &from)?;
                nonempty("to", &to)?;
                Rule::Rename { from, to }
            }
            RuleSpec::Copy { from, to } => {
                nonempty("from", &from)?;
                nonempty("to", &to)?;
                Rule::Copy { from, to }
            }
            RuleSpec::Drop { properties } => Rule::Drop(globs(&properties)?),
            RuleSpec::Keep { properties } => Rule::Keep(globs(&properties)?),
            RuleSpec::Const { property, value } => {
                nonempty("property", &property)?;
                Rule::Const { property, value }
            }
            RuleSpec::Default { property, value } => {
                nonempty("property", &property)?;
                Rule::Default { property, value }
            }
            RuleSpec::Cast { property, ty, format, unit } => {
                nonempty("property", &property)?;
                let ty = PropertyType::parse(&ty).ok_or_else(|| {
                    format!("unknown type '{ty}' (expected one of string, text, integer, double, date, boolean)")
                })?;
                let date = match (format, unit) {
                    (Some(_), Some(_)) => return Err("give either \"format\" or \"unit\", not both".into()),
                    (Some(f), None) => {
                        check_strftime(&f)?;
                        DateInput::Format(f)
                    }
                    (None, Some(u)) => DateInput::Unit(match u.as_str() {
                        "s" => EpochUnit::Seconds,
                        "ms" => EpochUnit::Millis,
                        "us" => EpochUnit::Micros,
                        other => return Err(format!("unknown unit '{other}' (expected s, ms or us)")),
                    }),
                    (None, None) => DateInput::Auto,
                };
                if !matches!(date, DateInput::Auto) && ty != PropertyType::Date {
                    return Err("\"format\" and \"unit\" apply only to type date".into());
                }
                self.casts.push((property.clone(), ty));
                Rule::Cast { property, ty, date }
            }
            RuleSpec::Split { property, separator } => {
                nonempty("property", &property)?;
                nonempty("separator", &separator)?;
                Rule::Split { property, separator }
            }
            RuleSpec::Regex { property, pattern } => {
                nonempty("property", &property)?;
                let regex = Regex::new(&pattern).map_err(|e| format!("bad regex: {e}"))?;
                // Group names cannot hold dots, so `__` in a group name stands for one.
                let groups: Vec<(String, String)> =
                    regex.capture_names().flatten().map(|g| (g.to_string(), g.replace("__", "."))).collect();
                if groups.is_empty() {
                    return Err("the pattern has no named groups, e.g. (?P<status>\\d+)".into());
                }
                Rule::Regex { property, regex, groups }
            }
            RuleSpec::Filter { q, exclude } => {
                Rule::Filter { test: filter(&q).map_err(|e| format!("bad query: {e}"))?, exclude }
            }
            RuleSpec::Lowercase { property } => {
                nonempty("property", &property)?;
                Rule::Lowercase(property)
            }
            RuleSpec::Trim { property } => {
                nonempty("property", &property)?;
                Rule::Trim(property)
            }
        })
    }

    /// Column names given by a `columns` rule (for delimited files without headers).
    pub fn columns(&self) -> Option<&[String]> {
        self.columns.as_deref()
    }

    /// Properties a `cast` rule forces to a type (used when inferring a schema).
    pub fn casts(&self) -> &[(String, PropertyType)] {
        &self.casts
    }

    /// Whether there are no rules.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Applies every rule in order. `Ok(None)` means a `filter` dropped the record; a value a
    /// `cast` cannot convert is an error.
    pub fn apply(&self, record: Record) -> Result<Option<Record>, CastError> {
        self.run(record, None)
    }

    /// Applies every rule in order, setting values a `cast` cannot convert to null and adding
    /// their errors to `nulled` (permissive publishing). `None` means a `filter` dropped it.
    pub fn apply_lenient(&self, record: Record, nulled: &mut Vec<CastError>) -> Option<Record> {
        self.run(record, Some(nulled)).unwrap_or(None)
    }

    fn run(&self, mut record: Record, mut nulled: Option<&mut Vec<CastError>>) -> Result<Option<Record>, CastError> {
        for (index, rule) in self.rules.iter().enumerate() {
            match rule {
                Rule::Columns => {}
                Rule::Rename { from, to } => {
                    if let Some(v) = record.shift_remove(from) {
                        record.insert(to.clone(), v);
                    }
                }
                Rule::Copy { from, to } => {
                    if let Some(v) = record.get(from).cloned() {
                        record.insert(to.clone(), v);
                    }
                }
                Rule::Drop(globs) => record.retain(|k, _| !globs.iter().any(|g| g.is_match(k))),
                Rule::Keep(globs) => record.retain(|k, _| globs.iter().any(|g| g.is_match(k))),
                Rule::Const { property, value } => {
                    record.insert(property.clone(), value.clone());
                }
                Rule::Default { property, value } => {
                    let missing = match record.get(property) {
                        None | Some(Value::Null) => true,
                        Some(Value::String(s)) => s.is_empty(),
                        Some(_) => false,
                    };
                    if missing {
                        record.insert(property.clone(), value.clone());
                    }
                }
                Rule::Cast { property, ty, date } => {
                    if let Some(v) = record.get_mut(property) {
                        match cast_value(v, *ty, date) {
                            Some(cast) => *v = cast,
                            None => {
                                let err = CastError {
                                    index,
                                    property: property.clone(),
                                    value: v.to_string(),
                                    expected: match date {
                                        DateInput::Format(f) => format!("date in the format '{f}'"),
                                        _ => ty.name().to_string(),
                                    },
                                };
                                match nulled.as_deref_mut() {
                                    Some(list) => {
                                        list.push(err);
                                        *v = Value::Null;
                                    }
                                    None => return Err(err),
                                }
                            }
                        }
                    }
                }
                Rule::Split { property, separator } => {
                    if let Some(Value::String(s)) = record.get(property) {
                        let parts = if s.is_empty() {
                            Vec::new()
                        } else {
                            s.split(separator.as_str()).map(|p| Value::String(p.to_string())).collect()
                        };
                        record.insert(property.clone(), Value::Array(parts));
                    }
                }
                Rule::Regex { property, regex, groups } => {
                    let caps = match record.get(property) {
                        Some(Value::String(s)) => regex.captures(s).map(|c| {
                            groups
                                .iter()
                                .filter_map(|(g, name)| c.name(g).map(|m| (name.clone(), m.as_str().to_string())))
                                .collect::<Vec<_>>()
                        }),
                        _ => None,
                    };
                    for (name, value) in caps.unwrap_or_default() {
                        record.insert(name, Value::String(value));
                    }
                }
                Rule::Filter { test, exclude } => {
                    if test(&record) == *exclude {
                        return Ok(None);
                    }
                }
                Rule::Lowercase(p) => {
                    if let Some(Value::String(s)) = record.get_mut(p) {
                        *s = s.to_lowercase();
                    }
                }
                Rule::Trim(p) => {
                    if let Some(Value::String(s)) = record.get_mut(p) {
                        let t = s.trim();
                        if t.len() != s.len() {
                            *s = t.to_string();
                        }
                    }
                }
            }
        }
        Ok(Some(record))
    }
}

fn globs(patterns: &[String]) -> Result<Vec<GlobMatcher>, String> {
    if patterns.is_empty() {
        return Err("\"properties\" must list at least one name or glob".into());
    }
    patterns
        .iter()
        .map(|p| Glob::new(p).map(|g| g.compile_matcher()).map_err(|e| format!("bad glob '{p}': {e}")))
        .collect()
}

/// Rejects strftime formats chrono cannot use, before any row is read.
fn check_strftime(format: &str) -> Result<(), String> {
    use chrono::format::{Item, StrftimeItems};
    if format.is_empty() {
        return Err("\"format\" must not be empty".into());
    }
    if StrftimeItems::new(format).any(|i| matches!(i, Item::Error)) {
        return Err(format!("bad date format '{format}'"));
    }
    Ok(())
}

/// Parses `s` with a strftime format: with a zone if the format has one, else as UTC, else as a
/// plain date at midnight UTC.
fn parse_with_format(s: &str, format: &str) -> Option<i64> {
    let s = s.trim();
    if let Ok(d) = DateTime::parse_from_str(s, format) {
        return Some(d.timestamp_millis());
    }
    if let Ok(d) = NaiveDateTime::parse_from_str(s, format) {
        return Some(d.and_utc().timestamp_millis());
    }
    NaiveDate::parse_from_str(s, format).ok()?.and_hms_opt(0, 0, 0).map(|d| d.and_utc().timestamp_millis())
}

/// Milliseconds as an integer, if within the range dates can be rendered in.
fn whole_ms(ms: f64) -> Option<i64> {
    (ms.is_finite() && ms.abs() < 8.2e15).then(|| ms.round() as i64)
}

fn cast_value(v: &Value, ty: PropertyType, date: &DateInput) -> Option<Value> {
    if v.is_null() {
        return Some(Value::Null);
    }
    if let Value::Array(items) = v {
        return items.iter().map(|i| cast_value(i, ty, date)).collect::<Option<Vec<_>>>().map(Value::Array);
    }
    if ty == PropertyType::Date {
        let number = || match v {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.trim().parse::<f64>().ok(),
            _ => None,
        };
        let ms = match date {
            DateInput::Auto => match coerce(v, ty).ok()? {
                Some(Scalar::DateMs(ms)) => ms,
                _ => return Some(Value::Null),
            },
            DateInput::Format(f) => match v {
                Value::String(s) if s.trim().is_empty() => return Some(Value::Null),
                Value::String(s) => parse_with_format(s, f)?,
                _ => return None,
            },
            DateInput::Unit(EpochUnit::Seconds) => whole_ms(number()? * 1000.0)?,
            DateInput::Unit(EpochUnit::Millis) => whole_ms(number()?)?,
            DateInput::Unit(EpochUnit::Micros) => whole_ms(number()? / 1000.0)?,
        };
        return Some(Value::String(format_date_ms(ms)));
    }
    Some(match coerce(v, ty).ok()? {
        None => Value::Null,
        Some(Scalar::Str(s)) => Value::String(s),
        Some(Scalar::Int(i)) => Value::from(i),
        Some(Scalar::Double(f)) => serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number),
        Some(Scalar::Bool(b)) => Value::Bool(b),
        Some(Scalar::DateMs(ms)) => Value::String(format_date_ms(ms)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A stand-in filter compiler for these tests: `prop=value` keeps records where prop equals
    /// value (the real one uses the query language).
    fn eq_filter(q: &str) -> Result<RecordTest, String> {
        let (p, v) = q.split_once('=').ok_or("expected prop=value")?;
        let (p, v) = (p.to_string(), v.to_string());
        Ok(Box::new(move |r: &Record| r.get(&p).and_then(Value::as_str) == Some(v.as_str())))
    }

    fn parse(json: &str) -> Result<RuleSet, RuleError> {
        RuleSet::parse(json, &eq_filter)
    }

    fn rec(v: Value) -> Record {
        v.as_object().unwrap().clone()
    }

    fn apply(rules: &str, v: Value) -> Option<Value> {
        parse(rules).unwrap().apply(rec(v)).unwrap().map(Value::Object)
    }

    #[test]
    fn invalid_rule_sets_name_the_rule() {
        let err = |j: &str| parse(j).unwrap_err().to_string();
        assert_eq!(
            err(r#"[{"op":"trim","property":"a"},{"op":"explode"}]"#),
            format!("rule 1 (explode): unknown op 'explode' (expected one of {OPS})")
        );
        assert_eq!(err(r#"[{"op":"rename","from":"a"}]"#), "rule 0 (rename): missing field `to`");
        assert!(
            err(r#"[{"op":"rename","from":"a","to":"b","too":1}]"#).starts_with("rule 0 (rename): unknown field `too`")
        );
        assert!(err(r#"[{"op":"regex","property":"a","pattern":"(?P<x>["}]"#).starts_with("rule 0 (regex): bad regex"));
        assert!(err(r#"[{"op":"regex","property":"a","pattern":"\\d+"}]"#).contains("no named groups"));
        assert!(err(r#"[{"op":"cast","property":"a","type":"uuid"}]"#).contains("unknown type 'uuid'"));
        assert!(err(r#"[{"op":"cast","property":"a","type":"date","unit":"h"}]"#).contains("unknown unit 'h'"));
        assert!(err(r#"[{"op":"cast","property":"a","type":"integer","unit":"s"}]"#).contains("only to type date"));
        assert!(err(r#"[{"op":"cast","property":"a","type":"date","format":"%Q"}]"#).contains("bad date format"));
        assert!(err(r#"[{"op":"drop","properties":["a[" ]}]"#).contains("bad glob 'a['"));
        assert!(err(r#"[{"op":"filter","q":"nonsense"}]"#).contains("rule 0 (filter): bad query: expected prop=value"));
        assert!(err(r#"[{"property":"a"}]"#).contains("rule 0: missing \"op\""));
        assert!(err(r#"[1]"#).contains("rule 0: a rule must be a JSON object"));
        assert!(err(r#"{"op":"trim"}"#).contains("must be a JSON array"));
        assert!(
            err(r#"[{"op":"columns","names":["a"]},{"op":"columns","names":["b"]}]"#)
                .contains("rule 1 (columns): only one")
        );
    }

    #[test]
    fn each_op_does_what_the_spec_says() {
        let r = |rules: &str, v: Value| apply(rules, v).unwrap();
        assert_eq!(r(r#"[{"op":"rename","from":"a","to":"b.c"}]"#, json!({"a":1,"x":2})), json!({"x":2,"b.c":1}));
        assert_eq!(r(r#"[{"op":"copy","from":"a","to":"b"}]"#, json!({"a":1})), json!({"a":1,"b":1}));
        assert_eq!(
            r(r#"[{"op":"drop","properties":["geo.*","x"]}]"#, json!({"geo.lat":1,"geo.lon":2,"x":3,"y":4})),
            json!({"y":4})
        );
        assert_eq!(r(r#"[{"op":"keep","properties":["geo.*"]}]"#, json!({"geo.lat":1,"x":3})), json!({"geo.lat":1}));
        assert_eq!(r(r#"[{"op":"const","property":"src","value":"feed"}]"#, json!({})), json!({"src":"feed"}));
        assert_eq!(
            r(
                r#"[{"op":"default","property":"a","value":0},{"op":"default","property":"b","value":0},{"op":"default","property":"c","value":0}]"#,
                json!({"a":"","b":5,"c":null})
            ),
            json!({"a":0,"b":5,"c":0})
        );
        assert_eq!(
            r(r#"[{"op":"split","property":"t","separator":"|"}]"#, json!({"t":"a|b||c"})),
            json!({"t":["a","b","","c"]})
        );
        assert_eq!(r(r#"[{"op":"split","property":"t","separator":"|"}]"#, json!({"t":""})), json!({"t":[]}));
        assert_eq!(
            r(
                r#"[{"op":"regex","property":"line","pattern":"^(?P<ip>\\S+) .* (?P<http__status>\\d{3})$"}]"#,
                json!({"line":"10.0.0.1 GET / 404"})
            ),
            json!({"line":"10.0.0.1 GET / 404","ip":"10.0.0.1","http.status":"404"})
        );
        assert_eq!(
            r(r#"[{"op":"regex","property":"line","pattern":"(?P<n>\\d+)"}]"#, json!({"line":"none"})),
            json!({"line":"none"})
        );
        assert_eq!(
            r(r#"[{"op":"lowercase","property":"a"},{"op":"trim","property":"b"}]"#, json!({"a":"ÀBC","b":"  x "})),
            json!({"a":"àbc","b":"x"})
        );
        assert_eq!(apply(r#"[{"op":"filter","q":"k=yes"}]"#, json!({"k":"no"})), None);
        assert_eq!(apply(r#"[{"op":"filter","q":"k=yes"}]"#, json!({"k":"yes"})), Some(json!({"k":"yes"})));
        assert_eq!(apply(r#"[{"op":"filter","q":"k=yes","exclude":true}]"#, json!({"k":"yes"})), None);
        // Rules run in order: the filter sees the renamed property.
        assert_eq!(
            apply(r#"[{"op":"rename","from":"a","to":"k"},{"op":"filter","q":"k=yes"}]"#, json!({"a":"yes"})),
            Some(json!({"k":"yes"}))
        );
    }

    #[test]
    fn casts_force_types_and_date_formats() {
        let r = |rules: &str, v: Value| apply(rules, v).unwrap();
        assert_eq!(r(r#"[{"op":"cast","property":"n","type":"integer"}]"#, json!({"n":" 42 "})), json!({"n":42}));
        assert_eq!(r(r#"[{"op":"cast","property":"n","type":"string"}]"#, json!({"n":42})), json!({"n":"42"}));
        assert_eq!(r(r#"[{"op":"cast","property":"b","type":"boolean"}]"#, json!({"b":"yes"})), json!({"b":true}));
        assert_eq!(
            r(r#"[{"op":"cast","property":"n","type":"double"}]"#, json!({"n":["1.5","2"]})),
            json!({"n":[1.5,2.0]})
        );
        assert_eq!(
            r(
                r#"[{"op":"cast","property":"t","type":"date","format":"%d/%m/%Y %H:%M"}]"#,
                json!({"t":"23/02/2021 19:18"})
            ),
            json!({"t":"2021-02-23T19:18:00.000Z"})
        );
        assert_eq!(
            r(r#"[{"op":"cast","property":"t","type":"date","format":"%d/%m/%Y"}]"#, json!({"t":"01/01/1970"})),
            json!({"t":"1970-01-01T00:00:00.000Z"})
        );
        assert_eq!(
            r(r#"[{"op":"cast","property":"t","type":"date","unit":"s"}]"#, json!({"t":86400})),
            json!({"t":"1970-01-02T00:00:00.000Z"})
        );
        assert_eq!(
            r(r#"[{"op":"cast","property":"t","type":"date","unit":"ms"}]"#, json!({"t":"1000"})),
            json!({"t":"1970-01-01T00:00:01.000Z"})
        );
        assert_eq!(
            r(r#"[{"op":"cast","property":"t","type":"date","unit":"us"}]"#, json!({"t":1614107884399000i64})),
            json!({"t":"2021-02-23T19:18:04.399Z"})
        );
        assert_eq!(
            r(r#"[{"op":"cast","property":"t","type":"date"}]"#, json!({"t":946702800})),
            json!({"t":"2000-01-01T05:00:00.000Z"})
        );
        let set = parse(r#"[{"op":"cast","property":"n","type":"integer"}]"#).unwrap();
        assert_eq!(set.casts(), &[("n".to_string(), PropertyType::Integer)]);
        let err = set.apply(rec(json!({"n":"4x"}))).unwrap_err();
        assert_eq!(err.to_string(), "rule 0 (cast): property 'n': value \"4x\" is not a valid integer");
        let mut nulled = Vec::new();
        let kept = set.apply_lenient(rec(json!({"n":"4x","m":1})), &mut nulled).unwrap();
        assert_eq!((Value::Object(kept), nulled.len()), (json!({"n":null,"m":1}), 1));
        let set = parse(r#"[{"op":"cast","property":"t","type":"date","format":"%Y"}]"#).unwrap();
        assert!(set.apply(rec(json!({"t":"soon"}))).unwrap_err().to_string().contains("date in the format '%Y'"));
    }

    #[test]
    fn columns_are_exposed_for_the_reader() {
        let set = parse(r#"[{"op":"columns","names":["a","b"]}]"#).unwrap();
        assert_eq!(set.columns(), Some(&["a".to_string(), "b".to_string()][..]));
        assert!(RuleSet::empty().is_empty());
    }
}
