//! `marginstream replay`: the engine over a JSONL ledger, no Kafka needed.
//!
//! Two threads: the reader cuts the input into batches of lines and prepares every line
//! (parse, validate, convert, tag: the costly part); the main thread applies the prepared
//! events to the engine in input order and writes rejected lines. A bounded channel of
//! [`READ_AHEAD_BATCHES`] batches between them bounds memory.

use std::fs::File;
use std::io::{self, BufWriter, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use base64::Engine as _;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use marginstream_aggregator::{ClockMode, Engine, Prepared};
use marginstream_consumer::kafka::TopicReader;
use marginstream_consumer::{JsonlReader, LineBatch, Offset, Partition, ReaderOptions};
use marginstream_exporter::openmetrics::HistoryWriter;
use marginstream_exporter::{ExporterError, SeriesSelection};
use marginstream_model::{Counters, DurationSpec, RejectReason, Rejection, Timestamp};
use serde_json::json;
use tracing::info;

use crate::config::Config;

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
    /// The JSONL ledger to replay, `-` for standard input.
    #[arg(
        long,
        short,
        value_name = "PATH",
        required_unless_present = "from_kafka"
    )]
    pub input: Option<PathBuf>,
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

/// Takes the history of the gauges while the engine runs: the sample stamped `s` (a multiple
/// of the step) is the state when the watermark first reached `s`, that is the events
/// applied before the first event later than `s`, with the windows computed at `T = s`
/// (contract section 4).
struct History {
    writer: HistoryWriter,
    step_seconds: i64,
    /// The next boundary to stamp; set by the first applied event.
    next: Option<i64>,
    /// The first error, after which no more snapshots are taken.
    error: Option<ExporterError>,
}

impl History {
    /// Called before the watermark moves towards `target`: stamps every boundary below it.
    fn before_advance(&mut self, engine: &mut Engine, target: Timestamp) {
        let step = self.step_seconds;
        // The first boundary at or after the first event: nothing was applied before it.
        let next = self.next.get_or_insert_with(|| {
            target.seconds.div_euclid(step) * step
                + if target.seconds.rem_euclid(step) == 0 && target.nanos == 0 {
                    0
                } else {
                    step
                }
        });
        while self.error.is_none() && Timestamp::from_seconds(*next) < target {
            let at = Timestamp::from_seconds(*next);
            engine.advance_watermark(at);
            if let Err(error) = self.writer.snapshot(&engine.view(), at) {
                self.error = Some(error);
            }
            *next += step;
        }
    }

    /// Stamps the last boundary if the watermark stopped exactly on it, and writes the file.
    fn finish(mut self, engine: &mut Engine) -> anyhow::Result<u64> {
        if let (Some(next), Some(watermark)) = (self.next, engine.watermark()) {
            if self.error.is_none() && watermark == Timestamp::from_seconds(next) {
                if let Err(error) = self.writer.snapshot(&engine.view(), watermark) {
                    self.error = Some(error);
                }
            }
        }
        if let Some(error) = self.error {
            return Err(error.into());
        }
        // Every customer, family and window: replay has no exposure budget (yet).
        let everything = SeriesSelection::all(engine.labels().len());
        Ok(self.writer.finish(&everything)?)
    }
}

/// What a replay did.
#[derive(Debug, Clone)]
pub struct ReplaySummary {
    /// The final counters.
    pub counters: Counters,
    /// Lines read, blank ones included.
    pub lines: u64,
    /// Bytes read.
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
}

/// The partition and offset of each line of a batch read from Kafka (empty for a file).
type Origins = Vec<(Partition, Offset)>;

/// Where replay reads: a JSONL file (or stdin), or the topic itself.
enum Source {
    File(JsonlReader<Box<dyn Read + Send>>),
    Kafka(TopicReader),
}

impl Source {
    fn next_batch(&mut self) -> anyhow::Result<Option<(LineBatch, Origins)>> {
        match self {
            Source::File(reader) => Ok(reader
                .next_batch()
                .context("cannot read the ledger")?
                .map(|batch| (batch, Vec::new()))),
            Source::Kafka(reader) => Ok(reader
                .next_batch(1 << 20)
                .context("cannot read the topic")?
                .map(|topic| (topic.batch, topic.origins))),
        }
    }

    fn recycle(&mut self, batch: LineBatch) {
        if let Source::File(reader) = self {
            reader.recycle(batch);
        }
    }

    fn lines_read(&self) -> u64 {
        match self {
            Source::File(reader) => reader.lines_read(),
            Source::Kafka(reader) => reader.messages_read(),
        }
    }

    fn bytes_read(&self, fallback: u64) -> u64 {
        match self {
            Source::File(reader) => reader.bytes_read(),
            Source::Kafka(_) => fallback,
        }
    }
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

/// Returns the wall clock as a timestamp. The binary reads the clock; the engine never does.
pub fn wall_clock() -> Timestamp {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    Timestamp {
        seconds: i64::try_from(since.as_secs()).unwrap_or(i64::MAX),
        nanos: since.subsec_nanos(),
    }
}

/// Writes rejected lines as JSONL.
struct RejectedWriter {
    out: BufWriter<File>,
    path: PathBuf,
    written: u64,
}

impl RejectedWriter {
    fn create(path: &Path) -> anyhow::Result<RejectedWriter> {
        let file = File::create(path).with_context(|| {
            format!("cannot create the rejected-events file {}", path.display())
        })?;
        Ok(RejectedWriter {
            out: BufWriter::with_capacity(256 * 1024, file),
            path: path.to_owned(),
            written: 0,
        })
    }

