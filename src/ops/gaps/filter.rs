//! The gaps lifecycle's vocabulary without I/O: gap statuses, list filters (collection, kind,
//! status, age) and the serde shape of a gap for `--json` output.

use serde::Serialize;

use crate::mapping::GapKind;

/// Where a gap stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GapStatus {
    /// Not applied yet; retried in the background.
    Open,
    /// The document applied (on retry, by a re-sync, or by an operator).
    Resolved,
    /// A newer event for the same document applied after the gap, so the gap no longer matters.
    Superseded,
    /// An operator decided the gap does not need repairing (the reason is stored).
    Ignored,
}

impl GapStatus {
    pub const ALL: [GapStatus; 4] = [
        GapStatus::Open,
        GapStatus::Resolved,
        GapStatus::Superseded,
        GapStatus::Ignored,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            GapStatus::Open => "open",
            GapStatus::Resolved => "resolved",
            GapStatus::Superseded => "superseded",
            GapStatus::Ignored => "ignored",
        }
    }

    pub fn parse(s: &str) -> Option<GapStatus> {
        GapStatus::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// Why a filter flag is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    #[error("unknown gap kind {0:?}")]
    Kind(String),
    #[error("unknown gap status {0:?} (open, resolved, superseded, ignored)")]
    Status(String),
    #[error("age {0:?} is not a duration like 30s, 15m, 2h or 7d")]
    Age(String),
}

/// Parses `30s`, `15m`, `2h`, `7d` into a duration.
pub fn parse_age(s: &str) -> Result<std::time::Duration, FilterError> {
    let bad = || FilterError::Age(s.to_string());
    let t = s.trim();
    let unit = t.chars().last().ok_or_else(bad)?;
    let n: u64 = t[..t.len() - unit.len_utf8()].parse().map_err(|_| bad())?;
    let secs = match unit {
        's' => n,
        'm' => n.checked_mul(60).ok_or_else(bad)?,
        'h' => n.checked_mul(3600).ok_or_else(bad)?,
        'd' => n.checked_mul(86_400).ok_or_else(bad)?,
        _ => return Err(bad()),
    };
    Ok(std::time::Duration::from_secs(secs))
}

/// Which gaps a list (or a bulk retry) covers. Empty fields match everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GapFilter {
    pub collection: Option<String>,
    pub kind: Option<GapKind>,
    pub status: Option<GapStatus>,
    /// Only gaps first seen at least this long ago.
    pub older_than: Option<std::time::Duration>,
    /// Only gaps first seen at most this long ago.
    pub newer_than: Option<std::time::Duration>,
    /// At most this many rows (newest first); None = no limit.
    pub limit: Option<i64>,
}

/// The raw flags of `mongo2pg gaps list` as the CLI parses them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GapListArgs {
    pub collection: Option<String>,
    pub kind: Option<String>,
    pub status: Option<String>,
    pub older_than: Option<String>,
    pub newer_than: Option<String>,
    pub limit: Option<i64>,
}

impl GapListArgs {
    pub fn into_filter(self) -> Result<GapFilter, FilterError> {
        let kind = match self.kind {
            Some(k) => Some(GapKind::parse(&k).ok_or(FilterError::Kind(k))?),
            None => None,
        };
        let status = match self.status {
            Some(s) => Some(GapStatus::parse(&s).ok_or(FilterError::Status(s))?),
            None => None,
        };
        Ok(GapFilter {
            collection: self.collection,
            kind,
            status,
            older_than: self.older_than.as_deref().map(parse_age).transpose()?,
            newer_than: self.newer_than.as_deref().map(parse_age).transpose()?,
            limit: self.limit,
        })
    }
}

/// One gap as operators see it (`gaps list --json` prints a JSON array of these).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GapView {
    pub id: i64,
    pub collection: String,
    /// Legacy id of the document (None for window gaps).
    pub document_key: Option<String>,
    pub kind: String,
    pub reason: String,
    pub status: String,
    pub attempts: i32,
    /// Cluster time of the event, packed (secs << 32 | inc).
    pub cluster_time: Option<i64>,
    /// Window bounds of `window_lost` gaps.
    pub window_start: Option<chrono::DateTime<chrono::Utc>>,
    pub window_end: Option<chrono::DateTime<chrono::Utc>>,
    pub first_seen: chrono::DateTime<chrono::Utc>,
    /// Last time the gap was recorded again or retried.
    pub last_seen: chrono::DateTime<chrono::Utc>,
    pub resolved_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Who or what closed the gap and why (operator reason, retry, re-sync, superseded).
    pub note: Option<String>,
    /// Operation of the event (insert, update, ..., snapshot).
    pub operation: Option<String>,
    /// The raw event or document as extended JSON text (only filled by `show`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn ages_parse_in_seconds_minutes_hours_and_days() {
        assert_eq!(parse_age("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_age("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_age("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_age("7d"), Ok(Duration::from_secs(604_800)));
        assert!(parse_age("7").is_err());
        assert!(parse_age("h").is_err());
        assert!(parse_age("5w").is_err());
    }

    #[test]
    fn list_flags_become_a_typed_filter() {
        let f = GapListArgs {
            collection: Some("payments".into()),
            kind: Some("fk_missing".into()),
            status: Some("open".into()),
            older_than: Some("1h".into()),
            ..Default::default()
        }
        .into_filter()
        .expect("valid");
        assert_eq!(f.kind, Some(GapKind::FkMissing));
        assert_eq!(f.status, Some(GapStatus::Open));
        assert_eq!(f.older_than, Some(Duration::from_secs(3600)));
        let bad = GapListArgs {
            status: Some("closed".into()),
            ..Default::default()
        };
        assert_eq!(bad.into_filter(), Err(FilterError::Status("closed".into())));
        let bad = GapListArgs {
            kind: Some("nope".into()),
            ..Default::default()
        };
        assert_eq!(bad.into_filter(), Err(FilterError::Kind("nope".into())));
    }

    #[test]
    fn statuses_round_trip_through_their_names() {
        for s in GapStatus::ALL {
            assert_eq!(GapStatus::parse(s.as_str()), Some(s));
        }
    }
}
