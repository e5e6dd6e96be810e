//! The snapshot reader: records where the change stream stands *before* a copy starts, then reads a
//! collection in `_id` order, one bounded page at a time, as `Operation::Snapshot` change events.
//!
//! It only reads MongoDB through the official driver. It never writes Postgres and never decides
//! about retries: the snapshot engine (`crate::snapshot`) applies each page through the sink and
//! stores the page's last `_id` so an interrupted copy resumes after it.
//!
//! Paging uses `find({_id: {$gt: last}}).sort({_id: 1}).limit(n)`, so a page costs one round trip
//! and a resume never re-reads what was already copied. MongoDB's `$gt` only matches values of the
//! same BSON type, so a collection whose `_id`s mix types (ObjectIds and strings) is copied type by
//! type only as far as the first page's type; such collections are not supported by the resume.

use bson::{doc, Bson, Document, RawDocumentBuf};
use futures::TryStreamExt;
use mongodb::options::ReadConcern;
use mongodb::{Client, Collection, Cursor};

use super::normalize::token_cluster_time;
use crate::event::{ChangeEvent, ClusterTime, Operation, Position};

/// Default number of documents per page (one Postgres transaction each).
pub const DEFAULT_PAGE_SIZE: u32 = 500;

/// Documents per cursor batch at most: a large page is assembled from several getMores, so the
/// driver never buffers more than this many documents beyond the page.
const CURSOR_BATCH: u32 = 1000;

/// A window on a configured timestamp field, for targeted re-syncs (`[from, to]`, inclusive).
#[derive(Debug, Clone, PartialEq)]
pub struct TimeWindow {
    /// Dot-path of a BSON date field, e.g. `updatedAt`.
    pub field: String,
    pub from: chrono::DateTime<chrono::Utc>,
    pub to: chrono::DateTime<chrono::Utc>,
}

/// Which documents a snapshot copies. The default copies the whole collection.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SnapshotFilter {
    /// Only documents with `_id >= id_from`.
    pub id_from: Option<Bson>,
    /// Only documents with `_id <= id_to`.
    pub id_to: Option<Bson>,
    /// Only documents whose timestamp field falls in the window.
    pub time_window: Option<TimeWindow>,
}

impl SnapshotFilter {
    /// The filter as a MongoDB query document (empty for a full copy).
    pub fn to_document(&self) -> Document {
        let mut clauses: Vec<Bson> = Vec::new();
        if let Some(from) = &self.id_from {
            clauses.push(Bson::Document(doc! {"_id": {"$gte": from.clone()}}));
        }
        if let Some(to) = &self.id_to {
            clauses.push(Bson::Document(doc! {"_id": {"$lte": to.clone()}}));
        }
        if let Some(w) = &self.time_window {
            let from = bson::DateTime::from_chrono(w.from);
            let to = bson::DateTime::from_chrono(w.to);
            clauses.push(Bson::Document(
                doc! {w.field.clone(): {"$gte": from, "$lte": to}},
            ));
        }
        match clauses.len() {
            0 => Document::new(),
            1 => match clauses.pop() {
                Some(Bson::Document(d)) => d,
                _ => Document::new(),
            },
            _ => doc! {"$and": clauses},
        }
    }

    /// True when the filter selects the whole collection.
    pub fn is_full(&self) -> bool {
        self.id_from.is_none() && self.id_to.is_none() && self.time_window.is_none()
    }
}

fn missing_token() -> mongodb::error::Error {
    mongodb::error::Error::custom("change stream returned no post-batch resume token".to_string())
}

/// Records the stream's current position: opens a change stream on the collection (or, without
/// one, on the whole database, as a stream group reads) and takes its post-batch resume token
/// (everything written after it will be delivered by a stream resumed from it) with the cluster
/// time it encodes (or the command's operation time). Call it *before* copying anything.
pub async fn capture_start_position(
    client: &Client,
    database: &str,
    collection: &str,
) -> Result<Position, mongodb::error::Error> {
    capture_position(client, database, Some(collection)).await
}

/// [`capture_start_position`] for a collection (`Some`) or the whole database (`None`).
pub async fn capture_position(
    client: &Client,
    database: &str,
    collection: Option<&str>,
) -> Result<Position, mongodb::error::Error> {
    let db = client.database(database);
    let mut session = client.start_session().await?;
    let stream = match collection {
        Some(c) => {
            db.collection::<Document>(c)
                .watch()
                .session(&mut session)
                .await?
        }
        None => db.watch().session(&mut session).await?,
    };
    let token = stream.resume_token().ok_or_else(missing_token)?;
    drop(stream);
    let token = match bson::to_bson(&token) {
        Ok(Bson::Document(d)) => d,
        _ => return Err(missing_token()),
    };
    let cluster_time =
        match token_cluster_time(&token).or(session.operation_time().map(ClusterTime::from)) {
            Some(t) => t,
            None => {
                return Err(mongodb::error::Error::custom(
                    "server reported no operationTime for the change stream aggregate".to_string(),
                ))
            }
        };
    Ok(Position {
        token,
        cluster_time,
    })
}

