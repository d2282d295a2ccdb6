//! Every knob of the server. The defaults are the production ones: no token minting, no
//! cross-origin access, every buffer bounded in bytes.

use core::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;
use tether_core::protocol::ResumeLimits;

use crate::token::PublicKey;

/// A secret: the HS256 key that signs and checks tokens, or the admin credential. Its
/// `Debug` output is redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// A secret from bytes (a passphrase works; longer is better).
    ///
    /// ```
    /// use tether_server::Secret;
    /// let secret = Secret::new("correct horse battery staple");
    /// assert_eq!(format!("{secret:?}"), "Secret(<redacted>)");
    /// ```
    #[must_use]
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Secret(bytes.into())
    }

    /// 32 random bytes from the operating system. Tokens signed with it stop working
    /// when the process exits.
    #[must_use]
    pub fn random() -> Self {
        let mut bytes = vec![0u8; 32];
        crate::rand::fill(&mut bytes);
        Secret(bytes)
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Whether `candidate` is this secret, compared in constant time (over SHA-256
    /// digests, so not even the length leaks).
    ///
    /// ```
    /// use tether_server::Secret;
    /// let admin = Secret::new("let me in");
    /// assert!(admin.matches(b"let me in"));
    /// assert!(!admin.matches(b"let me"));
    /// ```
    #[must_use]
    pub fn matches(&self, candidate: &[u8]) -> bool {
        let expected = Sha256::digest(&self.0);
        let got = Sha256::digest(candidate);
        bool::from(expected.ct_eq(&got))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// How the server runs. Start from [`ServerConfig::default`] and change fields.
///
/// ```
/// use std::time::Duration;
/// use tether_server::ServerConfig;
///
/// let mut config = ServerConfig::default();
/// config.bind = "127.0.0.1:0".parse()?;
/// config.idle_limit = Duration::from_secs(10);
/// config.validate()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ServerConfig {
    /// Address to listen on; port 0 picks a free port (see [`crate::RunningServer::addr`]).
    /// Default `127.0.0.1:8080`.
    pub bind: SocketAddr,
    /// HS256 key that signs and checks tokens (shared with the application, or only
    /// used for minting in tests). Default: random per process, so no one else can sign.
    pub secret: Secret,
    /// Public keys that check RS256/ES256 tokens signed by the application (from a PEM
    /// file or a JWKS document). Default: none.
    pub public_keys: Vec<PublicKey>,
    /// Required `iss` of every token (minted tokens carry it). Default: not checked.
    pub token_issuer: Option<String>,
    /// Required `aud` of every token (minted tokens carry it). Default: not checked.
    pub token_audience: Option<String>,
    /// Clock skew allowed on `exp` and `nbf`, whole seconds. Default 30 s.
    pub token_leeway: Duration,
    /// The admin credential (`Authorization: Bearer <it>`): needed by `POST /api/token`,
    /// by the per-connection part of the metrics and by the binary's `--admin` routes.
    /// Default: none, so none of these is reachable.
    pub admin_token: Option<Secret>,
    /// Serve `POST /api/token` (token minting, for tests and demos; it also needs
    /// `admin_token`). Default off.
    pub token_endpoint: bool,
    /// Lifetime of a token from `POST /api/token` when the request names none. Default 1 h.
    pub token_ttl: Duration,
    /// Longest lifetime `POST /api/token` grants. Default 24 h.
    pub max_token_ttl: Duration,
    /// Dev mode: accept clients without a token as `dev-temp-<id>` users, and allow the
    /// origins `http://localhost:*`, `http://127.0.0.1:*` and `http://[::1]:*`.
    /// Default off.
    pub dev_mode: bool,
    /// Origins (`scheme://host[:port]`, exactly as browsers send them) allowed to open
    /// WebSockets, poll, and read answers cross-origin (CORS). Requests without an
    /// `Origin` header (native clients) and same-origin requests always pass; any other
    /// origin gets 403. Default: none.
    pub allowed_origins: Vec<String>,
    /// The server is behind TLS (a proxy terminating it): no warning when bound to a
    /// non-loopback address. Default off.
    pub behind_tls: bool,
    /// A WebSocket silent this long is closed with 4408; a polling transport with no
    /// request this long is detached. Default 30 s.
    pub idle_limit: Duration,
    /// How often the sweeper looks for idle polling transports, old sessions and old
    /// resume buffer entries. Default 1 s.
    pub sweep_interval: Duration,
    /// A session with no transport for this long is forgotten (its client then gets a
    /// reset). Default 5 min.
    pub session_ttl: Duration,
    /// Bounds of each session's buffer of unacknowledged server messages; past them the
    /// oldest are dropped (a resume that needs them becomes a reset).
    /// Default 1024 messages, 1 MiB, 2 min.
    pub resume_limits: ResumeLimits,
    /// Server-wide budget for every session's resume buffer, in bytes (payloads plus a
    /// fixed cost per session). Past it the detached sessions of the user whose sessions
    /// hold the most bytes are dropped whole, longest detached first (their clients get a
    /// reset): one user's flood cannot push out another user's session. Then the attached
    /// sessions holding the most bytes (their transports are closed with 1013). Default
    /// 64 MiB.
    pub resume_budget_bytes: usize,
    /// Sessions kept per user; a new one past it drops the user's session detached
    /// longest ago (or, if all are attached, the oldest). Anonymous dev-mode clients
    /// share one namespace and are bounded by `resume_budget_bytes` only. Default 8.
    pub max_sessions_per_user: usize,
    /// Longest time an `op=recv` poll is held open waiting for messages (a `wait_ms`
    /// query may shorten it). Default 1 s.
    pub poll_hold: Duration,
    /// Largest WebSocket message accepted; a bigger one closes the socket with 1009.
    /// Default 1 MiB.
    pub max_frame_bytes: usize,
    /// Largest poll request body; a bigger one is answered with 413. Default 4 MiB.
    pub max_poll_body_bytes: usize,
    /// Frames queued for one WebSocket (or polling transport) before it is closed as too
    /// slow (1013). Default 4096.
    pub max_queued_frames: usize,
    /// Bytes queued for one WebSocket (or polling transport) before it is closed as too
    /// slow (1013). Default 4 MiB.
    pub max_queued_bytes: usize,
    /// Open TCP connections (HTTP requests and WebSockets); one more is closed at
    /// accept. Default 10,000.
    pub max_connections: usize,
    /// Longest time a client may take to send a request's headers; then the connection
    /// is closed (against slowloris). Default 10 s.
    pub header_read_timeout: Duration,
    /// Longest time a client may take to send a request's body (408 after). Default 10 s.
    pub body_read_timeout: Duration,
    /// How often the server sends a WebSocket ping control frame to measure latency
    /// (browsers and WebSocket libraries answer them by themselves); `None` measures
    /// nothing. Default 5 s.
    pub latency_probe_interval: Option<Duration>,
    /// How long a closing WebSocket may take to finish its close handshake, and how long
    /// [`crate::RunningServer::shutdown`] waits for connections. Default 2 s.
    pub close_grace: Duration,
    /// Where sessions are shared between instances: `None` (the default) keeps them in
    /// this process only; `redis://host:port` writes them through to Redis so a client
    /// resumes on any instance with the same Redis (the binary's `--store`; a library
    /// user passes the URL to [`crate::Hub::with_redis`]).
    pub store: Option<String>,
    /// This instance's id, in the health check and the metrics (and, with Redis, as the
    /// owner of the sessions it writes). Default: random.
    pub instance_id: Option<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            bind: SocketAddr::from(([127, 0, 0, 1], 8080)),
            secret: Secret::random(),
            public_keys: Vec::new(),
            token_issuer: None,
            token_audience: None,
            token_leeway: crate::token::DEFAULT_LEEWAY,
            admin_token: None,
            token_endpoint: false,
            allowed_origins: Vec::new(),
            behind_tls: false,
            token_ttl: Duration::from_secs(3600),
            max_token_ttl: Duration::from_secs(24 * 3600),
            dev_mode: false,
            idle_limit: Duration::from_secs(30),
            store: None,
            instance_id: None,
            sweep_interval: Duration::from_secs(1),
            session_ttl: Duration::from_secs(300),
            resume_limits: ResumeLimits::default(),
            resume_budget_bytes: 64 << 20,
            max_sessions_per_user: 8,
            poll_hold: Duration::from_secs(1),
            max_frame_bytes: 1 << 20,
            max_poll_body_bytes: 4 << 20,
            max_queued_frames: 4096,
            max_queued_bytes: 4 << 20,
            max_connections: 10_000,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(10),
            latency_probe_interval: Some(Duration::from_secs(5)),
            close_grace: Duration::from_secs(2),
        }
    }
}

