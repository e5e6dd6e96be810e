//! Running a copy: the copy of a stream (records the stream's start position first, then copies
//! its collections in the given order, parents first, one cursor per collection, page by page,
//! each page committed together with its progress; resumes after the last committed `_id` when
//! interrupted; hands over to streaming at the end), and the targeted re-sync of one collection
//! (optionally an `_id` range or a timestamp window) that leaves the stream position alone.
//!
//! Every copied row carries the copy's start position as its version (never a later time), so a
//! stream event after the start always applies over it, and a document deleted after the start
//! stays deleted (its tombstone refuses the copy's older state). A copy closes no gap by itself:
//! documents that land supersede their older gaps through the sink; only gaps named in
//! `SnapshotOptions::resolve_gaps` (the lost window a re-copy repairs) are resolved here.

use bson::Bson;

use super::progress::SnapshotProgress;
use super::SnapshotError;
use crate::event::Position;
use crate::mapping::CollectionRules;
use crate::sink::extjson::bson_extjson;
use crate::sink::gaps::lifecycle as gaps_store;
use crate::sink::gaps::query::{rows_not_copied, SweptTable};
use crate::sink::gaps::GapStatus;
use crate::sink::{checkpoint, BatchItem, ControlNames, Sink, SnapshotState};
use crate::source::snapshot::{
    capture_position, capture_start_position, SnapshotFilter, SnapshotReader, DEFAULT_PAGE_SIZE,
};

/// How a copy runs.
#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotOptions {
    /// Documents per page (one Postgres transaction each).
    pub page_size: u32,
    /// Byte budget of a page (raw BSON of its documents): a page ends at `page_size` documents
    /// or once it holds this many bytes, whichever comes first.
    pub page_bytes: usize,
    /// Which documents to copy; the default copies everything.
    pub filter: SnapshotFilter,
    /// Stop after this many pages (None: run to the end). A stopped copy resumes later; used to
    /// bound one run's work and by tests.
    pub max_pages: Option<u64>,
    /// Gaps a targeted re-sync repairs beyond the re-copied documents' own (e.g. the
    /// `window_lost` gap whose window the re-sync covers).
    pub resolve_gaps: Vec<i64>,
    /// The stream whose checkpoint row serialises a re-sync (the collection's group); None: the
    /// collection's own stream.
    pub stream: Option<String>,
    /// Pages of an initial copy written at once, each on its own Postgres connection (the
    /// context's, plus `writers - 1` opened for the copy when the context has `pg_url`); their
    /// commits are chained in page order.
    pub writers: usize,
}

impl Default for SnapshotOptions {
    fn default() -> Self {
        SnapshotOptions {
            page_size: DEFAULT_PAGE_SIZE,
            page_bytes: crate::config::DEFAULT_SNAPSHOT_PAGE_BYTES,
            filter: SnapshotFilter::default(),
            max_pages: None,
            resolve_gaps: Vec::new(),
            stream: None,
            writers: crate::config::DEFAULT_SNAPSHOT_WRITERS,
        }
    }
}

