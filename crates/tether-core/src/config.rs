//! Configuration: every knob the core has, its default, and validation.
//!
//! A [`Config`] is made with [`Config::builder`]; [`ConfigBuilder::build`] checks every
//! value and names the offending field ([`ConfigField`]) in a [`ConfigError`]. Nothing here
//! panics.

use core::fmt;

use crate::close::CloseRule;
use crate::payload::Payload;
use crate::time::Duration;

/// How the delay before the next attempt is randomised.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Jitter {
    /// Uniform in `[0, cap]` where `cap = min(max_delay, initial_delay × factor^n)`.
    /// Spreads a herd of clients the most (the default).
    Full,
    /// `min(max_delay, uniform(initial_delay, previous × 3))` (AWS "decorrelated jitter").
    Decorrelated,
    /// No randomness: exactly `cap`. For tests and single clients that want predictability.
    None,
}

/// Exponential backoff between connection attempts.
#[derive(Clone, Debug, PartialEq)]
pub struct BackoffConfig {
    /// Cap of the first delay.
    pub initial_delay: Duration,
    /// Growth per failed attempt (≥ 1.0).
    pub factor: f64,
    /// No delay is longer than this.
    pub max_delay: Duration,
    /// Randomisation of each delay.
    pub jitter: Jitter,
    /// Stop with [`crate::TerminalReason::GaveUp`] after this many consecutive failed
    /// attempts (`None`: never give up).
    pub max_attempts: Option<u32>,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        BackoffConfig {
            initial_delay: Duration::from_secs(1),
            factor: 1.5,
            max_delay: Duration::from_secs(2),
            jitter: Jitter::Full,
            max_attempts: None,
        }
    }
}

impl BackoffConfig {
    /// The defaults with the delays given; one given alone wins over the other's default,
    /// which bends to it: `(Some(3 s), None)` raises `max_delay` to 3 s, `(None,
    /// Some(300 ms))` lowers `initial_delay` to 300 ms. Both given are taken as they are
    /// (inverted, [`ConfigBuilder::build`] refuses them). What the JavaScript options do
    /// when only one of `initialDelayMs` and `maxDelayMs` is set.
    ///
    /// ```
    /// use tether_core::{BackoffConfig, Duration};
    ///
    /// let c = BackoffConfig::with_delays(Some(Duration::from_secs(3)), None);
    /// assert_eq!((c.initial_delay, c.max_delay), (Duration::from_secs(3), Duration::from_secs(3)));
    /// let c = BackoffConfig::with_delays(None, Some(Duration::from_millis(300)));
    /// assert_eq!(c.initial_delay, Duration::from_millis(300));
    /// ```
    #[must_use]
    pub fn with_delays(initial: Option<Duration>, max: Option<Duration>) -> Self {
        let mut c = BackoffConfig::default();
        match (initial, max) {
            (Some(i), None) => {
                c.initial_delay = i;
                c.max_delay = c.max_delay.max(i);
            }
            (None, Some(m)) => {
                c.max_delay = m;
                c.initial_delay = c.initial_delay.min(m);
            }
            (Some(i), Some(m)) => {
                c.initial_delay = i;
                c.max_delay = m;
            }
            (None, None) => {}
        }
        c
    }
}

/// Application-level ping/pong (browsers cannot send WebSocket ping frames).
#[derive(Clone, Debug, PartialEq)]
pub struct HeartbeatConfig {
    /// Time between pings.
    pub interval: Duration,
    /// A ping with no pong (and no other inbound frame) within this time is missed.
    pub timeout: Duration,
    /// This many missed pings in a row declare the socket dead (half-open detection).
    pub max_missed: u32,
}

impl Default for HeartbeatConfig {
    fn default() -> Self {
        HeartbeatConfig {
            interval: Duration::from_secs(4),
            timeout: Duration::from_secs(3),
            max_missed: 2,
        }
    }
}

/// Upper bounds of one quality level: round-trip time and loss fraction (0.0–1.0).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct QualityBound {
    /// Mean RTT must be below this.
    pub rtt: Duration,
    /// Loss fraction must be below this.
    pub loss: f64,
}

/// How latency and loss map to a [`crate::Quality`] level.
#[derive(Clone, Debug, PartialEq)]
pub struct QualityConfig {
    /// Bounds of Excellent, Good, Fair and Poor, in that order; worse is Critical.
    pub levels: [QualityBound; 4],
    /// The figures (mean RTT, loss, jitter, percentiles) are computed over at most this
    /// many recent samples (pings, or polling requests) ...
    pub window: usize,
    /// ... and only over those younger than this, whichever holds fewer: a change of
    /// the network shows within `max_age` and `hysteresis` samples, and an outage's
    /// missed pings stop counting `max_age` after them, whether or not pings follow.
    pub max_age: Duration,
    /// A new level must be seen this many times in a row before it is reported.
    pub hysteresis: u32,
}

