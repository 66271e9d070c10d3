//! The consumer crate's one error type.

use thiserror::Error;

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
    /// A Kafka client call failed.
    #[error("kafka: failed to {what}")]
    Kafka {
        /// What was being done.
        what: String,
        /// The client's error.
        #[source]
        source: rdkafka::error::KafkaError,
    },
}
