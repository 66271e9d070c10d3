//! Checkpoints: [`Engine::encode`] writes the engine's full state as bytes, and
//! [`Engine::decode`] restores it under the same configuration.
//!
//! The format is little-endian binary written by hand, without serde: it is on the path of
//! every checkpoint, so it has to be fast, and it has to be strict, so that a damaged or
//! foreign checkpoint is refused with a reason rather than restored into a wrong ledger.
//!
//! **Decoding never panics**, whatever the bytes, and never allocates more than the input
//! could hold: every count is checked against the bytes left before anything is reserved.
//! Beyond the layout, it checks the invariants the engine relies on later (entries sorted
//! and inside the longest window, each cursor at its window's edge, every sum within the
//! series' exactness budget, bucket indices that fit the engine's `i32`s), so a restored
//! engine goes on exactly as the encoded one would have.
//!
//! **No checksum.** Truncation and most damage are detected, but not every flipped bit in an
//! amount: the file holding a checkpoint should carry its own checksum.

use std::collections::VecDeque;
use std::fmt;
use std::hash::BuildHasher;

use marginstream_model::money::{self, SLOTS};
use marginstream_model::{Bucket, CustomerId, DurationSpec, Timestamp};
use rust_decimal::Decimal;

use crate::engine::{ClockMode, Customer, Engine, EngineConfig, WINDOWS_MAX};
use crate::error::AggregatorError;
use crate::series::{Entry, Series, DIGITS};

/// The first bytes of every checkpoint.
const MAGIC: [u8; 8] = *b"MSENGINE";

/// The format version written and the only one read. Bump it on any change of the layout.
const VERSION: u32 = 1;

/// Bytes of a count or a length.
const COUNT_BYTES: usize = 8;

/// Bytes of a `Decimal`, as `Decimal::serialize` writes it.
const DECIMAL_BYTES: usize = 16;

/// Bytes of a series entry: bucket, slot, amount.
const ENTRY_BYTES: usize = 4 + 1 + DECIMAL_BYTES;

/// Bytes of a dedup index entry: the key as two `u64`s and its bucket.
const DEDUP_BYTES: usize = 8 + 8 + 4;

/// Bytes of the counters: 2 × 3 event counts and 10 rejection counts.
const COUNTERS_BYTES: usize = 8 * (2 * 3 + 10);

/// The largest count a checkpoint may hold, far beyond any real count (2^56 events is over
/// 200 years at ten million a second). A corrupt counter near `u64::MAX` would overflow at
/// the next increment, and 16 counters this size still add up without overflow.
const COUNT_MAX: u64 = 1 << 56;

fn put_u8(out: &mut Vec<u8>, value: u8) {
    out.push(value);
}

fn put_u32(out: &mut Vec<u8>, value: u32) {
    out.extend_from_slice(&value.to_le_bytes());
}

fn put_i32(out: &mut Vec<u8>, value: i32) {
    out.extend_from_slice(&value.to_le_bytes());
}

fn put_u64(out: &mut Vec<u8>, value: u64) {
    out.extend_from_slice(&value.to_le_bytes());
}

fn put_i64(out: &mut Vec<u8>, value: i64) {
    out.extend_from_slice(&value.to_le_bytes());
}

/// Writes a count or a length. `usize` always fits in a `u64` on the platforms Rust supports.
fn put_count(out: &mut Vec<u8>, count: usize) {
    put_u64(out, count as u64);
}

fn put_str(out: &mut Vec<u8>, text: &str) {
    put_count(out, text.len());
    out.extend_from_slice(text.as_bytes());
}

fn put_decimal(out: &mut Vec<u8>, value: Decimal) {
    out.extend_from_slice(&value.serialize());
}

/// Returns the encoded size of a series.
fn series_len(series: &Series) -> usize {
    1 + DECIMAL_BYTES * series.sums.len()
        + COUNT_BYTES
        + ENTRY_BYTES * series.entries.len()
        + COUNT_BYTES
        + 4 * series.cursors.len()
        + 4
        + DECIMAL_BYTES
        + 1
}

/// Returns the smallest encoded size of a series of `labels` labels and `windows` finite
/// windows: the one without entries.
fn series_len_min(labels: usize, windows: usize) -> usize {
    1 + DECIMAL_BYTES * SLOTS * labels
        + COUNT_BYTES
        + COUNT_BYTES
        + 4 * windows
        + 4
        + DECIMAL_BYTES
        + 1
}

fn put_series(out: &mut Vec<u8>, series: &Series) {
    put_u8(out, series.labels);
    for sum in series.sums.iter() {
        put_decimal(out, *sum);
    }
    put_count(out, series.entries.len());
    for entry in &series.entries {
        put_i32(out, entry.bucket);
        put_u8(out, entry.slot);
        put_decimal(out, entry.amount);
    }
    put_count(out, series.cursors.len());
    for cursor in series.cursors.iter() {
        put_u32(out, *cursor);
    }
    put_i32(out, series.slid_to);
    put_decimal(out, series.magnitude);
    put_u8(out, series.scale_max);
}

/// Why a checkpoint was refused, and where.
#[derive(Debug)]
enum Broken {
    /// The bytes end before the data does.
    Truncated { at: usize, problem: String },
    /// The bytes are there but do not describe a valid state.
    Corrupt { at: usize, problem: String },
    /// Not a checkpoint of this format, or written under another configuration.
    Foreign(String),
}

impl Broken {
    fn corrupt(at: usize, problem: impl Into<String>) -> Broken {
        Broken::Corrupt {
            at,
            problem: problem.into(),
        }
    }

    /// Prefixes the problem with where in the state it was found, e.g. `customer 3`.
    fn within(self, context: &str) -> Broken {
        match self {
            Broken::Truncated { at, problem } => Broken::Truncated {
                at,
                problem: format!("{context}: {problem}"),
            },
            Broken::Corrupt { at, problem } => Broken::Corrupt {
                at,
                problem: format!("{context}: {problem}"),
            },
            Broken::Foreign(problem) => Broken::Foreign(problem),
        }
    }
}

impl fmt::Display for Broken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Broken::Truncated { at, problem } => {
                write!(f, "checkpoint is truncated at byte {at}: {problem}")
            }
            Broken::Corrupt { at, problem } => {
                write!(f, "checkpoint is corrupt at byte {at}: {problem}")
            }
            Broken::Foreign(problem) => f.write_str(problem),
        }
    }
}

impl From<Broken> for AggregatorError {
    fn from(broken: Broken) -> AggregatorError {
        AggregatorError::Snapshot(broken.to_string())
    }
}

