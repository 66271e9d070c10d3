//! `marginstream run`'s loop: Kafka in, one engine per owned partition, checkpoints, and
//! the `/metrics` text on request.
//!
//! One thread owns everything that changes: the consumer, the engines, the dead-letter
//! producer and the renderer. It polls a message, applies it to its partition's engine,
//! and between messages serves scrapes (a request over a bounded channel, answered with the
//! rendered text) and checkpoints (encoded here, written by a second thread). No lock is
//! taken per message.
//!
//! **Exactly-once effect.** A partition's engine holds exactly the messages before its
//! next offset. A checkpoint stores both, and a restart seeks every partition to its
//! checkpointed offset: a kill -9 at any moment redoes the work since the last checkpoint,
//! never loses or repeats it. A checkpoint is taken only when the dead-letter topic has
//! acknowledged every rejected message before it, so a rejection is never skipped either.
//! Offsets are committed to Kafka only after the checkpoint holding them is durable; they
//! are for lag monitoring, the checkpoint is the truth.
//!
//! **Partitions.** A partition assigned with state (kept from before the rebalance, or in
//! the checkpoint) resumes from its offset; one without is rebuilt from the beginning of
//! the partition and its gauges are shown only once it has been read to the end. A revoked
//! partition's state is dropped, and its customers leave `/metrics`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use crossbeam_channel::{Receiver, Sender, TryRecvError};
use marginstream_aggregator::{ClockMode, Engine, EngineConfig, MergedView, Preparer};
use marginstream_consumer::kafka::DeadLetter;
use marginstream_consumer::{
    DeadLetterSink, KafkaSettings, KafkaSource, Offset, Partition, Polled, Rebalance, StartAt,
};
use marginstream_exporter::{RenderOptions, Renderer};
use marginstream_model::Timestamp;
use tracing::{error, info, warn};

use crate::checkpoint::{self, StateDir};
use crate::replay::wall_clock;

/// Everything `run` needs, validated.
#[derive(Debug, Clone)]
pub struct LiveSettings {
    /// The Kafka clients.
    pub kafka: KafkaSettings,
    /// The engine of every partition (the clock resolved).
    pub engine: EngineConfig,
    /// Parse, convert, tag.
    pub preparer: Preparer,
    /// The checkpoint directory.
    pub state_dir: std::path::PathBuf,
    /// Time between checkpoints.
    pub checkpoint_interval: Duration,
    /// Most dead letters waiting for acknowledgement before consumption pauses.
    pub dlq_pending_max: u64,
}

/// A request to the loop.
#[derive(Debug)]
pub enum Request {
    /// Render `/metrics` and send it back.
    Scrape(Sender<Vec<u8>>),
}

/// Readiness, as `/readyz` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Readiness {
    /// Restoring the checkpoint.
    Restoring = 0,
    /// Waiting for the group to assign partitions.
    Joining = 1,
    /// Some assigned partition is still being read to its end.
    CatchingUp = 2,
    /// Every assigned partition restored and caught up.
    Ready = 3,
    /// Shutting down.
    Stopping = 4,
}

impl Readiness {
    /// Returns a short description.
    pub fn describe(self) -> &'static str {
        match self {
            Readiness::Restoring => "restoring the checkpoint",
            Readiness::Joining => "joining the consumer group",
            Readiness::CatchingUp => "reading assigned partitions up to their end",
            Readiness::Ready => "ready",
            Readiness::Stopping => "stopping",
        }
    }
}

/// State shared with the HTTP server.
#[derive(Debug)]
pub struct Status {
    readiness: AtomicU8,
    /// Set when the loop has ended (the process is going down).
    pub finished: AtomicBool,
}

impl Default for Status {
    fn default() -> Status {
        Status {
            readiness: AtomicU8::new(Readiness::Restoring as u8),
            finished: AtomicBool::new(false),
        }
    }
}

impl Status {
    /// Returns the readiness.
    pub fn readiness(&self) -> Readiness {
        match self.readiness.load(Ordering::Acquire) {
            0 => Readiness::Restoring,
            1 => Readiness::Joining,
            2 => Readiness::CatchingUp,
            3 => Readiness::Ready,
            _ => Readiness::Stopping,
        }
    }

