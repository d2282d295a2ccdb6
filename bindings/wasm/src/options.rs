//! `new TetherClient(url, options)`: the options as `js/options.js` packs them (read and
//! type-checked there: a number per slot, then the strings, functions and payloads), made
//! into a core [`Config`] and checked by the core. A violation of the core's rules is
//! thrown as numbers (see [`violation`]); `js/options.js` puts it in words.

use js_sys::{Array, Float64Array, Function};
use tether_core::selftest::{Criteria, CriteriaField};
use tether_core::{
    AuthConfig, BackoffConfig, CloseClass, CloseRule, Config, ConfigError, ConfigProblem, Duration,
    FallbackConfig, HeartbeatConfig, Jitter, OverflowPolicy, QualityBound, QualityConfig,
    QueueConfig, TokenPlacement,
};
use wasm_bindgen::{JsCast, JsValue};

use crate::names::field_code;

/// What the options say beyond the core's configuration.
pub(crate) struct Options {
    pub(crate) config: Config,
    pub(crate) websocket: JsValue,
    pub(crate) fetch: JsValue,
    pub(crate) token_provider: Option<Function>,
    pub(crate) page_hints: bool,
    /// A session to take over (`client.handoff()` of another client).
    pub(crate) resume: Option<tether_core::SessionHandoff>,
}

// The slots of the numbers, in the order `packOptions` (js/options.js) pushes them.
const PROTOCOL: usize = 0;
const CONNECT_TIMEOUT: usize = 1;
const MAX_RETRY_HINT: usize = 2;
const FALLBACK: usize = 3; // afterFailures, minIntervalMs, maxIntervalMs, probeIntervalMs, requestTimeoutMs
const HEARTBEAT: usize = 8; // 0 default, 1 off, 2 given; intervalMs, timeoutMs, maxMissed
const BACKOFF: usize = 12; // initialDelayMs, maxDelayMs, factor, jitter, maxAttempts
const QUEUE: usize = 17; // maxMessages, maxBytes, maxAgeMs, overflow
const LEVELS: usize = 21; // rttMs and loss of 4 levels
const QUALITY: usize = 29; // window, maxAgeMs, hysteresis
const AUTH: usize = 32; // refreshLeadMs, fetchTimeoutMs
const RESUME_GAP: usize = 34;
const LIVENESS_TIMEOUT: usize = 35;
const CLOSE_LINGER: usize = 36;
const MAX_MESSAGE_BYTES: usize = 37;
const ACK: usize = 38; // every, delayMs
const SEED: usize = 40; // high and low 32 bits
const PAGE_HINTS: usize = 42;
/// Then three per close rule: first, last, action.
const RULES: usize = 43;

/// The numbers of a pack: each `None` when not given (NaN, or missing).
struct Numbers(Vec<f64>);

impl Numbers {
    fn of(value: &JsValue) -> Numbers {
        Numbers(value.unchecked_ref::<Float64Array>().to_vec())
    }

    fn get(&self, slot: usize) -> Option<f64> {
        self.0.get(slot).copied().filter(|n| !n.is_nan())
    }

    /// Milliseconds (js/options.js checked them: from 0 to 1e15).
    fn ms(&self, slot: usize) -> Option<Duration> {
        self.get(slot)
            .map(|n| Duration::from_micros((n * 1000.0).round() as u64))
    }

    /// A whole number (js/options.js checked its range).
    fn count(&self, slot: usize) -> Option<u32> {
        self.get(slot).map(|n| n as u32)
    }

    fn set_ms(&self, slot: usize, to: &mut Duration) {
        if let Some(d) = self.ms(slot) {
            *to = d;
        }
    }

    fn set_count(&self, slot: usize, to: &mut u32) {
        if let Some(n) = self.count(slot) {
            *to = n;
        }
    }

    fn set_usize(&self, slot: usize, to: &mut usize) {
        if let Some(n) = self.count(slot) {
            *to = n as usize;
        }
    }
}

