//! The engine's state and the one operation that changes it, [`Engine::record`].

use std::hash::BuildHasher;

use foldhash::fast::RandomState;
use hashbrown::{HashMap, HashTable};
use marginstream_model::{
    Bucket, Counters, CustomerId, DurationSpec, EventKey, Figures, GaugeView, Outcome,
    RejectReason, Rejection, Timestamp, WindowFigures,
};

use crate::changes::ChangeLog;
use crate::error::AggregatorError;
use crate::prepare::Prepared;
use crate::series::Series;

/// How the watermark `T` moves (contract section 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClockMode {
    /// `T` is the latest `occurred_at` of any applied event (replay's default).
    Event,
    /// `T` is the later of that and the wall clock (run's default).
    Wall,
}

/// The engine's settings, already validated by the application's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineConfig {
    /// Finite windows, each a whole number of buckets, all different.
    pub windows: Vec<DurationSpec>,
    /// Whether the lifetime window `all` is kept.
    pub lifetime: bool,
    /// Bucket length, at least one minute.
    pub bucket: DurationSpec,
    /// How the watermark moves.
    pub clock: ClockMode,
    /// Most customers held; a new one beyond is rejected as `customer_limit`.
    pub max_customers: usize,
    /// How far past the wall clock an `occurred_at` may be, in seconds.
    pub max_future_skew_seconds: i64,
    /// How long an event key is remembered after it is applied, in watermark time. `None`:
    /// the longest finite window plus one bucket (31 days plus one bucket without windows).
    pub dedup_horizon: Option<DurationSpec>,
}

impl Default for EngineConfig {
    fn default() -> EngineConfig {
        // The defaults of the contract, sections 2 and 4.
        EngineConfig {
            windows: ["24h", "7d", "30d"]
                .iter()
                .map(|w| DurationSpec::parse(w).expect("the default windows are valid"))
                .collect(),
            lifetime: true,
            bucket: DurationSpec::parse("1h").expect("the default bucket is valid"),
            clock: ClockMode::Event,
            max_customers: 1_000_000,
            max_future_skew_seconds: 300,
            dedup_horizon: None,
        }
    }
}

/// The most window labels, finite and lifetime, so that a window mask fits in a `u32`.
pub const WINDOWS_MAX: usize = 16;

/// One customer's id and series.
#[derive(Debug, Clone)]
pub(crate) struct Customer {
    /// Inline up to 24 bytes, so finding a customer touches one less cache line.
    pub(crate) id: CustomerId,
    pub(crate) series: Series,
}

/// Approximate memory held by the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MemoryStats {
    /// Customers held.
    pub customers: usize,
    /// Bucket entries across all customers.
    pub entries: usize,
    /// Event keys in the dedup index.
    pub dedup_keys: usize,
    /// Estimated bytes of customer state (ids, figures, entries, index, expiry lists).
    pub customer_bytes: usize,
    /// Estimated bytes of the dedup index.
    pub dedup_bytes: usize,
}

/// The engine: per-customer windows, portfolio, dedup index, watermark and counters.
///
/// Pure: it never reads a clock; `now` is passed in. Not thread-safe by itself: one owner
/// applies events, and readers get an [`EngineView`].
///
/// The fields are visible to the crate so that [`crate::snapshot`] can write and restore
/// them; everything else goes through the methods.
#[derive(Debug)]
pub struct Engine {
    pub(crate) bucket_seconds: i64,
    /// Finite window lengths in buckets, in label order.
    pub(crate) window_buckets: Vec<i64>,
    /// The longest finite window in buckets.
    pub(crate) longest_buckets: Option<i64>,
    /// The label index of `all`, when kept.
    pub(crate) lifetime_index: Option<usize>,
    pub(crate) labels: Vec<String>,
    pub(crate) clock: ClockMode,
    pub(crate) max_customers: usize,
    pub(crate) max_future_skew_seconds: i64,
    pub(crate) dedup_horizon_buckets: i64,
    /// The dedup index is swept when the watermark has moved this many buckets.
    pub(crate) dedup_sweep_buckets: i64,

