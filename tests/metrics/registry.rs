//! The metrics registry: scrape-time lag and checkpoint age, bounded labels, zero series for
//! declared collections, the open-gaps refresh, and the name table being the whole truth.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use mongo2pg::event::{ClusterTime, Operation};
use mongo2pg::metrics::{names, Clock, Metrics, RestartReason};

/// A clock the test moves by hand.
#[derive(Clone)]
struct ManualClock(Arc<Mutex<SystemTime>>);

impl ManualClock {
    fn at_unix(seconds: u64) -> Self {
        ManualClock(Arc::new(Mutex::new(
            SystemTime::UNIX_EPOCH + Duration::from_secs(seconds),
        )))
    }
    fn advance(&self, by: Duration) {
        let mut now = self.0.lock().unwrap();
        *now += by;
    }
    fn clock(&self) -> Clock {
        let inner = self.0.clone();
        Arc::new(move || *inner.lock().unwrap())
    }
}

/// The value of the one series whose name and labels match exactly, as rendered for /metrics.
fn sample(metrics: &Metrics, series: &str) -> Option<f64> {
    let text = metrics.render().unwrap();
    text.lines().find_map(|line| {
        let (name, value) = line.rsplit_once(' ')?;
        (name == series).then(|| value.parse().unwrap())
    })
}

const NOW: u64 = 1_800_000_000;

#[test]
fn lag_grows_while_the_checkpoint_is_stuck_and_falls_when_a_heartbeat_advances_it() {
    let clock = ManualClock::at_unix(NOW);
    let metrics = Metrics::with_clock(clock.clock()).unwrap();
    let lag = r#"mongo2pg_replication_lag_seconds{collection="users"}"#;

    metrics.checkpoint_committed("users", ClusterTime::new((NOW - 2) as u32, 7));
    assert_eq!(sample(&metrics, lag), Some(2.0));

    clock.advance(Duration::from_secs(90));
    assert_eq!(
        sample(&metrics, lag),
        Some(92.0),
        "stuck stream: lag keeps growing"
    );

    metrics.checkpoint_committed("users", ClusterTime::new((NOW + 89) as u32, 1));
    assert_eq!(
        sample(&metrics, lag),
        Some(1.0),
        "idle heartbeat: lag back near zero"
    );
}

#[test]
fn checkpoint_age_counts_from_the_last_write_not_from_the_cluster_time() {
    let clock = ManualClock::at_unix(NOW);
    let metrics = Metrics::with_clock(clock.clock()).unwrap();
    let age = r#"mongo2pg_checkpoint_age_seconds{collection="payments"}"#;
    let written_at = SystemTime::UNIX_EPOCH + Duration::from_secs(NOW - 30);
    metrics.checkpoint_committed_at(
        "payments",
        ClusterTime::new((NOW - 3600) as u32, 0),
        written_at,
    );

    assert_eq!(sample(&metrics, age), Some(30.0));
    assert_eq!(
        sample(
            &metrics,
            r#"mongo2pg_replication_lag_seconds{collection="payments"}"#
        ),
        Some(3600.0)
    );
    clock.advance(Duration::from_secs(15));
    assert_eq!(sample(&metrics, age), Some(45.0));
}

#[test]
fn a_cluster_time_ahead_of_the_local_clock_reports_zero_lag_not_negative() {
    let clock = ManualClock::at_unix(NOW);
    let metrics = Metrics::with_clock(clock.clock()).unwrap();
    metrics.checkpoint_committed("users", ClusterTime::new((NOW + 5) as u32, 0));
    assert_eq!(
        sample(
            &metrics,
            r#"mongo2pg_replication_lag_seconds{collection="users"}"#
        ),
        Some(0.0)
    );
}

#[test]
fn forgetting_a_checkpoint_removes_its_lag_series() {
    let clock = ManualClock::at_unix(NOW);
    let metrics = Metrics::with_clock(clock.clock()).unwrap();
    metrics.checkpoint_committed("users", ClusterTime::new(NOW as u32, 0));
    metrics.forget_checkpoint("users");
    assert_eq!(
        sample(
            &metrics,
            r#"mongo2pg_replication_lag_seconds{collection="users"}"#
        ),
        None
    );
    assert_eq!(
        sample(
            &metrics,
            r#"mongo2pg_checkpoint_age_seconds{collection="users"}"#
        ),
        None
    );
}

