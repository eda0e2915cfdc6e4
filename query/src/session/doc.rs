//! Session documents: finding the key property, RFC 7386 merge patches, the update stamp.
//!
//! Documents keep their nesting. A dotted name (`session.id`) addresses nested objects, and also
//! a literal key containing dots (`{"session.id": ..}`), the same lookup the [`crate::Matcher`]
//! uses.

use serde_json::{Map, Value};

/// Where every write stamps its time (epoch milliseconds): `_m1.session.lastUpdated`.
pub const STAMP: [&str; 3] = ["_m1", "session", "lastUpdated"];

/// The value at a dotted name: a literal key first, else through nested objects.
pub fn lookup<'a>(map: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    if let Some(v) = map.get(name) {
        return Some(v);
    }
    name.match_indices('.').find_map(|(i, _)| match map.get(&name[..i]) {
        Some(Value::Object(inner)) => lookup(inner, &name[i + 1..]),
        _ => None,
    })
}

/// A document's key as stored: a string as is, an integer in decimal (so `5` and `"5"` name the
/// same document). Anything else is refused with the reason.
pub fn key_of(doc: &Map<String, Value>, key_path: &str) -> Result<String, String> {
    match lookup(doc, key_path) {
        None | Some(Value::Null) => Err(format!("document has no key property '{key_path}'")),
        Some(v) => key_value(v)
            .ok_or_else(|| format!("key property '{key_path}' must be a string or an integer, found {}", short(v))),
    }
}

/// A key given directly (a `delete` id): a string or an integer.
pub fn key_value(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) if n.is_i64() || n.is_u64() => Some(n.to_string()),
        _ => None,
    }
}

/// A value shortened for an error message.
pub fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 60 { format!("{}…", s.chars().take(60).collect::<String>()) } else { s }
}

/// Applies an RFC 7386 merge patch: objects merge key by key, `null` removes, anything else
/// replaces. Key order is kept (new keys go last).
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(t) = target else { unreachable!("made an object above") };
    for (k, v) in p {
        if v.is_null() {
            t.shift_remove(k);
        } else {
            merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
        }
    }
}

/// Sets `_m1.session.lastUpdated` to `ms`, making the objects on the way if needed (a
/// non-object in the way is replaced).
pub fn stamp(doc: &mut Map<String, Value>, ms: i64) {
    let mut at = doc;
    for name in &STAMP[..2] {
        let slot = at.entry(name.to_string()).or_insert_with(|| Value::Object(Map::new()));
        if !slot.is_object() {
            *slot = Value::Object(Map::new());
        }
        let Value::Object(inner) = slot else { unreachable!("made an object above") };
        at = inner;
    }
    at.insert(STAMP[2].to_string(), Value::from(ms));
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn keys_nested_literal_and_integer() {
        assert_eq!(key_of(&obj(json!({"session": {"id": "a"}})), "session.id").unwrap(), "a");
        assert_eq!(key_of(&obj(json!({"session.id": 7})), "session.id").unwrap(), "7");
        assert!(key_of(&obj(json!({"session": {"id": 1.5}})), "session.id").unwrap_err().contains("1.5"));
        assert!(key_of(&obj(json!({"session": {}})), "session.id").unwrap_err().contains("no key property"));
        assert!(key_of(&obj(json!({"session": {"id": null}})), "session.id").is_err());
        assert!(key_of(&obj(json!({"session": {"id": [1]}})), "session.id").is_err());
    }

    #[test]
    fn merge_patch_follows_rfc_7386() {
        // The examples of RFC 7386 section 3.
        let mut t = json!({"title": "Goodbye!", "author": {"givenName": "John", "familyName": "Doe"},
            "tags": ["example", "sample"], "content": "This will be unchanged"});
        let p = json!({"title": "Hello!", "phoneNumber": "+01-123-456-7890", "author": {"familyName": null},
            "tags": ["example"]});
        merge_patch(&mut t, &p);
        assert_eq!(
            t,
            json!({"title": "Hello!", "author": {"givenName": "John"}, "tags": ["example"],
                "content": "This will be unchanged", "phoneNumber": "+01-123-456-7890"})
        );
        let mut t = json!({"a": "b"});
        merge_patch(&mut t, &json!({"a": {"bb": {"ccc": null}}}));
        assert_eq!(t, json!({"a": {"bb": {}}}));
        let mut t = json!(["a"]);
        merge_patch(&mut t, &json!({"a": "b", "c": null}));
        assert_eq!(t, json!({"a": "b"}));
    }

    #[test]
    fn stamp_makes_its_path() {
        let mut d = obj(json!({"_m1": {"ip": "1.2.3.4", "session": 3}}));
        stamp(&mut d, 42);
        assert_eq!(Value::Object(d), json!({"_m1": {"ip": "1.2.3.4", "session": {"lastUpdated": 42}}}));
    }
}
