//! Metric names and help texts of contract section 5, kept as constants.

/// Revenue per customer and window.
pub const REVENUE: &str = "marginstream_revenue";
/// Cost per customer, window and margin cost function.
pub const COST: &str = "marginstream_cost";
/// GM-M per customer and window.
pub const GM_MARKET_RATIO: &str = "marginstream_gm_market_ratio";
/// GM-O per customer and window.
pub const GM_OPERATING_RATIO: &str = "marginstream_gm_operating_ratio";
/// Services Drag per customer and window.
pub const SERVICES_DRAG_RATIO: &str = "marginstream_services_drag_ratio";
/// Portfolio revenue per window.
pub const PORTFOLIO_REVENUE: &str = "marginstream_portfolio_revenue";
/// Portfolio cost per window and cost function.
pub const PORTFOLIO_COST: &str = "marginstream_portfolio_cost";
/// Portfolio GM-M per window.
pub const PORTFOLIO_GM_MARKET_RATIO: &str = "marginstream_portfolio_gm_market_ratio";
/// Portfolio GM-O per window.
pub const PORTFOLIO_GM_OPERATING_RATIO: &str = "marginstream_portfolio_gm_operating_ratio";
/// Portfolio Services Drag per window.
pub const PORTFOLIO_SERVICES_DRAG_RATIO: &str = "marginstream_portfolio_services_drag_ratio";
/// Events by type and outcome (counter).
pub const EVENTS_TOTAL: &str = "marginstream_events_total";
/// Rejected events by reason (counter).
pub const REJECTED_EVENTS_TOTAL: &str = "marginstream_rejected_events_total";
/// The watermark T, in Unix seconds.
pub const WATERMARK_TIMESTAMP_SECONDS: &str = "marginstream_watermark_timestamp_seconds";
/// Customers held.
pub const CUSTOMERS: &str = "marginstream_customers";
/// Customers with per-customer series of their own (contract section 7).
pub const CUSTOMERS_EXPOSED: &str = "marginstream_customers_exposed";
/// Revenue per ACV tier and window (contract section 8).
pub const SEGMENT_REVENUE: &str = "marginstream_segment_revenue";
/// Cost per ACV tier, window and margin cost function.
pub const SEGMENT_COST: &str = "marginstream_segment_cost";
/// GM-M per ACV tier and window.
pub const SEGMENT_GM_MARKET_RATIO: &str = "marginstream_segment_gm_market_ratio";
/// GM-O per ACV tier and window.
pub const SEGMENT_GM_OPERATING_RATIO: &str = "marginstream_segment_gm_operating_ratio";
/// Services Drag per ACV tier and window.
pub const SEGMENT_SERVICES_DRAG_RATIO: &str = "marginstream_segment_services_drag_ratio";
/// Held customers per ACV tier.
pub const SEGMENT_CUSTOMERS: &str = "marginstream_segment_customers";

/// The five segment families, in the same order as the customer families.
pub const SEGMENT_FAMILIES: [&str; 5] = [
    SEGMENT_REVENUE,
    SEGMENT_COST,
    SEGMENT_GM_MARKET_RATIO,
    SEGMENT_GM_OPERATING_RATIO,
    SEGMENT_SERVICES_DRAG_RATIO,
];

/// The five per-customer families, in the order the renderers fill them.
pub const CUSTOMER_FAMILIES: [&str; 5] = [
    REVENUE,
    COST,
    GM_MARKET_RATIO,
    GM_OPERATING_RATIO,
    SERVICES_DRAG_RATIO,
];

/// The five portfolio families, in the same order.
pub const PORTFOLIO_FAMILIES: [&str; 5] = [
    PORTFOLIO_REVENUE,
    PORTFOLIO_COST,
    PORTFOLIO_GM_MARKET_RATIO,
    PORTFOLIO_GM_OPERATING_RATIO,
    PORTFOLIO_SERVICES_DRAG_RATIO,
];

/// The kind of a metric family, for its `# TYPE` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A gauge.
    Gauge,
    /// A counter.
    Counter,
}

