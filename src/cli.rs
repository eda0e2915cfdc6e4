//! Command dispatch for the `m1` binary: parses the seeds' `-param value` syntax and calls the
//! library. Output is JSON on stdout; errors go to stderr with a non-zero exit.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use clap::Parser;
use m1::{Catalog, CatalogEntry, EnvConfig, Environment, Property, PublishRequest};
use serde_json::{Value, json};

const USAGE: &str = "\
Usage:
  m1 quickstart                         build a demo environment from a bundled sample and query it
  m1 auth <env> -url http://HOST:PORT [-username U -password P] | m1 signup -url URL | m1 auth -url URL (ops)
                                        log in to a remote `m1 serve`; later `m1 <env> ...` / `m1 ops ...` go there
  m1 serve [-port 8080] [-bind 127.0.0.1] [-env NAME|PATH|URL] [-maxBodyBytes N] [-readTimeoutMs N]
  m1 ops env/create -env NAME [-url URL] [-options JSON] [-servers N] [-shards N] [-segmentRows N]
  m1 ops env/bucket/register -env NAME -bucket BUCKET [-options JSON] | env/bucket/deregister ...
  m1 ops env/list | env/get -env NAME | env/rename -env NAME -name NEW | env/destroy -env NAME
  m1 <env> schema | schema/add -properties JSON | schema/wipe
  m1 <env> next | get -ids JSON [-properties JSON] | range -start N -end N [-properties JSON]
  m1 <env> publish -file PATH|URL|DIR|GLOB [-rules JSON] [-format csv|txt|json|jsonl] [-compression gz|zip|zst]
           [-encoding CHARSET] [-delimiter C] [-headers true|false] [-rows N] [-infer true] [-permissive true]
  m1 <env> write -items JSON [-publish true] [-rules JSON] [-async false]
  m1 <env> system [-name value ...] | vacuum [-olderThanMs N]
  m1 ops env/outbound -env NAME -enable true|false
  m1 ops env/store/create -env NAME -store S [-type standard|boost] [-shards N] [-replicas N]
  m1 ops env/store/rename -env NAME -store S -name NEW | env/store/destroy -env NAME -store S
  m1 <env> query -store S[,S2] -q QUERY [-rows N] [-start N] [-fl JSON|a,b] [-sort 'p desc, q asc']
           [-facets JSON] [-format json|csv]
  m1 <env> store/list | store/enable -store S [-enable false] | store/autocommit -store S -enable true|false
  m1 <env> store/rebuild -store S | store/commit -store S
  m1 ops env/session/create -env NAME -store S [-shards N] [-replicas N] | env/session/rename -env NAME -store S -name NEW
  m1 ops env/session/destroy -env NAME -store S
  m1 <env> session/add -store S [-key session.id] -shards N -replicas N | session/list | session/key -store S -key PROP
  m1 <env> session/rename -store S -name NEW | session/drop -store S
  m1 <env> session/update -store S -ops '[{upsert: [docs]}, {merge: [docs]}, {delete: [ids]}]'
  m1 <env> session/query -store S -q QUERY [-sort 'prop asc|desc'] [-start N] [-rows N] | session/get -store S -ids JSON

<env> is a name from the local catalog ($M1_HOME, default ~/.m1) or a path or URL.
A parameter value of @file reads the value from that file.";

/// Command-line arguments: a target, an endpoint, then `-name value` pairs.
#[derive(Parser, Debug)]
#[command(name = "m1", version, about = "m1: an embedded data lake (the embedded form of MinusOneDB)", after_help = USAGE)]
pub struct Args {
    /// `ops`, `quickstart`, or an environment name, path or URL.
    target: String,
    /// The endpoint, e.g. `schema/add` or `get`.
    #[arg(allow_hyphen_values = true)]
    endpoint: Option<String>,
    /// Parameters as `-name value` pairs.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    params: Vec<String>,
}

/// `-name value` parameters, with `@file` values read from files.
struct Params(BTreeMap<String, String>);

impl Params {
    fn parse(args: &[String]) -> Result<Params> {
        let mut map = BTreeMap::new();
        let mut it = args.iter();
        while let Some(name) = it.next() {
            let Some(key) = name.strip_prefix('-') else {
                bail!("expected a parameter name like -ids, found '{name}'");
            };
            let key = key.trim_start_matches('-');
            let value = it.next().ok_or_else(|| anyhow!("parameter -{key} has no value"))?;
            let value = match value.strip_prefix('@') {
                Some(file) => std::fs::read_to_string(file).with_context(|| format!("reading -{key} from {file}"))?,
                None => value.clone(),
            };
            map.insert(key.to_string(), value);
        }
        Ok(Params(map))
    }

