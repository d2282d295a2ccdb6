//! Rust values as JavaScript ones: payloads, events, metrics. Plain objects, camelCase
//! keys, durations as milliseconds, `null` for "not known".

use js_sys::{Object, Reflect, Uint8Array};
use tether_core::{Cause, Duration, Event, Metrics, Payload, TerminalReason};
use wasm_bindgen::{JsCast, JsValue};

use crate::errors::{drop_reason, terminal_text, tether_error};

/// A plain object under construction.
pub(crate) struct Obj(Object);

impl Obj {
    pub(crate) fn new() -> Obj {
        Obj(Object::new())
    }

    pub(crate) fn set(self, key: &str, value: impl Into<JsValue>) -> Obj {
        self.put(key, value.into())
    }

    /// `set` once compiled: only the conversion is per value type.
    fn put(self, key: &str, value: JsValue) -> Obj {
        let _ = Reflect::set(&self.0, &JsValue::from_str(key), &value);
        self
    }

    pub(crate) fn js(self) -> JsValue {
        self.0.into()
    }
}

pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn opt_ms(d: Option<Duration>) -> JsValue {
    d.map_or(JsValue::NULL, |d| ms(d).into())
}

fn opt<T: Into<JsValue>>(v: Option<T>) -> JsValue {
    v.map_or(JsValue::NULL, Into::into)
}

/// A string (text) or a Uint8Array (binary): what the wrapper (js/index.js) makes of
/// what `send` is given, and what a handoff holds.
pub(crate) fn payload_of(value: &JsValue) -> Option<Payload> {
    if let Some(text) = value.as_string() {
        return Some(Payload::from(text));
    }
    value
        .dyn_ref::<Uint8Array>()
        .map(|bytes| Payload::from(bytes.to_vec()))
}

/// A message as JavaScript sees it: a string, or a Uint8Array of its own.
pub(crate) fn payload(p: &Payload) -> JsValue {
    match p {
        Payload::Text(text) => JsValue::from_str(text),
        Payload::Binary(bytes) => Uint8Array::from(&bytes[..]).into(),
    }
}

/// `{ kind, code, status, reason }`; `kind` is [`tether_core::CauseKind::as_str`].
fn cause(c: &Cause) -> Obj {
    Obj::new()
        .set("kind", c.kind.as_str())
        .set("code", opt(c.code))
        .set("status", opt(c.status))
        .set("reason", c.reason.as_str())
}

/// `{ reason, message, kind, code, status, attempts }`; `reason` one of `user-closed`,
/// `auth-rejected`, `replaced`, `fatal`, `gave-up`, `driver-failed`
/// ([`TerminalReason::kind`]); `kind` that of the cause, when there is one.
pub(crate) fn terminal(reason: &TerminalReason) -> JsValue {
    let obj = match reason {
        TerminalReason::UserClosed { code, reason } => Obj::new()
            .set("code", *code)
            .set("status", JsValue::NULL)
            .set("closeReason", reason.as_str()),
        TerminalReason::AuthRejected(c)
        | TerminalReason::Replaced(c)
        | TerminalReason::Fatal(c) => cause(c),
        TerminalReason::GaveUp { attempts, last } => cause(last).set("attempts", *attempts),
        _ => Obj::new()
            .set("code", JsValue::NULL)
            .set("status", JsValue::NULL),
    };
    // `reason` is the stop's kind; the cause's own kind, if any, stays `kind`.
    obj.set("reason", reason.kind())
        .set("message", terminal_text(reason))
        .js()
}

/// A property of an object (`undefined` when missing or not an object).
pub(crate) fn field(object: &JsValue, name: &str) -> JsValue {
    Reflect::get(object, &JsValue::from_str(name)).unwrap_or(JsValue::UNDEFINED)
}

/// The event's index in `EVENTS` of `emitter.js` (its name for `on()`), or `None` for
/// events not exported. A number crosses into JavaScript as it is; a name would be
/// decoded from UTF-8 twice per event (`has`, then `emit`).
pub(crate) fn event_index(e: &Event) -> Option<u32> {
    Some(match e {
        // The order of EVENTS in emitter.js.
        Event::StateChanged { .. } => 0,
        Event::Message(_) => 1,
        Event::QualityChanged { .. } => 2,
        Event::AttemptStarted { .. } => 3,
        Event::ReconnectScheduled { .. } => 4,
        Event::FallbackChanged { .. } => 5,
        Event::Error(_) => 6,
        Event::Delivered { .. } => 7,
        Event::Dropped { .. } => 8,
        Event::Stopped(_) => 9,
        Event::Disconnected { .. } => 10,
        Event::SessionReset { .. } => 11,
        Event::TokenRefreshed => 12,
        _ => return None,
    })
}

