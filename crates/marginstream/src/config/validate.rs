//! Raw to validated: one function per section, each pushing every problem it finds with its
//! key, then [`validate`] assembling the [`Config`] when there is none. No I/O.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use marginstream_aggregator::{tagging, ClockMode, EngineConfig, Preparer, Tagger, TaggingRule};
use marginstream_exporter::exposure::{ExposureConfig, FAMILY_NAMES};
use marginstream_exporter::segments::{SegmentConfig, Tier};
use marginstream_model::parse::{ID_BYTES_MAX, RESERVED_CUSTOMER_ID};
use marginstream_model::{money::parse_decimal, CostFunction, Currency, DurationSpec, ParseLimits};
use rust_decimal::Decimal;

use super::raw::{RawConfig, RawKafka, RawLedger, RawMetrics, RawState, RawTagging};
use super::{Config, ConfigProblem};
use crate::fingerprint::{OnRulesChange, RulesFingerprint};
use crate::published::PublishSettings;

/// What the `[metrics]` keys of the budget and of publishing validate into.
struct Publishing {
    exposure: ExposureConfig,
    rank_interval: Duration,
    publish_interval: Duration,
}

/// The largest `ledger.max_event_bytes`: 16 MiB, the JSONL reader's hard line cap.
pub const MAX_EVENT_BYTES_LIMIT: u64 = 16 * 1024 * 1024;

/// The largest `ledger.max_future_skew`: one week.
const MAX_FUTURE_SKEW_LIMIT_SECONDS: i64 = 7 * 86_400;

/// The longest topic name Kafka accepts.
const TOPIC_NAME_BYTES_MAX: usize = 249;

/// The problems found so far, each with its key.
struct Problems<'a>(&'a mut Vec<ConfigProblem>);

impl Problems<'_> {
    fn push(&mut self, key: &str, message: impl Into<String>) {
        self.0.push(ConfigProblem {
            key: key.to_owned(),
            message: message.into(),
        });
    }

    /// Parses a duration, pushing the problem under `key` when it is not one.
    fn duration(&mut self, key: &str, text: &str) -> Option<DurationSpec> {
        DurationSpec::parse(text)
            .map_err(|error| self.push(key, error.to_string()))
            .ok()
    }
}

/// Validates a raw configuration, pushing every problem found; returns the configuration
/// when there is none.
pub fn validate(raw: RawConfig, problems: &mut Vec<ConfigProblem>) -> Option<Config> {
    let start = problems.len();
    let mut found = Problems(problems);
    kafka(&raw.kafka, &mut found);
    let state = state(&raw.state, &mut found);
    let listen = metrics(&raw.metrics, &mut found);
    let ledger = ledger(&raw.ledger, &mut found);
    let labels = ledger.as_ref().map(|l| l.labels.clone());
    let publishing = labels
        .as_ref()
        .and_then(|labels| publishing(&raw.metrics, labels, &mut found));
    let segments = match (&ledger, &labels) {
        (Some(ledger), Some(labels)) => segments(&raw.ledger, &ledger.engine, labels, &mut found),
        _ => None,
    };
    let rules = tagging(&raw.tagging, &mut found);
    let on_rules_change = on_rules_change(&raw.ledger, &mut found);
    if problems.len() > start {
        return None;
    }
    let (state_dir, checkpoint_interval) = state?;
    let ledger = ledger?;
    let (rules, tagger) = rules?;
    let fingerprint = RulesFingerprint::new(&rules, ledger.reporting, &ledger.rates);
    let preparer = Preparer::new(
        ParseLimits {
            max_event_bytes: raw.ledger.max_event_bytes as usize,
        },
        tagger,
        ledger.reporting,
        ledger.rates,
    );
    Some(Config {
        kafka: raw.kafka.clone(),
        listen: listen?,
        web_config_file: raw.metrics.web_config_file.as_ref().map(PathBuf::from),
        state_dir,
        checkpoint_interval,
        engine: ledger.engine,
        clock: ledger.clock,
        preparer,
        rules,
        fingerprint,
        on_rules_change: on_rules_change?,
        state_topic: state_topic(&raw.kafka),
        publishing: {
            let publishing = publishing?;
            PublishSettings {
                exposure: publishing.exposure,
                rank_interval: publishing.rank_interval,
                publish_interval: publishing.publish_interval,
                segments: segments?,
            }
        },
        raw,
    })
}

