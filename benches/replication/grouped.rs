//! Row 7: the same N payment inserts replicated twice in one run, once with users, payments and
//! the ledger on one stream group (one database-level change stream, applied in oplog order) and
//! once on per-collection streams: what the ordering and atomicity of a group cost.

use std::time::{Duration, Instant};

use bson::Document;
use mongo2pg::config::SnapshotMode;

use crate::common::*;
use crate::support::{self, TestDb};

pub async fn run(sim: &mongosim::SimHandle, n: usize) -> BenchResult<Row> {
    let per_collection = inserts(sim, n, false).await?;
    let grouped = inserts(sim, n, true).await?;
    Ok(Row::new(
        format!("7. {n} payment inserts, users + payments + ledger in one stream group (events/s)"),
        per_sec(n, grouped),
    )
    .baseline(format!(
        "per-collection streams {}",
        per_sec(n, per_collection)
    ))
    .ratio(per_collection.as_secs_f64() / grouped.as_secs_f64()))
}

async fn inserts(sim: &mongosim::SimHandle, n: usize, group: bool) -> BenchResult<Duration> {
    let db = TestDb::create("bench_group").await;
    db.apply_reference_schema().await;
    let result = inserts_in(sim, &db.url(), n, group).await;
    drop(db);
    result
}

async fn inserts_in(
    sim: &mongosim::SimHandle,
    pg_url: &str,
    n: usize,
    group: bool,
) -> BenchResult<Duration> {
    let mongo_db = mongo_db("group");
    let mut config = reference_config(&mongo_db, SnapshotMode::Never)?;
    if group {
        config
            .streams
            .insert("money".into(), support::money_group());
    }
    migrate(pg_url, &config).await?;
    let streams = config.stream_specs().len() as i64;
    let replicator = start_replicator(&sim.uri(), pg_url, &config, None).await?;
    let pg = support::connect(pg_url).await;
    let timed = async {
        wait_for_count(
            &pg,
            "SELECT count(*) FROM mongo2pg.checkpoints WHERE cluster_time IS NOT NULL",
            streams,
        )
        .await?;
        let mongo = mongodb::Client::with_uri_str(sim.uri()).await?;
        let buyers = buyers();
        seed_buyers(&mongo.database(&mongo_db).collection("users"), &pg, &buyers).await?;
        let docs: Vec<Document> = (0..n).map(|i| payment_doc(i, &buyers, "grp")).collect();
        let last = oid_of(docs.last().ok_or("no documents")?)?;
        let started = Instant::now();
        insert_chunks(&mongo.database(&mongo_db).collection("payments"), docs).await?;
        let done = wait_for_last(&pg, last, "true", n as i64).await?;
        BenchResult::Ok(done - started)
    }
    .await;
    replicator.shutdown().await;
    timed
}
