//! The batch apply: ONE Postgres transaction per batch. It locks the stream's checkpoint row,
//! resolves every legacy id of the batch through id_map, writes all row operations as multi-row
//! statements under a savepoint (falling back to event-by-event savepoints when one event is
//! rejected), records gaps, supersedes older gaps of documents that applied, and finally moves
//! the checkpoint forward, all or nothing.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use tokio_postgres::{Client, GenericClient, Transaction};

use crate::event::{ChangeEvent, Operation, Position};
use crate::mapping::{GapKind, LegacyRef, Mapped, MappingError, RowOp, SqlValue};
use crate::sink::catalogue::Catalogue;
use crate::sink::checkpoint::{self, Checkpoint};
use crate::sink::defer::{self, DeferRules, RowHome};
use crate::sink::error::SinkError;
use crate::sink::extjson::bson_extjson;
use crate::sink::gaps::{self, GapRecord};
use crate::sink::idmap::{self, IdCache, IdType, DEFAULT_CACHE_CAPACITY};
use crate::sink::migrate::ControlNames;
use crate::sink::name::quote_schema_table;
use crate::sink::plan::{plan, Planned};
use crate::sink::write::{self, SoftRule, Targets, WriteError};

/// Rejected ranges of at most this many events are retried event by event instead of halved.
const SPLIT_TO_SINGLES: usize = 4;

/// Batches of at least this many events are freed on a blocking thread.
const BACKGROUND_DROP_ITEMS: usize = 256;

/// One event of a batch with what mapping made of it.
#[derive(Debug, Clone)]
pub struct BatchItem {
    pub event: ChangeEvent,
    pub mapped: Result<Mapped, MappingError>,
}

/// What one batch did, for metrics and logs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BatchOutcome {
    /// Events applied, by operation (`insert`, `update`, ...).
    pub applied: BTreeMap<String, u64>,
    /// Events recorded as gaps, by operation.
    pub gapped: BTreeMap<String, u64>,
    /// Events with nothing to do, by operation.
    pub skipped: BTreeMap<String, u64>,
    /// Events applied, by (collection, operation): a stream group's per-collection metrics.
    pub applied_by_collection: BTreeMap<(String, String), u64>,
    /// Events recorded as gaps, by (collection, operation).
    pub gapped_by_collection: BTreeMap<(String, String), u64>,
    /// Rows inserted, updated or deleted, by table (child tables included).
    pub rows_written: BTreeMap<String, u64>,
    pub gaps_by_kind: BTreeMap<GapKind, u64>,
    /// The gaps recorded by this batch.
    pub gaps: Vec<GapRecord>,
    /// Older open gaps marked superseded by events of this batch.
    pub superseded_gaps: u64,
    pub id_cache_hits: u64,
    pub id_cache_misses: u64,
    pub ids_allocated: u64,
    /// Statements sent (excluding BEGIN/COMMIT and savepoint bookkeeping).
    pub statements: u64,
    /// True when the multi-row write was rejected and the batch was split to isolate the
    /// rejected events (each then under its own savepoint).
    pub per_event_fallback: bool,
    /// True when the stored checkpoint moved to `end`.
    pub checkpoint_moved: bool,
    pub duration: Duration,
}

impl BatchOutcome {
    fn count_gapped(&mut self, event: &ChangeEvent) {
        let op = event.operation.as_str().to_string();
        *self
            .gapped_by_collection
            .entry((event.collection.clone(), op.clone()))
            .or_default() += 1;
        *self.gapped.entry(op).or_default() += 1;
    }
}

/// The Postgres writer of one or more streams: catalogue, control-table names, what it must know
/// about the mapped collections (their delete rules) and the id cache.
#[derive(Debug)]
pub struct Sink {
    catalogue: Catalogue,
    names: ControlNames,
    /// The tombstones table, quoted.
    tombstones: String,
    /// Soft-delete rules by collection.
    soft: std::collections::HashMap<String, SoftRule>,
    /// Which parts of a row may wait for a missing referenced row.
    defer: DeferRules,
    cache: IdCache,
    holder: String,
    /// Whether the session may create temporary tables (checked once, on the first page read
    /// from MongoDB): large pages are then staged with COPY.
    staging: Option<bool>,
}

