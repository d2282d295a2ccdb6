//! [`WebTransport`]: the [`Transport`] of `wasm32-unknown-unknown`, over the platform's
//! `WebSocket` (the browser's, Node 22's, or an injected constructor such as the `ws`
//! package's) and `fetch`.
//!
//! The sockets' event handlers are plain JavaScript functions in `shim.js`; this side
//! awaits the promises they resolve, and takes a socket's frames when the socket calls
//! the function shared by every socket with its key (`callback.rs`; nothing made per
//! read or per socket) to say some wait. So a socket
//! that fires after being dropped reaches nothing of Rust's, and a send on a socket that
//! is not open fails instead of vanishing.
//!
//! A frame over [`frame_limit`](tether_dispatch::transport::frame_limit) of
//! `max_message_bytes` is measured where it is (a text frame's UTF-8 length is counted in
//! JavaScript, without encoding it) and fails the socket with
//! [`TransportFailure::MessageTooLarge`] before anything of it is copied into wasm
//! memory; the socket is ended then, as a native socket fails while reading such a frame.

use std::cell::Cell;
use std::collections::VecDeque;
use std::future::{poll_fn, ready, Future};
use std::rc::{Rc, Weak};
use std::task::{Poll, Waker};

use js_sys::{Array, Uint8Array};
use tether_core::{Payload, TransportFailure};
use tether_dispatch::transport::{MaybeSend, SocketEvent, SocketReader, SocketWriter, Transport};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

use crate::callback::{self, Key, Wake};
use crate::sys::{self, field};

/// WebSockets through a `WebSocket` constructor, HTTP polling through `fetch`.
///
/// By default both are the global ones (`globalThis.WebSocket`, `globalThis.fetch`).
/// Node 20 has no global `WebSocket`: pass the `ws` package's.
///
/// ```no_run
/// use tether_web::WebTransport;
/// # fn run(ws_constructor: wasm_bindgen::JsValue) {
/// let transport = WebTransport::new().websocket_constructor(ws_constructor);
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct WebTransport {
    websocket: JsValue,
    fetch: JsValue,
    max_frame: usize,
    max_poll_body: usize,
}

impl Default for WebTransport {
    fn default() -> Self {
        WebTransport::new()
    }
}

impl WebTransport {
    /// The global `WebSocket` and `fetch`.
    #[must_use]
    pub fn new() -> Self {
        WebTransport {
            websocket: JsValue::UNDEFINED,
            fetch: JsValue::UNDEFINED,
            max_frame: tether_dispatch::transport::frame_limit(16 << 20),
            max_poll_body: tether_dispatch::transport::http_body_limit(16 << 20),
        }
    }

    /// A transport whose limits follow `config` (its `max_message_bytes`), as the client's
    /// own default is: start from this when giving one to
    /// [`ClientBuilder::transport`](crate::ClientBuilder::transport). As native's
    /// `NativeTransport::for_config`.
    #[must_use]
    pub fn for_config(config: &tether_core::Config) -> Self {
        Self::new().max_message_bytes(config.max_message_bytes)
    }

    /// The largest message accepted from the server (the client sets it from its
    /// config's `max_message_bytes`; 16 MiB by default). A WebSocket frame over
    /// [`frame_limit`](tether_dispatch::transport::frame_limit) of it (a text frame by its
    /// UTF-8 length) fails the socket with [`TransportFailure::MessageTooLarge`] without
    /// being copied into wasm memory, and the socket is ended. Poll responses may be
    /// [`http_body_limit`](tether_dispatch::transport::http_body_limit) of it; a longer one,
    /// or one that never ends, fails the request with
    /// [`TransportFailure::MessageTooLarge`]. Both as on native. A transport given to
    /// [`ClientBuilder::transport`](crate::ClientBuilder::transport) keeps its own limit:
    /// make it with [`WebTransport::for_config`].
    #[must_use]
    pub fn max_message_bytes(mut self, bytes: usize) -> Self {
        self.max_frame = tether_dispatch::transport::frame_limit(bytes);
        self.max_poll_body = tether_dispatch::transport::http_body_limit(bytes);
        self
    }

