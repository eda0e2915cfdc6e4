//! Differential: a data store (the query's tantivy translation) and the matcher (the same query
//! evaluated record by record, as `filter` rules and session stores do) find the same records,
//! for random queries over awkward records (`support::docs`). The fuzz target `differential`
//! does the same for arbitrary query text.

mod support;

use std::collections::BTreeSet;
use std::sync::OnceLock;

use m1::{Environment, QueryRequest, Record};
use m1_query::matcher::Matcher;
use proptest::prelude::*;
use support::docs;

/// The environment with the records, indexed, and the records as the lake returns them.
fn fixture() -> &'static (Environment, Vec<Record>, tempfile::TempDir) {
    static FIXTURE: OnceLock<(Environment, Vec<Record>, tempfile::TempDir)> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let env = Environment::create(dir.path().join("env").to_str().unwrap()).unwrap();
        env.add_properties(&docs::properties()).unwrap();
        let rows = docs::records(240);
        // Two appends, so the store answers across segments.
        env.append_json(rows[..120].iter().cloned()).unwrap();
        env.append_json(rows[120..].iter().cloned()).unwrap();
        env.stores().sync(env.engine()).unwrap();
        let keys: Vec<u64> = (0..rows.len() as u64).collect();
        let lake = env.get_json(&keys, None).unwrap();
        (env, lake, dir)
    })
}

/// The keys the store finds, or its error.
fn store_keys(env: &Environment, q: &str) -> Result<BTreeSet<u64>, m1::Error> {
    let mut request = QueryRequest::new("index", q);
    request.rows = 10_000;
    request.fl = Some(vec!["_m1key".to_string()]);
    let answer = env.query(&request)?;
    let items = answer.items(env.engine())?;
    let keys: BTreeSet<u64> = items.iter().map(|r| r["_m1key"].as_u64().unwrap()).collect();
    assert_eq!(answer.count, keys.len() as u64, "{q}: the count and the page differ");
    Ok(keys)
}

/// Compares the store and the matcher on `q`; a query the store refuses as bad input is skipped
/// (the matcher has no such limits), any other disagreement fails.
fn agree(q: &str) -> Result<(), TestCaseError> {
    let (env, lake, _) = fixture();
    let Ok(query) = m1_query::syntax::parse(q) else { return Ok(()) };
    let store = match store_keys(env, q) {
        Ok(keys) => keys,
        Err(e) if e.kind() == m1::ErrorKind::BadInput => return Ok(()),
        Err(e) => return Err(TestCaseError::fail(format!("{q}: the store failed: {e}"))),
    };
    let schema = env.schema().unwrap();
    let matcher = Matcher::with_schema(&query, &schema);
    let expected: BTreeSet<u64> =
        lake.iter().filter(|r| matcher.matches(r)).map(|r| r["_m1key"].as_u64().unwrap()).collect();
    if store != expected {
        let only_store: Vec<_> = store.difference(&expected).take(3).map(|k| &lake[*k as usize]).collect();
        let only_matcher: Vec<_> = expected.difference(&store).take(3).map(|k| &lake[*k as usize]).collect();
        return Err(TestCaseError::fail(format!(
            "{q}: the store found {} records, the matcher {}\nonly the store: {only_store:?}\nonly the matcher: \
             {only_matcher:?}",
            store.len(),
            expected.len()
        )));
    }
    Ok(())
}

/// A value as query text: quoted when it has spaces or query syntax.
fn quoted(v: &str) -> String {
    if v.is_empty() || v.chars().any(|c| c.is_whitespace() || "():[]{}\"*?+-!^~\\/&|".contains(c)) {
        format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        v.to_string()
    }
}

fn iso(ms: i64) -> String {
    support::iso(ms)
}

