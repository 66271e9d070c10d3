//! The exposure budget and the ACV tiers through the Prometheus renderer (contract sections 7
//! and 8, issue 9): the exposed rows plus `__other__` equal the held customers exactly for
//! every family and window; the choice (ties, `customers_always`); the family and window
//! selection; every tier present and summing its customers.

use std::collections::{BTreeMap, HashSet};
use std::str::FromStr;

use marginstream_exporter::exposure::{self, ExposureConfig};
use marginstream_exporter::prometheus::{render_prometheus_with, Exposition};
use marginstream_exporter::segments::{SegmentConfig, SegmentRollup};
use marginstream_exporter::RenderOptions;
use marginstream_model::money::SLOTS;
use marginstream_model::{Counters, Figures, GaugeView, Timestamp, WindowFigures};
use proptest::prelude::*;
use rust_decimal::Decimal;

/// Customers in id order with their slot-major sums, and a portfolio that is their sum.
struct TestView {
    labels: Vec<String>,
    customers: Vec<(String, Vec<Decimal>)>,
    portfolio: Vec<Decimal>,
    counters: Counters,
}

impl TestView {
    /// `customers`: id and, per window, revenue and the five costs.
    fn new(labels: &[&str], customers: Vec<(String, Vec<[Decimal; SLOTS]>)>) -> TestView {
        let windows = labels.len();
        let mut sorted = customers;
        sorted.sort_by(|a, b| a.0.cmp(&b.0));
        sorted.dedup_by(|a, b| a.0 == b.0);
        let mut portfolio = vec![Decimal::ZERO; SLOTS * windows];
        let customers = sorted
            .into_iter()
            .map(|(id, per_window)| {
                let mut sums = vec![Decimal::ZERO; SLOTS * windows];
                for (window, figures) in per_window.iter().enumerate() {
                    for slot in 0..SLOTS {
                        sums[slot * windows + window] = figures[slot];
                        portfolio[slot * windows + window] += figures[slot];
                    }
                }
                (id, sums)
            })
            .collect();
        TestView {
            labels: labels.iter().map(|l| (*l).to_owned()).collect(),
            customers,
            portfolio,
            counters: Counters::default(),
        }
    }
}

impl GaugeView for TestView {
    fn window_labels(&self) -> &[String] {
        &self.labels
    }
    fn customer_count(&self) -> usize {
        self.customers.len()
    }
    fn customer(&self, index: usize) -> (&str, WindowFigures<'_>) {
        let (id, sums) = &self.customers[index];
        (id, WindowFigures::new(sums, self.labels.len()))
    }
    fn portfolio(&self) -> WindowFigures<'_> {
        WindowFigures::new(&self.portfolio, self.labels.len())
    }
    fn counters(&self) -> &Counters {
        &self.counters
    }
    fn watermark(&self) -> Option<Timestamp> {
        Some(Timestamp::from_seconds(1_767_225_600))
    }
}

fn decimal(text: &str) -> Decimal {
    Decimal::from_str(text).expect("a decimal")
}

/// Series (name and labels as written) to value text.
fn parse(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').expect("a sample line");
            (series.to_owned(), value.to_owned())
        })
        .collect()
}

/// Renders `view` with `config`'s choice and selection.
fn render(view: &TestView, config: &ExposureConfig, segments: Option<&SegmentConfig>) -> String {
    let chosen = exposure::choose(view, config);
    let exposed = |id: &str| chosen.contains(id);
    let exposition = Exposition {
        exposed: Some(&exposed),
        families: config.families,
        windows: &config.windows,
        segments,
    };
    let mut out = Vec::new();
    render_prometheus_with(view, RenderOptions { threads: 3 }, &exposition, &mut out);
    String::from_utf8(out).expect("the exposition is UTF-8")
}

fn budget(max: usize, windows: usize) -> ExposureConfig {
    ExposureConfig {
        customers_max: max,
        customers_always: Vec::new(),
        rank_window: windows - 1,
        families: [true; 5],
        windows: vec![true; windows],
    }
}

/// The customer label of a series, if any.
fn customer_of(series: &str) -> Option<&str> {
    let start = series.find("customer_id=\"")? + "customer_id=\"".len();
    let rest = &series[start..];
    Some(&rest[..rest.find("\",")?])
}

/// A series' key without its customer label: family and the other labels.
fn without_customer(series: &str) -> String {
    match customer_of(series) {
        Some(id) => series.replacen(&format!("customer_id=\"{id}\","), "", 1),
        None => series.to_owned(),
    }
}

