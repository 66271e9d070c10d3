//! The checkpoint pipeline: restore at start, encode on the loop, write on a thread of its
//! own, commit offsets once durable, and the final checkpoint on shutdown.
//!
//! A checkpoint is taken at most every `state.checkpoint_interval`, and only when something
//! was consumed since the last one. It is encoded on the loop (a pause of milliseconds at
//! 100k customers, measured in `marginstream_checkpoint_duration_seconds{phase="encode"}`)
//! and written by the writer thread (write, fsync, rename, fsync of the directory), while the
//! loop goes on.
//!
//! **Never past a dead letter.** A checkpoint encoded after dead letter n is handed to the
//! writer only once letters 1..=n are acknowledged by the dead-letter topic: a restart from it
//! can then never skip a rejection. Until then it waits here, and the loop goes on.
//!
//! **Offsets follow durability.** Offsets are committed to Kafka only after the checkpoint
//! holding them is on disk, and only for partitions still owned. They serve lag monitoring;
//! the checkpoint is the truth.
//!
//! **The state topic.** Once the local checkpoint is durable, the writer thread also
//! publishes a snapshot of every partition whose offset moved since its last snapshot
//! (`state_store::StatePublisher`), from the same bytes: the engine is encoded once. A
//! snapshot therefore never goes past an unacknowledged dead letter either. The next
//! checkpoint starts once both are done.
//!
//! **Rules and rates.** The checkpoint records the tagging rules and rates its states were
//! built under. Restored under others, its partitions are restated when assigned (or, with
//! `ledger.on_rules_change = "refuse"`, the process stops naming what changed).

use std::collections::HashMap;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use crossbeam_channel::{Receiver, Sender, TryRecvError};
use marginstream_consumer::{DeadLetterSink, KafkaSource, Offset, Partition};
use marginstream_model::Timestamp;
use tracing::{error, info, warn};

use super::partitions::Partitions;
use super::self_metrics::SelfMetrics;
use super::state_store::{PublishReport, StatePublisher};
use super::LiveSettings;
use crate::checkpoint::{self, EncodedPart, Part, PartitionCheckpoint, StateDir};
use crate::fingerprint::{OnRulesChange, RulesChanged, RulesFingerprint};

/// How long the final checkpoint waits for the dead letters before it.
const FINAL_DLQ_WAIT: Duration = Duration::from_secs(30);

/// A checkpoint for the writer thread.
#[derive(Debug)]
struct Job {
    /// The checkpoint's bytes.
    buffer: Vec<u8>,
    /// The offsets it holds.
    offsets: Vec<(Partition, Offset)>,
    /// The partitions to publish to the state topic (their engines' bytes in `buffer`).
    publish: Vec<EncodedPart>,
    /// When it was encoded.
    written_at: SystemTime,
}

/// What the writer thread reports, twice per job: the local write as soon as it is durable
/// (its offsets are committed then), then the end of the job.
#[derive(Debug)]
enum Written {
    /// The local checkpoint file is written, or failed.
    Local {
        offsets: Vec<(Partition, Offset)>,
        result: anyhow::Result<Duration>,
        /// The checkpoint's size.
        bytes: usize,
    },
    /// The job is over: what was published to the state topic (when something was to be),
    /// and the bytes handed back so that the next checkpoint reuses the allocation.
    Done {
        published: Option<PublishReport>,
        buffer: Vec<u8>,
    },
}

/// What the checkpoint at start gave.
#[derive(Debug, Default)]
pub(super) struct Opened {
    /// Partitions to resume from the checkpoint.
    pub(super) partitions: Vec<PartitionCheckpoint>,
    /// Partitions of the checkpoint built under other rules or rates, to restate when
    /// assigned, with what changed.
    pub(super) restate: HashMap<Partition, Vec<String>>,
}

