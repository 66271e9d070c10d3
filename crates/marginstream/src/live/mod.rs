//! `marginstream run`'s loop: Kafka in, one engine per owned partition, checkpoints, and the
//! `/metrics` text on request.
//!
//! - [`LiveHandle`]: spawns the loop on a thread of its own with its wiring (shutdown flag,
//!   request channel, status, self-metrics); the HTTP side, the tests and the benches all
//!   start the loop through it.
//! - [`run`]: the loop itself, until shutdown; then the final checkpoint, a commit, and the
//!   group is left.
//! - `partitions`: ownership (assignment, revocation, end of partition).
//! - `checkpointer`: the checkpoint pipeline, the final one included.
//! - [`self_metrics`]: the process's own metrics, in a `prometheus` registry.
//!
//! One thread owns everything that changes: the consumer, the engines, the dead-letter
//! producer and the renderer. It polls a message, applies it to its partition's engine, and
//! between messages serves scrapes (a request over a bounded channel, answered with the
//! rendered text) and checkpoints (encoded here, written by a second thread). No lock is
//! taken per message.
//!
//! **Exactly-once effect.** A partition's engine holds exactly the messages before its next
//! offset. A checkpoint stores both, and a restart seeks every partition to its checkpointed
//! offset: a kill -9 at any moment redoes the work since the last checkpoint, never loses or
//! repeats it. A checkpoint is taken only when the dead-letter topic has acknowledged every
//! rejected message before it, so a rejection is never skipped either. Offsets are committed
//! to Kafka only after the checkpoint holding them is durable; they are for lag monitoring,
//! the checkpoint is the truth.

mod checkpointer;
mod partitions;
pub mod self_metrics;

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use crossbeam_channel::{Receiver, Sender};
use marginstream_aggregator::{Engine, EngineConfig, MergedView, Preparer};
use marginstream_consumer::kafka::DeadLetter;
use marginstream_consumer::{
    DeadLetterSink, KafkaSettings, KafkaSource, Offset, Partition, Polled, Rebalance,
};
use marginstream_exporter::{RenderOptions, Renderer};
use prometheus::local::LocalHistogram;
use tracing::{info, warn};

use crate::clock::wall_clock;
use checkpointer::Checkpointer;
use partitions::Partitions;
pub use self_metrics::SelfMetrics;

/// How long `poll` waits for a message before the loop does its service pass anyway.
const POLL_TIMEOUT: Duration = Duration::from_millis(50);

/// Messages applied between two service passes while messages keep coming.
const MESSAGES_PER_SERVICE: u32 = 256;

/// The window of `marginstream_consumed_messages_per_second`.
const RATE_WINDOW: Duration = Duration::from_secs(5);

/// Scrapes waiting for the loop; a handful is plenty for Prometheus's one at a time.
const REQUESTS_MAX: usize = 8;

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
    /// Render the contract's families (not the self-metrics) and send them back.
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

/// Why a scrape got no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ScrapeError {
    /// [`REQUESTS_MAX`] scrapes are already waiting for the loop.
    #[error("too many scrapes in flight")]
    Busy,
    /// The loop did not answer in time, or has ended.
    #[error("the consumer loop did not answer")]
    NoAnswer,
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

/// The loop running on its own thread, and what talks to it.
#[derive(Debug)]
pub struct LiveHandle {
    shutdown: Arc<AtomicBool>,
    requests: Sender<Request>,
    status: Arc<Status>,
    metrics: Arc<SelfMetrics>,
    thread: Option<JoinHandle<anyhow::Result<()>>>,
}

impl LiveHandle {
    /// Starts the loop with `settings` on a thread named `ledger-loop`.
    ///
    /// # Errors
    ///
    /// When the thread cannot be started. Errors of the loop itself (a refused checkpoint,
    /// a broker setting librdkafka refuses) end the loop: [`LiveHandle::join`] returns them.
    pub fn spawn(settings: LiveSettings) -> anyhow::Result<LiveHandle> {
        LiveHandle::spawn_with(settings, LiveOptions::default())
    }

