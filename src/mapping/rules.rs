//! The compiled mapping rules: what `config::compile` produces from the TOML mapping and the live
//! catalogue, and what `map_event` consumes. Plain data, already validated: every table and column
//! named here exists and every conversion agrees with its column's type.

use crate::mapping::SqlValue;

/// A dot-path into a document (`amount.value`), split into its segments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldPath {
    pub segments: Vec<String>,
}

impl FieldPath {
    /// Splits `a.b.c`; the caller has checked that no segment is empty.
    pub fn parse(path: &str) -> Self {
        FieldPath {
            segments: path.split('.').map(str::to_string).collect(),
        }
    }
    pub fn dotted(&self) -> String {
        self.segments.join(".")
    }
}

/// Integer column widths, for range checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntWidth {
    /// `smallint` (int2)
    I16,
    /// `integer` (int4)
    I32,
    /// `bigint` (int8)
    I64,
}

impl IntWidth {
    pub fn range(self) -> (i64, i64) {
        match self {
            IntWidth::I16 => (i16::MIN as i64, i16::MAX as i64),
            IntWidth::I32 => (i32::MIN as i64, i32::MAX as i64),
            IntWidth::I64 => (i64::MIN, i64::MAX),
        }
    }
    pub fn sql_name(self) -> &'static str {
        match self {
            IntWidth::I16 => "smallint",
            IntWidth::I32 => "integer",
            IntWidth::I64 => "bigint",
        }
    }
}

/// How one BSON value becomes one SQL value.
#[derive(Debug, Clone, PartialEq)]
pub enum Conversion {
    /// String only. For enum columns, the allowed labels (checked at mapping time).
    Text {
        enum_labels: Option<Vec<String>>,
        enum_type: Option<String>,
    },
    Int(IntWidth),
    Bool,
    /// Exact decimal; `(precision, scale)` when the column is constrained.
    Numeric {
        precision_scale: Option<(u32, u32)>,
    },
    Timestamptz,
    Uuid,
    Jsonb,
    TextArray,
}

/// A column filled from a document field.
#[derive(Debug, Clone, PartialEq)]
pub struct ScalarRule {
    pub column: String,
    pub path: FieldPath,
    pub conversion: Conversion,
    /// Missing or null is an error (`MissingRequired`) instead of NULL/default.
    pub required: bool,
    /// Value used when the field is missing or null (already converted and checked).
    pub default: Option<SqlValue>,
}

/// A column holding another collection's row UUID, from a field holding its ObjectId.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReferenceRule {
    pub column: String,
    pub path: FieldPath,
    /// The referenced collection (id_map namespace), e.g. `users`.
    pub collection: String,
    pub required: bool,
}

/// A field holding an ObjectId (entity) or a free string (template), split into three columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MixedRule {
    pub path: FieldPath,
    /// Discriminator column taking `entity` / `template`.
    pub kind_column: String,
    /// UUID FK column, populated for `entity`.
    pub fk_column: String,
    /// Free-text column, populated for `template`.
    pub ref_column: String,
    pub collection: String,
    /// Whether a 24-hex-digit string counts as an ObjectId (`entity`).
    pub hex24_is_id: bool,
    pub required: bool,
}

/// Every column rule of one row (a parent row or a child row).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RowRules {
    pub scalars: Vec<ScalarRule>,
    pub references: Vec<ReferenceRule>,
    pub mixed: Vec<MixedRule>,
}

/// Where a child table's rows come from.
#[derive(Debug, Clone, PartialEq)]
pub enum ChildSource {
    /// Each element of an array of sub-documents is one row; paths are relative to the element.
    DocumentArray(RowRules),
    /// A 1:1 sub-document is one row (none when missing or null); paths are relative to it.
    SubDocument(RowRules),
    /// Each element of an array of ObjectIds is one junction row referencing `collection`.
    IdArray {
        value_column: String,
        collection: String,
    },
    /// Each element of an array of scalars is one row with the converted value.
    ScalarArray {
        value_column: String,
        conversion: Conversion,
    },
}

/// One child or junction table, replaced with its parent.
#[derive(Debug, Clone, PartialEq)]
pub struct ChildRule {
    pub table: String,
    pub path: FieldPath,
    pub parent_column: String,
    /// Column receiving the element's index in the array (0-based), when configured. Without it,
    /// junction rows are de-duplicated (set semantics).
    pub ordinal_column: Option<String>,
    pub source: ChildSource,
}

/// What happens to a row when its document is deleted in MongoDB.
#[derive(Debug, Clone, PartialEq)]
pub enum DeleteRule {
    /// Delete the row; child rows cascade through the schema's foreign keys.
    Delete,
    /// Set `column` to `value` and keep the row.
    Soft { column: String, value: SqlValue },
    /// Do nothing (append-only tables turn the delete into an `immutable_change` gap instead).
    Ignore,
}

/// The compiled rules of one mapped collection.
#[derive(Debug, Clone, PartialEq)]
pub struct CollectionRules {
    /// MongoDB collection name; also the id_map namespace of its documents.
    pub collection: String,
    pub table: String,
    pub id_column: String,
    pub legacy_column: String,
    pub version_column: Option<String>,
    pub delete: DeleteRule,
    /// Insert-only table: updates, replaces and deletes become `immutable_change` gaps.
    pub append_only: bool,
    pub row: RowRules,
    pub children: Vec<ChildRule>,
}