impl SnapshotOptions {
    /// Options of a full copy from the mapping's `[snapshot]` section.
    pub fn from_config(config: &crate::config::SnapshotConfig) -> Self {
        SnapshotOptions {
            page_size: u32::try_from(config.page_size).unwrap_or(u32::MAX),
            page_bytes: config.page_bytes,
            writers: config.writers,
            ..SnapshotOptions::default()
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
    pub start_cluster_time: Option<u64>,
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
            start_cluster_time: Some(start.cluster_time.packed()),
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
    /// Where the copy may open more connections for its extra page writers
    /// (`SnapshotOptions::writers`); None: every page is written on `pg`.
    pub pg_url: Option<&'a crate::sink::connect::PgUrl>,
}

fn items_of(rules: &CollectionRules, events: Vec<crate::event::ChangeEvent>) -> Vec<BatchItem> {
    events
        .into_iter()
        .map(|event| {
            let mapped = crate::mapping::map_event(rules, &event);
            BatchItem { event, mapped }
        })
        .collect()
}

/// One page read and mapped ahead of the writer.
struct MappedPage {
    items: Vec<BatchItem>,
    last_id: Bson,
}

/// Pages read ahead while the current one commits: at most this many wait in the channel, so a
/// copy holds at most `READ_AHEAD + 2` pages (the one committing, the waiting ones, the one
/// being read), each bounded by `page_size` documents and `page_bytes` bytes.
const READ_AHEAD: usize = 1;

/// A reader task that reads and maps the next pages while the writer commits the current one.
/// Dropping it stops the task.
struct PageReader {
    pages: tokio::sync::mpsc::Receiver<Result<MappedPage, mongodb::error::Error>>,
    task: tokio::task::JoinHandle<()>,
}

impl PageReader {
    fn spawn(mut reader: SnapshotReader, rules: &CollectionRules) -> Self {
        let rules = rules.clone();
        let (tx, pages) = tokio::sync::mpsc::channel(READ_AHEAD);
        let task = tokio::spawn(async move {
            loop {
                let page = match reader.next_page().await {
                    Ok(Some(page)) => page,
                    Ok(None) => return,
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                };
                let last_id = page.last_id;
                let items = items_of(&rules, page.events);
                if tx.send(Ok(MappedPage { items, last_id })).await.is_err() {
                    return;
                }
            }
        });
        PageReader { pages, task }
    }

    /// The next page, or None when the copy is complete.
    async fn next(&mut self) -> Result<Option<MappedPage>, mongodb::error::Error> {
        self.pages.recv().await.transpose()
    }
}

impl Drop for PageReader {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The initial copy of one collection's own stream (also the re-copy after `tokens reset
/// --resnapshot` and after history loss in `when_needed` mode). Resumes an interrupted copy.
pub async fn initial_snapshot(
    ctx: SnapshotContext<'_>,
    rules: &CollectionRules,
    options: &SnapshotOptions,
    on_progress: &mut (dyn FnMut(&SnapshotProgress) + Send),
) -> Result<SnapshotReport, SnapshotError> {
    let copy = StreamCopy {
        stream: &rules.collection,
        collections: vec![rules],
        whole_database: false,
    };
    let mut cb = |_: &str, p: &SnapshotProgress| on_progress(p);
    let mut reports = copy_stream(ctx, &copy, options, &mut cb).await?;
    reports
        .pop()
        .ok_or_else(|| SnapshotError::UnknownCollection(rules.collection.clone()))
}

/// What one stream copies before it streams.
#[derive(Debug, Clone)]
pub struct StreamCopy<'a> {
    /// The stream whose checkpoint row records the copy (a collection, or a stream group).
    pub stream: &'a str,
    /// Its collections, in copy order (referenced collections first).
    pub collections: Vec<&'a CollectionRules>,
    /// True when the stream reads the whole database (a stream group): its start position is
    /// taken from a database-level change stream.
    pub whole_database: bool,
}

/// Copies every collection of `copy.stream` in order, from one start position recorded before
/// the first read, then hands the stream over to streaming from that position. Resumes an
/// interrupted copy of the same stream at the collection and `_id` it reached. Returns one report
/// per collection copied by this run (a collection finished by an earlier run is not reported).
pub async fn copy_stream(
    mut ctx: SnapshotContext<'_>,
    copy: &StreamCopy<'_>,
    options: &SnapshotOptions,
    on_progress: &mut (dyn FnMut(&str, &SnapshotProgress) + Send),
) -> Result<Vec<SnapshotReport>, SnapshotError> {
    let stream = copy.stream;
    let Some(first) = copy.collections.first() else {
        return Ok(Vec::new());
    };
    let checkpoints = ctx.names.checkpoints.as_str();
    let stored = checkpoint::load(&*ctx.pg, checkpoints, stream).await?;
    let running = stored
        .as_ref()
        .filter(|s| s.snapshot_state == Some(SnapshotState::Running));
    let resumed = running.and_then(|s| Some((s.snapshot_start()?, s)));
    let (start, epoch, mut at_collection, mut resume_after) = match resumed {
        Some((start, s)) => {
            // The collection the copy reached (a row written before copies named it: the
            // stream's only collection). A collection the mapping no longer has restarts the
            // copy from the first one, with the same start position: nothing is lost.
            let reached = s
                .snapshot_collection
                .as_deref()
                .unwrap_or(&first.collection);
            let (index, after) = match copy
                .collections
                .iter()
                .position(|r| r.collection == reached)
            {
                Some(index) => (index, s.snapshot_last_id()),
                None => (0, None),
            };
            (start, s.epoch, index, after)
        }
        None => {
            // Taken before the first read: everything written from here on reaches the stream.
            let scope = (!copy.whole_database).then_some(first.collection.as_str());
            let start = capture_position(ctx.mongo, ctx.database, scope)
                .await
                .map_err(|source| SnapshotError::Mongo {
                    collection: first.collection.clone(),
                    source: Box::new(source),
                })?;
            let epoch = checkpoint::begin_snapshot(
                &*ctx.pg,
                checkpoints,
                stream,
                &first.collection,
                &start,
            )
            .await?;
            (start, epoch, 0, None)
        }
    };
    let mut reports = Vec::new();
    while let Some(rules) = copy.collections.get(at_collection) {
        let mut cb = |p: &SnapshotProgress| on_progress(&rules.collection, p);
        let report = copy_collection(
            &mut ctx,
            stream,
            epoch,
            rules,
            &start,
            resume_after.take(),
            options,
            &mut cb,
        )
        .await?;
        let complete = report.complete;
        reports.push(report);
        if !complete {
            return Ok(reports);
        }
        at_collection += 1;
        if let Some(next) = copy.collections.get(at_collection) {
            if !checkpoint::record_snapshot_progress(
                &*ctx.pg,
                checkpoints,
                stream,
                epoch,
                &next.collection,
                None,
            )
            .await?
            {
                return Err(SnapshotError::Moved {
                    stream: stream.to_string(),
                });
            }
        }
    }
    if !checkpoint::hand_over(&*ctx.pg, checkpoints, stream, epoch, &start).await? {
        return Err(SnapshotError::Moved {
            stream: stream.to_string(),
        });
    }
    let mut resolved = resolve_named_gaps(&ctx, options, "resolved by snapshot").await?;
    if options.filter.is_full() {
        for rules in &copy.collections {
            resolved += gaps_store::resolve_windows_before(
                &*ctx.pg,
                &ctx.names.gaps,
                &rules.collection,
                start.cluster_time,
                "repaired by a full copy",
            )
            .await?;
        }
    }
    if let Some(last) = reports.last_mut() {
        last.handed_over = true;
        last.gaps_resolved += resolved;
    }
    tracing::info!(stream, "snapshot handed over to the stream");
    Ok(reports)
}

/// Copies one collection of a stream's copy, from `resume_after` on.
#[allow(clippy::too_many_arguments)]
async fn copy_collection(
    ctx: &mut SnapshotContext<'_>,
    stream: &str,
    epoch: i64,
    rules: &CollectionRules,
    start: &Position,
    resume_after: Option<Bson>,
    options: &SnapshotOptions,
    on_progress: &mut (dyn FnMut(&SnapshotProgress) + Send),
) -> Result<SnapshotReport, SnapshotError> {
    let collection = rules.collection.as_str();
    let mongo_err = |source| SnapshotError::Mongo {
        collection: collection.to_string(),
        source: Box::new(source),
    };
    let resumed_after = resume_after.as_ref().map(bson_extjson);
    if let Some(after) = &resumed_after {
        tracing::info!(collection, after = %after, "resuming snapshot");
    }
    let mut report = SnapshotReport::started(collection, start, resumed_after);
    let (mongo, database) = (ctx.mongo, ctx.database);
    let open = |after: Option<Bson>| async move {
        SnapshotReader::open(
            mongo,
            database,
            collection,
            &options.filter,
            after,
            options.page_size,
            start.cluster_time,
        )
        .await
        .map(|r| r.with_page_bytes(options.page_bytes))
        .map_err(mongo_err)
    };
    let mut reader = open(resume_after).await?;
    let remaining = reader.count_remaining().await.map_err(mongo_err)?;
    let mut progress = SnapshotProgress::starting(remaining);
    let mut writers = options.writers;
    loop {
        let pages = PageReader::spawn(reader, rules);
        // The progress the first page follows, as stored (None: this collection has none yet).
        let after = checkpoint::load(&*ctx.pg, &ctx.names.checkpoints, stream)
            .await?
            .filter(|c| c.snapshot_collection.as_deref().unwrap_or(collection) == collection)
            .and_then(|c| c.snapshot_last_id);
        let mut extra = open_writers(ctx, writers).await?;
        let mut page_writers: Vec<PageWriter<'_>> = vec![PageWriter {
            pg: &mut *ctx.pg,
            sink: &mut *ctx.sink,
        }];
        page_writers.extend(
            extra
                .iter_mut()
                .map(|(pg, _, sink)| PageWriter { pg, sink }),
        );
        let copy = PageCopy {
            stream,
            epoch,
            collection,
            max_pages: options.max_pages,
        };
        let ran = copy
            .run(
                pages,
                page_writers,
                after,
                &mut report,
                &mut progress,
                on_progress,
            )
            .await;
        drop(extra);
        match ran {
            Ok(true) => break,
            Ok(false) => return Ok(report),
            // Pages waiting on each other: a page waits for its turn while the page before it
            // waits for one of its rows (two documents on two pages sharing a unique value).
            // What committed stays; the copy goes on one page at a time.
            Err(SnapshotError::Sink(crate::sink::SinkError::PageTurnTimeout { .. }))
                if writers > 1 =>
            {
                tracing::warn!(
                    collection,
                    "pages of the copy waited on each other; going on one page at a time"
                );
                writers = 1;
                let committed = checkpoint::load(&*ctx.pg, &ctx.names.checkpoints, stream)
                    .await?
                    .and_then(|c| c.snapshot_last_id());
                reader = open(committed).await?;
            }
            Err(e) => return Err(e),
        }
    }
    if options.filter.is_full() {
        report.swept = sweep_vanished(ctx, stream, rules, epoch, start).await?;
    }
    report.complete = true;
    progress.finish();
    on_progress(&progress);
    tracing::info!(collection, copied = report.copied, "collection copied");
    Ok(report)
}

