//! History for backfill: the gauges at each step of event time, as OpenMetrics text with
//! timestamps, ready for `promtool tsdb create-blocks-from openmetrics` and for any
//! OpenMetrics parser (contract section 6, the history rule at the end of section 4, and the
//! `__other__` row of section 7).
//!
//! # Order
//!
//! Families come in the order of [`FAMILIES`], gauges only (the event counters are not
//! history of the ledger), each with its HELP and TYPE lines. Within a family, series come in
//! a fixed order: customers by id, then `__other__`, windows in label order, cost functions
//! in [`CostFunction::MARGIN`] order. Each series' samples are together and in time order,
//! as OpenMetrics requires of a metric's points: the reference parser (`prometheus_client`)
//! refuses a series that comes back after another as "Invalid metric grouping". The file
//! ends with `# EOF`. Samples are exact decimal text.
//!
//! # Spool
//!
//! Snapshots arrive step by step, so every series grows at every step. Each snapshot is
//! spooled to `PATH.parts/` as raw figures, exact decimals in a compact binary form (about
//! 2 to 5 bytes an amount, a tenth or less of their text): one sorted run per step for the
//! customers and one for each source of [`STEP_SOURCES`] (the portfolio, the watermark, the
//! customer count). [`HistoryWriter::finish`] merges each table's runs (see the `spool`
//! module) and then renders the text series by series, family by family, reading each
//! customer's entries once per window and cost function. Figures rather than text are
//! spooled so that `finish` can decide which series to write, by a [`SeriesSelection`], and
//! sum everyone else into `__other__`.
//!
//! # Bounds
//!
//! Memory: at most [`BUFFER_BYTES_MAX`] (9.3 MiB) of buffers, whatever the number of steps
//! and customers: 64 runs read at once through 128 KiB each, plus 1 MiB of text (customer
//! ids longer than 1 KiB add theirs). So 100k customers over 1000 steps take the same
//! 9.3 MiB; the engine, and the selection's set of exposed ids, are the caller's. Disk: the
//! spool, about 70 bytes per customer and step with four windows (2 % of the 3.1 kB of text
//! they become; 7 GB for 100k customers over 1000 steps, against 310 GB of text), twice
//! while a merge level rewrites it (one level up to 4096 steps, two up to 262,144), removed
//! at the end. A selection shrinks the text, not the spool.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use marginstream_model::{CostFunction, Figures, GaugeView, Line, Timestamp, WindowFigures};
use rust_decimal::Decimal;

use crate::error::ExporterError;
use crate::metrics::{self, Kind, FAMILIES};
use crate::prometheus::{escape_label_value, write_amount, write_header};
use crate::segments::{SegmentConfig, SegmentRollup};
use crate::selection::{SeriesSelection, OTHER_CUSTOMER_ID};
use crate::spool::{
    self, Level, Meter, RunScanner, RunWriter, SeriesReader, SpoolLimits, SMALL_BUFFER_BYTES,
};

/// The text buffer: written out when half full, so that a line never makes it grow.
const TEXT_BUFFER_BYTES: usize = 1 << 20;

/// Room for the few small buffers beside the spool's and the text's: label prefixes, series
/// heads, one step's payload, keys of at most 1 KiB in each of the 64 readers.
const SCRATCH_BYTES: usize = 96 << 10;

/// The most bytes of buffers a [`HistoryWriter`] holds at once with `limits`, whatever the
/// number of steps and customers (ids and one step's payload longer than the chunk size
/// aside).
pub(crate) const fn buffer_bytes_max(limits: SpoolLimits) -> usize {
    // Index and data writers of each step source (the segments' included), the customers'
    // index, the `__other__` table's two writers.
    limits.buffer_bytes_max(2 * (STEP_SOURCES.len() + SEGMENT_SOURCES) + 3)
        + TEXT_BUFFER_BYTES
        + SCRATCH_BYTES
}

/// The bound on the writer's buffers with the default limits: 64 × 128 KiB of readers, one
/// more 128 KiB buffer, 1 MiB of text, small writers and scratch (9.3 MiB).
pub const BUFFER_BYTES_MAX: usize = buffer_bytes_max(SpoolLimits::DEFAULT);

