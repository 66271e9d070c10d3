//! Who may read the figures (contract §12): TLS and basic auth on the HTTP listener, from a
//! web configuration file in the Prometheus exporter toolkit's format
//! (`metrics.web_config_file`, the file node_exporter's `--web.config.file` reads).
//!
//! - `file`: the file's model and its one loader, which does every check that needs I/O
//!   (the file, the certificates and keys, the hashes) and reports every problem at once.
//!   `check-config` runs it; `run` runs it before binding and exits 2 on any problem, so a
//!   broken file never becomes an open listener.
//! - `tls`: the TLS listener, rustls (ring) through tokio-rustls, plugged into
//!   `axum::serve` as a listener.
//! - `auth`: the basic-auth middleware and its cache of verified passwords.
//!
//! [`serve`] is the one entry point: it wraps whatever router it is given, so every route,
//! including one added later, requires credentials; the exemption is the explicit list
//! [`auth::PUBLIC_PATHS`] (`/healthz`, `/readyz`). Without a web configuration it is
//! `axum::serve` as before.
//!
//! Why tokio-rustls and not axum-server: axum 0.8's `serve` accepts any listener, so a TLS
//! listener is all TLS needs, and plain and TLS share one server, one graceful shutdown and
//! the HTTP/1.1 settings; axum-server would bring a second server loop (and, by default,
//! aws-lc-rs, which needs cmake).

pub mod auth;
pub mod file;
#[cfg(test)]
mod tests;
pub mod tls;

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use tokio::net::TcpListener;
use tracing::warn;

pub use file::{load, WebConfig};

use crate::config::{Config, ConfigError};

/// Loads `metrics.web_config_file` when the configuration names one: `None` when it does
/// not, every problem of the file otherwise.
pub fn load_configured(config: &Config) -> Result<Option<Arc<WebConfig>>, ConfigError> {
    match &config.web_config_file {
        Some(path) => load(path).map(|web| Some(Arc::new(web))),
        None => Ok(None),
    }
}

/// Serves `router` on `listener` until `shutdown` completes, then waits for the requests in
/// progress. With `web`: TLS when it has a certificate (and then only TLS), basic auth on
/// every path but [`auth::PUBLIC_PATHS`] when it has users, and its extra headers on every
/// response.
///
/// # Errors
///
/// Returns the server's I/O error (axum's `serve` retries accept errors itself).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    web: Option<Arc<WebConfig>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let Some(web) = web else {
        return axum::serve(listener, router)
            .with_graceful_shutdown(shutdown)
            .await;
    };
    let router = protect(router, &web);
    match &web.tls {
        Some(config) => {
            let listener = tls::TlsListener::new(listener, Arc::clone(config))?;
            axum::serve(listener, router)
                .with_graceful_shutdown(shutdown)
                .await
        }
        None => {
            warn!(
                file = %web.file.display(),
                "basic auth without TLS: passwords and figures cross the network in clear text; add tls_server_config"
            );
            axum::serve(listener, router)
                .with_graceful_shutdown(shutdown)
                .await
        }
    }
}

/// Wraps every route of `router` (and its fallback, so an unknown path is a 401 too, not a
/// 404 that would tell which paths exist) in the basic-auth check, then adds the headers.
pub fn protect(router: Router, web: &WebConfig) -> Router {
    let router = if web.users.is_empty() {
        if web.client_auth != file::ClientAuth::RequireAndVerifyClientCert {
            warn!(
                file = %web.file.display(),
                "no basic_auth_users and no required client certificate: anyone who reaches the port can read the figures"
            );
        }
        router
    } else {
        let authenticator = Arc::new(auth::Authenticator::new(&web.users));
        router.layer(axum::middleware::from_fn_with_state(
            authenticator,
            auth::require_credentials,
        ))
    };
    if web.headers.is_empty() {
        return router;
    }
    let headers = Arc::new(web.headers.clone());
    router.layer(axum::middleware::map_response(
        move |mut response: axum::response::Response| {
            let headers = Arc::clone(&headers);
            async move {
                for (name, value) in headers.iter() {
                    response.headers_mut().insert(name.clone(), value.clone());
                }
                response
            }
        },
    ))
}
