//! Keeps one stream running: each failure goes through the failure policy (`policy`), and the
//! stream restarts from its checkpoint with exponential backoff and jitter (the `backon` crate),
//! restarts at once (an operator reset), runs the history-lost handling, or stops and waits for
//! an operator's reset. It does nothing else: one stream's life is `pipeline::stream`, process
//! assembly is `replicator`, periodic tasks are `housekeeping`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};
use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::error::StreamError;
use crate::metrics::{RestartReason, StreamState};
use crate::pipeline::stream::run_stream_once;
use crate::pipeline::StreamExit;
use crate::policy::{self, Action};
use crate::replicator::RunContext;
use crate::sink::checkpoint;
use crate::sink::connect::connect_pg;

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
/// How often a standby replica tries to take a stream's lease.
pub const LEASE_RETRY_INTERVAL: Duration = Duration::from_secs(2);

/// Keep one stream running until shutdown; every failure goes through `policy::decide`.
pub async fn supervise_stream(
    ctx: Arc<RunContext>,
    collection: String,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut backoff = restart_backoff();
    loop {
        let started = Instant::now();
        ctx.health.set_stream(&collection, StreamState::Starting);
        let err = match run_stream_once(&ctx, &collection, shutdown.clone()).await {
            Ok(StreamExit::Shutdown) => break,
            Ok(StreamExit::Restart) => {
                ctx.metrics
                    .stream_restarted(&collection, RestartReason::TokenReset);
                continue;
            }
            Ok(StreamExit::Standby) => {
                ctx.metrics.set_stream_held(&collection, false);
                ctx.health.set_stream(&collection, StreamState::Standby);
                if sleep_or_shutdown(LEASE_RETRY_INTERVAL, &mut shutdown).await {
                    break;
                }
                continue;
            }
            Err(err) => err,
        };
        let decision = policy::decide(&collection, &err);
        ctx.metrics.stream_restarted(&collection, decision.reason);
        let (err, decision) = match &err {
            StreamError::HistoryLost { message, .. } => {
                match history_lost(&ctx, &collection, message).await {
                    Ok(None) => continue,
                    Ok(Some(command)) => {
                        let reason = format!("change stream history lost: {message}; a window_lost gap records the skipped window; run `{command}`");
                        error!(%reason, "stream stopped");
                        ctx.health
                            .set_stream(&collection, StreamState::Failed { reason });
                        if wait_for_reset(&ctx, &collection, &mut shutdown).await {
                            break;
                        }
                        continue;
                    }
                    // Recording the window or the re-copy failed: that failure decides.
                    Err(e) => {
                        let d = policy::decide(&collection, &e);
                        (e, d)
                    }
                }
            }
            _ => (err, decision),
        };
        match decision.action {
            Action::Stop => {
                let advice = decision.advice.unwrap_or_default();
                error!(error = %err, advice = %advice, "stream stopped");
                ctx.health.set_stream(
                    &collection,
                    StreamState::Failed {
                        reason: format!("{err}; {advice}"),
                    },
                );
                if wait_for_reset(&ctx, &collection, &mut shutdown).await {
                    break;
                }
            }
            Action::RetryWithBackoff | Action::RestartNow | Action::RecoverHistory => {
                if started.elapsed() >= HEALTHY_RUN {
                    backoff = restart_backoff();
                }
                let delay = if decision.action == Action::RestartNow {
                    Duration::ZERO
                } else {
                    backoff.next().unwrap_or(RESTART_MAX_DELAY)
                };
                warn!(error = %err, reason = decision.label, delay_ms = delay.as_millis() as u64, "stream failed; restarting from its checkpoint");
                ctx.health.set_stream(
                    &collection,
                    StreamState::Retrying {
                        reason: err.to_string(),
                    },
                );
                if sleep_or_shutdown(delay, &mut shutdown).await {
                    break;
                }
            }
        }
    }
    ctx.metrics.set_stream_held(&collection, false);
}

/// History is gone for this stream: record the lost window, then re-sync (`when_needed`) and
/// return None, or return the command the operator must run.
async fn history_lost(
    ctx: &RunContext,
    collection: &str,
    message: &str,
) -> Result<Option<String>, StreamError> {
    let Some(spec) = ctx.mapping.config.stream_spec(collection) else {
        return Ok(None);
    };
    let members: Vec<_> = spec
        .collections
        .iter()
        .filter_map(|c| ctx.mapping.rules(c))
        .collect();
    let copy = crate::snapshot::StreamCopy {
        stream: &spec.name,
        collections: members,
        whole_database: spec.group,
    };
    let (mut pg, _conn) = connect_pg(&ctx.pg_url)
        .await
        .map_err(StreamError::PgConnect)?;
    // Only the stream's lease holder records the lost window and re-copies; when another
    // replica took the stream meanwhile, it handles the loss itself.
    if !checkpoint::try_take_lease(&pg, &ctx.names.checkpoints, &spec.name).await? {
        info!("another replica holds the stream; it handles the lost history");
        return Ok(None);
    }
    let mut sink = ctx.new_sink();
    let snap = crate::snapshot::SnapshotContext {
        mongo: &ctx.mongo,
        database: &ctx.mapping.config.source.database,
        pg: &mut pg,
        sink: &mut sink,
        names: &ctx.names,
        pg_url: Some(&ctx.pg_url),
    };
    let options = ctx.snapshot_options();
    let mut cb = |_: &str, _: &crate::snapshot::SnapshotProgress| {};
    let outcome = crate::snapshot::handle_stream_history_lost(
        snap,
        ctx.mapping.config.snapshot.mode,
        &copy,
        &options,
        message,
        &mut cb,
    )
    .await
    .map_err(|source| StreamError::Snapshot {
        collection: collection.to_string(),
        source: Box::new(source),
    })?;
    Ok(outcome.operator_command)
}

/// A stopped stream waits here until an operator resets its position (`mongo2pg tokens reset`
/// notifies the running process) and then starts again. True when shutting down instead.
pub async fn wait_for_reset(
    ctx: &RunContext,
    collection: &str,
    shutdown: &mut watch::Receiver<bool>,
) -> bool {
    ctx.metrics.set_stream_held(collection, false);
    let Some(restart) = ctx.restart.get(collection).cloned() else {
        let _ = shutdown.wait_for(|stop| *stop).await;
        return true;
    };
    tokio::select! {
        _ = restart.notified() => {
            info!("position reset by an operator; starting the stream again");
            false
        }
        _ = shutdown.wait_for(|stop| *stop) => true,
    }
}
