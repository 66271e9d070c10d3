//! The TLS listener: TCP connections go through a rustls handshake before axum sees them.
//!
//! axum 0.8's `serve` takes any [`axum::serve::Listener`], so TLS is a listener and the
//! rest (HTTP/1.1, graceful shutdown) is the same `axum::serve` as plain HTTP. Handshakes
//! run in tasks of their own, at most [`HANDSHAKES_MAX`] at once and each cut after
//! [`HANDSHAKE_TIMEOUT`], so that a slow or silent client never holds up the others;
//! finished ones queue for `accept`. A failed handshake (plain HTTP to the TLS port, an
//! unknown CA, a missing client certificate) closes the connection before any HTTP is
//! read: nothing is served to it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::ServerConfig;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, warn};

/// Longest a client may take to complete the handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Most handshakes in progress; a connection beyond is closed at once. A scraper opens one
/// connection and keeps it, so this only bounds what a flood of connections can cost.
pub const HANDSHAKES_MAX: usize = 64;

/// Finished handshakes waiting for axum's `accept`.
const READY_MAX: usize = 16;

/// A [`axum::serve::Listener`] that yields TLS streams.
pub struct TlsListener {
    /// Finished handshakes, from the acceptor task.
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    /// The bound address.
    local: SocketAddr,
    /// The acceptor task, aborted with the listener (at shutdown, when axum drops it).
    acceptor: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    /// Starts accepting on `listener` with `config`. Must be called on a tokio runtime.
    pub fn new(listener: TcpListener, config: Arc<ServerConfig>) -> std::io::Result<TlsListener> {
        let local = listener.local_addr()?;
        let (sender, ready) = mpsc::channel(READY_MAX);
        let acceptor = tokio::spawn(accept_loop(listener, TlsAcceptor::from(config), sender));
        Ok(TlsListener {
            ready,
            local,
            acceptor,
        })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.acceptor.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(connection) => connection,
            // The acceptor only ends when aborted, which happens when this is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

/// Accepts TCP connections and hands each to a handshake task.
async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    ready: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    let handshakes = Arc::new(Semaphore::new(HANDSHAKES_MAX));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(connection) => connection,
            Err(error) => {
                // As axum's own TCP listener: a connection reset before accept is nothing;
                // anything else (out of file descriptors) is waited out.
                if !matches!(
                    error.kind(),
                    std::io::ErrorKind::ConnectionRefused
                        | std::io::ErrorKind::ConnectionAborted
                        | std::io::ErrorKind::ConnectionReset
                ) {
                    warn!(error = %error, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&handshakes).try_acquire_owned() else {
            debug!(%peer, "too many TLS handshakes in progress: connection closed");
            continue;
        };
        let acceptor = acceptor.clone();
        let ready = ready.clone();
        tokio::spawn(async move {
            let result = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await;
            drop(permit);
            match result {
                Ok(Ok(stream)) => {
                    // Fails only when the listener is gone (shutdown): the stream closes.
                    let _ = ready.send((stream, peer)).await;
                }
                Ok(Err(error)) => debug!(%peer, error = %error, "TLS handshake failed"),
                Err(_) => debug!(%peer, "TLS handshake timed out"),
            }
        });
    }
}
