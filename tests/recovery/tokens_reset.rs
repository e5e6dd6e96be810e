//! Operator resume-token resets against mongosim and a real Postgres: `--to-now` records the
//! skipped window as a gap, `--to-time` replays and converges, `--dry-run` changes nothing, and a
//! replicator still holding the old epoch cannot overwrite the reset.

use std::time::Duration;

use crate::support::shop::{oid, user_doc, Env};
use bson::doc;
use mongo2pg::config::SnapshotMode;
use mongo2pg::event::ClusterTime;
use mongo2pg::ops::resync::SnapshotArgs;
use mongo2pg::ops::tokens::{self, ResetArgs, ResetOutcome};
use mongo2pg::sink::SinkError;
use mongo2pg::snapshot::{prepare_stream, SnapshotContext, SnapshotOptions};
use mongo2pg::source::StartAt;

async fn copied_users(test: &str, n: u32) -> Env {
    let env = Env::start(test).await;
    env.coll("users")
        .insert_many((0..n).map(user_doc))
        .await
        .expect("seed users");
    env.snapshot(
        "users",
        &SnapshotOptions {
            page_size: 4,
            ..SnapshotOptions::default()
        },
    )
    .await;
    env
}

async fn reset(env: &mut Env, args: ResetArgs) -> ResetOutcome {
    let request = args
        .into_request(Some("tester".into()))
        .expect("valid reset");
    tokens::reset(&mut env.pg, &env.mongo, &env.database, &env.names, &request)
        .await
        .expect("reset")
}

