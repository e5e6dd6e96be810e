//! The pure half of verify: canonical text forms of column values on both sides, exact decimal
//! sums, order-independent column checksums and row-by-row diffs. No I/O.
//!
//! Both sides are reduced to the same canonical text before anything is compared: decimals without
//! insignificant zeros, timestamps as microseconds since the epoch, JSON re-serialized with sorted
//! keys, references as the *legacy* id they point to (Postgres UUIDs are translated back through
//! id_map by the query), so a comparison never depends on formatting or on which UUID was allocated.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::mapping::rules::{CollectionRules, Conversion};
use crate::mapping::SqlValue;

/// How a column's Postgres value is read and canonicalized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ColumnKind {
    /// text, enums, uuid, boolean: compared as Postgres prints them.
    Text,
    /// integer kinds and numeric: compared as canonical decimals.
    Decimal,
    /// timestamptz: microseconds since the epoch.
    Time,
    /// jsonb and text[]: compared as canonical JSON.
    Json,
    /// A UUID column pointing at another collection's row: compared by the legacy id it maps to.
    Ref { collection: String },
}

/// Every compared column of a collection's table with its kind, in rule order. The version
/// column is left out on purpose: a snapshot and a stream legitimately store different versions.
pub fn compared_columns(rules: &CollectionRules) -> Vec<(String, ColumnKind)> {
    let mut out = Vec::new();
    for s in &rules.row.scalars {
        let kind = match &s.conversion {
            Conversion::Text { .. } | Conversion::Bool | Conversion::Uuid => ColumnKind::Text,
            Conversion::Int(_) | Conversion::Numeric { .. } => ColumnKind::Decimal,
            Conversion::Timestamptz => ColumnKind::Time,
            Conversion::Jsonb | Conversion::TextArray => ColumnKind::Json,
        };
        out.push((s.column.clone(), kind));
    }
    for r in &rules.row.references {
        out.push((
            r.column.clone(),
            ColumnKind::Ref {
                collection: r.collection.clone(),
            },
        ));
    }
    for m in &rules.row.mixed {
        out.push((m.kind_column.clone(), ColumnKind::Text));
        out.push((
            m.fk_column.clone(),
            ColumnKind::Ref {
                collection: m.collection.clone(),
            },
        ));
        out.push((m.ref_column.clone(), ColumnKind::Text));
    }
    out.retain(|(c, _)| Some(c) != rules.version_column.as_ref());
    out
}

/// Columns holding money (exact `numeric`), whose sums verify compares.
pub fn money_columns(rules: &CollectionRules) -> Vec<String> {
    rules
        .row
        .scalars
        .iter()
        .filter(|s| matches!(s.conversion, Conversion::Numeric { .. }))
        .map(|s| s.column.clone())
        .collect()
}

/// Canonical decimal text: no leading zeros, no trailing fraction zeros, no negative zero, no
/// exponent. None when `s` is not a finite decimal.
pub fn canonical_decimal(s: &str) -> Option<String> {
    crate::mapping::decimal::parse_decimal(s.trim())
        .ok()
        .map(|d| {
            let text = d.to_text();
            if text == "-0" {
                "0".to_string()
            } else {
                text
            }
        })
}

/// JSON with object keys sorted at every level (serde_json may keep insertion order).
fn sorted_json(value: &serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::Object(map) => {
            let sorted: BTreeMap<&String, serde_json::Value> =
                map.iter().map(|(k, v)| (k, sorted_json(v))).collect();
            serde_json::Value::Object(sorted.into_iter().map(|(k, v)| (k.clone(), v)).collect())
        }
        serde_json::Value::Array(items) => {
            serde_json::Value::Array(items.iter().map(sorted_json).collect())
        }
        other => other.clone(),
    }
}

fn canonical_json_text(s: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(s) {
        Ok(v) => sorted_json(&v).to_string(),
        Err(_) => s.to_string(),
    }
}

