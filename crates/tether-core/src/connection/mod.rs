//! The state machine: one logical connection, driven by a driver that does the I/O.
//!
//! See the crate docs for the driver loop. Inputs are the `connect`/`send`/`close` calls,
//! the `handle_*` calls and `handle_timeout`; outputs are drained with `poll_action`,
//! `poll_event` and `poll_timeout`.
//!
//! Each part of the state lives in the module that uses it, its fields private there:
//!
//! - `phase`: where the connection is (unstarted, running: disconnected, attempting or
//!   connected, maybe lingering in a close; stopped with a reason), each phase with its
//!   data; the public [`State`] is derived from it. Its diagram is in `phase.rs`.
//! - `link`: the one transport (WebSocket or polling session) and the polling
//!   fallback's mode and pace.
//! - `auth`: the token, its fetch and refresh, the retry after a rejection.
//! - `heartbeat`: pings, pongs and missed pings; `health`: round trips, losses,
//!   quality and recent drops.
//! - `protocol`: protocol mode's numbering, acknowledgements and resume; `inbound`:
//!   what the application has not read yet, and the pause of reading.
//! - here: the outbound queue, the backoff, the retry decision, the timers (grouped by
//!   scope, see [`crate::Timer`]) and the counters behind [`Connection::metrics`].

mod auth;
mod handoff;
mod health;
mod heartbeat;
mod inbound;
mod link;
mod phase;
mod protocol;

use std::collections::VecDeque;

use crate::backoff::Backoff;
use crate::close::{classify_close, classify_http_status, CloseClass};
use crate::config::{Config, ConfigError};
use crate::io::{
    Action, Cause, CauseKind, DropReason, Event, Hint, MessageId, RequestId, SendError,
    TerminalReason, TetherError, TransportFailure, TransportId,
};
use crate::metrics::Metrics;
use crate::payload::Payload;
use crate::quality::Quality;
use crate::queue::{Outbox, Retained};
use crate::rng::{Entropy, Rng};
use crate::state::State;
use crate::time::{later, Duration, Instant};
use crate::timer::{earliest, Scope, Timer, TimerTable};

pub use handoff::{HandoffError, SessionHandoff};
use link::{Fallback, FallbackStep, Link, LinkKind, WsVerdict};
use phase::{Linger, Phase, Step};

/// After this long connected, past failures are forgotten (backoff and the one auth
/// retry reset). Resetting at once would let a server that accepts and then drops every
/// connection cause a reconnect storm.
const STABLE_AFTER: Duration = Duration::from_secs(3);

/// One logical connection: every decision Tether makes, none of the I/O.
///
/// ```
/// use tether_core::{Action, Config, Connection, Entropy, Instant, State};
///
/// let now = Instant::now();
/// let config = Config::builder("ws://127.0.0.1:9/ws").build()?;
/// let mut conn = Connection::new(config, now, Entropy::from_bytes([7; 16]))?;
/// conn.connect(now);
/// assert_eq!(conn.state(), State::Connecting);
/// assert!(matches!(conn.poll_action(), Some(Action::Open { .. })));
/// # Ok::<(), tether_core::ConfigError>(())
/// ```
#[derive(Debug)]
pub struct Connection {
    config: Config,
    rng: Rng,
    /// Where the connection is, with what belongs there (the public state is derived).
    phase: Phase,
    backoff: Backoff,
    /// Attempts started since the last connection that lasted (or `reconnect()`, or the
    /// platform coming back online): the number in [`Event::AttemptStarted`].
    attempts: u32,
    timers: TimerTable,
    actions: VecDeque<Action>,
    events: VecDeque<Event>,
    next_id: u64,

    /// The one transport that is open or being opened.
    link: Link,
    online: bool,
    retry_hint: Option<Duration>,

    /// The token, its fetch, and the retry after a rejection.
    auth: auth::Auth,

    heartbeat: heartbeat::Heartbeat,
    /// Round trips, losses, quality and recent drops.
    health: health::Health,

    outbox: Outbox,
    /// What [`Connection::poll_room`] last saw: the outbox's count of changes that can
    /// make room, and whether `send` refused whatever the queue held.
    room_seen: (u32, bool),
    next_message: u64,
    proto: protocol::Reliable,
    inbound: inbound::Inbound,

    /// The HTTP polling fallback: whether it is on, and its pace.
    fallback: Fallback,

    /// What `metrics()` counts over the connection's life.
    tally: Tally,
}

/// The figures counted over the connection's life (for [`Metrics`]).
#[derive(Debug, Default)]
struct Tally {
    /// Some connection was made (a later one counts as a reconnect).
    ever_connected: bool,
    reconnects: u32,
    /// The uptime of connections that ended.
    total_uptime: Duration,
    last_cause: Option<Cause>,
    messages_in: u64,
    messages_out: u64,
    bytes_in: u64,
    bytes_out: u64,
}

impl Tally {
    fn connected(&mut self) {
        if self.ever_connected {
            self.reconnects += 1;
        }
        self.ever_connected = true;
    }

    fn message_in(&mut self, size: usize) {
        self.messages_in += 1;
        self.bytes_in += size as u64;
    }

    fn message_out(&mut self, size: usize) {
        self.messages_out += 1;
        self.bytes_out += size as u64;
    }
}

