//! Recovery tools against mongosim (or `MONGO_URL`) and a real Postgres, on the small shop
//! fixture: the initial snapshot and re-sync (with a resume property), history-lost handling,
//! the gaps lifecycle, token resets, and verify detecting every kind of difference.

#[path = "../support/mod.rs"]
mod support;

mod gaps_lifecycle;
mod history_lost;
mod snapshot_copy;
mod snapshot_correctness;
mod snapshot_resume_property;
mod tokens_reset;
mod verify_detects;
