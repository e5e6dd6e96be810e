//! The one way the binary opens a Postgres connection. A connection string is parsed once into a
//! `PgUrl` (`PgUrl::parse`: libpq's TLS options are taken out and checked — `conninfo` — and the
//! rustls configuration is built — `tls` — so a wrong option fails at startup, naming it); then
//! `connect_pg` opens a client whose connection is driven by a background task (aborted when the
//! returned guard drops) and `connect_pg_listening` does the same, handing over `NOTIFY`
//! messages. The replicator, every command, the reset listener and the demo connect through
//! here. It runs no SQL of its own.

pub mod conninfo;
pub mod tls;

use std::fmt;

use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, Client, Notification};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::config::Secret;

pub use conninfo::ConninfoError;
pub use tls::{SslMode, TlsError};

/// Aborts a background task when dropped.
pub struct AbortOnDrop(pub tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Why a connection string cannot be used. Every message names the option at fault and none
/// contains a secret.
#[derive(Debug, thiserror::Error)]
pub enum PgUrlError {
    #[error(transparent)]
    Conninfo(#[from] ConninfoError),
    /// tokio-postgres refused the rest (its message names the option, never the value).
    #[error("{}", describe(.0))]
    Driver(#[source] tokio_postgres::Error),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("host: the connection string names no host (give host=... or postgres://HOST/...)")]
    NoHost,
}

/// A tokio-postgres error with its causes (`error performing TLS handshake: invalid peer
/// certificate: UnknownIssuer`), since its own `Display` shows only the first part.
pub fn describe(e: &tokio_postgres::Error) -> String {
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        let part = c.to_string();
        if !text.ends_with(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        cause = c.source();
    }
    text
}

/// A parsed Postgres connection string with its TLS settings; cheap to clone. `Debug` never
/// shows the password.
#[derive(Clone)]
pub struct PgUrl {
    config: tokio_postgres::Config,
    mode: SslMode,
    tls: MakeRustlsConnect,
}

impl fmt::Debug for PgUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgUrl")
            .field("hosts", &self.config.get_hosts())
            .field("ports", &self.config.get_ports())
            .field("user", &self.config.get_user())
            .field("dbname", &self.config.get_dbname())
            .field("sslmode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl PgUrl {
    /// Parses a `postgres://` URL or a libpq `key=value` string, reading the certificate files
    /// it names.
    pub fn parse(url: &Secret) -> Result<PgUrl, PgUrlError> {
        let split = conninfo::split(url.expose())?;
        let tls = tls::build(&split.tls)?;
        let mut config: tokio_postgres::Config = split.rest.parse().map_err(PgUrlError::Driver)?;
        if config.get_hosts().is_empty() && config.get_hostaddrs().is_empty() {
            return Err(PgUrlError::NoHost);
        }
        config.ssl_mode(tls.mode.for_driver());
        Ok(PgUrl {
            config,
            mode: tls.mode,
            tls: MakeRustlsConnect::new((*tls.config).clone()),
        })
    }

    /// The same server and settings, another database.
    pub fn with_dbname(&self, dbname: &str) -> PgUrl {
        let mut other = self.clone();
        other.config.dbname(dbname);
        other
    }

    /// The database named, if any.
    pub fn dbname(&self) -> Option<&str> {
        self.config.get_dbname()
    }

    /// The effective `sslmode`.
    pub fn ssl_mode(&self) -> SslMode {
        self.mode
    }
}

/// Connects and drives the connection in the background until the guard drops.
pub async fn connect_pg(url: &PgUrl) -> Result<(Client, AbortOnDrop), tokio_postgres::Error> {
    let (client, connection) = url.config.connect(url.tls.clone()).await?;
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
    url: &PgUrl,
) -> Result<(Client, mpsc::UnboundedReceiver<Notification>, AbortOnDrop), tokio_postgres::Error> {
    let (client, mut connection) = url.config.connect(url.tls.clone()).await?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str) -> Result<PgUrl, PgUrlError> {
        PgUrl::parse(&Secret::new(url))
    }

    #[test]
    fn both_forms_parse_with_libpq_ssl_modes() {
        let url = parse("postgres://u:pw@db.example:5433/app?sslmode=verify-full").expect("url");
        assert_eq!(url.ssl_mode(), SslMode::VerifyFull);
        assert_eq!(url.dbname(), Some("app"));
        assert_eq!(
            url.config.get_ssl_mode(),
            tokio_postgres::config::SslMode::Require
        );
        let kv = parse("host=db user=u dbname=app").expect("conninfo");
        assert_eq!(kv.ssl_mode(), SslMode::Prefer);
        assert_eq!(kv.with_dbname("postgres").dbname(), Some("postgres"));
        let debug = format!("{:?}", parse("host=db password=hunter2").expect("parses"));
        assert!(!debug.contains("hunter2"), "{debug}");
    }

    #[test]
    fn bad_strings_name_the_option_and_hide_the_password() {
        let no_host = parse("postgres:///app").unwrap_err().to_string();
        assert!(no_host.starts_with("host: "), "{no_host}");
        let unknown = parse("host=db password=hunter2 colour=blue")
            .unwrap_err()
            .to_string();
        assert!(unknown.contains("`colour`"), "{unknown}");
        assert!(!unknown.contains("hunter2"), "{unknown}");
        let mode = parse("postgres://u:hunter2@db/app?sslmode=on")
            .unwrap_err()
            .to_string();
        assert!(mode.starts_with("sslmode: "), "{mode}");
        assert!(!mode.contains("hunter2"), "{mode}");
    }
}
