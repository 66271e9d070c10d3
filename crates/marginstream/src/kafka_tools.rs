//! The Kafka helpers of the demo, the tests and the benchmarks: `marginstream produce` (a
//! JSONL ledger into `kafka.topic`) and `marginstream create-topics`.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use marginstream_consumer::kafka::{create_topics, LedgerProducer};
use tracing::info;

use crate::config::Config;
use crate::pacer::Pacer;

/// How often `produce` logs its progress.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(10);

/// How long `produce` waits for the last acknowledgements.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(60);

/// Arguments of `marginstream produce`.
#[derive(Debug, Clone, clap::Args)]
pub struct ProduceArgs {
    /// The JSONL ledger to produce, `-` for standard input. Each line is one message, keyed
    /// by its `customer_id` (else its `event_id`).
    #[arg(long, short, value_name = "PATH", default_value = "-")]
    pub input: PathBuf,
    /// At most this many messages per second (default: as fast as possible).
    #[arg(long, value_name = "N")]
    pub rate: Option<u64>,
}

/// `marginstream produce`: a JSONL ledger into `kafka.topic`.
///
/// # Errors
///
/// When the input cannot be read, the producer cannot be created, or a message is not
/// acknowledged within a minute of the end.
pub fn produce(config: &Config, args: &ProduceArgs) -> anyhow::Result<()> {
    let settings = config.kafka_settings();
    let producer = LedgerProducer::new(&settings)?;
    let input: Box<dyn std::io::Read> = if args.input.as_os_str() == "-" {
        Box::new(std::io::stdin())
    } else {
        Box::new(
            std::fs::File::open(&args.input)
                .with_context(|| format!("cannot open {}", args.input.display()))?,
        )
    };
    let mut reader = BufReader::with_capacity(1 << 20, input);
    let mut pacer = args.rate.and_then(Pacer::new);
    let started = Instant::now();
    let mut line = Vec::new();
    let mut count = 0u64;
    let mut last_log = Instant::now();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        if line.last() == Some(&b'\n') {
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
        }
        producer.send(&line)?;
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

/// `marginstream create-topics`: `kafka.topic` with `partitions` partitions and
/// `kafka.dlq_topic` with one, if they do not exist.
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
    info!(topic = %settings.topic, partitions, dlq_topic = %settings.dlq_topic, "topics ready");
    Ok(())
}
