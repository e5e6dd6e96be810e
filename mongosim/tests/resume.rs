//! Resuming change streams: explicit resumeAfter / startAfter / startAtOperationTime, history lost
//! (286) after truncation or when the window has moved on, and the driver's own automatic resume
//! after dropped connections and resumable errors, which must lose and duplicate nothing.

mod common;

use bson::{doc, Bson, Document};
use futures::StreamExt;
use mongodb::change_stream::event::{ChangeStreamEvent, OperationType as Op};
use mongodb::change_stream::ChangeStream;
use std::time::Duration;

async fn take(
    stream: &mut ChangeStream<ChangeStreamEvent<Document>>,
    n: usize,
) -> Vec<ChangeStreamEvent<Document>> {
    let mut out = Vec::new();
    while out.len() < n {
        match tokio::time::timeout(Duration::from_secs(20), stream.next()).await {
            Ok(Some(Ok(ev))) => out.push(ev),
            other => panic!("expected {n} events, got {} then {other:?}", out.len()),
        }
    }
    out
}

fn key_ids(events: &[ChangeStreamEvent<Document>]) -> Vec<i32> {
    events
        .iter()
        .map(|e| {
            e.document_key
                .as_ref()
                .and_then(|k| k.get_i32("_id").ok())
                .unwrap_or(-1)
        })
        .collect()
}

async fn fail_point(sim: &common::Sim, spec: Document) {
    let mut cmd = doc! { "configureFailPoint": "failCommand" };
    cmd.extend(spec);
    sim.client
        .database("admin")
        .run_command(cmd)
        .await
        .expect("configureFailPoint");
}

#[tokio::test]
async fn explicit_resume_points_continue_exactly_after_the_given_event() {
    let sim = common::start().await;
    let c = sim.client.database("r").collection::<Document>("explicit");
    let mut stream = c.watch().await.expect("watch");
    c.insert_many((1..=4).map(|i| doc! { "_id": i }))
        .await
        .expect("insert");
    let events = take(&mut stream, 4).await;
    let mut after = c
        .watch()
        .resume_after(events[1].id.clone())
        .await
        .expect("resumeAfter");
    assert_eq!(key_ids(&take(&mut after, 2).await), vec![3, 4]);
    let mut start_after = c
        .watch()
        .start_after(events[0].id.clone())
        .await
        .expect("startAfter");
    assert_eq!(key_ids(&take(&mut start_after, 3).await), vec![2, 3, 4]);
    let at = events[2].cluster_time.expect("clusterTime");
    let mut from_time = c
        .watch()
        .start_at_operation_time(at)
        .await
        .expect("startAtOperationTime");
    assert_eq!(key_ids(&take(&mut from_time, 2).await), vec![3, 4]);
    sim.handle.shutdown().await;
}

#[tokio::test]
async fn start_after_accepts_an_invalidate_token_and_resume_after_refuses_it() {
    let sim = common::start().await;
    let c = sim.client.database("r").collection::<Document>("inval");
    c.insert_one(doc! { "_id": 0 }).await.expect("create");
    let mut stream = c.watch().await.expect("watch");
    c.drop().await.expect("drop");
    let events = take(&mut stream, 2).await;
    assert_eq!(events[1].operation_type, Op::Invalidate);
    let invalidate = events[1].id.clone();
    c.insert_one(doc! { "_id": 7 }).await.expect("recreate");
    let mut again = c
        .watch()
        .start_after(invalidate.clone())
        .await
        .expect("startAfter invalidate");
    assert_eq!(key_ids(&take(&mut again, 1).await), vec![7]);
    let refused = c
        .watch()
        .resume_after(invalidate)
        .await
        .expect_err("resumeAfter an invalidate");
    assert_eq!(common::code_of(&refused), Some(260));
    sim.handle.shutdown().await;
}

#[tokio::test]
async fn resuming_after_the_history_was_truncated_fails_with_history_lost() {
    let sim = common::start().await;
    let c = sim.client.database("r").collection::<Document>("lost");
    let mut stream = c.watch().await.expect("watch");
    c.insert_one(doc! { "_id": 1 }).await.expect("insert");
    let token = take(&mut stream, 1).await[0].id.clone();
    let time = stream
        .resume_token()
        .map(|t| common::token_seconds(&common::token_data(&t)));
    assert!(time.is_some());
    sim.handle.truncate_history();
    let err = c
        .watch()
        .resume_after(token)
        .await
        .expect_err("history lost");
    assert_eq!(common::code_of(&err), Some(286));
    assert!(err.contains_label("NonResumableChangeStreamError"));
    c.insert_one(doc! { "_id": 2 }).await.expect("insert");
    assert_eq!(
        key_ids(&take(&mut stream, 1).await),
        vec![2],
        "a live stream keeps flowing"
    );
    let fresh = c.watch().await.expect("a new stream opens");
    drop(fresh);
    sim.handle.shutdown().await;
}

