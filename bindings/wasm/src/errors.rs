//! The JavaScript errors the exports throw or reject with. Each `Error` carries a `kind`
//! (a stable, lowercase name) besides its message.

use js_sys::{Error, Reflect, TypeError};
use tether_core::{DropReason, SendError, TetherError};
use tether_web::DeliveryError;
use wasm_bindgen::JsValue;

/// A `TypeError`: an argument or option of the wrong type.
pub(crate) fn type_error(message: &str) -> JsValue {
    TypeError::new(message).into()
}

/// An `Error` with a `kind` property.
pub(crate) fn error(kind: &str, message: &str) -> JsValue {
    let e = Error::new(message);
    let _ = Reflect::set(&e, &"kind".into(), &kind.into());
    e.into()
}

/// What `send` throws when the core refuses a message: kind `queue-full`, `too-large`,
/// `closing` or `stopped`.
pub(crate) fn send_error(e: &SendError) -> JsValue {
    let kind = match e {
        SendError::QueueFull { .. } => "queue-full",
        SendError::TooLarge { .. } => "too-large",
        SendError::Closing => "closing",
        _ => "stopped",
    };
    error(kind, &e.to_string())
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
    let (kind, extra): (&str, Option<(&str, JsValue)>) = match e {
        DeliveryError::Rejected(refusal) => ("rejected", Some(("cause", send_error(refusal)))),
        DeliveryError::Unconfirmable => ("unconfirmable", None),
        DeliveryError::Dropped(reason) => {
            ("dropped", Some(("reason", drop_reason(*reason).into())))
        }
        DeliveryError::Stopped(_) => ("stopped", None),
        _ => ("client-gone", None),
    };
    let value = error(kind, &e.to_string());
    if let Some((key, v)) = extra {
        let _ = Reflect::set(&value, &key.into(), &v);
    }
    value
}

/// The value of an `error` event: kind `protocol`, `protocol-violation`,
/// `message-too-large`, `token-unavailable`, `attempt-failed` or `poll-body`
/// ([`TetherError::kind`]); an `attempt-failed` has a `failure`, the failure's kind
/// ([`tether_core::TransportFailure::kind`]).
pub(crate) fn tether_error(e: &TetherError) -> JsValue {
    let value = error(e.kind(), &e.to_string());
    if let TetherError::AttemptFailed(failure) = e {
        // What failed, as a stable name (`refused`, `auth-rejected`, `timeout`…).
        let _ = Reflect::set(&value, &"failure".into(), &failure.kind().as_str().into());
    }
    value
}
