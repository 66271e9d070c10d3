//! Margins by ACV tier (contract section 8): each held customer is in one tier of
//! `ledger.segments` by its annualized revenue run-rate `Revenue(W) × 365d / W` for `W =
//! ledger.segment_window`, and every tier's figures are the exact sums of its customers'.
//!
//! Membership is decided without dividing: `Revenue(W) × 365d >= min × W` compares two
//! exact products, so a run-rate exactly on a tier's `min` is in that tier, whatever the
//! window's length. Only when a product does not fit in 28 digits (a revenue beyond 10^20
//! in a year) is the run-rate computed by a rounded division.

use marginstream_model::money::SLOTS;
use marginstream_model::{GaugeView, WindowFigures};
use rust_decimal::Decimal;

/// Seconds in the 365 days of an annualized run-rate.
pub const YEAR_SECONDS: i64 = 365 * 86_400;

/// One tier: customers whose run-rate is at least `min` (and below the next tier's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tier {
    /// The `segment` label value.
    pub name: String,
    /// The lowest run-rate of the tier, in reporting currency per year.
    pub min: Decimal,
}

/// The validated `ledger.segments` and `ledger.segment_window`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentConfig {
    /// In ascending `min`, names all different, at least one.
    pub tiers: Vec<Tier>,
    /// The index of the segment window among the window labels.
    pub window: usize,
    /// The segment window's length in seconds (positive).
    pub window_seconds: i64,
}

impl SegmentConfig {
    /// The contract's default tiers, from the B2B ACV tiers: `self_serve` (below 1,000),
    /// `smb` (from 1,000), `mid_market` (from 10,000), `enterprise` (from 50,000).
    pub fn default_tiers() -> Vec<Tier> {
        [
            ("self_serve", 0),
            ("smb", 1_000),
            ("mid_market", 10_000),
            ("enterprise", 50_000),
        ]
        .into_iter()
        .map(|(name, min)| Tier {
            name: name.to_owned(),
            min: Decimal::from(min),
        })
        .collect()
    }

    /// Returns the index of the tier of a customer whose segment-window revenue is
    /// `revenue`: the last tier whose `min` the run-rate reaches, the first tier below every
    /// `min` (revenue <= 0 included).
    pub fn tier_of_revenue(&self, revenue: Decimal) -> usize {
        let year = Decimal::from(YEAR_SECONDS);
        let window = Decimal::from(self.window_seconds);
        let annual = revenue.checked_mul(year);
        let mut tier = 0;
        for (index, candidate) in self.tiers.iter().enumerate().skip(1) {
            let reaches = match (annual, candidate.min.checked_mul(window)) {
                (Some(annual), Some(threshold)) => annual >= threshold,
                // Beyond 28 digits: compare the rounded run-rate itself.
                _ => revenue
                    .checked_div(window)
                    .and_then(|per_second| per_second.checked_mul(year))
                    .is_none_or(|rate| rate >= candidate.min),
            };
            if reaches {
                tier = index;
            } else {
                break;
            }
        }
        tier
    }

    /// Returns the index of the tier of a customer with these per-window figures.
    pub fn tier_of(&self, figures: WindowFigures<'_>) -> usize {
        self.tier_of_revenue(figures.window(self.window).revenue())
    }
}

/// The sums of one tier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TierFigures {
    /// Held customers in the tier.
    pub customers: u64,
    /// Revenue and the five costs per window, slot-major like the engine's
    /// (`sums[slot * windows + window]`).
    pub sums: Box<[Decimal]>,
}

impl TierFigures {
    /// Returns the sums as per-window figures.
    pub fn figures(&self, windows: usize) -> WindowFigures<'_> {
        WindowFigures::new(&self.sums, windows)
    }
}

/// Every tier's customers and sums over one view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentRollup {
    /// Per tier, in the configuration's order: every tier is present, at 0 when empty.
    pub tiers: Vec<TierFigures>,
    /// `true` if some sum left the range of a decimal and was left out (not expected: each
    /// tier sums part of the portfolio, which is kept exact).
    pub overflowed: bool,
}

