//! Errors of a running stream (`StreamError`), each keeping its cause, and how to recognise the
//! MongoDB errors that matter (history lost). What to do about an error is `policy::decide`'s.

use mongodb::error::{Error as MongoError, ErrorKind};

use crate::sink::SinkError;

/// Why a stream stopped running.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("mongodb error: {}", crate::source::connect::describe_mongo(.0))]
    Mongo(#[source] MongoError),
    #[error("postgres error: {0}")]
    Sink(#[from] SinkError),
    #[error("cannot connect to postgres: {}", crate::sink::connect::describe(.0))]
    PgConnect(#[source] tokio_postgres::Error),
    /// The resume point is no longer in the oplog (ChangeStreamHistoryLost, code 286) or the stored
    /// token is otherwise unusable.
    #[error("change stream history lost for {collection}: {message}")]
    HistoryLost { collection: String, message: String },
    /// The collection was dropped or renamed (or its database dropped): the stream is invalidated.
    #[error("change stream of {collection} was invalidated by a {operation} event")]
    Invalidated {
        collection: String,
        operation: String,
    },
    /// The reader task ended unexpectedly (it panicked or was cancelled).
    #[error("stream reader task of {0} ended unexpectedly")]
    ReaderGone(String),
    /// The stream's own bookkeeping broke (a bug): the stream restarts from its checkpoint.
    #[error("internal error of the stream: {0}")]
    Internal(String),
    /// The copy before streaming (or the re-copy after lost history) failed.
    #[error("snapshot of {collection} failed: {source}")]
    Snapshot {
        collection: String,
        #[source]
        source: Box<crate::snapshot::SnapshotError>,
    },
}

impl From<MongoError> for StreamError {
    fn from(e: MongoError) -> Self {
        StreamError::Mongo(e)
    }
}

/// ChangeStreamHistoryLost: the resume point fell out of the oplog window.
pub const MONGO_HISTORY_LOST: i32 = 286;

/// The Mongo error code of a command error, if any.
pub fn mongo_code(e: &MongoError) -> Option<i32> {
    match e.kind.as_ref() {
        ErrorKind::Command(c) => Some(c.code),
        _ => None,
    }
}

/// True when the error says the resume point fell out of the oplog window.
pub fn is_history_lost(e: &MongoError) -> bool {
    mongo_code(e) == Some(MONGO_HISTORY_LOST)
}