    fn set(&self, readiness: Readiness) {
        self.readiness.store(readiness as u8, Ordering::Release);
    }
}

/// One owned partition.
#[derive(Debug)]
struct Owned {
    partition: Partition,
    engine: Engine,
    /// The next offset to read; `None` before the first message of a rebuild.
    next: Option<Offset>,
    /// Read to its end once: its gauges are shown.
    rebuilt: bool,
    /// Read to its end since it was assigned.
    caught_up: bool,
}

/// The loop's own figures, for the self-metrics.
#[derive(Debug, Default)]
struct SelfMetrics {
    consumed: u64,
    rebalances: u64,
    checkpoints: u64,
    checkpoint_failures: u64,
    checkpoint_bytes: u64,
    checkpoint_encode_seconds: f64,
    checkpoint_write_seconds: f64,
    last_checkpoint: Option<SystemTime>,
    restore_seconds: f64,
    restored_partitions: u64,
    rate: f64,
    rate_at: Option<(Instant, u64)>,
    dlq_sent: u64,
    /// From `poll` returning a message to its effect being in the engine.
    apply_latency: LatencyHistogram,
    paused: bool,
    poll_errors: u64,
}

/// Latencies in nanoseconds, in buckets of a quarter of a power of two (at most 19 % wide):
/// 256 counters, no allocation per sample.
#[derive(Debug)]
struct LatencyHistogram {
    counts: [u64; 256],
    total: u64,
    sum_nanos: u128,
}

impl Default for LatencyHistogram {
    fn default() -> LatencyHistogram {
        LatencyHistogram {
            counts: [0; 256],
            total: 0,
            sum_nanos: 0,
        }
    }
}

impl LatencyHistogram {
    fn bucket(nanos: u64) -> usize {
        if nanos < 4 {
            return nanos as usize;
        }
        let bits = 63 - nanos.leading_zeros() as usize;
        let quarter = ((nanos >> (bits - 2)) & 3) as usize;
        (bits * 4 + quarter).min(255)
    }

    /// The upper bound of a bucket, in nanoseconds.
    fn upper(bucket: usize) -> f64 {
        if bucket < 4 {
            return bucket as f64 + 1.0;
        }
        let bits = bucket / 4;
        let quarter = bucket % 4;
        ((4 + quarter as u64 + 1) as f64) * 2f64.powi(bits as i32 - 2)
    }

    fn record(&mut self, nanos: u64) {
        self.counts[Self::bucket(nanos)] += 1;
        self.total += 1;
        self.sum_nanos += u128::from(nanos);
    }

    /// The quantile `q`, in seconds (the upper bound of its bucket).
    fn quantile(&self, q: f64) -> f64 {
        if self.total == 0 {
            return 0.0;
        }
        let rank = (q * self.total as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (bucket, count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return Self::upper(bucket) / 1e9;
            }
        }
        Self::upper(255) / 1e9
    }
}

/// A checkpoint for the writer thread: its bytes and the offsets it holds.
type CheckpointJob = (Vec<u8>, Vec<(Partition, Offset)>);

/// A finished checkpoint write, back from the writer thread.
#[derive(Debug)]
struct Written {
    offsets: Vec<(Partition, Offset)>,
    result: anyhow::Result<Duration>,
    /// The checkpoint's bytes, handed back so the next one reuses the allocation.
    buffer: Vec<u8>,
}