impl Connection {
    /// A connection that will use `config`; nothing happens until [`Connection::connect`].
    ///
    /// `entropy` is the driver's draw from the platform's random source: the client id and
    /// the jitter come from it, unless `config` fixes a [`Config::seed`] to replay a run.
    /// The configuration is validated again here, so a hand-edited `Config` cannot slip
    /// through.
    pub fn new(config: Config, now: Instant, entropy: Entropy) -> Result<Self, ConfigError> {
        let _ = now;
        config.validate()?;
        let entropy = config.seed.map_or(entropy, Entropy::fixed);
        let rng = Rng::new(entropy.jitter_seed());
        let client_id = entropy.client_id();
        Ok(Connection {
            backoff: Backoff::new(config.backoff.clone()),
            attempts: 0,
            health: health::Health::new(&config),
            rng,
            phase: Phase::Unstarted,
            timers: TimerTable::default(),
            // Drained after every input, so usually one at a time; room for one (72 B in
            // wasm) rather than the first growth's four, kept for the client's life.
            actions: VecDeque::with_capacity(1),
            events: VecDeque::new(),
            next_id: 0,
            link: Link::None,
            online: true,
            retry_hint: None,
            auth: auth::Auth::default(),
            heartbeat: heartbeat::Heartbeat::default(),
            outbox: Outbox::default(),
            room_seen: (0, false),
            next_message: 0,
            proto: protocol::Reliable::new(client_id),
            inbound: inbound::Inbound::default(),
            fallback: Fallback::new(&config),
            tally: Tally::default(),
            config,
        })
    }

    // ----- outputs -------------------------------------------------------------------

    /// The next piece of work for the driver. Call after every input until `None`.
    #[must_use = "the driver must perform every action"]
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The next event for the user. Call after every input until `None`, and put every
    /// event in the application's queue: a message taken here counts as the
    /// application's (protocol mode acknowledges it to the server) and as unread until
    /// [`Connection::handle_app_read`] says it was read.
    #[must_use = "events are lost if not drained"]
    pub fn poll_event(&mut self) -> Option<Event> {
        let event = self.events.pop_front()?;
        self.handed(&event);
        Some(event)
    }

    /// When to call [`Connection::handle_timeout`] next (`None`: no timer is armed).
    /// Read it again after every input.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    /// The current state.
    #[must_use]
    pub fn state(&self) -> State {
        self.phase.state()
    }

    /// The reported quality level, once measured.
    #[must_use]
    pub fn quality(&self) -> Option<Quality> {
        self.health.quality()
    }

    /// Why the connection stopped, when it has.
    #[must_use]
    pub fn terminal_reason(&self) -> Option<&TerminalReason> {
        self.phase.terminal()
    }

    /// The configuration in force.
    #[must_use]
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The stable id this client presents to a Tether server.
    #[must_use]
    pub fn client_id(&self) -> u64 {
        self.proto.client_id()
    }

    /// Which timer is due first, and when (for logs).
    #[must_use]
    pub fn next_timer(&self) -> Option<(Timer, Instant)> {
        Timer::ALL
            .iter()
            .filter_map(|t| self.timers.get(*t).map(|at| (*t, at)))
            .min_by_key(|(_, at)| *at)
    }

    /// A snapshot of every figure.
    #[must_use]
    pub fn metrics(&self, now: Instant) -> Metrics {
        let uptime = self
            .phase
            .connected_since()
            .map(|at| now.saturating_duration_since(at));
        let (unread_messages, unread_bytes, unread_bytes_peak) = self.inbound.unread();
        let stats = self.health.stats();
        Metrics {
            state: self.state(),
            attempt: if self.state() == State::Connected {
                0
            } else {
                self.backoff.failures()
            },
            reconnects: self.tally.reconnects,
            uptime,
            total_uptime: self.tally.total_uptime + uptime.unwrap_or_default(),
            last_close_code: self.tally.last_cause.as_ref().and_then(|c| c.code),
            last_close_reason: self.tally.last_cause.as_ref().map(|c| c.reason.clone()),
            rtt: stats.last(),
            rtt_mean: stats.mean(),
            rtt_p50: stats.percentile(50.0),
            rtt_p99: stats.percentile(99.0),
            jitter: stats.jitter(),
            loss: stats.loss(),
            quality: self.health.quality(),
            reliability: self.health.reliability(now),
            messages_in: self.tally.messages_in,
            messages_out: self.tally.messages_out,
            bytes_in: self.tally.bytes_in,
            bytes_out: self.tally.bytes_out,
            queue_depth: self.outbox.len(),
            queue_bytes: self.outbox.bytes(),
            unread_messages,
            unread_bytes,
            unread_bytes_peak,
            reading_paused: self.inbound.is_paused(),
            fallback_active: self.fallback.is_reported(),
            terminal_reason: self.phase.terminal().cloned(),
        }
    }

    // ----- user inputs ---------------------------------------------------------------

    /// Start connecting. From `Error` or `Closed` this is [`Connection::reconnect`].
    pub fn connect(&mut self, now: Instant) {
        self.reconnect(now);
    }

    /// Connect now, from any state that is not connected or already attempting: restarts
    /// after `Error` or `Closed` (forgetting past failures), ends a backoff wait early,
    /// and attempts even while the platform says it is offline. A connection whose driver
    /// failed ([`TerminalReason::DriverFailed`]) stays stopped: nothing would run it.
    pub fn reconnect(&mut self, now: Instant) {
        if matches!(self.phase, Phase::Stopped(TerminalReason::DriverFailed(_))) {
            return;
        }
        if self.phase.take_linger().is_some() {
            self.timers.stop(Timer::CloseLinger);
        }
        match self.state() {
            State::Error | State::Closed => {
                self.abandon_link();
                self.forget_failures();
                self.set_step(Step::Attempting {
                    first: true,
                    awaits_token: false,
                });
                self.start_attempt(now);
            }
            State::Disconnected if self.idle() => {
                self.set_step(Step::Attempting {
                    first: !self.tally.ever_connected,
                    awaits_token: false,
                });
                self.start_attempt(now);
            }
            State::Reconnecting | State::Connecting if self.idle() => {
                self.timers.stop(Timer::Backoff);
                self.start_attempt(now);
            }
            _ => {}
        }
    }

