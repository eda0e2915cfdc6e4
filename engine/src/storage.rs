//! Storage locations: one object-store view rooted at an environment's directory or URL.
//!
//! Every file of an environment goes through [`Storage`], so the same code runs on a local
//! directory, `memory://`, `s3://`, `gs://` and `az://`. Local roots also keep their filesystem
//! path so segment reads can memory-map files instead of paying for an object-store request.
//!
//! Transient failures (a reset or timed-out connection, a short read) are retried here, a few
//! times with back-off; HTTP stores also retry inside object_store's own client. A conditional
//! put whose answer is lost is settled by reading the file back (see [`Storage::put_if_absent`]).
//! An embedder can put any [`ObjectStore`] under a location of its own with
//! [`register_object_store`]; m1's tests use that to inject faults.

use std::collections::HashMap;
use std::path::{Path as FsPath, PathBuf};
use std::sync::{Arc, LazyLock, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use parking_lot::Mutex;
use url::Url;

use crate::error::{EngineError, Result};

/// The shared runtime that drives object-store futures behind the engine's blocking API.
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("m1-io")
            .enable_all()
            .build()
            .expect("cannot start the m1 I/O runtime")
    })
}

/// Runs a future to completion from blocking code, also when called inside a tokio runtime.
pub fn block_on<F: std::future::Future>(fut: F) -> F::Output {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(|| handle.block_on(fut))
        }
        _ => runtime().block_on(fut),
    }
}

/// `memory://` stores live as long as the process, shared by name, so an environment on
/// `memory://x` can be reopened like any other.
static MEMORY_STORES: LazyLock<Mutex<HashMap<String, Arc<InMemory>>>> = LazyLock::new(|| Mutex::new(HashMap::new()));

/// Stores registered by [`register_object_store`], by `scheme://host`.
static REGISTERED: LazyLock<Mutex<HashMap<String, Arc<dyn ObjectStore>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// Makes every location under `scheme://host` (say `custom://bucket`) use `store`, with the URL's
/// path as the prefix inside it; a later registration of the same `scheme://host` replaces it.
/// For stores that m1 cannot build from a URL: a wrapper with caching, metrics or injected
/// faults, or another backend.
pub fn register_object_store(scheme_host: &str, store: Arc<dyn ObjectStore>) {
    REGISTERED.lock().insert(scheme_host.trim_end_matches('/').to_ascii_lowercase(), store);
}

/// How often a call that failed transiently is tried again, and the first pause (doubled each
/// time): five retries wait 1.55 s in all.
const RETRIES: u32 = 5;
const FIRST_BACKOFF: Duration = Duration::from_millis(50);

/// Whether an error is worth retrying: a connection that was reset, refused or timed out, an
/// interrupted or short read. Missing files, conflicts and refusals are not. Only an I/O error
/// that is the error's own cause counts: HTTP stores have retried theirs already (object_store's
/// `RetryConfig`), and retrying those again would multiply the waits.
fn transient(e: &object_store::Error) -> bool {
    use std::io::ErrorKind as K;
    let object_store::Error::Generic { source, .. } = e else {
        return false;
    };
    source.downcast_ref::<std::io::Error>().is_some_and(|io| {
        matches!(
            io.kind(),
            K::ConnectionReset
                | K::ConnectionAborted
                | K::ConnectionRefused
                | K::TimedOut
                | K::Interrupted
                | K::UnexpectedEof
                | K::BrokenPipe
                | K::WouldBlock
        )
    })
}

/// Runs `op` until it succeeds, fails for good, or has failed transiently [`RETRIES`] more times.
async fn retrying<T, F, Fut>(mut op: F) -> object_store::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = object_store::Result<T>>,
{
    let mut pause = FIRST_BACKOFF;
    let mut retries = 0;
    loop {
        match op().await {
            Err(e) if retries < RETRIES && transient(&e) => {
                tokio::time::sleep(pause).await;
                pause *= 2;
                retries += 1;
            }
            other => return other,
        }
    }
}

/// A read that returned fewer bytes than asked, as a transient error (the next try may not).
fn short_read(path: &Path, want: u64, got: usize) -> object_store::Error {
    object_store::Error::Generic {
        store: "m1",
        source: Box::new(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!("short read of {path}: {got} of {want} bytes"),
        )),
    }
}

/// Extra settings for remote stores (endpoint, credentials), as object_store config keys.
pub type ObjectStoreOptions = Vec<(String, String)>;

/// Builds an `s3://`, `gs://` or `az://` store from the usual environment variables, then
/// `options` (object_store config keys such as `aws_endpoint`), for the bucket `url` names.
pub fn object_store_for(url: &str, options: &ObjectStoreOptions) -> std::result::Result<Arc<dyn ObjectStore>, String> {
    macro_rules! build {
        ($builder:ty) => {{
            let mut b = <$builder>::from_env().with_url(url);
            for (k, v) in options {
                let key = k.to_ascii_lowercase().parse().map_err(|e: object_store::Error| e.to_string())?;
                b = b.with_config(key, v);
            }
            Arc::new(b.build().map_err(|e| e.to_string())?) as Arc<dyn ObjectStore>
        }};
    }
    let scheme = url.split_once("://").map_or("", |(s, _)| s);
    Ok(match scheme {
        "s3" | "s3a" => build!(object_store::aws::AmazonS3Builder),
        "gs" => build!(object_store::gcp::GoogleCloudStorageBuilder),
        "az" | "azure" | "abfs" | "abfss" => build!(object_store::azure::MicrosoftAzureBuilder),
        other => return Err(format!("'{other}' is not a cloud object store scheme")),
    })
}

