//! BSON value → SQL value conversions, one per column type, and dot-path lookup.
//!
//! Nothing is coerced silently: a value either has a type the column accepts and converts exactly,
//! or the conversion fails with a `MappingError` whose reason names the field path, the BSON type
//! found and the rule broken. Numerics never pass through a float.

use bson::spec::BinarySubtype;
use bson::{Bson, Document};

use super::decimal::{check_precision_scale, parse_decimal, DecimalError};
use super::rules::{Conversion, FieldPath, IntWidth};
use super::{GapKind, MappingError, SqlValue};

pub use super::timestamp::{PgTimestamp, PG_TIMESTAMP_MAX_MILLIS, PG_TIMESTAMP_MIN_MILLIS};

pub(crate) fn fail(kind: GapKind, reason: String) -> MappingError {
    MappingError { kind, reason }
}

/// MongoDB's name for a BSON value's type (as `$type` spells it), for error reasons.
pub fn bson_type_name(value: &Bson) -> &'static str {
    match value {
        Bson::Double(_) => "double",
        Bson::String(_) => "string",
        Bson::Array(_) => "array",
        Bson::Document(_) => "object",
        Bson::Boolean(_) => "bool",
        Bson::Null => "null",
        Bson::RegularExpression(_) => "regex",
        Bson::JavaScriptCode(_) | Bson::JavaScriptCodeWithScope(_) => "javascript",
        Bson::Int32(_) => "int",
        Bson::Int64(_) => "long",
        Bson::Timestamp(_) => "timestamp",
        Bson::Binary(_) => "binData",
        Bson::ObjectId(_) => "objectId",
        Bson::DateTime(_) => "date",
        Bson::Symbol(_) => "symbol",
        Bson::Decimal128(_) => "decimal",
        Bson::Undefined => "undefined",
        Bson::MaxKey => "maxKey",
        Bson::MinKey => "minKey",
        Bson::DbPointer(_) => "dbPointer",
    }
}

/// Reads `path` from `doc`. Missing fields, explicit nulls and `undefined` all read as `None`; a
/// non-document in the middle of the path is a `WrongType` error. `at` is the path's label in
/// reasons (e.g. `passkeys[2].credentialId`).
pub fn lookup<'a>(
    doc: &'a Document,
    path: &FieldPath,
    at: &str,
) -> Result<Option<&'a Bson>, MappingError> {
    let mut current = doc;
    let last = path.segments.len().saturating_sub(1);
    for (i, segment) in path.segments.iter().enumerate() {
        let value = match current.get(segment) {
            None | Some(Bson::Null) | Some(Bson::Undefined) => return Ok(None),
            Some(v) => v,
        };
        if i == last {
            return Ok(Some(value));
        }
        match value {
            Bson::Document(inner) => current = inner,
            other => {
                let prefix = path.segments[..=i].join(".");
                return Err(fail(
                    GapKind::WrongType,
                    format!(
                        "{at}: {prefix} is a {} but the path needs a sub-document",
                        bson_type_name(other)
                    ),
                ));
            }
        }
    }
    Ok(None)
}

fn wrong_type(at: &str, value: &Bson, expected: &str) -> MappingError {
    fail(
        GapKind::WrongType,
        format!(
            "{at}: expected {expected}, found BSON {}",
            bson_type_name(value)
        ),
    )
}

/// Rejects text Postgres cannot store (NUL characters).
pub fn check_text(at: &str, s: &str) -> Result<(), MappingError> {
    match s.find('\0') {
        Some(pos) => Err(fail(
            GapKind::NulInText,
            format!("{at}: text contains a NUL character at byte {pos}"),
        )),
        None => Ok(()),
    }
}

/// Converts one present (non-null) value for a column.
pub fn convert(value: &Bson, conversion: &Conversion, at: &str) -> Result<SqlValue, MappingError> {
    match conversion {
        Conversion::Text {
            enum_labels,
            enum_type,
        } => {
            let Bson::String(s) = value else {
                return Err(wrong_type(at, value, "a string"));
            };
            check_text(at, s)?;
            if let Some(labels) = enum_labels {
                if !labels.iter().any(|l| l == s) {
                    let type_name = enum_type.as_deref().unwrap_or("enum");
                    return Err(fail(
                        GapKind::WrongType,
                        format!(
                            "{at}: {s:?} is not a label of {type_name} (allowed: {})",
                            labels.join(", ")
                        ),
                    ));
                }
            }
            Ok(SqlValue::Text(s.clone()))
        }
        Conversion::Int(width) => convert_int(value, *width, at),
        Conversion::Bool => match value {
            Bson::Boolean(b) => Ok(SqlValue::Bool(*b)),
            other => Err(wrong_type(at, other, "a bool")),
        },
        Conversion::Numeric { precision_scale } => convert_numeric(value, *precision_scale, at),
        Conversion::Timestamptz => match value {
            Bson::DateTime(dt) => convert_millis(dt.timestamp_millis(), at),
            other => Err(wrong_type(at, other, "a BSON date")),
        },
        Conversion::Uuid => convert_uuid(value, at),
        Conversion::Jsonb => {
            let json = value.clone().into_relaxed_extjson();
            check_json_text(&json, at)?;
            Ok(SqlValue::Jsonb(json))
        }
        Conversion::TextArray => {
            let Bson::Array(items) = value else {
                return Err(wrong_type(at, value, "an array of strings"));
            };
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let item_at = format!("{at}[{i}]");
                match item {
                    Bson::String(s) => {
                        check_text(&item_at, s)?;
                        out.push(s.clone());
                    }
                    other => return Err(wrong_type(&item_at, other, "a string")),
                }
            }
            Ok(SqlValue::TextArray(out))
        }
    }
}

