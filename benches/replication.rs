//! The one replication benchmark: every figure of the performance targets measured next to its
//! baseline in the same run on this machine, printed as one Markdown table (README "Benchmarks").
//!
//! Sections, in order (each on a fresh Postgres database with the reference schema, sources in one
//! in-process mongosim over TCP; the replicator in-process except for the backlog section, which
//! runs the real binary):
//! 1. streaming inserts of N payments vs Postgres' server-side upsert of the same rows (best of three);
//! 2. a queued backlog of N updates drained after a restart, vs the insert rate;
//! 3. a naive per-event replicator (driver `watch` + one autocommit upsert per event);
//! 4. end-to-end lag at a steady 2,000 inserts/s (p50, p99) and the idle lag metric;
//! 5. the binary draining a backlog of M inserts: peak RSS, rate, restart to first applied batch;
//! 6. the initial snapshot of S payments vs `\copy` of the same rows (`common/snapshot_vs_copy.rs`,
//!    also its own bench `snapshot_copy`);
//! 7. N payment inserts with users, payments and the ledger in one stream group vs per-collection
//!    streams;
//! 8. the in-app dual-write comparison with users and passkeys.
//!
//! Run with `cargo bench --bench replication`. Environment:
//! - `M2P_BENCH_SCALE` (default 1.0) scales every size: N = 50,000, M = 1,000,000, S = 200,000,
//!   users = 5,000 at 1.0;
//! - `M2P_BENCH_LAG_SECS` (default 10): how long the 2,000 inserts/s lag run lasts;
//! - `M2P_BENCH_ONLY`: a comma-separated subset of `stream,naive,backlog,snapshot,group,dualwrite`;
//! - `PG_URL`: the Postgres server (default the local trust-auth one); `RUST_LOG` (default warn).

/// The allocator of the binary (and of the benchmark, which runs the same code in-process):
/// mimalloc instead of glibc malloc, whose per-thread arenas kept freed batch memory; see the
/// README "Benchmarks".
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::collections::HashSet;
use std::time::Duration;

#[path = "../tests/support/mod.rs"]
mod support;

#[path = "replication/backlog.rs"]
mod backlog;
#[path = "replication/common.rs"]
mod common;
#[path = "replication/dualwrite.rs"]
mod dualwrite;
#[path = "replication/grouped.rs"]
mod grouped;
#[path = "replication/naive.rs"]
mod naive;
// Shared with the `snapshot_copy` bench, which uses all of it.
#[allow(dead_code)]
#[path = "common/snapshot_vs_copy.rs"]
mod snapshot_vs_copy;
#[path = "replication/streaming.rs"]
mod streaming;

use common::*;

const LAG_RATE: usize = 2_000;

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1_000.0)
}

fn wanted(only: &Option<HashSet<String>>, section: &str) -> bool {
    only.as_ref().is_none_or(|set| set.contains(section))
}

