//! The snapshot columns of a stream's checkpoint row: reading where a copy stands, starting one
//! (recording the stream position taken before the copy) and the hand-over to streaming at the
//! end, and the page progress (`snapshot_last_id`) written after each page commits.

use bson::{Bson, Document};
use tokio_postgres::GenericClient;

use super::policy::SnapshotState;
use super::SnapshotError;
use crate::event::{ClusterTime, Position};
use crate::sink::name::quote_qualified;
use crate::sink::ControlNames;

/// `snapshot_state` while a copy runs (it resumes after `snapshot_last_id`).
pub const STATE_RUNNING: &str = "running";
/// `snapshot_state` after the hand-over.
pub const STATE_DONE: &str = crate::ops::tokens::store::SNAPSHOT_DONE;
/// `snapshot_state` set by `tokens reset --resnapshot`: copy again before streaming.
pub const STATE_PENDING: &str = crate::ops::tokens::store::SNAPSHOT_PENDING;

/// The snapshot-related part of a checkpoint row.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredSnapshot {
    pub epoch: i64,
    pub has_position: bool,
    pub state: Option<String>,
    pub last_id: Option<Bson>,
    pub start: Option<Position>,
}

impl StoredSnapshot {
    /// What `policy::needs_snapshot` decides on.
    pub fn state(&self) -> SnapshotState {
        match self.state.as_deref() {
            Some(STATE_RUNNING) | Some(STATE_PENDING) => SnapshotState::InProgress,
            _ if self.has_position => SnapshotState::Streaming,
            _ => SnapshotState::NoCheckpoint,
        }
    }
}

/// Snapshot `_id`s are stored as canonical extended JSON text (type-exact).
pub fn id_to_text(id: &Bson) -> String {
    id.clone().into_canonical_extjson().to_string()
}

pub fn id_from_text(text: &str) -> Option<Bson> {
    let value: serde_json::Value = serde_json::from_str(text).ok()?;
    Bson::try_from(value).ok()
}

fn token_text(token: &Document) -> String {
    crate::ops::tokens::store::token_to_text(token)
}

fn token_from_text(text: &str) -> Option<Document> {
    match id_from_text(text)? {
        Bson::Document(d) => Some(d),
        _ => None,
    }
}

fn table(names: &ControlNames) -> Result<String, SnapshotError> {
    Ok(quote_qualified(&names.checkpoints)?)
}

fn pg(context: &'static str) -> impl FnOnce(tokio_postgres::Error) -> SnapshotError {
    move |source| SnapshotError::Postgres { context, source }
}

/// The stream's snapshot columns (None when the stream has no checkpoint row).
pub async fn load(
    client: &impl GenericClient,
    names: &ControlNames,
    stream: &str,
) -> Result<Option<StoredSnapshot>, SnapshotError> {
    let sql = format!(
        "select epoch, resume_token is not null or cluster_time is not null, snapshot_state, snapshot_last_id, snapshot_start_token, snapshot_start_time
         from {} where stream = $1",
        table(names)?
    );
    let row = client
        .query_opt(&sql, &[&stream])
        .await
        .map_err(pg("reading the snapshot state"))?;
    Ok(row.map(|r| {
        let start_token: Option<String> = r.get(4);
        let start_time: Option<i64> = r.get(5);
        let start = match (start_token.as_deref().and_then(token_from_text), start_time) {
            (Some(token), Some(t)) => Some(Position {
                token,
                cluster_time: ClusterTime::from_i64(t),
            }),
            _ => None,
        };
        StoredSnapshot {
            epoch: r.get(0),
            has_position: r.get(1),
            state: r.get(2),
            last_id: r
                .get::<_, Option<String>>(3)
                .as_deref()
                .and_then(id_from_text),
            start,
        }
    }))
}

