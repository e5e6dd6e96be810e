//! Postgres side. Every statement on the control tables (checkpoints, gaps, id_map, token-reset
//! audit, verification results) and every write to the mapped tables lives here, one owner per
//! table: `checkpoint`, `gaps`, `idmap`, `audit`, `verify_results`, with `batch` / `plan` /
//! `write` applying row operations and `migrate` creating the control tables. Postgres
//! connections are opened by `connect`; what the role may do is checked by `privileges`; SQL
//! names are quoted by `name`; BSON is stored as text by `extjson`. Outside this module Postgres
//! is only read (verify, the gap retry's row version, the demo's status) or set up (the demo's
//! database), and nothing decides about retries here: `SinkError` reports, `policy` decides.
//!
//! The stream loads the catalogue ([`catalogue::load`]), builds a [`Sink`] with the
//! control-table names ([`ControlNames`]), reads where it stands ([`Sink::load_checkpoint`]) and
//! then calls [`Sink::apply_batch`] once per batch with the checkpoint epoch it started from: the
//! rows, the gaps and the forward-only checkpoint commit in one transaction.

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
pub mod privileges;
pub mod text;
pub mod tombstones;
pub mod verify_results;
mod write;

pub use batch::{gap_kind_for_sqlstate, BatchItem, BatchOutcome, PageTurn, Resolved, Sink};
pub use checkpoint::{Checkpoint, SnapshotState};
pub use error::SinkError;
pub use gaps::{record_gaps, GapRecord};
pub use migrate::{migrate, ControlNames};