impl Default for QualityConfig {
    fn default() -> Self {
        let b = |ms, loss| QualityBound {
            rtt: Duration::from_millis(ms),
            loss,
        };
        QualityConfig {
            levels: [b(50, 0.005), b(100, 0.02), b(200, 0.05), b(500, 0.10)],
            window: 20,
            max_age: Duration::from_secs(10),
            hysteresis: 2,
        }
    }
}

/// What to do when a send would exceed the queue's limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum OverflowPolicy {
    /// Refuse the new message (`send` returns [`crate::SendError::QueueFull`]).
    RejectNew,
    /// Drop the oldest message not yet written to a transport, reported as
    /// [`crate::Event::Dropped`]; if every retained message is already in flight, the new
    /// one is refused.
    DropOldest,
}

/// Bounds of what the client retains: messages waiting for a connection and, in protocol
/// mode, messages sent but not yet acknowledged.
#[derive(Clone, Debug, PartialEq)]
pub struct QueueConfig {
    /// Most messages retained.
    pub max_messages: usize,
    /// Most payload bytes retained.
    pub max_bytes: usize,
    /// Messages waiting longer than this for a connection are dropped and reported.
    pub max_age: Option<Duration>,
    /// What a send that does not fit does.
    pub overflow: OverflowPolicy,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            max_messages: 1000,
            max_bytes: 1 << 20,
            max_age: None,
            overflow: OverflowPolicy::RejectNew,
        }
    }
}

/// HTTP polling fallback (Tether protocol mode only). A driver whose transport cannot poll
/// (tether-native built without its `polling` feature) refuses a configuration that has
/// one when the client is made (`tether_dispatch::transport::check_capabilities`).
#[derive(Clone, Debug, PartialEq)]
pub struct FallbackConfig {
    /// The polling endpoint, `http://` or `https://`.
    pub poll_url: String,
    /// Try polling after this many consecutive WebSocket failures (a refused connect
    /// does not count: nothing listens, polling would fail too). Polling is on trial
    /// until it answers; then, since the failures may only have been a server restart
    /// (a browser cannot tell a refused connect from a blocked WebSocket), the WebSocket
    /// is probed once more, the connection still reconnecting: a welcomed probe connects
    /// on the WebSocket and the fallback is never reported; a failed one (or one not
    /// welcomed within `probe_timeout`) reports it and connects on polling; one refused
    /// (nothing listens) or failing while the device is offline ends the trial instead,
    /// back to the WebSocket with backoff. WebSockets really blocked so cost that one
    /// probe before polling is reported. A platform that says WebSockets are blocked
    /// ([`TransportFailure::Blocked`](crate::TransportFailure)) switches at once, without
    /// trial or probe.
    pub after_failures: u32,
    /// Poll interval while messages flow.
    pub min_interval: Duration,
    /// Poll interval when idle or failing.
    pub max_interval: Duration,
    /// While polling, try the WebSocket again this often (upgrade back), give or take
    /// a fifth at random; the interval does not grow after failed probes.
    pub probe_interval: Duration,
    /// A probe must open (and be welcomed) within this (and within `connect_timeout`);
    /// polling waits meanwhile, its transport kept, and goes on with it when the probe
    /// fails (no new Hello, no new transport at the server). This bounds too how long
    /// the polling trial's probe can hold back the fallback (see `after_failures`); that
    /// probe gets it once more if its deadline passed while the process slept
    /// (`resume_gap`), since a late deadline proves nothing about WebSockets. And how
    /// long that probe waits for polling to be idle after the trial's Welcome: then it
    /// goes once no request is in flight.
    pub probe_timeout: Duration,
    /// An HTTP request with no answer within this time has failed.
    pub request_timeout: Duration,
}

impl FallbackConfig {
    /// Defaults for the given polling URL.
    #[must_use]
    pub fn new(poll_url: impl Into<String>) -> Self {
        FallbackConfig {
            poll_url: poll_url.into(),
            after_failures: 3,
            min_interval: Duration::from_millis(100),
            max_interval: Duration::from_secs(2),
            probe_interval: Duration::from_secs(5),
            probe_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(10),
        }
    }
}

/// Where the driver puts the token.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenPlacement {
    /// `Authorization: Bearer <token>` (native clients).
    Header,
    /// A query parameter of this name (browsers cannot set headers on a WebSocket).
    Query(String),
}

