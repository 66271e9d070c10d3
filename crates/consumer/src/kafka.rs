//! The Kafka source of `marginstream run`: a consumer group member whose partitions start
//! where the application says, and a dead-letter producer that never loses a message.
//!
//! # Rebalances
//!
//! The application owns per-partition state and knows, for each partition it may be
//! assigned, the offset to read next: the checkpoint's offset, the position of state it
//! still holds, or the beginning of the partition when it must rebuild. Kafka's committed
//! offsets cannot say this (they move only after a checkpoint is durable, and a partition
//! new to this instance must be read from the start). So assignment is deferred to the
//! application:
//!
//! - On *assign*, [`SourceContext`] records the partitions and returns without assigning.
//!   librdkafka waits for the assign call (its join state `WAIT_ASSIGN_CALL`). `poll`
//!   returns right after a rebalance event, the application sees
//!   [`KafkaSource::take_rebalance`], prepares its state and calls [`KafkaSource::assign`]
//!   with an explicit offset for every partition.
//! - On *revoke*, the partitions are unassigned at once, inside the callback (the group
//!   cannot move on otherwise, and closing the consumer relies on it), and recorded for the
//!   application, which drops their state.
//!
//! Both the eager and the cooperative (`partition.assignment.strategy =
//! cooperative-sticky`) protocols are handled.
//!
//! # Reading
//!
//! Every assigned partition's messages are forwarded to one queue of the source's, read in
//! batches with librdkafka's batch API ([`KafkaSource::poll_batch`]: one call for up to 256
//! messages, their ends of partitions and errors). The consumer's own queue then carries
//! only rebalances, consumer errors, statistics and commit results, served by
//! [`KafkaSource::poll`]. librdkafka clears a partition's forwarding whenever it stops
//! fetching it, so every assignment forwards its partitions again, and
//! [`KafkaSource::keep_forwarded`] repairs any other stop.
//!
//! Backpressure: the application must call `poll` or `poll_batch` at least every
//! `max.poll.interval.ms` (librdkafka's default is 300 s) or it is removed from the group.
//! A stalled dead-letter topic therefore pauses the partitions and keeps polling, never
//! stops polling.

use std::collections::{BTreeMap, HashMap};
use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use rdkafka::bindings as rdsys;
use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::{Offset as KafkaOffset, TopicPartitionList};
use rdkafka::types::{RDKafkaErrorCode, RDKafkaRespErr};
use rdkafka::Message;

use crate::error::ConsumerError;

/// A partition of the ledger topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Partition(pub i32);

/// An offset in a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Offset(pub i64);

/// Where to start reading an assigned partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    /// The first message still in the partition.
    Beginning,
    /// This offset: the next message after the state the application holds.
    Offset(Offset),
}

/// A change of assignment, for the application to act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rebalance {
    /// These partitions are assigned: call [`KafkaSource::assign`] with a start for each.
    Assign(Vec<Partition>),
    /// These partitions were taken away (already unassigned): drop their state.
    Revoke(Vec<Partition>),
}

/// Settings of the Kafka clients.
#[derive(Debug, Clone)]
pub struct KafkaSettings {
    /// `bootstrap.servers`.
    pub brokers: String,
    /// The ledger topic.
    pub topic: String,
    /// The consumer group.
    pub group_id: String,
    /// The dead-letter topic.
    pub dlq_topic: String,
    /// librdkafka properties passed through to both clients (security, tuning). They win
    /// over the settings above, except the ones the source relies on (see
    /// [`KafkaSource::new`]).
    pub properties: BTreeMap<String, String>,
    /// `group.instance.id`: a static member of the group (KIP-345) when set.
    pub group_instance_id: Option<String>,
    /// How often librdkafka reports statistics (partition high watermarks for the lag).
    pub statistics_interval: Duration,
}

/// Properties the source sets itself and refuses from `kafka.properties`: changing them
/// would break the offset handling that makes the effect exactly once, or (the instance id)
/// they have a key of their own.
pub const RESERVED_PROPERTIES: [&str; 5] = [
    "enable.auto.commit",
    "enable.auto.offset.store",
    "enable.partition.eof",
    "group.id",
    "group.instance.id",
];

/// The consumer's `session.timeout.ms` unless `kafka.properties` sets one (librdkafka: 45 s,
/// since KIP-735; Kafka's own default before 3.0 was 10 s). How long a crashed member holds
/// its partitions: measured on the local Tansu broker (`scripts/bench-failover.sh`), a kill
/// -9 to consuming again took 11.5 s at 6 s, 18.4 s at 10 s and 82.8 s at 45 s (the dead
/// member's session expires, then the broker holds the join for half a session; see
/// `docs/operations.md`). 10 s keeps that within 20 s and stays above the 6 s that Kafka
/// brokers accept at least by default (`group.min.session.timeout.ms`). librdkafka
/// heartbeats from its own thread (every `heartbeat.interval.ms`, 3 s by default), so a loop
/// busy applying messages, encoding a checkpoint or restoring a snapshot never misses one.
pub const SESSION_TIMEOUT_MS_DEFAULT: u32 = 10_000;

/// The high watermark of every partition, from librdkafka's statistics.
#[derive(Debug, Default)]
struct Watermarks {
    high: Mutex<HashMap<i32, i64>>,
}

/// The consumer's context: rebalance notes for the application, statistics, commit results.
pub struct SourceContext {
    topic: String,
    pending: Mutex<Vec<Rebalance>>,
    has_pending: AtomicBool,
    watermarks: Watermarks,
    commit_failures: AtomicI64,
}

impl ClientContext for SourceContext {
    fn stats(&self, statistics: Statistics) {
        if let Some(topic) = statistics.topics.get(&self.topic) {
            let mut high = self
                .watermarks
                .high
                .lock()
                .expect("no panic holds this lock");
            for (partition, stats) in &topic.partitions {
                if *partition >= 0 && stats.hi_offset >= 0 {
                    high.insert(*partition, stats.hi_offset);
                }
            }
        }
    }

    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        log_librdkafka(level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        warn_librdkafka_error(&error, reason);
    }
}

