//! The `Metrics` handle: one Prometheus registry per instance and the update methods the
//! pipeline, sink, snapshot and supervisor call.
//!
//! Names, types and help texts come from `names.rs`; nothing here invents a name. Labels are
//! bounded: collection and table names come from the mapping, `op` is folded onto a fixed set
//! (`Operation::Other` becomes `other`), `reason` and `state` are enums, gap kinds are the mapping's
//! `GapKind` list. Lag and checkpoint age are computed at scrape time from the stored checkpoint
//! position (see `positions.rs`), so they keep growing while a stream is stuck and stay near zero
//! while idle heartbeats advance the checkpoint. This module performs no I/O.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use prometheus::{
    Encoder, Gauge, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};

use super::names::{self, MetricDef};
use super::positions::PositionCollector;
use super::verify::VerifyMetrics;
use super::{system_clock, Clock};
use crate::event::{ClusterTime, Operation};
use crate::mapping::GapKind;

/// Upper bounds of the batch size histogram (events per batch).
pub const BATCH_SIZE_BUCKETS: &[f64] = &[
    1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0,
];

/// Upper bounds of the batch duration histogram (seconds).
pub const BATCH_DURATION_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The `op` label values, fixed so the label stays bounded whatever the server sends.
pub const OP_LABELS: &[&str] = &[
    "insert",
    "update",
    "replace",
    "delete",
    "snapshot",
    "drop",
    "rename",
    "dropDatabase",
    "invalidate",
    "other",
];

/// The `op` label value for an operation.
pub fn op_label(op: &Operation) -> &'static str {
    match op {
        Operation::Insert => "insert",
        Operation::Update => "update",
        Operation::Replace => "replace",
        Operation::Delete => "delete",
        Operation::Snapshot => "snapshot",
        Operation::Drop => "drop",
        Operation::Rename => "rename",
        Operation::DropDatabase => "dropDatabase",
        Operation::Invalidate => "invalidate",
        Operation::Other(_) => "other",
    }
}

/// Why a stream was restarted from its checkpoint (the `reason` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RestartReason {
    /// A transient MongoDB error (network, resumable error label, primary step-down).
    MongoError,
    /// A transient Postgres error (connection lost, server restart, serialization failure).
    PostgresError,
    /// The resume token fell off the oplog (ChangeStreamHistoryLost).
    HistoryLost,
    /// An operator reset the resume token while the stream was running.
    TokenReset,
    /// Anything else the supervisor restarted the stream for.
    Other,
}

impl RestartReason {
    pub const ALL: [RestartReason; 5] = [
        RestartReason::MongoError,
        RestartReason::PostgresError,
        RestartReason::HistoryLost,
        RestartReason::TokenReset,
        RestartReason::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RestartReason::MongoError => "mongo_error",
            RestartReason::PostgresError => "postgres_error",
            RestartReason::HistoryLost => "history_lost",
            RestartReason::TokenReset => "token_reset",
            RestartReason::Other => "other",
        }
    }
}

/// Failure to build or encode the metrics registry.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("metric {name} could not be created or registered")]
    Register {
        name: &'static str,
        #[source]
        source: prometheus::Error,
    },
    #[error("metrics could not be encoded in the Prometheus text format")]
    Encode(#[source] prometheus::Error),
}

/// All mongo2pg metrics, registered in their own registry. Share it as `Arc<Metrics>`.
pub struct Metrics {
    registry: Registry,
    positions: PositionCollector,
    last_applied: GaugeVec,
    events_read: IntCounterVec,
    events_applied: IntCounterVec,
    events_gapped: IntCounterVec,
    rows_written: IntCounterVec,
    batch_size: HistogramVec,
    batch_duration: HistogramVec,
    pg_retries: IntCounterVec,
    restarts: IntCounterVec,
    open_gaps: IntGaugeVec,
    /// (collection, kind) series set by the last `set_open_gaps` call, to zero the ones that vanish.
    open_gap_series: Mutex<HashSet<(String, String)>>,
    snapshot_copied: IntCounterVec,
    snapshot_remaining: IntGaugeVec,
    id_map_hits: IntCounterVec,
    id_map_misses: IntCounterVec,
    token_resets: IntCounterVec,
    stream_held: IntGaugeVec,
    stream_state: IntGaugeVec,
    postgres_up: IntGauge,
    mongo_up: IntGauge,
    verify: VerifyMetrics,
}

pub(super) fn opts(def: &MetricDef) -> Opts {
    Opts::new(def.name, def.help)
}