/// Shows ties (equal revenue: the lower id first, by bytes), `customers_always` (held ones
/// first, in list order, within the budget; ids not held skipped) and a budget of 0.
#[test]
fn the_choice_follows_the_contract() {
    let figures = |revenue: &str| {
        vec![[
            decimal(revenue),
            Decimal::ZERO,
            Decimal::ZERO,
            Decimal::ZERO,
            Decimal::ZERO,
            Decimal::ZERO,
        ]]
    };
    let view = TestView::new(
        &["all"],
        vec![
            ("b".to_owned(), figures("100")),
            ("a".to_owned(), figures("100")),
            ("c".to_owned(), figures("100")),
            ("big".to_owned(), figures("500")),
            ("small".to_owned(), figures("1")),
            ("B".to_owned(), figures("100")),
        ],
    );
    let chosen = |max: usize, always: &[&str]| -> HashSet<String> {
        let mut config = budget(max, 1);
        config.customers_always = always.iter().map(|s| (*s).to_owned()).collect();
        exposure::choose(&view, &config)
    };
    let set = |ids: &[&str]| ids.iter().map(|s| (*s).to_owned()).collect::<HashSet<_>>();
    assert_eq!(
        chosen(3, &[]),
        set(&["big", "B", "a"]),
        "ties by id in byte order: B < a < b"
    );
    assert_eq!(chosen(2, &["small", "nobody"]), set(&["small", "big"]));
    assert_eq!(
        chosen(1, &["c", "small"]),
        set(&["c"]),
        "always, in list order, within the budget"
    );
    assert_eq!(chosen(0, &["c"]), HashSet::new(), "0 gives none");
    assert_eq!(chosen(6, &[]).len(), 6);
    assert_eq!(chosen(100, &[]).len(), 6);
}

/// Shows the family and window selection: only the selected per-customer families and
/// windows are written, for the exposed customers and for `__other__`; the portfolio is
/// never reduced.
#[test]
fn families_and_windows_are_selected() {
    let per_window = vec![
        [
            decimal("100"),
            decimal("20"),
            decimal("5"),
            Decimal::ZERO,
            Decimal::ZERO,
            Decimal::ZERO,
        ],
        [
            decimal("300"),
            decimal("60"),
            decimal("15"),
            Decimal::ZERO,
            Decimal::ZERO,
            Decimal::ZERO,
        ],
    ];
    let view = TestView::new(
        &["7d", "all"],
        vec![
            ("a".to_owned(), per_window.clone()),
            ("b".to_owned(), per_window.clone()),
            ("c".to_owned(), per_window),
        ],
    );
    let mut config = budget(1, 2);
    config.families = [true, false, true, false, false];
    config.windows = vec![false, true];
    let text = render(&view, &config, None);
    let series = parse(&text);
    assert!(
        series.keys().all(|k| !k.starts_with("marginstream_cost{")),
        "{text}"
    );
    assert!(series
        .keys()
        .all(|k| !k.starts_with("marginstream_gm_operating_ratio{")));
    assert!(series
        .keys()
        .all(|k| !k.contains("customer_id") || !k.contains("window=\"7d\"")));
    assert_eq!(
        series["marginstream_revenue{customer_id=\"a\",window=\"all\"}"],
        "300"
    );
    assert_eq!(
        series["marginstream_revenue{customer_id=\"__other__\",window=\"all\"}"],
        "600"
    );
    assert_eq!(
        series["marginstream_gm_market_ratio{customer_id=\"__other__\",window=\"all\"}"],
        "0.8"
    );
    assert_eq!(
        series["marginstream_portfolio_revenue{window=\"7d\"}"],
        "300"
    );
    assert_eq!(
        series["marginstream_portfolio_cost{window=\"7d\",cost_function=\"Infrastructure\"}"],
        "60"
    );
    assert_eq!(series["marginstream_customers_exposed"], "1");
    assert_eq!(series["marginstream_customers"], "3");
    assert!(
        !text.contains("# HELP marginstream_cost "),
        "an unselected family has no header"
    );
}

fn amount() -> impl Strategy<Value = Decimal> {
    prop_oneof![
        Just(Decimal::ZERO),
        (-10_000i64..100_000, 0u32..3).prop_map(|(m, s)| Decimal::new(m, s)),
    ]
}

