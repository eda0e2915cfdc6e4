//! Compressed sources (gz, zip, zst) through the whole reading pipeline: any bytes give records
//! or errors, never a panic, and a bomb cannot take the memory (records are streamed and each is
//! bounded). The first byte picks the compression and the format.
#![no_main]

use std::io::Cursor;

use libfuzzer_sys::fuzz_target;
use m1_ingest::{Compression, FormatOptions, InputFormat, SourceOptions, read_source};

fuzz_target!(|data: &[u8]| {
    let Some((&flags, body)) = data.split_first() else { return };
    let compression = [Compression::Gz, Compression::Zip, Compression::Zst, Compression::None][(flags & 3) as usize];
    let format =
        [InputFormat::Jsonl, InputFormat::Json, InputFormat::Csv, InputFormat::Txt][((flags >> 2) & 3) as usize];
    let options = SourceOptions {
        compression: Some(compression),
        format: FormatOptions::new(format),
        ..SourceOptions::default()
    };
    let Ok(records) = read_source(Box::new(Cursor::new(body.to_vec())), &options, "fuzz") else { return };
    // A bomb of many small records is legitimate input: read a bounded number of them.
    for item in records.take(100_000) {
        if let Err(e) = item
            && e.fatal
        {
            break;
        }
    }
});
