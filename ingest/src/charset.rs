//! Charset decoding: any input encoding becomes a UTF-8 stream for the format readers.
//!
//! The `encoding` parameter takes any WHATWG label (`utf-8`, `latin1`, `windows-1252`,
//! `shift_jis`, `euc-jp`, `gbk`, `big5`, `euc-kr`, `utf-16le`, ...) and the common Java charset
//! names (`UTF8`, `ISO8859_1`, `Cp1252`, `UTF-16`, `UnicodeLittleUnmarked`, `MS932`, `EUC_JP`,
//! `MS936`, `MS949`, ...). Following the WHATWG Encoding Standard, which `encoding_rs`
//! implements, `ISO-8859-1`/`latin1`/`US-ASCII` decode as `windows-1252` (a superset), and a
//! byte-order mark at the start of the stream wins over the label and is removed.
//! Java's `UTF-16` is big-endian unless a BOM says otherwise.
//!
//! Bytes that are invalid in the encoding are replaced by U+FFFD (the replacement character), as
//! Java's readers do: the record is kept and the damage stays visible in the value. Nothing is
//! dropped silently. For UTF-8, the default, a [`Utf8Policy`] says more: permissive publishes count
//! the lines that had invalid bytes, strict ones fail the read at the first, naming its line and
//! character ([`decode_charset_checked`]).

use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use encoding_rs::Encoding;

use crate::error::{IngestError, Result};

/// Finds the encoding a WHATWG label or Java charset name means (case-insensitive).
pub fn encoding_for_label(label: &str) -> Result<&'static Encoding> {
    let lower = label.trim().to_ascii_lowercase();
    let java = match lower.as_str() {
        "utf-16" | "utf16" | "unicode" | "unicodebig" | "x-utf-16be-bom" | "utf_16" => Some(encoding_rs::UTF_16BE),
        "unicodebigunmarked" | "utf_16be" => Some(encoding_rs::UTF_16BE),
        "unicodelittle" | "unicodelittleunmarked" | "x-utf-16le-bom" | "utf_16le" => Some(encoding_rs::UTF_16LE),
        "ms936" | "cp936" | "windows-936" => Some(encoding_rs::GBK),
        "ms949" | "cp949" | "x-windows-949" | "windows-949" => Some(encoding_rs::EUC_KR),
        "ms950" | "cp950" | "x-windows-950" | "windows-950" => Some(encoding_rs::BIG5),
        "pck" | "cp943" | "cp932" => Some(encoding_rs::SHIFT_JIS),
        "ascii" | "us-ascii" | "ascii7" | "iso646-us" | "default" => Some(encoding_rs::WINDOWS_1252),
        _ => None,
    };
    let found = java
        .or_else(|| Encoding::for_label_no_replacement(lower.as_bytes()))
        .or_else(|| Encoding::for_label_no_replacement(lower.replace('_', "-").as_bytes()))
        .or_else(|| {
            // Java's historical names: ISO8859_1, 8859_15.
            let dashed = lower.replace('_', "-");
            let part = dashed.trim_start_matches("iso").trim_start_matches('-').strip_prefix("8859")?;
            Encoding::for_label_no_replacement(format!("iso-8859-{}", part.trim_start_matches('-')).as_bytes())
        })
        .or_else(|| {
            lower.strip_prefix("cp").and_then(|n| Encoding::for_label_no_replacement(format!("windows-{n}").as_bytes()))
        });
    found.ok_or_else(|| {
        let hint = if lower.contains("32") && lower.contains("utf") { " (UTF-32 is not supported)" } else { "" };
        IngestError::InvalidOption(format!(
            "unknown charset {label:?}{hint}: use a WHATWG or Java charset name such as UTF-8, ISO-8859-1, \
             windows-1252, UTF-16LE, UTF-16BE, Shift_JIS, EUC-JP, GBK"
        ))
    })
}

/// Wraps `reader` so it yields UTF-8: decodes from the charset `label` (UTF-8 when `None`),
/// removes a byte-order mark, and replaces invalid bytes with U+FFFD (see the module
/// documentation). An unknown label is an error before anything is read.
pub fn decode_charset(reader: Box<dyn Read + Send>, label: Option<&str>) -> Result<Box<dyn Read + Send>> {
    decode_charset_checked(reader, label, &Utf8Policy::Replace)
}

