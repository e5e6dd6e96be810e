//! Initial snapshot against `\copy`: N `payments` documents of the reference mapping (with the
//! users they reference) are loaded into mongosim in-process; the initial snapshot of `payments`
//! (users copied first, untimed) is timed, then the same rows, exported from the replicated table
//! as CSV, are loaded with `COPY payments FROM STDIN (FORMAT csv)` (what `psql \copy` sends) into a
//! fresh database with the same schema (users loaded first, untimed). Peak RSS is the process's
//! `VmHWM` during the snapshot (the high-water mark is reset after loading the data), so it
//! includes the in-process simulator's resident data; `rss_before` is the level it started from.
//!
//! `M2P_BENCH_PAGE_SIZE` overrides `snapshot.page_size`, `M2P_BENCH_PAGE_BYTES`
//! `snapshot.page_bytes`, `M2P_BENCH_WRITERS` `snapshot.writers`.

use std::error::Error;
use std::time::{Duration, Instant};

use bson::{doc, oid::ObjectId, Document};
use futures::SinkExt;
use mongo2pg::config::Config;
use mongo2pg::snapshot::{SnapshotContext, SnapshotOptions};

use crate::support::{self, repo_path, unique_name, TestDb};

pub type BenchResult<T> = Result<T, Box<dyn Error + Send + Sync>>;

/// Users the payments refer to (buyers and sellers).
const USERS: usize = 1_000;
const INSERT_CHUNK: usize = 5_000;

/// What one run measured.
#[derive(Debug, Clone)]
pub struct SnapshotCopyReport {
    pub rows: usize,
    pub page_size: usize,
    pub page_bytes: usize,
    /// Pages written at once (`snapshot.writers`).
    pub writers: usize,
    pub snapshot: Duration,
    pub copy: Duration,
    /// Resident memory before the snapshot started (kB; the simulator's data included).
    pub rss_before_kb: u64,
    /// Peak resident memory during the snapshot (kB).
    pub rss_peak_kb: u64,
}

impl SnapshotCopyReport {
    pub fn snapshot_rate(&self) -> f64 {
        rate(self.rows, self.snapshot)
    }

    pub fn copy_rate(&self) -> f64 {
        rate(self.rows, self.copy)
    }

    /// Snapshot speed as a fraction of `\copy` speed.
    pub fn ratio(&self) -> f64 {
        self.copy.as_secs_f64() / self.snapshot.as_secs_f64().max(f64::EPSILON)
    }

    pub fn print(&self) {
        println!();
        println!(
            "initial snapshot vs \\copy: {} payments (page_size {}, page_bytes {}, writers {})",
            self.rows, self.page_size, self.page_bytes, self.writers
        );
        println!("{:<52} {:>12}", "measure", "value");
        println!(
            "{:<52} {:>12.2}",
            "mongo2pg initial snapshot (s)",
            self.snapshot.as_secs_f64()
        );
        println!(
            "{:<52} {:>12.0}",
            "mongo2pg snapshot rows/s",
            self.snapshot_rate()
        );
        println!(
            "{:<52} {:>12.2}",
            "COPY FROM STDIN csv, same rows (s)",
            self.copy.as_secs_f64()
        );
        println!("{:<52} {:>12.0}", "COPY rows/s", self.copy_rate());
        println!("{:<52} {:>12.2}", "ratio snapshot / COPY", self.ratio());
        println!(
            "{:<52} {:>12}",
            "RSS before snapshot, simulator data incl. (MB)",
            self.rss_before_kb / 1024
        );
        println!(
            "{:<52} {:>12}",
            "peak RSS during snapshot (MB)",
            self.rss_peak_kb / 1024
        );
    }
}

fn rate(count: usize, d: Duration) -> f64 {
    count as f64 / d.as_secs_f64().max(f64::EPSILON)
}

