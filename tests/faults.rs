//! Fault injection for `marginstream run`'s loop (`marginstream::live`) on librdkafka's mock
//! cluster (`rdkafka::mocking::MockCluster`, STYLE.md section 8): every broker down for 30 s
//! in the middle of the stream, the dead-letter topic refusing writes, a rebalance while
//! consumption is paused for it, and a graceful restart. Each test starts the loop through the
//! library's `LiveHandle` (as `marginstream run` does), reads `/metrics` through its scrape,
//! and compares the contract's
//! gauges with one engine fed the same ledger in file order, and the dead-letter topic with
//! the rejected lines.
//!
//! Every wait has a deadline and fails saying what it waited for, with the end of the loop's
//! log (its `tracing` output, captured per test).
//!
//! `faults/state.rs`: forged torn, corrupt and foreign snapshots in the state topic, history
//! the broker dropped, and static membership (issue 10).

mod state;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use marginstream::checkpoint;
use marginstream::clock::wall_clock;
use marginstream::generate::{self, GenerateArgs};
use marginstream::live::{LiveHandle, LiveOptions, LiveSettings};
use marginstream_aggregator::{Engine, Preparer};
use marginstream_consumer::kafka::LedgerProducer;
use marginstream_consumer::{KafkaSettings, Offset, Partition};
use marginstream_exporter::exposure;
use marginstream_exporter::prometheus::render_prometheus_with;
use marginstream_exporter::RenderOptions;
use marginstream_tests::exposition::{assert_same, Metrics};
use marginstream_tests::topic::{self, Read};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::{MockCluster, MockCoordinator};
use rdkafka::producer::DefaultProducerContext;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

/// Partitions of the ledger topic.
const PARTITIONS: i32 = 4;

/// A deterministic ledger of about `customers * days * 5` lines with bad and repeated lines,
/// one message per line (as `marginstream produce` cuts it).
fn ledger(seed: u64, customers: u32, days: u32, bad_share: f64) -> Vec<Vec<u8>> {
    let args = GenerateArgs {
        customers,
        days,
        seed,
        events_per_customer_day: 5.0,
        end: "2026-01-01T00:00:00Z".to_owned(),
        duplicate_share: 0.03,
        bad_share,
        rate: 0,
        follow: false,
        swing_after: None,
        output: None,
    };
    let mut text = Vec::new();
    generate::generate(&args, &mut text).expect("the generator writes to memory");
    let mut lines: Vec<Vec<u8>> = text
        .split(|b| *b == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line).to_vec())
        .collect();
    if lines.last().is_some_and(Vec::is_empty) {
        lines.pop();
    }
    lines
}

/// A mock cluster with the ledger topic and the dead-letter topic. With one broker (id 1) it
/// leads everything; with two, broker 1 leads the ledger topic and coordinates the group,
/// and broker 2 leads the dead-letter topic.
struct Cluster {
    mock: MockCluster<'static, DefaultProducerContext>,
    brokers: String,
    topic: String,
    dlq: String,
}

impl Cluster {
    fn new(test: &str, brokers: i32) -> Cluster {
        let mock = MockCluster::new(brokers).expect("librdkafka starts a mock cluster");
        let bootstrap = mock.bootstrap_servers();
        let topic = format!("{test}.events");
        let dlq = format!("{test}.events.dlq");
        mock.create_topic(&topic, PARTITIONS, 1)
            .expect("the mock cluster creates the ledger topic");
        mock.create_topic(&dlq, 1, 1)
            .expect("the mock cluster creates the dead-letter topic");
        // The mock cluster does not implement CreateTopics: the state topic `run` would
        // create is made here (the mock does not compact; it keeps 5 MB per partition).
        mock.create_topic(&format!("{topic}-marginstream-state"), PARTITIONS, 1)
            .expect("the mock cluster creates the state topic");
        if brokers > 1 {
            for partition in 0..PARTITIONS {
                mock.partition_leader(&topic, partition, Some(1))
                    .expect("broker 1 leads the ledger topic");
            }
            mock.partition_leader(&dlq, 0, Some(2))
                .expect("broker 2 leads the dead-letter topic");
            mock.coordinator(MockCoordinator::Group(format!("{topic}.group")), 1)
                .expect("broker 1 coordinates the group");
        }
        Cluster {
            mock,
            brokers: bootstrap,
            topic,
            dlq,
        }
    }

