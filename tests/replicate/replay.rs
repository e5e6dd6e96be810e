//! Replays converge and never regress: resetting a running stream to an earlier resume token
//! re-applies old events, but the version guard keeps every newer row; a property test mixes random
//! writes, replays, graceful restarts and aborts and always ends with Postgres equal to MongoDB.

use std::time::Duration;

use crate::support::*;
use bson::{doc, oid::ObjectId};
use proptest::prelude::*;

const WAIT: Duration = Duration::from_secs(60);

/// The stored checkpoint of a stream: (resume token text, cluster time).
async fn checkpoint(pg: &tokio_postgres::Client, stream: &str) -> Option<(String, i64)> {
    pg.query_opt(
        "SELECT resume_token, cluster_time FROM mongo2pg.checkpoints WHERE stream = $1 AND resume_token IS NOT NULL",
        &[&stream],
    )
    .await
    .ok()
    .flatten()
    .map(|r| (r.get(0), r.get(1)))
}

/// What `tokens reset --to-token` does: move the checkpoint and bump its epoch.
async fn reset_to(pg: &tokio_postgres::Client, stream: &str, to: &(String, i64)) {
    pg.execute(
        "UPDATE mongo2pg.checkpoints SET resume_token = $2, cluster_time = $3, epoch = epoch + 1 WHERE stream = $1",
        &[&stream, &to.0, &to.1],
    )
    .await
    .expect("reset checkpoint");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_old_events_never_overwrite_a_newer_row() {
    replay_keeps_the_newer_row(Source::start().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_stay_ordered_with_cluster_times_past_2038() {
    // 2100-01-01: cluster-time seconds past 2^31.
    let source = Source::start_sim(mongosim::SimConfig {
        start_time: Some(4_102_444_800),
        ..mongosim::SimConfig::default()
    })
    .await;
    replay_keeps_the_newer_row(source).await;
}

async fn replay_keeps_the_newer_row(source: Source) {
    let db = TestDb::create("replay").await;
    db.apply_reference_schema().await;
    let mdb = unique_name("mdb");
    let config = reference_config(&mdb);
    migrate(&db, &config).await;
    let pg = db.client().await;
    let replicator = start_replicator(&source, &db, &config).await;
    let users = source.coll(&mdb, "users");

    let id = ObjectId::new();
    users
        .insert_one(doc! {"_id": id, "points": 1})
        .await
        .expect("insert");
    wait_until("first version applied", WAIT, || async {
        count(&pg, "SELECT count(*) FROM users WHERE points = 1").await == 1
    })
    .await;
    let early = checkpoint(&pg, "users")
        .await
        .expect("checkpoint after the insert");
    users
        .update_one(doc! {"_id": id}, doc! {"$set": {"points": 2}})
        .await
        .expect("update");
    wait_until("second version applied", WAIT, || async {
        count(&pg, "SELECT count(*) FROM users WHERE points = 2").await == 1
    })
    .await;
    let late = checkpoint(&pg, "users")
        .await
        .expect("checkpoint after the update");
    assert!(late.1 > early.1, "checkpoint moved forward");

    // Rewind to before the update: the stream replays it with the looked-up (current) document and
    // its old cluster time; the row must stay at the newest version throughout.
    reset_to(&pg, "users", &early).await;
    wait_until(
        "the stream replayed past the update again",
        WAIT,
        || async {
            checkpoint(&pg, "users")
                .await
                .is_some_and(|c| c.1 >= late.1)
        },
    )
    .await;
    assert_eq!(
        count(&pg, "SELECT count(*) FROM users WHERE points = 2").await,
        1
    );
    let version: i64 = pg
        .query_one(
            "SELECT source_version FROM users WHERE legacy_object_id = $1",
            &[&id.to_hex()],
        )
        .await
        .expect("row")
        .get(0);
    assert!(version > early.1, "row keeps the update's version");
    let seconds = mongo2pg::event::ClusterTime::from_sql(version).seconds();
    let now = source
        .client
        .database("admin")
        .run_command(doc! {"ping": 1})
        .await
        .expect("ping")
        .get_timestamp("operationTime")
        .expect("operation time")
        .time;
    assert!(
        now.abs_diff(seconds) < 600,
        "the version is the event's cluster time: {seconds} vs now {now}"
    );
    replicator.shutdown().await;
    source.stop().await;
    drop(db);
}

#[derive(Debug, Clone)]
enum Step {
    Upsert(usize, i32),
    Update(usize, i32),
    Delete(usize),
    /// Rewind the running stream to the n-th checkpoint seen so far.
    Replay(usize),
    Restart,
    Abort,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0..6usize, 0..1000i32).prop_map(|(k, v)| Step::Upsert(k, v)),
        3 => (0..6usize, 0..1000i32).prop_map(|(k, v)| Step::Update(k, v)),
        2 => (0..6usize).prop_map(Step::Delete),
        2 => (0..8usize).prop_map(Step::Replay),
        1 => Just(Step::Restart),
        1 => Just(Step::Abort),
    ]
}

async fn run_steps(steps: Vec<Step>) {
    let source = Source::start().await;
    let db = TestDb::create("prop").await;
    db.apply_reference_schema().await;
    let mdb = unique_name("mdb");
    let mut config = reference_config(&mdb);
    config.stream.batch_max_events = 3;
    migrate(&db, &config).await;
    let pg = db.client().await;
    let users = source.coll(&mdb, "users");
    let keys: Vec<ObjectId> = (0..6).map(|_| ObjectId::new()).collect();
    let mut seen: Vec<(String, i64)> = Vec::new();
    let mut replicator = start_replicator(&source, &db, &config).await;
    for s in steps {
        match s {
            Step::Upsert(k, v) => {
                users
                    .replace_one(doc! {"_id": keys[k]}, doc! {"_id": keys[k], "points": v})
                    .upsert(true)
                    .await
                    .expect("upsert");
            }
            Step::Update(k, v) => {
                users
                    .update_one(doc! {"_id": keys[k]}, doc! {"$set": {"points": v}})
                    .await
                    .expect("update");
            }
            Step::Delete(k) => {
                users
                    .delete_one(doc! {"_id": keys[k]})
                    .await
                    .expect("delete");
            }
            Step::Replay(n) => {
                if !seen.is_empty() {
                    let to = seen[n % seen.len()].clone();
                    reset_to(&pg, "users", &to).await;
                }
            }
            Step::Restart => {
                replicator.shutdown().await;
                replicator = start_replicator(&source, &db, &config).await;
            }
            Step::Abort => {
                replicator.abort().await;
                replicator = start_replicator(&source, &db, &config).await;
            }
        }
        if let Some(c) = checkpoint(&pg, "users").await {
            if !seen.contains(&c) {
                seen.push(c);
            }
        }
    }
    wait_users_equal(&source, &mdb, &pg, WAIT).await;
    replicator.shutdown().await;
    source.stop().await;
    drop(db);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, failure_persistence: None, .. ProptestConfig::default() })]
    #[test]
    fn random_writes_replays_and_restarts_end_with_postgres_equal_to_mongo(steps in proptest::collection::vec(step(), 4..14)) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
        rt.block_on(run_steps(steps));
    }
}
