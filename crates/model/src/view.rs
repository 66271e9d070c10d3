//! What an exporter reads from the engine: the gauges' source and the event counters.

use crate::event::EventType;
use crate::money::{Figures, SLOTS};
use crate::reject::RejectReason;
use crate::time::Timestamp;
use rust_decimal::Decimal;

/// What happened to an event that was not rejected (`marginstream_events_total{outcome}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Applied to every window it falls in.
    Applied,
    /// A repeat of an applied `event_id`: not applied again.
    Duplicate,
    /// Older than every finite window on arrival: applied to `all` only.
    Late,
}

impl Outcome {
    /// All outcomes, in label order.
    pub const ALL: [Outcome; 3] = [Outcome::Applied, Outcome::Duplicate, Outcome::Late];

    /// Returns the `outcome` label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Outcome::Applied => "applied",
            Outcome::Duplicate => "duplicate",
            Outcome::Late => "late",
        }
    }

    /// Returns the position in [`Outcome::ALL`].
    pub const fn index(self) -> usize {
        self as usize
    }
}

/// The event counters of the contract, monotonic over the process's life (and, with
/// checkpoints, across restarts).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counters {
    /// Events by `[event_type][outcome]`.
    pub events: [[u64; 3]; 2],
    /// Rejections by reason, indexed by [`RejectReason::index`].
    pub rejected: [u64; 10],
}

impl Counters {
    /// Counts one event outcome.
    pub fn count(&mut self, event_type: EventType, outcome: Outcome) {
        self.events[event_type.index()][outcome.index()] += 1;
    }

    /// Counts one rejection.
    pub fn reject(&mut self, reason: RejectReason) {
        self.rejected[reason.index()] += 1;
    }

    /// Returns the count for one event type and outcome.
    pub fn events(&self, event_type: EventType, outcome: Outcome) -> u64 {
        self.events[event_type.index()][outcome.index()]
    }

    /// Returns the count of one rejection reason.
    pub fn rejected(&self, reason: RejectReason) -> u64 {
        self.rejected[reason.index()]
    }

    /// Returns every event counted, whatever its outcome or rejection.
    pub fn total(&self) -> u64 {
        self.events.iter().flatten().sum::<u64>() + self.rejected.iter().sum::<u64>()
    }

    /// Adds another set of counters to this one.
    pub fn add(&mut self, other: &Counters) {
        for (row, other_row) in self.events.iter_mut().zip(other.events.iter()) {
            for (count, other_count) in row.iter_mut().zip(other_row.iter()) {
                *count += other_count;
            }
        }
        for (count, other_count) in self.rejected.iter_mut().zip(other.rejected.iter()) {
            *count += other_count;
        }
    }
}

/// Revenue and the five margin costs of one subject (a customer or the portfolio) for every
/// window, as stored by the engine: slot-major, so that one event's sums across windows share
/// a cache line.
#[derive(Debug, Clone, Copy)]
pub struct WindowFigures<'a> {
    sums: &'a [Decimal],
    windows: usize,
}

impl<'a> WindowFigures<'a> {
    /// Wraps `sums`, laid out as `sums[slot * windows + window]`.
    ///
    /// # Panics
    ///
    /// Panics if `sums` does not hold exactly `SLOTS * windows` values.
    pub fn new(sums: &'a [Decimal], windows: usize) -> WindowFigures<'a> {
        assert_eq!(
            sums.len(),
            SLOTS * windows,
            "slot-major sums hold six lines per window"
        );
        WindowFigures { sums, windows }
    }

    /// Returns the number of windows.
    pub fn len(&self) -> usize {
        self.windows
    }

    /// Returns the sums as stored, slot-major: `sums[slot * windows + window]`.
    pub fn sums(&self) -> &'a [Decimal] {
        self.sums
    }

    /// Returns `true` when there is no window.
    pub fn is_empty(&self) -> bool {
        self.windows == 0
    }

    /// Returns the figures of window `window` (an index into the window labels).
    pub fn window(&self, window: usize) -> Figures {
        Figures(std::array::from_fn(|slot| {
            self.sums[slot * self.windows + window]
        }))
    }

    /// Returns the figures of every window, in label order.
    pub fn to_vec(&self) -> Vec<Figures> {
        (0..self.windows).map(|w| self.window(w)).collect()
    }
}

/// The source of the gauges of contract section 5, read by the exporters.
///
/// Customers are presented in ascending order of `customer_id`, so that every rendering is
/// deterministic. Figures come per window, in the order of [`GaugeView::window_labels`].
pub trait GaugeView: Sync {
    /// Returns the `window` label values: the finite windows as configured, then `all` when
    /// the lifetime window is on.
    fn window_labels(&self) -> &[String];

    /// Returns the number of customers held.
    fn customer_count(&self) -> usize;

    /// Returns the id and per-window figures of the customer at `index` in id order.
    ///
    /// # Panics
    ///
    /// Panics if `index >= customer_count()`.
    fn customer(&self, index: usize) -> (&str, WindowFigures<'_>);

    /// Returns the portfolio's per-window figures: every customer plus unattributed costs.
    fn portfolio(&self) -> WindowFigures<'_>;

    /// Returns the event counters.
    fn counters(&self) -> &Counters;

    /// Returns the watermark `T`, or `None` before the first applied event in event-time mode.
    fn watermark(&self) -> Option<Timestamp>;
}
