//! The exported class and functions.

use std::future::Future;
use std::pin::Pin;

use js_sys::{Array, Function, Promise};
use tether_core::{Duration, Instant, Payload, Token};
use tether_web::{Client, Subscription, WebTransport};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::{future_to_promise, JsFuture};

use crate::convert;
use crate::errors::{build_error, delivery_error, send_error, type_error};
use crate::options;

#[wasm_bindgen(module = "/src/emitter.js")]
extern "C" {
    #[derive(Clone)]
    type Emitter;
    #[wasm_bindgen(constructor)]
    fn new() -> Emitter;
    /// `event`: an index in `EVENTS` (see `convert::event_index`).
    #[wasm_bindgen(method)]
    fn has(this: &Emitter, event: u32) -> bool;
    #[wasm_bindgen(method)]
    fn emit(this: &Emitter, event: u32, value: &JsValue);
}

#[cfg(debug_assertions)]
#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_namespace = console, js_name = error)]
    fn console_error(message: &str);
}

/// Dev builds only: a panic (always a bug: no input may cause one) is printed to the
/// console before its `RuntimeError: unreachable`. Release builds leave it out for size.
#[cfg(debug_assertions)]
#[wasm_bindgen(start)]
fn start() {
    std::panic::set_hook(Box::new(|info| console_error(&info.to_string())));
}

#[wasm_bindgen(typescript_custom_section)]
const TYPES: &'static str = include_str!("types.d.ts");

/// A reconnecting WebSocket client.
///
/// It connects at once and keeps connecting: exponential backoff with jitter, heartbeats
/// that catch dead sockets and measure latency, a bounded queue for messages sent while
/// disconnected (flushed in order), and with `protocol: true` acknowledgements, resend
/// and resume (no loss, no duplicates), an HTTP polling fallback and token refresh.
///
/// ```js
/// const client = new TetherClient('wss://example.com/ws', { protocol: true });
/// const off = client.on('message', (data) => console.log(data));
/// client.send({ hello: 'world' });   // JSON text; queued until connected
/// await client.sendConfirmed('important'); // resolves on the server's ack
/// await client.sendWait('paced');          // waits for room instead of queue-full
/// await client.flush();                    // everything sent so far is acknowledged
/// await client.close();                    // delivers what is queued first (closeNow: at once)
/// ```
///
/// Call `free()` on a client you no longer need (after `close()`): listeners that refer
/// to the client keep it from being garbage-collected.
///
/// Should the WebAssembly instance die (a trap: a bug), every client stops in `error`
/// with reason `driver-failed`, its pending promises reject, and every later call throws
/// or rejects with an `Error` of kind `driver-failed`.
#[wasm_bindgen]
pub struct TetherClient {
    client: Client,
    emitter: Emitter,
    _listener: Subscription,
}

#[wasm_bindgen]
impl TetherClient {
    /// Makes a client for `url` and starts connecting: `ws://` or `wss://`, or `http://`
    /// or `https://` (taken as `ws://` or `wss://`), or relative to the page in a browser.
    ///
    /// Throws a `TypeError` when an option has the wrong type (or is unknown), and a
    /// `RangeError` when its value is unacceptable; the message names the option. Throws
    /// an `Error` of kind `no-websocket` when there is neither a global `WebSocket` nor
    /// the `WebSocket` option.
    // The wrapper (js/index.js) reads the options and passes them as `packOptions`
    // (js/options.js) packs them; the declared types are the user's.
    #[wasm_bindgen(constructor)]
    pub fn new(
        #[wasm_bindgen(unchecked_param_type = "string")] url: JsValue,
        #[wasm_bindgen(unchecked_optional_param_type = "TetherOptions")] options: JsValue,
    ) -> Result<TetherClient, JsValue> {
        let o = options::read(&url, &options)?;
        let transport = WebTransport::new()
            .websocket_constructor(o.websocket)
            .fetch(o.fetch)
            .max_message_bytes(o.config.max_message_bytes);
        let mut builder = Client::builder(o.config)
            .transport(transport)
            .page_hints(o.page_hints);
        if let Some(session) = o.resume {
            builder = builder.resume(session);
        }
        if let Some(provider) = o.token_provider {
            builder = builder.token_provider(move || token_from(provider.clone()));
        }
        let client = builder.spawn().map_err(|e| build_error(&e))?;
        let emitter = Emitter::new();
        let sink = emitter.clone();
        let listener = client.on_event(move |event| {
            let Some(index) = convert::event_index(event) else {
                return;
            };
            // Nothing is converted for events nobody listens to.
            if sink.has(index) {
                sink.emit(index, &convert::event_value(event));
            }
        });
        Ok(TetherClient {
            client,
            emitter,
            _listener: listener,
        })
    }

