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

pub use history_lost::{handle_history_lost, handle_stream_history_lost, HistoryLostOutcome};
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

/// Copies the collections of `copy.stream` (a stream group's members, parents first) when `mode`
/// and the stream's stored state say so, from one position recorded before the first copy.
/// Returns the reports of the collections copied (empty when the stream starts right away).
pub async fn prepare_copy(
    ctx: SnapshotContext<'_>,
    mode: SnapshotMode,
    copy: &StreamCopy<'_>,
    options: &SnapshotOptions,
    on_progress: &mut (dyn FnMut(&str, &SnapshotProgress) + Send),
) -> Result<Vec<SnapshotReport>, SnapshotError> {
    let stored = checkpoint::load(&*ctx.pg, &ctx.names.checkpoints, copy.stream).await?;
    if !needs_snapshot(mode, &stage(stored.as_ref())) {
        return Ok(Vec::new());
    }
    copy_stream(ctx, copy, options, on_progress).await
}

/// The streams in copy order, each with its first collection: a stream group waits until the
/// collections its members refer to, and that `snapshot_order` puts before them, are copied.
fn stream_copy_order(config: &crate::config::Config) -> Vec<(String, String)> {
    let order = config.snapshot_order();
    let mut pending: Vec<(String, String)> = Vec::new();
    for c in &order {
        let stream = config.stream_of(c);
        if !pending.iter().any(|(s, _)| *s == stream) {
            pending.push((stream, c.clone()));
        }
    }
    let mut copied: Vec<String> = Vec::new();
    let mut out = Vec::new();
    while !pending.is_empty() {
        // Ready when every collection the copy order puts before one of its members (and that
        // member refers to) is copied: without groups this is exactly `snapshot_order`.
        let ready = pending.iter().position(|(stream, _)| {
            order
                .iter()
                .enumerate()
                .filter(|(_, c)| config.stream_of(c) == *stream)
                .all(|(at, c)| {
                    config.collections[c]
                        .referenced_collections()
                        .iter()
                        .all(|dep| {
                            config.stream_of(dep) == *stream
                                || copied.contains(dep)
                                || order.iter().position(|o| o == dep).is_none_or(|i| i > at)
                        })
                })
        });
        let (stream, first) = pending.remove(ready.unwrap_or(0));
        copied.extend(
            order
                .iter()
                .filter(|c| config.stream_of(c) == stream)
                .cloned(),
        );
        out.push((stream, first));
    }
    out
}

/// Copies every mapped collection that needs it, parents first (`Config::snapshot_order`); a
/// stream group's members are copied together, from one position, when its first member's turn
/// comes. Only the holder of a stream's lease copies it: another replica starting at the same
/// time either copies it under the lease (this one waits, so referenced collections are still
/// complete before the ones that refer to them) or already streams it.
pub async fn snapshot_all(
    mongo: &mongodb::Client,
    pg: &mut tokio_postgres::Client,
    sink: &mut crate::sink::Sink,
    mapping: &CompiledMapping,
    names: &ControlNames,
    pg_url: Option<&crate::sink::connect::PgUrl>,
    on_progress: &mut (dyn FnMut(&str, &SnapshotProgress) + Send),
) -> Result<Vec<SnapshotReport>, CollectionSnapshotError> {
    let config = &mapping.config;
    let options = SnapshotOptions::from_config(&config.snapshot);
    let mut reports = Vec::new();
    for (stream, first) in stream_copy_order(config) {
        let failed = |source| CollectionSnapshotError {
            collection: first.clone(),
            source,
        };
        if !wait_for_copy_lease(&*pg, names, &stream, config.snapshot.mode)
            .await
            .map_err(|e| failed(e.into()))?
        {
            tracing::info!(stream = %stream, "another replica holds the stream and its copy is done; not copying it here");
            continue;
        }
        let copied = copy_one_stream(
            mongo,
            &mut *pg,
            &mut *sink,
            mapping,
            names,
            pg_url,
            &options,
            &first,
            &stream,
            on_progress,
        )
        .await;
        checkpoint::release_lease(&*pg, &names.checkpoints, &stream)
            .await
            .map_err(|e| failed(e.into()))?;
        reports.extend(copied.map_err(failed)?);
    }
    Ok(reports)
}

