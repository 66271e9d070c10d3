//! The dedup index: applied event keys and the watermark bucket when each was applied.
//!
//! An open-addressing table with linear probing, specialised for keys that are already
//! uniform 128-bit hashes: the slot is the key's low bits, with no hashing at all, so the
//! slot of a future event can be prefetched while earlier events are applied (a cache miss
//! on this table was a large share of the engine's time). There is no single-key deletion:
//! the periodic sweep rebuilds the table from the keys it keeps, which also keeps probe
//! sequences short.

use marginstream_model::EventKey;

/// One slot: a key (both halves zero means empty) and its stamp. 24 bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Slot {
    key: [u64; 2],
    stamp: i32,
}

/// The table is grown past this load, in eighths (50 %): linear probing stays short.
const LOAD_MAX_EIGHTHS: usize = 4;

/// Applied event keys with the watermark bucket of their application.
#[derive(Debug, Clone, Default)]
pub struct DedupIndex {
    slots: Vec<Slot>,
    len: usize,
}

/// The table's form of a key: the hash's halves, never both zero (the empty mark). A real
/// key of zero is folded onto `[0, 1]`, a collision of probability 2^-128.
fn table_key(key: EventKey) -> [u64; 2] {
    let halves = [(key.0 >> 64) as u64, key.0 as u64];
    if halves == [0, 0] {
        [0, 1]
    } else {
        halves
    }
}

impl DedupIndex {
    /// Returns the number of keys held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Returns `true` when no key is held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Returns the bytes of the table.
    pub fn bytes(&self) -> usize {
        self.slots.capacity() * std::mem::size_of::<Slot>()
    }

    fn home(&self, key: &[u64; 2]) -> usize {
        key[1] as usize & (self.slots.len() - 1)
    }

    /// Returns `true` if `key` is held.
    pub fn contains(&self, key: EventKey) -> bool {
        if self.slots.is_empty() {
            return false;
        }
        let key = table_key(key);
        let mask = self.slots.len() - 1;
        let mut at = self.home(&key);
        loop {
            let slot = &self.slots[at];
            if slot.key == key {
                return true;
            }
            if slot.key == [0, 0] {
                return false;
            }
            at = (at + 1) & mask;
        }
    }

    /// Inserts `key` with `stamp`, or updates the stamp of a key already held.
    pub fn insert(&mut self, key: EventKey, stamp: i32) {
        if (self.len + 1) * 8 > self.slots.len() * LOAD_MAX_EIGHTHS {
            self.rebuild((self.slots.len() * 2).max(1024), |_| true);
        }
        let key = table_key(key);
        let mask = self.slots.len() - 1;
        let mut at = self.home(&key);
        loop {
            let slot = &mut self.slots[at];
            if slot.key == key {
                slot.stamp = stamp;
                return;
            }
            if slot.key == [0, 0] {
                *slot = Slot { key, stamp };
                self.len += 1;
                return;
            }
            at = (at + 1) & mask;
        }
    }

    /// Keeps the keys whose stamp satisfies `keep`, in place: no allocation, so a sweep of a
    /// large index costs no page faults.
    pub fn retain(&mut self, keep: impl Fn(i32) -> bool) {
        for slot in &mut self.slots {
            if slot.key != [0, 0] && !keep(slot.stamp) {
                *slot = Slot::default();
                self.len -= 1;
            }
        }
        // Removing keys opened gaps in probe sequences. Walking once around the table from
        // an empty slot and re-seating every key restores them: each key moves to the first
        // empty slot from its home, which is at or before where it was.
        let Some(empty) = self.slots.iter().position(|s| s.key == [0, 0]) else {
            return;
        };
        let mask = self.slots.len() - 1;
        for step in 1..=self.slots.len() {
            let at = (empty + step) & mask;
            if self.slots[at].key == [0, 0] {
                continue;
            }
            let slot = std::mem::take(&mut self.slots[at]);
            let mut to = self.home(&slot.key);
            while self.slots[to].key != [0, 0] {
                to = (to + 1) & mask;
            }
            self.slots[to] = slot;
        }
    }

    fn rebuild(&mut self, capacity: usize, keep: impl Fn(i32) -> bool) {
        // Growing: the one allocation of the index, amortised by doubling.
        debug_assert!(
            capacity.is_power_of_two(),
            "the table size is a power of two"
        );
        let old = std::mem::replace(&mut self.slots, vec![Slot::default(); capacity]);
        self.len = 0;
        let mask = capacity - 1;
        for slot in old {
            if slot.key == [0, 0] || !keep(slot.stamp) {
                continue;
            }
            let mut at = self.home(&slot.key);
            while self.slots[at].key != [0, 0] {
                at = (at + 1) & mask;
            }
            self.slots[at] = slot;
            self.len += 1;
        }
    }

    /// Hints the processor to load the slot of `key`, ahead of [`DedupIndex::contains`].
    pub fn prefetch(&self, key: EventKey) {
        if !self.slots.is_empty() {
            prefetch(&self.slots[self.home(&table_key(key))]);
        }
    }
}

/// Hints the processor to load the cache line holding `value`. Never faults, changes
/// nothing; a no-op on targets without a prefetch instruction.
pub(crate) fn prefetch<T>(value: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `_mm_prefetch` is a hint: it reads no memory architecturally and cannot
    // fault, whatever the address; here the address is a valid reference anyway.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
            (value as *const T).cast::<i8>(),
        );
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = value;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Shows insert, lookup, growth and the sweep.
    #[test]
    fn holds_and_sweeps_keys() {
        let mut index = DedupIndex::default();
        for n in 0..10_000u128 {
            index.insert(
                EventKey(n.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835)),
                (n % 10) as i32,
            );
        }
        assert_eq!(index.len(), 10_000);
        assert!(index.contains(EventKey(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835)));
        assert!(index.contains(EventKey(0)), "key zero is held too");
        assert!(!index.contains(EventKey(12_345)));
        index.retain(|stamp| stamp >= 5);
        assert_eq!(index.len(), 5_000);
        assert!(
            !index.contains(EventKey(0)),
            "key zero had stamp 0 and was swept"
        );
        index.retain(|_| false);
        assert!(index.is_empty());
        assert!(!index.contains(EventKey(7)));
    }
}