/// The canonical form of a value the mapping produced (the Mongo side).
pub fn canon_expected(value: &SqlValue) -> Option<String> {
    match value {
        SqlValue::Null => None,
        SqlValue::Text(s) => Some(s.clone()),
        SqlValue::Bool(b) => Some(b.to_string()),
        SqlValue::Int(i) => Some(i.to_string()),
        SqlValue::Numeric(s) => Some(canonical_decimal(s).unwrap_or_else(|| s.clone())),
        SqlValue::Timestamptz(t) => Some(t.micros_text()),
        SqlValue::Uuid(u) => Some(u.to_string()),
        SqlValue::Jsonb(v) => Some(sorted_json(v).to_string()),
        SqlValue::TextArray(v) => Some(serde_json::Value::from(v.clone()).to_string()),
        SqlValue::Ref(r) => Some(r.legacy_id.clone()),
    }
}

/// The canonical form of a value read from Postgres with the expression `verify` uses for `kind`.
pub fn canon_actual(kind: &ColumnKind, text: Option<&str>) -> Option<String> {
    let t = text?;
    Some(match kind {
        ColumnKind::Text | ColumnKind::Time | ColumnKind::Ref { .. } => t.to_string(),
        ColumnKind::Decimal => canonical_decimal(t).unwrap_or_else(|| t.to_string()),
        ColumnKind::Json => canonical_json_text(t),
    })
}

/// An exact running sum of decimals (fixed point on i128 with the largest scale seen so far).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DecimalSum {
    units: i128,
    scale: u32,
}

/// A decimal the sum cannot take (not a decimal, or the sum left i128's range).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot sum {value:?} exactly")]
pub struct SumError {
    pub value: String,
}

fn pow10(n: u32) -> Option<i128> {
    10i128.checked_pow(n)
}

impl DecimalSum {
    /// Adds one canonical or plain decimal string.
    pub fn add(&mut self, value: &str) -> Result<(), SumError> {
        let err = || SumError {
            value: value.to_string(),
        };
        let canon = canonical_decimal(value).ok_or_else(err)?;
        let (negative, digits) = match canon.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, canon.as_str()),
        };
        let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
        let scale = u32::try_from(frac.len()).map_err(|_| err())?;
        let mut units: i128 = format!("{int}{frac}").parse().map_err(|_| err())?;
        if negative {
            units = -units;
        }
        if scale > self.scale {
            let factor = pow10(scale - self.scale).ok_or_else(err)?;
            self.units = self.units.checked_mul(factor).ok_or_else(err)?;
            self.scale = scale;
        } else if scale < self.scale {
            units = units
                .checked_mul(pow10(self.scale - scale).ok_or_else(err)?)
                .ok_or_else(err)?;
        }
        self.units = self.units.checked_add(units).ok_or_else(err)?;
        Ok(())
    }

    /// The sum as canonical decimal text.
    pub fn to_text(&self) -> String {
        let negative = self.units < 0;
        let digits = self.units.unsigned_abs().to_string();
        let scale = self.scale as usize;
        let padded = if digits.len() <= scale {
            format!("{}{}", "0".repeat(scale + 1 - digits.len()), digits)
        } else {
            digits
        };
        let (int, frac) = padded.split_at(padded.len() - scale);
        let raw = if frac.is_empty() {
            int.to_string()
        } else {
            format!("{int}.{frac}")
        };
        let canon = canonical_decimal(&raw).unwrap_or(raw);
        if negative && canon != "0" {
            format!("-{canon}")
        } else {
            canon
        }
    }
}

/// An order-independent checksum of one column over all rows: how many rows are non-NULL and a
/// wrapping sum of a 64-bit FNV-1a hash of `legacy id, value` per row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct ColumnChecksum {
    pub non_null: u64,
    pub digest: u64,
}

