//! Change streams: opening (`aggregate` with `$changeStream` first: collection, database or cluster
//! scope; resumeAfter / startAfter / startAtOperationTime; fullDocument and
//! fullDocumentBeforeChange; follow-on per-document stages), scanning the history from the
//! cursor's own position, invalidation, postBatchResumeToken, and awaiting getMore.
//!
//! Fan-out is cheap: an event is serialized once, when it enters the history; a watcher's batch is
//! built by copying those bytes (plus shared document bytes for `fullDocument` and images) straight
//! into its reply. Follow-on `$match` stages are evaluated on the few top-level fields they read;
//! only other stages decode the whole event.

use super::cursors::{close_cursor, MAX_BATCH_BYTES};
use super::Body;
use crate::error::CommandError;
use crate::oplog::{Entry, EntryKind};
use crate::pipeline::{self, Stage};
use crate::rawdoc::{extend_document, ArrayWriter, RawDoc};
use crate::state::{Cursor, Inner, Shared};
use crate::store::fields::{decode, encode, FieldSet};
use crate::store::matcher;
use crate::store::value::as_i64;
use crate::token::{Token, TokenKind};
use bson::{doc, Bson, Document};
use std::time::Duration;
use tokio::time::Instant;

/// Which namespaces a stream watches.
#[derive(Debug, Clone)]
enum Scope {
    Coll { db: String, coll: String },
    Db(String),
    Cluster,
}

/// fullDocument / fullDocumentBeforeChange modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Image {
    Off,
    Lookup,
    WhenAvailable,
    Required,
}

/// An open change-stream cursor; it keeps its own position in the history.
#[derive(Debug)]
pub(crate) struct StreamCursor {
    id: i64,
    ns: String,
    scope: Scope,
    next_seq: u64,
    /// startAtOperationTime: entries older than this are skipped.
    min_time: Option<u64>,
    full: Image,
    before: Image,
    stages: Vec<Stage>,
    /// Every follow-on stage is a `$match`: filter on extracted fields, never decode the event.
    match_only: bool,
    /// The top-level event fields the `$match` stages read.
    match_fields: FieldSet,
}

/// Default getMore batch cap when the client gives none.
const DEFAULT_BATCH: usize = 10_000;
/// Entries examined per scan before the lock is released.
const SCAN_LIMIT: usize = 50_000;
/// Code returned when a `required` pre/post image is missing.
const IMAGE_MISSING: i32 = 280;
/// Await time when getMore has no maxTimeMS.
const DEFAULT_AWAIT_MS: u64 = 1000;

/// True when an aggregate's first stage is `$changeStream`.
pub(crate) fn is_change_stream(body: &Document) -> bool {
    body.get_array("pipeline")
        .ok()
        .and_then(|p| p.first())
        .and_then(Bson::as_document)
        .is_some_and(|d| d.contains_key("$changeStream"))
}

fn image_mode(v: Option<&Bson>, lookup_ok: bool) -> Result<Image, CommandError> {
    match v.and_then(Bson::as_str) {
        None | Some("default") | Some("off") => Ok(Image::Off),
        Some("updateLookup") if lookup_ok => Ok(Image::Lookup),
        Some("whenAvailable") => Ok(Image::WhenAvailable),
        Some("required") => Ok(Image::Required),
        Some(other) => Err(CommandError::bad_value(format!(
            "unsupported image mode '{other}'"
        ))),
    }
}

fn history_lost() -> CommandError {
    CommandError::new(286, "Resume of change stream was not possible, as the resume point may no longer be in the oplog.")
        .with_label("NonResumableChangeStreamError")
}

fn decode_token(v: &Bson) -> Result<Token, CommandError> {
    v.as_document()
        .and_then(Token::from_doc)
        .ok_or_else(|| CommandError::new(260, "resume token was not minted by this server"))
}

