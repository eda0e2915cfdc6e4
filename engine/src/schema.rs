//! The environment schema: named, typed properties and their Arrow and Delta forms.
//!
//! Invariants kept here:
//! - `_m1key` (integer) and `_m1rand` (double) are always the first two columns and can be neither
//!   added nor wiped.
//! - A property name is never reused with another type while any segment may still hold it:
//!   the table log's Delta schema is the union of every column ever written, and a property can be
//!   (re-)added only with the type it has there.

use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema as ArrowSchema, SchemaRef, TimeUnit};
use serde::{Deserialize, Serialize};

use crate::error::{EngineError, Result};

/// Name of the built-in record key column.
pub const KEY: &str = "_m1key";
/// Name of the built-in uniform random column used for sampling.
pub const RAND: &str = "_m1rand";

/// The type of a property (SPEC §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PropertyType {
    /// Exact keyword.
    String,
    /// Tokenized full text.
    Text,
    /// 64-bit signed integer.
    Integer,
    /// 64-bit float.
    Double,
    /// UTC instant with millisecond precision.
    Date,
    /// true / false.
    Boolean,
}

impl PropertyType {
    /// Parses a type name as the schema API spells it.
    pub fn parse(name: &str) -> Option<PropertyType> {
        Some(match name {
            "string" => PropertyType::String,
            "text" => PropertyType::Text,
            "integer" => PropertyType::Integer,
            "double" => PropertyType::Double,
            "date" => PropertyType::Date,
            "boolean" => PropertyType::Boolean,
            _ => return None,
        })
    }

    /// The name the schema API uses.
    pub fn name(self) -> &'static str {
        match self {
            PropertyType::String => "string",
            PropertyType::Text => "text",
            PropertyType::Integer => "integer",
            PropertyType::Double => "double",
            PropertyType::Date => "date",
            PropertyType::Boolean => "boolean",
        }
    }

    /// The Arrow type of one value.
    pub fn arrow_type(self) -> DataType {
        match self {
            PropertyType::String | PropertyType::Text => DataType::Utf8,
            PropertyType::Integer => DataType::Int64,
            PropertyType::Double => DataType::Float64,
            // Microseconds because that is Delta's `timestamp`; values keep millisecond precision.
            PropertyType::Date => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            PropertyType::Boolean => DataType::Boolean,
        }
    }

    /// The Delta primitive type name.
    fn delta_type(self) -> &'static str {
        match self {
            PropertyType::String | PropertyType::Text => "string",
            PropertyType::Integer => "long",
            PropertyType::Double => "double",
            PropertyType::Date => "timestamp",
            PropertyType::Boolean => "boolean",
        }
    }
}

/// One property definition, as `/schema/add` takes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Property {
    /// Dotted name, e.g. `session.id`.
    pub name: String,
    /// Value type.
    #[serde(rename = "type", with = "type_name")]
    pub ty: PropertyType,
    /// Whether the property holds a list of values.
    #[serde(default)]
    pub multi: bool,
    /// Informational comment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Whether data stores keep an inverted index of the property (terms, words, phrases,
    /// wildcards); unset is the type's default, see [`Property::is_indexed`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub indexed: Option<bool>,
    /// Whether data stores keep a column of the property (sort, facets, existence, and ranges
    /// and terms of numbers); unset is the type's default, see [`Property::is_fast`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fast: Option<bool>,
}

mod type_name {
    use super::PropertyType;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &PropertyType, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(t.name())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<PropertyType, D::Error> {
        let name = String::deserialize(d)?;
        PropertyType::parse(&name).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "unknown type '{name}' (expected one of string, text, integer, double, date, boolean)"
            ))
        })
    }
}

impl Property {
    /// A single-valued property without description.
    pub fn new(name: &str, ty: PropertyType) -> Property {
        Property { name: name.to_string(), ty, multi: false, description: None, indexed: None, fast: None }
    }

    /// Whether data stores keep the property's terms in an inverted index. Default: for
    /// `string`, `text` and `boolean`; `integer`, `double` and `date` answer terms and ranges
    /// from their column (a scan, but most of the indexing cost of numbers is their terms).
    pub fn is_indexed(&self) -> bool {
        self.indexed.unwrap_or(!matches!(self.ty, PropertyType::Integer | PropertyType::Double | PropertyType::Date))
    }

    /// Whether data stores keep a column of the property. Default: every type but `text`.
    pub fn is_fast(&self) -> bool {
        self.fast.unwrap_or(self.ty != PropertyType::Text)
    }

