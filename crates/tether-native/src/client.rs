//! [`Client`]: the handle applications hold, and its builder.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tether_core::{
    Config, Connection, Entropy, Hint, Instant, MessageId, Metrics, Payload, Quality, SendError,
    SessionHandoff, State,
};
use tether_dispatch::transport::Transport;
use tokio::runtime::Handle;
use tokio::sync::{oneshot, watch, Notify};
use tracing::Instrument;

use crate::driver::{self, answer, NativeDispatcher};
use crate::error::BuildError;
use crate::events::{Events, Readers};
use crate::token::TokenProvider;
use crate::transport::NativeTransport;
use tether_core::DeliveryError;

/// Events each [`Events`] reader may fall behind by before its status events are
/// coalesced, unless set with [`ClientBuilder::event_buffer`]. Messages are never
/// coalesced nor skipped.
pub const DEFAULT_EVENT_BUFFER: usize = 64;

/// A reconnecting WebSocket client: a cheap, cloneable handle (`Send + Sync`) over a
/// tokio task that owns the connection and does its I/O.
///
/// Every decision (backoff, heartbeats, queueing, fallback) is made by
/// [`tether_core::Connection`]; the client feeds it what the network does and performs
/// what it asks. The task ends once every handle is dropped (after closing the
/// connection, which first delivers what was sent within `close_linger`), or when the
/// connection has stopped with nothing left to do; `reconnect()` starts it again.
///
/// ```no_run
/// use tether_native::{Client, Config, Event};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let client = Client::connect(Config::builder("wss://example.com/ws").build()?)?;
/// let mut events = client.events();
/// client.send("hello")?; // queued until connected
/// while let Some(event) = events.recv().await {
///     if let Event::Message(payload) = event {
///         println!("got {payload:?}");
///     }
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Client {
    shared: Arc<Shared>,
    /// Dropped with the last handle: tells the task to close and end.
    _handle: Arc<HandleGuard>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("state", &*self.shared.state.borrow())
            .finish_non_exhaustive()
    }
}

/// What the handles and the task share.
pub(crate) struct Shared {
    core: Mutex<Core>,
    /// Wakes the task after a user call changed the core.
    pub(crate) wake: Notify,
    /// Notified when the core may have room for another message (`send_wait`).
    pub(crate) room: Notify,
    pub(crate) events: Readers,
    /// The first reader, made with the client so it misses nothing before `events()`.
    first_events: Mutex<Option<Events>>,
    pub(crate) state: watch::Sender<State>,
    /// Starts the task (again).
    start: Box<dyn Fn(Arc<Shared>) + Send + Sync>,
}

/// The connection and what waits on it, behind one short-held lock.
pub(crate) struct Core {
    /// The connection, its tables and its waiters.
    pub(crate) dispatch: NativeDispatcher,
    /// The task is running (or about to).
    pub(crate) running: bool,
}

impl Shared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, Core> {
        // A panic while holding the lock is a bug already reported; the core's state is
        // still consistent between calls, so carry on.
        self.core.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Has the task act on what the caller changed in `core`: wakes it, or starts it
    /// again if it had ended.
    fn kick(self: &Arc<Self>, mut core: MutexGuard<'_, Core>) {
        let start = !core.running && !core.dispatch.client_dropped();
        core.running |= start;
        drop(core);
        if start {
            (self.start)(self.clone());
        } else {
            self.wake.notify_one();
        }
    }
}

/// Lives as long as any [`Client`] handle.
struct HandleGuard(Arc<Shared>);

impl Drop for HandleGuard {
    fn drop(&mut self) {
        self.0.lock().dispatch.handle_client_dropped(Instant::now());
        self.0.wake.notify_one();
    }
}

