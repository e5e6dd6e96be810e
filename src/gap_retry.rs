//! The gap-retry engine: writes the state a gap stands for, at the gap's own cluster time (a
//! version never later than the state's), through the sink. Which state:
//! - append-only collections: the inserted document from the gap's raw event (the row the happy
//!   path would have written; later changes stay `immutable_change` gaps);
//! - otherwise the document as MongoDB has it now;
//! - a document gone from MongoDB: for hard-delete collections the gap is superseded once the
//!   delete's tombstone is there (until then it waits for the stream); for soft-delete and
//!   ignored-delete collections the last known full state from the gap's raw event lands (then
//!   the delete policy applies); a failed delete is retried as that delete.
//!
//! The gap is `resolved` when its state applies, `superseded` when a newer state of the document
//! is already in Postgres (row version or tombstone past the gap's time), and stays `open` with
//! one more attempt otherwise. Gaps that only a re-sync or an operator can repair (`window_lost`,
//! `stream_invalidated`, `immutable_change`, `malformed_event`, `id_collision`) are left alone.
//!
//! `retry_open_gaps` is what the replicator runs periodically (`housekeeping`): it picks open gaps
//! whose backoff (exponential in the number of attempts, from the `backon` crate) has elapsed.
//! The operator's `gaps retry` (`ops::gaps`) runs `retry_gap` on the gaps it names. Every
//! statement on the gaps table goes through `sink::gaps`; this module decides, the sink stores.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use bson::{doc, Bson, Document};

use crate::config::CompiledMapping;
use crate::event::ClusterTime;
use crate::mapping::rules::DeleteRule;
use crate::mapping::{legacy_id_text, map_event, CollectionRules, GapKind};
use crate::sink::extjson::document_from_extjson;
use crate::sink::gaps::lifecycle;
use crate::sink::gaps::{query, GapStatus, GapView};
use crate::sink::name::quote_schema_table;
use crate::sink::name::{quote_ident, quote_qualified};
use crate::sink::tombstones;
use crate::sink::{BatchItem, ControlNames, Sink, SinkError};
use crate::source::normalize::normalize_event;
use crate::source::snapshot::snapshot_event;

/// Why a retry could not run (a gap that still fails is an outcome, not an error).
#[derive(Debug, thiserror::Error)]
pub enum GapRetryError {
    #[error("mongodb error while re-reading {collection}/{key}: {source}")]
    Mongo {
        collection: String,
        key: String,
        #[source]
        source: Box<mongodb::error::Error>,
    },
    #[error(transparent)]
    Sink(#[from] SinkError),
}

/// Tuning of the background retry.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryOptions {
    /// At most this many gaps per round.
    pub max_per_round: i64,
    /// Delay before the second attempt; doubles per attempt up to `max_delay`.
    pub min_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryOptions {
    fn default() -> Self {
        RetryOptions {
            max_per_round: 200,
            min_delay: Duration::from_secs(5),
            max_delay: Duration::from_secs(600),
        }
    }
}

impl RetryOptions {
    /// How long after its last attempt a gap with `attempts` attempts is retried again.
    pub fn delay_after(&self, attempts: i32) -> Duration {
        let n = usize::try_from(attempts.max(1) - 1).unwrap_or(0);
        ExponentialBuilder::default()
            .with_min_delay(self.min_delay)
            .with_max_delay(self.max_delay)
            .without_max_times()
            .build()
            .nth(n)
            .unwrap_or(self.max_delay)
    }
}

/// What happened to one gap.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RetryOutcome {
    Resolved,
    Superseded,
    /// Still failing; the latest reason.
    StillOpen(String),
    /// Not retryable automatically (window gaps, immutable changes, ...) or no longer open.
    Skipped(String),
}

/// Totals of one retry round.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct RetryReport {
    pub attempted: u64,
    pub resolved: u64,
    pub superseded: u64,
    pub still_open: u64,
    pub skipped: u64,
}

impl RetryReport {
    pub fn count(&mut self, o: &RetryOutcome) {
        self.attempted += 1;
        match o {
            RetryOutcome::Resolved => self.resolved += 1,
            RetryOutcome::Superseded => self.superseded += 1,
            RetryOutcome::StillOpen(_) => self.still_open += 1,
            RetryOutcome::Skipped(_) => self.skipped += 1,
        }
    }
}

