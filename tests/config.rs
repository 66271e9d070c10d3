//! Configuration validation in process, through the library (STYLE.md §5: each error names
//! its key). The command-line tests in `config_files.rs` check the same through the binary;
//! these cover every section's problems one by one, and the overrides.

use marginstream::config::{self, ConfigError, ConfigProblem};

/// Loads `toml` (as a file's text) with `env` overrides and no flags.
fn load_text(toml: &str, env: &[(&str, &str)]) -> Result<config::Config, ConfigError> {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("test.toml");
    std::fs::write(&path, toml).expect("the configuration is written");
    config::load(
        Some(&path),
        env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        &[],
    )
}

/// Returns the problems of an invalid configuration.
fn problems(toml: &str) -> Vec<ConfigProblem> {
    match load_text(toml, &[]) {
        Ok(_) => panic!("expected the configuration to be refused:\n{toml}"),
        Err(error) => error.problems,
    }
}

/// Asserts that `problems` has one for `key` whose message contains `fragment`.
fn assert_problem(problems: &[ConfigProblem], key: &str, fragment: &str) {
    assert!(
        problems
            .iter()
            .any(|p| p.key == key && p.message.contains(fragment)),
        "no problem for {key} containing {fragment:?} in {problems:#?}"
    );
}

/// Shows that an empty file is valid and takes the contract's defaults.
#[test]
fn an_empty_file_takes_every_default() {
    let config = load_text("", &[]).expect("an empty file is valid");
    assert_eq!(config.listen.to_string(), "127.0.0.1:9898");
    assert_eq!(config.kafka.topic, "cel.events");
    assert_eq!(config.engine.windows.len(), 3);
    assert!(config.engine.lifetime);
    assert_eq!(config.engine.max_customers, 1_000_000);
    assert!(config.clock.is_none(), "the clock depends on the command");
    let live = config.live_settings();
    assert_eq!(
        live.engine.clock,
        marginstream_aggregator::ClockMode::Wall,
        "run's default clock is the wall clock"
    );
    assert_eq!(live.kafka.group_id, "marginstream");
}

/// Shows each `[kafka]` problem with its key.
#[test]
fn kafka_problems_name_their_keys() {
    let found = problems(
        r#"
[kafka]
brokers = " "
topic = "bad topic"
dlq_topic = "bad topic"
group_id = ""
dlq_pending_max = 0
[kafka.properties]
"enable.auto.commit" = "true"
"#,
    );
    assert_problem(&found, "kafka.brokers", "at least one broker");
    assert_problem(&found, "kafka.topic", "not a Kafka topic name");
    assert_problem(&found, "kafka.dlq_topic", "must differ from kafka.topic");
    assert_problem(&found, "kafka.group_id", "must not be empty");
    assert_problem(&found, "kafka.dlq_pending_max", "between 1 and");
    assert_problem(
        &found,
        "kafka.properties.enable.auto.commit",
        "set by marginstream itself",
    );
}

/// Shows each `[state]` and `[metrics]` problem with its key.
#[test]
fn state_and_metrics_problems_name_their_keys() {
    let found = problems(
        r#"
[state]
dir = ""
checkpoint_interval = "2d"
[metrics]
listen = "everywhere"
"#,
    );
    assert_problem(&found, "state.dir", "must not be empty");
    assert_problem(
        &found,
        "state.checkpoint_interval",
        "not between 1s and 24h",
    );
    assert_problem(&found, "metrics.listen", "not an address");
}

