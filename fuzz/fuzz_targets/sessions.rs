//! The session stores' decoders: `session/update` ops text parses into changes or an error
//! that names the op, never a panic; and a write-ahead-log record with any payload (framed with
//! a valid length and checksum, so the payload decoder is what runs) decodes or is treated as a
//! torn tail, never a panic, and never reports more bytes intact than it was given.
#![no_main]

use libfuzzer_sys::fuzz_target;
use m1::session::{ops, wal};

fuzz_target!(|data: &[u8]| {
    let [mode, rest @ ..] = data else { return };
    if mode % 2 == 0 {
        let Ok(text) = std::str::from_utf8(rest) else { return };
        for key_path in ["_m1key", "id", "user.id"] {
            if let Err(e) = ops::parse(text, key_path) {
                assert!(!e.to_string().is_empty());
            }
        }
    } else if !rest.is_empty() {
        // (An empty payload would make the "torn" copy whole too: two records, rightly.)
        let mut framed = Vec::with_capacity(rest.len() * 2 + 16);
        // Two records: the fuzzed payload, then the same again cut short (a torn tail).
        for cut in [rest.len(), rest.len() / 2] {
            framed.extend_from_slice(&(rest.len() as u32).to_le_bytes());
            framed.extend_from_slice(&crc32fast::hash(rest).to_le_bytes());
            framed.extend_from_slice(&rest[..cut]);
        }
        let (records, intact) = wal::decode(&framed);
        assert!(intact <= framed.len() && records.len() <= 1, "{intact} of {}", framed.len());
    }
});