/// One connection writing pages of a copy, with its own sink (id cache).
struct PageWriter<'w> {
    pg: &'w mut tokio_postgres::Client,
    sink: &'w mut Sink,
}

/// The extra connections of a copy's page writers: `writers - 1` of them when the context can
/// open connections, none otherwise.
async fn open_writers(
    ctx: &SnapshotContext<'_>,
    writers: usize,
) -> Result<
    Vec<(
        tokio_postgres::Client,
        crate::sink::connect::AbortOnDrop,
        Sink,
    )>,
    SnapshotError,
> {
    let Some(url) = ctx.pg_url else {
        return Ok(Vec::new());
    };
    let mut extra = Vec::new();
    for _ in 1..writers.max(1) {
        let (pg, connection) = crate::sink::connect::connect_pg(url)
            .await
            .map_err(|e| crate::sink::SinkError::pg("connecting a snapshot page writer", e))?;
        extra.push((pg, connection, ctx.sink.fork()));
    }
    Ok(extra)
}

/// One page on its way to a writer.
struct Page {
    items: Vec<BatchItem>,
    /// The progress it follows, as stored (see `Sink::apply_snapshot_page`).
    after: Option<String>,
    last_id: Bson,
    /// Fires once the page before it committed (None: no page before it is in flight).
    turn: Option<crate::sink::PageTurn>,
}

