//! The process's own metrics: one `prometheus` registry with typed counters, gauges and the
//! apply-latency histogram, plus the standard `process_*` metrics of its process collector.
//!
//! The per-customer families of the contract are not here: they are rendered straight from
//! the engines' state (`marginstream_exporter::Renderer`), because a registry child per
//! series costs about 500 bytes and seconds to encode at a million customers (measured; see
//! the exporter crate). Self-metrics are a few dozen series, and the registry gives them
//! types, thread-safe updates and the process collector.
//!
//! The loop updates these values itself: counters as things happen, gauges in its periodic
//! service pass and just before answering a scrape. No key is ever a label here; the
//! partition label of the lag is bounded by the topic's partition count.

use std::sync::Mutex;
use std::time::SystemTime;

use prometheus::core::Collector;
use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::clock::unix_seconds;

/// Messages between the next offset to read and the partition's high watermark.
pub const CONSUMER_LAG_MESSAGES: &str = "marginstream_consumer_lag_messages";
/// Messages consumed since start.
pub const CONSUMED_MESSAGES_TOTAL: &str = "marginstream_consumed_messages_total";
/// From poll to the message's effect in the state, as a histogram.
pub const APPLY_LATENCY_SECONDS: &str = "marginstream_apply_latency_seconds";
/// Messages per second over the last five seconds.
pub const CONSUMED_MESSAGES_PER_SECOND: &str = "marginstream_consumed_messages_per_second";
/// Assignments and revocations seen.
pub const REBALANCES_TOTAL: &str = "marginstream_rebalances_total";
/// Partitions owned.
pub const PARTITIONS_ASSIGNED: &str = "marginstream_partitions_assigned";
/// Owned partitions still being rebuilt from their beginning.
pub const PARTITIONS_REBUILDING: &str = "marginstream_partitions_rebuilding";
/// 1 when ready, as `/readyz`.
pub const READY: &str = "marginstream_ready";
/// Checkpoints written.
pub const CHECKPOINTS_TOTAL: &str = "marginstream_checkpoints_total";
/// Checkpoints that failed.
pub const CHECKPOINT_FAILURES_TOTAL: &str = "marginstream_checkpoint_failures_total";
/// When the last checkpoint became durable.
pub const CHECKPOINT_LAST_SUCCESS_TIMESTAMP_SECONDS: &str =
    "marginstream_checkpoint_last_success_timestamp_seconds";
/// Seconds since the last durable checkpoint.
pub const CHECKPOINT_AGE_SECONDS: &str = "marginstream_checkpoint_age_seconds";
/// Size of the last checkpoint.
pub const CHECKPOINT_SIZE_BYTES: &str = "marginstream_checkpoint_size_bytes";
/// Time of the last checkpoint by phase.
pub const CHECKPOINT_DURATION_SECONDS: &str = "marginstream_checkpoint_duration_seconds";
/// Time taken to restore the checkpoint at start.
pub const RESTORE_DURATION_SECONDS: &str = "marginstream_restore_duration_seconds";
/// Partitions found in the checkpoint at start.
pub const RESTORED_PARTITIONS: &str = "marginstream_restored_partitions";
/// Dead letters acknowledged.
pub const DLQ_MESSAGES_TOTAL: &str = "marginstream_dlq_messages_total";
/// Failed dead-letter attempts.
pub const DLQ_FAILURES_TOTAL: &str = "marginstream_dlq_failures_total";
/// Dead letters waiting for acknowledgement.
pub const DLQ_PENDING_MESSAGES: &str = "marginstream_dlq_pending_messages";
/// 1 while consumption is paused for the dead-letter topic.
pub const CONSUMER_PAUSED: &str = "marginstream_consumer_paused";
/// Offset commits refused.
pub const KAFKA_COMMIT_FAILURES_TOTAL: &str = "marginstream_kafka_commit_failures_total";
/// Consumer errors reported by librdkafka.
pub const KAFKA_ERRORS_TOTAL: &str = "marginstream_kafka_errors_total";
/// Duration of the loop's service passes between messages: its pauses.
pub const LOOP_SERVICE_SECONDS: &str = "marginstream_loop_service_seconds";
/// The loop thread's CPU time in each service pass: its own work, without preemption.
pub const LOOP_SERVICE_CPU_SECONDS: &str = "marginstream_loop_service_cpu_seconds";
/// The longest service pass since start.
pub const LOOP_SERVICE_MAX_SECONDS: &str = "marginstream_loop_service_max_seconds";
/// Duration of each publishing step on the loop.
pub const PUBLISH_STEP_SECONDS: &str = "marginstream_publish_step_seconds";
/// Seconds since the readers' snapshot was published.
pub const SNAPSHOT_AGE_SECONDS: &str = "marginstream_snapshot_age_seconds";
/// How each assigned partition got its state, by `source` (contract section 10).
pub const PARTITION_RESTORES_TOTAL: &str = "marginstream_partition_restores_total";
/// 1 for an owned partition whose history the broker no longer holds (contract section 10).
pub const PARTITION_HISTORY_TRUNCATED: &str = "marginstream_partition_history_truncated";
/// Partitions rebuilt under new tagging rules or rates (contract section 11).
pub const RESTATEMENTS_TOTAL: &str = "marginstream_restatements_total";
/// Snapshots of the state topic passed over at a restore, by `reason`.
pub const STATE_SNAPSHOTS_REFUSED_TOTAL: &str = "marginstream_state_snapshots_refused_total";
/// Snapshots published to the state topic.
pub const STATE_SNAPSHOTS_PUBLISHED_TOTAL: &str = "marginstream_state_snapshots_published_total";
/// Snapshots that could not be published to the state topic.
pub const STATE_PUBLISH_FAILURES_TOTAL: &str = "marginstream_state_publish_failures_total";
/// Engine bytes of the owned partitions' latest snapshots in the state topic.
pub const STATE_SNAPSHOT_BYTES: &str = "marginstream_state_snapshot_bytes";
/// Time of the last restore from the state topic (reading and verifying snapshots).
pub const STATE_RESTORE_DURATION_SECONDS: &str = "marginstream_state_restore_duration_seconds";

