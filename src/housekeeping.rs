//! The replicator's periodic housekeeping, one loop each, every one ending at shutdown: readiness
//! probes and the liveness watchdog, the open-gaps gauge, the background gap retry (so
//! `fk_missing` gaps heal once their parent arrives), the listener that wakes a stream when an
//! operator resets it, and continuous verification (`[verify]`, rounds run by
//! `continuous_verify`). A failing round logs and tries again next time; no loop stops a stream.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tracing::{info, warn};

use crate::config::{redact_error, redact_secrets};
use crate::replicator::RunContext;
use crate::sink::connect::{connect_pg, AbortOnDrop};
use crate::sink::SinkError;
use crate::supervisor::{sleep_or_shutdown, RESTART_MAX_DELAY};

/// How often readiness probes run and the watchdog is touched.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(2);
/// How often the background gap retry runs, and the first retry delay of a fresh gap.
pub const GAP_RETRY_INTERVAL: Duration = Duration::from_secs(2);
pub const GAP_RETRY_MIN_DELAY: Duration = Duration::from_secs(1);
/// How often the open-gaps gauge is refreshed from the gaps table.
pub const GAPS_REFRESH_INTERVAL: Duration = Duration::from_secs(10);

/// Readiness probes and the liveness watchdog.
pub async fn probe_loop(ctx: Arc<RunContext>, mut shutdown: watch::Receiver<bool>) {
    let mut pg: Option<(tokio_postgres::Client, AbortOnDrop)> = None;
    loop {
        ctx.health.touch_watchdog();
        let pg_result = probe_pg(&ctx, &mut pg).await;
        ctx.health.set_postgres(pg_result);
        let mongo_result = tokio::time::timeout(
            PROBE_INTERVAL,
            ctx.mongo
                .database("admin")
                .run_command(bson::doc! {"ping": 1}),
        )
        .await
        .map_err(|_| "mongodb ping timed out".to_string())
        .and_then(|r| {
            r.map(|_| ())
                .map_err(|e| crate::source::connect::describe_mongo(&e))
        });
        ctx.health.set_mongo(mongo_result);
        if sleep_or_shutdown(PROBE_INTERVAL, &mut shutdown).await {
            return;
        }
    }
}

async fn probe_pg(
    ctx: &RunContext,
    pg: &mut Option<(tokio_postgres::Client, AbortOnDrop)>,
) -> Result<(), String> {
    if pg.as_ref().is_none_or(|(c, _)| c.is_closed()) {
        let connected = tokio::time::timeout(PROBE_INTERVAL, connect_pg(&ctx.pg_url)).await;
        *pg = match connected {
            Ok(Ok(c)) => Some(c),
            Ok(Err(e)) => return Err(redact_secrets(&e.to_string()).into_owned()),
            Err(_) => return Err("postgres connect timed out".into()),
        };
    }
    let Some((client, _)) = pg.as_ref() else {
        return Err("no postgres connection".into());
    };
    match tokio::time::timeout(PROBE_INTERVAL, client.simple_query("SELECT 1")).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => {
            *pg = None;
            Err(redact_secrets(&e.to_string()).into_owned())
        }
        Err(_) => {
            *pg = None;
            Err("postgres probe timed out".into())
        }
    }
}

/// Refresh the open-gaps gauge from the gaps table.
pub async fn gaps_gauge_loop(ctx: Arc<RunContext>, mut shutdown: watch::Receiver<bool>) {
    let mut pg: Option<(tokio_postgres::Client, AbortOnDrop)> = None;
    loop {
        if pg.as_ref().is_none_or(|(c, _)| c.is_closed()) {
            pg = connect_pg(&ctx.pg_url).await.ok();
        }
        if let Some((client, _)) = pg.as_ref() {
            match crate::sink::gaps::query::open_counts(client, &ctx.names.gaps).await {
                Ok(counts) => {
                    ctx.metrics
                        .set_open_gaps(counts.iter().map(|(c, k, n)| (c.as_str(), k.as_str(), *n)));
                }
                Err(e) => {
                    debug_log_gaps_error(&e);
                    pg = None;
                }
            }
        }
        if sleep_or_shutdown(GAPS_REFRESH_INTERVAL, &mut shutdown).await {
            return;
        }
    }
}

