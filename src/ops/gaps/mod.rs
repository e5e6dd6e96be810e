//! The gaps lifecycle. A gap is `open` until it is `resolved` (its document applied: on a retry,
//! by a re-sync, or an operator says so), `superseded` (a newer event for the same document
//! applied after it) or `ignored` (an operator decided, with a reason). Operators drive it with
//! `gaps list|show|retry|resolve|ignore`; the supervisor runs `retry_open_gaps` periodically so
//! `fk_missing` gaps resolve themselves once their parent row arrives.

pub mod filter;
pub mod retry;
pub mod store;

pub use filter::{parse_age, FilterError, GapFilter, GapListArgs, GapStatus, GapView};
pub use retry::{
    retry_gap, retry_open_gaps, RetryContext, RetryOptions, RetryOutcome, RetryReport,
};
pub use store::{list, show, ResyncScope};

/// Why a gaps command failed.
#[derive(Debug, thiserror::Error)]
pub enum GapsError {
    #[error("postgres error while {context}: {source}")]
    Postgres {
        context: &'static str,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("mongodb error while re-reading {collection}/{key}: {source}")]
    Mongo {
        collection: String,
        key: String,
        #[source]
        source: Box<mongodb::error::Error>,
    },
    #[error("applying the re-read document failed: {0}")]
    Sink(#[from] crate::sink::SinkError),
    #[error(transparent)]
    InvalidName(#[from] crate::sink::name::InvalidName),
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
    if !store::close(pg, gaps_table, id, status, note).await? {
        return match store::show(pg, gaps_table, id).await? {
            None => Err(GapsError::NotFound(id)),
            Some(g) => Err(GapsError::NotOpen {
                id,
                status: g.status,
            }),
        };
    }
    store::show(pg, gaps_table, id)
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
    let gap = store::show(&*ctx.pg, &ctx.names.gaps, id)
        .await?
        .ok_or(GapsError::NotFound(id))?;
    retry_gap(ctx, &gap).await
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
    for gap in store::list(&*ctx.pg, &ctx.names.gaps, &filter).await? {
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
