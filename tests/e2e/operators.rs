//! The operators' view end to end: the real replicator (in-process, serving /metrics, /healthz and
//! /readyz) against mongosim and a fresh Postgres database with the reference schema and mapping,
//! scraped every second by a real Prometheus (Debian's `prometheus`; `PROMETHEUS_BIN` overrides).
//! Postgres is reached through a TCP proxy so an outage can be played without stopping the shared
//! server, and the Postgres URL carries a canary password that must never surface in the metrics,
//! the health bodies or the logs.
//!
//! Only the Postgres password is checked: mongosim implements no authentication, so a MongoDB URL
//! with credentials makes the driver's handshake fail before anything is replicated.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::support::e2e::{capture_logs, captured_logs, gauge_for, http_get, PgProxy};
use crate::support::prometheus::{prom_query, prom_scalar, prom_targets, start_prometheus};
use crate::support::{
    migrate, reference_config, repo_path, unique_name, wait_until, Source, TestDb,
};
use mongo2pg::config::Secret;
use mongo2pg::metrics::dashboard::{panel_queries, DASHBOARD_PATH};
use mongo2pg::replicator::{self, RunSettings};

const PG_PASSWORD: &str = "s3cr3t-canary";
const LAG: &str = "mongo2pg_replication_lag_seconds";
/// The collection nobody writes to during the run.
const IDLE: &str = "categories";
/// getMore wait = heartbeat period of an idle stream.
const HEARTBEAT: Duration = Duration::from_millis(1000);
/// "Near zero" for the lag of an idle collection.
const NEAR_ZERO_SECONDS: f64 = 5.0;

/// Everything the endpoints returned during the run, scanned for secrets at the end.
#[derive(Default)]
struct Seen(Vec<String>);

impl Seen {
    async fn get(&mut self, addr: SocketAddr, path: &str) -> Option<(u16, String)> {
        let got = http_get(addr, path).await;
        if let Some((_, body)) = &got {
            self.0.push(body.clone());
        }
        got
    }

    async fn lag(&mut self, addr: SocketAddr, collection: &str) -> Option<f64> {
        let (_, body) = self.get(addr, "/metrics").await?;
        gauge_for(&body, LAG, collection)
    }
}