fn debug_log_gaps_error(e: &SinkError) {
    tracing::debug!(error = %e, "refreshing the open-gaps gauge failed");
}

/// How often old tombstones are removed.
pub const TOMBSTONE_GC_INTERVAL: Duration = Duration::from_secs(3600);
/// A tombstone is kept at least this long after its delete: every stream is past it by then,
/// and only an operator's replay from further back could bring an older state (which the replayed
/// delete removes again).
pub const TOMBSTONE_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// Removes tombstones no state can still need: older than every stream's position and the
/// retention period, and without an open gap of their document.
pub async fn tombstone_gc_loop(ctx: Arc<RunContext>, mut shutdown: watch::Receiver<bool>) {
    loop {
        if sleep_or_shutdown(TOMBSTONE_GC_INTERVAL, &mut shutdown).await {
            return;
        }
        let Ok((pg, _conn)) = connect_pg(&ctx.pg_url).await else {
            continue;
        };
        let oldest = match crate::sink::checkpoint::oldest_position(&pg, &ctx.names.checkpoints)
            .await
        {
            Ok(Some(t)) => t,
            Ok(None) => continue,
            Err(e) => {
                warn!(error = %redact_error(&e), "reading stream positions for tombstone cleanup failed");
                continue;
            }
        };
        let tombstones = crate::sink::name::quote_schema_table(&ctx.names.schema, "tombstones");
        let collected = match crate::sink::name::quote_qualified(&ctx.names.gaps) {
            Ok(gaps) => {
                crate::sink::tombstones::collect_garbage(
                    &pg,
                    &tombstones,
                    &gaps,
                    oldest,
                    TOMBSTONE_RETENTION,
                )
                .await
            }
            Err(e) => Err(e.into()),
        };
        match collected {
            Ok(0) => {}
            Ok(n) => info!(removed = n, "old tombstones removed"),
            Err(e) => warn!(error = %redact_error(&e), "removing old tombstones failed"),
        }
    }
}

/// Retry open gaps in the background (fk_missing heals once the parent arrives).
pub async fn gap_retry_loop(ctx: Arc<RunContext>, mut shutdown: watch::Receiver<bool>) {
    let options = crate::gap_retry::RetryOptions {
        min_delay: GAP_RETRY_MIN_DELAY,
        ..crate::gap_retry::RetryOptions::default()
    };
    let mut conn: Option<(tokio_postgres::Client, AbortOnDrop)> = None;
    let mut sink = ctx.new_sink();
    loop {
        if sleep_or_shutdown(GAP_RETRY_INTERVAL, &mut shutdown).await {
            return;
        }
        if conn.as_ref().is_none_or(|(c, _)| c.is_closed()) {
            conn = connect_pg(&ctx.pg_url).await.ok();
        }
        let Some((pg, _)) = conn.as_mut() else {
            continue;
        };
        let mut retry = crate::gap_retry::RetryContext {
            mongo: &ctx.mongo,
            pg,
            sink: &mut sink,
            names: &ctx.names,
            mapping: &ctx.mapping,
        };
        match crate::gap_retry::retry_open_gaps(&mut retry, &options).await {
            Ok(report) if report.attempted > 0 => {
                info!(
                    attempted = report.attempted,
                    resolved = report.resolved,
                    superseded = report.superseded,
                    still_open = report.still_open,
                    "gap retry round"
                );
            }
            Ok(_) => {}
            Err(e) => {
                warn!(error = %redact_error(&e), "gap retry round failed");
                conn = None;
            }
        }
    }
}

