//! Process assembly: `start` checks the connection strings (TLS files read once), validates the
//! mapping against the live catalogue and the role's privileges, connects to both databases, pins the start position of streams that never ran (no snapshot), serves metrics,
//! and spawns the bootstrap (initial copies, parents first, then one supervised task per stream)
//! and the housekeeping loops. `Replicator` is the handle that stops it all. It owns no restart
//! policy (`supervisor`, `policy`) and no SQL (`sink`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;
use tracing::{error, info, warn, Instrument};

use crate::config::{CompiledMapping, Config, ConfigError, Secret};
use crate::error::StreamError;
use crate::housekeeping;
use crate::metrics::{Health, Metrics, ServerHandle, StreamState};
use crate::policy::{self, Action};
use crate::sink::catalogue::Catalogue;
use crate::sink::connect::{connect_pg, describe, PgUrl, PgUrlError};
use crate::sink::privileges::{self, Access, CheckError, MissingPrivileges};
use crate::sink::{checkpoint, ControlNames, SinkError};
use crate::source::connect::{open_mongo, MongoUrlError};
use crate::source::StartAt;
use crate::supervisor::{
    restart_backoff, sleep_or_shutdown, supervise_stream, wait_for_reset, RESTART_MAX_DELAY,
};

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
    #[error("invalid Postgres connection string: {0}")]
    PgUrl(#[from] PgUrlError),
    #[error("invalid MongoDB connection string: {0}")]
    MongoUrl(#[source] MongoUrlError),
    #[error("cannot connect to postgres: {}", describe(.0))]
    PgConnect(#[source] tokio_postgres::Error),
    #[error(transparent)]
    Privileges(#[from] MissingPrivileges),
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error("cannot connect to mongodb: {}", crate::source::connect::describe_mongo(.0))]
    Mongo(#[source] mongodb::error::Error),
    #[error("cannot set up metrics: {0}")]
    Metrics(#[from] crate::metrics::MetricsError),
    #[error("cannot serve metrics: {0}")]
    Serve(#[from] crate::metrics::ServeError),
}

impl StartError {
    /// True when the configuration is wrong (mapping, connection options), not the environment.
    pub fn is_bad_configuration(&self) -> bool {
        matches!(
            self,
            StartError::Config(_)
                | StartError::PgUrl(_)
                | StartError::MongoUrl(_)
                | StartError::Privileges(_)
        )
    }
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
    /// The parsed Postgres connection string (TLS settings included) every connection uses.
    pub pg_url: PgUrl,
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
            .with_rules(self.mapping.collections.values())
            .with_holder(self.holder.clone())
    }

    /// Copy options from the mapping's `[snapshot]` section.
    pub fn snapshot_options(&self) -> crate::snapshot::SnapshotOptions {
        crate::snapshot::SnapshotOptions::from_config(&self.mapping.config.snapshot)
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
    let pg_url = PgUrl::parse(&settings.pg_url)?;
    let mongo = open_mongo(&settings.mongo_url, None).await.map_err(|e| {
        if e.is_bad_option() {
            StartError::MongoUrl(e)
        } else {
            StartError::Mongo(e.0)
        }
    })?;
    let (mut pg, _pg_task) = connect_pg(&pg_url).await.map_err(StartError::PgConnect)?;
    let catalogue = crate::sink::catalogue::load(&pg, &settings.config.mapped_tables()).await?;
    let mapping = settings.config.compile(&catalogue)?;
    let accesses: &[Access] = if settings.config.verify.is_some() {
        &[Access::Replicate, Access::ContinuousVerify]
    } else {
        &[Access::Replicate]
    };
    privileges::check(&pg, accesses, &names, &settings.config.mapped_tables())
        .await
        .map_err(|e| match e {
            CheckError::Missing(m) => StartError::Privileges(m),
            CheckError::Sink(e) => StartError::Sink(e),
        })?;
    let converted = crate::sink::migrate::upgrade_version_columns(
        &mut pg,
        &names,
        &settings.config.version_columns(),
    )
    .await?;
    if !converted.is_empty() {
        info!(tables = ?converted, "version columns moved to the current cluster-time encoding");
    }
    drop(pg);

    // Streams without a checkpoint start at the cluster time of this ping, so writes made after
    // `start` returns are never missed, however late a stream opens or however often it restarts
    // first. An error the failure policy stops on (MongoDB refusing the credentials) does not
    // end the process: every stream meets it, stops with the operator's advice and `/readyz`
    // says so; an unreachable MongoDB does.
    let started_at = match mongo
        .database("admin")
        .run_command(bson::doc! {"ping": 1})
        .await
    {
        Ok(ping) => match ping.get("operationTime") {
            Some(bson::Bson::Timestamp(ts)) => StartAt::Time(crate::event::ClusterTime::from(*ts)),
            _ => StartAt::Now,
        },
        Err(e) if policy::mongo_error_stops(&e) => {
            error!(error = %crate::source::connect::describe_mongo(&e), advice = policy::MONGO_CREDENTIALS_ADVICE, "MongoDB refused the replicator; every stream stops with the reason");
            StartAt::Now
        }
        Err(e) => return Err(StartError::Mongo(e)),
    };

    // Collections moved into or out of a stream group start at the earliest position of the
    // rows that covered them before; rows no stream uses any more are retired.
    let specs: Vec<(String, Vec<String>)> = settings
        .config
        .stream_specs()
        .into_iter()
        .map(|s| (s.name, s.collections))
        .collect();
    {
        let (mut pg, _conn) = connect_pg(&pg_url).await.map_err(StartError::PgConnect)?;
        for m in checkpoint::reconcile_members(&mut pg, &names.checkpoints, &specs).await? {
            warn!(stream = %m.stream, start = %crate::ops::tokens::format_cluster_time(m.start), retired = ?m.retired, "stream members changed: the stream starts at the earliest position of the rows that covered its collections");
        }
    }

    if settings.config.snapshot.mode == crate::config::SnapshotMode::Never {
        if let StartAt::Time(t) = &started_at {
            pin_start_positions(&pg_url, &names, &mapping, *t).await?;
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
        pg_url,
        catalogue: Arc::new(catalogue),
        names,
        metrics: metrics.clone(),
        health: health.clone(),
        holder: settings.holder.clone(),
        restart: mapping
            .config
            .stream_specs()
            .into_iter()
            .map(|s| (s.name, Arc::new(Notify::new())))
            .collect(),
        mapping,
        started_at,
    });
    let mut tasks = JoinSet::new();
    for spec in context.mapping.config.stream_specs() {
        for collection in &spec.collections {
            let Some(rules) = context.mapping.rules(collection) else {
                continue;
            };
            let tables: Vec<&str> = std::iter::once(rules.table.as_str())
                .chain(rules.children.iter().map(|c| c.table.as_str()))
                .collect();
            metrics.declare_member(collection, &tables);
        }
        metrics.declare_stream(&spec.name);
        health.set_stream(&spec.name, StreamState::Starting);
    }
    let ctx = context.clone();
    let rx = shutdown_rx.clone();
    tasks.spawn(async move { bootstrap(ctx, rx).await });
    let ctx = context.clone();
    let rx = shutdown_rx.clone();
    tasks.spawn(async move { housekeeping::probe_loop(ctx, rx).await });
    let ctx = context.clone();
    let rx = shutdown_rx.clone();
    tasks.spawn(async move { housekeeping::gaps_gauge_loop(ctx, rx).await });
    let ctx = context.clone();
    let rx = shutdown_rx.clone();
    tasks.spawn(async move { housekeeping::tombstone_gc_loop(ctx, rx).await });
    let ctx = context.clone();
    let rx = shutdown_rx.clone();
    tasks.spawn(async move { housekeeping::gap_retry_loop(ctx, rx).await });
    let ctx = context.clone();
    let rx = shutdown_rx.clone();
    tasks.spawn(async move { housekeeping::reset_listener_loop(ctx, rx).await });
    let ctx = context.clone();
    let rx = shutdown_rx.clone();
    tasks.spawn(async move { housekeeping::verify_loop(ctx, rx).await });
    info!(
        streams = context.mapping.config.stream_specs().len(),
        "replicator started"
    );
    Ok(Replicator {
        shutdown: shutdown_tx,
        tasks,
        server,
        context,
    })
}

/// Copy every collection that needs it (parents first), then start one supervised task per
/// stream. A failed copy goes through the failure policy like a stream's failure: retried with
/// backoff (a copy that stopped midway resumes from its last `_id`), or, when retrying cannot
/// help, its stream is marked failed and the copy waits for the operator's reset.
async fn bootstrap(ctx: Arc<RunContext>, mut shutdown: watch::Receiver<bool>) {
    if ctx.mapping.config.snapshot.mode != crate::config::SnapshotMode::Never {
        let mut backoff = restart_backoff();
        loop {
            let Err((failed, err)) = snapshot_all(&ctx).await else {
                break;
            };
            // The stream the failed copy belongs to (its group, or the collection itself).
            let collection = ctx.mapping.config.stream_of(&failed);
            let decision = policy::decide(&collection, &err);
            if decision.action == Action::Stop {
                let advice = decision.advice.unwrap_or_default();
                error!(collection = %collection, error = %err, advice = %advice, "initial snapshot stopped");
                ctx.health.set_stream(
                    &collection,
                    StreamState::Failed {
                        reason: format!("{err}; {advice}"),
                    },
                );
                if wait_for_reset(&ctx, &collection, &mut shutdown).await {
                    return;
                }
                continue;
            }
            let delay = match decision.action {
                Action::RestartNow => Duration::ZERO,
                _ => backoff.next().unwrap_or(RESTART_MAX_DELAY),
            };
            warn!(error = %err, reason = decision.label, delay_ms = delay.as_millis() as u64, "initial snapshot failed; retrying");
            if sleep_or_shutdown(delay, &mut shutdown).await {
                return;
            }
        }
    }
    let mut streams = JoinSet::new();
    for spec in ctx.mapping.config.stream_specs() {
        let c = ctx.clone();
        let name = spec.name.clone();
        let rx = shutdown.clone();
        streams.spawn(
            async move { supervise_stream(c, name, rx).await }
                .instrument(tracing::info_span!("stream", collection = %spec.name)),
        );
    }
    while streams.join_next().await.is_some() {}
}

/// The initial copies; a failure names the stream it stopped (the first mapped one when Postgres
/// is unreachable before any copy starts).
async fn snapshot_all(ctx: &RunContext) -> Result<(), (String, StreamError)> {
    let first = || {
        ctx.mapping
            .collections
            .keys()
            .next()
            .cloned()
            .unwrap_or_default()
    };
    let (mut pg, _conn) = connect_pg(&ctx.pg_url)
        .await
        .map_err(|e| (first(), StreamError::PgConnect(e)))?;
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
        Some(&ctx.pg_url),
        &mut on_progress,
    )
    .await
    .map_err(|e| {
        let stream_error = StreamError::Snapshot {
            collection: e.collection.clone(),
            source: Box::new(e.source),
        };
        (e.collection, stream_error)
    })?;
    for r in reports {
        info!(collection = %r.collection, copied = r.copied, failed = r.failed, "collection copied");
    }
    Ok(())
}

/// Without a snapshot, a stream that has never committed a position starts at the process start
/// time. Record that position durably before any stream opens, so a crash before the first batch
/// commits restarts from the same point instead of a later "now" (which would skip writes).
async fn pin_start_positions(
    pg_url: &PgUrl,
    names: &ControlNames,
    mapping: &CompiledMapping,
    at: crate::event::ClusterTime,
) -> Result<(), StartError> {
    let (pg, _conn) = connect_pg(pg_url).await.map_err(StartError::PgConnect)?;
    let specs = mapping.config.stream_specs();
    let streams = specs.iter().map(|s| s.name.as_str());
    checkpoint::pin_start(&pg, &names.checkpoints, streams, at).await?;
    Ok(())
}
