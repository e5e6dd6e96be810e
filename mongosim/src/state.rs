//! Shared simulator state: one lock-protected [`Inner`] (clock, store, history, cursors, sessions,
//! fail point, topology) plus the watch channels that wake change-stream waiters and carry the
//! pause / drop-connections / shutdown signals to connection tasks.

use crate::auth::Users;
use crate::clock::{ClusterClock, WallClock};
use crate::commands::changestream::StreamCursor;
use crate::commands::cursors::QueryCursor;
use crate::failpoint::FailPoint;
use crate::oplog::History;
use crate::session::Sessions;
use crate::store::Store;
use bson::oid::ObjectId;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Mutex, MutexGuard};
use tokio::sync::watch;

/// An open cursor over a small precomputed result (listings, aggregates): remaining documents.
#[derive(Debug)]
pub(crate) struct DocsCursor {
    pub ns: String,
    pub docs: VecDeque<Vec<u8>>,
}

/// An open cursor.
#[derive(Debug)]
pub(crate) enum Cursor {
    Docs(DocsCursor),
    Query(Box<QueryCursor>),
    Stream(Box<StreamCursor>),
}

/// Everything guarded by the simulator lock.
#[derive(Debug)]
pub(crate) struct Inner {
    pub clock: ClusterClock,
    pub store: Store,
    pub history: History,
    pub cursors: HashMap<i64, Cursor>,
    next_cursor: i64,
    pub sessions: Sessions,
    pub failpoint: Option<FailPoint>,
    pub primary: bool,
    pub election: u32,
}

impl Inner {
    /// A fresh, never reused cursor id.
    pub(crate) fn new_cursor_id(&mut self) -> i64 {
        self.next_cursor += 1;
        self.next_cursor
    }

    /// The electionId: grows with every re-election.
    pub(crate) fn election_id(&self) -> ObjectId {
        let mut bytes = [0u8; 12];
        bytes[..4].copy_from_slice(&0x7fff_ffffu32.to_be_bytes());
        bytes[8..].copy_from_slice(&self.election.to_be_bytes());
        ObjectId::from_bytes(bytes)
    }
}

/// State shared by the listener, every connection and the handle.
#[derive(Debug)]
pub(crate) struct Shared {
    inner: Mutex<Inner>,
    /// Latest history sequence number; change-stream waiters subscribe to it.
    pub events: watch::Sender<u64>,
    pub paused: watch::Sender<bool>,
    pub drop_gen: watch::Sender<u64>,
    pub shutdown: watch::Sender<bool>,
    /// The advertised `host:port`.
    pub advertised: String,
    pub set_name: String,
    /// Configured users (empty: no authentication).
    pub users: Users,
    next_conn: AtomicI64,
}

impl Shared {
    pub(crate) fn new(
        advertised: String,
        set_name: String,
        window: usize,
        wall: WallClock,
        users: Users,
    ) -> Shared {
        let mut clock = ClusterClock::new(wall);
        clock.tick();
        Shared {
            inner: Mutex::new(Inner {
                clock,
                store: Store {
                    wall,
                    ..Store::default()
                },
                history: History::new(window),
                cursors: HashMap::new(),
                next_cursor: 1000,
                sessions: Sessions::default(),
                failpoint: None,
                primary: true,
                election: 1,
            }),
            events: watch::channel(0).0,
            paused: watch::channel(false).0,
            drop_gen: watch::channel(0).0,
            shutdown: watch::channel(false).0,
            advertised,
            set_name,
            users,
            next_conn: AtomicI64::new(1),
        }
    }

    /// Locks the state (a poisoned lock is recovered: the state stays structurally valid).
    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn next_connection_id(&self) -> i64 {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// Wakes change-stream waiters after the history grew.
    pub(crate) fn notify(&self, last_seq: u64) {
        self.events.send_replace(last_seq);
    }

    /// Waits while the simulator is paused.
    pub(crate) async fn wait_unpaused(&self) {
        let mut rx = self.paused.subscribe();
        while *rx.borrow_and_update() {
            if rx.changed().await.is_err() {
                return;
            }
        }
    }
}
