//! csv and txt: RFC 4180 delimited text, read with the `csv` crate.
//!
//! Fields may be quoted with `"`; a quoted field may hold delimiters and line breaks (LF or
//! CRLF), and `""` inside it is one quote. Lines end with LF, CRLF or CR; blank lines are
//! skipped. The header row names the columns (names are trimmed); an empty or repeated name is
//! an error. Values are JSON strings, untrimmed; an empty field is `""`.
//!
//! A row with more fields than columns is a (non-fatal) [`RecordError`] whose column is the first
//! extra field; a row with fewer fields is one too, whose column is the first missing field
//! (strict publishes fail on it, permissive ones skip and count it). A quoted field that is
//! still open at the end of the input is a fatal error at the line and field of its opening
//! quote (the `csv` crate itself accepts it, so the stream is watched for it).

use std::collections::VecDeque;
use std::io::{self, Read};

use m1_engine::record::Record;
use serde_json::Value;

use super::{FormatOptions, InputFormat, RecordError, SourceRecord};
use crate::error::{IngestError, Result};

const BUF_SIZE: usize = 256 * 1024;

/// Checks the options of a delimited format before anything is read.
pub(crate) fn check_options(options: &FormatOptions) -> Result<()> {
    if let Some(d) = options.delimiter
        && matches!(d, b'"' | b'\n' | b'\r')
    {
        return Err(IngestError::InvalidOption(format!(
            "delimiter {:?} cannot be used: it is a quote or line break",
            char::from(d)
        )));
    }
    if let Some(d) = options.delimiter
        && !d.is_ascii()
    {
        return Err(IngestError::InvalidOption(format!("delimiter byte {d:#04x} is not an ASCII character")));
    }
    if matches!(options.format, Some(InputFormat::Csv | InputFormat::Txt)) {
        if !options.headers && options.columns.is_none() {
            return Err(IngestError::InvalidOption(
                "headers=false needs column names: add a `columns` rule naming the columns".into(),
            ));
        }
        if let Some(columns) = &options.columns {
            check_names(columns.iter().map(String::as_str)).map_err(|(_, msg)| IngestError::InvalidOption(msg))?;
        }
    }
    Ok(())
}

/// Checks column names: none empty, none repeated. The error gives the 1-based column.
fn check_names<'a>(names: impl Iterator<Item = &'a str>) -> Result<(), (u64, String)> {
    let mut seen: Vec<&str> = Vec::new();
    for (i, name) in names.enumerate() {
        let col = i as u64 + 1;
        if name.is_empty() {
            return Err((col, format!("empty column name in column {col}")));
        }
        if let Some(first) = seen.iter().position(|n| *n == name) {
            return Err((col, format!("duplicate column name {name:?} in columns {} and {col}", first + 1)));
        }
        seen.push(name);
    }
    Ok(())
}

/// Opens a csv/txt stream: reads the header row (unless `columns` name the columns) and returns
/// the reader of the data rows.
pub(crate) fn open(
    reader: Box<dyn Read + Send>,
    format: InputFormat,
    options: &FormatOptions,
    source: &str,
) -> Result<DelimitedRecords> {
    let options = FormatOptions { format: Some(format), ..options.clone() };
    check_options(&options)?;
    let delimiter = options.delimiter.unwrap_or(format.default_delimiter());
    let reader = csv_reader(QuoteScanner::new(reader, delimiter), delimiter);
    let mut records = DelimitedRecords {
        reader,
        names: Vec::new(),
        row: ::csv::ByteRecord::new(),
        source: source.to_string(),
        done: false,
    };
    if options.headers {
        match records.reader.read_byte_record(&mut records.row) {
            Ok(true) => {
                let line = records.start_line();
                if let Some(e) = records.unterminated_at_end() {
                    return Err(e.into());
                }
                if options.columns.is_none() {
                    let names: Vec<String> = records.row.iter().map(|f| utf8(f).trim().to_string()).collect();
                    check_names(names.iter().map(String::as_str)).map_err(|(col, msg)| {
                        RecordError::new(source, line, Some(col), format!("header: {msg}"), true)
                    })?;
                    records.names = names;
                }
            }
            Ok(false) => {
                records.done = true;
            }
            Err(e) => return Err(records.error(&e).into()),
        }
    }
    if let Some(columns) = &options.columns {
        records.names = columns.clone();
    }
    Ok(records)
}

