//! What every section of the benchmark shares: the payments workload (documents of the reference
//! mapping with exact Decimal128 amounts and template references, so they need only their buyers),
//! waiting for a count, starting the replicator in-process, and the one printed table.

use std::error::Error;
use std::time::{Duration, Instant};

use bson::{doc, oid::ObjectId, Decimal128, Document};
use mongo2pg::config::{Config, Secret, SnapshotMode};
use mongo2pg::replicator::{self, Replicator, RunSettings};

use crate::support::{self, repo_path, unique_name};

pub type BenchResult<T> = Result<T, Box<dyn Error + Send + Sync>>;

/// Documents per `insert_many`.
pub const CHUNK: usize = 1_000;
/// Streams of the reference mapping (one per mapped collection).
pub const STREAMS: i64 = 8;
/// Buyers every payment refers to (inserted and replicated before the timed part).
pub const BUYERS: usize = 100;
const POLL: Duration = Duration::from_millis(10);
const TIMEOUT: Duration = Duration::from_secs(1_200);

/// The workload scale (`M2P_BENCH_SCALE`, default 1.0) applied to a full-scale size.
pub fn scaled(full: usize) -> usize {
    let scale: f64 = std::env::var("M2P_BENCH_SCALE")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|s: &f64| *s > 0.0)
        .unwrap_or(1.0);
    ((full as f64 * scale).round() as usize).max(CHUNK)
}

pub fn rate(count: usize, d: Duration) -> f64 {
    count as f64 / d.as_secs_f64().max(f64::EPSILON)
}

/// The buyers' ObjectIds (fixed per run).
pub fn buyers() -> Vec<ObjectId> {
    (0..BUYERS).map(|_| ObjectId::new()).collect()
}

pub fn buyer_doc(oid: ObjectId, i: usize) -> Document {
    doc! { "_id": oid, "email": format!("buyer{i}@bench.example"), "points": 0_i32 }
}

/// Payment `i` of a workload: an exact amount, a buyer, template (free string) seller, request
/// and offer references, jsonb metadata, dates. `tag` prefixes `providerPaymentId`.
pub fn payment_doc(i: usize, buyers: &[ObjectId], tag: &str) -> Document {
    let amount: Decimal128 = format!("{}.{:02}", 10 + i % 990, i % 100)
        .parse()
        .unwrap_or_else(|_| unreachable!("a decimal literal parses"));
    let now = bson::DateTime::now();
    doc! {
        "_id": ObjectId::new(),
        "buyerId": buyers[i % buyers.len()],
        "sellerId": format!("seller-{}", i % 50),
        "purchaseRequestId": format!("tmpl-request-{i}"),
        "sellerOfferId": format!("tmpl-offer-{i}"),
        "amount": { "value": amount, "currency": "USDT" },
        "provider": "request.network",
        "direction": "in",
        "status": "pending",
        "providerPaymentId": format!("{tag}-{i}"),
        "metadata": { "order": i as i64, "channel": "bench" },
        "isRefunded": false,
        "createdAt": now,
        "updatedAt": now,
    }
}

pub async fn count(client: &tokio_postgres::Client, sql: &str) -> BenchResult<i64> {
    Ok(client.query_one(sql, &[]).await?.get::<_, i64>(0))
}