/// What the page writers of one collection's copy share.
struct PageCopy<'c> {
    stream: &'c str,
    epoch: i64,
    collection: &'c str,
    max_pages: Option<u64>,
}

impl PageCopy<'_> {
    /// Writes the pages of `pages` with every writer at once, each page in its own transaction
    /// that commits only after the page before it (`Sink::apply_snapshot_page`), and reports them
    /// in page order. True when the reader ran out of pages, false when `max_pages` stopped it.
    /// The first error stops the copy; pages in flight then roll back (their connection's
    /// transaction is dropped, or their progress condition fails).
    async fn run(
        &self,
        mut pages: PageReader,
        mut idle: Vec<PageWriter<'_>>,
        mut after: Option<String>,
        report: &mut SnapshotReport,
        progress: &mut SnapshotProgress,
        on_progress: &mut (dyn FnMut(&SnapshotProgress) + Send),
    ) -> Result<bool, SnapshotError> {
        use futures::stream::{FuturesOrdered, StreamExt};
        let mongo_err = |source| SnapshotError::Mongo {
            collection: self.collection.to_string(),
            source: Box::new(source),
        };
        let mut in_flight = FuturesOrdered::new();
        // Per page in flight (same order): the turn of the page after it, sent once it committed.
        let mut turns: std::collections::VecDeque<Option<tokio::sync::oneshot::Sender<()>>> =
            std::collections::VecDeque::new();
        let mut exhausted = false;
        loop {
            let may_start = !exhausted
                && !idle.is_empty()
                && self
                    .max_pages
                    .is_none_or(|m| report.pages + (in_flight.len() as u64) < m);
            if !may_start && in_flight.is_empty() {
                return Ok(exhausted);
            }
            tokio::select! {
                page = pages.next(), if may_start => {
                    let Some(MappedPage { items, last_id }) = page.map_err(mongo_err)? else {
                        exhausted = true;
                        continue;
                    };
                    let Some(writer) = idle.pop() else { continue };
                    let follows = after.replace(bson_extjson(&last_id));
                    let turn = turns.back_mut().map(|slot| {
                        let (send, turn) = tokio::sync::oneshot::channel();
                        *slot = Some(send);
                        turn
                    });
                    turns.push_back(None);
                    let page = Page { items, after: follows, last_id, turn };
                    in_flight.push_back(self.write(writer, page));
                }
                Some((written, writer)) = in_flight.next(), if !in_flight.is_empty() => {
                    let (outcome, n) = written?;
                    if let Some(Some(next)) = turns.pop_front() {
                        // The next page may commit now (it is dropped, and rolls back, if the
                        // copy stopped meanwhile).
                        let _ = next.send(());
                    }
                    idle.push(writer);
                    report.page_applied(progress, n, outcome.gaps.len() as u64);
                    on_progress(progress);
                }
            }
        }
    }

    /// Writes one page on `writer`; hands the writer back with the outcome and the page's size.
    async fn write<'w>(
        &self,
        writer: PageWriter<'w>,
        page: Page,
    ) -> (
        Result<(crate::sink::BatchOutcome, u64), SnapshotError>,
        PageWriter<'w>,
    ) {
        let n = page.items.len() as u64;
        let outcome = writer
            .sink
            .apply_snapshot_page(
                writer.pg,
                self.stream,
                self.epoch,
                page.items,
                self.collection,
                page.after.as_deref(),
                &page.last_id,
                page.turn,
            )
            .await
            .map(|o| (o, n))
            .map_err(|e| match e {
                crate::sink::SinkError::CheckpointMoved { .. } => SnapshotError::Moved {
                    stream: self.stream.to_string(),
                },
                other => other.into(),
            });
        (outcome, writer)
    }
}