// A few MiB, far below the engine's own memory: checked when compiling.
const _: () = assert!(
    BUFFER_BYTES_MAX < 10 << 20,
    "the history's buffers stay below 10 MiB"
);

/// Families of few series taken from the view at every step beside the customers'.
///
/// Each is spooled to a table of its own and rendered by the same code as the customers'
/// families. The segments of contract section 8 are one more variant here and one more
/// entry in [`STEP_SOURCES`]: rows keyed by segment name, rendered with a `segment` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StepSource {
    /// The five portfolio families, one row.
    Portfolio,
    /// `marginstream_watermark_timestamp_seconds`: `T`, which is the step's stamp.
    Watermark,
    /// `marginstream_customers`: customers held.
    CustomerCount,
    /// The five segment families (contract section 8): one row per tier, keyed by its name.
    Segments,
    /// `marginstream_segment_customers`: one row per tier.
    SegmentCustomers,
}

/// The segment sources ([`StepSource::Segments`], [`StepSource::SegmentCustomers`]), spooled
/// at every step after those of [`STEP_SOURCES`] when the history has tiers.
const SEGMENT_SOURCES: usize = 2;

/// The sources spooled at every step, after the customers.
const STEP_SOURCES: [StepSource; 3] = [
    StepSource::Portfolio,
    StepSource::Watermark,
    StepSource::CustomerCount,
];

/// How a family is written from a table's rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Render {
    /// Figures per window: `position` in [`metrics::CUSTOMER_FAMILIES`] order (revenue, cost,
    /// GM-M, GM-O, Services Drag).
    Figures { position: usize, subject: Subject },
    /// One value per step.
    Scalar { subject: Subject },
}

/// How a row's key becomes the first label of its series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Subject {
    /// No label of its own: one row (the portfolio, the watermark).
    Unlabelled,
    /// The key is the value of this label.
    Keyed(&'static str),
    /// One fixed label, whatever the key.
    Fixed(&'static str, &'static str),
}

impl Subject {
    /// Sets `out` to the subject's labels without braces, e.g. `customer_id="acme"`.
    fn labels(self, key: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
        out.clear();
        let (name, value) = match self {
            Subject::Unlabelled => return Ok(()),
            Subject::Keyed(name) => (name, std::str::from_utf8(key).map_err(|_| corrupt_key())?),
            Subject::Fixed(name, value) => (name, value),
        };
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b"=\"");
        escape_label_value(value, out);
        out.push(b'"');
        Ok(())
    }
}

fn corrupt_key() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        "the history spool is corrupt: a key is not UTF-8",
    )
}

fn corrupt_figures() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        "the history spool is corrupt: figures cut short",
    )
}

