//! The real binary as a child process: start it, let every stream pin its position and the buyers
//! arrive, kill it (SIGKILL), queue a backlog of M payment inserts, start it again and measure the
//! time to its first applied batch (first payment row visible), the drain rate and its peak RSS
//! (`VmHWM` of /proc/<pid>/status, read just before it is stopped).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bson::Document;

use crate::common::*;
use crate::support::{self, TestDb};

pub struct Backlog {
    pub drain: Duration,
    pub restart_to_first_batch: Duration,
    pub peak_rss_kib: u64,
    /// Peak RSS of the first run, which only started the streams and replicated the buyers.
    pub idle_rss_kib: u64,
    pub queue_writes: Duration,
}

/// Stops the child when dropped (error paths included).
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub async fn run(sim: &mongosim::SimHandle, m: usize) -> BenchResult<Backlog> {
    let db = TestDb::create("bench_backlog").await;
    db.apply_reference_schema().await;
    let result = run_in(sim, &db.url(), m).await;
    drop(db);
    result
}

fn spawn(mapping: &std::path::Path, mongo_uri: &str, pg_url: &str) -> BenchResult<ChildGuard> {
    let child = Command::new(env!("CARGO_BIN_EXE_mongo2pg"))
        .arg("run")
        .arg("--mapping")
        .arg(mapping)
        .env("MONGO_URL", mongo_uri)
        .env("PG_URL", pg_url)
        .env("MONGO2PG_METRICS_ADDR", "127.0.0.1:0")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()?;
    Ok(ChildGuard(child))
}

fn vm_hwm_kib(pid: u32) -> BenchResult<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| format!("no VmHWM in /proc/{pid}/status").into())
}

async fn run_in(sim: &mongosim::SimHandle, pg_url: &str, m: usize) -> BenchResult<Backlog> {
    let mongo_db = mongo_db("backlog");
    let mapping = support::reference_mapping_file(&mongo_db);
    // The shipped batch settings, not the tests' short wait.
    let text = std::fs::read_to_string(mapping.path())?
        .replace("batch_max_wait_ms = 50", "batch_max_wait_ms = 200");
    std::fs::write(mapping.path(), text)?;
    let config = mongo2pg::config::Config::from_path(mapping.path())?;
    migrate(pg_url, &config).await?;

    let mongo = mongodb::Client::with_uri_str(sim.uri()).await?;
    let database = mongo.database(&mongo_db);
    let pg = support::connect(pg_url).await;
    let buyers = buyers();

    let mut first = spawn(mapping.path(), &sim.uri(), pg_url)?;
    wait_streams_pinned(&pg).await?;
    seed_buyers(&database.collection("users"), &pg, &buyers).await?;
    let idle_rss_kib = vm_hwm_kib(first.0.id())?;
    first.0.kill()?;
    first.0.wait()?;
    drop(first);

    let payments = database.collection::<Document>("payments");
    let started = Instant::now();
    let mut queued = 0;
    let mut last = None;
    while queued < m {
        let chunk: Vec<Document> = (queued..(queued + CHUNK).min(m))
            .map(|i| payment_doc(i, &buyers, "backlog"))
            .collect();
        queued += chunk.len();
        last = chunk.last().map(oid_of).transpose()?;
        payments.insert_many(chunk).await?;
    }
    let last = last.ok_or("empty backlog")?;
    let queue_writes = started.elapsed();

    let started = Instant::now();
    let child = spawn(mapping.path(), &sim.uri(), pg_url)?;
    let first_batch = wait_for_count(
        &pg,
        "SELECT count(*) FROM (SELECT 1 FROM payments LIMIT 1) t",
        1,
    )
    .await?;
    let done = wait_for_last(&pg, last, "true", m as i64).await?;
    let peak_rss_kib = vm_hwm_kib(child.0.id())?;
    drop(child);
    Ok(Backlog {
        drain: done - started,
        restart_to_first_batch: first_batch - started,
        peak_rss_kib,
        idle_rss_kib,
        queue_writes,
    })
}
