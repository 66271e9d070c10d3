//! The state topic's I/O for the loop: making sure the topic exists (at start, or at the
//! first assignment when the broker could not be reached before), reading partitions'
//! snapshots for a restore ([`StateStore::scan`], on the loop), and publishing snapshots
//! with each checkpoint ([`StatePublisher`], on the checkpoint writer's thread, after the
//! local checkpoint is durable). The records' format is `crate::state_topic`.
//!
//! **What the writer keeps.** After a snapshot of a partition is complete (every piece
//! acknowledged, then its manifest), the writer tombstones every other snapshot of that
//! partition it knows of but the previous complete one, which stays as the fallback should
//! the newest be found damaged. It learns a partition's snapshots from the restore that
//! read them or, before its first snapshot of a partition restored otherwise, by reading
//! the partition's keys once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use marginstream_consumer::state::{
    create_topics_with, partition_count, read_state_partitions, topic_config, StateProducer,
    TopicSpec,
};
use marginstream_consumer::{KafkaSettings, Offset, Partition};
use tracing::{debug, info, warn};

use crate::checkpoint::EncodedPart;
use crate::state_topic::{self, Expected, Kind, Live, Manifest, Scan, SnapshotId};

/// How long checking or creating the topic waits for the broker at start; an unreachable
/// broker defers the check to the first assignment, when it answered.
const START_CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// How long reading snapshots may take before the restore gives up (and rebuilds).
pub(super) const SCAN_TIMEOUT: Duration = Duration::from_secs(120);

/// How long a snapshot's records may take to be acknowledged before it is given up.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(60);

/// The configuration the state topic is created with: compacted, so that Kafka keeps the
/// latest record of each key; segments of 100 MiB (Kafka's default is 1 GiB), because only
/// closed segments are compacted and every checkpoint writes a whole snapshot.
pub const TOPIC_CONFIG: [(&str, &str); 2] = [
    ("cleanup.policy", "compact"),
    ("segment.bytes", "104857600"),
];

/// What every snapshot of this process says and expects: topic, group, configuration.
#[derive(Debug, Clone)]
pub(super) struct Identity {
    /// The ledger topic.
    pub(super) topic: String,
    /// The group.
    pub(super) group: String,
    /// `state_topic::engine_text` of the engine configuration.
    pub(super) engine: String,
    /// The rules and rates' canonical text.
    pub(super) rules: String,
}

impl Identity {
    pub(super) fn expected(&self) -> Expected<'_> {
        Expected {
            topic: &self.topic,
            group: &self.group,
            engine: &self.engine,
            rules: &self.rules,
        }
    }
}

/// The snapshots of each partition the writer knows still hold records, oldest first.
type Known = Arc<Mutex<HashMap<Partition, Vec<Live>>>>;

/// Runs an admin future on a throwaway current-thread runtime (the loop is not async).
fn block_on<F: std::future::Future>(future: F) -> anyhow::Result<F::Output> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start an async runtime for the admin client")?;
    Ok(runtime.block_on(future))
}

/// The loop's side of the state topic.
#[derive(Debug)]
pub(super) struct StateStore {
    kafka: KafkaSettings,
    /// The state topic.
    topic: String,
    identity: Identity,
    /// The state topic's partition count, once known (shared with the publisher).
    partitions: Arc<OnceLock<i32>>,
    known: Known,
}

impl StateStore {
    /// Prepares the state topic `topic`: checks it, or creates it when missing, if the broker
    /// answers within a few seconds (else at the first assignment).
    ///
    /// # Errors
    ///
    /// When the broker refuses to create the topic.
    pub(super) fn open(
        kafka: &KafkaSettings,
        topic: &str,
        identity: Identity,
    ) -> anyhow::Result<StateStore> {
        let store = StateStore {
            kafka: kafka.clone(),
            topic: topic.to_owned(),
            identity,
            partitions: Arc::new(OnceLock::new()),
            known: Arc::new(Mutex::new(HashMap::new())),
        };
        match store.ensure_within(START_CHECK_TIMEOUT) {
            Ok(_) => {}
            Err(Ensure::Unreachable(error)) => {
                warn!(error = %format!("{error:#}"), state_topic = %store.topic, "cannot check the state topic yet (the broker does not answer); checking at the first assignment");
            }
            Err(Ensure::Refused(error)) => return Err(error),
        }
        Ok(store)
    }

    /// Returns the state topic's name.
    pub(super) fn topic(&self) -> &str {
        &self.topic
    }

