//! `marginstream run`: the loop on its thread ([`crate::live::LiveHandle`]), the HTTP
//! endpoint (`/metrics`, `/healthz`, `/readyz`, and the query API under `/api/v1`, see
//! [`api`]) and shutdown on SIGTERM or SIGINT.
//!
//! The HTTP side runs on a current-thread tokio runtime on the main thread. A scrape renders
//! the readers' current snapshot (`crate::published`) on a blocking thread, so the runtime
//! never blocks and the loop never waits; the probes read the loop's status.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use tracing::{error, info};

pub mod api;

use crate::config::Config;
use crate::live::{LiveHandle, Readiness, Shared};

/// How often the server checks whether the loop has ended.
const LOOP_CHECK_INTERVAL: Duration = Duration::from_millis(100);

/// The content type of the Prometheus text exposition format.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Returns the router of the endpoint over what the loop shares: `/metrics`, `/healthz`,
/// `/readyz` and the query API.
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/api/v1/customers", get(api::customers))
        .route("/api/v1/customers/{customer_id}", get(api::customer))
        .route("/api/v1/portfolio", get(api::portfolio))
        .with_state(shared)
}

/// `/metrics`: rendered from the current snapshot on a blocking thread (a large exposition
/// takes a while), never by the loop.
async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    match tokio::task::spawn_blocking(move || shared.scrape_chunks()).await {
        Ok(chunks) => (
            [(header::CONTENT_TYPE, PROMETHEUS_TEXT)],
            Body::new(ChunkedText::new(chunks)),
        )
            .into_response(),
        Err(error) => {
            error!(error = %error, "rendering /metrics failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "rendering failed\n").into_response()
        }
    }
}

/// A response body sent as the chunks it is made of, without joining them, with its exact
/// length (so the response has a `Content-Length`).
struct ChunkedText {
    chunks: std::collections::VecDeque<Bytes>,
    remaining: u64,
}

impl ChunkedText {
    fn new(chunks: Vec<Bytes>) -> ChunkedText {
        ChunkedText {
            remaining: chunks.iter().map(|chunk| chunk.len() as u64).sum(),
            chunks: chunks.into(),
        }
    }
}

impl http_body::Body for ChunkedText {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        let next = self.chunks.pop_front();
        if let Some(chunk) = &next {
            self.remaining -= chunk.len() as u64;
        }
        std::task::Poll::Ready(next.map(|chunk| Ok(http_body::Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.chunks.is_empty()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.remaining)
    }
}

async fn healthz(State(shared): State<Arc<Shared>>) -> Response {
    if shared.status.finished.load(Ordering::Acquire) {
        (StatusCode::SERVICE_UNAVAILABLE, "stopped\n").into_response()
    } else {
        (StatusCode::OK, "ok\n").into_response()
    }
}

async fn readyz(State(shared): State<Arc<Shared>>) -> Response {
    let readiness = shared.status.readiness();
    let code = if readiness == Readiness::Ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, format!("{}\n", shared.status.describe())).into_response()
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
/// the loop ends on its own, on an error); then waits for the loop's final checkpoint. `web`
/// is the loaded `metrics.web_config_file` (TLS, basic auth), if any.
///
/// # Errors
///
/// When `metrics.listen` cannot be bound, or the loop fails.
pub fn serve(config: &Config, web: Option<Arc<crate::web::WebConfig>>) -> anyhow::Result<()> {
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
        "serving /metrics, /healthz, /readyz and /api/v1"
    );
    let handle = LiveHandle::spawn(config.live_settings())?;
    let shared = Arc::clone(handle.shared());
    let app = router(Arc::clone(&shared));
    runtime.block_on(async move {
        let watched = Arc::clone(&shared);
        let loop_done = async move {
            while !watched.status.finished.load(Ordering::Acquire) {
                tokio::time::sleep(LOOP_CHECK_INTERVAL).await;
            }
        };
        let server = crate::web::serve(listener, app, web, async move {
            tokio::select! {
                _ = shutdown_signal() => info!("signal received: final checkpoint, commit, leaving the group"),
                _ = loop_done => {}
            }
            shared.shutdown.store(true, Ordering::Release);
        });
        if let Err(error) = server.await {
            error!(error = %error, "the HTTP server failed");
        }
    });
    handle.stop();
    handle.join()
}
