//! The running replicator's side of a reset: a dedicated Postgres connection (opened through
//! `sink::connect`) that LISTENs on `RESET_CHANNEL` and hands over the name of every stream an
//! operator reset, so the replicator restarts that stream from its new position within moments
//! instead of at its next batch (where the epoch check would refuse the old position anyway).

use tokio::sync::mpsc;
use tokio_postgres::Notification;

use super::{TokensError, RESET_CHANNEL};
use crate::sink::connect::{connect_pg_listening, AbortOnDrop, PgUrl};

/// A live LISTEN connection. `next_reset` yields stream names; it ends (`None`) when the
/// connection is lost, and the owner should then connect a new listener (and reload every
/// checkpoint, since notifications sent meanwhile are gone).
pub struct ResetListener {
    _client: tokio_postgres::Client,
    _connection: AbortOnDrop,
    notifications: mpsc::UnboundedReceiver<Notification>,
}

impl ResetListener {
    /// The next stream an operator reset, or None when the connection is gone.
    pub async fn next_reset(&mut self) -> Option<String> {
        self.notifications
            .recv()
            .await
            .map(|n| n.payload().to_string())
    }
}

/// Connects to `url` and listens for resets.
pub async fn listen_for_resets(url: &PgUrl) -> Result<ResetListener, TokensError> {
    let (client, notifications, connection) =
        connect_pg_listening(url)
            .await
            .map_err(|source| TokensError::Postgres {
                context: "connecting the reset listener",
                source,
            })?;
    client
        .batch_execute(&format!("LISTEN {RESET_CHANNEL}"))
        .await
        .map_err(|source| TokensError::Postgres {
            context: "listening for resets",
            source,
        })?;
    Ok(ResetListener {
        _client: client,
        _connection: connection,
        notifications,
    })
}