    /// The settings of `marginstream run` against this cluster, through the configuration
    /// loader as `marginstream run` does, with librdkafka tuned for quick tests.
    fn settings(&self, state_dir: &Path, dlq_pending_max: u64) -> LiveSettings {
        let quoted = |text: &str| toml::Value::String(text.to_owned()).to_string();
        let flags = [
            ("ledger.clock", quoted("event")),
            ("kafka.brokers", quoted(&self.brokers)),
            ("kafka.topic", quoted(&self.topic)),
            ("kafka.dlq_topic", quoted(&self.dlq)),
            ("kafka.group_id", quoted(&format!("{}.group", self.topic))),
            ("kafka.dlq_pending_max", dlq_pending_max.to_string()),
            ("state.dir", quoted(&state_dir.display().to_string())),
            ("state.checkpoint_interval", quoted("1s")),
        ];
        let config = marginstream::config::load(None, Vec::<(String, String)>::new(), &flags)
            .unwrap_or_else(|error| panic!("the test configuration is valid: {error}"));
        let mut settings = config.live_settings();
        let kafka = &mut settings.kafka;
        for (key, value) in [
            ("session.timeout.ms", "6000"),
            ("heartbeat.interval.ms", "500"),
            ("topic.metadata.refresh.interval.ms", "1000"),
            ("reconnect.backoff.ms", "100"),
            ("reconnect.backoff.max.ms", "1000"),
            ("retry.backoff.ms", "100"),
            ("retry.backoff.max.ms", "1000"),
            ("fetch.wait.max.ms", "100"),
        ] {
            kafka.properties.insert(key.to_owned(), value.to_owned());
        }
        kafka.statistics_interval = Duration::from_secs(1);
        settings
    }
}

/// Produces `lines` to the ledger topic (keyed by customer) and waits for every ack.
fn produce(kafka: &KafkaSettings, lines: &[Vec<u8>]) {
    let producer = LedgerProducer::new(kafka).expect("the ledger producer starts");
    for line in lines {
        producer.send(line).expect("the ledger line is queued");
    }
    producer
        .flush(Duration::from_secs(120))
        .expect("every ledger line is acknowledged within 120 s");
}

/// The most log bytes kept per loop thread.
const LOG_BYTES_MAX: usize = 4 << 20;

/// The `tracing` output of one loop thread (its last [`LOG_BYTES_MAX`] bytes at most).
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut log = self.0.lock().unwrap_or_else(|e| e.into_inner());
        // Keep the end: a stalled dead-letter topic can log a warning per failed attempt.
        if log.len() > LOG_BYTES_MAX {
            log.drain(..LOG_BYTES_MAX / 2);
        }
        log.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Logs {
    type Writer = LogWriter;

    fn make_writer(&'a self) -> LogWriter {
        LogWriter(Arc::clone(&self.0))
    }
}

impl Logs {
    fn tail(&self, lines: usize) -> String {
        let text =
            String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|e| e.into_inner())).into_owned();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

/// The loop on a thread of its own, started through the library's handle.
struct Instance {
    handle: Option<LiveHandle>,
    logs: Logs,
}

impl Instance {
    fn start(name: &str, settings: LiveSettings) -> Instance {
        let logs = Logs::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(logs.clone())
            .with_ansi(false)
            .with_target(false)
            .with_max_level(tracing::Level::INFO)
            .finish();
        let handle = LiveHandle::spawn_with(
            settings,
            LiveOptions {
                thread_name: format!("loop-{name}"),
                log: Some(tracing::Dispatch::new(subscriber)),
            },
        )
        .expect("the loop thread starts");
        Instance {
            handle: Some(handle),
            logs,
        }
    }

    fn handle(&self) -> &LiveHandle {
        self.handle.as_ref().expect("the loop is running")
    }

    fn panic_if_ended(&mut self, what: &str) {
        if self.handle().is_finished() {
            let result = self.handle.take().expect("checked above").join();
            panic!(
                "the loop ended ({}) while waiting for {what}; its log ends:\n{}",
                match result {
                    Ok(()) => "Ok".to_owned(),
                    Err(error) => format!("error: {error:#}"),
                },
                self.logs.tail(40)
            );
        }
    }

    /// `/metrics`, from the readers' current snapshot (it never waits for the loop).
    fn scrape(&self) -> Option<Metrics> {
        let text = self.handle().scrape();
        Some(Metrics::parse(
            &String::from_utf8(text).expect("/metrics is UTF-8"),
        ))
    }

