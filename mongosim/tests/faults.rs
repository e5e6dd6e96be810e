//! Fault injection: every failCommand mode and option, and the simulator controls (step down /
//! re-elect, pause / resume, drop connections) through the handle and as admin commands.

mod common;

use bson::{doc, Document};
use mongodb::Client;
use std::time::{Duration, Instant};

async fn fail_point(client: &Client, spec: Document) {
    let mut cmd = doc! { "configureFailPoint": "failCommand" };
    cmd.extend(spec);
    client
        .database("admin")
        .run_command(cmd)
        .await
        .expect("configureFailPoint");
}

async fn find_code(c: &mongodb::Collection<Document>) -> Option<i32> {
    match c.find_one(doc! {}).await {
        Ok(_) => None,
        Err(e) => Some(common::code_of(&e).unwrap_or(-1)),
    }
}

#[tokio::test]
async fn always_on_fails_every_matching_command_until_turned_off() {
    let sim = common::start().await;
    let c = sim.client.database("f").collection::<Document>("always");
    fail_point(
        &sim.client,
        doc! { "mode": "alwaysOn", "data": { "failCommands": ["find"], "errorCode": 2 } },
    )
    .await;
    assert_eq!(find_code(&c).await, Some(2));
    assert_eq!(find_code(&c).await, Some(2));
    c.insert_one(doc! { "_id": 1 })
        .await
        .expect("other commands are untouched");
    fail_point(&sim.client, doc! { "mode": "off" }).await;
    assert_eq!(find_code(&c).await, None);
    sim.handle.shutdown().await;
}

#[tokio::test]
async fn times_and_skip_modes_count_matching_commands() {
    let sim = common::start().await;
    let c = sim.client.database("f").collection::<Document>("counted");
    fail_point(
        &sim.client,
        doc! { "mode": { "times": 2 }, "data": { "failCommands": ["find"], "errorCode": 2 } },
    )
    .await;
    let times: Vec<Option<i32>> = futures::future::join_all((0..3).map(|_| find_code(&c))).await;
    let mut sorted = times.clone();
    sorted.sort();
    assert_eq!(sorted, vec![None, Some(2), Some(2)]);
    fail_point(
        &sim.client,
        doc! { "mode": { "skip": 2 }, "data": { "failCommands": ["find"], "errorCode": 2 } },
    )
    .await;
    let mut seq = Vec::new();
    for _ in 0..4 {
        seq.push(find_code(&c).await);
    }
    assert_eq!(seq, vec![None, None, Some(2), Some(2)]);
    fail_point(&sim.client, doc! { "mode": "off" }).await;
    sim.handle.shutdown().await;
}

#[tokio::test]
async fn error_message_labels_block_and_close_options_take_effect() {
    let sim = common::start().await;
    let c = sim.client.database("f").collection::<Document>("opts");
    fail_point(
        &sim.client,
        doc! { "mode": { "times": 1 }, "data": { "failCommands": ["find"], "errorCode": 2, "errmsg": "custom boom", "errorLabels": ["MyLabel"] } },
    )
    .await;
    let err = c.find_one(doc! {}).await.expect_err("fails");
    assert!(err.contains_label("MyLabel"));
    assert!(err.to_string().contains("custom boom"), "{err}");
    fail_point(&sim.client, doc! { "mode": { "times": 1 }, "data": { "failCommands": ["ping"], "blockConnection": true, "blockTimeMS": 400 } }).await;
    let t = Instant::now();
    sim.client
        .database("f")
        .run_command(doc! { "ping": 1 })
        .await
        .expect("ping after the block");
    assert!(t.elapsed() >= Duration::from_millis(400));
    fail_point(&sim.client, doc! { "mode": { "times": 2 }, "data": { "failCommands": ["find"], "closeConnection": true } }).await;
    let err = c
        .find_one(doc! {})
        .await
        .expect_err("closed twice: the one read retry also fails");
    assert!(
        matches!(
            *err.kind,
            mongodb::error::ErrorKind::Io(_)
                | mongodb::error::ErrorKind::ConnectionPoolCleared { .. }
        ),
        "{err}"
    );
    assert_eq!(find_code(&c).await, None);
    sim.handle.shutdown().await;
}

