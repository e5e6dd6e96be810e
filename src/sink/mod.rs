//! Postgres side: batch apply, id_map, checkpoints, gaps, migrations.

pub mod catalogue;
