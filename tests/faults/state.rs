//! The state topic and missing history on librdkafka's mock cluster (issue 10, contract
//! section 10): snapshots forged torn, corrupt or foreign are never restored (the previous
//! complete one is, or the partition is rebuilt, and each is counted); a partition whose
//! first records the broker dropped (the mock keeps at most 5 MB of each partition, as
//! retention would) is held with `/readyz` saying which offsets are gone, or, with
//! `ledger.accept_truncated_history`, read from its log start with the gauge staying 1; and
//! static membership (KIP-345's behaviour, under the KIP-848 protocol, the only one whose
//! static members the mock cluster implements) gives a member that stops and comes back its
//! partitions without moving anyone else's.

use std::collections::BTreeMap;
use std::time::Duration;

use marginstream::state_topic::{self, Expected, Kind, SnapshotId};
use marginstream_aggregator::Engine;
use marginstream_consumer::state::{read_state_partitions, StateProducer};
use marginstream_consumer::{Offset, Partition};
use marginstream_tests::exposition::Metrics;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

use super::{
    assert_matches_reference, expected, ledger, produce, read_topic, Cluster, Expected as Want,
    Instance, MetricsExt, PARTITIONS,
};

/// The state topic of a cluster's ledger topic.
fn state_topic(cluster: &Cluster) -> String {
    format!("{}-marginstream-state", cluster.topic)
}

/// The value of a labelled series.
fn labelled(m: &Metrics, name: &str, label: &str, value: &str) -> f64 {
    m.value(&format!("{name}{{{label}=\"{value}\"}}"))
}