/// Token-based authentication: the driver is asked for a token before each attempt.
#[derive(Clone, Debug, PartialEq)]
pub struct AuthConfig {
    /// Refresh this long before the token expires, without dropping the connection.
    pub refresh_lead: Duration,
    /// How the token travels.
    pub placement: TokenPlacement,
    /// A token request with no answer within this time has failed.
    pub fetch_timeout: Duration,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            refresh_lead: Duration::from_secs(60),
            placement: TokenPlacement::Header,
            fetch_timeout: Duration::from_secs(10),
        }
    }
}

/// What travels on the wire.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum WireMode {
    /// Any WebSocket server: payloads pass through untouched. The heartbeat sends `ping`
    /// and takes an inbound frame equal to `pong` as its answer; without it the heartbeat
    /// is off.
    Plain {
        /// `(ping, pong)` payloads of the application-level heartbeat.
        heartbeat: Option<(Payload, Payload)>,
    },
    /// The Tether protocol (PROTOCOL.md): ids, acks, resend, dedup and resume.
    Protocol,
}

/// Everything the core needs to run one logical connection.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Config {
    /// `ws://` or `wss://` URL.
    pub url: String,
    /// WebSocket subprotocols to offer.
    pub protocols: Vec<String>,
    /// Plain or Tether protocol.
    pub wire: WireMode,
    /// An attempt that has not opened within this time has failed.
    pub connect_timeout: Duration,
    /// The longest wait a server's retry hint (an `R` envelope, a `Retry-After` header) can
    /// impose before the next attempt; a longer hint is cut to this, so no server can park
    /// a client for good. Default 60 s.
    pub max_retry_hint: Duration,
    /// Delays between attempts.
    pub backoff: BackoffConfig,
    /// Ping/pong; `None` turns it off.
    pub heartbeat: Option<HeartbeatConfig>,
    /// Quality levels.
    pub quality: QualityConfig,
    /// Outbound retention.
    pub queue: QueueConfig,
    /// HTTP polling fallback.
    pub fallback: Option<FallbackConfig>,
    /// Token provider; `None` connects without a token.
    pub auth: Option<AuthConfig>,
    /// The user's close-code rules, checked before the defaults.
    pub close_rules: Vec<CloseRule>,
    /// A timer that fires this much later than scheduled is treated as a resume from
    /// sleep or a throttled background tab.
    pub resume_gap: Duration,
    /// After a resume, visibility or online hint: the socket must show life within this.
    pub liveness_timeout: Duration,
    /// `close()` keeps (re)connecting and flushing for at most this long, until every
    /// message sent before it is acknowledged (protocol mode) or written (plain mode);
    /// what is left then is reported `Dropped`. Default 5 s.
    /// [`Connection::close_now`](crate::Connection::close_now) does not wait.
    pub close_linger: Duration,
    /// Reading from the transport pauses once the messages handed to the application but
    /// not yet read by it (see [`Connection::handle_app_read`](crate::Connection::handle_app_read))
    /// pass this many payload bytes, and resumes once they are down to half of it.
    /// Nothing is ever dropped instead. Default 1 MiB.
    pub max_unread_bytes: usize,
    /// The same bound in messages. Default 10 000.
    pub max_unread_messages: usize,
    /// Largest message accepted, in and out.
    pub max_message_bytes: usize,
    /// Protocol mode: acknowledge after this many inbound messages...
    pub ack_every: u32,
    /// ...or this long after the first unacknowledged one.
    pub ack_delay: Duration,
    /// A fixed seed for the jitter and the client id, for tests that replay a run
    /// ([`Entropy::fixed`](crate::rng::Entropy::fixed)). `None` (the default): the
    /// [`Entropy`](crate::rng::Entropy) the driver draws from the platform, so every client
    /// has its own id and its own schedule.
    pub seed: Option<u64>,
}

impl Config {
    /// A builder with the defaults for `url`: a `ws://` or `wss://` URL, or an `http://`
    /// or `https://` one, taken as the `ws://` or `wss://` URL of the same place (see
    /// [`websocket_url`]).
    ///
    /// ```
    /// use tether_core::Config;
    /// let config = Config::builder("wss://example.com/ws").protocol().build()?;
    /// assert_eq!(config.url, "wss://example.com/ws");
    /// let config = Config::builder("https://example.com/ws").build()?;
    /// assert_eq!(config.url, "wss://example.com/ws");
    /// # Ok::<(), tether_core::ConfigError>(())
    /// ```
    pub fn builder(url: impl Into<String>) -> ConfigBuilder {
        ConfigBuilder {
            config: Config {
                url: websocket_url(url.into()),
                protocols: Vec::new(),
                wire: WireMode::Plain { heartbeat: None },
                connect_timeout: Duration::from_secs(10),
                max_retry_hint: Duration::from_secs(60),
                backoff: BackoffConfig::default(),
                heartbeat: Some(HeartbeatConfig::default()),
                quality: QualityConfig::default(),
                queue: QueueConfig::default(),
                fallback: None,
                auth: None,
                close_rules: Vec::new(),
                resume_gap: Duration::from_secs(5),
                liveness_timeout: Duration::from_secs(2),
                close_linger: Duration::from_secs(5),
                max_unread_bytes: 1 << 20,
                max_unread_messages: 10_000,
                max_message_bytes: 16 << 20,
                ack_every: 32,
                ack_delay: Duration::from_millis(20),
                seed: None,
            },
        }
    }

