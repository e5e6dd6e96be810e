//! Change-stream events through the official driver: exact event sequences per scope, update
//! descriptions, invalidation, lookups, pre/post images, follow-on stages, await semantics and the
//! idle postBatchResumeToken heartbeat.

mod common;

use bson::{doc, Document};
use common::{token_data, token_seconds, unix_now};
use futures::StreamExt;
use mongodb::change_stream::event::{ChangeStreamEvent, OperationType as Op, TruncatedArray};
use mongodb::change_stream::ChangeStream;
use mongodb::options::{FullDocumentBeforeChangeType, FullDocumentType};
use std::time::{Duration, Instant};

async fn take(
    stream: &mut ChangeStream<ChangeStreamEvent<Document>>,
    n: usize,
) -> Vec<ChangeStreamEvent<Document>> {
    let mut out = Vec::new();
    while out.len() < n {
        match tokio::time::timeout(Duration::from_secs(10), stream.next()).await {
            Ok(Some(Ok(ev))) => out.push(ev),
            other => panic!("expected {n} events, got {} then {other:?}", out.len()),
        }
    }
    out
}

fn kinds(events: &[ChangeStreamEvent<Document>]) -> Vec<Op> {
    events.iter().map(|e| e.operation_type.clone()).collect()
}

fn coll_of(e: &ChangeStreamEvent<Document>) -> Option<String> {
    e.ns.as_ref().and_then(|n| n.coll.clone())
}

#[tokio::test]
async fn a_collection_watcher_receives_the_exact_scripted_event_sequence() {
    let sim = common::start().await;
    let c = sim.client.database("shop").collection::<Document>("orders");
    let mut stream = c.watch().await.expect("watch");
    c.insert_one(doc! { "_id": 1, "a": 1, "arr": [1, 2, 3] })
        .await
        .expect("insert");
    c.update_one(
        doc! { "_id": 1 },
        doc! { "$set": { "b": 2 }, "$unset": { "a": "" }, "$push": { "arr": 4 } },
    )
    .await
    .expect("update");
    c.update_one(doc! { "_id": 1 }, doc! { "$pop": { "arr": 1 } })
        .await
        .expect("pop");
    c.replace_one(doc! { "_id": 1 }, doc! { "r": true })
        .await
        .expect("replace");
    c.delete_one(doc! { "_id": 1 }).await.expect("delete");
    c.drop().await.expect("drop");
    let events = take(&mut stream, 7).await;
    assert_eq!(
        kinds(&events),
        vec![
            Op::Insert,
            Op::Update,
            Op::Update,
            Op::Replace,
            Op::Delete,
            Op::Drop,
            Op::Invalidate
        ]
    );
    for e in &events[..6] {
        assert_eq!(
            e.ns.as_ref().map(|n| (n.db.as_str(), n.coll.as_deref())),
            Some(("shop", Some("orders")))
        );
    }
    for e in &events[..5] {
        assert_eq!(e.document_key, Some(doc! { "_id": 1 }));
    }
    assert_eq!(
        events[0].full_document,
        Some(doc! { "_id": 1, "a": 1, "arr": [1, 2, 3] })
    );
    let d1 = events[1]
        .update_description
        .as_ref()
        .expect("update description");
    assert_eq!(d1.updated_fields, doc! { "b": 2, "arr.3": 4 });
    assert_eq!(d1.removed_fields, vec!["a".to_owned()]);
    assert_eq!(events[1].full_document, None);
    let d2 = events[2]
        .update_description
        .as_ref()
        .expect("update description");
    assert_eq!(d2.updated_fields, doc! {});
    let truncated: Vec<(String, i32)> = d2
        .truncated_arrays
        .iter()
        .flatten()
        .map(|t: &TruncatedArray| (t.field.clone(), t.new_size))
        .collect();
    assert_eq!(truncated, vec![("arr".to_owned(), 3)]);
    assert_eq!(events[3].full_document, Some(doc! { "_id": 1, "r": true }));
    assert_eq!(events[5].document_key, None);
    let tokens: Vec<String> = events.iter().map(|e| token_data(&e.id)).collect();
    assert!(
        tokens.windows(2).all(|w| w[0] < w[1]),
        "tokens sort in stream order: {tokens:?}"
    );
    let times: Vec<_> = events
        .iter()
        .map(|e| e.cluster_time.expect("clusterTime"))
        .collect();
    assert!(times[..6]
        .windows(2)
        .all(|w| (w[0].time, w[0].increment) < (w[1].time, w[1].increment)));
    assert!(events.iter().all(|e| e.wall_time.is_some()));
    assert_eq!(token_seconds(&tokens[0]), times[0].time);
    assert_eq!(
        u32::from_str_radix(&tokens[0][10..18], 16).ok(),
        Some(times[0].increment)
    );
    assert!(!stream.is_alive(), "invalidate closes the stream");
    sim.handle.shutdown().await;
}