impl Client {
    /// Starts a client with the [`NativeTransport`] and connects: shorthand for
    /// `Client::builder(config).spawn()`. Must be called inside a tokio runtime.
    ///
    /// ```
    /// use tether_native::{Client, Config, State};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let client = Client::connect(Config::builder("ws://127.0.0.1:9/ws").build()?)?;
    /// assert_eq!(client.state(), State::Connecting);
    /// # Ok(())
    /// # }
    /// ```
    pub fn connect(config: Config) -> Result<Client, BuildError> {
        Client::builder(config).spawn()
    }

    /// A builder, to add a token provider, another transport or a larger event buffer.
    ///
    /// ```
    /// use tether_native::{AuthConfig, Client, Config, NativeTransport, Token};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let config = Config::builder("wss://example.com/ws")
    ///     .auth(AuthConfig::default())
    ///     .build()?;
    /// let client = Client::builder(config)
    ///     .token_provider(|| async {
    ///         Ok::<_, String>(Token { value: "secret".into(), expires_at: None })
    ///     })
    ///     .transport(NativeTransport::new().read_buffer_size(8 * 1024))
    ///     .event_buffer(1024)
    ///     .spawn()?;
    /// # drop(client);
    /// # Ok(())
    /// # }
    /// ```
    pub fn builder(config: Config) -> ClientBuilder {
        ClientBuilder {
            transport: NativeTransport::for_config(&config),
            config,
            tokens: None,
            event_buffer: DEFAULT_EVENT_BUFFER,
            resume: None,
        }
    }

    /// Sends a message: written at once when connected, queued otherwise (flushed in
    /// order on connect). Never waits; the core's answer comes back at once.
    ///
    /// ```no_run
    /// # fn run(client: tether_native::Client) {
    /// match client.send("hello") {
    ///     Ok(id) => println!("message {id:?} is on its way"),
    ///     Err(e) => println!("refused: {e}"), // queue full, too large, stopped
    /// }
    /// # }
    /// ```
    pub fn send(&self, payload: impl Into<Payload>) -> Result<MessageId, SendError> {
        let mut core = self.shared.lock();
        let id = core
            .dispatch
            .connection_mut()
            .send(Instant::now(), payload)?;
        self.shared.kick(core);
        Ok(id)
    }

    /// Sends a message, waiting for room in the outbound queue instead of failing with
    /// [`SendError::QueueFull`] (room comes as messages are acknowledged, written or
    /// dropped). Fails at once with the core's other refusals: too large (or larger than
    /// the whole queue), stopped, closing. A client whose task is gone (its runtime shut
    /// down) has nothing to make room: `QueueFull` then, as from [`Client::send`].
    ///
    /// ```no_run
    /// # async fn run(client: tether_native::Client) -> Result<(), tether_native::SendError> {
    /// for n in 0..100_000 {
    ///     client.send_wait(format!("tick {n}")).await?; // paced by the server's acks
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub async fn send_wait(&self, payload: impl Into<Payload>) -> Result<MessageId, SendError> {
        let payload = payload.into();
        loop {
            let room = self.shared.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            {
                let mut core = self.shared.lock();
                let now = Instant::now();
                // With the task gone (its runtime shut down) nothing will make room: the
                // send is tried as `send` tries it (a full queue refuses it).
                if core.dispatch.connection_mut().has_room_for(payload.len()) || !core.running {
                    let id = core.dispatch.connection_mut().send(now, payload)?;
                    self.shared.kick(core);
                    return Ok(id);
                }
            }
            room.await;
        }
    }

