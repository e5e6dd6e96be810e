//! Operator commands as library functions: resume-token show/reset (`tokens`), the gaps commands
//! (`gaps`), the flags of a targeted re-sync (`resync`; the copy itself is `crate::snapshot`) and
//! the Mongo-versus-Postgres comparison (`verify`). The CLI (`commands`) and the demo call these;
//! nothing here parses command lines, prints, or decides exit codes, and nothing here is part of
//! the running replicator except the reset listener it uses (`tokens::listen_for_resets`).
//! Control-table SQL lives in `sink`.

pub mod gaps;
pub mod resync;
pub mod tokens;
pub mod verify;
