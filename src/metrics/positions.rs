//! Replication lag and checkpoint age, computed when Prometheus scrapes.
//!
//! The pipeline reports each committed checkpoint (its cluster time and when it was written),
//! the change events' `wallTime` (milliseconds) where MongoDB sends it, and idle heartbeats with
//! nothing left to apply; this collector turns the stored marks into `now - source time applied`
//! and `now - written at` at gather time. A stuck stream therefore shows lag and age growing on every scrape, while an idle
//! stream whose heartbeats keep advancing the checkpoint stays near zero. Nothing here blocks for
//! longer than a map lookup.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{GaugeVec, Opts};

use super::names;
use super::registry::MetricsError;
use super::Clock;
use crate::event::ClusterTime;

/// The newest checkpoint a stream committed, and how far in source time it has applied
/// everything.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Mark {
    /// Source time up to which everything the stream read is in Postgres.
    applied_until: SystemTime,
    written_at: SystemTime,
}

/// A Prometheus collector exporting `replication_lag_seconds` and `checkpoint_age_seconds`.
#[derive(Clone)]
pub(crate) struct PositionCollector {
    marks: Arc<Mutex<HashMap<String, Mark>>>,
    lag: GaugeVec,
    age: GaugeVec,
    clock: Clock,
}

fn seconds_between(earlier: SystemTime, later: SystemTime) -> f64 {
    // A clock that stepped backwards yields 0, never a negative lag.
    later
        .duration_since(earlier)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

impl PositionCollector {
    pub(crate) fn new(clock: Clock) -> Result<Self, MetricsError> {
        let gauge = |def: &names::MetricDef| {
            GaugeVec::new(Opts::new(def.name, def.help), def.labels).map_err(|source| {
                MetricsError::Register {
                    name: def.name,
                    source,
                }
            })
        };
        Ok(PositionCollector {
            marks: Arc::new(Mutex::new(HashMap::new())),
            lag: gauge(&names::REPLICATION_LAG_SECONDS)?,
            age: gauge(&names::CHECKPOINT_AGE_SECONDS)?,
            clock,
        })
    }

    pub(crate) fn committed_now(&self, collection: &str, cluster_time: ClusterTime) {
        let now = (self.clock)();
        self.committed_at(collection, cluster_time, now);
    }

    /// Stores the mark. The last report wins: the sink already keeps checkpoints forward-only in
    /// SQL, and an operator's token reset moves one backwards on purpose.
    pub(crate) fn committed_at(
        &self,
        collection: &str,
        cluster_time: ClusterTime,
        written_at: SystemTime,
    ) {
        let mut marks = self.marks.lock().unwrap_or_else(PoisonError::into_inner);
        marks.insert(
            collection.to_string(),
            Mark {
                applied_until: cluster_time.to_system_time(),
                written_at,
            },
        );
    }

    /// Everything up to source time `at` is applied (a committed event's `wallTime`, finer than
    /// its cluster-time second, or an idle heartbeat with nothing pending). Moves the lag mark
    /// forward only, and only for a stream that has a checkpoint.
    pub(crate) fn applied_until(&self, collection: &str, at: SystemTime) {
        let mut marks = self.marks.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(mark) = marks.get_mut(collection) {
            mark.applied_until = mark.applied_until.max(at);
        }
    }

    pub(crate) fn forget(&self, collection: &str) {
        let mut marks = self.marks.lock().unwrap_or_else(PoisonError::into_inner);
        marks.remove(collection);
        // Removing a series that was never exported is not an error worth reporting.
        let _ = self.lag.remove_label_values(&[collection]);
        let _ = self.age.remove_label_values(&[collection]);
    }

    fn refresh(&self) {
        let now = (self.clock)();
        let marks = self.marks.lock().unwrap_or_else(PoisonError::into_inner);
        for (collection, mark) in marks.iter() {
            let lag = seconds_between(mark.applied_until, now);
            self.lag.with_label_values(&[collection]).set(lag);
            let age = seconds_between(mark.written_at, now);
            self.age.with_label_values(&[collection]).set(age);
        }
    }
}

trait ToSystemTime {
    fn to_system_time(self) -> SystemTime;
}

impl ToSystemTime for ClusterTime {
    fn to_system_time(self) -> SystemTime {
        SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(u64::from(self.seconds()))
    }
}

impl Collector for PositionCollector {
    fn desc(&self) -> Vec<&Desc> {
        let mut descs = self.lag.desc();
        descs.extend(self.age.desc());
        descs
    }

    fn collect(&self) -> Vec<MetricFamily> {
        self.refresh();
        let mut families = self.lag.collect();
        families.extend(self.age.collect());
        families
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn lag_of(c: &PositionCollector, collection: &str) -> f64 {
        c.refresh();
        c.lag.with_label_values(&[collection]).get()
    }

    #[test]
    fn lag_counts_from_the_finest_source_time_applied_and_never_moves_back() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let now = t0 + Duration::from_millis(2_750);
        let clock: Clock = Arc::new(move || now);
        let c = PositionCollector::new(clock).expect("collector");
        // Without a checkpoint there is nothing to report for the stream.
        c.applied_until("users", t0);
        assert!(c.marks.lock().expect("marks").is_empty());
        c.committed_at("users", ClusterTime::new(1_800_000_000, 1), t0);
        assert_eq!(lag_of(&c, "users"), 2.75);
        // A wallTime 600 ms into that second, then a heartbeat two seconds on.
        c.applied_until("users", t0 + Duration::from_millis(600));
        assert!((lag_of(&c, "users") - 2.15).abs() < 1e-9);
        c.applied_until("users", t0 + Duration::from_secs(2));
        assert!((lag_of(&c, "users") - 0.75).abs() < 1e-9);
        // An older report does not move it back.
        c.applied_until("users", t0);
        assert!((lag_of(&c, "users") - 0.75).abs() < 1e-9);
    }
}