    /// Sends a message and returns its id. A string is sent as text, a `Uint8Array`,
    /// `ArrayBuffer` or other view as binary, anything else as its `JSON.stringify` text.
    /// Written at once when connected, queued otherwise (flushed in order on connect).
    ///
    /// Throws a `TypeError` for data that cannot be sent, and an `Error` whose `kind` is
    /// `queue-full`, `too-large` or `stopped` when the message is refused.
    #[wasm_bindgen(unchecked_return_type = "number")]
    pub fn send(
        &self,
        #[wasm_bindgen(
            unchecked_param_type = "string | Uint8Array | ArrayBuffer | ArrayBufferView | object | number | boolean"
        )]
        data: JsValue,
    ) -> Result<f64, JsValue> {
        let payload = payload_from(&data)?;
        self.client
            .send(payload)
            .map(|id| id.0 as f64)
            .map_err(|e| send_error(&e))
    }

    /// Sends a message and resolves with its id once the server acknowledges it
    /// (`protocol: true`). Rejects with an `Error` whose `kind` is `rejected` (refused
    /// at once), `unconfirmable` (plain mode), `dropped` (with a `reason`: overflow,
    /// expired, stopped, unconfirmed) or `stopped` (the connection stopped with an error).
    /// Throws a `TypeError` for data that cannot be sent.
    #[wasm_bindgen(js_name = sendConfirmed, unchecked_return_type = "Promise<number>")]
    pub fn send_confirmed(
        &self,
        #[wasm_bindgen(
            unchecked_param_type = "string | Uint8Array | ArrayBuffer | ArrayBufferView | object | number | boolean"
        )]
        data: JsValue,
    ) -> Result<Promise, JsValue> {
        let payload = payload_from(&data)?;
        let confirmed = self.client.send_confirmed(payload);
        Ok(promise(async move {
            confirmed
                .await
                .map(|id| JsValue::from(id.0 as f64))
                .map_err(|e| delivery_error(&e))
        }))
    }

    /// Sends a message once the outbound queue has room, instead of throwing `queue-full`
    /// (room comes as messages are acknowledged, written or dropped); resolves with its
    /// id. Rejects with the other refusals of `send` (`too-large`, `stopped`, `closing`).
    /// Throws a `TypeError` for data that cannot be sent.
    #[wasm_bindgen(js_name = sendWait, unchecked_return_type = "Promise<number>")]
    pub fn send_wait(
        &self,
        #[wasm_bindgen(
            unchecked_param_type = "string | Uint8Array | ArrayBuffer | ArrayBufferView | object | number | boolean"
        )]
        data: JsValue,
    ) -> Result<Promise, JsValue> {
        let payload = payload_from(&data)?;
        let sent = self.client.send_wait(payload);
        Ok(promise(async move {
            sent.await
                .map(|id| JsValue::from(id.0 as f64))
                .map_err(|e| send_error(&e))
        }))
    }

    /// Resolves once every message sent so far is acknowledged by the server
    /// (`protocol: true`) or written to the socket (plain mode). Rejects with an `Error`
    /// whose `kind` is `dropped` (with a `reason`) if one of them was dropped, or
    /// `stopped` if the connection stopped with an error first.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn flush(&self) -> Promise {
        let flushed = self.client.flush();
        promise(async move {
            flushed
                .await
                .map(|()| JsValue::UNDEFINED)
                .map_err(|e| delivery_error(&e))
        })
    }

    /// Closes the connection (default code 1000, reason "") once what was sent before is
    /// delivered, and resolves once the socket is closed: the client keeps reconnecting
    /// and flushing for up to `closeLingerMs` (default 5000) until every message is
    /// acknowledged (`protocol: true`) or written (plain mode); what is left then is
    /// `dropped` (reason `stopped` if never written, `unconfirmed` if not acknowledged).
    /// `send` throws `closing` meanwhile. `closeNow` closes at once.
    ///
    /// Throws a `TypeError` for a code that is not a number or a reason that is not a
    /// string, and a `RangeError` for a code other than 1000 or 3000–4999, or a reason
    /// longer than 123 UTF-8 bytes.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn close(
        &self,
        #[wasm_bindgen(unchecked_optional_param_type = "number")] code: JsValue,
        #[wasm_bindgen(unchecked_optional_param_type = "string")] reason: JsValue,
    ) -> Promise {
        let (code, reason) = close_args(&code, &reason);
        let closed = self.client.close(code, &reason);
        promise(async move {
            closed.await;
            Ok(JsValue::UNDEFINED)
        })
    }

    /// Closes the connection at once (default code 1000, reason "") and resolves once the
    /// socket is closed: messages not yet delivered are `dropped`. Throws as `close`.
    #[wasm_bindgen(js_name = closeNow, unchecked_return_type = "Promise<void>")]
    pub fn close_now(
        &self,
        #[wasm_bindgen(unchecked_optional_param_type = "number")] code: JsValue,
        #[wasm_bindgen(unchecked_optional_param_type = "string")] reason: JsValue,
    ) -> Promise {
        let (code, reason) = close_args(&code, &reason);
        let closed = self.client.close_now(code, &reason);
        promise(async move {
            closed.await;
            Ok(JsValue::UNDEFINED)
        })
    }

    /// The listeners (`emitter.js`). The wrapper (`js/index.js`) implements `on()` with
    /// them, and emits the events of a dead instance itself.
    #[wasm_bindgen(getter, js_name = __emitter, skip_typescript)]
    pub fn emitter(&self) -> JsValue {
        self.emitter.clone().into()
    }

    /// The state: `disconnected`, `connecting`, `connected`, `reconnecting`, `error` or
    /// `closed`.
    #[wasm_bindgen(getter, unchecked_return_type = "TetherState")]
    pub fn state(&self) -> String {
        self.client.state().as_str().to_owned()
    }

    /// The quality level (`excellent`, `good`, `fair`, `poor`, `critical`), or `null`
    /// before it is measured.
    #[wasm_bindgen(getter, unchecked_return_type = "TetherQuality | null")]
    pub fn quality(&self) -> JsValue {
        self.client
            .quality()
            .map_or(JsValue::NULL, |q| JsValue::from_str(q.as_str()))
    }

    /// The protocol session, for another client to take over with the `resume` option
    /// (a tab handing its connection to another), or `null` before the server welcomed
    /// this one. It holds the session secret: never send it outside the origin.
    #[wasm_bindgen(unchecked_return_type = "TetherSessionHandoff | null")]
    pub fn handoff(&self) -> JsValue {
        self.client
            .handoff()
            .map_or(JsValue::NULL, |h| crate::handoff::to_js(&h))
    }

    /// The id this client presents to a Tether server, in hexadecimal (for logs).
    #[wasm_bindgen(getter, js_name = clientId)]
    pub fn client_id(&self) -> String {
        tether_core::text::hex(self.client.client_id())
    }

    /// A snapshot of every figure (see `TetherMetrics`): state, attempts, reconnects,
    /// RTT (last, mean, p50, p99) and jitter in milliseconds, loss, quality, reliability,
    /// message and byte counts, queue depth, fallback, and why it stopped.
    #[wasm_bindgen(unchecked_return_type = "TetherMetrics")]
    pub fn metrics(&self) -> JsValue {
        convert::metrics(&self.client.metrics())
    }

    /// Alerts and recommendations for the connection now (see `TetherHealth`), by the
    /// core's documented thresholds: the same verdicts as `tether_core::advice` gives a
    /// Rust application.
    #[wasm_bindgen(unchecked_return_type = "TetherHealth")]
    pub fn health(&self) -> JsValue {
        convert::health(&tether_core::advice::assess(
            &self.client.metrics(),
            &tether_core::advice::AlertThresholds::default(),
        ))
    }

    /// Connects now: restarts after `error` or `closed` (forgetting past failures), or
    /// ends a backoff wait early.
    pub fn reconnect(&self) {
        self.client.reconnect();
    }
}

