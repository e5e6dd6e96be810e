//! The clap command tree. Secrets (database URLs) come from flags or the environment and are never
//! echoed: `hide_env_values` keeps them out of `--help`, and everything that prints them redacts.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

pub use crate::logging::LogFormat;

/// mongo2pg: replicate MongoDB collections into PostgreSQL through change streams.
#[derive(Debug, Parser)]
#[command(name = "mongo2pg", version, about, long_about = None)]
pub struct Cli {
    /// Log output format.
    #[arg(
        long,
        env = "MONGO2PG_LOG_FORMAT",
        default_value = "text",
        global = true
    )]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apply the replicator's control-table migrations (id_map, gaps, checkpoints, audit). Idempotent.
    Migrate(MigrateArgs),
    /// Replicate every mapped collection until interrupted (SIGINT/SIGTERM).
    Run(RunArgs),
}

/// Where the mapping and the databases are.
#[derive(Debug, Clone, Args)]
pub struct ConnArgs {
    /// Path of the TOML mapping file.
    #[arg(long, env = "MONGO2PG_MAPPING")]
    pub mapping: PathBuf,
    /// MongoDB connection string (a replica set; `directConnection=true` for a single node).
    #[arg(long, env = "MONGO_URL", hide_env_values = true)]
    pub mongo_url: String,
    /// PostgreSQL connection string (URL or key=value form).
    #[arg(long, env = "PG_URL", hide_env_values = true)]
    pub pg_url: String,
}

#[derive(Debug, Clone, Args)]
pub struct MigrateArgs {
    /// Path of the TOML mapping file (its [target] section names the control tables); defaults apply
    /// when omitted.
    #[arg(long, env = "MONGO2PG_MAPPING")]
    pub mapping: Option<PathBuf>,
    /// PostgreSQL connection string.
    #[arg(long, env = "PG_URL", hide_env_values = true)]
    pub pg_url: String,
}

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub conn: ConnArgs,
    /// Address of the HTTP server for /metrics, /healthz and /readyz.
    #[arg(long, env = "MONGO2PG_METRICS_ADDR", default_value = "127.0.0.1:9187")]
    pub metrics_addr: SocketAddr,
    /// Name this process records as the holder of the streams it runs.
    #[arg(long, env = "MONGO2PG_HOLDER")]
    pub holder: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_tree_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn run_takes_urls_from_flags() {
        let cli = Cli::try_parse_from([
            "mongo2pg",
            "run",
            "--mapping",
            "m.toml",
            "--mongo-url",
            "mongodb://h/",
            "--pg-url",
            "postgres://p/",
        ])
        .expect("valid command line");
        match cli.command {
            Command::Run(r) => {
                assert_eq!(r.conn.mapping, PathBuf::from("m.toml"));
                assert_eq!(r.conn.pg_url, "postgres://p/");
            }
            other => panic!("parsed as {other:?}"),
        }
    }
}
