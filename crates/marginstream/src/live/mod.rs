//! `marginstream run`'s loop: Kafka in, one engine per owned partition, checkpoints, and the
//! `/metrics` text on request.
//!
//! - [`LiveHandle`]: spawns the loop on a thread of its own with its wiring (shutdown flag,
//!   request channel, status, self-metrics); the HTTP side, the tests and the benches all
//!   start the loop through it.
//! - [`run`]: the loop itself, until shutdown; then the final checkpoint, a commit, and the
//!   group is left.
//! - `partitions`: ownership (assignment, revocation, end of partition).
//! - `restore`: where a newly assigned partition's state comes from (kept or checkpointed,
//!   the state topic, or a rebuild), missing history, and restatement under new rules.
//! - `checkpointer`: the checkpoint pipeline, the final one included.
//! - `state_store`: the state topic's I/O: its creation, restores' reads, and the snapshots
//!   published with each checkpoint.
//! - `publish`: copies what changed to the readers' snapshots (`crate::published`).
//! - [`self_metrics`]: the process's own metrics, in a `prometheus` registry.
//!
//! Two threads share the work. The feeder (`feed`) polls the consumer and parses: it takes
//! batches of what librdkafka already holds (never waiting for more) and hands them over in
//! order. The loop owns everything that changes: the engines, the assignment and the
//! dead-letter producer. It applies each batch in order to the partitions' engines and,
//! every [`MESSAGES_PER_SERVICE`] messages and whenever nothing comes, does its service
//! pass: dead letters, checkpoints (encoded here, written by a third thread) and publishing
//! (a step of at most [`PUBLISH_STEP_BUSY`] while messages wait). No lock is taken per
//! message, and no reader ever waits for the loop or makes it wait.
//!
//! **Readiness.** Ready means every assigned partition is restored and caught up *and* the
//! readers' snapshot reflects that: a rebalance or a partition reaching its end bumps a
//! version, and the loop is ready once a snapshot committed at that version or later is
//! published. A partition held for missing history keeps the process not ready, and
//! `/readyz` says which offsets are gone.
//!
//! **Exactly-once effect.** A partition's engine holds exactly the messages before its next
//! offset. A checkpoint stores both, and a restart seeks every partition to its checkpointed
//! offset: a kill -9 at any moment redoes the work since the last checkpoint, never loses or
//! repeats it. A checkpoint is taken only when the dead-letter topic has acknowledged every
//! rejected message before it, so a rejection is never skipped either. Offsets are committed
//! to Kafka only after the checkpoint holding them is durable; they are for lag monitoring,
//! the checkpoint is the truth.

mod checkpointer;
mod feed;
mod partitions;
mod publish;
mod restore;
pub mod self_metrics;
mod state_store;

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use bytes::Bytes;
use marginstream_aggregator::{Engine, EngineConfig, Prepared, Preparer};
use marginstream_consumer::kafka::{DeadLetter, SourceMessage};
use marginstream_consumer::{
    DeadLetterSink, KafkaSettings, KafkaSource, Offset, Partition, Polled, Rebalance,
};
use marginstream_model::{Rejection, Timestamp};
use prometheus::local::LocalHistogram;
use tracing::{error, info, warn};

use crate::clock::wall_clock;
use crate::published::{Board, PublishSettings, Publisher};
use checkpointer::Checkpointer;
use feed::{Batch, Fed, Feed, Parsed};
use partitions::Partitions;
use publish::Publishing;
pub use restore::RestoreSettings;
use restore::Restorer;
pub use self_metrics::SelfMetrics;
pub use state_store::TOPIC_CONFIG as STATE_TOPIC_CONFIG;
use state_store::{Identity, StateStore};

/// How long the loop waits for a log start offset after a gap in a partition's offsets.
const LOG_START_TIMEOUT: Duration = Duration::from_secs(5);

/// How long `poll` waits for a message before the loop does its service pass anyway.
const POLL_TIMEOUT: Duration = Duration::from_millis(50);

/// How long `poll` waits while a publishing pass is under way: the pass goes on whenever
/// no message comes.
const POLL_TIMEOUT_PUBLISHING: Duration = Duration::from_millis(1);

/// Messages applied between two service passes while messages keep coming.
const MESSAGES_PER_SERVICE: u32 = 256;

