//! The continuous-verification metrics (`mongo2pg_verify_*`): mismatches of the last round and
//! when a round was last clean, rounds by outcome, round duration, documents compared and
//! skipped totals. Registered in the same registry as every other metric; names come from
//! `names`. No I/O.

use std::time::{Duration, SystemTime};

use prometheus::{GaugeVec, HistogramVec, IntCounterVec, IntGaugeVec, Registry};

use super::names;
use super::registry::{counter_vec, histogram_vec, int_gauge_vec, opts, register, MetricsError};

/// Upper bounds of the round duration histogram (seconds).
pub const VERIFY_DURATION_BUCKETS: &[f64] = &[
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

/// The `outcome` label values of `mongo2pg_verify_rounds_total`.
pub const VERIFY_OUTCOMES: &[&str] = &["clean", "mismatch", "incomplete", "failed"];

/// What a finished round reports.
#[derive(Debug, Clone, Copy)]
pub struct RoundResult<'a> {
    /// `clean`, `mismatch` or `incomplete`.
    pub outcome: &'a str,
    pub mismatches: usize,
    /// Sampled documents compared.
    pub compared: u32,
    /// Counts and sums were skipped because the collection changed during the scan.
    pub totals_skipped: bool,
    pub duration: Duration,
    pub finished: SystemTime,
}

/// The continuous-verification series.
pub struct VerifyMetrics {
    mismatches: IntGaugeVec,
    last_clean: GaugeVec,
    rounds: IntCounterVec,
    duration: HistogramVec,
    compared: IntCounterVec,
    totals_skipped: IntCounterVec,
}

fn unix_seconds(at: SystemTime) -> f64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

impl VerifyMetrics {
    pub(super) fn register(registry: &Registry) -> Result<VerifyMetrics, MetricsError> {
        let def = &names::VERIFY_LAST_CLEAN_TIMESTAMP_SECONDS;
        Ok(VerifyMetrics {
            mismatches: int_gauge_vec(registry, &names::VERIFY_MISMATCHES)?,
            last_clean: register(registry, def, GaugeVec::new(opts(def), def.labels))?,
            rounds: counter_vec(registry, &names::VERIFY_ROUNDS_TOTAL)?,
            duration: histogram_vec(
                registry,
                &names::VERIFY_ROUND_DURATION_SECONDS,
                VERIFY_DURATION_BUCKETS,
            )?,
            compared: counter_vec(registry, &names::VERIFY_DOCUMENTS_COMPARED_TOTAL)?,
            totals_skipped: counter_vec(registry, &names::VERIFY_TOTALS_SKIPPED_TOTAL)?,
        })
    }

    /// Creates the collection's series when continuous verification starts: no mismatch yet,
    /// last clean = `started` (so "no clean round for an hour" counts from the start).
    pub fn declare_collection(&self, collection: &str, started: SystemTime) {
        self.mismatches.with_label_values(&[collection]).set(0);
        self.last_clean
            .with_label_values(&[collection])
            .set(unix_seconds(started));
        for outcome in VERIFY_OUTCOMES {
            self.rounds.with_label_values(&[collection, outcome]);
        }
        self.duration.with_label_values(&[collection]);
        self.compared.with_label_values(&[collection]);
        self.totals_skipped.with_label_values(&[collection]);
    }

    /// A round of the collection finished.
    pub fn round_finished(&self, collection: &str, round: &RoundResult<'_>) {
        self.rounds
            .with_label_values(&[collection, round.outcome])
            .inc();
        self.mismatches
            .with_label_values(&[collection])
            .set(i64::try_from(round.mismatches).unwrap_or(i64::MAX));
        if round.outcome == "clean" {
            self.last_clean
                .with_label_values(&[collection])
                .set(unix_seconds(round.finished));
        }
        self.compared
            .with_label_values(&[collection])
            .inc_by(u64::from(round.compared));
        if round.totals_skipped {
            self.totals_skipped.with_label_values(&[collection]).inc();
        }
        self.duration
            .with_label_values(&[collection])
            .observe(round.duration.as_secs_f64());
    }

    /// A round of the collection failed with an error (logged by the caller).
    pub fn round_failed(&self, collection: &str) {
        self.rounds.with_label_values(&[collection, "failed"]).inc();
    }
}