/// Wraps one snapshot document as a change event. `version` is the time the row will carry: the
/// copy's start position for snapshots (any later change reaches the row through the stream), the
/// gap's own time for gap retries. The document is kept once, as the post-image (its raw form,
/// `ChangeEvent::raw_form`).
pub fn snapshot_event(collection: &str, document: Document, version: ClusterTime) -> ChangeEvent {
    ChangeEvent {
        operation: Operation::Snapshot,
        collection: collection.to_string(),
        document_key: document.get("_id").cloned(),
        full_document: Some(document),
        full_document_before_change: None,
        cluster_time: version,
        resume_token: None,
        txn: None,
        raw: Document::new(),
    }
}

/// `$type` names of MongoDB's `_id` sort order, one entry per comparison bracket (values of one
/// bracket compare with each other; brackets never do).
const TYPE_BRACKETS: [&[&str]; 16] = [
    &["minKey"],
    &["null", "undefined"],
    &["double", "int", "long", "decimal"],
    &["string", "symbol"],
    &["object"],
    &["array"],
    &["binData"],
    &["objectId"],
    &["bool"],
    &["date"],
    &["timestamp"],
    &["regex"],
    &["dbPointer"],
    &["javascript"],
    &["javascriptWithScope"],
    &["maxKey"],
];

fn bracket_of(value: &Bson) -> usize {
    match value {
        Bson::MinKey => 0,
        Bson::Null | Bson::Undefined => 1,
        Bson::Double(_) | Bson::Int32(_) | Bson::Int64(_) | Bson::Decimal128(_) => 2,
        Bson::String(_) | Bson::Symbol(_) => 3,
        Bson::Document(_) => 4,
        Bson::Array(_) => 5,
        Bson::Binary(_) => 6,
        Bson::ObjectId(_) => 7,
        Bson::Boolean(_) => 8,
        Bson::DateTime(_) => 9,
        Bson::Timestamp(_) => 10,
        Bson::RegularExpression(_) => 11,
        Bson::DbPointer(_) => 12,
        Bson::JavaScriptCode(_) => 13,
        Bson::JavaScriptCodeWithScope(_) => 14,
        Bson::MaxKey => 15,
    }
}

/// Every document whose `_id` sorts after `last`, across BSON types.
pub fn after_id(last: &Bson) -> Document {
    let later: Vec<Bson> = TYPE_BRACKETS[bracket_of(last) + 1..]
        .iter()
        .flat_map(|names| names.iter().map(|n| Bson::String((*n).to_string())))
        .collect();
    let same = doc! {"_id": {"$gt": last.clone()}};
    if later.is_empty() {
        same
    } else {
        doc! {"$or": [same, {"_id": {"$type": later}}]}
    }
}

/// One page of a snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub events: Vec<ChangeEvent>,
    /// `_id` of the last document of the page: the resume point.
    pub last_id: Bson,
    /// Raw BSON size of the page's documents.
    pub bytes: usize,
}

/// Reads one collection in `_id` order through one cursor, page by page.
pub struct SnapshotReader {
    collection_name: String,
    coll: Collection<Document>,
    filter: Document,
    page_size: u32,
    page_bytes: usize,
    last_id: Option<Bson>,
    version: ClusterTime,
    cursor: Option<Cursor<RawDocumentBuf>>,
}

impl SnapshotReader {
    /// Prepare a reader. `resume_after` is the last `_id` already copied (from the checkpoint's
    /// snapshot columns); `version` is the time every copied row carries (the copy's start).
    pub async fn open(
        client: &Client,
        database: &str,
        collection: &str,
        filter: &SnapshotFilter,
        resume_after: Option<Bson>,
        page_size: u32,
        version: ClusterTime,
    ) -> Result<Self, mongodb::error::Error> {
        Ok(SnapshotReader {
            collection_name: collection.to_string(),
            coll: client.database(database).collection::<Document>(collection),
            filter: filter.to_document(),
            page_size: page_size.max(1),
            page_bytes: crate::config::DEFAULT_SNAPSHOT_PAGE_BYTES,
            last_id: resume_after,
            version,
            cursor: None,
        })
    }

    /// Ends pages once their documents' raw BSON reaches `bytes` (at least one document per
    /// page), whatever the page size.
    pub fn with_page_bytes(mut self, bytes: usize) -> Self {
        self.page_bytes = bytes.max(1);
        self
    }

    fn query(&self) -> Document {
        match &self.last_id {
            None => self.filter.clone(),
            Some(last) => {
                let after = after_id(last);
                if self.filter.is_empty() {
                    after
                } else {
                    doc! {"$and": [Bson::Document(self.filter.clone()), Bson::Document(after)]}
                }
            }
        }
    }

