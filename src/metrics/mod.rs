//! Everything operators see from a running mongo2pg: Prometheus metrics (every name defined in
//! `names`), the `Health` state, and the HTTP server exposing `/metrics`, `/healthz` and
//! `/readyz`.
//!
//! Typical wiring (`replicator::start`): `let metrics = Metrics::new()?; let health =
//! Health::new(metrics.clone()); let server = serve(addr, metrics.clone(), health.clone(),
//! shutdown).await?;` then `metrics.declare_collection(..)` per mapped collection, the update
//! methods from the pipeline and sink, and `health.set_stream(..)` / `set_postgres(..)` /
//! `set_mongo(..)` / `touch_watchdog()` from the supervisor and the housekeeping loops. This
//! module performs no database I/O.

pub mod dashboard;
pub mod health;
pub mod names;
mod positions;
mod registry;
pub mod server;
pub mod verify;

use std::sync::Arc;
use std::time::SystemTime;

pub use health::{Health, Liveness, Readiness, StreamState, StreamStatus};
pub use registry::{
    op_label, Metrics, MetricsError, RestartReason, BATCH_DURATION_BUCKETS, BATCH_SIZE_BUCKETS,
    OP_LABELS,
};
pub use server::{router, serve, ServeError, ServerHandle};

/// Source of wall-clock time for lag, checkpoint age and the watchdog; injectable for tests.
pub type Clock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// The real system clock.
pub fn system_clock() -> Clock {
    Arc::new(SystemTime::now)
}