    /// Waits until every message sent so far is acknowledged by the server (protocol
    /// mode) or written to the socket (plain mode). Fails with
    /// [`DeliveryError::Dropped`] if one of them was dropped, with
    /// [`DeliveryError::Stopped`] if the connection stops with an error first.
    ///
    /// Acknowledgements travel behind the messages the server sent: while reading is
    /// paused because the application is behind on its events (`reading_paused` in
    /// [`Metrics`]), they wait too, and so does `flush`. Read events while flushing (from
    /// another task, or with `select!`), or a flush can wait as long as the reader does.
    ///
    /// ```no_run
    /// # async fn run(client: tether_native::Client) {
    /// client.send("last words").unwrap();
    /// if let Err(e) = client.flush().await {
    ///     println!("not everything arrived: {e}");
    /// }
    /// # }
    /// ```
    pub async fn flush(&self) -> Result<(), DeliveryError> {
        let rx = {
            let mut core = self.shared.lock();
            let (tx, rx) = oneshot::channel();
            if let Some(done) = core.dispatch.flush(tx) {
                answer(done);
            } else {
                self.shared.kick(core);
            }
            rx
        };
        rx.await.unwrap_or(Err(DeliveryError::ClientGone))
    }

    /// Sends a message and waits until the server acknowledges it (protocol mode).
    ///
    /// Fails with the core's refusal, when the message is dropped (queue overflow or age,
    /// a user close), or when the connection stops with an error first. In plain mode
    /// nothing is ever acknowledged: [`DeliveryError::Unconfirmable`] at once.
    ///
    /// ```no_run
    /// # async fn run(client: tether_native::Client) {
    /// match client.send_confirmed("order #42").await {
    ///     Ok(id) => println!("the server has {id:?}"),
    ///     Err(e) => println!("not delivered: {e}"),
    /// }
    /// # }
    /// ```
    pub async fn send_confirmed(
        &self,
        payload: impl Into<Payload>,
    ) -> Result<MessageId, DeliveryError> {
        let outcome = self.send_watched(payload.into())?;
        outcome.await.unwrap_or(Err(DeliveryError::ClientGone))
    }

    /// `send`, with a waiter for the message's fate.
    fn send_watched(
        &self,
        payload: Payload,
    ) -> Result<oneshot::Receiver<Result<MessageId, DeliveryError>>, DeliveryError> {
        let mut core = self.shared.lock();
        let (tx, rx) = oneshot::channel();
        match core.dispatch.send_confirmed(Instant::now(), payload, tx) {
            Ok(_) => self.shared.kick(core),
            Err(driver::Completion::Sent { result: Err(e), .. }) => return Err(e),
            Err(done) => answer(done),
        }
        Ok(rx)
    }

    /// Every event from now on (the first call since the client was made gets every event
    /// since then). See [`Events`]. Until this is first called, the client keeps every
    /// event for it; an application that never reads events should call
    /// `drop(client.events())` once, or reading from the server pauses once
    /// `max_unread_bytes` of messages wait unread.
    ///
    /// ```no_run
    /// use futures_util::StreamExt; // or tokio_stream::StreamExt
    /// use tether_native::Event;
    ///
    /// # async fn run(client: tether_native::Client) {
    /// let mut events = client.events();
    /// while let Some(event) = events.next().await {
    ///     match event {
    ///         Event::Message(payload) => println!("message: {payload:?}"),
    ///         Event::StateChanged { to, .. } => println!("now {to}"),
    ///         _ => {}
    ///     }
    /// }
    /// # }
    /// ```
    #[must_use]
    pub fn events(&self) -> Events {
        let first = self
            .shared
            .first_events
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        first.unwrap_or_else(|| self.shared.events.subscribe())
    }

    /// The current state.
    ///
    /// ```no_run
    /// # fn run(client: tether_native::Client) {
    /// if client.state() == tether_native::State::Connected { /* ... */ }
    /// # }
    /// ```
    #[must_use]
    pub fn state(&self) -> State {
        *self.shared.state.borrow()
    }

    /// The state, as a watch: read it now or wait for a change (the browser's
    /// counterpart is a listener, `on_event`).
    ///
    /// ```no_run
    /// use tether_native::State;
    ///
    /// # async fn run(client: tether_native::Client) {
    /// let mut state = client.state_watch();
    /// state.wait_for(|s| *s == State::Connected).await.ok();
    /// # }
    /// ```
    #[must_use]
    pub fn state_watch(&self) -> watch::Receiver<State> {
        self.shared.state.subscribe()
    }

