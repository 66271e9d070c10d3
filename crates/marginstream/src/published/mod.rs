//! The readers' side of `marginstream run`: immutable snapshots of the live state that
//! `/metrics` and the query API read, so that no scrape or query ever waits for the loop.
//!
//! - [`Delta`]: what the loop sends (changed customers in chunks, removed ones, then a
//!   commit with the portfolio, counters and watermark of every shown partition).
//! - `store`: the publisher thread. It applies the deltas to its working copy and, at each
//!   commit, makes a new [`Snapshot`] current on the [`Board`], and keeps the exposure
//!   budget's choice (ranked every `metrics.rank_interval`).
//! - `flat`: [`FlatView`], a snapshot's customers merged across partitions in id order, the
//!   [`marginstream_model::GaugeView`] every renderer and the API read.
//!
//! # Design decisions
//!
//! **Copy what changed, share the rest.** Each partition's customers are a persistent
//! ordered map (`imbl::OrdMap`): a snapshot is a clone of the working maps, which costs
//! nothing, and applying a customer's change copies only the path to it. So publishing costs
//! in proportion to the customers that changed since the last snapshot, not to those held,
//! and a reader keeps its snapshot as long as it likes without holding anything up.
//!
//! **A snapshot is a moment of the loop.** The loop copies changed customers in small steps
//! between messages (`live::publish`); a customer changed again after its copy is copied
//! again, and the commit, which carries the portfolio and the counters, is sent only when
//! the few customers left can be copied at once. So every committed snapshot is exactly the
//! state at one moment between two messages, as if rendered on the loop, and sums over its
//! customers add up to its portfolio.

mod flat;
mod store;

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use marginstream_consumer::Partition;
use marginstream_exporter::exposure::ExposureConfig;
use marginstream_exporter::prometheus::Exposition as Selection;
use marginstream_exporter::segments::SegmentConfig;
use marginstream_exporter::{RenderOptions, Renderer};
use marginstream_model::{Counters, CustomerId, Timestamp};
use rust_decimal::Decimal;

pub use flat::FlatView;
pub use store::Publisher;

/// How `run` publishes its state to readers and what they render (contract sections 7 and
/// 8): built by the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishSettings {
    /// The exposure budget.
    pub exposure: ExposureConfig,
    /// How often customers are ranked again for the budget.
    pub rank_interval: Duration,
    /// How often the loop publishes: the most readers lag it.
    pub publish_interval: Duration,
    /// The ACV tiers, if any.
    pub segments: Option<SegmentConfig>,
}

impl PublishSettings {
    /// What `/metrics` renders (contract sections 7 and 8): the budget's families and
    /// windows, the tiers, and series of their own for the customers `exposed` says (the
    /// others summed into `__other__`). `replay --format prometheus` renders the same.
    pub fn exposition<'a>(&'a self, exposed: &'a (dyn Fn(&str) -> bool + Sync)) -> Selection<'a> {
        Selection {
            exposed: Some(exposed),
            families: self.exposure.families,
            windows: &self.exposure.windows,
            segments: self.segments.as_ref(),
        }
    }
}

/// One customer's sums: revenue and the five costs per window, slot-major as the engine
/// keeps them (`sums[slot * windows + window]`).
pub type Sums = Arc<[Decimal]>;

/// A chunk of changes from the loop, in order.
#[derive(Debug)]
pub enum Delta {
    /// These customers of `partition` changed (or are new): their current sums.
    Upsert {
        /// The partition that holds them.
        partition: Partition,
        /// Id and sums of each.
        customers: Vec<(CustomerId, Box<[Decimal]>)>,
    },
    /// These customers of `partition` are no longer held.
    Remove {
        /// The partition that held them.
        partition: Partition,
        /// Their ids.
        ids: Vec<CustomerId>,
    },
    /// Every change up to now is sent: publish a snapshot of these partitions.
    Commit(Commit),
}

/// The end of a set of changes: the shown partitions' own figures at that moment.
#[derive(Debug, Clone)]
pub struct Commit {
    /// The shown partitions (read to their end once), each with its portfolio, counters and
    /// watermark; a partition not listed is not shown (any more).
    pub partitions: Vec<PartitionCommit>,
}

/// One shown partition's figures at a commit.
#[derive(Debug, Clone)]
pub struct PartitionCommit {
    /// The partition.
    pub partition: Partition,
    /// Its portfolio sums (every customer plus its unattributed costs).
    pub portfolio: Box<[Decimal]>,
    /// Its counters.
    pub counters: Counters,
    /// Its watermark (every engine is aligned to the process's at a commit).
    pub watermark: Option<Timestamp>,
}

/// One partition in a snapshot.
#[derive(Debug, Clone)]
pub(crate) struct PartitionState {
    pub(crate) customers: imbl::OrdMap<CustomerId, Sums>,
    pub(crate) portfolio: Sums,
    pub(crate) counters: Counters,
    pub(crate) watermark: Option<Timestamp>,
}