/// The event's value for its handlers (see `TetherEventMap`).
pub(crate) fn event_value(e: &Event) -> JsValue {
    match e {
        Event::StateChanged { from, to } => Obj::new()
            .set("from", from.as_str())
            .set("to", to.as_str())
            .js(),
        Event::Message(p) => payload(p),
        Event::QualityChanged {
            quality,
            reliability,
        } => Obj::new()
            .set("quality", quality.as_str())
            .set("reliability", *reliability)
            .js(),
        Event::ReconnectScheduled {
            attempt,
            delay,
            hinted,
        } => Obj::new()
            .set("attempt", *attempt)
            .set("delayMs", ms(*delay))
            .set("hinted", *hinted)
            .js(),
        Event::AttemptStarted { attempt, kind } => Obj::new()
            .set("attempt", *attempt)
            .set("transport", kind.as_str())
            .js(),
        Event::FallbackChanged { active } => Obj::new().set("active", *active).js(),
        Event::Error(err) => tether_error(err),
        Event::Delivered { id } => Obj::new().set("id", id.0 as f64).js(),
        Event::Dropped { id, reason } => Obj::new()
            .set("id", id.0 as f64)
            .set("reason", drop_reason(*reason))
            .js(),
        Event::Stopped(reason) => terminal(reason),
        Event::Disconnected {
            cause: c,
            connected_for,
        } => cause(c).set("connectedForMs", ms(*connected_for)).js(),
        Event::SessionReset { resent } => Obj::new().set("resent", *resent as f64).js(),
        Event::TokenRefreshed => Obj::new().js(),
        _ => JsValue::UNDEFINED,
    }
}

/// `metrics()`: every figure, camelCase, milliseconds as numbers, `null` when unknown.
pub(crate) fn metrics(m: &Metrics) -> JsValue {
    Obj::new()
        .set("state", m.state.as_str())
        .set("attempt", m.attempt)
        .set("reconnects", m.reconnects)
        .set("uptimeMs", opt_ms(m.uptime))
        .set("totalUptimeMs", ms(m.total_uptime))
        .set("lastCloseCode", opt(m.last_close_code))
        .set("lastCloseReason", opt(m.last_close_reason.clone()))
        .set("rttMs", opt_ms(m.rtt))
        .set("rttMeanMs", opt_ms(m.rtt_mean))
        .set("rttP50Ms", opt_ms(m.rtt_p50))
        .set("rttP99Ms", opt_ms(m.rtt_p99))
        .set("jitterMs", opt_ms(m.jitter))
        .set("loss", m.loss)
        .set("quality", opt(m.quality.map(|q| q.as_str())))
        .set("reliability", m.reliability)
        .set("messagesIn", m.messages_in as f64)
        .set("messagesOut", m.messages_out as f64)
        .set("bytesIn", m.bytes_in as f64)
        .set("bytesOut", m.bytes_out as f64)
        .set("queueDepth", m.queue_depth as f64)
        .set("queueBytes", m.queue_bytes as f64)
        .set("unreadBytesPeak", m.unread_bytes_peak as f64)
        .set("readingPaused", m.reading_paused)
        .set("fallbackActive", m.fallback_active)
        .set(
            "terminalReason",
            m.terminal_reason.as_ref().map_or(JsValue::NULL, terminal),
        )
        .js()
}

/// `health()`: alerts (worst first) and recommendations.
pub(crate) fn health(a: &tether_core::advice::Assessment) -> JsValue {
    let alerts = js_sys::Array::new();
    for alert in &a.alerts {
        alerts.push(
            &Obj::new()
                .set("severity", alert.severity.as_str())
                .set("kind", alert.kind.as_str())
                .set("value", alert_value(&alert.kind, false))
                .set("threshold", alert_value(&alert.kind, true))
                .js(),
        );
    }
    let recommendations = js_sys::Array::new();
    for r in &a.recommendations {
        recommendations.push(&Obj::new().set("kind", r.as_str()).js());
    }
    Obj::new()
        .set("alerts", alerts)
        .set("recommendations", recommendations)
        .js()
}

/// The measured value of an alert (or the threshold it passed): milliseconds of
/// latency, a loss fraction, failed attempts (no threshold).
fn alert_value(kind: &tether_core::advice::AlertKind, threshold: bool) -> JsValue {
    use tether_core::advice::AlertKind;
    match (kind, threshold) {
        (AlertKind::Latency { mean, .. }, false) => ms(*mean).into(),
        (AlertKind::Latency { threshold, .. }, true) => ms(*threshold).into(),
        (AlertKind::Loss { loss, .. }, false) => (*loss).into(),
        (AlertKind::Loss { threshold, .. }, true) => (*threshold).into(),
        (AlertKind::Unreachable { attempts }, false) => (*attempts).into(),
        _ => JsValue::NULL,
    }
}