    /// Send a message: written at once when connected, queued otherwise (flushed in order
    /// on connect). Returns its id, reported again by `Delivered` (protocol mode) or
    /// `Dropped`.
    pub fn send(
        &mut self,
        now: Instant,
        payload: impl Into<Payload>,
    ) -> Result<MessageId, SendError> {
        let payload = payload.into();
        let size = payload.len();
        if let Some(refused) = self.refusal(size) {
            return Err(refused);
        }
        let protocol = self.config.is_protocol();
        if !protocol && self.link.is_ready() {
            self.next_message += 1;
            self.count_out(size);
            let id = self.link.id().expect("ready link has an id");
            self.actions.push_back(Action::Send { id, frame: payload });
            return Ok(MessageId(self.next_message));
        }
        let events = &mut self.events;
        self.outbox.admit(size, &self.config.queue, |r| {
            // Written before the server lost its session, it may have arrived.
            let reason = if r.written {
                DropReason::Unconfirmed
            } else {
                DropReason::Overflow
            };
            events.push_back(Event::Dropped { id: r.id, reason });
        })?;
        self.next_message += 1;
        let id = MessageId(self.next_message);
        let retained = Retained {
            id,
            payload,
            enqueued: now,
            seq: 0,
            written: false,
        };
        // Not while the polling trial waits for its probe (its transport is ready, the
        // connection not connected): the message waits for the probe's outcome, and a
        // steady sender cannot keep polling busy and the probe from ever going.
        if protocol
            && self.link.is_ready()
            && self.state() == State::Connected
            && self.outbox.pending_len() == 0
        {
            self.write_message(now, retained);
        } else {
            self.outbox.push_pending(retained);
            self.arm_queue_expiry();
        }
        Ok(id)
    }

    /// Close with `code` and `reason`, after delivering what was sent before: the
    /// connection keeps (re)connecting and flushing until every retained message is
    /// acknowledged (protocol mode) or written (plain mode), or `close_linger` passes;
    /// whatever is left then is reported `Dropped` (`Stopped` if never written,
    /// `Unconfirmed` if written but not acknowledged). Ends in `Closed`, at once when
    /// nothing is retained. [`Connection::send`] refuses new messages meanwhile
    /// ([`SendError::Closing`]); [`Connection::is_closing`] tells; another `close` changes
    /// nothing, [`Connection::close_now`] ends the wait, `reconnect()` cancels the close.
    ///
    /// ```
    /// use tether_core::{Config, Connection, Entropy, Instant, State};
    ///
    /// let now = Instant::now();
    /// let config = Config::builder("ws://127.0.0.1:9/ws").build()?;
    /// let mut conn = Connection::new(config, now, Entropy::fixed(1))?;
    /// conn.connect(now);
    /// conn.send(now, "queued while connecting").unwrap();
    /// conn.close(now, 1000, "bye");
    /// assert!(conn.is_closing()); // still trying to deliver it
    /// assert_ne!(conn.state(), State::Closed);
    /// conn.close_now(now, 1000, "bye");
    /// assert_eq!(conn.state(), State::Closed);
    /// # Ok::<(), tether_core::ConfigError>(())
    /// ```
    pub fn close(&mut self, now: Instant, code: u16, reason: &str) {
        let state = self.state();
        if state == State::Closed || self.is_closing() {
            return;
        }
        if state.is_stopped() || !self.undelivered() {
            return self.close_now(now, code, reason);
        }
        // Never started, or waiting for the network: deliver means connect.
        if state == State::Disconnected && self.idle() {
            self.reconnect(now);
        }
        if self.phase.set_linger(code, reason) {
            self.timers
                .set(Timer::CloseLinger, later(now, self.config.close_linger));
        }
        self.flush_ack(now);
    }

    /// Close with `code` and `reason` at once: whatever is retained is reported `Dropped`
    /// (`Stopped` if never written, `Unconfirmed` if written but not acknowledged). Ends
    /// in `Closed`.
    pub fn close_now(&mut self, now: Instant, code: u16, reason: &str) {
        if self.state() == State::Closed {
            return;
        }
        self.phase.take_linger();
        self.flush_ack(now);
        for scope in [Scope::Transport, Scope::Run, Scope::Messages] {
            self.timers.stop_scope(scope);
        }
        self.auth.cancel_fetch();
        self.end_uptime(now);
        self.close_parked(code, reason);
        self.close_link(code, reason);
        self.clear_link_timers();
        self.heartbeat.reset();
        self.drop_retained();
        self.stop(TerminalReason::UserClosed {
            code,
            reason: reason.to_owned(),
        });
    }

    /// `close()` is delivering what was sent before it.
    #[must_use]
    pub fn is_closing(&self) -> bool {
        self.phase.linger().is_some()
    }

    /// The id of the last message [`Connection::send`] accepted (`MessageId(0)` before
    /// the first). A driver's `flush` waits until
    /// [`Connection::oldest_undelivered`] is past it.
    #[must_use]
    pub fn last_message_id(&self) -> MessageId {
        MessageId(self.next_message)
    }

