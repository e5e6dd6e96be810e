//! Metrics and health: the registry, the HTTP server, the documented metric names and a real
//! Prometheus scraping the endpoint with the shipped dashboard and alert rules.

#[path = "../support/mod.rs"]
mod support;

mod docs;
mod prometheus;
mod registry;
mod server;
