//! The reference server's shared state: an async shell around the sans-IO
//! [`Endpoint`] of tether-core.
//!
//! Every rule (sessions, attach, stale and replace, polling transports, rooms, the hold
//! policy, budgets) is the endpoint's; the hub feeds it what the sockets and requests
//! say, under one lock, and carries out what it outputs: frames queued on a socket's
//! channel, close requests, wake-ups of held poll requests, metrics, logs and taps.
//!
//! One [`Hub`] can outlive the servers that use it: kill a server and start a new one
//! with the same `Arc<Hub>` and every session is still there ("restart keeping state").

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tether_core::endpoint::{
    ConnId, Endpoint, EndpointConfig, FanOut, Greeting, HelloError, Output, Peer, PollError,
    PollRequest, ReceiveError, Reservation, SessionImage, SessionKey, SessionStore as _,
    TokenRefused,
};
use tether_core::protocol::{Envelope, SessionSecret};
use tether_core::Payload;
use tokio::sync::Notify;
use tracing::{debug, info, warn};

use crate::config::ServerConfig;
use crate::metrics::{ConnectionInfo, Metrics, MetricsSnapshot, Outcome};
use crate::outbound::{OutQueue, Outbound, SocketLink};
use crate::store::{Batch, Deferred, RedisStore, StoreError, TrackedStore};
use crate::token::{unix_now, Claims};

/// Which route a connection came through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Route {
    /// `GET /ws`, the Tether protocol.
    Ws,
    /// `GET /echo`, plain echo.
    Echo,
    /// `POST /poll`.
    Poll,
}

impl Route {
    fn path(self) -> &'static str {
        match self {
            Route::Ws => "/ws",
            Route::Echo => "/echo",
            Route::Poll => "/poll",
        }
    }

    fn transport(self) -> &'static str {
        match self {
            Route::Ws | Route::Echo => "ws",
            Route::Poll => "poll",
        }
    }
}

/// Who is connecting.
#[derive(Clone, Debug)]
pub(crate) struct Principal {
    /// The user: from the token, or `dev-temp-<id>` for an anonymous dev-mode client.
    pub(crate) user: String,
    /// The token's claims; `None` for an anonymous client.
    pub(crate) claims: Option<Claims>,
}

impl Principal {
    /// Who the endpoint sees.
    pub(crate) fn peer(&self) -> Peer {
        if self.claims.is_some() {
            Peer::User(self.user.clone())
        } else {
            Peer::Anonymous
        }
    }
}

/// Per-connection counters, shared with the connection's tasks.
#[derive(Debug, Default)]
pub(crate) struct ConnStats {
    pub(crate) messages_in: AtomicU64,
    pub(crate) messages_out: AtomicU64,
    /// Last probe round trip in microseconds; 0 = unknown.
    pub(crate) latency_us: AtomicU64,
}

/// Where the endpoint's outputs for one transport go.
#[derive(Debug)]
enum Io {
    Socket(SocketLink),
    /// Wakes a held `op=recv`.
    Poll(Arc<Notify>),
}

/// What the shell keeps of one transport besides the endpoint's view of it.
#[derive(Debug)]
struct Conn {
    /// For the logs and metrics (`dev-temp-…` for anonymous clients).
    user: String,
    /// Has a token: takes part in one connection per user.
    authenticated: bool,
    route: Route,
    opened: Instant,
    connected_at_ms: u64,
    stats: Arc<ConnStats>,
    io: Io,
}

/// What the hub holds in memory, in bytes: every bound of [`ServerConfig`] is checked
/// against these numbers. See [`Hub::memory`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MemoryUsage {
    /// Sessions kept.
    pub sessions: usize,
    /// What the sessions count against [`ServerConfig::resume_budget_bytes`]: their
    /// buffered payloads plus a fixed cost per session.
    pub resume_bytes: usize,
    /// Bytes queued for every WebSocket and not yet written (each socket bounded by
    /// [`ServerConfig::max_queued_bytes`]).
    pub outbound_bytes: usize,
    /// Bytes waiting for polling transports' `op=recv` (each bounded by
    /// [`ServerConfig::max_queued_bytes`]).
    pub poll_pending_bytes: usize,
    /// Sessions dropped whole since the hub was created, to keep the resume budget or
    /// the sessions-per-user limit (their clients get a reset).
    pub sessions_dropped: u64,
}

#[derive(Debug)]
struct State {
    endpoint: Endpoint<TrackedStore>,
    conns: HashMap<ConnId, Conn>,
    /// With a Redis store: what waits for the state behind it to be written.
    deferred: Vec<Deferred>,
    /// With a Redis store: batches handed to its writer.
    generation: u64,
    /// With a Redis store: each user's current transport here and its claim's order
    /// among the user's claims on every instance.
    claims: HashMap<String, (ConnId, u64)>,
    /// With a Redis store: the newest claim (order, client id) another instance made
    /// for a user connected here.
    remote_claims: HashMap<String, (u64, u64)>,
    /// Listeners to every delivered client message ([`Hub::tap`]).
    taps: Vec<tokio::sync::mpsc::UnboundedSender<Delivered>>,
    /// With a Redis store: the newest fan-outs taken from the log's subscription, in
    /// log order (at most [`RECENT_FANOUTS`] and [`RECENT_FANOUT_BYTES`]), to hand a
    /// session being loaded what this instance took between its reading of the log and
    /// its import.
    recent: std::collections::VecDeque<((u64, u64), crate::store::Missed)>,
    recent_bytes: usize,
}

/// Fan-outs [`State::recent`] keeps at most.
const RECENT_FANOUTS: usize = 4096;
/// Message bytes [`State::recent`] keeps at most (the newest is kept whatever its size).
const RECENT_FANOUT_BYTES: usize = 8 << 20;

/// One client message the server delivered to its application, in delivery order:
/// exactly once per message the client sent, unless the session was lost.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivered {
    /// Whose.
    pub user: String,
    /// From which client instance.
    pub client_id: u64,
    /// The message.
    pub payload: Payload,
}