    /// Starts the loop as [`LiveHandle::spawn`] does, with `options`.
    ///
    /// # Errors
    ///
    /// When the thread cannot be started.
    pub fn spawn_with(settings: LiveSettings, options: LiveOptions) -> anyhow::Result<LiveHandle> {
        let shutdown = Arc::new(AtomicBool::new(false));
        let status = Arc::new(Status::default());
        let metrics = Arc::new(SelfMetrics::new());
        let (requests, receiver) = crossbeam_channel::bounded(REQUESTS_MAX);
        let thread = {
            let shutdown = Arc::clone(&shutdown);
            let status = Arc::clone(&status);
            let metrics = Arc::clone(&metrics);
            std::thread::Builder::new()
                .name(options.thread_name)
                .spawn(move || {
                    let work = || run(settings, &shutdown, &receiver, &status, &metrics);
                    match options.log {
                        Some(dispatch) => tracing::dispatcher::with_default(&dispatch, work),
                        None => work(),
                    }
                })
                .context("cannot start the consumer loop thread")?
        };
        Ok(LiveHandle {
            shutdown,
            requests,
            status,
            metrics,
            thread: Some(thread),
        })
    }

    /// Returns the status the loop keeps (readiness, finished).
    pub fn status(&self) -> &Arc<Status> {
        &self.status
    }

    /// Returns the loop's self-metrics.
    pub fn metrics(&self) -> &Arc<SelfMetrics> {
        &self.metrics
    }

    /// Returns the whole `/metrics` text: the contract's families rendered by the loop, then
    /// the self-metrics and process metrics. Blocks for at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`ScrapeError::Busy`] when too many scrapes wait already, [`ScrapeError::NoAnswer`]
    /// when the loop did not answer within `timeout` (or has ended).
    pub fn scrape(&self, timeout: Duration) -> Result<Vec<u8>, ScrapeError> {
        scrape(&self.requests, &self.metrics, timeout)
    }

    /// Returns a cheap, cloneable way to scrape from other threads.
    pub fn scraper(&self) -> Scraper {
        Scraper {
            requests: self.requests.clone(),
            metrics: Arc::clone(&self.metrics),
        }
    }

    /// Asks the loop to stop: it takes its final checkpoint and leaves the group.
    pub fn stop(&self) {
        self.shutdown.store(true, Ordering::Release);
    }

    /// Returns the flag [`LiveHandle::stop`] sets.
    pub fn shutdown_flag(&self) -> &Arc<AtomicBool> {
        &self.shutdown
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
        self.shutdown.store(true, Ordering::Release);
    }
}

/// Scrapes the loop from any thread: what [`LiveHandle::scrape`] does, detached from the
/// handle.
#[derive(Debug, Clone)]
pub struct Scraper {
    requests: Sender<Request>,
    metrics: Arc<SelfMetrics>,
}

impl Scraper {
    /// As [`LiveHandle::scrape`].
    ///
    /// # Errors
    ///
    /// As [`LiveHandle::scrape`].
    pub fn scrape(&self, timeout: Duration) -> Result<Vec<u8>, ScrapeError> {
        scrape(&self.requests, &self.metrics, timeout)
    }
}

fn scrape(
    requests: &Sender<Request>,
    metrics: &SelfMetrics,
    timeout: Duration,
) -> Result<Vec<u8>, ScrapeError> {
    let (reply, answer) = crossbeam_channel::bounded(1);
    requests
        .try_send(Request::Scrape(reply))
        .map_err(|_| ScrapeError::Busy)?;
    let mut text = answer
        .recv_timeout(timeout)
        .map_err(|_| ScrapeError::NoAnswer)?;
    metrics.encode(&mut text);
    Ok(text)
}

