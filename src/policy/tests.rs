//! Every kind of stream error maps to the right action, restart-reason label and advice.

use super::*;
use crate::snapshot::SnapshotError;

fn command_error(code: i32) -> MongoError {
    let e: mongodb::error::CommandError =
        bson::from_document(bson::doc! {"code": code, "codeName": "X", "errmsg": "x"})
            .expect("command error");
    MongoError::from(ErrorKind::Command(e))
}

fn pg_error() -> tokio_postgres::Error {
    "nonsense_key=1"
        .parse::<tokio_postgres::Config>()
        .expect_err("invalid conninfo")
}

fn unknown_column() -> SinkError {
    SinkError::UnknownColumn {
        table: "users".into(),
        column: "email".into(),
    }
}

fn moved() -> SinkError {
    SinkError::CheckpointMoved {
        stream: "users".into(),
        expected: 1,
        found: 2,
    }
}

fn snapshot(source: SnapshotError) -> StreamError {
    StreamError::Snapshot {
        collection: "users".into(),
        source: Box::new(source),
    }
}

fn snapshot_mongo(e: MongoError) -> SnapshotError {
    SnapshotError::Mongo {
        collection: "users".into(),
        source: Box::new(e),
    }
}

#[test]
fn every_stream_error_maps_to_its_action_and_restart_reason() {
    use Action::*;
    let cases: Vec<(StreamError, Action, &str, RestartReason)> = vec![
        (
            StreamError::Mongo(MongoError::custom("network")),
            RetryWithBackoff,
            "mongo",
            RestartReason::MongoError,
        ),
        (
            StreamError::Mongo(command_error(11600)),
            RetryWithBackoff,
            "mongo",
            RestartReason::MongoError,
        ),
        (
            StreamError::Mongo(command_error(18)),
            Stop,
            "mongo",
            RestartReason::MongoError,
        ),
        (
            StreamError::Mongo(command_error(286)),
            Stop,
            "history_lost",
            RestartReason::HistoryLost,
        ),
        (
            StreamError::Sink(moved()),
            RestartNow,
            "token_reset",
            RestartReason::TokenReset,
        ),
        (
            StreamError::Sink(unknown_column()),
            Stop,
            "postgres",
            RestartReason::PostgresError,
        ),
        (
            StreamError::Sink(SinkError::pg("writing rows", pg_error())),
            Stop,
            "postgres",
            RestartReason::PostgresError,
        ),
        (
            StreamError::PgConnect(pg_error()),
            RetryWithBackoff,
            "postgres",
            RestartReason::PostgresError,
        ),
        (
            StreamError::HistoryLost {
                collection: "users".into(),
                message: "gone".into(),
            },
            RecoverHistory,
            "history_lost",
            RestartReason::HistoryLost,
        ),
        (
            StreamError::Invalidated {
                collection: "users".into(),
                operation: "drop".into(),
            },
            Stop,
            "invalidated",
            RestartReason::Other,
        ),
        (
            StreamError::ReaderGone("users".into()),
            RetryWithBackoff,
            "reader",
            RestartReason::Other,
        ),
    ];
    for (err, action, label, reason) in cases {
        let d = decide("users", &err);
        assert_eq!(
            (d.action, d.label, d.reason),
            (action, label, reason),
            "{err:?}"
        );
        assert_eq!(
            d.advice.is_some(),
            matches!(action, Stop | RecoverHistory),
            "{err:?}"
        );
    }
}

