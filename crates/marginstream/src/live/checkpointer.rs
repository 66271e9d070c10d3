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
use super::LiveSettings;
use crate::checkpoint::{self, PartitionCheckpoint, StateDir};

/// How long the final checkpoint waits for the dead letters before it.
const FINAL_DLQ_WAIT: Duration = Duration::from_secs(30);

/// A checkpoint for the writer thread: its bytes and the offsets it holds.
type Job = (Vec<u8>, Vec<(Partition, Offset)>);

/// A finished checkpoint write, back from the writer thread.
#[derive(Debug)]
struct Written {
    offsets: Vec<(Partition, Offset)>,
    result: anyhow::Result<Duration>,
    /// The checkpoint's bytes, handed back so the next one reuses the allocation.
    buffer: Vec<u8>,
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
}

impl Checkpointer {
    /// Locks `state.dir`, restores its checkpoint (refusing a corrupt or foreign one, which
    /// stops the process) and starts the writer thread. Returns the restored partitions.
    pub(super) fn open(
        settings: &LiveSettings,
        metrics: &SelfMetrics,
    ) -> anyhow::Result<(Checkpointer, Vec<PartitionCheckpoint>)> {
        let state = StateDir::open(&settings.state_dir)?;
        let restore_started = Instant::now();
        let restored = state.restore(
            &settings.kafka.topic,
            &settings.kafka.group_id,
            &settings.engine,
        )?;
        let restore_seconds = restore_started.elapsed().as_secs_f64();
        metrics.restore_duration.set(restore_seconds);
        let partitions = match restored {
            Some(restored) => {
                metrics
                    .restored_partitions
                    .set(restored.partitions.len() as i64);
                metrics.checkpoint_succeeded(restored.written_at);
                info!(
                    partitions = restored.partitions.len(),
                    bytes = restored.bytes,
                    seconds = restore_seconds,
                    "restored the checkpoint"
                );
                restored.partitions
            }
            None => {
                info!(dir = %settings.state_dir.display(), "no checkpoint: partitions will be read from the beginning");
                Vec::new()
            }
        };
        let (jobs, job_receiver) = crossbeam_channel::bounded::<Job>(1);
        let (written_sender, written) = crossbeam_channel::bounded::<Written>(1);
        let state = Arc::new(state);
        let writer = std::thread::Builder::new()
            .name("checkpoint-writer".to_owned())
            .spawn(move || {
                for (buffer, offsets) in job_receiver {
                    let result = state.write(&buffer);
                    let done = Written {
                        offsets,
                        result,
                        buffer,
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
            },
            partitions,
        ))
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
        match self.written.try_recv() {
            Ok(written) => self.finish_write(written, partitions, source, metrics),
            Err(TryRecvError::Empty) => {}
            Err(TryRecvError::Disconnected) => anyhow::bail!("the checkpoint writer thread died"),
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
        let parts = partitions
            .owned()
            .iter()
            .filter_map(|o| o.next.map(|next| (o.partition, next, o.rebuilt, &o.engine)));
        checkpoint::encode(
            &self.topic,
            &self.group_id,
            SystemTime::now(),
            parts,
            &mut buffer,
        );
        let offsets = partitions.offsets();
        metrics
            .checkpoint_duration
            .with_label_values(&["encode"])
            .set(started.elapsed().as_secs_f64());
        self.dirty = false;
        self.last_at = Instant::now();
        let needed = dlq.last_sent();
        if dlq.acknowledged_through() >= needed {
            self.send((buffer, offsets));
        } else {
            self.waiting = Some(((buffer, offsets), needed));
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
        self.writing = false;
        let bytes = written.buffer.len();
        self.buffer = written.buffer;
        match written.result {
            Ok(duration) => {
                metrics.checkpoints.inc();
                metrics.checkpoint_size.set(bytes as i64);
                metrics
                    .checkpoint_duration
                    .with_label_values(&["write"])
                    .set(duration.as_secs_f64());
                metrics.checkpoint_succeeded(SystemTime::now());
                // Commit only what is still ours; the checkpoint is the truth either way.
                let offsets: Vec<(Partition, Offset)> = written
                    .offsets
                    .into_iter()
                    .filter(|(p, _)| partitions.owns(*p))
                    .collect();
                if let Err(error) = source.commit(&offsets) {
                    warn!(error = %error, "failed to commit offsets to kafka (the checkpoint holds them)");
                }
            }
            Err(error) => {
                metrics.checkpoint_failures.inc();
                self.dirty = true;
                error!(error = %format!("{error:#}"), "checkpoint failed; offsets stay where the last one left them");
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
        if self.writing {
            if let Ok(written) = self.written.recv() {
                self.finish_write(written, partitions, source, metrics);
            }
        }
        if clean && (self.dirty || self.waiting.is_some()) {
            if dlq.flush(FINAL_DLQ_WAIT) {
                self.waiting = None;
                self.start(partitions, dlq, metrics, now);
                if self.writing {
                    if let Ok(written) = self.written.recv() {
                        self.finish_write(written, partitions, source, metrics);
                    }
                }
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
