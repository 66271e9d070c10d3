//! The comparison of one ledger under two configurations (`replay --compare-config OLD`,
//! contract section 11): per customer and window the figures under OLD and NEW and the
//! change, the portfolio likewise, the counters under each, and the events that moved
//! between functions.
//!
//! - [`Moves`]: where each event went under each configuration ([`Destination`]), summed by
//!   (old, new) pair for the events that moved, and by line for the applied events whose
//!   amount changed in place (a rate corrected).
//! - [`render_compare_json`]: everything, exact decimal strings, in a fixed order.
//! - [`render_compare_table`]: one window for a terminal: the customers that changed,
//!   largest GM-O change first, the portfolio, the counters and the moves.
//!
//! A change is NEW − OLD. Amounts are exact; a ratio's change is the difference of the two
//! 18-place ratios, so exact too, and absent (JSON `null`, table `n/a`) when either side's
//! ratio is absent (revenue <= 0 there). A customer held under one configuration only has
//! zero figures under the other.
//!
//! ```json
//! {"watermark": "...", "watermark_seconds": 1773136800, "windows": ["24h", ...],
//!  "counters": {"events": {"Cost_Event": {"applied": {"old": 6, "new": 7, "change": 1}, ...}},
//!               "rejected": {"untagged_cost": {"old": 2, "new": 0, "change": -2}, ...}},
//!  "customers_held": {"old": 4, "new": 4}, "customers_changed": 3,
//!  "portfolio": {"24h": {"old": {...}, "new": {...}, "change": {...}}, ...},
//!  "moves": [{"old": "Onboarding", "new": "Excluded", "events": 3,
//!             "amount_old": "65", "amount_new": "65"}, ...],
//!  "repriced": [{"line": "Revenue", "events": 1, "amount_old": "550", "amount_new": "540"}],
//!  "customers": [{"customer_id": "acme", "held": {"old": true, "new": true}, "changed": true,
//!                 "windows": {"24h": {"old": {...}, "new": {...}, "change": {...}}, ...}}]}
//! ```
//!
//! `{...}` under `"old"` and `"new"` is [`figures_json`], the object `replay --format json`
//! prints; `"change"` has the same keys.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::io::Write;

use marginstream_model::{
    CostFunction, EventType, Figures, GaugeView, Line, Outcome, RejectReason, WindowFigures,
};
use rust_decimal::Decimal;
use serde_json::{json, Map, Value};

use crate::error::ExporterError;
use crate::json::figures_json;
use crate::table::{money, percent};

/// Where one event went under one configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Destination {
    /// Applied (on time or late) to revenue or to a cost function, `Excluded` included.
    Line(Line),
    /// A repeat of an applied `event_id`: not applied.
    Duplicate,
    /// Rejected with this reason.
    Rejected(RejectReason),
}

impl Destination {
    /// Returns the position in the report's order: revenue, the six functions in the
    /// contract's order, duplicate, then the rejection reasons in theirs.
    fn rank(self) -> usize {
        match self {
            Destination::Line(Line::Revenue) => 0,
            Destination::Line(Line::Cost(function)) => {
                1 + CostFunction::ALL
                    .iter()
                    .position(|f| *f == function)
                    .expect("every function is in CostFunction::ALL")
            }
            Destination::Duplicate => 1 + CostFunction::ALL.len(),
            Destination::Rejected(reason) => 2 + CostFunction::ALL.len() + reason.index(),
        }
    }

    /// Returns the name in the report: `Revenue`, a function's wire name (`Excluded`
    /// included), `duplicate`, or `rejected:` and the reason code (`rejected:untagged_cost`).
    pub fn name(self) -> String {
        match self {
            Destination::Line(Line::Revenue) => "Revenue".to_owned(),
            Destination::Line(Line::Cost(function)) => function.as_str().to_owned(),
            Destination::Duplicate => "duplicate".to_owned(),
            Destination::Rejected(reason) => format!("rejected:{}", reason.as_str()),
        }
    }
}

