//! Continuous verification, the migration plan's cutover gate run inside `run` (`[verify]`):
//! every round compares, per mapped collection, a random sample of documents read by key from
//! MongoDB with the rows of the same keys in Postgres (shadow reads, `sample`), and the
//! collection's document count and exact money sums over a quiet window (`totals`).
//!
//! Nothing still in flight is reported: the comparison waits until the stream's checkpoint has
//! passed the cluster time of the MongoDB reads, and a differing document is read again and
//! compared again (up to `RECHECKS` times) after the stream has passed the new read, so only a
//! difference that persists is a mismatch. Documents the mapping rejects and documents with an
//! open gap are left out (the gaps table already reports them). A round reads both databases and
//! returns a `Round`; storing it (`sink::verify_results`) and the metrics are the caller's.

pub mod sample;
pub mod totals;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use bson::{Bson, Document};

use self::sample::{documents_by_id, sample_documents};
use self::totals::{compare_totals, TotalsOutcome};
use crate::config::VerifyConfig;
use crate::event::ClusterTime;
use crate::mapping::legacy_id_text;
use crate::mapping::rules::CollectionRules;
use crate::ops::tokens::mongo_cluster_time;
use crate::ops::verify::compare::{compared_columns, diff_row, ColumnKind};
use crate::ops::verify::rows::{expect_document, read_postgres, Expectation};
use crate::ops::verify::VerifyError;
use crate::sink::gaps::{GapFilter, GapStatus};
use crate::sink::migrate::ControlNames;
use crate::sink::verify_results::{CheckKind, Mismatch, Round};
use crate::sink::SinkError;

/// How many times a differing document is read and compared again before it counts.
pub const RECHECKS: usize = 2;
/// How often the stream's checkpoint is polled while waiting for it.
const CHECKPOINT_POLL: Duration = Duration::from_millis(100);

/// What a round works with.
pub struct RoundContext<'a> {
    pub mongo: &'a mongodb::Client,
    /// The mapping's MongoDB database.
    pub database: &'a str,
    /// A connection of the round's own.
    pub pg: &'a mut tokio_postgres::Client,
    pub names: &'a ControlNames,
    pub settings: &'a VerifyConfig,
    /// How long a comparison waits for the stream to pass the time of its MongoDB reads.
    pub catch_up: Duration,
    /// The stream that applies the verified collection (its group, or the collection itself).
    pub stream: String,
}