impl StepSource {
    /// Returns the name of its spool table.
    fn table(self) -> &'static str {
        match self {
            StepSource::Portfolio => "portfolio",
            StepSource::Watermark => "watermark",
            StepSource::CustomerCount => "customers-held",
            StepSource::Segments => "segments",
            StepSource::SegmentCustomers => "segment-customers",
        }
    }

    /// Returns how it renders the family `name`, or `None` if it does not.
    fn renders(self, name: &str) -> Option<Render> {
        match self {
            StepSource::Portfolio => metrics::PORTFOLIO_FAMILIES
                .iter()
                .position(|family| *family == name)
                .map(|position| Render::Figures {
                    position,
                    subject: Subject::Unlabelled,
                }),
            StepSource::Watermark => {
                (name == metrics::WATERMARK_TIMESTAMP_SECONDS).then_some(Render::Scalar {
                    subject: Subject::Unlabelled,
                })
            }
            StepSource::CustomerCount => (name == metrics::CUSTOMERS).then_some(Render::Scalar {
                subject: Subject::Unlabelled,
            }),
            StepSource::Segments => metrics::SEGMENT_FAMILIES
                .iter()
                .position(|family| *family == name)
                .map(|position| Render::Figures {
                    position,
                    subject: Subject::Keyed("segment"),
                }),
            StepSource::SegmentCustomers => {
                (name == metrics::SEGMENT_CUSTOMERS).then_some(Render::Scalar {
                    subject: Subject::Keyed("segment"),
                })
            }
        }
    }

    /// Spools this step's rows, in ascending key order. `segments`: the tiers and their
    /// sums at this step, for the segment sources.
    fn spool<V: GaugeView + ?Sized>(
        self,
        view: &V,
        at: Timestamp,
        segments: Option<(&SegmentConfig, &SegmentRollup)>,
        payload: &mut Vec<u8>,
        table: &mut RunWriter,
    ) -> io::Result<()> {
        payload.clear();
        if let (StepSource::Segments | StepSource::SegmentCustomers, Some((config, rollup))) =
            (self, segments)
        {
            // Rows go in ascending key order: the tiers by name.
            let mut tiers: Vec<usize> = (0..config.tiers.len()).collect();
            tiers.sort_by(|a, b| config.tiers[*a].name.cmp(&config.tiers[*b].name));
            let windows = view.window_labels().len();
            for tier in tiers {
                payload.clear();
                let figures = &rollup.tiers[tier];
                match self {
                    StepSource::Segments => {
                        put_figures(payload, windows_of(figures.figures(windows)))
                    }
                    _ => spool::put_decimal(payload, Decimal::from(figures.customers)),
                }
                table.push(config.tiers[tier].name.as_bytes(), at.seconds, payload)?;
            }
            table.end_run();
            return Ok(());
        }
        match self {
            StepSource::Segments | StepSource::SegmentCustomers => {
                unreachable!("segment sources exist only with a segment configuration")
            }
            StepSource::Portfolio => put_figures(payload, windows_of(view.portfolio())),
            StepSource::Watermark => spool::put_decimal(
                payload,
                Decimal::from(view.watermark().unwrap_or(at).seconds),
            ),
            StepSource::CustomerCount => {
                spool::put_decimal(payload, Decimal::from(view.customer_count()))
            }
        }
        table.push(b"", at.seconds, payload)?;
        table.end_run();
        Ok(())
    }
}

/// How the customers' families are written: keyed by id.
const CUSTOMER_SUBJECT: Subject = Subject::Keyed("customer_id");
/// How the `__other__` row is written.
const OTHER_SUBJECT: Subject = Subject::Fixed("customer_id", OTHER_CUSTOMER_ID);

/// Appends every window's figures: one byte per window, the length of its figures, then
/// window after window six decimals each (revenue, then the five margin costs: the slots of
/// [`Figures`]). The lengths let a reader go straight to its window.
fn put_figures(out: &mut Vec<u8>, windows: impl ExactSizeIterator<Item = Figures>) {
    let lengths = out.len();
    out.resize(lengths + windows.len(), 0);
    for (window, figures) in windows.enumerate() {
        let start = out.len();
        for value in figures.0 {
            spool::put_decimal(out, value);
        }
        out[lengths + window] =
            u8::try_from(out.len() - start).expect("six decimals take at most 90 bytes");
    }
}