impl PartialOrd for Destination {
    fn partial_cmp(&self, other: &Destination) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Destination {
    fn cmp(&self, other: &Destination) -> Ordering {
        self.rank().cmp(&other.rank())
    }
}

/// A sum of amounts in the reporting currency of one configuration.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Total {
    sum: Decimal,
    /// Events that had an amount under this configuration.
    counted: u64,
    /// The sum left the decimal range (more than 7.9 × 10^28): it is not shown.
    overflowed: bool,
}

impl Total {
    fn add(&mut self, amount: Option<Decimal>) {
        if let Some(amount) = amount {
            self.counted += 1;
            match self.sum.checked_add(amount) {
                Some(sum) => self.sum = sum,
                None => self.overflowed = true,
            }
        }
    }

    /// Returns the sum; `None` when no event had an amount (its currency had no rate) or
    /// when the sum left the decimal range.
    fn value(&self) -> Option<Decimal> {
        (self.counted > 0 && !self.overflowed).then_some(self.sum)
    }
}

/// Events counted together and their amounts summed under each configuration.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Moved {
    /// How many events.
    pub events: u64,
    old: Total,
    new: Total,
}

impl Moved {
    /// Returns the sum of the events' amounts under OLD's rates: `None` when none had one
    /// (its currency had no rate there) or, never with a real ledger, when the sum exceeds
    /// the decimal range.
    pub fn amount_old(&self) -> Option<Decimal> {
        self.old.value()
    }

    /// Returns the sum of the events' amounts under NEW's rates, as [`Moved::amount_old`].
    pub fn amount_new(&self) -> Option<Decimal> {
        self.new.value()
    }
}

/// Where the events went under each configuration: the moves between destinations and the
/// amounts changed in place.
#[derive(Debug, Clone, Default)]
pub struct Moves {
    /// Events whose destination differs, by (old, new).
    moved: BTreeMap<(Destination, Destination), Moved>,
    /// Events applied to the same line under both whose amount differs (a rate changed),
    /// by line.
    repriced: BTreeMap<Destination, Moved>,
}

impl Moves {
    /// Records one event: where it went under each configuration and its amount in each
    /// reporting currency (`None` when its currency has no rate there). An event that went
    /// to the same place with the same amount under both is not recorded; nor is a
    /// rejection or duplicate whose amount differs, which changes no figure.
    pub fn record(
        &mut self,
        old: Destination,
        new: Destination,
        amount_old: Option<Decimal>,
        amount_new: Option<Decimal>,
    ) {
        let entry = if old != new {
            self.moved.entry((old, new)).or_default()
        } else if matches!(old, Destination::Line(_)) && amount_old != amount_new {
            self.repriced.entry(old).or_default()
        } else {
            return;
        };
        entry.events += 1;
        entry.old.add(amount_old);
        entry.new.add(amount_new);
    }

    /// Returns the events that moved, by (old, new) destination, in the report's order.
    pub fn moved(&self) -> impl Iterator<Item = (Destination, Destination, &Moved)> {
        self.moved
            .iter()
            .map(|((old, new), moved)| (*old, *new, moved))
    }

    /// Returns the applied events whose amount changed in place, by line.
    pub fn repriced(&self) -> impl Iterator<Item = (Destination, &Moved)> {
        self.repriced.iter().map(|(line, moved)| (*line, moved))
    }
}

/// The customers of both views, joined by id: each is at an index in OLD, in NEW, or both.
struct Joined {
    customers: Vec<(Option<usize>, Option<usize>)>,
}