    fn opt(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    fn req(&self, key: &str) -> Result<&str> {
        self.opt(key).ok_or_else(|| anyhow!("missing required parameter -{key}"))
    }

    fn json<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        self.opt(key)
            .map(|v| {
                serde_json::from_str(v)
                    .with_context(|| format!("parameter -{key} is not valid JSON of the expected shape"))
            })
            .transpose()
    }

    fn num<T: std::str::FromStr>(&self, key: &str) -> Result<Option<T>> {
        self.opt(key)
            .map(|v| v.trim().parse::<T>().map_err(|_| anyhow!("parameter -{key} must be a number, got '{v}'")))
            .transpose()
    }
}

fn print(value: &Value) -> Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}

/// Runs one command.
pub fn run(mut args: Args) -> Result<()> {
    // Commands without an endpoint (`m1 serve -port 8080`, `m1 auth -url ..`): the first
    // parameter name landed in the endpoint's place.
    if let Some(ep) = args.endpoint.take_if(|e| e.starts_with('-')) {
        args.params.insert(0, ep);
    }
    let params = Params::parse(&args.params)?;
    let endpoint = args.endpoint.as_deref();
    match (args.target.as_str(), endpoint) {
        ("quickstart", None) => quickstart(),
        ("serve", None) => serve(&params),
        // A remote `m1 serve`: logins, then calls with the stored token.
        ("auth", env) => print_remote(crate::remote::auth(env, &params.0)?),
        ("signup", None) => print_remote(crate::remote::signup(&params.0)?),
        ("ops", Some(ep)) => match crate::remote::login_for(None, params.opt("url"))? {
            Some(login) => print_remote(crate::remote::call(&login, None, ep, &params.0)?),
            None => ops(ep, &params),
        },
        ("ops", None) => bail!("m1 ops needs an endpoint, e.g. `m1 ops env/list`\n\n{USAGE}"),
        (_, None) => bail!("missing endpoint after '{}'\n\n{USAGE}", args.target),
        (env, Some(ep)) => match crate::remote::login_for(Some(env), params.opt("url"))? {
            Some(login) => print_remote(crate::remote::call(&login, Some(env), ep, &params.0)?),
            None => {
                let (env, entry) = open(env)?;
                environment(&env, entry.as_ref(), ep, &params)
            }
        },
    }
}

/// Prints a remote answer (nothing for an empty body, as the seeds' "No response").
fn print_remote(v: Value) -> Result<()> {
    if v.is_null() { Ok(()) } else { print(&v) }
}

/// `m1 serve`: the HTTP API until interrupted.
fn serve(p: &Params) -> Result<()> {
    let mut o = m1_server::ServeOptions { env: p.opt("env").map(str::to_string), ..Default::default() };
    o.port = p.num("port")?.unwrap_or(o.port);
    o.bind =
        p.opt("bind").map(str::parse).transpose().context("parameter -bind must be an IP address")?.unwrap_or(o.bind);
    o.max_body_bytes = p.num("maxBodyBytes")?.unwrap_or(o.max_body_bytes);
    o.read_timeout = p.num("readTimeoutMs")?.map(std::time::Duration::from_millis).unwrap_or(o.read_timeout);
    Ok(m1_server::serve(o)?)
}

fn catalog() -> Result<Catalog> {
    Ok(Catalog::open(Catalog::default_home())?)
}

/// Opens an environment by catalog name, id, path or URL (with its catalog entry, if any).
fn open(target: &str) -> Result<(Environment, Option<CatalogEntry>)> {
    let cat = catalog()?;
    if let Some(entry) = cat.get(target)? {
        return Ok((Environment::from_engine(cat.open_env(target)?), Some(entry)));
    }
    if target.contains("://") || Path::new(target).exists() {
        return Ok((Environment::open(target)?, None));
    }
    bail!(
        "no environment named '{target}' in the catalog (see `m1 ops env/list`; create one with `m1 ops env/create -env {target}`)"
    )
}