/// Reads a checkpoint front to back; every read checks the bytes left first.
struct Reader<'a> {
    rest: &'a [u8],
    total: usize,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader {
            rest: bytes,
            total: bytes.len(),
        }
    }

    /// Returns the offset of the next byte to read.
    fn at(&self) -> usize {
        self.total - self.rest.len()
    }

    fn truncated(&self, what: &str, needed: usize) -> Broken {
        Broken::Truncated {
            at: self.at(),
            problem: format!("{what} needs {needed} bytes, {} left", self.rest.len()),
        }
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], Broken> {
        match self.rest.split_first_chunk::<N>() {
            Some((chunk, rest)) => {
                self.rest = rest;
                Ok(*chunk)
            }
            None => Err(self.truncated(what, N)),
        }
    }

    fn bytes(&mut self, length: usize, what: &str) -> Result<&'a [u8], Broken> {
        if length > self.rest.len() {
            return Err(self.truncated(what, length));
        }
        let (head, rest) = self.rest.split_at(length);
        self.rest = rest;
        Ok(head)
    }

    fn u8(&mut self, what: &str) -> Result<u8, Broken> {
        self.array::<1>(what).map(|[byte]| byte)
    }

    fn u32(&mut self, what: &str) -> Result<u32, Broken> {
        self.array(what).map(u32::from_le_bytes)
    }

    fn i32(&mut self, what: &str) -> Result<i32, Broken> {
        self.array(what).map(i32::from_le_bytes)
    }

    fn u64(&mut self, what: &str) -> Result<u64, Broken> {
        self.array(what).map(u64::from_le_bytes)
    }

    fn i64(&mut self, what: &str) -> Result<i64, Broken> {
        self.array(what).map(i64::from_le_bytes)
    }

    /// Reads the count of items of at least `item_bytes` each, refusing one that the bytes
    /// left cannot hold: so nothing is ever reserved beyond the input's size.
    fn count(&mut self, item_bytes: usize, what: &str) -> Result<usize, Broken> {
        let at = self.at();
        let count = self.u64(what)?;
        let room = self.rest.len() / item_bytes.max(1);
        match usize::try_from(count) {
            Ok(count) if count <= room => Ok(count),
            _ => Err(Broken::Truncated {
                at,
                problem: format!(
                    "{what}: {count} of at least {item_bytes} bytes each do not fit in the {} bytes left",
                    self.rest.len()
                ),
            }),
        }
    }

    fn str(&mut self, what: &str) -> Result<&'a str, Broken> {
        let length = self.count(1, what)?;
        let at = self.at();
        let bytes = self.bytes(length, what)?;
        std::str::from_utf8(bytes).map_err(|_| Broken::corrupt(at, format!("{what} is not UTF-8")))
    }

    /// Reads a decimal, refusing what `Decimal::serialize` never writes: a scale above 28
    /// (which `Decimal::deserialize` would silently rescale) or a flag bit other than the
    /// scale and the sign.
    fn decimal(&mut self, what: &str) -> Result<Decimal, Broken> {
        let at = self.at();
        let bytes: [u8; DECIMAL_BYTES] = self.array(what)?;
        // Flags, little-endian: bits 0-15 unused, 16-23 the scale, 24-30 unused, 31 the sign.
        if bytes[0] != 0 || bytes[1] != 0 || u32::from(bytes[2]) > DIGITS || bytes[3] & 0x7f != 0 {
            return Err(Broken::corrupt(
                at,
                format!("{what} is not a valid decimal"),
            ));
        }
        Ok(Decimal::deserialize(bytes))
    }

    fn option(&mut self, what: &str) -> Result<bool, Broken> {
        let at = self.at();
        match self.u8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            tag => Err(Broken::corrupt(
                at,
                format!("{what} has tag {tag}, neither 0 (none) nor 1 (some)"),
            )),
        }
    }
}

/// The configuration a checkpoint was written under.
struct Fingerprint<'a> {
    bucket_seconds: i64,
    window_buckets: Vec<i64>,
    lifetime_index: Option<u64>,
    labels: Vec<&'a str>,
    clock: ClockMode,
    dedup_horizon_buckets: i64,
}

fn clock_name(clock: ClockMode) -> &'static str {
    match clock {
        ClockMode::Event => "event",
        ClockMode::Wall => "wall",
    }
}

/// Formats a length in seconds as a duration such as `30d`, as configured.
fn duration_text(seconds: Option<i64>) -> String {
    match seconds {
        Some(seconds) if seconds > 0 => DurationSpec::from_seconds(seconds).to_string(),
        Some(seconds) => format!("{seconds}s"),
        None => "out of range".to_owned(),
    }
}

impl<'a> Fingerprint<'a> {
    fn read(reader: &mut Reader<'a>) -> Result<Fingerprint<'a>, Broken> {
        let bucket_seconds = reader.i64("bucket")?;
        let at = reader.at();
        let window_count = reader.count(8, "windows")?;
        if window_count > WINDOWS_MAX {
            return Err(Broken::corrupt(
                at,
                format!("{window_count} windows, more than {WINDOWS_MAX}"),
            ));
        }
        let mut window_buckets = Vec::with_capacity(window_count);
        for _ in 0..window_count {
            window_buckets.push(reader.i64("window")?);
        }
        let lifetime_index = if reader.option("lifetime index")? {
            Some(reader.u64("lifetime index")?)
        } else {
            None
        };
        let at = reader.at();
        let label_count = reader.count(COUNT_BYTES, "labels")?;
        if label_count > WINDOWS_MAX {
            return Err(Broken::corrupt(
                at,
                format!("{label_count} labels, more than {WINDOWS_MAX}"),
            ));
        }
        let mut labels = Vec::with_capacity(label_count);
        for _ in 0..label_count {
            labels.push(reader.str("label")?);
        }
        let at = reader.at();
        let clock = match reader.u8("clock")? {
            0 => ClockMode::Event,
            1 => ClockMode::Wall,
            other => {
                return Err(Broken::corrupt(
                    at,
                    format!("clock {other} is neither 0 (event) nor 1 (wall)"),
                ))
            }
        };
        let dedup_horizon_buckets = reader.i64("dedup horizon")?;
        Ok(Fingerprint {
            bucket_seconds,
            window_buckets,
            lifetime_index,
            labels,
            clock,
            dedup_horizon_buckets,
        })
    }

    /// Refuses a checkpoint written under another configuration, naming every difference.
    fn check(&self, engine: &Engine, config: &EngineConfig, at: usize) -> Result<(), Broken> {
        let mut differences = Vec::new();
        if self.bucket_seconds != engine.bucket_seconds {
            differences.push(format!(
                "bucket {} but the config has {}",
                duration_text(Some(self.bucket_seconds)),
                config.bucket
            ));
        }
        let finite: Vec<&str> = self
            .labels
            .iter()
            .enumerate()
            .filter(|(index, _)| self.lifetime_index != Some(*index as u64))
            .map(|(_, label)| *label)
            .collect();
        let config_finite: Vec<&str> = config.windows.iter().map(|w| w.as_str()).collect();
        if finite != config_finite {
            differences.push(format!(
                "windows [{}] but the config has [{}]",
                finite.join(", "),
                config_finite.join(", ")
            ));
        }
        let on_off = |on: bool| if on { "on" } else { "off" };
        if self.lifetime_index.is_some() != engine.lifetime_index.is_some() {
            differences.push(format!(
                "the lifetime window {} but the config has it {}",
                on_off(self.lifetime_index.is_some()),
                on_off(engine.lifetime_index.is_some())
            ));
        }
        if self.clock != engine.clock {
            differences.push(format!(
                "clock {} but the config has {}",
                clock_name(self.clock),
                clock_name(engine.clock)
            ));
        }
        let horizon = self.dedup_horizon_buckets.checked_mul(self.bucket_seconds);
        let config_horizon = engine.dedup_horizon_buckets * engine.bucket_seconds;
        // Unset, the horizon follows the longest window and the bucket: a difference there
        // already explains it.
        if horizon != Some(config_horizon)
            && (config.dedup_horizon.is_some() || differences.is_empty())
        {
            differences.push(format!(
                "dedup horizon {} but the config has {}",
                duration_text(horizon),
                duration_text(Some(config_horizon))
            ));
        }
        if !differences.is_empty() {
            return Err(Broken::Foreign(format!(
                "checkpoint was written with {}",
                differences.join(", and with ")
            )));
        }
        // The same configuration derives the same window lengths, labels and lifetime index:
        // anything else is damage, not a configuration change.
        let labels_match = self.labels.len() == engine.labels.len()
            && self.labels.iter().zip(&engine.labels).all(|(a, b)| *a == b);
        if self.window_buckets != engine.window_buckets
            || self.lifetime_index != engine.lifetime_index.map(|index| index as u64)
            || !labels_match
            || self.dedup_horizon_buckets != engine.dedup_horizon_buckets
        {
            return Err(Broken::corrupt(
                at,
                "the configuration fingerprint is inconsistent with itself",
            ));
        }
        Ok(())
    }
}

/// Which series is read, for where its windows' edges are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owner {
    /// The portfolio slides with the watermark, at every change of bucket but the first, so
    /// its edges are at the watermark's bucket.
    Portfolio,
    /// A customer slides lazily (in bulk, or before an event outside one of its windows), so
    /// its edges are at the bucket it was last slid to.
    Customer,
}

