//! Per-collection totals — the number of documents and the exact sum of every money column —
//! compared only over a quiet window, so a busy collection never reports a difference that is
//! merely in flight: a change stream opened at `t0` before MongoDB is scanned, then (once the
//! replicator's checkpoint has passed the end of the scan) Postgres is read in one snapshot
//! together with the checkpoint's cluster time `C`; the totals are compared only when the change
//! stream shows no change of the collection in `[t0, C]`. Documents the mapping rejects or that
//! have an open gap are left out on both sides. Reads only.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use bson::Document;
use futures::TryStreamExt;

use super::{wait_for_stream, RoundContext, RoundError};
use crate::event::ClusterTime;
use crate::mapping::rules::{CollectionRules, DeleteRule};
use crate::ops::tokens::mongo_cluster_time;
use crate::ops::verify::compare::{
    canon_expected, canonical_decimal, compared_columns, money_columns, DecimalSum,
};
use crate::ops::verify::rows::{expect_document, Expectation};
use crate::ops::verify::VerifyError;
use crate::sink::name::{quote_ident as quote, quote_qualified};
use crate::sink::verify_results::{CheckKind, Mismatch};
use crate::source::stream::FullDocumentMode;
use crate::source::{ChangeSource, SourceItem, StartAt, StreamOptions};

/// How long the quiet-window check may take to read the change stream up to `C`.
const QUIET_CHECK_TIMEOUT: Duration = Duration::from_secs(30);

/// What the totals comparison came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TotalsOutcome {
    /// Compared; the differences (none when clean).
    Compared(Vec<Mismatch>),
    /// The collection changed during the window: not comparable this round.
    Busy,
    /// The replicator did not reach the end of the scan in time.
    StreamBehind,
}

/// One side's totals: documents (rows) and money sums by column (canonical decimal text).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct Totals {
    count: u64,
    sums: BTreeMap<String, String>,
}

/// Compares counts (`counts`) and money sums (`sums`) of one collection; `open_gap_keys` are
/// the legacy ids with an open gap.
pub async fn compare_totals(
    ctx: &mut RoundContext<'_>,
    rules: &CollectionRules,
    open_gap_keys: &BTreeSet<String>,
    counts: bool,
    sums: bool,
) -> Result<TotalsOutcome, RoundError> {
    let mongo_err = |source| {
        RoundError::Verify(VerifyError::Mongo {
            collection: rules.collection.clone(),
            source: Box::new(source),
        })
    };
    let t0 = mongo_cluster_time(ctx.mongo).await.map_err(mongo_err)?;
    let options = StreamOptions {
        full_document: FullDocumentMode::WhenAvailable,
        max_await: Duration::from_millis(200),
        ..StreamOptions::default()
    };
    let mut changes = ChangeSource::open(
        ctx.mongo,
        ctx.database,
        &rules.collection,
        &StartAt::Time(t0),
        &options,
    )
    .await
    .map_err(mongo_err)?;

    let money = if sums {
        money_columns(rules)
    } else {
        Vec::new()
    };
    let (mongo, excluded) = scan_mongo(ctx, rules, open_gap_keys, &money)
        .await
        .map_err(mongo_err)?;
    let t1 = mongo_cluster_time(ctx.mongo).await.map_err(mongo_err)?;
    if !wait_for_stream(ctx, &rules.collection, t1).await? {
        return Ok(TotalsOutcome::StreamBehind);
    }
    let (postgres, covered) = read_postgres(ctx, rules, &excluded, &money).await?;
    let Some(covered) = covered else {
        return Ok(TotalsOutcome::StreamBehind);
    };
    if !quiet_between(&mut changes, t0, covered)
        .await
        .map_err(mongo_err)?
    {
        return Ok(TotalsOutcome::Busy);
    }
    let mut found = Vec::new();
    if counts && mongo.count != postgres.count {
        found.push(Mismatch {
            check: CheckKind::Count,
            document_key: None,
            detail: serde_json::json!({
                "table": rules.table,
                "mongo": mongo.count,
                "postgres": postgres.count,
            })
            .to_string(),
        });
    }
    for column in &money {
        let (m, p) = (mongo.sums.get(column), postgres.sums.get(column));
        if m != p {
            found.push(Mismatch {
                check: CheckKind::Sum,
                document_key: None,
                detail: serde_json::json!({
                    "column": format!("{}.{column}", rules.table),
                    "mongo": m,
                    "postgres": p,
                })
                .to_string(),
            });
        }
    }
    Ok(TotalsOutcome::Compared(found))
}