fn timestamp_of(time: SystemTime) -> f64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The loop's state.
struct Live {
    settings: LiveSettings,
    dlq: DeadLetterSink,
    owned: Vec<Owned>,
    /// Revoked partitions kept until the next assignment, which may give them back.
    parked: Vec<Owned>,
    /// Restored from the checkpoint, not yet assigned.
    restored: HashMap<Partition, Owned>,
    /// The latest watermark of any owned partition.
    watermark: Option<Timestamp>,
    renderer: Renderer,
    /// The window labels, the same for every engine of the process.
    labels: Vec<String>,
    metrics: SelfMetrics,
    status: Arc<Status>,
    assigned_once: bool,
    dirty: bool,
    last_checkpoint_at: Instant,
    writing: bool,
    checkpoint_buffer: Vec<u8>,
    last_index: usize,
    /// The partition whose engine's customer limit is current.
    limit_index: Option<usize>,
    /// An encoded checkpoint waiting for the dead letters before it to be acknowledged,
    /// with the number of the last of them.
    waiting: Option<(CheckpointJob, u64)>,
    /// Revoked and not yet given a new assignment: not ready.
    awaiting_assignment: bool,
}

/// Runs the loop until `shutdown` is set; then takes a final checkpoint, commits and leaves
/// the group.
pub fn run(
    settings: LiveSettings,
    shutdown: Arc<AtomicBool>,
    requests: Receiver<Request>,
    status: Arc<Status>,
) -> anyhow::Result<()> {
    let result = run_until_stopped(settings, &shutdown, &requests, &status);
    // On every path, a refused checkpoint at start included: the HTTP server stops with
    // the loop.
    status.finished.store(true, Ordering::Release);
    result
}

fn run_until_stopped(
    settings: LiveSettings,
    shutdown: &AtomicBool,
    requests: &Receiver<Request>,
    status: &Arc<Status>,
) -> anyhow::Result<()> {
    let state = StateDir::open(&settings.state_dir)?;
    let restore_started = Instant::now();
    let restored = state.restore(
        &settings.kafka.topic,
        &settings.kafka.group_id,
        &settings.engine,
    )?;
    let mut metrics = SelfMetrics {
        restore_seconds: restore_started.elapsed().as_secs_f64(),
        ..SelfMetrics::default()
    };
    let mut restored_map = HashMap::new();
    if let Some(restored) = restored {
        metrics.restored_partitions = restored.partitions.len() as u64;
        metrics.last_checkpoint = Some(restored.written_at);
        info!(
            partitions = restored.partitions.len(),
            bytes = restored.bytes,
            seconds = metrics.restore_seconds,
            "restored the checkpoint"
        );
        for p in restored.partitions {
            restored_map.insert(
                p.partition,
                Owned {
                    partition: p.partition,
                    engine: p.engine,
                    next: Some(p.next),
                    rebuilt: p.rebuilt,
                    caught_up: false,
                },
            );
        }
    } else {
        info!(dir = %settings.state_dir.display(), "no checkpoint: partitions will be read from the beginning");
    }
    status.set(Readiness::Joining);

    let source = KafkaSource::new(&settings.kafka)?;
    let dlq = DeadLetterSink::new(&settings.kafka)?;
    let (write_sender, write_receiver) = crossbeam_channel::bounded::<CheckpointJob>(1);
    let (written_sender, written_receiver) = crossbeam_channel::bounded::<Written>(1);
    let state = Arc::new(state);
    let writer_state = Arc::clone(&state);
    let writer = std::thread::Builder::new()
        .name("checkpoint-writer".to_owned())
        .spawn(move || {
            for (buffer, offsets) in write_receiver {
                let result = writer_state.write(&buffer);
                let written = Written {
                    offsets,
                    result,
                    buffer,
                };
                if written_sender.send(written).is_err() {
                    break;
                }
            }
        })
        .context("cannot start the checkpoint writer thread")?;

    let labels = Engine::new(&settings.engine)
        .context("invalid engine configuration")?
        .labels()
        .to_vec();
    let mut live = Live {
        settings,
        dlq,
        owned: Vec::new(),
        parked: Vec::new(),
        restored: restored_map,
        watermark: None,
        renderer: Renderer::new(RenderOptions::default()),
        labels,
        metrics,
        status: Arc::clone(status),
        assigned_once: false,
        dirty: false,
        last_checkpoint_at: Instant::now(),
        writing: false,
        checkpoint_buffer: Vec::new(),
        last_index: 0,
        limit_index: None,
        waiting: None,
        awaiting_assignment: false,
    };

    let result = live.main_loop(
        &source,
        shutdown,
        requests,
        &write_sender,
        &written_receiver,
    );
    status.set(Readiness::Stopping);
    // The final checkpoint: wait for a write in flight, then write the latest state.
    if live.writing {
        if let Ok(written) = written_receiver.recv() {
            live.finish_write(&source, written);
        }
    }
    if result.is_ok() {
        live.serve_requests(&source, requests);
        if live.dirty || live.waiting.is_some() {
            if live.dlq.flush(Duration::from_secs(30)) {
                live.waiting = None;
                live.start_checkpoint(&write_sender);
                if let Ok(written) = written_receiver.recv() {
                    live.finish_write(&source, written);
                }
            } else {
                error!(
                    pending = live.dlq.pending(),
                    "dead letters are still unacknowledged: no final checkpoint past them; the next start redoes the work since the last one"
                );
            }
        }
    }
    drop(write_sender);
    let _ = writer.join();
    drop(live);
    source.close();
    info!("left the consumer group");
    result
}