/// Logs a client error of librdkafka (it retries on its own). The end of a partition comes
/// as an error event too; the consumers handle it in `poll`, so it is no warning.
pub(crate) fn warn_librdkafka_error(error: &KafkaError, reason: &str) {
    if error.rdkafka_error_code() != Some(RDKafkaErrorCode::PartitionEOF) {
        tracing::warn!(error = %error, reason, "librdkafka error (it retries on its own)");
    }
}

/// Sends librdkafka's log lines to `tracing`. Warnings about properties that do not apply to
/// one of the clients (`kafka.properties` goes to both) are debug lines.
pub(crate) fn log_librdkafka(level: RDKafkaLogLevel, fac: &str, log_message: &str) {
    if fac == "CONFWARN" {
        tracing::debug!(facility = fac, "librdkafka: {log_message}");
        return;
    }
    {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => {
                tracing::error!(facility = fac, "librdkafka: {log_message}")
            }
            RDKafkaLogLevel::Warning => tracing::warn!(facility = fac, "librdkafka: {log_message}"),
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(facility = fac, "librdkafka: {log_message}")
            }
            RDKafkaLogLevel::Debug => tracing::debug!(facility = fac, "librdkafka: {log_message}"),
        }
    }
}

fn partitions_of(tpl: &TopicPartitionList, topic: &str) -> Vec<Partition> {
    let mut partitions: Vec<Partition> = tpl
        .elements()
        .iter()
        .filter(|e| e.topic() == topic)
        .map(|e| Partition(e.partition()))
        .collect();
    partitions.sort();
    partitions
}

impl ConsumerContext for SourceContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<SourceContext>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let note = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                // Deferred: the application assigns with explicit offsets.
                Rebalance::Assign(partitions_of(tpl, &self.topic))
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                let result = match consumer.rebalance_protocol() {
                    RebalanceProtocol::Cooperative => consumer.incremental_unassign(tpl),
                    _ => consumer.unassign(),
                };
                if let Err(error) = result {
                    tracing::warn!(error = %error, "failed to unassign revoked partitions");
                }
                Rebalance::Revoke(partitions_of(tpl, &self.topic))
            }
            other => {
                tracing::warn!(error = ?other, "rebalance error; leaving the assignment as it is");
                let _ = consumer.unassign();
                Rebalance::Revoke(partitions_of(tpl, &self.topic))
            }
        };
        self.pending
            .lock()
            .expect("no panic holds this lock")
            .push(note);
        self.has_pending.store(true, Ordering::Release);
    }

    fn commit_callback(&self, result: KafkaResult<()>, _offsets: &TopicPartitionList) {
        if let Err(error) = result {
            self.commit_failures.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(error = %error, "failed to commit offsets to kafka (the checkpoint holds them)");
        }
    }
}

/// One message of the ledger topic, borrowed from the consumer.
pub struct SourceMessage<'a> {
    message: Held<'a>,
}

/// A message as librdkafka handed it over: one at a time through rust-rdkafka, or in a
/// batch ([`KafkaSource::poll_batch`]).
enum Held<'a> {
    Borrowed(rdkafka::message::BorrowedMessage<'a>),
    Batched(Batched<'a>),
}

/// A message read by `rd_kafka_consume_batch_queue`, owned until dropped (then destroyed).
struct Batched<'a> {
    message: NonNull<rdsys::rd_kafka_message_t>,
    source: PhantomData<&'a KafkaSource>,
}

// SAFETY: a librdkafka message may be read and destroyed on any thread (librdkafka's
// messages are reference counted with atomics; rust-rdkafka's BorrowedMessage is Send and
// Sync for the same reason). It never outlives the consumer: it borrows the source.
unsafe impl Send for Batched<'_> {}

impl Batched<'_> {
    fn raw(&self) -> &rdsys::rd_kafka_message_t {
        // SAFETY: the pointer came from librdkafka, non-null, and is destroyed only on drop.
        unsafe { self.message.as_ref() }
    }
}

impl Drop for Batched<'_> {
    fn drop(&mut self) {
        // SAFETY: destroyed once, here; the consumer is alive (the source is borrowed).
        unsafe { rdsys::rd_kafka_message_destroy(self.message.as_ptr()) }
    }
}

/// The bytes at `ptr`, `len` long, or `None` for a null pointer.
///
/// # Safety
///
/// `ptr` must be null or point to `len` bytes that live as long as the result.
unsafe fn bytes<'a>(ptr: *mut std::ffi::c_void, len: usize) -> Option<&'a [u8]> {
    if ptr.is_null() {
        None
    } else {
        // SAFETY: see the function's contract.
        Some(unsafe { std::slice::from_raw_parts(ptr.cast::<u8>(), len) })
    }
}

impl std::fmt::Debug for SourceMessage<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceMessage")
            .field("partition", &self.partition())
            .field("offset", &self.offset())
            .finish_non_exhaustive()
    }
}

impl SourceMessage<'_> {
    /// Its partition.
    pub fn partition(&self) -> Partition {
        Partition(match &self.message {
            Held::Borrowed(message) => message.partition(),
            Held::Batched(message) => message.raw().partition,
        })
    }

    /// Its offset.
    pub fn offset(&self) -> Offset {
        Offset(match &self.message {
            Held::Borrowed(message) => message.offset(),
            Held::Batched(message) => message.raw().offset,
        })
    }

    /// Its value; `None` for a tombstone.
    pub fn payload(&self) -> Option<&[u8]> {
        match &self.message {
            Held::Borrowed(message) => message.payload(),
            Held::Batched(message) => {
                let raw = message.raw();
                // SAFETY: librdkafka's payload of `len` bytes, alive with the message.
                unsafe { bytes(raw.payload, raw.len) }
            }
        }
    }

    /// Its key.
    pub fn key(&self) -> Option<&[u8]> {
        match &self.message {
            Held::Borrowed(message) => message.key(),
            Held::Batched(message) => {
                let raw = message.raw();
                // SAFETY: librdkafka's key of `key_len` bytes, alive with the message.
                unsafe { bytes(raw.key, raw.key_len) }
            }
        }
    }
}

