//! The initial snapshot against mongosim and a real Postgres: a copy taken while the application
//! keeps writing converges to MongoDB once the stream has caught up from the recorded start
//! position, and a copy killed in the middle resumes after its last committed `_id`.

use std::time::Duration;

use crate::support::shop::{oid, order_doc, user_doc, Env};
use crate::support::wait_until;
use bson::doc;
use mongo2pg::snapshot::{SnapshotContext, SnapshotOptions, SnapshotProgress};

fn options(page_size: u32) -> SnapshotOptions {
    SnapshotOptions {
        page_size,
        ..SnapshotOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_with_concurrent_writes_converges_after_streaming_from_the_recorded_start() {
    let env = Env::start("snap_concurrent").await;
    let users = env.coll("users");
    let orders = env.coll("orders");
    users
        .insert_many((0..30).map(user_doc))
        .await
        .expect("seed users");
    orders
        .insert_many((0..120).map(|n| {
            order_doc(
                n,
                n % 30,
                &format!("{n}.25"),
                if n % 2 == 0 { "USDT" } else { "TRY" },
                "paid",
            )
        }))
        .await
        .expect("seed orders");

    // A writer inserts, updates and deletes while the copy runs.
    let writer = {
        let users = users.clone();
        let orders = orders.clone();
        tokio::spawn(async move {
            for i in 0..60u32 {
                let n = 1000 + i;
                users.insert_one(user_doc(n)).await.expect("insert user");
                orders
                    .insert_one(order_doc(n, n, "9.99", "USDT", "pending"))
                    .await
                    .expect("insert order");
                orders
                    .update_one(
                        doc! {"_id": oid(1_000_000 + i)},
                        doc! {"$set": {"status": "refunded"}},
                    )
                    .await
                    .expect("update order");
                if i % 10 == 0 {
                    orders
                        .delete_one(doc! {"_id": oid(1_000_000 + 100 + i / 10)})
                        .await
                        .expect("delete order");
                }
                tokio::task::yield_now().await;
            }
        })
    };
    let u = env.snapshot("users", &options(7)).await;
    let o = env.snapshot("orders", &options(9)).await;
    writer.await.expect("writer");
    assert!(u.handed_over && o.handed_over);
    assert!(o.pages >= 14, "orders copied in pages of 9: {o:?}");

    let now = env.mongo_now().await;
    env.catch_up("users", now).await;
    env.catch_up("orders", now).await;
    // An order copied before its user reached Postgres is an fk_missing gap; the background
    // retry applies it now that the user is there.
    env.retry_gaps().await;
    let open = env
        .count("select count(*) from public.pg_dualwrite_gaps where status = 'open'")
        .await;
    assert_eq!(open, 0);

    let report = env
        .verify(&["users", "orders"], &[("orders", "currency")])
        .await;
    assert!(report.clean, "{report:#?}");
    let orders_report = &report.collections[1];
    assert_eq!(orders_report.mongo_documents, 120 + 60 - 6);
    assert_eq!(orders_report.postgres_rows, 174);
    assert_eq!(env.count("select count(*) from order_items").await, 2 * 174);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_killed_in_the_middle_resumes_after_its_last_id_without_starting_over() {
    let env = Env::start("snap_resume").await;
    env.coll("users")
        .insert_many((0..95).map(user_doc))
        .await
        .expect("seed users");

    // First run: abort the task once three pages are committed.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
    let task = {
        let mongo = env.mongo.clone();
        let names = env.names.clone();
        let database = env.database.clone();
        let rules = env.rules("users").clone();
        let mut pg = env.connect().await;
        let mut sink = env.sink();
        // Three pages written at once: what commits is still a prefix of whole pages.
        let url = env.pg_url();
        tokio::spawn(async move {
            let ctx = SnapshotContext {
                mongo: &mongo,
                database: &database,
                pg: &mut pg,
                sink: &mut sink,
                names: &names,
                pg_url: Some(&url),
            };
            let mut on_progress = |p: &SnapshotProgress| {
                let _ = tx.send(p.pages);
            };
            let options = SnapshotOptions {
                writers: 3,
                ..options(10)
            };
            mongo2pg::snapshot::initial_snapshot(ctx, &rules, &options, &mut on_progress).await
        })
    };
    while let Some(pages) = rx.recv().await {
        if pages >= 3 {
            task.abort();
            break;
        }
    }
    let _ = task.await;
    env.wait_for_other_sessions_to_end().await;

    let stored = env.checkpoint("users").await.expect("checkpoint row");
    assert_eq!(stored.snapshot_state.map(|s| s.as_str()), Some("running"));
    assert!(
        stored.resume_token.is_none(),
        "no stream position before the hand-over"
    );
    let copied_before = env.count("select count(*) from users").await;
    assert!((30..95).contains(&copied_before), "copied {copied_before}");
    assert_eq!(copied_before % 10, 0, "only whole pages commit");
    let last_id = stored.snapshot_last_id.expect("last id recorded");
    assert_eq!(
        last_id,
        mongo2pg::sink::extjson::bson_extjson(&bson::Bson::ObjectId(oid(
            (copied_before - 1) as u32
        )))
    );

    // Second run: continues after the stored _id.
    let report = env.snapshot("users", &options(10)).await;
    assert_eq!(report.resumed_after, Some(last_id));
    assert_eq!(report.copied, 95 - copied_before as u64);
    assert!(report.handed_over);
    let done = env.checkpoint("users").await.expect("checkpoint row");
    assert_eq!(done.snapshot_state.map(|s| s.as_str()), Some("done"));
    assert!(done.resume_token.is_some());
    wait_until("verify clean", Duration::from_secs(5), || async {
        env.verify(&["users"], &[]).await.clean
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_all_copies_referenced_collections_first_and_only_once() {
    let env = Env::start("snap_all").await;
    env.coll("users")
        .insert_many((0..12).map(user_doc))
        .await
        .expect("seed users");
    env.coll("orders")
        .insert_many((0..25).map(|n| order_doc(n, n % 12, "1.5", "USDT", "paid")))
        .await
        .expect("seed orders");
    let mut pg = env.connect().await;
    let mut sink = env.sink();
    let mut seen: Vec<(String, SnapshotProgress)> = Vec::new();
    let reports = mongo2pg::snapshot::snapshot_all(
        &env.mongo,
        &mut pg,
        &mut sink,
        &env.mapping,
        &env.names,
        Some(&env.pg_url()),
        &mut |c: &str, p: &SnapshotProgress| seen.push((c.to_string(), *p)),
    )
    .await
    .expect("snapshot all");
    let order: Vec<&str> = reports.iter().map(|r| r.collection.as_str()).collect();
    assert_eq!(order, vec!["users", "orders"]);
    assert_eq!((reports[0].copied, reports[1].copied), (12, 25));
    assert_eq!(
        reports[1].failed, 0,
        "parents were copied first: no fk_missing gaps"
    );
    let last = seen
        .iter()
        .rev()
        .find(|(c, _)| c == "orders")
        .map(|(_, p)| *p)
        .expect("orders progress");
    assert_eq!(
        (last.copied, last.remaining, last.pages, last.done),
        (25, 25, 3, true)
    );
    let pages: Vec<u64> = seen
        .iter()
        .filter(|(c, p)| c == "orders" && !p.done)
        .map(|(_, p)| p.page_documents)
        .collect();
    assert_eq!(pages, vec![10, 10, 5]);

    // Both streams now have positions: nothing is copied again.
    let again = mongo2pg::snapshot::snapshot_all(
        &env.mongo,
        &mut pg,
        &mut sink,
        &env.mapping,
        &env.names,
        Some(&env.pg_url()),
        &mut |_: &str, _: &SnapshotProgress| {},
    )
    .await
    .expect("snapshot all again");
    assert!(again.is_empty());
    assert!(env.verify(&["users", "orders"], &[]).await.clean);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resync_limited_to_a_timestamp_window_copies_only_the_documents_inside_it() {
    let env = Env::start("snap_window").await;
    env.coll("users")
        .insert_many((0..3).map(user_doc))
        .await
        .expect("seed users");
    env.coll("orders")
        .insert_many((0..10).map(|n| order_doc(n, n % 3, "2", "USDT", "paid")))
        .await
        .expect("seed orders");
    env.snapshot("users", &options(10)).await;
    env.snapshot("orders", &options(10)).await;
    let garbage: Vec<String> = (3..9).map(|n| oid(1_000_000 + n).to_hex()).collect();
    env.pg
        .execute(
            "update orders set status = 'garbage' where legacy_object_id = any($1)",
            &[&garbage],
        )
        .await
        .expect("garbage");

    // placedAt of order n is 1_700_000_000 + n seconds: the window holds orders 4, 5 and 6.
    let options = mongo2pg::ops::resync::SnapshotArgs {
        collection: "orders".into(),
        field: Some("placedAt".into()),
        since: Some("2023-11-14T22:13:24Z".into()),
        until: Some("2023-11-14T22:13:26Z".into()),
        ..Default::default()
    }
    .into_options(10, chrono::Utc::now())
    .expect("flags");
    let mut pg = env.connect().await;
    let mut sink = env.sink();
    let ctx = SnapshotContext {
        mongo: &env.mongo,
        database: &env.database,
        pg: &mut pg,
        sink: &mut sink,
        names: &env.names,
        pg_url: None,
    };
    let report = mongo2pg::snapshot::resync(ctx, env.rules("orders"), &options, &mut |_| {})
        .await
        .expect("re-sync");
    assert_eq!(report.copied, 3);
    let verify = env.verify(&["orders"], &[]).await;
    let mut still_wrong: Vec<String> = verify.collections[0]
        .differing
        .iter()
        .map(|d| d.legacy_id.clone())
        .collect();
    still_wrong.sort();
    let expected: Vec<String> = [3, 7, 8]
        .iter()
        .map(|n| oid(1_000_000 + n).to_hex())
        .collect();
    assert_eq!(still_wrong, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_resync_repairs_rows_removes_vanished_ones_and_closes_older_gaps() {
    let env = Env::start("snap_full_resync").await;
    env.coll("users")
        .insert_many((0..8).map(user_doc))
        .await
        .expect("seed users");
    env.snapshot("users", &options(3)).await;
    env.coll("users")
        .delete_one(doc! {"_id": oid(2)})
        .await
        .expect("delete unseen by the stream");
    env.pg
        .execute(
            "update users set email = 'garbage' where legacy_object_id = $1",
            &[&oid(6).to_hex()],
        )
        .await
        .expect("garbage");
    env.pg
        .execute(
            "insert into public.pg_dualwrite_gaps (collection, kind, reason, cluster_time) values ('users', 'window_lost', 'test', $1)",
            &[&mongo2pg::event::ClusterTime::new(1, 0).to_sql()],
        )
        .await
        .expect("an older gap");
    let before = env.checkpoint("users").await;

    let mut pg = env.connect().await;
    let mut sink = env.sink();
    let ctx = SnapshotContext {
        mongo: &env.mongo,
        database: &env.database,
        pg: &mut pg,
        sink: &mut sink,
        names: &env.names,
        pg_url: None,
    };
    let report = mongo2pg::snapshot::resync(ctx, env.rules("users"), &options(3), &mut |_| {})
        .await
        .expect("re-sync");
    assert_eq!(
        (report.copied, report.swept, report.gaps_resolved),
        (7, 1, 1)
    );
    assert!(env.verify(&["users"], &[]).await.clean);
    assert_eq!(env.checkpoint("users").await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_end_at_the_byte_budget_whatever_the_page_size() {
    let env = Env::start("snap_page_bytes").await;
    env.coll("users")
        .insert_many((0..10).map(user_doc))
        .await
        .expect("seed");
    let one = bson::to_vec(&user_doc(0)).expect("bson").len();
    // Three documents reach the budget: pages of 3, 3, 3 and 1 although 100 would fit.
    let mut o = options(100);
    o.page_bytes = 2 * one + 1;
    let report = env.snapshot("users", &o).await;
    assert!(report.complete && report.handed_over);
    assert_eq!((report.copied, report.pages), (10, 4));
    assert_eq!(env.count("select count(*) from users").await, 10);
}

/// A copy's page as the page writers get it: the documents read at `version`, mapped.
fn page_of(
    env: &Env,
    collection: &str,
    docs: Vec<bson::Document>,
    version: mongo2pg::event::ClusterTime,
) -> Vec<mongo2pg::sink::BatchItem> {
    let rules = env.rules(collection);
    docs.into_iter()
        .map(|d| {
            let event = mongo2pg::source::snapshot::snapshot_event(collection, d, version);
            let mapped = mongo2pg::mapping::map_event(rules, &event);
            mongo2pg::sink::BatchItem { event, mapped }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_written_at_once_commit_only_after_the_page_before_them() {
    let env = Env::start("snap_page_order").await;
    // Records the copy's start and copies nothing yet.
    let started = env
        .snapshot(
            "users",
            &SnapshotOptions {
                max_pages: Some(0),
                ..options(10)
            },
        )
        .await;
    assert!(!started.complete);
    let epoch = env.checkpoint("users").await.expect("checkpoint").epoch;
    let version = env.mongo_now().await;
    let first: Vec<_> = (0..70).map(user_doc).collect();
    let second: Vec<_> = (70..140).map(user_doc).collect();
    let first_last = bson::Bson::ObjectId(oid(69));
    let second_last = bson::Bson::ObjectId(oid(139));
    let first_stored = mongo2pg::sink::extjson::bson_extjson(&first_last);
    let mut pg = env.connect().await;
    let mut sink = env.sink();

    // The second page claims to follow the first one, which has not committed: refused, and
    // nothing of it stays.
    let refused = sink
        .apply_snapshot_page(
            &mut pg,
            "users",
            epoch,
            page_of(&env, "users", second.clone(), version),
            "users",
            Some(&first_stored),
            &second_last,
            None,
        )
        .await;
    assert!(
        matches!(
            refused,
            Err(mongo2pg::sink::SinkError::CheckpointMoved { .. })
        ),
        "{refused:?}"
    );
    assert_eq!(env.count("select count(*) from users").await, 0);

    // Waiting for its turn, and the page before it fails (its writer drops the turn): refused.
    let (turn_sender, turn) = tokio::sync::oneshot::channel();
    drop(turn_sender);
    let refused = sink
        .apply_snapshot_page(
            &mut pg,
            "users",
            epoch,
            page_of(&env, "users", second.clone(), version),
            "users",
            Some(&first_stored),
            &second_last,
            Some(turn),
        )
        .await;
    assert!(
        matches!(
            refused,
            Err(mongo2pg::sink::SinkError::PreviousPageFailed { .. })
        ),
        "{refused:?}"
    );
    assert_eq!(env.count("select count(*) from users").await, 0);

    // Both at once on two connections, the second waiting for its turn: the second one has
    // written its rows but commits only after the first one did.
    let (turn_sender, turn) = tokio::sync::oneshot::channel();
    let mut pg2 = env.connect().await;
    let mut sink2 = env.sink();
    let second_page = sink2.apply_snapshot_page(
        &mut pg2,
        "users",
        epoch,
        page_of(&env, "users", second, version),
        "users",
        Some(&first_stored),
        &second_last,
        Some(turn),
    );
    let first_page = async {
        let outcome = sink
            .apply_snapshot_page(
                &mut pg,
                "users",
                epoch,
                page_of(&env, "users", first, version),
                "users",
                None,
                &first_last,
                None,
            )
            .await;
        // Not committed before its turn: only the first page's rows are visible.
        let visible = env.count("select count(*) from users").await;
        turn_sender.send(()).expect("second page waits");
        (outcome, visible)
    };
    let ((first_outcome, visible), second_outcome) = tokio::join!(first_page, second_page);
    first_outcome.expect("first page");
    second_outcome.expect("second page");
    assert_eq!(visible, 70);
    assert_eq!(env.count("select count(*) from users").await, 140);
    let stored = env.checkpoint("users").await.expect("checkpoint");
    assert_eq!(
        stored.snapshot_last_id,
        Some(mongo2pg::sink::extjson::bson_extjson(&second_last))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_of_new_rows_lands_with_its_children_and_never_over_a_newer_row() {
    let env = Env::start("snap_direct_copy").await;
    env.coll("users")
        .insert_many((0..100).map(user_doc))
        .await
        .expect("seed users");
    env.coll("orders")
        .insert_many((0..10).map(|n| order_doc(n, n, "1.50", "USDT", "paid")))
        .await
        .expect("seed orders");
    assert_eq!(env.snapshot("users", &options(100)).await.copied, 100);
    assert_eq!(env.snapshot("orders", &options(100)).await.copied, 10);
    let stale = env.mongo_now().await;
    // Order 5 has a newer state in Postgres than the page below.
    env.pg
        .execute(
            "update orders set status = 'refunded', source_version = 9223372036854775807 \
             where legacy_object_id = $1",
            &[&oid(1_000_005).to_hex()],
        )
        .await
        .expect("newer order");

    // A page read at `stale` (over 64 rows: written with COPY when its rows are all new): the
    // newer order stays, every other row lands with its two items.
    let mut orders: Vec<_> = (100..180)
        .map(|n| order_doc(n, n % 100, "2.25", "TRY", "paid"))
        .collect();
    orders.push(order_doc(5, 5, "1.50", "USDT", "paid"));
    let mut pg = env.connect().await;
    let mut sink = env.sink();
    let outcome = sink
        .apply_batch(
            &mut pg,
            "orders",
            0,
            page_of(&env, "orders", orders, stale),
            None,
        )
        .await
        .expect("page");
    assert!(outcome.gaps.is_empty(), "{:?}", outcome.gaps);
    assert_eq!(env.count("select count(*) from orders").await, 10 + 80);
    assert_eq!(
        env.count("select count(*) from orders where status = 'refunded'")
            .await,
        1,
        "the newer order was overwritten"
    );
    assert_eq!(
        env.count("select count(*) from orders where currency = 'TRY' and amount = 2.25")
            .await,
        80
    );
    assert_eq!(env.count("select count(*) from order_items").await, 2 * 90);

    // The same 80 new orders again, all rows there now: nothing changes, nothing doubles.
    let again: Vec<_> = (100..180)
        .map(|n| order_doc(n, n % 100, "2.25", "TRY", "paid"))
        .collect();
    sink.apply_batch(
        &mut pg,
        "orders",
        0,
        page_of(&env, "orders", again, stale),
        None,
    )
    .await
    .expect("page again");
    assert_eq!(env.count("select count(*) from orders").await, 90);
    assert_eq!(env.count("select count(*) from order_items").await, 2 * 90);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_written_at_once_that_share_a_unique_value_end_as_one_page_after_the_other() {
    let env = Env::start("snap_unique_pages").await;
    env.pg
        .batch_execute("CREATE UNIQUE INDEX users_email_key ON users (email)")
        .await
        .expect("unique email");
    // Users 5 and 25, and 12 and 32, share an email: each pair is on two pages written at once.
    let docs = (0..40).map(|n| {
        let mut d = user_doc(n);
        if n == 25 || n == 32 {
            d.insert("email", format!("u{}@example.com", n - 20));
        }
        d
    });
    env.coll("users").insert_many(docs).await.expect("seed");
    let report = env
        .snapshot(
            "users",
            &SnapshotOptions {
                writers: 3,
                ..options(10)
            },
        )
        .await;
    assert!(report.complete && report.handed_over, "{report:?}");
    assert_eq!(report.copied, 40);
    assert_eq!(report.failed, 2);
    assert_eq!(env.count("select count(*) from users").await, 38);
    // Whatever the order the pages wrote in, the later document of each pair is the gap.
    let gapped: Vec<String> = env
        .pg
        .query(
            "select document_key from public.pg_dualwrite_gaps where status = 'open' order by 1",
            &[],
        )
        .await
        .expect("gaps")
        .iter()
        .map(|r| r.get(0))
        .collect();
    let key = |n: u32| mongo2pg::sink::extjson::bson_extjson(&bson::Bson::ObjectId(oid(n)));
    let mut expected = vec![key(25), key(32)];
    expected.sort();
    assert_eq!(gapped, expected);
}