fn status_kb(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn user_doc(oid: ObjectId, i: usize) -> Document {
    let now = bson::DateTime::now();
    doc! {
        "_id": oid,
        "email": format!("buyer{i}@bench.example"),
        "username": format!("buyer{i}"),
        "role": "user",
        "points": (i % 100) as i32,
        "isVerified": true,
        "createdAt": now,
        "updatedAt": now,
    }
}

fn payment_doc(i: usize, users: &[ObjectId]) -> BenchResult<Document> {
    let amount: bson::Decimal128 = format!("{}.{:02}", 10 + i % 990, i % 100).parse()?;
    let now = bson::DateTime::now();
    let statuses = ["pending", "processing", "completed", "failed"];
    Ok(doc! {
        "_id": ObjectId::new(),
        "amount": {"value": amount, "currency": "USDT"},
        "provider": "request.network",
        "direction": "in",
        "status": statuses[i % statuses.len()],
        "escrowState": "funded",
        "providerPaymentId": format!("rn_{i:012}"),
        "blockchain": {"network": "tron", "txHash": format!("0x{i:064x}"), "confirmations": (i % 30) as i32},
        "metadata": {"checkout": "template", "attempt": (i % 3) as i32},
        "isRefunded": false,
        "completedAt": now,
        "createdAt": now,
        "updatedAt": now,
        "buyerId": users[i % users.len()],
        "sellerId": users[(i * 7 + 1) % users.len()],
        "purchaseRequestId": format!("tpl-request-{}", i % 5_000),
        "sellerOfferId": format!("tpl-offer-{}", i % 5_000),
    })
}

/// Copies `table` from one database to another through COPY (untimed setup).
async fn transfer(
    from: &tokio_postgres::Client,
    to: &tokio_postgres::Client,
    table: &str,
) -> BenchResult<Vec<u8>> {
    let csv = export_csv(from, table).await?;
    import_csv(to, table, &csv).await?;
    Ok(csv)
}

async fn export_csv(client: &tokio_postgres::Client, table: &str) -> BenchResult<Vec<u8>> {
    use futures::TryStreamExt;
    let stream = client
        .copy_out(&format!("COPY {table} TO STDOUT (FORMAT csv)"))
        .await?;
    let chunks: Vec<bytes::Bytes> = stream.try_collect().await?;
    Ok(chunks.concat())
}

async fn import_csv(client: &tokio_postgres::Client, table: &str, csv: &[u8]) -> BenchResult<u64> {
    let sink = client
        .copy_in::<_, bytes::Bytes>(&format!("COPY {table} FROM STDIN (FORMAT csv)"))
        .await?;
    futures::pin_mut!(sink);
    // psql sends its input in small chunks; 64 KiB is close to what it does.
    for chunk in csv.chunks(64 * 1024) {
        sink.send(bytes::Bytes::copy_from_slice(chunk)).await?;
    }
    Ok(sink.finish().await?)
}

/// What an initial snapshot of one collection needs.
struct Copy<'a> {
    mongo: &'a mongodb::Client,
    database: &'a str,
    names: &'a mongo2pg::sink::ControlNames,
    mapping: &'a mongo2pg::config::CompiledMapping,
    options: &'a SnapshotOptions,
    /// Where the copy opens its extra page writers.
    pg_url: &'a mongo2pg::sink::connect::PgUrl,
}

impl Copy<'_> {
    async fn snapshot(
        &self,
        collection: &str,
        pg: &mut tokio_postgres::Client,
        sink: &mut mongo2pg::sink::Sink,
    ) -> BenchResult<mongo2pg::snapshot::SnapshotReport> {
        let rules = self
            .mapping
            .rules(collection)
            .ok_or_else(|| format!("{collection} is not mapped"))?;
        let ctx = SnapshotContext {
            mongo: self.mongo,
            database: self.database,
            pg,
            sink,
            names: self.names,
            pg_url: Some(self.pg_url),
        };
        Ok(mongo2pg::snapshot::initial_snapshot(ctx, rules, self.options, &mut |_| {}).await?)
    }
}

/// Starts mongosim on a runtime and threads of its own, as a MongoDB server runs in a process of
/// its own: the operating system shares the cores between it and the replicator, instead of the
/// replicator's tasks waiting behind the simulator's on the same runtime. It serves until the
/// benchmark process ends (or `SimHandle::shutdown`).
pub async fn start_sim_apart(config: mongosim::SimConfig) -> BenchResult<mongosim::SimHandle> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("mongosim".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .thread_name("mongosim-rt")
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            };
            runtime.block_on(async move {
                let _ = tx.send(mongosim::start(config).await);
                std::future::pending::<()>().await
            })
        })?;
    Ok(rx.await??)
}

/// Loads `n` payments and times their initial snapshot against `\copy` of the same rows.
pub async fn snapshot_vs_copy(n: usize) -> BenchResult<SnapshotCopyReport> {
    let (repl_db, copy_db) = (
        TestDb::create("bench_snap").await,
        TestDb::create("bench_copy").await,
    );
    repl_db.apply_reference_schema().await;
    copy_db.apply_reference_schema().await;
    let sim = start_sim_apart(mongosim::SimConfig::default()).await?;
    let result = run(n, &repl_db, &copy_db, &sim.uri()).await;
    sim.shutdown().await;
    drop(repl_db);
    drop(copy_db);
    result
}

