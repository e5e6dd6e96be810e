//! The snapshot engine the replicator runs: the initial copy (and the re-copy after a
//! `--resnapshot` reset), the targeted re-sync behind `mongo2pg snapshot`, and history-lost
//! handling. MongoDB is read through `source::snapshot`; every page is applied through the sink,
//! and the copy's progress and hand-over are stored through `sink::checkpoint`. It never retries
//! by itself: a failed copy returns its `SnapshotError`, and the failure policy decides.
//!
//! Before a stream opens, `prepare_stream` copies the collection when the snapshot mode and the
//! stored state say so; `snapshot_all` copies every mapped collection in dependency order
//! (referenced collections first, `snapshot.order` overrides); `handle_history_lost` runs when
//! resuming fails with ChangeStreamHistoryLost.

pub mod history_lost;
pub mod progress;
pub mod run;
pub mod stage;

use crate::config::{CompiledMapping, SnapshotMode};
use crate::mapping::CollectionRules;
use crate::sink::{checkpoint, ControlNames};

pub use history_lost::{handle_history_lost, HistoryLostOutcome};
pub use progress::{ProgressReporter, SnapshotProgress};
pub use run::{
    copy_stream, initial_snapshot, resync, SnapshotContext, SnapshotOptions, SnapshotReport,
    StreamCopy,
};
pub use stage::{needs_snapshot, stage, StreamStage};

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

/// A copy of `snapshot_all` that failed, naming its collection.
#[derive(Debug, thiserror::Error)]
#[error("snapshot of {collection} failed: {source}")]
pub struct CollectionSnapshotError {
    pub collection: String,
    #[source]
    pub source: SnapshotError,
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
) -> Result<Vec<SnapshotReport>, CollectionSnapshotError> {
    let config = &mapping.config;
    let options = SnapshotOptions::from_config(&config.snapshot);
    let mut reports = Vec::new();
    for collection in config.snapshot_order() {
        let failed = |source| CollectionSnapshotError {
            collection: collection.clone(),
            source,
        };
        let rules = mapping
            .rules(&collection)
            .ok_or_else(|| failed(SnapshotError::UnknownCollection(collection.clone())))?;
        let ctx = SnapshotContext {
            mongo,
            database: &config.source.database,
            pg: &mut *pg,
            sink: &mut *sink,
            names,
        };
        let mut cb = |p: &SnapshotProgress| on_progress(&collection, p);
        let copied = prepare_stream(ctx, config.snapshot.mode, rules, &options, &mut cb).await;
        if let Some(r) = copied.map_err(failed)? {
            reports.push(r);
        }
    }
    Ok(reports)
}
