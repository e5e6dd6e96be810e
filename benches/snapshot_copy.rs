//! Initial snapshot of N `payments` documents against `\copy` of the same rows into the same
//! table (see `common/snapshot_vs_copy.rs`). Run with `cargo bench --bench snapshot_copy`;
//! `M2P_BENCH_PAYMENTS` overrides N (default 200,000).

/// The binary's allocator (see `src/main.rs`), so the copy is timed as the binary runs it.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "../tests/support/mod.rs"]
mod support;

mod common {
    pub mod snapshot_vs_copy;
}

#[tokio::main]
async fn main() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
    let n: usize = std::env::var("M2P_BENCH_PAYMENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    match common::snapshot_vs_copy::snapshot_vs_copy(n).await {
        Ok(report) => report.print(),
        Err(e) => {
            eprintln!("benchmark failed: {e}");
            std::process::exit(1);
        }
    }
}
