//! [`Client`]: the handle applications hold, and its builder.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::Future;
use std::rc::{Rc, Weak};
use std::task::Poll;

use tether_core::{
    Config, Connection, Event, Hint, Instant, MessageId, Metrics, Payload, Quality, SendError,
    SessionHandoff, State,
};
use tether_dispatch::transport::Transport;

use crate::driver::{answer, Buffer, Inner, Listener};
use crate::error::BuildError;
use crate::local::answer as answer_pair;
use crate::token::TokenProvider;
use crate::transport::WebTransport;
use tether_core::DeliveryError;

/// A reconnecting WebSocket client on the JavaScript event loop (a page, a worker or
/// Node): a cheap, cloneable handle over the connection and its I/O.
///
/// Every decision (backoff, heartbeats, queueing, fallback) is made by
/// [`tether_core::Connection`]; the client feeds it what the network and the page do and
/// performs what it asks. Once every handle is dropped the connection is closed (after
/// delivering what was sent, within `close_linger`).
///
/// ```no_run
/// use tether_core::{Config, Event};
/// use tether_web::Client;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let client = Client::connect(Config::builder("wss://example.com/ws").build()?)?;
/// let mut events = client.events();
/// client.send("hello")?; // queued until connected
/// while let Some(event) = events.recv().await {
///     if let Event::Message(payload) = event {
///         web_sys_log(&format!("got {payload:?}"));
///     }
/// }
/// # Ok(())
/// # }
/// # fn web_sys_log(_: &str) {}
/// ```
pub struct Client<T: Transport + 'static = WebTransport> {
    inner: Rc<Inner<T>>,
    /// Dropped with the last handle: closes the connection.
    _handle: Rc<HandleGuard<T>>,
}

impl<T: Transport + 'static> Clone for Client<T> {
    fn clone(&self) -> Self {
        Client {
            inner: self.inner.clone(),
            _handle: self._handle.clone(),
        }
    }
}

impl<T: Transport + 'static> std::fmt::Debug for Client<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self
            .inner
            .core
            .try_borrow()
            .map(|c| c.dispatch.connection().state());
        f.debug_struct("Client")
            .field("state", &state)
            .finish_non_exhaustive()
    }
}

/// Lives as long as any [`Client`] handle.
struct HandleGuard<T: Transport + 'static>(Rc<Inner<T>>);

impl<T: Transport + 'static> Drop for HandleGuard<T> {
    fn drop(&mut self) {
        if let Ok(mut core) = self.0.core.try_borrow_mut() {
            core.dispatch.handle_client_dropped(Instant::now());
        }
        self.0.drive();
    }
}

impl Client<WebTransport> {
    /// Starts a client with the global `WebSocket` and `fetch`, and connects: shorthand
    /// for `Client::builder(config).spawn()`.
    ///
    /// ```no_run
    /// use tether_core::{Config, State};
    /// use tether_web::Client;
    ///
    /// # fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let client = Client::connect(Config::builder("ws://127.0.0.1:9/ws").build()?)?;
    /// assert_eq!(client.state(), State::Connecting);
    /// # Ok(())
    /// # }
    /// ```
    pub fn connect(config: Config) -> Result<Client, BuildError> {
        Client::builder(config).spawn()
    }

    /// A builder, to add a token provider, another transport (an injected `WebSocket`
    /// constructor), or to ignore the page's events.
    ///
    /// ```no_run
    /// use tether_core::{AuthConfig, Config, Token, TokenPlacement};
    /// use tether_web::{Client, WebTransport};
    ///
    /// # fn run(ws: wasm_bindgen::JsValue) -> Result<(), Box<dyn std::error::Error>> {
    /// let auth = AuthConfig {
    ///     placement: TokenPlacement::Query("access_token".into()),
    ///     ..AuthConfig::default()
    /// };
    /// let config = Config::builder("wss://example.com/ws").auth(auth).build()?;
    /// let transport = WebTransport::for_config(&config).websocket_constructor(ws);
    /// let client = Client::builder(config)
    ///     .token_provider(|| async {
    ///         Ok::<_, String>(Token { value: "secret".into(), expires_at: None })
    ///     })
    ///     .transport(transport)
    ///     .spawn()?;
    /// # drop(client);
    /// # Ok(())
    /// # }
    /// ```
    pub fn builder(config: Config) -> ClientBuilder {
        ClientBuilder {
            transport: WebTransport::for_config(&config),
            config,
            tokens: None,
            page_hints: true,
            resume: None,
        }
    }
}

