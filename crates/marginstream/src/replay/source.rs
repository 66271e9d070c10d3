//! Where replay reads: JSONL files (or standard input), plain, gzip or zstd
//! (`marginstream_consumer::InputReader`), or the ledger topic itself.

use anyhow::Context;
use marginstream_consumer::kafka::TopicReader;
use marginstream_consumer::{InputReader, LineBatch, Offset, Partition, ReaderOptions};
use tracing::info;

use super::ReplayArgs;
use crate::config::Config;

/// The partition and offset of each line of a batch read from Kafka (empty for a file).
pub(super) type Origins = Vec<(Partition, Offset)>;

/// Where replay reads: JSONL files (or stdin), plain or compressed, or the topic itself.
pub(super) enum Source {
    File(InputReader),
    Kafka(TopicReader),
}

/// An opened source with what the progress and the rejected-events file need.
pub(super) struct Opened {
    pub(super) source: Source,
    /// The size of the input files, when known (not with --from-kafka or stdin).
    pub(super) total_bytes: Option<u64>,
    /// The input files as given, when there are several (a rejected record names its file).
    pub(super) files: Vec<String>,
}

impl Source {
    /// Opens what `args` names: the `--input` files in order, or the topic of `config`.
    pub(super) fn open(config: &Config, args: &ReplayArgs) -> anyhow::Result<Opened> {
        let max_event_bytes = config.preparer.limits().max_event_bytes;
        if args.input.is_empty() {
            let settings = config.kafka_settings();
            info!(topic = %settings.topic, brokers = %settings.brokers, "reading the topic from its beginning");
            return Ok(Opened {
                source: Source::Kafka(TopicReader::new(&settings, max_event_bytes + 1)?),
                total_bytes: None,
                files: Vec::new(),
            });
        }
        let reader = InputReader::open(
            &args.input,
            ReaderOptions {
                batch_bytes: 1 << 20,
                line_bytes_max: (max_event_bytes + 1).max(1 << 20),
                // Every line is a message: a blank one is rejected, not skipped.
                keep_blank_lines: true,
                // Full batches: a replay reads for throughput, not latency.
                eager: false,
            },
        )?;
        let files = if reader.len() > 1 {
            (0..reader.len())
                .map(|index| reader.path(index).display().to_string())
                .collect()
        } else {
            Vec::new()
        };
        Ok(Opened {
            total_bytes: reader.total_bytes(),
            files,
            source: Source::File(reader),
        })
    }

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
