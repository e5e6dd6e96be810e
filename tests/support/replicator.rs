//! The reference marketplace domain for the replication tests: the shipped mapping pointed at a
//! database of the test's own (no initial snapshot, short batch timings), migrating the control
//! tables, starting the replicator in-process, comparing users on both sides, and the mapping
//! file for a child `mongo2pg` process. Also routes the replicator's logs to the test output.

use std::time::{Duration, Instant};

use mongo2pg::config::{Config, Secret, SnapshotMode};
use mongo2pg::replicator::{self, Replicator, RunSettings};

use super::{repo_path, unique_name, Source, TestDb};

/// The reference mapping, pointed at a database of its own, without the initial snapshot and
/// with short batch timings so tests converge quickly.
pub fn reference_config(mongo_db: &str) -> Config {
    let path = repo_path("deploy/marketplace/mapping.toml");
    let mut config = Config::from_path(&path).expect("reference mapping parses");
    // The per-collection layout: these tests exercise one stream per collection; the group
    // tests (tests/replicate/groups.rs) and the demo run the shipped `money` group.
    config.streams.clear();
    config.source.database = mongo_db.to_string();
    config.snapshot.mode = SnapshotMode::Never;
    config.stream.batch_max_wait_ms = 50;
    config.stream.max_await_ms = 200;
    config.stream.heartbeat_interval_ms = 200;
    config
}

/// A reference-domain test's setting: mongosim, a fresh database with the reference schema and
/// migrated control tables, a MongoDB database of its own and the reference mapping for it.
pub struct RefEnv {
    pub source: Source,
    pub db: TestDb,
    pub mdb: String,
    pub config: Config,
}

impl RefEnv {
    /// The setting with the reference mapping as `reference_config` makes it.
    pub async fn start(tag: &str) -> RefEnv {
        RefEnv::start_with(tag, |_| {}).await
    }

    /// The setting with the reference mapping changed by `edit` before the migration.
    pub async fn start_with(tag: &str, edit: impl FnOnce(&mut Config)) -> RefEnv {
        let source = Source::start().await;
        let db = TestDb::create(tag).await;
        db.apply_reference_schema().await;
        let mdb = unique_name("mdb");
        let mut config = reference_config(&mdb);
        edit(&mut config);
        migrate(&db, &config).await;
        RefEnv {
            source,
            db,
            mdb,
            config,
        }
    }
}

/// The stream group the group tests and the grouped benchmark use: users, payments and ledger
/// entries on one change stream.
pub fn money_group() -> mongo2pg::config::GroupConfig {
    mongo2pg::config::GroupConfig {
        collections: mongo2pg::config::Members::List(vec![
            "users".into(),
            "payments".into(),
            "fundsledgerentries".into(),
        ]),
    }
}

/// Migrate the control tables of `config` into `db`.
pub async fn migrate(db: &TestDb, config: &Config) {
    let mut client = db.client().await;
    mongo2pg::sink::migrate::migrate(&mut client, &replicator::control_names(config))
        .await
        .expect("migrate control tables");
}

/// Start the replicator in-process.
pub async fn start_replicator(source: &Source, db: &TestDb, config: &Config) -> Replicator {
    replicator::start(RunSettings {
        mongo_url: Secret::new(source.uri.clone()),
        pg_url: Secret::new(db.url()),
        config: config.clone(),
        metrics_addr: None,
        holder: "test".into(),
    })
    .await
    .expect("replicator starts")
}

/// Users as (legacy id, points, email) from MongoDB, sorted.
pub async fn mongo_users(source: &Source, db: &str) -> Vec<(String, i64, Option<String>)> {
    use futures::TryStreamExt;
    let docs: Vec<bson::Document> = source
        .coll(db, "users")
        .find(bson::doc! {})
        .await
        .expect("find users")
        .try_collect()
        .await
        .expect("read users");
    let mut out: Vec<(String, i64, Option<String>)> = docs
        .iter()
        .map(|d| {
            let id = d
                .get_object_id("_id")
                .map(|o| o.to_hex())
                .unwrap_or_default();
            let points = match d.get("points") {
                Some(bson::Bson::Int32(v)) => i64::from(*v),
                Some(bson::Bson::Int64(v)) => *v,
                _ => 0,
            };
            (id, points, d.get_str("email").ok().map(str::to_string))
        })
        .collect();
    out.sort();
    out
}

