//! End-to-end operator checks: a real Prometheus over the running replicator (lag, readiness
//! through a Postgres outage, no secrets anywhere), the container image run with podman, the
//! deployment files' checks and the pymongo cross-driver check. This binary installs its own log
//! subscriber, so nothing else runs here.

#[path = "../support/mod.rs"]
mod support;

mod container;
mod deploy_checks;
mod operators;
