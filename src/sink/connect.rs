//! The one way the binary opens a Postgres connection: `connect_pg` (a client whose connection is
//! driven by a background task, aborted when the returned guard drops) and `connect_pg_listening`
//! (the same, handing over `NOTIFY` messages). The replicator, every command, the reset listener
//! and the demo connect through here, so connection settings (TLS, timeouts) live in one place.
//! It runs no SQL of its own.

use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, Client, Notification};

use crate::config::Secret;

/// Aborts a background task when dropped.
pub struct AbortOnDrop(pub tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Connects to `url` (libpq conninfo or `postgres://` URL) and drives the connection in the
/// background until the guard drops.
pub async fn connect_pg(url: &Secret) -> Result<(Client, AbortOnDrop), tokio_postgres::Error> {
    let config: tokio_postgres::Config = url.expose().parse()?;
    connect_config(&config).await
}

/// `connect_pg` for an already parsed configuration (e.g. the same server, another database).
pub async fn connect_config(
    config: &tokio_postgres::Config,
) -> Result<(Client, AbortOnDrop), tokio_postgres::Error> {
    let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
    let task = tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "postgres connection ended");
        }
    });
    Ok((client, AbortOnDrop(task)))
}

/// `connect_pg` for a connection that receives notifications (`LISTEN`): they arrive on the
/// returned channel, which closes when the connection ends.
pub async fn connect_pg_listening(
    url: &Secret,
) -> Result<(Client, mpsc::UnboundedReceiver<Notification>, AbortOnDrop), tokio_postgres::Error> {
    let config: tokio_postgres::Config = url.expose().parse()?;
    let (client, mut connection) = config.connect(tokio_postgres::NoTls).await?;
    let (tx, rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message {
                Ok(AsyncMessage::Notification(n)) => {
                    if tx.send(n).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "postgres listening connection lost");
                    return;
                }
            }
        }
    });
    Ok((client, rx, AbortOnDrop(task)))
}
