//! The gaps commands: `gaps list|show|retry|resolve|ignore` as library functions. Listing and
//! status changes go through `sink::gaps` (the table's only owner); a retry runs the gap-retry
//! engine (`crate::gap_retry`), the same one the replicator runs in the background. Nothing here
//! parses command lines or prints.

pub mod filter;

pub use crate::gap_retry::{
    retry_gap, retry_open_gaps, RetryContext, RetryOptions, RetryOutcome, RetryReport,
};
pub use crate::sink::gaps::query::{list, show};
pub use crate::sink::gaps::{GapFilter, GapStatus, GapView};
pub use filter::{parse_age, FilterError, GapListArgs};

use crate::sink::gaps::lifecycle;

/// Why a gaps command failed.
#[derive(Debug, thiserror::Error)]
pub enum GapsError {
    #[error(transparent)]
    Retry(#[from] crate::gap_retry::GapRetryError),
    #[error(transparent)]
    Sink(#[from] crate::sink::SinkError),
    #[error("gap {0} does not exist")]
    NotFound(i64),
    #[error("gap {id} is {status}, not open")]
    NotOpen { id: i64, status: String },
    #[error("a reason is required to ignore a gap")]
    MissingReason,
}

async fn close_checked(
    pg: &impl tokio_postgres::GenericClient,
    gaps_table: &str,
    id: i64,
    status: GapStatus,
    note: &str,
) -> Result<GapView, GapsError> {
    if !lifecycle::close(pg, gaps_table, id, status, note).await? {
        return match show(pg, gaps_table, id).await? {
            None => Err(GapsError::NotFound(id)),
            Some(g) => Err(GapsError::NotOpen {
                id,
                status: g.status,
            }),
        };
    }
    show(pg, gaps_table, id)
        .await?
        .ok_or(GapsError::NotFound(id))
}

/// `gaps resolve <id>`: an operator states the gap is repaired (e.g. fixed by hand).
pub async fn resolve(
    pg: &impl tokio_postgres::GenericClient,
    gaps_table: &str,
    id: i64,
    actor: &str,
    note: Option<&str>,
) -> Result<GapView, GapsError> {
    let note = match note.map(str::trim).filter(|n| !n.is_empty()) {
        Some(n) => format!("resolved by {actor}: {n}"),
        None => format!("resolved by {actor}"),
    };
    close_checked(pg, gaps_table, id, GapStatus::Resolved, &note).await
}

/// `gaps ignore <id> --reason`: an operator decides the gap needs no repair.
pub async fn ignore(
    pg: &impl tokio_postgres::GenericClient,
    gaps_table: &str,
    id: i64,
    actor: &str,
    reason: &str,
) -> Result<GapView, GapsError> {
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(GapsError::MissingReason);
    }
    close_checked(
        pg,
        gaps_table,
        id,
        GapStatus::Ignored,
        &format!("ignored by {actor}: {reason}"),
    )
    .await
}

/// `gaps retry <id>`: retries one gap now, whatever its backoff.
pub async fn retry_one(ctx: &mut RetryContext<'_>, id: i64) -> Result<RetryOutcome, GapsError> {
    let gap = show(&*ctx.pg, &ctx.names.gaps, id)
        .await?
        .ok_or(GapsError::NotFound(id))?;
    Ok(retry_gap(ctx, &gap).await?)
}

/// `gaps retry --collection/--kind/...`: retries every open gap matching `filter` now.
pub async fn retry_matching(
    ctx: &mut RetryContext<'_>,
    filter: &GapFilter,
) -> Result<RetryReport, GapsError> {
    let filter = GapFilter {
        status: Some(GapStatus::Open),
        ..filter.clone()
    };
    let mut report = RetryReport::default();
    for gap in list(&*ctx.pg, &ctx.names.gaps, &filter).await? {
        let outcome = retry_gap(ctx, &gap).await?;
        report.count(&outcome);
    }
    Ok(report)
}

/// A compact table of gaps for terminals (`--json` prints `GapView`s instead).
pub fn render_table(gaps: &[GapView]) -> String {
    use std::fmt::Write as _;
    let mut out = format!(
        "{:>8}  {:<20} {:<18} {:<10} {:>8}  {:<25} {}\n",
        "id", "collection", "kind", "status", "attempts", "first seen", "document / reason"
    );
    for g in gaps {
        let what = match (&g.document_key, &g.window_start, &g.window_end) {
            (Some(k), _, _) => k.clone(),
            (None, Some(a), Some(b)) => format!("window {} .. {}", a.to_rfc3339(), b.to_rfc3339()),
            _ => "-".to_string(),
        };
        let reason: String = g.reason.chars().take(100).collect();
        let _ = writeln!(
            out,
            "{:>8}  {:<20} {:<18} {:<10} {:>8}  {:<25} {} {}",
            g.id,
            g.collection,
            g.kind,
            g.status,
            g.attempts,
            g.first_seen.format("%Y-%m-%d %H:%M:%S"),
            what,
            reason
        );
    }
    out
}
