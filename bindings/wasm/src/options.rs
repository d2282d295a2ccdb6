//! `new TetherClient(url, options)`: the options object, read and checked into a core
//! [`Config`]. A value of the wrong type is a `TypeError`, a value out of range a
//! `RangeError`, and either names the option as the user wrote it.

use js_sys::{Array, Function, Reflect};
use tether_core::selftest::{Criteria, CriteriaField};
use tether_core::{
    AuthConfig, BackoffConfig, CloseClass, CloseRule, Config, ConfigBuilder, Duration,
    FallbackConfig, HeartbeatConfig, Jitter, OverflowPolicy, Payload, QualityBound, QualityConfig,
    QueueConfig, TokenPlacement,
};
use wasm_bindgen::{JsCast, JsValue};

use crate::errors::{range_error, type_error};
use crate::names::config_message;

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

/// Which error a wrong option is.
#[derive(Clone, Copy)]
enum Wrong {
    /// Of the wrong type.
    Type,
    /// Of the right type, but unacceptable.
    Range,
}

/// `<name> <what>`, as a `TypeError` or a `RangeError`. One builder for every message
/// keeps the wasm small: a `format!` per message costs more than the message.
fn wrong(kind: Wrong, name: &str, what: &str) -> JsValue {
    let mut message = String::with_capacity(name.len() + 1 + what.len());
    message.push_str(name);
    message.push(' ');
    message.push_str(what);
    match kind {
        Wrong::Type => type_error(&message),
        Wrong::Range => range_error(&message),
    }
}

const WHOLE_U32: &str = "must be a whole number from 0 to 4294967295";

/// One level of the options object, and its path for messages.
struct Reader {
    object: JsValue,
    path: String,
}

impl Reader {
    fn new(object: JsValue, path: String, allowed: &[&str]) -> Result<Reader, JsValue> {
        if !object.is_object() || object.is_function() || Array::is_array(&object) {
            return Err(wrong(Wrong::Type, &path, "must be an object"));
        }
        for key in js_sys::Object::keys(object.unchecked_ref::<js_sys::Object>()).iter() {
            let key = key.as_string().unwrap_or_default();
            if !allowed.contains(&key.as_str()) {
                let mut known = String::from("is not an option; known: ");
                for (i, name) in allowed.iter().enumerate() {
                    if i > 0 {
                        known.push_str(", ");
                    }
                    known.push_str(name);
                }
                return Err(wrong(Wrong::Type, &join(&path, &key), &known));
            }
        }
        Ok(Reader { object, path })
    }

    fn fail(&self, kind: Wrong, key: &str, what: &str) -> JsValue {
        wrong(kind, &join(&self.path, key), what)
    }

    /// The value, or `None` when it is `undefined`.
    fn get(&self, key: &str) -> Option<JsValue> {
        let value = Reflect::get(&self.object, &JsValue::from_str(key)).ok()?;
        (!value.is_undefined()).then_some(value)
    }

