//! The clap command tree. Secrets (database URLs) come from flags, the environment or files they
//! name (`--pg-url-file`, `--mongo-url-file`) and are never echoed: `hide_env_values` keeps them
//! out of `--help`, and everything that prints them redacts.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::config::url_source::{self, UrlSourceError};
use crate::config::Secret;

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
    /// Show or move the stored stream positions (resume tokens); every move is audited.
    #[command(subcommand)]
    Tokens(TokensCommand),
    /// List, inspect, retry and close gaps (events that could not be applied).
    #[command(subcommand)]
    Gaps(GapsCommand),
    /// Re-copy one collection (or an `_id` range / time window of it) while its stream keeps running.
    Snapshot(SnapshotCmdArgs),
    /// Compare MongoDB and Postgres; exits 1 when they differ, 0 when they match.
    Verify(VerifyCmdArgs),
    /// Start an in-process MongoDB simulator with a marketplace workload and replicate it into a
    /// fresh local Postgres database, then verify the result.
    ///
    /// The status and the verify report go to stdout; the replicator's own log lines go to stderr
    /// (`RUST_LOG=warn` hides them). The exit code is 0 only when verify is clean.
    Demo(DemoArgs),
}

/// The Postgres connection string, given directly or as a file (exactly one; checked by
/// `secret()`, so the error is one line).
#[derive(Debug, Clone, Default, Args)]
pub struct PgUrlArgs {
    /// PostgreSQL connection string (URL or key=value form; libpq's sslmode, sslrootcert, sslcert
    /// and sslkey are honoured).
    #[arg(long, env = "PG_URL", hide_env_values = true)]
    pub pg_url: Option<String>,
    /// File holding the PostgreSQL connection string (e.g. a mounted Kubernetes secret; a
    /// trailing line break is ignored). Instead of --pg-url.
    #[arg(long, env = "PG_URL_FILE", value_name = "PATH")]
    pub pg_url_file: Option<PathBuf>,
}

impl PgUrlArgs {
    /// The connection string; an error when it is missing or given twice.
    pub fn secret(&self) -> Result<Secret, UrlSourceError> {
        url_source::require(
            url_source::PG_URL,
            self.pg_url.as_deref(),
            self.pg_url_file.as_deref(),
        )
    }
    /// The connection string when one is given.
    pub fn optional_secret(&self) -> Result<Option<Secret>, UrlSourceError> {
        url_source::resolve(
            url_source::PG_URL,
            self.pg_url.as_deref(),
            self.pg_url_file.as_deref(),
        )
    }
}

/// The MongoDB connection string, given directly or as a file (exactly one).
#[derive(Debug, Clone, Default, Args)]
pub struct MongoUrlArgs {
    /// MongoDB connection string (a replica set; `directConnection=true` for a single node).
    #[arg(long, env = "MONGO_URL", hide_env_values = true)]
    pub mongo_url: Option<String>,
    /// File holding the MongoDB connection string (e.g. a mounted Kubernetes secret; a trailing
    /// line break is ignored). Instead of --mongo-url.
    #[arg(long, env = "MONGO_URL_FILE", value_name = "PATH")]
    pub mongo_url_file: Option<PathBuf>,
}

impl MongoUrlArgs {
    /// The connection string; an error when it is missing or given twice.
    pub fn secret(&self) -> Result<Secret, UrlSourceError> {
        url_source::require(
            url_source::MONGO_URL,
            self.mongo_url.as_deref(),
            self.mongo_url_file.as_deref(),
        )
    }
    /// The connection string when one is given.
    pub fn optional_secret(&self) -> Result<Option<Secret>, UrlSourceError> {
        url_source::resolve(
            url_source::MONGO_URL,
            self.mongo_url.as_deref(),
            self.mongo_url_file.as_deref(),
        )
    }
}

/// Where the mapping and the databases are.
#[derive(Debug, Clone, Args)]
pub struct ConnArgs {
    /// Path of the TOML mapping file.
    #[arg(long, env = "MONGO2PG_MAPPING")]
    pub mapping: PathBuf,
    #[command(flatten)]
    pub mongo: MongoUrlArgs,
    #[command(flatten)]
    pub pg: PgUrlArgs,
}

#[derive(Debug, Clone, Args)]
pub struct MigrateArgs {
    /// Path of the TOML mapping file (its [target] section names the control tables); defaults apply
    /// when omitted.
    #[arg(long, env = "MONGO2PG_MAPPING")]
    pub mapping: Option<PathBuf>,
    #[command(flatten)]
    pub pg: PgUrlArgs,
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

/// The mapping and the Postgres side, for commands that do not read MongoDB.
#[derive(Debug, Clone, Args)]
pub struct PgArgs {
    /// Path of the TOML mapping file (names the control tables and the mapped collections).
    #[arg(long, env = "MONGO2PG_MAPPING")]
    pub mapping: PathBuf,
    #[command(flatten)]
    pub pg: PgUrlArgs,
}

#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// Every stream's stored position: token, cluster time, age, lag behind MongoDB, holder.
    Show(TokensShowArgs),
    /// Move one stream to a token, a time, now, or back to a fresh snapshot (audited).
    Reset(TokensResetArgs),
}