/// Returns the figures of every window, in label order.
fn windows_of(figures: WindowFigures<'_>) -> impl ExactSizeIterator<Item = Figures> + '_ {
    (0..figures.len()).map(move |window| figures.window(window))
}

/// Returns where window `window`'s figures start in a payload written by [`put_figures`]
/// for `windows` windows.
fn window_start(payload: &[u8], windows: usize, window: usize) -> io::Result<usize> {
    let lengths = payload.get(..windows).ok_or_else(corrupt_figures)?;
    Ok(windows
        + lengths[..window]
            .iter()
            .map(|l| usize::from(*l))
            .sum::<usize>())
}

/// Reads one decimal of a payload written by [`put_figures`]: line `slot` (0 revenue, 1 to
/// 5 the costs) of window `window`. Reading one line, not the window's six, matters: it is
/// done once per sample.
fn get_line(payload: &[u8], windows: usize, window: usize, slot: usize) -> io::Result<Decimal> {
    let mut pos = window_start(payload, windows, window)?;
    spool::skip_decimals(payload, &mut pos, slot).ok_or_else(corrupt_figures)?;
    spool::get_decimal(payload, &mut pos).ok_or_else(corrupt_figures)
}

/// Reads the figures of window `window` from a payload written by [`put_figures`].
fn get_window(payload: &[u8], windows: usize, window: usize) -> io::Result<Figures> {
    let mut pos = window_start(payload, windows, window)?;
    let mut figures = Figures::default();
    for value in &mut figures.0 {
        *value = spool::get_decimal(payload, &mut pos).ok_or_else(corrupt_figures)?;
    }
    Ok(figures)
}

/// Why the history could not be written.
#[derive(Debug)]
enum Failure {
    Io(io::Error),
    InexactSum { at: i64 },
}

impl From<io::Error> for Failure {
    fn from(error: io::Error) -> Failure {
        Failure::Io(error)
    }
}

impl From<Failure> for ExporterError {
    fn from(failure: Failure) -> ExporterError {
        match failure {
            Failure::Io(source) => write_error(source),
            Failure::InexactSum { at } => ExporterError::InexactSum { at },
        }
    }
}

fn write_error(source: io::Error) -> ExporterError {
    ExporterError::Write {
        format: "openmetrics",
        source,
    }
}

/// The output file, written through a buffer.
struct Text {
    out: File,
    buf: Vec<u8>,
    written: u64,
}

impl Text {
    fn create(path: &Path) -> io::Result<Text> {
        Ok(Text {
            out: File::create(path)?,
            buf: Vec::with_capacity(TEXT_BUFFER_BYTES),
            written: 0,
        })
    }

    /// Appends one sample: `head` (`name{labels} `), the exact value and the stamp.
    fn sample(&mut self, head: &[u8], value: Decimal, stamp: i64) -> io::Result<()> {
        self.buf.extend_from_slice(head);
        write_amount(&mut self.buf, value);
        self.buf.push(b' ');
        self.buf
            .extend_from_slice(itoa::Buffer::new().format(stamp).as_bytes());
        self.buf.push(b'\n');
        self.flush_if_half_full()
    }

    fn header(&mut self, name: &str, kind: Kind, help: &str) -> io::Result<()> {
        write_header(&mut self.buf, name, kind, help);
        self.flush_if_half_full()
    }

    fn flush_if_half_full(&mut self) -> io::Result<()> {
        if self.buf.len() >= TEXT_BUFFER_BYTES / 2 {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.write_all(&self.buf)?;
        self.written += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }

    fn finish(mut self) -> io::Result<u64> {
        self.buf.extend_from_slice(b"# EOF\n");
        self.flush()?;
        self.out.flush()?;
        Ok(self.written)
    }
}

/// Sets `head` to `name{labels} ` (or `name ` without labels), the labels being `first`,
/// then `window="…"` and `cost_function="…"` when given.
fn series_head(
    head: &mut Vec<u8>,
    name: &str,
    first: &[u8],
    window: Option<&str>,
    function: Option<CostFunction>,
) {
    head.clear();
    head.extend_from_slice(name.as_bytes());
    let mut separator = b'{';
    if !first.is_empty() {
        head.push(separator);
        head.extend_from_slice(first);
        separator = b',';
    }
    if let Some(window) = window {
        head.push(separator);
        head.extend_from_slice(b"window=\"");
        escape_label_value(window, head);
        head.push(b'"');
        separator = b',';
    }
    if let Some(function) = function {
        head.push(separator);
        head.extend_from_slice(b"cost_function=\"");
        head.extend_from_slice(function.as_str().as_bytes());
        head.push(b'"');
        separator = b',';
    }
    if separator == b',' {
        head.push(b'}');
    }
    head.push(b' ');
}

/// What a figure family writes of each row.
struct FigureFamily<'a> {
    name: &'a str,
    /// In [`metrics::CUSTOMER_FAMILIES`] order: revenue, cost, GM-M, GM-O, Services Drag.
    position: usize,
    subject: Subject,
    windows: &'a [String],
    /// The windows written.
    window_on: &'a [bool],
}

/// Writes one figure family of every row of `reader` that `keep` keeps: for each row and
/// window (and cost function), the series' samples in time order. Ratios are absent while
/// revenue <= 0.
fn write_figure_family(
    text: &mut Text,
    reader: &mut SeriesReader,
    family: &FigureFamily<'_>,
    keep: &dyn Fn(&[u8]) -> io::Result<bool>,
    scratch: &mut Scratch,
) -> io::Result<()> {
    reader.rewind()?;
    let Scratch { labels, head } = scratch;
    while let Some(key) = reader.next_key()? {
        if !keep(key)? {
            continue;
        }
        family.subject.labels(key, labels)?;
        let windows = family.windows.len();
        for (window, label) in family.windows.iter().enumerate() {
            if !family.window_on.get(window).copied().unwrap_or(false) {
                continue;
            }
            match family.position {
                0 => {
                    series_head(head, family.name, labels, Some(label), None);
                    reader.for_each_entry(|stamp, payload| {
                        text.sample(head, get_line(payload, windows, window, 0)?, stamp)
                    })?;
                }
                1 => {
                    for function in CostFunction::MARGIN {
                        let slot = Line::Cost(function)
                            .slot()
                            .expect("margin cost functions are summed");
                        series_head(head, family.name, labels, Some(label), Some(function));
                        reader.for_each_entry(|stamp, payload| {
                            text.sample(head, get_line(payload, windows, window, slot)?, stamp)
                        })?;
                    }
                }
                position => {
                    series_head(head, family.name, labels, Some(label), None);
                    reader.for_each_entry(|stamp, payload| {
                        let Some(ratios) = get_window(payload, windows, window)?.ratios() else {
                            return Ok(());
                        };
                        let value = match position {
                            2 => ratios.gm_market,
                            3 => ratios.gm_operating,
                            _ => ratios.services_drag,
                        };
                        text.sample(head, value, stamp)
                    })?;
                }
            }
        }
    }
    Ok(())
}

/// Writes a family of one value per row and step.
fn write_scalar_family(
    text: &mut Text,
    reader: &mut SeriesReader,
    name: &str,
    subject: Subject,
    scratch: &mut Scratch,
) -> io::Result<()> {
    reader.rewind()?;
    let Scratch { labels, head } = scratch;
    while let Some(key) = reader.next_key()? {
        subject.labels(key, labels)?;
        series_head(head, name, labels, None, None);
        reader.for_each_entry(|stamp, payload| {
            let value = spool::get_decimal(payload, &mut 0).ok_or_else(corrupt_figures)?;
            text.sample(head, value, stamp)
        })?;
    }
    Ok(())
}

/// Label and series-head buffers, reused from series to series.
#[derive(Debug, Default)]
struct Scratch {
    labels: Vec<u8>,
    head: Vec<u8>,
}

impl Scratch {
    fn bytes(&self) -> usize {
        self.labels.capacity() + self.head.capacity()
    }
}

/// What writing a history took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HistoryStats {
    /// Snapshots taken.
    pub(crate) snapshots: u64,
    /// Bytes of the output.
    pub(crate) output_bytes: u64,
    /// The largest buffers and spool held.
    pub(crate) meter: Meter,
}

