//! The m1 query language (SPEC §6): Lucene/Solr standard syntax parsed into a small [`Query`] tree.
//!
//! ```text
//! *   *:*                       every record
//! name:Oslo   Oslo              a term in one property, or in any property (no field)
//! title:"two words"             a phrase
//! a AND b   a && b   +a +b      both            a OR b   a || b   a b     either
//! NOT a   !a   -a               not a           (a OR b) AND c            grouping
//! city:(Oslo OR Bergen)         a field group: the field applies to every term inside
//! n:[1 TO 5]  n:{1 TO 5}  n:[1 TO 5}  t:[2021-01-01T00:00:00Z TO *]      ranges, `*` = open end
//! name:na*e   name:?at          wildcards: `*` any run of characters, `?` one character
//! name:*                        the property has a value
//! a\:b   \*   "say \"hi\""      backslash escapes the next character
//! session.geo.city:Oslo         dotted property names of any depth
//! ```
//!
//! # Semantics
//!
//! Clauses follow Lucene's `BooleanQuery`: each clause is required (`+`, or an operand of `AND`),
//! optional (no prefix, or an operand of `OR`; OR is the default operator) or prohibited (`-`,
//! `NOT`, `!`). A clause list matches when every required clause matches, no prohibited clause
//! matches, and — only when there are no required clauses — at least one optional clause
//! matches. A list of only prohibited clauses (`NOT a`, `-a -b`) matches every record except
//! those (Solr's rule for pure negative queries; a tantivy translation must add an all-docs
//! clause). Precedence is NOT > AND > OR: `a OR b AND c` is `a OR (b AND c)`, and an AND chain
//! becomes one optional clause of the surrounding list. As in Lucene, a `NOT` operand of an OR
//! list is a prohibited clause of that list: `a OR NOT b` is `a -b` (a and not b).
//!
//! Lexical choices:
//! - `AND`, `OR`, `NOT` and `TO` are operators only in upper case; `and` is a term.
//! - A term ends at whitespace or one of `( ) [ ] { } " ^ ~ :`. Right after `prop:` a value may
//!   start with `+ - !` and contain `:` (`n:-5`, `t:2021-01-01T10:00:00Z`, `url:http://x`).
//! - Range bounds run to whitespace, `]` or `}`, so they may contain `:` unescaped; a quoted
//!   bound is literal (`"*"` is the string `*`, not an open end).
//! - `*:value` is `value` in any property; `prop:*` (or `prop:**`) is existence.
//! - Boosts (`^`), fuzzy/proximity (`~`) and regular expressions are not supported; `^` and `~`
//!   are errors, `/` is an ordinary character.
//! - Nesting (parentheses and `NOT`) is limited to [`MAX_DEPTH`] levels, and so is the depth of
//!   the resulting tree; deeper input is an error, never a stack overflow.
//!
//! [`Query`]'s `Display` prints canonical syntax that parses back to the same tree.

use std::fmt::{self, Write as _};
use std::ops::Bound;
use std::str::FromStr;

/// Deepest nesting accepted, both in the input and in the resulting tree.
pub const MAX_DEPTH: usize = 64;

/// A parsed query. Field groups (`p:(a OR b)`) are distributed into their terms, so the tree
/// has no node for them; `field: None` means "any property".
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Query {
    /// Every record (`*`, `*:*`).
    All,
    /// One term, unescaped: exact for `string`, one analyzed word (or a run of words, if it
    /// analyzes to several) for `text`, a number, date or boolean for typed properties.
    Term { field: Option<String>, text: String },
    /// A quoted phrase, unescaped.
    Phrase { field: Option<String>, text: String },
    /// A term with wildcards. In `pattern`, an unescaped `*` matches any run of characters, `?`
    /// exactly one, and `\` escapes the next character (the parser only writes `\*`, `\?`, `\\`);
    /// see [`wildcard_parts`].
    Wildcard { field: Option<String>, pattern: String },
    /// A range; `Unbounded` is a `*` end. Bounds are unescaped and interpreted per property type.
    Range { field: Option<String>, lower: Bound<String>, upper: Bound<String> },
    /// The property has a (non-null) value: `prop:*`.
    Exists { field: String },
    /// Lucene's `BooleanQuery` (see the module docs for when it matches).
    Bool { must: Vec<Query>, should: Vec<Query>, must_not: Vec<Query> },
}

/// A syntax error: where (a byte offset into the query) and what.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} at {position}")]
pub struct SyntaxError {
    /// Byte offset in the query text.
    pub position: usize,
    /// What is wrong, e.g. `unbalanced parenthesis`.
    pub message: String,
}

/// One element of a wildcard pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WildcardPart {
    /// A literal character.
    Char(char),
    /// `?`: exactly one character.
    AnyChar,
    /// `*`: any run of characters, possibly empty.
    AnyString,
}

/// Splits a [`Query::Wildcard`] pattern into literal characters and wildcards.
pub fn wildcard_parts(pattern: &str) -> Vec<WildcardPart> {
    let mut out = Vec::with_capacity(pattern.len());
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        out.push(match c {
            '\\' => WildcardPart::Char(chars.next().unwrap_or('\\')),
            '*' => WildcardPart::AnyString,
            '?' => WildcardPart::AnyChar,
            c => WildcardPart::Char(c),
        });
    }
    out
}

/// Parses a query. Any input gives a [`Query`] or a [`SyntaxError`]; empty input is an error.
pub fn parse(input: &str) -> Result<Query, SyntaxError> {
    let mut p = Parser { src: input, pos: 0, depth: 0 };
    p.skip_ws();
    if p.peek().is_none() {
        return p.error(0, "empty query");
    }
    p.parse_list(None, None)
}

impl FromStr for Query {
    type Err = SyntaxError;

