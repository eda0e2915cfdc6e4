//! json and jsonl readers.
//!
//! - [`JsonLines`] (`jsonl`): one JSON object per line; blank lines are skipped; a line that is not
//!   a JSON object (or not JSON) is a non-fatal [`RecordError`] for that line.
//! - [`JsonDocument`] (`json`): one array of objects, read element by element without loading the
//!   file (each element's bytes are found by a small bracket/string scanner, then parsed), or one
//!   object; several top-level objects in a row are read one after the other. A non-object element
//!   is a non-fatal error; a syntax error ends the stream with a fatal error at its line and
//!   column.

use std::fmt;
use std::io::{self, BufRead, BufReader, Read};

use m1_engine::record::Record;
use serde::Deserialize;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use super::{RecordError, SourceRecord};

const BUF_SIZE: usize = 256 * 1024;

/// A parsed JSON value: an object, flattened, or the kind of anything else.
enum Parsed {
    Object(Record),
    Other(&'static str),
}

/// Parses one JSON value. An object is flattened to dotted names while it is parsed (the same
/// result as [`m1_engine::record::flatten`] on the parsed object, without building the nested
/// maps first). Should a dotted name occur twice (a repeated key, or `"a.b"` next to
/// `"a": {"b"}`), the last occurrence wins.
fn parse_flat(text: &[u8]) -> serde_json::Result<Parsed> {
    let mut de = serde_json::Deserializer::from_slice(text);
    let parsed = de::Deserializer::deserialize_any(&mut de, Top)?;
    de.end()?;
    Ok(parsed)
}

/// Visits the top-level value.
struct Top;

impl<'de> Visitor<'de> for Top {
    type Value = Parsed;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Parsed, A::Error> {
        let mut out = Record::new();
        fill(None, &mut out, map)?;
        Ok(Parsed::Object(out))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Parsed, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Parsed::Other("an array"))
    }

    fn visit_bool<E>(self, _: bool) -> Result<Parsed, E> {
        Ok(Parsed::Other("a boolean"))
    }

    fn visit_i64<E>(self, _: i64) -> Result<Parsed, E> {
        Ok(Parsed::Other("a number"))
    }

    fn visit_u64<E>(self, _: u64) -> Result<Parsed, E> {
        Ok(Parsed::Other("a number"))
    }

    fn visit_f64<E>(self, _: f64) -> Result<Parsed, E> {
        Ok(Parsed::Other("a number"))
    }

    fn visit_str<E>(self, _: &str) -> Result<Parsed, E> {
        Ok(Parsed::Other("a string"))
    }

    fn visit_unit<E>(self) -> Result<Parsed, E> {
        Ok(Parsed::Other("null"))
    }
}

/// Inserts the entries of an object into `out`, nested objects under dotted names.
fn fill<'de, A: MapAccess<'de>>(prefix: Option<&str>, out: &mut Record, mut map: A) -> Result<(), A::Error> {
    while let Some(key) = map.next_key::<String>()? {
        let name = match prefix {
            None => key,
            Some(p) => format!("{p}.{key}"),
        };
        map.next_value_seed(Field { name, out: &mut *out })?;
    }
    Ok(())
}

/// One property's value: a nested object is flattened into `out`, anything else inserted.
struct Field<'a> {
    name: String,
    out: &'a mut Record,
}

impl Field<'_> {
    fn put<E>(self, v: Value) -> Result<(), E> {
        self.out.insert(self.name, v);
        Ok(())
    }
}

