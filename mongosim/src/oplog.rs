//! The change history ("oplog window"): applied changes become entries with a global sequence
//! number, a cluster time and a pre-serialized change event (built once, shared by all watchers).
//! An entry shares document bytes with the store instead of copying them: the event is kept
//! without its `fullDocument`, which is appended from the shared bytes when the event is sent, and
//! pre/post images are kept only for collections that enable them. The history is bounded by a
//! window of entries; positions older than the retained history are reported as lost. Lookup by
//! sequence number is O(1).

use crate::clock::{ts_key, ClusterClock};
use crate::rawdoc::RawDoc;
use crate::store::write::{Change, ChangeKind};
use crate::store::Raw;
use crate::token::{Token, TokenKind};
use bson::{doc, Bson, DateTime, Document, Timestamp};
use std::collections::VecDeque;

/// Entry classification used for scope filtering and invalidation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EntryKind {
    Insert,
    Update,
    Replace,
    Delete,
    Drop,
    Rename { to_db: String, to_coll: String },
    DropDatabase,
    Noop,
}

/// One history entry.
#[derive(Debug)]
pub(crate) struct Entry {
    pub seq: u64,
    pub time: Timestamp,
    pub wall: DateTime,
    pub op_index: u32,
    pub db: String,
    pub coll: String,
    pub kind: EntryKind,
    pub id: Option<Bson>,
    /// The serialized change event without `fullDocument` (and other lookup-dependent fields).
    pub event: Vec<u8>,
    /// The `fullDocument` of insert and replace events.
    pub full: Option<Raw>,
    /// Pre- and post-images (only for collections with `changeStreamPreAndPostImages`).
    pub pre: Option<Raw>,
    pub post: Option<Raw>,
}

impl Entry {
    pub(crate) fn token(&self, kind: TokenKind) -> Token {
        Token {
            time: self.time,
            seq: self.seq,
            op_index: self.op_index,
            kind,
        }
    }
}

/// Transaction identity stamped on events of a committed transaction.
pub(crate) struct TxnStamp {
    pub lsid: Document,
    pub txn_number: i64,
}

/// The bounded history.
#[derive(Debug)]
pub(crate) struct History {
    entries: VecDeque<Entry>,
    next_seq: u64,
    window: usize,
    /// Tokens with a sequence below this point are no longer resumable.
    lost_below: u64,
}

impl History {
    pub(crate) fn new(window: usize) -> History {
        History {
            entries: VecDeque::new(),
            next_seq: 1,
            window: window.max(1),
            lost_below: 0,
        }
    }

    /// The sequence number of the newest entry (0 before any).
    pub(crate) fn last_seq(&self) -> u64 {
        self.next_seq - 1
    }

    pub(crate) fn next_seq(&self) -> u64 {
        self.next_seq
    }

