//! Differential: for any query text that parses, a data store (the tantivy translation) and the
//! matcher find the same records among awkward ones (`tests/support/docs.rs`); the store may
//! refuse a query as bad input (say, a wildcard too complex), never fail otherwise or panic.
#![no_main]

use std::collections::BTreeSet;
use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use m1::{Environment, QueryRequest, Record};
use m1_query::matcher::Matcher;

#[path = "../../tests/support/docs.rs"]
mod docs;

struct Fixture {
    env: Environment,
    lake: Vec<Record>,
    _dir: tempfile::TempDir,
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let dir = tempfile::tempdir().unwrap();
    let env = Environment::create(dir.path().join("env").to_str().unwrap()).unwrap();
    env.add_properties(&docs::properties()).unwrap();
    let rows = docs::records(240);
    env.append_json(rows[..120].iter().cloned()).unwrap();
    env.append_json(rows[120..].iter().cloned()).unwrap();
    env.stores().sync(env.engine()).unwrap();
    let keys: Vec<u64> = (0..rows.len() as u64).collect();
    let lake = env.get_json(&keys, None).unwrap();
    Fixture { env, lake, _dir: dir }
});

fuzz_target!(|data: &[u8]| {
    let Ok(q) = std::str::from_utf8(data) else { return };
    let Ok(query) = m1_query::syntax::parse(q) else { return };
    let f = &*FIXTURE;
    let mut request = QueryRequest::new("index", q);
    request.rows = 10_000;
    request.fl = Some(vec!["_m1key".to_string()]);
    let found = f.env.query(&request).and_then(|a| a.items(f.env.engine()).map_err(m1::Error::from));
    let items = match found {
        Ok(items) => items,
        Err(e) if e.kind() == m1::ErrorKind::BadInput => return,
        Err(e) => panic!("{q:?}: the store failed: {e}"),
    };
    let store: BTreeSet<u64> = items.iter().map(|r| r["_m1key"].as_u64().unwrap()).collect();
    let schema = f.env.schema().unwrap();
    let matcher = Matcher::with_schema(&query, &schema);
    let expected: BTreeSet<u64> =
        f.lake.iter().filter(|r| matcher.matches(r)).map(|r| r["_m1key"].as_u64().unwrap()).collect();
    assert_eq!(store, expected, "{q:?}: the store and the matcher disagree");
});
