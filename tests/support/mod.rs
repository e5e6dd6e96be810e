//! The one support module of the integration tests (and the benchmark): a Postgres database per
//! test that is dropped even when the test panics (`db`), the MongoDB source — mongosim in-process
//! or the replica set of `MONGO_URL` (`source`), condition polling instead of sleeps (`wait`), the
//! reference marketplace schema and mapping with the replicator's start/stop helpers
//! (`replicator`), the small fixtures of the sink tests (`sink_fixtures`) and of the snapshot,
//! gaps, tokens and verify tests (`shop`), a real Prometheus (`prometheus`), the end-to-end
//! helpers (`e2e`), test certificates (`pki`), a TLS-only Postgres cluster (`tls_postgres`) and
//! the container image run with podman (`podman`).
//! Every test binary includes it with `#[path = "../support/mod.rs"] mod support;` and uses what
//! it needs.
#![allow(dead_code, unused_imports)]

pub mod db;
pub mod e2e;
pub mod pki;
pub mod podman;
pub mod prometheus;
pub mod replicator;
pub mod shop;
pub mod sink_fixtures;
pub mod source;
pub mod tls_postgres;
pub mod wait;

use std::path::{Path, PathBuf};

pub use db::{connect, TestDb, TestRole};
pub use replicator::{
    init_tracing, mapping_file_with, migrate, money_group, mongo_users, open_gaps, pg_users,
    reference_config, reference_mapping_file, start_replicator, verify_reference, wait_users_equal,
    RefEnv,
};
pub use source::Source;
pub use wait::{count, wait_until};

/// A path inside the repository.
pub fn repo_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// A name unique to this call (usable as a Postgres or MongoDB database name): `m2p_<tag>_<12
/// hex digits>`.
pub fn unique_name(tag: &str) -> String {
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    format!("m2p_{tag}_{}", &suffix[..12])
}
