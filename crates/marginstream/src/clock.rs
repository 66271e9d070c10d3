//! The wall clock, read in one place.
//!
//! The engine never reads a clock (STYLE.md: the domain math is pure, time is passed in);
//! the live loop, replay and the checkpoint read it here and pass it on.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use marginstream_model::Timestamp;

/// Returns the wall clock as a timestamp (the Unix epoch if the system clock is before it).
pub fn wall_clock() -> Timestamp {
    timestamp_of(SystemTime::now())
}

/// Returns `time` as a timestamp (the Unix epoch if it is before it).
pub fn timestamp_of(time: SystemTime) -> Timestamp {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    Timestamp {
        seconds: i64::try_from(since.as_secs()).unwrap_or(i64::MAX),
        nanos: since.subsec_nanos(),
    }
}

/// Returns `time` in Unix seconds, as a sample value (0 before the epoch).
pub fn unix_seconds(time: SystemTime) -> f64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}
