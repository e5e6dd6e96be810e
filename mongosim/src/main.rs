//! The `mongosim` binary: runs the simulator on a host/port until Ctrl-C, for people, pymongo, the
//! Node driver or benchmarks.

use clap::Parser;
use std::process::ExitCode;

/// MongoDB wire-protocol simulator: a single-node replica-set primary with change streams, kept
/// in memory, for tests and demos (not a database).
#[derive(Debug, Parser)]
#[command(name = "mongosim", version)]
struct Args {
    /// Interface to listen on.
    #[arg(long, default_value = "127.0.0.1", env = "MONGOSIM_HOST")]
    host: String,
    /// TCP port (0 picks a free one; the chosen address is printed).
    #[arg(long, default_value_t = 27017, env = "MONGOSIM_PORT")]
    port: u16,
    /// History window in entries ("oplog size"); resuming from before it fails with 286.
    #[arg(long, default_value_t = 1_000_000, env = "MONGOSIM_WINDOW")]
    window: usize,
    /// Replica-set name reported in hello (clients use ?replicaSet=<name>).
    #[arg(long = "set-name", default_value = "rs0", env = "MONGOSIM_SET_NAME")]
    set_name: String,
    /// Unix seconds the simulator's clock reads at start (cluster time, wallTime, localTime),
    /// advancing with real time from there, e.g. 4102444800 for 2100-01-01.
    #[arg(long = "start-time", env = "MONGOSIM_START_TIME")]
    start_time: Option<u64>,
    /// A user clients must authenticate as: `name:password` (auth database admin) or
    /// `name:password@authdb`. Repeat the flag for more users; commas also separate users (so
    /// passwords cannot contain commas). Without users no authentication is required.
    #[arg(
        long = "user",
        env = "MONGOSIM_USERS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    users: Vec<mongosim::SimUser>,
    /// PEM certificate chain: with --tls-key-file, every connection must use TLS.
    #[arg(
        long = "tls-cert-file",
        env = "MONGOSIM_TLS_CERT_FILE",
        requires = "tls_key_file"
    )]
    tls_cert_file: Option<std::path::PathBuf>,
    /// PEM private key of the TLS certificate.
    #[arg(
        long = "tls-key-file",
        env = "MONGOSIM_TLS_KEY_FILE",
        requires = "tls_cert_file"
    )]
    tls_key_file: Option<std::path::PathBuf>,
    /// PEM CA file clients should trust (only shown in the printed connection string).
    #[arg(long = "tls-ca-file", env = "MONGOSIM_TLS_CA_FILE")]
    tls_ca_file: Option<std::path::PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    match try_main(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            let mut message = err.to_string();
            let mut cause = std::error::Error::source(&err);
            while let Some(c) = cause {
                message.push_str(": ");
                message.push_str(&c.to_string());
                cause = c.source();
            }
            tracing::error!(error = %message, "mongosim failed");
            ExitCode::FAILURE
        }
    }
}

fn try_main(args: Args) -> std::io::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let config = mongosim::SimConfig {
            host: args.host,
            port: args.port,
            set_name: args.set_name,
            window: args.window,
            start_time: args.start_time,
            users: args.users,
            tls_cert_file: args.tls_cert_file,
            tls_key_file: args.tls_key_file,
            tls_ca_file: args.tls_ca_file,
        };
        let handle = mongosim::start(config).await?;
        println!("mongosim listening on {} ({})", handle.addr(), handle.uri());
        tokio::signal::ctrl_c().await?;
        tracing::info!("shutting down");
        handle.shutdown().await;
        Ok(())
    })
}