    /// Makes sure the topic exists (creating it when missing); returns its partition count.
    ///
    /// # Errors
    ///
    /// When the broker cannot be reached or refuses to create the topic.
    pub(super) fn ensure(&self) -> anyhow::Result<i32> {
        self.ensure_within(Duration::from_secs(30))
            .map_err(|error| match error {
                Ensure::Unreachable(error) | Ensure::Refused(error) => error,
            })
    }

    fn ensure_within(&self, timeout: Duration) -> Result<i32, Ensure> {
        if let Some(count) = self.partitions.get() {
            return Ok(*count);
        }
        let unreachable = |error: marginstream_consumer::ConsumerError| {
            Ensure::Unreachable(anyhow::Error::new(error))
        };
        let count = match partition_count(&self.kafka, &self.topic, timeout).map_err(unreachable)? {
            Some(count) => {
                self.check_policy();
                count
            }
            None => {
                let Some(ledger) = partition_count(&self.kafka, &self.identity.topic, timeout)
                    .map_err(unreachable)?
                else {
                    return Err(Ensure::Unreachable(anyhow::anyhow!(
                        "the ledger topic {} does not exist yet",
                        self.identity.topic
                    )));
                };
                let spec = TopicSpec {
                    name: &self.topic,
                    partitions: ledger,
                    replication: None,
                    config: TOPIC_CONFIG.to_vec(),
                };
                block_on(create_topics_with(&self.kafka, &[spec]))
                    .map_err(Ensure::Refused)?
                    .map_err(|error| {
                        Ensure::Refused(anyhow::Error::new(error).context(format!(
                            "cannot create the state topic {} (kafka.state_topic; an empty string turns it off)",
                            self.topic
                        )))
                    })?;
                info!(state_topic = %self.topic, partitions = ledger, "created the state topic (cleanup.policy = compact)");
                // A topic just created may take a moment to show in the metadata.
                let deadline = Instant::now() + timeout;
                loop {
                    match partition_count(&self.kafka, &self.topic, timeout) {
                        Ok(Some(count)) => break count,
                        _ if Instant::now() < deadline => {
                            std::thread::sleep(Duration::from_millis(100))
                        }
                        Ok(None) => {
                            return Err(Ensure::Refused(anyhow::anyhow!(
                            "the state topic {} was created but does not appear in the metadata",
                            self.topic
                        )))
                        }
                        Err(error) => return Err(unreachable(error)),
                    }
                }
            }
        };
        let _ = self.partitions.set(count);
        Ok(count)
    }

    /// Warns when the existing topic is not compacted: its snapshots would expire with its
    /// retention, and a partition not checkpointed since would have to be rebuilt.
    fn check_policy(&self) {
        match block_on(topic_config(&self.kafka, &self.topic, "cleanup.policy")) {
            Ok(Ok(Some(policy))) if policy.split(',').any(|p| p.trim() == "compact") => {}
            Ok(Ok(policy)) => warn!(
                state_topic = %self.topic,
                cleanup_policy = policy.as_deref().unwrap_or("(unknown)"),
                "the state topic is not compacted: its snapshots expire with its retention; set cleanup.policy = compact"
            ),
            Ok(Err(error)) => {
                debug!(error = %error, state_topic = %self.topic, "cannot read the state topic's cleanup.policy")
            }
            Err(error) => {
                debug!(error = %format!("{error:#}"), "cannot check the state topic's cleanup.policy")
            }
        }
    }