#[test]
fn a_snapshot_error_is_classified_by_its_cause() {
    use Action::*;
    let cases: Vec<(SnapshotError, Action, &str, RestartReason)> = vec![
        (
            snapshot_mongo(MongoError::custom("network")),
            RetryWithBackoff,
            "mongo",
            RestartReason::MongoError,
        ),
        (
            snapshot_mongo(command_error(13)),
            Stop,
            "mongo",
            RestartReason::MongoError,
        ),
        // The mapping and the target schema disagree: retrying cannot help.
        (
            SnapshotError::Sink(unknown_column()),
            Stop,
            "postgres",
            RestartReason::PostgresError,
        ),
        (
            SnapshotError::Sink(SinkError::pg("recording snapshot progress", pg_error())),
            Stop,
            "postgres",
            RestartReason::PostgresError,
        ),
        (
            SnapshotError::Sink(moved()),
            RestartNow,
            "token_reset",
            RestartReason::TokenReset,
        ),
        (
            SnapshotError::Moved {
                stream: "users".into(),
            },
            RestartNow,
            "token_reset",
            RestartReason::TokenReset,
        ),
        (
            SnapshotError::UnknownCollection("users".into()),
            Stop,
            "snapshot",
            RestartReason::Other,
        ),
    ];
    for (source, action, label, reason) in cases {
        let err = snapshot(source);
        let d = decide("users", &err);
        assert_eq!(
            (d.action, d.label, d.reason),
            (action, label, reason),
            "{err:?}"
        );
    }
}

#[test]
fn advice_names_the_command_that_repairs_the_stream() {
    let lost = decide(
        "payments",
        &StreamError::HistoryLost {
            collection: "payments".into(),
            message: "gone".into(),
        },
    );
    assert!(lost
        .advice
        .as_deref()
        .is_some_and(|a| a.contains("mongo2pg tokens reset payments --resnapshot")));
    let dropped = decide(
        "payments",
        &StreamError::Invalidated {
            collection: "payments".into(),
            operation: "drop".into(),
        },
    );
    assert!(dropped
        .advice
        .as_deref()
        .is_some_and(|a| a.contains("collection was dropped or renamed")));
    let copy = decide("payments", &snapshot(SnapshotError::Sink(unknown_column())));
    assert!(copy
        .advice
        .as_deref()
        .is_some_and(|a| a.contains("the copy resumes where it stopped")
            || a.contains("resumes where it stopped")));
    let other = decide("payments", &StreamError::Sink(unknown_column()));
    assert!(other
        .advice
        .as_deref()
        .is_some_and(|a| a.contains("mongo2pg tokens show")));
    assert_eq!(
        decide("payments", &StreamError::ReaderGone("payments".into())).advice,
        None
    );
}

#[test]
fn history_loss_resyncs_only_when_needed_mode_allows_it() {
    assert_eq!(
        history_lost_action(SnapshotMode::WhenNeeded, "payments"),
        HistoryLostAction::Resync
    );
    assert_eq!(
        history_lost_action(SnapshotMode::Initial, "payments"),
        HistoryLostAction::Stop {
            command: "mongo2pg tokens reset payments --resnapshot --reason \"change stream history lost\"".into(),
            alternative: "mongo2pg tokens reset payments --to-now --reason \"change stream history lost\"".into(),
        }
    );
}

#[test]
fn a_refused_password_stops_the_stream_with_advice_about_the_credentials() {
    let auth = decide("payments", &StreamError::Mongo(command_error(18)));
    assert_eq!(auth.action, Action::Stop);
    assert_eq!(auth.advice.as_deref(), Some(MONGO_CREDENTIALS_ADVICE));
    let copy = decide("payments", &snapshot(snapshot_mongo(command_error(18))));
    assert_eq!(copy.action, Action::Stop);
    assert_eq!(copy.advice.as_deref(), Some(MONGO_CREDENTIALS_ADVICE));
    assert!(mongo_error_stops(&command_error(18)));
    assert!(mongo_error_stops(&command_error(13)));
    assert!(
        !mongo_error_stops(&command_error(91)),
        "shutdown in progress is retried"
    );
    let not_auth = decide("payments", &StreamError::Mongo(command_error(280)));
    assert_ne!(not_auth.advice.as_deref(), Some(MONGO_CREDENTIALS_ADVICE));
}
