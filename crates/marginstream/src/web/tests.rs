//! Tests of the web configuration: the loader names every problem with its file and key,
//! and a server started with [`super::serve`] answers only what the file allows (TLS,
//! client certificates, basic auth, the probes' exemption). Certificates are made with
//! rcgen; the client is a raw HTTP/1.1 request over TCP or tokio-rustls.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::routing::get;
use axum::Router;
use base64::Engine;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::auth::{Authenticator, Verdict, CHALLENGE, VERIFICATIONS_WAITING_MAX};
use super::file::{load, ClientAuth, WebConfig};
use crate::config::ConfigError;

/// What `/metrics` of the test server answers: a stand-in for a customer's figure.
const FIGURE: &str = "marginstream_revenue{customer_id=\"acme\"} 1234.56\n";

/// A certificate authority and the PEM files it issued, in a temporary directory.
struct Pki {
    dir: tempfile::TempDir,
    ca: CertifiedIssuer<'static, KeyPair>,
}

impl Pki {
    fn new() -> Pki {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki { dir, ca };
        pki.write("ca.crt", &pki.ca.as_ref().pem());
        pki
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Issues a certificate for `names` from this CA as `<stem>.crt` and `<stem>.key`.
    fn issue(&self, stem: &str, names: &[&str]) {
        let key = KeyPair::generate().unwrap();
        let params =
            CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())
                .unwrap();
        let cert = params.signed_by(&key, &self.ca).unwrap();
        self.write(&format!("{stem}.crt"), &cert.pem());
        self.write(&format!("{stem}.key"), &key.serialize_pem());
    }

    /// Writes a self-signed certificate (from no CA of ours) as `<stem>.crt`/`.key`.
    fn self_signed(&self, stem: &str) {
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        self.write(&format!("{stem}.crt"), &certified.cert.pem());
        self.write(
            &format!("{stem}.key"),
            &certified.signing_key.serialize_pem(),
        );
    }

    /// Writes `web.yml` and loads it.
    fn load(&self, yaml: &str) -> Result<WebConfig, ConfigError> {
        load(&self.write("web.yml", yaml))
    }

    /// A client that trusts this CA, presenting `<stem>.crt` when given.
    fn client(&self, identity: Option<&str>) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_file(self.path("ca.crt")).unwrap())
            .unwrap();
        let builder =
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots);
        Arc::new(match identity {
            Some(stem) => builder
                .with_client_auth_cert(
                    CertificateDer::pem_file_iter(self.path(&format!("{stem}.crt")))
                        .unwrap()
                        .map(Result::unwrap)
                        .collect(),
                    PrivateKeyDer::from_pem_file(self.path(&format!("{stem}.key"))).unwrap(),
                )
                .unwrap(),
            None => builder.with_no_client_auth(),
        })
    }
}

/// A bcrypt hash of `password` at the lowest cost, fast even in a debug build.
fn hash(password: &str) -> String {
    bcrypt::hash(password, 4).unwrap()
}

/// The problems of a failed load, one `key: message` line each.
fn problems(result: Result<WebConfig, ConfigError>) -> Vec<String> {
    match result {
        Ok(web) => panic!("expected problems, the file loaded: {web:?}"),
        Err(error) => error.problems.iter().map(ToString::to_string).collect(),
    }
}

/// Asserts exactly one problem, naming the file and `key`, whose message contains `text`.
fn assert_one_problem(result: Result<WebConfig, ConfigError>, file: &Path, key: &str, text: &str) {
    let lines = problems(result);
    let prefix = format!("metrics.web_config_file ({})", file.display());
    let expected = if key.is_empty() {
        format!("{prefix}: ")
    } else {
        format!("{prefix}: {key}: ")
    };
    assert_eq!(lines.len(), 1, "one problem expected: {lines:#?}");
    assert!(
        lines[0].starts_with(&expected) && lines[0].contains(text),
        "expected `{expected}...{text}...`, got {lines:#?}"
    );
}

/// Shows that a missing file is one problem naming the file.
#[test]
fn missing_file_is_named() {
    let pki = Pki::new();
    let path = pki.path("nowhere.yml");
    assert_one_problem(load(&path), &path, "", "cannot read");
}

