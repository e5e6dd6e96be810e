//! The sink against a real Postgres, one database per test: batch apply (multi-row writes,
//! per-event fallback, child rows), id_map, checkpoints and gaps, error classification, the
//! serialised writers, exact values, migrations, the catalogue, replay properties, and the
//! reference marketplace schema against the shipped mapping.

#[path = "../support/mod.rs"]
mod support;

mod batch;
mod catalogue;
mod checkpoint_gaps;
mod errors;
mod identity;
mod idmap;
mod marketplace_schema;
mod migrate;
mod replay_property;
mod serialise;
mod values;