/// What one poll gave.
#[derive(Debug)]
pub enum Polled<'a> {
    /// A message.
    Message(SourceMessage<'a>),
    /// The end of a partition was reached (a rebuild is complete when this comes).
    PartitionEof(Partition),
    /// Nothing within the timeout, or a rebalance (see [`KafkaSource::take_rebalance`]).
    Nothing,
    /// A consumer error; librdkafka retries on its own, so this is for logging.
    Error(KafkaError),
}

/// A librdkafka queue handle, destroyed on drop.
struct QueueHandle(NonNull<rdsys::rd_kafka_queue_t>);

// SAFETY: librdkafka's queues are locked internally; a handle may be used from any thread.
unsafe impl Send for QueueHandle {}
// SAFETY: as above.
unsafe impl Sync for QueueHandle {}

impl Drop for QueueHandle {
    fn drop(&mut self) {
        // SAFETY: the handle is destroyed once, here, before the consumer (field order).
        unsafe { rdsys::rd_kafka_queue_destroy(self.0.as_ptr()) }
    }
}

/// The queue every assigned partition's messages are forwarded to, read in batches, and
/// the partitions' own queue handles (kept: forwarding lasts while they are held).
struct Batches {
    queue: QueueHandle,
    partitions: Mutex<HashMap<i32, QueueHandle>>,
}

impl Batches {
    /// Forwards a partition's queue to the batch queue.
    fn forward(&self, partition: &QueueHandle) {
        // SAFETY: both queues are alive; forwarding is undone when `Batches` drops.
        unsafe { rdsys::rd_kafka_queue_forward(partition.0.as_ptr(), self.queue.0.as_ptr()) }
    }
}

impl Drop for Batches {
    fn drop(&mut self) {
        // Back to the consumer's queue, where closing the consumer serves what is left.
        let partitions = self
            .partitions
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for handle in partitions.values() {
            // SAFETY: a live handle; forwarding to null restores the default.
            unsafe { rdsys::rd_kafka_queue_forward(handle.0.as_ptr(), std::ptr::null_mut()) }
        }
    }
}

/// The ledger topic's consumer, a member of the consumer group.
pub struct KafkaSource {
    /// Declared before the consumer: its queues are destroyed first.
    batches: Batches,
    consumer: BaseConsumer<SourceContext>,
    topic: String,
    /// A static member (`group.instance.id`) does not leave the group when it closes.
    static_member: bool,
}

impl std::fmt::Debug for KafkaSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSource")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

pub(crate) fn client_config(settings: &KafkaSettings) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", &settings.brokers);
    for (key, value) in &settings.properties {
        config.set(key, value);
    }
    config
}

/// The configuration of a client that is not a consumer (producers, admin): the passthrough
/// properties without the consumer's own.
pub(crate) fn producer_config(settings: &KafkaSettings) -> ClientConfig {
    let mut config = client_config(settings);
    for property in ["group.id", "auto.offset.reset", "enable.auto.commit"] {
        config.remove(property);
    }
    config
}

impl KafkaSource {
    /// Creates the consumer and subscribes to the topic. Joining the group happens in
    /// `poll`. Sets, whatever `kafka.properties` says: `group.id`, no auto commit and no
    /// auto offset store (offsets are committed only after a durable checkpoint), partition
    /// EOF events (a rebuild is complete at the end of its partition), `group.instance.id`
    /// when the settings name one; and as defaults `auto.offset.reset = earliest` for an
    /// offset that left the log, `fetch.queue.backoff.ms = 10` (librdkafka: 1000) and
    /// `session.timeout.ms` = [`SESSION_TIMEOUT_MS_DEFAULT`] (librdkafka: 45000).
    pub fn new(settings: &KafkaSettings) -> Result<KafkaSource, ConsumerError> {
        let mut config = client_config(settings);
        if let Some(id) = &settings.group_instance_id {
            config.set("group.instance.id", id);
        }
        // With the KIP-848 protocol the broker owns the session timeout, and librdkafka
        // refuses the property.
        let kip_848 = settings
            .properties
            .get("group.protocol")
            .is_some_and(|p| p == "consumer");
        if !settings.properties.contains_key("session.timeout.ms") && !kip_848 {
            config.set("session.timeout.ms", SESSION_TIMEOUT_MS_DEFAULT.to_string());
        }
        config
            .set("group.id", &settings.group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "true")
            .set(
                "statistics.interval.ms",
                settings.statistics_interval.as_millis().to_string(),
            );
        if !settings.properties.contains_key("auto.offset.reset") {
            config.set("auto.offset.reset", "earliest");
        }
        // librdkafka 2.12 stops fetching for fetch.queue.backoff.ms (1 s by default) when its
        // local queue is full. A consumer slower than the broker (this one parses every
        // message) then idles most of each second: measured 0.13M instead of 0.35M events/s.
        if !settings.properties.contains_key("fetch.queue.backoff.ms") {
            config.set("fetch.queue.backoff.ms", "10");
        }
        let context = SourceContext {
            topic: settings.topic.clone(),
            pending: Mutex::new(Vec::new()),
            has_pending: AtomicBool::new(false),
            watermarks: Watermarks::default(),
            commit_failures: AtomicI64::new(0),
        };
        let consumer: BaseConsumer<SourceContext> =
            config
                .create_with_context(context)
                .map_err(|source| ConsumerError::Kafka {
                    what: "create the consumer".to_owned(),
                    source,
                })?;
        consumer
            .subscribe(&[&settings.topic])
            .map_err(|source| ConsumerError::Kafka {
                what: format!("subscribe to {}", settings.topic),
                source,
            })?;
        // SAFETY: the consumer's handle is valid; the new queue is owned by `batches`.
        let queue =
            NonNull::new(unsafe { rdsys::rd_kafka_queue_new(consumer.client().native_ptr()) })
                .ok_or_else(|| {
                    ConsumerError::Queue("librdkafka could not create a queue".to_owned())
                })?;
        Ok(KafkaSource {
            batches: Batches {
                queue: QueueHandle(queue),
                partitions: Mutex::new(HashMap::new()),
            },
            consumer,
            topic: settings.topic.clone(),
            static_member: settings.group_instance_id.is_some(),
        })
    }

