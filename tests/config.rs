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

/// Shows the exposure budget's and the tiers' keys validated, each problem with its key
/// (contract sections 7 and 8).
#[test]
fn budget_and_segment_problems_name_their_keys() {
    let found = problems(
        r#"
[metrics]
customers_max = 5000000000
customers_always = ["acme", "", "acme", "__other__"]
rank_window = "90d"
rank_interval = "10s"
customer_families = ["revenue", "margin", "revenue"]
customer_windows = ["24h", "1y"]
publish_interval = "5m"

[ledger]
segment_window = "all"

[[ledger.segments]]
name = "small"
min = "100"

[[ledger.segments]]
name = "small"
min = 50

[[ledger.segments]]
name = ""
min = "lots"
"#,
    );
    assert_problem(&found, "metrics.customers_max", "at most");
    assert_problem(&found, "metrics.customers_always[1]", "1 to 128 bytes");
    assert_problem(&found, "metrics.customers_always[2]", "listed twice");
    assert_problem(&found, "metrics.customers_always[3]", "roll-up");
    assert_problem(&found, "metrics.rank_window", "not a configured window");
    assert_problem(&found, "metrics.rank_interval", "not between 1m and 1w");
    assert_problem(
        &found,
        "metrics.customer_families",
        "\"margin\" is not one of",
    );
    assert_problem(&found, "metrics.customer_families", "listed twice");
    assert_problem(
        &found,
        "metrics.customer_windows",
        "\"1y\" is not a configured window",
    );
    assert_problem(&found, "metrics.publish_interval", "not between 1s and 1m");
    assert_problem(&found, "ledger.segment_window", "finite window");
    assert_problem(&found, "ledger.segments[1].name", "listed twice");
    assert_problem(
        &found,
        "ledger.segments[1].min",
        "not above the previous tier's 100",
    );
    assert_problem(&found, "ledger.segments[2].name", "must not be empty");
    assert_problem(&found, "ledger.segments[2].min", "");
}

/// Shows the budget's and the tiers' defaults: 10,000 customers ranked on the longest finite
/// window every hour, every family and window, the contract's four tiers on the longest
/// finite window; no tiers without a finite window, and none with an empty list.
#[test]
fn budget_and_segments_take_the_contract_defaults() {
    let config = load_text("", &[]).expect("an empty file is valid");
    let publishing = &config.publishing;
    assert_eq!(publishing.exposure.customers_max, 10_000);
    assert_eq!(
        publishing.exposure.rank_window, 2,
        "30d, the longest finite window"
    );
    assert_eq!(publishing.exposure.families, [true; 5]);
    assert_eq!(publishing.exposure.windows, vec![true; 4]);
    assert_eq!(publishing.rank_interval.as_secs(), 3_600);
    assert_eq!(publishing.publish_interval.as_secs(), 1);
    let segments = publishing.segments.as_ref().expect("default tiers");
    let names: Vec<&str> = segments.tiers.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["self_serve", "smb", "mid_market", "enterprise"]);
    assert_eq!(segments.window, 2);
    assert_eq!(segments.window_seconds, 30 * 86_400);

    let lifetime_only = load_text("[ledger]\nwindows = []\n", &[]).expect("valid");
    assert!(
        lifetime_only.publishing.segments.is_none(),
        "no finite window, no tiers"
    );
    assert_eq!(lifetime_only.publishing.exposure.rank_window, 0, "`all`");
    let off = load_text("[ledger]\nsegments = []\n", &[]).expect("valid");
    assert!(
        off.publishing.segments.is_none(),
        "an empty list turns tiers off"
    );
    let custom = load_text(
        "[metrics]\nrank_window = \"7d\"\ncustomer_windows = [\"all\"]\ncustomer_families = [\"gm_market\"]\n[ledger]\nsegment_window = \"7d\"\n[[ledger.segments]]\nname = \"low\"\nmin = 0\n[[ledger.segments]]\nname = \"high\"\nmin = \"2500.50\"\n",
        &[],
    )
    .expect("valid");
    assert_eq!(custom.publishing.exposure.rank_window, 1);
    assert_eq!(
        custom.publishing.exposure.windows,
        [false, false, false, true]
    );
    assert_eq!(
        custom.publishing.exposure.families,
        [false, false, true, false, false]
    );
    let tiers = custom.publishing.segments.expect("two tiers");
    assert_eq!(tiers.window, 1);
    assert_eq!(tiers.tiers[1].min, "2500.5".parse().expect("a decimal"));
}