/// The most a service pass publishes while messages wait: a pause of a tenth of a
/// millisecond every 256 messages (about a millisecond of work).
const PUBLISH_STEP_BUSY: Duration = Duration::from_micros(100);

/// The most a service pass publishes when no message came: with a step's overshoot (a
/// chunk of customers, or a few dozen slots of a walk) the pass stays under a millisecond,
/// as a message may arrive meanwhile.
const PUBLISH_STEP_IDLE: Duration = Duration::from_micros(600);

/// How often the self-metrics read from elsewhere (lag, the sink's counts) are refreshed.
const METRICS_REFRESH: Duration = Duration::from_millis(200);

/// The window of `marginstream_consumed_messages_per_second`.
const RATE_WINDOW: Duration = Duration::from_secs(5);

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
    /// Publishing to readers, the exposure budget and the tiers.
    pub publishing: PublishSettings,
    /// The state topic, missing history and rules changes (contract sections 10 and 11).
    pub restore: RestoreSettings,
}

/// Readiness, as `/readyz` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Readiness {
    /// Restoring state: the checkpoint at start, or assigned partitions' snapshots.
    Restoring = 0,
    /// Waiting for the group to assign partitions.
    Joining = 1,
    /// Some assigned partition is still being read to its end.
    CatchingUp = 2,
    /// Every assigned partition restored and caught up.
    Ready = 3,
    /// Shutting down.
    Stopping = 4,
    /// An assigned partition is held: history it needs is gone from the broker.
    HistoryTruncated = 5,
}

impl Readiness {
    /// Returns a short description.
    pub fn describe(self) -> &'static str {
        match self {
            Readiness::Restoring => {
                "restoring partition state (the checkpoint, or snapshots of the state topic)"
            }
            Readiness::Joining => "joining the consumer group",
            Readiness::CatchingUp => "reading assigned partitions up to their end",
            Readiness::Ready => "ready",
            Readiness::Stopping => "stopping",
            Readiness::HistoryTruncated => "history truncated",
        }
    }
}

/// State shared with the HTTP server.
#[derive(Debug)]
pub struct Status {
    readiness: AtomicU8,
    /// Why partitions are held, when they are (the details of `/readyz`).
    held: Mutex<String>,
    /// Set when the loop has ended (the process is going down).
    pub finished: AtomicBool,
}

impl Default for Status {
    fn default() -> Status {
        Status {
            readiness: AtomicU8::new(Readiness::Restoring as u8),
            held: Mutex::new(String::new()),
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
            5 => Readiness::HistoryTruncated,
            _ => Readiness::Stopping,
        }
    }

    /// Returns what `/readyz` says: the readiness, and for held partitions which history is
    /// gone.
    pub fn describe(&self) -> String {
        let readiness = self.readiness();
        if readiness == Readiness::HistoryTruncated {
            let held = self.held.lock().unwrap_or_else(|e| e.into_inner());
            if !held.is_empty() {
                return held.clone();
            }
        }
        readiness.describe().to_owned()
    }

    fn set(&self, readiness: Readiness) {
        self.readiness.store(readiness as u8, Ordering::Release);
    }

    fn set_held(&self, reasons: &[&str]) {
        let text = reasons.join("; ");
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        if *held != text {
            *held = text;
        }
    }
}

/// How [`LiveHandle::spawn_with`] starts the loop's thread.
#[derive(Debug, Clone)]
pub struct LiveOptions {
    /// The thread's name.
    pub thread_name: String,
    /// A `tracing` dispatcher for the loop's logs (tests capture each loop's log apart);
    /// `None`: the global one.
    pub log: Option<tracing::Dispatch>,
}

impl Default for LiveOptions {
    fn default() -> LiveOptions {
        LiveOptions {
            thread_name: "ledger-loop".to_owned(),
            log: None,
        }
    }
}

/// What the loop shares with everyone else: set by the loop, read by anyone.
#[derive(Debug)]
pub struct Shared {
    /// Set to stop the loop.
    pub shutdown: AtomicBool,
    /// Readiness and whether the loop has ended.
    pub status: Status,
    /// The self-metrics registry.
    pub metrics: SelfMetrics,
    /// The readers' snapshots.
    pub board: Arc<Board>,
}

