//! Nothing lost, nothing applied twice: the replicator is stopped gracefully, aborted mid-batch,
//! and (as a child process) killed with SIGKILL while writes keep coming; at the end Postgres
//! equals MongoDB row by row and the append-only ledger holds each entry exactly once.

use std::str::FromStr;
use std::time::Duration;

use crate::support::*;
use bson::{doc, oid::ObjectId, Decimal128};

const WAIT: Duration = Duration::from_secs(60);

/// Writes `rounds` rounds of inserts, updates, deletes and ledger entries.
async fn workload(source: &Source, mdb: &str, round: usize) {
    let users = source.coll(mdb, "users");
    let ids: Vec<ObjectId> = (0..20).map(|_| ObjectId::new()).collect();
    let docs: Vec<bson::Document> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| doc! {"_id": *id, "email": format!("u{round}-{i}@example.com"), "points": i as i32})
        .collect();
    users.insert_many(docs).await.expect("insert users");
    for (i, id) in ids.iter().enumerate().take(10) {
        users
            .update_one(doc! {"_id": *id}, doc! {"$inc": {"points": 100}})
            .await
            .expect("update user");
        if i % 3 == 0 {
            users
                .delete_one(doc! {"_id": *id})
                .await
                .expect("delete user");
        }
    }
    let ledger = source.coll(mdb, "fundsledgerentries");
    for (i, id) in ids.iter().enumerate().skip(10).take(5) {
        ledger
            .insert_one(
                doc! {"_id": ObjectId::new(), "userId": *id, "type": "credit",
                "amount": Decimal128::from_str(&format!("{round}.{i:02}")).expect("decimal"),
                "idempotencyKey": format!("k-{round}-{i}")},
            )
            .await
            .expect("insert ledger entry");
    }
}

