//! Evaluating a [`Query`] against one record, without any index: the ingest `filter` rule and
//! any other caller that holds records in memory.
//!
//! Values are compared according to the property's type, taken from a schema or a lookup
//! function given to [`Matcher::new`]:
//!
//! | type | term / phrase | wildcard | range |
//! |---|---|---|---|
//! | `string` | whole value, exact, case-sensitive | whole value | lexicographic (bytes) |
//! | `text` | the query's words (see [`tokenize`]) appear consecutively | any word (pattern lowercased) | any word, bounds lowercased |
//! | `integer`, `double` | numeric equality | never | numeric |
//! | `date` | same instant (`parse_date` / epoch rules) | never | by instant |
//! | `boolean` | same truth value (`true`, `false`, `t`, `yes`, `1`, ...) | never | `false < true` |
//! | unknown | numeric if value and query are both numbers; else exact string **or** as `text` | whole value or any word | numeric if all numbers, else lexicographic |
//!
//! - Values may be JSON numbers or strings holding numbers (`"42"`, from CSV); a value or query
//!   text that does not fit the type matches nothing. NaN never equals or falls in a range.
//! - Arrays (multi-valued properties) match if any element matches; a missing property or null
//!   never matches, and `prop:*` is false for it (for typed properties, also for a value that
//!   does not coerce to the type).
//! - Records are flat maps with dotted names (`session.geo.city`); a name missing from the map
//!   is also looked up through nested objects (`{"session": {"geo": {"city": ..}}}`), arrays of
//!   objects included, so nested session documents work too.
//! - An unfielded term matches if any property's value matches, each compared by its own type.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::HashMap;
use std::fmt;
use std::ops::Bound;

use m1_engine::record::Record;
use m1_engine::schema::{PropertyType, Schema};
use m1_engine::values::{Scalar, coerce, parse_date};
use serde_json::{Map, Value};

use crate::syntax::{Query, WildcardPart, wildcard_parts};

type Types<'a> = Box<dyn Fn(&str) -> Option<PropertyType> + Send + Sync + 'a>;

/// A query compiled for repeated evaluation against records.
pub struct Matcher<'a> {
    root: Node,
    types: Types<'a>,
}

impl fmt::Debug for Matcher<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Matcher").field("root", &self.root).finish_non_exhaustive()
    }
}

impl<'a> Matcher<'a> {
    /// Compiles `query`; `types` gives the type of a property, `None` if unknown.
    pub fn new<F>(query: &Query, types: F) -> Matcher<'a>
    where
        F: Fn(&str) -> Option<PropertyType> + Send + Sync + 'a,
    {
        let root = compile(query, &types);
        Matcher { root, types: Box::new(types) }
    }

    /// Whether the record matches the query.
    pub fn matches(&self, record: &Record) -> bool {
        self.eval(&self.root, record)
    }

    fn eval(&self, node: &Node, record: &Record) -> bool {
        match node {
            Node::All => true,
            Node::Exists { field, ty } => {
                any_value(record, field, &mut |v| ty.is_none_or(|t| matches!(coerce(v, t), Ok(Some(_)))))
            }
            Node::Leaf { field: Some(field), ty, pred } => any_value(record, field, &mut |v| pred.test(v, *ty)),
            Node::Leaf { field: None, pred, .. } => {
                any_leaf(record, "", &mut |name, v| pred.test(v, (self.types)(name)))
            }
            Node::Bool { must, should, must_not } => {
                must.iter().all(|n| self.eval(n, record))
                    && !must_not.iter().any(|n| self.eval(n, record))
                    && (!must.is_empty() || should.is_empty() || should.iter().any(|n| self.eval(n, record)))
            }
        }
    }
}

impl Matcher<'static> {
    /// Compiles `query` with property types from an environment schema.
    pub fn with_schema(query: &Query, schema: &Schema) -> Matcher<'static> {
        let types: HashMap<String, PropertyType> = schema.all().into_iter().map(|p| (p.name, p.ty)).collect();
        Matcher::new(query, move |name| types.get(name).copied())
    }

    /// Compiles `query` with no types known: every property is compared as "unknown".
    pub fn untyped(query: &Query) -> Matcher<'static> {
        Matcher::new(query, |_| None)
    }
}