/// The checkpoint pipeline's state.
#[derive(Debug)]
pub(super) struct Checkpointer {
    topic: String,
    group_id: String,
    interval: Duration,
    /// To the writer thread; `None` once closed.
    jobs: Option<Sender<Job>>,
    written: Receiver<Written>,
    writer: Option<JoinHandle<()>>,
    /// Something was consumed since the last checkpoint was encoded.
    dirty: bool,
    last_at: Instant,
    /// A job is with the writer thread.
    writing: bool,
    buffer: Vec<u8>,
    /// An encoded checkpoint waiting for the dead letters before it to be acknowledged, with
    /// the number of the last of them.
    waiting: Option<(Job, u64)>,
    /// The rules and rates' canonical text, recorded in every checkpoint.
    rules: String,
    /// Whether snapshots are published (the state topic is on).
    publishing: bool,
    /// Per partition, the next offset of its latest snapshot in the state topic: a
    /// partition whose offset did not move is not published again.
    published: HashMap<Partition, Offset>,
    /// Per partition, the engine bytes of its latest snapshot.
    snapshot_bytes: HashMap<Partition, u64>,
}

impl Checkpointer {
    /// Locks `state.dir`, restores its checkpoint (refusing a corrupt or foreign one, which
    /// stops the process; one built under other rules is restated, or refused, as
    /// `ledger.on_rules_change` says) and starts the writer thread, which publishes to the
    /// state topic through `publisher` when there is one.
    pub(super) fn open(
        settings: &LiveSettings,
        metrics: &SelfMetrics,
        publisher: Option<StatePublisher>,
    ) -> anyhow::Result<(Checkpointer, Opened)> {
        let state = StateDir::open(&settings.state_dir)?;
        let restore_started = Instant::now();
        let restored = state.restore(
            &settings.kafka.topic,
            &settings.kafka.group_id,
            &settings.engine,
        )?;
        let restore_seconds = restore_started.elapsed().as_secs_f64();
        metrics.restore_duration.set(restore_seconds);
        let opened = match restored {
            Some(restored) => {
                metrics.checkpoint_succeeded(restored.written_at);
                let rules = &settings.restore.rules;
                let changes = match &restored.rules {
                    Some(text) => rules.changes_from(&RulesFingerprint::from_text(text.as_str())),
                    None => vec!["the checkpoint was written by an earlier version, which did not record the rules and rates".to_owned()],
                };
                let path = state.checkpoint_path();
                if changes.is_empty() {
                    metrics
                        .restored_partitions
                        .set(restored.partitions.len() as i64);
                    info!(
                        partitions = restored.partitions.len(),
                        bytes = restored.bytes,
                        seconds = restore_seconds,
                        "restored the checkpoint"
                    );
                    Opened {
                        partitions: restored.partitions,
                        restate: HashMap::new(),
                    }
                } else if settings.restore.on_rules_change == OnRulesChange::Refuse {
                    return Err(RulesChanged {
                        found_in: format!("the checkpoint {}", path.display()),
                        changes,
                    }
                    .into());
                } else {
                    warn!(
                        partitions = restored.partitions.len(),
                        changes = %changes.join("; "),
                        "the checkpoint was built under other tagging rules or rates: its partitions are restated when assigned"
                    );
                    Opened {
                        restate: restored
                            .partitions
                            .iter()
                            .map(|p| (p.partition, changes.clone()))
                            .collect(),
                        partitions: Vec::new(),
                    }
                }
            }
            None => {
                info!(dir = %settings.state_dir.display(), "no checkpoint: partitions come from the state topic or are read from the beginning");
                Opened::default()
            }
        };
        let (jobs, job_receiver) = crossbeam_channel::bounded::<Job>(1);
        let (written_sender, written) = crossbeam_channel::bounded::<Written>(2);
        let state = Arc::new(state);
        let publishing = publisher.is_some();
        let mut publisher = publisher;
        let writer = std::thread::Builder::new()
            .name("checkpoint-writer".to_owned())
            .spawn(move || {
                for job in job_receiver {
                    let result = state.write(&job.buffer);
                    let written = result.is_ok();
                    let local = Written::Local {
                        offsets: job.offsets,
                        result,
                        bytes: job.buffer.len(),
                    };
                    if written_sender.send(local).is_err() {
                        break;
                    }
                    let published = match &mut publisher {
                        Some(publisher) if written && !job.publish.is_empty() => {
                            Some(publisher.publish(&job.buffer, &job.publish, job.written_at))
                        }
                        _ => None,
                    };
                    let done = Written::Done {
                        published,
                        buffer: job.buffer,
                    };
                    if written_sender.send(done).is_err() {
                        break;
                    }
                }
            })
            .context("cannot start the checkpoint writer thread")?;
        Ok((
            Checkpointer {
                topic: settings.kafka.topic.clone(),
                group_id: settings.kafka.group_id.clone(),
                interval: settings.checkpoint_interval,
                jobs: Some(jobs),
                written,
                writer: Some(writer),
                dirty: false,
                last_at: Instant::now(),
                writing: false,
                buffer: Vec::new(),
                waiting: None,
                rules: settings.restore.rules.text().to_owned(),
                publishing,
                published: HashMap::new(),
                snapshot_bytes: HashMap::new(),
            },
            opened,
        ))
    }

