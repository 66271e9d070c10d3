//! Replay's progress on standard error: a bar on a terminal, a log line every five seconds
//! otherwise.

use std::io::{self, IsTerminal};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tracing::info;

use super::Progress;

/// Reports progress: a bar on a terminal, log lines otherwise.
pub(super) struct Reporter {
    bar: Option<ProgressBar>,
    log: bool,
    started: Instant,
    last: Instant,
    total_bytes: Option<u64>,
}

impl Reporter {
    pub(super) fn new(mode: Progress, total_bytes: Option<u64>) -> Reporter {
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

    pub(super) fn update(&mut self, bytes: u64, events: u64) {
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

    pub(super) fn finish(self) {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}
