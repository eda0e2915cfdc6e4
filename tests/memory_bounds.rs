//! The service's memory bound (`maxTotalMemoryGb`, or the system parameter `memory-limit-bytes`
//! that tests use, since the seed's smallest bound is 24 GB): boost stores may hold three
//! quarters of it and refuse to grow past it, with an error that says which bound; the segment
//! cache holds at most a quarter; and the bound changes live.

use m1::endpoint::{EnvCall, FreshOpener, OpsCall, Output, call_env, call_ops};
use m1::{Catalog, EnvConfig, Environment, ErrorKind};
use serde_json::{Value, json};

fn env_call(env: &Environment, path: &str, params: &[(&str, &str)]) -> m1::Result<Value> {
    let params = params.iter().map(|(k, v)| (k.to_string(), v.to_string()));
    match call_env(&EnvCall::local(env), path, params)? {
        Output::Json(v) => Ok(v),
        _ => Ok(Value::Null),
    }
}

#[test]
fn boost_stores_stay_within_the_memory_bound_and_the_segment_cache_within_its_share() {
    let home = tempfile::tempdir().unwrap();
    let cat = Catalog::open(home.path()).unwrap();
    cat.create("mem", None, EnvConfig { segment_rows: 5_000, ..EnvConfig::default() }).unwrap();
    let env = Environment::open_in(&cat, "mem").unwrap();
    let rows: Vec<_> = (0..60_000)
        .map(|i| json!({"name": format!("person {i} with a longer name"), "city": format!("c{}", i % 997), "n": i}))
        .map(|v| v.as_object().unwrap().clone())
        .collect();
    env.add_properties(&[
        m1::Property::new("name", m1::PropertyType::Text),
        m1::Property::new("city", m1::PropertyType::String),
        m1::Property::new("n", m1::PropertyType::Integer),
    ])
    .unwrap();
    env.append_json(rows).unwrap();

    // 1 MB: its boost share (768 KB) is far less than an index of 60,000 records takes.
    env_call(&env, "system", &[("memory-limit-bytes", "1000000")]).unwrap();
    assert_eq!(env.engine().memory().limit(), Some(1_000_000));
    let err = env_call(&env, "store/create", &[("store", "fast"), ("type", "boost")]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    assert!(err.to_string().contains("memory-limit-bytes") && err.to_string().contains("maxTotalMemoryGb"), "{err}");
    let held = env.engine().memory().index_bytes();
    assert!(held > 750_000 && held < 4_000_000, "it stopped at the bound, not far past it: {held}");
    // Standard stores are on disk, outside the bound.
    let answer = env_call(&env, "store/create", &[("store", "disk")]).unwrap();
    assert_eq!(answer["documents"], 60_000, "{answer}");

    // The segment cache keeps to its quarter.
    assert!(env.engine().segment_cache().bytes() <= 250_000, "{}", env.engine().segment_cache().bytes());

    // A larger bound (live), and the boost store fills; dropping it gives its memory back.
    env_call(&env, "system", &[("memory-limit-bytes", "2000000000")]).unwrap();
    env_call(&env, "store/rebuild", &[("store", "fast")]).unwrap();
    let q = env_call(&env, "store/list", &[]).unwrap();
    let fast = q.as_array().unwrap().iter().find(|s| s["name"] == "fast").unwrap().clone();
    assert_eq!(fast["documents"], 60_000, "{q}");
    let held = env.engine().memory().index_bytes();
    assert!(held > 1_000_000, "a whole boost store is charged: {held}");
    env_call(&env, "store/destroy", &[("store", "fast")]).unwrap();
    assert_eq!(env.engine().memory().index_bytes(), 0, "a destroyed store refunds what it held");

    // maxTotalMemoryGb sets it too (the lower of the two applies).
    env_call(&env, "system", &[("memory-limit-bytes", "null")]).unwrap();
    let call = OpsCall { catalog: &cat, envs: &FreshOpener(&cat) };
    call_ops(
        &call,
        "env/settings",
        [("env".into(), "mem".into()), ("settings".into(), r#"{"maxTotalMemoryGb": 48}"#.into())],
    )
    .unwrap();
    let reopened = Environment::open_in(&cat, "mem").unwrap();
    assert_eq!(reopened.engine().memory().limit(), Some(48 << 30));
}