/// What to do with invalid UTF-8 when the charset is UTF-8 (other charsets always replace).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Utf8Policy {
    /// Replace invalid bytes by U+FFFD, silently.
    #[default]
    Replace,
    /// Replace them, and count the lines that had any (permissive publishes report the count).
    Count(InvalidUtf8Lines),
    /// Fail the read at the first invalid byte, naming its line and character (strict publishes).
    Strict,
}

/// A shared count of input lines in which invalid UTF-8 was replaced by U+FFFD.
#[derive(Debug, Clone, Default)]
pub struct InvalidUtf8Lines(Arc<AtomicU64>);

impl InvalidUtf8Lines {
    /// The lines counted so far.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Two counts are equal when they are the same count (options that share it compare equal).
impl PartialEq for InvalidUtf8Lines {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for InvalidUtf8Lines {}

/// [`decode_charset`], with `policy` for invalid bytes in UTF-8 input (the default charset).
pub fn decode_charset_checked(
    reader: Box<dyn Read + Send>,
    label: Option<&str>,
    policy: &Utf8Policy,
) -> Result<Box<dyn Read + Send>> {
    let encoding = match label {
        Some(l) if !l.trim().is_empty() => encoding_for_label(l)?,
        _ => encoding_rs::UTF_8,
    };
    let reader: Box<dyn Read + Send> = match policy {
        Utf8Policy::Strict if encoding == encoding_rs::UTF_8 => Box::new(Utf8Check::new(reader, None)),
        Utf8Policy::Count(count) if encoding == encoding_rs::UTF_8 => {
            Box::new(Utf8Check::new(reader, Some(count.clone())))
        }
        _ => reader,
    };
    let decoder = encoding_rs_io::DecodeReaderBytesBuilder::new()
        .encoding(Some(encoding))
        .bom_override(true)
        .strip_bom(true)
        .build_with_buffer(reader, vec![0u8; 64 * 1024])
        .map_err(|e| IngestError::Source(format!("charset decoder: {e}")))?;
    Ok(Box::new(decoder))
}

/// Passes UTF-8 through and, at an invalid sequence, fails (no `count`) or counts its line once
/// (`count`; the decoder after it then replaces the bytes). A UTF-16 byte-order mark at the start
/// turns the check off (the decoder then reads UTF-16, as it would without it).
struct Utf8Check {
    inner: Box<dyn Read + Send>,
    count: Option<InvalidUtf8Lines>,
    /// The bytes of a sequence cut by the end of the last read.
    pending: Vec<u8>,
    line: u64,
    column: u64,
    /// The last line counted, so a line with many bad bytes counts once.
    counted_line: u64,
    started: bool,
    off: bool,
}

impl Utf8Check {
    fn new(inner: Box<dyn Read + Send>, count: Option<InvalidUtf8Lines>) -> Utf8Check {
        Utf8Check { inner, count, pending: Vec::new(), line: 1, column: 1, counted_line: 0, started: false, off: false }
    }

    fn advance(&mut self, valid: &[u8]) {
        for &b in valid {
            if b == b'\n' {
                self.line += 1;
                self.column = 1;
            } else if b & 0xC0 != 0x80 {
                self.column += 1;
            }
        }
    }
}

impl Read for Utf8Check {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if self.off {
            return Ok(n);
        }
        if !self.started && n > 0 {
            self.started = true;
            if buf[..n].starts_with(&[0xFF, 0xFE]) || buf[..n].starts_with(&[0xFE, 0xFF]) {
                self.off = true;
                return Ok(n);
            }
        }
        let mut text = std::mem::take(&mut self.pending);
        text.extend_from_slice(&buf[..n]);
        let mut rest = &text[..];
        loop {
            match std::str::from_utf8(rest) {
                Ok(_) => {
                    self.advance(rest);
                    break;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    self.advance(&rest[..valid]);
                    // A sequence cut by the end of this read is finished by the next one; at the
                    // end of the input it is invalid.
                    let bad = match e.error_len() {
                        Some(len) => len,
                        None if n == 0 => rest.len() - valid,
                        None => {
                            self.pending = rest[valid..].to_vec();
                            break;
                        }
                    };
                    let Some(count) = &self.count else {
                        let msg = format!(
                            "invalid UTF-8 at line {}, character {} (pass encoding if the file is not UTF-8)",
                            self.line, self.column
                        );
                        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, msg));
                    };
                    if self.counted_line != self.line {
                        self.counted_line = self.line;
                        count.0.fetch_add(1, Ordering::Relaxed);
                    }
                    // The decoder turns the bad bytes into one U+FFFD.
                    self.column += 1;
                    rest = &rest[valid + bad..];
                }
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(bytes: &[u8], label: Option<&str>) -> String {
        let mut out = String::new();
        decode_charset(Box::new(std::io::Cursor::new(bytes.to_vec())), label)
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        out
    }

