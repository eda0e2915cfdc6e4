//! Harness shared by the integration tests: the Python venv with the independent readers
//! (pyarrow, DuckDB, polars, deltalake) and a moto S3 server on loopback.
//!
//! The venv is `<repo>/.venv`, which [`python()`] creates and fills from
//! `tests/support/requirements.txt` the first time a test needs it (see [`ensure_venv`]), so
//! `cargo test --workspace` needs nothing typed before it; `M1_PYTHON` overrides it.
//!
//! Each test file includes it with `mod support;`; not every file uses every piece.
#![allow(dead_code)]

use std::fs::{OpenOptions, TryLockError};
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

pub mod clouds;
pub mod docs;

pub const INSTALL_HINT: &str = "the tests provision the Python they use themselves: on first use \
     they create `.venv` in the repository (`python3 -m venv`, interpreter from $PYTHON, else \
     python3.11, else python3) and `pip install -r tests/support/requirements.txt` into it, again \
     whenever that file or the Python version changes (delete .venv/.m1-requirements to force it); \
     set M1_PYTHON to use another interpreter instead, which must have those packages";

/// The repository root: the first ancestor of the including package's directory that holds
/// `Cargo.lock`, so it is the workspace root also when a sub-package (say `cli/`) includes this
/// module with `#[path = "../../tests/support/mod.rs"]`.
pub fn repo_root() -> &'static Path {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
        manifest.ancestors().find(|d| d.join("Cargo.lock").is_file()).unwrap_or(manifest).to_path_buf()
    })
}

/// The Python interpreter the tests use: `$M1_PYTHON` if set, else the python of `<repo>/.venv`,
/// which is created or brought up to date first (once per process; see [`ensure_venv`]).
/// Panics, in every test that asks, if that fails.
pub fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("M1_PYTHON").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    static VENV: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match VENV.get_or_init(|| ensure_venv(repo_root())) {
        Ok(py) => py.clone(),
        Err(e) => panic!("cannot provision the tests' Python venv: {e}"),
    }
}

/// Makes `<root>/.venv` a venv with the packages pinned in `<root>/tests/support/requirements.txt`
/// and returns its python.
///
/// Safe with many threads and test processes at once: all of it runs under an exclusive lock on
/// `<root>/.venv.lock`. Under the lock, the stamp `.venv/.m1-requirements` (the requirements text
/// and the Python version, written last) says whether the venv is complete and current; if not,
/// the venv is created (`$PYTHON`, else `python3.11`, else `python3`, `-m venv`; recreated with
/// `--clear` if its python is broken, lacks pip or is another version), the requirements are
/// installed with pip, and the stamp is written. A process that finds the stamp current does
/// nothing else, so only the first test process after a change installs anything.
pub fn ensure_venv(root: &Path) -> Result<PathBuf, String> {
    let venv = root.join(".venv");
    let py = venv.join("bin/python");
    let requirements_file = root.join("tests/support/requirements.txt");
    let requirements = std::fs::read_to_string(&requirements_file)
        .map_err(|e| format!("cannot read {}: {e}", requirements_file.display()))?;

    let _lock = lock_exclusive(&root.join(".venv.lock"), &venv)?;
    // The lock is held until `_lock` is dropped, when this function returns.

    let (base, base_version) = base_python()?;
    let stamp_path = venv.join(".m1-requirements");
    let stamp = format!("{requirements}\n# python: {base_version}\n");
    let venv_version = python_version(&py).ok();
    if venv_version.as_deref() == Some(base_version.as_str())
        && std::fs::read_to_string(&stamp_path).is_ok_and(|s| s == stamp)
    {
        return Ok(py);
    }

    let start = Instant::now();
    note(&format!(
        "provisioning {} with {} ({base_version}) from {} (first use, or the requirements or the \
         Python version changed; this takes a minute or two)",
        venv.display(),
        base.display(),
        requirements_file.display()
    ));
    let _ = std::fs::remove_file(&stamp_path);
    let usable = venv_version.as_deref() == Some(base_version.as_str())
        && Command::new(&py).args(["-c", "import pip"]).stdin(Stdio::null()).output().is_ok_and(|o| o.status.success());
    if !usable {
        run(
            Command::new(&base).args(["-m", "venv", "--clear"]).arg(&venv),
            &format!(
                "On Debian/Ubuntu install the venv module (`apt-get install python3-venv`, or \
                 python3.11-venv for python3.11); or set PYTHON to another Python 3 to create the \
                 venv with; or set M1_PYTHON to an interpreter that already has the packages of \
                 {}.",
                requirements_file.display()
            ),
        )?;
    }
    run(
        Command::new(&py)
            .args(["-m", "pip", "install", "--disable-pip-version-check", "--quiet", "-r"])
            .arg(&requirements_file),
        &format!(
            "pip needs PyPI (or the index set in pip's configuration or PIP_INDEX_URL) to install \
             the packages pinned in {}; nothing was stamped, so the next test run retries. Or set \
             M1_PYTHON to an interpreter that already has them.",
            requirements_file.display()
        ),
    )?;
    let tmp = venv.join(".m1-requirements.tmp");
    std::fs::write(&tmp, &stamp)
        .and_then(|()| std::fs::rename(&tmp, &stamp_path))
        .map_err(|e| format!("cannot write {}: {e}", stamp_path.display()))?;
    note(&format!("provisioned {} in {:.1} s", venv.display(), start.elapsed().as_secs_f64()));
    Ok(py)
}