/// Reads one series of `labels` labels with finite windows of `windows` buckets, and checks
/// the invariants [`Series`] relies on, as of watermark bucket `current`.
fn read_series(
    reader: &mut Reader<'_>,
    labels: usize,
    windows: &[i64],
    current: i32,
    owner: Owner,
) -> Result<Series, Broken> {
    let at = reader.at();
    let stored_labels = reader.u8("labels")?;
    if usize::from(stored_labels) != labels {
        return Err(Broken::corrupt(
            at,
            format!("{stored_labels} labels where the engine has {labels}"),
        ));
    }
    let mut sums = Vec::with_capacity(SLOTS * labels);
    for _ in 0..SLOTS * labels {
        sums.push(reader.decimal("sum")?);
    }
    let count = reader.count(ENTRY_BYTES, "entries")?;
    let mut entries = VecDeque::with_capacity(count);
    let mut previous: Option<(i32, u8)> = None;
    for _ in 0..count {
        let at = reader.at();
        let bucket = reader.i32("entry bucket")?;
        let slot = reader.u8("entry slot")?;
        let amount = reader.decimal("entry amount")?;
        if usize::from(slot) >= SLOTS {
            return Err(Broken::corrupt(
                at,
                format!("entry slot {slot} is not below {SLOTS}"),
            ));
        }
        if previous.is_some_and(|previous| previous >= (bucket, slot)) {
            return Err(Broken::corrupt(
                at,
                "entries are not strictly sorted by bucket and slot",
            ));
        }
        if bucket > current {
            return Err(Broken::corrupt(
                at,
                format!("entry bucket {bucket} is after the watermark's bucket {current}"),
            ));
        }
        previous = Some((bucket, slot));
        entries.push_back(Entry {
            bucket,
            slot,
            amount,
        });
    }
    let at = reader.at();
    let cursor_count = reader.count(4, "cursors")?;
    if cursor_count != windows.len() {
        return Err(Broken::corrupt(
            at,
            format!(
                "{cursor_count} cursors where the engine has {} finite windows",
                windows.len()
            ),
        ));
    }
    let mut cursors = Vec::with_capacity(cursor_count);
    for _ in 0..cursor_count {
        cursors.push(reader.u32("cursor")?);
    }
    let at = reader.at();
    let slid_to = reader.i32("slid_to")?;
    if slid_to > current {
        return Err(Broken::corrupt(
            at,
            format!("slid to bucket {slid_to}, after the watermark's bucket {current}"),
        ));
    }
    let at = reader.at();
    let magnitude = reader.decimal("magnitude")?;
    let scale_max = reader.u8("scale_max")?;
    // The exactness budget of `Series::prepare`: with it, every sum and every entry is
    // bounded by the magnitude, and no later addition or subtraction can fail.
    if magnitude.is_sign_negative()
        || u32::from(scale_max) > DIGITS
        || magnitude.scale() > u32::from(scale_max)
        || money::integer_digits_exceed(magnitude, DIGITS - u32::from(scale_max))
    {
        return Err(Broken::corrupt(
            at,
            format!("magnitude {magnitude} with {scale_max} decimal places breaks the {DIGITS}-digit budget"),
        ));
    }
    let within_budget =
        |value: &Decimal| value.scale() <= u32::from(scale_max) && value.abs() <= magnitude;
    if !sums.iter().all(within_budget) || !entries.iter().all(|e| within_budget(&e.amount)) {
        return Err(Broken::corrupt(
            at,
            format!(
                "a sum or an entry exceeds the magnitude {magnitude} or {scale_max} decimal places"
            ),
        ));
    }
    // Each cursor sits at its window's edge: the entries before it have left the window (or
    // were never in it), the others are in it. The longest window's edge is where entries
    // are dropped, so nothing is before it. With this, every entry is subtracted from a
    // window at most once, and only if it was added to it.
    if windows.is_empty() && !entries.is_empty() {
        return Err(Broken::corrupt(at, "entries without a finite window"));
    }
    let slid = match owner {
        Owner::Portfolio => current,
        Owner::Customer => slid_to,
    };
    for (window, (length, cursor)) in windows.iter().zip(&cursors).enumerate() {
        let edge = i64::from(slid) - length;
        let expected = entries.partition_point(|e| i64::from(e.bucket) <= edge);
        if *cursor as usize != expected {
            return Err(Broken::corrupt(
                at,
                format!("cursor {cursor} of window {window} is not at its edge, entry {expected}"),
            ));
        }
    }
    if let Some(longest) = windows.iter().max() {
        let edge = i64::from(slid) - longest;
        if entries.front().is_some_and(|e| i64::from(e.bucket) <= edge) {
            return Err(Broken::corrupt(
                at,
                "an entry is older than the longest window",
            ));
        }
    }
    Ok(Series {
        sums: sums.into_boxed_slice(),
        labels: stored_labels,
        entries,
        cursors: cursors.into_boxed_slice(),
        slid_to,
        magnitude,
        scale_max,
    })
}

