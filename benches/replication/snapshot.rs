//! The initial snapshot of S payments (plus their buyers) by the in-process replicator with the
//! shipped mapping (`mode = "initial"`), timed from `replicator::start` until the last payment is
//! in Postgres; the baseline is a client-side `COPY payments FROM STDIN` (what psql's `\copy`
//! does, text format) of the very same rows into the same table, emptied first.

use std::time::{Duration, Instant};

use bson::Document;
use futures::{SinkExt, TryStreamExt};
use mongo2pg::config::SnapshotMode;

use crate::common::*;
use crate::support::{self, TestDb};

pub struct Snapshot {
    pub rows: usize,
    pub snapshot: Duration,
    pub copy: Duration,
}

pub async fn run(sim: &mongosim::SimHandle, s: usize) -> BenchResult<Snapshot> {
    let db = TestDb::create("bench_snapshot").await;
    db.apply_reference_schema().await;
    let result = run_in(sim, &db.url(), s).await;
    drop(db);
    result
}

async fn run_in(sim: &mongosim::SimHandle, pg_url: &str, s: usize) -> BenchResult<Snapshot> {
    let mongo_db = mongo_db("snapshot");
    let config = reference_config(&mongo_db, SnapshotMode::Initial)?;
    migrate(pg_url, &config).await?;
    let mongo = mongodb::Client::with_uri_str(sim.uri()).await?;
    let database = mongo.database(&mongo_db);
    let buyers = buyers();
    let users: Vec<Document> = buyers
        .iter()
        .enumerate()
        .map(|(i, b)| buyer_doc(*b, i))
        .collect();
    database
        .collection::<Document>("users")
        .insert_many(users)
        .await?;
    let docs: Vec<Document> = (0..s).map(|i| payment_doc(i, &buyers, "snap")).collect();
    let last = oid_of(docs.last().ok_or("no documents")?)?;
    insert_chunks(&database.collection("payments"), docs).await?;

    let pg = support::connect(pg_url).await;
    let started = Instant::now();
    let replicator = start_replicator(&sim.uri(), pg_url, &config, None).await?;
    let copied = wait_for_last(&pg, last, "true", s as i64).await;
    replicator.shutdown().await;
    let snapshot = copied? - started;

    let copy = client_copy(&pg).await?;
    Ok(Snapshot {
        rows: s,
        snapshot,
        copy,
    })
}

/// `COPY payments TO STDOUT` into memory, empty the table, then time `COPY payments FROM STDIN`
/// of those bytes.
async fn client_copy(pg: &tokio_postgres::Client) -> BenchResult<Duration> {
    let want = count(pg, "SELECT count(*) FROM payments").await?;
    let out = pg.copy_out("COPY payments TO STDOUT").await?;
    let chunks: Vec<_> = out.try_collect().await?;
    pg.batch_execute("DELETE FROM payments").await?;
    pg.batch_execute("VACUUM ANALYZE payments").await?;
    let started = Instant::now();
    let sink = pg.copy_in("COPY payments FROM STDIN").await?;
    futures::pin_mut!(sink);
    for chunk in chunks {
        sink.send(chunk).await?;
    }
    let written = sink.finish().await?;
    let elapsed = started.elapsed();
    if written as i64 != want {
        return Err(format!("COPY wrote {written} rows, expected {want}").into());
    }
    Ok(elapsed)
}