    /// Customers by slot; `None` marks a free slot.
    pub(crate) customers: Vec<Option<Customer>>,
    pub(crate) free_slots: Vec<u32>,
    pub(crate) customer_count: usize,
    /// Slots, hashed by customer id.
    pub(crate) index: HashTable<u32>,
    pub(crate) hasher: RandomState,
    /// Every customer plus unattributed costs.
    pub(crate) portfolio: Series,
    /// Applied event keys, with the watermark bucket when they were applied. The key is the
    /// 128-bit hash as two `u64`s: 8-byte alignment makes an entry 24 bytes, not 32.
    pub(crate) dedup: HashMap<[u64; 2], i32, RandomState>,
    pub(crate) dedup_swept_at: i64,
    /// The dedup index's own clock: the bucket of the latest `occurred_at` applied (with the
    /// wall clock, the later of that and the wall clock then), `i64::MIN` before any. Keys
    /// are stamped and swept by it, not by the watermark, which the live path also moves
    /// from outside (every partition's engine to the latest watermark of all): a repeat
    /// is then recognised by the order of its own partition's stream alone.
    pub(crate) dedup_clock: i64,
    /// Customers are slid in bulk when the watermark has moved this many buckets.
    pub(crate) maintain_buckets: i64,
    pub(crate) maintained_at: i64,
    pub(crate) watermark: Option<Timestamp>,
    pub(crate) counters: Counters,
    /// Occupied slots sorted by customer id, valid while `sorted_valid`.
    pub(crate) sorted: Vec<u32>,
    pub(crate) sorted_valid: bool,
    /// Customers changed since they were last drained; `None` unless
    /// [`Engine::track_changes`] turned it on. Not part of a checkpoint.
    pub(crate) changes: Option<ChangeLog>,
}

fn dedup_key(key: EventKey) -> [u64; 2] {
    [(key.0 >> 64) as u64, key.0 as u64]
}

fn bucket_i32(bucket: i64) -> i32 {
    // Buckets are at least a minute and timestamps are bounded (RFC 3339 years 0-9999,
    // future guard), so this saturation never changes a value in practice.
    debug_assert!(
        i32::try_from(bucket).is_ok(),
        "bucket index {bucket} out of i32 range"
    );
    bucket.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32
}

impl Engine {
    /// Creates an engine, checking the configuration's invariants.
    pub fn new(config: &EngineConfig) -> Result<Engine, AggregatorError> {
        let bucket_seconds = config.bucket.seconds();
        if bucket_seconds < 60 {
            return Err(AggregatorError::Config(format!(
                "bucket {} is shorter than one minute",
                config.bucket
            )));
        }
        let mut window_buckets = Vec::new();
        for window in &config.windows {
            if window.seconds() % bucket_seconds != 0 {
                return Err(AggregatorError::Config(format!(
                    "window {window} is not a whole number of {} buckets",
                    config.bucket
                )));
            }
            let buckets = window.seconds() / bucket_seconds;
            if window_buckets.contains(&buckets) {
                return Err(AggregatorError::Config(format!(
                    "window {window} is listed twice"
                )));
            }
            window_buckets.push(buckets);
        }
        let mut labels: Vec<String> = config.windows.iter().map(|w| w.to_string()).collect();
        let lifetime_index = config.lifetime.then(|| {
            labels.push("all".to_owned());
            labels.len() - 1
        });
        if labels.is_empty() || labels.len() > WINDOWS_MAX {
            return Err(AggregatorError::Config(format!(
                "between 1 and {WINDOWS_MAX} windows are needed, counting `all`; got {}",
                labels.len()
            )));
        }
        let label_count = labels.len();
        let longest_buckets = window_buckets.iter().copied().max();
        let dedup_horizon_buckets = match &config.dedup_horizon {
            Some(horizon) => (horizon.seconds() + bucket_seconds - 1) / bucket_seconds,
            None => longest_buckets.unwrap_or(31 * 86_400 / bucket_seconds) + 1,
        };
        if let Some(longest) = longest_buckets {
            if dedup_horizon_buckets < longest + 1 {
                return Err(AggregatorError::Config(
                    "the dedup horizon is shorter than the longest window plus one bucket"
                        .to_owned(),
                ));
            }
        }
        Ok(Engine {
            bucket_seconds,
            window_buckets,
            longest_buckets,
            lifetime_index,
            labels,
            clock: config.clock,
            max_customers: config.max_customers,
            max_future_skew_seconds: config.max_future_skew_seconds,
            dedup_horizon_buckets,
            dedup_sweep_buckets: (dedup_horizon_buckets / 16).max(1),
            customers: Vec::new(),
            free_slots: Vec::new(),
            customer_count: 0,
            index: HashTable::new(),
            hasher: RandomState::default(),
            portfolio: Series::new(label_count, config.windows.len(), i32::MIN),
            dedup: HashMap::with_hasher(RandomState::default()),
            dedup_swept_at: i64::MIN,
            dedup_clock: i64::MIN,
            maintain_buckets: (longest_buckets.unwrap_or(16) / 16).max(1),
            maintained_at: i64::MIN,
            watermark: None,
            counters: Counters::default(),
            sorted: Vec::new(),
            sorted_valid: true,
            changes: None,
        })
    }

