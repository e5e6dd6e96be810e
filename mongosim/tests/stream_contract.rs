//! What the replicator relies on, end to end through the driver: a database-level stream filtered
//! with `$match` on `ns.coll` delivers several collections in commit order; a 5,000-document
//! transaction across collections arrives contiguously with one cluster time, lsid and
//! txnNumber and distinct, ordered resume tokens, even while other writers run; a batch that ends
//! inside a transaction reports the last returned event's token as postBatchResumeToken;
//! resuming from a token inside a transaction continues with its next event; every event carries
//! wallTime.

mod common;

use bson::{doc, Bson, Document};
use futures::StreamExt;
use mongodb::change_stream::event::ChangeStreamEvent;
use mongodb::change_stream::ChangeStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn group_filter() -> Vec<Document> {
    vec![doc! { "$match": { "ns.coll": { "$in": ["pay", "ledger", "users"] } } }]
}

async fn next_n(
    stream: &mut ChangeStream<ChangeStreamEvent<Document>>,
    n: usize,
) -> Vec<ChangeStreamEvent<Document>> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let e = tokio::time::timeout(Duration::from_secs(30), stream.next())
            .await
            .expect("event in time")
            .expect("stream open")
            .expect("event");
        out.push(e);
    }
    out
}

#[tokio::test]
async fn a_database_stream_matching_ns_coll_delivers_several_collections_in_commit_order() {
    let sim = common::start().await;
    let db = sim.client.database("contract");
    let mut stream = db
        .watch()
        .pipeline(group_filter())
        .await
        .expect("database watch");
    let write = |coll: &'static str, id: i32| {
        let c = db.collection::<Document>(coll);
        async move { c.insert_one(doc! { "_id": id }).await.expect("insert") }
    };
    write("users", 1).await;
    write("other", 2).await;
    write("pay", 3).await;
    write("ledger", 4).await;
    write("other", 5).await;
    write("users", 6).await;
    let events = next_n(&mut stream, 4).await;
    let seen: Vec<(String, Bson)> = events
        .iter()
        .map(|e| {
            (
                e.ns.as_ref()
                    .and_then(|n| n.coll.clone())
                    .unwrap_or_default(),
                e.document_key
                    .as_ref()
                    .and_then(|k| k.get("_id").cloned())
                    .unwrap_or(Bson::Null),
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            ("users".to_owned(), Bson::Int32(1)),
            ("pay".to_owned(), Bson::Int32(3)),
            ("ledger".to_owned(), Bson::Int32(4)),
            ("users".to_owned(), Bson::Int32(6)),
        ]
    );
    assert!(events.iter().all(|e| e.wall_time.is_some()), "wallTime");
    sim.handle.shutdown().await;
}

/// Commits one transaction writing `per` documents into each of pay, ledger and users while
/// another task keeps inserting into `pay` outside it.
async fn big_transaction(sim: &common::Sim, per: i32) {
    let db = sim.client.database("contract");
    let stop = Arc::new(AtomicBool::new(false));
    let noise = {
        let pay = db.collection::<Document>("pay");
        let stop = Arc::clone(&stop);
        tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                pay.insert_one(doc! { "_id": format!("noise-{i}") })
                    .await
                    .expect("noise insert");
                i += 1;
            }
            i
        })
    };
    let mut session = sim.client.start_session().await.expect("session");
    session.start_transaction().await.expect("start");
    for coll in ["pay", "ledger", "users"] {
        let docs: Vec<Document> = (0..per)
            .map(|i| doc! { "_id": format!("{coll}-{i}"), "amount": i })
            .collect();
        db.collection::<Document>(coll)
            .insert_many(docs)
            .session(&mut session)
            .await
            .expect("insert in transaction");
    }
    session.commit_transaction().await.expect("commit");
    stop.store(true, Ordering::Relaxed);
    let written = noise.await.expect("noise task");
    assert!(written > 0, "the other writer ran during the transaction");
}