/// The copy of one stream for `snapshot_all`: a single collection, or a group's members.
#[allow(clippy::too_many_arguments)]
async fn copy_one_stream(
    mongo: &mongodb::Client,
    pg: &mut tokio_postgres::Client,
    sink: &mut crate::sink::Sink,
    mapping: &CompiledMapping,
    names: &ControlNames,
    pg_url: Option<&crate::sink::connect::PgUrl>,
    options: &SnapshotOptions,
    first: &str,
    stream: &str,
    on_progress: &mut (dyn FnMut(&str, &SnapshotProgress) + Send),
) -> Result<Vec<SnapshotReport>, SnapshotError> {
    let config = &mapping.config;
    let ctx = SnapshotContext {
        mongo,
        database: &config.source.database,
        pg,
        sink,
        names,
        pg_url,
    };
    let Some(spec) = config.stream_spec(stream).filter(|s| s.group) else {
        let rules = mapping
            .rules(first)
            .ok_or_else(|| SnapshotError::UnknownCollection(first.to_string()))?;
        let mut cb = |p: &SnapshotProgress| on_progress(first, p);
        let copied = prepare_stream(ctx, config.snapshot.mode, rules, options, &mut cb).await?;
        return Ok(copied.into_iter().collect());
    };
    let members = spec
        .collections
        .iter()
        .map(|c| {
            mapping
                .rules(c)
                .ok_or_else(|| SnapshotError::UnknownCollection(c.clone()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let copy = StreamCopy {
        stream: &spec.name,
        collections: members,
        whole_database: true,
    };
    prepare_copy(ctx, config.snapshot.mode, &copy, options, on_progress).await
}

/// How often a replica waiting for another one's copy looks again.
const COPY_LEASE_POLL: std::time::Duration = std::time::Duration::from_millis(250);

/// Takes the lease of `stream` for a copy (true), or waits while another replica holds it and
/// the stream still needs a copy; false once the stream no longer needs one (the holder copied
/// it, or streams it already).
pub async fn wait_for_copy_lease<C: tokio_postgres::GenericClient>(
    pg: &C,
    names: &ControlNames,
    stream: &str,
    mode: SnapshotMode,
) -> Result<bool, crate::sink::SinkError> {
    loop {
        if checkpoint::try_take_lease(pg, &names.checkpoints, stream).await? {
            return Ok(true);
        }
        let stored = checkpoint::load(pg, &names.checkpoints, stream).await?;
        if !needs_snapshot(mode, &stage(stored.as_ref())) {
            return Ok(false);
        }
        tokio::time::sleep(COPY_LEASE_POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MARKETPLACE: &str = include_str!("../../deploy/marketplace/mapping.toml");

    fn order(extra: &str) -> Vec<String> {
        let config = crate::config::Config::from_toml_str(
            &format!(
                "{}\n{extra}",
                crate::config::without_stream_groups(MARKETPLACE)
            ),
            std::path::Path::new("test.toml"),
        )
        .expect("valid mapping");
        stream_copy_order(&config)
            .into_iter()
            .map(|(s, _)| s)
            .collect()
    }

    #[test]
    fn without_groups_streams_copy_in_snapshot_order() {
        assert_eq!(
            order(""),
            [
                "users",
                "categories",
                "addresses",
                "purchaserequests",
                "selleroffers",
                "requesttemplates",
                "payments",
                "fundsledgerentries"
            ]
        );
    }

    #[test]
    fn a_group_waits_for_the_collections_its_members_refer_to() {
        let money = "[streams.money]\ncollections = [\"users\", \"purchaserequests\", \"selleroffers\", \"requesttemplates\", \"payments\", \"fundsledgerentries\"]\n";
        assert_eq!(order(money), ["categories", "money", "addresses"]);
    }
}
