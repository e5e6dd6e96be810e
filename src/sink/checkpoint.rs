//! The per-stream checkpoint: read it, lock it at the start of a batch (serialising replicators on
//! one stream and detecting operator resets through `epoch`), and advance it as the batch's last
//! statement, forward only, enforced in SQL.

use bson::Document;
use tokio_postgres::GenericClient;

use crate::event::{ClusterTime, Position};
use crate::sink::error::SinkError;
use crate::sink::gaps::{document_extjson, document_from_extjson};

/// A stream's stored checkpoint row.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    pub stream: String,
    /// None until a first batch (or an operator) stored a position.
    pub position: Option<Position>,
    /// Bumped by operator resets; a replicator only writes while it holds the epoch it read.
    pub epoch: i64,
    pub holder: Option<String>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
    pub snapshot_state: Option<String>,
    pub snapshot_last_id: Option<String>,
    pub snapshot_start_token: Option<String>,
    pub snapshot_start_time: Option<i64>,
}

/// Extended JSON text stored for a resume token.
pub fn token_text(token: &Document) -> String {
    document_extjson(token)
}

/// Reads the checkpoint of `stream`, if any.
pub async fn load_checkpoint<C: GenericClient>(
    client: &C,
    checkpoints_table: &str,
    stream: &str,
) -> Result<Option<Checkpoint>, SinkError> {
    let sql = format!(
        "SELECT stream, resume_token, cluster_time, epoch, holder, updated_at, snapshot_state,
                snapshot_last_id, snapshot_start_token, snapshot_start_time
         FROM {checkpoints_table} WHERE stream = $1"
    );
    let Some(row) = client
        .query_opt(&sql, &[&stream])
        .await
        .map_err(|e| SinkError::pg("reading the checkpoint", e))?
    else {
        return Ok(None);
    };
    let token: Option<String> = row.get(1);
    let time: Option<i64> = row.get(2);
    let position = match (token, time) {
        (Some(token), Some(time)) => Some(Position {
            token: document_from_extjson("resume token", &token)?,
            cluster_time: ClusterTime::from_i64(time),
        }),
        _ => None,
    };
    Ok(Some(Checkpoint {
        stream: row.get(0),
        position,
        epoch: row.get(3),
        holder: row.get(4),
        updated_at: row.get(5),
        snapshot_state: row.get(6),
        snapshot_last_id: row.get(7),
        snapshot_start_token: row.get(8),
        snapshot_start_time: row.get(9),
    }))
}

/// Creates the row if missing, locks it for the rest of the transaction and checks the epoch.
pub(crate) async fn lock<C: GenericClient>(
    client: &C,
    checkpoints_table: &str,
    stream: &str,
    epoch: i64,
) -> Result<(), SinkError> {
    let ctx = "locking the checkpoint";
    client
        .execute(
            &format!(
                "INSERT INTO {checkpoints_table} (stream, epoch) VALUES ($1, $2)
                 ON CONFLICT (stream) DO NOTHING"
            ),
            &[&stream, &epoch],
        )
        .await
        .map_err(|e| SinkError::pg(ctx, e))?;
    let row = client
        .query_one(
            &format!("SELECT epoch FROM {checkpoints_table} WHERE stream = $1 FOR UPDATE"),
            &[&stream],
        )
        .await
        .map_err(|e| SinkError::pg(ctx, e))?;
    let found: i64 = row.get(0);
    if found != epoch {
        return Err(SinkError::CheckpointMoved {
            stream: stream.to_string(),
            expected: epoch,
            found,
        });
    }
    Ok(())
}

/// Moves the checkpoint to `position` if it is ahead of the stored one (cluster time, then token
/// in byte order) and the epoch is still `epoch`. Returns whether it moved; an epoch mismatch is
/// `CheckpointMoved`.
pub(crate) async fn advance<C: GenericClient>(
    client: &C,
    checkpoints_table: &str,
    stream: &str,
    epoch: i64,
    position: &Position,
    holder: &str,
) -> Result<bool, SinkError> {
    let token = token_text(&position.token);
    let time = position.cluster_time.as_i64();
    let sql = format!(
        "WITH cur AS (
           SELECT stream, (cluster_time IS NULL OR resume_token IS NULL OR cluster_time < $4
                   OR (cluster_time = $4 AND resume_token COLLATE \"C\" < $3::text COLLATE \"C\")) AS fwd
           FROM {checkpoints_table} WHERE stream = $1 AND epoch = $2)
         UPDATE {checkpoints_table} AS c SET
           resume_token = CASE WHEN cur.fwd THEN $3 ELSE c.resume_token END,
           cluster_time = CASE WHEN cur.fwd THEN $4 ELSE c.cluster_time END,
           holder = $5, updated_at = now()
         FROM cur WHERE c.stream = cur.stream
         RETURNING cur.fwd"
    );
    let row = client
        .query_opt(&sql, &[&stream, &epoch, &token, &time, &holder])
        .await
        .map_err(|e| SinkError::pg("advancing the checkpoint", e))?;
    match row {
        Some(row) => Ok(row.get(0)),
        None => {
            let found = client
                .query_opt(
                    &format!("SELECT epoch FROM {checkpoints_table} WHERE stream = $1"),
                    &[&stream],
                )
                .await
                .map_err(|e| SinkError::pg("reading the checkpoint epoch", e))?
                .map_or(-1, |r| r.get(0));
            Err(SinkError::CheckpointMoved {
                stream: stream.to_string(),
                expected: epoch,
                found,
            })
        }
    }
}
