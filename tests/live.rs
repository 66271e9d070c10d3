//! `marginstream run` end to end on a real Kafka-protocol broker: Tansu, started by
//! `scripts/broker.sh` on a free port for each test (or the broker of `KAFKA_BROKERS`, with
//! topics unique to the test). Each test compares `/metrics` with `replay` of the same
//! ledger, computed by the same binary from the JSONL file.
//!
//! A test that cannot start its broker fails, saying why; none is skipped.
//!
//! `live/state.rs`: state that moves with its partition (the state topic, scale 1 → 3 → 1,
//! a kill -9 with the shipped defaults) and restatement under new rules (issues 10 and 11).

mod state;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use marginstream_tests::exposition::{assert_same, Metrics};
use marginstream_tests::topic::read_topic;
use marginstream_tests::{binary, root};
use rust_decimal::Decimal;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free local port")
}

/// A broker for one test: a Tansu process of its own, or `KAFKA_BROKERS`.
struct Broker {
    brokers: String,
    port: Option<u16>,
    prefix: String,
}

impl Broker {
    fn start(test: &str) -> Broker {
        let unique = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let prefix = format!("{test}-{}-{unique}", std::process::id());
        if let Ok(brokers) = std::env::var("KAFKA_BROKERS") {
            return Broker {
                brokers,
                port: None,
                prefix,
            };
        }
        let port = free_port();
        let output = Command::new(root().join("scripts/broker.sh"))
            .args(["start", &port.to_string()])
            .output()
            .expect("scripts/broker.sh runs");
        assert!(
            output.status.success(),
            "could not start the Tansu broker for {test} (scripts/broker.sh start {port}):\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        Broker {
            brokers: format!("127.0.0.1:{port}"),
            port: Some(port),
            prefix,
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(port) = self.port {
            let _ = Command::new(root().join("scripts/broker.sh"))
                .args(["stop", &port.to_string()])
                .output();
        }
    }
}

/// One test's files and settings.
struct Setup {
    /// `partition.assignment.strategy`, when not librdkafka's default (eager).
    strategy: Option<&'static str>,
    /// `session.timeout.ms`; `None`: marginstream's shipped default.
    session_timeout_ms: Option<&'static str>,
    dir: tempfile::TempDir,
    broker: Broker,
    topic: String,
    dlq: String,
}

impl Setup {
    fn new(test: &str, partitions: u32) -> Setup {
        let broker = Broker::start(test);
        let setup = Setup {
            strategy: None,
            session_timeout_ms: Some("6000"),
            dir: tempfile::tempdir().expect("a temporary directory"),
            topic: format!("{}.events", broker.prefix),
            dlq: format!("{}.dlq", broker.prefix),
            broker,
        };
        let config = setup.config("create", "127.0.0.1:0");
        let output = Command::new(binary())
            .args(["create-topics", "--config"])
            .arg(&config)
            .args(["--partitions", &partitions.to_string()])
            .output()
            .expect("the binary runs");
        assert!(
            output.status.success(),
            "create-topics failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        setup
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes a configuration for an instance named `name` and returns its path.
    fn config(&self, name: &str, listen: &str) -> PathBuf {
        self.config_with(name, listen, "", "")
    }

    /// Writes a configuration for an instance named `name`, with `ledger` added to its
    /// `[ledger]` table and `tail` (more tables) at its end, and returns its path.
    fn config_with(&self, name: &str, listen: &str, ledger: &str, tail: &str) -> PathBuf {
        let path = self.path(&format!("{name}.toml"));
        let text = format!(
            r#"[kafka]
brokers = "{brokers}"
topic = "{topic}"
dlq_topic = "{dlq}"
group_id = "{topic}.group"

[kafka.properties]
# This broker assigns partitions session.timeout.ms / 2 after a join.
{session}"heartbeat.interval.ms" = "500"
{strategy}
[metrics]
listen = "{listen}"

[ledger]
clock = "event"
{ledger}
[state]
dir = "{state}"
checkpoint_interval = "1s"
{tail}"#,
            brokers = self.broker.brokers,
            topic = self.topic,
            dlq = self.dlq,
            state = self.path(&format!("{name}-state")).display(),
            session = self.session_timeout_ms.map_or(String::new(), |ms| {
                format!("\"session.timeout.ms\" = \"{ms}\"\n")
            }),
            strategy = self.strategy.map_or(String::new(), |s| {
                format!("\"partition.assignment.strategy\" = \"{s}\"\n")
            }),
        );
        std::fs::write(&path, text).expect("the configuration is written");
        path
    }

    fn generate(&self, args: &[&str]) -> PathBuf {
        let path = self.path("ledger.jsonl");
        let output = Command::new(binary())
            .arg("generate")
            .args(args)
            .arg("--output")
            .arg(&path)
            .output()
            .expect("the binary runs");
        assert!(output.status.success(), "generate failed");
        path
    }

    fn produce(&self, ledger: &Path, rate: Option<u64>) -> Child {
        let config = self.config("producer", "127.0.0.1:0");
        let mut command = Command::new(binary());
        command
            .args(["produce", "--config"])
            .arg(config)
            .arg("--input")
            .arg(ledger)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(rate) = rate {
            command.args(["--rate", &rate.to_string()]);
        }
        command.spawn().expect("the producer starts")
    }

    /// Replays the ledger: the expected exposition and the rejected lines.
    fn replay(&self, ledger: &Path) -> (String, Vec<serde_json::Value>) {
        let config = self.config("replay", "127.0.0.1:0");
        let rejected = self.path("replay-rejected.jsonl");
        let output = Command::new(binary())
            .args(["replay", "--progress", "never", "--config"])
            .arg(config)
            .arg("--input")
            .arg(ledger)
            .arg("--rejected-out")
            .arg(&rejected)
            .output()
            .expect("the binary runs");
        assert!(output.status.success(), "replay failed");
        let lines = std::fs::read_to_string(&rejected)
            .expect("the rejected file exists")
            .lines()
            .map(|l| serde_json::from_str(l).expect("a rejected record is JSON"))
            .collect();
        (
            String::from_utf8(output.stdout).expect("the exposition is UTF-8"),
            lines,
        )
    }
}

/// A running `marginstream run`.
struct Instance {
    child: Child,
    port: u16,
    config: PathBuf,
    log: PathBuf,
}

impl Instance {
    fn start(setup: &Setup, name: &str) -> Instance {
        let port = free_port();
        let config = setup.config(name, &format!("127.0.0.1:{port}"));
        Instance::start_with(config, port, setup.path(&format!("{name}.log")))
    }

    fn start_with(config: PathBuf, port: u16, log: PathBuf) -> Instance {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("the log file opens");
        let child = Command::new(binary())
            .args(["run", "--config"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("marginstream run starts");
        Instance {
            child,
            port,
            config,
            log,
        }
    }

    fn restart(self) -> Instance {
        let (config, port, log) = (self.config.clone(), self.port, self.log.clone());
        drop(self);
        Instance::start_with(config, port, log)
    }

    fn get(&self, path: &str) -> Option<(u16, String)> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .ok()?;
        write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).ok()?;
        let text = String::from_utf8(response).ok()?;
        let (head, body) = text.split_once("\r\n\r\n")?;
        let code = head.split(' ').nth(1)?.parse().ok()?;
        Some((code, body.to_owned()))
    }

    fn metrics(&self) -> Option<Metrics> {
        match self.get("/metrics") {
            Some((200, body)) => Some(Metrics::parse(&body)),
            _ => None,
        }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Waits until ready with `consumed` messages applied in all (by the counters).
    fn wait_for(
        &mut self,
        what: &str,
        timeout: Duration,
        done: impl Fn(&Metrics) -> bool,
    ) -> Metrics {
        let deadline = Instant::now() + timeout;
        let mut last = None;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("marginstream run exited ({status}) while waiting for {what}; its log ends:\n{}", self.log_tail());
            }
            if let Some(metrics) = self.metrics() {
                if done(&metrics) {
                    return metrics;
                }
                last = Some(metrics);
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        panic!(
            "timed out after {timeout:?} waiting for {what}; last counters: {:?}; log ends:\n{}",
            last.map(|m| (
                m.value("marginstream_consumed_messages_total"),
                m.value("marginstream_ready"),
                m.counted()
            )),
            self.log_tail()
        );
    }

    fn terminate(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                assert!(
                    status.success(),
                    "run exited with {status} on SIGTERM; log:\n{}",
                    self.log_tail()
                );
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        panic!(
            "run did not stop within 60 s of SIGTERM; log:\n{}",
            self.log_tail()
        );
    }

    fn kill9(mut self) -> Instance {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn line_bytes(record: &serde_json::Value) -> Vec<u8> {
    record["line"]
        .as_str()
        .map(|s| s.as_bytes().to_vec())
        .unwrap_or_default()
}

#[test]
fn live_metrics_equal_replay_and_the_dlq_holds_every_rejection() {
    let setup = Setup::new("e2e", 4);
    let ledger = setup.generate(&[
        "--customers",
        "300",
        "--days",
        "20",
        "--seed",
        "11",
        "--bad-share",
        "0.02",
        "--duplicate-share",
        "0.02",
    ]);
    let lines = std::fs::read_to_string(&ledger)
        .expect("the ledger")
        .lines()
        .count() as u64;
    let (expected_text, rejected) = setup.replay(&ledger);
    let expected = Metrics::parse(&expected_text);
    assert!(!rejected.is_empty(), "the ledger has bad lines");

    let mut producer = setup.produce(&ledger, None);
    let mut instance = Instance::start(&setup, "a");
    assert!(
        producer.wait().expect("the producer ends").success(),
        "produce failed"
    );
    let metrics = instance.wait_for("every message", Duration::from_secs(180), |m| {
        m.value("marginstream_ready") == 1.0 && m.counted() == lines
    });
    assert_same(
        "gauges of /metrics against replay",
        &expected.gauges(),
        &metrics.gauges(),
    );
    assert_eq!(
        expected.outcomes(),
        metrics.outcomes(),
        "applied+late and duplicate counts"
    );
    assert_eq!(
        expected
            .series
            .get("marginstream_watermark_timestamp_seconds"),
        metrics
            .series
            .get("marginstream_watermark_timestamp_seconds")
    );

    // The DLQ holds exactly the rejected messages, unchanged, with their reasons.
    let _ = instance.wait_for("dead letters acknowledged", Duration::from_secs(60), |m| {
        m.value("marginstream_dlq_messages_total") as usize == rejected.len()
    });
    let letters = read_topic(
        &setup.broker.brokers,
        &setup.dlq,
        1,
        Duration::from_secs(60),
    );
    let mut expected_letters: Vec<(Vec<u8>, String)> = rejected
        .iter()
        .map(|r| {
            (
                line_bytes(r),
                r["reason"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let mut actual_letters: Vec<(Vec<u8>, String)> = letters
        .iter()
        .map(|letter| {
            let headers = &letter.headers;
            for key in [
                "marginstream.error",
                "marginstream.source.topic",
                "marginstream.source.partition",
                "marginstream.source.offset",
            ] {
                assert!(
                    headers.contains_key(key),
                    "a dead letter lacks the header {key}"
                );
            }
            assert_eq!(headers["marginstream.source.topic"], setup.topic);
            (
                letter.payload.clone(),
                headers
                    .get("marginstream.reason")
                    .cloned()
                    .unwrap_or_default(),
            )
        })
        .collect();
    expected_letters.sort();
    actual_letters.sort();
    assert_eq!(
        expected_letters.len(),
        actual_letters.len(),
        "dead letters: one per rejected line"
    );
    assert!(
        expected_letters == actual_letters,
        "the dead letters are the rejected lines with their reasons"
    );
    instance.terminate();

    // replay --from-kafka reads the topic itself: the same gauges as the file, and with
    // --since/--until the same as the file's replay over that range.
    for range in [
        vec![],
        vec![
            "--since",
            "2025-12-20T00:00:00Z",
            "--until",
            "2025-12-27T12:00:00Z",
        ],
    ] {
        let config = setup.config("replay", "127.0.0.1:0");
        let run = |source: &[&str]| -> Metrics {
            let output = Command::new(binary())
                .args(["replay", "--progress", "never", "--rejected-out"])
                .arg(setup.path("kafka-rejected.jsonl"))
                .arg("--config")
                .arg(&config)
                .args(source)
                .args(&range)
                .output()
                .expect("the binary runs");
            assert!(
                output.status.success(),
                "replay {source:?} failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            Metrics::parse(&String::from_utf8_lossy(&output.stdout))
        };
        let from_file = run(&["--input", ledger.to_str().expect("a UTF-8 path")]);
        let from_kafka = run(&["--from-kafka"]);
        assert_same(
            &format!("replay --from-kafka {range:?} against the file"),
            &from_file.gauges(),
            &from_kafka.gauges(),
        );
        assert_eq!(from_file.outcomes(), from_kafka.outcomes());
    }
}

#[test]
fn kill_9_at_random_moments_neither_loses_nor_double_counts() {
    let setup = Setup::new("crash", 4);
    let ledger = setup.generate(&[
        "--customers",
        "400",
        "--days",
        "60",
        "--seed",
        "5",
        "--bad-share",
        "0.01",
        "--duplicate-share",
        "0.02",
    ]);
    let lines = std::fs::read_to_string(&ledger)
        .expect("the ledger")
        .lines()
        .count() as u64;
    assert!(
        lines >= 100_000,
        "the crash test streams 100k+ events, got {lines}"
    );
    let (expected_text, _) = setup.replay(&ledger);
    let expected = Metrics::parse(&expected_text);

    // Stream for about 25 s while the process is killed again and again.
    let mut producer = setup.produce(&ledger, Some(lines / 25));
    let mut instance = Instance::start(&setup, "crashy");
    // A small deterministic generator of kill delays (0.5 to 4 s).
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut kills = 0;
    while kills < 10 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let delay = Duration::from_millis(500 + state % 3_500);
        std::thread::sleep(delay);
        instance = instance.kill9().restart();
        kills += 1;
    }
    assert!(
        producer.wait().expect("the producer ends").success(),
        "produce failed"
    );
    let metrics = instance.wait_for(
        "every message after 10 kills",
        Duration::from_secs(300),
        |m| m.value("marginstream_ready") == 1.0 && m.counted() == lines,
    );
    assert_same(
        "gauges after 10 kill -9s against replay",
        &expected.gauges(),
        &metrics.gauges(),
    );
    // The kills did hit a process with state: most restarts restored one, from the
    // checkpoint or (partitions it did not hold) from the state topic.
    let log = std::fs::read_to_string(&instance.log).unwrap_or_default();
    let restores = log
        .split("serving /metrics")
        .skip(2)
        .filter(|start| {
            start.contains("restored the checkpoint")
                || start.contains("restored the partition from the state topic")
        })
        .count();
    assert!(
        restores >= 5,
        "only {restores} of 10 restarts restored a checkpoint or a snapshot"
    );
    assert_eq!(
        expected.outcomes(),
        metrics.outcomes(),
        "applied+late and duplicate counts"
    );
    instance.terminate();
}

fn add_decimal(into: &mut BTreeMap<String, Decimal>, key: &str, value: &str) {
    let v: Decimal = value.parse().expect("an exact decimal sample");
    *into.entry(key.to_owned()).or_default() += v;
}

#[test]
fn two_instances_share_the_customers_and_the_survivor_takes_over() {
    scale_out(Setup::new("scale", 4));
}

#[test]
fn scale_out_with_the_cooperative_protocol() {
    let mut setup = Setup::new("cooperative", 4);
    setup.strategy = Some("cooperative-sticky");
    scale_out(setup);
}

/// Two instances in one group, then one of them stopped gracefully: the union of both, and
/// later the survivor alone, equal the replay on the lifetime window.
fn scale_out(setup: Setup) {
    let ledger = setup.generate(&[
        "--customers",
        "200",
        "--days",
        "15",
        "--seed",
        "21",
        "--bad-share",
        "0.01",
        "--duplicate-share",
        "0.01",
    ]);
    let lines = std::fs::read_to_string(&ledger)
        .expect("the ledger")
        .lines()
        .count() as u64;
    let (expected_text, _) = setup.replay(&ledger);
    let expected = Metrics::parse(&expected_text);
    let customers_all = |m: &Metrics| -> BTreeMap<String, String> {
        m.window("all")
            .into_iter()
            .filter(|(k, _)| k.contains("customer_id=") && !k.contains("_ratio"))
            .collect()
    };

    let mut producer = setup.produce(&ledger, None);
    assert!(
        producer.wait().expect("the producer ends").success(),
        "produce failed"
    );
    let mut a = Instance::start(&setup, "a");
    let _ = a.wait_for("instance a alone", Duration::from_secs(120), |m| {
        m.value("marginstream_ready") == 1.0 && m.counted() == lines
    });
    let b = Instance::start(&setup, "b");
    // Both ready, each with some partitions, together every message once.
    let deadline = Instant::now() + Duration::from_secs(180);
    let (ma, mb) = loop {
        assert!(
            Instant::now() < deadline,
            "the two instances did not settle; a:\n{}\nb:\n{}",
            a.log_tail(),
            b.log_tail()
        );
        std::thread::sleep(Duration::from_millis(500));
        let (Some(ma), Some(mb)) = (a.metrics(), b.metrics()) else {
            continue;
        };
        let settled = ma.value("marginstream_ready") == 1.0
            && mb.value("marginstream_ready") == 1.0
            && ma.value("marginstream_partitions_assigned") >= 1.0
            && mb.value("marginstream_partitions_assigned") >= 1.0
            && ma.value("marginstream_partitions_assigned")
                + mb.value("marginstream_partitions_assigned")
                == 4.0
            && ma.counted() + mb.counted() == lines;
        if settled {
            break (ma, mb);
        }
    };
    // The union of customers: every customer exactly once, equal to replay on `all`.
    let mut union = customers_all(&ma);
    for (k, v) in customers_all(&mb) {
        assert!(
            union.insert(k.clone(), v).is_none(),
            "{k} is exposed by both instances"
        );
    }
    assert_same(
        "union of both instances on `all`",
        &customers_all(&expected),
        &union,
    );
    // Portfolio sums add up across instances.
    let mut sums = BTreeMap::new();
    for m in [&ma, &mb] {
        for (k, v) in m.window("all") {
            if k.starts_with("marginstream_portfolio_revenue")
                || k.starts_with("marginstream_portfolio_cost")
            {
                add_decimal(&mut sums, &k, &v);
            }
        }
    }
    for (k, v) in sums {
        let want: Decimal = expected.series[&k].parse().expect("a decimal");
        assert_eq!(want, v, "{k}: the sum across instances equals the replay");
    }

    // b leaves gracefully: a takes its partitions over, rebuilds them and shows everyone.
    b.terminate();
    let survivor = a.wait_for("the survivor alone", Duration::from_secs(180), |m| {
        m.value("marginstream_ready") == 1.0
            && m.value("marginstream_partitions_assigned") == 4.0
            && m.counted() == lines
    });
    assert_same(
        "the survivor on `all`",
        &customers_all(&expected),
        &customers_all(&survivor),
    );
    a.terminate();
}

/// Percent-encodes `text` as one path segment (every byte but unreserved ASCII).
fn encode_segment(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The order of contract section 9 over replay's customer objects: by `key` in `window`
/// (descending or ascending), customers whose ratio is absent last, then by id ascending.
fn expected_order(
    customers: &BTreeMap<String, serde_json::Value>,
    window: &str,
    key: &str,
    descending: bool,
) -> Vec<String> {
    let value = |customer: &serde_json::Value| -> Option<Decimal> {
        let figures = &customer["windows"][window];
        let text = if key == "revenue" {
            figures["revenue"].as_str()
        } else {
            figures[key].as_str()
        };
        text.map(|t| t.parse().expect("a decimal string"))
    };
    let mut ids: Vec<&String> = customers.keys().collect();
    if key == "customer_id" {
        if descending {
            ids.reverse();
        }
        return ids.into_iter().cloned().collect();
    }
    ids.sort_by(|a, b| {
        let (x, y) = (value(&customers[*a]), value(&customers[*b]));
        let by_key = match (x, y) {
            (Some(x), Some(y)) if descending => y.cmp(&x),
            (Some(x), Some(y)) => x.cmp(&y),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => std::cmp::Ordering::Equal,
        };
        by_key.then_with(|| a.cmp(b))
    });
    ids.into_iter().cloned().collect()
}

/// The query API end to end (contract section 9, issue 9): against `run` on the local
/// broker, walking every page for each sort key and order yields every held customer exactly
/// once, in the contract's order, each equal to its object in `replay --format json` of the
/// same ledger (plus `segment` and `exposed`); a segment's pages hold exactly its customers;
/// ids with quotes, slashes, percent signs and non-ASCII are found percent-encoded; an id not
/// held is 404; every bad parameter is a 400 naming it; the portfolio equals replay's.
#[test]
fn the_query_api_answers_for_every_customer() {
    let setup = Setup::new("api", 4);
    let ledger = setup.generate(&[
        "--customers",
        "150",
        "--days",
        "20",
        "--seed",
        "3",
        "--bad-share",
        "0.01",
        "--duplicate-share",
        "0.01",
    ]);
    // Ids a URL must encode, and one customer with no revenue (its ratios are absent).
    let mut text = std::fs::read_to_string(&ledger).expect("the ledger");
    for (n, id) in ["a/b", "50%/x", "q?x=1#y", "spa ce", "ünï/cödé \"q\""]
        .iter()
        .enumerate()
    {
        let id = serde_json::Value::String((*id).to_owned()).to_string();
        text.push_str(&format!(
            "{{\"event_type\":\"Revenue_Event\",\"event_id\":\"api-r{n}\",\"customer_id\":{id},\"occurred_at\":\"2025-12-31T10:00:00Z\",\"amount\":\"{}.25\",\"currency\":\"USD\"}}\n",
            100 + n
        ));
    }
    text.push_str("{\"event_type\":\"Cost_Event\",\"event_id\":\"api-c0\",\"customer_id\":\"cost-only\",\"occurred_at\":\"2025-12-31T10:00:00Z\",\"amount\":\"3\",\"currency\":\"USD\",\"cost_function\":\"Support\"}\n");
    std::fs::write(&ledger, &text).expect("the ledger is written");
    let lines = text.lines().count() as u64;

    // replay --format json: the reference objects.
    let config = setup.config("replay", "127.0.0.1:0");
    let output = Command::new(binary())
        .args([
            "replay",
            "--progress",
            "never",
            "--format",
            "json",
            "--config",
        ])
        .arg(&config)
        .arg("--input")
        .arg(&ledger)
        .arg("--rejected-out")
        .arg(setup.path("api-rejected.jsonl"))
        .output()
        .expect("the binary runs");
    assert!(output.status.success(), "replay failed");
    let mut replay: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("replay's JSON");
    let customers: BTreeMap<String, serde_json::Value> = replay["customers"]
        .as_array()
        .expect("a customer list")
        .iter()
        .map(|c| {
            (
                c["customer_id"].as_str().expect("an id").to_owned(),
                c.clone(),
            )
        })
        .collect();
    replay
        .as_object_mut()
        .expect("an object")
        .remove("customers");
    assert!(
        customers.len() > 150,
        "the generated and the added customers"
    );

    let mut producer = setup.produce(&ledger, None);
    let mut instance = Instance::start(&setup, "api");
    assert!(producer.wait().expect("the producer ends").success());
    let _ = instance.wait_for("every message", Duration::from_secs(180), |m| {
        m.value("marginstream_ready") == 1.0 && m.counted() == lines
    });
    let get_json = |path: &str| -> (u16, serde_json::Value) {
        let (code, body) = instance
            .get(path)
            .unwrap_or_else(|| panic!("GET {path} answers"));
        let value = serde_json::from_str(&body)
            .unwrap_or_else(|error| panic!("GET {path}: not JSON ({error}): {body}"));
        (code, value)
    };

    // The portfolio: replay's top level without the customers.
    let (code, portfolio) = get_json("/api/v1/portfolio");
    assert_eq!(code, 200);
    assert_eq!(portfolio, replay, "/api/v1/portfolio against replay");
    let tiers: Vec<String> = portfolio["segments"]
        .as_array()
        .expect("the default tiers")
        .iter()
        .map(|s| s["segment"].as_str().expect("a name").to_owned())
        .collect();
    assert_eq!(tiers, ["self_serve", "smb", "mid_market", "enterprise"]);

    // Every page of every order: each customer once, in order, equal to replay.
    let mut segments: BTreeMap<String, String> = BTreeMap::new();
    for key in [
        "revenue",
        "gm_market_ratio",
        "gm_operating_ratio",
        "services_drag_ratio",
        "customer_id",
    ] {
        for order in ["desc", "asc"] {
            let mut seen = Vec::new();
            let mut cursor: Option<String> = None;
            loop {
                let mut path =
                    format!("/api/v1/customers?window=30d&sort={key}&order={order}&limit=37");
                if let Some(cursor) = &cursor {
                    path.push_str(&format!("&cursor={cursor}"));
                }
                let (code, page) = get_json(&path);
                assert_eq!(code, 200, "{path}: {page}");
                assert_eq!(page["window"], "30d");
                assert_eq!(page["watermark_seconds"], replay["watermark_seconds"]);
                for customer in page["customers"].as_array().expect("a list") {
                    let id = customer["customer_id"].as_str().expect("an id").to_owned();
                    let mut object = customer.clone();
                    let fields = object.as_object_mut().expect("an object");
                    let segment = fields.remove("segment").expect("a segment field");
                    assert_eq!(
                        fields.remove("exposed"),
                        Some(serde_json::Value::Bool(true))
                    );
                    assert_eq!(&object, &customers[&id], "{id}: against replay");
                    segments.insert(id.clone(), segment.as_str().expect("a tier").to_owned());
                    seen.push(id);
                }
                match &page["next_cursor"] {
                    serde_json::Value::String(next) => cursor = Some(next.clone()),
                    _ => break,
                }
            }
            let expected = expected_order(&customers, "30d", key, order == "desc");
            assert_eq!(
                seen.len(),
                expected.len(),
                "sort={key} order={order}: every customer once"
            );
            assert_eq!(
                seen, expected,
                "sort={key} order={order}: the contract's order"
            );
        }
    }
    // A segment's pages hold exactly its customers.
    for tier in &tiers {
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut path = format!("/api/v1/customers?segment={tier}&limit=1000");
            if let Some(cursor) = &cursor {
                path.push_str(&format!("&cursor={cursor}"));
            }
            let (code, page) = get_json(&path);
            assert_eq!(code, 200, "{path}");
            seen.extend(
                page["customers"]
                    .as_array()
                    .expect("a list")
                    .iter()
                    .map(|c| c["customer_id"].as_str().expect("an id").to_owned()),
            );
            match &page["next_cursor"] {
                serde_json::Value::String(next) => cursor = Some(next.clone()),
                _ => break,
            }
        }
        seen.sort();
        let expected: Vec<String> = segments
            .iter()
            .filter(|(_, t)| *t == tier)
            .map(|(id, _)| id.clone())
            .collect();
        assert_eq!(seen, expected, "segment={tier}");
    }

    // One customer, ids percent-encoded as one path segment.
    for id in [
        "a/b",
        "50%/x",
        "q?x=1#y",
        "spa ce",
        "ünï/cödé \"q\"",
        "acme \"beta\"",
        "north\\east",
        "müller-gmbh",
        "cost-only",
    ] {
        let (code, customer) = get_json(&format!("/api/v1/customers/{}", encode_segment(id)));
        assert_eq!(code, 200, "{id}: {customer}");
        assert_eq!(customer["customer_id"], id);
        assert_eq!(customer["windows"], customers[id]["windows"], "{id}");
    }
    let (code, missing) = get_json("/api/v1/customers/nobody%20here");
    assert_eq!(code, 404);
    assert!(
        missing["error"]
            .as_str()
            .is_some_and(|e| e.contains("nobody here")),
        "{missing}"
    );

    // Every bad parameter: 400 naming it.
    let (_, first) = get_json("/api/v1/customers?limit=1");
    let other_cursor = first["next_cursor"]
        .as_str()
        .expect("more than one customer")
        .to_owned();
    for (query, parameter) in [
        ("window=90d".to_owned(), "window"),
        ("sort=margin".to_owned(), "sort"),
        ("order=sideways".to_owned(), "order"),
        ("limit=0".to_owned(), "limit"),
        ("limit=1001".to_owned(), "limit"),
        ("limit=ten".to_owned(), "limit"),
        ("segment=whales".to_owned(), "segment"),
        ("cursor=not-a-cursor".to_owned(), "cursor"),
        (format!("sort=customer_id&cursor={other_cursor}"), "cursor"),
        ("colour=blue".to_owned(), "colour"),
        ("limit=5&limit=6".to_owned(), "limit"),
    ] {
        let (code, answer) = get_json(&format!("/api/v1/customers?{query}"));
        assert_eq!(code, 400, "{query}: {answer}");
        assert_eq!(answer["parameter"], parameter, "{query}: {answer}");
        assert!(
            answer["error"]
                .as_str()
                .is_some_and(|e| e.starts_with(parameter)),
            "{query}: {answer}"
        );
    }
    instance.terminate();
}

/// `produce` reads what `replay` reads (issue 15): a ledger split into a gzip file and a
/// zstd file, given as two `--input`s, reaches the topic as exactly its lines, each once.
#[test]
fn produce_reads_compressed_files_in_order() {
    let setup = Setup::new("produce-compressed", 2);
    let ledger = setup.generate(&["--customers", "20", "--days", "5", "--seed", "15"]);
    let text = std::fs::read(&ledger).expect("the ledger");
    let lines: Vec<&[u8]> = text
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    let half = lines.len() / 2;
    let join = |part: &[&[u8]]| -> Vec<u8> {
        part.iter()
            .flat_map(|line| [*line, b"\n"].concat())
            .collect()
    };
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gzip.write_all(&join(&lines[..half]))
        .expect("gzip into memory");
    let first = setup.path("first.jsonl.gz");
    std::fs::write(&first, gzip.finish().expect("gzip into memory")).expect("written");
    let second = setup.path("second.jsonl.zst");
    let packed = zstd::encode_all(&join(&lines[half..])[..], 3).expect("zstd into memory");
    std::fs::write(&second, packed).expect("written");

    let output = Command::new(binary())
        .args(["produce", "--config"])
        .arg(setup.config("producer", "127.0.0.1:0"))
        .arg("--input")
        .arg(&first)
        .arg("--input")
        .arg(&second)
        .output()
        .expect("the binary runs");
    assert!(
        output.status.success(),
        "produce failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut produced: Vec<Vec<u8>> = read_topic(
        &setup.broker.brokers,
        &setup.topic,
        2,
        Duration::from_secs(60),
    )
    .into_iter()
    .map(|message| message.payload)
    .collect();
    let mut expected: Vec<Vec<u8>> = lines.iter().map(|line| line.to_vec()).collect();
    assert!(expected.len() > 100, "{} lines", expected.len());
    produced.sort();
    expected.sort();
    assert!(
        produced == expected,
        "the topic holds the ledger's lines, each once: {} messages for {} lines",
        produced.len(),
        expected.len()
    );
}
