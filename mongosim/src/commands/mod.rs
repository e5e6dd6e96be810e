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
use crate::store::fields::encode;
use bson::{doc, Bson, Document, Timestamp};
use std::sync::Arc;

/// Per-connection facts commands may need.
#[derive(Debug, Default)]
pub(crate) struct ConnState {
    pub id: i64,
    pub app_name: Option<String>,
    pub auth: crate::auth::ConnAuth,
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

/// Appends `operationTime` and a `$clusterTime` with a zero signature.
fn append_envelope(d: &mut RawDoc, time: Timestamp) {
    d.timestamp("operationTime", time);
    let at = d.open("$clusterTime");
    d.timestamp("clusterTime", time);
    let sig = d.open("signature");
    d.binary("hash", 0, &[0u8; 20]);
    d.i64("keyId", 0);
    d.close(sig);
    d.close(at);
}

fn finish(shared: &Shared, result: Result<Body, CommandError>) -> Vec<u8> {
    let time = shared.lock().clock.last();
    let mut out = match result {
        Ok(Body::Doc(d)) => {
            let ok = !d.contains_key("ok");
            let mut out = RawDoc::reopen(encode(&d));
            if ok {
                out.f64("ok", 1.0);
            }
            out
        }
        Ok(Body::Raw(bytes)) => {
            let mut out = RawDoc::reopen(bytes);
            out.f64("ok", 1.0);
            out
        }
        Err(e) => RawDoc::reopen(encode(&e.to_doc())),
    };
    append_envelope(&mut out, time);
    out.finish()
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
    if let Err(e) = crate::auth::check(&shared.users, &conn.auth, &name) {
        return Outcome::Reply(finish(shared, Err(e)));
    }
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
            if let Some(r) = crate::auth::command(&shared.users, &mut conn.auth, name, &db, &body) {
                return r.map(Body::Doc);
            }
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