    /// The index options, checked: a `text` property cannot have a column (its values are
    /// tokenized), and a property with neither an index nor a column could not be queried.
    pub fn check_index_options(&self) -> Result<()> {
        if self.ty == PropertyType::Text && self.fast == Some(true) {
            return Err(EngineError::Schema(format!(
                "property '{}': a text property cannot be fast (its values are tokenized into words); \
                 declare a string property to sort or facet on whole values",
                self.name
            )));
        }
        if !self.is_indexed() && !self.is_fast() {
            return Err(EngineError::Schema(format!(
                "property '{}': with indexed false and fast false a data store could not answer any \
                 query on it; keep one of them",
                self.name
            )));
        }
        Ok(())
    }

    /// The same property holding a list of values.
    pub fn multi(mut self) -> Property {
        self.multi = true;
        self
    }

    /// The Arrow type of the column.
    pub fn arrow_type(&self) -> DataType {
        if self.multi {
            DataType::List(Arc::new(Field::new("item", self.ty.arrow_type(), true)))
        } else {
            self.ty.arrow_type()
        }
    }

    /// The Arrow field of the column.
    pub fn field(&self) -> Field {
        Field::new(&self.name, self.arrow_type(), true)
    }

    fn delta_field(&self) -> serde_json::Value {
        let ty = if self.multi {
            serde_json::json!({"type": "array", "elementType": self.ty.delta_type(), "containsNull": true})
        } else {
            serde_json::Value::String(self.ty.delta_type().into())
        };
        serde_json::json!({"name": self.name, "type": ty, "nullable": true, "metadata": {}})
    }

    /// Whether two definitions store the same kind of column (descriptions aside).
    fn same_column(&self, other: &Property) -> bool {
        self.arrow_type() == other.arrow_type()
    }
}

/// Checks a property name: dotted segments of letters, digits, `_`, `-`, `@` or `$`.
pub fn validate_name(name: &str) -> Result<()> {
    let bad = |why: &str| Err(EngineError::Schema(format!("bad property name '{name}': {why}")));
    if name.is_empty() {
        return bad("it is empty");
    }
    if name.len() > 255 {
        return bad("it is longer than 255 bytes");
    }
    for part in name.split('.') {
        if part.is_empty() {
            return bad("it has an empty segment between dots");
        }
        if let Some(c) = part.chars().find(|c| !(c.is_alphanumeric() || matches!(c, '_' | '-' | '@' | '$'))) {
            return bad(&format!("character {c:?} is not allowed (use letters, digits, _, -, and dots for nesting)"));
        }
    }
    if name == KEY || name == RAND {
        return bad("it is built in");
    }
    Ok(())
}

/// The schema of an environment: built-ins plus user properties in the order they were added.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schema {
    properties: Vec<Property>,
}

impl Schema {
    /// The built-in properties every record has.
    pub fn builtins() -> [Property; 2] {
        [Property::new(KEY, PropertyType::Integer), Property::new(RAND, PropertyType::Double)]
    }

    /// User-defined properties, in the order added.
    pub fn properties(&self) -> &[Property] {
        &self.properties
    }

    /// Every property including the built-ins, as `/schema` lists them.
    pub fn all(&self) -> Vec<Property> {
        Self::builtins().into_iter().chain(self.properties.iter().cloned()).collect()
    }

    /// Looks a property up by name (built-ins included).
    pub fn get(&self, name: &str) -> Option<Property> {
        match name {
            KEY | RAND => Self::builtins().into_iter().find(|p| p.name == name),
            _ => self.properties.iter().find(|p| p.name == name).cloned(),
        }
    }

    /// Adds properties, checking them against this schema and the columns segments may hold.
    ///
    /// Re-adding an identical definition is a no-op; a changed description is updated.
    /// Returns whether anything changed.
    pub fn add(&mut self, new: &[Property], columns: &[Property]) -> Result<bool> {
        let mut changed = false;
        for p in new {
            validate_name(&p.name)?;
            p.check_index_options()?;
            if let Some(existing) = self.properties.iter_mut().find(|e| e.name == p.name) {
                if !existing.same_column(p) {
                    return Err(EngineError::Schema(format!(
                        "property '{}' already exists as {}; it cannot become {}",
                        p.name,
                        describe(existing),
                        describe(p)
                    )));
                }
                if (existing.is_indexed(), existing.is_fast()) != (p.is_indexed(), p.is_fast())
                    && (p.indexed.is_some() || p.fast.is_some())
                {
                    return Err(EngineError::Schema(format!(
                        "property '{}' already exists with indexed {} and fast {}; index options are \
                         fixed once a property exists (add a property under another name)",
                        p.name,
                        existing.is_indexed(),
                        existing.is_fast()
                    )));
                }
                if existing.description != p.description && p.description.is_some() {
                    existing.description = p.description.clone();
                    changed = true;
                }
                continue;
            }
            if let Some(col) = columns.iter().find(|c| c.name == p.name)
                && !col.same_column(p)
            {
                return Err(EngineError::Schema(format!(
                    "property '{}' was wiped from the schema but the lake still holds it as {}; \
                     re-add it with that type or choose another name",
                    p.name,
                    describe(col)
                )));
            }
            self.properties.push(p.clone());
            changed = true;
        }
        Ok(changed)
    }