    fn encode(text: &str, label: &str) -> Vec<u8> {
        let enc = encoding_for_label(label).unwrap();
        if enc == encoding_rs::UTF_16LE || enc == encoding_rs::UTF_16BE {
            let le = enc == encoding_rs::UTF_16LE;
            return text.encode_utf16().flat_map(|u| if le { u.to_le_bytes() } else { u.to_be_bytes() }).collect();
        }
        let (bytes, _, unmappable) = enc.encode(text);
        assert!(!unmappable, "{text} in {label}");
        bytes.into_owned()
    }

    #[test]
    fn strict_utf8_names_the_first_invalid_byte() {
        let read = |bytes: &[u8]| {
            let mut out = String::new();
            let mut r =
                decode_charset_checked(Box::new(std::io::Cursor::new(bytes.to_vec())), None, &Utf8Policy::Strict)
                    .unwrap();
            r.read_to_string(&mut out).map(|_| out).map_err(|e| e.to_string())
        };
        assert_eq!(read("héllo\nwörld\n".as_bytes()).unwrap(), "héllo\nwörld\n");
        let err = read(b"ok\nab\xFFc\n").unwrap_err();
        assert!(err.contains("line 2, character 3"), "{err}");
        assert!(read(b"cut \xC3").unwrap_err().contains("line 1, character 5"));
        // A sequence split between reads is fine.
        let mut r =
            decode_charset_checked(Box::new(OneByte(b"\xC3\xA9t\xC3\xA9".to_vec(), 0)), None, &Utf8Policy::Strict)
                .unwrap();
        let mut out = String::new();
        r.read_to_string(&mut out).unwrap();
        assert_eq!(out, "été");
        // Other charsets and UTF-16 by its mark are not UTF-8 and pass.
        assert!(
            decode_charset_checked(
                Box::new(std::io::Cursor::new(b"\xE9t\xE9".to_vec())),
                Some("latin1"),
                &Utf8Policy::Strict
            )
            .is_ok()
        );
        assert_eq!(read(b"\xFF\xFEa\x00").unwrap(), "a");
    }

    #[test]
    fn permissive_utf8_counts_each_damaged_line_once() {
        let count = InvalidUtf8Lines::default();
        let read = |reader: Box<dyn Read + Send>| {
            let mut out = String::new();
            decode_charset_checked(reader, None, &Utf8Policy::Count(count.clone()))
                .unwrap()
                .read_to_string(&mut out)
                .unwrap();
            out
        };
        let text = read(Box::new(std::io::Cursor::new(b"ok\na\xFF\xFEb\xC0\nfine\n\xE9\n\xC3".to_vec())));
        assert_eq!(text, "ok\na\u{FFFD}\u{FFFD}b\u{FFFD}\nfine\n\u{FFFD}\n\u{FFFD}");
        assert_eq!(count.get(), 3, "lines 2, 4 and 5");
        // Byte by byte, a sequence split between reads is not damage; a cut one at the end is.
        let before = count.get();
        assert_eq!(read(Box::new(OneByte(b"\xC3\xA9t\n\xC3".to_vec(), 0))), "ét\n\u{FFFD}");
        assert_eq!(count.get() - before, 1);
    }

