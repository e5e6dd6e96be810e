//! Shared harness of the integration tests: a fresh Postgres database per test, a MongoDB source
//! (mongosim started in-process on port 0, or a real replica set from `MONGO_URL`), the reference
//! marketplace schema and mapping, and condition polling instead of sleeps.
#![allow(dead_code)]

use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use mongo2pg::config::{Config, Secret, SnapshotMode};
use mongo2pg::replicator::{self, Replicator, RunSettings};

/// The server every test database is created on.
pub const PG_ADMIN_URL: &str = "host=127.0.0.1 port=5432 user=postgres dbname=postgres";

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A name unique to this process and call, usable as a database name.
pub fn unique_name(tag: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("m2p_{tag}_{}_{n}_{nanos:x}", std::process::id())
}

/// A fresh Postgres database, dropped when the test calls `drop_db`.
pub struct TestDb {
    pub name: String,
    pub url: String,
}

pub async fn pg_connect(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect to the local postgres");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

impl TestDb {
    pub async fn create(tag: &str) -> TestDb {
        let name = unique_name(tag);
        let admin = pg_connect(PG_ADMIN_URL).await;
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create test database");
        let url = format!("host=127.0.0.1 port=5432 user=postgres dbname={name}");
        TestDb { name, url }
    }

    pub async fn client(&self) -> tokio_postgres::Client {
        pg_connect(&self.url).await
    }

    /// Apply the reference marketplace schema.
    pub async fn apply_reference_schema(&self) {
        let sql = std::fs::read_to_string(repo_path("deploy/marketplace/schema.sql"))
            .expect("read schema.sql");
        self.client()
            .await
            .batch_execute(&sql)
            .await
            .expect("apply schema.sql");
    }

    pub async fn drop_db(self) {
        let admin = pg_connect(PG_ADMIN_URL).await;
        let _ = admin
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .await;
    }
}

pub fn repo_path(rel: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// The MongoDB side of a test.
pub struct Source {
    pub uri: String,
    /// Present when the test runs against mongosim (the default).
    pub sim: Option<mongosim::SimHandle>,
    pub client: mongodb::Client,
}

impl Source {
    /// mongosim in-process, or the replica set named by `MONGO_URL`.
    pub async fn start() -> Source {
        init_tracing();
        let (uri, sim) = match std::env::var("MONGO_URL") {
            Ok(url) if !url.is_empty() => (url, None),
            _ => {
                let sim = mongosim::start(mongosim::SimConfig::default())
                    .await
                    .expect("start mongosim");
                (sim.uri(), Some(sim))
            }
        };
        let client = mongodb::Client::with_uri_str(&uri)
            .await
            .expect("mongodb client");
        Source { uri, sim, client }
    }

    /// The simulator, for tests that need its fault controls.
    pub fn sim(&self) -> &mongosim::SimHandle {
        self.sim
            .as_ref()
            .expect("this test needs mongosim's controls (unset MONGO_URL)")
    }

    pub fn coll(&self, db: &str, name: &str) -> mongodb::Collection<bson::Document> {
        self.client.database(db).collection(name)
    }

    pub async fn stop(self) {
        if let Some(sim) = self.sim {
            sim.shutdown().await;
        }
    }
}

/// The reference mapping, pointed at a database of its own, without the initial snapshot and
/// with short batch timings so tests converge quickly.
pub fn reference_config(mongo_db: &str) -> Config {
    let path = repo_path("deploy/marketplace/mapping.toml");
    let mut config = Config::from_path(&path).expect("reference mapping parses");
    config.source.database = mongo_db.to_string();
    config.snapshot.mode = SnapshotMode::Never;
    config.stream.batch_max_wait_ms = 50;
    config.stream.max_await_ms = 200;
    config.stream.heartbeat_interval_ms = 200;
    config
}

/// Migrate the control tables of `config` into `db`.
pub async fn migrate(db: &TestDb, config: &Config) {
    let mut client = db.client().await;
    mongo2pg::sink::migrate::migrate(&mut client, &replicator::control_names(config))
        .await
        .expect("migrate control tables");
}

/// Start the replicator in-process.
pub async fn start_replicator(source: &Source, db: &TestDb, config: &Config) -> Replicator {
    replicator::start(RunSettings {
        mongo_url: Secret::new(source.uri.clone()),
        pg_url: Secret::new(db.url.clone()),
        config: config.clone(),
        metrics_addr: None,
        holder: "test".into(),
    })
    .await
    .expect("replicator starts")
}

/// Poll `check` until it returns true or `timeout` passes; panics naming `what` on timeout.
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

/// Count rows matching a SQL query that returns one bigint.
pub async fn count(client: &tokio_postgres::Client, sql: &str) -> i64 {
    client
        .query_one(sql, &[])
        .await
        .map(|r| r.get::<_, i64>(0))
        .unwrap_or(-1)
}

/// Users as (legacy id, points, email) from MongoDB, sorted.
pub async fn mongo_users(source: &Source, db: &str) -> Vec<(String, i64, Option<String>)> {
    use futures::TryStreamExt;
    let docs: Vec<bson::Document> = source
        .coll(db, "users")
        .find(bson::doc! {})
        .await
        .expect("find users")
        .try_collect()
        .await
        .expect("read users");
    let mut out: Vec<(String, i64, Option<String>)> = docs
        .iter()
        .map(|d| {
            let id = d
                .get_object_id("_id")
                .map(|o| o.to_hex())
                .unwrap_or_default();
            let points = match d.get("points") {
                Some(bson::Bson::Int32(v)) => i64::from(*v),
                Some(bson::Bson::Int64(v)) => *v,
                _ => 0,
            };
            (id, points, d.get_str("email").ok().map(str::to_string))
        })
        .collect();
    out.sort();
    out
}

/// Users as (legacy id, points, email) from Postgres, sorted.
pub async fn pg_users(pg: &tokio_postgres::Client) -> Vec<(String, i64, Option<String>)> {
    let rows = pg
        .query(
            "SELECT legacy_object_id, points::bigint, email FROM users ORDER BY legacy_object_id",
            &[],
        )
        .await
        .unwrap_or_default();
    let mut out: Vec<(String, i64, Option<String>)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    out.sort();
    out
}

/// Wait until Postgres holds exactly MongoDB's users, then return them.
pub async fn wait_users_equal(
    source: &Source,
    mdb: &str,
    pg: &tokio_postgres::Client,
    timeout: Duration,
) {
    let deadline = Instant::now() + timeout;
    loop {
        let m = mongo_users(source, mdb).await;
        let p = pg_users(pg).await;
        if m == p {
            return;
        }
        if Instant::now() > deadline {
            let missing: Vec<_> = m.iter().filter(|x| !p.contains(x)).take(5).collect();
            let extra: Vec<_> = p.iter().filter(|x| !m.contains(x)).take(5).collect();
            panic!(
                "postgres never matched mongodb: {} vs {} users; missing/different {missing:?}; extra/stale {extra:?}",
                m.len(),
                p.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The reference mapping file with the database name and snapshot mode replaced, written to a
/// temporary file for a child `mongo2pg` process.
pub fn reference_mapping_file(mongo_db: &str) -> tempfile::NamedTempFile {
    use std::io::Write;
    let text = std::fs::read_to_string(repo_path("deploy/marketplace/mapping.toml"))
        .expect("read mapping");
    let text = text
        .replace(
            "database = \"marketplace\"",
            &format!("database = \"{mongo_db}\""),
        )
        .replace("mode = \"initial\"", "mode = \"never\"")
        .replace("batch_max_wait_ms = 200", "batch_max_wait_ms = 50");
    let mut f = tempfile::NamedTempFile::new().expect("temp file");
    f.write_all(text.as_bytes()).expect("write mapping");
    f
}

/// Route the replicator's logs to the test output (shown for failing tests); RUST_LOG filters.
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("mongo2pg=info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}