    /// Scrapes until `done` holds; fails after `timeout` with the last figures and the log.
    fn wait_for(
        &mut self,
        what: &str,
        timeout: Duration,
        mut done: impl FnMut(&Metrics) -> bool,
    ) -> Metrics {
        let deadline = Instant::now() + timeout;
        let mut last = None;
        while Instant::now() < deadline {
            self.panic_if_ended(what);
            if let Some(metrics) = self.scrape() {
                if done(&metrics) {
                    return metrics;
                }
                last = Some(metrics);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!(
            "timed out after {timeout:?} waiting for {what}; readiness {:?}; last figures: {}; the loop's log ends:\n{}",
            self.handle().status().readiness(),
            last.map_or_else(|| "no answer to /metrics".to_owned(), |m| m.summary()),
            self.logs.tail(40)
        );
    }

    /// Stops the loop and waits (at most 60 s) for it to return `Ok`.
    fn stop(mut self) {
        let handle = self.handle.take().expect("the loop thread is running");
        handle.stop();
        let deadline = Instant::now() + Duration::from_secs(60);
        while !handle.is_finished() {
            assert!(
                Instant::now() < deadline,
                "the loop did not return within 60 s of shutdown; its log ends:\n{}",
                self.logs.tail(40)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let shared = Arc::clone(handle.shared());
        if let Err(error) = handle.join() {
            panic!(
                "the loop failed on shutdown: {error:#}; its log ends:\n{}",
                self.logs.tail(40)
            );
        }
        assert!(shared.status.finished.load(Ordering::Acquire));
    }
}

/// What the fault tests read of an exposition beyond the shared helpers.
trait MetricsExt {
    fn count(&self, name: &str) -> u64;
    fn ready(&self) -> bool;
    fn summary(&self) -> String;
}

impl MetricsExt for Metrics {
    fn count(&self, name: &str) -> u64 {
        self.value(name) as u64
    }

    fn ready(&self) -> bool {
        self.value("marginstream_ready") == 1.0
    }

    /// The figures that say where the loop is, for failure messages.
    fn summary(&self) -> String {
        let names = [
            "marginstream_ready",
            "marginstream_consumed_messages_total",
            "marginstream_partitions_assigned",
            "marginstream_rebalances_total",
            "marginstream_checkpoints_total",
            "marginstream_dlq_messages_total",
            "marginstream_dlq_failures_total",
            "marginstream_dlq_pending_messages",
            "marginstream_consumer_paused",
            "marginstream_kafka_errors_total",
        ];
        let mut parts: Vec<String> = names
            .iter()
            .map(|n| {
                format!(
                    "{}={}",
                    n.trim_start_matches("marginstream_"),
                    self.value(n)
                )
            })
            .collect();
        parts.push(format!("counted={}", self.counted()));
        parts.join(" ")
    }
}

/// Applies one message as the loop does: prepare (the size limit first) and record. Returns
/// the rejection reason, if any.
fn apply(engine: &mut Engine, preparer: &Preparer, line: &[u8]) -> Option<&'static str> {
    let outcome = match preparer.prepare(line) {
        Ok(event) => engine.record(event, wall_clock()).map(|_| ()),
        Err(rejection) => {
            engine.count_rejection(rejection.reason);
            Err(rejection)
        }
    };
    outcome.err().map(|rejection| rejection.reason.as_str())
}

/// What `/metrics` and the dead-letter topic must hold once the whole ledger is consumed:
/// one engine fed the ledger in file order.
struct Expected {
    metrics: Metrics,
    /// (payload, reason) of every rejected line, sorted.
    rejected: Vec<(Vec<u8>, String)>,
}

fn expected(settings: &LiveSettings, lines: &[Vec<u8>]) -> Expected {
    let mut engine = Engine::new(&settings.engine).expect("the engine configuration is valid");
    let mut rejected = Vec::new();
    for line in lines {
        if let Some(reason) = apply(&mut engine, &settings.preparer, line) {
            rejected.push((line.clone(), reason.to_owned()));
        }
    }
    rejected.sort();
    // Rendered as `run` renders: the budget chosen on the final state, and the tiers.
    let publishing = &settings.publishing;
    let view = engine.view();
    let chosen = exposure::choose(&view, &publishing.exposure);
    let exposed = |id: &str| chosen.contains(id);
    let exposition = publishing.exposition(&exposed);
    let mut text = Vec::new();
    render_prometheus_with(&view, RenderOptions::default(), &exposition, &mut text);
    Expected {
        metrics: Metrics::parse(&String::from_utf8(text).expect("the exposition is UTF-8")),
        rejected,
    }
}

/// Reads a topic from the beginning to its end (at most 30 s).
fn read_topic(brokers: &str, topic: &str, partitions: i32) -> Vec<Read> {
    topic::read_topic(brokers, topic, partitions, Duration::from_secs(30))
}

/// Checks the dead-letter topic against the expected rejections: one letter per rejected
/// line, the payload unchanged, with its reason and every header, and no two letters for
/// the same source message.
fn assert_dead_letters(cluster: &Cluster, expected: &Expected) {
    let letters = read_topic(&cluster.brokers, &cluster.dlq, 1);
    let mut actual: Vec<(Vec<u8>, String)> = letters
        .iter()
        .map(|letter| {
            for key in [
                "marginstream.reason",
                "marginstream.error",
                "marginstream.source.topic",
                "marginstream.source.partition",
                "marginstream.source.offset",
            ] {
                assert!(
                    letter.headers.contains_key(key),
                    "a dead letter lacks the header {key}: {:?}",
                    letter.headers
                );
            }
            assert_eq!(letter.headers["marginstream.source.topic"], cluster.topic);
            (
                letter.payload.clone(),
                letter.headers["marginstream.reason"].clone(),
            )
        })
        .collect();
    actual.sort();
    let sources: BTreeSet<(i32, i64)> = letters.iter().map(Read::source).collect();
    assert_eq!(
        sources.len(),
        letters.len(),
        "{} dead letters repeat a source message already dead-lettered",
        letters.len() - sources.len()
    );
    assert_eq!(
        actual.len(),
        expected.rejected.len(),
        "dead letters: one per rejected line"
    );
    assert!(
        actual == expected.rejected,
        "the dead letters are the rejected lines, unchanged, with their reasons"
    );
}

/// The (partition, offset) of every message of the ledger topic that the loop must reject:
/// the topic read back, each partition fed in offset order to an engine of its own.
fn rejected_offsets(
    cluster: &Cluster,
    settings: &LiveSettings,
    lines: usize,
) -> BTreeSet<(i32, i64)> {
    let mut messages = read_topic(&cluster.brokers, &cluster.topic, PARTITIONS);
    assert_eq!(
        messages.len(),
        lines,
        "the ledger topic holds every line once"
    );
    messages.sort_by_key(|m| (m.partition, m.offset));
    let mut engines: HashMap<i32, Engine> = HashMap::new();
    let mut rejected = BTreeSet::new();
    for message in &messages {
        let engine = engines.entry(message.partition).or_insert_with(|| {
            Engine::new(&settings.engine).expect("the engine configuration is valid")
        });
        if apply(engine, &settings.preparer, &message.payload).is_some() {
            rejected.insert((message.partition, message.offset));
        }
    }
    rejected
}

/// Reads the checkpoint (if any) and checks that every rejected message before its offsets
/// is in the dead-letter topic: a checkpoint is never taken past an unacknowledged dead
/// letter. Returns the checkpointed next offsets.
fn check_checkpoint(
    cluster: &Cluster,
    settings: &LiveSettings,
    rejected: &BTreeSet<(i32, i64)>,
) -> Option<BTreeMap<i32, i64>> {
    let path = settings.state_dir.join(checkpoint::FILE_NAME);
    let bytes = std::fs::read(&path).ok()?;
    let restored = checkpoint::decode(
        &bytes,
        &settings.kafka.topic,
        &settings.kafka.group_id,
        &settings.engine,
    )
    .unwrap_or_else(|error| panic!("the checkpoint {} decodes: {error:#}", path.display()));
    let offsets: BTreeMap<i32, i64> = restored
        .partitions
        .iter()
        .map(|p| (p.partition.0, p.next.0))
        .collect();
    // Read after the checkpoint: whatever was acknowledged before it is there.
    let acknowledged: BTreeSet<(i32, i64)> = read_topic(&cluster.brokers, &cluster.dlq, 1)
        .iter()
        .map(Read::source)
        .collect();
    let missing: Vec<&(i32, i64)> = rejected
        .iter()
        .filter(|(p, o)| offsets.get(p).is_some_and(|next| o < next))
        .filter(|source| !acknowledged.contains(source))
        .collect();
    assert!(
        missing.is_empty(),
        "the checkpoint {offsets:?} is past {} rejected messages that are not in the dead-letter topic, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    Some(offsets)
}

fn assert_matches_reference(context: &str, expected: &Expected, metrics: &Metrics) {
    assert_same(context, &expected.metrics.gauges(), &metrics.gauges());
    assert_eq!(
        expected.metrics.outcomes(),
        metrics.outcomes(),
        "{context}: applied+late and duplicate counts"
    );
}

/// With every broker down for 30 s in the middle of the stream (the dead-letter topic's
/// leader 1.5 s earlier, so that dead letters are in flight), the loop keeps answering,
/// takes no checkpoint while dead letters are unacknowledged, produces again the ones that
/// time out, and once the brokers are back ends with every message applied exactly once:
/// the gauges equal the reference and the dead-letter topic holds each rejected line once.
#[test]
fn broker_down_30s_and_back() {
    let started = Instant::now();
    let cluster = Cluster::new("outage", 2);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut settings = cluster.settings(&dir.path().join("state"), 10_000);
    // Dead letters time out during the outage and must be produced again.
    settings
        .kafka
        .properties
        .insert("message.timeout.ms".to_owned(), "10000".to_owned());
    let checkpoint_path = settings.state_dir.join(checkpoint::FILE_NAME);
    let lines = ledger(7, 60, 10, 0.04);
    let expected = expected(&settings, &lines);
    assert!(!expected.rejected.is_empty(), "the ledger has bad lines");
    let (first, rest) = lines.split_at(lines.len() / 2);
    // The ledger's producer waits out the outage (librdkafka's default timeout, 300 s).
    let mut producer_settings = settings.kafka.clone();
    producer_settings.properties.remove("message.timeout.ms");
    produce(&producer_settings, first);

    let mut instance = Instance::start("outage", settings.clone());
    let before = instance.wait_for("the first half", Duration::from_secs(60), |m| {
        m.ready() && m.counted() == first.len() as u64
    });
    eprintln!(
        "outage: first half ({} lines) in after {:?}",
        first.len(),
        started.elapsed()
    );

    // Stream the rest over about 6 s; the brokers go down half-way through.
    let streamer = {
        let rest = rest.to_vec();
        std::thread::spawn(move || {
            let producer =
                LedgerProducer::new(&producer_settings).expect("the ledger producer starts");
            let pause = Duration::from_secs(6).div_f64((rest.len() / 20 + 1) as f64);
            for chunk in rest.chunks(20) {
                for line in chunk {
                    producer.send(line).expect("the ledger line is queued");
                }
                std::thread::sleep(pause);
            }
            producer.flush(Duration::from_secs(120))
        })
    };
    std::thread::sleep(Duration::from_millis(1500));
    cluster
        .mock
        .broker_down(2)
        .expect("the dead-letter topic's leader goes down");
    std::thread::sleep(Duration::from_millis(1500));
    cluster
        .mock
        .broker_down(1)
        .expect("the other broker goes down");
    let down_at = Instant::now();
    std::thread::sleep(Duration::from_secs(1));
    let early = instance
        .scrape()
        .expect("/metrics answers during the outage");
    let checkpoint_early = std::fs::read(&checkpoint_path).ok();
    eprintln!(
        "outage: brokers down after {:?}: {}",
        started.elapsed(),
        early.summary()
    );
    let consumed_early = early.count("marginstream_consumed_messages_total");
    assert!(
        consumed_early > before.count("marginstream_consumed_messages_total")
            && consumed_early < lines.len() as u64,
        "the outage began mid-stream: {consumed_early} of {} messages consumed",
        lines.len()
    );
    assert!(
        early.count("marginstream_dlq_pending_messages") > 0,
        "dead letters were waiting for the dead-letter topic when the brokers went down: {}",
        early.summary()
    );
    // The loop keeps answering while no broker is reachable.
    while down_at.elapsed() < Duration::from_secs(30) {
        instance.panic_if_ended("the brokers to come back");
        assert!(
            instance.scrape().is_some(),
            "/metrics did not answer within 20 s while the brokers were down; the loop's log ends:\n{}",
            instance.logs.tail(40)
        );
        std::thread::sleep(Duration::from_secs(2));
    }
    let late = instance
        .scrape()
        .expect("/metrics answers during the outage");
    let checkpoint_late = std::fs::read(&checkpoint_path).ok();
    cluster.mock.broker_up(1).expect("broker 1 comes back");
    cluster.mock.broker_up(2).expect("broker 2 comes back");
    eprintln!(
        "outage: brokers up after {:?}; at the end of the outage: {}",
        started.elapsed(),
        late.summary()
    );
    assert!(
        late.count("marginstream_dlq_pending_messages") > 0,
        "dead letters are still kept at the end of the outage"
    );
    assert!(
        late.count("marginstream_dlq_failures_total") > 0,
        "dead letters timed out during the outage (message.timeout.ms = 10 s)"
    );
    assert_eq!(
        late.count("marginstream_checkpoints_total"),
        early.count("marginstream_checkpoints_total"),
        "no checkpoint while dead letters were unacknowledged"
    );
    assert!(
        checkpoint_late == checkpoint_early,
        "the checkpoint file did not change while dead letters were unacknowledged"
    );

    streamer
        .join()
        .expect("the streaming producer does not panic")
        .expect("every ledger line is acknowledged once the brokers are back");
    let after = instance.wait_for(
        "every message and every dead letter after the outage",
        Duration::from_secs(60),
        |m| {
            m.ready()
                && m.counted() == lines.len() as u64
                && m.count("marginstream_dlq_pending_messages") == 0
                && m.count("marginstream_dlq_messages_total") == expected.rejected.len() as u64
        },
    );
    eprintln!(
        "outage: caught up {:?} after the brokers came back: {}",
        down_at.elapsed().saturating_sub(Duration::from_secs(30)),
        after.summary()
    );
    assert_eq!(
        after.count("marginstream_consumed_messages_total"),
        lines.len() as u64,
        "every message applied once: none skipped, none applied twice"
    );
    assert!(
        after.count("marginstream_rebalances_total") > late.count("marginstream_rebalances_total"),
        "the partitions were assigned again after the outage"
    );
    assert_matches_reference(
        "gauges after a 30 s outage against the reference",
        &expected,
        &after,
    );
    assert_dead_letters(&cluster, &expected);
    instance.stop();
    eprintln!("outage: done in {:?}", started.elapsed());
}

/// While the dead-letter topic refuses every write, delivery failures are counted, the
/// consumer pauses at `kafka.dlq_pending_max` and no checkpoint goes past a rejected message
/// that is not in the topic; while it refuses most writes, work goes on at that pace with
/// checkpoints only over acknowledged letters; once the errors stop, everything resumes and
/// ends equal to the reference, each rejected line in the topic once.
#[test]
fn dlq_produce_failures_stall_and_resume() {
    let started = Instant::now();
    let cluster = Cluster::new("dlqfail", 1);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let pending_max = 5;
    let settings = cluster.settings(&dir.path().join("state"), pending_max);
    let lines = ledger(13, 50, 10, 0.05);
    let expected = expected(&settings, &lines);
    assert!(
        expected.rejected.len() > 40,
        "the ledger has plenty of bad lines, got {}",
        expected.rejected.len()
    );
    produce(&settings.kafka, &lines);
    let rejected = rejected_offsets(&cluster, &settings, lines.len());
    assert_eq!(rejected.len(), expected.rejected.len());

    // Phase 1: every Produce request fails (not retriable, nothing persisted). The sink
    // produces a failed letter again at once, some 10^4 requests a second: enough errors
    // for the whole phase.
    let refused = vec![RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED; 1_000_000];
    cluster
        .mock
        .request_errors(RDKafkaApiKey::Produce, &refused);
    let mut instance = Instance::start("dlqfail", settings.clone());
    let stalled = instance.wait_for(
        "failed dead letters and a paused consumer",
        Duration::from_secs(60),
        |m| {
            m.count("marginstream_dlq_failures_total") > 0
                && m.value("marginstream_consumer_paused") == 1.0
        },
    );
    eprintln!(
        "dlqfail: stalled after {:?}: {}",
        started.elapsed(),
        stalled.summary()
    );
    assert!(
        stalled.count("marginstream_dlq_pending_messages") >= pending_max,
        "paused with at least kafka.dlq_pending_max dead letters pending"
    );
    check_checkpoint(&cluster, &settings, &rejected);
    std::thread::sleep(Duration::from_secs(3));
    let still = instance.scrape().expect("/metrics answers while stalled");
    assert_eq!(
        still.count("marginstream_consumed_messages_total"),
        stalled.count("marginstream_consumed_messages_total"),
        "no message is consumed while paused; {}",
        still.summary()
    );
    assert!(
        still.count("marginstream_dlq_failures_total")
            > stalled.count("marginstream_dlq_failures_total"),
        "failed dead letters are retried while stalled; {}",
        still.summary()
    );
    assert!(still.count("marginstream_consumed_messages_total") < lines.len() as u64);
    assert_eq!(still.value("marginstream_consumer_paused"), 1.0);
    assert_eq!(still.count("marginstream_dlq_messages_total"), 0);
    check_checkpoint(&cluster, &settings, &rejected);

    // Phase 2: two Produce requests of three fail.
    cluster.mock.clear_request_errors(RDKafkaApiKey::Produce);
    let flaky: Vec<RDKafkaRespErr> = (0..300_000)
        .map(|i| {
            if i % 3 == 2 {
                RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR
            } else {
                RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED
            }
        })
        .collect();
    cluster.mock.request_errors(RDKafkaApiKey::Produce, &flaky);
    let checkpoints = still.count("marginstream_checkpoints_total");
    let mut checked = 0;
    let flaky_progress = instance.wait_for(
        "progress and checkpoints while most deliveries fail",
        Duration::from_secs(60),
        |m| {
            if check_checkpoint(&cluster, &settings, &rejected).is_some() {
                checked += 1;
            }
            m.count("marginstream_checkpoints_total") >= checkpoints + 2
                && m.count("marginstream_dlq_messages_total") > 0
                && m.count("marginstream_dlq_failures_total")
                    > still.count("marginstream_dlq_failures_total")
                && m.count("marginstream_consumed_messages_total")
                    > still.count("marginstream_consumed_messages_total")
        },
    );
    eprintln!(
        "dlqfail: flaky phase after {:?}, {checked} checkpoints checked: {}",
        started.elapsed(),
        flaky_progress.summary()
    );

    // Phase 3: the topic recovers.
    cluster.mock.clear_request_errors(RDKafkaApiKey::Produce);
    let done = instance.wait_for(
        "every message and dead letter once the errors stop",
        Duration::from_secs(60),
        |m| {
            m.ready()
                && m.counted() == lines.len() as u64
                && m.count("marginstream_dlq_pending_messages") == 0
                && m.count("marginstream_dlq_messages_total") == expected.rejected.len() as u64
                && m.value("marginstream_consumer_paused") == 0.0
        },
    );
    eprintln!(
        "dlqfail: recovered after {:?}: {}",
        started.elapsed(),
        done.summary()
    );
    assert_eq!(
        done.count("marginstream_consumed_messages_total"),
        lines.len() as u64,
        "every message applied once"
    );
    assert_matches_reference(
        "gauges after dead-letter failures against the reference",
        &expected,
        &done,
    );
    assert_dead_letters(&cluster, &expected);
    instance.stop();
    // The final checkpoint is at the end of every partition, past acknowledged letters only.
    let offsets = check_checkpoint(&cluster, &settings, &rejected).expect("a final checkpoint");
    let mut ends: BTreeMap<i32, i64> = BTreeMap::new();
    for m in read_topic(&cluster.brokers, &cluster.topic, PARTITIONS) {
        let end = ends.entry(m.partition).or_default();
        *end = (*end).max(m.offset + 1);
    }
    assert_eq!(
        offsets, ends,
        "the final checkpoint is at the end of every partition"
    );
    eprintln!("dlqfail: done in {:?}", started.elapsed());
}

/// A plain consumer of the group: joining and leaving makes the group rebalance.
struct Intruder {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl Intruder {
    fn join(cluster: &Cluster, group_id: &str) -> Intruder {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &cluster.brokers)
            .set("group.id", group_id)
            .set("enable.auto.commit", "false")
            .set("session.timeout.ms", "6000")
            .set("heartbeat.interval.ms", "500")
            .create()
            .expect("the other member's consumer");
        consumer
            .subscribe(&[&cluster.topic])
            .expect("the other member subscribes");
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                while !stop.load(Ordering::Acquire) {
                    let _ = consumer.poll(Duration::from_millis(100));
                }
                consumer.unsubscribe();
                // Dropping the consumer closes it: it leaves the group.
            })
        };
        Intruder { stop, thread }
    }

    fn leave(self) {
        self.stop.store(true, Ordering::Release);
        self.thread.join().expect("the other member stops");
    }
}

/// Checks the dead-letter topic when partitions may have been rebuilt (their rejections
/// written again): every rejected message is there at least once, with its payload and
/// reason, and nothing else is.
fn assert_dead_letters_at_least_once(
    cluster: &Cluster,
    expected: &Expected,
    rejected: &BTreeSet<(i32, i64)>,
) -> usize {
    let letters = read_topic(&cluster.brokers, &cluster.dlq, 1);
    let mut by_source: BTreeMap<(i32, i64), (Vec<u8>, String)> = BTreeMap::new();
    for letter in &letters {
        let value = (
            letter.payload.clone(),
            letter
                .headers
                .get("marginstream.reason")
                .cloned()
                .unwrap_or_default(),
        );
        if let Some(previous) = by_source.insert(letter.source(), value.clone()) {
            assert_eq!(
                previous,
                value,
                "two dead letters of {:?} differ",
                letter.source()
            );
        }
    }
    let sources: BTreeSet<(i32, i64)> = by_source.keys().copied().collect();
    assert!(
        &sources == rejected,
        "dead letters for every rejected message and no other: {} missing, {} unexpected",
        rejected.difference(&sources).count(),
        sources.difference(rejected).count()
    );
    let mut values: Vec<(Vec<u8>, String)> = by_source.into_values().collect();
    values.sort();
    assert!(
        values == expected.rejected,
        "the dead letters are the rejected lines, unchanged, with their reasons"
    );
    letters.len() - sources.len()
}

/// A rebalance while consumption is paused for the dead-letter topic (another member joins
/// the group, then leaves) keeps consumption paused: the partitions this instance keeps or
/// gets are not read while dead letters wait. Once the topic recovers, the gauges equal the
/// reference and every rejected message is in the dead-letter topic (a partition that came
/// back without its state is rebuilt and its rejections written again: at least once).
#[test]
fn rebalance_while_stalled_keeps_consumption_paused() {
    let started = Instant::now();
    let cluster = Cluster::new("rebalance", 1);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let settings = cluster.settings(&dir.path().join("state"), 5);
    let lines = ledger(19, 50, 10, 0.05);
    let expected = expected(&settings, &lines);
    produce(&settings.kafka, &lines);
    let rejected = rejected_offsets(&cluster, &settings, lines.len());
    let refused = vec![RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED; 1_000_000];
    cluster
        .mock
        .request_errors(RDKafkaApiKey::Produce, &refused);

    let mut instance = Instance::start("rebalance", settings.clone());
    let stalled = instance.wait_for("a paused consumer", Duration::from_secs(60), |m| {
        m.value("marginstream_consumer_paused") == 1.0
            && m.count("marginstream_partitions_assigned") == PARTITIONS as u64
    });
    eprintln!(
        "rebalance: stalled after {:?}: {}",
        started.elapsed(),
        stalled.summary()
    );
    let intruder = Intruder::join(&cluster, &settings.kafka.group_id);
    let shared = instance.wait_for(
        "the partitions shared with another member",
        Duration::from_secs(60),
        |m| {
            m.count("marginstream_partitions_assigned") == 2
                && m.count("marginstream_rebalances_total")
                    >= stalled.count("marginstream_rebalances_total") + 2
        },
    );
    std::thread::sleep(Duration::from_secs(3));
    let still = instance.scrape().expect("/metrics answers while stalled");
    eprintln!(
        "rebalance: shared after {:?}: {}; 3 s later: {}",
        started.elapsed(),
        shared.summary(),
        still.summary()
    );
    assert_eq!(
        still.value("marginstream_consumer_paused"),
        1.0,
        "still paused after the rebalance"
    );
    assert_eq!(
        still.count("marginstream_consumed_messages_total"),
        stalled.count("marginstream_consumed_messages_total"),
        "no message is consumed while paused, across a rebalance; {}",
        still.summary()
    );

    intruder.leave();
    let alone = instance.wait_for(
        "every partition back after the other member left",
        Duration::from_secs(60),
        |m| m.count("marginstream_partitions_assigned") == PARTITIONS as u64,
    );
    eprintln!(
        "rebalance: alone again after {:?}: {}",
        started.elapsed(),
        alone.summary()
    );
    cluster.mock.clear_request_errors(RDKafkaApiKey::Produce);
    let done = instance.wait_for(
        "every message and dead letter once the errors stop",
        Duration::from_secs(60),
        |m| {
            m.ready()
                && m.counted() == lines.len() as u64
                && m.count("marginstream_dlq_pending_messages") == 0
                && m.value("marginstream_consumer_paused") == 0.0
        },
    );
    eprintln!(
        "rebalance: recovered after {:?}: {}",
        started.elapsed(),
        done.summary()
    );
    assert_matches_reference(
        "gauges after a rebalance while stalled against the reference",
        &expected,
        &done,
    );
    let repeated = assert_dead_letters_at_least_once(&cluster, &expected, &rejected);
    instance.stop();
    eprintln!(
        "rebalance: done in {:?}; {repeated} dead letters written again for rebuilt partitions",
        started.elapsed()
    );
}

/// A graceful stop takes a final checkpoint past every acknowledged dead letter; a new
/// instance on the same state directory resumes from it: it reads only the messages
/// produced since, and the gauges and the dead-letter topic count nothing twice.
#[test]
fn graceful_restart_counts_nothing_twice() {
    let started = Instant::now();
    let cluster = Cluster::new("restart", 1);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let settings = cluster.settings(&dir.path().join("state"), 10_000);
    let lines = ledger(17, 50, 10, 0.04);
    let expected = expected(&settings, &lines);
    let (first, rest) = lines.split_at(lines.len() * 3 / 5);
    produce(&settings.kafka, first);

    let mut a = Instance::start("restart-a", settings.clone());
    let end_of_a = a.wait_for(
        "the first part in instance a",
        Duration::from_secs(60),
        |m| {
            m.ready()
                && m.counted() == first.len() as u64
                && m.count("marginstream_dlq_pending_messages") == 0
        },
    );
    a.stop();
    let offsets = {
        let path = settings.state_dir.join(checkpoint::FILE_NAME);
        let bytes = std::fs::read(&path).expect("a graceful stop leaves a checkpoint");
        let restored = checkpoint::decode(
            &bytes,
            &settings.kafka.topic,
            &settings.kafka.group_id,
            &settings.engine,
        )
        .expect("the checkpoint decodes");
        restored
            .partitions
            .iter()
            .map(|p| (p.partition, p.next))
            .collect::<BTreeMap<Partition, Offset>>()
    };
    let checkpointed: i64 = offsets.values().map(|o| o.0).sum();
    assert_eq!(
        checkpointed,
        first.len() as i64,
        "the final checkpoint holds every message read: {offsets:?}"
    );
    eprintln!(
        "restart: instance a stopped after {:?}: {}",
        started.elapsed(),
        end_of_a.summary()
    );

    produce(&settings.kafka, rest);
    let mut b = Instance::start("restart-b", settings.clone());
    let end_of_b = b.wait_for(
        "the whole ledger in instance b",
        Duration::from_secs(60),
        |m| {
            m.ready()
                && m.counted() == lines.len() as u64
                && m.count("marginstream_dlq_pending_messages") == 0
        },
    );
    eprintln!(
        "restart: instance b caught up after {:?}: {}",
        started.elapsed(),
        end_of_b.summary()
    );
    assert_eq!(
        end_of_b.count("marginstream_restored_partitions"),
        PARTITIONS as u64
    );
    assert_eq!(
        end_of_b.count("marginstream_consumed_messages_total"),
        rest.len() as u64,
        "instance b reads only what came after the checkpoint"
    );
    assert_eq!(
        end_of_a.count("marginstream_dlq_messages_total")
            + end_of_b.count("marginstream_dlq_messages_total"),
        expected.rejected.len() as u64
    );
    assert_matches_reference(
        "gauges after a restart against the reference",
        &expected,
        &end_of_b,
    );
    assert_dead_letters(&cluster, &expected);
    b.stop();
    eprintln!("restart: done in {:?}", started.elapsed());
}