/// Every family of contracts sections 5, 7 and 8: name, kind and help text. The first 14 are
/// section 5's, in their rendering order; the budget's and the segments' follow (the
/// renderers write the segments after the portfolio and the budget's gauge last).
pub const FAMILIES: [(&str, Kind, &str); 21] = [
    (REVENUE, Kind::Gauge, "Recognised revenue of the customer in the window, in reporting currency."),
    (COST, Kind::Gauge, "Cost of the customer in the window for one margin cost function, in reporting currency."),
    (GM_MARKET_RATIO, Kind::Gauge, "GM-M, market gross margin: (revenue - Infrastructure) / revenue. Absent while revenue <= 0."),
    (GM_OPERATING_RATIO, Kind::Gauge, "GM-O, operating margin: (revenue - all five margin cost functions) / revenue. Absent while revenue <= 0."),
    (SERVICES_DRAG_RATIO, Kind::Gauge, "Services Drag, GM-M - GM-O: (Support + Success_Engineering + Implementation + Onboarding) / revenue. Absent while revenue <= 0."),
    (PORTFOLIO_REVENUE, Kind::Gauge, "Recognised revenue of every customer in the window, in reporting currency."),
    (PORTFOLIO_COST, Kind::Gauge, "Cost of every customer plus unattributed costs in the window, per margin cost function, in reporting currency."),
    (PORTFOLIO_GM_MARKET_RATIO, Kind::Gauge, "Portfolio GM-M over every customer plus unattributed costs. Absent while revenue <= 0."),
    (PORTFOLIO_GM_OPERATING_RATIO, Kind::Gauge, "Portfolio GM-O over every customer plus unattributed costs. Absent while revenue <= 0."),
    (PORTFOLIO_SERVICES_DRAG_RATIO, Kind::Gauge, "Portfolio Services Drag over every customer plus unattributed costs. Absent while revenue <= 0."),
    (EVENTS_TOTAL, Kind::Counter, "Events consumed and not rejected, by type and outcome; late events are applied to the lifetime window only and counted once, as late."),
    (REJECTED_EVENTS_TOTAL, Kind::Counter, "Events rejected and dead-lettered, by reason."),
    (WATERMARK_TIMESTAMP_SECONDS, Kind::Gauge, "The watermark T: latest applied occurred_at (event clock) or the later of that and the wall clock (wall clock), in Unix seconds."),
    (CUSTOMERS, Kind::Gauge, "Customers held in memory."),
    (CUSTOMERS_EXPOSED, Kind::Gauge, "Customers with per-customer series of their own (metrics.customers_max); the others are summed into customer_id=\"__other__\"."),
    (SEGMENT_REVENUE, Kind::Gauge, "Recognised revenue of the ACV tier's customers in the window, in reporting currency."),
    (SEGMENT_COST, Kind::Gauge, "Cost of the ACV tier's customers in the window for one margin cost function, in reporting currency."),
    (SEGMENT_GM_MARKET_RATIO, Kind::Gauge, "GM-M of the ACV tier's summed figures. Absent while revenue <= 0."),
    (SEGMENT_GM_OPERATING_RATIO, Kind::Gauge, "GM-O of the ACV tier's summed figures. Absent while revenue <= 0."),
    (SEGMENT_SERVICES_DRAG_RATIO, Kind::Gauge, "Services Drag of the ACV tier's summed figures. Absent while revenue <= 0."),
    (SEGMENT_CUSTOMERS, Kind::Gauge, "Held customers in the ACV tier (by annualized revenue run-rate in ledger.segment_window)."),
];

/// The index in [`FAMILIES`] of `marginstream_customers_exposed`.
pub const CUSTOMERS_EXPOSED_INDEX: usize = 14;

/// The index in [`FAMILIES`] of the first segment family (revenue); the five follow in
/// [`SEGMENT_FAMILIES`] order.
pub const SEGMENT_FAMILIES_INDEX: usize = 15;

/// The index in [`FAMILIES`] of `marginstream_segment_customers`.
pub const SEGMENT_CUSTOMERS_INDEX: usize = 20;
