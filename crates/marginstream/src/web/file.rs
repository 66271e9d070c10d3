//! The web configuration file (`metrics.web_config_file`): its model, in the Prometheus
//! exporter toolkit's format and key names, and the one loader that reads it, loads the
//! certificates and keys it names, and reports every problem at once.
//!
//! Semantics follow the toolkit (`web/tls_config.go`, `docs/web-configuration.md`):
//! relative paths are resolved against the file's directory; TLS is on as soon as any of
//! `cert`, `cert_file`, `key`, `key_file`, `client_ca`, `client_ca_file` or
//! `client_auth_type` is set; `min_version` defaults to `TLS12` and `max_version` to
//! `TLS13`; `prefer_server_cipher_suites` defaults to true; an empty `basic_auth_users`
//! asks for no basic auth. Where rustls cannot do what a key asks (TLS 1.0 and 1.1, client
//! certificates accepted without verification, the P-521 curve, SAN allow-lists, rate
//! limits), the key is refused with a message naming it: a security setting is never
//! ignored. Stricter than the toolkit on purpose: a file that configures neither TLS nor
//! basic auth, an empty `tls_server_config`, and both `cert` and `cert_file` (or `key`
//! and `key_file`, `client_ca` and `client_ca_file`) are refused rather than read as an
//! open listener or a silent choice between two sources.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use axum::http::{HeaderName, HeaderValue};
use rustls::crypto::ring as provider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig, SupportedProtocolVersion};
use serde::Deserialize;

use crate::config::{ConfigError, ConfigProblem};

/// The configuration key that names the file, the first part of every problem's key.
const KEY: &str = "metrics.web_config_file";

/// Largest web configuration file read (1 MiB): it holds a few keys and hashes.
const FILE_BYTES_MAX: u64 = 1 << 20;

/// Largest certificate, key or CA file read (1 MiB): a long chain is a few kilobytes.
const PEM_BYTES_MAX: u64 = 1 << 20;

/// Most `basic_auth_users`: the toolkit calls basic auth "meant for simple use cases, with
/// a few users", and each user holds a cache entry.
pub const USERS_MAX: usize = 1000;

/// The file as written. Every field is optional, as in the toolkit; unknown keys are
/// collected by the loader, so they are not denied here.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawWebConfig {
    /// TLS of the listener (default: none, plain HTTP).
    tls_server_config: Option<RawTls>,
    /// HTTP settings: `http2` and extra response `headers`.
    http_server_config: Option<RawHttp>,
    /// User name to bcrypt hash; empty or absent: no basic auth (toolkit). A user named
    /// twice is an error, as in the toolkit's strict YAML, not the last one winning.
    #[serde(deserialize_with = "unique_users")]
    basic_auth_users: Option<BTreeMap<String, String>>,
    /// The toolkit's rate limiter: not supported, refused when present.
    rate_limit: Option<serde_norway::Value>,
}

/// Deserializes `basic_auth_users`, refusing a user named twice.
fn unique_users<'de, D>(deserializer: D) -> Result<Option<BTreeMap<String, String>>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    struct Users;
    impl<'de> serde::de::Visitor<'de> for Users {
        type Value = Option<BTreeMap<String, String>>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a map of user name to bcrypt hash")
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_any(Users)
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut map: A,
        ) -> Result<Self::Value, A::Error> {
            let mut users = BTreeMap::new();
            while let Some((user, hash)) = map.next_entry::<String, String>()? {
                if users.contains_key(&user) {
                    return Err(serde::de::Error::custom(format!(
                        "user {user:?} is listed twice"
                    )));
                }
                users.insert(user, hash);
            }
            Ok(Some(users))
        }
    }
    deserializer.deserialize_option(Users)
}

