//! Partition ownership: which partitions of the ledger topic this process owns, each with its
//! engine and the next offset to read, and what happens to them on assignment, revocation and
//! end of partition (the three jobs Quickwit's Kafka source splits the same way).
//!
//! A partition assigned with state (kept from before a revocation that gave it back, or found
//! in the checkpoint) resumes from its offset; for one without, `restore` decides where its
//! state comes from (the state topic, else a rebuild from the beginning of the partition),
//! and its customers are shown only once it has been read to its end. A partition whose
//! history is missing and not accepted is *held*: assigned but not read, and the process is
//! not ready. A revoked partition is parked until the next assignment, which may give it
//! back; whatever is not given back belongs to another member and is dropped, with its
//! customers.

use std::collections::HashMap;

use marginstream_aggregator::{ClockMode, Engine, EngineConfig, Prepared};
use marginstream_consumer::{Offset, Partition, StartAt};
use marginstream_model::Timestamp;
use tracing::info;

use super::restore::{Decided, Pending};
use super::Readiness;
use crate::checkpoint::PartitionCheckpoint;

/// One owned partition.
#[derive(Debug)]
pub(super) struct Owned {
    pub(super) partition: Partition,
    pub(super) engine: Engine,
    /// The next offset to read; `None` before the first message of a rebuild.
    pub(super) next: Option<Offset>,
    /// Read to its end once: its gauges are shown.
    pub(super) rebuilt: bool,
    /// Read to its end since it was assigned.
    pub(super) caught_up: bool,
    /// The state was built over history the broker no longer held
    /// (`marginstream_partition_history_truncated` is 1).
    pub(super) truncated: bool,
    /// Not read, because history it needs is gone and not accepted: why.
    pub(super) held: Option<String>,
}

/// The result of an assignment: where to start each new partition, and the ones to pause.
#[derive(Debug, Default)]
pub(super) struct Assigned {
    /// Every partition not owned before, with its start.
    pub(super) starts: Vec<(Partition, StartAt)>,
    /// The held ones among them: assigned, then paused.
    pub(super) held: Vec<Partition>,
    /// Restored from the state topic at these offsets: their snapshot is there already.
    pub(super) published: Vec<(Partition, Offset)>,
}

/// The owned partitions and the state of the group membership.
#[derive(Debug)]
pub(super) struct Partitions {
    /// Every engine's configuration (one per process).
    engine: EngineConfig,
    /// Sorted by partition.
    owned: Vec<Owned>,
    /// Revoked partitions kept until the next assignment, which may give them back.
    parked: Vec<Owned>,
    /// Restored from the checkpoint, not yet assigned.
    restored: HashMap<Partition, Owned>,
    /// The latest watermark of any owned partition: every engine is aligned to it.
    watermark: Option<Timestamp>,
    /// The index of the partition of the last message: consecutive messages mostly share it.
    last_index: usize,
    /// The partition whose engine's customer limit is current.
    limit_index: Option<usize>,
    assigned_once: bool,
    /// Revoked and not yet given a new assignment: not ready.
    awaiting_assignment: bool,
}

impl Partitions {
    /// Starts with no partition owned and the checkpoint's partitions waiting to be assigned.
    pub(super) fn new(engine: EngineConfig, restored: Vec<PartitionCheckpoint>) -> Partitions {
        let restored = restored
            .into_iter()
            .map(|p| {
                (
                    p.partition,
                    Owned {
                        partition: p.partition,
                        engine: p.engine,
                        next: Some(p.next),
                        rebuilt: p.rebuilt,
                        caught_up: false,
                        truncated: p.truncated,
                        held: None,
                    },
                )
            })
            .collect();
        Partitions {
            engine,
            owned: Vec::new(),
            parked: Vec::new(),
            restored,
            watermark: None,
            last_index: 0,
            limit_index: None,
            assigned_once: false,
            awaiting_assignment: false,
        }
    }

    /// Returns the owned partitions, sorted by partition.
    pub(super) fn owned(&self) -> &[Owned] {
        &self.owned
    }

    /// Returns the owned partitions, for publishing their changes.
    pub(super) fn owned_mut(&mut self) -> &mut [Owned] {
        &mut self.owned
    }

