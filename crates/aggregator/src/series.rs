//! The figures of one customer (or of the portfolio) and the bucket entries behind them.

use std::collections::VecDeque;

use marginstream_model::Figures;
use rust_decimal::Decimal;

/// The sum of one cost line (or revenue) of one customer in one bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    /// The bucket index. Buckets are at least a minute, so every accepted timestamp's bucket
    /// fits (year 0 is bucket −1.04e9; the future guard bounds the other side).
    bucket: i32,
    /// The index in [`Figures`].
    slot: u8,
    /// The sum of the amounts of this line in this bucket.
    amount: Decimal,
}

/// One customer's (or the portfolio's) figures per window, with the entries needed to slide
/// the finite windows.
#[derive(Debug, Clone)]
pub struct Series {
    /// Figures per window label: the finite windows in configured order, then `all`.
    figures: Box<[Figures]>,
    /// Bucket entries within the longest finite window, sorted by (bucket, slot).
    entries: VecDeque<Entry>,
}

impl Series {
    /// Creates an empty series for `labels` windows.
    pub fn new(labels: usize) -> Series {
        Series {
            figures: vec![Figures::default(); labels].into_boxed_slice(),
            entries: VecDeque::new(),
        }
    }

    /// Returns the figures per window label.
    pub fn figures(&self) -> &[Figures] {
        &self.figures
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
        self.figures.len() * std::mem::size_of::<Figures>()
            + self.entries.capacity() * std::mem::size_of::<Entry>()
    }

    fn position(&self, bucket: i32, slot: u8) -> Result<usize, usize> {
        let key = (bucket, slot);
        match self.entries.back() {
            None => Err(0),
            Some(last) if (last.bucket, last.slot) < key => Err(self.entries.len()),
            Some(last) if (last.bucket, last.slot) == key => Ok(self.entries.len() - 1),
            Some(_) => self.entries.binary_search_by(|e| (e.bucket, e.slot).cmp(&key)),
        }
    }

    /// Returns `true` when adding `amount` to `slot` of the windows in `mask` (bit i for
    /// window label i) and to the entry of `bucket` overflows no sum.
    pub fn can_add(&self, bucket: Option<i32>, slot: usize, amount: Decimal, mask: u32) -> bool {
        let windows_fit = self
            .figures
            .iter()
            .enumerate()
            .filter(|(index, _)| mask & (1 << index) != 0)
            .all(|(_, figures)| figures.0[slot].checked_add(amount).is_some());
        let entry_fits = match bucket.map(|b| self.position(b, slot as u8)) {
            Some(Ok(at)) => self.entries[at].amount.checked_add(amount).is_some(),
            _ => true,
        };
        windows_fit && entry_fits
    }

    /// Adds `amount` to `slot` of the windows in `mask` and, when `bucket` is given, to its
    /// entry. Returns `true` when this is the series' first entry in that bucket.
    ///
    /// # Panics
    ///
    /// Panics on overflow; callers check [`Series::can_add`] first.
    pub fn add(&mut self, bucket: Option<i32>, slot: usize, amount: Decimal, mask: u32) -> bool {
        for (index, figures) in self.figures.iter_mut().enumerate() {
            if mask & (1 << index) != 0 {
                figures.0[slot] += amount;
            }
        }
        let Some(bucket) = bucket else {
            return false;
        };
        match self.position(bucket, slot as u8) {
            Ok(at) => {
                self.entries[at].amount += amount;
                false
            }
            Err(at) => {
                let first_in_bucket = !(at > 0 && self.entries[at - 1].bucket == bucket
                    || at < self.entries.len() && self.entries[at].bucket == bucket);
                self.entries.insert(
                    at,
                    Entry {
                        bucket,
                        slot: slot as u8,
                        amount,
                    },
                );
                first_in_bucket
            }
        }
    }

    /// Subtracts the entries of buckets `from..=to` from the figures of window `window`: they
    /// have left it.
    pub fn subtract_buckets(&mut self, from: i32, to: i32, window: usize) {
        let start = self.entries.partition_point(|e| e.bucket < from);
        let figures = &mut self.figures[window];
        for entry in self.entries.range(start..) {
            if entry.bucket > to {
                break;
            }
            let sum = &mut figures.0[entry.slot as usize];
            *sum = sum
                .checked_sub(entry.amount)
                .expect("an entry leaving a window was added to it, so removing it fits");
        }
    }

    /// Drops the entries of buckets up to `limit`: they have left the longest window.
    pub fn drop_through(&mut self, limit: i32) {
        while self.entries.front().is_some_and(|e| e.bucket <= limit) {
            self.entries.pop_front();
        }
        if self.entries.capacity() > 4 * self.entries.len() + 16 {
            self.entries.shrink_to_fit();
        }
    }
}