    /// Returns the window labels.
    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    /// Returns the watermark.
    pub fn watermark(&self) -> Option<Timestamp> {
        self.watermark
    }

    /// Returns the counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Returns the number of customers held.
    pub fn customer_count(&self) -> usize {
        self.customer_count
    }

    /// Returns the bucket length in seconds.
    pub fn bucket_seconds(&self) -> i64 {
        self.bucket_seconds
    }

    /// Returns the most customers held before a new one is rejected as `customer_limit`;
    /// initially [`EngineConfig::max_customers`].
    pub fn max_customers(&self) -> usize {
        self.max_customers
    }

    /// Sets the most customers held. The live path shares one `ledger.max_customers` across
    /// its per-partition engines and hands each its part. Customers already held beyond a
    /// lowered limit are kept; only new ones are rejected. Values above `u32::MAX` are
    /// clamped to it, the limit the configuration validates, so slots always fit in a `u32`.
    pub fn set_max_customers(&mut self, max: usize) {
        self.max_customers = max.min(u32::MAX as usize);
    }

    /// Counts a rejection decided before the engine (parse, currency, tagging).
    pub fn count_rejection(&mut self, reason: RejectReason) {
        self.counters.reject(reason);
    }

    /// Moves the watermark forward to `t` (never back), in either clock mode, sliding the
    /// windows as an event at `t` would. For history: the state at a step boundary is the
    /// applied events with the windows computed at `T` = the boundary.
    pub fn advance_watermark(&mut self, t: Timestamp) {
        self.advance_to(t);
    }

    /// Advances the watermark to `now` in wall-clock mode; does nothing in event-time mode.
    pub fn tick(&mut self, now: Timestamp) {
        if self.clock == ClockMode::Wall {
            self.advance_to(now);
        }
    }

    /// Applies one prepared event at wall-clock time `now`, returning its outcome or its
    /// rejection. Counts either way.
    ///
    /// Checks, in order: the future guard, the dedup index, the customer limit. Then the
    /// watermark moves, buckets that left a window are subtracted, and the event is added to
    /// every window it falls in (only to `all` if it is older than every finite window).
    pub fn record(&mut self, event: Prepared, now: Timestamp) -> Result<Outcome, Rejection> {
        self.record_observed(event, now, &mut |_, _| {})
    }

    /// Like [`Engine::record`], and calls `before_advance(engine, target)` once the event has
    /// passed the future guard, the dedup index and the customer limit, just before the
    /// watermark moves towards `target`. The state it sees is every event applied so far:
    /// this is where history (the backfill's samples at each step) is taken, advancing the
    /// watermark to each step boundary below `target` with [`Engine::advance_watermark`].
    pub fn record_observed(
        &mut self,
        event: Prepared,
        now: Timestamp,
        before_advance: &mut dyn FnMut(&mut Engine, Timestamp),
    ) -> Result<Outcome, Rejection> {
        let outcome = self.apply(event, now, before_advance);
        match &outcome {
            Ok(_) => {}
            Err(rejection) => self.counters.reject(rejection.reason),
        }
        outcome
    }