    /// True in Tether protocol mode.
    #[must_use]
    pub fn is_protocol(&self) -> bool {
        matches!(self.wire, WireMode::Protocol)
    }

    /// Checks every value; the first problem found is returned, naming its field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        use ConfigProblem::*;
        let err = |field, problem| Err(ConfigError { field, problem });
        check_url(
            &self.url,
            ConfigField::Url,
            &["ws://", "wss://"],
            NotWebSocketUrl,
        )?;
        if self.protocols.iter().any(|p| !is_token(p)) {
            return err(ConfigField::Protocols, InvalidSubprotocol);
        }
        nonzero(self.connect_timeout, ConfigField::ConnectTimeout)?;
        let b = &self.backoff;
        nonzero(b.initial_delay, ConfigField::BackoffInitialDelay)?;
        nonzero(b.max_delay, ConfigField::BackoffMaxDelay)?;
        if b.initial_delay > b.max_delay {
            return err(
                ConfigField::BackoffInitialDelay,
                MustNotExceed {
                    other: ConfigField::BackoffMaxDelay,
                },
            );
        }
        if !(b.factor.is_finite() && (1.0..=100.0).contains(&b.factor)) {
            return err(
                ConfigField::BackoffFactor,
                OutOfRange {
                    expected: "a number from 1.0 to 100.0",
                },
            );
        }
        if b.max_attempts == Some(0) {
            return err(ConfigField::BackoffMaxAttempts, Zero);
        }
        if let Some(h) = &self.heartbeat {
            nonzero(h.interval, ConfigField::HeartbeatInterval)?;
            nonzero(h.timeout, ConfigField::HeartbeatTimeout)?;
            if h.timeout > h.interval {
                return err(
                    ConfigField::HeartbeatTimeout,
                    MustNotExceed {
                        other: ConfigField::HeartbeatInterval,
                    },
                );
            }
            if h.max_missed == 0 {
                return err(ConfigField::HeartbeatMaxMissed, Zero);
            }
        }
        if let WireMode::Plain {
            heartbeat: Some((ping, pong)),
        } = &self.wire
        {
            if ping.is_empty() || pong.is_empty() {
                return err(ConfigField::WireHeartbeat, Empty);
            }
        }
        let q = &self.quality;
        if q.window == 0 {
            return err(ConfigField::QualityWindow, Zero);
        }
        nonzero(q.max_age, ConfigField::QualityMaxAge)?;
        if q.hysteresis == 0 {
            return err(ConfigField::QualityHysteresis, Zero);
        }
        for (i, level) in q.levels.iter().enumerate() {
            if level.rtt.is_zero() || !(level.loss > 0.0 && level.loss <= 1.0) {
                return err(
                    ConfigField::QualityLevels,
                    OutOfRange {
                        expected: "each level a positive RTT and a loss in (0, 1]",
                    },
                );
            }
            if i > 0 {
                let prev = q.levels[i - 1];
                if level.rtt <= prev.rtt || level.loss <= prev.loss {
                    return err(ConfigField::QualityLevels, OutOfOrder);
                }
            }
        }
        let qu = &self.queue;
        if qu.max_messages == 0 {
            return err(ConfigField::QueueMaxMessages, Zero);
        }
        if qu.max_bytes == 0 {
            return err(ConfigField::QueueMaxBytes, Zero);
        }
        if let Some(age) = qu.max_age {
            nonzero(age, ConfigField::QueueMaxAge)?;
        }
        if let Some(f) = &self.fallback {
            if !self.is_protocol() {
                return err(ConfigField::Fallback, NeedsProtocol);
            }
            check_url(
                &f.poll_url,
                ConfigField::FallbackPollUrl,
                &["http://", "https://"],
                NotHttpUrl,
            )?;
            if f.after_failures == 0 {
                return err(ConfigField::FallbackAfterFailures, Zero);
            }
            nonzero(f.min_interval, ConfigField::FallbackMinInterval)?;
            nonzero(f.max_interval, ConfigField::FallbackMaxInterval)?;
            if f.min_interval > f.max_interval {
                return err(
                    ConfigField::FallbackMinInterval,
                    MustNotExceed {
                        other: ConfigField::FallbackMaxInterval,
                    },
                );
            }
            nonzero(f.probe_interval, ConfigField::FallbackProbeInterval)?;
            nonzero(f.probe_timeout, ConfigField::FallbackProbeTimeout)?;
            nonzero(f.request_timeout, ConfigField::FallbackRequestTimeout)?;
        }
        if let Some(a) = &self.auth {
            nonzero(a.fetch_timeout, ConfigField::AuthFetchTimeout)?;
            if let TokenPlacement::Query(name) = &a.placement {
                if !is_token(name) {
                    return err(ConfigField::AuthPlacement, InvalidQueryName);
                }
            }
        }
        for rule in &self.close_rules {
            if rule.first > rule.last {
                return err(ConfigField::CloseRules, OutOfOrder);
            }
        }
        nonzero(self.max_retry_hint, ConfigField::MaxRetryHint)?;
        nonzero(self.resume_gap, ConfigField::ResumeGap)?;
        nonzero(self.liveness_timeout, ConfigField::LivenessTimeout)?;
        nonzero(self.close_linger, ConfigField::CloseLinger)?;
        if self.max_unread_bytes == 0 {
            return err(ConfigField::MaxUnreadBytes, Zero);
        }
        if self.max_unread_messages == 0 {
            return err(ConfigField::MaxUnreadMessages, Zero);
        }
        if self.max_message_bytes == 0 {
            return err(ConfigField::MaxMessageBytes, Zero);
        }
        if self.ack_every == 0 {
            return err(ConfigField::AckEvery, Zero);
        }
        nonzero(self.ack_delay, ConfigField::AckDelay)?;
        Ok(())
    }
}

