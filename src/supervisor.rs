//! Starts one pipeline per mapped collection and keeps it running: transient errors restart the
//! stream from its checkpoint with exponential backoff (the `backon` crate; the one retry policy of
//! the process), fatal errors stop that stream only and tell the operator what to do. Also runs the
//! readiness probes and the periodic housekeeping tasks.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};
use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;
use tracing::{error, info, warn, Instrument};

use crate::error::{classify, reason_label, Disposition, StreamError};
use crate::pipeline::{spawn_reader, BatchLimits, Consumer, ReaderSpec, StreamExit};
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

use crate::config::{CompiledMapping, Config, ConfigError, Secret};
use crate::metrics::{Health, Metrics, RestartReason, ServerHandle, StreamState};
use crate::sink::catalogue::Catalogue;
use crate::sink::connect::{connect_pg, AbortOnDrop};
use crate::sink::SinkError;
use crate::sink::{checkpoint, Checkpoint, ControlNames};

/// How often readiness probes run and the watchdog is touched.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(2);
/// How often a standby replica tries to take a stream's lease.
pub const LEASE_RETRY_INTERVAL: Duration = Duration::from_secs(2);
/// How often the background gap retry runs, and the first retry delay of a fresh gap.
pub const GAP_RETRY_INTERVAL: Duration = Duration::from_secs(2);
pub const GAP_RETRY_MIN_DELAY: Duration = Duration::from_secs(1);
/// How often the open-gaps gauge is refreshed from the gaps table.
pub const GAPS_REFRESH_INTERVAL: Duration = Duration::from_secs(10);

/// Everything `run` needs.
#[derive(Debug, Clone)]
pub struct RunSettings {
    pub mongo_url: Secret,
    pub pg_url: Secret,
    pub config: Config,
    /// Where to serve /metrics, /healthz, /readyz; None serves nothing (tests that do not need it).
    pub metrics_addr: Option<SocketAddr>,
    /// Recorded as the holder of the streams this process runs.
    pub holder: String,
}

