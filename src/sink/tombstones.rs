//! The tombstones table: one row per deleted document (collection, legacy id) with the cluster
//! time of its latest delete and whether the delete was soft. Nothing else in the crate writes SQL
//! against this table; the batch writer embeds the statement parts below in its own statements
//! (one round trip per group of rows).
//!
//! A hard tombstone keeps any state of the document as old as the delete (or older) from being
//! written again; a soft tombstone makes such a state land flagged as deleted. A newer state (the
//! document inserted again) always lands. Tombstones are kept for a retention period after
//! which no older state can still arrive (see `collect_garbage`).

use tokio_postgres::GenericClient;

use crate::event::ClusterTime;
use crate::sink::error::SinkError;

/// `INSERT` of tombstones for the rows of a CTE named `u` with text columns `k` (legacy id),
/// `coll` (collection) and `at` (cluster time, SQL encoding): newer tombstones win.
pub(crate) fn insert_from_u(tombstones: &str, soft: bool) -> String {
    format!(
        "INSERT INTO {tombstones} AS d (collection, legacy_object_id, version, soft)
         SELECT DISTINCT ON (u.coll, u.k) u.coll, u.k, u.at::bigint, {soft} FROM u
         ORDER BY u.coll, u.k, u.at::bigint DESC
         ON CONFLICT (collection, legacy_object_id) DO UPDATE
           SET version = EXCLUDED.version, soft = EXCLUDED.soft, deleted_at = now()
           WHERE d.version <= EXCLUDED.version"
    )
}

/// A condition true when the document of (`coll`, `key`) has a hard tombstone at or after `at`
/// (SQL expressions of the caller's statement).
pub(crate) fn hard_delete_covers(tombstones: &str, coll: &str, key: &str, at: &str) -> String {
    format!(
        "EXISTS (SELECT 1 FROM {tombstones} AS d WHERE d.collection = {coll} \
         AND d.legacy_object_id = {key} AND NOT d.soft AND d.version >= {at}::bigint)"
    )
}

/// A join of the soft tombstones at or after `at` of (`coll`, `key`).
pub(crate) fn soft_join(tombstones: &str, coll: &str, key: &str, at: &str) -> String {
    format!(
        "JOIN {tombstones} AS d ON d.collection = {coll} AND d.legacy_object_id = {key} \
         AND d.soft AND d.version >= {at}::bigint"
    )
}

/// The tombstone of one document: (version, soft), if it was deleted.
pub async fn load<C: GenericClient>(
    client: &C,
    tombstones: &str,
    collection: &str,
    legacy_id: &str,
) -> Result<Option<(ClusterTime, bool)>, SinkError> {
    let sql = format!(
        "SELECT version, soft FROM {tombstones} WHERE collection = $1 AND legacy_object_id = $2"
    );
    let row = client
        .query_opt(&sql, &[&collection, &legacy_id])
        .await
        .map_err(|e| SinkError::pg("reading a tombstone", e))?;
    Ok(row.map(|r| (ClusterTime::from_sql(r.get(0)), r.get(1))))
}

/// Removes tombstones whose delete is older than `before` (cluster times compared in SQL) and
/// written more than `retention` ago, except those of documents that still have an open gap.
/// Returns how many were removed.
pub async fn collect_garbage<C: GenericClient>(
    client: &C,
    tombstones: &str,
    gaps: &str,
    before: ClusterTime,
    retention: std::time::Duration,
) -> Result<u64, SinkError> {
    let sql = format!(
        "DELETE FROM {tombstones} AS d
         WHERE d.version < $1 AND d.deleted_at < now() - make_interval(secs => $2)
           AND NOT EXISTS (SELECT 1 FROM {gaps} AS g WHERE g.status = 'open'
               AND g.collection = d.collection
               AND g.document_key IN ('{{\"$oid\":\"' || d.legacy_object_id || '\"}}',
                                      to_json(d.legacy_object_id)::text))"
    );
    client
        .execute(&sql, &[&before.to_sql(), &retention.as_secs_f64()])
        .await
        .map_err(|e| SinkError::pg("removing old tombstones", e))
}
