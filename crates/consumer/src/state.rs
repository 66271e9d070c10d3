//! The Kafka side of the state topic (contract section 10): a producer of keyed records to
//! chosen partitions that says whether every one of them was acknowledged, a reader of whole
//! partitions (from their beginning to their end when read), and the topic's creation and
//! checks. What the records mean (snapshots cut into pieces, manifests, tombstones) is the
//! application's; nothing here reads a value.
//!
//! The topic is compacted (`cleanup.policy = compact`): Kafka keeps the latest record of
//! every key and, after `delete.retention.ms`, drops a key whose latest record is a
//! tombstone (a record without a value). The application gives every record of a snapshot a
//! key of its own and tombstones the keys of snapshots it no longer needs, so a compacted
//! topic holds about two snapshots per partition whatever the number of checkpoints.

use std::collections::HashSet;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::topic_partition_list::{Offset as KafkaOffset, TopicPartitionList};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::Message;

use crate::error::ConsumerError;
use crate::kafka::{client_config, log_librdkafka, producer_config, KafkaSettings, ReaderContext};

/// One record of the state topic, as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateRecord {
    /// Its partition of the state topic.
    pub partition: i32,
    /// Its offset there.
    pub offset: i64,
    /// Its key (records without a key are not the application's and are skipped).
    pub key: Vec<u8>,
    /// Its value; `None` for a tombstone.
    pub value: Option<Vec<u8>>,
}

/// Reads `partitions` of `topic` from their beginning to their end (the end each had when
/// the reader reached it), without a consumer group. Records without a key are skipped.
///
/// # Errors
///
/// When the reader cannot be created or assigned, or a partition is not read to its end
/// within `timeout` (the broker is unreachable, or the partition holds more than can be
/// read in that time).
pub fn read_state_partitions(
    settings: &KafkaSettings,
    topic: &str,
    partitions: &[i32],
    timeout: Duration,
) -> Result<Vec<StateRecord>, ConsumerError> {
    let mut config = client_config(settings);
    // librdkafka wants a group id even for a manual assignment; this one never joins a group
    // (no subscribe) and never commits.
    config
        .set(
            "group.id",
            format!("{}.state-reader.{}", settings.group_id, std::process::id()),
        )
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true");
    for property in [
        "group.instance.id",
        "session.timeout.ms",
        "auto.offset.reset",
    ] {
        config.remove(property);
    }
    // The end of a partition is known from an empty fetch, which the broker holds up to
    // fetch.wait.max.ms (500 ms by default): a restore would wait that long for nothing.
    if !settings.properties.contains_key("fetch.wait.max.ms") {
        config.set("fetch.wait.max.ms", "10");
    }
    let consumer: BaseConsumer<ReaderContext> =
        config
            .create_with_context(ReaderContext)
            .map_err(|source| ConsumerError::Kafka {
                what: "create the state topic reader".to_owned(),
                source,
            })?;
    let mut tpl = TopicPartitionList::new();
    for partition in partitions {
        tpl.add_partition_offset(topic, *partition, KafkaOffset::Beginning)
            .map_err(|source| ConsumerError::Kafka {
                what: format!("assign partition {partition} of {topic}"),
                source,
            })?;
    }
    consumer
        .assign(&tpl)
        .map_err(|source| ConsumerError::Kafka {
            what: format!("assign the partitions of {topic}"),
            source,
        })?;
    let deadline = Instant::now() + timeout;
    let mut remaining: HashSet<i32> = partitions.iter().copied().collect();
    let mut records = Vec::new();
    while !remaining.is_empty() {
        if Instant::now() >= deadline {
            return Err(ConsumerError::Kafka {
                what: format!(
                    "read partitions {:?} of {topic} to their end within {timeout:?}",
                    remaining
                ),
                source: KafkaError::MessageConsumption(RDKafkaErrorCode::RequestTimedOut),
            });
        }
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Ok(message)) => {
                if message.topic() != topic {
                    continue;
                }
                let Some(key) = message.key() else {
                    continue;
                };
                records.push(StateRecord {
                    partition: message.partition(),
                    offset: message.offset(),
                    key: key.to_vec(),
                    value: message.payload().map(<[u8]>::to_vec),
                });
            }
            Some(Err(KafkaError::PartitionEOF(partition))) => {
                remaining.remove(&partition);
            }
            Some(Err(error)) => {
                tracing::warn!(error = %error, topic, "kafka error while reading the state topic (librdkafka retries)");
            }
        }
    }
    Ok(records)
}