fn customers(windows: usize) -> impl Strategy<Value = Vec<(String, Vec<[Decimal; SLOTS]>)>> {
    let figures = prop::collection::vec(prop::array::uniform6(amount()), windows);
    prop::collection::vec(("[a-e\"\\\\ü_]{1,4}", figures), 0..40)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Shows that for every family and window, the exposed customers' series plus the
    /// `__other__` row equal the sums over every held customer exactly (and so the
    /// portfolio minus the unattributed costs), with any budget; that `__other__` appears
    /// exactly when some held customer is not exposed, with ratios computed from its sums
    /// (absent while its revenue <= 0); and that every tier is present, its sums and counts
    /// those of its customers.
    #[test]
    fn exposed_rows_plus_other_equal_every_customer(
        customers in customers(3),
        max in 0usize..45,
        always in prop::collection::vec("[a-e]{1,2}", 0..3),
    ) {
        let labels = ["24h", "30d", "all"];
        let view = TestView::new(&labels, customers);
        let mut config = budget(max, 3);
        config.rank_window = 1;
        config.customers_always = always;
        let segments = SegmentConfig {
            tiers: SegmentConfig::default_tiers(),
            window: 1,
            window_seconds: 30 * 86_400,
        };
        let text = render(&view, &config, Some(&segments));
        let series = parse(&text);
        let chosen = exposure::choose(&view, &config);
        let held = view.customer_count();
        prop_assert!(chosen.len() <= max.min(held));
        let exposed_held = (0..held).filter(|i| chosen.contains(view.customer(*i).0)).count();
        prop_assert_eq!(series["marginstream_customers_exposed"].clone(), exposed_held.to_string());

        // Sum the rendered revenue and cost series over customer_id, per window (and
        // function), exactly.
        let mut rendered: BTreeMap<String, Decimal> = BTreeMap::new();
        let mut has_other = false;
        for (key, value) in &series {
            if key.starts_with("marginstream_revenue{") || key.starts_with("marginstream_cost{") {
                has_other |= customer_of(key) == Some("__other__");
                *rendered.entry(without_customer(key)).or_default() += decimal(value);
            }
        }
        prop_assert_eq!(has_other, exposed_held < held);
        for (window, label) in labels.iter().enumerate() {
            let mut total = Figures::default();
            for index in 0..held {
                total = total
                    .checked_add(&view.customer(index).1.window(window))
                    .expect("small sums");
            }
            let key = format!("marginstream_revenue{{window=\"{label}\"}}");
            if held > 0 {
                prop_assert_eq!(rendered.get(&key).copied(), Some(total.revenue()), "{}", key);
                for (slot, function) in marginstream_model::CostFunction::MARGIN.iter().enumerate() {
                    let key = format!("marginstream_cost{{window=\"{label}\",cost_function=\"{}\"}}", function.as_str());
                    prop_assert_eq!(rendered.get(&key).copied(), Some(total.0[slot + 1]), "{}", key);
                }
            }
            // __other__'s ratios come from its own sums.
            let other_revenue = series.get(&format!("marginstream_revenue{{customer_id=\"__other__\",window=\"{label}\"}}"));
            let other_ratio = series.get(&format!("marginstream_gm_market_ratio{{customer_id=\"__other__\",window=\"{label}\"}}"));
            if let Some(revenue) = other_revenue {
                prop_assert_eq!(other_ratio.is_some(), decimal(revenue) > Decimal::ZERO);
            }
        }

        // Every tier present; per tier, the customers and the sums of its customers.
        let rollup = SegmentRollup::of(&view, &segments);
        for (tier, figures) in segments.tiers.iter().zip(&rollup.tiers) {
            let count = format!("marginstream_segment_customers{{segment=\"{}\"}}", tier.name);
            prop_assert_eq!(series[&count].clone(), figures.customers.to_string());
            for (window, label) in labels.iter().enumerate() {
                let key = format!("marginstream_segment_revenue{{segment=\"{}\",window=\"{label}\"}}", tier.name);
                let mut expected = Decimal::ZERO;
                for index in 0..held {
                    let (_, f) = view.customer(index);
                    if segments.tier_of(f) == segments.tiers.iter().position(|t| t == tier).expect("a tier") {
                        expected += f.window(window).revenue();
                    }
                }
                prop_assert_eq!(decimal(&series[&key]), expected, "{}", key);
            }
        }
        let customers_in_tiers: u64 = rollup.tiers.iter().map(|t| t.customers).sum();
        prop_assert_eq!(customers_in_tiers, held as u64);
    }
}
