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
