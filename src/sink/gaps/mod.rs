//! The gaps table: everything the replicator could not apply, with the raw event as canonical
//! extended JSON text. Nothing else in the crate writes SQL against this table.
//!
//! This file records gaps: re-recording the same gap (same collection, document key, cluster
//! time, kind) bumps `attempts` and `last_seen` and stores the latest reason instead of adding a
//! row (the raw event first recorded is kept: it is the evidence, and the state a retry may need); applying a newer event
//! for a document supersedes its older open gaps (cluster times compared in SQL); a skipped
//! window is a `window_lost` gap. Usable inside the batch transaction or on its own.
//! `lifecycle` holds the status transitions, `query` the reads.

pub mod lifecycle;
pub mod query;

pub use lifecycle::GapStatus;
pub use query::{GapFilter, GapView};

use std::collections::HashMap;

use tokio_postgres::types::Type;
use tokio_postgres::GenericClient;

use crate::event::{ChangeEvent, ClusterTime};
use crate::mapping::GapKind;
use crate::sink::error::SinkError;
use crate::sink::extjson::{bson_extjson, document_extjson};
use crate::sink::name::quote_qualified;

/// One gap row to record.
#[derive(Debug, Clone, PartialEq)]
pub struct GapRecord {
    pub collection: String,
    /// Canonical extended JSON of the document's `_id`; None for stream-level gaps.
    pub document_key: Option<String>,
    pub kind: GapKind,
    /// Precise reason (the mapping's message or the exact Postgres error).
    pub reason: String,
    /// Canonical extended JSON of the raw event.
    pub raw_event: Option<String>,
    pub operation: Option<String>,
    pub cluster_time: Option<ClusterTime>,
    /// Extended JSON of the event's resume token.
    pub resume_token: Option<String>,
    /// Lost window (start, end) for `window_lost` gaps.
    pub window: Option<(chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>)>,
}

impl GapRecord {
    /// A gap for one event, keeping its raw form.
    pub fn for_event(event: &ChangeEvent, kind: GapKind, reason: impl Into<String>) -> Self {
        GapRecord {
            collection: event.collection.clone(),
            document_key: event.document_key.as_ref().map(bson_extjson),
            kind,
            reason: reason.into(),
            raw_event: Some(document_extjson(event.raw_form())),
            operation: Some(event.operation.as_str().to_string()),
            cluster_time: Some(event.cluster_time),
            resume_token: event.resume_token.as_ref().map(document_extjson),
            window: None,
        }
    }

    /// A stream-level gap (stream invalidated, window lost): no document.
    pub fn stream_level(collection: &str, kind: GapKind, reason: impl Into<String>) -> Self {
        GapRecord {
            collection: collection.to_string(),
            document_key: None,
            kind,
            reason: reason.into(),
            raw_event: None,
            operation: None,
            cluster_time: None,
            resume_token: None,
            window: None,
        }
    }
}

/// Inserts the gaps (one statement), bumping `attempts` for ones already recorded.
pub async fn record_gaps<C: GenericClient>(
    client: &C,
    gaps_table: &str,
    gaps: &[GapRecord],
) -> Result<u64, SinkError> {
    if gaps.is_empty() {
        return Ok(0);
    }
    // One row per dedup key (the last wins): an upsert cannot touch a row twice.
    let mut index: HashMap<(&str, &str, i64, GapKind), usize> = HashMap::new();
    let mut unique: Vec<&GapRecord> = Vec::new();
    for g in gaps {
        let key = (
            g.collection.as_str(),
            g.document_key.as_deref().unwrap_or(""),
            g.cluster_time.map_or(-1, |t| t.to_sql()),
            g.kind,
        );
        match index.get(&key) {
            Some(&i) => unique[i] = g,
            None => {
                index.insert(key, unique.len());
                unique.push(g);
            }
        }
    }
    let collection: Vec<&str> = unique.iter().map(|g| g.collection.as_str()).collect();
    let document_key: Vec<Option<&str>> =
        unique.iter().map(|g| g.document_key.as_deref()).collect();
    let kind: Vec<&str> = unique.iter().map(|g| g.kind.as_str()).collect();
    // Postgres text cannot hold NUL: a reason quoting bad input keeps it visible but storable.
    let reasons: Vec<String> = unique
        .iter()
        .map(|g| g.reason.replace('\0', "\\u0000"))
        .collect();
    let reason: Vec<&str> = reasons.iter().map(String::as_str).collect();
    let raw: Vec<Option<&str>> = unique.iter().map(|g| g.raw_event.as_deref()).collect();
    let operation: Vec<Option<&str>> = unique.iter().map(|g| g.operation.as_deref()).collect();
    let cluster_time: Vec<Option<i64>> = unique
        .iter()
        .map(|g| g.cluster_time.map(|t| t.to_sql()))
        .collect();
    let token: Vec<Option<&str>> = unique.iter().map(|g| g.resume_token.as_deref()).collect();
    let window_start: Vec<Option<chrono::DateTime<chrono::Utc>>> =
        unique.iter().map(|g| g.window.map(|w| w.0)).collect();
    let window_end: Vec<Option<chrono::DateTime<chrono::Utc>>> =
        unique.iter().map(|g| g.window.map(|w| w.1)).collect();
    let gaps_table = quote_qualified(gaps_table)?;
    let sql = format!(
        "INSERT INTO {gaps_table} AS g (collection, document_key, kind, reason, raw_event, operation,
                 cluster_time, resume_token, window_start, window_end)
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                              $7::bigint[], $8::text[], $9::timestamptz[], $10::timestamptz[])
         ON CONFLICT (collection, (COALESCE(document_key, '')), (COALESCE(cluster_time, -1)), kind)
         DO UPDATE SET attempts = g.attempts + 1, last_seen = now(), reason = EXCLUDED.reason,
                       raw_event = COALESCE(g.raw_event, EXCLUDED.raw_event),
                       window_start = COALESCE(EXCLUDED.window_start, g.window_start),
                       window_end = COALESCE(EXCLUDED.window_end, g.window_end)"
    );
    client
        .execute(
            &sql,
            &[
                &collection,
                &document_key,
                &kind,
                &reason,
                &raw,
                &operation,
                &cluster_time,
                &token,
                &window_start,
                &window_end,
            ],
        )
        .await
        .map_err(|e| SinkError::pg("recording gaps", e))
}

