//! Pure mapping from a `ChangeEvent` to Postgres row operations.
//!
//! Owns every data rule: dot-path columns, exact decimals, dates, ObjectId references, mixed-id
//! discriminators, embedded arrays to child tables, blobs to JSONB, delete policy. It performs no
//! I/O, reads no clock and never touches a database: `map_event(rules, event)` is a function.
//!
//! Output names rows by *legacy* ids (`LegacyRef`); the sink resolves them to UUIDs through
//! `id_map` inside the batch transaction.

pub mod convert;
pub mod decimal;
mod map;
mod row;
pub mod rules;
#[cfg(test)]
pub(crate) mod tests;
pub mod timestamp;

pub use map::{legacy_id_text, map_event};
pub use row::{KIND_ENTITY, KIND_TEMPLATE};
pub use rules::CollectionRules;

use crate::event::ClusterTime;

/// A reference to a row by its MongoDB identity: the sink turns it into the row's UUID via
/// `id_map(collection, legacy_object_id)`, allocating one if none exists yet.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LegacyRef {
    /// Source collection whose id space the legacy id belongs to (e.g. `users`).
    pub collection: String,
    /// The legacy id as text: 24 lower-case hex digits for an ObjectId, otherwise the id's
    /// canonical string form.
    pub legacy_id: String,
}

/// A value destined for one Postgres column, already validated against the column's type.
///
/// Every variant has an exact text form (`to_pg_text`) which the sink sends as a text parameter
/// and casts in SQL, so numerics never pass through a float.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlValue {
    Null,
    Text(String),
    Bool(bool),
    Int(i64),
    /// Canonical decimal string (no exponent), already checked against precision/scale.
    Numeric(String),
    /// An instant inside Postgres' range, sent as [`timestamp::PgTimestamp::to_pg_text`].
    Timestamptz(timestamp::PgTimestamp),
    Uuid(uuid::Uuid),
    Jsonb(serde_json::Value),
    TextArray(Vec<String>),
    /// The UUID of another row, resolved by the sink through id_map.
    Ref(LegacyRef),
}

/// One column assignment.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnValue {
    pub column: String,
    pub value: SqlValue,
}

/// The complete set of child rows of one child table for one parent. Applying it deletes the
/// parent's existing rows in that table and inserts these, atomically with the parent upsert.
#[derive(Debug, Clone, PartialEq)]
pub struct ChildRows {
    pub table: String,
    /// Column in the child table holding the parent's UUID.
    pub parent_column: String,
    pub rows: Vec<Vec<ColumnValue>>,
}

/// What the sink must do for one event.
#[derive(Debug, Clone, PartialEq)]
pub enum RowOp {
    /// Insert or update the row identified by `key` (its UUID from id_map goes to `id_column`,
    /// the legacy id to `legacy_column`), then replace its child rows.
    Upsert {
        table: String,
        id_column: String,
        legacy_column: String,
        key: LegacyRef,
        columns: Vec<ColumnValue>,
        children: Vec<ChildRows>,
        /// Version column and the event's cluster time: an existing row with a newer version is
        /// left untouched (and so are its children).
        version: Option<(String, ClusterTime)>,
        /// Append-only tables (e.g. the funds ledger): insert if absent, never update.
        insert_only: bool,
    },
    /// Remove the row (children cascade through the schema's FKs).
    Delete {
        table: String,
        legacy_column: String,
        key: LegacyRef,
        version: Option<(String, ClusterTime)>,
    },
    /// Soft delete: set `column` to `value` on the row (guarded by version like an upsert).
    SoftDelete {
        table: String,
        legacy_column: String,
        key: LegacyRef,
        column: String,
        value: SqlValue,
        version: Option<(String, ClusterTime)>,
    },
}

/// Why an event could not be applied. Stored in the gaps table's `kind` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum GapKind {
    /// A field has a BSON type the column cannot take.
    WrongType,
    /// A required field is missing or null.
    MissingRequired,
    /// A plain string where a (non-mixed) reference expects an ObjectId.
    InvalidReference,
    /// NaN, ±Infinity, or a decimal that does not fit the column's precision/scale.
    InvalidNumber,
    /// A date that is invalid or outside Postgres' range.
    InvalidDate,
    /// Text containing a NUL character, which Postgres text cannot store.
    NulInText,
    /// A referenced parent row does not exist (yet); retried later.
    FkMissing,
    /// The row landed, but child/junction rows or optional references wait for rows that do not
    /// exist yet; retried later (the whole state is written again).
    FkDeferred,
    /// A unique constraint rejected the row.
    UniqueViolation,
    /// A CHECK constraint rejected the row.
    CheckViolation,
    /// An update or delete of an append-only (immutable) table.
    ImmutableChange,
    /// Any other Postgres rejection of the row.
    Rejected,
    /// The event itself is malformed (no document key, unparsable shape).
    MalformedEvent,
    /// The stream was dropped, renamed or invalidated.
    StreamInvalidated,
    /// A window of history could not be read (history lost, operator skip-ahead).
    WindowLost,
}

impl GapKind {
    pub fn as_str(self) -> &'static str {
        match self {
            GapKind::WrongType => "wrong_type",
            GapKind::MissingRequired => "missing_required",
            GapKind::InvalidReference => "invalid_reference",
            GapKind::InvalidNumber => "invalid_number",
            GapKind::InvalidDate => "invalid_date",
            GapKind::NulInText => "nul_in_text",
            GapKind::FkMissing => "fk_missing",
            GapKind::FkDeferred => "fk_deferred",
            GapKind::UniqueViolation => "unique_violation",
            GapKind::CheckViolation => "check_violation",
            GapKind::ImmutableChange => "immutable_change",
            GapKind::Rejected => "rejected",
            GapKind::MalformedEvent => "malformed_event",
            GapKind::StreamInvalidated => "stream_invalidated",
            GapKind::WindowLost => "window_lost",
        }
    }

    pub const ALL: [GapKind; 15] = [
        GapKind::WrongType,
        GapKind::MissingRequired,
        GapKind::InvalidReference,
        GapKind::InvalidNumber,
        GapKind::InvalidDate,
        GapKind::NulInText,
        GapKind::FkMissing,
        GapKind::FkDeferred,
        GapKind::UniqueViolation,
        GapKind::CheckViolation,
        GapKind::ImmutableChange,
        GapKind::Rejected,
        GapKind::MalformedEvent,
        GapKind::StreamInvalidated,
        GapKind::WindowLost,
    ];

    pub fn parse(s: &str) -> Option<GapKind> {
        GapKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// A typed mapping failure: the event becomes a gap of `kind` with this precise `reason`
/// (which names the field path and what was wrong, e.g. `amount: Decimal128 NaN is not money`).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{kind:?}: {reason}")]
pub struct MappingError {
    pub kind: GapKind,
    pub reason: String,
}

/// What mapping decided for one event.
#[derive(Debug, Clone, PartialEq)]
pub enum Mapped {
    /// Apply these operations (in order) in the batch transaction.
    Ops(Vec<RowOp>),
    /// Nothing to do (e.g. an update whose looked-up document is gone: its delete follows).
    Skip,
}
