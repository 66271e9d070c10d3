//! Publishing: the loop's side of the readers' snapshots (`crate::published`). Every
//! `metrics.publish_interval` a pass copies what changed to the publisher thread, in steps
//! of at most a fraction of a millisecond between messages, so that no scrape or query
//! ever holds up consumption.
//!
//! A pass:
//!
//! 1. **Walk** (only when the watermark's bucket moved since the last walk): slide every
//!    shown customer's windows to the watermark, a thousand slots at a time; sliding marks
//!    the customers whose figures changed. Windows are whole buckets, so within a bucket
//!    nothing changes with time alone.
//! 2. **Drain**: copy the changed customers (slid first) in chunks to the publisher. A
//!    customer changed again by an event after its copy is marked again and copied again.
//! 3. **Commit**: once the changed customers left are few enough to copy at once, copy them,
//!    then every shown partition's portfolio, counters and watermark, all at one moment
//!    between two messages: the snapshot is exactly the state at that moment.
//!
//! If the watermark's bucket moves during a pass, the walk starts again: a snapshot never
//! mixes figures slid to two buckets. Deltas the publisher cannot take yet wait here, in
//! order, and the pass waits for them.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use marginstream_model::{CustomerId, Timestamp};
use rust_decimal::Decimal;

use super::partitions::Partitions;
use crate::published::{Commit, Delta, PartitionCommit, Publisher};

/// Customers per chunk sent to the publisher. A busy pass (every 256 messages) drains at
/// least one chunk, so a chunk as large as the customers 256 messages can change keeps the
/// changed customers from growing under load.
const CHUNK_CUSTOMERS: usize = 256;

/// A commit copies the changed customers left at once when there are at most this many:
/// twice what a busy pass drains, so a commit comes under sustained load too, and under a
/// millisecond of the loop's time (measured: a commit of up to 2048 took 2.5-3.5 ms of CPU,
/// about 1.5 µs a customer with its cache misses).
const COMMIT_CUSTOMERS_MAX: usize = 512;

/// Slots slid between two looks at the clock during a walk (a few microseconds each when
/// entries leave a window, so a step overshoots its deadline by at most a few hundred).
const SLIDE_SLOTS: usize = 64;

/// Where a pass is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pass {
    /// Waiting for the next interval.
    Idle,
    /// Sliding the shown customers to `bucket`: next the `index`-th owned partition, from
    /// slot `slot`.
    Walking {
        bucket: Option<i64>,
        index: usize,
        slot: usize,
    },
    /// Copying changed customers, every shown customer being slid to `bucket`.
    Draining { bucket: Option<i64> },
}

/// The loop's publishing state.
#[derive(Debug)]
pub(super) struct Publishing {
    publisher: Publisher,
    interval: Duration,
    pass: Pass,
    /// When the last pass started, `None` before the first.
    started_at: Option<Instant>,
    /// The bucket every shown customer was last slid to.
    walked: Option<Option<i64>>,
    /// Deltas the publisher could not take yet, in order.
    outbox: VecDeque<Delta>,
    /// Commits made, and the readiness version each carried (see [`Publishing::commit`]).
    commits: u64,
    committed_version: u64,
}

impl Publishing {
    /// Publishes through `publisher` every `interval`.
    pub(super) fn new(publisher: Publisher, interval: Duration) -> Publishing {
        Publishing {
            publisher,
            interval,
            pass: Pass::Idle,
            started_at: None,
            walked: None,
            outbox: VecDeque::new(),
            commits: 0,
            committed_version: 0,
        }
    }

    /// Returns the board readers read the snapshots from.
    pub(super) fn board(&self) -> &std::sync::Arc<crate::published::Board> {
        self.publisher.board()
    }

    /// Returns `true` while a pass is under way (the loop should come back soon).
    pub(super) fn busy(&self) -> bool {
        self.pass != Pass::Idle || !self.outbox.is_empty()
    }

    /// Returns the readiness version of the last commit: readers' figures reflect every
    /// change of assignment and every partition caught up before it.
    pub(super) fn committed_version(&self) -> Option<u64> {
        (self.commits > 0).then_some(self.committed_version)
    }

    /// Starts the next pass at once, walking every customer (after a rebalance: the shown
    /// partitions changed).
    pub(super) fn restart(&mut self) {
        self.pass = Pass::Idle;
        self.started_at = None;
        self.walked = None;
    }

