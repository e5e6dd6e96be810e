//! Logical sessions: the retryable-write cache (last txnNumber and its reply per lsid) and
//! multi-document transactions (changes applied immediately but published on commit as one batch
//! sharing a cluster time, and undone on abort).

use crate::store::write::Change;
use bson::{Bson, Document};
use std::collections::HashMap;

/// Transaction lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TxnState {
    Active,
    Committed,
    Aborted,
}

/// One transaction's buffered changes.
#[derive(Debug)]
pub(crate) struct Txn {
    pub number: i64,
    pub state: TxnState,
    pub changes: Vec<Change>,
}

/// Per-session state.
#[derive(Debug, Default)]
pub(crate) struct SessionState {
    pub lsid: Document,
    pub last_retry: Option<(i64, Document)>,
    pub txn: Option<Txn>,
}

/// All sessions by lsid bytes.
#[derive(Debug, Default)]
pub(crate) struct Sessions {
    map: HashMap<Vec<u8>, SessionState>,
}

/// The key of an lsid document (`{id: UUID}`).
pub(crate) fn lsid_key(lsid: &Document) -> Vec<u8> {
    match lsid.get("id") {
        Some(Bson::Binary(b)) => b.bytes.clone(),
        Some(other) => other.to_string().into_bytes(),
        None => Vec::new(),
    }
}

impl Sessions {
    pub(crate) fn get_mut(&mut self, lsid: &Document) -> &mut SessionState {
        let key = lsid_key(lsid);
        let s = self.map.entry(key).or_default();
        if s.lsid.is_empty() {
            s.lsid = lsid.clone();
        }
        s
    }

    pub(crate) fn end(&mut self, lsid: &Document) -> Option<SessionState> {
        self.map.remove(&lsid_key(lsid))
    }
}
