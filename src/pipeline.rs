//! One stream's task: source -> mapping -> bounded channel -> batch -> sink.
//!
//! A reader task pulls from the change stream and maps each event (pure); the consumer cuts
//! batches by size or time and applies each in one Postgres transaction together with the
//! checkpoint. The bounded channel is the backpressure: when Postgres is slow the reader stops
//! issuing getMores. Retrying is not done here: errors go back to the supervisor.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::error::{is_history_lost, StreamError};
use crate::event::{ChangeEvent, ClusterTime, Operation, Position};
use crate::mapping::{GapKind, Mapped, MappingError};
use crate::metrics::Metrics;
use crate::sink::BatchItem;
use crate::source::{ChangeSource, SourceItem, StartAt, StreamOptions};

/// When a batch is cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    pub max_events: usize,
    pub max_wait: Duration,
}

/// How a stream ended without error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamExit {
    /// The process is shutting down.
    Shutdown,
    /// An operator reset the stream's position: reopen it from the stored checkpoint.
    Restart,
    /// Another process holds the stream's lease; try again later.
    Standby,
}

/// What flows from the reader to the consumer.
enum Item {
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

fn ends_stream(op: &Operation) -> bool {
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
pub struct ItemOut(Item);

/// The batch being assembled.
#[derive(Default)]
struct PendingBatch {
    items: Vec<BatchItem>,
    end: Option<Position>,
    started: Option<Instant>,
    /// The last position committed, so idle heartbeats that do not advance are not written.
    committed: Option<(ClusterTime, String)>,
    /// When the last batch committed.
    last_commit: Option<Instant>,
}

impl PendingBatch {
    fn advance_end(&mut self, p: Position) {
        let newer = match &self.end {
            None => true,
            Some(cur) => position_key(&p) >= position_key(cur),
        };
        if newer {
            self.end = Some(p);
        }
    }
    /// Nothing to write: no events, and no position beyond the last committed one.
    fn is_empty(&self) -> bool {
        self.items.is_empty()
            && match (&self.end, &self.committed) {
                (None, _) => true,
                (Some(end), Some(done)) => position_key(end) <= *done,
                (Some(_), None) => false,
            }
    }
}

/// Total order of positions: cluster time, then the token's `_data` (which sorts in stream order).
pub fn position_key(p: &Position) -> (ClusterTime, String) {
    (
        p.cluster_time,
        p.token.get_str("_data").unwrap_or_default().to_string(),
    )
}

/// Everything the consumer needs to apply batches.
pub struct Consumer<'a> {
    pub stream: &'a str,
    pub epoch: i64,
    pub limits: BatchLimits,
    pub client: &'a mut tokio_postgres::Client,
    pub sink: &'a mut crate::sink::Sink,
    pub metrics: &'a Metrics,
    /// Notified when an operator reset this stream's position.
    pub restart: Arc<tokio::sync::Notify>,
    /// An idle stream writes its heartbeat checkpoint at most this often.
    pub heartbeat_interval: Duration,
}

impl Consumer<'_> {
    /// Drive the consumer until shutdown, a reader failure, or the end of the stream.
    pub async fn run(
        &mut self,
        mut rx: mpsc::Receiver<ItemOut>,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<StreamExit, StreamError> {
        let mut pending = PendingBatch::default();
        loop {
            let deadline = pending
                .started
                .map(|t| t + self.limits.max_wait)
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                biased;
                _ = shutdown.changed() => {
                    self.flush(&mut pending).await?;
                    return Ok(StreamExit::Shutdown);
                }
                _ = self.restart.notified() => {
                    // The stored position changed under us: what is pending belongs to the old
                    // position, so it is dropped, and the stream reopens from the new one.
                    return Ok(StreamExit::Restart);
                }
                _ = tokio::time::sleep_until(deadline.into()), if pending.started.is_some() => {
                    self.flush(&mut pending).await?;
                }
                received = rx.recv() => {
                    let Some(ItemOut(item)) = received else {
                        self.flush(&mut pending).await?;
                        return Err(StreamError::ReaderGone(self.stream.to_string()));
                    };
                    match item {
                        Item::Event(b) => {
                            let ends = ends_stream(&b.event.operation);
                            if let Some(token) = &b.event.resume_token {
                                pending.advance_end(Position { token: token.clone(), cluster_time: b.event.cluster_time });
                            }
                            let operation = b.event.operation.as_str().to_string();
                            let collection = b.event.collection.clone();
                            pending.items.push(*b);
                            pending.started.get_or_insert_with(Instant::now);
                            if ends {
                                self.flush(&mut pending).await?;
                                return Err(StreamError::Invalidated { collection, operation });
                            }
                            if pending.items.len() >= self.limits.max_events {
                                self.flush(&mut pending).await?;
                            }
                        }
                        Item::Heartbeat(p) => {
                            // Everything read before this heartbeat is in `pending` already (one
                            // ordered channel), so the heartbeat may close the batch. An idle
                            // stream only writes it every `heartbeat_interval`.
                            pending.advance_end(p);
                            let idle_write_due = pending
                                .last_commit
                                .is_none_or(|t| t.elapsed() >= self.heartbeat_interval);
                            if !pending.items.is_empty() || idle_write_due {
                                self.flush(&mut pending).await?;
                            }
                        }
                        Item::Failed(e) => {
                            self.flush(&mut pending).await?;
                            return Err(e);
                        }
                    }
                }
            }
        }
    }

    async fn flush(&mut self, pending: &mut PendingBatch) -> Result<(), StreamError> {
        if pending.is_empty() {
            pending.end = None;
            return Ok(());
        }
        let items = std::mem::take(&mut pending.items);
        let end = pending.end.take();
        pending.started = None;
        let n = items.len();
        let newest_event = items.iter().map(|b| b.event.cluster_time).max();
        let started = Instant::now();
        let outcome = self
            .sink
            .apply_batch(self.client, self.stream, self.epoch, items, end.clone())
            .await?;
        if let Some(p) = &end {
            pending.committed = Some(position_key(p));
        }
        pending.last_commit = Some(Instant::now());
        tracing::debug!(
            events = n,
            applied = ?outcome.applied,
            gapped = ?outcome.gapped,
            skipped = ?outcome.skipped,
            checkpoint_moved = outcome.checkpoint_moved,
            "batch committed"
        );
        record_batch(
            self.metrics,
            self.stream,
            &outcome,
            end.as_ref(),
            newest_event,
            n,
            started.elapsed(),
        );
        Ok(())
    }
}

/// Report one committed batch to the metrics.
fn record_batch(
    metrics: &Metrics,
    stream: &str,
    outcome: &crate::sink::BatchOutcome,
    end: Option<&Position>,
    newest_event: Option<ClusterTime>,
    events: usize,
    took: Duration,
) {
    metrics.batch_committed(stream, events, took);
    for (op, n) in &outcome.applied {
        metrics.events_applied(stream, &Operation::parse(op), *n);
    }
    for (op, n) in &outcome.gapped {
        metrics.events_gapped(stream, &Operation::parse(op), *n);
    }
    for (table, n) in &outcome.rows_written {
        metrics.rows_written(table, *n);
    }
    metrics.id_map_lookups(stream, outcome.id_cache_hits, outcome.id_cache_misses);
    if let Some(t) = newest_event {
        metrics.set_last_applied(stream, t);
    }
    if let Some(p) = end {
        if outcome.checkpoint_moved {
            metrics.checkpoint_committed(stream, p.cluster_time);
        }
    }
}
