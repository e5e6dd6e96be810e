//! The HTTP endpoints, served on port 0 and queried over real TCP: /metrics text exposition,
//! /healthz watchdog, /readyz per-stream readiness, redaction of secrets, clean shutdown.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use mongo2pg::metrics::{serve, Clock, Health, Metrics, ServerHandle, StreamState};
use serde_json::Value;
use tokio::sync::oneshot;

#[derive(Clone)]
struct ManualClock(Arc<Mutex<SystemTime>>);

impl ManualClock {
    fn new() -> Self {
        ManualClock(Arc::new(Mutex::new(
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
        )))
    }
    fn advance(&self, by: Duration) {
        *self.0.lock().unwrap() += by;
    }
    fn clock(&self) -> Clock {
        let inner = self.0.clone();
        Arc::new(move || *inner.lock().unwrap())
    }
}

struct Running {
    handle: ServerHandle,
    stop: oneshot::Sender<()>,
    base: String,
}

async fn start(metrics: Arc<Metrics>, health: Arc<Health>) -> Running {
    let (stop, stopped) = oneshot::channel::<()>();
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let handle = serve(addr, metrics, health, async move {
        let _ = stopped.await;
    })
    .await
    .unwrap();
    assert_ne!(
        handle.local_addr().port(),
        0,
        "port 0 resolves to the bound port"
    );
    let base = format!("http://{}", handle.local_addr());
    Running { handle, stop, base }
}

async fn get(url: &str) -> (u16, String) {
    let response = reqwest::get(url).await.unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

async fn get_json(url: &str) -> (u16, Value) {
    let (status, body) = get(url).await;
    (status, serde_json::from_str(&body).unwrap())
}

#[tokio::test]
async fn metrics_endpoint_serves_the_text_exposition_format() {
    let metrics = Metrics::new().unwrap();
    metrics.rows_written("payments", 12);
    let server = start(metrics.clone(), Health::new(metrics)).await;

    let response = reqwest::get(format!("{}/metrics", server.base))
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(content_type, "text/plain; version=0.0.4");
    let body = response.text().await.unwrap();
    assert!(
        body.contains("# TYPE mongo2pg_rows_written_total counter"),
        "{body}"
    );
    assert!(
        body.contains("mongo2pg_rows_written_total{table=\"payments\"} 12\n"),
        "{body}"
    );
    assert!(body.contains("mongo2pg_build_info{version="), "{body}");

    server.stop.send(()).unwrap();
    server.handle.wait().await.unwrap();
}

#[tokio::test]
async fn healthz_turns_503_when_the_supervisor_stops_touching_the_watchdog() {
    let clock = ManualClock::new();
    let metrics = Metrics::new().unwrap();
    let health = Health::with_clock(metrics.clone(), clock.clock(), Duration::from_secs(30));
    let server = start(metrics, health.clone()).await;
    let url = format!("{}/healthz", server.base);

    clock.advance(Duration::from_secs(20));
    let (status, body) = get_json(&url).await;
    assert_eq!(status, 200);
    assert_eq!(body["alive"], true);
    assert_eq!(body["watchdog_age_seconds"], 20.0);

    clock.advance(Duration::from_secs(11));
    let (status, body) = get_json(&url).await;
    assert_eq!(status, 503);
    assert_eq!(body["alive"], false);
    assert_eq!(body["watchdog_timeout_seconds"], 30.0);

    health.touch_watchdog();
    assert_eq!(get_json(&url).await.0, 200);
    server.stop.send(()).unwrap();
    server.handle.wait().await.unwrap();
}

#[tokio::test]
async fn readyz_needs_both_databases_and_every_stream_running_or_stopped_by_an_operator() {
    let metrics = Metrics::new().unwrap();
    let health = Health::new(metrics.clone());
    let server = start(metrics.clone(), health.clone()).await;
    let url = format!("{}/readyz", server.base);

    let (status, body) = get_json(&url).await;
    assert_eq!(status, 503, "nothing probed yet: {body}");
    assert_eq!(body["postgres"]["ok"], false);

    health.set_postgres(Ok(()));
    health.set_mongo(Ok(()));
    health.set_stream("users", StreamState::Starting);
    health.set_stream("payments", StreamState::Starting);
    let (status, body) = get_json(&url).await;
    assert_eq!(status, 503);
    assert_eq!(
        body["not_ready_because"],
        serde_json::json!(["stream payments is starting", "stream users is starting"])
    );

    health.set_stream("users", StreamState::Running);
    health.set_stream(
        "payments",
        StreamState::StoppedByOperator {
            reason: "paused for a token reset".into(),
        },
    );
    let (status, body) = get_json(&url).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["ready"], true);
    assert_eq!(
        body["streams"]["users"],
        serde_json::json!({"state": "running"})
    );
    assert_eq!(
        body["streams"]["payments"],
        serde_json::json!({"state": "stopped_by_operator", "reason": "paused for a token reset"})
    );

    health.set_stream(
        "users",
        StreamState::Retrying {
            reason: "mongo connection reset".into(),
        },
    );
    let (status, body) = get_json(&url).await;
    assert_eq!(status, 503);
    assert_eq!(body["streams"]["users"]["reason"], "mongo connection reset");

    health.set_stream("users", StreamState::Running);
    health.set_postgres(Err("connection refused".into()));
    let (status, body) = get_json(&url).await;
    assert_eq!(status, 503);
    assert_eq!(
        body["not_ready_because"],
        serde_json::json!(["postgres: connection refused"])
    );

    health.set_postgres(Ok(()));
    assert_eq!(
        get_json(&url).await.0,
        200,
        "ready again once postgres is back"
    );

    let (_, text) = get(&format!("{}/metrics", server.base)).await;
    assert!(text.contains("mongo2pg_postgres_up 1\n"), "{text}");
    assert!(text.contains(
        "mongo2pg_stream_state{collection=\"payments\",state=\"stopped_by_operator\"} 1\n"
    ));
    assert!(text.contains("mongo2pg_stream_state{collection=\"users\",state=\"retrying\"} 0\n"));

    server.stop.send(()).unwrap();
    server.handle.wait().await.unwrap();
}