    /// The oldest message still retained: not yet acknowledged (protocol mode) or not yet
    /// written (plain mode). `None` when everything sent was delivered (or dropped).
    ///
    /// ```
    /// use tether_core::{Config, Connection, Entropy, Instant};
    ///
    /// let now = Instant::now();
    /// let config = Config::builder("ws://127.0.0.1:9/ws").build()?;
    /// let mut conn = Connection::new(config, now, Entropy::fixed(1))?;
    /// let id = conn.send(now, "hi").unwrap();
    /// assert_eq!(conn.oldest_undelivered(), Some(id)); // nothing is connected yet
    /// assert_eq!(conn.last_message_id(), id);
    /// # Ok::<(), tether_core::ConfigError>(())
    /// ```
    #[must_use]
    pub fn oldest_undelivered(&self) -> Option<MessageId> {
        self.outbox.oldest_id()
    }

    /// What [`Connection::send`] of a message of `size` bytes is refused with whatever its
    /// bytes and the queue (stopped, closing, too large), or `None`. A driver that would
    /// copy a large payload to hand it over asks first, and copies nothing refused.
    #[must_use]
    pub fn refusal(&self, size: usize) -> Option<SendError> {
        let state = self.state();
        if state.is_stopped() {
            return Some(SendError::Stopped(state));
        }
        if self.is_closing() {
            return Some(SendError::Closing);
        }
        let max = self.config.max_message_bytes;
        (size > max).then_some(SendError::TooLarge { size, max })
    }

    /// Whether [`Connection::send`] of a message of `size` bytes should be tried now: the
    /// outbound queue has room for it (under `DropOldest`, by dropping older queued
    /// messages), or `send` would refuse it whatever the queue holds (too large, stopped,
    /// closing) and reports why. A driver's waiting send tries again when
    /// [`Connection::poll_room`] says this may have turned true.
    #[must_use]
    pub fn has_room_for(&self, size: usize) -> bool {
        self.outbox.has_room(size, &self.config.queue)
            || size > self.config.queue.max_bytes
            || size > self.config.max_message_bytes
            || self.refuses_all()
    }

    /// `send` refuses every message, whatever the queue holds.
    fn refuses_all(&self) -> bool {
        self.state().is_stopped() || self.is_closing()
    }

    /// Whether [`Connection::has_room_for`] may have turned true, for some size, since the
    /// last call: a message left the queue (written in plain mode, acknowledged, expired,
    /// dropped), messages in flight went back to waiting (where `DropOldest` may drop
    /// them), or `send` began to refuse everything (closing, stopped), which may change
    /// nothing else at once. A driver calls it after each drain (whether or not the drain
    /// did anything) and wakes its waiting sends when it says yes; it may say yes when
    /// there is no room yet (they look again), never no when there is.
    ///
    /// ```
    /// use tether_core::{Config, Connection, Entropy, Instant, QueueConfig};
    ///
    /// let now = Instant::now();
    /// let queue = QueueConfig { max_messages: 1, ..QueueConfig::default() };
    /// let config = Config::builder("ws://127.0.0.1:9/ws").queue(queue).build()?;
    /// let mut conn = Connection::new(config, now, Entropy::fixed(1))?;
    /// conn.connect(now);
    /// conn.send(now, "fills the queue").unwrap();
    /// assert!(!conn.has_room_for(5));
    /// assert!(!conn.poll_room());
    /// conn.close(now, 1000, "bye"); // outputs nothing yet: still delivering
    /// assert!(conn.poll_room() && conn.has_room_for(5)); // send now refuses with Closing
    /// assert!(!conn.poll_room());
    /// # Ok::<(), tether_core::ConfigError>(())
    /// ```
    #[must_use]
    pub fn poll_room(&mut self) -> bool {
        let now = (self.outbox.freed(), self.refuses_all());
        let changed = now != self.room_seen;
        self.room_seen = now;
        changed
    }

    /// Something sent is not delivered yet.
    fn undelivered(&self) -> bool {
        self.outbox.len() > 0
    }

    /// While closing: close once everything is delivered.
    fn close_if_delivered(&mut self, now: Instant) {
        if self.is_closing() && !self.undelivered() {
            self.finish_close(now);
        }
    }

    // ----- driver inputs -------------------------------------------------------------

    /// The driver can no longer run this connection (its task died): stop in `Error` with
    /// [`TerminalReason::DriverFailed`], report every message not yet acknowledged as
    /// `Dropped`, and stay stopped: `send` fails with `Stopped(Error)` from now on, and
    /// `reconnect` does nothing. A closed connection becomes `Error` too (the one way out
    /// of `Closed` but `Connecting`): `Closed` would promise a `reconnect()` that can no
    /// longer work, and the drivers report that state already.
    pub fn handle_driver_failure(&mut self, now: Instant, why: &str) {
        if matches!(self.phase, Phase::Stopped(TerminalReason::DriverFailed(_))) {
            return;
        }
        self.end_uptime(now);
        self.phase.take_linger();
        self.stop_with_error(TerminalReason::DriverFailed(why.to_owned()));
        self.timers.stop_scope(Scope::Messages);
        self.drop_retained();
    }

    /// The WebSocket `id` is open.
    pub fn handle_opened(&mut self, now: Instant, id: TransportId) {
        if !self.link.is_opening_ws(id) {
            return;
        }
        if self.config.is_protocol() {
            self.link.set_ws_welcoming();
            self.fallback.greeted(self.link.is_probe());
            let hello = self.proto.hello(id);
            self.transmit_envelope(now, hello);
        } else {
            self.link.set_ws_open();
            self.on_connected(now);
        }
    }