impl Engine {
    /// Appends the engine's full state to `out`: a self-contained, versioned checkpoint that
    /// [`Engine::decode`] restores under the same configuration. Reserves the exact size
    /// first, then writes in one pass.
    ///
    /// # Format (version 1)
    ///
    /// Integers are little-endian; counts and lengths are `u64`; a string is its length then
    /// its UTF-8 bytes; a decimal is the 16 bytes of `Decimal::serialize`; an option is a
    /// `u8` tag (0 none, 1 some) then the value.
    ///
    /// | Field | Encoding |
    /// |---|---|
    /// | magic | the 8 bytes `MSENGINE` |
    /// | format version | `u32`, 1 |
    /// | bucket | `i64` seconds |
    /// | finite windows | count, then each length in buckets as `i64`, in label order |
    /// | lifetime window | option of its label index as `u64` |
    /// | window labels | count, then each string |
    /// | clock | `u8`: 0 event, 1 wall |
    /// | dedup horizon | `i64` buckets |
    /// | watermark | option of `i64` seconds and `u32` nanoseconds |
    /// | counters | `events` as 2 × 3 `u64`, row by row, then `rejected` as 10 `u64` |
    /// | dedup sweep, maintenance | the `i64` buckets they last ran at |
    /// | dedup clock | `i64` bucket of the latest applied event (`i64::MIN` before any) |
    /// | dedup index | count, then each key as two `u64` and its bucket as `i32` |
    /// | portfolio | a series |
    /// | customers | count, then each id string and series, in slot order |
    ///
    /// A series is: its label count `u8`; its sums, `SLOTS × labels` decimals, slot-major;
    /// its entries, a count then each bucket `i32`, slot `u8` and amount decimal; its cursors,
    /// a count then each `u32`; the bucket it was slid to, `i32`; its magnitude, a decimal;
    /// and its largest scale, `u8`.
    ///
    /// The fields from bucket to dedup horizon are the configuration fingerprint. The output
    /// is not canonical: the dedup index is written in hash-table order.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        let length = self.encoded_len();
        out.reserve(length);

        out.extend_from_slice(&MAGIC);
        put_u32(out, VERSION);
        put_i64(out, self.bucket_seconds);
        put_count(out, self.window_buckets.len());
        for window in &self.window_buckets {
            put_i64(out, *window);
        }
        match self.lifetime_index {
            Some(index) => {
                put_u8(out, 1);
                put_count(out, index);
            }
            None => put_u8(out, 0),
        }
        put_count(out, self.labels.len());
        for label in &self.labels {
            put_str(out, label);
        }
        put_u8(
            out,
            match self.clock {
                ClockMode::Event => 0,
                ClockMode::Wall => 1,
            },
        );
        put_i64(out, self.dedup_horizon_buckets);

        match self.watermark {
            Some(watermark) => {
                put_u8(out, 1);
                put_i64(out, watermark.seconds);
                put_u32(out, watermark.nanos);
            }
            None => put_u8(out, 0),
        }
        for count in self.counters.events.iter().flatten() {
            put_u64(out, *count);
        }
        for count in &self.counters.rejected {
            put_u64(out, *count);
        }
        put_i64(out, self.dedup_swept_at);
        put_i64(out, self.maintained_at);
        put_i64(out, self.dedup_clock);
        put_count(out, self.dedup.len());
        for (key, bucket) in &self.dedup {
            put_u64(out, key[0]);
            put_u64(out, key[1]);
            put_i32(out, *bucket);
        }
        put_series(out, &self.portfolio);
        put_count(out, self.customer_count);
        for customer in self.customers.iter().flatten() {
            put_str(out, &customer.id);
            put_series(out, &customer.series);
        }
        debug_assert_eq!(
            out.len() - start,
            length,
            "encoded_len counts every byte encode writes"
        );
    }

    /// Returns the exact size of [`Engine::encode`]'s output.
    fn encoded_len(&self) -> usize {
        let fingerprint = MAGIC.len()
            + 4
            + 8
            + COUNT_BYTES
            + 8 * self.window_buckets.len()
            + 1
            + self.lifetime_index.map_or(0, |_| COUNT_BYTES)
            + COUNT_BYTES
            + self
                .labels
                .iter()
                .map(|label| COUNT_BYTES + label.len())
                .sum::<usize>()
            + 1
            + 8;
        let customers: usize = self
            .customers
            .iter()
            .flatten()
            .map(|customer| COUNT_BYTES + customer.id.len() + series_len(&customer.series))
            .sum();
        fingerprint
            + 1
            + self.watermark.map_or(0, |_| 8 + 4)
            + COUNTERS_BYTES
            + 8
            + 8
            + 8
            + COUNT_BYTES
            + DEDUP_BYTES * self.dedup.len()
            + series_len(&self.portfolio)
            + COUNT_BYTES
            + customers
    }

    /// Restores an engine from a checkpoint written by [`Engine::encode`], under `config`.
    ///
    /// Refuses, naming the reason and the byte offset: bytes that are not a checkpoint of
    /// this format version, a checkpoint written under a configuration with another bucket,
    /// windows, lifetime window, clock or dedup horizon (naming every difference), a
    /// truncated or corrupt checkpoint (including one breaking the engine's invariants, or
    /// listing a customer twice), and trailing bytes. The customer limit is not applied to
    /// the customers restored: they were admitted under the limit of their time.
    ///
    /// Never panics, whatever the bytes.
    pub fn decode(config: &EngineConfig, bytes: &[u8]) -> Result<Engine, AggregatorError> {
        let mut engine = Engine::new(config)?;
        let mut reader = Reader::new(bytes);
        engine.restore(config, &mut reader)?;
        Ok(engine)
    }

    /// Reads the state into a new engine; see [`Engine::decode`].
    fn restore(&mut self, config: &EngineConfig, reader: &mut Reader<'_>) -> Result<(), Broken> {
        let magic: [u8; 8] = reader.array("magic")?;
        if magic != MAGIC {
            return Err(Broken::Foreign(format!(
                "not an engine checkpoint: it starts with \"{}\", not \"{}\"",
                magic.escape_ascii(),
                MAGIC.escape_ascii()
            )));
        }
        let version = reader.u32("format version")?;
        if version != VERSION {
            return Err(Broken::Foreign(format!(
                "checkpoint format version {version} is not supported; this build reads version {VERSION}"
            )));
        }
        let at = reader.at();
        Fingerprint::read(reader)?.check(self, config, at)?;

        let at = reader.at();
        if reader.option("watermark")? {
            let seconds = reader.i64("watermark seconds")?;
            let nanos = reader.u32("watermark nanoseconds")?;
            let watermark = Timestamp { seconds, nanos };
            if nanos >= 1_000_000_000
                || i32::try_from(Bucket::of(watermark, self.bucket_seconds).0).is_err()
            {
                return Err(Broken::corrupt(
                    at,
                    format!("watermark {seconds}s {nanos}ns is out of range"),
                ));
            }
            self.watermark = Some(watermark);
        }
        // In range, as just checked; the minimum before the first event, as the engine has it.
        let current = self.watermark.map_or(i32::MIN, |t| {
            Bucket::of(t, self.bucket_seconds)
                .0
                .clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32
        });

        let at = reader.at();
        for count in self.counters.events.iter_mut().flatten() {
            *count = reader.u64("counter")?;
        }
        for count in self.counters.rejected.iter_mut() {
            *count = reader.u64("counter")?;
        }
        let counts = self.counters.events.iter().flatten();
        if counts
            .chain(&self.counters.rejected)
            .any(|c| *c > COUNT_MAX)
        {
            return Err(Broken::corrupt(
                at,
                format!("a counter is above {COUNT_MAX}"),
            ));
        }

        let at = reader.at();
        self.dedup_swept_at = reader.i64("dedup sweep bucket")?;
        self.maintained_at = reader.i64("maintenance bucket")?;
        self.dedup_clock = reader.i64("dedup clock")?;
        // Before the first event these are placeholders, reset by it. After, the engine
        // subtracts them from the watermark's bucket: they must be buckets it has seen.
        let seen = i64::from(i32::MIN)..=i64::from(current);
        if self.watermark.is_some()
            && !(seen.contains(&self.dedup_swept_at) && seen.contains(&self.maintained_at))
        {
            return Err(Broken::corrupt(
                at,
                format!(
                    "the dedup sweep bucket {} or the maintenance bucket {} is after the watermark's bucket {current}",
                    self.dedup_swept_at, self.maintained_at
                ),
            ));
        }
        if self.dedup_clock != i64::MIN
            && !(self.watermark.is_some() && seen.contains(&self.dedup_clock))
        {
            return Err(Broken::corrupt(
                at,
                format!(
                    "the dedup clock {} is after the watermark's bucket {current}",
                    self.dedup_clock
                ),
            ));
        }

        let count = reader.count(DEDUP_BYTES, "dedup index")?;
        self.dedup.reserve(count);
        for _ in 0..count {
            let at = reader.at();
            let key = [reader.u64("dedup key")?, reader.u64("dedup key")?];
            let bucket = reader.i32("dedup bucket")?;
            if bucket > current {
                return Err(Broken::corrupt(
                    at,
                    format!("dedup bucket {bucket} is after the watermark's bucket {current}"),
                ));
            }
            if self.dedup.insert(key, bucket).is_some() {
                return Err(Broken::corrupt(at, "a dedup key is listed twice"));
            }
        }

        let labels = self.labels.len();
        self.portfolio = read_series(
            reader,
            labels,
            &self.window_buckets,
            current,
            Owner::Portfolio,
        )
        .map_err(|broken| broken.within("portfolio"))?;

        let customer_bytes_min = COUNT_BYTES + series_len_min(labels, self.window_buckets.len());
        let count = reader.count(customer_bytes_min, "customers")?;
        self.customers.reserve_exact(count);
        {
            let Engine {
                index,
                customers,
                hasher,
                ..
            } = self;
            index.reserve(count, |slot| hash_slot(hasher, customers, *slot));
        }
        for number in 0..count {
            let at = reader.at();
            let id = reader
                .str("id")
                .map_err(|broken| broken.within(&format!("customer {number}")))?;
            let series = read_series(
                reader,
                labels,
                &self.window_buckets,
                current,
                Owner::Customer,
            )
            .map_err(|broken| broken.within(&format!("customer {number} ({id:?})")))?;
            let hash = self.hasher.hash_one(id);
            if self.find(id, hash).is_some() {
                return Err(Broken::corrupt(
                    at,
                    format!("customer {id:?} is listed twice"),
                ));
            }
            let Ok(slot) = u32::try_from(self.customers.len()) else {
                return Err(Broken::corrupt(at, "more customers than slots"));
            };
            self.customers.push(Some(Customer {
                id: CustomerId::from(id),
                series,
            }));
            let Engine {
                index,
                customers,
                hasher,
                ..
            } = self;
            index.insert_unique(hash, slot, |slot| hash_slot(hasher, customers, *slot));
        }
        self.customer_count = count;
        self.sorted.clear();
        self.sorted_valid = false;

        if !reader.rest.is_empty() {
            return Err(Broken::corrupt(
                reader.at(),
                format!(
                    "{} trailing bytes after the last customer",
                    reader.rest.len()
                ),
            ));
        }
        Ok(())
    }
}