fn fnv1a(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            h ^= 0xff;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        for b in p.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

impl ColumnChecksum {
    pub fn add(&mut self, legacy_id: &str, value: Option<&str>) {
        if let Some(v) = value {
            self.non_null += 1;
            self.digest = self.digest.wrapping_add(fnv1a(&[legacy_id, v]));
        }
    }
}

/// One row in canonical form: column → canonical value (None = NULL).
pub type CanonRow = BTreeMap<String, Option<String>>;

/// One differing column of one row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ColumnDiff {
    pub column: String,
    pub mongo: Option<String>,
    pub postgres: Option<String>,
}

/// Columns of `expected` whose canonical value differs in `actual` (columns missing from `actual`
/// count as NULL).
pub fn diff_row(expected: &CanonRow, actual: &CanonRow) -> Vec<ColumnDiff> {
    expected
        .iter()
        .filter_map(|(column, mongo)| {
            let postgres = actual.get(column).cloned().flatten();
            (mongo != &postgres).then(|| ColumnDiff {
                column: column.clone(),
                mongo: mongo.clone(),
                postgres,
            })
        })
        .collect()
}

/// Per-column checksums of a set of rows keyed by legacy id.
pub fn checksums(
    rows: &BTreeMap<String, CanonRow>,
    columns: &[String],
) -> BTreeMap<String, ColumnChecksum> {
    let mut out: BTreeMap<String, ColumnChecksum> = columns
        .iter()
        .map(|c| (c.clone(), ColumnChecksum::default()))
        .collect();
    for (id, row) in rows {
        for c in columns {
            if let Some(sum) = out.get_mut(c) {
                sum.add(id, row.get(c).and_then(|v| v.as_deref()));
            }
        }
    }
    out
}

