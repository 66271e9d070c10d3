//! `marginstream replay --config NEW --compare-config OLD` (contract section 11): the ledger
//! replayed under both configurations at once, so that finance sees what a change of
//! tagging rules or rates does to every figure before it is deployed.
//!
//! - [`check_agreement`]: the keys both configurations must share.
//! - [`compare`]: one read of the ledger into two engines, and where each event went under
//!   each ([`Moves`]).
//! - [`run`]: the command: compare, then print the report (`--format table|json`, rendered
//!   by `marginstream_exporter::compare`).
//!
//! # Design decisions
//!
//! **One read, one parse, two preparations.** The reader thread parses each line once with
//! NEW's limits (the configurations agree on them) and converts and tags the parsed event
//! under each configuration; the other thread applies each side to its own engine. Reading
//! and parsing, the costly part, are shared; tagging, conversion and the engine's work are
//! done twice. Measured on the 2M-event bench ledger in `docs/benchmarks.md`.
//!
//! **Counted under each configuration.** Each engine counts its own outcomes and
//! rejections, as a replay under that configuration would: a rule that tags a category
//! turns an `untagged_cost` rejection into an applied cost, and a repeat of that event
//! from a rejection into a duplicate. Lines refused before tagging (unparsable, oversized)
//! are refused under both. The rejected-events file gets NEW's rejections: what deploying
//! NEW would dead-letter.
//!
//! **The same watermark.** Both engines end at the later of their two watermarks (they
//! differ only when the latest event is applied under one configuration alone), so that
//! every window covers the same hours under both and a change is the rules' and rates'
//! alone. With `--since`/`--until`, a parsed event outside the range is skipped under both,
//! whatever its tagging.

use std::fmt;
use std::io::Write;
use std::time::Instant;

use anyhow::Context;
use marginstream_aggregator::{ClockMode, Engine, Prepared, Preparer};
use marginstream_consumer::LineBatch;
use marginstream_exporter::compare::{
    render_compare_json, render_compare_table, Destination, Moves,
};
use marginstream_exporter::ExporterError;
use marginstream_model::{Event, EventType, Outcome, Rejection, Timestamp};
use rust_decimal::Decimal;
use tracing::info;

use super::pipeline::{read_and_apply, Batch};
use super::progress::Reporter;
use super::rejected::RejectedWriter;
use super::source::{Opened, Source};
use super::{in_range, output, oversized, time_flag, Format, ReplayArgs, ReplaySummary};
use crate::clock::wall_clock;
use crate::config::{Config, ConfigError, ConfigProblem};

/// A command line that asks for something the comparison cannot do; `main` exits 2 on it.
#[derive(Debug)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// Returns a problem for every key on which OLD and NEW differ among those that decide
/// which events are applied and where they are windowed: the windows, the bucket, the clock
/// (as replay resolves it), the lifetime window, the reporting currency, and the limits
/// (`max_event_bytes`, which the shared parse uses, `max_customers`, `max_future_skew`,
/// `dedup_horizon`). A difference there would mix its own effect into the rules' and
/// rates'; the other keys (Kafka, metrics, segments, state) change no figure of the report.
pub fn check_agreement(old: &Config, new: &Config) -> Vec<ConfigProblem> {
    let (o, n) = (
        old.engine_for(ClockMode::Event),
        new.engine_for(ClockMode::Event),
    );
    let windows = |config: &marginstream_aggregator::EngineConfig| {
        let labels: Vec<&str> = config.windows.iter().map(|w| w.as_str()).collect();
        format!("{labels:?}")
    };
    let clock = |mode: ClockMode| match mode {
        ClockMode::Event => "\"event\"".to_owned(),
        ClockMode::Wall => "\"wall\"".to_owned(),
    };
    let horizon = |config: &marginstream_aggregator::EngineConfig| {
        config
            .dedup_horizon
            .as_ref()
            .map_or_else(|| "the default".to_owned(), |h| format!("{:?}", h.as_str()))
    };
    let pairs = [
        ("ledger.windows", windows(&o), windows(&n)),
        (
            "ledger.bucket",
            format!("{:?}", o.bucket.as_str()),
            format!("{:?}", n.bucket.as_str()),
        ),
        ("ledger.clock", clock(o.clock), clock(n.clock)),
        (
            "ledger.lifetime",
            o.lifetime.to_string(),
            n.lifetime.to_string(),
        ),
        (
            "ledger.reporting_currency",
            format!("{:?}", old.raw.ledger.reporting_currency),
            format!("{:?}", new.raw.ledger.reporting_currency),
        ),
        (
            "ledger.max_event_bytes",
            old.raw.ledger.max_event_bytes.to_string(),
            new.raw.ledger.max_event_bytes.to_string(),
        ),
        (
            "ledger.max_customers",
            o.max_customers.to_string(),
            n.max_customers.to_string(),
        ),
        (
            "ledger.max_future_skew",
            format!("{}s", o.max_future_skew_seconds),
            format!("{}s", n.max_future_skew_seconds),
        ),
        ("ledger.dedup_horizon", horizon(&o), horizon(&n)),
    ];
    pairs
        .into_iter()
        .filter(|(_, old, new)| old != new)
        .map(|(key, old, new)| ConfigProblem {
            key: key.to_owned(),
            message: format!(
                "{old} in OLD (--compare-config) but {new} in NEW (--config): a comparison \
                 of tagging rules and rates needs the same value in both"
            ),
        })
        .collect()
}

