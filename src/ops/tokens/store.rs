//! The SQL of the tokens commands: reading checkpoint rows, rewriting one (epoch bump) and the
//! audit and window-gap rows written with it. Column names follow the control-table migrations.

use bson::Document;
use tokio_postgres::GenericClient;

use super::{ResetOutcome, TokensError};
use crate::event::ClusterTime;
use crate::sink::name::quote_qualified;
use crate::sink::ControlNames;

fn q(name: &str) -> Result<String, TokensError> {
    Ok(quote_qualified(name)?)
}

/// One checkpoint row.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredCheckpoint {
    pub stream: String,
    /// The resume token as stored (extended JSON text).
    pub token: Option<String>,
    pub cluster_time: Option<ClusterTime>,
    pub epoch: i64,
    pub holder: Option<String>,
    pub updated_at: Option<chrono::DateTime<chrono::Utc>>,
    pub snapshot_state: Option<String>,
    pub snapshot_last_id: Option<String>,
}

impl StoredCheckpoint {
    /// The stored token as JSON (the text itself when it is not JSON).
    pub fn token_json(&self) -> Option<serde_json::Value> {
        self.token.as_ref().map(|t| {
            serde_json::from_str(t).unwrap_or_else(|_| serde_json::Value::String(t.clone()))
        })
    }
}

/// A resume token as shown to operators: relaxed extended JSON.
pub fn token_to_json(token: &Document) -> serde_json::Value {
    bson::Bson::Document(token.clone()).into_relaxed_extjson()
}

/// A resume token as stored in the checkpoint and audit tables: canonical extended JSON text.
pub fn token_to_text(token: &Document) -> String {
    bson::Bson::Document(token.clone())
        .into_canonical_extjson()
        .to_string()
}

const COLUMNS: &str = "stream, resume_token, cluster_time, epoch, holder, updated_at, snapshot_state, snapshot_last_id";

fn from_row(r: &tokio_postgres::Row) -> StoredCheckpoint {
    StoredCheckpoint {
        stream: r.get(0),
        token: r.get(1),
        cluster_time: r.get::<_, Option<i64>>(2).map(ClusterTime::from_i64),
        epoch: r.get(3),
        holder: r.get(4),
        updated_at: r.get(5),
        snapshot_state: r.get(6),
        snapshot_last_id: r.get(7),
    }
}

fn pg(context: &'static str) -> impl FnOnce(tokio_postgres::Error) -> TokensError {
    move |source| TokensError::Postgres { context, source }
}

pub async fn load_all(
    pg_client: &impl GenericClient,
    tables: &ControlNames,
) -> Result<Vec<StoredCheckpoint>, TokensError> {
    let sql = format!(
        "select {COLUMNS} from {} order by stream",
        q(&tables.checkpoints)?
    );
    let rows = pg_client
        .query(&sql, &[])
        .await
        .map_err(pg("reading checkpoints"))?;
    Ok(rows.iter().map(from_row).collect())
}

/// The stream's checkpoint row.
pub async fn load_one(
    pg_client: &impl GenericClient,
    tables: &ControlNames,
    stream: &str,
) -> Result<Option<StoredCheckpoint>, TokensError> {
    let sql = format!(
        "select {COLUMNS} from {} where stream = $1",
        q(&tables.checkpoints)?
    );
    let row = pg_client
        .query_opt(&sql, &[&stream])
        .await
        .map_err(pg("reading the checkpoint"))?;
    Ok(row.as_ref().map(from_row))
}

/// The stream's checkpoint row, locked for the rest of the transaction.
pub async fn lock_one(
    tx: &impl GenericClient,
    tables: &ControlNames,
    stream: &str,
) -> Result<Option<StoredCheckpoint>, TokensError> {
    let sql = format!(
        "select {COLUMNS} from {} where stream = $1 for update",
        q(&tables.checkpoints)?
    );
    let row = tx
        .query_opt(&sql, &[&stream])
        .await
        .map_err(pg("locking the checkpoint"))?;
    Ok(row.as_ref().map(from_row))
}