    fn from_str(s: &str) -> Result<Query, SyntaxError> {
        parse(s)
    }
}

impl Query {
    /// Every property name the query mentions, once each, in order of first mention (unfielded
    /// terms mention none), so callers can reject unknown properties.
    pub fn properties(&self) -> Vec<&str> {
        fn walk<'a>(q: &'a Query, out: &mut Vec<&'a str>) {
            let name = match q {
                Query::All => None,
                Query::Term { field, .. }
                | Query::Phrase { field, .. }
                | Query::Wildcard { field, .. }
                | Query::Range { field, .. } => field.as_deref(),
                Query::Exists { field } => Some(field.as_str()),
                Query::Bool { must, should, must_not } => {
                    for c in must.iter().chain(should).chain(must_not) {
                        walk(c, out);
                    }
                    None
                }
            };
            if let Some(n) = name
                && !out.contains(&n)
            {
                out.push(n);
            }
        }
        let mut out = Vec::new();
        walk(self, &mut out);
        out
    }

    /// Levels of `Bool` nesting (0 for a leaf).
    fn bool_depth(&self) -> usize {
        match self {
            Query::Bool { must, should, must_not } => {
                1 + must.iter().chain(should).chain(must_not).map(Query::bool_depth).max().unwrap_or(0)
            }
            _ => 0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Occur {
    Must,
    Should,
    MustNot,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    And,
    Or,
    Not,
}

/// A scanned word: characters with whether each was escaped, and where it was.
struct Word {
    chars: Vec<(char, bool)>,
    start: usize,
}

impl Word {
    fn text(&self) -> String {
        self.chars.iter().map(|&(c, _)| c).collect()
    }

    fn is(&self, s: &str) -> bool {
        self.chars.iter().all(|&(_, escaped)| !escaped) && self.chars.iter().map(|&(c, _)| c).eq(s.chars())
    }

    fn has_wildcard(&self) -> bool {
        self.chars.iter().any(|&(c, escaped)| !escaped && (c == '*' || c == '?'))
    }

    fn all_stars(&self) -> bool {
        self.chars.iter().all(|&(c, escaped)| !escaped && c == '*')
    }

    /// The canonical wildcard pattern: escapes kept only where they matter.
    fn pattern(&self) -> String {
        let mut out = String::with_capacity(self.chars.len());
        for &(c, escaped) in &self.chars {
            if escaped && matches!(c, '*' | '?' | '\\') {
                out.push('\\');
            }
            out.push(c);
        }
        out
    }
}

/// Whether `c` ends a term (`value`: right after `prop:`, where `:` is allowed).
fn is_stop(c: char, value: bool) -> bool {
    c.is_whitespace() || matches!(c, '(' | ')' | '[' | ']' | '{' | '}' | '"' | '^' | '~') || (!value && c == ':')
}

fn is_goop_stop(c: char) -> bool {
    c.is_whitespace() || c == ']' || c == '}'
}

fn unsupported(c: char) -> &'static str {
    if c == '^' { "boosts ('^') are not supported" } else { "fuzzy and proximity searches ('~') are not supported" }
}

struct Parser<'a> {
    src: &'a str,
    pos: usize,
    depth: usize,
}

type Parsed<T> = Result<T, SyntaxError>;

impl<'a> Parser<'a> {
    fn rest(&self) -> &'a str {
        &self.src[self.pos..]
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn skip_ws(&mut self) {
        let rest = self.rest();
        self.pos += rest.len() - rest.trim_start().len();
    }

    fn error<T>(&self, position: usize, message: impl Into<String>) -> Parsed<T> {
        Err(SyntaxError { position, message: message.into() })
    }