/// Shows each `[ledger]` problem with its key, all reported at once.
#[test]
fn ledger_problems_name_their_keys() {
    let found = problems(
        r#"
[ledger]
windows = ["24h", "90m", "1d", "all"]
bucket = "1h"
clock = "sundial"
reporting_currency = "usd"
max_event_bytes = 0
max_customers = 0
max_future_skew = "8d"
dedup_horizon = "1h"
[ledger.fx]
EUR = "-1"
gbp = "1.2"
USD = "2"
"#,
    );
    assert_problem(&found, "ledger.windows", "not a whole number of 1h buckets");
    assert_problem(&found, "ledger.windows", "are the same length");
    assert_problem(&found, "ledger.clock", "neither");
    assert_problem(&found, "ledger.reporting_currency", "");
    assert_problem(&found, "ledger.max_event_bytes", "between 1 and");
    assert_problem(&found, "ledger.max_customers", "between 1 and");
    assert_problem(&found, "ledger.max_future_skew", "maximum of 7d");
    assert_problem(&found, "ledger.fx.EUR", "must be positive");
    assert_problem(&found, "ledger.fx.gbp", "not a currency code");
    let usd = problems("[ledger.fx]\nUSD = \"2\"\n");
    assert_problem(&usd, "ledger.fx.USD", "reporting currency's rate must be 1");
    let horizon = problems("[ledger]\ndedup_horizon = \"1h\"\n");
    assert_problem(
        &horizon,
        "ledger.dedup_horizon",
        "shorter than the longest window plus one bucket",
    );
    let none = problems("[ledger]\nwindows = []\nlifetime = false\n");
    assert_problem(&none, "ledger.windows", "no window at all");
    let small = problems("[ledger]\nbucket = \"30s\"\nwindows = []\n");
    assert_problem(&small, "ledger.bucket", "shorter than the minimum of 1m");
}

/// Shows each `[tagging]` problem with its key, and that unknown keys are named.
#[test]
fn tagging_and_unknown_keys_are_named() {
    let found = problems(
        r#"
colour = "blue"
[[tagging.rules]]
function = "Marketing"
categories = ["ads"]
[[tagging.rules]]
function = "Support"
categories = []
"#,
    );
    assert_problem(&found, "colour", "unknown key");
    assert_problem(&found, "tagging.rules[0].function", "is not one of");
    assert_problem(&found, "tagging.rules[1].categories", "at least one");
}

/// Shows that a value of the wrong type is named by its path.
#[test]
fn a_wrong_type_is_named_by_its_path() {
    let found = problems("[ledger]\nlifetime = \"yes\"\n");
    assert_problem(&found, "ledger.lifetime", "");
}

/// Shows the overrides: environment variables over the file, with currency codes kept in
/// upper case, and a variable naming no key refused by name.
#[test]
fn environment_overrides_the_file() {
    let config = load_text(
        "[ledger]\nwindows = [\"24h\"]\n",
        &[
            ("MARGINSTREAM_LEDGER__WINDOWS", "[\"7d\"]"),
            ("MARGINSTREAM_LEDGER__FX__EUR", "\"1.08\""),
            ("MARGINSTREAM_KAFKA__TOPIC", "orders"),
            // Kubernetes service links: not an override (no `__`).
            ("MARGINSTREAM_PORT", "tcp://10.0.0.1:9898"),
        ],
    )
    .expect("the overrides are valid");
    assert_eq!(config.engine.windows[0].as_str(), "7d");
    assert_eq!(config.kafka.topic, "orders");
    assert!(config.raw.ledger.fx.contains_key("EUR"));
    let error = load_text("", &[("MARGINSTREAM_LEDGER__COLOUR", "blue")])
        .expect_err("an unknown key is refused");
    assert_problem(&error.problems, "ledger.colour", "unknown key");
}

/// Shows that `check-config`'s description names the rules, the address and the topic.
#[test]
fn the_description_summarises_the_configuration() {
    let config = load_text("", &[]).expect("an empty file is valid");
    let text = config.describe();
    assert!(text.starts_with("# configuration is valid:"), "{text}");
    assert!(text.contains("127.0.0.1:9898"), "{text}");
    assert!(text.contains("[ledger]"), "{text}");
}

