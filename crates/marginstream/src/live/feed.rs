//! The feeder: a thread of its own that reads the consumer and parses what it read, so that
//! the loop's thread only applies. It hands the loop batches, in the order read, through a
//! bounded channel, and destroys the messages the loop hands back once applied.
//!
//! Messages are read with librdkafka's batch API from the queue every assigned partition is
//! forwarded to ([`KafkaSource::poll_batch`]); between batches the feeder serves the
//! consumer's own queue ([`KafkaSource::poll`]), where rebalances, consumer errors and
//! statistics come, so a rebalance never happens while a batch is read.
//!
//! The loop sees exactly the sequence one thread polling would see: messages in order, a
//! batch ending at anything that is not a message (a partition's end, an error) and at a
//! rebalance. After a batch that ends at a rebalance the feeder reads nothing until the loop
//! has handled it ([`Feed::resume`]), as the loop itself never polled between a rebalance and
//! its handling. What the loop does to the consumer meanwhile (assign, pause, commit) is
//! librdkafka's thread-safe API; a message already fed for a partition paused or revoked
//! since is still applied or skipped by the loop, by its offset, as before.
//!
//! Limits: at most [`FEED_BATCHES_MAX`] batches of at most [`BATCH_MESSAGES_MAX`] messages
//! and about [`BATCH_BYTES_MAX`] bytes wait in the channel (librdkafka's own queue is the
//! buffer before it); a full channel blocks the feeder, which then reads nothing.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::time::{Duration, Instant};

use marginstream_aggregator::{Prepared, Preparer};
use marginstream_consumer::kafka::SourceMessage;
use marginstream_consumer::{KafkaSource, Offset, Partition, Polled};
use marginstream_model::Rejection;

/// The most messages in one batch: what librdkafka already holds, never waiting for more.
/// While messages come slower than they are applied, batches are small; under a backlog
/// (a rebuild, catching up) they reach this size. Each batch costs the two threads a
/// handoff (a wake-up, caches moving between cores): measured in issue 12 on 2 cores with
/// the broker (`scripts/bench-kafka.sh`, messages then polled one at a time), batches of at
/// most 16, 64, 256, 1024 and 2048 consumed 0.57, 0.63, 0.68, 0.72-0.78 and 0.70-0.75M
/// messages/s.
pub(super) const BATCH_MESSAGES_MAX: usize = 1024;

/// The most messages in one batch when librdkafka's queue was emptied by the read (no
/// backlog: messages are applied about as fast as they come): what was read is parsed and
/// handed over in batches of this size, so the loop applies the first while the feeder
/// parses the next.
pub(super) const STREAM_BATCH_MESSAGES: usize = 64;

/// The most payload bytes in one batch (the batch ends at the message that reaches it):
/// with [`FEED_BATCHES_MAX`], bounds what the feeder holds beyond librdkafka's queue to a few
/// MiB whatever the message size.
pub(super) const BATCH_BYTES_MAX: usize = 1 << 20;

/// Batches that may wait for the loop, besides the one it applies and the one the feeder
/// fills: two keep the loop busy while the feeder parses (one was slower, four no faster).
pub(super) const FEED_BATCHES_MAX: usize = 2;

/// How long the feeder waits for a message before it serves the consumer's own queue
/// (rebalances, errors, statistics) again: how soon a rebalance or the loop's stop is seen.
const FEED_POLL_TIMEOUT: Duration = Duration::from_millis(10);

/// Messages polled together, parsed, and what ended them.
pub(super) struct Batch<'a> {
    /// The messages, in the order polled.
    pub(super) messages: Vec<SourceMessage<'a>>,
    /// Each message's position and parse, at the same index.
    pub(super) parsed: Vec<Parsed>,
    /// When the first message was polled: every message's apply latency counts from there.
    pub(super) polled_at: Instant,
    /// What ended the batch when it was not a message: a partition's end or an error
    /// (`Polled::Nothing` otherwise; never a message).
    pub(super) end: Polled<'a>,
    /// A rebalance is pending after this batch: the feeder waits for [`Feed::resume`].
    pub(super) rebalance: bool,
}

