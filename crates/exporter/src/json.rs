//! The gauges as JSON with exact decimal strings: the rendering finance checks against.
//!
//! ```json
//! {"watermark": "2026-01-01T00:00:00Z", "watermark_seconds": 1767225600,
//!  "windows": ["24h", "7d", "30d", "all"],
//!  "counters": {"events": {"Revenue_Event": {"applied": 1, "duplicate": 0, "late": 0}, ...},
//!               "rejected": {"malformed_json": 0, ...}},
//!  "customers_held": 1,
//!  "portfolio": {"24h": {"revenue": "100", "cost": {"Infrastructure": "20", ...},
//!                        "gm_market_ratio": "0.8", "gm_operating_ratio": "0.8",
//!                        "services_drag_ratio": "0"}, ...},
//!  "segments": [{"segment": "self_serve", "customers": 1, "windows": {"24h": {...}, ...}}, ...],
//!  "customers": [{"customer_id": "c1", "windows": {"24h": {...}, ...}}]}
//! ```
//!
//! `"segments"` is there when ACV tiers are configured (contract section 8): every tier, in
//! ascending `min`, with its customers and the sums and ratios of its customers' figures.
//!
//! Amounts are normalized decimal strings (no trailing zeros); ratios are decimal strings
//! rounded to 18 places, or `null` while revenue <= 0. The output is one line.

use std::io::Write;

use marginstream_model::{
    CostFunction, EventType, Figures, GaugeView, Outcome, RejectReason, WindowFigures,
};
use rust_decimal::Decimal;
use serde_json::{json, Map, Value};

use crate::error::ExporterError;
use crate::segments::{SegmentConfig, SegmentRollup};

fn decimal(value: Decimal) -> Value {
    Value::String(value.normalize().to_string())
}

/// Returns one window's figures and ratios as a JSON object.
pub fn figures_json(figures: &Figures) -> Value {
    let cost: Map<String, Value> = CostFunction::MARGIN
        .iter()
        .map(|f| (f.as_str().to_owned(), decimal(figures.cost(*f))))
        .collect();
    let ratios = figures.ratios();
    json!({
        "revenue": decimal(figures.revenue()),
        "cost": cost,
        "gm_market_ratio": ratios.map(|r| decimal(r.gm_market)),
        "gm_operating_ratio": ratios.map(|r| decimal(r.gm_operating)),
        "services_drag_ratio": ratios.map(|r| decimal(r.services_drag)),
    })
}

/// Returns one subject's figures per window: `{"24h": {...}, ...}`.
pub fn windows_json(labels: &[String], figures: WindowFigures<'_>) -> Value {
    Value::Object(
        labels
            .iter()
            .enumerate()
            .map(|(index, label)| (label.clone(), figures_json(&figures.window(index))))
            .collect(),
    )
}

/// Returns one customer's object, as `replay --format json` lists it (the query API adds
/// `"segment"` and `"exposed"` to it).
pub fn customer_json(labels: &[String], id: &str, figures: WindowFigures<'_>) -> Value {
    json!({"customer_id": id, "windows": windows_json(labels, figures)})
}

/// Returns every tier's customers and figures per window, in the tiers' order:
/// `[{"segment": "smb", "customers": 3, "windows": {...}}, ...]`.
pub fn segments_json(labels: &[String], config: &SegmentConfig, rollup: &SegmentRollup) -> Value {
    Value::Array(
        config
            .tiers
            .iter()
            .zip(&rollup.tiers)
            .map(|(tier, figures)| {
                json!({
                    "segment": tier.name,
                    "customers": figures.customers,
                    "windows": windows_json(labels, figures.figures(labels.len())),
                })
            })
            .collect(),
    )
}

/// Returns the top-level object of the JSON rendering without its `"customers"` list: the
/// watermark, the windows, the counters, the customer count, the portfolio and, with tiers,
/// `"segments"`. The query API's `/api/v1/portfolio` is this object.
pub fn head_json<V: GaugeView + ?Sized>(view: &V, segments: Option<&SegmentConfig>) -> Value {
    let counters = view.counters();
    let events: Map<String, Value> = EventType::ALL
        .iter()
        .map(|t| {
            let outcomes: Map<String, Value> = Outcome::ALL
                .iter()
                .map(|o| (o.as_str().to_owned(), json!(counters.events(*t, *o))))
                .collect();
            (t.as_str().to_owned(), Value::Object(outcomes))
        })
        .collect();
    let rejected: Map<String, Value> = RejectReason::ALL
        .iter()
        .map(|r| (r.as_str().to_owned(), json!(counters.rejected(*r))))
        .collect();
    let labels = view.window_labels();
    let mut head = json!({
        "watermark": view.watermark().map(|t| t.to_rfc3339()),
        "watermark_seconds": view.watermark().map(|t| t.seconds),
        "windows": labels,
        "counters": {"events": events, "rejected": rejected},
        "customers_held": view.customer_count(),
        "portfolio": windows_json(labels, view.portfolio()),
    });
    if let Some(config) = segments {
        head["segments"] = segments_json(labels, config, &SegmentRollup::of(view, config));
    }
    head
}

/// Writes the whole state as one JSON document followed by a newline: [`head_json`] with
/// every customer's [`customer_json`] in `"customers"`, in id order.
pub fn render_json<V: GaugeView + ?Sized>(
    view: &V,
    segments: Option<&SegmentConfig>,
    out: &mut dyn Write,
) -> Result<(), ExporterError> {
    let error = |source| ExporterError::Write {
        format: "json",
        source,
    };
    let labels = view.window_labels();
    let head = head_json(view, segments);
    // Stream the customers so a million of them never sit in one `Value`.
    let head = serde_json::to_string(&head).map_err(|e| error(e.into()))?;
    out.write_all(&head.as_bytes()[..head.len() - 1])
        .map_err(error)?;
    out.write_all(b",\"customers\":[").map_err(error)?;
    for index in 0..view.customer_count() {
        let (id, figures) = view.customer(index);
        if index > 0 {
            out.write_all(b",").map_err(error)?;
        }
        let customer = customer_json(labels, id, figures);
        serde_json::to_writer(&mut *out, &customer).map_err(|e| error(e.into()))?;
    }
    out.write_all(b"]}\n").map_err(error)
}