/// Polls `sql` (one bigint) every 10 ms until it reaches `want`; returns when it did.
pub async fn wait_for_count(
    client: &tokio_postgres::Client,
    sql: &str,
    want: i64,
) -> BenchResult<Instant> {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let have = count(client, sql).await?;
        if have >= want {
            return Ok(Instant::now());
        }
        if Instant::now() > deadline {
            return Err(format!("timed out: {sql} reached {have}, wanted {want}").into());
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Waits until the row of `payments` with legacy id `oid` satisfies `condition` (an index
/// lookup, cheap enough to poll every 10 ms: events of one stream apply in order, so the last
/// document written stands for all of them), then until `count(*)` of `payments` rows satisfying
/// it reaches `want` (checked once or twice). Returns when the last row was seen.
pub async fn wait_for_last(
    client: &tokio_postgres::Client,
    oid: ObjectId,
    condition: &str,
    want: i64,
) -> BenchResult<Instant> {
    let seen = wait_for_count(
        client,
        &format!(
            "SELECT count(*) FROM payments WHERE legacy_object_id = '{}' AND {condition}",
            oid.to_hex()
        ),
        1,
    )
    .await?;
    wait_for_count(
        client,
        &format!("SELECT count(*) FROM payments WHERE {condition}"),
        want,
    )
    .await?;
    Ok(seen)
}

/// The `_id` of a document.
pub fn oid_of(doc: &Document) -> BenchResult<ObjectId> {
    Ok(doc.get_object_id("_id")?)
}

/// A mongosim with a history window large enough for every section's backlog.
/// It runs on a runtime and threads of its own (`start_sim_apart`).
pub async fn start_sim() -> BenchResult<mongosim::SimHandle> {
    crate::snapshot_vs_copy::start_sim_apart(mongosim::SimConfig {
        window: 4_000_000,
        ..mongosim::SimConfig::default()
    })
    .await
}

/// The shipped reference mapping (its batch settings unchanged) pointed at `mongo_db`.
pub fn reference_config(mongo_db: &str, snapshot: SnapshotMode) -> BenchResult<Config> {
    let mut config = Config::from_path(&repo_path("deploy/marketplace/mapping.toml"))?;
    // One stream per collection (row 7 adds its group explicitly).
    config.streams.clear();
    config.source.database = mongo_db.to_string();
    config.snapshot.mode = snapshot;
    Ok(config)
}

/// A fresh Mongo database name.
pub fn mongo_db(tag: &str) -> String {
    unique_name(tag)
}

pub async fn migrate(pg_url: &str, config: &Config) -> BenchResult<()> {
    let mut client = support::connect(pg_url).await;
    mongo2pg::sink::migrate::migrate(&mut client, &replicator::control_names(config)).await?;
    Ok(())
}

pub async fn start_replicator(
    mongo_uri: &str,
    pg_url: &str,
    config: &Config,
    metrics_addr: Option<std::net::SocketAddr>,
) -> BenchResult<Replicator> {
    Ok(replicator::start(RunSettings {
        mongo_url: Secret::new(mongo_uri.to_string()),
        pg_url: Secret::new(pg_url.to_string()),
        config: config.clone(),
        metrics_addr,
        holder: "bench".into(),
    })
    .await?)
}

/// Waits until every stream has pinned its start position.
pub async fn wait_streams_pinned(pg: &tokio_postgres::Client) -> BenchResult<()> {
    wait_for_count(
        pg,
        "SELECT count(*) FROM mongo2pg.checkpoints WHERE cluster_time IS NOT NULL",
        STREAMS,
    )
    .await
    .map(|_| ())
}

/// Inserts the buyers and waits until they are in Postgres.
pub async fn seed_buyers(
    coll: &mongodb::Collection<Document>,
    pg: &tokio_postgres::Client,
    buyers: &[ObjectId],
) -> BenchResult<()> {
    let docs: Vec<Document> = buyers
        .iter()
        .enumerate()
        .map(|(i, b)| buyer_doc(*b, i))
        .collect();
    coll.insert_many(docs).await?;
    wait_for_count(pg, "SELECT count(*) FROM users", buyers.len() as i64).await?;
    Ok(())
}

/// Inserts `docs` in chunks of [`CHUNK`]; returns when the last chunk is acknowledged.
pub async fn insert_chunks(
    coll: &mongodb::Collection<Document>,
    docs: Vec<Document>,
) -> BenchResult<()> {
    let mut docs = docs.into_iter().peekable();
    while docs.peek().is_some() {
        let chunk: Vec<Document> = docs.by_ref().take(CHUNK).collect();
        coll.insert_many(chunk).await?;
    }
    Ok(())
}

/// One row of the printed table: the figure, its baseline measured in the same run, the ratio
/// and the target.
pub struct Row {
    pub measure: String,
    pub value: String,
    pub baseline: String,
    pub ratio: String,
    pub target: String,
}

impl Row {
    pub fn new(measure: impl Into<String>, value: impl Into<String>) -> Row {
        Row {
            measure: measure.into(),
            value: value.into(),
            baseline: String::new(),
            ratio: String::new(),
            target: String::new(),
        }
    }
    pub fn baseline(mut self, b: impl Into<String>) -> Row {
        self.baseline = b.into();
        self
    }
    pub fn ratio(mut self, r: f64) -> Row {
        self.ratio = format!("{r:.2}");
        self
    }
    pub fn target(mut self, t: impl Into<String>) -> Row {
        self.target = t.into();
        self
    }
}

/// Events (or rows) per second and seconds, e.g. `6,850/s (7.30 s)`.
pub fn per_sec(count: usize, d: Duration) -> String {
    format!("{}/s ({:.2} s)", thousands(rate(count, d)), d.as_secs_f64())
}

pub fn thousands(v: f64) -> String {
    let n = v.round() as i64;
    let digits = n.abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 {
        format!("-{out}")
    } else {
        out
    }
}

/// Prints the table as Markdown, so a run can be pasted into the README.
pub fn print_table(rows: &[Row]) {
    let header = [
        "measure",
        "mongo2pg",
        "baseline (same run)",
        "ratio",
        "target",
    ];
    let cells: Vec<[&str; 5]> = rows
        .iter()
        .map(|r| {
            [
                r.measure.as_str(),
                r.value.as_str(),
                r.baseline.as_str(),
                r.ratio.as_str(),
                r.target.as_str(),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cols: [&str; 5]| {
        let parts: Vec<String> = cols
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("| {} |", parts.join(" | "));
    };
    line(header);
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    println!("|-{}-|", rule.join("-|-"));
    for row in cells {
        line(row);
    }
}
