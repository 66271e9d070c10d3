//! The configuration: a TOML file, overridden by `MARGINSTREAM_*` environment variables and
//! then by command-line flags, deserialized into [`RawConfig`] and validated into [`Config`].
//!
//! Every key has a default, so an empty file is a valid configuration. Validation has no I/O
//! and reports every problem it finds at once, each naming its key. The reference of every key
//! is `docs/configuration.md`; `config/marginstream.toml` is the documented default.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;

use marginstream_aggregator::{tagging, ClockMode, EngineConfig, Preparer, Tagger, TaggingRule};
use marginstream_model::{money::parse_decimal, CostFunction, Currency, DurationSpec, ParseLimits};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// Prefix of environment variables that override configuration keys.
pub const ENV_PREFIX: &str = "MARGINSTREAM_";

/// The largest `ledger.max_event_bytes`: 16 MiB, the JSONL reader's hard line cap.
pub const MAX_EVENT_BYTES_LIMIT: u64 = 16 * 1024 * 1024;

/// The largest `ledger.max_future_skew`: one week.
const MAX_FUTURE_SKEW_LIMIT_SECONDS: i64 = 7 * 86_400;

/// The configuration file as written, every key defaulted.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct RawConfig {
    /// The Kafka source of `marginstream run`.
    pub kafka: RawKafka,
    /// The HTTP endpoint of `marginstream run`.
    pub metrics: RawMetrics,
    /// The computation: windows, clock, currency and limits.
    pub ledger: RawLedger,
    /// Cost tagging rules (contract section 3).
    pub tagging: RawTagging,
    /// Checkpoints of `marginstream run`.
    pub state: RawState,
}

/// `[state]`: where and how often `marginstream run` checkpoints its state.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct RawState {
    /// Directory of the checkpoint file, created if missing (default `marginstream-state`,
    /// relative to the working directory). One instance per directory.
    pub dir: String,
    /// Time between checkpoints (default `30s`): the most work redone after a crash, and
    /// how far the committed offsets lag.
    pub checkpoint_interval: String,
}

impl Default for RawState {
    fn default() -> RawState {
        RawState {
            dir: "marginstream-state".to_owned(),
            checkpoint_interval: "30s".to_owned(),
        }
    }
}

/// `[kafka]`: where the ledger is read from and rejected events are written to.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct RawKafka {
    /// Bootstrap brokers, comma-separated `host:port` (default `127.0.0.1:9092`).
    pub brokers: String,
    /// The ledger topic (default `cel.events`).
    pub topic: String,
    /// The consumer group (default `marginstream`).
    pub group_id: String,
    /// The dead-letter topic for rejected events (default `cel.events.dlq`).
    pub dlq_topic: String,
    /// librdkafka properties passed through unchanged to the consumer and the dead-letter
    /// producer (default none), e.g. `"security.protocol" = "SASL_SSL"`. The offset and
    /// group settings the exactly-once effect relies on are refused.
    pub properties: BTreeMap<String, String>,
    /// Most rejected messages waiting for the dead-letter topic's acknowledgement; at this
    /// limit consumption pauses until they are written (default 10000).
    pub dlq_pending_max: u64,
}

impl Default for RawKafka {
    fn default() -> RawKafka {
        RawKafka {
            // The conventional local Kafka port.
            brokers: "127.0.0.1:9092".to_owned(),
            topic: "cel.events".to_owned(),
            group_id: "marginstream".to_owned(),
            dlq_topic: "cel.events.dlq".to_owned(),
            properties: BTreeMap::new(),
            // About 2 MB of typical events held in memory while the topic is unreachable.
            dlq_pending_max: 10_000,
        }
    }
}

