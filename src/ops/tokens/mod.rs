//! Resume tokens as operators see and steer them: `show` lists every stream's stored position
//! (token, cluster time, age, lag behind MongoDB, epoch, holder) and `reset` moves one stream to a
//! token, a time, now (recording the skipped window as a `window_lost` gap) or back to a fresh
//! snapshot, in one Postgres transaction that also writes the audit row.
//!
//! A reset bumps the checkpoint's `epoch`: a running replicator's next batch commit sees the new
//! epoch, rolls back (the sink raises `CheckpointMoved`) and restarts from the stored position, so
//! its old in-memory position can never overwrite the operator's. The same transaction sends
//! `NOTIFY mongo2pg_token_reset, '<stream>'` so a listening process restarts within seconds
//! instead of at its next batch.

pub mod listen;
pub mod target;

use serde::Serialize;

use crate::sink::audit::ResetAudit;
use crate::sink::extjson::document_extjson;
use crate::sink::{checkpoint, gaps, Checkpoint, ControlNames, SinkError};
pub use listen::{listen_for_resets, ResetListener};
pub use target::{
    parse_cluster_time, parse_token, ResetArgs, ResetArgsError, ResetRequest, ResetTarget,
};

use crate::event::ClusterTime;

/// The channel a reset notifies; the payload is the stream name.
pub const RESET_CHANNEL: &str = "mongo2pg_token_reset";

/// Why a tokens command failed.
#[derive(Debug, thiserror::Error)]
pub enum TokensError {
    #[error("postgres error while {context}: {source}")]
    Postgres {
        context: &'static str,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("mongodb error while {context}: {source}")]
    Mongo {
        context: &'static str,
        #[source]
        source: Box<mongodb::error::Error>,
    },
    #[error(transparent)]
    Sink(#[from] SinkError),
    /// The cluster time of a `--to-token` cannot be read from it, so the checkpoint could not
    /// order it; reset to its time (`--to-time`) instead.
    #[error("the cluster time of token {0} cannot be decoded; use --to-time instead")]
    UndecodableToken(String),
    #[error("collection {0} is not mapped")]
    UnknownCollection(String),
}

/// A resume token as shown to operators: relaxed extended JSON.
pub fn token_to_json(token: &bson::Document) -> serde_json::Value {
    bson::Bson::Document(token.clone()).into_relaxed_extjson()
}

/// A stored token as JSON for operators (the stored text itself when it is not JSON).
fn stored_token_json(c: &Checkpoint) -> Option<serde_json::Value> {
    c.resume_token
        .as_ref()
        .map(|t| serde_json::from_str(t).unwrap_or_else(|_| serde_json::Value::String(t.clone())))
}

/// `Timestamp(secs, inc)`, as the mongo shell prints cluster times.
pub fn format_cluster_time(t: ClusterTime) -> String {
    format!("Timestamp({}, {})", t.seconds(), t.increment())
}

/// A position as shown to operators and stored in the audit table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PositionView {
    /// The resume token as relaxed extended JSON (None: start at the cluster time, or snapshot).
    pub token: Option<serde_json::Value>,
    /// Packed cluster time (secs << 32 | inc).
    pub cluster_time: Option<u64>,
    /// `Timestamp(secs, inc)`.
    pub cluster_time_text: Option<String>,
}

impl PositionView {
    pub fn new(token: Option<serde_json::Value>, cluster_time: Option<ClusterTime>) -> Self {
        PositionView {
            token,
            cluster_time: cluster_time.map(ClusterTime::packed),
            cluster_time_text: cluster_time.map(format_cluster_time),
        }
    }
}

/// One stream in `tokens show`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TokenView {
    pub stream: String,
    pub position: PositionView,
    /// Wall-clock time of the stored cluster time.
    pub at: Option<chrono::DateTime<chrono::Utc>>,
    /// Seconds between the stored cluster time and now.
    pub age_seconds: Option<i64>,
    /// Seconds the stream is behind MongoDB's current cluster time (when MongoDB was reachable).
    pub lag_seconds: Option<i64>,
    pub epoch: i64,
    /// Instance holding the stream's lease, when one is recorded.
    pub holder: Option<String>,
    pub updated_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Snapshot state of the stream (e.g. running, done, pending) when it has one.
    pub snapshot_state: Option<String>,
    /// Last `_id` copied by an unfinished snapshot.
    pub snapshot_last_id: Option<String>,
    /// The collections the row covers (a stream group's members, or the collection itself).
    pub collections: Vec<String>,
    /// True when no stream uses the row any more (its collections moved to another stream).
    pub retired: bool,
}

/// MongoDB's current cluster time (the operation time of a `ping`).
pub async fn mongo_cluster_time(
    client: &mongodb::Client,
) -> Result<ClusterTime, mongodb::error::Error> {
    let mut session = client.start_session().await?;
    client
        .database("admin")
        .run_command(bson::doc! {"ping": 1})
        .session(&mut session)
        .await?;
    session
        .operation_time()
        .map(ClusterTime::from)
        .ok_or_else(|| {
            mongodb::error::Error::custom("server reported no operationTime for ping".to_string())
        })
}