/// Opens a change stream.
pub(crate) fn open(shared: &Shared, body: &Document) -> Result<Body, CommandError> {
    let db = body.get_str("$db").unwrap_or("admin").to_owned();
    let stages = body
        .get_array("pipeline")
        .map_err(|_| CommandError::type_mismatch("aggregate needs a pipeline"))?;
    let opts = stages
        .first()
        .and_then(Bson::as_document)
        .and_then(|d| d.get_document("$changeStream").ok())
        .cloned()
        .unwrap_or_default();
    let mut follow = Vec::new();
    for s in &stages[1..] {
        let Some(d) = s.as_document() else {
            return Err(CommandError::type_mismatch(
                "pipeline stages must be objects",
            ));
        };
        if d.contains_key("$changeStream") {
            return Err(CommandError::new(
                40602,
                "$changeStream is only valid as the first stage in a pipeline",
            ));
        }
        let stage = pipeline::parse_stage(d)?;
        if !stage.per_document() {
            return Err(CommandError::new(
                40324,
                format!("Stage not supported in a change stream: {d}"),
            ));
        }
        follow.push(stage);
    }
    let (scope, ns) = match body.get("aggregate") {
        Some(Bson::String(coll)) => (
            Scope::Coll {
                db: db.clone(),
                coll: coll.clone(),
            },
            format!("{db}.{coll}"),
        ),
        _ if opts.get_bool("allChangesForCluster").unwrap_or(false) => {
            if db != "admin" {
                return Err(CommandError::new(
                    73,
                    "allChangesForCluster requires the admin database",
                ));
            }
            (Scope::Cluster, "admin.$cmd.aggregate".to_owned())
        }
        _ => (Scope::Db(db.clone()), format!("{db}.$cmd.aggregate")),
    };
    let full = image_mode(opts.get("fullDocument"), true)?;
    let before = image_mode(opts.get("fullDocumentBeforeChange"), false)?;
    let starts = ["resumeAfter", "startAfter", "startAtOperationTime"]
        .iter()
        .filter(|k| opts.contains_key(**k))
        .count();
    if starts > 1 {
        return Err(CommandError::new(
            40674,
            "Only one type of resume option is allowed",
        ));
    }
    let batch = body
        .get_document("cursor")
        .ok()
        .and_then(|c| c.get("batchSize"))
        .and_then(as_i64)
        .map(|b| b.max(0) as usize);
    let mut inner = shared.lock();
    let next_seq = if let Some(t) = opts.get("resumeAfter") {
        let tok = decode_token(t)?;
        if tok.kind == TokenKind::Invalidate {
            return Err(CommandError::new(
                260,
                "cannot resume a stream after an invalidate event; use startAfter",
            ));
        }
        resume_seq(&inner, &tok)?
    } else if let Some(t) = opts.get("startAfter") {
        resume_seq(&inner, &decode_token(t)?)?
    } else if let Some(ts) = opts.get("startAtOperationTime") {
        let Bson::Timestamp(ts) = ts else {
            return Err(CommandError::type_mismatch(
                "startAtOperationTime must be a Timestamp",
            ));
        };
        if inner.history.lost_below() > 0
            && inner
                .history
                .oldest_time()
                .is_some_and(|o| crate::clock::ts_key(o) > crate::clock::ts_key(*ts))
        {
            return Err(history_lost());
        }
        inner.history.seq_at_time(*ts)
    } else {
        inner.clock.tick();
        inner.history.next_seq()
    };
    let id = inner.new_cursor_id();
    let min_time = match opts.get("startAtOperationTime") {
        Some(Bson::Timestamp(ts)) => Some(crate::clock::ts_key(*ts)),
        _ => None,
    };
    let match_only = follow.iter().all(|s| matches!(s, Stage::Match(_)));
    let mut match_fields = FieldSet::default();
    for stage in &follow {
        if let Stage::Match(f) = stage {
            match_fields.add_filter(f);
        }
    }
    let cursor = Box::new(StreamCursor {
        id,
        ns,
        scope,
        next_seq,
        min_time,
        full,
        before,
        stages: follow,
        match_only,
        match_fields,
    });
    let batch = Batch::scan(&inner, cursor, batch.unwrap_or(101), "firstBatch")?;
    Ok(batch.finish(&mut inner))
}

fn resume_seq(inner: &Inner, tok: &Token) -> Result<u64, CommandError> {
    if tok.seq < inner.history.lost_below() {
        return Err(history_lost());
    }
    Ok((tok.seq + 1).min(inner.history.next_seq()))
}