/// `tls_server_config`, the toolkit's `TLSConfig`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawTls {
    /// The server certificate chain, inline PEM (instead of `cert_file`).
    cert: Option<String>,
    /// The server private key, inline PEM (instead of `key_file`).
    key: Option<String>,
    /// CA certificates for client certificates, inline PEM (instead of `client_ca_file`).
    client_ca: Option<String>,
    /// PEM file of the server certificate chain, leaf first.
    cert_file: Option<String>,
    /// PEM file of the server private key (PKCS#8, PKCS#1 or SEC1).
    key_file: Option<String>,
    /// PEM file of the CA certificates that client certificates must chain to.
    client_ca_file: Option<String>,
    /// Client certificate policy (default `NoClientCert`).
    client_auth_type: Option<String>,
    /// SAN allow-list for client certificates: not supported, refused when present.
    client_allowed_sans: Option<serde_norway::Value>,
    /// Lowest TLS version (default `TLS12`).
    min_version: Option<String>,
    /// Highest TLS version (default `TLS13`).
    max_version: Option<String>,
    /// TLS 1.2 cipher suites by IANA name, in preference order (default: rustls's).
    cipher_suites: Option<Vec<String>>,
    /// Server's cipher suite order over the client's (default true, as in the toolkit).
    prefer_server_cipher_suites: Option<bool>,
    /// Key exchange groups, in preference order (default: rustls's).
    curve_preferences: Option<Vec<String>>,
}

/// `http_server_config`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawHttp {
    /// HTTP/2 over TLS (default true in the toolkit); marginstream serves HTTP/1.1 only,
    /// which every Prometheus scrapes, so either value is accepted.
    http2: Option<bool>,
    /// Extra response headers, from the toolkit's fixed list.
    headers: Option<BTreeMap<String, String>>,
}

/// The client certificate policies of the toolkit (Go's `tls.ClientAuthType`) that rustls
/// can enforce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// No client certificate is asked for.
    NoClientCert,
    /// A client certificate, if sent, must chain to the client CA.
    VerifyClientCertIfGiven,
    /// A client certificate chaining to the client CA is required.
    RequireAndVerifyClientCert,
}

/// The validated web configuration: what `serve` enforces.
pub struct WebConfig {
    /// The file it was read from, for messages.
    pub file: PathBuf,
    /// The TLS configuration, when TLS is on.
    pub tls: Option<Arc<ServerConfig>>,
    /// The client certificate policy (`NoClientCert` without TLS).
    pub client_auth: ClientAuth,
    /// User name to bcrypt hash; empty: no basic auth.
    pub users: BTreeMap<String, String>,
    /// Extra headers set on every response.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// The TLS versions served, e.g. `TLS12-TLS13`, for messages.
    pub versions: String,
}

impl std::fmt::Debug for WebConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The hashes stay out of logs and panics.
        f.debug_struct("WebConfig")
            .field("file", &self.file)
            .field("tls", &self.tls.is_some())
            .field("client_auth", &self.client_auth)
            .field("users", &self.users.keys().collect::<Vec<_>>())
            .field("headers", &self.headers)
            .finish()
    }
}

impl WebConfig {
    /// Returns a one-line description for logs and `check-config`, e.g. `TLS (TLS12-TLS13,
    /// client certificates RequireAndVerifyClientCert), basic auth (2 users)`.
    pub fn describe(&self) -> String {
        let tls = match &self.tls {
            Some(_) => format!(
                "TLS ({}, client certificates {:?})",
                self.versions, self.client_auth
            ),
            None => "plain HTTP (no TLS)".to_owned(),
        };
        let auth = match self.users.len() {
            0 => "no basic auth".to_owned(),
            1 => "basic auth (1 user)".to_owned(),
            n => format!("basic auth ({n} users)"),
        };
        format!("{tls}, {auth}")
    }
}

/// Collects the problems of one file, each keyed `metrics.web_config_file (FILE): KEY`.
struct Problems {
    file: PathBuf,
    list: Vec<ConfigProblem>,
}

impl Problems {
    fn push(&mut self, key: &str, message: impl Into<String>) {
        let key = if key.is_empty() {
            format!("{KEY} ({})", self.file.display())
        } else {
            format!("{KEY} ({}): {key}", self.file.display())
        };
        self.list.push(ConfigProblem {
            key,
            message: message.into(),
        });
    }

    fn into_error(self) -> ConfigError {
        ConfigError {
            source: format!("{KEY} = {}", self.file.display()),
            problems: self.list,
        }
    }
}