    fn nested(&self, key: &str, allowed: &[&str]) -> Result<Option<Reader>, JsValue> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => Reader::new(v, join(&self.path, key), allowed).map(Some),
        }
    }

    fn bool(&self, key: &str) -> Result<Option<bool>, JsValue> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_bool()
                .map(Some)
                .ok_or_else(|| self.fail(Wrong::Type, key, "must be a boolean")),
        }
    }

    fn number(&self, key: &str) -> Result<Option<f64>, JsValue> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => match v.as_f64() {
                Some(n) if n.is_nan() => Err(self.fail(Wrong::Range, key, "must not be NaN")),
                Some(n) => Ok(Some(n)),
                None => Err(self.fail(Wrong::Type, key, "must be a number")),
            },
        }
    }

    /// A whole number from 0 to `max`; `range` says so in words.
    fn integer(&self, key: &str, max: u32, range: &str) -> Result<Option<f64>, JsValue> {
        match self.number(key)? {
            Some(n) if n.fract() != 0.0 || n < 0.0 || n > f64::from(max) => {
                Err(self.fail(Wrong::Range, key, range))
            }
            other => Ok(other),
        }
    }

    fn count(&self, key: &str) -> Result<Option<usize>, JsValue> {
        Ok(self.integer(key, u32::MAX, WHOLE_U32)?.map(|n| n as usize))
    }

    fn count_u32(&self, key: &str) -> Result<Option<u32>, JsValue> {
        Ok(self.integer(key, u32::MAX, WHOLE_U32)?.map(|n| n as u32))
    }

    /// Milliseconds: a finite number ≥ 0.
    fn ms(&self, key: &str) -> Result<Option<Duration>, JsValue> {
        match self.number(key)? {
            Some(n) if !(0.0..=1e15).contains(&n) => Err(self.fail(
                Wrong::Range,
                key,
                "must be a number of milliseconds from 0 to 1e15",
            )),
            Some(n) => Ok(Some(Duration::from_micros((n * 1000.0).round() as u64))),
            None => Ok(None),
        }
    }

    fn string(&self, key: &str) -> Result<Option<String>, JsValue> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_string()
                .map(Some)
                .ok_or_else(|| self.fail(Wrong::Type, key, "must be a string")),
        }
    }

    /// The index in `names` of the value; `listed` is "must be one of …".
    fn choice(&self, key: &str, names: &[&str], listed: &str) -> Result<Option<usize>, JsValue> {
        let Some(value) = self.get(key) else {
            return Ok(None);
        };
        let text = value
            .as_string()
            .ok_or_else(|| self.fail(Wrong::Type, key, listed))?;
        names
            .iter()
            .position(|n| *n == text)
            .map(Some)
            .ok_or_else(|| self.fail(Wrong::Range, key, listed))
    }

    fn function(&self, key: &str) -> Result<Option<Function>, JsValue> {
        match self.get(key) {
            None => Ok(None),
            Some(v) if v.is_null() => Ok(None),
            Some(v) => v
                .dyn_into::<Function>()
                .map(Some)
                .map_err(|_| self.fail(Wrong::Type, key, "must be a function")),
        }
    }

    fn array(&self, key: &str) -> Result<Option<Array>, JsValue> {
        match self.get(key) {
            None => Ok(None),
            Some(v) if Array::is_array(&v) => Ok(Some(v.unchecked_into())),
            Some(_) => Err(self.fail(Wrong::Type, key, "must be an array")),
        }
    }

    /// A payload: a string or a Uint8Array.
    fn payload(&self, key: &str) -> Result<Option<Payload>, JsValue> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => crate::convert::payload_of(&v)
                .map(Some)
                .ok_or_else(|| self.fail(Wrong::Type, key, "must be a string or a Uint8Array")),
        }
    }
}

fn join(path: &str, key: &str) -> String {
    let mut name = String::with_capacity(path.len() + 1 + key.len());
    name.push_str(path);
    name.push('.');
    name.push_str(key);
    name
}

const CRITERIA: &[&str] = &[
    "connectWithinMs",
    "roundTrips",
    "latencyBelowMs",
    "burst",
    "burstWithinMs",
    "stableForMs",
    "reconnectWithinMs",
];

/// The self-test's criteria: the core's defaults, overridden by what `value` gives
/// (`undefined` and `null` give none), then checked by the core's
/// [`Criteria::validate`]. A key that is not a criterion, or a value of the wrong type,
/// is a `TypeError`; a value out of range a `RangeError` naming it.
pub(crate) fn criteria(value: JsValue) -> Result<Criteria, JsValue> {
    let mut c = Criteria::default();
    if value.is_undefined() || value.is_null() {
        return Ok(c);
    }
    let r = Reader::new(value, "criteria".into(), CRITERIA)?;
    let set = |d: &mut Duration, v: Option<Duration>| {
        if let Some(v) = v {
            *d = v;
        }
    };
    set(&mut c.connect_within, r.ms("connectWithinMs")?);
    set(&mut c.latency_below, r.ms("latencyBelowMs")?);
    set(&mut c.burst_within, r.ms("burstWithinMs")?);
    set(&mut c.stable_for, r.ms("stableForMs")?);
    set(&mut c.reconnect_within, r.ms("reconnectWithinMs")?);
    c.round_trips = r.count_u32("roundTrips")?.unwrap_or(c.round_trips);
    c.burst = r.count_u32("burst")?.unwrap_or(c.burst);
    c.validate().map_err(|field| {
        let (key, what) = match field {
            CriteriaField::RoundTrips => ("roundTrips", COUNT_RANGE),
            CriteriaField::Burst => ("burst", COUNT_RANGE),
            CriteriaField::ConnectWithin => ("connectWithinMs", WAIT_RANGE),
            CriteriaField::LatencyBelow => ("latencyBelowMs", WAIT_RANGE),
            CriteriaField::BurstWithin => ("burstWithinMs", WAIT_RANGE),
            CriteriaField::StableFor => ("stableForMs", WAIT_RANGE),
            _ => ("reconnectWithinMs", WAIT_RANGE),
        };
        r.fail(Wrong::Range, key, what)
    })?;
    Ok(c)
}