fn nonzero(d: Duration, field: ConfigField) -> Result<(), ConfigError> {
    if d.is_zero() {
        Err(ConfigError {
            field,
            problem: ConfigProblem::Zero,
        })
    } else {
        Ok(())
    }
}

/// An RFC 7230 token: what a subprotocol or a query parameter name may be.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            // A `matches!`, not `b"…".contains(&c)`: that is `memchr`, about 0.4 kB of wasm.
            .all(|c| {
                c.is_ascii_alphanumeric()
                    || matches!(
                        c,
                        b'!' | b'#'
                            | b'$'
                            | b'%'
                            | b'&'
                            | b'\''
                            | b'*'
                            | b'+'
                            | b'-'
                            | b'.'
                            | b'^'
                            | b'_'
                            | b'`'
                            | b'|'
                            | b'~'
                    )
            })
}

/// `url` with an `http://` or `https://` scheme (in any case) as the `ws://` or `wss://`
/// URL of the same place, as the WebSocket standard's constructor takes them; any other
/// string unchanged (validation judges it). Every platform maps URLs through this.
///
/// ```
/// use tether_core::config::websocket_url;
/// assert_eq!(websocket_url("HTTPS://example.com/ws".into()), "wss://example.com/ws");
/// assert_eq!(websocket_url("http://[::1]:8080/ws?x=1".into()), "ws://[::1]:8080/ws?x=1");
/// assert_eq!(websocket_url("ftp://example.com".into()), "ftp://example.com");
/// ```
#[must_use]
pub fn websocket_url(url: String) -> String {
    for (from, to) in [("http://", "ws://"), ("https://", "wss://")] {
        if has_scheme(&url, from) {
            // Not `format!`: its machinery would weigh on the wasm build.
            let mut mapped = String::from(to);
            mapped.push_str(url.get(from.len()..).unwrap_or(""));
            return mapped;
        }
    }
    url
}