/// Poll the idle collection's lag on /metrics until `want` holds (20 s deadline); returns it.
async fn lag_until(
    seen: &mut Seen,
    addr: SocketAddr,
    what: &str,
    want: impl Fn(f64) -> bool,
) -> f64 {
    let timeout = Duration::from_secs(20);
    let deadline = Instant::now() + timeout;
    loop {
        let lag = seen.lag(addr, IDLE).await;
        if let Some(v) = lag.filter(|v| want(*v)) {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for: {what} (last {lag:?})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Poll /readyz until it answers `status` (20 s deadline); returns the body.
async fn readyz_until(seen: &mut Seen, addr: SocketAddr, status: u16) -> String {
    let timeout = Duration::from_secs(20);
    let deadline = Instant::now() + timeout;
    loop {
        let got = seen.get(addr, "/readyz").await;
        match got {
            Some((s, body)) if s == status => return body,
            _ => assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting for /readyz {status}; last {got:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn operators_see_true_lag_dashboard_data_readiness_and_no_secrets() {
    capture_logs();
    let started = Instant::now();
    let source = Source::start().await;
    let sim = source.sim();
    let mdb = unique_name("e2e_ops_mongo");
    let db = TestDb::create("e2e_ops").await;
    db.apply_reference_schema().await;
    let mut config = reference_config(&mdb);
    config.stream.max_await_ms = HEARTBEAT.as_millis() as u64;
    // Continuous verification too, so its panels have data.
    config.verify = Some(mongo2pg::config::VerifyConfig {
        interval: Duration::from_secs(2),
        sample: 20,
        ..mongo2pg::config::VerifyConfig::default()
    });
    migrate(&db, &config).await;

    let proxy = PgProxy::start("127.0.0.1:5432").await;
    let pg_url = format!(
        "host=127.0.0.1 port={} user=postgres password={PG_PASSWORD} dbname={}",
        proxy.port, db.name
    );
    let replicator = replicator::start(RunSettings {
        mongo_url: Secret::new(source.uri.clone()),
        pg_url: Secret::new(pg_url),
        config,
        metrics_addr: Some("127.0.0.1:0".parse().unwrap()),
        holder: "e2e".into(),
    })
    .await
    .expect("replicator starts");
    let addr = replicator.metrics_addr().expect("metrics server bound");
    let mut seen = Seen::default();

    let prom_dir = tempfile::tempdir().unwrap();
    let (_prometheus, prom) = start_prometheus(addr, prom_dir.path()).await;

    // Workload: a user every 100 ms until stopped.
    let users = source.coll(&mdb, "users");
    let (stop_writes, mut writes_stopped) = tokio::sync::watch::channel(false);
    let writer = tokio::spawn(async move {
        let mut n = 0i64;
        while !*writes_stopped.borrow() {
            users
                .insert_one(bson::doc! {"email": format!("u{n}@example.com"), "points": n})
                .await
                .expect("insert a user");
            n += 1;
            let _ =
                tokio::time::timeout(Duration::from_millis(100), writes_stopped.changed()).await;
        }
        n
    });

    // 1. Every dashboard query returns data through Prometheus.
    let dashboard = std::fs::read_to_string(repo_path(DASHBOARD_PATH)).unwrap();
    let queries = panel_queries(&dashboard).unwrap();
    assert!(queries.len() >= 20, "dashboard queries: {}", queries.len());
    let mut pending: Vec<_> = queries.iter().collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !pending.is_empty() {
        let mut still = Vec::new();
        for q in pending {
            match prom_query(&prom, &q.for_prometheus("10s")).await {
                Some(result) if !result.is_empty() => {}
                _ => still.push(q),
            }
        }
        pending = still;
        if !pending.is_empty() {
            if Instant::now() > deadline {
                panic!(
                    "dashboard queries without data after {:?}: {:#?}\nprometheus targets: {}",
                    started.elapsed(),
                    pending
                        .iter()
                        .map(|q| (&q.panel, &q.expr))
                        .collect::<Vec<_>>(),
                    prom_targets(&prom).await
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    let applied = prom_scalar(
        &prom,
        "sum(mongo2pg_events_applied_total{collection=\"users\",op=\"insert\"})",
    )
    .await;
    assert!(
        applied.is_some_and(|v| v > 0.0),
        "inserted users are applied: {applied:?}"
    );
    let dashboard_ready = started.elapsed();

    // 2. The idle collection's lag stays near zero for several heartbeat periods.
    let idle_window = HEARTBEAT * 6;
    let window_start = Instant::now();
    let mut idle_max = 0.0f64;
    while window_start.elapsed() < idle_window {
        let lag = seen.lag(addr, IDLE).await;
        let lag = lag.unwrap_or_else(|| panic!("{LAG} for {IDLE} is exported"));
        assert!(
            lag < NEAR_ZERO_SECONDS,
            "idle {IDLE} lag {lag} s after {:?} without writes",
            started.elapsed()
        );
        idle_max = idle_max.max(lag);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let idle_seen_by_prometheus = prom_scalar(
        &prom,
        &format!("max_over_time({LAG}{{collection=\"{IDLE}\"}}[5s])"),
    )
    .await
    .expect("prometheus has the idle lag");
    assert!(
        idle_seen_by_prometheus < NEAR_ZERO_SECONDS,
        "prometheus saw idle lag {idle_seen_by_prometheus}"
    );
    let _ = stop_writes.send(true);
    let written = writer.await.unwrap();

    // 3. Pausing mongosim makes the lag rise, resuming brings it back down.
    sim.pause();
    let paused_at = Instant::now();
    let rise = NEAR_ZERO_SECONDS + 1.0;
    let _risen = lag_until(&mut seen, addr, "lag rises while mongosim is paused", |v| {
        v > rise
    })
    .await;
    let lag_query = format!("{LAG}{{collection=\"{IDLE}\"}}");
    wait_until(
        "prometheus sees the paused lag",
        Duration::from_secs(10),
        || {
            let (prom, q) = (prom.clone(), lag_query.clone());
            async move { prom_scalar(&prom, &q).await.is_some_and(|v| v > rise) }
        },
    )
    .await;
    let rose_after = paused_at.elapsed();
    sim.resume();
    let resumed_at = Instant::now();
    lag_until(&mut seen, addr, "lag returns near zero after resume", |v| {
        v < NEAR_ZERO_SECONDS
    })
    .await;
    let recovered_after = resumed_at.elapsed();

    // 4. /readyz follows Postgres through the proxy.
    let (status, body) = seen.get(addr, "/healthz").await.expect("healthz answers");
    assert_eq!(status, 200, "{body}");
    readyz_until(&mut seen, addr, 200).await;
    proxy.set_up(false);
    let outage_at = Instant::now();
    let not_ready_body = readyz_until(&mut seen, addr, 503).await;
    let went_503_after = outage_at.elapsed();
    assert!(
        not_ready_body.to_lowercase().contains("postgres"),
        "the not-ready body names postgres: {not_ready_body}"
    );
    proxy.set_up(true);
    let back_at = Instant::now();
    readyz_until(&mut seen, addr, 200).await;
    let went_200_after = back_at.elapsed();

    // Nothing was lost: every user written reaches Postgres, including one written after the outage.
    source
        .coll(&mdb, "users")
        .insert_one(bson::doc! {"email": "after-outage@example.com", "points": -1})
        .await
        .unwrap();
    let pg = db.client().await;
    wait_until(
        "every user reaches postgres",
        Duration::from_secs(20),
        || {
            let pg = &pg;
            async move { crate::support::count(pg, "SELECT count(*) FROM users").await == written + 1 }
        },
    )
    .await;
    seen.get(addr, "/metrics").await.expect("final scrape");

    // 5. No secret anywhere an operator can see it.
    replicator.shutdown().await;
    let logs = captured_logs();
    assert!(
        logs.lines()
            .any(|l| l.contains("WARN") && l.to_lowercase().contains("postgres")),
        "the logs scanned include the warnings of the postgres outage:\n{logs}"
    );
    for (what, text) in seen
        .0
        .iter()
        .map(|b| ("an endpoint body", b.as_str()))
        .chain([("the logs", logs.as_str())])
    {
        assert!(
            !text.contains(PG_PASSWORD),
            "{what} contains the postgres password:\n{text}"
        );
    }
    println!(
        "dashboard data after {dashboard_ready:?}; idle max lag {idle_max:.2}s (prometheus \
         {idle_seen_by_prometheus:.2}s); lag rose after {rose_after:?}, recovered after \
         {recovered_after:?}; 503 after {went_503_after:?}, 200 after {went_200_after:?}; \
         {} bodies and {} log lines scanned; total {:?}",
        seen.0.len(),
        logs.lines().count(),
        started.elapsed()
    );
    drop(proxy);
    source.stop().await;
    drop(db);
}
