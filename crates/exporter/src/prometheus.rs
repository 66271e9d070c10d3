//! The Prometheus text exposition format (version 0.0.4).

use std::thread;

use marginstream_model::money::{to_f64, SLOTS};
use marginstream_model::parse::RESERVED_CUSTOMER_ID as OTHER_CUSTOMER_ID;
use marginstream_model::{
    CostFunction, EventType, GaugeView, Outcome, RejectReason, WindowFigures,
};
use rust_decimal::Decimal;

use crate::metrics::{self, Kind, FAMILIES};
use crate::segments::{SegmentConfig, SegmentRollup};

/// Options of a rendering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RenderOptions {
    /// Threads used for the per-customer families (at least 1). Below
    /// [`CUSTOMERS_PER_THREAD_MIN`] customers per thread, fewer are used.
    pub threads: usize,
}

/// Below this many customers per thread, splitting the work costs more than it saves.
pub const CUSTOMERS_PER_THREAD_MIN: usize = 2_000;

impl Default for RenderOptions {
    fn default() -> RenderOptions {
        RenderOptions {
            threads: thread::available_parallelism().map_or(1, |n| n.get().min(8)),
        }
    }
}

/// What a rendering exposes beyond the contract's fixed families: which customers get
/// series of their own (the exposure budget, contract section 7) in which per-customer
/// families and windows, and the ACV tiers (section 8).
#[derive(Clone, Copy)]
pub struct Exposition<'a> {
    /// Whether a customer has series of its own; `None`: every customer. Every other held
    /// customer is summed exactly into the `customer_id="__other__"` row.
    pub exposed: Option<&'a (dyn Fn(&str) -> bool + Sync)>,
    /// Which per-customer families are written ([`metrics::CUSTOMER_FAMILIES`] order).
    pub families: [bool; 5],
    /// Which windows the per-customer families carry, by label index; empty: every window.
    pub windows: &'a [bool],
    /// The tiers of the segment families; `None`: no segment family.
    pub segments: Option<&'a SegmentConfig>,
}

impl std::fmt::Debug for Exposition<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exposition")
            .field("everyone", &self.exposed.is_none())
            .field("families", &self.families)
            .field("windows", &self.windows)
            .field("segments", &self.segments)
            .finish()
    }
}

impl Exposition<'_> {
    /// Every customer in every family and window, no segments: the contract v1 exposition.
    pub const EVERYTHING: Exposition<'static> = Exposition {
        exposed: None,
        families: [true; 5],
        windows: &[],
        segments: None,
    };

    fn is_exposed(&self, id: &str) -> bool {
        self.exposed.is_none_or(|exposed| exposed(id))
    }

    fn window_shown(&self, window: usize) -> bool {
        self.windows.is_empty() || self.windows.get(window).copied().unwrap_or(false)
    }
}

/// Appends `value` to `out`, escaped as a label value: backslash, double quote and line
/// feed are written `\\`, `\"` and `\n`.
pub fn escape_label_value(value: &str, out: &mut Vec<u8>) {
    if !value.bytes().any(|b| matches!(b, b'\\' | b'"' | b'\n')) {
        out.extend_from_slice(value.as_bytes());
        return;
    }
    for byte in value.bytes() {
        match byte {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'"' => out.extend_from_slice(b"\\\""),
            b'\n' => out.extend_from_slice(b"\\n"),
            other => out.push(other),
        }
    }
}

/// Sets `prefix` to the customer's label, ready for the window's: `customer_id="…",`.
pub(crate) fn customer_prefix(id: &str, prefix: &mut Vec<u8>) {
    prefix.clear();
    prefix.extend_from_slice(b"customer_id=\"");
    escape_label_value(id, prefix);
    prefix.extend_from_slice(b"\",");
}

/// Writes a sample value: shortest round-trip text of the `f64`, `0` for zero.
pub(crate) fn write_value(out: &mut Vec<u8>, value: f64) {
    if value == 0.0 {
        out.push(b'0');
    } else if value.is_finite() {
        let mut buffer = ryu::Buffer::new();
        let text = buffer.format_finite(value);
        out.extend_from_slice(text.strip_suffix(".0").unwrap_or(text).as_bytes());
    } else if value.is_nan() {
        out.extend_from_slice(b"NaN");
    } else if value > 0.0 {
        out.extend_from_slice(b"+Inf");
    } else {
        out.extend_from_slice(b"-Inf");
    }
}