    /// Removes every user property (the built-ins stay).
    pub fn wipe(&mut self) {
        self.properties.clear();
    }

    /// The Arrow schema of a full record: `_m1key`, `_m1rand`, then the properties.
    pub fn arrow_schema(&self) -> SchemaRef {
        Arc::new(ArrowSchema::new(self.all().iter().map(Property::field).collect::<Vec<_>>()))
    }

    /// The Delta `schemaString` for a set of columns.
    pub fn delta_schema_string(columns: &[Property]) -> String {
        let fields: Vec<_> = columns.iter().map(Property::delta_field).collect();
        serde_json::json!({"type": "struct", "fields": fields}).to_string()
    }
}

fn describe(p: &Property) -> String {
    if p.multi { format!("multi {}", p.ty.name()) } else { p.ty.name().to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_seed_schema_and_rejects_unknown_types() {
        let props: Vec<Property> = serde_json::from_str(
            r#"[{"name":"myTags","type":"string","multi":true,"description":"Represents important tags."},
                {"name":"myBoolean","type":"boolean"}]"#,
        )
        .unwrap();
        assert_eq!(
            props[0],
            Property {
                description: Some("Represents important tags.".into()),
                ..Property::new("myTags", PropertyType::String).multi()
            }
        );
        assert_eq!(props[1], Property::new("myBoolean", PropertyType::Boolean));
        let err = serde_json::from_str::<Vec<Property>>(r#"[{"name":"x","type":"float"}]"#).unwrap_err();
        assert!(err.to_string().contains("unknown type 'float'"), "{err}");
    }

    #[test]
    fn add_is_idempotent_and_refuses_type_changes() {
        let mut s = Schema::default();
        let p = Property::new("session.id", PropertyType::String);
        assert!(s.add(std::slice::from_ref(&p), &[]).unwrap());
        assert!(!s.add(std::slice::from_ref(&p), &[]).unwrap());
        let err = s.add(&[Property::new("session.id", PropertyType::Integer)], &[]).unwrap_err();
        assert!(err.to_string().contains("already exists as string"), "{err}");
        let err = s.add(&[Property::new("bad..name", PropertyType::Integer)], &[]).unwrap_err();
        assert!(err.to_string().contains("empty segment"), "{err}");
        let err = s.add(&[Property::new("_m1key", PropertyType::Integer)], &[]).unwrap_err();
        assert!(err.to_string().contains("built in"), "{err}");
    }

    #[test]
    fn index_options_default_by_type_and_leave_old_schemas_unchanged() {
        // A schema written before the options reads as the defaults, and a property without
        // options is written exactly as before (the log's schema stays readable both ways).
        let old = r#"{"name":"n","type":"integer","multi":false}"#;
        let p: Property = serde_json::from_str(old).unwrap();
        assert_eq!(p, Property::new("n", PropertyType::Integer));
        assert_eq!(serde_json::to_string(&p).unwrap(), old);
        let with: Property =
            serde_json::from_str(r#"{"name":"n","type":"integer","indexed":true,"fast":false}"#).unwrap();
        assert_eq!((with.indexed, with.fast), (Some(true), Some(false)));
        assert_eq!(
            serde_json::to_string(&with).unwrap(),
            r#"{"name":"n","type":"integer","multi":false,"indexed":true,"fast":false}"#
        );
        let defaults = |ty| {
            let p = Property::new("p", ty);
            (p.is_indexed(), p.is_fast())
        };
        assert_eq!(defaults(PropertyType::String), (true, true));
        assert_eq!(defaults(PropertyType::Text), (true, false));
        assert_eq!(defaults(PropertyType::Boolean), (true, true));
        for ty in [PropertyType::Integer, PropertyType::Double, PropertyType::Date] {
            assert_eq!(defaults(ty), (false, true), "{ty:?}");
        }
    }

    #[test]
    fn wiped_columns_keep_their_type() {
        let mut s = Schema::default();
        let cols = vec![Property::new("n", PropertyType::Integer)];
        let err = s.add(&[Property::new("n", PropertyType::Double)], &cols).unwrap_err();
        assert!(err.to_string().contains("still holds it as integer"), "{err}");
        assert!(s.add(&[Property::new("n", PropertyType::Integer)], &cols).unwrap());
        s.wipe();
        assert_eq!(s.all().len(), 2);
    }
}