/// The apply latency's bucket upper bounds, in seconds: 1, 1.5, 2, 3, 5 and 7 per decade,
/// from 1 µs to 1 s (each bucket at most 1.7 times the one below, so an interpolated quantile
/// is within that of the truth). The loop applies a message in a few microseconds (p99 about
/// 4 µs measured); preemption and checkpoint encoding reach milliseconds.
pub const APPLY_LATENCY_BUCKETS: [f64; 37] = [
    1e-6, 1.5e-6, 2e-6, 3e-6, 5e-6, 7e-6, 1e-5, 1.5e-5, 2e-5, 3e-5, 5e-5, 7e-5, 1e-4, 1.5e-4, 2e-4,
    3e-4, 5e-4, 7e-4, 1e-3, 1.5e-3, 2e-3, 3e-3, 5e-3, 7e-3, 1e-2, 1.5e-2, 2e-2, 3e-2, 5e-2, 7e-2,
    0.1, 0.15, 0.2, 0.3, 0.5, 0.7, 1.0,
];

/// The registry and every self-metric in it.
pub struct SelfMetrics {
    registry: Registry,
    /// Per owned partition.
    pub consumer_lag: IntGaugeVec,
    /// Counted when a message is applied, rejected or found a duplicate.
    pub consumed: IntCounter,
    /// Observed through a `LocalHistogram` on the loop and flushed in its service pass.
    pub apply_latency: Histogram,
    /// Updated every five seconds.
    pub consumed_per_second: Gauge,
    /// Counted per rebalance event.
    pub rebalances: IntCounter,
    /// Partitions owned.
    pub partitions_assigned: IntGauge,
    /// Owned partitions not read to their end once.
    pub partitions_rebuilding: IntGauge,
    /// 1 when ready.
    pub ready: IntGauge,
    /// Checkpoints written.
    pub checkpoints: IntCounter,
    /// Checkpoints that failed.
    pub checkpoint_failures: IntCounter,
    /// Registered at the first checkpoint (or restore): absent before, as no value is true.
    checkpoint_last_success: Gauge,
    /// Registered with `checkpoint_last_success`.
    checkpoint_age: Gauge,
    last_success: Mutex<Option<SystemTime>>,
    /// Size of the last checkpoint.
    pub checkpoint_size: IntGauge,
    /// By phase: `encode` (the loop pauses) and `write` (background).
    pub checkpoint_duration: GaugeVec,
    /// Set once at start.
    pub restore_duration: Gauge,
    /// Set once at start.
    pub restored_partitions: IntGauge,
    /// From the dead-letter sink's statistics.
    pub dlq_messages: IntCounter,
    /// From the dead-letter sink's statistics.
    pub dlq_failures: IntCounter,
    /// Dead letters waiting.
    pub dlq_pending: IntGauge,
    /// 1 while paused.
    pub consumer_paused: IntGauge,
    /// From the consumer's commit callback.
    pub kafka_commit_failures: IntCounter,
    /// Counted per error `poll` returns.
    pub kafka_errors: IntCounter,
    /// Every service pass's duration.
    pub loop_service: Histogram,
    /// Every service pass's CPU time on the loop thread.
    pub loop_service_cpu: Histogram,
    /// The longest service pass since start.
    pub loop_service_max: Gauge,
    /// Every publishing step's duration.
    pub publish_step: Histogram,
    /// Seconds since the readers' snapshot was published.
    pub snapshot_age: Gauge,
    /// By `source`: `local`, `state_topic`, `rebuild`.
    pub partition_restores: IntCounterVec,
    /// Per owned partition.
    pub partition_history_truncated: IntGaugeVec,
    /// Partitions restated.
    pub restatements: IntCounter,
    /// By `reason`: `incomplete`, `corrupt`, `foreign`.
    pub state_snapshots_refused: IntCounterVec,
    /// Snapshots published.
    pub state_snapshots_published: IntCounter,
    /// Snapshots given up.
    pub state_publish_failures: IntCounter,
    /// Engine bytes of the owned partitions' latest snapshots.
    pub state_snapshot_bytes: IntGauge,
    /// Time of the last read of the state topic for a restore.
    pub state_restore_duration: Gauge,
}

