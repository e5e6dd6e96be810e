//! Shared fixture of the recovery tests (snapshot, gaps, tokens, verify): a fresh Postgres
//! database per test with a small shop schema (users, orders with money and a child table) and the
//! control tables, the compiled mapping for it, and an in-process mongosim reached over TCP.

#![allow(dead_code)]

use std::time::{Duration, Instant};

use mongo2pg::config::{CompiledMapping, Config};
use mongo2pg::mapping::CollectionRules;
use mongo2pg::sink::ControlNames;
use tokio_postgres::{Client, NoTls};

pub const DATABASE: &str = "shop";

pub const SCHEMA: &str = r#"
CREATE EXTENSION IF NOT EXISTS pgcrypto;
CREATE TABLE users (
    id uuid PRIMARY KEY,
    legacy_object_id text NOT NULL UNIQUE,
    email text,
    name text,
    source_version bigint
);
CREATE TABLE orders (
    id uuid PRIMARY KEY,
    legacy_object_id text NOT NULL UNIQUE,
    user_id uuid NOT NULL REFERENCES users(id),
    amount numeric(38,18) NOT NULL,
    currency text NOT NULL,
    status text NOT NULL,
    placed_at timestamptz,
    source_version bigint
);
CREATE TABLE order_items (
    order_id uuid NOT NULL REFERENCES orders(id) ON DELETE CASCADE,
    sku text NOT NULL,
    qty integer NOT NULL
);
"#;

pub const MAPPING: &str = r#"
[target]
schema = "mongo2pg"
id_map = "public.id_map"
gaps = "public.pg_dualwrite_gaps"

[source]
database = "shop"

[snapshot]
mode = "initial"
page_size = 10

[collections.users]
table = "users"
version_column = "source_version"
columns = [
  { column = "email", path = "email", type = "text" },
  { column = "name", path = "name", type = "text" },
]

[collections.orders]
table = "orders"
version_column = "source_version"
columns = [
  { column = "amount", path = "amount", type = "numeric", required = true },
  { column = "currency", path = "currency", type = "text", required = true },
  { column = "status", path = "status", type = "text", required = true },
  { column = "placed_at", path = "placedAt", type = "timestamptz" },
]
references = [
  { column = "user_id", path = "userId", collection = "users", required = true },
]

[[collections.orders.children]]
table = "order_items"
path = "items"
parent_column = "order_id"
columns = [
  { column = "sku", path = "sku", type = "text", required = true },
  { column = "qty", path = "qty", type = "integer", required = true },
]
"#;

pub fn base_url() -> String {
    std::env::var("PG_URL").unwrap_or_else(|_| "host=127.0.0.1 port=5432 user=postgres".to_string())
}

pub async fn connect_to(url: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await.expect("connect to test postgres");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// A database created for one test and dropped when the guard is dropped.
pub struct TestDb {
    pub name: String,
}

impl TestDb {
    pub async fn create(test: &str) -> TestDb {
        let suffix = uuid::Uuid::new_v4().simple().to_string();
        let name = format!("m2p_rec_{}_{}", test, &suffix[..10]);
        let admin = connect_to(&format!("{} dbname=postgres", base_url())).await;
        admin.batch_execute(&format!("CREATE DATABASE {name}")).await.expect("create test database");
        TestDb { name }
    }

    pub fn url(&self) -> String {
        format!("{} dbname={}", base_url(), self.name)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        let handle = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
            rt.block_on(async move {
                let admin = connect_to(&format!("{} dbname=postgres", base_url())).await;
                let _ = admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await;
            });
        });
        let _ = handle.join();
    }
}

/// Everything a recovery test needs.
pub struct Env {
    pub db: TestDb,
    pub pg: Client,
    pub sim: mongosim::SimHandle,
    pub mongo: mongodb::Client,
    pub mapping: CompiledMapping,
    pub names: ControlNames,
}

impl Env {
    pub async fn start(test: &str) -> Env {
        let db = TestDb::create(test).await;
        let mut pg = connect_to(&db.url()).await;
        pg.batch_execute(SCHEMA).await.expect("apply test schema");
        let config = Config::from_toml_str(MAPPING, std::path::Path::new("recovery_test.toml")).expect("parse mapping");
        let names = mongo2pg::ops::control_names(&config.target);
        mongo2pg::sink::migrate(&mut pg, &names).await.expect("migrate control tables");
        let catalogue = mongo2pg::sink::catalogue::load(&pg, &config.mapped_tables()).await.expect("catalogue");
        let mapping = config.compile(&catalogue).expect("compile mapping");
        let sim = mongosim::start(mongosim::SimConfig::default()).await.expect("start mongosim");
        let mongo = mongodb::Client::with_uri_str(sim.uri()).await.expect("mongo client");
        Env { db, pg, sim, mongo, mapping, names }
    }

    pub fn rules(&self, collection: &str) -> &CollectionRules {
        self.mapping.rules(collection).expect("mapped collection")
    }

    pub fn coll(&self, name: &str) -> mongodb::Collection<bson::Document> {
        self.mongo.database(DATABASE).collection(name)
    }

    /// A second Postgres connection to the test database.
    pub async fn connect(&self) -> Client {
        connect_to(&self.db.url()).await
    }

    pub async fn count(&self, sql: &str) -> i64 {
        self.pg.query_one(sql, &[]).await.expect("count query").get(0)
    }
}

/// Polls `check` until it returns true or the deadline passes (then panics with `what`).
pub async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A deterministic ObjectId from a small number (so tests can name documents).
pub fn oid(n: u32) -> bson::oid::ObjectId {
    let mut bytes = [0u8; 12];
    bytes[0] = 0x65;
    bytes[8..12].copy_from_slice(&n.to_be_bytes());
    bson::oid::ObjectId::from_bytes(bytes)
}

pub fn user_doc(n: u32) -> bson::Document {
    bson::doc! {"_id": oid(n), "email": format!("u{n}@example.com"), "name": format!("User {n}")}
}

/// An order of user `user` with an exact decimal amount and two items.
pub fn order_doc(n: u32, user: u32, amount: &str, currency: &str, status: &str) -> bson::Document {
    let amount: bson::Decimal128 = amount.parse().expect("decimal");
    bson::doc! {
        "_id": oid(1_000_000 + n),
        "userId": oid(user),
        "amount": amount,
        "currency": currency,
        "status": status,
        "placedAt": bson::DateTime::from_millis(1_700_000_000_000 + i64::from(n) * 1000),
        "items": [{"sku": format!("sku-{n}"), "qty": 1}, {"sku": "extra", "qty": 2}],
    }
}