pub(crate) fn write_header(out: &mut Vec<u8>, name: &str, kind: Kind, help: &str) {
    out.extend_from_slice(b"# HELP ");
    out.extend_from_slice(name.as_bytes());
    out.push(b' ');
    out.extend_from_slice(help.as_bytes());
    out.extend_from_slice(b"\n# TYPE ");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(match kind {
        Kind::Gauge => b" gauge\n",
        Kind::Counter => b" counter\n",
    });
}

/// Writes a decimal as a sample value: its exact digits, normalized (`1234.56`, `0.9`,
/// `0.666666666666666667`).
///
/// The exposition's one rounding, decimal to `f64`, then happens in the scraper's parser,
/// which rounds correctly (Go's `strconv.ParseFloat`), so the sample is exactly the nearest
/// `f64` to the decimal, the value [`to_f64`] gives, and no float is formatted here. For a
/// decimal of at most 15 significant digits this text is also the shortest round-trip text
/// of that `f64`. A mantissa beyond `u64` (beyond 19 digits) goes through [`to_f64`] and
/// ryu instead.
pub(crate) fn write_amount(out: &mut Vec<u8>, value: Decimal) {
    // u64 arithmetic: its division by ten is a multiplication, a u128 one a library call.
    let Ok(mut small) = u64::try_from(value.mantissa().unsigned_abs()) else {
        write_value(out, to_f64(value));
        return;
    };
    let mut scale = value.scale();
    if small == 0 {
        out.push(b'0');
        return;
    }
    while scale > 0 && small % 10 == 0 {
        small /= 10;
        scale -= 1;
    }
    let mut digits = itoa::Buffer::new();
    let text = digits.format(small).as_bytes();
    if value.is_sign_negative() {
        out.push(b'-');
    }
    let scale = scale as usize;
    if scale == 0 {
        out.extend_from_slice(text);
    } else if text.len() > scale {
        let (int, frac) = text.split_at(text.len() - scale);
        out.extend_from_slice(int);
        out.push(b'.');
        out.extend_from_slice(frac);
    } else {
        out.extend_from_slice(b"0.");
        out.extend(std::iter::repeat_n(b'0', scale - text.len()));
        out.extend_from_slice(text);
    }
}

/// One line: `name{labels} value` with the value of a decimal.
fn write_amount_sample(
    out: &mut Vec<u8>,
    name: &str,
    labels: &[u8],
    value: Decimal,
    suffix: &[u8],
) {
    out.extend_from_slice(name.as_bytes());
    out.push(b'{');
    out.extend_from_slice(labels);
    out.extend_from_slice(b"} ");
    write_amount(out, value);
    out.extend_from_slice(suffix);
    out.push(b'\n');
}

/// One line: `name{labels} value` where `labels` is already rendered without braces.
pub(crate) fn write_sample(out: &mut Vec<u8>, name: &str, labels: &[u8], value: f64) {
    out.extend_from_slice(name.as_bytes());
    if !labels.is_empty() {
        out.push(b'{');
        out.extend_from_slice(labels);
        out.push(b'}');
    }
    out.push(b' ');
    write_value(out, value);
    out.push(b'\n');
}

/// Buffers of the five per-customer families (or the five portfolio families).
#[derive(Debug, Default)]
pub(crate) struct FamilyBuffers(pub(crate) [Vec<u8>; 5]);

/// Appends the samples of one subject (a customer, or the portfolio when `prefix` is empty)
/// for every window: revenue, the five costs, and the three ratios when revenue > 0.
/// `suffix` goes after each value (an OpenMetrics timestamp, or nothing).
pub(crate) fn write_subject(
    buffers: &mut FamilyBuffers,
    names: [&str; 5],
    prefix: &[u8],
    windows: &[String],
    figures: WindowFigures<'_>,
    labels: &mut Vec<u8>,
    suffix: &[u8],
) {
    write_subject_selected(
        buffers,
        names,
        prefix,
        windows,
        figures,
        labels,
        suffix,
        &Exposition::EVERYTHING,
    );
}