impl Shared {
    /// Returns the whole `/metrics` text, as chunks to send in order: the contract's families
    /// of the current snapshot (shared with every scrape of that snapshot, not copied), then
    /// the self-metrics and the process metrics.
    pub fn scrape_chunks(&self) -> Vec<Bytes> {
        let families = self.board.render();
        let mut own = Vec::with_capacity(16 * 1024);
        self.metrics.encode(&mut own);
        let mut chunks = Vec::with_capacity(families.len() + 1);
        chunks.extend(families.iter().cloned());
        chunks.push(Bytes::from(own));
        chunks
    }

    /// Returns the whole `/metrics` text in one buffer (a copy of [`Shared::scrape_chunks`]:
    /// for tests and small expositions; the endpoint streams the chunks).
    pub fn scrape(&self) -> Vec<u8> {
        let chunks = self.scrape_chunks();
        let mut text = Vec::with_capacity(chunks.iter().map(Bytes::len).sum());
        for chunk in &chunks {
            text.extend_from_slice(chunk);
        }
        text
    }
}

/// The loop running on its own thread, and what it shares.
#[derive(Debug)]
pub struct LiveHandle {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<anyhow::Result<()>>>,
}

impl LiveHandle {
    /// Starts the loop with `settings` on a thread named `ledger-loop`.
    ///
    /// # Errors
    ///
    /// When the thread cannot be started, or the engine configuration is invalid. Errors of
    /// the loop itself (a refused checkpoint, a broker setting librdkafka refuses) end the
    /// loop: [`LiveHandle::join`] returns them.
    pub fn spawn(settings: LiveSettings) -> anyhow::Result<LiveHandle> {
        LiveHandle::spawn_with(settings, LiveOptions::default())
    }

    /// Starts the loop as [`LiveHandle::spawn`] does, with `options`.
    ///
    /// # Errors
    ///
    /// As [`LiveHandle::spawn`].
    pub fn spawn_with(settings: LiveSettings, options: LiveOptions) -> anyhow::Result<LiveHandle> {
        let labels: Arc<[String]> = Engine::new(&settings.engine)
            .context("invalid engine configuration")?
            .labels()
            .into();
        let shared = Arc::new(Shared {
            shutdown: AtomicBool::new(false),
            status: Status::default(),
            metrics: SelfMetrics::new(),
            board: Arc::new(Board::new(labels, settings.publishing.clone())),
        });
        let thread = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name(options.thread_name)
                .spawn(move || {
                    let work = || run(settings, &shared);
                    match options.log {
                        Some(dispatch) => tracing::dispatcher::with_default(&dispatch, work),
                        None => work(),
                    }
                })
                .context("cannot start the consumer loop thread")?
        };
        Ok(LiveHandle {
            shared,
            thread: Some(thread),
        })
    }

    /// Returns what the loop shares (status, self-metrics, the readers' board).
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Returns the status the loop keeps (readiness, finished).
    pub fn status(&self) -> &Status {
        &self.shared.status
    }

    /// Returns the whole `/metrics` text, from the current snapshot: never waits for the loop.
    pub fn scrape(&self) -> Vec<u8> {
        self.shared.scrape()
    }

    /// Asks the loop to stop: it takes its final checkpoint and leaves the group.
    pub fn stop(&self) {
        self.shared.shutdown.store(true, Ordering::Release);
    }

    /// Returns `true` once the loop's thread has ended.
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Waits for the loop to end and returns its result.
    ///
    /// # Errors
    ///
    /// The loop's own error, or an error if it panicked.
    pub fn join(mut self) -> anyhow::Result<()> {
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => anyhow::bail!("the consumer loop panicked"),
            None => Ok(()),
        }
    }
}

impl Drop for LiveHandle {
    /// Asks the loop to stop without waiting for it (a failing test must not block on it).
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::Release);
    }
}

/// Runs the loop until `shared.shutdown` is set; then takes a final checkpoint, commits and
/// leaves the group. Sets `shared.status.finished` when it returns, on every path.
///
/// # Errors
///
/// A checkpoint that is refused at start (corrupt, or of another topic or configuration),
/// a client librdkafka refuses to create, or a failure of the checkpoint writer.
pub fn run(settings: LiveSettings, shared: &Shared) -> anyhow::Result<()> {
    let result = run_until_stopped(settings, shared);
    // On every path, a refused checkpoint at start included: the HTTP server stops with
    // the loop.
    shared.status.finished.store(true, Ordering::Release);
    result
}