/// Shows that YAML that does not parse is named, and a wrong type names its key.
#[test]
fn bad_yaml_is_named() {
    let pki = Pki::new();
    let path = pki.path("web.yml");
    assert_one_problem(
        pki.load("basic_auth_users: [unclosed\n"),
        &path,
        "",
        "not valid YAML",
    );
    assert_one_problem(
        pki.load("tls_server_config:\n  cert_file: [a, b]\n"),
        &path,
        "tls_server_config.cert_file",
        "not valid YAML: invalid type: sequence",
    );
}

/// Shows that a key that is not its certificate's is named on `key_file`.
#[test]
fn key_not_matching_its_certificate_is_named() {
    let pki = Pki::new();
    pki.issue("server", &["localhost"]);
    pki.issue("other", &["localhost"]);
    let path = pki.path("web.yml");
    assert_one_problem(
        pki.load("tls_server_config:\n  cert_file: server.crt\n  key_file: other.key\n"),
        &path,
        "tls_server_config.key_file",
        "does not match the certificate",
    );
}

/// Shows that a hash that is not bcrypt is named with its user.
#[test]
fn non_bcrypt_hash_is_named() {
    let pki = Pki::new();
    let path = pki.path("web.yml");
    // A SHA-256 crypt hash, well formed for another algorithm.
    assert_one_problem(
        pki.load("basic_auth_users:\n  alice: \"$5$rounds=5000$salt$hash\"\n"),
        &path,
        "basic_auth_users.alice",
        "not a bcrypt hash",
    );
}

/// Shows that an unknown key is named with its full path, and that keys the toolkit has but
/// marginstream cannot honour are refused by name, never ignored.
#[test]
fn unknown_and_unsupported_keys_are_named() {
    let pki = Pki::new();
    let path = pki.path("web.yml");
    let users = format!("basic_auth_users:\n  alice: \"{}\"\n", hash("pw"));
    pki.issue("server", &["localhost"]);
    assert_one_problem(
        pki.load(&format!("{users}tls_server_config:\n  colour: blue\n  cert_file: server.crt\n  key_file: server.key\n")),
        &path,
        "tls_server_config.colour",
        "unknown key",
    );
    assert_one_problem(
        pki.load(&format!("{users}rate_limit:\n  interval: 1s\n  burst: 5\n")),
        &path,
        "rate_limit",
        "not supported",
    );
    let tls = "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n";
    for (extra, key, text) in [
        (
            "  min_version: TLS10\n",
            "tls_server_config.min_version",
            "TLS10 is not supported",
        ),
        (
            "  max_version: TLS11\n",
            "tls_server_config.max_version",
            "TLS11 is not supported",
        ),
        (
            "  client_allowed_sans: [a]\n",
            "tls_server_config.client_allowed_sans",
            "not supported",
        ),
        (
            "  curve_preferences: [CurveP521]\n",
            "tls_server_config.curve_preferences",
            "CurveP521 is not supported",
        ),
        (
            "  cipher_suites: [TLS_AES_128_GCM_SHA256]\n",
            "tls_server_config.cipher_suites",
            "TLS 1.2 only",
        ),
        (
            "  min_version: TLS13\n  max_version: TLS12\n",
            "tls_server_config.min_version",
            "above max_version",
        ),
    ] {
        assert_one_problem(pki.load(&format!("{tls}{extra}")), &path, key, text);
    }
}

/// Shows that a client_auth_type that is not the toolkit's is named, and that the two that
/// accept unverified certificates are refused rather than weakened.
#[test]
fn bad_client_auth_type_is_named() {
    let pki = Pki::new();
    pki.issue("server", &["localhost"]);
    let path = pki.path("web.yml");
    let tls = "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  client_ca_file: ca.crt\n";
    assert_one_problem(
        pki.load(&format!("{tls}  client_auth_type: RequireSomething\n")),
        &path,
        "tls_server_config.client_auth_type",
        "\"RequireSomething\" is not one of",
    );
    for policy in ["RequestClientCert", "RequireAnyClientCert"] {
        assert_one_problem(
            pki.load(&format!("{tls}  client_auth_type: {policy}\n")),
            &path,
            "tls_server_config.client_auth_type",
            "without verifying",
        );
    }
    // A CA without a policy that uses it, and a policy without a CA, as in the toolkit.
    assert_one_problem(
        pki.load(tls),
        &path,
        "tls_server_config.client_auth_type",
        "client_ca_file is set but client_auth_type is NoClientCert",
    );
    assert_one_problem(
        pki.load("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  client_auth_type: RequireAndVerifyClientCert\n"),
        &path,
        "tls_server_config.client_auth_type",
        "no client_ca_file",
    );
}