/// A core violation as js/options.js's `configError` takes it: `[field | problem << 6 |
/// other field << 12, expected range in words]`.
pub(crate) fn violation(e: &ConfigError) -> JsValue {
    let (problem, other, expected) = match &e.problem {
        ConfigProblem::Zero => (0, 0, ""),
        ConfigProblem::Empty => (1, 0, ""),
        ConfigProblem::MustNotExceed { other } => (2, field_code(*other), ""),
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
    let code = u32::from(field_code(e.field)) | problem << 6 | u32::from(other) << 12;
    Array::of2(&code.into(), &expected.into()).into()
}

/// Reads `new TetherClient(url, options)`'s arguments, `options` as `packOptions` packs
/// them.
pub(crate) fn read(url: &JsValue, packed: &JsValue) -> Result<Options, JsValue> {
    let p: &Array = packed.unchecked_ref();
    let n = Numbers::of(&p.get(0));
    let mut b = Config::builder(url.as_string().unwrap_or_default());
    let protocol = n.count(PROTOCOL) == Some(1);
    if protocol {
        b = b.protocol();
    }
    let protocols = p.get(1);
    if Array::is_array(&protocols) {
        b = b.protocols(
            protocols
                .unchecked_ref::<Array>()
                .iter()
                .map(|p| p.as_string().unwrap_or_default()),
        );
    }
    if let Some(t) = n.ms(CONNECT_TIMEOUT) {
        b = b.connect_timeout(t);
    }
    if let Some(t) = n.ms(MAX_RETRY_HINT) {
        b = b.max_retry_hint(t);
    }
    if let Some(url) = p.get(2).as_string() {
        let mut f = FallbackConfig::new(url);
        n.set_count(FALLBACK, &mut f.after_failures);
        n.set_ms(FALLBACK + 1, &mut f.min_interval);
        n.set_ms(FALLBACK + 2, &mut f.max_interval);
        n.set_ms(FALLBACK + 3, &mut f.probe_interval);
        n.set_ms(FALLBACK + 4, &mut f.request_timeout);
        b = b.fallback(f);
    }
    match n.count(HEARTBEAT) {
        Some(1) => b = b.heartbeat(None),
        Some(2) => {
            let mut c = HeartbeatConfig::default();
            n.set_ms(HEARTBEAT + 1, &mut c.interval);
            n.set_ms(HEARTBEAT + 2, &mut c.timeout);
            n.set_count(HEARTBEAT + 3, &mut c.max_missed);
            b = b.heartbeat(Some(c));
            let (ping, pong) = (p.get(3), p.get(4));
            if let (Some(ping), Some(pong)) = (payload(&ping), payload(&pong)) {
                b = b.plain_heartbeat(ping, pong);
            }
        }
        _ => {}
    }
    // One bound given alone bends the other's default (the core's rule).
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
    // js/options.js passes the provider it wrapped (`tokens`), or undefined.
    let token_provider = Some(p.get(5))
        .filter(|f| !f.is_undefined())
        .map(JsCast::unchecked_into::<Function>);
    if token_provider.is_some() {
        let mut c = AuthConfig {
            // null: an Authorization header.
            placement: p
                .get(6)
                .as_string()
                .map_or(TokenPlacement::Header, TokenPlacement::Query),
            ..AuthConfig::default()
        };
        n.set_ms(AUTH, &mut c.refresh_lead);
        n.set_ms(AUTH + 1, &mut c.fetch_timeout);
        b = b.auth(c);
    }
    // The builder checks the rule added last first; the array's first rule wins.
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
    // Unless told to replay a seed, the driver draws each client's own from the platform.
    if let (Some(high), Some(low)) = (n.get(SEED), n.get(SEED + 1)) {
        b = b.seed(((high as u64) << 32) | low as u64);
    }
    let resume = match p.get(9) {
        value if value.is_undefined() => None,
        value => Some(crate::handoff::from_js(&value)?),
    };
    let mut config = b.build().map_err(|e| violation(&e))?;
    if n.get(ACK).is_some() || n.get(ACK + 1).is_some() {
        n.set_count(ACK, &mut config.ack_every);
        n.set_ms(ACK + 1, &mut config.ack_delay);
        config.validate().map_err(|e| violation(&e))?;
    }
    Ok(Options {
        config,
        websocket: p.get(7),
        fetch: p.get(8),
        token_provider,
        page_hints: n.count(PAGE_HINTS) != Some(0),
        resume,
    })
}

/// A payload js/options.js let through (a string or bytes).
fn payload(value: &JsValue) -> Option<tether_core::Payload> {
    if value.is_undefined() {
        return None;
    }
    crate::convert::payload_of(value)
}

/// The self-test's criteria: the core's defaults, overridden by what `packCriteria`
/// (js/options.js) gives, then checked by the core's [`Criteria::validate`]. A criterion
/// out of range is thrown as its index (`criteriaError` puts it in words).
pub(crate) fn criteria(value: &JsValue) -> Result<Criteria, JsValue> {
    let n = Numbers::of(value);
    let mut c = Criteria::default();
    n.set_ms(0, &mut c.connect_within);
    n.set_count(1, &mut c.round_trips);
    n.set_ms(2, &mut c.latency_below);
    n.set_count(3, &mut c.burst);
    n.set_ms(4, &mut c.burst_within);
    n.set_ms(5, &mut c.stable_for);
    n.set_ms(6, &mut c.reconnect_within);
    c.validate().map_err(|field| {
        // The order of CRITERIA in js/options.js.
        JsValue::from(match field {
            CriteriaField::ConnectWithin => 0,
            CriteriaField::RoundTrips => 1,
            CriteriaField::LatencyBelow => 2,
            CriteriaField::Burst => 3,
            CriteriaField::BurstWithin => 4,
            CriteriaField::StableFor => 5,
            _ => 6,
        })
    })?;
    Ok(c)
}