/// `[metrics]`: the HTTP endpoint serving `/metrics`, `/healthz` and `/readyz`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct RawMetrics {
    /// Listen address (default `127.0.0.1:9898`: loopback, as in the contract).
    pub listen: String,
    /// A web configuration file in the Prometheus exporter toolkit's format: TLS and
    /// basic auth on every path but `/healthz` and `/readyz` (default unset: plain HTTP,
    /// no authentication; contract §12). Checked by `crate::web::load`.
    pub web_config_file: Option<String>,
}

impl Default for RawMetrics {
    fn default() -> RawMetrics {
        RawMetrics {
            listen: "127.0.0.1:9898".to_owned(),
            web_config_file: None,
        }
    }
}

/// `[ledger]`: windows, watermark clock, reporting currency and limits.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct RawLedger {
    /// Finite rolling windows, each a whole number of buckets (default `["24h", "7d", "30d"]`).
    pub windows: Vec<String>,
    /// Bucket length, at least `1m` (default `1h`).
    pub bucket: String,
    /// `event` or `wall`; unset: `event` for `replay`, `wall` for `run` (contract section 4).
    pub clock: Option<String>,
    /// Keep the lifetime window `all` (default true).
    pub lifetime: bool,
    /// ISO 4217 code of the reporting currency (default `USD`).
    pub reporting_currency: String,
    /// Static rates: units of reporting currency per unit of each currency (default none).
    /// Write rates as strings (`EUR = "1.0825"`) to keep them exact.
    pub fx: BTreeMap<String, toml::Value>,
    /// Largest message in bytes; larger ones are rejected as `oversized` (default 65536).
    pub max_event_bytes: u64,
    /// Most customers held; a new one beyond is rejected as `customer_limit` (default 1000000).
    pub max_customers: u64,
    /// How far past the wall clock `occurred_at` may be (default `5m`).
    pub max_future_skew: String,
    /// How long an applied `event_id` is remembered, in watermark time (default: the longest
    /// window plus one bucket). Longer catches repeats of older events in `all`, at the cost
    /// of 24 to 48 bytes of memory per event in the horizon.
    pub dedup_horizon: Option<String>,
}

impl Default for RawLedger {
    fn default() -> RawLedger {
        // Defaults of the contract, sections 2 and 4.
        RawLedger {
            windows: vec!["24h".to_owned(), "7d".to_owned(), "30d".to_owned()],
            bucket: "1h".to_owned(),
            clock: None,
            lifetime: true,
            reporting_currency: "USD".to_owned(),
            fx: BTreeMap::new(),
            max_event_bytes: 65_536,
            max_customers: 1_000_000,
            max_future_skew: "5m".to_owned(),
            dedup_horizon: None,
        }
    }
}

/// `[tagging]`: rules mapping a cost `category` to a cost function; the first match wins.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct RawTagging {
    /// The rules, in order (default: none given, so the contract's default rules apply).
    pub rules: Option<Vec<RawRule>>,
    /// Append the default rules after `rules`, as a fallback (default false).
    pub include_default_rules: bool,
}

/// One `[[tagging.rules]]` entry.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct RawRule {
    /// One of the six cost functions, e.g. `Support`.
    pub function: String,
    /// Category names or globs (`aws_*`), matched case-insensitively.
    pub categories: Vec<String>,
}

