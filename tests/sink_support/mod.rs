//! Shared helpers of the sink integration tests: a fresh Postgres database per test (dropped when
//! the guard goes out of scope, even after a failed assertion) and small query shorthands.

#![allow(dead_code)]

use tokio_postgres::{Client, NoTls};

/// Base connection string of the test Postgres (trust auth); override with `PG_URL`.
pub fn base_url() -> String {
    std::env::var("PG_URL").unwrap_or_else(|_| "host=127.0.0.1 port=5432 user=postgres".to_string())
}

/// A database created for one test and dropped (forcefully) when this guard is dropped.
pub struct TestDb {
    pub name: String,
}

impl TestDb {
    pub async fn create(test: &str) -> TestDb {
        let suffix = uuid::Uuid::new_v4().simple().to_string();
        let name = format!("m2p_sink_{}_{}", test, &suffix[..12]);
        let admin = connect_to(&format!("{} dbname=postgres", base_url())).await;
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create test database");
        TestDb { name }
    }

    pub fn url(&self) -> String {
        format!("{} dbname={}", base_url(), self.name)
    }

    pub async fn connect(&self) -> Client {
        connect_to(&self.url()).await
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop runs inside the test's runtime: use a separate thread with its own runtime.
        let handle = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime for dropping the test database");
            rt.block_on(async move {
                let admin = connect_to(&format!("{} dbname=postgres", base_url())).await;
                let _ = admin
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await;
            });
        });
        let _ = handle.join();
    }
}

pub async fn connect_to(url: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .expect("connect to test postgres");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}
