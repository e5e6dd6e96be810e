//! Command errors as the wire sees them: `{ok: 0, errmsg, code, codeName, errorLabels?}`. Every
//! error carries a numeric code (drivers treat a code-less error as a network-style failure).

use bson::{doc, Bson, Document};

/// A command failure returned to the client with `ok: 0`.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{code_name} ({code}): {message}")]
pub struct CommandError {
    pub code: i32,
    pub code_name: String,
    pub message: String,
    pub labels: Vec<String>,
}

/// Name of a server error code, as real servers report it in `codeName`.
pub(crate) fn code_name(code: i32) -> &'static str {
    match code {
        1 => "InternalError",
        2 => "BadValue",
        6 => "HostUnreachable",
        7 => "HostNotFound",
        9 => "FailedToParse",
        11 => "UserNotFound",
        13 => "Unauthorized",
        17 => "ProtocolError",
        18 => "AuthenticationFailed",
        14 => "TypeMismatch",
        20 => "IllegalOperation",
        26 => "NamespaceNotFound",
        40 => "ConflictingUpdateOperators",
        43 => "CursorNotFound",
        48 => "NamespaceExists",
        53 => "InvalidIdField",
        50 => "MaxTimeMSExpired",
        59 => "CommandNotFound",
        63 => "StaleShardVersion",
        66 => "ImmutableField",
        72 => "InvalidOptions",
        89 => "NetworkTimeout",
        91 => "ShutdownInProgress",
        112 => "WriteConflict",
        133 => "FailedToSatisfyReadPreference",
        134 => "ReadConcernMajorityNotAvailableYet",
        136 => "CappedPositionLost",
        150 => "StaleEpoch",
        189 => "PrimarySteppedDown",
        225 => "TransactionTooOld",
        234 => "RetryChangeStream",
        251 => "NoSuchTransaction",
        256 => "TransactionCommitted",
        260 => "InvalidResumeToken",
        262 => "ExceededTimeLimit",
        263 => "OperationNotSupportedInTransaction",
        175 => "QueryPlanKilled",
        280 => "ChangeStreamFatalError",
        286 => "ChangeStreamHistoryLost",
        334 => "MechanismUnavailable",
        9001 => "SocketException",
        10107 => "NotWritablePrimary",
        11000 => "DuplicateKey",
        11600 => "InterruptedAtShutdown",
        11602 => "InterruptedDueToReplStateChange",
        13435 => "NotPrimaryNoSecondaryOk",
        13436 => "NotPrimaryOrSecondary",
        40324 => "Location40324",
        40573 => "Location40573",
        _ => "UnknownError",
    }
}

impl CommandError {
    /// An error with the standard name for `code`.
    pub fn new(code: i32, message: impl Into<String>) -> CommandError {
        CommandError {
            code,
            code_name: code_name(code).to_owned(),
            message: message.into(),
            labels: Vec::new(),
        }
    }

    /// Adds an error label.
    pub fn with_label(mut self, label: &str) -> CommandError {
        self.labels.push(label.to_owned());
        self
    }

    pub(crate) fn bad_value(message: impl Into<String>) -> CommandError {
        CommandError::new(2, message)
    }

    pub(crate) fn type_mismatch(message: impl Into<String>) -> CommandError {
        CommandError::new(14, message)
    }

    /// The reply body (without the cluster-time envelope).
    pub(crate) fn to_doc(&self) -> Document {
        let mut d = doc! {
            "ok": 0.0,
            "errmsg": self.message.clone(),
            "code": self.code,
            "codeName": self.code_name.clone(),
        };
        if !self.labels.is_empty() {
            d.insert(
                "errorLabels",
                Bson::Array(
                    self.labels
                        .iter()
                        .map(|l| Bson::String(l.clone()))
                        .collect(),
                ),
            );
        }
        d
    }
}

/// Error codes that make a change-stream getMore resumable (the server adds the label itself).
pub(crate) const RESUMABLE_CHANGE_STREAM_CODES: &[i32] = &[
    6, 7, 89, 91, 133, 150, 189, 234, 262, 9001, 10107, 11600, 11602, 13435, 13436, 63,
];

/// Error codes for which a retryable write gets the RetryableWriteError label.
pub(crate) const RETRYABLE_WRITE_CODES: &[i32] = &[
    6, 7, 89, 91, 189, 262, 9001, 10107, 11600, 11602, 13435, 13436,
];
