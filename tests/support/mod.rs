//! Harness shared by the integration tests: the Python venv with the independent readers
//! (pyarrow, DuckDB, polars, deltalake) and a moto S3 server on loopback.
//!
//! Each test file includes it with `mod support;`; not every file uses every piece.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const INSTALL_HINT: &str = "create the test venv with `python3 -m venv .venv && \
     .venv/bin/pip install 'moto[server]' deltalake pyarrow duckdb polars` in the repository \
     (or run `.ci/run`), or point M1_PYTHON at a Python that has these packages";

/// The Python interpreter the tests use.
pub fn python() -> PathBuf {
    match std::env::var_os("M1_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python"),
    }
}

/// Runs `tests/support/python.py` with `args` and parses the JSON it prints.
pub fn run_python(args: &[&str]) -> Value {
    let py = python();
    assert!(py.exists(), "Python for the S3 tests not found at {}: {INSTALL_HINT}", py.display());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/python.py");
    let out = Command::new(&py)
        .arg(&script)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}; {INSTALL_HINT}", py.display()));
    let stderr = String::from_utf8_lossy(&out.stderr);
    match out.status.code() {
        Some(0) => {}
        Some(3) => panic!("{}: {stderr}\n{INSTALL_HINT}", py.display()),
        _ => panic!("reader `{}` failed ({}):\n{stderr}", args.first().unwrap_or(&""), out.status),
    }
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("python.py printed no JSON ({e}):\n{}\n{stderr}", String::from_utf8_lossy(&out.stdout))
    })
}

/// A moto S3 server on loopback; dropping it stops the server.
pub struct Moto {
    child: Child,
    port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Moto {
    pub fn start() -> Moto {
        let bin = python().parent().expect("python has a directory").join("moto_server");
        assert!(
            bin.exists(),
            "moto_server not found at {} (needs the PyPI package moto[server]): {INSTALL_HINT}",
            bin.display()
        );
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
            l.local_addr().unwrap().port()
        };
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("moto.log");
        let log_file = std::fs::File::create(&log).unwrap();
        let child = Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}; {INSTALL_HINT}", bin.display()));
        let mut moto = Moto { child, port, log, _dir: dir };
        moto.wait_ready();
        moto
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("moto_server exited ({status}) before answering:\n{}", self.log_text());
            }
            if self.request("GET", "/").is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "moto_server did not answer on port {} within 60 s:\n{}",
                self.port,
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// One bodiless HTTP/1.1 request; returns the status code.
    pub fn request(&self, method: &str, path: &str) -> std::io::Result<u16> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port))?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\n\
             Connection: close\r\n\r\n",
            self.port
        )?;
        let mut response = Vec::new();
        s.read_to_end(&mut response)?;
        let head = String::from_utf8_lossy(&response);
        head.split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("not an HTTP response: {head}")))
    }

    pub fn create_bucket(&self, bucket: &str) {
        let status = self.request("PUT", &format!("/{bucket}")).expect("create bucket");
        assert_eq!(status, 200, "PUT /{bucket} on moto");
    }

    /// object_store settings for this server.
    pub fn options(&self) -> Vec<(String, String)> {
        [
            ("aws_endpoint", self.endpoint().as_str()),
            ("aws_access_key_id", "test-key"),
            ("aws_secret_access_key", "test-secret"),
            ("aws_region", "us-east-1"),
            ("aws_allow_http", "true"),
            ("aws_virtual_hosted_style_request", "false"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The files of the table log: commit versions (sorted), checkpoint versions, and the names of
/// staging files an interrupted write left behind. Anything else is an error.
pub fn log_files(root: &Path) -> (Vec<u64>, Vec<u64>, Vec<String>) {
    let digits = |s: &str| s.len() == 20 && s.bytes().all(|b| b.is_ascii_digit());
    let (mut versions, mut checkpoints, mut staging) = (Vec::new(), Vec::new(), Vec::new());
    for e in std::fs::read_dir(root.join("_delta_log")).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        let (stem, rest) = name.split_once('.').unwrap_or((&name, ""));
        if name.rsplit_once('#').is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())) {
            staging.push(name);
        } else if digits(stem) && rest == "json" {
            versions.push(stem.parse::<u64>().unwrap());
        } else if digits(stem) && rest.starts_with("checkpoint.") && rest.ends_with("parquet") {
            checkpoints.push(stem.parse::<u64>().unwrap());
        } else if !(name == "_last_checkpoint" || digits(stem) && rest == "crc") {
            panic!("unexpected file in the table log: {name}");
        }
    }
    versions.sort_unstable();
    checkpoints.sort_unstable();
    (versions, checkpoints, staging)
}

/// Checks the log's commit versions are dense (0..=last, or from just after a checkpoint if
/// older commits were cleaned up) and returns the last.
pub fn check_dense(versions: &[u64], checkpoints: &[u64]) -> u64 {
    let first = *versions.first().expect("the log has commits");
    let last = *versions.last().unwrap();
    assert_eq!(versions, (first..=last).collect::<Vec<_>>(), "table log versions are not dense");
    assert!(
        first == 0 || checkpoints.iter().any(|&c| c + 1 >= first && c <= last),
        "log starts at {first} without a checkpoint to start from: {checkpoints:?}"
    );
    for &c in checkpoints {
        assert!(c <= last, "checkpoint {c} of an uncommitted version (last {last})");
    }
    last
}

/// Epoch milliseconds as ISO-8601 UTC with milliseconds, as reads render dates; computed by the
/// civil-from-days algorithm, independently of the engine's chrono rendering.
pub fn iso(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    let rem = ms.rem_euclid(86_400_000);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3_600_000,
        rem / 60_000 % 60,
        rem / 1000 % 60,
        rem % 1000
    )
}