// The core's bounds (Criteria::MAX_COUNT, Criteria::MAX_WAIT), in words; a test in the
// package checks them against the core's.
const COUNT_RANGE: &str = "must be a whole number from 1 to 10000";
const WAIT_RANGE: &str = "must be from 1 to 600000 milliseconds";

const TOP: &[&str] = &[
    "protocol",
    "protocols",
    "connectTimeoutMs",
    "maxRetryHintMs",
    "pollUrl",
    "fallback",
    "heartbeat",
    "backoff",
    "queue",
    "quality",
    "auth",
    "tokenProvider",
    "closeRules",
    "resumeGapMs",
    "livenessTimeoutMs",
    "closeLingerMs",
    "maxMessageBytes",
    "ack",
    "seed",
    "WebSocket",
    "fetch",
    "pageHints",
    "resume",
];

/// Reads `new TetherClient(url, options)`'s arguments.
pub(crate) fn read(url: &JsValue, options: JsValue) -> Result<Options, JsValue> {
    let url = url.as_string().ok_or_else(|| {
        type_error("url must be a string (a ws://, wss://, http:// or https:// URL)")
    })?;
    let options = if options.is_undefined() || options.is_null() {
        js_sys::Object::new().into()
    } else {
        options
    };
    let o = Reader::new(options, "options".to_owned(), TOP)?;
    let mut b = Config::builder(url);
    let protocol = o.bool("protocol")?.unwrap_or(false);
    if protocol {
        b = b.protocol();
    }
    if let Some(list) = o.array("protocols")? {
        let mut protocols = Vec::new();
        for p in list.iter() {
            protocols.push(
                p.as_string()
                    .ok_or_else(|| type_error("options.protocols must be an array of strings"))?,
            );
        }
        b = b.protocols(protocols);
    }
    if let Some(t) = o.ms("connectTimeoutMs")? {
        b = b.connect_timeout(t);
    }
    if let Some(t) = o.ms("maxRetryHintMs")? {
        b = b.max_retry_hint(t);
    }
    b = fallback(&o, b)?;
    b = heartbeat(&o, b, protocol)?;
    b = backoff(&o, b)?;
    b = queue(&o, b)?;
    b = quality(&o, b)?;
    let token_provider = o.function("tokenProvider")?;
    b = auth(&o, b, token_provider.is_some())?;
    b = close_rules(&o, b)?;
    if let Some(d) = o.ms("resumeGapMs")? {
        b = b.resume_gap(d);
    }
    if let Some(d) = o.ms("livenessTimeoutMs")? {
        b = b.liveness_timeout(d);
    }
    if let Some(d) = o.ms("closeLingerMs")? {
        b = b.close_linger(d);
    }
    if let Some(n) = o.count("maxMessageBytes")? {
        b = b.max_message_bytes(n);
    }
    // Unless told to replay a seed, the driver draws each client's own from the platform.
    if let Some(seed) = o.get("seed") {
        b = b.seed(seed_of(&seed)?);
    }
    let websocket =
        match o.get("WebSocket") {
            None => JsValue::UNDEFINED,
            Some(v) if v.is_null() => JsValue::UNDEFINED,
            Some(v) if v.is_function() => v,
            Some(_) => return Err(type_error(
                "options.WebSocket must be a WebSocket constructor (for example the ws package's)",
            )),
        };
    let fetch = o
        .function("fetch")?
        .map_or(JsValue::UNDEFINED, JsValue::from);
    let page_hints = o.bool("pageHints")?.unwrap_or(true);
    let resume = match o.get("resume") {
        Some(value) => Some(crate::handoff::from_js(&value)?),
        None => None,
    };
    let mut config = b.build().map_err(|e| range_error(&config_message(&e)))?;
    if let Some(ack) = o.nested("ack", &["every", "delayMs"])? {
        if let Some(every) = ack.count_u32("every")? {
            config.ack_every = every;
        }
        if let Some(delay) = ack.ms("delayMs")? {
            config.ack_delay = delay;
        }
        config
            .validate()
            .map_err(|e| range_error(&config_message(&e)))?;
    }
    Ok(Options {
        config,
        websocket,
        fetch,
        token_provider,
        page_hints,
        resume,
    })
}

fn seed_of(value: &JsValue) -> Result<u64, JsValue> {
    const WRONG: &str =
        "options.seed must be a whole number from 0 to 2^53, or a bigint below 2^64";
    if let Some(n) = value.as_f64() {
        if n.fract() == 0.0 && (0.0..=9_007_199_254_740_992.0).contains(&n) {
            return Ok(n as u64);
        }
        return Err(range_error(WRONG));
    }
    if value.is_bigint() {
        return u64::try_from(value.clone()).map_err(|_| range_error(WRONG));
    }
    Err(type_error(WRONG))
}

