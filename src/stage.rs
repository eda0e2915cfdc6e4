//! An environment's stage: a file area of its own (`<environment>/stage`, SingleStore's Stage)
//! that callers upload to, list, download, move and delete in, and that `publish -file
//! stage://path` reads from.
//!
//! Invariant: every path a caller gives is checked by [`Stage::resolve`] before anything touches
//! the disk: relative, `/`-separated, no `..`, no NUL, no backslash, no component over 255 bytes
//! and no path over 1,024; the result is joined to the stage root and never leaves it (the stage
//! holds no links: nothing here creates one, and a link found on the way is refused). Uploads go
//! to a hidden temporary file in the stage and are renamed into place when whole, so a reader
//! never sees half a file and a failed upload leaves nothing.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::Environment;
use crate::error::{Error, Result};

/// The scheme `publish -file` takes for files in the stage.
pub const SCHEME: &str = "stage://";
/// Longest path accepted, in bytes.
pub const MAX_PATH: usize = 1024;
/// Longest path component accepted, in bytes.
pub const MAX_NAME: usize = 255;
/// Largest upload by default (system parameter `stage-max-bytes` changes it).
pub const DEFAULT_MAX_BYTES: u64 = 16 << 30;
/// Bytes an upload writes between background syncs.
const SYNC_EVERY: u64 = 32 << 20;
/// Prefix of upload files being written (hidden from listings).
const PARTIAL: &str = ".m1-upload-";

/// An environment's stage.
#[derive(Debug, Clone)]
pub struct Stage {
    root: PathBuf,
}

/// A checked stage path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagePath {
    /// The path relative to the stage, normalised (`a/b`; empty for the root).
    pub rel: String,
    /// Whether the caller named a folder (a trailing `/`, or the root).
    pub folder: bool,
}

fn bad(path: &str, why: &str) -> Error {
    m1_engine::EngineError::bad_parameter("path", format!("stage path '{}': {why}", path.escape_debug())).into()
}

fn io(path: &Path, e: std::io::Error) -> Error {
    m1_engine::EngineError::io(path, e).into()
}

impl StagePath {
    /// Checks and normalises a caller's path (`a//b/./c` is `a/b/c`).
    pub fn parse(path: &str) -> Result<StagePath> {
        if path.len() > MAX_PATH {
            return Err(bad(&path[..64], &format!("longer than {MAX_PATH} bytes")));
        }
        if path.contains('\0') {
            return Err(bad(path, "holds a NUL character"));
        }
        if path.contains('\\') {
            return Err(bad(path, "holds a backslash; separate folders with '/'"));
        }
        if path.starts_with('/') {
            return Err(bad(path, "is absolute; give it relative to the stage (a/b.csv)"));
        }
        let mut parts = Vec::new();
        for part in path.split('/') {
            match part {
                "" | "." => {}
                ".." => return Err(bad(path, "climbs out with '..'")),
                p if p.len() > MAX_NAME => return Err(bad(path, &format!("has a name over {MAX_NAME} bytes"))),
                p if p.starts_with(PARTIAL) => return Err(bad(path, "names an upload in progress")),
                p if p.chars().any(char::is_control) => return Err(bad(path, "holds a control character")),
                p => parts.push(p),
            }
        }
        let folder = parts.is_empty() || path.ends_with('/');
        Ok(StagePath { rel: parts.join("/"), folder })
    }

    /// The last component (the stage root's is empty).
    pub fn name(&self) -> &str {
        self.rel.rsplit('/').next().unwrap_or("")
    }
}

impl Stage {
    /// The stage of an environment on local disk.
    pub fn of(env: &Environment) -> Result<Stage> {
        let root = env.stage_dir().ok_or_else(|| {
            m1_engine::EngineError::bad_parameter(
                "path",
                "this environment lives in an object store; the stage is kept only for environments on local disk",
            )
        })?;
        std::fs::create_dir_all(&root).map_err(|e| io(&root, e))?;
        Ok(Stage { root })
    }

    /// The stage at `root` (tests, tools).
    pub fn at(root: impl Into<PathBuf>) -> Stage {
        Stage { root: root.into() }
    }

    /// Where a checked path is on disk, refusing links on the way (so nothing outside the
    /// stage is reached even if one were planted).
    pub fn resolve(&self, p: &StagePath) -> Result<PathBuf> {
        let mut at = self.root.clone();
        for part in p.rel.split('/').filter(|s| !s.is_empty()) {
            at.push(part);
            if std::fs::symlink_metadata(&at).is_ok_and(|m| m.file_type().is_symlink()) {
                return Err(bad(&p.rel, "passes through a link, which the stage does not follow"));
            }
        }
        Ok(at)
    }

