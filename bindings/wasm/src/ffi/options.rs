//! Reading the options: the core's `Config` from the numbers `js/options.js` packs, the
//! strings and payloads, and the session of the `resume` option; a violation of the
//! core's rules written back as numbers.

use tether_core::{
    AuthConfig, BackoffConfig, CloseClass, CloseRule, Config, ConfigError, ConfigProblem, Duration,
    FallbackConfig, HeartbeatConfig, Jitter, OverflowPolicy, QualityBound, QualityConfig,
    QueueConfig, TokenPlacement,
};

use super::*;
use crate::names;

/// The numbers of the options (`packOptions` of js/options.js): each `None` when NaN or
/// missing.
pub(super) struct Numbers(pub(super) Vec<f64>);

impl Numbers {
    fn get(&self, slot: usize) -> Option<f64> {
        self.0.get(slot).copied().filter(|n| !n.is_nan())
    }

    /// Milliseconds, rounded to the microsecond as bindings/wasm/src/options.rs does.
    fn ms(&self, slot: usize) -> Option<Duration> {
        self.get(slot)
            .map(|n| Duration::from_micros((n * 1000.0).round() as u64))
    }

    fn count(&self, slot: usize) -> Option<u32> {
        self.get(slot).map(|n| n as u32)
    }

    pub(super) fn set_ms(&self, slot: usize, to: &mut Duration) {
        if let Some(d) = self.ms(slot) {
            *to = d;
        }
    }

    pub(super) fn set_count(&self, slot: usize, to: &mut u32) {
        if let Some(n) = self.count(slot) {
            *to = n;
        }
    }

    fn set_usize(&self, slot: usize, to: &mut usize) {
        if let Some(n) = self.count(slot) {
            *to = n as usize;
        }
    }

    pub(super) fn read(r: &mut Reader<'_>) -> Numbers {
        let n = r.u32() as usize;
        Numbers((0..n).map(|_| r.f64()).collect())
    }
}

// The slots, as js/options.js packs them.
const PROTOCOL: usize = 0;
const CONNECT_TIMEOUT: usize = 1;
const MAX_RETRY_HINT: usize = 2;
const FALLBACK: usize = 3;
const HEARTBEAT: usize = 8;
const BACKOFF: usize = 12;
const QUEUE: usize = 17;
const LEVELS: usize = 21;
const QUALITY: usize = 29;
const AUTH: usize = 32;
const RESUME_GAP: usize = 34;
const LIVENESS_TIMEOUT: usize = 35;
const CLOSE_LINGER: usize = 36;
const MAX_MESSAGE_BYTES: usize = 37;
const ACK: usize = 38;
const SEED: usize = 40;
const RULES: usize = 42;

/// A violation of the core's rules: `field | problem << 6 | other << 12` and the
/// expected range in words (as bindings/wasm/src/options.rs throws it).
pub(super) fn violation(w: &mut Writer, e: &ConfigError) {
    let (problem, other, expected) = match &e.problem {
        ConfigProblem::Zero => (0, 0, ""),
        ConfigProblem::Empty => (1, 0, ""),
        ConfigProblem::MustNotExceed { other } => (2, names::field_code(*other), ""),
        ConfigProblem::OutOfRange { expected } => (3, 0, *expected),
        ConfigProblem::OutOfOrder => (4, 0, ""),
        ConfigProblem::NotWebSocketUrl => (5, 0, ""),
        ConfigProblem::NotHttpUrl => (6, 0, ""),
        ConfigProblem::MalformedUrl => (7, 0, ""),
        ConfigProblem::InvalidSubprotocol => (8, 0, ""),
        ConfigProblem::InvalidQueryName => (9, 0, ""),
        ConfigProblem::NeedsProtocol => (10, 0, ""),
        _ => (11, 0, ""),
    };
    w.u8(1);
    w.u32(u32::from(names::field_code(e.field)) | problem << 6 | u32::from(other) << 12);
    w.str(expected);
}

