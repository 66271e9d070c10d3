//! `marginstream generate`: a deterministic synthetic Commercial Event Ledger, as JSONL.
//!
//! The ledger is for demos (`make demo`, streaming into Kafka with `--rate`), for tests and for
//! benchmark ledgers of millions of events. It follows `shared/spec/ledger-contract.md`
//! section 1 and the shape of the business in `domain.md`.
//!
//! # Layout
//!
//! - [`GenerateArgs`] and [`generate`]: the command's options and its one entry point.
//! - `Plan`: the validated options. `Ledger`: the good events, a day at a time, in order of
//!   arrival. `Noise`: duplicates and bad lines. `Output`: buffering and `--rate` pacing.
//! - `live`: what `--follow` adds after the history: wall-clock stamps and the swing of
//!   [`SWING_CUSTOMER`].
//! - Formatting helpers write JSON straight into a reused line buffer.
//!
//! # Design decisions
//!
//! Determinism. The same options give the same bytes on every platform and with every
//! version of the dependencies: the random numbers come from a hand-written xoshiro256**
//! generator (seeded through SplitMix64), never from `rand`, whose algorithms may change;
//! there is no floating-point arithmetic on amounts, no hash map iteration and no clock
//! (except for `--end now`). Each customer's profile and each customer-day draws from its own
//! stream keyed by `(seed, customer, day)`, so a customer's events do not change when other
//! customers are added. Duplicates and bad lines draw from another stream and only insert
//! lines: removing them from a noisy ledger gives back, byte for byte, the clean ledger of the
//! same seed, so a test can compare the gauges of both.
//!
//! Money. Amounts are integers in ten-thousandths of a dollar ([`UNITS_PER_DOLLAR`]), printed
//! with two decimals (four for usage and API-metered costs), mostly as JSON strings and one in
//! ten as JSON numbers: both are valid per the contract.
//!
//! Order. Events are generated one day at a time and written in order of arrival, which is
//! `occurred_at` except for about 1 % of events that arrive one minute to four hours late, as
//! real producers do. The late ones still pending at the end of a day are carried over.
//!
//! Realism. Customers get an ACV tier (SMB $1K-10K, Mid-Market $10K-50K, Enterprise $50K+),
//! infrastructure costs that put most GM-M between 60 % and 85 % (one in ten is
//! infrastructure-heavy, below 60 %), cloud credits that end one day mid-ledger, Support and
//! Success Engineering costs that widen the Services Drag for larger accounts, Implementation
//! and Onboarding costs concentrated in a new customer's first 30 days, Excluded costs, and
//! unattributed shared costs. A few customers are special on purpose: see [`SPECIAL_IDS`] and
//! [`REFUND_CUSTOMER`]. About half of the costs carry an explicit `cost_function`; the others
//! only a `category` of the default taxonomy, sometimes in mixed case.
//!
//! Following. With `--follow` the ledger runs on after `--end` until the process is killed:
//! the history is written at once, then the next days of the same ledger (the same streams,
//! keyed by day, so the content is deterministic for a seed) at `--rate`, each event stamped
//! with the wall clock as it is written. At `--rate` a live day lasts minutes, not a day, so
//! the windows fill faster than in real time: amounts grow, ratios keep their level. After
//! `--swing-after`, [`SWING_CUSTOMER`]'s infrastructure bill jumps, so that its 7-day GM-M
//! falls far below a week ago at once, as `MarginstreamCustomerGmMarketDrop` watches for. The
//! output without `--follow` is unchanged, and it is the exact beginning of the output with it.
//!
//! Bad lines cover, evenly, every rejection reason that a file can produce with the default
//! configuration (all but `customer_limit`), each with its own `event_id` that no good event
//! uses, and each otherwise valid so that it is rejected for exactly its intended reason.

mod business;
mod events;
mod format;
mod live;
mod noise;
mod output;
mod plan;
mod random;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::fmt;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;

use anyhow::Context;
use tracing::info;

use marginstream_model::{CostFunction, DurationSpec, RevenueType};
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

use business::*;
use events::*;
use format::*;
pub use live::SWING_CUSTOMER;
use live::*;
use noise::*;
use output::*;
use plan::*;
use random::*;

