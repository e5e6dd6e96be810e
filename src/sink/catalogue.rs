//! What the live Postgres catalogue says about the target tables: columns, their types, nullability
//! and numeric precision/scale. Config validation checks the mapping against it; the sink uses the
//! exact type names to cast text parameters in SQL. Loading it (`load`) is the only I/O here.

use std::collections::BTreeMap;

use crate::sink::error::SinkError;

/// One column of a target table, as the catalogue describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnInfo {
    pub name: String,
    /// `format_type(atttypid, atttypmod)`, e.g. `numeric(38,18)`, `text[]`, `payment_status`,
    /// `timestamp with time zone`. Used verbatim as the SQL cast target.
    pub sql_type: String,
    /// Base type category: `text`, `int2`, `int4`, `int8`, `bool`, `numeric`, `timestamptz`,
    /// `uuid`, `jsonb`, `json`, `enum`, or the udt name for anything else; arrays get a `[]` suffix.
    pub kind: String,
    pub nullable: bool,
    pub has_default: bool,
    /// For `numeric(p,s)`: precision and scale; None for unconstrained numeric.
    pub numeric_precision_scale: Option<(u32, u32)>,
    /// Allowed labels when `kind == "enum"`.
    pub enum_labels: Vec<String>,
}

/// One table: its columns by name.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TableInfo {
    pub schema: String,
    pub name: String,
    pub columns: BTreeMap<String, ColumnInfo>,
}

/// The tables the mapping refers to, keyed by table name as written in the mapping (optionally
/// `schema.table`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Catalogue {
    pub tables: BTreeMap<String, TableInfo>,
}

/// Columns of one relation with everything `ColumnInfo` needs; domains are resolved to their
/// base type for `kind`, arrays to their element type (`kind` gets a `[]` suffix).
const COLUMNS_SQL: &str = r#"
SELECT a.attname::text,
       format_type(a.atttypid, a.atttypmod) AS sql_type,
       base.typname::text AS base_name,
       base.typtype::text AS base_typtype,
       elem.typname::text AS elem_name,
       elem.typtype::text AS elem_typtype,
       (NOT a.attnotnull AND NOT COALESCE(t.typnotnull, false)) AS nullable,
       (a.atthasdef OR a.attidentity <> '' OR a.attgenerated <> '' OR t.typdefault IS NOT NULL) AS has_default,
       CASE WHEN t.typtype = 'd' THEN t.typtypmod ELSE a.atttypmod END AS typmod,
       COALESCE(ARRAY(SELECT e.enumlabel::text FROM pg_enum e
                      WHERE e.enumtypid = COALESCE(elem.oid, base.oid)
                      ORDER BY e.enumsortorder), ARRAY[]::text[]) AS enum_labels
FROM pg_attribute a
JOIN pg_type t ON t.oid = a.atttypid
JOIN pg_type base ON base.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END
LEFT JOIN pg_type elem ON elem.oid = base.typelem AND base.typcategory = 'A'
WHERE a.attrelid = $1::oid AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum
"#;

/// Reads the live catalogue for `tables` (names as written in the mapping: `table` resolved via
/// the search path, or `schema.table`). A missing table is an error naming it.
pub async fn load(
    client: &tokio_postgres::Client,
    tables: &[String],
) -> Result<Catalogue, SinkError> {
    let mut catalogue = Catalogue::default();
    for table in tables {
        if catalogue.tables.contains_key(table) {
            continue;
        }
        let info = load_table(client, table).await?;
        catalogue.tables.insert(table.clone(), info);
    }
    Ok(catalogue)
}

async fn load_table(client: &tokio_postgres::Client, table: &str) -> Result<TableInfo, SinkError> {
    let ctx = || format!("reading the catalogue for {table}");
    let rel = client
        .query_opt(
            "SELECT c.oid, n.nspname::text, c.relname::text
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE c.oid = to_regclass($1) AND c.relkind IN ('r', 'p')",
            &[&table],
        )
        .await
        .map_err(|e| SinkError::pg(ctx(), e))?;
    let Some(rel) = rel else {
        return Err(SinkError::TableNotFound {
            table: table.to_string(),
        });
    };
    let oid: u32 = rel.get(0);
    let mut info = TableInfo {
        schema: rel.get(1),
        name: rel.get(2),
        columns: BTreeMap::new(),
    };
    let rows = client
        .query(COLUMNS_SQL, &[&oid])
        .await
        .map_err(|e| SinkError::pg(ctx(), e))?;
    for row in rows {
        let name: String = row.get(0);
        let base_name: String = row.get(2);
        let base_typtype: String = row.get(3);
        let elem_name: Option<String> = row.get(4);
        let elem_typtype: Option<String> = row.get(5);
        let typmod: i32 = row.get(8);
        let (scalar_name, scalar_typtype, is_array) = match (elem_name, elem_typtype) {
            (Some(n), Some(t)) => (n, t, true),
            _ => (base_name, base_typtype, false),
        };
        let mut kind = if scalar_typtype == "e" {
            "enum".to_string()
        } else {
            scalar_name.clone()
        };
        let numeric_precision_scale = if scalar_name == "numeric" {
            numeric_typmod(typmod).map_err(|reason| SinkError::UnsupportedColumn {
                table: table.to_string(),
                column: name.clone(),
                reason,
            })?
        } else {
            None
        };
        if is_array {
            kind.push_str("[]");
        }
        info.columns.insert(
            name.clone(),
            ColumnInfo {
                name,
                sql_type: row.get(1),
                kind,
                nullable: row.get(6),
                has_default: row.get(7),
                numeric_precision_scale,
                enum_labels: row.get(9),
            },
        );
    }
    Ok(info)
}

/// Decodes a `numeric` type modifier into (precision, scale); `-1` means unconstrained.
fn numeric_typmod(typmod: i32) -> Result<Option<(u32, u32)>, String> {
    const VARHDRSZ: i32 = 4;
    if typmod < VARHDRSZ {
        return Ok(None);
    }
    let packed = typmod - VARHDRSZ;
    let precision = ((packed >> 16) & 0xffff) as u32;
    // Scale is an 11-bit signed field since Postgres 15.
    let scale = ((packed & 0x7ff) ^ 1024) - 1024;
    if scale < 0 {
        return Err(format!("numeric({precision},{scale}) has a negative scale"));
    }
    Ok(Some((precision, scale as u32)))
}

#[cfg(test)]
mod tests {
    use super::numeric_typmod;

    #[test]
    fn numeric_typmod_decodes_precision_and_scale() {
        assert_eq!(numeric_typmod(-1), Ok(None));
        assert_eq!(numeric_typmod(((38 << 16) | 18) + 4), Ok(Some((38, 18))));
        assert_eq!(numeric_typmod((10 << 16) + 4), Ok(Some((10, 0))));
        assert!(numeric_typmod(((5 << 16) | 0x7fe) + 4).is_err());
    }
}
