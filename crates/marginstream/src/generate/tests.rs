//! Tests of the generator: determinism, shape, noise, every rejection reason.

use std::collections::{BTreeMap, HashMap, HashSet};

use std::time::{Duration, Instant};

use serde_json::Value;

#[allow(clippy::wildcard_imports)]
use super::*;

fn args(customers: u32, days: u32) -> GenerateArgs {
    GenerateArgs {
        customers,
        days,
        seed: 1,
        events_per_customer_day: 5.0,
        end: "2026-01-01T00:00:00Z".to_owned(),
        duplicate_share: 0.0,
        bad_share: 0.0,
        rate: 0,
        follow: false,
        swing_after: None,
        output: None,
    }
}

/// Runs the generator into memory, with the intended reason of each bad line.
fn ledger(args: &GenerateArgs) -> (GenerateStats, String, Vec<BadReason>) {
    let mut bytes = Vec::new();
    let mut reasons = Vec::new();
    let stats = generate_with(
        args,
        &mut bytes,
        |reason| reasons.push(reason),
        &mut wall_clock_ms,
    )
    .expect("valid options and an in-memory output cannot fail");
    let text = String::from_utf8(bytes).expect("every line is UTF-8");
    assert!(text.ends_with('\n') || text.is_empty());
    assert_eq!(text.lines().count() as u64, stats.lines);
    (stats, text, reasons)
}

const FUNCTIONS: [&str; 6] = [
    "Infrastructure",
    "Support",
    "Success_Engineering",
    "Implementation",
    "Onboarding",
    "Excluded",
];

/// The default tagging rules of contract section 3.
fn taxonomy(category: &str) -> Option<&'static str> {
    Some(match category.to_ascii_lowercase().as_str() {
        "hosting" | "cloud" | "infrastructure" | "third_party_api" | "payment_processing"
        | "delivery_software" | "cloud_credit" => "Infrastructure",
        "support" | "customer_support" => "Support",
        "customer_success" | "success_engineering" => "Success_Engineering",
        "implementation" | "professional_services" => "Implementation",
        "onboarding" | "training" => "Onboarding",
        "r_and_d" | "sales_and_marketing" | "g_and_a" | "stock_based_compensation" => "Excluded",
        _ => return None,
    })
}

fn is_decimal(text: &str) -> bool {
    let digits = text.strip_prefix('-').unwrap_or(text);
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, "1"));
    !whole.is_empty()
        && !fraction.is_empty()
        && whole.bytes().all(|b| b.is_ascii_digit())
        && fraction.bytes().all(|b| b.is_ascii_digit())
}

/// Returns the rejection reason of a line under the default configuration, read straight
/// from the contract (sections 1-3) and independent of the generator; `None` for a line
/// that must be applied.
fn classify(line: &str) -> Option<&'static str> {
    if line.len() > 65_536 {
        return Some("oversized");
    }
    let Ok(Value::Object(map)) = serde_json::from_str::<Value>(line) else {
        return Some("malformed_json");
    };
    let present = |key: &str| map.get(key).is_some_and(|v| !v.is_null());
    let text = |key: &str| map.get(key).and_then(Value::as_str);
    let revenue = match map.get("event_type") {
        None | Some(Value::Null) => return Some("missing_field"),
        Some(Value::String(t)) if t == "Revenue_Event" => true,
        Some(Value::String(t)) if t == "Cost_Event" => false,
        Some(_) => return Some("unknown_event_type"),
    };
    let mut required = vec!["event_id", "occurred_at", "amount", "currency"];
    if revenue {
        required.push("customer_id");
    }
    if !required.iter().all(|key| present(key)) {
        return Some("missing_field");
    }
    let id_ok = |id: Option<&str>, controls: bool| {
        id.is_some_and(|id| {
            (1..=128).contains(&id.len()) && (controls || !id.chars().any(char::is_control))
        })
    };
    let occurred = text("occurred_at").and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok());
    let amount_ok = match &map["amount"] {
        Value::String(amount) => is_decimal(amount),
        Value::Number(_) => true,
        _ => false,
    };
    let currency =
        text("currency").filter(|c| c.len() == 3 && c.bytes().all(|b| b.is_ascii_uppercase()));
    let revenue_type_ok = !revenue
        || !present("revenue_type")
        || matches!(
            text("revenue_type"),
            Some("recurring" | "usage" | "services" | "one_time")
        );
    if !id_ok(text("event_id"), true)
        || (present("customer_id") && !id_ok(text("customer_id"), false))
        || occurred.is_none()
        || !amount_ok
        || currency.is_none()
        || !revenue_type_ok
    {
        return Some("invalid_field");
    }
    if !revenue
        && present("cost_function")
        && !text("cost_function").is_some_and(|f| FUNCTIONS.contains(&f))
    {
        return Some("unknown_cost_function");
    }
    if currency != Some("USD") {
        return Some("unsupported_currency");
    }
    if !revenue && !present("cost_function") && text("category").and_then(taxonomy).is_none() {
        return Some("untagged_cost");
    }
    if occurred.is_some_and(|t| t.year() >= 2100) {
        return Some("future_event");
    }
    None
}

