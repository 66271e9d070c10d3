//! The Kafka helpers of the demo, the tests and the benchmarks: `marginstream produce` (a
//! JSONL ledger into `kafka.topic`) and `marginstream create-topics`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use marginstream_consumer::kafka::{create_topics, LedgerProducer};
use marginstream_consumer::state::{create_topics_with, TopicSpec};
use marginstream_consumer::{InputReader, ReaderOptions};
use tracing::info;

use crate::config::Config;
use crate::live::STATE_TOPIC_CONFIG;
use crate::pacer::Pacer;

/// How often `produce` logs its progress.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(10);

/// How long `produce` waits for the last acknowledgements.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(60);

/// Arguments of `marginstream produce`.
#[derive(Debug, Clone, clap::Args)]
pub struct ProduceArgs {
    /// The JSONL ledger to produce, `-` for standard input; plain, gzip or zstd, as for
    /// `replay --input`, and given several times for several files, produced in order. Each
    /// line is one message, keyed by its `customer_id` (else its `event_id`).
    #[arg(long, short, value_name = "PATH", default_value = "-")]
    pub input: Vec<PathBuf>,
    /// At most this many messages per second (default: as fast as possible).
    #[arg(long, value_name = "N")]
    pub rate: Option<u64>,
}

/// `marginstream produce`: a JSONL ledger into `kafka.topic`.
///
/// # Errors
///
/// When an input cannot be opened or read (a corrupt compressed file: naming the file and
/// the offset), a line is longer than 16 MiB, the producer cannot be created, or a message
/// is not acknowledged within a minute of the end.
pub fn produce(config: &Config, args: &ProduceArgs) -> anyhow::Result<()> {
    // The reader of replay: the same formats, and the same lines (a blank one is a message).
    // Opened first, so that a missing file fails before the broker is contacted. Eager: a
    // line from a live pipe goes on at once, not when a batch is full.
    let options = ReaderOptions {
        keep_blank_lines: true,
        eager: true,
        ..ReaderOptions::default()
    };
    let mut reader = InputReader::open(&args.input, options)?;
    let settings = config.kafka_settings();
    let producer = LedgerProducer::new(&settings)?;
    let mut pacer = args.rate.and_then(Pacer::new);
    let started = Instant::now();
    let mut count = 0u64;
    let mut last_log = Instant::now();
    while let Some(batch) = reader.next_batch()? {
        for (line, bytes) in batch.lines.iter() {
            if let Some(length) = line.truncated_from {
                bail!(
                    "{} line {}: {length} bytes, more than the {} a line may have; nothing after it was produced",
                    reader.path(batch.input).display(),
                    line.number,
                    options.line_bytes_max
                );
            }
            producer.send(bytes)?;
            count += 1;
            if let Some(pacer) = pacer.as_mut() {
                if pacer.count() {
                    pacer.wait();
                }
            }
            if last_log.elapsed() >= PROGRESS_INTERVAL {
                last_log = Instant::now();
                info!(messages = count, topic = %settings.topic, "producing");
            }
        }
        reader.recycle(batch.lines);
    }
    producer.flush(FLUSH_TIMEOUT)?;
    let seconds = started.elapsed().as_secs_f64();
    info!(
        messages = count,
        seconds = format!("{seconds:.2}"),
        per_second = (count as f64 / seconds.max(1e-9)) as u64,
        topic = %settings.topic,
        "produced"
    );
    Ok(())
}

/// `marginstream create-topics`: `kafka.topic` with `partitions` partitions,
/// `kafka.dlq_topic` with one, and the state topic (unless turned off) with `partitions`,
/// compacted, if they do not exist. One replica each, for the demo and the tests; the
/// state topic as `run` creates it otherwise.
///
/// # Errors
///
/// When the broker cannot be reached or refuses to create a topic.
pub fn create(config: &Config, partitions: i32) -> anyhow::Result<()> {
    let settings = config.kafka_settings();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(create_topics(
        &settings,
        &[(&settings.topic, partitions), (&settings.dlq_topic, 1)],
    ))?;
    if let Some(state_topic) = &config.state_topic {
        let spec = TopicSpec {
            name: state_topic,
            partitions,
            replication: Some(1),
            config: STATE_TOPIC_CONFIG.to_vec(),
        };
        runtime.block_on(create_topics_with(&settings, &[spec]))?;
    }
    info!(
        topic = %settings.topic,
        partitions,
        dlq_topic = %settings.dlq_topic,
        state_topic = config.state_topic.as_deref().unwrap_or("(off)"),
        "topics ready"
    );
    Ok(())
}