/// Hashes the id of the customer in `slot`, to rehash the customer index as it grows.
fn hash_slot(
    hasher: &foldhash::fast::RandomState,
    customers: &[Option<Customer>],
    slot: u32,
) -> u64 {
    // The index only holds occupied slots; an empty one (never seen) hashes as the empty id.
    let id = customers
        .get(slot as usize)
        .and_then(|customer| customer.as_ref())
        .map_or("", |customer| &customer.id);
    hasher.hash_one(id)
}

#[cfg(test)]
mod tests {
    //! Checkpoint tests: a restored engine is the engine encoded (same state, same gauges,
    //! same outcomes for the events that follow), a checkpoint of another configuration is
    //! refused by name, and no input bytes make decoding panic.

    use std::collections::{BTreeMap, HashMap};

    use marginstream_model::{
        CostFunction, Counters, Currency, DurationSpec, EventType, Line, Outcome, ParseLimits,
        RejectReason, Timestamp,
    };
    use proptest::prelude::*;
    use proptest::sample::Index;
    use proptest::test_runner::Config as ProptestConfig;
    use rust_decimal::Decimal;

    use super::{series_len_min, COUNT_BYTES};
    use crate::tests::{snapshot, Snapshot};
    use crate::{AggregatorError, ClockMode, Engine, EngineConfig, Preparer, Tagger};

    const HOUR: i64 = 3_600;
    const DAY: i64 = 86_400;

    /// 2026-01-01T00:00:00Z: the start of a bucket for every bucket length used here.
    const T0: i64 = 1_767_225_600;

    const CUSTOMERS: [&str; 6] = ["acme", "globex", "initech", "umbrella", "hooli", "c"];

    fn duration(text: &str) -> DurationSpec {
        DurationSpec::parse(text).expect("test durations are valid")
    }

    /// Windows, bucket and lifetime window of the engines under test.
    const SETUPS: [(&[&str], &str, bool); 5] = [
        (&["24h", "7d", "30d"], "1h", true),
        (&["3d", "12h"], "30m", false),
        (&["2h"], "1h", false),
        (&[], "1h", true),
        (&["90m", "1d"], "1m", true),
    ];

    fn config(setup: usize, clock: ClockMode) -> EngineConfig {
        let (windows, bucket, lifetime) = SETUPS[setup];
        EngineConfig {
            windows: windows.iter().map(|w| duration(w)).collect(),
            bucket: duration(bucket),
            lifetime,
            clock,
            ..EngineConfig::default()
        }
    }

    /// The default preparer: USD only, the default tagging rules.
    fn preparer() -> Preparer {
        Preparer::new(
            ParseLimits::default(),
            Tagger::default(),
            Currency::parse("USD").expect("valid code"),
            HashMap::new(),
        )
    }

    /// One step of a run.
    #[derive(Debug, Clone)]
    enum Action {
        /// A message; `customer` `None` is an unattributed cost.
        Record {
            id: u32,
            customer: Option<usize>,
            offset: i64,
            amount: Decimal,
            line: Line,
        },
        /// The wall clock moves to T0 plus this offset (never back) and the engine ticks.
        Tick(i64),
        /// An exporter takes a view, which slides every customer.
        View,
    }

