//! `/write`: raw items appended to the environment's archive, and optionally published.
//!
//! Each call writes one file `archive/<yyyy>/<mm>/<dd>/<uuid>.jsonl.zst` (one JSON item per line,
//! zstd), after stamping every item with the client's address and the time received under the
//! names the `property-ip` and `property-received` system parameters give. The archive keeps
//! every item whole, whatever the schema; `/publish -file <env>/archive/...` publishes it again.

use bytes::Bytes;
use m1_engine::Environment;
use m1_engine::record::Record;
use serde::Serialize;
use serde_json::Value;

use crate::error::{IngestError, Result};
use crate::publish::{PublishReport, publish_records};

/// What `/write` takes besides the items.
#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    /// The client's address, stamped under `property-ip` (absent for local calls).
    pub ip: Option<String>,
    /// Also publish the items to the lake.
    pub publish: bool,
    /// TransformRuleSet JSON for publishing.
    pub rules: Option<String>,
    /// Publish permissively (default: the `publish-permissive` system parameter).
    pub permissive: Option<bool>,
}

/// What `/write` did.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WriteReport {
    /// Items archived.
    pub archived: usize,
    /// The archive file, relative to the environment root.
    pub file: String,
    /// The publish, when asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub published: Option<PublishReport>,
    /// The keys the published items got, in item order (filtered items have none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keys: Option<Vec<u64>>,
}

/// Sets `value` at a dotted `path`, creating objects on the way (`_m1.ip` → `{"_m1": {"ip": ..}}`).
fn set_dotted(item: &mut Record, path: &str, value: Value) {
    let mut parts = path.split('.').peekable();
    let mut map = item;
    while let Some(part) = parts.next() {
        if parts.peek().is_none() {
            map.insert(part.to_string(), value);
            return;
        }
        let slot = map.entry(part.to_string()).or_insert_with(|| Value::Object(Record::new()));
        if !slot.is_object() {
            *slot = Value::Object(Record::new());
        }
        map = slot.as_object_mut().expect("just made an object");
    }
}

/// Archives `items` (each must be a JSON object) and, if asked, publishes them.
pub fn write(env: &Environment, items: Vec<Value>, options: &WriteOptions) -> Result<WriteReport> {
    let system = env.system()?;
    let name = |key: &str, default: &str| system.get(key).and_then(Value::as_str).unwrap_or(default).to_string();
    let (ip_name, received_name) = (name("property-ip", "_m1.ip"), name("property-received", "_m1.receivedUTC"));
    let now = chrono::Utc::now();
    let received = Value::String(now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
    let mut records = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let Value::Object(mut record) = item else {
            return Err(IngestError::Source(format!("items[{i}] is not a JSON object")));
        };
        if let Some(ip) = &options.ip {
            set_dotted(&mut record, &ip_name, Value::String(ip.clone()));
        }
        set_dotted(&mut record, &received_name, received.clone());
        records.push(record);
    }
    let mut body = Vec::new();
    for r in &records {
        serde_json::to_writer(&mut body, r).map_err(|e| IngestError::Source(e.to_string()))?;
        body.push(b'\n');
    }
    let compressed = zstd::bulk::compress(&body, 3)
        .map_err(|e| IngestError::Unsupported(format!("zstd: cannot compress the archive: {e}")))?;
    let file = format!("archive/{}/{}.jsonl.zst", now.format("%Y/%m/%d"), uuid::Uuid::now_v7().simple());
    env.storage().put(&file, Bytes::from(compressed))?;
    let archived = records.len();
    if !options.publish {
        return Ok(WriteReport { archived, file, published: None, keys: None });
    }
    let permissive = options
        .permissive
        .unwrap_or_else(|| system.get("publish-permissive").and_then(Value::as_bool).unwrap_or(false));
    let report = publish_records(env, records, options.rules.as_deref(), permissive, &file)?;
    let keys = report.key_ranges.iter().flat_map(|&(a, b)| a..b).collect();
    Ok(WriteReport { archived, file, published: Some(report), keys: Some(keys) })
}
