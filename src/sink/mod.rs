//! Postgres side: batch apply, id_map, checkpoints, gaps, migrations. The pipeline builds a
//! [`Sink`] from the loaded catalogue and the control-table names, then calls
//! [`Sink::apply_batch`] once per batch; operator tools use the checkpoint and gap functions.

pub mod batch;
pub mod catalogue;
pub mod checkpoint;
pub mod error;
pub mod gaps;
pub mod idmap;
pub mod migrate;
mod plan;
pub mod text;
mod write;

pub use batch::{gap_kind_for_sqlstate, BatchItem, BatchOutcome, Sink};
pub use checkpoint::{load_checkpoint, Checkpoint};
pub use error::SinkError;
pub use gaps::{record_gaps, GapRecord};
pub use migrate::{migrate, ControlNames};
