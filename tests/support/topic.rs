//! Reading a topic back, headers included: the dead-letter topic and the ledger topic of
//! the end-to-end tests (`tests/live.rs`) and the fault tests
//! (`tests/faults.rs`).

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

/// One message read back from a topic.
#[derive(Debug, Clone)]
pub struct Read {
    /// Its partition.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
    /// Its value (empty for a tombstone).
    pub payload: Vec<u8>,
    /// Its headers, values as (lossy) UTF-8.
    pub headers: HashMap<String, String>,
}

impl Read {
    /// The source (partition, offset) of a dead letter, from its headers.
    ///
    /// # Panics
    ///
    /// Panics when a header is missing or not a number.
    pub fn source(&self) -> (i32, i64) {
        let number = |key: &str| -> i64 {
            self.headers
                .get(key)
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| {
                    panic!(
                        "a dead letter lacks a numeric header {key}: {:?}",
                        self.headers
                    )
                })
        };
        (
            number("marginstream.source.partition") as i32,
            number("marginstream.source.offset"),
        )
    }
}

/// Reads partitions `0..partitions` of `topic` from the beginning to their end, without a
/// consumer group.
///
/// # Panics
///
/// Panics when the client cannot be made, or the end is not reached within `timeout`.
pub fn read_topic(brokers: &str, topic: &str, partitions: i32, timeout: Duration) -> Vec<Read> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("{topic}.reader"))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("fetch.wait.max.ms", "100")
        .create()
        .expect("a reader consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .expect("a partition");
    }
    consumer.assign(&tpl).expect("assign the topic");
    let mut out = Vec::new();
    let mut ended = BTreeSet::new();
    let deadline = Instant::now() + timeout;
    while ended.len() < partitions as usize {
        assert!(
            Instant::now() < deadline,
            "timed out reading {topic}: {} messages, partitions ended: {ended:?}",
            out.len()
        );
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                let mut headers = HashMap::new();
                if let Some(h) = m.headers() {
                    for header in h.iter() {
                        headers.insert(
                            header.key.to_owned(),
                            String::from_utf8_lossy(header.value.unwrap_or_default()).into_owned(),
                        );
                    }
                }
                out.push(Read {
                    partition: m.partition(),
                    offset: m.offset(),
                    payload: m.payload().unwrap_or_default().to_vec(),
                    headers,
                });
            }
            Some(Err(KafkaError::PartitionEOF(p))) => {
                ended.insert(p);
            }
            _ => {}
        }
    }
    out
}
