//! Bindings to `shim.js` (the handlers of sockets, requests and page events) and to the
//! JavaScript timers, and what their answers mean.

use js_sys::{Array, Promise, Reflect, Uint8Array};
use tether_core::{Duration, TransportFailure};
use wasm_bindgen::prelude::*;

#[wasm_bindgen(module = "/src/shim.js")]
extern "C" {
    /// One WebSocket and its handlers.
    pub(crate) type Sock;
    #[wasm_bindgen(constructor)]
    pub(crate) fn new(ctor: &JsValue, url: &str, protocols: Array, headers: Array) -> Sock;
    /// Resolves with null once open, or with a failure.
    #[wasm_bindgen(method)]
    pub(crate) fn opened(this: &Sock) -> Promise;
    /// Has `notify` called with `key` (from a microtask) when events come after a `take`
    /// found none.
    #[wasm_bindgen(method)]
    pub(crate) fn listen(this: &Sock, notify: &js_sys::Function, key: u32);
    /// The frames and the end seen since the last call; `None` when there are none yet.
    #[wasm_bindgen(method)]
    pub(crate) fn take(this: &Sock) -> Option<Array>;
    /// False when the socket is not open.
    #[wasm_bindgen(method)]
    pub(crate) fn send(this: &Sock, data: &JsValue) -> bool;
    /// Writes a ping frame; false when it could not (not open, or not the `ws` package's).
    #[wasm_bindgen(method)]
    pub(crate) fn ping(this: &Sock) -> bool;
    #[wasm_bindgen(method)]
    pub(crate) fn close(this: &Sock, code: u16, reason: &str);
    /// Whether sockets made with this constructor (or the global one) send ping frames
    /// and report pongs.
    #[wasm_bindgen(js_name = canPing)]
    pub(crate) fn can_ping(ctor: &JsValue) -> bool;
    /// Ends the socket, and `notify` is never called again.
    #[wasm_bindgen(method)]
    pub(crate) fn release(this: &Sock);
    /// Ends the socket now, without waiting for a closing handshake; its end is the last
    /// event `take` returns.
    #[wasm_bindgen(method)]
    pub(crate) fn end(this: &Sock);
    /// The size of a frame `take` returned (a string's UTF-8 length, counted without
    /// encoding it) when it is over `max` bytes, else 0 (and 0 for what is not a frame).
    #[wasm_bindgen(js_name = frameOver)]
    pub(crate) fn frame_over(item: &JsValue, max: f64) -> f64;

    /// One HTTP polling request.
    pub(crate) type Req;
    #[wasm_bindgen(constructor)]
    pub(crate) fn new(
        fetch: &JsValue,
        url: &str,
        headers: Array,
        body: Uint8Array,
        max_bytes: f64,
    ) -> Req;
    /// Resolves with the body of a 2xx answer (a Uint8Array), or with a failure.
    #[wasm_bindgen(method)]
    pub(crate) fn done(this: &Req) -> Promise;
    #[wasm_bindgen(method)]
    pub(crate) fn abort(this: &Req);

    /// The page's online, visibility, pagehide/pageshow and freeze/resume events.
    #[derive(Clone)]
    pub(crate) type Hints;
    #[wasm_bindgen(constructor)]
    pub(crate) fn new() -> Hints;
    /// False outside a page: no events will come.
    #[wasm_bindgen(method, getter)]
    pub(crate) fn active(this: &Hints) -> bool;
    /// Resolves with the hints seen since the last call, or null once stopped.
    #[wasm_bindgen(method)]
    pub(crate) fn next(this: &Hints) -> Promise;
    #[wasm_bindgen(method)]
    pub(crate) fn stop(this: &Hints);

    /// Calls `notify(key)` in `ms` milliseconds, in place of the key's earlier arm: one
    /// platform timer for every client's.
    pub(crate) fn arm(notify: &js_sys::Function, key: u32, ms: f64);
    /// `notify(key)` will not be called (until the next `arm`).
    pub(crate) fn disarm(key: u32);

    /// Fills `bytes` from `crypto.getRandomValues`.
    #[wasm_bindgen(js_name = fillRandom)]
    fn fill_random(bytes: &mut [u8]);
}

/// The platform's randomness for one client: its id and its jitter.
pub(crate) fn entropy() -> tether_core::Entropy {
    let mut bytes = [0u8; 16];
    fill_random(&mut bytes);
    tether_core::Entropy::from_bytes(bytes)
}

#[wasm_bindgen]
extern "C" {}

/// A property of a plain object (`undefined` when missing or not an object).
pub(crate) fn field(object: &JsValue, name: &str) -> JsValue {
    Reflect::get(object, &JsValue::from_str(name)).unwrap_or(JsValue::UNDEFINED)
}

/// A failure object from the shim (`{ kind, message?, status?, retryAfterMs? }`).
pub(crate) fn failure(value: &JsValue) -> TransportFailure {
    let message = || {
        field(value, "message")
            .as_string()
            .unwrap_or_else(|| "network error".to_owned())
    };
    match field(value, "kind").as_string().as_deref() {
        Some("refused") => TransportFailure::Refused,
        Some("blocked") => TransportFailure::Blocked,
        Some("tls") => TransportFailure::Tls(message()),
        Some("http") => TransportFailure::Http {
            status: field(value, "status")
                .as_f64()
                .map_or(0, |s| s.clamp(0.0, 999.0) as u16),
            retry_after: field(value, "retryAfterMs")
                .as_f64()
                .filter(|ms| ms.is_finite())
                .map(|ms| Duration::from_millis(ms.max(0.0) as u64)),
        },
        Some("too-large") => TransportFailure::MessageTooLarge {
            size: field(value, "size")
                .as_f64()
                .map_or(usize::MAX, |n| n.max(0.0) as usize),
        },
        _ => TransportFailure::Network(message()),
    }
}
