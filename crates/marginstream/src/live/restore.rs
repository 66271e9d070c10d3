//! Where a newly assigned partition's state comes from, and whether its history is whole
//! (contract sections 10 and 11).
//!
//! For each partition not owned before, in order:
//!
//! 1. **Local**: the state this process holds (kept across the rebalance, or from its
//!    checkpoint), unless it was built under other tagging rules or rates.
//! 2. **State topic**: the latest complete snapshot of the partition built under the running
//!    configuration; damaged, incomplete or foreign ones are passed over, counted and logged.
//! 3. **Rebuild** from the beginning of the partition.
//!
//! Before reading from the chosen offset (the beginning for a rebuild), the partition's log
//! start offset is asked of the broker: when it is past that offset, the history in between
//! is gone. Then the state with the most history wins (local or snapshot), the partition's
//! `marginstream_partition_history_truncated` is 1, an ERROR names the missing offsets, and
//! the partition is *held* (assigned, not read, `/readyz` 503 saying why) unless
//! `ledger.accept_truncated_history` lets it proceed from the log start.
//!
//! A partition whose only state was built under other rules or rates is *restated*: rebuilt
//! from the beginning under the running ones (and counted), or, with
//! `ledger.on_rules_change = "refuse"`, the loop stops with [`RulesChanged`].
//!
//! The reads (log start offsets, the state topic) happen on the loop, between the
//! assignment and the `assign` call that starts fetching; readiness says "restoring"
//! meanwhile. The restored partition is shown to readers once read to its end.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use marginstream_aggregator::{Engine, EngineConfig};
use marginstream_consumer::{Offset, Partition, StartAt};
use tracing::{error, info, warn};

use super::partitions::Owned;
use super::self_metrics::SelfMetrics;
use super::state_store::StateStore;
use crate::fingerprint::{OnRulesChange, RulesChanged, RulesFingerprint};
use crate::state_topic::{self, Refusal};

/// How long one request for a partition's log start offset may take.
const LOG_START_TIMEOUT: Duration = Duration::from_secs(10);

/// How many times that request is tried before the loop gives up (an error: without it,
/// missing history could go unnoticed).
const LOG_START_TRIES: u32 = 3;

/// What the restorer asks of the broker, through the loop's consumer.
pub(super) trait Broker {
    /// Returns the ledger partition's log start offset.
    fn log_start_offset(&self, partition: Partition, timeout: Duration) -> anyhow::Result<Offset>;
    /// Returns the end offset of a partition of another topic (the state topic).
    fn end_offset(&self, topic: &str, partition: i32, timeout: Duration) -> anyhow::Result<i64>;
}

impl Broker for marginstream_consumer::KafkaSource {
    fn log_start_offset(&self, partition: Partition, timeout: Duration) -> anyhow::Result<Offset> {
        Ok(marginstream_consumer::KafkaSource::log_start_offset(
            self, partition, timeout,
        )?)
    }

    fn end_offset(&self, topic: &str, partition: i32, timeout: Duration) -> anyhow::Result<i64> {
        Ok(self.watermarks(topic, partition, timeout)?.1)
    }
}

/// The settings of restores, truncated history and rules changes.
#[derive(Debug, Clone)]
pub struct RestoreSettings {
    /// The state topic; `None`: turned off (`kafka.state_topic = ""`).
    pub state_topic: Option<String>,
    /// `ledger.accept_truncated_history`.
    pub accept_truncated_history: bool,
    /// `ledger.on_rules_change`.
    pub on_rules_change: OnRulesChange,
    /// The running rules and rates.
    pub rules: RulesFingerprint,
}

/// Where a partition's state came from: the `source` label of
/// `marginstream_partition_restores_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Source {
    /// Kept across a rebalance, or the local checkpoint.
    Local,
    /// A snapshot of the state topic.
    StateTopic,
    /// Rebuilt from the beginning of the partition.
    Rebuild,
}

impl Source {
    /// Returns the label value.
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Source::Local => "local",
            Source::StateTopic => "state_topic",
            Source::Rebuild => "rebuild",
        }
    }
}

/// A partition newly assigned, with the state this process holds for it.
#[derive(Debug)]
pub(super) struct Pending {
    pub(super) partition: Partition,
    /// Kept across the rebalance, or from the checkpoint.
    pub(super) local: Option<Owned>,
}

/// A partition's state and start, decided.
#[derive(Debug)]
pub(super) struct Decided {
    pub(super) owned: Owned,
    pub(super) start: StartAt,
    pub(super) source: Source,
    /// Restored from this snapshot's offset: the state topic already holds it.
    pub(super) published: Option<Offset>,
}

