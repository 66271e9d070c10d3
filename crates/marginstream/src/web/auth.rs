//! Basic auth against bcrypt hashes, with a cache of verified passwords.
//!
//! bcrypt is slow on purpose (about 50 ms at cost 10 here): paid on every scrape it would
//! add that to each one and let anyone with the port burn a core. So a verified password
//! is remembered, per user, as an HMAC-SHA256 of it under a key drawn at start (never the
//! plaintext), compared in constant time; a scrape with the same credentials then costs a
//! microsecond or two. The cache holds one entry per configured user, so it is bounded by
//! `basic_auth_users`. A password that is not in the cache is checked with bcrypt on the
//! blocking pool, one at a time (as the toolkit does), with at most
//! [`VERIFICATIONS_WAITING_MAX`] waiting; beyond that the request is refused with 503,
//! which keeps a flood of wrong passwords from queueing without bound (cached credentials
//! are never held up by it). An unknown user is checked against a dummy hash of the same
//! cost, so that the answer's timing does not tell which users exist.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use ring::hmac;
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;

/// Paths served without credentials: the probes, which carry no figures (contract §12).
/// Every other path, including any route added later, requires them.
pub const PUBLIC_PATHS: [&str; 2] = ["/healthz", "/readyz"];

/// The `WWW-Authenticate` challenge of a 401.
pub const CHALLENGE: &str = "Basic realm=\"marginstream\"";

/// Most bcrypt verifications waiting for their turn before a request is refused with 503.
pub const VERIFICATIONS_WAITING_MAX: usize = 16;

/// Longest `Authorization` header looked at: a user name and a password, base64.
const AUTHORIZATION_BYTES_MAX: usize = 4096;

/// One configured user.
struct User {
    /// The bcrypt hash from the file.
    hash: String,
    /// The HMAC of the last password verified for this user.
    verified: Mutex<Option<hmac::Tag>>,
}

/// What a request's credentials come to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Valid credentials.
    Allowed,
    /// Missing or wrong credentials: 401.
    Denied,
    /// Too many verifications waiting: 503.
    Busy,
}

/// Checks basic-auth credentials against the configured users.
pub struct Authenticator {
    users: BTreeMap<String, User>,
    /// The key of the cache's HMACs, drawn at start.
    key: hmac::Key,
    /// A hash for unknown users, of the highest configured cost.
    dummy_hash: String,
    /// One bcrypt verification at a time.
    turn: Semaphore,
    /// Verifications running or waiting.
    waiting: AtomicUsize,
}

impl Authenticator {
    /// Returns an authenticator for `users` (name to bcrypt hash, checked by the loader).
    ///
    /// # Panics
    ///
    /// Panics when the system's random generator fails (the key of the cache needs it).
    pub fn new(users: &BTreeMap<String, String>) -> Authenticator {
        let random = ring::rand::SystemRandom::new();
        let key = hmac::Key::generate(hmac::HMAC_SHA256, &random)
            .expect("the system random generator works");
        let cost = users
            .values()
            .filter_map(|hash| hash.parse::<bcrypt::HashParts>().ok())
            .map(|parts| parts.get_cost())
            .max()
            .unwrap_or(bcrypt::DEFAULT_COST);
        // A fixed salt is fine: this hash is never matched, only computed against.
        let dummy_hash = bcrypt::hash_with_salt(b"no such user", cost, [7; 16])
            .map(|parts| parts.format_for_version(bcrypt::Version::TwoB))
            .expect("a cost taken from a valid bcrypt hash is valid");
        Authenticator {
            users: users
                .iter()
                .map(|(name, hash)| {
                    (
                        name.clone(),
                        User {
                            hash: hash.clone(),
                            verified: Mutex::new(None),
                        },
                    )
                })
                .collect(),
            key,
            dummy_hash,
            turn: Semaphore::new(1),
            waiting: AtomicUsize::new(0),
        }
    }

    /// The cache's HMAC of a password: keyed, and with the user name in it.
    fn tag(&self, user: &str, password: &str) -> hmac::Tag {
        let mut context = hmac::Context::with_key(&self.key);
        context.update(&(user.len() as u64).to_le_bytes());
        context.update(user.as_bytes());
        context.update(password.as_bytes());
        context.sign()
    }