impl Joined {
    /// Merges the two id-ordered customer lists.
    fn of<V: GaugeView + ?Sized>(old: &V, new: &V) -> Joined {
        let (mut o, mut n) = (0, 0);
        let mut customers = Vec::with_capacity(old.customer_count().max(new.customer_count()));
        while o < old.customer_count() || n < new.customer_count() {
            let order = match (o < old.customer_count(), n < new.customer_count()) {
                (true, true) => old.customer(o).0.cmp(new.customer(n).0),
                (true, false) => Ordering::Less,
                _ => Ordering::Greater,
            };
            customers.push(match order {
                Ordering::Less => (Some(o), None),
                Ordering::Greater => (None, Some(n)),
                Ordering::Equal => (Some(o), Some(n)),
            });
            o += usize::from(order != Ordering::Greater);
            n += usize::from(order != Ordering::Less);
        }
        Joined { customers }
    }
}

/// One customer of the comparison: its id and its figures under each configuration.
struct Pair<'a> {
    id: &'a str,
    old: Option<WindowFigures<'a>>,
    new: Option<WindowFigures<'a>>,
}

impl Pair<'_> {
    fn old_figures(&self, window: usize) -> Figures {
        self.old.map(|f| f.window(window)).unwrap_or_default()
    }

    fn new_figures(&self, window: usize) -> Figures {
        self.new.map(|f| f.window(window)).unwrap_or_default()
    }

    /// Whether anything differs: being held, or a figure in one of `windows` windows.
    fn changed(&self, windows: usize) -> bool {
        self.old.is_some() != self.new.is_some()
            || (0..windows).any(|w| self.old_figures(w) != self.new_figures(w))
    }
}

fn pair<'a, V: GaugeView + ?Sized>(
    old: &'a V,
    new: &'a V,
    (o, n): (Option<usize>, Option<usize>),
) -> Pair<'a> {
    let old = o.map(|index| old.customer(index));
    let new = n.map(|index| new.customer(index));
    Pair {
        id: old
            .map(|(id, _)| id)
            .or(new.map(|(id, _)| id))
            .expect("a joined customer is held under at least one configuration"),
        old: old.map(|(_, figures)| figures),
        new: new.map(|(_, figures)| figures),
    }
}

/// The change of one window's figures, NEW − OLD; ratios only where both sides have them.
struct Change {
    revenue: Option<Decimal>,
    cost: [Option<Decimal>; 5],
    gm_market: Option<Decimal>,
    gm_operating: Option<Decimal>,
    services_drag: Option<Decimal>,
}

impl Change {
    fn of(old: &Figures, new: &Figures) -> Change {
        let (o, n) = (old.ratios(), new.ratios());
        let ratio = |pick: fn(&marginstream_model::Ratios) -> Decimal| match (&o, &n) {
            (Some(o), Some(n)) => pick(n).checked_sub(pick(o)),
            _ => None,
        };
        Change {
            revenue: new.revenue().checked_sub(old.revenue()),
            cost: CostFunction::MARGIN.map(|f| new.cost(f).checked_sub(old.cost(f))),
            gm_market: ratio(|r| r.gm_market),
            gm_operating: ratio(|r| r.gm_operating),
            services_drag: ratio(|r| r.services_drag),
        }
    }

    fn services(&self) -> Option<Decimal> {
        self.cost[1..]
            .iter()
            .try_fold(Decimal::ZERO, |sum, cost| sum.checked_add((*cost)?))
    }

    fn json(&self) -> Value {
        let cost: Map<String, Value> = CostFunction::MARGIN
            .iter()
            .zip(&self.cost)
            .map(|(f, change)| (f.as_str().to_owned(), decimal(*change)))
            .collect();
        json!({
            "revenue": decimal(self.revenue),
            "cost": cost,
            "gm_market_ratio": decimal(self.gm_market),
            "gm_operating_ratio": decimal(self.gm_operating),
            "services_drag_ratio": decimal(self.services_drag),
        })
    }
}

fn decimal(value: Option<Decimal>) -> Value {
    value.map_or(Value::Null, |v| Value::String(v.normalize().to_string()))
}

/// Returns one window's `{"old": ..., "new": ..., "change": ...}`.
fn window_json(old: &Figures, new: &Figures) -> Value {
    json!({
        "old": figures_json(old),
        "new": figures_json(new),
        "change": Change::of(old, new).json(),
    })
}

