//! A Postgres database per test on the server `PG_URL` names (default: the local trust-auth
//! server), created fresh and dropped — `WITH (FORCE)`, from a thread of its own — when the guard
//! drops, so a panicking test leaves nothing behind and tests run in parallel; likewise a login
//! role per test (`TestRole`).

use mongo2pg::sink::name::quote_ident;
use tokio_postgres::{Client, NoTls};

use super::{repo_path, unique_name};

/// The test server's connection string without a database: `PG_URL`, or the local server.
pub fn server_url() -> String {
    std::env::var("PG_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
        .unwrap_or_else(|| "host=127.0.0.1 port=5432 user=postgres".to_string())
}

/// The maintenance database of the test server.
pub fn admin_url() -> String {
    format!("{} dbname=postgres", server_url())
}

/// A client whose connection is driven in the background.
pub async fn connect(url: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .expect("connect to the test postgres (PG_URL)");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// A database created for one test and dropped when this guard is dropped.
pub struct TestDb {
    pub name: String,
}

impl TestDb {
    pub async fn create(tag: &str) -> TestDb {
        let name = unique_name(tag);
        connect(&admin_url())
            .await
            .batch_execute(&format!("CREATE DATABASE {}", quote_ident(&name)))
            .await
            .expect("create test database");
        TestDb { name }
    }

    /// Connection string of this database.
    pub fn url(&self) -> String {
        format!("{} dbname={}", server_url(), self.name)
    }

    pub async fn client(&self) -> Client {
        connect(&self.url()).await
    }

    /// Applies the reference marketplace schema.
    pub async fn apply_reference_schema(&self) {
        let sql = std::fs::read_to_string(repo_path("deploy/marketplace/schema.sql"))
            .expect("read schema.sql");
        self.client()
            .await
            .batch_execute(&sql)
            .await
            .expect("apply schema.sql");
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let sql = format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            quote_ident(&self.name)
        );
        // Drop may run inside a test's runtime: use a thread with a runtime of its own.
        let dropper = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                if let Ok((admin, connection)) = tokio_postgres::connect(&admin_url(), NoTls).await
                {
                    tokio::spawn(connection);
                    let _ = admin.batch_execute(&sql).await;
                }
            });
        });
        let _ = dropper.join();
    }
}

/// A login role created for one test (roles are server-wide, so its name is unique) and dropped
/// when the guard drops; declare it before the `TestDb`s it has privileges in, so they are
/// dropped first.
pub struct TestRole {
    pub name: String,
}

impl TestRole {
    pub async fn create(tag: &str) -> TestRole {
        let name = unique_name(tag);
        connect(&admin_url())
            .await
            .batch_execute(&format!("CREATE ROLE {} LOGIN", quote_ident(&name)))
            .await
            .expect("create test role");
        TestRole { name }
    }

    /// Connection string of `db` as this role.
    pub fn url(&self, db: &TestDb) -> String {
        format!("{} user={}", db.url(), self.name)
    }
}

impl Drop for TestRole {
    fn drop(&mut self) {
        let sql = format!("DROP ROLE IF EXISTS {}", quote_ident(&self.name));
        let dropper = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                if let Ok((admin, connection)) = tokio_postgres::connect(&admin_url(), NoTls).await
                {
                    tokio::spawn(connection);
                    let _ = admin.batch_execute(&sql).await;
                }
            });
        });
        let _ = dropper.join();
    }
}
