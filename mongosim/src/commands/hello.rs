//! The handshake / monitoring reply (`hello`, `isMaster`, `ismaster`): presents the simulator as
//! the primary (or, after a step-down, a secondary) of a single-node replica set. No
//! `topologyVersion` is sent, so monitors poll instead of using awaitable hello.

use super::{Body, ConnState};
use crate::error::CommandError;
use crate::state::Shared;
use bson::{doc, Bson, Document};

/// Builds the hello reply and records the client's application name.
pub(crate) fn hello(
    shared: &Shared,
    conn: &mut ConnState,
    body: &Document,
) -> Result<Body, CommandError> {
    if let Ok(client) = body.get_document("client") {
        if let Ok(name) = client
            .get_document("application")
            .and_then(|a| a.get_str("name"))
        {
            conn.app_name = Some(name.to_owned());
        }
    }
    let legacy = !body.contains_key("hello");
    let (primary, election, now) = {
        let inner = shared.lock();
        (inner.primary, inner.election_id(), inner.clock.wall().now())
    };
    let me = shared.advertised.clone();
    let mut d = Document::new();
    if body.get_bool("helloOk").is_ok() || body.contains_key("helloOk") {
        d.insert("helloOk", true);
    }
    d.insert(
        if legacy {
            "ismaster"
        } else {
            "isWritablePrimary"
        },
        primary,
    );
    d.insert("secondary", !primary);
    d.insert("setName", shared.set_name.clone());
    d.insert("setVersion", 1i32);
    d.insert("hosts", vec![Bson::String(me.clone())]);
    if primary {
        d.insert("primary", me.clone());
        d.insert("electionId", election);
    }
    d.insert("me", me);
    d.extend(doc! {
        "maxBsonObjectSize": 16_777_216i32,
        "maxMessageSizeBytes": 48_000_000i32,
        "maxWriteBatchSize": 100_000i32,
        "localTime": now,
        "logicalSessionTimeoutMinutes": 30i32,
        "connectionId": conn.id,
        "minWireVersion": 0i32,
        "maxWireVersion": 21i32,
        "readOnly": false,
        "ok": 1.0,
    });
    if let Ok(spec) = body.get_str("saslSupportedMechs") {
        if let Some(mechs) = crate::auth::supported_mechs(&shared.users, spec) {
            d.insert("saslSupportedMechs", mechs);
        }
    }
    if let Ok(spec) = body.get_document("speculativeAuthenticate") {
        if let Some(reply) = crate::auth::speculative(&shared.users, &mut conn.auth, spec) {
            d.insert("speculativeAuthenticate", reply);
        }
    }
    Ok(Body::Doc(d))
}