/// The `csv` crate's reader as m1 uses it: every row as it is (headers are m1's business),
/// rows of any length (checked against the columns by m1, to say where they differ).
fn csv_reader(
    scanner: QuoteScanner<Box<dyn Read + Send>>,
    delimiter: u8,
) -> ::csv::Reader<QuoteScanner<Box<dyn Read + Send>>> {
    ::csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(delimiter)
        .buffer_capacity(BUF_SIZE)
        .from_reader(scanner)
}

/// Decodes a field; input that bypassed charset decoding may hold invalid UTF-8, which is
/// replaced by U+FFFD like everywhere else.
fn utf8(field: &[u8]) -> String {
    match std::str::from_utf8(field) {
        Ok(s) => s.to_string(),
        Err(_) => String::from_utf8_lossy(field).into_owned(),
    }
}

/// The data rows of a csv/txt stream.
pub struct DelimitedRecords {
    reader: ::csv::Reader<QuoteScanner<Box<dyn Read + Send>>>,
    names: Vec<String>,
    row: ::csv::ByteRecord,
    source: String,
    done: bool,
}

impl DelimitedRecords {
    /// The 1-based line where the record just read starts, as the quote scanner saw it (the
    /// `csv` crate's record positions lag behind blank lines and line breaks).
    fn start_line(&mut self) -> u64 {
        let scanner = self.reader.get_mut();
        scanner.starts.pop_front().unwrap_or(scanner.line)
    }

    /// The fatal error for a quoted field left open at the end of the input, if that happened.
    fn unterminated_at_end(&mut self) -> Option<RecordError> {
        let scanner = self.reader.get_ref();
        if scanner.eof && scanner.state == Scan::Quoted {
            self.done = true;
            let (line, field) = scanner.opened;
            let msg = "unterminated quoted field: the quote opened here is not closed before the end of the input";
            return Some(RecordError::new(&self.source, line, Some(field), msg, true));
        }
        None
    }

    fn error(&mut self, e: &::csv::Error) -> RecordError {
        self.done = true;
        let line = e.position().map_or_else(|| self.reader.position().line(), |p| p.line());
        let message = match e.kind() {
            ::csv::ErrorKind::Io(io) => io.to_string(),
            _ => e.to_string(),
        };
        RecordError::new(&self.source, line, None, message, true)
    }
}

impl DelimitedRecords {
    /// The column names.
    pub(crate) fn names(&self) -> &[String] {
        &self.names
    }

    /// The fields of the row [`DelimitedRecords::next_row`] just read.
    pub(crate) fn fields(&self) -> &::csv::ByteRecord {
        &self.row
    }

    /// Reads the next row into [`DelimitedRecords::fields`], returning its line; a row with
    /// the wrong number of fields is a (non-fatal) error.
    pub(crate) fn next_row(&mut self) -> Option<Result<u64, RecordError>> {
        if self.done {
            return None;
        }
        match self.reader.read_byte_record(&mut self.row) {
            Ok(true) => {
                if let Some(e) = self.unterminated_at_end() {
                    return Some(Err(e));
                }
                let line = self.start_line();
                if self.row.len() > self.names.len() {
                    let msg = format!(
                        "{} fields, but there are {} columns: field {} has no column name",
                        self.row.len(),
                        self.names.len(),
                        self.names.len() + 1
                    );
                    return Some(Err(RecordError::new(
                        &self.source,
                        line,
                        Some(self.names.len() as u64 + 1),
                        msg,
                        false,
                    )));
                }
                if self.row.len() < self.names.len() {
                    let msg = format!(
                        "{} fields, but there are {} columns: column '{}' has no field",
                        self.row.len(),
                        self.names.len(),
                        self.names[self.row.len()]
                    );
                    let column = Some(self.row.len() as u64 + 1);
                    return Some(Err(RecordError::new(&self.source, line, column, msg, false)));
                }
                Some(Ok(line))
            }
            Ok(false) => {
                self.done = true;
                self.unterminated_at_end().map(Err)
            }
            Err(e) => Some(Err(self.error(&e))),
        }
    }
}

