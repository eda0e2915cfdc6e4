//! The query language ([`Query`]) as tantivy queries, with the semantics of [`crate::matcher`]:
//! a store answers a query exactly as the matcher would on each record.
//!
//! Property types come from the lake schema; an unknown property is an error
//! ([`check_properties`]). A property the lake has but an index generation predates (added
//! later) matches nothing in that generation. Per type:
//!
//! - `string`: whole value, exact; wildcards as a regular expression over whole values; ranges
//!   over bytes.
//! - `text`: query words analyzed like the indexed text; several words are a phrase.
//! - `integer`, `double`, `boolean`: the value parsed for the type (as [`coerce`] does); text
//!   that does not parse matches nothing. Integer range bounds with a fraction round inwards.
//! - `date`: ISO-8601 or epoch text, compared as epoch milliseconds (how dates are indexed).
//! - A term without a property is the disjunction of that term over every property.

use std::ops::Bound;

use m1_engine::values::{Scalar, coerce};
use m1_engine::{Property, PropertyType, Schema};
use serde_json::Value;
use tantivy::query::{
    AllQuery, BooleanQuery, EmptyQuery, ExistsQuery, Occur, PhraseQuery, Query as TantivyQuery, RangeQuery, RegexQuery,
    TermQuery,
};
use tantivy::schema::{Field, IndexRecordOption};
use tantivy::{Index, Term};

use super::fields::PRESENT;
use super::safe_seek::SafeSeek;
use crate::error::{QueryError, Result};
use crate::syntax::{Query, WildcardPart, wildcard_parts};

/// Fails with [`QueryError::UnknownProperty`] if the query names a property the schema lacks.
pub fn check_properties(query: &Query, schema: &Schema) -> Result<()> {
    for name in query.properties() {
        if schema.get(name).is_none() {
            return Err(QueryError::UnknownProperty(name.to_string()));
        }
    }
    Ok(())
}

/// Translates `query` for one index, typing properties by the lake `schema`.
pub fn translate(query: &Query, schema: &Schema, index: &Index) -> Result<Box<dyn TantivyQuery>> {
    Translator { props: schema.all(), index }.query(query)
}

struct Translator<'a> {
    props: Vec<Property>,
    index: &'a Index,
}

type Q = Box<dyn TantivyQuery>;

fn empty() -> Q {
    Box::new(EmptyQuery)
}