/// Wake a stream when an operator resets its position, so it restarts from the new position
/// within moments (the epoch check in every batch is the guarantee; this is the speed).
pub async fn reset_listener_loop(ctx: Arc<RunContext>, mut shutdown: watch::Receiver<bool>) {
    loop {
        match crate::ops::tokens::listen_for_resets(&ctx.pg_url).await {
            Ok(mut listener) => loop {
                tokio::select! {
                    _ = shutdown.changed() => return,
                    msg = listener.next_reset() => match msg {
                        Some(stream) => {
                            info!(stream = %stream, "resume-token reset noticed");
                            ctx.metrics.resume_token_reset(&stream);
                            if let Some(n) = ctx.restart.get(&stream) {
                                n.notify_one();
                            }
                        }
                        None => break,
                    },
                }
            },
            Err(e) => warn!(error = %redact_error(&e), "cannot listen for token resets; retrying"),
        }
        if sleep_or_shutdown(RESTART_MAX_DELAY.min(Duration::from_secs(2)), &mut shutdown).await {
            return;
        }
    }
}

/// How long a verification round waits for a stream to pass the time of its reads: the
/// interval, but at least the minimum (a busy stream needs a moment) and at most the maximum.
pub const VERIFY_MIN_CATCH_UP: Duration = Duration::from_secs(10);
pub const VERIFY_MAX_CATCH_UP: Duration = Duration::from_secs(60);

/// Continuous verification (`[verify]`): every `interval`, one round over every mapped
/// collection; results go to the metrics and the verification tables. Returns at once when the
/// mapping has no `[verify]` section.
pub async fn verify_loop(ctx: Arc<RunContext>, mut shutdown: watch::Receiver<bool>) {
    let Some(settings) = ctx.mapping.config.verify.clone() else {
        return;
    };
    let collections = ctx.mapping.config.snapshot_order();
    let started = std::time::SystemTime::now();
    for collection in &collections {
        ctx.metrics.verify().declare_collection(collection, started);
    }
    let mut conn: Option<(tokio_postgres::Client, AbortOnDrop)> = None;
    loop {
        if sleep_or_shutdown(settings.interval, &mut shutdown).await {
            return;
        }
        for collection in &collections {
            let Some(rules) = ctx.mapping.rules(collection) else {
                continue;
            };
            if conn.as_ref().is_none_or(|(c, _)| c.is_closed()) {
                conn = connect_pg(&ctx.pg_url).await.ok();
            }
            let Some((pg, _)) = conn.as_mut() else {
                ctx.metrics.verify().round_failed(collection);
                continue;
            };
            let mut round = crate::continuous_verify::RoundContext {
                mongo: &ctx.mongo,
                database: &ctx.mapping.config.source.database,
                pg,
                names: &ctx.names,
                settings: &settings,
                catch_up: settings
                    .interval
                    .clamp(VERIFY_MIN_CATCH_UP, VERIFY_MAX_CATCH_UP),
                stream: ctx.mapping.config.stream_of(collection),
            };
            let result = tokio::select! {
                _ = shutdown.changed() => return,
                r = crate::continuous_verify::verify_collection(&mut round, rules) => r,
            };
            match result {
                Ok(verified) => report_round(&ctx, pg, &verified).await,
                Err(e) => {
                    warn!(collection = %collection, error = %redact_error(&e), "verification round failed");
                    ctx.metrics.verify().round_failed(collection);
                    conn = None;
                }
            }
        }
    }
}

async fn report_round(
    ctx: &RunContext,
    pg: &mut tokio_postgres::Client,
    verified: &crate::continuous_verify::Verified,
) {
    let round = &verified.round;
    ctx.metrics.verify().round_finished(
        &round.collection,
        &crate::metrics::verify::RoundResult {
            outcome: verified.outcome.as_str(),
            mismatches: round.mismatches.len(),
            compared: round.compared,
            totals_skipped: verified.totals_busy,
            duration: round.duration,
            finished: round.finished_at.into(),
        },
    );
    if round.mismatches.is_empty() {
        info!(collection = %round.collection, sampled = round.sampled, compared = round.compared, outcome = verified.outcome.as_str(), note = round.note.as_deref().unwrap_or(""), "verification round");
    } else {
        warn!(collection = %round.collection, mismatches = round.mismatches.len(), "verification round found differences; `mongo2pg verify --last` lists them");
    }
    if let Err(e) = crate::sink::verify_results::record_round(pg, &ctx.names, round).await {
        warn!(collection = %round.collection, error = %redact_error(&e), "cannot store the verification round");
    }
}