fn visible(scope: &Scope, e: &Entry) -> bool {
    match scope {
        _ if e.kind == EntryKind::Noop => false,
        Scope::Coll { db, coll } => {
            e.db == *db && e.coll == *coll && e.kind != EntryKind::DropDatabase
        }
        Scope::Db(db) => e.db == *db,
        Scope::Cluster => !matches!(e.db.as_str(), "admin" | "config" | "local"),
    }
}

fn invalidates(scope: &Scope, e: &Entry) -> bool {
    match scope {
        Scope::Coll { .. } => matches!(e.kind, EntryKind::Drop | EntryKind::Rename { .. }),
        Scope::Db(_) => e.kind == EntryKind::DropDatabase,
        Scope::Cluster => false,
    }
}

fn image_missing(what: &str) -> CommandError {
    CommandError::new(
        IMAGE_MISSING,
        format!("{what} was requested as 'required' but is not available (enable changeStreamPreAndPostImages)"),
    )
}

/// Writes the event an entry shows this cursor into `out`; `false` when a stage filtered it out.
fn render(
    inner: &Inner,
    c: &StreamCursor,
    e: &Entry,
    out: &mut Vec<u8>,
) -> Result<bool, CommandError> {
    let mut extras: Vec<(&str, Option<&[u8]>)> = Vec::with_capacity(2);
    if let Some(full) = &e.full {
        extras.push(("fullDocument", Some(full)));
    } else if e.kind == EntryKind::Update && c.full != Image::Off {
        let value: Option<&[u8]> = match c.full {
            Image::Lookup => e.id.as_ref().and_then(|id| {
                inner
                    .store
                    .coll(&e.db, &e.coll)
                    .and_then(|col| col.get_by_id(id))
                    .map(|raw| &raw[..])
            }),
            _ => e.post.as_deref(),
        };
        if value.is_none() && c.full == Image::Required {
            return Err(image_missing("fullDocument"));
        }
        extras.push(("fullDocument", value));
    }
    let wants_before = c.before != Image::Off
        && matches!(
            e.kind,
            EntryKind::Update | EntryKind::Replace | EntryKind::Delete
        );
    if wants_before {
        if e.pre.is_none() && c.before == Image::Required {
            return Err(image_missing("fullDocumentBeforeChange"));
        }
        extras.push(("fullDocumentBeforeChange", e.pre.as_deref()));
    }
    extend_document(out, &e.event, &extras);
    if c.stages.is_empty() {
        return Ok(true);
    }
    if c.match_only {
        let fields = c.match_fields.extract(out)?;
        for stage in &c.stages {
            if let Stage::Match(f) = stage {
                if !matcher::matches(&fields, f)? {
                    return Ok(false);
                }
            }
        }
        return Ok(true);
    }
    let d = decode(out)?;
    let token = d.get("_id").cloned();
    let mut cur = Some(d);
    for stage in &c.stages {
        cur = match cur {
            Some(doc) => pipeline::apply_doc_stage(stage, doc)?,
            None => break,
        };
    }
    match cur {
        None => Ok(false),
        Some(shown) => {
            if shown.get("_id") != token.as_ref() {
                return Err(CommandError::new(280, "Encountered an event whose _id field, which contains the resume token, was modified by the pipeline.")
                    .with_label("NonResumableChangeStreamError"));
            }
            *out = encode(&shown);
            Ok(true)
        }
    }
}

/// A reply batch being built for one cursor.
struct Batch {
    cursor: Box<StreamCursor>,
    reply: RawDoc,
    /// Where the `cursor` sub-document starts.
    at: usize,
    count: usize,
    pbrt: Token,
    closed: bool,
    more: bool,
}

impl Batch {
    /// Scans the history from the cursor's position into a new reply (up to `max` events).
    fn scan(
        inner: &Inner,
        mut c: Box<StreamCursor>,
        max: usize,
        key: &str,
    ) -> Result<Batch, CommandError> {
        if c.next_seq < inner.history.lost_below() {
            return Err(history_lost());
        }
        let mut reply = RawDoc::with_capacity(16 * 1024);
        let at = reply.open("cursor");
        let mut arr = reply.array(key);
        let mut scratch = Vec::with_capacity(1024);
        let (count, pbrt, closed, more) = scan_into(inner, &mut c, max, &mut arr, &mut scratch)?;
        arr.finish();
        Ok(Batch {
            cursor: c,
            reply,
            at,
            count,
            pbrt,
            closed,
            more,
        })
    }

