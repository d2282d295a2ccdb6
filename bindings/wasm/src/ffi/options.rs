//! Reading the options: the core's `Config` from the numbers `js/options.js` packs, the
//! strings and payloads, and the session of the `resume` option; a violation of the
//! core's rules written back as numbers.

use tether_core::{
    AuthConfig, BackoffConfig, CloseClass, CloseRule, Config, ConfigError, ConfigProblem, Duration,
    FallbackConfig, HeartbeatConfig, Jitter, OverflowPolicy, QualityBound, TokenPlacement,
    WireMode,
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

    /// Milliseconds, rounded to the microsecond (js/options.js checked the range: 0 to 1e15).
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

    // `set_count` and `set_usize` out of line: inlined at each of their many slots, they
    // were about 70 bytes more of gzipped wasm.
    #[inline(never)]
    pub(super) fn set_count(&self, slot: usize, to: &mut u32) {
        if let Some(n) = self.count(slot) {
            *to = n;
        }
    }

    #[inline(never)]
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
/// expected range in words (js/options.js's `configError` puts it in words).
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
///
/// The fields are set on a `Config` built from the url alone, then the whole is checked
/// once more: what the builder's setters would do, without moving the large `Config` from
/// one setter to the next (code in the wasm). The url is the first thing `validate`
/// checks and the defaults pass, so the first check fails exactly when the second would
/// fail on the url.
pub(super) fn config(r: &mut Reader<'_>) -> Result<Config, ConfigError> {
    let n = Numbers::read(r);
    let mut c = Config::builder(r.string()).build()?;
    if n.count(PROTOCOL) == Some(1) {
        c.wire = WireMode::Protocol;
    }
    c.protocols = (0..r.u32()).map(|_| r.string()).collect();
    n.set_ms(CONNECT_TIMEOUT, &mut c.connect_timeout);
    n.set_ms(MAX_RETRY_HINT, &mut c.max_retry_hint);
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
        c.fallback = Some(f);
    }
    #[cfg(not(feature = "polling"))]
    let _ = (url, FALLBACK, core::marker::PhantomData::<FallbackConfig>);
    let (ping, pong) = (r.payload(), r.payload());
    match n.count(HEARTBEAT) {
        Some(1) => c.heartbeat = None,
        Some(2) => {
            let mut h = HeartbeatConfig::default();
            n.set_ms(HEARTBEAT + 1, &mut h.interval);
            n.set_ms(HEARTBEAT + 2, &mut h.timeout);
            n.set_count(HEARTBEAT + 3, &mut h.max_missed);
            c.heartbeat = Some(h);
            if let (Some(ping), Some(pong)) = (ping, pong) {
                c.wire = WireMode::Plain {
                    heartbeat: Some((ping, pong)),
                };
            }
        }
        _ => {}
    }
    let b = &mut c.backoff;
    *b = BackoffConfig::with_delays(n.ms(BACKOFF), n.ms(BACKOFF + 1));
    if let Some(f) = n.get(BACKOFF + 2) {
        b.factor = f;
    }
    match n.count(BACKOFF + 3) {
        Some(1) => b.jitter = Jitter::Decorrelated,
        Some(2) => b.jitter = Jitter::None,
        _ => {}
    }
    b.max_attempts = n.count(BACKOFF + 4);
    let q = &mut c.queue;
    n.set_usize(QUEUE, &mut q.max_messages);
    n.set_usize(QUEUE + 1, &mut q.max_bytes);
    q.max_age = n.ms(QUEUE + 2);
    if n.count(QUEUE + 3) == Some(1) {
        q.overflow = OverflowPolicy::DropOldest;
    }
    #[cfg(feature = "quality")]
    {
        let q = &mut c.quality;
        for (i, level) in q.levels.iter_mut().enumerate() {
            *level = QualityBound {
                rtt: n.ms(LEVELS + 2 * i).unwrap_or(level.rtt),
                loss: n.get(LEVELS + 2 * i + 1).unwrap_or(level.loss),
            };
        }
        n.set_usize(QUALITY, &mut q.window);
        n.set_ms(QUALITY + 1, &mut q.max_age);
        n.set_count(QUALITY + 2, &mut q.hysteresis);
    }
    #[cfg(not(feature = "quality"))]
    let _ = (LEVELS, QUALITY, core::marker::PhantomData::<QualityBound>);
    let placement = r.u8();
    let query = if placement == 2 {
        Some(r.string())
    } else {
        None
    };
    #[cfg(feature = "token")]
    if placement != 0 {
        let mut a = AuthConfig {
            placement: query.map_or(TokenPlacement::Header, TokenPlacement::Query),
            ..AuthConfig::default()
        };
        n.set_ms(AUTH, &mut a.refresh_lead);
        n.set_ms(AUTH + 1, &mut a.fetch_timeout);
        c.auth = Some(a);
    }
    #[cfg(not(feature = "token"))]
    let _ = (
        query,
        AUTH,
        core::marker::PhantomData::<(AuthConfig, TokenPlacement)>,
    );
    let rules = n.0.get(RULES..).unwrap_or_default();
    // In the order given: the first rule given is checked first, as `close_rule` called
    // for the last rule first leaves them.
    c.close_rules = rules
        .chunks_exact(3)
        .map(|rule| {
            let class = match rule[2] as u32 {
                0 => CloseClass::Retry,
                1 => CloseClass::AuthRejected,
                2 => CloseClass::Replaced,
                _ => CloseClass::Fatal,
            };
            CloseRule::range(rule[0] as u16, rule[1] as u16, class)
        })
        .collect();
    n.set_ms(RESUME_GAP, &mut c.resume_gap);
    n.set_ms(LIVENESS_TIMEOUT, &mut c.liveness_timeout);
    n.set_ms(CLOSE_LINGER, &mut c.close_linger);
    n.set_usize(MAX_MESSAGE_BYTES, &mut c.max_message_bytes);
    if let (Some(high), Some(low)) = (n.get(SEED), n.get(SEED + 1)) {
        c.seed = Some(((high as u64) << 32) | low as u64);
    }
    n.set_count(ACK, &mut c.ack_every);
    n.set_ms(ACK + 1, &mut c.ack_delay);
    c.validate()?;
    Ok(c)
}

/// A session from the input, as `tw_handoff` writes it.
#[cfg(feature = "handoff")]
pub(super) fn session(r: &mut Reader<'_>) -> Option<tether_core::SessionHandoff> {
    let (client_id, session) = (r.u64(), r.u64());
    let secret = tether_core::protocol::SessionSecret::from_hex(r.bytes())?;
    let (last_transport, recv_seq, send_seq) = (r.u64(), r.u64(), r.u64());
    // Loops, not `collect::<Option<Vec<_>>>()`: its adapter is code of its own per use.
    let mut unacknowledged = Vec::new();
    for _ in 0..r.u32() {
        let seq = r.u64();
        unacknowledged.push((seq, r.payload()?));
    }
    let mut unsent = Vec::new();
    for _ in 0..r.u32() {
        unsent.push(r.payload()?);
    }
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
