//! The HTTP endpoints operators and container probes use: `/metrics`, `/healthz`, `/readyz`.
//!
//! `serve` binds first (so port 0 works and the caller learns the real address), then runs the
//! axum server on a spawned task until the given shutdown future completes. Handlers only read
//! `Metrics` and `Health`; they never touch the databases, so a scrape can not slow replication.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use tokio::task::JoinHandle;

use super::{Health, Metrics};

/// Failure to start or run the HTTP server.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("could not listen for metrics on {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("the metrics server stopped with an I/O error")]
    Io(#[source] std::io::Error),
    #[error("the metrics server task panicked or was cancelled")]
    Task(#[source] tokio::task::JoinError),
}

/// A running server: its bound address and the task to await after shutdown.
#[derive(Debug)]
pub struct ServerHandle {
    local_addr: SocketAddr,
    task: JoinHandle<std::io::Result<()>>,
}

impl ServerHandle {
    /// The address actually bound (the real port when `serve` was given port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Waits until the server has stopped (after the shutdown future completed).
    pub async fn wait(self) -> Result<(), ServeError> {
        match self.task.await {
            Ok(result) => result.map_err(ServeError::Io),
            Err(join) => Err(ServeError::Task(join)),
        }
    }
}

#[derive(Clone)]
struct AppState {
    metrics: Arc<Metrics>,
    health: Arc<Health>,
}

/// The router, for callers that embed the endpoints in their own server.
pub fn router(metrics: Arc<Metrics>, health: Arc<Health>) -> Router {
    Router::new()
        .route("/metrics", get(metrics_endpoint))
        .route("/healthz", get(healthz_endpoint))
        .route("/readyz", get(readyz_endpoint))
        .with_state(AppState { metrics, health })
}

/// Binds `addr` and serves the endpoints until `shutdown` completes. Returns once listening.
pub async fn serve<F>(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    shutdown: F,
) -> Result<ServerHandle, ServeError>
where
    F: Future<Output = ()> + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })?;
    let local_addr = listener
        .local_addr()
        .map_err(|source| ServeError::Bind { addr, source })?;
    let app = router(metrics, health);
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
    });
    tracing::info!(addr = %local_addr, "serving /metrics, /healthz and /readyz");
    Ok(ServerHandle { local_addr, task })
}

async fn metrics_endpoint(State(app): State<AppState>) -> Response {
    match app.metrics.render() {
        Ok(text) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)],
            text,
        )
            .into_response(),
        Err(err) => {
            tracing::error!(error = %err, "metrics encoding failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "metrics encoding failed\n",
            )
                .into_response()
        }
    }
}

async fn healthz_endpoint(State(app): State<AppState>) -> Response {
    let liveness = app.health.liveness();
    let status = if liveness.alive {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(liveness)).into_response()
}

async fn readyz_endpoint(State(app): State<AppState>) -> Response {
    let readiness = app.health.readiness();
    let status = if readiness.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(readiness)).into_response()
}
