//! Every knob of the server, with defaults that suit a local demo or test.

use core::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use tether_core::protocol::ResumeLimits;

/// The HMAC key that signs tokens. Its `Debug` output is redacted.
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
    /// Key that signs and checks tokens. Default: random per process.
    pub secret: Secret,
    /// Lifetime of a token from `POST /api/token` when the request names none. Default 1 h.
    pub token_ttl: Duration,
    /// Longest lifetime `POST /api/token` grants. Default 24 h.
    pub max_token_ttl: Duration,
    /// Accept clients without a token as `dev-temp-<id>` users. Default off.
    pub dev_mode: bool,
    /// A WebSocket silent this long is closed with 4408; a polling transport with no
    /// request this long is detached. Default 30 s.
    pub idle_limit: Duration,
    /// How often the sweeper looks for idle polling transports, old sessions and old
    /// resume buffer entries. Default 1 s.
    pub sweep_interval: Duration,
    /// A session with no transport for this long is forgotten (its client then gets a
    /// reset). Default 5 min.
    pub session_ttl: Duration,
    /// Bounds of each session's buffer of unacknowledged server messages.
    /// Default 1024 messages, 2 min.
    pub resume_limits: ResumeLimits,
    /// Longest time an `op=recv` poll is held open waiting for messages (a `wait_ms`
    /// query may shorten it). Default 1 s.
    pub poll_hold: Duration,
    /// Largest WebSocket message accepted; a bigger one closes the socket with 1009.
    /// Default 1 MiB.
    pub max_frame_bytes: usize,
    /// Largest poll request body; a bigger one is answered with 413. Default 4 MiB.
    pub max_poll_body_bytes: usize,
    /// Frames queued for one WebSocket before it is closed as too slow (1013).
    /// Default 4096.
    pub max_queued_frames: usize,
    /// How often the server sends a WebSocket ping control frame to measure latency
    /// (browsers and WebSocket libraries answer them by themselves); `None` measures
    /// nothing. Default 5 s.
    pub latency_probe_interval: Option<Duration>,
    /// How long a closing WebSocket may take to finish its close handshake, and how long
    /// [`crate::RunningServer::shutdown`] waits for connections. Default 2 s.
    pub close_grace: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            bind: SocketAddr::from(([127, 0, 0, 1], 8080)),
            secret: Secret::random(),
            token_ttl: Duration::from_secs(3600),
            max_token_ttl: Duration::from_secs(24 * 3600),
            dev_mode: false,
            idle_limit: Duration::from_secs(30),
            sweep_interval: Duration::from_secs(1),
            session_ttl: Duration::from_secs(300),
            resume_limits: ResumeLimits::default(),
            poll_hold: Duration::from_secs(1),
            max_frame_bytes: 1 << 20,
            max_poll_body_bytes: 4 << 20,
            max_queued_frames: 4096,
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
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::ZeroDuration(name) => write!(f, "{name} must be above zero"),
            ConfigError::ZeroLimit(name) => write!(f, "{name} must be above zero"),
            ConfigError::EmptySecret => f.write_str("the token secret is empty"),
            ConfigError::TokenTtlAboveMax => f.write_str("token_ttl is above max_token_ttl"),
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
        Ok(())
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
    }
}
