//! A real Prometheus (Debian's `prometheus` package; `PROMETHEUS_BIN` overrides the path) scrapes
//! the metrics endpoint while metrics are being updated: every Grafana dashboard query returns
//! data through Prometheus' HTTP API, the alert rules load, and lag read through Prometheus is
//! near zero for a collection kept fresh by heartbeats and large for a stuck one.
//! `scripts/check-deploy.sh` installs the package on a clean machine.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mongo2pg::event::{ClusterTime, Operation};
use mongo2pg::metrics::dashboard::{panel_queries, DASHBOARD_PATH};
use mongo2pg::metrics::verify::RoundResult;
use mongo2pg::metrics::{serve, Health, Metrics, RestartReason, StreamState};
use serde_json::Value;

use crate::support::prometheus::{prom_query as query, start_prometheus};
use crate::support::repo_path;

fn value_of(sample: &Value) -> f64 {
    sample["value"][1].as_str().unwrap().parse().unwrap()
}

fn unix_now() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as u32
}

/// What a running replicator would report: steady writes on `payments` and `users`, a stuck
/// `categories` stream, heartbeats keeping idle `users` fresh, a snapshot in progress,
/// verification rounds of `payments`.
fn drive(metrics: &Metrics, health: &Health, tick: u64) {
    let now = unix_now();
    health.touch_watchdog();
    metrics.events_read("payments", &Operation::Insert, 10);
    metrics.events_applied("payments", &Operation::Insert, 9);
    metrics.events_gapped("payments", &Operation::Insert, 1);
    metrics.rows_written("payments", 9);
    metrics.batch_committed("payments", 10, Duration::from_millis(12 + tick % 7));
    metrics.set_last_applied("payments", ClusterTime::new(now, 1));
    metrics.checkpoint_committed("payments", ClusterTime::new(now, 1));
    metrics.id_map_lookups("payments", 8, 2);
    metrics.checkpoint_committed("users", ClusterTime::new(now, 0));
    metrics.snapshot_copied("users", 100);
    metrics.set_snapshot_remaining("users", 5_000u64.saturating_sub(100 * tick));
    metrics.set_open_gaps([
        ("payments", "fk_missing", tick as i64),
        ("categories", "window_lost", 1),
    ]);
    metrics.verify().round_finished(
        "payments",
        &RoundResult {
            outcome: if tick.is_multiple_of(3) {
                "mismatch"
            } else {
                "clean"
            },
            mismatches: usize::from(tick.is_multiple_of(3)),
            compared: 20,
            totals_skipped: tick.is_multiple_of(2),
            duration: Duration::from_millis(150 + tick % 11),
            finished: SystemTime::now(),
        },
    );
    if tick.is_multiple_of(5) {
        metrics.postgres_transaction_retried("payments");
        metrics.stream_restarted("categories", RestartReason::MongoError);
        metrics.resume_token_reset("categories");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_query_returns_data_from_a_real_prometheus() {
    let metrics = Metrics::new().unwrap();
    let health = Health::new(metrics.clone());
    for (collection, tables) in [
        ("payments", vec!["payments"]),
        ("users", vec!["users", "user_passkeys"]),
        ("categories", vec!["categories"]),
    ] {
        metrics.declare_collection(collection, &tables);
        metrics
            .verify()
            .declare_collection(collection, SystemTime::now());
        metrics.set_stream_held(collection, true);
        health.set_stream(collection, StreamState::Running);
    }
    // categories committed its last checkpoint ten minutes ago and is stuck since.
    let ten_minutes_ago = unix_now() - 600;
    metrics.checkpoint_committed_at(
        "categories",
        ClusterTime::new(ten_minutes_ago, 0),
        UNIX_EPOCH + Duration::from_secs(u64::from(ten_minutes_ago)),
    );
    health.set_postgres(Ok(()));
    health.set_mongo(Ok(()));

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = serve(
        "127.0.0.1:0".parse().unwrap(),
        metrics.clone(),
        health.clone(),
        async {
            let _ = stopped.await;
        },
    )
    .await
    .unwrap();

    let driver = {
        let (metrics, health) = (metrics.clone(), health.clone());
        tokio::spawn(async move {
            for tick in 0.. {
                drive(&metrics, &health, tick);
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
    };

    let dir = tempfile::tempdir().unwrap();
    let (_prometheus, base) = start_prometheus(server.local_addr(), dir.path()).await;

    let dashboard = std::fs::read_to_string(repo_path(DASHBOARD_PATH)).unwrap();
    let queries = panel_queries(&dashboard).unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut pending: Vec<_> = queries.iter().collect();
    while !pending.is_empty() {
        let mut still = Vec::new();
        for q in pending {
            match query(&base, &q.for_prometheus("10s")).await {
                Some(result) if !result.is_empty() => {}
                _ => still.push(q),
            }
        }
        pending = still;
        if !pending.is_empty() {
            assert!(
                Instant::now() < deadline,
                "dashboard queries without data: {:#?}",
                pending
                    .iter()
                    .map(|q| (&q.panel, &q.expr))
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    let lag = query(&base, "mongo2pg_replication_lag_seconds")
        .await
        .unwrap();
    let lag_of = |collection: &str| {
        lag.iter()
            .find(|s| s["metric"]["collection"] == collection)
            .map(value_of)
            .unwrap()
    };
    assert!(
        lag_of("users") < 3.0,
        "heartbeats keep idle users fresh: {}",
        lag_of("users")
    );
    assert!(
        lag_of("categories") >= 600.0,
        "stuck categories: {}",
        lag_of("categories")
    );

    let rules: Value = reqwest::get(format!("{base}/api/v1/rules"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let loaded = rules["data"]["groups"][0]["rules"]
        .as_array()
        .map_or(0, Vec::len);
    let declared = std::fs::read_to_string(repo_path("deploy/prometheus/alerts.yml"))
        .unwrap()
        .matches("- alert: ")
        .count();
    assert!(declared >= 13, "alerts.yml declares {declared} alerts");
    assert_eq!(
        loaded, declared,
        "all alert rules load into a real Prometheus"
    );

    driver.abort();
    stop.send(()).unwrap();
    server.wait().await.unwrap();
}