/// [`write_subject`], writing only the families and windows `exposition` selects.
#[allow(clippy::too_many_arguments)]
pub(crate) fn write_subject_selected(
    buffers: &mut FamilyBuffers,
    names: [&str; 5],
    prefix: &[u8],
    windows: &[String],
    figures: WindowFigures<'_>,
    labels: &mut Vec<u8>,
    suffix: &[u8],
    exposition: &Exposition<'_>,
) {
    let families = exposition.families;
    for (index, window) in windows.iter().enumerate() {
        if !exposition.window_shown(index) {
            continue;
        }
        let figures = figures.window(index);
        labels.clear();
        labels.extend_from_slice(prefix);
        labels.extend_from_slice(b"window=\"");
        escape_label_value(window, labels);
        labels.push(b'"');
        let base = labels.len();
        if families[0] {
            write_amount_sample(
                &mut buffers.0[0],
                names[0],
                labels,
                figures.revenue(),
                suffix,
            );
        }
        if families[1] {
            for function in CostFunction::MARGIN {
                labels.truncate(base);
                labels.extend_from_slice(b",cost_function=\"");
                labels.extend_from_slice(function.as_str().as_bytes());
                labels.push(b'"');
                write_amount_sample(
                    &mut buffers.0[1],
                    names[1],
                    labels,
                    figures.cost(function),
                    suffix,
                );
            }
        }
        labels.truncate(base);
        if families[2] || families[3] || families[4] {
            if let Some(ratios) = figures.ratios() {
                let values = [ratios.gm_market, ratios.gm_operating, ratios.services_drag];
                for (family, value) in values.into_iter().enumerate() {
                    if families[2 + family] {
                        write_amount_sample(
                            &mut buffers.0[2 + family],
                            names[2 + family],
                            labels,
                            value,
                            suffix,
                        );
                    }
                }
            }
        }
    }
}

/// What one thread's share of the customers adds up to besides its text: the customers not
/// exposed, summed; the tiers; the count of exposed customers.
#[derive(Debug, Default)]
pub(crate) struct Rollup {
    /// Sums of the customers without series of their own, slot-major; empty until one.
    pub(crate) other: Vec<Decimal>,
    /// Customers summed into `other`.
    pub(crate) others: usize,
    /// Customers written with series of their own.
    pub(crate) exposed: usize,
    /// The tiers' sums, with segments.
    pub(crate) segments: Option<SegmentRollup>,
    /// A sum left the range of a decimal (not expected: each is part of the portfolio).
    pub(crate) overflowed: bool,
}

impl Rollup {
    fn new(exposition: &Exposition<'_>, windows: usize) -> Rollup {
        Rollup {
            segments: exposition
                .segments
                .map(|config| SegmentRollup::empty(config, windows)),
            ..Rollup::default()
        }
    }

    fn add_other(&mut self, figures: WindowFigures<'_>) {
        let sums = figures.sums();
        if self.other.is_empty() {
            self.other = vec![Decimal::ZERO; sums.len()];
        }
        for (total, value) in self.other.iter_mut().zip(sums) {
            match total.checked_add(*value) {
                Some(sum) => *total = sum,
                None => self.overflowed = true,
            }
        }
        self.others += 1;
    }

    fn merge(&mut self, other: Rollup) {
        if !other.other.is_empty() {
            let windows = other.other.len() / SLOTS;
            self.add_other(WindowFigures::new(&other.other, windows));
            self.others += other.others - 1;
        }
        self.exposed += other.exposed;
        self.overflowed |= other.overflowed;
        if let (Some(into), Some(from)) = (&mut self.segments, other.segments) {
            into.overflowed |= from.overflowed;
            for (tier, figures) in into.tiers.iter_mut().zip(from.tiers) {
                tier.customers += figures.customers;
                for (total, value) in tier.sums.iter_mut().zip(figures.sums.iter()) {
                    match total.checked_add(*value) {
                        Some(sum) => *total = sum,
                        None => into.overflowed = true,
                    }
                }
            }
        }
    }
}

fn render_customers<V: GaugeView + ?Sized>(
    view: &V,
    from: usize,
    to: usize,
    exposition: &Exposition<'_>,
    buffers: &mut FamilyBuffers,
) -> Rollup {
    let mut prefix = Vec::with_capacity(64);
    let mut labels = Vec::with_capacity(128);
    let windows = view.window_labels();
    let names = metrics::CUSTOMER_FAMILIES;
    let mut rollup = Rollup::new(exposition, windows.len());
    for buffer in &mut buffers.0 {
        buffer.clear();
    }
    for index in from..to {
        let (id, figures) = view.customer(index);
        if let (Some(segments), Some(config)) = (&mut rollup.segments, exposition.segments) {
            segments.add(config.tier_of(figures), figures);
        }
        if exposition.is_exposed(id) {
            customer_prefix(id, &mut prefix);
            write_subject_selected(
                buffers,
                names,
                &prefix,
                windows,
                figures,
                &mut labels,
                b"",
                exposition,
            );
            rollup.exposed += 1;
        } else {
            rollup.add_other(figures);
        }
    }
    rollup
}

