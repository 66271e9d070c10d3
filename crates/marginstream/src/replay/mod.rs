//! `marginstream replay`: the engine over a JSONL ledger (or the ledger topic read directly),
//! no consumer group needed.
//!
//! - [`replay`]: reads the ledger into a new engine and returns it with a summary; [`run`]
//!   is the command: replay, then print the final state in the chosen format.
//! - [`compare`]: `--compare-config OLD`, the ledger under two configurations at once and
//!   what changes between them.
//! - `source`: where the lines come from. `rejected`: the rejected-events file. `history`:
//!   the backfill history taken while the engine runs. `progress`: the progress bar.
//!   `pipeline`: the two threads below, shared by the replay and the comparison.
//!
//! Two threads: the reader cuts the input into batches of lines and prepares every line
//! (parse, validate, convert, tag: the costly part); the calling thread applies the prepared
//! events to the engine in input order and writes rejected lines. A bounded channel of
//! [`READ_AHEAD_BATCHES`] batches between them bounds memory.

pub mod compare;
mod history;
mod pipeline;
mod progress;
mod rejected;
mod source;

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use marginstream_aggregator::{ClockMode, Engine, Prepared};
use marginstream_consumer::LineBatch;
use marginstream_exporter::exposure;
use marginstream_exporter::json::render_json;
use marginstream_exporter::openmetrics::HistoryWriter;
use marginstream_exporter::prometheus::render_prometheus_with;
use marginstream_exporter::table::render_table;
use marginstream_exporter::RenderOptions;
use marginstream_model::{
    Counters, DurationSpec, EventType, GaugeView, Outcome, RejectReason, Rejection, Timestamp,
};
use tracing::info;

use crate::clock::wall_clock;
use crate::config::Config;
use history::History;
use pipeline::{read_and_apply, Batch};
use progress::Reporter;
use rejected::RejectedWriter;
use source::{Opened, Source};

/// Batches prepared ahead of the engine: bounds memory to about this many times the batch
/// size (1 MiB) plus the parsed events. Two are enough: once the reader parses faster than
/// the engine applies (issue 12), four only held more memory, 184 MB of peak RSS on the
/// bench ledger against 165 MB with two, for the same CPU (2.74 s and 2.78 s).
pub const READ_AHEAD_BATCHES: usize = 2;

/// Output formats of the final state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Prometheus text exposition of every metric of the contract.
    Prometheus,
    /// One JSON document with exact decimal strings.
    Json,
    /// A readable per-customer table for one window, sorted by GM-M.
    Table,
}

/// When to draw the progress bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Progress {
    /// A bar when stderr is a terminal, else a log line every 5 seconds.
    Auto,
    /// Always a bar.
    Always,
    /// Neither bar nor progress log lines.
    Never,
}

/// Arguments of `marginstream replay`.
#[derive(Debug, Clone, clap::Args)]
pub struct ReplayArgs {
    /// The JSONL ledger to replay, `-` for standard input; plain, gzip or zstd (told by its
    /// first bytes, not its name). Give it several times to read several files as one
    /// ledger, in the order given.
    #[arg(
        long,
        short,
        value_name = "PATH",
        required_unless_present = "from_kafka"
    )]
    pub input: Vec<PathBuf>,
    /// Read kafka.topic instead of a file: every partition from its beginning to its current
    /// end, directly (no consumer group, no offsets committed).
    #[arg(long, conflicts_with = "input")]
    pub from_kafka: bool,
    /// Only events with `occurred_at` at or after this RFC 3339 time (others are skipped,
    /// not counted; rejected messages, which have no valid time, are all reported).
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Only events with `occurred_at` before this RFC 3339 time.
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
    /// Where rejected lines go, one JSON object each with the reason, the error and the
    /// original line. Created (emptied) on every run.
    #[arg(
        long,
        value_name = "PATH",
        default_value = "marginstream-rejected.jsonl"
    )]
    pub rejected_out: PathBuf,
    /// Output format of the final state (default: prometheus; table with
    /// --compare-config, which refuses prometheus).
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// Compare: replay the ledger under this OLD configuration too, and print per customer
    /// and window the figures under both and the change (NEW - OLD), the portfolio's, the
    /// counters under each and the events that moved between functions. NEW is --config.
    /// Both must agree on the windows, bucket, clock, lifetime, reporting currency and
    /// limits; the environment and the flags override both alike.
    #[arg(long, value_name = "OLD", conflicts_with = "openmetrics_out")]
    pub compare_config: Option<PathBuf>,
    /// Write the output to this file instead of standard output.
    #[arg(long, short, value_name = "PATH")]
    pub output: Option<PathBuf>,
    /// The window of `--format table` (default: `all`, or the longest window without it).
    /// With --compare-config, the window whose changes are listed.
    #[arg(long, value_name = "WINDOW")]
    pub window: Option<String>,
    /// At most this many customers in `--format table` (with --compare-config: of those
    /// that changed).
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// Progress display on standard error.
    #[arg(long, value_enum, default_value_t = Progress::Auto)]
    pub progress: Progress,
    /// Also write the history of every gauge at each --step of event time to PATH, as
    /// OpenMetrics with timestamps, for `promtool tsdb create-blocks-from openmetrics`.
    #[arg(long, value_name = "PATH", requires = "step")]
    pub openmetrics_out: Option<PathBuf>,
    /// The step of --openmetrics-out, e.g. `1h`: samples are stamped at its multiples on the
    /// Unix epoch.
    #[arg(long, value_name = "DURATION", requires = "openmetrics_out")]
    pub step: Option<String>,
}