impl Sink {
    pub fn new(catalogue: Catalogue, names: ControlNames) -> Self {
        Sink {
            tombstones: quote_schema_table(&names.schema, "tombstones"),
            catalogue,
            names,
            soft: std::collections::HashMap::new(),
            defer: DeferRules::default(),
            cache: IdCache::new(DEFAULT_CACHE_CAPACITY),
            holder: format!("pid:{}", std::process::id()),
            staging: None,
        }
    }

    /// The compiled rules of the mapped collections: soft-delete rules re-flag rows when an older
    /// state of a soft-deleted document lands later; tables and optional references tell which
    /// parts of a row may wait for a referenced row that does not exist yet.
    pub fn with_rules<'r>(
        mut self,
        rules: impl IntoIterator<Item = &'r crate::mapping::CollectionRules>,
    ) -> Self {
        for r in rules {
            self.defer.homes.insert(
                r.collection.clone(),
                RowHome {
                    table: r.table.clone(),
                    id_column: r.id_column.clone(),
                },
            );
            self.defer.deferrable.insert(
                r.collection.clone(),
                r.row
                    .references
                    .iter()
                    .filter(|x| !x.required)
                    .map(|x| x.column.clone())
                    .collect(),
            );
            if let crate::mapping::rules::DeleteRule::Soft { column, value } = &r.delete {
                self = self.with_soft_delete(&r.collection, column, value.clone());
            }
        }
        self
    }

    /// The soft-delete rule of one collection (what `with_rules` takes from a mapping).
    pub fn with_soft_delete(mut self, collection: &str, column: &str, value: SqlValue) -> Self {
        self.soft.insert(
            collection.to_string(),
            SoftRule {
                column: column.to_string(),
                value,
            },
        );
        self
    }

    /// Identity written to the checkpoint's `holder` column.
    pub fn with_holder(mut self, holder: impl Into<String>) -> Self {
        self.holder = holder.into();
        self
    }

    /// Maximum number of cached id_map entries.
    pub fn with_cache_capacity(mut self, capacity: usize) -> Self {
        self.cache = IdCache::new(capacity);
        self
    }

    /// A sink with the same catalogue, names and rules and an empty id cache of the same
    /// capacity, for a second connection (the copy's extra page writers). Its cache fills from its
    /// own committed transactions only.
    pub fn fork(&self) -> Sink {
        Sink {
            catalogue: self.catalogue.clone(),
            names: self.names.clone(),
            tombstones: self.tombstones.clone(),
            soft: self.soft.clone(),
            defer: self.defer.clone(),
            cache: IdCache::new(self.cache.capacity()),
            holder: self.holder.clone(),
            staging: self.staging,
        }
    }

    pub fn names(&self) -> &ControlNames {
        &self.names
    }

    pub fn catalogue(&self) -> &Catalogue {
        &self.catalogue
    }

    /// Number of id_map entries cached (all from committed transactions).
    pub fn cached_ids(&self) -> usize {
        self.cache.len()
    }

    /// The stored checkpoint of `stream`, if any.
    pub async fn load_checkpoint<C: GenericClient>(
        &self,
        client: &C,
        stream: &str,
    ) -> Result<Option<Checkpoint>, SinkError> {
        checkpoint::load(client, &self.names.checkpoints, stream).await
    }

    /// Records a stream-level gap (stream invalidated, window lost) on `client`, which may be a
    /// plain connection or an open transaction.
    pub async fn record_stream_gap<C: GenericClient>(
        &self,
        client: &C,
        gap: &GapRecord,
    ) -> Result<(), SinkError> {
        gaps::record_gaps(client, &self.names.gaps, std::slice::from_ref(gap)).await?;
        Ok(())
    }

    /// Applies one batch in one transaction and moves the checkpoint of `stream` to `end` (when
    /// given and ahead of the stored one). `epoch` is the checkpoint epoch the stream started
    /// from: if an operator reset changed it, nothing is written and `CheckpointMoved` returned.
    pub async fn apply_batch(
        &mut self,
        client: &mut Client,
        stream: &str,
        epoch: i64,
        items: Vec<BatchItem>,
        end: Option<Position>,
    ) -> Result<BatchOutcome, SinkError> {
        self.apply(client, stream, epoch, items, Finish::moving_to(end), None)
            .await
    }

    /// Resolves the ids of `items` through id_map in a transaction of its own on `client`, and
    /// commits it: what `apply_batch_resolved` needs to write the batch. A stream resolves its
    /// next batch this way on a second connection while the batch before it is written. An
    /// entry committed without its row is what a reference leaves anyway; the write paths never
    /// touch id_map, so the batch being written cannot hold anything this waits for.
    pub async fn resolve_ahead(
        &mut self,
        client: &mut Client,
        items: &[BatchItem],
    ) -> Result<Resolved, SinkError> {
        self.resolve_requests(client, IdRequests::of(items)).await
    }

    async fn resolve_requests(
        &mut self,
        client: &mut Client,
        requests: IdRequests,
    ) -> Result<Resolved, SinkError> {
        if requests.refs.is_empty() && requests.owners.is_empty() {
            return Ok(Resolved(idmap::Resolution::default()));
        }
        let ids = client
            .transaction()
            .await
            .map_err(|e| SinkError::pg("beginning the id allocation", e))?;
        let mut resolution = idmap::resolve(
            &ids,
            &self.names.id_map,
            &mut self.cache,
            requests.refs,
            &requests.owners,
            requests.likely,
        )
        .await?;
        ids.commit()
            .await
            .map_err(|e| SinkError::pg("committing the id allocation", e))?;
        resolution.statements += 2;
        for (r, id, owner) in std::mem::take(&mut resolution.fresh) {
            self.cache.insert_owned(r, id, owner);
        }
        Ok(Resolved(resolution))
    }

    /// `apply_batch` for a batch whose ids `resolve_ahead` resolved (on any connection, with
    /// any sink of the same mapping).
    pub async fn apply_batch_resolved(
        &mut self,
        client: &mut Client,
        stream: &str,
        epoch: i64,
        items: Vec<BatchItem>,
        end: Option<Position>,
        resolved: Resolved,
    ) -> Result<BatchOutcome, SinkError> {
        self.apply(
            client,
            stream,
            epoch,
            items,
            Finish::moving_to(end),
            Some(resolved),
        )
        .await
    }

    /// Applies one page of a copy of `stream` in one transaction and records, as its last
    /// statement, that the copy of `collection` reached `last_id`: the page and its progress
    /// commit together. `after` is the progress the page follows (the previous page's last `_id`
    /// as stored; None for the first page of `collection`): the page commits only once that one
    /// has, so pages written at once on several connections land in order (see
    /// `checkpoint::record_page_progress`). When the previous page is still being written,
    /// `turn` fires once it has committed; the page waits for it, with its rows written, before
    /// its progress update and commit. The page does not lock the checkpoint row before it
    /// writes (that would serialise the pages); the conditional progress update at its end does.
    /// An operator reset of the stream while the copy runs (another epoch, or the copy no longer
    /// running), or a previous page that did not commit, rolls the page back with
    /// `CheckpointMoved`.
    #[allow(clippy::too_many_arguments)]
    pub async fn apply_snapshot_page(
        &mut self,
        client: &mut Client,
        stream: &str,
        epoch: i64,
        items: Vec<BatchItem>,
        collection: &str,
        after: Option<&str>,
        last_id: &bson::Bson,
        turn: Option<PageTurn>,
    ) -> Result<BatchOutcome, SinkError> {
        let finish = Finish::SnapshotProgress {
            collection,
            after,
            last_id,
            turn,
        };
        self.apply(client, stream, epoch, items, finish, None).await
    }

    async fn apply(
        &mut self,
        client: &mut Client,
        stream: &str,
        epoch: i64,
        items: Vec<BatchItem>,
        finish: Finish<'_>,
        ahead: Option<Resolved>,
    ) -> Result<BatchOutcome, SinkError> {
        let started = Instant::now();
        let mut out = BatchOutcome::default();

        let mut gaps: Vec<GapRecord> = Vec::new();
        let mut work: Vec<usize> = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let op = item.event.operation.as_str().to_string();
            match &item.mapped {
                Err(e) => {
                    gaps.push(GapRecord::for_event(&item.event, e.kind, e.reason.clone()));
                    *out.gapped_by_collection
                        .entry((item.event.collection.clone(), op.clone()))
                        .or_default() += 1;
                    *out.gapped.entry(op).or_default() += 1;
                }
                Ok(Mapped::Ops(ops)) if !ops.is_empty() => work.push(i),
                Ok(_) => *out.skipped.entry(op).or_default() += 1,
            }
        }
        let ops_of = |i: usize| -> &[RowOp] {
            match &items[i].mapped {
                Ok(Mapped::Ops(ops)) => ops,
                _ => &[],
            }
        };

        let requests = IdRequests::of(&items);
        // Ids resolved ahead (a stream's batch, on its second connection) are committed already.
        // A copy's pages are written at once on several connections, and a page waits for the
        // page before it with its transaction open: its id_map entries are allocated (and
        // claimed) first in a transaction of their own, so that no page ever holds an uncommitted
        // entry the page before it would wait for. An entry without its row is what a reference
        // leaves anyway.
        let (mut tx, resolution) = if let Some(Resolved(resolution)) = ahead {
            let tx = client
                .transaction()
                .await
                .map_err(|e| SinkError::pg("beginning the batch transaction", e))?;
            out.statements += checkpoint::lock(&tx, &self.names.checkpoints, stream, epoch).await?;
            (tx, resolution)
        } else if matches!(finish, Finish::SnapshotProgress { .. }) {
            let Resolved(resolution) = self.resolve_requests(client, requests).await?;
            let tx = client
                .transaction()
                .await
                .map_err(|e| SinkError::pg("beginning the batch transaction", e))?;
            (tx, resolution)
        } else {
            let tx = client
                .transaction()
                .await
                .map_err(|e| SinkError::pg("beginning the batch transaction", e))?;
            // The lock and the id resolution are independent: both are sent at once (one wait
            // instead of two). Should the lock find another epoch, the transaction, ids
            // included, rolls back.
            let (lock_statements, resolution) = futures::try_join!(
                checkpoint::lock(&tx, &self.names.checkpoints, stream, epoch),
                idmap::resolve(
                    &tx,
                    &self.names.id_map,
                    &mut self.cache,
                    requests.refs,
                    &requests.owners,
                    requests.likely,
                ),
            )?;
            out.statements += lock_statements;
            (tx, resolution)
        };
        out.id_cache_hits = resolution.cache_hits;
        out.id_cache_misses = resolution.cache_misses;
        out.ids_allocated = resolution.allocated;
        out.statements += resolution.statements;
        // A document whose legacy id belongs to a document of the other `_id` type is never
        // written: two MongoDB documents must not share a row.
        if !resolution.collisions.is_empty() {
            work.retain(|&i| {
                let event = &items[i].event;
                let Some(t) = event.document_key.as_ref().and_then(IdType::of) else {
                    return true;
                };
                let Some((key, owner)) = ops_of(i).iter().find_map(|op| {
                    let key = op_key(op);
                    resolution
                        .collisions
                        .get(&(key.clone(), t))
                        .map(|owner| (key, *owner))
                }) else {
                    return true;
                };
                gaps.push(GapRecord::for_event(
                    event,
                    GapKind::IdCollision,
                    format!(
                        "{} and {} are two documents of {} with the same legacy id {}; the id and \
                         its row belong to {}, written first, so this document is not replicated",
                        t.describe(&key.legacy_id),
                        owner.describe(&key.legacy_id),
                        key.collection,
                        key.legacy_id,
                        owner.describe(&key.legacy_id),
                    ),
                ));
                out.count_gapped(event);
                false
            });
        }

        let mut applied: Vec<usize> = Vec::new();
        // All events as one multi-row write; a rejected range is split in halves (small ranges
        // into single events) until each rejected event is isolated under its own savepoint.
        // Ranges are applied left to right, so the stream order is kept.
        let mut pending: VecDeque<&[usize]> = VecDeque::new();
        if !work.is_empty() {
            pending.push_back(&work);
        }
        let read_items = work
            .iter()
            .filter(|&&i| items[i].event.operation == Operation::Snapshot)
            .count();
        if self.staging.is_none() && read_items >= write::STAGE_MIN_ROWS {
            let row = tx
                .query_one(
                    "SELECT has_database_privilege(current_database(), 'TEMPORARY')",
                    &[],
                )
                .await
                .map_err(|e| SinkError::pg("checking the TEMPORARY privilege", e))?;
            let allowed: bool = row
                .try_get(0)
                .map_err(|e| SinkError::pg("checking the TEMPORARY privilege", e))?;
            if !allowed {
                tracing::info!(
                    "the role may not create temporary tables: snapshot pages are written \
                     without a COPY staging table (slower)"
                );
            }
            self.staging = Some(allowed);
            out.statements += 1;
        }
        let targets = Targets {
            catalogue: &self.catalogue,
            tombstones: &self.tombstones,
            soft: &self.soft,
            staging: self.staging == Some(true),
        };
        while let Some(range) = pending.pop_front() {
            let planned = plan(range.iter().flat_map(|&i| {
                let at = items[i].event.cluster_time;
                let read = items[i].event.operation == Operation::Snapshot;
                let inserted = items[i].event.operation == Operation::Insert;
                ops_of(i).iter().map(move |op| Planned {
                    op,
                    at,
                    read,
                    inserted,
                })
            }));
            let attempt = try_write(
                &mut tx,
                &targets,
                &resolution.ids,
                &planned,
                &mut out.statements,
            )
            .await?;
            match attempt {
                Ok(rows) => {
                    for (table, n) in rows {
                        *out.rows_written.entry(table).or_default() += n;
                    }
                    applied.extend(range);
                }
                Err(rejection) if range.len() == 1 => {
                    let i = range[0];
                    let event = &items[i].event;
                    let (kind, reason) = rejection.into_gap();
                    if kind == GapKind::FkMissing {
                        if let Some(waiting) = self
                            .write_deferred(
                                &mut tx,
                                &targets,
                                &resolution.ids,
                                ops_of(i),
                                event,
                                &mut out,
                            )
                            .await?
                        {
                            gaps.push(GapRecord::for_event(
                                event,
                                GapKind::FkDeferred,
                                format!("the row landed; {}", waiting.join("; ")),
                            ));
                            applied.push(i);
                            continue;
                        }
                    }
                    gaps.push(GapRecord::for_event(event, kind, reason));
                    out.count_gapped(event);
                }
                Err(_) => {
                    out.per_event_fallback = true;
                    if range.len() <= SPLIT_TO_SINGLES {
                        for k in (0..range.len()).rev() {
                            pending.push_front(&range[k..=k]);
                        }
                    } else {
                        let (left, right) = range.split_at(range.len() / 2);
                        pending.push_front(right);
                        pending.push_front(left);
                    }
                }
            }
        }
        applied.sort_unstable();

        let mut superseding = Vec::new();
        for &i in &applied {
            let event = &items[i].event;
            *out.applied
                .entry(event.operation.as_str().to_string())
                .or_default() += 1;
            *out.applied_by_collection
                .entry((
                    event.collection.clone(),
                    event.operation.as_str().to_string(),
                ))
                .or_default() += 1;
            // Only a state that determines the row closes older gaps of the document: an upsert
            // (written, or refused because a newer row or a tombstone is there) or a hard delete.
            // A soft delete only flags whatever state the row has.
            let determines = ops_of(i)
                .iter()
                .any(|op| matches!(op, RowOp::Upsert { .. } | RowOp::Delete { .. }));
            if !determines {
                continue;
            }
            if let Some(key) = &event.document_key {
                superseding.push((
                    event.collection.clone(),
                    bson_extjson(key),
                    event.cluster_time,
                ));
            }
        }
        if !gaps.is_empty() {
            gaps::record_gaps(&tx, &self.names.gaps, &gaps).await?;
            out.statements += 1;
        }
        for g in &gaps {
            *out.gaps_by_kind.entry(g.kind).or_default() += 1;
        }
        out.gaps = gaps;
        // Freeing a large batch's documents takes a while: do it off this task, while the
        // checkpoint and the commit travel.
        if items.len() >= BACKGROUND_DROP_ITEMS {
            tokio::task::spawn_blocking(move || drop(items));
        } else {
            drop(items);
        }
        let supersede = async {
            if superseding.is_empty() {
                return Ok(None);
            }
            gaps::supersede(&tx, &self.names.gaps, &superseding)
                .await
                .map(Some)
        };
        match finish {
            Finish::Nothing => {
                if let Some(n) = supersede.await? {
                    out.superseded_gaps = n;
                    out.statements += 1;
                }
            }
            Finish::Advance(end) => {
                // Gaps and the checkpoint are different rows: both statements are sent at once.
                let (superseded, moved) = futures::try_join!(
                    supersede,
                    checkpoint::advance(
                        &tx,
                        &self.names.checkpoints,
                        stream,
                        epoch,
                        &end,
                        &self.holder,
                    ),
                )?;
                if let Some(n) = superseded {
                    out.superseded_gaps = n;
                    out.statements += 1;
                }
                out.checkpoint_moved = moved;
                out.statements += 1;
            }
            Finish::SnapshotProgress {
                collection,
                after,
                last_id,
                turn,
            } => {
                if let Some(n) = supersede.await? {
                    out.superseded_gaps = n;
                    out.statements += 1;
                }
                // The page before this one commits first (its writer sends the turn once it
                // has); a dropped turn means it failed.
                // The page before may also be waiting for a row of this one (a unique value
                // on both pages), which Postgres cannot see as a deadlock: after
                // `PAGE_TURN_TIMEOUT` this page gives up and rolls back (the copy goes on one
                // page at a time).
                if let Some(turn) = turn {
                    match tokio::time::timeout(PAGE_TURN_TIMEOUT, turn).await {
                        Ok(Ok(())) => {}
                        Ok(Err(_)) => {
                            return Err(SinkError::PreviousPageFailed {
                                stream: stream.to_string(),
                            })
                        }
                        Err(_) => {
                            return Err(SinkError::PageTurnTimeout {
                                stream: stream.to_string(),
                            })
                        }
                    }
                }
                let recorded = checkpoint::record_page_progress(
                    &tx,
                    &self.names.checkpoints,
                    stream,
                    epoch,
                    collection,
                    after,
                    last_id,
                )
                .await?;
                out.statements += 1;
                if !recorded {
                    return Err(SinkError::CheckpointMoved {
                        stream: stream.to_string(),
                        expected: epoch,
                        found: -1,
                    });
                }
            }
        }
        tx.commit()
            .await
            .map_err(|e| SinkError::pg("committing the batch", e))?;
        for (r, id, owner) in resolution.fresh {
            self.cache.insert_owned(r, id, owner);
        }
        out.duration = started.elapsed();
        Ok(out)
    }
}