    impl Action {
        fn json(
            id: u32,
            customer: Option<usize>,
            offset: i64,
            amount: Decimal,
            line: Line,
        ) -> String {
            let (event_type, tag) = match line {
                Line::Revenue => ("Revenue_Event", String::new()),
                Line::Cost(function) => (
                    "Cost_Event",
                    format!(r#","cost_function":"{}""#, function.as_str()),
                ),
            };
            let customer = customer.map_or("null".to_owned(), |c| format!("\"{}\"", CUSTOMERS[c]));
            format!(
                r#"{{"event_type":"{event_type}","event_id":"e{id}","customer_id":{customer},"occurred_at":"{}","amount":"{amount}","currency":"USD"{tag}}}"#,
                Timestamp::from_seconds(T0 + offset).to_rfc3339()
            )
        }
    }

    /// Drives an engine as the application does: prepare, record, count the rejections.
    struct Driver {
        preparer: Preparer,
        now: Timestamp,
    }

    impl Driver {
        /// In wall-clock mode the clock starts at T0, so events beyond it plus the skew are
        /// future events; in event-time mode it is far after every event.
        fn new(clock: ClockMode) -> Driver {
            Driver {
                preparer: preparer(),
                now: Timestamp::from_seconds(match clock {
                    ClockMode::Wall => T0,
                    ClockMode::Event => T0 + 400 * DAY,
                }),
            }
        }

        fn run(
            &mut self,
            engine: &mut Engine,
            actions: &[Action],
        ) -> Vec<Result<Outcome, RejectReason>> {
            let mut outcomes = Vec::new();
            for action in actions {
                match action {
                    Action::Record {
                        id,
                        customer,
                        offset,
                        amount,
                        line,
                    } => {
                        let json = Action::json(*id, *customer, *offset, *amount, *line);
                        let outcome = match self.preparer.prepare(json.as_bytes()) {
                            Ok(prepared) => engine.record(prepared, self.now).map_err(|r| r.reason),
                            Err(rejection) => {
                                engine.count_rejection(rejection.reason);
                                Err(rejection.reason)
                            }
                        };
                        outcomes.push(outcome);
                    }
                    Action::Tick(offset) => {
                        self.now = self.now.max(Timestamp::from_seconds(T0 + offset));
                        engine.tick(self.now);
                    }
                    Action::View => {
                        engine.view();
                    }
                }
            }
            outcomes
        }
    }

    /// Everything the exporters can see: the figures (as the engine tests compare them)
    /// and the counters.
    fn observe(engine: &mut Engine) -> (Snapshot, Counters) {
        (snapshot(engine), *engine.counters())
    }

    /// Asserts that two engines hold the same state, field by field (customers by id).
    fn assert_same_state(a: &Engine, b: &Engine) {
        assert_eq!(a.watermark, b.watermark);
        assert_eq!(a.counters, b.counters);
        assert_eq!(a.dedup, b.dedup);
        assert_eq!(a.dedup_swept_at, b.dedup_swept_at);
        assert_eq!(a.maintained_at, b.maintained_at);
        assert_eq!(a.dedup_clock, b.dedup_clock);
        assert_eq!(a.portfolio, b.portfolio);
        assert_eq!(a.customer_count, b.customer_count);
        let customers = |engine: &Engine| {
            engine
                .customers
                .iter()
                .flatten()
                .map(|c| (c.id.to_string(), c.series.clone()))
                .collect::<BTreeMap<_, _>>()
        };
        assert_eq!(customers(a), customers(b));
    }

    fn encode(engine: &Engine) -> Vec<u8> {
        let mut bytes = Vec::new();
        engine.encode(&mut bytes);
        bytes
    }

    fn snapshot_message(result: Result<Engine, AggregatorError>) -> String {
        match result {
            Ok(_) => panic!("the checkpoint was restored"),
            Err(AggregatorError::Snapshot(message)) => message,
            Err(other) => panic!("not a checkpoint error: {other}"),
        }
    }

    /// Amounts with 0 to 4 decimals, mostly positive, some negative, a few near the limit of
    /// a series' exactness budget (so some events are refused as too large).
    fn amount() -> impl Strategy<Value = Decimal> {
        prop_oneof![
            6 => (0i64..100_000_000_000, 0u32..=4).prop_map(|(m, s)| Decimal::new(m, s)),
            2 => (-100_000_000_000i64..0, 0u32..=4).prop_map(|(m, s)| Decimal::new(m, s)),
            1 => (1i64..=9, 0u32..=2).prop_map(|(m, s)| Decimal::new(m, s) * Decimal::from(10i64.pow(18)) * Decimal::from(10_000_000i64)),
        ]
    }

    fn line() -> impl Strategy<Value = Line> {
        prop_oneof![
            4 => Just(Line::Revenue),
            6 => prop::sample::select(&CostFunction::ALL[..]).prop_map(Line::Cost),
        ]
    }

    /// Events over 40 days in random order (so many are late for the shorter windows), ids
    /// drawn from a small range (so many are duplicates), some unattributed costs, some
    /// future events in wall-clock mode, with ticks and views in between.
    fn action() -> impl Strategy<Value = Action> {
        prop_oneof![
            12 => (0u32..48, 0..=CUSTOMERS.len(), 0..40 * DAY, amount(), line()).prop_map(
                |(id, customer, offset, amount, line)| Action::Record {
                    id,
                    customer: match line {
                        Line::Revenue => Some(customer % CUSTOMERS.len()),
                        _ => (customer < CUSTOMERS.len()).then_some(customer),
                    },
                    offset,
                    amount,
                    line,
                }
            ),
            1 => (0..40 * DAY).prop_map(Action::Tick),
            1 => Just(Action::View),
        ]
    }

    /// A set-up, a clock and up to 80 actions.
    fn scenario() -> impl Strategy<Value = (usize, ClockMode, Vec<Action>)> {
        (
            0..SETUPS.len(),
            prop_oneof![Just(ClockMode::Event), Just(ClockMode::Wall)],
            prop::collection::vec(action(), 0..80),
        )
    }

    /// Runs the actions into a new engine, returning it and the driver (with its clock).
    fn engine_after(setup: usize, clock: ClockMode, actions: &[Action]) -> (Engine, Driver) {
        let mut engine = Engine::new(&config(setup, clock)).expect("the set-ups are valid");
        let mut driver = Driver::new(clock);
        driver.run(&mut engine, actions);
        (engine, driver)
    }

