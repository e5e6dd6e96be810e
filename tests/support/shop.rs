//! The fixture of the snapshot, gaps, tokens and verify tests: a fresh database per test with a
//! small shop schema (users, orders with money and a child table) and the control tables, the
//! compiled mapping for it, and a MongoDB source (`Source`), each test with a MongoDB database of
//! its own. `Env` runs copies, retries, verify and a catch-up stream against them.

use std::time::{Duration, Instant};

use mongo2pg::config::{CompiledMapping, Config};
use mongo2pg::event::{ClusterTime, Position};
use mongo2pg::mapping::CollectionRules;
use mongo2pg::ops::verify::{VerifyOptions, VerifyReport};
use mongo2pg::sink::catalogue::Catalogue;
use mongo2pg::sink::{BatchItem, ControlNames, Sink};
use mongo2pg::snapshot::{SnapshotContext, SnapshotOptions, SnapshotReport};
use mongo2pg::source::{ChangeSource, SourceItem, StartAt, StreamOptions};
use tokio_postgres::Client;

use super::{unique_name, wait_until, Source, TestDb};

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
database = "@DATABASE@"

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

/// Everything a recovery test needs.
pub struct Env {
    pub db: TestDb,
    pub pg: Client,
    /// mongosim, or the replica set of `MONGO_URL`.
    pub source: Source,
    /// The MongoDB database of this test.
    pub database: String,
    pub mongo: mongodb::Client,
    pub mapping: CompiledMapping,
    pub catalogue: Catalogue,
    pub names: ControlNames,
}

impl Env {
    pub async fn start(test: &str) -> Env {
        let db = TestDb::create(test).await;
        let mut pg = db.client().await;
        pg.batch_execute(SCHEMA).await.expect("apply test schema");
        let database = unique_name("shop");
        let mapping_text = MAPPING.replace("@DATABASE@", &database);
        let config =
            Config::from_toml_str(&mapping_text, std::path::Path::new("recovery_test.toml"))
                .expect("parse mapping");
        let names = mongo2pg::replicator::control_names(&config);
        mongo2pg::sink::migrate(&mut pg, &names)
            .await
            .expect("migrate control tables");
        let catalogue = mongo2pg::sink::catalogue::load(&pg, &config.mapped_tables())
            .await
            .expect("catalogue");
        let mapping = config.compile(&catalogue).expect("compile mapping");
        let source = Source::start().await;
        let mongo = source.client.clone();
        Env {
            db,
            pg,
            source,
            database,
            mongo,
            mapping,
            catalogue,
            names,
        }
    }

    /// The simulator, for tests that need its fault controls.
    pub fn sim(&self) -> &mongosim::SimHandle {
        self.source.sim()
    }

    pub fn rules(&self, collection: &str) -> &CollectionRules {
        self.mapping.rules(collection).expect("mapped collection")
    }

    pub fn coll(&self, name: &str) -> mongodb::Collection<bson::Document> {
        self.mongo.database(&self.database).collection(name)
    }

    /// A second Postgres connection to the test database.
    pub async fn connect(&self) -> Client {
        self.db.client().await
    }

    pub async fn count(&self, sql: &str) -> i64 {
        self.pg
            .query_one(sql, &[])
            .await
            .expect("count query")
            .get(0)
    }

    pub fn sink(&self) -> Sink {
        Sink::new(self.catalogue.clone(), self.names.clone())
            .with_rules(self.mapping.collections.values())
    }

    /// Runs the initial snapshot of `collection` on fresh connections.
    /// The test database's URL, for copies that open extra page writers.
    pub fn pg_url(&self) -> mongo2pg::sink::connect::PgUrl {
        mongo2pg::sink::connect::PgUrl::parse(&mongo2pg::config::Secret::new(self.db.url()))
            .expect("test database url")
    }

    /// An initial copy, with as many page writers as `options.writers` says.
    pub async fn snapshot(&self, collection: &str, options: &SnapshotOptions) -> SnapshotReport {
        let mut pg = self.connect().await;
        let mut sink = self.sink();
        let url = self.pg_url();
        let ctx = SnapshotContext {
            mongo: &self.mongo,
            database: &self.database,
            pg: &mut pg,
            sink: &mut sink,
            names: &self.names,
            pg_url: Some(&url),
        };
        mongo2pg::snapshot::initial_snapshot(ctx, self.rules(collection), options, &mut |_| {})
            .await
            .expect("snapshot")
    }

