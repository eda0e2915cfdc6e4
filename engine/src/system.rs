//! System parameters of an environment (`/system`): the SPEC §8 settings plus application keys,
//! kept in `system.json` at the environment root.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde_json::{Value, json};

use crate::error::{EngineError, Result};
use crate::storage::Storage;

/// File holding the parameters, relative to the environment root.
pub const SYSTEM_FILE: &str = "system.json";

/// How long replaced versions stay readable, in ms (Delta's default: 7 days).
pub const RETENTION: &str = "retention-ms";
/// Scheduled backups: how often (0: never), how many to keep, and for how long.
pub const BACKUP_INTERVAL: &str = "backup-interval-ms";
/// Scheduled backups kept at most (0: no limit).
pub const BACKUP_KEEP_COUNT: &str = "backup-keep-count";
/// Scheduled backups older than this are deleted (0: kept however old).
pub const BACKUP_KEEP_AGE: &str = "backup-keep-age-ms";

/// The built-in parameters and their defaults.
pub fn defaults() -> BTreeMap<String, Value> {
    BTreeMap::from([
        ("token-expire-ms".to_string(), json!(86_400_000)),
        ("password-min-length".to_string(), json!(8)),
        ("property-ip".to_string(), json!("_m1.ip")),
        ("property-received".to_string(), json!("_m1.receivedUTC")),
        ("property-session-id".to_string(), json!("session.id")),
        ("publish-permissive".to_string(), json!(false)),
        ("geo".to_string(), json!(false)),
        ("cors".to_string(), json!("")),
        (RETENTION.to_string(), json!(7 * 86_400_000_i64)),
        (BACKUP_INTERVAL.to_string(), json!(0)),
        (BACKUP_KEEP_COUNT.to_string(), json!(7)),
        (BACKUP_KEEP_AGE.to_string(), json!(0)),
    ])
}

/// Every parameter: the defaults overlaid with what was set.
pub fn load(storage: &Storage) -> Result<BTreeMap<String, Value>> {
    let mut params = defaults();
    if let Some(bytes) = storage.get(SYSTEM_FILE)? {
        let set: BTreeMap<String, Value> = serde_json::from_slice(&bytes)
            .map_err(|e| EngineError::BadData(format!("{SYSTEM_FILE} is damaged: {e}")))?;
        params.extend(set);
    }
    Ok(params)
}

/// Sets parameters. Built-in ones are checked against their default's type; a string value
/// for a boolean or number parameter is parsed (the API sends form fields as strings).
pub fn set(storage: &Storage, changes: &BTreeMap<String, Value>) -> Result<BTreeMap<String, Value>> {
    let defaults = defaults();
    let mut stored: BTreeMap<String, Value> = match storage.get(SYSTEM_FILE)? {
        Some(b) => serde_json::from_slice(&b).unwrap_or_default(),
        None => BTreeMap::new(),
    };
    for (name, value) in changes {
        if name.is_empty() {
            return Err(EngineError::BadData("a system parameter needs a name".into()));
        }
        let value = match defaults.get(name) {
            Some(default) => typed_like(name, value, default)?,
            None => value.clone(),
        };
        check_range(name, &value)?;
        stored.insert(name.clone(), value);
    }
    storage.put(SYSTEM_FILE, Bytes::from(serde_json::to_vec_pretty(&stored)?))?;
    load(storage)
}

/// The ranges of the numeric built-ins: a value out of them would lock every user out (a token
/// that expires at once, a negative password length).
fn check_range(name: &str, value: &Value) -> Result<()> {
    let (min, max) = match name {
        "token-expire-ms" => (1_000, 366 * 86_400_000),
        "password-min-length" => (1, 1_024),
        RETENTION | BACKUP_INTERVAL | BACKUP_KEEP_AGE => (0, i64::MAX),
        BACKUP_KEEP_COUNT => (0, 1_000_000),
        _ => return Ok(()),
    };
    match value.as_i64() {
        Some(n) if (min..=max).contains(&n) => Ok(()),
        _ => Err(EngineError::BadData(format!(
            "system parameter '{name}' must be a number from {min} to {max}, got {value}"
        ))),
    }
}

fn typed_like(name: &str, value: &Value, default: &Value) -> Result<Value> {
    let bad = || EngineError::BadData(format!("system parameter '{name}' must be like {default}, got {value}"));
    Ok(match (default, value) {
        (Value::Bool(_), Value::Bool(_))
        | (Value::Number(_), Value::Number(_))
        | (Value::String(_), Value::String(_)) => value.clone(),
        (Value::Bool(_), Value::String(s)) => Value::Bool(s.trim().parse().map_err(|_| bad())?),
        (Value::Number(_), Value::String(s)) => Value::from(s.trim().parse::<i64>().map_err(|_| bad())?),
        _ => return Err(bad()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_default_persist_and_are_typed() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(dir.path().to_str().unwrap(), &Vec::new()).unwrap();
        assert_eq!(load(&storage).unwrap()["publish-permissive"], json!(false));
        let changes = BTreeMap::from([
            ("publish-permissive".to_string(), json!("true")),
            ("my-app-key".to_string(), json!({"a": 1})),
        ]);
        let all = set(&storage, &changes).unwrap();
        assert_eq!((&all["publish-permissive"], &all["my-app-key"]), (&json!(true), &json!({"a": 1})));
        assert_eq!(load(&storage).unwrap()["my-app-key"], json!({"a": 1}));
        let err = set(&storage, &BTreeMap::from([("token-expire-ms".to_string(), json!("soon"))])).unwrap_err();
        assert!(err.to_string().contains("'token-expire-ms' must be like 86400000"), "{err}");
        for (name, bad) in [("token-expire-ms", "-1"), ("token-expire-ms", "0"), ("password-min-length", "-3")] {
            let err = set(&storage, &BTreeMap::from([(name.to_string(), json!(bad))])).unwrap_err().to_string();
            assert!(err.contains(&format!("'{name}' must be a number from")), "{err}");
        }
        assert_eq!(load(&storage).unwrap()["token-expire-ms"], json!(86_400_000), "nothing was stored");
    }
}