/// One problem found in the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// The dotted key, e.g. `ledger.windows`.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// Every problem found, for one error report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Where the configuration came from, for the message.
    pub source: String,
    /// The problems, in key order.
    pub problems: Vec<ConfigProblem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid configuration ({}):", self.source)?;
        for problem in &self.problems {
            write!(f, "\n  - {problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Kafka settings, validated for form.
    pub kafka: RawKafka,
    /// The `/metrics` listen address.
    pub listen: SocketAddr,
    /// The web configuration file (TLS, basic auth), if any; read by `crate::web::load`.
    pub web_config_file: Option<std::path::PathBuf>,
    /// The engine's settings; `clock` is resolved by [`Config::engine_for`].
    pub engine: EngineConfig,
    /// The configured clock, if any.
    pub clock: Option<ClockMode>,
    /// Parse limits, tagging and currency conversion.
    pub preparer: Preparer,
    /// The effective tagging rules.
    pub rules: Vec<TaggingRule>,
    /// The checkpoint directory.
    pub state_dir: std::path::PathBuf,
    /// Time between checkpoints.
    pub checkpoint_interval: std::time::Duration,
    /// The raw configuration after every override, for `check-config`.
    pub raw: RawConfig,
}

impl Config {
    /// Returns the engine configuration with the clock resolved: the configured one, else
    /// `default`.
    pub fn engine_for(&self, default: ClockMode) -> EngineConfig {
        EngineConfig {
            clock: self.clock.unwrap_or(default),
            ..self.engine.clone()
        }
    }
}

/// Turns an environment variable name into a key path: `MARGINSTREAM_LEDGER__WINDOWS` is
/// `ledger.windows`. Segments are lower-cased, except currency codes under `ledger.fx`.
pub fn env_key(name: &str) -> Option<Vec<String>> {
    let rest = name.strip_prefix(ENV_PREFIX)?;
    let mut path: Vec<String> = Vec::new();
    for segment in rest.split("__") {
        let in_fx = path.len() == 2 && path[0] == "ledger" && path[1] == "fx";
        path.push(if in_fx {
            segment.to_ascii_uppercase()
        } else {
            segment.to_ascii_lowercase()
        });
    }
    Some(path)
}

/// Parses an override value: a TOML value (`["24h","7d"]`, `true`, `42`, `"text"`) or, when
/// it is not valid TOML, the text itself as a string.
pub fn override_value(text: &str) -> toml::Value {
    match toml::from_str::<toml::Table>(&format!("v = {text}")) {
        Ok(mut table) => table
            .remove("v")
            .unwrap_or(toml::Value::String(text.to_owned())),
        Err(_) => toml::Value::String(text.to_owned()),
    }
}

/// Sets `path` in `table` to `value`, creating tables on the way. Fails when a segment on
/// the way is not a table.
pub fn set_key(table: &mut toml::Table, path: &[String], value: toml::Value) -> Result<(), String> {
    let (last, parents) = path.split_last().ok_or("empty key")?;
    let mut current = table;
    for (depth, segment) in parents.iter().enumerate() {
        let entry = current
            .entry(segment.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        current = entry
            .as_table_mut()
            .ok_or_else(|| format!("{} is not a table", path[..=depth].join(".")))?;
    }
    current.insert(last.clone(), value);
    Ok(())
}

/// Loads the configuration: the file (if any), then environment overrides from `env`, then
/// `flags` (key path, TOML value text), then validation.
pub fn load(
    file: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
    flags: &[(&str, String)],
) -> Result<Config, ConfigError> {
    let source = file.map_or_else(|| "defaults".to_owned(), |p| p.display().to_string());
    let fail = |problems| ConfigError {
        source: source.clone(),
        problems,
    };
    let mut table = match file {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|error| {
                fail(vec![ConfigProblem {
                    key: "(file)".to_owned(),
                    message: format!("cannot read {}: {error}", path.display()),
                }])
            })?;
            toml::from_str::<toml::Table>(&text).map_err(|error| {
                fail(vec![ConfigProblem {
                    key: "(file)".to_owned(),
                    message: format!("not valid TOML: {}", error.message()),
                }])
            })?
        }
        None => toml::Table::new(),
    };
    let mut problems = Vec::new();
    // A key is always SECTION__KEY: a variable without `__` (Kubernetes' service links
    // give a Service named marginstream MARGINSTREAM_PORT, MARGINSTREAM_SERVICE_HOST, ...)
    // is not an override.
    let mut env: Vec<(String, String)> = env
        .into_iter()
        .filter(|(name, _)| {
            name.strip_prefix(ENV_PREFIX)
                .is_some_and(|rest| rest.contains("__"))
        })
        .collect();
    env.sort();
    for (name, value) in env {
        let path = env_key(&name).unwrap_or_default();
        if let Err(message) = set_key(&mut table, &path, override_value(&value)) {
            problems.push(ConfigProblem { key: name, message });
        }
    }
    for (key, value) in flags {
        let path: Vec<String> = key.split('.').map(str::to_owned).collect();
        if let Err(message) = set_key(&mut table, &path, override_value(value)) {
            problems.push(ConfigProblem {
                key: (*key).to_owned(),
                message,
            });
        }
    }
    let raw = deserialize(table, &mut problems);
    match raw.map(|raw| validate(raw, &mut problems)) {
        Some(Some(config)) if problems.is_empty() => Ok(config),
        _ => Err(fail(problems)),
    }
}

