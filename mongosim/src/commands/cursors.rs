//! Cursors: first batches and getMore for find (a resumable query over the live collection, so a
//! cursor never copies its result set), for small precomputed results (listings, aggregates), and
//! for change streams (handed to the change-stream module); killCursors. Cursor ids are BSON
//! Int64, 0 when exhausted.

use super::{changestream, Body};
use crate::error::CommandError;
use crate::pipeline;
use crate::rawdoc::RawDoc;
use crate::state::{Cursor, DocsCursor, Inner, Shared};
use crate::store::fields::{decode, encode};
use crate::store::query::Query;
use crate::store::value::as_i64;
use crate::store::{Raw, Store};
use bson::{doc, Bson, Document};
use std::collections::VecDeque;

/// Default first batch size, as real servers use.
const DEFAULT_FIRST_BATCH: usize = 101;
/// Keep batches comfortably under the 16 MiB document limit.
pub(crate) const MAX_BATCH_BYTES: usize = 8 * 1024 * 1024;

/// One document of a batch: shared stored bytes or a freshly built document.
pub(crate) enum Item {
    Shared(Raw),
    Owned(Vec<u8>),
}

impl AsRef<[u8]> for Item {
    fn as_ref(&self) -> &[u8] {
        match self {
            Item::Shared(r) => r,
            Item::Owned(v) => v,
        }
    }
}

/// Serializes a cursor reply `{cursor: {<key>: [...], id, ns, postBatchResumeToken?}}`.
pub(crate) fn cursor_reply<D: AsRef<[u8]>>(
    key: &str,
    id: i64,
    ns: &str,
    docs: impl IntoIterator<Item = D>,
    pbrt: Option<&Document>,
) -> Vec<u8> {
    let mut reply = RawDoc::with_capacity(4096);
    let at = reply.open("cursor");
    let mut arr = reply.array(key);
    for d in docs {
        arr.push(d.as_ref());
    }
    arr.finish();
    close_cursor(reply, at, id, ns, pbrt)
}

/// Finishes a cursor reply whose batch array is already written: id, ns and the optional
/// postBatchResumeToken, then closes the `cursor` document opened at `at`.
pub(crate) fn close_cursor(
    mut reply: RawDoc,
    at: usize,
    id: i64,
    ns: &str,
    pbrt: Option<&Document>,
) -> Vec<u8> {
    reply.i64("id", id);
    reply.str("ns", ns);
    if let Some(t) = pbrt {
        reply.doc("postBatchResumeToken", t);
    }
    reply.close(at);
    reply.finish()
}

fn take_batch(docs: &mut VecDeque<Vec<u8>>, max: usize) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut bytes = 0;
    while out.len() < max && bytes < MAX_BATCH_BYTES {
        match docs.pop_front() {
            Some(d) => {
                bytes += d.len();
                out.push(d);
            }
            None => break,
        }
    }
    out
}

/// Builds a first batch from precomputed documents and registers a cursor for the rest.
pub(crate) fn first_batch(
    inner: &mut Inner,
    ns: String,
    mut docs: VecDeque<Vec<u8>>,
    batch: Option<usize>,
    single: bool,
) -> Body {
    let max = batch.unwrap_or(DEFAULT_FIRST_BATCH);
    let first = take_batch(&mut docs, max);
    let id = if docs.is_empty() || single {
        0
    } else {
        let id = inner.new_cursor_id();
        inner.cursors.insert(
            id,
            Cursor::Docs(DocsCursor {
                ns: ns.clone(),
                docs,
            }),
        );
        id
    };
    Body::Raw(cursor_reply("firstBatch", id, &ns, first, None))
}

/// A find cursor: a query positioned in one collection, with its projection.
#[derive(Debug)]
pub(crate) struct QueryCursor {
    pub ns: String,
    db: String,
    coll: String,
    uuid: Option<uuid::Uuid>,
    query: Query,
    projection: Option<Document>,
}

impl QueryCursor {
    /// A cursor over `db.coll` (which may not exist yet: then it is empty).
    pub(crate) fn new(
        store: &Store,
        db: &str,
        coll: &str,
        query: Query,
        projection: Option<Document>,
    ) -> QueryCursor {
        QueryCursor {
            ns: format!("{db}.{coll}"),
            db: db.to_owned(),
            coll: coll.to_owned(),
            uuid: store.coll(db, coll).map(|c| c.uuid),
            query,
            projection,
        }
    }