fn convert_int(value: &Bson, width: IntWidth, at: &str) -> Result<SqlValue, MappingError> {
    let (min, max) = width.range();
    let n: i64 = match value {
        Bson::Int32(n) => *n as i64,
        Bson::Int64(n) => *n,
        Bson::Double(d) => {
            // -2^63 is exactly representable as a double; anything below it or at/above +2^63
            // does not fit i64.
            let lowest = i64::MIN as f64;
            if !d.is_finite() || d.fract() != 0.0 || *d < lowest || *d >= -lowest {
                return Err(fail(
                    GapKind::InvalidNumber,
                    format!(
                        "{at}: double {d} is not an integral value a {} can hold",
                        width.sql_name()
                    ),
                ));
            }
            *d as i64
        }
        other => return Err(wrong_type(at, other, "an int, long or integral double")),
    };
    if n < min || n > max {
        return Err(fail(
            GapKind::InvalidNumber,
            format!(
                "{at}: {n} is outside the {} range {min}..={max}",
                width.sql_name()
            ),
        ));
    }
    Ok(SqlValue::Int(n))
}

/// Exact decimal text for a numeric column, checked against `(precision, scale)`.
pub fn convert_numeric(
    value: &Bson,
    precision_scale: Option<(u32, u32)>,
    at: &str,
) -> Result<SqlValue, MappingError> {
    let text = match value {
        Bson::Decimal128(d) => d.to_string(),
        Bson::String(s) => s.clone(),
        Bson::Int32(n) => n.to_string(),
        Bson::Int64(n) => n.to_string(),
        Bson::Double(d) => {
            if !d.is_finite() {
                return Err(fail(
                    GapKind::InvalidNumber,
                    format!("{at}: double {d} is not a finite number"),
                ));
            }
            // Rust's Display for f64 is the shortest string that round-trips, never exponent form.
            format!("{d}")
        }
        other => {
            return Err(wrong_type(
                at,
                other,
                "a decimal, int, long, double or decimal string",
            ))
        }
    };
    let kind_name = bson_type_name(value);
    let parsed = parse_decimal(&text).map_err(|e| {
        let what = match e {
            DecimalError::NotFinite(_) => format!("{kind_name} {text} is not a finite number"),
            DecimalError::Syntax(_) => format!("{kind_name} {text:?} is not a decimal number"),
            DecimalError::TooLarge(_) => {
                format!("{kind_name} {text} has more digits than numeric can hold")
            }
        };
        fail(GapKind::InvalidNumber, format!("{at}: {what}"))
    })?;
    if let Some((p, s)) = precision_scale {
        check_precision_scale(&parsed, p, s)
            .map_err(|why| fail(GapKind::InvalidNumber, format!("{at}: {why}")))?;
    }
    Ok(SqlValue::Numeric(parsed.to_text()))
}

/// A BSON date (milliseconds since the epoch) within Postgres' `timestamptz` range.
pub fn convert_millis(millis: i64, at: &str) -> Result<SqlValue, MappingError> {
    PgTimestamp::from_millis(millis)
        .map(SqlValue::Timestamptz)
        .ok_or_else(|| {
            fail(
                GapKind::InvalidDate,
                format!("{at}: date {millis} ms since the epoch is outside the timestamptz range"),
            )
        })
}

/// The text Postgres parses back into exactly this instant (see [`PgTimestamp::to_pg_text`]).
pub fn timestamptz_text(t: &PgTimestamp) -> String {
    t.to_pg_text()
}

fn convert_uuid(value: &Bson, at: &str) -> Result<SqlValue, MappingError> {
    match value {
        Bson::Binary(bin) if bin.subtype == BinarySubtype::Uuid => {
            uuid::Uuid::from_slice(&bin.bytes)
                .map(SqlValue::Uuid)
                .map_err(|_| {
                    fail(
                        GapKind::WrongType,
                        format!("{at}: UUID binary has {} bytes, not 16", bin.bytes.len()),
                    )
                })
        }
        Bson::String(s) if s.len() == 36 => uuid::Uuid::try_parse(s)
            .map(SqlValue::Uuid)
            .map_err(|_| fail(GapKind::WrongType, format!("{at}: {s:?} is not a UUID"))),
        Bson::String(s) => Err(fail(
            GapKind::WrongType,
            format!("{at}: {s:?} is not a hyphenated UUID"),
        )),
        other => Err(wrong_type(
            at,
            other,
            "a UUID (binary subtype 4 or UUID string)",
        )),
    }
}

/// Postgres `jsonb` rejects `\u0000` in strings and keys.
fn check_json_text(json: &serde_json::Value, at: &str) -> Result<(), MappingError> {
    match json {
        serde_json::Value::String(s) => check_text(at, s),
        serde_json::Value::Array(items) => items
            .iter()
            .enumerate()
            .try_for_each(|(i, item)| check_json_text(item, &format!("{at}[{i}]"))),
        serde_json::Value::Object(map) => map.iter().try_for_each(|(k, v)| {
            let inner = format!("{at}.{k}");
            check_text(&inner, k)?;
            check_json_text(v, &inner)
        }),
        _ => Ok(()),
    }
}