/// Options of `marginstream generate`.
#[derive(Debug, Clone, clap::Args)]
pub struct GenerateArgs {
    /// Number of customers (default 100).
    #[arg(long, default_value_t = 100)]
    pub customers: u32,
    /// Days of ledger (default 30).
    #[arg(long, default_value_t = 30)]
    pub days: u32,
    /// Seed of the deterministic generator (default 1).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Approximate events per customer per day (default 5).
    #[arg(long, default_value_t = 5.0)]
    pub events_per_customer_day: f64,
    /// End of the ledger: RFC 3339 or "now" (default 2026-01-01T00:00:00Z, fixed so output is
    /// reproducible).
    #[arg(long, default_value = "2026-01-01T00:00:00Z")]
    pub end: String,
    /// Share of lines that repeat an earlier event exactly (0..1, default 0).
    #[arg(long, default_value_t = 0.0)]
    pub duplicate_share: f64,
    /// Share of bad lines, spread over every rejection reason (0..1, default 0).
    #[arg(long, default_value_t = 0.0)]
    pub bad_share: f64,
    /// Emit at most this many events per second (0 = as fast as possible), for streaming demos.
    /// With --follow, only the live part is paced.
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// After the history up to --end, keep generating until killed: the next days of the same
    /// ledger, each event stamped with the wall clock as it is written, at --rate (required).
    /// The history is written at once; --end must not be after the wall clock.
    #[arg(long)]
    pub follow: bool,
    /// With --follow: the infrastructure bill of the swing customer (acme "beta") jumps after
    /// about this long of the live part at --rate, e.g. 90s or 5m (default 2m).
    #[arg(long, value_name = "DURATION", requires = "follow")]
    pub swing_after: Option<String>,
    /// Write to this file instead of stdout.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
}

/// What [`generate`] wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GenerateStats {
    /// Every line written: `events + duplicates + bad`.
    pub lines: u64,
    /// Distinct good events.
    pub events: u64,
    /// Lines that repeat an earlier good line byte for byte.
    pub duplicates: u64,
    /// Lines that must be rejected, each for one reason of contract section 2.
    pub bad: u64,
}

impl fmt::Display for GenerateStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} lines: {} events, {} duplicates, {} bad lines",
            self.lines, self.events, self.duplicates, self.bad
        )
    }
}

/// Writes the ledger as JSONL (one event per line) to `out`, ordered by `occurred_at` except
/// for about 1 % of events that arrive up to four hours late; deterministic for the same
/// args (unless `end` is `now`).
///
/// Writes through a buffer at full speed, or, with `args.rate > 0`, in bursts flushed about
/// 20 times a second. `args.output` is ignored: the caller chose `out`.
///
/// With `args.follow`, writes the history at full speed, then the live part at `args.rate`
/// until writing to `out` fails (a closed pipe, for example): it returns only with an error.
///
/// # Errors
///
/// An error of kind `InvalidInput` for an `end` that is neither RFC 3339 nor `now`, a share
/// outside `0..1` (or two shares adding up to 1 or more), a ledger outside the years
/// 1970-9998, or, with `follow`, no rate, no customers or events, an `end` after the wall
/// clock or a bad `swing_after`; otherwise the first error of `out`.
pub fn generate(args: &GenerateArgs, out: &mut dyn Write) -> io::Result<GenerateStats> {
    generate_with(args, out, |_| {}, &mut wall_clock_ms)
}

/// Returns the wall clock in Unix milliseconds, the stamp of a live event.
fn wall_clock_ms() -> i64 {
    let now = crate::clock::wall_clock();
    now.seconds * SECOND_MS + i64::from(now.nanos / 1_000_000)
}