    /// Whether the transport writes WebSocket ping control frames and reports their
    /// pongs (`Transport::can_ping` in tether-dispatch); drivers
    /// call it once, before the first attempt. In plain mode without ping and pong
    /// payloads the heartbeat then runs with [`Action::Ping`] and
    /// [`handle_pong`](Self::handle_pong), with the configured interval, timeout and
    /// misses, so a frozen plain server is detected as a protocol server is.
    pub fn use_control_pings(&mut self, on: bool) {
        self.heartbeat.use_control_pings(on);
    }

    /// A pong control frame arrived on the WebSocket `id` (the answer to an
    /// [`Action::Ping`]).
    pub fn handle_pong(&mut self, now: Instant, id: TransportId) {
        if !self.link.is_live_ws(id) {
            return;
        }
        self.on_inbound_activity();
        self.on_control_pong(now);
    }

    /// A frame arrived on the WebSocket `id`.
    pub fn handle_frame(&mut self, now: Instant, id: TransportId, frame: Payload) {
        if !self.link.is_live_ws(id) {
            return;
        }
        self.on_inbound_activity();
        if self.config.is_protocol() {
            match crate::protocol::Envelope::decode(frame) {
                Ok(envelope) => self.on_envelope(now, envelope),
                Err(e) => {
                    self.events
                        .push_back(Event::Error(TetherError::Protocol(e)));
                    self.fail_link(now, crate::close::codes::PROTOCOL_ERROR, "invalid frame");
                }
            }
        } else if self.heartbeat.is_plain_pong(&self.config, &frame) {
            self.on_pong(now, None);
        } else {
            self.deliver(frame);
        }
    }

    /// The WebSocket `id` closed (by the server, or it broke).
    pub fn handle_closed(
        &mut self,
        now: Instant,
        id: TransportId,
        code: Option<u16>,
        reason: String,
    ) {
        if self.link.id() != Some(id) || !self.link.is_ws() {
            return;
        }
        let class = classify_close(code, &self.config.close_rules);
        let cause = Cause {
            kind: match class {
                CloseClass::AuthRejected => CauseKind::AuthRejected,
                CloseClass::Replaced => CauseKind::Replaced,
                _ => CauseKind::Closed,
            },
            code,
            status: None,
            reason,
        };
        let kind = self.link.take();
        self.link_lost(now, kind, cause, class, None);
    }

    /// Opening the WebSocket `id` failed, or it broke with an error.
    pub fn handle_failed(&mut self, now: Instant, id: TransportId, failure: TransportFailure) {
        if self.link.id() != Some(id) || !self.link.is_ws() {
            return;
        }
        let kind = self.link.take();
        self.on_failure(now, kind, failure);
    }

    /// The answer to [`Action::HttpRequest`] `request`: the response body, or why there is none.
    pub fn handle_http_response(
        &mut self,
        now: Instant,
        request: RequestId,
        result: Result<Vec<u8>, TransportFailure>,
    ) {
        self.on_poll_response(now, request, result);
    }

    /// A platform hint.
    pub fn handle_hint(&mut self, now: Instant, hint: Hint) {
        match hint {
            Hint::Offline => {
                self.online = false;
                match self.state() {
                    State::Connecting | State::Reconnecting if self.idle() => {
                        self.timers.stop(Timer::Backoff);
                        self.set_step(Step::Disconnected);
                    }
                    State::Connected => self.check_liveness(now),
                    _ => {}
                }
            }
            Hint::Online => {
                self.online = true;
                let started = !matches!(self.phase, Phase::Unstarted);
                match self.state() {
                    State::Disconnected if started && self.idle() => {
                        self.backoff.reset();
                        self.attempts = 0;
                        self.reconnect(now);
                    }
                    State::Connecting | State::Reconnecting if self.idle() => {
                        self.backoff.reset();
                        self.attempts = 0;
                        self.reconnect(now);
                    }
                    State::Connected => self.check_liveness(now),
                    _ => {}
                }
            }
            Hint::Visible | Hint::Resumed => match self.state() {
                State::Connecting | State::Reconnecting if self.idle() && self.online => {
                    self.reconnect(now);
                }
                State::Connected => self.check_liveness(now),
                _ => {}
            },
            Hint::Hidden => {}
        }
    }

    /// Call when [`Connection::poll_timeout`] is reached (calling early or late is safe).
    ///
    /// A timer served much later than its deadline (`resume_gap`) means the process was
    /// asleep or throttled: pings in flight then prove nothing, so they are forgotten and
    /// the socket gets a quick liveness check instead.
    pub fn handle_timeout(&mut self, now: Instant) {
        // The health figures age on this schedule too, whatever arrives or not.
        self.health.trim(now);
        let resumed = self.timers.next().is_some_and(|first| {
            first <= now && now.saturating_duration_since(first) >= self.config.resume_gap
        });
        if resumed {
            self.heartbeat.forget_ping(&mut self.timers);
        }
        // The timers due now, served earliest first, ties in `Timer::ALL`'s order: picked
        // one by one from a copy of their deadlines (no vector, no sort in a wasm build).
        let mut due = Timer::ALL.map(|t| self.timers.get(t).filter(|at| *at <= now));
        while let Some((i, at)) = earliest(&due) {
            due[i] = None;
            let timer = Timer::ALL[i];
            // An earlier timer may have re-armed or stopped this one.
            if self.timers.get(timer) != Some(at) {
                continue;
            }
            self.timers.stop(timer);
            self.on_timer(now, timer, resumed);
        }
        if resumed {
            self.handle_hint(now, Hint::Resumed);
        }
    }

    // ----- internals -----------------------------------------------------------------