    fn existing(&self, p: &StagePath) -> Result<(PathBuf, std::fs::Metadata)> {
        let at = self.resolve(p)?;
        let meta = std::fs::metadata(&at).map_err(|_| not_found(&p.rel))?;
        if p.folder && !meta.is_dir() {
            return Err(not_found(&format!("{}/", p.rel)));
        }
        Ok((at, meta))
    }

    /// Writes `body` to `path` (at most `limit` bytes), or makes a folder when `path` ends in
    /// `/` and the body is empty. Answers `{name, path}`.
    pub fn put(&self, path: &str, body: &mut dyn Read, limit: u64) -> Result<Value> {
        let p = StagePath::parse(path)?;
        let at = self.resolve(&p)?;
        if p.folder {
            let mut probe = [0u8; 1];
            if body.read(&mut probe).map_err(|e| io(&at, e))? > 0 {
                return Err(bad(path, "ends with '/', which names a folder; a file's path does not"));
            }
            std::fs::create_dir_all(&at).map_err(|e| io(&at, e))?;
            return Ok(json!({"name": p.name(), "path": format!("{}/", p.rel)}));
        }
        if at.is_dir() {
            return Err(bad(path, "is a folder"));
        }
        let parent = at.parent().expect("a file path has a parent").to_path_buf();
        self.resolve(&StagePath { rel: parent_rel(&p.rel), folder: true })?;
        std::fs::create_dir_all(&parent).map_err(|e| io(&parent, e))?;
        let tmp = parent.join(format!("{PARTIAL}{}", uuid_like()));
        let written = (|| -> Result<u64> {
            let mut f = std::fs::File::create(&tmp).map_err(|e| io(&tmp, e))?;
            // A second handle syncs what was written so far while the upload goes on, so the
            // disk writes back during the transfer and the final sync has little left to do.
            let syncer = f.try_clone().map_err(|e| io(&tmp, e))?;
            let (progress, written) = std::sync::mpsc::sync_channel::<()>(1);
            let background = std::thread::spawn(move || {
                while written.recv().is_ok() {
                    let _ = syncer.sync_data();
                }
            });
            let mut buf = vec![0u8; 256 << 10];
            let mut total = 0u64;
            let mut since_sync = 0u64;
            let copied = loop {
                let n = match body.read(&mut buf) {
                    Ok(0) => break Ok(total),
                    Ok(n) => n,
                    Err(e) => break Err(io(&tmp, e)),
                };
                total += n as u64;
                if total > limit {
                    break Err(too_large(limit));
                }
                if let Err(e) = f.write_all(&buf[..n]) {
                    break Err(io(&tmp, e));
                }
                since_sync += n as u64;
                if since_sync >= SYNC_EVERY {
                    // A sync already running is enough: never wait for it here.
                    let _ = progress.try_send(());
                    since_sync = 0;
                }
            };
            drop(progress);
            let _ = background.join();
            let total = copied?;
            f.sync_all().map_err(|e| io(&tmp, e))?;
            Ok(total)
        })();
        let total = match written {
            Ok(t) => t,
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(e);
            }
        };
        std::fs::rename(&tmp, &at).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            io(&at, e)
        })?;
        Ok(json!({"name": p.name(), "path": p.rel, "size": total}))
    }

    /// A folder's entries or a file's metadata, in seed 003's `StageObjectMetadata` shape.
    pub fn get(&self, path: &str) -> Result<Value> {
        let p = StagePath::parse(path)?;
        let (at, meta) = self.existing(&p)?;
        if !meta.is_dir() {
            return Ok(metadata(&p.rel, &meta, None));
        }
        let mut content = Vec::new();
        let mut entries: Vec<_> = std::fs::read_dir(&at).map_err(|e| io(&at, e))?.filter_map(|e| e.ok()).collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let name = e.file_name().to_string_lossy().to_string();
            let Ok(m) = e.metadata() else { continue };
            if name.starts_with(PARTIAL) || e.file_type().is_ok_and(|t| t.is_symlink()) {
                continue;
            }
            let rel = if p.rel.is_empty() { name } else { format!("{}/{name}", p.rel) };
            content.push(metadata(&rel, &m, None));
        }
        Ok(metadata(&p.rel, &meta, Some(content)))
    }

    /// Opens a file for download: the file and its size.
    pub fn open(&self, path: &str) -> Result<(std::fs::File, u64)> {
        let p = StagePath::parse(path)?;
        let (at, meta) = self.existing(&p)?;
        if meta.is_dir() {
            return Err(bad(path, "is a folder; list it, or name a file"));
        }
        Ok((std::fs::File::open(&at).map_err(|e| io(&at, e))?, meta.len()))
    }

    /// Moves or renames a file or folder. Answers `{name, path}` of the new place.
    pub fn rename(&self, path: &str, new_path: &str) -> Result<Value> {
        let from = StagePath::parse(path)?;
        let to = StagePath::parse(new_path).map_err(rename_field)?;
        if from.rel.is_empty() || to.rel.is_empty() {
            return Err(bad(path, "the stage's root cannot be moved or replaced"));
        }
        let (src, meta) = self.existing(&from)?;
        let dst = self.resolve(&to)?;
        if meta.is_dir() && (to.rel == from.rel || to.rel.starts_with(&format!("{}/", from.rel))) {
            return Err(bad(new_path, "is inside the folder being moved"));
        }
        if dst.exists() {
            return Err(m1_engine::EngineError::bad_parameter(
                "newPath",
                format!("stage path '{}' exists already; delete it first", to.rel),
            )
            .into());
        }
        if let Some(parent) = dst.parent() {
            std::fs::create_dir_all(parent).map_err(|e| io(parent, e))?;
        }
        std::fs::rename(&src, &dst).map_err(|e| io(&dst, e))?;
        let shown = if meta.is_dir() { format!("{}/", to.rel) } else { to.rel.clone() };
        Ok(json!({"name": to.name(), "path": shown}))
    }

    /// Deletes a file, or a folder and everything in it (the path must end with `/`).
    pub fn delete(&self, path: &str) -> Result<Value> {
        let p = StagePath::parse(path)?;
        if p.rel.is_empty() {
            return Err(bad(path, "the stage's root cannot be deleted; delete what is in it"));
        }
        let (at, meta) = self.existing(&p)?;
        if meta.is_dir() {
            if !p.folder {
                return Err(bad(path, "is a folder: end its path with '/' to delete it and everything in it"));
            }
            std::fs::remove_dir_all(&at).map_err(|e| io(&at, e))?;
            return Ok(json!({"name": p.name(), "path": format!("{}/", p.rel)}));
        }
        std::fs::remove_file(&at).map_err(|e| io(&at, e))?;
        Ok(json!({"name": p.name(), "path": p.rel}))
    }

    /// Bytes of everything in the stage.
    pub fn bytes(&self) -> u64 {
        m1_query::store::indexer::dir_bytes(&self.root)
    }

    /// The local file of a `stage://path` source, for publish.
    pub fn source(&self, url: &str) -> Result<PathBuf> {
        let rest = url.strip_prefix(SCHEME).unwrap_or(url);
        let p = StagePath::parse(rest)?;
        self.resolve(&p)
    }
}

