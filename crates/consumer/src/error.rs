//! The consumer crate's one error type.

use std::io;
use std::path::PathBuf;

use thiserror::Error;

use crate::input::Compression;

/// Errors of reading an event source.
///
/// A bad line is not an error here: it is passed on byte for byte and the parser rejects it.
/// What remains are failures of the source itself, which stop the stream.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ConsumerError {
    /// Reading the input failed. An error of kind `Interrupted` never gets here: it is
    /// retried. Calling [`JsonlReader::next_batch`](crate::JsonlReader::next_batch) again
    /// retries the read and loses nothing, which helps with transient errors like
    /// `WouldBlock` or `TimedOut`.
    #[error("failed to read the input after {offset} bytes")]
    Read {
        /// Bytes read from the input before the failed read.
        offset: u64,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// An input file could not be opened.
    #[error("cannot open the ledger {}", path.display())]
    Open {
        /// The path as given.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// Reading one input of an [`InputReader`](crate::input::InputReader) failed. For a
    /// plain input, calling again retries the read (as with [`ConsumerError::Read`]); a
    /// compressed one stops, because a decoder cannot resume after a failed read.
    #[error("cannot read {} at byte {offset}", path.display())]
    Input {
        /// The path as given (`-` for standard input).
        path: PathBuf,
        /// Bytes of the file consumed before the failed read.
        offset: u64,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// A compressed input is corrupt or truncated (the decoder's error says which), or a
    /// zstd frame needs a larger window than the reader allows. The reader stops there: the
    /// lines decompressed before the error in the batch in progress, the partial last one
    /// included, are never returned.
    #[error(
        "cannot decompress {} ({compression}) at byte {offset} of the file",
        path.display()
    )]
    Decompress {
        /// The path as given (`-` for standard input).
        path: PathBuf,
        /// How the input is compressed.
        compression: Compression,
        /// Compressed bytes of the file consumed when the decoder found the error: the bad
        /// bytes are at or shortly before it; for a truncated file it is the file's size.
        offset: u64,
        /// The decoder's error.
        #[source]
        source: io::Error,
    },
    /// An input is compressed in a format that is not read (recognised by its magic bytes,
    /// so that it is not read as lines of garbage).
    #[error(
        "{} is compressed with {format}, which marginstream does not read: decompress it first, or recompress it with gzip or zstd",
        path.display()
    )]
    UnsupportedCompression {
        /// The path as given.
        path: PathBuf,
        /// The format, e.g. `xz`.
        format: &'static str,
    },
    /// Standard input (`-`) was given more than once in a list of inputs.
    #[error("standard input (-) can be read only once, but it is given {count} times")]
    StdinRepeated {
        /// How many times `-` was given.
        count: usize,
    },
    /// A Kafka client call failed.
    #[error("kafka: failed to {what}")]
    Kafka {
        /// What was being done.
        what: String,
        /// The client's error.
        #[source]
        source: rdkafka::error::KafkaError,
    },
    /// librdkafka refused a queue the source reads messages from in batches.
    #[error("librdkafka: {0}")]
    Queue(String),
}
