//! `new TetherClient(url, options)`: the options object, read and checked into a core
//! [`Config`]. A value of the wrong type is a `TypeError`, a value out of range a
//! `RangeError`, and either names the option as the user wrote it.

use js_sys::{Array, Function, Reflect};
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
}

/// One level of the options object, and its path for messages.
struct Reader {
    object: JsValue,
    path: String,
}

impl Reader {
    fn new(object: JsValue, path: String, allowed: &[&str]) -> Result<Reader, JsValue> {
        if !object.is_object() || object.is_function() || Array::is_array(&object) {
            return Err(type_error(&format!("{path} must be an object")));
        }
        for key in js_sys::Object::keys(object.unchecked_ref::<js_sys::Object>()).iter() {
            let key = key.as_string().unwrap_or_default();
            if !allowed.contains(&key.as_str()) {
                return Err(type_error(&format!(
                    "{path}.{key} is not an option; known: {}",
                    allowed.join(", ")
                )));
            }
        }
        Ok(Reader { object, path })
    }

    fn name(&self, key: &str) -> String {
        format!("{}.{key}", self.path)
    }

    /// The value, or `None` when it is `undefined`.
    fn get(&self, key: &str) -> Option<JsValue> {
        let value = Reflect::get(&self.object, &JsValue::from_str(key)).ok()?;
        (!value.is_undefined()).then_some(value)
    }

    fn nested(&self, key: &str, allowed: &[&str]) -> Result<Option<Reader>, JsValue> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => Reader::new(v, self.name(key), allowed).map(Some),
        }
    }

    fn bool(&self, key: &str) -> Result<Option<bool>, JsValue> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_bool()
                .map(Some)
                .ok_or_else(|| type_error(&format!("{} must be a boolean", self.name(key)))),
        }
    }

    fn number(&self, key: &str) -> Result<Option<f64>, JsValue> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => match v.as_f64() {
                Some(n) if n.is_nan() => {
                    Err(range_error(&format!("{} must not be NaN", self.name(key))))
                }
                Some(n) => Ok(Some(n)),
                None => Err(type_error(&format!("{} must be a number", self.name(key)))),
            },
        }
    }

    /// A whole number from `min` to `max`.
    fn integer(&self, key: &str, min: f64, max: f64) -> Result<Option<f64>, JsValue> {
        match self.number(key)? {
            Some(n) if n.fract() != 0.0 || n < min || n > max => Err(range_error(&format!(
                "{} must be a whole number from {min} to {max}",
                self.name(key)
            ))),
            other => Ok(other),
        }
    }

    fn count(&self, key: &str) -> Result<Option<usize>, JsValue> {
        Ok(self.integer(key, 0.0, 4_294_967_295.0)?.map(|n| n as usize))
    }

    fn count_u32(&self, key: &str) -> Result<Option<u32>, JsValue> {
        Ok(self.integer(key, 0.0, 4_294_967_295.0)?.map(|n| n as u32))
    }

    /// Milliseconds: a finite number ≥ 0.
    fn ms(&self, key: &str) -> Result<Option<Duration>, JsValue> {
        match self.number(key)? {
            Some(n) if !(0.0..=1e15).contains(&n) => Err(range_error(&format!(
                "{} must be a number of milliseconds from 0 to 1e15",
                self.name(key)
            ))),
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
                .ok_or_else(|| type_error(&format!("{} must be a string", self.name(key)))),
        }
    }

    fn one_of<T: Copy>(&self, key: &str, choices: &[(&str, T)]) -> Result<Option<T>, JsValue> {
        let Some(value) = self.get(key) else {
            return Ok(None);
        };
        let names: Vec<String> = choices.iter().map(|(n, _)| format!("'{n}'")).collect();
        let wrong = || format!("{} must be one of {}", self.name(key), names.join(", "));
        let text = value.as_string().ok_or_else(|| type_error(&wrong()))?;
        choices
            .iter()
            .find(|(n, _)| *n == text)
            .map(|(_, v)| Some(*v))
            .ok_or_else(|| range_error(&wrong()))
    }

    fn function(&self, key: &str) -> Result<Option<Function>, JsValue> {
        match self.get(key) {
            None => Ok(None),
            Some(v) if v.is_null() => Ok(None),
            Some(v) => v
                .dyn_into::<Function>()
                .map(Some)
                .map_err(|_| type_error(&format!("{} must be a function", self.name(key)))),
        }
    }

    fn array(&self, key: &str) -> Result<Option<Array>, JsValue> {
        match self.get(key) {
            None => Ok(None),
            Some(v) if Array::is_array(&v) => Ok(Some(v.unchecked_into())),
            Some(_) => Err(type_error(&format!("{} must be an array", self.name(key)))),
        }
    }

    /// A payload: a string or a Uint8Array.
    fn payload(&self, key: &str) -> Result<Option<Payload>, JsValue> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => match crate::convert::payload_of(&v) {
                Some(p) => Ok(Some(p)),
                None => Err(type_error(&format!(
                    "{} must be a string or a Uint8Array",
                    self.name(key)
                ))),
            },
        }
    }
}

