//! History lost: the stored resume token falls out of mongosim's history. The stream's failure
//! is recognised, a `window_lost` gap records the window from the last checkpoint to the new
//! start, and then either the collection is re-copied (`when_needed`, ending with verify clean and
//! the gap resolved) or the stream stops with the exact operator command (`initial`).

use crate::support::shop::{oid, user_doc, Env};
use bson::doc;
use mongo2pg::config::SnapshotMode;
use mongo2pg::event::ClusterTime;
use mongo2pg::snapshot::{
    handle_history_lost, HistoryLostOutcome, SnapshotContext, SnapshotOptions,
};
use mongo2pg::source::{ChangeSource, StartAt, StreamOptions};

fn options() -> SnapshotOptions {
    SnapshotOptions {
        page_size: 4,
        ..SnapshotOptions::default()
    }
}

/// Copies users, writes while the replicator is "down", truncates history and returns the
/// checkpoint time the stream had reached.
async fn lose_history(env: &Env) -> ClusterTime {
    let users = env.coll("users");
    users
        .insert_many((0..10).map(user_doc))
        .await
        .expect("seed");
    env.snapshot("users", &options()).await;
    let reached = env
        .checkpoint("users")
        .await
        .and_then(|c| c.cluster_time)
        .expect("position");
    users
        .insert_many((10..15).map(user_doc))
        .await
        .expect("insert while down");
    users
        .delete_one(doc! {"_id": oid(3)})
        .await
        .expect("delete while down");
    users
        .update_one(doc! {"_id": oid(5)}, doc! {"$set": {"name": "renamed"}})
        .await
        .expect("update while down");
    env.sim().truncate_history();

    let stored = env
        .checkpoint("users")
        .await
        .and_then(|c| c.resume_token)
        .expect("token");
    let token = match bson::Bson::try_from(
        serde_json::from_str::<serde_json::Value>(&stored).expect("json"),
    )
    .expect("bson")
    {
        bson::Bson::Document(d) => d,
        other => panic!("token {other:?}"),
    };
    let opened = ChangeSource::open(
        &env.mongo,
        &env.database,
        "users",
        &StartAt::Token(token),
        &StreamOptions::default(),
    )
    .await;
    let err = match opened {
        Ok(mut source) => source
            .next()
            .await
            .expect_err("resuming past the history must fail"),
        Err(e) => e,
    };
    assert!(mongo2pg::error::is_history_lost(&err), "{err}");
    reached
}

async fn handle(env: &Env, mode: SnapshotMode) -> HistoryLostOutcome {
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
    handle_history_lost(
        ctx,
        mode,
        env.rules("users"),
        &options(),
        "ChangeStreamHistoryLost",
        &mut |_| {},
    )
    .await
    .expect("history lost handled")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_lost_in_when_needed_mode_records_the_window_resyncs_and_verifies_clean() {
    let env = Env::start("hist_resync").await;
    let reached = lose_history(&env).await;
    let outcome = handle(&env, SnapshotMode::WhenNeeded).await;

    assert_eq!(outcome.window_start, reached.packed());
    assert!(outcome.window_end > outcome.window_start);
    assert!(outcome.operator_command.is_none());
    let resync = outcome.resynced.expect("re-copied");
    assert_eq!(resync.copied, 14);
    assert_eq!(
        resync.swept, 1,
        "the row of the document deleted while history was lost is removed"
    );
    let gap = env
        .pg
        .query_one("select kind, status, window_start, window_end from public.pg_dualwrite_gaps where id = $1", &[&outcome.gap_id])
        .await
        .expect("gap");
    assert_eq!(
        (gap.get::<_, String>(0), gap.get::<_, String>(1)),
        ("window_lost".into(), "resolved".into())
    );
    assert_eq!(
        gap.get::<_, chrono::DateTime<chrono::Utc>>(2),
        reached.to_datetime()
    );
    assert_eq!(
        gap.get::<_, chrono::DateTime<chrono::Utc>>(3),
        ClusterTime(outcome.window_end).to_datetime()
    );

    let report = env.verify(&["users"], &[]).await;
    assert!(report.clean, "{report:#?}");
    // The stream resumes from the re-copy's start position.
    let stored = env.checkpoint("users").await.expect("checkpoint");
    assert_eq!(stored.snapshot_state.map(|s| s.as_str()), Some("done"));
    assert_eq!(
        stored.cluster_time.map(|t| t.packed()),
        resync.start_cluster_time
    );
    env.coll("users")
        .insert_one(user_doc(50))
        .await
        .expect("insert after");
    env.catch_up("users", env.mongo_now().await).await;
    assert!(env.verify(&["users"], &[]).await.clean);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_lost_in_initial_mode_stops_with_the_operator_command_and_keeps_the_gap_open() {
    let env = Env::start("hist_stop").await;
    let reached = lose_history(&env).await;
    let outcome = handle(&env, SnapshotMode::Initial).await;
    assert_eq!(
        outcome.operator_command.as_deref(),
        Some("mongo2pg tokens reset users --resnapshot --reason \"change stream history lost\"")
    );
    assert!(outcome.resynced.is_none());
    assert_eq!(outcome.window_start, reached.packed());
    let status: String = env
        .pg
        .query_one(
            "select status from public.pg_dualwrite_gaps where id = $1",
            &[&outcome.gap_id],
        )
        .await
        .expect("gap")
        .get(0);
    assert_eq!(status, "open");
    // The position was not touched: nothing was skipped silently.
    assert_eq!(
        env.checkpoint("users").await.and_then(|c| c.cluster_time),
        Some(reached)
    );
}