/// Why the replicator could not start. Each variant says which side and what to fix.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("mapping configuration is invalid: {0}")]
    Config(#[from] ConfigError),
    #[error("cannot connect to postgres: {0}")]
    PgConnect(#[source] tokio_postgres::Error),
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error("cannot connect to mongodb: {0}")]
    Mongo(#[source] mongodb::error::Error),
    #[error("cannot set up metrics: {0}")]
    Metrics(#[from] crate::metrics::MetricsError),
    #[error("cannot serve metrics: {0}")]
    Serve(#[from] crate::metrics::ServeError),
}

/// The control-table names a mapping file configures.
pub fn control_names(config: &Config) -> ControlNames {
    ControlNames {
        schema: config.target.schema.clone(),
        id_map: config.target.id_map.clone(),
        gaps: config.target.gaps.clone(),
        checkpoints: config.target.checkpoints_table(),
        audit: config.target.audit_table(),
    }
}

/// Shared, read-only state of a running replicator.
pub struct RunContext {
    pub mongo: mongodb::Client,
    pub pg_url: Secret,
    pub mapping: CompiledMapping,
    pub catalogue: Arc<Catalogue>,
    pub names: ControlNames,
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
    pub holder: String,
    /// Where streams without a checkpoint start: the cluster time when the process started.
    pub started_at: StartAt,
    /// Per stream: woken when an operator reset the stream's position (LISTEN/NOTIFY).
    pub restart: BTreeMap<String, Arc<Notify>>,
}

impl RunContext {
    /// A sink for one task (each stream, the snapshot and the gap retry have their own).
    pub fn new_sink(&self) -> crate::sink::Sink {
        crate::sink::Sink::new((*self.catalogue).clone(), self.names.clone())
            .with_holder(self.holder.clone())
    }

    /// Copy options from the mapping's `[snapshot]` section.
    pub fn snapshot_options(&self) -> crate::snapshot::SnapshotOptions {
        crate::snapshot::SnapshotOptions {
            page_size: u32::try_from(self.mapping.config.snapshot.page_size).unwrap_or(u32::MAX),
            ..Default::default()
        }
    }
}

/// A running replicator: one supervised stream per mapped collection plus housekeeping tasks.
pub struct Replicator {
    shutdown: watch::Sender<bool>,
    tasks: JoinSet<()>,
    server: Option<ServerHandle>,
    pub context: Arc<RunContext>,
}

impl Replicator {
    /// The bound address of the metrics server, if one was started.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.server.as_ref().map(|s| s.local_addr())
    }

    /// Stop gracefully: every stream flushes its current batch, then the tasks end.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        while self.tasks.join_next().await.is_some() {}
        if let Some(server) = self.server.take() {
            if let Err(e) = server.wait().await {
                warn!(error = %e, "metrics server ended with an error");
            }
        }
    }

    /// Stop abruptly, as a crash would: tasks are cancelled wherever they are (an open Postgres
    /// transaction is rolled back by the server when its connection drops).
    pub async fn abort(mut self) {
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
        let _ = self.shutdown.send(true);
    }

    /// Wait until a shutdown signal arrives, then shut down.
    pub async fn run_until<F: std::future::Future<Output = ()>>(self, signal: F) {
        signal.await;
        info!("shutting down");
        self.shutdown().await;
    }
}

/// Validate everything, connect to both databases, and start every stream.
pub async fn start(settings: RunSettings) -> Result<Replicator, StartError> {
    settings.config.validate()?;
    let names = control_names(&settings.config);
    let (pg, _pg_task) = connect_pg(&settings.pg_url)
        .await
        .map_err(StartError::PgConnect)?;
    let catalogue = crate::sink::catalogue::load(&pg, &settings.config.mapped_tables()).await?;
    let mapping = settings.config.compile(&catalogue)?;
    drop(pg);

    let mongo = mongodb::Client::with_uri_str(settings.mongo_url.expose())
        .await
        .map_err(StartError::Mongo)?;
    let ping = mongo
        .database("admin")
        .run_command(bson::doc! {"ping": 1})
        .await
        .map_err(StartError::Mongo)?;
    // Streams without a checkpoint start at this cluster time, so writes made after `start`
    // returns are never missed, however late a stream opens or however often it restarts first.
    let started_at = match ping.get("operationTime") {
        Some(bson::Bson::Timestamp(ts)) => StartAt::Time(crate::event::ClusterTime::from(*ts)),
        _ => StartAt::Now,
    };

    if settings.config.snapshot.mode == crate::config::SnapshotMode::Never {
        if let StartAt::Time(t) = &started_at {
            pin_start_positions(&settings.pg_url, &names, &mapping, *t).await?;
        }
    }

    let metrics = Metrics::new()?;
    let health = Health::new(metrics.clone());
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let server = match settings.metrics_addr {
        Some(addr) => {
            let mut rx = shutdown_rx.clone();
            let signal = async move {
                let _ = rx.wait_for(|stop| *stop).await;
            };
            Some(crate::metrics::serve(addr, metrics.clone(), health.clone(), signal).await?)
        }
        None => None,
    };

    let context = Arc::new(RunContext {
        mongo,
        pg_url: settings.pg_url.clone(),
        catalogue: Arc::new(catalogue),
        names,
        metrics: metrics.clone(),
        health: health.clone(),
        holder: settings.holder.clone(),
        restart: mapping
            .collections
            .keys()
            .map(|c| (c.clone(), Arc::new(Notify::new())))
            .collect(),
        mapping,
        started_at,
    });
    let mut tasks = JoinSet::new();
    for (collection, rules) in &context.mapping.collections {
        let tables: Vec<&str> = std::iter::once(rules.table.as_str())
            .chain(rules.children.iter().map(|c| c.table.as_str()))
            .collect();
        metrics.declare_collection(collection, &tables);
        health.set_stream(collection, StreamState::Starting);
    }
    let ctx = context.clone();
    let rx = shutdown_rx.clone();
    tasks.spawn(async move { bootstrap(ctx, rx).await });
    let ctx = context.clone();
    let rx = shutdown_rx.clone();
    tasks.spawn(async move { probe_loop(ctx, rx).await });
    let ctx = context.clone();
    let rx = shutdown_rx.clone();
    tasks.spawn(async move { gaps_gauge_loop(ctx, rx).await });
    let ctx = context.clone();
    let rx = shutdown_rx.clone();
    tasks.spawn(async move { gap_retry_loop(ctx, rx).await });
    let ctx = context.clone();
    let rx = shutdown_rx.clone();
    tasks.spawn(async move { reset_listener_loop(ctx, rx).await });
    info!(
        streams = context.mapping.collections.len(),
        "replicator started"
    );
    Ok(Replicator {
        shutdown: shutdown_tx,
        tasks,
        server,
        context,
    })
}

/// Keep one stream running until shutdown or a fatal error.
async fn supervise_stream(
    ctx: Arc<RunContext>,
    collection: String,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut backoff = restart_backoff();
    loop {
        let started = Instant::now();
        ctx.health.set_stream(&collection, StreamState::Starting);
        let result = run_stream_once(&ctx, &collection, shutdown.clone()).await;
        match result {
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
            Err(StreamError::HistoryLost { message, .. }) => {
                ctx.metrics
                    .stream_restarted(&collection, RestartReason::HistoryLost);
                match history_lost(&ctx, &collection, &message).await {
                    Ok(None) => continue,
                    Ok(Some(command)) => {
                        let reason = format!("change stream history lost: {message}; a window_lost gap records the skipped window; run `{command}`");
                        error!(%reason, "stream stopped");
                        ctx.health
                            .set_stream(&collection, StreamState::Failed { reason });
                        if wait_for_reset(&ctx, &collection, &mut shutdown).await {
                            break;
                        }
                    }
                    Err(e) => {
                        warn!(error = %e, "recording the lost window failed; retrying");
                        ctx.health
                            .set_stream(&collection, StreamState::Retrying { reason: e.clone() });
                        if sleep_or_shutdown(
                            backoff.next().unwrap_or(RESTART_MAX_DELAY),
                            &mut shutdown,
                        )
                        .await
                        {
                            break;
                        }
                    }
                }
            }
            Err(err) => {
                let reason = reason_label(&err);
                match classify(&err) {
                    Disposition::Transient => {
                        if started.elapsed() >= HEALTHY_RUN {
                            backoff = restart_backoff();
                        }
                        let delay = if reason == "token_reset" {
                            Duration::ZERO
                        } else {
                            backoff.next().unwrap_or(RESTART_MAX_DELAY)
                        };
                        warn!(error = %err, reason, delay_ms = delay.as_millis() as u64, "stream failed; restarting from its checkpoint");
                        ctx.metrics
                            .stream_restarted(&collection, restart_reason(reason));
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
                    Disposition::Fatal => {
                        let advice = operator_advice(&collection, &err);
                        error!(error = %err, advice = %advice, "stream stopped");
                        ctx.metrics
                            .stream_restarted(&collection, restart_reason(reason));
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
                }
            }
        }
    }
    ctx.metrics.set_stream_held(&collection, false);
}

fn restart_reason(label: &str) -> RestartReason {
    match label {
        "mongo" => RestartReason::MongoError,
        "postgres" => RestartReason::PostgresError,
        "history_lost" => RestartReason::HistoryLost,
        "token_reset" => RestartReason::TokenReset,
        _ => RestartReason::Other,
    }
}

/// What the operator should do after a fatal stream error.
pub fn operator_advice(collection: &str, err: &StreamError) -> String {
    match err {
        StreamError::HistoryLost { .. } => format!(
            "the resume point is gone from the oplog; a window_lost gap records the skipped window. Run `mongo2pg tokens reset {collection} --resnapshot --reason \"history lost\"` (or set snapshot.mode = \"when_needed\") to re-sync"
        ),
        StreamError::Invalidated { .. } => format!(
            "the collection was dropped or renamed; fix the mapping if it moved, then run `mongo2pg tokens reset {collection} --resnapshot --reason \"collection recreated\"`"
        ),
        _ => format!("fix the cause above, then restart mongo2pg; `mongo2pg tokens show` shows where {collection} stands"),
    }
}

/// One life of a stream: connect, load the checkpoint, open the change stream, apply batches.
async fn run_stream_once(
    ctx: &RunContext,
    collection: &str,
    shutdown: watch::Receiver<bool>,
) -> Result<StreamExit, StreamError> {
    let Some(rules) = ctx.mapping.rules(collection) else {
        return Ok(StreamExit::Shutdown);
    };
    let rules = Arc::new(rules.clone());
    let (mut client, _conn) = connect_pg(&ctx.pg_url)
        .await
        .map_err(StreamError::PgConnect)?;
    // The stream's lease: a session advisory lock on this connection. Only its holder runs the
    // stream; other replicas wait in standby and take over when the holder's connection ends.
    if !checkpoint::try_take_lease(&client, &ctx.names.checkpoints, collection).await? {
        return Ok(StreamExit::Standby);
    }
    let mut sink = ctx.new_sink();
    // A `--resnapshot` reset (or an unfinished copy) is honoured on every (re)start.
    if ctx.mapping.config.snapshot.mode != crate::config::SnapshotMode::Never {
        let options = ctx.snapshot_options();
        let snap = crate::snapshot::SnapshotContext {
            mongo: &ctx.mongo,
            database: &ctx.mapping.config.source.database,
            pg: &mut client,
            sink: &mut sink,
            names: &ctx.names,
        };
        let metrics = ctx.metrics.clone();
        let coll = collection.to_string();
        let mut cb = |p: &crate::snapshot::SnapshotProgress| {
            metrics.snapshot_copied(&coll, p.page_documents);
            metrics.set_snapshot_remaining(&coll, p.remaining.saturating_sub(p.copied));
        };
        crate::snapshot::prepare_stream(
            snap,
            ctx.mapping.config.snapshot.mode,
            &rules,
            &options,
            &mut cb,
        )
        .await
        .map_err(|e| StreamError::Snapshot {
            collection: collection.to_string(),
            message: redact(&e),
        })?;
    }
    let stored = sink.load_checkpoint(&client, collection).await?;
    let epoch = stored.as_ref().map(|c| c.epoch).unwrap_or(0);
    let start = start_position(stored.as_ref())?.unwrap_or_else(|| ctx.started_at.clone());
    if let Some(p) = stored
        .as_ref()
        .map(Checkpoint::position)
        .transpose()?
        .flatten()
    {
        ctx.metrics.checkpoint_committed(collection, p.cluster_time);
    }
    let stream_cfg = &ctx.mapping.config.stream;
    let options = StreamOptions {
        full_document: stream_cfg.full_document.into(),
        pre_images: stream_cfg.pre_images,
        max_await: Duration::from_millis(stream_cfg.max_await_ms),
        batch_size: None,
    };
    let (rx, reader) = spawn_reader(ReaderSpec {
        mongo: &ctx.mongo,
        database: &ctx.mapping.config.source.database,
        collection,
        start: &start,
        options: &options,
        rules,
        capacity: stream_cfg.channel_capacity,
        metrics: ctx.metrics.clone(),
    })
    .await?;
    let _reader = AbortOnDrop(reader);
    ctx.health.set_stream(collection, StreamState::Running);
    ctx.metrics.set_stream_held(collection, true);
    info!(?start, epoch, "stream running");
    let limits = BatchLimits {
        max_events: stream_cfg.batch_max_events,
        max_wait: Duration::from_millis(stream_cfg.batch_max_wait_ms),
    };
    let restart = ctx.restart.get(collection).cloned().unwrap_or_default();
    let mut consumer = Consumer {
        stream: collection,
        epoch,
        limits,
        client: &mut client,
        sink: &mut sink,
        metrics: &ctx.metrics,
        restart,
        heartbeat_interval: Duration::from_millis(stream_cfg.heartbeat_interval_ms),
    };
    consumer.run(rx, shutdown).await
}

/// Where a stream opens, from its stored checkpoint: strictly after the stored token; at the
/// stored cluster time when an operator reset it to a time (token cleared, `--to-time`) or the
/// start was pinned; None when there is no position at all (then it starts at the process start).
pub fn start_position(stored: Option<&Checkpoint>) -> Result<Option<StartAt>, SinkError> {
    let Some(c) = stored else {
        return Ok(None);
    };
    Ok(match (c.token()?, c.cluster_time) {
        (Some(token), _) => Some(StartAt::Token(token)),
        (None, Some(t)) => Some(StartAt::Time(t)),
        (None, None) => None,
    })
}

/// Readiness probes and the liveness watchdog.
async fn probe_loop(ctx: Arc<RunContext>, mut shutdown: watch::Receiver<bool>) {
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
                .map_err(|e| crate::config::redact_secrets(&e.to_string()).into_owned())
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
            Ok(Err(e)) => return Err(crate::config::redact_secrets(&e.to_string()).into_owned()),
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
            Err(crate::config::redact_secrets(&e.to_string()).into_owned())
        }
        Err(_) => {
            *pg = None;
            Err("postgres probe timed out".into())
        }
    }
}

/// Refresh the open-gaps gauge from the gaps table.
async fn gaps_gauge_loop(ctx: Arc<RunContext>, mut shutdown: watch::Receiver<bool>) {
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

/// Copy every collection that needs it (parents first), then start one supervised task per
/// stream. A failed copy is retried with backoff; a copy that stopped midway resumes from its
/// last `_id`.
async fn bootstrap(ctx: Arc<RunContext>, mut shutdown: watch::Receiver<bool>) {
    if ctx.mapping.config.snapshot.mode != crate::config::SnapshotMode::Never {
        let mut backoff = restart_backoff();
        loop {
            match snapshot_all(&ctx).await {
                Ok(()) => break,
                Err(e) => {
                    let delay = backoff.next().unwrap_or(RESTART_MAX_DELAY);
                    warn!(error = %e, delay_ms = delay.as_millis() as u64, "initial snapshot failed; retrying");
                    if sleep_or_shutdown(delay, &mut shutdown).await {
                        return;
                    }
                }
            }
        }
    }
    let mut streams = JoinSet::new();
    for collection in ctx.mapping.collections.keys() {
        let c = ctx.clone();
        let coll = collection.clone();
        let rx = shutdown.clone();
        streams.spawn(
            async move { supervise_stream(c, coll, rx).await }
                .instrument(tracing::info_span!("stream", collection = %collection)),
        );
    }
    while streams.join_next().await.is_some() {}
}

async fn snapshot_all(ctx: &RunContext) -> Result<(), String> {
    let (mut pg, _conn) = connect_pg(&ctx.pg_url).await.map_err(|e| redact(&e))?;
    let mut sink = ctx.new_sink();
    let metrics = ctx.metrics.clone();
    let mut on_progress = |collection: &str, p: &crate::snapshot::SnapshotProgress| {
        metrics.snapshot_copied(collection, p.page_documents);
        metrics.set_snapshot_remaining(collection, p.remaining.saturating_sub(p.copied));
        if p.done {
            info!(collection, copied = p.copied, "snapshot finished");
        }
    };
    let reports = crate::snapshot::snapshot_all(
        &ctx.mongo,
        &mut pg,
        &mut sink,
        &ctx.mapping,
        &ctx.names,
        &mut on_progress,
    )
    .await
    .map_err(|e| redact(&e))?;
    for r in reports {
        info!(collection = %r.collection, copied = r.copied, failed = r.failed, "collection copied");
    }
    Ok(())
}

fn redact(e: &dyn std::fmt::Display) -> String {
    crate::config::redact_secrets(&e.to_string()).into_owned()
}

/// Retry open gaps in the background (fk_missing heals once the parent arrives).
async fn gap_retry_loop(ctx: Arc<RunContext>, mut shutdown: watch::Receiver<bool>) {
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
                warn!(error = %redact(&e), "gap retry round failed");
                conn = None;
            }
        }
    }
}

