//! Which customers changed since they were last published: the live path copies only those
//! to the readers' side (`marginstream run`'s query API and `/metrics`), so that publishing
//! costs in proportion to the changes, not to the customers held.
//!
//! Off by default (replay never publishes); [`crate::Engine::track_changes`] turns it on.
//! A customer is marked when an event changes its figures, when sliding its windows
//! subtracts something, and when it is inserted; a removed customer's id is listed apart.
//! Marking is a bit test and, the first time after a drain, a push: a few nanoseconds per
//! event.

use marginstream_model::CustomerId;

/// The changed slots since the last drain, as a bitset (to mark each once) and a list (to
/// drain without scanning every slot).
#[derive(Debug, Clone, Default)]
pub(crate) struct ChangeLog {
    /// One bit per slot: set while the slot is in `slots`.
    marked: Vec<u64>,
    /// The marked slots, in the order they were first marked.
    slots: Vec<u32>,
    /// Customers removed since the last drain (lifetime window off, no entry left).
    pub(crate) removed: Vec<CustomerId>,
}

impl ChangeLog {
    /// Marks `slot` changed; a slot already marked is not listed twice.
    #[inline]
    pub(crate) fn mark(&mut self, slot: u32) {
        let (word, bit) = (slot as usize / 64, 1u64 << (slot % 64));
        if word >= self.marked.len() {
            self.marked.resize(word + 1, 0);
        }
        if self.marked[word] & bit == 0 {
            self.marked[word] |= bit;
            self.slots.push(slot);
        }
    }

    /// Unmarks `slot` (its customer was removed; the slot may be reused by another).
    pub(crate) fn unmark(&mut self, slot: u32) {
        let word = slot as usize / 64;
        if let Some(bits) = self.marked.get_mut(word) {
            *bits &= !(1u64 << (slot % 64));
        }
    }

    /// Returns whether `slot` is marked.
    pub(crate) fn is_marked(&self, slot: u32) -> bool {
        self.marked
            .get(slot as usize / 64)
            .is_some_and(|bits| bits & (1u64 << (slot % 64)) != 0)
    }

    /// Takes the next marked slot, unmarking it; `None` when none is left. Slots unmarked
    /// since they were listed (removed customers) are skipped.
    pub(crate) fn pop(&mut self) -> Option<u32> {
        while let Some(slot) = self.slots.pop() {
            if self.is_marked(slot) {
                self.unmark(slot);
                return Some(slot);
            }
        }
        None
    }

    /// Returns how many slots are listed (an upper bound on those still marked).
    pub(crate) fn pending(&self) -> usize {
        self.slots.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Shows that a slot is listed once however often it is marked, that an unmarked slot
    /// is skipped, and that draining empties the log.
    #[test]
    fn marks_each_slot_once() {
        let mut log = ChangeLog::default();
        for slot in [3, 200, 3, 64, 200] {
            log.mark(slot);
        }
        assert_eq!(log.pending(), 3);
        log.unmark(64);
        let mut drained = Vec::new();
        while let Some(slot) = log.pop() {
            drained.push(slot);
        }
        drained.sort_unstable();
        assert_eq!(drained, [3, 200]);
        assert_eq!(log.pending(), 0);
        log.mark(3);
        assert_eq!(log.pop(), Some(3), "a drained slot can be marked again");
    }
}
