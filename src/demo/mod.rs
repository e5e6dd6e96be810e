//! `mongo2pg demo`: the whole product in one command. Starts mongosim in-process, seeds it with a
//! deterministic marketplace workload (`workload`), creates a fresh Postgres database with the
//! reference schema and the control tables, copies the seed (initial snapshot), replicates live
//! writes while printing a compact status (`status`) and serving metrics, then waits until every
//! checkpoint covers the last write, stops, and runs verify. The exit code is non-zero unless
//! verify is clean. The reference schema and mapping are embedded, so the binary runs anywhere.

pub mod status;
pub mod workload;

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use crate::cli::DemoArgs;
use crate::commands::{connect_mongo, CommandError, Target};
use crate::config::{redact_secrets, Config, Secret, SnapshotMode};
use crate::ops::gaps::{self, GapFilter};
use crate::ops::verify::{self, VerifyArgs};
use crate::replicator::{self, RunSettings};
use crate::sink::connect::{connect_pg, PgUrl};
use crate::sink::name::quote_ident;
use crate::snapshot::{self, SnapshotProgress};

/// The reference marketplace schema (applied to the demo database).
pub const SCHEMA_SQL: &str = include_str!("../../deploy/marketplace/schema.sql");
/// The reference mapping the demo replicates with.
pub const MAPPING_TOML: &str = include_str!("../../deploy/marketplace/mapping.toml");
/// Where the demo database lives unless `--pg-url` / `PG_URL` says otherwise.
pub const DEFAULT_PG_URL: &str = "host=127.0.0.1 user=postgres dbname=mongo2pg_demo";
/// How often the status line is printed.
pub const STATUS_INTERVAL: Duration = Duration::from_secs(2);
/// How long the final catch-up may take.
pub const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(60);
/// Money sums are grouped by these columns in the final verify.
pub const GROUP_BY: [&str; 3] = [
    "payments=status",
    "fundsledgerentries=entry_type",
    "selleroffers=status",
];

fn fail(context: &str, e: impl std::fmt::Display) -> CommandError {
    CommandError::Demo(format!("{context}: {}", redact_secrets(&e.to_string())))
}

/// The demo mapping: the embedded reference mapping with short batch timings.
pub fn demo_config() -> Result<Config, CommandError> {
    let mut config =
        Config::from_toml_str(MAPPING_TOML, Path::new("deploy/marketplace/mapping.toml"))?;
    config.snapshot.mode = SnapshotMode::Initial;
    // The reference mapping runs the money core as one stream group: its payments complete in
    // MongoDB transactions that land atomically in Postgres.
    config.stream.batch_max_wait_ms = 50;
    config.stream.max_await_ms = 200;
    config.stream.heartbeat_interval_ms = 1_000;
    Ok(config)
}

/// Drops and recreates the database `url` names (connecting to `postgres` on the same server),
/// then applies the reference schema and the control-table migrations.
async fn prepare_database(url: &PgUrl, config: &Config) -> Result<String, CommandError> {
    let name = url
        .dbname()
        .ok_or_else(|| {
            CommandError::Usage("the demo's Postgres URL must name its database (dbname)".into())
        })?
        .to_string();
    if ["postgres", "template0", "template1"].contains(&name.as_str()) {
        return Err(CommandError::Usage(format!(
            "refusing to drop the database {name}; name a database for the demo"
        )));
    }
    let (admin, _connection) = connect_pg(&url.with_dbname("postgres"))
        .await
        .map_err(CommandError::PgConnect)?;
    let quoted = quote_ident(&name);
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {quoted} WITH (FORCE)"))
        .await
        .map_err(|e| fail("dropping the previous demo database", e))?;
    admin
        .batch_execute(&format!("CREATE DATABASE {quoted}"))
        .await
        .map_err(|e| fail("creating the demo database", e))?;
    let mut target = Target::with_config(config.clone(), url).await?;
    target
        .pg
        .batch_execute(SCHEMA_SQL)
        .await
        .map_err(|e| fail("applying the reference schema", e))?;
    crate::sink::migrate::migrate(&mut target.pg, &target.names).await?;
    Ok(name)
}

async fn drop_database(url: &PgUrl, name: &str) -> Result<(), CommandError> {
    let (admin, _connection) = connect_pg(&url.with_dbname("postgres"))
        .await
        .map_err(CommandError::PgConnect)?;
    admin
        .batch_execute(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            quote_ident(name)
        ))
        .await
        .map_err(|e| fail("dropping the demo database", e))
}

/// Runs the demo; see the module documentation.
pub async fn run(args: DemoArgs) -> Result<ExitCode, CommandError> {
    let pg_secret = args
        .pg
        .optional_secret()?
        .unwrap_or_else(|| Secret::new(DEFAULT_PG_URL));
    let pg_url = PgUrl::parse(&pg_secret)?;
    let config = demo_config()?;
    let database = prepare_database(&pg_url, &config).await?;
    println!(
        "demo: Postgres database {database} created with the reference schema and control tables"
    );
    let sim = mongosim::start(mongosim::SimConfig::default())
        .await
        .map_err(|e| fail("starting mongosim", e))?;
    println!("demo: mongosim listening at {}", sim.uri());
    let result = run_with(&args, (&pg_secret, &pg_url), config, &sim).await;
    sim.shutdown().await;
    if args.keep {
        println!("demo: kept the database {database} (--keep)");
    } else if let Err(e) = drop_database(&pg_url, &database).await {
        eprintln!("warning: {}", e.line());
    }
    result
}

