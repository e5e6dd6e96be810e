//! The consumer half of a stream: receives the reader's items in order, cuts batches by size, time
//! or idle heartbeat, applies each through `Sink::apply_batch` (rows, gaps and checkpoint in one
//! transaction) and reports it to the metrics. It stops on shutdown, an operator reset, a reader
//! failure or the end of the stream, flushing what it holds first (except after a reset).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};

use super::reader::{ends_stream, Item, ItemOut};
use super::{BatchLimits, StreamExit};
use crate::error::StreamError;
use crate::event::{ClusterTime, Operation, Position};
use crate::metrics::Metrics;
use crate::sink::BatchItem;

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
        let mut newest_event: BTreeMap<String, ClusterTime> = BTreeMap::new();
        for b in &items {
            let t = newest_event.entry(b.event.collection.clone()).or_default();
            *t = (*t).max(b.event.cluster_time);
        }
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
            &newest_event,
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
    newest_event: &BTreeMap<String, ClusterTime>,
    events: usize,
    took: Duration,
) {
    metrics.batch_committed(stream, events, took);
    for ((collection, op), n) in &outcome.applied_by_collection {
        metrics.events_applied(collection, &Operation::parse(op), *n);
    }
    for ((collection, op), n) in &outcome.gapped_by_collection {
        metrics.events_gapped(collection, &Operation::parse(op), *n);
    }
    for (table, n) in &outcome.rows_written {
        metrics.rows_written(table, *n);
    }
    metrics.id_map_lookups(stream, outcome.id_cache_hits, outcome.id_cache_misses);
    for (collection, t) in newest_event {
        metrics.set_last_applied(collection, *t);
    }
    if let Some(p) = end {
        if outcome.checkpoint_moved {
            metrics.checkpoint_committed(stream, p.cluster_time);
        }
    }
}