/// An immutable picture of the shown state at one moment of the loop.
#[derive(Debug)]
pub struct Snapshot {
    /// Counts commits from 1; 0 is the empty snapshot before the first.
    pub epoch: u64,
    /// When the commit was applied.
    pub published_at: SystemTime,
    labels: Arc<[String]>,
    partitions: BTreeMap<Partition, PartitionState>,
    /// Customers chosen for series of their own (some may not be held any more).
    chosen: Arc<HashSet<CustomerId>>,
    /// The merged view, built on first use.
    flat: OnceLock<FlatView>,
}

impl Snapshot {
    /// The snapshot before any commit: no customer, no watermark.
    pub fn empty(labels: Arc<[String]>) -> Snapshot {
        Snapshot {
            epoch: 0,
            published_at: SystemTime::now(),
            labels,
            partitions: BTreeMap::new(),
            chosen: Arc::new(HashSet::new()),
            flat: OnceLock::new(),
        }
    }

    /// Returns the customers merged across partitions in id order, with the summed
    /// portfolio and counters: built once per snapshot, on first use.
    pub fn view(&self) -> &FlatView {
        self.flat
            .get_or_init(|| FlatView::merge(&self.labels, &self.partitions))
    }

    /// Returns `true` if `id` has series of its own.
    pub fn is_exposed(&self, id: &str) -> bool {
        self.chosen.contains(id)
    }

    /// Returns the chosen customers (for the renderers' selection).
    pub fn chosen(&self) -> &Arc<HashSet<CustomerId>> {
        &self.chosen
    }

    /// Returns the window labels.
    pub fn labels(&self) -> &[String] {
        &self.labels
    }
}

/// Where the current snapshot is: written by the publisher thread, read by anyone. Also
/// renders `/metrics` from it, once per snapshot.
#[derive(Debug)]
pub struct Board {
    current: RwLock<Arc<Snapshot>>,
    settings: PublishSettings,
    /// The text of the last snapshot rendered.
    exposition: Mutex<Exposition>,
}

/// The last rendering of `/metrics`' contract families.
#[derive(Debug, Default)]
struct Exposition {
    /// The epoch of `chunks`; `None` before the first rendering.
    epoch: Option<u64>,
    chunks: Chunks,
}

/// A rendered exposition as its chunks, in order: the renderer's own buffers, handed over
/// without a copy (an exposition of millions of series is gigabytes). Cloning shares them.
pub type Chunks = Arc<[Bytes]>;

impl Board {
    /// Creates a board holding the empty snapshot.
    pub fn new(labels: Arc<[String]>, settings: PublishSettings) -> Board {
        Board {
            current: RwLock::new(Arc::new(Snapshot::empty(labels))),
            settings,
            exposition: Mutex::new(Exposition::default()),
        }
    }

    /// Returns the current snapshot. The lock is held only to clone an `Arc`.
    pub fn latest(&self) -> Arc<Snapshot> {
        Arc::clone(&self.current.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Returns the settings readers render with.
    pub fn settings(&self) -> &PublishSettings {
        &self.settings
    }

    /// Returns the contract's families of `/metrics` for the current snapshot, rendered once
    /// per snapshot (concurrent scrapes of one snapshot share the text).
    ///
    /// Each rendering takes a fresh renderer whose buffers become the text: the memory of a
    /// scrape is one exposition, and the previous one is freed when its last reader is done
    /// (measured: 1M customers without the budget, 3 GB of text, was killed at 7.2 GB while
    /// the renderer's buffers, the joined text and the response were three copies).
    pub fn render(&self) -> Chunks {
        let snapshot = self.latest();
        let mut exposition = self.exposition.lock().unwrap_or_else(|e| e.into_inner());
        if exposition.epoch != Some(snapshot.epoch) {
            // Drop the previous text before rendering the next one.
            exposition.chunks = Chunks::default();
            let chosen = snapshot.chosen();
            let exposed = |id: &str| chosen.contains(id);
            let selection = self.settings.exposition(&exposed);
            let mut renderer = Renderer::new(RenderOptions {
                // One core stays with the loop: a scrape of millions of series must not
                // take every core from consumption (measured on 2 cores: rendering on
                // both stretched the loop's service passes to 15 ms).
                threads: RenderOptions::default().threads.saturating_sub(1).max(1),
            });
            renderer.render_with(snapshot.view(), &selection);
            exposition.chunks = renderer
                .into_chunks()
                .into_iter()
                .filter(|chunk| !chunk.is_empty())
                .map(Bytes::from)
                .collect();
            exposition.epoch = Some(snapshot.epoch);
        }
        Arc::clone(&exposition.chunks)
    }

    fn replace(&self, snapshot: Snapshot) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(snapshot);
    }
}