impl std::fmt::Debug for SelfMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SelfMetrics").finish_non_exhaustive()
    }
}

fn register<C: Collector + Clone + 'static>(registry: &Registry, collector: C) -> C {
    registry
        .register(Box::new(collector.clone()))
        .expect("self-metric names are constants, registered once each");
    collector
}

fn counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    register(
        registry,
        IntCounter::new(name, help).expect("a valid metric name"),
    )
}

fn int_gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    register(
        registry,
        IntGauge::new(name, help).expect("a valid metric name"),
    )
}

fn gauge(registry: &Registry, name: &str, help: &str) -> Gauge {
    register(
        registry,
        Gauge::new(name, help).expect("a valid metric name"),
    )
}

/// Registers a counter with one label, every value of `values` present from the start at 0.
fn labelled_counter(
    registry: &Registry,
    name: &str,
    help: &str,
    label: &str,
    values: &[&str],
) -> IntCounterVec {
    let counter = register(
        registry,
        IntCounterVec::new(Opts::new(name, help), &[label]).expect("a valid metric name"),
    );
    for value in values {
        counter.with_label_values(&[value]);
    }
    counter
}

impl SelfMetrics {
    /// Creates the registry, its process collector (on Linux) and every self-metric.
    pub fn new() -> SelfMetrics {
        let registry = Registry::new();
        #[cfg(target_os = "linux")]
        registry
            .register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))
            .expect("the process collector is registered once");
        let r = &registry;
        SelfMetrics {
            consumer_lag: register(
                r,
                IntGaugeVec::new(
                    Opts::new(CONSUMER_LAG_MESSAGES, "Messages between the next offset to read and the partition's high watermark (from librdkafka statistics)."),
                    &["partition"],
                )
                .expect("a valid metric name"),
            ),
            consumed: counter(r, CONSUMED_MESSAGES_TOTAL, "Messages consumed by this process since it started."),
            apply_latency: register(
                r,
                Histogram::with_opts(
                    HistogramOpts::new(APPLY_LATENCY_SECONDS, "Time from poll returning a message to its effect being in the state (parse, tag, apply, dead-letter queueing), since start.")
                        .buckets(APPLY_LATENCY_BUCKETS.to_vec()),
                )
                .expect("valid histogram buckets"),
            ),
            consumed_per_second: gauge(r, CONSUMED_MESSAGES_PER_SECOND, "Messages consumed per second over the last 5 seconds."),
            rebalances: counter(r, REBALANCES_TOTAL, "Partition assignments and revocations seen."),
            partitions_assigned: int_gauge(r, PARTITIONS_ASSIGNED, "Partitions of the ledger topic owned by this process."),
            partitions_rebuilding: int_gauge(r, PARTITIONS_REBUILDING, "Owned partitions still being read from the beginning; their customers are not shown yet."),
            ready: int_gauge(r, READY, "1 when every assigned partition is restored and caught up (as /readyz)."),
            checkpoints: counter(r, CHECKPOINTS_TOTAL, "Checkpoints written."),
            checkpoint_failures: counter(r, CHECKPOINT_FAILURES_TOTAL, "Checkpoints that failed to be written."),
            checkpoint_last_success: Gauge::new(CHECKPOINT_LAST_SUCCESS_TIMESTAMP_SECONDS, "When the last checkpoint became durable (Unix time).").expect("a valid metric name"),
            checkpoint_age: Gauge::new(CHECKPOINT_AGE_SECONDS, "Seconds since the last durable checkpoint.").expect("a valid metric name"),
            last_success: Mutex::new(None),
            checkpoint_size: int_gauge(r, CHECKPOINT_SIZE_BYTES, "Size of the last checkpoint."),
            checkpoint_duration: register(
                r,
                GaugeVec::new(
                    Opts::new(CHECKPOINT_DURATION_SECONDS, "Time of the last checkpoint, by phase: encode (the loop pauses), write (write, fsync, rename; in the background) and publish (the changed partitions' snapshots to the state topic; in the background)."),
                    &["phase"],
                )
                .expect("a valid metric name"),
            ),
            restore_duration: gauge(r, RESTORE_DURATION_SECONDS, "Time taken to read and decode the checkpoint at start."),
            restored_partitions: int_gauge(r, RESTORED_PARTITIONS, "Partitions found in the checkpoint at start."),
            dlq_messages: counter(r, DLQ_MESSAGES_TOTAL, "Rejected messages acknowledged by the dead-letter topic."),
            dlq_failures: counter(r, DLQ_FAILURES_TOTAL, "Failed attempts to write to the dead-letter topic (each is retried)."),
            dlq_pending: int_gauge(r, DLQ_PENDING_MESSAGES, "Rejected messages not yet acknowledged by the dead-letter topic; consumption pauses at kafka.dlq_pending_max."),
            consumer_paused: int_gauge(r, CONSUMER_PAUSED, "1 while consumption is paused for the dead-letter topic."),
            kafka_commit_failures: counter(r, KAFKA_COMMIT_FAILURES_TOTAL, "Offset commits refused by Kafka (the checkpoint holds the offsets)."),
            kafka_errors: counter(r, KAFKA_ERRORS_TOTAL, "Consumer errors reported by librdkafka (it retries on its own)."),
            loop_service: register(
                r,
                Histogram::with_opts(
                    HistogramOpts::new(LOOP_SERVICE_SECONDS, "Duration of the loop's service passes between messages (dead letters, checkpoint encoding, publishing to readers): the pauses of consumption.")
                        .buckets(APPLY_LATENCY_BUCKETS.to_vec()),
                )
                .expect("valid histogram buckets"),
            ),
            loop_service_cpu: register(
                r,
                Histogram::with_opts(
                    HistogramOpts::new(LOOP_SERVICE_CPU_SECONDS, "CPU time of the loop thread in each service pass: the pass's own work, without the time other threads held the core (on Linux; 0 elsewhere).")
                        .buckets(APPLY_LATENCY_BUCKETS.to_vec()),
                )
                .expect("valid histogram buckets"),
            ),
            loop_service_max: gauge(r, LOOP_SERVICE_MAX_SECONDS, "The longest service pass of the loop since start."),
            publish_step: register(
                r,
                Histogram::with_opts(
                    HistogramOpts::new(PUBLISH_STEP_SECONDS, "Duration of each step of publishing the state to /metrics and the query API, on the loop.")
                        .buckets(APPLY_LATENCY_BUCKETS.to_vec()),
                )
                .expect("valid histogram buckets"),
            ),
            snapshot_age: gauge(r, SNAPSHOT_AGE_SECONDS, "Seconds since the snapshot that /metrics and the query API read was published (at most about metrics.publish_interval)."),
            partition_restores: labelled_counter(
                r,
                PARTITION_RESTORES_TOTAL,
                "How each assigned partition got its state: local (kept, or the local checkpoint), state_topic (a snapshot of kafka.state_topic) or rebuild (from the beginning of the ledger).",
                "source",
                &["local", "state_topic", "rebuild"],
            ),
            partition_history_truncated: register(
                r,
                IntGaugeVec::new(
                    Opts::new(PARTITION_HISTORY_TRUNCATED, "1 for an owned partition whose state misses history the broker no longer holds (its log start offset was past the offset the state needed); held unless ledger.accept_truncated_history."),
                    &["partition"],
                )
                .expect("a valid metric name"),
            ),
            restatements: counter(r, RESTATEMENTS_TOTAL, "Partitions rebuilt from the beginning of the ledger because their state was built under other tagging rules or rates."),
            state_snapshots_refused: labelled_counter(
                r,
                STATE_SNAPSHOTS_REFUSED_TOTAL,
                "Snapshots of the state topic passed over at a restore: incomplete (a piece or the manifest missing), corrupt (a checksum or the format), foreign (another topic, group, engine configuration, or other rules and rates).",
                "reason",
                &["incomplete", "corrupt", "foreign"],
            ),
            state_snapshots_published: counter(r, STATE_SNAPSHOTS_PUBLISHED_TOTAL, "Partition snapshots published to the state topic with a checkpoint."),
            state_publish_failures: counter(r, STATE_PUBLISH_FAILURES_TOTAL, "Partition snapshots that could not be published to the state topic (the previous one stays the latest)."),
            state_snapshot_bytes: int_gauge(r, STATE_SNAPSHOT_BYTES, "Engine bytes of the owned partitions' latest snapshots in the state topic."),
            state_restore_duration: gauge(r, STATE_RESTORE_DURATION_SECONDS, "Time of the last read of the state topic for partitions assigned without local state (reading and verifying snapshots)."),
            registry,
        }
    }

    /// Records a durable checkpoint at `at` (or, at start, the restored one's time). The
    /// timestamp and age gauges appear from the first one on.
    pub fn checkpoint_succeeded(&self, at: SystemTime) {
        {
            let mut last = self.last_success.lock().unwrap_or_else(|e| e.into_inner());
            if last.is_none() {
                for gauge in [&self.checkpoint_last_success, &self.checkpoint_age] {
                    register(&self.registry, gauge.clone());
                }
            }
            *last = Some(at);
        }
        self.checkpoint_last_success.set(unix_seconds(at));
        self.refresh_checkpoint_age(SystemTime::now());
    }

    /// Sets the age of the last checkpoint at `now`.
    pub fn refresh_checkpoint_age(&self, now: SystemTime) {
        let last = *self.last_success.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(last) = last {
            let age = now.duration_since(last).map_or(0.0, |d| d.as_secs_f64());
            self.checkpoint_age.set(age);
        }
    }

    /// Records a service pass of the loop that took `duration` of wall time and `cpu` of
    /// the loop thread's CPU time.
    pub fn observe_service(&self, duration: std::time::Duration, cpu: std::time::Duration) {
        self.loop_service_cpu.observe(cpu.as_secs_f64());
        let seconds = duration.as_secs_f64();
        self.loop_service.observe(seconds);
        if seconds > self.loop_service_max.get() {
            self.loop_service_max.set(seconds);
        }
    }

    /// Sets a counter that mirrors a total kept elsewhere (librdkafka's, the sink's) to
    /// `total`; counters only go up, so a lower total is ignored.
    pub fn mirror(counter: &IntCounter, total: u64) {
        let current = counter.get();
        if total > current {
            counter.inc_by(total - current);
        }
    }

    /// Appends the text exposition of every self-metric and process metric to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let families = self.registry.gather();
        // Encoding into a Vec cannot fail, and every family is well formed by construction.
        TextEncoder::new()
            .encode(&families, out)
            .expect("encoding self-metrics into memory succeeds");
    }
}