    /// Polls for one message or event, waiting at most `timeout`.
    pub fn poll(&self, timeout: Duration) -> Polled<'_> {
        match self.consumer.poll(timeout) {
            None => Polled::Nothing,
            // The consumer subscribes to, and is assigned partitions of, its one topic
            // only: a message's topic is not compared (measured: 1 % of the loop's time,
            // to find and check the name of every message's topic).
            Some(Ok(message)) => Polled::Message(SourceMessage {
                message: Held::Borrowed(message),
            }),
            Some(Err(KafkaError::PartitionEOF(partition))) => {
                Polled::PartitionEof(Partition(partition))
            }
            Some(Err(error)) => Polled::Error(error),
        }
    }

    /// Reads up to `max` messages of the assigned partitions, and the ends of partitions and
    /// errors among them, in order, into `out`. Like librdkafka's batch read, it waits until
    /// it has `max` or `timeout` has passed: ask for one with a timeout to wait for the
    /// first message, then for more with none to take what is already there. One
    /// call of librdkafka's batch API (`rd_kafka_consume_batch_queue`) instead of one poll a
    /// message: measured in issue 12, a poll cost about as much as parsing the message, in
    /// locks, clock reads and allocation. Rebalances, consumer errors and statistics are not
    /// read here: [`KafkaSource::poll`] serves them.
    ///
    /// At most 256 are read per call. Returns `true` when librdkafka held fewer than were
    /// asked for: its queue is now empty.
    pub fn poll_batch<'a>(
        &'a self,
        timeout: Duration,
        max: usize,
        out: &mut Vec<Polled<'a>>,
    ) -> bool {
        const CHUNK: usize = 256;
        let mut raw = [std::ptr::null_mut::<rdsys::rd_kafka_message_t>(); CHUNK];
        let timeout_ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        let asked = max.min(CHUNK);
        // SAFETY: the queue is alive with `self`; librdkafka writes at most `CHUNK` pointers.
        let count = unsafe {
            rdsys::rd_kafka_consume_batch_queue(
                self.batches.queue.0.as_ptr(),
                timeout_ms,
                raw.as_mut_ptr(),
                asked,
            )
        };
        let count = usize::try_from(count).unwrap_or(0);
        out.extend(raw[..count].iter().filter_map(|&message| {
            let message = Batched {
                message: NonNull::new(message)?,
                source: PhantomData,
            };
            let (err, partition) = (message.raw().err, message.raw().partition);
            Some(match err {
                RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR => Polled::Message(SourceMessage {
                    message: Held::Batched(message),
                }),
                RDKafkaRespErr::RD_KAFKA_RESP_ERR__PARTITION_EOF => {
                    Polled::PartitionEof(Partition(partition))
                }
                other => Polled::Error(KafkaError::MessageConsumption(other.into())),
            })
        }));
        count < asked
    }

    /// Returns `true` when a rebalance waits for [`KafkaSource::take_rebalance`]. A batch of
    /// messages ends there, so that the rebalance is handled after exactly the messages
    /// polled before it, as when messages are taken one at a time.
    pub fn rebalance_pending(&self) -> bool {
        self.consumer.context().has_pending.load(Ordering::Acquire)
    }

    /// Returns the rebalances that happened since the last call, in order. Cheap when none.
    pub fn take_rebalance(&self) -> Vec<Rebalance> {
        let context = self.consumer.context();
        if !context.has_pending.swap(false, Ordering::AcqRel) {
            return Vec::new();
        }
        std::mem::take(&mut *context.pending.lock().expect("no panic holds this lock"))
    }

    /// Assigns partitions (after [`Rebalance::Assign`]), each from its start.
    pub fn assign(&self, starts: &[(Partition, StartAt)]) -> Result<(), ConsumerError> {
        self.forward(starts.iter().map(|(partition, _)| *partition))?;
        let mut tpl = TopicPartitionList::new();
        for (partition, start) in starts {
            let offset = match start {
                StartAt::Beginning => KafkaOffset::Beginning,
                StartAt::Offset(offset) => KafkaOffset::Offset(offset.0),
            };
            tpl.add_partition_offset(&self.topic, partition.0, offset)
                .map_err(|source| ConsumerError::Kafka {
                    what: format!("set the start of partition {}", partition.0),
                    source,
                })?;
        }
        let result = match self.consumer.rebalance_protocol() {
            RebalanceProtocol::Cooperative => self.consumer.incremental_assign(&tpl),
            _ => self.consumer.assign(&tpl),
        };
        result.map_err(|source| ConsumerError::Kafka {
            what: "assign partitions".to_owned(),
            source,
        })
    }

    /// Sends the messages of `partitions` to the queue [`KafkaSource::poll_batch`] reads,
    /// before they are assigned. librdkafka clears a partition's forwarding when it stops
    /// fetching it (a revocation) and, once the application has forwarded it, never sets
    /// it again: so every assignment forwards again (the stop of a revocation is complete
    /// before the group's next assignment), and [`KafkaSource::keep_forwarded`] repairs
    /// any other stop.
    fn forward(&self, partitions: impl Iterator<Item = Partition>) -> Result<(), ConsumerError> {
        let topic = std::ffi::CString::new(self.topic.as_str()).map_err(|_| {
            ConsumerError::Queue(format!("topic {:?} holds a NUL byte", self.topic))
        })?;
        let mut forwarded = self
            .batches
            .partitions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for partition in partitions {
            let handle = match forwarded.entry(partition.0) {
                std::collections::hash_map::Entry::Occupied(entry) => entry.into_mut(),
                std::collections::hash_map::Entry::Vacant(entry) => {
                    // SAFETY: valid consumer handle and C string; the result is null or a
                    // queue handle that `QueueHandle` destroys.
                    let handle = unsafe {
                        rdsys::rd_kafka_queue_get_partition(
                            self.consumer.client().native_ptr(),
                            topic.as_ptr(),
                            partition.0,
                        )
                    };
                    entry.insert(QueueHandle(NonNull::new(handle).ok_or_else(|| {
                        ConsumerError::Queue(format!(
                            "librdkafka has no queue for partition {} of {}",
                            partition.0, self.topic
                        ))
                    })?))
                }
            };
            self.batches.forward(handle);
        }
        Ok(())
    }

    /// Forwards every partition ever assigned to the batch queue again: cheap, and harmless
    /// for one no longer assigned (nothing is fetched for it). Messages a partition's queue
    /// holds meanwhile move to the batch queue in their order. Called in the loop's
    /// service pass, so that no stop of a partition's fetching (librdkafka clears its
    /// forwarding then) leaves its messages unread for long.
    pub fn keep_forwarded(&self) {
        let forwarded = self
            .batches
            .partitions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for handle in forwarded.values() {
            self.batches.forward(handle);
        }
    }

    /// Pauses or resumes fetching every assigned partition (polling goes on); on resume,
    /// the partitions in `held` stay paused.
    pub fn set_paused(&self, paused: bool, held: &[Partition]) -> Result<(), ConsumerError> {
        let mut assignment = self
            .consumer
            .assignment()
            .map_err(|source| ConsumerError::Kafka {
                what: "read the assignment".to_owned(),
                source,
            })?;
        if !paused && !held.is_empty() {
            let mut kept = TopicPartitionList::new();
            for element in assignment.elements() {
                if !(element.topic() == self.topic
                    && held.contains(&Partition(element.partition())))
                {
                    kept.add_partition(element.topic(), element.partition());
                }
            }
            assignment = kept;
        }
        let result = if paused {
            self.consumer.pause(&assignment)
        } else {
            self.consumer.resume(&assignment)
        };
        result.map_err(|source| ConsumerError::Kafka {
            what: if paused { "pause" } else { "resume" }.to_owned(),
            source,
        })
    }

    /// Pauses fetching `partitions` (assigned ones whose history is missing: they are not read
    /// until the process restarts with `ledger.accept_truncated_history`).
    pub fn pause_partitions(&self, partitions: &[Partition]) -> Result<(), ConsumerError> {
        if partitions.is_empty() {
            return Ok(());
        }
        let mut tpl = TopicPartitionList::new();
        for partition in partitions {
            tpl.add_partition(&self.topic, partition.0);
        }
        self.consumer
            .pause(&tpl)
            .map_err(|source| ConsumerError::Kafka {
                what: "pause partitions".to_owned(),
                source,
            })
    }

    /// Returns the log start offset of `partition` (its low watermark, from a ListOffsets
    /// request): the first offset the broker still holds. Blocks up to `timeout`.
    pub fn log_start_offset(
        &self,
        partition: Partition,
        timeout: Duration,
    ) -> Result<Offset, ConsumerError> {
        self.consumer
            .fetch_watermarks(&self.topic, partition.0, timeout)
            .map(|(low, _high)| Offset(low))
            .map_err(|source| ConsumerError::Kafka {
                what: format!(
                    "read the log start offset of partition {} of {}",
                    partition.0, self.topic
                ),
                source,
            })
    }

    /// Returns the low and high watermarks of a partition of any topic (ListOffsets on this
    /// consumer's connections). Blocks up to `timeout`.
    pub fn watermarks(
        &self,
        topic: &str,
        partition: i32,
        timeout: Duration,
    ) -> Result<(i64, i64), ConsumerError> {
        self.consumer
            .fetch_watermarks(topic, partition, timeout)
            .map_err(|source| ConsumerError::Kafka {
                what: format!("read the watermarks of partition {partition} of {topic}"),
                source,
            })
    }

    /// Commits offsets (the next offset to read of each partition) to Kafka, asynchronously.
    /// Call only once the checkpoint holding them is durable.
    pub fn commit(&self, offsets: &[(Partition, Offset)]) -> Result<(), ConsumerError> {
        if offsets.is_empty() {
            return Ok(());
        }
        let mut tpl = TopicPartitionList::new();
        for (partition, offset) in offsets {
            tpl.add_partition_offset(&self.topic, partition.0, KafkaOffset::Offset(offset.0))
                .map_err(|source| ConsumerError::Kafka {
                    what: format!("commit partition {}", partition.0),
                    source,
                })?;
        }
        self.consumer
            .commit(&tpl, CommitMode::Async)
            .map_err(|source| ConsumerError::Kafka {
                what: "commit offsets".to_owned(),
                source,
            })
    }

    /// Returns the latest high watermark librdkafka reported for each partition.
    pub fn high_watermarks(&self) -> HashMap<i32, i64> {
        self.consumer
            .context()
            .watermarks
            .high
            .lock()
            .expect("no panic holds this lock")
            .clone()
    }

    /// Returns the number of failed asynchronous commits.
    pub fn commit_failures(&self) -> i64 {
        self.consumer
            .context()
            .commit_failures
            .load(Ordering::Relaxed)
    }

    /// Leaves the group: unsubscribes and closes the consumer, serving the final revoke. A
    /// static member only closes: unsubscribing would send a LeaveGroup, and KIP-345 has a
    /// static member keep its partitions until it comes back within the session timeout.
    pub fn close(self) {
        let KafkaSource {
            batches,
            consumer,
            static_member,
            ..
        } = self;
        if !static_member {
            consumer.unsubscribe();
        }
        // librdkafka's destroy waits for every queue handle to be released.
        drop(batches);
        drop(consumer);
    }
}