    /// Whether `password` is the one cached for `user`.
    fn cached(&self, user: &User, tag: &hmac::Tag) -> bool {
        let verified = user
            .verified
            .lock()
            .expect("the cache lock is never poisoned");
        verified
            .as_ref()
            .is_some_and(|known| bool::from(known.as_ref().ct_eq(tag.as_ref())))
    }

    /// Whether `password` is what the cache holds for `user` (tests).
    #[cfg(test)]
    pub fn is_cached(&self, user: &str, password: &str) -> bool {
        let tag = self.tag(user, password);
        self.users
            .get(user)
            .is_some_and(|entry| self.cached(entry, &tag))
    }

    /// Pretends `count` verifications are running or waiting (tests).
    #[cfg(test)]
    pub fn set_waiting(&self, count: usize) {
        self.waiting.store(count, Ordering::Release);
    }

    /// Checks the `Authorization` header of a request.
    pub async fn check(&self, headers: &HeaderMap) -> Verdict {
        let Some((name, password)) = credentials(headers) else {
            return Verdict::Denied;
        };
        let user = self.users.get(&name);
        let tag = self.tag(&name, &password);
        if user.is_some_and(|user| self.cached(user, &tag)) {
            return Verdict::Allowed;
        }
        // Counted down on every way out, including a client that goes away while waiting.
        let place = Waiting::enter(&self.waiting);
        if place.ahead >= VERIFICATIONS_WAITING_MAX {
            return Verdict::Busy;
        }
        {
            let _turn = self
                .turn
                .acquire()
                .await
                .expect("the semaphore is never closed");
            // Another request may have verified the same password while this one waited.
            if user.is_some_and(|user| self.cached(user, &tag)) {
                return Verdict::Allowed;
            }
            let hash = user.map_or_else(|| self.dummy_hash.clone(), |user| user.hash.clone());
            // bcrypt takes tens of milliseconds: never on the runtime's thread.
            let matches = tokio::task::spawn_blocking(move || {
                bcrypt::verify(password, &hash).unwrap_or(false)
            })
            .await
            .unwrap_or(false);
            match user {
                Some(user) if matches => {
                    *user
                        .verified
                        .lock()
                        .expect("the cache lock is never poisoned") = Some(tag);
                    Verdict::Allowed
                }
                _ => Verdict::Denied,
            }
        }
    }
}

/// A place among the verifications waiting, given back on drop.
struct Waiting<'a> {
    counter: &'a AtomicUsize,
    /// How many were running or waiting before this one.
    ahead: usize,
}

impl<'a> Waiting<'a> {
    fn enter(counter: &'a AtomicUsize) -> Waiting<'a> {
        let ahead = counter.fetch_add(1, Ordering::AcqRel);
        Waiting { counter, ahead }
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.counter.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The user name and password of a `Authorization: Basic` header, if well formed.
fn credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.as_bytes();
    if value.len() > AUTHORIZATION_BYTES_MAX {
        return None;
    }
    let text = std::str::from_utf8(value).ok()?.trim();
    let (scheme, encoded) = text.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

/// The 401 answer: a challenge and no figure.
fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, HeaderValue::from_static(CHALLENGE))],
        "401 Unauthorized: this endpoint needs the user name and password of basic_auth_users in metrics.web_config_file\n",
    )
        .into_response()
}

/// The middleware: every path but [`PUBLIC_PATHS`] needs valid credentials.
pub async fn require_credentials(
    State(authenticator): State<Arc<Authenticator>>,
    request: Request,
    next: Next,
) -> Response {
    if PUBLIC_PATHS.contains(&request.uri().path()) {
        return next.run(request).await;
    }
    match authenticator.check(request.headers()).await {
        Verdict::Allowed => next.run(request).await,
        Verdict::Denied => unauthorized(),
        Verdict::Busy => (
            StatusCode::SERVICE_UNAVAILABLE,
            "503 Service Unavailable: too many password checks in progress\n",
        )
            .into_response(),
    }
}