fn run_until_stopped(settings: LiveSettings, shared: &Shared) -> anyhow::Result<()> {
    let metrics = &shared.metrics;
    let store = match &settings.restore.state_topic {
        Some(topic) => {
            let identity = Identity {
                topic: settings.kafka.topic.clone(),
                group: settings.kafka.group_id.clone(),
                engine: crate::state_topic::engine_text(&settings.engine),
                rules: settings.restore.rules.text().to_owned(),
            };
            Some(StateStore::open(&settings.kafka, topic, identity)?)
        }
        None => None,
    };
    let state_publisher = store.as_ref().map(StateStore::publisher).transpose()?;
    let (checkpointer, opened) = Checkpointer::open(&settings, metrics, state_publisher)?;
    shared.status.set(Readiness::Joining);
    let source = KafkaSource::new(&settings.kafka)?;
    let dlq = DeadLetterSink::new(&settings.kafka)?;
    let publisher = Publisher::spawn(Arc::clone(&shared.board))?;
    let mut live = Live {
        partitions: Partitions::new(settings.engine.clone(), opened.partitions),
        restorer: Restorer::new(settings.restore.clone(), store, opened.restate),
        checkpointer,
        dlq,
        publishing: Publishing::new(publisher, settings.publishing.publish_interval),
        settings,
        metrics,
        latency: metrics.apply_latency.local(),
        status: &shared.status,
        version: 0,
        rate_at: None,
        refreshed_at: None,
        consumed: 0,
        paused: false,
    };
    let result = live.main_loop(&source, &shared.shutdown);
    shared.status.set(Readiness::Stopping);
    let Live {
        mut partitions,
        checkpointer,
        dlq,
        publishing,
        ..
    } = live;
    checkpointer.finish(
        result.is_ok(),
        &mut partitions,
        &dlq,
        &source,
        metrics,
        wall_clock(),
    );
    drop(publishing);
    drop(partitions);
    drop(dlq);
    source.close();
    info!("left the consumer group");
    result
}

/// The loop's state. The consumer is not part of it: a polled message borrows the
/// consumer while the state applies it, so every method that needs the consumer takes it.
struct Live<'a> {
    settings: LiveSettings,
    dlq: DeadLetterSink,
    partitions: Partitions,
    restorer: Restorer,
    checkpointer: Checkpointer,
    publishing: Publishing,
    metrics: &'a SelfMetrics,
    /// The apply latency, observed without atomics and flushed in the service pass.
    latency: LocalHistogram,
    status: &'a Status,
    /// Bumped by every change that readiness depends on (a rebalance, a partition read to
    /// its end): ready needs a snapshot committed at this version.
    version: u64,
    /// Start of the current rate window: when, and the consumed count then.
    rate_at: Option<(Instant, u64)>,
    /// When the self-metrics were last refreshed.
    refreshed_at: Option<Instant>,
    /// Messages applied since `marginstream_consumed_messages_total` was last increased:
    /// it is increased once per chunk of a batch, not per message.
    consumed: u64,
    /// Consumption is paused for the dead-letter topic.
    paused: bool,
}