    /// Returns the bucket of the process's watermark (engines are aligned to it), in wall
    /// mode at least `now`'s.
    pub(super) fn watermark_bucket(&self, now: Timestamp) -> Option<i64> {
        let watermark = match self.engine.clock {
            ClockMode::Wall => Some(self.watermark.map_or(now, |w| w.max(now))),
            ClockMode::Event => self.watermark,
        }?;
        Some(marginstream_model::Bucket::of(watermark, self.engine.bucket.seconds()).0)
    }

    /// Returns `true` if `partition` is owned.
    pub(super) fn owns(&self, partition: Partition) -> bool {
        self.owned.iter().any(|o| o.partition == partition)
    }

    /// Parks the revoked partitions: not owned, not ready until the next assignment.
    pub(super) fn revoke(&mut self, partitions: &[Partition]) {
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

    /// Takes the assigned partitions: each not owned before goes to `decide` with the state
    /// this process holds for it (parked, or from the checkpoint), which says where its
    /// state comes from and where to start. Parked partitions not given back are dropped.
    ///
    /// # Errors
    ///
    /// `decide`'s.
    pub(super) fn assign(
        &mut self,
        partitions: Vec<Partition>,
        decide: impl FnOnce(Vec<Pending>) -> anyhow::Result<Vec<Decided>>,
    ) -> anyhow::Result<Assigned> {
        info!(partitions = ?partitions.iter().map(|p| p.0).collect::<Vec<_>>(), "partitions assigned");
        self.assigned_once = true;
        self.awaiting_assignment = false;
        let mut pending = Vec::new();
        for partition in partitions {
            if self.owns(partition) {
                continue;
            }
            let local = self.take_state(partition);
            pending.push(Pending { partition, local });
        }
        // Whatever was parked and not given back belongs to another member now.
        self.parked.clear();
        self.last_index = 0;
        self.limit_index = None;
        let mut assigned = Assigned::default();
        for decided in decide(pending)? {
            let mut owned = decided.owned;
            owned.caught_up = false;
            // Readers get every customer of a partition new to this process (or given back),
            // once it is shown.
            owned.engine.track_changes();
            owned.engine.mark_all_changed();
            info!(
                partition = owned.partition.0,
                start = ?decided.start,
                source = decided.source.as_str(),
                held = owned.held.is_some(),
                "starting partition"
            );
            // A restored state brings its own watermark: the process's is the latest of all,
            // restored or applied, or a partition read after it would be aligned short of it.
            self.watermark = self.watermark.max(owned.engine.watermark());
            assigned.starts.push((owned.partition, decided.start));
            if let Some(next) = decided.published {
                assigned.published.push((owned.partition, next));
            }
            if owned.held.is_some() {
                assigned.held.push(owned.partition);
            }
            self.owned.push(owned);
        }
        self.owned.sort_by_key(|o| o.partition);
        Ok(assigned)
    }

    /// The state this process holds for `partition`: parked, or restored from the checkpoint.
    fn take_state(&mut self, partition: Partition) -> Option<Owned> {
        self.parked
            .iter()
            .position(|o| o.partition == partition)
            .map(|i| self.parked.swap_remove(i))
            .or_else(|| self.restored.remove(&partition))
    }

    /// Marks `partition` read to its end: its customers are shown from now on. Returns
    /// `true` the first time since it was assigned.
    pub(super) fn caught_up(&mut self, partition: Partition) -> bool {
        let Some(index) = self.index_of(partition) else {
            return false;
        };
        let owned = &mut self.owned[index];
        let first = !owned.caught_up;
        if first {
            info!(
                partition = partition.0,
                next = owned.next.map(|o| o.0),
                "partition read to its end"
            );
        }
        owned.caught_up = true;
        owned.rebuilt = true;
        first
    }

    /// Returns the readiness the partitions imply.
    pub(super) fn readiness(&self) -> Readiness {
        if !self.assigned_once || self.awaiting_assignment {
            Readiness::Joining
        } else if self.owned.iter().any(|o| o.held.is_some()) {
            Readiness::HistoryTruncated
        } else if self.owned.iter().all(|o| o.caught_up) {
            Readiness::Ready
        } else {
            Readiness::CatchingUp
        }
    }

    /// Returns why partitions are held, one line each (empty when none is).
    pub(super) fn held_reasons(&self) -> Vec<&str> {
        self.owned
            .iter()
            .filter_map(|o| o.held.as_deref())
            .collect()
    }

    /// Returns the held partitions.
    pub(super) fn held(&self) -> Vec<Partition> {
        self.owned
            .iter()
            .filter(|o| o.held.is_some())
            .map(|o| o.partition)
            .collect()
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

    /// Reads ahead the state that applying `event` to `partition` will read
    /// ([`Engine::prefetch`]); does nothing when the partition is not owned.
    pub(super) fn prefetch(&self, partition: Partition, event: &Prepared) {
        let owned = match self.owned.get(self.last_index) {
            Some(owned) if owned.partition == partition => Some(owned),
            _ => self.owned.iter().find(|o| o.partition == partition),
        };
        if let Some(owned) = owned {
            owned.engine.prefetch(event);
        }
    }

    /// Returns the owned partition a message at `offset` of `partition` is for, with its
    /// engine's customer limit set to what the other partitions leave; `None` for a message
    /// of a partition no longer owned (fetched before a revocation) or one already applied.
    pub(super) fn for_message(
        &mut self,
        partition: Partition,
        offset: Offset,
    ) -> Option<&mut Owned> {
        let index = self.index_of(partition)?;
        if self.owned[index].next.is_some_and(|next| offset < next)
            || self.owned[index].held.is_some()
        {
            return None;
        }
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
                .set_max_customers(self.engine.max_customers.saturating_sub(others));
            self.limit_index = Some(index);
        }
        Some(&mut self.owned[index])
    }

    /// Returns the offset `partition` expected next when a message at `offset` skips past
    /// it: a gap in the offsets. Transaction markers leave such gaps; so does retention
    /// deleting what was not read yet (librdkafka then resets to the log start).
    pub(super) fn gap(&mut self, partition: Partition, offset: Offset) -> Option<Offset> {
        let index = self.index_of(partition)?;
        let owned = &self.owned[index];
        match owned.next {
            Some(next) if offset > next && owned.held.is_none() => Some(next),
            _ => None,
        }
    }

    /// Marks `partition` as missing the history from `expected` to before `log_start`,
    /// found while it was read: with `accept`, it goes on (flagged truncated); otherwise it
    /// is held (not read, not shown, `/readyz` 503). Returns `true` when it is held.
    pub(super) fn lost_history(
        &mut self,
        partition: Partition,
        expected: Offset,
        log_start: Offset,
        accept: bool,
    ) -> bool {
        let Some(index) = self.index_of(partition) else {
            return false;
        };
        let owned = &mut self.owned[index];
        owned.truncated = true;
        if accept {
            return false;
        }
        owned.rebuilt = false;
        owned.held = Some(format!(
            "history truncated: partition {} misses offsets {} to {} (the broker's log starts at {}: retention deleted them before they were read); set ledger.accept_truncated_history = true to proceed without them",
            partition.0,
            expected.0,
            log_start.0 - 1,
            log_start.0
        ));
        true
    }

    /// Notes a partition's watermark after an event: the process's is the latest of all.
    pub(super) fn note_watermark(&mut self, watermark: Option<Timestamp>) {
        self.watermark = self.watermark.max(watermark);
    }

    /// Moves every engine to the process's watermark and, in wall-clock mode, to `now`.
    pub(super) fn align(&mut self, now: Timestamp) {
        let wall = self.engine.clock == ClockMode::Wall;
        for owned in &mut self.owned {
            if let Some(watermark) = self.watermark {
                owned.engine.advance_watermark(watermark);
            }
            if wall {
                owned.engine.tick(now);
            }
        }
    }

    /// Returns the partitions that have been read (a checkpoint holds them) with their next
    /// offsets.
    pub(super) fn offsets(&self) -> Vec<(Partition, Offset)> {
        self.owned
            .iter()
            .filter_map(|o| o.next.map(|next| (o.partition, next)))
            .collect()
    }

    /// Returns the number of owned partitions not read to their end once.
    pub(super) fn rebuilding(&self) -> usize {
        self.owned.iter().filter(|o| !o.rebuilt).count()
    }
}
