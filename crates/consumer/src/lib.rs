//! marginstream's event sources: they turn an outside stream into batches of raw messages
//! for the parser. Nothing here validates events; that is `marginstream_model::parse`, run
//! by whoever receives the batches. The one JSON read here is the producer's
//! [`kafka::ledger_key`], which picks a line's `customer_id` (else `event_id`) as its message
//! key and leaves everything else to the parser on the consuming side.
//!
//! - [`jsonl`]: the JSONL file source (a file or stdin, one event per line) for
//!   `marginstream replay`: [`JsonlReader`] cuts the bytes into [`LineBatch`]es.
//! - [`input`]: the ledger files of `replay` and `produce`: several inputs read in order
//!   as one, each plain, gzip or zstd (told by its first bytes), a leading byte order mark
//!   dropped; [`InputReader`] hands each input's bytes to its own [`JsonlReader`].
//! - [`kafka`]: the Kafka side of `marginstream run`: a consumer group member whose
//!   partitions start where the application's state says ([`KafkaSource`]), the
//!   dead-letter producer that never drops a letter ([`DeadLetterSink`]), the topic reader
//!   of `replay --from-kafka` ([`kafka::TopicReader`]), the ledger producer and topic
//!   creation of the demo and tests.
//! - [`state`]: the state topic's records, written with acknowledgement and read back whole
//!   partitions at a time, and its creation (compacted) and checks.
//! - [`error`]: the crate's one error type.
//!
//! # Design decisions
//!
//! **Batches, not lines.** A source hands over one [`LineBatch`] of about a mebibyte at a
//! time: one buffer holding the bytes of many lines plus a small index of where each line
//! is. Per-line costs (allocation, a channel send, a wake-up of the parsing thread) would
//! otherwise dominate: a typical event is about 150 bytes.
//!
//! **Read straight into the batch.** The reader reads large chunks from the input directly
//! into the buffer of the batch it is building, finds line ends in place and records them.
//! When the batch is full its buffer is handed over as it is and only the bytes read past
//! the cut (at most one read) are copied into the next buffer. So a byte is normally copied
//! once, by the read itself.
//!
//! **Bounded memory whatever the input.** A batch is cut at the first line end after it
//! reaches its target size, and a line longer than `line_bytes_max` keeps only its first
//! `line_bytes_max` bytes: the rest is read and dropped, never buffered, and the line is
//! flagged with its full length so that the parser can reject it as oversized. A batch's
//! buffer therefore never exceeds `batch_bytes + line_bytes_max` plus one read chunk.
//!
//! **The format is told by the bytes.** Exports come compressed and split by month: an
//! input's first bytes say whether it is gzip or zstd, whatever its name, and it is
//! decompressed while it is read, into the same batches with the same bounds. A corrupt or
//! truncated one is an error naming the file and the byte offset in it, and ends the
//! reading: a truncated file never yields its cut last line as a line; see [`input`].
//!
//! **Bytes pass through unchanged.** Only the line end (`\n`, or `\r\n`) is removed (and,
//! by [`InputReader`], a UTF-8 byte order mark at the very start of an input), and blank
//! lines are skipped (but numbered). Invalid UTF-8 or broken JSON reaches the parser,
//! which rejects it with a reason and dead-letters it: nothing is dropped here silently.
#![deny(missing_docs)]

pub mod error;
pub mod input;
pub mod jsonl;
pub mod kafka;
pub mod state;

pub use error::ConsumerError;
pub use input::{Compression, InputBatch, InputReader};
pub use jsonl::{JsonlReader, LineBatch, LineRef, ReaderOptions};
pub use kafka::{
    DeadLetter, DeadLetterSink, KafkaSettings, KafkaSource, Offset, Partition, Polled, Rebalance,
    StartAt,
};
