//! Tests of the history writer against a reference rendering written the obvious way: all
//! steps in memory, series by series.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use marginstream_model::money::SLOTS;
use marginstream_model::{CostFunction, Counters, Figures, GaugeView, Timestamp, WindowFigures};
use proptest::prelude::*;
use rust_decimal::Decimal;

use super::*;
use crate::metrics::{self, Kind, FAMILIES};
use crate::prometheus::{escape_label_value, write_amount};

/// One step's state: customers in id order, each with figures per window.
#[derive(Debug, Clone)]
struct FakeView {
    stamp: i64,
    labels: Vec<String>,
    ids: Vec<String>,
    /// Per customer, slot-major sums, as the engine lays them out.
    sums: Vec<Vec<Decimal>>,
    /// Every customer plus the unattributed costs, slot-major.
    portfolio: Vec<Decimal>,
    /// Unattributed costs per window.
    unattributed: Vec<Figures>,
    watermark: Option<i64>,
    counters: Counters,
}

fn slot_major(figures: &[Figures]) -> Vec<Decimal> {
    let windows = figures.len();
    let mut sums = vec![Decimal::ZERO; SLOTS * windows];
    for (window, f) in figures.iter().enumerate() {
        for slot in 0..SLOTS {
            sums[slot * windows + window] = f.0[slot];
        }
    }
    sums
}

impl FakeView {
    fn new(
        stamp: i64,
        labels: &[String],
        customers: BTreeMap<String, Vec<Figures>>,
        unattributed: Vec<Figures>,
        watermark: Option<i64>,
    ) -> FakeView {
        let mut portfolio = unattributed.clone();
        for figures in customers.values() {
            for (total, f) in portfolio.iter_mut().zip(figures) {
                *total = total.checked_add(f).unwrap();
            }
        }
        FakeView {
            stamp,
            labels: labels.to_vec(),
            ids: customers.keys().cloned().collect(),
            sums: customers.values().map(|f| slot_major(f)).collect(),
            portfolio: slot_major(&portfolio),
            unattributed,
            watermark,
            counters: Counters::default(),
        }
    }

    fn figures_of(&self, id: &str, window: usize) -> Option<Figures> {
        let index = self.ids.iter().position(|i| i == id)?;
        Some(self.customer(index).1.window(window))
    }
}

impl GaugeView for FakeView {
    fn window_labels(&self) -> &[String] {
        &self.labels
    }

    fn customer_count(&self) -> usize {
        self.ids.len()
    }

    fn customer(&self, index: usize) -> (&str, WindowFigures<'_>) {
        (
            &self.ids[index],
            WindowFigures::new(&self.sums[index], self.labels.len()),
        )
    }

    fn portfolio(&self) -> WindowFigures<'_> {
        WindowFigures::new(&self.portfolio, self.labels.len())
    }

    fn counters(&self) -> &Counters {
        &self.counters
    }

    fn watermark(&self) -> Option<Timestamp> {
        self.watermark.map(Timestamp::from_seconds)
    }
}

/// Writes `steps` through a [`HistoryWriter`] with `limits` and returns the text and stats.
fn write_history(
    steps: &[FakeView],
    selection: &SeriesSelection,
    limits: SpoolLimits,
) -> (String, HistoryStats) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("history.om");
    let mut writer = HistoryWriter::create_with(&path, limits).unwrap();
    for step in steps {
        writer
            .snapshot(step, Timestamp::from_seconds(step.stamp))
            .unwrap();
    }
    let stats = writer.finish_measured(selection).unwrap();
    assert!(
        !dir.path().join("history.om.parts").exists(),
        "the spool is removed"
    );
    (std::fs::read_to_string(&path).unwrap(), stats)
}

/// The value of family `position` (customer-family order) for one cost function, or `None`
/// for an absent ratio.
fn value_of(figures: &Figures, position: usize, function: Option<CostFunction>) -> Option<Decimal> {
    match position {
        0 => Some(figures.revenue()),
        1 => Some(figures.cost(function.expect("a cost has a function"))),
        _ => figures.ratios().map(|r| match position {
            2 => r.gm_market,
            3 => r.gm_operating,
            _ => r.services_drag,
        }),
    }
}