#[tokio::test]
async fn app_name_limits_the_fail_point_to_one_client() {
    let sim = common::start().await;
    let mut opts = mongodb::options::ClientOptions::parse(sim.handle.uri())
        .await
        .expect("options");
    opts.app_name = Some("victim".into());
    let victim = Client::with_options(opts).expect("client");
    fail_point(&sim.client, doc! { "mode": "alwaysOn", "data": { "failCommands": ["find"], "errorCode": 2, "appName": "victim" } }).await;
    assert_eq!(
        find_code(&victim.database("f").collection("a")).await,
        Some(2)
    );
    assert_eq!(
        find_code(&sim.client.database("f").collection("a")).await,
        None
    );
    fail_point(&sim.client, doc! { "mode": "off" }).await;
    sim.handle.shutdown().await;
}

async fn hello(client: &Client) -> Document {
    client
        .database("admin")
        .run_command(doc! { "hello": 1 })
        .await
        .expect("hello")
}

#[tokio::test]
async fn step_down_refuses_writes_until_a_re_election_with_a_higher_election_id() {
    let sim = common::start().await;
    let c = sim.client.database("f").collection::<Document>("elect");
    let before = hello(&sim.client)
        .await
        .get_object_id("electionId")
        .expect("electionId");
    sim.handle.step_down();
    let err = c
        .insert_one(doc! { "_id": 1 })
        .await
        .expect_err("not primary");
    assert_eq!(common::code_of(&err), Some(10107));
    let h = hello(&sim.client).await;
    assert_eq!(
        (
            h.get_bool("isWritablePrimary").ok(),
            h.get_bool("secondary").ok()
        ),
        (Some(false), Some(true))
    );
    sim.client
        .database("admin")
        .run_command(doc! { "mongosimReelect": 1 })
        .await
        .expect("reelect");
    let after = hello(&sim.client)
        .await
        .get_object_id("electionId")
        .expect("electionId");
    assert!(
        after.bytes() > before.bytes(),
        "electionId never goes backwards"
    );
    c.insert_one(doc! { "_id": 1 })
        .await
        .expect("primary again");
    sim.client
        .database("admin")
        .run_command(doc! { "mongosimStepDown": 1 })
        .await
        .expect("step down by command");
    assert_eq!(
        hello(&sim.client).await.get_bool("isWritablePrimary").ok(),
        Some(false)
    );
    sim.handle.reelect();
    sim.handle.shutdown().await;
}

#[tokio::test]
async fn pause_holds_every_answer_until_resume() {
    let sim = common::start().await;
    let c = sim.client.database("f").collection::<Document>("pause");
    c.insert_one(doc! { "_id": 1 }).await.expect("warm up");
    sim.handle.pause();
    let mut pending = {
        let c = c.clone();
        tokio::spawn(async move { c.find_one(doc! { "_id": 1 }).await })
    };
    if let Ok(done) = tokio::time::timeout(Duration::from_millis(300), &mut pending).await {
        panic!("answered while paused: {done:?}");
    }
    sim.handle.resume();
    let found = pending.await.expect("join").expect("find");
    assert_eq!(found, Some(doc! { "_id": 1 }));
    let other = Client::with_uri_str(sim.handle.uri())
        .await
        .expect("second client");
    sim.client
        .database("admin")
        .run_command(doc! { "mongosimPause": 1 })
        .await
        .expect("pause by command");
    other
        .database("admin")
        .run_command(doc! { "mongosimResume": 1 })
        .await
        .expect("resume by command");
    assert_eq!(
        c.find_one(doc! { "_id": 1 }).await.expect("find"),
        Some(doc! { "_id": 1 })
    );
    sim.handle.shutdown().await;
}

#[tokio::test]
async fn dropping_connections_by_command_answers_the_caller_and_clients_reconnect() {
    let sim = common::start().await;
    let c = sim.client.database("f").collection::<Document>("drop");
    c.insert_one(doc! { "_id": 1 }).await.expect("insert");
    sim.client
        .database("admin")
        .run_command(doc! { "mongosimDropConnections": 1 })
        .await
        .expect("answered");
    let found = common::wait_for("reconnect", Duration::from_secs(10), || async {
        c.find_one(doc! { "_id": 1 }).await.ok().flatten()
    })
    .await;
    assert_eq!(found, doc! { "_id": 1 });
    sim.handle.shutdown().await;
}
