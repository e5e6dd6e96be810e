//! Snapshot (initial copy, re-copy and targeted re-sync) and history-lost handling.
//!
//! The supervisor calls `prepare_stream` before it opens a collection's change stream (it copies
//! the collection first when the snapshot mode says so) and `handle_history_lost` when resuming
//! fails with ChangeStreamHistoryLost. `snapshot_all` copies every mapped collection in
//! dependency order (referenced collections first, `snapshot.order` overrides).

pub mod args;
pub mod policy;
pub mod progress;
pub mod run;

use crate::config::{CompiledMapping, SnapshotMode};
use crate::event::Position;
use crate::mapping::CollectionRules;
use crate::sink::{checkpoint, gaps, ControlNames};

pub use args::{SnapshotArgs, SnapshotArgsError};
pub use policy::{history_lost_action, needs_snapshot, stage, HistoryLostAction, StreamStage};
pub use progress::{ProgressReporter, SnapshotProgress};
pub use run::{initial_snapshot, resync, SnapshotContext, SnapshotOptions, SnapshotReport};

/// Why a copy failed.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("reading {collection} from mongodb failed: {source}")]
    Mongo {
        collection: String,
        #[source]
        source: Box<mongodb::error::Error>,
    },
    #[error(transparent)]
    Sink(#[from] crate::sink::SinkError),
    #[error("collection {0} is not mapped")]
    UnknownCollection(String),
    /// An operator reset the stream while the copy ran; the copy's hand-over was refused.
    #[error("the checkpoint of {stream} was reset while the snapshot ran; run the snapshot again")]
    Moved { stream: String },
}

/// Copies `rules.collection` first when `mode` says it must (no checkpoint yet, an unfinished
/// copy, or a `--resnapshot` reset). Returns the copy's report, or None when the stream can start
/// from its stored position right away.
pub async fn prepare_stream(
    ctx: SnapshotContext<'_>,
    mode: SnapshotMode,
    rules: &CollectionRules,
    options: &SnapshotOptions,
    on_progress: &mut (dyn FnMut(&SnapshotProgress) + Send),
) -> Result<Option<SnapshotReport>, SnapshotError> {
    let stored = checkpoint::load(&*ctx.pg, &ctx.names.checkpoints, &rules.collection).await?;
    if !needs_snapshot(mode, &stage(stored.as_ref())) {
        return Ok(None);
    }
    initial_snapshot(ctx, rules, options, on_progress)
        .await
        .map(Some)
}

/// Copies every mapped collection that needs it, parents first (`Config::snapshot_order`).
pub async fn snapshot_all(
    mongo: &mongodb::Client,
    pg: &mut tokio_postgres::Client,
    sink: &mut crate::sink::Sink,
    mapping: &CompiledMapping,
    names: &ControlNames,
    on_progress: &mut (dyn FnMut(&str, &SnapshotProgress) + Send),
) -> Result<Vec<SnapshotReport>, SnapshotError> {
    let config = &mapping.config;
    let options = SnapshotOptions {
        page_size: u32::try_from(config.snapshot.page_size).unwrap_or(u32::MAX),
        ..SnapshotOptions::default()
    };
    let mut reports = Vec::new();
    for collection in config.snapshot_order() {
        let rules = mapping
            .rules(&collection)
            .ok_or_else(|| SnapshotError::UnknownCollection(collection.clone()))?;
        let ctx = SnapshotContext {
            mongo,
            database: &config.source.database,
            pg: &mut *pg,
            sink: &mut *sink,
            names,
        };
        let mut cb = |p: &SnapshotProgress| on_progress(&collection, p);
        if let Some(r) = prepare_stream(ctx, config.snapshot.mode, rules, &options, &mut cb).await?
        {
            reports.push(r);
        }
    }
    Ok(reports)
}

/// What `handle_history_lost` did.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct HistoryLostOutcome {
    pub collection: String,
    /// The recorded `window_lost` gap.
    pub gap_id: i64,
    /// Packed cluster times of the lost window (last checkpoint .. new start).
    pub window_start: i64,
    pub window_end: i64,
    /// Set when the collection was re-copied (`when_needed`).
    pub resynced: Option<SnapshotReport>,
    /// Set when the stream must stop: the exact command for the operator.
    pub operator_command: Option<String>,
    pub alternative_command: Option<String>,
}

/// The stream of `rules.collection` cannot resume (ChangeStreamHistoryLost or an unusable token).
/// Records a `window_lost` gap for the window between the last checkpoint and now, then either
/// re-copies the collection (`when_needed`: the copy hands the stream a fresh position and
/// resolves the gap) or returns the command the operator must run (the stream stays stopped;
/// the supervisor must not retry it). Never loops, never skips silently.
pub async fn handle_history_lost(
    ctx: SnapshotContext<'_>,
    mode: SnapshotMode,
    rules: &CollectionRules,
    options: &SnapshotOptions,
    error_message: &str,
    on_progress: &mut (dyn FnMut(&SnapshotProgress) + Send),
) -> Result<HistoryLostOutcome, SnapshotError> {
    let collection = rules.collection.clone();
    let last = checkpoint::load(&*ctx.pg, &ctx.names.checkpoints, &collection)
        .await?
        .and_then(|c| c.cluster_time)
        .unwrap_or_default();
    let now: Position =
        crate::source::snapshot::capture_start_position(ctx.mongo, ctx.database, &collection)
            .await
            .map_err(|source| SnapshotError::Mongo {
                collection: collection.clone(),
                source: Box::new(source),
            })?;
    let end = now.cluster_time.max(last);
    let reason = format!(
        "change stream history lost between {} and {}: {error_message}",
        crate::ops::tokens::format_cluster_time(last),
        crate::ops::tokens::format_cluster_time(end)
    );
    let gap_id =
        gaps::record_window_gap(&*ctx.pg, &ctx.names.gaps, &collection, (last, end), &reason)
            .await?;
    tracing::error!(collection = %collection, gap_id, window_start = last.0, window_end = end.0, "change stream history lost");
    let mut outcome = HistoryLostOutcome {
        collection: collection.clone(),
        gap_id,
        window_start: last.as_i64(),
        window_end: end.as_i64(),
        resynced: None,
        operator_command: None,
        alternative_command: None,
    };
    match history_lost_action(mode, &collection) {
        HistoryLostAction::Resync => {
            let mut options = options.clone();
            options.resolve_gaps.push(gap_id);
            // A fresh copy (not a resume of an older one) with a new start position.
            checkpoint::begin_snapshot(&*ctx.pg, &ctx.names.checkpoints, &collection, &now).await?;
            let report = initial_snapshot(ctx, rules, &options, on_progress).await?;
            outcome.resynced = Some(report);
        }
        HistoryLostAction::Stop {
            command,
            alternative,
        } => {
            tracing::error!(collection = %collection, command = %command, "stream stopped: run the command to re-sync");
            outcome.operator_command = Some(command);
            outcome.alternative_command = Some(alternative);
        }
    }
    Ok(outcome)
}
