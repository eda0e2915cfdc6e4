//! The command line: `m1 <target> <endpoint> -name value ...`, decoded by the library's
//! endpoint table, run locally or sent to a remote `m1 serve`. Output is JSON (or the endpoint's
//! stream) on stdout; errors go to stderr with a non-zero exit.
//!
//! Invariant: the only name the CLI takes for itself among an endpoint's parameters is
//! `-remote` (the server address); no endpoint declares it (a test checks).

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use m1::endpoint::{
    self, Access, Answer, Args, Endpoint, EnvCall, FreshOpener, Handler, Kind, OpsCall, Output, Param, Scope, Verbs,
};
use m1::{Catalog, Environment};

/// The parameter that names a remote server instead of calling locally.
pub const REMOTE: &str = "remote";

/// `m1 serve`'s options, declared once like an endpoint's parameters.
static SERVE: Endpoint = Endpoint {
    scope: Scope::Env,
    path: "serve",
    verbs: Verbs::Get,
    access: Access::Public,
    params: &[
        Param::with_default("port", Kind::Int, "8080", "TCP port (0 picks a free one)"),
        Param::with_default("bind", Kind::Text, "127.0.0.1", "address to listen on"),
        Param::optional("env", Kind::Text, "serve this one environment (name, path or URL) at the root"),
        Param::with_default("maxBodyBytes", Kind::Int, "67108864", "largest request body (413 above)"),
        Param::with_default("readTimeoutMs", Kind::Int, "30000", "longest wait for a request's headers or body"),
        Param::optional("allowRead", Kind::List, "directories /publish may read besides each stage (none by default)"),
        Param::optional(
            "allowLocation",
            Kind::List,
            "directories or URL prefixes for env/create (default $M1_HOME/envs)",
        ),
        Param::with_default("signup", Kind::Bool, "false", "whether anyone may sign up as an ops user"),
        Param::with_default("maxPublishes", Kind::Int, "2", "publishes and writes at once (more answer 503)"),
        Param::with_default(
            "usageIntervalMs",
            Kind::Int,
            "300000",
            "how often usage is sampled (ops usage, /v1/billing/usage)",
        ),
    ],
    open_params: false,
    takes_body: false,
    answer: Answer::Empty,
    summary: "serves the HTTP API of the catalog's environments until interrupted",
    handler: Handler::Served,
};

