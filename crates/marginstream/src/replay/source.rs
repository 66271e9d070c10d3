//! Where replay reads: a JSONL file (or standard input), or the ledger topic itself.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use anyhow::Context;
use marginstream_consumer::kafka::TopicReader;
use marginstream_consumer::{JsonlReader, LineBatch, Offset, Partition};

/// The partition and offset of each line of a batch read from Kafka (empty for a file).
pub(super) type Origins = Vec<(Partition, Offset)>;

/// Where replay reads: a JSONL file (or stdin), or the topic itself.
pub(super) enum Source {
    File(JsonlReader<Box<dyn Read + Send>>),
    Kafka(TopicReader),
}

impl Source {
    pub(super) fn next_batch(&mut self) -> anyhow::Result<Option<(LineBatch, Origins)>> {
        match self {
            Source::File(reader) => Ok(reader
                .next_batch()
                .context("cannot read the ledger")?
                .map(|batch| (batch, Vec::new()))),
            Source::Kafka(reader) => Ok(reader
                .next_batch(1 << 20)
                .context("cannot read the topic")?
                .map(|topic| (topic.batch, topic.origins))),
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

pub(super) fn open_input(path: &Path) -> anyhow::Result<(Box<dyn Read + Send>, Option<u64>)> {
    if path == Path::new("-") {
        return Ok((Box::new(io::stdin()), None));
    }
    let file =
        File::open(path).with_context(|| format!("cannot open the ledger {}", path.display()))?;
    let size = file
        .metadata()
        .ok()
        .filter(|m| m.is_file())
        .map(|m| m.len());
    Ok((Box::new(file), size))
}
