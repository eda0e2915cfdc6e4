//! csv/txt reader: any bytes give records or errors, never a panic; record lines only grow and
//! nothing follows a fatal error. The first byte picks the options (csv or txt, delimiter,
//! header row or `columns`, charset decoding).
#![no_main]

use std::io::Cursor;

use libfuzzer_sys::fuzz_target;
use m1_ingest::{InputFormat, FormatOptions, decode_charset, open_records};

fuzz_target!(|data: &[u8]| {
    let Some((&flags, body)) = data.split_first() else { return };
    let format = if flags & 1 == 0 { InputFormat::Csv } else { InputFormat::Txt };
    let headers = flags & 2 == 0;
    let columns = (!headers || flags & 4 != 0).then(|| vec!["a".to_string(), "b".to_string(), "c.d".to_string()]);
    let delimiter = match (flags >> 3) & 3 {
        0 => None,
        1 => Some(b';'),
        2 => Some(b'|'),
        _ => Some(b' '),
    };
    let options = FormatOptions { format: Some(format), delimiter, headers, columns, rows: None };
    let reader: Box<dyn std::io::Read + Send> = Box::new(Cursor::new(body.to_vec()));
    let reader = if flags & 0x20 != 0 { decode_charset(reader, Some("UTF-16LE")).unwrap() } else { reader };
    let Ok(records) = open_records(reader, &options, "fuzz.csv") else { return };
    let mut last_line = 0;
    let mut fatal = false;
    for item in records {
        assert!(!fatal, "an item after a fatal error");
        match item {
            Ok(r) => {
                assert!(r.line >= 1 && r.line >= last_line, "line {} after {last_line}", r.line);
                last_line = r.line;
            }
            Err(e) => {
                assert!(!e.to_string().is_empty());
                fatal = e.fatal;
            }
        }
    }
});
