//! Where published files come from: a local path, directory or glob, or an object-store URL
//! (`file://`, `s3://`, `gs://`, `az://`, and `http(s)://` when outbound reads are enabled).
//!
//! A source resolves to a list of files in name order; each opens as a streaming `Read`, so a
//! remote file is never downloaded whole.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use globset::{Glob, GlobMatcher};
use m1_engine::storage::{ObjectStoreOptions, block_on};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};

use crate::error::{IngestError, Result};

/// One file to publish.
#[derive(Clone)]
pub struct SourceFile {
    /// The name reports and errors use (path or URL).
    pub name: String,
    /// Size in bytes, when known.
    pub size: Option<u64>,
    pub(crate) location: Location,
}

#[derive(Clone)]
pub(crate) enum Location {
    Local(PathBuf),
    Remote { store: Arc<dyn ObjectStore>, path: ObjectPath },
}

impl std::fmt::Debug for SourceFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceFile").field("name", &self.name).field("size", &self.size).finish()
    }
}

impl SourceFile {
    /// Opens the file as a byte stream.
    pub fn open(&self) -> Result<Box<dyn Read + Send>> {
        match &self.location {
            Location::Local(p) => {
                let f = std::fs::File::open(p).map_err(|e| IngestError::Read { path: p.clone(), source: e })?;
                Ok(Box::new(f))
            }
            Location::Remote { store, path } => {
                let result = block_on(store.get(path)).map_err(|e| self.remote_error(e))?;
                Ok(Box::new(ObjectReader {
                    stream: result.into_stream(),
                    chunk: Bytes::new(),
                    name: self.name.clone(),
                }))
            }
        }
    }

    fn remote_error(&self, e: object_store::Error) -> IngestError {
        IngestError::Source(format!("{}: {e}", self.name))
    }
}

/// Reads an object-store stream chunk by chunk from blocking code.
struct ObjectReader {
    stream: BoxStream<'static, object_store::Result<Bytes>>,
    chunk: Bytes,
    name: String,
}

impl Read for ObjectReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.chunk.is_empty() {
            match block_on(self.stream.next()) {
                None => return Ok(0),
                Some(Ok(b)) => self.chunk = b,
                Some(Err(e)) => return Err(std::io::Error::other(format!("{}: {e}", self.name))),
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk[..n]);
        bytes::Buf::advance(&mut self.chunk, n);
        Ok(n)
    }
}

/// Whether a path or URL holds glob characters.
fn is_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// Splits `dir/sub/*.csv` into the part before the first glob segment and the whole pattern.
fn glob_base(path: &str) -> &str {
    let first = path.find(['*', '?', '[']).unwrap_or(path.len());
    match path[..first].rfind('/') {
        Some(i) => &path[..i],
        None => "",
    }
}

fn matcher(pattern: &str) -> Result<GlobMatcher> {
    Glob::new(pattern)
        .map(|g| g.compile_matcher())
        .map_err(|e| IngestError::Source(format!("bad file pattern '{pattern}': {e}")))
}

/// Refuses a local `file` (path, `file://` URL or glob) that is not inside one of `roots`, with
/// links resolved. Nonexistent and forbidden paths get the same answer, so a caller cannot probe
/// which files exist. URLs of object stores and http(s) are not local and pass.
pub fn check_readable(file: &str, roots: &[PathBuf]) -> Result<()> {
    let file = file.strip_prefix("file=").unwrap_or(file);
    let local = match file.strip_prefix("file://") {
        Some(rest) => rest,
        None if file.contains("://") => return Ok(()),
        None => file,
    };
    let base = if is_glob(local) { glob_base(local) } else { local };
    let base = if base.is_empty() { "." } else { base };
    let inside = std::fs::canonicalize(base).ok().is_some_and(|real| {
        roots.iter().filter_map(|r| std::fs::canonicalize(r).ok()).any(|root| real.starts_with(root))
    });
    if inside { Ok(()) } else { Err(IngestError::NotAllowed(file.to_string())) }
}