    fn apply(
        &mut self,
        event: Prepared,
        now: Timestamp,
        before_advance: &mut dyn FnMut(&mut Engine, Timestamp),
    ) -> Result<Outcome, Rejection> {
        let latest = now.saturating_add_seconds(self.max_future_skew_seconds);
        if event.occurred_at > latest {
            return Err(Rejection::new(
                RejectReason::FutureEvent,
                format!(
                    "occurred_at {} is later than the wall clock plus ledger.max_future_skew ({}s)",
                    event.occurred_at, self.max_future_skew_seconds
                ),
            ));
        }
        if self.dedup.contains_key(&dedup_key(event.key)) {
            self.counters.count(event.event_type, Outcome::Duplicate);
            return Ok(Outcome::Duplicate);
        }
        let slot = event.line.slot();
        let hash = event
            .customer_id
            .as_deref()
            .map(|id| self.hasher.hash_one(id));
        let existing = match (&event.customer_id, hash) {
            (Some(id), Some(hash)) => self.find(id, hash),
            _ => None,
        };
        if slot.is_some()
            && event.customer_id.is_some()
            && existing.is_none()
            && self.customer_count >= self.max_customers
        {
            return Err(Rejection::new(
                RejectReason::CustomerLimit,
                format!(
                    "new customer beyond ledger.max_customers = {}",
                    self.max_customers
                ),
            ));
        }

        let target = match self.clock {
            ClockMode::Event => event.occurred_at,
            ClockMode::Wall => event.occurred_at.max(now),
        };
        before_advance(self, target);
        self.advance_to(target);
        // Without the lifetime window, advancing may have removed this very customer (all
        // its entries left the longest window), freeing its slot: look it up again.
        let existing = match (&event.customer_id, hash) {
            (Some(id), Some(hash)) if self.lifetime_index.is_none() => self.find(id, hash),
            _ => existing,
        };
        let current = Bucket::of(
            self.watermark.expect("the watermark is set by advance_to"),
            self.bucket_seconds,
        )
        .0;
        let bucket = Bucket::of(event.occurred_at, self.bucket_seconds).0;
        let late = self
            .longest_buckets
            .is_some_and(|longest| bucket <= current - longest);
        let outcome = if late {
            Outcome::Late
        } else {
            Outcome::Applied
        };

        if let Some(slot) = slot {
            let mut mask = self.lifetime_index.map_or(0u32, |i| 1 << i);
            if !late {
                for (index, window) in self.window_buckets.iter().enumerate() {
                    if bucket > current - window {
                        mask |= 1 << index;
                    }
                }
            }
            let entry_bucket =
                (!late && self.longest_buckets.is_some()).then(|| bucket_i32(bucket));
            if mask != 0 {
                let overflow = || {
                    Rejection::new(
                        RejectReason::InvalidField,
                        "field \"amount\": the running totals would need more than 28 significant digits to stay exact",
                    )
                };
                let Some(portfolio) =
                    self.portfolio
                        .prepare(entry_bucket, slot, event.amount, mask)
                else {
                    return Err(overflow());
                };
                // An entry outside some finite window must go before that window's cursor,
                // so the customer's windows are slid first. In-order events (inside every
                // window) skip this; the periodic `maintain` slides everyone in bulk.
                let finite = (1u32 << self.window_buckets.len()) - 1;
                if let (Some(s), Some(_)) = (existing, entry_bucket) {
                    if mask & finite != finite {
                        let windows = &self.window_buckets;
                        if let Some(customer) = self.customers[s as usize].as_mut() {
                            customer.series.catch_up(bucket_i32(current), windows);
                        }
                    }
                }
                let customer = match existing {
                    Some(s) => {
                        let pending =
                            self.series(s)
                                .prepare(entry_bucket, slot, event.amount, mask);
                        if pending.is_none() {
                            return Err(overflow());
                        }
                        pending
                    }
                    None => None,
                };
                self.portfolio.commit(&portfolio);
                if let (Some(id), Some(hash)) = (event.customer_id, hash) {
                    let (slot_index, pending) = match (existing, customer) {
                        (Some(s), Some(pending)) => (s, pending),
                        _ => {
                            let s = self.insert(id, hash);
                            let pending = self
                                .series(s)
                                .prepare(entry_bucket, slot, event.amount, mask)
                                .expect("a new series holds zeros, so one amount fits");
                            (s, pending)
                        }
                    };
                    self.customers[slot_index as usize]
                        .as_mut()
                        .expect("a found or inserted slot is occupied")
                        .series
                        .commit(&pending);
                    if let Some(changes) = &mut self.changes {
                        changes.mark(slot_index);
                    }
                }
            }
        }

        let stamp = self.advance_dedup_clock(target);
        self.dedup.insert(dedup_key(event.key), bucket_i32(stamp));
        self.counters.count(event.event_type, outcome);
        Ok(outcome)
    }

