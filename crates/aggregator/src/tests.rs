//! Unit and property tests of the engine, driven through message bytes as the application
//! drives it: [`Preparer::prepare`], then [`Engine::record`] with the wall clock passed in.
//!
//! The unit tests pin each rule of contract sections 2 to 5 on hand-checked numbers. The
//! property tests check the invariants on random ledgers, above all that the engine's figures
//! equal those of a naive reference model that applies the contract's formula to the set of
//! applied events (`reference_model_agrees`).

use std::collections::{BTreeMap, HashMap, HashSet};

use marginstream_model::{
    Bucket, CostFunction, Currency, DurationSpec, EventKey, EventType, Figures, GaugeView, Line,
    Outcome, ParseLimits, RejectReason, Timestamp,
};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::Config as ProptestConfig;
use rust_decimal::Decimal;

use crate::{AggregatorError, ClockMode, Engine, EngineConfig, Preparer, Tagger, TaggingRule};

const MINUTE: i64 = 60;
const HOUR: i64 = 3_600;
const DAY: i64 = 86_400;

/// 2026-01-01T00:00:00Z: the start of a bucket for every bucket length used here.
const T0: i64 = 1_767_225_600;

/// The window labels of the default configuration.
const DEFAULT_LABELS: [&str; 4] = ["24h", "7d", "30d", "all"];

fn ts(seconds: i64) -> Timestamp {
    Timestamp::from_seconds(seconds)
}

fn money(text: &str) -> Decimal {
    text.parse().expect("test amounts are valid decimals")
}

fn duration(text: &str) -> DurationSpec {
    DurationSpec::parse(text).expect("test durations are valid")
}

/// Builds figures from the revenue and some costs.
fn figures(revenue: &str, costs: &[(CostFunction, &str)]) -> Figures {
    let mut figures = Figures::default();
    figures.0[0] = money(revenue);
    for (function, amount) in costs {
        let slot = Line::Cost(*function)
            .slot()
            .expect("figures hold the five margin functions");
        figures.0[slot] += money(amount);
    }
    figures
}

/// Revenue figures only, one per window label.
fn revenues(amounts: &[&str]) -> Vec<Figures> {
    amounts.iter().map(|amount| figures(amount, &[])).collect()
}

fn rfc3339(seconds: i64) -> String {
    ts(seconds).to_rfc3339()
}

/// A revenue event in USD.
fn revenue(id: &str, customer: &str, at: i64, amount: &str) -> String {
    format!(
        r#"{{"event_type":"Revenue_Event","event_id":"{id}","customer_id":"{customer}","occurred_at":"{}","amount":"{amount}","currency":"USD"}}"#,
        rfc3339(at)
    )
}

/// A cost event in USD with an explicit `cost_function`; `customer` `None` is unattributed.
fn cost(id: &str, customer: Option<&str>, at: i64, amount: &str, function: &str) -> String {
    let customer = customer.map_or("null".to_owned(), |c| format!("\"{c}\""));
    format!(
        r#"{{"event_type":"Cost_Event","event_id":"{id}","customer_id":{customer},"occurred_at":"{}","amount":"{amount}","currency":"USD","cost_function":"{function}"}}"#,
        rfc3339(at)
    )
}

