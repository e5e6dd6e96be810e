//! SQL names: the one identifier-quoting function (`quote_ident`, built on
//! `postgres_protocol::escape::escape_identifier`), the one validated `table` / `schema.table`
//! name (`QualifiedName`) and the one `InvalidName` error. Every table or column name the crate
//! puts into SQL text goes through here; nothing here runs SQL.

use std::fmt;

use postgres_protocol::escape::escape_identifier;

/// Longest control-table name part: index names are derived from it with a suffix, and the whole
/// must fit Postgres' 63-byte identifier limit.
const CONTROL_PART_MAX: usize = 40;
/// Postgres' identifier limit (NAMEDATALEN - 1).
const IDENTIFIER_MAX: usize = 63;

/// A name that cannot be used as a SQL identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid name {name:?}: {reason}")]
pub struct InvalidName {
    pub name: String,
    pub reason: String,
}

/// `name` double-quoted for SQL, embedded quotes doubled.
pub fn quote_ident(name: &str) -> String {
    escape_identifier(name)
}

/// `[A-Za-z_][A-Za-z0-9_]*`, at most 63 bytes: a Postgres identifier that needs no quoting rules.
pub fn is_identifier(s: &str) -> bool {
    let mut bytes = s.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && s.len() <= IDENTIFIER_MAX
}

/// `[a-z_][a-z0-9_]*`, at most 40 bytes: a control-table name part, written unquoted into the
/// migrations (so it must not depend on case folding) and used as a prefix of index names.
pub fn is_control_identifier(s: &str) -> bool {
    let mut bytes = s.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_lowercase() || b == b'_')
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && s.len() <= CONTROL_PART_MAX
}

/// A validated `table` or `schema.table`; `Display` writes it quoted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QualifiedName {
    pub schema: Option<String>,
    pub table: String,
}

impl QualifiedName {
    /// Parses `table` or `schema.table` whose parts are plain identifiers (`is_identifier`).
    pub fn parse(name: &str) -> Result<QualifiedName, InvalidName> {
        Self::parse_with(
            name,
            is_identifier,
            "a plain SQL identifier ([A-Za-z_][A-Za-z0-9_]*, at most 63 characters)",
        )
    }

    /// Parses a control-table name: parts must be lower-case identifiers
    /// (`is_control_identifier`).
    pub fn parse_control(name: &str) -> Result<QualifiedName, InvalidName> {
        Self::parse_with(
            name,
            is_control_identifier,
            "a lower-case identifier ([a-z_][a-z0-9_]*, at most 40 characters)",
        )
    }

    fn parse_with(
        name: &str,
        part_ok: fn(&str) -> bool,
        rule: &str,
    ) -> Result<QualifiedName, InvalidName> {
        let invalid = |reason: String| InvalidName {
            name: name.to_string(),
            reason,
        };
        let (schema, table) = match name.split_once('.') {
            Some((schema, table)) => (Some(schema), table),
            None => (None, name),
        };
        if table.contains('.') {
            return Err(invalid("expected `table` or `schema.table`".to_string()));
        }
        for part in schema.into_iter().chain(std::iter::once(table)) {
            if !part_ok(part) {
                return Err(invalid(format!("{part:?} must be {rule}")));
            }
        }
        Ok(QualifiedName {
            schema: schema.map(str::to_string),
            table: table.to_string(),
        })
    }
}

impl fmt::Display for QualifiedName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(schema) = &self.schema {
            write!(f, "{}.", quote_ident(schema))?;
        }
        f.write_str(&quote_ident(&self.table))
    }
}

/// `name` (`table` or `schema.table`, plain identifiers) quoted for SQL.
pub fn quote_qualified(name: &str) -> Result<String, InvalidName> {
    QualifiedName::parse(name).map(|q| q.to_string())
}

/// `schema` and `table` as the catalogue names them, quoted for SQL (no validation: any text is
/// quoted safely).
pub fn quote_schema_table(schema: &str, table: &str) -> String {
    format!("{}.{}", quote_ident(schema), quote_ident(table))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_quoted_with_embedded_quotes_doubled() {
        assert_eq!(quote_ident("we\"ird"), "\"we\"\"ird\"");
        assert_eq!(quote_ident("users"), "\"users\"");
        assert_eq!(
            quote_schema_table("public", "users"),
            "\"public\".\"users\""
        );
    }

    #[test]
    fn qualified_names_are_validated_then_quoted_part_by_part() {
        assert_eq!(
            quote_qualified("public.users").as_deref(),
            Ok("\"public\".\"users\"")
        );
        assert_eq!(quote_qualified("Users").as_deref(), Ok("\"Users\""));
        for bad in ["", "a.b.c", "a.", ".b", "we\"ird", "1abc", "a b"] {
            assert!(quote_qualified(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn control_names_must_be_lower_case_and_short() {
        assert!(QualifiedName::parse_control("mongo2pg.checkpoints").is_ok());
        assert!(QualifiedName::parse_control("Mongo2pg.checkpoints").is_err());
        assert!(QualifiedName::parse_control(&"a".repeat(41)).is_err());
        assert!(QualifiedName::parse(&"a".repeat(63)).is_ok());
        assert!(QualifiedName::parse(&"a".repeat(64)).is_err());
    }
}