    /// The reported quality level, once measured.
    ///
    /// ```no_run
    /// # fn run(client: tether_native::Client) {
    /// let level = client.quality().map_or("unknown", |q| q.as_str());
    /// # }
    /// ```
    #[must_use]
    pub fn quality(&self) -> Option<Quality> {
        self.shared.lock().dispatch.connection().quality()
    }

    /// The stable id this client presents to a Tether server (for logs and support).
    ///
    /// ```no_run
    /// # fn run(client: tether_native::Client) {
    /// println!("client {:x}", client.client_id());
    /// # }
    /// ```
    #[must_use]
    pub fn client_id(&self) -> u64 {
        self.shared.lock().dispatch.connection().client_id()
    }

    /// The protocol session as another client can take it over
    /// ([`ClientBuilder::resume`]), once the server welcomed this one; see
    /// [`Connection::handoff`](tether_core::Connection::handoff). It holds the session
    /// secret: keep it within the process or a channel as private. Close this client at
    /// once afterwards ([`Client::close_now`]): one that lingers to deliver what it holds
    /// takes the session back from the next.
    ///
    /// ```no_run
    /// # fn run(client: tether_native::Client) {
    /// let session = client.handoff(); // None before the first Welcome
    /// # }
    /// ```
    #[must_use]
    pub fn handoff(&self) -> Option<SessionHandoff> {
        self.shared.lock().dispatch.connection().handoff()
    }

    /// A snapshot of every figure: state, attempts, RTT, quality, counts, queue.
    ///
    /// ```no_run
    /// # fn run(client: tether_native::Client) {
    /// let m = client.metrics();
    /// println!("{} messages out, rtt {:?}, quality {:?}", m.messages_out, m.rtt_mean, m.quality);
    /// # }
    /// ```
    #[must_use]
    pub fn metrics(&self) -> Metrics {
        self.shared
            .lock()
            .dispatch
            .connection()
            .metrics(Instant::now())
    }

    /// Connect now: restarts after `Error` or `Closed`, or ends a backoff wait early.
    ///
    /// ```no_run
    /// # fn run(client: tether_native::Client) {
    /// client.reconnect();
    /// # }
    /// ```
    pub fn reconnect(&self) {
        let mut core = self.shared.lock();
        core.dispatch.connection_mut().reconnect(Instant::now());
        self.shared.kick(core);
    }

    /// Tell the core something the platform knows (the network is back, the machine
    /// resumed from sleep). See [`Hint`].
    ///
    /// ```no_run
    /// use tether_native::Hint;
    /// # fn run(client: tether_native::Client) {
    /// client.hint(Hint::Resumed); // check the socket's liveness now
    /// # }
    /// ```
    pub fn hint(&self, hint: Hint) {
        let mut core = self.shared.lock();
        core.dispatch
            .connection_mut()
            .handle_hint(Instant::now(), hint);
        self.shared.kick(core);
    }

    /// Closes with `code` and `reason` once what was sent before is delivered, and
    /// resolves once the socket is closed. The client keeps (re)connecting and flushing
    /// for up to `close_linger` (default 5 s) until every message is acknowledged
    /// (protocol mode) or written (plain mode); what is left then is reported `Dropped`.
    /// New sends are refused meanwhile ([`SendError::Closing`]). See
    /// [`Client::close_now`] to close at once.
    ///
    /// ```no_run
    /// # async fn run(client: tether_native::Client) {
    /// client.send("goodbye").unwrap();
    /// client.close(1000, "bye").await; // "goodbye" was delivered, or reported Dropped
    /// # }
    /// ```
    pub async fn close(&self, code: u16, reason: &str) {
        self.close_with(code, reason, false).await;
    }

    /// Closes with `code` and `reason` at once, and resolves once the socket is closed:
    /// messages not yet delivered are reported `Dropped`.
    ///
    /// ```no_run
    /// # async fn run(client: tether_native::Client) {
    /// client.close_now(1000, "bye").await;
    /// # }
    /// ```
    pub async fn close_now(&self, code: u16, reason: &str) {
        self.close_with(code, reason, true).await;
    }

