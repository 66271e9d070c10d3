//! `marginstream replay`: the engine over a JSONL ledger (or the ledger topic read directly),
//! no consumer group needed.
//!
//! - [`replay`]: reads the ledger into a new engine and returns it with a summary; [`run`]
//!   is the command: replay, then print the final state in the chosen format.
//! - `source`: where the lines come from. `rejected`: the rejected-events file. `history`:
//!   the backfill history taken while the engine runs. `progress`: the progress bar.
//!
//! Two threads: the reader cuts the input into batches of lines and prepares every line
//! (parse, validate, convert, tag: the costly part); the calling thread applies the prepared
//! events to the engine in input order and writes rejected lines. A bounded channel of
//! [`READ_AHEAD_BATCHES`] batches between them bounds memory.

mod history;
mod progress;
mod rejected;
mod source;

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use marginstream_aggregator::{ClockMode, Engine, Prepared};
use marginstream_consumer::kafka::TopicReader;
use marginstream_consumer::{InputReader, LineBatch, Offset, Partition, ReaderOptions};
use marginstream_exporter::exposure;
use marginstream_exporter::json::render_json;
use marginstream_exporter::openmetrics::HistoryWriter;
use marginstream_exporter::prometheus::{render_prometheus_with, Exposition};
use marginstream_exporter::table::render_table;
use marginstream_exporter::RenderOptions;
use marginstream_model::{
    Counters, DurationSpec, EventType, GaugeView, Outcome, RejectReason, Rejection, Timestamp,
};
use tracing::info;

use crate::clock::wall_clock;
use crate::config::Config;
use history::History;
use progress::Reporter;
use rejected::RejectedWriter;
use source::Source;

/// Batches prepared ahead of the engine: bounds memory to about this many times the batch
/// size (1 MiB) plus the parsed events.
pub const READ_AHEAD_BATCHES: usize = 4;

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
    /// Output format of the final state.
    #[arg(long, value_enum, default_value_t = Format::Prometheus)]
    pub format: Format,
    /// Write the output to this file instead of standard output.
    #[arg(long, short, value_name = "PATH")]
    pub output: Option<PathBuf>,
    /// The window of `--format table` (default: `all`, or the longest window without it).
    #[arg(long, value_name = "WINDOW")]
    pub window: Option<String>,
    /// At most this many customers in `--format table`.
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

/// One batch of lines and the result of preparing each.
struct Prepared_ {
    batch: LineBatch,
    results: Vec<Result<Prepared, Rejection>>,
    bytes_read: u64,
    /// With --from-kafka, the partition and offset of each line.
    origins: Vec<(Partition, Offset)>,
    /// The index of the input file of the batch (0 with --from-kafka).
    input: usize,
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
            Some(History {
                writer: HistoryWriter::create(path)
                    .with_context(|| format!("cannot create {}", path.display()))?,
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
    let (mut source, total_bytes, files) = if args.input.is_empty() {
        let settings = config.kafka_settings();
        info!(topic = %settings.topic, brokers = %settings.brokers, "reading the topic from its beginning");
        (
            Source::Kafka(TopicReader::new(&settings, max_event_bytes + 1)?),
            None,
            Vec::new(),
        )
    } else {
        let reader = InputReader::open(
            &args.input,
            ReaderOptions {
                batch_bytes: 1 << 20,
                line_bytes_max: (max_event_bytes + 1).max(1 << 20),
                // Every line is a message: a blank one is rejected, not skipped.
                keep_blank_lines: true,
                // Full batches: a replay reads for throughput, not latency.
                eager: false,
            },
        )?;
        let files = if reader.len() > 1 {
            (0..reader.len())
                .map(|index| reader.path(index).display().to_string())
                .collect()
        } else {
            Vec::new()
        };
        let total_bytes = reader.total_bytes();
        (Source::File(reader), total_bytes, files)
    };
    let mut rejected = RejectedWriter::create(&args.rejected_out, files)?;
    let mut reporter = Reporter::new(args.progress, total_bytes);
    let started = Instant::now();
    let mut skipped = 0u64;
    let (sender, receiver) = crossbeam_channel::bounded::<Prepared_>(READ_AHEAD_BATCHES);
    // Consumed batches go back to the reader, so their memory is reused, not page-faulted.
    let (recycle, recycled) = crossbeam_channel::bounded::<Prepared_>(READ_AHEAD_BATCHES + 1);

    let (lines, bytes) = std::thread::scope(|scope| -> anyhow::Result<(u64, u64)> {
        let reader_thread = scope.spawn(move || -> anyhow::Result<(u64, u64)> {
            let reader = &mut source;
            let mut bytes_read = 0u64;
            loop {
                let mut results = Vec::new();
                if let Ok(old) = recycled.try_recv() {
                    reader.recycle(old.batch);
                    results = old.results;
                    results.clear();
                }
                let Some((batch, origins, input)) = reader.next_batch()? else {
                    break;
                };
                bytes_read += batch.buffer.len() as u64;
                results.extend(batch.lines.iter().enumerate().map(|(index, line)| {
                    match line.truncated_from {
                        Some(length) => Err(Rejection::new(
                            RejectReason::Oversized,
                            format!("message is {length} bytes, more than ledger.max_event_bytes = {max_event_bytes}"),
                        )),
                        None => preparer.prepare(batch.line(index)),
                    }
                }));
                let item = Prepared_ {
                    batch,
                    results,
                    bytes_read: reader.bytes_read(bytes_read),
                    origins,
                    input,
                };
                if sender.send(item).is_err() {
                    // The engine side stopped on an error of its own, reported there.
                    break;
                }
            }
            Ok((reader.lines_read(), reader.bytes_read(bytes_read)))
        });

        let mut events = 0u64;
        for mut item in receiver {
            let now = wall_clock();
            for (index, result) in item.results.drain(..).enumerate() {
                if let Ok(prepared) = &result {
                    let at = prepared.occurred_at;
                    if since.is_some_and(|since| at < since)
                        || until.is_some_and(|until| at >= until)
                    {
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
                    let line = &item.batch.lines[index];
                    rejected.write(
                        item.input,
                        line.number,
                        item.batch.line(index),
                        line.truncated_from,
                        item.origins.get(index).copied(),
                        &rejection,
                    )?;
                }
            }
            events += item.batch.lines.len() as u64;
            reporter.update(item.bytes_read, events);
            // The reader may have finished; a batch it no longer wants is dropped.
            let _ = recycle.try_send(item);
        }
        match reader_thread.join() {
            Ok(result) => result,
            Err(_) => bail!("the reader thread panicked"),
        }
    })?;
    reporter.finish();
    if skipped > 0 {
        info!(skipped, "events outside --since/--until skipped");
    }
    let written = rejected.finish()?;
    if let (Some(history), Some(path)) = (history, &args.openmetrics_out) {
        let snapshots = history.finish(&mut engine)?;
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
    match args.format {
        Format::Prometheus => {
            // The exposure budget chooses on the final state (contract section 7).
            let publishing = &config.publishing;
            let chosen = exposure::choose(&view, &publishing.exposure);
            let exposed = |id: &str| chosen.contains(id);
            let exposition = Exposition {
                exposed: Some(&exposed),
                families: publishing.exposure.families,
                windows: &publishing.exposure.windows,
                segments: publishing.segments.as_ref(),
            };
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