/// A [`ServerConfig`] value that cannot work.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// This duration must be above zero.
    ZeroDuration(&'static str),
    /// This size or count must be above zero.
    ZeroLimit(&'static str),
    /// The HMAC secret is empty.
    EmptySecret,
    /// `token_ttl` is above `max_token_ttl`.
    TokenTtlAboveMax,
    /// `token_endpoint` is on but there is no `admin_token` (or it is empty).
    TokenEndpointWithoutAdmin,
    /// An entry of `allowed_origins` is not `scheme://host[:port]`.
    InvalidOrigin(String),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::ZeroDuration(name) => write!(f, "{name} must be above zero"),
            ConfigError::ZeroLimit(name) => write!(f, "{name} must be above zero"),
            ConfigError::EmptySecret => f.write_str("the token secret is empty"),
            ConfigError::TokenTtlAboveMax => f.write_str("token_ttl is above max_token_ttl"),
            ConfigError::TokenEndpointWithoutAdmin => {
                f.write_str("the token endpoint needs an admin token")
            }
            ConfigError::InvalidOrigin(o) => {
                write!(f, "allowed origin {o:?} is not scheme://host[:port]")
            }
        }
    }
}

impl std::error::Error for ConfigError {}

impl ServerConfig {
    /// Checks every value; [`crate::Server::start`] calls it.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let durations = [
            ("token_ttl", self.token_ttl),
            ("max_token_ttl", self.max_token_ttl),
            ("idle_limit", self.idle_limit),
            ("sweep_interval", self.sweep_interval),
            ("session_ttl", self.session_ttl),
            ("resume_limits.max_age", self.resume_limits.max_age),
            ("header_read_timeout", self.header_read_timeout),
            ("body_read_timeout", self.body_read_timeout),
        ];
        if let Some((name, _)) = durations.iter().find(|(_, d)| d.is_zero()) {
            return Err(ConfigError::ZeroDuration(name));
        }
        if self.latency_probe_interval.is_some_and(|d| d.is_zero()) {
            return Err(ConfigError::ZeroDuration("latency_probe_interval"));
        }
        let limits = [
            ("max_frame_bytes", self.max_frame_bytes),
            ("max_poll_body_bytes", self.max_poll_body_bytes),
            ("max_queued_frames", self.max_queued_frames),
            ("max_queued_bytes", self.max_queued_bytes),
            ("max_connections", self.max_connections),
            ("resume_budget_bytes", self.resume_budget_bytes),
            ("max_sessions_per_user", self.max_sessions_per_user),
            ("resume_limits.max_bytes", self.resume_limits.max_bytes),
            (
                "resume_limits.max_messages",
                self.resume_limits.max_messages,
            ),
        ];
        if let Some((name, _)) = limits.iter().find(|(_, n)| *n == 0) {
            return Err(ConfigError::ZeroLimit(name));
        }
        if self.secret.as_bytes().is_empty() {
            return Err(ConfigError::EmptySecret);
        }
        if self.token_ttl > self.max_token_ttl {
            return Err(ConfigError::TokenTtlAboveMax);
        }
        if self.token_endpoint
            && self
                .admin_token
                .as_ref()
                .is_none_or(|t| t.as_bytes().is_empty())
        {
            return Err(ConfigError::TokenEndpointWithoutAdmin);
        }
        if let Some(bad) = self.allowed_origins.iter().find(|o| !valid_origin(o)) {
            return Err(ConfigError::InvalidOrigin(bad.clone()));
        }
        Ok(())
    }

    /// The token checker this configuration describes.
    pub(crate) fn token_authority(&self) -> crate::token::TokenAuthority {
        crate::token::TokenAuthority::new(self.secret.clone())
            .with_public_keys(self.public_keys.iter().cloned())
            .with_issuer(self.token_issuer.clone())
            .with_audience(self.token_audience.clone())
            .with_leeway(self.token_leeway)
    }

    /// Whether a request with this `Origin` header may be served (`host` is the
    /// request's `Host`, for same-origin requests).
    pub(crate) fn origin_allowed(&self, origin: &str, host: Option<&str>) -> bool {
        if self.allowed_origins.iter().any(|o| o == origin) {
            return true;
        }
        let Some((scheme, authority)) = origin.split_once("://") else {
            return false;
        };
        if host.is_some_and(|h| h.eq_ignore_ascii_case(authority))
            && matches!(scheme, "http" | "https")
        {
            return true;
        }
        if self.dev_mode && scheme == "http" {
            let name = match authority.rsplit_once(':') {
                Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
                _ => authority,
            };
            return matches!(name, "localhost" | "127.0.0.1" | "[::1]");
        }
        false
    }
}