    async fn close_with(&self, code: u16, reason: &str, now: bool) {
        let (tx, done) = oneshot::channel();
        {
            let mut core = self.shared.lock();
            core.dispatch.close(Instant::now(), code, reason, now, tx);
            self.shared.kick(core);
        }
        // An error means the task is gone, and with it every socket.
        let _ = done.await;
    }
}

/// Builds a [`Client`]; from [`Client::builder`].
#[must_use]
pub struct ClientBuilder<T = NativeTransport> {
    config: Config,
    transport: T,
    tokens: Option<Arc<dyn TokenProvider>>,
    event_buffer: usize,
    resume: Option<SessionHandoff>,
}

impl<T> std::fmt::Debug for ClientBuilder<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("config", &self.config)
            .field("token_provider", &self.tokens.is_some())
            .field("event_buffer", &self.event_buffer)
            .field("resume", &self.resume.is_some())
            .finish_non_exhaustive()
    }
}

impl<T> ClientBuilder<T> {
    /// The async token provider, asked before each attempt when `config.auth` is set.
    pub fn token_provider(mut self, provider: impl TokenProvider) -> Self {
        self.tokens = Some(Arc::new(provider));
        self
    }

    /// Another transport: a [`NativeTransport`] with other settings, or a test double.
    pub fn transport<U>(self, transport: U) -> ClientBuilder<U> {
        ClientBuilder {
            config: self.config,
            transport,
            tokens: self.tokens,
            event_buffer: self.event_buffer,
            resume: self.resume,
        }
    }

    /// Takes over the session another client handed off ([`Client::handoff`]) instead of
    /// starting a new one: see [`Connection::resume`](tether_core::Connection::resume).
    /// A handoff that cannot be taken over is [`BuildError::Handoff`] at
    /// [`spawn`](Self::spawn).
    pub fn resume(mut self, handoff: SessionHandoff) -> Self {
        self.resume = Some(handoff);
        self
    }

    /// How many events each [`Events`] reader may fall behind by before its status
    /// events (state, quality, attempt started, reconnect scheduled, fallback, token refreshed) are
    /// coalesced, latest wins (1 to 65 536; default [`DEFAULT_EVENT_BUFFER`]). Messages,
    /// deliveries and drops are never skipped: a reader that falls behind on messages
    /// pauses reading from the server instead (`Config::max_unread_bytes`). Nothing is
    /// allocated up front: a reader's queue grows as it falls behind, and gives the room
    /// back once it has caught up. The first reader's queue holds every event from the
    /// start until [`Client::events`] is called.
    pub fn event_buffer(mut self, events: usize) -> Self {
        self.event_buffer = events.clamp(1, 1 << 16);
        self
    }

    /// Starts the client's task on the current tokio runtime and connects.
    pub fn spawn(self) -> Result<Client, BuildError>
    where
        T: Transport + Send + Sync + 'static,
        T::Writer: Send + 'static,
        T::Reader: Send + 'static,
    {
        let runtime = Handle::try_current().map_err(|_| BuildError::NoRuntime)?;
        if self.config.auth.is_some() && self.tokens.is_none() {
            return Err(BuildError::NoTokenProvider);
        }
        tether_dispatch::transport::check_capabilities(&self.config, &self.transport)
            .map_err(BuildError::Unsupported)?;
        let now = Instant::now();
        // Each client its own id and jitter schedule, unless the config replays a seed.
        let mut conn = match self.resume {
            Some(handoff) => Connection::resume(self.config, now, os_entropy(), handoff)?,
            None => Connection::new(self.config, now, os_entropy())?,
        };
        conn.use_control_pings(self.transport.can_ping());
        let span = tracing::info_span!("tether", client = %format_args!("{:x}", conn.client_id()));
        conn.connect(now);

        let events = Readers::new(self.event_buffer);
        let first = events.subscribe();
        let (state, _) = watch::channel(conn.state());
        let transport = Arc::new(self.transport);
        let tokens = self.tokens;
        let start = move |shared: Arc<Shared>| {
            let task = driver::run(
                driver::Task::new(shared.clone()),
                transport.clone(),
                tokens.clone(),
            );
            let task = driver::supervised(shared, task);
            drop(runtime.spawn(task.instrument(span.clone())));
        };
        let shared = Arc::new(Shared {
            core: Mutex::new(Core {
                dispatch: NativeDispatcher::new(conn, now),
                running: true,
            }),
            wake: Notify::new(),
            room: Notify::new(),
            events,
            first_events: Mutex::new(Some(first)),
            state,
            start: Box::new(start),
        });
        (shared.start)(shared.clone());
        Ok(Client {
            _handle: Arc::new(HandleGuard(shared.clone())),
            shared,
        })
    }
}