pub(super) fn register<C: prometheus::core::Collector + Clone + 'static>(
    registry: &Registry,
    def: &MetricDef,
    collector: Result<C, prometheus::Error>,
) -> Result<C, MetricsError> {
    let wrap = |source| MetricsError::Register {
        name: def.name,
        source,
    };
    let collector = collector.map_err(wrap)?;
    registry
        .register(Box::new(collector.clone()))
        .map_err(wrap)?;
    Ok(collector)
}

pub(super) fn counter_vec(
    registry: &Registry,
    def: &MetricDef,
) -> Result<IntCounterVec, MetricsError> {
    register(registry, def, IntCounterVec::new(opts(def), def.labels))
}

pub(super) fn int_gauge_vec(
    registry: &Registry,
    def: &MetricDef,
) -> Result<IntGaugeVec, MetricsError> {
    register(registry, def, IntGaugeVec::new(opts(def), def.labels))
}

pub(super) fn histogram_vec(
    registry: &Registry,
    def: &MetricDef,
    buckets: &[f64],
) -> Result<HistogramVec, MetricsError> {
    let opts = HistogramOpts::new(def.name, def.help).buckets(buckets.to_vec());
    register(registry, def, HistogramVec::new(opts, def.labels))
}

impl Metrics {
    /// A fresh registry with every mongo2pg metric, reading the system clock.
    pub fn new() -> Result<Arc<Metrics>, MetricsError> {
        Self::with_clock(system_clock())
    }

    /// Like `new`, with an injected clock for lag and checkpoint age (tests use a manual clock).
    pub fn with_clock(clock: Clock) -> Result<Arc<Metrics>, MetricsError> {
        let registry = Registry::new();
        let positions = PositionCollector::new(clock)?;
        registry
            .register(Box::new(positions.clone()))
            .map_err(|source| MetricsError::Register {
                name: names::REPLICATION_LAG_SECONDS.name,
                source,
            })?;
        let last_applied = register(
            &registry,
            &names::LAST_APPLIED_CLUSTER_TIME_SECONDS,
            GaugeVec::new(
                opts(&names::LAST_APPLIED_CLUSTER_TIME_SECONDS),
                names::LAST_APPLIED_CLUSTER_TIME_SECONDS.labels,
            ),
        )?;
        let postgres_up = register(
            &registry,
            &names::POSTGRES_UP,
            IntGauge::with_opts(opts(&names::POSTGRES_UP)),
        )?;
        let mongo_up = register(
            &registry,
            &names::MONGO_UP,
            IntGauge::with_opts(opts(&names::MONGO_UP)),
        )?;
        let build_info = register(
            &registry,
            &names::BUILD_INFO,
            Gauge::with_opts(
                opts(&names::BUILD_INFO).const_label("version", env!("CARGO_PKG_VERSION")),
            ),
        )?;
        build_info.set(1.0);
        Ok(Arc::new(Metrics {
            positions,
            last_applied,
            events_read: counter_vec(&registry, &names::EVENTS_READ_TOTAL)?,
            events_applied: counter_vec(&registry, &names::EVENTS_APPLIED_TOTAL)?,
            events_gapped: counter_vec(&registry, &names::EVENTS_GAPPED_TOTAL)?,
            rows_written: counter_vec(&registry, &names::ROWS_WRITTEN_TOTAL)?,
            batch_size: histogram_vec(&registry, &names::BATCH_SIZE_EVENTS, BATCH_SIZE_BUCKETS)?,
            batch_duration: histogram_vec(
                &registry,
                &names::BATCH_DURATION_SECONDS,
                BATCH_DURATION_BUCKETS,
            )?,
            pg_retries: counter_vec(&registry, &names::POSTGRES_TRANSACTION_RETRIES_TOTAL)?,
            restarts: counter_vec(&registry, &names::STREAM_RESTARTS_TOTAL)?,
            open_gaps: int_gauge_vec(&registry, &names::OPEN_GAPS)?,
            open_gap_series: Mutex::new(HashSet::new()),
            snapshot_copied: counter_vec(&registry, &names::SNAPSHOT_DOCUMENTS_COPIED_TOTAL)?,
            snapshot_remaining: int_gauge_vec(&registry, &names::SNAPSHOT_DOCUMENTS_REMAINING)?,
            id_map_hits: counter_vec(&registry, &names::ID_MAP_CACHE_HITS_TOTAL)?,
            id_map_misses: counter_vec(&registry, &names::ID_MAP_CACHE_MISSES_TOTAL)?,
            token_resets: counter_vec(&registry, &names::RESUME_TOKEN_RESETS_TOTAL)?,
            stream_held: int_gauge_vec(&registry, &names::STREAM_HELD)?,
            stream_state: int_gauge_vec(&registry, &names::STREAM_STATE)?,
            postgres_up,
            mongo_up,
            verify: VerifyMetrics::register(&registry)?,
            registry,
        }))
    }