/// `[kafka]`: broker list, topic names, the group, pass-through properties, DLQ limit.
fn kafka(raw: &RawKafka, problems: &mut Problems<'_>) {
    if raw.brokers.trim().is_empty() {
        problems.push("kafka.brokers", "must name at least one broker");
    }
    for (key, topic) in [
        ("kafka.topic", &raw.topic),
        ("kafka.dlq_topic", &raw.dlq_topic),
    ] {
        if !is_topic_name(topic) {
            problems.push(
                key,
                format!("{topic:?} is not a Kafka topic name (1-249 of a-z A-Z 0-9 . _ -)"),
            );
        }
    }
    if raw.topic == raw.dlq_topic {
        problems.push("kafka.dlq_topic", "must differ from kafka.topic");
    }
    if let Some(state_topic) = raw.state_topic.as_deref().filter(|t| !t.is_empty()) {
        if !is_topic_name(state_topic) {
            problems.push(
                "kafka.state_topic",
                format!("{state_topic:?} is not a Kafka topic name (1-249 of a-z A-Z 0-9 . _ -); an empty string turns the state topic off"),
            );
        } else if state_topic == raw.topic || state_topic == raw.dlq_topic {
            problems.push(
                "kafka.state_topic",
                "must differ from kafka.topic and kafka.dlq_topic",
            );
        }
    }
    if raw.state_topic.is_none()
        && raw.topic.len() + STATE_TOPIC_SUFFIX.len() > TOPIC_NAME_BYTES_MAX
    {
        problems.push(
            "kafka.state_topic",
            format!("the default, kafka.topic followed by {STATE_TOPIC_SUFFIX:?}, is longer than {TOPIC_NAME_BYTES_MAX} bytes: name one"),
        );
    }
    if let Some(id) = &raw.group_instance_id {
        // Kafka's own rule for group.instance.id (JoinGroupRequest.validateGroupInstanceId).
        if !is_topic_name(id) {
            problems.push(
                "kafka.group_instance_id",
                format!("{id:?} is not a group instance id (1-249 of a-z A-Z 0-9 . _ -); leave it unset for a dynamic member"),
            );
        }
    }
    if raw.group_id.trim().is_empty() {
        problems.push("kafka.group_id", "must not be empty");
    }
    for key in raw.properties.keys() {
        if marginstream_consumer::kafka::RESERVED_PROPERTIES.contains(&key.as_str())
            || key == "bootstrap.servers"
        {
            problems.push(
                &format!("kafka.properties.{key}"),
                "is set by marginstream itself (offsets move only after a durable checkpoint); use kafka.brokers, kafka.group_id or kafka.group_instance_id for those",
            );
        }
    }
    if raw.dlq_pending_max == 0 || raw.dlq_pending_max > 10_000_000 {
        problems.push(
            "kafka.dlq_pending_max",
            format!(
                "must be between 1 and 10000000, got {}",
                raw.dlq_pending_max
            ),
        );
    }
}

/// Returns `true` for a valid Kafka topic name (the same rule holds for a group instance id).
fn is_topic_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= TOPIC_NAME_BYTES_MAX
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The state topic: `kafka.state_topic` as written, else the ledger topic's name with
/// `-marginstream-state`; `None` when turned off with an empty string.
fn state_topic(raw: &RawKafka) -> Option<String> {
    match raw.state_topic.as_deref() {
        Some("") => None,
        Some(topic) => Some(topic.to_owned()),
        None => Some(format!("{}{STATE_TOPIC_SUFFIX}", raw.topic)),
    }
}

/// What the default state topic's name adds to the ledger topic's: 19 bytes, so that a
/// ledger topic of up to 230 bytes keeps a valid default.
pub const STATE_TOPIC_SUFFIX: &str = "-marginstream-state";

