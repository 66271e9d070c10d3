//! The exposure budget (contract section 7): which held customers get per-customer series
//! of their own, at most `metrics.customers_max` of them; every other one is summed exactly
//! into the `customer_id="__other__"` row.
//!
//! The choice: first the ids of `metrics.customers_always` that are held (in list order,
//! within the budget), then the held customers with the highest revenue in the rank window,
//! ties broken by `customer_id` in ascending byte order. Choosing is a partial selection
//! (`select_nth_unstable`), linear in the customers held.

use std::cmp::Ordering;
use std::collections::HashSet;

use marginstream_model::GaugeView;
use rust_decimal::Decimal;

/// The five per-customer families, by their `metrics.customer_families` names, in the
/// renderers' order.
pub const FAMILY_NAMES: [&str; 5] = [
    "revenue",
    "cost",
    "gm_market",
    "gm_operating",
    "services_drag",
];

/// The validated exposure settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExposureConfig {
    /// The most customers with series of their own; 0 gives none.
    pub customers_max: usize,
    /// Ids chosen first when held, in list order.
    pub customers_always: Vec<String>,
    /// The index of the rank window among the window labels.
    pub rank_window: usize,
    /// Which per-customer families are exposed, in [`FAMILY_NAMES`] order.
    pub families: [bool; 5],
    /// Which windows the per-customer families carry, by label index.
    pub windows: Vec<bool>,
}

impl ExposureConfig {
    /// Exposes every customer in every family and window: no `__other__` row.
    pub fn unlimited(windows: usize, rank_window: usize) -> ExposureConfig {
        ExposureConfig {
            customers_max: usize::MAX,
            customers_always: Vec::new(),
            rank_window,
            families: [true; 5],
            windows: vec![true; windows],
        }
    }
}

/// Orders customers for ranking: higher revenue first, then the lower id.
fn rank_order(a: &(Decimal, &str), b: &(Decimal, &str)) -> Ordering {
    b.0.cmp(&a.0)
        .then_with(|| a.1.as_bytes().cmp(b.1.as_bytes()))
}

/// Chooses the exposed customers of `view`. Returns every held customer when the budget is
/// at least their number.
pub fn choose<V: GaugeView + ?Sized>(view: &V, config: &ExposureConfig) -> HashSet<String> {
    let held = view.customer_count();
    let mut chosen = HashSet::new();
    if config.customers_max == 0 {
        return chosen;
    }
    if held <= config.customers_max {
        chosen.extend((0..held).map(|index| view.customer(index).0.to_owned()));
        return chosen;
    }
    for id in &config.customers_always {
        if chosen.len() == config.customers_max {
            return chosen;
        }
        if find(view, id).is_some() {
            chosen.insert(id.clone());
        }
    }
    let room = config.customers_max - chosen.len();
    let mut candidates: Vec<(Decimal, &str)> = (0..held)
        .map(|index| {
            let (id, figures) = view.customer(index);
            (figures.window(config.rank_window).revenue(), id)
        })
        .filter(|(_, id)| !chosen.contains(*id))
        .collect();
    if room < candidates.len() {
        candidates.select_nth_unstable_by(room, rank_order);
        candidates.truncate(room);
    }
    chosen.extend(candidates.into_iter().map(|(_, id)| id.to_owned()));
    chosen
}

/// Returns the index of customer `id` in `view` (customers are in id order).
pub fn find<V: GaugeView + ?Sized>(view: &V, id: &str) -> Option<usize> {
    let (mut low, mut high) = (0, view.customer_count());
    while low < high {
        let middle = low + (high - low) / 2;
        match view.customer(middle).0.cmp(id) {
            Ordering::Less => low = middle + 1,
            Ordering::Greater => high = middle,
            Ordering::Equal => return Some(middle),
        }
    }
    None
}