impl Iterator for DelimitedRecords {
    type Item = Result<SourceRecord, RecordError>;

    fn next(&mut self) -> Option<Self::Item> {
        let line = match self.next_row()? {
            Ok(line) => line,
            Err(e) => return Some(Err(e)),
        };
        let mut record = Record::with_capacity(self.row.len());
        for (name, field) in self.names.iter().zip(self.row.iter()) {
            record.insert(name.clone(), Value::String(utf8(field)));
        }
        Some(Ok(SourceRecord { line, record }))
    }
}

/// The data rows of one chunk of a delimited text, cut at a record boundary by a
/// [`RecordCutter`]: lines count from `first_line`, and `names` are the file's columns (its
/// header was read before the first chunk). Parsed exactly as [`open`] parses a whole file.
pub(crate) fn chunk_rows(
    text: Vec<u8>,
    first_line: u64,
    delimiter: u8,
    names: &[String],
    source: &str,
) -> DelimitedRecords {
    let mut scanner = QuoteScanner::new(Box::new(io::Cursor::new(text)) as Box<dyn Read + Send>, delimiter);
    scanner.line = first_line;
    scanner.first = false;
    let reader = csv_reader(scanner, delimiter);
    DelimitedRecords {
        reader,
        names: names.to_vec(),
        row: ::csv::ByteRecord::new(),
        source: source.to_string(),
        done: false,
    }
}

/// Finds where records end in a delimited text read piece by piece, following the quoting as
/// the `csv` crate does (a line break inside a quoted field ends nothing), so that the text can
/// be cut into chunks of whole records that workers parse in parallel.
pub(crate) struct RecordCutter(QuoteScanner<()>);

impl RecordCutter {
    /// A cutter between records, at the 1-based `line` of a text.
    pub(crate) fn at_line(delimiter: u8, line: u64) -> RecordCutter {
        let mut scanner = QuoteScanner::new((), delimiter);
        scanner.line = line;
        RecordCutter(scanner)
    }

    /// Scans the next piece of the text. Returns the offset in `piece` just past the last place
    /// between records, with the 1-based line that starts there, if the piece has one.
    pub(crate) fn scan(&mut self, piece: &[u8]) -> Option<(usize, u64)> {
        self.0.cut = None;
        self.0.scan(piece);
        self.0.starts.clear();
        self.0.cut
    }

    /// The offset just past the end of the first record of `text` (the header) with the line
    /// that follows, if the record ends in `text`.
    pub(crate) fn first_record_end(text: &[u8], delimiter: u8) -> Option<(usize, u64)> {
        let mut scanner = QuoteScanner::new((), delimiter);
        scanner.stop_after_first = true;
        scanner.scan(text);
        scanner.first_end
    }
}

/// Where the quote scanner is, mirroring the `csv` crate's parser.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scan {
    /// Between records: line breaks are skipped.
    Record,
    /// At the start of a field.
    Start,
    /// In an unquoted field.
    Field,
    /// In a quoted field.
    Quoted,
    /// Just after a quote inside a quoted field: closes it, or escapes a second quote.
    AfterQuote,
}