/// The restorer's state.
#[derive(Debug)]
pub(super) struct Restorer {
    settings: RestoreSettings,
    store: Option<StateStore>,
    /// Partitions of the checkpoint built under other rules or rates: restated (unless the
    /// state topic has a snapshot under the running ones) when assigned; what changed.
    restate: HashMap<Partition, Vec<String>>,
}

impl Restorer {
    /// Creates the restorer; `restate` lists the checkpoint's partitions built under other
    /// rules, with what changed.
    pub(super) fn new(
        settings: RestoreSettings,
        store: Option<StateStore>,
        restate: HashMap<Partition, Vec<String>>,
    ) -> Restorer {
        Restorer {
            settings,
            store,
            restate,
        }
    }

    /// Decides each pending partition's state and start. `log_start` asks the broker for a
    /// partition's log start offset; `new_engine` makes an empty engine.
    ///
    /// # Errors
    ///
    /// When the log start offset cannot be read (after [`LOG_START_TRIES`] tries), the state
    /// topic cannot be checked or created, or a snapshot built under other rules is found with
    /// `ledger.on_rules_change = "refuse"` ([`RulesChanged`]).
    pub(super) fn decide(
        &mut self,
        pending: Vec<Pending>,
        config: &EngineConfig,
        broker: &dyn Broker,
        metrics: &SelfMetrics,
    ) -> anyhow::Result<Vec<Decided>> {
        if pending.is_empty() {
            return Ok(Vec::new());
        }
        if let Some(store) = &self.store {
            // Checked (or created) before the first snapshot is published, when the broker
            // did not answer at start.
            store.ensure()?;
        }
        let mut lows = HashMap::new();
        for p in &pending {
            let mut tries = 0;
            let low = loop {
                tries += 1;
                match broker.log_start_offset(p.partition, LOG_START_TIMEOUT) {
                    Ok(low) => break low,
                    Err(error) if tries < LOG_START_TRIES => {
                        warn!(partition = p.partition.0, error = %format!("{error:#}"), "cannot read the partition's log start offset; trying again");
                    }
                    Err(error) => {
                        return Err(error.context(
                            "without the log start offset, missing history could go unnoticed",
                        ))
                    }
                }
            };
            lows.insert(p.partition, low);
        }
        let has_state = |p: &Pending| {
            p.local.as_ref().is_some_and(|o| o.next.is_some())
                && !self.restate.contains_key(&p.partition)
        };
        let need: Vec<Partition> = pending
            .iter()
            .filter(|p| {
                !has_state(p)
                    || p.local
                        .as_ref()
                        .and_then(|o| o.next)
                        .is_some_and(|next| next < lows[&p.partition])
            })
            .map(|p| p.partition)
            .collect();
        let mut scans = HashMap::new();
        if let (Some(store), false) = (&self.store, need.is_empty()) {
            let started = Instant::now();
            info!(partitions = ?need.iter().map(|p| p.0).collect::<Vec<_>>(), state_topic = store.topic(), "reading the state topic for partitions without local state");
            match store.scan(&need, |topic, partition| {
                broker.end_offset(topic, partition, LOG_START_TIMEOUT)
            }) {
                Ok(found) => scans = found,
                Err(error) => {
                    warn!(error = %format!("{error:#}"), "cannot read the state topic: the partitions without local state are rebuilt");
                }
            }
            metrics
                .state_restore_duration
                .set(started.elapsed().as_secs_f64());
        }
        let mut decided = Vec::with_capacity(pending.len());
        for p in pending {
            let low = lows[&p.partition];
            let scan = scans.remove(&p.partition);
            decided.push(self.decide_one(p, low, scan, config, metrics)?);
        }
        Ok(decided)
    }

