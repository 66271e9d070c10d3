//! `marginstream run`'s wiring: the loop thread ([`crate::live`]), the HTTP endpoint, and
//! shutdown on SIGTERM or SIGINT. Also `produce` and `create-topics`, the Kafka helpers of
//! the demo, the tests and the benchmarks.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use marginstream_aggregator::ClockMode;
use marginstream_consumer::kafka::{create_topics, LedgerProducer};
use marginstream_consumer::KafkaSettings;
use tracing::{error, info};

use crate::config::Config;
use crate::live::{self, LiveSettings, Readiness, Request, Status};

/// How long `/metrics` waits for the loop before answering 503.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(30);

/// The Kafka settings of a configuration.
pub fn kafka_settings(config: &Config) -> KafkaSettings {
    KafkaSettings {
        brokers: config.kafka.brokers.clone(),
        topic: config.kafka.topic.clone(),
        group_id: config.kafka.group_id.clone(),
        dlq_topic: config.kafka.dlq_topic.clone(),
        properties: config.kafka.properties.clone(),
        statistics_interval: Duration::from_secs(5),
    }
}

#[derive(Clone)]
struct AppState {
    requests: crossbeam_channel::Sender<Request>,
    status: Arc<Status>,
}

async fn metrics(State(state): State<AppState>) -> axum::response::Response {
    let (reply, answer) = crossbeam_channel::bounded(1);
    if state.requests.try_send(Request::Scrape(reply)).is_err() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "too many scrapes in flight\n",
        )
            .into_response();
    }
    let result = tokio::task::spawn_blocking(move || answer.recv_timeout(SCRAPE_TIMEOUT)).await;
    match result {
        Ok(Ok(body)) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            body,
        )
            .into_response(),
        _ => (
            StatusCode::SERVICE_UNAVAILABLE,
            "the consumer loop did not answer\n",
        )
            .into_response(),
    }
}

async fn healthz(State(state): State<AppState>) -> axum::response::Response {
    if state.status.finished.load(Ordering::Acquire) {
        (StatusCode::SERVICE_UNAVAILABLE, "stopped\n").into_response()
    } else {
        (StatusCode::OK, "ok\n").into_response()
    }
}

async fn readyz(State(state): State<AppState>) -> axum::response::Response {
    let readiness = state.status.readiness();
    let code = if readiness == Readiness::Ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, format!("{}\n", readiness.describe())).into_response()
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .expect("installing a SIGTERM handler succeeds on unix");
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}

/// `marginstream run`: until SIGTERM or SIGINT. `web` is the loaded
/// `metrics.web_config_file` (TLS, basic auth), if any.
pub fn run(config: &Config, web: Option<Arc<crate::web::WebConfig>>) -> anyhow::Result<()> {
    let settings = LiveSettings {
        kafka: kafka_settings(config),
        engine: config.engine_for(ClockMode::Wall),
        preparer: config.preparer.clone(),
        state_dir: config.state_dir.clone(),
        checkpoint_interval: config.checkpoint_interval,
        dlq_pending_max: config.kafka.dlq_pending_max,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind(config.listen))
        .with_context(|| format!("cannot listen on metrics.listen = {}", config.listen))?;
    info!(
        listen = %config.listen,
        topic = %config.kafka.topic,
        brokers = %config.kafka.brokers,
        group = %config.kafka.group_id,
        web = %web.as_ref().map_or_else(|| "plain HTTP, no authentication".to_owned(), |web| web.describe()),
        "serving /metrics, /healthz and /readyz"
    );
    let shutdown = Arc::new(AtomicBool::new(false));
    let status = Arc::new(Status::default());
    // Scrapes queue here; a handful in flight is plenty for Prometheus's one at a time.
    let (requests, receiver) = crossbeam_channel::bounded(8);
    let loop_thread = {
        let shutdown = Arc::clone(&shutdown);
        let status = Arc::clone(&status);
        std::thread::Builder::new()
            .name("ledger-loop".to_owned())
            .spawn(move || live::run(settings, shutdown, receiver, status))
            .context("cannot start the consumer loop thread")?
    };
    let state = AppState {
        requests,
        status: Arc::clone(&status),
    };
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(state);
    let stop = Arc::clone(&shutdown);
    let status_for_server = Arc::clone(&status);
    runtime.block_on(async move {
        let loop_done = async move {
            while !status_for_server.finished.load(Ordering::Acquire) {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        };
        let server = crate::web::serve(listener, app, web, async move {
            tokio::select! {
                _ = shutdown_signal() => info!("signal received: final checkpoint, commit, leaving the group"),
                _ = loop_done => {}
            }
            stop.store(true, Ordering::Release);
        });
        if let Err(error) = server.await {
            error!(error = %error, "the HTTP server failed");
        }
    });
    shutdown.store(true, Ordering::Release);
    match loop_thread.join() {
        Ok(result) => result,
        Err(_) => anyhow::bail!("the consumer loop panicked"),
    }
}

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
pub fn produce(config: &Config, args: &ProduceArgs) -> anyhow::Result<()> {
    let settings = kafka_settings(config);
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
        if let Some(rate) = args.rate.filter(|r| *r > 0) {
            let due = Duration::from_secs_f64(count as f64 / rate as f64);
            let elapsed = started.elapsed();
            if due > elapsed {
                std::thread::sleep(due - elapsed);
            }
        }
        if last_log.elapsed() >= Duration::from_secs(10) {
            last_log = Instant::now();
            info!(messages = count, topic = %settings.topic, "producing");
        }
    }
    producer.flush(Duration::from_secs(60))?;
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
pub fn create(config: &Config, partitions: i32) -> anyhow::Result<()> {
    let settings = kafka_settings(config);
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