fn args(target: ResetArgs) -> ResetArgs {
    ResetArgs {
        collection: "users".into(),
        reason: Some("incident 42".into()),
        ..target
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_to_now_records_the_skipped_window_audits_notifies_and_bumps_the_epoch() {
    let mut env = copied_users("tok_now", 5).await;
    let before = env.checkpoint("users").await.expect("checkpoint");
    let from = before.cluster_time.expect("handed over position");
    env.coll("users")
        .insert_many((100..110).map(user_doc))
        .await
        .expect("writes in the skipped window");
    let url = mongo2pg::sink::connect::PgUrl::parse(&mongo2pg::config::Secret::new(env.db.url()))
        .expect("test database URL");
    let mut listener = tokens::listen_for_resets(&url).await.expect("listener");

    let outcome = reset(
        &mut env,
        args(ResetArgs {
            to_now: true,
            ..Default::default()
        }),
    )
    .await;

    let to = ClusterTime(outcome.to.cluster_time.expect("new position time"));
    assert!(to > from);
    assert_eq!(outcome.epoch_from, Some(before.epoch));
    assert_eq!(outcome.epoch_to, before.epoch + 1);
    let after = env.checkpoint("users").await.expect("checkpoint");
    assert_eq!(
        (after.epoch, after.cluster_time),
        (before.epoch + 1, Some(to))
    );
    assert!(after.resume_token.is_some());

    let gap = env
        .pg
        .query_one(
            "select id, kind, status, window_start, window_end, cluster_time from public.pg_dualwrite_gaps",
            &[],
        )
        .await
        .expect("exactly one gap");
    assert_eq!(Some(gap.get::<_, i64>(0)), outcome.gap_id);
    assert_eq!(
        (gap.get::<_, String>(1), gap.get::<_, String>(2)),
        ("window_lost".into(), "open".into())
    );
    assert_eq!(
        gap.get::<_, chrono::DateTime<chrono::Utc>>(3),
        from.to_datetime()
    );
    assert_eq!(
        gap.get::<_, chrono::DateTime<chrono::Utc>>(4),
        to.to_datetime()
    );
    assert_eq!(gap.get::<_, Option<i64>>(5), Some(to.to_sql()));

    let audit = env
        .pg
        .query_one("select actor, reason, mode, from_time, to_time, to_token is not null from mongo2pg.token_resets", &[])
        .await
        .expect("one audit row");
    assert_eq!(audit.get::<_, String>(0), "tester");
    assert_eq!(audit.get::<_, String>(1), "incident 42");
    assert_eq!(audit.get::<_, String>(2), "now");
    assert_eq!(audit.get::<_, Option<i64>>(3), Some(from.to_sql()));
    assert_eq!(audit.get::<_, Option<i64>>(4), Some(to.to_sql()));
    assert!(audit.get::<_, bool>(5));

    let payload = tokio::time::timeout(Duration::from_secs(5), listener.next_reset())
        .await
        .expect("notified in time");
    assert_eq!(payload.as_deref(), Some("users"));

    // The skipped documents are not streamed: they stay missing until a re-sync.
    env.catch_up("users", env.mongo_now().await).await;
    let report = env.verify(&["users"], &[]).await;
    assert_eq!(report.collections[0].missing_count, 10);

    let streamed = env.checkpoint("users").await.expect("checkpoint");
    // A targeted re-sync of exactly the skipped documents repairs them and closes the gap.
    let options = SnapshotArgs {
        collection: "users".into(),
        from_id: Some(oid(100).to_hex()),
        to_id: Some(oid(109).to_hex()),
        resolve_gaps: outcome.gap_id.into_iter().collect(),
        ..Default::default()
    }
    .into_options(4, chrono::Utc::now())
    .expect("re-sync flags");
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
    let resync = mongo2pg::snapshot::resync(ctx, env.rules("users"), &options, &mut |_| {})
        .await
        .expect("re-sync");
    assert_eq!(
        (resync.copied, resync.pages, resync.gaps_resolved),
        (10, 3, 1)
    );
    assert!(env.verify(&["users"], &[]).await.clean);
    let status: String = env
        .pg
        .query_one(
            "select status from public.pg_dualwrite_gaps where id = $1",
            &[&outcome.gap_id],
        )
        .await
        .expect("gap")
        .get(0);
    assert_eq!(status, "resolved");
    // The re-sync left the stream position alone.
    assert_eq!(env.checkpoint("users").await, Some(streamed));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_show_lists_each_stream_with_its_position_age_and_lag() {
    let env = copied_users("tok_show", 2).await;
    let stored = env
        .checkpoint("users")
        .await
        .expect("checkpoint")
        .cluster_time
        .expect("time");
    env.coll("users")
        .insert_one(user_doc(9))
        .await
        .expect("write");
    let mongo_now = env.mongo_now().await;
    let now = chrono::Utc::now();
    let views = tokens::show(&env.pg, &env.names, Some(mongo_now), now)
        .await
        .expect("show");
    assert_eq!(views.len(), 1);
    let v = &views[0];
    assert_eq!(v.stream, "users");
    assert_eq!(v.position.cluster_time, Some(stored.packed()));
    assert_eq!(
        v.position.cluster_time_text.as_deref(),
        Some(format!("Timestamp({}, {})", stored.seconds(), stored.increment()).as_str())
    );
    assert_eq!(
        v.age_seconds,
        Some((now - stored.to_datetime()).num_seconds())
    );
    assert_eq!(
        v.lag_seconds,
        Some(i64::from(mongo_now.seconds()) - i64::from(stored.seconds()))
    );
    assert_eq!(v.snapshot_state.as_deref(), Some("done"));
    assert!(v
        .position
        .token
        .as_ref()
        .is_some_and(|t| t.get("_data").is_some()));
    assert!(tokens::render_table(&views).contains("users"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_shows_the_reset_and_changes_nothing() {
    let mut env = copied_users("tok_dry", 3).await;
    let before = env.checkpoint("users").await.expect("checkpoint");
    let outcome = reset(
        &mut env,
        args(ResetArgs {
            to_time: Some("Timestamp(1700000000, 1)".into()),
            dry_run: true,
            ..Default::default()
        }),
    )
    .await;
    assert!(outcome.dry_run);
    assert_eq!(
        outcome.to.cluster_time,
        Some(ClusterTime::new(1_700_000_000, 1).packed())
    );
    assert_eq!(
        outcome.to.cluster_time_text.as_deref(),
        Some("Timestamp(1700000000, 1)")
    );
    assert_eq!(
        outcome.from.as_ref().and_then(|p| p.cluster_time),
        before.cluster_time.map(|t| t.packed())
    );
    assert_eq!(env.checkpoint("users").await, Some(before));
    assert_eq!(
        env.count("select count(*) from mongo2pg.token_resets")
            .await,
        0
    );
    assert_eq!(
        env.count("select count(*) from public.pg_dualwrite_gaps")
            .await,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_to_an_earlier_time_replays_and_converges() {
    let mut env = copied_users("tok_time", 6).await;
    let users = env.coll("users");
    let t1 = env.mongo_now().await;
    for round in 0..3 {
        for n in 0..6 {
            users
                .update_one(
                    doc! {"_id": oid(n)},
                    doc! {"$set": {"name": format!("round {round} user {n}")}},
                )
                .await
                .expect("update");
        }
    }
    users
        .delete_one(doc! {"_id": oid(2)})
        .await
        .expect("delete");
    let now = env.mongo_now().await;
    env.catch_up("users", now).await;
    assert!(env.verify(&["users"], &[]).await.clean);

    let text = format!("Timestamp({}, {})", t1.seconds(), t1.increment());
    let outcome = reset(
        &mut env,
        args(ResetArgs {
            to_time: Some(text),
            ..Default::default()
        }),
    )
    .await;
    let stored = env.checkpoint("users").await.expect("checkpoint");
    assert_eq!(
        (stored.resume_token.clone(), stored.cluster_time),
        (None, Some(t1))
    );
    assert_eq!(stored.epoch, outcome.epoch_to);
    // The stream reopens at the time; no copy runs for an operator-set position.
    assert_eq!(
        mongo2pg::pipeline::stream::start_position(Some(&stored)).expect("start"),
        Some(StartAt::Time(t1))
    );
    {
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
        let copy = prepare_stream(
            ctx,
            SnapshotMode::Initial,
            env.rules("users"),
            &SnapshotOptions::default(),
            &mut |_| {},
        )
        .await
        .expect("prepare");
        assert!(copy.is_none());
    }

    users
        .update_one(doc! {"_id": oid(0)}, doc! {"$set": {"name": "after reset"}})
        .await
        .expect("update");
    env.catch_up("users", env.mongo_now().await).await;
    let report = env.verify(&["users"], &[]).await;
    assert!(report.clean, "{report:#?}");
    let name: String = env
        .pg
        .query_one(
            "select name from users where legacy_object_id = $1",
            &[&oid(0).to_hex()],
        )
        .await
        .expect("row")
        .get(0);
    assert_eq!(name, "after reset");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replicator_holding_the_old_epoch_cannot_overwrite_a_reset() {
    let mut env = copied_users("tok_epoch", 3).await;
    let before = env.checkpoint("users").await.expect("checkpoint");
    let old_position = mongo2pg::event::Position {
        token: doc! {"_data": "82FFFFFFFF000000010000"},
        cluster_time: ClusterTime::new(u32::MAX, 1),
    };
    reset(
        &mut env,
        args(ResetArgs {
            to_time: Some("Timestamp(1700000000, 0)".into()),
            ..Default::default()
        }),
    )
    .await;

    let mut pg = env.connect().await;
    let mut sink = env.sink();
    let err = sink
        .apply_batch(
            &mut pg,
            "users",
            before.epoch,
            Vec::new(),
            Some(old_position),
        )
        .await
        .expect_err("the old epoch is refused");
    assert!(
        matches!(err, SinkError::CheckpointMoved { expected, found, .. } if expected == before.epoch && found == before.epoch + 1)
    );
    let stored = env.checkpoint("users").await.expect("checkpoint");
    assert_eq!(
        stored.cluster_time,
        Some(ClusterTime::new(1_700_000_000, 0))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_to_resnapshot_copies_the_collection_again_and_removes_vanished_rows() {
    let mut env = copied_users("tok_resnap", 6).await;
    // Changes the stream never saw (as after a bad deploy wrote around the replicator).
    env.coll("users")
        .delete_one(doc! {"_id": oid(1)})
        .await
        .expect("delete");
    env.coll("users")
        .update_one(
            doc! {"_id": oid(2)},
            doc! {"$set": {"email": "new@example.com"}},
        )
        .await
        .expect("update");
    env.pg
        .execute(
            "update users set name = 'garbage' where legacy_object_id = $1",
            &[&oid(4).to_hex()],
        )
        .await
        .expect("garbage");
    assert!(!env.verify(&["users"], &[]).await.clean);

    let outcome = reset(
        &mut env,
        args(ResetArgs {
            resnapshot: true,
            ..Default::default()
        }),
    )
    .await;
    assert!(outcome.resnapshot);
    let stored = env.checkpoint("users").await.expect("checkpoint");
    assert_eq!(
        (
            stored.resume_token.clone(),
            stored.cluster_time,
            stored.snapshot_state.map(|s| s.as_str())
        ),
        (None, None, Some("pending"))
    );
    assert_eq!(
        mongo2pg::pipeline::stream::start_position(Some(&stored)).expect("start"),
        None
    );

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
    let copy = prepare_stream(
        ctx,
        SnapshotMode::Initial,
        env.rules("users"),
        &SnapshotOptions::default(),
        &mut |_| {},
    )
    .await
    .expect("prepare")
    .expect("a copy ran");
    assert_eq!((copy.copied, copy.swept), (5, 1));
    assert!(env.verify(&["users"], &[]).await.clean);
    assert!(matches!(
        mongo2pg::pipeline::stream::start_position(env.checkpoint("users").await.as_ref())
            .expect("start"),
        Some(StartAt::Token(_))
    ));
}
