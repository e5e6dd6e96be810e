//! Sessions, transactions and retryable writes: committed transactions publish one batch sharing a
//! cluster time with lsid/txnNumber on every event, aborts leave no trace, and a retried write with
//! the same (lsid, txnNumber) is applied once.

mod common;

use bson::{doc, Document};
use futures::StreamExt;
use mongodb::change_stream::event::OperationType as Op;
use std::time::Duration;

#[tokio::test]
async fn a_committed_transaction_publishes_events_sharing_one_cluster_time_with_lsid_and_txn_number(
) {
    let sim = common::start().await;
    let c = sim.client.database("t").collection::<Document>("acct");
    c.insert_one(doc! { "_id": "a", "bal": 10 })
        .await
        .expect("seed");
    let mut stream = c.watch().await.expect("watch");
    let mut session = sim.client.start_session().await.expect("session");
    session.start_transaction().await.expect("start");
    c.update_one(doc! { "_id": "a" }, doc! { "$inc": { "bal": -5 } })
        .session(&mut session)
        .await
        .expect("debit");
    c.insert_one(doc! { "_id": "b", "bal": 5 })
        .session(&mut session)
        .await
        .expect("credit");
    let seen = c
        .find_one(doc! { "_id": "b" })
        .session(&mut session)
        .await
        .expect("read own write");
    assert_eq!(seen, Some(doc! { "_id": "b", "bal": 5 }));
    session.commit_transaction().await.expect("commit");
    c.insert_one(doc! { "_id": "after" })
        .await
        .expect("plain insert");
    let mut events = Vec::new();
    while events.len() < 3 {
        events.push(
            tokio::time::timeout(Duration::from_secs(10), stream.next())
                .await
                .expect("in time")
                .expect("event")
                .expect("ok"),
        );
    }
    assert_eq!(
        events
            .iter()
            .map(|e| e.operation_type.clone())
            .collect::<Vec<_>>(),
        vec![Op::Update, Op::Insert, Op::Insert]
    );
    assert_eq!(events[0].cluster_time, events[1].cluster_time);
    assert_ne!(events[1].cluster_time, events[2].cluster_time);
    let lsid = events[0].lsid.clone().expect("lsid on transaction events");
    assert_eq!(Some(lsid.clone()), events[1].lsid);
    assert_eq!(lsid.get("id"), session.id().get("id"));
    assert!(events[0].txn_number.is_some() && events[0].txn_number == events[1].txn_number);
    assert_eq!((events[2].lsid.clone(), events[2].txn_number), (None, None));
    sim.handle.shutdown().await;
}

#[tokio::test]
async fn an_aborted_transaction_leaves_no_data_and_no_events() {
    let sim = common::start().await;
    let c = sim.client.database("t").collection::<Document>("abort");
    c.insert_one(doc! { "_id": 1, "v": 1 }).await.expect("seed");
    let mut stream = c.watch().await.expect("watch");
    let mut session = sim.client.start_session().await.expect("session");
    session.start_transaction().await.expect("start");
    c.insert_one(doc! { "_id": 2 })
        .session(&mut session)
        .await
        .expect("insert");
    c.update_one(doc! { "_id": 1 }, doc! { "$set": { "v": 99 } })
        .session(&mut session)
        .await
        .expect("update");
    c.delete_one(doc! { "_id": 1 })
        .session(&mut session)
        .await
        .expect("delete");
    session.abort_transaction().await.expect("abort");
    assert_eq!(
        c.find_one(doc! { "_id": 1 }).await.expect("find"),
        Some(doc! { "_id": 1, "v": 1 })
    );
    assert_eq!(c.count_documents(doc! {}).await.expect("count"), 1);
    c.insert_one(doc! { "_id": "marker" })
        .await
        .expect("marker");
    let ev = stream.next().await.expect("event").expect("ok");
    assert_eq!(
        ev.document_key,
        Some(doc! { "_id": "marker" }),
        "nothing from the aborted transaction"
    );
    let bogus = sim
        .client
        .database("admin")
        .run_command(doc! { "commitTransaction": 1, "txnNumber": 77i64, "autocommit": false })
        .session(&mut session)
        .await;
    let err = bogus.expect_err("unknown transaction");
    assert_eq!(common::code_of(&err), Some(251));
    sim.handle.shutdown().await;
}

#[tokio::test]
async fn a_retried_write_after_a_lost_acknowledgement_is_applied_once() {
    let sim = common::start().await;
    let c = sim.client.database("t").collection::<Document>("retry");
    let mut stream = c.watch().await.expect("watch");
    sim.client
        .database("admin")
        .run_command(doc! {
            "configureFailPoint": "failCommand", "mode": { "times": 1 },
            "data": { "failCommands": ["update"], "closeConnectionAfterExecute": true }
        })
        .await
        .expect("fail point");
    c.insert_one(doc! { "_id": 1, "n": 0 })
        .await
        .expect("insert");
    c.update_one(doc! { "_id": 1 }, doc! { "$inc": { "n": 1 } })
        .await
        .expect("retried update succeeds");
    assert_eq!(
        c.find_one(doc! { "_id": 1 }).await.expect("find"),
        Some(doc! { "_id": 1, "n": 1 })
    );
    sim.client
        .database("admin")
        .run_command(doc! {
            "configureFailPoint": "failCommand", "mode": { "times": 1 },
            "data": { "failCommands": ["insert"], "writeConcernError": { "code": 91, "errmsg": "shutting down" } }
        })
        .await
        .expect("fail point");
    c.insert_one(doc! { "_id": 2 })
        .await
        .expect("insert retried after writeConcernError");
    c.insert_one(doc! { "_id": "end" }).await.expect("marker");
    let mut kinds = Vec::new();
    while kinds.len() < 4 {
        let ev = stream.next().await.expect("event").expect("ok");
        kinds.push((ev.operation_type.clone(), ev.document_key.clone()));
    }
    assert_eq!(
        kinds,
        vec![
            (Op::Insert, Some(doc! { "_id": 1 })),
            (Op::Update, Some(doc! { "_id": 1 })),
            (Op::Insert, Some(doc! { "_id": 2 })),
            (Op::Insert, Some(doc! { "_id": "end" })),
        ]
    );
    sim.handle.shutdown().await;
}