    /// `timer` is due; `resumed`: served after the process slept (see `handle_timeout`).
    fn on_timer(&mut self, now: Instant, timer: Timer, resumed: bool) {
        match timer {
            Timer::Backoff => {
                if matches!(self.state(), State::Connecting | State::Reconnecting) && self.idle() {
                    self.start_attempt(now);
                }
            }
            Timer::ConnectTimeout => {
                if resumed
                    && self.link.is_trial_probe(&self.fallback)
                    && self.fallback.take_probe_grace()
                {
                    // The polling trial's probe ran out of time while the process slept:
                    // that proves nothing about WebSockets (a failed probe reports the
                    // fallback), so it gets its time again from the wake-up, once (a
                    // throttled page's every timer is late).
                    self.arm_connect_timeout(now, true);
                } else if !self.link.is_none() {
                    // A failed attempt like any other: the app hears of it.
                    self.events
                        .push_back(Event::Error(TetherError::AttemptFailed(
                            TransportFailure::Timeout,
                        )));
                    self.fail_link_with(
                        now,
                        Cause {
                            kind: CauseKind::Timeout,
                            reason: "connect timeout".into(),
                            ..Cause::default()
                        },
                        CloseClass::Retry,
                        1000,
                    );
                }
            }
            Timer::TokenFetch => {
                if self.auth.is_fetching() {
                    self.token_answered(now, Err("token provider timed out".into()));
                }
            }
            Timer::TokenRefresh => match self.state() {
                _ if self.auth.is_fetching() => {}
                State::Connected => self.request_token(now),
                // The polling trial carries the session (welcomed, its probe not out yet),
                // for up to `probe_timeout` and a request: its requests carry the token,
                // refreshed now (a probe opening meanwhile gets it in an Auth).
                _ if self.link.is_poll() && self.link.is_ready() => self.request_token(now),
                // An attempt under way with the current token: the polling trial and its
                // probe fetch none, so the refresh is made once it connects.
                _ if !self.link.is_none() => self.auth.miss_refresh(),
                _ => {}
            },
            Timer::Heartbeat => self.send_ping(now),
            Timer::PongDeadline => self.on_pong_deadline(now),
            Timer::Liveness => {
                self.fail_link_with(
                    now,
                    Cause {
                        kind: if self.online {
                            CauseKind::Liveness
                        } else {
                            CauseKind::Offline
                        },
                        reason: if self.online {
                            "no answer to a liveness check".into()
                        } else {
                            "offline: the device lost its network".into()
                        },
                        ..Cause::default()
                    },
                    CloseClass::Retry,
                    1000,
                );
            }
            Timer::Ack => self.flush_ack(now),
            Timer::PollReceive => self.issue_poll_receive(now),
            Timer::PollRequest => {
                if self.link.is_poll() {
                    if self.state() != State::Connected {
                        // The attempt failed, as a connect timeout or any failed request
                        // before the Welcome would: the app hears of it.
                        self.events
                            .push_back(Event::Error(TetherError::AttemptFailed(
                                TransportFailure::Timeout,
                            )));
                    }
                    self.fail_link_with(
                        now,
                        Cause {
                            kind: CauseKind::Timeout,
                            reason: "poll request timed out".into(),
                            ..Cause::default()
                        },
                        CloseClass::Retry,
                        1000,
                    );
                }
            }
            Timer::UpgradeProbe => {
                self.fallback.probe_due();
                self.try_probe(now);
            }
            Timer::CloseLinger => self.finish_close(now),
            Timer::QueueExpiry => {
                if let Some(age) = self.config.queue.max_age {
                    let events = &mut self.events;
                    self.outbox.expire(now, age, |r| {
                        // Written before the server lost its session, it may have arrived.
                        let reason = if r.written {
                            DropReason::Unconfirmed
                        } else {
                            DropReason::Expired
                        };
                        events.push_back(Event::Dropped { id: r.id, reason });
                    });
                }
                self.arm_queue_expiry();
            }
            Timer::Stable => self.forget_failures(),
        }
    }

    /// No transport and no token fetch: nothing is under way.
    fn idle(&self) -> bool {
        self.link.is_none() && !self.phase.awaits_token()
    }

    fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Moves a running connection (or starts one) to `step`, reporting the change of
    /// the public state.
    fn set_step(&mut self, step: Step) {
        let from = self.state();
        self.phase.set_step(step);
        self.state_changed(from);
    }

    fn state_changed(&mut self, from: State) {
        let to = self.state();
        if from == to {
            return;
        }
        debug_assert!(from.can_become(to), "illegal transition {from} -> {to}");
        self.events.push_back(Event::StateChanged { from, to });
    }

    /// Stops with `reason` (`Closed` when the user closed, `Error` otherwise).
    fn stop(&mut self, reason: TerminalReason) {
        let from = self.state();
        self.phase = Phase::Stopped(reason.clone());
        self.state_changed(from);
        self.events.push_back(Event::Stopped(reason));
    }

    fn start_attempt(&mut self, now: Instant) {
        self.announce_attempt(false);
        if self.config.auth.is_some() {
            self.phase.set_awaits_token(true);
            if !self.auth.is_fetching() {
                self.request_token(now);
            }
        } else {
            self.open_link(now, false);
        }
    }

    fn on_connected(&mut self, now: Instant) {
        self.timers.stop(Timer::ConnectTimeout);
        // A hint belongs to the close that follows it, not to some later failure.
        self.retry_hint = None;
        if !self.link_connected(now) {
            // The polling trial waits for its WebSocket probe (`link.rs`).
            return;
        }
        self.mark_connected(now);
        self.flush_pending(now);
    }

