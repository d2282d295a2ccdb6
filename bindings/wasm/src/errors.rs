//! The JavaScript errors the exports throw or reject with. Each `Error` carries a `kind`
//! (a stable, lowercase name) besides its message. The messages are written in
//! JavaScript (`errors.js`) from a template number and the error's numbers and strings:
//! the same text as the core's `Display` impls, without the text or `core::fmt` in the
//! WebAssembly.

use js_sys::{Reflect, TypeError};
use tether_core::protocol::{DecodeError, PROTOCOL_VERSION};
use tether_core::text::Decimal;
use tether_core::{Cause, DropReason, HandoffError, SendError, TerminalReason, TetherError};
use tether_web::dispatch::transport::MissingCapability;
use tether_web::{BuildError, DeliveryError};
use wasm_bindgen::prelude::*;

#[wasm_bindgen(module = "/src/errors.js")]
extern "C" {
    /// The text of template `t` (an index in `TEXTS` of errors.js) with its values.
    fn text(t: u32, a: f64, b: f64, s: &JsValue) -> JsValue;
    /// An `Error` of `kind` with that text; without `kind` (empty) a `TypeError`.
    fn fail(kind: &str, t: u32, a: f64, b: f64, s: &JsValue) -> JsValue;
}

use crate::texts::{T_BUILD, T_CAUSE, T_DECODE, T_DELIVERY, T_DROP, T_SEND, T_TERMINAL, T_TETHER};

fn s(text: &str) -> JsValue {
    JsValue::from_str(text)
}

/// A `TypeError`: an argument or option of the wrong type.
pub(crate) fn type_error(message: &str) -> JsValue {
    TypeError::new(message).into()
}

/// What `send` throws when the core refuses a message: kind `queue-full`, `too-large`,
/// `closing` or `stopped`.
pub(crate) fn send_error(e: &SendError) -> JsValue {
    let (kind, t, a, b, text) = send_parts(e);
    fail(kind, t, a, b, &text)
}

fn send_parts(e: &SendError) -> (&'static str, u32, f64, f64, JsValue) {
    match e {
        SendError::QueueFull { messages, bytes } => (
            "queue-full",
            T_SEND,
            *messages as f64,
            *bytes as f64,
            JsValue::UNDEFINED,
        ),
        SendError::TooLarge { size, max } => (
            "too-large",
            T_SEND + 1,
            *size as f64,
            *max as f64,
            JsValue::UNDEFINED,
        ),
        SendError::Closing => ("closing", T_SEND + 3, 0.0, 0.0, JsValue::UNDEFINED),
        SendError::Stopped(state) => ("stopped", T_SEND + 2, 0.0, 0.0, s(state.as_str())),
        _ => ("stopped", T_SEND + 2, 0.0, 0.0, s("stopped")),
    }
}

/// The stable name of a drop reason.
pub(crate) fn drop_reason(reason: DropReason) -> &'static str {
    match reason {
        DropReason::Overflow => "overflow",
        DropReason::Expired => "expired",
        DropReason::Unconfirmed => "unconfirmed",
        _ => "stopped",
    }
}

/// What `sendConfirmed` rejects with: kind `rejected` (with `cause`, the refusal),
/// `unconfirmable`, `dropped` (with `reason`), `stopped` or `client-gone`.
pub(crate) fn delivery_error(e: &DeliveryError) -> JsValue {
    let none = JsValue::UNDEFINED;
    let (kind, t, inner, extra): (&str, u32, JsValue, Option<(&str, JsValue)>) = match e {
        DeliveryError::Rejected(refusal) => {
            let cause = send_error(refusal);
            let message = Reflect::get(&cause, &s("message")).unwrap_or_default();
            ("rejected", T_DELIVERY, message, Some(("cause", cause)))
        }
        DeliveryError::Unconfirmable => ("unconfirmable", T_DELIVERY + 1, none, None),
        DeliveryError::Dropped(reason) => {
            let why = match reason {
                DropReason::Overflow => 0,
                DropReason::Expired => 1,
                DropReason::Unconfirmed => 3,
                _ => 2,
            };
            let why = text(T_DROP + why, 0.0, 0.0, &none);
            (
                "dropped",
                T_DELIVERY + 2,
                why,
                Some(("reason", drop_reason(*reason).into())),
            )
        }
        DeliveryError::Stopped(reason) => ("stopped", T_DELIVERY + 3, terminal_text(reason), None),
        _ => ("client-gone", T_DELIVERY + 4, none, None),
    };
    let value = fail(kind, t, 0.0, 0.0, &inner);
    if let Some((key, v)) = extra {
        let _ = Reflect::set(&value, &key.into(), &v);
    }
    value
}

