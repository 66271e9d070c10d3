//! The configuration: a TOML file, overridden by `MARGINSTREAM_*` environment variables and
//! then by command-line flags, deserialized into [`RawConfig`] and validated into [`Config`].
//!
//! - [`raw`]: the file as written, every key defaulted and documented.
//! - [`validate`]: raw to validated, one function per section, every problem reported with
//!   its key. No I/O.
//! - This module: loading (file, environment, flags), the error types, and the settings each
//!   part of the binary is built from ([`Config::kafka_settings`], [`Config::live_settings`]),
//!   built here once.
//!
//! Every key has a default, so an empty file is a valid configuration. The reference of every
//! key is `docs/configuration.md`; `config/marginstream.toml` is the documented default.

mod raw;
mod validate;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use marginstream_aggregator::{ClockMode, EngineConfig, Preparer, TaggingRule};
use marginstream_consumer::KafkaSettings;

use crate::fingerprint::{OnRulesChange, RulesFingerprint};
use crate::live::{LiveSettings, RestoreSettings};
use crate::published::PublishSettings;

pub use raw::{
    RawConfig, RawKafka, RawLedger, RawMetrics, RawRule, RawSegment, RawState, RawTagging,
};
pub use validate::{validate, MAX_EVENT_BYTES_LIMIT, STATE_TOPIC_SUFFIX};

/// Prefix of environment variables that override configuration keys.
pub const ENV_PREFIX: &str = "MARGINSTREAM_";

/// How often librdkafka reports statistics (the partitions' high watermarks, for the lag).
const STATISTICS_INTERVAL: Duration = Duration::from_secs(5);

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
    pub web_config_file: Option<PathBuf>,
    /// The engine's settings; `clock` is resolved by [`Config::engine_for`].
    pub engine: EngineConfig,
    /// The configured clock, if any.
    pub clock: Option<ClockMode>,
    /// Parse limits, tagging and currency conversion.
    pub preparer: Preparer,
    /// The effective tagging rules.
    pub rules: Vec<TaggingRule>,
    /// The rules and rates every partition's state records (contract section 11).
    pub fingerprint: RulesFingerprint,
    /// `ledger.on_rules_change`.
    pub on_rules_change: OnRulesChange,
    /// The state topic resolved (`kafka.state_topic` or its default); `None`: turned off.
    pub state_topic: Option<String>,
    /// The exposure budget, the ACV tiers and publishing (contract sections 7 and 8).
    pub publishing: PublishSettings,
    /// The checkpoint directory.
    pub state_dir: PathBuf,
    /// Time between checkpoints.
    pub checkpoint_interval: Duration,
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

    /// Returns the settings of the Kafka clients.
    pub fn kafka_settings(&self) -> KafkaSettings {
        KafkaSettings {
            brokers: self.kafka.brokers.clone(),
            topic: self.kafka.topic.clone(),
            group_id: self.kafka.group_id.clone(),
            dlq_topic: self.kafka.dlq_topic.clone(),
            properties: self.kafka.properties.clone(),
            group_instance_id: self.kafka.group_instance_id.clone(),
            statistics_interval: STATISTICS_INTERVAL,
        }
    }

    /// Returns the settings of `marginstream run`'s loop: the wall clock unless
    /// `ledger.clock` says otherwise.
    pub fn live_settings(&self) -> LiveSettings {
        LiveSettings {
            kafka: self.kafka_settings(),
            engine: self.engine_for(ClockMode::Wall),
            preparer: self.preparer.clone(),
            state_dir: self.state_dir.clone(),
            checkpoint_interval: self.checkpoint_interval,
            dlq_pending_max: self.kafka.dlq_pending_max,
            publishing: self.publishing.clone(),
            restore: RestoreSettings {
                state_topic: self.state_topic.clone(),
                accept_truncated_history: self.raw.ledger.accept_truncated_history,
                on_rules_change: self.on_rules_change,
                rules: self.fingerprint.clone(),
            },
        }
    }

    /// Returns what `check-config` prints: a summary line, then every effective value.
    pub fn describe(&self) -> String {
        let text = toml::to_string_pretty(&self.raw).unwrap_or_default();
        format!(
            "# configuration is valid: {} tagging rules, /metrics on {}, topic {} via {}\n# rules and rates fingerprint: {} (tagging rules, ledger.reporting_currency, ledger.fx; a state built under another one is restated or refused, see ledger.on_rules_change)\n# state topic: {}\n# effective values:\n{text}",
            self.rules.len(),
            self.listen,
            self.kafka.topic,
            self.kafka.brokers,
            self.fingerprint.hash(),
            self.state_topic.as_deref().unwrap_or("off"),
        )
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
