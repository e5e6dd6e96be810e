//! Instants for `timestamptz` columns: a BSON date's milliseconds, checked against the range
//! Postgres accepts (4714-11-24 BC to 294276-12-31 AD), and their exact Postgres input text.
//!
//! chrono cannot represent years after 262142, and RFC 3339 text (`+10000-01-01T..`) is read by
//! Postgres as a time-zone displacement, so the calendar arithmetic is done here on plain
//! integers. Pure: no clock, no I/O.

/// An instant Postgres `timestamptz` can hold, in milliseconds since the Unix epoch (BSON dates
/// have millisecond precision).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PgTimestamp {
    millis: i64,
}

/// Earliest instant Postgres `timestamptz` accepts: 4714-11-24 00:00:00 UTC BC (proleptic
/// Gregorian year -4713), in milliseconds since the Unix epoch.
pub const PG_TIMESTAMP_MIN_MILLIS: i64 = -210_866_803_200_000;
/// Latest millisecond Postgres `timestamptz` accepts: 294276-12-31 23:59:59.999 UTC.
pub const PG_TIMESTAMP_MAX_MILLIS: i64 = 9_224_318_015_999_999;

const MILLIS_PER_DAY: i64 = 86_400_000;

impl PgTimestamp {
    /// The instant, when Postgres can store it.
    pub fn from_millis(millis: i64) -> Option<Self> {
        (PG_TIMESTAMP_MIN_MILLIS..=PG_TIMESTAMP_MAX_MILLIS)
            .contains(&millis)
            .then_some(PgTimestamp { millis })
    }

    pub fn millis(self) -> i64 {
        self.millis
    }

    /// Microseconds since the epoch, as Postgres' `extract(epoch ...) * 1e6` spells it (decimal
    /// text, because the far end of the range does not fit an `i64` of microseconds).
    pub fn micros_text(self) -> String {
        if self.millis == 0 {
            "0".to_string()
        } else {
            format!("{}000", self.millis)
        }
    }

    /// Calendar fields in the proleptic Gregorian calendar, astronomical year numbering (year 0
    /// is 1 BC): (year, month, day, hour, minute, second, millisecond).
    pub fn fields(self) -> (i64, u32, u32, u32, u32, u32, u32) {
        let days = self.millis.div_euclid(MILLIS_PER_DAY);
        let in_day = self.millis.rem_euclid(MILLIS_PER_DAY);
        let (year, month, day) = civil_from_days(days);
        let secs = in_day / 1000;
        // All of these are below 86,400,000 and fit u32.
        let as_u32 = |v: i64| u32::try_from(v).unwrap_or(0);
        (
            year,
            month,
            day,
            as_u32(secs / 3600),
            as_u32(secs / 60 % 60),
            as_u32(secs % 60),
            as_u32(in_day % 1000),
        )
    }

    /// The text Postgres parses back into exactly this instant over the whole accepted range:
    /// `YYYY-MM-DD HH:MM:SS.fff+00`, with ` BC` for years up to 0 (year 0 is 1 BC) and more than
    /// four year digits after 9999.
    pub fn to_pg_text(self) -> String {
        let (year, month, day, hour, minute, second, milli) = self.fields();
        let (year, era) = if year <= 0 {
            (1 - year, " BC")
        } else {
            (year, "")
        };
        format!(
            "{year:04}-{month:02}-{day:02} {hour:02}:{minute:02}:{second:02}.{milli:03}+00{era}"
        )
    }
}

impl From<chrono::DateTime<chrono::Utc>> for PgTimestamp {
    /// Truncates to milliseconds; every instant chrono can hold is inside Postgres' range except
    /// before 4714-11-24 BC, which is clamped (only tests build values this way).
    fn from(t: chrono::DateTime<chrono::Utc>) -> Self {
        PgTimestamp {
            millis: t
                .timestamp_millis()
                .clamp(PG_TIMESTAMP_MIN_MILLIS, PG_TIMESTAMP_MAX_MILLIS),
        }
    }
}

/// (year, month, day) of a day count since 1970-01-01, proleptic Gregorian, astronomical years.
/// Howard Hinnant's `civil_from_days`, exact for every `i64` day count this module produces.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (
        year,
        u32::try_from(month).unwrap_or(1),
        u32::try_from(day).unwrap_or(1),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(millis: i64) -> String {
        PgTimestamp::from_millis(millis)
            .map(PgTimestamp::to_pg_text)
            .unwrap_or_else(|| "out of range".into())
    }

    #[test]
    fn text_is_postgres_input_syntax_across_the_whole_range() {
        assert_eq!(text(0), "1970-01-01 00:00:00.000+00");
        assert_eq!(text(1_700_000_000_123), "2023-11-14 22:13:20.123+00");
        assert_eq!(text(-1), "1969-12-31 23:59:59.999+00");
        assert_eq!(text(951_782_400_000), "2000-02-29 00:00:00.000+00");
        assert_eq!(
            text(PG_TIMESTAMP_MIN_MILLIS),
            "4714-11-24 00:00:00.000+00 BC"
        );
        assert_eq!(text(-62_167_219_200_000), "0001-01-01 00:00:00.000+00 BC");
        assert_eq!(text(-62_135_596_800_000), "0001-01-01 00:00:00.000+00");
        assert_eq!(text(253_402_300_800_000), "10000-01-01 00:00:00.000+00");
        assert_eq!(
            text(PG_TIMESTAMP_MAX_MILLIS),
            "294276-12-31 23:59:59.999+00"
        );
        assert_eq!(text(PG_TIMESTAMP_MAX_MILLIS + 1), "out of range");
        assert_eq!(text(PG_TIMESTAMP_MIN_MILLIS - 1), "out of range");
        assert_eq!(text(i64::MAX), "out of range");
        assert_eq!(text(i64::MIN), "out of range");
    }

    #[test]
    fn calendar_agrees_with_chrono_wherever_chrono_reaches() {
        use chrono::{Datelike, Timelike};
        let samples = [
            PG_TIMESTAMP_MIN_MILLIS,
            -62_167_219_200_001,
            -1,
            0,
            86_399_999,
            4_102_444_800_000,
            chrono::DateTime::<chrono::Utc>::MAX_UTC.timestamp_millis(),
        ];
        let mut millis: i64 = PG_TIMESTAMP_MIN_MILLIS;
        let step = 7_777_777_777_777; // about 246 years, never a whole number of days
        let chrono_max = chrono::DateTime::<chrono::Utc>::MAX_UTC.timestamp_millis();
        let mut all: Vec<i64> = samples.to_vec();
        while millis < chrono_max {
            all.push(millis);
            millis += step;
        }
        for m in all {
            let ours = PgTimestamp::from_millis(m).expect("in range").fields();
            let theirs = chrono::DateTime::from_timestamp_millis(m).expect("chrono range");
            assert_eq!(
                ours,
                (
                    i64::from(theirs.year()),
                    theirs.month(),
                    theirs.day(),
                    theirs.hour(),
                    theirs.minute(),
                    theirs.second(),
                    theirs.timestamp_subsec_millis()
                ),
                "{m}"
            );
        }
    }
}