/// Reads a file of at most `max` bytes, or returns the message of why not.
fn read_bounded(path: &Path, max: u64) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let file = std::fs::File::open(path)
        .map_err(|error| format!("cannot read {}: {error}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(|error| format!("cannot read {}: {error}", path.display()))?;
    if bytes.len() as u64 > max {
        return Err(format!(
            "{} is larger than {} bytes: not a PEM or web configuration file",
            path.display(),
            max
        ));
    }
    Ok(bytes)
}

/// Loads and checks the web configuration file at `path`: it is read and parsed, every
/// certificate and key it names is loaded (and the key matched with its certificate),
/// every hash is bcrypt. Returns every problem at once, each naming the file and the key.
pub fn load(path: &Path) -> Result<WebConfig, ConfigError> {
    let mut problems = Problems {
        file: path.to_owned(),
        list: Vec::new(),
    };
    let text = match read_bounded(path, FILE_BYTES_MAX) {
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(text) => text,
            Err(_) => {
                problems.push("", "not valid YAML: the file is not UTF-8 text");
                return Err(problems.into_error());
            }
        },
        Err(message) => {
            problems.push("", message);
            return Err(problems.into_error());
        }
    };
    let Some(raw) = parse(&text, &mut problems) else {
        return Err(problems.into_error());
    };
    // Relative paths are relative to the file's directory, as in the toolkit.
    let directory = path.parent().unwrap_or(Path::new("")).to_owned();
    let config = check(raw, &directory, &mut problems);
    match config {
        Some(config) if problems.list.is_empty() => Ok(config),
        _ => Err(problems.into_error()),
    }
}

/// Parses the YAML text, collecting every unknown key and the first type error.
fn parse(text: &str, problems: &mut Problems) -> Option<RawWebConfig> {
    // An empty file (or one of comments) is an empty configuration, refused later for
    // configuring nothing, rather than a YAML error.
    if text
        .lines()
        .all(|line| line.trim().is_empty() || line.trim_start().starts_with('#'))
    {
        return Some(RawWebConfig::default());
    }
    let mut unknown = Vec::new();
    let mut track = serde_path_to_error::Track::new();
    let deserializer = serde_norway::Deserializer::from_str(text);
    let deserializer = serde_path_to_error::Deserializer::new(deserializer, &mut track);
    let result: Result<Option<RawWebConfig>, _> =
        serde_ignored::deserialize(deserializer, |path| unknown.push(path.to_string()));
    for path in unknown {
        // serde_ignored writes `?` for each Option on the way.
        let key: Vec<&str> = path.split('.').filter(|s| *s != "?").collect();
        problems.push(&key.join("."), "unknown key");
    }
    match result {
        Ok(raw) => Some(raw.unwrap_or_default()),
        Err(error) => {
            let key: Vec<String> = track
                .path()
                .to_string()
                .split('.')
                .filter(|s| *s != "?" && !s.is_empty())
                .map(str::to_owned)
                .collect();
            let key = key.join(".");
            // serde_norway starts its message with the path too.
            let text = error.to_string();
            let text = text
                .strip_prefix(&format!("{key}: "))
                .unwrap_or(&text)
                .to_owned();
            problems.push(&key, format!("not valid YAML: {text}"));
            None
        }
    }
}

/// Where some PEM text comes from: an inline key or a file key.
struct Source<'a> {
    /// The key that names it, e.g. `tls_server_config.cert_file`.
    key: &'static str,
    /// The file, resolved, or `None` for inline text.
    path: Option<PathBuf>,
    /// Inline text.
    inline: Option<&'a str>,
}

/// Picks `file_key` (a path) or `inline_key` (PEM text), refusing both.
fn source<'a>(
    file_key: &'static str,
    file: &Option<String>,
    inline_key: &'static str,
    inline: &'a Option<String>,
    directory: &Path,
    problems: &mut Problems,
) -> Option<Source<'a>> {
    match (file, inline) {
        (Some(_), Some(_)) => {
            problems.push(
                file_key,
                format!("set {file_key} or {inline_key}, not both"),
            );
            None
        }
        (Some(path), None) if path.trim().is_empty() => {
            problems.push(file_key, "must not be empty");
            None
        }
        (Some(path), None) => Some(Source {
            key: file_key,
            path: Some(directory.join(path)),
            inline: None,
        }),
        (None, Some(text)) => Some(Source {
            key: inline_key,
            path: None,
            inline: Some(text.as_str()),
        }),
        (None, None) => None,
    }
}