    /// The session has its transport: `Connected`, if it was not.
    fn mark_connected(&mut self, now: Instant) {
        if self.state() != State::Connected {
            self.tally.connected();
            self.timers.set(Timer::Stable, later(now, STABLE_AFTER));
            self.set_step(Step::Connected { since: now });
            if self.auth.take_missed_refresh() {
                self.request_token(now);
            }
        }
    }

    /// The transport is gone (its closing was reported or decided); what next.
    fn link_lost(
        &mut self,
        now: Instant,
        kind: LinkKind,
        cause: Cause,
        mut class: CloseClass,
        failure: Option<&TransportFailure>,
    ) {
        self.clear_link_timers();
        self.heartbeat.reset();
        if self.state().is_stopped() {
            return;
        }
        if kind == LinkKind::WsProbe {
            // A hint that came with the probe's failure was about the probe: no attempt
            // follows it, and a later failure must not wait for it.
            self.retry_hint = None;
            let down = !self.online || matches!(failure, Some(TransportFailure::Refused));
            // Another client of the user took over: the server detached the polling
            // transport too (its next request gets 409), so the connection ends here.
            let replaced = class == CloseClass::Replaced;
            let ends = replaced || (self.fallback.is_trial() && down);
            if !ends {
                // The WebSocket probe failed: polling goes on.
                self.resume_polling(now);
                return;
            }
            // Replaced, or the polling trial's probe failed because the device is offline
            // or nothing listens any more: that says nothing of WebSockets being blocked.
            // The trial ends as one whose polling failed (back to the WebSocket, with
            // backoff), its transport closed; nothing is lost (the next Hello resumes).
            self.close_parked(1000, "polling ended after the probe");
            if !replaced {
                class = CloseClass::Retry;
            }
        }
        self.tally.last_cause = Some(cause.clone());
        if let Some(since) = self.phase.connected_since() {
            let connected_for = now.saturating_duration_since(since);
            if connected_for >= STABLE_AFTER {
                // The Stable timer may not have been served (the process slept).
                self.forget_failures();
            }
            self.end_uptime(now);
            self.health.connection_lost(now);
            self.events.push_back(Event::Disconnected {
                cause: cause.clone(),
                connected_for,
            });
            self.set_step(Step::Disconnected);
        }
        let verdict = match (kind, failure) {
            (LinkKind::Ws, Some(TransportFailure::Blocked)) => WsVerdict::Blocked,
            // Nothing listens: the server is down, not the WebSocket blocked.
            (LinkKind::Ws, Some(TransportFailure::Refused)) => WsVerdict::Refused,
            (LinkKind::Ws, _) => WsVerdict::Failed,
            _ => WsVerdict::NotWs,
        };
        self.attempt_failed(now, cause, class, verdict);
    }

    fn forget_failures(&mut self) {
        self.backoff.reset();
        self.attempts = 0;
        self.auth.forget_rejection();
    }

    /// An attempt (or a connection) failed with `class`: retry, fall back, or stop.
    fn attempt_failed(&mut self, now: Instant, cause: Cause, class: CloseClass, ws: WsVerdict) {
        match class {
            CloseClass::Replaced => return self.stop_with_error(TerminalReason::Replaced(cause)),
            CloseClass::Fatal => return self.stop_with_error(TerminalReason::Fatal(cause)),
            CloseClass::AuthRejected => {
                if self.config.auth.is_some() && self.auth.retry_after_rejection() {
                    self.enter_retrying();
                    self.start_attempt(now);
                } else {
                    self.stop_with_error(TerminalReason::AuthRejected(cause));
                }
                return;
            }
            _ => {}
        }
        match self
            .fallback
            .after_failure(ws, &self.config, &mut self.events)
        {
            FallbackStep::Poll => {
                self.enter_retrying();
                if self.config.auth.is_some() && self.auth.lacks_token(now) {
                    // The token ran out while the WebSocket attempt was under way (the
                    // process slept): a 401 would spend the one retry after a rejection.
                    self.start_attempt(now);
                } else {
                    self.announce_attempt(false);
                    self.open_link(now, false);
                }
                return;
            }
            FallbackStep::Unusable => return self.stop_with_error(TerminalReason::Fatal(cause)),
            FallbackStep::Retry => {}
        }
        if !self.online {
            self.set_step(Step::Disconnected);
            return;
        }
        let jittered = self.backoff.next_delay(&mut self.rng);
        if self.backoff.exhausted() {
            let attempts = self.backoff.failures();
            return self.stop_with_error(TerminalReason::GaveUp {
                attempts,
                last: cause,
            });
        }
        let (delay, hinted) = match self.retry_hint.take() {
            Some(hint) => (hint, true),
            None => (jittered, false),
        };
        self.enter_retrying();
        self.timers.set(Timer::Backoff, later(now, delay));
        self.events.push_back(Event::ReconnectScheduled {
            attempt: self.backoff.failures(),
            delay,
            hinted,
        });
    }

    /// A server's hint for the next attempt's delay, cut to `max_retry_hint`: a hostile or
    /// broken server cannot park the client for longer.
    fn set_retry_hint(&mut self, hint: Duration) {
        self.retry_hint = Some(hint.min(self.config.max_retry_hint));
    }

    fn enter_retrying(&mut self) {
        if self.state() == State::Connected {
            self.set_step(Step::Disconnected);
        }
        let awaits_token = self.phase.awaits_token();
        self.set_step(Step::Attempting {
            first: false,
            awaits_token,
        });
    }

    fn stop_with_error(&mut self, reason: TerminalReason) {
        if self.phase.take_linger().is_some() {
            // The close will not be completed: what it was delivering is given up.
            self.drop_retained();
        }
        self.abandon_link();
        self.timers.stop_scope(Scope::Run);
        self.auth.cancel_fetch();
        self.stop(reason);
    }