/// Exact sums of `money` grouped by the canonical value of `group_by` (None = one group).
pub fn money_sums(
    rows: &BTreeMap<String, CanonRow>,
    money: &str,
    group_by: Option<&str>,
) -> Result<BTreeMap<Option<String>, String>, SumError> {
    let mut sums: BTreeMap<Option<String>, DecimalSum> = BTreeMap::new();
    for row in rows.values() {
        let group = group_by.and_then(|g| row.get(g).cloned().flatten());
        if let Some(Some(v)) = row.get(money) {
            sums.entry(group).or_default().add(v)?;
        }
    }
    Ok(sums.into_iter().map(|(g, s)| (g, s.to_text())).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::LegacyRef;

    #[test]
    fn decimals_compare_without_insignificant_zeros() {
        assert_eq!(canonical_decimal("10.500000").as_deref(), Some("10.5"));
        assert_eq!(canonical_decimal("007").as_deref(), Some("7"));
        assert_eq!(canonical_decimal("-0.000").as_deref(), Some("0"));
        assert_eq!(canonical_decimal("1E+2").as_deref(), Some("100"));
        assert_eq!(canonical_decimal("abc"), None);
    }

    #[test]
    fn expected_values_take_the_canonical_form_of_postgres_output() {
        assert_eq!(
            canon_expected(&SqlValue::Numeric("12.3400".into())),
            canon_actual(&ColumnKind::Decimal, Some("12.34"))
        );
        assert_eq!(
            canon_expected(&SqlValue::Int(42)),
            canon_actual(&ColumnKind::Decimal, Some("42"))
        );
        assert_eq!(
            canon_expected(&SqlValue::Bool(true)),
            canon_actual(&ColumnKind::Text, Some("true"))
        );
        let t = chrono::DateTime::from_timestamp(1_700_000_000, 123_000_000).expect("time");
        assert_eq!(
            canon_expected(&SqlValue::Timestamptz(t.into())).as_deref(),
            Some("1700000000123000")
        );
        let j = serde_json::json!({"b": 1, "a": [true, "x"]});
        assert_eq!(
            canon_expected(&SqlValue::Jsonb(j)),
            canon_actual(&ColumnKind::Json, Some(r#"{"a": [true, "x"], "b": 1}"#))
        );
        assert_eq!(
            canon_expected(&SqlValue::TextArray(vec!["a".into(), "b".into()])),
            canon_actual(&ColumnKind::Json, Some(r#"["a", "b"]"#))
        );
        let r = SqlValue::Ref(LegacyRef {
            collection: "users".into(),
            legacy_id: "65aa".into(),
        });
        assert_eq!(canon_expected(&r).as_deref(), Some("65aa"));
        assert_eq!(canon_expected(&SqlValue::Null), None);
        assert_eq!(canon_actual(&ColumnKind::Text, None), None);
    }

    #[test]
    fn decimal_sum_is_exact_across_scales_and_signs() {
        let mut s = DecimalSum::default();
        for v in [
            "0.1",
            "0.2",
            "100",
            "-0.000000000000000001",
            "12345678901234567890.123456789012345678",
        ] {
            s.add(v).expect("decimal");
        }
        assert_eq!(s.to_text(), "12345678901234567990.423456789012345677");
        let mut z = DecimalSum::default();
        z.add("1.5").expect("decimal");
        z.add("-1.50").expect("decimal");
        assert_eq!(z.to_text(), "0");
        let mut n = DecimalSum::default();
        n.add("-0.25").expect("decimal");
        assert_eq!(n.to_text(), "-0.25");
        assert!(DecimalSum::default().add("NaN").is_err());
    }

    fn row(pairs: &[(&str, Option<&str>)]) -> CanonRow {
        pairs
            .iter()
            .map(|(c, v)| (c.to_string(), v.map(str::to_string)))
            .collect()
    }

    #[test]
    fn diff_row_names_exactly_the_differing_columns() {
        let e = row(&[
            ("amount", Some("10")),
            ("status", Some("paid")),
            ("note", None),
        ]);
        let a = row(&[
            ("amount", Some("11")),
            ("status", Some("paid")),
            ("note", None),
        ]);
        assert_eq!(
            diff_row(&e, &a),
            vec![ColumnDiff {
                column: "amount".into(),
                mongo: Some("10".into()),
                postgres: Some("11".into())
            }]
        );
        assert!(diff_row(&e, &e).is_empty());
    }

    #[test]
    fn checksums_ignore_row_order_but_not_values_or_owners() {
        let cols = vec!["v".to_string()];
        let a: BTreeMap<_, _> = [
            ("1".to_string(), row(&[("v", Some("x"))])),
            ("2".to_string(), row(&[("v", Some("y"))])),
        ]
        .into();
        let swapped: BTreeMap<_, _> = [
            ("1".to_string(), row(&[("v", Some("y"))])),
            ("2".to_string(), row(&[("v", Some("x"))])),
        ]
        .into();
        assert_eq!(checksums(&a, &cols), checksums(&a.clone(), &cols));
        assert_ne!(checksums(&a, &cols), checksums(&swapped, &cols));
        assert_eq!(checksums(&a, &cols)["v"].non_null, 2);
    }

    #[test]
    fn money_sums_group_by_the_configured_column() {
        let rows: BTreeMap<_, _> = [
            (
                "1".to_string(),
                row(&[("amount", Some("10.50")), ("currency", Some("USDT"))]),
            ),
            (
                "2".to_string(),
                row(&[("amount", Some("0.5")), ("currency", Some("USDT"))]),
            ),
            (
                "3".to_string(),
                row(&[("amount", Some("7")), ("currency", Some("TRY"))]),
            ),
            (
                "4".to_string(),
                row(&[("amount", None), ("currency", Some("TRY"))]),
            ),
        ]
        .into();
        let sums = money_sums(&rows, "amount", Some("currency")).expect("sums");
        assert_eq!(
            sums.get(&Some("USDT".to_string())).map(String::as_str),
            Some("11")
        );
        assert_eq!(
            sums.get(&Some("TRY".to_string())).map(String::as_str),
            Some("7")
        );
        assert_eq!(sums.len(), 2);
        let total = money_sums(&rows, "amount", None).expect("sums");
        assert_eq!(total.get(&None).map(String::as_str), Some("18"));
    }
}