/// Splits text into lowercase words at every character that is not alphanumeric (Unicode), the
/// analysis of `text` properties (the same as tantivy's default tokenizer).
pub fn tokenize(s: &str) -> Vec<String> {
    s.split(|c: char| !c.is_alphanumeric()).filter(|t| !t.is_empty()).map(str::to_lowercase).collect()
}

#[derive(Debug)]
enum Node {
    All,
    Exists {
        field: String,
        ty: Option<PropertyType>,
    },
    /// `ty` is resolved when compiling for a fielded leaf, per value for an unfielded one.
    Leaf {
        field: Option<String>,
        ty: Option<PropertyType>,
        pred: Pred,
    },
    Bool {
        must: Vec<Node>,
        should: Vec<Node>,
        must_not: Vec<Node>,
    },
}

fn compile(q: &Query, types: &dyn Fn(&str) -> Option<PropertyType>) -> Node {
    let leaf = |field: &Option<String>, pred: Pred| Node::Leaf {
        field: field.clone(),
        ty: field.as_deref().and_then(types),
        pred,
    };
    match q {
        Query::All => Node::All,
        Query::Term { field, text } | Query::Phrase { field, text } => leaf(field, Pred::Equals(Equals::new(text))),
        Query::Wildcard { field, pattern } => leaf(field, Pred::Wildcard(Wildcard::new(pattern))),
        Query::Range { field, lower, upper } => leaf(field, Pred::Range(Box::new(RangePred::new(lower, upper)))),
        Query::Exists { field } => Node::Exists { field: field.clone(), ty: types(field) },
        Query::Bool { must, should, must_not } => {
            let all = |v: &Vec<Query>| v.iter().map(|c| compile(c, types)).collect();
            Node::Bool { must: all(must), should: all(should), must_not: all(must_not) }
        }
    }
}

/// A number as written: integers compare exactly, anything else as f64.
#[derive(Debug, Clone, Copy)]
enum Num {
    Int(i64),
    Float(f64),
}

impl Num {
    fn as_f64(self) -> f64 {
        match self {
            Num::Int(i) => i as f64,
            Num::Float(f) => f,
        }
    }
}

fn cmp_num(a: &Num, b: &Num) -> Option<Ordering> {
    match (a, b) {
        (Num::Int(x), Num::Int(y)) => Some(x.cmp(y)),
        _ => a.as_f64().partial_cmp(&b.as_f64()),
    }
}

/// Parses a number; `strict` (for properties of unknown type) wants a digit, so words such as
/// `nan` or `infinity` stay words.
fn parse_num(s: &str, strict: bool) -> Option<Num> {
    let s = s.trim();
    if let Ok(i) = s.parse::<i64>() {
        return Some(Num::Int(i));
    }
    if strict && !s.bytes().any(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<f64>().ok().map(Num::Float)
}

fn value_num(v: &Value, strict: bool) -> Option<Num> {
    match v {
        Value::Number(n) => n.as_i64().map(Num::Int).or_else(|| n.as_f64().map(Num::Float)),
        Value::String(s) => parse_num(s, strict),
        _ => None,
    }
}

fn value_date(v: &Value) -> Option<i64> {
    match coerce(v, PropertyType::Date) {
        Ok(Some(Scalar::DateMs(ms))) => Some(ms),
        _ => None,
    }
}

fn value_bool(v: &Value) -> Option<bool> {
    match coerce(v, PropertyType::Boolean) {
        Ok(Some(Scalar::Bool(b))) => Some(b),
        _ => None,
    }
}

fn text_bool(s: &str) -> Option<bool> {
    value_bool(&Value::String(s.to_owned()))
}

/// A scalar as the string a `string` property would hold.
fn string_form(v: &Value) -> Option<Cow<'_, str>> {
    match v {
        Value::String(s) => Some(Cow::Borrowed(s)),
        Value::Number(n) => Some(Cow::Owned(n.to_string())),
        Value::Bool(b) => Some(Cow::Borrowed(if *b { "true" } else { "false" })),
        _ => None,
    }
}