/// One message for the dead-letter topic: the original bytes and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// The original key.
    pub key: Option<Vec<u8>>,
    /// The original value, unchanged.
    pub payload: Vec<u8>,
    /// The rejection reason code.
    pub reason: &'static str,
    /// The error text.
    pub error: String,
    /// Source partition.
    pub partition: Partition,
    /// Source offset.
    pub offset: Offset,
}

/// Header names on every dead-lettered message.
pub mod headers {
    /// The rejection reason code.
    pub const REASON: &str = "marginstream.reason";
    /// The error text.
    pub const ERROR: &str = "marginstream.error";
    /// The source topic.
    pub const TOPIC: &str = "marginstream.source.topic";
    /// The source partition, in decimal.
    pub const PARTITION: &str = "marginstream.source.partition";
    /// The source offset, in decimal.
    pub const OFFSET: &str = "marginstream.source.offset";
}

/// A dead letter on its way, numbered in the order it was sent.
#[derive(Debug)]
pub struct Queued {
    sequence: u64,
    letter: DeadLetter,
}

/// The shortest and the longest wait before a failed dead letter is produced again.
const RETRY_BACKOFF_MIN: Duration = Duration::from_millis(100);
const RETRY_BACKOFF_MAX: Duration = Duration::from_secs(5);
/// At most one warning about failed dead letters per this long.
const WARN_EVERY: Duration = Duration::from_secs(5);