    /// Up to `max` documents (and about [`MAX_BATCH_BYTES`]); the flag tells whether more follow.
    pub(crate) fn fill(
        &mut self,
        store: &Store,
        max: usize,
    ) -> Result<(Vec<Item>, bool), CommandError> {
        let Some(c) = store.coll(&self.db, &self.coll) else {
            return Ok((Vec::new(), false));
        };
        if self.uuid != Some(c.uuid) {
            return Err(CommandError::new(
                175,
                format!("collection dropped during the query on {}", self.ns),
            ));
        }
        let mut out = Vec::new();
        let mut bytes = 0;
        while out.len() < max && bytes < MAX_BATCH_BYTES {
            let Some((_, raw)) = self.query.next(c)? else {
                return Ok((out, false));
            };
            let item = match &self.projection {
                Some(p) => Item::Owned(encode(&pipeline::project(&decode(raw)?, p)?)),
                None => Item::Shared(raw.clone()),
            };
            bytes += item.as_ref().len();
            out.push(item);
        }
        let more = self.query.has_more(c)?;
        Ok((out, more))
    }
}

/// Runs a find: the first batch now, a cursor for the rest.
pub(crate) fn find_batch(
    inner: &mut Inner,
    mut cursor: QueryCursor,
    batch: Option<usize>,
    single: bool,
) -> Result<Body, CommandError> {
    let (first, more) = cursor.fill(&inner.store, batch.unwrap_or(DEFAULT_FIRST_BATCH))?;
    let ns = cursor.ns.clone();
    let id = if more && !single {
        let id = inner.new_cursor_id();
        inner.cursors.insert(id, Cursor::Query(Box::new(cursor)));
        id
    } else {
        0
    };
    Ok(Body::Raw(cursor_reply("firstBatch", id, &ns, first, None)))
}

/// `getMore`.
pub(crate) async fn get_more(shared: &Shared, body: &Document) -> Result<Body, CommandError> {
    let id = body
        .get("getMore")
        .and_then(as_i64)
        .ok_or_else(|| CommandError::type_mismatch("getMore needs a cursor id"))?;
    let batch = body
        .get("batchSize")
        .and_then(as_i64)
        .filter(|b| *b > 0)
        .map(|b| b as usize);
    let max_time = body
        .get("maxTimeMS")
        .and_then(as_i64)
        .filter(|m| *m > 0)
        .map(|m| m as u64);
    let cursor = shared.lock().cursors.remove(&id);
    match cursor {
        None => Err(CommandError::new(43, format!("cursor id {id} not found"))),
        Some(Cursor::Docs(mut c)) => {
            let next = take_batch(&mut c.docs, batch.unwrap_or(usize::MAX));
            let ns = c.ns.clone();
            let new_id = if c.docs.is_empty() {
                0
            } else {
                shared.lock().cursors.insert(id, Cursor::Docs(c));
                id
            };
            Ok(Body::Raw(cursor_reply(
                "nextBatch",
                new_id,
                &ns,
                next,
                None,
            )))
        }
        Some(Cursor::Query(mut c)) => {
            let mut inner = shared.lock();
            let (next, more) = c.fill(&inner.store, batch.unwrap_or(usize::MAX))?;
            let ns = c.ns.clone();
            let new_id = if more {
                inner.cursors.insert(id, Cursor::Query(c));
                id
            } else {
                0
            };
            Ok(Body::Raw(cursor_reply(
                "nextBatch",
                new_id,
                &ns,
                next,
                None,
            )))
        }
        Some(Cursor::Stream(c)) => changestream::get_more(shared, c, batch, max_time).await,
    }
}

/// `killCursors`.
pub(crate) fn kill_cursors(inner: &mut Inner, body: &Document) -> Result<Body, CommandError> {
    let ids = body
        .get_array("cursors")
        .map_err(|_| CommandError::type_mismatch("killCursors needs 'cursors'"))?;
    let (mut killed, mut missing) = (Vec::new(), Vec::new());
    for id in ids.iter().filter_map(as_i64) {
        if inner.cursors.remove(&id).is_some() {
            killed.push(Bson::Int64(id));
        } else {
            missing.push(Bson::Int64(id));
        }
    }
    Ok(Body::Doc(doc! {
        "cursorsKilled": killed,
        "cursorsNotFound": missing,
        "cursorsAlive": [],
        "cursorsUnknown": [],
    }))
}