/// Lists the files `file` names, in name order: one file, every file under a directory or
/// prefix (recursively), or every file matching a glob.
///
/// `outbound` allows `http(s)://` sources; `options` configure the object store (endpoint,
/// credentials) on top of the usual environment variables.
pub fn resolve(file: &str, options: &ObjectStoreOptions, outbound: bool) -> Result<Vec<SourceFile>> {
    let file = file.strip_prefix("file=").unwrap_or(file);
    let mut files = if let Some(rest) = file.strip_prefix("file://") {
        resolve_local(rest)?
    } else if file.contains("://") {
        resolve_remote(file, options, outbound)?
    } else {
        resolve_local(file)?
    };
    files.sort_by(|a, b| a.name.cmp(&b.name));
    if files.is_empty() {
        return Err(IngestError::Source(format!("'{file}' matches no files")));
    }
    Ok(files)
}

fn resolve_local(file: &str) -> Result<Vec<SourceFile>> {
    let local = |p: PathBuf| {
        let size = std::fs::metadata(&p).ok().map(|m| m.len());
        SourceFile { name: p.display().to_string(), size, location: Location::Local(p) }
    };
    if is_glob(file) {
        let base = glob_base(file);
        let m = matcher(file)?;
        let root = if base.is_empty() { Path::new(".") } else { Path::new(base) };
        let mut out = Vec::new();
        for p in walk(root)? {
            let shown = if base.is_empty() { p.strip_prefix("./").unwrap_or(&p).to_path_buf() } else { p.clone() };
            if m.is_match(&shown) {
                out.push(local(p));
            }
        }
        return Ok(out);
    }
    let path = Path::new(file);
    let meta = std::fs::metadata(path).map_err(|e| IngestError::Read { path: path.to_path_buf(), source: e })?;
    if meta.is_dir() { Ok(walk(path)?.into_iter().map(local).collect()) } else { Ok(vec![local(path.to_path_buf())]) }
}

/// Every file under `dir`, recursively (hidden files skipped).
fn walk(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| IngestError::Read { path: dir.to_path_buf(), source: e })?;
    for entry in entries {
        let entry = entry.map_err(|e| IngestError::Read { path: dir.to_path_buf(), source: e })?;
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let p = entry.path();
        if p.is_dir() {
            out.extend(walk(&p)?);
        } else {
            out.push(p);
        }
    }
    Ok(out)
}