/// One message's position and parse: what the loop reads of every message, side by side
/// with the others' (the message itself, in librdkafka's memory, is read again only to
/// dead-letter it).
pub(super) struct Parsed {
    /// Its partition.
    pub(super) partition: Partition,
    /// Its offset.
    pub(super) offset: Offset,
    /// Parsed, converted and tagged, or why not.
    pub(super) result: Result<Prepared, Rejection>,
}

/// The loop's end of the feeder.
pub(super) struct Feed<'a> {
    batches: Receiver<Batch<'a>>,
    resume: SyncSender<()>,
    /// Applied messages, sent back: the feeder destroys them (librdkafka frees their
    /// buffers) and reuses the vectors, off the loop's thread.
    applied: SyncSender<Vec<SourceMessage<'a>>>,
}

/// What the loop got from [`Feed::next`].
pub(super) enum Fed<'a> {
    /// A batch (perhaps of no message, when it only reports an end or a rebalance).
    Batch(Batch<'a>),
    /// Nothing within the timeout.
    Idle,
}

impl<'a> Feed<'a> {
    /// Spawns the feeder on `scope`. It stops when `stop` is set or the [`Feed`] is
    /// dropped.
    pub(super) fn spawn<'scope>(
        scope: &'scope std::thread::Scope<'scope, '_>,
        source: &'a KafkaSource,
        preparer: Preparer,
        stop: &'a AtomicBool,
    ) -> anyhow::Result<Feed<'a>>
    where
        'a: 'scope,
    {
        let (batch_tx, batches) = mpsc::sync_channel(FEED_BATCHES_MAX);
        let (resume, resume_rx) = mpsc::sync_channel(1);
        let (applied, applied_rx) = mpsc::sync_channel(FEED_BATCHES_MAX + 2);
        std::thread::Builder::new()
            .name("ledger-feed".to_owned())
            .spawn_scoped(scope, move || {
                let channels = Channels {
                    batches: batch_tx,
                    resume: resume_rx,
                    applied: applied_rx,
                };
                feed(source, &preparer, &channels, stop);
            })?;
        Ok(Feed {
            batches,
            resume,
            applied,
        })
    }

    /// The next batch, waiting at most `timeout`. An error when the feeder is gone, which
    /// only a panic on its thread does while the loop runs.
    pub(super) fn next(&self, timeout: Duration) -> anyhow::Result<Fed<'a>> {
        match self.batches.recv_timeout(timeout) {
            Ok(batch) => Ok(Fed::Batch(batch)),
            Err(RecvTimeoutError::Timeout) => Ok(Fed::Idle),
            Err(RecvTimeoutError::Disconnected) => {
                anyhow::bail!("the thread polling the consumer stopped unexpectedly")
            }
        }
    }

    /// Hands applied messages back to the feeder, which destroys them; when it is behind,
    /// they are destroyed here.
    pub(super) fn applied(&self, messages: Vec<SourceMessage<'a>>) {
        // A refused send hands the messages back in its error, dropped here.
        let _ = self.applied.try_send(messages);
    }

    /// Lets the feeder poll again after a batch that ended at a rebalance, once the loop
    /// has handled the rebalance.
    pub(super) fn resume(&self) {
        // The feeder waits for exactly this; if it is gone, next() says so.
        let _ = self.resume.try_send(());
    }
}

/// The feeder's ends of the channels.
struct Channels<'a> {
    batches: SyncSender<Batch<'a>>,
    resume: Receiver<()>,
    applied: Receiver<Vec<SourceMessage<'a>>>,
}

