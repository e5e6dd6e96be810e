//! Cursors: first batches for find / aggregate / listings, getMore (handing change-stream cursors
//! to the change-stream module), and killCursors. Cursor ids are BSON Int64, 0 when exhausted.

use super::{changestream, Body};
use crate::error::CommandError;
use crate::rawdoc::RawDoc;
use crate::state::{Cursor, FindCursor, Inner, Shared};
use crate::store::value::as_i64;
use bson::{doc, Bson, Document};
use std::collections::VecDeque;

/// Default first batch size, as real servers use.
const DEFAULT_FIRST_BATCH: usize = 101;
/// Keep batches comfortably under the 16 MiB document limit.
pub(crate) const MAX_BATCH_BYTES: usize = 8 * 1024 * 1024;

/// Serializes a cursor reply `{cursor: {<key>: [...], id, ns, postBatchResumeToken?}}`.
pub(crate) fn cursor_reply(
    key: &str,
    id: i64,
    ns: &str,
    docs: &mut dyn Iterator<Item = Vec<u8>>,
    pbrt: Option<&Document>,
) -> Vec<u8> {
    let mut cursor = RawDoc::with_capacity(4096);
    let mut arr = cursor.array(key);
    for d in docs {
        arr.push(&d);
    }
    arr.finish();
    cursor.i64("id", id);
    cursor.str("ns", ns);
    if let Some(t) = pbrt {
        cursor.doc("postBatchResumeToken", t);
    }
    let cursor = cursor.finish();
    let mut top = RawDoc::with_capacity(cursor.len() + 16);
    top.raw_doc("cursor", &cursor);
    top.finish()
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

/// Builds a first batch and registers a cursor for the rest.
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
            Cursor::Find(FindCursor {
                ns: ns.clone(),
                docs,
            }),
        );
        id
    };
    Body::Raw(cursor_reply(
        "firstBatch",
        id,
        &ns,
        &mut first.into_iter(),
        None,
    ))
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
        Some(Cursor::Find(mut c)) => {
            let next = take_batch(&mut c.docs, batch.unwrap_or(usize::MAX));
            let ns = c.ns.clone();
            let new_id = if c.docs.is_empty() {
                0
            } else {
                shared.lock().cursors.insert(id, Cursor::Find(c));
                id
            };
            Ok(Body::Raw(cursor_reply(
                "nextBatch",
                new_id,
                &ns,
                &mut next.into_iter(),
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
