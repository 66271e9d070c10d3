//! `marginstream run`: the loop on its thread ([`crate::live::LiveHandle`]), the HTTP
//! endpoint (`/metrics`, `/healthz`, `/readyz`) and shutdown on SIGTERM or SIGINT.
//!
//! The HTTP side runs on a current-thread tokio runtime on the main thread. A scrape asks
//! the loop for the contract's families and waits for them on a blocking thread, so the
//! runtime never blocks; the probes read the loop's status, never the loop itself.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tracing::{error, info};

use crate::config::Config;
use crate::live::{LiveHandle, Readiness, ScrapeError, Scraper, Status};

/// How long `/metrics` waits for the loop before answering 503.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(30);

/// How often the server checks whether the loop has ended.
const LOOP_CHECK_INTERVAL: Duration = Duration::from_millis(100);

/// The content type of the Prometheus text exposition format.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What the handlers share.
#[derive(Clone)]
struct AppState {
    scraper: Scraper,
    status: Arc<Status>,
}

/// Returns the router of the endpoint: `/metrics`, `/healthz` and `/readyz` over `handle`.
pub fn router(handle: &LiveHandle) -> Router {
    let state = AppState {
        scraper: handle.scraper(),
        status: Arc::clone(handle.status()),
    };
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(state)
}

async fn metrics(State(state): State<AppState>) -> Response {
    let scraper = state.scraper.clone();
    let result = tokio::task::spawn_blocking(move || scraper.scrape(SCRAPE_TIMEOUT)).await;
    match result {
        Ok(Ok(body)) => ([(header::CONTENT_TYPE, PROMETHEUS_TEXT)], body).into_response(),
        Ok(Err(ScrapeError::Busy)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "too many scrapes in flight\n",
        )
            .into_response(),
        _ => (
            StatusCode::SERVICE_UNAVAILABLE,
            "the consumer loop did not answer\n",
        )
            .into_response(),
    }
}

async fn healthz(State(state): State<AppState>) -> Response {
    if state.status.finished.load(Ordering::Acquire) {
        (StatusCode::SERVICE_UNAVAILABLE, "stopped\n").into_response()
    } else {
        (StatusCode::OK, "ok\n").into_response()
    }
}

async fn readyz(State(state): State<AppState>) -> Response {
    let readiness = state.status.readiness();
    let code = if readiness == Readiness::Ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, format!("{}\n", readiness.describe())).into_response()
}

/// Resolves on SIGTERM or SIGINT.
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

/// `marginstream run`: serves the endpoint while the loop runs, until SIGTERM or SIGINT (or
/// the loop ends on its own, on an error); then waits for the loop's final checkpoint.
///
/// # Errors
///
/// When `metrics.listen` cannot be bound, or the loop fails.
pub fn serve(config: &Config) -> anyhow::Result<()> {
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
        "serving /metrics, /healthz and /readyz"
    );
    let handle = LiveHandle::spawn(config.live_settings())?;
    let app = router(&handle);
    let status = Arc::clone(handle.status());
    let stop = Arc::clone(handle.shutdown_flag());
    runtime.block_on(async move {
        let loop_done = async move {
            while !status.finished.load(Ordering::Acquire) {
                tokio::time::sleep(LOOP_CHECK_INTERVAL).await;
            }
        };
        let server = axum::serve(listener, app).with_graceful_shutdown(async move {
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
    handle.stop();
    handle.join()
}