async fn run_all(rows: &mut Vec<Row>) -> BenchResult<()> {
    let only: Option<HashSet<String>> = std::env::var("M2P_BENCH_ONLY")
        .ok()
        .map(|v| v.split(',').map(|s| s.trim().to_string()).collect());
    let n = scaled(50_000);
    let m = scaled(1_000_000);
    let s = scaled(200_000);
    let users = scaled(5_000);
    let lag_secs: usize = std::env::var("M2P_BENCH_LAG_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let sim = start_sim().await?;
    let result = sections(rows, &sim, &only, (n, m, s, users, lag_secs)).await;
    sim.shutdown().await;
    result
}

async fn sections(
    rows: &mut Vec<Row>,
    sim: &mongosim::SimHandle,
    only: &Option<HashSet<String>>,
    (n, m, s, users, lag_secs): (usize, usize, usize, usize, usize),
) -> BenchResult<()> {
    let mut insert_rate = None;
    if wanted(only, "stream") {
        eprintln!("streaming: {n} payment inserts, {n} updates, lag for {lag_secs} s");
        let st = streaming::run(sim, n, LAG_RATE * lag_secs).await?;
        let ins = rate(n, st.inserts);
        insert_rate = Some(ins);
        let upsert = rate(n, st.upsert_baseline);
        rows.push(
            Row::new(
                format!("1. streaming inserts, {n} payments (events/s)"),
                per_sec(n, st.inserts),
            )
            .baseline(format!(
                "server-side upsert {}",
                per_sec(n, st.upsert_baseline)
            ))
            .ratio(ins / upsert)
            .target(">= 0.5"),
        );
        rows.push(Row::new(
            "   source writes acknowledged (insert_many of 1,000)",
            per_sec(n, st.source_writes),
        ));
        rows.push(
            Row::new(
                format!("2. backlog of {n} updates drained (events/s)"),
                per_sec(n, st.updates),
            )
            .baseline(format!("inserts {}/s", thousands(ins)))
            .ratio(rate(n, st.updates) / ins)
            .target(">= 1.0"),
        );
        if let Some(lag) = &st.lag {
            rows.push(
                Row::new(
                    format!("4. lag p50 at {LAG_RATE} inserts/s ({} events)", lag.events),
                    ms(lag.p50),
                )
                .target("<= 50 ms"),
            );
            rows.push(Row::new("   lag p99", ms(lag.p99)).target("<= 250 ms"));
            rows.push(Row::new("   lag max", ms(lag.max)));
        }
        rows.push(
            Row::new(
                "   idle lag metric after 5 s (max over streams)",
                st.idle_lag_metric
                    .map(|v| format!("{v:.3} s"))
                    .unwrap_or_else(|| "absent".into()),
            )
            .target("< 2 s"),
        );
    }
    if wanted(only, "naive") {
        // A steady per-event rate: a fifth of N measures it as well in a fifth of the time.
        let k = n / 5;
        eprintln!("naive per-event replicator: {k} payment inserts");
        let naive = naive::run(sim, k).await?;
        let mut row = Row::new(
            format!("3. naive replicator, {k} payments (events/s)"),
            per_sec(k, naive),
        )
        .baseline("");
        if let Some(ins) = insert_rate {
            row = Row::new(
                format!("3. vs naive per-event replicator ({k} payments)"),
                format!("{}/s (row 1)", thousands(ins)),
            )
            .baseline(format!("watch + autocommit upsert {}", per_sec(k, naive)))
            .ratio(ins / rate(k, naive));
        }
        rows.push(row);
    }
    if wanted(only, "backlog") {
        eprintln!("backlog: {m} payment inserts drained by the binary");
        let b = backlog::run(sim, m).await?;
        rows.push(
            Row::new(
                format!("5. binary drains a backlog of {m} inserts (events/s)"),
                per_sec(m, b.drain),
            )
            .baseline(format!("queued at {}", per_sec(m, b.queue_writes))),
        );
        rows.push(
            Row::new(
                "   peak RSS while draining (VmHWM)",
                format!("{:.1} MB", b.peak_rss_kib as f64 / 1024.0),
            )
            .baseline(format!(
                "started, idle: {:.1} MB",
                b.idle_rss_kib as f64 / 1024.0
            ))
            .target("< 100 MB"),
        );
        rows.push(
            Row::new(
                "   restart (kill -9, start) to first applied batch",
                secs(b.restart_to_first_batch),
            )
            .target("< 2 s"),
        );
    }
    if wanted(only, "snapshot") {
        eprintln!("snapshot: {s} payments");
        let snap = snapshot_vs_copy::snapshot_vs_copy(s).await?;
        rows.push(
            Row::new(
                format!(
                    "6. initial snapshot of {} payments, page_size {} (rows/s)",
                    snap.rows, snap.page_size
                ),
                per_sec(snap.rows, snap.snapshot),
            )
            .baseline(format!(
                "\\copy (COPY csv) {}",
                per_sec(snap.rows, snap.copy)
            ))
            .ratio(snap.ratio())
            .target(">= 0.8"),
        );
    }
    if wanted(only, "group") {
        eprintln!("stream group: {n} payment inserts, grouped and per collection");
        rows.push(grouped::run(sim, n).await?);
    }
    if wanted(only, "dualwrite") {
        eprintln!("dual-write comparison: {users} users");
        let dw = dualwrite::run(sim, users).await?;
        let m2p = rate(users, dw.replicated.end_to_end);
        let base = rate(users, dw.baseline);
        rows.push(
            Row::new(
                format!("8. {users} users + 2 passkeys each (events/s)"),
                per_sec(users, dw.replicated.end_to_end),
            )
            .baseline(format!("in-app dual-write {}", per_sec(users, dw.baseline)))
            .ratio(m2p / base),
        );
    }
    Ok(())
}

#[tokio::main]
async fn main() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();

    let mut rows = Vec::new();
    let outcome = run_all(&mut rows).await;
    println!();
    println!(
        "mongo2pg replication benchmark ({} cores, scale {})",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::env::var("M2P_BENCH_SCALE").unwrap_or_else(|_| "1.0".into())
    );
    print_table(&rows);
    if let Err(e) = outcome {
        let mut message = e.to_string();
        let mut cause = e.source();
        while let Some(c) = cause {
            message.push_str(&format!(": {c}"));
            cause = c.source();
        }
        eprintln!("benchmark failed: {message}");
        std::process::exit(1);
    }
}