/// Passes the stream through while following the quoting the way the `csv` crate does, to know
/// the line where each record starts and to report a quoted field still open at the end of the
/// input (the `csv` crate silently ends the field there).
struct QuoteScanner<R> {
    inner: R,
    delimiter: u8,
    state: Scan,
    /// 1-based line of the next byte.
    line: u64,
    /// 1-based field number of the field being read.
    field: u64,
    /// Line and field of the last opening quote.
    opened: (u64, u64),
    /// Start lines of the records seen but not yet returned by the `csv` reader.
    starts: VecDeque<u64>,
    /// Nothing has been read yet.
    first: bool,
    eof: bool,
    /// Offset in the buffer being scanned just past the last byte that left the scanner
    /// between records, with the line there (for [`RecordCutter`]).
    cut: Option<(usize, u64)>,
    /// Where the first record ended, and whether to stop scanning there.
    first_end: Option<(usize, u64)>,
    stop_after_first: bool,
}

impl<R> QuoteScanner<R> {
    fn new(inner: R, delimiter: u8) -> Self {
        Self {
            inner,
            delimiter,
            state: Scan::Record,
            line: 1,
            field: 1,
            opened: (1, 1),
            starts: VecDeque::new(),
            first: true,
            eof: false,
            cut: None,
            first_end: None,
            stop_after_first: false,
        }
    }

    fn end_field(&mut self, b: u8) {
        if b == self.delimiter {
            self.state = Scan::Start;
            self.field += 1;
        } else {
            self.state = Scan::Record;
            self.line += u64::from(b == b'\n');
        }
    }

    /// After a field ended at offset `i`: if it ended its record, notes the cut there. Returns
    /// whether to stop scanning (the first record was all that was asked for).
    fn ended_record(&mut self, i: usize) -> bool {
        if self.state != Scan::Record {
            return false;
        }
        self.cut = Some((i, self.line));
        if self.first_end.is_none() {
            self.first_end = Some((i, self.line));
        }
        self.stop_after_first
    }

    fn scan(&mut self, buf: &[u8]) {
        let d = self.delimiter;
        let mut i = 0;
        while i < buf.len() {
            match self.state {
                Scan::Record => {
                    let b = buf[i];
                    if b == b'\n' {
                        self.line += 1;
                    } else if b != b'\r' {
                        self.starts.push_back(self.line);
                        self.field = 1;
                        self.state = Scan::Start;
                        continue;
                    }
                    i += 1;
                    self.cut = Some((i, self.line));
                }
                Scan::Start => {
                    let b = buf[i];
                    i += 1;
                    if b == b'"' {
                        self.state = Scan::Quoted;
                        self.opened = (self.line, self.field);
                    } else if b == d || b == b'\n' || b == b'\r' {
                        self.end_field(b);
                        if self.ended_record(i) {
                            return;
                        }
                    } else {
                        self.state = Scan::Field;
                    }
                }
                Scan::Field => match memchr::memchr3(d, b'\n', b'\r', &buf[i..]) {
                    None => i = buf.len(),
                    Some(k) => {
                        let b = buf[i + k];
                        i += k + 1;
                        self.end_field(b);
                        if self.ended_record(i) {
                            return;
                        }
                    }
                },
                Scan::Quoted => match memchr::memchr2(b'"', b'\n', &buf[i..]) {
                    None => i = buf.len(),
                    Some(k) => {
                        let b = buf[i + k];
                        i += k + 1;
                        if b == b'"' {
                            self.state = Scan::AfterQuote;
                        } else {
                            self.line += 1;
                        }
                    }
                },
                Scan::AfterQuote => {
                    let b = buf[i];
                    i += 1;
                    if b == b'"' {
                        self.state = Scan::Quoted;
                    } else if b == d || b == b'\n' || b == b'\r' {
                        self.end_field(b);
                        if self.ended_record(i) {
                            return;
                        }
                    } else {
                        self.state = Scan::Field;
                    }
                }
            }
        }
    }
}