/// Resolves the gaps an operator or the history-lost handling named for this copy.
async fn resolve_named_gaps(
    ctx: &SnapshotContext<'_>,
    options: &SnapshotOptions,
    note: &str,
) -> Result<u64, SnapshotError> {
    let mut resolved = 0;
    for id in &options.resolve_gaps {
        if gaps_store::close(&*ctx.pg, &ctx.names.gaps, *id, GapStatus::Resolved, note).await? {
            resolved += 1;
        }
    }
    Ok(resolved)
}

/// `mongo2pg snapshot <collection> [--from-id --to-id | --field --since --until]`: re-copies one
/// collection (or the selected documents) while its stream keeps running (a full re-copy also
/// removes rows whose documents are gone). Re-copied documents supersede their older gaps through
/// the sink; the gaps in `options.resolve_gaps` are resolved at the end. The stream position is
/// not touched.
pub async fn resync(
    mut ctx: SnapshotContext<'_>,
    rules: &CollectionRules,
    options: &SnapshotOptions,
    on_progress: &mut (dyn FnMut(&SnapshotProgress) + Send),
) -> Result<SnapshotReport, SnapshotError> {
    let collection = rules.collection.as_str();
    let stream = options
        .stream
        .clone()
        .unwrap_or_else(|| crate::gap_retry::stream_of_collection(collection));
    let mongo_err = |source| SnapshotError::Mongo {
        collection: collection.to_string(),
        source: Box::new(source),
    };
    let epoch = checkpoint::load(&*ctx.pg, &ctx.names.checkpoints, &stream)
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
    .map_err(mongo_err)?
    .with_page_bytes(options.page_bytes);
    let remaining = reader.count_remaining().await.map_err(mongo_err)?;
    let mut progress = SnapshotProgress::starting(remaining);
    let mut report = SnapshotReport::started(collection, &start, None);
    let mut pages = PageReader::spawn(reader, rules);
    loop {
        if options.max_pages.is_some_and(|m| report.pages >= m) {
            return Ok(report);
        }
        let Some(MappedPage { items, .. }) = pages.next().await.map_err(mongo_err)? else {
            break;
        };
        let n = items.len() as u64;
        let outcome = ctx
            .sink
            .apply_batch(ctx.pg, &stream, epoch, items, None)
            .await?;
        report.page_applied(&mut progress, n, outcome.gaps.len() as u64);
        on_progress(&progress);
    }
    report.complete = true;
    if options.filter.is_full() {
        report.swept = sweep_vanished(&mut ctx, &stream, rules, epoch, &start).await?;
    }
    report.gaps_resolved = resolve_named_gaps(&ctx, options, "resolved by re-sync").await?;
    if options.filter.is_full() {
        report.gaps_resolved += gaps_store::resolve_windows_before(
            &*ctx.pg,
            &ctx.names.gaps,
            collection,
            start.cluster_time,
            "repaired by a full re-sync",
        )
        .await?;
    }
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
/// or before a `--resnapshot`), unless the copy recorded a gap for it (those are kept: the gap
/// decides). Each becomes a delete event at `start` through the collection's delete policy.
/// Tables without a version column are left alone, and so are collections whose deletes change
/// nothing (append-only tables, whose rows a copy never rewrites, and ignored deletes).
async fn sweep_vanished(
    ctx: &mut SnapshotContext<'_>,
    stream: &str,
    rules: &CollectionRules,
    epoch: i64,
    start: &Position,
) -> Result<u64, SnapshotError> {
    let Some(version) = &rules.version_column else {
        return Ok(0);
    };
    if rules.append_only || rules.delete == crate::mapping::rules::DeleteRule::Ignore {
        return Ok(0);
    }
    let table = SweptTable {
        collection: &rules.collection,
        table: &rules.table,
        legacy_column: &rules.legacy_column,
        version_column: version,
    };
    let rows = rows_not_copied(&*ctx.pg, &ctx.names.gaps, &table, start.cluster_time).await?;
    let mut swept = 0;
    for chunk in rows.chunks(500) {
        let items: Vec<BatchItem> = chunk
            .iter()
            .map(|legacy| {
                let legacy = legacy.clone();
                let key = match bson::oid::ObjectId::parse_str(&legacy) {
                    Ok(oid) if oid.to_hex() == legacy => Bson::ObjectId(oid),
                    _ => Bson::String(legacy),
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
            .apply_batch(ctx.pg, stream, epoch, items, None)
            .await?;
    }
    if swept > 0 {
        tracing::info!(collection = %rules.collection, swept, "removed rows of documents gone from mongodb");
    }
    Ok(swept)
}