fn check_url(
    url: &str,
    field: ConfigField,
    schemes: &[&str],
    wrong_scheme: ConfigProblem,
) -> Result<(), ConfigError> {
    let error = |problem| Err(ConfigError { field, problem });
    let Some(scheme) = schemes.iter().find(|s| has_scheme(url, s)) else {
        return error(wrong_scheme);
    };
    // Bytes, not `str`: every split point is ASCII, and no slicing of a `str` can panic
    // (its message would bring `char`'s Debug and Unicode tables into a wasm build).
    let rest = url.as_bytes().get(scheme.len()..).unwrap_or_default();
    let host_end = rest
        .iter()
        .position(|b| matches!(b, b'/' | b'?' | b'#'))
        .unwrap_or(rest.len());
    let host = &rest[..host_end];
    if host.first().is_none_or(|&b| b == b':') || url.chars().any(|c| c.is_whitespace()) {
        return error(ConfigProblem::MalformedUrl);
    }
    // An explicit port must be a number from 1 to 65535 (`[::1]:80` keeps its colons).
    // Searched from the end byte by byte: `rfind`/`rsplit` bring `memrchr` into the wasm.
    let after = |s: &'_ [u8], b: u8| s.iter().rposition(|&c| c == b).map(|i| i + 1);
    let authority = &host[after(host, b'@').unwrap_or(0)..];
    // As a browser's URL parser reads it (its WebSocket constructor would throw at every
    // attempt): a host after the user info, only a port after an IPv6 address, and a
    // port of digits only.
    if authority.first().is_none_or(|&b| b == b':') {
        return error(ConfigProblem::MalformedUrl);
    }
    let port = match after(authority, b']') {
        Some(end) if end == authority.len() => None,
        Some(end) => match authority[end..].strip_prefix(b":") {
            Some(port) => Some(port),
            None => return error(ConfigProblem::MalformedUrl),
        },
        None => after(authority, b':').map(|start| &authority[start..]),
    };
    if port.is_some_and(|port| !(1..=65535).contains(&parse_port(port))) {
        return error(ConfigProblem::MalformedUrl);
    }
    Ok(())
}

/// A port of ASCII digits only (a browser's URL parser takes no sign), or 0 if it is not
/// one, is empty or is above 65535. Not `parse`: its generic code weighs on a wasm build.
fn parse_port(port: &[u8]) -> u32 {
    let mut n = 0u32;
    for &b in port {
        if !b.is_ascii_digit() || n > 65535 {
            return 0;
        }
        n = n * 10 + u32::from(b - b'0');
    }
    n
}

/// Whether `url` starts with `scheme` (lower case, ASCII) in any case.
fn has_scheme(url: &str, scheme: &str) -> bool {
    url.as_bytes()
        .get(..scheme.len())
        .is_some_and(|s| s.eq_ignore_ascii_case(scheme.as_bytes()))
}

/// A field of [`Config`] that [`Config::validate`] can find wrong: what a [`ConfigError`]
/// names, as a value to match on rather than a string to compare.
///
/// Not `#[non_exhaustive]`, on purpose: whoever spells the fields for their users (the
/// JavaScript bindings name the option the user wrote) matches every variant, so a new
/// field that can be wrong fails their build until it has a spelling.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConfigField {
    /// `url`
    Url,
    /// `protocols`
    Protocols,
    /// `connect_timeout`
    ConnectTimeout,
    /// `backoff.initial_delay`
    BackoffInitialDelay,
    /// `backoff.max_delay`
    BackoffMaxDelay,
    /// `backoff.factor`
    BackoffFactor,
    /// `backoff.max_attempts`
    BackoffMaxAttempts,
    /// `heartbeat.interval`
    HeartbeatInterval,
    /// `heartbeat.timeout`
    HeartbeatTimeout,
    /// `heartbeat.max_missed`
    HeartbeatMaxMissed,
    /// `wire.heartbeat`
    WireHeartbeat,
    /// `quality.window`
    QualityWindow,
    /// `quality.max_age`
    QualityMaxAge,
    /// `quality.hysteresis`
    QualityHysteresis,
    /// `quality.levels`
    QualityLevels,
    /// `queue.max_messages`
    QueueMaxMessages,
    /// `queue.max_bytes`
    QueueMaxBytes,
    /// `queue.max_age`
    QueueMaxAge,
    /// `fallback`
    Fallback,
    /// `fallback.poll_url`
    FallbackPollUrl,
    /// `fallback.after_failures`
    FallbackAfterFailures,
    /// `fallback.min_interval`
    FallbackMinInterval,
    /// `fallback.max_interval`
    FallbackMaxInterval,
    /// `fallback.probe_interval`
    FallbackProbeInterval,
    /// `fallback.probe_timeout`
    FallbackProbeTimeout,
    /// `fallback.request_timeout`
    FallbackRequestTimeout,
    /// `auth.fetch_timeout`
    AuthFetchTimeout,
    /// `auth.placement`
    AuthPlacement,
    /// `close_rules`
    CloseRules,
    /// `max_retry_hint`
    MaxRetryHint,
    /// `resume_gap`
    ResumeGap,
    /// `liveness_timeout`
    LivenessTimeout,
    /// `close_linger`
    CloseLinger,
    /// `max_unread_bytes`
    MaxUnreadBytes,
    /// `max_unread_messages`
    MaxUnreadMessages,
    /// `max_message_bytes`
    MaxMessageBytes,
    /// `ack_every`
    AckEvery,
    /// `ack_delay`
    AckDelay,
}