/// Deserializes the merged table, collecting every unknown key and the first type error.
fn deserialize(table: toml::Table, problems: &mut Vec<ConfigProblem>) -> Option<RawConfig> {
    let mut unknown = Vec::new();
    let mut track = serde_path_to_error::Track::new();
    let deserializer =
        serde_path_to_error::Deserializer::new(toml::Value::Table(table), &mut track);
    let result = serde_ignored::deserialize(deserializer, |path| unknown.push(path.to_string()));
    for key in unknown {
        problems.push(ConfigProblem {
            key,
            message: "unknown key".to_owned(),
        });
    }
    match result {
        Ok(raw) => Some(raw),
        Err(error) => {
            let key = track.path().to_string();
            problems.push(ConfigProblem {
                key,
                message: error.to_string(),
            });
            None
        }
    }
}

fn duration(key: &str, text: &str, problems: &mut Vec<ConfigProblem>) -> Option<DurationSpec> {
    DurationSpec::parse(text)
        .map_err(|error| {
            problems.push(ConfigProblem {
                key: key.to_owned(),
                message: error.to_string(),
            })
        })
        .ok()
}

/// Validates a raw configuration, pushing every problem found; returns the configuration
/// when there is none.
pub fn validate(raw: RawConfig, problems: &mut Vec<ConfigProblem>) -> Option<Config> {
    let start = problems.len();
    let mut problem = |key: &str, message: String| {
        problems.push(ConfigProblem {
            key: key.to_owned(),
            message,
        })
    };

    // [kafka]
    if raw.kafka.brokers.trim().is_empty() {
        problem("kafka.brokers", "must name at least one broker".to_owned());
    }
    for (key, topic) in [
        ("kafka.topic", &raw.kafka.topic),
        ("kafka.dlq_topic", &raw.kafka.dlq_topic),
    ] {
        let valid = !topic.is_empty()
            && topic.len() <= 249
            && topic
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if !valid {
            problem(
                key,
                format!("{topic:?} is not a Kafka topic name (1-249 of a-z A-Z 0-9 . _ -)"),
            );
        }
    }
    if raw.kafka.topic == raw.kafka.dlq_topic {
        problem("kafka.dlq_topic", "must differ from kafka.topic".to_owned());
    }
    if raw.kafka.group_id.trim().is_empty() {
        problem("kafka.group_id", "must not be empty".to_owned());
    }
    for key in raw.kafka.properties.keys() {
        if marginstream_consumer::kafka::RESERVED_PROPERTIES.contains(&key.as_str())
            || key == "bootstrap.servers"
        {
            problem(
                &format!("kafka.properties.{key}"),
                "is set by marginstream itself (offsets move only after a durable checkpoint); use kafka.brokers or kafka.group_id for those".to_owned(),
            );
        }
    }
    if raw.kafka.dlq_pending_max == 0 || raw.kafka.dlq_pending_max > 10_000_000 {
        problem(
            "kafka.dlq_pending_max",
            format!(
                "must be between 1 and 10000000, got {}",
                raw.kafka.dlq_pending_max
            ),
        );
    }

    // [state]
    if raw.state.dir.trim().is_empty() {
        problem("state.dir", "must not be empty".to_owned());
    }
    let checkpoint_interval = match DurationSpec::parse(&raw.state.checkpoint_interval) {
        Ok(interval) if interval.seconds() >= 1 && interval.seconds() <= 86_400 => {
            Some(std::time::Duration::from_secs(interval.seconds() as u64))
        }
        Ok(interval) => {
            problem(
                "state.checkpoint_interval",
                format!("{interval} is not between 1s and 24h"),
            );
            None
        }
        Err(error) => {
            problem("state.checkpoint_interval", error.to_string());
            None
        }
    };

    // [metrics]
    let listen = raw.metrics.listen.parse::<SocketAddr>().map_err(|_| {
        problem(
            "metrics.listen",
            format!(
                "{:?} is not an address like 127.0.0.1:9898",
                raw.metrics.listen
            ),
        )
    });

    if raw
        .metrics
        .web_config_file
        .as_deref()
        .is_some_and(|path| path.trim().is_empty())
    {
        problem(
            "metrics.web_config_file",
            "must not be empty: name the file, or leave the key out for plain HTTP".to_owned(),
        );
    }

    // [ledger]
    let mut collected = Vec::new();
    let bucket = duration("ledger.bucket", &raw.ledger.bucket, collected.as_mut());
    let windows: Vec<Option<DurationSpec>> = raw
        .ledger
        .windows
        .iter()
        .map(|w| duration("ledger.windows", w, &mut collected))
        .collect();
    let skew = duration(
        "ledger.max_future_skew",
        &raw.ledger.max_future_skew,
        &mut collected,
    );
    let horizon = raw
        .ledger
        .dedup_horizon
        .as_deref()
        .map(|h| duration("ledger.dedup_horizon", h, &mut collected));
    for p in collected {
        problem(&p.key, p.message);
    }
    if let Some(bucket) = &bucket {
        if bucket.seconds() < 60 {
            problem(
                "ledger.bucket",
                format!("{bucket} is shorter than the minimum of 1m"),
            );
        }
        for window in windows.iter().flatten() {
            if window.seconds() % bucket.seconds() != 0 {
                problem(
                    "ledger.windows",
                    format!("window {window} is not a whole number of {bucket} buckets"),
                );
            }
        }
    }
    let mut seen = HashMap::new();
    for window in windows.iter().flatten() {
        if let Some(previous) = seen.insert(window.seconds(), window.as_str().to_owned()) {
            problem(
                "ledger.windows",
                format!("windows {previous} and {window} are the same length"),
            );
        }
        if window.as_str() == "all" {
            problem(
                "ledger.windows",
                "`all` is the lifetime window: use ledger.lifetime".to_owned(),
            );
        }
    }
    let label_count = windows.len() + usize::from(raw.ledger.lifetime);
    if label_count == 0 {
        problem(
            "ledger.windows",
            "no window at all: list a window or set ledger.lifetime = true".to_owned(),
        );
    }
    if label_count > marginstream_aggregator::engine::WINDOWS_MAX {
        problem(
            "ledger.windows",
            format!(
                "at most {} windows counting `all`",
                marginstream_aggregator::engine::WINDOWS_MAX
            ),
        );
    }
    let clock = match raw.ledger.clock.as_deref() {
        None => None,
        Some("event") => Some(ClockMode::Event),
        Some("wall") => Some(ClockMode::Wall),
        Some(other) => {
            problem(
                "ledger.clock",
                format!("{other:?} is neither \"event\" nor \"wall\""),
            );
            None
        }
    };
    let reporting = Currency::parse(&raw.ledger.reporting_currency)
        .map_err(|error| problem("ledger.reporting_currency", error.to_string()))
        .ok();
    let mut rates = HashMap::new();
    for (code, value) in &raw.ledger.fx {
        let key = format!("ledger.fx.{code}");
        let Ok(currency) = Currency::parse(code) else {
            problem(
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
                problem(&key, format!("rate {rate} must be positive"))
            }
            Ok(rate) if Some(currency) == reporting && rate != Decimal::ONE => problem(
                &key,
                format!("the reporting currency's rate must be 1, got {rate}"),
            ),
            Ok(rate) => {
                rates.insert(currency, rate);
            }
            Err(message) => problem(&key, message),
        }
    }
    if raw.ledger.max_event_bytes == 0 || raw.ledger.max_event_bytes > MAX_EVENT_BYTES_LIMIT {
        problem(
            "ledger.max_event_bytes",
            format!(
                "must be between 1 and {MAX_EVENT_BYTES_LIMIT}, got {}",
                raw.ledger.max_event_bytes
            ),
        );
    }
    if raw.ledger.max_customers == 0 || raw.ledger.max_customers >= u64::from(u32::MAX) {
        problem(
            "ledger.max_customers",
            format!(
                "must be between 1 and {}, got {}",
                u32::MAX - 1,
                raw.ledger.max_customers
            ),
        );
    }
    if let Some(skew) = &skew {
        if skew.seconds() > MAX_FUTURE_SKEW_LIMIT_SECONDS {
            problem(
                "ledger.max_future_skew",
                format!("{skew} is more than the maximum of 7d"),
            );
        }
    }
    let longest = windows.iter().flatten().map(DurationSpec::seconds).max();
    if let (Some(Some(horizon)), Some(longest), Some(bucket)) = (&horizon, longest, &bucket) {
        if horizon.seconds() < longest + bucket.seconds() {
            problem(
                "ledger.dedup_horizon",
                format!("{horizon} is shorter than the longest window plus one bucket"),
            );
        }
    }

    // [tagging]
    let mut rules = Vec::new();
    for (index, rule) in raw.tagging.rules.iter().flatten().enumerate() {
        let key = format!("tagging.rules[{index}]");
        let Some(function) = CostFunction::from_wire(&rule.function) else {
            problem(
                &format!("{key}.function"),
                format!("{:?} is not one of Infrastructure, Support, Success_Engineering, Implementation, Onboarding, Excluded", rule.function),
            );
            continue;
        };
        if rule.categories.is_empty() || rule.categories.iter().any(|c| c.trim().is_empty()) {
            problem(
                &format!("{key}.categories"),
                "must list at least one non-empty category".to_owned(),
            );
        }
        rules.push(TaggingRule {
            function,
            categories: rule.categories.clone(),
        });
    }
    if raw.tagging.rules.is_none() || raw.tagging.include_default_rules {
        rules.extend(tagging::default_rules());
    }
    let tagger = Tagger::new(&rules)
        .map_err(|error| problem("tagging.rules", error.to_string()))
        .ok();

    if problems.len() > start {
        return None;
    }
    let engine = EngineConfig {
        windows: windows.into_iter().flatten().collect(),
        lifetime: raw.ledger.lifetime,
        bucket: bucket?,
        clock: clock.unwrap_or(ClockMode::Event),
        max_customers: raw.ledger.max_customers as usize,
        max_future_skew_seconds: skew?.seconds(),
        dedup_horizon: horizon.flatten(),
    };
    let preparer = Preparer::new(
        ParseLimits {
            max_event_bytes: raw.ledger.max_event_bytes as usize,
        },
        tagger?,
        reporting?,
        rates,
    );
    Some(Config {
        kafka: raw.kafka.clone(),
        listen: listen.ok()?,
        web_config_file: raw
            .metrics
            .web_config_file
            .as_ref()
            .map(std::path::PathBuf::from),
        state_dir: std::path::PathBuf::from(&raw.state.dir),
        checkpoint_interval: checkpoint_interval?,
        engine,
        clock,
        preparer,
        rules,
        raw,
    })
}
