//! The continuous-verification tables (`<schema>.verify_rounds`, `<schema>.verify_mismatches`):
//! `record_round` replaces a collection's last round and its mismatches in one transaction;
//! `last_rounds` reads them back for `mongo2pg verify --last`. Only this module has SQL on these
//! tables; it decides nothing about what a mismatch is.

use std::time::Duration;

use serde::Serialize;
use tokio_postgres::Client;

use crate::sink::error::SinkError;
use crate::sink::migrate::ControlNames;
use crate::sink::name::quote_qualified;

/// What was compared: a sampled document, the row count, or a money column's sum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckKind {
    Document,
    Count,
    Sum,
}

impl CheckKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CheckKind::Document => "document",
            CheckKind::Count => "count",
            CheckKind::Sum => "sum",
        }
    }

    fn parse(text: &str) -> CheckKind {
        match text {
            "count" => CheckKind::Count,
            "sum" => CheckKind::Sum,
            _ => CheckKind::Document,
        }
    }
}

/// One difference a round found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mismatch {
    pub check: CheckKind,
    /// Legacy id of the document (document checks only).
    pub document_key: Option<String>,
    /// What differs, e.g. `{"missing": "users"}` or the differing columns with both values.
    pub detail: String,
}

/// One collection's round.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Round {
    pub collection: String,
    pub finished_at: chrono::DateTime<chrono::Utc>,
    #[serde(serialize_with = "millis")]
    pub duration: Duration,
    /// Documents read from MongoDB for the sample.
    pub sampled: u32,
    /// Sampled documents compared with Postgres (the rest were rejected by the mapping, have an
    /// open gap, or changed while being compared).
    pub compared: u32,
    pub counts_compared: bool,
    pub sums_compared: bool,
    /// Why something was not compared (stream behind, collection changing during the scan).
    pub note: Option<String>,
    pub mismatches: Vec<Mismatch>,
}

fn millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Replaces the collection's last round and mismatches with `round`.
pub async fn record_round(
    client: &mut Client,
    names: &ControlNames,
    round: &Round,
) -> Result<(), SinkError> {
    let rounds = quote_qualified(&names.verify_rounds())?;
    let mismatches = quote_qualified(&names.verify_mismatches())?;
    let err = |e| SinkError::pg("recording a verification round", e);
    let tx = client.transaction().await.map_err(err)?;
    let duration_ms = i64::try_from(round.duration.as_millis()).unwrap_or(i64::MAX);
    let count = |n: usize| i32::try_from(n).unwrap_or(i32::MAX);
    tx.execute(
        &format!(
            "INSERT INTO {rounds} (collection, finished_at, duration_ms, sampled, compared,
                 mismatches, counts_compared, sums_compared, note)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             ON CONFLICT (collection) DO UPDATE SET finished_at = EXCLUDED.finished_at,
                 duration_ms = EXCLUDED.duration_ms, sampled = EXCLUDED.sampled,
                 compared = EXCLUDED.compared, mismatches = EXCLUDED.mismatches,
                 counts_compared = EXCLUDED.counts_compared,
                 sums_compared = EXCLUDED.sums_compared, note = EXCLUDED.note"
        ),
        &[
            &round.collection,
            &round.finished_at,
            &duration_ms,
            &count(round.sampled as usize),
            &count(round.compared as usize),
            &count(round.mismatches.len()),
            &round.counts_compared,
            &round.sums_compared,
            &round.note,
        ],
    )
    .await
    .map_err(err)?;
    tx.execute(
        &format!("DELETE FROM {mismatches} WHERE collection = $1"),
        &[&round.collection],
    )
    .await
    .map_err(err)?;
    if !round.mismatches.is_empty() {
        let kinds: Vec<&str> = round.mismatches.iter().map(|m| m.check.as_str()).collect();
        let keys: Vec<Option<&str>> = round
            .mismatches
            .iter()
            .map(|m| m.document_key.as_deref())
            .collect();
        let details: Vec<&str> = round.mismatches.iter().map(|m| m.detail.as_str()).collect();
        tx.execute(
            &format!(
                "INSERT INTO {mismatches} (collection, found_at, check_kind, document_key, detail)
                 SELECT $1, $2, k, d, x FROM unnest($3::text[], $4::text[], $5::text[]) AS u(k, d, x)"
            ),
            &[
                &round.collection,
                &round.finished_at,
                &kinds,
                &keys,
                &details,
            ],
        )
        .await
        .map_err(err)?;
    }
    tx.commit().await.map_err(err)
}

/// The last round of every collection (or of `collections` when not empty), by name.
pub async fn last_rounds(
    client: &Client,
    names: &ControlNames,
    collections: &[String],
) -> Result<Vec<Round>, SinkError> {
    let rounds_table = quote_qualified(&names.verify_rounds())?;
    let mismatches_table = quote_qualified(&names.verify_mismatches())?;
    let err = |e| SinkError::pg("reading the last verification rounds", e);
    let rows = client
        .query(
            &format!(
                "SELECT collection, finished_at, duration_ms, sampled, compared, counts_compared,
                        sums_compared, note
                 FROM {rounds_table}
                 WHERE cardinality($1::text[]) = 0 OR collection = ANY($1)
                 ORDER BY collection"
            ),
            &[&collections],
        )
        .await
        .map_err(err)?;
    let found = client
        .query(
            &format!(
                "SELECT collection, check_kind, document_key, detail FROM {mismatches_table}
                 WHERE cardinality($1::text[]) = 0 OR collection = ANY($1)
                 ORDER BY collection, check_kind, document_key"
            ),
            &[&collections],
        )
        .await
        .map_err(err)?;
    Ok(rows
        .iter()
        .map(|r| {
            let collection: String = r.get(0);
            let mismatches = found
                .iter()
                .filter(|m| m.get::<_, String>(0) == collection)
                .map(|m| Mismatch {
                    check: CheckKind::parse(m.get(1)),
                    document_key: m.get(2),
                    detail: m.get(3),
                })
                .collect();
            Round {
                finished_at: r.get(1),
                duration: Duration::from_millis(u64::try_from(r.get::<_, i64>(2)).unwrap_or(0)),
                sampled: u32::try_from(r.get::<_, i32>(3)).unwrap_or(0),
                compared: u32::try_from(r.get::<_, i32>(4)).unwrap_or(0),
                counts_compared: r.get(5),
                sums_compared: r.get(6),
                note: r.get(7),
                mismatches,
                collection,
            }
        })
        .collect())
}