    /// How many events to [`Engine::prefetch`] together before applying them one by one:
    /// their cache misses then overlap (measured in issue 12: groups of 8 and 32 did no
    /// better than 16).
    pub const PREFETCH_EVENTS: usize = 16;

    /// Reads, without changing anything, the state that applying `event` will read first:
    /// its slot in the dedup index, its customer's slot in the customer index, and the
    /// customer's figures and latest bucket entry.
    ///
    /// An optimisation only: the state is too large for the cache (the dedup index alone is
    /// tens of MB), and applying an event waits on about five cache misses one after the
    /// other. Calling this for the next few events before applying them lets their misses
    /// run side by side. Measured in issue 12 on the bench ledger (10k customers, 2M events),
    /// replay reading ahead 16 events at a time: 7 % more events/s, 7 % less CPU; groups of
    /// 8 and 32 did no better.
    pub fn prefetch(&self, event: &Prepared) {
        let mut touched = u64::from(self.dedup.contains_key(&dedup_key(event.key)));
        if let Some(id) = event.customer_id.as_deref() {
            if let Some(slot) = self.find(id, self.hasher.hash_one(id)) {
                touched ^= self.series(slot).touch(event.line.slot());
            }
        }
        std::hint::black_box(touched);
    }

    fn series(&self, slot: u32) -> &Series {
        &self.customers[slot as usize]
            .as_ref()
            .expect("slots in the index are occupied")
            .series
    }

    pub(crate) fn find(&self, id: &str, hash: u64) -> Option<u32> {
        let customers = &self.customers;
        self.index
            .find(hash, |slot| {
                customers[*slot as usize]
                    .as_ref()
                    .is_some_and(|c| c.id == *id)
            })
            .copied()
    }

    fn insert(&mut self, id: CustomerId, hash: u64) -> u32 {
        let customer = Customer {
            id,
            series: Series::new(
                self.labels.len(),
                self.window_buckets.len(),
                bucket_i32(self.current_bucket()),
            ),
        };
        let slot = match self.free_slots.pop() {
            Some(slot) => {
                self.customers[slot as usize] = Some(customer);
                slot
            }
            None => {
                self.customers.push(Some(customer));
                u32::try_from(self.customers.len() - 1)
                    .expect("max_customers is validated to fit in u32")
            }
        };
        let Engine {
            index,
            customers,
            hasher,
            ..
        } = self;
        index.insert_unique(hash, slot, |s| {
            hasher.hash_one(
                &*customers[*s as usize]
                    .as_ref()
                    .expect("slots in the index are occupied")
                    .id,
            )
        });
        self.customer_count += 1;
        self.sorted_valid = false;
        slot
    }

    fn remove(&mut self, slot: u32) {
        let Some(customer) = self.customers[slot as usize].take() else {
            return;
        };
        let hash = self.hasher.hash_one(&*customer.id);
        if let Ok(entry) = self.index.find_entry(hash, |s| *s == slot) {
            entry.remove();
        }
        if let Some(changes) = &mut self.changes {
            changes.unmark(slot);
            changes.removed.push(customer.id);
        }
        self.free_slots.push(slot);
        self.customer_count -= 1;
        self.sorted_valid = false;
    }

    /// Moves the watermark forward to `t` (never back) and slides the windows.
    fn advance_to(&mut self, t: Timestamp) {
        let old = self.watermark;
        if old.is_some_and(|old| old >= t) {
            return;
        }
        self.watermark = Some(t);
        let new_bucket = Bucket::of(t, self.bucket_seconds).0;
        let Some(old) = old else {
            self.dedup_swept_at = new_bucket;
            self.maintained_at = new_bucket;
            return;
        };
        let old_bucket = Bucket::of(old, self.bucket_seconds).0;
        if new_bucket == old_bucket {
            return;
        }
        // The portfolio, touched by every event, slides now. Customers slide in bulk, one
        // sequential pass over the slab, every 1/16 of the longest window (and when a view
        // is taken): far cheaper than visiting each customer at every bucket, and it bounds
        // the entries held to the longest window plus 1/16.
        self.portfolio
            .catch_up(bucket_i32(new_bucket), &self.window_buckets);
        if new_bucket - self.maintained_at >= self.maintain_buckets {
            self.maintain();
        }
    }