/// The feeder's loop: serve the consumer's own queue (rebalances, errors, statistics), read
/// a batch of messages (what librdkafka already holds, up to [`BATCH_MESSAGES_MAX`] and
/// about [`BATCH_BYTES_MAX`], never waiting once a message came), parse it, send it. A
/// partition's end or an error ends a batch; a pending rebalance ends the reading.
fn feed<'a>(
    source: &'a KafkaSource,
    preparer: &Preparer,
    channels: &Channels<'a>,
    stop: &AtomicBool,
) {
    let mut read: Vec<Polled<'a>> = Vec::with_capacity(BATCH_MESSAGES_MAX);
    let mut spare: Vec<Vec<SourceMessage<'a>>> = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        // What the loop applied: destroyed here, the vectors kept for the next batches.
        for mut messages in channels.applied.try_iter() {
            messages.clear();
            if spare.len() < FEED_BATCHES_MAX + 2 {
                spare.push(messages);
            }
        }
        // Rebalances happen only here, so none happens while the messages are read.
        match source.poll(Duration::ZERO) {
            Polled::Nothing => {}
            other => read.push(other),
        }
        let rebalance = source.rebalance_pending();
        // A backlog fills a batch; when librdkafka's queue was emptied instead, messages
        // come as fast as they are read, and smaller batches let the loop start at once.
        let mut chunk = BATCH_MESSAGES_MAX;
        if !rebalance && read.is_empty() && read_messages(source, &mut read) {
            chunk = STREAM_BATCH_MESSAGES;
        }
        let polled_at = Instant::now();
        if read.is_empty() && !rebalance {
            continue;
        }
        let mut messages = spare.pop().unwrap_or_default();
        // Parses `messages` into a batch ending at `end` and sends it; `false` when the loop
        // is gone.
        let send = |messages, end, rebalance| {
            let batch = parse(preparer, messages, polled_at, end, rebalance);
            channels.batches.send(batch).is_ok()
        };
        // Cut at each partition end or error: the loop handles it after exactly the
        // messages before it.
        for polled in read.drain(..) {
            let end = match polled {
                Polled::Message(message) => {
                    messages.push(message);
                    if messages.len() < chunk {
                        continue;
                    }
                    Polled::Nothing
                }
                end => end,
            };
            let full = std::mem::replace(&mut messages, spare.pop().unwrap_or_default());
            if !send(full, end, false) {
                return;
            }
        }
        if (!messages.is_empty() || rebalance) && !send(messages, Polled::Nothing, rebalance) {
            return;
        }
        if rebalance && channels.resume.recv().is_err() {
            return;
        }
    }
}

/// Reads messages into `read`, waiting at most [`FEED_POLL_TIMEOUT`] for the first, then
/// taking only what librdkafka already holds, until the batch is full or a partition's end
/// or an error comes. Returns `true` when it took all librdkafka held: no backlog.
fn read_messages<'a>(source: &'a KafkaSource, read: &mut Vec<Polled<'a>>) -> bool {
    // librdkafka's batch read waits for all it was asked for, until its timeout: so one
    // message is waited for, and the rest taken only if already there.
    source.poll_batch(FEED_POLL_TIMEOUT, 1, read);
    let Some(Polled::Message(first)) = read.last() else {
        return true;
    };
    let mut bytes = first.payload().map_or(0, <[u8]>::len);
    loop {
        let before = read.len();
        let drained = source.poll_batch(Duration::ZERO, BATCH_MESSAGES_MAX - before, read);
        let mut ended = false;
        for polled in &read[before..] {
            match polled {
                Polled::Message(message) => {
                    bytes += message.payload().map_or(0, <[u8]>::len);
                }
                _ => ended = true,
            }
        }
        if drained {
            return true;
        }
        if ended || read.len() >= BATCH_MESSAGES_MAX || bytes >= BATCH_BYTES_MAX {
            return false;
        }
    }
}

/// Parses `messages` into a batch ending at `end` (and at a rebalance, with `rebalance`).
fn parse<'a>(
    preparer: &Preparer,
    messages: Vec<SourceMessage<'a>>,
    polled_at: Instant,
    end: Polled<'a>,
    rebalance: bool,
) -> Batch<'a> {
    // The parser checks ledger.max_event_bytes first (oversized).
    let parsed = messages
        .iter()
        .map(|message| Parsed {
            partition: message.partition(),
            offset: message.offset(),
            result: preparer.prepare(message.payload().unwrap_or_default()),
        })
        .collect();
    Batch {
        messages,
        parsed,
        polled_at,
        end,
        rebalance,
    }
}
