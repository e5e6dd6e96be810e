//! TLS through the official driver: a CA and a server certificate for 127.0.0.1 / localhost are
//! generated per test (rcgen); CRUD and a change stream work with `tls=true&tlsCAFile=<ca>` (as
//! `SimHandle::uri` builds it), also with authentication; a client trusting another CA and a
//! plain-TCP client are refused.

mod common;

use bson::{doc, Document};
use common::Pki;
use futures::StreamExt;
use mongodb::Client;
use mongosim::{SimConfig, SimUser};
use std::time::Duration;

async fn start_tls(pki: &Pki, users: Vec<SimUser>) -> mongosim::SimHandle {
    mongosim::start(SimConfig {
        tls_cert_file: Some(pki.cert.clone()),
        tls_key_file: Some(pki.key.clone()),
        tls_ca_file: Some(pki.ca.clone()),
        users,
        ..SimConfig::default()
    })
    .await
    .expect("TLS simulator starts")
}

async fn client(uri: &str) -> Client {
    let mut options = mongodb::options::ClientOptions::parse(uri)
        .await
        .expect("uri parses");
    options.server_selection_timeout = Some(Duration::from_secs(3));
    Client::with_options(options).expect("client")
}

#[tokio::test]
async fn crud_and_a_change_stream_work_over_tls_with_the_simulators_uri() {
    let pki = Pki::new("ok");
    let sim = start_tls(&pki, Vec::new()).await;
    assert!(sim.uri().contains("tls=true&tlsCAFile="), "{}", sim.uri());
    let c = client(&sim.uri()).await;
    let coll = c.database("tls").collection::<Document>("items");
    let mut stream = coll.watch().await.expect("watch over TLS");
    coll.insert_one(doc! { "_id": 1 })
        .await
        .expect("insert over TLS");
    let event = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("event in time")
        .expect("stream open")
        .expect("event");
    assert_eq!(event.document_key, Some(doc! { "_id": 1 }));
    assert_eq!(
        coll.find_one(doc! {}).await.expect("find"),
        Some(doc! { "_id": 1 })
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn tls_and_authentication_work_together() {
    let pki = Pki::new("auth");
    let sim = start_tls(&pki, vec![SimUser::new("app", "pw")]).await;
    let c = client(&sim.uri_with_credentials("app", "pw", "admin")).await;
    c.database("tls")
        .collection::<Document>("items")
        .insert_one(doc! { "_id": 1 })
        .await
        .expect("authenticated insert over TLS");
    sim.shutdown().await;
}

#[tokio::test]
async fn a_client_trusting_another_ca_or_no_tls_is_refused() {
    let pki = Pki::new("server");
    let other = Pki::new("other");
    let sim = start_tls(&pki, Vec::new()).await;
    let wrong_ca = format!(
        "mongodb://{}/?directConnection=true&tls=true&tlsCAFile={}",
        sim.addr(),
        other.ca.display()
    );
    let err = client(&wrong_ca)
        .await
        .database("admin")
        .run_command(doc! { "ping": 1 })
        .await
        .expect_err("a certificate from an untrusted CA is refused");
    assert!(
        format!("{err:?}").contains("UnknownIssuer")
            || format!("{err:?}").to_lowercase().contains("certificate"),
        "{err:?}"
    );
    let plain = format!("mongodb://{}/?directConnection=true", sim.addr());
    client(&plain)
        .await
        .database("admin")
        .run_command(doc! { "ping": 1 })
        .await
        .expect_err("plain TCP is refused by a TLS simulator");
    sim.shutdown().await;
}

#[tokio::test]
async fn unusable_tls_files_fail_at_start_naming_the_file() {
    let pki = Pki::new("bad");
    let missing = pki.dir.join("missing.pem");
    let err = mongosim::start(SimConfig {
        tls_cert_file: Some(missing.clone()),
        tls_key_file: Some(pki.key.clone()),
        ..SimConfig::default()
    })
    .await
    .expect_err("a missing certificate file");
    let chain = format!(
        "{err} / {}",
        std::error::Error::source(&err).map_or(String::new(), |s| s.to_string())
    );
    assert!(chain.contains("missing.pem"), "{chain}");
    let err = mongosim::start(SimConfig {
        tls_cert_file: Some(pki.cert.clone()),
        ..SimConfig::default()
    })
    .await
    .expect_err("a certificate without a key");
    assert!(err.to_string().contains("key"), "{err}");
}
