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
use crate::event::{ClusterTime, Operation, Position, TxnId};
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
    /// The MongoDB transaction the last event belongs to, while more of it may follow.
    open_txn: Option<OpenTxn>,
}

/// A MongoDB transaction being read: a batch is never cut inside it, and the checkpoint never
/// lands inside it. It is complete when an event of another transaction (or none) arrives, or a
/// heartbeat with a later cluster time.
struct OpenTxn {
    /// Where its first event sits in `items`.
    start: usize,
    id: TxnId,
    at: ClusterTime,
    /// The batch's end before its first event: where a flush of the events before it stops.
    end_before: Option<Position>,
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
                    let Some(ItemOut(item, reserved)) = received else {
                        self.flush(&mut pending).await?;
                        return Err(StreamError::ReaderGone(self.stream.to_string()));
                    };
                    // Out of the channel: its bytes no longer count against the reader's budget.
                    drop(reserved);
                    match item {
                        Item::Event(b) => {
                            let ends = ends_stream(&b.event.operation);
                            let txn = b.event.txn.clone().map(|id| (id, b.event.cluster_time));
                            let continues = matches!(
                                (&pending.open_txn, &txn),
                                (Some(open), Some((id, at))) if open.id == *id && open.at == *at
                            );
                            if pending.open_txn.is_some() && !continues {
                                // The transaction read so far is complete.
                                pending.open_txn = None;
                                if pending.items.len() >= self.limits.max_events {
                                    self.flush(&mut pending).await?;
                                }
                            }
                            let end_before = pending.end.clone();
                            if let Some(token) = &b.event.resume_token {
                                pending.advance_end(Position { token: token.clone(), cluster_time: b.event.cluster_time });
                            }
                            let operation = b.event.operation.as_str().to_string();
                            let collection = b.event.collection.clone();
                            pending.items.push(*b);
                            pending.started.get_or_insert_with(Instant::now);
                            if let (None, Some((id, at))) = (&pending.open_txn, txn) {
                                pending.open_txn = Some(OpenTxn {
                                    start: pending.items.len() - 1,
                                    id,
                                    at,
                                    end_before,
                                });
                            }
                            if ends {
                                pending.open_txn = None;
                                self.flush(&mut pending).await?;
                                return Err(StreamError::Invalidated { collection, operation });
                            }
                            // Group commit: a batch grows only while more is waiting; it is cut
                            // at `max_events` or when the channel is empty, never inside a
                            // transaction.
                            if pending.open_txn.is_none()
                                && (pending.items.len() >= self.limits.max_events || rx.is_empty())
                            {
                                self.flush(&mut pending).await?;
                            }
                        }
                        Item::Heartbeat(p) => {
                            // A heartbeat later than an open transaction completes it; one inside
                            // it says nothing yet.
                            if let Some(open) = &pending.open_txn {
                                if p.cluster_time <= open.at {
                                    continue;
                                }
                                pending.open_txn = None;
                            }
                            // Everything read before this heartbeat is in `pending` already (one
                            // ordered channel), so the heartbeat may close the batch. An idle
                            // stream only writes it every `heartbeat_interval`.
                            pending.advance_end(p);
                            let idle_write_due = pending
                                .last_commit
                                .is_none_or(|t| t.elapsed() >= self.heartbeat_interval);
                            if !pending.items.is_empty() || idle_write_due {
                                self.flush(&mut pending).await?;
                            } else if let Some(end) = &pending.end {
                                // Nothing left to apply up to this heartbeat: the lag gauge says
                                // so even before the next idle checkpoint write.
                                let at = std::time::UNIX_EPOCH
                                    + Duration::from_secs(u64::from(end.cluster_time.seconds()));
                                self.metrics.applied_until(self.stream, at);
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

    /// Applies what is pending, except an open transaction's events: those stay pending, and
    /// the checkpoint stops before them.
    async fn flush(&mut self, pending: &mut PendingBatch) -> Result<(), StreamError> {
        let (items, end) = match pending.open_txn.as_mut() {
            None => {
                if pending.is_empty() {
                    pending.end = None;
                    return Ok(());
                }
                pending.started = None;
                (std::mem::take(&mut pending.items), pending.end.take())
            }
            Some(open) => {
                let rest = pending.items.split_off(open.start);
                let done = std::mem::replace(&mut pending.items, rest);
                open.start = 0;
                let end = open.end_before.take();
                let moves = match (&end, &pending.committed) {
                    (Some(e), Some(c)) => position_key(e) > *c,
                    (Some(_), None) => true,
                    (None, _) => false,
                };
                if done.is_empty() && !moves {
                    // Nothing complete yet: the time limit waits for the next event.
                    pending.started = None;
                    return Ok(());
                }
                pending.started = Some(Instant::now());
                (done, end)
            }
        };
        let n = items.len();
        let mut newest_event: BTreeMap<String, ClusterTime> = BTreeMap::new();
        let mut newest_wall: Option<std::time::SystemTime> = None;
        for b in &items {
            let t = newest_event.entry(b.event.collection.clone()).or_default();
            *t = (*t).max(b.event.cluster_time);
            if let Ok(wall) = b.event.raw.get_datetime("wallTime") {
                newest_wall = newest_wall.max(Some(wall.to_system_time()));
            }
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
            took_ms = started.elapsed().as_secs_f64() * 1e3,
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
        if let Some(wall) = newest_wall {
            self.metrics.applied_until(self.stream, wall);
        }
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