/// Shows that every problem of a file is reported at once, each with the file and its key.
#[test]
fn every_problem_is_reported_at_once() {
    let pki = Pki::new();
    pki.issue("server", &["localhost"]);
    pki.issue("other", &["localhost"]);
    let lines = problems(pki.load(
        "tls_server_config:\n  cert_file: server.crt\n  key_file: other.key\n  client_ca_file: missing-ca.crt\n  client_auth_type: Sometimes\n  colour: blue\nbasic_auth_users:\n  alice: plaintext\n  bob: \"$2y$10$short\"\n",
    ));
    let prefix = format!(
        "metrics.web_config_file ({})",
        pki.path("web.yml").display()
    );
    for key in [
        "tls_server_config.colour",
        "tls_server_config.key_file",
        "tls_server_config.client_ca_file",
        "tls_server_config.client_auth_type",
        "basic_auth_users.alice",
        "basic_auth_users.bob",
    ] {
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(&format!("{prefix}: {key}: "))),
            "{key} is reported: {lines:#?}"
        );
    }
    assert_eq!(lines.len(), 6, "{lines:#?}");
}

/// Shows the refusals stricter than the toolkit: a file that protects nothing, an empty
/// tls_server_config, a certificate given twice, a user named twice.
#[test]
fn files_that_would_leave_the_listener_open_are_refused() {
    let pki = Pki::new();
    pki.issue("server", &["localhost"]);
    let path = pki.path("web.yml");
    for text in ["", "# nothing\n", "http_server_config:\n  http2: false\n"] {
        assert_one_problem(pki.load(text), &path, "", "configures neither");
    }
    assert_one_problem(
        pki.load("tls_server_config: {}\n"),
        &path,
        "tls_server_config",
        "names no certificate",
    );
    let cert = std::fs::read_to_string(pki.path("server.crt")).unwrap();
    let inline = cert.replace('\n', "\n    ");
    assert_one_problem(
        pki.load(&format!(
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  cert: |\n    {inline}\n"
        )),
        &path,
        "tls_server_config.cert_file",
        "not both",
    );
    assert_one_problem(
        pki.load(&format!(
            "basic_auth_users:\n  a: \"{}\"\n  a: \"{}\"\n",
            hash("x"),
            hash("y")
        )),
        &path,
        "basic_auth_users",
        "listed twice",
    );
}

/// Shows that relative paths are resolved against the file's directory, not the working
/// directory, and that a complete file loads with what it asks for.
#[test]
fn relative_paths_are_relative_to_the_file() {
    let pki = Pki::new();
    std::fs::create_dir(pki.path("tls")).unwrap();
    pki.issue("tls/server", &["localhost"]);
    let web = pki
        .load(&format!(
            "tls_server_config:\n  cert_file: tls/server.crt\n  key_file: tls/server.key\n  client_ca_file: ca.crt\n  client_auth_type: RequireAndVerifyClientCert\n  min_version: TLS13\nbasic_auth_users:\n  prometheus: \"{}\"\nhttp_server_config:\n  headers:\n    X-Frame-Options: deny\n",
            hash("secret")
        ))
        .expect("the file loads");
    assert!(web.tls.is_some());
    assert_eq!(web.client_auth, ClientAuth::RequireAndVerifyClientCert);
    assert_eq!(web.users.len(), 1);
    assert_eq!(
        web.describe(),
        "TLS (TLS13, client certificates RequireAndVerifyClientCert), basic auth (1 user)"
    );
}

// ------------------------------------------------------------------ serving

