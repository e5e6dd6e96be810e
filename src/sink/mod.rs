//! Postgres side: batch apply, id_map, checkpoints, gaps, migrations.

pub mod catalogue;
pub mod error;
pub mod migrate;

pub use error::SinkError;
pub use migrate::{migrate, ControlNames};