fn usage() -> String {
    let mut out = String::from(
        "m1: an embedded data lake (the embedded form of MinusOneDB)

Usage:
  m1 <env> <endpoint> [-name value ...] [-remote URL]   an environment's endpoint
  m1 ops <endpoint> [-name value ...] [-remote URL]     an ops endpoint (environments, accounts)
  m1 quickstart                                         a demo environment, published and queried
  m1 serve [-name value ...]                            the HTTP API (`m1 serve --help`: its options)
  m1 auth [<env>] -remote URL [-username U -password P] log in to a remote `m1 serve`
  m1 signup -remote URL [-username U -password P]       an ops user on a remote `m1 serve`
  m1 owner -username U -password P                      the owner of ops account `default` (this machine's catalog)
  m1 init <env> -username U -password P                 an environment's first admin, for `m1 serve`
  m1 <env> <endpoint> --help                            an endpoint's parameters

<env> is a name from the catalog ($M1_HOME, default ~/.m1), a path or a URL (file://, s3://,
gs://, az://, memory://). A value @FILE reads the value from FILE. -remote URL (or $M1_REMOTE)
sends the call to `m1 serve` at URL; after `m1 auth`, calls for that environment go there.

Environment endpoints:
",
    );
    let list = |out: &mut String, scope| {
        for e in endpoint::of(scope) {
            out.push_str(&format!("  {:20} {}\n", e.path, e.summary));
        }
    };
    list(&mut out, Scope::Env);
    out.push_str("\nOps endpoints (m1 ops ...):\n");
    list(&mut out, Scope::Ops);
    out
}

/// A parameter value as given, or the contents of FILE for `@FILE`.
pub fn param_value(name: &str, value: &str) -> Result<String> {
    match value.strip_prefix('@') {
        Some(file) => std::fs::read_to_string(file).with_context(|| format!("reading -{name} from {file}")),
        None => Ok(value.to_string()),
    }
}

/// `-name value` pairs in order, with `@file` values read.
fn parse_params(args: &[String]) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut it = args.iter();
    while let Some(name) = it.next() {
        let Some(key) = name.strip_prefix('-') else {
            bail!("expected a parameter name like -ids, found '{name}'");
        };
        let key = key.trim_start_matches('-');
        let value = it.next().ok_or_else(|| anyhow!("parameter -{key} has no value"))?;
        if out.iter().any(|(k, _)| k == key) {
            bail!("parameter -{key} is given twice");
        }
        out.push((key.to_string(), param_value(key, value)?));
    }
    Ok(out)
}

/// Splits `-remote URL` off the endpoint's parameters.
fn take_remote(params: &mut Vec<(String, String)>) -> Option<String> {
    let i = params.iter().position(|(k, _)| k == REMOTE)?;
    Some(params.remove(i).1)
}

fn wants_help(args: &[String]) -> bool {
    args.iter().any(|a| a == "--help" || a == "-h")
}

/// Runs one command line (without the program name).
pub fn run(args: Vec<String>) -> Result<()> {
    let first = args.first().map(String::as_str);
    match first {
        None | Some("-h" | "--help" | "help") => {
            match args.get(1) {
                Some(path) => {
                    let scope = if args.get(2).is_some() && path == "ops" { Scope::Ops } else { Scope::Env };
                    let path = if scope == Scope::Ops { &args[2] } else { path };
                    println!("{}", endpoint::require(scope, path)?.help());
                }
                None => print!("{}", usage()),
            }
            Ok(())
        }
        Some("-V" | "--version") => {
            println!("m1 {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        // `m1 quickstart` alone is the demo; `m1 quickstart next` calls the environment it made.
        Some("quickstart") if args.len() == 1 => crate::quickstart::run(),
        Some("serve" | "signup") if args.get(1).is_some_and(|a| !a.starts_with('-')) => call(&args),
        Some("serve") if wants_help(&args[1..]) => {
            println!("{}", SERVE.help().replacen("m1 <env> serve", "m1 serve", 1));
            Ok(())
        }
        Some("serve") => serve(&parse_params(&args[1..])?),
        Some("auth") => {
            let (env, rest) = match args.get(1) {
                Some(e) if !e.starts_with('-') => (Some(e.as_str()), &args[2..]),
                _ => (None, &args[1..]),
            };
            let mut params = parse_params(rest)?;
            let url = take_remote(&mut params);
            print_json(crate::remote::auth(env, url.as_deref(), params)?)
        }
        Some("owner") if args.get(1).is_none_or(|a| a.starts_with('-')) => {
            let params = parse_params(&args[1..])?;
            let (user, password) = credentials(&params)?;
            m1_server::init_owner(&Catalog::default_home(), &user, &password)?;
            eprintln!("'{user}' owns the ops account 'default' (log in with `m1 auth -remote URL`)");
            Ok(())
        }
        Some("init") if args.get(1).is_some_and(|a| !a.starts_with('-')) => {
            let params = parse_params(&args[2..])?;
            let (user, password) = credentials(&params)?;
            let cat = Catalog::open(Catalog::default_home())?;
            m1_server::init_admin(std::sync::Arc::new(open(&cat, &args[1])?), &user, &password)?;
            eprintln!("'{user}' is the first admin of '{}'", args[1]);
            Ok(())
        }
        Some("signup") => {
            let mut params = parse_params(&args[1..])?;
            let url = take_remote(&mut params);
            crate::remote::signup(url.as_deref(), params)
        }
        Some(_) => call(&args),
    }
}

/// `m1 <target> <endpoint> -name value ...`.
fn call(args: &[String]) -> Result<()> {
    let target = args[0].as_str();
    let scope = if target == "ops" { Scope::Ops } else { Scope::Env };
    let Some(path) = args.get(1).filter(|p| !p.starts_with('-')) else {
        if wants_help(&args[1..]) {
            print!("{}", usage());
            return Ok(());
        }
        bail!(
            "missing endpoint after '{target}', e.g. `m1 {target} {}`; see `m1 --help`",
            if scope == Scope::Ops { "env/list" } else { "schema" }
        );
    };
    let ep = endpoint::require(scope, path)?;
    if wants_help(&args[2..]) {
        println!("{}", ep.help());
        return Ok(());
    }
    let mut params = parse_params(&args[2..])?;
    let url = take_remote(&mut params);
    let env_name = (scope == Scope::Env).then_some(target);
    let login = crate::remote::login_for(env_name, url.as_deref())?;
    if login.is_none() && matches!(ep.handler, Handler::Served) {
        return Err(m1::Error::ServedOnly(format!("/{}", ep.path)).into());
    }
    // Check the parameters here too, so a bad call fails before any connection.
    Args::new(ep, params.iter().cloned())?;
    match login {
        Some(login) => crate::remote::call(&login, env_name, ep, path, &params),
        None => local(target, scope, path, params),
    }
}

/// `-username` and `-password`, both required (the operator's commands).
fn credentials(params: &[(String, String)]) -> Result<(String, String)> {
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    for (k, _) in params {
        if k != "username" && k != "password" {
            bail!("unknown parameter -{k}: this command takes -username and -password");
        }
    }
    Ok((
        get("username").ok_or_else(|| anyhow!("-username is required"))?,
        get("password").ok_or_else(|| anyhow!("-password is required"))?,
    ))
}

/// A call on this machine.
fn local(target: &str, scope: Scope, path: &str, params: Vec<(String, String)>) -> Result<()> {
    let cat = Catalog::open(Catalog::default_home())?;
    let out = std::io::stdout();
    match scope {
        Scope::Ops => {
            let call = OpsCall { catalog: &cat, envs: &FreshOpener(&cat) };
            print_output(endpoint::call_ops(&call, path, params)?, &mut out.lock())
        }
        Scope::Env => {
            let env = open(&cat, target)?;
            let bar = Progress::new();
            let progress = |p: &m1::Progress| bar.update(p);
            let progress = bar.active().then_some(&progress as &(dyn Fn(&m1::Progress) + Sync));
            let call = EnvCall { progress, ..EnvCall::local(&env) };
            let output = endpoint::call_env(&call, path, params);
            bar.finish();
            print_output(output?, &mut out.lock())
        }
    }
}

/// Opens an environment by catalog name, id, path or URL.
fn open(cat: &Catalog, target: &str) -> Result<Environment> {
    if cat.get(target)?.is_some() {
        return Ok(Environment::open_in(cat, target)?);
    }
    if target.contains("://") || Path::new(target).exists() {
        return Ok(Environment::open(target)?);
    }
    bail!(
        "no environment named '{target}' in the catalog (see `m1 ops env/list`; create one with `m1 ops env/create -env {target}`)"
    )
}

/// Prints an endpoint's answer: JSON pretty-printed, streams as they are written.
pub fn print_output(output: Output<'_>, out: &mut dyn Write) -> Result<()> {
    match output {
        Output::Empty => Ok(()),
        Output::Json(v) => {
            serde_json::to_writer_pretty(&mut *out, &v)?;
            writeln!(out)?;
            Ok(())
        }
        Output::Stream { write, .. } => {
            let mut buffered = std::io::BufWriter::new(out);
            write(&mut buffered)?;
            buffered.flush()?;
            Ok(())
        }
    }
}

fn print_json(v: serde_json::Value) -> Result<()> {
    print_output(Output::Json(v), &mut std::io::stdout().lock())
}

/// `m1 serve`: the HTTP API until interrupted.
fn serve(params: &[(String, String)]) -> Result<()> {
    let a = Args::new(&SERVE, params.iter().cloned())?;
    let mut o = m1_server::ServeOptions { env: a.text("env").map(str::to_string), ..Default::default() };
    o.port = a.count("port", 0)?.and_then(|p| u16::try_from(p).ok()).ok_or_else(|| anyhow!("-port must be 0-65535"))?;
    o.bind = a.req("bind")?.parse().context("parameter -bind must be an IP address")?;
    o.max_body_bytes = a.count("maxBodyBytes", 1)?.unwrap_or(64 << 20) as usize;
    o.read_timeout = std::time::Duration::from_millis(a.count("readTimeoutMs", 1)?.unwrap_or(30_000));
    o.allow_read = a.list("allowRead").unwrap_or_default().iter().map(std::path::PathBuf::from).collect();
    o.locations = a.list("allowLocation").unwrap_or_default().to_vec();
    o.signup = a.bool("signup").unwrap_or(false);
    o.max_publishes = a.count("maxPublishes", 1)?.unwrap_or(2) as usize;
    o.usage_interval = std::time::Duration::from_millis(a.count("usageIntervalMs", 100)?.unwrap_or(300_000));
    Ok(m1_server::serve(o)?)
}

/// A progress bar for publishes, on a terminal only (bytes and rows/s on stderr).
struct Progress(Option<indicatif::ProgressBar>);

impl Progress {
    fn new() -> Progress {
        use std::io::IsTerminal;
        if !std::io::stderr().is_terminal() {
            return Progress(None);
        }
        let bar = indicatif::ProgressBar::new(0);
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {msg}",
        ) {
            bar.set_style(style);
        }
        Progress(Some(bar))
    }

    fn active(&self) -> bool {
        self.0.is_some()
    }

    fn update(&self, p: &m1::Progress) {
        let Some(bar) = &self.0 else { return };
        if let Some(total) = p.bytes_total {
            bar.set_length(total);
        }
        bar.set_position(p.bytes_read);
        let seconds = p.elapsed.as_secs_f64();
        match p.phase {
            m1::Phase::Lake => {
                bar.set_message(format!("{} rows, {:.0} rows/s", p.rows, p.rows as f64 / seconds.max(1e-3)))
            }
            // The lake part is done: what remains is the data stores indexing the commit.
            m1::Phase::Index => {
                bar.set_message(format!("{} rows committed in {seconds:.1} s (lake); indexing the data stores", p.rows))
            }
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_endpoint_takes_the_remote_parameter() {
        for e in m1::endpoint::ENDPOINTS {
            assert!(e.params.iter().all(|p| p.name != REMOTE), "{e:?} declares -{REMOTE}");
        }
    }

    #[test]
    fn params_keep_order_and_read_files() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("p.json");
        std::fs::write(&f, "[1]").unwrap();
        let args: Vec<String> =
            ["-ids", &format!("@{}", f.display()), "--remote", "http://x"].iter().map(|s| s.to_string()).collect();
        let mut p = parse_params(&args).unwrap();
        assert_eq!(take_remote(&mut p).as_deref(), Some("http://x"));
        assert_eq!(p, [("ids".to_string(), "[1]".to_string())]);
        assert!(parse_params(&["-ids".to_string()]).unwrap_err().to_string().contains("no value"));
    }
}