    /// Opens sockets with this constructor (`new ctor(url, protocols)`); `undefined` or
    /// `null` means `globalThis.WebSocket`. Without any, every attempt fails as
    /// [`TransportFailure::Blocked`].
    #[must_use]
    pub fn websocket_constructor(mut self, ctor: JsValue) -> Self {
        self.websocket = ctor;
        self
    }

    /// Makes polling requests with this `fetch` function; `undefined` or `null` means
    /// `globalThis.fetch`.
    #[must_use]
    pub fn fetch(mut self, fetch: JsValue) -> Self {
        self.fetch = fetch;
        self
    }
}

/// The shim's socket; dropping the last half ends it.
struct Socket {
    sock: sys::Sock,
    /// The reader's waker, while it waits for frames.
    reader: Rc<Cell<Option<Waker>>>,
    /// The shim calls the shared function with it to wake the reader
    /// ([`callback`](crate::callback)); it forgets it (`release`) before it is dropped.
    _notify: Key,
}

impl Socket {
    fn new(sock: sys::Sock) -> Self {
        let reader: Rc<Cell<Option<Waker>>> = Rc::default();
        let notify = Key::new(Rc::downgrade(&reader) as Weak<dyn Wake>);
        callback::with_function(|f| sock.listen(f, notify.get()));
        Socket {
            sock,
            reader,
            _notify: notify,
        }
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        self.sock.release();
    }
}

/// The sending half of a socket from [`WebTransport`].
pub struct WebSocketWriter {
    socket: Rc<Socket>,
}

/// The receiving half of a socket from [`WebTransport`].
pub struct WebSocketReader {
    socket: Rc<Socket>,
    pending: VecDeque<SocketEvent>,
    /// The largest frame taken in ([`WebTransport::max_message_bytes`]).
    max_frame: usize,
}

/// A polling request; dropping it aborts the request if it is still under way.
struct Request(sys::Req);

impl Drop for Request {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn strings<'a>(items: impl Iterator<Item = &'a str>) -> Array {
    items.map(JsValue::from_str).collect()
}

fn pairs(headers: &[(String, String)]) -> Array {
    headers
        .iter()
        .map(|(k, v)| Array::of2(&JsValue::from_str(k), &JsValue::from_str(v)))
        .collect()
}

impl Transport for WebTransport {
    type Writer = WebSocketWriter;
    type Reader = WebSocketReader;

    /// True with a constructor whose sockets have `ping()` and a `pong` event (the `ws`
    /// package's); browsers' and Node 22's WebSocket have neither.
    fn can_ping(&self) -> bool {
        sys::can_ping(&self.websocket)
    }

    fn connect(
        &self,
        url: String,
        protocols: Vec<String>,
        headers: Vec<(String, String)>,
    ) -> impl Future<Output = Result<(WebSocketWriter, WebSocketReader), TransportFailure>> + MaybeSend
    {
        let ctor = self.websocket.clone();
        let max_frame = self.max_frame;
        async move {
            let sock = sys::Sock::new(
                &ctor,
                &url,
                strings(protocols.iter().map(String::as_str)),
                pairs(&headers),
            );
            let socket = Rc::new(Socket::new(sock));
            let outcome = JsFuture::from(socket.sock.opened())
                .await
                .unwrap_or_else(|e| e);
            if !outcome.is_null() {
                return Err(sys::failure(&outcome));
            }
            let writer = WebSocketWriter {
                socket: socket.clone(),
            };
            let reader = WebSocketReader {
                socket,
                pending: VecDeque::new(),
                max_frame,
            };
            Ok((writer, reader))
        }
    }