impl<T> Client<T>
where
    T: Transport + 'static,
    T::Writer: 'static,
    T::Reader: 'static,
{
    /// Sends a message: written at once when connected, queued otherwise (flushed in
    /// order on connect). Never waits.
    ///
    /// ```no_run
    /// # fn run(client: tether_web::Client) {
    /// match client.send("hello") {
    ///     Ok(id) => { /* on its way */ }
    ///     Err(e) => { /* queue full, too large, stopped: {e} */ }
    /// }
    /// # }
    /// ```
    pub fn send(&self, payload: impl Into<Payload>) -> Result<MessageId, SendError> {
        let payload = payload.into();
        self.inner.input(|conn, now| conn.send(now, payload))
    }

    /// Sends a message, waiting for room in the outbound queue instead of failing with
    /// [`SendError::QueueFull`] (room comes as messages are acknowledged, written or
    /// dropped). Fails at once with the core's other refusals: too large (or larger than
    /// the whole queue), stopped, closing.
    ///
    /// ```no_run
    /// # async fn run(client: tether_web::Client) -> Result<(), tether_core::SendError> {
    /// client.send_wait("paced by the server's acks").await?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn send_wait(
        &self,
        payload: impl Into<Payload>,
    ) -> impl Future<Output = Result<MessageId, SendError>> + 'static {
        let payload = payload.into();
        let inner = self.inner.clone();
        async move {
            loop {
                let room = inner.room.notified();
                let fits = inner
                    .core
                    .borrow()
                    .dispatch
                    .connection()
                    .has_room_for(payload.len());
                if fits {
                    return inner.input(|conn, now| conn.send(now, payload));
                }
                room.await;
            }
        }
    }

    /// Resolves once every message sent so far is acknowledged by the server (protocol
    /// mode) or written to the socket (plain mode). Fails with
    /// [`DeliveryError::Dropped`] if one of them was dropped, with
    /// [`DeliveryError::Stopped`] if the connection stops with an error first.
    ///
    /// ```no_run
    /// # async fn run(client: tether_web::Client) {
    /// client.send("last words").unwrap();
    /// if let Err(e) = client.flush().await { /* not everything arrived: {e} */ }
    /// # }
    /// ```
    pub fn flush(&self) -> impl Future<Output = Result<(), DeliveryError>> + 'static {
        let (tx, rx) = answer_pair();
        let done = self.inner.core.borrow_mut().dispatch.flush(tx);
        if let Some(done) = done {
            answer(done);
        }
        self.inner.drive();
        async move { rx.await.unwrap_or(Err(DeliveryError::ClientGone)) }
    }

    /// Sends a message and resolves once the server acknowledges it (protocol mode).
    ///
    /// Fails with the core's refusal, when the message is dropped (queue overflow or age,
    /// a user close), or when the connection stops with an error first. In plain mode
    /// nothing is ever acknowledged: [`DeliveryError::Unconfirmable`] at once.
    ///
    /// ```no_run
    /// # async fn run(client: tether_web::Client) {
    /// match client.send_confirmed("order #42").await {
    ///     Ok(id) => { /* the server has it */ }
    ///     Err(e) => { /* not delivered: {e} */ }
    /// }
    /// # }
    /// ```
    pub fn send_confirmed(
        &self,
        payload: impl Into<Payload>,
    ) -> impl Future<Output = Result<MessageId, DeliveryError>> + 'static {
        let (tx, rx) = answer_pair();
        let done = self.inner.core.borrow_mut().dispatch.send_confirmed(
            Instant::now(),
            payload.into(),
            tx,
        );
        if let Err(done) = done {
            answer(done);
        }
        self.inner.drive();
        async move { rx.await.unwrap_or(Err(DeliveryError::ClientGone)) }
    }

    /// Every event from now on, as an async stream. Events are buffered until read, and
    /// none is ever dropped: while a reader has more than `max_unread_bytes` (or
    /// `max_unread_messages`) of messages waiting, the client stops reading from the
    /// server until it catches up. Dropping the reader stops the buffering.
    ///
    /// ```no_run
    /// use tether_core::Event;
    ///
    /// # async fn run(client: tether_web::Client) {
    /// let mut events = client.events();
    /// while let Some(event) = events.recv().await {
    ///     match event {
    ///         Event::Message(payload) => { /* ... */ }
    ///         Event::StateChanged { to, .. } => { /* now {to} */ }
    ///         _ => {}
    ///     }
    /// }
    /// # }
    /// ```
    #[must_use]
    pub fn events(&self) -> Events {
        let buffer = Rc::new(RefCell::new(Buffer {
            events: VecDeque::new(),
            waker: None,
            unread_messages: 0,
            unread_bytes: 0,
        }));
        self.inner.buffers.borrow_mut().push(Rc::downgrade(&buffer));
        let sink = buffer.clone();
        let subscription = self.on_event(move |event| {
            let mut b = sink.borrow_mut();
            if let Event::Message(payload) = event {
                b.unread_messages += 1;
                b.unread_bytes += payload.len() as u64;
            }
            b.events.push_back(event.clone());
            if let Some(w) = b.waker.take() {
                w.wake();
            }
        });
        Events {
            buffer,
            _subscription: subscription,
        }
    }

    /// Calls `listener` with every event from now on, synchronously as the connection
    /// produces it, until the returned [`Subscription`] is dropped. The listener may call
    /// the client (send, close, ...).
    ///
    /// ```no_run
    /// use tether_core::Event;
    ///
    /// # fn run(client: tether_web::Client) {
    /// let subscription = client.on_event(|event| {
    ///     if let Event::StateChanged { to, .. } = event {
    ///         let _ = to; // update the UI
    ///     }
    /// });
    /// drop(subscription); // stops listening
    /// # }
    /// ```
    #[must_use = "dropping the subscription stops the listener"]
    pub fn on_event(&self, listener: impl FnMut(&Event) + 'static) -> Subscription {
        let listener: Listener = Rc::new(RefCell::new(listener));
        let id = self.inner.subscribe(listener);
        let inner: Rc<dyn Unsubscribe> = self.inner.clone();
        Subscription {
            inner: Rc::downgrade(&inner),
            id,
        }
    }

    /// The current state.
    ///
    /// ```no_run
    /// # fn run(client: tether_web::Client) {
    /// if client.state() == tether_core::State::Connected { /* ... */ }
    /// # }
    /// ```
    #[must_use]
    pub fn state(&self) -> State {
        self.inner.core.borrow().dispatch.connection().state()
    }

    /// The reported quality level, once measured.
    ///
    /// ```no_run
    /// # fn run(client: tether_web::Client) {
    /// let level = client.quality().map_or("unknown", |q| q.as_str());
    /// # }
    /// ```
    #[must_use]
    pub fn quality(&self) -> Option<Quality> {
        self.inner.core.borrow().dispatch.connection().quality()
    }

    /// A snapshot of every figure: state, attempts, RTT, quality, counts, queue.
    ///
    /// ```no_run
    /// # fn run(client: tether_web::Client) {
    /// let m = client.metrics();
    /// let _ = (m.messages_out, m.rtt_mean, m.quality);
    /// # }
    /// ```
    #[must_use]
    pub fn metrics(&self) -> Metrics {
        self.inner
            .core
            .borrow()
            .dispatch
            .connection()
            .metrics(Instant::now())
    }

    /// The stable id this client presents to a Tether server (for logs and support).
    #[must_use]
    pub fn client_id(&self) -> u64 {
        self.inner.core.borrow().dispatch.connection().client_id()
    }

    /// The protocol session as another client can take it over
    /// ([`ClientBuilder::resume`]), once the server welcomed this one; see
    /// [`Connection::handoff`]. It holds the session secret: keep it within the origin.
    ///
    /// ```no_run
    /// # fn run(client: tether_web::Client) {
    /// let session = client.handoff(); // None before the first Welcome
    /// # }
    /// ```
    pub fn handoff(&self) -> Option<SessionHandoff> {
        self.inner.core.borrow().dispatch.connection().handoff()
    }

    /// Connect now: restarts after `Error` or `Closed`, or ends a backoff wait early.
    ///
    /// ```no_run
    /// # fn run(client: tether_web::Client) {
    /// client.reconnect();
    /// # }
    /// ```
    pub fn reconnect(&self) {
        self.inner.input(|conn, now| conn.reconnect(now));
    }

    /// Tells the core something the platform knows. The page's own events (online,
    /// visibility, pagehide/pageshow, freeze/resume) are fed already unless the builder
    /// said otherwise.
    ///
    /// ```no_run
    /// # fn run(client: tether_web::Client) {
    /// client.hint(tether_core::Hint::Resumed); // check the socket's liveness now
    /// # }
    /// ```
    pub fn hint(&self, hint: Hint) {
        self.inner.input(|conn, now| conn.handle_hint(now, hint));
    }

    /// Closes with `code` and `reason` once what was sent before is delivered, and
    /// resolves once the sockets are closed. The client keeps (re)connecting and flushing
    /// for up to `close_linger` (default 5 s) until every message is acknowledged
    /// (protocol mode) or written (plain mode); what is left then is reported `Dropped`.
    /// New sends are refused meanwhile ([`SendError::Closing`]). See
    /// [`Client::close_now`] to close at once.
    ///
    /// ```no_run
    /// # async fn run(client: tether_web::Client) {
    /// client.close(1000, "bye").await;
    /// # }
    /// ```
    pub fn close(&self, code: u16, reason: &str) -> impl Future<Output = ()> + 'static {
        self.close_with(code, reason, false)
    }

    /// Closes with `code` and `reason` at once, and resolves once the sockets are closed:
    /// messages not yet delivered are reported `Dropped`.
    ///
    /// ```no_run
    /// # async fn run(client: tether_web::Client) {
    /// client.close_now(1000, "bye").await;
    /// # }
    /// ```
    pub fn close_now(&self, code: u16, reason: &str) -> impl Future<Output = ()> + 'static {
        self.close_with(code, reason, true)
    }

    fn close_with(
        &self,
        code: u16,
        reason: &str,
        at_once: bool,
    ) -> impl Future<Output = ()> + 'static {
        let (tx, done) = answer_pair();
        self.inner
            .core
            .borrow_mut()
            .dispatch
            .close(Instant::now(), code, reason, at_once, tx);
        self.inner.drive();
        async move {
            let _ = done.await;
        }
    }
}

