//! The consumer half of a stream: receives the reader's items in order, cuts batches by size, time
//! or idle heartbeat, applies each through `Sink::apply_batch` (rows, gaps and checkpoint in one
//! transaction) and reports it to the metrics. It stops on shutdown, an operator reset, a reader
//! failure or the end of the stream, flushing what it holds first (except after a reset).
//!
//! With a second connection (`[stream] resolve_ahead`), batches overlap: while batch N is written
//! and committed on the stream's connection, the consumer goes on receiving, cuts batch N+1 and
//! resolves its ids on the second connection (`Sink::resolve_ahead`, committed on their own); only
//! then does it wait for N to land, and hands N+1 to the stream's connection. Batches still land
//! one at a time and in stream order: N+1 is written only once N has committed, and a failed N
//! stops the stream before N+1 is written.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{mpsc, watch};

use super::reader::{ends_stream, Item, ItemOut};
use super::{BatchLimits, StreamExit};
use crate::error::StreamError;
use crate::event::{ClusterTime, Operation, Position, TxnId};
use crate::metrics::Metrics;
use crate::sink::{BatchItem, BatchOutcome, Sink, SinkError};

/// The batch being assembled.
#[derive(Default)]
struct PendingBatch {
    items: Vec<BatchItem>,
    end: Option<Position>,
    started: Option<Instant>,
    /// The last position handed to the stream's connection (committed, or landing: a batch that
    /// fails stops the stream), so idle heartbeats that do not advance are not written.
    committed: Option<(ClusterTime, String)>,
    /// When the last batch was handed to the stream's connection.
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
    /// The stream's connection (it holds the stream's lease): batches are written on it.
    pub client: tokio_postgres::Client,
    /// A second connection on which the next batch's ids are resolved while a batch is written
    /// (None: one batch at a time, ids resolved in the batch's own transaction).
    pub ids_client: Option<tokio_postgres::Client>,
    /// The stream's sink, with its id cache.
    pub sink: Sink,
    pub metrics: &'a Metrics,
    /// Notified when an operator reset this stream's position.
    pub restart: Arc<tokio::sync::Notify>,
    /// An idle stream writes its heartbeat checkpoint at most this often.
    pub heartbeat_interval: Duration,
}

/// What a batch being written gives back when it has landed: the connection and the sink it was
/// written with, and its outcome.
type Landed = (
    tokio_postgres::Client,
    Sink,
    Result<BatchOutcome, SinkError>,
);

/// A batch being written (and committed) on the stream's connection.
struct InFlight {
    landing: Pin<Box<dyn Future<Output = Landed> + Send>>,
    events: usize,
    end: Option<Position>,
    newest_event: BTreeMap<String, ClusterTime>,
    newest_wall: Option<SystemTime>,
    started: Instant,
}

/// The consumer at work: its settings, the connections and sinks not lent to a batch in flight,
/// and that batch.
struct Running<'a> {
    stream: &'a str,
    epoch: i64,
    limits: BatchLimits,
    metrics: &'a Metrics,
    restart: Arc<tokio::sync::Notify>,
    heartbeat_interval: Duration,
    /// The stream's connection, while no batch holds it.
    client: Option<tokio_postgres::Client>,
    ids_client: Option<tokio_postgres::Client>,
    /// The sink that resolves ids (and writes, when batches do not overlap), while no batch
    /// holds it.
    sink: Option<Sink>,
    /// With overlapping batches: the sink batches are written with (a fork of `sink`; their
    /// ids are resolved ahead), while no batch holds it.
    writer: Option<Sink>,
    in_flight: Option<InFlight>,
}

impl Consumer<'_> {
    /// Drive the consumer until shutdown, a reader failure, or the end of the stream.
    pub async fn run(
        self,
        rx: mpsc::Receiver<ItemOut>,
        shutdown: watch::Receiver<bool>,
    ) -> Result<StreamExit, StreamError> {
        let writer = self.ids_client.as_ref().map(|_| self.sink.fork());
        let mut running = Running {
            stream: self.stream,
            epoch: self.epoch,
            limits: self.limits,
            metrics: self.metrics,
            restart: self.restart,
            heartbeat_interval: self.heartbeat_interval,
            client: Some(self.client),
            ids_client: self.ids_client,
            sink: Some(self.sink),
            writer,
            in_flight: None,
        };
        running.run(rx, shutdown).await
    }
}