/// Marks open gaps of documents older than an applied event as `superseded` (one statement).
/// `applied` holds (collection, document key extended JSON, cluster time of the applied event).
/// `immutable_change` gaps are never superseded: a change of an append-only row stays reported
/// until an operator closes it, whatever is written later.
pub async fn supersede<C: GenericClient>(
    client: &C,
    gaps_table: &str,
    applied: &[(String, String, ClusterTime)],
) -> Result<u64, SinkError> {
    if applied.is_empty() {
        return Ok(0);
    }
    let mut newest: HashMap<(&str, &str), ClusterTime> = HashMap::new();
    for (c, k, t) in applied {
        let e = newest.entry((c.as_str(), k.as_str())).or_insert(*t);
        *e = (*e).max(*t);
    }
    let collection: Vec<&str> = newest.keys().map(|(c, _)| *c).collect();
    let key: Vec<&str> = newest.keys().map(|(_, k)| *k).collect();
    let time: Vec<i64> = newest.values().map(|t| t.to_sql()).collect();
    let gaps_table = quote_qualified(gaps_table)?;
    let sql = format!(
        "UPDATE {gaps_table} AS g SET status = 'superseded', resolved_at = now()
         FROM unnest($1::text[], $2::text[], $3::bigint[]) AS u(collection, document_key, cluster_time)
         WHERE g.status = 'open' AND g.collection = u.collection
           AND g.document_key = u.document_key AND g.cluster_time < u.cluster_time
           AND g.kind <> 'immutable_change'"
    );
    client
        .execute_typed(
            &sql,
            &[
                (&collection, Type::TEXT_ARRAY),
                (&key, Type::TEXT_ARRAY),
                (&time, Type::INT8_ARRAY),
            ],
        )
        .await
        .map_err(|e| SinkError::pg("superseding gaps", e))
}

/// Records a skipped window of `collection` as an open `window_lost` gap (bounds as wall-clock
/// instants, the window's end cluster time as the gap's cluster time); returns its id. Recording
/// the same window again only touches `last_seen`.
pub async fn record_window_gap<C: GenericClient>(
    client: &C,
    gaps_table: &str,
    collection: &str,
    window: (ClusterTime, ClusterTime),
    reason: &str,
) -> Result<i64, SinkError> {
    let sql = format!(
        "insert into {} (collection, kind, reason, cluster_time, window_start, window_end)
         values ($1, 'window_lost', $2, $3, $4, $5)
         on conflict (collection, (coalesce(document_key, '')), (coalesce(cluster_time, -1)), kind)
         do update set last_seen = now()
         returning id",
        quote_qualified(gaps_table)?
    );
    let row = client
        .query_one(
            &sql,
            &[
                &collection,
                &reason,
                &window.1.to_sql(),
                &window.0.to_datetime(),
                &window.1.to_datetime(),
            ],
        )
        .await
        .map_err(|e| SinkError::pg("recording the skipped window", e))?;
    Ok(row.get(0))
}