async fn run_with(
    args: &DemoArgs,
    (pg_secret, pg_url): (&Secret, &PgUrl),
    config: Config,
    sim: &mongosim::SimHandle,
) -> Result<ExitCode, CommandError> {
    let mongo = connect_mongo(&Secret::new(sim.uri())).await?;
    let mongo_db = config.source.database.clone();
    let mut work = workload::Workload::new(&mongo, &mongo_db)
        .await
        .map_err(CommandError::Mongo)?;
    let seeded = work.seed().await.map_err(CommandError::Mongo)?;
    let summary: Vec<String> = seeded.iter().map(|(c, n)| format!("{c} {n}")).collect();
    println!(
        "demo: seeded {} documents ({}), {} of them deliberately bad",
        work.writes,
        summary.join(", "),
        workload::bad_documents().len()
    );

    // The initial snapshot: the seed is copied in dependency order before streaming starts.
    let mut target = Target::with_config(config.clone(), pg_url).await?;
    let mapping = target.compile().await?;
    let mut sink = target.sink().await?;
    let names = target.names.clone();
    let started = Instant::now();
    let mut on_progress = |collection: &str, p: &SnapshotProgress| {
        if p.done {
            println!("demo: snapshot {collection}: {} documents copied", p.copied);
        }
    };
    let reports = snapshot::snapshot_all(
        &mongo,
        &mut target.pg,
        &mut sink,
        &mapping,
        &names,
        Some(pg_url),
        &mut on_progress,
    )
    .await?;
    let failed: u64 = reports.iter().map(|r| r.failed).sum();
    println!(
        "demo: snapshot done in {} ms ({} documents became gaps)",
        started.elapsed().as_millis(),
        failed
    );

    let replicator = replicator::start(RunSettings {
        mongo_url: Secret::new(sim.uri()),
        pg_url: pg_secret.clone(),
        config: config.clone(),
        metrics_addr: Some(args.metrics_addr),
        holder: crate::commands::default_holder(),
    })
    .await
    .map_err(|e| fail("starting the replicator", e))?;
    if let Some(addr) = replicator.metrics_addr() {
        println!("demo: metrics at http://{addr}/metrics (health: /healthz, /readyz)");
    }
    println!(
        "demo: writing live changes for {}s at {}/s; status: rows in Postgres (open gaps)",
        args.duration.as_secs_f64(),
        args.writes_per_second
    );

    let live = live_phase(args, &mut work, &target.pg, &mapping, &names).await;
    let caught = match live {
        Ok(()) => {
            status::wait_caught_up(
                &target.pg,
                &mapping,
                &names,
                &work.last_write,
                CATCH_UP_TIMEOUT,
            )
            .await
        }
        Err(e) => Err(e.line()),
    };
    replicator.shutdown().await;
    let (final_status, catch_up) = caught.map_err(CommandError::Demo)?;
    println!(
        "demo: caught up {} ms after the last write (newest checkpoint {})",
        catch_up.as_millis(),
        status::newest_position(&final_status).unwrap_or_else(|| "-".into())
    );
    println!(
        "{}",
        status::render_line(args.duration, work.writes, &final_status, &work.last_write)
    );
    println!(
        "demo: {} MongoDB transactions written (payment completed + ledger entry + buyer points)",
        work.transactions
    );

    let all_gaps = gaps::list(&target.pg, &names.gaps, &GapFilter::default()).await?;
    println!(
        "demo: {} gaps recorded (documents the mapping rejects stay out of Postgres):",
        all_gaps.len()
    );
    print!("{}", status::render_gaps(&all_gaps));

    let (rules, options) = VerifyArgs {
        collections: Vec::new(),
        group_by: GROUP_BY.iter().map(|s| s.to_string()).collect(),
        max_listed: None,
    }
    .resolve(&mapping)
    .map_err(|e| CommandError::Demo(e.to_string()))?;
    let report = verify::verify(&mongo.database(&mongo_db), &target.pg, &rules, &options).await?;
    print!("{}", verify::render_text(&report));
    Ok(if report.clean {
        println!("demo: done, MongoDB and Postgres agree");
        ExitCode::SUCCESS
    } else {
        println!("demo: verify found differences");
        ExitCode::from(crate::commands::EXIT_FAILURE)
    })
}

/// Live writes at the requested rate, with a status line every `STATUS_INTERVAL`, until the
/// duration ends (or Ctrl-C).
async fn live_phase(
    args: &DemoArgs,
    work: &mut workload::Workload,
    pg: &tokio_postgres::Client,
    mapping: &crate::config::CompiledMapping,
    names: &crate::sink::ControlNames,
) -> Result<(), CommandError> {
    let started = Instant::now();
    let per_write = Duration::from_secs(1) / args.writes_per_second.max(1);
    let mut writes = tokio::time::interval(per_write);
    writes.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut report = tokio::time::interval(STATUS_INTERVAL);
    report.tick().await;
    let stop = tokio::time::sleep(args.duration);
    tokio::pin!(stop);
    let interrupted = crate::commands::shutdown_signal();
    tokio::pin!(interrupted);
    loop {
        tokio::select! {
            _ = &mut stop => return Ok(()),
            _ = &mut interrupted => {
                println!("demo: interrupted; finishing up");
                return Ok(());
            }
            _ = writes.tick() => work.step().await.map_err(CommandError::Mongo)?,
            _ = report.tick() => {
                let s = status::read(pg, mapping, names)
                    .await
                    .map_err(|e| fail("reading the replication status", e))?;
                println!("{}", status::render_line(started.elapsed(), work.writes, &s, &work.last_write));
            }
        }
    }
}
