//! The reader half of a stream: opens the change stream at the start position and forwards every
//! event, mapped (pure), every heartbeat and a failure into the bounded channel to the consumer.
//! An event that ends the stream (drop, rename, invalidate) or a failure is the last item sent.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

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

/// What the reader of one stream reads and where its output goes.
pub struct ReaderSpec<'a> {
    pub mongo: &'a mongodb::Client,
    pub database: &'a str,
    pub collection: &'a str,
    pub start: &'a StartAt,
    pub options: &'a StreamOptions,
    pub rules: Arc<crate::mapping::CollectionRules>,
    /// Capacity of the bounded channel to the consumer (backpressure).
    pub capacity: usize,
    pub metrics: Arc<Metrics>,
}

/// Start the reader: open the stream at `start`, then forward items until the channel closes.
pub async fn spawn_reader(
    spec: ReaderSpec<'_>,
) -> Result<(mpsc::Receiver<ItemOut>, JoinHandle<()>), StreamError> {
    let ReaderSpec {
        mongo,
        database,
        collection,
        start,
        options,
        rules,
        capacity,
        metrics,
    } = spec;
    let mut source = match ChangeSource::open(mongo, database, collection, start, options).await {
        Ok(s) => s,
        Err(e) if is_history_lost(&e) => {
            return Err(StreamError::HistoryLost {
                collection: collection.to_string(),
                message: e.to_string(),
            })
        }
        Err(e) => return Err(e.into()),
    };
    let (tx, rx) = mpsc::channel(capacity.max(1));
    let coll = collection.to_string();
    let handle = tokio::spawn(async move {
        loop {
            let item = match source.next().await {
                Ok(SourceItem::Event(ev)) => {
                    metrics.events_read(&coll, &ev.operation, 1);
                    let mapped = map_for_stream(&rules, &ev);
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
                        collection: coll.clone(),
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
            if tx.send(ItemOut(item)).await.is_err() || stop {
                return;
            }
        }
    });
    Ok((rx, handle))
}

/// Opaque wrapper so the item type stays private to this module.
pub struct ItemOut(pub(super) Item);