    /// A reader that gives one byte at a time.
    struct OneByte(Vec<u8>, usize);

    impl Read for OneByte {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.1 >= self.0.len() || buf.is_empty() {
                return Ok(0);
            }
            buf[0] = self.0[self.1];
            self.1 += 1;
            Ok(1)
        }
    }

    #[test]
    fn labels_whatwg_and_java() {
        for (label, name) in [
            ("UTF-8", "UTF-8"),
            ("utf8", "UTF-8"),
            ("ISO-8859-1", "windows-1252"),
            ("latin1", "windows-1252"),
            ("ISO8859_1", "windows-1252"),
            ("8859_1", "windows-1252"),
            ("windows-1252", "windows-1252"),
            ("Cp1252", "windows-1252"),
            ("Cp1250", "windows-1250"),
            ("ISO8859_15", "ISO-8859-15"),
            ("ISO-8859-2", "ISO-8859-2"),
            ("US-ASCII", "windows-1252"),
            ("UTF-16", "UTF-16BE"),
            ("UTF-16LE", "UTF-16LE"),
            ("UTF-16BE", "UTF-16BE"),
            ("UnicodeLittleUnmarked", "UTF-16LE"),
            ("Shift_JIS", "Shift_JIS"),
            ("MS932", "Shift_JIS"),
            ("windows-31j", "Shift_JIS"),
            ("EUC-JP", "EUC-JP"),
            ("EUC_JP", "EUC-JP"),
            ("GBK", "GBK"),
            ("GB2312", "GBK"),
            ("MS936", "GBK"),
            ("GB18030", "gb18030"),
            ("Big5", "Big5"),
            ("EUC-KR", "EUC-KR"),
            ("ISO-2022-JP", "ISO-2022-JP"),
            ("KOI8-R", "KOI8-R"),
        ] {
            assert_eq!(encoding_for_label(label).unwrap().name(), name, "{label}");
        }
        for bad in ["klingon", "UTF-32", "iso-2022-kr", "x"] {
            let msg = encoding_for_label(bad).unwrap_err().to_string();
            assert!(msg.contains(&format!("{bad:?}")), "{msg}");
        }
    }

    #[test]
    fn round_trips_non_ascii_text() {
        let text = "name,city\nJosé,Zürich\nÅsa,Ærøskøbing\n";
        for label in ["latin1", "windows-1252", "ISO-8859-15", "UTF-16LE", "UTF-16BE"] {
            assert_eq!(decode(&encode(text, label), Some(label)), text, "{label}");
        }
        let japanese = "名前,都市\n山田太郎,東京\n";
        for label in ["Shift_JIS", "EUC-JP", "UTF-16LE"] {
            assert_eq!(decode(&encode(japanese, label), Some(label)), japanese, "{label}");
        }
        assert_eq!(decode(&encode("中文,数据\n", "GBK"), Some("GBK")), "中文,数据\n");
        // windows-1252 specifics in 0x80..0x9F.
        assert_eq!(decode(b"\x80 \x93q\x94", Some("Cp1252")), "€ “q”");
    }

    #[test]
    fn boms_are_removed_and_win() {
        assert_eq!(decode(b"\xEF\xBB\xBFa,b", None), "a,b");
        let mut le = vec![0xFF, 0xFE];
        le.extend(encode("héllo", "UTF-16LE"));
        assert_eq!(decode(&le, Some("UTF-16LE")), "héllo");
        assert_eq!(decode(&le, Some("UTF-16")), "héllo", "Java UTF-16 follows the BOM");
        let mut be = vec![0xFE, 0xFF];
        be.extend(encode("héllo", "UTF-16BE"));
        assert_eq!(decode(&be, Some("UTF-16")), "héllo");
        assert_eq!(decode(&encode("héllo", "UTF-16BE"), Some("UTF-16")), "héllo", "no BOM: big-endian");
    }

    #[test]
    fn invalid_utf8_becomes_replacement_characters() {
        assert_eq!(decode(b"ok \xFF\xFE bad \xC3", None), "ok \u{FFFD}\u{FFFD} bad \u{FFFD}");
        assert_eq!(decode(b"", None), "");
    }
}