/// Test seam, not part of the API (not in the TypeScript declarations): traps the
/// WebAssembly instance as a panic does (`panic = "abort"`), at once (`place` 0), in a
/// task of wasm-bindgen-futures' queue (1) or in a `setTimeout` callback (2). The tests
/// of the wrapper's trap handling (`tests/death.test.mjs`) call it.
#[wasm_bindgen(js_name = __tetherTrap, skip_typescript)]
pub fn trap(place: u8) {
    match place {
        1 => wasm_bindgen_futures::spawn_local(async { core::arch::wasm32::unreachable() }),
        2 => {
            let callback = Closure::once_into_js(|| -> () { core::arch::wasm32::unreachable() });
            set_timeout(&callback, 0.0);
        }
        _ => core::arch::wasm32::unreachable(),
    }
}

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_name = setTimeout)]
    fn set_timeout(callback: &JsValue, ms: f64) -> JsValue;
}

/// Forwards the client's logs at `level` and above to the console: `off` (the default),
/// `error`, `warn`, `info`, `debug` or `trace`. Tokens are never logged. Throws a
/// `RangeError` for another level.
#[wasm_bindgen(js_name = setLogLevel)]
pub fn set_log_level(
    #[wasm_bindgen(unchecked_param_type = "'off' | 'error' | 'warn' | 'info' | 'debug' | 'trace'")]
    level: JsValue,
) {
    use tether_web::log::Level;
    // The wrapper (js/index.js) checked the name and passes its index.
    let level = match level.as_f64().map(|i| i as u8) {
        Some(1) => Some(Level::Error),
        Some(2) => Some(Level::Warn),
        Some(3) => Some(Level::Info),
        Some(4) => Some(Level::Debug),
        Some(5) => Some(Level::Trace),
        _ => None,
    };
    tether_web::log::set_level(level);
}