/// An object-store view rooted at an environment's location.
#[derive(Clone)]
pub struct Storage {
    store: Arc<dyn ObjectStore>,
    root: Path,
    url: String,
    local_root: Option<PathBuf>,
    /// The settings it was opened with, to open it again (storage DR reopens both locations).
    options: ObjectStoreOptions,
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Storage").field("url", &self.url).finish()
    }
}

impl Storage {
    /// Opens a location: a local path, or a `file://`, `memory://`, `s3://`, `gs://` or `az://` URL.
    ///
    /// Remote stores read credentials and endpoints from the usual environment variables
    /// (`AWS_*`, `GOOGLE_*`, `AZURE_*`); `options` override them.
    pub fn open(location: &str, options: &ObjectStoreOptions) -> Result<Storage> {
        if !location.contains("://") {
            return Self::local(FsPath::new(location));
        }
        let mut opened = Self::open_remote(location, options)?;
        opened.options = options.clone();
        Ok(opened)
    }

    fn open_remote(location: &str, options: &ObjectStoreOptions) -> Result<Storage> {
        let bad = |reason: String| EngineError::BadLocation { url: location.to_string(), reason };
        let url = Url::parse(location).map_err(|e| bad(e.to_string()))?;
        let root = Path::from_url_path(url.path()).map_err(|e| bad(e.to_string()))?;
        let scheme_host = format!("{}://{}", url.scheme(), url.host_str().unwrap_or_default()).to_ascii_lowercase();
        let registered = REGISTERED.lock().get(&scheme_host).cloned();
        let store: Arc<dyn ObjectStore> = match url.scheme() {
            _ if registered.is_some() => registered.expect("checked"),
            "file" => {
                let path = url.to_file_path().map_err(|_| bad("not a local file path".into()))?;
                return Self::local(&path);
            }
            "memory" => {
                let name = url.host_str().unwrap_or_default().to_string();
                MEMORY_STORES.lock().entry(name).or_insert_with(|| Arc::new(InMemory::new())).clone()
            }
            "s3" | "s3a" | "gs" | "az" | "azure" | "abfs" | "abfss" => {
                object_store_for(location, options).map_err(bad)?
            }
            other => return Err(bad(format!("unsupported scheme '{other}'"))),
        };
        // Cloud URLs carry the bucket in the host; the URL path is the prefix inside it.
        Ok(Storage {
            store,
            root,
            url: location.trim_end_matches('/').to_string(),
            local_root: None,
            options: ObjectStoreOptions::new(),
        })
    }