impl Default for SelfMetrics {
    fn default() -> SelfMetrics {
        SelfMetrics::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Shows that the exposition carries the standard process metrics, the latency as a
    /// histogram, and the checkpoint timestamps only once there was a checkpoint.
    #[test]
    fn exposes_process_metrics_and_a_latency_histogram() {
        let metrics = SelfMetrics::new();
        metrics.apply_latency.observe(3e-6);
        let mut text = Vec::new();
        metrics.encode(&mut text);
        let text = String::from_utf8(text).expect("the exposition is UTF-8");
        for expected in [
            "# TYPE marginstream_apply_latency_seconds histogram",
            "marginstream_apply_latency_seconds_bucket{le=\"0.000003\"} 1",
            "marginstream_apply_latency_seconds_count 1",
            "marginstream_consumed_messages_total 0",
            "process_cpu_seconds_total",
            "process_resident_memory_bytes",
            "process_open_fds",
            "process_start_time_seconds",
        ] {
            assert!(
                text.contains(expected),
                "{expected} is missing from:\n{text}"
            );
        }
        assert!(!text.contains(CHECKPOINT_AGE_SECONDS));
        metrics.checkpoint_succeeded(SystemTime::now());
        let mut text = Vec::new();
        metrics.encode(&mut text);
        let text = String::from_utf8(text).expect("the exposition is UTF-8");
        assert!(text.contains(CHECKPOINT_AGE_SECONDS));
        assert!(text.contains(CHECKPOINT_LAST_SUCCESS_TIMESTAMP_SECONDS));
    }
}
