//! One [`GaugeView`] over several: the live path keeps one engine per Kafka partition and
//! exposes them as one instance.
//!
//! Customers come out in id order, merged from the sorted views. A customer held by two views
//! (its events were produced to two partitions, against the contract's advice to key by
//! `customer_id`) is presented once, with the sums of both. The portfolio and the counters
//! are the sums of all views; the watermark is the latest.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use marginstream_model::money::SLOTS;
use marginstream_model::{Counters, GaugeView, Timestamp, WindowFigures};
use rust_decimal::Decimal;

/// Where a merged customer's figures are.
#[derive(Debug, Clone, Copy)]
enum Source {
    /// In view `view` at index `index`.
    View { view: u32, index: u32 },
    /// Summed from several views, in `merged[index]`.
    Merged { index: u32 },
}

/// Several views presented as one. Every view must have the same window labels.
#[derive(Debug)]
pub struct MergedView<'a, V: GaugeView> {
    views: Vec<V>,
    labels: &'a [String],
    order: Vec<Source>,
    merged: Vec<(String, Box<[Decimal]>)>,
    portfolio: Box<[Decimal]>,
    counters: Counters,
    watermark: Option<Timestamp>,
    overflowed: bool,
}

/// Adds `from` into `into`, slot by slot; returns `false` (keeping the left value) where a
/// sum would exceed the range of a decimal.
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

fn sums_of(figures: WindowFigures<'_>) -> Box<[Decimal]> {
    let windows = figures.len();
    let mut sums = vec![Decimal::ZERO; SLOTS * windows].into_boxed_slice();
    for window in 0..windows {
        let f = figures.window(window);
        for slot in 0..SLOTS {
            sums[slot * windows + window] = f.0[slot];
        }
    }
    sums
}

impl<'a, V: GaugeView> MergedView<'a, V> {
    /// Merges `views`, which must all have the window labels `labels`.
    ///
    /// # Panics
    ///
    /// Panics if a view's labels differ from `labels` (a bug: every engine of one process
    /// is built from one configuration).
    pub fn new(labels: &'a [String], views: Vec<V>) -> MergedView<'a, V> {
        for view in &views {
            assert_eq!(
                view.window_labels(),
                labels,
                "every merged view has the process's window labels"
            );
        }
        let windows = labels.len();
        let mut portfolio = vec![Decimal::ZERO; SLOTS * windows].into_boxed_slice();
        let mut counters = Counters::default();
        let mut watermark = None;
        let mut overflowed = false;
        for view in &views {
            overflowed |= !add_into(&mut portfolio, &sums_of(view.portfolio()));
            counters.add(view.counters());
            watermark = watermark.max(view.watermark());
        }

        // A k-way merge of the sorted views.
        let total: usize = views.iter().map(|v| v.customer_count()).sum();
        let mut order = Vec::with_capacity(total);
        let mut merged: Vec<(String, Box<[Decimal]>)> = Vec::new();
        let mut heap: BinaryHeap<Reverse<(&str, u32, u32)>> = BinaryHeap::new();
        for (v, view) in views.iter().enumerate() {
            if view.customer_count() > 0 {
                heap.push(Reverse((view.customer(0).0, v as u32, 0)));
            }
        }
        let mut last: Option<&str> = None;
        while let Some(Reverse((id, v, index))) = heap.pop() {
            let view = &views[v as usize];
            if index as usize + 1 < view.customer_count() {
                heap.push(Reverse((view.customer(index as usize + 1).0, v, index + 1)));
            }
            if last == Some(id) {
                // The same customer in a second view: sum it into a merged entry.
                let figures = sums_of(view.customer(index as usize).1);
                let previous = order
                    .last_mut()
                    .expect("a repeated id follows its first occurrence");
                match *previous {
                    Source::Merged { index: m } => {
                        overflowed |= !add_into(&mut merged[m as usize].1, &figures);
                    }
                    Source::View {
                        view: pv,
                        index: pi,
                    } => {
                        let mut sums = sums_of(views[pv as usize].customer(pi as usize).1);
                        overflowed |= !add_into(&mut sums, &figures);
                        merged.push((id.to_owned(), sums));
                        *previous = Source::Merged {
                            index: (merged.len() - 1) as u32,
                        };
                    }
                }
                continue;
            }
            last = Some(id);
            order.push(Source::View { view: v, index });
        }
        MergedView {
            views,
            labels,
            order,
            merged,
            portfolio,
            counters,
            watermark,
            overflowed,
        }
    }

    /// Returns `true` if some sum across views exceeded the range of a decimal and was left
    /// out (never seen in practice: each engine keeps its sums within 28 digits).
    pub fn overflowed(&self) -> bool {
        self.overflowed
    }

    /// Returns the number of customers held by more than one view.
    pub fn shared_customers(&self) -> usize {
        self.merged.len()
    }
}

impl<V: GaugeView> GaugeView for MergedView<'_, V> {
    fn window_labels(&self) -> &[String] {
        self.labels
    }

    fn customer_count(&self) -> usize {
        self.order.len()
    }

    fn customer(&self, index: usize) -> (&str, WindowFigures<'_>) {
        match self.order[index] {
            Source::View { view, index } => self.views[view as usize].customer(index as usize),
            Source::Merged { index } => {
                let (id, sums) = &self.merged[index as usize];
                (id, WindowFigures::new(sums, self.labels.len()))
            }
        }
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
