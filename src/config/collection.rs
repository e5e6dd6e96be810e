//! Per-collection mapping configuration (`[collections.<name>]`): target table, key columns,
//! version column, delete policy, columns, references, mixed ids, child and junction tables, and
//! the checks that need no database.

use std::collections::BTreeSet;

use serde::Deserialize;

use super::{Problem, DEFAULT_ID_COLUMN, DEFAULT_LEGACY_COLUMN};
use crate::sink::name::{is_identifier, QualifiedName};

fn default_id_column() -> String {
    DEFAULT_ID_COLUMN.to_string()
}
fn default_legacy_column() -> String {
    DEFAULT_LEGACY_COLUMN.to_string()
}

/// The SQL type a column is mapped as; it must agree with the live column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum SqlType {
    /// `text` (or varchar); also a Postgres enum column, checked against its labels.
    #[serde(rename = "text")]
    Text,
    #[serde(rename = "smallint")]
    Smallint,
    #[serde(rename = "integer")]
    Integer,
    #[serde(rename = "bigint")]
    Bigint,
    #[serde(rename = "boolean")]
    Boolean,
    /// Exact decimal, precision/scale taken from the column.
    #[serde(rename = "numeric")]
    Numeric,
    #[serde(rename = "timestamptz")]
    Timestamptz,
    #[serde(rename = "uuid")]
    Uuid,
    /// A sub-document or array stored whole as relaxed extended JSON.
    #[serde(rename = "jsonb")]
    Jsonb,
    #[serde(rename = "text[]")]
    TextArray,
}

impl SqlType {
    pub fn as_str(self) -> &'static str {
        match self {
            SqlType::Text => "text",
            SqlType::Smallint => "smallint",
            SqlType::Integer => "integer",
            SqlType::Bigint => "bigint",
            SqlType::Boolean => "boolean",
            SqlType::Numeric => "numeric",
            SqlType::Timestamptz => "timestamptz",
            SqlType::Uuid => "uuid",
            SqlType::Jsonb => "jsonb",
            SqlType::TextArray => "text[]",
        }
    }
}

/// One column filled from a document field.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnConfig {
    /// Target column.
    pub column: String,
    /// Dot-path in the document (`amount.value`); relative to the element inside child tables.
    pub path: String,
    /// SQL type the value is converted to.
    #[serde(rename = "type")]
    pub sql_type: SqlType,
    /// Missing or null is a `missing_required` gap instead of NULL/default.
    #[serde(default)]
    pub required: bool,
    /// Value used when the field is missing or null (checked like document values).
    #[serde(default)]
    pub default: Option<toml::Value>,
}

/// A column holding another collection's row UUID, from an ObjectId field.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReferenceConfig {
    /// Target uuid column.
    pub column: String,
    /// Dot-path of the ObjectId field.
    pub path: String,
    /// Referenced collection (its id_map namespace).
    pub collection: String,
    /// Missing or null is a `missing_required` gap.
    #[serde(default)]
    pub required: bool,
}

/// A field holding an ObjectId (`entity`) or a free string (`template`), split into three columns.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MixedConfig {
    /// Dot-path of the mixed field.
    pub path: String,
    /// Discriminator column (`entity` / `template`), text or a `ref_kind` enum.
    pub kind_column: String,
    /// uuid FK column, set for `entity`.
    pub fk_column: String,
    /// text column, set for `template`.
    pub ref_column: String,
    /// Referenced collection for `entity` values.
    pub collection: String,
    /// Whether a 24-hex-digit string counts as an ObjectId (`entity`) rather than free text.
    #[serde(default)]
    pub hex24_is_id: bool,
    /// Missing or null is a `missing_required` gap (needed when the kind column is NOT NULL).
    #[serde(default)]
    pub required: bool,
}

/// Where a child table's rows come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ChildShape {
    /// An array of sub-documents, one row each.
    #[default]
    Array,
    /// One sub-document, one row (none when missing).
    Document,
}

/// A child table filled from embedded sub-documents, replaced whenever its parent is written.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChildConfig {
    /// Child table.
    pub table: String,
    /// Dot-path of the array or sub-document in the parent.
    pub path: String,
    /// `array` (default) or `document` (1:1).
    #[serde(default)]
    pub shape: ChildShape,
    /// uuid column referencing the parent row (ON DELETE CASCADE in the schema).
    pub parent_column: String,
    /// Column receiving the element's 0-based index (arrays only).
    #[serde(default)]
    pub ordinal_column: Option<String>,
    /// Columns, with paths relative to the element.
    #[serde(default)]
    pub columns: Vec<ColumnConfig>,
    /// References inside the element.
    #[serde(default)]
    pub references: Vec<ReferenceConfig>,
    /// Mixed ids inside the element.
    #[serde(default)]
    pub mixed: Vec<MixedConfig>,
}