impl Live {
    fn main_loop(
        &mut self,
        source: &KafkaSource,
        shutdown: &AtomicBool,
        requests: &Receiver<Request>,
        write_sender: &Sender<CheckpointJob>,
        written_receiver: &Receiver<Written>,
    ) -> anyhow::Result<()> {
        let mut since_service = 0u32;
        while !shutdown.load(Ordering::Relaxed) {
            let polled = source.poll(Duration::from_millis(50));
            let polled_at = Instant::now();
            let idle = matches!(polled, Polled::Nothing);
            match polled {
                Polled::Message(message) => {
                    let payload = message.payload();
                    let key = message.key();
                    let rejected = self.apply(message.partition(), message.offset(), payload, key);
                    if rejected {
                        self.check_pause(source)?;
                    }
                    self.metrics
                        .apply_latency
                        .record(polled_at.elapsed().as_nanos() as u64);
                }
                Polled::PartitionEof(partition) => self.caught_up(partition),
                Polled::Nothing => {}
                Polled::Error(error) => {
                    self.metrics.poll_errors += 1;
                    warn!(error = %error, "kafka consumer error (librdkafka retries)");
                }
            }
            let rebalances = source.take_rebalance();
            if !rebalances.is_empty() {
                self.rebalance(source, rebalances)?;
            }
            since_service += 1;
            if idle || since_service >= 256 {
                since_service = 0;
                self.service(source, requests, write_sender, written_receiver)?;
            }
        }
        Ok(())
    }

    /// Between messages: dead letters, scrapes, checkpoints, the event rate, pausing.
    fn service(
        &mut self,
        source: &KafkaSource,
        requests: &Receiver<Request>,
        write_sender: &Sender<CheckpointJob>,
        written_receiver: &Receiver<Written>,
    ) -> anyhow::Result<()> {
        self.dlq.poll();
        self.check_pause(source)?;
        self.serve_requests(source, requests);
        match written_receiver.try_recv() {
            Ok(written) => self.finish_write(source, written),
            Err(TryRecvError::Empty) => {}
            Err(TryRecvError::Disconnected) => anyhow::bail!("the checkpoint writer thread died"),
        }
        // A checkpoint encoded after dead letter n is written once letters 1..=n are
        // acknowledged: the loop goes on meanwhile, and never checkpoints past a letter
        // that is not written.
        if !self.writing {
            if let Some((job, needed)) = self.waiting.take() {
                if self.dlq.acknowledged_through() >= needed {
                    if write_sender.send(job).is_ok() {
                        self.writing = true;
                    }
                } else {
                    self.waiting = Some((job, needed));
                }
            } else if self.dirty
                && self.last_checkpoint_at.elapsed() >= self.settings.checkpoint_interval
            {
                self.start_checkpoint(write_sender);
            }
        }
        let now = Instant::now();
        match self.metrics.rate_at {
            Some((at, count)) if now.duration_since(at) >= Duration::from_secs(5) => {
                self.metrics.rate =
                    (self.metrics.consumed - count) as f64 / now.duration_since(at).as_secs_f64();
                self.metrics.rate_at = Some((now, self.metrics.consumed));
            }
            None => self.metrics.rate_at = Some((now, self.metrics.consumed)),
            _ => {}
        }
        Ok(())
    }