#[tokio::test]
async fn database_and_cluster_watchers_see_their_scope_and_the_drop_database_sequence() {
    let sim = common::start().await;
    let shop = sim.client.database("shop");
    let mut db_stream = shop.watch().await.expect("db watch");
    let mut all = sim.client.watch().await.expect("cluster watch");
    shop.collection::<Document>("a")
        .insert_one(doc! { "_id": 1 })
        .await
        .expect("insert a");
    shop.collection::<Document>("b")
        .insert_one(doc! { "_id": 2 })
        .await
        .expect("insert b");
    sim.client
        .database("other")
        .collection::<Document>("c")
        .insert_one(doc! { "_id": 3 })
        .await
        .expect("insert c");
    shop.drop().await.expect("drop database");
    let db_events = take(&mut db_stream, 6).await;
    assert_eq!(
        kinds(&db_events),
        vec![
            Op::Insert,
            Op::Insert,
            Op::Drop,
            Op::Drop,
            Op::DropDatabase,
            Op::Invalidate
        ]
    );
    assert_eq!(
        db_events.iter().take(4).map(coll_of).collect::<Vec<_>>(),
        vec![
            Some("a".into()),
            Some("b".into()),
            Some("a".into()),
            Some("b".into())
        ]
    );
    assert_eq!(
        db_events[4]
            .ns
            .as_ref()
            .map(|n| (n.db.clone(), n.coll.clone())),
        Some(("shop".into(), None))
    );
    let cluster = take(&mut all, 6).await;
    assert_eq!(
        kinds(&cluster),
        vec![
            Op::Insert,
            Op::Insert,
            Op::Insert,
            Op::Drop,
            Op::Drop,
            Op::DropDatabase
        ]
    );
    assert_eq!(
        cluster[2].ns.as_ref().map(|n| n.db.clone()),
        Some("other".into())
    );
    assert!(all.is_alive(), "a cluster stream is never invalidated");
    sim.handle.shutdown().await;
}

#[tokio::test]
async fn renaming_a_collection_emits_rename_then_invalidate() {
    let sim = common::start().await;
    let c = sim.client.database("shop").collection::<Document>("old");
    c.insert_one(doc! { "_id": 1 })
        .await
        .expect("create by insert");
    let mut stream = c.watch().await.expect("watch");
    sim.client
        .database("admin")
        .run_command(doc! { "renameCollection": "shop.old", "to": "shop.new" })
        .await
        .expect("rename");
    let events = take(&mut stream, 2).await;
    assert_eq!(kinds(&events), vec![Op::Rename, Op::Invalidate]);
    assert_eq!(
        events[0]
            .to
            .as_ref()
            .map(|t| (t.db.clone(), t.coll.clone())),
        Some(("shop".into(), Some("new".into())))
    );
    sim.handle.shutdown().await;
}

#[tokio::test]
async fn update_lookup_returns_the_current_document_or_null_after_a_delete() {
    let sim = common::start().await;
    let c = sim.client.database("shop").collection::<Document>("lookup");
    let mut stream = c
        .watch()
        .full_document(FullDocumentType::UpdateLookup)
        .await
        .expect("watch");
    c.insert_one(doc! { "_id": 1, "v": 1 })
        .await
        .expect("insert");
    c.update_one(doc! { "_id": 1 }, doc! { "$set": { "v": 2 } })
        .await
        .expect("update");
    let first = take(&mut stream, 2).await;
    assert_eq!(first[1].full_document, Some(doc! { "_id": 1, "v": 2 }));
    c.update_one(doc! { "_id": 1 }, doc! { "$set": { "v": 3 } })
        .await
        .expect("update");
    c.delete_one(doc! { "_id": 1 }).await.expect("delete");
    let later = take(&mut stream, 2).await;
    assert_eq!(kinds(&later), vec![Op::Update, Op::Delete]);
    assert_eq!(
        later[0].full_document, None,
        "the document was deleted before the lookup"
    );
    sim.handle.shutdown().await;
}

