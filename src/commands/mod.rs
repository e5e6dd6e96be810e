//! One function per CLI command; `dispatch` maps each outcome to the process exit code
//! (0 success, 1 failure or a verify mismatch, 2 bad configuration or usage). Every error is
//! printed as one line with connection strings redacted.

mod gaps;
mod resync;
mod tokens;
mod verify;

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use tracing::{error, info};

use crate::cli::{
    Cli, Command, ConnArgs, GapsCommand, MigrateArgs, MongoUrlArgs, PgArgs, PgUrlArgs, RunArgs,
    TokensCommand,
};
use crate::config::url_source::UrlSourceError;
use crate::config::{redact_secrets, CompiledMapping, Config, ConfigError, Secret};
use crate::replicator::{self, RunSettings};
use crate::sink::connect::{connect_pg, describe, AbortOnDrop, PgUrl, PgUrlError};
use crate::sink::migrate::ControlNames;
use crate::sink::privileges::{self, Access, CheckError, MissingPrivileges};
use crate::source::connect::{describe_mongo, open_mongo, MongoUrlError};

/// Exit code for an invalid mapping or command line.
pub const EXIT_CONFIG: u8 = 2;
/// Exit code for a failed command (and for `verify` finding a mismatch).
pub const EXIT_FAILURE: u8 = 1;

/// How long a command waits for MongoDB to become reachable unless the URL says otherwise.
pub const MONGO_SELECTION_TIMEOUT: Duration = Duration::from_secs(10);

