//! Replication throughput benchmark: the same workload of N users (each with an email, points and
//! two passkeys) measured two ways in one run on this machine. (a) mongo2pg end to end: documents
//! inserted into mongosim in chunks of 1,000, timed until every user is in Postgres. (b) the
//! in-app dual-write baseline: one autocommit INSERT per user row and per passkey row, one round
//! trip each, prepared statements, into a second fresh database with the same schema. Prints a
//! small table with both rates and their ratio, and drops its databases at the end.
//!
//! Run with `cargo bench --bench replication`; `M2P_BENCH_USERS` overrides N (default 20,000).

use std::error::Error;
use std::time::{Duration, Instant};

use bson::{doc, oid::ObjectId, Document};
use mongo2pg::config::{Config, Secret, SnapshotMode};
use mongo2pg::replicator::{self, RunSettings};

#[path = "../tests/support/mod.rs"]
mod support;

use support::{repo_path, unique_name, TestDb};

type BenchResult<T> = Result<T, Box<dyn Error + Send + Sync>>;

const CHUNK: usize = 1_000;
const POLL: Duration = Duration::from_millis(20);
const REPLICATION_TIMEOUT: Duration = Duration::from_secs(600);

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

async fn count(client: &tokio_postgres::Client, sql: &str) -> BenchResult<i64> {
    Ok(client.query_one(sql, &[]).await?.get::<_, i64>(0))
}