async fn ledger_matches(source: &Source, mdb: &str, pg: &tokio_postgres::Client) -> bool {
    let mongo = source
        .coll(mdb, "fundsledgerentries")
        .count_documents(doc! {})
        .await
        .expect("count ledger") as i64;
    count(pg, "SELECT count(*) FROM funds_ledger_entries").await == mongo
        && count(
            pg,
            "SELECT count(DISTINCT idempotency_key) FROM funds_ledger_entries",
        )
        .await
            == mongo
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_restarts_and_aborted_tasks_lose_nothing_and_apply_nothing_twice() {
    let source = Source::start().await;
    let db = TestDb::create("restart").await;
    db.apply_reference_schema().await;
    let mdb = unique_name("mdb");
    let mut config = reference_config(&mdb);
    config.stream.batch_max_events = 7; // many batch boundaries
    migrate(&db, &config).await;
    let pg = db.client().await;

    let mut replicator = start_replicator(&source, &db, &config).await;
    for round in 0..6 {
        workload(&source, &mdb, round).await;
        // Wait for some progress, then stop in a different way each round.
        wait_until("some progress", WAIT, || async {
            count(&pg, "SELECT count(*) FROM users").await > 0
        })
        .await;
        if round % 2 == 0 {
            replicator.abort().await;
        } else {
            replicator.shutdown().await;
        }
        replicator = start_replicator(&source, &db, &config).await;
    }
    wait_users_equal(&source, &mdb, &pg, WAIT).await;
    wait_until("ledger equal, each entry once", WAIT, || {
        ledger_matches(&source, &mdb, &pg)
    })
    .await;
    assert_eq!(
        count(
            &pg,
            "SELECT count(*) FROM public.pg_dualwrite_gaps WHERE status = 'open'"
        )
        .await,
        0,
        "no gap left open on clean data"
    );
    assert_eq!(
        count(
            &pg,
            "SELECT count(*) FROM public.id_map WHERE collection = 'users'"
        )
        .await,
        6 * 20,
        "one uuid per user ever written, deleted ones included"
    );
    replicator.shutdown().await;
    source.stop().await;
    drop(db);
}

/// Kills the child replicator when the test ends, whatever the outcome.
struct ChildGuard(std::process::Child);
impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_process_killed_with_sigkill_resumes_without_loss_or_duplicates() {
    let source = Source::start().await;
    let db = TestDb::create("sigkill").await;
    db.apply_reference_schema().await;
    let mdb = unique_name("mdb");
    let mapping = reference_mapping_file(&mdb);
    let config = reference_config(&mdb);
    migrate(&db, &config).await;
    let pg = db.client().await;

    let spawn = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_mongo2pg"))
            .args(["run", "--metrics-addr", "127.0.0.1:0", "--mapping"])
            .arg(mapping.path())
            .env("MONGO_URL", &source.uri)
            .env("PG_URL", db.url())
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn mongo2pg")
    };
    let mut child = ChildGuard(spawn());
    // Without a snapshot a fresh replicator starts at its own start time: wait until it pinned
    // that position before writing.
    wait_until("the child pinned its start positions", WAIT, || async {
        count(
            &pg,
            "SELECT count(*) FROM mongo2pg.checkpoints WHERE cluster_time IS NOT NULL",
        )
        .await
            == 8
    })
    .await;
    for round in 0..4 {
        workload(&source, &mdb, round).await;
        let before = count(&pg, "SELECT count(*) FROM users").await;
        wait_until("the child applies something", WAIT, || async {
            count(&pg, "SELECT count(*) FROM users").await > before
        })
        .await;
        child.0.kill().expect("SIGKILL the child");
        let _ = child.0.wait();
        child = ChildGuard(spawn());
    }
    wait_users_equal(&source, &mdb, &pg, WAIT).await;
    wait_until("ledger equal, each entry once", WAIT, || {
        ledger_matches(&source, &mdb, &pg)
    })
    .await;
    drop(child);
    source.stop().await;
    drop(db);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_replica_stands_by_and_takes_over_when_the_holder_dies() {
    let source = Source::start().await;
    let db = TestDb::create("lease").await;
    db.apply_reference_schema().await;
    let mdb = unique_name("mdb");
    let config = reference_config(&mdb);
    migrate(&db, &config).await;
    let pg = db.client().await;
    let first = start_replicator(&source, &db, &config).await;
    wait_until("the first replica holds every stream", WAIT, || async {
        count(&pg, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())").await == 8
    })
    .await;
    let second = start_replicator(&source, &db, &config).await;
    workload(&source, &mdb, 0).await;
    wait_users_equal(&source, &mdb, &pg, WAIT).await;
    // Exactly one holder per stream: the second replica is on standby.
    assert_eq!(
        count(&pg, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())").await,
        8
    );
    first.abort().await;
    workload(&source, &mdb, 1).await;
    wait_users_equal(&source, &mdb, &pg, WAIT).await;
    wait_until("ledger equal after the takeover", WAIT, || {
        ledger_matches(&source, &mdb, &pg)
    })
    .await;
    second.shutdown().await;
    source.stop().await;
    drop(db);
}

/// A copy that retrying cannot fix (here the checkpoints table lacks a column the copy reads)
/// stops its stream, naming the cause and the operator's next step, instead of retrying forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_failing_on_a_schema_mismatch_stops_its_stream_instead_of_retrying() {
    let source = Source::start().await;
    let db = TestDb::create("snapfatal").await;
    db.apply_reference_schema().await;
    let mdb = unique_name("mdb");
    let mut config = reference_config(&mdb);
    config.snapshot.mode = mongo2pg::config::SnapshotMode::Initial;
    migrate(&db, &config).await;
    source
        .coll(&mdb, "users")
        .insert_one(doc! {"_id": ObjectId::new(), "email": "a@example.com"})
        .await
        .expect("seed a user");
    let pg = db.client().await;
    pg.batch_execute("ALTER TABLE mongo2pg.checkpoints DROP COLUMN snapshot_last_id")
        .await
        .expect("break the checkpoints table");
    let replicator = start_replicator(&source, &db, &config).await;
    let failed = || {
        replicator
            .context
            .health
            .readiness()
            .streams
            .into_iter()
            .find(|(_, s)| s.state == "failed")
    };
    wait_until("a stream stopped by its failed snapshot", WAIT, || async {
        failed().is_some()
    })
    .await;
    let (stream, status) = failed().expect("a failed stream");
    let reason = status.reason.unwrap_or_default();
    assert!(
        reason.contains("snapshot_last_id") && reason.contains("--resnapshot"),
        "{stream}: {reason}"
    );
    replicator.shutdown().await;
    drop(db);
    source.stop().await;
}