/// Counts the state producer's failed deliveries, and keeps the first error.
#[derive(Debug, Default)]
pub struct AckContext {
    failed: AtomicI64,
    first_error: Mutex<Option<KafkaError>>,
}

impl ClientContext for AckContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        log_librdkafka(level, fac, log_message);
    }
}

impl ProducerContext for AckContext {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((error, _)) = result {
            self.failed.fetch_add(1, Ordering::AcqRel);
            let mut first = self.first_error.lock().unwrap_or_else(|e| e.into_inner());
            first.get_or_insert_with(|| error.clone());
        }
    }
}

/// Produces records to chosen partitions of the state topic, idempotently with `acks=all`,
/// and says at each [`StateProducer::flush`] whether every record since the previous one
/// was acknowledged.
pub struct StateProducer {
    producer: BaseProducer<AckContext>,
    topic: String,
}

impl std::fmt::Debug for StateProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateProducer")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl StateProducer {
    /// Creates the producer. `message.timeout.ms` defaults to 30 s here (librdkafka: 300 s):
    /// a snapshot not written by then is given up, and the previous one stays the latest.
    pub fn new(settings: &KafkaSettings, topic: &str) -> Result<StateProducer, ConsumerError> {
        let mut config = producer_config(settings);
        config.remove("group.instance.id");
        config.remove("session.timeout.ms");
        config
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5");
        if !settings.properties.contains_key("message.timeout.ms") {
            config.set("message.timeout.ms", "30000");
        }
        let producer = config
            .create_with_context(AckContext::default())
            .map_err(|source| ConsumerError::Kafka {
                what: "create the state topic producer".to_owned(),
                source,
            })?;
        Ok(StateProducer {
            producer,
            topic: topic.to_owned(),
        })
    }

    /// Queues one record for `partition`; `value` `None` is a tombstone. Waits while the
    /// local queue is full.
    pub fn send(
        &self,
        partition: i32,
        key: &[u8],
        value: Option<&[u8]>,
    ) -> Result<(), ConsumerError> {
        let mut record: BaseRecord<'_, [u8], [u8]> =
            BaseRecord::to(&self.topic).partition(partition).key(key);
        if let Some(value) = value {
            record = record.payload(value);
        }
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    self.producer.poll(Duration::from_millis(10));
                }
                Err((source, _)) => {
                    return Err(ConsumerError::Kafka {
                        what: format!("produce to {}", self.topic),
                        source,
                    })
                }
            }
        }
    }

    /// Waits up to `timeout` for every queued record to be acknowledged.
    ///
    /// # Errors
    ///
    /// When some record is still unacknowledged at the timeout, or a record sent since the
    /// previous flush failed (the first failure is returned).
    pub fn flush(&self, timeout: Duration) -> Result<(), ConsumerError> {
        let flushed = self.producer.flush(timeout);
        let context = self.producer.context();
        let failed = context.failed.swap(0, Ordering::AcqRel);
        let first = context
            .first_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        flushed.map_err(|source| ConsumerError::Kafka {
            what: format!("write to {} within {timeout:?}", self.topic),
            source,
        })?;
        if failed > 0 {
            return Err(ConsumerError::Kafka {
                what: format!("write {failed} records to {}", self.topic),
                source: first.unwrap_or(KafkaError::MessageProduction(
                    RDKafkaErrorCode::MessageTimedOut,
                )),
            });
        }
        Ok(())
    }
}

