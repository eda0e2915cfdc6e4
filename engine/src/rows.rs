//! Building typed Arrow columns from JSON records.

use std::collections::BTreeSet;

use arrow::array::{
    ArrayBuilder, ArrayRef, BooleanBuilder, Float64Builder, Int64Builder, ListBuilder, StringBuilder,
    TimestampMicrosecondBuilder, make_builder,
};
use serde_json::{Map, Value};

use crate::error::{EngineError, Result};
pub use crate::record::flatten;
use crate::schema::{Property, PropertyType};
use crate::values::{Scalar, coerce, coerce_str};

/// Property name to column, hashed with FxHash: looked up for every value parsed.
type FastMap = std::collections::HashMap<String, usize, std::hash::BuildHasherDefault<rustc_hash::FxHasher>>;

/// Accumulates flat JSON records into one Arrow column per schema property.
pub struct RowsBuilder {
    properties: Vec<Property>,
    /// Column of each property name, for [`RowsBuilder::push_json`] (built on first use).
    index: FastMap,
    names: std::collections::HashSet<String>,
    builders: Vec<Box<dyn ArrayBuilder>>,
    unmapped: BTreeSet<String>,
    rows: usize,
    /// The row being typed by [`RowsBuilder::push_fields`] (kept to reuse its allocation).
    cells: Vec<Cell>,
}

impl RowsBuilder {
    /// A builder for these properties (in column order).
    pub fn new(properties: &[Property]) -> RowsBuilder {
        let builders = properties.iter().map(|p| make_builder(&p.arrow_type(), 1024)).collect();
        let names = properties.iter().map(|p| p.name.clone()).collect();
        RowsBuilder {
            properties: properties.to_vec(),
            index: Default::default(),
            names,
            builders,
            unmapped: BTreeSet::new(),
            rows: 0,
            cells: Vec::new(),
        }
    }

    /// Rows pushed since the last `finish`.
    pub fn len(&self) -> usize {
        self.rows
    }

    /// Whether no rows are pending.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Names seen in records that are not in the schema.
    pub fn unmapped(&self) -> &BTreeSet<String> {
        &self.unmapped
    }

    /// Appends one flat record. On error nothing of the record is appended.
    pub fn push(&mut self, record: &Map<String, Value>) -> Result<()> {
        // Coerce everything first so a bad value leaves the columns untouched.
        let mut values: Vec<Cell> = Vec::with_capacity(self.properties.len());
        for p in &self.properties {
            values.push(match record.get(&p.name) {
                None => Cell::Null,
                Some(v) => cell(p, v)?,
            });
        }
        self.commit_row(record, values);
        Ok(())
    }

    /// Appends one flat record, storing null for each value that does not fit its type; returns
    /// those values' errors (permissive publishing).
    pub fn push_lenient(&mut self, record: &Map<String, Value>) -> Vec<EngineError> {
        let mut errors = Vec::new();
        let mut values: Vec<Cell> = Vec::with_capacity(self.properties.len());
        for p in &self.properties {
            values.push(match record.get(&p.name) {
                None => Cell::Null,
                Some(v) => cell(p, v).unwrap_or_else(|e| {
                    errors.push(e);
                    Cell::Null
                }),
            });
        }
        self.commit_row(record, values);
        errors
    }

    /// Appends one row of text fields, a csv record: `columns[i]` is the field holding
    /// property `i` (none: null), typed as [`RowsBuilder::push`] types a JSON string. Strict, a
    /// value that does not fit fails with the index of its field, and nothing of the row is
    /// appended; `lenient` stores null instead and returns each such field with its error.
    /// Names outside the schema are the caller's to report (they are the same for every row).
    pub fn push_fields<'f>(
        &mut self,
        columns: &[Option<usize>],
        field: impl Fn(usize) -> std::borrow::Cow<'f, str>,
        lenient: bool,
    ) -> std::result::Result<Vec<(usize, EngineError)>, (usize, EngineError)> {
        let mut nulled = Vec::new();
        self.cells.clear();
        for (p, column) in self.properties.iter().zip(columns) {
            let Some(at) = *column else {
                self.cells.push(Cell::Null);
                continue;
            };
            match text_cell(p, &field(at)) {
                Ok(c) => self.cells.push(c),
                Err(e) if lenient => {
                    nulled.push((at, e));
                    self.cells.push(Cell::Null);
                }
                Err(e) => {
                    self.cells.clear();
                    return Err((at, e));
                }
            }
        }
        for ((p, b), v) in self.properties.iter().zip(&mut self.builders).zip(self.cells.drain(..)) {
            append(p, b.as_mut(), v);
        }
        self.rows += 1;
        Ok(nulled)
    }

    /// For each property, the position of its name in `names` (a csv header), if there.
    pub fn columns_of(&self, names: &[String]) -> Vec<Option<usize>> {
        self.properties.iter().map(|p| names.iter().position(|n| *n == p.name)).collect()
    }

    fn commit_row(&mut self, record: &Map<String, Value>, values: Vec<Cell>) {
        for name in record.keys() {
            if !self.names.contains(name.as_str()) && !self.unmapped.contains(name) {
                self.unmapped.insert(name.clone());
            }
        }
        for ((p, b), v) in self.properties.iter().zip(&mut self.builders).zip(values) {
            append(p, b.as_mut(), v);
        }
        self.rows += 1;
    }

    /// Takes the accumulated columns, leaving the builder empty.
    pub fn finish(&mut self) -> Vec<ArrayRef> {
        self.rows = 0;
        self.builders.iter_mut().map(|b| b.finish()).collect()
    }
}

