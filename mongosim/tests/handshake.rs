//! Topology and framing: the plain replica-set URI (hosts/me/primary equal the bound address), the
//! legacy OP_QUERY handshake pymongo and Node send first, and shutdown.

mod common;

use bson::{doc, Document};
use mongodb::Client;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test]
async fn the_replica_set_uri_discovers_the_simulator_as_primary() {
    let sim = common::start().await;
    let rs = Client::with_uri_str(sim.handle.replica_set_uri())
        .await
        .expect("client");
    let c = rs.database("h").collection::<Document>("rs");
    c.insert_one(doc! { "_id": 1 })
        .await
        .expect("insert through replica-set discovery");
    let hello = rs
        .database("admin")
        .run_command(doc! { "hello": 1 })
        .await
        .expect("hello");
    let me = sim.handle.addr().to_string();
    assert_eq!(hello.get_str("me").ok(), Some(me.as_str()));
    assert_eq!(hello.get_str("primary").ok(), Some(me.as_str()));
    assert_eq!(hello.get_str("setName").ok(), Some("rs0"));
    assert_eq!(hello.get_i32("maxWireVersion").ok(), Some(21));
    assert!(!hello.contains_key("topologyVersion"));
    sim.handle.shutdown().await;
}

#[tokio::test]
async fn a_legacy_op_query_is_master_gets_an_op_reply() {
    let sim = common::start().await;
    let mut sock = TcpStream::connect(sim.handle.addr())
        .await
        .expect("connect");
    let query = doc! { "ismaster": 1, "helloOk": true, "client": { "driver": { "name": "test", "version": "0" } } };
    let mut q = Vec::new();
    query.to_writer(&mut q).expect("serialize");
    let mut body = Vec::new();
    body.extend_from_slice(&0i32.to_le_bytes());
    body.extend_from_slice(b"admin.$cmd\0");
    body.extend_from_slice(&0i32.to_le_bytes());
    body.extend_from_slice(&(-1i32).to_le_bytes());
    body.extend_from_slice(&q);
    let mut msg = Vec::new();
    msg.extend_from_slice(&((16 + body.len()) as i32).to_le_bytes());
    msg.extend_from_slice(&4242i32.to_le_bytes());
    msg.extend_from_slice(&0i32.to_le_bytes());
    msg.extend_from_slice(&2004i32.to_le_bytes());
    msg.extend_from_slice(&body);
    sock.write_all(&msg).await.expect("write");
    let mut header = [0u8; 16];
    sock.read_exact(&mut header).await.expect("read header");
    let len = i32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let response_to = i32::from_le_bytes([header[8], header[9], header[10], header[11]]);
    let op = i32::from_le_bytes([header[12], header[13], header[14], header[15]]);
    assert_eq!((response_to, op), (4242, 1));
    let mut rest = vec![0u8; len - 16];
    sock.read_exact(&mut rest).await.expect("read body");
    let n = i32::from_le_bytes([rest[16], rest[17], rest[18], rest[19]]);
    assert_eq!(n, 1, "numberReturned");
    let reply = Document::from_reader(&rest[20..]).expect("reply document");
    assert_eq!(reply.get_bool("ismaster").ok(), Some(true));
    assert_eq!(reply.get_bool("helloOk").ok(), Some(true));
    assert_eq!(reply.get_i32("maxBsonObjectSize").ok(), Some(16_777_216));
    sim.handle.shutdown().await;
}

#[tokio::test]
async fn shutdown_stops_the_listener() {
    let sim = common::start().await;
    let addr = sim.handle.addr();
    sim.handle.clone().shutdown().await;
    let refused = common::wait_for(
        "listener closed",
        std::time::Duration::from_secs(5),
        || async { TcpStream::connect(addr).await.is_err().then_some(()) },
    )
    .await;
    assert_eq!(refused, ());
}
