//! The gap lifecycle's statements: a gap is `open` until it is `resolved` (its document applied:
//! on a retry, by a re-sync, or an operator says so), `superseded` (a newer event for the same
//! document applied after it) or `ignored` (an operator decided). Only an open gap changes status,
//! so two operators, or an operator and the background retry, never overwrite each other's
//! decision. Deciding *when* a gap closes is the callers' business (the batch apply, the gap
//! retry, the snapshot, the operator); this module holds the one statement for each transition.

use serde::Serialize;
use tokio_postgres::GenericClient;

use crate::sink::error::SinkError;
use crate::sink::name::quote_qualified;

/// Where a gap stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GapStatus {
    /// Not applied yet; retried in the background.
    Open,
    /// The document applied (on retry, by a re-sync, or by an operator).
    Resolved,
    /// A newer event for the same document applied after the gap, so the gap no longer matters.
    Superseded,
    /// An operator decided the gap does not need repairing (the reason is stored).
    Ignored,
}

impl GapStatus {
    pub const ALL: [GapStatus; 4] = [
        GapStatus::Open,
        GapStatus::Resolved,
        GapStatus::Superseded,
        GapStatus::Ignored,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            GapStatus::Open => "open",
            GapStatus::Resolved => "resolved",
            GapStatus::Superseded => "superseded",
            GapStatus::Ignored => "ignored",
        }
    }

    pub fn parse(s: &str) -> Option<GapStatus> {
        GapStatus::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// Closes an open gap with `status` and a note; false when the gap is not open (or unknown).
pub async fn close(
    pg_client: &impl GenericClient,
    gaps_table: &str,
    id: i64,
    status: GapStatus,
    note: &str,
) -> Result<bool, SinkError> {
    let sql = format!(
        "update {} set status = $2, resolved_at = now(), note = $3 where id = $1 and status = 'open'",
        quote_qualified(gaps_table)?
    );
    let n = pg_client
        .execute(&sql, &[&id, &status.as_str(), &note])
        .await
        .map_err(|e| SinkError::pg("closing a gap", e))?;
    Ok(n == 1)
}

/// Marks a gap resolved after its retry applied. The retry's own apply may already have marked
/// it superseded (the sink supersedes older gaps of a document that applied), so both count.
pub async fn mark_resolved_after_retry(
    pg_client: &impl GenericClient,
    gaps_table: &str,
    id: i64,
    note: &str,
) -> Result<bool, SinkError> {
    let sql = format!(
        "update {} set status = 'resolved', resolved_at = now(), note = $2
         where id = $1 and status in ('open', 'superseded')",
        quote_qualified(gaps_table)?
    );
    let n = pg_client
        .execute(&sql, &[&id, &note])
        .await
        .map_err(|e| SinkError::pg("resolving a retried gap", e))?;
    Ok(n == 1)
}

/// Counts one more attempt of an open gap that could not be retried yet, with the reason (the
/// gap keeps its status; its retry backs off like any failed attempt).
pub async fn note_attempt(
    pg_client: &impl GenericClient,
    gaps_table: &str,
    id: i64,
    reason: &str,
) -> Result<bool, SinkError> {
    let sql = format!(
        "update {} set attempts = attempts + 1, last_seen = now(), reason = $2
         where id = $1 and status = 'open'",
        quote_qualified(gaps_table)?
    );
    let n = pg_client
        .execute(&sql, &[&id, &reason])
        .await
        .map_err(|e| SinkError::pg("recording a gap retry attempt", e))?;
    Ok(n == 1)
}

/// Resolves the open `window_lost` gaps of `collection` whose window ends at or before `start`:
/// a full copy from `start` repaired them. Document gaps are never closed this way (each closes
/// when a state of its document at or after its time lands). Returns how many.
pub async fn resolve_windows_before(
    pg_client: &impl GenericClient,
    gaps_table: &str,
    collection: &str,
    start: crate::event::ClusterTime,
    note: &str,
) -> Result<u64, SinkError> {
    let sql = format!(
        "update {} set status = 'resolved', resolved_at = now(), note = $3
         where collection = $1 and status = 'open' and kind = 'window_lost'
           and cluster_time <= $2",
        quote_qualified(gaps_table)?
    );
    pg_client
        .execute(&sql, &[&collection, &start.to_sql(), &note])
        .await
        .map_err(|e| SinkError::pg("resolving repaired lost windows", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip_through_their_names() {
        for s in GapStatus::ALL {
            assert_eq!(GapStatus::parse(s.as_str()), Some(s));
        }
    }
}