impl Translator<'_> {
    fn query(&self, q: &Query) -> Result<Q> {
        Ok(match q {
            Query::All => Box::new(AllQuery),
            Query::Bool { must, should, must_not } => {
                let mut clauses: Vec<(Occur, Q)> = Vec::new();
                for (occur, list) in [(Occur::Must, must), (Occur::Should, should), (Occur::MustNot, must_not)] {
                    for c in list {
                        let clause = self.query(c)?;
                        // Exclusions probe their clause with `seek_danger`, which some tantivy
                        // scorers answer wrongly (or panic on) once built ahead of the target.
                        let clause: Q = if occur == Occur::MustNot { Box::new(SafeSeek(clause)) } else { clause };
                        clauses.push((occur, clause));
                    }
                }
                // A list of only prohibited clauses means "everything except" (Solr's rule).
                if must.is_empty() && should.is_empty() {
                    clauses.push((Occur::Must, Box::new(AllQuery)));
                }
                Box::new(BooleanQuery::new(clauses))
            }
            Query::Exists { field } => match self.prop(field) {
                // Without a column, presence is a term of the presence field (see `fields`).
                Some((p, f)) if !self.has_column(f) => {
                    let present = self.index.schema().get_field(PRESENT)?;
                    Box::new(TermQuery::new(Term::from_field_text(present, &p.name), IndexRecordOption::Basic))
                }
                Some((p, _)) => Box::new(ExistsQuery::new(p.name.clone(), false)),
                None => empty(),
            },
            Query::Term { field, .. }
            | Query::Phrase { field, .. }
            | Query::Wildcard { field, .. }
            | Query::Range { field, .. } => match field {
                Some(name) => match self.prop(name) {
                    Some((p, f)) => self.leaf(q, p, f)?,
                    None => empty(),
                },
                None => {
                    let mut any: Vec<(Occur, Q)> = Vec::new();
                    for p in &self.props {
                        let Ok(f) = self.index.schema().get_field(&p.name) else { continue };
                        // A bare wildcard searches the terms there are: not those of a property
                        // declared `indexed: false`.
                        if matches!(q, Query::Wildcard { .. }) && !self.has_terms(f) {
                            continue;
                        }
                        any.push((Occur::Should, self.leaf(q, p, f)?));
                    }
                    Box::new(BooleanQuery::new(any))
                }
            },
        })
    }

    /// Whether this index keeps the terms of field `f` (it was built `indexed`).
    fn has_terms(&self, f: Field) -> bool {
        self.index.schema().get_field_entry(f).is_indexed()
    }

    /// Whether this index keeps a column of field `f` (it was built `fast`).
    fn has_column(&self, f: Field) -> bool {
        self.index.schema().get_field_entry(f).is_fast()
    }

    /// The property and its field in this index; `None` if the index predates the property.
    fn prop(&self, name: &str) -> Option<(&Property, Field)> {
        let p = self.props.iter().find(|p| p.name == name)?;
        Some((p, self.index.schema().get_field(name).ok()?))
    }

    fn leaf(&self, q: &Query, p: &Property, f: Field) -> Result<Q> {
        Ok(match q {
            Query::Term { text, .. } | Query::Phrase { text, .. } => self.equals(p, f, text)?,
            Query::Wildcard { pattern, .. } if !self.has_terms(f) => {
                return Err(QueryError::BadRequest(format!(
                    "cannot match the wildcard '{pattern}' on '{}': the property is declared with indexed \
                     false, so the data stores keep no terms of it (ask for a whole value or a range)",
                    p.name
                )));
            }
            Query::Wildcard { pattern, .. } => match p.ty {
                PropertyType::String => regex(f, pattern, false)?,
                PropertyType::Text => regex(f, pattern, true)?,
                _ => empty(),
            },
            Query::Range { lower, upper, .. } => self.range(p, f, lower, upper),
            _ => unreachable!("leaf() is called for leaves"),
        })
    }

    fn equals(&self, p: &Property, f: Field, text: &str) -> Result<Q> {
        // A field without an inverted index (`indexed: false`) answers a term from its column.
        let indexed = self.has_terms(f);
        let exact = |t: Term| -> Q {
            if indexed {
                Box::new(TermQuery::new(t, IndexRecordOption::Basic))
            } else {
                Box::new(RangeQuery::new(Bound::Included(t.clone()), Bound::Included(t)))
            }
        };
        Ok(match p.ty {
            PropertyType::String => exact(Term::from_field_text(f, text)),
            PropertyType::Text => {
                let words = self.words(f, text)?;
                match words.len() {
                    0 => empty(),
                    1 => Box::new(TermQuery::new(Term::from_field_text(f, &words[0]), IndexRecordOption::WithFreqs)),
                    _ => {
                        let phrase = PhraseQuery::new(words.iter().map(|w| Term::from_field_text(f, w)).collect());
                        Box::new(SafeSeek(Box::new(phrase)))
                    }
                }
            }
            ty => match scalar(text, ty) {
                Some(Scalar::Int(i)) => exact(Term::from_field_i64(f, i)),
                Some(Scalar::Double(d)) if !d.is_nan() => exact(Term::from_field_f64(f, canonical(d))),
                Some(Scalar::Bool(b)) => exact(Term::from_field_bool(f, b)),
                Some(Scalar::DateMs(ms)) => exact(Term::from_field_i64(f, ms)),
                _ => empty(),
            },
        })
    }

    fn words(&self, f: Field, text: &str) -> Result<Vec<String>> {
        let mut analyzer = self.index.tokenizer_for_field(f)?;
        let mut stream = analyzer.token_stream(text);
        let mut out = Vec::new();
        while stream.advance() {
            out.push(stream.token().text.clone());
        }
        Ok(out)
    }

    fn range(&self, p: &Property, f: Field, lower: &Bound<String>, upper: &Bound<String>) -> Q {
        if matches!((lower, upper), (Bound::Unbounded, Bound::Unbounded)) {
            return self.query(&Query::Exists { field: p.name.clone() }).unwrap_or_else(|_| empty());
        }
        let bounds = match p.ty {
            PropertyType::String => (
                map_bound(lower, |s| Some(Term::from_field_text(f, s))),
                map_bound(upper, |s| Some(Term::from_field_text(f, s))),
            ),
            PropertyType::Text => (
                map_bound(lower, |s| Some(Term::from_field_text(f, &s.to_lowercase()))),
                map_bound(upper, |s| Some(Term::from_field_text(f, &s.to_lowercase()))),
            ),
            PropertyType::Integer => match int_bounds(lower, upper) {
                Some((l, u)) => {
                    (Some(l.map(|v| Term::from_field_i64(f, v))), Some(u.map(|v| Term::from_field_i64(f, v))))
                }
                None => (None, None),
            },
            PropertyType::Double => (
                map_bound(lower, |s| double(s).map(|v| Term::from_field_f64(f, v))),
                map_bound(upper, |s| double(s).map(|v| Term::from_field_f64(f, v))),
            ),
            PropertyType::Date => {
                let date = |s: &str| match scalar(s, PropertyType::Date) {
                    Some(Scalar::DateMs(ms)) => Some(Term::from_field_i64(f, ms)),
                    _ => None,
                };
                (map_bound(lower, date), map_bound(upper, date))
            }
            PropertyType::Boolean => {
                let b = |s: &str| match scalar(s, PropertyType::Boolean) {
                    Some(Scalar::Bool(b)) => Some(Term::from_field_bool(f, b)),
                    _ => None,
                };
                (map_bound(lower, b), map_bound(upper, b))
            }
        };
        match bounds {
            (Some(l), Some(u)) => Box::new(RangeQuery::new(l, u)),
            // A bound that does not fit the type: nothing is in the range.
            _ => empty(),
        }
    }
}