/// Everything a retry needs.
pub struct RetryContext<'a> {
    pub mongo: &'a mongodb::Client,
    pub pg: &'a mut tokio_postgres::Client,
    pub sink: &'a mut Sink,
    pub names: &'a ControlNames,
    pub mapping: &'a CompiledMapping,
}

/// True for the kinds a re-read of the document may repair.
pub fn is_retryable(kind: &str) -> bool {
    GapKind::parse(kind).is_some_and(|k| !LEFT_TO_OPERATORS.contains(&k))
}

/// Gap kinds only a re-sync or an operator repairs; never retried automatically.
pub const LEFT_TO_OPERATORS: [GapKind; 5] = [
    GapKind::WindowLost,
    GapKind::StreamInvalidated,
    GapKind::ImmutableChange,
    GapKind::MalformedEvent,
    GapKind::IdCollision,
];

/// The document `_id` of a gap (stored as canonical extended JSON).
pub fn gap_key(document_key: &str) -> Option<Bson> {
    let json: serde_json::Value = serde_json::from_str(document_key).ok()?;
    Bson::try_from(json).ok()
}

/// The version stored on the document's row, if the table has a version column and the row exists.
async fn row_version(
    pg: &tokio_postgres::Client,
    rules: &CollectionRules,
    legacy: &str,
) -> Result<Option<ClusterTime>, GapRetryError> {
    let Some(version) = &rules.version_column else {
        return Ok(None);
    };
    let sql = format!(
        "select {} from {} where {} = $1",
        quote_ident(version),
        quote_qualified(&rules.table).map_err(SinkError::from)?,
        quote_ident(&rules.legacy_column)
    );
    let row = pg
        .query_opt(&sql, &[&legacy])
        .await
        .map_err(|e| SinkError::pg("reading the row version", e))?;
    Ok(row
        .and_then(|r| r.get::<_, Option<i64>>(0))
        .map(ClusterTime::from_sql))
}

async fn read_document(
    mongo: &mongodb::Client,
    database: &str,
    collection: &str,
    key: &Bson,
) -> Result<Option<Document>, GapRetryError> {
    let err = |source| GapRetryError::Mongo {
        collection: collection.to_string(),
        key: key.to_string(),
        source: Box::new(source),
    };
    mongo
        .database(database)
        .collection::<Document>(collection)
        .find_one(doc! {"_id": key.clone()})
        .await
        .map_err(err)
}

fn delete_event(collection: &str, key: Bson, at: ClusterTime) -> crate::event::ChangeEvent {
    crate::event::ChangeEvent {
        operation: crate::event::Operation::Delete,
        collection: collection.to_string(),
        document_key: Some(key.clone()),
        full_document: None,
        full_document_before_change: None,
        cluster_time: at,
        resume_token: None,
        txn: None,
        raw: doc! {"operationType": "delete", "documentKey": {"_id": key}},
    }
}

/// The full document a gap's raw event carries: an insert's, replace's or looked-up update's
/// `fullDocument`, a delete's pre-image, or the document itself for a snapshot read.
fn raw_full_document(gap: &GapView) -> Option<Document> {
    let raw = document_from_extjson("gap raw event", gap.raw.as_deref()?).ok()?;
    if !raw.contains_key("operationType") {
        // A copy's gap keeps the document itself.
        return Some(raw);
    }
    for field in ["fullDocument", "fullDocumentBeforeChange"] {
        if let Ok(d) = raw.get_document(field) {
            return Some(d.clone());
        }
    }
    None
}

