//! The gaps lifecycle against mongosim and a real Postgres: an `fk_missing` gap resolves itself
//! once its parent arrives, a gap whose document a newer event rewrote is superseded, and
//! operators list (with filters), resolve and ignore gaps.

use crate::support::shop::{oid, order_doc, user_doc, Env};
use bson::doc;
use mongo2pg::ops::gaps::{self, GapListArgs, GapStatus, GapsError};
use mongo2pg::snapshot::SnapshotOptions;

fn options() -> SnapshotOptions {
    SnapshotOptions {
        page_size: 5,
        ..SnapshotOptions::default()
    }
}

fn filter(kind: Option<&str>, status: Option<&str>) -> gaps::GapFilter {
    GapListArgs {
        kind: kind.map(Into::into),
        status: status.map(Into::into),
        ..Default::default()
    }
    .into_filter()
    .expect("filter")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fk_missing_gap_resolves_itself_after_its_parent_arrives() {
    let env = Env::start("gaps_fk").await;
    env.coll("users")
        .insert_one(user_doc(1))
        .await
        .expect("user");
    env.coll("orders")
        .insert_one(order_doc(1, 1, "10.00", "USDT", "paid"))
        .await
        .expect("order");
    // The orders are copied before their user reached Postgres.
    let report = env.snapshot("orders", &options()).await;
    assert_eq!(report.failed, 1);
    let open = gaps::list(
        &env.pg,
        &env.names.gaps,
        &filter(Some("fk_missing"), Some("open")),
    )
    .await
    .expect("list");
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].collection, "orders");
    let key = open[0].document_key.clone().expect("document key");
    assert!(key.contains(&oid(1_000_001).to_hex()), "{key}");

    // Still no parent: the retry counts an attempt on the same gap.
    let round = env.retry_gaps().await;
    assert_eq!(
        (round.attempted, round.still_open, round.resolved),
        (1, 1, 0)
    );
    let again = gaps::show(&env.pg, &env.names.gaps, open[0].id)
        .await
        .expect("show")
        .expect("gap");
    assert_eq!((again.status.as_str(), again.attempts), ("open", 2));
    assert_eq!(
        env.count("select count(*) from public.pg_dualwrite_gaps")
            .await,
        1
    );

    env.snapshot("users", &options()).await;
    let round = env.retry_gaps().await;
    assert_eq!((round.attempted, round.resolved), (1, 1));
    let done = gaps::show(&env.pg, &env.names.gaps, open[0].id)
        .await
        .expect("show")
        .expect("gap");
    assert_eq!(done.status, GapStatus::Resolved.as_str());
    assert!(env.verify(&["users", "orders"], &[]).await.clean);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gap_whose_document_was_rewritten_by_a_newer_event_is_superseded() {
    let env = Env::start("gaps_super").await;
    env.coll("users")
        .insert_one(user_doc(1))
        .await
        .expect("user");
    env.snapshot("users", &options()).await;
    let mut bad = order_doc(2, 1, "1", "USDT", "paid");
    bad.insert("amount", "NaN".parse::<bson::Decimal128>().expect("NaN"));
    env.coll("orders").insert_one(bad).await.expect("bad order");
    env.snapshot("orders", &options()).await;
    let open = gaps::list(
        &env.pg,
        &env.names.gaps,
        &filter(Some("invalid_number"), Some("open")),
    )
    .await
    .expect("list");
    assert_eq!(open.len(), 1);

    let amount: bson::Decimal128 = "2.50".parse().expect("decimal");
    env.coll("orders")
        .update_one(
            doc! {"_id": oid(1_000_002)},
            doc! {"$set": {"amount": amount}},
        )
        .await
        .expect("fix the amount");
    env.catch_up("orders", env.mongo_now().await).await;
    env.retry_gaps().await;
    let gap = gaps::show(&env.pg, &env.names.gaps, open[0].id)
        .await
        .expect("show")
        .expect("gap");
    assert_eq!(gap.status, GapStatus::Superseded.as_str());
    assert!(env.verify(&["orders"], &[]).await.clean);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_filter_resolve_and_ignore_gaps_with_reasons() {
    let env = Env::start("gaps_ops").await;
    env.coll("orders")
        .insert_many((0..3).map(|n| order_doc(n, 7, "1", "USDT", "paid")))
        .await
        .expect("orders without user");
    env.snapshot("orders", &options()).await;
    let all = gaps::list(&env.pg, &env.names.gaps, &filter(None, None))
        .await
        .expect("list");
    assert_eq!(all.len(), 3);
    assert!(
        gaps::list(&env.pg, &env.names.gaps, &filter(Some("wrong_type"), None))
            .await
            .expect("list")
            .is_empty()
    );
    let by_collection = gaps::GapListArgs {
        collection: Some("users".into()),
        ..Default::default()
    }
    .into_filter()
    .expect("f");
    assert!(gaps::list(&env.pg, &env.names.gaps, &by_collection)
        .await
        .expect("list")
        .is_empty());
    let old = gaps::GapListArgs {
        older_than: Some("1h".into()),
        ..Default::default()
    }
    .into_filter()
    .expect("f");
    assert!(gaps::list(&env.pg, &env.names.gaps, &old)
        .await
        .expect("list")
        .is_empty());

    let shown = gaps::show(&env.pg, &env.names.gaps, all[0].id)
        .await
        .expect("show")
        .expect("gap");
    assert!(shown.raw.as_deref().is_some_and(|r| r.contains("USDT")));
    let json = serde_json::to_value(&all).expect("json");
    assert_eq!(json[0]["kind"], "fk_missing");

    let err = gaps::ignore(&env.pg, &env.names.gaps, all[0].id, "alice", "  ")
        .await
        .expect_err("reason required");
    assert!(matches!(err, GapsError::MissingReason));
    let ignored = gaps::ignore(&env.pg, &env.names.gaps, all[0].id, "alice", "test order")
        .await
        .expect("ignore");
    assert_eq!(ignored.status, "ignored");
    assert_eq!(
        ignored.note.as_deref(),
        Some("ignored by alice: test order")
    );
    let resolved = gaps::resolve(
        &env.pg,
        &env.names.gaps,
        all[1].id,
        "bob",
        Some("fixed by hand"),
    )
    .await
    .expect("resolve");
    assert_eq!(resolved.status, "resolved");
    let twice = gaps::resolve(&env.pg, &env.names.gaps, all[1].id, "bob", None)
        .await
        .expect_err("already closed");
    assert!(matches!(twice, GapsError::NotOpen { .. }));
    let open = gaps::list(&env.pg, &env.names.gaps, &filter(None, Some("open")))
        .await
        .expect("list");
    assert_eq!(
        open.iter().map(|g| g.id).collect::<Vec<_>>(),
        vec![all[2].id]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_refused_while_children_existed_applies_on_retry_once_they_are_gone() {
    let env = Env::start("gaps_delete").await;
    env.coll("users")
        .insert_many((0..2).map(user_doc))
        .await
        .expect("users");
    env.coll("orders")
        .insert_many((0..2).map(|n| order_doc(n, 1, "3", "USDT", "paid")))
        .await
        .expect("orders of user 1");
    env.snapshot("users", &options()).await;
    env.snapshot("orders", &options()).await;

    // The user goes first: its orders still reference it, so Postgres refuses the delete.
    env.coll("users")
        .delete_one(doc! {"_id": oid(1)})
        .await
        .expect("delete user");
    env.catch_up("users", env.mongo_now().await).await;
    let open = gaps::list(&env.pg, &env.names.gaps, &filter(None, Some("open")))
        .await
        .expect("list");
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].operation.as_deref(), Some("delete"));

    env.coll("orders")
        .delete_many(doc! {"userId": oid(1)})
        .await
        .expect("delete orders");
    env.catch_up("orders", env.mongo_now().await).await;
    let round = env.retry_gaps().await;
    assert_eq!((round.attempted, round.resolved), (1, 1));
    assert_eq!(
        env.count("select count(*) from users where legacy_object_id = '650000000000000000000001'")
            .await,
        0
    );
    assert!(env.verify(&["users", "orders"], &[]).await.clean);
}