fn fallback(o: &Reader, mut b: ConfigBuilder) -> Result<ConfigBuilder, JsValue> {
    let url = o.string("pollUrl")?;
    let knobs = o.nested(
        "fallback",
        &[
            "afterFailures",
            "minIntervalMs",
            "maxIntervalMs",
            "probeIntervalMs",
            "requestTimeoutMs",
        ],
    )?;
    let Some(url) = url else {
        if knobs.is_some() {
            return Err(type_error("options.fallback needs options.pollUrl"));
        }
        return Ok(b);
    };
    let mut f = FallbackConfig::new(url);
    if let Some(k) = knobs {
        if let Some(n) = k.count_u32("afterFailures")? {
            f.after_failures = n;
        }
        if let Some(d) = k.ms("minIntervalMs")? {
            f.min_interval = d;
        }
        if let Some(d) = k.ms("maxIntervalMs")? {
            f.max_interval = d;
        }
        if let Some(d) = k.ms("probeIntervalMs")? {
            f.probe_interval = d;
        }
        if let Some(d) = k.ms("requestTimeoutMs")? {
            f.request_timeout = d;
        }
    }
    b = b.fallback(f);
    Ok(b)
}

fn heartbeat(o: &Reader, b: ConfigBuilder, protocol: bool) -> Result<ConfigBuilder, JsValue> {
    match o.get("heartbeat") {
        None => Ok(b),
        Some(v) if v.is_null() || v.as_bool() == Some(false) => Ok(b.heartbeat(None)),
        Some(v) if v.as_bool() == Some(true) => Ok(b),
        Some(v) => {
            let h = Reader::new(
                v,
                "options.heartbeat".to_owned(),
                &["intervalMs", "timeoutMs", "maxMissed", "ping", "pong"],
            )?;
            let mut c = HeartbeatConfig::default();
            if let Some(d) = h.ms("intervalMs")? {
                c.interval = d;
            }
            if let Some(d) = h.ms("timeoutMs")? {
                c.timeout = d;
            }
            if let Some(n) = h.count_u32("maxMissed")? {
                c.max_missed = n;
            }
            let mut b = b.heartbeat(Some(c));
            match (h.payload("ping")?, h.payload("pong")?) {
                (None, None) => {}
                (Some(_), Some(_)) if protocol => {
                    return Err(type_error(
                        "options.heartbeat.ping and .pong are for plain mode: the Tether protocol has its own ping",
                    ))
                }
                (Some(ping), Some(pong)) => b = b.plain_heartbeat(ping, pong),
                _ => {
                    return Err(type_error(
                        "options.heartbeat.ping and options.heartbeat.pong go together",
                    ))
                }
            }
            Ok(b)
        }
    }
}

fn backoff(o: &Reader, b: ConfigBuilder) -> Result<ConfigBuilder, JsValue> {
    let Some(k) = o.nested(
        "backoff",
        &[
            "initialDelayMs",
            "factor",
            "maxDelayMs",
            "jitter",
            "maxAttempts",
        ],
    )?
    else {
        return Ok(b);
    };
    // One bound given alone bends the other's default (the core's rule).
    let mut c = BackoffConfig::with_delays(k.ms("initialDelayMs")?, k.ms("maxDelayMs")?);
    if let Some(f) = k.number("factor")? {
        c.factor = f;
    }
    if let Some(i) = k.choice(
        "jitter",
        &["full", "decorrelated", "none"],
        "must be one of 'full', 'decorrelated', 'none'",
    )? {
        c.jitter = [Jitter::Full, Jitter::Decorrelated, Jitter::None][i];
    }
    match k.get("maxAttempts") {
        None => {}
        Some(v) if v.is_null() || v.as_f64() == Some(f64::INFINITY) => c.max_attempts = None,
        Some(_) => c.max_attempts = k.count_u32("maxAttempts")?,
    }
    Ok(b.backoff(c))
}