    fn decide_one(
        &mut self,
        pending: Pending,
        low: Offset,
        scan: Option<state_topic::Scan>,
        config: &EngineConfig,
        metrics: &SelfMetrics,
    ) -> anyhow::Result<Decided> {
        let partition = pending.partition;
        let changed = self.restate.remove(&partition);
        let local = pending
            .local
            .filter(|o| o.next.is_some() && changed.is_none());
        let mut from_topic = None;
        let mut other_rules = None;
        if let (Some(scan), Some(store)) = (scan, &self.store) {
            let identity = store.identity();
            for candidate in scan.candidates(&identity.expected()) {
                let refused = match candidate {
                    Ok(verified) => match Engine::decode(config, &verified.bytes) {
                        Ok(engine) => {
                            from_topic = Some((verified.manifest, engine));
                            break;
                        }
                        Err(error) => state_topic::Refused {
                            snapshot: verified.manifest.snapshot,
                            reason: Refusal::Corrupt,
                            detail: format!("its engine does not decode: {error}"),
                            other_rules: None,
                        },
                    },
                    Err(refused) => refused,
                };
                metrics
                    .state_snapshots_refused
                    .with_label_values(&[refused.reason.as_str()])
                    .inc();
                warn!(
                    partition = partition.0,
                    snapshot = %refused.snapshot,
                    reason = refused.reason.as_str(),
                    detail = %refused.detail,
                    "passing over a snapshot of the state topic"
                );
                if other_rules.is_none() {
                    other_rules = state_topic::rules_of(&refused);
                }
            }
        }
        let local_next = local.as_ref().and_then(|o| o.next);
        let topic_next = from_topic.as_ref().map(|(m, _)| m.next);
        // Local first, then the state topic, each if it needs no history that is gone; else
        // the one that misses least; else a rebuild.
        let source = match (local_next, topic_next) {
            (Some(l), _) if l >= low => Source::Local,
            (_, Some(t)) if t >= low => Source::StateTopic,
            (Some(l), Some(t)) if t > l => Source::StateTopic,
            (Some(_), _) => Source::Local,
            (None, Some(_)) => Source::StateTopic,
            (None, None) => Source::Rebuild,
        };
        if source == Source::Rebuild {
            let changes = match (&changed, &other_rules) {
                (Some(changes), _) => Some(changes.clone()),
                (None, Some(old)) => Some(self.settings.rules.changes_from(old)),
                (None, None) => None,
            };
            if let Some(changes) = changes {
                if self.settings.on_rules_change == OnRulesChange::Refuse {
                    return Err(RulesChanged {
                        found_in: format!(
                            "partition {}'s snapshot in the state topic {}",
                            partition.0,
                            self.store.as_ref().map_or("", |s| s.topic())
                        ),
                        changes,
                    }
                    .into());
                }
                metrics.restatements.inc();
                warn!(
                    partition = partition.0,
                    changes = %changes.join("; "),
                    "restating the partition: its state was built under other tagging rules or rates; rebuilding it from the beginning of the ledger under the running ones (shown once read to its end)"
                );
            }
        } else if let Some(changes) = &changed {
            info!(partition = partition.0, changes = %changes.join("; "), "the checkpoint's state of this partition was built under other rules; the state topic has one under the running rules");
        }
        let mut published = None;
        let mut owned = match source {
            Source::Local => {
                let mut local = local.context("a local state was chosen")?;
                // Held before it was revoked: checked again below.
                local.held = None;
                local
            }
            Source::StateTopic => {
                let (manifest, engine) = from_topic.context("a snapshot was chosen")?;
                let age = SystemTime::now()
                    .duration_since(UNIX_EPOCH + Duration::from_millis(manifest.written_at_ms))
                    .map_or(0, |age| age.as_secs());
                info!(
                    partition = partition.0,
                    snapshot = %manifest.snapshot,
                    next = manifest.next.0,
                    bytes = manifest.length,
                    age_seconds = age,
                    "restored the partition from the state topic"
                );
                published = Some(manifest.next);
                Owned {
                    partition,
                    engine,
                    next: Some(manifest.next),
                    // Shown once caught up: the snapshot may be far behind.
                    rebuilt: false,
                    caught_up: false,
                    truncated: manifest.truncated,
                    held: None,
                }
            }
            Source::Rebuild => Owned {
                partition,
                engine: Engine::new(config).context("invalid engine configuration")?,
                next: None,
                rebuilt: false,
                caught_up: false,
                truncated: false,
                held: None,
            },
        };
        let needed = owned.next.map_or(0, |next| next.0);
        if low.0 > needed {
            let accept = self.settings.accept_truncated_history;
            error!(
                partition = partition.0,
                missing_from = needed,
                missing_to = low.0 - 1,
                log_start_offset = low.0,
                source = source.as_str(),
                accepted = accept,
                "history is missing: the broker no longer holds offsets {needed} to {} of partition {}, which its state does not hold; {}",
                low.0 - 1,
                partition.0,
                if accept {
                    "proceeding without them (ledger.accept_truncated_history); its figures miss those events"
                } else {
                    "holding the partition (not read, /readyz 503): set ledger.accept_truncated_history = true to proceed without them"
                }
            );
            if accept {
                owned.truncated = true;
                if owned.next.is_some() {
                    owned.next = Some(low);
                }
            } else {
                owned.rebuilt = false;
                owned.held = Some(format!(
                    "history truncated: partition {} misses offsets {needed} to {} (the broker's log starts at {}); set ledger.accept_truncated_history = true to proceed without them",
                    partition.0,
                    low.0 - 1,
                    low.0
                ));
            }
        }
        metrics
            .partition_restores
            .with_label_values(&[source.as_str()])
            .inc();
        Ok(Decided {
            start: owned.next.map_or(StartAt::Beginning, StartAt::Offset),
            owned,
            source,
            published,
        })
    }
}