impl<'de> DeserializeSeed<'de> for Field<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Field<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        fill(Some(&self.name), self.out, map)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<(), A::Error> {
        let v = Value::deserialize(de::value::SeqAccessDeserializer::new(seq))?;
        self.put(v)
    }

    fn visit_bool<E>(self, v: bool) -> Result<(), E> {
        self.put(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<(), E> {
        self.put(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<(), E> {
        self.put(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<(), E> {
        self.put(Value::from(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<(), E> {
        self.put(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<(), E> {
        self.put(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        self.put(Value::Null)
    }

    fn visit_none<E>(self) -> Result<(), E> {
        self.put(Value::Null)
    }

    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

/// serde_json's message without its " at line L column C" suffix (positions are ours).
fn message(e: &serde_json::Error) -> String {
    let s = e.to_string();
    match s.rfind(" at line ") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

/// The records of a jsonl stream.
pub struct JsonLines {
    reader: BufReader<Box<dyn Read + Send>>,
    buf: Vec<u8>,
    line: u64,
    source: String,
    done: bool,
}

impl JsonLines {
    /// Reads `reader` as one JSON object per line; `source` names it in errors.
    pub fn new(reader: Box<dyn Read + Send>, source: &str) -> Self {
        Self {
            reader: BufReader::with_capacity(BUF_SIZE, reader),
            buf: Vec::new(),
            line: 0,
            source: source.to_string(),
            done: false,
        }
    }
}

impl Iterator for JsonLines {
    type Item = Result<SourceRecord, RecordError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.done {
                return None;
            }
            self.buf.clear();
            match self.reader.read_until(b'\n', &mut self.buf) {
                Ok(0) => {
                    self.done = true;
                    return None;
                }
                Ok(_) => self.line += 1,
                Err(e) => {
                    self.done = true;
                    return Some(Err(RecordError::new(&self.source, self.line + 1, None, e.to_string(), true)));
                }
            }
            if let Some(item) = parse_line(&self.buf, self.line, &self.source) {
                return Some(item);
            }
        }
    }
}

/// Parses one jsonl line (with or without its line ending); `None` for a blank line.
pub fn parse_line(bytes: &[u8], line: u64, source: &str) -> Option<Result<SourceRecord, RecordError>> {
    let first = bytes.iter().position(|b| !b.is_ascii_whitespace())?;
    let mut text = bytes;
    while let [rest @ .., b'\n' | b'\r'] = text {
        text = rest;
    }
    Some(match parse_flat(text) {
        Ok(Parsed::Object(record)) => Ok(SourceRecord { line, record }),
        Ok(Parsed::Other(kind)) => {
            let msg = format!("not a JSON object: found {kind}");
            Err(RecordError::new(source, line, Some(first as u64 + 1), msg, false))
        }
        Err(e) => {
            let msg = format!("not a JSON object: {}", message(&e));
            Err(RecordError::new(source, line, Some(e.column().max(1) as u64), msg, false))
        }
    })
}

/// Reads bytes while keeping the 1-based line and column of the next byte.
struct Scanner<R> {
    reader: R,
    line: u64,
    col: u64,
}

/// How capturing a value ended.
enum Capture {
    /// The value's bytes are complete (as far as brackets and quotes tell).
    Complete,
    /// The input ended inside the value.
    Eof,
}

impl<R: BufRead> Scanner<R> {
    /// Skips whitespace and returns the next byte without consuming it; `None` at the end.
    fn peek_non_ws(&mut self) -> io::Result<Option<u8>> {
        loop {
            let buf = self.reader.fill_buf()?;
            if buf.is_empty() {
                return Ok(None);
            }
            let mut used = 0;
            let mut found = None;
            for &b in buf {
                match b {
                    b'\n' => {
                        self.line += 1;
                        self.col = 1;
                    }
                    b' ' | b'\t' | b'\r' => self.col += 1,
                    _ => {
                        found = Some(b);
                        break;
                    }
                }
                used += 1;
            }
            self.reader.consume(used);
            if found.is_some() {
                return Ok(found);
            }
        }
    }

    /// Consumes one byte that is not a line break.
    fn bump(&mut self) {
        self.reader.consume(1);
        self.col += 1;
    }

    /// Appends the bytes of one JSON value to `out`: a container up to its matching bracket, a
    /// string up to its closing quote, or a scalar up to the next delimiter or whitespace.
    fn capture(&mut self, out: &mut Vec<u8>) -> io::Result<Capture> {
        let (mut depth, mut in_string, mut escaped) = (0u32, false, false);
        let mut started = false;
        let mut scalar = false;
        loop {
            let buf = self.reader.fill_buf()?;
            if buf.is_empty() {
                return Ok(if scalar && !in_string { Capture::Complete } else { Capture::Eof });
            }
            let mut end = None;
            for (i, &b) in buf.iter().enumerate() {
                if !started {
                    started = true;
                    match b {
                        b'{' | b'[' => depth = 1,
                        b'"' => in_string = true,
                        _ => scalar = true,
                    }
                    continue;
                }
                if in_string {
                    if escaped {
                        escaped = false;
                    } else if b == b'\\' {
                        escaped = true;
                    } else if b == b'"' {
                        in_string = false;
                        if depth == 0 {
                            end = Some(i + 1);
                            break;
                        }
                    }
                    continue;
                }
                if scalar {
                    if matches!(b, b',' | b']' | b'}' | b' ' | b'\t' | b'\r' | b'\n' | b'[' | b'{' | b'"') {
                        end = Some(i);
                        break;
                    }
                    continue;
                }
                match b {
                    b'"' => in_string = true,
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            end = Some(i + 1);
                            break;
                        }
                    }
                    _ => {}
                }
            }
            let used = end.unwrap_or(buf.len());
            if out.len() + used > super::MAX_RECORD_BYTES {
                return Err(super::too_long());
            }
            out.extend_from_slice(&buf[..used]);
            for &b in &buf[..used] {
                if b == b'\n' {
                    self.line += 1;
                    self.col = 1;
                } else {
                    self.col += 1;
                }
            }
            self.reader.consume(used);
            if end.is_some() {
                return Ok(Capture::Complete);
            }
        }
    }
}

/// Where a [`JsonDocument`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DocState {
    /// Before the first value.
    Start,
    /// Inside the top-level array, before an element (after `[` or `,`).
    ArrayElement { first: bool },
    /// Inside the top-level array, after an element.
    ArrayAfter,
    /// Top-level objects, before the next one.
    Objects,
    /// Nothing more to read.
    Done,
}

/// The records of a json stream: one array of objects, or one (or more) top-level objects.
pub struct JsonDocument {
    scanner: Scanner<BufReader<Box<dyn Read + Send>>>,
    state: DocState,
    buf: Vec<u8>,
    source: String,
}

impl JsonDocument {
    /// Reads `reader` as a JSON document; `source` names it in errors.
    pub fn new(reader: Box<dyn Read + Send>, source: &str) -> Self {
        Self {
            scanner: Scanner { reader: BufReader::with_capacity(BUF_SIZE, reader), line: 1, col: 1 },
            state: DocState::Start,
            buf: Vec::new(),
            source: source.to_string(),
        }
    }

    fn fatal(&mut self, line: u64, col: u64, message: impl Into<String>) -> Option<Result<SourceRecord, RecordError>> {
        self.state = DocState::Done;
        Some(Err(RecordError::new(&self.source, line, Some(col), message, true)))
    }

    fn fatal_here(&mut self, message: impl Into<String>) -> Option<Result<SourceRecord, RecordError>> {
        let (line, col) = (self.scanner.line, self.scanner.col);
        self.fatal(line, col, message)
    }

    fn io_error(&mut self, e: &io::Error) -> Option<Result<SourceRecord, RecordError>> {
        self.state = DocState::Done;
        Some(Err(RecordError::new(&self.source, self.scanner.line, None, e.to_string(), true)))
    }

    /// Consumes the `]` closing the array; only whitespace may follow it.
    fn end_array(&mut self) -> Option<Result<SourceRecord, RecordError>> {
        self.scanner.bump();
        self.state = DocState::Done;
        match self.scanner.peek_non_ws() {
            Ok(None) => None,
            Ok(Some(_)) => self.fatal_here("unexpected data after the JSON array"),
            Err(e) => self.io_error(&e),
        }
    }

    /// Reads and parses the value starting at the next byte.
    fn element(&mut self) -> Option<Result<SourceRecord, RecordError>> {
        let (line, col) = (self.scanner.line, self.scanner.col);
        self.buf.clear();
        let complete = match self.scanner.capture(&mut self.buf) {
            Ok(c) => matches!(c, Capture::Complete),
            Err(e) => return self.io_error(&e),
        };
        match parse_flat(&self.buf) {
            Ok(Parsed::Object(record)) if complete => Some(Ok(SourceRecord { line, record })),
            Ok(Parsed::Other(kind)) if complete => {
                let msg = format!("not a JSON object: found {kind}");
                Some(Err(RecordError::new(&self.source, line, Some(col), msg, false)))
            }
            Ok(_) => self.fatal_here("unexpected end of input inside a value"),
            Err(e) => {
                // Positions inside the element, made absolute.
                let (el, ec) = (e.line().max(1) as u64, e.column() as u64);
                let (l, c) = if el == 1 { (line, col + ec.saturating_sub(1)) } else { (line + el - 1, ec.max(1)) };
                let msg = if e.is_eof() {
                    "unexpected end of input inside a value".to_string()
                } else {
                    format!("JSON syntax error: {}", message(&e))
                };
                self.fatal(l, c, msg)
            }
        }
    }
}

impl Iterator for JsonDocument {
    type Item = Result<SourceRecord, RecordError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let next = match self.state {
                DocState::Done => return None,
                _ => match self.scanner.peek_non_ws() {
                    Ok(b) => b,
                    Err(e) => return self.io_error(&e),
                },
            };
            match (self.state, next) {
                (DocState::Done, _) => return None,
                (DocState::Start, None) | (DocState::Objects, None) => {
                    self.state = DocState::Done;
                    return None;
                }
                (DocState::Start, Some(b'[')) => {
                    self.scanner.bump();
                    self.state = DocState::ArrayElement { first: true };
                }
                (DocState::Start | DocState::Objects, Some(b'{')) => {
                    self.state = DocState::Objects;
                    return self.element();
                }
                (DocState::Start, Some(_)) => return self.fatal_here("expected a JSON array of objects or an object"),
                (DocState::Objects, Some(_)) => {
                    return self.fatal_here("expected a JSON object after the previous top-level object");
                }
                (DocState::ArrayElement { first: true }, Some(b']')) => return self.end_array(),
                (DocState::ArrayElement { .. }, Some(b']')) => {
                    return self.fatal_here("JSON syntax error: trailing comma before ']'");
                }
                (DocState::ArrayElement { .. }, Some(b',')) => {
                    return self.fatal_here("JSON syntax error: expected a value, found ','");
                }
                (DocState::ArrayElement { .. }, Some(_)) => {
                    self.state = DocState::ArrayAfter;
                    return self.element();
                }
                (DocState::ArrayElement { .. } | DocState::ArrayAfter, None) => {
                    return self.fatal_here("unexpected end of input: the JSON array is not closed");
                }
                (DocState::ArrayAfter, Some(b',')) => {
                    self.scanner.bump();
                    self.state = DocState::ArrayElement { first: false };
                }
                (DocState::ArrayAfter, Some(b']')) => return self.end_array(),
                (DocState::ArrayAfter, Some(_)) => {
                    return self.fatal_here("JSON syntax error: expected ',' or ']' after an array element");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{FormatOptions, InputFormat, open_records};
    use super::*;

    fn read(text: &str, format: InputFormat) -> Vec<String> {
        let options = FormatOptions::new(format);
        let name = if format == InputFormat::Json { "data.json" } else { "data.jsonl" };
        open_records(Box::new(std::io::Cursor::new(text.as_bytes().to_vec())), &options, name)
            .unwrap()
            .map(|r| match r {
                Ok(r) => format!("L{} {}", r.line, Value::Object(r.record)),
                Err(e) => format!("E {e}{}", if e.fatal { " (fatal)" } else { "" }),
            })
            .collect()
    }

    #[test]
    fn jsonl_lines_blank_lines_and_bad_lines() {
        let text = "{\"a\":1,\"b\":{\"c\":\"x\",\"d\":{\"e\":[1,2]}}}\n\n  \r\n[1,2]\n{\"a\":\n\"str\"\r\n{\"a\":2}\r\n{\"a\":3}";
        assert_eq!(
            read(text, InputFormat::Jsonl),
            [
                r#"L1 {"a":1,"b.c":"x","b.d.e":[1,2]}"#,
                "E data.jsonl:4:1: not a JSON object: found an array",
                "E data.jsonl:5:5: not a JSON object: EOF while parsing a value",
                "E data.jsonl:6:1: not a JSON object: found a string",
                r#"L7 {"a":2}"#,
                r#"L8 {"a":3}"#,
            ]
        );
        assert_eq!(
            read("{\"a\": tru}\n", InputFormat::Jsonl),
            ["E data.jsonl:1:10: not a JSON object: expected ident"]
        );
        assert!(read("", InputFormat::Jsonl).is_empty());
    }

    #[test]
    fn json_array_streams_elements_with_lines() {
        let text = "[\n  {\"a\": 1, \"n\": {\"m\": true}},\n  {\"a\": \"x]}\\\"\"},\n  5,\n  {\n    \"b\": [1, {\"c\": 2}]\n  }\n]\n";
        assert_eq!(
            read(text, InputFormat::Json),
            [
                r#"L2 {"a":1,"n.m":true}"#,
                r#"L3 {"a":"x]}\""}"#,
                "E data.json:4:3: not a JSON object: found a number",
                r#"L5 {"b":[1,{"c":2}]}"#,
            ]
        );
        assert!(read("[]", InputFormat::Json).is_empty());
        assert!(read("  \n", InputFormat::Json).is_empty());
        assert_eq!(read("[null, \"s\"]", InputFormat::Json).len(), 2);
    }

    #[test]
    fn flattening_while_parsing_matches_flatten() {
        for text in [
            r#"{"a":1,"b":{"c":"x","d":{"e":[1,{"f":2}]}},"g":{},"h":null,"i":-1.5e3,"j":18446744073709551615}"#,
            r#"{"a.b":1,"a":{"b":2},"c":true}"#,
            r#"{"u":"\u00e9\n\"","v":[[],{}],"w":{"x":{"y":{}}}}"#,
        ] {
            let Parsed::Object(got) = parse_flat(text.as_bytes()).unwrap() else { panic!("{text}") };
            let want = match serde_json::from_str::<Value>(text).unwrap() {
                Value::Object(m) => m_engine_flatten(m),
                _ => unreachable!(),
            };
            assert_eq!(Value::Object(got), Value::Object(want), "{text}");
        }
        for (text, kind) in [("[1,[2]]", "an array"), ("3", "a number"), ("\"s\"", "a string"), ("null", "null")] {
            assert!(matches!(parse_flat(text.as_bytes()).unwrap(), Parsed::Other(k) if k == kind), "{text}");
        }
        assert!(parse_flat(b"{\"a\":1} x").is_err());
    }

    fn m_engine_flatten(m: serde_json::Map<String, Value>) -> Record {
        m1_engine::record::flatten(m)
    }

    #[test]
    fn json_one_object_or_several() {
        assert_eq!(read("{\"a\": {\"b\": 1}}", InputFormat::Json), [r#"L1 {"a.b":1}"#]);
        assert_eq!(read("{\"a\": 1}\n{\"a\": 2}\n", InputFormat::Json), [r#"L1 {"a":1}"#, r#"L2 {"a":2}"#]);
    }

    #[test]
    fn json_syntax_errors_are_fatal_with_positions() {
        assert_eq!(
            read("[\n {\"a\": 1},\n {\"a\": tru}\n]", InputFormat::Json),
            [r#"L2 {"a":1}"#, "E data.json:3:11: JSON syntax error: expected ident (fatal)"]
        );
        assert_eq!(
            read("[{\"a\": 1},\n {\"a\":\n 2,,}]", InputFormat::Json),
            [r#"L1 {"a":1}"#, "E data.json:3:4: JSON syntax error: key must be a string (fatal)"]
        );
        assert_eq!(
            read("[{\"a\": 1} {\"a\": 2}]", InputFormat::Json),
            [
                r#"L1 {"a":1}"#,
                "E data.json:1:11: JSON syntax error: expected ',' or ']' after an array element (fatal)"
            ]
        );
        assert_eq!(
            read("[{\"a\": 1},\n", InputFormat::Json),
            [r#"L1 {"a":1}"#, "E data.json:2:1: unexpected end of input: the JSON array is not closed (fatal)"]
        );
        assert_eq!(
            read("[{\"a\": 1},\n{\"b\": \"unterminated", InputFormat::Json),
            [r#"L1 {"a":1}"#, "E data.json:2:19: unexpected end of input inside a value (fatal)"]
        );
        assert_eq!(
            read("[{},]", InputFormat::Json),
            [r#"L1 {}"#, "E data.json:1:5: JSON syntax error: trailing comma before ']' (fatal)"]
        );
        assert_eq!(
            read("[{}] x", InputFormat::Json),
            [r#"L1 {}"#, "E data.json:1:6: unexpected data after the JSON array (fatal)"]
        );
        assert_eq!(
            read("5", InputFormat::Json),
            ["E data.json:1:1: expected a JSON array of objects or an object (fatal)"]
        );
    }
}