/// 64 random bits from the standard library's per-process hash keys and the clock: no
/// dependency, and different for every client of every process.
/// 16 bytes from the operating system's random source for the client id and the jitter.
/// Should the OS refuse (it does not on any supported platform), the standard library's
/// per-process random hash keys, a counter and the time still make every client differ.
fn os_entropy() -> Entropy {
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        use std::hash::{BuildHasher, Hasher};
        use std::sync::atomic::{AtomicU64, Ordering};
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        for half in bytes.chunks_mut(8) {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
            if let Ok(t) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
                h.write_u128(t.as_nanos());
            }
            half.copy_from_slice(&h.finish().to_le_bytes());
        }
    }
    Entropy::from_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tether_core::{Event, FallbackConfig, TerminalReason};
    use tether_dispatch::transport::MissingCapability;

    /// TLS of some kind is in this build without the application's help.
    const DEFAULT_TLS: bool = cfg!(any(
        feature = "rustls-webpki-roots",
        feature = "rustls-native-roots",
        feature = "native-tls"
    ));

    fn fallback_config() -> Config {
        Config::builder("ws://127.0.0.1:9/ws")
            .protocol()
            .fallback(FallbackConfig::new("http://127.0.0.1:9/poll"))
            .build()
            .unwrap()
    }

    /// A fallback is refused when it is made if the build has no polling, and accepted
    /// with it: never a client that fails every poll later.
    #[tokio::test]
    async fn a_fallback_needs_the_polling_feature() {
        let made = Client::connect(fallback_config());
        if cfg!(feature = "polling") {
            let client = made.expect("polling is in this build");
            client.close_now(1000, "done").await;
        } else {
            let err = made.expect_err("no polling in this build");
            assert_eq!(err, BuildError::Unsupported(MissingCapability::Polling));
            assert!(err.to_string().contains("`polling` feature"), "{err}");
        }
    }

    /// A wss:// URL, or an https:// poll URL, is refused when it is made if the build has
    /// no TLS; a ws:// client is made in every build.
    #[tokio::test]
    async fn tls_urls_need_a_tls_feature() {
        let plain = Client::connect(Config::builder("ws://127.0.0.1:9/ws").build().unwrap());
        plain
            .expect("ws:// needs nothing")
            .close_now(1000, "done")
            .await;
        let secure = Config::builder("wss://127.0.0.1:9/ws").build().unwrap();
        match Client::connect(secure) {
            Ok(client) if DEFAULT_TLS => client.close_now(1000, "done").await,
            Err(e) if !DEFAULT_TLS => {
                assert_eq!(e, BuildError::Unsupported(MissingCapability::Tls));
            }
            other => panic!("TLS in this build: {DEFAULT_TLS}, got {other:?}"),
        }
        if cfg!(feature = "polling") {
            let https_poll = Config::builder("ws://127.0.0.1:9/ws")
                .protocol()
                .fallback(FallbackConfig::new("https://127.0.0.1:9/poll"))
                .build()
                .unwrap();
            let made = Client::connect(https_poll);
            assert_eq!(made.is_ok(), DEFAULT_TLS, "{made:?}");
            if let Ok(client) = made {
                client.close_now(1000, "done").await;
            }
        }
    }

    /// With rustls and no roots feature, the application's own rustls configuration makes
    /// wss:// possible.
    #[cfg(feature = "rustls")]
    #[tokio::test]
    async fn an_applications_rustls_config_brings_tls() {
        let roots = rustls::RootCertStore::empty();
        let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let config = Config::builder("wss://127.0.0.1:9/ws").build().unwrap();
        let transport = NativeTransport::for_config(&config).tls_config(Arc::new(tls));
        let client = Client::builder(config)
            .transport(transport)
            .spawn()
            .expect("TLS from the application");
        client.close_now(1000, "done").await;
    }

    /// A `send_wait` waiting for room when the task dies is told (refused: stopped), as
    /// `send` is: the dead task drains nothing more, so no drain's `poll_room` can wake it.
    #[tokio::test]
    async fn a_send_wait_waiting_when_the_task_dies_is_refused() {
        // Takes the connection and never answers the upgrade: the attempt stays under way.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let config = Config::builder(format!("ws://{}/ws", listener.local_addr().unwrap()))
            .connect_timeout(std::time::Duration::from_secs(60))
            .queue(tether_core::QueueConfig {
                max_messages: 1,
                ..Default::default()
            })
            .build()
            .unwrap();
        let client = Client::connect(config).unwrap();
        let _held = listener.accept().await.unwrap();
        client.send("fills the queue").unwrap();
        let mut waiting = Box::pin(client.send_wait("waits"));
        tokio::select! {
            biased;
            r = &mut waiting => panic!("no room yet, and it did not wait: {r:?}"),
            () = std::future::ready(()) => {}
        }
        driver::supervised(client.shared.clone(), async { panic!("boom") }).await;
        // Polled before the real task may run again (this runtime has one thread, and
        // nothing yielded): only the failure itself can have told it.
        let refused = tokio::select! {
            biased;
            r = &mut waiting => r,
            () = std::future::ready(()) => panic!("the waiting send was not told"),
        };
        assert_eq!(refused, Err(SendError::Stopped(State::Error)));
    }

    /// A client whose task dies (a bug: here a panic injected in its place) stops in
    /// `Error` with the reason, its readers and waiters hear of it, and every later call
    /// fails or does nothing, rather than a client that hangs while `send` says `Ok`.
    #[tokio::test]
    async fn a_task_that_panics_leaves_the_client_in_error_and_every_call_fails() {
        // Port 9 on loopback: nothing listens, the client keeps retrying.
        let config = Config::builder("ws://127.0.0.1:9/ws")
            .protocol()
            .build()
            .unwrap();
        let client = Client::connect(config).unwrap();
        let mut events = client.events();
        let waiting = client.send_watched("queued".into()).unwrap();
        driver::supervised(client.shared.clone(), async { panic!("boom") }).await;
        assert_eq!(client.state(), State::Error);
        assert!(waiting.await.unwrap().is_err(), "the waiter hears of it");
        assert_eq!(client.send("later"), Err(SendError::Stopped(State::Error)));
        client.reconnect();
        assert_eq!(client.metrics().state, State::Error, "nothing restarts it");
        let stopped = tokio::time::timeout(std::time::Duration::from_secs(10), async {
            loop {
                match events.recv().await {
                    Some(Event::Stopped(reason)) => return reason,
                    Some(_) => {}
                    None => panic!("the events ended without Stopped"),
                }
            }
        })
        .await
        .expect("Stopped within 10 s");
        assert_eq!(stopped, TerminalReason::DriverFailed("boom".into()));
        tokio::time::timeout(std::time::Duration::from_secs(10), client.close(1000, "x"))
            .await
            .expect("close returns");
    }
}
