//! The checkpoints table, one row per stream, and every statement on it: reading rows (one, all,
//! locked for an operator rewrite), the batch's lock with its epoch check and its forward-only
//! advance, the operator's rewrite with an epoch bump, the snapshot columns (begin, page
//! progress, hand-over), pinning the start position of streams that never ran, and the stream's
//! lease (a session advisory lock keyed by the table and the stream name).
//!
//! Nothing else in the crate writes SQL against this table. It decides nothing about when to
//! copy, retry or stop: callers decide, this module stores. Cluster times are compared in SQL
//! only in `advance` and `hand_over` (and written by `pin_start`, `rewrite`, `begin_snapshot`).

use std::collections::{BTreeMap, BTreeSet};

use bson::{Bson, Document};
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::GenericClient;

use crate::event::{ClusterTime, Position};
use crate::sink::error::SinkError;
use crate::sink::extjson::{
    bson_extjson, bson_from_extjson, document_extjson, document_from_extjson,
};
use crate::sink::name::quote_qualified;

/// Where a stream's copy stands, stored as text in `snapshot_state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SnapshotState {
    /// A copy runs (or was interrupted); it resumes after `snapshot_last_id`.
    Running,
    /// The copy handed over to the stream, or an operator set the position.
    Done,
    /// `tokens reset --resnapshot`: copy again before streaming.
    Pending,
}

impl SnapshotState {
    pub const ALL: [SnapshotState; 3] = [
        SnapshotState::Running,
        SnapshotState::Done,
        SnapshotState::Pending,
    ];

    /// The stored text.
    pub fn as_str(self) -> &'static str {
        match self {
            SnapshotState::Running => "running",
            SnapshotState::Done => "done",
            SnapshotState::Pending => "pending",
        }
    }

    pub fn parse(text: &str) -> Option<SnapshotState> {
        SnapshotState::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// One row of the checkpoints table, as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    pub stream: String,
    /// The resume token as stored (canonical extended JSON text); see `token`.
    pub resume_token: Option<String>,
    /// With a token: the token's cluster time. Without one: the time to start at (a pinned start
    /// or an operator's `--to-time`).
    pub cluster_time: Option<ClusterTime>,
    /// Bumped by operator resets; a replicator only writes while it holds the epoch it read.
    pub epoch: i64,
    pub holder: Option<String>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
    pub snapshot_state: Option<SnapshotState>,
    /// The collection a running copy is at (a stream group copies several in turn).
    pub snapshot_collection: Option<String>,
    /// The last `_id` a running copy committed (canonical extended JSON text).
    pub snapshot_last_id: Option<String>,
    /// The stream position recorded before the copy started.
    pub snapshot_start_token: Option<String>,
    pub snapshot_start_time: Option<ClusterTime>,
}

const COLUMNS: &str = "stream, resume_token, cluster_time, epoch, holder, updated_at, \
     snapshot_state, snapshot_last_id, snapshot_start_token, snapshot_start_time, snapshot_collection";

fn from_row(r: &tokio_postgres::Row) -> Checkpoint {
    Checkpoint {
        stream: r.get(0),
        resume_token: r.get(1),
        cluster_time: r.get::<_, Option<i64>>(2).map(ClusterTime::from_sql),
        epoch: r.get(3),
        holder: r.get(4),
        updated_at: r.get(5),
        snapshot_state: r
            .get::<_, Option<String>>(6)
            .as_deref()
            .and_then(SnapshotState::parse),
        snapshot_last_id: r.get(7),
        snapshot_start_token: r.get(8),
        snapshot_start_time: r.get::<_, Option<i64>>(9).map(ClusterTime::from_sql),
        snapshot_collection: r.get(10),
    }
}

impl Checkpoint {
    /// The stored resume token, decoded (an undecodable token is `InvalidStored`).
    pub fn token(&self) -> Result<Option<Document>, SinkError> {
        self.resume_token
            .as_deref()
            .map(|t| document_from_extjson("resume token", t))
            .transpose()
    }

    /// The committed position (token and cluster time), if the stream has one.
    pub fn position(&self) -> Result<Option<Position>, SinkError> {
        Ok(match (self.token()?, self.cluster_time) {
            (Some(token), Some(cluster_time)) => Some(Position {
                token,
                cluster_time,
            }),
            _ => None,
        })
    }

    /// True when the stream has a position to start from (a token or a time).
    pub fn has_position(&self) -> bool {
        self.resume_token.is_some() || self.cluster_time.is_some()
    }

