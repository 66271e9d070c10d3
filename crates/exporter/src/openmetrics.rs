//! History for backfill: the gauges at each step of event time, as OpenMetrics text with
//! timestamps, ready for `promtool tsdb create-blocks-from openmetrics` (contract section 6,
//! and the history rule at the end of section 4).
//!
//! OpenMetrics wants every metric family contiguous, and each series' samples in time order.
//! Snapshots arrive time by time, so each family's samples are spooled to a part file of
//! its own beside the output (`PATH.parts/`), time-major, and [`HistoryWriter::finish`]
//! joins them family by family, with HELP and TYPE lines, and ends with `# EOF`. Memory
//! stays at one snapshot; disk holds the output twice until the end.
//!
//! Only gauges are written (the event counters are not history of the ledger).

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use marginstream_model::{GaugeView, Timestamp};

use crate::error::ExporterError;
use crate::metrics::{self, FAMILIES};
use crate::prometheus::{customer_prefix, write_header, write_subject, FamilyBuffers};

/// The gauge families written, as indices into [`FAMILIES`]: the five per-customer, the five
/// portfolio families, the watermark and the customer count.
const GAUGES: [usize; 12] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 13];

/// Writes the history of every gauge, one snapshot per step.
#[derive(Debug)]
pub struct HistoryWriter {
    path: PathBuf,
    parts_dir: PathBuf,
    parts: Vec<BufWriter<File>>,
    customers: FamilyBuffers,
    portfolio: FamilyBuffers,
    snapshots: u64,
    last: Option<Timestamp>,
}

fn write_error(source: io::Error) -> ExporterError {
    ExporterError::Write {
        format: "openmetrics",
        source,
    }
}

impl HistoryWriter {
    /// Creates the writer and its part files in `PATH.parts/` (emptied if it exists).
    pub fn create(path: &Path) -> Result<HistoryWriter, ExporterError> {
        let mut parts_dir = path.as_os_str().to_owned();
        parts_dir.push(".parts");
        let parts_dir = PathBuf::from(parts_dir);
        if parts_dir.exists() {
            fs::remove_dir_all(&parts_dir).map_err(write_error)?;
        }
        fs::create_dir_all(&parts_dir).map_err(write_error)?;
        let parts = GAUGES
            .iter()
            .map(|family| {
                File::create(parts_dir.join(format!("{family:02}.part")))
                    .map(|file| BufWriter::with_capacity(1 << 20, file))
            })
            .collect::<io::Result<Vec<_>>>()
            .map_err(write_error)?;
        Ok(HistoryWriter {
            path: path.to_owned(),
            parts_dir,
            parts,
            customers: FamilyBuffers::default(),
            portfolio: FamilyBuffers::default(),
            snapshots: 0,
            last: None,
        })
    }

    /// Returns the number of snapshots written.
    pub fn snapshots(&self) -> u64 {
        self.snapshots
    }

    /// Writes the state of `view`, stamped `at` (whole seconds, after the previous stamp).
    pub fn snapshot<V: GaugeView + ?Sized>(
        &mut self,
        view: &V,
        at: Timestamp,
    ) -> Result<(), ExporterError> {
        debug_assert!(
            self.last.is_none_or(|last| last < at),
            "snapshots go forward in time"
        );
        self.last = Some(at);
        let suffix = format!(" {}", at.seconds);
        let suffix = suffix.as_bytes();
        let windows = view.window_labels();
        let names = metrics::CUSTOMER_FAMILIES;
        let mut prefix = Vec::with_capacity(64);
        let mut labels = Vec::with_capacity(128);
        for buffer in self
            .customers
            .0
            .iter_mut()
            .chain(self.portfolio.0.iter_mut())
        {
            buffer.clear();
        }
        for index in 0..view.customer_count() {
            let (id, figures) = view.customer(index);
            customer_prefix(id, &mut prefix);
            write_subject(
                &mut self.customers,
                names,
                &prefix,
                windows,
                figures,
                &mut labels,
                suffix,
            );
            if self.customers.0[1].len() > 1 << 20 {
                self.flush_customers()?;
            }
        }
        self.flush_customers()?;
        let portfolio_names = metrics::PORTFOLIO_FAMILIES;
        write_subject(
            &mut self.portfolio,
            portfolio_names,
            b"",
            windows,
            view.portfolio(),
            &mut labels,
            suffix,
        );
        for (family, buffer) in self.portfolio.0.iter().enumerate() {
            self.parts[5 + family]
                .write_all(buffer)
                .map_err(write_error)?;
        }
        let watermark = view.watermark().unwrap_or(at);
        writeln!(
            self.parts[10],
            "{} {} {}",
            metrics::WATERMARK_TIMESTAMP_SECONDS,
            watermark.seconds,
            at.seconds
        )
        .map_err(write_error)?;
        writeln!(
            self.parts[11],
            "{} {} {}",
            metrics::CUSTOMERS,
            view.customer_count(),
            at.seconds
        )
        .map_err(write_error)?;
        self.snapshots += 1;
        Ok(())
    }

    fn flush_customers(&mut self) -> Result<(), ExporterError> {
        for (family, buffer) in self.customers.0.iter_mut().enumerate() {
            self.parts[family].write_all(buffer).map_err(write_error)?;
            buffer.clear();
        }
        Ok(())
    }

    /// Joins the parts into the output file, family by family, ends it with `# EOF`, and
    /// removes the parts. Returns the number of snapshots.
    pub fn finish(self) -> Result<u64, ExporterError> {
        let HistoryWriter {
            path,
            parts_dir,
            parts,
            snapshots,
            ..
        } = self;
        let mut out = BufWriter::with_capacity(1 << 20, File::create(&path).map_err(write_error)?);
        for (part, family) in parts.into_iter().zip(GAUGES) {
            let file = part
                .into_inner()
                .map_err(|error| write_error(error.into_error()))?;
            drop(file);
            let (name, kind, help) = FAMILIES[family];
            let mut header = Vec::new();
            write_header(&mut header, name, kind, help);
            out.write_all(&header).map_err(write_error)?;
            let mut input =
                File::open(parts_dir.join(format!("{family:02}.part"))).map_err(write_error)?;
            io::copy(&mut input, &mut out).map_err(write_error)?;
        }
        out.write_all(b"# EOF\n").map_err(write_error)?;
        out.flush().map_err(write_error)?;
        fs::remove_dir_all(&parts_dir).map_err(write_error)?;
        Ok(snapshots)
    }
}