/// `marginstream generate`: the ledger to `args.output`, or to standard output, where a
/// closed pipe (`| head`) ends the stream quietly.
///
/// # Errors
///
/// As [`generate`], and when the output file cannot be created.
pub fn run(args: &GenerateArgs) -> anyhow::Result<()> {
    let stats = match &args.output {
        Some(path) => {
            let mut file = BufWriter::new(
                File::create(path).with_context(|| format!("cannot create {}", path.display()))?,
            );
            let stats = generate(args, &mut file)?;
            file.flush()?;
            stats
        }
        None => {
            let stdout = io::stdout();
            let mut lock = stdout.lock();
            match generate(args, &mut lock) {
                // A closed pipe (`| head`) is a normal way to stop a stream.
                Err(error) if error.kind() == io::ErrorKind::BrokenPipe => return Ok(()),
                other => other?,
            }
        }
    };
    info!(
        lines = stats.lines,
        events = stats.events,
        duplicates = stats.duplicates,
        bad = stats.bad,
        "ledger generated"
    );
    Ok(())
}

/// [`generate`], calling `on_bad` with the intended reason of each bad line, in order, and
/// stamping the live events of `--follow` with `clock` (Unix milliseconds).
fn generate_with(
    args: &GenerateArgs,
    out: &mut dyn Write,
    on_bad: impl FnMut(BadReason),
    clock: &mut dyn FnMut() -> i64,
) -> io::Result<GenerateStats> {
    write_ledger(&Plan::from_args(args)?, out, on_bad, clock)
}

/// Writes the ledger of `plan`: the work of [`generate_with`].
fn write_ledger(
    plan: &Plan,
    out: &mut dyn Write,
    mut on_bad: impl FnMut(BadReason),
    clock: &mut dyn FnMut() -> i64,
) -> io::Result<GenerateStats> {
    let mut ledger = Ledger::new(plan);
    let mut noise = Noise::new(plan);
    // Following, the history is the past: nothing to wait for, only the live part is paced.
    let mut out = Output::new(out, if plan.follow { 0 } else { plan.rate });
    let mut stats = GenerateStats::default();
    let mut line = Vec::with_capacity(1024);
    let mut scratch = Vec::with_capacity(128);
    // Stream time: the arrival time of the latest good event, which dates the noise.
    let mut now_ms = plan.start_ms;
    let noisy = plan.duplicate_ppm + plan.bad_ppm > 0;
    // Once without --follow. With it, the history, then the live part, which never ends.
    loop {
        loop {
            if noisy {
                let draw = noise.rng.below(PER_MILLION);
                if draw < plan.duplicate_ppm {
                    // Without an earlier line close enough in time, the slot takes a good event.
                    if let Some(duplicate) = noise.pick_duplicate(now_ms) {
                        out.line(duplicate)?;
                        stats.lines += 1;
                        stats.duplicates += 1;
                        continue;
                    }
                } else if draw < plan.duplicate_ppm + plan.bad_ppm {
                    let reason = noise.bad_line(&ledger, now_ms, stats.lines, &mut line);
                    on_bad(reason);
                    out.line(&line)?;
                    stats.lines += 1;
                    stats.bad += 1;
                    continue;
                }
            }
            let Some(mut event) = ledger.next_event() else {
                break;
            };
            if ledger.is_live() {
                event = restamp(event, clock());
            }
            now_ms = event.arrival_ms;
            write_event(&ledger, &event, &mut line, &mut scratch);
            out.line(&line)?;
            stats.lines += 1;
            stats.events += 1;
            if plan.duplicate_ppm > 0 {
                noise.remember(&event, &line, stats.events);
            }
        }
        // A ledger long enough gets at least one oversized line even with a tiny --bad-share.
        if plan.bad_ppm > 0 && stats.lines >= OVERSIZED_LINES_MIN && noise.oversized_lines == 0 {
            noise.write_bad(&ledger, now_ms, BadReason::Oversized, &mut line);
            on_bad(BadReason::Oversized);
            out.line(&line)?;
            stats.lines += 1;
            stats.bad += 1;
        }
        if !plan.follow || ledger.is_live() {
            break;
        }
        ledger.go_live(plan);
        // Live lines repeat live lines only: which history lines are recent enough to repeat
        // would depend on when the live part starts.
        noise.forget();
        out.pace(plan.rate);
    }
    out.finish()?;
    debug_assert_eq!(stats.lines, stats.events + stats.duplicates + stats.bad);
    Ok(stats)
}

// ---------------------------------------------------------------------------------------------
// Constants of the ledger's shape.

