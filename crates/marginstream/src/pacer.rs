//! Pacing for `--rate`: `generate` and `produce` emit at most so many lines per second, in
//! bursts of a twentieth of a second, on an absolute schedule so the rate does not drift.

use std::time::{Duration, Instant};

/// Bursts per second: each burst is flushed at once so a consumer sees it, then the pacer
/// waits until its lines are due.
const BURSTS_PER_SECOND: u64 = 20;

/// Counts lines and says when to flush and wait.
#[derive(Debug, Clone)]
pub struct Pacer {
    /// Lines per second.
    rate: u64,
    /// Lines per burst.
    burst: u64,
    started: Instant,
    lines: u64,
}

impl Pacer {
    /// Returns a pacer for `rate` lines per second, or `None` for 0 (no limit).
    pub fn new(rate: u64) -> Option<Pacer> {
        (rate > 0).then(|| Pacer {
            rate,
            burst: (rate / BURSTS_PER_SECOND).max(1),
            started: Instant::now(),
            lines: 0,
        })
    }

    /// Counts one line; returns `true` at the end of a burst, when the caller flushes what it
    /// buffered and then calls [`Pacer::wait`].
    pub fn count(&mut self) -> bool {
        self.lines += 1;
        self.lines.is_multiple_of(self.burst)
    }

    /// Returns how long until the lines counted so far are due (zero when they are).
    pub fn delay(&self) -> Duration {
        let due = Duration::from_nanos(
            (u128::from(self.lines) * 1_000_000_000 / u128::from(self.rate)) as u64,
        );
        due.saturating_sub(self.started.elapsed())
    }

    /// Sleeps until the lines counted so far are due.
    pub fn wait(&self) {
        let delay = self.delay();
        if !delay.is_zero() {
            std::thread::sleep(delay);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Shows the burst size and that a pacer is ahead of schedule right after starting.
    #[test]
    fn bursts_of_a_twentieth_of_a_second() {
        assert!(Pacer::new(0).is_none());
        let mut pacer = Pacer::new(100).expect("a positive rate");
        assert!(
            !(0..4).any(|_| pacer.count()),
            "no burst ends before 5 lines"
        );
        assert!(pacer.count(), "the fifth line ends a burst");
        assert!(
            pacer.delay() > Duration::from_millis(20),
            "5 lines at 100/s are due at 50 ms"
        );
    }
}