/// Runs the loop until `shutdown` is set; then takes a final checkpoint, commits and leaves
/// the group. Sets `status.finished` when it returns, on every path.
///
/// # Errors
///
/// A checkpoint that is refused at start (corrupt, or of another topic or configuration),
/// a client librdkafka refuses to create, or a failure of the checkpoint writer.
pub fn run(
    settings: LiveSettings,
    shutdown: &AtomicBool,
    requests: &Receiver<Request>,
    status: &Arc<Status>,
    metrics: &SelfMetrics,
) -> anyhow::Result<()> {
    let result = run_until_stopped(settings, shutdown, requests, status, metrics);
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
    metrics: &SelfMetrics,
) -> anyhow::Result<()> {
    let (checkpointer, restored) = Checkpointer::open(&settings, metrics)?;
    status.set(Readiness::Joining);
    let source = KafkaSource::new(&settings.kafka)?;
    let dlq = DeadLetterSink::new(&settings.kafka)?;
    let labels = Engine::new(&settings.engine)
        .context("invalid engine configuration")?
        .labels()
        .to_vec();
    let mut live = Live {
        partitions: Partitions::new(settings.engine.clone(), restored),
        checkpointer,
        dlq,
        settings,
        renderer: Renderer::new(RenderOptions::default()),
        labels,
        metrics,
        latency: metrics.apply_latency.local(),
        status: Arc::clone(status),
        rate_at: None,
        paused: false,
    };
    let result = live.main_loop(&source, shutdown, requests);
    status.set(Readiness::Stopping);
    if result.is_ok() {
        live.serve_requests(&source, requests);
    }
    let Live {
        mut partitions,
        checkpointer,
        dlq,
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
    checkpointer: Checkpointer,
    renderer: Renderer,
    /// The window labels, the same for every engine of the process.
    labels: Vec<String>,
    metrics: &'a SelfMetrics,
    /// The apply latency, observed without atomics and flushed in the service pass.
    latency: LocalHistogram,
    status: Arc<Status>,
    /// Start of the current rate window: when, and the consumed count then.
    rate_at: Option<(Instant, u64)>,
    /// Consumption is paused for the dead-letter topic.
    paused: bool,
}

impl Live<'_> {
    fn main_loop(
        &mut self,
        source: &KafkaSource,
        shutdown: &AtomicBool,
        requests: &Receiver<Request>,
    ) -> anyhow::Result<()> {
        let mut since_service = 0u32;
        while !shutdown.load(Ordering::Relaxed) {
            let polled = source.poll(POLL_TIMEOUT);
            let polled_at = Instant::now();
            let idle = matches!(polled, Polled::Nothing);
            match polled {
                Polled::Message(message) => {
                    let rejected = self.apply(
                        message.partition(),
                        message.offset(),
                        message.payload(),
                        message.key(),
                    );
                    if rejected {
                        self.check_pause(source)?;
                    }
                    self.latency.observe(polled_at.elapsed().as_secs_f64());
                }
                Polled::PartitionEof(partition) => {
                    self.partitions.caught_up(partition);
                    self.update_readiness();
                }
                Polled::Nothing => {}
                Polled::Error(error) => {
                    self.metrics.kafka_errors.inc();
                    warn!(error = %error, "kafka consumer error (librdkafka retries)");
                }
            }
            let rebalances = source.take_rebalance();
            if !rebalances.is_empty() {
                self.rebalance(source, rebalances)?;
            }
            since_service += 1;
            if idle || since_service >= MESSAGES_PER_SERVICE {
                since_service = 0;
                self.service(source, requests)?;
            }
        }
        Ok(())
    }

    /// Between messages: dead letters, scrapes, checkpoints, the event rate, pausing.
    fn service(
        &mut self,
        source: &KafkaSource,
        requests: &Receiver<Request>,
    ) -> anyhow::Result<()> {
        self.dlq.poll();
        self.check_pause(source)?;
        self.serve_requests(source, requests);
        self.checkpointer.tick(
            &mut self.partitions,
            &self.dlq,
            source,
            self.metrics,
            wall_clock(),
        )?;
        self.latency.flush();
        let now = Instant::now();
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
            source.set_paused(true)?;
            self.paused = true;
        } else if self.paused && pending <= limit / 2 {
            info!(pending, "dead letters written: resuming consumption");
            source.set_paused(false)?;
            self.paused = false;
        }
        Ok(())
    }

    fn serve_requests(&mut self, source: &KafkaSource, requests: &Receiver<Request>) {
        while let Ok(request) = requests.try_recv() {
            match request {
                Request::Scrape(reply) => {
                    let text = self.render();
                    self.refresh_metrics(source);
                    let _ = reply.send(text);
                }
            }
        }
    }

    /// Applies one message to its partition's engine; dead-letters it if rejected. Returns
    /// `true` when it was rejected.
    fn apply(
        &mut self,
        partition: Partition,
        offset: Offset,
        payload: Option<&[u8]>,
        key: Option<&[u8]>,
    ) -> bool {
        let Some(owned) = self.partitions.for_message(partition, offset) else {
            // A message fetched before its partition was revoked, or already applied.
            return false;
        };
        let now = wall_clock();
        let bytes = payload.unwrap_or_default();
        // The parser checks ledger.max_event_bytes first (oversized).
        let outcome = match self.settings.preparer.prepare(bytes) {
            Ok(event) => owned.engine.record(event, now).map(|_| ()),
            Err(rejection) => {
                owned.engine.count_rejection(rejection.reason);
                Err(rejection)
            }
        };
        owned.next = Some(Offset(offset.0 + 1));
        let watermark = owned.engine.watermark();
        self.partitions.note_watermark(watermark);
        self.metrics.consumed.inc();
        self.checkpointer.mark_dirty();
        let Err(rejection) = outcome else {
            return false;
        };
        self.dlq.send(DeadLetter {
            key: key.map(<[u8]>::to_vec),
            payload: bytes.to_vec(),
            reason: rejection.reason.as_str(),
            error: rejection.message.to_string(),
            partition,
            offset,
        });
        true
    }

    fn update_readiness(&self) {
        self.status.set(self.partitions.readiness());
    }

    fn rebalance(
        &mut self,
        source: &KafkaSource,
        rebalances: Vec<Rebalance>,
    ) -> anyhow::Result<()> {
        for rebalance in rebalances {
            self.metrics.rebalances.inc();
            match rebalance {
                Rebalance::Revoke(partitions) => self.partitions.revoke(&partitions),
                Rebalance::Assign(partitions) => {
                    let starts = self.partitions.assign(partitions)?;
                    source.assign(&starts)?;
                    // librdkafka keeps a paused partition paused across a reassignment;
                    // newly assigned ones must be paused too while the DLQ is stalled.
                    if self.paused {
                        source.set_paused(true)?;
                    }
                }
            }
        }
        self.update_readiness();
        Ok(())
    }

    /// Renders the contract's families over the shown partitions.
    fn render(&mut self) -> Vec<u8> {
        let views = self.partitions.shown_views(wall_clock());
        let merged = MergedView::new(&self.labels, views);
        let chunks = self.renderer.render(&merged);
        let mut text = Vec::with_capacity(chunks.iter().map(|c| c.len()).sum());
        for chunk in chunks {
            text.extend_from_slice(chunk);
        }
        text
    }

    /// Brings the gauges that are read from elsewhere (librdkafka's statistics, the sink,
    /// the partitions) up to date.
    fn refresh_metrics(&self, source: &KafkaSource) {
        let metrics = self.metrics;
        let high = source.high_watermarks();
        let owned = self.partitions.owned();
        // Only owned partitions have a lag here: a revoked one's series goes away. The HTTP
        // side encodes the registry after this pass, never during it.
        metrics.consumer_lag.reset();
        for owned in owned {
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
        metrics.refresh_checkpoint_age(SystemTime::now());
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
