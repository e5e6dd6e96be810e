//! History-lost handling: a stream's resume point fell out of the oplog. The lost window becomes a
//! `window_lost` gap, then the collection is re-copied (`when_needed`) or the stream stops with
//! the exact operator command (what `policy::history_lost_action` says). It never loops and never
//! skips silently.

use super::progress::SnapshotProgress;
use super::run::{copy_stream, SnapshotContext, SnapshotOptions, SnapshotReport, StreamCopy};
use super::SnapshotError;
use crate::config::SnapshotMode;
use crate::event::Position;
use crate::mapping::CollectionRules;
use crate::policy::{history_lost_action, HistoryLostAction};
use crate::sink::{checkpoint, gaps};

/// What `handle_history_lost` did.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct HistoryLostOutcome {
    pub collection: String,
    /// The recorded `window_lost` gap.
    pub gap_id: i64,
    /// Packed cluster times of the lost window (last checkpoint .. new start).
    pub window_start: u64,
    pub window_end: u64,
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
    let copy = StreamCopy {
        stream: &rules.collection,
        collections: vec![rules],
        whole_database: false,
    };
    let mut cb = |_: &str, p: &SnapshotProgress| on_progress(p);
    handle_stream_history_lost(ctx, mode, &copy, options, error_message, &mut cb).await
}

/// [`handle_history_lost`] for any stream, a stream group included: one `window_lost` gap per
/// member collection, and the re-copy covers every member (parents first) from one position.
pub async fn handle_stream_history_lost(
    ctx: SnapshotContext<'_>,
    mode: SnapshotMode,
    copy: &StreamCopy<'_>,
    options: &SnapshotOptions,
    error_message: &str,
    on_progress: &mut (dyn FnMut(&str, &SnapshotProgress) + Send),
) -> Result<HistoryLostOutcome, SnapshotError> {
    let stream = copy.stream.to_string();
    let Some(first) = copy.collections.first() else {
        return Err(SnapshotError::UnknownCollection(stream));
    };
    let last = checkpoint::load(&*ctx.pg, &ctx.names.checkpoints, &stream)
        .await?
        .and_then(|c| c.cluster_time)
        .unwrap_or_default();
    let scope = (!copy.whole_database).then_some(first.collection.as_str());
    let now: Position = crate::source::snapshot::capture_position(ctx.mongo, ctx.database, scope)
        .await
        .map_err(|source| SnapshotError::Mongo {
            collection: first.collection.clone(),
            source: Box::new(source),
        })?;
    let end = now.cluster_time.max(last);
    let reason = format!(
        "change stream history lost between {} and {}: {error_message}",
        crate::ops::tokens::format_cluster_time(last),
        crate::ops::tokens::format_cluster_time(end)
    );
    let mut gap_ids = Vec::new();
    for rules in &copy.collections {
        gap_ids.push(
            gaps::record_window_gap(
                &*ctx.pg,
                &ctx.names.gaps,
                &rules.collection,
                (last, end),
                &reason,
            )
            .await?,
        );
    }
    let gap_id = gap_ids.first().copied().unwrap_or_default();
    tracing::error!(stream = %stream, gap_id, window_start = last.0, window_end = end.0, "change stream history lost");
    let mut outcome = HistoryLostOutcome {
        collection: stream.clone(),
        gap_id,
        window_start: last.packed(),
        window_end: end.packed(),
        resynced: None,
        operator_command: None,
        alternative_command: None,
    };
    match history_lost_action(mode, &stream) {
        HistoryLostAction::Resync => {
            let mut options = options.clone();
            options.resolve_gaps.extend(gap_ids);
            // A fresh copy (not a resume of an older one) with a new start position.
            checkpoint::begin_snapshot(
                &*ctx.pg,
                &ctx.names.checkpoints,
                &stream,
                &first.collection,
                &now,
            )
            .await?;
            let mut reports = copy_stream(ctx, copy, &options, on_progress).await?;
            outcome.resynced = reports.pop();
        }
        HistoryLostAction::Stop {
            command,
            alternative,
        } => {
            tracing::error!(stream = %stream, command = %command, "stream stopped: run the command to re-sync");
            outcome.operator_command = Some(command);
            outcome.alternative_command = Some(alternative);
        }
    }
    Ok(outcome)
}
