//! A snapshot's customers merged across partitions, in id order: the view every reader
//! renders or queries.

use std::collections::BTreeMap;
use std::sync::Arc;

use marginstream_consumer::Partition;
use marginstream_model::money::SLOTS;
use marginstream_model::{Counters, CustomerId, GaugeView, Timestamp, WindowFigures};
use rust_decimal::Decimal;

use super::{PartitionState, Sums};

/// Customers in id order with their sums, and the totals of the partitions they come from.
#[derive(Debug, Clone)]
pub struct FlatView {
    labels: Arc<[String]>,
    ids: Vec<CustomerId>,
    sums: Vec<Sums>,
    portfolio: Box<[Decimal]>,
    counters: Counters,
    watermark: Option<Timestamp>,
    overflowed: bool,
}

/// Adds `from` into `into`; returns `false` where a sum left the range of a decimal.
fn add_into(into: &mut [Decimal], from: &[Decimal]) -> bool {
    let mut exact = true;
    for (a, b) in into.iter_mut().zip(from) {
        match a.checked_add(*b) {
            Some(sum) => *a = sum,
            None => exact = false,
        }
    }
    exact
}

impl FlatView {
    /// Merges the partitions: customers in id order (one held by two partitions, produced
    /// against the contract's advice to key by customer, is summed), portfolios and counters
    /// summed, the latest watermark.
    pub(super) fn merge(
        labels: &Arc<[String]>,
        partitions: &BTreeMap<Partition, PartitionState>,
    ) -> FlatView {
        let width = SLOTS * labels.len();
        let mut portfolio = vec![Decimal::ZERO; width].into_boxed_slice();
        let mut counters = Counters::default();
        let mut watermark = None;
        let mut overflowed = false;
        for state in partitions.values() {
            overflowed |= !add_into(&mut portfolio, &state.portfolio);
            counters.add(&state.counters);
            watermark = watermark.max(state.watermark);
        }
        let total: usize = partitions.values().map(|p| p.customers.len()).sum();
        let mut ids: Vec<CustomerId> = Vec::with_capacity(total);
        let mut sums: Vec<Sums> = Vec::with_capacity(total);
        let mut heads: Vec<_> = partitions
            .values()
            .map(|p| p.customers.iter().peekable())
            .collect();
        loop {
            // The smallest id at the head of any partition: partitions are few.
            let mut smallest: Option<&CustomerId> = None;
            for head in &mut heads {
                if let Some((id, _)) = head.peek() {
                    if smallest.is_none_or(|s| *id < s) {
                        smallest = Some(id);
                    }
                }
            }
            let Some(id) = smallest.cloned() else {
                break;
            };
            let mut merged: Option<Sums> = None;
            for head in &mut heads {
                if head.peek().is_some_and(|(other, _)| **other == id) {
                    let (_, value) = head.next().expect("peeked");
                    merged = Some(match merged {
                        None => Arc::clone(value),
                        Some(previous) => {
                            let mut total = previous.to_vec();
                            overflowed |= !add_into(&mut total, value);
                            Arc::from(total)
                        }
                    });
                }
            }
            ids.push(id);
            sums.push(merged.expect("the smallest id is at some head"));
        }
        FlatView {
            labels: Arc::clone(labels),
            ids,
            sums,
            portfolio,
            counters,
            watermark,
            overflowed,
        }
    }

    /// Returns the index of customer `id`, if held.
    pub fn find(&self, id: &str) -> Option<usize> {
        self.ids
            .binary_search_by(|probe| probe.as_str().cmp(id))
            .ok()
    }

    /// Returns `true` if a sum across partitions left the range of a decimal (never seen:
    /// each partition keeps its sums within 28 digits).
    pub fn overflowed(&self) -> bool {
        self.overflowed
    }
}

impl GaugeView for FlatView {
    fn window_labels(&self) -> &[String] {
        &self.labels
    }

    fn customer_count(&self) -> usize {
        self.ids.len()
    }

    fn customer(&self, index: usize) -> (&str, WindowFigures<'_>) {
        (
            &self.ids[index],
            WindowFigures::new(&self.sums[index], self.labels.len()),
        )
    }

    fn portfolio(&self) -> WindowFigures<'_> {
        WindowFigures::new(&self.portfolio, self.labels.len())
    }

    fn counters(&self) -> &Counters {
        &self.counters
    }

    fn watermark(&self) -> Option<Timestamp> {
        self.watermark
    }
}
