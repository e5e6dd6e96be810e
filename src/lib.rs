//! mongo2pg: a change-data-capture sidecar that tails MongoDB change streams per collection and
//! applies them to PostgreSQL as idempotent, version-guarded upserts, committing each batch's rows
//! together with the stream's resume token. The binary in `main.rs` is a thin shell over this
//! library so that integration tests can start the real pipeline in-process.

pub mod cli;
pub mod commands;
pub mod config;
pub mod continuous_verify;
pub mod demo;
pub mod error;
pub mod event;
pub mod gap_retry;
pub mod housekeeping;
pub mod logging;
pub mod mapping;
pub mod metrics;
pub mod ops;
pub mod pipeline;
pub mod policy;
pub mod replicator;
pub mod sink;
pub mod snapshot;
pub mod source;
pub mod supervisor;
