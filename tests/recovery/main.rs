//! Recovery tools against mongosim (or `MONGO_URL`) and a real Postgres, on the small shop
//! fixture: the initial snapshot and re-sync (with a resume property), history-lost handling,
//! the gaps lifecycle, token resets, verify detecting every kind of difference, and continuous
//! verification inside the running replicator (on the reference domain).

#[path = "../support/mod.rs"]
mod support;

mod continuous_verify;
mod gaps_lifecycle;
mod history_lost;
mod snapshot_copy;
mod snapshot_correctness;
mod snapshot_resume_property;
mod tokens_reset;
mod verify_detects;