fn count_json(old: u64, new: u64) -> Value {
    // Two's complement: exact for any difference below 2^63 in magnitude.
    json!({"old": old, "new": new, "change": new.wrapping_sub(old) as i64})
}

fn moved_json(moved: &Moved) -> Map<String, Value> {
    let mut object = Map::new();
    object.insert("events".to_owned(), json!(moved.events));
    object.insert("amount_old".to_owned(), decimal(moved.amount_old()));
    object.insert("amount_new".to_owned(), decimal(moved.amount_new()));
    object
}

/// Panics unless both views have the same windows (the configurations were checked to
/// agree before either engine ran).
fn same_windows<V: GaugeView + ?Sized>(old: &V, new: &V) {
    assert_eq!(
        old.window_labels(),
        new.window_labels(),
        "a comparison is of two configurations with the same windows"
    );
}

/// Writes the whole comparison as one JSON document followed by a newline: the watermark
/// (NEW's; the caller aligns both), the windows, the counters, the portfolio, the moves
/// and every customer held under either configuration, in id order.
///
/// # Panics
///
/// Panics if the two views have different windows.
pub fn render_compare_json<V: GaugeView + ?Sized>(
    old: &V,
    new: &V,
    moves: &Moves,
    out: &mut dyn Write,
) -> Result<(), ExporterError> {
    same_windows(old, new);
    let error = |source| ExporterError::Write {
        format: "json",
        source,
    };
    let labels = new.window_labels();
    let (oc, nc) = (old.counters(), new.counters());
    let events: Map<String, Value> = EventType::ALL
        .iter()
        .map(|t| {
            let outcomes: Map<String, Value> = Outcome::ALL
                .iter()
                .map(|o| {
                    let value = count_json(oc.events(*t, *o), nc.events(*t, *o));
                    (o.as_str().to_owned(), value)
                })
                .collect();
            (t.as_str().to_owned(), Value::Object(outcomes))
        })
        .collect();
    let rejected: Map<String, Value> = RejectReason::ALL
        .iter()
        .map(|r| {
            let value = count_json(oc.rejected(*r), nc.rejected(*r));
            (r.as_str().to_owned(), value)
        })
        .collect();
    let portfolio: Map<String, Value> = labels
        .iter()
        .enumerate()
        .map(|(w, label)| {
            let value = window_json(&old.portfolio().window(w), &new.portfolio().window(w));
            (label.clone(), value)
        })
        .collect();
    let moved: Vec<Value> = moves
        .moved()
        .map(|(from, to, moved)| {
            let mut object = Map::new();
            object.insert("old".to_owned(), json!(from.name()));
            object.insert("new".to_owned(), json!(to.name()));
            object.extend(moved_json(moved));
            Value::Object(object)
        })
        .collect();
    let repriced: Vec<Value> = moves
        .repriced()
        .map(|(line, moved)| {
            let mut object = Map::new();
            object.insert("line".to_owned(), json!(line.name()));
            object.extend(moved_json(moved));
            Value::Object(object)
        })
        .collect();
    let joined = Joined::of(old, new);
    let changed = joined
        .customers
        .iter()
        .filter(|c| pair(old, new, **c).changed(labels.len()))
        .count();
    let head = json!({
        "watermark": new.watermark().map(|t| t.to_rfc3339()),
        "watermark_seconds": new.watermark().map(|t| t.seconds),
        "windows": labels,
        "counters": {"events": events, "rejected": rejected},
        "customers_held": {"old": old.customer_count(), "new": new.customer_count()},
        "customers_changed": changed,
        "portfolio": portfolio,
        "moves": moved,
        "repriced": repriced,
    });
    // Stream the customers, as `render_json` does, so that a million never sit in one
    // `Value`.
    let head = serde_json::to_string(&head).map_err(|e| error(e.into()))?;
    out.write_all(&head.as_bytes()[..head.len() - 1])
        .map_err(error)?;
    out.write_all(b",\"customers\":[").map_err(error)?;
    for (index, customer) in joined.customers.iter().enumerate() {
        let customer = pair(old, new, *customer);
        let windows: Map<String, Value> = labels
            .iter()
            .enumerate()
            .map(|(w, label)| {
                (
                    label.clone(),
                    window_json(&customer.old_figures(w), &customer.new_figures(w)),
                )
            })
            .collect();
        let value = json!({
            "customer_id": customer.id,
            "held": {"old": customer.old.is_some(), "new": customer.new.is_some()},
            "changed": customer.changed(labels.len()),
            "windows": windows,
        });
        if index > 0 {
            out.write_all(b",").map_err(error)?;
        }
        serde_json::to_writer(&mut *out, &value).map_err(|e| error(e.into()))?;
    }
    out.write_all(b"]}\n").map_err(error)
}