enum Cell {
    Null,
    One(Scalar),
    Many(Vec<Option<Scalar>>),
}

fn cell(p: &Property, v: &Value) -> Result<Cell> {
    let bad = |v: &Value| EngineError::BadValue {
        property: p.name.clone(),
        value: truncate(&v.to_string()),
        expected: if p.multi { format!("list of {}", p.ty.name()) } else { p.ty.name().to_string() },
    };
    match (p.multi, v) {
        (true, Value::Array(items)) => {
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                out.push(coerce(item, p.ty).map_err(|_| bad(item))?);
            }
            Ok(Cell::Many(out))
        }
        (true, v) => Ok(match coerce(v, p.ty).map_err(|_| bad(v))? {
            Some(s) => Cell::Many(vec![Some(s)]),
            None => Cell::Null,
        }),
        // A list for a single-valued string keeps its JSON text; other types refuse it.
        (false, Value::Array(_)) if !matches!(p.ty, PropertyType::String | PropertyType::Text) => Err(bad(v)),
        (false, v) => Ok(match coerce(v, p.ty).map_err(|_| bad(v))? {
            Some(s) => Cell::One(s),
            None => Cell::Null,
        }),
    }
}

/// [`cell`] of a JSON string, without making one.
fn text_cell(p: &Property, s: &str) -> Result<Cell> {
    let bad = || EngineError::BadValue {
        property: p.name.clone(),
        value: truncate(&Value::String(s.to_string()).to_string()),
        expected: if p.multi { format!("list of {}", p.ty.name()) } else { p.ty.name().to_string() },
    };
    Ok(match coerce_str(s, p.ty).map_err(|_| bad())? {
        Some(v) if p.multi => Cell::Many(vec![Some(v)]),
        Some(v) => Cell::One(v),
        None => Cell::Null,
    })
}