/// What a replay did.
#[derive(Debug, Clone)]
pub struct ReplaySummary {
    /// The final counters.
    pub counters: Counters,
    /// Lines read, blank ones included.
    pub lines: u64,
    /// Bytes read: of the files as they are, compressed or not.
    pub bytes: u64,
    /// Wall time of reading and applying, rendering excluded.
    pub elapsed: Duration,
}

/// Returns the rejection of a line longer than `ledger.max_event_bytes`, which the reader
/// truncated at `length` bytes.
fn oversized(length: u64, max_event_bytes: usize) -> Rejection {
    Rejection::new(
        RejectReason::Oversized,
        format!("message is {length} bytes, more than ledger.max_event_bytes = {max_event_bytes}"),
    )
}

/// Returns whether `at` is in `[since, until)` (either bound may be absent).
fn in_range(at: Timestamp, since: Option<Timestamp>, until: Option<Timestamp>) -> bool {
    !(since.is_some_and(|since| at < since) || until.is_some_and(|until| at >= until))
}

/// Parses an RFC 3339 time of a flag.
fn time_flag(name: &str, text: Option<&str>) -> anyhow::Result<Option<Timestamp>> {
    text.map(|text| {
        Timestamp::parse_rfc3339(text).ok_or_else(|| {
            anyhow::anyhow!("{name}: {text:?} is not an RFC 3339 time like 2026-01-01T00:00:00Z")
        })
    })
    .transpose()
}

/// Replays the ledger of `args.input` into a new engine, writing rejected lines to
/// `args.rejected_out`, and returns the engine with a summary.
pub fn replay(config: &Config, args: &ReplayArgs) -> anyhow::Result<(Engine, ReplaySummary)> {
    let engine_config = config.engine_for(ClockMode::Event);
    let mut engine = Engine::new(&engine_config).context("invalid engine configuration")?;
    let mut history = match (&args.openmetrics_out, &args.step) {
        (Some(path), Some(step)) => {
            let step =
                DurationSpec::parse(step).map_err(|error| anyhow::anyhow!("--step: {error}"))?;
            let writer = HistoryWriter::create(path)
                .with_context(|| format!("cannot create {}", path.display()))?;
            let writer = match &config.publishing.segments {
                Some(segments) => writer
                    .with_segments(segments.clone())
                    .with_context(|| format!("cannot create {}", path.display()))?,
                None => writer,
            };
            Some(History {
                writer,
                step_seconds: step.seconds(),
                next: None,
                error: None,
            })
        }
        _ => None,
    };
    let since = time_flag("--since", args.since.as_deref())?;
    let until = time_flag("--until", args.until.as_deref())?;
    let preparer = &config.preparer;
    let max_event_bytes = preparer.limits().max_event_bytes;
    let Opened {
        source,
        total_bytes,
        files,
    } = Source::open(config, args)?;
    let mut rejected = RejectedWriter::create(&args.rejected_out, files)?;
    let mut reporter = Reporter::new(args.progress, total_bytes);
    let started = Instant::now();
    let mut skipped = 0u64;
    let prepare = |lines: &LineBatch, index: usize| match lines.lines[index].truncated_from {
        Some(length) => Err(oversized(length, max_event_bytes)),
        None => preparer.prepare(lines.line(index)),
    };
    let apply = |batch: &Batch<Result<Prepared, Rejection>>,
                 results: std::vec::Drain<'_, Result<Prepared, Rejection>>|
     -> anyhow::Result<()> {
        let now = wall_clock();
        let mut results = results;
        for index in 0usize.. {
            if index % Engine::PREFETCH_EVENTS == 0 {
                for prepared in results
                    .as_slice()
                    .iter()
                    .take(Engine::PREFETCH_EVENTS)
                    .flatten()
                {
                    engine.prefetch(prepared);
                }
            }
            let Some(result) = results.next() else {
                break;
            };
            if let Ok(prepared) = &result {
                if !in_range(prepared.occurred_at, since, until) {
                    skipped += 1;
                    continue;
                }
            }
            let outcome = match result {
                Ok(prepared) => match history.as_mut() {
                    Some(history) => engine
                        .record_observed(prepared, now, &mut |engine, target| {
                            history.before_advance(engine, target)
                        })
                        .map(|_| ()),
                    None => engine.record(prepared, now).map(|_| ()),
                },
                Err(rejection) => {
                    engine.count_rejection(rejection.reason);
                    Err(rejection)
                }
            };
            if let Err(rejection) = outcome {
                rejected.write_line(batch, index, &rejection)?;
            }
        }
        Ok(())
    };
    let (lines, bytes) = read_and_apply(source, &mut reporter, prepare, apply)?;
    reporter.finish();
    if skipped > 0 {
        info!(skipped, "events outside --since/--until skipped");
    }
    let written = rejected.finish()?;
    if let (Some(history), Some(path)) = (history, &args.openmetrics_out) {
        let snapshots = history.finish(&mut engine, &config.publishing.exposure)?;
        info!(snapshots, path = %path.display(), "history written");
    }
    let elapsed = started.elapsed();
    let counters = *engine.counters();
    debug_assert_eq!(
        written,
        counters.rejected.iter().sum::<u64>(),
        "every rejection is written once"
    );
    Ok((
        engine,
        ReplaySummary {
            counters,
            lines,
            bytes,
            elapsed,
        },
    ))
}