    pub(crate) fn lost_below(&self) -> u64 {
        self.lost_below
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Entries with sequence >= `seq`, oldest first.
    pub(crate) fn entries_from(&self, seq: u64) -> impl Iterator<Item = &Entry> {
        let start = match self.entries.front() {
            Some(f) if seq > f.seq => (seq - f.seq) as usize,
            _ => 0,
        };
        self.entries.range(start.min(self.entries.len())..)
    }

    /// Sequence number of the first entry with cluster time >= `ts` (or the next sequence).
    pub(crate) fn seq_at_time(&self, ts: Timestamp) -> u64 {
        let key = ts_key(ts);
        let idx = self.entries.partition_point(|e| ts_key(e.time) < key);
        self.entries
            .get(idx)
            .map(|e| e.seq)
            .unwrap_or(self.next_seq)
    }

    /// Cluster time of the oldest retained entry.
    pub(crate) fn oldest_time(&self) -> Option<Timestamp> {
        self.entries.front().map(|e| e.time)
    }

    fn push(&mut self, entry: Entry) {
        self.next_seq = entry.seq + 1;
        self.entries.push_back(entry);
        self.trim();
    }

    fn trim(&mut self) {
        while self.entries.len() > self.window {
            if let Some(old) = self.entries.pop_front() {
                self.lost_below = old.seq + 1;
            }
        }
    }

    /// Changes the window size (at least 1 entry is always kept).
    pub(crate) fn set_window(&mut self, window: usize) {
        self.window = window.max(1);
        self.trim();
    }

    /// Forgets all history: every earlier resume point becomes lost. A no-op entry keeps the
    /// history non-empty so that positions minted afterwards stay valid.
    pub(crate) fn truncate(&mut self, clock: &mut ClusterClock) {
        self.entries.clear();
        let time = clock.tick();
        let seq = self.next_seq;
        self.push(Entry {
            seq,
            time,
            wall: clock.wall().now(),
            op_index: 0,
            db: String::new(),
            coll: String::new(),
            kind: EntryKind::Noop,
            id: None,
            event: Vec::new(),
            full: None,
            pre: None,
            post: None,
        });
        self.lost_below = seq;
    }

    /// Appends applied changes. Outside a transaction each change gets its own cluster time; a
    /// committed transaction shares one time and stamps lsid/txnNumber. Returns the last time used.
    pub(crate) fn publish(
        &mut self,
        clock: &mut ClusterClock,
        changes: Vec<Change>,
        txn: Option<&TxnStamp>,
    ) -> Timestamp {
        let shared = txn.map(|_| clock.tick());
        let wall = clock.wall().now();
        let mut last = clock.last();
        for (i, change) in changes.into_iter().enumerate() {
            let time = shared.unwrap_or_else(|| clock.tick());
            last = time;
            let seq = self.next_seq;
            let op_index = if txn.is_some() { i as u32 } else { 0 };
            let entry = build_entry(seq, time, wall, op_index, change, txn);
            self.push(entry);
        }
        last
    }
}

fn build_entry(
    seq: u64,
    time: Timestamp,
    wall: DateTime,
    op_index: u32,
    change: Change,
    txn: Option<&TxnStamp>,
) -> Entry {
    let token = Token {
        time,
        seq,
        op_index,
        kind: TokenKind::Event,
    };
    let (kind, op_type) = match &change.kind {
        ChangeKind::Insert => (EntryKind::Insert, "insert"),
        ChangeKind::Update { .. } => (EntryKind::Update, "update"),
        ChangeKind::Replace => (EntryKind::Replace, "replace"),
        ChangeKind::Delete => (EntryKind::Delete, "delete"),
        ChangeKind::Drop => (EntryKind::Drop, "drop"),
        ChangeKind::Rename { to_db, to_coll } => (
            EntryKind::Rename {
                to_db: to_db.clone(),
                to_coll: to_coll.clone(),
            },
            "rename",
        ),
        ChangeKind::DropDatabase => (EntryKind::DropDatabase, "dropDatabase"),
    };
    let mut event = RawDoc::with_capacity(192);
    let mut id = RawDoc::with_capacity(64);
    id.str("_data", &token.data());
    event.raw_doc("_id", &id.finish());
    event.str("operationType", op_type);
    event.timestamp("clusterTime", time);
    event.datetime("wallTime", wall);
    if let Some(t) = txn {
        event.doc("lsid", &t.lsid);
        event.i64("txnNumber", t.txn_number);
    }
    let mut ns = RawDoc::with_capacity(64);
    ns.str("db", &change.db);
    if kind != EntryKind::DropDatabase {
        ns.str("coll", &change.coll);
    }
    event.raw_doc("ns", &ns.finish());
    if let Some(id) = &change.id {
        let mut key = RawDoc::with_capacity(32);
        key.value("_id", id);
        event.raw_doc("documentKey", &key.finish());
    }
    match &change.kind {
        ChangeKind::Update { description } => event.doc("updateDescription", description),
        ChangeKind::Rename { to_db, to_coll } => {
            event.doc("to", &doc! { "db": to_db.clone(), "coll": to_coll.clone() })
        }
        _ => {}
    }
    let event = event.finish();
    let (pre, post) = if change.images {
        (change.pre, change.post)
    } else {
        (None, None)
    };
    Entry {
        seq,
        time,
        wall,
        op_index,
        db: change.db,
        coll: change.coll,
        kind,
        id: change.id,
        event,
        full: change.full,
        pre,
        post,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_trims_and_truncate_marks_everything_lost() {
        let mut clock = ClusterClock::default();
        let mut h = History::new(2);
        for i in 0..3 {
            let c = Change::ddl("d", &format!("c{i}"), ChangeKind::Drop);
            h.publish(&mut clock, vec![c], None);
        }
        assert_eq!(h.len(), 2);
        assert_eq!(h.lost_below(), 2);
        assert_eq!(
            h.entries_from(3).map(|e| e.seq).collect::<Vec<_>>(),
            vec![3]
        );
        h.truncate(&mut clock);
        assert_eq!(h.lost_below(), 4);
        assert_eq!(
            h.entries_from(0)
                .map(|e| e.kind.clone())
                .collect::<Vec<_>>(),
            vec![EntryKind::Noop]
        );
    }
}