/// Issue 10: a newer snapshot of each partition is forged into the state topic, each damaged
/// another way: partition 0's piece is missing, partition 1's checksum does not match,
/// partition 2 was built under another engine configuration and partition 3 under other
/// rules. An instance with an empty `state.dir` passes over every one (counted by reason)
/// and restores the previous complete snapshot: its gauges equal the reference and it reads
/// nothing. With partition 0's complete snapshots then tombstoned, the next instance
/// rebuilds that partition and restores the others.
#[test]
fn torn_corrupt_and_foreign_snapshots_are_never_restored() {
    let cluster = Cluster::new("torn", 1);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let settings = cluster.settings(&dir.path().join("a"), 10_000);
    let lines = ledger(23, 60, 10, 0.02);
    let want = expected(&settings, &lines);
    produce(&settings.kafka, &lines);
    let mut a = Instance::start("torn-a", settings.clone());
    let _ = a.wait_for("instance a on the ledger", Duration::from_secs(60), |m| {
        m.ready() && m.counted() == lines.len() as u64
    });
    // A graceful stop publishes every partition's final snapshot.
    a.stop();

    // The forgeries: an empty engine at a far offset, which would lose every customer of
    // the partition if it were restored.
    let engine_text = state_topic::engine_text(&settings.engine);
    let rules = settings.restore.rules.text().to_owned();
    let group = settings.kafka.group_id.clone();
    let good = Expected {
        topic: &settings.kafka.topic,
        group: &group,
        engine: &engine_text,
        rules: &rules,
    };
    let empty = Engine::new(&settings.engine).expect("a valid engine configuration");
    let mut bytes = Vec::new();
    empty.encode(&mut bytes);
    let producer = StateProducer::new(&settings.kafka, &state_topic(&cluster))
        .expect("the state producer starts");
    let torn_id = SnapshotId(0x7042);
    for partition in 0..PARTITIONS {
        let other_engine =
            "bucket 60s; windows [1h]; lifetime on; clock event; dedup horizon 61 buckets"
                .to_owned();
        let expected = match partition {
            2 => Expected {
                engine: &other_engine,
                ..good
            },
            3 => Expected {
                rules: "marginstream rules and rates 1\nreporting_currency EUR\n",
                ..good
            },
            _ => good,
        };
        let id = if partition == 0 {
            torn_id
        } else {
            SnapshotId(0x7040 + partition as u64)
        };
        let manifest = state_topic::manifest_for(
            &expected,
            Partition(partition),
            id,
            Offset(1_000_000),
            false,
            0,
            &bytes,
        );
        let mut records =
            state_topic::records(&group, &manifest, &bytes).expect("a manifest of these bytes");
        match partition {
            // The piece is lost: only the manifest is written.
            0 => {
                records.remove(0);
            }
            // A flipped bit in the piece's data.
            1 => {
                let piece = &mut records[0].1;
                let at = piece.len() - 1;
                piece[at] ^= 1;
            }
            _ => {}
        }
        for (key, value) in &records {
            producer
                .send(partition, key, Some(value))
                .expect("the forged record is queued");
        }
    }
    producer
        .flush(Duration::from_secs(30))
        .expect("the forged records are written");

    let mut b = Instance::start("torn-b", cluster.settings(&dir.path().join("b"), 10_000));
    let restored = b.wait_for(
        "instance b restored from the state topic",
        Duration::from_secs(60),
        |m| m.ready() && m.counted() == lines.len() as u64,
    );
    let refused = "marginstream_state_snapshots_refused_total";
    assert_eq!(labelled(&restored, refused, "reason", "incomplete"), 1.0);
    assert_eq!(labelled(&restored, refused, "reason", "corrupt"), 1.0);
    assert_eq!(labelled(&restored, refused, "reason", "foreign"), 2.0);
    assert_eq!(
        labelled(
            &restored,
            "marginstream_partition_restores_total",
            "source",
            "state_topic"
        ),
        PARTITIONS as f64
    );
    assert_eq!(restored.count("marginstream_restatements_total"), 0);
    assert_eq!(
        restored.count("marginstream_consumed_messages_total"),
        0,
        "the previous complete snapshots hold every message"
    );
    assert_matches_reference(
        "gauges restored past forged snapshots against the reference",
        &want,
        &restored,
    );
    let log = b.logs.tail(400);
    for reason in ["incomplete", "corrupt", "foreign"] {
        assert!(
            log.contains("passing over a snapshot of the state topic")
                && log.contains(&format!("reason=\"{reason}\"")),
            "the log says why a snapshot was passed over ({reason}):\n{log}"
        );
    }
    b.stop();

    // Partition 0's complete snapshots are tombstoned: only the torn one is left.
    let records = read_state_partitions(
        &settings.kafka,
        &state_topic(&cluster),
        &[0],
        Duration::from_secs(30),
    )
    .expect("the state topic is read");
    for record in records {
        if let Some((Partition(0), snapshot, Kind::Manifest)) =
            state_topic::parse_key(&record.key, &group)
        {
            if snapshot != torn_id && record.value.is_some() {
                producer
                    .send(0, &record.key, None)
                    .expect("the tombstone is queued");
            }
        }
    }
    producer
        .flush(Duration::from_secs(30))
        .expect("the tombstones are written");
    let mut c = Instance::start("torn-c", cluster.settings(&dir.path().join("c"), 10_000));
    let rebuilt = c.wait_for("instance c", Duration::from_secs(60), |m| {
        m.ready() && m.counted() == lines.len() as u64
    });
    assert_eq!(
        labelled(
            &rebuilt,
            "marginstream_partition_restores_total",
            "source",
            "rebuild"
        ),
        1.0,
        "partition 0 is rebuilt"
    );
    assert_eq!(
        labelled(
            &rebuilt,
            "marginstream_partition_restores_total",
            "source",
            "state_topic"
        ),
        (PARTITIONS - 1) as f64
    );
    assert!(labelled(&rebuilt, refused, "reason", "incomplete") >= 1.0);
    assert_matches_reference(
        "gauges with partition 0 rebuilt against the reference",
        &want,
        &rebuilt,
    );
    c.stop();
}

