//! The reader half of a stream: opens the change stream at the start position and forwards every
//! event, mapped (pure), every heartbeat and a failure into the bounded channel to the consumer.
//! An event that ends the stream (drop, rename, invalidate) or a failure is the last item sent.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::budget::{ByteBudget, Reserved};
use crate::error::{is_history_lost, StreamError};
use crate::event::{ChangeEvent, Operation, Position};
use crate::mapping::{GapKind, Mapped, MappingError};
use crate::metrics::Metrics;
use crate::sink::BatchItem;
use crate::source::{ChangeSource, SourceItem, StartAt, StreamOptions};

/// What flows from the reader to the consumer.
pub(super) enum Item {
    Event(Box<BatchItem>),
    Heartbeat(Position),
    /// The reader failed; the consumer flushes what it has and returns this error.
    Failed(StreamError),
}

/// Map a normalized event, handling the operations that are not row changes.
pub fn map_for_stream(
    rules: &crate::mapping::CollectionRules,
    event: &ChangeEvent,
) -> Result<Mapped, MappingError> {
    match &event.operation {
        Operation::Drop | Operation::Rename | Operation::DropDatabase | Operation::Invalidate => {
            Err(MappingError {
                kind: GapKind::StreamInvalidated,
                reason: format!(
                    "{} event on {}: the stream stops; re-sync the collection after checking the source",
                    event.operation.as_str(),
                    event.collection
                ),
            })
        }
        Operation::Other(_) => Ok(Mapped::Skip),
        _ => crate::mapping::map_event(rules, event),
    }
}

pub(super) fn ends_stream(op: &Operation) -> bool {
    matches!(
        op,
        Operation::Drop | Operation::Rename | Operation::DropDatabase | Operation::Invalidate
    )
}

/// Map an event of a stream by its collection's rules; an event of a collection the stream does
/// not map is skipped, unless it ends the stream.
pub fn map_in_stream(
    rules: &std::collections::BTreeMap<String, crate::mapping::CollectionRules>,
    event: &ChangeEvent,
) -> Result<Mapped, MappingError> {
    match rules.get(&event.collection) {
        Some(r) => map_for_stream(r, event),
        None if ends_stream(&event.operation) => Err(MappingError {
            kind: GapKind::StreamInvalidated,
            reason: format!(
                "{} event on the database: the stream stops; re-sync its collections after checking the source",
                event.operation.as_str(),
            ),
        }),
        None => Ok(Mapped::Skip),
    }
}

/// What the reader of one stream reads and where its output goes.
pub struct ReaderSpec<'a> {
    pub mongo: &'a mongodb::Client,
    pub database: &'a str,
    /// The stream's name: its collection, or its group.
    pub stream: &'a str,
    /// A group's members: the reader opens one database-level stream over them. None: the
    /// stream reads the collection named `stream`.
    pub group: Option<&'a [String]>,
    pub start: &'a StartAt,
    pub options: &'a StreamOptions,
    /// The rules of the stream's collections, by collection.
    pub rules: Arc<std::collections::BTreeMap<String, crate::mapping::CollectionRules>>,
    /// Capacity of the bounded channel to the consumer, in items (backpressure).
    pub capacity: usize,
    /// Raw BSON bytes the queued events may weigh together (backpressure too).
    pub budget_bytes: usize,
    pub metrics: Arc<Metrics>,
}

/// Start the reader: open the stream at `start`, then forward items until the channel closes.
pub async fn spawn_reader(
    spec: ReaderSpec<'_>,
) -> Result<(mpsc::Receiver<ItemOut>, JoinHandle<()>), StreamError> {
    let ReaderSpec {
        mongo,
        database,
        stream,
        group,
        start,
        options,
        rules,
        capacity,
        budget_bytes,
        metrics,
    } = spec;
    let opened = match group {
        Some(members) => ChangeSource::open_group(mongo, database, members, start, options).await,
        None => ChangeSource::open(mongo, database, stream, start, options).await,
    };
    let mut source = match opened {
        Ok(s) => s,
        Err(e) if is_history_lost(&e) => {
            return Err(StreamError::HistoryLost {
                collection: stream.to_string(),
                message: e.to_string(),
            })
        }
        Err(e) => return Err(e.into()),
    };
    let (tx, rx) = mpsc::channel(capacity.max(1));
    let budget = ByteBudget::new(budget_bytes);
    let coll = stream.to_string();
    let handle = tokio::spawn(async move {
        loop {
            let item = match source.next().await {
                Ok(SourceItem::Event(ev)) => {
                    metrics.events_read(&ev.collection, &ev.operation, 1);
                    let mapped = map_in_stream(&rules, &ev);
                    Item::Event(Box::new(BatchItem { event: *ev, mapped }))
                }
                Ok(SourceItem::Heartbeat(p)) => Item::Heartbeat(p),
                Ok(SourceItem::Malformed {
                    raw,
                    reason,
                    position,
                }) => {
                    let document_key = raw
                        .get_document("documentKey")
                        .ok()
                        .and_then(|k| k.get("_id"))
                        .cloned();
                    let event = ChangeEvent {
                        operation: Operation::Other(
                            raw.get_str("operationType")
                                .unwrap_or("unknown")
                                .to_string(),
                        ),
                        collection: raw
                            .get_document("ns")
                            .ok()
                            .and_then(|ns| ns.get_str("coll").ok())
                            .unwrap_or(&coll)
                            .to_string(),
                        document_key,
                        full_document: None,
                        full_document_before_change: None,
                        cluster_time: position
                            .as_ref()
                            .map(|p| p.cluster_time)
                            .unwrap_or_default(),
                        resume_token: position.map(|p| p.token),
                        txn: None,
                        raw,
                    };
                    let mapped = Err(MappingError {
                        kind: GapKind::MalformedEvent,
                        reason: reason.to_string(),
                    });
                    Item::Event(Box::new(BatchItem { event, mapped }))
                }
                Err(e) if is_history_lost(&e) => Item::Failed(StreamError::HistoryLost {
                    collection: coll.clone(),
                    message: e.to_string(),
                }),
                Err(e) => Item::Failed(e.into()),
            };
            let stop = matches!(item, Item::Failed(_))
                || matches!(&item, Item::Event(b) if ends_stream(&b.event.operation));
            let reserved = match &item {
                Item::Event(_) => budget.reserve(source.last_bytes()).await,
                Item::Heartbeat(_) | Item::Failed(_) => Reserved::none(),
            };
            if tx.send(ItemOut(item, reserved)).await.is_err() || stop {
                return;
            }
        }
    });
    Ok((rx, handle))
}

/// Opaque wrapper so the item type stays private to this module; it carries the item's share of
/// the byte budget, released when the consumer takes it out of the channel.
pub struct ItemOut(pub(super) Item, pub(super) Reserved);