/// One clause on one property.
fn leaf() -> impl Strategy<Value = String> {
    let strings = prop::sample::select(docs::STRINGS.to_vec()).prop_map(|v| format!("s:{}", quoted(v)));
    let tags = prop::sample::select(docs::TAGS.to_vec()).prop_map(|v| format!("tags:{}", quoted(v)));
    let words = prop::sample::select(docs::WORDS.to_vec()).prop_map(|v| format!("body:{}", quoted(v)));
    let phrase = (prop::sample::select(docs::WORDS.to_vec()), prop::sample::select(docs::WORDS.to_vec()))
        .prop_map(|(a, b)| format!("body:\"{a} {b}\""));
    let prefix =
        (prop::sample::select(vec!["s", "tags", "body"]), prop::sample::select(docs::WORDS.to_vec()), 1..4usize)
            .prop_map(|(f, w, n)| format!("{f}:{}*", w.chars().take(n).collect::<String>().to_lowercase()));
    let single = (prop::sample::select(vec!["s", "body"]), prop::sample::select(vec!["Osl?", "o?lo", "f?x", "?"]))
        .prop_map(|(f, w)| format!("{f}:{w}"));
    let ints = prop::sample::select(docs::INTS.to_vec()).prop_map(|v| format!("n:{v}"));
    let doubles = prop::sample::select(docs::DOUBLES.to_vec()).prop_map(|v| format!("x:{v}"));
    let dates = prop::sample::select(docs::DATES.to_vec()).prop_map(|v| format!("t:\"{}\"", iso(v)));
    let bools = prop::bool::ANY.prop_map(|v| format!("b:{v}"));
    let range =
        (0..4usize, prop::bool::ANY, prop::bool::ANY, any::<prop::sample::Index>(), any::<prop::sample::Index>())
            .prop_map(|(which, lo_in, hi_in, lo, hi)| {
                let (field, mut pool): (&str, Vec<String>) = match which {
                    0 => ("n", docs::INTS.iter().map(|v| v.to_string()).chain(["2.5".into(), "-0.5".into()]).collect()),
                    1 => ("x", docs::DOUBLES.iter().map(|v| v.to_string()).chain(["1".into()]).collect()),
                    2 => ("t", docs::DATES.iter().map(|v| iso(*v)).chain(["2021-02-23".into()]).collect()),
                    _ => ("s", docs::STRINGS.iter().filter(|s| !s.is_empty()).map(|s| quoted(s)).collect()),
                };
                pool.push("*".into());
                let (open, close) = (if lo_in { '[' } else { '{' }, if hi_in { ']' } else { '}' });
                format!("{field}:{open}{} TO {}{close}", lo.get(&pool), hi.get(&pool))
            });
    let exists =
        prop::sample::select(vec!["s", "tags", "body", "n", "x", "t", "b", "nothing"]).prop_map(|f| format!("{f}:*"));
    let all = Just("*:*".to_string());
    prop_oneof![strings, tags, words, phrase, prefix, single, ints, doubles, dates, bools, range, exists, all]
}

/// Clauses combined with the language's operators, a few levels deep.
fn query() -> impl Strategy<Value = String> {
    leaf().prop_recursive(3, 12, 3, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a} AND {b})")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a} OR {b})")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a} {b})")),
            inner.clone().prop_map(|a| format!("NOT {a}")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("(+{a} -{b})")),
            inner.prop_map(|a| format!("(-{a})")),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: std::env::var("M1_DIFF_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(400), ..ProptestConfig::default() })]

    #[test]
    fn the_store_and_the_matcher_find_the_same_records(q in query()) {
        agree(&q)?;
    }
}

/// Cases that have disagreed before, or sit on an edge, run every time.
#[test]
fn known_edges_agree() {
    for q in [
        "*:*",
        "s:\"\"",
        "s:Oslo",
        "s:oslo",
        "tags:red",
        "tags:\"dark green\"",
        "body:brown",
        "body:\"quick brown\"",
        "body:pneumonoultramicroscopicsilicovolcanoconiosis",
        "body:don't",
        "body:e-mail",
        "body:東京",
        "n:[* TO 0}",
        "n:9007199254740993",
        "x:[0 TO 2.25]",
        "x:-0",
        "t:[1970-01-01 TO 2021-02-23]",
        "b:true AND NOT s:*",
        "-tags:*",
        "s:[A TO Z]",
        "-body:\"the the\"",
        "NOT (+n:{-5 TO 0} -t:\"1969-12-31T00:00:00.000Z\")",
    ] {
        agree(q).unwrap_or_else(|e| panic!("{e}"));
    }
}