/// A row of a figure family: its first label, and its figures at a step (if it has any).
type Row<'a> = (
    String,
    Box<dyn Fn(&FakeView, usize) -> Option<Figures> + 'a>,
);

/// The history written the obvious way: every step in memory, series by series.
fn reference(steps: &[FakeView], selection: &SeriesSelection) -> String {
    let labels: Vec<String> = steps.first().map(|s| s.labels.clone()).unwrap_or_default();
    let ids: BTreeSet<&str> = steps
        .iter()
        .flat_map(|s| s.ids.iter().map(String::as_str))
        .collect();
    let mut out = Vec::new();
    let line = |out: &mut Vec<u8>, name: &str, labels: &str, value: Decimal, stamp: i64| {
        out.extend_from_slice(name.as_bytes());
        if !labels.is_empty() {
            out.extend_from_slice(format!("{{{labels}}}").as_bytes());
        }
        out.push(b' ');
        write_amount(out, value);
        out.extend_from_slice(format!(" {stamp}\n").as_bytes());
    };
    let quoted = |value: &str| {
        let mut text = Vec::new();
        escape_label_value(value, &mut text);
        format!("\"{}\"", String::from_utf8(text).unwrap())
    };
    let figure_rows =
        |out: &mut Vec<u8>, name: &str, position: usize, rows: &[Row<'_>], windows: &[bool]| {
            for (first, figures_at) in rows {
                for (window, label) in labels.iter().enumerate() {
                    if !windows[window] {
                        continue;
                    }
                    let functions: Vec<Option<CostFunction>> = if position == 1 {
                        CostFunction::MARGIN.into_iter().map(Some).collect()
                    } else {
                        vec![None]
                    };
                    for function in functions {
                        let mut series = first.clone();
                        if !series.is_empty() {
                            series.push(',');
                        }
                        series.push_str(&format!("window={}", quoted(label)));
                        if let Some(function) = function {
                            series.push_str(&format!(",cost_function=\"{}\"", function.as_str()));
                        }
                        for step in steps {
                            if let Some(value) = figures_at(step, window)
                                .and_then(|f| value_of(&f, position, function))
                            {
                                line(out, name, &series, value, step.stamp);
                            }
                        }
                    }
                }
            }
        };
    for (name, kind, help) in FAMILIES {
        if kind != Kind::Gauge {
            continue;
        }
        if let Some(position) = metrics::CUSTOMER_FAMILIES.iter().position(|f| *f == name) {
            if !selection.families[position] {
                continue;
            }
            write_header(&mut out, name, kind, help);
            let mut rows: Vec<Row<'_>> = ids
                .iter()
                .filter(|id| selection.is_exposed(id))
                .map(|id| -> Row<'_> {
                    (
                        format!("customer_id={}", quoted(id)),
                        Box::new(move |step: &FakeView, window| step.figures_of(id, window)),
                    )
                })
                .collect();
            if !selection.exposes_everyone() {
                rows.push((
                    "customer_id=\"__other__\"".to_owned(),
                    Box::new(|step: &FakeView, window| {
                        let others: Vec<Figures> = step
                            .ids
                            .iter()
                            .filter(|id| !selection.is_exposed(id))
                            .map(|id| step.figures_of(id, window).unwrap())
                            .collect();
                        (!others.is_empty()).then(|| {
                            others
                                .iter()
                                .fold(Figures::default(), |sum, f| sum.checked_add(f).unwrap())
                        })
                    }),
                ));
            }
            figure_rows(&mut out, name, position, &rows, &selection.windows);
        } else if let Some(position) = metrics::PORTFOLIO_FAMILIES.iter().position(|f| *f == name) {
            write_header(&mut out, name, kind, help);
            let rows: Vec<Row<'_>> = vec![(
                String::new(),
                Box::new(|step: &FakeView, window| Some(step.portfolio().window(window))),
            )];
            figure_rows(&mut out, name, position, &rows, &vec![true; labels.len()]);
        } else if name == metrics::WATERMARK_TIMESTAMP_SECONDS {
            write_header(&mut out, name, kind, help);
            for step in steps {
                let watermark = step.watermark.unwrap_or(step.stamp);
                line(&mut out, name, "", Decimal::from(watermark), step.stamp);
            }
        } else if name == metrics::CUSTOMERS {
            write_header(&mut out, name, kind, help);
            for step in steps {
                line(
                    &mut out,
                    name,
                    "",
                    Decimal::from(step.ids.len()),
                    step.stamp,
                );
            }
        } else if name == metrics::CUSTOMERS_EXPOSED
            || metrics::SEGMENT_FAMILIES.contains(&name)
            || name == metrics::SEGMENT_CUSTOMERS
        {
            // Not in a history without tiers; the count of exposed customers is never.
            continue;
        } else {
            panic!("the reference knows no gauge {name}");
        }
    }
    out.extend_from_slice(b"# EOF\n");
    String::from_utf8(out).unwrap()
}