impl Running<'_> {
    async fn run(
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
            let landing_due = self.in_flight.is_some();
            let in_flight = &mut self.in_flight;
            let landing = std::future::poll_fn(|cx| match in_flight {
                Some(f) => f.landing.as_mut().poll(cx),
                None => std::task::Poll::Pending,
            });
            tokio::select! {
                biased;
                _ = shutdown.changed() => {
                    self.flush(&mut pending).await?;
                    self.land().await?;
                    return Ok(StreamExit::Shutdown);
                }
                _ = self.restart.notified() => {
                    // The stored position changed under us: what is pending belongs to the old
                    // position, so it is dropped (a batch in flight rolls back unless it has
                    // committed; its epoch check refuses it otherwise), and the stream reopens
                    // from the new one.
                    return Ok(StreamExit::Restart);
                }
                landed = landing, if landing_due => {
                    self.landed(landed)?;
                }
                _ = tokio::time::sleep_until(deadline.into()), if pending.started.is_some() => {
                    self.flush(&mut pending).await?;
                }
                received = rx.recv() => {
                    let Some(ItemOut(item, reserved)) = received else {
                        self.flush(&mut pending).await?;
                        self.land().await?;
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
                                self.land().await?;
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
                            } else if let (Some(end), None) = (&pending.end, &self.in_flight) {
                                // Nothing left to apply up to this heartbeat: the lag gauge says
                                // so even before the next idle checkpoint write.
                                let at = std::time::UNIX_EPOCH
                                    + Duration::from_secs(u64::from(end.cluster_time.seconds()));
                                self.metrics.applied_until(self.stream, at);
                            }
                        }
                        Item::Failed(e) => {
                            self.flush(&mut pending).await?;
                            self.land().await?;
                            return Err(e);
                        }
                    }
                }
            }
        }
    }

    /// Hands what is pending to the stream's connection, except an open transaction's events:
    /// those stay pending, and the checkpoint stops before them. With overlapping batches, the
    /// batch's ids are resolved first, while the batch before it may still be landing; otherwise
    /// the batch lands before this returns.
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
        let mut newest_event: BTreeMap<String, ClusterTime> = BTreeMap::new();
        let mut newest_wall: Option<SystemTime> = None;
        for b in &items {
            let t = newest_event.entry(b.event.collection.clone()).or_default();
            *t = (*t).max(b.event.cluster_time);
            if let Ok(wall) = b.event.raw.get_datetime("wallTime") {
                newest_wall = newest_wall.max(Some(wall.to_system_time()));
            }
        }
        // Handed over: a heartbeat at this position or before it is not written again, and
        // should this batch fail the stream stops before anything else is written.
        if let Some(p) = &end {
            pending.committed = Some(position_key(p));
        }
        pending.last_commit = Some(Instant::now());

        // The ids are resolved on the second connection while the batch before lands on the
        // stream's connection; one batch lands at a time, in stream order.
        let resolve = {
            let ids_client = self.ids_client.as_mut();
            let sink = self.sink.as_mut();
            let items = &items;
            async move {
                match (ids_client, sink) {
                    (Some(ids), Some(sink)) => sink.resolve_ahead(ids, items).await.map(Some),
                    _ => Ok(None),
                }
            }
        };
        let landing = {
            let in_flight = &mut self.in_flight;
            async move {
                match in_flight {
                    Some(f) => Some(f.landing.as_mut().await),
                    None => None,
                }
            }
        };
        let (ahead, landed) = futures::join!(resolve, landing);
        if let Some(landed) = landed {
            self.landed(landed)?;
        }
        let ahead = ahead?;
        let (Some(mut client), Some(mut sink)) = (
            self.client.take(),
            if ahead.is_some() {
                self.writer.take()
            } else {
                self.sink.take()
            },
        ) else {
            return Err(StreamError::Internal(
                "the stream's connection is held by no batch and missing".into(),
            ));
        };
        let stream = self.stream.to_string();
        let epoch = self.epoch;
        let events = items.len();
        let landing_end = end.clone();
        let landing = Box::pin(async move {
            let outcome = match ahead {
                Some(resolved) => {
                    sink.apply_batch_resolved(
                        &mut client,
                        &stream,
                        epoch,
                        items,
                        landing_end,
                        resolved,
                    )
                    .await
                }
                None => {
                    sink.apply_batch(&mut client, &stream, epoch, items, landing_end)
                        .await
                }
            };
            (client, sink, outcome)
        });
        self.in_flight = Some(InFlight {
            landing,
            events,
            end,
            newest_event,
            newest_wall,
            started: Instant::now(),
        });
        if self.ids_client.is_none() {
            self.land().await?;
        }
        Ok(())
    }

    /// Waits for the batch in flight, if any, to land.
    async fn land(&mut self) -> Result<(), StreamError> {
        if let Some(f) = self.in_flight.as_mut() {
            let landed = f.landing.as_mut().await;
            self.landed(landed)?;
        }
        Ok(())
    }

    /// A batch has landed: its connection and sink come back, and it is reported.
    fn landed(&mut self, (client, sink, outcome): Landed) -> Result<(), StreamError> {
        let Some(f) = self.in_flight.take() else {
            return Ok(());
        };
        self.client = Some(client);
        if self.sink.is_none() {
            self.sink = Some(sink);
        } else {
            self.writer = Some(sink);
        }
        let outcome = outcome?;
        tracing::debug!(
            events = f.events,
            took_ms = f.started.elapsed().as_secs_f64() * 1e3,
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
            f.end.as_ref(),
            &f.newest_event,
            f.events,
            f.started.elapsed(),
        );
        if let Some(wall) = f.newest_wall {
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
