//! Which per-customer series a rendering writes (contract section 7, the exposure budget).
//!
//! A [`SeriesSelection`] names the customers with series of their own, the per-customer
//! families and the windows those families carry. Every held customer not exposed is summed
//! exactly, per step and window, into one row labelled [`OTHER_CUSTOMER_ID`]; the portfolio
//! families, the watermark and the customer count are never reduced. Choosing the customers
//! (the budget, the ranking) is the caller's business: this module only carries the choice.

use std::collections::HashSet;

use crate::metrics;

/// The `customer_id` of the row that sums every customer without series of its own.
///
/// Reserved: no customer may carry it (the parser will refuse it as a customer id), so the
/// row never collides with a customer's.
pub const OTHER_CUSTOMER_ID: &str = "__other__";

/// Which per-customer series are written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeriesSelection {
    /// Customers with series of their own; `None`: every customer. Everyone else is summed
    /// exactly, per step and window, into one row `customer_id="__other__"`.
    pub exposed: Option<HashSet<String>>,
    /// Which of the five per-customer families ([`metrics::CUSTOMER_FAMILIES`] order) are
    /// written.
    pub families: [bool; 5],
    /// Which windows (by index into the window labels) the per-customer families carry.
    pub windows: Vec<bool>,
}

impl SeriesSelection {
    /// Returns the selection of everything: every customer, family and window, and so no
    /// `__other__` row. This is the default of contract section 7 below the budget.
    pub fn all(window_count: usize) -> SeriesSelection {
        SeriesSelection {
            exposed: None,
            families: [true; metrics::CUSTOMER_FAMILIES.len()],
            windows: vec![true; window_count],
        }
    }

    /// Returns `true` when the customer `id` has series of its own.
    pub fn is_exposed(&self, id: &str) -> bool {
        self.exposed
            .as_ref()
            .is_none_or(|exposed| exposed.contains(id))
    }

    /// Returns `true` when no customer can be summed into `__other__`.
    pub fn exposes_everyone(&self) -> bool {
        self.exposed.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Shows that the everything-selection exposes every id, family and window, and that a
    /// set of ids exposes those only.
    #[test]
    fn selects_everything_or_the_named_customers() {
        let all = SeriesSelection::all(4);
        assert!(all.exposes_everyone());
        assert!(all.is_exposed("anyone"));
        assert_eq!(all.families, [true; 5]);
        assert_eq!(all.windows, vec![true; 4]);
        let some = SeriesSelection {
            exposed: Some(HashSet::from(["acme".to_owned()])),
            ..SeriesSelection::all(4)
        };
        assert!(!some.exposes_everyone());
        assert!(some.is_exposed("acme"));
        assert!(!some.is_exposed("globex"));
    }
}
