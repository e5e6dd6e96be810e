//! Postgres side: batch apply, id_map, checkpoints, gaps, migrations.

pub mod catalogue;
pub mod error;

pub use error::SinkError;
