//! The SQL of the gaps commands: filtered listing, one gap with its raw event, status changes
//! (only an open gap changes status, so two operators or an operator and the background retry
//! never overwrite each other's decision).

use tokio_postgres::types::ToSql;
use tokio_postgres::GenericClient;

use super::filter::{GapFilter, GapStatus, GapView};
use super::GapsError;
use crate::sink::name::quote_qualified;

const COLUMNS: &str =
    "id, collection, document_key, kind, reason, status, attempts, cluster_time, \
     window_start, window_end, first_seen, last_seen, resolved_at, note, operation";

fn table(name: &str) -> Result<String, GapsError> {
    Ok(quote_qualified(name)?)
}

fn pg(context: &'static str) -> impl FnOnce(tokio_postgres::Error) -> GapsError {
    move |source| GapsError::Postgres { context, source }
}

fn from_row(r: &tokio_postgres::Row, with_raw: bool) -> GapView {
    GapView {
        id: r.get(0),
        collection: r.get(1),
        document_key: r.get(2),
        kind: r.get(3),
        reason: r.get(4),
        status: r.get(5),
        attempts: r.get(6),
        cluster_time: r.get(7),
        window_start: r.get(8),
        window_end: r.get(9),
        first_seen: r.get(10),
        last_seen: r.get(11),
        resolved_at: r.get(12),
        note: r.get(13),
        operation: r.get(14),
        raw: if with_raw { r.get(15) } else { None },
    }
}

/// Gaps matching `filter`, newest first.
pub async fn list(
    pg_client: &impl GenericClient,
    gaps_table: &str,
    filter: &GapFilter,
) -> Result<Vec<GapView>, GapsError> {
    let mut clauses: Vec<String> = Vec::new();
    let mut params: Vec<Box<dyn ToSql + Sync + Send>> = Vec::new();
    if let Some(c) = &filter.collection {
        params.push(Box::new(c.clone()));
        clauses.push(format!("collection = ${}", params.len()));
    }
    if let Some(k) = filter.kind {
        params.push(Box::new(k.as_str().to_string()));
        clauses.push(format!("kind = ${}", params.len()));
    }
    if let Some(s) = filter.status {
        params.push(Box::new(s.as_str().to_string()));
        clauses.push(format!("status = ${}", params.len()));
    }
    if let Some(d) = filter.older_than {
        params.push(Box::new(d.as_secs_f64()));
        clauses.push(format!(
            "first_seen <= now() - make_interval(secs => ${})",
            params.len()
        ));
    }
    if let Some(d) = filter.newer_than {
        params.push(Box::new(d.as_secs_f64()));
        clauses.push(format!(
            "first_seen >= now() - make_interval(secs => ${})",
            params.len()
        ));
    }
    let mut sql = format!("select {COLUMNS} from {}", table(gaps_table)?);
    if !clauses.is_empty() {
        sql.push_str(" where ");
        sql.push_str(&clauses.join(" and "));
    }
    sql.push_str(" order by id desc");
    if let Some(n) = filter.limit {
        params.push(Box::new(n));
        sql.push_str(&format!(" limit ${}", params.len()));
    }
    let refs: Vec<&(dyn ToSql + Sync)> = params
        .iter()
        .map(|p| p.as_ref() as &(dyn ToSql + Sync))
        .collect();
    let rows = pg_client
        .query(&sql, &refs)
        .await
        .map_err(pg("listing gaps"))?;
    Ok(rows.iter().map(|r| from_row(r, false)).collect())
}

/// One gap with its raw event.
pub async fn show(
    pg_client: &impl GenericClient,
    gaps_table: &str,
    id: i64,
) -> Result<Option<GapView>, GapsError> {
    let sql = format!(
        "select {COLUMNS}, raw_event from {} where id = $1",
        table(gaps_table)?
    );
    let row = pg_client
        .query_opt(&sql, &[&id])
        .await
        .map_err(pg("reading a gap"))?;
    Ok(row.map(|r| from_row(&r, true)))
}

/// Closes an open gap with `status` and a note; false when the gap is not open (or unknown).
pub async fn close(
    pg_client: &impl GenericClient,
    gaps_table: &str,
    id: i64,
    status: GapStatus,
    note: &str,
) -> Result<bool, GapsError> {
    let sql = format!(
        "update {} set status = $2, resolved_at = now(), note = $3 where id = $1 and status = 'open'",
        table(gaps_table)?
    );
    let n = pg_client
        .execute(&sql, &[&id, &status.as_str(), &note])
        .await
        .map_err(pg("closing a gap"))?;
    Ok(n == 1)
}

/// Marks a gap resolved after its retry applied. The retry's own apply may already have marked
/// it superseded (the sink supersedes older gaps of a document that applied), so both count.
pub async fn mark_resolved_after_retry(
    pg_client: &impl GenericClient,
    gaps_table: &str,
    id: i64,
    note: &str,
) -> Result<bool, GapsError> {
    let sql = format!(
        "update {} set status = 'resolved', resolved_at = now(), note = $2
         where id = $1 and status in ('open', 'superseded')",
        table(gaps_table)?
    );
    let n = pg_client
        .execute(&sql, &[&id, &note])
        .await
        .map_err(pg("resolving a retried gap"))?;
    Ok(n == 1)
}

/// The highest gap id so far (0 when there is none): a re-sync only closes gaps recorded before
/// it started, never the ones its own copy records.
pub async fn max_id(pg_client: &impl GenericClient, gaps_table: &str) -> Result<i64, GapsError> {
    let sql = format!(
        "select coalesce(max(id), 0)::bigint from {}",
        table(gaps_table)?
    );
    let row = pg_client
        .query_one(&sql, &[])
        .await
        .map_err(pg("reading the last gap id"))?;
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
) -> Result<u64, GapsError> {
    let t = table(gaps_table)?;
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
    n.map_err(pg("resolving re-synced gaps"))
}