/// A test server: `/metrics` answers [`FIGURE`], the probes `ok`.
struct Server {
    address: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Server {
    async fn start(web: Option<WebConfig>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let router = Router::new()
            .route("/metrics", get(|| async { FIGURE }))
            .route("/healthz", get(|| async { "ok\n" }))
            .route("/readyz", get(|| async { "ready\n" }));
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(super::serve(
            listener,
            router,
            web.map(Arc::new),
            async move {
                let _ = stopped.await;
            },
        ));
        Server {
            address,
            stop: Some(stop),
            task,
        }
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.await.unwrap().unwrap();
    }
}

/// An answer: the status (0 when no HTTP status line came back) and the raw text.
#[derive(Debug)]
struct Reply {
    status: u16,
    text: String,
}

impl Reply {
    fn parse(bytes: &[u8]) -> Reply {
        let text = String::from_utf8_lossy(bytes).into_owned();
        let status = text
            .strip_prefix("HTTP/1.1 ")
            .and_then(|rest| rest.get(..3))
            .and_then(|code| code.parse().ok())
            .unwrap_or(0);
        Reply { status, text }
    }
}

/// The request text of a GET, with basic auth when given.
fn request(path: &str, credentials: Option<(&str, &str)>) -> String {
    let mut text = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    if let Some((user, password)) = credentials {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        text.push_str(&format!("Authorization: Basic {token}\r\n"));
    }
    text + "\r\n"
}

/// GETs `path` over plain TCP.
async fn get_plain(address: SocketAddr, path: &str, credentials: Option<(&str, &str)>) -> Reply {
    let mut stream = TcpStream::connect(address).await.unwrap();
    stream
        .write_all(request(path, credentials).as_bytes())
        .await
        .unwrap();
    let mut bytes = Vec::new();
    // A reset after the server closed is the end of the answer too.
    let _ = stream.read_to_end(&mut bytes).await;
    Reply::parse(&bytes)
}

/// GETs `path` over TLS with `client`; an error when the handshake or the read fails.
async fn get_tls(
    address: SocketAddr,
    client: Arc<ClientConfig>,
    path: &str,
    credentials: Option<(&str, &str)>,
) -> std::io::Result<Reply> {
    let stream = TcpStream::connect(address).await?;
    let connector = tokio_rustls::TlsConnector::from(client);
    let mut stream = connector
        .connect(ServerName::try_from("localhost").unwrap(), stream)
        .await?;
    stream
        .write_all(request(path, credentials).as_bytes())
        .await?;
    let mut bytes = Vec::new();
    match stream.read_to_end(&mut bytes).await {
        Ok(_) => Ok(Reply::parse(&bytes)),
        // hyper may close without close_notify once the answer is complete.
        Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof && !bytes.is_empty() => {
            Ok(Reply::parse(&bytes))
        }
        Err(error) => Err(error),
    }
}

/// Asserts a 401 with the challenge and without the figure.
fn assert_refused(reply: &Reply, what: &str) {
    assert_eq!(reply.status, 401, "{what}: {reply:?}");
    assert!(
        reply.text.to_ascii_lowercase().contains(&format!(
            "www-authenticate: {}",
            CHALLENGE.to_ascii_lowercase()
        )),
        "{what}: the challenge is sent: {reply:?}"
    );
    assert!(
        !reply.text.contains("1234.56"),
        "{what}: no figure: {reply:?}"
    );
}

/// Shows basic auth over plain HTTP: no credentials, a wrong password, an unknown user and
/// a malformed header get 401 without the figure; the right ones get it; the probes answer
/// without credentials; a path that no route serves (the coming query API) is 401 without
/// credentials rather than 404, and 404 with them.
#[tokio::test]
async fn basic_auth_protects_every_path_but_the_probes() {
    let pki = Pki::new();
    let web = pki
        .load(&format!(
            "basic_auth_users:\n  prometheus: \"{}\"\n  grafana: \"{}\"\n",
            hash("scrape-secret"),
            hash("other-secret")
        ))
        .unwrap();
    let server = Server::start(Some(web)).await;
    let address = server.address;
    assert_refused(
        &get_plain(address, "/metrics", None).await,
        "no credentials",
    );
    assert_refused(
        &get_plain(address, "/metrics", Some(("prometheus", "wrong"))).await,
        "a wrong password",
    );
    assert_refused(
        &get_plain(address, "/metrics", Some(("grafana", "scrape-secret"))).await,
        "another user's password",
    );
    assert_refused(
        &get_plain(address, "/metrics", Some(("nobody", "scrape-secret"))).await,
        "an unknown user",
    );
    let mut stream = TcpStream::connect(address).await.unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Basic !!!notbase64\r\n\r\n")
        .await
        .unwrap();
    let mut bytes = Vec::new();
    let _ = stream.read_to_end(&mut bytes).await;
    assert_refused(&Reply::parse(&bytes), "a malformed Authorization header");
    for _ in 0..2 {
        // The second time from the cache.
        let reply = get_plain(address, "/metrics", Some(("prometheus", "scrape-secret"))).await;
        assert_eq!(reply.status, 200, "{reply:?}");
        assert!(reply.text.ends_with(FIGURE), "{reply:?}");
    }
    for probe in ["/healthz", "/readyz"] {
        assert_eq!(get_plain(address, probe, None).await.status, 200, "{probe}");
    }
    for path in [
        "/api/v1/customers/x",
        "/api/v1/portfolio",
        "/",
        "/healthz/",
        "/metrics/",
    ] {
        assert_refused(&get_plain(address, path, None).await, path);
        let reply = get_plain(address, path, Some(("prometheus", "scrape-secret"))).await;
        assert_eq!(reply.status, 404, "{path} with credentials: {reply:?}");
    }
    server.stop().await;
}

/// Shows that a verified password is cached as a keyed hash (not the plaintext), that the
/// cache answers for that password only, and that a flood of uncached checks is refused
/// with Busy beyond the limit instead of queueing without bound.
#[tokio::test]
async fn verified_passwords_are_cached_and_checks_are_bounded() {
    let users = [("prometheus".to_owned(), hash("secret"))]
        .into_iter()
        .collect();
    let authenticator = Authenticator::new(&users);
    let headers = |user: &str, password: &str| {
        let mut headers = axum::http::HeaderMap::new();
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        headers.insert(
            axum::http::header::AUTHORIZATION,
            format!("Basic {token}").parse().unwrap(),
        );
        headers
    };
    assert_eq!(
        authenticator.check(&headers("prometheus", "secret")).await,
        Verdict::Allowed
    );
    assert!(authenticator.is_cached("prometheus", "secret"));
    assert!(!authenticator.is_cached("prometheus", "Secret"));
    assert_eq!(
        authenticator.check(&headers("prometheus", "Secret")).await,
        Verdict::Denied
    );
    // A wrong password does not evict the right one.
    assert!(authenticator.is_cached("prometheus", "secret"));
    authenticator.set_waiting(VERIFICATIONS_WAITING_MAX);
    assert_eq!(
        authenticator.check(&headers("prometheus", "other")).await,
        Verdict::Busy
    );
    assert_eq!(
        authenticator.check(&headers("prometheus", "secret")).await,
        Verdict::Allowed,
        "cached credentials are never held up by the limit"
    );
}

/// Shows TLS with basic auth: HTTPS answers with credentials only, the probes without;
/// plain HTTP to the TLS port gets no HTTP answer and no figure; a client that does not
/// trust the CA does not get through the handshake.
#[tokio::test]
async fn tls_serves_nothing_over_plain_http() {
    let pki = Pki::new();
    pki.issue("server", &["localhost", "127.0.0.1"]);
    let web = pki
        .load(&format!(
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\nbasic_auth_users:\n  prometheus: \"{}\"\nhttp_server_config:\n  headers:\n    X-Content-Type-Options: nosniff\n",
            hash("secret")
        ))
        .unwrap();
    let server = Server::start(Some(web)).await;
    let client = pki.client(None);
    let reply = get_tls(
        server.address,
        Arc::clone(&client),
        "/metrics",
        Some(("prometheus", "secret")),
    )
    .await
    .unwrap();
    assert_eq!(reply.status, 200, "{reply:?}");
    assert!(reply.text.ends_with(FIGURE));
    assert!(
        reply
            .text
            .to_ascii_lowercase()
            .contains("x-content-type-options: nosniff"),
        "the configured header is sent: {reply:?}"
    );
    assert_refused(
        &get_tls(server.address, Arc::clone(&client), "/metrics", None)
            .await
            .unwrap(),
        "no credentials over TLS",
    );
    assert_eq!(
        get_tls(server.address, Arc::clone(&client), "/healthz", None)
            .await
            .unwrap()
            .status,
        200
    );
    let plain = get_plain(server.address, "/metrics", Some(("prometheus", "secret"))).await;
    assert_eq!(plain.status, 0, "plain HTTP gets no HTTP answer: {plain:?}");
    assert!(
        !plain.text.contains("HTTP/") && !plain.text.contains("1234.56"),
        "{plain:?}"
    );
    let stranger = Pki::new();
    assert!(
        get_tls(server.address, stranger.client(None), "/healthz", None)
            .await
            .is_err(),
        "a client that does not trust the CA fails the handshake"
    );
    server.stop().await;
}

/// Shows mutual TLS with RequireAndVerifyClientCert: no client certificate, or one from
/// another CA, is refused in the handshake (the probes too: nothing is served); one from
/// the client CA gets the figure. With VerifyClientCertIfGiven a client without a
/// certificate gets through, one with a foreign certificate still does not.
#[tokio::test]
async fn client_certificates_are_required_and_verified() {
    let pki = Pki::new();
    pki.issue("server", &["localhost"]);
    pki.issue("client", &["prometheus"]);
    pki.self_signed("foreign");
    let tls = "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  client_ca_file: ca.crt\n";
    let web = pki
        .load(&format!(
            "{tls}  client_auth_type: RequireAndVerifyClientCert\n"
        ))
        .unwrap();
    let server = Server::start(Some(web)).await;
    for (identity, what) in [
        (None, "no client certificate"),
        (Some("foreign"), "a certificate from another CA"),
    ] {
        for path in ["/metrics", "/healthz"] {
            let result = get_tls(server.address, pki.client(identity), path, None).await;
            assert!(
                result.as_ref().map_or(true, |reply| reply.status == 0),
                "{what} on {path} is refused: {result:?}"
            );
        }
    }
    let reply = get_tls(server.address, pki.client(Some("client")), "/metrics", None)
        .await
        .unwrap();
    assert_eq!(reply.status, 200, "{reply:?}");
    assert!(reply.text.ends_with(FIGURE));
    server.stop().await;

    let web = pki
        .load(&format!(
            "{tls}  client_auth_type: VerifyClientCertIfGiven\n"
        ))
        .unwrap();
    let server = Server::start(Some(web)).await;
    let reply = get_tls(server.address, pki.client(None), "/metrics", None)
        .await
        .unwrap();
    assert_eq!(
        reply.status, 200,
        "no certificate is fine when only verified if given"
    );
    let result = get_tls(
        server.address,
        pki.client(Some("foreign")),
        "/metrics",
        None,
    )
    .await;
    assert!(
        result.as_ref().map_or(true, |reply| reply.status == 0),
        "a foreign certificate is still refused: {result:?}"
    );
    server.stop().await;
}

/// Shows that without a web configuration the server is plain HTTP with no authentication,
/// as before.
#[tokio::test]
async fn without_a_web_configuration_nothing_changes() {
    let server = Server::start(None).await;
    let reply = get_plain(server.address, "/metrics", None).await;
    assert_eq!(reply.status, 200);
    assert!(reply.text.ends_with(FIGURE));
    server.stop().await;
}

/// Shows that the TLS keys marginstream supports are honoured, not just accepted:
/// `cipher_suites` and `curve_preferences` restrict what the server offers, and a client
/// limited to a version outside `min_version`..`max_version` cannot connect.
#[tokio::test]
async fn tls_versions_suites_and_curves_are_enforced() {
    let pki = Pki::new();
    pki.issue("server", &["localhost"]);
    let web = pki
        .load(&format!(
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  max_version: TLS12\n  cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256]\n  curve_preferences: [X25519]\n  prefer_server_cipher_suites: false\nbasic_auth_users:\n  prometheus: \"{}\"\n",
            hash("secret")
        ))
        .unwrap();
    let config = web.tls.clone().unwrap();
    let provider = config.crypto_provider();
    let tls12: Vec<_> = provider
        .cipher_suites
        .iter()
        .filter(|s| s.tls13().is_none())
        .map(|s| s.suite())
        .collect();
    assert_eq!(
        tls12,
        [rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256]
    );
    assert_eq!(provider.kx_groups.len(), 1);
    assert_eq!(provider.kx_groups[0].name(), rustls::NamedGroup::X25519);
    assert!(!config.ignore_client_order);
    let server = Server::start(Some(web)).await;
    let client = |versions: &[&'static rustls::SupportedProtocolVersion]| {
        let mut roots = RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_file(pki.path("ca.crt")).unwrap())
            .unwrap();
        Arc::new(
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_protocol_versions(versions)
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth(),
        )
    };
    let reply = get_tls(
        server.address,
        client(&[&rustls::version::TLS12]),
        "/metrics",
        Some(("prometheus", "secret")),
    )
    .await
    .unwrap();
    assert_eq!(reply.status, 200, "{reply:?}");
    assert!(
        get_tls(
            server.address,
            client(&[&rustls::version::TLS13]),
            "/healthz",
            None
        )
        .await
        .is_err(),
        "a TLS 1.3-only client is refused by a max_version TLS12 server"
    );
    server.stop().await;
}