/// Wake a stream when an operator resets its position, so it restarts from the new position
/// within moments (the epoch check in every batch is the guarantee; this is the speed).
async fn reset_listener_loop(ctx: Arc<RunContext>, mut shutdown: watch::Receiver<bool>) {
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
            Err(e) => warn!(error = %redact(&e), "cannot listen for token resets; retrying"),
        }
        if sleep_or_shutdown(RESTART_MAX_DELAY.min(Duration::from_secs(2)), &mut shutdown).await {
            return;
        }
    }
}

/// History is gone for this stream: record the lost window, then re-sync (`when_needed`) and
/// return None, or return the command the operator must run.
async fn history_lost(
    ctx: &RunContext,
    collection: &str,
    message: &str,
) -> Result<Option<String>, String> {
    let Some(rules) = ctx.mapping.rules(collection) else {
        return Ok(None);
    };
    let (mut pg, _conn) = connect_pg(&ctx.pg_url).await.map_err(|e| redact(&e))?;
    let mut sink = ctx.new_sink();
    let snap = crate::snapshot::SnapshotContext {
        mongo: &ctx.mongo,
        database: &ctx.mapping.config.source.database,
        pg: &mut pg,
        sink: &mut sink,
        names: &ctx.names,
    };
    let options = ctx.snapshot_options();
    let mut cb = |_: &crate::snapshot::SnapshotProgress| {};
    let outcome = crate::snapshot::handle_history_lost(
        snap,
        ctx.mapping.config.snapshot.mode,
        rules,
        &options,
        message,
        &mut cb,
    )
    .await
    .map_err(|e| redact(&e))?;
    Ok(outcome.operator_command)
}

/// Without a snapshot, a stream that has never committed a position starts at the process start
/// time. Record that position durably before any stream opens, so a crash before the first batch
/// commits restarts from the same point instead of a later "now" (which would skip writes).
async fn pin_start_positions(
    pg_url: &Secret,
    names: &ControlNames,
    mapping: &CompiledMapping,
    at: crate::event::ClusterTime,
) -> Result<(), StartError> {
    let (pg, _conn) = connect_pg(pg_url).await.map_err(StartError::PgConnect)?;
    let streams = mapping.collections.keys().map(String::as_str);
    checkpoint::pin_start(&pg, &names.checkpoints, streams, at).await?;
    Ok(())
}

/// A stopped stream waits here until an operator resets its position (`mongo2pg tokens reset`
/// notifies the running process) and then starts again. True when shutting down instead.
async fn wait_for_reset(
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