    /// Does publishing work until `deadline` (at least one small step). `version` is the
    /// loop's readiness version now.
    pub(super) fn step(
        &mut self,
        partitions: &mut Partitions,
        now: Timestamp,
        deadline: Instant,
        version: u64,
    ) {
        if !self.flush() {
            return;
        }
        loop {
            match self.pass {
                Pass::Idle => {
                    if self
                        .started_at
                        .is_some_and(|at| at.elapsed() < self.interval)
                    {
                        return;
                    }
                    self.started_at = Some(Instant::now());
                    partitions.align(now);
                    let bucket = partitions.watermark_bucket(now);
                    self.pass = if self.walked == Some(bucket) {
                        Pass::Draining { bucket }
                    } else {
                        Pass::Walking {
                            bucket,
                            index: 0,
                            slot: 0,
                        }
                    };
                }
                Pass::Walking {
                    bucket,
                    mut index,
                    mut slot,
                } => {
                    partitions.align(now);
                    let current = partitions.watermark_bucket(now);
                    if current != bucket {
                        self.pass = Pass::Walking {
                            bucket: current,
                            index: 0,
                            slot: 0,
                        };
                        continue;
                    }
                    let owned = partitions.owned_mut();
                    while index < owned.len() {
                        let partition = &mut owned[index];
                        if partition.rebuilt {
                            let slots = partition.engine.slot_count();
                            while slot < slots {
                                partition.engine.slide_customers(slot, SLIDE_SLOTS);
                                slot += SLIDE_SLOTS;
                                if Instant::now() >= deadline {
                                    self.pass = Pass::Walking {
                                        bucket,
                                        index,
                                        slot,
                                    };
                                    return;
                                }
                            }
                        }
                        index += 1;
                        slot = 0;
                    }
                    self.walked = Some(bucket);
                    self.pass = Pass::Draining { bucket };
                }
                Pass::Draining { bucket } => {
                    partitions.align(now);
                    let current = partitions.watermark_bucket(now);
                    if current != bucket {
                        self.pass = Pass::Walking {
                            bucket: current,
                            index: 0,
                            slot: 0,
                        };
                        continue;
                    }
                    let changed: usize = partitions
                        .owned()
                        .iter()
                        .filter(|o| o.rebuilt)
                        .map(|o| o.engine.changed_count())
                        .sum();
                    if changed <= COMMIT_CUSTOMERS_MAX {
                        self.commit(partitions, version);
                        self.flush();
                        return;
                    }
                    self.drain(partitions, CHUNK_CUSTOMERS);
                    if !self.flush() || Instant::now() >= deadline {
                        return;
                    }
                }
            }
        }
    }

    /// Copies at most `max` changed customers of the shown partitions into the outbox, in
    /// chunks, each partition's removed customers first (a customer removed and added again
    /// must end up present).
    fn drain(&mut self, partitions: &mut Partitions, max: usize) {
        let mut left = max;
        for owned in partitions.owned_mut().iter_mut().filter(|o| o.rebuilt) {
            let partition = owned.partition;
            let ids = owned.engine.take_removed();
            if !ids.is_empty() {
                self.outbox.push_back(Delta::Remove { partition, ids });
            }
            while left > 0 && owned.engine.changed_count() > 0 {
                let take = CHUNK_CUSTOMERS.min(left);
                let mut customers: Vec<(CustomerId, Box<[Decimal]>)> = Vec::with_capacity(take);
                // Copies `take` customers, or empties the list (fewer copied).
                owned.engine.drain_changes(take, &mut |id, figures| {
                    customers.push((CustomerId::from(id), Box::from(figures.sums())));
                });
                if !customers.is_empty() {
                    self.outbox.push_back(Delta::Upsert {
                        partition,
                        customers,
                    });
                }
                left -= take;
            }
            // Customers found empty while draining (lifetime window off) go after the
            // copies: nothing was copied for them.
            let ids = owned.engine.take_removed();
            if !ids.is_empty() {
                self.outbox.push_back(Delta::Remove { partition, ids });
            }
            if left == 0 {
                return;
            }
        }
    }

    /// Copies every changed customer left, then every shown partition's figures, as one
    /// moment: a commit.
    fn commit(&mut self, partitions: &mut Partitions, version: u64) {
        self.drain(partitions, usize::MAX);
        let shown = partitions
            .owned()
            .iter()
            .filter(|o| o.rebuilt)
            .map(|o| PartitionCommit {
                partition: o.partition,
                portfolio: Box::from(o.engine.portfolio_figures().sums()),
                counters: *o.engine.counters(),
                watermark: o.engine.watermark(),
            })
            .collect();
        self.outbox
            .push_back(Delta::Commit(Commit { partitions: shown }));
        self.commits += 1;
        self.committed_version = version;
        self.pass = Pass::Idle;
    }

    /// Sends what waits in the outbox, in order; returns `true` when it is empty.
    fn flush(&mut self) -> bool {
        while let Some(delta) = self.outbox.pop_front() {
            if let Err(delta) = self.publisher.try_send(delta) {
                self.outbox.push_front(delta);
                return false;
            }
        }
        true
    }
}