impl Sink {
    /// An event refused for a missing referenced row: writes it without the parts that can wait
    /// (see `defer`). Returns what waits when that write succeeded, None when the event cannot
    /// land yet (a required or mixed-id reference is missing, or the reduced write fails too).
    async fn write_deferred(
        &self,
        tx: &mut Transaction<'_>,
        targets: &Targets<'_>,
        ids: &std::collections::HashMap<LegacyRef, uuid::Uuid>,
        ops: &[RowOp],
        event: &ChangeEvent,
        out: &mut BatchOutcome,
    ) -> Result<Option<Vec<String>>, SinkError> {
        let missing = defer::missing_targets(&*tx, &self.catalogue, &self.defer, ids, ops).await?;
        out.statements += 1;
        if missing.is_empty() {
            return Ok(None);
        }
        let mut reduced = Vec::with_capacity(ops.len());
        let mut waiting = Vec::new();
        for op in ops {
            match defer::defer(op, &missing, &self.defer) {
                Some(d) => {
                    reduced.push(d.op);
                    waiting.extend(d.waiting);
                }
                None if is_referring_to(op, &missing) => return Ok(None),
                None => reduced.push(op.clone()),
            }
        }
        let at = event.cluster_time;
        let read = event.operation == Operation::Snapshot;
        let inserted = event.operation == Operation::Insert;
        let planned = plan(reduced.iter().map(|op| Planned {
            op,
            at,
            read,
            inserted,
        }));
        match try_write(tx, targets, ids, &planned, &mut out.statements).await? {
            Ok(rows) => {
                for (table, n) in rows {
                    *out.rows_written.entry(table).or_default() += n;
                }
                Ok(Some(waiting))
            }
            Err(_) => Ok(None),
        }
    }
}