impl Live<'_> {
    /// Runs the loop until `shutdown`, with the feeder polling and parsing on a thread of
    /// its own ([`feed`]).
    fn main_loop(&mut self, source: &KafkaSource, shutdown: &AtomicBool) -> anyhow::Result<()> {
        let stop = AtomicBool::new(false);
        let preparer = self.settings.preparer.clone();
        std::thread::scope(|scope| {
            let feed = Feed::spawn(scope, source, preparer, &stop)?;
            let result = self.consume(source, &feed, shutdown);
            // The feeder stops at its next poll, or at once when it waits for the loop.
            stop.store(true, Ordering::Relaxed);
            drop(feed);
            result
        })
    }

    /// Applies what the feeder hands over, in order, with a service pass every
    /// [`MESSAGES_PER_SERVICE`] messages and whenever nothing comes.
    fn consume(
        &mut self,
        source: &KafkaSource,
        feed: &Feed<'_>,
        shutdown: &AtomicBool,
    ) -> anyhow::Result<()> {
        let mut since_service = 0u32;
        while !shutdown.load(Ordering::Relaxed) {
            let timeout = if self.publishing.busy() {
                POLL_TIMEOUT_PUBLISHING
            } else {
                POLL_TIMEOUT
            };
            let idle = match feed.next(timeout)? {
                Fed::Idle => {
                    since_service += 1;
                    true
                }
                Fed::Batch(batch) => {
                    let Batch {
                        messages,
                        parsed,
                        polled_at,
                        end,
                        rebalance,
                    } = batch;
                    // A service pass every MESSAGES_PER_SERVICE messages, within a batch
                    // too: a batch under a backlog holds up to a thousand.
                    let mut parsed = parsed.into_iter();
                    for chunk in messages.chunks(MESSAGES_PER_SERVICE as usize) {
                        self.apply_batch(source, chunk, &mut parsed, polled_at)?;
                        since_service += chunk.len() as u32;
                        if since_service >= MESSAGES_PER_SERVICE {
                            since_service = 0;
                            self.service(source, false)?;
                        }
                    }
                    if messages.is_empty() {
                        since_service += 1;
                    }
                    if rebalance {
                        // librdkafka's buffers are released before a rebalance is handled.
                        drop(messages);
                    } else {
                        feed.applied(messages);
                    }
                    match end {
                        // Every message polled went into the batch, applied above.
                        Polled::Message(_) | Polled::Nothing => {}
                        Polled::PartitionEof(partition) => {
                            if self.partitions.caught_up(partition) {
                                self.version += 1;
                            }
                            self.update_readiness();
                        }
                        Polled::Error(error) => {
                            self.metrics.kafka_errors.inc();
                            warn!(error = %error, "kafka consumer error (librdkafka retries)");
                        }
                    }
                    if rebalance {
                        let rebalances = source.take_rebalance();
                        if !rebalances.is_empty() {
                            self.rebalance(source, rebalances)?;
                        }
                        feed.resume();
                    }
                    false
                }
            };
            if idle || since_service >= MESSAGES_PER_SERVICE {
                since_service = 0;
                self.service(source, idle)?;
            }
        }
        Ok(())
    }

    /// Applies messages in order, each with its position and parse next in `parsed`, to its
    /// partition's engine with the state of the next [`Engine::PREFETCH_EVENTS`] read ahead.
    /// `polled_at`: when the batch's first message was polled; every message's apply
    /// latency is measured from there (an upper bound for the later ones).
    fn apply_batch(
        &mut self,
        source: &KafkaSource,
        batch: &[SourceMessage<'_>],
        parsed: &mut std::vec::IntoIter<Parsed>,
        polled_at: Instant,
    ) -> anyhow::Result<()> {
        let now = wall_clock();
        let mut observed = 0u32;
        for (index, message) in batch.iter().enumerate() {
            if index % Engine::PREFETCH_EVENTS == 0 {
                for ahead in parsed.as_slice().iter().take(Engine::PREFETCH_EVENTS) {
                    if let Ok(event) = &ahead.result {
                        self.partitions.prefetch(ahead.partition, event);
                    }
                }
            }
            let Some(Parsed {
                partition,
                offset,
                result,
            }) = parsed.next()
            else {
                break;
            };
            if let Some(expected) = self.partitions.gap(partition, offset) {
                if self.history_lost(source, partition, expected)? {
                    continue;
                }
            }
            let rejected = self.apply(partition, offset, message, result, now);
            if rejected {
                self.check_pause(source)?;
            }
            observed += 1;
        }
        self.metrics
            .consumed
            .inc_by(std::mem::take(&mut self.consumed));
        let latency = polled_at.elapsed().as_secs_f64();
        for _ in 0..observed {
            self.latency.observe(latency);
        }
        Ok(())
    }

    /// Between messages: dead letters, checkpoints, publishing, the self-metrics, pausing.
    /// `idle`: no message came (the publishing step may take longer).
    fn service(&mut self, source: &KafkaSource, idle: bool) -> anyhow::Result<()> {
        let started = Instant::now();
        let cpu_started = crate::clock::thread_cpu_time();
        self.dlq.poll();
        self.check_pause(source)?;
        let wall = wall_clock();
        self.checkpointer
            .tick(&mut self.partitions, &self.dlq, source, self.metrics, wall)?;
        let budget = if idle {
            PUBLISH_STEP_IDLE
        } else {
            PUBLISH_STEP_BUSY
        };
        let publish_started = Instant::now();
        self.publishing.step(
            &mut self.partitions,
            wall,
            publish_started + budget,
            self.version,
        );
        self.metrics
            .publish_step
            .observe(publish_started.elapsed().as_secs_f64());
        self.update_readiness();
        self.latency.flush();
        let now = Instant::now();
        if self
            .refreshed_at
            .is_none_or(|at| now.duration_since(at) >= METRICS_REFRESH)
        {
            self.refreshed_at = Some(now);
            self.refresh_metrics(source);
            source.keep_forwarded();
        }
        let consumed = self.metrics.consumed.get();
        match self.rate_at {
            Some((at, count)) if now.duration_since(at) >= RATE_WINDOW => {
                self.metrics
                    .consumed_per_second
                    .set((consumed - count) as f64 / now.duration_since(at).as_secs_f64());
                self.rate_at = Some((now, consumed));
            }
            None => self.rate_at = Some((now, consumed)),
            _ => {}
        }
        self.metrics.observe_service(
            started.elapsed(),
            crate::clock::thread_cpu_time().saturating_sub(cpu_started),
        );
        Ok(())
    }

    /// Pauses consumption while `kafka.dlq_pending_max` dead letters wait for their
    /// acknowledgement; resumes at half of it.
    fn check_pause(&mut self, source: &KafkaSource) -> anyhow::Result<()> {
        let pending = self.dlq.pending();
        let limit = self.settings.dlq_pending_max as i64;
        if !self.paused && pending >= limit {
            warn!(
                pending,
                "the dead-letter topic is not keeping up: pausing consumption"
            );
            source.set_paused(true, &[])?;
            self.paused = true;
        } else if self.paused && pending <= limit / 2 {
            info!(pending, "dead letters written: resuming consumption");
            source.set_paused(false, &self.partitions.held())?;
            self.paused = false;
        }
        Ok(())
    }

    /// Applies one message at `offset` of `partition`, already prepared into `prepared`, to
    /// its partition's engine at wall-clock time `now`; dead-letters it if rejected (only
    /// then is `message` itself read). Returns `true` when it was rejected.
    fn apply(
        &mut self,
        partition: Partition,
        offset: Offset,
        message: &SourceMessage<'_>,
        prepared: Result<Prepared, Rejection>,
        now: Timestamp,
    ) -> bool {
        let Some(owned) = self.partitions.for_message(partition, offset) else {
            // A message fetched before its partition was revoked, or already applied.
            return false;
        };
        let outcome = match prepared {
            Ok(event) => owned.engine.record(event, now).map(|_| ()),
            Err(rejection) => {
                owned.engine.count_rejection(rejection.reason);
                Err(rejection)
            }
        };
        owned.next = Some(Offset(offset.0 + 1));
        let watermark = owned.engine.watermark();
        self.partitions.note_watermark(watermark);
        self.consumed += 1;
        self.checkpointer.mark_dirty();
        let Err(rejection) = outcome else {
            return false;
        };
        self.dlq.send(DeadLetter {
            key: message.key().map(<[u8]>::to_vec),
            payload: message.payload().unwrap_or_default().to_vec(),
            reason: rejection.reason.as_str(),
            error: rejection.message.to_string(),
            partition,
            offset,
        });
        true
    }

    /// Checks a gap in a partition's offsets against the broker's log start: history that
    /// retention deleted before it was read is never computed silently (contract section
    /// 10). Returns `true` when the partition is now held (the message is not applied).
    fn history_lost(
        &mut self,
        source: &KafkaSource,
        partition: Partition,
        expected: Offset,
    ) -> anyhow::Result<bool> {
        let log_start = match source.log_start_offset(partition, LOG_START_TIMEOUT) {
            Ok(log_start) => log_start,
            Err(error) => {
                warn!(partition = partition.0, error = %error, "cannot read the log start offset after a gap in the offsets; going on");
                return Ok(false);
            }
        };
        if log_start <= expected {
            // A gap the broker still holds: transaction markers, not lost history.
            return Ok(false);
        }
        let accept = self.settings.restore.accept_truncated_history;
        error!(
            partition = partition.0,
            missing_from = expected.0,
            missing_to = log_start.0 - 1,
            log_start_offset = log_start.0,
            accepted = accept,
            "history is missing: retention deleted offsets {} to {} of partition {} before they were read; {}",
            expected.0,
            log_start.0 - 1,
            partition.0,
            if accept {
                "proceeding without them (ledger.accept_truncated_history); its figures miss those events"
            } else {
                "holding the partition (not read, /readyz 503): set ledger.accept_truncated_history = true to proceed without them"
            }
        );
        let held = self
            .partitions
            .lost_history(partition, expected, log_start, accept);
        if held {
            source.pause_partitions(&[partition])?;
            self.version += 1;
        }
        self.update_readiness();
        self.refresh_metrics(source);
        Ok(held)
    }

    /// Sets the readiness: the partitions' own, and ready only once the readers' snapshot
    /// reflects the current assignment and every partition caught up.
    fn update_readiness(&self) {
        self.status.set_held(&self.partitions.held_reasons());
        let readiness = match self.partitions.readiness() {
            Readiness::Ready if self.publishing.committed_version() != Some(self.version) => {
                Readiness::CatchingUp
            }
            other => other,
        };
        self.status.set(readiness);
    }

    fn rebalance(
        &mut self,
        source: &KafkaSource,
        rebalances: Vec<Rebalance>,
    ) -> anyhow::Result<()> {
        // Readers must see the new assignment before the process is ready again.
        self.version += 1;
        self.publishing.restart();
        for rebalance in rebalances {
            self.metrics.rebalances.inc();
            match rebalance {
                Rebalance::Revoke(partitions) => {
                    self.partitions.revoke(&partitions);
                    for partition in partitions {
                        // Only owned partitions have a lag.
                        let label = partition.0.to_string();
                        let _ = self.metrics.consumer_lag.remove_label_values(&[&label]);
                        let _ = self
                            .metrics
                            .partition_history_truncated
                            .remove_label_values(&[&label]);
                    }
                }
                Rebalance::Assign(partitions) => {
                    // The restore reads the broker (log start offsets, the state topic):
                    // readiness says so meanwhile.
                    self.status.set(Readiness::Restoring);
                    let config = self.settings.engine.clone();
                    let restorer = &mut self.restorer;
                    let metrics = self.metrics;
                    let assigned = self.partitions.assign(partitions, |pending| {
                        restorer.decide(pending, &config, source, metrics)
                    })?;
                    for (partition, next) in &assigned.published {
                        self.checkpointer.note_published(*partition, *next);
                        // A local checkpoint soon: a restart then restores from the disk.
                        self.checkpointer.mark_dirty();
                    }
                    source.assign(&assigned.starts)?;
                    // Held partitions are not read: history they need is gone.
                    source.pause_partitions(&assigned.held)?;
                    // librdkafka keeps a paused partition paused across a reassignment;
                    // newly assigned ones must be paused too while the DLQ is stalled.
                    if self.paused {
                        source.set_paused(true, &[])?;
                    }
                    self.refresh_metrics(source);
                }
            }
        }
        self.update_readiness();
        Ok(())
    }

    /// Brings the gauges that are read from elsewhere (librdkafka's statistics, the sink,
    /// the partitions) up to date.
    fn refresh_metrics(&self, source: &KafkaSource) {
        let metrics = self.metrics;
        let high = source.high_watermarks();
        let owned = self.partitions.owned();
        // Only owned partitions have a lag: a revoked one's series is removed at the
        // rebalance.
        for owned in owned {
            metrics
                .partition_history_truncated
                .with_label_values(&[&owned.partition.0.to_string()])
                .set(i64::from(owned.truncated || owned.held.is_some()));
            if let Some(high) = high.get(&owned.partition.0) {
                let next = owned.next.map_or(0, |n| n.0);
                metrics
                    .consumer_lag
                    .with_label_values(&[&owned.partition.0.to_string()])
                    .set((high - next).max(0));
            }
        }
        metrics.partitions_assigned.set(owned.len() as i64);
        metrics
            .partitions_rebuilding
            .set(self.partitions.rebuilding() as i64);
        metrics
            .ready
            .set(i64::from(self.status.readiness() == Readiness::Ready));
        let now = SystemTime::now();
        metrics.refresh_checkpoint_age(now);
        let published_at = self.publishing.board().latest().published_at;
        metrics.snapshot_age.set(
            now.duration_since(published_at)
                .map_or(0.0, |age| age.as_secs_f64()),
        );
        let (delivered, failures) = self.dlq.stats();
        SelfMetrics::mirror(&metrics.dlq_messages, delivered.max(0) as u64);
        SelfMetrics::mirror(&metrics.dlq_failures, failures.max(0) as u64);
        metrics.dlq_pending.set(self.dlq.pending());
        metrics.consumer_paused.set(i64::from(self.paused));
        SelfMetrics::mirror(
            &metrics.kafka_commit_failures,
            source.commit_failures().max(0) as u64,
        );
    }
}