fn ops(endpoint: &str, p: &Params) -> Result<()> {
    let cat = catalog()?;
    match endpoint {
        "env/create" => {
            let name = p.opt("env").or(p.opt("name")).ok_or_else(|| anyhow!("missing required parameter -env"))?;
            let config = EnvConfig::from_params(|k| p.opt(k))?;
            let options = p.json("options")?.unwrap_or_default();
            let entry = cat.create_with(name, p.opt("url"), options, config)?;
            print(&serde_json::to_value(entry.redacted())?)
        }
        "env/list" => {
            let list: Vec<_> = cat.list()?.iter().map(CatalogEntry::redacted).collect();
            print(&serde_json::to_value(list)?)
        }
        "env/get" => {
            let name = p.req("env")?;
            let entry = cat.get(name)?.ok_or_else(|| anyhow!("no environment named '{name}'"))?;
            print(&serde_json::to_value(entry.redacted())?)
        }
        "env/outbound" => {
            let enable = flag(p, "enable")?.ok_or_else(|| anyhow!("missing required parameter -enable"))?;
            cat.set_outbound(p.req("env")?, enable)?;
            Ok(())
        }
        "env/bucket/register" => {
            let options = p.json("options")?.unwrap_or_default();
            cat.register_bucket(p.req("env")?, p.req("bucket")?, options)?;
            Ok(())
        }
        "env/bucket/deregister" => {
            cat.deregister_bucket(p.req("env")?, p.req("bucket")?)?;
            Ok(())
        }
        "env/rename" => {
            cat.rename(p.req("env")?, p.req("name")?)?;
            Ok(())
        }
        "env/destroy" => {
            cat.destroy(p.req("env")?)?;
            Ok(())
        }
        "env/store/create" | "env/store/rename" | "env/store/destroy" => {
            let env = Environment::from_engine(cat.open_env(p.req("env")?)?);
            store_admin(&env, endpoint.trim_start_matches("env/"), p)
        }
        ep if ep.starts_with("env/session/") => ops_session(&cat, ep, p),
        other => bail!("unknown ops endpoint '{other}'\n\n{USAGE}"),
    }
}

fn environment(env: &Environment, entry: Option<&CatalogEntry>, endpoint: &str, p: &Params) -> Result<()> {
    match endpoint {
        "schema" => print(&serde_json::to_value(env.schema()?.all())?),
        "schema/add" => {
            let props: Vec<Property> =
                p.json("properties")?.ok_or_else(|| anyhow!("missing required parameter -properties"))?;
            env.add_properties(&props)?;
            Ok(())
        }
        "schema/wipe" => Ok(env.wipe_schema()?),
        "next" => print(&json!(env.next_key()?)),
        "get" => {
            let ids: Vec<u64> = p.json("ids")?.ok_or_else(|| anyhow!("missing required parameter -ids"))?;
            let props: Option<Vec<String>> = p.json("properties")?;
            print(&Value::Array(env.get_json(&ids, props.as_deref())?.into_iter().map(Value::Object).collect()))
        }
        "range" => {
            let start: u64 = p.num("start")?.ok_or_else(|| anyhow!("missing required parameter -start"))?;
            let end: u64 = p.num("end")?.ok_or_else(|| anyhow!("missing required parameter -end"))?;
            let props: Option<Vec<String>> = p.json("properties")?;
            let range = env.range(start, end, props.as_deref())?;
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            m1::encode::write_json_array(&mut out, range)?;
            writeln!(out)?;
            Ok(())
        }
        "publish" => {
            let report = publish(env, &publish_request(entry, p)?)?;
            print(&serde_json::to_value(report)?)
        }
        "write" => {
            let items: Vec<Value> = p.json("items")?.ok_or_else(|| anyhow!("missing required parameter -items"))?;
            let options = m1::WriteOptions {
                ip: None,
                publish: flag(p, "publish")?.unwrap_or(false),
                rules: p.opt("rules").map(str::to_string),
                permissive: flag(p, "permissive")?,
            };
            let report = env.write(items, &options)?;
            // The seed's /write answers nothing unless asked to wait (`async=false`).
            if !flag(p, "async")?.unwrap_or(true) {
                print(&serde_json::to_value(report)?)?;
            }
            Ok(())
        }
        "system" => {
            let changes: std::collections::BTreeMap<String, Value> =
                p.0.iter()
                    .map(|(k, v)| (k.clone(), serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.clone()))))
                    .collect();
            let params = if changes.is_empty() { env.engine().system()? } else { env.engine().set_system(&changes)? };
            print(&serde_json::to_value(params)?)
        }
        "vacuum" => {
            let ms: u64 = p.num("olderThanMs")?.unwrap_or(3_600_000);
            print(&serde_json::to_value(env.vacuum(std::time::Duration::from_millis(ms))?)?)
        }
        "query" => query(env, p),
        ep if ep.starts_with("store/") => store_admin(env, ep, p),
        ep if ep.starts_with("session/") => session(env, ep, p),
        other => bail!("unknown endpoint '{other}'\n\n{USAGE}"),
    }
}

/// `/query`: JSON (count, items, facets) or CSV on stdout, items streamed.
fn query(env: &Environment, p: &Params) -> Result<()> {
    let (req, format) = m1_query::store::params::query_request(|k| p.opt(k))?;
    let answer = env.query(&req)?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    match format {
        m1_query::store::params::Format::Csv => answer.write_csv(env.engine(), &mut out)?,
        m1_query::store::params::Format::Json => answer.write_json(env.engine(), &mut out)?,
    }
    out.flush()?;
    Ok(())
}

/// `store/*` on an environment and `env/store/*` of ops.
fn store_admin(env: &Environment, endpoint: &str, p: &Params) -> Result<()> {
    match m1_query::store::params::admin(env.stores(), env.engine(), endpoint, |k| p.opt(k))? {
        Some(answer) => print(&answer),
        None => Ok(()),
    }
}