async fn run(
    n: usize,
    repl_db: &TestDb,
    copy_db: &TestDb,
    mongo_uri: &str,
) -> BenchResult<SnapshotCopyReport> {
    let database = unique_name("snap");
    let mut config = Config::from_path(&repo_path("deploy/marketplace/mapping.toml"))?;
    // One stream per collection (row 7 adds its group explicitly).
    config.streams.clear();
    config.source.database = database.clone();
    if let Some(p) = std::env::var("M2P_BENCH_PAGE_SIZE")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        config.snapshot.page_size = p;
    }
    if let Some(b) = std::env::var("M2P_BENCH_PAGE_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        config.snapshot.page_bytes = b;
    }
    if let Some(w) = std::env::var("M2P_BENCH_WRITERS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        config.snapshot.writers = w;
    }
    let names = mongo2pg::replicator::control_names(&config);
    let mut pg = support::connect(&repl_db.url()).await;
    mongo2pg::sink::migrate(&mut pg, &names).await?;
    let catalogue = mongo2pg::sink::catalogue::load(&pg, &config.mapped_tables()).await?;
    let mapping = config.compile(&catalogue)?;

    let mongo = mongodb::Client::with_uri_str(mongo_uri).await?;
    let db = mongo.database(&database);
    let user_ids: Vec<ObjectId> = (0..USERS).map(|_| ObjectId::new()).collect();
    db.collection::<Document>("users")
        .insert_many(user_ids.iter().enumerate().map(|(i, o)| user_doc(*o, i)))
        .await?;
    let payments = db.collection::<Document>("payments");
    let mut start = 0;
    while start < n {
        let end = (start + INSERT_CHUNK).min(n);
        let docs = (start..end)
            .map(|i| payment_doc(i, &user_ids))
            .collect::<BenchResult<Vec<_>>>()?;
        payments.insert_many(docs).await?;
        start = end;
    }

    let mut sink = mongo2pg::sink::Sink::new(catalogue.clone(), names.clone())
        .with_rules(mapping.collections.values());
    let options = SnapshotOptions::from_config(&config.snapshot);
    let pg_url =
        mongo2pg::sink::connect::PgUrl::parse(&mongo2pg::config::Secret::new(repl_db.url()))?;
    let copy = Copy {
        pg_url: &pg_url,
        mongo: &mongo,
        database: &database,
        names: &names,
        mapping: &mapping,
        options: &options,
    };
    copy.snapshot("users", &mut pg, &mut sink).await?;

    if std::env::var("M2P_BENCH_LOG_STATEMENTS").is_ok() {
        pg.batch_execute("SET log_min_duration_statement = 0")
            .await?;
    }
    let rss_before_kb = status_kb("VmRSS:");
    // Resets VmHWM to the current RSS (Linux >= 4.0).
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let started = Instant::now();
    let report = copy.snapshot("payments", &mut pg, &mut sink).await?;
    let snapshot_time = started.elapsed();
    let rss_peak_kb = status_kb("VmHWM:");
    if report.copied != n as u64 || report.failed != 0 {
        return Err(format!(
            "snapshot copied {} with {} gaps",
            report.copied, report.failed
        )
        .into());
    }
    let landed: i64 = pg
        .query_one("SELECT count(*) FROM payments", &[])
        .await?
        .get(0);
    if landed != n as i64 {
        return Err(format!("{landed} payments in Postgres, expected {n}").into());
    }

    let copy_pg = support::connect(&copy_db.url()).await;
    transfer(&pg, &copy_pg, "users").await?;
    let csv = export_csv(&pg, "payments").await?;
    let started = Instant::now();
    let copied = import_csv(&copy_pg, "payments", &csv).await?;
    let copy = started.elapsed();
    if copied != n as u64 {
        return Err(format!("COPY loaded {copied} rows, expected {n}").into());
    }
    Ok(SnapshotCopyReport {
        rows: n,
        page_size: config.snapshot.page_size,
        page_bytes: config.snapshot.page_bytes,
        writers: config.snapshot.writers,
        snapshot: snapshot_time,
        copy,
        rss_before_kb,
        rss_peak_kb,
    })
}