    fn write(
        &mut self,
        line_number: u64,
        line: &[u8],
        truncated_from: Option<u64>,
        origin: Option<(Partition, Offset)>,
        rejection: &Rejection,
    ) -> anyhow::Result<()> {
        let mut record = json!({
            "reason": rejection.reason.as_str(),
            "error": rejection.message,
        });
        match origin {
            Some((partition, offset)) => {
                record["partition"] = json!(partition.0);
                record["offset"] = json!(offset.0);
            }
            None => record["line_number"] = json!(line_number),
        }
        match std::str::from_utf8(line) {
            Ok(text) => record["line"] = json!(text),
            Err(_) => {
                record["line_base64"] =
                    json!(base64::engine::general_purpose::STANDARD.encode(line))
            }
        }
        if let Some(length) = truncated_from {
            record["truncated_from"] = json!(length);
        }
        serde_json::to_writer(&mut self.out, &record)?;
        self.out
            .write_all(b"\n")
            .with_context(|| format!("cannot write to {}", self.path.display()))?;
        self.written += 1;
        Ok(())
    }

    fn finish(mut self) -> anyhow::Result<u64> {
        self.out
            .flush()
            .with_context(|| format!("cannot write to {}", self.path.display()))?;
        Ok(self.written)
    }
}

fn open_input(path: &Path) -> anyhow::Result<(Box<dyn Read + Send>, Option<u64>)> {
    if path == Path::new("-") {
        return Ok((Box::new(io::stdin()), None));
    }
    let file =
        File::open(path).with_context(|| format!("cannot open the ledger {}", path.display()))?;
    let size = file
        .metadata()
        .ok()
        .filter(|m| m.is_file())
        .map(|m| m.len());
    Ok((Box::new(file), size))
}

/// Reports progress: a bar on a terminal, log lines otherwise.
struct Reporter {
    bar: Option<ProgressBar>,
    log: bool,
    started: Instant,
    last: Instant,
    total_bytes: Option<u64>,
}

impl Reporter {
    fn new(mode: Progress, total_bytes: Option<u64>) -> Reporter {
        let terminal = io::stderr().is_terminal();
        let bar = match (mode, terminal) {
            (Progress::Always, _) | (Progress::Auto, true) => {
                let bar = match total_bytes {
                    Some(total) => ProgressBar::new(total).with_style(
                        ProgressStyle::with_template(
                            "{spinner} [{elapsed_precise}] {wide_bar} {percent:>3}% {msg} ETA {eta}",
                        )
                        .expect("the progress template is valid"),
                    ),
                    None => ProgressBar::new_spinner().with_style(
                        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}")
                            .expect("the progress template is valid"),
                    ),
                };
                bar.set_draw_target(ProgressDrawTarget::stderr_with_hz(4));
                Some(bar)
            }
            _ => None,
        };
        let now = Instant::now();
        Reporter {
            bar,
            log: mode == Progress::Auto && !terminal,
            started: now,
            last: now,
            total_bytes,
        }
    }

    fn update(&mut self, bytes: u64, events: u64) {
        let now = Instant::now();
        let rate = events as f64 / now.duration_since(self.started).as_secs_f64().max(1e-9);
        if let Some(bar) = &self.bar {
            bar.set_position(bytes);
            bar.set_message(format!("{events} events, {rate:.0} events/s"));
        } else if self.log && now.duration_since(self.last) >= Duration::from_secs(5) {
            self.last = now;
            let percent = self
                .total_bytes
                .map(|total| format!("{:.1}", 100.0 * bytes as f64 / total.max(1) as f64));
            info!(
                events,
                events_per_second = rate as u64,
                percent = percent.as_deref().unwrap_or("?"),
                "replay progress"
            );
        }
    }

    fn finish(self) {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
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
    let (mut source, total_bytes) = match &args.input {
        Some(path) => {
            let (input, total_bytes) = open_input(path)?;
            let reader = JsonlReader::new(
                input,
                ReaderOptions {
                    batch_bytes: 1 << 20,
                    line_bytes_max: (max_event_bytes + 1).max(1 << 20),
                    // Every line is a message: a blank one is rejected, not skipped.
                    keep_blank_lines: true,
                },
            );
            (Source::File(reader), total_bytes)
        }
        None => {
            let settings = crate::serve::kafka_settings(config);
            info!(topic = %settings.topic, brokers = %settings.brokers, "reading the topic from its beginning");
            (
                Source::Kafka(TopicReader::new(&settings, max_event_bytes + 1)?),
                None,
            )
        }
    };
    let mut rejected = RejectedWriter::create(&args.rejected_out)?;
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
                let Some((batch, origins)) = reader.next_batch()? else {
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