/// The `code` and `reason` of `close` and `closeNow`, which the wrapper (js/index.js)
/// checked and gave their defaults.
fn close_args(code: &JsValue, reason: &JsValue) -> (u16, String) {
    (
        code.as_f64().map_or(1000, |n| n as u16),
        reason.as_string().unwrap_or_default(),
    )
}

/// The promise of `future`. Boxed, so that `future_to_promise` is compiled once.
fn promise(future: impl Future<Output = Result<JsValue, JsValue>> + 'static) -> Promise {
    let future: Pin<Box<dyn Future<Output = Result<JsValue, JsValue>>>> = Box::pin(future);
    future_to_promise(future)
}

/// What `send` sends for `data`, which the wrapper (js/index.js) made a string or a
/// Uint8Array (and whose messages name the method).
fn payload_from(data: &JsValue) -> Result<Payload, JsValue> {
    convert::payload_of(data).ok_or_else(|| type_error("data must be a string or a Uint8Array"))
}

/// Asks for a token: `provider` is the user's, wrapped by `tokens` (js/options.js), which
/// resolves to `[token, milliseconds until it expires or NaN]` and rejects with the
/// message of what went wrong.
async fn token_from(provider: Function) -> Result<Token, String> {
    let text = |e: JsValue| e.as_string().unwrap_or_default();
    let promise = provider.call0(&JsValue::UNDEFINED).map_err(text)?;
    let answer: JsValue = JsFuture::from(Promise::unchecked_from_js(promise))
        .await
        .map_err(text)?;
    let answer: &Array = answer.unchecked_ref();
    // `expiresAt: 1e300` is "never", not an overflow.
    let expires_at = answer
        .get(1)
        .as_f64()
        .filter(|left| !left.is_nan())
        .map(|left| tether_core::time::later(Instant::now(), Duration::from_millis(left as u64)));
    Ok(Token {
        value: answer.get(0).as_string().unwrap_or_default(),
        expires_at,
    })
}