/// Shared state of the reference server: the sans-IO [`Endpoint`] that holds every
/// session and transport and decides every rule below, the channels to the sockets'
/// tasks, the metrics and the taps.
///
/// One hub can outlive the servers that use it: kill a server and start a new one with
/// the same `Arc<Hub>` and every session is still there ("restart keeping state").
///
/// ## Sessions and transports
///
/// A session is the [`ServerSession`](tether_core::protocol::ServerSession) of one client, keyed by (user, client id, secret):
/// the server draws the secret from the operating system's random source when it makes
/// the session, sends it in every Welcome, and finds the session only for a Hello or a
/// poll request that proves it (PROTOCOL.md 4.1). A Hello without it gets a fresh
/// session; a poll request without it gets 503. For anonymous dev-mode clients the user
/// part is one shared anonymous namespace (the secret still keeps their sessions apart),
/// so a dev client still resumes after a reconnect. A *transport* is one WebSocket or one polling
/// sequence (from a polling Hello until it is detached). A session is attached to at
/// most one transport, the newest (PROTOCOL.md 3.4): a Hello of the same client on a
/// newer transport detaches the older one (a WebSocket is closed with 1000, a polling
/// transport answers 503). A Hello or a poll request of a transport older than one the
/// session has seen (by its number, `attempt` or `t`) is stale: the client abandoned it
/// and its frames arrived late. It changes nothing: the WebSocket is closed with 1000,
/// the request answered with 410.
///
/// ## One connection per user
///
/// Each user has one current connection. When a transport of *another* client of the
/// same user attaches (its Hello on `/ws` or polling), the older connection is
/// **replaced**: a WebSocket is closed with 4409, a polling transport answers its next
/// request with 409. `/echo` sockets have no session and replace nothing. Each anonymous
/// dev-mode connection is its own `dev-temp-…` user, so anonymous clients never replace
/// each other.
///
/// ## Memory
///
/// Everything the hub holds is bounded in bytes (see [`Hub::memory`]): each session's
/// resume buffer by [`ServerConfig::resume_limits`], all of them together by
/// [`ServerConfig::resume_budget_bytes`] (the detached sessions of the user holding
/// the most are dropped first), each user's sessions by [`ServerConfig::max_sessions_per_user`], and each
/// transport's queue by [`ServerConfig::max_queued_bytes`]. A room message is copied to
/// each member within that member's bounds: a member that cannot keep up is closed
/// (1013) or loses its session (a reset it is told about), the server does not grow.
///
/// ## Application behaviour
///
/// A session without a room echoes: each message from the client comes back as a new
/// server message. A session in a room broadcasts each message to every session in the
/// room, the sender's included. Membership belongs to the session, so a member that is
/// reconnecting still gets the room's messages when it resumes.
///
/// ```
/// use std::sync::Arc;
/// use tether_server::Hub;
///
/// let hub = Arc::new(Hub::new());
/// assert_eq!(hub.sessions(), 0);
/// // Server messages for a user who is offline wait in the session's resume buffer.
/// assert_eq!(hub.send_to_user("alice", "hello"), 0); // alice has no session yet
/// ```
#[derive(Debug)]
pub struct Hub {
    state: Mutex<State>,
    pub(crate) metrics: Metrics,
    /// Bytes queued for every WebSocket.
    outbound: Arc<AtomicUsize>,
    /// Woken whenever a session may have made room (an Ack, a Hello, a session gone):
    /// [`Hub::send_to_user_wait`] looks again.
    room: Notify,
    /// Counts the changes [`Hub::changes`] tells about.
    changes: tokio::sync::watch::Sender<u64>,
    /// The shared store of several instances, if any (see [`Hub::with_redis`]).
    store: Option<Arc<RedisStore>>,
    /// This instance's id (metrics, health, the store's owner field).
    instance: Mutex<String>,
}

impl Default for Hub {
    fn default() -> Self {
        Hub::new()
    }
}

/// What one poll request produced.
#[derive(Debug)]
pub(crate) struct PollExchange {
    pub(crate) conn: ConnId,
    pub(crate) key: SessionKey,
    /// Frames for the response: Welcome and resent messages after a Hello, Pongs, Acks.
    pub(crate) frames: Vec<Payload>,
    pub(crate) notify: Arc<Notify>,
}

/// The endpoint's bounds from a server's configuration.
fn endpoint_config(config: &ServerConfig) -> EndpointConfig {
    EndpointConfig {
        resume_limits: config.resume_limits,
        resume_budget_bytes: config.resume_budget_bytes,
        max_sessions_per_user: config.max_sessions_per_user,
        max_poll_frames: config.max_queued_frames,
        max_poll_bytes: config.max_queued_bytes,
        echo: true,
    }
}

impl Hub {
    /// An empty hub.
    #[must_use]
    pub fn new() -> Self {
        Hub::with_parts(TrackedStore::default(), None, default_instance())
    }

    fn with_parts(store: TrackedStore, redis: Option<Arc<RedisStore>>, instance: String) -> Self {
        let endpoint = Endpoint::with_store(
            endpoint_config(&ServerConfig::default()),
            store,
            Box::new(|buf: &mut [u8]| crate::rand::fill(buf)),
        );
        Hub {
            state: Mutex::new(State {
                endpoint,
                conns: HashMap::new(),
                deferred: Vec::new(),
                generation: 0,
                claims: HashMap::new(),
                remote_claims: HashMap::new(),
                taps: Vec::new(),
                recent: std::collections::VecDeque::new(),
                recent_bytes: 0,
            }),
            metrics: Metrics::new(),
            outbound: Arc::new(AtomicUsize::new(0)),
            room: Notify::new(),
            changes: tokio::sync::watch::Sender::new(0),
            store: redis,
            instance: Mutex::new(instance),
        }
    }

    /// A hub whose sessions are written through to Redis at `url`
    /// (`redis://127.0.0.1:6379`), so that a client can resume on any instance with
    /// the same Redis: see the [`store`](crate::store) module for what is stored and
    /// when. `instance` names this instance (in the store, the health check and the
    /// metrics; `None`: a random id). Needs a tokio runtime; fails if Redis does not
    /// answer now.
    pub async fn with_redis(url: &str, instance: Option<&str>) -> Result<Arc<Hub>, StoreError> {
        let instance = instance.map_or_else(default_instance, str::to_owned);
        let (store, rx) = RedisStore::connect(url, instance.clone()).await?;
        let hub = Arc::new(Hub::with_parts(
            TrackedStore::tracking(),
            Some(Arc::clone(&store)),
            instance,
        ));
        let pubsub = store
            .subscribe()
            .await
            .map_err(|e| StoreError::new(e.to_string()))?;
        tokio::spawn(crate::store::subscriber(
            Arc::downgrade(&hub),
            Arc::clone(&store),
            pubsub,
        ));
        // Fan-outs are tagged per instance boot: a session that got one here and then
        // moved does not get it again from another instance's copy.
        hub.lock()
            .endpoint
            .set_fanout_origin(crate::rand::u64().max(1));
        // Sessions made here have had nothing of the fan-out log before its end now
        // (what comes after arrives through the subscription taken above).
        let end = store
            .log_end()
            .await
            .ok_or_else(|| StoreError::new("the fan-out log did not answer".to_owned()))?;
        hub.lock().endpoint.fanout_seen(end);
        tokio::spawn(crate::store::writer(Arc::downgrade(&hub), store, rx));
        Ok(hub)
    }

