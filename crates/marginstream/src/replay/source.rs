//! Where replay reads: JSONL files (or standard input), plain, gzip or zstd
//! (`marginstream_consumer::InputReader`), or the ledger topic itself.

use anyhow::Context;
use marginstream_consumer::kafka::TopicReader;
use marginstream_consumer::{InputReader, LineBatch, Offset, Partition};

/// The partition and offset of each line of a batch read from Kafka (empty for a file).
pub(super) type Origins = Vec<(Partition, Offset)>;

/// Where replay reads: JSONL files (or stdin), plain or compressed, or the topic itself.
pub(super) enum Source {
    File(InputReader),
    Kafka(TopicReader),
}

impl Source {
    /// Returns the next batch, the origin of each line (from Kafka) and the index of the
    /// input file (0 from Kafka).
    pub(super) fn next_batch(&mut self) -> anyhow::Result<Option<(LineBatch, Origins, usize)>> {
        match self {
            // The error names the file and the byte offset in it.
            Source::File(reader) => Ok(reader
                .next_batch()?
                .map(|batch| (batch.lines, Vec::new(), batch.input))),
            Source::Kafka(reader) => Ok(reader
                .next_batch(1 << 20)
                .context("cannot read the topic")?
                .map(|topic| (topic.batch, topic.origins, 0))),
        }
    }

    pub(super) fn recycle(&mut self, batch: LineBatch) {
        if let Source::File(reader) = self {
            reader.recycle(batch);
        }
    }

    pub(super) fn lines_read(&self) -> u64 {
        match self {
            Source::File(reader) => reader.lines_read(),
            Source::Kafka(reader) => reader.messages_read(),
        }
    }

    pub(super) fn bytes_read(&self, fallback: u64) -> u64 {
        match self {
            Source::File(reader) => reader.bytes_read(),
            Source::Kafka(_) => fallback,
        }
    }
}
