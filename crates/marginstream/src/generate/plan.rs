//! Options: the command's arguments validated into a plan.

#[allow(clippy::wildcard_imports)]
use super::*;

/// The validated options.
#[derive(Debug, Clone)]
pub(super) struct Plan {
    pub(super) seed: u64,
    pub(super) customers: u32,
    pub(super) days: i64,
    /// The first millisecond of the ledger, Unix time.
    pub(super) start_ms: i64,
    /// Mean events per customer per day, in thousandths.
    pub(super) events_per_customer_day_milli: u64,
    pub(super) duplicate_ppm: u64,
    pub(super) bad_ppm: u64,
    pub(super) rate: u64,
    /// `--follow`: a live part after the history.
    pub(super) follow: bool,
    /// Live events before the swing: `--swing-after` at `--rate`.
    pub(super) swing_after_events: u64,
}

pub(super) fn invalid_input(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}

/// Converts a share given in `0..1` to parts per million.
pub(super) fn share_ppm(flag: &str, share: f64) -> io::Result<u64> {
    if !(0.0..1.0).contains(&share) {
        return Err(invalid_input(format!(
            "{flag} must be at least 0 and below 1, got {share}"
        )));
    }
    // The only float arithmetic of the generator: a validated input, rounded once.
    Ok((share * PER_MILLION as f64).round() as u64)
}

impl Plan {
    pub(super) fn from_args(args: &GenerateArgs) -> io::Result<Plan> {
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
        let swing_after_events = if args.follow {
            follow_checks(args, end_ms)?
        } else {
            0
        };
        Ok(Plan {
            seed: args.seed,
            customers: args.customers,
            days,
            start_ms,
            events_per_customer_day_milli: (per_day * 1_000.0).round() as u64,
            duplicate_ppm,
            bad_ppm,
            rate: args.rate,
            follow: args.follow,
            swing_after_events,
        })
    }
}

/// Checks the options that `--follow` needs; returns the number of live events before the
/// swing.
fn follow_checks(args: &GenerateArgs, end_ms: i64) -> io::Result<u64> {
    if args.rate == 0 {
        return Err(invalid_input(
            "--follow needs --rate above 0: the live part runs until killed".to_owned(),
        ));
    }
    if args.customers == 0 || args.events_per_customer_day < 1.0 {
        return Err(invalid_input(format!(
            "--follow needs --customers and --events-per-customer-day of at least 1, got {} \
             and {}",
            args.customers, args.events_per_customer_day
        )));
    }
    // The live part is stamped with the wall clock, after the history: a history ending in
    // the future would put events out of order, and some beyond what consumers accept.
    let now = OffsetDateTime::now_utc();
    if end_ms > (now.unix_timestamp_nanos() / 1_000_000) as i64 {
        return Err(invalid_input(format!(
            "--follow needs --end at or before the wall clock, got {}",
            args.end
        )));
    }
    let text = args.swing_after.as_deref().unwrap_or(SWING_AFTER_DEFAULT);
    let swing_after = DurationSpec::parse(text).map_err(|_| {
        invalid_input(format!(
            "--swing-after must be a duration such as 90s or 5m, got {text:?}"
        ))
    })?;
    Ok((swing_after.seconds() as u64).saturating_mul(args.rate))
}