fn truncate(s: &str) -> String {
    if s.len() <= 200 {
        return s.to_string();
    }
    let mut end = 200;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

fn append_scalar(b: &mut dyn ArrayBuilder, v: Option<Scalar>) {
    let any = b.as_any_mut();
    // The builder type always matches the property type: both come from `Property::arrow_type`.
    if let Some(b) = any.downcast_mut::<StringBuilder>() {
        match v {
            Some(Scalar::Str(s)) => b.append_value(s),
            _ => b.append_null(),
        }
    } else if let Some(b) = any.downcast_mut::<Int64Builder>() {
        b.append_option(match v {
            Some(Scalar::Int(i)) => Some(i),
            _ => None,
        })
    } else if let Some(b) = any.downcast_mut::<Float64Builder>() {
        b.append_option(match v {
            Some(Scalar::Double(f)) => Some(f),
            _ => None,
        })
    } else if let Some(b) = any.downcast_mut::<TimestampMicrosecondBuilder>() {
        b.append_option(match v {
            Some(Scalar::DateMs(ms)) => Some(ms * 1000),
            _ => None,
        })
    } else if let Some(b) = any.downcast_mut::<BooleanBuilder>() {
        b.append_option(match v {
            Some(Scalar::Bool(x)) => Some(x),
            _ => None,
        })
    } else {
        unreachable!("builder of an unexpected type")
    }
}

fn append(p: &Property, b: &mut dyn ArrayBuilder, v: Cell) {
    if !p.multi {
        let v = match v {
            Cell::One(s) => Some(s),
            _ => None,
        };
        return append_scalar(b, v);
    }
    let list =
        b.as_any_mut().downcast_mut::<ListBuilder<Box<dyn ArrayBuilder>>>().expect("multi properties build lists");
    match v {
        Cell::Many(items) => {
            for item in items {
                append_scalar(list.values().as_mut(), item);
            }
            list.append(true);
        }
        _ => list.append(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::Int64Type;
    use serde_json::json;

    #[test]
    fn builds_typed_columns_and_reports_unmapped() {
        let props = vec![
            Property::new("n", PropertyType::Integer),
            Property::new("tags", PropertyType::String).multi(),
            Property::new("when", PropertyType::Date),
        ];
        let mut b = RowsBuilder::new(&props);
        b.push(json!({"n": 1, "tags": ["a", "b"], "when": 946702800, "x": 1}).as_object().unwrap()).unwrap();
        b.push(json!({"n": null, "tags": "c"}).as_object().unwrap()).unwrap();
        let err = b.push(json!({"n": "nope", "tags": "d"}).as_object().unwrap()).unwrap_err();
        assert_eq!(err.to_string(), "property 'n': value \"nope\" is not a valid integer");
        assert_eq!(b.len(), 2);
        let cols = b.finish();
        let n = cols[0].as_primitive::<Int64Type>();
        assert_eq!((n.value(0), n.is_null(1)), (1, true));
        let tags = cols[1].as_list::<i32>();
        assert_eq!(tags.value(0).as_string::<i32>().iter().collect::<Vec<_>>(), vec![Some("a"), Some("b")]);
        assert_eq!(tags.value(1).as_string::<i32>().value(0), "c");
        assert_eq!(cols[2].as_primitive::<arrow::datatypes::TimestampMicrosecondType>().value(0), 946702800000000);
        assert!(cols[2].is_null(1));
        assert_eq!(b.unmapped().iter().collect::<Vec<_>>(), vec!["x"]);
    }
}

/// What [`RowsBuilder::push_json`] made of one JSON text.
#[derive(Debug)]
pub enum JsonPush {
    /// The object became a row; in lenient mode, the values that were nulled.
    Row(Vec<EngineError>),
    /// The text is JSON but not an object (nothing was appended); names what it is.
    NotObject(&'static str),
}

/// Why [`RowsBuilder::push_json`] appended nothing.
#[derive(Debug)]
pub enum PushJsonError {
    /// The text is not valid JSON.
    Syntax(serde_json::Error),
    /// A value does not fit its property's type (strict mode).
    Value(EngineError),
}

impl RowsBuilder {
    /// Parses one JSON object straight into the columns, flattening nested objects to dotted
    /// names on the way: no intermediate map is built, which makes this the fast path for jsonl
    /// without rules. `lenient` nulls values that do not fit instead of failing.
    pub fn push_json(&mut self, text: &[u8], lenient: bool) -> Result<JsonPush, PushJsonError> {
        use serde::de::DeserializeSeed;
        if self.index.is_empty() && !self.properties.is_empty() {
            self.index = self.properties.iter().enumerate().map(|(i, p)| (p.name.clone(), i)).collect();
        }
        let mut walker = Walker {
            properties: &self.properties,
            index: &self.index,
            unmapped: &mut self.unmapped,
            cells: (0..self.properties.len()).map(|_| Cell::Null).collect(),
            path: String::new(),
            lenient,
            nulled: Vec::new(),
            failed: None,
        };
        let mut de = serde_json::Deserializer::from_slice(text);
        let kind = Top(&mut walker).deserialize(&mut de).map_err(PushJsonError::Syntax)?;
        de.end().map_err(PushJsonError::Syntax)?;
        if let Some(kind) = kind {
            return Ok(JsonPush::NotObject(kind));
        }
        if let Some(e) = walker.failed {
            return Err(PushJsonError::Value(e));
        }
        let (cells, nulled) = (walker.cells, walker.nulled);
        for ((p, b), v) in self.properties.iter().zip(&mut self.builders).zip(cells) {
            append(p, b.as_mut(), v);
        }
        self.rows += 1;
        Ok(JsonPush::Row(nulled))
    }
}

/// State of one [`RowsBuilder::push_json`] call.
struct Walker<'a> {
    properties: &'a [Property],
    index: &'a FastMap,
    unmapped: &'a mut BTreeSet<String>,
    cells: Vec<Cell>,
    /// Dotted name of the value being read.
    path: String,
    lenient: bool,
    nulled: Vec<EngineError>,
    failed: Option<EngineError>,
}

impl Walker<'_> {
    fn leaf(&mut self, value: Value) {
        match self.index.get(self.path.as_str()) {
            Some(&i) => match (&self.properties[i], value) {
                // The common case moves the parsed string instead of copying it.
                (p, Value::String(s)) if !p.multi && matches!(p.ty, PropertyType::String | PropertyType::Text) => {
                    self.cells[i] = Cell::One(Scalar::Str(s));
                }
                (p, value) => self.typed_leaf(i, p, &value),
            },
            None => {
                if !self.unmapped.contains(self.path.as_str()) {
                    self.unmapped.insert(self.path.clone());
                }
            }
        }
    }

    fn typed_leaf(&mut self, i: usize, p: &Property, value: &Value) {
        match cell(p, value) {
            Ok(c) => self.cells[i] = c,
            Err(e) if self.lenient => {
                self.cells[i] = Cell::Null;
                self.nulled.push(e);
            }
            Err(e) => {
                self.failed.get_or_insert(e);
            }
        }
    }
}

/// The top-level value: an object is walked; anything else is named.
struct Top<'w, 'a>(&'w mut Walker<'a>);

impl<'de> serde::de::DeserializeSeed<'de> for Top<'_, '_> {
    type Value = Option<&'static str>;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> std::result::Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Top<'_, '_> {
    type Value = Option<&'static str>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> std::result::Result<Self::Value, A::Error> {
        walk_object(self.0, map)?;
        Ok(None)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<Self::Value, A::Error> {
        while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
        Ok(Some("an array"))
    }
    fn visit_bool<E>(self, _: bool) -> std::result::Result<Self::Value, E> {
        Ok(Some("a boolean"))
    }
    fn visit_i64<E>(self, _: i64) -> std::result::Result<Self::Value, E> {
        Ok(Some("a number"))
    }
    fn visit_u64<E>(self, _: u64) -> std::result::Result<Self::Value, E> {
        Ok(Some("a number"))
    }
    fn visit_f64<E>(self, _: f64) -> std::result::Result<Self::Value, E> {
        Ok(Some("a number"))
    }
    fn visit_str<E>(self, _: &str) -> std::result::Result<Self::Value, E> {
        Ok(Some("a string"))
    }
    fn visit_unit<E>(self) -> std::result::Result<Self::Value, E> {
        Ok(Some("null"))
    }
}

fn walk_object<'de, A: serde::de::MapAccess<'de>>(w: &mut Walker<'_>, mut map: A) -> std::result::Result<(), A::Error> {
    loop {
        let len = w.path.len();
        if map.next_key_seed(Key(&mut w.path))?.is_none() {
            return Ok(());
        }
        map.next_value_seed(Field(w))?;
        w.path.truncate(len);
    }
}

/// Appends a key to the current dotted path.
struct Key<'p>(&'p mut String);

impl<'de> serde::de::DeserializeSeed<'de> for Key<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> std::result::Result<(), D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Key<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a property name")
    }
    fn visit_str<E>(self, key: &str) -> std::result::Result<(), E> {
        if !self.0.is_empty() {
            self.0.push('.');
        }
        self.0.push_str(key);
        Ok(())
    }
}

