//! json and jsonl readers: any bytes give records or errors, never a panic; record lines only
//! grow and nothing follows a fatal error. The first byte picks jsonl or json.
#![no_main]

use std::io::Cursor;

use libfuzzer_sys::fuzz_target;
use m1_ingest::{InputFormat, FormatOptions, open_records};

fuzz_target!(|data: &[u8]| {
    let Some((&flags, body)) = data.split_first() else { return };
    let format = if flags & 1 == 0 { InputFormat::Jsonl } else { InputFormat::Json };
    let options = FormatOptions::new(format);
    let records = open_records(Box::new(Cursor::new(body.to_vec())), &options, "fuzz.json").expect("json options");
    let mut last_line = 0;
    let mut fatal = false;
    for item in records {
        assert!(!fatal, "an item after a fatal error");
        match item {
            Ok(r) => {
                assert!(r.line >= 1 && r.line >= last_line, "line {} after {last_line}", r.line);
                assert!(!r.record.values().any(|v| v.is_object()), "records are flattened");
                last_line = r.line;
            }
            Err(e) => {
                assert!(e.line >= 1, "{e}");
                fatal = e.fatal;
            }
        }
    }
});