impl ConfigField {
    /// The field's path in [`Config`], dotted (`backoff.initial_delay`).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            ConfigField::Url => "url",
            ConfigField::Protocols => "protocols",
            ConfigField::ConnectTimeout => "connect_timeout",
            ConfigField::BackoffInitialDelay => "backoff.initial_delay",
            ConfigField::BackoffMaxDelay => "backoff.max_delay",
            ConfigField::BackoffFactor => "backoff.factor",
            ConfigField::BackoffMaxAttempts => "backoff.max_attempts",
            ConfigField::HeartbeatInterval => "heartbeat.interval",
            ConfigField::HeartbeatTimeout => "heartbeat.timeout",
            ConfigField::HeartbeatMaxMissed => "heartbeat.max_missed",
            ConfigField::WireHeartbeat => "wire.heartbeat",
            ConfigField::QualityWindow => "quality.window",
            ConfigField::QualityMaxAge => "quality.max_age",
            ConfigField::QualityHysteresis => "quality.hysteresis",
            ConfigField::QualityLevels => "quality.levels",
            ConfigField::QueueMaxMessages => "queue.max_messages",
            ConfigField::QueueMaxBytes => "queue.max_bytes",
            ConfigField::QueueMaxAge => "queue.max_age",
            ConfigField::Fallback => "fallback",
            ConfigField::FallbackPollUrl => "fallback.poll_url",
            ConfigField::FallbackAfterFailures => "fallback.after_failures",
            ConfigField::FallbackMinInterval => "fallback.min_interval",
            ConfigField::FallbackMaxInterval => "fallback.max_interval",
            ConfigField::FallbackProbeInterval => "fallback.probe_interval",
            ConfigField::FallbackProbeTimeout => "fallback.probe_timeout",
            ConfigField::FallbackRequestTimeout => "fallback.request_timeout",
            ConfigField::AuthFetchTimeout => "auth.fetch_timeout",
            ConfigField::AuthPlacement => "auth.placement",
            ConfigField::CloseRules => "close_rules",
            ConfigField::MaxRetryHint => "max_retry_hint",
            ConfigField::ResumeGap => "resume_gap",
            ConfigField::LivenessTimeout => "liveness_timeout",
            ConfigField::CloseLinger => "close_linger",
            ConfigField::MaxUnreadBytes => "max_unread_bytes",
            ConfigField::MaxUnreadMessages => "max_unread_messages",
            ConfigField::MaxMessageBytes => "max_message_bytes",
            ConfigField::AckEvery => "ack_every",
            ConfigField::AckDelay => "ack_delay",
        }
    }
}

impl fmt::Display for ConfigField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A configuration value that makes no sense, and which one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The offending field.
    pub field: ConfigField,
    /// What is wrong with it.
    pub problem: ConfigProblem,
}

/// What is wrong with a configuration value.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigProblem {
    /// Zero where a positive value is needed.
    Zero,
    /// Empty where a value is needed.
    Empty,
    /// Larger than another field that bounds it.
    MustNotExceed {
        /// The bounding field.
        other: ConfigField,
    },
    /// Outside its range.
    OutOfRange {
        /// The allowed range, in words.
        expected: &'static str,
    },
    /// Values that must rise (or be ordered) do not.
    OutOfOrder,
    /// Not a `ws://` or `wss://` URL (nor an `http://` or `https://` one, which
    /// [`Config::builder`] maps to them).
    NotWebSocketUrl,
    /// Not an `http://` or `https://` URL.
    NotHttpUrl,
    /// The right scheme but no host (or only user info), a port that is not 1 to 65535
    /// in digits, text after an IPv6 address that is no port, or white space.
    MalformedUrl,
    /// A subprotocol that is not an HTTP token.
    InvalidSubprotocol,
    /// A query parameter name that is not an HTTP token.
    InvalidQueryName,
    /// Only the Tether protocol can do this (HTTP polling needs its envelopes).
    NeedsProtocol,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid config `")?;
        f.write_str(self.field.as_str())?;
        f.write_str("`: ")?;
        match &self.problem {
            ConfigProblem::Zero => f.write_str("must not be zero"),
            ConfigProblem::Empty => f.write_str("must not be empty"),
            ConfigProblem::MustNotExceed { other } => {
                f.write_str("must not exceed `")?;
                f.write_str(other.as_str())?;
                f.write_str("`")
            }
            ConfigProblem::OutOfRange { expected } => {
                f.write_str("expected ")?;
                f.write_str(expected)
            }
            ConfigProblem::OutOfOrder => f.write_str("values out of order"),
            ConfigProblem::NotWebSocketUrl => {
                f.write_str("must be a ws://, wss://, http:// or https:// URL")
            }
            ConfigProblem::NotHttpUrl => f.write_str("must be an http:// or https:// URL"),
            ConfigProblem::MalformedUrl => f.write_str("malformed URL (no host, or white space)"),
            ConfigProblem::InvalidSubprotocol => f.write_str("not a valid subprotocol name"),
            ConfigProblem::InvalidQueryName => f.write_str("not a valid query parameter name"),
            ConfigProblem::NeedsProtocol => f.write_str("needs the Tether protocol wire mode"),
        }
    }
}