impl<R: Read> Read for QuoteScanner<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() {
            self.eof = true;
        }
        // The `csv` crate skips a UTF-8 BOM at the very start (when the charset layer has not).
        let skip = if self.first && buf[..n].starts_with(b"\xEF\xBB\xBF") { 3 } else { 0 };
        self.first &= n == 0;
        self.scan(&buf[skip..n]);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::{FormatOptions, open_records};
    use super::*;

    /// Reads `text` and renders each item: `L<line> {json}` or `E <error>`.
    fn read_with(text: &[u8], options: &FormatOptions) -> Vec<String> {
        let records = open_records(Box::new(std::io::Cursor::new(text.to_vec())), options, "data.csv").unwrap();
        records
            .map(|r| match r {
                Ok(r) => format!("L{} {}", r.line, Value::Object(r.record)),
                Err(e) => format!("E {e}{}", if e.fatal { " (fatal)" } else { "" }),
            })
            .collect()
    }

    fn read(text: &str) -> Vec<String> {
        read_with(text.as_bytes(), &FormatOptions::new(InputFormat::Csv))
    }

    fn open_err(text: &str, options: &FormatOptions) -> String {
        match open_records(Box::new(std::io::Cursor::new(text.as_bytes().to_vec())), options, "data.csv") {
            Ok(_) => panic!("expected an error"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn rfc4180_quoting() {
        let text = "id,text,n\r\n1,\"a, b\",x\r\n2,\"say \"\"hi\"\"\",y\r\n3,\"two\r\nlines\",z\r\n4,,\r\n";
        assert_eq!(
            read(text),
            [
                r#"L2 {"id":"1","text":"a, b","n":"x"}"#,
                r#"L3 {"id":"2","text":"say \"hi\"","n":"y"}"#,
                r#"L4 {"id":"3","text":"two\r\nlines","n":"z"}"#,
                r#"L6 {"id":"4","text":"","n":""}"#,
            ]
        );
    }

    #[test]
    fn line_endings_and_trailing_newline() {
        let want = [r#"L2 {"a":"1","b":"2"}"#, r#"L3 {"a":"3","b":"4"}"#];
        assert_eq!(read("a,b\n1,2\n3,4"), want);
        assert_eq!(read("a,b\n1,2\n3,4\n"), want);
        assert_eq!(read("a,b\r\n1,2\r\n3,4\r\n"), want);
        assert_eq!(read("a,b\r\n1,2\r\n3,4"), want);
        // Blank lines are skipped, line numbers still count them.
        assert_eq!(read("a,b\n\n1,2\n\n\n3,4\n"), [r#"L3 {"a":"1","b":"2"}"#, r#"L6 {"a":"3","b":"4"}"#]);
        assert_eq!(read(""), Vec::<String>::new());
        assert_eq!(read("a,b\n"), Vec::<String>::new());
    }

    #[test]
    fn headers_are_trimmed_and_checked() {
        assert_eq!(read(" a , b\n 1 , 2 \n"), [r#"L2 {"a":" 1 ","b":" 2 "}"#]);
        let e = open_err("a,,c\n1,2,3\n", &FormatOptions::new(InputFormat::Csv));
        assert_eq!(e, "data.csv:1:2: header: empty column name in column 2");
        let e = open_err("\n\na,b,a\n", &FormatOptions::new(InputFormat::Csv));
        assert_eq!(e, "data.csv:3:3: header: duplicate column name \"a\" in columns 1 and 3");
    }

    #[test]
    fn ragged_rows() {
        let got = read("a,b,c\n1,2\n1,2,3,4\n5,6,7\n");
        assert_eq!(
            got,
            [
                "E data.csv:2:3: 2 fields, but there are 3 columns: column 'c' has no field",
                "E data.csv:3:4: 4 fields, but there are 3 columns: field 4 has no column name",
                r#"L4 {"a":"5","b":"6","c":"7"}"#,
            ]
        );
    }

    #[test]
    fn unterminated_quote_is_fatal_at_its_opening() {
        let got = read("a,b\n1,2\n3,\"open\n4,5\n");
        assert_eq!(
            got,
            [
                r#"L2 {"a":"1","b":"2"}"#,
                "E data.csv:3:2: unterminated quoted field: the quote opened here is not closed before the end of \
                 the input (fatal)",
            ]
        );
        let got = read("a,b\n1,\"x\"\"\n");
        assert_eq!(got.len(), 1);
        assert!(got[0].starts_with("E data.csv:2:2: unterminated"), "{got:?}");
        // Without the charset layer, a BOM before a quoted first field.
        assert_eq!(
            read_with(b"\xEF\xBB\xBF\"a\nb\",c\n1,2\n3,4\n", &FormatOptions::new(InputFormat::Csv)),
            [r#"L3 {"a\nb":"1","c":"2"}"#, r#"L4 {"a\nb":"3","c":"4"}"#]
        );
        // A quote in the middle of an unquoted field is just a character.
        assert_eq!(read("a,b\n5\" screen,x\n"), [r#"L2 {"a":"5\" screen","b":"x"}"#]);
        let e = open_err("\"a,b\n1,2\n", &FormatOptions::new(InputFormat::Csv));
        assert!(e.starts_with("data.csv:1:1: unterminated quoted field"), "{e}");
    }

    #[test]
    fn txt_is_tab_delimited_and_delimiter_overrides() {
        let options = FormatOptions::new(InputFormat::Txt);
        assert_eq!(read_with(b"a\tb\n1,5\t\"x\ty\"\n", &options), [r#"L2 {"a":"1,5","b":"x\ty"}"#]);
        let options = FormatOptions { delimiter: Some(b';'), ..FormatOptions::new(InputFormat::Csv) };
        assert_eq!(read_with(b"a;b\n1,5;2\n", &options), [r#"L2 {"a":"1,5","b":"2"}"#]);
        let options = FormatOptions { delimiter: Some(b'"'), ..FormatOptions::new(InputFormat::Csv) };
        assert!(open_err("a", &options).contains("delimiter"));
    }

    #[test]
    fn columns_without_headers() {
        let options = FormatOptions { headers: false, ..FormatOptions::new(InputFormat::Csv) };
        assert_eq!(
            open_err("1,2\n", &options),
            "headers=false needs column names: add a `columns` rule naming the columns"
        );
        let options = FormatOptions { columns: Some(vec!["x".into(), "y".into()]), ..options };
        assert_eq!(
            read_with(b"1,2\n3\n", &options),
            [r#"L1 {"x":"1","y":"2"}"#, "E data.csv:2:2: 1 fields, but there are 2 columns: column 'y' has no field"]
        );
        // With headers, the columns replace the header row's names.
        let options = FormatOptions { headers: true, ..options };
        assert_eq!(read_with(b"a,b\n1,2\n", &options), [r#"L2 {"x":"1","y":"2"}"#]);
        let options = FormatOptions { columns: Some(vec!["x".into(), "x".into()]), ..options };
        assert!(open_err("1,2\n", &options).contains("duplicate column name \"x\""));
    }

    #[test]
    fn rows_caps_records() {
        let options = FormatOptions { rows: Some(2), ..FormatOptions::new(InputFormat::Csv) };
        assert_eq!(read_with(b"a\n1\n2\n3\n", &options), [r#"L2 {"a":"1"}"#, r#"L3 {"a":"2"}"#]);
        let options = FormatOptions { rows: Some(0), ..options };
        assert!(read_with(b"a\n1\n", &options).is_empty());
    }

    #[test]
    fn values_stay_strings_and_dotted_headers_stay() {
        let records: Vec<_> = open_records(
            Box::new(std::io::Cursor::new(b"user.id,n,flag\n7,1.5,true\n".to_vec())),
            &FormatOptions::new(InputFormat::Csv),
            "x",
        )
        .unwrap()
        .collect();
        let rec = records[0].as_ref().unwrap();
        assert_eq!(Value::Object(rec.record.clone()), json!({"user.id": "7", "n": "1.5", "flag": "true"}));
    }
}