impl Source<'_> {
    /// Returns the PEM bytes, or pushes why they cannot be read.
    fn bytes(&self, problems: &mut Problems) -> Option<Vec<u8>> {
        match (&self.path, self.inline) {
            (Some(path), _) => read_bounded(path, PEM_BYTES_MAX)
                .map_err(|message| problems.push(self.key, message))
                .ok(),
            (None, Some(text)) => Some(text.as_bytes().to_vec()),
            (None, None) => None,
        }
    }

    /// Describes it for a message: `/etc/x/cert.pem`, or `the inline PEM`.
    fn describe(&self) -> String {
        match &self.path {
            Some(path) => path.display().to_string(),
            None => "the inline PEM".to_owned(),
        }
    }

    /// Loads the certificates in it, at least one.
    fn certificates(&self, problems: &mut Problems) -> Option<Vec<CertificateDer<'static>>> {
        let bytes = self.bytes(problems)?;
        let certificates: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(&bytes).collect();
        match certificates {
            Ok(list) if list.is_empty() => {
                problems.push(
                    self.key,
                    format!(
                        "no PEM certificate (-----BEGIN CERTIFICATE-----) in {}",
                        self.describe()
                    ),
                );
                None
            }
            Ok(list) => Some(list),
            Err(error) => {
                problems.push(
                    self.key,
                    format!("{} is not valid PEM: {error}", self.describe()),
                );
                None
            }
        }
    }

    /// Loads the private key in it.
    fn private_key(&self, problems: &mut Problems) -> Option<PrivateKeyDer<'static>> {
        let bytes = self.bytes(problems)?;
        match PrivateKeyDer::from_pem_slice(&bytes) {
            Ok(key) => Some(key),
            Err(rustls::pki_types::pem::Error::NoItemsFound) => {
                problems.push(
                    self.key,
                    format!(
                        "no PEM private key (PKCS#8, PKCS#1 or SEC1) in {}",
                        self.describe()
                    ),
                );
                None
            }
            Err(error) => {
                problems.push(
                    self.key,
                    format!("{} is not valid PEM: {error}", self.describe()),
                );
                None
            }
        }
    }
}

/// Parses a TLS version name of the toolkit.
fn version(
    key: &str,
    text: &str,
    problems: &mut Problems,
) -> Option<&'static SupportedProtocolVersion> {
    match text {
        "TLS12" => Some(&rustls::version::TLS12),
        "TLS13" => Some(&rustls::version::TLS13),
        "TLS10" | "TLS11" => {
            problems.push(
                key,
                format!("{text} is not supported: marginstream's TLS (rustls) implements TLS12 and TLS13 only"),
            );
            None
        }
        other => {
            problems.push(
                key,
                format!("{other:?} is not a TLS version (TLS12 or TLS13)"),
            );
            None
        }
    }
}