    /// Moves the dedup clock to `target`'s bucket and sweeps keys older than the horizon,
    /// every 1/16 of it. Returns the clock.
    fn advance_dedup_clock(&mut self, target: Timestamp) -> i64 {
        let bucket = Bucket::of(target, self.bucket_seconds).0;
        if bucket > self.dedup_clock {
            self.dedup_clock = bucket;
            if self.dedup_swept_at == i64::MIN {
                self.dedup_swept_at = bucket;
            }
            if bucket - self.dedup_swept_at >= self.dedup_sweep_buckets {
                let oldest_kept = bucket - self.dedup_horizon_buckets;
                self.dedup
                    .retain(|_, stamp| i64::from(*stamp) > oldest_kept);
                self.dedup_swept_at = bucket;
            }
        }
        self.dedup_clock
    }

    /// Returns `true` if the key of an applied event is still remembered.
    pub fn remembers(&self, key: EventKey) -> bool {
        self.dedup.contains_key(&dedup_key(key))
    }

    /// Returns the watermark's bucket, or the minimum before the first event.
    fn current_bucket(&self) -> i64 {
        self.watermark.map_or(i64::from(i32::MIN), |t| {
            Bucket::of(t, self.bucket_seconds).0
        })
    }

    /// Slides every customer's windows to the watermark and drops what left the longest
    /// window; with the lifetime window off, removes customers left with nothing. Bounds
    /// memory for customers that stopped sending events. [`Engine::view`] calls it.
    pub fn maintain(&mut self) {
        self.maintained_at = self.current_bucket();
        let current = bucket_i32(self.current_bucket());
        let mut emptied = Vec::new();
        for (slot, customer) in self.customers.iter_mut().enumerate() {
            if let Some(customer) = customer {
                let changed = customer.series.catch_up(current, &self.window_buckets);
                if changed {
                    if let Some(changes) = &mut self.changes {
                        changes.mark(slot as u32);
                    }
                }
                if self.lifetime_index.is_none() && customer.series.has_no_entries() {
                    emptied.push(slot as u32);
                }
            }
        }
        for slot in emptied {
            self.remove(slot);
        }
    }

