//! Coercion of JSON values to property types, and the date rules of SPEC §2.

use chrono::{DateTime, NaiveDate, NaiveDateTime, SecondsFormat, Utc};
use serde_json::Value;

use crate::schema::PropertyType;

/// Epoch numbers below this are seconds, others milliseconds (SPEC §2).
const SECONDS_LIMIT: f64 = 1e11;

/// A value coerced to a property type.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    /// `string` or `text`.
    Str(String),
    /// `integer`.
    Int(i64),
    /// `double`.
    Double(f64),
    /// `date`, as epoch milliseconds.
    DateMs(i64),
    /// `boolean`.
    Bool(bool),
}

/// Why a value does not fit a type (the caller adds where it was).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoerceError;

/// Parses a date string: RFC 3339 / ISO-8601 with or without zone (UTC assumed), a plain date,
/// or an epoch number in seconds or milliseconds.
pub fn parse_date(s: &str) -> Option<i64> {
    let s = s.trim();
    if let Ok(d) = DateTime::parse_from_rfc3339(s) {
        return Some(d.timestamp_millis());
    }
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%d %H:%M:%S%.f%z", "%Y-%m-%d %H:%M:%S%.f%:z"] {
        if let Ok(d) = DateTime::parse_from_str(s, fmt) {
            return Some(d.timestamp_millis());
        }
    }
    let naive = s.strip_suffix('Z').unwrap_or(s);
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M"] {
        if let Ok(d) = NaiveDateTime::parse_from_str(naive, fmt) {
            return Some(d.and_utc().timestamp_millis());
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Some(d.and_hms_opt(0, 0, 0)?.and_utc().timestamp_millis());
    }
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit() || b == b'-' || b == b'.') {
        return s.parse::<f64>().ok().and_then(epoch_to_ms);
    }
    None
}

/// Reads an epoch number as seconds below 10^11, milliseconds otherwise.
pub fn epoch_to_ms(n: f64) -> Option<i64> {
    if !n.is_finite() {
        return None;
    }
    let ms = if n.abs() < SECONDS_LIMIT { n * 1000.0 } else { n };
    // The range chrono can render; anything beyond is not a date anyone means.
    (ms.abs() < 8.2e15).then(|| ms.round() as i64)
}

/// Renders epoch milliseconds as ISO-8601 UTC with milliseconds, e.g. `2021-02-23T19:18:04.399Z`.
pub fn format_date_ms(ms: i64) -> String {
    match DateTime::<Utc>::from_timestamp_millis(ms) {
        Some(d) => d.to_rfc3339_opts(SecondsFormat::Millis, true),
        None => ms.to_string(),
    }
}

/// Coerces a JSON string (or a csv field) to `ty`; `Ok(None)` means null.
pub fn coerce_str(s: &str, ty: PropertyType) -> Result<Option<Scalar>, CoerceError> {
    use PropertyType as T;
    Ok(Some(match ty {
        T::String | T::Text => Scalar::Str(s.to_string()),
        // Empty strings in typed columns are missing values (common in CSV exports).
        _ if s.trim().is_empty() => return Ok(None),
        T::Integer => Scalar::Int(s.trim().parse().map_err(|_| CoerceError)?),
        T::Double => Scalar::Double(s.trim().parse().map_err(|_| CoerceError)?),
        T::Date => Scalar::DateMs(parse_date(s).ok_or(CoerceError)?),
        T::Boolean => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "t" | "yes" | "1" => Scalar::Bool(true),
            "false" | "f" | "no" | "0" => Scalar::Bool(false),
            _ => return Err(CoerceError),
        },
    }))
}

/// Coerces one JSON value (not an array) to `ty`; `Ok(None)` means null.
pub fn coerce(value: &Value, ty: PropertyType) -> Result<Option<Scalar>, CoerceError> {
    use PropertyType as T;
    Ok(Some(match (ty, value) {
        (_, Value::Null) => return Ok(None),
        (_, Value::String(s)) => return coerce_str(s, ty),
        (T::String | T::Text, Value::Number(n)) => Scalar::Str(n.to_string()),
        (T::String | T::Text, Value::Bool(b)) => Scalar::Str(b.to_string()),
        (T::String | T::Text, v) => Scalar::Str(v.to_string()),
        (T::Integer, Value::Number(n)) => match n.as_i64() {
            Some(i) => Scalar::Int(i),
            None => match n.as_f64() {
                Some(f) if f.fract() == 0.0 && f.abs() < 9.2e18 => Scalar::Int(f as i64),
                _ => return Err(CoerceError),
            },
        },
        (T::Double, Value::Number(n)) => Scalar::Double(n.as_f64().ok_or(CoerceError)?),
        (T::Date, Value::Number(n)) => Scalar::DateMs(n.as_f64().and_then(epoch_to_ms).ok_or(CoerceError)?),
        (T::Boolean, Value::Bool(b)) => Scalar::Bool(*b),
        (T::Boolean, Value::Number(n)) => match n.as_i64() {
            Some(0) => Scalar::Bool(false),
            Some(1) => Scalar::Bool(true),
            _ => return Err(CoerceError),
        },
        _ => return Err(CoerceError),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn dates_follow_the_spec_rules() {
        assert_eq!(parse_date("2021-02-23T19:18:04.399Z"), Some(1614107884399));
        assert_eq!(parse_date("2021-02-23T20:18:04.399+01:00"), Some(1614107884399));
        assert_eq!(parse_date("2021-02-23 19:18:04.399"), Some(1614107884399));
        assert_eq!(parse_date("2021-02-23"), Some(1614038400000));
        assert_eq!(parse_date("946702800"), Some(946702800000));
        assert_eq!(parse_date("yesterday"), None);
        assert_eq!(epoch_to_ms(946702800.0), Some(946702800000));
        assert_eq!(epoch_to_ms(1614107884399.0), Some(1614107884399));
        assert_eq!(format_date_ms(1614107884399), "2021-02-23T19:18:04.399Z");
        assert_eq!(format_date_ms(0), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn coercion_accepts_what_users_write_and_refuses_the_rest() {
        use PropertyType as T;
        assert_eq!(coerce(&json!("42"), T::Integer), Ok(Some(Scalar::Int(42))));
        assert_eq!(coerce(&json!(42.0), T::Integer), Ok(Some(Scalar::Int(42))));
        assert_eq!(coerce(&json!(42.5), T::Integer), Err(CoerceError));
        assert_eq!(coerce(&json!("x"), T::Double), Err(CoerceError));
        assert_eq!(coerce(&json!(""), T::Double), Ok(None));
        assert_eq!(coerce(&json!(7), T::String), Ok(Some(Scalar::Str("7".into()))));
        assert_eq!(coerce(&json!("TRUE"), T::Boolean), Ok(Some(Scalar::Bool(true))));
        assert_eq!(coerce(&json!(946702800), T::Date), Ok(Some(Scalar::DateMs(946702800000))));
        assert_eq!(coerce(&json!(null), T::Date), Ok(None));
        assert_eq!(coerce(&json!({"a": 1}), T::Integer), Err(CoerceError));
    }
}