/// `snapshot_state` after a copy handed over, or an operator set the position.
pub const SNAPSHOT_DONE: &str = "done";
/// `snapshot_state` of a stream whose copy must run (again) before it streams.
pub const SNAPSHOT_PENDING: &str = "pending";

/// Rewrites the stream's position (backwards allowed: this is the operator's override) and bumps
/// its epoch. `resnapshot` clears the position and the snapshot progress and marks the copy
/// pending, so the stream copies the collection again before streaming; any other reset marks
/// the copy done (an operator's position replaces an unfinished copy's hand-over).
pub async fn write_reset(
    tx: &impl GenericClient,
    tables: &ControlNames,
    stream: &str,
    token: Option<&Document>,
    cluster_time: Option<ClusterTime>,
    resnapshot: bool,
) -> Result<(), TokensError> {
    let token = token.map(token_to_text);
    let time = cluster_time.map(ClusterTime::as_i64);
    // An operator position ends any copy in progress (a copy's hand-over must not overwrite it);
    // `--resnapshot` asks for a new copy.
    let state = if resnapshot {
        SNAPSHOT_PENDING
    } else {
        SNAPSHOT_DONE
    };
    let sql = format!(
        "insert into {t} (stream, resume_token, cluster_time, epoch, updated_at, snapshot_state)
         values ($1, $2, $3, 1, now(), $4)
         on conflict (stream) do update set resume_token = excluded.resume_token,
             cluster_time = excluded.cluster_time, epoch = {t}.epoch + 1, updated_at = now(),
             snapshot_state = excluded.snapshot_state, snapshot_last_id = null,
             snapshot_start_token = null, snapshot_start_time = null",
        t = q(&tables.checkpoints)?
    );
    tx.execute(&sql, &[&stream, &token, &time, &state])
        .await
        .map_err(pg("rewriting the checkpoint"))?;
    Ok(())
}

/// Records a skipped window as an open `window_lost` gap (window bounds as wall-clock instants,
/// the window's end cluster time as the gap's cluster time); returns its id.
pub async fn insert_window_gap(
    tx: &impl GenericClient,
    tables: &ControlNames,
    collection: &str,
    window: (ClusterTime, ClusterTime),
    reason: &str,
) -> Result<i64, TokensError> {
    let sql = format!(
        "insert into {} (collection, kind, reason, cluster_time, window_start, window_end)
         values ($1, 'window_lost', $2, $3, $4, $5)
         on conflict (collection, (coalesce(document_key, '')), (coalesce(cluster_time, -1)), kind)
         do update set last_seen = now()
         returning id",
        q(&tables.gaps)?
    );
    let row = tx
        .query_one(
            &sql,
            &[
                &collection,
                &reason,
                &window.1.as_i64(),
                &window.0.to_datetime(),
                &window.1.to_datetime(),
            ],
        )
        .await
        .map_err(pg("recording the skipped window"))?;
    Ok(row.get(0))
}

/// Writes the audit row of a reset; returns its id.
pub async fn insert_audit(
    tx: &impl GenericClient,
    tables: &ControlNames,
    o: &ResetOutcome,
) -> Result<i64, TokensError> {
    let sql = format!(
        "insert into {} (stream, actor, from_token, from_time, to_token, to_time, reason, mode)
         values ($1, $2, $3, $4, $5, $6, $7, $8) returning id",
        q(&tables.audit)?
    );
    let text =
        |p: Option<&super::PositionView>| p.and_then(|p| p.token.as_ref()).map(|t| t.to_string());
    let from_token = text(o.from.as_ref());
    let from_time = o.from.as_ref().and_then(|p| p.cluster_time);
    let to_token = text(Some(&o.to));
    let row = tx
        .query_one(
            &sql,
            &[
                &o.stream,
                &o.actor,
                &from_token,
                &from_time,
                &to_token,
                &o.to.cluster_time,
                &o.reason,
                &o.target,
            ],
        )
        .await
        .map_err(pg("writing the audit row"))?;
    Ok(row.get(0))
}
