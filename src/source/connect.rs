//! The one way the binary opens a MongoDB client: `mongo_options` parses the connection string
//! (credentials, `tls=true`, `tlsCAFile`, ... are the official driver's) and `mongo_client`
//! builds the client from it, reading the TLS files; a wrong option fails in one of the two,
//! before any server is contacted (`MongoUrlError`, which commands turn into exit code 2). It does
//! not ping, retry or touch Postgres; errors never show the password.

use std::time::Duration;

use mongodb::error::{Error as MongoError, ErrorKind};
use mongodb::options::ClientOptions;

use crate::config::{redact_secrets, Secret};

/// A MongoDB connection string (or a file it names) that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{}", redact_secrets(&self.message()))]
pub struct MongoUrlError(#[source] pub MongoError);

impl MongoUrlError {
    /// The driver's own words, without its debugging decoration (labels, server response).
    fn message(&self) -> String {
        match self.0.kind.as_ref() {
            ErrorKind::InvalidArgument { message, .. } => message.clone(),
            ErrorKind::InvalidTlsConfig { message, .. } => {
                format!("TLS options (tlsCAFile, tlsCertificateKeyFile, ...): {message}")
            }
            other => other.to_string(),
        }
    }

    /// True when the string itself is wrong (bad syntax, unknown or invalid option, unreadable TLS
    /// file), as opposed to a failure to reach a server (a `mongodb+srv` DNS lookup).
    pub fn is_bad_option(&self) -> bool {
        matches!(
            self.0.kind.as_ref(),
            ErrorKind::InvalidArgument { .. } | ErrorKind::InvalidTlsConfig { .. }
        )
    }
}

/// A MongoDB error in the driver's own words, without its debugging decoration (labels, server
/// response): `authentication failed: SCRAM failure: Authentication failed.`, `Authentication
/// failed. (AuthenticationFailed, code 18)`, a server-selection timeout's message.
pub fn describe_mongo(e: &MongoError) -> String {
    let text = match e.kind.as_ref() {
        ErrorKind::Authentication { message, .. } => format!("authentication failed: {message}"),
        ErrorKind::Command(c) => format!("{} ({}, code {})", c.message, c.code_name, c.code),
        ErrorKind::InvalidArgument { message, .. } => message.clone(),
        ErrorKind::ServerSelection { message, .. } => message.clone(),
        other => other.to_string(),
    };
    redact_secrets(&text).into_owned()
}

/// Parses `url`; `default_selection_timeout` applies unless the URL sets
/// `serverSelectionTimeoutMS`.
pub async fn mongo_options(
    url: &Secret,
    default_selection_timeout: Option<Duration>,
) -> Result<ClientOptions, MongoUrlError> {
    let mut options = ClientOptions::parse(url.expose())
        .await
        .map_err(MongoUrlError)?;
    if options.server_selection_timeout.is_none() {
        options.server_selection_timeout = default_selection_timeout;
    }
    Ok(options)
}

/// A client for `options`; TLS certificate files are read here. No server is contacted yet.
pub fn mongo_client(options: ClientOptions) -> Result<mongodb::Client, MongoUrlError> {
    mongodb::Client::with_options(options).map_err(MongoUrlError)
}

/// `mongo_options` then `mongo_client`.
pub async fn open_mongo(
    url: &Secret,
    default_selection_timeout: Option<Duration>,
) -> Result<mongodb::Client, MongoUrlError> {
    mongo_client(mongo_options(url, default_selection_timeout).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_url_without_a_host_is_a_bad_option_and_hides_the_password() {
        let err = open_mongo(&Secret::new("mongodb://app:hunter2@/db"), None)
            .await
            .expect_err("no host");
        assert!(err.is_bad_option(), "{err:?}");
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }

    #[tokio::test]
    async fn an_unreadable_ca_file_is_a_bad_option() {
        let err = open_mongo(
            &Secret::new("mongodb://127.0.0.1:1/?tls=true&tlsCAFile=/nonexistent/ca.pem"),
            None,
        )
        .await
        .expect_err("no CA file");
        assert!(err.is_bad_option(), "{err:?}");
        assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
    }
}
