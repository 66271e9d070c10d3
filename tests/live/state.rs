//! State that moves with its partition (issue 10, contract section 10) and restatement under
//! new rules (issue 11, contract section 11), on the local Tansu broker: a partition
//! restored from the state topic by an instance with an empty `state.dir`, scaling 1 → 3 → 1
//! with fresh state directories and kill -9s, a kill -9 with the shipped session timeout,
//! and a restart under other tagging rules or rates. Every end state is compared with
//! `replay` of the whole ledger.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use marginstream_tests::binary;
use marginstream_tests::exposition::{assert_same, Metrics};

use super::{free_port, Instance, Setup};

/// Replays `ledger` under the configuration `config`: the expected exposition.
fn replay_under(setup: &Setup, config: &Path, ledger: &Path) -> Metrics {
    let output = Command::new(binary())
        .args(["replay", "--progress", "never", "--config"])
        .arg(config)
        .arg("--input")
        .arg(ledger)
        .arg("--rejected-out")
        .arg(setup.path("state-replay-rejected.jsonl"))
        .output()
        .expect("the binary runs");
    assert!(
        output.status.success(),
        "replay failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Metrics::parse(&String::from_utf8(output.stdout).expect("the exposition is UTF-8"))
}

/// The ledger's lines.
fn lines_of(ledger: &Path) -> Vec<String> {
    std::fs::read_to_string(ledger)
        .expect("the ledger")
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Writes `lines` to `name` in the test's directory.
fn write_lines(setup: &Setup, name: &str, lines: &[String]) -> PathBuf {
    let path = setup.path(name);
    let mut text = lines.join("\n");
    text.push('\n');
    std::fs::write(&path, text).expect("the ledger part is written");
    path
}

/// Produces `ledger` and waits for the producer.
fn produce_all(setup: &Setup, ledger: &Path) {
    let mut producer = setup.produce(ledger, None);
    assert!(
        producer.wait().expect("the producer ends").success(),
        "produce failed"
    );
}

/// The per-customer series of window `all`, ratios aside (they follow from the sums).
fn customers_all(m: &Metrics) -> BTreeMap<String, String> {
    m.window("all")
        .into_iter()
        .filter(|(k, _)| k.contains("customer_id=") && !k.contains("_ratio"))
        .collect()
}

/// Asserts that the whole exposition of one instance equals the replay's.
fn assert_equals_replay(context: &str, expected: &Metrics, actual: &Metrics) {
    assert_same(context, &expected.gauges(), &actual.gauges());
    assert_eq!(
        expected.outcomes(),
        actual.outcomes(),
        "{context}: applied+late and duplicate counts"
    );
}

/// Checks the state topic `run` created on the local broker: compacted, and holding at most
/// the newest two snapshots of each partition once tombstones are applied (older ones are
/// retired; Tansu does not compact, so their records and the tombstones are still there).
fn assert_state_topic_is_compacted_and_retired(setup: &Setup) {
    let config = marginstream::config::load(
        Some(&setup.config("check", "127.0.0.1:0")),
        Vec::<(String, String)>::new(),
        &[],
    )
    .expect("the test configuration is valid");
    let settings = config.kafka_settings();
    let topic = config.state_topic.clone().expect("the state topic is on");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let policy = runtime
        .block_on(marginstream_consumer::state::topic_config(
            &settings,
            &topic,
            "cleanup.policy",
        ))
        .expect("the broker describes the state topic");
    assert_eq!(
        policy.as_deref(),
        Some("compact"),
        "the state topic is compacted"
    );
    let records = marginstream_consumer::state::read_state_partitions(
        &settings,
        &topic,
        &[0, 1, 2, 3],
        Duration::from_secs(60),
    )
    .expect("the state topic is read");
    let engine = marginstream::state_topic::engine_text(&config.live_settings().engine);
    let rules = config.fingerprint.text().to_owned();
    let expected = marginstream::state_topic::Expected {
        topic: &config.kafka.topic,
        group: &config.kafka.group_id,
        engine: &engine,
        rules: &rules,
    };
    for partition in 0..4 {
        let mut scan = marginstream::state_topic::Scan::new(
            &config.kafka.group_id,
            marginstream_consumer::Partition(partition),
            false,
        );
        let mut written = std::collections::BTreeSet::new();
        for record in records.iter().filter(|r| r.partition == partition) {
            if let Some((_, snapshot, marginstream::state_topic::Kind::Manifest)) =
                marginstream::state_topic::parse_key(&record.key, &config.kafka.group_id)
            {
                if record.value.is_some() {
                    written.insert(snapshot);
                }
            }
            scan.feed(&record.key, record.value.as_deref(), record.offset);
        }
        let live = scan.live(&expected);
        eprintln!(
            "state partition {partition}: {} snapshots written, {} live",
            written.len(),
            live.len()
        );
        assert!(
            !live.is_empty() && live.len() <= 2 && live.iter().all(|l| l.usable),
            "partition {partition}: the newest one or two complete snapshots are kept, the rest retired: {live:?}"
        );
    }
}

/// An instance on `name`'s configuration (fresh state directory `name-state`).
fn start(setup: &Setup, name: &str) -> Instance {
    Instance::start(setup, name)
}

/// Issue 10: instance A consumes and checkpoints, then stops for good; instance B, with an
/// empty `state.dir`, restores every partition from the state topic (the metric says so),
/// reads only the tail produced since, and its gauges equal `replay` of the whole ledger.
#[test]
fn an_instance_without_local_state_restores_from_the_state_topic() {
    let setup = Setup::new("restore", 4);
    let ledger = setup.generate(&[
        "--customers",
        "300",
        "--days",
        "20",
        "--seed",
        "31",
        "--bad-share",
        "0.01",
        "--duplicate-share",
        "0.02",
    ]);
    let all = lines_of(&ledger);
    let (head, tail) = all.split_at(all.len() * 2 / 3);
    let tail_path = write_lines(&setup, "tail.jsonl", tail);
    let expected = replay_under(&setup, &setup.config("replay", "127.0.0.1:0"), &ledger);

    // The head in three parts, each read and snapshotted before the next: every partition
    // gets at least three snapshots, of which the writer keeps the newest two.
    let mut a = start(&setup, "a");
    let third = head.len() / 3;
    for (part, end) in [(1, third), (2, 2 * third), (3, head.len())] {
        let path = write_lines(
            &setup,
            &format!("head-{part}.jsonl"),
            &head[third * (part - 1)..end],
        );
        produce_all(&setup, &path);
        let published = a.metrics().map_or(0.0, |m| {
            m.value("marginstream_state_snapshots_published_total")
        });
        let _ = a.wait_for("instance a on the head", Duration::from_secs(180), |m| {
            m.value("marginstream_ready") == 1.0
                && m.counted() == end as u64
                && m.value("marginstream_state_snapshots_published_total") >= published + 4.0
        });
    }
    // A graceful stop publishes the final snapshot of every partition.
    a.terminate();
    assert_state_topic_is_compacted_and_retired(&setup);

    produce_all(&setup, &tail_path);
    let mut b = start(&setup, "b");
    let metrics = b.wait_for(
        "instance b on the whole ledger",
        Duration::from_secs(180),
        |m| m.value("marginstream_ready") == 1.0 && m.counted() == all.len() as u64,
    );
    assert_eq!(
        metrics.value("marginstream_partition_restores_total{source=\"state_topic\"}"),
        4.0,
        "every partition restored from the state topic"
    );
    assert_eq!(
        metrics.value("marginstream_partition_restores_total{source=\"rebuild\"}"),
        0.0
    );
    assert_eq!(
        metrics.value("marginstream_consumed_messages_total"),
        tail.len() as f64,
        "instance b reads only the tail"
    );
    assert_equals_replay(
        "instance b against replay of the whole ledger",
        &expected,
        &metrics,
    );
    let log = std::fs::read_to_string(&b.log).unwrap_or_default();
    assert_eq!(
        log.matches("restored the partition from the state topic")
            .count(),
        4,
        "the log says where each partition came from"
    );
    b.terminate();
}

/// Issue 10: scale 1 → 3 → 1 while the ledger streams in, every new instance on a fresh state
/// directory, with kill -9s mixed in. With three instances, every customer is exposed by
/// exactly one of them and their union equals the replay on `all`; at the end one new
/// instance alone restores every partition from the state topic and every gauge equals the
/// replay.
#[test]
fn scale_1_3_1_with_fresh_state_and_kill_9s() {
    let setup = Setup::new("scale131", 4);
    let ledger = setup.generate(&[
        "--customers",
        "200",
        "--days",
        "30",
        "--seed",
        "41",
        "--bad-share",
        "0.01",
        "--duplicate-share",
        "0.02",
    ]);
    let lines = lines_of(&ledger).len() as u64;
    let expected = replay_under(&setup, &setup.config("replay", "127.0.0.1:0"), &ledger);
    // Streams for about 20 s.
    let mut producer = setup.produce(&ledger, Some(lines / 20));

    let mut a = start(&setup, "a1");
    let _ = a.wait_for("instance a consuming", Duration::from_secs(60), |m| {
        m.value("marginstream_consumed_messages_total") > 0.0
    });
    let b = start(&setup, "b1");
    let c = start(&setup, "c1");
    // A kill -9 while three members share the partitions; its successor starts empty.
    std::thread::sleep(Duration::from_secs(4));
    let b = b.kill9();
    drop(b);
    let b = start(&setup, "b2");
    assert!(
        producer.wait().expect("the producer ends").success(),
        "produce failed"
    );
    let mut trio = [a, b, c];
    let deadline = Instant::now() + Duration::from_secs(240);
    let snapshots = loop {
        assert!(
            Instant::now() < deadline,
            "three instances did not settle on the whole ledger; logs:\n{}",
            trio.iter()
                .map(Instance::log_tail)
                .collect::<Vec<_>>()
                .join("\n----\n")
        );
        std::thread::sleep(Duration::from_millis(500));
        let snapshots: Vec<Metrics> = trio.iter().filter_map(Instance::metrics).collect();
        if snapshots.len() < 3 {
            continue;
        }
        let settled = snapshots.iter().all(|m| {
            m.value("marginstream_ready") == 1.0
                && m.value("marginstream_partitions_assigned") >= 1.0
        }) && snapshots
            .iter()
            .map(|m| m.value("marginstream_partitions_assigned"))
            .sum::<f64>()
            == 4.0
            && snapshots.iter().map(Metrics::counted).sum::<u64>() == lines;
        if settled {
            break snapshots;
        }
    };
    let mut union = BTreeMap::new();
    for m in &snapshots {
        for (k, v) in customers_all(m) {
            assert!(
                union.insert(k.clone(), v).is_none(),
                "{k} is exposed by two instances"
            );
        }
    }
    assert_same(
        "the union of three instances on `all`",
        &customers_all(&expected),
        &union,
    );
    // Every partition has a snapshot in the state topic (the one about to be killed is
    // restored from its last one, then read from there).
    for instance in &mut trio {
        let _ = instance.wait_for("a snapshot published", Duration::from_secs(30), |m| {
            m.value("marginstream_state_snapshots_published_total") >= 1.0
                || m.value("marginstream_partition_restores_total{source=\"state_topic\"}")
                    >= m.value("marginstream_partitions_assigned")
        });
    }

    // Down to one: a kill -9, two graceful stops, and a new instance on a fresh directory.
    let [a, b, c] = trio;
    drop(a.kill9());
    b.terminate();
    c.terminate();
    let mut last = start(&setup, "d1");
    let metrics = last.wait_for("the last instance alone", Duration::from_secs(180), |m| {
        m.value("marginstream_ready") == 1.0
            && m.value("marginstream_partitions_assigned") == 4.0
            && m.counted() == lines
    });
    assert_equals_replay(
        "one instance after 1 -> 3 -> 1 against replay",
        &expected,
        &metrics,
    );
    assert_eq!(
        metrics.value("marginstream_partition_restores_total{source=\"state_topic\"}"),
        4.0,
        "the last instance restored every partition from the state topic"
    );
    last.terminate();
}

/// Issue 10: a kill -9 during consumption with the shipped defaults (no `session.timeout.ms`
/// of the tests' own): the time from the kill to the new process consuming again is printed
/// (a benchmark figure, not an assertion: `scripts/bench-state.sh` reports it), and the end
/// state equals the replay.
#[test]
fn kill_9_with_the_shipped_defaults_resumes() {
    let mut setup = Setup::new("failover", 4);
    setup.session_timeout_ms = None;
    let ledger = setup.generate(&["--customers", "200", "--days", "40", "--seed", "51"]);
    let lines = lines_of(&ledger).len() as u64;
    let expected = replay_under(&setup, &setup.config("replay", "127.0.0.1:0"), &ledger);
    // About 60 s of stream: the restarted process has something to consume.
    let mut producer = setup.produce(&ledger, Some(lines / 60));
    let mut first = start(&setup, "crash");
    let _ = first.wait_for(
        "the first process consuming",
        Duration::from_secs(60),
        |m| {
            m.value("marginstream_consumed_messages_total") > 0.0
                && m.value("marginstream_checkpoints_total") >= 1.0
        },
    );
    let killed_at = Instant::now();
    let mut second = first.kill9().restart();
    let _ = second.wait_for(
        "the restarted process consuming",
        Duration::from_secs(120),
        |m| m.value("marginstream_consumed_messages_total") > 0.0,
    );
    let seconds = killed_at.elapsed().as_secs_f64();
    eprintln!("kill -9 to consuming again with the shipped session timeout: {seconds:.1} s");
    assert!(
        producer.wait().expect("the producer ends").success(),
        "produce failed"
    );
    let metrics = second.wait_for("every message", Duration::from_secs(180), |m| {
        m.value("marginstream_ready") == 1.0 && m.counted() == lines
    });
    assert_equals_replay("after a kill -9 against replay", &expected, &metrics);
    second.terminate();
}

/// Revenue and costs in EUR, so that a change of `ledger.fx.EUR` changes figures, and costs
/// tagged `training`, which rules B move from Onboarding to Excluded.
fn extra_lines() -> Vec<String> {
    let mut lines = Vec::new();
    for n in 0..40 {
        let customer = format!("eu-{}", n % 8);
        lines.push(format!(
            r#"{{"event_type":"Revenue_Event","event_id":"eu-r{n}","customer_id":"{customer}","occurred_at":"2025-12-{:02}T10:00:00Z","amount":"{}.50","currency":"EUR"}}"#,
            1 + n % 28,
            900 + n
        ));
        lines.push(format!(
            r#"{{"event_type":"Cost_Event","event_id":"eu-c{n}","customer_id":"{customer}","occurred_at":"2025-12-{:02}T11:00:00Z","amount":"{}.25","currency":"EUR","category":"training"}}"#,
            1 + n % 28,
            40 + n
        ));
    }
    lines
}

/// The `[ledger]` keys and tail of rules A (the defaults, EUR at 1.08) or B ("training"
/// moved to Excluded), and a rate.
fn rules(moved: bool, eur: &str, on_change: &str) -> (String, String) {
    let ledger = format!("on_rules_change = \"{on_change}\"\n[ledger.fx]\nEUR = \"{eur}\"\n");
    let tail = if moved {
        "[tagging]\ninclude_default_rules = true\n[[tagging.rules]]\nfunction = \"Excluded\"\ncategories = [\"training\"]\n".to_owned()
    } else {
        String::new()
    };
    (ledger, tail)
}

/// Runs `marginstream run` on `config` expecting it to exit by itself within 60 s; returns
/// its exit code and standard error.
fn run_to_exit(config: &Path) -> (Option<i32>, String) {
    let mut child = Command::new(binary())
        .args(["run", "--config"])
        .arg(config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("marginstream run starts");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            let mut stderr = String::new();
            if let Some(mut pipe) = child.stderr.take() {
                use std::io::Read;
                let _ = pipe.read_to_string(&mut stderr);
            }
            return (status.code(), stderr);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("run on {} did not exit within 60 s", config.display());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Issue 11: `run` under rules A, stopped, restarted under rules B: every gauge equals
/// `replay` under B, never a mix. With `ledger.on_rules_change = "refuse"` it exits 2 naming
/// the change, for a rules change and for an FX change alike, from the checkpoint and from
/// the state topic; an unrelated change (listen address, log level) restates nothing.
#[test]
fn a_rules_or_rates_change_restates_or_refuses() {
    let setup = Setup::new("restate", 4);
    let ledger = setup.generate(&[
        "--customers",
        "150",
        "--days",
        "20",
        "--seed",
        "61",
        "--bad-share",
        "0.01",
    ]);
    let mut all = lines_of(&ledger);
    all.extend(extra_lines());
    let ledger = write_lines(&setup, "ledger-eur.jsonl", &all);
    let lines = all.len() as u64;
    let config_of = |name: &str, listen: &str, moved: bool, eur: &str, on_change: &str| {
        let (ledger_keys, tail) = rules(moved, eur, on_change);
        setup.config_with(name, listen, &ledger_keys, &tail)
    };
    let expected_a = replay_under(
        &setup,
        &config_of("replay-a", "127.0.0.1:0", false, "1.08", "restate"),
        &ledger,
    );
    let expected_b = replay_under(
        &setup,
        &config_of("replay-b", "127.0.0.1:0", true, "1.08", "restate"),
        &ledger,
    );
    assert_ne!(
        expected_a.gauges(),
        expected_b.gauges(),
        "moving training to Excluded changes figures"
    );
    produce_all(&setup, &ledger);

    // Rules A.
    let port = free_port();
    let log = setup.path("rules.log");
    let config_a = config_of(
        "rules",
        &format!("127.0.0.1:{port}"),
        false,
        "1.08",
        "restate",
    );
    let mut a = Instance::start_with(config_a, port, log.clone());
    let _ = a.wait_for("rules A on the ledger", Duration::from_secs(180), |m| {
        m.value("marginstream_ready") == 1.0 && m.counted() == lines
    });
    a.terminate();

    // "refuse": a rules change and a rate change each exit 2, naming the change.
    for (moved, eur, names) in [
        (true, "1.08", "tagging rule 1: added (Excluded [training])"),
        (false, "1.1", "ledger.fx.EUR: 1.08 -> 1.1"),
    ] {
        let config = config_of("rules", "127.0.0.1:0", moved, eur, "refuse");
        let (code, stderr) = run_to_exit(&config);
        assert_eq!(code, Some(2), "refuse exits 2; stderr:\n{stderr}");
        assert!(
            stderr.contains(names) && stderr.contains("on_rules_change"),
            "the error names {names:?}:\n{stderr}"
        );
    }

    // An unrelated change (another listen address, the debug log level) restates nothing.
    let port = free_port();
    let config = config_of(
        "rules",
        &format!("127.0.0.1:{port}"),
        false,
        "1.08",
        "restate",
    );
    let mut unrelated = {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("the log opens");
        let child = Command::new(binary())
            .args(["run", "--log-level", "debug", "--config"])
            .arg(&config)
            .stdout(std::process::Stdio::null())
            .stderr(file)
            .spawn()
            .expect("marginstream run starts");
        Instance {
            child,
            port,
            config: config.clone(),
            log: log.clone(),
        }
    };
    let metrics = unrelated.wait_for("an unrelated change", Duration::from_secs(120), |m| {
        m.value("marginstream_ready") == 1.0 && m.counted() == lines
    });
    assert_eq!(metrics.value("marginstream_restatements_total"), 0.0);
    assert_eq!(
        metrics.value("marginstream_partition_restores_total{source=\"local\"}"),
        4.0
    );
    assert_equals_replay(
        "an unrelated change against replay under A",
        &expected_a,
        &metrics,
    );
    unrelated.terminate();

    // Rules B, "restate": every partition rebuilt under B, never a mix.
    let port = free_port();
    let config_b = config_of(
        "rules",
        &format!("127.0.0.1:{port}"),
        true,
        "1.08",
        "restate",
    );
    let mut b = Instance::start_with(config_b, port, log.clone());
    let metrics = b.wait_for("rules B on the ledger", Duration::from_secs(180), |m| {
        m.value("marginstream_ready") == 1.0 && m.counted() == lines
    });
    assert_eq!(
        metrics.value("marginstream_restatements_total"),
        4.0,
        "every partition restated"
    );
    assert_equals_replay("rules B against replay under B", &expected_b, &metrics);
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        text.contains("restating the partition") && text.contains("Excluded [training]"),
        "the log says which rule changed"
    );
    b.terminate();

    // A fresh instance under rules A with "refuse" finds B's snapshots in the state topic.
    let config = config_of("fresh-a", "127.0.0.1:0", false, "1.08", "refuse");
    let (code, stderr) = run_to_exit(&config);
    assert_eq!(code, Some(2), "refuse exits 2; stderr:\n{stderr}");
    assert!(
        stderr.contains("state topic") && stderr.contains("Excluded [training]"),
        "the error names the snapshot and the change:\n{stderr}"
    );
}
