//! Exact text forms of SQL values. The sink sends every value as an element
//! of a `text[]` parameter and casts it in SQL to the catalogue's type, so this text must be exact:
//! decimals as written, timestamps in RFC 3339 UTC, arrays as escaped array literals, JSON as JSON.
//! Identifiers are quoted by `sink::name`, not here.

use std::collections::HashMap;

use crate::mapping::{LegacyRef, SqlValue};

/// The text Postgres parses back into exactly this value; `None` is SQL NULL. `Ref` values take
/// the UUID resolved for them (a missing entry is a programming error reported as `Err`).
pub fn pg_text(
    value: &SqlValue,
    ids: &HashMap<LegacyRef, uuid::Uuid>,
) -> Result<Option<String>, LegacyRef> {
    Ok(Some(match value {
        SqlValue::Null => return Ok(None),
        SqlValue::Text(s) => s.clone(),
        SqlValue::Bool(b) => b.to_string(),
        SqlValue::Int(i) => i.to_string(),
        SqlValue::Numeric(n) => n.clone(),
        SqlValue::Timestamptz(t) => t.to_pg_text(),
        SqlValue::Uuid(u) => u.hyphenated().to_string(),
        SqlValue::Jsonb(v) => v.to_string(),
        SqlValue::TextArray(items) => array_literal(items),
        SqlValue::Ref(r) => match ids.get(r) {
            Some(id) => id.hyphenated().to_string(),
            None => return Err(r.clone()),
        },
    }))
}

/// A one-dimensional array literal with every element double-quoted and `"`/`\` escaped, so
/// commas, braces, spaces and the word NULL survive as data.
pub fn array_literal(items: &[String]) -> String {
    let mut out = String::from("{");
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push('"');
        for c in item.chars() {
            if c == '"' || c == '\\' {
                out.push('\\');
            }
            out.push(c);
        }
        out.push('"');
    }
    out.push('}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn array_literal_escapes_quotes_backslashes_and_keeps_null_as_text() {
        let items = vec![
            "a,b".to_string(),
            "say \"hi\"".to_string(),
            "back\\slash".to_string(),
            "NULL".to_string(),
            "{x}".to_string(),
            String::new(),
        ];
        assert_eq!(
            array_literal(&items),
            r#"{"a,b","say \"hi\"","back\\slash","NULL","{x}",""}"#
        );
        assert_eq!(array_literal(&[]), "{}");
    }

    #[test]
    fn values_have_exact_text_forms() {
        let ids = HashMap::new();
        let t = chrono::DateTime::parse_from_rfc3339("2024-02-29T23:59:59.123Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        let cases = [
            (
                SqlValue::Numeric("12345678901234567890.123456789012345678".into()),
                "12345678901234567890.123456789012345678",
            ),
            (
                SqlValue::Timestamptz(t.into()),
                "2024-02-29 23:59:59.123+00",
            ),
            (SqlValue::Int(-9223372036854775808), "-9223372036854775808"),
            (SqlValue::Bool(false), "false"),
            (
                SqlValue::Jsonb(serde_json::json!({"a": [1, "x\u{0}"]})),
                r#"{"a":[1,"x\u0000"]}"#,
            ),
        ];
        for (value, text) in cases {
            assert_eq!(pg_text(&value, &ids).unwrap().as_deref(), Some(text));
        }
        assert_eq!(pg_text(&SqlValue::Null, &ids).unwrap(), None);
        let r = LegacyRef {
            collection: "users".into(),
            legacy_id: "x".into(),
        };
        assert_eq!(pg_text(&SqlValue::Ref(r.clone()), &ids), Err(r));
    }
}