impl std::error::Error for ConfigError {}

/// Builds a [`Config`]; see [`Config::builder`].
#[derive(Clone, Debug)]
#[must_use]
pub struct ConfigBuilder {
    config: Config,
}

impl ConfigBuilder {
    /// Speak the Tether protocol (acks, resend, resume; needed for polling fallback).
    pub fn protocol(mut self) -> Self {
        self.config.wire = WireMode::Protocol;
        self
    }

    /// Plain mode with an application-level heartbeat: send `ping`, expect `pong`.
    pub fn plain_heartbeat(mut self, ping: impl Into<Payload>, pong: impl Into<Payload>) -> Self {
        self.config.wire = WireMode::Plain {
            heartbeat: Some((ping.into(), pong.into())),
        };
        self
    }

    /// Subprotocols to offer.
    pub fn protocols<I, S>(mut self, protocols: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.config.protocols = protocols.into_iter().map(Into::into).collect();
        self
    }

    /// Connect timeout of each attempt.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.config.connect_timeout = timeout;
        self
    }

    /// The longest wait a server's retry hint may impose (see [`Config::max_retry_hint`]).
    pub fn max_retry_hint(mut self, max: Duration) -> Self {
        self.config.max_retry_hint = max;
        self
    }

    /// Backoff between attempts.
    pub fn backoff(mut self, backoff: BackoffConfig) -> Self {
        self.config.backoff = backoff;
        self
    }

    /// Heartbeat timing; `None` turns it off.
    pub fn heartbeat(mut self, heartbeat: Option<HeartbeatConfig>) -> Self {
        self.config.heartbeat = heartbeat;
        self
    }

    /// Quality thresholds, window and hysteresis.
    pub fn quality(mut self, quality: QualityConfig) -> Self {
        self.config.quality = quality;
        self
    }

    /// Outbound queue bounds and overflow policy.
    pub fn queue(mut self, queue: QueueConfig) -> Self {
        self.config.queue = queue;
        self
    }

    /// HTTP polling fallback.
    pub fn fallback(mut self, fallback: FallbackConfig) -> Self {
        self.config.fallback = Some(fallback);
        self
    }

    /// Ask for a token before every attempt.
    pub fn auth(mut self, auth: AuthConfig) -> Self {
        self.config.auth = Some(auth);
        self
    }

    /// Add a close-code rule, checked before the defaults and earlier rules.
    pub fn close_rule(mut self, rule: CloseRule) -> Self {
        self.config.close_rules.insert(0, rule);
        self
    }

    /// Resume detection and liveness check after platform hints.
    pub fn resume_gap(mut self, gap: Duration) -> Self {
        self.config.resume_gap = gap;
        self
    }

    /// Deadline of the liveness check after a resume, visibility or online hint.
    pub fn liveness_timeout(mut self, timeout: Duration) -> Self {
        self.config.liveness_timeout = timeout;
        self
    }

    /// How long `close()` keeps delivering what is queued.
    pub fn close_linger(mut self, linger: Duration) -> Self {
        self.config.close_linger = linger;
        self
    }

    /// How far the application may fall behind in reading messages before reading from
    /// the transport pauses: `messages` and payload `bytes` handed to it and not yet read.
    pub fn unread_limits(mut self, messages: usize, bytes: usize) -> Self {
        self.config.max_unread_messages = messages;
        self.config.max_unread_bytes = bytes;
        self
    }

    /// Largest message in or out.
    pub fn max_message_bytes(mut self, bytes: usize) -> Self {
        self.config.max_message_bytes = bytes;
        self
    }

    /// Protocol acknowledgement batching.
    pub fn ack(mut self, every: u32, delay: Duration) -> Self {
        self.config.ack_every = every;
        self.config.ack_delay = delay;
        self
    }

    /// A fixed seed for the jitter and the client id (tests; see [`Config::seed`]).
    pub fn seed(mut self, seed: u64) -> Self {
        self.config.seed = Some(seed);
        self
    }

    /// Validates and returns the configuration.
    pub fn build(self) -> Result<Config, ConfigError> {
        self.config.validate()?;
        Ok(self.config)
    }
}
