//! What the live Postgres catalogue says about the target tables: columns, their types, nullability
//! and numeric precision/scale. Config validation checks the mapping against it; the sink uses the
//! exact type names to cast text parameters in SQL. Loading it is the only I/O here.

use std::collections::BTreeMap;

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