    /// How many documents are still to copy (after the resume point, inside the filter).
    pub async fn count_remaining(&mut self) -> Result<u64, mongodb::error::Error> {
        self.coll.count_documents(self.query()).await
    }

    /// The next page, or None when the copy is complete. A page holds at most `page_size`
    /// documents and ends after the document that brings its raw BSON to `page_bytes`.
    pub async fn next_page(&mut self) -> Result<Option<Page>, mongodb::error::Error> {
        if self.cursor.is_none() {
            let cursor = self
                .coll
                .clone_with_type::<RawDocumentBuf>()
                .find(self.query())
                .sort(doc! {"_id": 1})
                .batch_size(self.page_size.min(CURSOR_BATCH))
                .read_concern(ReadConcern::local())
                .await?;
            self.cursor = Some(cursor);
        }
        let Some(cursor) = self.cursor.as_mut() else {
            return Ok(None);
        };
        let mut docs = Vec::with_capacity((self.page_size as usize).min(4096));
        let mut bytes = 0usize;
        while docs.len() < self.page_size as usize && bytes < self.page_bytes {
            match cursor.try_next().await? {
                Some(raw) => {
                    bytes += raw.as_bytes().len();
                    let d = raw.to_document().map_err(|e| {
                        mongodb::error::Error::custom(format!(
                            "{}: a document could not be decoded: {e}",
                            self.collection_name
                        ))
                    })?;
                    docs.push(d);
                }
                None => break,
            }
        }
        let Some(last_id) = docs.last().and_then(|d| d.get("_id")).cloned() else {
            self.cursor = None;
            return Ok(None);
        };
        let events = docs
            .into_iter()
            .map(|d| snapshot_event(&self.collection_name, d, self.version))
            .collect();
        self.last_id = Some(last_id.clone());
        Ok(Some(Page {
            events,
            last_id,
            bytes,
        }))
    }

    /// The last `_id` returned so far (or the resume point).
    pub fn last_id(&self) -> Option<&Bson> {
        self.last_id.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::oid::ObjectId;

    #[test]
    fn full_filter_is_an_empty_query() {
        assert_eq!(SnapshotFilter::default().to_document(), Document::new());
        assert!(SnapshotFilter::default().is_full());
    }

    #[test]
    fn id_range_and_time_window_combine_with_and() {
        let a = ObjectId::parse_str("650000000000000000000001").expect("hex");
        let from = chrono::DateTime::from_timestamp(1_700_000_000, 0).expect("time");
        let to = chrono::DateTime::from_timestamp(1_700_000_600, 0).expect("time");
        let f = SnapshotFilter {
            id_from: Some(Bson::ObjectId(a)),
            id_to: None,
            time_window: Some(TimeWindow {
                field: "updatedAt".into(),
                from,
                to,
            }),
        };
        let expected = doc! {"$and": [
            {"_id": {"$gte": a}},
            {"updatedAt": {"$gte": bson::DateTime::from_chrono(from), "$lte": bson::DateTime::from_chrono(to)}},
        ]};
        assert_eq!(f.to_document(), expected);
        assert!(!f.is_full());
    }

    #[test]
    fn single_clause_is_not_wrapped() {
        let f = SnapshotFilter {
            id_to: Some(Bson::Int32(7)),
            ..Default::default()
        };
        assert_eq!(f.to_document(), doc! {"_id": {"$lte": 7}});
    }

    #[test]
    fn resuming_after_an_id_reads_the_rest_of_its_type_and_every_later_type() {
        assert_eq!(
            after_id(&Bson::String("m".into())),
            doc! {"$or": [
                {"_id": {"$gt": "m"}},
                {"_id": {"$type": ["object", "array", "binData", "objectId", "bool", "date",
                    "timestamp", "regex", "dbPointer", "javascript", "javascriptWithScope", "maxKey"]}},
            ]}
        );
        assert_eq!(
            after_id(&Bson::Int32(7)),
            doc! {"$or": [
                {"_id": {"$gt": 7}},
                {"_id": {"$type": ["string", "symbol", "object", "array", "binData", "objectId",
                    "bool", "date", "timestamp", "regex", "dbPointer", "javascript",
                    "javascriptWithScope", "maxKey"]}},
            ]}
        );
        assert_eq!(after_id(&Bson::MaxKey), doc! {"_id": {"$gt": Bson::MaxKey}});
    }

    #[test]
    fn snapshot_event_carries_key_document_and_read_time() {
        let d = doc! {"_id": 5, "name": "x"};
        let ev = snapshot_event("users", d.clone(), ClusterTime::new(10, 2));
        assert_eq!(ev.operation, Operation::Snapshot);
        assert_eq!(ev.document_key, Some(Bson::Int32(5)));
        assert_eq!(ev.full_document, Some(d.clone()));
        assert_eq!(ev.raw_form(), &d);
        assert_eq!(ev.cluster_time, ClusterTime::new(10, 2));
        assert!(ev.resume_token.is_none());
    }
}
