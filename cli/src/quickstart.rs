//! `m1 quickstart`: a demo environment from the bundled sample, published and queried through
//! the same endpoints a user calls, each printed with its command line.

use std::io::Write;

use anyhow::Result;
use m1::endpoint::{EnvCall, Output, call_env};
use m1::{Catalog, EnvConfig, Environment};

/// The bundled sample: 1,000 web events with nested objects, dates and tags.
const SAMPLE: &str = include_str!("../../samples/events.jsonl");
const SAMPLE_SCHEMA: &str = include_str!("../../samples/events.schema.json");

/// Calls one endpoint, printing its command line and its answer.
fn step(env: &Environment, n: usize, name: &str, endpoint: &str, params: &[(&str, &str)]) -> Result<()> {
    let quote = |v: &str| {
        if v.chars().all(|c| c.is_ascii_alphanumeric() || "@/._,-".contains(c)) {
            v.to_string()
        } else {
            format!("'{v}'")
        }
    };
    let shown: String = params.iter().map(|(k, v)| format!(" -{k} {}", quote(v))).collect();
    println!("{n}. m1 {name} {endpoint}{shown}");
    let pairs =
        params.iter().map(|(k, v)| Ok((k.to_string(), crate::cli::param_value(k, v)?))).collect::<Result<Vec<_>>>()?;
    let mut out = std::io::stdout().lock();
    match call_env(&EnvCall::local(env), endpoint, pairs)? {
        Output::Empty => {}
        Output::Json(v) => {
            serde_json::to_writer_pretty(&mut out, &v)?;
            writeln!(out)?;
        }
        Output::Stream { write, .. } => write(&mut out)?,
    }
    Ok(())
}

/// Runs the quickstart in the catalog of `$M1_HOME` (replacing an earlier `quickstart`).
pub fn run() -> Result<()> {
    let cat = Catalog::open(Catalog::default_home())?;
    let name = "quickstart";
    if cat.get(name)?.is_some() {
        cat.destroy(name)?;
    }
    let entry = cat.create(name, None, EnvConfig::default())?;
    println!("1. m1 ops env/create -env {name}\n   created at {}", entry.url);
    let env = Environment::open_in(&cat, name)?;
    let sample = cat.home().join("quickstart-events.jsonl");
    std::fs::write(&sample, SAMPLE)?;
    let sample = sample.display().to_string();
    let schema = cat.home().join("quickstart-events.schema.json");
    std::fs::write(&schema, SAMPLE_SCHEMA)?;
    step(&env, 2, name, "schema/add", &[("properties", &format!("@{}", schema.display()))])?;
    step(&env, 3, name, "publish", &[("file", &sample)])?;
    step(&env, 4, name, "next", &[])?;
    step(&env, 5, name, "get", &[("ids", "[10,500,999]"), ("properties", "event.type,geo.city")])?;
    step(&env, 6, name, "range", &[("start", "0"), ("end", "3"), ("properties", "event.type,geo.city,event.time")])?;
    step(
        &env,
        7,
        name,
        "query",
        &[
            ("q", "event.type:purchase AND user.agent:iphone"),
            ("rows", "2"),
            ("sort", "event.time desc"),
            ("fl", "event.type,geo.city,event.time"),
            ("facets", r#"{"cities": {"type": "terms", "field": "geo.city", "limit": 3}}"#),
        ],
    )?;
    println!("\nThe environment stays in the catalog: try `m1 {name} query -q 'geo.city:*' -rows 3`.");
    Ok(())
}
