//! README runs: every `m1 ...` command in a ```bash block of README.md runs, in order, as a
//! user would type it (through `sh`, with the built `m1` first on PATH), in a scratch folder
//! with its own `$M1_HOME`. Each must exit 0; a line `# => VALUE` after a command is its
//! output (JSON compared as values). A README change that breaks a command fails here.
//!
//! Provided by the test: `samples/` in the scratch folder, a moto S3 server behind the
//! README's placeholder endpoint `http://127.0.0.1:9000` (with its bucket `my-bucket`), and a
//! free port for `m1 serve -port 8080 &` (started in the background, stopped at the end).

#[path = "../../tests/support/mod.rs"]
mod support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use serde_json::Value;

/// One command of the README and what it must print, if the README shows it.
#[derive(Debug)]
struct Step {
    line: usize,
    command: String,
    expect: Option<String>,
}

/// The `m1` commands of the ```bash blocks, continuation lines joined, in order.
fn steps(readme: &str) -> Vec<Step> {
    let mut out: Vec<Step> = Vec::new();
    let mut in_bash = false;
    let mut pending: Option<Step> = None;
    for (i, line) in readme.lines().enumerate() {
        if line.starts_with("```") {
            in_bash = line.trim() == "```bash";
            continue;
        }
        if !in_bash {
            continue;
        }
        if let Some(step) = pending.as_mut() {
            step.command.push('\n');
            step.command.push_str(line);
            if !continues(line) && !open_quote(&step.command) {
                out.push(pending.take().unwrap());
            }
            continue;
        }
        if let Some(expect) = line.trim().strip_prefix("# => ") {
            let last = out.last_mut().expect("an expected output follows a command");
            last.expect = Some(expect.to_string());
            continue;
        }
        if line.starts_with("m1 ") {
            let step = Step { line: i + 1, command: line.to_string(), expect: None };
            if continues(line) || open_quote(line) { pending = Some(step) } else { out.push(step) }
        }
    }
    out
}

/// Whether a shell line goes on with a trailing backslash.
fn continues(line: &str) -> bool {
    line.trim_end().ends_with('\\')
}

/// Whether a command has an unclosed single quote (it goes on on the next line).
fn open_quote(command: &str) -> bool {
    command.matches('\'').count() % 2 == 1
}

struct Background(Child);

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn sh(dir: &Path, home: &Path, command: &str) -> Command {
    let bin = Path::new(env!("CARGO_BIN_EXE_m1")).parent().unwrap().to_path_buf();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let mut c = Command::new("sh");
    c.arg("-c").arg(command).current_dir(dir).env("PATH", path).env("M1_HOME", home).env_remove("M1_REMOTE");
    c
}

#[test]
fn every_readme_command_runs() {
    let root = support::repo_root();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let all = steps(&readme);
    assert!(all.len() >= 20, "found only {} commands in README.md", all.len());

    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let home = dir.join("m1-home");
    std::fs::create_dir_all(dir.join("samples")).unwrap();
    for f in ["events.jsonl", "events.schema.json"] {
        std::fs::copy(root.join("samples").join(f), dir.join("samples").join(f)).unwrap();
    }
    let moto = support::Moto::start();
    moto.create_bucket("my-bucket");
    let port = free_port().to_string();
    let mut background = Vec::new();
    let mut ran = 0;
    for step in &all {
        let command = step
            .command
            .replace("http://127.0.0.1:9000", &moto.endpoint())
            .replace("127.0.0.1:8080", &format!("127.0.0.1:{port}"))
            .replace("-port 8080", &format!("-port {port}"));
        let at = format!("README.md:{}: {}", step.line, step.command);
        if let Some(serve) = command.trim().strip_suffix('&') {
            // `exec`: the shell becomes the server, so stopping the child stops the server (a
            // killed shell would leave its own child running after the test).
            let serve = format!("exec {serve}");
            let mut child = sh(dir, &home, &serve).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
            let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
            let first = lines.next().unwrap_or_else(|| panic!("{at}: printed nothing")).unwrap();
            assert!(first.contains("listening on"), "{at}: {first}");
            std::thread::spawn(move || for _ in lines {});
            background.push(Background(child));
            ran += 1;
            continue;
        }
        let out = sh(dir, &home, &command)
            .env("AWS_ACCESS_KEY_ID", "test-key")
            .env("AWS_SECRET_ACCESS_KEY", "test-secret")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{at}\nfailed: {stderr}");
        let stdout = String::from_utf8_lossy(&out.stdout);
        if let Some(expect) = &step.expect {
            let want: Value = serde_json::from_str(expect).unwrap_or_else(|e| panic!("{at}: bad `# =>` JSON: {e}"));
            let got: Value =
                serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{at}: printed no JSON ({e}): {stdout}"));
            assert_eq!(got, want, "{at}");
        }
        ran += 1;
    }
    assert_eq!(ran, all.len());
    // What the commands made is really there.
    let csv = std::fs::read_to_string(dir.join("oslo.csv")).unwrap();
    assert!(csv.starts_with("_m1key,") && csv.lines().count() > 10, "{csv}");
    let lake = m1_engine::storage::Storage::open("s3://my-bucket/envs/on-s3", &moto.options()).unwrap();
    assert!(lake.get("_delta_log/00000000000000000000.json").unwrap().is_some(), "no table log on S3");
    drop(background);
}