/// Existing data with mixed `_id` types and the request/offer cycle, copied by a child process
/// that is SIGKILLed several times in the middle of its initial snapshot while the application
/// keeps writing: at the end every row, junction row and reference is there once, no gap is open
/// and verify is clean.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_killed_during_the_initial_snapshot_of_mixed_ids_and_a_cycle_loses_nothing() {
    let source = Source::start().await;
    let db = TestDb::create("sigkill_snap").await;
    db.apply_reference_schema().await;
    let mdb = unique_name("mdb");
    let mapping = mapping_file_with(&mdb, &[("page_size = 1000", "page_size = 7")]);
    let mut config = reference_config(&mdb);
    config.snapshot.mode = mongo2pg::config::SnapshotMode::Initial;
    migrate(&db, &config).await;
    let pg = db.client().await;

    let users: Vec<ObjectId> = (0..30).map(|_| ObjectId::new()).collect();
    source
        .coll(&mdb, "users")
        .insert_many(
            users
                .iter()
                .enumerate()
                .map(|(i, u)| doc! {"_id": *u, "email": format!("s{i}@x")}),
        )
        .await
        .expect("users");
    source
        .coll(&mdb, "addresses")
        .insert_many((0..120).map(|i| {
            let id = if i % 2 == 0 {
                bson::Bson::String(format!("addr-{i:03}"))
            } else {
                bson::Bson::ObjectId(ObjectId::new())
            };
            doc! {"_id": id, "userId": users[i % users.len()], "city": format!("c{i}")}
        }))
        .await
        .expect("addresses");
    let requests: Vec<ObjectId> = (0..40).map(|_| ObjectId::new()).collect();
    let offers: Vec<ObjectId> = (0..80).map(|_| ObjectId::new()).collect();
    source
        .coll(&mdb, "purchaserequests")
        .insert_many(requests.iter().enumerate().map(|(i, r)| {
            doc! {"_id": *r, "title": format!("r{i}"), "buyerId": users[i % users.len()],
            "offers": [offers[2 * i], offers[2 * i + 1]], "selectedOfferId": offers[2 * i + 1]}
        }))
        .await
        .expect("requests");
    source
        .coll(&mdb, "selleroffers")
        .insert_many(offers.iter().enumerate().map(|(i, o)| {
            doc! {"_id": *o, "purchaseRequestId": requests[i / 2], "sellerId": users[(i + 1) % users.len()],
                  "price": Decimal128::from_str("5.5").expect("decimal")}
        }))
        .await
        .expect("offers");
    source
        .coll(&mdb, "fundsledgerentries")
        .insert_many((0..60).map(|i| {
            let id = if i % 3 == 0 {
                bson::Bson::String(format!("fee-{i:03}"))
            } else {
                bson::Bson::ObjectId(ObjectId::new())
            };
            doc! {"_id": id, "userId": users[i % users.len()], "type": "fee",
            "amount": Decimal128::from_str(&format!("0.{:02}", i + 1)).expect("decimal"),
            "idempotencyKey": format!("snap-{i}")}
        }))
        .await
        .expect("ledger");

    let spawn = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_mongo2pg"))
            .args(["run", "--metrics-addr", "127.0.0.1:0", "--mapping"])
            .arg(mapping.path())
            .env("MONGO_URL", &source.uri)
            .env("PG_URL", db.url())
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn mongo2pg")
    };
    let copied = "SELECT (SELECT count(*) FROM users) + (SELECT count(*) FROM addresses)
                  + (SELECT count(*) FROM purchase_requests) + (SELECT count(*) FROM seller_offers)
                  + (SELECT count(*) FROM funds_ledger_entries)";
    let mut child = ChildGuard(spawn());
    for (round, threshold) in [20i64, 90, 170, 250].into_iter().enumerate() {
        wait_until("the copy went on", WAIT, || async {
            count(&pg, copied).await >= threshold
        })
        .await;
        child.0.kill().expect("SIGKILL the child");
        let _ = child.0.wait();
        // The application keeps writing while the replicator is down.
        source
            .coll(&mdb, "addresses")
            .insert_one(
                doc! {"_id": format!("late-{round}"), "userId": users[round], "city": "late"},
            )
            .await
            .expect("late address");
        source
            .coll(&mdb, "purchaserequests")
            .update_one(
                doc! {"_id": requests[round]},
                doc! {"$set": {"title": format!("r{round} updated")}},
            )
            .await
            .expect("update request");
        child = ChildGuard(spawn());
    }
    wait_until(
        "everything copied and streamed, no gap open",
        WAIT,
        || async {
            count(&pg, "SELECT count(*) FROM purchase_request_offers").await == 80
                && count(
                    &pg,
                    "SELECT count(*) FROM purchase_requests WHERE selected_offer_id IS NOT NULL",
                )
                .await
                    == 40
                && count(&pg, "SELECT count(*) FROM addresses").await == 124
                && count(
                    &pg,
                    "SELECT count(*) FROM purchase_requests WHERE title LIKE '% updated'",
                )
                .await
                    == 4
                && open_gaps(&pg).await.is_empty()
        },
    )
    .await;
    wait_until("ledger equal, each entry once", WAIT, || {
        ledger_matches(&source, &mdb, &pg)
    })
    .await;
    let report = verify_reference(&source, &mdb, &db, &config).await;
    assert!(report.clean, "{report:#?}");
    drop(child);
    source.stop().await;
    drop(db);
}