/// One value under the current path: objects recurse, everything else is a leaf.
struct Field<'w, 'a>(&'w mut Walker<'a>);

impl<'de> serde::de::DeserializeSeed<'de> for Field<'_, '_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> std::result::Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Field<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> std::result::Result<(), A::Error> {
        walk_object(self.0, map)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<(), A::Error> {
        let mut items = Vec::new();
        while let Some(v) = seq.next_element::<Value>()? {
            items.push(v);
        }
        self.0.leaf(Value::Array(items));
        Ok(())
    }
    fn visit_bool<E>(self, v: bool) -> std::result::Result<(), E> {
        self.0.leaf(Value::Bool(v));
        Ok(())
    }
    fn visit_i64<E>(self, v: i64) -> std::result::Result<(), E> {
        self.0.leaf(Value::from(v));
        Ok(())
    }
    fn visit_u64<E>(self, v: u64) -> std::result::Result<(), E> {
        self.0.leaf(Value::from(v));
        Ok(())
    }
    fn visit_f64<E>(self, v: f64) -> std::result::Result<(), E> {
        self.0.leaf(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number));
        Ok(())
    }
    fn visit_str<E>(self, v: &str) -> std::result::Result<(), E> {
        self.0.leaf(Value::String(v.to_string()));
        Ok(())
    }
    fn visit_string<E>(self, v: String) -> std::result::Result<(), E> {
        self.0.leaf(Value::String(v));
        Ok(())
    }
    fn visit_unit<E>(self) -> std::result::Result<(), E> {
        self.0.leaf(Value::Null);
        Ok(())
    }
}
