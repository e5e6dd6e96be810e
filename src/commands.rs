//! One function per CLI command; `dispatch` maps each outcome to the process exit code
//! (0 success, 1 failure, 2 bad configuration or usage).

use std::process::ExitCode;

use tracing::{error, info};

use crate::cli::{Cli, Command, MigrateArgs, RunArgs};
use crate::config::{redact_uri, Config, Secret};
use crate::sink::migrate::ControlNames;
use crate::supervisor::{self, RunSettings};

/// Exit code for an invalid mapping or command line.
pub const EXIT_CONFIG: u8 = 2;

/// Run the parsed command line.
pub async fn dispatch(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Migrate(args) => migrate(args).await,
        Command::Run(args) => run(args).await,
    }
}

fn load_config(path: &std::path::Path) -> Result<Config, ExitCode> {
    Config::from_path(path).map_err(|e| {
        error!(error = %e, "invalid mapping configuration");
        eprintln!("error: {e}");
        ExitCode::from(EXIT_CONFIG)
    })
}

async fn migrate(args: MigrateArgs) -> ExitCode {
    let names = match &args.mapping {
        Some(path) => match load_config(path) {
            Ok(c) => supervisor::control_names(&c),
            Err(code) => return code,
        },
        None => ControlNames::default(),
    };
    let url = Secret::new(args.pg_url);
    let (mut client, _conn) = match supervisor::connect_pg(&url).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!(
                "error: cannot connect to postgres: {}",
                redact_uri(&e.to_string())
            );
            return ExitCode::FAILURE;
        }
    };
    match crate::sink::migrate::migrate(&mut client, &names).await {
        Ok(applied) => {
            if applied.is_empty() {
                println!("control tables are up to date");
            } else {
                for m in applied {
                    println!("applied {m}");
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: RunArgs) -> ExitCode {
    let config = match load_config(&args.conn.mapping) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let holder = args.holder.unwrap_or_else(default_holder);
    let settings = RunSettings {
        mongo_url: Secret::new(args.conn.mongo_url),
        pg_url: Secret::new(args.conn.pg_url),
        config,
        metrics_addr: Some(args.metrics_addr),
        holder,
    };
    let replicator = match supervisor::start(settings).await {
        Ok(r) => r,
        Err(e) => {
            let msg = redact_uri(&e.to_string());
            error!(error = %msg, "cannot start");
            eprintln!("error: {msg}");
            return match e {
                supervisor::StartError::Config(_) => ExitCode::from(EXIT_CONFIG),
                _ => ExitCode::FAILURE,
            };
        }
    };
    if let Some(addr) = replicator.metrics_addr() {
        info!(%addr, "metrics endpoint");
    }
    replicator.run_until(shutdown_signal()).await;
    ExitCode::SUCCESS
}

/// `host:pid`, recorded as the holder of the streams.
pub fn default_holder() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".into());
    format!("{host}:{}", std::process::id())
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