/// Produces `count` valid revenue events of about 50 kB each (an ignored field pads them)
/// to partition 0, pushing the mock cluster's log of that partition past its 5 MB: it drops
/// its first records, as retention would.
fn overflow_partition_0(cluster: &Cluster, count: usize) {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", &cluster.brokers)
        .set("linger.ms", "5")
        .create()
        .expect("the padding producer");
    let padding = "x".repeat(50_000);
    for n in 0..count {
        let line = format!(
            r#"{{"event_type":"Revenue_Event","event_id":"pad-{n}","customer_id":"pad-{}","occurred_at":"2025-12-28T10:00:00Z","amount":"10","currency":"USD","padding":"{padding}"}}"#,
            n % 7
        );
        producer
            .send(
                BaseRecord::to(&cluster.topic)
                    .partition(0)
                    .key("pad")
                    .payload(&line),
            )
            .expect("the padded event is queued");
    }
    producer
        .flush(Duration::from_secs(30))
        .expect("the padded events are written");
}

/// Issue 10: partition 0 lost its first records to the broker's retention. An instance
/// with an empty `state.dir` holds it: `marginstream_partition_history_truncated` is 1,
/// `/readyz` is 503 naming the missing offsets, an ERROR says so, and the other partitions
/// are read. With `ledger.accept_truncated_history` the next instance reads it from its log
/// start, becomes ready with the gauge still 1, and its figures are those of the records
/// still there; a restart on its checkpoint keeps the gauge at 1.
#[test]
fn missing_history_is_held_or_accepted_never_silent() {
    let cluster = Cluster::new("truncated", 1);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let settings = cluster.settings(&dir.path().join("held"), 10_000);
    let lines = ledger(29, 40, 10, 0.0);
    produce(&settings.kafka, &lines);
    overflow_partition_0(&cluster, 130);
    let remaining = read_topic(&cluster.brokers, &cluster.topic, PARTITIONS);
    let start = remaining
        .iter()
        .filter(|m| m.partition == 0)
        .map(|m| m.offset)
        .min()
        .expect("partition 0 holds records");
    assert!(
        start > 0,
        "the mock cluster dropped partition 0's first records"
    );
    // The reference: the records still there, each partition in offset order.
    let mut ordered: Vec<_> = remaining.iter().collect();
    ordered.sort_by_key(|m| (m.partition, m.offset));
    let payloads: Vec<Vec<u8>> = ordered.iter().map(|m| m.payload.clone()).collect();
    let want: Want = expected(&settings, &payloads);

    let mut held = Instance::start("held", settings.clone());
    let metrics = held.wait_for("partition 0 held", Duration::from_secs(60), |m| {
        labelled(
            m,
            "marginstream_partition_history_truncated",
            "partition",
            "0",
        ) == 1.0
            && m.count("marginstream_partitions_assigned") == PARTITIONS as u64
    });
    let readyz = held.handle().status().describe();
    assert!(
        readyz.contains(&format!(
            "history truncated: partition 0 misses offsets 0 to {}",
            start - 1
        )),
        "/readyz says which offsets are gone: {readyz}"
    );
    assert_eq!(metrics.value("marginstream_ready"), 0.0);
    for partition in 1..PARTITIONS {
        assert_eq!(
            labelled(
                &metrics,
                "marginstream_partition_history_truncated",
                "partition",
                &partition.to_string()
            ),
            0.0
        );
    }
    let others = remaining.iter().filter(|m| m.partition != 0).count() as u64;
    let metrics = held.wait_for("the other partitions read", Duration::from_secs(60), |m| {
        m.count("marginstream_consumed_messages_total") == others
    });
    assert_eq!(
        metrics.value("marginstream_ready"),
        0.0,
        "not ready while a partition is held"
    );
    let log = held.logs.tail(200);
    assert!(
        log.contains("ERROR") && log.contains("history is missing"),
        "an ERROR names the missing history:\n{log}"
    );
    held.stop();

    let mut accepting = settings.clone();
    accepting.state_dir = dir.path().join("accepted");
    accepting.restore.accept_truncated_history = true;
    let mut accepted = Instance::start("accepted", accepting.clone());
    let metrics = accepted.wait_for(
        "partition 0 read from its log start",
        Duration::from_secs(60),
        |m| m.ready() && m.counted() == remaining.len() as u64,
    );
    assert_eq!(
        labelled(
            &metrics,
            "marginstream_partition_history_truncated",
            "partition",
            "0"
        ),
        1.0,
        "the gauge stays 1 when the loss is accepted"
    );
    assert_matches_reference(
        "gauges over the records still there against the reference",
        &want,
        &metrics,
    );
    accepted.stop();
    let mut again = Instance::start("accepted-again", accepting);
    let metrics = again.wait_for(
        "a restart on the checkpoint",
        Duration::from_secs(60),
        |m| m.ready() && m.counted() == remaining.len() as u64,
    );
    assert_eq!(
        labelled(
            &metrics,
            "marginstream_partition_history_truncated",
            "partition",
            "0"
        ),
        1.0,
        "the state remembers that it misses history"
    );
    again.stop();
}

