//! Command execution: the fail point, the session / transaction / retryable-write envelope,
//! routing to the command modules, and the reply envelope (`ok`, `operationTime`, signed-shape
//! `$clusterTime`) added to every reply.

pub(crate) mod admin;
pub(crate) mod changestream;
pub(crate) mod crud;
pub(crate) mod cursors;
pub(crate) mod hello;
pub(crate) mod txn;

use crate::error::{CommandError, RESUMABLE_CHANGE_STREAM_CODES, RETRYABLE_WRITE_CODES};
use crate::rawdoc::RawDoc;
use crate::state::{Cursor, Shared};
use bson::{doc, spec::BinarySubtype, Binary, Bson, Document, Timestamp};
use std::sync::Arc;

/// Per-connection facts commands may need.
#[derive(Debug, Default)]
pub(crate) struct ConnState {
    pub id: i64,
    pub app_name: Option<String>,
}

/// A successful reply body: a document, or pre-serialized bytes (cursor batches).
pub(crate) enum Body {
    Doc(Document),
    Raw(Vec<u8>),
}

/// What the connection should do after a command.
pub(crate) enum Outcome {
    Reply(Vec<u8>),
    Close,
}

/// Commands that write (subject to step-down, retryable-write dedupe and transactions).
pub(crate) fn is_write(name: &str) -> bool {
    matches!(
        name,
        "insert" | "update" | "delete" | "findAndModify" | "findandmodify"
    )
}

fn envelope(time: Timestamp) -> Document {
    doc! {
        "operationTime": time,
        "$clusterTime": {
            "clusterTime": time,
            "signature": {
                "hash": Binary { subtype: BinarySubtype::Generic, bytes: vec![0u8; 20] },
                "keyId": 0i64,
            }
        }
    }
}

fn finish(shared: &Shared, result: Result<Body, CommandError>) -> Vec<u8> {
    let time = shared.lock().clock.last();
    let env = envelope(time);
    match result {
        Ok(Body::Doc(mut d)) => {
            if !d.contains_key("ok") {
                d.insert("ok", 1.0);
            }
            d.extend(env);
            let mut out = Vec::new();
            // Writing an in-memory document into a Vec cannot fail.
            let _ = d.to_writer(&mut out);
            out
        }
        Ok(Body::Raw(bytes)) => {
            let mut out = RawDoc::with_capacity(bytes.len() + 128);
            out.extend(&bytes);
            let mut tail = doc! { "ok": 1.0 };
            tail.extend(env);
            let mut t = Vec::new();
            let _ = tail.to_writer(&mut t);
            out.extend(&t);
            out.finish()
        }
        Err(e) => {
            let mut d = e.to_doc();
            d.extend(env);
            let mut out = Vec::new();
            let _ = d.to_writer(&mut out);
            out
        }
    }
}

fn failpoint_error(
    shared: &Shared,
    name: &str,
    body: &Document,
    code: i32,
    labels: Option<Vec<String>>,
    msg: String,
) -> CommandError {
    let mut err = CommandError::new(code, msg);
    match labels {
        Some(l) => err.labels = l,
        None => {
            if name == "getMore" {
                let id = body
                    .get("getMore")
                    .and_then(crate::store::value::as_i64)
                    .unwrap_or(0);
                let stream = matches!(shared.lock().cursors.get(&id), Some(Cursor::Stream(_)));
                if stream && RESUMABLE_CHANGE_STREAM_CODES.contains(&code) {
                    err.labels.push("ResumableChangeStreamError".to_owned());
                }
            } else if is_write(name)
                && body.contains_key("txnNumber")
                && body.get_bool("autocommit").is_err()
                && RETRYABLE_WRITE_CODES.contains(&code)
            {
                err.labels.push("RetryableWriteError".to_owned());
            }
        }
    }
    err
}

/// Executes one command and returns the serialized reply (or asks to close the connection).
pub(crate) async fn execute(shared: &Arc<Shared>, conn: &mut ConnState, body: Document) -> Outcome {
    let name = body.keys().next().cloned().unwrap_or_default();
    let action = {
        let mut inner = shared.lock();
        match inner.failpoint.as_mut() {
            Some(fp) if name != "configureFailPoint" => {
                let (action, keep) = fp.check(&name, conn.app_name.as_deref());
                if !keep {
                    inner.failpoint = None;
                }
                action
            }
            _ => None,
        }
    };
    let mut after: Option<(bool, Option<Document>)> = None;
    if let Some(action) = action {
        after = Some((action.close_after, action.write_concern_error.clone()));
        if let Some(ms) = action.block_ms {
            tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
        }
        if action.close {
            return Outcome::Close;
        }
        if let Some((code, labels, msg)) = action.error {
            let err = failpoint_error(shared, &name, &body, code, labels, msg);
            return Outcome::Reply(finish(shared, Err(err)));
        }
    }
    let in_txn = body.get_bool("autocommit").is_ok();
    let mut result = route(shared, conn, &name, body).await;
    if let Some((close_after, wce)) = after {
        if close_after {
            return Outcome::Close;
        }
        if let (Some(wce), Ok(Body::Doc(reply))) = (wce, result.as_mut()) {
            let code = wce
                .get("code")
                .and_then(crate::store::value::as_i64)
                .unwrap_or(64) as i32;
            let mut w = doc! { "code": code, "codeName": crate::error::code_name(code), "errmsg": "Failing command via 'failCommand' failpoint" };
            w.extend(wce.clone());
            reply.insert("writeConcernError", w);
            if !in_txn && RETRYABLE_WRITE_CODES.contains(&code) && !wce.contains_key("errorLabels")
            {
                reply.insert(
                    "errorLabels",
                    vec![Bson::String("RetryableWriteError".to_owned())],
                );
            } else if let Ok(labels) = wce.get_array("errorLabels") {
                reply.insert("errorLabels", labels.clone());
            }
        }
    }
    Outcome::Reply(finish(shared, result))
}

async fn route(
    shared: &Arc<Shared>,
    conn: &mut ConnState,
    name: &str,
    body: Document,
) -> Result<Body, CommandError> {
    match name {
        "hello" | "isMaster" | "ismaster" => hello::hello(shared, conn, &body),
        "getMore" => cursors::get_more(shared, &body).await,
        "aggregate" if changestream::is_change_stream(&body) => changestream::open(shared, &body),
        _ => {
            let db = body.get_str("$db").unwrap_or("admin").to_owned();
            if let Some(r) = admin::control(shared, name, &body) {
                return r;
            }
            txn::run_sync(shared, name, &db, body)
        }
    }
}

/// Reads a namespace-style string argument (`{insert: "coll"}`).
pub(crate) fn coll_arg(body: &Document, name: &str) -> Result<String, CommandError> {
    match body.get(name) {
        Some(Bson::String(s)) if !s.is_empty() => Ok(s.clone()),
        _ => Err(CommandError::new(
            73,
            format!("{name} needs a collection name"),
        )),
    }
}
