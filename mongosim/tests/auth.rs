//! Authentication through the official driver's real handshake: SCRAM-SHA-256 (speculative, in
//! hello) and SCRAM-SHA-1, credentials in the URI for CRUD and change streams, a wrong password
//! (18 AuthenticationFailed, "Authentication failed."), an unauthenticated client (13
//! Unauthorized), users of another auth database, connectionStatus and usersInfo.

mod common;

use bson::{doc, Document};
use futures::StreamExt;
use mongodb::error::{Error, ErrorKind};
use mongodb::Client;
use mongosim::{SimConfig, SimUser};
use std::time::Duration;

async fn start_with_users() -> mongosim::SimHandle {
    mongosim::start(SimConfig {
        users: vec![
            SimUser::new("app", "s3cret:p@ss"),
            SimUser::new("shopper", "cart").in_db("shop"),
        ],
        ..SimConfig::default()
    })
    .await
    .expect("simulator starts")
}

async fn client(uri: &str) -> Client {
    let mut options = mongodb::options::ClientOptions::parse(uri)
        .await
        .expect("uri parses");
    options.server_selection_timeout = Some(Duration::from_secs(5));
    Client::with_options(options).expect("client")
}

/// True when the driver error carries the server's AuthenticationFailed (18) reply as its cause
/// (the driver exposes that cause only through its Debug output).
fn carries_authentication_failed(err: &Error) -> bool {
    format!("{err:?}").contains("code: 18, code_name: \"AuthenticationFailed\"")
}

#[tokio::test]
async fn the_right_credentials_work_for_crud_and_change_streams() {
    let sim = start_with_users().await;
    let c = client(&sim.uri_with_credentials("app", "s3cret:p@ss", "admin")).await;
    let coll = c.database("authed").collection::<Document>("items");
    let mut stream = coll.watch().await.expect("watch after auth");
    coll.insert_one(doc! { "_id": 1, "v": "x" })
        .await
        .expect("insert after auth");
    let event = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("event in time")
        .expect("stream open")
        .expect("event");
    assert_eq!(
        event.document_key,
        Some(doc! { "_id": 1 }),
        "the insert arrives on the authenticated stream"
    );
    let status = c
        .database("admin")
        .run_command(doc! { "connectionStatus": 1 })
        .await
        .expect("connectionStatus");
    let users = status
        .get_document("authInfo")
        .and_then(|a| a.get_array("authenticatedUsers"))
        .expect("authenticated users");
    assert_eq!(
        users.first().and_then(|u| u.as_document()).cloned(),
        Some(doc! { "user": "app", "db": "admin" })
    );
    let info = c
        .database("admin")
        .run_command(doc! { "usersInfo": "app" })
        .await
        .expect("usersInfo");
    let listed = info.get_array("users").expect("users");
    assert_eq!(listed.len(), 1);
    let user = listed[0].as_document().expect("user document");
    assert_eq!(user.get_str("_id").ok(), Some("admin.app"));
    assert!(
        !format!("{info}").contains("s3cret"),
        "usersInfo never shows the password"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn a_wrong_password_fails_with_authentication_failed() {
    let sim = start_with_users().await;
    let c = client(&sim.uri_with_credentials("app", "wrong", "admin")).await;
    let err = c
        .database("authed")
        .collection::<Document>("items")
        .insert_one(doc! { "_id": 1 })
        .await
        .expect_err("a wrong password is refused");
    assert!(
        matches!(&*err.kind, ErrorKind::Authentication { message, .. } if message.contains("Authentication failed.")),
        "{err:?}"
    );
    assert!(carries_authentication_failed(&err), "{err:?}");
    let unknown = client(&sim.uri_with_credentials("nobody", "x", "admin")).await;
    let err = unknown
        .database("admin")
        .run_command(doc! { "ping": 1 })
        .await
        .expect_err("an unknown user is refused");
    assert!(
        matches!(&*err.kind, ErrorKind::Authentication { message, .. } if message.contains("Authentication failed.")),
        "{err:?}"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn an_unauthenticated_client_gets_unauthorized_except_for_handshake_commands() {
    let sim = start_with_users().await;
    let c = client(&sim.uri()).await;
    c.database("admin")
        .run_command(doc! { "ping": 1 })
        .await
        .expect("ping needs no authentication");
    let status = c
        .database("admin")
        .run_command(doc! { "connectionStatus": 1 })
        .await
        .expect("connectionStatus needs no authentication");
    assert_eq!(
        status
            .get_document("authInfo")
            .and_then(|a| a.get_array("authenticatedUsers"))
            .map(Vec::len)
            .ok(),
        Some(0)
    );
    let err = c
        .database("authed")
        .collection::<Document>("items")
        .insert_one(doc! { "_id": 1 })
        .await
        .expect_err("writes need authentication");
    assert_eq!(common::code_of(&err), Some(13), "{err:?}");
    let err = c
        .list_database_names()
        .await
        .expect_err("listDatabases needs authentication");
    assert_eq!(common::code_of(&err), Some(13), "{err:?}");
    sim.shutdown().await;
}

#[tokio::test]
async fn scram_sha_1_works_when_the_uri_asks_for_it() {
    let sim = start_with_users().await;
    let uri = format!(
        "{}&authMechanism=SCRAM-SHA-1",
        sim.uri_with_credentials("app", "s3cret:p@ss", "admin")
    );
    let c = client(&uri).await;
    let coll = c.database("authed").collection::<Document>("sha1");
    coll.insert_one(doc! { "_id": "a" })
        .await
        .expect("insert with SCRAM-SHA-1");
    assert_eq!(coll.count_documents(doc! {}).await.expect("count"), 1);
    let bad = client(&format!(
        "{}&authMechanism=SCRAM-SHA-1",
        sim.uri_with_credentials("app", "nope", "admin")
    ))
    .await;
    let err = bad
        .database("authed")
        .collection::<Document>("sha1")
        .count_documents(doc! {})
        .await
        .expect_err("wrong password with SCRAM-SHA-1");
    assert!(carries_authentication_failed(&err), "{err:?}");
    sim.shutdown().await;
}

#[tokio::test]
async fn a_user_authenticates_against_its_own_database_only() {
    let sim = start_with_users().await;
    let shop = client(&sim.uri_with_credentials("shopper", "cart", "shop")).await;
    shop.database("shop")
        .collection::<Document>("carts")
        .insert_one(doc! { "_id": 1 })
        .await
        .expect("authSource=shop works");
    let wrong_db = client(&sim.uri_with_credentials("shopper", "cart", "admin")).await;
    let err = wrong_db
        .database("shop")
        .collection::<Document>("carts")
        .count_documents(doc! {})
        .await
        .expect_err("the user does not exist in admin");
    assert!(
        matches!(&*err.kind, ErrorKind::Authentication { .. }),
        "{err:?}"
    );
    sim.shutdown().await;
}
