//! Resume tokens: `show` and the audited `reset`.

pub mod target;

pub use target::{parse_cluster_time, ResetArgs, ResetRequest, ResetTarget};
