//! The figures of one customer (or of the portfolio) and the bucket entries behind them.

use std::collections::VecDeque;

use marginstream_model::money::{self, SLOTS};
use marginstream_model::WindowFigures;
use rust_decimal::Decimal;

/// The sum of one cost line (or revenue) of one customer in one bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry {
    /// The bucket index. Buckets are at least a minute, so every accepted timestamp's bucket
    /// fits (year 0 is bucket −1.04e9; the future guard bounds the other side).
    pub(crate) bucket: i32,
    /// The index in [`Figures`].
    pub(crate) slot: u8,
    /// The sum of the amounts of this line in this bucket.
    pub(crate) amount: Decimal,
}

/// One customer's (or the portfolio's) figures per window, with the entries needed to slide
/// the finite windows.
///
/// Entries are sorted by (bucket, slot). For each finite window, a cursor marks the first
/// entry still inside it: buckets leave a window in order, so sliding it only walks forward
/// from the cursor, touching the entries that leave and nothing else.
///
/// The fields are visible to the crate so that [`crate::snapshot`] can write and restore
/// them.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Sums per line and window label, slot-major (`sums[slot * labels + window]`), so the
    /// sums one event updates share a cache line. Labels: finite windows, then `all`.
    pub(crate) sums: Box<[Decimal]>,
    /// The number of window labels.
    pub(crate) labels: u8,
    /// Bucket entries within the longest finite window, sorted by (bucket, slot).
    pub(crate) entries: VecDeque<Entry>,
    /// Per finite window, the index in `entries` of the first entry inside it.
    pub(crate) cursors: Box<[u32]>,
    /// The watermark bucket the windows were last slid to.
    pub(crate) slid_to: i32,
    /// The sum of the absolute values of every amount ever added: a bound on every sum and
    /// every partial sum the series can form, in any order.
    pub(crate) magnitude: Decimal,
    /// The largest scale (decimal places) of any amount added.
    pub(crate) scale_max: u8,
}

/// How many of the latest entries [`Series::position`] compares one by one before it
/// searches the whole deque: one bucket holds at most [`SLOTS`] of them.
const POSITION_SCAN_BACK: usize = SLOTS + 1;

/// Significant digits of a `rust_decimal::Decimal`.
pub(crate) const DIGITS: u32 = 28;

fn clamp_bucket(bucket: i64) -> i32 {
    bucket.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32
}

/// An addition checked for overflow, ready to be committed with [`Series::commit`].
///
/// Small on purpose: it carries the new budget and where the entry goes, not the new sums.
/// The budget proves that every sum the addition touches stays exact, so [`Series::commit`]
/// adds in place instead of copying sums prepared here (measured in issue 12: the copy of
/// sixteen prepared sums per series was the engine thread's largest cost).
#[derive(Debug, Clone, Copy)]
pub struct PendingAdd {
    slot: usize,
    mask: u32,
    amount: Decimal,
    magnitude: Decimal,
    scale_max: u8,
    /// The bucket, with the entry's position (`Ok`: existing, `Err`: insert at).
    entry: Option<(i32, Result<usize, usize>)>,
}

impl Series {
    /// Creates an empty series for `labels` window labels, of which `finite` are finite,
    /// current as of watermark bucket `current`.
    pub fn new(labels: usize, finite: usize, current: i32) -> Series {
        Series {
            sums: vec![Decimal::ZERO; SLOTS * labels].into_boxed_slice(),
            labels: u8::try_from(labels).expect("at most WINDOWS_MAX labels"),
            entries: VecDeque::new(),
            cursors: vec![0; finite].into_boxed_slice(),
            slid_to: current,
            magnitude: Decimal::ZERO,
            scale_max: 0,
        }
    }

