//! The one error type of the Postgres side, keeping the server's message and the cause. The sink
//! never retries by itself: it reports, and the failure policy (`policy`) decides which errors
//! are transient.

/// Everything that can go wrong while talking to Postgres for the replicator.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// A statement failed outside any per-event handling (connection, lock, control tables).
    #[error("postgres error while {context}: {message}")]
    Postgres {
        context: String,
        /// The server's message (with SQLSTATE and detail) or the client error text.
        message: String,
        #[source]
        source: tokio_postgres::Error,
    },
    /// A mapped table does not exist in the live catalogue.
    #[error("table {table} does not exist in the target database")]
    TableNotFound { table: String },
    /// A column type the replicator cannot describe exactly.
    #[error("column {table}.{column} is not supported: {reason}")]
    UnsupportedColumn {
        table: String,
        column: String,
        reason: String,
    },
    /// A row operation names a table or column the loaded catalogue does not know; the mapping
    /// configuration and the schema disagree.
    #[error(
        "row operation refers to unknown column {table}.{column} (mapping and schema disagree)"
    )]
    UnknownColumn { table: String, column: String },
    /// A configured table or schema name is not a usable SQL identifier.
    #[error(transparent)]
    InvalidName(#[from] crate::sink::name::InvalidName),
    /// The migrations runner failed.
    #[error("applying control-table migrations failed: {source}")]
    Migration {
        #[source]
        source: refinery::Error,
    },
    /// An operator reset moved the stream (its epoch changed) while this batch was in flight; the
    /// batch was rolled back and the stream must restart from the stored position.
    #[error(
        "checkpoint of stream {stream} was reset by an operator (epoch {expected} -> {found}); restart from the stored position"
    )]
    CheckpointMoved {
        stream: String,
        expected: i64,
        found: i64,
    },
    /// A page of a copy written at once with the page before it: that page did not commit, so
    /// this one may not either (the copy resumes after the last committed page).
    #[error("the previous page of the copy of {stream} did not commit")]
    PreviousPageFailed { stream: String },
    /// A page of a copy waited too long for the page before it to commit (the two may be
    /// waiting on each other); it was rolled back.
    #[error("a page of the copy of {stream} waited too long for the page before it")]
    PageTurnTimeout { stream: String },
    /// id_map did not return a UUID for a legacy id even after allocation.
    #[error("id_map has no entry for {collection}/{legacy_id} after allocation")]
    IdMapIncomplete {
        collection: String,
        legacy_id: String,
    },
    /// A stored value could not be decoded (e.g. a resume token that is not extended JSON).
    #[error("stored {what} is invalid: {reason}")]
    InvalidStored { what: String, reason: String },
}

impl SinkError {
    pub(crate) fn pg(context: impl Into<String>, source: tokio_postgres::Error) -> Self {
        let message = match source.as_db_error() {
            Some(db) => {
                let mut m = format!("{} (SQLSTATE {})", db.message(), db.code().code());
                if let Some(detail) = db.detail() {
                    m.push_str(": ");
                    m.push_str(detail);
                }
                m
            }
            None => match std::error::Error::source(&source) {
                Some(cause) => format!("{source}: {cause}"),
                None => source.to_string(),
            },
        };
        SinkError::Postgres {
            context: context.into(),
            message,
            source,
        }
    }

    /// The SQLSTATE of the underlying Postgres error, if any.
    pub fn sqlstate(&self) -> Option<&str> {
        match self {
            SinkError::Postgres { source, .. } => source.code().map(|c| c.code()),
            _ => None,
        }
    }

    /// True when retrying from the checkpoint may succeed (the failure policy decides; see
    /// `policy::sink_error_is_transient`).
    pub fn is_transient(&self) -> bool {
        crate::policy::sink_error_is_transient(self)
    }
}