/// Writes the history of every gauge, one snapshot per step.
#[derive(Debug)]
pub struct HistoryWriter {
    path: PathBuf,
    parts_dir: PathBuf,
    limits: SpoolLimits,
    /// The window labels, from the first snapshot.
    windows: Option<Vec<String>>,
    /// One run per step: every customer's figures, by id.
    customers: RunWriter,
    /// One run per step for each source of [`STEP_SOURCES`], and the segment sources with
    /// tiers.
    steps: Vec<(StepSource, RunWriter)>,
    /// The tiers of the segment families, if any.
    segments: Option<SegmentConfig>,
    /// One row's encoded figures.
    payload: Vec<u8>,
    snapshots: u64,
    last: Option<Timestamp>,
}

impl HistoryWriter {
    /// Creates the writer and its spool in `PATH.parts/` (emptied if it exists).
    pub fn create(path: &Path) -> Result<HistoryWriter, ExporterError> {
        HistoryWriter::create_with(path, SpoolLimits::DEFAULT)
    }

    pub(crate) fn create_with(
        path: &Path,
        limits: SpoolLimits,
    ) -> Result<HistoryWriter, ExporterError> {
        let mut parts_dir = path.as_os_str().to_owned();
        parts_dir.push(".parts");
        let parts_dir = PathBuf::from(parts_dir);
        if parts_dir.exists() {
            fs::remove_dir_all(&parts_dir).map_err(write_error)?;
        }
        fs::create_dir_all(&parts_dir).map_err(write_error)?;
        let customers = RunWriter::create(&parts_dir, "customers.0", limits.buffer_bytes)
            .map_err(write_error)?;
        let steps = STEP_SOURCES
            .iter()
            .map(|source| {
                RunWriter::create(
                    &parts_dir,
                    &format!("{}.0", source.table()),
                    SMALL_BUFFER_BYTES,
                )
                .map(|writer| (*source, writer))
            })
            .collect::<io::Result<Vec<_>>>()
            .map_err(write_error)?;
        Ok(HistoryWriter {
            path: path.to_owned(),
            parts_dir,
            limits,
            windows: None,
            customers,
            steps,
            segments: None,
            payload: Vec::with_capacity(256),
            snapshots: 0,
            last: None,
        })
    }

