//! Publishing a file into the lake as one atomic append.

use std::io::BufRead;
use std::path::Path;
use std::time::Instant;

use m1_engine::Environment;
use serde::Serialize;
use serde_json::Value;

use crate::error::{IngestError, Result};

/// What a publish did.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PublishReport {
    /// The file published.
    pub file: String,
    /// Records read from the file.
    pub rows_read: u64,
    /// Records committed to the lake.
    pub rows_published: u64,
    /// First key assigned.
    pub first_key: Option<u64>,
    /// Last key assigned.
    pub last_key: Option<u64>,
    /// Properties present in the input but not in the schema (not stored in the lake).
    pub unmapped: Vec<String>,
    /// Bytes read.
    pub bytes: u64,
    /// Wall time.
    pub seconds: f64,
}

/// Options of a publish.
#[derive(Debug, Clone, Default)]
pub struct PublishOptions {
    /// Stop after this many records (`None` = all).
    pub rows: Option<u64>,
}

/// Publishes a `.jsonl` file (one JSON object per line) atomically: every record or none.
pub fn publish_jsonl(env: &Environment, path: &Path, options: &PublishOptions) -> Result<PublishReport> {
    let started = Instant::now();
    let read_err = |e| IngestError::Read { path: path.to_path_buf(), source: e };
    let name = path.display().to_string();
    match path.extension().and_then(|e| e.to_str()) {
        Some("jsonl" | "ndjson" | "json") => {}
        _ => {
            return Err(IngestError::Unsupported(format!(
                "{name}: only .jsonl files can be published so far (one JSON object per line)"
            )));
        }
    }
    let file = std::fs::File::open(path).map_err(read_err)?;
    let mut reader = std::io::BufReader::with_capacity(1 << 20, file);
    let mut appender = env.appender()?;
    let (mut line_no, mut rows, mut bytes) = (0u64, 0u64, 0u64);
    let mut line = String::new();
    while options.rows.is_none_or(|cap| rows < cap) {
        line.clear();
        let n = reader.read_line(&mut line).map_err(read_err)?;
        if n == 0 {
            break;
        }
        line_no += 1;
        bytes += n as u64;
        if line.trim().is_empty() {
            continue;
        }
        let record = match serde_json::from_str::<Value>(&line) {
            Ok(Value::Object(m)) => m,
            Ok(other) => {
                let reason = format!("found {}", kind(&other));
                return Err(IngestError::BadRecord { path: path.to_path_buf(), line: line_no, reason });
            }
            Err(e) => {
                return Err(IngestError::BadRecord { path: path.to_path_buf(), line: line_no, reason: e.to_string() });
            }
        };
        appender.write_json(record).map_err(|e| IngestError::BadValue {
            path: path.to_path_buf(),
            line: line_no,
            source: e,
        })?;
        rows += 1;
    }
    let report = appender.commit()?;
    Ok(PublishReport {
        file: name,
        rows_read: rows,
        rows_published: report.rows,
        first_key: report.first_key,
        last_key: report.last_key,
        unmapped: report.unmapped,
        bytes,
        seconds: started.elapsed().as_secs_f64(),
    })
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