    /// Notes that the state topic holds a snapshot of `partition` at `next` (it was restored
    /// from it): not published again until its offset moves.
    pub(super) fn note_published(&mut self, partition: Partition, next: Offset) {
        self.published.insert(partition, next);
    }

    /// Notes that the state changed since the last checkpoint.
    pub(super) fn mark_dirty(&mut self) {
        self.dirty = true;
    }

    /// The service pass: takes a finished write (committing its offsets), hands a waiting
    /// checkpoint to the writer once its dead letters are acknowledged, and starts a new one
    /// when due.
    pub(super) fn tick(
        &mut self,
        partitions: &mut Partitions,
        dlq: &DeadLetterSink,
        source: &KafkaSource,
        metrics: &SelfMetrics,
        now: Timestamp,
    ) -> anyhow::Result<()> {
        loop {
            match self.written.try_recv() {
                Ok(written) => self.finish_write(written, partitions, source, metrics),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    anyhow::bail!("the checkpoint writer thread died")
                }
            }
        }
        if self.writing {
            return Ok(());
        }
        if let Some((job, needed)) = self.waiting.take() {
            if dlq.acknowledged_through() >= needed {
                self.send(job);
            } else {
                self.waiting = Some((job, needed));
            }
        } else if self.dirty && self.last_at.elapsed() >= self.interval {
            self.start(partitions, dlq, metrics, now);
        }
        Ok(())
    }

    /// Encodes a checkpoint of every partition read so far and hands it to the writer, or
    /// keeps it waiting for the dead letters before it.
    fn start(
        &mut self,
        partitions: &mut Partitions,
        dlq: &DeadLetterSink,
        metrics: &SelfMetrics,
        now: Timestamp,
    ) {
        let started = Instant::now();
        partitions.align(now);
        let mut buffer = std::mem::take(&mut self.buffer);
        // A partition not read yet has nothing to keep: it is rebuilt either way.
        let parts = partitions.owned().iter().filter_map(|o| {
            o.next.map(|next| Part {
                partition: o.partition,
                next,
                rebuilt: o.rebuilt,
                truncated: o.truncated,
                engine: &o.engine,
            })
        });
        let written_at = SystemTime::now();
        let encoded = checkpoint::encode(
            &self.topic,
            &self.group_id,
            written_at,
            &self.rules,
            parts,
            &mut buffer,
        );
        let publish: Vec<EncodedPart> = if self.publishing {
            encoded
                .into_iter()
                .filter(|part| self.published.get(&part.partition) != Some(&part.next))
                .collect()
        } else {
            Vec::new()
        };
        let offsets = partitions.offsets();
        metrics
            .checkpoint_duration
            .with_label_values(&["encode"])
            .set(started.elapsed().as_secs_f64());
        self.dirty = false;
        self.last_at = Instant::now();
        let job = Job {
            buffer,
            offsets,
            publish,
            written_at,
        };
        let needed = dlq.last_sent();
        if dlq.acknowledged_through() >= needed {
            self.send(job);
        } else {
            self.waiting = Some((job, needed));
        }
    }

    fn send(&mut self, job: Job) {
        if let Some(jobs) = &self.jobs {
            if jobs.send(job).is_ok() {
                self.writing = true;
            }
        }
    }

    fn finish_write(
        &mut self,
        written: Written,
        partitions: &Partitions,
        source: &KafkaSource,
        metrics: &SelfMetrics,
    ) {
        match written {
            Written::Local {
                offsets,
                result: Ok(duration),
                bytes,
            } => {
                metrics.checkpoints.inc();
                metrics.checkpoint_size.set(bytes as i64);
                metrics
                    .checkpoint_duration
                    .with_label_values(&["write"])
                    .set(duration.as_secs_f64());
                metrics.checkpoint_succeeded(SystemTime::now());
                // Commit only what is still ours; the checkpoint is the truth either way.
                let offsets: Vec<(Partition, Offset)> = offsets
                    .into_iter()
                    .filter(|(p, _)| partitions.owns(*p))
                    .collect();
                if let Err(error) = source.commit(&offsets) {
                    warn!(error = %error, "failed to commit offsets to kafka (the checkpoint holds them)");
                }
            }
            Written::Local {
                result: Err(error), ..
            } => {
                metrics.checkpoint_failures.inc();
                self.dirty = true;
                error!(error = %format!("{error:#}"), "checkpoint failed; offsets stay where the last one left them");
            }
            Written::Done { published, buffer } => {
                self.writing = false;
                self.buffer = buffer;
                if let Some(report) = published {
                    self.published_report(report, partitions, metrics);
                }
            }
        }
    }

    /// Takes what a round of publishing to the state topic did.
    fn published_report(
        &mut self,
        report: PublishReport,
        partitions: &Partitions,
        metrics: &SelfMetrics,
    ) {
        metrics
            .checkpoint_duration
            .with_label_values(&["publish"])
            .set(report.duration.as_secs_f64());
        for (partition, result) in report.partitions {
            match result {
                Ok(published) => {
                    metrics.state_snapshots_published.inc();
                    self.published.insert(partition, published.next);
                    self.snapshot_bytes.insert(partition, published.bytes);
                }
                Err(error) => {
                    metrics.state_publish_failures.inc();
                    warn!(partition = partition.0, error = %error, "could not publish the partition's snapshot to the state topic; its previous one stays the latest");
                }
            }
        }
        let bytes: u64 = partitions
            .owned()
            .iter()
            .filter_map(|o| self.snapshot_bytes.get(&o.partition))
            .sum();
        metrics.state_snapshot_bytes.set(bytes as i64);
    }

    /// Waits for the job with the writer thread (if any) to be done.
    fn wait_for_writer(
        &mut self,
        partitions: &Partitions,
        source: &KafkaSource,
        metrics: &SelfMetrics,
    ) {
        while self.writing {
            match self.written.recv() {
                Ok(written) => self.finish_write(written, partitions, source, metrics),
                Err(_) => {
                    self.writing = false;
                }
            }
        }
    }

    /// Waits for a write in flight; then, when the loop ended cleanly (`clean`) and there is
    /// something new, writes the final checkpoint once every dead letter is acknowledged (at
    /// most [`FINAL_DLQ_WAIT`]). Stops the writer thread.
    pub(super) fn finish(
        mut self,
        clean: bool,
        partitions: &mut Partitions,
        dlq: &DeadLetterSink,
        source: &KafkaSource,
        metrics: &SelfMetrics,
        now: Timestamp,
    ) {
        self.wait_for_writer(partitions, source, metrics);
        if clean && (self.dirty || self.waiting.is_some()) {
            if dlq.flush(FINAL_DLQ_WAIT) {
                self.waiting = None;
                self.start(partitions, dlq, metrics, now);
                self.wait_for_writer(partitions, source, metrics);
            } else {
                error!(
                    pending = dlq.pending(),
                    "dead letters are still unacknowledged: no final checkpoint past them; the next start redoes the work since the last one"
                );
            }
        }
        self.jobs = None;
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}