    /// Returns a read-only view for the exporters: every window slid to the watermark
    /// ([`Engine::maintain`]) and customers sorted by id (cached while the set is unchanged).
    pub fn view(&mut self) -> EngineView<'_> {
        self.maintain();
        if !self.sorted_valid {
            self.sorted.clear();
            self.sorted.extend(
                self.customers
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| c.is_some())
                    .map(|(slot, _)| slot as u32),
            );
            let customers = &self.customers;
            let id = |slot: &u32| {
                customers[*slot as usize]
                    .as_ref()
                    .map(|c| &*c.id)
                    .expect("sorted slots are occupied")
            };
            self.sorted.sort_unstable_by(|a, b| id(a).cmp(id(b)));
            self.sorted_valid = true;
        }
        EngineView { engine: self }
    }

    /// Starts recording which customers change (for publishing them to readers, see
    /// [`Engine::drain_changes`]), with every customer held counted as changed; does nothing
    /// when already recording.
    pub fn track_changes(&mut self) {
        if self.changes.is_none() {
            self.changes = Some(ChangeLog::default());
            self.mark_all_changed();
        }
    }

    /// Counts every customer held as changed, so the next drains copy them all (a partition
    /// newly shown to readers). Does nothing unless changes are tracked.
    pub fn mark_all_changed(&mut self) {
        if let Some(changes) = &mut self.changes {
            for (slot, customer) in self.customers.iter().enumerate() {
                if customer.is_some() {
                    changes.mark(slot as u32);
                }
            }
        }
    }

    /// Returns how many customers may be changed since they were last drained (an upper
    /// bound: a customer removed meanwhile is still counted).
    pub fn changed_count(&self) -> usize {
        self.changes.as_ref().map_or(0, ChangeLog::pending)
    }

    /// Returns the watermark's bucket index (the minimum before the first event): what
    /// [`Engine::slide_customers`] slides to.
    pub fn watermark_bucket(&self) -> i64 {
        self.current_bucket()
    }

    /// Returns the number of customer slots, occupied or not: the range of
    /// [`Engine::slide_customers`].
    pub fn slot_count(&self) -> usize {
        self.customers.len()
    }

    /// Slides the customers in slots `from..from + count` to the watermark, counting those
    /// whose figures changed as changed. A walk over every slot in such steps leaves every
    /// customer current without the pause of [`Engine::maintain`]'s one pass. Without the
    /// lifetime window, a customer left with no entry is removed, as `maintain` does.
    pub fn slide_customers(&mut self, from: usize, count: usize) {
        let current = bucket_i32(self.current_bucket());
        let end = from.saturating_add(count).min(self.customers.len());
        for slot in from.min(end)..end {
            let Some(customer) = &mut self.customers[slot] else {
                continue;
            };
            if customer.series.catch_up(current, &self.window_buckets) {
                if let Some(changes) = &mut self.changes {
                    changes.mark(slot as u32);
                }
            }
            if self.lifetime_index.is_none() && customer.series.has_no_entries() {
                self.remove(slot as u32);
            }
        }
    }

    /// Hands at most `max` changed customers to `out` (id and per-window figures, slid to the
    /// watermark first), forgetting them as changed. Returns how many were handed over.
    /// Without the lifetime window, a customer left with no entry is removed instead (see
    /// [`Engine::take_removed`]).
    pub fn drain_changes(
        &mut self,
        max: usize,
        out: &mut dyn FnMut(&str, WindowFigures<'_>),
    ) -> usize {
        let current = bucket_i32(self.current_bucket());
        let mut drained = 0;
        while drained < max {
            let Some(slot) = self.changes.as_mut().and_then(ChangeLog::pop) else {
                break;
            };
            let Some(customer) = &mut self.customers[slot as usize] else {
                continue;
            };
            customer.series.catch_up(current, &self.window_buckets);
            if self.lifetime_index.is_none() && customer.series.has_no_entries() {
                self.remove(slot);
                continue;
            }
            out(&customer.id, customer.series.figures());
            drained += 1;
        }
        drained
    }

    /// Takes the ids of the customers removed since the last call (lifetime window off,
    /// nothing left in the longest window).
    pub fn take_removed(&mut self) -> Vec<CustomerId> {
        self.changes
            .as_mut()
            .map(|changes| std::mem::take(&mut changes.removed))
            .unwrap_or_default()
    }

    /// Returns the portfolio's per-window figures, always current (the portfolio slides at
    /// every bucket advance).
    pub fn portfolio_figures(&self) -> WindowFigures<'_> {
        self.portfolio.figures()
    }

    /// Returns an estimate of the memory held.
    pub fn memory_stats(&self) -> MemoryStats {
        let customer_heap: usize = self
            .customers
            .iter()
            .flatten()
            .map(|c| {
                (if c.id.is_heap_allocated() {
                    c.id.len()
                } else {
                    0
                }) + c.series.heap_bytes()
            })
            .sum();
        let entries = self
            .customers
            .iter()
            .flatten()
            .map(|c| c.series.entry_count())
            .sum();
        MemoryStats {
            customers: self.customer_count,
            entries,
            dedup_keys: self.dedup.len(),
            customer_bytes: customer_heap
                + self.customers.capacity() * std::mem::size_of::<Option<Customer>>()
                + self.index.capacity() * (std::mem::size_of::<u32>() + 1)
                + self.sorted.capacity() * 4,
            dedup_bytes: self.dedup.capacity() * (24 + 1) * 8 / 7,
        }
    }
}

/// A read-only view of an [`Engine`], customers in id order.
#[derive(Debug)]
pub struct EngineView<'a> {
    engine: &'a Engine,
}

impl EngineView<'_> {
    /// Returns the figures of one customer by id, per window label, if held.
    pub fn customer_figures(&self, id: &str) -> Option<Vec<Figures>> {
        let hash = self.engine.hasher.hash_one(id);
        self.engine
            .find(id, hash)
            .map(|slot| self.engine.series(slot).figures().to_vec())
    }
}

impl GaugeView for EngineView<'_> {
    fn window_labels(&self) -> &[String] {
        &self.engine.labels
    }

    fn customer_count(&self) -> usize {
        self.engine.sorted.len()
    }

    fn customer(&self, index: usize) -> (&str, WindowFigures<'_>) {
        let customer = self.engine.customers[self.engine.sorted[index] as usize]
            .as_ref()
            .expect("sorted slots are occupied");
        (&customer.id, customer.series.figures())
    }

    fn portfolio(&self) -> WindowFigures<'_> {
        self.engine.portfolio.figures()
    }

    fn counters(&self) -> &Counters {
        &self.engine.counters
    }

    fn watermark(&self) -> Option<Timestamp> {
        self.engine.watermark
    }
}
