//! The configuration file as written: every section and key, each defaulted, with its
//! documentation. `docs/configuration.md` is the reference; `config/marginstream.toml` the
//! documented default.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

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
    /// The state topic (contract section 10): every checkpoint also publishes each owned
    /// partition's state there, and a partition assigned without local state restores from
    /// it. Default: `kafka.topic` followed by `-marginstream-state`; an empty string turns it
    /// off. Created by `run` when missing (compacted, one partition per ledger partition).
    pub state_topic: Option<String>,
    /// librdkafka's `group.instance.id` (KIP-345 static membership): a restart within the
    /// session timeout gets its partitions back without a rebalance (default unset: a
    /// dynamic member). Must be unique in the group; the Kubernetes manifests use the pod
    /// name.
    pub group_instance_id: Option<String>,
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
            state_topic: None,
            group_instance_id: None,
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
    /// Most customers with per-customer series of their own; every other held customer is
    /// summed exactly into `customer_id="__other__"` (default 10000; 0 gives none). Contract
    /// section 7. The query API answers for every customer whatever this is.
    pub customers_max: u64,
    /// Customer ids always given series of their own when held, in this order, within
    /// `customers_max` (default none).
    pub customers_always: Vec<String>,
    /// The window whose revenue ranks customers for the budget (default: the longest finite
    /// window, else `all`).
    pub rank_window: Option<String>,
    /// How often `run` ranks customers again; in between, the set changes only by new
    /// customers while fewer than `customers_max` are chosen (default `1h`).
    pub rank_interval: String,
    /// The per-customer families exposed: any of `revenue`, `cost`, `gm_market`,
    /// `gm_operating`, `services_drag` (default all five).
    pub customer_families: Vec<String>,
    /// The windows the per-customer families carry (default every window).
    pub customer_windows: Option<Vec<String>>,
    /// How often `run` publishes its state to `/metrics` and the query API: the most they
    /// lag the loop (default `1s`, between `1s` and `60s`).
    pub publish_interval: String,
}

/// The default of `metrics.customers_max` (contract section 7): 10,000 customers are
/// 360,000 series with the default windows, about 1 GB of Prometheus head memory.
pub const CUSTOMERS_MAX_DEFAULT: u64 = 10_000;

impl Default for RawMetrics {
    fn default() -> RawMetrics {
        RawMetrics {
            listen: "127.0.0.1:9898".to_owned(),
            web_config_file: None,
            customers_max: CUSTOMERS_MAX_DEFAULT,
            customers_always: Vec::new(),
            rank_window: None,
            rank_interval: "1h".to_owned(),
            customer_families: marginstream_exporter::exposure::FAMILY_NAMES
                .iter()
                .map(|name| (*name).to_owned())
                .collect(),
            customer_windows: None,
            publish_interval: "1s".to_owned(),
        }
    }
}

/// One `[[ledger.segments]]` entry: an ACV tier.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawSegment {
    /// The `segment` label value, e.g. `smb`.
    pub name: String,
    /// The lowest annualized revenue run-rate of the tier, in reporting currency (a decimal;
    /// write it as a string to keep it exact).
    pub min: toml::Value,
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
    /// ACV tiers in ascending `min` (contract section 8); a customer below the first `min`
    /// is in the first tier. Default: `self_serve` (0), `smb` (1000), `mid_market` (10000),
    /// `enterprise` (50000). An empty list turns segments off.
    pub segments: Option<Vec<RawSegment>>,
    /// The window whose revenue gives the run-rate `Revenue(W) × 365d / W` (default: the
    /// longest finite window; with no finite window there are no segments).
    pub segment_window: Option<String>,
    /// How long an applied `event_id` is remembered, in watermark time (default: the longest
    /// window plus one bucket). Longer catches repeats of older events in `all`, at the cost
    /// of 24 to 48 bytes of memory per event in the horizon.
    pub dedup_horizon: Option<String>,
    /// Proceed with a partition whose history the broker no longer holds (its log start
    /// offset is past the offset the state needs), instead of holding it and answering 503
    /// on `/readyz`. Either way `marginstream_partition_history_truncated` is 1 (default
    /// false). Contract section 10.
    pub accept_truncated_history: bool,
    /// What `run` does with a partition whose state was built under other tagging rules or
    /// rates: `restate` rebuilds it from the beginning of the ledger under the new ones,
    /// `refuse` exits with code 2 naming what changed (default `restate`). Contract section 11.
    pub on_rules_change: String,
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
            segments: None,
            segment_window: None,
            dedup_horizon: None,
            accept_truncated_history: false,
            on_rules_change: "restate".to_owned(),
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
