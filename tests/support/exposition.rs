//! A parsed Prometheus exposition, and comparisons of `run`'s `/metrics` with a reference
//! (a replay, or an engine fed the same ledger): shared by the end-to-end tests on the real
//! broker (`tests/live.rs`) and the fault tests on the mock cluster (`tests/faults.rs`).

use std::collections::BTreeMap;

/// Families of the process's own metrics (the standard `process_*` ones included), left out
/// of comparisons with a reference. The event counters and the watermark are compared apart:
/// lateness depends on the order in which partitions are read.
pub const SELF_PREFIXES: [&str; 20] = [
    "process_",
    "marginstream_loop_",
    "marginstream_publish_",
    "marginstream_snapshot_",
    "marginstream_consumer_",
    "marginstream_consumed_",
    "marginstream_rebalances",
    "marginstream_partitions_",
    "marginstream_ready",
    "marginstream_checkpoint",
    "marginstream_restore",
    "marginstream_restored",
    "marginstream_partition_",
    "marginstream_restatements",
    "marginstream_state_",
    "marginstream_dlq_",
    "marginstream_kafka_",
    "marginstream_apply_latency",
    "marginstream_events_total",
    "marginstream_watermark",
];

/// A parsed exposition: series (name and labels, as written) to value text.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    /// Every sample.
    pub series: BTreeMap<String, String>,
}

impl Metrics {
    /// Parses Prometheus text: comments and blank lines are skipped.
    pub fn parse(text: &str) -> Metrics {
        let series = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .filter_map(|l| l.rsplit_once(' '))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        Metrics { series }
    }

    /// Returns the value of a series, 0 when absent.
    pub fn value(&self, name: &str) -> f64 {
        self.series
            .get(name)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    }

    /// Every message counted: applied, late, duplicate and rejected.
    pub fn counted(&self) -> u64 {
        self.series
            .iter()
            .filter(|(k, _)| {
                k.starts_with("marginstream_events_total{")
                    || k.starts_with("marginstream_rejected_events_total{")
            })
            .map(|(_, v)| v.parse::<u64>().unwrap_or(0))
            .sum()
    }

    /// The contract's gauges and the rejection counters, without the process's own families.
    pub fn gauges(&self) -> BTreeMap<String, String> {
        self.series
            .iter()
            .filter(|(k, _)| !SELF_PREFIXES.iter().any(|p| k.starts_with(p)))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// `applied + late` and `duplicate` per event type: lateness depends on partition order.
    pub fn outcomes(&self) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for (k, v) in &self.series {
            if let Some(labels) = k.strip_prefix("marginstream_events_total") {
                let kind = if labels.contains("outcome=\"duplicate\"") {
                    "duplicate"
                } else {
                    "applied+late"
                };
                let event_type = labels
                    .split("event_type=\"")
                    .nth(1)
                    .and_then(|s| s.split('"').next())
                    .unwrap_or("?");
                *out.entry(format!("{event_type} {kind}")).or_default() +=
                    v.parse::<u64>().unwrap_or(0);
            }
        }
        out
    }

    /// The gauges of one window only.
    pub fn window(&self, window: &str) -> BTreeMap<String, String> {
        let label = format!("window=\"{window}\"");
        self.gauges()
            .into_iter()
            .filter(|(k, _)| k.contains(&label))
            .collect()
    }
}

/// Asserts two sets of series are equal, listing the first differences.
///
/// # Panics
///
/// Panics when they differ.
pub fn assert_same(
    context: &str,
    expected: &BTreeMap<String, String>,
    actual: &BTreeMap<String, String>,
) {
    let mut problems = Vec::new();
    for (k, v) in expected {
        match actual.get(k) {
            Some(a) if a == v => {}
            other => problems.push(format!("{k}: expected {v}, got {other:?}")),
        }
    }
    for (k, v) in actual {
        if !expected.contains_key(k) {
            problems.push(format!("{k}: not expected, got {v}"));
        }
    }
    assert!(
        problems.is_empty(),
        "{context}: {} of {} series differ, first ones:\n{}",
        problems.len(),
        expected.len(),
        problems[..problems.len().min(15)].join("\n")
    );
}
