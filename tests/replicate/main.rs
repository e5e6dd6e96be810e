//! The replicator end to end, in-process, over mongosim (or `MONGO_URL`) and a real Postgres:
//! core replication of the reference domain, bad input becoming gaps, replays converging, and
//! restarts, kills, standby takeover and the failure policy, and replication into a TLS-only
//! Postgres.

#[path = "../support/mod.rs"]
mod support;

mod bad_input;
mod core;
mod groups;
mod lifecycle;
mod replay;
mod resolve_ahead;
mod restart;
mod timing;
mod tls_postgres;
