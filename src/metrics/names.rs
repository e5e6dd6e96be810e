//! Every metric name mongo2pg exports, with its type, labels and help text, in one table.
//!
//! This is the single source of truth for names: the registry in `registry.rs` builds its
//! collectors from these constants, METRICS.md documents exactly this list, and the tests check
//! that the Grafana dashboard and the Prometheus alert rules only use names listed here. Names
//! follow `mongo2pg_<what>_<unit>[_total]` in base units (seconds, documents, rows).

/// How a metric is exposed to Prometheus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricType {
    Counter,
    Gauge,
    Histogram,
}

impl MetricType {
    pub fn as_str(self) -> &'static str {
        match self {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Histogram => "histogram",
        }
    }
}

/// One exported metric family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricDef {
    pub name: &'static str,
    pub kind: MetricType,
    pub labels: &'static [&'static str],
    pub help: &'static str,
}

macro_rules! metric_defs {
    ($($konst:ident = $name:literal, $kind:ident, [$($label:literal),*], $help:literal;)*) => {
        $(pub const $konst: MetricDef = MetricDef {
            name: $name,
            kind: MetricType::$kind,
            labels: &[$($label),*],
            help: $help,
        };)*
        /// Every metric family, in the order METRICS.md lists them.
        pub const ALL: &[MetricDef] = &[$($konst),*];
    };
}

metric_defs! {
    REPLICATION_LAG_SECONDS = "mongo2pg_replication_lag_seconds", Gauge, ["collection"],
        "Wall-clock time now minus the source time up to which the stream has applied everything (the newest applied event's wallTime, its cluster time, or an idle heartbeat).";
    LAST_APPLIED_CLUSTER_TIME_SECONDS = "mongo2pg_last_applied_cluster_time_seconds", Gauge, ["collection"],
        "Cluster time (Unix seconds) of the last change event applied to Postgres.";
    CHECKPOINT_AGE_SECONDS = "mongo2pg_checkpoint_age_seconds", Gauge, ["collection"],
        "Seconds since the stream's checkpoint was last written to Postgres.";
    EVENTS_READ_TOTAL = "mongo2pg_events_read_total", Counter, ["collection", "op"],
        "Change events and snapshot documents read from MongoDB.";
    EVENTS_APPLIED_TOTAL = "mongo2pg_events_applied_total", Counter, ["collection", "op"],
        "Change events and snapshot documents committed to Postgres.";
    EVENTS_GAPPED_TOTAL = "mongo2pg_events_gapped_total", Counter, ["collection", "op"],
        "Change events that could not be applied and were recorded in the gaps table.";
    ROWS_WRITTEN_TOTAL = "mongo2pg_rows_written_total", Counter, ["table"],
        "Rows inserted, updated or deleted in Postgres, by target table (child tables included).";
    BATCH_SIZE_EVENTS = "mongo2pg_batch_size_events", Histogram, ["collection"],
        "Number of events per committed batch.";
    BATCH_DURATION_SECONDS = "mongo2pg_batch_duration_seconds", Histogram, ["collection"],
        "Time to apply and commit one batch transaction in Postgres.";
    POSTGRES_TRANSACTION_RETRIES_TOTAL = "mongo2pg_postgres_transaction_retries_total", Counter, ["collection"],
        "Batch transactions retried after a transient Postgres error.";
    STREAM_RESTARTS_TOTAL = "mongo2pg_stream_restarts_total", Counter, ["collection", "reason"],
        "Change stream restarts from the checkpoint, by cause.";
    OPEN_GAPS = "mongo2pg_open_gaps", Gauge, ["collection", "kind"],
        "Gaps currently open in the gaps table, refreshed periodically from Postgres.";
    SNAPSHOT_DOCUMENTS_COPIED_TOTAL = "mongo2pg_snapshot_documents_copied_total", Counter, ["collection"],
        "Documents copied by the initial or targeted snapshot.";
    SNAPSHOT_DOCUMENTS_REMAINING = "mongo2pg_snapshot_documents_remaining", Gauge, ["collection"],
        "Documents the running snapshot still has to copy (an estimate; 0 when no snapshot runs).";
    ID_MAP_CACHE_HITS_TOTAL = "mongo2pg_id_map_cache_hits_total", Counter, ["collection"],
        "Legacy ids resolved from the in-memory id_map cache.";
    ID_MAP_CACHE_MISSES_TOTAL = "mongo2pg_id_map_cache_misses_total", Counter, ["collection"],
        "Legacy ids that had to be looked up or allocated in the id_map table.";
    RESUME_TOKEN_RESETS_TOTAL = "mongo2pg_resume_token_resets_total", Counter, ["collection"],
        "Operator resume-token resets picked up by the running replicator.";
    STREAM_HELD = "mongo2pg_stream_held", Gauge, ["collection"],
        "1 when this process currently holds (runs) the collection's stream, 0 otherwise.";
    STREAM_STATE = "mongo2pg_stream_state", Gauge, ["collection", "state"],
        "1 for the stream's current state (starting, running, retrying, stopped_by_operator, failed), 0 for the others.";
    POSTGRES_UP = "mongo2pg_postgres_up", Gauge, [],
        "1 when the last Postgres health probe succeeded.";
    MONGO_UP = "mongo2pg_mongo_up", Gauge, [],
        "1 when the last MongoDB health probe succeeded.";
    VERIFY_MISMATCHES = "mongo2pg_verify_mismatches", Gauge, ["collection"],
        "Differences the last continuous-verification round of the collection found (sampled documents, count, money sums); 0 when clean.";
    VERIFY_LAST_CLEAN_TIMESTAMP_SECONDS = "mongo2pg_verify_last_clean_timestamp_seconds", Gauge, ["collection"],
        "Unix time when a continuous-verification round of the collection last finished clean (the process start time until then).";
    VERIFY_ROUNDS_TOTAL = "mongo2pg_verify_rounds_total", Counter, ["collection", "outcome"],
        "Continuous-verification rounds by outcome: clean, mismatch, incomplete (the stream was behind) or failed (an error).";
    VERIFY_ROUND_DURATION_SECONDS = "mongo2pg_verify_round_duration_seconds", Histogram, ["collection"],
        "Time one continuous-verification round of the collection took (sample, counts and sums).";
    VERIFY_DOCUMENTS_COMPARED_TOTAL = "mongo2pg_verify_documents_compared_total", Counter, ["collection"],
        "Sampled documents compared with their Postgres rows by continuous verification.";
    VERIFY_TOTALS_SKIPPED_TOTAL = "mongo2pg_verify_totals_skipped_total", Counter, ["collection"],
        "Rounds whose count and sum comparison was skipped because the collection changed during the scan.";
    BUILD_INFO = "mongo2pg_build_info", Gauge, ["version"],
        "Always 1; the version label says which build is running.";
}

/// Looks a metric family up by its exported name; histogram series names (`_bucket`, `_sum`,
/// `_count`) resolve to their histogram.
pub fn find(series_name: &str) -> Option<&'static MetricDef> {
    ALL.iter().find(|def| def.name == series_name).or_else(|| {
        ["_bucket", "_sum", "_count"].iter().find_map(|suffix| {
            let base = series_name.strip_suffix(suffix)?;
            ALL.iter()
                .find(|def| def.name == base && def.kind == MetricType::Histogram)
        })
    })
}
