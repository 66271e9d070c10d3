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

/// Returns the CPU time the calling thread has used (`CLOCK_THREAD_CPUTIME_ID`): the loop's
/// own work in a pass, without the time other threads held its core. `Duration::ZERO` where
/// the clock is not available (not Unix).
pub fn thread_cpu_time() -> Duration {
    #[cfg(unix)]
    {
        let mut now = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `now` is a valid, writable timespec; clock_gettime only writes into it.
        let status = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
        if status == 0 {
            return Duration::new(
                u64::try_from(now.tv_sec).unwrap_or(0),
                u32::try_from(now.tv_nsec).unwrap_or(0),
            );
        }
    }
    Duration::ZERO
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_cpu_time_counts_this_threads_work_only() {
        let started = thread_cpu_time();
        let wall = std::time::Instant::now();
        let mut x = 0u64;
        while wall.elapsed() < Duration::from_millis(20) {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        let busy = thread_cpu_time() - started;
        assert!(
            busy > Duration::from_millis(1),
            "busy 20 ms counted {busy:?}"
        );
        let slept_from = thread_cpu_time();
        std::thread::sleep(Duration::from_millis(50));
        let asleep = thread_cpu_time() - slept_from;
        assert!(
            asleep < Duration::from_millis(20),
            "asleep 50 ms counted {asleep:?}"
        );
    }
}