    fn local(path: &FsPath) -> Result<Storage> {
        // A location that is (or lies under) a file is the caller's mistake, not a failure of
        // the machine.
        std::fs::create_dir_all(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists | std::io::ErrorKind::NotADirectory => {
                EngineError::BadLocation { url: path.display().to_string(), reason: e.to_string() }
            }
            _ => EngineError::io(path, e),
        })?;
        let abs = std::fs::canonicalize(path).map_err(|e| EngineError::io(path, e))?;
        let store = LocalFileSystem::new_with_prefix(&abs)?;
        Ok(Storage {
            store: Arc::new(store),
            root: Path::default(),
            url: abs.display().to_string(),
            local_root: Some(abs),
            options: ObjectStoreOptions::new(),
        })
    }

    /// The storage rooted at directory `rel` inside this one.
    pub fn sub(&self, rel: &str) -> Result<Storage> {
        let rel = rel.trim_matches('/');
        if let Some(root) = &self.local_root {
            return Self::local(&root.join(rel));
        }
        Ok(Storage {
            store: self.store.clone(),
            root: self.path(rel),
            url: format!("{}/{rel}", self.url),
            local_root: None,
            options: self.options.clone(),
        })
    }

    /// The object-store settings it was opened with.
    pub fn options(&self) -> &ObjectStoreOptions {
        &self.options
    }

    /// The location this storage was opened on.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The local directory, when the location is on this machine's filesystem.
    pub fn local_root(&self) -> Option<&FsPath> {
        self.local_root.as_deref()
    }

    /// The underlying object store (for async readers).
    pub fn object_store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// The full object path of a file given relative to the root.
    pub fn path(&self, rel: &str) -> Path {
        let mut p = self.root.clone();
        for part in rel.split('/').filter(|s| !s.is_empty()) {
            p = p.clone().join(part);
        }
        p
    }

    /// The path of `full` relative to the root.
    pub fn relative(&self, full: &Path) -> String {
        match full.prefix_match(&self.root) {
            Some(parts) => parts.map(|p| p.as_ref().to_string()).collect::<Vec<_>>().join("/"),
            None => full.to_string(),
        }
    }

    /// Reads a whole file, or `None` when it does not exist.
    pub fn get(&self, rel: &str) -> Result<Option<Bytes>> {
        let path = self.path(rel);
        let read = || async {
            let r = self.store.get(&path).await?;
            let want = r.meta.size;
            let bytes = r.bytes().await?;
            if (bytes.len() as u64) < want {
                return Err(short_read(&path, want, bytes.len()));
            }
            Ok(bytes)
        };
        match block_on(retrying(read)) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Reads a byte range of a file.
    pub fn get_range(&self, rel: &str, range: std::ops::Range<u64>) -> Result<Bytes> {
        let path = self.path(rel);
        let want = range.end.saturating_sub(range.start);
        let read = || async {
            let bytes = self.store.get_range(&path, range.clone()).await?;
            if (bytes.len() as u64) < want {
                return Err(short_read(&path, want, bytes.len()));
            }
            Ok(bytes)
        };
        Ok(block_on(retrying(read))?)
    }

    /// Size and modification time of a file, or `None` when it does not exist.
    pub fn head(&self, rel: &str) -> Result<Option<ObjectMeta>> {
        let path = self.path(rel);
        match block_on(retrying(|| self.store.head(&path))) {
            Ok(m) => Ok(Some(m)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Writes a file atomically, replacing any previous content.
    pub fn put(&self, rel: &str, bytes: Bytes) -> Result<()> {
        let path = self.path(rel);
        block_on(retrying(|| self.store.put(&path, PutPayload::from_bytes(bytes.clone()))))?;
        Ok(())
    }

    /// Writes a file only if it does not exist yet; returns `false` when another writer got there
    /// first. This is the one primitive the table log's optimistic concurrency rests on.
    ///
    /// A put can land and still report an error (the answer was lost). So after any error, and
    /// when a retry finds the file already there, the file is read back: holding exactly `bytes`
    /// means this put made it (true: the same commit must never be retried at the next version),
    /// other content means another writer won (false). Only when the outcome cannot be read
    /// either does the error go to the caller.
    pub fn put_if_absent(&self, rel: &str, bytes: Bytes) -> Result<bool> {
        let path = self.path(rel);
        let attempt = || async {
            let opts = PutOptions { mode: PutMode::Create, ..Default::default() };
            self.store.put_opts(&path, PutPayload::from_bytes(bytes.clone()), opts).await
        };
        let first = block_on(attempt());
        let mut error = match first {
            Ok(_) => return Ok(true),
            Err(object_store::Error::AlreadyExists { .. }) => return Ok(false),
            Err(e) => e,
        };
        let mut pause = FIRST_BACKOFF;
        for retry in 0..=RETRIES {
            match self.get(rel) {
                Ok(Some(found)) => return Ok(found == bytes),
                Ok(None) if retry < RETRIES && transient(&error) => {
                    std::thread::sleep(pause);
                    pause *= 2;
                    match block_on(attempt()) {
                        Ok(_) => return Ok(true),
                        // Ours (an earlier try that reported failure) or a rival's: read it.
                        Err(object_store::Error::AlreadyExists { .. }) => continue,
                        Err(e) => error = e,
                    }
                }
                // Not there, and the put failed for good: nothing was written.
                Ok(None) => return Err(error.into()),
                Err(_) if retry < RETRIES => std::thread::sleep(pause),
                Err(read) => {
                    return Err(EngineError::CommitUnknown { path: rel.to_string(), put: error, read: Box::new(read) });
                }
            }
        }
        Err(error.into())
    }

    /// Lists every file under a relative prefix (recursively).
    pub fn list(&self, rel_prefix: &str) -> Result<Vec<ObjectMeta>> {
        let path = self.path(rel_prefix);
        block_on(retrying(|| async { self.store.list(Some(&path)).try_collect::<Vec<_>>().await })).map_err(Into::into)
    }

    /// Deletes a file; deleting a missing file is not an error.
    pub fn delete(&self, rel: &str) -> Result<()> {
        let path = self.path(rel);
        match block_on(retrying(|| self.store.delete(&path))) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes every file under a relative prefix.
    pub fn delete_prefix(&self, rel_prefix: &str) -> Result<()> {
        for meta in self.list(rel_prefix)? {
            let rel = self.relative(&meta.location);
            self.delete(&rel)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_local_location_that_is_a_file_is_a_bad_location() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a-file");
        std::fs::write(&file, "x").unwrap();
        for at in [file.clone(), file.join("below")] {
            let Err(err) = Storage::open(at.to_str().unwrap(), &ObjectStoreOptions::new()) else {
                panic!("{at:?} is a file, not a location");
            };
            assert!(matches!(err, EngineError::BadLocation { .. }), "{at:?}: {err:?}");
            assert!(err.to_string().contains("a-file"), "{err}");
        }
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "x", "nothing changed");
    }
}
