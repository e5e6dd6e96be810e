//! Running a copy: the initial snapshot (records the start position first, copies page by page
//! with the last `_id` committed in each page's transaction, resumes after it when interrupted,
//! hands over to streaming at the end) and the targeted re-sync of one collection (optionally an
//! `_id` range or a timestamp window) that leaves the stream position alone and closes the gaps
//! it repaired.

use bson::Bson;

use super::progress::SnapshotProgress;
use super::SnapshotError;
use crate::event::Position;
use crate::mapping::CollectionRules;
use crate::sink::extjson::bson_extjson;
use crate::sink::gaps::lifecycle as gaps_store;
use crate::sink::gaps::query::{rows_without_open_gap, SweptTable};
use crate::sink::gaps::ResyncScope;
use crate::sink::{checkpoint, BatchItem, ControlNames, Sink, SnapshotState};
use crate::source::snapshot::{
    capture_start_position, SnapshotFilter, SnapshotReader, DEFAULT_PAGE_SIZE,
};

/// How a copy runs.
#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotOptions {
    /// Documents per page (one Postgres transaction each).
    pub page_size: u32,
    /// Which documents to copy; the default copies everything.
    pub filter: SnapshotFilter,
    /// Stop after this many pages (None: run to the end). A stopped copy resumes later; used to
    /// bound one run's work and by tests.
    pub max_pages: Option<u64>,
    /// Gaps a targeted re-sync repairs beyond the re-copied documents' own (e.g. the
    /// `window_lost` gap whose window the re-sync covers).
    pub resolve_gaps: Vec<i64>,
}

impl Default for SnapshotOptions {
    fn default() -> Self {
        SnapshotOptions {
            page_size: DEFAULT_PAGE_SIZE,
            filter: SnapshotFilter::default(),
            max_pages: None,
            resolve_gaps: Vec::new(),
        }
    }
}

/// What a copy did.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SnapshotReport {
    pub collection: String,
    /// Documents read and applied (or recorded as gaps) by this run.
    pub copied: u64,
    pub pages: u64,
    /// Documents of this run that became gaps.
    pub failed: u64,
    /// The `_id` (canonical extended JSON) this run resumed after, when it continued a copy.
    pub resumed_after: Option<String>,
    /// Packed cluster time of the recorded start position (initial copies).
    pub start_cluster_time: Option<i64>,
    /// True when the copy finished and the stream position was handed over.
    pub handed_over: bool,
    /// True when the copy ran to the end (false when `max_pages` stopped it).
    pub complete: bool,
    pub gaps_resolved: u64,
    /// Rows whose documents no longer exist in MongoDB, removed (by the delete policy) after a
    /// full re-copy.
    pub swept: u64,
}

impl SnapshotReport {
    /// A report for a copy that starts now from `start`.
    fn started(collection: &str, start: &Position, resumed_after: Option<String>) -> Self {
        SnapshotReport {
            collection: collection.to_string(),
            copied: 0,
            pages: 0,
            failed: 0,
            resumed_after,
            start_cluster_time: Some(start.cluster_time.as_i64()),
            handed_over: false,
            complete: false,
            gaps_resolved: 0,
            swept: 0,
        }
    }

    /// Counts one applied page of `documents`, `failed` of which became gaps, in the report and
    /// in `progress`.
    fn page_applied(&mut self, progress: &mut SnapshotProgress, documents: u64, failed: u64) {
        self.failed += failed;
        self.copied += documents;
        self.pages += 1;
        progress.copied = self.copied;
        progress.pages = self.pages;
        progress.page_documents = documents;
    }
}

/// Everything a copy needs.
pub struct SnapshotContext<'a> {
    pub mongo: &'a mongodb::Client,
    pub database: &'a str,
    pub pg: &'a mut tokio_postgres::Client,
    pub sink: &'a mut Sink,
    pub names: &'a ControlNames,
}

fn items_of(rules: &CollectionRules, page: crate::source::snapshot::Page) -> Vec<BatchItem> {
    page.events
        .into_iter()
        .map(|event| {
            let mapped = crate::mapping::map_event(rules, &event);
            BatchItem { event, mapped }
        })
        .collect()
}