    pub async fn verify(&self, collections: &[&str], group_by: &[(&str, &str)]) -> VerifyReport {
        let rules: Vec<&CollectionRules> = collections.iter().map(|c| self.rules(c)).collect();
        let options = VerifyOptions {
            group_by: group_by
                .iter()
                .map(|(c, g)| (c.to_string(), g.to_string()))
                .collect(),
            ..VerifyOptions::default()
        };
        mongo2pg::ops::verify::verify(
            &self.mongo.database(&self.database),
            &self.pg,
            &rules,
            &options,
        )
        .await
        .expect("verify")
    }

    /// Runs one background gap-retry round with no backoff.
    pub async fn retry_gaps(&self) -> mongo2pg::gap_retry::RetryReport {
        let mut pg = self.connect().await;
        let mut sink = self.sink();
        let mut ctx = mongo2pg::gap_retry::RetryContext {
            mongo: &self.mongo,
            pg: &mut pg,
            sink: &mut sink,
            names: &self.names,
            mapping: &self.mapping,
        };
        let options = mongo2pg::gap_retry::RetryOptions {
            min_delay: Duration::ZERO,
            ..Default::default()
        };
        mongo2pg::gap_retry::retry_open_gaps(&mut ctx, &options)
            .await
            .expect("retry gaps")
    }

    /// Waits until no other session is connected to the test database (an aborted task's
    /// connection has gone, so whatever it committed is visible and nothing else will commit).
    pub async fn wait_for_other_sessions_to_end(&self) {
        let sql = "select count(*) from pg_stat_activity where datname = current_database() and pid <> pg_backend_pid()";
        wait_until("other sessions to end", Duration::from_secs(10), || async {
            self.pg
                .query_one(sql, &[])
                .await
                .map(|r| r.get::<_, i64>(0) == 0)
                .unwrap_or(false)
        })
        .await;
    }

    /// MongoDB's cluster time now (after every write acknowledged so far).
    pub async fn mongo_now(&self) -> ClusterTime {
        mongo2pg::ops::tokens::mongo_cluster_time(&self.mongo)
            .await
            .expect("cluster time")
    }

    /// The stored checkpoint row of a stream.
    pub async fn checkpoint(&self, stream: &str) -> Option<mongo2pg::sink::Checkpoint> {
        mongo2pg::sink::checkpoint::load(&self.pg, &self.names.checkpoints, stream)
            .await
            .expect("checkpoint")
    }

    /// Streams `collection` from its stored position (token, or cluster time after a reset to a
    /// time) through the sink until the checkpoint has reached `until`.
    pub async fn catch_up(&self, collection: &str, until: ClusterTime) {
        let stored = self
            .checkpoint(collection)
            .await
            .expect("a checkpoint to stream from");
        let start = match (stored.token().expect("stored token"), stored.cluster_time) {
            (Some(token), _) => StartAt::Token(token),
            (None, Some(t)) => StartAt::Time(t),
            (None, None) => StartAt::Now,
        };
        let options = StreamOptions {
            max_await: Duration::from_millis(200),
            ..StreamOptions::default()
        };
        let mut source =
            ChangeSource::open(&self.mongo, &self.database, collection, &start, &options)
                .await
                .expect("open stream");
        let mut pg = self.connect().await;
        let mut sink = self.sink();
        let rules = self.rules(collection).clone();
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut items: Vec<BatchItem> = Vec::new();
        loop {
            assert!(
                Instant::now() < deadline,
                "stream of {collection} did not catch up to {until:?}"
            );
            let (end, flush): (Option<Position>, bool) =
                match source.next().await.expect("stream item") {
                    SourceItem::Event(ev) => {
                        let end = ev.resume_token.clone().map(|token| Position {
                            token,
                            cluster_time: ev.cluster_time,
                        });
                        let mapped = mongo2pg::mapping::map_event(&rules, &ev);
                        items.push(BatchItem { event: *ev, mapped });
                        (end, items.len() >= 20)
                    }
                    SourceItem::Heartbeat(p) => (Some(p), true),
                    SourceItem::Malformed { raw, .. } => panic!("malformed event {raw}"),
                };
            if flush {
                let reached = end.as_ref().is_some_and(|p| p.cluster_time >= until);
                sink.apply_batch(
                    &mut pg,
                    collection,
                    stored.epoch,
                    std::mem::take(&mut items),
                    end,
                )
                .await
                .expect("apply batch");
                if reached {
                    return;
                }
            }
        }
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