/// Opens `lock_path` and takes an exclusive lock on it, which is released when the file is
/// dropped. Other processes hold such a lock briefly to check a stamp, or for minutes to install:
/// the wait is announced only in the second case.
pub(crate) fn lock_exclusive(lock_path: &Path, what: &Path) -> Result<std::fs::File, String> {
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(lock_path)
        .map_err(|e| format!("cannot open the lock file {}: {e}", lock_path.display()))?;
    let waiting_since = Instant::now();
    loop {
        match lock.try_lock() {
            Ok(()) => return Ok(lock),
            Err(TryLockError::WouldBlock) if waiting_since.elapsed() < Duration::from_secs(2) => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(TryLockError::WouldBlock) => {
                note(&format!("waiting for another test process to provision {}", what.display()));
                lock.lock().map_err(|e| format!("cannot lock {}: {e}", lock_path.display()))?;
                return Ok(lock);
            }
            Err(TryLockError::Error(e)) => return Err(format!("cannot lock {}: {e}", lock_path.display())),
        }
    }
}

/// The interpreter that creates the venv and its version: `$PYTHON`, else the first of
/// `python3.11` and `python3` that runs.
fn base_python() -> Result<(PathBuf, String), String> {
    let candidates: Vec<PathBuf> = match std::env::var_os("PYTHON").filter(|p| !p.is_empty()) {
        Some(p) => vec![PathBuf::from(p)],
        None => vec!["python3.11".into(), "python3".into()],
    };
    let mut tried = Vec::new();
    for c in candidates {
        match python_version(&c) {
            Ok(v) => return Ok((c, v)),
            Err(e) => tried.push(format!("{}: {e}", c.display())),
        }
    }
    Err(format!(
        "no Python 3 to create the venv with ({}). Install Python 3 (3.11 preferred), or set \
         PYTHON to one, or set M1_PYTHON to an interpreter that already has the packages of \
         tests/support/requirements.txt.",
        tried.join("; ")
    ))
}

/// `sys.version` of `py` on one line.
fn python_version(py: &Path) -> Result<String, String> {
    let out = Command::new(py)
        .args(["-c", "import sys; print(' '.join(sys.version.split()))"])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| e.to_string())?;
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !out.status.success() || stdout.is_empty() {
        return Err(format!("{}: {}", out.status, String::from_utf8_lossy(&out.stderr).trim()));
    }
    Ok(stdout)
}

/// Runs a provisioning command; on failure, the error names the command, its output and `fix`.
pub(crate) fn run(cmd: &mut Command, fix: &str) -> Result<(), String> {
    let shown = std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ");
    let out = cmd.stdin(Stdio::null()).output().map_err(|e| format!("`{shown}` could not start: {e}\n{fix}"))?;
    if out.status.success() {
        return Ok(());
    }
    Err(format!(
        "`{shown}` failed ({}):\n{}{}\n{fix}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    ))
}

/// Points `$M1_HOME` at a scratch directory for the rest of the process, where the data stores
/// of environments that are not on local disk live. Tests that use such environments call it
/// first, before they start threads that read the environment.
pub fn scratch_home() {
    static HOME: OnceLock<tempfile::TempDir> = OnceLock::new();
    HOME.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        // SAFETY: called at the start of tests, before they start threads; every caller sets the
        // same value, once.
        unsafe { std::env::set_var("M1_HOME", dir.path()) };
        dir
    });
}

/// A free TCP port on 127.0.0.1 (free when asked; servers the tests start bind it next).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    l.local_addr().unwrap().port()
}

/// Progress of the provisioning, straight to stderr: the test harness does not capture it, so a
/// long first install does not look like a hang.
pub(crate) fn note(msg: &str) {
    let _ = writeln!(std::io::stderr().lock(), "m1 tests: {msg}");
}

/// Runs `tests/support/python.py` with `args` and parses the JSON it prints.
pub fn run_python(args: &[&str]) -> Value {
    let py = python();
    assert!(py.exists(), "Python for the S3 tests not found at {}: {INSTALL_HINT}", py.display());
    let script = repo_root().join("tests/support/python.py");
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
        let port = free_port();
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
        clouds::http(self.port, method, path, "")
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