/// Builds a [`Client`]; from [`Client::builder`].
#[must_use]
pub struct ClientBuilder<T = WebTransport> {
    config: Config,
    transport: T,
    tokens: Option<Rc<dyn TokenProvider>>,
    page_hints: bool,
    resume: Option<SessionHandoff>,
}

impl<T> std::fmt::Debug for ClientBuilder<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("config", &self.config)
            .field("token_provider", &self.tokens.is_some())
            .field("page_hints", &self.page_hints)
            .field("resume", &self.resume.is_some())
            .finish_non_exhaustive()
    }
}

impl<T> ClientBuilder<T> {
    /// The async token provider, asked before each attempt when `config.auth` is set.
    pub fn token_provider(mut self, provider: impl TokenProvider) -> Self {
        self.tokens = Some(Rc::new(provider));
        self
    }

    /// Another transport: a [`WebTransport`] with an injected constructor, or a double.
    pub fn transport<U>(self, transport: U) -> ClientBuilder<U> {
        ClientBuilder {
            config: self.config,
            transport,
            tokens: self.tokens,
            page_hints: self.page_hints,
            resume: self.resume,
        }
    }

    /// Takes over the session another client handed off ([`Client::handoff`]) instead of
    /// starting a new one: see [`Connection::resume`].
    pub fn resume(mut self, handoff: SessionHandoff) -> Self {
        self.resume = Some(handoff);
        self
    }