    fn enter(&mut self, at: usize) -> Parsed<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return self.error(at, format!("query nested too deeply (more than {MAX_DEPTH} levels)"));
        }
        Ok(())
    }

    /// The operator at the current position, with its spelling.
    fn peek_op(&self) -> Option<(Op, &'static str)> {
        let rest = self.rest();
        for (op, token) in [(Op::And, "&&"), (Op::Or, "||"), (Op::Not, "!")] {
            if rest.starts_with(token) {
                return Some((op, token));
            }
        }
        for (op, word) in [(Op::And, "AND"), (Op::Or, "OR"), (Op::Not, "NOT")] {
            if let Some(after) = rest.strip_prefix(word) {
                match after.chars().next() {
                    None => return Some((op, word)),
                    Some(c) if c != ':' && is_stop(c, false) => return Some((op, word)),
                    _ => {}
                }
            }
        }
        None
    }

    /// Whether no clause can start here: the end, `)`, or a binary operator.
    fn at_clause_end(&self) -> bool {
        matches!(self.peek(), None | Some(')')) || matches!(self.peek_op(), Some((Op::And | Op::Or, _)))
    }

    fn scan(&mut self, stop: impl Fn(char) -> bool) -> Parsed<Word> {
        let start = self.pos;
        let rest = self.rest();
        let mut chars = Vec::new();
        let mut end = rest.len();
        let mut it = rest.char_indices();
        while let Some((i, c)) = it.next() {
            if c == '\\' {
                match it.next() {
                    Some((_, n)) => chars.push((n, true)),
                    None => return self.error(start + i, "dangling escape '\\' at the end of the query"),
                }
            } else if stop(c) {
                end = i;
                break;
            } else {
                chars.push((c, false));
            }
        }
        self.pos = start + end;
        Ok(Word { chars, start })
    }

    /// A clause list (the whole query, or the inside of parentheses opened at `open`).
    fn parse_list(&mut self, default: Option<&str>, open: Option<usize>) -> Parsed<Query> {
        let start = self.pos;
        let mut clauses = Vec::new();
        loop {
            self.skip_ws();
            match self.peek() {
                None => match open {
                    Some(o) => return self.error(o, "unbalanced parenthesis"),
                    None => break,
                },
                Some(')') => {
                    if open.is_none() {
                        return self.error(self.pos, "unbalanced parenthesis");
                    }
                    break;
                }
                _ => {}
            }
            match self.peek_op() {
                Some((Op::And, token)) => return self.error(self.pos, format!("expected a query before '{token}'")),
                Some((Op::Or, token)) => {
                    if clauses.is_empty() {
                        return self.error(self.pos, format!("expected a query before '{token}'"));
                    }
                    self.pos += token.len();
                    self.skip_ws();
                    if self.at_clause_end() {
                        return self.error(self.pos, format!("expected a query after '{token}'"));
                    }
                }
                _ => {}
            }
            clauses.push(self.parse_chain(default)?);
        }
        if clauses.is_empty() {
            return self.error(start, "empty query");
        }
        if clauses.len() == 1 && clauses[0].0 != Occur::MustNot {
            return Ok(clauses.remove(0).1);
        }
        let (mut must, mut should, mut must_not) = (Vec::new(), Vec::new(), Vec::new());
        for (occur, q) in clauses {
            match occur {
                Occur::Must => must.push(q),
                Occur::Should => should.push(q),
                Occur::MustNot => must_not.push(q),
            }
        }
        self.make_bool(must, should, must_not, open.unwrap_or(start))
    }

    /// `unary (AND unary)*`: one clause of the surrounding list.
    fn parse_chain(&mut self, default: Option<&str>) -> Parsed<(Occur, Query)> {
        let start = self.pos;
        let mut items = vec![self.parse_unary(default)?];
        loop {
            self.skip_ws();
            let Some((Op::And, token)) = self.peek_op() else { break };
            self.pos += token.len();
            self.skip_ws();
            if self.at_clause_end() {
                return self.error(self.pos, format!("expected a query after '{token}'"));
            }
            items.push(self.parse_unary(default)?);
        }
        if items.len() == 1 {
            return Ok(items.remove(0));
        }
        let (mut must, mut must_not) = (Vec::new(), Vec::new());
        for (occur, q) in items {
            match occur {
                Occur::MustNot => must_not.push(q),
                _ => must.push(q),
            }
        }
        Ok((Occur::Should, self.make_bool(must, Vec::new(), must_not, start)?))
    }

    /// `NOT unary | + primary | - primary | primary`.
    fn parse_unary(&mut self, default: Option<&str>) -> Parsed<(Occur, Query)> {
        self.skip_ws();
        let at = self.pos;
        if let Some((Op::Not, token)) = self.peek_op() {
            self.enter(at)?;
            self.pos += token.len();
            self.skip_ws();
            if self.at_clause_end() {
                return self.error(self.pos, format!("expected a query after '{token}'"));
            }
            let (occur, q) = self.parse_unary(default)?;
            self.depth -= 1;
            let q = if occur == Occur::MustNot { self.make_bool(Vec::new(), Vec::new(), vec![q], at)? } else { q };
            return Ok((Occur::MustNot, q));
        }
        let occur = match self.peek() {
            Some('+') => Occur::Must,
            Some('-') => Occur::MustNot,
            _ => return Ok((Occur::Should, self.parse_primary(default)?)),
        };
        let sign = if occur == Occur::Must { '+' } else { '-' };
        self.pos += 1;
        self.skip_ws();
        if self.at_clause_end() {
            return self.error(self.pos, format!("expected a query after '{sign}'"));
        }
        Ok((occur, self.parse_primary(default)?))
    }

    /// A group, phrase, range, or word (possibly `field:` and its value).
    fn parse_primary(&mut self, default: Option<&str>) -> Parsed<Query> {
        self.skip_ws();
        let at = self.pos;
        let Some(c) = self.peek() else { return self.error(at, "expected a query") };
        if let Some((_, token)) = self.peek_op() {
            return self.error(at, format!("expected a query, found '{token}'"));
        }
        match c {
            '(' => self.parse_group(default),
            '"' => Ok(Query::Phrase { field: default.map(str::to_owned), text: self.parse_quoted()? }),
            '[' | '{' => self.parse_range(default.map(str::to_owned)),
            ')' => self.error(at, "expected a query"),
            ']' | '}' | '+' | '-' => self.error(at, format!("unexpected '{c}'")),
            ':' => self.error(at, "expected a property name before ':'"),
            '^' | '~' => self.error(at, unsupported(c)),
            _ => {
                let word = self.scan(|c| is_stop(c, false))?;
                if self.peek() != Some(':') {
                    return Ok(build_word(default, &word));
                }
                let field = if word.all_stars() {
                    None
                } else if word.has_wildcard() {
                    return self.error(word.start, "wildcards are not allowed in property names");
                } else {
                    Some(word.text())
                };
                self.pos += 1;
                let label = &self.src[word.start..self.pos];
                self.parse_value(field, label)
            }
        }
    }

    /// What follows `field:`.
    fn parse_value(&mut self, field: Option<String>, label: &str) -> Parsed<Query> {
        self.skip_ws();
        let at = self.pos;
        match self.peek() {
            None | Some(')') => self.error(at, format!("expected a value after '{label}'")),
            Some('(') => self.parse_group(field.as_deref()),
            Some('"') => Ok(Query::Phrase { field, text: self.parse_quoted()? }),
            Some('[' | '{') => self.parse_range(field),
            Some(c @ (']' | '}')) => self.error(at, format!("unexpected '{c}'")),
            Some(c @ ('^' | '~')) => self.error(at, unsupported(c)),
            Some(_) => {
                let word = self.scan(|c| is_stop(c, true))?;
                Ok(build_word(field.as_deref(), &word))
            }
        }
    }

    fn parse_group(&mut self, default: Option<&str>) -> Parsed<Query> {
        let open = self.pos;
        self.enter(open)?;
        self.pos += 1;
        self.skip_ws();
        if self.peek() == Some(')') {
            return self.error(open, "empty parentheses");
        }
        let q = self.parse_list(default, Some(open))?;
        self.pos += 1; // the ')' parse_list stopped at
        self.depth -= 1;
        Ok(q)
    }

    /// A quoted string starting at the current `"`, unescaped.
    fn parse_quoted(&mut self) -> Parsed<String> {
        let open = self.pos;
        let body = &self.src[open + 1..];
        let mut out = String::new();
        let mut it = body.char_indices();
        while let Some((i, c)) = it.next() {
            match c {
                '"' => {
                    self.pos = open + 1 + i + 1;
                    return Ok(out);
                }
                '\\' => match it.next() {
                    Some((_, n)) => out.push(n),
                    None => break,
                },
                c => out.push(c),
            }
        }
        self.error(open, "unterminated phrase (missing closing '\"')")
    }

    fn parse_range(&mut self, field: Option<String>) -> Parsed<Query> {
        let open = self.pos;
        let lower_inclusive = self.peek() == Some('[');
        self.pos += 1;
        let lower = self.parse_bound(open)?;
        self.skip_ws();
        let at = self.pos;
        if self.peek().is_none() {
            return self.error(open, "unterminated range");
        }
        if !self.scan(is_goop_stop)?.is("TO") {
            return self.error(at, "range needs TO");
        }
        let upper = self.parse_bound(open)?;
        self.skip_ws();
        let upper_inclusive = match self.peek() {
            Some(']') => true,
            Some('}') => false,
            None => return self.error(open, "unterminated range"),
            Some(_) => return self.error(self.pos, "expected ']' or '}' to close the range"),
        };
        self.pos += 1;
        let bound = |b: Option<String>, inclusive: bool| match b {
            None => Bound::Unbounded,
            Some(s) if inclusive => Bound::Included(s),
            Some(s) => Bound::Excluded(s),
        };
        Ok(Query::Range { field, lower: bound(lower, lower_inclusive), upper: bound(upper, upper_inclusive) })
    }

    /// One range bound; `None` for an open end (`*`).
    fn parse_bound(&mut self, open: usize) -> Parsed<Option<String>> {
        self.skip_ws();
        match self.peek() {
            None => self.error(open, "unterminated range"),
            Some('"') => Ok(Some(self.parse_quoted()?)),
            Some(']' | '}') => self.error(self.pos, "expected a range bound"),
            Some(_) => {
                let word = self.scan(is_goop_stop)?;
                Ok(if word.is("*") { None } else { Some(word.text()) })
            }
        }
    }

    fn make_bool(&self, must: Vec<Query>, should: Vec<Query>, must_not: Vec<Query>, at: usize) -> Parsed<Query> {
        let q = Query::Bool { must, should, must_not };
        if q.bool_depth() > MAX_DEPTH {
            return self.error(at, format!("query nested too deeply (more than {MAX_DEPTH} levels)"));
        }
        Ok(q)
    }
}

