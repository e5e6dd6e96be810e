//! One stream's pipeline: source -> mapping -> bounded channel -> batch -> sink.
//!
//! A reader task (`reader`) pulls from the change stream and maps each event (pure); the consumer
//! (`consumer`) cuts batches by size or time and applies each in one Postgres transaction together
//! with the checkpoint. The bounded channel is the backpressure: when Postgres is slow the reader
//! stops issuing getMores. The channel is bounded in items and in raw bytes (`budget`). `stream` is one life of a stream around them (lease, copy first, open,
//! consume). Retrying is not done here: errors go back to the supervisor.

pub mod budget;
pub mod consumer;
pub mod reader;
pub mod stream;

use std::time::Duration;

pub use consumer::{position_key, Consumer};
pub use reader::{map_for_stream, spawn_reader, ItemOut, ReaderSpec};

/// When a batch is cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    pub max_events: usize,
    pub max_wait: Duration,
}

/// How a stream ended without error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamExit {
    /// The process is shutting down.
    Shutdown,
    /// An operator reset the stream's position: reopen it from the stored checkpoint.
    Restart,
    /// Another process holds the stream's lease; try again later.
    Standby,
}