/// The core's `Config` from the input: the numbers (a `u32` count, then `f64`s), the
/// url, the subprotocols (a count, then each), the poll url (a flag, then it), the plain
/// heartbeat's ping and pong (payloads), the token's placement (0 none, 1 header,
/// 2 query + its name).
pub(super) fn config(r: &mut Reader<'_>) -> Result<Config, ConfigError> {
    let n = Numbers::read(r);
    let mut b = Config::builder(r.string());
    if n.count(PROTOCOL) == Some(1) {
        b = b.protocol();
    }
    let protocols: Vec<String> = (0..r.u32()).map(|_| r.string()).collect();
    if !protocols.is_empty() {
        b = b.protocols(protocols);
    }
    if let Some(t) = n.ms(CONNECT_TIMEOUT) {
        b = b.connect_timeout(t);
    }
    if let Some(t) = n.ms(MAX_RETRY_HINT) {
        b = b.max_retry_hint(t);
    }
    let poll = r.u8() == 1;
    let url = if poll { Some(r.string()) } else { None };
    #[cfg(feature = "polling")]
    if let Some(url) = url {
        let mut f = FallbackConfig::new(url);
        n.set_count(FALLBACK, &mut f.after_failures);
        n.set_ms(FALLBACK + 1, &mut f.min_interval);
        n.set_ms(FALLBACK + 2, &mut f.max_interval);
        n.set_ms(FALLBACK + 3, &mut f.probe_interval);
        n.set_ms(FALLBACK + 4, &mut f.request_timeout);
        b = b.fallback(f);
    }
    #[cfg(not(feature = "polling"))]
    let _ = (url, FALLBACK, core::marker::PhantomData::<FallbackConfig>);
    let (ping, pong) = (r.payload(), r.payload());
    match n.count(HEARTBEAT) {
        Some(1) => b = b.heartbeat(None),
        Some(2) => {
            let mut c = HeartbeatConfig::default();
            n.set_ms(HEARTBEAT + 1, &mut c.interval);
            n.set_ms(HEARTBEAT + 2, &mut c.timeout);
            n.set_count(HEARTBEAT + 3, &mut c.max_missed);
            b = b.heartbeat(Some(c));
            if let (Some(ping), Some(pong)) = (ping, pong) {
                b = b.plain_heartbeat(ping, pong);
            }
        }
        _ => {}
    }
    let mut c = BackoffConfig::with_delays(n.ms(BACKOFF), n.ms(BACKOFF + 1));
    if let Some(f) = n.get(BACKOFF + 2) {
        c.factor = f;
    }
    c.jitter = match n.count(BACKOFF + 3) {
        Some(1) => Jitter::Decorrelated,
        Some(2) => Jitter::None,
        _ => c.jitter,
    };
    c.max_attempts = n.count(BACKOFF + 4);
    b = b.backoff(c);
    let mut c = QueueConfig::default();
    n.set_usize(QUEUE, &mut c.max_messages);
    n.set_usize(QUEUE + 1, &mut c.max_bytes);
    c.max_age = n.ms(QUEUE + 2);
    if n.count(QUEUE + 3) == Some(1) {
        c.overflow = OverflowPolicy::DropOldest;
    }
    b = b.queue(c);
    #[cfg(feature = "quality")]
    {
        let mut c = QualityConfig::default();
        for (i, level) in c.levels.iter_mut().enumerate() {
            *level = QualityBound {
                rtt: n.ms(LEVELS + 2 * i).unwrap_or(level.rtt),
                loss: n.get(LEVELS + 2 * i + 1).unwrap_or(level.loss),
            };
        }
        n.set_usize(QUALITY, &mut c.window);
        n.set_ms(QUALITY + 1, &mut c.max_age);
        n.set_count(QUALITY + 2, &mut c.hysteresis);
        b = b.quality(c);
    }
    #[cfg(not(feature = "quality"))]
    let _ = (
        LEVELS,
        QUALITY,
        core::marker::PhantomData::<(QualityConfig, QualityBound)>,
    );
    let placement = r.u8();
    let query = if placement == 2 {
        Some(r.string())
    } else {
        None
    };
    #[cfg(feature = "token")]
    if placement != 0 {
        let mut c = AuthConfig {
            placement: query.map_or(TokenPlacement::Header, TokenPlacement::Query),
            ..AuthConfig::default()
        };
        n.set_ms(AUTH, &mut c.refresh_lead);
        n.set_ms(AUTH + 1, &mut c.fetch_timeout);
        b = b.auth(c);
    }
    #[cfg(not(feature = "token"))]
    let _ = (
        query,
        AUTH,
        core::marker::PhantomData::<(AuthConfig, TokenPlacement)>,
    );
    let rules = n.0.get(RULES..).unwrap_or_default();
    for rule in rules.chunks_exact(3).rev() {
        let class = match rule[2] as u32 {
            0 => CloseClass::Retry,
            1 => CloseClass::AuthRejected,
            2 => CloseClass::Replaced,
            _ => CloseClass::Fatal,
        };
        b = b.close_rule(CloseRule::range(rule[0] as u16, rule[1] as u16, class));
    }
    if let Some(d) = n.ms(RESUME_GAP) {
        b = b.resume_gap(d);
    }
    if let Some(d) = n.ms(LIVENESS_TIMEOUT) {
        b = b.liveness_timeout(d);
    }
    if let Some(d) = n.ms(CLOSE_LINGER) {
        b = b.close_linger(d);
    }
    if let Some(bytes) = n.count(MAX_MESSAGE_BYTES) {
        b = b.max_message_bytes(bytes as usize);
    }
    if let (Some(high), Some(low)) = (n.get(SEED), n.get(SEED + 1)) {
        b = b.seed(((high as u64) << 32) | low as u64);
    }
    let mut config = b.build()?;
    if n.get(ACK).is_some() || n.get(ACK + 1).is_some() {
        n.set_count(ACK, &mut config.ack_every);
        n.set_ms(ACK + 1, &mut config.ack_delay);
        config.validate()?;
    }
    Ok(config)
}

/// A session from the input, as `tw_handoff` writes it.
#[cfg(feature = "handoff")]
pub(super) fn session(r: &mut Reader<'_>) -> Option<tether_core::SessionHandoff> {
    let (client_id, session) = (r.u64(), r.u64());
    let secret = tether_core::protocol::SessionSecret::from_hex(r.bytes())?;
    let (last_transport, recv_seq, send_seq) = (r.u64(), r.u64(), r.u64());
    let unacknowledged = (0..r.u32())
        .map(|_| Some((r.u64(), r.payload()?)))
        .collect::<Option<Vec<_>>>()?;
    let unsent = (0..r.u32())
        .map(|_| r.payload())
        .collect::<Option<Vec<_>>>()?;
    Some(tether_core::SessionHandoff {
        client_id,
        session,
        secret,
        last_transport,
        recv_seq,
        send_seq,
        unacknowledged,
        unsent,
    })
}
