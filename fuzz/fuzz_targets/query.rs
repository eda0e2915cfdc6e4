//! The query language: any string parses to a query or a positioned error, never a panic or a
//! stack overflow; a parsed query displays as text that parses back to the same tree; and
//! matching it against a small record (typed and untyped) does not panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use m1_engine::schema::PropertyType;
use m1_query::matcher::Matcher;
use m1_query::syntax::parse;

fn types(name: &str) -> Option<PropertyType> {
    Some(match name {
        "s" | "tags" => PropertyType::String,
        "body" => PropertyType::Text,
        "n" => PropertyType::Integer,
        "x" => PropertyType::Double,
        "t" => PropertyType::Date,
        "b" => PropertyType::Boolean,
        _ => return None,
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    let q = match parse(s) {
        Ok(q) => q,
        Err(e) => {
            assert!(e.position <= s.len(), "{s:?}: {e}");
            return;
        }
    };
    let shown = q.to_string();
    match parse(&shown) {
        Ok(again) => assert_eq!(again, q, "{s:?} displayed as {shown:?}"),
        Err(e) => panic!("{s:?} displayed as {shown:?}, which does not parse: {e}"),
    }
    let _ = q.properties();
    let record = serde_json::json!({
        "_m1key": 3,
        "s": "Oslo",
        "tags": ["a", "B", null],
        "body": "The quick brown fox, ærlig talt 東京",
        "n": -42,
        "x": "NaN",
        "t": "2021-02-23T19:18:04.399Z",
        "b": true,
        "free": "Hello World",
        "empty": "",
        "nothing": null,
        "session": {"geo": {"city": "Zürich"}, "items": [{"sku": "x1"}]}
    });
    let record = record.as_object().expect("an object");
    let _ = Matcher::new(&q, types).matches(record);
    let _ = Matcher::untyped(&q).matches(record);
});
