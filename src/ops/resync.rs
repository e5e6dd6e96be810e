//! The flags of `mongo2pg snapshot <collection>` turned into `SnapshotOptions`, without I/O:
//! an optional `_id` range (`--from-id`, `--to-id`; 24 hex digits mean an ObjectId) or a window on
//! a timestamp field (`--field updatedAt --since <RFC 3339> [--until <RFC 3339>]`).

use bson::{oid::ObjectId, Bson};

use crate::snapshot::SnapshotOptions;
use crate::source::snapshot::{SnapshotFilter, TimeWindow};

/// Raw flags as the CLI parses them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SnapshotArgs {
    pub collection: String,
    pub from_id: Option<String>,
    pub to_id: Option<String>,
    /// Dot-path of a date field for a time-window re-sync.
    pub field: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    pub page_size: Option<u32>,
    /// Gap ids this re-sync repairs (e.g. a `window_lost` gap), closed when it finishes.
    pub resolve_gaps: Vec<i64>,
}

/// Why the flags do not make a re-sync.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotArgsError {
    #[error("--field needs --since (and optionally --until), and --since/--until need --field")]
    WindowIncomplete,
    #[error("{flag} {value:?} is not an RFC 3339 instant")]
    BadTime { flag: &'static str, value: String },
    #[error("--since is after --until")]
    EmptyWindow,
    #[error("--page-size must be at least 1")]
    PageSize,
}

/// `_id` from a flag: 24 hex digits are an ObjectId, anything else a string id.
pub fn parse_id(s: &str) -> Bson {
    match ObjectId::parse_str(s) {
        Ok(oid) if s.len() == 24 => Bson::ObjectId(oid),
        _ => Bson::String(s.to_string()),
    }
}

fn parse_time(
    flag: &'static str,
    value: &str,
) -> Result<chrono::DateTime<chrono::Utc>, SnapshotArgsError> {
    chrono::DateTime::parse_from_rfc3339(value)
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|_| SnapshotArgsError::BadTime {
            flag,
            value: value.to_string(),
        })
}

impl SnapshotArgs {
    /// `now` ends a window given without `--until`; `default_page_size` comes from the config.
    pub fn into_options(
        self,
        default_page_size: u32,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<SnapshotOptions, SnapshotArgsError> {
        let time_window = match (self.field, self.since, self.until) {
            (None, None, None) => None,
            (Some(field), Some(since), until) => {
                let from = parse_time("--since", &since)?;
                let to = match until {
                    Some(u) => parse_time("--until", &u)?,
                    None => now,
                };
                if from > to {
                    return Err(SnapshotArgsError::EmptyWindow);
                }
                Some(TimeWindow { field, from, to })
            }
            _ => return Err(SnapshotArgsError::WindowIncomplete),
        };
        let page_size = self.page_size.unwrap_or(default_page_size);
        if page_size == 0 {
            return Err(SnapshotArgsError::PageSize);
        }
        Ok(SnapshotOptions {
            page_size,
            page_bytes: crate::config::DEFAULT_SNAPSHOT_PAGE_BYTES,
            filter: SnapshotFilter {
                id_from: self.from_id.as_deref().map(parse_id),
                id_to: self.to_id.as_deref().map(parse_id),
                time_window,
            },
            max_pages: None,
            resolve_gaps: self.resolve_gaps,
            stream: None,
            writers: 1,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> chrono::DateTime<chrono::Utc> {
        chrono::DateTime::from_timestamp(1_700_000_600, 0).expect("time")
    }

    #[test]
    fn id_range_flags_become_typed_bounds() {
        let o = SnapshotArgs {
            collection: "payments".into(),
            from_id: Some("650000000000000000000001".into()),
            to_id: Some("tpl-9".into()),
            ..Default::default()
        }
        .into_options(100, now())
        .expect("valid");
        assert_eq!(o.page_size, 100);
        assert!(matches!(o.filter.id_from, Some(Bson::ObjectId(_))));
        assert_eq!(o.filter.id_to, Some(Bson::String("tpl-9".into())));
        assert!(o.filter.time_window.is_none());
    }

    #[test]
    fn a_time_window_needs_its_field_and_ends_now_by_default() {
        let o = SnapshotArgs {
            field: Some("updatedAt".into()),
            since: Some("2023-11-14T22:13:20Z".into()),
            ..Default::default()
        }
        .into_options(10, now())
        .expect("valid");
        let w = o.filter.time_window.expect("window");
        assert_eq!(
            (w.field.as_str(), w.from.timestamp(), w.to),
            ("updatedAt", 1_700_000_000, now())
        );
        let no_field = SnapshotArgs {
            since: Some("2023-11-14T22:13:20Z".into()),
            ..Default::default()
        };
        assert_eq!(
            no_field.into_options(10, now()),
            Err(SnapshotArgsError::WindowIncomplete)
        );
        let reversed = SnapshotArgs {
            field: Some("updatedAt".into()),
            since: Some("2023-11-15T00:00:00Z".into()),
            until: Some("2023-11-14T00:00:00Z".into()),
            ..Default::default()
        };
        assert_eq!(
            reversed.into_options(10, now()),
            Err(SnapshotArgsError::EmptyWindow)
        );
        let zero = SnapshotArgs {
            page_size: Some(0),
            ..Default::default()
        };
        assert_eq!(
            zero.into_options(10, now()),
            Err(SnapshotArgsError::PageSize)
        );
    }
}