/// What the sink tracks under one lock (touched only by rejected messages, which are rare).
#[derive(Debug)]
struct SinkState {
    /// Sequence numbers sent and not yet acknowledged (in flight or waiting for a retry).
    outstanding: std::collections::BTreeSet<u64>,
    /// Failed letters, produced again at `retry_at`. Boxed: the box is the delivery opaque
    /// librdkafka hands back, moved, not copied.
    #[allow(clippy::vec_box)]
    failed: Vec<Box<Queued>>,
    retry_at: std::time::Instant,
    backoff: Duration,
    /// Failures since the last warning, and when it was written.
    unreported: u64,
    warned_at: Option<std::time::Instant>,
}

impl SinkState {
    fn fail(&mut self, queued: Box<Queued>, error: &dyn std::fmt::Display) {
        let now = std::time::Instant::now();
        if self.failed.is_empty() {
            self.retry_at = now + self.backoff;
            self.backoff = (self.backoff * 2).min(RETRY_BACKOFF_MAX);
        }
        self.unreported += 1;
        if self
            .warned_at
            .is_none_or(|at| now.duration_since(at) >= WARN_EVERY)
        {
            tracing::warn!(
                failures = self.unreported,
                partition = queued.letter.partition.0,
                offset = queued.letter.offset.0,
                error = %error,
                "failed to write to the dead-letter topic; retrying (offsets hold until it is written)"
            );
            self.unreported = 0;
            self.warned_at = Some(now);
        }
        self.failed.push(queued);
    }
}

/// The dead-letter producer's context: which letters are acknowledged, which to retry.
pub struct DeadLetterContext {
    state: Mutex<SinkState>,
    delivered: AtomicI64,
    failures: AtomicI64,
}

impl DeadLetterContext {
    fn state(&self) -> std::sync::MutexGuard<'_, SinkState> {
        self.state.lock().expect("no panic holds this lock")
    }
}

impl ClientContext for DeadLetterContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        log_librdkafka(level, fac, log_message);
    }
}

impl ProducerContext for DeadLetterContext {
    type DeliveryOpaque = Box<Queued>;

    fn delivery(&self, result: &DeliveryResult<'_>, queued: Box<Queued>) {
        match result {
            Ok(_) => {
                self.delivered.fetch_add(1, Ordering::Relaxed);
                let mut state = self.state();
                state.outstanding.remove(&queued.sequence);
                state.backoff = RETRY_BACKOFF_MIN;
            }
            Err((error, _)) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                self.state().fail(queued, error);
            }
        }
    }
}