    /// Creates every series of a mapped collection at zero, so dashboards show 0 instead of "no
    /// data" and the first increment is visible to `rate()`. Call once per collection at startup
    /// with the tables (parent and child) the collection writes.
    pub fn declare_collection(&self, collection: &str, tables: &[&str]) {
        self.declare_member(collection, tables);
        self.declare_stream(collection);
    }

    /// The per-collection series of a collection that belongs to a stream group (its events,
    /// rows, gaps and snapshot progress); the stream-level ones are the group's
    /// ([`Metrics::declare_stream`]).
    pub fn declare_member(&self, collection: &str, tables: &[&str]) {
        for op in ["insert", "update", "replace", "delete", "snapshot"] {
            self.events_read.with_label_values(&[collection, op]);
            self.events_applied.with_label_values(&[collection, op]);
            self.events_gapped.with_label_values(&[collection, op]);
        }
        for table in tables {
            self.rows_written.with_label_values(&[table]);
        }
        {
            let mut series = self
                .open_gap_series
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            for kind in GapKind::ALL {
                let key = (collection.to_string(), kind.as_str().to_string());
                if !series.contains(&key) {
                    self.open_gaps
                        .with_label_values(&[collection, kind.as_str()])
                        .set(0);
                    series.insert(key);
                }
            }
        }
        self.snapshot_copied.with_label_values(&[collection]);
        self.snapshot_remaining.with_label_values(&[collection]);
    }

    /// The series of one stream (a collection's own, or a stream group's): batches, retries,
    /// restarts, id_map cache, resets and the lease.
    pub fn declare_stream(&self, stream: &str) {
        self.batch_size.with_label_values(&[stream]);
        self.batch_duration.with_label_values(&[stream]);
        self.pg_retries.with_label_values(&[stream]);
        for reason in RestartReason::ALL {
            self.restarts.with_label_values(&[stream, reason.as_str()]);
        }
        self.id_map_hits.with_label_values(&[stream]);
        self.id_map_misses.with_label_values(&[stream]);
        self.token_resets.with_label_values(&[stream]);
        self.stream_held.with_label_values(&[stream]);
    }

    /// `count` events of one operation were read from MongoDB (change stream or snapshot).
    pub fn events_read(&self, collection: &str, op: &Operation, count: u64) {
        self.events_read
            .with_label_values(&[collection, op_label(op)])
            .inc_by(count);
    }

    /// `count` events of one operation were committed to Postgres.
    pub fn events_applied(&self, collection: &str, op: &Operation, count: u64) {
        self.events_applied
            .with_label_values(&[collection, op_label(op)])
            .inc_by(count);
    }

    /// `count` events of one operation were recorded as gaps instead of being applied.
    pub fn events_gapped(&self, collection: &str, op: &Operation, count: u64) {
        self.events_gapped
            .with_label_values(&[collection, op_label(op)])
            .inc_by(count);
    }

    /// `count` rows of `table` were inserted, updated or deleted by a committed batch.
    pub fn rows_written(&self, table: &str, count: u64) {
        self.rows_written.with_label_values(&[table]).inc_by(count);
    }

    /// A batch of `events` events committed after `duration` (apply + commit).
    pub fn batch_committed(&self, collection: &str, events: usize, duration: Duration) {
        self.batch_size
            .with_label_values(&[collection])
            .observe(events as f64);
        self.batch_duration
            .with_label_values(&[collection])
            .observe(duration.as_secs_f64());
    }

    /// The cluster time of the newest change event applied to Postgres for this collection.
    pub fn set_last_applied(&self, collection: &str, cluster_time: ClusterTime) {
        self.last_applied
            .with_label_values(&[collection])
            .set(f64::from(cluster_time.seconds()));
    }

    /// The checkpoint (batch or heartbeat) covering `cluster_time` was committed just now.
    /// Drives `replication_lag_seconds` and `checkpoint_age_seconds`.
    pub fn checkpoint_committed(&self, collection: &str, cluster_time: ClusterTime) {
        self.positions.committed_now(collection, cluster_time);
    }

    /// Everything the stream read up to source time `at` is in Postgres: a committed event's
    /// `wallTime` (millisecond resolution) or an idle heartbeat with nothing left to apply. The lag
    /// gauge moves forward to it (never back).
    pub fn applied_until(&self, collection: &str, at: SystemTime) {
        self.positions.applied_until(collection, at);
    }

