//! The `marginstream` binary: command line, configuration and wiring.
//!
//! - `config`: the TOML configuration, its overrides and its validation.
//! - `replay`: the engine over a JSONL ledger.
//! - `generate`: a deterministic synthetic ledger.
//!
//! Errors are `anyhow` here and only here; `main` prints them with their causes and maps
//! them to an exit code: 0 success, 1 failure, 2 invalid configuration or usage.

// Parsing and engine threads allocate and free customer ids across threads; mimalloc
// handles that far better than the system allocator (measured: a tenth of replay time).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod checkpoint;
mod config;
mod generate;
mod live;
#[cfg(test)]
mod live_faults;
mod replay;
mod serve;
mod web;

use std::fs::File;
use std::io::{self, BufWriter, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use marginstream_exporter::{
    json::render_json, render_prometheus, table::render_table, RenderOptions,
};
use marginstream_model::{EventType, Outcome};
use tracing::info;

use crate::config::{Config, ConfigError};
use crate::replay::{Format, ReplayArgs};

/// marginstream: per-customer gross margin (GM-M, GM-O and the Services Drag between them)
/// from a Commercial Event Ledger of Revenue_Event and Cost_Event messages, as exact decimals,
/// published as Prometheus gauges.
///
/// Start with `marginstream generate --customers 5 --days 10 > ledger.jsonl` and
/// `marginstream replay --input ledger.jsonl --format table`.
#[derive(Debug, Parser)]
#[command(
    name = "marginstream",
    version,
    about,
    long_about,
    max_term_width = 100
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log filter (RUST_LOG syntax), e.g. `debug` or `marginstream=debug`.
    #[arg(long, global = true, default_value = "info", env = "RUST_LOG")]
    log_level: String,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Consume the ledger topic from Kafka and serve /metrics, /healthz and /readyz.
    ///
    /// Joins kafka.group_id, keeps one engine per owned partition, dead-letters rejected
    /// messages to kafka.dlq_topic and checkpoints to state.dir. Stops on SIGTERM or
    /// SIGINT after a final checkpoint.
    Run(ConfigArgs),
    /// Produce a JSONL ledger to kafka.topic, each line keyed by its customer_id.
    Produce {
        #[command(flatten)]
        config: ConfigArgs,
        #[command(flatten)]
        produce: serve::ProduceArgs,
    },
    /// Create kafka.topic and kafka.dlq_topic if they do not exist.
    CreateTopics {
        #[command(flatten)]
        config: ConfigArgs,
        /// Partitions of kafka.topic.
        #[arg(long, default_value_t = 4)]
        partitions: i32,
    },
    /// Replay a JSONL ledger in event time and print the final gauges.
    ///
    /// Rejected lines go to --rejected-out with their reason. Example:
    /// `marginstream replay --input ledger.jsonl --format table`.
    Replay {
        #[command(flatten)]
        config: ConfigArgs,
        #[command(flatten)]
        replay: ReplayArgs,
    },
    /// Validate a configuration and print the effective one (all problems at once).
    CheckConfig(ConfigArgs),
    /// Write a deterministic synthetic ledger as JSONL (to standard output by default).
    Generate(generate::GenerateArgs),
}

/// The configuration file and the flags that override its common keys. Environment
/// variables `MARGINSTREAM_<SECTION>__<KEY>` override the file; flags override both.
#[derive(Debug, Clone, Args)]
struct ConfigArgs {
    /// The TOML configuration file; without it every key takes its default.
    #[arg(long, short, value_name = "FILE")]
    config: Option<PathBuf>,
    /// ledger.windows, comma-separated, e.g. `24h,7d,30d`.
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    windows: Option<Vec<String>>,
    /// ledger.bucket, e.g. `1h`.
    #[arg(long, value_name = "DURATION")]
    bucket: Option<String>,
    /// ledger.clock: `event` or `wall`.
    #[arg(long, value_name = "CLOCK")]
    clock: Option<String>,
    /// ledger.reporting_currency, e.g. `EUR`.
    #[arg(long, value_name = "CODE")]
    reporting_currency: Option<String>,
    /// ledger.max_customers.
    #[arg(long, value_name = "N")]
    max_customers: Option<u64>,
    /// kafka.brokers, e.g. `127.0.0.1:9092`.
    #[arg(long, value_name = "LIST")]
    brokers: Option<String>,
    /// kafka.topic.
    #[arg(long, value_name = "TOPIC")]
    topic: Option<String>,
    /// metrics.listen, e.g. `127.0.0.1:9898`.
    #[arg(long, value_name = "ADDRESS")]
    listen: Option<String>,
    /// kafka.group_id.
    #[arg(long, value_name = "GROUP")]
    group_id: Option<String>,
    /// kafka.dlq_topic.
    #[arg(long, value_name = "TOPIC")]
    dlq_topic: Option<String>,
    /// state.dir.
    #[arg(long, value_name = "DIR")]
    state_dir: Option<String>,
}

fn quoted(text: &str) -> String {
    toml::Value::String(text.to_owned()).to_string()
}