/// Writes rejected messages to the dead-letter topic, idempotently and with `acks=all`,
/// and keeps every message until the broker acknowledges it: a failed delivery is
/// produced again (after 0.1 s, doubling to 5 s while failures go on), never dropped.
///
/// Letters are numbered as they are sent; [`DeadLetterSink::acknowledged_through`] says up
/// to which number every one is written, so a checkpoint taken after letter `n` becomes
/// durable only once letters `1..=n` are.
pub struct DeadLetterSink {
    producer: BaseProducer<DeadLetterContext>,
    topic: String,
    source_topic: String,
    sent: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for DeadLetterSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeadLetterSink")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl DeadLetterSink {
    /// Creates the producer. `message.timeout.ms` defaults to 30 s here (librdkafka: 300 s),
    /// so that a failing topic is noticed and retried by the sink while the consumer waits.
    pub fn new(settings: &KafkaSettings) -> Result<DeadLetterSink, ConsumerError> {
        let mut config = producer_config(settings);
        config
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5");
        if !settings.properties.contains_key("message.timeout.ms") {
            config.set("message.timeout.ms", "30000");
        }
        let context = DeadLetterContext {
            state: Mutex::new(SinkState {
                outstanding: std::collections::BTreeSet::new(),
                failed: Vec::new(),
                retry_at: std::time::Instant::now(),
                backoff: RETRY_BACKOFF_MIN,
                unreported: 0,
                warned_at: None,
            }),
            delivered: AtomicI64::new(0),
            failures: AtomicI64::new(0),
        };
        let producer: BaseProducer<DeadLetterContext> = config
            .create_with_context(context)
            .map_err(|source| ConsumerError::Kafka {
                what: "create the dead-letter producer".to_owned(),
                source,
            })?;
        Ok(DeadLetterSink {
            producer,
            topic: settings.dlq_topic.clone(),
            source_topic: settings.topic.clone(),
            sent: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// Queues one message and returns its sequence number. It is kept (and retried) until
    /// delivered.
    pub fn send(&self, letter: DeadLetter) -> u64 {
        let sequence = self.sent.fetch_add(1, Ordering::AcqRel) + 1;
        self.producer.context().state().outstanding.insert(sequence);
        self.produce(Box::new(Queued { sequence, letter }));
        sequence
    }

    fn produce(&self, queued: Box<Queued>) {
        let letter = &queued.letter;
        let partition = letter.partition.0.to_string();
        let offset = letter.offset.0.to_string();
        let headers = OwnedHeaders::new_with_capacity(5)
            .insert(Header {
                key: headers::REASON,
                value: Some(letter.reason),
            })
            .insert(Header {
                key: headers::ERROR,
                value: Some(letter.error.as_str()),
            })
            .insert(Header {
                key: headers::TOPIC,
                value: Some(self.source_topic.as_str()),
            })
            .insert(Header {
                key: headers::PARTITION,
                value: Some(partition.as_str()),
            })
            .insert(Header {
                key: headers::OFFSET,
                value: Some(offset.as_str()),
            });
        // The record borrows from the letter, which travels as the delivery opaque: copy the
        // bytes out first (librdkafka copies them again; a rejected message is rare).
        let payload = letter.payload.clone();
        let key = letter.key.clone();
        let mut record = BaseRecord::with_opaque_to(&self.topic, queued)
            .payload(&payload)
            .headers(headers);
        if let Some(key) = &key {
            record = record.key(key);
        }
        if let Err((error, record)) = self.producer.send(record) {
            // Queue full or a local error: keep it for the next retry round.
            let context = self.producer.context();
            context.failures.fetch_add(1, Ordering::Relaxed);
            context.state().fail(record.delivery_opaque, &error);
        }
    }

    /// Serves delivery reports and produces failed messages again once their wait is over.
    pub fn poll(&self) {
        self.producer.poll(Duration::ZERO);
        let due = {
            let mut state = self.producer.context().state();
            if state.failed.is_empty() || std::time::Instant::now() < state.retry_at {
                return;
            }
            std::mem::take(&mut state.failed)
        };
        for queued in due {
            self.produce(queued);
        }
    }

    /// Returns the messages not yet acknowledged (in flight or waiting for a retry).
    pub fn pending(&self) -> i64 {
        self.producer.context().state().outstanding.len() as i64
    }

    /// Returns the sequence number of the last letter sent (0 before the first).
    pub fn last_sent(&self) -> u64 {
        self.sent.load(Ordering::Acquire)
    }

    /// Returns `n` such that every letter numbered `1..=n` is acknowledged.
    pub fn acknowledged_through(&self) -> u64 {
        let state = self.producer.context().state();
        match state.outstanding.first() {
            Some(first) => first - 1,
            None => self.sent.load(Ordering::Acquire),
        }
    }

    /// Waits up to `timeout` for every message to be acknowledged; returns `true` if none is
    /// pending.
    pub fn flush(&self, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            self.poll();
            if self.pending() == 0 {
                return true;
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return false;
            }
            let _ = self.producer.flush(left.min(Duration::from_millis(100)));
        }
    }

    /// Returns (delivered, failed attempts) since start.
    pub fn stats(&self) -> (i64, i64) {
        let context = self.producer.context();
        (
            context.delivered.load(Ordering::Relaxed),
            context.failures.load(Ordering::Relaxed),
        )
    }
}

/// Creates topics that do not exist yet (an existing topic is left as it is), with one
/// replica. For the demo, the tests and `marginstream create-topics`: a production cluster's
/// topics are made by its operators.
pub async fn create_topics(
    settings: &KafkaSettings,
    topics: &[(&str, i32)],
) -> Result<(), ConsumerError> {
    let specs: Vec<crate::state::TopicSpec<'_>> = topics
        .iter()
        .map(|(name, partitions)| crate::state::TopicSpec {
            name,
            partitions: *partitions,
            replication: Some(1),
            config: Vec::new(),
        })
        .collect();
    crate::state::create_topics_with(settings, &specs).await
}

/// Produces ledger lines to the topic, keyed by `customer_id` (else `event_id`) as the
/// contract advises, so that a customer's events, and every repeat of an event, land on
/// one partition. For `marginstream produce`: the demo, the tests and the benchmarks.
pub struct LedgerProducer {
    producer: rdkafka::producer::ThreadedProducer<CountingContext>,
    topic: String,
}

/// Counts failed deliveries of the [`LedgerProducer`].
#[derive(Debug, Default)]
pub struct CountingContext {
    failed: AtomicI64,
}

impl ClientContext for CountingContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        log_librdkafka(level, fac, log_message);
    }
}

impl ProducerContext for CountingContext {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((error, _)) = result {
            self.failed.fetch_add(1, Ordering::Relaxed);
            tracing::error!(error = %error, "a ledger line was not delivered");
        }
    }
}

impl std::fmt::Debug for LedgerProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LedgerProducer")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

/// Returns the key of a ledger line: its `customer_id`, else its `event_id`, else nothing
/// (a line that is not an event goes to some partition, to be rejected there).
pub fn ledger_key(line: &[u8]) -> Option<Vec<u8>> {
    #[derive(serde::Deserialize)]
    struct Keys<'a> {
        #[serde(borrow, default)]
        customer_id: Option<std::borrow::Cow<'a, str>>,
        #[serde(borrow, default)]
        event_id: Option<std::borrow::Cow<'a, str>>,
    }
    let keys: Keys<'_> = serde_json::from_slice(line).ok()?;
    keys.customer_id
        .or(keys.event_id)
        .map(|k| k.as_bytes().to_vec())
}