    /// Uses a restored engine as the application would, to show it is consistent: views it,
    /// checks that it encodes to a checkpoint that restores, and records a few events.
    fn exercise(config: &EngineConfig, mut engine: Engine) {
        let (observed, _) = observe(&mut engine);
        assert_eq!(observed.customers.len(), engine.customer_count());
        let bytes = encode(&engine);
        let again = Engine::decode(config, &bytes)
            .unwrap_or_else(|error| panic!("a restored engine's checkpoint restores: {error}"));
        assert_same_state(&engine, &again);
        let mut driver = Driver::new(config.clock);
        let base = engine.watermark().map_or(0, |t| t.seconds - T0);
        let actions: Vec<Action> = (0..4)
            .map(|step| Action::Record {
                id: 1_000 + step,
                customer: Some(step as usize % CUSTOMERS.len()),
                offset: base + i64::from(step) * 7 * HOUR,
                amount: Decimal::new(12_345, 2),
                line: Line::Revenue,
            })
            .chain([Action::Tick(base + 50 * DAY), Action::View])
            .collect();
        driver.run(&mut engine, &actions);
        observe(&mut engine);
    }

    /// Shows that a restored engine holds exactly the state encoded, shows the same gauges,
    /// and goes on exactly as the original: every further event has the same outcome
    /// (repeats of ids applied before the checkpoint are duplicates) and the gauges stay equal.
    #[test]
    fn a_restored_engine_goes_on_as_the_original() {
        let config = config(0, ClockMode::Event);
        let mut driver = Driver::new(ClockMode::Event);
        let mut original = Engine::new(&config).expect("valid");
        let first = Action::Record {
            id: 1,
            customer: Some(0),
            offset: 0,
            amount: Decimal::new(10_000, 2),
            line: Line::Revenue,
        };
        let unattributed = Action::Record {
            id: 2,
            customer: None,
            offset: HOUR,
            amount: Decimal::new(250, 2),
            line: Line::Cost(CostFunction::Infrastructure),
        };
        let outcomes = driver.run(&mut original, &[first.clone(), unattributed]);
        assert_eq!(outcomes, [Ok(Outcome::Applied), Ok(Outcome::Applied)]);

        let bytes = encode(&original);
        let mut restored = Engine::decode(&config, &bytes).expect("a checkpoint restores");
        assert_same_state(&original, &restored);
        assert_eq!(observe(&mut original), observe(&mut restored));
        assert_eq!(restored.max_customers(), config.max_customers);

        let late = Action::Record {
            id: 3,
            customer: Some(1),
            offset: 40 * DAY,
            amount: Decimal::new(5, 0),
            line: Line::Revenue,
        };
        let expected = [Ok(Outcome::Duplicate), Ok(Outcome::Applied)];
        let more = [first, late];
        assert_eq!(driver.run(&mut original, &more), expected);
        assert_eq!(driver.run(&mut restored, &more), expected);
        assert_eq!(
            restored
                .counters()
                .events(EventType::Revenue, Outcome::Duplicate),
            1
        );
        assert_same_state(&original, &restored);
        assert_eq!(observe(&mut original), observe(&mut restored));
    }

    /// Shows that a checkpoint of an engine that never saw an event restores to one.
    #[test]
    fn an_empty_engine_round_trips() {
        for setup in 0..SETUPS.len() {
            for clock in [ClockMode::Event, ClockMode::Wall] {
                let config = config(setup, clock);
                let original = Engine::new(&config).expect("valid");
                let restored = Engine::decode(&config, &encode(&original)).expect("restores");
                assert_same_state(&original, &restored);
                assert_eq!(restored.watermark(), None);
            }
        }
    }

    /// Shows that `encode` appends: what was in the buffer is kept.
    #[test]
    fn encode_appends_to_the_buffer() {
        let (engine, _) = engine_after(0, ClockMode::Event, &[]);
        let mut bytes = b"header".to_vec();
        engine.encode(&mut bytes);
        assert!(bytes.starts_with(b"header"));
        Engine::decode(&config(0, ClockMode::Event), &bytes[6..]).expect("restores");
    }

    /// Shows that a checkpoint written under another configuration is refused, naming each
    /// difference: bucket, windows, lifetime window, clock and dedup horizon.
    #[test]
    fn a_checkpoint_of_another_configuration_is_refused_by_name() {
        let written = EngineConfig {
            windows: vec![duration("24h"), duration("7d")],
            ..EngineConfig::default()
        };
        let bytes = encode(&Engine::new(&written).expect("valid"));
        let cases = [
            (
                EngineConfig::default(),
                "checkpoint was written with windows [24h, 7d] but the config has [24h, 7d, 30d]",
            ),
            (
                EngineConfig {
                    bucket: duration("15m"),
                    ..written.clone()
                },
                "checkpoint was written with bucket 1h but the config has 15m",
            ),
            (
                EngineConfig {
                    lifetime: false,
                    ..written.clone()
                },
                "checkpoint was written with the lifetime window on but the config has it off",
            ),
            (
                EngineConfig {
                    clock: ClockMode::Wall,
                    ..written.clone()
                },
                "checkpoint was written with clock event but the config has wall",
            ),
            (
                EngineConfig {
                    dedup_horizon: Some(duration("60d")),
                    ..written.clone()
                },
                "checkpoint was written with dedup horizon 169h but the config has 60d",
            ),
            (
                EngineConfig {
                    windows: vec![duration("1d"), duration("7d")],
                    clock: ClockMode::Wall,
                    ..written.clone()
                },
                "checkpoint was written with windows [24h, 7d] but the config has [1d, 7d], \
                 and with clock event but the config has wall",
            ),
        ];
        for (config, expected) in cases {
            let message = snapshot_message(Engine::decode(&config, &bytes));
            assert_eq!(message, expected);
            assert_eq!(
                AggregatorError::Snapshot(message).to_string(),
                format!("cannot restore the engine: {expected}")
            );
        }
        Engine::decode(&written, &bytes).expect("the same configuration restores");
    }

    /// Shows that other bytes are refused with a reason: another magic, another format
    /// version, trailing bytes, a count larger than the bytes left, a customer listed twice.
    #[test]
    fn malformed_checkpoints_are_refused_with_a_reason() {
        let config = config(0, ClockMode::Event);
        let (engine, _) = engine_after(
            0,
            ClockMode::Event,
            &[
                Action::Record {
                    id: 1,
                    customer: Some(0),
                    offset: 0,
                    amount: Decimal::ONE,
                    line: Line::Revenue,
                },
                Action::Record {
                    id: 2,
                    customer: Some(2),
                    offset: 0,
                    amount: Decimal::ONE,
                    line: Line::Revenue,
                },
            ],
        );
        let bytes = encode(&engine);

        let message = snapshot_message(Engine::decode(&config, b"{\"not\": \"a checkpoint\"}"));
        assert!(message.starts_with("not an engine checkpoint"), "{message}");

        let mut version = bytes.clone();
        version[8] = 2;
        let message = snapshot_message(Engine::decode(&config, &version));
        assert_eq!(
            message,
            "checkpoint format version 2 is not supported; this build reads version 1"
        );

        let mut trailing = bytes.clone();
        trailing.push(0);
        let message = snapshot_message(Engine::decode(&config, &trailing));
        assert!(
            message.ends_with("1 trailing bytes after the last customer"),
            "{message}"
        );

        // A checkpoint of "acme" and "hooli", with "hooli" rewritten as "acme" (its length
        // and its bytes): the same customer twice.
        let (twins, _) = engine_after(
            0,
            ClockMode::Event,
            &[
                Action::Record {
                    id: 1,
                    customer: Some(0),
                    offset: 0,
                    amount: Decimal::ONE,
                    line: Line::Revenue,
                },
                Action::Record {
                    id: 2,
                    customer: Some(4),
                    offset: 0,
                    amount: Decimal::ONE,
                    line: Line::Revenue,
                },
            ],
        );
        let mut twins = encode(&twins);
        let at = twins
            .windows(5)
            .position(|w| w == b"hooli")
            .expect("the id is in the checkpoint");
        twins[at - COUNT_BYTES] = 4;
        twins.splice(at..at + 5, *b"acme");
        let message = snapshot_message(Engine::decode(&config, &twins));
        assert!(
            message.ends_with("customer \"acme\" is listed twice"),
            "{message}"
        );

        // The dedup index count, in a checkpoint of an engine without events: right before
        // the portfolio and the customer count.
        let empty = encode(&Engine::new(&config).expect("valid"));
        let mut huge = empty.clone();
        let at = empty.len() - COUNT_BYTES - series_len_min(4, 3) - COUNT_BYTES;
        huge[at..at + 8].copy_from_slice(&u64::MAX.to_le_bytes());
        let message = snapshot_message(Engine::decode(&config, &huge));
        assert!(message.contains("do not fit in the"), "{message}");
    }