fn resolve_remote(file: &str, options: &ObjectStoreOptions, outbound: bool) -> Result<Vec<SourceFile>> {
    let url = url::Url::parse(file).map_err(|e| IngestError::Source(format!("bad URL '{file}': {e}")))?;
    let bad = |e: object_store::Error| IngestError::Source(format!("{file}: {e}"));
    let scheme = url.scheme();
    if matches!(scheme, "http" | "https") && !outbound {
        return Err(IngestError::Source(format!(
            "'{file}': reading from the internet is off for this environment; \
             enable it with `m1 ops env/outbound -env ENV -enable true`"
        )));
    }
    let store: Arc<dyn ObjectStore> = match scheme {
        "s3" | "s3a" | "gs" | "az" | "azure" | "abfs" | "abfss" => m1_engine::storage::object_store_for(file, options)
            .map_err(|e| IngestError::Source(format!("{file}: {e}")))?,
        "http" | "https" => {
            let origin = url[..url::Position::BeforePath].to_string();
            let client = object_store::ClientOptions::new().with_allow_http(true);
            Arc::new(
                object_store::http::HttpBuilder::new()
                    .with_url(origin)
                    .with_client_options(client)
                    .build()
                    .map_err(bad)?,
            )
        }
        other => return Err(IngestError::Source(format!("'{file}': unsupported scheme '{other}'"))),
    };
    let key = url.path().trim_start_matches('/');
    let origin = &url[..url::Position::BeforePath];
    let named = |path: ObjectPath, size: Option<u64>| SourceFile {
        name: format!("{origin}/{path}"),
        size,
        location: Location::Remote { store: store.clone(), path },
    };
    let decoded = ObjectPath::from_url_path(key).map_err(|e| IngestError::Source(format!("{file}: {e}")))?;
    if matches!(scheme, "http" | "https") {
        return Ok(vec![named(decoded, None)]);
    }
    if is_glob(key) {
        let m = matcher(key)?;
        let base = ObjectPath::from(glob_base(key));
        let listed = block_on(store.list(Some(&base)).collect::<Vec<_>>());
        let mut out = Vec::new();
        for meta in listed {
            let meta = meta.map_err(bad)?;
            if m.is_match(meta.location.as_ref()) {
                out.push(named(meta.location, Some(meta.size)));
            }
        }
        return Ok(out);
    }
    // One object if it exists, else everything under it as a prefix.
    match block_on(store.head(&decoded)) {
        Ok(meta) => Ok(vec![named(meta.location, Some(meta.size))]),
        Err(object_store::Error::NotFound { .. }) => {
            let listed = block_on(store.list(Some(&decoded)).collect::<Vec<_>>());
            listed.into_iter().map(|m| m.map(|m| named(m.location, Some(m.size))).map_err(bad)).collect()
        }
        Err(e) => Err(bad(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_stay_inside_the_allowed_roots() {
        let d = tempfile::tempdir().unwrap();
        let allowed = d.path().join("allowed");
        std::fs::create_dir_all(&allowed).unwrap();
        std::fs::write(allowed.join("a.csv"), "x\n1\n").unwrap();
        std::fs::write(d.path().join("secret.csv"), "x\n2\n").unwrap();
        std::os::unix::fs::symlink(d.path().join("secret.csv"), allowed.join("link.csv")).unwrap();
        let roots = [allowed.clone()];
        let ok = |f: String| check_readable(&f, &roots).is_ok();
        assert!(ok(format!("{}/a.csv", allowed.display())));
        assert!(ok(format!("{}/*.csv", allowed.display())));
        assert!(ok(format!("file://{}/a.csv", allowed.display())));
        assert!(!ok(format!("{}/secret.csv", d.path().display())));
        assert!(!ok(format!("{}/../secret.csv", allowed.display())));
        assert!(!ok(format!("{}/link.csv", allowed.display())), "a link out of the root");
        assert!(!ok("/etc/passwd".into()));
        assert!(!ok("/dev/zero".into()));
        let missing = check_readable("/no/such/file", &roots).unwrap_err().to_string();
        let outside = check_readable("/etc/passwd", &roots).unwrap_err().to_string();
        assert_eq!(missing.replace("/no/such/file", "F"), outside.replace("/etc/passwd", "F"), "no probing");
        assert!(ok("s3://bucket/key.csv".into()));
    }

    #[test]
    fn local_files_directories_and_globs_resolve_in_name_order() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("sub")).unwrap();
        for f in ["b.csv", "a.csv", "c.json", "sub/d.csv", ".hidden.csv"] {
            std::fs::write(d.join(f), f).unwrap();
        }
        let names = |files: Vec<SourceFile>| {
            files
                .iter()
                .map(|f| f.name.strip_prefix(&format!("{}/", d.display())).unwrap().to_string())
                .collect::<Vec<_>>()
        };
        let none = ObjectStoreOptions::new();
        assert_eq!(
            names(resolve(d.to_str().unwrap(), &none, false).unwrap()),
            ["a.csv", "b.csv", "c.json", "sub/d.csv"]
        );
        assert_eq!(
            names(resolve(&format!("{}/*.csv", d.display()), &none, false).unwrap()),
            ["a.csv", "b.csv", "sub/d.csv"]
        );
        assert_eq!(names(resolve(&format!("{}/[ab].csv", d.display()), &none, false).unwrap()), ["a.csv", "b.csv"]);
        assert_eq!(names(resolve(&format!("file://{}/c.json", d.display()), &none, false).unwrap()), ["c.json"]);
        let mut s = String::new();
        resolve(&format!("{}/a.csv", d.display()), &none, false).unwrap()[0]
            .open()
            .unwrap()
            .read_to_string(&mut s)
            .unwrap();
        assert_eq!(s, "a.csv");
        let err = resolve(&format!("{}/*.parquet", d.display()), &none, false).unwrap_err().to_string();
        assert!(err.contains("matches no files"), "{err}");
        let err = resolve(&format!("{}/missing.csv", d.display()), &none, false).unwrap_err().to_string();
        assert!(err.contains("missing.csv"), "{err}");
    }

    #[test]
    fn http_needs_outbound() {
        let err = resolve("https://example.com/data.csv", &ObjectStoreOptions::new(), false).unwrap_err().to_string();
        assert!(err.contains("env/outbound"), "{err}");
    }
}
