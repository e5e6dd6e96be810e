//! One life of a stream: connect, take the stream's lease, copy first when the snapshot mode and
//! the stored state say so, open the change stream where the checkpoint says, and consume until
//! shutdown, an operator reset or an error. It returns how it ended; deciding what happens next
//! is the supervisor's.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tracing::info;

use super::{spawn_reader, BatchLimits, Consumer, ReaderSpec, StreamExit};
use crate::error::StreamError;
use crate::metrics::StreamState;
use crate::replicator::RunContext;
use crate::sink::connect::{connect_pg, AbortOnDrop};
use crate::sink::{checkpoint, Checkpoint, SinkError};
use crate::source::{StartAt, StreamOptions};

/// One life of a stream (a collection, or a stream group): connect, load the checkpoint, open
/// the change stream, apply batches.
pub async fn run_stream_once(
    ctx: &RunContext,
    stream: &str,
    shutdown: watch::Receiver<bool>,
) -> Result<StreamExit, StreamError> {
    let Some(spec) = ctx.mapping.config.stream_spec(stream) else {
        return Ok(StreamExit::Shutdown);
    };
    let members: Vec<&crate::mapping::CollectionRules> = spec
        .collections
        .iter()
        .filter_map(|c| ctx.mapping.rules(c))
        .collect();
    if members.is_empty() {
        return Ok(StreamExit::Shutdown);
    }
    let rules: Arc<BTreeMap<String, crate::mapping::CollectionRules>> = Arc::new(
        members
            .iter()
            .map(|r| (r.collection.clone(), (*r).clone()))
            .collect(),
    );
    let collection = stream;
    let (mut client, _conn) = connect_pg(&ctx.pg_url)
        .await
        .map_err(StreamError::PgConnect)?;
    // The stream's lease: a session advisory lock on this connection. Only its holder runs the
    // stream; other replicas wait in standby and take over when the holder's connection ends.
    if !checkpoint::try_take_lease(&client, &ctx.names.checkpoints, stream).await? {
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
            pg_url: Some(&ctx.pg_url),
        };
        let metrics = ctx.metrics.clone();
        let mut cb = |coll: &str, p: &crate::snapshot::SnapshotProgress| {
            metrics.snapshot_copied(coll, p.page_documents);
            metrics.set_snapshot_remaining(coll, p.remaining.saturating_sub(p.copied));
        };
        let copy = crate::snapshot::StreamCopy {
            stream,
            collections: members.clone(),
            whole_database: spec.group,
        };
        crate::snapshot::prepare_copy(
            snap,
            ctx.mapping.config.snapshot.mode,
            &copy,
            &options,
            &mut cb,
        )
        .await
        .map_err(|e| StreamError::Snapshot {
            collection: stream.to_string(),
            source: Box::new(e),
        })?;
    }
    checkpoint::record_members(&client, &ctx.names.checkpoints, stream, &spec.collections).await?;
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
        batch_size: Some(u32::try_from(stream_cfg.batch_max_events).unwrap_or(u32::MAX)),
    };
    let (rx, reader) = spawn_reader(ReaderSpec {
        mongo: &ctx.mongo,
        database: &ctx.mapping.config.source.database,
        stream,
        group: spec.group.then_some(spec.collections.as_slice()),
        start: &start,
        options: &options,
        rules,
        capacity: stream_cfg.channel_capacity,
        budget_bytes: stream_cfg.channel_bytes,
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
    // The second connection on which the next batch's ids are resolved while a batch is written.
    let ids_client = if stream_cfg.resolve_ahead {
        let (ids, conn) = connect_pg(&ctx.pg_url)
            .await
            .map_err(StreamError::PgConnect)?;
        Some((ids, conn))
    } else {
        None
    };
    let (ids_client, _ids_conn) = match ids_client {
        Some((c, conn)) => (Some(c), Some(conn)),
        None => (None, None),
    };
    let consumer = Consumer {
        stream: collection,
        epoch,
        limits,
        client,
        ids_client,
        sink,
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
