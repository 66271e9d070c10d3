//! The exporter's one error type.

use thiserror::Error;

/// Errors of rendering to a writer.
#[derive(Debug, Error)]
pub enum ExporterError {
    /// Writing the rendering failed.
    #[error("failed to write the {format} rendering")]
    Write {
        /// The format being written.
        format: &'static str,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A requested window is not one of the engine's windows.
    #[error("unknown window {window:?}; the windows are {known}")]
    UnknownWindow {
        /// The window asked for.
        window: String,
        /// The windows there are, comma-separated.
        known: String,
    },
    /// A series selection does not name every window of the history.
    #[error("the series selection names {given} windows; the history has {expected}")]
    SelectionWindows {
        /// The windows of the history.
        expected: usize,
        /// The windows the selection names.
        given: usize,
    },
    /// The exact sum of the customers not exposed (the `__other__` row) would need more
    /// than 28 significant digits. Never with an engine's view, whose every partial sum of
    /// the portfolio is exact.
    #[error("the sum of the customers not exposed at {at} (Unix seconds) cannot stay exact")]
    InexactSum {
        /// The step's stamp.
        at: i64,
    },
}