impl SegmentRollup {
    /// Sums `view`'s customers by tier.
    pub fn of<V: GaugeView + ?Sized>(view: &V, config: &SegmentConfig) -> SegmentRollup {
        let windows = view.window_labels().len();
        let mut rollup = SegmentRollup::empty(config, windows);
        for index in 0..view.customer_count() {
            let (_, figures) = view.customer(index);
            rollup.add(config.tier_of(figures), figures);
        }
        rollup
    }

    /// Returns a rollup with every tier empty.
    pub fn empty(config: &SegmentConfig, windows: usize) -> SegmentRollup {
        SegmentRollup {
            tiers: config
                .tiers
                .iter()
                .map(|_| TierFigures {
                    customers: 0,
                    sums: vec![Decimal::ZERO; SLOTS * windows].into_boxed_slice(),
                })
                .collect(),
            overflowed: false,
        }
    }

    /// Adds one customer's figures to tier `tier`.
    pub fn add(&mut self, tier: usize, figures: WindowFigures<'_>) {
        let windows = figures.len();
        let into = &mut self.tiers[tier];
        into.customers += 1;
        for window in 0..windows {
            let f = figures.window(window);
            for slot in 0..SLOTS {
                let sum = &mut into.sums[slot * windows + window];
                match sum.checked_add(f.0[slot]) {
                    Some(total) => *sum = total,
                    None => self.overflowed = true,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn config(window_seconds: i64) -> SegmentConfig {
        SegmentConfig {
            tiers: SegmentConfig::default_tiers(),
            window: 0,
            window_seconds,
        }
    }

    fn decimal(text: &str) -> Decimal {
        Decimal::from_str(text).expect("a decimal")
    }

    /// Shows the boundaries: a run-rate exactly on a tier's `min` is in that tier, a cent
    /// below is in the one before, and revenue <= 0 is in the first tier.
    #[test]
    fn a_run_rate_exactly_on_min_is_in_the_tier() {
        // 30 days: 1,000 a year is 1000 × 30 / 365 = 82.19178082191780821917808219... a
        // month, not a finite decimal; 7300 days make the boundaries exact.
        let days_30 = config(30 * 86_400);
        assert_eq!(days_30.tier_of_revenue(Decimal::ZERO), 0);
        assert_eq!(days_30.tier_of_revenue(decimal("-5")), 0);
        assert_eq!(days_30.tier_of_revenue(decimal("82.19")), 0);
        assert_eq!(days_30.tier_of_revenue(decimal("82.20")), 1);
        let year = config(YEAR_SECONDS);
        assert_eq!(year.tier_of_revenue(decimal("999.99")), 0);
        assert_eq!(year.tier_of_revenue(decimal("1000")), 1);
        assert_eq!(year.tier_of_revenue(decimal("9999.999999")), 1);
        assert_eq!(year.tier_of_revenue(decimal("10000.00")), 2);
        assert_eq!(year.tier_of_revenue(decimal("50000")), 3);
        assert_eq!(year.tier_of_revenue(decimal("1e12")), 3);
        // 73 days: a fifth of a year, so 200 of revenue is a run-rate of exactly 1,000.
        let fifth = config(73 * 86_400);
        assert_eq!(fifth.tier_of_revenue(decimal("200")), 1);
        assert_eq!(fifth.tier_of_revenue(decimal("199.9999999999")), 0);
    }

    /// Shows that a revenue too large for the exact comparison still gets a tier.
    #[test]
    fn huge_revenue_is_in_the_top_tier() {
        let year = config(YEAR_SECONDS);
        assert_eq!(year.tier_of_revenue(Decimal::MAX), 3);
        assert_eq!(year.tier_of_revenue(Decimal::MIN), 0);
    }
}
