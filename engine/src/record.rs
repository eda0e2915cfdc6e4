//! Records as they travel between parsing and typing: JSON maps with dotted property names.

use serde_json::{Map, Value};

/// A record: property name to JSON value, in input order.
pub type Record = Map<String, Value>;

/// Flattens nested objects into dotted names: `{"a": {"b": 1}}` becomes `{"a.b": 1}`.
/// Arrays are kept whole: they feed `multi` properties.
pub fn flatten(record: Map<String, Value>) -> Map<String, Value> {
    fn walk(prefix: &str, obj: Map<String, Value>, out: &mut Map<String, Value>) {
        for (k, v) in obj {
            let name = if prefix.is_empty() { k } else { format!("{prefix}.{k}") };
            match v {
                Value::Object(inner) if !inner.is_empty() => walk(&name, inner, out),
                Value::Object(_) => {}
                other => {
                    out.insert(name, other);
                }
            }
        }
    }
    if !record.values().any(Value::is_object) {
        return record;
    }
    let mut out = Map::with_capacity(record.len());
    walk("", record, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn flattens_nested_objects() {
        let rec = json!({"a": {"b": 1, "c": {"d": "x"}}, "e": [1, 2], "f": {}}).as_object().unwrap().clone();
        let flat = flatten(rec);
        assert_eq!(Value::Object(flat), json!({"a.b": 1, "a.c.d": "x", "e": [1, 2]}));
    }
}
