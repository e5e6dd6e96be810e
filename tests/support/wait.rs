//! Waiting for a condition with a deadline (tests never sleep for a fixed time where a condition
//! can be awaited) and a one-number query shorthand.

use std::future::Future;
use std::time::{Duration, Instant};

/// Polls `check` until it returns true; panics naming `what` when `timeout` passes first.
pub async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if check().await {
            return;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The single bigint `sql` returns, or -1 when the query fails (e.g. a table not created yet).
pub async fn count(client: &tokio_postgres::Client, sql: &str) -> i64 {
    client
        .query_one(sql, &[])
        .await
        .map(|r| r.get::<_, i64>(0))
        .unwrap_or(-1)
}
