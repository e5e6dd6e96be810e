//! Postgres side: batch apply, id_map, checkpoints, gaps, migrations. Nothing else in the crate
//! writes to Postgres.
//!
//! The pipeline loads the catalogue ([`catalogue::load`]), builds a [`Sink`] with the
//! control-table names ([`ControlNames`]), reads where its stream stands
//! ([`Sink::load_checkpoint`]) and then calls [`Sink::apply_batch`] once per batch with the
//! checkpoint epoch it started from. `migrate` creates the control tables. Errors are one
//! [`SinkError`] whose [`SinkError::is_transient`] tells the supervisor whether to retry.

pub mod audit;
pub mod batch;
pub mod catalogue;
pub mod checkpoint;
pub mod connect;
pub mod defer;
pub mod error;
pub mod extjson;
pub mod gaps;
pub mod idmap;
pub mod migrate;
pub mod name;
mod plan;
pub mod text;
pub mod tombstones;
mod write;

pub use batch::{gap_kind_for_sqlstate, BatchItem, BatchOutcome, Sink};
pub use checkpoint::{Checkpoint, SnapshotState};
pub use error::SinkError;
pub use gaps::{record_gaps, GapRecord};
pub use migrate::{migrate, ControlNames};
