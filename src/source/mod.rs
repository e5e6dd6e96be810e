//! MongoDB side: opening the client (`connect`), the change stream reader and the snapshot
//! reader, all through the official driver only. This module never touches Postgres and never decides about retries; it turns what
//! the server sends into `ChangeEvent`s and stream positions.

pub mod connect;
pub mod normalize;
pub mod snapshot;
pub mod stream;

pub use normalize::{normalize_event, token_cluster_time};
pub use stream::{ChangeSource, SourceItem, StartAt, StreamOptions};