#[derive(Debug, Clone, Args)]
pub struct TokensShowArgs {
    #[command(flatten)]
    pub pg: PgArgs,
    /// The MongoDB connection string is optional here: when given, the lag behind MongoDB's
    /// current time is shown.
    #[command(flatten)]
    pub mongo: MongoUrlArgs,
    /// Print a JSON array instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Where a reset moves the stream: exactly one of these.
#[derive(Debug, Clone, Args)]
#[group(required = true, multiple = false)]
pub struct ResetTargetArgs {
    /// Resume strictly after this resume token, given as JSON (`{"_data": "82..."}`).
    #[arg(long, value_name = "JSON")]
    pub to_token: Option<String>,
    /// Replay from this cluster time: RFC 3339 (`2026-01-31T12:00:00Z`) or `Timestamp(secs, inc)`.
    #[arg(long, value_name = "TIME")]
    pub to_time: Option<String>,
    /// Skip to the current end of the stream; the skipped window is recorded as a gap.
    #[arg(long)]
    pub to_now: bool,
    /// Forget the position and copy the collection again before streaming.
    #[arg(long)]
    pub resnapshot: bool,
}

#[derive(Debug, Clone, Args)]
pub struct TokensResetArgs {
    #[command(flatten)]
    pub conn: ConnArgs,
    /// The stream to move: a collection, or a stream group. A collection that belongs to a group
    /// names its group, which moves as a whole (after confirmation, or `--yes`).
    pub collection: String,
    #[command(flatten)]
    pub target: ResetTargetArgs,
    /// Move the whole group of a collection without asking.
    #[arg(long)]
    pub yes: bool,
    /// With --to-now: do not record the skipped window as a window_lost gap.
    #[arg(long, requires = "to_now")]
    pub no_gap: bool,
    /// Show what would change and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Why the position is moved (stored in the audit table).
    #[arg(long, value_name = "TEXT")]
    pub reason: String,
    /// Who moves it (stored in the audit table); defaults to $USER.
    #[arg(long, value_name = "NAME")]
    pub actor: Option<String>,
    /// Print the outcome as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Filters shared by `gaps list` and `gaps retry`.
#[derive(Debug, Clone, Default, Args)]
pub struct GapFilterArgs {
    /// Only gaps of this collection.
    #[arg(long, value_name = "COLLECTION")]
    pub collection: Option<String>,
    /// Only gaps of this kind (e.g. fk_missing, invalid_number, window_lost).
    #[arg(long, value_name = "KIND")]
    pub kind: Option<String>,
    /// Only gaps first seen at least this long ago (30s, 15m, 2h, 7d).
    #[arg(long, value_name = "AGE")]
    pub older_than: Option<String>,
    /// Only gaps first seen at most this long ago (30s, 15m, 2h, 7d).
    #[arg(long, value_name = "AGE")]
    pub newer_than: Option<String>,
}

impl GapFilterArgs {
    /// True when no filter flag is given.
    pub fn is_empty(&self) -> bool {
        self.collection.is_none()
            && self.kind.is_none()
            && self.older_than.is_none()
            && self.newer_than.is_none()
    }
}

#[derive(Debug, Subcommand)]
pub enum GapsCommand {
    /// Gaps matching the filters, newest first.
    List(GapsListArgs),
    /// One gap with its raw event.
    Show(GapsShowArgs),
    /// Retry one gap, or every open gap matching the filters, now (whatever their backoff).
    Retry(GapsRetryArgs),
    /// Mark an open gap as repaired.
    Resolve(GapsResolveArgs),
    /// Mark an open gap as not needing repair.
    Ignore(GapsIgnoreArgs),
}

#[derive(Debug, Clone, Args)]
pub struct GapsListArgs {
    #[command(flatten)]
    pub pg: PgArgs,
    #[command(flatten)]
    pub filter: GapFilterArgs,
    /// Only gaps with this status: open, resolved, superseded or ignored.
    #[arg(long, value_name = "STATUS")]
    pub status: Option<String>,
    /// At most this many gaps.
    #[arg(long, value_name = "N")]
    pub limit: Option<i64>,
    /// Print a JSON array instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Args)]
pub struct GapsShowArgs {
    #[command(flatten)]
    pub pg: PgArgs,
    /// The gap id.
    pub id: i64,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Args)]
#[command(group(clap::ArgGroup::new("which").required(true).multiple(true).args(["id", "collection", "kind", "older_than", "newer_than"])))]
pub struct GapsRetryArgs {
    #[command(flatten)]
    pub conn: ConnArgs,
    /// The gap to retry; or give filters to retry every open gap matching them.
    #[arg(conflicts_with_all = ["collection", "kind", "older_than", "newer_than"])]
    pub id: Option<i64>,
    #[command(flatten)]
    pub filter: GapFilterArgs,
    /// Print the outcome as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Args)]
pub struct GapsResolveArgs {
    #[command(flatten)]
    pub pg: PgArgs,
    /// The gap id.
    pub id: i64,
    /// How the gap was repaired (stored with the gap).
    #[arg(long, value_name = "TEXT")]
    pub note: String,
    /// Who resolves it; defaults to $USER.
    #[arg(long, value_name = "NAME")]
    pub actor: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct GapsIgnoreArgs {
    #[command(flatten)]
    pub pg: PgArgs,
    /// The gap id.
    pub id: i64,
    /// Why the gap needs no repair (stored with the gap).
    #[arg(long, value_name = "TEXT")]
    pub reason: String,
    /// Who ignores it; defaults to $USER.
    #[arg(long, value_name = "NAME")]
    pub actor: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct SnapshotCmdArgs {
    #[command(flatten)]
    pub conn: ConnArgs,
    /// The collection to re-copy.
    pub collection: String,
    /// Only documents with `_id` >= this (24 hex digits are an ObjectId, anything else a string).
    #[arg(long, value_name = "ID")]
    pub from_id: Option<String>,
    /// Only documents with `_id` <= this.
    #[arg(long, value_name = "ID")]
    pub to_id: Option<String>,
    /// Dot-path of a date field for a time-window re-sync (with --since, optionally --until).
    #[arg(long, value_name = "PATH", requires = "since")]
    pub field: Option<String>,
    /// Start of the time window (RFC 3339).
    #[arg(long, value_name = "TIME", requires = "field")]
    pub since: Option<String>,
    /// End of the time window (RFC 3339); defaults to now.
    #[arg(long, value_name = "TIME", requires = "since")]
    pub until: Option<String>,
    /// Documents per page (one Postgres transaction each); defaults to the mapping's snapshot.page_size.
    #[arg(long, value_name = "N")]
    pub page_size: Option<u32>,
    /// A gap this re-sync repairs (e.g. a window_lost gap); closed when the copy finishes. Repeatable.
    #[arg(long = "resolve-gap", value_name = "ID")]
    pub resolve_gaps: Vec<i64>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Args)]
pub struct VerifyCmdArgs {
    #[command(flatten)]
    pub conn: ConnArgs,
    /// Collections to compare; all mapped collections when none is given.
    pub collections: Vec<String>,
    /// `collection=column`: group that collection's money sums by the column (e.g.
    /// payments=status). Repeatable.
    #[arg(long, value_name = "COLLECTION=COLUMN")]
    pub group_by: Vec<String>,
    /// How many missing, extra and differing rows to list per collection.
    #[arg(long, value_name = "N")]
    pub max_listed: Option<usize>,
    /// Compare nothing: show the last continuous-verification round of each collection (run's
    /// `[verify]`) and its mismatches; exits 1 when it found any. Needs no MongoDB URL.
    #[arg(long, conflicts_with_all = ["group_by", "max_listed"])]
    pub last: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// How long live writes run before the final catch-up and verify (e.g. 30s, 2m, 500ms; a bare
    /// number is seconds).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Postgres database for the demo (--pg-url / PG_URL or --pg-url-file / PG_URL_FILE); it is
    /// DROPPED and recreated. Defaults to the database `mongo2pg_demo` on the local server
    /// (`host=127.0.0.1 user=postgres`).
    #[command(flatten)]
    pub pg: PgUrlArgs,
    /// Address of the HTTP server for /metrics, /healthz and /readyz (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:9187")]
    pub metrics_addr: SocketAddr,
    /// Live writes per second while the demo runs.
    #[arg(long, default_value_t = 20)]
    pub writes_per_second: u32,
    /// Keep the demo database at the end (it is dropped otherwise).
    #[arg(long)]
    pub keep: bool,
}

/// Parses `500ms`, `30s`, `5m`, `2h` or a bare number of seconds.
pub use crate::config::parse_duration;

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
                assert_eq!(r.conn.pg.secret().expect("given").expose(), "postgres://p/");
            }
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn durations_parse_with_units_or_as_seconds() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert!(parse_duration("5w").is_err());
        assert!(parse_duration("s").is_err());
    }

    #[test]
    fn a_reset_takes_exactly_one_target() {
        let base = [
            "mongo2pg",
            "tokens",
            "reset",
            "payments",
            "--mapping",
            "m.toml",
            "--mongo-url",
            "mongodb://h/",
            "--pg-url",
            "postgres://p/",
            "--reason",
            "r",
        ];
        let none = Cli::try_parse_from(base);
        assert!(none.is_err());
        let two = Cli::try_parse_from(base.iter().copied().chain(["--to-now", "--resnapshot"]));
        assert!(two.is_err());
        let one = Cli::try_parse_from(base.iter().copied().chain(["--to-time", "Timestamp(5, 1)"]))
            .expect("one target");
        match one.command {
            Command::Tokens(TokensCommand::Reset(r)) => {
                assert_eq!(r.target.to_time.as_deref(), Some("Timestamp(5, 1)"));
                assert!(!r.target.to_now);
            }
            other => panic!("parsed as {other:?}"),
        }
    }
}