#[test]
fn a_declared_collection_exports_zero_series_before_any_event() {
    let metrics = Metrics::new().unwrap();
    metrics.declare_collection("users", &["users", "user_passkeys"]);

    for series in [
        r#"mongo2pg_events_read_total{collection="users",op="insert"}"#,
        r#"mongo2pg_events_applied_total{collection="users",op="delete"}"#,
        r#"mongo2pg_events_gapped_total{collection="users",op="update"}"#,
        r#"mongo2pg_rows_written_total{table="user_passkeys"}"#,
        r#"mongo2pg_stream_restarts_total{collection="users",reason="history_lost"}"#,
        r#"mongo2pg_open_gaps{collection="users",kind="window_lost"}"#,
        r#"mongo2pg_open_gaps{collection="users",kind="fk_missing"}"#,
        r#"mongo2pg_snapshot_documents_remaining{collection="users"}"#,
        r#"mongo2pg_stream_held{collection="users"}"#,
        r#"mongo2pg_batch_duration_seconds_count{collection="users"}"#,
    ] {
        assert_eq!(sample(&metrics, series), Some(0.0), "{series}");
    }
}

#[test]
fn counters_add_exactly_what_the_pipeline_reports() {
    let metrics = Metrics::new().unwrap();
    metrics.events_read("payments", &Operation::Insert, 5);
    metrics.events_read("payments", &Operation::Insert, 2);
    metrics.events_applied("payments", &Operation::Insert, 6);
    metrics.events_gapped("payments", &Operation::Insert, 1);
    metrics.rows_written("payments", 6);
    metrics.postgres_transaction_retried("payments");
    metrics.stream_restarted("payments", RestartReason::HistoryLost);
    metrics.snapshot_copied("payments", 1000);
    metrics.set_snapshot_remaining("payments", 250);
    metrics.id_map_lookups("users", 9, 3);
    metrics.resume_token_reset("payments");
    metrics.set_stream_held("payments", true);
    metrics.set_last_applied("payments", ClusterTime::new(1_700_000_123, 4));

    let expect = [
        (
            r#"mongo2pg_events_read_total{collection="payments",op="insert"}"#,
            7.0,
        ),
        (
            r#"mongo2pg_events_applied_total{collection="payments",op="insert"}"#,
            6.0,
        ),
        (
            r#"mongo2pg_events_gapped_total{collection="payments",op="insert"}"#,
            1.0,
        ),
        (r#"mongo2pg_rows_written_total{table="payments"}"#, 6.0),
        (
            r#"mongo2pg_postgres_transaction_retries_total{collection="payments"}"#,
            1.0,
        ),
        (
            r#"mongo2pg_stream_restarts_total{collection="payments",reason="history_lost"}"#,
            1.0,
        ),
        (
            r#"mongo2pg_snapshot_documents_copied_total{collection="payments"}"#,
            1000.0,
        ),
        (
            r#"mongo2pg_snapshot_documents_remaining{collection="payments"}"#,
            250.0,
        ),
        (
            r#"mongo2pg_id_map_cache_hits_total{collection="users"}"#,
            9.0,
        ),
        (
            r#"mongo2pg_id_map_cache_misses_total{collection="users"}"#,
            3.0,
        ),
        (
            r#"mongo2pg_resume_token_resets_total{collection="payments"}"#,
            1.0,
        ),
        (r#"mongo2pg_stream_held{collection="payments"}"#, 1.0),
        (
            r#"mongo2pg_last_applied_cluster_time_seconds{collection="payments"}"#,
            1_700_000_123.0,
        ),
    ];
    for (series, value) in expect {
        assert_eq!(sample(&metrics, series), Some(value), "{series}");
    }
}

#[test]
fn batch_histograms_put_observations_in_the_right_buckets() {
    let metrics = Metrics::new().unwrap();
    metrics.batch_committed("users", 150, Duration::from_millis(40));
    metrics.batch_committed("users", 3, Duration::from_millis(2));

    let series = |s: &str| sample(&metrics, s);
    assert_eq!(
        series(r#"mongo2pg_batch_size_events_bucket{collection="users",le="100"}"#),
        Some(1.0)
    );
    assert_eq!(
        series(r#"mongo2pg_batch_size_events_bucket{collection="users",le="200"}"#),
        Some(2.0)
    );
    assert_eq!(
        series(r#"mongo2pg_batch_size_events_sum{collection="users"}"#),
        Some(153.0)
    );
    assert_eq!(
        series(r#"mongo2pg_batch_duration_seconds_bucket{collection="users",le="0.025"}"#),
        Some(1.0)
    );
    assert_eq!(
        series(r#"mongo2pg_batch_duration_seconds_bucket{collection="users",le="0.05"}"#),
        Some(2.0)
    );
    assert_eq!(
        series(r#"mongo2pg_batch_duration_seconds_count{collection="users"}"#),
        Some(2.0)
    );
}

#[test]
fn unknown_operations_share_one_other_label_so_cardinality_stays_bounded() {
    let metrics = Metrics::new().unwrap();
    metrics.events_read("users", &Operation::Other("createIndexes".into()), 1);
    metrics.events_read("users", &Operation::Other("modify".into()), 1);
    assert_eq!(
        sample(
            &metrics,
            r#"mongo2pg_events_read_total{collection="users",op="other"}"#
        ),
        Some(2.0)
    );
    assert!(!metrics.render().unwrap().contains("createIndexes"));
}

#[test]
fn open_gaps_that_leave_the_gaps_table_drop_to_zero() {
    let metrics = Metrics::new().unwrap();
    metrics.set_open_gaps([("payments", "fk_missing", 4), ("users", "wrong_type", 1)]);
    metrics.set_open_gaps([("payments", "fk_missing", 2)]);

    assert_eq!(
        sample(
            &metrics,
            r#"mongo2pg_open_gaps{collection="payments",kind="fk_missing"}"#
        ),
        Some(2.0)
    );
    assert_eq!(
        sample(
            &metrics,
            r#"mongo2pg_open_gaps{collection="users",kind="wrong_type"}"#
        ),
        Some(0.0)
    );
}

#[test]
fn build_info_carries_the_crate_version() {
    let metrics = Metrics::new().unwrap();
    let series = format!(
        "mongo2pg_build_info{{version=\"{}\"}}",
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(sample(&metrics, &series), Some(1.0));
}

#[test]
fn two_instances_do_not_share_values() {
    let a = Metrics::new().unwrap();
    let b = Metrics::new().unwrap();
    a.rows_written("users", 3);
    assert_eq!(
        sample(&a, r#"mongo2pg_rows_written_total{table="users"}"#),
        Some(3.0)
    );
    assert_eq!(
        sample(&b, r#"mongo2pg_rows_written_total{table="users"}"#),
        None
    );
}

#[test]
fn exported_families_are_exactly_the_name_table() {
    let metrics = Metrics::new().unwrap();
    let health = mongo2pg::metrics::Health::new(metrics.clone());
    metrics.declare_collection("users", &["users"]);
    metrics
        .verify()
        .declare_collection("users", std::time::SystemTime::now());
    metrics.checkpoint_committed("users", ClusterTime::new(1, 0));
    metrics.set_last_applied("users", ClusterTime::new(1, 0));
    health.set_stream("users", mongo2pg::metrics::StreamState::Running);

    let exported: BTreeSet<String> = metrics
        .registry()
        .gather()
        .iter()
        .map(|f| f.name().to_string())
        .collect();
    let declared: BTreeSet<String> = names::ALL.iter().map(|d| d.name.to_string()).collect();
    assert_eq!(exported, declared);

    for family in metrics.registry().gather() {
        let def = names::find(family.name()).unwrap();
        for metric in family.get_metric() {
            let labels: Vec<&str> = metric.get_label().iter().map(|l| l.name()).collect();
            assert_eq!(labels, def.labels, "labels of {}", def.name);
        }
    }
}

#[test]
fn every_name_uses_the_namespace_and_base_units() {
    for def in names::ALL {
        assert!(def.name.starts_with("mongo2pg_"), "{}", def.name);
        for forbidden in ["_ms", "_us", "_milliseconds", "_minutes", "_bytes_kb"] {
            assert!(
                !def.name.contains(forbidden),
                "{} uses a non-base unit",
                def.name
            );
        }
        let is_counter = def.kind == names::MetricType::Counter;
        assert_eq!(
            def.name.ends_with("_total"),
            is_counter,
            "{}: _total iff counter",
            def.name
        );
    }
}