/// `ledger.on_rules_change`.
fn on_rules_change(raw: &RawLedger, problems: &mut Problems<'_>) -> Option<OnRulesChange> {
    match raw.on_rules_change.as_str() {
        "restate" => Some(OnRulesChange::Restate),
        "refuse" => Some(OnRulesChange::Refuse),
        other => {
            problems.push(
                "ledger.on_rules_change",
                format!("{other:?} is neither \"restate\" nor \"refuse\""),
            );
            None
        }
    }
}

/// `[state]`: the checkpoint directory and interval.
fn state(raw: &RawState, problems: &mut Problems<'_>) -> Option<(PathBuf, Duration)> {
    if raw.dir.trim().is_empty() {
        problems.push("state.dir", "must not be empty");
    }
    let interval = match DurationSpec::parse(&raw.checkpoint_interval) {
        Ok(interval) if interval.seconds() >= 1 && interval.seconds() <= 86_400 => {
            Some(Duration::from_secs(interval.seconds() as u64))
        }
        Ok(interval) => {
            problems.push(
                "state.checkpoint_interval",
                format!("{interval} is not between 1s and 24h"),
            );
            None
        }
        Err(error) => {
            problems.push("state.checkpoint_interval", error.to_string());
            None
        }
    };
    Some((PathBuf::from(&raw.dir), interval?))
}

/// `[metrics]`: the listen address and the web configuration file's name (the file itself
/// is read by `crate::web::load`, not here: validation does no I/O).
fn metrics(raw: &RawMetrics, problems: &mut Problems<'_>) -> Option<SocketAddr> {
    if raw
        .web_config_file
        .as_deref()
        .is_some_and(|path| path.trim().is_empty())
    {
        problems.push(
            "metrics.web_config_file",
            "must not be empty: name the file, or leave the key out for plain HTTP",
        );
    }
    raw.listen
        .parse::<SocketAddr>()
        .map_err(|_| {
            problems.push(
                "metrics.listen",
                format!("{:?} is not an address like 127.0.0.1:9898", raw.listen),
            )
        })
        .ok()
}

/// What `[ledger]` validates into.
struct Ledger {
    /// The window labels: the finite windows as written, then `all` with the lifetime window.
    labels: Vec<String>,
    /// The engine's settings, the clock defaulted to event time.
    engine: EngineConfig,
    /// The configured clock, if any.
    clock: Option<ClockMode>,
    reporting: Currency,
    rates: HashMap<Currency, Decimal>,
}

/// `[ledger]`: windows, bucket, clock, currency and rates, limits.
fn ledger(raw: &RawLedger, problems: &mut Problems<'_>) -> Option<Ledger> {
    let bucket = problems.duration("ledger.bucket", &raw.bucket);
    let windows: Vec<Option<DurationSpec>> = raw
        .windows
        .iter()
        .map(|w| problems.duration("ledger.windows", w))
        .collect();
    let skew = problems.duration("ledger.max_future_skew", &raw.max_future_skew);
    let horizon = raw
        .dedup_horizon
        .as_deref()
        .map(|h| problems.duration("ledger.dedup_horizon", h));
    windows_fit(bucket.as_ref(), &windows, raw.lifetime, problems);
    let clock = match raw.clock.as_deref() {
        None => None,
        Some("event") => Some(ClockMode::Event),
        Some("wall") => Some(ClockMode::Wall),
        Some(other) => {
            problems.push(
                "ledger.clock",
                format!("{other:?} is neither \"event\" nor \"wall\""),
            );
            None
        }
    };
    let reporting = Currency::parse(&raw.reporting_currency)
        .map_err(|error| problems.push("ledger.reporting_currency", error.to_string()))
        .ok();
    let rates = rates(raw, reporting, problems);
    if raw.max_event_bytes == 0 || raw.max_event_bytes > MAX_EVENT_BYTES_LIMIT {
        problems.push(
            "ledger.max_event_bytes",
            format!(
                "must be between 1 and {MAX_EVENT_BYTES_LIMIT}, got {}",
                raw.max_event_bytes
            ),
        );
    }
    if raw.max_customers == 0 || raw.max_customers >= u64::from(u32::MAX) {
        problems.push(
            "ledger.max_customers",
            format!(
                "must be between 1 and {}, got {}",
                u32::MAX - 1,
                raw.max_customers
            ),
        );
    }
    if let Some(skew) = &skew {
        if skew.seconds() > MAX_FUTURE_SKEW_LIMIT_SECONDS {
            problems.push(
                "ledger.max_future_skew",
                format!("{skew} is more than the maximum of 7d"),
            );
        }
    }
    let longest = windows.iter().flatten().map(DurationSpec::seconds).max();
    if let (Some(Some(horizon)), Some(longest), Some(bucket)) = (&horizon, longest, &bucket) {
        if horizon.seconds() < longest + bucket.seconds() {
            problems.push(
                "ledger.dedup_horizon",
                format!("{horizon} is shorter than the longest window plus one bucket"),
            );
        }
    }
    let mut labels: Vec<String> = windows
        .iter()
        .flatten()
        .map(|w| w.as_str().to_owned())
        .collect();
    if raw.lifetime {
        labels.push("all".to_owned());
    }
    Some(Ledger {
        labels,
        engine: EngineConfig {
            windows: windows.into_iter().collect::<Option<_>>()?,
            lifetime: raw.lifetime,
            bucket: bucket?,
            clock: clock.unwrap_or(ClockMode::Event),
            max_customers: raw.max_customers as usize,
            max_future_skew_seconds: skew?.seconds(),
            dedup_horizon: horizon.flatten(),
        },
        clock,
        reporting: reporting?,
        rates: rates?,
    })
}