    /// Slides every finite window to watermark bucket `current` and drops the entries that
    /// left the longest one. `windows` are the finite windows' lengths in buckets. Cheap when
    /// already current. Returns `true` when some entry left some window (a figure changed).
    pub fn catch_up(&mut self, current: i32, windows: &[i64]) -> bool {
        if self.slid_to >= current {
            return false;
        }
        self.slid_to = current;
        let mut changed = false;
        for (window, length) in windows.iter().enumerate() {
            changed |= self.slide(window, clamp_bucket(i64::from(current) - length));
        }
        if let Some(limit) = windows
            .iter()
            .max()
            .map(|l| clamp_bucket(i64::from(current) - l))
        {
            self.drop_through(limit);
        }
        changed
    }

    /// Returns the figures per window label.
    pub fn figures(&self) -> WindowFigures<'_> {
        WindowFigures::new(&self.sums, usize::from(self.labels))
    }

    /// Returns the number of bucket entries held.
    pub fn entry_count(&self) -> usize {
        self.entries.len()
    }

    /// Returns `true` when no bucket entry is held.
    pub fn has_no_entries(&self) -> bool {
        self.entries.is_empty()
    }

    /// Returns the bytes this series holds on the heap.
    pub fn heap_bytes(&self) -> usize {
        self.sums.len() * std::mem::size_of::<Decimal>()
            + self.entries.capacity() * std::mem::size_of::<Entry>()
            + self.cursors.len() * 4
    }

    /// Reads what adding to `slot` will read first (its row of sums, the latest entry and
    /// the budget) and returns a value made of them, for [`crate::Engine::prefetch`].
    pub(crate) fn touch(&self, slot: Option<usize>) -> u64 {
        let labels = usize::from(self.labels);
        let row = slot.and_then(|slot| self.sums.get(slot * labels));
        let last = self.entries.back().map_or(0, |entry| entry.bucket);
        u64::from(self.scale_max)
            ^ u64::from(row.is_some_and(Decimal::is_zero))
            ^ u64::from(last as u32)
    }

    fn position(&self, bucket: i32, slot: u8) -> Result<usize, usize> {
        let key = (bucket, slot);
        match self.entries.back() {
            None => Err(0),
            Some(last) if (last.bucket, last.slot) < key => Err(self.entries.len()),
            Some(last) if (last.bucket, last.slot) == key => Ok(self.entries.len() - 1),
            Some(_) => {
                // Most events land in one of the latest buckets: look back a few entries
                // (one bucket's lines) before searching the whole deque.
                let len = self.entries.len();
                for back in 2..=POSITION_SCAN_BACK.min(len) {
                    let entry = &self.entries[len - back];
                    match (entry.bucket, entry.slot).cmp(&key) {
                        std::cmp::Ordering::Less => return Err(len - back + 1),
                        std::cmp::Ordering::Equal => return Ok(len - back),
                        std::cmp::Ordering::Greater => {}
                    }
                }
                self.entries
                    .binary_search_by(|e| (e.bucket, e.slot).cmp(&key))
            }
        }
    }

    /// Prepares adding `amount` to `slot` of the windows in `mask` (bit i for window label
    /// i) and, when `bucket` is given, to that bucket's entry. Returns `None` if a sum could
    /// stop being exact; nothing has changed then.
    ///
    /// Exactness is kept by a budget: the integer digits of the sum of every absolute amount
    /// ever added, plus the most decimal places of any amount, stay within 28. Every sum and
    /// partial sum of the series is then exactly representable, whatever the order of
    /// additions and of the subtractions that slide the windows: nothing is ever rounded, and
    /// nothing overflows. (Cents leave 26 integer digits: 10^26 of turnover per series.)
    pub fn prepare(
        &self,
        bucket: Option<i32>,
        slot: usize,
        amount: Decimal,
        mask: u32,
    ) -> Option<PendingAdd> {
        let magnitude = self.magnitude.checked_add(amount.abs())?;
        let scale_max = self.scale_max.max(amount.scale() as u8);
        if money::integer_digits_exceed(magnitude, DIGITS - u32::from(scale_max))
            || magnitude.scale() < self.magnitude.scale().max(amount.scale())
        {
            return None;
        }
        // Within the budget, every sum and entry this adds to stays exact (see above), so
        // nothing more is checked here; `commit` adds in place.
        let entry = bucket.map(|bucket| (bucket, self.position(bucket, slot as u8)));
        debug_assert!(
            slot < SLOTS && mask >> self.labels == 0,
            "slot {slot} and mask {mask:#b} fit the series"
        );
        Some(PendingAdd {
            slot,
            mask,
            amount,
            magnitude,
            scale_max,
            entry,
        })
    }

    /// Commits a prepared addition. Returns `true` when it created the series' first entry
    /// in its bucket.
    ///
    /// # Panics
    ///
    /// Panics if the series changed since [`Series::prepare`]: the engine prepares and
    /// commits with nothing in between. (The additions themselves cannot fail: the budget
    /// that `prepare` checked keeps every sum exact.)
    pub fn commit(&mut self, pending: &PendingAdd) -> bool {
        self.magnitude = pending.magnitude;
        self.scale_max = pending.scale_max;
        let labels = usize::from(self.labels);
        let row = &mut self.sums[pending.slot * labels..(pending.slot + 1) * labels];
        for (index, sum) in row.iter_mut().enumerate() {
            if pending.mask & (1 << index) != 0 {
                // The magnitude budget checked by prepare keeps every sum exact: `+=` cannot
                // overflow (it would panic). Not `checked_add`: its result, read back as one
                // 16-byte value, stalls on its four 32-bit stores.
                *sum += pending.amount;
            }
        }
        let Some((bucket, position)) = pending.entry else {
            return false;
        };
        match position {
            Ok(at) => {
                // Exact and within range by the same budget, as the sums above.
                self.entries[at].amount += pending.amount;
                false
            }
            Err(at) => {
                let first_in_bucket = !(at > 0 && self.entries[at - 1].bucket == bucket
                    || at < self.entries.len() && self.entries[at].bucket == bucket);
                self.entries.insert(
                    at,
                    Entry {
                        bucket,
                        slot: pending.slot as u8,
                        amount: pending.amount,
                    },
                );
                // An entry inserted before a window's cursor is outside that window (it was
                // not added to it): the cursor moves with the entries it points at.
                for (window, cursor) in self.cursors.iter_mut().enumerate() {
                    if pending.mask & (1 << window) == 0 && at <= *cursor as usize {
                        *cursor += 1;
                    }
                    debug_assert!(
                        pending.mask & (1 << window) == 0 || at >= *cursor as usize,
                        "an entry inside a window sits at or after its cursor"
                    );
                }
                first_in_bucket
            }
        }
    }

    /// Subtracts from finite window `window` the entries of buckets up to `last`: they have
    /// left it. Returns `true` when some entry left.
    pub fn slide(&mut self, window: usize, last: i32) -> bool {
        let start = self.cursors[window] as usize;
        let mut cursor = start;
        let labels = usize::from(self.labels);
        while let Some(entry) = self.entries.get(cursor) {
            if entry.bucket > last {
                break;
            }
            // An entry leaving a window was added to it, so removing it fits (`-=` would
            // panic otherwise; not `checked_sub`, see `commit`).
            self.sums[usize::from(entry.slot) * labels + window] -= entry.amount;
            cursor += 1;
        }
        self.cursors[window] =
            u32::try_from(cursor).expect("entries are bounded by the longest window's buckets × 6");
        cursor > start
    }

    /// Drops the entries of buckets up to `limit`: they have left the longest window, and
    /// every window has slid past them.
    pub fn drop_through(&mut self, limit: i32) {
        let mut dropped = 0u32;
        while self.entries.front().is_some_and(|e| e.bucket <= limit) {
            self.entries.pop_front();
            dropped += 1;
        }
        for cursor in self.cursors.iter_mut() {
            debug_assert!(
                *cursor >= dropped,
                "every window slid past the dropped entries"
            );
            *cursor = cursor.saturating_sub(dropped);
        }
        if self.entries.capacity() > 4 * self.entries.len() + 16 {
            self.entries.shrink_to_fit();
        }
    }
}