/// MongoDB's totals over the documents Postgres should hold, and the legacy ids left out.
async fn scan_mongo(
    ctx: &RoundContext<'_>,
    rules: &CollectionRules,
    open_gap_keys: &BTreeSet<String>,
    money: &[String],
) -> Result<(Totals, Vec<String>), mongodb::error::Error> {
    let columns = compared_columns(rules);
    let mut cursor = ctx
        .mongo
        .database(ctx.database)
        .collection::<Document>(&rules.collection)
        .find(Document::new())
        .await?;
    let mut totals = Totals::default();
    let mut sums: BTreeMap<&str, DecimalSum> = BTreeMap::new();
    let mut excluded = Vec::new();
    while let Some(doc) = cursor.try_next().await? {
        match expect_document(rules, &columns, doc) {
            Expectation::Row { legacy_id, .. } if open_gap_keys.contains(&legacy_id) => {
                excluded.push(legacy_id);
            }
            Expectation::Unmappable { legacy_id } => excluded.push(legacy_id),
            Expectation::Row { row, .. } => {
                totals.count += 1;
                for column in money {
                    let sum = sums.entry(column.as_str()).or_default();
                    if let Some(Some(value)) = row.get(column) {
                        // A value the exact sum cannot take shows up as a sum mismatch.
                        if sum.add(value).is_err() {
                            totals
                                .sums
                                .insert(column.clone(), format!("not summable: {value}"));
                        }
                    }
                }
            }
        }
    }
    for column in money {
        totals.sums.entry(column.clone()).or_insert_with(|| {
            sums.get(column.as_str())
                .copied()
                .unwrap_or_default()
                .to_text()
        });
    }
    Ok((totals, excluded))
}

/// Postgres' totals, read in one snapshot with the cluster time the stream's checkpoint covers.
async fn read_postgres(
    ctx: &mut RoundContext<'_>,
    rules: &CollectionRules,
    excluded: &[String],
    money: &[String],
) -> Result<(Totals, Option<ClusterTime>), RoundError> {
    let table = quote_qualified(&rules.table).map_err(VerifyError::from)?;
    let pg_err = |source| {
        RoundError::Verify(VerifyError::Postgres {
            table: rules.table.clone(),
            source,
        })
    };
    let excluded: Vec<String> = excluded.to_vec();
    let mut sql = String::from("select count(*)");
    for column in money {
        sql.push_str(&format!(", sum(t.{})::text", quote(column)));
    }
    sql.push_str(&format!(
        " from {table} t where not (t.{}::text = any($1))",
        quote(&rules.legacy_column)
    ));
    let soft = match &rules.delete {
        DeleteRule::Soft { column, value } => {
            sql.push_str(&format!(
                " and t.{}::text is distinct from $2",
                quote(column)
            ));
            Some(canon_expected(value))
        }
        _ => None,
    };
    let tx = ctx
        .pg
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(pg_err)?;
    let checkpoint =
        crate::sink::checkpoint::load(&tx, &ctx.names.checkpoints, &ctx.stream).await?;
    let row = match &soft {
        Some(marker) => tx.query_one(&sql, &[&excluded, marker]).await,
        None => tx.query_one(&sql, &[&excluded]).await,
    }
    .map_err(pg_err)?;
    tx.commit().await.map_err(pg_err)?;
    let mut totals = Totals {
        count: u64::try_from(row.get::<_, i64>(0)).unwrap_or(0),
        sums: BTreeMap::new(),
    };
    for (i, column) in money.iter().enumerate() {
        let text: Option<String> = row.get(i + 1);
        let canonical = text.as_deref().map_or_else(
            || "0".to_string(),
            |t| canonical_decimal(t).unwrap_or_else(|| t.to_string()),
        );
        totals.sums.insert(column.clone(), canonical);
    }
    Ok((totals, checkpoint.and_then(|c| c.cluster_time)))
}

/// True when the change stream shows no change after `after` and at or before `until` (a change
/// at `after` itself was already visible to the scan).
async fn quiet_between(
    changes: &mut ChangeSource,
    after: ClusterTime,
    until: ClusterTime,
) -> Result<bool, mongodb::error::Error> {
    let deadline = Instant::now() + QUIET_CHECK_TIMEOUT;
    loop {
        let changed_at = match changes.next().await? {
            SourceItem::Event(event) => Some(event.cluster_time),
            SourceItem::Malformed { position, .. } => position.map(|p| p.cluster_time),
            SourceItem::Heartbeat(position) if position.cluster_time >= until => return Ok(true),
            SourceItem::Heartbeat(_) if Instant::now() > deadline => return Ok(false),
            SourceItem::Heartbeat(_) => None,
        };
        match changed_at {
            Some(t) if t <= after => {}
            Some(t) => return Ok(t > until),
            None => {}
        }
    }
}
