//! Event time: timestamps, configured durations and bucket arithmetic (contract section 4).

use std::fmt;

use crate::error::ModelError;

/// A point in time as Unix seconds and nanoseconds, UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Timestamp {
    /// Whole seconds since the Unix epoch; negative before 1970.
    pub seconds: i64,
    /// Nanoseconds within the second, below 1e9.
    pub nanos: u32,
}

impl Timestamp {
    /// Creates a timestamp at a whole second.
    pub const fn from_seconds(seconds: i64) -> Timestamp {
        Timestamp { seconds, nanos: 0 }
    }

    /// Parses an RFC 3339 timestamp with an offset (`Z` or `±hh:mm`).
    pub fn parse_rfc3339(text: &str) -> Option<Timestamp> {
        let parsed =
            ::time::OffsetDateTime::parse(text, &::time::format_description::well_known::Rfc3339)
                .ok()?;
        Some(Timestamp {
            seconds: parsed.unix_timestamp(),
            nanos: parsed.nanosecond(),
        })
    }

    /// Returns the time as fractional Unix seconds, for a gauge sample.
    pub fn as_f64_seconds(self) -> f64 {
        self.seconds as f64 + f64::from(self.nanos) / 1e9
    }

    /// Formats the time as RFC 3339 in UTC, or the raw seconds if out of the formatter's range.
    pub fn to_rfc3339(self) -> String {
        let nanos = i128::from(self.seconds) * 1_000_000_000 + i128::from(self.nanos);
        ::time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
            .ok()
            .and_then(|t| {
                t.format(&::time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_else(|| format!("@{}", self.seconds))
    }

    /// Returns this time plus `seconds`, saturating.
    pub fn saturating_add_seconds(self, seconds: i64) -> Timestamp {
        Timestamp {
            seconds: self.seconds.saturating_add(seconds),
            nanos: self.nanos,
        }
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

/// A configured duration such as `24h` or `7d`: a positive whole number of one unit.
///
/// The text is kept as written, because it is the `window` label of the gauges.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DurationSpec {
    seconds: i64,
    text: String,
}

/// The largest duration accepted: 100 years, far beyond any useful window.
const DURATION_MAX_SECONDS: i64 = 100 * 366 * 86_400;

impl DurationSpec {
    /// Parses `<positive integer><unit>` with unit `s`, `m`, `h`, `d` or `w`.
    pub fn parse(text: &str) -> Result<DurationSpec, ModelError> {
        let error = || ModelError::Duration {
            text: text.to_owned(),
        };
        let trimmed = text.trim();
        let unit_at = trimmed
            .find(|c: char| !c.is_ascii_digit())
            .ok_or_else(error)?;
        let (number, unit) = trimmed.split_at(unit_at);
        let count: i64 = number.parse().map_err(|_| error())?;
        let unit_seconds = match unit {
            "s" => 1,
            "m" => 60,
            "h" => 3_600,
            "d" => 86_400,
            "w" => 7 * 86_400,
            _ => return Err(error()),
        };
        let seconds = count.checked_mul(unit_seconds).ok_or_else(error)?;
        if seconds <= 0 || seconds > DURATION_MAX_SECONDS {
            return Err(error());
        }
        Ok(DurationSpec {
            seconds,
            text: trimmed.to_owned(),
        })
    }

    /// Creates a duration from seconds, labelled in the largest unit that divides it.
    pub fn from_seconds(seconds: i64) -> DurationSpec {
        let (count, unit) = [(604_800, "w"), (86_400, "d"), (3_600, "h"), (60, "m")]
            .into_iter()
            .find(|(unit_seconds, _)| seconds % unit_seconds == 0)
            .map(|(unit_seconds, unit)| (seconds / unit_seconds, unit))
            .unwrap_or((seconds, "s"));
        DurationSpec {
            seconds,
            text: format!("{count}{unit}"),
        }
    }

    /// Returns the length in seconds, always positive.
    pub fn seconds(&self) -> i64 {
        self.seconds
    }

    /// Returns the text as configured, e.g. `24h`.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for DurationSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// The index of a time bucket: `floor(t / bucket)` on the Unix epoch, UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Bucket(pub i64);

impl Bucket {
    /// Returns the bucket holding `t` for buckets of `bucket_seconds` (positive).
    pub fn of(t: Timestamp, bucket_seconds: i64) -> Bucket {
        debug_assert!(bucket_seconds > 0, "bucket length is validated positive");
        Bucket(t.seconds.div_euclid(bucket_seconds))
    }

    /// Returns the start of this bucket.
    pub fn start(self, bucket_seconds: i64) -> Timestamp {
        Timestamp::from_seconds(self.0.saturating_mul(bucket_seconds))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Shows that offsets are applied and fractions kept.
    #[test]
    fn parses_rfc3339_with_offsets() {
        let utc = Timestamp::parse_rfc3339("2026-01-01T00:00:00Z").unwrap();
        let plus = Timestamp::parse_rfc3339("2026-01-01T02:00:00+02:00").unwrap();
        assert_eq!(utc, plus);
        let frac = Timestamp::parse_rfc3339("2026-01-01T00:00:00.25-00:30").unwrap();
        assert_eq!(frac.seconds, utc.seconds + 1800);
        assert_eq!(frac.nanos, 250_000_000);
        assert!(Timestamp::parse_rfc3339("2026-01-01T00:00:00").is_none());
        assert!(Timestamp::parse_rfc3339("2026-01-01").is_none());
        assert!(Timestamp::parse_rfc3339("yesterday").is_none());
    }

    /// Shows the duration grammar and its limits.
    #[test]
    fn parses_durations() {
        assert_eq!(DurationSpec::parse("24h").unwrap().seconds(), 86_400);
        assert_eq!(DurationSpec::parse("7d").unwrap().seconds(), 604_800);
        assert_eq!(DurationSpec::parse("5m").unwrap().as_str(), "5m");
        assert_eq!(DurationSpec::parse("2w").unwrap().seconds(), 1_209_600);
        for bad in [
            "",
            "h",
            "0h",
            "-1h",
            "1.5h",
            "1y",
            "1h30m",
            "99999999999999999999d",
        ] {
            assert!(DurationSpec::parse(bad).is_err(), "{bad:?} must be refused");
        }
        assert_eq!(DurationSpec::from_seconds(86_400).as_str(), "1d");
        assert_eq!(DurationSpec::from_seconds(90).as_str(), "90s");
    }

    /// Shows that buckets floor toward minus infinity, also before 1970.
    #[test]
    fn buckets_floor() {
        assert_eq!(Bucket::of(Timestamp::from_seconds(3_599), 3_600), Bucket(0));
        assert_eq!(Bucket::of(Timestamp::from_seconds(3_600), 3_600), Bucket(1));
        assert_eq!(Bucket::of(Timestamp::from_seconds(-1), 3_600), Bucket(-1));
    }
}
