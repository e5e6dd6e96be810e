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

/// The highest gap id so far (0 when there is none): a re-sync only closes gaps recorded before
/// it started, never the ones its own copy records.
pub async fn max_id(pg_client: &impl GenericClient, gaps_table: &str) -> Result<i64, SinkError> {
    let sql = format!(
        "select coalesce(max(id), 0)::bigint from {}",
        quote_qualified(gaps_table)?
    );
    let row = pg_client
        .query_one(&sql, &[])
        .await
        .map_err(|e| SinkError::pg("reading the last gap id", e))?;
    Ok(row.get(0))
}

/// Which open gaps a finished re-sync of one collection closes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResyncScope<'a> {
    /// Only gaps with `id <= max_id` (recorded before the copy started).
    pub max_id: i64,
    /// Full copy: every open gap of the collection except `stream_invalidated`. Otherwise only
    /// document gaps of these re-copied keys, plus `extra_ids`.
    pub keys: Option<&'a [String]>,
    /// Gaps the operator names explicitly (e.g. the `window_lost` gap a window re-sync repairs).
    pub extra_ids: &'a [i64],
}

/// Closes the open gaps of `collection` a re-sync repaired; returns how many.
pub async fn resolve_by_resync(
    pg_client: &impl GenericClient,
    gaps_table: &str,
    collection: &str,
    scope: &ResyncScope<'_>,
    note: &str,
) -> Result<u64, SinkError> {
    let t = quote_qualified(gaps_table)?;
    let set = "set status = 'resolved', resolved_at = now(), note = $2";
    let open = "collection = $1 and status = 'open' and id <= $3";
    let n = match scope.keys {
        None => {
            let sql = format!(
                "update {t} {set} where {open} and (kind <> 'stream_invalidated' or id = any($4))"
            );
            pg_client
                .execute(&sql, &[&collection, &note, &scope.max_id, &scope.extra_ids])
                .await
        }
        Some(keys) => {
            let sql = format!(
                "update {t} {set} where {open} and (document_key = any($4) or id = any($5))"
            );
            pg_client
                .execute(
                    &sql,
                    &[&collection, &note, &scope.max_id, &keys, &scope.extra_ids],
                )
                .await
        }
    };
    n.map_err(|e| SinkError::pg("resolving re-synced gaps", e))
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