#[tokio::test]
async fn resuming_from_before_the_window_fails_but_inside_it_succeeds() {
    let sim = common::start().await;
    sim.handle.set_window(3);
    let c = sim.client.database("r").collection::<Document>("window");
    let mut stream = c.watch().await.expect("watch");
    let mut events = Vec::new();
    for i in 1..=6 {
        c.insert_one(doc! { "_id": i }).await.expect("insert");
        events.extend(take(&mut stream, 1).await);
    }
    let err = c
        .watch()
        .resume_after(events[0].id.clone())
        .await
        .expect_err("outside the window");
    assert_eq!(common::code_of(&err), Some(286));
    let mut inside = c
        .watch()
        .resume_after(events[3].id.clone())
        .await
        .expect("inside the window");
    assert_eq!(key_ids(&take(&mut inside, 2).await), vec![5, 6]);
    let admin = sim.client.database("admin");
    admin
        .run_command(doc! { "mongosimSetWindow": 100 })
        .await
        .expect("resize by command");
    admin
        .run_command(doc! { "mongosimTruncateHistory": 1 })
        .await
        .expect("truncate by command");
    let err = c
        .watch()
        .resume_after(events[5].id.clone())
        .await
        .expect_err("truncated");
    assert_eq!(common::code_of(&err), Some(286));
    sim.handle.shutdown().await;
}

async fn watch_all_while_writing(
    sim: &common::Sim,
    coll: &str,
    total: i32,
    mid_write: impl Fn(i32),
) -> Vec<i32> {
    let c = sim.client.database("r").collection::<Document>(coll);
    let mut stream = c
        .watch()
        .batch_size(7)
        .max_await_time(Duration::from_millis(200))
        .await
        .expect("watch");
    let reader = tokio::spawn(async move { key_ids(&take(&mut stream, total as usize).await) });
    for chunk in 0..(total / 10) {
        let docs: Vec<Document> = (0..10).map(|i| doc! { "_id": chunk * 10 + i }).collect();
        c.insert_many(docs).await.expect("insert");
        mid_write(chunk);
    }
    reader.await.expect("reader")
}

#[tokio::test]
async fn automatic_resume_after_close_connection_on_get_more_loses_and_duplicates_nothing() {
    let sim = common::start().await;
    fail_point(&sim, doc! { "mode": { "times": 3 }, "data": { "failCommands": ["getMore"], "closeConnection": true } }).await;
    let ids = watch_all_while_writing(&sim, "auto", 200, |_| {}).await;
    assert_eq!(ids, (0..200).collect::<Vec<_>>());
    sim.handle.shutdown().await;
}

#[tokio::test]
async fn automatic_resume_after_dropped_connections_loses_and_duplicates_nothing() {
    let sim = common::start().await;
    let handle = sim.handle.clone();
    let ids = watch_all_while_writing(&sim, "dropped", 200, move |chunk| {
        if chunk % 5 == 2 {
            handle.drop_connections();
        }
    })
    .await;
    assert_eq!(ids, (0..200).collect::<Vec<_>>());
    sim.handle.shutdown().await;
}

#[tokio::test]
async fn resumable_errors_are_labelled_and_resumed_while_unlabelled_errors_surface() {
    let sim = common::start().await;
    let c = sim.client.database("r").collection::<Document>("labels");
    let mut stream = c
        .watch()
        .max_await_time(Duration::from_millis(100))
        .await
        .expect("watch");
    for code in [11602, 43, 10107] {
        fail_point(&sim, doc! { "mode": { "times": 1 }, "data": { "failCommands": ["getMore"], "errorCode": code } }).await;
        c.insert_one(doc! { "code": code }).await.expect("insert");
        let ev = take(&mut stream, 1).await;
        assert_eq!(
            ev[0].full_document.as_ref().and_then(|d| d.get("code")),
            Some(&Bson::Int32(code))
        );
    }
    fail_point(&sim, doc! { "mode": { "times": 1 }, "data": { "failCommands": ["getMore"], "errorCode": 11602, "errorLabels": [] } }).await;
    let err = loop {
        match stream.next_if_any().await {
            Ok(_) => continue,
            Err(e) => break e,
        }
    };
    assert_eq!(common::code_of(&err), Some(11602));
    sim.handle.shutdown().await;
}

#[tokio::test]
async fn a_live_stream_that_falls_behind_the_window_fails_with_history_lost() {
    let sim = common::start().await;
    sim.handle.set_window(3);
    let c = sim.client.database("r").collection::<Document>("behind");
    let mut stream = c.watch().await.expect("watch");
    c.insert_many((1..=6).map(|i| doc! { "_id": i }))
        .await
        .expect("insert");
    let err = stream
        .next()
        .await
        .expect("an outcome")
        .expect_err("fell behind");
    assert_eq!(common::code_of(&err), Some(286));
    assert!(err.contains_label("NonResumableChangeStreamError"));
    sim.handle.shutdown().await;
}