    fn post(
        &self,
        url: String,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    ) -> impl Future<Output = Result<Vec<u8>, TransportFailure>> + MaybeSend {
        let fetch = self.fetch.clone();
        let limit = self.max_poll_body;
        async move {
            let body = Uint8Array::from(body.as_slice());
            let request = Request(sys::Req::new(
                &fetch,
                &url,
                pairs(&headers),
                body,
                limit as f64,
            ));
            let outcome = JsFuture::from(request.0.done()).await.unwrap_or_else(|e| e);
            match outcome.dyn_into::<Uint8Array>() {
                Ok(bytes) => Ok(bytes.to_vec()),
                Err(other) => Err(sys::failure(&other)),
            }
        }
    }
}

impl SocketWriter for WebSocketWriter {
    fn send(
        &mut self,
        frame: Payload,
    ) -> impl Future<Output = Result<(), TransportFailure>> + MaybeSend {
        // Binary frames are copied out of wasm memory: a socket may keep what it is given
        // until it is written, and wasm memory moves.
        let data = match frame {
            Payload::Text(text) => JsValue::from_str(&text),
            Payload::Binary(bytes) => Uint8Array::from(&bytes[..]).into(),
        };
        ready(if self.socket.sock.send(&data) {
            Ok(())
        } else {
            Err(TransportFailure::Network(
                "the socket is not open".to_owned(),
            ))
        })
    }

    fn ping(&mut self) -> impl Future<Output = Result<(), TransportFailure>> + MaybeSend {
        ready(if self.socket.sock.ping() {
            Ok(())
        } else {
            Err(TransportFailure::Network(
                "the socket is not open".to_owned(),
            ))
        })
    }

    fn close(&mut self, code: u16, reason: String) -> impl Future<Output = ()> + MaybeSend {
        let (code, reason) = tether_dispatch::close::sendable(code, &reason);
        self.socket.sock.close(code, reason);
        ready(())
    }
}

impl SocketReader for WebSocketReader {
    async fn next(&mut self) -> SocketEvent {
        if self.pending.is_empty() {
            let socket = &self.socket;
            let batch = poll_fn(|cx| match socket.sock.take() {
                Some(batch) => Poll::Ready(batch),
                None => {
                    socket.reader.set(Some(cx.waker().clone()));
                    Poll::Pending
                }
            })
            .await;
            for item in batch.iter() {
                let event = socket_event(&item, self.max_frame);
                let end = event.is_end();
                self.pending.push_back(event);
                if end {
                    // Nothing after the end is taken in. A frame over the limit failed
                    // the socket: it ends now, as a native socket does.
                    if matches!(self.pending.back(), Some(SocketEvent::Failed(_))) {
                        socket.sock.end();
                    }
                    break;
                }
            }
        }
        // An empty batch: the end was reported already, or the socket was abandoned.
        self.pending.pop_front().unwrap_or(SocketEvent::Closed {
            code: None,
            reason: "the socket ended".to_owned(),
        })
    }
}

/// One item of the shim's batch: a string, a Uint8Array, `{ pong }` or
/// `{ end, code, reason }`. A frame over `max_frame` bytes is the socket's failure, and
/// is not copied in.
fn socket_event(item: &JsValue, max_frame: usize) -> SocketEvent {
    let over = sys::frame_over(item, max_frame as f64);
    if over > 0.0 {
        return SocketEvent::Failed(TransportFailure::MessageTooLarge {
            size: over as usize,
        });
    }
    if let Some(text) = item.as_string() {
        return SocketEvent::Frame(Payload::from(text));
    }
    if let Some(bytes) = item.dyn_ref::<Uint8Array>() {
        return SocketEvent::Frame(Payload::from(bytes.to_vec()));
    }
    if field(item, "pong").is_truthy() {
        return SocketEvent::Pong;
    }
    SocketEvent::Closed {
        code: field(item, "code")
            .as_f64()
            .filter(|c| (0.0..=65535.0).contains(c))
            .map(|c| c as u16),
        reason: field(item, "reason").as_string().unwrap_or_default(),
    }
}