    /// The position a copy recorded before it started (None when unreadable or absent: the copy
    /// then starts afresh).
    pub fn snapshot_start(&self) -> Option<Position> {
        let token = document_from_extjson(
            "snapshot start token",
            self.snapshot_start_token.as_deref()?,
        )
        .ok()?;
        Some(Position {
            token,
            cluster_time: self.snapshot_start_time?,
        })
    }

    /// The last `_id` a running copy committed (None when unreadable or absent).
    pub fn snapshot_last_id(&self) -> Option<Bson> {
        bson_from_extjson("snapshot last id", self.snapshot_last_id.as_deref()?).ok()
    }
}

fn table(name: &str) -> Result<String, SinkError> {
    Ok(quote_qualified(name)?)
}

/// The checkpoint of `stream`, if it has a row.
pub async fn load<C: GenericClient>(
    client: &C,
    checkpoints_table: &str,
    stream: &str,
) -> Result<Option<Checkpoint>, SinkError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM {} WHERE stream = $1",
        table(checkpoints_table)?
    );
    let row = client
        .query_opt(&sql, &[&stream])
        .await
        .map_err(|e| SinkError::pg("reading the checkpoint", e))?;
    Ok(row.as_ref().map(from_row))
}

/// Every checkpoint, by stream name.
pub async fn load_all<C: GenericClient>(
    client: &C,
    checkpoints_table: &str,
) -> Result<Vec<Checkpoint>, SinkError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM {} ORDER BY stream",
        table(checkpoints_table)?
    );
    let rows = client
        .query(&sql, &[])
        .await
        .map_err(|e| SinkError::pg("reading checkpoints", e))?;
    Ok(rows.iter().map(from_row).collect())
}

/// The checkpoint of `stream`, locked until the transaction `tx` ends (an operator's rewrite).
pub async fn load_for_rewrite<C: GenericClient>(
    tx: &C,
    checkpoints_table: &str,
    stream: &str,
) -> Result<Option<Checkpoint>, SinkError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM {} WHERE stream = $1 FOR UPDATE",
        table(checkpoints_table)?
    );
    let row = tx
        .query_opt(&sql, &[&stream])
        .await
        .map_err(|e| SinkError::pg("locking the checkpoint", e))?;
    Ok(row.as_ref().map(from_row))
}

/// Creates the row if missing, locks it for the rest of the transaction and checks the epoch
/// (the first statement of every batch). Returns the number of statements it took: one once the
/// row exists.
pub(crate) async fn lock<C: GenericClient>(
    client: &C,
    checkpoints_table: &str,
    stream: &str,
    epoch: i64,
) -> Result<u64, SinkError> {
    let ctx = "locking the checkpoint";
    let t = table(checkpoints_table)?;
    // The row is there but for a stream's first batch: one round trip (`query_typed` sends the
    // statement without preparing it first).
    let select = format!("SELECT epoch FROM {t} WHERE stream = $1 FOR UPDATE");
    let params: [(&(dyn ToSql + Sync), Type); 1] = [(&stream, Type::TEXT)];
    let (row, statements) = match client
        .query_typed_opt(&select, &params)
        .await
        .map_err(|e| SinkError::pg(ctx, e))?
    {
        Some(row) => (row, 1),
        None => {
            client
                .execute_typed(
                    &format!(
                        "INSERT INTO {t} (stream, epoch) VALUES ($1, $2)
                         ON CONFLICT (stream) DO NOTHING"
                    ),
                    &[(&stream, Type::TEXT), (&epoch, Type::INT8)],
                )
                .await
                .map_err(|e| SinkError::pg(ctx, e))?;
            let row = client
                .query_typed_one(&select, &params)
                .await
                .map_err(|e| SinkError::pg(ctx, e))?;
            (row, 3)
        }
    };
    let found: i64 = row.try_get(0).map_err(|e| SinkError::pg(ctx, e))?;
    if found != epoch {
        return Err(SinkError::CheckpointMoved {
            stream: stream.to_string(),
            expected: epoch,
            found,
        });
    }
    Ok(statements)
}

