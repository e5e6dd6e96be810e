//! Operator commands as library functions: resume-token show/reset (`tokens`), the gaps
//! lifecycle (`gaps`), snapshot / targeted re-sync and history-lost handling (`snapshot`), and the
//! Mongo-versus-Postgres comparison (`verify`). The CLI and the supervisor call these; nothing here
//! parses arguments or decides exit codes.

pub mod gaps;
pub mod snapshot;
pub mod tokens;
pub mod verify;

/// The control-table names of a configuration, as the sink and these commands use them.
pub fn control_names(target: &crate::config::TargetConfig) -> crate::sink::ControlNames {
    crate::sink::ControlNames {
        schema: target.schema.clone(),
        id_map: target.id_map.clone(),
        gaps: target.gaps.clone(),
        checkpoints: target.checkpoints_table(),
        audit: target.audit_table(),
    }
}