    /// Shows that every strict prefix of a checkpoint is refused, without a panic.
    #[test]
    fn every_truncation_is_refused() {
        let actions: Vec<Action> = (0..40)
            .map(|step| Action::Record {
                id: step % 30,
                customer: (step % 7 != 0).then_some(step as usize % CUSTOMERS.len()),
                offset: i64::from((step * 7_919) % 40) * DAY / 3,
                amount: Decimal::new(i64::from(step) * 1_001 - 9_000, 2),
                line: if step % 3 == 0 {
                    Line::Revenue
                } else {
                    Line::Cost(CostFunction::ALL[step as usize % 6])
                },
            })
            .collect();
        for setup in 0..SETUPS.len() {
            let config = config(setup, ClockMode::Event);
            let (engine, _) = engine_after(setup, ClockMode::Event, &actions);
            let bytes = encode(&engine);
            for length in 0..bytes.len() {
                assert!(
                    Engine::decode(&config, &bytes[..length]).is_err(),
                    "a prefix of {length} bytes of {} was restored",
                    bytes.len()
                );
            }
        }
    }

    /// Shows that the live path can share one customer limit across engines: the limit set
    /// applies to new customers, and values beyond `u32::MAX` are clamped.
    #[test]
    fn the_customer_limit_can_be_set() {
        let (mut engine, mut driver) = engine_after(0, ClockMode::Event, &[]);
        engine.set_max_customers(1);
        assert_eq!(engine.max_customers(), 1);
        let record = |id, customer| Action::Record {
            id,
            customer: Some(customer),
            offset: 0,
            amount: Decimal::ONE,
            line: Line::Revenue,
        };
        let outcomes = driver.run(&mut engine, &[record(1, 0), record(2, 1), record(3, 0)]);
        assert_eq!(
            outcomes,
            [
                Ok(Outcome::Applied),
                Err(RejectReason::CustomerLimit),
                Ok(Outcome::Applied)
            ]
        );
        engine.set_max_customers(usize::MAX);
        assert_eq!(engine.max_customers(), u32::MAX as usize);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Shows on random runs (late events, duplicates, unattributed costs, amounts beyond
        /// the budget, ticks, views, lifetime window on and off, both clocks) that a restored
        /// engine holds the state encoded and goes on exactly as the original.
        #[test]
        fn a_restored_engine_goes_on_as_the_original_in_any_run(
            (setup, clock, actions) in scenario(),
            split in any::<Index>(),
        ) {
            let config = config(setup, clock);
            let (before, after) = actions.split_at(split.index(actions.len() + 1));
            let (mut original, driver) = engine_after(setup, clock, before);
            let bytes = encode(&original);
            let mut restored = Engine::decode(&config, &bytes)
                .unwrap_or_else(|error| panic!("a checkpoint restores: {error}"));
            assert_same_state(&original, &restored);
            prop_assert_eq!(encode(&restored).len(), bytes.len());

            let mut driver_restored = Driver { preparer: preparer(), now: driver.now };
            let mut driver = driver;
            let outcomes = driver.run(&mut original, after);
            let outcomes_restored = driver_restored.run(&mut restored, after);
            prop_assert_eq!(outcomes, outcomes_restored);
            assert_same_state(&original, &restored);
            prop_assert_eq!(observe(&mut original), observe(&mut restored));
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// Shows that no single-byte corruption of a valid checkpoint, at any position, makes
        /// decoding panic; and that what it accepts is a consistent engine.
        #[test]
        fn corrupt_checkpoints_never_panic(
            (setup, clock, actions) in scenario(),
            mask in 1u8..=255,
        ) {
            let config = config(setup, clock);
            let (engine, _) = engine_after(setup, clock, &actions);
            let bytes = encode(&engine);
            let mut corrupt = bytes.clone();
            for position in 0..bytes.len() {
                corrupt[position] ^= mask;
                if let Ok(restored) = Engine::decode(&config, &corrupt) {
                    exercise(&config, restored);
                }
                corrupt[position] = bytes[position];
            }
        }

        /// Shows that several corrupt bytes at random places never make decoding panic.
        #[test]
        fn scattered_corruption_never_panics(
            (setup, clock, actions) in scenario(),
            changes in prop::collection::vec((any::<Index>(), any::<u8>()), 1..8),
        ) {
            let config = config(setup, clock);
            let (engine, _) = engine_after(setup, clock, &actions);
            let mut bytes = encode(&engine);
            for (at, value) in changes {
                let at = at.index(bytes.len());
                bytes[at] = value;
            }
            if let Ok(restored) = Engine::decode(&config, &bytes) {
                exercise(&config, restored);
            }
        }

        /// Shows that arbitrary bytes, alone or after a valid header and fingerprint (so that
        /// they reach the state), never make decoding panic.
        #[test]
        fn arbitrary_bytes_never_panic(
            setup in 0..SETUPS.len(),
            tail in prop::collection::vec(any::<u8>(), 0..2_048),
        ) {
            let config = config(setup, ClockMode::Event);
            if let Ok(restored) = Engine::decode(&config, &tail) {
                exercise(&config, restored);
            }
            let empty = encode(&Engine::new(&config).expect("valid"));
            // The header and fingerprint end where the watermark's option tag is: the state
            // of an empty engine is that tag, the counters, two buckets, the dedup count, an
            // empty portfolio and the customer count.
            let (windows, _, lifetime) = SETUPS[setup];
            let labels = windows.len() + usize::from(lifetime);
            let state = 1 + super::COUNTERS_BYTES + 16 + COUNT_BYTES
                + series_len_min(labels, windows.len()) + COUNT_BYTES;
            let mut bytes = empty[..empty.len() - state].to_vec();
            bytes.extend_from_slice(&tail);
            if let Ok(restored) = Engine::decode(&config, &bytes) {
                exercise(&config, restored);
            }
        }
    }
}
