//! What an operator asks a token reset to do, parsed and checked without any I/O: exactly one of
//! `--to-token <json>`, `--to-time <RFC 3339 | Timestamp(secs, inc)>`, `--to-now`, `--resnapshot`,
//! plus a mandatory reason and the acting operator.

use bson::Document;

use crate::event::ClusterTime;

/// The raw flags of `mongo2pg tokens reset <collection>`, as the CLI parses them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResetArgs {
    pub collection: String,
    /// A resume token as JSON (`{"_data": "82..."}`, relaxed extended JSON accepted).
    pub to_token: Option<String>,
    /// An RFC 3339 instant or `Timestamp(secs, inc)`.
    pub to_time: Option<String>,
    pub to_now: bool,
    pub resnapshot: bool,
    /// With `--to-now`: do not record the skipped window as a gap.
    pub no_gap: bool,
    /// Show what would change and change nothing.
    pub dry_run: bool,
    /// Why the reset is done (required, stored in the audit table).
    pub reason: Option<String>,
    /// Who does it; defaults to `$USER`.
    pub actor: Option<String>,
}

/// Where the stream is moved to.
#[derive(Debug, Clone, PartialEq)]
pub enum ResetTarget {
    /// Resume strictly after this token.
    Token(Document),
    /// Restart at this cluster time (events with cluster time >= it are replayed).
    Time(ClusterTime),
    /// Skip to the current end of the stream.
    Now,
    /// Forget the position and copy the collection again, then stream from the copy's start.
    Resnapshot,
}

impl ResetTarget {
    /// Short name for logs and the audit table.
    pub fn label(&self) -> &'static str {
        match self {
            ResetTarget::Token(_) => "token",
            ResetTarget::Time(_) => "time",
            ResetTarget::Now => "now",
            ResetTarget::Resnapshot => "resnapshot",
        }
    }
}

/// A checked reset request.
#[derive(Debug, Clone, PartialEq)]
pub struct ResetRequest {
    /// The stream moved: a collection's own stream, or a stream group.
    pub collection: String,
    /// A stream group's collections (its position is database-wide; a skipped window becomes
    /// one gap per member). None: the collection's own stream.
    pub group: Option<Vec<String>>,
    pub target: ResetTarget,
    pub record_gap: bool,
    pub dry_run: bool,
    pub reason: String,
    pub actor: String,
}

/// Why the flags do not make a reset.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResetArgsError {
    #[error("give exactly one of --to-token, --to-time, --to-now, --resnapshot (got {0})")]
    TargetCount(usize),
    #[error("--reason is required and must not be empty")]
    MissingReason,
    #[error("--to-token is not a resume token: {0}")]
    BadToken(String),
    #[error("--to-time {0:?} is neither RFC 3339 nor Timestamp(secs, inc)")]
    BadTime(String),
    #[error("--no-gap only applies to --to-now")]
    NoGapWithoutNow,
    #[error("no actor: pass --actor or set USER")]
    MissingActor,
}

/// Parses `Timestamp(secs, inc)` (as the mongo shell prints it) or an RFC 3339 instant (increment
/// 0, so every event of that second is replayed).
pub fn parse_cluster_time(input: &str) -> Result<ClusterTime, ResetArgsError> {
    let bad = || ResetArgsError::BadTime(input.to_string());
    let s = input.trim();
    if let Some(inner) = s
        .strip_prefix("Timestamp(")
        .and_then(|r| r.strip_suffix(')'))
    {
        let (secs, inc) = inner.split_once(',').ok_or_else(bad)?;
        let secs: u32 = secs.trim().parse().map_err(|_| bad())?;
        let inc: u32 = inc.trim().parse().map_err(|_| bad())?;
        return Ok(ClusterTime::new(secs, inc));
    }
    let t = chrono::DateTime::parse_from_rfc3339(s).map_err(|_| bad())?;
    let secs = u32::try_from(t.timestamp()).map_err(|_| bad())?;
    Ok(ClusterTime::new(secs, 0))
}

/// Parses a resume token given as JSON: a document with a `_data` string.
pub fn parse_token(input: &str) -> Result<Document, ResetArgsError> {
    let value: serde_json::Value =
        serde_json::from_str(input).map_err(|e| ResetArgsError::BadToken(e.to_string()))?;
    let bson = bson::Bson::try_from(value).map_err(|e| ResetArgsError::BadToken(e.to_string()))?;
    match bson {
        bson::Bson::Document(d) if d.get_str("_data").is_ok() => Ok(d),
        _ => Err(ResetArgsError::BadToken(
            "expected an object with a string _data".into(),
        )),
    }
}

