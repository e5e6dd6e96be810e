//! The `mongo2pg` binary: parse the command line, set up tracing, run one command, and map the
//! outcome to an exit code. Everything else lives in the library so tests can run it in-process.

/// The allocator of the binary (and of the benchmark, which runs the same code in-process):
/// mimalloc instead of glibc malloc, whose per-thread arenas kept freed batch memory; see the
/// README "Benchmarks".
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::process::ExitCode;

use clap::Parser;

use mongo2pg::cli::Cli;

/// mimalloc's `mi_option_purge_delay` (its position in `mi_option_e` of mimalloc.h, the same in
/// mimalloc 2 and 3).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// How long freed memory stays resident before mimalloc returns it to the OS, in milliseconds.
/// mimalloc's default (1000 ms) kept about 20 MB more resident while a backlog is drained (the
/// decoded events of each batch are freed while the next ones are allocated); 50 ms returns it
/// without a measurable cost to the drain rate (README "Benchmarks").
const PURGE_DELAY_MS: std::ffi::c_long = 50;

/// Allocator settings, unless the environment sets them (`MIMALLOC_PURGE_DELAY`, read by mimalloc
/// itself).
fn tune_allocator() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: mi_option_set takes two integers, has no preconditions, and options may be
        // set at any time from any thread.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS) }
    }
}

fn main() -> ExitCode {
    tune_allocator();
    let cli = Cli::parse();
    if let Err(e) = mongo2pg::logging::init(cli.log_format) {
        eprintln!("error: cannot set up logging: {e}");
        return ExitCode::FAILURE;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(mongo2pg::commands::dispatch(cli))
}