    /// Writes the segment families of contract section 8 too, for `config`'s tiers (every
    /// tier at every step). Call before the first snapshot.
    pub fn with_segments(mut self, config: SegmentConfig) -> Result<HistoryWriter, ExporterError> {
        assert_eq!(
            self.snapshots, 0,
            "the segments are set before the first snapshot"
        );
        for source in [StepSource::Segments, StepSource::SegmentCustomers] {
            let writer = RunWriter::create(
                &self.parts_dir,
                &format!("{}.0", source.table()),
                SMALL_BUFFER_BYTES,
            )
            .map_err(write_error)?;
            self.steps.push((source, writer));
        }
        self.segments = Some(config);
        Ok(self)
    }

    /// Returns the number of snapshots written.
    pub fn snapshots(&self) -> u64 {
        self.snapshots
    }

    /// Spools the state of `view`, stamped `at` (whole seconds, after the previous stamp).
    ///
    /// # Panics
    ///
    /// Panics if `at` is not at least a second after the previous snapshot's stamp, if the
    /// view's window labels are not as many as at the first snapshot, or if its customers are
    /// not in strictly ascending id order (all hold for replay's snapshots of an engine).
    pub fn snapshot<V: GaugeView + ?Sized>(
        &mut self,
        view: &V,
        at: Timestamp,
    ) -> Result<(), ExporterError> {
        // The merge takes runs in the order written as time order.
        assert!(
            self.last.is_none_or(|last| last.seconds < at.seconds),
            "snapshots go forward in time, by whole seconds"
        );
        self.last = Some(at);
        let labels = view.window_labels();
        let windows = self.windows.get_or_insert_with(|| labels.to_vec());
        assert_eq!(
            windows.len(),
            labels.len(),
            "the windows stay the same from snapshot to snapshot"
        );
        for index in 0..view.customer_count() {
            let (id, figures) = view.customer(index);
            self.payload.clear();
            put_figures(&mut self.payload, windows_of(figures));
            self.customers
                .push(id.as_bytes(), at.seconds, &self.payload)
                .map_err(write_error)?;
        }
        self.customers.end_run();
        let rollup = self
            .segments
            .as_ref()
            .map(|config| SegmentRollup::of(view, config));
        let segments = self.segments.as_ref().zip(rollup.as_ref());
        for (source, table) in &mut self.steps {
            source
                .spool(view, at, segments, &mut self.payload, table)
                .map_err(write_error)?;
        }
        self.snapshots += 1;
        Ok(())
    }