impl ResetArgs {
    /// Checks the flags; `env_user` is the value of `$USER` (passed in so this stays pure).
    pub fn into_request(self, env_user: Option<String>) -> Result<ResetRequest, ResetArgsError> {
        let count = [
            self.to_token.is_some(),
            self.to_time.is_some(),
            self.to_now,
            self.resnapshot,
        ]
        .iter()
        .filter(|b| **b)
        .count();
        if count != 1 {
            return Err(ResetArgsError::TargetCount(count));
        }
        if self.no_gap && !self.to_now {
            return Err(ResetArgsError::NoGapWithoutNow);
        }
        let reason = self
            .reason
            .map(|r| r.trim().to_string())
            .filter(|r| !r.is_empty());
        let reason = reason.ok_or(ResetArgsError::MissingReason)?;
        let actor = self
            .actor
            .or(env_user)
            .filter(|a| !a.trim().is_empty())
            .ok_or(ResetArgsError::MissingActor)?;
        let target = if let Some(t) = &self.to_token {
            ResetTarget::Token(parse_token(t)?)
        } else if let Some(t) = &self.to_time {
            ResetTarget::Time(parse_cluster_time(t)?)
        } else if self.to_now {
            ResetTarget::Now
        } else {
            ResetTarget::Resnapshot
        };
        Ok(ResetRequest {
            group: None,
            collection: self.collection,
            target,
            record_gap: !self.no_gap,
            dry_run: self.dry_run,
            reason,
            actor,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> ResetArgs {
        ResetArgs {
            collection: "payments".into(),
            reason: Some("bad deploy".into()),
            ..Default::default()
        }
    }

    #[test]
    fn timestamp_and_rfc3339_forms_parse_to_cluster_times() {
        assert_eq!(
            parse_cluster_time("Timestamp(1700000000, 7)"),
            Ok(ClusterTime::new(1_700_000_000, 7))
        );
        assert_eq!(
            parse_cluster_time("2023-11-14T22:13:20Z"),
            Ok(ClusterTime::new(1_700_000_000, 0))
        );
        assert_eq!(
            parse_cluster_time("2023-11-14T23:13:20+01:00"),
            Ok(ClusterTime::new(1_700_000_000, 0))
        );
        assert!(parse_cluster_time("yesterday").is_err());
        assert!(parse_cluster_time("Timestamp(1, x)").is_err());
    }

    #[test]
    fn exactly_one_target_is_required() {
        assert_eq!(
            args().into_request(Some("ops".into())),
            Err(ResetArgsError::TargetCount(0))
        );
        let two = ResetArgs {
            to_now: true,
            resnapshot: true,
            ..args()
        };
        assert_eq!(
            two.into_request(Some("ops".into())),
            Err(ResetArgsError::TargetCount(2))
        );
    }

    #[test]
    fn reason_is_required_and_actor_defaults_to_user() {
        let no_reason = ResetArgs {
            to_now: true,
            reason: Some("  ".into()),
            ..args()
        };
        assert_eq!(
            no_reason.into_request(Some("ops".into())),
            Err(ResetArgsError::MissingReason)
        );
        let ok = ResetArgs {
            to_now: true,
            ..args()
        }
        .into_request(Some("alice".into()))
        .expect("valid");
        assert_eq!(ok.actor, "alice");
        assert_eq!(ok.target, ResetTarget::Now);
        assert!(ok.record_gap);
        let explicit = ResetArgs {
            to_now: true,
            actor: Some("bob".into()),
            ..args()
        };
        assert_eq!(
            explicit
                .into_request(Some("alice".into()))
                .expect("valid")
                .actor,
            "bob"
        );
        let nobody = ResetArgs {
            to_now: true,
            ..args()
        };
        assert_eq!(nobody.into_request(None), Err(ResetArgsError::MissingActor));
    }

    #[test]
    fn token_json_must_carry_data() {
        let t = ResetArgs {
            to_token: Some(r#"{"_data":"8265"}"#.into()),
            ..args()
        };
        let req = t.into_request(Some("ops".into())).expect("valid");
        assert_eq!(req.target, ResetTarget::Token(bson::doc! {"_data": "8265"}));
        let bad = ResetArgs {
            to_token: Some(r#"{"x":1}"#.into()),
            ..args()
        };
        assert!(matches!(
            bad.into_request(Some("ops".into())),
            Err(ResetArgsError::BadToken(_))
        ));
    }

    #[test]
    fn no_gap_only_goes_with_to_now() {
        let t = ResetArgs {
            to_time: Some("Timestamp(5, 1)".into()),
            no_gap: true,
            ..args()
        };
        assert_eq!(
            t.into_request(Some("ops".into())),
            Err(ResetArgsError::NoGapWithoutNow)
        );
        let n = ResetArgs {
            to_now: true,
            no_gap: true,
            ..args()
        }
        .into_request(Some("ops".into()))
        .expect("valid");
        assert!(!n.record_gap);
    }
}