    /// Pauses consumption while `kafka.dlq_pending_max` dead letters wait for their
    /// acknowledgement; resumes at half of it.
    fn check_pause(&mut self, source: &KafkaSource) -> anyhow::Result<()> {
        let pending = self.dlq.pending();
        let limit = self.settings.dlq_pending_max as i64;
        if !self.metrics.paused && pending >= limit {
            warn!(
                pending,
                "the dead-letter topic is not keeping up: pausing consumption"
            );
            source.set_paused(true)?;
            self.metrics.paused = true;
        } else if self.metrics.paused && pending <= limit / 2 {
            info!(pending, "dead letters written: resuming consumption");
            source.set_paused(false)?;
            self.metrics.paused = false;
        }
        Ok(())
    }

    fn serve_requests(&mut self, source: &KafkaSource, requests: &Receiver<Request>) {
        while let Ok(request) = requests.try_recv() {
            match request {
                Request::Scrape(reply) => {
                    let text = self.render(source);
                    let _ = reply.send(text);
                }
            }
        }
    }

    fn index_of(&mut self, partition: Partition) -> Option<usize> {
        if self
            .owned
            .get(self.last_index)
            .is_some_and(|o| o.partition == partition)
        {
            return Some(self.last_index);
        }
        let index = self.owned.iter().position(|o| o.partition == partition)?;
        self.last_index = index;
        Some(index)
    }

