//! Test helpers: start the simulator in-process on port 0 and connect the official driver.

#![allow(dead_code)]

use mongodb::Client;
use std::future::Future;
use std::time::{Duration, Instant};

pub struct Sim {
    pub handle: mongosim::SimHandle,
    pub client: Client,
}

pub async fn start() -> Sim {
    start_with(mongosim::SimConfig::default()).await
}

pub async fn start_with(config: mongosim::SimConfig) -> Sim {
    let handle = mongosim::start(config).await.expect("simulator starts");
    let client = Client::with_uri_str(handle.uri())
        .await
        .expect("driver accepts the URI");
    Sim { handle, client }
}

/// Polls `check` until it returns `Some`, failing after `timeout`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The `_data` string of a resume token.
pub fn token_data(token: &mongodb::change_stream::event::ResumeToken) -> String {
    match bson::to_bson(token) {
        Ok(bson::Bson::Document(d)) => d.get_str("_data").map(str::to_owned).unwrap_or_default(),
        _ => String::new(),
    }
}

/// Seconds of the cluster time encoded in a token's first 18 hex characters.
pub fn token_seconds(data: &str) -> u32 {
    u32::from_str_radix(&data[2..10], 16).unwrap_or(0)
}

pub fn unix_now() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as u32)
        .unwrap_or(0)
}

/// The error code of a driver error, if it carries one.
pub fn code_of(err: &mongodb::error::Error) -> Option<i32> {
    use mongodb::error::{ErrorKind, WriteFailure};
    match &*err.kind {
        ErrorKind::Command(c) => Some(c.code),
        ErrorKind::Write(WriteFailure::WriteError(e)) => Some(e.code),
        _ => None,
    }
}