    /// Reads the snapshots of `partitions` (every record of their state partitions).
    /// `end_offset` asks the broker for a state partition's end (on a connection the loop
    /// has already): partitions that hold nothing are not read at all, which spares a new
    /// reader's connection and the broker's wait on an empty fetch.
    ///
    /// # Errors
    ///
    /// When the topic cannot be read to its end within [`SCAN_TIMEOUT`].
    pub(super) fn scan(
        &self,
        partitions: &[Partition],
        end_offset: impl Fn(&str, i32) -> anyhow::Result<i64>,
    ) -> anyhow::Result<HashMap<Partition, Scan>> {
        let count = self.ensure()?;
        let mut scans: HashMap<Partition, Scan> = partitions
            .iter()
            .map(|p| (*p, Scan::new(&self.identity.group, *p, true)))
            .collect();
        let mut state_partitions: Vec<i32> = partitions
            .iter()
            .map(|p| state_topic::state_partition(*p, count))
            .collect::<anyhow::Result<_>>()?;
        state_partitions.sort_unstable();
        state_partitions.dedup();
        // An empty partition has an end offset of 0 on any broker (Tansu's answer for the
        // end is short of the real one when the last batch holds several records, never 0
        // for a partition with records).
        let mut holding = Vec::with_capacity(state_partitions.len());
        for partition in state_partitions {
            match end_offset(&self.topic, partition) {
                Ok(0) => {}
                Ok(_) => holding.push(partition),
                Err(error) => {
                    debug!(error = %format!("{error:#}"), partition, "cannot read the state partition's end offset; reading it");
                    holding.push(partition);
                }
            }
        }
        let records = if holding.is_empty() {
            Vec::new()
        } else {
            read_state_partitions(&self.kafka, &self.topic, &holding, SCAN_TIMEOUT)
                .with_context(|| format!("cannot read the state topic {}", self.topic))?
        };
        for record in &records {
            for (partition, scan) in &mut scans {
                if state_topic::state_partition(*partition, count)? == record.partition {
                    scan.feed(&record.key, record.value.as_deref(), record.offset);
                }
            }
        }
        let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        for (partition, scan) in &scans {
            known.insert(*partition, scan.live(&self.identity.expected()));
        }
        Ok(scans)
    }

    /// Returns what every snapshot says and expects.
    pub(super) fn identity(&self) -> &Identity {
        &self.identity
    }

    /// Returns the publisher, for the checkpoint writer's thread.
    ///
    /// # Errors
    ///
    /// When librdkafka refuses to create the producer.
    pub(super) fn publisher(&self) -> anyhow::Result<StatePublisher> {
        Ok(StatePublisher {
            producer: StateProducer::new(&self.kafka, &self.topic)?,
            kafka: self.kafka.clone(),
            topic: self.topic.clone(),
            identity: self.identity.clone(),
            partitions: Arc::clone(&self.partitions),
            known: Arc::clone(&self.known),
            value: Vec::new(),
        })
    }
}

/// Why the topic could not be made sure of.
enum Ensure {
    /// The broker did not answer (or the ledger topic does not exist yet): try again later.
    Unreachable(anyhow::Error),
    /// The broker refused to create it: an error naming the topic.
    Refused(anyhow::Error),
}

/// One partition's snapshot published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Published {
    /// The snapshot.
    pub(super) snapshot: SnapshotId,
    /// Its next offset.
    pub(super) next: Offset,
    /// Its engine bytes.
    pub(super) bytes: u64,
}

/// What a round of publishing did, per partition.
#[derive(Debug, Default)]
pub(super) struct PublishReport {
    /// Each partition published, or why not.
    pub(super) partitions: Vec<(Partition, Result<Published, String>)>,
    /// The round's duration.
    pub(super) duration: Duration,
}

/// The writer thread's side: publishes snapshots and retires the old ones.
pub(super) struct StatePublisher {
    producer: StateProducer,
    kafka: KafkaSettings,
    topic: String,
    identity: Identity,
    partitions: Arc<OnceLock<i32>>,
    known: Known,
    /// A piece's value, reused.
    value: Vec<u8>,
}