/// Parses a decimal amount exactly, in ten-thousandths.
fn units(amount: &Value) -> i128 {
    let text = match amount {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    };
    let (whole, fraction) = text.split_once('.').expect("amounts have decimals");
    let negative = whole.starts_with('-');
    let fraction = format!("{fraction:0<4}");
    let magnitude = whole.trim_start_matches('-').parse::<i128>().unwrap() * 10_000
        + fraction.parse::<i128>().unwrap();
    if negative {
        -magnitude
    } else {
        magnitude
    }
}

fn instant(event: &Value) -> OffsetDateTime {
    OffsetDateTime::parse(event["occurred_at"].as_str().unwrap(), &Rfc3339).unwrap()
}

/// Shows that the same options give the same bytes, and another seed other bytes.
#[test]
fn same_args_give_identical_bytes() {
    let mut noisy = args(25, 4);
    noisy.duplicate_share = 0.05;
    noisy.bad_share = 0.05;
    let (first_stats, first, _) = ledger(&noisy);
    let (second_stats, second, _) = ledger(&noisy);
    assert_eq!(first_stats, second_stats);
    assert!(first == second, "two runs with the same options differ");
    assert!(first_stats.events > 400, "{first_stats}");
    noisy.seed = 2;
    let (_, other, _) = ledger(&noisy);
    assert_ne!(first, other);
}

/// FNV-1a of the ledger of `output_is_stable`.
const GOLDEN_HASH: u64 = 0xb0c6_8c1c_69b8_208c;

/// Shows that the output is stable across versions: this hash changes only with a
/// deliberate change of the generator, which changes every ledger made before.
#[test]
fn output_is_stable() {
    let mut noisy = args(12, 3);
    noisy.duplicate_share = 0.02;
    noisy.bad_share = 0.02;
    let (_, text, _) = ledger(&noisy);
    // FNV-1a, 64 bits.
    let hash = text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    });
    assert_eq!(hash, GOLDEN_HASH, "the ledger changed: {hash:#x}");
}

/// Shows the reference output of xoshiro256** for the state [1, 2, 3, 4].
#[test]
fn prng_matches_the_reference() {
    let mut rng = Rng {
        state: [1, 2, 3, 4],
    };
    let outputs: Vec<u64> = (0..4).map(|_| rng.next_u64()).collect();
    assert_eq!(
        outputs,
        [11_520, 0, 1_509_978_240, 1_215_971_899_390_074_240]
    );
}

