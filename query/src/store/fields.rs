//! How lake properties become tantivy fields, and lake rows become tantivy documents.
//!
//! What a field keeps follows the property's index options ([`Property::is_indexed`],
//! [`Property::is_fast`]); by default:
//!
//! | type | tantivy field | serves |
//! |---|---|---|
//! | `string` | raw (untokenized) term + fast column | exact terms, wildcards, ranges, sort, facets |
//! | `text` | default tokenizer with positions (+ a term in the presence field) | words, phrases |
//! | `integer`, `double`, `date`, `boolean` | indexed + fast | terms, ranges, sort, facets |
//!
//! A property without a column (`fast: false`) cannot be sorted or faceted on, and records its
//! presence in [`PRESENT`], as `text` does; one without an inverted index (`indexed: false`)
//! answers terms and ranges from its column, a scan, and has no wildcards.
//!
//! Dates are indexed as `i64` epoch milliseconds, not as tantivy dates: those hold nanoseconds
//! in an `i64` (years 1677 to 2262 only) and keep only seconds in the term index, while the lake
//! keeps milliseconds over a far wider range.
//!
//! Fields are named exactly like the properties (dots included): tantivy only forbids empty
//! names and a leading `-`, which property names never have. `multi` properties add one value
//! per element. A `double` NaN is not indexed: in a store it behaves as a missing value (it
//! equals nothing, falls in no range, sorts last and has no facet bucket).
//!
//! Existence (`p:*`) uses the fast column where there is one, else the presence field.

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Float64Type, Int64Type, TimestampMicrosecondType};
use m1_engine::{Property, PropertyType};
use tantivy::TantivyDocument;
use tantivy::schema::{
    Field, IndexRecordOption, NumericOptions, Schema as TantivySchema, SchemaBuilder, TextFieldIndexing, TextOptions,
};

/// The field listing a document's non-null properties that have no column (`text` ones, and
/// any declared `fast: false`). A control character keeps it
/// apart from every valid property name.
pub const PRESENT: &str = "\u{1}present";

/// Registers the analysis of `text` fields on an index (tokenizers are not stored with it):
/// words split on non-alphanumerics, lowercased, as the matcher and the session stores split
/// them. Unlike tantivy's own `default`, long words are kept: a 40-letter word must be found
/// here as it is everywhere else in m1.
pub fn register_tokenizers(index: &tantivy::Index) {
    use tantivy::tokenizer::{LowerCaser, SimpleTokenizer, TextAnalyzer};
    index
        .tokenizers()
        .register("default", TextAnalyzer::builder(SimpleTokenizer::default()).filter(LowerCaser).build());
}

/// The tantivy schema for a set of lake properties.
pub fn tantivy_schema(properties: &[Property]) -> TantivySchema {
    let mut b = SchemaBuilder::new();
    let raw_indexing = TextFieldIndexing::default()
        .set_tokenizer("raw")
        .set_index_option(IndexRecordOption::Basic)
        .set_fieldnorms(false);
    let text = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer("default")
            .set_index_option(IndexRecordOption::WithFreqsAndPositions),
    );
    for p in properties {
        let mut num = NumericOptions::default();
        if p.is_indexed() {
            num = num.set_indexed();
        }
        if p.is_fast() {
            num = num.set_fast();
        }
        match p.ty {
            PropertyType::String => {
                let mut raw = TextOptions::default();
                if p.is_indexed() {
                    raw = raw.set_indexing_options(raw_indexing.clone());
                }
                if p.is_fast() {
                    raw = raw.set_fast("raw");
                }
                b.add_text_field(&p.name, raw)
            }
            PropertyType::Text => b.add_text_field(&p.name, text.clone()),
            PropertyType::Integer | PropertyType::Date => b.add_i64_field(&p.name, num),
            PropertyType::Double => b.add_f64_field(&p.name, num),
            PropertyType::Boolean => b.add_bool_field(&p.name, num),
        };
    }
    b.add_text_field(PRESENT, TextOptions::default().set_indexing_options(raw_indexing));
    b.build()
}

/// Whether an index schema has a field for every property (else a new generation is needed),
/// and with the options it has now (a field built with other index options needs one too).
pub fn covers(schema: &TantivySchema, properties: &[Property]) -> bool {
    let wanted = tantivy_schema(properties);
    properties.iter().all(|p| {
        let (Ok(have), Ok(want)) = (schema.get_field(&p.name), wanted.get_field(&p.name)) else { return false };
        schema.get_field_entry(have).field_type() == wanted.get_field_entry(want).field_type()
    })
}