/// Shows the keys of the state topic, static membership, truncated history and rules
/// changes (issues 10 and 11): their defaults, and each problem with its key.
#[test]
fn state_topic_membership_and_rules_change_keys() {
    let config = load_text("", &[]).expect("an empty file is valid");
    assert_eq!(
        config.state_topic.as_deref(),
        Some("cel.events-marginstream-state"),
        "the default state topic follows kafka.topic"
    );
    let live = config.live_settings();
    assert_eq!(live.kafka.group_instance_id, None);
    assert!(!live.restore.accept_truncated_history);
    assert_eq!(
        live.restore.on_rules_change,
        marginstream::fingerprint::OnRulesChange::Restate
    );
    let off = load_text("[kafka]\nstate_topic = \"\"\n", &[]).expect("an empty name is valid");
    assert_eq!(off.state_topic, None, "an empty string turns it off");
    let set = load_text(
        "[kafka]\nstate_topic = \"margins.state\"\n[ledger]\naccept_truncated_history = true\non_rules_change = \"refuse\"\n",
        &[("MARGINSTREAM_KAFKA__GROUP_INSTANCE_ID", "marginstream-0")],
    )
    .expect("the keys are valid");
    assert_eq!(set.state_topic.as_deref(), Some("margins.state"));
    let live = set.live_settings();
    assert_eq!(
        live.kafka.group_instance_id.as_deref(),
        Some("marginstream-0"),
        "the environment variable sets the instance id"
    );
    assert!(live.restore.accept_truncated_history);
    assert_eq!(
        live.restore.on_rules_change,
        marginstream::fingerprint::OnRulesChange::Refuse
    );

    let found = problems(
        r#"
[kafka]
topic = "cel.events"
state_topic = "cel.events"
group_instance_id = "pod/0"
[kafka.properties]
"group.instance.id" = "x"
[ledger]
on_rules_change = "ignore"
"#,
    );
    assert_problem(&found, "kafka.state_topic", "must differ from kafka.topic");
    assert_problem(&found, "kafka.group_instance_id", "not a group instance id");
    assert_problem(
        &found,
        "kafka.properties.group.instance.id",
        "kafka.group_instance_id",
    );
    assert_problem(&found, "ledger.on_rules_change", "neither");
    let bad = problems("[kafka]\nstate_topic = \"a b\"\n");
    assert_problem(&bad, "kafka.state_topic", "not a Kafka topic name");
    let long = problems(&format!("[kafka]\ntopic = \"{}\"\n", "t".repeat(240)));
    assert_problem(&long, "kafka.state_topic", "longer than 249 bytes");
    let typed = problems("[ledger]\naccept_truncated_history = \"yes\"\n");
    assert_problem(&typed, "ledger.accept_truncated_history", "");
}

/// Shows that the rules and rates fingerprint (issue 11) changes with a tagging rule, a
/// rate or the reporting currency, and with nothing else: not the listen address, the
/// windows, the checkpoint interval or the exposure budget; and that `check-config`
/// prints it.
#[test]
fn the_fingerprint_changes_only_with_the_rules_and_rates() {
    let base = load_text("[ledger.fx]\nEUR = \"1.08\"\n", &[]).expect("valid");
    let hash = base.fingerprint.hash();
    assert!(base
        .describe()
        .contains(&format!("rules and rates fingerprint: {hash}")));
    for unrelated in [
        "[metrics]\nlisten = \"0.0.0.0:9999\"\ncustomers_max = 5\n[ledger.fx]\nEUR = \"1.08\"\n",
        "[state]\ncheckpoint_interval = \"5m\"\n[ledger]\nwindows = [\"7d\"]\n[ledger.fx]\nEUR = \"1.080\"\n",
        "[kafka]\ngroup_instance_id = \"a\"\n[ledger.fx]\nEUR = 1.08\n",
    ] {
        let config = load_text(unrelated, &[]).expect("valid");
        assert_eq!(config.fingerprint.hash(), hash, "{unrelated}");
    }
    for related in [
        "[ledger.fx]\nEUR = \"1.0825\"\n",
        "[ledger.fx]\nEUR = \"1.08\"\nGBP = \"1.27\"\n",
        "[ledger]\nreporting_currency = \"EUR\"\n",
        "[ledger.fx]\nEUR = \"1.08\"\n[[tagging.rules]]\nfunction = \"Excluded\"\ncategories = [\"training\"]\n[tagging]\ninclude_default_rules = true\n",
    ] {
        let config = load_text(related, &[]).expect("valid");
        assert_ne!(config.fingerprint.hash(), hash, "{related}");
    }
}