    /// Whether to feed the page's online, visibility, pagehide/pageshow and
    /// freeze/resume events to the core as hints (default: yes; there are none in Node).
    pub fn page_hints(mut self, on: bool) -> Self {
        self.page_hints = on;
        self
    }

    /// Starts the client and connects. Its first events (the state becoming
    /// `Connecting`, the first [`Event::AttemptStarted`]) are published a microtask
    /// later: listeners added before the caller yields see them.
    pub fn spawn(self) -> Result<Client<T>, BuildError>
    where
        T: Transport + 'static,
        T::Writer: 'static,
        T::Reader: 'static,
    {
        if self.config.auth.is_some() && self.tokens.is_none() {
            return Err(BuildError::NoTokenProvider);
        }
        tether_dispatch::transport::check_capabilities(&self.config, &self.transport)
            .map_err(BuildError::Unsupported)?;
        let now = Instant::now();
        // Each client its own id and jitter schedule, unless the config replays a seed.
        let mut conn = match self.resume {
            Some(handoff) => Connection::resume(self.config, now, crate::sys::entropy(), handoff)?,
            None => Connection::new(self.config, now, crate::sys::entropy())?,
        };
        conn.use_control_pings(self.transport.can_ping());
        #[cfg(feature = "tracing")]
        tracing::info!(client = %format_args!("{:x}", conn.client_id()), "client started");
        #[cfg(not(feature = "tracing"))]
        if crate::log::enabled(crate::log::Level::Info) {
            let client = tether_dispatch::log::Value::Hex(conn.client_id());
            crate::log::line(
                crate::log::Level::Info,
                "client started",
                &[("client", client)],
            );
        }
        conn.connect(now);
        let inner = Inner::start(conn, self.transport, self.tokens, self.page_hints);
        // The state is Connecting now; its events (and the first attempt's) are published
        // a microtask later, so that listeners added right after see the start.
        inner.drive_soon();
        Ok(Client {
            _handle: Rc::new(HandleGuard(inner.clone())),
            inner,
        })
    }
}