/// The initial copy of one collection (also the re-copy after `tokens reset --resnapshot` and
/// after history loss in `when_needed` mode). Resumes an interrupted copy of the same stream.
/// The stream name is the collection name.
pub async fn initial_snapshot(
    mut ctx: SnapshotContext<'_>,
    rules: &CollectionRules,
    options: &SnapshotOptions,
    on_progress: &mut (dyn FnMut(&SnapshotProgress) + Send),
) -> Result<SnapshotReport, SnapshotError> {
    let collection = rules.collection.as_str();
    let stream = collection;
    let mongo_err = |source| SnapshotError::Mongo {
        collection: collection.to_string(),
        source: Box::new(source),
    };
    let checkpoints = ctx.names.checkpoints.as_str();
    let stored = checkpoint::load(&*ctx.pg, checkpoints, stream).await?;
    let resume = stored
        .as_ref()
        .filter(|s| s.snapshot_state == Some(SnapshotState::Running));
    let (start, resume_after, epoch): (Position, Option<Bson>, i64) = match resume
        .and_then(|s| s.snapshot_start())
    {
        Some(start) => {
            let s = resume
                .map(|s| (s.snapshot_last_id(), s.epoch))
                .unwrap_or((None, 0));
            (start, s.0, s.1)
        }
        None => {
            // Taken before the first read: everything written from here on reaches the stream.
            let start = capture_start_position(ctx.mongo, ctx.database, collection)
                .await
                .map_err(mongo_err)?;
            let epoch = checkpoint::begin_snapshot(&*ctx.pg, checkpoints, stream, &start).await?;
            (start, None, epoch)
        }
    };
    let max_gap_id = gaps_store::max_id(&*ctx.pg, &ctx.names.gaps).await?;
    let resumed_after = resume_after.as_ref().map(bson_extjson);
    if let Some(after) = &resumed_after {
        tracing::info!(collection, after = %after, "resuming snapshot");
    }
    let mut reader = SnapshotReader::open(
        ctx.mongo,
        ctx.database,
        collection,
        &options.filter,
        resume_after,
        options.page_size,
        start.cluster_time,
    )
    .await
    .map_err(mongo_err)?;
    let remaining = reader.count_remaining().await.map_err(mongo_err)?;
    let mut progress = SnapshotProgress::starting(remaining);
    let mut report = SnapshotReport::started(collection, &start, resumed_after);
    loop {
        if options.max_pages.is_some_and(|m| report.pages >= m) {
            return Ok(report);
        }
        let Some(page) = reader.next_page().await.map_err(mongo_err)? else {
            break;
        };
        let last_id = page.last_id.clone();
        let items = items_of(rules, page);
        let n = items.len() as u64;
        let outcome = ctx
            .sink
            .apply_batch(ctx.pg, stream, epoch, items, None)
            .await?;
        // Progress is written right after the page committed: it can lag one page behind (the
        // page is then copied again, harmlessly) but never claims a page that did not commit.
        if !checkpoint::record_snapshot_progress(&*ctx.pg, checkpoints, stream, epoch, &last_id)
            .await?
        {
            return Err(SnapshotError::Moved {
                stream: stream.to_string(),
            });
        }
        report.page_applied(&mut progress, n, outcome.gaps.len() as u64);
        on_progress(&progress);
    }
    if options.filter.is_full() {
        report.swept = sweep_vanished(&mut ctx, rules, epoch, &start).await?;
    }
    if !checkpoint::hand_over(&*ctx.pg, checkpoints, stream, epoch, &start).await? {
        return Err(SnapshotError::Moved {
            stream: stream.to_string(),
        });
    }
    report.handed_over = true;
    report.complete = true;
    if options.filter.is_full() {
        let scope = ResyncScope {
            max_id: max_gap_id,
            keys: None,
            extra_ids: &options.resolve_gaps,
        };
        report.gaps_resolved = gaps_store::resolve_by_resync(
            &*ctx.pg,
            &ctx.names.gaps,
            collection,
            &scope,
            "resolved by snapshot",
        )
        .await?;
    }
    progress.finish();
    on_progress(&progress);
    tracing::info!(
        collection,
        copied = report.copied,
        gaps_resolved = report.gaps_resolved,
        "snapshot handed over to the stream"
    );
    Ok(report)
}

