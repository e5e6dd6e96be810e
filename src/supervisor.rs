//! Starts one pipeline per mapped collection and keeps it running: transient errors restart the
//! stream from its checkpoint with exponential backoff (the `backon` crate; the one retry policy of
//! the process), fatal errors stop that stream only and tell the operator what to do. Also runs the
//! readiness probes and the periodic housekeeping tasks.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{error, info, warn, Instrument};

use crate::error::{classify, reason_label, Disposition, StreamError};
use crate::pipeline::{spawn_reader, BatchLimits, Consumer, StreamExit};
use crate::source::{StartAt, StreamOptions};

/// Minimum and maximum delay between restarts of a failing stream.
pub const RESTART_MIN_DELAY: Duration = Duration::from_millis(200);
pub const RESTART_MAX_DELAY: Duration = Duration::from_secs(30);
/// A run that lasted this long resets the backoff.
pub const HEALTHY_RUN: Duration = Duration::from_secs(30);

/// Exponential backoff with jitter, unbounded in count (a stream keeps trying until shutdown).
pub fn restart_backoff() -> impl Iterator<Item = Duration> {
    ExponentialBuilder::default()
        .with_min_delay(RESTART_MIN_DELAY)
        .with_max_delay(RESTART_MAX_DELAY)
        .with_jitter()
        .without_max_times()
        .build()
}

/// Waits for a shutdown signal or the given duration; true if shutdown was requested.
pub async fn sleep_or_shutdown(d: Duration, shutdown: &mut watch::Receiver<bool>) -> bool {
    if *shutdown.borrow() {
        return true;
    }
    tokio::select! {
        _ = tokio::time::sleep(d) => false,
        _ = shutdown.changed() => true,
    }
}