/// Amounts are integers in ten-thousandths of a dollar, the finest scale printed.
const UNITS_PER_DOLLAR: i64 = 10_000;
/// One cent in amount units: amounts printed with two decimals are multiples of it.
const UNITS_PER_CENT: i64 = 100;
const SECOND_MS: i64 = 1_000;
const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 86_400_000;
/// Denominator of every probability given in parts per million.
const PER_MILLION: u64 = 1_000_000;

/// Share of events that arrive late, in parts per million (1 %).
const LATE_PPM: u64 = 10_000;
/// The earliest and latest arrival delay of a late event.
const LATE_MIN_MS: i64 = 60 * SECOND_MS;
const LATE_MAX_MS: i64 = 4 * HOUR_MS;

/// A new customer's Implementation and Onboarding costs are concentrated in this many days.
const RAMP_DAYS: i64 = 30;
/// Customers are capped so that the profiles fit in memory; far above any benchmark.
const CUSTOMERS_MAX: u32 = 10_000_000;
/// Events per customer per day are capped for the same reason.
const EVENTS_PER_CUSTOMER_DAY_MAX: f64 = 100_000.0;
/// Unattributed shared costs are about this fraction (1/50) of the customer events.
const SHARED_EVENTS_DIVISOR: u64 = 50;
/// At least this many shared costs a day, so that a tiny ledger still has some.
const SHARED_EVENTS_PER_DAY_MIN: u64 = 6;

/// Customers with a special role, by index. Each exists only if `--customers` exceeds it.
const QUOTE_CUSTOMER: u32 = 1;
const BACKSLASH_CUSTOMER: u32 = 2;
/// The customer whose refunds take its revenue below zero in every window containing the
/// refund day (about 60 % into the ledger): the refunds are worth 45 days of revenue.
pub const REFUND_CUSTOMER: u32 = 3;
const UNICODE_CUSTOMER: u32 = 4;
/// An Enterprise customer that starts a third into the ledger, with its implementation ramp.
const NEW_CUSTOMER: u32 = 5;
/// A customer whose cloud credits end mid-ledger, so that its GM-M drops with no business
/// change.
const CREDIT_CUSTOMER: u32 = 6;
// The customer whose margin swings in the live part of --follow: [`SWING_CUSTOMER`].
/// Customer ids that need escaping in JSON and in Prometheus label values, or are not ASCII.
pub const SPECIAL_IDS: [(u32, &str); 3] = [
    (QUOTE_CUSTOMER, "acme \"beta\""),
    (BACKSLASH_CUSTOMER, "north\\east"),
    (UNICODE_CUSTOMER, "müller-gmbh"),
];
/// Days of revenue that the refund customer refunds on its refund day.
const REFUND_DAYS_OF_REVENUE: i64 = 45;
/// The refund is split into this many events.
const REFUND_EVENTS: i64 = 3;

/// UTC offsets (minutes) of the producers that do not write `Z`, including `+00:00` and the
/// quarter-hour ones.
const OFFSETS_MINUTES: [i16; 10] = [120, -300, 330, 540, -180, 60, -420, 0, 345, -570];

/// Duplicates repeat an original whose `occurred_at` is at most this old at the time of the
/// repeat: well inside the dedup horizon of the contract (the longest window plus a bucket).
const DUPLICATE_HORIZON_MS: i64 = 23 * HOUR_MS;
/// Good lines kept for near duplicates.
const RECENT_LINES: usize = 512;
/// Near duplicates repeat one of this many latest good lines.
const RECENT_PICK: usize = 400;
/// One good line in this many is also kept for far duplicates, up to [`SAMPLED_LINES_MAX`].
const SAMPLE_EVERY: u64 = 37;
const SAMPLED_LINES_MAX: usize = 4096;

/// At most one bad line in this many is oversized (after the first).
const OVERSIZED_EVERY: u64 = 2_000;
/// A ledger of at least this many lines with bad lines has at least one oversized line.
const OVERSIZED_LINES_MIN: u64 = 2_000;
/// The padding of an oversized line, beyond the default `ledger.max_event_bytes` (65536).
const OVERSIZED_PADDING_BYTES: usize = 70_000;