/// Why an operator command failed.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// A flag value the command cannot use.
    #[error("{0}")]
    Usage(String),
    #[error("invalid mapping configuration: {0}")]
    Config(#[from] ConfigError),
    /// A connection string is missing, given twice, or its file is unreadable or empty.
    #[error(transparent)]
    UrlSource(#[from] UrlSourceError),
    /// An option of the Postgres connection string cannot be used (named in the message).
    #[error("invalid Postgres connection string: {0}")]
    PgUrl(#[from] PgUrlError),
    /// An option of the MongoDB connection string cannot be used.
    #[error("invalid MongoDB connection string: {0}")]
    MongoUrl(#[source] MongoUrlError),
    #[error("cannot connect to postgres: {}", describe(.0))]
    PgConnect(#[source] tokio_postgres::Error),
    #[error("cannot connect to mongodb: {}{}", describe_mongo(.0), if crate::policy::is_mongo_auth_error(.0) {
        format!(" ({})", crate::policy::MONGO_CREDENTIALS_ADVICE)
    } else {
        String::new()
    })]
    Mongo(#[source] mongodb::error::Error),
    /// The Postgres role lacks privileges the command needs (all named in one line).
    #[error(transparent)]
    Privileges(#[from] MissingPrivileges),
    #[error(transparent)]
    Sink(#[from] crate::sink::SinkError),
    #[error(transparent)]
    Tokens(#[from] crate::ops::tokens::TokensError),
    #[error(transparent)]
    Gaps(#[from] crate::ops::gaps::GapsError),
    #[error(transparent)]
    Snapshot(#[from] crate::snapshot::SnapshotError),
    #[error(transparent)]
    SnapshotOf(#[from] crate::snapshot::CollectionSnapshotError),
    #[error(transparent)]
    Verify(#[from] crate::ops::verify::VerifyError),
    #[error("cannot render JSON output: {0}")]
    Json(#[from] serde_json::Error),
    #[error("{0}")]
    Demo(String),
}

impl From<MongoUrlError> for CommandError {
    fn from(e: MongoUrlError) -> Self {
        if e.is_bad_option() {
            CommandError::MongoUrl(e)
        } else {
            CommandError::Mongo(e.0)
        }
    }
}

impl From<CheckError> for CommandError {
    fn from(e: CheckError) -> Self {
        match e {
            CheckError::Missing(m) => CommandError::Privileges(m),
            CheckError::Sink(e) => CommandError::Sink(e),
        }
    }
}

impl CommandError {
    /// The exit code this error ends the process with.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            CommandError::Usage(_)
            | CommandError::Config(_)
            | CommandError::UrlSource(_)
            | CommandError::PgUrl(_)
            | CommandError::MongoUrl(_)
            | CommandError::Privileges(_) => ExitCode::from(EXIT_CONFIG),
            _ => ExitCode::from(EXIT_FAILURE),
        }
    }

    /// The one line printed for the operator (connection strings redacted).
    pub fn line(&self) -> String {
        redact_secrets(&self.to_string()).replace('\n', " ")
    }
}

/// Run the parsed command line.
pub async fn dispatch(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Migrate(args) => migrate(args).await,
        Command::Run(args) => return run(args).await,
        Command::Tokens(TokensCommand::Show(a)) => tokens::show(a).await,
        Command::Tokens(TokensCommand::Reset(a)) => tokens::reset(a).await,
        Command::Gaps(GapsCommand::List(a)) => gaps::list(a).await,
        Command::Gaps(GapsCommand::Show(a)) => gaps::show(a).await,
        Command::Gaps(GapsCommand::Retry(a)) => gaps::retry(a).await,
        Command::Gaps(GapsCommand::Resolve(a)) => gaps::resolve(a).await,
        Command::Gaps(GapsCommand::Ignore(a)) => gaps::ignore(a).await,
        Command::Snapshot(a) => resync::snapshot(a).await,
        Command::Verify(a) => verify::verify(a).await,
        Command::Demo(a) => crate::demo::run(a).await,
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            // One line on stderr; the log would only repeat it.
            eprintln!("error: {}", e.line());
            e.exit_code()
        }
    }
}

/// The Postgres connection string of `--pg-url` / `--pg-url-file`, checked (certificate files
/// read) but not connected.
pub fn pg_url(args: &PgUrlArgs) -> Result<PgUrl, CommandError> {
    Ok(PgUrl::parse(&args.secret()?)?)
}

/// A MongoDB client for `--mongo-url` / `--mongo-url-file`, its options checked (TLS files
/// read); no server is contacted until it is used (see `ping_mongo`).
pub async fn mongo_client(args: &MongoUrlArgs) -> Result<mongodb::Client, CommandError> {
    Ok(open_mongo(&args.secret()?, Some(MONGO_SELECTION_TIMEOUT)).await?)
}

/// Fails (with one line) unless MongoDB answers a ping.
pub async fn ping_mongo(client: &mongodb::Client) -> Result<(), CommandError> {
    client
        .database("admin")
        .run_command(bson::doc! {"ping": 1})
        .await
        .map_err(CommandError::Mongo)?;
    Ok(())
}

/// A MongoDB client for `url` that has answered a ping.
pub async fn connect_mongo(url: &Secret) -> Result<mongodb::Client, CommandError> {
    let client = open_mongo(url, Some(MONGO_SELECTION_TIMEOUT)).await?;
    ping_mongo(&client).await?;
    Ok(client)
}

/// `Target::open` and a MongoDB client that has answered a ping; both connection strings are
/// checked before anything connects, so a wrong option is reported first, then the role's
/// privileges for `access`.
pub async fn open_both(
    conn: &ConnArgs,
    access: Access,
) -> Result<(Target, mongodb::Client), CommandError> {
    let pg = pg_url(&conn.pg)?;
    let mongo = mongo_client(&conn.mongo).await?;
    let target = Target::open(&conn.mapping, &pg).await?;
    target.check_access(access).await?;
    ping_mongo(&mongo).await?;
    Ok((target, mongo))
}

/// The mapping and an open Postgres connection: what every operator command starts from.
pub struct Target {
    pub config: Config,
    pub names: ControlNames,
    pub pg: tokio_postgres::Client,
    _pg_task: AbortOnDrop,
}

impl Target {
    /// Loads the mapping and connects to Postgres.
    pub async fn open(mapping: &Path, pg_url: &PgUrl) -> Result<Target, CommandError> {
        let config = Config::from_path(mapping)?;
        Target::with_config(config, pg_url).await
    }

    /// Connects to Postgres for an already loaded mapping.
    pub async fn with_config(config: Config, pg_url: &PgUrl) -> Result<Target, CommandError> {
        let names = replicator::control_names(&config);
        let (pg, task) = connect_pg(pg_url).await.map_err(CommandError::PgConnect)?;
        Ok(Target {
            config,
            names,
            pg,
            _pg_task: task,
        })
    }

    /// From `--mapping` and `--pg-url` (or `--pg-url-file`), with the role's privileges for
    /// `access` checked.
    pub async fn from_args(args: &PgArgs, access: Access) -> Result<Target, CommandError> {
        let url = pg_url(&args.pg)?;
        let target = Target::open(&args.mapping, &url).await?;
        target.check_access(access).await?;
        Ok(target)
    }

    /// Fails naming every privilege the role lacks for `access`.
    pub async fn check_access(&self, access: Access) -> Result<(), CommandError> {
        let tables = self.config.mapped_tables();
        Ok(privileges::check(&self.pg, &[access], &self.names, &tables).await?)
    }

    /// The mapping checked against the live Postgres catalogue.
    pub async fn compile(&self) -> Result<CompiledMapping, CommandError> {
        let catalogue =
            crate::sink::catalogue::load(&self.pg, &self.config.mapped_tables()).await?;
        Ok(self.config.compile(&catalogue)?)
    }

    /// A sink over the live catalogue, for commands that write rows.
    pub async fn sink(&self) -> Result<crate::sink::Sink, CommandError> {
        let catalogue =
            crate::sink::catalogue::load(&self.pg, &self.config.mapped_tables()).await?;
        let mapping = self.config.compile(&catalogue)?;
        Ok(crate::sink::Sink::new(catalogue, self.names.clone())
            .with_rules(mapping.collections.values())
            .with_holder(default_holder()))
    }
}

/// `--actor`, else `$USER`, else `operator`.
pub fn actor_or_user(actor: Option<String>) -> String {
    actor
        .filter(|a| !a.trim().is_empty())
        .or_else(|| std::env::var("USER").ok().filter(|u| !u.trim().is_empty()))
        .unwrap_or_else(|| "operator".to_string())
}

/// Pretty JSON of `value` followed by a newline.
pub fn to_json<T: serde::Serialize>(value: &T) -> Result<String, CommandError> {
    Ok(format!("{}\n", serde_json::to_string_pretty(value)?))
}

fn load_config(path: &std::path::Path) -> Result<Config, ExitCode> {
    Config::from_path(path).map_err(|e| {
        error!(error = %e, "invalid mapping configuration");
        eprintln!("error: {e}");
        ExitCode::from(EXIT_CONFIG)
    })
}

async fn migrate(args: MigrateArgs) -> Result<ExitCode, CommandError> {
    let (names, version_columns) = match &args.mapping {
        Some(path) => {
            let config = Config::from_path(path)?;
            (replicator::control_names(&config), config.version_columns())
        }
        None => (ControlNames::default(), Vec::new()),
    };
    let url = pg_url(&args.pg)?;
    let (mut client, _conn) = connect_pg(&url).await.map_err(CommandError::PgConnect)?;
    let applied = crate::sink::migrate::migrate(&mut client, &names).await?;
    let converted =
        crate::sink::migrate::upgrade_version_columns(&mut client, &names, &version_columns)
            .await?;
    for table in converted {
        println!("moved the version column of {table} to the current cluster-time encoding");
    }
    if applied.is_empty() {
        println!("control tables are up to date");
    } else {
        for m in applied {
            println!("applied {m}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn run(args: RunArgs) -> ExitCode {
    let config = match load_config(&args.conn.mapping) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let urls = args
        .conn
        .mongo
        .secret()
        .and_then(|m| Ok((m, args.conn.pg.secret()?)));
    let (mongo_url, pg_url) = match urls {
        Ok(urls) => urls,
        Err(e) => {
            let e = CommandError::from(e);
            eprintln!("error: {}", e.line());
            return e.exit_code();
        }
    };
    let holder = args.holder.unwrap_or_else(default_holder);
    let settings = RunSettings {
        mongo_url,
        pg_url,
        config,
        metrics_addr: Some(args.metrics_addr),
        holder,
    };
    let replicator = match replicator::start(settings).await {
        Ok(r) => r,
        Err(e) => {
            let msg = redact_secrets(&e.to_string()).into_owned();
            if e.is_bad_configuration() {
                // One line: what is wrong and which option; the log would only repeat it.
                eprintln!("error: {msg}");
                return ExitCode::from(EXIT_CONFIG);
            }
            error!(error = %msg, "cannot start");
            eprintln!("error: {msg}");
            return ExitCode::FAILURE;
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