/// Returns a [`ConfigError`] naming every key OLD and NEW must share and do not.
fn agree(old: &Config, new: &Config, args: &ReplayArgs) -> anyhow::Result<()> {
    let problems = check_agreement(old, new);
    if problems.is_empty() {
        return Ok(());
    }
    let old_path = args
        .compare_config
        .as_ref()
        .map_or_else(String::new, |p| p.display().to_string());
    Err(ConfigError {
        source: format!("--compare-config {old_path} against --config"),
        problems,
    }
    .into())
}

/// One line as the reader prepared it.
// Nearly every line is `Parsed`: boxing it would cost an allocation per event to save
// space only on the rare refused line.
#[allow(clippy::large_enum_variant)]
enum PreparedLine {
    /// Refused before conversion and tagging (unparsable, invalid, oversized): the same
    /// rejection under both configurations.
    Refused(Rejection),
    /// Parsed, then converted and tagged under each configuration.
    Parsed {
        occurred_at: Timestamp,
        old: Side,
        new: Side,
    },
}

/// A parsed event prepared under one configuration.
struct Side {
    /// The event ready for the engine, or its rejection (currency or tagging).
    result: Result<Prepared, Rejection>,
    /// The amount in the reporting currency, when the currency has a rate: known even
    /// when the cost is untagged, so that a move out of `untagged_cost` has its amount.
    amount: Option<Decimal>,
}

impl Side {
    fn of(preparer: &Preparer, event: &Event) -> Side {
        let amount = preparer.convert(event);
        let result = amount.clone().and_then(|amount| {
            Ok(Prepared {
                event_type: event.event_type,
                key: event.key,
                customer_id: event.customer_id.clone(),
                occurred_at: event.occurred_at,
                line: preparer.line(event)?,
                amount,
            })
        });
        Side {
            result,
            amount: amount.ok(),
        }
    }

    /// Applies the side to `engine` at wall-clock time `now`: returns where the event went
    /// and, when it was rejected, the rejection.
    fn apply(self, engine: &mut Engine, now: Timestamp) -> (Destination, Option<Rejection>) {
        match self.result {
            Ok(prepared) => {
                let line = prepared.line;
                match engine.record(prepared, now) {
                    Ok(Outcome::Duplicate) => (Destination::Duplicate, None),
                    // A late event is applied to `all`: it went to its line.
                    Ok(Outcome::Applied | Outcome::Late) => (Destination::Line(line), None),
                    Err(rejection) => (Destination::Rejected(rejection.reason), Some(rejection)),
                }
            }
            Err(rejection) => {
                engine.count_rejection(rejection.reason);
                (Destination::Rejected(rejection.reason), Some(rejection))
            }
        }
    }
}

/// The ledger under both configurations.
pub struct Comparison {
    /// The engine under OLD, its watermark aligned with NEW's.
    pub old: Engine,
    /// The engine under NEW, its watermark aligned with OLD's.
    pub new: Engine,
    /// Where the events went under each.
    pub moves: Moves,
    /// What the replay did; the counters are NEW's.
    pub summary: ReplaySummary,
}