/// A word without `field:` in front: all, existence, wildcard or term.
fn build_word(default: Option<&str>, word: &Word) -> Query {
    let field = default.map(str::to_owned);
    if word.all_stars() {
        return match field {
            None => Query::All,
            Some(field) => Query::Exists { field },
        };
    }
    if word.has_wildcard() {
        Query::Wildcard { field, pattern: word.pattern() }
    } else {
        Query::Term { field, text: word.text() }
    }
}

impl fmt::Display for Query {
    /// Canonical syntax: `+`/`-` prefixes instead of AND/NOT, nested lists in parentheses,
    /// every special character escaped. It parses back to the same tree.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_query(f, self, true)
    }
}

fn write_query(f: &mut fmt::Formatter<'_>, q: &Query, top: bool) -> fmt::Result {
    match q {
        Query::All => f.write_str("*:*"),
        Query::Term { field, text } => {
            write_field(f, field.as_deref())?;
            write_word(f, text)
        }
        Query::Phrase { field, text } => {
            write_field(f, field.as_deref())?;
            write_quoted(f, text)
        }
        Query::Wildcard { field, pattern } => {
            write_field(f, field.as_deref())?;
            write_pattern(f, pattern)
        }
        Query::Range { field, lower, upper } => {
            write_field(f, field.as_deref())?;
            f.write_char(if matches!(lower, Bound::Excluded(_)) { '{' } else { '[' })?;
            write_bound(f, lower)?;
            f.write_str(" TO ")?;
            write_bound(f, upper)?;
            f.write_char(if matches!(upper, Bound::Excluded(_)) { '}' } else { ']' })
        }
        Query::Exists { field } => {
            write_word(f, field)?;
            f.write_str(":*")
        }
        Query::Bool { must, should, must_not } => {
            if must.is_empty() && should.is_empty() && must_not.is_empty() {
                return f.write_str("*:*");
            }
            if !top {
                f.write_char('(')?;
            }
            let mut first = true;
            for (prefix, list) in [("+", must), ("", should), ("-", must_not)] {
                for clause in list {
                    if !first {
                        f.write_char(' ')?;
                    }
                    first = false;
                    f.write_str(prefix)?;
                    write_query(f, clause, false)?;
                }
            }
            if !top {
                f.write_char(')')?;
            }
            Ok(())
        }
    }
}

fn write_field(f: &mut fmt::Formatter<'_>, field: Option<&str>) -> fmt::Result {
    if let Some(name) = field {
        write_word(f, name)?;
        f.write_char(':')?;
    }
    Ok(())
}