#[tokio::test]
async fn pre_and_post_images_appear_only_when_enabled_on_the_collection() {
    let sim = common::start().await;
    let db = sim.client.database("img");
    db.run_command(doc! { "create": "on", "changeStreamPreAndPostImages": { "enabled": true } })
        .await
        .expect("create");
    db.run_command(doc! { "create": "off" })
        .await
        .expect("create");
    let on = db.collection::<Document>("on");
    let off = db.collection::<Document>("off");
    on.insert_one(doc! { "_id": 1, "v": 1 })
        .await
        .expect("seed");
    off.insert_one(doc! { "_id": 1, "v": 1 })
        .await
        .expect("seed");
    let mut s_on = on
        .watch()
        .full_document(FullDocumentType::WhenAvailable)
        .full_document_before_change(FullDocumentBeforeChangeType::WhenAvailable)
        .await
        .expect("watch");
    let mut s_off = off
        .watch()
        .full_document_before_change(FullDocumentBeforeChangeType::WhenAvailable)
        .await
        .expect("watch");
    for c in [&on, &off] {
        c.update_one(doc! { "_id": 1 }, doc! { "$inc": { "v": 1 } })
            .await
            .expect("update");
        c.delete_one(doc! { "_id": 1 }).await.expect("delete");
    }
    let ev = take(&mut s_on, 2).await;
    assert_eq!(
        ev[0].full_document_before_change,
        Some(doc! { "_id": 1, "v": 1 })
    );
    assert_eq!(ev[0].full_document, Some(doc! { "_id": 1, "v": 2 }));
    assert_eq!(
        ev[1].full_document_before_change,
        Some(doc! { "_id": 1, "v": 2 })
    );
    let ev = take(&mut s_off, 2).await;
    assert_eq!(
        (
            ev[0].full_document_before_change.clone(),
            ev[1].full_document_before_change.clone()
        ),
        (None, None)
    );
    db.run_command(doc! { "collMod": "off", "changeStreamPreAndPostImages": { "enabled": true } })
        .await
        .expect("collMod");
    off.insert_one(doc! { "_id": 2, "v": 5 })
        .await
        .expect("insert");
    off.delete_one(doc! { "_id": 2 }).await.expect("delete");
    let ev = take(&mut s_off, 2).await;
    assert_eq!(
        ev[1].full_document_before_change,
        Some(doc! { "_id": 2, "v": 5 })
    );
    sim.handle.shutdown().await;
}

#[tokio::test]
async fn follow_on_stages_filter_and_reshape_events() {
    let sim = common::start().await;
    let c = sim.client.database("shop").collection::<Document>("stages");
    let pipeline = vec![
        doc! { "$match": { "operationType": { "$in": ["insert", "delete"] } } },
        doc! { "$project": { "fullDocument.secret": 0 } },
        doc! { "$addFields": { "tag": "seen" } },
    ];
    let mut stream = c
        .watch()
        .pipeline(pipeline)
        .await
        .expect("watch")
        .with_type::<Document>();
    c.insert_one(doc! { "_id": 1, "secret": "s", "open": 1 })
        .await
        .expect("insert");
    c.update_one(doc! { "_id": 1 }, doc! { "$set": { "x": 1 } })
        .await
        .expect("update");
    c.delete_one(doc! { "_id": 1 }).await.expect("delete");
    let mut got = Vec::new();
    while got.len() < 2 {
        got.push(stream.next().await.expect("event").expect("ok"));
    }
    assert_eq!(
        got[0].get_document("fullDocument").ok(),
        Some(&doc! { "_id": 1, "open": 1 })
    );
    assert_eq!(
        (
            got[0].get_str("tag").ok(),
            got[1].get_str("operationType").ok()
        ),
        (Some("seen"), Some("delete"))
    );
    let mut bad = c
        .watch()
        .pipeline(vec![doc! { "$project": { "_id": 0 } }])
        .await
        .expect("watch")
        .with_type::<Document>();
    c.insert_one(doc! { "_id": 2 }).await.expect("insert");
    let err = bad
        .next()
        .await
        .expect("an outcome")
        .expect_err("removing _id is fatal");
    assert_eq!(common::code_of(&err), Some(280));
    let refused = c
        .watch()
        .pipeline(vec![doc! { "$group": { "_id": 1 } }])
        .await;
    assert!(
        refused.is_err(),
        "stages beyond the supported ones are refused"
    );
    sim.handle.shutdown().await;
}

