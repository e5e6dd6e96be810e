//! The failure policy: what happens when a stream fails, decided in one place. `decide` is a pure
//! function from a `StreamError` to a `Decision`: retry after a backoff, restart at once, recover
//! from lost history, or stop and wait for the operator; with the restart-reason metric label and
//! the operator's advice. The supervisor (and the bootstrap copy) act on it; leaf code never
//! retries on its own. A snapshot's error is classified by its cause, like the stream's own.
//!
//! Also here: which Postgres and MongoDB errors are transient, and what a lost history leads to
//! in each snapshot mode (`history_lost_action`). No I/O.

use mongodb::error::{Error as MongoError, ErrorKind};
use tokio_postgres::error::SqlState;

use crate::config::SnapshotMode;
use crate::error::{mongo_code, StreamError, MONGO_HISTORY_LOST};
use crate::metrics::RestartReason;
use crate::sink::SinkError;
use crate::snapshot::SnapshotError;

/// What the supervisor does after a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Back off (exponential with jitter) and restart the stream from its checkpoint.
    RetryWithBackoff,
    /// Restart from the stored position right away: an operator moved it.
    RestartNow,
    /// The resume point is gone: record the lost window, then do what `history_lost_action`
    /// says for the snapshot mode.
    RecoverHistory,
    /// Stop this stream until an operator acts (a token reset wakes it).
    Stop,
}

/// The policy's answer for one failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub action: Action,
    /// Short cause for logs: `mongo`, `postgres`, `token_reset`, `history_lost`, `invalidated`,
    /// `reader`, `snapshot`.
    pub label: &'static str,
    /// The `reason` label of `mongo2pg_stream_restarts_total`.
    pub reason: RestartReason,
    /// What the operator should do; set when the stream stops.
    pub advice: Option<String>,
}

/// Transient or not, before the operator's view is added.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cause {
    Transient,
    Fatal,
    OperatorReset,
}

/// Mongo error codes after which reopening the stream cannot succeed without operator action.
const MONGO_FATAL_CODES: &[i32] = &[
    MONGO_HISTORY_LOST,
    280,   // ChangeStreamFatalError
    260,   // InvalidResumeToken
    18,    // AuthenticationFailed
    13,    // Unauthorized
    26,    // NamespaceNotFound on a database-wide operation
    40573, // change streams need a replica set
];

/// The decision for `err` on the stream `stream`.
pub fn decide(stream: &str, err: &StreamError) -> Decision {
    let (cause, label) = match err {
        StreamError::Mongo(e) if crate::error::is_history_lost(e) => {
            (mongo_cause(e), "history_lost")
        }
        StreamError::Mongo(e) => (mongo_cause(e), "mongo"),
        StreamError::Sink(e) => sink_cause(e),
        StreamError::PgConnect(_) => (Cause::Transient, "postgres"),
        StreamError::HistoryLost { .. } => {
            return Decision {
                action: Action::RecoverHistory,
                label: "history_lost",
                reason: RestartReason::HistoryLost,
                advice: Some(history_lost_advice(stream)),
            }
        }
        StreamError::Invalidated { .. } => (Cause::Fatal, "invalidated"),
        StreamError::ReaderGone(_) => (Cause::Transient, "reader"),
        StreamError::Internal(_) => (Cause::Transient, "internal"),
        StreamError::Snapshot { source, .. } => snapshot_cause(source),
    };
    let action = match cause {
        Cause::Transient => Action::RetryWithBackoff,
        Cause::OperatorReset => Action::RestartNow,
        Cause::Fatal => Action::Stop,
    };
    Decision {
        action,
        label,
        reason: restart_reason(label),
        advice: (action == Action::Stop).then(|| operator_advice(stream, err)),
    }
}

fn restart_reason(label: &str) -> RestartReason {
    match label {
        "mongo" => RestartReason::MongoError,
        "postgres" => RestartReason::PostgresError,
        "history_lost" => RestartReason::HistoryLost,
        "token_reset" => RestartReason::TokenReset,
        _ => RestartReason::Other,
    }
}

fn sink_cause(e: &SinkError) -> (Cause, &'static str) {
    match e {
        SinkError::CheckpointMoved { .. } => (Cause::OperatorReset, "token_reset"),
        e if sink_error_is_transient(e) => (Cause::Transient, "postgres"),
        _ => (Cause::Fatal, "postgres"),
    }
}

fn snapshot_cause(e: &SnapshotError) -> (Cause, &'static str) {
    match e {
        SnapshotError::Mongo { source, .. } => (mongo_cause(source), "mongo"),
        SnapshotError::Sink(e) => sink_cause(e),
        SnapshotError::Moved { .. } => (Cause::OperatorReset, "token_reset"),
        SnapshotError::UnknownCollection(_) => (Cause::Fatal, "snapshot"),
    }
}

fn mongo_cause(e: &MongoError) -> Cause {
    if let Some(code) = mongo_code(e) {
        if MONGO_FATAL_CODES.contains(&code) {
            return Cause::Fatal;
        }
        return Cause::Transient;
    }
    match e.kind.as_ref() {
        ErrorKind::Authentication { .. }
        | ErrorKind::InvalidArgument { .. }
        | ErrorKind::InvalidTlsConfig { .. }
        | ErrorKind::IncompatibleServer { .. } => Cause::Fatal,
        _ => Cause::Transient,
    }
}