/// A change of amount with its sign: `+28.76`, `-10.00`, `0.00`; `n/a` when absent.
fn money_change(value: Option<Decimal>) -> String {
    match value {
        None => "n/a".to_owned(),
        Some(v) if v.round_dp(2) > Decimal::ZERO => format!("+{}", money(v)),
        Some(v) if v.round_dp(2) < Decimal::ZERO => money(v),
        Some(_) => "0.00".to_owned(),
    }
}

/// A change of ratio in percentage points, one decimal, with its sign: `+5.0pp`; `n/a`
/// when either side is absent.
fn points(value: Option<Decimal>) -> String {
    match value.map(|v| (v * Decimal::ONE_HUNDRED).round_dp(1)) {
        None => "n/a".to_owned(),
        Some(v) if v > Decimal::ZERO => format!("+{v:.1}pp"),
        Some(v) if v < Decimal::ZERO => format!("{v:.1}pp"),
        Some(_) => "0.0pp".to_owned(),
    }
}

/// One row of the customer table.
fn customer_row(name: &str, old: &Figures, new: &Figures) -> Vec<String> {
    let change = Change::of(old, new);
    let (o, n) = (old.ratios(), new.ratios());
    vec![
        name.to_owned(),
        money(old.revenue()),
        money(new.revenue()),
        money_change(change.cost[0]),
        money_change(change.services()),
        percent(o.map(|r| r.gm_market)),
        percent(n.map(|r| r.gm_market)),
        points(change.gm_market),
        percent(o.map(|r| r.gm_operating)),
        percent(n.map(|r| r.gm_operating)),
        points(change.gm_operating),
        points(change.services_drag),
    ]
}

/// Writes rows as columns: the first left-aligned, the others right-aligned, a rule under
/// the header; with `last`, `note` (if any) after the rows before it, then a rule before it.
fn write_columns(
    rows: &[Vec<String>],
    last: Option<(usize, Option<&str>)>,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    let columns = rows[0].len();
    let widths: Vec<usize> = (0..columns)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let rule = "-".repeat(widths.iter().sum::<usize>() + 2 * (columns - 1));
    for (index, row) in rows.iter().enumerate() {
        if let Some((at, note)) = last {
            if index == at {
                if let Some(note) = note {
                    writeln!(out, "{note}")?;
                }
                writeln!(out, "{rule}")?;
            }
        }
        let mut text = format!("{:<width$}", row[0], width = widths[0]);
        for (cell, width) in row[1..].iter().zip(&widths[1..]) {
            text.push_str(&format!("  {cell:>width$}"));
        }
        writeln!(out, "{}", text.trim_end())?;
        if index == 0 {
            writeln!(out, "{rule}")?;
        }
    }
    Ok(())
}