/// Only the holder of a stream's lease copies it. Here another session (standing in for a second
/// replica) holds the `addresses` stream's lease when the replicator starts: its bootstrap copies
/// `users`, then waits at `addresses` instead of copying beside the holder, and copies it once the
/// lease is free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_initial_copy_of_a_stream_waits_for_its_lease() {
    let source = Source::start().await;
    let db = TestDb::create("copy_lease").await;
    db.apply_reference_schema().await;
    let mdb = unique_name("mdb");
    let mut config = reference_config(&mdb);
    config.snapshot.mode = mongo2pg::config::SnapshotMode::Initial;
    config.snapshot.order = Some(vec!["users".into(), "addresses".into()]);
    migrate(&db, &config).await;
    let pg = db.client().await;
    let users: Vec<ObjectId> = (0..10).map(|_| ObjectId::new()).collect();
    source
        .coll(&mdb, "users")
        .insert_many(
            users
                .iter()
                .enumerate()
                .map(|(i, u)| doc! {"_id": *u, "email": format!("l{i}@x")}),
        )
        .await
        .expect("users");
    source
        .coll(&mdb, "addresses")
        .insert_many(
            (0..20).map(|i| doc! {"_id": ObjectId::new(), "userId": users[i % 10], "city": "c"}),
        )
        .await
        .expect("addresses");
    let other_replica = db.client().await;
    let checkpoints = mongo2pg::replicator::control_names(&config).checkpoints;
    assert!(
        other_replica
            .query_one(
                "SELECT pg_try_advisory_lock(hashtext($1), hashtext($2))",
                &[&checkpoints, &"addresses"],
            )
            .await
            .expect("take the addresses lease")
            .get::<_, bool>(0),
        "the test session takes the lease first"
    );
    let replicator = start_replicator(&source, &db, &config).await;
    // Users copied, then the bootstrap asks for the addresses lease again and again while the
    // other session holds it.
    wait_until("the bootstrap waits for the addresses lease", WAIT, || async {
        count(&pg, "SELECT count(*) FROM users").await == 10
            && count(&pg, "SELECT count(*) FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND datname = current_database() AND query LIKE '%pg_try_advisory_lock%'").await > 0
    })
    .await;
    assert_eq!(
        count(&pg, "SELECT count(*) FROM addresses").await,
        0,
        "a stream whose lease another replica holds is not copied"
    );
    drop(other_replica);
    wait_until("addresses copied once the lease is free", WAIT, || async {
        count(&pg, "SELECT count(*) FROM addresses").await == 20
    })
    .await;
    assert_eq!(open_gaps(&pg).await, vec![]);
    replicator.shutdown().await;
    drop(db);
    source.stop().await;
}