    /// Writes the output file from the spool: every gauge family of `selection`, series by
    /// series, ending with `# EOF`; then removes the spool, whether or not the output could
    /// be written. Returns the number of snapshots.
    ///
    /// Customers not exposed by `selection` are summed, per step and window, into the
    /// `customer_id="__other__"` row of each per-customer family and window written; that
    /// row is present at a step exactly when a customer held at that step is not exposed.
    pub fn finish(self, selection: &SeriesSelection) -> Result<u64, ExporterError> {
        self.finish_measured(selection).map(|stats| stats.snapshots)
    }

    pub(crate) fn finish_measured(
        self,
        selection: &SeriesSelection,
    ) -> Result<HistoryStats, ExporterError> {
        let parts_dir = self.parts_dir.clone();
        let written = self.write(selection);
        let removed = fs::remove_dir_all(&parts_dir).map_err(write_error);
        let stats = written?;
        removed?;
        Ok(stats)
    }

    fn write(self, selection: &SeriesSelection) -> Result<HistoryStats, ExporterError> {
        let HistoryWriter {
            path,
            parts_dir: dir,
            limits,
            windows,
            customers,
            steps,
            mut payload,
            snapshots,
            ..
        } = self;
        // The segments' sources are in `steps`; their configuration is not needed to write.
        let windows = windows.unwrap_or_default();
        if snapshots > 0 && selection.windows.len() != windows.len() {
            return Err(ExporterError::SelectionWindows {
                expected: windows.len(),
                given: selection.windows.len(),
            });
        }
        let mut meter = Meter::default();
        meter.buffers(
            customers.buffer_bytes()
                + steps.iter().map(|(_, t)| t.buffer_bytes()).sum::<usize>()
                + payload.capacity(),
        );
        let customers = customers.finish().map_err(write_error)?;
        let steps = steps
            .into_iter()
            .map(|(source, table)| Ok((source, table.finish()?)))
            .collect::<io::Result<Vec<_>>>()
            .map_err(write_error)?;
        meter.disk_bytes = customers.bytes() + steps.iter().map(|(_, l)| l.bytes()).sum::<u64>();
        meter.disk_bytes_peak = meter.disk_bytes;

        // `__other__` is summed from the step-major runs, one step at a time, before they
        // are merged.
        let other = if selection.exposes_everyone() {
            None
        } else {
            let other = sum_others(
                &customers,
                windows.len(),
                selection,
                &dir,
                limits,
                &mut meter,
                &mut payload,
            )?;
            meter.disk_bytes += other.bytes();
            Some(other)
        };
        let customers =
            spool::merge(customers, &dir, "customers", limits, &mut meter).map_err(write_error)?;
        let steps = steps
            .into_iter()
            .map(|(source, level)| {
                Ok((
                    source,
                    spool::merge(level, &dir, source.table(), limits, &mut meter)?,
                ))
            })
            .collect::<io::Result<Vec<_>>>()
            .map_err(write_error)?;
        let output_bytes = write_text(
            &path,
            &windows,
            selection,
            &customers,
            other.as_ref(),
            &steps,
            limits,
            &mut meter,
        )
        .map_err(write_error)?;
        Ok(HistoryStats {
            snapshots,
            output_bytes,
            meter,
        })
    }
}