const TOP: &[&str] = &[
    "protocol",
    "protocols",
    "connectTimeoutMs",
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
];

/// Reads `new TetherClient(url, options)`'s arguments.
pub(crate) fn read(url: &JsValue, options: JsValue) -> Result<Options, JsValue> {
    let url = url
        .as_string()
        .ok_or_else(|| type_error("url must be a string (a ws:// or wss:// URL)"))?;
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
    // The core's default seed is one constant: every client would present the same
    // client id and wait the same "random" delays. Unless told, each gets its own.
    let seed = match o.get("seed") {
        Some(seed) => seed_of(&seed)?,
        None => random_seed(),
    };
    b = b.seed(seed);
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
    })
}

fn random_seed() -> u64 {
    let half = || (js_sys::Math::random() * 4_294_967_296.0) as u64;
    (half() << 32) | half()
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
    let mut c = BackoffConfig::default();
    if let Some(d) = k.ms("initialDelayMs")? {
        c.initial_delay = d;
    }
    if let Some(f) = k.number("factor")? {
        c.factor = f;
    }
    if let Some(d) = k.ms("maxDelayMs")? {
        c.max_delay = d;
    }
    if let Some(j) = k.one_of(
        "jitter",
        &[
            ("full", Jitter::Full),
            ("decorrelated", Jitter::Decorrelated),
            ("none", Jitter::None),
        ],
    )? {
        c.jitter = j;
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
    if let Some(p) = k.one_of(
        "overflow",
        &[
            ("reject-new", OverflowPolicy::RejectNew),
            ("drop-oldest", OverflowPolicy::DropOldest),
        ],
    )? {
        c.overflow = p;
    }
    Ok(b.queue(c))
}

fn quality(o: &Reader, b: ConfigBuilder) -> Result<ConfigBuilder, JsValue> {
    let Some(k) = o.nested("quality", &["levels", "window", "hysteresis"])? else {
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
            .one_of(
                "action",
                &[
                    ("retry", CloseClass::Retry),
                    ("auth-rejected", CloseClass::AuthRejected),
                    ("replaced", CloseClass::Replaced),
                    ("fatal", CloseClass::Fatal),
                ],
            )?
            .ok_or_else(|| type_error(&format!("options.closeRules[{i}].action is required")))?;
        let code = |key| r.integer(key, 0.0, 65535.0).map(|n| n.map(|n| n as u16));
        let rule = match (code("code")?, code("first")?, code("last")?) {
            (Some(c), None, None) => CloseRule::code(c, class),
            (None, Some(first), Some(last)) => CloseRule::range(first, last, class),
            _ => {
                return Err(type_error(&format!(
                    "options.closeRules[{i}] needs either code, or first and last"
                )))
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
