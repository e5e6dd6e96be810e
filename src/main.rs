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

fn main() -> ExitCode {
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