/// `scheme://host[:port]`, no path, no trailing slash.
fn valid_origin(origin: &str) -> bool {
    match origin.split_once("://") {
        Some((scheme, authority)) => {
            !scheme.is_empty()
                && !authority.is_empty()
                && !authority.contains(['/', '?', '#', ' ', '*'])
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_checks_catch_zeroes() {
        assert_eq!(ServerConfig::default().validate(), Ok(()));
        let c = ServerConfig {
            idle_limit: Duration::ZERO,
            ..ServerConfig::default()
        };
        assert_eq!(c.validate(), Err(ConfigError::ZeroDuration("idle_limit")));
        let c = ServerConfig {
            max_frame_bytes: 0,
            ..ServerConfig::default()
        };
        assert_eq!(c.validate(), Err(ConfigError::ZeroLimit("max_frame_bytes")));
        let c = ServerConfig {
            secret: Secret::new(Vec::new()),
            ..ServerConfig::default()
        };
        assert_eq!(c.validate(), Err(ConfigError::EmptySecret));
        let mut c = ServerConfig::default();
        c.token_ttl = c.max_token_ttl + Duration::from_secs(1);
        assert_eq!(c.validate(), Err(ConfigError::TokenTtlAboveMax));
        let c = ServerConfig {
            token_endpoint: true,
            ..ServerConfig::default()
        };
        assert_eq!(c.validate(), Err(ConfigError::TokenEndpointWithoutAdmin));
        let c = ServerConfig {
            allowed_origins: vec!["https://app.example/".into()],
            ..ServerConfig::default()
        };
        assert!(matches!(c.validate(), Err(ConfigError::InvalidOrigin(_))));
    }

    #[test]
    fn origins() {
        let mut c = ServerConfig::default();
        assert!(!c.origin_allowed("https://evil.example", Some("127.0.0.1:8080")));
        assert!(!c.origin_allowed("http://localhost:3000", Some("127.0.0.1:8080")));
        assert!(c.origin_allowed("http://127.0.0.1:8080", Some("127.0.0.1:8080")));
        c.allowed_origins = vec!["https://app.example".into()];
        assert!(c.origin_allowed("https://app.example", None));
        assert!(!c.origin_allowed("https://app.example.evil", None));
        c.dev_mode = true;
        assert!(c.origin_allowed("http://localhost:3000", None));
        assert!(c.origin_allowed("http://127.0.0.1:9", None));
        assert!(c.origin_allowed("http://[::1]:9", None));
        assert!(!c.origin_allowed("http://localhost.evil.example:3000", None));
        assert!(!c.origin_allowed("https://evil.example", None));
    }
}
