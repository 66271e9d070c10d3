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
//! Bad lines cover, evenly, every rejection reason that a file can produce with the default
//! configuration (all but `customer_limit`), each with its own `event_id` that no good event
//! uses, and each otherwise valid so that it is rejected for exactly its intended reason.

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use marginstream_model::{CostFunction, RevenueType};
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

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
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
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
/// # Errors
///
/// An error of kind `InvalidInput` for an `end` that is neither RFC 3339 nor `now`, a share
/// outside `0..1` (or two shares adding up to 1 or more), or a ledger outside the years
/// 1970-9998; otherwise the first error of `out`.
pub fn generate(args: &GenerateArgs, out: &mut dyn Write) -> io::Result<GenerateStats> {
    generate_with(args, out, |_| {})
}

/// [`generate`], calling `on_bad` with the intended reason of each bad line, in order.
fn generate_with(
    args: &GenerateArgs,
    out: &mut dyn Write,
    mut on_bad: impl FnMut(BadReason),
) -> io::Result<GenerateStats> {
    let plan = Plan::from_args(args)?;
    let mut ledger = Ledger::new(&plan);
    let mut noise = Noise::new(&plan);
    let mut out = Output::new(out, plan.rate);
    let mut stats = GenerateStats::default();
    let mut line = Vec::with_capacity(1024);
    let mut scratch = Vec::with_capacity(128);
    // Stream time: the arrival time of the latest good event, which dates the noise.
    let mut now_ms = plan.start_ms;
    let noisy = plan.duplicate_ppm + plan.bad_ppm > 0;
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
        let Some(event) = ledger.next_event() else {
            break;
        };
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

// ---------------------------------------------------------------------------------------------
// Random numbers.

/// The increment of SplitMix64: 2^64 divided by the golden ratio.
const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// Returns the SplitMix64 finalizer of `z` (Steele, Lea and Flood, 2014): a bijective mix of
/// 64 bits.
const fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Streams of random numbers, the second word of every key.
const STREAM_PROFILE: u64 = 1;
const STREAM_CUSTOMER_DAY: u64 = 2;
const STREAM_SHARED_DAY: u64 = 3;
const STREAM_NOISE: u64 = 4;

/// xoshiro256** 1.0 (Blackman and Vigna, 2018, public domain): 256 bits of state, period
/// 2^256 - 1, passes BigCrush. Written out here because `rand`'s `StdRng` may change between
/// versions, and the ledger must not.
#[derive(Debug, Clone)]
struct Rng {
    state: [u64; 4],
}

impl Rng {
    /// Creates the stream of `key`: the key is hashed with the SplitMix64 finalizer, and the
    /// state is the next four outputs of SplitMix64 from that hash, as the authors recommend.
    fn new(key: &[u64]) -> Rng {
        // "marginst" in ASCII: any constant works, this one is recognisable.
        let mut seed: u64 = 0x6D61_7267_696E_7374;
        for word in key {
            seed = mix64(seed.wrapping_add(GOLDEN_GAMMA) ^ word);
        }
        let mut state = [0; 4];
        for slot in &mut state {
            seed = seed.wrapping_add(GOLDEN_GAMMA);
            *slot = mix64(seed);
        }
        Rng { state }
    }

    fn next_u64(&mut self) -> u64 {
        let s = &mut self.state;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Returns a number in `0..n` (Lemire's multiply-shift; the bias, below n/2^64, is
    /// irrelevant here). `n` must not be zero.
    fn below(&mut self, n: u64) -> u64 {
        debug_assert!(n > 0, "below(0) has no value to return");
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Returns a number in `low..high`; `low < high`.
    fn range(&mut self, low: i64, high: i64) -> i64 {
        debug_assert!(low < high, "empty range {low}..{high}");
        low + self.below(high.abs_diff(low)) as i64
    }

    /// Returns true with probability `per_mille / 1000`.
    fn per_mille(&mut self, per_mille: u64) -> bool {
        self.below(1_000) < per_mille
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }
}

// ---------------------------------------------------------------------------------------------
// Options.

/// The validated options.
#[derive(Debug, Clone)]
struct Plan {
    seed: u64,
    customers: u32,
    days: i64,
    /// The first millisecond of the ledger, Unix time.
    start_ms: i64,
    /// Mean events per customer per day, in thousandths.
    events_per_customer_day_milli: u64,
    duplicate_ppm: u64,
    bad_ppm: u64,
    rate: u64,
}

fn invalid_input(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}

/// Converts a share given in `0..1` to parts per million.
fn share_ppm(flag: &str, share: f64) -> io::Result<u64> {
    if !(0.0..1.0).contains(&share) {
        return Err(invalid_input(format!(
            "{flag} must be at least 0 and below 1, got {share}"
        )));
    }
    // The only float arithmetic of the generator: a validated input, rounded once.
    Ok((share * PER_MILLION as f64).round() as u64)
}

impl Plan {
    fn from_args(args: &GenerateArgs) -> io::Result<Plan> {
        let end = if args.end.trim() == "now" {
            let now = OffsetDateTime::now_utc();
            now.replace_nanosecond(0)
                .expect("zero nanoseconds is always a valid component")
        } else {
            OffsetDateTime::parse(args.end.trim(), &Rfc3339).map_err(|error| {
                invalid_input(format!(
                    "--end must be an RFC 3339 timestamp such as 2026-01-01T00:00:00Z, or \"now\"; \
                     got {:?}: {error}",
                    args.end
                ))
            })?
        };
        if end.year() > 9998 {
            return Err(invalid_input(format!(
                "--end {} is after the year 9998",
                args.end
            )));
        }
        let end_ms = (end.unix_timestamp_nanos().div_euclid(1_000_000)) as i64;
        let days = i64::from(args.days);
        let start_ms = end_ms - days * DAY_MS;
        if start_ms < 0 {
            return Err(invalid_input(format!(
                "--days {} before --end {} starts before 1970",
                args.days, args.end
            )));
        }
        if args.customers > CUSTOMERS_MAX {
            return Err(invalid_input(format!(
                "--customers must be at most {CUSTOMERS_MAX}, got {}",
                args.customers
            )));
        }
        let per_day = args.events_per_customer_day;
        if !(0.0..=EVENTS_PER_CUSTOMER_DAY_MAX).contains(&per_day) {
            return Err(invalid_input(format!(
                "--events-per-customer-day must be between 0 and {EVENTS_PER_CUSTOMER_DAY_MAX}, \
                 got {per_day}"
            )));
        }
        let duplicate_ppm = share_ppm("--duplicate-share", args.duplicate_share)?;
        let bad_ppm = share_ppm("--bad-share", args.bad_share)?;
        if duplicate_ppm + bad_ppm >= PER_MILLION {
            return Err(invalid_input(format!(
                "--duplicate-share plus --bad-share must be below 1, got {} + {}",
                args.duplicate_share, args.bad_share
            )));
        }
        Ok(Plan {
            seed: args.seed,
            customers: args.customers,
            days,
            start_ms,
            events_per_customer_day_milli: (per_day * 1_000.0).round() as u64,
            duplicate_ppm,
            bad_ppm,
            rate: args.rate,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// The business: customers and kinds of events.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tier {
    Smb,
    MidMarket,
    Enterprise,
}

/// What an event is, which decides its fields and the daily total it draws from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Recurring,
    Usage,
    Services,
    OneTime,
    Refund,
    Infrastructure,
    CloudCredit,
    Support,
    SuccessEngineering,
    Implementation,
    Onboarding,
    Excluded,
}

const KIND_COUNT: usize = 12;
const KINDS: [Kind; KIND_COUNT] = [
    Kind::Recurring,
    Kind::Usage,
    Kind::Services,
    Kind::OneTime,
    Kind::Refund,
    Kind::Infrastructure,
    Kind::CloudCredit,
    Kind::Support,
    Kind::SuccessEngineering,
    Kind::Implementation,
    Kind::Onboarding,
    Kind::Excluded,
];

/// Per mille of a customer's events of each kind, in the order of [`KINDS`]: a third revenue,
/// two thirds costs, most of them infrastructure.
const STEADY_WEIGHTS: [u64; KIND_COUNT] = [200, 110, 30, 10, 5, 405, 40, 80, 45, 25, 20, 30];
/// The same during a new customer's first [`RAMP_DAYS`]: more Implementation and Onboarding.
const RAMP_WEIGHTS: [u64; KIND_COUNT] = [200, 110, 30, 10, 5, 310, 40, 80, 45, 80, 60, 30];

const fn sum(weights: &[u64; KIND_COUNT]) -> u64 {
    let mut total = 0;
    let mut i = 0;
    while i < KIND_COUNT {
        total += weights[i];
        i += 1;
    }
    total
}
const _: () = assert!(sum(&STEADY_WEIGHTS) == 1_000 && sum(&RAMP_WEIGHTS) == 1_000);

/// Returns the kind whose cumulative weight first exceeds `roll`, which is below the sum of
/// the weights (less that of `Recurring` when `skip_recurring`).
fn pick_kind(weights: &[u64; KIND_COUNT], roll: u64, skip_recurring: bool) -> Kind {
    let mut cumulative = 0;
    for (kind, weight) in KINDS.iter().zip(weights) {
        if skip_recurring && *kind == Kind::Recurring {
            continue;
        }
        cumulative += weight;
        if roll < cumulative {
            return *kind;
        }
    }
    unreachable!("the roll is below the sum of the weights")
}

/// The categories of each function: first those of the default taxonomy (contract section 3),
/// repeated to weigh them, then vendor-specific names that only work with an explicit
/// `cost_function`.
struct Categories {
    function: CostFunction,
    taxonomy: &'static [&'static str],
    vendor: &'static [&'static str],
}

const INFRASTRUCTURE: Categories = Categories {
    function: CostFunction::Infrastructure,
    taxonomy: &[
        "hosting",
        "hosting",
        "hosting",
        "cloud",
        "cloud",
        "third_party_api",
        "third_party_api",
        "payment_processing",
        "payment_processing",
        "delivery_software",
        "infrastructure",
    ],
    vendor: &[
        "aws_ec2",
        "gcp_bigquery",
        "stripe_fees",
        "twilio_sms",
        "datadog",
    ],
};
const SUPPORT: Categories = Categories {
    function: CostFunction::Support,
    taxonomy: &["support", "customer_support"],
    vendor: &["zendesk", "support_payroll"],
};
const SUCCESS_ENGINEERING: Categories = Categories {
    function: CostFunction::SuccessEngineering,
    taxonomy: &["customer_success", "success_engineering"],
    vendor: &["csm_payroll", "gainsight"],
};
const IMPLEMENTATION: Categories = Categories {
    function: CostFunction::Implementation,
    taxonomy: &["implementation", "professional_services"],
    vendor: &["solutions_engineering", "contractor_sow"],
};
const ONBOARDING: Categories = Categories {
    function: CostFunction::Onboarding,
    taxonomy: &["onboarding", "training"],
    vendor: &["onboarding_specialists", "lms_licences"],
};
const EXCLUDED: Categories = Categories {
    function: CostFunction::Excluded,
    taxonomy: &[
        "r_and_d",
        "sales_and_marketing",
        "g_and_a",
        "stock_based_compensation",
    ],
    vendor: &[
        "rd_payroll",
        "marketing_events",
        "office_rent",
        "rsu_expense",
    ],
};
const SHARED_INFRASTRUCTURE: Categories = Categories {
    function: CostFunction::Infrastructure,
    taxonomy: &["hosting", "cloud", "delivery_software"],
    vendor: &["shared_k8s_cluster", "cdn"],
};

/// How a category is capitalised on the wire; tagging is case-insensitive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Case {
    Lower,
    Capitalized,
    Upper,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Category {
    name: &'static str,
    case: Case,
}

/// One customer's profile, fixed for the whole ledger.
#[derive(Debug, Clone)]
struct Customer {
    /// The id as a JSON string literal, quotes and escapes included.
    id_json: String,
    /// The first day of activity, an index into the ledger's days; negative for customers
    /// who started before the ledger.
    start_day: i64,
    /// Mean events per day, in thousandths.
    events_per_day_milli: u64,
    /// The producer's UTC offset, for customers whose timestamps are not in `Z`.
    offset_minutes: Option<i16>,
    /// Steady daily total of each kind, in amount units, as a magnitude (refunds and credits
    /// are negated when generated).
    daily: [i64; KIND_COUNT],
    /// Daily Implementation and Onboarding added during the first [`RAMP_DAYS`].
    ramp_implementation: i64,
    ramp_onboarding: i64,
    /// Cloud credits apply before this day.
    credit_end_day: i64,
    refund_day: Option<i64>,
    /// Steady daily revenue, net of routine refunds.
    revenue_daily: i64,
}

/// Returns `low + (high - low) * roll / scale`.
fn lerp(low: i64, high: i64, roll: u64, scale: u64) -> i64 {
    low + ((i128::from(high - low) * i128::from(roll)) / i128::from(scale)) as i64
}

/// Returns `amount * basis_points / 10_000`.
fn basis_points(amount: i64, basis_points: i64) -> i64 {
    (i128::from(amount) * i128::from(basis_points) / 10_000) as i64
}

/// Writes `text` as a JSON string literal.
fn write_json_string(buf: &mut Vec<u8>, text: &str) {
    buf.push(b'"');
    for ch in text.chars() {
        match ch {
            '"' => buf.extend_from_slice(b"\\\""),
            '\\' => buf.extend_from_slice(b"\\\\"),
            '\n' => buf.extend_from_slice(b"\\n"),
            '\r' => buf.extend_from_slice(b"\\r"),
            '\t' => buf.extend_from_slice(b"\\t"),
            c if c.is_control() && (c as u32) < 0x100 => {
                // Control characters other than the named ones, DEL included.
                let code = c as u32;
                let hex = b"0123456789abcdef";
                buf.extend_from_slice(b"\\u00");
                buf.push(hex[(code >> 4) as usize]);
                buf.push(hex[(code & 0xF) as usize]);
            }
            c => {
                let mut utf8 = [0; 4];
                buf.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
            }
        }
    }
    buf.push(b'"');
}

fn json_string(text: &str) -> String {
    let mut buf = Vec::with_capacity(text.len() + 2);
    write_json_string(&mut buf, text);
    String::from_utf8(buf).expect("escaping keeps UTF-8 text UTF-8")
}

fn customer_profile(seed: u64, index: u32, days: i64, events_per_day_milli: u64) -> Customer {
    let mut rng = Rng::new(&[seed, STREAM_PROFILE, u64::from(index)]);
    // Every roll is drawn whatever the tier, so that special roles do not shift the others.
    let mut tier = match rng.below(100) {
        0..=59 => Tier::Smb,
        60..=89 => Tier::MidMarket,
        _ => Tier::Enterprise,
    };
    // A product of two uniform rolls leans to the low end of the tier, as ACVs do.
    let acv_roll = rng.below(1_001) * rng.below(1_001);
    let usage_roll = rng.below(1_001);
    let infrastructure_heavy = rng.per_mille(100);
    let infrastructure_roll = rng.below(1_001);
    let support_roll = rng.below(1_001);
    let success_roll = rng.below(1_001);
    let implementation_roll = rng.below(1_001);
    let onboarding_roll = rng.below(1_001);
    let excluded_roll = rng.below(1_001);
    let new_customer = rng.per_mille(150);
    let start_roll = rng.next_u64();
    let mut credits = rng.per_mille(150);
    let credit_roll = rng.below(1_001);
    let credit_end_roll = rng.next_u64();
    let offset_minutes = if rng.per_mille(200) {
        Some(rng.pick(&OFFSETS_MINUTES))
    } else {
        None
    };

    let days_positive = days.max(1) as u64;
    let mut start_day = if new_customer {
        (start_roll % days_positive) as i64
    } else {
        -31 - (start_roll % 970) as i64
    };
    let mut refund_day = None;
    let mut id = format!("cust-{index:05}");
    match index {
        QUOTE_CUSTOMER => tier = Tier::Enterprise,
        BACKSLASH_CUSTOMER => tier = Tier::Smb,
        REFUND_CUSTOMER => {
            tier = Tier::MidMarket;
            start_day = -365;
            refund_day = Some(days * 3 / 5);
        }
        NEW_CUSTOMER => {
            tier = Tier::Enterprise;
            start_day = days / 3;
        }
        CREDIT_CUSTOMER => {
            credits = true;
            start_day = -365;
        }
        _ => {}
    }
    if let Some((_, special)) = SPECIAL_IDS.iter().find(|(i, _)| *i == index) {
        id = (*special).to_owned();
    }

    let (acv_low, acv_high) = match tier {
        Tier::Smb => (1_000, 10_000),
        Tier::MidMarket => (10_000, 50_000),
        Tier::Enterprise => (50_000, 500_000),
    };
    let acv = lerp(acv_low, acv_high, acv_roll, 1_000_000) * UNITS_PER_DOLLAR;
    let recurring = acv / 365;
    let (usage_low, usage_high) = match tier {
        Tier::Smb => (0, 2_000),
        Tier::MidMarket => (0, 4_000),
        Tier::Enterprise => (1_000, 6_000),
    };
    let usage = basis_points(recurring, lerp(usage_low, usage_high, usage_roll, 1_000));
    let services_bp = match tier {
        Tier::Smb => 100,
        Tier::MidMarket => 300,
        Tier::Enterprise => 800,
    };
    let services = basis_points(recurring, services_bp);
    let one_time = basis_points(recurring, 200);
    let refund = basis_points(recurring, 100);
    let revenue = recurring + usage + services + one_time - refund;

    // GM-M between 59 % and 88 % for most, 35-58 % for the infrastructure-heavy tenth.
    let infrastructure_bp = if infrastructure_heavy {
        lerp(4_200, 6_500, infrastructure_roll, 1_000)
    } else {
        lerp(1_200, 4_100, infrastructure_roll, 1_000)
    };
    let infrastructure = basis_points(revenue, infrastructure_bp);
    let credit = if credits {
        basis_points(infrastructure, lerp(3_000, 6_000, credit_roll, 1_000))
    } else {
        0
    };
    // Larger accounts cost less support per dollar but more success engineering.
    let (support_low, support_high, success_low, success_high) = match tier {
        Tier::Smb => (400, 1_000, 0, 150),
        Tier::MidMarket => (200, 600, 150, 450),
        Tier::Enterprise => (150, 400, 300, 700),
    };
    let support = basis_points(
        revenue,
        lerp(support_low, support_high, support_roll, 1_000),
    );
    let success = basis_points(
        revenue,
        lerp(success_low, success_high, success_roll, 1_000),
    );
    let implementation = basis_points(revenue, lerp(20, 200, implementation_roll, 1_000));
    let onboarding = basis_points(revenue, lerp(20, 100, onboarding_roll, 1_000));
    let excluded = basis_points(revenue, lerp(800, 2_500, excluded_roll, 1_000));
    // Implementation in the first month: 1.5 % to 6 % of the ACV, so that a new Enterprise
    // account's first month shows a deep but believable Services Drag.
    let ramp_implementation_bp = match tier {
        Tier::Smb => 150,
        Tier::MidMarket => 400,
        Tier::Enterprise => 600,
    };
    let credit_end_day = if credits {
        let low = days / 4;
        let high = (days * 3 / 4).max(low) + 1;
        low + (credit_end_roll % (high - low) as u64) as i64
    } else {
        i64::MIN
    };
    // Larger accounts have more events. The mean over the tiers, 1.065, makes up for the
    // customers who start during the ledger, so that the ledger has about
    // customers x days x events-per-customer-day events, shared costs included.
    let activity_per_mille = match tier {
        Tier::Smb => 800,
        Tier::MidMarket => 1_250,
        Tier::Enterprise => 2_100,
    };
    Customer {
        id_json: json_string(&id),
        start_day,
        events_per_day_milli: events_per_day_milli * activity_per_mille / 1_000,
        offset_minutes,
        daily: [
            recurring,
            usage,
            services,
            one_time,
            refund,
            infrastructure,
            credit,
            support,
            success,
            implementation,
            onboarding,
            excluded,
        ],
        ramp_implementation: basis_points(acv, ramp_implementation_bp) / RAMP_DAYS,
        ramp_onboarding: basis_points(acv, 100) / RAMP_DAYS,
        credit_end_day,
        refund_day,
        revenue_daily: revenue,
    }
}

// ---------------------------------------------------------------------------------------------
// Events.

/// Flags of an [`Event`].
const AMOUNT_AS_NUMBER: u8 = 1;
const NULL_CUSTOMER: u8 = 1 << 1;
const OMIT_REVENUE_TYPE: u8 = 1 << 2;
const EXTRA_SOURCE: u8 = 1 << 3;
const EXTRA_META: u8 = 1 << 4;
/// The event id is that of a bad line, `evt-<seed>-b<n>`, never a good event's.
const BAD_ID: u8 = 1 << 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Body {
    Revenue(RevenueType),
    Cost {
        function: Option<CostFunction>,
        category: Option<Category>,
    },
}

/// One event before formatting.
#[derive(Debug, Clone, Copy)]
struct Event {
    /// When the event reaches the ledger: `occurred_ms`, or later for a late event.
    arrival_ms: i64,
    /// The event's number, unique in the ledger: `evt-<seed>-<seq>`.
    seq: u64,
    occurred_ms: i64,
    /// Amount units, signed.
    amount: i64,
    /// Decimals printed: 2 or 4.
    scale: u8,
    /// Index into the customers; `None` for an unattributed cost.
    customer: Option<u32>,
    /// `None` prints `Z`.
    offset_minutes: Option<i16>,
    body: Body,
    flags: u8,
}

impl Event {
    fn is_revenue(&self) -> bool {
        matches!(self.body, Body::Revenue(_))
    }
}

/// Returns `amount` rounded half away from zero to a multiple of `step`, and never zero.
fn round_amount(amount: i64, step: i64) -> i64 {
    let rounded = ((amount.abs() + step / 2) / step * step).max(step);
    if amount < 0 {
        -rounded
    } else {
        rounded
    }
}

/// Returns the tags of a cost: half the time an explicit `cost_function` (with no category, a
/// taxonomy category or a vendor category), otherwise only a taxonomy category, one time in
/// five not in lower case.
fn tag(rng: &mut Rng, categories: &Categories) -> Body {
    if rng.per_mille(500) {
        let category = match rng.below(4) {
            0 | 1 => None,
            2 => Some(rng.pick(categories.taxonomy)),
            _ => Some(rng.pick(categories.vendor)),
        };
        Body::Cost {
            function: Some(categories.function),
            category: category.map(|name| Category {
                name,
                case: Case::Lower,
            }),
        }
    } else {
        let name = rng.pick(categories.taxonomy);
        let case = match rng.below(10) {
            0 => Case::Capitalized,
            1 => Case::Upper,
            _ => Case::Lower,
        };
        Body::Cost {
            function: None,
            category: Some(Category { name, case }),
        }
    }
}

/// Draws the time, offset, fields and tags of one event of `kind` worth `magnitude` units.
fn draw_event(
    rng: &mut Rng,
    seq: u64,
    day_start_ms: i64,
    customer: Option<(u32, &Customer)>,
    kind: Kind,
    magnitude: i64,
) -> Event {
    let mut occurred_ms = day_start_ms + rng.below(86_400) as i64 * SECOND_MS;
    if rng.per_mille(30) {
        occurred_ms += rng.below(1_000) as i64;
    }
    let arrival_ms = if rng.below(PER_MILLION) < LATE_PPM {
        occurred_ms + rng.range(LATE_MIN_MS, LATE_MAX_MS + 1)
    } else {
        occurred_ms
    };
    let home_offset = customer.and_then(|(_, c)| c.offset_minutes);
    let offset_minutes = match home_offset {
        Some(offset) if rng.per_mille(750) => Some(offset),
        _ if rng.per_mille(20) => Some(rng.pick(&OFFSETS_MINUTES)),
        _ => None,
    };
    let mut flags = 0;
    if rng.per_mille(100) {
        flags |= AMOUNT_AS_NUMBER;
    }
    match rng.below(100) {
        0..=4 => flags |= EXTRA_SOURCE,
        5..=6 => flags |= EXTRA_META,
        _ => {}
    }
    let fine = rng.per_mille(500);
    let (body, scale, sign) = match kind {
        Kind::Recurring => {
            if rng.per_mille(180) {
                flags |= OMIT_REVENUE_TYPE;
            }
            (Body::Revenue(RevenueType::Recurring), 2, 1)
        }
        Kind::Usage => (
            Body::Revenue(RevenueType::Usage),
            if fine { 4 } else { 2 },
            1,
        ),
        Kind::Services => (Body::Revenue(RevenueType::Services), 2, 1),
        Kind::OneTime => (Body::Revenue(RevenueType::OneTime), 2, 1),
        Kind::Refund => {
            let revenue_type = if rng.per_mille(700) {
                RevenueType::Recurring
            } else {
                RevenueType::Usage
            };
            (Body::Revenue(revenue_type), 2, -1)
        }
        Kind::Infrastructure => {
            let categories = if customer.is_some() {
                &INFRASTRUCTURE
            } else {
                &SHARED_INFRASTRUCTURE
            };
            let scale = if rng.per_mille(330) { 4 } else { 2 };
            (tag(rng, categories), scale, 1)
        }
        Kind::CloudCredit => {
            // Credits always keep their category, so that they stay visible on their own.
            let function = rng.per_mille(500).then_some(CostFunction::Infrastructure);
            let case = if rng.per_mille(100) {
                Case::Capitalized
            } else {
                Case::Lower
            };
            let category = Some(Category {
                name: "cloud_credit",
                case,
            });
            (Body::Cost { function, category }, 2, -1)
        }
        Kind::Support => (tag(rng, &SUPPORT), 2, 1),
        Kind::SuccessEngineering => (tag(rng, &SUCCESS_ENGINEERING), 2, 1),
        Kind::Implementation => (tag(rng, &IMPLEMENTATION), 2, 1),
        Kind::Onboarding => (tag(rng, &ONBOARDING), 2, 1),
        Kind::Excluded => (tag(rng, &EXCLUDED), 2, 1),
    };
    if customer.is_none() && rng.per_mille(500) {
        flags |= NULL_CUSTOMER;
    }
    let step = if scale == 4 { 1 } else { UNITS_PER_CENT };
    Event {
        arrival_ms,
        seq,
        occurred_ms,
        amount: sign * round_amount(magnitude, step),
        scale,
        customer: customer.map(|(index, _)| index),
        offset_minutes,
        body,
        flags,
    }
}

/// Returns the amount of one event: the daily total divided by the expected number of events
/// of its kind per day, times a jitter in per mille around 1. The kind has `weight` out of
/// `total_weight`, among `events_per_day_milli` thousandths of events a day.
fn event_amount(
    daily: i64,
    weight: u64,
    total_weight: u64,
    events_per_day_milli: u64,
    jitter_per_mille: i64,
) -> i64 {
    let expected = i128::from(weight) * i128::from(events_per_day_milli.max(1));
    (i128::from(daily) * i128::from(total_weight) * i128::from(jitter_per_mille) / expected) as i64
}

/// The good events, generated a day at a time and handed out in order of arrival.
struct Ledger {
    seed: u64,
    days: i64,
    start_ms: i64,
    customers: Vec<Customer>,
    /// Daily revenue of the portfolio, the base of the shared costs.
    portfolio_revenue_daily: i64,
    shared_events_per_day: u64,
    /// The next day to generate.
    day: i64,
    next_seq: u64,
    /// Generated events not yet due: sorted by arrival after each day.
    pending: Vec<Event>,
    /// Events due, in order of arrival.
    ready: VecDeque<Event>,
}

impl Ledger {
    fn new(plan: &Plan) -> Ledger {
        let customers: Vec<Customer> = (0..plan.customers)
            .map(|index| {
                customer_profile(
                    plan.seed,
                    index,
                    plan.days,
                    plan.events_per_customer_day_milli,
                )
            })
            .collect();
        let portfolio_revenue_daily = customers.iter().map(|c| c.revenue_daily).sum();
        let customer_events_per_day: u64 = customers
            .iter()
            .map(|c| c.events_per_day_milli)
            .sum::<u64>()
            / 1_000;
        Ledger {
            seed: plan.seed,
            // No events per customer means no ledger at all, not one of shared costs only.
            days: if plan.events_per_customer_day_milli == 0 {
                0
            } else {
                plan.days
            },
            start_ms: plan.start_ms,
            customers,
            portfolio_revenue_daily,
            shared_events_per_day: (customer_events_per_day / SHARED_EVENTS_DIVISOR)
                .max(SHARED_EVENTS_PER_DAY_MIN),
            day: 0,
            next_seq: 0,
            pending: Vec::new(),
            ready: VecDeque::new(),
        }
    }

    /// Returns the next good event in order of arrival, or `None` at the end of the ledger.
    fn next_event(&mut self) -> Option<Event> {
        loop {
            if let Some(event) = self.ready.pop_front() {
                return Some(event);
            }
            if self.day < self.days {
                self.generate_day();
                let day_end_ms = self.start_ms + (self.day + 1) * DAY_MS;
                self.pending
                    .sort_unstable_by_key(|event| (event.arrival_ms, event.seq));
                let due = self.pending.partition_point(|e| e.arrival_ms < day_end_ms);
                self.ready.extend(self.pending.drain(..due));
                self.day += 1;
            } else if self.pending.is_empty() {
                return None;
            } else {
                // Late events of the last day still arrive, after the end of the ledger.
                self.ready.extend(self.pending.drain(..));
            }
        }
    }

    /// Appends the events of day `self.day` to `pending`.
    fn generate_day(&mut self) {
        let day = self.day;
        let day_start_ms = self.start_ms + day * DAY_MS;
        let Ledger {
            seed,
            customers,
            pending,
            next_seq,
            ..
        } = self;
        let mut next = || {
            *next_seq += 1;
            *next_seq
        };
        for (index, customer) in customers.iter().enumerate() {
            if day < customer.start_day {
                continue;
            }
            let index = index as u32;
            let mut rng = Rng::new(&[*seed, STREAM_CUSTOMER_DAY, u64::from(index), day as u64]);
            let ramp = day - customer.start_day < RAMP_DAYS;
            let weights = if ramp { &RAMP_WEIGHTS } else { &STEADY_WEIGHTS };
            let credits = day < customer.credit_end_day;
            // Busy and quiet days: between half and one and a half times the mean.
            let today_milli = customer.events_per_day_milli * rng.range(500, 1_501) as u64 / 1_000;
            let count = today_milli / 1_000 + u64::from(rng.below(1_000) < today_milli % 1_000);
            // A customer with two events a day or more recognises its subscription revenue
            // every day in one event in the first ten minutes (a nightly billing run), so that
            // every 24h window of whole hours has exactly one; the other events are drawn from
            // the other kinds. The busy-day factor is at least one half, so such a customer
            // always has at least one event.
            let daily_recurring = customer.events_per_day_milli >= 2_000;
            let (others_milli, others_weight) = if daily_recurring {
                (
                    customer.events_per_day_milli - 1_000,
                    1_000 - weights[Kind::Recurring as usize],
                )
            } else {
                (customer.events_per_day_milli, 1_000)
            };
            for i in 0..count {
                if daily_recurring && i == 0 {
                    let magnitude =
                        customer.daily[Kind::Recurring as usize] * rng.range(950, 1_051) / 1_000;
                    let mut event = draw_event(
                        &mut rng,
                        next(),
                        day_start_ms,
                        Some((index, customer)),
                        Kind::Recurring,
                        magnitude,
                    );
                    event.occurred_ms = day_start_ms + rng.below(600) as i64 * SECOND_MS;
                    event.arrival_ms = event.occurred_ms;
                    pending.push(event);
                    continue;
                }
                let mut kind = pick_kind(weights, rng.below(others_weight), daily_recurring);
                let mut weight = weights[kind as usize];
                if !credits && matches!(kind, Kind::CloudCredit | Kind::Infrastructure) {
                    // Without credits their share of events goes to infrastructure, whose
                    // expected daily total stays the same.
                    kind = Kind::Infrastructure;
                    weight = weights[Kind::Infrastructure as usize]
                        + weights[Kind::CloudCredit as usize];
                }
                let mut daily = customer.daily[kind as usize];
                if ramp {
                    daily += match kind {
                        Kind::Implementation => customer.ramp_implementation,
                        Kind::Onboarding => customer.ramp_onboarding,
                        _ => 0,
                    };
                }
                let jitter = rng.range(500, 1_501);
                let magnitude = event_amount(daily, weight, others_weight, others_milli, jitter);
                let event = draw_event(
                    &mut rng,
                    next(),
                    day_start_ms,
                    Some((index, customer)),
                    kind,
                    magnitude,
                );
                pending.push(event);
            }
            if customer.refund_day == Some(day) {
                let each = customer.revenue_daily * REFUND_DAYS_OF_REVENUE / REFUND_EVENTS;
                for _ in 0..REFUND_EVENTS {
                    let magnitude = each * rng.range(900, 1_101) / 1_000;
                    let mut event = draw_event(
                        &mut rng,
                        next(),
                        day_start_ms,
                        Some((index, customer)),
                        Kind::Refund,
                        magnitude,
                    );
                    // A credit note on the subscription, on time.
                    event.body = Body::Revenue(RevenueType::Recurring);
                    event.arrival_ms = event.occurred_ms;
                    pending.push(event);
                }
            }
        }
        if self.portfolio_revenue_daily > 0 {
            let mut rng = Rng::new(&[self.seed, STREAM_SHARED_DAY, day as u64]);
            let count = self.shared_events_per_day;
            for _ in 0..count {
                // Shared hosting 3 %, support tooling 1 % and overheads 25 % of revenue.
                let (kind, weight, total_bp) = match rng.below(10) {
                    0..=3 => (Kind::Infrastructure, 400, 300),
                    4 => (Kind::Support, 100, 100),
                    _ => (Kind::Excluded, 500, 2_500),
                };
                let daily = basis_points(self.portfolio_revenue_daily, total_bp);
                let jitter = rng.range(500, 1_501);
                let magnitude = event_amount(daily, weight, 1_000, count * 1_000, jitter);
                let seq = {
                    self.next_seq += 1;
                    self.next_seq
                };
                let event = draw_event(&mut rng, seq, day_start_ms, None, kind, magnitude);
                self.pending.push(event);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Formatting.

/// Writes the decimal digits of `n`.
fn write_u64(buf: &mut Vec<u8>, n: u64) {
    write_padded(buf, n, 1);
}

/// Writes `n` with leading zeros to at least `width` digits (at most 20).
fn write_padded(buf: &mut Vec<u8>, mut n: u64, width: usize) {
    let mut digits = [b'0'; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let start = at.min(digits.len().saturating_sub(width));
    buf.extend_from_slice(&digits[start..]);
}

/// Writes an amount of `units` ten-thousandths with `scale` (2 or 4) decimals, as a JSON
/// string or, with `as_number`, a JSON number.
fn write_amount(buf: &mut Vec<u8>, units: i64, scale: u8, as_number: bool) {
    debug_assert!(
        scale == 4 || units % UNITS_PER_CENT == 0,
        "{units} has more than 2 decimals"
    );
    if !as_number {
        buf.push(b'"');
    }
    if units < 0 {
        buf.push(b'-');
    }
    let magnitude = units.unsigned_abs();
    write_u64(buf, magnitude / UNITS_PER_DOLLAR as u64);
    buf.push(b'.');
    let fraction = magnitude % UNITS_PER_DOLLAR as u64;
    if scale == 4 {
        write_padded(buf, fraction, 4);
    } else {
        write_padded(buf, fraction / UNITS_PER_CENT as u64, 2);
    }
    if !as_number {
        buf.push(b'"');
    }
}

/// Writes `ms` (Unix milliseconds) as RFC 3339 without quotes: `2025-12-05T13:07:42Z`, with
/// milliseconds only when there are some, and in the local time of `offset_minutes` when given
/// (`2025-12-05T15:07:42+02:00` is the same instant).
///
/// # Panics
///
/// If the time is outside the years 1970-9999, which `Plan` rules out for every event.
fn write_timestamp(buf: &mut Vec<u8>, ms: i64, offset_minutes: Option<i16>) {
    let utc = OffsetDateTime::from_unix_timestamp(ms.div_euclid(SECOND_MS))
        .expect("event times lie within the years 1970-9999");
    let local = match offset_minutes {
        Some(minutes) => utc.to_offset(
            UtcOffset::from_whole_seconds(i32::from(minutes) * 60)
                .expect("offsets of the table are within a day"),
        ),
        None => utc,
    };
    let (year, month, day) = local.to_calendar_date();
    let (hour, minute, second) = local.to_hms();
    debug_assert!(
        (0..=9999).contains(&year),
        "year {year} has more than 4 digits"
    );
    write_padded(buf, year as u64, 4);
    buf.push(b'-');
    write_padded(buf, u64::from(month as u8), 2);
    buf.push(b'-');
    write_padded(buf, u64::from(day), 2);
    buf.push(b'T');
    write_padded(buf, u64::from(hour), 2);
    buf.push(b':');
    write_padded(buf, u64::from(minute), 2);
    buf.push(b':');
    write_padded(buf, u64::from(second), 2);
    let millis = ms.rem_euclid(SECOND_MS);
    if millis != 0 {
        buf.push(b'.');
        write_padded(buf, millis as u64, 3);
    }
    match offset_minutes {
        None => buf.push(b'Z'),
        Some(minutes) => {
            buf.push(if minutes < 0 { b'-' } else { b'+' });
            let minutes = u64::from(minutes.unsigned_abs());
            write_padded(buf, minutes / 60, 2);
            buf.push(b':');
            write_padded(buf, minutes % 60, 2);
        }
    }
}

fn write_category(buf: &mut Vec<u8>, category: Category) {
    buf.push(b'"');
    for (i, byte) in category.name.bytes().enumerate() {
        buf.push(match category.case {
            Case::Lower => byte,
            Case::Capitalized if i == 0 => byte.to_ascii_uppercase(),
            Case::Capitalized => byte,
            Case::Upper => byte.to_ascii_uppercase(),
        });
    }
    buf.push(b'"');
}

/// Calls `field(key, raw JSON value)` for each field of `event`, in the order of the
/// contract's table, then the unknown fields. `value` is scratch space.
///
/// This is the one definition of an event's JSON, used for good lines and, through
/// [`event_fields`], as the base of bad lines.
fn for_each_field(
    ledger: &Ledger,
    event: &Event,
    value: &mut Vec<u8>,
    mut field: impl FnMut(&'static str, &[u8]),
) {
    field(
        "event_type",
        if event.is_revenue() {
            b"\"Revenue_Event\""
        } else {
            b"\"Cost_Event\""
        },
    );
    value.clear();
    value.extend_from_slice(b"\"evt-");
    write_u64(value, ledger.seed);
    value.push(b'-');
    if event.flags & BAD_ID != 0 {
        value.push(b'b');
    }
    write_u64(value, event.seq);
    value.push(b'"');
    field("event_id", value);
    match event.customer {
        Some(index) => field(
            "customer_id",
            ledger.customers[index as usize].id_json.as_bytes(),
        ),
        None if event.flags & NULL_CUSTOMER != 0 => field("customer_id", b"null"),
        None => {}
    }
    value.clear();
    value.push(b'"');
    write_timestamp(value, event.occurred_ms, event.offset_minutes);
    value.push(b'"');
    field("occurred_at", value);
    value.clear();
    write_amount(
        value,
        event.amount,
        event.scale,
        event.flags & AMOUNT_AS_NUMBER != 0,
    );
    field("amount", value);
    field("currency", b"\"USD\"");
    match event.body {
        Body::Revenue(revenue_type) => {
            if event.flags & OMIT_REVENUE_TYPE == 0 {
                value.clear();
                value.push(b'"');
                value.extend_from_slice(revenue_type.as_str().as_bytes());
                value.push(b'"');
                field("revenue_type", value);
            }
        }
        Body::Cost { function, category } => {
            if let Some(function) = function {
                value.clear();
                value.push(b'"');
                value.extend_from_slice(function.as_str().as_bytes());
                value.push(b'"');
                field("cost_function", value);
            }
            if let Some(category) = category {
                value.clear();
                write_category(value, category);
                field("category", value);
            }
        }
    }
    // Unknown fields, which consumers must ignore.
    if event.flags & EXTRA_SOURCE != 0 {
        field(
            "source",
            if event.is_revenue() {
                b"\"billing\""
            } else {
                b"\"cost-export\""
            },
        );
    }
    if event.flags & EXTRA_META != 0 {
        field("meta", b"{\"region\":\"eu-west-1\",\"batch\":17}");
    }
}

/// Writes `event` as one JSON object, without the newline, replacing `line`.
fn write_event(ledger: &Ledger, event: &Event, line: &mut Vec<u8>, scratch: &mut Vec<u8>) {
    line.clear();
    line.push(b'{');
    for_each_field(ledger, event, scratch, |key, value| {
        if line.len() > 1 {
            line.push(b',');
        }
        line.push(b'"');
        line.extend_from_slice(key.as_bytes());
        line.extend_from_slice(b"\":");
        line.extend_from_slice(value);
    });
    line.push(b'}');
}

/// An event's fields as (key, raw JSON value), for bad lines to edit.
type Fields = Vec<(&'static str, String)>;

fn event_fields(ledger: &Ledger, event: &Event) -> Fields {
    let mut fields = Fields::new();
    let mut scratch = Vec::new();
    for_each_field(ledger, event, &mut scratch, |key, value| {
        let value = String::from_utf8(value.to_vec()).expect("every field is written as UTF-8");
        fields.push((key, value));
    });
    fields
}

/// Replaces the value of `key`, or appends the field.
fn set_field(fields: &mut Fields, key: &'static str, raw: String) {
    match fields.iter_mut().find(|(k, _)| *k == key) {
        Some(field) => field.1 = raw,
        None => fields.push((key, raw)),
    }
}

fn remove_field(fields: &mut Fields, key: &str) {
    fields.retain(|(k, _)| *k != key);
}

fn field_value<'a>(fields: &'a Fields, key: &str) -> &'a str {
    fields
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v.as_str())
        .expect("the base of a bad line has every required field")
}

fn write_fields(fields: &Fields, line: &mut Vec<u8>) {
    line.clear();
    line.push(b'{');
    for (i, (key, value)) in fields.iter().enumerate() {
        if i > 0 {
            line.push(b',');
        }
        line.push(b'"');
        line.extend_from_slice(key.as_bytes());
        line.extend_from_slice(b"\":");
        line.extend_from_slice(value.as_bytes());
    }
    line.push(b'}');
}

// ---------------------------------------------------------------------------------------------
// Noise: duplicates and bad lines.

/// The reason a bad line is meant to be rejected for (contract section 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum BadReason {
    MalformedJson,
    MissingField,
    InvalidField,
    UnknownEventType,
    UnknownCostFunction,
    UntaggedCost,
    UnsupportedCurrency,
    Oversized,
    FutureEvent,
}

impl BadReason {
    /// Returns the reason code of the contract.
    #[cfg(test)]
    const fn as_str(self) -> &'static str {
        match self {
            BadReason::MalformedJson => "malformed_json",
            BadReason::MissingField => "missing_field",
            BadReason::InvalidField => "invalid_field",
            BadReason::UnknownEventType => "unknown_event_type",
            BadReason::UnknownCostFunction => "unknown_cost_function",
            BadReason::UntaggedCost => "untagged_cost",
            BadReason::UnsupportedCurrency => "unsupported_currency",
            BadReason::Oversized => "oversized",
            BadReason::FutureEvent => "future_event",
        }
    }
}

/// The reasons taken in turn; `oversized` is kept rare and placed apart (see
/// [`Noise::oversized_due`]). `customer_limit` needs a million customers and is left out.
const ROTATION: [BadReason; 8] = [
    BadReason::MalformedJson,
    BadReason::MissingField,
    BadReason::InvalidField,
    BadReason::UnknownEventType,
    BadReason::UnknownCostFunction,
    BadReason::UntaggedCost,
    BadReason::UnsupportedCurrency,
    BadReason::FutureEvent,
];

/// A good line kept for duplicates.
struct Remembered {
    occurred_ms: i64,
    line: Vec<u8>,
}

struct Noise {
    rng: Rng,
    /// The latest good lines.
    recent: VecDeque<Remembered>,
    /// A sample of older good lines, dropped once past the duplicate horizon.
    sampled: VecDeque<Remembered>,
    bad_lines: u64,
    oversized_lines: u64,
    /// The next reason of [`ROTATION`].
    rotation: usize,
}

impl Noise {
    fn new(plan: &Plan) -> Noise {
        Noise {
            rng: Rng::new(&[plan.seed, STREAM_NOISE]),
            recent: VecDeque::with_capacity(RECENT_LINES),
            sampled: VecDeque::new(),
            bad_lines: 0,
            oversized_lines: 0,
            rotation: 0,
        }
    }

    /// Keeps a good line for later duplicates; `good_count` counts good lines so far.
    fn remember(&mut self, event: &Event, line: &[u8], good_count: u64) {
        let mut slot = if self.recent.len() == RECENT_LINES {
            self.recent
                .pop_front()
                .expect("a full buffer has a first line")
        } else {
            Remembered {
                occurred_ms: 0,
                line: Vec::with_capacity(line.len()),
            }
        };
        slot.occurred_ms = event.occurred_ms;
        slot.line.clear();
        slot.line.extend_from_slice(line);
        self.recent.push_back(slot);
        if good_count.is_multiple_of(SAMPLE_EVERY) {
            if self.sampled.len() == SAMPLED_LINES_MAX {
                self.sampled.pop_front();
            }
            self.sampled.push_back(Remembered {
                occurred_ms: event.occurred_ms,
                line: line.to_vec(),
            });
        }
    }

    /// Returns an earlier good line to repeat at stream time `now_ms`: mostly one of the
    /// latest few hundred, one time in five an older one, always of an event that occurred
    /// less than [`DUPLICATE_HORIZON_MS`] ago. `None` when there is none.
    fn pick_duplicate(&mut self, now_ms: i64) -> Option<&[u8]> {
        let horizon_ms = now_ms - DUPLICATE_HORIZON_MS;
        while self
            .sampled
            .front()
            .is_some_and(|old| old.occurred_ms < horizon_ms)
        {
            self.sampled.pop_front();
        }
        let far = self.rng.below(5) == 0 && !self.sampled.is_empty();
        let far_at = if far {
            let at = self.rng.below(self.sampled.len() as u64) as usize;
            (self.sampled[at].occurred_ms >= horizon_ms).then_some(at)
        } else {
            None
        };
        let original = match far_at {
            Some(at) => &self.sampled[at],
            None if self.recent.is_empty() => return None,
            None => {
                let window = self.recent.len().min(RECENT_PICK) as u64;
                let at = self.recent.len() - 1 - self.rng.below(window) as usize;
                &self.recent[at]
            }
        };
        (original.occurred_ms >= horizon_ms).then_some(original.line.as_slice())
    }

    /// Returns whether the next bad line should be oversized: the first once the ledger has
    /// [`OVERSIZED_LINES_MIN`] lines, then one per [`OVERSIZED_EVERY`] bad lines.
    fn oversized_due(&self, lines: u64) -> bool {
        if self.oversized_lines == 0 {
            lines >= OVERSIZED_LINES_MIN
        } else {
            self.bad_lines + 1 >= (self.oversized_lines + 1) * OVERSIZED_EVERY
        }
    }

    /// Writes the next bad line into `line` and returns its reason; `lines` counts the lines
    /// written so far.
    fn bad_line(
        &mut self,
        ledger: &Ledger,
        now_ms: i64,
        lines: u64,
        line: &mut Vec<u8>,
    ) -> BadReason {
        let reason = if self.oversized_due(lines) {
            BadReason::Oversized
        } else {
            let reason = ROTATION[self.rotation];
            self.rotation = (self.rotation + 1) % ROTATION.len();
            reason
        };
        self.write_bad(ledger, now_ms, reason, line);
        reason
    }

    /// Returns a valid event near stream time, with a bad-line id: the base that a bad line
    /// breaks in exactly one way.
    fn bad_base(&mut self, ledger: &Ledger, now_ms: i64, revenue: bool) -> Event {
        let rng = &mut self.rng;
        let customers = ledger.customers.len() as u64;
        // Without customers there is no revenue, and every base is an unattributed cost.
        let revenue = revenue && customers > 0;
        let customer = if customers > 0 && (revenue || rng.per_mille(700)) {
            Some(rng.below(customers) as u32)
        } else {
            None
        };
        let occurred_ms = (now_ms / SECOND_MS - rng.below(3_600) as i64) * SECOND_MS;
        let occurred_ms = occurred_ms.max(ledger.start_ms);
        let amount = rng.range(1, 100_000) * UNITS_PER_CENT;
        let body = if revenue {
            Body::Revenue(if rng.per_mille(500) {
                RevenueType::Recurring
            } else {
                RevenueType::Usage
            })
        } else {
            let categories = if rng.per_mille(500) {
                &INFRASTRUCTURE
            } else {
                &SUPPORT
            };
            tag(rng, categories)
        };
        Event {
            arrival_ms: occurred_ms,
            seq: self.bad_lines + 1,
            occurred_ms,
            amount,
            scale: 2,
            customer,
            offset_minutes: None,
            body,
            flags: BAD_ID,
        }
    }

    /// Writes one bad line for `reason` into `line`.
    fn write_bad(&mut self, ledger: &Ledger, now_ms: i64, reason: BadReason, line: &mut Vec<u8>) {
        let revenue_base = match reason {
            BadReason::UnknownCostFunction | BadReason::UntaggedCost => false,
            // Customer-id and revenue-type variants need a revenue event.
            BadReason::MissingField | BadReason::InvalidField => true,
            _ => self.rng.per_mille(500),
        };
        let event = self.bad_base(ledger, now_ms, revenue_base);
        self.bad_lines += 1;
        if reason == BadReason::Oversized {
            self.oversized_lines += 1;
        }
        let mut fields = event_fields(ledger, &event);
        let rng = &mut self.rng;
        match reason {
            BadReason::MalformedJson => {
                write_fields(&fields, line);
                let text = String::from_utf8(std::mem::take(line)).expect("fields are UTF-8");
                let id = field_value(&fields, "event_id");
                let malformed = match rng.below(8) {
                    0 | 1 => {
                        // Truncated, as by a producer that died mid-write.
                        let mut cut = 2 + rng.below(text.len() as u64 - 3) as usize;
                        while !text.is_char_boundary(cut) {
                            cut -= 1;
                        }
                        text[..cut].to_owned()
                    }
                    2 => format!("[{text}]"),
                    3 => format!("{},}}", &text[..text.len() - 1]),
                    4 => text.replacen("\",\"event_id\"", "\" \"event_id\"", 1),
                    5 => format!(
                        "{{'event_type': 'Cost_Event', 'event_id': '{}'}}",
                        id.trim_matches('"')
                    ),
                    6 => format!(
                        "Revenue_Event,{},2025-12-05T13:07:42Z,12.50,USD",
                        id.trim_matches('"')
                    ),
                    _ => "INFO billing-exporter: flushed 12 events".to_owned(),
                };
                line.clear();
                line.extend_from_slice(malformed.as_bytes());
                return;
            }
            BadReason::MissingField => {
                let (mut key, null) = match rng.below(9) {
                    0 => ("event_type", false),
                    1 => ("event_id", false),
                    2 => ("occurred_at", false),
                    3 => ("occurred_at", true),
                    4 => ("amount", false),
                    5 => ("amount", true),
                    6 => ("currency", false),
                    7 => ("customer_id", false),
                    _ => ("customer_id", true),
                };
                if key == "customer_id" && !event.is_revenue() {
                    // Only a ledger without customers has no revenue base; a cost may omit
                    // its customer.
                    key = "amount";
                }
                if null {
                    set_field(&mut fields, key, "null".to_owned());
                } else {
                    remove_field(&mut fields, key);
                }
            }
            BadReason::InvalidField => {
                let mut stamp = Vec::new();
                write_timestamp(&mut stamp, event.occurred_ms, None);
                let stamp = String::from_utf8(stamp).expect("timestamps are ASCII");
                let amount = field_value(&fields, "amount").trim_matches('"').to_owned();
                let mut variant = rng.below(14);
                if variant == 11 && !event.is_revenue() {
                    // A cost's revenue_type is ignored; break its currency instead.
                    variant = 8;
                }
                let (key, raw) = match variant {
                    0 => (
                        "occurred_at",
                        format!("\"{}\"", stamp.trim_end_matches('Z')),
                    ),
                    1 => (
                        "occurred_at",
                        format!("\"{}\"", stamp.replacen('T', " ", 1).trim_end_matches('Z')),
                    ),
                    2 => (
                        "occurred_at",
                        format!("\"{}-13{}\"", &stamp[..4], &stamp[7..]),
                    ),
                    3 => ("occurred_at", (event.occurred_ms / SECOND_MS).to_string()),
                    4 => ("amount", format!("\"{}\"", amount.replace('.', ","))),
                    5 => ("amount", format!("\"${amount}\"")),
                    6 => ("amount", format!("\"{amount} USD\"")),
                    7 => ("amount", "true".to_owned()),
                    8 => (
                        "currency",
                        rng.pick(&["\"usd\"", "\"US$\"", "\"Dollar\"", "840"])
                            .to_owned(),
                    ),
                    9 => {
                        let id = format!(
                            "cust-{:05}{}",
                            rng.below(100),
                            rng.pick(&['\u{7}', '\t', '\u{1b}'])
                        );
                        ("customer_id", json_string(&id))
                    }
                    10 => ("customer_id", "\"\"".to_owned()),
                    11 => (
                        "revenue_type",
                        rng.pick(&[
                            "\"gift\"",
                            "\"subscription\"",
                            "\"Recurring\"",
                            "\"one-time\"",
                        ])
                        .to_owned(),
                    ),
                    12 => {
                        let id = field_value(&fields, "event_id").trim_matches('"');
                        ("event_id", format!("\"{id}-{}\"", "x".repeat(130)))
                    }
                    _ => ("customer_id", format!("\"{}\"", "c".repeat(129))),
                };
                set_field(&mut fields, key, raw);
            }
            BadReason::UnknownEventType => {
                let raw = rng.pick(&[
                    "\"Refund_Event\"",
                    "\"revenue_event\"",
                    "\"Invoice_Event\"",
                    "\"Cost\"",
                    "\"\"",
                    "7",
                ]);
                set_field(&mut fields, "event_type", raw.to_owned());
            }
            BadReason::UnknownCostFunction => {
                let raw = rng.pick(&[
                    "\"Marketing\"",
                    "\"COGS\"",
                    "\"Hosting\"",
                    "\"Customer_Success\"",
                    "\"Infra\"",
                ]);
                set_field(&mut fields, "cost_function", raw.to_owned());
            }
            BadReason::UntaggedCost => {
                remove_field(&mut fields, "cost_function");
                match rng.below(5) {
                    0 => remove_field(&mut fields, "category"),
                    1 => set_field(&mut fields, "category", "\"office_snacks\"".to_owned()),
                    2 => set_field(&mut fields, "category", "\"Misc_Expense\"".to_owned()),
                    _ => set_field(&mut fields, "category", "\"mystery_spend\"".to_owned()),
                }
            }
            BadReason::UnsupportedCurrency => {
                let raw = if rng.per_mille(667) {
                    "\"JPY\""
                } else {
                    "\"GBP\""
                };
                set_field(&mut fields, "currency", raw.to_owned());
            }
            BadReason::FutureEvent => {
                let time = OffsetDateTime::from_unix_timestamp(event.occurred_ms / SECOND_MS)
                    .expect("bad lines lie within the ledger's years");
                // 29 February does not exist in 2999.
                let time = time
                    .replace_year(2999)
                    .or_else(|_| time.replace_day(28).and_then(|t| t.replace_year(2999)))
                    .expect("every day but 29 February exists in 2999");
                let mut stamp = vec![b'"'];
                write_timestamp(&mut stamp, time.unix_timestamp() * SECOND_MS, None);
                stamp.push(b'"');
                let stamp = String::from_utf8(stamp).expect("timestamps are ASCII");
                set_field(&mut fields, "occurred_at", stamp);
            }
            BadReason::Oversized => {
                // Otherwise valid: only its size is wrong.
                set_field(
                    &mut fields,
                    "padding",
                    format!("\"{}\"", "x".repeat(OVERSIZED_PADDING_BYTES)),
                );
            }
        }
        write_fields(&fields, line);
    }
}

// ---------------------------------------------------------------------------------------------
// Output.

/// The buffered output and, with a rate, its pacing.
struct Output<'a> {
    writer: BufWriter<&'a mut dyn Write>,
    /// Lines per second; 0 for no limit.
    rate: u64,
    /// Lines between flushes: about 20 bursts a second.
    burst: u64,
    started: Instant,
    lines: u64,
}

impl<'a> Output<'a> {
    fn new(out: &'a mut dyn Write, rate: u64) -> Output<'a> {
        Output {
            writer: BufWriter::with_capacity(256 * 1024, out),
            rate,
            burst: (rate / 20).max(1),
            started: Instant::now(),
            lines: 0,
        }
    }

    fn line(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.writer.write_all(bytes)?;
        self.writer.write_all(b"\n")?;
        if self.rate > 0 {
            self.lines += 1;
            if self.lines.is_multiple_of(self.burst) {
                // Flush the burst so that a consumer sees it now, then wait until the lines so
                // far are due: the schedule is absolute, so the rate does not drift.
                self.writer.flush()?;
                let due = Duration::from_nanos(
                    (u128::from(self.lines) * 1_000_000_000 / u128::from(self.rate)) as u64,
                );
                let elapsed = self.started.elapsed();
                if due > elapsed {
                    std::thread::sleep(due - elapsed);
                }
            }
        }
        Ok(())
    }

    fn finish(mut self) -> io::Result<()> {
        self.writer.flush()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap, HashSet};

    use serde_json::Value;

    use super::*;

    fn args(customers: u32, days: u32) -> GenerateArgs {
        GenerateArgs {
            customers,
            days,
            seed: 1,
            events_per_customer_day: 5.0,
            end: "2026-01-01T00:00:00Z".to_owned(),
            duplicate_share: 0.0,
            bad_share: 0.0,
            rate: 0,
            output: None,
        }
    }

    /// Runs the generator into memory, with the intended reason of each bad line.
    fn ledger(args: &GenerateArgs) -> (GenerateStats, String, Vec<BadReason>) {
        let mut bytes = Vec::new();
        let mut reasons = Vec::new();
        let stats = generate_with(args, &mut bytes, |reason| reasons.push(reason))
            .expect("valid options and an in-memory output cannot fail");
        let text = String::from_utf8(bytes).expect("every line is UTF-8");
        assert!(text.ends_with('\n') || text.is_empty());
        assert_eq!(text.lines().count() as u64, stats.lines);
        (stats, text, reasons)
    }

    const FUNCTIONS: [&str; 6] = [
        "Infrastructure",
        "Support",
        "Success_Engineering",
        "Implementation",
        "Onboarding",
        "Excluded",
    ];

    /// The default tagging rules of contract section 3.
    fn taxonomy(category: &str) -> Option<&'static str> {
        Some(match category.to_ascii_lowercase().as_str() {
            "hosting" | "cloud" | "infrastructure" | "third_party_api" | "payment_processing"
            | "delivery_software" | "cloud_credit" => "Infrastructure",
            "support" | "customer_support" => "Support",
            "customer_success" | "success_engineering" => "Success_Engineering",
            "implementation" | "professional_services" => "Implementation",
            "onboarding" | "training" => "Onboarding",
            "r_and_d" | "sales_and_marketing" | "g_and_a" | "stock_based_compensation" => {
                "Excluded"
            }
            _ => return None,
        })
    }

    fn is_decimal(text: &str) -> bool {
        let digits = text.strip_prefix('-').unwrap_or(text);
        let (whole, fraction) = digits.split_once('.').unwrap_or((digits, "1"));
        !whole.is_empty()
            && !fraction.is_empty()
            && whole.bytes().all(|b| b.is_ascii_digit())
            && fraction.bytes().all(|b| b.is_ascii_digit())
    }

    /// Returns the rejection reason of a line under the default configuration, read straight
    /// from the contract (sections 1-3) and independent of the generator; `None` for a line
    /// that must be applied.
    fn classify(line: &str) -> Option<&'static str> {
        if line.len() > 65_536 {
            return Some("oversized");
        }
        let Ok(Value::Object(map)) = serde_json::from_str::<Value>(line) else {
            return Some("malformed_json");
        };
        let present = |key: &str| map.get(key).is_some_and(|v| !v.is_null());
        let text = |key: &str| map.get(key).and_then(Value::as_str);
        let revenue = match map.get("event_type") {
            None | Some(Value::Null) => return Some("missing_field"),
            Some(Value::String(t)) if t == "Revenue_Event" => true,
            Some(Value::String(t)) if t == "Cost_Event" => false,
            Some(_) => return Some("unknown_event_type"),
        };
        let mut required = vec!["event_id", "occurred_at", "amount", "currency"];
        if revenue {
            required.push("customer_id");
        }
        if !required.iter().all(|key| present(key)) {
            return Some("missing_field");
        }
        let id_ok = |id: Option<&str>, controls: bool| {
            id.is_some_and(|id| {
                (1..=128).contains(&id.len()) && (controls || !id.chars().any(char::is_control))
            })
        };
        let occurred = text("occurred_at").and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok());
        let amount_ok = match &map["amount"] {
            Value::String(amount) => is_decimal(amount),
            Value::Number(_) => true,
            _ => false,
        };
        let currency =
            text("currency").filter(|c| c.len() == 3 && c.bytes().all(|b| b.is_ascii_uppercase()));
        let revenue_type_ok = !revenue
            || !present("revenue_type")
            || matches!(
                text("revenue_type"),
                Some("recurring" | "usage" | "services" | "one_time")
            );
        if !id_ok(text("event_id"), true)
            || (present("customer_id") && !id_ok(text("customer_id"), false))
            || occurred.is_none()
            || !amount_ok
            || currency.is_none()
            || !revenue_type_ok
        {
            return Some("invalid_field");
        }
        if !revenue
            && present("cost_function")
            && !text("cost_function").is_some_and(|f| FUNCTIONS.contains(&f))
        {
            return Some("unknown_cost_function");
        }
        if currency != Some("USD") {
            return Some("unsupported_currency");
        }
        if !revenue && !present("cost_function") && text("category").and_then(taxonomy).is_none() {
            return Some("untagged_cost");
        }
        if occurred.is_some_and(|t| t.year() >= 2100) {
            return Some("future_event");
        }
        None
    }

    /// Parses a decimal amount exactly, in ten-thousandths.
    fn units(amount: &Value) -> i128 {
        let text = match amount {
            Value::String(text) => text.clone(),
            other => other.to_string(),
        };
        let (whole, fraction) = text.split_once('.').expect("amounts have decimals");
        let negative = whole.starts_with('-');
        let fraction = format!("{fraction:0<4}");
        let magnitude = whole.trim_start_matches('-').parse::<i128>().unwrap() * 10_000
            + fraction.parse::<i128>().unwrap();
        if negative {
            -magnitude
        } else {
            magnitude
        }
    }

    fn instant(event: &Value) -> OffsetDateTime {
        OffsetDateTime::parse(event["occurred_at"].as_str().unwrap(), &Rfc3339).unwrap()
    }

    /// Shows that the same options give the same bytes, and another seed other bytes.
    #[test]
    fn same_args_give_identical_bytes() {
        let mut noisy = args(25, 4);
        noisy.duplicate_share = 0.05;
        noisy.bad_share = 0.05;
        let (first_stats, first, _) = ledger(&noisy);
        let (second_stats, second, _) = ledger(&noisy);
        assert_eq!(first_stats, second_stats);
        assert!(first == second, "two runs with the same options differ");
        assert!(first_stats.events > 400, "{first_stats}");
        noisy.seed = 2;
        let (_, other, _) = ledger(&noisy);
        assert_ne!(first, other);
    }

    /// FNV-1a of the ledger of `output_is_stable`.
    const GOLDEN_HASH: u64 = 0xb0c6_8c1c_69b8_208c;

    /// Shows that the output is stable across versions: this hash changes only with a
    /// deliberate change of the generator, which changes every ledger made before.
    #[test]
    fn output_is_stable() {
        let mut noisy = args(12, 3);
        noisy.duplicate_share = 0.02;
        noisy.bad_share = 0.02;
        let (_, text, _) = ledger(&noisy);
        // FNV-1a, 64 bits.
        let hash = text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
        });
        assert_eq!(hash, GOLDEN_HASH, "the ledger changed: {hash:#x}");
    }

    /// Shows the reference output of xoshiro256** for the state [1, 2, 3, 4].
    #[test]
    fn prng_matches_the_reference() {
        let mut rng = Rng {
            state: [1, 2, 3, 4],
        };
        let outputs: Vec<u64> = (0..4).map(|_| rng.next_u64()).collect();
        assert_eq!(
            outputs,
            [11_520, 0, 1_509_978_240, 1_215_971_899_390_074_240]
        );
    }

    /// Shows that every good line is a JSON object with the contract's required fields, of
    /// their forms, that event ids are unique, that lines are in order of `occurred_at` but
    /// for about 1 % up to four hours late, and that the ledger exercises the optional forms.
    #[test]
    fn good_lines_follow_the_contract() {
        let (stats, text, _) = ledger(&args(40, 10));
        assert_eq!(stats.lines, stats.events);
        let start = OffsetDateTime::parse("2025-12-22T00:00:00Z", &Rfc3339).unwrap();
        let end = OffsetDateTime::parse("2026-01-01T00:00:00Z", &Rfc3339).unwrap();
        let mut ids = HashSet::new();
        let mut customers = HashSet::new();
        let mut latest = start;
        let (mut late, mut numbers, mut offsets, mut revenue_types, mut revenues) = (0, 0, 0, 0, 0);
        let (mut functions, mut costs, mut unattributed, mut null_customer) = (0, 0, 0, 0);
        let (mut mixed_case, mut credits, mut refunds, mut unknown_fields) = (0, 0, 0, 0);
        for line in text.lines() {
            assert_eq!(classify(line), None, "{line}");
            let event: Value = serde_json::from_str(line).unwrap();
            for key in [
                "event_type",
                "event_id",
                "occurred_at",
                "amount",
                "currency",
            ] {
                assert!(!event[key].is_null(), "{key} missing: {line}");
            }
            assert_eq!(event["currency"], "USD");
            assert!(
                ids.insert(event["event_id"].as_str().unwrap().to_owned()),
                "{line}"
            );
            let occurred = instant(&event);
            assert!(start <= occurred && occurred < end, "{line}");
            if occurred < latest {
                late += 1;
                assert!(latest - occurred <= time::Duration::hours(4), "{line}");
            }
            latest = latest.max(occurred);
            numbers += usize::from(event["amount"].is_number());
            offsets += usize::from(!event["occurred_at"].as_str().unwrap().ends_with('Z'));
            unknown_fields +=
                usize::from(event.get("source").is_some() || event.get("meta").is_some());
            let amount = units(&event["amount"]);
            if event["event_type"] == "Revenue_Event" {
                revenues += 1;
                revenue_types += usize::from(event.get("revenue_type").is_some());
                refunds += usize::from(amount < 0);
                customers.insert(event["customer_id"].as_str().unwrap().to_owned());
            } else {
                costs += 1;
                functions += usize::from(event.get("cost_function").is_some());
                match event.get("customer_id") {
                    None => unattributed += 1,
                    Some(Value::Null) => null_customer += 1,
                    Some(_) => {}
                }
                let category = event.get("category").and_then(Value::as_str).unwrap_or("");
                mixed_case += usize::from(category.bytes().any(|b| b.is_ascii_uppercase()));
                if category.eq_ignore_ascii_case("cloud_credit") {
                    credits += 1;
                    assert!(amount < 0, "credits are negative costs: {line}");
                }
            }
        }
        let lines = stats.lines as usize;
        assert!(lines > 1_500, "{stats}");
        assert!(
            (lines / 500..=lines * 3 / 100).contains(&late),
            "{late} late of {lines}"
        );
        assert!(
            (lines / 20..=lines * 3 / 20).contains(&numbers),
            "{numbers} numbers"
        );
        assert!(offsets > lines / 50, "{offsets} offsets");
        assert!(
            revenue_types * 10 >= revenues * 8,
            "{revenue_types} of {revenues}"
        );
        assert!(
            revenue_types < revenues,
            "some revenue events rely on the default"
        );
        assert!(
            (costs * 4 / 10..=costs * 6 / 10).contains(&functions),
            "{functions} of {costs}"
        );
        assert!(unattributed > 0 && null_customer > 0);
        assert!(
            mixed_case > 0 && unknown_fields > 0,
            "{mixed_case}, {unknown_fields}"
        );
        assert!(
            credits > 0 && refunds > 0,
            "{credits} credits, {refunds} refunds"
        );
        for (_, id) in SPECIAL_IDS {
            assert!(customers.contains(id), "{id} is in the ledger");
        }
        assert!(text.contains(r#""customer_id":"acme \"beta\"""#));
        assert!(text.contains(r#""customer_id":"north\\east""#));
    }

    /// Shows that margins look like SaaS (KBCM: median GM-M 72 %, most between 60 % and
    /// 85 %) with spread, that the Services Drag is positive, that a new customer's first
    /// month carries Implementation costs, and that the refund customer's revenue goes below
    /// zero on its refund day.
    #[test]
    fn margins_are_realistic() {
        let (_, text, _) = ledger(&args(200, 30));
        let mut revenue: BTreeMap<String, i128> = BTreeMap::new();
        let mut infrastructure: BTreeMap<String, i128> = BTreeMap::new();
        let mut services: BTreeMap<String, i128> = BTreeMap::new();
        let mut refund_customer_days: BTreeMap<u8, i128> = BTreeMap::new();
        let mut new_customer_implementation: BTreeMap<bool, i128> = BTreeMap::new();
        let new_customer_start = OffsetDateTime::parse("2025-12-12T00:00:00Z", &Rfc3339).unwrap();
        for line in text.lines() {
            let event: Value = serde_json::from_str(line).unwrap();
            let customer = event["customer_id"].as_str().unwrap_or("").to_owned();
            let amount = units(&event["amount"]);
            if event["event_type"] == "Revenue_Event" {
                *revenue.entry(customer.clone()).or_default() += amount;
                if customer == format!("cust-{REFUND_CUSTOMER:05}") {
                    let day = instant(&event).to_offset(UtcOffset::UTC).day();
                    *refund_customer_days.entry(day).or_default() += amount;
                }
                continue;
            }
            let function = match event["cost_function"].as_str() {
                Some(function) => function,
                None => taxonomy(event["category"].as_str().unwrap()).unwrap(),
            };
            match function {
                "Infrastructure" => *infrastructure.entry(customer.clone()).or_default() += amount,
                "Excluded" => {}
                _ => *services.entry(customer.clone()).or_default() += amount,
            }
            if function == "Implementation" && customer == format!("cust-{NEW_CUSTOMER:05}") {
                let first_month = instant(&event) < new_customer_start + time::Duration::days(30);
                *new_customer_implementation.entry(first_month).or_default() += amount;
            }
        }
        let mut market = Vec::new();
        let mut drags = Vec::new();
        for (customer, revenue) in revenue.iter().filter(|(_, r)| **r > 0) {
            let infrastructure = infrastructure.get(customer).copied().unwrap_or(0);
            let services = services.get(customer).copied().unwrap_or(0);
            market.push((revenue - infrastructure) * 1_000 / revenue);
            drags.push(services * 1_000 / revenue);
        }
        market.sort_unstable();
        drags.sort_unstable();
        let quantile = |values: &[i128], q: usize| values[(values.len() - 1) * q / 100];
        let median = quantile(&market, 50);
        assert!(
            (650..=800).contains(&median),
            "median GM-M {median} per mille"
        );
        assert!(
            quantile(&market, 10) < 600,
            "a low tail of infrastructure-heavy customers"
        );
        assert!(
            quantile(&market, 90) > 800,
            "a high tail of efficient customers"
        );
        assert!(
            quantile(&drags, 10) > 0,
            "services cost something for nearly everyone"
        );
        let drag = quantile(&drags, 50);
        assert!(
            (40..=250).contains(&drag),
            "median Services Drag {drag} per mille"
        );
        assert!(
            refund_customer_days.values().any(|revenue| *revenue < 0),
            "the refund customer's revenue goes below zero in a day: {refund_customer_days:?}"
        );
        assert!(refund_customer_days.values().filter(|r| **r > 0).count() >= 25);
        let first_month = new_customer_implementation.get(&true).copied().unwrap_or(0);
        assert!(
            first_month > 0,
            "the new customer is implemented in its first month"
        );
    }

    /// Shows that bad lines cover every reason a file can produce, evenly, each line rejected
    /// for exactly its intended reason by the contract's rules, with ids no good line uses.
    #[test]
    fn bad_lines_cover_every_reason() {
        let mut noisy = args(40, 10);
        noisy.bad_share = 0.3;
        let (stats, text, intended) = ledger(&noisy);
        assert!(stats.lines >= 2_000, "{stats}");
        let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
        let mut found = Vec::new();
        let mut good_ids = HashSet::new();
        let mut bad_ids = HashSet::new();
        for line in text.lines() {
            let id = serde_json::from_str::<Value>(line)
                .ok()
                .and_then(|event| event.get("event_id")?.as_str().map(str::to_owned));
            match classify(line) {
                Some(reason) => {
                    *counts.entry(reason).or_default() += 1;
                    found.push(reason);
                    if let Some(id) = id {
                        assert!(bad_ids.insert(id), "bad ids are unique: {line}");
                    }
                }
                None => {
                    good_ids.insert(id.expect("good lines have ids"));
                }
            }
        }
        let intended: Vec<&str> = intended.iter().map(|reason| reason.as_str()).collect();
        assert_eq!(
            found, intended,
            "each bad line is rejected for its intended reason"
        );
        assert_eq!(stats.bad, found.len() as u64);
        assert!(good_ids.is_disjoint(&bad_ids));
        let regular: Vec<u64> = ROTATION
            .iter()
            .map(|r| counts.get(r.as_str()).copied().unwrap_or(0))
            .collect();
        let (low, high) = (regular.iter().min().unwrap(), regular.iter().max().unwrap());
        assert!(*low > 0 && high - low <= 1, "evenly spread: {counts:?}");
        let oversized = counts.get("oversized").copied().unwrap_or(0);
        assert!(
            (1..=1 + stats.bad / OVERSIZED_EVERY).contains(&oversized),
            "{counts:?}"
        );
        let share = stats.bad as f64 / stats.lines as f64;
        assert!((0.27..0.33).contains(&share), "bad share {share}");
    }

    /// Shows that a small bad share still yields one oversized line in a ledger of 2000 lines
    /// or more, and none in a shorter one.
    #[test]
    fn oversized_lines_are_rare_but_present() {
        let mut noisy = args(40, 10);
        noisy.bad_share = 0.000_001;
        let (stats, text, reasons) = ledger(&noisy);
        assert!(stats.lines > 2_000);
        assert_eq!(reasons.last(), Some(&BadReason::Oversized));
        assert_eq!(text.lines().filter(|l| l.len() > 65_536).count(), 1);
        let mut short = args(3, 2);
        short.bad_share = 0.2;
        let (stats, text, _) = ledger(&short);
        assert!(stats.lines < 2_000 && stats.bad > 0);
        assert!(text.lines().all(|l| l.len() < 65_536));
    }

    /// Shows that the model's parser accepts every good line and rejects every bad line that
    /// it can judge alone with the same reason as the contract's rules.
    #[test]
    fn model_parser_agrees() {
        use marginstream_model::{parse_event, ParseLimits};
        let mut noisy = args(30, 10);
        noisy.bad_share = 0.3;
        noisy.duplicate_share = 0.05;
        let (_, text, _) = ledger(&noisy);
        let later = ["unsupported_currency", "untagged_cost", "future_event"];
        for line in text.lines() {
            let parsed = parse_event(line.as_bytes(), &ParseLimits::default());
            match classify(line) {
                Some(reason) if !later.contains(&reason) => {
                    let rejection = parsed.expect_err(line);
                    assert_eq!(rejection.reason.as_str(), reason, "{line}");
                }
                _ => assert!(parsed.is_ok(), "{line}: {:?}", parsed.err()),
            }
        }
    }

    /// Shows that duplicates repeat an earlier good line byte for byte, mostly soon after it
    /// and sometimes much later, always within 24 hours of the original's event time.
    #[test]
    fn duplicates_repeat_earlier_lines_exactly() {
        // Dense enough that a day holds more lines than the near duplicates reach back.
        let mut noisy = args(200, 3);
        noisy.duplicate_share = 0.1;
        let (stats, text, _) = ledger(&noisy);
        let mut first_seen: HashMap<&str, usize> = HashMap::new();
        let mut ids: HashMap<String, &str> = HashMap::new();
        let mut latest = OffsetDateTime::UNIX_EPOCH;
        let (mut repeats, mut near, mut far) = (0, 0, 0);
        for (number, line) in text.lines().enumerate() {
            let event: Value = serde_json::from_str(line).unwrap();
            let occurred = instant(&event);
            match first_seen.get(line) {
                Some(original) => {
                    repeats += 1;
                    if number - original <= RECENT_LINES {
                        near += 1;
                    } else {
                        far += 1;
                    }
                    assert!(latest - occurred < time::Duration::hours(24), "{line}");
                }
                None => {
                    first_seen.insert(line, number);
                    let id = event["event_id"].as_str().unwrap().to_owned();
                    let previous = ids.insert(id, line);
                    assert!(
                        previous.is_none(),
                        "a repeated id is always an exact repeat: {line}"
                    );
                }
            }
            latest = latest.max(occurred);
        }
        assert_eq!(repeats, stats.duplicates);
        assert!(near > far && far > 0, "{near} near, {far} far");
        let share = stats.duplicates as f64 / stats.lines as f64;
        assert!((0.08..0.12).contains(&share), "duplicate share {share}");
    }

    /// Shows that duplicates and bad lines are only inserted: without them, a noisy ledger
    /// is the clean ledger of the same seed, byte for byte.
    #[test]
    fn noise_only_inserts_lines() {
        let clean = args(30, 6);
        let mut noisy = clean.clone();
        noisy.duplicate_share = 0.1;
        noisy.bad_share = 0.1;
        let (clean_stats, clean_text, _) = ledger(&clean);
        let (noisy_stats, noisy_text, _) = ledger(&noisy);
        let mut seen = HashSet::new();
        let filtered: Vec<&str> = noisy_text
            .lines()
            .filter(|line| classify(line).is_none() && seen.insert(*line))
            .collect();
        assert_eq!(filtered, clean_text.lines().collect::<Vec<_>>());
        assert_eq!(noisy_stats.events, clean_stats.events);
        assert!(noisy_stats.duplicates > 0 && noisy_stats.bad > 0);
    }

    /// Shows that bad options are refused with InvalidInput and a message naming the option.
    #[test]
    fn rejects_invalid_options() {
        type Change = fn(&mut GenerateArgs);
        let cases: [(Change, &str); 8] = [
            (|a| a.end = "yesterday".to_owned(), "--end"),
            (|a| a.end = "2026-01-01T00:00:00".to_owned(), "--end"),
            (|a| a.duplicate_share = 1.5, "--duplicate-share"),
            (|a| a.bad_share = -0.1, "--bad-share"),
            (|a| a.bad_share = f64::NAN, "--bad-share"),
            (|a| (a.bad_share, a.duplicate_share) = (0.5, 0.5), "plus"),
            (|a| a.end = "1970-01-02T00:00:00Z".to_owned(), "1970"),
            (
                |a| a.events_per_customer_day = -1.0,
                "--events-per-customer-day",
            ),
        ];
        for (change, expected) in cases {
            let mut bad = args(2, 2);
            change(&mut bad);
            let error = generate(&bad, &mut Vec::new()).expect_err("invalid options");
            assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
            assert!(error.to_string().contains(expected), "{error}");
        }
    }

    /// Shows that `--end now` ends the ledger at the wall clock.
    #[test]
    fn end_now_uses_the_wall_clock() {
        let mut now = args(3, 1);
        now.end = "now".to_owned();
        let before = OffsetDateTime::now_utc();
        let (stats, text, _) = ledger(&now);
        assert!(stats.events > 0);
        for line in text.lines() {
            let event: Value = serde_json::from_str(line).unwrap();
            let occurred = instant(&event);
            assert!(occurred >= before - time::Duration::days(1) - time::Duration::seconds(1));
            assert!(
                occurred <= OffsetDateTime::now_utc() + time::Duration::hours(4),
                "{line}"
            );
        }
    }

    /// Shows that a rate spaces the lines out in time and does not change them.
    #[test]
    fn rate_paces_the_output() {
        let mut paced = args(2, 2);
        paced.rate = 200;
        let started = Instant::now();
        let (stats, text, _) = ledger(&paced);
        let elapsed = started.elapsed();
        let burst = paced.rate / 20;
        let minimum = Duration::from_secs_f64((stats.lines - burst) as f64 / paced.rate as f64);
        assert!(stats.lines > 2 * burst, "{stats}");
        assert!(elapsed >= minimum, "{} lines in {elapsed:?}", stats.lines);
        let (_, fast, _) = ledger(&args(2, 2));
        assert_eq!(text, fast);
    }

    /// Shows the formats of amounts and timestamps, including offsets and milliseconds.
    #[test]
    fn formats_amounts_and_timestamps() {
        let amount = |units, scale, number| {
            let mut buf = Vec::new();
            write_amount(&mut buf, units, scale, number);
            String::from_utf8(buf).unwrap()
        };
        assert_eq!(amount(12_345_600, 2, false), "\"1234.56\"");
        assert_eq!(amount(12_345_600, 2, true), "1234.56");
        assert_eq!(amount(-1_234_500, 2, false), "\"-123.45\"");
        assert_eq!(amount(5, 4, false), "\"0.0005\"");
        assert_eq!(amount(100, 2, true), "0.01");
        assert_eq!(round_amount(149, 100), 100);
        assert_eq!(round_amount(150, 100), 200);
        assert_eq!(round_amount(-150, 100), -200);
        assert_eq!(round_amount(3, 100), 100, "never zero");
        let stamp = |ms, offset| {
            let mut buf = Vec::new();
            write_timestamp(&mut buf, ms, offset);
            String::from_utf8(buf).unwrap()
        };
        let ms = 1_764_940_062_000;
        assert_eq!(stamp(ms, None), "2025-12-05T13:07:42Z");
        assert_eq!(stamp(ms, Some(120)), "2025-12-05T15:07:42+02:00");
        assert_eq!(stamp(ms + 7, Some(-570)), "2025-12-05T03:37:42.007-09:30");
        assert_eq!(stamp(ms, Some(0)), "2025-12-05T13:07:42+00:00");
        for offset in OFFSETS_MINUTES {
            let parsed = OffsetDateTime::parse(&stamp(ms + 250, Some(offset)), &Rfc3339).unwrap();
            assert_eq!(
                parsed.unix_timestamp_nanos(),
                i128::from(ms + 250) * 1_000_000
            );
        }
        assert_eq!(
            json_string("north\\east \"x\"\u{7}"),
            r#""north\\east \"x\"\u0007""#
        );
    }
}