/// Checks the windows against the bucket and each other: whole buckets, all different, at
/// least one label and at most the engine's maximum.
fn windows_fit(
    bucket: Option<&DurationSpec>,
    windows: &[Option<DurationSpec>],
    lifetime: bool,
    problems: &mut Problems<'_>,
) {
    if let Some(bucket) = bucket {
        if bucket.seconds() < 60 {
            problems.push(
                "ledger.bucket",
                format!("{bucket} is shorter than the minimum of 1m"),
            );
        }
        for window in windows.iter().flatten() {
            if window.seconds() % bucket.seconds() != 0 {
                problems.push(
                    "ledger.windows",
                    format!("window {window} is not a whole number of {bucket} buckets"),
                );
            }
        }
    }
    let mut seen = HashMap::new();
    for window in windows.iter().flatten() {
        if let Some(previous) = seen.insert(window.seconds(), window.as_str().to_owned()) {
            problems.push(
                "ledger.windows",
                format!("windows {previous} and {window} are the same length"),
            );
        }
        if window.as_str() == "all" {
            problems.push(
                "ledger.windows",
                "`all` is the lifetime window: use ledger.lifetime",
            );
        }
    }
    let label_count = windows.len() + usize::from(lifetime);
    if label_count == 0 {
        problems.push(
            "ledger.windows",
            "no window at all: list a window or set ledger.lifetime = true",
        );
    }
    if label_count > marginstream_aggregator::engine::WINDOWS_MAX {
        problems.push(
            "ledger.windows",
            format!(
                "at most {} windows counting `all`",
                marginstream_aggregator::engine::WINDOWS_MAX
            ),
        );
    }
}

/// `ledger.fx`: a positive exact rate per currency code, 1 for the reporting currency.
fn rates(
    raw: &RawLedger,
    reporting: Option<Currency>,
    problems: &mut Problems<'_>,
) -> Option<HashMap<Currency, Decimal>> {
    let start = problems.0.len();
    let mut rates = HashMap::new();
    for (code, value) in &raw.fx {
        let key = format!("ledger.fx.{code}");
        let Ok(currency) = Currency::parse(code) else {
            problems.push(
                &key,
                format!("{code:?} is not a currency code (three upper-case letters)"),
            );
            continue;
        };
        let rate = match value {
            toml::Value::String(text) => parse_decimal(text).map_err(str::to_owned),
            toml::Value::Integer(number) => Ok(Decimal::from(*number)),
            // A TOML float's shortest round-trip text is the decimal the user wrote, up to
            // 15 significant digits; strings are exact whatever their length.
            toml::Value::Float(number) => parse_decimal(&number.to_string()).map_err(str::to_owned),
            other => Err(format!("expected a decimal, got {}", other.type_str())),
        };
        match rate {
            Ok(rate) if rate <= Decimal::ZERO => {
                problems.push(&key, format!("rate {rate} must be positive"))
            }
            Ok(rate) if Some(currency) == reporting && rate != Decimal::ONE => problems.push(
                &key,
                format!("the reporting currency's rate must be 1, got {rate}"),
            ),
            Ok(rate) => {
                rates.insert(currency, rate);
            }
            Err(message) => problems.push(&key, message),
        }
    }
    (problems.0.len() == start).then_some(rates)
}

