//! The `marginstream` binary: the command line, logging and exit codes. Everything else is
//! the `marginstream` library.
//!
//! Exit codes: 0 success (a closed output pipe, as in `replay ... | head`, included), 1
//! failure, 2 invalid configuration or usage, or (`run`) a state built under other tagging
//! rules or rates with `ledger.on_rules_change = "refuse"`.

// Parsing and engine threads allocate and free customer ids across threads; mimalloc
// handles that far better than the system allocator (measured: a tenth of replay time).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::io::{self, IsTerminal};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, CommandFactory, Parser, Subcommand};
use marginstream::config::{self, Config, ConfigError};
use marginstream::fingerprint::RulesChanged;
use marginstream::generate::GenerateArgs;
use marginstream::kafka_tools::{self, ProduceArgs};
use marginstream::replay::{self, ReplayArgs};
use marginstream::{generate, http, web};

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
        produce: ProduceArgs,
    },
    /// Create kafka.topic, kafka.dlq_topic and kafka.state_topic if they do not exist.
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
    Generate(GenerateArgs),
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
    /// Loads the file, then the environment, then these flags, and validates.
    fn load(&self) -> Result<Config, ConfigError> {
        self.load_file(self.config.as_deref())
    }

    /// Loads `file` (instead of `--config`), then the environment, then these flags, and
    /// validates: `replay --compare-config OLD` gets OLD with the same overrides as NEW.
    fn load_file(&self, file: Option<&Path>) -> Result<Config, ConfigError> {
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
        config::load(file, std::env::vars(), &flags)
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

/// Returns `true` if the error comes from writing to a closed pipe (`| head`): the reader
/// has what it wanted, so the process ends quietly, as ripgrep's does.
fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
    })
}

/// Returns `true` if the error exits with code 2: the command line's or the configuration's
/// (`replay --compare-config` finds those only once both configurations are loaded), or
/// (`run`) a state built under other tagging rules or rates with
/// `ledger.on_rules_change = "refuse"`.
fn is_usage(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause.downcast_ref::<ConfigError>().is_some()
            || cause
                .downcast_ref::<replay::compare::UsageError>()
                .is_some()
            || cause.downcast_ref::<RulesChanged>().is_some()
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Standard input can be read once: `-` twice is a usage error, reported as clap's are.
    let inputs = match &cli.command {
        Command::Replay { replay, .. } => replay.input.as_slice(),
        Command::Produce { produce, .. } => produce.input.as_slice(),
        _ => &[],
    };
    if inputs.iter().filter(|path| path.as_os_str() == "-").count() > 1 {
        Cli::command()
            .error(
                clap::error::ErrorKind::ArgumentConflict,
                "--input - (standard input) can be given only once",
            )
            .exit();
    }
    init_logging(&cli.log_level);
    let config = match &cli.command {
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
    let web = match (&cli.command, &config) {
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
    let result = match (&cli.command, config) {
        (
            Command::Replay {
                replay,
                config: args,
            },
            Some(config),
        ) => match &replay.compare_config {
            None => replay::run(&config, replay),
            Some(old) => match args.load_file(Some(old)) {
                Ok(old) => replay::compare::run(&old, &config, replay),
                Err(error) => {
                    eprintln!("error: {error}");
                    return ExitCode::from(2);
                }
            },
        },
        (Command::CheckConfig(_), Some(config)) => {
            let web = web.map_or_else(
                || "plain HTTP, no authentication".to_owned(),
                |web| format!("{}: {}", web.file.display(), web.describe()),
            );
            let description = config.describe();
            let (summary, rest) = description.split_once('\n').unwrap_or((&description, ""));
            println!("{summary}\n# web: {web}\n{rest}");
            Ok(())
        }
        (Command::Run(_), Some(config)) => http::serve(&config, web),
        (Command::Produce { produce, .. }, Some(config)) => kafka_tools::produce(&config, produce),
        (Command::CreateTopics { partitions, .. }, Some(config)) => {
            kafka_tools::create(&config, *partitions)
        }
        (Command::Generate(args), _) => generate::run(args),
        _ => unreachable!("every command that needs a configuration has one"),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) if is_broken_pipe(&error) => ExitCode::SUCCESS,
        Err(error) if is_usage(&error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