impl LedgerProducer {
    /// Creates an idempotent producer (`acks=all`).
    pub fn new(settings: &KafkaSettings) -> Result<LedgerProducer, ConsumerError> {
        let mut config = producer_config(settings);
        config
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "20")
            .set("batch.num.messages", "10000")
            .set("queue.buffering.max.messages", "1000000");
        let producer = config
            .create_with_context(CountingContext::default())
            .map_err(|source| ConsumerError::Kafka {
                what: "create the producer".to_owned(),
                source,
            })?;
        Ok(LedgerProducer {
            producer,
            topic: settings.topic.clone(),
        })
    }

    /// Queues one line, waiting while the local queue is full.
    pub fn send(&self, line: &[u8]) -> Result<(), ConsumerError> {
        let key = ledger_key(line);
        let mut record: rdkafka::producer::BaseRecord<'_, [u8], [u8]> =
            rdkafka::producer::BaseRecord::to(&self.topic).payload(line);
        if let Some(key) = &key {
            record = record.key(key.as_slice());
        }
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    std::thread::sleep(Duration::from_millis(5));
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

    /// Waits for every queued line to be acknowledged; fails if any was not delivered.
    pub fn flush(&self, timeout: Duration) -> Result<(), ConsumerError> {
        self.producer
            .flush(timeout)
            .map_err(|source| ConsumerError::Kafka {
                what: format!("flush the producer of {}", self.topic),
                source,
            })?;
        let failed = self.producer.context().failed.load(Ordering::Relaxed);
        if failed > 0 {
            return Err(ConsumerError::Kafka {
                what: format!("deliver {failed} lines to {}", self.topic),
                source: KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut),
            });
        }
        Ok(())
    }
}

/// A batch read straight from the topic by [`TopicReader`]: the messages as lines, and
/// where each one came from.
#[derive(Debug, Default)]
pub struct TopicBatch {
    /// The messages' values; `number` is the message's position in the whole read (1-based),
    /// `truncated_from` is set for a value longer than the reader's `value_bytes_max`.
    pub batch: crate::jsonl::LineBatch,
    /// The partition and offset of each line.
    pub origins: Vec<(Partition, Offset)>,
}

/// The [`TopicReader`]'s context: logs through `tracing`, the end of a partition is no error.
pub struct ReaderContext;

impl ClientContext for ReaderContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        log_librdkafka(level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        warn_librdkafka_error(&error, reason);
    }
}

impl ConsumerContext for ReaderContext {}

/// Reads every partition of a topic from the beginning to its current end, without a
/// consumer group: for `replay --from-kafka`, which recomputes history from the topic.
pub struct TopicReader {
    consumer: BaseConsumer<ReaderContext>,
    topic: String,
    remaining: std::collections::HashSet<i32>,
    read: u64,
    value_bytes_max: usize,
}

impl std::fmt::Debug for TopicReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TopicReader")
            .field("topic", &self.topic)
            .field("remaining", &self.remaining)
            .finish_non_exhaustive()
    }
}

impl TopicReader {
    /// Assigns every partition of `settings.topic` from its beginning. Values longer than
    /// `value_bytes_max` are cut there and flagged, as the JSONL reader does.
    pub fn new(
        settings: &KafkaSettings,
        value_bytes_max: usize,
    ) -> Result<TopicReader, ConsumerError> {
        let mut config = client_config(settings);
        // librdkafka wants a group id even for a manual assignment; this one never joins a
        // group (no subscribe) and never commits.
        config
            .set(
                "group.id",
                format!("{}.replay.{}", settings.group_id, std::process::id()),
            )
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "true");
        let consumer: BaseConsumer<ReaderContext> = config
            .create_with_context(ReaderContext)
            .map_err(|source| ConsumerError::Kafka {
                what: "create the reader".to_owned(),
                source,
            })?;
        let metadata = consumer
            .fetch_metadata(Some(&settings.topic), Duration::from_secs(30))
            .map_err(|source| ConsumerError::Kafka {
                what: format!("read the metadata of {}", settings.topic),
                source,
            })?;
        let partitions: Vec<i32> = metadata
            .topics()
            .iter()
            .filter(|t| t.name() == settings.topic && t.error().is_none())
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        if partitions.is_empty() {
            return Err(ConsumerError::Kafka {
                what: format!(
                    "find the partitions of {} (does the topic exist?)",
                    settings.topic
                ),
                source: KafkaError::MetadataFetch(RDKafkaErrorCode::UnknownTopicOrPartition),
            });
        }
        let mut tpl = TopicPartitionList::new();
        for partition in &partitions {
            tpl.add_partition_offset(&settings.topic, *partition, KafkaOffset::Beginning)
                .map_err(|source| ConsumerError::Kafka {
                    what: format!("assign partition {partition}"),
                    source,
                })?;
        }
        consumer
            .assign(&tpl)
            .map_err(|source| ConsumerError::Kafka {
                what: format!("assign the partitions of {}", settings.topic),
                source,
            })?;
        Ok(TopicReader {
            consumer,
            topic: settings.topic.clone(),
            remaining: partitions.into_iter().collect(),
            read: 0,
            value_bytes_max,
        })
    }

    /// Returns the next batch of about `batch_bytes`, or `None` once every partition has
    /// reached the end it had when it was reached.
    pub fn next_batch(&mut self, batch_bytes: usize) -> Result<Option<TopicBatch>, ConsumerError> {
        let mut out = TopicBatch::default();
        while !self.remaining.is_empty() && out.batch.buffer.len() < batch_bytes {
            match self.consumer.poll(Duration::from_millis(200)) {
                None => {
                    if !out.batch.lines.is_empty() {
                        break;
                    }
                }
                Some(Ok(message)) => {
                    if message.topic() != self.topic {
                        continue;
                    }
                    let value = message.payload().unwrap_or_default();
                    let kept = &value[..value.len().min(self.value_bytes_max)];
                    let start = out.batch.buffer.len();
                    out.batch.buffer.extend_from_slice(kept);
                    self.read += 1;
                    out.batch.lines.push(crate::jsonl::LineRef {
                        start,
                        end: out.batch.buffer.len(),
                        number: self.read,
                        truncated_from: (kept.len() < value.len()).then_some(value.len() as u64),
                    });
                    out.origins
                        .push((Partition(message.partition()), Offset(message.offset())));
                }
                Some(Err(KafkaError::PartitionEOF(partition))) => {
                    self.remaining.remove(&partition);
                }
                Some(Err(error)) => {
                    tracing::warn!(error = %error, "kafka error while reading the topic (librdkafka retries)")
                }
            }
        }
        if out.batch.lines.is_empty() {
            return Ok(None);
        }
        Ok(Some(out))
    }

    /// Returns the messages read so far.
    pub fn messages_read(&self) -> u64 {
        self.read
    }
}
