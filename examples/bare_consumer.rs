//! The reference point of the Kafka consume goal: a bare rdkafka `BaseConsumer` with the
//! same librdkafka settings as `marginstream run`'s consumer (`KafkaSource::new` in
//! crates/consumer/src/kafka.rs) that reads every message of a topic and only touches the
//! payload's length: no parsing, no state.
//!
//! It assigns every partition of the topic from the beginning (no group join, so no join
//! delay), polls with a 50 ms timeout, as marginstream does, until every partition has
//! reported its end (`enable.partition.eof`), and prints one JSON line:
//!
//! - `messages`, `bytes` (payload + key);
//! - `seconds`, `per_second`: from the first message received to the last;
//! - `seconds_from_assign`, `per_second_from_assign`: from the `assign` call to the last
//!   partition's end, the window that `scripts/bench-kafka.sh` can also measure for
//!   marginstream (from its "partitions assigned" log line to its last "partition read to
//!   its end" line);
//! - `first_message_after_assign_ms` and `last_message_to_end_ms`: the startup cost and the
//!   wait for the end-of-partition signal included in the second window. librdkafka reports
//!   a partition's end from a fetch response that returned nothing new, which the broker
//!   holds for up to `fetch.wait.max.ms` (500 ms by default): lower it with `-X` (for both
//!   programs) when timing short reads to the end.
//!
//! ```sh
//! cargo run --release --example bare_consumer -- BROKERS TOPIC [GROUP_ID] [-X key=value]...
//! ```
//!
//! `-X key=value` sets a further librdkafka property, like marginstream's
//! `[kafka.properties]`; the fixed settings below win, as in `KafkaSource::new`.

use std::hint::black_box;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::Message;

/// Gives up when the topic is not read to its end within this time.
const DEADLINE: Duration = Duration::from_secs(600);

fn usage() -> ExitCode {
    eprintln!("usage: bare_consumer BROKERS TOPIC [GROUP_ID] [-X key=value]...");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let mut positional = Vec::new();
    let mut properties = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "-X" {
            let Some(pair) = args.next() else {
                return usage();
            };
            let Some((key, value)) = pair.split_once('=') else {
                return usage();
            };
            properties.push((key.to_owned(), value.to_owned()));
        } else if arg == "-h" || arg == "--help" {
            return usage();
        } else {
            positional.push(arg);
        }
    }
    let (brokers, topic, group_id) = match positional.as_slice() {
        [brokers, topic] => (
            brokers.clone(),
            topic.clone(),
            format!("bare-consumer-{}", std::process::id()),
        ),
        [brokers, topic, group] => (brokers.clone(), topic.clone(), group.clone()),
        _ => return usage(),
    };
    match run(&brokers, &topic, &group_id, &properties) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("bare_consumer: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run(
    brokers: &str,
    topic: &str,
    group_id: &str,
    properties: &[(String, String)],
) -> Result<(), String> {
    // As `client_config` and `KafkaSource::new`: pass-through properties first, then the
    // fixed settings.
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", brokers);
    for (key, value) in properties {
        config.set(key, value);
    }
    config
        .set("group.id", group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "true")
        .set("statistics.interval.ms", "5000");
    if !properties.iter().any(|(key, _)| key == "auto.offset.reset") {
        config.set("auto.offset.reset", "earliest");
    }
    let consumer: BaseConsumer = config
        .create()
        .map_err(|e| format!("create the consumer: {e}"))?;

    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .map_err(|e| format!("fetch the metadata of {topic}: {e}"))?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .map(|t| t.partitions().iter().map(|p| p.id()).collect())
        .unwrap_or_default();
    if partitions.is_empty() {
        return Err(format!("topic {topic} has no partitions (does it exist?)"));
    }
    let mut tpl = TopicPartitionList::new();
    for &partition in &partitions {
        tpl.add_partition_offset(topic, partition, Offset::Beginning)
            .map_err(|e| format!("set the start of partition {partition}: {e}"))?;
    }

    let assigned_at = Instant::now();
    consumer
        .assign(&tpl)
        .map_err(|e| format!("assign the partitions: {e}"))?;

    let mut at_end = vec![false; partitions.len()];
    let mut remaining = partitions.len();
    let mut messages = 0u64;
    let mut bytes = 0u64;
    let mut errors = 0u64;
    let mut first: Option<Instant> = None;
    let mut last: Option<Instant> = None;
    while remaining > 0 {
        if assigned_at.elapsed() > DEADLINE {
            return Err(format!(
                "{topic} not read to its end within {} s ({messages} messages, {remaining} partitions left)",
                DEADLINE.as_secs()
            ));
        }
        match consumer.poll(Duration::from_millis(50)) {
            None => {}
            Some(Ok(message)) => {
                let now = Instant::now();
                first.get_or_insert(now);
                last = Some(now);
                messages += 1;
                let payload = black_box(message.payload()).map_or(0, <[u8]>::len);
                let key = black_box(message.key()).map_or(0, <[u8]>::len);
                bytes += (payload + key) as u64;
            }
            Some(Err(KafkaError::PartitionEOF(partition))) => {
                if let Some(index) = partitions.iter().position(|&p| p == partition) {
                    if !at_end[index] {
                        at_end[index] = true;
                        remaining -= 1;
                    }
                }
            }
            Some(Err(error)) => {
                errors += 1;
                eprintln!("bare_consumer: consumer error (librdkafka retries): {error}");
            }
        }
    }
    let ended_at = Instant::now();

    let (Some(first), Some(last)) = (first, last) else {
        return Err(format!("{topic} is empty"));
    };
    let seconds = last.duration_since(first).as_secs_f64();
    let seconds_from_assign = ended_at.duration_since(assigned_at).as_secs_f64();
    let rate = |s: f64| if s > 0.0 { messages as f64 / s } else { 0.0 };
    println!(
        "{{\"messages\":{messages},\"bytes\":{bytes},\"partitions\":{},\"seconds\":{seconds:.6},\"per_second\":{:.0},\"seconds_from_assign\":{seconds_from_assign:.6},\"per_second_from_assign\":{:.0},\"first_message_after_assign_ms\":{:.3},\"last_message_to_end_ms\":{:.3},\"errors\":{errors}}}",
        partitions.len(),
        rate(seconds),
        rate(seconds_from_assign),
        first.duration_since(assigned_at).as_secs_f64() * 1e3,
        ended_at.duration_since(last).as_secs_f64() * 1e3,
    );
    Ok(())
}