/// A topic to create: its name, partitions and configuration.
#[derive(Debug, Clone)]
pub struct TopicSpec<'a> {
    /// The topic.
    pub name: &'a str,
    /// Its partitions.
    pub partitions: i32,
    /// Its replication factor; `None`: the broker's `default.replication.factor` (Kafka 2.4
    /// and later, KIP-464), as Kafka Streams creates its internal topics.
    pub replication: Option<i32>,
    /// Topic configuration, e.g. `("cleanup.policy", "compact")`.
    pub config: Vec<(&'a str, &'a str)>,
}

fn admin(settings: &KafkaSettings) -> Result<AdminClient<DefaultClientContext>, ConsumerError> {
    let mut config = producer_config(settings);
    config.remove("group.instance.id");
    config.remove("session.timeout.ms");
    // A metadata request must never create the topic it asks about (a broker with
    // auto.create.topics.enable would make an uncompacted state topic).
    config.set("allow.auto.create.topics", "false");
    config.create().map_err(|source| ConsumerError::Kafka {
        what: "create the admin client".to_owned(),
        source,
    })
}

/// Creates the topics of `specs` that do not exist yet (an existing one is left as it is).
///
/// # Errors
///
/// When the broker cannot be reached or refuses to create a topic (naming it).
pub async fn create_topics_with(
    settings: &KafkaSettings,
    specs: &[TopicSpec<'_>],
) -> Result<(), ConsumerError> {
    let admin = admin(settings)?;
    let new: Vec<NewTopic<'_>> = specs
        .iter()
        .map(|spec| {
            let mut topic = NewTopic::new(
                spec.name,
                spec.partitions,
                TopicReplication::Fixed(spec.replication.unwrap_or(-1)),
            );
            for (key, value) in &spec.config {
                topic = topic.set(key, value);
            }
            topic
        })
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = admin
        .create_topics(new.iter(), &options)
        .await
        .map_err(|source| ConsumerError::Kafka {
            what: "create topics".to_owned(),
            source,
        })?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                return Err(ConsumerError::Kafka {
                    what: format!("create topic {name}"),
                    source: KafkaError::AdminOp(code),
                })
            }
        }
    }
    Ok(())
}

/// Returns the number of partitions of `topic`, or `None` when the broker does not know it.
///
/// # Errors
///
/// When the broker cannot be reached within `timeout`.
pub fn partition_count(
    settings: &KafkaSettings,
    topic: &str,
    timeout: Duration,
) -> Result<Option<i32>, ConsumerError> {
    let admin = admin(settings)?;
    let metadata = admin
        .inner()
        .fetch_metadata(Some(topic), timeout)
        .map_err(|source| ConsumerError::Kafka {
            what: format!("read the metadata of {topic}"),
            source,
        })?;
    Ok(metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty())
        .map(|t| t.partitions().len() as i32))
}

/// Returns the value of the configuration `key` of `topic` (e.g. `cleanup.policy`).
///
/// # Errors
///
/// When the broker cannot be reached, or does not describe topic configurations.
pub async fn topic_config(
    settings: &KafkaSettings,
    topic: &str,
    key: &str,
) -> Result<Option<String>, ConsumerError> {
    let admin = admin(settings)?;
    let options = AdminOptions::new().request_timeout(Some(Duration::from_secs(10)));
    let results = admin
        .describe_configs([&ResourceSpecifier::Topic(topic)], &options)
        .await
        .map_err(|source| ConsumerError::Kafka {
            what: format!("describe the configuration of {topic}"),
            source,
        })?;
    match results.into_iter().next() {
        Some(Ok(resource)) => Ok(resource.get(key).and_then(|entry| entry.value.clone())),
        Some(Err(code)) => Err(ConsumerError::Kafka {
            what: format!("describe the configuration of {topic}"),
            source: KafkaError::AdminOp(code),
        }),
        None => Ok(None),
    }
}