fn rename_field(e: Error) -> Error {
    match e {
        Error::Engine(m1_engine::EngineError::BadParameter { reason, .. }) => {
            m1_engine::EngineError::BadParameter { name: "newPath".into(), reason }.into()
        }
        other => other,
    }
}

fn parent_rel(rel: &str) -> String {
    rel.rsplit_once('/').map_or(String::new(), |(p, _)| p.to_string())
}

fn not_found(rel: &str) -> Error {
    m1_engine::EngineError::StageNotFound(rel.to_string()).into()
}

fn too_large(limit: u64) -> Error {
    m1_engine::EngineError::TooLarge(format!(
        "the upload is over the stage's limit of {limit} bytes (system parameter stage-max-bytes)"
    ))
    .into()
}

fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("{}-{t}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

fn rfc3339(t: std::io::Result<std::time::SystemTime>) -> Value {
    let ms = t.ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map(|d| d.as_millis() as i64);
    ms.map_or(Value::Null, |ms| Value::from(crate::endpoint::v1::iso(ms)))
}

/// Seed 003's `StageObjectMetadata` of one entry.
fn metadata(rel: &str, meta: &std::fs::Metadata, content: Option<Vec<Value>>) -> Value {
    let dir = meta.is_dir();
    let name = rel.rsplit('/').next().unwrap_or("");
    let path = if dir && !rel.is_empty() { format!("{rel}/") } else { rel.to_string() };
    let kind = if dir {
        "directory"
    } else if name.ends_with(".json") {
        "json"
    } else {
        ""
    };
    json!({
        "name": name,
        "path": path,
        "type": kind,
        "size": if dir { 0 } else { meta.len() },
        "created": rfc3339(meta.created().or_else(|_| meta.modified())),
        "last_modified": rfc3339(meta.modified()),
        "writable": true,
        "format": "json",
        "mimetype": if dir { "" } else { mime(name) },
        "content": content.map_or(Value::Null, Value::Array),
    })
}

fn mime(name: &str) -> &'static str {
    let ext = name.rsplit_once('.').map_or("", |(_, e)| e).to_ascii_lowercase();
    match ext.as_str() {
        "csv" => "text/csv",
        "tsv" | "txt" => "text/plain",
        "json" => "application/json",
        "jsonl" | "ndjson" => "application/x-ndjson",
        "gz" => "application/gzip",
        "zip" => "application/zip",
        "zst" => "application/zstd",
        "parquet" => "application/vnd.apache.parquet",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_normalised_and_confined() {
        let ok = |s: &str, rel: &str, folder: bool| {
            assert_eq!(StagePath::parse(s).unwrap(), StagePath { rel: rel.into(), folder }, "{s}");
        };
        ok("a/b.csv", "a/b.csv", false);
        ok("a//./b/", "a/b", true);
        ok("", "", true);
        ok("./", "", true);
        for bad in ["../x", "a/../../x", "/etc/passwd", "a\\b", "a\0b", "a/..", ".m1-upload-1", "a\nb"] {
            assert!(StagePath::parse(bad).is_err(), "{bad:?}");
        }
        assert!(StagePath::parse(&"x".repeat(256)).is_err());
        assert!(StagePath::parse(&"a/".repeat(600)).is_err());
    }

    proptest::proptest! {
        /// Whatever a caller sends, an accepted path is normalised and stays inside the stage.
        #[test]
        fn accepted_paths_stay_inside_the_stage(path in "[a./\\\\\u{0}\u{7f} é~-]{0,40}") {
            if let Ok(p) = StagePath::parse(&path) {
                proptest::prop_assert!(!p.rel.starts_with('/') && !p.rel.ends_with('/'), "{:?}", p);
                for part in p.rel.split('/') {
                    proptest::prop_assert!(!part.is_empty() || p.rel.is_empty(), "{:?}", p);
                    proptest::prop_assert!(part != ".." && part != "." && !part.contains(['\\', '\0']), "{:?}", p);
                }
                let root = Path::new("/stage-root");
                let at = Stage::at(root).resolve(&p).unwrap();
                proptest::prop_assert!(at.starts_with(root), "{} leaves the stage", at.display());
                proptest::prop_assert_eq!(at.components().count(), root.components().count() + p.rel.split('/').filter(|x| !x.is_empty()).count());
            } else {
                proptest::prop_assert!(
                    path.contains("..") || path.starts_with('/') || path.contains(['\\', '\0', '\u{7f}']) || path.len() > MAX_PATH,
                    "{:?} refused without a reason", path
                );
            }
        }
    }

    #[test]
    fn put_list_get_move_delete() {
        let dir = tempfile::tempdir().unwrap();
        let stage = Stage::at(dir.path().join("stage"));
        std::fs::create_dir_all(dir.path().join("stage")).unwrap();
        stage.put("in/a.csv", &mut &b"x,y\n1,2\n"[..], 100).unwrap();
        stage.put("in/sub/", &mut &b""[..], 100).unwrap();
        let e = stage.put("in/big.csv", &mut &[0u8; 200][..], 100).unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::TooLarge);
        assert!(!dir.path().join("stage/in/big.csv").exists());
        let listing = stage.get("in/").unwrap();
        let names: Vec<&str> =
            listing["content"].as_array().unwrap().iter().map(|c| c["path"].as_str().unwrap()).collect();
        assert_eq!(names, ["in/a.csv", "in/sub/"], "{listing}");
        assert_eq!(listing["content"][0]["size"], 8);
        assert_eq!(stage.get("in/a.csv").unwrap()["type"], "");
        stage.rename("in/a.csv", "out/b.csv").unwrap();
        assert!(stage.get("in/a.csv").is_err());
        let (mut f, n) = stage.open("out/b.csv").unwrap();
        let mut s = String::new();
        f.read_to_string(&mut s).unwrap();
        assert_eq!((s.as_str(), n), ("x,y\n1,2\n", 8));
        assert!(stage.delete("out").is_err(), "a folder needs its slash");
        stage.delete("out/").unwrap();
        assert!(!dir.path().join("stage/out").exists());
        assert_eq!(stage.delete("nope.csv").unwrap_err().kind(), crate::ErrorKind::NotFound);
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink("/etc", dir.path().join("stage/link")).unwrap();
            assert!(stage.get("link/passwd").is_err());
            assert!(stage.put("link/x", &mut &b"1"[..], 10).is_err());
            assert!(!stage.get("").unwrap().to_string().contains("link"));
        }
    }
}
