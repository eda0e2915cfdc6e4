//! TransformRuleSet parsing: any input is a rule set or a `RuleError`, never a panic; a parsed
//! set applies to a record without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use m1_ingest::rules::{RecordTest, RuleSet};
use serde_json::json;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    let compile = |q: &str| -> Result<RecordTest, String> {
        let query = m1_query::parse(q).map_err(|e| e.to_string())?;
        let matcher = m1_query::Matcher::untyped(&query);
        Ok(Box::new(move |r: &m1_engine::record::Record| matcher.matches(r)))
    };
    if let Ok(rules) = RuleSet::parse(s, &compile) {
        let record = json!({"a": "x", "n": "42", "t": "2021-02-23T19:18:04Z", "tags": ["p", "q"], "line": "GET /x 404"});
        let _ = rules.apply(record.as_object().unwrap().clone());
        let _ = rules.apply_lenient(record.as_object().unwrap().clone(), &mut Vec::new());
    }
});
