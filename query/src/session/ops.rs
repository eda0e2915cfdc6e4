//! The `ops` parameter of `session/update`: parsed and checked completely before anything is
//! applied, so bad input rejects the whole call.
//!
//! `ops` is a JSON array of op objects. Each op object has one or more of `upsert` (documents),
//! `merge` (RFC 7386 patches; our extension) and `delete` (ids), applied in the order written.

use serde_json::{Map, Value};

use super::doc::{key_of, key_value, short};
use crate::error::{QueryError, Result};

/// One checked change, in call order.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Insert or replace the whole document.
    Upsert { key: String, doc: Map<String, Value> },
    /// Deep-merge a patch into the document, creating it when absent.
    Merge { key: String, patch: Map<String, Value> },
    /// Remove the document, if present.
    Delete { key: String },
}

fn bad(at: String, why: impl std::fmt::Display) -> QueryError {
    QueryError::BadRequest(format!("session/update: {at}: {why}; nothing was applied"))
}

/// Parses `ops` text; `key_path` is the store's key property.
pub fn parse(ops: &str, key_path: &str) -> Result<Vec<Change>> {
    let value: Value = serde_json::from_str(ops).map_err(|e| {
        QueryError::BadRequest(format!("session/update: ops is not valid JSON: {e}; nothing was applied"))
    })?;
    from_value(value, key_path)
}

/// Checks parsed `ops`.
pub fn from_value(ops: Value, key_path: &str) -> Result<Vec<Change>> {
    let Value::Array(ops) = ops else {
        return Err(bad("ops".into(), format!("expected a JSON array of ops, found {}", short(&ops))));
    };
    let mut out = Vec::new();
    for (i, op) in ops.into_iter().enumerate() {
        let Value::Object(op) = op else {
            return Err(bad(
                format!("ops[{i}]"),
                format!("an op must be an object such as {{\"upsert\": [..]}}, found {}", short(&op)),
            ));
        };
        if op.is_empty() {
            return Err(bad(format!("ops[{i}]"), "empty op (expected upsert, merge or delete)"));
        }
        for (name, arg) in op {
            let at = |j: usize| format!("ops[{i}].{name}[{j}]");
            let Value::Array(items) = arg else {
                if matches!(name.as_str(), "upsert" | "merge" | "delete") {
                    return Err(bad(format!("ops[{i}].{name}"), format!("expected an array, found {}", short(&arg))));
                }
                return Err(bad(
                    format!("ops[{i}]"),
                    format!("unknown op '{name}' (expected upsert, merge or delete)"),
                ));
            };
            match name.as_str() {
                "upsert" | "merge" => {
                    for (j, item) in items.into_iter().enumerate() {
                        let Value::Object(doc) = item else {
                            return Err(bad(
                                at(j),
                                format!("a document must be a JSON object, found {}", short(&item)),
                            ));
                        };
                        let key = key_of(&doc, key_path).map_err(|why| bad(at(j), why))?;
                        out.push(if name == "upsert" {
                            Change::Upsert { key, doc }
                        } else {
                            Change::Merge { key, patch: doc }
                        });
                    }
                }
                "delete" => {
                    for (j, id) in items.iter().enumerate() {
                        let key = key_value(id).ok_or_else(|| {
                            bad(at(j), format!("an id must be a string or an integer, found {}", short(id)))
                        })?;
                        out.push(Change::Delete { key });
                    }
                }
                other => {
                    return Err(bad(
                        format!("ops[{i}]"),
                        format!("unknown op '{other}' (expected upsert, merge or delete)"),
                    ));
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(ops: &str) -> String {
        parse(ops, "session.id").unwrap_err().to_string()
    }

    #[test]
    fn ops_apply_in_written_order() {
        let ops = r#"[{"upsert": [{"session": {"id": "a"}, "n": 1}], "delete": ["b", 7]}, {"merge": [{"session": {"id": 3}}]}]"#;
        let c = parse(ops, "session.id").unwrap();
        assert_eq!(c.len(), 4);
        assert!(matches!(&c[0], Change::Upsert { key, .. } if key == "a"));
        assert_eq!(c[1], Change::Delete { key: "b".into() });
        assert_eq!(c[2], Change::Delete { key: "7".into() });
        assert!(matches!(&c[3], Change::Merge { key, .. } if key == "3"));
    }

    #[test]
    fn errors_name_the_op_and_position() {
        assert!(
            err(r#"[{"upsert": [{"session": {"id": "a"}}, {"x": 1}]}]"#)
                .contains("ops[0].upsert[1]: document has no key property 'session.id'")
        );
        assert!(
            err(r#"[{"delete": ["a"]}, {"merge": [{"session": {"id": true}}]}]"#)
                .contains("ops[1].merge[0]: key property 'session.id' must be a string or an integer")
        );
        assert!(err(r#"[{"upsrt": []}]"#).contains("ops[0]: unknown op 'upsrt'"));
        assert!(err(r#"[{"delete": [1.5]}]"#).contains("ops[0].delete[0]"));
        assert!(err(r#"[{"upsert": [1]}]"#).contains("ops[0].upsert[0]: a document must be a JSON object"));
        assert!(err(r#"[{"upsert": "x"}]"#).contains("ops[0].upsert: expected an array"));
        assert!(err(r#"{"upsert": []}"#).contains("expected a JSON array"));
        assert!(err("[{]").contains("not valid JSON"));
        assert!(err("[{}]").contains("empty op"));
        assert!(err("[3]").contains("ops[0]: an op must be an object"));
    }
}