/// The checks that turn the raw file into a [`WebConfig`], pushing every problem.
fn check(raw: RawWebConfig, directory: &Path, problems: &mut Problems) -> Option<WebConfig> {
    let start = problems.list.len();
    if raw.rate_limit.is_some() {
        problems.push(
            "rate_limit",
            "not supported by marginstream: remove it (Prometheus scrapes at its own interval)",
        );
    }

    // basic_auth_users
    let users = raw.basic_auth_users.unwrap_or_default();
    if users.len() > USERS_MAX {
        problems.push(
            "basic_auth_users",
            format!("{} users: at most {USERS_MAX}", users.len()),
        );
    }
    for (user, hash) in &users {
        let key = format!("basic_auth_users.{user}");
        if user.contains(':') {
            // Basic auth splits user and password at the first colon.
            problems.push(&key, "a user name cannot contain ':'");
        }
        match bcrypt::HashParts::from_str(hash) {
            Ok(parts) if !(4..=31).contains(&parts.get_cost()) => problems.push(
                &key,
                format!("bcrypt cost {} is not between 4 and 31", parts.get_cost()),
            ),
            Ok(_) => {}
            Err(error) => problems.push(
                &key,
                format!("not a bcrypt hash ($2y$10$ and 53 more characters, as `htpasswd -nBC 10 USER` writes): {error}"),
            ),
        }
    }

    // http_server_config
    let mut headers = Vec::new();
    let http = raw.http_server_config.unwrap_or_default();
    for (name, value) in http.headers.iter().flatten() {
        let key = format!("http_server_config.headers.{name}");
        // The toolkit's fixed list (web/handler.go `extraHTTPHeaders`), with the values it
        // accepts where they are an enumeration.
        let allowed: Option<&[&str]> = match name.as_str() {
            "Strict-Transport-Security" | "X-XSS-Protection" | "Content-Security-Policy" => {
                Some(&[])
            }
            "X-Content-Type-Options" => Some(&["nosniff"]),
            "X-Frame-Options" => Some(&["deny", "sameorigin"]),
            _ => None,
        };
        match allowed {
            None => problems.push(&key, "this header cannot be configured (Strict-Transport-Security, X-Content-Type-Options, X-Frame-Options, X-XSS-Protection, Content-Security-Policy)"),
            Some(values) if !values.is_empty() && !values.contains(&value.as_str()) => {
                problems.push(&key, format!("{value:?} is not one of {values:?}"))
            }
            Some(_) if value.is_empty() => {}
            Some(_) => match (HeaderName::from_str(name), HeaderValue::from_str(value)) {
                (Ok(name), Ok(value)) => headers.push((name, value)),
                _ => problems.push(&key, format!("{value:?} is not a valid header value")),
            },
        }
    }

    // tls_server_config
    let mut client_auth = ClientAuth::NoClientCert;
    let mut versions_text = String::new();
    let tls = match raw.tls_server_config {
        None => None,
        Some(tls) => {
            let result = check_tls(tls, directory, problems);
            result.map(|(config, auth, versions)| {
                client_auth = auth;
                versions_text = versions;
                config
            })
        }
    };

    if tls.is_none() && users.is_empty() && problems.list.len() == start {
        problems.push(
            "",
            "configures neither tls_server_config nor basic_auth_users: the listener would be as open as without it (remove metrics.web_config_file, or configure TLS or basic auth)",
        );
    }
    if problems.list.len() > start {
        return None;
    }
    Some(WebConfig {
        file: problems.file.clone(),
        tls: tls.map(Arc::new),
        client_auth,
        users,
        headers,
        versions: versions_text,
    })
}