#[tokio::test]
async fn an_empty_get_more_waits_for_max_await_time_but_an_event_ends_the_wait() {
    let sim = common::start().await;
    let c = sim.client.database("shop").collection::<Document>("await");
    let mut stream = c
        .watch()
        .max_await_time(Duration::from_millis(300))
        .await
        .expect("watch");
    // The first call consumes the (empty) initial batch; the second issues a getMore.
    assert!(stream.next_if_any().await.expect("first batch").is_none());
    let t = Instant::now();
    assert!(stream.next_if_any().await.expect("getMore").is_none());
    assert!(
        t.elapsed() >= Duration::from_millis(280),
        "an empty batch is not answered instantly"
    );
    let mut slow = c
        .watch()
        .max_await_time(Duration::from_secs(8))
        .await
        .expect("watch");
    let writer = {
        let c = c.clone();
        tokio::spawn(async move { c.insert_one(doc! { "_id": 1 }).await.map(|_| ()) })
    };
    let t = Instant::now();
    let ev = slow.next().await.expect("event").expect("ok");
    assert!(
        t.elapsed() < Duration::from_secs(4),
        "an arriving event ends the wait"
    );
    assert_eq!(ev.document_key, Some(doc! { "_id": 1 }));
    writer.await.expect("join").expect("insert");
    sim.handle.shutdown().await;
}

#[tokio::test]
async fn the_post_batch_resume_token_follows_the_wall_clock_while_idle() {
    let sim = common::start().await;
    let c = sim.client.database("shop").collection::<Document>("idle");
    let mut stream = c
        .watch()
        .max_await_time(Duration::from_millis(200))
        .await
        .expect("watch");
    let first = token_data(&stream.resume_token().expect("initial token"));
    assert!(token_seconds(&first) + 2 >= unix_now());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        assert!(stream.next_if_any().await.expect("getMore").is_none());
        let now_token = token_data(&stream.resume_token().expect("token"));
        assert!(now_token >= first);
        assert!(
            token_seconds(&now_token) + 2 >= unix_now(),
            "lag stays near zero"
        );
        if token_seconds(&now_token) >= token_seconds(&first) + 2 {
            break;
        }
        assert!(Instant::now() < deadline, "the token never advanced");
    }
    sim.handle.shutdown().await;
}

#[tokio::test]
async fn while_paused_the_stream_position_stops_advancing_so_lag_grows() {
    let sim = common::start().await;
    let c = sim.client.database("shop").collection::<Document>("paused");
    let mut stream = c
        .watch()
        .max_await_time(Duration::from_millis(100))
        .await
        .expect("watch");
    assert!(stream.next_if_any().await.expect("first").is_none());
    sim.handle.pause();
    let waited = tokio::time::timeout(Duration::from_millis(1500), stream.next_if_any()).await;
    assert!(waited.is_err(), "no answer while paused");
    let stale = token_seconds(&token_data(&stream.resume_token().expect("token")));
    sim.handle.resume();
    let deadline = Instant::now() + Duration::from_secs(10);
    let fresh = loop {
        let _ = stream.next_if_any().await.expect("getMore after resume");
        let secs = token_seconds(&token_data(&stream.resume_token().expect("token")));
        if secs > stale {
            break secs;
        }
        assert!(
            Instant::now() < deadline,
            "the token never moved after resume"
        );
    };
    assert!(fresh + 2 >= unix_now());
    sim.handle.shutdown().await;
}

#[tokio::test]
async fn the_resume_token_advances_past_events_a_match_stage_filters_out() {
    let sim = common::start().await;
    let c = sim
        .client
        .database("shop")
        .collection::<Document>("filtered");
    let mut stream = c
        .watch()
        .pipeline(vec![doc! { "$match": { "operationType": "delete" } }])
        .max_await_time(Duration::from_millis(100))
        .await
        .expect("watch");
    let before = token_data(&stream.resume_token().expect("initial token"));
    c.insert_many((0..5).map(|i| doc! { "_id": i }))
        .await
        .expect("insert");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        assert!(
            stream.next_if_any().await.expect("getMore").is_none(),
            "inserts are filtered out"
        );
        let now = token_data(&stream.resume_token().expect("token"));
        let seq = |d: &str| u64::from_str_radix(&d[20..36], 16).unwrap_or(0);
        if seq(&now) >= seq(&before) + 5 {
            assert!(now > before);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the token never moved past the filtered events"
        );
    }
    c.delete_one(doc! { "_id": 3 }).await.expect("delete");
    let ev = stream.next().await.expect("event").expect("ok");
    assert_eq!(
        (ev.operation_type, ev.document_key),
        (Op::Delete, Some(doc! { "_id": 3 }))
    );
    sim.handle.shutdown().await;
}