/// Whether `needle` (non-empty) occurs as a consecutive run in `hay`.
fn contains_run(hay: &[String], needle: &[String]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

#[derive(Debug)]
enum Pred {
    Equals(Equals),
    Wildcard(Wildcard),
    Range(Box<RangePred>),
}

/// A term or phrase, pre-read for every type it may be compared as.
#[derive(Debug)]
struct Equals {
    text: String,
    tokens: Vec<String>,
    num: Option<Num>,
    strict_num: Option<Num>,
    date: Option<i64>,
    boolean: Option<bool>,
}

impl Equals {
    fn new(text: &str) -> Equals {
        Equals {
            text: text.to_owned(),
            tokens: tokenize(text),
            num: parse_num(text, false),
            strict_num: parse_num(text, true),
            date: parse_date(text),
            boolean: text_bool(text),
        }
    }
}

#[derive(Debug)]
struct Wildcard {
    parts: Vec<WildcardPart>,
    /// Literal characters lowercased, for words of `text`.
    lower: Vec<WildcardPart>,
}

impl Wildcard {
    fn new(pattern: &str) -> Wildcard {
        let parts = wildcard_parts(pattern);
        let lower = parts
            .iter()
            .flat_map(|p| match *p {
                WildcardPart::Char(c) => c.to_lowercase().map(WildcardPart::Char).collect(),
                other => vec![other],
            })
            .collect();
        Wildcard { parts, lower }
    }
}

/// Whether `s` matches the whole pattern (iterative, with backtracking to the last `*`).
fn wildcard_match(parts: &[WildcardPart], s: &str) -> bool {
    let text: Vec<char> = s.chars().collect();
    let (mut p, mut i) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while i < text.len() {
        match parts.get(p) {
            Some(WildcardPart::AnyString) => {
                star = Some((p, i));
                p += 1;
            }
            Some(WildcardPart::AnyChar) => {
                p += 1;
                i += 1;
            }
            Some(WildcardPart::Char(c)) if *c == text[i] => {
                p += 1;
                i += 1;
            }
            _ => match star {
                Some((sp, si)) => {
                    p = sp + 1;
                    i = si + 1;
                    star = Some((sp, si + 1));
                }
                None => return false,
            },
        }
    }
    parts[p.min(parts.len())..].iter().all(|x| *x == WildcardPart::AnyString)
}

type Bounds<T> = (Bound<T>, Bound<T>);

/// A range, with its bounds pre-read for every type it may be compared as (`None`: a bound
/// does not fit that type, so nothing of the type matches).
#[derive(Debug)]
struct RangePred {
    strings: Bounds<String>,
    lowercase: Bounds<String>,
    num: Option<Bounds<Num>>,
    strict_num: Option<Bounds<Num>>,
    date: Option<Bounds<i64>>,
    boolean: Option<Bounds<bool>>,
}

fn map_bounds<T>(lower: &Bound<String>, upper: &Bound<String>, f: impl Fn(&str) -> Option<T>) -> Option<Bounds<T>> {
    let one = |b: &Bound<String>| match b {
        Bound::Unbounded => Some(Bound::Unbounded),
        Bound::Included(s) => f(s).map(Bound::Included),
        Bound::Excluded(s) => f(s).map(Bound::Excluded),
    };
    Some((one(lower)?, one(upper)?))
}

impl RangePred {
    fn new(lower: &Bound<String>, upper: &Bound<String>) -> RangePred {
        RangePred {
            strings: (lower.clone(), upper.clone()),
            lowercase: map_bounds(lower, upper, |s| Some(s.to_lowercase()))
                .unwrap_or((Bound::Unbounded, Bound::Unbounded)),
            num: map_bounds(lower, upper, |s| parse_num(s, false)),
            strict_num: map_bounds(lower, upper, |s| parse_num(s, true)),
            date: map_bounds(lower, upper, parse_date),
            boolean: map_bounds(lower, upper, text_bool),
        }
    }
}

/// Whether `v` lies within the bounds; a value not equal to itself (NaN) never does.
fn in_range<T: ?Sized, B: std::borrow::Borrow<T>>(
    v: &T,
    (lower, upper): &Bounds<B>,
    cmp: impl Fn(&T, &T) -> Option<Ordering>,
) -> bool {
    if cmp(v, v) != Some(Ordering::Equal) {
        return false;
    }
    let lower_ok = match lower {
        Bound::Unbounded => true,
        Bound::Included(b) => matches!(cmp(v, b.borrow()), Some(Ordering::Greater | Ordering::Equal)),
        Bound::Excluded(b) => cmp(v, b.borrow()) == Some(Ordering::Greater),
    };
    let upper_ok = match upper {
        Bound::Unbounded => true,
        Bound::Included(b) => matches!(cmp(v, b.borrow()), Some(Ordering::Less | Ordering::Equal)),
        Bound::Excluded(b) => cmp(v, b.borrow()) == Some(Ordering::Less),
    };
    lower_ok && upper_ok
}

fn cmp_ord<T: Ord + ?Sized>(a: &T, b: &T) -> Option<Ordering> {
    Some(a.cmp(b))
}

impl Pred {
    /// Whether one scalar value (not null, not an array) of a property of type `ty` matches.
    fn test(&self, v: &Value, ty: Option<PropertyType>) -> bool {
        use PropertyType as T;
        match self {
            Pred::Equals(e) => match ty {
                Some(T::String) => string_form(v).is_some_and(|s| s == e.text),
                Some(T::Text) => string_form(v).is_some_and(|s| contains_run(&tokenize(&s), &e.tokens)),
                Some(T::Integer | T::Double) => match (value_num(v, false), e.num) {
                    (Some(a), Some(b)) => cmp_num(&a, &b) == Some(Ordering::Equal),
                    _ => false,
                },
                Some(T::Date) => e.date.is_some() && value_date(v) == e.date,
                Some(T::Boolean) => e.boolean.is_some() && value_bool(v) == e.boolean,
                None => match (value_num(v, true), e.strict_num) {
                    (Some(a), Some(b)) => cmp_num(&a, &b) == Some(Ordering::Equal),
                    _ => string_form(v).is_some_and(|s| s == e.text || contains_run(&tokenize(&s), &e.tokens)),
                },
            },
            Pred::Wildcard(w) => match ty {
                Some(T::String) => string_form(v).is_some_and(|s| wildcard_match(&w.parts, &s)),
                Some(T::Text) => {
                    string_form(v).is_some_and(|s| tokenize(&s).iter().any(|t| wildcard_match(&w.lower, t)))
                }
                Some(_) => false,
                None => string_form(v).is_some_and(|s| {
                    wildcard_match(&w.parts, &s) || tokenize(&s).iter().any(|t| wildcard_match(&w.lower, t))
                }),
            },
            Pred::Range(r) => match ty {
                Some(T::String) => string_form(v).is_some_and(|s| in_range::<str, String>(&s, &r.strings, cmp_ord)),
                Some(T::Text) => string_form(v)
                    .is_some_and(|s| tokenize(&s).iter().any(|t| in_range::<str, String>(t, &r.lowercase, cmp_ord))),
                Some(T::Integer | T::Double) => match (value_num(v, false), &r.num) {
                    (Some(n), Some(b)) => in_range(&n, b, cmp_num),
                    _ => false,
                },
                Some(T::Date) => match (value_date(v), &r.date) {
                    (Some(d), Some(b)) => in_range(&d, b, cmp_ord),
                    _ => false,
                },
                Some(T::Boolean) => match (value_bool(v), &r.boolean) {
                    (Some(x), Some(b)) => in_range(&x, b, cmp_ord),
                    _ => false,
                },
                None => match (value_num(v, true), &r.strict_num) {
                    (Some(n), Some(b)) => in_range(&n, b, cmp_num),
                    _ => string_form(v).is_some_and(|s| in_range::<str, String>(&s, &r.strings, cmp_ord)),
                },
            },
        }
    }
}

/// Calls `f` on each scalar value of property `name` (arrays expanded, nulls skipped) until it
/// returns true. A name not in the map is looked up through nested objects.
fn any_value(map: &Map<String, Value>, name: &str, f: &mut dyn FnMut(&Value) -> bool) -> bool {
    if let Some(v) = map.get(name) {
        return any_scalar(v, f);
    }
    for (i, _) in name.match_indices('.') {
        if let Some(inner) = map.get(&name[..i])
            && any_nested(inner, &name[i + 1..], f)
        {
            return true;
        }
    }
    false
}

fn any_nested(v: &Value, rest: &str, f: &mut dyn FnMut(&Value) -> bool) -> bool {
    match v {
        Value::Object(m) => any_value(m, rest, f),
        Value::Array(items) => items.iter().any(|e| any_nested(e, rest, f)),
        _ => false,
    }
}

fn any_scalar(v: &Value, f: &mut dyn FnMut(&Value) -> bool) -> bool {
    match v {
        Value::Null | Value::Object(_) => false,
        Value::Array(items) => items.iter().any(|e| any_scalar(e, f)),
        _ => f(v),
    }
}

/// Calls `f` on each (dotted name, scalar value) of the record, nested objects flattened, until
/// it returns true.
fn any_leaf(map: &Map<String, Value>, prefix: &str, f: &mut dyn FnMut(&str, &Value) -> bool) -> bool {
    map.iter().any(|(k, v)| {
        let name: Cow<'_, str> = if prefix.is_empty() { Cow::Borrowed(k) } else { Cow::Owned(format!("{prefix}.{k}")) };
        any_leaf_value(&name, v, f)
    })
}

fn any_leaf_value(name: &str, v: &Value, f: &mut dyn FnMut(&str, &Value) -> bool) -> bool {
    match v {
        Value::Null => false,
        Value::Object(m) => any_leaf(m, name, f),
        Value::Array(items) => items.iter().any(|e| any_leaf_value(name, e, f)),
        _ => f(name, v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use m1_engine::schema::Property;
    use proptest::prelude::*;
    use serde_json::json;

    use crate::syntax::parse;

    fn schema() -> Schema {
        use PropertyType as T;
        let mut s = Schema::default();
        let props = [
            Property::new("s", T::String),
            Property::new("tags", T::String).multi(),
            Property::new("body", T::Text),
            Property::new("n", T::Integer),
            Property::new("nums", T::Integer).multi(),
            Property::new("x", T::Double),
            Property::new("t", T::Date),
            Property::new("b", T::Boolean),
            Property::new("session.geo.city", T::String),
            Property::new("empty", T::String),
        ];
        s.add(&props, &[]).unwrap();
        s
    }

    fn record(v: Value) -> Record {
        v.as_object().expect("an object").clone()
    }

    fn sample() -> Record {
        record(json!({
            "_m1key": 7,
            "s": "Oslo",
            "tags": ["red", "Green", null],
            "body": "The quick brown Fox — jumps over the lazy dog. Ærlig talt!",
            "n": -42,
            "nums": ["1", 2, "3"],
            "x": "2.5",
            "t": "2021-02-23T19:18:04.399Z",
            "b": "TRUE",
            "session.geo.city": "Zürich",
            "empty": "",
            "nothing": null,
            "free": "Hello World",
            "count": "17",
        }))
    }

    /// Whether `q` matches `rec` under the test schema.
    fn m(q: &str, rec: &Record) -> bool {
        let query = parse(q).unwrap_or_else(|e| panic!("{q}: {e}"));
        Matcher::with_schema(&query, &schema()).matches(rec)
    }

    fn yes(q: &str) {
        assert!(m(q, &sample()), "{q} should match");
    }

    fn no(q: &str) {
        assert!(!m(q, &sample()), "{q} should not match");
    }

    #[test]
    fn all_and_existence() {
        yes("*");
        yes("*:*");
        yes("s:*");
        yes("tags:*");
        yes("empty:*");
        no("missing:*");
        no("nothing:*");
        assert!(!m("n:*", &record(json!({"n": "not a number"}))));
        assert!(!m("tags:*", &record(json!({"tags": []}))));
        assert!(!m("tags:*", &record(json!({"tags": [null]}))));
        assert!(m("*", &record(json!({}))));
    }

    #[test]
    fn string_is_exact_and_case_sensitive() {
        yes("s:Oslo");
        no("s:oslo");
        no("s:Osl");
        yes(r#"s:"Oslo""#);
        yes("s:Os*");
        yes("s:?slo");
        no("s:os*");
        yes("s:[N TO P]");
        no("s:{Oslo TO P]");
        yes("s:[Oslo TO Oslo]");
        yes("empty:\"\"");
        no("empty:x");
        yes("empty:[* TO a]");
        assert!(m("s:42", &record(json!({"s": 42}))), "numbers are read as their string form");
        assert!(m(r#"s:"a b""#, &record(json!({"s": "a b"}))));
        assert!(!m("s:a", &record(json!({"s": "a b"}))));
    }

    #[test]
    fn multi_valued_match_any_element() {
        yes("tags:red");
        yes("tags:Green");
        no("tags:green");
        yes("tags:(blue OR red)");
        no("tags:(blue OR yellow)");
        yes("tags:Gr*");
        yes("nums:3");
        yes("nums:[3 TO 10]");
        no("nums:[4 TO 10]");
        yes("+nums:1 +nums:3");
        no("-tags:red");
    }

    #[test]
    fn text_is_tokenized_and_lowercased() {
        yes("body:fox");
        yes("body:FOX");
        yes("body:Quick");
        no("body:qui");
        yes(r#"body:"brown fox""#);
        yes(r#"body:"BROWN   fox!""#);
        no(r#"body:"fox brown""#);
        yes("body:\"lazy dog\"");
        yes("body:lazy-dog"); // a term of several words is a phrase
        no("body:dog-lazy");
        yes("body:qu*");
        yes("body:F?x");
        yes("body:ærlig");
        yes("body:ÆRLIG");
        yes("body:[jumps TO jumps]");
        yes("body:[a TO c]"); // "brown"
        no("body:[a TO b]");
        no("body:[x TO y]");
        no("body:\"\"");
        no("body:\"—\"");
        assert_eq!(tokenize("Hello, WORLD! 東京 ünïcödé 3.5"), ["hello", "world", "東京", "ünïcödé", "3", "5"]);
    }

    #[test]
    fn numbers_compare_numerically() {
        yes("n:-42");
        yes("n:\"-42\"");
        yes("n:-42.0");
        no("n:42");
        no("n:abc");
        yes("n:[-50 TO -40]");
        yes("n:[-42 TO -42]");
        no("n:{-42 TO 0]");
        yes("n:[* TO 0}");
        no("n:[0 TO *]");
        yes("x:2.5");
        yes("x:[2 TO 3]");
        yes("x:{2.4 TO 2.6}");
        no("x:[2.6 TO *]");
        no("x:[a TO b]");
        yes("x:*");
        let big = record(json!({"n": 9007199254740993i64}));
        assert!(m("n:9007199254740993", &big), "integers compare exactly");
        assert!(!m("n:9007199254740992", &big));
        assert!(m("x:1e3", &record(json!({"x": 1000}))));
        assert!(m("x:[-inf TO inf]", &record(json!({"x": -1e300}))));
    }

    #[test]
    fn nan_never_matches() {
        let nan = record(json!({"x": "NaN", "n": "nan"}));
        assert!(!m("x:NaN", &nan));
        assert!(!m("x:[* TO *]", &nan));
        assert!(!m("x:[-inf TO inf]", &nan));
        assert!(m("x:*", &nan), "NaN is a value");
        assert!(!m("x:[NaN TO *]", &record(json!({"x": 1}))));
        assert!(!m("x:[* TO NaN]", &record(json!({"x": 1}))));
        assert!(!m("x:NaN", &record(json!({"x": 1}))));
        // Unknown properties: "nan" is a word, not a number.
        assert!(m("free:nan", &record(json!({"free": "NaN"}))));
    }

    #[test]
    fn dates_compare_as_instants() {
        yes("t:\"2021-02-23T19:18:04.399Z\"");
        yes("t:2021-02-23T20:18:04.399+01\\:00");
        yes("t:1614107884399");
        no("t:2021-02-23");
        yes("t:[2021-01-01T00:00:00Z TO *]");
        yes("t:[2021-01-01 TO 2022-01-01}");
        yes(r#"t:["2021-02-23 19:18:04.399" TO "2021-02-23 19:18:04.399"]"#);
        no("t:{2021-02-23T19:18:04.399Z TO *]");
        no("t:[yesterday TO *]");
        no("t:[* TO 2021-01-01]");
        let epoch = record(json!({"t": 0}));
        assert!(m("t:1970-01-01T00:00:00Z", &epoch));
        assert!(m("t:[1969-12-31T23:59:59.999Z TO 1970-01-01T00:00:00.001Z]", &epoch));
        assert!(m("t:0", &epoch));
        assert!(!m("t:{0 TO *]", &epoch));
        let seconds = record(json!({"t": 946702800}));
        assert!(m("t:\"2000-01-01T05:00:00Z\"", &seconds), "epoch numbers below 10^11 are seconds");
        let future = record(json!({"t": "9999-12-31T23:59:59.999Z"}));
        assert!(m("t:[3000-01-01 TO *]", &future));
        assert!(m("t:\"9999-12-31T23:59:59.999Z\"", &future));
        assert!(!m("t:[* TO 3000-01-01]", &future));
        let before = record(json!({"t": "1900-01-01"}));
        assert!(m("t:[* TO 0}", &before), "negative instants");
        assert!(!m("t:*", &record(json!({"t": "not a date"}))));
    }

    #[test]
    fn booleans() {
        yes("b:true");
        yes("b:TRUE");
        yes("b:yes");
        no("b:false");
        no("b:maybe");
        assert!(m("b:false", &record(json!({"b": false}))));
        assert!(m("b:0", &record(json!({"b": false}))));
        assert!(m("b:[false TO true]", &record(json!({"b": false}))));
        assert!(!m("b:{false TO true]", &record(json!({"b": false}))));
    }

    #[test]
    fn unknown_properties() {
        // Strings: exact, or as text.
        yes("free:\"Hello World\"");
        yes("free:hello");
        yes("free:\"hello world\"");
        yes("free:HEL*");
        yes("free:Hello*");
        no("free:bye");
        // Numbers when both sides are numbers.
        yes("count:17");
        yes("count:17.0");
        yes("count:[10 TO 20]");
        no("count:[2 TO 3]"); // numeric, not lexicographic
        yes("_m1key:7");
        yes("free:[A TO Z]");
        assert!(m("flag:true", &record(json!({"flag": true}))));
        assert!(m("id:ABC-123", &record(json!({"id": "ABC-123"}))));
        assert!(m("id:abc", &record(json!({"id": "ABC-123"}))));
        assert!(Matcher::untyped(&parse("s:oslo").unwrap()).matches(&record(json!({"s": "Oslo!"}))));
        let typed = Matcher::new(&parse("s:oslo").unwrap(), |name| (name == "s").then_some(PropertyType::String));
        assert!(!typed.matches(&record(json!({"s": "Oslo!"}))));
    }

    #[test]
    fn missing_and_null_never_match() {
        no("missing:x");
        no("missing:[* TO *]");
        no("nothing:null");
        no("nothing:[* TO *]");
        yes("-missing:x");
        yes("NOT nothing:*");
    }

    #[test]
    fn unfielded_terms_search_every_property() {
        yes("Oslo");
        yes("fox"); // text
        yes("red"); // multi-valued string
        yes("-42"); // NOT 42: no value is 42
        no("-Oslo");
    }

    #[test]
    fn unfielded_terms_use_each_property_type() {
        yes(r"\-42");
        yes("Zürich");
        no("zürich"); // session.geo.city is a string
        yes("hello"); // unknown property, as text
        no("oslo");
        yes("[2021-01-01 TO 2022-01-01]"); // the date property
        yes("Gr*");
        no("absent");
    }

    #[test]
    fn boolean_logic() {
        yes("s:Oslo AND n:-42");
        no("s:Oslo AND n:42");
        yes("s:Oslo OR n:42");
        no("s:Bergen OR n:42");
        yes("NOT s:Bergen");
        no("NOT s:Oslo");
        yes("-s:Bergen -n:1");
        no("-s:Bergen -n:-42");
        yes("+s:Oslo s:Bergen"); // optional clauses do not restrict when something is required
        yes("s:Oslo -s:Bergen");
        no("s:Bergen -s:Oslo");
        no("s:Oslo OR NOT s:Oslo"); // as in Lucene, `a OR NOT a` is `a -a`
        yes("s:Oslo OR (NOT s:Oslo)"); // a pure negative group is "everything except"
        yes("s:Bergen OR (NOT s:Bergen)");
        no("s:Bergen OR (NOT s:Oslo)");
        yes("(s:Oslo AND n:-42) OR b:false");
        no("s:Oslo AND (n:1 OR b:false)");
    }

    #[test]
    fn dotted_names_reach_nested_objects() {
        yes("session.geo.city:Zürich");
        let nested =
            record(json!({"session": {"geo": {"city": "Oslo"}, "id": 3}, "items": [{"sku": "a1"}, {"sku": "b2"}]}));
        assert!(m("session.geo.city:Oslo", &nested));
        assert!(m("session.id:3", &nested));
        assert!(m("items.sku:b2", &nested));
        assert!(!m("items.sku:c3", &nested));
        assert!(m("session.geo.city:*", &nested));
        assert!(m("Oslo", &nested), "unfielded terms walk nested objects");
        assert!(m("b2", &nested));
        let mixed = record(json!({"session.geo": {"city": "Bergen"}}));
        assert!(m("session.geo.city:Bergen", &mixed));
    }

    #[test]
    fn unicode_and_empty_values() {
        let r = record(json!({"s": "東京", "body": "日本 東京 大阪", "e": "", "emoji": "🦀 rust"}));
        assert!(m("s:東京", &r));
        assert!(m("s:東*", &r));
        assert!(m("s:?京", &r));
        assert!(m("body:東京", &r));
        assert!(m("body:\"東京 大阪\"", &r));
        assert!(m("emoji:rust", &r));
        assert!(m("emoji:🦀*", &r));
        assert!(m("e:\"\"", &r));
        assert!(!m("body:\"\"", &r));
        assert!(m("e:*", &r));
    }

    #[test]
    fn wildcard_matching() {
        use WildcardPart as W;
        let p = |s: &str| wildcard_parts(s);
        assert!(wildcard_match(&p("a*b*c"), "axxbyyc"));
        assert!(wildcard_match(&p("a*b*c"), "abc"));
        assert!(!wildcard_match(&p("a*b*c"), "acb"));
        assert!(wildcard_match(&p("*"), ""));
        assert!(!wildcard_match(&p("?"), ""));
        assert!(wildcard_match(&p("??"), "ÅÖ"));
        assert!(wildcard_match(&p(r"a\*"), "a*"));
        assert!(!wildcard_match(&p(r"a\*"), "ab"));
        assert!(wildcard_match(&p("*a*a*a*"), "xaxaxa"));
        assert!(!wildcard_match(&p("*a*a*a*b"), &"a".repeat(2000)));
        assert!(wildcard_match(&[W::Char('x')], "x"));
    }

    #[test]
    fn matchers_can_be_shared_between_threads() {
        fn shared<T: Send + Sync>(_: &T) {}
        let schema = schema();
        let q = parse("s:Oslo").unwrap();
        shared(&Matcher::new(&q, |name| schema.get(name).map(|p| p.ty)));
        shared(&Matcher::with_schema(&q, &schema));
    }

    proptest! {
        #[test]
        fn matching_never_panics(s in "\\PC{0,30}") {
            if let Ok(q) = parse(&s) {
                let rec = sample();
                let _ = Matcher::with_schema(&q, &schema()).matches(&rec);
                let _ = Matcher::untyped(&q).matches(&rec);
            }
        }
    }
}