/// `[tagging]`: the rules in order, then the defaults when none are given or asked for.
fn tagging(raw: &RawTagging, problems: &mut Problems<'_>) -> Option<(Vec<TaggingRule>, Tagger)> {
    let mut rules = Vec::new();
    for (index, rule) in raw.rules.iter().flatten().enumerate() {
        let key = format!("tagging.rules[{index}]");
        let Some(function) = CostFunction::from_wire(&rule.function) else {
            problems.push(
                &format!("{key}.function"),
                format!("{:?} is not one of Infrastructure, Support, Success_Engineering, Implementation, Onboarding, Excluded", rule.function),
            );
            continue;
        };
        if rule.categories.is_empty() || rule.categories.iter().any(|c| c.trim().is_empty()) {
            problems.push(
                &format!("{key}.categories"),
                "must list at least one non-empty category",
            );
        }
        rules.push(TaggingRule {
            function,
            categories: rule.categories.clone(),
        });
    }
    if raw.rules.is_none() || raw.include_default_rules {
        rules.extend(tagging::default_rules());
    }
    let tagger = Tagger::new(&rules)
        .map_err(|error| problems.push("tagging.rules", error.to_string()))
        .ok()?;
    Some((rules, tagger))
}

/// Parses a whole-second duration between `min` and `max` seconds.
fn bounded_duration(
    key: &str,
    text: &str,
    (min, max): (i64, i64),
    problems: &mut Problems<'_>,
) -> Option<Duration> {
    let duration = problems.duration(key, text)?;
    if duration.seconds() < min || duration.seconds() > max {
        problems.push(
            key,
            format!(
                "{duration} is not between {} and {}",
                DurationSpec::from_seconds(min),
                DurationSpec::from_seconds(max)
            ),
        );
        return None;
    }
    Some(Duration::from_secs(duration.seconds() as u64))
}

/// Returns the index of `window` among `labels`, pushing a problem under `key` otherwise.
fn label_index(
    key: &str,
    window: &str,
    labels: &[String],
    problems: &mut Problems<'_>,
) -> Option<usize> {
    let index = labels.iter().position(|label| label == window.trim());
    if index.is_none() {
        problems.push(
            key,
            format!(
                "{window:?} is not a configured window (one of {})",
                labels.join(", ")
            ),
        );
    }
    index
}