/// Issue 10: static membership. Two static members (`kafka.group_instance_id`) share the
/// partitions; one stops and a new process with its instance id comes back: it gets the
/// same partitions and the other member sees no rebalance at all. The mock cluster
/// implements static members only under the KIP-848 consumer protocol
/// (`group.protocol = consumer`); under the classic protocol it treats a returning instance
/// id as a new member, and the local Tansu broker never assigns partitions to a static
/// member: against those, nothing here can show KIP-345's classic behaviour.
#[test]
fn a_static_member_comes_back_without_a_rebalance() {
    let cluster = Cluster::new("static", 1);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let lines = ledger(31, 40, 10, 0.0);
    let member = |name: &str| {
        let mut settings = cluster.settings(&dir.path().join(name), 10_000);
        let properties = &mut settings.kafka.properties;
        // The broker owns the session under KIP-848; these are refused there.
        properties.remove("session.timeout.ms");
        properties.remove("heartbeat.interval.ms");
        properties.insert("group.protocol".to_owned(), "consumer".to_owned());
        settings.kafka.group_instance_id = Some(format!("member-{name}"));
        settings
    };
    produce(&member("x").kafka, &lines);
    let mut x = Instance::start("static-x", member("x"));
    let mut y = Instance::start("static-y", member("y"));
    let both = |m: &Metrics| m.ready() && m.count("marginstream_partitions_assigned") >= 1;
    let mut mx = x.wait_for("member x", Duration::from_secs(60), both);
    let mut my = y.wait_for("member y", Duration::from_secs(60), both);
    // Wait for the assignment to settle between the two.
    for _ in 0..60 {
        if mx.count("marginstream_partitions_assigned")
            + my.count("marginstream_partitions_assigned")
            == PARTITIONS as u64
            && mx.counted() + my.counted() == lines.len() as u64
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
        mx = x.scrape().expect("x answers");
        my = y.scrape().expect("y answers");
    }
    let x_partitions = mx.count("marginstream_partitions_assigned");
    assert_eq!(
        x_partitions + my.count("marginstream_partitions_assigned"),
        PARTITIONS as u64
    );
    let rebalances = my.count("marginstream_rebalances_total");
    x.stop();
    std::thread::sleep(Duration::from_secs(3));
    let alone = y.scrape().expect("y answers");
    assert_eq!(
        alone.count("marginstream_partitions_assigned"),
        PARTITIONS as u64 - x_partitions,
        "a static member's partitions wait for it"
    );
    let mut back = Instance::start("static-x-again", member("x"));
    let mback = back.wait_for("member x again", Duration::from_secs(60), |m| {
        m.ready() && m.count("marginstream_partitions_assigned") == x_partitions
    });
    let my = y.scrape().expect("y answers");
    assert_eq!(
        my.count("marginstream_rebalances_total"),
        rebalances,
        "the other member saw no rebalance"
    );
    let mut counted = BTreeMap::new();
    counted.insert("x", mback.counted());
    counted.insert("y", my.counted());
    assert_eq!(
        counted.values().sum::<u64>(),
        lines.len() as u64,
        "together every message once: {counted:?}"
    );
    back.stop();
    y.stop();
}

