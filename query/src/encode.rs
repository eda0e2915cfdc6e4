//! Result encoders: Arrow batches to the JSON records the API returns.
//!
//! Records are flat maps of dotted names; nulls are left out, dates are ISO-8601 UTC with
//! milliseconds, lists become arrays, and non-finite doubles (which JSON cannot carry) are null.

use std::io::Write;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{
    DataType, Float64Type, Int64Type, TimeUnit, TimestampMicrosecondType, TimestampMillisecondType,
};
use m1_engine::values::format_date_ms;
use serde_json::{Map, Value};

use crate::error::Result;

/// The JSON value at `row` of `col`, or `None` for null.
pub fn value_at(col: &dyn Array, row: usize) -> Option<Value> {
    if col.is_null(row) {
        return None;
    }
    Some(match col.data_type() {
        DataType::Utf8 => Value::String(col.as_string::<i32>().value(row).to_string()),
        DataType::LargeUtf8 => Value::String(col.as_string::<i64>().value(row).to_string()),
        DataType::Int64 => Value::from(col.as_primitive::<Int64Type>().value(row)),
        DataType::Float64 => {
            let f = col.as_primitive::<Float64Type>().value(row);
            serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)
        }
        DataType::Boolean => Value::Bool(col.as_boolean().value(row)),
        DataType::Timestamp(TimeUnit::Microsecond, _) => {
            let us = col.as_primitive::<TimestampMicrosecondType>().value(row);
            Value::String(format_date_ms(us.div_euclid(1000)))
        }
        DataType::Timestamp(TimeUnit::Millisecond, _) => {
            Value::String(format_date_ms(col.as_primitive::<TimestampMillisecondType>().value(row)))
        }
        DataType::List(_) => {
            let list = col.as_list::<i32>().value(row);
            Value::Array((0..list.len()).map(|i| value_at(list.as_ref(), i).unwrap_or(Value::Null)).collect())
        }
        other => Value::String(format!("<{other}>")),
    })
}

/// One record of a batch as a JSON map (nulls left out).
pub fn record(batch: &RecordBatch, row: usize) -> Map<String, Value> {
    let schema = batch.schema();
    let mut out = Map::with_capacity(batch.num_columns());
    for (field, col) in schema.fields().iter().zip(batch.columns()) {
        if let Some(v) = value_at(col.as_ref(), row) {
            out.insert(field.name().clone(), v);
        }
    }
    out
}

/// Every record of a batch as JSON maps.
pub fn records(batch: &RecordBatch) -> Vec<Map<String, Value>> {
    (0..batch.num_rows()).map(|r| record(batch, r)).collect()
}

/// Writes batches as one JSON array of records, one record per line, streaming: memory stays
/// at one batch.
pub fn write_json_array<W: Write, I>(out: &mut W, batches: I) -> Result<u64>
where
    I: IntoIterator<Item = Result<RecordBatch>>,
{
    let mut n = 0u64;
    out.write_all(b"[")?;
    for batch in batches {
        let batch = batch?;
        for row in 0..batch.num_rows() {
            out.write_all(if n > 0 { b",\n" } else { b"\n" })?;
            serde_json::to_writer(&mut *out, &record(&batch, row)).map_err(std::io::Error::from)?;
            n += 1;
        }
    }
    out.write_all(if n > 0 { b"\n]" } else { b"]" })?;
    Ok(n)
}