/// Whether `c` must be escaped in a word (`first`: at its start, where operators live).
fn needs_escape(c: char, first: bool) -> bool {
    is_stop(c, false) || c == '\\' || (first && matches!(c, '+' | '-' | '!' | '&' | '|'))
}

fn write_word(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    let keyword = matches!(s, "AND" | "OR" | "NOT");
    for (i, c) in s.chars().enumerate() {
        if needs_escape(c, i == 0) || c == '*' || c == '?' || (keyword && i == 0) {
            f.write_char('\\')?;
        }
        f.write_char(c)?;
    }
    Ok(())
}

fn write_pattern(f: &mut fmt::Formatter<'_>, pattern: &str) -> fmt::Result {
    let mut chars = pattern.chars();
    let mut first = true;
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                f.write_char('\\')?;
                f.write_char(chars.next().unwrap_or('\\'))?;
            }
            '*' | '?' => f.write_char(c)?,
            c => {
                if needs_escape(c, first) {
                    f.write_char('\\')?;
                }
                f.write_char(c)?;
            }
        }
        first = false;
    }
    Ok(())
}

fn write_quoted(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    f.write_char('"')?;
    for c in s.chars() {
        if c == '"' || c == '\\' {
            f.write_char('\\')?;
        }
        f.write_char(c)?;
    }
    f.write_char('"')
}