/// Whether `op` refers to any of `rows`.
fn is_referring_to(op: &RowOp, rows: &std::collections::HashSet<LegacyRef>) -> bool {
    let mut refs = BTreeSet::new();
    collect_refs(op, &mut refs);
    if let RowOp::Upsert { key, .. } = op {
        refs.remove(key);
    }
    refs.iter().any(|r| rows.contains(r))
}

/// A batch's ids, resolved and committed ahead of its write (`Sink::resolve_ahead`).
#[derive(Debug)]
pub struct Resolved(idmap::Resolution);

/// What a batch asks of id_map: every legacy id its rows write or refer to, and each document
/// key with its `_id` type (in stream order), from the events that have row operations.
struct IdRequests {
    refs: BTreeSet<LegacyRef>,
    owners: Vec<(LegacyRef, IdType)>,
    likely: idmap::Likely,
}

impl IdRequests {
    fn of(items: &[BatchItem]) -> IdRequests {
        let work: Vec<(&ChangeEvent, &[RowOp])> = items
            .iter()
            .filter_map(|item| match &item.mapped {
                Ok(Mapped::Ops(ops)) if !ops.is_empty() => Some((&item.event, ops.as_slice())),
                _ => None,
            })
            .collect();
        let mut refs = BTreeSet::new();
        for op in work.iter().flat_map(|(_, ops)| *ops) {
            collect_refs(op, &mut refs);
        }
        let owners = work
            .iter()
            .filter_map(|(event, ops)| {
                let t = IdType::of(event.document_key.as_ref()?)?;
                Some(ops.iter().map(move |op| (op_key(op).clone(), t)))
            })
            .flatten()
            .collect();
        // Inserts and copies bring documents id_map has not seen yet; anything else mostly
        // documents it has.
        let new_documents = work
            .iter()
            .filter(|(event, _)| matches!(event.operation, Operation::Insert | Operation::Snapshot))
            .count();
        let likely = if new_documents * 2 >= work.len() {
            idmap::Likely::New
        } else {
            idmap::Likely::Known
        };
        IdRequests {
            refs,
            owners,
            likely,
        }
    }
}