/// Checks `tls_server_config` and builds the rustls configuration.
fn check_tls(
    tls: RawTls,
    directory: &Path,
    problems: &mut Problems,
) -> Option<(ServerConfig, ClientAuth, String)> {
    let start = problems.list.len();
    let enabled = tls.cert.is_some()
        || tls.cert_file.is_some()
        || tls.key.is_some()
        || tls.key_file.is_some()
        || tls.client_ca.is_some()
        || tls.client_ca_file.is_some()
        || tls.client_auth_type.is_some();
    if !enabled {
        problems.push(
            "tls_server_config",
            "names no certificate: set cert_file and key_file, or remove tls_server_config to serve plain HTTP",
        );
        return None;
    }
    if tls.client_allowed_sans.is_some() {
        problems.push(
            "tls_server_config.client_allowed_sans",
            "not supported by marginstream: remove it and issue client certificates from a CA used for nothing else (client_ca_file)",
        );
    }

    // The certificate and its key.
    let cert = source(
        "tls_server_config.cert_file",
        &tls.cert_file,
        "tls_server_config.cert",
        &tls.cert,
        directory,
        problems,
    );
    let key = source(
        "tls_server_config.key_file",
        &tls.key_file,
        "tls_server_config.key",
        &tls.key,
        directory,
        problems,
    );
    if cert.is_none() && tls.cert.is_none() && tls.cert_file.is_none() {
        problems.push(
            "tls_server_config.cert_file",
            "missing: TLS needs the server certificate (cert_file or cert)",
        );
    }
    if key.is_none() && tls.key.is_none() && tls.key_file.is_none() {
        problems.push(
            "tls_server_config.key_file",
            "missing: TLS needs the server's private key (key_file or key)",
        );
    }
    let chain = cert.as_ref().and_then(|c| c.certificates(problems));
    let private_key = key.as_ref().and_then(|k| k.private_key(problems));
    // The key must be the certificate's, checked here so that it is reported along with
    // any other problem.
    if let (Some(chain), Some(private_key), Some(cert), Some(key)) =
        (&chain, &private_key, &cert, &key)
    {
        let loaded = rustls::sign::CertifiedKey::from_der(
            chain.clone(),
            private_key.clone_key(),
            &provider::default_provider(),
        );
        match loaded {
            Ok(_) => {}
            Err(rustls::Error::InconsistentKeys(_)) => problems.push(
                key.key,
                format!(
                    "the key in {} does not match the certificate in {}",
                    key.describe(),
                    cert.describe()
                ),
            ),
            Err(error) => problems.push(
                key.key,
                format!(
                    "cannot use the key in {} with the certificate in {}: {error}",
                    key.describe(),
                    cert.describe()
                ),
            ),
        }
    }

    // Versions.
    let min = version(
        "tls_server_config.min_version",
        tls.min_version.as_deref().unwrap_or("TLS12"),
        problems,
    );
    let max = version(
        "tls_server_config.max_version",
        tls.max_version.as_deref().unwrap_or("TLS13"),
        problems,
    );
    let versions: Vec<&'static SupportedProtocolVersion> = match (min, max) {
        (Some(min), Some(max)) => {
            let order = |v: &SupportedProtocolVersion| u16::from(v.version);
            let list: Vec<_> = [&rustls::version::TLS12, &rustls::version::TLS13]
                .into_iter()
                .filter(|v| order(v) >= order(min) && order(v) <= order(max))
                .collect();
            if list.is_empty() {
                problems.push(
                    "tls_server_config.min_version",
                    "is above max_version: no TLS version is left",
                );
            }
            list
        }
        _ => Vec::new(),
    };
    let versions_text = match versions.as_slice() {
        [only] => format!("{:?}", only.version).replace("TLSv1_", "TLS1"),
        _ => "TLS12-TLS13".to_owned(),
    };

    // Cipher suites and key exchange groups, from the ring provider's.
    let mut crypto = provider::default_provider();
    if let Some(names) = &tls.cipher_suites {
        let key = "tls_server_config.cipher_suites";
        let mut chosen = Vec::new();
        for name in names {
            // IANA and Go name TLS 1.3 suites TLS_AES_..., rustls TLS13_AES_...
            let found = provider::ALL_CIPHER_SUITES.iter().find(|s| {
                s.suite()
                    .as_str()
                    .is_some_and(|n| n == name || n.replacen("TLS13_", "TLS_", 1) == *name)
            });
            match found {
                Some(suite) if suite.tls13().is_some() => problems.push(
                    key,
                    format!("{name} is a TLS 1.3 suite: cipher_suites applies to TLS 1.2 only, as in the exporter toolkit"),
                ),
                Some(suite) => chosen.push(*suite),
                None => problems.push(
                    key,
                    format!(
                        "{name:?} is not supported; the TLS 1.2 suites are {}",
                        provider::ALL_CIPHER_SUITES
                            .iter()
                            .filter(|s| s.tls13().is_none())
                            .filter_map(|s| s.suite().as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ),
            }
        }
        if names.is_empty() {
            problems.push(key, "is empty: remove it for the default suites");
        }
        // The TLS 1.3 suites stay: Go's cipher_suites does not touch them either.
        let mut suites: Vec<_> = crypto
            .cipher_suites
            .iter()
            .copied()
            .filter(|s| s.tls13().is_some())
            .collect();
        suites.extend(chosen);
        crypto.cipher_suites = suites;
    }
    if let Some(names) = &tls.curve_preferences {
        let key = "tls_server_config.curve_preferences";
        let mut groups = Vec::new();
        for name in names {
            match name.as_str() {
                "X25519" => groups.push(provider::kx_group::X25519),
                "CurveP256" => groups.push(provider::kx_group::SECP256R1),
                "CurveP384" => groups.push(provider::kx_group::SECP384R1),
                "CurveP521" => problems.push(
                    key,
                    "CurveP521 is not supported by marginstream's TLS (rustls with ring): use X25519, CurveP256 or CurveP384",
                ),
                other => problems.push(
                    key,
                    format!("{other:?} is not a curve (X25519, CurveP256, CurveP384)"),
                ),
            }
        }
        if names.is_empty() {
            problems.push(key, "is empty: remove it for the default curves");
        }
        crypto.kx_groups = groups;
    }
    let crypto = Arc::new(crypto);

    // Client certificates.
    let ca = source(
        "tls_server_config.client_ca_file",
        &tls.client_ca_file,
        "tls_server_config.client_ca",
        &tls.client_ca,
        directory,
        problems,
    );
    let roots = ca.as_ref().and_then(|ca| {
        let certificates = ca.certificates(problems)?;
        let mut store = RootCertStore::empty();
        for (index, certificate) in certificates.into_iter().enumerate() {
            if let Err(error) = store.add(certificate) {
                problems.push(
                    ca.key,
                    format!(
                        "certificate {} of {} is not a usable CA certificate: {error}",
                        index + 1,
                        ca.describe()
                    ),
                );
            }
        }
        Some(Arc::new(store))
    });
    let auth_key = "tls_server_config.client_auth_type";
    let client_auth = match tls.client_auth_type.as_deref().unwrap_or("NoClientCert") {
        "" | "NoClientCert" => Some(ClientAuth::NoClientCert),
        "VerifyClientCertIfGiven" => Some(ClientAuth::VerifyClientCertIfGiven),
        "RequireAndVerifyClientCert" => Some(ClientAuth::RequireAndVerifyClientCert),
        other @ ("RequestClientCert" | "RequireAnyClientCert" | "RequireClientCert") => {
            problems.push(
                auth_key,
                format!("{other} is not supported: it accepts client certificates without verifying them; use RequireAndVerifyClientCert (or VerifyClientCertIfGiven) with client_ca_file"),
            );
            None
        }
        other => {
            problems.push(
                auth_key,
                format!("{other:?} is not one of NoClientCert, VerifyClientCertIfGiven, RequireAndVerifyClientCert (RequestClientCert and RequireAnyClientCert are not supported)"),
            );
            None
        }
    };
    match client_auth {
        Some(ClientAuth::NoClientCert) if ca.is_some() => problems.push(
            auth_key,
            "client_ca_file is set but client_auth_type is NoClientCert: set RequireAndVerifyClientCert (or VerifyClientCertIfGiven), or remove client_ca_file",
        ),
        Some(ClientAuth::VerifyClientCertIfGiven | ClientAuth::RequireAndVerifyClientCert)
            if ca.is_none() =>
        {
            problems.push(
                auth_key,
                "verifies client certificates but no client_ca_file (or client_ca) names the CA they must chain to",
            )
        }
        _ => {}
    }

    if problems.list.len() > start {
        return None;
    }
    let (chain, private_key, client_auth) = (chain?, private_key?, client_auth?);
    let builder = match ServerConfig::builder_with_provider(Arc::clone(&crypto))
        .with_protocol_versions(&versions)
    {
        Ok(builder) => builder,
        Err(error) => {
            problems.push(
                "tls_server_config",
                format!("no usable TLS configuration: {error}"),
            );
            return None;
        }
    };
    let builder = match (client_auth, roots) {
        (ClientAuth::NoClientCert, _) | (_, None) => builder.with_no_client_auth(),
        (auth, Some(roots)) => {
            let verifier = WebPkiClientVerifier::builder_with_provider(roots, Arc::clone(&crypto));
            let verifier = if auth == ClientAuth::VerifyClientCertIfGiven {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            match verifier.build() {
                Ok(verifier) => builder.with_client_cert_verifier(verifier),
                Err(error) => {
                    problems.push(
                        "tls_server_config.client_ca_file",
                        format!("cannot verify client certificates with it: {error}"),
                    );
                    return None;
                }
            }
        }
    };
    let mut config = match builder.with_single_cert(chain, private_key) {
        Ok(config) => config,
        Err(error) => {
            // Checked above already; kept so that no failure can pass unreported.
            problems.push(
                key.as_ref().map_or("tls_server_config.key_file", |k| k.key),
                format!("cannot use the key with the certificate: {error}"),
            );
            return None;
        }
    };
    config.ignore_client_order = tls.prefer_server_cipher_suites.unwrap_or(true);
    // HTTP/1.1 only: what axum serves here, and what every Prometheus scrapes with.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Some((config, client_auth, versions_text))
}