/// Turns one batch of lake rows into documents. Columns missing from the batch or from the
/// index schema are skipped (the property was added after the segment, or after the index).
pub fn documents(schema: &TantivySchema, properties: &[Property], batch: &RecordBatch) -> Vec<TantivyDocument> {
    let rows = batch.num_rows();
    let mut docs: Vec<TantivyDocument> = (0..rows).map(|_| TantivyDocument::new()).collect();
    let present = schema.get_field(PRESENT).ok();
    for p in properties {
        let (Some(col), Ok(field)) = (batch.column_by_name(&p.name), schema.get_field(&p.name)) else {
            continue;
        };
        if p.multi {
            let Some(list) = col.as_list_opt::<i32>() else { continue };
            for (row, doc) in docs.iter_mut().enumerate() {
                if list.is_null(row) {
                    continue;
                }
                let values = list.value(row);
                if add_values(doc, field, p.ty, values.as_ref()) > 0 && !p.is_fast() {
                    mark_present(doc, present, &p.name);
                }
            }
        } else {
            add_column(&mut docs, field, p, col.as_ref(), present);
        }
    }
    docs
}

fn mark_present(doc: &mut TantivyDocument, present: Option<Field>, name: &str) {
    if let Some(f) = present {
        doc.add_text(f, name);
    }
}

/// Adds a single-valued column to the documents, one downcast for the whole column.
fn add_column(docs: &mut [TantivyDocument], field: Field, p: &Property, col: &dyn Array, present: Option<Field>) {
    if !p.is_fast() {
        // No column to answer `p:*` from: record the presence (a NaN is no value).
        let doubles = (p.ty == PropertyType::Double).then(|| col.as_primitive_opt::<Float64Type>()).flatten();
        let nan = |row| doubles.is_some_and(|a| a.value(row).is_nan());
        for (row, doc) in docs.iter_mut().enumerate() {
            if col.is_valid(row) && !nan(row) {
                mark_present(doc, present, &p.name);
            }
        }
    }
    match (p.ty, col.data_type()) {
        (PropertyType::String | PropertyType::Text, DataType::Utf8) => {
            let a = col.as_string::<i32>();
            for (row, doc) in docs.iter_mut().enumerate() {
                if a.is_valid(row) {
                    doc.add_text(field, a.value(row));
                }
            }
        }
        (PropertyType::Integer, DataType::Int64) => {
            let a = col.as_primitive::<Int64Type>();
            for (row, doc) in docs.iter_mut().enumerate() {
                if a.is_valid(row) {
                    doc.add_i64(field, a.value(row));
                }
            }
        }
        (PropertyType::Double, DataType::Float64) => {
            let a = col.as_primitive::<Float64Type>();
            for (row, doc) in docs.iter_mut().enumerate() {
                if a.is_valid(row) && !a.value(row).is_nan() {
                    doc.add_f64(field, super::translate::canonical(a.value(row)));
                }
            }
        }
        (PropertyType::Date, DataType::Timestamp(_, _)) => {
            let a = col.as_primitive::<TimestampMicrosecondType>();
            for (row, doc) in docs.iter_mut().enumerate() {
                if a.is_valid(row) {
                    doc.add_i64(field, a.value(row).div_euclid(1000));
                }
            }
        }
        (PropertyType::Boolean, DataType::Boolean) => {
            let a = col.as_boolean();
            for (row, doc) in docs.iter_mut().enumerate() {
                if a.is_valid(row) {
                    doc.add_bool(field, a.value(row));
                }
            }
        }
        // A column whose Arrow type does not match the schema cannot come from m1's writer.
        _ => {}
    }
}

/// Adds every non-null element of a list's values to one document; returns how many.
fn add_values(doc: &mut TantivyDocument, field: Field, ty: PropertyType, values: &dyn Array) -> usize {
    let mut n = 0;
    for i in 0..values.len() {
        if values.is_null(i) {
            continue;
        }
        match (ty, values.data_type()) {
            (PropertyType::String | PropertyType::Text, DataType::Utf8) => {
                doc.add_text(field, values.as_string::<i32>().value(i))
            }
            (PropertyType::Integer, DataType::Int64) => doc.add_i64(field, values.as_primitive::<Int64Type>().value(i)),
            (PropertyType::Double, DataType::Float64) => {
                let v = values.as_primitive::<Float64Type>().value(i);
                if v.is_nan() {
                    continue;
                }
                doc.add_f64(field, super::translate::canonical(v))
            }
            (PropertyType::Date, DataType::Timestamp(_, _)) => {
                doc.add_i64(field, values.as_primitive::<TimestampMicrosecondType>().value(i).div_euclid(1000))
            }
            (PropertyType::Boolean, DataType::Boolean) => doc.add_bool(field, values.as_boolean().value(i)),
            _ => continue,
        }
        n += 1;
    }
    n
}