/// Ids that need escaping, or are not ASCII, in byte order with plain ones.
const IDS: [&str; 7] = [
    "a",
    "acme \"co\" 0",
    "b\\c",
    "line\nbreak",
    "m",
    "müller-gmbh",
    "z",
];
const WINDOWS: [&str; 3] = ["24h", "7d", "all"];

fn amount() -> impl Strategy<Value = Decimal> {
    (-2_000i64..20_000, 0u32..=2).prop_map(|(m, scale)| Decimal::new(m, scale))
}

fn figures() -> impl Strategy<Value = Figures> {
    prop::array::uniform6(amount()).prop_map(Figures)
}

fn unattributed() -> impl Strategy<Value = Figures> {
    prop::array::uniform5(amount()).prop_map(|costs| {
        let mut f = Figures::default();
        f.0[1..].copy_from_slice(&costs);
        f
    })
}

/// Steps of 1 to 3 windows, each holding some of [`IDS`] with random figures.
fn steps(max_steps: usize) -> impl Strategy<Value = Vec<FakeView>> {
    (1usize..=3).prop_flat_map(move |windows| {
        let labels: Vec<String> = WINDOWS[WINDOWS.len() - windows..]
            .iter()
            .map(|w| w.to_string())
            .collect();
        let step = (
            prop::collection::btree_map(
                prop::sample::select(IDS.to_vec()).prop_map(str::to_owned),
                prop::collection::vec(figures(), windows),
                0..=IDS.len(),
            ),
            prop::collection::vec(unattributed(), windows),
            prop::option::of(0i64..100),
        );
        prop::collection::vec(step, 0..=max_steps).prop_map(move |steps| {
            steps
                .into_iter()
                .enumerate()
                .map(|(index, (customers, unattributed, lag))| {
                    let stamp = 1_780_444_800 + 3_600 * index as i64;
                    FakeView::new(
                        stamp,
                        &labels,
                        customers,
                        unattributed,
                        lag.map(|l| stamp - l),
                    )
                })
                .collect()
        })
    })
}

fn selection(windows: usize) -> impl Strategy<Value = SeriesSelection> {
    (
        prop::option::of(prop::collection::hash_set(
            prop::sample::select(IDS.to_vec()).prop_map(str::to_owned),
            0..=IDS.len(),
        )),
        prop::array::uniform5(any::<bool>()),
        prop::collection::vec(any::<bool>(), windows),
    )
        .prop_map(|(exposed, families, windows)| SeriesSelection {
            exposed,
            families,
            windows,
        })
}

fn window_count(steps: &[FakeView]) -> usize {
    steps.first().map_or(0, |s| s.labels.len())
}

/// One sample line: the series (`name{labels}`), its value and stamp.
struct Sample<'a> {
    series: &'a str,
    value: &'a str,
    stamp: i64,
}

fn samples(text: &str) -> Vec<Sample<'_>> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .map(|line| {
            let (rest, stamp) = line.rsplit_once(' ').unwrap();
            let (series, value) = rest.rsplit_once(' ').unwrap();
            Sample {
                series,
                value,
                stamp: stamp.parse().unwrap(),
            }
        })
        .collect()
}