    /// A checkpoint covering `cluster_time` was written at `written_at` (e.g. loaded from the
    /// checkpoint table at startup, before this process committed one).
    pub fn checkpoint_committed_at(
        &self,
        collection: &str,
        cluster_time: ClusterTime,
        written_at: SystemTime,
    ) {
        self.positions
            .committed_at(collection, cluster_time, written_at);
    }

    /// The collection no longer has a checkpoint this process tracks (stream released to another
    /// replica): its lag and checkpoint age series disappear.
    pub fn forget_checkpoint(&self, collection: &str) {
        self.positions.forget(collection);
    }

    /// A batch transaction is being retried after a transient Postgres error.
    pub fn postgres_transaction_retried(&self, collection: &str) {
        self.pg_retries.with_label_values(&[collection]).inc();
    }

    /// The stream is being restarted from its checkpoint.
    pub fn stream_restarted(&self, collection: &str, reason: RestartReason) {
        self.restarts
            .with_label_values(&[collection, reason.as_str()])
            .inc();
    }

    /// Replaces the open-gaps gauge with a fresh count from the gaps table: one
    /// `(collection, kind, open_count)` entry per group. Series missing from `counts` drop to 0.
    pub fn set_open_gaps<'a, I>(&self, counts: I)
    where
        I: IntoIterator<Item = (&'a str, &'a str, i64)>,
    {
        let mut series = self
            .open_gap_series
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut seen = HashSet::new();
        for (collection, kind, count) in counts {
            self.open_gaps
                .with_label_values(&[collection, kind])
                .set(count);
            seen.insert((collection.to_string(), kind.to_string()));
        }
        for (collection, kind) in series.iter() {
            if !seen.contains(&(collection.clone(), kind.clone())) {
                self.open_gaps.with_label_values(&[collection, kind]).set(0);
            }
        }
        series.extend(seen);
    }

    /// `count` documents were copied by a snapshot of the collection.
    pub fn snapshot_copied(&self, collection: &str, count: u64) {
        self.snapshot_copied
            .with_label_values(&[collection])
            .inc_by(count);
    }

    /// Documents the running snapshot still has to copy (set 0 when it finishes).
    pub fn set_snapshot_remaining(&self, collection: &str, remaining: u64) {
        let remaining = i64::try_from(remaining).unwrap_or(i64::MAX);
        self.snapshot_remaining
            .with_label_values(&[collection])
            .set(remaining);
    }

    /// id_map resolution for a batch: `hits` ids came from the cache, `misses` went to Postgres.
    pub fn id_map_lookups(&self, collection: &str, hits: u64, misses: u64) {
        self.id_map_hits
            .with_label_values(&[collection])
            .inc_by(hits);
        self.id_map_misses
            .with_label_values(&[collection])
            .inc_by(misses);
    }

    /// The running replicator picked up an operator's resume-token reset for the collection.
    pub fn resume_token_reset(&self, collection: &str) {
        self.token_resets.with_label_values(&[collection]).inc();
    }

    /// Whether this process currently holds (runs) the collection's stream.
    pub fn set_stream_held(&self, collection: &str, held: bool) {
        self.stream_held
            .with_label_values(&[collection])
            .set(i64::from(held));
    }

    /// One-hot stream state; `Health::set_stream` calls this, so callers normally do not.
    pub fn set_stream_state(&self, collection: &str, state: &str) {
        for candidate in super::health::STREAM_STATE_LABELS {
            let value = i64::from(*candidate == state);
            self.stream_state
                .with_label_values(&[collection, candidate])
                .set(value);
        }
    }

    /// Result of the latest database probes; `Health::set_postgres` / `set_mongo` call these.
    pub fn set_database_up(&self, postgres: Option<bool>, mongo: Option<bool>) {
        if let Some(up) = postgres {
            self.postgres_up.set(i64::from(up));
        }
        if let Some(up) = mongo {
            self.mongo_up.set(i64::from(up));
        }
    }

    /// The continuous-verification series.
    pub fn verify(&self) -> &VerifyMetrics {
        &self.verify
    }

    /// The registry, for callers that gather themselves.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Everything in the Prometheus text exposition format (what `/metrics` serves).
    pub fn render(&self) -> Result<String, MetricsError> {
        let families = self.registry.gather();
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&families, &mut out)
            .map_err(MetricsError::Encode)?;
        String::from_utf8(out)
            .map_err(|e| MetricsError::Encode(prometheus::Error::Msg(e.to_string())))
    }
}