/// A junction table filled from an array of ObjectIds (`collection`) or of scalars (`type`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JunctionConfig {
    /// Junction table.
    pub table: String,
    /// Dot-path of the array in the parent.
    pub path: String,
    /// uuid column referencing the parent row.
    pub parent_column: String,
    /// Column receiving each element.
    pub value_column: String,
    /// For arrays of ObjectIds: the referenced collection (element → its row UUID).
    #[serde(default)]
    pub collection: Option<String>,
    /// For arrays of scalars: the element type.
    #[serde(default, rename = "type")]
    pub sql_type: Option<SqlType>,
    /// Column receiving the element's 0-based index; without it duplicates are dropped (set).
    #[serde(default)]
    pub ordinal_column: Option<String>,
}

/// What a MongoDB delete does to the row.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(tag = "policy", rename_all = "snake_case", deny_unknown_fields)]
pub enum DeletePolicy {
    /// Delete the row; child rows cascade.
    #[default]
    Delete,
    /// Keep the row and set `column` to `value`.
    Soft {
        /// Column marking the row deleted (e.g. `is_deleted`).
        column: String,
        /// Value written to it (e.g. `true`).
        value: toml::Value,
    },
    /// Ignore deletes (append-only collections record them as `immutable_change` gaps).
    Ignore,
}

/// One mapped collection.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectionConfig {
    /// Target table (`table` or `schema.table`).
    pub table: String,
    /// uuid primary key column, filled from id_map.
    #[serde(default = "default_id_column")]
    pub id_column: String,
    /// Column holding the legacy id text (24 hex digits for ObjectIds).
    #[serde(default = "default_legacy_column")]
    pub legacy_column: String,
    /// bigint column holding the cluster time of the last applied event (version guard).
    #[serde(default)]
    pub version_column: Option<String>,
    /// Delete policy: `{ policy = "delete" }` (default), `{ policy = "soft", column, value }`,
    /// `{ policy = "ignore" }`.
    #[serde(default)]
    pub delete: DeletePolicy,
    /// Insert-only table (e.g. the funds ledger): updates and deletes become gaps.
    #[serde(default)]
    pub append_only: bool,
    /// Columns from document fields.
    #[serde(default)]
    pub columns: Vec<ColumnConfig>,
    /// ObjectId references to other collections.
    #[serde(default)]
    pub references: Vec<ReferenceConfig>,
    /// Mixed ObjectId-or-string fields.
    #[serde(default)]
    pub mixed: Vec<MixedConfig>,
    /// Child tables from embedded arrays and 1:1 sub-documents.
    #[serde(default)]
    pub children: Vec<ChildConfig>,
    /// Junction tables from arrays of ObjectIds or scalars.
    #[serde(default)]
    pub junctions: Vec<JunctionConfig>,
}

/// `table` or `schema.table` with plain identifiers.
pub fn is_table_name(s: &str) -> bool {
    QualifiedName::parse(s).is_ok()
}

fn is_path(s: &str) -> bool {
    !s.is_empty()
        && s.split('.')
            .all(|seg| !seg.is_empty() && !seg.starts_with('$'))
}

/// Collects problems for one table's column set.
struct TableCheck<'a> {
    scope: &'a str,
    table: String,
    columns: BTreeSet<String>,
    problems: &'a mut Vec<Problem>,
}

impl TableCheck<'_> {
    fn report(&mut self, field: &str, rule: String) {
        self.problems.push(Problem {
            scope: self.scope.to_string(),
            field: field.to_string(),
            rule,
        });
    }
    fn column(&mut self, column: &str) {
        if !is_identifier(column) {
            self.report(column, format!("{column:?} is not a plain SQL identifier"));
        } else if !self.columns.insert(column.to_string()) {
            self.report(
                column,
                format!("column is assigned twice in table {}", self.table),
            );
        }
    }
    fn path(&mut self, field: &str, path: &str) {
        if !is_path(path) {
            self.report(
                field,
                format!("path {path:?} must be dot-separated non-empty field names"),
            );
        }
    }
    fn collection(&mut self, field: &str, collection: &str) {
        if collection.trim().is_empty() {
            self.report(field, "referenced collection must be named".into());
        }
    }
    fn rows(
        &mut self,
        columns: &[ColumnConfig],
        references: &[ReferenceConfig],
        mixed: &[MixedConfig],
    ) {
        for c in columns {
            self.column(&c.column);
            self.path(&c.column, &c.path);
            if c.required && c.default.is_some() {
                self.report(
                    &c.column,
                    "a required column cannot also have a default".into(),
                );
            }
        }
        for r in references {
            self.column(&r.column);
            self.path(&r.column, &r.path);
            self.collection(&r.column, &r.collection);
        }
        for m in mixed {
            for column in [&m.kind_column, &m.fk_column, &m.ref_column] {
                self.column(column);
            }
            self.path(&m.path, &m.path);
            self.collection(&m.path, &m.collection);
        }
    }
}