/// `Cause`'s text: the close code or HTTP status, and the reason.
fn cause_text(c: &Cause) -> JsValue {
    text(
        T_CAUSE,
        c.code.map_or(-1.0, f64::from),
        c.status.map_or(-1.0, f64::from),
        &s(&c.reason),
    )
}

/// `TerminalReason`'s text: the `message` of `stopped`.
pub(crate) fn terminal_text(reason: &TerminalReason) -> JsValue {
    let (t, a, inner) = match reason {
        TerminalReason::UserClosed { code, reason } => (0, f64::from(*code), s(reason)),
        TerminalReason::AuthRejected(c) => (1, 0.0, cause_text(c)),
        TerminalReason::Replaced(c) => (2, 0.0, cause_text(c)),
        TerminalReason::Fatal(c) => (3, 0.0, cause_text(c)),
        TerminalReason::GaveUp { attempts, last } => (4, f64::from(*attempts), cause_text(last)),
        TerminalReason::DriverFailed(why) => (5, 0.0, s(why)),
        _ => (5, 0.0, s("")),
    };
    text(T_TERMINAL + t, a, 0.0, &inner)
}

fn decode_text(e: &DecodeError) -> JsValue {
    let none = JsValue::UNDEFINED;
    let (t, a, inner) = match e {
        DecodeError::Empty => (0, 0.0, none),
        DecodeError::UnknownTag(tag) => (1, f64::from(*tag), none),
        DecodeError::MissingField(name) => (2, 0.0, s(name)),
        DecodeError::BadNumber(name) => (3, 0.0, s(name)),
        DecodeError::Truncated => (4, 0.0, none),
        DecodeError::WrongFrameType => (5, 0.0, none),
        DecodeError::ZeroSeq => (6, 0.0, none),
        DecodeError::TrailingData => (7, 0.0, none),
        DecodeError::UnknownRecordKind(k) => (8, f64::from(*k), none),
        DecodeError::InvalidUtf8 => (9, 0.0, none),
        DecodeError::UnsupportedVersion(v) => {
            (10, PROTOCOL_VERSION as f64, s(Decimal::new(*v).as_str()))
        }
        _ => (11, 0.0, none),
    };
    text(T_DECODE + t, a, 0.0, &inner)
}

/// The value of an `error` event: kind `protocol`, `protocol-violation`,
/// `message-too-large`, `token-unavailable`, `attempt-failed` or `poll-body`
/// ([`TetherError::kind`]); an `attempt-failed` has a `failure`, the failure's kind
/// ([`tether_core::TransportFailure::kind`]).
pub(crate) fn tether_error(e: &TetherError) -> JsValue {
    let none = JsValue::UNDEFINED;
    let (t, a, inner) = match e {
        TetherError::Protocol(d) => (0, 0.0, decode_text(d)),
        TetherError::ProtocolViolation(what) => (1, 0.0, s(what.as_str())),
        TetherError::MessageTooLarge { size } => (2, *size as f64, none),
        TetherError::TokenUnavailable(why) => (3, 0.0, s(why)),
        TetherError::AttemptFailed(f) => (4, 0.0, s(&f.text())),
        TetherError::PollBody(d) => (5, 0.0, decode_text(d)),
        _ => (3, 0.0, none),
    };
    let value = fail(e.kind(), T_TETHER + t, a, 0.0, &inner);
    if let TetherError::AttemptFailed(failure) = e {
        // What failed, as a stable name (`refused`, `auth-rejected`, `timeout`…).
        let _ = Reflect::set(&value, &"failure".into(), &failure.kind().as_str().into());
    }
    value
}

/// What `new TetherClient` throws when the driver refuses to start: a `TypeError` (a
/// configuration error, already checked by the core when the options were read, is
/// thrown as that check throws it: js/options.js's `RangeError`).
pub(crate) fn build_error(e: &BuildError) -> JsValue {
    let t = match e {
        BuildError::Config(e) | BuildError::Handoff(HandoffError::Config(e)) => {
            return crate::options::violation(e);
        }
        BuildError::NoTokenProvider => 0,
        BuildError::Unsupported(MissingCapability::Polling) => 1,
        BuildError::Unsupported(_) => 2,
        BuildError::Handoff(HandoffError::NotProtocol) => 3,
        BuildError::Handoff(HandoffError::NoSession) => 4,
        BuildError::Handoff(_) => 5,
        _ => 0,
    };
    fail("", T_BUILD + t, 0.0, 0.0, &JsValue::UNDEFINED)
}
