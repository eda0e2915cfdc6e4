//! Date parsing and rendering: any string gives a date or `None`, never a panic, and a parsed
//! date renders to an ISO string that parses back to the same instant.
#![no_main]

use libfuzzer_sys::fuzz_target;
use m1_engine::values::{format_date_ms, parse_date};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    if let Some(ms) = parse_date(s) {
        let rendered = format_date_ms(ms);
        if rendered.contains('T') {
            assert_eq!(parse_date(&rendered), Some(ms), "{s:?} -> {ms} -> {rendered}");
        }
    }
});
