//! Two writers of one stream are serialised by the checkpoint row lock: a batch waits while an
//! operator holds the row, and when the operator's reset commits the waiting batch aborts with
//! `CheckpointMoved` instead of overwriting the reset.

use std::time::{Duration, Instant};

use crate::support::sink_fixtures::*;
use mongo2pg::event::Operation;
use mongo2pg::sink::SinkError;

#[tokio::test]
async fn a_batch_waits_for_a_concurrent_reset_and_then_refuses_to_overwrite_it() {
    let mut env = env("serialise").await;
    env.sink
        .apply_batch(&mut env.client, "users", 0, vec![], Some(position(10)))
        .await
        .unwrap();
    let mut operator = env.db.client().await;
    let observer = env.db.client().await;
    let sink_pid: i32 = env
        .client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);

    let reset = operator.transaction().await.unwrap();
    reset
        .execute(
            "SELECT 1 FROM mongo2pg.checkpoints WHERE stream = 'users' FOR UPDATE",
            &[],
        )
        .await
        .unwrap();

    let Env {
        db: _db,
        mut client,
        mut sink,
    } = env;
    let batch = tokio::spawn(async move {
        let items = vec![ops_item(
            "users",
            Operation::Insert,
            1,
            20,
            vec![user(1, "a@x", "1", 20, &[])],
        )];
        let result = sink
            .apply_batch(&mut client, "users", 0, items, Some(position(20)))
            .await;
        (result, client)
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let waiting: bool = observer
            .query_one(
                "SELECT wait_event_type IS NOT DISTINCT FROM 'Lock' FROM pg_stat_activity WHERE pid = $1",
                &[&sink_pid],
            )
            .await
            .unwrap()
            .get(0);
        if waiting {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the batch never waited for the checkpoint lock"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    reset
        .execute(
            "UPDATE mongo2pg.checkpoints SET epoch = epoch + 1, cluster_time = 5 WHERE stream = 'users'",
            &[],
        )
        .await
        .unwrap();
    reset.commit().await.unwrap();

    let (result, client) = batch.await.unwrap();
    assert!(
        matches!(
            result,
            Err(SinkError::CheckpointMoved {
                expected: 0,
                found: 1,
                ..
            })
        ),
        "{result:?}"
    );
    assert_eq!(rows(&client, "SELECT count(*) FROM users").await, vec!["0"]);
    assert_eq!(
        rows(
            &observer,
            "SELECT epoch, cluster_time FROM mongo2pg.checkpoints"
        )
        .await,
        vec!["1|5"]
    );
}
