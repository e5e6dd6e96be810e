//! The clock start option: with the simulator's clock started past 2^31 seconds (2100-01-01),
//! cluster times in events and replies, wallTime and hello's localTime are there too, stay
//! strictly increasing, and resume tokens still sort in stream order.

mod common;

use bson::{doc, Bson, Document};
use futures::StreamExt;
use std::time::Duration;

const YEAR_2100: u64 = 4_102_444_800;

#[tokio::test]
async fn a_start_time_past_2038_drives_cluster_time_wall_time_and_tokens() {
    let sim = common::start_with(mongosim::SimConfig {
        start_time: Some(YEAR_2100),
        ..mongosim::SimConfig::default()
    })
    .await;
    let c = sim.client.database("clock").collection::<Document>("t");
    let mut stream = c.watch().await.expect("watch");
    for i in 0..5 {
        c.insert_one(doc! { "_id": i }).await.expect("insert");
    }
    let mut events = Vec::new();
    while events.len() < 5 {
        let e = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("event in time")
            .expect("open")
            .expect("event");
        events.push(e);
    }
    let mut last_time = (0u32, 0u32);
    let mut last_token = String::new();
    for e in &events {
        let t = e.cluster_time.expect("clusterTime");
        assert!(u64::from(t.time) >= YEAR_2100, "cluster time {t:?}");
        assert!((t.time, t.increment) > last_time, "strictly increasing");
        last_time = (t.time, t.increment);
        let wall = e.wall_time.expect("wallTime").timestamp_millis();
        assert!(wall >= (YEAR_2100 as i64) * 1000, "wallTime {wall}");
        let token = common::token_data(&e.id);
        assert!(token > last_token, "tokens sort in stream order");
        assert!(u64::from(common::token_seconds(&token)) >= YEAR_2100);
        last_token = token;
    }
    let reply = sim
        .client
        .database("admin")
        .run_command(doc! { "hello": 1 })
        .await
        .expect("hello");
    let local = reply.get_datetime("localTime").expect("localTime");
    assert!(local.timestamp_millis() >= (YEAR_2100 as i64) * 1000);
    match reply.get("operationTime") {
        Some(Bson::Timestamp(t)) => assert!(u64::from(t.time) >= YEAR_2100, "{t:?}"),
        other => panic!("operationTime missing: {other:?}"),
    }
    sim.handle.shutdown().await;
}
