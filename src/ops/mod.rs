//! Operator commands as library functions: resume-token show/reset (`tokens`), the gaps
//! lifecycle (`gaps`), snapshot / targeted re-sync and history-lost handling (`snapshot`), and the
//! Mongo-versus-Postgres comparison (`verify`). The CLI and the supervisor call these; nothing here
//! parses arguments or decides exit codes.

pub mod gaps;
pub mod snapshot;
pub mod tokens;
pub mod verify;