/// The `[metrics]` keys of the exposure budget and of publishing (contract section 7).
fn publishing(
    raw: &RawMetrics,
    labels: &[String],
    problems: &mut Problems<'_>,
) -> Option<Publishing> {
    let start = problems.0.len();
    if raw.customers_max > u64::from(u32::MAX) {
        problems.push(
            "metrics.customers_max",
            format!("must be at most {}, got {}", u32::MAX, raw.customers_max),
        );
    }
    let mut always = Vec::new();
    for (index, id) in raw.customers_always.iter().enumerate() {
        let key = format!("metrics.customers_always[{index}]");
        if id.is_empty() || id.len() > ID_BYTES_MAX {
            problems.push(&key, format!("must be 1 to {ID_BYTES_MAX} bytes"));
        } else if id == RESERVED_CUSTOMER_ID {
            problems.push(
                &key,
                format!("{RESERVED_CUSTOMER_ID:?} is the roll-up's id, not a customer"),
            );
        } else if always.contains(id) {
            problems.push(&key, format!("{id:?} is listed twice"));
        } else {
            always.push(id.clone());
        }
    }
    // The longest finite window (labels list the finite windows first), else `all`.
    let finite = labels.iter().filter(|l| *l != "all").count();
    let rank_window = match &raw.rank_window {
        Some(window) => label_index("metrics.rank_window", window, labels, problems),
        None => (0..finite)
            .max_by_key(|index| DurationSpec::parse(&labels[*index]).map_or(0, |d| d.seconds()))
            .or_else(|| labels.iter().position(|l| l == "all")),
    };
    let mut families = [false; 5];
    for name in &raw.customer_families {
        match FAMILY_NAMES.iter().position(|family| family == name) {
            Some(index) if families[index] => problems.push(
                "metrics.customer_families",
                format!("{name:?} is listed twice"),
            ),
            Some(index) => families[index] = true,
            None => problems.push(
                "metrics.customer_families",
                format!("{name:?} is not one of {}", FAMILY_NAMES.join(", ")),
            ),
        }
    }
    let windows = match &raw.customer_windows {
        None => vec![true; labels.len()],
        Some(list) => {
            let mut chosen = vec![false; labels.len()];
            for window in list {
                if let Some(index) =
                    label_index("metrics.customer_windows", window, labels, problems)
                {
                    chosen[index] = true;
                }
            }
            chosen
        }
    };
    let rank_interval = bounded_duration(
        "metrics.rank_interval",
        &raw.rank_interval,
        (60, 7 * 86_400),
        problems,
    );
    let publish_interval = bounded_duration(
        "metrics.publish_interval",
        &raw.publish_interval,
        (1, 60),
        problems,
    );
    if problems.0.len() > start {
        return None;
    }
    Some(Publishing {
        exposure: ExposureConfig {
            customers_max: raw.customers_max as usize,
            customers_always: always,
            rank_window: rank_window?,
            families,
            windows,
        },
        rank_interval: rank_interval?,
        publish_interval: publish_interval?,
    })
}

/// `ledger.segments` and `ledger.segment_window` (contract section 8). `Some(None)`: valid,
/// with no segments (an empty list, or no finite window).
fn segments(
    raw: &RawLedger,
    engine: &EngineConfig,
    labels: &[String],
    problems: &mut Problems<'_>,
) -> Option<Option<SegmentConfig>> {
    let start = problems.0.len();
    let tiers = match &raw.segments {
        None => SegmentConfig::default_tiers(),
        Some(list) => {
            let mut tiers: Vec<Tier> = Vec::new();
            for (index, segment) in list.iter().enumerate() {
                let key = format!("ledger.segments[{index}]");
                let name = segment.name.trim();
                if name.is_empty() {
                    problems.push(&format!("{key}.name"), "must not be empty");
                } else if tiers.iter().any(|t| t.name == name) {
                    problems.push(&format!("{key}.name"), format!("{name:?} is listed twice"));
                }
                let min = match &segment.min {
                    toml::Value::String(text) => parse_decimal(text).map_err(str::to_owned),
                    toml::Value::Integer(number) => Ok(Decimal::from(*number)),
                    toml::Value::Float(number) => {
                        parse_decimal(&number.to_string()).map_err(str::to_owned)
                    }
                    other => Err(format!("expected a decimal, got {}", other.type_str())),
                };
                match min {
                    Ok(min) => {
                        if let Some(previous) = tiers.last() {
                            if min <= previous.min {
                                problems.push(
                                    &format!("{key}.min"),
                                    format!(
                                        "{min} is not above the previous tier's {} (tiers go in ascending min)",
                                        previous.min
                                    ),
                                );
                            }
                        }
                        tiers.push(Tier {
                            name: name.to_owned(),
                            min,
                        });
                    }
                    Err(message) => problems.push(&format!("{key}.min"), message),
                }
            }
            tiers
        }
    };
    let window = match &raw.segment_window {
        Some(window) => {
            let index = label_index("ledger.segment_window", window, labels, problems);
            if index.is_some() && window.trim() == "all" {
                problems.push(
                    "ledger.segment_window",
                    "the run-rate needs a finite window, not `all`",
                );
            }
            index
        }
        // The longest finite window: finite windows come first among the labels.
        None => (0..engine.windows.len()).max_by_key(|index| engine.windows[*index].seconds()),
    };
    if problems.0.len() > start {
        return None;
    }
    Some(match (tiers.is_empty(), window) {
        (false, Some(window)) => Some(SegmentConfig {
            tiers,
            window,
            window_seconds: engine.windows[window].seconds(),
        }),
        _ => None,
    })
}