fn write_bound(f: &mut fmt::Formatter<'_>, bound: &Bound<String>) -> fmt::Result {
    match bound {
        Bound::Unbounded => f.write_char('*'),
        Bound::Included(s) | Bound::Excluded(s) => {
            let plain =
                !s.is_empty() && s != "*" && s != "TO" && s.chars().all(|c| !is_goop_stop(c) && c != '"' && c != '\\');
            if plain { f.write_str(s) } else { write_quoted(f, s) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn term(field: &str, text: &str) -> Query {
        Query::Term { field: Some(field.into()), text: text.into() }
    }

    fn bare(text: &str) -> Query {
        Query::Term { field: None, text: text.into() }
    }

    fn bool_q(must: Vec<Query>, should: Vec<Query>, must_not: Vec<Query>) -> Query {
        Query::Bool { must, should, must_not }
    }

    fn ok(s: &str) -> Query {
        let q = parse(s).unwrap_or_else(|e| panic!("{s:?}: {e}"));
        let shown = q.to_string();
        assert_eq!(parse(&shown).as_ref(), Ok(&q), "{s:?} displayed as {shown:?}");
        q
    }

    fn err(s: &str) -> (usize, String) {
        let e = parse(s).expect_err(s);
        (e.position, e.message)
    }

    fn incl(s: &str) -> Bound<String> {
        Bound::Included(s.into())
    }

    fn excl(s: &str) -> Bound<String> {
        Bound::Excluded(s.into())
    }

    #[test]
    fn match_all_and_existence() {
        assert_eq!(ok("*"), Query::All);
        assert_eq!(ok("*:*"), Query::All);
        assert_eq!(ok("  *:*  "), Query::All);
        assert_eq!(ok("name:*"), Query::Exists { field: "name".into() });
        assert_eq!(ok("name:**"), Query::Exists { field: "name".into() });
        assert_eq!(ok("name:(*)"), Query::Exists { field: "name".into() });
        assert_eq!(ok("*:x"), bare("x"));
    }

    #[test]
    fn terms_fields_and_dotted_names() {
        assert_eq!(ok("name:Oslo"), term("name", "Oslo"));
        assert_eq!(ok("Oslo"), bare("Oslo"));
        assert_eq!(ok("session.geo.city:Oslo"), term("session.geo.city", "Oslo"));
        assert_eq!(ok("a.b.c.d.e.f:1"), term("a.b.c.d.e.f", "1"));
        assert_eq!(ok("name: Oslo"), term("name", "Oslo"));
        assert_eq!(ok("n:-5"), term("n", "-5"));
        assert_eq!(ok("n:+5"), term("n", "+5"));
        assert_eq!(ok("t:2021-01-01T10:00:00Z"), term("t", "2021-01-01T10:00:00Z"));
        assert_eq!(ok("url:http://x/y"), term("url", "http://x/y"));
        assert_eq!(ok("a-b"), bare("a-b"));
        assert_eq!(ok("and"), bare("and"));
        assert_eq!(ok("ANDROID"), bare("ANDROID"));
        assert_eq!(ok("AND:x"), term("AND", "x"));
        assert_eq!(ok("Zürich"), bare("Zürich"));
        assert_eq!(ok("名前:東京"), term("名前", "東京"));
    }

    #[test]
    fn escapes() {
        assert_eq!(ok(r"a\:b"), bare("a:b"));
        assert_eq!(ok(r"a\:b:c"), term("a:b", "c"));
        assert_eq!(ok(r"\*"), bare("*"));
        assert_eq!(ok(r"p:\*"), term("p", "*"));
        assert_eq!(ok(r"p:a\ b"), term("p", "a b"));
        assert_eq!(ok(r"\-5"), bare("-5"));
        assert_eq!(ok(r"\AND"), bare("AND"));
        assert_eq!(ok(r"a\\b"), bare(r"a\b"));
        assert_eq!(ok(r#"p:"say \"hi\"""#), Query::Phrase { field: Some("p".into()), text: r#"say "hi""#.into() });
        assert_eq!(ok(r"\*:x"), term("*", "x"));
    }

    #[test]
    fn phrases() {
        assert_eq!(ok(r#"title:"two words""#), Query::Phrase { field: Some("title".into()), text: "two words".into() });
        assert_eq!(ok(r#""two words""#), Query::Phrase { field: None, text: "two words".into() });
        assert_eq!(ok(r#"p:"""#), Query::Phrase { field: Some("p".into()), text: String::new() });
        assert_eq!(ok(r#"p:"a:b (c) *""#), Query::Phrase { field: Some("p".into()), text: "a:b (c) *".into() });
    }

    #[test]
    fn wildcards() {
        let wild = |f: Option<&str>, p: &str| Query::Wildcard { field: f.map(Into::into), pattern: p.into() };
        assert_eq!(ok("name:na*e"), wild(Some("name"), "na*e"));
        assert_eq!(ok("?at"), wild(None, "?at"));
        assert_eq!(ok("*at"), wild(None, "*at"));
        assert_eq!(ok(r"a\*b*"), wild(None, r"a\*b*"));
        assert_eq!(ok(r"a\xb*"), wild(None, "axb*"));
        assert_eq!(ok("p:(na* OR b?)"), bool_q(vec![], vec![wild(Some("p"), "na*"), wild(Some("p"), "b?")], vec![]));
        assert_eq!(
            wildcard_parts(r"a\*?*"),
            vec![WildcardPart::Char('a'), WildcardPart::Char('*'), WildcardPart::AnyChar, WildcardPart::AnyString]
        );
        assert_eq!(err("na*e:x"), (0, "wildcards are not allowed in property names".into()));
    }

    #[test]
    fn ranges() {
        let range = |f: &str, lower, upper| Query::Range { field: Some(f.into()), lower, upper };
        assert_eq!(ok("n:[1 TO 5]"), range("n", incl("1"), incl("5")));
        assert_eq!(ok("n:{1 TO 5}"), range("n", excl("1"), excl("5")));
        assert_eq!(ok("n:[1 TO 5}"), range("n", incl("1"), excl("5")));
        assert_eq!(ok("n:{1 TO 5]"), range("n", excl("1"), incl("5")));
        assert_eq!(ok("n:[-5 TO -1]"), range("n", incl("-5"), incl("-1")));
        assert_eq!(ok("n:[* TO 5]"), range("n", Bound::Unbounded, incl("5")));
        assert_eq!(ok("n:{* TO *}"), range("n", Bound::Unbounded, Bound::Unbounded));
        assert_eq!(ok("t:[2021-01-01T00:00:00Z TO *]"), range("t", incl("2021-01-01T00:00:00Z"), Bound::Unbounded));
        assert_eq!(ok(r#"t:["2021-01-01 00:00:00" TO "*"]"#), range("t", incl("2021-01-01 00:00:00"), incl("*")));
        assert_eq!(ok("s:[a TO z]"), range("s", incl("a"), incl("z")));
        assert_eq!(ok("s:[  a   TO   z  ]"), range("s", incl("a"), incl("z")));
        assert_eq!(ok(r"s:[a\ b TO c\]]"), range("s", incl("a b"), incl("c]")));
        assert_eq!(ok("s:[TO TO TO]"), range("s", incl("TO"), incl("TO")));
        assert_eq!(ok("[1 TO 2]"), Query::Range { field: None, lower: incl("1"), upper: incl("2") });
        assert_eq!(
            ok("n:([1 TO 2] OR 7)"),
            bool_q(vec![], vec![range("n", incl("1"), incl("2")), term("n", "7")], vec![])
        );
    }

    #[test]
    fn boolean_operators_and_precedence() {
        let (a, b, c) = (bare("a"), bare("b"), bare("c"));
        assert_eq!(ok("a b"), bool_q(vec![], vec![a.clone(), b.clone()], vec![]));
        assert_eq!(ok("a OR b"), ok("a b"));
        assert_eq!(ok("a || b"), ok("a b"));
        assert_eq!(ok("a AND b"), bool_q(vec![a.clone(), b.clone()], vec![], vec![]));
        assert_eq!(ok("a && b"), ok("a AND b"));
        assert_eq!(ok("+a +b"), ok("a AND b"));
        assert_eq!(ok("+a"), a);
        assert_eq!(ok("-a"), bool_q(vec![], vec![], vec![a.clone()]));
        assert_eq!(ok("NOT a"), ok("-a"));
        assert_eq!(ok("!a"), ok("-a"));
        assert_eq!(ok("a -b"), bool_q(vec![], vec![a.clone()], vec![b.clone()]));
        assert_eq!(ok("a NOT b"), ok("a -b"));
        assert_eq!(ok("a OR NOT b"), ok("a -b"));
        assert_eq!(ok("a AND NOT b"), bool_q(vec![a.clone()], vec![], vec![b.clone()]));
        assert_eq!(ok("a AND -b"), ok("a AND NOT b"));
        assert_eq!(ok("NOT NOT a"), bool_q(vec![], vec![], vec![bool_q(vec![], vec![], vec![a.clone()])]));
        // NOT > AND > OR
        assert_eq!(
            ok("a OR b AND c"),
            bool_q(vec![], vec![a.clone(), bool_q(vec![b.clone(), c.clone()], vec![], vec![])], vec![])
        );
        assert_eq!(
            ok("a AND b OR c"),
            bool_q(vec![], vec![bool_q(vec![a.clone(), b.clone()], vec![], vec![]), c.clone()], vec![])
        );
        assert_eq!(ok("a AND b c"), ok("a AND b OR c"));
        assert_eq!(
            ok("(a OR b) AND c"),
            bool_q(vec![bool_q(vec![], vec![a.clone(), b.clone()], vec![]), c.clone()], vec![], vec![])
        );
        assert_eq!(ok("+a b -c"), bool_q(vec![a.clone()], vec![b.clone()], vec![c.clone()]));
        assert_eq!(ok("+ a"), a);
        assert_eq!(ok("((a))"), a);
        assert_eq!(ok("a AND(b)"), ok("a AND b"));
        assert_eq!(ok("x:1 AND y:2"), bool_q(vec![term("x", "1"), term("y", "2")], vec![], vec![]));
    }

    #[test]
    fn field_groups() {
        assert_eq!(
            ok("city:(Oslo OR Bergen)"),
            bool_q(vec![], vec![term("city", "Oslo"), term("city", "Bergen")], vec![])
        );
        assert_eq!(
            ok("city:(+Oslo -Bergen)"),
            bool_q(vec![term("city", "Oslo")], vec![], vec![term("city", "Bergen")])
        );
        assert_eq!(
            ok(r#"city:("New York" other:x)"#),
            bool_q(
                vec![],
                vec![Query::Phrase { field: Some("city".into()), text: "New York".into() }, term("other", "x")],
                vec![]
            )
        );
        assert_eq!(ok("a:(b:(c))"), term("b", "c"));
        assert_eq!(ok("a:(*:c)"), bare("c"));
    }

    #[test]
    fn properties_lists_every_field_once() {
        let q = ok(r#"a:1 AND (b:[1 TO 2] OR c:* OR "x" OR a:y*) -d:"z" free"#);
        assert_eq!(q.properties(), vec!["a", "b", "c", "d"]);
        assert!(ok("*").properties().is_empty());
    }

    #[test]
    fn display_is_canonical() {
        assert_eq!(parse("a AND b OR c").unwrap().to_string(), "(+a +b) c");
        assert_eq!(parse("n:[1 TO 5}").unwrap().to_string(), "n:[1 TO 5}");
        assert_eq!(parse("p:\"*\"").unwrap().to_string(), "p:\"*\"");
        assert_eq!(parse(r"p:a\ b").unwrap().to_string(), r"p:a\ b");
        assert_eq!(parse(r"n:-5").unwrap().to_string(), r"n:\-5");
        assert_eq!(parse("t:[2021-01-01T00:00:00Z TO *]").unwrap().to_string(), "t:[2021-01-01T00:00:00Z TO *]");
        assert_eq!(parse("NOT a").unwrap().to_string(), "-a");
        assert_eq!(parse("x:*").unwrap().to_string(), "x:*");
        assert_eq!(parse("*").unwrap().to_string(), "*:*");
        assert_eq!(parse(r"\AND").unwrap().to_string(), r"\AND");
    }

    #[test]
    fn errors_say_what_and_where() {
        assert_eq!(err(""), (0, "empty query".into()));
        assert_eq!(err("   "), (0, "empty query".into()));
        assert_eq!(err("prop:"), (5, "expected a value after 'prop:'".into()));
        assert_eq!(err("(prop: )"), (7, "expected a value after 'prop:'".into()));
        assert_eq!(err("(a OR b"), (0, "unbalanced parenthesis".into()));
        assert_eq!(err("a OR (b AND (c)"), (5, "unbalanced parenthesis".into()));
        assert_eq!(err("a OR b) AND c"), (6, "unbalanced parenthesis".into()));
        assert_eq!(err("()"), (0, "empty parentheses".into()));
        assert_eq!(err("x:[1 5]"), (5, "range needs TO".into()));
        assert_eq!(err("x:[1 TO 5"), (2, "unterminated range".into()));
        assert_eq!(err("x:[1"), (2, "unterminated range".into()));
        assert_eq!(err("x:[1 TO ]"), (8, "expected a range bound".into()));
        assert_eq!(err("x:[1 TO 5 6]"), (10, "expected ']' or '}' to close the range".into()));
        assert_eq!(err(r#"p:"open"#), (2, "unterminated phrase (missing closing '\"')".into()));
        assert_eq!(err(r"a\"), (1, "dangling escape '\\' at the end of the query".into()));
        assert_eq!(err("AND a"), (0, "expected a query before 'AND'".into()));
        assert_eq!(err("OR a"), (0, "expected a query before 'OR'".into()));
        assert_eq!(err("a AND"), (5, "expected a query after 'AND'".into()));
        assert_eq!(err("a && || b"), (5, "expected a query after '&&'".into()));
        assert_eq!(err("a OR"), (4, "expected a query after 'OR'".into()));
        assert_eq!(err("NOT"), (3, "expected a query after 'NOT'".into()));
        assert_eq!(err("a -"), (3, "expected a query after '-'".into()));
        assert_eq!(err("+-a"), (1, "unexpected '-'".into()));
        assert_eq!(err(":a"), (0, "expected a property name before ':'".into()));
        assert_eq!(err("a ]"), (2, "unexpected ']'".into()));
        assert_eq!(err("a^2"), (1, "boosts ('^') are not supported".into()));
        assert_eq!(err("a~2"), (1, "fuzzy and proximity searches ('~') are not supported".into()));
        assert_eq!(err("p:~"), (2, "fuzzy and proximity searches ('~') are not supported".into()));
        assert_eq!(parse("a OR").unwrap_err().to_string(), "expected a query after 'OR' at 4");
    }

    #[test]
    fn nesting_is_limited() {
        let deep = |n: usize| format!("{}a{}", "(".repeat(n), ")".repeat(n));
        assert_eq!(ok(&deep(MAX_DEPTH)), bare("a"));
        assert_eq!(err(&deep(MAX_DEPTH + 1)).1, format!("query nested too deeply (more than {MAX_DEPTH} levels)"));
        assert!(parse(&"(".repeat(100_000)).is_err());
        assert!(parse(&"NOT ".repeat(100_000)).is_err());
        assert!(parse(&format!("{}a", "NOT ".repeat(MAX_DEPTH))).is_ok());
        assert!(parse(&format!("{}a", "!".repeat(MAX_DEPTH + 1))).is_err());
        // AND chains inside groups deepen the tree faster than the text: the tree is limited too.
        let chains = format!("{}a{}", "(x AND ".repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH));
        assert!(ok(&chains).bool_depth() <= MAX_DEPTH);
        let chains = format!("{}a{}", "(x y AND ".repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH));
        assert!(parse(&chains).is_err());
    }

    #[test]
    fn long_inputs_parse_quickly() {
        let started = std::time::Instant::now();
        let wide = "a:1 OR b:[1 TO 2] AND NOT \"c d\" ".repeat(20_000);
        let q = parse(&wide).unwrap();
        let Query::Bool { should, .. } = &q else { panic!("a list") };
        assert_eq!(should.len(), 40_000);
        assert_eq!(parse(&q.to_string()), Ok(q));
        let long_word = "x".repeat(1 << 20);
        assert_eq!(parse(&long_word), Ok(bare(&long_word)));
        assert!(started.elapsed() < std::time::Duration::from_secs(20), "{:?}", started.elapsed());
    }

    fn arb_name() -> impl Strategy<Value = String> {
        prop_oneof![
            3 => "[a-z_][a-z0-9_]{0,5}(\\.[a-z0-9_]{1,4}){0,2}",
            1 => prop::collection::vec(arb_char(), 1..5).prop_map(|v| v.into_iter().collect()),
        ]
    }

    fn arb_char() -> impl Strategy<Value = char> {
        prop_oneof![
            2 => prop::char::range('a', 'z'),
            2 => prop::sample::select(" \t:()[]{}\"\\*?+-!&|^~/.,ANDORTé東\u{3000}\u{0}".chars().collect::<Vec<_>>()),
            1 => any::<char>(),
        ]
    }

    fn arb_text(min: usize) -> impl Strategy<Value = String> {
        prop_oneof![
            3 => prop::collection::vec(arb_char(), min..6).prop_map(|v| v.into_iter().collect()),
            1 => prop::sample::select(vec!["AND", "OR", "NOT", "TO", "*", "-5", "&&x", "2021-01-01T00:00:00Z"])
                .prop_map(String::from),
        ]
    }

    fn arb_field() -> impl Strategy<Value = Option<String>> {
        prop::option::of(arb_name())
    }

    fn arb_pattern() -> impl Strategy<Value = String> {
        let part = prop_oneof![
            3 => arb_char().prop_map(WildcardPart::Char),
            1 => Just(WildcardPart::AnyChar),
            1 => Just(WildcardPart::AnyString),
        ];
        prop::collection::vec(part, 1..6)
            .prop_filter("needs a wildcard and not only stars", |parts| {
                parts.iter().any(|p| !matches!(p, WildcardPart::Char(_)))
                    && !parts.iter().all(|p| *p == WildcardPart::AnyString)
            })
            .prop_map(|parts| {
                let mut s = String::new();
                for p in parts {
                    match p {
                        WildcardPart::Char(c) => {
                            if matches!(c, '*' | '?' | '\\') {
                                s.push('\\');
                            }
                            s.push(c);
                        }
                        WildcardPart::AnyChar => s.push('?'),
                        WildcardPart::AnyString => s.push('*'),
                    }
                }
                s
            })
    }

    fn arb_bound() -> impl Strategy<Value = Bound<String>> {
        prop_oneof![
            Just(Bound::Unbounded),
            arb_text(0).prop_map(Bound::Included),
            arb_text(0).prop_map(Bound::Excluded),
        ]
    }

    /// Trees in the canonical form the parser produces.
    fn arb_query() -> impl Strategy<Value = Query> {
        let leaf = prop_oneof![
            Just(Query::All),
            (arb_field(), arb_text(1)).prop_map(|(field, text)| Query::Term { field, text }),
            (arb_field(), arb_text(0)).prop_map(|(field, text)| Query::Phrase { field, text }),
            (arb_field(), arb_pattern()).prop_map(|(field, pattern)| Query::Wildcard { field, pattern }),
            (arb_field(), arb_bound(), arb_bound()).prop_map(|(field, lower, upper)| Query::Range {
                field,
                lower,
                upper
            }),
            arb_name().prop_map(|field| Query::Exists { field }),
        ];
        leaf.prop_recursive(4, 32, 4, |inner| {
            let list = || prop::collection::vec(inner.clone(), 0..3);
            (list(), list(), list())
                .prop_filter("canonical list", |(must, should, must_not)| {
                    let positive = must.len() + should.len();
                    positive + must_not.len() > 0 && !(positive == 1 && must_not.is_empty())
                })
                .prop_map(|(must, should, must_not)| Query::Bool { must, should, must_not })
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn displayed_trees_parse_back(q in arb_query()) {
            let shown = q.to_string();
            prop_assert_eq!(parse(&shown), Ok(q), "displayed as {:?}", shown);
        }

        #[test]
        fn any_string_parses_or_errs_and_round_trips(s in "\\PC{0,40}") {
            check_no_panic(&s)?;
        }

        #[test]
        fn query_like_strings_parse_or_err_and_round_trip(
            parts in prop::collection::vec(prop::sample::select(vec![
                "a", "b:", "c.d:", "*", "?", "x*", " ", " ", "(", ")", "[", "]", "{", "}", "\"", "\\", ":",
                "AND", "OR", "NOT", "TO", "&&", "||", "!", "+", "-", "^", "~", "1", "-2", "é", "\u{3000}",
            ]), 0..24)
        ) {
            check_no_panic(&parts.concat())?;
        }
    }

    fn check_no_panic(s: &str) -> Result<(), TestCaseError> {
        match parse(s) {
            Ok(q) => {
                let shown = q.to_string();
                prop_assert_eq!(parse(&shown), Ok(q), "{:?} displayed as {:?}", s, shown);
            }
            Err(e) => prop_assert!(e.position <= s.len() && s.is_char_boundary(e.position), "{:?}: {}", s, e),
        }
        Ok(())
    }
}
