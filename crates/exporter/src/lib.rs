//! marginstream's exposition: the gauges of contract section 5 rendered from the engine's
//! state at the moment of the call.
//!
//! - [`metrics`]: metric names and help texts, as constants.
//! - [`prometheus`]: the Prometheus text exposition format (`/metrics`, `replay --format
//!   prometheus`).
//! - [`openmetrics`]: the history of every gauge at each step of event time, for backfill,
//!   each series' samples together (spooled as raw figures by the crate's `spool` module,
//!   an external merge sort of the steps' rows).
//! - [`selection`]: which per-customer series a rendering writes, everyone else summed into
//!   `customer_id="__other__"` (contract section 7).
//! - [`json`]: the same figures as exact decimal strings, for finance checks and tools.
//! - [`table`]: a readable per-customer summary for a terminal.
//! - [`compare`]: one ledger under two configurations, side by side, and what moved
//!   (`replay --compare-config`).
//! - [`exposure`]: the exposure budget: which customers get series of their own.
//! - [`segments`]: margins by ACV tier.
//! - [`error`]: the crate's one error type.
//!
//! # Design decisions
//!
//! **Rendered at scrape time, straight from the state.** Per-customer series are not
//! registered in a metrics registry: a `GaugeVec` child costs about 500 bytes and encoding a
//! million of them takes seconds. The renderer walks a [`GaugeView`] and writes the text
//! directly, computing each customer-window's three ratios once. Customers are split across
//! threads, each writing its own buffer per family, and the buffers are joined family by
//! family, so the output is identical to a one-thread rendering.
//!
//! **Exact until the last step.** Figures and ratios are decimals, and samples are written as
//! their exact decimal text: the one rounding, to the `f64` of a sample, is the scraper's
//! correctly rounding parse. Writing digits instead of formatting floats is also what makes
//! a million-series render fast.
//!
//! **History transposed through a spool of figures.** A backfill history arrives step by
//! step and OpenMetrics wants it series by series. Each step is spooled as one sorted run of
//! raw figures (exact decimals in a compact binary form, a few percent of the text's size),
//! the runs are merged with a bounded fan-in, and the text is rendered at the end, series by
//! series: memory stays at a few MiB whatever the steps and customers, and the end can still
//! choose which series to write and sum the rest into `__other__`.
//!
//! [`GaugeView`]: marginstream_model::GaugeView
#![deny(missing_docs)]

pub mod compare;
pub mod error;
pub mod exposure;
pub mod json;
pub mod metrics;
pub mod openmetrics;
pub mod prometheus;
pub mod segments;
pub mod selection;
mod spool;
pub mod table;

pub use error::ExporterError;
pub use prometheus::{escape_label_value, render_prometheus, RenderOptions, Renderer};
pub use selection::SeriesSelection;