    /// This instance's id.
    #[must_use]
    pub fn instance(&self) -> String {
        self.instance
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The shared store's state: `None` without one (memory only), else whether it
    /// answered last time it was asked.
    #[must_use]
    pub fn store_reachable(&self) -> Option<bool> {
        self.store.as_ref().map(|s| s.reachable())
    }

    /// Runs `f` on the endpoint under the lock (the store's writer reads sessions).
    pub(crate) fn with_endpoint<R>(&self, f: impl FnOnce(&Endpoint<TrackedStore>) -> R) -> R {
        f(&self.lock().endpoint)
    }

    /// Every session held here (the store's writer writes them all again when Redis
    /// lost its data).
    pub(crate) fn session_keys(&self) -> Vec<SessionKey> {
        self.lock().endpoint.store_mut().keys()
    }

    /// The writer wrote (or gave up on) a round: sessions another instance took over
    /// are forgotten here (their sockets closed, what was held back for them dropped),
    /// and the rest is released in order.
    pub(crate) fn release(&self, taken_over: &[SessionKey], deferred: Vec<Deferred>) {
        let now = Instant::now();
        let mut st = self.lock();
        let mut gone: Vec<ConnId> = Vec::new();
        for key in taken_over {
            if let Some(conn) = st.endpoint.session(key).and_then(|r| r.attached()) {
                gone.push(conn);
            }
            st.endpoint.evict_session(now, key);
        }
        for d in deferred {
            match d {
                Deferred::Frame { conn, frame, link } => {
                    if gone.contains(&conn) || !st.conns.contains_key(&conn) {
                        link.queue.taken(&frame);
                    } else {
                        link.push_reserved(frame);
                    }
                }
                Deferred::Close { conn, code, reason } => {
                    if let Some(Io::Socket(link)) = st.conns.get(&conn).map(|c| &c.io) {
                        link.close(code, reason);
                    }
                }
                // The writer sends these to the other instances itself.
                Deferred::Publish { .. } | Deferred::Claim { .. } => {}
                Deferred::Tap { key, delivered } => {
                    // Taken over before its state was written: the next instance
                    // delivers it (the client sends it again there).
                    if !taken_over.contains(&key) {
                        st.taps.retain(|tap| tap.send(delivered.clone()).is_ok());
                    }
                }
            }
        }
        if !taken_over.is_empty() {
            self.apply(&mut st, now);
        }
    }

    /// Before a Hello that proves `secret` is decided: with a Redis store, loads the
    /// session from it if this instance does not have it, or has an older copy (the
    /// client moved on elsewhere since). The endpoint's rules then judge the Hello as
    /// usual. Without a store, or with Redis unreachable, nothing happens (the Hello is
    /// judged on what this instance has: a fresh session if nothing).
    pub(crate) async fn load(
        &self,
        peer: &Peer,
        client_id: u64,
        attempt: u64,
        secret: Option<SessionSecret>,
    ) {
        let (Some(store), Some(secret)) = (&self.store, secret) else {
            return;
        };

        let key = SessionKey {
            user: match peer {
                Peer::User(u) => u.clone(),
                Peer::Anonymous => String::new(),
            },
            client_id,
            secret,
        };
        let local = self
            .lock()
            .endpoint
            .session(&key)
            .map(|r| r.protocol().latest_attempt());
        let limits = self.lock().endpoint.config().resume_limits;
        let max_len = SessionImage::max_len(limits);
        let Some((attempt, bytes)) = store.load(&key, attempt, local, max_len).await else {
            return;
        };
        let image = match SessionImage::decode(&bytes, limits) {
            Ok(image) => image,
            Err(e) => {
                warn!(error = %e, "session store: unreadable session ignored");
                return;
            }
        };
        // What the session missed while no instance held it: the fan-out log after its
        // mark, read until this instance's own mark is covered (past it, the
        // subscription here brings the rest). Bounded: a few rounds at most. Only the
        // entries for it leave Redis (picked out there), within its resume limits
        // (past them it could not hold them all: a reset), and a few loads read the
        // log at a time.
        let room = image.room.clone();
        let user = key.user.clone();
        let keep = move |to: &FanOut| match to {
            FanOut::Room(r) => room.as_deref() == Some(r.as_str()),
            FanOut::User(u) => !u.is_empty() && *u == user,
        };
        let room = image.room.clone();
        let _reading = store.log_readers.acquire().await;
        let mut missed = Vec::new();
        let mut upto = image.mark;
        let mut gap = false;
        let mut image = Some(image);
        for round in 0..8 {
            if !gap {
                match read_log(store, upto, room.as_deref(), &key.user, limits, &mut missed).await {
                    Some((end, trimmed)) => {
                        gap |= trimmed;
                        upto = end;
                    }
                    None => {
                        warn!("session store: the fan-out log did not answer; the session gets a reset");
                        gap = true;
                    }
                }
            }
            let now = Instant::now();
            let mut st = self.lock();
            if st.endpoint.fanout_mark() > upto && !gap {
                // The subscription here went past what was read: what it took since is
                // in `recent` if that reaches back to what was read.
                if st.recent.front().is_some_and(|(m, _)| *m <= upto) {
                    let more: Vec<_> = st
                        .recent
                        .iter()
                        .filter(|(m, f)| *m > upto && keep(&f.0))
                        .map(|(_, f)| f.clone())
                        .collect();
                    missed.extend(more);
                    upto = st.endpoint.fanout_mark();
                } else if round < 7 {
                    // Read on.
                    continue;
                } else {
                    // The log moves faster than it is read: what lies between cannot
                    // be vouched for.
                    gap = true;
                }
            }
            let local = st
                .endpoint
                .session(&key)
                .map(|r| r.protocol().latest_attempt());
            if local.is_some_and(|a| a >= attempt) {
                return;
            }
            let replayed = missed.len();
            let Some(image) = image.take() else { return };
            st.endpoint.import_session_replaying(
                now,
                &key,
                image,
                std::mem::take(&mut missed),
                upto,
                gap,
            );
            debug!(client_id = %format_args!("{client_id:x}"), replayed, gap, "session loaded from the store");
            self.apply(&mut st, now);
            return;
        }
    }

    /// After this instance's subscription to the others broke and was taken again,
    /// before the new subscription's notices are read: what was published meanwhile.
    /// The fan-outs are read from the shared log after this instance's mark and handed
    /// on as their notices would have been (the new subscription's first ones repeat
    /// some: no session gets one twice); if the log was trimmed past the mark, the
    /// sessions they could reach get a reset ([`Endpoint::fanout_lost`]). Each user
    /// this instance holds the current transport of is checked against the newest
    /// claim in Redis: a newer one elsewhere replaces it as its notice would have.
    /// `false`: Redis did not answer; the caller subscribes again and retries, or, with
    /// `give_up`, this has counted what it could not read as lost (a reset for the
    /// sessions a fan-out could reach).
    ///
    /// [`Endpoint::fanout_lost`]: tether_core::endpoint::Endpoint::fanout_lost
    pub(crate) async fn catch_up(&self, store: &RedisStore, give_up: bool) -> bool {
        let _reading = store.log_readers.acquire().await;
        let mut upto = self.lock().endpoint.fanout_mark();
        let mut gap = false;
        let mut caught = 0;
        // Page by page, each handed on before the next is read.
        for page in 0.. {
            if page == crate::store::LOG_PAGES {
                gap = true;
                break;
            }
            let Some(read) = store.log_page(upto).await else {
                if give_up {
                    gap = true;
                    break;
                }
                return false;
            };
            gap |= read.gap;
            upto = read.upto;
            caught += read.entries.len();
            for (mark, (to, payload, origin, seq)) in read.entries {
                self.notice(crate::store::Notice::FanOut {
                    instance: String::new(),
                    to,
                    payload,
                    origin,
                    seq,
                    mark,
                });
            }
            if read.end {
                break;
            }
        }
        if gap {
            let now = Instant::now();
            let mut st = self.lock();
            let reset = st.endpoint.fanout_lost(now, upto);
            warn!(
                reset,
                "session store: fan-outs were trimmed off the shared log while this instance was cut off; its sessions they could reach get a reset"
            );
            self.apply(&mut st, now);
        }
        let mine: Vec<(String, u64)> = self
            .lock()
            .claims
            .iter()
            .map(|(user, (_, seq))| (user.clone(), *seq))
            .collect();
        let users: Vec<String> = mine.iter().map(|(u, _)| u.clone()).collect();
        let Some(latest) = store.latest_claims(&users).await else {
            return give_up;
        };
        let mut replaced = 0;
        for ((user, seq), newest) in mine.into_iter().zip(latest) {
            if let Some((theirs, client_id, instance)) = newest.filter(|(n, ..)| *n > seq) {
                replaced += 1;
                self.notice(crate::store::Notice::Claim {
                    instance,
                    seq: theirs,
                    client_id,
                    user,
                });
            }
        }
        info!(
            caught,
            gap, replaced, "session store: caught up after the subscription broke"
        );
        true
    }

    /// This instance's own fan-outs whose write to the shared log failed (Redis did
    /// not answer): handed to the sessions here, which otherwise get them when they
    /// come back through the log. The other instances do not get them.
    pub(crate) fn fan_out_here(&self, fanouts: Vec<crate::store::Missed>) {
        let now = Instant::now();
        let mut st = self.lock();
        for (to, payload, origin, seq) in fanouts {
            st.endpoint.receive_fanout(now, &to, &payload, origin, seq);
        }
        self.apply(&mut st, now);
        drop(st);
        self.room_may_have_changed();
    }

    /// A notice from another instance (Redis pub/sub).
    pub(crate) fn notice(&self, notice: crate::store::Notice) {
        let now = Instant::now();
        let me = self.store.as_ref().map(|s| s.owner.as_str());
        let mut st = self.lock();
        match notice {
            crate::store::Notice::FanOut {
                instance: _,
                to,
                payload,
                origin,
                seq,
                mark,
            } => {
                // Its own too: a session loaded here after this instance made it and
                // before the log held it gets it now (the endpoint decides).
                st.endpoint.receive_fanout(now, &to, &payload, origin, seq);
                // Every session here has had what is for it up to there.
                st.endpoint.fanout_seen(mark);
                st.recent_bytes += payload.len();
                st.recent.push_back((mark, (to, payload, origin, seq)));
                while st.recent.len() > RECENT_FANOUTS
                    || (st.recent.len() > 1 && st.recent_bytes > RECENT_FANOUT_BYTES)
                {
                    if let Some((_, (_, p, _, _))) = st.recent.pop_front() {
                        st.recent_bytes -= p.len();
                    }
                }
            }
            crate::store::Notice::Claim {
                instance,
                seq,
                client_id,
                user,
            } if Some(instance.as_str()) != me => {
                if !st.conns.values().any(|c| c.authenticated && c.user == user) {
                    return;
                }
                let newest = st
                    .remote_claims
                    .entry(user.clone())
                    .or_insert((seq, client_id));
                if seq >= newest.0 {
                    *newest = (seq, client_id);
                }
                // A claim here not yet ordered waits for its order ([`Hub::claimed`]).
                if st.claims.get(&user).is_some_and(|(_, mine)| *mine < seq) {
                    st.claims.remove(&user);
                    st.endpoint.claimed_elsewhere(now, &user, client_id);
                }
            }
            _ => return,
        }
        self.apply(&mut st, now);
        self.room_may_have_changed();
    }

    /// The claim of `user`'s transport `conn` here got its order `seq`: it stays the
    /// user's current one unless another instance made a newer claim meanwhile.
    pub(crate) fn claimed(&self, conn: ConnId, user: &str, seq: u64) {
        let now = Instant::now();
        let mut st = self.lock();
        if !st.conns.contains_key(&conn) {
            return;
        }
        match st.remote_claims.get(user).copied() {
            Some((theirs, client_id)) if theirs > seq => {
                st.endpoint.claimed_elsewhere(now, user, client_id);
                self.apply(&mut st, now);
            }
            _ => {
                st.claims.insert(user.to_owned(), (conn, seq));
            }
        }
    }

    /// Resolves once the state behind everything produced so far is in the store
    /// (at once without one, or when Redis did not answer within its timeout): a poll
    /// response waits for it before it leaves, and an application that must not lose
    /// what it handed to [`send_to_user`](Self::send_to_user) or
    /// [`broadcast`](Self::broadcast) if this instance dies right after awaits it.
    ///
    /// ```
    /// # use tether_server::Hub;
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let hub = Hub::new();
    /// hub.send_to_user("bob", "news");
    /// hub.persisted().await; // in memory: at once
    /// # });
    /// ```
    pub async fn persisted(&self) {
        let Some(store) = &self.store else { return };
        let generation = self.lock().generation;
        store.flushed(generation).await;
    }

    /// A receiver that sees a new value each time a connection opens or ends, or a
    /// client's message or acknowledgement is counted: a test or a health check waits
    /// on it for the metrics it expects instead of polling them. Mark the value seen
    /// before looking at the hub (so that no change is missed), and never look at the
    /// hub from inside `wait_for`'s closure (it holds the receiver's lock, which the hub
    /// needs to announce a change).
    ///
    /// ```
    /// # async fn run(hub: std::sync::Arc<tether_server::Hub>) {
    /// let mut changes = hub.changes();
    /// loop {
    ///     changes.borrow_and_update();
    ///     if hub.connections() == 0 {
    ///         break;
    ///     }
    ///     changes.changed().await.unwrap();
    /// }
    /// # }
    /// ```
    #[must_use]
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Takes the bounds of `config` (the server that starts with this hub calls it).
    pub(crate) fn configure(&self, config: &ServerConfig) {
        if let Some(store) = &self.store {
            store.set_ttl(config.session_ttl);
        } else {
            if let Some(id) = &config.instance_id {
                *self.instance.lock().unwrap_or_else(PoisonError::into_inner) = id.clone();
            }
            if config.store.is_some() {
                warn!(
                    "ServerConfig::store is set but this hub keeps its sessions in memory: \
                     make it with Hub::with_redis"
                );
            }
        }
        let now = Instant::now();
        let mut st = self.lock();
        st.endpoint.set_config(now, endpoint_config(config));
        self.apply(&mut st, now);
    }

    /// A new queue for a WebSocket's outbound frames, counted in the hub's total.
    pub(crate) fn out_queue(&self, config: &ServerConfig) -> Arc<OutQueue> {
        Arc::new(OutQueue::new(
            Arc::clone(&self.outbound),
            config.max_queued_frames,
            config.max_queued_bytes,
        ))
    }

    /// What the hub holds now, in bytes.
    ///
    /// ```
    /// let m = tether_server::Hub::new().memory();
    /// assert_eq!((m.sessions, m.resume_bytes, m.outbound_bytes), (0, 0, 0));
    /// ```
    #[must_use]
    pub fn memory(&self) -> MemoryUsage {
        let m = self.lock().endpoint.memory();
        MemoryUsage {
            sessions: m.sessions,
            resume_bytes: m.resume_bytes,
            outbound_bytes: self.outbound.load(Ordering::Relaxed),
            poll_pending_bytes: m.poll_pending_bytes,
            sessions_dropped: m.sessions_dropped,
        }
    }

    /// Every client message delivered from now on, as it is delivered (before it is
    /// echoed or broadcast). For tests and demos that count what arrived.
    ///
    /// ```
    /// let hub = tether_server::Hub::new();
    /// let mut delivered = hub.tap();
    /// assert!(delivered.try_recv().is_err()); // nothing yet
    /// ```
    pub fn tap(&self) -> tokio::sync::mpsc::UnboundedReceiver<Delivered> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        self.lock().taps.push(tx);
        rx
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every update below keeps the state consistent before anything that could
        // panic, so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Carries out what the endpoint decided, under the lock (so no frame queued later
    /// can overtake one queued here).
    fn apply(&self, st: &mut State, now: Instant) {
        self.apply_poll(st, now, None);
    }

    /// [`apply`](Self::apply) for a poll request by `asking`, whose Hello may open a
    /// polling transport.
    fn apply_poll(&self, st: &mut State, now: Instant, asking: Option<&Principal>) {
        // Told once what changed is counted (after the loop): a watcher woken by it
        // then finds it in the metrics.
        let mut changed = false;
        while let Some(out) = st.endpoint.poll_output() {
            changed |= matches!(
                out,
                Output::Opened { .. }
                    | Output::Ended { .. }
                    | Output::Acknowledged { .. }
                    | Output::Delivered { .. }
            );
            match out {
                Output::Send {
                    conn,
                    frame,
                    message,
                } if self.store.is_some() => {
                    if let Some(Io::Socket(link)) = st.conns.get(&conn).map(|c| &c.io) {
                        let frame = if message {
                            Outbound::Msg(frame)
                        } else {
                            Outbound::Control(frame)
                        };
                        if link.reserve(&frame) {
                            let link = link.clone();
                            st.deferred.push(Deferred::Frame { conn, frame, link });
                        }
                    }
                }
                Output::Close { conn, code, reason } if self.store.is_some() => {
                    debug!(conn = conn.0, code, reason, "closing");
                    st.deferred.push(Deferred::Close { conn, code, reason });
                }
                Output::Send {
                    conn,
                    frame,
                    message,
                } => {
                    if let Some(Io::Socket(link)) = st.conns.get(&conn).map(|c| &c.io) {
                        link.push(if message {
                            Outbound::Msg(frame)
                        } else {
                            Outbound::Control(frame)
                        });
                    }
                }
                Output::Close { conn, code, reason } => {
                    debug!(conn = conn.0, code, reason, "closing");
                    if let Some(Io::Socket(link)) = st.conns.get(&conn).map(|c| &c.io) {
                        link.close(code, reason);
                    }
                }
                Output::Wake { conn } => {
                    if let Some(Io::Poll(notify)) = st.conns.get(&conn).map(|c| &c.io) {
                        notify.notify_one();
                    }
                }
                Output::Opened { conn } => {
                    self.metrics.attempt();
                    let user = match asking {
                        Some(p) if p.claims.is_some() => p.user.clone(),
                        _ => crate::dev_user(),
                    };
                    info!(conn = conn.0, user = %user, endpoint = "/poll", "connection opened");
                    st.conns.insert(
                        conn,
                        Conn {
                            user,
                            authenticated: asking.is_some_and(|p| p.claims.is_some()),
                            route: Route::Poll,
                            opened: now,
                            connected_at_ms: unix_ms(),
                            stats: Arc::new(ConnStats::default()),
                            io: Io::Poll(Arc::new(Notify::new())),
                        },
                    );
                }
                Output::Acknowledged { conn, messages, .. } => {
                    // The one place server messages are counted: as the clients
                    // acknowledge them, each once (a resend or a replay is not a second
                    // message, and a message written to a socket that died is not one
                    // the client received).
                    if let Some(c) = st.conns.get(&conn) {
                        c.stats.messages_out.fetch_add(messages, Ordering::Relaxed);
                    }
                    self.metrics.messages(now, 0, messages);
                }
                Output::Delivered {
                    conn, key, payload, ..
                } => {
                    if let Some(c) = st.conns.get(&conn) {
                        c.stats.messages_in.fetch_add(1, Ordering::Relaxed);
                    }
                    self.metrics.messages(now, 1, 0);
                    if !st.taps.is_empty() {
                        let delivered = Delivered {
                            user: key.user.clone(),
                            client_id: key.client_id,
                            payload,
                        };
                        if self.store.is_some() {
                            st.deferred.push(Deferred::Tap { key, delivered });
                        } else {
                            st.taps.retain(|tap| tap.send(delivered.clone()).is_ok());
                        }
                    }
                }
                Output::Attached {
                    conn,
                    key,
                    session,
                    resumed,
                    resent,
                    ..
                } => {
                    if self.store.is_some() {
                        if let Some(c) = st.conns.get(&conn).filter(|c| c.authenticated) {
                            let user = c.user.clone();
                            st.deferred.push(Deferred::Claim {
                                conn,
                                user,
                                client_id: key.client_id,
                            });
                        }
                    }
                    let user = st.conns.get(&conn).map_or("", |c| c.user.as_str());
                    info!(
                        conn = conn.0,
                        user = %user,
                        client_id = %format_args!("{:x}", key.client_id),
                        session,
                        resumed,
                        resent,
                        "session attached"
                    );
                }
                Output::Replaced { conn, by } => {
                    let user = st.conns.get(&conn).map_or("", |c| c.user.as_str());
                    info!(conn = conn.0, by = by.0, user = %user, "connection replaced by a newer one of the same user");
                }
                Output::SessionDropped {
                    key,
                    attached,
                    unacked,
                    reason,
                } => {
                    warn!(
                        user = %key.user,
                        client_id = %format_args!("{:x}", key.client_id),
                        attached,
                        unacked,
                        reason,
                        "session dropped"
                    );
                }
                Output::SessionForgotten { key, unacked } => {
                    debug!(
                        client_id = %format_args!("{:x}", key.client_id),
                        unacked,
                        "session forgotten after being unused"
                    );
                }
                Output::Ended {
                    conn,
                    code,
                    reason,
                    established,
                } => {
                    let Some(c) = st.conns.remove(&conn) else {
                        continue;
                    };
                    if st.claims.get(&c.user).is_some_and(|(id, _)| *id == conn) {
                        st.claims.remove(&c.user);
                    }
                    if let Io::Poll(notify) = &c.io {
                        notify.notify_one();
                    }
                    let uptime = now.saturating_duration_since(c.opened);
                    let outcome = if established || c.route == Route::Echo {
                        Outcome::of_code(code)
                    } else {
                        Outcome::before_handshake(code)
                    };
                    self.metrics.ended(outcome, uptime);
                    info!(
                        conn = conn.0,
                        user = %c.user,
                        endpoint = c.route.path(),
                        code = code.map_or_else(|| "none".to_owned(), |c| c.to_string()),
                        reason,
                        duration_ms = u64::try_from(uptime.as_millis()).unwrap_or(u64::MAX),
                        messages_in = c.stats.messages_in.load(Ordering::Relaxed),
                        messages_out = c.stats.messages_out.load(Ordering::Relaxed),
                        "connection closed"
                    );
                }
                Output::FannedOut {
                    to,
                    payload,
                    from,
                    origin,
                    seq,
                } => st.deferred.push(Deferred::Publish {
                    key: from,
                    to,
                    payload,
                    origin,
                    seq,
                }),
                other => debug!(?other, "endpoint output"),
            }
        }
        if changed {
            self.changes.send_modify(|n| *n += 1);
        }
        if let Some(store) = &self.store {
            let (dirty, removed) = st.endpoint.store_mut().take_changes();
            if !dirty.is_empty() || !removed.is_empty() || !st.deferred.is_empty() {
                st.generation += 1;
                store.send(Batch {
                    generation: st.generation,
                    dirty,
                    removed,
                    deferred: std::mem::take(&mut st.deferred),
                });
            }
        }
    }

    /// Wakes [`send_to_user_wait`](Self::send_to_user_wait)ers to look again.
    fn room_may_have_changed(&self) {
        self.room.notify_waiters();
    }

    /// Sessions kept (attached or waiting for their client to come back).
    #[must_use]
    pub fn sessions(&self) -> usize {
        self.lock().endpoint.sessions()
    }

    /// Open connections (WebSockets and polling transports).
    #[must_use]
    pub fn connections(&self) -> usize {
        self.lock().conns.len()
    }

    /// Sends a server message to every session of `user` (not to anonymous clients);
    /// returns how many sessions got it. A session whose client is offline keeps it for
    /// resend (within its resume limits). With a Redis store ([`Hub::with_redis`]) the
    /// user's sessions held by the other instances get it too (pub/sub, after this
    /// instance's state is written); the count is this instance's alone.
    ///
    /// ```
    /// # use tether_server::Hub;
    /// let hub = Hub::new();
    /// assert_eq!(hub.send_to_user("bob", "news"), 0);
    /// ```
    pub fn send_to_user(&self, user: &str, payload: impl Into<Payload>) -> usize {
        let payload = payload.into();
        let now = Instant::now();
        let mut st = self.lock();
        let count = st.endpoint.send_to_user(now, user, &payload);
        self.apply(&mut st, now);
        count
    }

    /// Like [`send_to_user`](Self::send_to_user), but first waits until the session of
    /// each of `user`'s clients (its newest) has room for the message in its resume
    /// buffer, so that a producer faster than the client drops nothing: it waits for the
    /// client's acknowledgements instead (see [`ServerConfig::resume_limits`]). Once it
    /// found a session full, room for this message is kept in it as the client's Acks
    /// make some: the client's own echoes take only the room beyond it (its messages
    /// are held unacknowledged meanwhile, as when their echoes find no room), so a
    /// client that keeps sending cannot starve the producer. A
    /// client replaced by another client of the user (4409, after which it does not
    /// reconnect) is not waited for. A client that is gone otherwise frees its
    /// session's room only as its messages age out (`resume_limits.max_age` after it
    /// was last heard from) or the session expires (`session_ttl`): bound the wait with
    /// a timeout when that matters.
    ///
    /// ```
    /// # use tether_server::Hub;
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let hub = Hub::new();
    /// assert_eq!(hub.send_to_user_wait("bob", "news").await, 0); // no session: no wait
    /// # });
    /// ```
    pub async fn send_to_user_wait(&self, user: &str, payload: impl Into<Payload>) -> usize {
        let payload = payload.into();
        let mut waiting = Waiting {
            hub: self,
            reservation: Reservation::new(payload.len()),
        };
        loop {
            let room = self.room.notified();
            {
                let now = Instant::now();
                let mut st = self.lock();
                let sent =
                    st.endpoint
                        .try_send_to_user(now, user, &payload, &mut waiting.reservation);
                self.apply(&mut st, now);
                if let Some(count) = sent {
                    return count;
                }
            }
            room.await;
        }
    }

    /// Sends a server message to every session in `room`; returns how many.
    ///
    /// ```
    /// # use tether_server::Hub;
    /// let hub = Hub::new();
    /// assert_eq!(hub.broadcast("lobby", "server says hi"), 0);
    /// ```
    pub fn broadcast(&self, room: &str, payload: impl Into<Payload>) -> usize {
        let now = Instant::now();
        let payload = payload.into();
        let mut st = self.lock();
        let count = st.endpoint.broadcast(now, room, &payload);
        self.apply(&mut st, now);
        count
    }

    /// The current metrics (the `GET /api/websocket/metrics` body).
    ///
    /// ```
    /// # use tether_server::Hub;
    /// let m = Hub::new().metrics();
    /// assert_eq!((m.clients, m.total_connections), (0, 0));
    /// assert_eq!(m.connection_reliability, 100.0);
    /// ```
    #[must_use]
    pub fn metrics(&self) -> MetricsSnapshot {
        let now = Instant::now();
        let totals = self.metrics.totals(now);
        let st = self.lock();
        let mut established = 0usize;
        let mut established_uptime = 0.0;
        let mut connections: Vec<ConnectionInfo> = st
            .conns
            .iter()
            .map(|(id, c)| {
                let view = st.endpoint.transport(*id);
                let latency_us = c.stats.latency_us.load(Ordering::Relaxed);
                let uptime_secs = now.saturating_duration_since(c.opened).as_secs_f64();
                if c.route == Route::Echo || view.as_ref().is_some_and(|v| v.established) {
                    established += 1;
                    established_uptime += uptime_secs;
                }
                ConnectionInfo {
                    id: id.0,
                    user: c.user.clone(),
                    client_id: view
                        .as_ref()
                        .and_then(|v| v.client_id)
                        .map(|id| format!("{id:x}")),
                    transport: c.route.transport(),
                    endpoint: c.route.path(),
                    room: view.and_then(|v| v.room.map(str::to_owned)),
                    connected_at: c.connected_at_ms,
                    uptime_secs,
                    messages_in: c.stats.messages_in.load(Ordering::Relaxed),
                    messages_out: c.stats.messages_out.load(Ordering::Relaxed),
                    latency_ms: (latency_us > 0).then(|| latency_us as f64 / 1000.0),
                }
            })
            .collect();
        connections.sort_by_key(|c| c.id);
        let uptime_count = totals.ended as f64 + established as f64;
        let uptime_sum = totals.ended_uptime.as_secs_f64() + established_uptime;
        // Attempts the clients abandoned say nothing about the server.
        let attempts = totals.total.saturating_sub(totals.abandoned);
        let percent = |part: u64| {
            if attempts == 0 {
                0.0
            } else {
                (part as f64 * 100.0 / attempts as f64).min(100.0)
            }
        };
        MetricsSnapshot {
            clients: connections.len(),
            total_connections: totals.total,
            active_connections: connections.len(),
            failed_connections: totals.failed,
            abandoned_connections: totals.abandoned,
            connection_reliability: 100.0 - percent(totals.failed),
            error_rate: percent(totals.failed + totals.ended_errors),
            average_latency_ms: totals.latency_ms,
            latency_samples: totals.latency_samples,
            average_uptime_secs: if uptime_count > 0.0 {
                uptime_sum / uptime_count
            } else {
                0.0
            },
            messages_in_total: totals.messages_in,
            messages_out_total: totals.messages_out,
            messages_in_per_sec: totals.in_per_sec,
            messages_out_per_sec: totals.out_per_sec,
            sessions: st.endpoint.sessions(),
            instance: self.instance(),
            connections,
        }
    }

    /// Registers a WebSocket that passed authentication. A `/ws` socket claims its user
    /// at its Hello; a plain `/echo` socket never does (it has no session, so it takes no
    /// part in the one-connection-per-user rule).
    pub(crate) fn open_socket(
        &self,
        principal: &Principal,
        route: Route,
        link: SocketLink,
    ) -> (ConnId, Arc<ConnStats>) {
        let now = Instant::now();
        let stats = Arc::new(ConnStats::default());
        let mut st = self.lock();
        let id = st.endpoint.open_socket(principal.peer());
        st.conns.insert(
            id,
            Conn {
                user: principal.user.clone(),
                authenticated: principal.claims.is_some(),
                route,
                opened: now,
                connected_at_ms: unix_ms(),
                stats: Arc::clone(&stats),
                io: Io::Socket(link),
            },
        );
        drop(st);
        info!(conn = id.0, user = %principal.user, endpoint = route.path(), "connection opened");
        (id, stats)
    }

    /// A `/ws` socket's Hello: attaches it to its session and queues Welcome and the
    /// resend on it (under the lock, so no newer message can overtake them). A stale
    /// Hello changes nothing; the socket is to be closed.
    pub(crate) fn hello_socket(
        &self,
        conn: ConnId,
        hello: Greeting,
        room: Option<String>,
    ) -> Result<(), HelloError> {
        let now = Instant::now();
        let mut st = self.lock();
        let r = st.endpoint.handle_socket_hello(now, conn, hello, room);
        self.apply(&mut st, now);
        self.room_may_have_changed();
        r
    }

    /// An envelope (not a Hello) on a `/ws` socket past its Hello; `check_token` judges
    /// a refreshed token. Replies are queued on the socket.
    pub(crate) fn receive_socket(
        &self,
        conn: ConnId,
        envelope: Envelope,
        check_token: &mut dyn FnMut(&str) -> Result<(), TokenRefused>,
    ) -> Result<(), ReceiveError> {
        let now = Instant::now();
        let mut st = self.lock();
        let r = st
            .endpoint
            .handle_socket_envelope(now, conn, envelope, check_token);
        self.apply(&mut st, now);
        self.room_may_have_changed();
        r
    }

    /// The Ack owed to the client of an attached `/ws` socket, queued on it.
    pub(crate) fn flush_ack(&self, conn: ConnId) {
        let now = Instant::now();
        let mut st = self.lock();
        st.endpoint.flush_ack(conn);
        self.apply(&mut st, now);
    }

    /// Counts plain `/echo` traffic: with no acknowledgements, a message out is one
    /// written to the socket.
    pub(crate) fn count_plain(&self, stats: &ConnStats, inbound: u64, outbound: u64) {
        stats.messages_in.fetch_add(inbound, Ordering::Relaxed);
        stats.messages_out.fetch_add(outbound, Ordering::Relaxed);
        self.metrics.messages(Instant::now(), inbound, outbound);
    }

    /// A WebSocket's task ended with `code` (`None`: no close frame either way).
    pub(crate) fn close_socket(&self, conn: ConnId, code: Option<u16>, reason: &str) {
        let now = Instant::now();
        let mut st = self.lock();
        st.endpoint.handle_closed(now, conn, code, reason);
        self.apply(&mut st, now);
        self.room_may_have_changed();
    }

    /// One poll request (see [`Endpoint::handle_poll`]): its frames are taken; the
    /// answer's frames and the transport come back. `check_token` judges a refreshed
    /// token.
    pub(crate) fn poll_exchange(
        &self,
        principal: &Principal,
        request: PollRequest,
        check_token: &mut dyn FnMut(&str) -> Result<(), TokenRefused>,
    ) -> Result<PollExchange, PollError> {
        let now = Instant::now();
        let mut st = self.lock();
        let st = &mut *st;
        let r = st.endpoint.handle_poll(now, request, check_token);
        self.apply_poll(st, now, Some(principal));
        self.room_may_have_changed();
        let x = r?;
        let Some(Conn {
            io: Io::Poll(notify),
            ..
        }) = st.conns.get(&x.conn)
        else {
            return Err(PollError::NoTransport);
        };
        Ok(PollExchange {
            conn: x.conn,
            key: x.key,
            frames: x.frames,
            notify: Arc::clone(notify),
        })
    }

    /// Marks a request on a polling transport as started (`true`) or finished.
    pub(crate) fn poll_in_flight(&self, conn: ConnId, started: bool) {
        let now = Instant::now();
        self.lock().endpoint.poll_in_flight(now, conn, started);
    }

    /// Takes the messages waiting for a polling transport; an error if it was detached.
    pub(crate) fn take_pending(
        &self,
        conn: ConnId,
        key: &SessionKey,
    ) -> Result<Vec<Payload>, PollError> {
        let now = Instant::now();
        let mut st = self.lock();
        let r = st.endpoint.take_pending(now, conn, key);
        self.apply(&mut st, now);
        r
    }

    /// Restarts the idle clock of every polling transport: after a freeze the server
    /// was not listening, so the clients' silence does not count.
    pub(crate) fn touch_polls(&self) {
        let now = Instant::now();
        self.lock().endpoint.touch_polls(now);
    }

    /// The sweeper's round: detaches polling transports idle past `idle_limit`, drops
    /// expired resume buffer entries, and forgets sessions without a transport for
    /// `session_ttl`.
    pub(crate) fn sweep(&self, idle_limit: Duration, session_ttl: Duration) {
        let now = Instant::now();
        let mut st = self.lock();
        st.endpoint.handle_sweep(now, idle_limit, session_ttl);
        if !st.remote_claims.is_empty() {
            let State {
                conns,
                remote_claims,
                ..
            } = &mut *st;
            remote_claims
                .retain(|user, _| conns.values().any(|c| c.authenticated && c.user == *user));
        }
        self.apply(&mut st, now);
        self.room_may_have_changed();
    }
}

/// Reads what the fan-out log holds after `from` for a session in `room` of `user`
/// into `kept`, [`crate::store::LOG_LOOK`] entries looked at (in Redis) at a time,
/// until the log's end. Stops early with a gap past `limits` (what is kept, in
/// messages and bytes: a session could not hold more) or past
/// [`crate::store::LOG_PAGES`] reads. Returns the newest entry looked at and whether
/// some are missing; `None`: Redis did not answer.
async fn read_log(
    store: &RedisStore,
    from: crate::store::Mark,
    room: Option<&str>,
    user: &str,
    limits: tether_core::protocol::ResumeLimits,
    kept: &mut Vec<crate::store::Missed>,
) -> Option<(crate::store::Mark, bool)> {
    let mut upto = from;
    let mut bytes: usize = kept.iter().map(|m| m.1.len()).sum();
    for _ in 0..crate::store::LOG_PAGES {
        let page = store
            .missed(upto, room, user, crate::store::LOG_LOOK)
            .await?;
        upto = page.upto;
        for (_, entry) in page.entries {
            bytes = bytes.saturating_add(entry.1.len());
            kept.push(entry);
        }
        if page.gap || kept.len() > limits.max_messages || bytes > limits.max_bytes {
            return Some((upto, true));
        }
        if page.end {
            return Some((upto, false));
        }
    }
    Some((upto, true))
}

/// The room one [`Hub::send_to_user_wait`] keeps; dropped, it stops waiting, also when
/// the wait is cancelled.
struct Waiting<'a> {
    hub: &'a Hub,
    reservation: Reservation,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if self.reservation.is_empty() {
            return;
        }
        let now = Instant::now();
        let hub = self.hub;
        let mut st = hub.lock();
        st.endpoint.stop_waiting(now, &mut self.reservation);
        hub.apply(&mut st, now);
    }
}

/// A random instance id, when none is configured.
fn default_instance() -> String {
    format!("{:08x}", crate::rand::u64() & 0xffff_ffff)
}

fn unix_ms() -> u64 {
    u64::try_from(unix_now().as_millis()).unwrap_or(u64::MAX)
}