/// True when retrying from the checkpoint may succeed: lost connection, Postgres restarting or
/// shutting down (class 08, 57P01-57P03), serialization failure or deadlock (40001, 40P01), a
/// cancelled statement (57014) or exhausted resources (class 53: connections, disk, memory), and
/// an operator reset of the checkpoint (restart from the new position). Everything else needs an
/// operator (or a code fix).
pub fn sink_error_is_transient(e: &SinkError) -> bool {
    match e {
        SinkError::Postgres { source, .. } => pg_error_is_transient(source),
        SinkError::CheckpointMoved { .. } => true,
        _ => false,
    }
}

/// Classifies a raw Postgres error (see `sink_error_is_transient`).
pub fn pg_error_is_transient(err: &tokio_postgres::Error) -> bool {
    if err.is_closed() {
        return true;
    }
    match err.code() {
        Some(code) => {
            let c = code.code();
            c.starts_with("08")
                || c.starts_with("53")
                || *code == SqlState::QUERY_CANCELED
                || *code == SqlState::ADMIN_SHUTDOWN
                || *code == SqlState::CRASH_SHUTDOWN
                || *code == SqlState::CANNOT_CONNECT_NOW
                || *code == SqlState::T_R_SERIALIZATION_FAILURE
                || *code == SqlState::T_R_DEADLOCK_DETECTED
        }
        // No SQLSTATE: transient only when the cause is an I/O failure of the connection.
        None => std::error::Error::source(err)
            .is_some_and(|cause| cause.downcast_ref::<std::io::Error>().is_some()),
    }
}

fn history_lost_advice(stream: &str) -> String {
    format!(
        "the resume point is gone from the oplog; a window_lost gap records the skipped window. Run `mongo2pg tokens reset {stream} --resnapshot --reason \"history lost\"` (or set snapshot.mode = \"when_needed\") to re-sync"
    )
}

/// MongoDB refused the credentials (or their rights): SCRAM failed (code 18), the user may not
/// do this (13), or the driver reports an authentication error.
pub fn is_mongo_auth_error(e: &MongoError) -> bool {
    matches!(mongo_code(e), Some(18 | 13))
        || matches!(e.kind.as_ref(), ErrorKind::Authentication { .. })
}

/// The MongoDB error behind `err`, if any (a stream's own or its copy's).
fn mongo_cause_of(err: &StreamError) -> Option<&MongoError> {
    match err {
        StreamError::Mongo(e) => Some(e),
        StreamError::Snapshot { source, .. } => match source.as_ref() {
            SnapshotError::Mongo { source, .. } => Some(source),
            _ => None,
        },
        _ => None,
    }
}

/// True when a MongoDB error means the streams must stop (no retry can help), e.g. a wrong
/// password: the same answer `decide` gives for a stream.
pub fn mongo_error_stops(e: &MongoError) -> bool {
    mongo_cause(e) == Cause::Fatal
}

/// The advice when MongoDB refuses the credentials.
pub const MONGO_CREDENTIALS_ADVICE: &str = "check the MongoDB user/password in MONGO_URL (or the file MONGO_URL_FILE names) and that the user may read the mapped collections and open change streams, then restart mongo2pg";

/// What the operator should do after `err` stopped `stream`.
pub fn operator_advice(stream: &str, err: &StreamError) -> String {
    if mongo_cause_of(err).is_some_and(is_mongo_auth_error) {
        return MONGO_CREDENTIALS_ADVICE.to_string();
    }
    match err {
        StreamError::HistoryLost { .. } => history_lost_advice(stream),
        StreamError::Invalidated { .. } => format!(
            "the collection was dropped or renamed; fix the mapping if it moved, then run `mongo2pg tokens reset {stream} --resnapshot --reason \"collection recreated\"`"
        ),
        StreamError::Snapshot { .. } => format!(
            "fix the cause above, then restart mongo2pg (an interrupted copy resumes where it stopped) or run `mongo2pg tokens reset {stream} --resnapshot --reason \"copy again\"`"
        ),
        _ => format!("fix the cause above, then restart mongo2pg; `mongo2pg tokens show` shows where {stream} stands"),
    }
}

/// What to do after a stream's history is lost (its `window_lost` gap is already recorded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HistoryLostAction {
    /// `when_needed`: re-copy the collection now, then stream from the copy's start.
    Resync,
    /// Stop this stream; the operator runs `command` (or the alternative) when ready.
    Stop {
        command: String,
        alternative: String,
    },
}

/// The exact command that re-copies a collection after its history was lost.
pub fn resnapshot_command(collection: &str) -> String {
    format!(
        "mongo2pg tokens reset {collection} --resnapshot --reason \"change stream history lost\""
    )
}

/// The command that skips the lost window (it stays recorded as a gap) and streams from now.
pub fn skip_command(collection: &str) -> String {
    format!("mongo2pg tokens reset {collection} --to-now --reason \"change stream history lost\"")
}

/// Re-sync in `when_needed` mode; otherwise stop with the exact commands.
pub fn history_lost_action(mode: SnapshotMode, collection: &str) -> HistoryLostAction {
    match mode {
        SnapshotMode::WhenNeeded => HistoryLostAction::Resync,
        SnapshotMode::Initial | SnapshotMode::Never => HistoryLostAction::Stop {
            command: resnapshot_command(collection),
            alternative: skip_command(collection),
        },
    }
}

#[cfg(test)]
mod tests;