#[tokio::test]
async fn a_five_thousand_document_transaction_arrives_contiguously_and_resumes_inside() {
    let sim = common::start().await;
    let db = sim.client.database("contract");
    let mut stream = db
        .watch()
        .pipeline(group_filter())
        .batch_size(1000)
        .await
        .expect("database watch");
    let per = 1667;
    let total = (per * 3) as usize;
    big_transaction(&sim, per).await;
    let mut events = Vec::new();
    while events
        .iter()
        .filter(|e: &&ChangeStreamEvent<Document>| e.txn_number.is_some())
        .count()
        < total
    {
        events.extend(next_n(&mut stream, 1).await);
    }
    let txn: Vec<usize> = events
        .iter()
        .enumerate()
        .filter(|(_, e)| e.txn_number.is_some())
        .map(|(i, _)| i)
        .collect();
    assert_eq!(txn.len(), total);
    assert_eq!(
        txn.last().copied(),
        Some(txn[0] + total - 1),
        "no other event between a transaction's events"
    );
    let first = &events[txn[0]];
    let mut last_token = String::new();
    for i in &txn {
        let e = &events[*i];
        assert_eq!(e.cluster_time, first.cluster_time, "one cluster time");
        assert_eq!(e.lsid, first.lsid, "one lsid");
        assert!(e.lsid.is_some());
        assert_eq!(e.txn_number, first.txn_number, "one txnNumber");
        assert!(e.wall_time.is_some(), "wallTime");
        let token = common::token_data(&e.id);
        assert!(token > last_token, "distinct tokens in stream order");
        last_token = token;
    }
    assert!(events.iter().all(|e| e.wall_time.is_some()));

    let middle = txn[2500];
    let mut resumed = db
        .watch()
        .pipeline(group_filter())
        .resume_after(events[middle].id.clone())
        .await
        .expect("resume inside the transaction");
    let next = next_n(&mut resumed, 1).await;
    assert_eq!(next[0].document_key, events[middle + 1].document_key);
    assert_eq!(next[0].txn_number, first.txn_number);
    sim.handle.shutdown().await;
}

#[tokio::test]
async fn a_batch_ending_inside_a_transaction_reports_the_last_returned_token() {
    let sim = common::start().await;
    let db = sim.client.database("contract");
    let opened = db
        .run_command(doc! {
            "aggregate": 1,
            "pipeline": [ { "$changeStream": {} }, { "$match": { "ns.coll": { "$in": ["pay", "ledger", "users"] } } } ],
            "cursor": { "batchSize": 0 },
        })
        .await
        .expect("aggregate");
    let cursor = opened.get_document("cursor").expect("cursor");
    let id = cursor.get_i64("id").expect("cursor id");
    big_transaction(&sim, 400).await;
    let mut delivered = 0usize;
    let mut full_batches = 0;
    while delivered < 1200 {
        let reply = db
            .run_command(doc! { "getMore": id, "collection": "$cmd.aggregate", "batchSize": 250, "maxTimeMS": 500 })
            .await
            .expect("getMore");
        let cursor = reply.get_document("cursor").expect("cursor");
        let batch = cursor.get_array("nextBatch").expect("nextBatch");
        let pbrt = cursor
            .get_document("postBatchResumeToken")
            .expect("postBatchResumeToken");
        let txn_events = batch
            .iter()
            .filter_map(Bson::as_document)
            .filter(|e| e.contains_key("txnNumber"))
            .count();
        delivered += txn_events;
        if batch.len() == 250 {
            full_batches += 1;
            let last = batch
                .last()
                .and_then(Bson::as_document)
                .and_then(|e| e.get_document("_id").ok())
                .expect("last event token");
            assert_eq!(
                pbrt, last,
                "a full batch's postBatchResumeToken is its last event's token"
            );
        }
    }
    assert!(
        full_batches >= 4,
        "the transaction spanned several full batches"
    );
    sim.handle.shutdown().await;
}