/// Shows that every good line is a JSON object with the contract's required fields, of
/// their forms, that event ids are unique, that lines are in order of `occurred_at` but
/// for about 1 % up to four hours late, and that the ledger exercises the optional forms.
#[test]
fn good_lines_follow_the_contract() {
    let (stats, text, _) = ledger(&args(40, 10));
    assert_eq!(stats.lines, stats.events);
    let start = OffsetDateTime::parse("2025-12-22T00:00:00Z", &Rfc3339).unwrap();
    let end = OffsetDateTime::parse("2026-01-01T00:00:00Z", &Rfc3339).unwrap();
    let mut ids = HashSet::new();
    let mut customers = HashSet::new();
    let mut latest = start;
    let (mut late, mut numbers, mut offsets, mut revenue_types, mut revenues) = (0, 0, 0, 0, 0);
    let (mut functions, mut costs, mut unattributed, mut null_customer) = (0, 0, 0, 0);
    let (mut mixed_case, mut credits, mut refunds, mut unknown_fields) = (0, 0, 0, 0);
    for line in text.lines() {
        assert_eq!(classify(line), None, "{line}");
        let event: Value = serde_json::from_str(line).unwrap();
        for key in [
            "event_type",
            "event_id",
            "occurred_at",
            "amount",
            "currency",
        ] {
            assert!(!event[key].is_null(), "{key} missing: {line}");
        }
        assert_eq!(event["currency"], "USD");
        assert!(
            ids.insert(event["event_id"].as_str().unwrap().to_owned()),
            "{line}"
        );
        let occurred = instant(&event);
        assert!(start <= occurred && occurred < end, "{line}");
        if occurred < latest {
            late += 1;
            assert!(latest - occurred <= time::Duration::hours(4), "{line}");
        }
        latest = latest.max(occurred);
        numbers += usize::from(event["amount"].is_number());
        offsets += usize::from(!event["occurred_at"].as_str().unwrap().ends_with('Z'));
        unknown_fields += usize::from(event.get("source").is_some() || event.get("meta").is_some());
        let amount = units(&event["amount"]);
        if event["event_type"] == "Revenue_Event" {
            revenues += 1;
            revenue_types += usize::from(event.get("revenue_type").is_some());
            refunds += usize::from(amount < 0);
            customers.insert(event["customer_id"].as_str().unwrap().to_owned());
        } else {
            costs += 1;
            functions += usize::from(event.get("cost_function").is_some());
            match event.get("customer_id") {
                None => unattributed += 1,
                Some(Value::Null) => null_customer += 1,
                Some(_) => {}
            }
            let category = event.get("category").and_then(Value::as_str).unwrap_or("");
            mixed_case += usize::from(category.bytes().any(|b| b.is_ascii_uppercase()));
            if category.eq_ignore_ascii_case("cloud_credit") {
                credits += 1;
                assert!(amount < 0, "credits are negative costs: {line}");
            }
        }
    }
    let lines = stats.lines as usize;
    assert!(lines > 1_500, "{stats}");
    assert!(
        (lines / 500..=lines * 3 / 100).contains(&late),
        "{late} late of {lines}"
    );
    assert!(
        (lines / 20..=lines * 3 / 20).contains(&numbers),
        "{numbers} numbers"
    );
    assert!(offsets > lines / 50, "{offsets} offsets");
    assert!(
        revenue_types * 10 >= revenues * 8,
        "{revenue_types} of {revenues}"
    );
    assert!(
        revenue_types < revenues,
        "some revenue events rely on the default"
    );
    assert!(
        (costs * 4 / 10..=costs * 6 / 10).contains(&functions),
        "{functions} of {costs}"
    );
    assert!(unattributed > 0 && null_customer > 0);
    assert!(
        mixed_case > 0 && unknown_fields > 0,
        "{mixed_case}, {unknown_fields}"
    );
    assert!(
        credits > 0 && refunds > 0,
        "{credits} credits, {refunds} refunds"
    );
    for (_, id) in SPECIAL_IDS {
        assert!(customers.contains(id), "{id} is in the ledger");
    }
    assert!(text.contains(r#""customer_id":"acme \"beta\"""#));
    assert!(text.contains(r#""customer_id":"north\\east""#));
}

/// Shows that margins look like SaaS (KBCM: median GM-M 72 %, most between 60 % and
/// 85 %) with spread, that the Services Drag is positive, that a new customer's first
/// month carries Implementation costs, and that the refund customer's revenue goes below
/// zero on its refund day.
#[test]
fn margins_are_realistic() {
    let (_, text, _) = ledger(&args(200, 30));
    let mut revenue: BTreeMap<String, i128> = BTreeMap::new();
    let mut infrastructure: BTreeMap<String, i128> = BTreeMap::new();
    let mut services: BTreeMap<String, i128> = BTreeMap::new();
    let mut refund_customer_days: BTreeMap<u8, i128> = BTreeMap::new();
    let mut new_customer_implementation: BTreeMap<bool, i128> = BTreeMap::new();
    let new_customer_start = OffsetDateTime::parse("2025-12-12T00:00:00Z", &Rfc3339).unwrap();
    for line in text.lines() {
        let event: Value = serde_json::from_str(line).unwrap();
        let customer = event["customer_id"].as_str().unwrap_or("").to_owned();
        let amount = units(&event["amount"]);
        if event["event_type"] == "Revenue_Event" {
            *revenue.entry(customer.clone()).or_default() += amount;
            if customer == format!("cust-{REFUND_CUSTOMER:05}") {
                let day = instant(&event).to_offset(UtcOffset::UTC).day();
                *refund_customer_days.entry(day).or_default() += amount;
            }
            continue;
        }
        let function = match event["cost_function"].as_str() {
            Some(function) => function,
            None => taxonomy(event["category"].as_str().unwrap()).unwrap(),
        };
        match function {
            "Infrastructure" => *infrastructure.entry(customer.clone()).or_default() += amount,
            "Excluded" => {}
            _ => *services.entry(customer.clone()).or_default() += amount,
        }
        if function == "Implementation" && customer == format!("cust-{NEW_CUSTOMER:05}") {
            let first_month = instant(&event) < new_customer_start + time::Duration::days(30);
            *new_customer_implementation.entry(first_month).or_default() += amount;
        }
    }
    let mut market = Vec::new();
    let mut drags = Vec::new();
    for (customer, revenue) in revenue.iter().filter(|(_, r)| **r > 0) {
        let infrastructure = infrastructure.get(customer).copied().unwrap_or(0);
        let services = services.get(customer).copied().unwrap_or(0);
        market.push((revenue - infrastructure) * 1_000 / revenue);
        drags.push(services * 1_000 / revenue);
    }
    market.sort_unstable();
    drags.sort_unstable();
    let quantile = |values: &[i128], q: usize| values[(values.len() - 1) * q / 100];
    let median = quantile(&market, 50);
    assert!(
        (650..=800).contains(&median),
        "median GM-M {median} per mille"
    );
    assert!(
        quantile(&market, 10) < 600,
        "a low tail of infrastructure-heavy customers"
    );
    assert!(
        quantile(&market, 90) > 800,
        "a high tail of efficient customers"
    );
    assert!(
        quantile(&drags, 10) > 0,
        "services cost something for nearly everyone"
    );
    let drag = quantile(&drags, 50);
    assert!(
        (40..=250).contains(&drag),
        "median Services Drag {drag} per mille"
    );
    assert!(
        refund_customer_days.values().any(|revenue| *revenue < 0),
        "the refund customer's revenue goes below zero in a day: {refund_customer_days:?}"
    );
    assert!(refund_customer_days.values().filter(|r| **r > 0).count() >= 25);
    let first_month = new_customer_implementation.get(&true).copied().unwrap_or(0);
    assert!(
        first_month > 0,
        "the new customer is implemented in its first month"
    );
}

/// Shows that bad lines cover every reason a file can produce, evenly, each line rejected
/// for exactly its intended reason by the contract's rules, with ids no good line uses.
#[test]
fn bad_lines_cover_every_reason() {
    let mut noisy = args(40, 10);
    noisy.bad_share = 0.3;
    let (stats, text, intended) = ledger(&noisy);
    assert!(stats.lines >= 2_000, "{stats}");
    let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
    let mut found = Vec::new();
    let mut good_ids = HashSet::new();
    let mut bad_ids = HashSet::new();
    for line in text.lines() {
        let id = serde_json::from_str::<Value>(line)
            .ok()
            .and_then(|event| event.get("event_id")?.as_str().map(str::to_owned));
        match classify(line) {
            Some(reason) => {
                *counts.entry(reason).or_default() += 1;
                found.push(reason);
                if let Some(id) = id {
                    assert!(bad_ids.insert(id), "bad ids are unique: {line}");
                }
            }
            None => {
                good_ids.insert(id.expect("good lines have ids"));
            }
        }
    }
    let intended: Vec<&str> = intended.iter().map(|reason| reason.as_str()).collect();
    assert_eq!(
        found, intended,
        "each bad line is rejected for its intended reason"
    );
    assert_eq!(stats.bad, found.len() as u64);
    assert!(good_ids.is_disjoint(&bad_ids));
    let regular: Vec<u64> = ROTATION
        .iter()
        .map(|r| counts.get(r.as_str()).copied().unwrap_or(0))
        .collect();
    let (low, high) = (regular.iter().min().unwrap(), regular.iter().max().unwrap());
    assert!(*low > 0 && high - low <= 1, "evenly spread: {counts:?}");
    let oversized = counts.get("oversized").copied().unwrap_or(0);
    assert!(
        (1..=1 + stats.bad / OVERSIZED_EVERY).contains(&oversized),
        "{counts:?}"
    );
    let share = stats.bad as f64 / stats.lines as f64;
    assert!((0.27..0.33).contains(&share), "bad share {share}");
}

/// Shows that a small bad share still yields one oversized line in a ledger of 2000 lines
/// or more, and none in a shorter one.
#[test]
fn oversized_lines_are_rare_but_present() {
    let mut noisy = args(40, 10);
    noisy.bad_share = 0.000_001;
    let (stats, text, reasons) = ledger(&noisy);
    assert!(stats.lines > 2_000);
    assert_eq!(reasons.last(), Some(&BadReason::Oversized));
    assert_eq!(text.lines().filter(|l| l.len() > 65_536).count(), 1);
    let mut short = args(3, 2);
    short.bad_share = 0.2;
    let (stats, text, _) = ledger(&short);
    assert!(stats.lines < 2_000 && stats.bad > 0);
    assert!(text.lines().all(|l| l.len() < 65_536));
}

/// Shows that the model's parser accepts every good line and rejects every bad line that
/// it can judge alone with the same reason as the contract's rules.
#[test]
fn model_parser_agrees() {
    use marginstream_model::{parse_event, ParseLimits};
    let mut noisy = args(30, 10);
    noisy.bad_share = 0.3;
    noisy.duplicate_share = 0.05;
    let (_, text, _) = ledger(&noisy);
    let later = ["unsupported_currency", "untagged_cost", "future_event"];
    for line in text.lines() {
        let parsed = parse_event(line.as_bytes(), &ParseLimits::default());
        match classify(line) {
            Some(reason) if !later.contains(&reason) => {
                let rejection = parsed.expect_err(line);
                assert_eq!(rejection.reason.as_str(), reason, "{line}");
            }
            _ => assert!(parsed.is_ok(), "{line}: {:?}", parsed.err()),
        }
    }
}

/// Shows that duplicates repeat an earlier good line byte for byte, mostly soon after it
/// and sometimes much later, always within 24 hours of the original's event time.
#[test]
fn duplicates_repeat_earlier_lines_exactly() {
    // Dense enough that a day holds more lines than the near duplicates reach back.
    let mut noisy = args(200, 3);
    noisy.duplicate_share = 0.1;
    let (stats, text, _) = ledger(&noisy);
    let mut first_seen: HashMap<&str, usize> = HashMap::new();
    let mut ids: HashMap<String, &str> = HashMap::new();
    let mut latest = OffsetDateTime::UNIX_EPOCH;
    let (mut repeats, mut near, mut far) = (0, 0, 0);
    for (number, line) in text.lines().enumerate() {
        let event: Value = serde_json::from_str(line).unwrap();
        let occurred = instant(&event);
        match first_seen.get(line) {
            Some(original) => {
                repeats += 1;
                if number - original <= RECENT_LINES {
                    near += 1;
                } else {
                    far += 1;
                }
                assert!(latest - occurred < time::Duration::hours(24), "{line}");
            }
            None => {
                first_seen.insert(line, number);
                let id = event["event_id"].as_str().unwrap().to_owned();
                let previous = ids.insert(id, line);
                assert!(
                    previous.is_none(),
                    "a repeated id is always an exact repeat: {line}"
                );
            }
        }
        latest = latest.max(occurred);
    }
    assert_eq!(repeats, stats.duplicates);
    assert!(near > far && far > 0, "{near} near, {far} far");
    let share = stats.duplicates as f64 / stats.lines as f64;
    assert!((0.08..0.12).contains(&share), "duplicate share {share}");
}

/// Shows that duplicates and bad lines are only inserted: without them, a noisy ledger
/// is the clean ledger of the same seed, byte for byte.
#[test]
fn noise_only_inserts_lines() {
    let clean = args(30, 6);
    let mut noisy = clean.clone();
    noisy.duplicate_share = 0.1;
    noisy.bad_share = 0.1;
    let (clean_stats, clean_text, _) = ledger(&clean);
    let (noisy_stats, noisy_text, _) = ledger(&noisy);
    let mut seen = HashSet::new();
    let filtered: Vec<&str> = noisy_text
        .lines()
        .filter(|line| classify(line).is_none() && seen.insert(*line))
        .collect();
    assert_eq!(filtered, clean_text.lines().collect::<Vec<_>>());
    assert_eq!(noisy_stats.events, clean_stats.events);
    assert!(noisy_stats.duplicates > 0 && noisy_stats.bad > 0);
}

/// Shows that bad options are refused with InvalidInput and a message naming the option.
#[test]
fn rejects_invalid_options() {
    type Change = fn(&mut GenerateArgs);
    let cases: [(Change, &str); 12] = [
        (|a| a.follow = true, "--rate"),
        (
            |a| (a.follow, a.rate, a.customers) = (true, 10, 0),
            "--customers",
        ),
        (
            |a| (a.follow, a.rate, a.end) = (true, 10, "2999-01-01T00:00:00Z".to_owned()),
            "--end",
        ),
        (
            |a| (a.follow, a.rate, a.swing_after) = (true, 10, Some("soon".to_owned())),
            "--swing-after",
        ),
        (|a| a.end = "yesterday".to_owned(), "--end"),
        (|a| a.end = "2026-01-01T00:00:00".to_owned(), "--end"),
        (|a| a.duplicate_share = 1.5, "--duplicate-share"),
        (|a| a.bad_share = -0.1, "--bad-share"),
        (|a| a.bad_share = f64::NAN, "--bad-share"),
        (|a| (a.bad_share, a.duplicate_share) = (0.5, 0.5), "plus"),
        (|a| a.end = "1970-01-02T00:00:00Z".to_owned(), "1970"),
        (
            |a| a.events_per_customer_day = -1.0,
            "--events-per-customer-day",
        ),
    ];
    for (change, expected) in cases {
        let mut bad = args(2, 2);
        change(&mut bad);
        let error = generate(&bad, &mut Vec::new()).expect_err("invalid options");
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
        assert!(error.to_string().contains(expected), "{error}");
    }
}

/// Shows that `--end now` ends the ledger at the wall clock.
#[test]
fn end_now_uses_the_wall_clock() {
    let mut now = args(3, 1);
    now.end = "now".to_owned();
    let before = OffsetDateTime::now_utc();
    let (stats, text, _) = ledger(&now);
    assert!(stats.events > 0);
    for line in text.lines() {
        let event: Value = serde_json::from_str(line).unwrap();
        let occurred = instant(&event);
        assert!(occurred >= before - time::Duration::days(1) - time::Duration::seconds(1));
        assert!(
            occurred <= OffsetDateTime::now_utc() + time::Duration::hours(4),
            "{line}"
        );
    }
}

/// Shows that a rate spaces the lines out in time and does not change them.
#[test]
fn rate_paces_the_output() {
    let mut paced = args(2, 2);
    paced.rate = 200;
    let started = Instant::now();
    let (stats, text, _) = ledger(&paced);
    let elapsed = started.elapsed();
    let burst = paced.rate / 20;
    let minimum = Duration::from_secs_f64((stats.lines - burst) as f64 / paced.rate as f64);
    assert!(stats.lines > 2 * burst, "{stats}");
    assert!(elapsed >= minimum, "{} lines in {elapsed:?}", stats.lines);
    let (_, fast, _) = ledger(&args(2, 2));
    assert_eq!(text, fast);
}

/// Shows the formats of amounts and timestamps, including offsets and milliseconds.
#[test]
fn formats_amounts_and_timestamps() {
    let amount = |units, scale, number| {
        let mut buf = Vec::new();
        write_amount(&mut buf, units, scale, number);
        String::from_utf8(buf).unwrap()
    };
    assert_eq!(amount(12_345_600, 2, false), "\"1234.56\"");
    assert_eq!(amount(12_345_600, 2, true), "1234.56");
    assert_eq!(amount(-1_234_500, 2, false), "\"-123.45\"");
    assert_eq!(amount(5, 4, false), "\"0.0005\"");
    assert_eq!(amount(100, 2, true), "0.01");
    assert_eq!(round_amount(149, 100), 100);
    assert_eq!(round_amount(150, 100), 200);
    assert_eq!(round_amount(-150, 100), -200);
    assert_eq!(round_amount(3, 100), 100, "never zero");
    let stamp = |ms, offset| {
        let mut buf = Vec::new();
        write_timestamp(&mut buf, ms, offset);
        String::from_utf8(buf).unwrap()
    };
    let ms = 1_764_940_062_000;
    assert_eq!(stamp(ms, None), "2025-12-05T13:07:42Z");
    assert_eq!(stamp(ms, Some(120)), "2025-12-05T15:07:42+02:00");
    assert_eq!(stamp(ms + 7, Some(-570)), "2025-12-05T03:37:42.007-09:30");
    assert_eq!(stamp(ms, Some(0)), "2025-12-05T13:07:42+00:00");
    for offset in OFFSETS_MINUTES {
        let parsed = OffsetDateTime::parse(&stamp(ms + 250, Some(offset)), &Rfc3339).unwrap();
        assert_eq!(
            parsed.unix_timestamp_nanos(),
            i128::from(ms + 250) * 1_000_000
        );
    }
    assert_eq!(
        json_string("north\\east \"x\"\u{7}"),
        r#""north\\east \"x\"\u0007""#
    );
}

/// A writer that takes `lines_max` lines (and what it is given with the last one), then fails
/// as a closed pipe does: the only way a `--follow` ledger ends.
struct ClosingPipe {
    bytes: Vec<u8>,
    lines_max: usize,
}

impl Write for ClosingPipe {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.bytes.iter().filter(|b| **b == b'\n').count() >= self.lines_max {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The lines `--follow` writes until the pipe closes after about `lines_max` lines, every
/// line whole, with the intended reason of each bad line; `clock` stamps the live part.
fn follow(
    args: &GenerateArgs,
    lines_max: usize,
    clock: &mut dyn FnMut() -> i64,
) -> (Vec<String>, Vec<BadReason>) {
    follow_plan(&Plan::from_args(args).unwrap(), lines_max, clock)
}

/// [`follow`] for a plan.
fn follow_plan(
    plan: &Plan,
    lines_max: usize,
    clock: &mut dyn FnMut() -> i64,
) -> (Vec<String>, Vec<BadReason>) {
    let mut pipe = ClosingPipe {
        bytes: Vec::new(),
        lines_max,
    };
    let mut reasons = Vec::new();
    let error = write_ledger(plan, &mut pipe, |reason| reasons.push(reason), clock)
        .expect_err("a followed ledger ends only when its output fails");
    assert_eq!(error.kind(), io::ErrorKind::BrokenPipe);
    let text = String::from_utf8(pipe.bytes).expect("every line is UTF-8");
    let whole = &text[..text.rfind('\n').expect("some lines") + 1];
    let lines: Vec<String> = whole.lines().map(str::to_owned).collect();
    assert!(lines.len() >= lines_max, "{} lines", lines.len());
    (lines, reasons)
}

/// `args` followed: as fast as the test can take it (a rate this high never waits).
fn followed(mut args: GenerateArgs, swing_after: &str) -> GenerateArgs {
    args.follow = true;
    args.rate = 1_000_000_000;
    args.swing_after = Some(swing_after.to_owned());
    args
}

/// A clock that starts at `start_ms` and moves on 7 ms each time it is read.
fn ticking(start_ms: i64) -> impl FnMut() -> i64 {
    let mut now = start_ms - 7;
    move || {
        now += 7;
        now
    }
}

const END_MS: i64 = 1_767_225_600_000;

/// Shows that `--follow` writes the ledger without it, byte for byte, then runs on: good
/// live lines follow the contract, with ids no earlier line used, stamped with the clock
/// (less their lateness, at most four hours), and bad lines keep their intended reasons.
#[test]
fn follow_writes_the_history_then_runs_on() {
    let mut noisy = args(25, 4);
    noisy.duplicate_share = 0.02;
    noisy.bad_share = 0.02;
    let (history_stats, history, history_reasons) = ledger(&noisy);
    let live_start_ms = END_MS + HOUR_MS;
    let mut clock = ticking(live_start_ms);
    let (lines, reasons) = follow(
        &followed(noisy, "2m"),
        history_stats.lines as usize + 6_000,
        &mut clock,
    );
    let live_end_ms = clock();
    let (past, live) = lines.split_at(history_stats.lines as usize);
    assert!(
        past.iter().map(String::as_str).eq(history.lines()),
        "the history differs"
    );
    assert_eq!(reasons[..history_reasons.len()], history_reasons[..]);
    let live_reasons = &reasons[history_reasons.len()..];
    let bad: Vec<&String> = live
        .iter()
        .filter(|line| classify(line).is_some())
        .collect();
    assert!(!live_reasons.is_empty(), "the live part has bad lines too");
    for (line, reason) in bad.iter().zip(live_reasons) {
        assert_eq!(classify(line), Some(reason.as_str()), "{line}");
    }
    let mut ids: HashSet<String> = past
        .iter()
        .filter(|line| classify(line).is_none())
        .map(|line| serde_json::from_str::<Value>(line).unwrap()["event_id"].to_string())
        .collect();
    let (mut good, mut repeats, mut late) = (0, 0, 0);
    let start = OffsetDateTime::from_unix_timestamp(live_start_ms / 1_000).unwrap();
    let end = OffsetDateTime::from_unix_timestamp(live_end_ms / 1_000 + 1).unwrap();
    for line in live.iter().filter(|line| classify(line).is_none()) {
        let event: Value = serde_json::from_str(line).unwrap();
        if !ids.insert(event["event_id"].to_string()) {
            repeats += 1;
            continue;
        }
        good += 1;
        let occurred = instant(&event);
        assert!(occurred < end, "{line}");
        if occurred < start {
            late += 1;
            assert!(occurred >= start - time::Duration::hours(4), "{line}");
        }
    }
    assert!(
        good > 5_000 && repeats > 0 && late > 0,
        "{good} {repeats} {late}"
    );
}

/// Shows that the live part is deterministic for a seed apart from its times: two runs
/// stamped by clocks months apart, at the same pace, differ only in `occurred_at`.
#[test]
fn follow_is_deterministic_apart_from_times() {
    let mut noisy = args(12, 3);
    noisy.duplicate_share = 0.02;
    noisy.bad_share = 0.02;
    let noisy = followed(noisy, "1s");
    let (first, _) = follow(&noisy, 4_000, &mut ticking(END_MS + HOUR_MS));
    let (second, _) = follow(&noisy, 4_000, &mut ticking(END_MS + 90 * DAY_MS));
    let n = first.len().min(second.len());
    assert_ne!(first[n - 1], second[n - 1], "the times differ");
    for (a, b) in first[..n].iter().zip(&second[..n]) {
        if classify(a) == Some("malformed_json") {
            // Cut from a line with a time in it: its length, and so the cut, follows the time.
            assert_eq!(classify(b), Some("malformed_json"), "{b}");
            continue;
        }
        assert_eq!(mask_occurred_at(a), mask_occurred_at(b));
    }
}

/// Returns the line with the value of `occurred_at` replaced by `T`.
fn mask_occurred_at(line: &str) -> String {
    match line.find("\"occurred_at\":") {
        Some(at) => {
            let value = at + "\"occurred_at\":".len();
            let rest = &line[value..];
            let end = rest.find(',').unwrap_or(rest.len());
            format!("{}T{}", &line[..value], &rest[end..])
        }
        None => line.to_owned(),
    }
}

/// Shows the swing of `--follow`: about `--swing-after` into the live part (after that many
/// seconds' worth of events at the rate), the swing customer gets one infrastructure bill
/// worth three days of its revenue, and its infrastructure costs triple from the next day on: its
/// GM-M over the live part falls by far more than 5 points and stays down.
#[test]
fn follow_swings_one_customer() {
    let plain = args(10, 10);
    let (history_stats, _, _) = ledger(&plain);
    let mut swinging = plain.clone();
    (swinging.follow, swinging.rate) = (true, 2_000);
    swinging.swing_after = Some("1s".to_owned());
    let mut plan = Plan::from_args(&swinging).unwrap();
    assert_eq!(plan.swing_after_events, 2_000, "1 s at 2000 events/s");
    // The count of events decides, not the clock: the same content, without the wait.
    plan.rate = 1_000_000_000;
    let history_lines = history_stats.lines as usize;
    let (lines, _) = follow_plan(&plan, history_lines + 12_000, &mut ticking(END_MS));
    let live = &lines[history_lines..];

    let (index, id) = SPECIAL_IDS[0];
    assert_eq!(index, SWING_CUSTOMER);
    let profile = customer_profile(1, SWING_CUSTOMER, 10, 5_000);
    let bill = i128::from(round_amount(
        profile.revenue_daily * SWING_BILL_DAYS,
        UNITS_PER_CENT,
    ));
    let (mut before, mut after) = ([0_i128; 2], [0_i128; 2]);
    let mut bill_at = Vec::new();
    for (at, line) in live.iter().enumerate() {
        let event: Value = serde_json::from_str(line).unwrap();
        if event["customer_id"] != id {
            continue;
        }
        let amount = units(&event["amount"]);
        let infrastructure = event["cost_function"] == "Infrastructure"
            || taxonomy(event["category"].as_str().unwrap_or("")) == Some("Infrastructure");
        if infrastructure && event["category"] == "aws_ec2" && amount == bill {
            bill_at.push(at);
        }
        let sums = if bill_at.is_empty() {
            &mut before
        } else {
            &mut after
        };
        if event["event_type"] == "Revenue_Event" {
            sums[0] += amount;
        } else if infrastructure {
            sums[1] += amount;
        }
    }
    // After exactly 2000 live events (a ledger without noise: every line is an event).
    assert_eq!(bill_at, [2_000], "one bill, after 2000 events");
    let gm = |sums: [i128; 2]| (sums[0] - sums[1]) as f64 / sums[0] as f64;
    let (gm_before, gm_after) = (gm(before), gm(after));
    assert!((0.6..0.95).contains(&gm_before), "GM-M {gm_before} before");
    assert!(
        gm_after < gm_before - 0.3,
        "GM-M {gm_before} before, {gm_after} after"
    );
}

/// Shows that `--follow` writes the history at once and paces only the live part.
#[test]
fn follow_paces_only_the_live_part() {
    let mut paced = args(30, 10);
    (paced.follow, paced.rate) = (true, 100);
    let (history_stats, _, _) = ledger(&args(30, 10));
    let live_lines = 40;
    let started = Instant::now();
    follow(
        &paced,
        history_stats.lines as usize + live_lines,
        &mut wall_clock_ms,
    );
    let elapsed = started.elapsed();
    // The history alone would take 16 s at this rate; the live lines take 0.35 s or more.
    let burst = paced.rate / 20;
    let minimum = Duration::from_secs_f64((live_lines as u64 - burst) as f64 / paced.rate as f64);
    assert!(history_stats.lines > 1_500, "{history_stats}");
    assert!(
        elapsed >= minimum && elapsed < Duration::from_secs(8),
        "{elapsed:?}"
    );
}
