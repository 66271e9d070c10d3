//! The history of the gauges for backfill (`--openmetrics-out`), taken while the engine runs.

use marginstream_aggregator::Engine;
use marginstream_exporter::exposure::{self, ExposureConfig};
use marginstream_exporter::openmetrics::HistoryWriter;
use marginstream_exporter::ExporterError;
use marginstream_exporter::SeriesSelection;
use marginstream_model::GaugeView;
use marginstream_model::Timestamp;

/// Takes the history of the gauges while the engine runs: the sample stamped `s` (a multiple
/// of the step) is the state when the watermark first reached `s`, that is the events
/// applied before the first event later than `s`, with the windows computed at `T = s`
/// (contract section 4).
pub(super) struct History {
    pub(super) writer: HistoryWriter,
    pub(super) step_seconds: i64,
    /// The next boundary to stamp; set by the first applied event.
    pub(super) next: Option<i64>,
    /// The first error, after which no more snapshots are taken.
    pub(super) error: Option<ExporterError>,
}

impl History {
    /// Called before the watermark moves towards `target`: stamps every boundary below it.
    pub(super) fn before_advance(&mut self, engine: &mut Engine, target: Timestamp) {
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

    /// Stamps the last boundary if the watermark stopped exactly on it, and writes the file
    /// with the exposure budget's one choice on the final state (contract section 7): the
    /// chosen customers get series of their own at every step, the others are summed into
    /// `__other__`.
    pub(super) fn finish(
        mut self,
        engine: &mut Engine,
        exposure: &ExposureConfig,
    ) -> anyhow::Result<u64> {
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
        let view = engine.view();
        let chosen = exposure::choose(&view, exposure);
        let selection = SeriesSelection {
            exposed: (chosen.len() < view.customer_count()).then_some(chosen),
            families: exposure.families,
            windows: exposure.windows.clone(),
        };
        Ok(self.writer.finish(&selection)?)
    }
}
