//! The in-app dual-write comparison: N users (each with an email, points and two passkeys, so one
//! change event writes three rows) (a) replicated by mongo2pg end to end, inserted in chunks of
//! 1,000 and timed until every user is in Postgres, and (b) written straight to a second fresh
//! database with the same schema, one autocommit INSERT per user row and per passkey row.

use std::time::{Duration, Instant};

use bson::{doc, oid::ObjectId, Document};
use mongo2pg::config::SnapshotMode;

use crate::common::*;
use crate::support::{self, TestDb};

pub struct DualWrite {
    pub replicated: Replicated,
    pub baseline: Duration,
}

pub async fn run(sim: &mongosim::SimHandle, n: usize) -> BenchResult<DualWrite> {
    let users = workload(n);
    let (repl_db, base_db) = (
        TestDb::create("bench_repl").await,
        TestDb::create("bench_base").await,
    );
    repl_db.apply_reference_schema().await;
    base_db.apply_reference_schema().await;
    let result = async {
        let replicated = replicate(&users, &repl_db.url(), &sim.uri()).await?;
        let baseline = run_baseline(&users, &base_db.url()).await?;
        BenchResult::Ok(DualWrite {
            replicated,
            baseline,
        })
    }
    .await;
    drop(repl_db);
    drop(base_db);
    result
}

/// One user of the workload, kept in both shapes so (a) and (b) write the same data.
struct User {
    oid: ObjectId,
    email: String,
    points: i32,
    passkeys: [(String, String); 2],
}

impl User {
    fn document(&self) -> Document {
        doc! {
            "_id": self.oid,
            "email": &self.email,
            "points": self.points,
            "passkeys": [
                {"credentialID": &self.passkeys[0].0, "publicKey": &self.passkeys[0].1, "counter": 0_i64, "transports": ["usb"]},
                {"credentialID": &self.passkeys[1].0, "publicKey": &self.passkeys[1].1, "counter": 0_i64, "transports": ["internal"]},
            ],
        }
    }
}

fn workload(n: usize) -> Vec<User> {
    (0..n)
        .map(|i| User {
            oid: ObjectId::new(),
            email: format!("user{i}@bench.example"),
            points: (i % 1_000) as i32,
            passkeys: [
                (format!("cred-{i}-a"), format!("pk-{i}-a")),
                (format!("cred-{i}-b"), format!("pk-{i}-b")),
            ],
        })
        .collect()
}

/// Timings of the mongo2pg run.
pub struct Replicated {
    /// First insert_many sent until the last user is visible in Postgres.
    pub end_to_end: Duration,
}

/// (a) mongo2pg end to end against mongosim in-process.
async fn replicate(users: &[User], pg_url: &str, mongo_uri: &str) -> BenchResult<Replicated> {
    let mongo_db = mongo_db("users");
    let config = reference_config(&mongo_db, SnapshotMode::Never)?;
    migrate(pg_url, &config).await?;
    let replicator = start_replicator(mongo_uri, pg_url, &config, None).await?;

    let outcome = async {
        let pg = support::connect(pg_url).await;
        wait_streams_pinned(&pg).await?;

        let mongo = mongodb::Client::with_uri_str(mongo_uri).await?;
        let coll = mongo.database(&mongo_db).collection::<Document>("users");
        let docs: Vec<Vec<Document>> = users
            .chunks(CHUNK)
            .map(|c| c.iter().map(User::document).collect())
            .collect();
        let want = users.len() as i64;

        let started = Instant::now();
        for chunk in docs {
            coll.insert_many(chunk).await?;
        }
        wait_for_count(&pg, "SELECT count(*) FROM users", want).await?;
        let end_to_end = started.elapsed();

        // Child rows commit in the same transaction as their parent; check they all arrived.
        let passkeys = count(&pg, "SELECT count(*) FROM user_passkeys").await?;
        if passkeys != 2 * want {
            return Err(format!("expected {} passkeys, found {passkeys}", 2 * want).into());
        }
        Ok(Replicated { end_to_end })
    }
    .await;
    replicator.shutdown().await;
    outcome
}

/// (b) the dual-write baseline: one autocommit round trip per user row and per passkey row.
async fn run_baseline(users: &[User], pg_url: &str) -> BenchResult<Duration> {
    let pg = support::connect(pg_url).await;
    let insert_user = pg
        .prepare(
            "INSERT INTO users (id, legacy_object_id, email, points, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, now(), now())",
        )
        .await?;
    let insert_passkey = pg
        .prepare(
            "INSERT INTO user_passkeys (id, user_id, position, credential_id, public_key, counter, transports) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .await?;
    let started = Instant::now();
    for user in users {
        let id = uuid::Uuid::now_v7();
        pg.execute(
            &insert_user,
            &[&id, &user.oid.to_hex(), &user.email, &user.points],
        )
        .await?;
        for (position, (cred, key)) in user.passkeys.iter().enumerate() {
            let transports = vec![if position == 0 { "usb" } else { "internal" }];
            pg.execute(
                &insert_passkey,
                &[
                    &uuid::Uuid::now_v7(),
                    &id,
                    &(position as i32),
                    cred,
                    key,
                    &0_i64,
                    &transports,
                ],
            )
            .await?;
        }
    }
    let elapsed = started.elapsed();
    let n = users.len() as i64;
    let (u, p) = (
        count(&pg, "SELECT count(*) FROM users").await?,
        count(&pg, "SELECT count(*) FROM user_passkeys").await?,
    );
    if (u, p) != (n, 2 * n) {
        return Err(format!(
            "baseline wrote {u} users and {p} passkeys, expected {n} and {}",
            2 * n
        )
        .into());
    }
    Ok(elapsed)
}