/// How long a copy's page waits, its rows written, for the page before it to commit.
pub const PAGE_TURN_TIMEOUT: Duration = Duration::from_secs(10);

/// Fires when the page before a copy's page has committed: only then may the page record its
/// progress and commit (`Sink::apply_snapshot_page`).
pub type PageTurn = tokio::sync::oneshot::Receiver<()>;

/// What a batch's transaction ends with.
enum Finish<'a> {
    Nothing,
    /// Move the stream's checkpoint to this position (forward only).
    Advance(Position),
    /// Record a copy's progress, if it still stands at `after`, once `turn` (if any) fires.
    SnapshotProgress {
        collection: &'a str,
        after: Option<&'a str>,
        last_id: &'a bson::Bson,
        turn: Option<PageTurn>,
    },
}

impl Finish<'_> {
    /// A stream batch's end: move the checkpoint to `end`, if any.
    fn moving_to(end: Option<Position>) -> Self {
        match end {
            Some(p) => Finish::Advance(p),
            None => Finish::Nothing,
        }
    }
}

/// A per-event rejection: the event becomes a gap.
enum Rejection {
    Db(tokio_postgres::Error),
    Immutable { table: String, legacy_id: String },
}

impl Rejection {
    fn into_gap(self) -> (GapKind, String) {
        match self {
            Rejection::Immutable { table, legacy_id } => (
                GapKind::ImmutableChange,
                format!(
                    "append-only row {legacy_id} of {table} already exists with different values; append-only rows are never updated"
                ),
            ),
            Rejection::Db(e) => match e.as_db_error() {
                Some(db) => {
                    let mut reason = db.message().to_string();
                    if let Some(detail) = db.detail() {
                        reason.push_str("\nDETAIL: ");
                        reason.push_str(detail);
                    }
                    (gap_kind_for_sqlstate(db.code().code()), reason)
                }
                None => (GapKind::Rejected, e.to_string()),
            },
        }
    }
}

