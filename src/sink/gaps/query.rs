//! Reading the gaps table: one gap (`show`), a filtered list (`list`), the gaps due for a retry,
//! the open-gap counts (the `open_gaps` gauge, the demo's status) and the rows of a re-copied
//! table that no open gap holds back. Writes live in `gaps::mod` and `gaps::lifecycle`.

use serde::Serialize;
use tokio_postgres::types::ToSql;
use tokio_postgres::GenericClient;

use crate::event::ClusterTime;
use crate::mapping::GapKind;
use crate::sink::error::SinkError;
use crate::sink::name::{quote_ident, quote_qualified};

use super::lifecycle::GapStatus;

/// Which gaps a list (or a bulk retry) covers. Empty fields match everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GapFilter {
    pub collection: Option<String>,
    pub kind: Option<GapKind>,
    pub status: Option<GapStatus>,
    /// Only gaps first seen at least this long ago.
    pub older_than: Option<std::time::Duration>,
    /// Only gaps first seen at most this long ago.
    pub newer_than: Option<std::time::Duration>,
    /// At most this many rows (newest first); None = no limit.
    pub limit: Option<i64>,
}

/// One gap as operators see it (`gaps list --json` prints a JSON array of these).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GapView {
    pub id: i64,
    pub collection: String,
    /// Legacy id of the document (None for window gaps).
    pub document_key: Option<String>,
    pub kind: String,
    pub reason: String,
    pub status: String,
    pub attempts: i32,
    /// Cluster time of the event, packed (secs << 32 | inc).
    pub cluster_time: Option<i64>,
    /// Window bounds of `window_lost` gaps.
    pub window_start: Option<chrono::DateTime<chrono::Utc>>,
    pub window_end: Option<chrono::DateTime<chrono::Utc>>,
    pub first_seen: chrono::DateTime<chrono::Utc>,
    /// Last time the gap was recorded again or retried.
    pub last_seen: chrono::DateTime<chrono::Utc>,
    pub resolved_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Who or what closed the gap and why (operator reason, retry, re-sync, superseded).
    pub note: Option<String>,
    /// Operation of the event (insert, update, ..., snapshot).
    pub operation: Option<String>,
    /// The raw event or document as extended JSON text (only filled by `show`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw: Option<String>,
}

const COLUMNS: &str =
    "id, collection, document_key, kind, reason, status, attempts, cluster_time, \
     window_start, window_end, first_seen, last_seen, resolved_at, note, operation";

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
) -> Result<Vec<GapView>, SinkError> {
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
    let mut sql = format!("select {COLUMNS} from {}", quote_qualified(gaps_table)?);
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
        .map_err(|e| SinkError::pg("listing gaps", e))?;
    Ok(rows.iter().map(|r| from_row(r, false)).collect())
}

/// One gap with its raw event.
pub async fn show(
    pg_client: &impl GenericClient,
    gaps_table: &str,
    id: i64,
) -> Result<Option<GapView>, SinkError> {
    let sql = format!(
        "select {COLUMNS}, raw_event from {} where id = $1",
        quote_qualified(gaps_table)?
    );
    let row = pg_client
        .query_opt(&sql, &[&id])
        .await
        .map_err(|e| SinkError::pg("reading a gap", e))?;
    Ok(row.map(|r| from_row(&r, true)))
}

/// Open gaps of any kind but `skipped_kinds`, least recently seen first: (id, attempts, seconds
/// since last seen). At most `limit`.
pub async fn due_for_retry(
    client: &impl GenericClient,
    gaps_table: &str,
    skipped_kinds: &[&str],
    limit: i64,
) -> Result<Vec<(i64, i32, f64)>, SinkError> {
    let sql = format!(
        "select id, attempts, extract(epoch from now() - last_seen)::float8 from {}
         where status = 'open' and kind <> all($1) order by last_seen limit $2",
        quote_qualified(gaps_table)?
    );
    let rows = client
        .query(&sql, &[&skipped_kinds, &limit])
        .await
        .map_err(|e| SinkError::pg("selecting gaps to retry", e))?;
    Ok(rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect())
}

/// Open gaps counted by (collection, kind).
pub async fn open_counts(
    client: &impl GenericClient,
    gaps_table: &str,
) -> Result<Vec<(String, String, i64)>, SinkError> {
    let sql = format!(
        "SELECT collection, kind, count(*) FROM {} WHERE status = 'open' GROUP BY collection, kind",
        quote_qualified(gaps_table)?
    );
    let rows = client
        .query(&sql, &[])
        .await
        .map_err(|e| SinkError::pg("counting open gaps", e))?;
    Ok(rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect())
}

/// The mapped table a re-copy swept, for `rows_not_copied`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SweptTable<'a> {
    pub collection: &'a str,
    /// `table` or `schema.table`.
    pub table: &'a str,
    pub legacy_column: &'a str,
    pub version_column: &'a str,
}

/// Legacy ids of the rows of `t` whose version is older than `start` (cluster times compared in
/// SQL) or unset, except rows of documents with an open gap at or after `start` (recorded by the
/// copy from `start` itself): after a full copy from `start`, these documents were not re-copied.
pub async fn rows_not_copied(
    client: &impl GenericClient,
    gaps_table: &str,
    t: &SweptTable<'_>,
    start: ClusterTime,
) -> Result<Vec<String>, SinkError> {
    let sql = format!(
        "select t.{legacy} from {table} t
         where (t.{version} is null or t.{version} < $1)
           and not exists (select 1 from {gaps} g where g.collection = $2 and g.status = 'open'
                           and g.cluster_time >= $1
                           and g.document_key in ('{{\"$oid\":\"' || t.{legacy} || '\"}}', to_json(t.{legacy})::text))",
        legacy = quote_ident(t.legacy_column),
        version = quote_ident(t.version_column),
        table = quote_qualified(t.table)?,
        gaps = quote_qualified(gaps_table)?,
    );
    let rows = client
        .query(&sql, &[&start.to_sql(), &t.collection])
        .await
        .map_err(|e| SinkError::pg("finding rows of vanished documents", e))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}