/// Every stored stream position. `mongo_now` (from `mongo_cluster_time`) fills the lag.
pub async fn show(
    pg: &tokio_postgres::Client,
    tables: &ControlNames,
    mongo_now: Option<ClusterTime>,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Vec<TokenView>, TokensError> {
    let rows = checkpoint::load_all(pg, &tables.checkpoints).await?;
    let members = checkpoint::load_members(pg, &tables.checkpoints).await?;
    Ok(rows
        .into_iter()
        .map(|c| {
            let (collections, retired) = members.get(&c.stream).cloned().unwrap_or_default();
            let at = c.cluster_time.map(ClusterTime::to_datetime);
            TokenView {
                position: PositionView::new(stored_token_json(&c), c.cluster_time),
                at,
                age_seconds: at.map(|t| (now - t).num_seconds()),
                lag_seconds: match (mongo_now, c.cluster_time) {
                    (Some(m), Some(t)) => Some(i64::from(m.seconds()) - i64::from(t.seconds())),
                    _ => None,
                },
                epoch: c.epoch,
                holder: c.holder.clone(),
                updated_at: Some(c.updated_at),
                snapshot_state: c.snapshot_state.map(|s| s.as_str().to_string()),
                snapshot_last_id: c.snapshot_last_id.clone(),
                collections: collections.unwrap_or_else(|| vec![c.stream.clone()]),
                retired,
                stream: c.stream,
            }
        })
        .collect())
}

/// What a reset did (or, with `dry_run`, would do).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResetOutcome {
    pub stream: String,
    pub target: &'static str,
    pub dry_run: bool,
    pub from: Option<PositionView>,
    pub to: PositionView,
    pub epoch_from: Option<i64>,
    pub epoch_to: i64,
    /// The skipped window recorded as a `window_lost` gap (`--to-now` without `--no-gap`).
    pub gap_window: Option<(PositionView, PositionView)>,
    pub gap_id: Option<i64>,
    pub audit_id: Option<i64>,
    /// The stream will copy the collection again before streaming.
    pub resnapshot: bool,
    pub actor: String,
    pub reason: String,
}