/// Issue 10: history lost *while* a partition is read. The consumer falls behind on
/// partition 0 (fetches of one 50 kB record each, every 300 ms), the broker drops the
/// records it has not read yet, and librdkafka resets to the log start: a gap in the
/// offsets. The loop checks the gap against the log start offset and holds the partition
/// (`marginstream_partition_history_truncated` 1, `/readyz` 503 naming the offsets, an
/// ERROR), never reading on as if nothing were missing; with
/// `ledger.accept_truncated_history` it reads on, the gauge staying 1.
#[test]
fn history_lost_while_reading_is_held_or_accepted_never_silent() {
    for accept in [false, true] {
        let name = if accept { "lost-accepted" } else { "lost-held" };
        let cluster = Cluster::new(name, 1);
        let dir = tempfile::tempdir().expect("a temporary directory");
        let mut settings = cluster.settings(&dir.path().join("state"), 10_000);
        settings.restore.accept_truncated_history = accept;
        // One padded record per fetch: the consumer reads slowly once the broker is slow.
        settings
            .kafka
            .properties
            .insert("max.partition.fetch.bytes".to_owned(), "60000".to_owned());
        let lines = ledger(31, 20, 3, 0.0);
        produce(&settings.kafka, &lines);
        let mut instance = Instance::start(name, settings.clone());
        let _ = instance.wait_for("the ledger read", Duration::from_secs(60), |m| {
            m.ready() && m.counted() == lines.len() as u64
        });
        // The broker gets slow; records are produced faster than the loop fetches them, and
        // the broker drops the oldest (it keeps 5 MB a partition).
        cluster
            .mock
            .broker_round_trip_time(1, Duration::from_millis(300))
            .expect("the mock broker slows down");
        overflow_partition_0(&cluster, 160);
        cluster
            .mock
            .broker_round_trip_time(1, Duration::ZERO)
            .expect("the mock broker speeds up");
        let metrics = instance.wait_for("the gap noticed", Duration::from_secs(90), |m| {
            labelled(
                m,
                "marginstream_partition_history_truncated",
                "partition",
                "0",
            ) == 1.0
        });
        let log = instance.logs.tail(300);
        assert!(
            log.contains("ERROR")
                && log.contains("retention deleted offsets")
                && log.contains("before they were read"),
            "an ERROR names the history lost while reading:\n{log}"
        );
        if accept {
            let metrics = instance.wait_for("read on", Duration::from_secs(90), |m| {
                m.ready()
                    && labelled(m, "marginstream_consumer_lag_messages", "partition", "0") == 0.0
            });
            assert_eq!(
                labelled(
                    &metrics,
                    "marginstream_partition_history_truncated",
                    "partition",
                    "0"
                ),
                1.0,
                "the gauge stays 1 when the loss is accepted"
            );
        } else {
            let readyz = instance.handle().status().describe();
            assert!(
                readyz.contains("history truncated: partition 0 misses offsets")
                    && readyz.contains("before they were read"),
                "/readyz says which offsets are gone: {readyz}"
            );
            assert_eq!(metrics.value("marginstream_ready"), 0.0);
            // Held: nothing more of partition 0 is applied.
            let consumed = metrics.count("marginstream_consumed_messages_total");
            std::thread::sleep(Duration::from_secs(3));
            let later = instance.scrape().expect("a scrape");
            assert_eq!(
                later.count("marginstream_consumed_messages_total"),
                consumed,
                "a held partition is not read"
            );
        }
        instance.stop();
    }
}