/// Moves the checkpoint to `position` if it is ahead of the stored one (cluster time, then token
/// in byte order, compared in SQL) and the epoch is still `epoch`. Returns whether it moved; an
/// epoch mismatch is `CheckpointMoved`.
pub(crate) async fn advance<C: GenericClient>(
    client: &C,
    checkpoints_table: &str,
    stream: &str,
    epoch: i64,
    position: &Position,
    holder: &str,
) -> Result<bool, SinkError> {
    let t = table(checkpoints_table)?;
    let token = document_extjson(&position.token);
    let time = position.cluster_time.to_sql();
    let sql = format!(
        "WITH cur AS (
           SELECT stream, (cluster_time IS NULL OR resume_token IS NULL OR cluster_time < $4
                   OR (cluster_time = $4 AND resume_token COLLATE \"C\" < $3::text COLLATE \"C\")) AS fwd
           FROM {t} WHERE stream = $1 AND epoch = $2)
         UPDATE {t} AS c SET
           resume_token = CASE WHEN cur.fwd THEN $3 ELSE c.resume_token END,
           cluster_time = CASE WHEN cur.fwd THEN $4 ELSE c.cluster_time END,
           holder = $5, updated_at = now()
         FROM cur WHERE c.stream = cur.stream
         RETURNING cur.fwd"
    );
    let row = client
        .query_typed_opt(
            &sql,
            &[
                (&stream, Type::TEXT),
                (&epoch, Type::INT8),
                (&token, Type::TEXT),
                (&time, Type::INT8),
                (&holder, Type::TEXT),
            ],
        )
        .await
        .map_err(|e| SinkError::pg("advancing the checkpoint", e))?;
    match row {
        Some(row) => Ok(row.get(0)),
        None => {
            let found = client
                .query_opt(
                    &format!("SELECT epoch FROM {t} WHERE stream = $1"),
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

/// An operator's rewrite of the stream's position (backwards allowed) with an epoch bump, inside
/// the caller's transaction. `resnapshot` clears the position and the snapshot progress and marks
/// the copy pending, so the stream copies the collection again before streaming; any other
/// rewrite marks the copy done (an operator's position replaces an unfinished copy's hand-over).
pub async fn rewrite<C: GenericClient>(
    tx: &C,
    checkpoints_table: &str,
    stream: &str,
    token: Option<&Document>,
    cluster_time: Option<ClusterTime>,
    resnapshot: bool,
) -> Result<(), SinkError> {
    let token = token.map(document_extjson);
    let time = cluster_time.map(ClusterTime::to_sql);
    let state = if resnapshot {
        SnapshotState::Pending
    } else {
        SnapshotState::Done
    };
    let sql = format!(
        "insert into {t} (stream, resume_token, cluster_time, epoch, updated_at, snapshot_state)
         values ($1, $2, $3, 1, now(), $4)
         on conflict (stream) do update set resume_token = excluded.resume_token,
             cluster_time = excluded.cluster_time, epoch = {t}.epoch + 1, updated_at = now(),
             snapshot_state = excluded.snapshot_state, snapshot_last_id = null,
             snapshot_collection = null, snapshot_start_token = null, snapshot_start_time = null",
        t = table(checkpoints_table)?
    );
    tx.execute(&sql, &[&stream, &token, &time, &state.as_str()])
        .await
        .map_err(|e| SinkError::pg("rewriting the checkpoint", e))?;
    Ok(())
}

/// Marks a copy as running from `start`, beginning with `collection` (creating the row if needed,
/// without a position: the stream must not start before the copy hands over). Returns the row's
/// epoch.
pub async fn begin_snapshot<C: GenericClient>(
    client: &C,
    checkpoints_table: &str,
    stream: &str,
    collection: &str,
    start: &Position,
) -> Result<i64, SinkError> {
    let sql = format!(
        "insert into {t} as c (stream, snapshot_state, snapshot_collection, snapshot_last_id, snapshot_start_token, snapshot_start_time, updated_at)
         values ($1, $2, $5, null, $3, $4, now())
         on conflict (stream) do update set snapshot_state = excluded.snapshot_state,
             snapshot_collection = excluded.snapshot_collection, snapshot_last_id = null,
             snapshot_start_token = excluded.snapshot_start_token,
             snapshot_start_time = excluded.snapshot_start_time, updated_at = now()
         returning c.epoch",
        t = table(checkpoints_table)?
    );
    let row = client
        .query_one(
            &sql,
            &[
                &stream,
                &SnapshotState::Running.as_str(),
                &document_extjson(&start.token),
                &start.cluster_time.to_sql(),
                &collection,
            ],
        )
        .await
        .map_err(|e| SinkError::pg("recording the snapshot start", e))?;
    Ok(row.get(0))
}

/// Records that the copy of `collection` has every document up to `last_id` (None: the copy of
/// `collection` starts). False (nothing written) when the epoch is no longer `epoch` or the copy
/// is no longer running: an operator reset the stream.
pub async fn record_snapshot_progress<C: GenericClient>(
    client: &C,
    checkpoints_table: &str,
    stream: &str,
    epoch: i64,
    collection: &str,
    last_id: Option<&Bson>,
) -> Result<bool, SinkError> {
    let progress = Progress {
        stream,
        epoch,
        collection,
        last_id: last_id.map(bson_extjson),
    };
    progress.record(client, checkpoints_table, None).await
}

/// Records that one page of the copy of `collection` committed up to `last_id`, on the condition
/// that the copy's recorded progress is still `after` (the previous page's last `_id` as stored,
/// canonical extended JSON; None: the copy of `collection` has not recorded a page yet). Pages
/// written at once on several connections commit one after the other (each waits for its turn,
/// see `Sink::apply_snapshot_page`); the condition makes sure the recorded progress never passes
/// a page that did not land, whoever writes next. False (nothing written) when the epoch
/// changed, the copy no longer runs, or the previous page did not commit.
pub async fn record_page_progress<C: GenericClient>(
    client: &C,
    checkpoints_table: &str,
    stream: &str,
    epoch: i64,
    collection: &str,
    after: Option<&str>,
    last_id: &Bson,
) -> Result<bool, SinkError> {
    let progress = Progress {
        stream,
        epoch,
        collection,
        last_id: Some(bson_extjson(last_id)),
    };
    progress
        .record(client, checkpoints_table, Some(after))
        .await
}

/// A copy's progress as the checkpoint row stores it.
struct Progress<'a> {
    stream: &'a str,
    epoch: i64,
    collection: &'a str,
    last_id: Option<String>,
}

impl Progress<'_> {
    /// Writes it while the copy runs under `epoch`; with `after`, only if the stored progress of
    /// the same collection is still `after`.
    async fn record<C: GenericClient>(
        &self,
        client: &C,
        checkpoints_table: &str,
        after: Option<Option<&str>>,
    ) -> Result<bool, SinkError> {
        let condition = match after {
            Some(_) => {
                " and coalesce(snapshot_collection, $3) = $3
                  and snapshot_last_id is not distinct from $6"
            }
            None => "",
        };
        let sql = format!(
            "update {} set snapshot_collection = $3, snapshot_last_id = $4, updated_at = now()
             where stream = $1 and epoch = $2 and snapshot_state = $5{condition}",
            table(checkpoints_table)?
        );
        let state = SnapshotState::Running.as_str();
        let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = vec![
            &self.stream,
            &self.epoch,
            &self.collection,
            &self.last_id,
            &state,
        ];
        let previous = after.flatten();
        if after.is_some() {
            params.push(&previous);
        }
        let n = client
            .execute(&sql, &params)
            .await
            .map_err(|e| SinkError::pg("recording snapshot progress", e))?;
        Ok(n == 1)
    }
}

/// The hand-over: the stream's position becomes the copy's start position (forward only, cluster
/// times compared in SQL: a position already past it is kept) and the copy is done. False
/// (nothing written) when an operator reset the stream (epoch changed) while the copy ran.
pub async fn hand_over<C: GenericClient>(
    client: &C,
    checkpoints_table: &str,
    stream: &str,
    epoch: i64,
    start: &Position,
) -> Result<bool, SinkError> {
    let sql = format!(
        "update {t} as c set
             resume_token = case when c.cluster_time is null or c.cluster_time < $3 then $2 else c.resume_token end,
             cluster_time = greatest(coalesce(c.cluster_time, $3), $3),
             snapshot_state = $5, snapshot_last_id = null, snapshot_collection = null,
             updated_at = now()
         where stream = $1 and epoch = $4",
        t = table(checkpoints_table)?
    );
    let n = client
        .execute(
            &sql,
            &[
                &stream,
                &document_extjson(&start.token),
                &start.cluster_time.to_sql(),
                &epoch,
                &SnapshotState::Done.as_str(),
            ],
        )
        .await
        .map_err(|e| SinkError::pg("handing the snapshot over to the stream", e))?;
    Ok(n == 1)
}

/// Records `at` as the start position of every stream in `streams` that has never had one, so a
/// crash before a stream's first batch restarts from the same point instead of a later "now".
pub async fn pin_start<C: GenericClient>(
    client: &C,
    checkpoints_table: &str,
    streams: impl IntoIterator<Item = &str>,
    at: ClusterTime,
) -> Result<(), SinkError> {
    let sql = format!(
        "INSERT INTO {t} AS c (stream, cluster_time, snapshot_state) VALUES ($1, $2, $3)
         ON CONFLICT (stream) DO UPDATE SET cluster_time = EXCLUDED.cluster_time, updated_at = now()
         WHERE c.resume_token IS NULL AND c.cluster_time IS NULL",
        t = table(checkpoints_table)?
    );
    for stream in streams {
        client
            .execute(
                sql.as_str(),
                &[&stream, &at.to_sql(), &SnapshotState::Done.as_str()],
            )
            .await
            .map_err(|e| SinkError::pg("recording the start position", e))?;
    }
    Ok(())
}

/// The oldest cluster time any stream is at (None when no stream has a position yet).
pub async fn oldest_position<C: GenericClient>(
    client: &C,
    checkpoints_table: &str,
) -> Result<Option<ClusterTime>, SinkError> {
    let sql = format!(
        "SELECT min(cluster_time) FROM {} WHERE cluster_time IS NOT NULL",
        table(checkpoints_table)?
    );
    let row = client
        .query_one(&sql, &[])
        .await
        .map_err(|e| SinkError::pg("reading the oldest stream position", e))?;
    Ok(row.get::<_, Option<i64>>(0).map(ClusterTime::from_sql))
}

/// Tries to take the lease of `stream`: a session advisory lock on `client`'s connection, held
/// until that connection closes. Only the holder runs the stream; other replicas see `false`.
pub async fn try_take_lease<C: GenericClient>(
    client: &C,
    checkpoints_table: &str,
    stream: &str,
) -> Result<bool, SinkError> {
    Ok(client
        .query_one(
            "SELECT pg_try_advisory_lock(hashtext($1), hashtext($2))",
            &[&checkpoints_table, &stream],
        )
        .await
        .map_err(|e| SinkError::pg("taking the stream lease", e))?
        .get(0))
}

/// Gives back a lease taken with `try_take_lease` on this session (a copy taken under the lease
/// before the stream itself runs).
pub async fn release_lease<C: GenericClient>(
    client: &C,
    checkpoints_table: &str,
    stream: &str,
) -> Result<(), SinkError> {
    client
        .query_one(
            "SELECT pg_advisory_unlock(hashtext($1), hashtext($2))",
            &[&checkpoints_table, &stream],
        )
        .await
        .map_err(|e| SinkError::pg("giving back the stream lease", e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_states_round_trip_through_their_stored_text() {
        for s in SnapshotState::ALL {
            assert_eq!(SnapshotState::parse(s.as_str()), Some(s));
        }
        assert_eq!(SnapshotState::parse("copying"), None);
    }
}

/// A stream whose members changed since its row was last used, and where it now starts.
#[derive(Debug, Clone, PartialEq)]
pub struct MembershipMove {
    pub stream: String,
    /// The earliest position among the rows that covered its collections before (token
    /// cleared: the stream starts at this cluster time; replays are idempotent).
    pub start: ClusterTime,
    /// Rows no longer used, marked retired (kept).
    pub retired: Vec<String>,
}

/// Detects membership changes of stream groups at start, in one transaction: every stream of
/// `streams` (name, collections) whose stored members differ from the configured ones starts at
/// the earliest position among the live rows that covered any of its collections before (its own
/// row, old single-collection rows, an old group row); rows whose collections all moved to other
/// streams are marked retired. Records the members of every stream.
pub async fn reconcile_members(
    client: &mut tokio_postgres::Client,
    checkpoints_table: &str,
    streams: &[(String, Vec<String>)],
) -> Result<Vec<MembershipMove>, SinkError> {
    let t = table(checkpoints_table)?;
    let err = |what| move |e| SinkError::pg(what, e);
    let tx = client
        .transaction()
        .await
        .map_err(err("starting the stream membership check"))?;
    tx.batch_execute(&format!("LOCK TABLE {t} IN SHARE ROW EXCLUSIVE MODE"))
        .await
        .map_err(err("locking the checkpoints for the membership check"))?;
    let rows = tx
        .query(
            &format!(
                "SELECT stream, cluster_time, members FROM {t}
                 WHERE retired_at IS NULL AND snapshot_state IS DISTINCT FROM 'running'"
            ),
            &[],
        )
        .await
        .map_err(err("reading stream members"))?;
    // stream -> (position, covered collections; a row without members covers its own name).
    let stored: BTreeMap<String, (Option<ClusterTime>, BTreeSet<String>, bool)> = rows
        .iter()
        .map(|r| {
            let stream: String = r.get(0);
            let at = r.get::<_, Option<i64>>(1).map(ClusterTime::from_sql);
            let members: Option<Vec<String>> = r.get(2);
            let recorded = members.is_some();
            let covered = members
                .unwrap_or_else(|| vec![stream.clone()])
                .into_iter()
                .collect();
            (stream, (at, covered, recorded))
        })
        .collect();
    let mut moves = Vec::new();
    let names: BTreeSet<&str> = streams.iter().map(|(n, _)| n.as_str()).collect();
    for (name, collections) in streams {
        let wanted: BTreeSet<String> = collections.iter().cloned().collect();
        let own = stored.get(name);
        let unchanged = own.is_some_and(|(_, covered, _)| *covered == wanted);
        if !unchanged {
            let before: Vec<(&String, ClusterTime)> = stored
                .iter()
                .filter(|(s, (_, covered, _))| {
                    *s == name || covered.iter().any(|c| wanted.contains(c))
                })
                .filter_map(|(s, (at, _, _))| Some((s, (*at)?)))
                .collect();
            if let Some(start) = before.iter().map(|(_, at)| *at).min() {
                tx.execute(
                    &format!(
                        "INSERT INTO {t} AS c (stream, cluster_time, snapshot_state, members)
                         VALUES ($1, $2, 'done', $3)
                         ON CONFLICT (stream) DO UPDATE SET cluster_time = EXCLUDED.cluster_time,
                             resume_token = NULL, members = EXCLUDED.members,
                             epoch = c.epoch + 1, retired_at = NULL, updated_at = now()"
                    ),
                    &[name, &start.to_sql(), collections],
                )
                .await
                .map_err(err("moving a stream to its new members' earliest position"))?;
                // Rows of other streams whose collections are all covered elsewhere now.
                let retired: Vec<String> = before
                    .iter()
                    .map(|(s, _)| (*s).clone())
                    .filter(|s| s != name && !names.contains(s.as_str()))
                    .collect();
                moves.push(MembershipMove {
                    stream: name.clone(),
                    start,
                    retired,
                });
                continue;
            }
        }
        if own.is_some_and(|(_, covered, recorded)| !recorded || *covered != wanted) {
            tx.execute(
                &format!("UPDATE {t} SET members = $2 WHERE stream = $1"),
                &[name, collections],
            )
            .await
            .map_err(err("recording stream members"))?;
        }
    }
    let retired: Vec<String> = moves.iter().flat_map(|m| m.retired.clone()).collect();
    if !retired.is_empty() {
        tx.execute(
            &format!(
                "UPDATE {t} SET retired_at = now() WHERE stream = ANY($1) AND retired_at IS NULL"
            ),
            &[&retired],
        )
        .await
        .map_err(err("retiring rows no stream uses"))?;
    }
    tx.commit()
        .await
        .map_err(err("committing the stream membership check"))?;
    Ok(moves)
}

/// Records which collections the row of `stream` covers (set when the stream starts, read by
/// [`reconcile_members`] at the next start). A stream without a row yet records nothing.
pub async fn record_members<C: GenericClient>(
    client: &C,
    checkpoints_table: &str,
    stream: &str,
    collections: &[String],
) -> Result<(), SinkError> {
    let sql = format!(
        "UPDATE {} SET members = $2 WHERE stream = $1 AND members IS DISTINCT FROM $2",
        table(checkpoints_table)?
    );
    client
        .execute(&sql, &[&stream, &collections])
        .await
        .map_err(|e| SinkError::pg("recording stream members", e))?;
    Ok(())
}

/// Per stream row: the collections it covers (None: not recorded yet) and whether it is retired.
pub async fn load_members<C: GenericClient>(
    client: &C,
    checkpoints_table: &str,
) -> Result<BTreeMap<String, (Option<Vec<String>>, bool)>, SinkError> {
    let sql = format!(
        "SELECT stream, members, retired_at IS NOT NULL FROM {}",
        table(checkpoints_table)?
    );
    let rows = client
        .query(&sql, &[])
        .await
        .map_err(|e| SinkError::pg("reading stream members", e))?;
    Ok(rows
        .iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2))))
        .collect())
}