/// A bound converted by `f`; `None` if the value does not convert.
fn map_bound<T>(b: &Bound<String>, f: impl Fn(&str) -> Option<T>) -> Option<Bound<T>> {
    Some(match b {
        Bound::Included(s) => Bound::Included(f(s)?),
        Bound::Excluded(s) => Bound::Excluded(f(s)?),
        Bound::Unbounded => Bound::Unbounded,
    })
}

fn scalar(text: &str, ty: PropertyType) -> Option<Scalar> {
    coerce(&Value::String(text.to_string()), ty).ok().flatten()
}

fn double(s: &str) -> Option<f64> {
    s.trim().parse::<f64>().ok().filter(|v| !v.is_nan()).map(canonical)
}

/// Doubles as indexed: -0 as 0, which it equals (tantivy's term order keeps them apart).
pub(crate) fn canonical(v: f64) -> f64 {
    // IEEE 754: -0 + 0 is +0, and every other value is unchanged.
    v + 0.0
}

/// Integer bounds: a fractional bound rounds inwards, so `[1.5 TO 3.5]` is `[2 TO 3]`.
fn int_bounds(lower: &Bound<String>, upper: &Bound<String>) -> Option<(Bound<i64>, Bound<i64>)> {
    let one = |b: &Bound<String>, up: bool| -> Option<Bound<i64>> {
        let (Bound::Included(s) | Bound::Excluded(s)) = b else { return Some(Bound::Unbounded) };
        let v = double(s)?;
        let inclusive = matches!(b, Bound::Included(_));
        if let Ok(i) = s.trim().parse::<i64>() {
            return Some(if inclusive { Bound::Included(i) } else { Bound::Excluded(i) });
        }
        if v.fract() == 0.0 && v.abs() < 9.2e18 {
            let i = v as i64;
            return Some(if inclusive { Bound::Included(i) } else { Bound::Excluded(i) });
        }
        let r = if up { v.floor() } else { v.ceil() };
        (r.abs() < 9.2e18).then_some(Bound::Included(r as i64))
    };
    Some((one(lower, false)?, one(upper, true)?))
}

/// A wildcard pattern as a regular expression over whole terms (lowercased for text, whose
/// terms are lowercase words).
fn regex(f: Field, pattern: &str, lowercase: bool) -> Result<Q> {
    let mut re = String::new();
    for part in wildcard_parts(pattern) {
        match part {
            WildcardPart::AnyString => re.push_str(".*"),
            WildcardPart::AnyChar => re.push('.'),
            WildcardPart::Char(c) => {
                let c = if lowercase { c.to_lowercase().collect::<String>() } else { c.to_string() };
                re.push_str(&regex::escape(&c));
            }
        }
    }
    // A wildcard too long for the automaton is the caller's input (400), not a failure of ours.
    let query = RegexQuery::from_pattern(&re, f)
        .map_err(|e| QueryError::BadRequest(format!("wildcard '{pattern}' is too complex to search: {e}")))?;
    Ok(Box::new(query))
}