#[tokio::test]
async fn failed_stream_is_not_ready_and_its_reason_never_shows_a_password() {
    let metrics = Metrics::new().unwrap();
    let health = Health::new(metrics.clone());
    health.set_postgres(Err(
        "could not connect to postgres://app:pg-S3cret@db:5432/market".into(),
    ));
    health.set_mongo(Ok(()));
    health.set_stream(
        "payments",
        StreamState::Failed {
            reason: "auth failed for mongodb://root:mongo-S3cret@m1/?rs=rs0".into(),
        },
    );
    let server = start(metrics, health).await;

    let (status, body) = get(&format!("{}/readyz", server.base)).await;
    assert_eq!(status, 503);
    assert!(!body.contains("S3cret"), "{body}");
    assert!(body.contains("postgres://app:***@db:5432/market"), "{body}");
    assert!(body.contains("mongodb://root:***@m1/?rs=rs0"), "{body}");

    server.stop.send(()).unwrap();
    server.handle.wait().await.unwrap();
}

#[tokio::test]
async fn shutdown_future_stops_the_server_and_frees_the_port() {
    let metrics = Metrics::new().unwrap();
    let server = start(metrics.clone(), Health::new(metrics)).await;
    let addr = server.handle.local_addr();
    server.stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), server.handle.wait())
        .await
        .expect("server stops within the deadline")
        .unwrap();
    assert!(reqwest::get(format!("http://{addr}/healthz"))
        .await
        .is_err());
}

#[tokio::test]
async fn binding_a_busy_port_is_reported_with_the_address() {
    let metrics = Metrics::new().unwrap();
    let first = start(metrics.clone(), Health::new(metrics.clone())).await;
    let busy = first.handle.local_addr();
    let err = serve(
        busy,
        metrics.clone(),
        Health::new(metrics),
        std::future::pending(),
    )
    .await
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("could not listen for metrics on {busy}")
    );
    first.stop.send(()).unwrap();
    first.handle.wait().await.unwrap();
}