/// Opens the output: the file at `path`, or standard output.
fn output(path: Option<&PathBuf>) -> anyhow::Result<Box<dyn Write>> {
    Ok(match path {
        Some(path) => Box::new(BufWriter::new(
            File::create(path).with_context(|| format!("cannot create {}", path.display()))?,
        )),
        None => Box::new(BufWriter::new(io::stdout().lock())),
    })
}

/// `marginstream replay`: replays the ledger, logs a summary, and writes the final state in
/// `args.format`.
///
/// # Errors
///
/// When the input cannot be read, an output cannot be written (a closed pipe included:
/// `main` ends quietly on that one), or a history step fails.
pub fn run(config: &Config, args: &ReplayArgs) -> anyhow::Result<()> {
    if args.compare_config.is_some() {
        return Err(compare::UsageError(
            "--compare-config: call replay::compare::run with both configurations".to_owned(),
        )
        .into());
    }
    let (mut engine, summary) = replay(config, args)?;
    let counters = summary.counters;
    let count = |outcome| {
        EventType::ALL
            .iter()
            .map(|t| counters.events(*t, outcome))
            .sum::<u64>()
    };
    let rejected: u64 = counters.rejected.iter().sum();
    let seconds = summary.elapsed.as_secs_f64();
    info!(
        lines = summary.lines,
        bytes = summary.bytes,
        applied = count(Outcome::Applied),
        late = count(Outcome::Late),
        duplicate = count(Outcome::Duplicate),
        rejected,
        customers = engine.customer_count(),
        seconds = format!("{seconds:.3}"),
        events_per_second = (counters.total() as f64 / seconds.max(1e-9)) as u64,
        "replay finished"
    );
    if rejected > 0 {
        info!(rejected, path = %args.rejected_out.display(), "rejected lines written");
    }
    let view = engine.view();
    let mut out = output(args.output.as_ref())?;
    match args.format.unwrap_or(Format::Prometheus) {
        Format::Prometheus => {
            // The exposure budget chooses on the final state (contract section 7).
            let chosen = exposure::choose(&view, &config.publishing.exposure);
            let exposed = |id: &str| chosen.contains(id);
            let exposition = config.publishing.exposition(&exposed);
            let mut text = Vec::new();
            render_prometheus_with(&view, RenderOptions::default(), &exposition, &mut text);
            out.write_all(&text)?;
        }
        Format::Json => render_json(&view, config.publishing.segments.as_ref(), &mut out)?,
        Format::Table => {
            let labels = view.window_labels();
            let window = args
                .window
                .clone()
                .unwrap_or_else(|| labels.last().cloned().unwrap_or_default());
            render_table(
                &view,
                &window,
                args.limit,
                config.publishing.segments.as_ref(),
                &mut out,
            )?;
        }
    }
    out.flush().context("cannot write the output")?;
    Ok(())
}
