//! What the demo prints while it runs and at the end: a compact per-collection status line (rows
//! in Postgres, open gaps, the largest lag), the catch-up wait (until every collection's
//! checkpoint covers its last write), and the gaps summary.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use crate::config::CompiledMapping;
use crate::event::ClusterTime;
use crate::ops::tokens;
use crate::sink::gaps::query::open_counts;
use crate::sink::name::quote_qualified;
use crate::sink::{checkpoint, ControlNames, SinkError};

/// Rows per mapped table, open gaps per collection and checkpoint positions per stream.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Status {
    pub rows: BTreeMap<String, i64>,
    pub open_gaps: BTreeMap<String, i64>,
    pub positions: BTreeMap<String, ClusterTime>,
}

/// Reads the current status from Postgres.
pub async fn read(
    pg: &tokio_postgres::Client,
    mapping: &CompiledMapping,
    names: &ControlNames,
) -> Result<Status, SinkError> {
    let failed = |e| SinkError::pg("reading the replication status", e);
    let mut status = Status::default();
    for (collection, rules) in &mapping.collections {
        let row = pg
            .query_one(
                &format!("select count(*) from {}", quote_qualified(&rules.table)?),
                &[],
            )
            .await
            .map_err(failed)?;
        status.rows.insert(collection.clone(), row.get(0));
    }
    for (collection, _kind, n) in open_counts(pg, &names.gaps).await? {
        *status.open_gaps.entry(collection).or_default() += n;
    }
    let mut streams = BTreeMap::new();
    for c in checkpoint::load_all(pg, &names.checkpoints).await? {
        if let Some(t) = c.cluster_time {
            streams.insert(c.stream, t);
        }
    }
    // A collection stands where its stream (its own, or its group's) stands.
    for collection in mapping.collections.keys() {
        if let Some(t) = streams.get(&mapping.config.stream_of(collection)) {
            status.positions.insert(collection.clone(), *t);
        }
    }
    Ok(status)
}

/// Seconds each collection's checkpoint is behind its last write (0 when caught up).
pub fn lags(status: &Status, last_write: &BTreeMap<String, ClusterTime>) -> BTreeMap<String, u32> {
    last_write
        .iter()
        .map(|(c, w)| {
            let lag = match status.positions.get(c) {
                Some(p) if p >= w => 0,
                Some(p) => w.seconds().saturating_sub(p.seconds()).max(1),
                None => w.seconds(),
            };
            (c.clone(), lag)
        })
        .collect()
}

/// True when every collection's checkpoint covers its last write.
pub fn caught_up(status: &Status, last_write: &BTreeMap<String, ClusterTime>) -> bool {
    last_write
        .iter()
        .all(|(c, w)| status.positions.get(c).is_some_and(|p| p >= w))
}

/// One compact line: elapsed time, writes, the largest lag, then per collection its rows in
/// Postgres, its open gaps and how far its checkpoint is behind its last write (when it is).
pub fn render_line(
    elapsed: Duration,
    writes: u64,
    status: &Status,
    last_write: &BTreeMap<String, ClusterTime>,
) -> String {
    let per_collection = lags(status, last_write);
    let lag = per_collection.values().copied().max().unwrap_or(0);
    let mut out = format!(
        "[{:>4}s] writes {:>5} | lag {:>2}s |",
        elapsed.as_secs(),
        writes,
        lag
    );
    for (collection, rows) in &status.rows {
        let _ = write!(out, " {collection} {rows}");
        if let Some(g) = status.open_gaps.get(collection) {
            let _ = write!(out, " ({g} gap{})", if *g == 1 { "" } else { "s" });
        }
        if let Some(l) = per_collection.get(collection).filter(|l| **l > 0) {
            let _ = write!(out, " [{l}s behind]");
        }
    }
    out
}

/// Polls until every collection's checkpoint covers its last write, or `timeout` passes.
pub async fn wait_caught_up(
    pg: &tokio_postgres::Client,
    mapping: &CompiledMapping,
    names: &ControlNames,
    last_write: &BTreeMap<String, ClusterTime>,
    timeout: Duration,
) -> Result<(Status, Duration), String> {
    let started = Instant::now();
    loop {
        let status = read(pg, mapping, names)
            .await
            .map_err(|e| format!("reading the replication status failed: {e}"))?;
        if caught_up(&status, last_write) {
            return Ok((status, started.elapsed()));
        }
        if started.elapsed() > timeout {
            let behind: Vec<String> = lags(&status, last_write)
                .into_iter()
                .filter(|(_, lag)| *lag > 0)
                .map(|(c, _)| c)
                .collect();
            return Err(format!(
                "the replicator did not catch up within {}s; behind: {}",
                timeout.as_secs(),
                behind.join(", ")
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The gaps recorded during the demo, one line per gap.
pub fn render_gaps(gaps: &[crate::sink::gaps::GapView]) -> String {
    let mut out = String::new();
    for g in gaps {
        let reason: String = g.reason.chars().take(90).collect();
        let _ = writeln!(
            out,
            "  gap {:>3} {:<20} {:<18} {:<8} {}",
            g.id, g.collection, g.kind, g.status, reason
        );
    }
    out
}

/// `Timestamp(secs, inc)` of the newest position, for the final line.
pub fn newest_position(status: &Status) -> Option<String> {
    status
        .positions
        .values()
        .max()
        .map(|t| tokens::format_cluster_time(*t))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(positions: &[(&str, u32)]) -> Status {
        Status {
            positions: positions
                .iter()
                .map(|(c, s)| (c.to_string(), ClusterTime::new(*s, 1)))
                .collect(),
            ..Status::default()
        }
    }

    #[test]
    fn caught_up_means_every_checkpoint_covers_its_last_write() {
        let writes: BTreeMap<String, ClusterTime> = [
            ("users".to_string(), ClusterTime::new(100, 1)),
            ("payments".to_string(), ClusterTime::new(105, 1)),
        ]
        .into();
        assert!(caught_up(
            &status(&[("users", 100), ("payments", 106)]),
            &writes
        ));
        assert!(!caught_up(
            &status(&[("users", 100), ("payments", 104)]),
            &writes
        ));
        assert!(!caught_up(&status(&[("users", 100)]), &writes));
        let lag = lags(&status(&[("users", 100), ("payments", 102)]), &writes);
        assert_eq!(lag.get("payments"), Some(&3));
        assert_eq!(lag.get("users"), Some(&0));
    }

    #[test]
    fn the_status_line_names_rows_gaps_and_lag_per_collection() {
        let mut s = status(&[("users", 100), ("payments", 102)]);
        s.rows = [("users".to_string(), 41), ("payments".to_string(), 30)].into();
        s.open_gaps = [("payments".to_string(), 1)].into();
        let writes: BTreeMap<String, ClusterTime> = [
            ("users".to_string(), ClusterTime::new(100, 1)),
            ("payments".to_string(), ClusterTime::new(105, 1)),
        ]
        .into();
        assert_eq!(
            render_line(Duration::from_secs(4), 250, &s, &writes),
            "[   4s] writes   250 | lag  3s | payments 30 (1 gap) [3s behind] users 41"
        );
    }
}
