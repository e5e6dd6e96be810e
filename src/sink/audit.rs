//! The token-reset audit table: one row per operator reset (who moved which stream, from where,
//! to where, why), written in the reset's transaction. Nothing else writes it; reading it is left
//! to operators' SQL.

use tokio_postgres::GenericClient;

use crate::sink::error::SinkError;
use crate::sink::name::quote_qualified;

/// One audit row.
#[derive(Debug, Clone, PartialEq)]
pub struct ResetAudit<'a> {
    pub stream: &'a str,
    pub actor: &'a str,
    /// Positions as shown to operators (token as relaxed extended JSON text, packed cluster time).
    pub from_token: Option<String>,
    pub from_time: Option<crate::event::ClusterTime>,
    pub to_token: Option<String>,
    pub to_time: Option<crate::event::ClusterTime>,
    pub reason: &'a str,
    /// What the reset targeted (`token`, `time`, `now`, `resnapshot`).
    pub mode: &'a str,
}

/// Writes the audit row of a reset inside the caller's transaction; returns its id.
pub async fn record_reset<C: GenericClient>(
    tx: &C,
    audit_table: &str,
    row: &ResetAudit<'_>,
) -> Result<i64, SinkError> {
    let sql = format!(
        "insert into {} (stream, actor, from_token, from_time, to_token, to_time, reason, mode)
         values ($1, $2, $3, $4, $5, $6, $7, $8) returning id",
        quote_qualified(audit_table)?
    );
    let inserted = tx
        .query_one(
            &sql,
            &[
                &row.stream,
                &row.actor,
                &row.from_token,
                &row.from_time.map(crate::event::ClusterTime::to_sql),
                &row.to_token,
                &row.to_time.map(crate::event::ClusterTime::to_sql),
                &row.reason,
                &row.mode,
            ],
        )
        .await
        .map_err(|e| SinkError::pg("writing the audit row", e))?;
    Ok(inserted.get(0))
}
