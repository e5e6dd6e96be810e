//! Overlapping batches (`[stream] resolve_ahead`): while a batch is written, the next one is cut
//! and its ids are resolved and committed on the stream's second connection, but its rows land
//! only after the batch before it has committed, and the checkpoint moves with each batch in
//! order. The same run without the second connection lands the same rows.

use std::time::Duration;

use crate::support::*;
use bson::{doc, oid::ObjectId};

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_batch_resolves_its_ids_while_a_batch_waits_and_lands_only_after_it() {
    held_batch_then_next("resolve_ahead_on", true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_second_connection_batches_land_one_after_the_other_all_the_same() {
    held_batch_then_next("resolve_ahead_off", false).await;
}

async fn count_of(pg: &tokio_postgres::Client, sql: &str, oid: &ObjectId) -> i64 {
    pg.query_one(sql, &[&oid.to_hex()])
        .await
        .expect("count")
        .get(0)
}

async fn users_position(pg: &tokio_postgres::Client) -> Option<i64> {
    pg.query_one(
        "SELECT cluster_time FROM mongo2pg.checkpoints WHERE stream = 'users'",
        &[],
    )
    .await
    .expect("checkpoint")
    .get(0)
}

/// A batch updating user `a` is held on `a`'s row lock (taken by the test); user `b` is inserted
/// once that batch waits. With `resolve_ahead`, `b`'s id_map entry is committed while the batch
/// before it still waits, and `b`'s row appears only after `a`'s update landed.
async fn held_batch_then_next(tag: &str, resolve_ahead: bool) {
    let RefEnv {
        source,
        db,
        mdb,
        config,
    } = RefEnv::start_with(tag, |c| c.stream.resolve_ahead = resolve_ahead).await;
    let replicator = start_replicator(&source, &db, &config).await;
    let pg = db.client().await;
    let users = source.coll(&mdb, "users");
    let (a, b) = (ObjectId::new(), ObjectId::new());
    let user_rows = "SELECT count(*) FROM users WHERE legacy_object_id = $1";

    users
        .insert_one(doc! {"_id": a, "email": "a@example.com"})
        .await
        .expect("insert a");
    wait_until("a replicated", WAIT, || async {
        count_of(&pg, user_rows, &a).await == 1
    })
    .await;

    // Hold a's row: the batch that updates it cannot finish its write.
    let mut holder = db.client().await;
    let hold = holder.transaction().await.expect("begin");
    hold.execute(
        "SELECT 1 FROM users WHERE legacy_object_id = $1 FOR UPDATE",
        &[&a.to_hex()],
    )
    .await
    .expect("lock a");
    let position_before = users_position(&pg).await;
    users
        .update_one(doc! {"_id": a}, doc! {"$set": {"email": "a2@example.com"}})
        .await
        .expect("update a");
    wait_until(
        "the batch updating a to wait for the row lock",
        WAIT,
        || async {
            count(
                &pg,
                "SELECT count(*) FROM pg_stat_activity
             WHERE datname = current_database() AND wait_event_type = 'Lock'",
            )
            .await
                == 1
        },
    )
    .await;

    users
        .insert_one(doc! {"_id": b, "email": "b@example.com"})
        .await
        .expect("insert b");
    let ids_of_b =
        "SELECT count(*) FROM id_map WHERE collection = 'users' AND legacy_object_id = $1";
    if resolve_ahead {
        // b's batch was cut and its id committed on the second connection ...
        wait_until("b's id resolved ahead", WAIT, || async {
            count_of(&pg, ids_of_b, &b).await == 1
        })
        .await;
        // ... but nothing of it is written before the batch holding a has landed.
        assert_eq!(count_of(&pg, user_rows, &b).await, 0);
    }
    assert_eq!(
        count_of(
            &pg,
            "SELECT count(*) FROM users WHERE legacy_object_id = $1 AND email = 'a2@example.com'",
            &a
        )
        .await,
        0,
        "a's update cannot have landed while its row is held"
    );
    assert_eq!(users_position(&pg).await, position_before);

    hold.rollback().await.expect("release a");
    wait_until("a's update and b landed", WAIT, || async {
        count_of(
            &pg,
            "SELECT count(*) FROM users WHERE legacy_object_id = $1 AND email = 'a2@example.com'",
            &a,
        )
        .await
            == 1
            && count_of(&pg, user_rows, &b).await == 1
    })
    .await;
    assert_eq!(count_of(&pg, ids_of_b, &b).await, 1);
    // b's row carries the id resolved for it.
    assert_eq!(
        count(
            &pg,
            "SELECT count(*) FROM users u JOIN id_map m
             ON m.collection = 'users' AND m.legacy_object_id = u.legacy_object_id AND m.new_id = u.id",
        )
        .await,
        2
    );
    replicator.shutdown().await;
    assert!(users_position(&pg).await > position_before);
}