/// Why a round could not finish (a mismatch is a result, not an error).
#[derive(Debug, thiserror::Error)]
pub enum RoundError {
    #[error(transparent)]
    Verify(#[from] VerifyError),
    #[error(transparent)]
    Sink(#[from] SinkError),
}

/// Waits until the checkpoint of `stream` covers `at`; false when `ctx.catch_up` passes first.
pub async fn wait_for_stream(
    ctx: &RoundContext<'_>,
    stream: &str,
    at: ClusterTime,
) -> Result<bool, SinkError> {
    let deadline = Instant::now() + ctx.catch_up;
    loop {
        let covered = crate::sink::checkpoint::load(&*ctx.pg, &ctx.names.checkpoints, stream)
            .await?
            .and_then(|c| c.cluster_time);
        if covered.is_some_and(|c| c >= at) {
            return Ok(true);
        }
        if Instant::now() > deadline {
            return Ok(false);
        }
        tokio::time::sleep(CHECKPOINT_POLL).await;
    }
}

/// Legacy ids of the collection's documents with an open gap.
async fn open_gap_keys(
    ctx: &RoundContext<'_>,
    collection: &str,
) -> Result<BTreeSet<String>, SinkError> {
    let filter = GapFilter {
        collection: Some(collection.to_string()),
        status: Some(GapStatus::Open),
        ..GapFilter::default()
    };
    let gaps = crate::sink::gaps::query::list(&*ctx.pg, &ctx.names.gaps, &filter).await?;
    Ok(gaps
        .iter()
        .filter_map(|g| g.document_key.as_deref())
        .filter_map(|key| crate::sink::extjson::bson_from_extjson("gap document key", key).ok())
        .filter_map(|id| legacy_id_text(&id).ok())
        .collect())
}

/// A sampled document that differs from its row: its `_id` (to read it again) and why.
struct Differs {
    id: Bson,
    legacy_id: String,
    detail: String,
}

/// Compares `docs` with their rows; returns how many were compared and those that differ.
async fn differing(
    ctx: &RoundContext<'_>,
    rules: &CollectionRules,
    columns: &[(String, ColumnKind)],
    docs: Vec<Document>,
    open_gap_keys: &BTreeSet<String>,
) -> Result<(u32, Vec<Differs>), RoundError> {
    let mut expected = Vec::new();
    for doc in docs {
        let id = doc.get("_id").cloned().unwrap_or(Bson::Null);
        if let Expectation::Row { legacy_id, row, .. } = expect_document(rules, columns, doc) {
            if !open_gap_keys.contains(&legacy_id) {
                expected.push((id, legacy_id, row));
            }
        }
    }
    let keys: Vec<String> = expected.iter().map(|(_, k, _)| k.clone()).collect();
    let id_map =
        crate::sink::name::quote_qualified(&ctx.names.id_map).map_err(VerifyError::from)?;
    let actual = read_postgres(ctx.pg, rules, &id_map, Some(&keys)).await?;
    let compared = u32::try_from(expected.len()).unwrap_or(u32::MAX);
    let differs = expected
        .into_iter()
        .filter_map(|(id, legacy_id, row)| {
            let detail = match actual.get(&legacy_id) {
                None => serde_json::json!({ "missing": rules.table }),
                Some(found) => {
                    let columns = diff_row(&row, found);
                    if columns.is_empty() {
                        return None;
                    }
                    serde_json::json!({ "table": rules.table, "columns": columns })
                }
            };
            Some(Differs {
                id,
                legacy_id,
                detail: detail.to_string(),
            })
        })
        .collect();
    Ok((compared, differs))
}

/// The sample comparison of one collection.
struct SampleOutcome {
    sampled: u32,
    compared: u32,
    mismatches: Vec<Mismatch>,
    /// Set when the stream did not pass the reads in time (nothing was concluded).
    behind: bool,
}

async fn compare_sample(
    ctx: &RoundContext<'_>,
    rules: &CollectionRules,
    open_gap_keys: &BTreeSet<String>,
) -> Result<SampleOutcome, RoundError> {
    let mongo_err = |source| {
        RoundError::Verify(VerifyError::Mongo {
            collection: rules.collection.clone(),
            source: Box::new(source),
        })
    };
    let coll = ctx
        .mongo
        .database(ctx.database)
        .collection::<Document>(&rules.collection);
    let columns = compared_columns(rules);
    let docs = sample_documents(&coll, ctx.settings.sample)
        .await
        .map_err(mongo_err)?;
    let mut outcome = SampleOutcome {
        sampled: u32::try_from(docs.len()).unwrap_or(u32::MAX),
        compared: 0,
        mismatches: Vec::new(),
        behind: false,
    };
    let read_at = mongo_cluster_time(ctx.mongo).await.map_err(mongo_err)?;
    if !wait_for_stream(ctx, &ctx.stream.clone(), read_at).await? {
        outcome.behind = true;
        return Ok(outcome);
    }
    let (compared, mut differs) = differing(ctx, rules, &columns, docs, open_gap_keys).await?;
    outcome.compared = compared;
    for _ in 0..RECHECKS {
        if differs.is_empty() {
            break;
        }
        // Read again: a document that changed after the first read has moved on in both
        // databases once the stream has passed this read.
        tracing::debug!(
            collection = %rules.collection,
            differing = differs.len(),
            "comparing documents again that may have changed while being compared"
        );
        let ids: Vec<Bson> = differs.iter().map(|d| d.id.clone()).collect();
        let again = documents_by_id(&coll, &ids).await.map_err(mongo_err)?;
        let read_at = mongo_cluster_time(ctx.mongo).await.map_err(mongo_err)?;
        if !wait_for_stream(ctx, &ctx.stream.clone(), read_at).await? {
            outcome.behind = true;
            return Ok(outcome);
        }
        differs = differing(ctx, rules, &columns, again, open_gap_keys)
            .await?
            .1;
    }
    outcome.mismatches = differs
        .into_iter()
        .map(|d| Mismatch {
            check: CheckKind::Document,
            document_key: Some(d.legacy_id),
            detail: d.detail,
        })
        .collect();
    Ok(outcome)
}

/// How a round ended (the `outcome` label of `mongo2pg_verify_rounds_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Everything compared matched (counts and sums may have been skipped on a busy collection).
    Clean,
    /// At least one difference persisted.
    Mismatch,
    /// The stream did not pass the reads in time, so part of the round concluded nothing.
    Incomplete,
}

impl Outcome {
    pub const ALL: [Outcome; 3] = [Outcome::Clean, Outcome::Mismatch, Outcome::Incomplete];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Clean => "clean",
            Outcome::Mismatch => "mismatch",
            Outcome::Incomplete => "incomplete",
        }
    }
}

/// A finished round of one collection.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    /// What is stored for `mongo2pg verify --last`.
    pub round: Round,
    pub outcome: Outcome,
    /// Counts and sums were skipped: the collection changed during the scan.
    pub totals_busy: bool,
}

/// One collection's round: the sample, then (when configured) counts and sums.
pub async fn verify_collection(
    ctx: &mut RoundContext<'_>,
    rules: &CollectionRules,
) -> Result<Verified, RoundError> {
    let started = Instant::now();
    let open_gaps = open_gap_keys(ctx, &rules.collection).await?;
    let sample = compare_sample(ctx, rules, &open_gaps).await?;
    let mut behind = sample.behind;
    let mut notes = Vec::new();
    if sample.behind {
        notes.push(format!(
            "sample not compared: the stream did not reach the time of the reads within {}s",
            ctx.catch_up.as_secs()
        ));
    }
    let mut mismatches = sample.mismatches;
    let (counts, sums) = (ctx.settings.counts, ctx.settings.sums);
    let mut totals_compared = false;
    let mut totals_busy = false;
    if counts || sums {
        match compare_totals(ctx, rules, &open_gaps, counts, sums).await? {
            TotalsOutcome::Compared(found) => {
                totals_compared = true;
                mismatches.extend(found);
            }
            TotalsOutcome::Busy => {
                totals_busy = true;
                notes.push(
                    "counts and sums not compared: the collection changed during the scan".into(),
                );
            }
            TotalsOutcome::StreamBehind => {
                behind = true;
                notes.push(
                    "counts and sums not compared: the stream did not reach the end of the scan in time"
                        .into(),
                );
            }
        }
    }
    let outcome = if !mismatches.is_empty() {
        Outcome::Mismatch
    } else if behind {
        Outcome::Incomplete
    } else {
        Outcome::Clean
    };
    let round = Round {
        collection: rules.collection.clone(),
        finished_at: chrono::Utc::now(),
        duration: started.elapsed(),
        sampled: sample.sampled,
        compared: sample.compared,
        counts_compared: totals_compared && counts,
        sums_compared: totals_compared && sums,
        note: (!notes.is_empty()).then(|| notes.join("; ")),
        mismatches,
    };
    Ok(Verified {
        round,
        outcome,
        totals_busy,
    })
}