/// Removes a listener; what [`Subscription`] needs of the driver, whatever its transport.
trait Unsubscribe {
    fn unsubscribe(&self, id: u64);
    /// A reader took a message: while reading is paused, the core hears of it now.
    fn taken(self: Rc<Self>);
}

impl<T> Unsubscribe for Inner<T>
where
    T: Transport + 'static,
    T::Writer: 'static,
    T::Reader: 'static,
{
    fn unsubscribe(&self, id: u64) {
        Inner::unsubscribe(self, id);
    }

    fn taken(self: Rc<Self>) {
        if !self.reading.get() {
            self.drive();
        }
    }
}

/// A listener from [`Client::on_event`]; dropping it removes the listener.
pub struct Subscription {
    inner: Weak<dyn Unsubscribe>,
    id: u64,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("id", &self.id)
            .finish()
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.upgrade() {
            inner.unsubscribe(self.id);
        }
    }
}

/// The events of a client, from [`Client::events`].
pub struct Events {
    buffer: Rc<RefCell<Buffer>>,
    _subscription: Subscription,
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events")
            .field("buffered", &self.buffer.borrow().events.len())
            .finish()
    }
}

impl Events {
    /// The next event; `None` once the client is gone and every event was read.
    pub fn recv(&mut self) -> impl Future<Output = Option<Event>> + '_ {
        std::future::poll_fn(|cx| {
            if let Some(event) = self.try_recv() {
                return Poll::Ready(Some(event));
            }
            if self._subscription.inner.strong_count() == 0 {
                return Poll::Ready(None);
            }
            self.buffer.borrow_mut().waker = Some(cx.waker().clone());
            Poll::Pending
        })
    }

    /// Events skipped because this reader fell behind: always 0 here, where a reader's
    /// buffer holds every event until read (the native client coalesces status events
    /// past its `event_buffer`).
    #[must_use]
    pub fn missed(&self) -> u64 {
        0
    }

    /// The next event if one is buffered, without waiting.
    pub fn try_recv(&mut self) -> Option<Event> {
        let event = {
            let mut b = self.buffer.borrow_mut();
            let event = b.events.pop_front()?;
            if let Event::Message(payload) = &event {
                b.unread_messages -= 1;
                b.unread_bytes -= payload.len() as u64;
            }
            event
        };
        if matches!(event, Event::Message(_)) {
            if let Some(inner) = self._subscription.inner.upgrade() {
                inner.taken();
            }
        }
        Some(event)
    }
}