/// Users as (legacy id, points, email) from Postgres, sorted.
pub async fn pg_users(pg: &tokio_postgres::Client) -> Vec<(String, i64, Option<String>)> {
    let rows = pg
        .query(
            "SELECT legacy_object_id, points::bigint, email FROM users ORDER BY legacy_object_id",
            &[],
        )
        .await
        .unwrap_or_default();
    let mut out: Vec<(String, i64, Option<String>)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    out.sort();
    out
}

/// Wait until Postgres holds exactly MongoDB's users, then return them.
pub async fn wait_users_equal(
    source: &Source,
    mdb: &str,
    pg: &tokio_postgres::Client,
    timeout: Duration,
) {
    let deadline = Instant::now() + timeout;
    loop {
        let m = mongo_users(source, mdb).await;
        let p = pg_users(pg).await;
        if m == p {
            return;
        }
        if Instant::now() > deadline {
            let missing: Vec<_> = m.iter().filter(|x| !p.contains(x)).take(5).collect();
            let extra: Vec<_> = p.iter().filter(|x| !m.contains(x)).take(5).collect();
            panic!(
                "postgres never matched mongodb: {} vs {} users; missing/different {missing:?}; extra/stale {extra:?}",
                m.len(),
                p.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The reference mapping file with the database name and snapshot mode replaced, written to a
/// temporary file for a child `mongo2pg` process.
pub fn reference_mapping_file(mongo_db: &str) -> tempfile::NamedTempFile {
    mapping_file_with(mongo_db, &[("mode = \"initial\"", "mode = \"never\"")])
}

/// The reference mapping file for database `mongo_db`, short batch waits and the given text
/// replacements, for a child `mongo2pg` process.
pub fn mapping_file_with(mongo_db: &str, replacements: &[(&str, &str)]) -> tempfile::NamedTempFile {
    use std::io::Write;
    let text = std::fs::read_to_string(repo_path("deploy/marketplace/mapping.toml"))
        .expect("read mapping");
    let text = mongo2pg::config::without_stream_groups(&text)
        .replace(
            "database = \"marketplace\"",
            &format!("database = \"{mongo_db}\""),
        )
        .replace("batch_max_wait_ms = 200", "batch_max_wait_ms = 50");
    let text = replacements
        .iter()
        .fold(text, |t, (from, to)| t.replace(from, to));
    let mut f = tempfile::NamedTempFile::new().expect("temp file");
    f.write_all(text.as_bytes()).expect("write mapping");
    f
}

/// Route the replicator's logs to the test output (shown for failing tests); RUST_LOG filters.
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("mongo2pg=info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}

/// Verify of every collection of the reference mapping (`config`), MongoDB database `mdb` against
/// the test database.
pub async fn verify_reference(
    source: &Source,
    mdb: &str,
    db: &TestDb,
    config: &Config,
) -> mongo2pg::ops::verify::VerifyReport {
    let pg = db.client().await;
    let catalogue = mongo2pg::sink::catalogue::load(&pg, &config.mapped_tables())
        .await
        .expect("catalogue");
    let mapping = config.compile(&catalogue).expect("compile");
    let rules: Vec<&mongo2pg::mapping::CollectionRules> = mapping.collections.values().collect();
    let options = mongo2pg::ops::verify::VerifyOptions {
        id_map_table: config.target.id_map.clone(),
        ..Default::default()
    };
    mongo2pg::ops::verify::verify(&source.client.database(mdb), &pg, &rules, &options)
        .await
        .expect("verify")
}

/// Open gaps as (collection, kind), sorted.
pub async fn open_gaps(pg: &tokio_postgres::Client) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = pg
        .query(
            "SELECT collection, kind FROM public.pg_dualwrite_gaps WHERE status = 'open'",
            &[],
        )
        .await
        .expect("gaps")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    out.sort();
    out
}