impl ConfigArgs {
    fn load(&self) -> Result<Config, ConfigError> {
        let mut flags: Vec<(&str, String)> = Vec::new();
        if let Some(windows) = &self.windows {
            let list: Vec<String> = windows.iter().map(|w| quoted(w.trim())).collect();
            flags.push(("ledger.windows", format!("[{}]", list.join(","))));
        }
        for (key, value) in [
            ("ledger.bucket", &self.bucket),
            ("ledger.clock", &self.clock),
            ("ledger.reporting_currency", &self.reporting_currency),
            ("kafka.brokers", &self.brokers),
            ("kafka.topic", &self.topic),
            ("metrics.listen", &self.listen),
            ("kafka.group_id", &self.group_id),
            ("kafka.dlq_topic", &self.dlq_topic),
            ("state.dir", &self.state_dir),
        ] {
            if let Some(value) = value {
                flags.push((key, quoted(value)));
            }
        }
        if let Some(max) = self.max_customers {
            flags.push(("ledger.max_customers", max.to_string()));
        }
        config::load(self.config.as_deref(), std::env::vars(), &flags)
    }
}

fn init_logging(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr)
        .with_target(false)
        .with_ansi(io::stderr().is_terminal())
        .init();
}

fn output(path: Option<&PathBuf>) -> anyhow::Result<Box<dyn Write>> {
    Ok(match path {
        Some(path) => Box::new(BufWriter::new(
            File::create(path).with_context(|| format!("cannot create {}", path.display()))?,
        )),
        None => Box::new(BufWriter::new(io::stdout().lock())),
    })
}

fn run_replay(config: &Config, args: &ReplayArgs) -> anyhow::Result<()> {
    let (mut engine, summary) = replay::replay(config, args)?;
    let counters = summary.counters;
    let count = |outcome| {
        EventType::ALL
            .iter()
            .map(|t| counters.events(*t, outcome))
            .sum::<u64>()
    };
    let rejected: u64 = counters.rejected.iter().sum();
    let seconds = summary.elapsed.as_secs_f64();
    info!(
        lines = summary.lines,
        bytes = summary.bytes,
        applied = count(Outcome::Applied),
        late = count(Outcome::Late),
        duplicate = count(Outcome::Duplicate),
        rejected,
        customers = engine.customer_count(),
        seconds = format!("{seconds:.3}"),
        events_per_second = (counters.total() as f64 / seconds.max(1e-9)) as u64,
        "replay finished"
    );
    if rejected > 0 {
        info!(rejected, path = %args.rejected_out.display(), "rejected lines written");
    }
    let view = engine.view();
    let mut out = output(args.output.as_ref())?;
    match args.format {
        Format::Prometheus => {
            let mut text = Vec::new();
            render_prometheus(&view, RenderOptions::default(), &mut text);
            out.write_all(&text)?;
        }
        Format::Json => render_json(&view, &mut out)?,
        Format::Table => {
            let labels = marginstream_model::GaugeView::window_labels(&view);
            let window = args
                .window
                .clone()
                .unwrap_or_else(|| labels.last().cloned().unwrap_or_default());
            render_table(&view, &window, args.limit, &mut out)?;
        }
    }
    out.flush().context("cannot write the output")?;
    Ok(())
}

fn run_generate(args: &generate::GenerateArgs) -> anyhow::Result<()> {
    let stats = match &args.output {
        Some(path) => {
            let mut file = BufWriter::new(
                File::create(path).with_context(|| format!("cannot create {}", path.display()))?,
            );
            let stats = generate::generate(args, &mut file)?;
            file.flush()?;
            stats
        }
        None => {
            let stdout = io::stdout();
            let mut lock = stdout.lock();
            let result = generate::generate(args, &mut lock);
            match result {
                // A closed pipe (`| head`) is a normal way to stop a stream.
                Err(error) if error.kind() == io::ErrorKind::BrokenPipe => return Ok(()),
                other => other?,
            }
        }
    };
    info!(
        lines = stats.lines,
        events = stats.events,
        duplicates = stats.duplicates,
        bad = stats.bad,
        "ledger generated"
    );
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.log_level);
    let loaded = match &cli.command {
        Command::Run(args)
        | Command::CheckConfig(args)
        | Command::Replay { config: args, .. }
        | Command::Produce { config: args, .. }
        | Command::CreateTopics { config: args, .. } => match args.load() {
            Ok(config) => Some(config),
            Err(error) => {
                eprintln!("error: {error}");
                return ExitCode::from(2);
            }
        },
        Command::Generate(_) => None,
    };
    // The web configuration's checks read files, so they run after config::validate, for
    // the two commands that serve or check it; a problem is a configuration error (2).
    let web = match (&cli.command, &loaded) {
        (Command::Run(_) | Command::CheckConfig(_), Some(config)) => {
            match web::load_configured(config) {
                Ok(web) => web,
                Err(error) => {
                    eprintln!("error: {error}");
                    return ExitCode::from(2);
                }
            }
        }
        _ => None,
    };
    let result = match (&cli.command, loaded) {
        (Command::Replay { replay, .. }, Some(config)) => run_replay(&config, replay),
        (Command::CheckConfig(_), Some(config)) => {
            let text = toml::to_string_pretty(&config.raw).unwrap_or_default();
            let web = web.map_or_else(
                || "plain HTTP, no authentication".to_owned(),
                |web| format!("{}: {}", web.file.display(), web.describe()),
            );
            println!(
                "# configuration is valid: {} tagging rules, /metrics on {}, topic {} via {}\n# web: {web}\n# effective values:\n{text}",
                config.rules.len(),
                config.listen,
                config.kafka.topic,
                config.kafka.brokers
            );
            Ok(())
        }
        (Command::Run(_), Some(config)) => serve::run(&config, web),
        (Command::Produce { produce, .. }, Some(config)) => serve::produce(&config, produce),
        (Command::CreateTopics { partitions, .. }, Some(config)) => {
            serve::create(&config, *partitions)
        }
        (Command::Generate(args), _) => run_generate(args),
        _ => unreachable!("every command that needs a configuration has one"),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