/// The gap kind for a row rejected with this SQLSTATE.
pub fn gap_kind_for_sqlstate(code: &str) -> GapKind {
    match code {
        "23503" => GapKind::FkMissing,
        "23505" => GapKind::UniqueViolation,
        "23514" => GapKind::CheckViolation,
        "23502" => GapKind::MissingRequired,
        // A trigger raising an exception on a target row: how append-only tables refuse changes.
        "P0001" => GapKind::ImmutableChange,
        "22021" | "22P05" => GapKind::NulInText,
        "22003" => GapKind::InvalidNumber,
        "22007" | "22008" => GapKind::InvalidDate,
        "22P02" => GapKind::WrongType,
        _ => GapKind::Rejected,
    }
}

/// Whether a statement error concerns the rows (data, constraints, triggers, a value too big for
/// an index) rather than the connection, the schema or the transaction: only those become gaps.
fn is_row_rejection(e: &tokio_postgres::Error) -> bool {
    e.code().is_some_and(|c| {
        let c = c.code();
        c.starts_with("22") || c.starts_with("23") || c == "P0001" || c == "54000"
    })
}

/// Runs `plans` under a savepoint: `Ok(Ok(stats))` when written, `Ok(Err(rejection))` when rolled
/// back because a row was rejected, `Err` for anything that must abort the batch.
async fn try_write(
    tx: &mut Transaction<'_>,
    targets: &Targets<'_>,
    ids: &std::collections::HashMap<LegacyRef, uuid::Uuid>,
    plans: &[crate::sink::plan::TablePlan<'_>],
    statements: &mut u64,
) -> Result<Result<BTreeMap<String, u64>, Rejection>, SinkError> {
    let sp = tx
        .savepoint("m2p_write")
        .await
        .map_err(|e| SinkError::pg("creating a savepoint", e))?;
    let result = write::execute(&sp, targets, ids, plans, statements).await;
    let rejection = match result {
        Ok(stats) => {
            sp.commit()
                .await
                .map_err(|e| SinkError::pg("releasing a savepoint", e))?;
            return Ok(Ok(stats));
        }
        Err(WriteError::Fatal(e)) => return Err(e),
        Err(WriteError::Db(e)) if !is_row_rejection(&e) => {
            return Err(SinkError::pg("writing rows", e))
        }
        Err(WriteError::Db(e)) => Rejection::Db(e),
        Err(WriteError::Immutable { table, legacy_id }) => {
            Rejection::Immutable { table, legacy_id }
        }
    };
    sp.rollback()
        .await
        .map_err(|e| SinkError::pg("rolling back to a savepoint", e))?;
    Ok(Err(rejection))
}

/// The row an operation writes.
fn op_key(op: &RowOp) -> &LegacyRef {
    match op {
        RowOp::Upsert { key, .. } | RowOp::Delete { key, .. } | RowOp::SoftDelete { key, .. } => {
            key
        }
    }
}

fn collect_refs(op: &RowOp, acc: &mut BTreeSet<LegacyRef>) {
    let mut value = |v: &SqlValue| {
        if let SqlValue::Ref(r) = v {
            acc.insert(r.clone());
        }
    };
    match op {
        RowOp::Upsert {
            key,
            columns,
            children,
            ..
        } => {
            columns.iter().for_each(|c| value(&c.value));
            for child in children {
                child.rows.iter().flatten().for_each(|c| value(&c.value));
            }
            acc.insert(key.clone());
        }
        RowOp::SoftDelete { value: v, .. } => value(v),
        RowOp::Delete { .. } => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstates_map_to_precise_gap_kinds() {
        let cases = [
            ("23503", GapKind::FkMissing),
            ("23505", GapKind::UniqueViolation),
            ("23514", GapKind::CheckViolation),
            ("23502", GapKind::MissingRequired),
            ("P0001", GapKind::ImmutableChange),
            ("22021", GapKind::NulInText),
            ("22P05", GapKind::NulInText),
            ("22003", GapKind::InvalidNumber),
            ("22008", GapKind::InvalidDate),
            ("22P02", GapKind::WrongType),
            ("22001", GapKind::Rejected),
            ("23P01", GapKind::Rejected),
        ];
        for (code, kind) in cases {
            assert_eq!(gap_kind_for_sqlstate(code), kind, "{code}");
        }
    }
}