/// `mongo2pg snapshot <collection> [--from-id --to-id | --field --since --until]`: re-copies one
/// collection (or the selected documents) while its stream keeps running (a full re-copy also
/// removes rows whose documents are gone), and closes the gaps it
/// repaired: every open gap of the collection for a full re-copy, otherwise the gaps of the
/// re-copied documents plus `options.resolve_gaps`. The stream position is not touched.
pub async fn resync(
    mut ctx: SnapshotContext<'_>,
    rules: &CollectionRules,
    options: &SnapshotOptions,
    on_progress: &mut (dyn FnMut(&SnapshotProgress) + Send),
) -> Result<SnapshotReport, SnapshotError> {
    let collection = rules.collection.as_str();
    let mongo_err = |source| SnapshotError::Mongo {
        collection: collection.to_string(),
        source: Box::new(source),
    };
    let max_gap_id = gaps_store::max_id(&*ctx.pg, &ctx.names.gaps).await?;
    let epoch = checkpoint::load(&*ctx.pg, &ctx.names.checkpoints, collection)
        .await?
        .map_or(0, |s| s.epoch);
    let start = capture_start_position(ctx.mongo, ctx.database, collection)
        .await
        .map_err(mongo_err)?;
    let mut reader = SnapshotReader::open(
        ctx.mongo,
        ctx.database,
        collection,
        &options.filter,
        None,
        options.page_size,
        start.cluster_time,
    )
    .await
    .map_err(mongo_err)?;
    let remaining = reader.count_remaining().await.map_err(mongo_err)?;
    let mut progress = SnapshotProgress::starting(remaining);
    let mut report = SnapshotReport::started(collection, &start, None);
    let mut keys: Vec<String> = Vec::new();
    loop {
        if options.max_pages.is_some_and(|m| report.pages >= m) {
            return Ok(report);
        }
        let Some(page) = reader.next_page().await.map_err(mongo_err)? else {
            break;
        };
        let items = items_of(rules, page);
        let n = items.len() as u64;
        if !options.filter.is_full() {
            keys.extend(
                items
                    .iter()
                    .filter(|i| i.mapped.is_ok())
                    .filter_map(|i| i.event.document_key.as_ref())
                    .map(crate::sink::extjson::bson_extjson),
            );
        }
        let outcome = ctx
            .sink
            .apply_batch(ctx.pg, collection, epoch, items, None)
            .await?;
        report.page_applied(&mut progress, n, outcome.gaps.len() as u64);
        on_progress(&progress);
    }
    report.complete = true;
    if options.filter.is_full() {
        report.swept = sweep_vanished(&mut ctx, rules, epoch, &start).await?;
    }
    let scope = ResyncScope {
        max_id: max_gap_id,
        keys: if options.filter.is_full() {
            None
        } else {
            Some(&keys)
        },
        extra_ids: &options.resolve_gaps,
    };
    report.gaps_resolved = gaps_store::resolve_by_resync(
        &*ctx.pg,
        &ctx.names.gaps,
        collection,
        &scope,
        "resolved by re-sync",
    )
    .await?;
    progress.finish();
    on_progress(&progress);
    tracing::info!(
        collection,
        copied = report.copied,
        gaps_resolved = report.gaps_resolved,
        "re-sync finished"
    );
    Ok(report)
}

/// After a full copy from `start`, every row of the table still carrying a version older than
/// `start` was not re-copied: its document is gone from MongoDB (deleted while history was lost,
/// or before a `--resnapshot`). Each becomes a delete event at `start` through the collection's
/// delete policy. Rows of documents with open gaps are kept (the gap decides about them). Tables
/// without a version column are left alone.
async fn sweep_vanished(
    ctx: &mut SnapshotContext<'_>,
    rules: &CollectionRules,
    epoch: i64,
    start: &Position,
) -> Result<u64, SnapshotError> {
    let Some(version) = &rules.version_column else {
        return Ok(0);
    };
    let table = SweptTable {
        collection: &rules.collection,
        table: &rules.table,
        legacy_column: &rules.legacy_column,
        version_column: version,
    };
    let rows = rows_without_open_gap(&*ctx.pg, &ctx.names.gaps, &table, start.cluster_time).await?;
    let mut swept = 0;
    for chunk in rows.chunks(500) {
        let items: Vec<BatchItem> = chunk
            .iter()
            .map(|legacy| {
                let legacy = legacy.clone();
                let key = match bson::oid::ObjectId::parse_str(&legacy) {
                    Ok(oid) => Bson::ObjectId(oid),
                    Err(_) => Bson::String(legacy),
                };
                let event = crate::event::ChangeEvent {
                    operation: crate::event::Operation::Delete,
                    collection: rules.collection.clone(),
                    document_key: Some(key.clone()),
                    full_document: None,
                    full_document_before_change: None,
                    cluster_time: start.cluster_time,
                    resume_token: None,
                    txn: None,
                    raw: bson::doc! {"operationType": "delete", "documentKey": {"_id": key}, "reason": "absent after re-copy"},
                };
                let mapped = crate::mapping::map_event(rules, &event);
                BatchItem { event, mapped }
            })
            .collect();
        swept += items.len() as u64;
        ctx.sink
            .apply_batch(ctx.pg, &rules.collection, epoch, items, None)
            .await?;
    }
    if swept > 0 {
        tracing::info!(collection = %rules.collection, swept, "removed rows of documents gone from mongodb");
    }
    Ok(swept)
}
