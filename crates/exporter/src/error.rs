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
}