    /// Applies one message to its partition's engine; dead-letters it if rejected.
    fn apply(
        &mut self,
        partition: Partition,
        offset: Offset,
        payload: Option<&[u8]>,
        key: Option<&[u8]>,
    ) -> bool {
        let Some(index) = self.index_of(partition) else {
            // A message fetched before its partition was revoked: not ours any more.
            return false;
        };
        if self.owned[index].next.is_some_and(|next| offset < next) {
            return false;
        }
        self.metrics.consumed += 1;
        self.dirty = true;
        let now = wall_clock();
        let bytes = payload.unwrap_or_default();
        // The parser checks ledger.max_event_bytes first (oversized).
        let prepared = self.settings.preparer.prepare(bytes);
        if self.limit_index != Some(index) {
            // ledger.max_customers is per process: this partition may hold what the others
            // leave. They do not change while this one is applied, so this holds until the
            // next switch of partition.
            let others: usize = self
                .owned
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != index)
                .map(|(_, o)| o.engine.customer_count())
                .sum();
            self.owned[index]
                .engine
                .set_max_customers(self.settings.engine.max_customers.saturating_sub(others));
            self.limit_index = Some(index);
        }
        let owned = &mut self.owned[index];
        let outcome = match prepared {
            Ok(event) => owned.engine.record(event, now).map(|_| ()),
            Err(rejection) => {
                owned.engine.count_rejection(rejection.reason);
                Err(rejection)
            }
        };
        owned.next = Some(Offset(offset.0 + 1));
        if let Some(watermark) = owned.engine.watermark() {
            self.watermark = self.watermark.max(Some(watermark));
        }
        if let Err(rejection) = outcome {
            self.metrics.dlq_sent += 1;
            self.dlq.send(DeadLetter {
                key: key.map(<[u8]>::to_vec),
                payload: bytes.to_vec(),
                reason: rejection.reason.as_str(),
                error: rejection.message.to_string(),
                partition,
                offset,
            });
            return true;
        }
        false
    }

    fn caught_up(&mut self, partition: Partition) {
        if let Some(index) = self.index_of(partition) {
            let owned = &mut self.owned[index];
            if !owned.caught_up {
                info!(
                    partition = partition.0,
                    next = owned.next.map(|o| o.0),
                    "partition read to its end"
                );
            }
            owned.caught_up = true;
            owned.rebuilt = true;
        }
        self.update_readiness();
    }

    fn update_readiness(&self) {
        let readiness = if !self.assigned_once || self.awaiting_assignment {
            Readiness::Joining
        } else if self.owned.iter().all(|o| o.caught_up) {
            Readiness::Ready
        } else {
            Readiness::CatchingUp
        };
        self.status.set(readiness);
    }

    fn rebalance(
        &mut self,
        source: &KafkaSource,
        rebalances: Vec<Rebalance>,
    ) -> anyhow::Result<()> {
        for rebalance in rebalances {
            self.metrics.rebalances += 1;
            match rebalance {
                Rebalance::Revoke(partitions) => {
                    info!(partitions = ?partitions.iter().map(|p| p.0).collect::<Vec<_>>(), "partitions revoked");
                    let (revoked, kept): (Vec<Owned>, Vec<Owned>) = std::mem::take(&mut self.owned)
                        .into_iter()
                        .partition(|o| partitions.contains(&o.partition));
                    self.owned = kept;
                    self.parked.extend(revoked);
                    self.awaiting_assignment = true;
                    self.last_index = 0;
                    self.limit_index = None;
                }
                Rebalance::Assign(partitions) => {
                    info!(partitions = ?partitions.iter().map(|p| p.0).collect::<Vec<_>>(), "partitions assigned");
                    self.assigned_once = true;
                    self.awaiting_assignment = false;
                    let mut starts = Vec::new();
                    for partition in partitions {
                        if self.owned.iter().any(|o| o.partition == partition) {
                            continue;
                        }
                        let found = self
                            .parked
                            .iter()
                            .position(|o| o.partition == partition)
                            .map(|i| self.parked.swap_remove(i))
                            .or_else(|| self.restored.remove(&partition));
                        let owned = match found {
                            Some(mut owned) => {
                                owned.caught_up = false;
                                owned
                            }
                            None => Owned {
                                partition,
                                engine: Engine::new(&self.settings.engine)
                                    .context("invalid engine configuration")?,
                                next: None,
                                rebuilt: false,
                                caught_up: false,
                            },
                        };
                        let start = owned.next.map_or(StartAt::Beginning, StartAt::Offset);
                        info!(partition = partition.0, start = ?start, rebuild = owned.next.is_none(), "starting partition");
                        starts.push((partition, start));
                        self.owned.push(owned);
                    }
                    source.assign(&starts)?;
                    // librdkafka keeps a paused partition paused across a reassignment;
                    // newly assigned ones must be paused too while the DLQ is stalled.
                    if self.metrics.paused {
                        source.set_paused(true)?;
                    }
                    // Whatever was parked and not given back belongs to another member now.
                    self.parked.clear();
                    self.owned.sort_by_key(|o| o.partition);
                    self.last_index = 0;
                    self.limit_index = None;
                }
            }
        }
        self.update_readiness();
        Ok(())
    }

    /// Moves every engine to the same watermark (and, in wall mode, to now).
    fn align(&mut self) {
        let now = wall_clock();
        let wall = self.settings.engine.clock == ClockMode::Wall;
        for owned in &mut self.owned {
            if let Some(watermark) = self.watermark {
                owned.engine.advance_watermark(watermark);
            }
            if wall {
                owned.engine.tick(now);
            }
        }
    }

    fn start_checkpoint(&mut self, write_sender: &Sender<CheckpointJob>) {
        let started = Instant::now();
        self.align();
        let mut buffer = std::mem::take(&mut self.checkpoint_buffer);
        // A partition not read yet has nothing to keep: it is rebuilt either way.
        let parts = self
            .owned
            .iter()
            .filter_map(|o| o.next.map(|next| (o.partition, next, o.rebuilt, &o.engine)));
        checkpoint::encode(
            &self.settings.kafka.topic,
            &self.settings.kafka.group_id,
            parts,
            &mut buffer,
        );
        let offsets: Vec<(Partition, Offset)> = self
            .owned
            .iter()
            .filter_map(|o| o.next.map(|next| (o.partition, next)))
            .collect();
        self.metrics.checkpoint_encode_seconds = started.elapsed().as_secs_f64();
        self.dirty = false;
        self.last_checkpoint_at = Instant::now();
        let needed = self.dlq.last_sent();
        if self.dlq.acknowledged_through() >= needed {
            if write_sender.send((buffer, offsets)).is_ok() {
                self.writing = true;
            }
        } else {
            self.waiting = Some(((buffer, offsets), needed));
        }
    }

    fn finish_write(&mut self, source: &KafkaSource, written: Written) {
        self.writing = false;
        let bytes = written.buffer.len();
        self.checkpoint_buffer = written.buffer;
        match written.result {
            Ok(duration) => {
                self.metrics.checkpoints += 1;
                self.metrics.checkpoint_bytes = bytes as u64;
                self.metrics.checkpoint_write_seconds = duration.as_secs_f64();
                self.metrics.last_checkpoint = Some(SystemTime::now());
                // Commit only what is still ours; the checkpoint is the truth either way.
                let offsets: Vec<(Partition, Offset)> = written
                    .offsets
                    .into_iter()
                    .filter(|(p, _)| self.owned.iter().any(|o| o.partition == *p))
                    .collect();
                if let Err(error) = source.commit(&offsets) {
                    warn!(error = %error, "failed to commit offsets to kafka (the checkpoint holds them)");
                }
            }
            Err(error) => {
                self.metrics.checkpoint_failures += 1;
                self.dirty = true;
                error!(error = %format!("{error:#}"), "checkpoint failed; offsets stay where the last one left them");
            }
        }
    }

    /// Renders `/metrics`: the contract's families over the shown partitions, then the
    /// process's own.
    fn render(&mut self, source: &KafkaSource) -> Vec<u8> {
        self.align();
        let mut text = Vec::new();
        {
            let views: Vec<_> = self
                .owned
                .iter_mut()
                .filter(|o| o.rebuilt)
                .map(|o| o.engine.view())
                .collect();
            let merged = MergedView::new(&self.labels, views);
            for chunk in self.renderer.render(&merged) {
                text.extend_from_slice(chunk);
            }
        }
        self.render_self_metrics(source, &mut text);
        text
    }

    fn render_self_metrics(&self, source: &KafkaSource, out: &mut Vec<u8>) {
        use std::fmt::Write as _;
        let mut s = String::new();
        let m = &self.metrics;
        let mut family = |name: &str, kind: &str, help: &str, samples: &[(String, f64)]| {
            let _ = writeln!(s, "# HELP {name} {help}");
            let _ = writeln!(s, "# TYPE {name} {kind}");
            for (labels, value) in samples {
                let _ = writeln!(s, "{name}{labels} {value}");
            }
        };
        let high = source.high_watermarks();
        let lag: Vec<(String, f64)> = self
            .owned
            .iter()
            .filter_map(|o| {
                let high = *high.get(&o.partition.0)?;
                let next = o.next.map_or(0, |n| n.0);
                Some((
                    format!("{{partition=\"{}\"}}", o.partition.0),
                    (high - next).max(0) as f64,
                ))
            })
            .collect();
        family("marginstream_consumer_lag_messages", "gauge", "Messages between the next offset to read and the partition's high watermark (from librdkafka statistics).", &lag);
        family(
            "marginstream_consumed_messages_total",
            "counter",
            "Messages consumed by this process since it started.",
            &[(String::new(), m.consumed as f64)],
        );
        let latency = &m.apply_latency;
        let mut quantiles: Vec<(String, f64)> = [0.5, 0.9, 0.99, 0.999]
            .iter()
            .map(|q| (format!("{{quantile=\"{q}\"}}"), latency.quantile(*q)))
            .collect();
        quantiles.push(("_sum".to_owned(), latency.sum_nanos as f64 / 1e9));
        quantiles.push(("_count".to_owned(), latency.total as f64));
        family("marginstream_apply_latency_seconds", "summary", "Time from poll returning a message to its effect being in the state (parse, tag, apply, dead-letter queueing), since start. Quantiles are bucket upper bounds (within 19 %).", &quantiles);
        family(
            "marginstream_consumed_messages_per_second",
            "gauge",
            "Messages consumed per second over the last 5 seconds.",
            &[(String::new(), m.rate)],
        );
        family(
            "marginstream_rebalances_total",
            "counter",
            "Partition assignments and revocations seen.",
            &[(String::new(), m.rebalances as f64)],
        );
        family(
            "marginstream_partitions_assigned",
            "gauge",
            "Partitions of the ledger topic owned by this process.",
            &[(String::new(), self.owned.len() as f64)],
        );
        family("marginstream_partitions_rebuilding", "gauge", "Owned partitions still being read from the beginning; their customers are not shown yet.", &[(String::new(), self.owned.iter().filter(|o| !o.rebuilt).count() as f64)]);
        family(
            "marginstream_ready",
            "gauge",
            "1 when every assigned partition is restored and caught up (as /readyz).",
            &[(
                String::new(),
                f64::from(u8::from(self.status.readiness() == Readiness::Ready)),
            )],
        );
        family(
            "marginstream_checkpoints_total",
            "counter",
            "Checkpoints written.",
            &[(String::new(), m.checkpoints as f64)],
        );
        family(
            "marginstream_checkpoint_failures_total",
            "counter",
            "Checkpoints that failed to be written.",
            &[(String::new(), m.checkpoint_failures as f64)],
        );
        if let Some(last) = m.last_checkpoint {
            family(
                "marginstream_checkpoint_last_success_timestamp_seconds",
                "gauge",
                "When the last checkpoint became durable (Unix time).",
                &[(String::new(), timestamp_of(last))],
            );
            let age = SystemTime::now()
                .duration_since(last)
                .map_or(0.0, |d| d.as_secs_f64());
            family(
                "marginstream_checkpoint_age_seconds",
                "gauge",
                "Seconds since the last durable checkpoint.",
                &[(String::new(), age)],
            );
        }
        family(
            "marginstream_checkpoint_size_bytes",
            "gauge",
            "Size of the last checkpoint.",
            &[(String::new(), m.checkpoint_bytes as f64)],
        );
        family("marginstream_checkpoint_duration_seconds", "gauge", "Time of the last checkpoint, by phase: encode (the loop pauses) and write (write, fsync, rename; in the background).", &[("{phase=\"encode\"}".to_owned(), m.checkpoint_encode_seconds), ("{phase=\"write\"}".to_owned(), m.checkpoint_write_seconds)]);
        family(
            "marginstream_restore_duration_seconds",
            "gauge",
            "Time taken to read and decode the checkpoint at start.",
            &[(String::new(), m.restore_seconds)],
        );
        family(
            "marginstream_restored_partitions",
            "gauge",
            "Partitions found in the checkpoint at start.",
            &[(String::new(), m.restored_partitions as f64)],
        );
        let (delivered, failures) = self.dlq.stats();
        family(
            "marginstream_dlq_messages_total",
            "counter",
            "Rejected messages acknowledged by the dead-letter topic.",
            &[(String::new(), delivered as f64)],
        );
        family(
            "marginstream_dlq_failures_total",
            "counter",
            "Failed attempts to write to the dead-letter topic (each is retried).",
            &[(String::new(), failures as f64)],
        );
        family("marginstream_dlq_pending_messages", "gauge", "Rejected messages not yet acknowledged by the dead-letter topic; consumption pauses at kafka.dlq_pending_max.", &[(String::new(), self.dlq.pending() as f64)]);
        family(
            "marginstream_consumer_paused",
            "gauge",
            "1 while consumption is paused for the dead-letter topic.",
            &[(String::new(), f64::from(u8::from(m.paused)))],
        );
        family(
            "marginstream_kafka_commit_failures_total",
            "counter",
            "Offset commits refused by Kafka (the checkpoint holds the offsets).",
            &[(String::new(), source.commit_failures() as f64)],
        );
        family(
            "marginstream_kafka_errors_total",
            "counter",
            "Consumer errors reported by librdkafka (it retries on its own).",
            &[(String::new(), m.poll_errors as f64)],
        );
        out.extend_from_slice(s.as_bytes());
    }
}