/// Moves one stream as `request` says; see the module docs for the guarantees.
pub async fn reset(
    pg: &mut tokio_postgres::Client,
    mongo: &mongodb::Client,
    database: &str,
    tables: &ControlNames,
    request: &ResetRequest,
) -> Result<ResetOutcome, TokensError> {
    let stream = request.collection.clone();
    // For --to-now the new position is taken before the transaction starts: it must be a real
    // position of the stream (a token), and everything after it will be streamed.
    let now_position = match request.target {
        ResetTarget::Now => Some(
            crate::source::snapshot::capture_position(
                mongo,
                database,
                request
                    .group
                    .is_none()
                    .then_some(request.collection.as_str()),
            )
            .await
            .map_err(|source| TokensError::Mongo {
                context: "reading the current stream position",
                source: Box::new(source),
            })?,
        ),
        _ => None,
    };
    let tx = pg
        .transaction()
        .await
        .map_err(|source| TokensError::Postgres {
            context: "starting the reset transaction",
            source,
        })?;
    let current = checkpoint::load_for_rewrite(&tx, &tables.checkpoints, &stream).await?;
    let (to_token, to_time) = match &request.target {
        ResetTarget::Token(t) => match crate::source::token_cluster_time(t) {
            Some(time) => (Some(t.clone()), Some(time)),
            None => return Err(TokensError::UndecodableToken(document_extjson(t))),
        },
        ResetTarget::Time(t) => (None, Some(*t)),
        ResetTarget::Now => (
            now_position.as_ref().map(|p| p.token.clone()),
            now_position.as_ref().map(|p| p.cluster_time),
        ),
        ResetTarget::Resnapshot => (None, None),
    };
    let to = PositionView::new(to_token.as_ref().map(token_to_json), to_time);
    let from = current
        .as_ref()
        .map(|c| PositionView::new(stored_token_json(c), c.cluster_time));
    let epoch_from = current.as_ref().map(|c| c.epoch);
    let epoch_to = epoch_from.map_or(1, |e| e + 1);
    let gap_window = match (
        &request.target,
        request.record_gap,
        current.as_ref().and_then(|c| c.cluster_time),
        to_time,
    ) {
        (ResetTarget::Now, true, Some(start), Some(end)) if end > start => Some((
            PositionView::new(None, Some(start)),
            PositionView::new(None, Some(end)),
        )),
        _ => None,
    };
    let mut outcome = ResetOutcome {
        stream: stream.clone(),
        target: request.target.label(),
        dry_run: request.dry_run,
        from,
        to,
        epoch_from,
        epoch_to,
        gap_window,
        gap_id: None,
        audit_id: None,
        resnapshot: matches!(request.target, ResetTarget::Resnapshot),
        actor: request.actor.clone(),
        reason: request.reason.clone(),
    };
    if request.dry_run {
        return Ok(outcome);
    }
    checkpoint::rewrite(
        &tx,
        &tables.checkpoints,
        &stream,
        to_token.as_ref(),
        to_time,
        outcome.resnapshot,
    )
    .await?;
    if let Some((start, end)) = &outcome.gap_window {
        let reason = format!(
            "operator skipped {} .. {} with tokens reset --to-now: {}",
            start.cluster_time_text.clone().unwrap_or_default(),
            end.cluster_time_text.clone().unwrap_or_default(),
            request.reason
        );
        let window = (
            ClusterTime(start.cluster_time.unwrap_or(0)),
            ClusterTime(end.cluster_time.unwrap_or(0)),
        );
        let members = request
            .group
            .clone()
            .unwrap_or_else(|| vec![request.collection.clone()]);
        for member in &members {
            let id = gaps::record_window_gap(&tx, &tables.gaps, member, window, &reason).await?;
            outcome.gap_id.get_or_insert(id);
        }
    }
    let shown = |p: Option<&PositionView>| p.and_then(|p| p.token.as_ref()).map(|t| t.to_string());
    let audit = ResetAudit {
        stream: &outcome.stream,
        actor: &outcome.actor,
        from_token: shown(outcome.from.as_ref()),
        from_time: outcome
            .from
            .as_ref()
            .and_then(|p| p.cluster_time)
            .map(ClusterTime),
        to_token: shown(Some(&outcome.to)),
        to_time: outcome.to.cluster_time.map(ClusterTime),
        reason: &outcome.reason,
        mode: outcome.target,
    };
    outcome.audit_id = Some(crate::sink::audit::record_reset(&tx, &tables.audit, &audit).await?);
    tx.execute("select pg_notify($1, $2)", &[&RESET_CHANNEL, &stream])
        .await
        .map_err(|source| TokensError::Postgres {
            context: "notifying the reset",
            source,
        })?;
    tx.commit().await.map_err(|source| TokensError::Postgres {
        context: "committing the reset",
        source,
    })?;
    tracing::warn!(
        stream = %stream,
        target = outcome.target,
        actor = %outcome.actor,
        reason = %outcome.reason,
        epoch = outcome.epoch_to,
        "resume token reset"
    );
    Ok(outcome)
}

/// A compact table of stream positions for terminals (`--json` prints `TokenView`s instead).
pub fn render_table(views: &[TokenView]) -> String {
    use std::fmt::Write as _;
    let mut out = format!(
        "{:<24} {:<28} {:>8} {:>8} {:>6} {:<10} {:<16} {}\n",
        "stream", "cluster time", "age s", "lag s", "epoch", "snapshot", "holder", "collections"
    );
    for v in views {
        let opt = |n: Option<i64>| n.map_or("-".to_string(), |n| n.to_string());
        let _ = writeln!(
            out,
            "{:<24} {:<28} {:>8} {:>8} {:>6} {:<10} {:<16} {}{}",
            v.stream,
            v.position.cluster_time_text.as_deref().unwrap_or("-"),
            opt(v.age_seconds),
            opt(v.lag_seconds),
            v.epoch,
            v.snapshot_state.as_deref().unwrap_or("-"),
            v.holder.as_deref().unwrap_or("-"),
            v.collections.join(","),
            if v.retired { " (retired)" } else { "" }
        );
    }
    out
}

/// What a reset did (or would do), in words.
pub fn render_reset(o: &ResetOutcome) -> String {
    let pos = |p: &PositionView| match (&p.token, &p.cluster_time_text) {
        (Some(t), Some(c)) => format!("{c} token {t}"),
        (None, Some(c)) => c.clone(),
        (Some(t), None) => format!("token {t}"),
        (None, None) => "snapshot (copy again)".to_string(),
    };
    let mut out = format!(
        "{}reset {} to {} ({}): {} -> {}, epoch {} -> {}\n",
        if o.dry_run { "[dry run] would " } else { "" },
        o.stream,
        o.target,
        o.reason,
        o.from.as_ref().map_or("no position".to_string(), pos),
        pos(&o.to),
        o.epoch_from.map_or("-".to_string(), |e| e.to_string()),
        o.epoch_to
    );
    if let Some((a, b)) = &o.gap_window {
        out.push_str(&format!(
            "skipped window {} .. {} recorded as window_lost gap {}\n",
            a.cluster_time_text.as_deref().unwrap_or("-"),
            b.cluster_time_text.as_deref().unwrap_or("-"),
            o.gap_id.map_or("(dry run)".to_string(), |g| g.to_string())
        ));
    }
    out
}
