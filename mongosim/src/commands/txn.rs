//! Synchronous command path under the simulator lock: decides between plain execution,
//! retryable-write dedupe (same lsid + txnNumber returns the cached reply) and transactions
//! (changes buffered per session and published on commit with one shared cluster time), then
//! publishes the resulting changes to the history and wakes change-stream waiters.

use super::{admin, crud, is_write, Body};
use crate::error::CommandError;
use crate::oplog::TxnStamp;
use crate::session::{Txn, TxnState};
use crate::state::{Inner, Shared};
use crate::store::value::as_i64;
use crate::store::write::{self, Change};
use bson::Document;

fn not_primary() -> CommandError {
    CommandError::new(10107, "not primary").with_label("RetryableWriteError")
}

fn no_such_txn(n: i64) -> CommandError {
    CommandError::new(
        251,
        format!("Transaction {n} has been aborted or does not exist"),
    )
    .with_label("TransientTransactionError")
}

fn publish(shared: &Shared, inner: &mut Inner, changes: Vec<Change>, stamp: Option<&TxnStamp>) {
    if changes.is_empty() {
        return;
    }
    let Inner { history, clock, .. } = inner;
    history.publish(clock, changes, stamp);
    shared.notify(inner.history.last_seq());
}

fn dispatch(
    inner: &mut Inner,
    name: &str,
    db: &str,
    body: Document,
    keep_pre: bool,
) -> Result<(Body, Vec<Change>), CommandError> {
    match name {
        "insert" => crud::insert(inner, db, body, keep_pre),
        "update" => crud::update(inner, db, &body, keep_pre),
        "delete" => crud::delete(inner, db, &body, keep_pre),
        "findAndModify" | "findandmodify" => crud::find_and_modify(inner, db, &body, keep_pre),
        "find" => crud::find(inner, db, &body).map(|b| (b, Vec::new())),
        "count" => crud::count(inner, db, &body).map(|b| (b, Vec::new())),
        "distinct" => crud::distinct(inner, db, &body).map(|b| (b, Vec::new())),
        "aggregate" => crud::aggregate(inner, db, &body).map(|b| (b, Vec::new())),
        "killCursors" => super::cursors::kill_cursors(inner, &body).map(|b| (b, Vec::new())),
        _ => admin::run(inner, name, db, &body),
    }
}

/// Runs a command that completes without waiting.
pub(crate) fn run_sync(
    shared: &Shared,
    name: &str,
    db: &str,
    body: Document,
) -> Result<Body, CommandError> {
    let mut inner = shared.lock();
    let lsid = body.get_document("lsid").ok().cloned();
    let txn_number = body.get("txnNumber").and_then(as_i64);
    match name {
        "commitTransaction" => return commit(shared, &mut inner, lsid, txn_number),
        "abortTransaction" => return abort(&mut inner, lsid, txn_number),
        _ => {}
    }
    if body.get_bool("autocommit") == Ok(false) {
        let (Some(lsid), Some(n)) = (lsid, txn_number) else {
            return Err(CommandError::new(
                72,
                "autocommit:false needs lsid and txnNumber",
            ));
        };
        let start = body.get_bool("startTransaction") == Ok(true);
        let session = inner.sessions.get_mut(&lsid);
        if start {
            if session.txn.as_ref().is_some_and(|t| t.number > n) {
                return Err(CommandError::new(
                    225,
                    format!("txnNumber {n} is older than the session's"),
                ));
            }
            session.txn = Some(Txn {
                number: n,
                state: TxnState::Active,
                changes: Vec::new(),
            });
        } else if !session
            .txn
            .as_ref()
            .is_some_and(|t| t.number == n && t.state == TxnState::Active)
        {
            return Err(no_such_txn(n));
        }
        if is_write(name) && !inner.primary {
            return Err(
                CommandError::new(10107, "not primary").with_label("TransientTransactionError")
            );
        }
        let (out, changes) = dispatch(&mut inner, name, db, body, true)?;
        if let Some(t) = inner.sessions.get_mut(&lsid).txn.as_mut() {
            t.changes.extend(changes);
        }
        return Ok(out);
    }
    if is_write(name) {
        if !inner.primary {
            return Err(not_primary());
        }
        if let (Some(lsid), Some(n)) = (&lsid, txn_number) {
            if let Some((last, reply)) = &inner.sessions.get_mut(lsid).last_retry {
                if *last == n {
                    return Ok(Body::Doc(reply.clone()));
                }
                if *last > n {
                    return Err(CommandError::new(
                        225,
                        format!("txnNumber {n} is older than {last}"),
                    ));
                }
            }
        }
        let (out, changes) = dispatch(&mut inner, name, db, body, false)?;
        publish(shared, &mut inner, changes, None);
        if let (Some(lsid), Some(n), Body::Doc(reply)) = (&lsid, txn_number, &out) {
            inner.sessions.get_mut(lsid).last_retry = Some((n, reply.clone()));
        }
        return Ok(out);
    }
    let (out, changes) = dispatch(&mut inner, name, db, body, false)?;
    publish(shared, &mut inner, changes, None);
    Ok(out)
}

fn commit(
    shared: &Shared,
    inner: &mut Inner,
    lsid: Option<Document>,
    n: Option<i64>,
) -> Result<Body, CommandError> {
    let (Some(lsid), Some(n)) = (lsid, n) else {
        return Err(CommandError::new(
            72,
            "commitTransaction needs lsid and txnNumber",
        ));
    };
    let session = inner.sessions.get_mut(&lsid);
    let stamp = TxnStamp {
        lsid: session.lsid.clone(),
        txn_number: n,
    };
    let changes = match session.txn.as_mut() {
        Some(t) if t.number == n && t.state == TxnState::Active => {
            t.state = TxnState::Committed;
            std::mem::take(&mut t.changes)
        }
        Some(t) if t.number == n && t.state == TxnState::Committed => Vec::new(),
        _ => return Err(no_such_txn(n)),
    };
    publish(shared, inner, changes, Some(&stamp));
    Ok(Body::Doc(Document::new()))
}

fn abort(inner: &mut Inner, lsid: Option<Document>, n: Option<i64>) -> Result<Body, CommandError> {
    let (Some(lsid), Some(n)) = (lsid, n) else {
        return Err(CommandError::new(
            72,
            "abortTransaction needs lsid and txnNumber",
        ));
    };
    let changes = match inner.sessions.get_mut(&lsid).txn.as_mut() {
        Some(t) if t.number == n && t.state == TxnState::Active => {
            t.state = TxnState::Aborted;
            std::mem::take(&mut t.changes)
        }
        _ => return Err(no_such_txn(n)),
    };
    for change in changes.iter().rev() {
        write::undo(&mut inner.store, change);
    }
    Ok(Body::Doc(Document::new()))
}