/// Writes the comparison of `window` for a terminal: the customers whose figures changed
/// there (or that are held under one configuration only), largest absolute GM-O change
/// first (then GM-M change, then id; those without a GM-O change on both sides, revenue
/// <= 0 under either, last by id), at most `limit` of them; the portfolio; the counters
/// that are not zero under both; the events that moved and the amounts repriced. Amounts
/// are rounded to cents here; the JSON has them exact.
///
/// # Panics
///
/// Panics if the two views have different windows.
pub fn render_compare_table<V: GaugeView + ?Sized>(
    old: &V,
    new: &V,
    moves: &Moves,
    window: &str,
    limit: Option<usize>,
    out: &mut dyn Write,
) -> Result<(), ExporterError> {
    same_windows(old, new);
    let labels = new.window_labels();
    let Some(w) = labels.iter().position(|l| l == window) else {
        return Err(ExporterError::UnknownWindow {
            window: window.to_owned(),
            known: labels.join(", "),
        });
    };
    let joined = Joined::of(old, new);
    // GM-O moves with every reclassification between a COGS function and another or
    // `Excluded`; GM-M only with `Infrastructure`. So GM-O ranks, GM-M breaks ties.
    let mut changed: Vec<(Option<Decimal>, Option<Decimal>, usize)> = joined
        .customers
        .iter()
        .enumerate()
        .filter_map(|(index, customer)| {
            let customer = pair(old, new, *customer);
            let (o, n) = (customer.old_figures(w), customer.new_figures(w));
            let held_differs = customer.old.is_some() != customer.new.is_some();
            (o != n || held_differs).then(|| {
                let change = Change::of(&o, &n);
                (
                    change.gm_operating.map(|d| d.abs()),
                    change.gm_market.map(|d| d.abs()),
                    index,
                )
            })
        })
        .collect();
    changed.sort_by(|a, b| match (a.0, b.0) {
        (Some(x), Some(y)) => y.cmp(&x).then(b.1.cmp(&a.1)).then(a.2.cmp(&b.2)),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => a.2.cmp(&b.2),
    });
    let shown = limit.unwrap_or(changed.len()).min(changed.len());
    let error = |source| ExporterError::Write {
        format: "table",
        source,
    };

    writeln!(
        out,
        "window {window}: {} of {} customers changed, largest GM-O change first (NEW - OLD)",
        changed.len(),
        joined.customers.len()
    )
    .map_err(error)?;
    let mut rows = vec![[
        "customer",
        "revenue old",
        "revenue new",
        "Δinfrastructure",
        "Δservices",
        "GM-M old",
        "GM-M new",
        "ΔGM-M",
        "GM-O old",
        "GM-O new",
        "ΔGM-O",
        "Δdrag",
    ]
    .map(str::to_owned)
    .to_vec()];
    for (_, _, index) in &changed[..shown] {
        let customer = pair(old, new, joined.customers[*index]);
        rows.push(customer_row(
            customer.id,
            &customer.old_figures(w),
            &customer.new_figures(w),
        ));
    }
    let more =
        (shown < changed.len()).then(|| format!("… {} more customers", changed.len() - shown));
    let portfolio_at = rows.len();
    rows.push(customer_row(
        "PORTFOLIO",
        &old.portfolio().window(w),
        &new.portfolio().window(w),
    ));
    write_columns(&rows, Some((portfolio_at, more.as_deref())), out).map_err(error)?;

    writeln!(out).map_err(error)?;
    let mut rows = vec![["counter", "old", "new", "change"]
        .map(str::to_owned)
        .to_vec()];
    let (oc, nc) = (old.counters(), new.counters());
    let count_row = |name: String, o: u64, n: u64| {
        let change = n.wrapping_sub(o) as i64;
        (o != 0 || n != 0).then(|| {
            vec![
                name,
                o.to_string(),
                n.to_string(),
                if change > 0 {
                    format!("+{change}")
                } else {
                    change.to_string()
                },
            ]
        })
    };
    for t in EventType::ALL {
        for o in Outcome::ALL {
            let name = format!("{} {}", t.as_str(), o.as_str());
            rows.extend(count_row(name, oc.events(t, o), nc.events(t, o)));
        }
    }
    for r in RejectReason::ALL {
        let name = format!("rejected {}", r.as_str());
        rows.extend(count_row(name, oc.rejected(r), nc.rejected(r)));
    }
    write_columns(&rows, None, out).map_err(error)?;

    writeln!(out).map_err(error)?;
    let amount = |value: Option<Decimal>| value.map_or_else(|| "n/a".to_owned(), money);
    let moved: Vec<Vec<String>> = moves
        .moved()
        .map(|(from, to, moved)| {
            vec![
                format!("{} -> {}", from.name(), to.name()),
                moved.events.to_string(),
                amount(moved.amount_old()),
                amount(moved.amount_new()),
            ]
        })
        .collect();
    if moved.is_empty() {
        writeln!(out, "no event moved between functions").map_err(error)?;
    } else {
        let mut rows = vec![["moved (old -> new)", "events", "amount old", "amount new"]
            .map(str::to_owned)
            .to_vec()];
        rows.extend(moved);
        write_columns(&rows, None, out).map_err(error)?;
    }
    let repriced: Vec<Vec<String>> = moves
        .repriced()
        .map(|(line, moved)| {
            let change = match (moved.amount_old(), moved.amount_new()) {
                (Some(o), Some(n)) => n.checked_sub(o),
                _ => None,
            };
            vec![
                line.name(),
                moved.events.to_string(),
                amount(moved.amount_old()),
                amount(moved.amount_new()),
                money_change(change),
            ]
        })
        .collect();
    if !repriced.is_empty() {
        writeln!(out).map_err(error)?;
        let mut rows = vec![[
            "repriced (same line, other rate)",
            "events",
            "amount old",
            "amount new",
            "change",
        ]
        .map(str::to_owned)
        .to_vec()];
        rows.extend(repriced);
        write_columns(&rows, None, out).map_err(error)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Shows that moves are kept apart from amounts changed in place, that an event that
    /// went to the same place with the same amount is not recorded, and that a sum with no
    /// amount (no rate) or beyond the decimal range is absent, not wrong.
    #[test]
    fn records_moves_and_repricing() {
        let onboarding = Destination::Line(Line::Cost(CostFunction::Onboarding));
        let excluded = Destination::Line(Line::Cost(CostFunction::Excluded));
        let untagged = Destination::Rejected(RejectReason::UntaggedCost);
        let currency = Destination::Rejected(RejectReason::UnsupportedCurrency);
        let d = |text: &str| Some(text.parse::<Decimal>().unwrap());
        let mut moves = Moves::default();
        moves.record(onboarding, excluded, d("50"), d("50"));
        moves.record(onboarding, excluded, d("10.5"), d("10.5"));
        moves.record(onboarding, onboarding, d("7"), d("7"));
        moves.record(untagged, untagged, d("1"), d("2"));
        moves.record(onboarding, onboarding, d("22"), d("21.6"));
        moves.record(currency, excluded, None, d("3"));
        moves.record(excluded, onboarding, Some(Decimal::MAX), Some(Decimal::MAX));
        moves.record(excluded, onboarding, Some(Decimal::MAX), d("1"));

        let moved: Vec<_> = moves
            .moved()
            .map(|(o, n, m)| (o.name(), n.name(), m.events, m.amount_old(), m.amount_new()))
            .collect();
        assert_eq!(
            moved,
            vec![
                (
                    "Onboarding".into(),
                    "Excluded".into(),
                    2,
                    d("60.5"),
                    d("60.5")
                ),
                ("Excluded".into(), "Onboarding".into(), 2, None, None),
                (
                    "rejected:unsupported_currency".into(),
                    "Excluded".into(),
                    1,
                    None,
                    d("3")
                ),
            ]
        );
        let repriced: Vec<_> = moves
            .repriced()
            .map(|(l, m)| (l.name(), m.events, m.amount_old(), m.amount_new()))
            .collect();
        assert_eq!(repriced, vec![("Onboarding".into(), 1, d("22"), d("21.6"))]);
    }
}