impl CollectionConfig {
    /// Every table this collection writes: its own, then child and junction tables.
    pub fn tables(&self) -> Vec<String> {
        let mut out = vec![self.table.clone()];
        out.extend(self.children.iter().map(|c| c.table.clone()));
        out.extend(self.junctions.iter().map(|j| j.table.clone()));
        out
    }

    /// Collections this one refers to (references, mixed ids, children, junctions).
    pub fn referenced_collections(&self) -> BTreeSet<String> {
        let mut out: BTreeSet<String> = BTreeSet::new();
        out.extend(self.references.iter().map(|r| r.collection.clone()));
        out.extend(self.mixed.iter().map(|m| m.collection.clone()));
        for child in &self.children {
            out.extend(child.references.iter().map(|r| r.collection.clone()));
            out.extend(child.mixed.iter().map(|m| m.collection.clone()));
        }
        out.extend(self.junctions.iter().filter_map(|j| j.collection.clone()));
        out
    }

    /// Checks that need no database; appends to `problems`.
    pub fn validate(&self, name: &str, problems: &mut Vec<Problem>) {
        let scope = format!("collections.{name}");
        let mut t = TableCheck {
            scope: &scope,
            table: self.table.clone(),
            columns: BTreeSet::new(),
            problems,
        };
        if name.is_empty() || name.contains('$') || name.contains('\0') {
            t.report("-", format!("{name:?} is not a MongoDB collection name"));
        }
        if !is_table_name(&self.table) {
            t.report(
                "table",
                format!("{:?} is not `table` or `schema.table`", self.table),
            );
        }
        t.column(&self.id_column);
        t.column(&self.legacy_column);
        if let Some(version) = &self.version_column {
            t.column(version);
        }
        t.rows(&self.columns, &self.references, &self.mixed);
        match &self.delete {
            DeletePolicy::Soft { column, .. } if !is_identifier(column) => {
                t.report(
                    "delete.column",
                    format!("{column:?} is not a plain SQL identifier"),
                );
            }
            DeletePolicy::Soft { .. } | DeletePolicy::Delete if self.append_only => {
                t.report(
                    "delete",
                    "an append_only collection keeps its rows: the delete policy must be ignore"
                        .into(),
                );
            }
            _ => {}
        }
        let mut child_tables = BTreeSet::from([self.table.clone()]);
        for child in &self.children {
            if !child_tables.insert(child.table.clone()) {
                t.report(
                    &child.table,
                    "table is written twice by this collection".into(),
                );
            }
            let mut c = TableCheck {
                scope: &scope,
                table: child.table.clone(),
                columns: BTreeSet::new(),
                problems: &mut *t.problems,
            };
            if !is_table_name(&child.table) {
                c.report(
                    "children.table",
                    format!("{:?} is not `table` or `schema.table`", child.table),
                );
            }
            c.path(&child.table, &child.path);
            c.column(&child.parent_column);
            if let Some(ordinal) = &child.ordinal_column {
                c.column(ordinal);
                if child.shape == ChildShape::Document {
                    c.report(ordinal, "a 1:1 sub-document child has no ordinal".into());
                }
            }
            c.rows(&child.columns, &child.references, &child.mixed);
        }
        for junction in &self.junctions {
            if !child_tables.insert(junction.table.clone()) {
                t.report(
                    &junction.table,
                    "table is written twice by this collection".into(),
                );
            }
            let mut c = TableCheck {
                scope: &scope,
                table: junction.table.clone(),
                columns: BTreeSet::new(),
                problems: &mut *t.problems,
            };
            if !is_table_name(&junction.table) {
                c.report(
                    "junctions.table",
                    format!("{:?} is not `table` or `schema.table`", junction.table),
                );
            }
            c.path(&junction.table, &junction.path);
            c.column(&junction.parent_column);
            c.column(&junction.value_column);
            if let Some(ordinal) = &junction.ordinal_column {
                c.column(ordinal);
            }
            match (&junction.collection, junction.sql_type) {
                (Some(coll), None) => c.collection(&junction.value_column, coll),
                (None, Some(SqlType::Jsonb | SqlType::TextArray)) => c.report(
                    &junction.value_column,
                    "junction elements must be scalars".into(),
                ),
                (None, Some(_)) => {}
                _ => c.report(
                    &junction.value_column,
                    "set exactly one of `collection` (ObjectId array) or `type` (scalar array)"
                        .into(),
                ),
            }
        }
    }
}
