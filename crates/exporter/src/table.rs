//! A readable per-customer summary for a terminal: one window, customers sorted by GM-M
//! (lowest first, customers without revenue last), the portfolio at the bottom and, with
//! ACV tiers, each customer's tier and a summary per tier.

use std::io::Write;

use marginstream_model::{CostFunction, Figures, GaugeView, WindowFigures};
use rust_decimal::Decimal;

use crate::error::ExporterError;
use crate::segments::{SegmentConfig, SegmentRollup};

/// Formats an amount for a terminal: rounded to cents, thousands grouped (`1,250.30`).
pub(crate) fn money(value: Decimal) -> String {
    let rounded = value.round_dp(2);
    let text = format!("{rounded:.2}");
    let (sign, digits) = match text.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", text.as_str()),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, "00"));
    let mut grouped = String::new();
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    format!("{sign}{grouped}.{frac}")
}

/// Formats a ratio as a percentage with one decimal (`72.0%`), `n/a` when absent.
pub(crate) fn percent(value: Option<Decimal>) -> String {
    value.map_or_else(
        || "n/a".to_owned(),
        |v| format!("{:.1}%", (v * Decimal::ONE_HUNDRED).round_dp(1)),
    )
}

fn row(name: &str, figures: &Figures) -> [String; 7] {
    let services: Decimal = CostFunction::MARGIN[1..]
        .iter()
        .map(|f| figures.cost(*f))
        .sum();
    let ratios = figures.ratios();
    [
        name.to_owned(),
        money(figures.revenue()),
        money(figures.cost(CostFunction::Infrastructure)),
        money(services),
        percent(ratios.map(|r| r.gm_market)),
        percent(ratios.map(|r| r.gm_operating)),
        percent(ratios.map(|r| r.services_drag)),
    ]
}

/// Writes the table for `window`, at most `limit` customers (all when `None`). With tiers,
/// a `tier` column follows the customer, and a summary per tier follows the portfolio.
pub fn render_table<V: GaugeView + ?Sized>(
    view: &V,
    window: &str,
    limit: Option<usize>,
    segments: Option<&SegmentConfig>,
    out: &mut dyn Write,
) -> Result<(), ExporterError> {
    let labels = view.window_labels();
    let Some(w) = labels.iter().position(|l| l == window) else {
        return Err(ExporterError::UnknownWindow {
            window: window.to_owned(),
            known: labels.join(", "),
        });
    };
    let mut order: Vec<(Option<Decimal>, usize)> = (0..view.customer_count())
        .map(|i| {
            (
                view.customer(i).1.window(w).ratios().map(|r| r.gm_market),
                i,
            )
        })
        .collect();
    // Lowest GM-M first (the customers to look at), then those without revenue.
    order.sort_by(|a, b| match (a.0, b.0) {
        (Some(x), Some(y)) => x.cmp(&y).then(a.1.cmp(&b.1)),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => a.1.cmp(&b.1),
    });
    let shown = limit.unwrap_or(order.len()).min(order.len());
    // With tiers, the second column is the tier (the customer's, or the count of a tier's).
    let with_tier = |first: String, tier: Option<String>, figures: &Figures| -> Vec<String> {
        let mut cells = row(&first, figures).to_vec();
        if let Some(tier) = tier {
            cells.insert(1, tier);
        }
        cells
    };
    let tier_name = |figures: WindowFigures<'_>| {
        segments.map(|config| config.tiers[config.tier_of(figures)].name.clone())
    };
    let mut header = vec![
        "customer".to_owned(),
        "revenue".to_owned(),
        "infrastructure".to_owned(),
        "services".to_owned(),
        "GM-M".to_owned(),
        "GM-O".to_owned(),
        "drag".to_owned(),
    ];
    if segments.is_some() {
        header.insert(1, "tier".to_owned());
    }
    let mut rows = vec![header];
    rows.extend(order[..shown].iter().map(|(_, i)| {
        let (id, figures) = view.customer(*i);
        with_tier(id.to_owned(), tier_name(figures), &figures.window(w))
    }));
    let portfolio_row = with_tier(
        "PORTFOLIO".to_owned(),
        segments.map(|_| String::new()),
        &view.portfolio().window(w),
    );
    let tier_rows: Vec<Vec<String>> = match segments {
        Some(config) => {
            let rollup = SegmentRollup::of(view, config);
            config
                .tiers
                .iter()
                .zip(&rollup.tiers)
                .map(|(tier, figures)| {
                    with_tier(
                        tier.name.clone(),
                        Some(format!("{} customers", figures.customers)),
                        &figures.figures(labels.len()).window(w),
                    )
                })
                .collect()
        }
        None => Vec::new(),
    };
    let columns = rows[0].len();
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .chain(std::iter::once(&portfolio_row))
                .chain(&tier_rows)
                .map(|r| r[c].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let error = |source| ExporterError::Write {
        format: "table",
        source,
    };
    let tier_columns = usize::from(segments.is_some());
    let line = |cells: &[String]| {
        let mut text = String::new();
        for (index, (cell, width)) in cells.iter().zip(&widths).enumerate() {
            if index > 0 {
                text.push_str("  ");
            }
            // The names (and the tier) to the left, the figures to the right.
            if index <= tier_columns {
                text.push_str(&format!("{cell:<width$}"));
            } else {
                text.push_str(&format!("{cell:>width$}"));
            }
        }
        text.push('\n');
        text
    };
    let rule = format!(
        "{}\n",
        "-".repeat(widths.iter().sum::<usize>() + 2 * (columns - 1))
    );
    writeln!(
        out,
        "window {window}, {} customers, sorted by GM-M (lowest first)",
        order.len()
    )
    .map_err(error)?;
    out.write_all(line(&rows[0]).as_bytes()).map_err(error)?;
    out.write_all(rule.as_bytes()).map_err(error)?;
    for r in &rows[1..] {
        out.write_all(line(r).as_bytes()).map_err(error)?;
    }
    if shown < order.len() {
        writeln!(out, "… {} more customers", order.len() - shown).map_err(error)?;
    }
    out.write_all(rule.as_bytes()).map_err(error)?;
    out.write_all(line(&portfolio_row).as_bytes())
        .map_err(error)?;
    if let Some(config) = segments {
        writeln!(
            out,
            "\nby ACV tier (run-rate of the {} window), window {window}",
            labels[config.window]
        )
        .map_err(error)?;
        out.write_all(rule.as_bytes()).map_err(error)?;
        for r in &tier_rows {
            out.write_all(line(r).as_bytes()).map_err(error)?;
        }
    }
    Ok(())
}
