//! Snapshot (initial copy and targeted re-sync) and history-lost handling.

pub mod policy;
pub mod progress;
