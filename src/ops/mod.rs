//! Operator commands as library functions: resume-token show/reset (`tokens`), the gaps
//! lifecycle (`gaps`), snapshot / targeted re-sync and history-lost handling (`snapshot`), and the
//! Mongo-versus-Postgres comparison (`verify`). The CLI and the supervisor call these; nothing here
//! parses command lines, prints, or decides exit codes.
//!
//! How the running process uses them (the stream name is the collection name):
//! - before opening a collection's stream: `snapshot::prepare_stream` (copies first when the mode
//!   and the stored state say so, resuming an interrupted copy), then open at
//!   `tokens::stored_start` (token, or the time an operator reset to; None = no position);
//!   `snapshot::snapshot_all` does the copies for every collection in dependency order;
//! - when resuming fails with ChangeStreamHistoryLost: `snapshot::handle_history_lost` records the
//!   `window_lost` gap, then re-copies (`when_needed`) or returns the operator command (the
//!   stream stays stopped, no retry);
//! - periodically: `gaps::retry_open_gaps` (backoff per gap is built in);
//! - `tokens::listen_for_resets` yields the streams an operator reset (`NOTIFY
//!   mongo2pg_token_reset`); restart those from their stored position. Without it the sink's
//!   epoch check still refuses the old position at the next batch.

pub mod gaps;
pub mod snapshot;
pub mod tokens;
pub mod verify;
