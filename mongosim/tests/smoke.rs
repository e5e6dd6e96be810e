//! First contact: the official driver connects, writes, reads and watches.

mod common;

use bson::{doc, Document};
use futures::StreamExt;

#[tokio::test]
async fn driver_connects_writes_reads_and_watches() {
    let sim = common::start().await;
    let coll = sim.client.database("app").collection::<Document>("orders");
    let mut stream = coll.watch().await.expect("watch opens");
    coll.insert_one(doc! { "_id": 1, "total": 10 })
        .await
        .expect("insert");
    let found = coll.find_one(doc! { "_id": 1 }).await.expect("find");
    assert_eq!(found, Some(doc! { "_id": 1, "total": 10 }));
    let ev = stream.next().await.expect("an event").expect("event ok");
    assert_eq!(
        ev.operation_type,
        mongodb::change_stream::event::OperationType::Insert
    );
    assert_eq!(ev.full_document, Some(doc! { "_id": 1, "total": 10 }));
    sim.handle.shutdown().await;
}
