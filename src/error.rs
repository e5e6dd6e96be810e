//! Errors of a running stream and the one place that decides what to do about them:
//! `classify` says transient (back off, restart from the checkpoint) or fatal (stop this stream and
//! tell the operator what to do next). Leaf code never retries on its own.

use mongodb::error::{Error as MongoError, ErrorKind};

use crate::sink::SinkError;

/// Why a stream stopped running.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("mongodb error: {0}")]
    Mongo(#[source] MongoError),
    #[error("postgres error: {0}")]
    Sink(#[from] SinkError),
    #[error("cannot connect to postgres: {0}")]
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
    #[error("snapshot of {collection} failed: {message}")]
    Snapshot { collection: String, message: String },
}

impl From<MongoError> for StreamError {
    fn from(e: MongoError) -> Self {
        StreamError::Mongo(e)
    }
}

/// What the supervisor does with an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Back off and restart the stream from its checkpoint.
    Transient,
    /// Stop this stream; the operator must act.
    Fatal,
}

/// Mongo error codes after which reopening the stream cannot succeed without operator action.
const MONGO_HISTORY_LOST: i32 = 286;
const MONGO_FATAL_CODES: &[i32] = &[
    MONGO_HISTORY_LOST,
    280,   // ChangeStreamFatalError
    260,   // InvalidResumeToken
    18,    // AuthenticationFailed
    13,    // Unauthorized
    26,    // NamespaceNotFound on a database-wide operation
    40573, // change streams need a replica set
];

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

/// Decide transient vs fatal for any stream error.
pub fn classify(err: &StreamError) -> Disposition {
    match err {
        StreamError::Mongo(e) => classify_mongo(e),
        StreamError::Sink(e) => {
            if e.is_transient() {
                Disposition::Transient
            } else {
                Disposition::Fatal
            }
        }
        StreamError::PgConnect(_) => Disposition::Transient,
        StreamError::HistoryLost { .. } => Disposition::Fatal,
        StreamError::Invalidated { .. } => Disposition::Fatal,
        StreamError::ReaderGone(_) => Disposition::Transient,
        StreamError::Snapshot { .. } => Disposition::Transient,
    }
}

fn classify_mongo(e: &MongoError) -> Disposition {
    if let Some(code) = mongo_code(e) {
        if MONGO_FATAL_CODES.contains(&code) {
            return Disposition::Fatal;
        }
        return Disposition::Transient;
    }
    match e.kind.as_ref() {
        ErrorKind::Authentication { .. }
        | ErrorKind::InvalidArgument { .. }
        | ErrorKind::InvalidTlsConfig { .. }
        | ErrorKind::IncompatibleServer { .. } => Disposition::Fatal,
        _ => Disposition::Transient,
    }
}

/// A short, bounded label for the `reason` metric label of stream restarts.
pub fn reason_label(err: &StreamError) -> &'static str {
    match err {
        StreamError::Mongo(e) if is_history_lost(e) => "history_lost",
        StreamError::Mongo(_) => "mongo",
        StreamError::Sink(SinkError::CheckpointMoved { .. }) => "token_reset",
        StreamError::Sink(_) => "postgres",
        StreamError::PgConnect(_) => "postgres",
        StreamError::HistoryLost { .. } => "history_lost",
        StreamError::Invalidated { .. } => "invalidated",
        StreamError::ReaderGone(_) => "reader",
        StreamError::Snapshot { .. } => "snapshot",
    }
}