    /// Registers the cursor (unless closed) and serializes the reply.
    fn finish(self, inner: &mut Inner) -> Body {
        let id = if self.closed { 0 } else { self.cursor.id };
        let ns = self.cursor.ns.clone();
        if !self.closed {
            inner
                .cursors
                .insert(self.cursor.id, Cursor::Stream(self.cursor));
        }
        Body::Raw(close_cursor(
            self.reply,
            self.at,
            id,
            &ns,
            Some(&self.pbrt.to_doc()),
        ))
    }
}

/// Scans into `arr`; returns (events written, postBatchResumeToken, closed, more to scan).
fn scan_into(
    inner: &Inner,
    c: &mut StreamCursor,
    max: usize,
    arr: &mut ArrayWriter<'_>,
    scratch: &mut Vec<u8>,
) -> Result<(usize, Token, bool, bool), CommandError> {
    let mut count = 0usize;
    let mut bytes = 0usize;
    let mut last_delivered: Option<Token> = None;
    let mut last_scanned: Option<Token> = None;
    let mut closed = false;
    let mut full = false;
    let mut more = false;
    for (examined, e) in inner.history.entries_from(c.next_seq).enumerate() {
        if count >= max || bytes >= MAX_BATCH_BYTES {
            full = true;
            break;
        }
        if examined >= SCAN_LIMIT {
            more = true;
            break;
        }
        c.next_seq = e.seq + 1;
        last_scanned = Some(Token {
            kind: TokenKind::HighWater,
            op_index: u32::MAX,
            ..e.token(TokenKind::HighWater)
        });
        if !visible(&c.scope, e) || c.min_time.is_some_and(|t| crate::clock::ts_key(e.time) < t) {
            continue;
        }
        if render(inner, c, e, scratch)? {
            bytes += scratch.len();
            arr.push(scratch);
            count += 1;
            last_delivered = Some(e.token(TokenKind::Event));
        }
        if invalidates(&c.scope, e) {
            let tok = e.token(TokenKind::Invalidate);
            let event = encode(
                &doc! { "_id": tok.to_doc(), "operationType": "invalidate", "clusterTime": e.time, "wallTime": e.wall },
            );
            arr.push(&event);
            count += 1;
            last_delivered = Some(tok);
            closed = true;
            break;
        }
    }
    let pbrt = if closed || full {
        last_delivered.unwrap_or_else(|| high_water(inner))
    } else if more {
        last_scanned.unwrap_or_else(|| high_water(inner))
    } else {
        high_water(inner)
    };
    Ok((count, pbrt, closed, more))
}

/// A high-water mark at the end of the history, stamped with the current wall-clock cluster time.
fn high_water(inner: &Inner) -> Token {
    Token {
        time: inner.clock.peek_now(),
        seq: inner.history.last_seq(),
        op_index: u32::MAX,
        kind: TokenKind::HighWater,
    }
}

/// getMore on a change-stream cursor: returns at once when events exist, otherwise waits up to
/// `maxTimeMS` for one, then answers an empty batch with a newer postBatchResumeToken.
pub(crate) async fn get_more(
    shared: &Shared,
    mut cursor: Box<StreamCursor>,
    batch: Option<usize>,
    max_time: Option<u64>,
) -> Result<Body, CommandError> {
    let deadline = Instant::now() + Duration::from_millis(max_time.unwrap_or(DEFAULT_AWAIT_MS));
    let max = batch.unwrap_or(DEFAULT_BATCH);
    loop {
        let mut rx = shared.events.subscribe();
        let more = {
            let mut inner = shared.lock();
            let result = Batch::scan(&inner, cursor, max, "nextBatch")?;
            if result.count > 0 || result.closed || Instant::now() >= deadline {
                return Ok(result.finish(&mut inner));
            }
            let more = result.more;
            cursor = result.cursor;
            more
        };
        if more {
            tokio::task::yield_now().await;
            continue;
        }
        if tokio::time::timeout_at(deadline, rx.changed())
            .await
            .is_err()
        {
            let mut inner = shared.lock();
            let result = Batch::scan(&inner, cursor, max, "nextBatch")?;
            return Ok(result.finish(&mut inner));
        }
    }
}
