//! A protocol session as JavaScript passes it between tabs (`client.handoff()`, the
//! `resume` option): a plain object a BroadcastChannel can clone. The numbers are decimal
//! strings (they are 64-bit), the secret its 32 hexadecimal digits, the messages strings
//! or Uint8Arrays.

use js_sys::{Array, Reflect};
use tether_core::protocol::SessionSecret;
use tether_core::SessionHandoff;
use wasm_bindgen::{JsCast, JsValue};

use crate::convert::{field, payload, payload_of};
use crate::errors::type_error;

const WRONG: &str = "options.resume must be a session from client.handoff()";

fn set(object: &JsValue, key: &str, value: &JsValue) {
    let _ = Reflect::set(object, &JsValue::from_str(key), value);
}

/// `{ clientId, session, secret, lastTransport, recvSeq, sendSeq, unacknowledged:
/// [[seq, data]…], unsent: [data…] }`.
pub(crate) fn to_js(h: &SessionHandoff) -> JsValue {
    let object: JsValue = js_sys::Object::new().into();
    let number = |n: u64| JsValue::from_str(tether_core::text::Decimal::new(n).as_str());
    set(&object, "clientId", &number(h.client_id));
    set(&object, "session", &number(h.session));
    set(&object, "secret", &JsValue::from_str(&h.secret.to_hex()));
    set(&object, "lastTransport", &number(h.last_transport));
    set(&object, "recvSeq", &number(h.recv_seq));
    set(&object, "sendSeq", &number(h.send_seq));
    let unacknowledged = Array::new();
    for (seq, data) in &h.unacknowledged {
        unacknowledged.push(&Array::of2(&number(*seq), &payload(data)));
    }
    set(&object, "unacknowledged", &unacknowledged);
    let unsent = Array::new();
    for data in &h.unsent {
        unsent.push(&payload(data));
    }
    set(&object, "unsent", &unsent);
    object
}

fn number(value: &JsValue) -> Result<u64, JsValue> {
    value
        .as_string()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| type_error(WRONG))
}

/// The object [`to_js`] made (as cloned by a BroadcastChannel); anything else is a
/// `TypeError`.
pub(crate) fn from_js(value: &JsValue) -> Result<SessionHandoff, JsValue> {
    // Not an object: no secret (`field` reads undefined), so a `TypeError` below.
    let secret = field(value, "secret")
        .as_string()
        .and_then(|s| SessionSecret::from_hex(s.as_bytes()))
        .ok_or_else(|| type_error(WRONG))?;
    let list = |key: &str| -> Result<Array, JsValue> {
        let v = field(value, key);
        if Array::is_array(&v) {
            Ok(v.unchecked_into())
        } else {
            Err(type_error(WRONG))
        }
    };
    let mut unacknowledged = Vec::new();
    for pair in list("unacknowledged")?.iter() {
        if !Array::is_array(&pair) {
            return Err(type_error(WRONG));
        }
        let pair: Array = pair.unchecked_into();
        let data = payload_of(&pair.get(1)).ok_or_else(|| type_error(WRONG))?;
        unacknowledged.push((number(&pair.get(0))?, data));
    }
    let mut unsent = Vec::new();
    for data in list("unsent")?.iter() {
        unsent.push(payload_of(&data).ok_or_else(|| type_error(WRONG))?);
    }
    Ok(SessionHandoff {
        client_id: number(&field(value, "clientId"))?,
        session: number(&field(value, "session"))?,
        secret,
        last_transport: number(&field(value, "lastTransport"))?,
        recv_seq: number(&field(value, "recvSeq"))?,
        send_seq: number(&field(value, "sendSeq"))?,
        unacknowledged,
        unsent,
    })
}