/// Poll `sql` (one bigint) every 20 ms until it reaches `want`.
async fn wait_for_count(client: &tokio_postgres::Client, sql: &str, want: i64) -> BenchResult<()> {
    let deadline = Instant::now() + REPLICATION_TIMEOUT;
    loop {
        let have = count(client, sql).await?;
        if have >= want {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("timed out: {sql} reached {have}, wanted {want}").into());
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Timings of the mongo2pg run.
struct Replicated {
    /// First insert_many sent until the last user is visible in Postgres.
    end_to_end: Duration,
    /// First insert_many sent until the last insert_many acknowledged by MongoDB.
    source_writes: Duration,
}

/// (a) mongo2pg end to end against mongosim in-process.
async fn run_mongo2pg(users: &[User], pg_url: &str) -> BenchResult<Replicated> {
    let sim = mongosim::start(mongosim::SimConfig::default()).await?;
    let result = replicate(users, pg_url, &sim.uri()).await;
    sim.shutdown().await;
    result
}

async fn replicate(users: &[User], pg_url: &str, mongo_uri: &str) -> BenchResult<Replicated> {
    let config = Config::from_path(&repo_path("deploy/marketplace/mapping.toml"))?;
    replicate_with(users, pg_url, mongo_uri, config).await
}

/// (a') the same workload with the money core (users, payments, ledger) in one stream group: one
/// database-level change stream and one ordered pipeline instead of a stream per collection.
async fn run_mongo2pg_grouped(users: &[User], pg_url: &str) -> BenchResult<Replicated> {
    let sim = mongosim::start(mongosim::SimConfig::default()).await?;
    let mut config = Config::from_path(&repo_path("deploy/marketplace/mapping.toml"))?;
    config.streams.insert(
        "money".into(),
        mongo2pg::config::GroupConfig {
            collections: mongo2pg::config::Members::List(vec![
                "users".into(),
                "payments".into(),
                "fundsledgerentries".into(),
            ]),
        },
    );
    let result = replicate_with(users, pg_url, &sim.uri(), config).await;
    sim.shutdown().await;
    result
}

async fn replicate_with(
    users: &[User],
    pg_url: &str,
    mongo_uri: &str,
    mut config: Config,
) -> BenchResult<Replicated> {
    let mongo_db = unique_name("src");
    config.source.database = mongo_db.clone();
    config.snapshot.mode = SnapshotMode::Never;
    let streams = config.stream_specs().len() as i64;

    let pg_url = pg_url.to_string();
    let mut migrator = support::connect(&pg_url).await;
    mongo2pg::sink::migrate::migrate(&mut migrator, &replicator::control_names(&config)).await?;

    let replicator = replicator::start(RunSettings {
        mongo_url: Secret::new(mongo_uri.to_string()),
        pg_url: Secret::new(pg_url.clone()),
        config,
        metrics_addr: None,
        holder: "bench".into(),
    })
    .await?;

    let outcome = async {
        let pg = support::connect(&pg_url).await;
        wait_for_count(
            &pg,
            "SELECT count(*) FROM mongo2pg.checkpoints WHERE cluster_time IS NOT NULL",
            streams,
        )
        .await?;

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
        let source_writes = started.elapsed();
        wait_for_count(&pg, "SELECT count(*) FROM users", want).await?;
        let end_to_end = started.elapsed();

        // Child rows commit in the same transaction as their parent; check they all arrived.
        let passkeys = count(&pg, "SELECT count(*) FROM user_passkeys").await?;
        if passkeys != 2 * want {
            return Err(format!("expected {} passkeys, found {passkeys}", 2 * want).into());
        }
        Ok(Replicated {
            end_to_end,
            source_writes,
        })
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

fn rate(count: usize, d: Duration) -> f64 {
    count as f64 / d.as_secs_f64().max(f64::EPSILON)
}

#[tokio::main]
async fn main() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();

    let n: usize = std::env::var("M2P_BENCH_USERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let users = workload(n);
    let (repl_db, base_db) = (
        TestDb::create("bench_repl").await,
        TestDb::create("bench_base").await,
    );
    repl_db.apply_reference_schema().await;
    base_db.apply_reference_schema().await;

    let group_db = TestDb::create("bench_group").await;
    group_db.apply_reference_schema().await;
    let result: BenchResult<(Replicated, Duration, Replicated)> = async {
        let replicated = run_mongo2pg(&users, &repl_db.url()).await?;
        let baseline = run_baseline(&users, &base_db.url()).await?;
        let grouped = run_mongo2pg_grouped(&users, &group_db.url()).await?;
        Ok((replicated, baseline, grouped))
    }
    .await;
    drop(repl_db);
    drop(base_db);
    drop(group_db);

    let (replicated, baseline, grouped) = match result {
        Ok(r) => r,
        Err(e) => {
            eprintln!("benchmark failed: {e}");
            std::process::exit(1);
        }
    };
    let m2p = rate(n, replicated.end_to_end);
    let base_docs = rate(n, baseline);
    let base_rows = rate(3 * n, baseline);
    println!();
    println!(
        "replication benchmark: {n} users, 2 passkeys each ({} rows)",
        3 * n
    );
    println!("{:<52} {:>12}", "measure", "value");
    println!("{:<52} {:>12}", "workload size (users / change events)", n);
    println!(
        "{:<52} {:>12.2}",
        "mongo2pg: source inserts acknowledged (s)",
        replicated.source_writes.as_secs_f64()
    );
    println!(
        "{:<52} {:>12.2}",
        "mongo2pg: first insert to last user in Postgres (s)",
        replicated.end_to_end.as_secs_f64()
    );
    println!("{:<52} {:>12.0}", "mongo2pg events/s (end to end)", m2p);
    println!(
        "{:<52} {:>12.0}",
        "mongo2pg events/s, users in a stream group",
        rate(n, grouped.end_to_end)
    );
    println!(
        "{:<52} {:>12.2}",
        "baseline: dual-write elapsed (s)",
        baseline.as_secs_f64()
    );
    println!(
        "{:<52} {:>12.0}",
        "baseline docs/s (1 user + 2 passkeys)", base_docs
    );
    println!("{:<52} {:>12.0}", "baseline rows/s", base_rows);
    println!(
        "{:<52} {:>12.2}",
        "ratio mongo2pg / baseline (docs/s)",
        m2p / base_docs
    );
}
