//! The normalized change event every stage agrees on, and stream positions.
//!
//! A `ChangeEvent` comes from a change stream or from a snapshot read (operation `Snapshot`, no
//! resume token), so the mapping stage has exactly one input type. Nothing here performs I/O.

use bson::{Bson, Document, Timestamp};
use serde::{Deserialize, Serialize};

/// A MongoDB cluster time packed into one ordered integer: `seconds << 32 | increment`.
///
/// Stored in Postgres as `bigint` through [`ClusterTime::to_sql`], which keeps the order over the
/// whole range, so SQL can compare versions with `<`/`>`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
pub struct ClusterTime(pub u64);

/// `to_sql` flips the top bit: unsigned order becomes signed order.
const SQL_SHIFT: u64 = 1 << 63;

impl ClusterTime {
    pub fn new(seconds: u32, increment: u32) -> Self {
        ClusterTime(((seconds as u64) << 32) | increment as u64)
    }
    pub fn seconds(self) -> u32 {
        (self.0 >> 32) as u32
    }
    pub fn increment(self) -> u32 {
        (self.0 & 0xffff_ffff) as u32
    }
    /// The value stored in Postgres `bigint` columns (versions, checkpoints, gaps): the packed
    /// value shifted by 2^63, so every cluster time (seconds up to 2^32 - 1, past 2038 and until
    /// 2106) maps to a distinct `i64` in the same order and SQL can compare them with `<`/`>`.
    pub fn to_sql(self) -> i64 {
        (self.0 ^ SQL_SHIFT) as i64
    }
    /// The inverse of [`ClusterTime::to_sql`].
    pub fn from_sql(v: i64) -> Self {
        ClusterTime((v as u64) ^ SQL_SHIFT)
    }
    /// The packed value `seconds << 32 | increment`, as shown to operators.
    pub fn packed(self) -> u64 {
        self.0
    }
    pub fn to_timestamp(self) -> Timestamp {
        Timestamp {
            time: self.seconds(),
            increment: self.increment(),
        }
    }
    /// Wall-clock instant of this cluster time (second precision).
    pub fn to_datetime(self) -> chrono::DateTime<chrono::Utc> {
        chrono::DateTime::from_timestamp(self.seconds() as i64, 0).unwrap_or_default()
    }
}

impl From<Timestamp> for ClusterTime {
    fn from(ts: Timestamp) -> Self {
        ClusterTime::new(ts.time, ts.increment)
    }
}

/// Where a stream stands: the resume token to hand back to MongoDB and the cluster time it covers.
#[derive(Debug, Clone, PartialEq)]
pub struct Position {
    /// The opaque resume token (`{_data: "..."}`), exactly as the server sent it.
    pub token: Document,
    pub cluster_time: ClusterTime,
}

/// The kind of change. `Snapshot` marks a document read by the initial copy.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Operation {
    Insert,
    Update,
    Replace,
    Delete,
    Snapshot,
    Drop,
    Rename,
    DropDatabase,
    Invalidate,
    /// Any operation type this version does not know (e.g. DDL events with showExpandedEvents).
    Other(String),
}

impl Operation {
    pub fn parse(s: &str) -> Self {
        match s {
            "insert" => Operation::Insert,
            "update" => Operation::Update,
            "replace" => Operation::Replace,
            "delete" => Operation::Delete,
            "drop" => Operation::Drop,
            "rename" => Operation::Rename,
            "dropDatabase" => Operation::DropDatabase,
            "invalidate" => Operation::Invalidate,
            other => Operation::Other(other.to_string()),
        }
    }
    pub fn as_str(&self) -> &str {
        match self {
            Operation::Insert => "insert",
            Operation::Update => "update",
            Operation::Replace => "replace",
            Operation::Delete => "delete",
            Operation::Snapshot => "snapshot",
            Operation::Drop => "drop",
            Operation::Rename => "rename",
            Operation::DropDatabase => "dropDatabase",
            Operation::Invalidate => "invalidate",
            Operation::Other(s) => s,
        }
    }
}

/// The transaction an event belongs to, when it came from a multi-document transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct TxnId {
    pub lsid: Document,
    pub txn_number: i64,
}

/// One change, normalized. `raw` keeps the complete event as received so a gap can store it.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeEvent {
    pub operation: Operation,
    /// Collection name (Mongoose name, e.g. `purchaserequests`).
    pub collection: String,
    /// The document's `_id` (usually an ObjectId), from `documentKey._id`.
    pub document_key: Option<Bson>,
    /// The post-image when it is not inside `raw`: a snapshot document, a post-image read
    /// separately. A change-stream event keeps its `fullDocument` in `raw` only (one decoded
    /// copy), so read the post-image through [`ChangeEvent::post_image`].
    pub full_document: Option<Document>,
    /// The pre-image when it is not inside `raw`; read it through [`ChangeEvent::pre_image`].
    pub full_document_before_change: Option<Document>,
    pub cluster_time: ClusterTime,
    /// The event's `_id`; None for snapshot reads.
    pub resume_token: Option<Document>,
    pub txn: Option<TxnId>,
    /// The whole event as received; empty for a document read by a copy or a retry, whose raw
    /// form is its `full_document` (read it through `raw_form`).
    pub raw: Document,
}

impl ChangeEvent {
    /// The event as received, or the document itself for a read (`Operation::Snapshot`): what a
    /// gap keeps as its raw event.
    pub fn raw_form(&self) -> &Document {
        match (&self.full_document, &self.operation) {
            (Some(document), Operation::Snapshot) if self.raw.is_empty() => document,
            _ => &self.raw,
        }
    }

    /// Post-image: the inserted/replaced document, or the looked-up one for updates (None when
    /// the document was deleted before the lookup, or for deletes): `full_document`, else the
    /// raw event's `fullDocument`.
    pub fn post_image(&self) -> Option<&Document> {
        self.full_document
            .as_ref()
            .or_else(|| self.image_in_raw("fullDocument"))
    }

    /// Pre-image, when the collection keeps them and the stream asked for them:
    /// `full_document_before_change`, else the raw event's `fullDocumentBeforeChange`.
    pub fn pre_image(&self) -> Option<&Document> {
        self.full_document_before_change
            .as_ref()
            .or_else(|| self.image_in_raw("fullDocumentBeforeChange"))
    }

    /// An image inside a change-stream event (a read, `Operation::Snapshot`, has none in `raw`).
    fn image_in_raw(&self, field: &str) -> Option<&Document> {
        if self.operation == Operation::Snapshot {
            return None;
        }
        self.raw.get_document(field).ok()
    }
}