fn family_of(series: &str) -> &str {
    series.split(['{', ' ']).next().unwrap()
}

/// Returns the label `name` of a series, read from its end (an escaped customer id cannot
/// hold `,name="` with a bare quote).
fn label<'a>(series: &'a str, name: &str) -> Option<&'a str> {
    let start = [format!(",{name}=\""), format!("{{{name}=\"")]
        .iter()
        .filter_map(|p| series.rfind(p.as_str()).map(|at| at + p.len()))
        .max()?;
    let rest = &series[start..];
    Some(&rest[..rest.find('"').unwrap()])
}

/// Checks the structure every history must have: families once each, in [`FAMILIES`]
/// order; each series' samples together, stamps strictly increasing; `# EOF` last.
fn assert_grouped(text: &str) {
    assert!(text.ends_with("# EOF\n"), "ends with # EOF");
    let order: Vec<&str> = FAMILIES.iter().map(|f| f.0).collect();
    let mut families_seen = Vec::new();
    let mut series_seen = HashSet::new();
    let mut current: Option<(&str, i64)> = None;
    for sample in samples(text) {
        let family = family_of(sample.series);
        if families_seen.last() != Some(&family) {
            assert!(
                !families_seen.contains(&family),
                "family {family} is contiguous"
            );
            families_seen.push(family);
        }
        match current {
            Some((series, stamp)) if series == sample.series => {
                assert!(stamp < sample.stamp, "{series}: samples in time order");
            }
            _ => assert!(
                series_seen.insert(sample.series),
                "{} is contiguous",
                sample.series
            ),
        }
        current = Some((sample.series, sample.stamp));
    }
    let positions: Vec<usize> = families_seen
        .iter()
        .map(|f| order.iter().position(|o| o == f).unwrap())
        .collect();
    assert!(
        positions.windows(2).all(|p| p[0] < p[1]),
        "families in FAMILIES order"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Shows that the writer writes exactly the reference history, whatever the steps,
    /// customers (coming and going, ids that need escaping), selection and spool limits
    /// (small fan-ins and buffers of a few bytes force merges, refills and re-reads): the
    /// order of families and series, each series' samples together and in time order,
    /// exact values, the `__other__` row exactly at the steps holding a customer not
    /// exposed, and ratios absent while revenue <= 0.
    #[test]
    fn writes_the_reference_history(
        (steps, selection) in steps(12).prop_flat_map(|steps| {
            let windows = window_count(&steps);
            (Just(steps), selection(windows))
        }),
        fan_in in 2usize..=4,
        buffer_bytes in 8usize..=200,
    ) {
        let (text, stats) = write_history(&steps, &selection, SpoolLimits { fan_in, buffer_bytes });
        prop_assert_eq!(stats.snapshots, steps.len() as u64);
        assert_grouped(&text);
        prop_assert_eq!(&text, &reference(&steps, &selection));
    }

    /// Shows the sum rule of contract section 7: for every step, window and line (revenue
    /// and each cost function), the exposed customers' rows plus `__other__` equal the
    /// portfolio minus the unattributed costs, exactly.
    #[test]
    fn exposed_rows_and_other_add_up_to_the_portfolio(
        (steps, exposed) in steps(8).prop_flat_map(|steps| {
            (Just(steps), prop::collection::hash_set(
                prop::sample::select(IDS.to_vec()).prop_map(str::to_owned), 0..=IDS.len()))
        }),
    ) {
        let windows = window_count(&steps);
        let selection = SeriesSelection {
            exposed: Some(exposed),
            ..SeriesSelection::all(windows)
        };
        let (text, _) = write_history(&steps, &selection, SpoolLimits { fan_in: 3, buffer_bytes: 64 });
        // (family, window, cost function, stamp) -> sum over customer_id.
        let mut sums: BTreeMap<(String, String, String, i64), Decimal> = BTreeMap::new();
        for sample in samples(&text) {
            let family = family_of(sample.series);
            if family != metrics::REVENUE && family != metrics::COST {
                continue;
            }
            let key = (
                family.to_owned(),
                label(sample.series, "window").unwrap().to_owned(),
                label(sample.series, "cost_function").unwrap_or("").to_owned(),
                sample.stamp,
            );
            let value: Decimal = sample.value.parse().unwrap();
            let sum = sums.entry(key).or_default();
            *sum = sum.checked_add(value).unwrap();
        }
        for step in &steps {
            for (window, label) in step.labels.iter().enumerate() {
                let portfolio = step.portfolio().window(window);
                let attributed = portfolio.revenue();
                let sum = sums
                    .get(&(metrics::REVENUE.to_owned(), label.clone(), String::new(), step.stamp))
                    .copied();
                if step.ids.is_empty() {
                    prop_assert_eq!(sum, None);
                    continue;
                }
                prop_assert_eq!(sum, Some(attributed), "revenue, {} at {}", label, step.stamp);
                for function in CostFunction::MARGIN {
                    let expected = portfolio.cost(function) - step.unattributed[window].cost(function);
                    let key = (metrics::COST.to_owned(), label.clone(), function.as_str().to_owned(), step.stamp);
                    prop_assert_eq!(sums.get(&key).copied(), Some(expected), "{:?}", key);
                }
            }
        }
    }
}

/// Builds a deterministic history of `count` steps over `customers` customers, some coming
/// and going, with `windows` windows.
fn many_steps(count: usize, customers: usize, windows: usize) -> Vec<FakeView> {
    let labels: Vec<String> = WINDOWS[WINDOWS.len() - windows..]
        .iter()
        .map(|w| w.to_string())
        .collect();
    (0..count)
        .map(|step| {
            let held = (0..customers)
                .filter(|c| (c + step) % 7 != 0)
                .map(|c| {
                    let figures = (0..windows)
                        .map(|w| {
                            let base = (c * 31 + step * 7 + w) as i64;
                            Figures([
                                Decimal::new(base * 100 - 500, 2),
                                Decimal::new(base, 1),
                                Decimal::new(base % 13, 0),
                                Decimal::ZERO,
                                Decimal::new(3, 0),
                                Decimal::new(base % 5, 3),
                            ])
                        })
                        .collect();
                    (format!("customer-{c:05}"), figures)
                })
                .collect();
            let stamp = 1_780_444_800 + 3_600 * step as i64;
            FakeView::new(
                stamp,
                &labels,
                held,
                vec![Figures::default(); windows],
                None,
            )
        })
        .collect()
}

/// Shows, on 150 steps with the default limits (one merge level: 150 runs become 3), that
/// each series is contiguous and in time order and that the text is the reference's.
#[test]
fn series_are_contiguous_and_in_time_order() {
    let steps = many_steps(150, 12, 3);
    let selection = SeriesSelection {
        exposed: Some(
            (0..12)
                .step_by(2)
                .map(|c| format!("customer-{c:05}"))
                .collect(),
        ),
        ..SeriesSelection::all(3)
    };
    let (text, _) = write_history(&steps, &selection, SpoolLimits::DEFAULT);
    assert_grouped(&text);
    assert_eq!(text, reference(&steps, &selection));
    let revenue: Vec<Sample<'_>> = samples(&text)
        .into_iter()
        .filter(|s| {
            s.series == r#"marginstream_revenue{customer_id="customer-00000",window="24h"}"#
        })
        .collect();
    assert_eq!(revenue.len(), 150 - 22, "held at 128 of the 150 steps");
}

/// Shows that there is no `__other__` row when every customer is exposed, named or not,
/// and that the output is then the same.
#[test]
fn no_other_row_when_everyone_is_exposed() {
    let steps = many_steps(20, 6, 2);
    let everyone = SeriesSelection::all(2);
    let named = SeriesSelection {
        exposed: Some((0..6).map(|c| format!("customer-{c:05}")).collect()),
        ..SeriesSelection::all(2)
    };
    let limits = SpoolLimits {
        fan_in: 4,
        buffer_bytes: 256,
    };
    let (all, _) = write_history(&steps, &everyone, limits);
    let (by_name, _) = write_history(&steps, &named, limits);
    assert!(!all.contains("__other__"));
    assert_eq!(all, by_name);
}

/// Shows that ratio series are absent while revenue <= 0, for a customer and for
/// `__other__` (whose revenue is the sum of the customers not exposed), and that the
/// `__other__` row appears only at steps holding a customer not exposed.
#[test]
fn ratios_absent_while_revenue_is_not_positive() {
    let labels = vec!["all".to_owned()];
    let revenue = |value: i64| {
        Figures([
            Decimal::from(value),
            Decimal::ONE,
            0.into(),
            0.into(),
            0.into(),
            0.into(),
        ])
    };
    let view = |step: i64, a: i64, b: Option<i64>| {
        let mut customers = BTreeMap::from([("a".to_owned(), vec![revenue(a)])]);
        if let Some(b) = b {
            customers.insert("b".to_owned(), vec![revenue(b)]);
        }
        FakeView::new(
            100 * step,
            &labels,
            customers,
            vec![Figures::default()],
            None,
        )
    };
    let steps = vec![
        view(1, 10, Some(0)),
        view(2, 0, Some(7)),
        view(3, -5, Some(-1)),
        view(4, 4, None),
    ];
    let selection = SeriesSelection {
        exposed: Some(HashSet::from(["a".to_owned()])),
        ..SeriesSelection::all(1)
    };
    let (text, _) = write_history(&steps, &selection, SpoolLimits::DEFAULT);
    let stamps = |series: &str| -> Vec<i64> {
        samples(&text)
            .iter()
            .filter(|s| s.series == series)
            .map(|s| s.stamp)
            .collect()
    };
    assert_eq!(
        stamps(r#"marginstream_revenue{customer_id="a",window="all"}"#),
        [100, 200, 300, 400]
    );
    assert_eq!(
        stamps(r#"marginstream_gm_market_ratio{customer_id="a",window="all"}"#),
        [100, 400]
    );
    assert_eq!(
        stamps(r#"marginstream_revenue{customer_id="__other__",window="all"}"#),
        [100, 200, 300]
    );
    assert_eq!(
        stamps(r#"marginstream_gm_market_ratio{customer_id="__other__",window="all"}"#),
        [200]
    );
    assert_eq!(
        stamps(r#"marginstream_services_drag_ratio{customer_id="__other__",window="all"}"#),
        [200]
    );
    assert!(text.contains("marginstream_gm_market_ratio{customer_id=\"__other__\",window=\"all\"} 0.857142857142857143 200\n"), "{text}");
}

/// Shows that the writer's buffers stay within [`buffer_bytes_max`] however many steps and
/// customers there are: with 4-run merges through 4 KiB buffers, 200 steps (three merge
/// levels: 200 runs, 50, 13, 4) of 300 customers hold no more than 16 steps (4 runs, no
/// merge) of 30 customers, and no more than the bound. The spool on disk, twice while a
/// level is merged, stays a fraction of the text it becomes.
#[test]
fn memory_stays_within_the_bound() {
    let limits = SpoolLimits {
        fan_in: 4,
        buffer_bytes: 4 << 10,
    };
    // Everyone but one customer: the `__other__` pass runs too.
    let selection = |customers: usize| SeriesSelection {
        exposed: Some((1..customers).map(|c| format!("customer-{c:05}")).collect()),
        ..SeriesSelection::all(1)
    };
    let (_, small) = write_history(&many_steps(16, 30, 1), &selection(30), limits);
    let (_, large) = write_history(&many_steps(200, 300, 1), &selection(300), limits);
    let bound = buffer_bytes_max(limits);
    assert!(
        small.meter.buffer_bytes_peak <= bound,
        "{small:?} within {bound}"
    );
    assert!(
        large.meter.buffer_bytes_peak <= bound,
        "{large:?} within {bound}"
    );
    assert!(
        large.meter.buffer_bytes_peak <= small.meter.buffer_bytes_peak,
        "more steps and customers take no more memory: {large:?} against {small:?}"
    );
    assert!(
        large.meter.disk_bytes_peak < large.output_bytes / 4,
        "the spool is a fraction of the text: {large:?}"
    );
}

/// Shows that a selection must name as many windows as the history has.
#[test]
fn refuses_a_selection_of_other_windows() {
    let steps = many_steps(2, 2, 2);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("history.om");
    let mut writer = HistoryWriter::create(&path).unwrap();
    for step in &steps {
        writer
            .snapshot(step, Timestamp::from_seconds(step.stamp))
            .unwrap();
    }
    let error = writer.finish(&SeriesSelection::all(3)).unwrap_err();
    assert!(
        matches!(
            error,
            ExporterError::SelectionWindows {
                expected: 2,
                given: 3
            }
        ),
        "{error}"
    );
    assert!(
        !dir.path().join("history.om.parts").exists(),
        "the spool is removed on failure too"
    );
}

/// Shows that every gauge family of the contract has a source in the history, so a new one
/// cannot be left out silently: the one exception is `marginstream_customers_exposed`, a
/// property of an exposition (how many customers it gave series), not of the ledger.
#[test]
fn every_gauge_family_has_a_source() {
    for (name, kind, _) in FAMILIES {
        if kind != Kind::Gauge || name == metrics::CUSTOMERS_EXPOSED {
            continue;
        }
        let customers = metrics::CUSTOMER_FAMILIES.contains(&name);
        let sources = STEP_SOURCES
            .iter()
            .chain(&[StepSource::Segments, StepSource::SegmentCustomers])
            .filter(|s| s.renders(name).is_some())
            .count();
        assert_eq!(
            usize::from(customers) + sources,
            1,
            "{name} has exactly one source"
        );
    }
}

/// Shows an empty history: the headers and `# EOF`, whatever the selection.
#[test]
fn writes_headers_only_without_snapshots() {
    let (text, stats) = write_history(&[], &SeriesSelection::all(0), SpoolLimits::DEFAULT);
    assert_eq!(stats.snapshots, 0);
    assert_eq!(text.matches("# TYPE").count(), 12);
    assert!(samples(&text).is_empty());
}

/// Shows the segment families of contract section 8 in a history with tiers: every tier at
/// every step, its customers counted and its sums those of its customers, series contiguous
/// and in time order, tiers by name.
#[test]
fn writes_the_segments_at_every_step() {
    let steps = many_steps(30, 9, 2);
    let config = crate::segments::SegmentConfig {
        tiers: crate::segments::SegmentConfig::default_tiers(),
        window: 0,
        window_seconds: 7 * 86_400,
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("history.om");
    let mut writer = HistoryWriter::create(&path)
        .unwrap()
        .with_segments(config.clone())
        .unwrap();
    for step in &steps {
        writer
            .snapshot(step, Timestamp::from_seconds(step.stamp))
            .unwrap();
    }
    writer.finish(&SeriesSelection::all(2)).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert_grouped(&text);
    let samples = samples(&text);
    for step in &steps {
        let rollup = crate::segments::SegmentRollup::of(step, &config);
        for (tier, figures) in config.tiers.iter().zip(&rollup.tiers) {
            let at_step = |family: &str, window: Option<&str>| -> Option<Decimal> {
                samples
                    .iter()
                    .find(|s| {
                        s.stamp == step.stamp
                            && family_of(s.series) == family
                            && label(s.series, "segment") == Some(tier.name.as_str())
                            && label(s.series, "window") == window
                            && label(s.series, "cost_function").is_none()
                    })
                    .map(|s| s.value.parse().unwrap())
            };
            assert_eq!(
                at_step(metrics::SEGMENT_CUSTOMERS, None),
                Some(Decimal::from(figures.customers)),
                "{} customers at {}",
                tier.name,
                step.stamp
            );
            for (window, label_text) in step.labels.iter().enumerate() {
                assert_eq!(
                    at_step(metrics::SEGMENT_REVENUE, Some(label_text)),
                    Some(figures.figures(step.labels.len()).window(window).revenue()),
                    "{} revenue in {label_text} at {}",
                    tier.name,
                    step.stamp
                );
            }
        }
    }
    let names: Vec<&str> = samples
        .iter()
        .filter(|s| family_of(s.series) == metrics::SEGMENT_CUSTOMERS)
        .filter_map(|s| label(s.series, "segment"))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(names, ["enterprise", "mid_market", "self_serve", "smb"]);
}