/// Replays the ledger of `args` under `old` and `new` at once, writing NEW's rejected lines
/// to `args.rejected_out`.
///
/// # Errors
///
/// A [`ConfigError`] naming every key the configurations must share and do not (see
/// [`check_agreement`]); a [`UsageError`] for `--openmetrics-out`, which has no meaning
/// here; otherwise what [`super::replay`] fails on.
pub fn compare(old: &Config, new: &Config, args: &ReplayArgs) -> anyhow::Result<Comparison> {
    agree(old, new, args)?;
    if args.openmetrics_out.is_some() {
        return Err(UsageError(
            "--openmetrics-out writes the history of one configuration: replay NEW alone for it"
                .to_owned(),
        )
        .into());
    }
    let mut old_engine = Engine::new(&old.engine_for(ClockMode::Event))
        .context("invalid engine configuration (OLD)")?;
    let mut new_engine = Engine::new(&new.engine_for(ClockMode::Event))
        .context("invalid engine configuration (NEW)")?;
    let since = time_flag("--since", args.since.as_deref())?;
    let until = time_flag("--until", args.until.as_deref())?;
    let (old_preparer, new_preparer) = (&old.preparer, &new.preparer);
    let max_event_bytes = new_preparer.limits().max_event_bytes;
    let Opened {
        source,
        total_bytes,
        files,
    } = Source::open(new, args)?;
    let mut rejected = RejectedWriter::create(&args.rejected_out, files)?;
    let mut reporter = Reporter::new(args.progress, total_bytes);
    let started = Instant::now();
    let mut skipped = 0u64;
    let mut moves = Moves::default();

    let prepare = |lines: &LineBatch, index: usize| match lines.lines[index].truncated_from {
        Some(length) => PreparedLine::Refused(oversized(length, max_event_bytes)),
        // The limits agree, so NEW's parse is OLD's too.
        None => match new_preparer.parse(lines.line(index)) {
            Err(rejection) => PreparedLine::Refused(rejection),
            Ok(event) => PreparedLine::Parsed {
                occurred_at: event.occurred_at,
                old: Side::of(old_preparer, &event),
                new: Side::of(new_preparer, &event),
            },
        },
    };
    let apply = |batch: &Batch<PreparedLine>, results: std::vec::Drain<'_, PreparedLine>| {
        let now = wall_clock();
        for (index, line) in results.enumerate() {
            match line {
                PreparedLine::Refused(rejection) => {
                    old_engine.count_rejection(rejection.reason);
                    new_engine.count_rejection(rejection.reason);
                    rejected.write_line(batch, index, &rejection)?;
                }
                PreparedLine::Parsed {
                    occurred_at,
                    old,
                    new,
                } => {
                    if !in_range(occurred_at, since, until) {
                        skipped += 1;
                        continue;
                    }
                    let (amount_old, amount_new) = (old.amount, new.amount);
                    let (went_old, _) = old.apply(&mut old_engine, now);
                    let (went_new, rejection) = new.apply(&mut new_engine, now);
                    moves.record(went_old, went_new, amount_old, amount_new);
                    if let Some(rejection) = rejection {
                        rejected.write_line(batch, index, &rejection)?;
                    }
                }
            }
        }
        anyhow::Ok(())
    };
    let (lines, bytes) = read_and_apply(source, &mut reporter, prepare, apply)?;
    reporter.finish();
    if skipped > 0 {
        info!(skipped, "events outside --since/--until skipped");
    }
    let written = rejected.finish()?;
    if let Some(watermark) = old_engine.watermark().max(new_engine.watermark()) {
        old_engine.advance_watermark(watermark);
        new_engine.advance_watermark(watermark);
    }
    let counters = *new_engine.counters();
    debug_assert_eq!(
        written,
        counters.rejected.iter().sum::<u64>(),
        "every rejection under NEW is written once"
    );
    Ok(Comparison {
        old: old_engine,
        new: new_engine,
        moves,
        summary: ReplaySummary {
            counters,
            lines,
            bytes,
            elapsed: started.elapsed(),
        },
    })
}

/// `marginstream replay --compare-config OLD`: compares, logs a summary, and writes the
/// report in `args.format` (default `table`).
///
/// # Errors
///
/// A [`UsageError`] for `--format prometheus`, which has no rendering of a comparison; then
/// what [`compare`] fails on, or writing the output.
pub fn run(old: &Config, new: &Config, args: &ReplayArgs) -> anyhow::Result<()> {
    let format = args.format.unwrap_or(Format::Table);
    if format == Format::Prometheus {
        return Err(UsageError(
            "--format prometheus cannot show a comparison (gauges have one value): use \
             --format table or --format json with --compare-config"
                .to_owned(),
        )
        .into());
    }
    agree(old, new, args)?;
    if let Some(window) = &args.window {
        // Known before reading: a typo must not cost a replay of the whole ledger.
        let labels = Engine::new(&new.engine_for(ClockMode::Event))
            .context("invalid engine configuration (NEW)")?
            .labels()
            .to_vec();
        if !labels.contains(window) {
            return Err(ExporterError::UnknownWindow {
                window: window.clone(),
                known: labels.join(", "),
            }
            .into());
        }
    }
    let Comparison {
        old: mut old_engine,
        new: mut new_engine,
        moves,
        summary,
    } = compare(old, new, args)?;
    let applied = |engine: &Engine| {
        EventType::ALL
            .iter()
            .map(|t| engine.counters().events(*t, Outcome::Applied))
            .sum::<u64>()
    };
    let rejected = |engine: &Engine| engine.counters().rejected.iter().sum::<u64>();
    info!(
        lines = summary.lines,
        bytes = summary.bytes,
        applied_old = applied(&old_engine),
        applied_new = applied(&new_engine),
        rejected_old = rejected(&old_engine),
        rejected_new = rejected(&new_engine),
        moved = moves.moved().map(|(_, _, m)| m.events).sum::<u64>(),
        repriced = moves.repriced().map(|(_, m)| m.events).sum::<u64>(),
        seconds = format!("{:.3}", summary.elapsed.as_secs_f64()),
        "comparison finished"
    );
    let (old_view, new_view) = (old_engine.view(), new_engine.view());
    let mut out = output(args.output.as_ref())?;
    match format {
        Format::Json => render_compare_json(&old_view, &new_view, &moves, &mut out)?,
        Format::Table => {
            let window = args.window.clone().unwrap_or_else(|| {
                use marginstream_model::GaugeView;
                new_view.window_labels().last().cloned().unwrap_or_default()
            });
            render_compare_table(&old_view, &new_view, &moves, &window, args.limit, &mut out)?;
        }
        Format::Prometheus => unreachable!("refused above"),
    }
    out.flush().context("cannot write the output")?;
    Ok(())
}