/// A cost event in USD tagged by its `category` only (or by nothing when `None`).
fn cost_in(id: &str, customer: &str, at: i64, amount: &str, category: Option<&str>) -> String {
    let category = category.map_or(String::new(), |c| format!(r#","category":"{c}""#));
    format!(
        r#"{{"event_type":"Cost_Event","event_id":"{id}","customer_id":"{customer}","occurred_at":"{}","amount":"{amount}","currency":"USD"{category}}}"#,
        rfc3339(at)
    )
}

/// The application's loop in miniature: prepare, then record or count the rejection.
struct Harness {
    preparer: Preparer,
    engine: Engine,
    /// The wall clock passed to `record`: far in the future unless a test sets it.
    now: Timestamp,
}

impl Harness {
    fn new(config: EngineConfig) -> Harness {
        Harness::with_tagger(config, Tagger::default())
    }

    /// Reporting currency USD; 1 EUR = 1.1 USD and 1 JPY = 0.0067 USD.
    fn with_tagger(config: EngineConfig, tagger: Tagger) -> Harness {
        let rates = HashMap::from([
            (Currency::parse("EUR").expect("valid code"), money("1.1")),
            (Currency::parse("JPY").expect("valid code"), money("0.0067")),
        ]);
        Harness {
            preparer: Preparer::new(
                ParseLimits::default(),
                tagger,
                Currency::parse("USD").expect("valid code"),
                rates,
            ),
            engine: Engine::new(&config).expect("test configurations are valid"),
            now: ts(T0 + 1_000 * DAY),
        }
    }

    fn send(&mut self, json: &str) -> Result<Outcome, RejectReason> {
        match self.preparer.prepare(json.as_bytes()) {
            Ok(prepared) => self
                .engine
                .record(prepared, self.now)
                .map_err(|rejection| rejection.reason),
            Err(rejection) => {
                self.engine.count_rejection(rejection.reason);
                Err(rejection.reason)
            }
        }
    }

    /// Sends an event that must be applied with `outcome`.
    fn expect(&mut self, json: &str, outcome: Outcome) {
        assert_eq!(self.send(json), Ok(outcome), "{json}");
    }

    fn figures(&mut self, customer: &str) -> Option<Vec<Figures>> {
        self.engine.view().customer_figures(customer)
    }

    fn customer(&mut self, customer: &str) -> Vec<Figures> {
        self.figures(customer)
            .unwrap_or_else(|| panic!("customer {customer} is held"))
    }

    fn portfolio(&mut self) -> Vec<Figures> {
        self.engine.view().portfolio().to_vec()
    }

    fn customer_count(&mut self) -> usize {
        self.engine.view().customer_count()
    }

    fn events(&self, event_type: EventType, outcome: Outcome) -> u64 {
        self.engine.counters().events(event_type, outcome)
    }

    fn rejected(&self, reason: RejectReason) -> u64 {
        self.engine.counters().rejected(reason)
    }
}

/// Shows that the default configuration has the contract's labels.
#[test]
fn default_configuration_has_the_contract_windows() {
    let engine = Engine::new(&EngineConfig::default()).expect("the defaults are valid");
    assert_eq!(engine.labels(), DEFAULT_LABELS);
    assert_eq!(engine.bucket_seconds(), HOUR);
    assert_eq!(engine.watermark(), None);
}

/// Shows that an engine configuration breaking an invariant is refused: a bucket under a
/// minute, a window that is not a whole number of buckets, a window listed twice, no window at
/// all, and a dedup horizon shorter than the longest window plus one bucket.
#[test]
fn invalid_configurations_are_refused() {
    let base = EngineConfig::default();
    let cases = [
        EngineConfig {
            bucket: duration("30s"),
            ..base.clone()
        },
        EngineConfig {
            windows: vec![duration("90m")],
            ..base.clone()
        },
        EngineConfig {
            windows: vec![duration("24h"), duration("1d")],
            ..base.clone()
        },
        EngineConfig {
            windows: vec![],
            lifetime: false,
            ..base.clone()
        },
        EngineConfig {
            dedup_horizon: Some(duration("30d")),
            ..base.clone()
        },
    ];
    for config in cases {
        assert!(
            matches!(Engine::new(&config), Err(AggregatorError::Config(_))),
            "{config:?} must be refused"
        );
    }
    let longest_plus_one = EngineConfig {
        dedup_horizon: Some(duration("721h")),
        ..base
    };
    assert!(Engine::new(&longest_plus_one).is_ok());
}

/// Shows window membership exactly per contract section 4, `floor(T) - W < floor(e) <=
/// floor(T)`, at the edges of each bucket. With T = floor(T) + 30 min, each event gets a
/// power of two, so every sum names its members:
///
/// | event at            | amount | 24h | 7d | 30d | all |
/// |---------------------|--------|-----|----|-----|-----|
/// | T                   | 1      | x   | x  | x   | x   |
/// | floor(T)            | 2      | x   | x  | x   | x   |
/// | floor(T) - 23h + 59:59 | 4   | x   | x  | x   | x   |
/// | floor(T) - 23h      | 8      | x   | x  | x   | x   |
/// | floor(T) - 24h + 59:59 | 16  |     | x  | x   | x   |
/// | floor(T) - 24h      | 32     |     | x  | x   | x   |
/// | floor(T) - 7d + 1h  | 64     |     | x  | x   | x   |
/// | floor(T) - 7d + 59:59 | 128  |     |    | x   | x   |
/// | floor(T) - 30d + 1h | 256    |     |    | x   | x   |
/// | floor(T) - 30d + 59:59 | 512 |     |    |     | x (late) |
///
/// So 24h = 15, 7d = 127, 30d = 511, all = 1023.
#[test]
fn window_membership_follows_the_contract_formula() {
    let mut harness = Harness::new(EngineConfig::default());
    let floor_t = T0 + 30 * DAY + 10 * HOUR;
    harness.expect(
        &revenue("t", "c", floor_t + 30 * MINUTE, "1"),
        Outcome::Applied,
    );
    let members = [
        (floor_t, "2", Outcome::Applied),
        (floor_t - 23 * HOUR + HOUR - 1, "4", Outcome::Applied),
        (floor_t - 23 * HOUR, "8", Outcome::Applied),
        (floor_t - 24 * HOUR + HOUR - 1, "16", Outcome::Applied),
        (floor_t - 24 * HOUR, "32", Outcome::Applied),
        (floor_t - 7 * DAY + HOUR, "64", Outcome::Applied),
        (floor_t - 7 * DAY + HOUR - 1, "128", Outcome::Applied),
        (floor_t - 30 * DAY + HOUR, "256", Outcome::Applied),
        (floor_t - 30 * DAY + HOUR - 1, "512", Outcome::Late),
    ];
    for (index, (at, amount, outcome)) in members.into_iter().enumerate() {
        harness.expect(&revenue(&format!("e{index}"), "c", at, amount), outcome);
    }
    assert_eq!(harness.engine.watermark(), Some(ts(floor_t + 30 * MINUTE)));
    assert_eq!(
        harness.customer("c"),
        revenues(&["15", "127", "511", "1023"])
    );
    assert_eq!(harness.portfolio(), revenues(&["15", "127", "511", "1023"]));
    assert_eq!(harness.events(EventType::Revenue, Outcome::Applied), 9);
    assert_eq!(harness.events(EventType::Revenue, Outcome::Late), 1);
}

/// Shows the windows sliding as the watermark advances: an event in bucket B leaves 24h
/// exactly when floor(T) reaches B + 24h, 7d at B + 7d and 30d at B + 30d, and stays in all.
/// The watermark is moved by another customer's events.
#[test]
fn windows_slide_as_the_watermark_advances() {
    let mut harness = Harness::new(EngineConfig::default());
    let bucket = T0 + 10 * HOUR;
    harness.expect(
        &revenue("e", "c", bucket + 30 * MINUTE, "100"),
        Outcome::Applied,
    );
    let steps = [
        // (watermark, revenue of c per window)
        (bucket + 24 * HOUR - 1, ["100", "100", "100", "100"]),
        (bucket + 24 * HOUR, ["0", "100", "100", "100"]),
        (bucket + 7 * DAY - 1, ["0", "100", "100", "100"]),
        (bucket + 7 * DAY, ["0", "0", "100", "100"]),
        (bucket + 30 * DAY - 1, ["0", "0", "100", "100"]),
        (bucket + 30 * DAY, ["0", "0", "0", "100"]),
        (bucket + 300 * DAY, ["0", "0", "0", "100"]),
    ];
    for (index, (watermark, expected)) in steps.into_iter().enumerate() {
        harness.expect(
            &revenue(&format!("clock{index}"), "clock", watermark, "1"),
            Outcome::Applied,
        );
        assert_eq!(harness.engine.watermark(), Some(ts(watermark)));
        assert_eq!(
            harness.customer("c"),
            revenues(&expected),
            "at step {index}"
        );
    }
}

/// Shows that when the watermark jumps over several buckets at once, each entry that leaves a
/// window is subtracted exactly once, whatever the number of the customer's buckets and lines
/// leaving together. Revenue 1, 10, 100 in three consecutive buckets and a cost of 5 in the
/// middle one; then T jumps two days: 24h is empty, 7d keeps 111 and 5.
#[test]
fn a_jump_over_many_buckets_subtracts_each_entry_once() {
    let mut harness = Harness::new(EngineConfig::default());
    for (index, amount) in ["1", "10", "100"].into_iter().enumerate() {
        let at = T0 + index as i64 * HOUR + 5 * MINUTE;
        harness.expect(
            &revenue(&format!("r{index}"), "c", at, amount),
            Outcome::Applied,
        );
    }
    harness.expect(
        &cost("k", Some("c"), T0 + HOUR, "5", "Support"),
        Outcome::Applied,
    );
    let all = figures("111", &[(CostFunction::Support, "5")]);
    assert_eq!(harness.customer("c"), vec![all; 4]);
    harness.expect(
        &revenue("clock", "other", T0 + 2 * DAY, "1"),
        Outcome::Applied,
    );
    let empty = Figures::default();
    assert_eq!(harness.customer("c"), vec![empty, all, all, all]);
    assert_eq!(
        harness.portfolio()[0],
        figures("1", &[]),
        "only the clock's revenue is left in the portfolio's 24h"
    );
}

/// Shows that an event older than every finite window on arrival is counted `late` and added
/// to `all` only: with T = T0 + 40d, an event at T0 is 40 days old.
#[test]
fn late_events_count_only_in_all() {
    let mut harness = Harness::new(EngineConfig::default());
    harness.expect(
        &revenue("now", "c", T0 + 40 * DAY, "1000"),
        Outcome::Applied,
    );
    harness.expect(&revenue("old", "c", T0, "7"), Outcome::Late);
    harness.expect(
        &cost("old-cost", Some("c"), T0, "3", "Infrastructure"),
        Outcome::Late,
    );
    let now = figures("1000", &[]);
    let all = figures("1007", &[(CostFunction::Infrastructure, "3")]);
    assert_eq!(harness.customer("c"), vec![now, now, now, all]);
    assert_eq!(harness.portfolio(), vec![now, now, now, all]);
    assert_eq!(harness.events(EventType::Revenue, Outcome::Late), 1);
    assert_eq!(harness.events(EventType::Cost, Outcome::Late), 1);
    assert_eq!(harness.events(EventType::Revenue, Outcome::Applied), 1);
    assert_eq!(harness.events(EventType::Cost, Outcome::Applied), 0);
    // A late event never moves the watermark back.
    assert_eq!(harness.engine.watermark(), Some(ts(T0 + 40 * DAY)));
}

/// Shows that a late arrival that still falls in the 30d window is added there (and to all)
/// and counted `applied`: 10 days before T it is outside 24h and 7d only.
#[test]
fn a_late_arrival_inside_the_30d_window_is_applied_there() {
    let mut harness = Harness::new(EngineConfig::default());
    harness.expect(
        &revenue("now", "c", T0 + 40 * DAY, "1000"),
        Outcome::Applied,
    );
    harness.expect(
        &revenue("ten-days", "c", T0 + 30 * DAY, "25"),
        Outcome::Applied,
    );
    assert_eq!(
        harness.customer("c"),
        revenues(&["1000", "1000", "1025", "1025"])
    );
    assert_eq!(harness.events(EventType::Revenue, Outcome::Late), 0);
    // And it leaves 30d on time: at floor(T) = T0 + 60d its bucket T0 + 30d is out, while
    // the 1000 of T0 + 40d is still in.
    harness.expect(&revenue("later", "d", T0 + 60 * DAY, "1"), Outcome::Applied);
    assert_eq!(harness.customer("c"), revenues(&["0", "0", "1000", "1025"]));
}

/// Shows that a repeat of an applied `event_id` is not applied again, even with a different
/// amount, time or type, and is counted `duplicate` under the repeat's event type.
#[test]
fn duplicates_are_not_applied_again() {
    let mut harness = Harness::new(EngineConfig::default());
    harness.expect(&revenue("e1", "c", T0, "100"), Outcome::Applied);
    harness.expect(&revenue("e1", "c", T0, "100"), Outcome::Duplicate);
    harness.expect(&revenue("e1", "c", T0 + HOUR, "999"), Outcome::Duplicate);
    harness.expect(&revenue("e1", "d", T0, "1"), Outcome::Duplicate);
    harness.expect(
        &cost("e1", Some("c"), T0, "50", "Infrastructure"),
        Outcome::Duplicate,
    );
    assert_eq!(harness.customer("c"), revenues(&["100"; 4]));
    assert_eq!(
        harness.figures("d"),
        None,
        "a duplicate creates no customer"
    );
    assert_eq!(harness.customer_count(), 1);
    assert_eq!(harness.events(EventType::Revenue, Outcome::Duplicate), 3);
    assert_eq!(harness.events(EventType::Cost, Outcome::Duplicate), 1);
    assert_eq!(harness.events(EventType::Revenue, Outcome::Applied), 1);
    assert_eq!(
        harness.engine.watermark(),
        Some(ts(T0)),
        "a duplicate moves no clock"
    );
}

/// Shows that with the default configuration an event id is remembered at least as far back
/// as the longest window plus one bucket (721 one-hour buckets): a repeat arriving when
/// floor(T) is 720 buckets past the original's bucket is still a duplicate, with the watermark
/// moved an hour at a time so that the dedup index is swept on the way. Much later, the id is
/// forgotten, which bounds the index.
#[test]
fn duplicates_are_remembered_for_the_longest_window_plus_one_bucket() {
    let mut harness = Harness::new(EngineConfig::default());
    let original = revenue("e", "c", T0 + 10 * MINUTE, "100");
    harness.expect(&original, Outcome::Applied);
    for hour in 1..=720 {
        harness.expect(
            &revenue(&format!("clock{hour}"), "clock", T0 + hour * HOUR, "1"),
            Outcome::Applied,
        );
    }
    assert!(harness.engine.remembers(EventKey::of("e")));
    harness.expect(&original, Outcome::Duplicate);
    assert_eq!(harness.customer("c")[3], figures("100", &[]));
    // 900 buckets on, past the horizon and the next sweep, the id is forgotten.
    for hour in 721..=900 {
        harness.expect(
            &revenue(&format!("clock{hour}"), "clock", T0 + hour * HOUR, "1"),
            Outcome::Applied,
        );
    }
    assert!(!harness.engine.remembers(EventKey::of("e")));
    assert!(harness.engine.remembers(EventKey::of("clock900")));
}

/// Shows that the id of a rejected event blocks nothing: a later valid event with the same id
/// is applied, whether the rejection came from the preparer (currency, tagging) or from the
/// engine (future guard, customer limit).
#[test]
fn a_rejected_event_does_not_block_its_id() {
    let mut harness = Harness::new(EngineConfig {
        max_customers: 1,
        ..EngineConfig::default()
    });
    harness.now = ts(T0 + DAY);
    let gbp = revenue("a", "c", T0, "5").replace("USD", "GBP");
    assert_eq!(harness.send(&gbp), Err(RejectReason::UnsupportedCurrency));
    assert_eq!(
        harness.send(&cost_in("b", "c", T0, "5", Some("lunch"))),
        Err(RejectReason::UntaggedCost)
    );
    assert_eq!(
        harness.send(&revenue("f", "c", T0 + 2 * DAY, "5")),
        Err(RejectReason::FutureEvent)
    );
    harness.expect(&revenue("first", "c", T0, "1"), Outcome::Applied);
    assert_eq!(
        harness.send(&revenue("l", "d", T0, "5")),
        Err(RejectReason::CustomerLimit)
    );
    for id in ["a", "b", "f", "l"] {
        assert!(!harness.engine.remembers(EventKey::of(id)), "{id}");
        harness.expect(&revenue(id, "c", T0, "10"), Outcome::Applied);
    }
    assert_eq!(harness.customer("c")[3], figures("41", &[]));
}

/// Shows that a cost without a customer (absent or null `customer_id`) counts in the
/// portfolio only, and creates no customer.
#[test]
fn unattributed_costs_count_only_in_the_portfolio() {
    let mut harness = Harness::new(EngineConfig::default());
    harness.expect(&revenue("r", "c", T0, "1000"), Outcome::Applied);
    harness.expect(
        &cost("k1", None, T0, "300", "Infrastructure"),
        Outcome::Applied,
    );
    let absent = cost("k2", None, T0, "40", "Support").replace(r#""customer_id":null,"#, "");
    assert!(!absent.contains("customer_id"));
    harness.expect(&absent, Outcome::Applied);
    assert_eq!(harness.customer("c"), vec![figures("1000", &[]); 4]);
    assert_eq!(harness.customer_count(), 1);
    let portfolio = figures(
        "1000",
        &[
            (CostFunction::Infrastructure, "300"),
            (CostFunction::Support, "40"),
        ],
    );
    assert_eq!(harness.portfolio(), vec![portfolio; 4]);
    // The portfolio's ratios: GM-M = 700/1000, drag = 40/1000, GM-O = 0.66.
    let ratios = portfolio.ratios().expect("revenue is positive");
    assert_eq!(ratios.gm_market, money("0.7"));
    assert_eq!(ratios.services_drag, money("0.04"));
    assert_eq!(ratios.gm_operating, money("0.66"));
}

/// Shows that an `Excluded` cost, named or tagged from its category, is applied (counted,
/// moves the watermark, is remembered) but counts in no figure and creates no customer.
#[test]
fn excluded_costs_count_in_no_figure() {
    let mut harness = Harness::new(EngineConfig::default());
    harness.expect(&revenue("r", "c", T0, "100"), Outcome::Applied);
    harness.expect(
        &cost("x1", Some("c"), T0, "50", "Excluded"),
        Outcome::Applied,
    );
    harness.expect(
        &cost_in(
            "x2",
            "new",
            T0 + HOUR,
            "60",
            Some("Stock_Based_Compensation"),
        ),
        Outcome::Applied,
    );
    harness.expect(&cost("x3", None, T0, "70", "Excluded"), Outcome::Applied);
    assert_eq!(harness.customer("c"), revenues(&["100"; 4]));
    assert_eq!(harness.portfolio(), revenues(&["100"; 4]));
    assert_eq!(harness.figures("new"), None);
    assert_eq!(harness.customer_count(), 1);
    assert_eq!(harness.events(EventType::Cost, Outcome::Applied), 3);
    assert_eq!(harness.engine.watermark(), Some(ts(T0 + HOUR)));
    harness.expect(
        &cost("x1", Some("c"), T0, "50", "Excluded"),
        Outcome::Duplicate,
    );
}

/// Shows refunds: negative revenue nets against revenue, and the ratios are absent while
/// revenue is zero or below. 100 - 100 = 0, then - 50 = -50; costs still sum.
#[test]
fn refunds_taking_revenue_to_zero_or_below_hide_the_ratios() {
    let mut harness = Harness::new(EngineConfig::default());
    harness.expect(&revenue("r", "c", T0, "100"), Outcome::Applied);
    harness.expect(
        &cost("k", Some("c"), T0, "20", "Infrastructure"),
        Outcome::Applied,
    );
    let ratios = harness.customer("c")[0].ratios().expect("revenue 100");
    assert_eq!(ratios.gm_market, money("0.8"));
    harness.expect(&revenue("refund", "c", T0, "-100.00"), Outcome::Applied);
    let zero = harness.customer("c")[0];
    assert_eq!(zero, figures("0", &[(CostFunction::Infrastructure, "20")]));
    assert_eq!(zero.ratios(), None);
    harness.expect(&revenue("credit-note", "c", T0, "-50"), Outcome::Applied);
    let negative = harness.customer("c")[0];
    assert_eq!(negative.revenue(), money("-50"));
    assert_eq!(negative.ratios(), None);
    // A cloud credit is a negative Infrastructure cost: margins above 100 %.
    harness.expect(&revenue("r2", "c", T0, "150"), Outcome::Applied);
    harness.expect(
        &cost_in("credit", "c", T0, "-30", Some("cloud_credit")),
        Outcome::Applied,
    );
    let credited = harness.customer("c")[0];
    assert_eq!(
        credited,
        figures("100", &[(CostFunction::Infrastructure, "-10")])
    );
    assert_eq!(
        credited.ratios().expect("revenue 100").gm_market,
        money("1.1")
    );
}

/// Shows the conversion to the reporting currency at the static rates, exact: 100.10 EUR at
/// 1.1 is 110.11 USD, 1000 JPY at 0.0067 is 6.7 USD; a currency without a rate is rejected as
/// `unsupported_currency` and counted.
#[test]
fn amounts_are_converted_at_the_configured_rates() {
    let mut harness = Harness::new(EngineConfig::default());
    harness.expect(
        &revenue("eur", "c", T0, "100.10").replace("USD", "EUR"),
        Outcome::Applied,
    );
    harness.expect(
        &cost("jpy", Some("c"), T0, "1000", "Support").replace("USD", "JPY"),
        Outcome::Applied,
    );
    assert_eq!(
        harness.customer("c")[0],
        figures("110.11", &[(CostFunction::Support, "6.7")])
    );
    assert_eq!(
        harness.send(&revenue("gbp", "c", T0, "1").replace("USD", "GBP")),
        Err(RejectReason::UnsupportedCurrency)
    );
    assert_eq!(harness.rejected(RejectReason::UnsupportedCurrency), 1);
    assert_eq!(harness.customer("c")[0].revenue(), money("110.11"));
}

/// Shows that an explicit `cost_function` wins over the category, and that the default
/// categories match case-insensitively.
#[test]
fn tagging_explicit_function_wins_and_categories_ignore_case() {
    let mut harness = Harness::new(EngineConfig::default());
    let explicit = cost("k1", Some("c"), T0, "1", "Support").replace(
        r#""cost_function""#,
        r#""category":"hosting","cost_function""#,
    );
    harness.expect(&explicit, Outcome::Applied);
    let cases = [
        ("HOSTING", CostFunction::Infrastructure, "2"),
        ("Third_Party_API", CostFunction::Infrastructure, "4"),
        ("Customer_Support", CostFunction::Support, "8"),
        ("CUSTOMER_SUCCESS", CostFunction::SuccessEngineering, "16"),
        ("professional_services", CostFunction::Implementation, "32"),
        ("TrAiNiNg", CostFunction::Onboarding, "64"),
        ("G_and_A", CostFunction::Excluded, "128"),
    ];
    for (index, (category, function, amount)) in cases.into_iter().enumerate() {
        assert_eq!(
            Tagger::default().tag(category),
            Some(function),
            "{category}"
        );
        harness.expect(
            &cost_in(&format!("t{index}"), "c", T0, amount, Some(category)),
            Outcome::Applied,
        );
    }
    assert_eq!(
        harness.customer("c")[0],
        figures(
            "0",
            &[
                (CostFunction::Support, "9"),
                (CostFunction::Infrastructure, "6"),
                (CostFunction::SuccessEngineering, "16"),
                (CostFunction::Implementation, "32"),
                (CostFunction::Onboarding, "64"),
            ]
        )
    );
}

/// Shows custom rules: the first matching rule wins, whether it matched by name or by glob,
/// globs ignore case, and the default taxonomy no longer applies.
#[test]
fn tagging_custom_rules_first_match_wins_with_globs() {
    let rule = |function, categories: &[&str]| TaggingRule {
        function,
        categories: categories.iter().map(|c| (*c).to_owned()).collect(),
    };
    let tagger = Tagger::new(&[
        rule(CostFunction::Support, &["aws_support"]),
        rule(CostFunction::Infrastructure, &["aws_*", "gcp-[a-z]?"]),
        rule(CostFunction::Implementation, &["aws_ec2", "Deploy"]),
        rule(CostFunction::Excluded, &["*_team"]),
    ])
    .expect("valid rules");
    assert_eq!(tagger.rule_count(), 4);
    let cases = [
        ("aws_support", Some(CostFunction::Support)),
        ("AWS_Support", Some(CostFunction::Support)),
        ("aws_support_plus", Some(CostFunction::Infrastructure)),
        // The glob of rule 1 comes before the name in rule 2.
        ("aws_ec2", Some(CostFunction::Infrastructure)),
        ("AWS_EC2", Some(CostFunction::Infrastructure)),
        ("GCP-x1", Some(CostFunction::Infrastructure)),
        ("gcp-x12", None),
        ("deploy", Some(CostFunction::Implementation)),
        ("sales_team", Some(CostFunction::Excluded)),
        ("hosting", None),
        ("", None),
    ];
    for (category, expected) in cases {
        assert_eq!(tagger.tag(category), expected, "{category:?}");
    }
    let mut harness = Harness::with_tagger(EngineConfig::default(), tagger);
    harness.expect(
        &cost_in("a", "c", T0, "5", Some("AWS_S3")),
        Outcome::Applied,
    );
    assert_eq!(
        harness.send(&cost_in("b", "c", T0, "5", Some("hosting"))),
        Err(RejectReason::UntaggedCost)
    );
    assert_eq!(
        harness.customer("c")[0],
        figures("0", &[(CostFunction::Infrastructure, "5")])
    );

    let invalid = Tagger::new(&[
        rule(CostFunction::Support, &["support"]),
        rule(CostFunction::Infrastructure, &["aws_["]),
    ]);
    assert!(
        matches!(&invalid, Err(AggregatorError::Pattern { rule: 1, pattern, .. }) if pattern == "aws_["),
        "{invalid:?}"
    );
}

/// Shows that a cost that no rule tags is rejected as `untagged_cost`, never dropped or
/// guessed: an unknown category, no category at all, or a null one; an unknown
/// `cost_function` is its own reason.
#[test]
fn untagged_costs_are_rejected() {
    let mut harness = Harness::new(EngineConfig::default());
    assert_eq!(
        harness.send(&cost_in("a", "c", T0, "1", Some("lunch"))),
        Err(RejectReason::UntaggedCost)
    );
    assert_eq!(
        harness.send(&cost_in("b", "c", T0, "1", None)),
        Err(RejectReason::UntaggedCost)
    );
    let null = cost_in("n", "c", T0, "1", None).replace("}", r#","category":null}"#);
    assert_eq!(harness.send(&null), Err(RejectReason::UntaggedCost));
    assert_eq!(
        harness.send(&cost("u", Some("c"), T0, "1", "Marketing")),
        Err(RejectReason::UnknownCostFunction)
    );
    assert_eq!(harness.rejected(RejectReason::UntaggedCost), 3);
    assert_eq!(harness.rejected(RejectReason::UnknownCostFunction), 1);
    assert_eq!(harness.customer_count(), 0);
    assert_eq!(harness.engine.watermark(), None);
}

/// Shows the future guard in both clock modes: with the wall clock at `now` and the default
/// skew of 5 minutes, `now + 300 s` is accepted and `now + 301 s` is `future_event`, and a
/// rejected future event moves no watermark.
#[test]
fn future_events_are_rejected_in_both_clock_modes() {
    for clock in [ClockMode::Event, ClockMode::Wall] {
        let mut harness = Harness::new(EngineConfig {
            clock,
            ..EngineConfig::default()
        });
        let now = T0 + 10 * HOUR;
        harness.now = ts(now);
        assert_eq!(
            harness.send(&revenue("late-year", "c", now + 365 * DAY, "1")),
            Err(RejectReason::FutureEvent),
            "{clock:?}"
        );
        assert_eq!(
            harness.send(&revenue("skew", "c", now + 301, "1")),
            Err(RejectReason::FutureEvent),
            "{clock:?}"
        );
        assert_eq!(harness.engine.watermark(), None, "{clock:?}");
        harness.expect(&revenue("edge", "c", now + 300, "1"), Outcome::Applied);
        assert_eq!(harness.engine.watermark(), Some(ts(now + 300)), "{clock:?}");
        assert_eq!(harness.rejected(RejectReason::FutureEvent), 2, "{clock:?}");
    }
}

/// Shows the customer limit: with `max_customers = 2`, a third customer's event is rejected
/// as `customer_limit`, while the two held customers, unattributed costs and excluded costs
/// (which create no customer) go on.
#[test]
fn new_customers_beyond_the_limit_are_rejected() {
    let mut harness = Harness::new(EngineConfig {
        max_customers: 2,
        ..EngineConfig::default()
    });
    harness.expect(&revenue("1", "a", T0, "1"), Outcome::Applied);
    harness.expect(&cost("2", Some("b"), T0, "1", "Support"), Outcome::Applied);
    assert_eq!(
        harness.send(&revenue("3", "c", T0, "1")),
        Err(RejectReason::CustomerLimit)
    );
    assert_eq!(
        harness.send(&cost("4", Some("c"), T0, "1", "Onboarding")),
        Err(RejectReason::CustomerLimit)
    );
    harness.expect(&revenue("5", "a", T0, "1"), Outcome::Applied);
    harness.expect(&cost("6", None, T0, "1", "Support"), Outcome::Applied);
    harness.expect(&cost("7", Some("c"), T0, "1", "Excluded"), Outcome::Applied);
    assert_eq!(harness.customer_count(), 2);
    assert_eq!(harness.figures("c"), None);
    assert_eq!(harness.rejected(RejectReason::CustomerLimit), 2);
    assert_eq!(harness.portfolio()[0].revenue(), money("2"));
}

/// Shows wall-clock mode: `tick` moves the watermark to the wall clock and slides the windows
/// with no event arriving; an event's time moves it no further than the clock already has.
/// In event-time mode, `tick` does nothing.
#[test]
fn wall_clock_ticks_slide_the_windows() {
    let mut harness = Harness::new(EngineConfig {
        clock: ClockMode::Wall,
        ..EngineConfig::default()
    });
    harness.now = ts(T0 + 10 * HOUR);
    harness.engine.tick(ts(T0 + 10 * HOUR));
    assert_eq!(harness.engine.watermark(), Some(ts(T0 + 10 * HOUR)));
    harness.expect(&revenue("e", "c", T0 + 9 * HOUR, "100"), Outcome::Applied);
    assert_eq!(harness.engine.watermark(), Some(ts(T0 + 10 * HOUR)));
    assert_eq!(harness.customer("c"), revenues(&["100"; 4]));
    harness.engine.tick(ts(T0 + 33 * HOUR - 1));
    assert_eq!(harness.customer("c"), revenues(&["100"; 4]));
    harness.engine.tick(ts(T0 + 33 * HOUR));
    assert_eq!(harness.customer("c"), revenues(&["0", "100", "100", "100"]));
    harness.engine.tick(ts(T0 + 31 * DAY));
    assert_eq!(harness.customer("c"), revenues(&["0", "0", "0", "100"]));
    // The clock never goes back.
    harness.engine.tick(ts(T0));
    assert_eq!(harness.engine.watermark(), Some(ts(T0 + 31 * DAY)));

    let mut event_time = Harness::new(EngineConfig::default());
    event_time.engine.tick(ts(T0));
    assert_eq!(event_time.engine.watermark(), None);
}

/// Shows that with `lifetime = false` a customer is removed once every entry it had has left
/// the longest window, and comes back with its next event. Windows 24h and 7d: a's bucket T0
/// leaves 7d when floor(T) reaches T0 + 7d.
#[test]
fn without_lifetime_customers_leave_with_their_last_entry() {
    let mut harness = Harness::new(EngineConfig {
        windows: vec![duration("24h"), duration("7d")],
        lifetime: false,
        ..EngineConfig::default()
    });
    assert_eq!(harness.engine.labels(), ["24h", "7d"]);
    harness.expect(&revenue("a1", "a", T0 + 5 * MINUTE, "10"), Outcome::Applied);
    harness.expect(&revenue("b1", "b", T0 + 3 * DAY, "20"), Outcome::Applied);
    assert_eq!(harness.customer_count(), 2);
    harness.expect(&revenue("b2", "b", T0 + 7 * DAY - 1, "1"), Outcome::Applied);
    assert_eq!(harness.customer("a"), revenues(&["0", "10"]));
    harness.expect(&revenue("b3", "b", T0 + 7 * DAY, "1"), Outcome::Applied);
    assert_eq!(harness.figures("a"), None);
    assert_eq!(harness.customer_count(), 1);
    assert_eq!(harness.engine.view().customer(0).0, "b");
    // A late event for a removed customer is counted but has nowhere to go.
    harness.expect(&revenue("a2", "a", T0, "5"), Outcome::Late);
    assert_eq!(harness.customer_count(), 1);
    // A fresh event brings the customer back, starting from zero.
    harness.expect(&revenue("a3", "a", T0 + 7 * DAY, "7"), Outcome::Applied);
    assert_eq!(harness.customer("a"), revenues(&["7", "7"]));
    harness.expect(&revenue("z", "z", T0 + 30 * DAY, "1"), Outcome::Applied);
    assert_eq!(harness.customer_count(), 1);
    assert_eq!(harness.portfolio(), revenues(&["1", "1"]));
}

/// Shows that without the lifetime window, an event whose own time moves the watermark so far
/// that its customer's last entries leave the longest window is added to that customer,
/// started afresh, rather than to the slot just freed (which used to panic).
#[test]
fn a_customer_removed_by_its_own_event_starts_afresh() {
    let mut harness = Harness::new(EngineConfig {
        windows: vec![duration("12h"), duration("3d")],
        lifetime: false,
        bucket: duration("30m"),
        ..EngineConfig::default()
    });
    harness.expect(&revenue("a", "c", T0 + 15 * MINUTE, "5"), Outcome::Applied);
    harness.expect(&revenue("b", "c", T0 + 3 * DAY, "7"), Outcome::Applied);
    assert_eq!(harness.customer("c"), revenues(&["7", "7"]));
    assert_eq!(harness.customer_count(), 1);
    assert_eq!(harness.engine.memory_stats().entries, 1);
}

/// Shows that amounts whose running sums fit, but some of whose partial sums do not, do not
/// crash the engine when their buckets leave a window. Seven costs of -(1e28 - 1) in one bucket,
/// then seven of +(1e28 - 1) in each of the next two: every window sums to 7e28, in range; when
/// the first bucket leaves 24h, 7e28 - (-7e28) is out of range, and `Series::slide` panics on
/// its `expect`. Valid input must never panic: the event that makes such a sum possible should
/// be rejected as the overflow of running totals (`invalid_field`) instead.
#[test]
fn entries_whose_partial_sums_overflow_do_not_panic() {
    let mut harness = Harness::new(EngineConfig::default());
    let big = "9999999999999999999999999999";
    for bucket in 0..3i64 {
        for index in 0..7 {
            let amount = if bucket == 0 {
                format!("-{big}")
            } else {
                big.to_owned()
            };
            let id = format!("{bucket}-{index}");
            let _ = harness.send(&revenue(&id, "c", T0 + bucket * HOUR, &amount));
        }
    }
    let _ = harness.send(&revenue("clock", "d", T0 + 24 * HOUR, "1"));
    let figures = harness.customer("c");
    assert!(figures.iter().all(|f| f.revenue().abs() < Decimal::MAX));
}

/// Shows that memory is bounded by the longest window: after 60 days of one event per
/// customer per hour for 8 customers, each customer holds exactly the 720 buckets of the 30d
/// window, and the dedup index at most the horizon of 721 buckets plus one sweep interval
/// (721 / 16 = 45 buckets) of keys.
#[test]
fn memory_is_bounded_by_the_longest_window() {
    let mut harness = Harness::new(EngineConfig::default());
    // A customer that stops sending on the first day: its entries must go too.
    harness.expect(&revenue("idle", "idle", T0, "1"), Outcome::Applied);
    let customers = 8;
    let hours = 60 * 24;
    for hour in 0..hours {
        for customer in 0..customers {
            let at = T0 + hour * HOUR + customer * MINUTE;
            let json = if customer % 2 == 0 {
                revenue(
                    &format!("{hour}-{customer}"),
                    &format!("c{customer}"),
                    at,
                    "1",
                )
            } else {
                cost(
                    &format!("{hour}-{customer}"),
                    Some(&format!("c{customer}")),
                    at,
                    "1",
                    "Support",
                )
            };
            harness.expect(&json, Outcome::Applied);
        }
    }
    // Reading the gauges brings every window up to the watermark, idle customers included.
    assert_eq!(harness.customer("idle"), revenues(&["0", "0", "0", "1"]));
    let stats = harness.engine.memory_stats();
    assert_eq!(stats.customers, 9);
    assert_eq!(stats.entries, 8 * 720);
    let per_bucket = customers as usize;
    assert!(stats.dedup_keys >= per_bucket * 721, "{stats:?}");
    assert!(stats.dedup_keys <= per_bucket * (721 + 45), "{stats:?}");
    // Each customer's figures: one per hour in each window.
    assert_eq!(
        harness.customer("c0"),
        revenues(&["24", "168", "720", "1440"])
    );
    assert_eq!(
        harness.portfolio()[2],
        figures("2880", &[(CostFunction::Support, "2880")])
    );
}

/// Shows the counters: applied, duplicate and late per event type, and rejections per reason,
/// with every message counted exactly once.
#[test]
fn counters_count_every_message_once() {
    let mut harness = Harness::new(EngineConfig::default());
    harness.now = ts(T0 + 40 * DAY);
    let messages = [
        revenue("r1", "c", T0 + 40 * DAY, "1"),
        revenue("r2", "c", T0 + 39 * DAY, "1"),
        revenue("r3", "c", T0, "1"),
        revenue("r1", "c", T0, "1"),
        cost("k1", Some("c"), T0 + 40 * DAY, "1", "Support"),
        cost("k1", Some("c"), T0 + 40 * DAY, "1", "Support"),
        cost("k2", None, T0 + DAY, "1", "Infrastructure"),
        "not json".to_owned(),
        r#"{"event_type":"Revenue_Event"}"#.to_owned(),
        revenue("g", "c", T0, "1").replace("USD", "GBP"),
        cost_in("u", "c", T0, "1", Some("lunch")),
        revenue("f", "c", T0 + 41 * DAY, "1"),
    ];
    for message in &messages {
        let _ = harness.send(message);
    }
    let counters = *harness.engine.counters();
    assert_eq!(counters.events(EventType::Revenue, Outcome::Applied), 2);
    assert_eq!(counters.events(EventType::Revenue, Outcome::Late), 1);
    assert_eq!(counters.events(EventType::Revenue, Outcome::Duplicate), 1);
    assert_eq!(counters.events(EventType::Cost, Outcome::Applied), 1);
    assert_eq!(counters.events(EventType::Cost, Outcome::Late), 1);
    assert_eq!(counters.events(EventType::Cost, Outcome::Duplicate), 1);
    for reason in RejectReason::ALL {
        let expected = match reason {
            RejectReason::MalformedJson
            | RejectReason::MissingField
            | RejectReason::UnsupportedCurrency
            | RejectReason::UntaggedCost
            | RejectReason::FutureEvent => 1,
            _ => 0,
        };
        assert_eq!(counters.rejected(reason), expected, "{reason}");
    }
    assert_eq!(counters.total(), messages.len() as u64);
    assert_eq!(harness.engine.view().counters(), &counters);
}

// ----------------------------------------------------------------------------------------
// Property tests.
// ----------------------------------------------------------------------------------------

/// The skew of the default configuration, in seconds.
const SKEW: i64 = 300;

/// Customer ids of the generated ledgers, in no particular order of their bytes.
const CUSTOMERS: [&str; 5] = ["acme", "Beta", "c-3", "zeta", "\u{fc}n\u{ef}"];

/// One engine set-up of the property tests: windows, bucket and lifetime window.
#[derive(Debug, Clone, Copy)]
struct Setup {
    windows: &'static [&'static str],
    bucket: &'static str,
    lifetime: bool,
}

const SETUPS: [Setup; 6] = [
    Setup {
        windows: &["24h", "7d", "30d"],
        bucket: "1h",
        lifetime: true,
    },
    Setup {
        windows: &["1h", "6h", "2d"],
        bucket: "15m",
        lifetime: true,
    },
    Setup {
        windows: &["3d", "12h"],
        bucket: "30m",
        lifetime: false,
    },
    Setup {
        windows: &["2h"],
        bucket: "1h",
        lifetime: false,
    },
    Setup {
        windows: &["90m", "1d"],
        bucket: "1m",
        lifetime: true,
    },
    Setup {
        windows: &[],
        bucket: "1h",
        lifetime: true,
    },
];

/// One event of a generated ledger.
#[derive(Debug, Clone, PartialEq)]
struct LedgerEvent {
    id: u32,
    /// Index in [`CUSTOMERS`]; `None` only for an unattributed cost.
    customer: Option<usize>,
    occurred_at: i64,
    amount: Decimal,
    line: Line,
    /// Write a cost with a category of the default rules rather than its `cost_function`.
    by_category: bool,
    /// Write the amount as a JSON number rather than a string.
    amount_as_number: bool,
}

impl LedgerEvent {
    fn json(&self) -> String {
        let (event_type, tag) = match self.line {
            Line::Revenue => ("Revenue_Event", String::new()),
            Line::Cost(function) if self.by_category => {
                // One default category per function, in assorted cases.
                let category = match function {
                    CostFunction::Infrastructure => "Cloud",
                    CostFunction::Support => "customer_support",
                    CostFunction::SuccessEngineering => "CUSTOMER_SUCCESS",
                    CostFunction::Implementation => "professional_services",
                    CostFunction::Onboarding => "Training",
                    CostFunction::Excluded => "g_and_a",
                };
                ("Cost_Event", format!(r#","category":"{category}""#))
            }
            Line::Cost(function) => (
                "Cost_Event",
                format!(r#","cost_function":"{}""#, function.as_str()),
            ),
        };
        let customer = match self.customer {
            Some(index) => format!(r#","customer_id":"{}""#, CUSTOMERS[index]),
            None => String::new(),
        };
        let amount = if self.amount_as_number {
            self.amount.to_string()
        } else {
            format!("\"{}\"", self.amount)
        };
        format!(
            r#"{{"event_type":"{event_type}","event_id":"e{}"{customer},"occurred_at":"{}","amount":{amount},"currency":"USD"{tag}}}"#,
            self.id,
            rfc3339(self.occurred_at)
        )
    }
}

/// A generated run: a set-up, a clock, the wall clock passed to `record` and the messages.
#[derive(Debug, Clone)]
struct Scenario {
    setup: Setup,
    clock: ClockMode,
    now: i64,
    ledger: Vec<LedgerEvent>,
}

impl Scenario {
    fn config(&self) -> EngineConfig {
        EngineConfig {
            windows: self.setup.windows.iter().map(|w| duration(w)).collect(),
            lifetime: self.setup.lifetime,
            bucket: duration(self.setup.bucket),
            clock: self.clock,
            // Every ledger spans less than this, so duplicates never outlive their key:
            // the documented condition of order independence.
            dedup_horizon: Some(duration("60d")),
            ..EngineConfig::default()
        }
    }
}

/// Amounts with 0 to 4 decimals up to 1e7, mostly positive, some tiny, some zero.
fn amount() -> impl Strategy<Value = Decimal> {
    prop_oneof![
        6 => (0i64..100_000_000_000, 0u32..=4).prop_map(|(m, s)| Decimal::new(m, s)),
        2 => (-100_000_000_000i64..0, 0u32..=4).prop_map(|(m, s)| Decimal::new(m, s)),
        2 => (-100i64..=100, 0u32..=4).prop_map(|(m, s)| Decimal::new(m, s)),
    ]
}

/// An offset into a ledger of `span` seconds, often on or just before a quarter hour, which is
/// a bucket edge for every set-up.
fn offset(span: i64) -> impl Strategy<Value = i64> {
    prop_oneof![
        0..=span,
        (0..=span / 900).prop_map(|q| q * 900),
        (1..=span / 900).prop_map(|q| q * 900 - 1),
    ]
}

fn line() -> impl Strategy<Value = Line> {
    prop_oneof![
        4 => Just(Line::Revenue),
        6 => prop::sample::select(&CostFunction::ALL[..]).prop_map(Line::Cost),
    ]
}

/// Ledgers of 1 to 32 distinct events over up to `span_max` seconds after T0, then up to 6
/// repeats of their ids (exact copies, or with another amount and time when `conflicting`) and
/// up to 3 events beyond the future guard, some reusing an id, all at random places.
fn scenario(span_max: i64, conflicting: bool) -> impl Strategy<Value = Scenario> {
    let spans: Vec<i64> = [6 * HOUR, 3 * DAY, 12 * DAY, 40 * DAY]
        .into_iter()
        .filter(|span| *span <= span_max)
        .collect();
    (
        0..SETUPS.len(),
        prop::bool::ANY,
        prop::sample::select(spans),
        0i64..=100,
    )
        .prop_flat_map(move |(setup, wall, span, now_percent)| {
            let event = (
                0..=CUSTOMERS.len(),
                offset(span),
                amount(),
                line(),
                prop::bool::ANY,
                prop::bool::ANY,
            );
            let repeats = prop::collection::vec(
                (
                    any::<Index>(),
                    any::<Index>(),
                    prop::bool::ANY,
                    amount(),
                    offset(span),
                ),
                0..=6,
            );
            let future = prop::collection::vec(
                (any::<Index>(), any::<Index>(), prop::bool::ANY, 1..5 * DAY),
                0..=3,
            );
            (
                Just((setup, wall, span, now_percent)),
                prop::collection::vec(event, 1..=32),
                repeats,
                future,
            )
        })
        .prop_map(
            move |((setup, wall, span, now_percent), events, repeats, future)| {
                let mut ledger: Vec<LedgerEvent> = events
                    .into_iter()
                    .enumerate()
                    .map(
                        |(id, (customer, offset, amount, line, by_category, amount_as_number))| {
                            LedgerEvent {
                                id: id as u32,
                                customer: match (line, customer) {
                                    // Revenue always has a customer; some costs have none.
                                    (Line::Revenue, index) => Some(index % CUSTOMERS.len()),
                                    (_, index) if index == CUSTOMERS.len() => None,
                                    (_, index) => Some(index),
                                },
                                occurred_at: T0 + offset,
                                amount,
                                line,
                                by_category,
                                amount_as_number,
                            }
                        },
                    )
                    .collect();
                let clock = if wall {
                    ClockMode::Wall
                } else {
                    ClockMode::Event
                };
                // In wall mode the clock is somewhere in the ledger, so that events after
                // it are future events; in event mode it is far after the ledger.
                let now = match clock {
                    ClockMode::Wall => T0 + span * now_percent / 100,
                    ClockMode::Event => T0 + 100 * DAY,
                };
                for (of, at, conflict, amount, offset) in repeats {
                    let mut copy = at_index(&ledger, of).clone();
                    if conflicting && conflict {
                        copy.amount = amount;
                        copy.occurred_at = T0 + offset;
                    }
                    ledger.insert(at.index(ledger.len() + 1), copy);
                }
                for (index, (of, at, reuse, beyond)) in future.into_iter().enumerate() {
                    let mut event = at_index(&ledger, of).clone();
                    if !reuse {
                        event.id = 1_000 + index as u32;
                    }
                    event.occurred_at = now + SKEW + beyond;
                    ledger.insert(at.index(ledger.len() + 1), event);
                }
                Scenario {
                    setup: SETUPS[setup],
                    clock,
                    now,
                    ledger,
                }
            },
        )
}

fn at_index<T>(items: &[T], index: Index) -> &T {
    &items[index.index(items.len())]
}

/// The default preparer: USD only, the default tagging rules.
fn preparer() -> Preparer {
    Preparer::new(
        ParseLimits::default(),
        Tagger::default(),
        Currency::parse("USD").expect("valid code"),
        HashMap::new(),
    )
}

/// Everything observable about the engine's figures, customers in id order.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Snapshot {
    pub(crate) labels: Vec<String>,
    pub(crate) customers: Vec<(String, Vec<Figures>)>,
    pub(crate) portfolio: Vec<Figures>,
    pub(crate) watermark: Option<Timestamp>,
}

pub(crate) fn snapshot(engine: &mut Engine) -> Snapshot {
    let view = engine.view();
    Snapshot {
        labels: view.window_labels().to_vec(),
        customers: (0..view.customer_count())
            .map(|index| {
                let (id, figures) = view.customer(index);
                (id.to_owned(), figures.to_vec())
            })
            .collect(),
        portfolio: view.portfolio().to_vec(),
        watermark: view.watermark(),
    }
}

/// Runs a ledger through a preparer and an engine, returning each message's outcome.
fn feed(engine: &mut Engine, scenario: &Scenario) -> Vec<Result<Outcome, RejectReason>> {
    let preparer = preparer();
    let now = ts(scenario.now);
    if scenario.clock == ClockMode::Wall {
        engine.tick(now);
    }
    scenario
        .ledger
        .iter()
        .map(|event| {
            let prepared = preparer
                .prepare(event.json().as_bytes())
                .unwrap_or_else(|rejection| panic!("{}: {rejection}", event.json()));
            engine.record(prepared, now).map_err(|r| r.reason)
        })
        .collect()
}

fn run(scenario: &Scenario) -> (Engine, Vec<Result<Outcome, RejectReason>>) {
    let mut engine = Engine::new(&scenario.config()).expect("the set-ups are valid");
    let outcomes = feed(&mut engine, scenario);
    (engine, outcomes)
}

/// The naive model of the contract, computed from the ledger directly.
#[derive(Debug)]
struct Reference {
    /// Each message's outcome.
    outcomes: Vec<Result<Outcome, RejectReason>>,
    /// The applied events: the first accepted occurrence of each id.
    applied: Vec<LedgerEvent>,
    /// The final watermark in seconds.
    watermark: Option<i64>,
    /// Bucket length in seconds.
    bucket: i64,
    /// Finite windows in buckets, in label order.
    windows: Vec<i64>,
}

impl Reference {
    fn new(scenario: &Scenario) -> Reference {
        let bucket = duration(scenario.setup.bucket).seconds();
        let windows: Vec<i64> = scenario
            .setup
            .windows
            .iter()
            .map(|w| duration(w).seconds() / bucket)
            .collect();
        let longest = windows.iter().copied().max();
        let mut watermark = match scenario.clock {
            ClockMode::Wall => Some(scenario.now),
            ClockMode::Event => None,
        };
        let mut seen = HashSet::new();
        let mut applied = Vec::new();
        let mut outcomes = Vec::new();
        for event in &scenario.ledger {
            if event.occurred_at > scenario.now + SKEW {
                outcomes.push(Err(RejectReason::FutureEvent));
                continue;
            }
            if !seen.insert(event.id) {
                outcomes.push(Ok(Outcome::Duplicate));
                continue;
            }
            watermark = watermark.max(Some(event.occurred_at));
            let current = watermark.expect("set just above").div_euclid(bucket);
            let late = longest.is_some_and(|w| event.occurred_at.div_euclid(bucket) <= current - w);
            outcomes.push(Ok(if late {
                Outcome::Late
            } else {
                Outcome::Applied
            }));
            applied.push(event.clone());
        }
        Reference {
            outcomes,
            applied,
            watermark,
            bucket,
            windows,
        }
    }

    /// Whether an applied event at `occurred_at` is in the finite window `index` at the final
    /// watermark: `floor(T) - W < floor(e) <= floor(T)`, in buckets.
    fn in_window(&self, occurred_at: i64, index: usize) -> bool {
        let Some(t) = self.watermark.map(|t| t.div_euclid(self.bucket)) else {
            return false;
        };
        let e = occurred_at.div_euclid(self.bucket);
        t - self.windows[index] < e && e <= t
    }

    /// The figures of the applied events that `select` keeps, per window label.
    fn figures(&self, lifetime: bool, select: impl Fn(&LedgerEvent) -> bool) -> Vec<Figures> {
        let labels = self.windows.len() + usize::from(lifetime);
        let mut out = vec![Figures::default(); labels];
        for event in self.applied.iter().filter(|e| select(e)) {
            let Some(slot) = event.line.slot() else {
                continue;
            };
            for (index, figures) in out.iter_mut().enumerate() {
                if index == self.windows.len() || self.in_window(event.occurred_at, index) {
                    figures.0[slot] += event.amount;
                }
            }
        }
        out
    }

    fn snapshot(&self, setup: &Setup) -> Snapshot {
        let mut labels: Vec<String> = setup.windows.iter().map(|w| (*w).to_owned()).collect();
        if setup.lifetime {
            labels.push("all".to_owned());
        }
        // A customer is held once it has a summed event; without the lifetime window, only
        // while one of them is in the longest window.
        let longest = (0..self.windows.len()).max_by_key(|index| self.windows[*index]);
        let held: BTreeMap<&str, ()> = self
            .applied
            .iter()
            .filter(|e| e.line.slot().is_some())
            .filter(|e| setup.lifetime || longest.is_some_and(|w| self.in_window(e.occurred_at, w)))
            .filter_map(|e| e.customer.map(|c| (CUSTOMERS[c], ())))
            .collect();
        Snapshot {
            labels,
            customers: held
                .keys()
                .map(|id| {
                    let figures = self.figures(setup.lifetime, |e| {
                        e.customer.map(|c| CUSTOMERS[c]) == Some(*id)
                    });
                    ((*id).to_owned(), figures)
                })
                .collect(),
            portfolio: self.figures(setup.lifetime, |_| true),
            watermark: self.watermark.map(ts),
        }
    }
}

/// Applied and late counts summed, duplicates, per event type; and rejections.
fn order_free_counts(engine: &Engine) -> ([u64; 2], [u64; 2], [u64; 10]) {
    let counters = engine.counters();
    let by_type = |f: &dyn Fn(EventType) -> u64| [f(EventType::Revenue), f(EventType::Cost)];
    (
        by_type(&|t| counters.events(t, Outcome::Applied) + counters.events(t, Outcome::Late)),
        by_type(&|t| counters.events(t, Outcome::Duplicate)),
        counters.rejected,
    )
}

/// Checks GM-M − GM-O = drag exactly, and that each ratio times revenue gives back its
/// numerator to within the rounding of the ratio (the domain's check "margin × revenue =
/// gross profit").
fn check_bridge(figures: &Figures) -> Result<(), TestCaseError> {
    if figures.revenue() <= Decimal::ZERO {
        prop_assert_eq!(figures.ratios(), None);
        return Ok(());
    }
    let ratios = figures
        .ratios()
        .ok_or_else(|| TestCaseError::fail(format!("no ratios for {figures:?}")))?;
    prop_assert_eq!(
        ratios.gm_market - ratios.gm_operating,
        ratios.services_drag,
        "{:?} {:?}",
        figures,
        ratios
    );
    let revenue = figures.revenue();
    let services: Decimal = figures.0[2..].iter().sum();
    let gross_profit = revenue - figures.0[1];
    // Both ratios are rounded to 18 places, or to fewer when one of them is so large that
    // 28 digits cannot hold 18 places (then the error is below 1e-27 of the larger ratio).
    let largest = ratios.gm_market.abs().max(ratios.services_drag.abs()) + Decimal::ONE;
    let tolerance = revenue * (Decimal::new(1, 18) + largest * Decimal::new(1, 26));
    prop_assert!(
        (ratios.gm_market * revenue - gross_profit).abs() <= tolerance,
        "GM-M {:?} of {:?}",
        ratios,
        figures
    );
    prop_assert!(
        (ratios.services_drag * revenue - services).abs() <= tolerance,
        "drag {:?} of {:?}",
        ratios,
        figures
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Shows that the gauges depend on the set of events, not their order of arrival: any
    /// permutation of a ledger gives the same figures for every customer and window, the same
    /// portfolio and watermark, and the same applied-plus-late, duplicate and rejection
    /// counts (only the split between applied and late may differ).
    #[test]
    fn any_permutation_gives_the_same_gauges(
        (scenario, shuffled) in scenario(40 * DAY, false).prop_flat_map(|scenario| {
            let ledger = Just(scenario.ledger.clone()).prop_shuffle();
            (Just(scenario), ledger)
        }),
    ) {
        let (mut engine, _) = run(&scenario);
        let permuted = Scenario { ledger: shuffled, ..scenario };
        let (mut other, _) = run(&permuted);
        prop_assert_eq!(snapshot(&mut engine), snapshot(&mut other));
        prop_assert_eq!(order_free_counts(&engine), order_free_counts(&other));
    }

    /// Shows that replaying a ledger a second time changes nothing: every accepted message of
    /// the second pass is a duplicate, every rejected one is rejected again, and the figures
    /// and watermark stay as they were. Ledgers span less than the dedup horizon, the
    /// documented condition.
    #[test]
    fn replaying_a_ledger_twice_changes_nothing(scenario in scenario(40 * DAY, true)) {
        let (mut engine, first) = run(&scenario);
        let before = snapshot(&mut engine);
        let second = feed(&mut engine, &scenario);
        for (first, second) in first.iter().zip(&second) {
            let expected = match first {
                Ok(_) => Ok(Outcome::Duplicate),
                Err(reason) => Err(*reason),
            };
            prop_assert_eq!(*second, expected);
        }
        prop_assert_eq!(snapshot(&mut engine), before);
    }

    /// Shows the bridge GM-M − GM-O = Services Drag, exactly in decimal, for every customer
    /// and window with revenue above zero and for the portfolio; and that the ratios are
    /// absent while revenue is zero or below.
    #[test]
    fn the_bridge_holds_exactly(scenario in scenario(40 * DAY, true)) {
        let (mut engine, _) = run(&scenario);
        let snapshot = snapshot(&mut engine);
        for (_, figures) in &snapshot.customers {
            for figures in figures {
                check_bridge(figures)?;
            }
        }
        for figures in &snapshot.portfolio {
            check_bridge(figures)?;
        }
    }

    /// Shows that the portfolio is the sum of the customers plus the unattributed costs,
    /// exactly, for every window and line.
    #[test]
    fn the_portfolio_sums_customers_and_unattributed_costs(scenario in scenario(40 * DAY, true)) {
        let (mut engine, _) = run(&scenario);
        let snapshot = snapshot(&mut engine);
        let reference = Reference::new(&scenario);
        let mut sum = reference.figures(scenario.setup.lifetime, |e| e.customer.is_none());
        for (_, figures) in &snapshot.customers {
            for (total, part) in sum.iter_mut().zip(figures) {
                *total = total.checked_add(part).expect("small sums");
            }
        }
        prop_assert_eq!(sum, snapshot.portfolio);
    }

    /// Shows that a copy kept up to date only from the engine's changes, as the live path
    /// publishes them to readers, always equals the engine's view: drained at random moments
    /// (every slot slid first when the watermark's bucket moved), in chunks of random size,
    /// the copy's customers and figures equal the view's, with the lifetime window on or off
    /// (removed customers leave the copy). Issue 9: readers never see a figure the loop
    /// does not hold.
    #[test]
    fn publishing_the_changes_keeps_an_exact_copy(
        (scenario, drains) in scenario(40 * DAY, true).prop_flat_map(|scenario| {
            let events = scenario.ledger.len();
            (Just(scenario), prop::collection::vec(0usize..4, events))
        }),
    ) {
        let preparer = preparer();
        let now = ts(scenario.now);
        let mut engine = Engine::new(&scenario.config()).expect("the set-ups are valid");
        engine.track_changes();
        if scenario.clock == ClockMode::Wall {
            engine.tick(now);
        }
        let mut copy: BTreeMap<String, Vec<Decimal>> = BTreeMap::new();
        let mut walked = None;
        let mut publish = |engine: &mut Engine, chunk: usize| {
            let bucket = engine.watermark_bucket();
            if walked != Some(bucket) {
                let slots = engine.slot_count();
                let mut from = 0;
                while from < slots {
                    engine.slide_customers(from, 3);
                    from += 3;
                }
                walked = Some(bucket);
            }
            for id in engine.take_removed() {
                copy.remove(id.as_str());
            }
            while engine.changed_count() > 0 {
                engine.drain_changes(chunk, &mut |id, figures| {
                    copy.insert(id.to_owned(), figures.sums().to_vec());
                });
            }
            for id in engine.take_removed() {
                copy.remove(id.as_str());
            }
        };
        for (event, drain) in scenario.ledger.iter().zip(&drains) {
            let prepared = preparer
                .prepare(event.json().as_bytes())
                .unwrap_or_else(|rejection| panic!("{}: {rejection}", event.json()));
            let _ = engine.record(prepared, now);
            if *drain > 0 {
                publish(&mut engine, *drain);
            }
        }
        publish(&mut engine, 1);
        let view = engine.view();
        let expected: BTreeMap<String, Vec<Decimal>> = (0..view.customer_count())
            .map(|index| {
                let (id, figures) = view.customer(index);
                (id.to_owned(), figures.sums().to_vec())
            })
            .collect();
        prop_assert_eq!(copy, expected);
    }

    /// Shows that the engine agrees with a naive reference model of the contract: the
    /// applied events are the first accepted occurrence of each id, T is the latest of their
    /// times (and of the wall clock in wall mode), and each figure is the plain sum of the
    /// applied amounts with `floor(T) - W < floor(e) <= floor(T)`. Every message's outcome,
    /// every customer held, every figure of every window, the portfolio, the watermark and
    /// the counters must match.
    #[test]
    fn reference_model_agrees(scenario in scenario(40 * DAY, true)) {
        let (mut engine, outcomes) = run(&scenario);
        let reference = Reference::new(&scenario);
        prop_assert_eq!(&outcomes, &reference.outcomes);
        prop_assert_eq!(snapshot(&mut engine), reference.snapshot(&scenario.setup));
        let counters = engine.counters();
        for event_type in EventType::ALL {
            for outcome in Outcome::ALL {
                let expected = scenario
                    .ledger
                    .iter()
                    .zip(&reference.outcomes)
                    .filter(|(event, result)| {
                        (event.line == Line::Revenue) == (event_type == EventType::Revenue)
                            && **result == Ok(outcome)
                    })
                    .count() as u64;
                prop_assert_eq!(counters.events(event_type, outcome), expected);
            }
        }
        let future = reference.outcomes.iter().filter(|o| o.is_err()).count() as u64;
        prop_assert_eq!(counters.rejected(RejectReason::FutureEvent), future);
        prop_assert_eq!(counters.total(), scenario.ledger.len() as u64);
        // Memory: no customer holds an entry outside the longest window.
        if let Some(longest) = reference.windows.iter().copied().max() {
            let t = reference.watermark.map(|t| Bucket::of(ts(t), reference.bucket).0);
            let mut in_longest = HashSet::new();
            for event in reference.applied.iter().filter(|e| e.line.slot().is_some()) {
                let e = event.occurred_at.div_euclid(reference.bucket);
                if let (Some(customer), Some(t)) = (event.customer, t) {
                    if t - longest < e {
                        in_longest.insert((customer, e, event.line.slot()));
                    }
                }
            }
            prop_assert_eq!(engine.memory_stats().entries, in_longest.len());
        }
    }
}

/// Engines of several partitions, merged: customers in id order, one produced to two
/// partitions summed once, portfolio and counters summed; equal to one engine fed all.
#[test]
fn merged_view_equals_one_engine_fed_every_partition() {
    use crate::MergedView;
    let preparer = preparer();
    let line = |id: &str, customer: Option<&str>, hour: i64, amount: &str, kind: &str| {
        let customer = customer.map_or(String::new(), |c| format!(r#""customer_id":"{c}","#));
        let at = ts(1_767_225_600 + hour * 3_600).to_rfc3339();
        let body = match kind {
            "revenue" => r#""event_type":"Revenue_Event""#.to_owned(),
            _ => r#""event_type":"Cost_Event","cost_function":"Infrastructure""#.to_owned(),
        };
        format!(
            r#"{{{body},"event_id":"{id}",{customer}"occurred_at":"{at}","amount":"{amount}","currency":"USD"}}"#
        )
    };
    let partitions = [
        vec![
            line("a1", Some("acme"), 1, "100", "revenue"),
            line("a2", Some("acme"), 2, "10", "cost"),
            line("u1", None, 3, "7", "cost"),
        ],
        vec![
            line("b1", Some("beta"), 2, "50", "revenue"),
            // acme again, on another partition: shown once, summed.
            line("a3", Some("acme"), 4, "20", "revenue"),
        ],
    ];
    let now = ts(1_767_225_600 + 100 * 3_600);
    let mut whole = Engine::new(&EngineConfig::default()).expect("valid");
    let mut engines: Vec<Engine> = partitions
        .iter()
        .map(|lines| {
            let mut engine = Engine::new(&EngineConfig::default()).expect("valid");
            for l in lines {
                engine
                    .record(preparer.prepare(l.as_bytes()).expect("valid"), now)
                    .expect("applied");
                whole
                    .record(preparer.prepare(l.as_bytes()).expect("valid"), now)
                    .expect("applied");
            }
            engine
        })
        .collect();
    let watermark = engines
        .iter()
        .filter_map(Engine::watermark)
        .max()
        .expect("set");
    for engine in &mut engines {
        engine.advance_watermark(watermark);
    }
    let labels = whole.labels().to_vec();
    let merged = MergedView::new(&labels, engines.iter_mut().map(|e| e.view()).collect());
    assert_eq!(merged.shared_customers(), 1);
    assert!(!merged.overflowed());
    let view = whole.view();
    assert_eq!(merged.customer_count(), view.customer_count());
    for index in 0..view.customer_count() {
        let (id, figures) = view.customer(index);
        let (merged_id, merged_figures) = merged.customer(index);
        assert_eq!(id, merged_id);
        assert_eq!(figures.to_vec(), merged_figures.to_vec(), "customer {id}");
    }
    assert_eq!(view.portfolio().to_vec(), merged.portfolio().to_vec());
    assert_eq!(view.counters(), merged.counters());
    assert_eq!(view.watermark(), merged.watermark());
}
