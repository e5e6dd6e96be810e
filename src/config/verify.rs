//! The `[verify]` section: continuous verification inside `run` (off when the section is
//! absent) — how often a round runs, how many documents per collection it samples by key, and
//! whether it also compares per-collection counts and exact money sums. Also the one parser of
//! human durations (`500ms`, `30s`, `10m`, `2h`) used by this section and the command line.

use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// Default time between two verification rounds.
pub const DEFAULT_VERIFY_INTERVAL: Duration = Duration::from_secs(600);
/// Default number of documents sampled per collection and round.
pub const DEFAULT_VERIFY_SAMPLE: usize = 200;
/// Largest sample per collection and round.
pub const MAX_VERIFY_SAMPLE: usize = 10_000;
/// Shortest interval between rounds.
pub const MIN_VERIFY_INTERVAL: Duration = Duration::from_secs(1);

/// Continuous verification settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VerifyConfig {
    /// Time between the start of two rounds (`"10m"`, `"30s"`, ...).
    #[serde(deserialize_with = "duration")]
    pub interval: Duration,
    /// Documents per collection and round, read by `_id` from MongoDB and compared with the rows
    /// of the same keys in Postgres.
    pub sample: usize,
    /// Compare per-collection document and row counts.
    pub counts: bool,
    /// Compare exact sums of every money (`numeric`) column.
    pub sums: bool,
}

impl Default for VerifyConfig {
    fn default() -> Self {
        VerifyConfig {
            interval: DEFAULT_VERIFY_INTERVAL,
            sample: DEFAULT_VERIFY_SAMPLE,
            counts: true,
            sums: true,
        }
    }
}

impl VerifyConfig {
    /// The broken rules of this section as (field, rule).
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if self.interval < MIN_VERIFY_INTERVAL {
            out.push(("interval", "must be at least 1s".to_string()));
        }
        if self.sample == 0 || self.sample > MAX_VERIFY_SAMPLE {
            out.push((
                "sample",
                format!("must be between 1 and {MAX_VERIFY_SAMPLE}"),
            ));
        }
        out
    }
}

fn duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(deserializer)?;
    parse_duration(&text).map_err(serde::de::Error::custom)
}

/// Parses `500ms`, `30s`, `5m`, `2h` or a bare number of seconds.
pub fn parse_duration(input: &str) -> Result<Duration, String> {
    let s = input.trim();
    let bad = || format!("{input:?} is not a duration like 500ms, 30s, 5m or 2h");
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let millis = match unit.trim() {
        "ms" => Some(n),
        "" | "s" => n.checked_mul(1_000),
        "m" => n.checked_mul(60_000),
        "h" => n.checked_mul(3_600_000),
        _ => None,
    };
    millis.map(Duration::from_millis).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_section_parses_with_defaults_and_durations() {
        let c: VerifyConfig = toml::from_str("interval = \"30s\"\nsample = 50").expect("parses");
        assert_eq!(c.interval, Duration::from_secs(30));
        assert_eq!(c.sample, 50);
        assert!(c.counts && c.sums);
        assert!(c.problems().is_empty());
        assert!(toml::from_str::<VerifyConfig>("interval = \"often\"").is_err());
        assert!(toml::from_str::<VerifyConfig>("samples = 5").is_err());
        let bad: VerifyConfig = toml::from_str("interval = \"100ms\"\nsample = 0").expect("parses");
        let fields: Vec<&str> = bad.problems().iter().map(|(f, _)| *f).collect();
        assert_eq!(fields, ["interval", "sample"]);
    }
}