    fn on_failure(&mut self, now: Instant, kind: LinkKind, failure: TransportFailure) {
        let (status, class) = match &failure {
            TransportFailure::Http {
                status,
                retry_after,
            } => {
                if let Some(hint) = *retry_after {
                    self.set_retry_hint(hint);
                }
                (Some(*status), classify_http_status(*status))
            }
            _ => (None, CloseClass::Retry),
        };
        if self.state() != State::Connected {
            self.events
                .push_back(Event::Error(TetherError::AttemptFailed(failure.clone())));
        } else if let TransportFailure::MessageTooLarge { size } = failure {
            self.events
                .push_back(Event::Error(TetherError::MessageTooLarge { size }));
            if kind == LinkKind::Ws && self.config.is_protocol() {
                // Refused twice at the same point: the server's resend of the message due
                // next, given up so that the server does not resend it forever.
                if let Some(seq) = self.proto.refused_inbound() {
                    self.skip_inbound(seq);
                }
            }
        }
        self.link_lost(
            now,
            kind,
            Cause {
                kind: failure.kind(),
                code: None,
                status,
                reason: failure.text(),
            },
            class,
            Some(&failure),
        );
    }

    /// Close the transport ourselves and treat it as lost.
    fn fail_link(&mut self, now: Instant, code: u16, reason: &str) {
        self.fail_link_with(
            now,
            Cause {
                kind: CauseKind::ProtocolError,
                code: Some(code),
                status: None,
                reason: reason.to_owned(),
            },
            CloseClass::Retry,
            code,
        );
    }

    fn fail_link_with(&mut self, now: Instant, cause: Cause, class: CloseClass, code: u16) {
        let kind = self.close_link(code, &cause.reason);
        self.link_lost(now, kind, cause, class, None);
    }

    /// Ends a lingering close: everything was delivered, or the linger passed.
    fn finish_close(&mut self, now: Instant) {
        let Some(Linger { code, reason }) = self.phase.take_linger() else {
            return;
        };
        self.close_now(now, code, &reason);
    }

    fn drop_retained(&mut self) {
        let events = &mut self.events;
        self.outbox.drain_all(|r| {
            let reason = if r.written {
                DropReason::Unconfirmed
            } else {
                DropReason::Stopped
            };
            events.push_back(Event::Dropped { id: r.id, reason });
        });
    }

    /// Counts the uptime of a connection that ends now (its phase changes right after).
    fn end_uptime(&mut self, now: Instant) {
        if let Some(since) = self.phase.connected_since() {
            self.tally.total_uptime += now.saturating_duration_since(since);
        }
    }

    fn arm_queue_expiry(&mut self) {
        match (self.config.queue.max_age, self.outbox.oldest_pending()) {
            (Some(age), Some(oldest)) => self.timers.set(Timer::QueueExpiry, later(oldest, age)),
            _ => self.timers.stop(Timer::QueueExpiry),
        }
    }

    fn flush_pending(&mut self, now: Instant) {
        let protocol = self.config.is_protocol();
        while self.link.is_ready() {
            // Written in plain mode, a message leaves for good (room for another); in
            // protocol mode it stays until acknowledged.
            let next = if protocol {
                self.outbox.pop_pending()
            } else {
                self.outbox.pop_written()
            };
            let Some(r) = next else {
                break;
            };
            if protocol {
                self.write_message(now, r);
            } else {
                let id = self.link.id().expect("ready link has an id");
                self.count_out(r.payload.len());
                self.actions.push_back(Action::Send {
                    id,
                    frame: r.payload,
                });
            }
        }
        self.arm_queue_expiry();
        self.close_if_delivered(now);
    }

    fn count_out(&mut self, size: usize) {
        self.tally.message_out(size);
    }

    /// Hands an inbound message to the user (in protocol mode, the one just received).
    fn deliver(&mut self, payload: Payload) {
        let size = payload.len();
        let seq = self
            .config
            .is_protocol()
            .then(|| self.proto.last_received());
        if size > self.config.max_message_bytes {
            self.events
                .push_back(Event::Error(TetherError::MessageTooLarge { size }));
            if let Some(seq) = seq {
                self.skip_inbound(seq);
            }
            return;
        }
        self.tally.message_in(size);
        self.queue_message(Event::Message(payload), size, seq);
    }
}

#[cfg(test)]
impl Connection {
    /// What the types cannot say, asserted by the tests after every step.
    fn check_invariants(&self) {
        let idle_timers = |what: &str| {
            for timer in Timer::ALL {
                if timer.scope() != Scope::Messages {
                    assert!(!self.timers.is_set(timer), "{timer} runs while {what}");
                }
            }
        };
        assert!(
            !self.fallback.has_parked() || matches!(self.link, Link::Ws { probe: true, .. }),
            "a parked polling transport with no probe out"
        );
        match &self.phase {
            Phase::Unstarted => {
                assert!(self.link.is_none(), "a transport before connect()");
                idle_timers("unstarted");
            }
            Phase::Stopped(_) => {
                assert!(self.link.is_none(), "a transport while stopped");
                assert!(!self.auth.is_fetching(), "a token fetch while stopped");
                idle_timers("stopped");
            }
            Phase::Running { step, linger } => {
                assert_eq!(
                    linger.is_some(),
                    self.timers.is_set(Timer::CloseLinger),
                    "a lingering close has its deadline"
                );
                if let Step::Attempting {
                    awaits_token: true, ..
                } = step
                {
                    assert!(self.link.is_none(), "a transport before the token");
                    assert!(self.auth.is_fetching(), "awaiting a token nobody fetches");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
