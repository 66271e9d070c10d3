//! The publisher thread: applies the loop's deltas to its working copy and publishes a
//! snapshot at each commit; keeps the exposure budget's choice.
//!
//! **When the choice changes** (contract section 7): at the first commit that holds
//! customers, every `metrics.rank_interval` after that, and when the set of shown partitions
//! changes (a rebalance brings or takes a whole partition's customers). In between, a
//! customer seen for the first time is chosen only while fewer than `metrics.customers_max`
//! are; nobody else gains or loses series, so no series flaps.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use crossbeam_channel::{Receiver, Sender, TrySendError};
use marginstream_consumer::Partition;
use marginstream_exporter::exposure::{self, ExposureConfig};
use marginstream_model::{CustomerId, GaugeView};
use tracing::debug;

use super::{Board, Commit, Delta, PartitionState, Snapshot, Sums};

/// Deltas waiting for the publisher: about this many chunks of customers at most (a chunk
/// is up to `live::publish`'s chunk size), which bounds the memory in flight.
const DELTAS_MAX: usize = 256;

/// The publisher thread and the channel to it.
#[derive(Debug)]
pub struct Publisher {
    sender: Option<Sender<Delta>>,
    thread: Option<JoinHandle<()>>,
    board: Arc<Board>,
}

impl Publisher {
    /// Starts the publisher thread, publishing to `board` with its settings.
    ///
    /// # Errors
    ///
    /// When the thread cannot be started.
    pub fn spawn(board: Arc<Board>) -> anyhow::Result<Publisher> {
        let (sender, receiver) = crossbeam_channel::bounded(DELTAS_MAX);
        let thread = {
            let board = Arc::clone(&board);
            std::thread::Builder::new()
                .name("publisher".to_owned())
                .spawn(move || Store::new(board).run(&receiver))
                .context("cannot start the publisher thread")?
        };
        Ok(Publisher {
            sender: Some(sender),
            thread: Some(thread),
            board,
        })
    }

    /// Hands `delta` to the publisher without waiting; gives it back when the publisher is
    /// [`DELTAS_MAX`] deltas behind (the loop tries again later, never blocks on it).
    ///
    /// # Errors
    ///
    /// The delta, when the channel is full or the publisher has ended.
    pub fn try_send(&self, delta: Delta) -> Result<(), Delta> {
        match &self.sender {
            Some(sender) => sender.try_send(delta).map_err(|error| match error {
                TrySendError::Full(delta) | TrySendError::Disconnected(delta) => delta,
            }),
            None => Err(delta),
        }
    }

    /// Returns the board the snapshots are published to.
    pub fn board(&self) -> &Arc<Board> {
        &self.board
    }
}

impl Drop for Publisher {
    /// Closes the channel and waits for the thread to apply what was sent.
    fn drop(&mut self) {
        self.sender = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The publisher thread's state.
struct Store {
    board: Arc<Board>,
    labels: Arc<[String]>,
    exposure: ExposureConfig,
    rank_interval: Duration,
    /// Every partition the loop sent customers for, with their latest sums.
    working: BTreeMap<Partition, imbl::OrdMap<CustomerId, Sums>>,
    /// Ids inserted since the last commit (new to their partition).
    new_ids: Vec<CustomerId>,
    chosen: Arc<HashSet<CustomerId>>,
    ranked_at: Option<Instant>,
    /// The shown partitions of the last commit.
    shown: Vec<Partition>,
    epoch: u64,
}

impl Store {
    fn new(board: Arc<Board>) -> Store {
        let settings = board.settings().clone();
        Store {
            labels: Arc::from(board.latest().labels()),
            board,
            exposure: settings.exposure,
            rank_interval: settings.rank_interval,
            working: BTreeMap::new(),
            new_ids: Vec::new(),
            chosen: Arc::new(HashSet::new()),
            ranked_at: None,
            shown: Vec::new(),
            epoch: 0,
        }
    }

    fn run(mut self, receiver: &Receiver<Delta>) {
        for delta in receiver {
            match delta {
                Delta::Upsert {
                    partition,
                    customers,
                } => {
                    let map = self.working.entry(partition).or_default();
                    for (id, sums) in customers {
                        if map.insert(id.clone(), Arc::from(sums)).is_none() {
                            self.new_ids.push(id);
                        }
                    }
                }
                Delta::Remove { partition, ids } => {
                    if let Some(map) = self.working.get_mut(&partition) {
                        for id in ids {
                            map.remove(&id);
                        }
                    }
                }
                Delta::Commit(commit) => self.commit(commit),
            }
        }
    }

    fn commit(&mut self, commit: Commit) {
        let started = Instant::now();
        let shown: Vec<Partition> = commit.partitions.iter().map(|p| p.partition).collect();
        // A partition no longer shown was revoked: its customers go.
        self.working
            .retain(|partition, _| shown.contains(partition));
        let partitions: BTreeMap<Partition, PartitionState> = commit
            .partitions
            .into_iter()
            .map(|p| {
                let customers = self.working.get(&p.partition).cloned().unwrap_or_default();
                (
                    p.partition,
                    PartitionState {
                        customers,
                        portfolio: Arc::from(p.portfolio),
                        counters: p.counters,
                        watermark: p.watermark,
                    },
                )
            })
            .collect();
        self.epoch += 1;
        let mut snapshot = Snapshot {
            epoch: self.epoch,
            published_at: SystemTime::now(),
            labels: Arc::clone(&self.labels),
            partitions,
            chosen: Arc::clone(&self.chosen),
            flat: std::sync::OnceLock::new(),
        };
        let held = snapshot
            .partitions
            .values()
            .any(|p| !p.customers.is_empty());
        let rank_due = self
            .ranked_at
            .is_none_or(|at| at.elapsed() >= self.rank_interval);
        if held && (rank_due || shown != self.shown) {
            let chosen = exposure::choose(snapshot.view(), &self.exposure);
            self.chosen = Arc::new(chosen.into_iter().map(CustomerId::from).collect());
            self.ranked_at = Some(Instant::now());
            debug!(
                chosen = self.chosen.len(),
                held = snapshot.view().customer_count(),
                "customers ranked for the exposure budget"
            );
        } else {
            let max = self.exposure.customers_max;
            for id in self.new_ids.drain(..) {
                if self.chosen.len() >= max {
                    break;
                }
                if !self.chosen.contains(&id) {
                    Arc::make_mut(&mut self.chosen).insert(id);
                }
            }
        }
        self.new_ids.clear();
        self.shown = shown;
        snapshot.chosen = Arc::clone(&self.chosen);
        self.board.replace(snapshot);
        debug!(
            epoch = self.epoch,
            seconds = started.elapsed().as_secs_f64(),
            "snapshot published"
        );
    }
}