/// Sums, step by step, the figures of the customers `selection` does not expose into a
/// table of one row (the `__other__` row), at the steps that hold such a customer.
fn sum_others(
    customers: &Level,
    window_count: usize,
    selection: &SeriesSelection,
    dir: &Path,
    limits: SpoolLimits,
    meter: &mut Meter,
    payload: &mut Vec<u8>,
) -> Result<Level, Failure> {
    let mut other = RunWriter::create(dir, "other", SMALL_BUFFER_BYTES)?;
    let mut scanner = RunScanner::open(customers, limits.buffer_bytes)?;
    let mut sums = vec![Figures::default(); window_count];
    while let Some(at) = scanner.next_run()? {
        sums.fill(Figures::default());
        let mut summed = false;
        scanner.for_each_entry(|key, figures| -> Result<(), Failure> {
            let id = std::str::from_utf8(key).map_err(|_| corrupt_key())?;
            if selection.is_exposed(id) {
                return Ok(());
            }
            summed = true;
            let mut pos = window_start(figures, window_count, 0)?;
            for sum in sums.iter_mut().flat_map(|window| &mut window.0) {
                let value = spool::get_decimal(figures, &mut pos).ok_or_else(corrupt_figures)?;
                *sum = exact_add(*sum, value).ok_or(Failure::InexactSum { at })?;
            }
            Ok(())
        })?;
        if summed {
            payload.clear();
            put_figures(payload, sums.iter().copied());
            other.push(b"", at, payload)?;
        }
    }
    other.end_run();
    meter.buffers(
        scanner.buffer_bytes()
            + other.buffer_bytes()
            + payload.capacity()
            + sums.capacity() * size_of::<Figures>(),
    );
    Ok(other.finish()?)
}

/// Returns `a + b` when it is exact: `None` when the sum overflows or had to drop decimal
/// places to fit in 28 digits.
fn exact_add(a: Decimal, b: Decimal) -> Option<Decimal> {
    let sum = a.checked_add(b)?;
    (sum.scale() >= a.scale().max(b.scale())).then_some(sum)
}

/// Writes the output file, family by family, from the merged tables. Returns its size.
#[allow(clippy::too_many_arguments)]
fn write_text(
    path: &Path,
    windows: &[String],
    selection: &SeriesSelection,
    customers: &Level,
    other: Option<&Level>,
    steps: &[(StepSource, Level)],
    limits: SpoolLimits,
    meter: &mut Meter,
) -> io::Result<u64> {
    let mut text = Text::create(path)?;
    let mut scratch = Scratch::default();
    let every_window = vec![true; windows.len()];
    let keep_all = |_: &[u8]| Ok(true);
    let keep_exposed = |key: &[u8]| -> io::Result<bool> {
        let id = std::str::from_utf8(key).map_err(|_| corrupt_key())?;
        Ok(selection.is_exposed(id))
    };
    for &(name, kind, help) in &FAMILIES {
        if kind != Kind::Gauge {
            continue;
        }
        if let Some(position) = metrics::CUSTOMER_FAMILIES
            .iter()
            .position(|family| *family == name)
        {
            if !selection.families[position] {
                continue;
            }
            text.header(name, kind, help)?;
            for (level, subject) in [(Some(customers), CUSTOMER_SUBJECT), (other, OTHER_SUBJECT)] {
                let Some(level) = level else { continue };
                let mut reader = SeriesReader::open(level, limits.buffer_bytes)?;
                let family = FigureFamily {
                    name,
                    position,
                    subject,
                    windows,
                    window_on: &selection.windows,
                };
                let keep: &dyn Fn(&[u8]) -> io::Result<bool> = if subject == CUSTOMER_SUBJECT {
                    &keep_exposed
                } else {
                    &keep_all
                };
                write_figure_family(&mut text, &mut reader, &family, keep, &mut scratch)?;
                meter.buffers(reader.buffer_bytes() + text.buf.capacity() + scratch.bytes());
            }
            continue;
        }
        for (source, level) in steps {
            let Some(render) = source.renders(name) else {
                continue;
            };
            text.header(name, kind, help)?;
            let mut reader = SeriesReader::open(level, limits.buffer_bytes)?;
            match render {
                Render::Figures { position, subject } => {
                    let family = FigureFamily {
                        name,
                        position,
                        subject,
                        windows,
                        window_on: &every_window,
                    };
                    write_figure_family(&mut text, &mut reader, &family, &keep_all, &mut scratch)?
                }
                Render::Scalar { subject } => {
                    write_scalar_family(&mut text, &mut reader, name, subject, &mut scratch)?
                }
            }
            meter.buffers(reader.buffer_bytes() + text.buf.capacity() + scratch.bytes());
        }
    }
    text.finish()
}

#[cfg(test)]
mod tests;