/// Renders the exposition into buffers it keeps between calls.
///
/// A scrape of a million customers writes hundreds of megabytes; reusing the buffers spares
/// the page faults of fresh memory on every scrape (a third of the time when measured). The
/// text is returned as chunks, in order, so it is never copied into one buffer.
#[derive(Debug, Default)]
pub struct Renderer {
    options: RenderOptions,
    /// Per-thread buffers of the five per-customer families.
    parts: Vec<FamilyBuffers>,
    /// One buffer per per-customer family: its header.
    heads: [Vec<u8>; 5],
    /// One buffer per per-customer family: the `__other__` row.
    others: FamilyBuffers,
    /// The portfolio, the segments, the counters and the state.
    tail: Vec<u8>,
}

impl Renderer {
    /// Creates a renderer.
    pub fn new(options: RenderOptions) -> Renderer {
        Renderer {
            options,
            ..Renderer::default()
        }
    }

    /// Renders every family of contract section 5, every customer exposed, no segment: see
    /// [`Renderer::render_with`].
    pub fn render<V: GaugeView + ?Sized>(&mut self, view: &V) -> Vec<&[u8]> {
        self.render_with(view, &Exposition::EVERYTHING)
    }

    /// Renders the families of contract sections 5, 7 and 8 and returns the text as ordered
    /// chunks: the per-customer families (exposed customers in id order, then the
    /// `__other__` row when some held customer is not exposed), the portfolio families, the
    /// segment families (with tiers; every tier present), the counters, the watermark (absent
    /// before the first applied event), the customers held and the customers exposed. Each
    /// family comes with its HELP and TYPE lines; ratio series are absent while revenue <= 0.
    pub fn render_with<V: GaugeView + ?Sized>(
        &mut self,
        view: &V,
        exposition: &Exposition<'_>,
    ) -> Vec<&[u8]> {
        let customers = view.customer_count();
        let windows = view.window_labels();
        let threads = self
            .options
            .threads
            .clamp(1, (customers / CUSTOMERS_PER_THREAD_MIN).max(1));
        let chunk = customers.div_ceil(threads).max(1);
        self.parts.resize_with(threads, FamilyBuffers::default);
        self.parts.truncate(threads);
        let mut rollup = if threads == 1 {
            render_customers(view, 0, customers, exposition, &mut self.parts[0])
        } else {
            let rollups: Vec<Rollup> = thread::scope(|scope| {
                let handles: Vec<_> = self
                    .parts
                    .iter_mut()
                    .enumerate()
                    .map(|(t, part)| {
                        let from = (t * chunk).min(customers);
                        let to = ((t + 1) * chunk).min(customers);
                        scope.spawn(move || render_customers(view, from, to, exposition, part))
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|handle| handle.join().expect("a rendering thread does not panic"))
                    .collect()
            });
            let mut total = Rollup::new(exposition, windows.len());
            for part in rollups {
                total.merge(part);
            }
            total
        };
        for (family, head) in self.heads.iter_mut().enumerate() {
            head.clear();
            if exposition.families[family] {
                let (name, kind, help) = FAMILIES[family];
                write_header(head, name, kind, help);
            }
        }
        for buffer in &mut self.others.0 {
            buffer.clear();
        }
        if rollup.others > 0 {
            let mut prefix = Vec::new();
            customer_prefix(OTHER_CUSTOMER_ID, &mut prefix);
            let mut labels = Vec::new();
            let other = std::mem::take(&mut rollup.other);
            write_subject_selected(
                &mut self.others,
                metrics::CUSTOMER_FAMILIES,
                &prefix,
                windows,
                WindowFigures::new(&other, windows.len()),
                &mut labels,
                b"",
                exposition,
            );
        }
        self.tail.clear();
        render_tail(view, exposition, &rollup, &mut self.tail);

        let mut chunks = Vec::with_capacity(6 * (threads + 2) + 1);
        for family in 0..5 {
            chunks.push(self.heads[family].as_slice());
            for part in &self.parts {
                chunks.push(part.0[family].as_slice());
            }
            chunks.push(self.others.0[family].as_slice());
        }
        chunks.push(self.tail.as_slice());
        chunks
    }
}

impl Renderer {
    /// Returns the buffers of the last rendering as its chunks, in order, consuming the
    /// renderer: the text is handed over without a copy (an exposition of millions of series
    /// is gigabytes; a copy would double the memory).
    pub fn into_chunks(self) -> Vec<Vec<u8>> {
        let Renderer {
            heads,
            mut parts,
            others,
            tail,
            ..
        } = self;
        let mut chunks = Vec::with_capacity(6 * (parts.len() + 2) + 1);
        for (family, (head, other)) in heads.into_iter().zip(others.0).enumerate() {
            chunks.push(head);
            for part in &mut parts {
                chunks.push(std::mem::take(&mut part.0[family]));
            }
            chunks.push(other);
        }
        chunks.push(tail);
        chunks
    }
}

/// The portfolio families, the segments, the counters, the watermark and the customer
/// counts.
fn render_tail<V: GaugeView + ?Sized>(
    view: &V,
    exposition: &Exposition<'_>,
    rollup: &Rollup,
    out: &mut Vec<u8>,
) {
    let mut portfolio = FamilyBuffers::default();
    let names = metrics::PORTFOLIO_FAMILIES;
    let mut labels = Vec::new();
    write_subject(
        &mut portfolio,
        names,
        b"",
        view.window_labels(),
        view.portfolio(),
        &mut labels,
        b"",
    );
    for (family, buffer) in portfolio.0.iter().enumerate() {
        let (name, kind, help) = FAMILIES[5 + family];
        write_header(out, name, kind, help);
        out.extend_from_slice(buffer);
    }

    if let (Some(config), Some(segments)) = (exposition.segments, &rollup.segments) {
        write_segments(view.window_labels(), config, segments, b"", out);
    }

    let counters = view.counters();
    let (name, kind, help) = FAMILIES[10];
    write_header(out, name, kind, help);
    for event_type in EventType::ALL {
        for outcome in Outcome::ALL {
            let labels = format!(
                "event_type=\"{}\",outcome=\"{}\"",
                event_type.as_str(),
                outcome.as_str()
            );
            write_counter(
                out,
                name,
                labels.as_bytes(),
                counters.events(event_type, outcome),
            );
        }
    }
    let (name, kind, help) = FAMILIES[11];
    write_header(out, name, kind, help);
    for reason in RejectReason::ALL {
        let labels = format!("reason=\"{}\"", reason.as_str());
        write_counter(out, name, labels.as_bytes(), counters.rejected(reason));
    }
    let (name, kind, help) = FAMILIES[12];
    write_header(out, name, kind, help);
    if let Some(watermark) = view.watermark() {
        write_sample(out, name, b"", watermark.as_f64_seconds());
    }
    let (name, kind, help) = FAMILIES[13];
    write_header(out, name, kind, help);
    write_sample(out, name, b"", view.customer_count() as f64);
    let (name, kind, help) = FAMILIES[metrics::CUSTOMERS_EXPOSED_INDEX];
    write_header(out, name, kind, help);
    write_sample(out, name, b"", rollup.exposed as f64);
}

/// Writes the segment families: per tier the sums and ratios of its customers for every
/// window, then the customers per tier. `suffix` goes after each value (an OpenMetrics
/// timestamp, or nothing). Every tier is present, at 0 when empty.
pub(crate) fn write_segments(
    windows: &[String],
    config: &SegmentConfig,
    rollup: &SegmentRollup,
    suffix: &[u8],
    out: &mut Vec<u8>,
) {
    let mut buffers = FamilyBuffers::default();
    let mut prefix = Vec::new();
    let mut labels = Vec::new();
    for (tier, figures) in config.tiers.iter().zip(&rollup.tiers) {
        prefix.clear();
        prefix.extend_from_slice(b"segment=\"");
        escape_label_value(&tier.name, &mut prefix);
        prefix.extend_from_slice(b"\",");
        write_subject(
            &mut buffers,
            metrics::SEGMENT_FAMILIES,
            &prefix,
            windows,
            figures.figures(windows.len()),
            &mut labels,
            suffix,
        );
    }
    for (family, buffer) in buffers.0.iter().enumerate() {
        let (name, kind, help) = FAMILIES[metrics::SEGMENT_FAMILIES_INDEX + family];
        write_header(out, name, kind, help);
        out.extend_from_slice(buffer);
    }
    let (name, kind, help) = FAMILIES[metrics::SEGMENT_CUSTOMERS_INDEX];
    write_header(out, name, kind, help);
    for (tier, figures) in config.tiers.iter().zip(&rollup.tiers) {
        labels.clear();
        labels.extend_from_slice(b"segment=\"");
        escape_label_value(&tier.name, &mut labels);
        labels.push(b'"');
        out.extend_from_slice(name.as_bytes());
        out.push(b'{');
        out.extend_from_slice(&labels);
        out.extend_from_slice(b"} ");
        out.extend_from_slice(itoa::Buffer::new().format(figures.customers).as_bytes());
        out.extend_from_slice(suffix);
        out.push(b'\n');
    }
}

/// Appends the whole exposition to `out`: a one-shot [`Renderer`], everything exposed.
pub fn render_prometheus<V: GaugeView + ?Sized>(
    view: &V,
    options: RenderOptions,
    out: &mut Vec<u8>,
) {
    render_prometheus_with(view, options, &Exposition::EVERYTHING, out);
}

/// Appends the whole exposition to `out` with `exposition`'s budget and tiers: a one-shot
/// [`Renderer::render_with`].
pub fn render_prometheus_with<V: GaugeView + ?Sized>(
    view: &V,
    options: RenderOptions,
    exposition: &Exposition<'_>,
    out: &mut Vec<u8>,
) {
    let mut renderer = Renderer::new(options);
    let chunks = renderer.render_with(view, exposition);
    out.reserve(chunks.iter().map(|c| c.len()).sum());
    for chunk in chunks {
        out.extend_from_slice(chunk);
    }
}

fn write_counter(out: &mut Vec<u8>, name: &str, labels: &[u8], value: u64) {
    out.extend_from_slice(name.as_bytes());
    out.push(b'{');
    out.extend_from_slice(labels);
    out.extend_from_slice(b"} ");
    out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Shows the escaping rules of label values.
    #[test]
    fn escapes_label_values() {
        let mut out = Vec::new();
        escape_label_value("a\"b\\c\nd", &mut out);
        assert_eq!(out, b"a\\\"b\\\\c\\nd");
    }

    /// Shows that a decimal's written digits parse to exactly its nearest f64 (the value the
    /// f64 path gives), and are the same text as the f64 path up to 15 significant digits.
    #[test]
    fn writes_decimals_that_parse_to_their_nearest_f64() {
        use std::str::FromStr;
        for text in [
            "0",
            "-0.00",
            "1234.56",
            "4.0",
            "100",
            "0.1",
            "-2.5",
            "0.0001",
            "123456789012345",
            "0.820019195393105655",
            "0.666666666666666667",
            "-333333333332.3333333333333333",
            "123456789012345678",
            "0.1234567890123456789",
            "1000000000000000000000",
            "79228162514264337593543950335",
        ] {
            let value = Decimal::from_str(text).unwrap();
            let mut direct = Vec::new();
            write_amount(&mut direct, value);
            let parsed: f64 = std::str::from_utf8(&direct).unwrap().parse().unwrap();
            assert_eq!(
                parsed,
                to_f64(value),
                "{text}: the text denotes the nearest f64"
            );
            let significant = value
                .normalize()
                .mantissa()
                .unsigned_abs()
                .to_string()
                .len();
            if significant <= 15 && value.abs() >= Decimal::new(1, 4) || value.is_zero() {
                let mut via_f64 = Vec::new();
                write_value(&mut via_f64, to_f64(value));
                assert_eq!(direct, via_f64, "{text}: same text as the f64 path");
            }
        }
    }

    /// Shows the value formatting: shortest round trip, integers without `.0`.
    #[test]
    fn formats_values() {
        for (value, text) in [
            (0.0, "0"),
            (-0.0, "0"),
            (1234.56, "1234.56"),
            (100.0, "100"),
            (0.1, "0.1"),
            (-2.5, "-2.5"),
            (1e21, "1e21"),
        ] {
            let mut out = Vec::new();
            write_value(&mut out, value);
            assert_eq!(String::from_utf8(out).unwrap(), text);
        }
    }
}
