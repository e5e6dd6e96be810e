//! The flags of `mongo2pg gaps list|retry` turned into a `GapFilter` (collection, kind, status,
//! age), without I/O. The filter, the statuses and the gap rows themselves are `sink::gaps`'.

use crate::mapping::GapKind;
use crate::sink::gaps::{GapFilter, GapStatus};

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
}