impl std::fmt::Debug for StatePublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatePublisher")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl StatePublisher {
    /// Publishes a snapshot of each of `parts` (engine bytes in `buffer`, the checkpoint just
    /// made durable), then retires the snapshots no longer needed.
    pub(super) fn publish(
        &mut self,
        buffer: &[u8],
        parts: &[EncodedPart],
        written_at: SystemTime,
    ) -> PublishReport {
        let started = Instant::now();
        let mut report = PublishReport::default();
        let Some(count) = self.partitions.get().copied() else {
            for part in parts {
                report.partitions.push((
                    part.partition,
                    Err("the state topic was not checked yet".to_owned()),
                ));
            }
            return report;
        };
        for part in parts {
            let result = self
                .publish_one(count, buffer, part, written_at)
                .map_err(|error| format!("{error:#}"));
            report.partitions.push((part.partition, result));
        }
        report.duration = started.elapsed();
        report
    }

    fn publish_one(
        &mut self,
        count: i32,
        buffer: &[u8],
        part: &EncodedPart,
        written_at: SystemTime,
    ) -> anyhow::Result<Published> {
        let state_partition = state_topic::state_partition(part.partition, count)?;
        let bytes = &buffer[part.range.clone()];
        let since_epoch = written_at.duration_since(UNIX_EPOCH).unwrap_or_default();
        let snapshot = SnapshotId::new(part.partition, since_epoch.as_nanos());
        let manifest = state_topic::manifest_for(
            &self.identity.expected(),
            part.partition,
            snapshot,
            part.next,
            part.truncated,
            since_epoch.as_millis() as u64,
            bytes,
        );
        self.learn(part.partition, state_partition)?;
        // Known before it is written: a piece that reached the topic is retired even if
        // the snapshot is given up.
        self.with_known(part.partition, |known| {
            known.push(Live {
                snapshot,
                pieces: manifest.pieces,
                usable: false,
            })
        });
        self.write(state_partition, &manifest, bytes)?;
        self.with_known(part.partition, |known| {
            if let Some(live) = known.iter_mut().find(|l| l.snapshot == snapshot) {
                live.usable = true;
            }
        });
        if let Err(error) = self.retire(part.partition, state_partition) {
            // The snapshot is complete; the old ones are retired next time.
            warn!(partition = part.partition.0, error = %format!("{error:#}"), "could not retire old snapshots from the state topic");
        }
        Ok(Published {
            snapshot,
            next: part.next,
            bytes: bytes.len() as u64,
        })
    }

    /// Runs `f` on what is known of `partition`'s snapshots.
    fn with_known<R>(&self, partition: Partition, f: impl FnOnce(&mut Vec<Live>) -> R) -> R {
        let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        f(known.entry(partition).or_default())
    }

    /// Reads the keys of `partition`'s snapshots once, when no restore told of them.
    fn learn(&mut self, partition: Partition, state_partition: i32) -> anyhow::Result<()> {
        if self
            .known
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(&partition)
        {
            return Ok(());
        }
        let records =
            read_state_partitions(&self.kafka, &self.topic, &[state_partition], SCAN_TIMEOUT)?;
        let mut scan = Scan::new(&self.identity.group, partition, false);
        for record in &records {
            scan.feed(&record.key, record.value.as_deref(), record.offset);
        }
        let live = scan.live(&self.identity.expected());
        self.known
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(partition, live);
        Ok(())
    }

    /// Writes every piece, waits for them, then the manifest, and waits for it.
    fn write(
        &mut self,
        state_partition: i32,
        manifest: &Manifest,
        bytes: &[u8],
    ) -> anyhow::Result<()> {
        let group = &self.identity.group;
        for index in 0..manifest.pieces {
            state_topic::encode_piece(manifest.snapshot, index, bytes, &mut self.value);
            let key = state_topic::key(
                group,
                manifest.partition,
                manifest.snapshot,
                Kind::Piece(index),
            );
            self.producer
                .send(state_partition, &key, Some(&self.value))?;
        }
        self.producer.flush(PUBLISH_TIMEOUT)?;
        let key = state_topic::key(group, manifest.partition, manifest.snapshot, Kind::Manifest);
        self.producer
            .send(state_partition, &key, Some(&manifest.encode()))?;
        self.producer.flush(PUBLISH_TIMEOUT)?;
        Ok(())
    }

    /// Tombstones every known snapshot of `partition` but the newest two usable ones.
    fn retire(&mut self, partition: Partition, state_partition: i32) -> anyhow::Result<()> {
        let retired: Vec<Live> = self.with_known(partition, |known| {
            let mut kept = 0;
            let mut retired = Vec::new();
            for live in known.iter().rev() {
                if live.usable && kept < 2 {
                    kept += 1;
                } else {
                    retired.push(live.clone());
                }
            }
            retired
        });
        if retired.is_empty() {
            return Ok(());
        }
        let group = self.identity.group.clone();
        for live in &retired {
            // The manifest first: a reader never finds a manifest whose pieces are gone.
            let key = state_topic::key(&group, partition, live.snapshot, Kind::Manifest);
            self.producer.send(state_partition, &key, None)?;
            for index in 0..live.pieces {
                let key = state_topic::key(&group, partition, live.snapshot, Kind::Piece(index));
                self.producer.send(state_partition, &key, None)?;
            }
        }
        self.producer.flush(PUBLISH_TIMEOUT)?;
        self.with_known(partition, |known| {
            known.retain(|live| !retired.iter().any(|r| r.snapshot == live.snapshot))
        });
        debug!(
            partition = partition.0,
            retired = retired.len(),
            "retired old snapshots from the state topic"
        );
        Ok(())
    }
}