/// The state to write for a gap, or why there is none yet.
enum State {
    Write(Box<crate::event::ChangeEvent>),
    Superseded(&'static str),
    Wait(String),
}

async fn state_of(
    ctx: &RetryContext<'_>,
    gap: &GapView,
    rules: &CollectionRules,
    key: Bson,
    legacy: Option<&str>,
    at: ClusterTime,
) -> Result<State, GapRetryError> {
    let inserted = matches!(gap.operation.as_deref(), Some("insert" | "snapshot"));
    if rules.append_only && inserted {
        if let Some(document) = raw_full_document(gap) {
            return Ok(State::Write(Box::new(snapshot_event(
                &gap.collection,
                document,
                at,
            ))));
        }
    }
    let database = ctx.mapping.config.source.database.clone();
    if let Some(document) = read_document(ctx.mongo, &database, &gap.collection, &key).await? {
        return Ok(State::Write(Box::new(snapshot_event(
            &gap.collection,
            document,
            at,
        ))));
    }
    if gap.operation.as_deref() == Some("delete") {
        // A failed delete is retried as that delete: the recorded event itself when it can be
        // read back (with its pre-image, the last state lands first), a plain delete otherwise.
        let recorded = gap
            .raw
            .as_deref()
            .and_then(|raw| document_from_extjson("gap raw event", raw).ok())
            .and_then(|raw| normalize_event(raw, &gap.collection).ok());
        let event = match recorded {
            Some(mut event) => {
                event.cluster_time = at;
                event
            }
            None => delete_event(&gap.collection, key, at),
        };
        return Ok(State::Write(Box::new(event)));
    }
    match &rules.delete {
        DeleteRule::Delete => {
            let tombstone = match legacy {
                Some(legacy) => {
                    tombstones::load(
                        &*ctx.pg,
                        &quote_schema_table(&ctx.names.schema, "tombstones"),
                        &gap.collection,
                        legacy,
                    )
                    .await?
                }
                None => None,
            };
            Ok(match tombstone {
                Some((version, _)) if version >= at => {
                    State::Superseded("the document was deleted after the gap")
                }
                _ => State::Wait(
                    "the document no longer exists in MongoDB; waiting for its delete to reach the stream".into(),
                ),
            })
        }
        DeleteRule::Soft { .. } | DeleteRule::Ignore => Ok(match raw_full_document(gap) {
            Some(document) => State::Write(Box::new(snapshot_event(&gap.collection, document, at))),
            None => State::Wait(
                "the document was deleted in MongoDB and the gap holds no full state of it \
                 (enable pre-images, or resolve the gap by hand)"
                    .into(),
            ),
        }),
    }
}

/// Retries one gap now (no backoff check).
///
/// The state is applied as an event at the gap's own cluster time, so a failure lands on the same
/// gap row (the sink's de-duplication bumps its `attempts` and stores the new reason) instead of
/// adding one, and an older state can never pass the version guard of a row, or the tombstone of
/// a document, a newer event already wrote.
pub async fn retry_gap(
    ctx: &mut RetryContext<'_>,
    gap: &GapView,
) -> Result<RetryOutcome, GapRetryError> {
    if gap.status != GapStatus::Open.as_str() {
        return Ok(RetryOutcome::Skipped(format!("gap is {}", gap.status)));
    }
    if !is_retryable(&gap.kind) {
        return Ok(RetryOutcome::Skipped(format!(
            "{} gaps are repaired by a re-sync or an operator",
            gap.kind
        )));
    }
    let key = gap.document_key.as_deref().and_then(gap_key);
    let (Some(key), Some(at), Some(rules)) =
        (key, gap.cluster_time, ctx.mapping.rules(&gap.collection))
    else {
        return Ok(RetryOutcome::Skipped(
            "no document key or cluster time, or collection not mapped".into(),
        ));
    };
    let at = ClusterTime::from_sql(at);
    let gaps_table = ctx.names.gaps.clone();
    let legacy = legacy_id_text(&key).ok();
    if let Some(legacy) = &legacy {
        if row_version(ctx.pg, rules, legacy)
            .await?
            .is_some_and(|v| v > at)
        {
            lifecycle::close(
                &*ctx.pg,
                &gaps_table,
                gap.id,
                GapStatus::Superseded,
                "a newer state of the document applied",
            )
            .await?;
            return Ok(RetryOutcome::Superseded);
        }
    }
    let event = match state_of(ctx, gap, rules, key, legacy.as_deref(), at).await? {
        State::Write(event) => *event,
        State::Superseded(note) => {
            lifecycle::close(&*ctx.pg, &gaps_table, gap.id, GapStatus::Superseded, note).await?;
            return Ok(RetryOutcome::Superseded);
        }
        State::Wait(reason) => {
            lifecycle::note_attempt(&*ctx.pg, &gaps_table, gap.id, &reason).await?;
            return Ok(RetryOutcome::StillOpen(reason));
        }
    };
    let mapped = map_event(rules, &event);
    let stream = stream_of(ctx.mapping, &gap.collection);
    let epoch = ctx
        .sink
        .load_checkpoint(&*ctx.pg, &stream)
        .await?
        .map_or(0, |c| c.epoch);
    let outcome = ctx
        .sink
        .apply_batch(
            ctx.pg,
            &stream,
            epoch,
            vec![BatchItem { event, mapped }],
            None,
        )
        .await?;
    match outcome.gaps.first() {
        None => {
            lifecycle::mark_resolved_after_retry(
                &*ctx.pg,
                &gaps_table,
                gap.id,
                &format!("applied on retry after {} attempts", gap.attempts),
            )
            .await?;
            Ok(RetryOutcome::Resolved)
        }
        Some(new_gap) if new_gap.kind.as_str() == gap.kind => {
            Ok(RetryOutcome::StillOpen(new_gap.reason.clone()))
        }
        Some(new_gap) => {
            // It fails for another reason now (or landed with parts still waiting): that is a
            // new gap at the same cluster time, which replaces this one.
            let note = format!(
                "retry ended as {}: {}",
                new_gap.kind.as_str(),
                new_gap.reason
            );
            lifecycle::close(&*ctx.pg, &gaps_table, gap.id, GapStatus::Superseded, &note).await?;
            Ok(RetryOutcome::StillOpen(new_gap.reason.clone()))
        }
    }
}

/// The stream whose checkpoint row serialises writes to `collection`: its group, or its own.
pub fn stream_of(mapping: &CompiledMapping, collection: &str) -> String {
    mapping.config.stream_of(collection)
}

/// [`stream_of`] where no mapping is at hand.
pub fn stream_of_collection(collection: &str) -> String {
    collection.to_string()
}

/// One background round: retries the open, retryable gaps whose backoff has elapsed, oldest
/// attempt first. The replicator runs it periodically (`housekeeping`).
pub async fn retry_open_gaps(
    ctx: &mut RetryContext<'_>,
    options: &RetryOptions,
) -> Result<RetryReport, GapRetryError> {
    let skipped: Vec<&str> = LEFT_TO_OPERATORS.iter().map(|k| k.as_str()).collect();
    let due =
        query::due_for_retry(&*ctx.pg, &ctx.names.gaps, &skipped, options.max_per_round).await?;
    let mut report = RetryReport::default();
    for (id, attempts, idle) in due {
        if Duration::from_secs_f64(idle.max(0.0)) < options.delay_after(attempts) {
            continue;
        }
        let Some(gap) = query::show(&*ctx.pg, &ctx.names.gaps, id).await? else {
            continue;
        };
        let outcome = retry_gap(ctx, &gap).await?;
        tracing::debug!(gap = id, ?outcome, "gap retried");
        report.count(&outcome);
    }
    if report.resolved + report.superseded > 0 {
        tracing::info!(
            resolved = report.resolved,
            superseded = report.superseded,
            still_open = report.still_open,
            "gaps retried"
        );
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::oid::ObjectId;

    #[test]
    fn backoff_doubles_from_the_minimum_up_to_the_maximum() {
        let o = RetryOptions {
            max_per_round: 1,
            min_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(8),
        };
        assert_eq!(o.delay_after(1), Duration::from_secs(1));
        assert_eq!(o.delay_after(2), Duration::from_secs(2));
        assert_eq!(o.delay_after(3), Duration::from_secs(4));
        assert_eq!(o.delay_after(10), Duration::from_secs(8));
    }

    #[test]
    fn only_document_gaps_are_retried_automatically() {
        assert!(is_retryable("fk_missing"));
        assert!(is_retryable("wrong_type"));
        assert!(!is_retryable("window_lost"));
        assert!(!is_retryable("immutable_change"));
        assert!(!is_retryable("no_such_kind"));
    }

    #[test]
    fn gap_keys_parse_from_canonical_extended_json() {
        let hex = "650000000000000000000001";
        let oid = ObjectId::parse_str(hex).expect("hex");
        assert_eq!(
            gap_key(&crate::sink::extjson::bson_extjson(&Bson::ObjectId(oid))),
            Some(Bson::ObjectId(oid))
        );
        assert_eq!(gap_key("\"tpl-1\""), Some(Bson::String("tpl-1".into())));
        assert_eq!(gap_key("not json"), None);
    }
}