fn queue(o: &Reader, b: ConfigBuilder) -> Result<ConfigBuilder, JsValue> {
    let Some(k) = o.nested(
        "queue",
        &["maxMessages", "maxBytes", "maxAgeMs", "overflow"],
    )?
    else {
        return Ok(b);
    };
    let mut c = QueueConfig::default();
    if let Some(n) = k.count("maxMessages")? {
        c.max_messages = n;
    }
    if let Some(n) = k.count("maxBytes")? {
        c.max_bytes = n;
    }
    match k.get("maxAgeMs") {
        Some(v) if v.is_null() => c.max_age = None,
        _ => c.max_age = k.ms("maxAgeMs")?,
    }
    if let Some(i) = k.choice(
        "overflow",
        &["reject-new", "drop-oldest"],
        "must be one of 'reject-new', 'drop-oldest'",
    )? {
        c.overflow = [OverflowPolicy::RejectNew, OverflowPolicy::DropOldest][i];
    }
    Ok(b.queue(c))
}

fn quality(o: &Reader, b: ConfigBuilder) -> Result<ConfigBuilder, JsValue> {
    let Some(k) = o.nested("quality", &["levels", "window", "maxAgeMs", "hysteresis"])? else {
        return Ok(b);
    };
    let mut c = QualityConfig::default();
    if let Some(levels) = k.array("levels")? {
        if levels.length() != 4 {
            return Err(range_error(
                "options.quality.levels must hold 4 levels (excellent, good, fair, poor)",
            ));
        }
        for (i, level) in levels.iter().enumerate() {
            let l = Reader::new(
                level,
                format!("options.quality.levels[{i}]"),
                &["rttMs", "loss"],
            )?;
            c.levels[i] = QualityBound {
                rtt: l.ms("rttMs")?.unwrap_or(c.levels[i].rtt),
                loss: l.number("loss")?.unwrap_or(c.levels[i].loss),
            };
        }
    }
    if let Some(n) = k.count("window")? {
        c.window = n;
    }
    if let Some(d) = k.ms("maxAgeMs")? {
        c.max_age = d;
    }
    if let Some(n) = k.count_u32("hysteresis")? {
        c.hysteresis = n;
    }
    Ok(b.quality(c))
}

fn auth(o: &Reader, b: ConfigBuilder, has_provider: bool) -> Result<ConfigBuilder, JsValue> {
    let knobs = o.nested("auth", &["refreshLeadMs", "fetchTimeoutMs", "queryParam"])?;
    if !has_provider {
        if knobs.is_some() {
            return Err(type_error("options.auth needs options.tokenProvider"));
        }
        return Ok(b);
    }
    // Browsers cannot set headers on a WebSocket: the token travels in the query.
    let mut c = AuthConfig {
        placement: TokenPlacement::Query("access_token".to_owned()),
        ..AuthConfig::default()
    };
    if let Some(k) = knobs {
        if let Some(d) = k.ms("refreshLeadMs")? {
            c.refresh_lead = d;
        }
        if let Some(d) = k.ms("fetchTimeoutMs")? {
            c.fetch_timeout = d;
        }
        match k.get("queryParam") {
            None => {}
            Some(v) if v.is_null() => c.placement = TokenPlacement::Header,
            Some(_) => {
                if let Some(name) = k.string("queryParam")? {
                    c.placement = TokenPlacement::Query(name);
                }
            }
        }
    }
    Ok(b.auth(c))
}

fn close_rules(o: &Reader, mut b: ConfigBuilder) -> Result<ConfigBuilder, JsValue> {
    let Some(rules) = o.array("closeRules")? else {
        return Ok(b);
    };
    let mut parsed = Vec::new();
    for (i, rule) in rules.iter().enumerate() {
        let r = Reader::new(
            rule,
            format!("options.closeRules[{i}]"),
            &["code", "first", "last", "action"],
        )?;
        let class = r
            .choice(
                "action",
                &["retry", "auth-rejected", "replaced", "fatal"],
                "must be one of 'retry', 'auth-rejected', 'replaced', 'fatal'",
            )?
            .map(|i| {
                [
                    CloseClass::Retry,
                    CloseClass::AuthRejected,
                    CloseClass::Replaced,
                    CloseClass::Fatal,
                ][i]
            })
            .ok_or_else(|| r.fail(Wrong::Type, "action", "is required"))?;
        let code = |key| {
            r.integer(key, 65535, "must be a whole number from 0 to 65535")
                .map(|n| n.map(|n| n as u16))
        };
        let rule = match (code("code")?, code("first")?, code("last")?) {
            (Some(c), None, None) => CloseRule::code(c, class),
            (None, Some(first), Some(last)) => CloseRule::range(first, last, class),
            _ => {
                return Err(wrong(
                    Wrong::Type,
                    &r.path,
                    "needs either code, or first and last",
                ))
            }
        };
        parsed.push(rule);
    }
    // The builder checks the rule added last first; the array's first rule wins.
    for rule in parsed.into_iter().rev() {
        b = b.close_rule(rule);
    }
    Ok(b)
}
