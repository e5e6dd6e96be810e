//! The running replicator's side of a reset: a dedicated Postgres connection that LISTENs on
//! `RESET_CHANNEL` and hands over the name of every stream an operator reset, so the supervisor
//! restarts that stream from its new position within moments instead of at its next batch (where
//! the epoch check would refuse the old position anyway).

use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::{TokensError, RESET_CHANNEL};

/// A live LISTEN connection. `resets` yields stream names; it ends (`None`) when the connection
/// is lost, and the owner should then connect a new listener (and reload every checkpoint, since
/// notifications sent meanwhile are gone).
pub struct ResetListener {
    _client: tokio_postgres::Client,
    task: JoinHandle<()>,
    pub resets: mpsc::UnboundedReceiver<String>,
}

impl Drop for ResetListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Connects to `url` (a libpq-style connection string, no TLS) and listens for resets.
pub async fn listen_for_resets(url: &str) -> Result<ResetListener, TokensError> {
    let (client, mut connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .map_err(|source| TokensError::Postgres {
            context: "connecting the reset listener",
            source,
        })?;
    let (tx, resets) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message {
                Ok(tokio_postgres::AsyncMessage::Notification(n)) => {
                    if tx.send(n.payload().to_string()).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "reset listener connection lost");
                    return;
                }
            }
        }
    });
    client
        .batch_execute(&format!("LISTEN {RESET_CHANNEL}"))
        .await
        .map_err(|source| TokensError::Postgres {
            context: "listening for resets",
            source,
        })?;
    Ok(ResetListener {
        _client: client,
        task,
        resets,
    })
}