// --- Session stores (SPEC §7) ---

/// `m1 ops env/session/create|rename|destroy`: the ops side of session stores.
fn ops_session(cat: &Catalog, endpoint: &str, p: &Params) -> Result<()> {
    let env = Environment::from_engine(cat.open_env(p.req("env")?)?);
    session(&env, endpoint, p)
}

/// `m1 <env> session/...`.
fn session(env: &Environment, endpoint: &str, p: &Params) -> Result<()> {
    match m1_query::session::params::call(&env.sessions(), endpoint, |k| p.opt(k))? {
        Some(answer) => print(&answer),
        None => Ok(()),
    }
}

/// Builds a publish request from the seed's parameters (`-file`, `-rules`, `-format`, ...).
fn publish_request(entry: Option<&CatalogEntry>, p: &Params) -> Result<PublishRequest> {
    let mut req = PublishRequest::from_params(|k| p.opt(k))?;
    if let Some(entry) = entry {
        req.outbound = entry.outbound;
        req.store_options = entry.options_for(&req.file);
    }
    Ok(req)
}

fn flag(p: &Params, key: &str) -> Result<Option<bool>> {
    p.opt(key)
        .map(|v| match v.trim() {
            "true" | "1" | "yes" => Ok(true),
            "false" | "0" | "no" => Ok(false),
            other => Err(anyhow!("parameter -{key} must be true or false, got '{other}'")),
        })
        .transpose()
}

/// Publishes with a progress bar on a terminal (bytes and rows/s on stderr).
fn publish(env: &Environment, req: &PublishRequest) -> Result<m1::PublishReport> {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return Ok(env.publish(req)?);
    }
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {msg}")
            .expect("valid template"),
    );
    let report = env.publish_with_progress(req, &|p: &m1::Progress| {
        if let Some(total) = p.bytes_total {
            bar.set_length(total);
        }
        bar.set_position(p.bytes_read);
        let rate = p.rows as f64 / p.elapsed.as_secs_f64().max(1e-3);
        bar.set_message(format!("{} rows, {:.0} rows/s", p.rows, rate));
    });
    bar.finish_and_clear();
    Ok(report?)
}

/// The bundled sample: 1,000 web events with nested objects, dates and tags.
const SAMPLE: &str = include_str!("../samples/events.jsonl");
const SAMPLE_SCHEMA: &str = include_str!("../samples/events.schema.json");

fn quickstart() -> Result<()> {
    let cat = catalog()?;
    let name = "quickstart";
    if cat.get(name)?.is_some() {
        cat.destroy(name)?;
    }
    let entry = cat.create(name, None, EnvConfig::default())?;
    println!("1. created environment '{name}' at {}", entry.url);
    let env = Environment::open(&entry.url)?;
    let props: Vec<Property> = serde_json::from_str(SAMPLE_SCHEMA)?;
    env.add_properties(&props)?;
    println!("2. added {} properties to the schema: m1 {name} schema", props.len());
    let sample = cat.home().join("quickstart-events.jsonl");
    std::fs::write(&sample, SAMPLE)?;
    let report = env.publish(&PublishRequest::new(sample.display().to_string()))?;
    println!(
        "3. published {} records from {} in {:.3}s (keys {}..={}): m1 {name} publish -file {}",
        report.rows_published,
        sample.display(),
        report.seconds,
        report.first_key.unwrap_or(0),
        report.last_key.unwrap_or(0),
        sample.display()
    );
    println!("4. m1 {name} next\n{}", env.next_key()?);
    let got = env.get_json(&[10, 500, 999], None)?;
    println!("5. m1 {name} get -ids '[10,500,999]'");
    print(&Value::Array(got.into_iter().map(Value::Object).collect()))?;
    let cols = vec!["event.type".to_string(), "geo.city".to_string(), "event.time".to_string()];
    println!("6. m1 {name} range -start 0 -end 5 -properties '[\"event.type\",\"geo.city\",\"event.time\"]'");
    let mut out = std::io::stdout().lock();
    m1::encode::write_json_array(&mut out, env.range(0, 5, Some(&cols))?)?;
    writeln!(out)?;
    let q = "event.type:purchase AND user.agent:iphone";
    let facets = json!({"cities": {"type": "terms", "field": "geo.city", "limit": 3}});
    println!("7. m1 {name} query -store index -q '{q}' -rows 2 -sort 'event.time desc' -facets '{facets}'");
    let mut req = m1::QueryRequest::new("index", q);
    req.rows = 2;
    req.sort = Some("event.time desc".into());
    req.facets = Some(facets);
    env.query(&req)?.write_json(env.engine(), &mut out)?;
    Ok(())
}