/// Marks a copy as running from `start` (creating the checkpoint row if needed, without a
/// position: the stream must not start before the copy hands over). Returns the row's epoch.
pub async fn begin(
    client: &impl GenericClient,
    names: &ControlNames,
    stream: &str,
    start: &Position,
) -> Result<i64, SnapshotError> {
    let sql = format!(
        "insert into {t} as c (stream, snapshot_state, snapshot_last_id, snapshot_start_token, snapshot_start_time, updated_at)
         values ($1, $2, null, $3, $4, now())
         on conflict (stream) do update set snapshot_state = excluded.snapshot_state, snapshot_last_id = null,
             snapshot_start_token = excluded.snapshot_start_token,
             snapshot_start_time = excluded.snapshot_start_time, updated_at = now()
         returning c.epoch",
        t = table(names)?
    );
    let row = client
        .query_one(
            &sql,
            &[
                &stream,
                &STATE_RUNNING,
                &token_text(&start.token),
                &start.cluster_time.as_i64(),
            ],
        )
        .await
        .map_err(pg("recording the snapshot start"))?;
    Ok(row.get(0))
}

/// Records that every document up to `last_id` is copied. Fails with `Moved` when an operator
/// reset the stream (epoch changed) since the copy started.
pub async fn record_progress(
    client: &impl GenericClient,
    names: &ControlNames,
    stream: &str,
    epoch: i64,
    last_id: &Bson,
) -> Result<(), SnapshotError> {
    let sql = format!(
        "update {} set snapshot_last_id = $3, updated_at = now()
         where stream = $1 and epoch = $2 and snapshot_state = $4",
        table(names)?
    );
    let n = client
        .execute(
            &sql,
            &[&stream, &epoch, &id_to_text(last_id), &STATE_RUNNING],
        )
        .await
        .map_err(pg("recording snapshot progress"))?;
    if n == 1 {
        Ok(())
    } else {
        Err(SnapshotError::Moved {
            stream: stream.to_string(),
        })
    }
}

/// The hand-over: the stream's position becomes the copy's start position (forward only: a
/// position already past it is kept) and the copy is done. Fails with `Moved` when an operator
/// reset the stream (epoch changed) while the copy ran.
pub async fn hand_over(
    client: &impl GenericClient,
    names: &ControlNames,
    stream: &str,
    epoch: i64,
    start: &Position,
) -> Result<(), SnapshotError> {
    let sql = format!(
        "update {t} as c set
             resume_token = case when c.cluster_time is null or c.cluster_time < $3 then $2 else c.resume_token end,
             cluster_time = greatest(coalesce(c.cluster_time, $3), $3),
             snapshot_state = $5, snapshot_last_id = null, updated_at = now()
         where stream = $1 and epoch = $4",
        t = table(names)?
    );
    let n = client
        .execute(
            &sql,
            &[
                &stream,
                &token_text(&start.token),
                &start.cluster_time.as_i64(),
                &epoch,
                &STATE_DONE,
            ],
        )
        .await
        .map_err(pg("handing the snapshot over to the stream"))?;
    if n == 1 {
        Ok(())
    } else {
        Err(SnapshotError::Moved {
            stream: stream.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::oid::ObjectId;

    #[test]
    fn ids_round_trip_through_their_stored_text_with_their_type() {
        let oid = ObjectId::parse_str("650000000000000000000001").expect("hex");
        for id in [
            Bson::ObjectId(oid),
            Bson::String("tpl-1".into()),
            Bson::Int64(7),
            Bson::Int32(7),
        ] {
            assert_eq!(id_from_text(&id_to_text(&id)), Some(id.clone()));
        }
    }

    #[test]
    fn state_follows_the_stored_columns() {
        let mut s = StoredSnapshot {
            epoch: 0,
            has_position: false,
            state: None,
            last_id: None,
            start: None,
        };
        assert_eq!(s.state(), SnapshotState::NoCheckpoint);
        s.state = Some(STATE_RUNNING.into());
        assert_eq!(s.state(), SnapshotState::InProgress);
        s.state = Some(STATE_DONE.into());
        s.has_position = true;
        assert_eq!(s.state(), SnapshotState::Streaming);
        s.state = Some(STATE_PENDING.into());
        assert_eq!(s.state(), SnapshotState::InProgress);
    }
}
