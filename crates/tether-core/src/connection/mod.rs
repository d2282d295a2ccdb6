//! The state machine: one logical connection, driven by a driver that does the I/O.
//!
//! See the crate docs for the driver loop. Inputs are the `connect`/`send`/`close` calls,
//! the `handle_*` calls and `handle_timeout`; outputs are drained with `poll_action`,
//! `poll_event` and `poll_timeout`.

mod heartbeat;
mod inbound;
mod link;
mod protocol;

use std::collections::VecDeque;

use crate::backoff::Backoff;
use crate::close::{classify_close, classify_http_status, CloseClass};
use crate::config::{Config, ConfigError};
use crate::io::{
    Action, Cause, DropReason, Event, Hint, MessageId, RequestId, SendError, TerminalReason,
    TetherError, Token, TransportFailure, TransportId,
};
use crate::metrics::Metrics;
use crate::payload::Payload;
use crate::quality::{reliability_score, Quality, QualityTracker};
use crate::queue::{Outbox, Retained};
use crate::rng::{Entropy, Rng};
use crate::state::State;
use crate::stats::RttStats;
use crate::time::{later, Duration, Instant};
use crate::timer::{Timer, TimerTable};

use link::{Link, LinkKind};

/// After this long connected, past failures are forgotten (backoff and the one auth
/// retry reset). Resetting at once would let a server that accepts and then drops every
/// connection cause a reconnect storm.
const STABLE_AFTER: Duration = Duration::from_secs(3);

/// Connection drops within this window lower the reliability score.
const DROP_WINDOW: Duration = Duration::from_secs(300);

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
    state: State,
    terminal: Option<TerminalReason>,
    backoff: Backoff,
    timers: TimerTable,
    actions: VecDeque<Action>,
    events: VecDeque<Event>,
    next_id: u64,

    /// The one transport that is open or being opened.
    link: Link,
    /// `connect()` was called (a Disconnected connection that was never started waits for it).
    started: bool,
    online: bool,
    ever_connected: bool,
    /// `close()` while messages were undelivered: deliver them (within `close_linger`),
    /// then close with this code and reason.
    closing: Option<(u16, String)>,
    retry_hint: Option<Duration>,

    token: Option<Token>,
    /// The token fetch in flight: only its answer counts.
    token_fetch: Option<RequestId>,
    /// An attempt waits for that fetch.
    attempt_waits_for_token: bool,
    auth_retry_used: bool,

    heartbeat: heartbeat::Heartbeat,
    stats: RttStats,
    quality: QualityTracker,
    drops: VecDeque<Instant>,

    outbox: Outbox,
    next_message: u64,
    proto: protocol::Reliable,
    inbound: inbound::Inbound,

    /// The next or current transport is HTTP polling.
    fallback_active: bool,
    /// Polling is on trial: the WebSocket failed, but until the polling endpoint answers
    /// (a Welcome), that may only mean the server is down or frozen, and polling would
    /// not help. Not reported as a fallback yet; a failed trial goes back to the
    /// WebSocket.
    fallback_trial: bool,
    ws_failures: u32,
    poll_interval: Duration,
    probe_due: bool,

    connected_at: Option<Instant>,
    total_uptime: Duration,
    reconnects: u32,
    last_cause: Option<Cause>,
    messages_in: u64,
    messages_out: u64,
    bytes_in: u64,
    bytes_out: u64,
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
        let poll_interval = config
            .fallback
            .as_ref()
            .map_or(Duration::from_millis(100), |f| f.min_interval);
        Ok(Connection {
            backoff: Backoff::new(config.backoff.clone()),
            stats: RttStats::new(config.quality.window),
            quality: QualityTracker::new(config.quality.hysteresis),
            rng,
            state: State::Disconnected,
            terminal: None,
            timers: TimerTable::default(),
            actions: VecDeque::new(),
            events: VecDeque::new(),
            next_id: 0,
            link: Link::None,
            started: false,
            online: true,
            ever_connected: false,
            closing: None,
            retry_hint: None,
            token: None,
            token_fetch: None,
            attempt_waits_for_token: false,
            auth_retry_used: false,
            heartbeat: heartbeat::Heartbeat::default(),
            drops: VecDeque::new(),
            outbox: Outbox::default(),
            next_message: 0,
            proto: protocol::Reliable::new(client_id),
            inbound: inbound::Inbound::default(),
            fallback_active: false,
            fallback_trial: false,
            ws_failures: 0,
            poll_interval,
            probe_due: false,
            connected_at: None,
            total_uptime: Duration::ZERO,
            reconnects: 0,
            last_cause: None,
            messages_in: 0,
            messages_out: 0,
            bytes_in: 0,
            bytes_out: 0,
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
        self.state
    }

    /// The reported quality level, once measured.
    #[must_use]
    pub fn quality(&self) -> Option<Quality> {
        self.quality.current()
    }

    /// Why the connection stopped, when it has.
    #[must_use]
    pub fn terminal_reason(&self) -> Option<&TerminalReason> {
        self.terminal.as_ref()
    }

    /// The configuration in force.
    #[must_use]
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The stable id this client presents to a Tether server.
    #[must_use]
    pub fn client_id(&self) -> u64 {
        self.proto.client_id
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
            .connected_at
            .map(|at| now.saturating_duration_since(at));
        let (unread_messages, unread_bytes, unread_bytes_peak) = self.inbound.unread();
        Metrics {
            state: self.state,
            attempt: if self.state == State::Connected {
                0
            } else {
                self.backoff.failures()
            },
            reconnects: self.reconnects,
            uptime,
            total_uptime: self.total_uptime + uptime.unwrap_or_default(),
            last_close_code: self.last_cause.as_ref().and_then(|c| c.code),
            last_close_reason: self.last_cause.as_ref().map(|c| c.reason.clone()),
            rtt: self.stats.last(),
            rtt_mean: self.stats.mean(),
            rtt_p50: self.stats.percentile(50.0),
            rtt_p99: self.stats.percentile(99.0),
            jitter: self.stats.jitter(),
            loss: self.stats.loss(),
            quality: self.quality.current(),
            reliability: self.reliability(now),
            messages_in: self.messages_in,
            messages_out: self.messages_out,
            bytes_in: self.bytes_in,
            bytes_out: self.bytes_out,
            queue_depth: self.outbox.len(),
            queue_bytes: self.outbox.bytes(),
            unread_messages,
            unread_bytes,
            unread_bytes_peak,
            reading_paused: self.inbound.is_paused(),
            fallback_active: self.fallback_active && !self.fallback_trial,
            terminal_reason: self.terminal.clone(),
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
        if matches!(self.terminal, Some(TerminalReason::DriverFailed(_))) {
            return;
        }
        self.started = true;
        if self.closing.take().is_some() {
            self.timers.stop(Timer::CloseLinger);
        }
        match self.state {
            State::Error | State::Closed => {
                self.abandon_link();
                self.terminal = None;
                self.backoff.reset();
                self.auth_retry_used = false;
                self.set_state(State::Connecting);
                self.start_attempt(now);
            }
            State::Disconnected if self.idle() => {
                self.set_state(if self.ever_connected {
                    State::Reconnecting
                } else {
                    State::Connecting
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
        if self.state.is_stopped() {
            return Err(SendError::Stopped(self.state));
        }
        if self.closing.is_some() {
            return Err(SendError::Closing);
        }
        let size = payload.len();
        if size > self.config.max_message_bytes {
            return Err(SendError::TooLarge {
                size,
                max: self.config.max_message_bytes,
            });
        }
        let protocol = self.config.is_protocol();
        if !protocol && self.link.is_ready() {
            self.next_message += 1;
            self.count_out(size);
            let id = self.link.id().expect("ready link has an id");
            self.actions.push_back(Action::Send { id, frame: payload });
            return Ok(MessageId(self.next_message));
        }
        let dropped = self.outbox.admit(size, &self.config.queue)?;
        for r in dropped {
            self.events.push_back(Event::Dropped {
                id: r.id,
                reason: DropReason::Overflow,
            });
        }
        self.next_message += 1;
        let id = MessageId(self.next_message);
        let retained = Retained {
            id,
            payload,
            enqueued: now,
            seq: 0,
        };
        if protocol && self.link.is_ready() && self.outbox.pending_len() == 0 {
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
        if self.state == State::Closed || self.closing.is_some() {
            return;
        }
        if self.state.is_stopped() || !self.undelivered() {
            return self.close_now(now, code, reason);
        }
        // Never started, or waiting for the network: deliver means connect.
        if self.state == State::Disconnected && self.idle() {
            self.reconnect(now);
        }
        self.closing = Some((code, reason.to_owned()));
        self.timers
            .set(Timer::CloseLinger, later(now, self.config.close_linger));
        self.flush_ack(now);
    }

    /// Close with `code` and `reason` at once: whatever is retained is reported `Dropped`
    /// (`Stopped` if never written, `Unconfirmed` if written but not acknowledged). Ends
    /// in `Closed`.
    pub fn close_now(&mut self, now: Instant, code: u16, reason: &str) {
        if self.state == State::Closed {
            return;
        }
        self.closing = None;
        self.flush_ack(now);
        for t in Timer::ALL {
            self.timers.stop(t);
        }
        self.attempt_waits_for_token = false;
        self.token_fetch = None;
        self.end_uptime(now);
        self.close_link(code, reason);
        self.clear_link_timers();
        self.heartbeat.reset();
        self.drop_retained();
        self.stop(
            State::Closed,
            TerminalReason::UserClosed {
                code,
                reason: reason.to_owned(),
            },
        );
    }

    /// `close()` is delivering what was sent before it.
    #[must_use]
    pub fn is_closing(&self) -> bool {
        self.closing.is_some()
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

    /// Whether [`Connection::send`] of a message of `size` bytes would find room in the
    /// outbound queue now (under `DropOldest`, by dropping older queued messages). Any
    /// other refusal (too large, stopped, closing) is `send`'s to report. A driver's
    /// waiting send tries again when this turns true.
    #[must_use]
    pub fn has_room_for(&self, size: usize) -> bool {
        self.outbox.has_room(size, &self.config.queue)
            || size > self.config.queue.max_bytes
            || size > self.config.max_message_bytes
    }

    /// Something sent is not delivered yet.
    fn undelivered(&self) -> bool {
        self.outbox.len() > 0
    }

    /// While closing: close once everything is delivered.
    fn close_if_delivered(&mut self, now: Instant) {
        if self.closing.is_some() && !self.undelivered() {
            self.finish_close(now);
        }
    }

    // ----- driver inputs -------------------------------------------------------------

    /// The driver can no longer run this connection (its task died): stop in `Error` with
    /// [`TerminalReason::DriverFailed`], report every message not yet acknowledged as
    /// `Dropped`, and stay stopped: `send` fails with `Stopped(Error)` from now on, and
    /// `reconnect` does nothing.
    pub fn handle_driver_failure(&mut self, now: Instant, why: &str) {
        if matches!(self.terminal, Some(TerminalReason::DriverFailed(_))) {
            return;
        }
        self.end_uptime(now);
        self.closing = None;
        self.stop_with_error(TerminalReason::DriverFailed(why.to_owned()));
        self.timers.stop(Timer::QueueExpiry);
        self.drop_retained();
    }

    /// The token provider answered [`Action::FetchToken`] `request`. An answer to a fetch
    /// the core no longer waits for (it timed out, or a newer one was asked) is ignored.
    pub fn handle_token(
        &mut self,
        now: Instant,
        request: RequestId,
        result: Result<Token, String>,
    ) {
        if self.token_fetch != Some(request) {
            return;
        }
        self.token_answered(now, result);
    }

    fn token_answered(&mut self, now: Instant, result: Result<Token, String>) {
        self.token_fetch = None;
        self.timers.stop(Timer::TokenFetch);
        // A token that expired before it arrived (the process slept while the provider
        // answered) would only be rejected: treat it as a failed fetch.
        let result = result.and_then(|token| match token.expires_at {
            Some(expires) if expires <= now => Err("the token had already expired".to_owned()),
            _ => Ok(token),
        });
        match result {
            Ok(token) => {
                if let Some(expires) = token.expires_at {
                    let lead = self
                        .config
                        .auth
                        .as_ref()
                        .map_or(Duration::ZERO, |a| a.refresh_lead);
                    let halfway = now + expires.saturating_duration_since(now) / 2;
                    let at = expires
                        .checked_sub(lead)
                        .map_or(halfway, |t| t.max(halfway));
                    self.timers.set(Timer::TokenRefresh, at);
                } else {
                    self.timers.stop(Timer::TokenRefresh);
                }
                let value = token.value.clone();
                self.token = Some(token);
                if self.attempt_waits_for_token {
                    self.attempt_waits_for_token = false;
                    if !self.state.is_stopped() && self.link.is_none() {
                        self.open_link(now, false);
                    }
                } else {
                    if self.config.is_protocol() && self.link.is_ready() {
                        self.transmit_envelope(
                            now,
                            crate::protocol::Envelope::Auth { token: value },
                        );
                    }
                    self.events.push_back(Event::TokenRefreshed);
                }
            }
            Err(e) => {
                self.events
                    .push_back(Event::Error(TetherError::TokenUnavailable(e.clone())));
                if self.attempt_waits_for_token {
                    self.attempt_waits_for_token = false;
                    self.token = None;
                    let cause = Cause {
                        reason: format!("token unavailable: {e}"),
                        ..Cause::default()
                    };
                    self.attempt_failed(now, cause, CloseClass::Retry, WsVerdict::NotWs);
                } else {
                    // A failed refresh: try again soon, well before the old token expires.
                    self.timers
                        .set(Timer::TokenRefresh, later(now, Duration::from_secs(5)));
                }
            }
        }
    }

    /// The WebSocket `id` is open.
    pub fn handle_opened(&mut self, now: Instant, id: TransportId) {
        if !self.link.is_opening_ws(id) {
            return;
        }
        if self.config.is_protocol() {
            self.link.set_ws_welcoming();
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
        self.heartbeat.control_pings = on;
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

    /// The answer to [`Action::Poll`] `request`: the response body, or why there is none.
    pub fn handle_poll_response(
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
                match self.state {
                    State::Connecting | State::Reconnecting if self.idle() => {
                        self.timers.stop(Timer::Backoff);
                        self.set_state(State::Disconnected);
                    }
                    State::Connected => self.check_liveness(now),
                    _ => {}
                }
            }
            Hint::Online => {
                self.online = true;
                match self.state {
                    State::Disconnected if self.started && self.idle() => {
                        self.backoff.reset();
                        self.reconnect(now);
                    }
                    State::Connecting | State::Reconnecting if self.idle() => {
                        self.backoff.reset();
                        self.reconnect(now);
                    }
                    State::Connected => self.check_liveness(now),
                    _ => {}
                }
            }
            Hint::Visible | Hint::Resumed => match self.state {
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
        let resumed = self.timers.next().is_some_and(|first| {
            first <= now && now.saturating_duration_since(first) >= self.config.resume_gap
        });
        if resumed {
            self.heartbeat.forget_ping(&mut self.timers);
        }
        let mut due: Vec<(usize, Timer, Instant)> = Timer::ALL
            .iter()
            .enumerate()
            .filter_map(|(i, t)| self.timers.get(*t).map(|at| (i, *t, at)))
            .filter(|(_, _, at)| *at <= now)
            .collect();
        // Ties in the table's order; an unstable sort, as elsewhere in the core, so that a
        // wasm build carries one sort algorithm.
        due.sort_unstable_by_key(|(i, _, at)| (*at, *i));
        for (_, timer, at) in due {
            // An earlier timer may have re-armed or stopped this one.
            if self.timers.get(timer) != Some(at) {
                continue;
            }
            self.timers.stop(timer);
            self.on_timer(now, timer);
        }
        if resumed {
            self.handle_hint(now, Hint::Resumed);
        }
    }

    // ----- internals -----------------------------------------------------------------

    fn on_timer(&mut self, now: Instant, timer: Timer) {
        match timer {
            Timer::Backoff => {
                if matches!(self.state, State::Connecting | State::Reconnecting) && self.idle() {
                    self.start_attempt(now);
                }
            }
            Timer::ConnectTimeout => {
                if !self.link.is_none() {
                    // A failed attempt like any other: the app hears of it.
                    self.events
                        .push_back(Event::Error(TetherError::AttemptFailed(
                            TransportFailure::Timeout,
                        )));
                    self.fail_link_with(
                        now,
                        Cause {
                            reason: "connect timeout".into(),
                            ..Cause::default()
                        },
                        CloseClass::Retry,
                        1000,
                    );
                }
            }
            Timer::TokenFetch => {
                if self.token_fetch.is_some() {
                    self.token_answered(now, Err("token provider timed out".into()));
                }
            }
            Timer::TokenRefresh => {
                if self.state == State::Connected && self.token_fetch.is_none() {
                    self.request_token(now);
                }
            }
            Timer::Heartbeat => self.send_ping(now),
            Timer::PongDeadline => self.on_pong_deadline(now),
            Timer::Liveness => {
                self.fail_link_with(
                    now,
                    Cause {
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
                    if self.state != State::Connected {
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
                            reason: "poll request timed out".into(),
                            ..Cause::default()
                        },
                        CloseClass::Retry,
                        1000,
                    );
                }
            }
            Timer::UpgradeProbe => {
                self.probe_due = true;
                self.try_probe(now);
            }
            Timer::CloseLinger => self.finish_close(now),
            Timer::QueueExpiry => {
                if let Some(age) = self.config.queue.max_age {
                    for r in self.outbox.expire(now, age) {
                        self.events.push_back(Event::Dropped {
                            id: r.id,
                            reason: DropReason::Expired,
                        });
                    }
                }
                self.arm_queue_expiry();
            }
            Timer::Stable => self.forget_failures(),
        }
    }

    /// The wait before the next WebSocket probe while polling: the configured
    /// `probe_interval`, give or take a fifth at random (so that clients behind one
    /// proxy do not probe in step). It does not grow: a WebSocket allowed again is back
    /// within 1.2 × `probe_interval` (plus the probe's own handshake).
    fn probe_wait(&mut self) -> Duration {
        let Some(fallback) = &self.config.fallback else {
            return Duration::MAX; // no polling, so no probe
        };
        let factor = 0.8 + 0.4 * self.rng.next_f64();
        Duration::try_from_secs_f64(fallback.probe_interval.as_secs_f64() * factor)
            .unwrap_or(Duration::MAX)
    }

    /// No transport and no token fetch: nothing is under way.
    fn idle(&self) -> bool {
        self.link.is_none() && !self.attempt_waits_for_token
    }

    fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn set_state(&mut self, to: State) {
        let from = self.state;
        if from == to {
            return;
        }
        debug_assert!(from.can_become(to), "illegal transition {from} -> {to}");
        self.state = to;
        self.events.push_back(Event::StateChanged { from, to });
    }

    fn stop(&mut self, to: State, reason: TerminalReason) {
        self.set_state(to);
        self.terminal = Some(reason.clone());
        self.events.push_back(Event::Stopped(reason));
    }

    fn start_attempt(&mut self, now: Instant) {
        if self.config.auth.is_some() {
            self.attempt_waits_for_token = true;
            if self.token_fetch.is_none() {
                self.request_token(now);
            }
        } else {
            self.open_link(now, false);
        }
    }

    fn request_token(&mut self, now: Instant) {
        let Some(auth) = &self.config.auth else {
            return;
        };
        let fetch_timeout = auth.fetch_timeout;
        let request = RequestId(self.next_id());
        self.token_fetch = Some(request);
        self.timers
            .set(Timer::TokenFetch, later(now, fetch_timeout));
        self.actions.push_back(Action::FetchToken { request });
    }

    fn on_connected(&mut self, now: Instant) {
        self.timers.stop(Timer::ConnectTimeout);
        // A hint belongs to the close that follows it, not to some later failure.
        self.retry_hint = None;
        if self.link.is_ws() {
            self.ws_failures = 0;
            if self.fallback_active {
                self.fallback_active = false;
                self.timers.stop(Timer::PollReceive);
                self.timers.stop(Timer::UpgradeProbe);
                if !std::mem::take(&mut self.fallback_trial) {
                    self.events
                        .push_back(Event::FallbackChanged { active: false });
                }
            }
            self.heartbeat.start(now, &self.config, &mut self.timers);
        } else {
            if std::mem::take(&mut self.fallback_trial) {
                // The polling endpoint answers where the WebSocket did not: a fallback.
                self.events
                    .push_back(Event::FallbackChanged { active: true });
            }
            self.poll_interval = self
                .config
                .fallback
                .as_ref()
                .map_or(self.poll_interval, |f| f.min_interval);
            let wait = self.probe_wait();
            self.timers.set(Timer::UpgradeProbe, later(now, wait));
            self.issue_poll_receive(now);
        }
        if self.state != State::Connected {
            if self.ever_connected {
                self.reconnects += 1;
            }
            self.ever_connected = true;
            self.connected_at = Some(now);
            self.timers.set(Timer::Stable, later(now, STABLE_AFTER));
            self.set_state(State::Connected);
        }
        self.flush_pending(now);
    }

    /// The transport is gone (its closing was reported or decided); what next.
    fn link_lost(
        &mut self,
        now: Instant,
        kind: LinkKind,
        cause: Cause,
        class: CloseClass,
        failure: Option<&TransportFailure>,
    ) {
        self.clear_link_timers();
        self.heartbeat.reset();
        if self.state.is_stopped() {
            return;
        }
        if kind == LinkKind::WsProbe {
            // The WebSocket probe failed: polling goes on.
            self.open_link(now, false);
            return;
        }
        self.last_cause = Some(cause.clone());
        if self.state == State::Connected {
            let connected_for = self
                .connected_at
                .map_or(Duration::ZERO, |at| now.saturating_duration_since(at));
            if connected_for >= STABLE_AFTER {
                // The Stable timer may not have been served (the process slept).
                self.forget_failures();
            }
            self.end_uptime(now);
            self.note_drop(now);
            // What was measured belongs to the transport that is gone: quality is
            // unknown until the next one is measured, not the last known (an outage's
            // missed pings would weigh on a good new connection for a whole window).
            self.stats.clear();
            self.quality.reset();
            self.events.push_back(Event::Disconnected {
                cause: cause.clone(),
                connected_for,
            });
            self.set_state(State::Disconnected);
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
        self.auth_retry_used = false;
    }

    /// An attempt (or a connection) failed with `class`: retry, fall back, or stop.
    fn attempt_failed(&mut self, now: Instant, cause: Cause, class: CloseClass, ws: WsVerdict) {
        match class {
            CloseClass::Replaced => return self.stop_with_error(TerminalReason::Replaced(cause)),
            CloseClass::Fatal => return self.stop_with_error(TerminalReason::Fatal(cause)),
            CloseClass::AuthRejected => {
                if self.config.auth.is_some() && !self.auth_retry_used {
                    self.auth_retry_used = true;
                    self.token = None;
                    self.enter_retrying();
                    self.start_attempt(now);
                } else {
                    self.stop_with_error(TerminalReason::AuthRejected(cause));
                }
                return;
            }
            _ => {}
        }
        if matches!(ws, WsVerdict::Failed | WsVerdict::Blocked) {
            self.ws_failures += 1;
        }
        if self.fallback_trial && ws == WsVerdict::NotWs {
            // Polling failed too: the server is down or frozen, not the WebSocket
            // blocked. Back to the WebSocket, with the backoff going on.
            self.fallback_trial = false;
            self.fallback_active = false;
            self.ws_failures = 0;
        }
        let blocked = ws == WsVerdict::Blocked;
        if let Some(fallback) = &self.config.fallback {
            if !self.fallback_active && (blocked || self.ws_failures >= fallback.after_failures) {
                self.fallback_active = true;
                if blocked {
                    // The platform says so: no trial needed.
                    self.events
                        .push_back(Event::FallbackChanged { active: true });
                } else {
                    self.fallback_trial = true;
                }
                self.enter_retrying();
                self.open_link(now, false);
                return;
            }
        } else if blocked {
            return self.stop_with_error(TerminalReason::Fatal(cause));
        }
        if !self.online {
            self.set_state(State::Disconnected);
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
        if self.state == State::Connected {
            self.set_state(State::Disconnected);
        }
        self.set_state(State::Reconnecting);
    }

    fn stop_with_error(&mut self, reason: TerminalReason) {
        if self.closing.take().is_some() {
            // The close will not be completed: what it was delivering is given up.
            self.drop_retained();
        }
        self.abandon_link();
        for t in Timer::ALL {
            if t != Timer::QueueExpiry {
                self.timers.stop(t);
            }
        }
        self.token_fetch = None;
        self.attempt_waits_for_token = false;
        self.stop(State::Error, reason);
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
        if self.state != State::Connected {
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
                code: None,
                status,
                reason: failure.to_string(),
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
        let Some((code, reason)) = self.closing.take() else {
            return;
        };
        self.close_now(now, code, &reason);
    }

    fn drop_retained(&mut self) {
        for r in self.outbox.drain_all() {
            let reason = if r.seq == 0 {
                DropReason::Stopped
            } else {
                DropReason::Unconfirmed
            };
            self.events.push_back(Event::Dropped { id: r.id, reason });
        }
    }

    fn end_uptime(&mut self, now: Instant) {
        if let Some(at) = self.connected_at.take() {
            self.total_uptime += now.saturating_duration_since(at);
        }
    }

    fn arm_queue_expiry(&mut self) {
        match (self.config.queue.max_age, self.outbox.oldest_pending()) {
            (Some(age), Some(oldest)) => self.timers.set(Timer::QueueExpiry, later(oldest, age)),
            _ => self.timers.stop(Timer::QueueExpiry),
        }
    }

    fn flush_pending(&mut self, now: Instant) {
        while self.link.is_ready() {
            let Some(r) = self.outbox.pop_pending() else {
                break;
            };
            if self.config.is_protocol() {
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
        self.messages_out += 1;
        self.bytes_out += size as u64;
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
        self.messages_in += 1;
        self.bytes_in += size as u64;
        self.queue_message(Event::Message(payload), size, seq);
    }

    fn reliability(&self, now: Instant) -> u8 {
        let recent = self
            .drops
            .iter()
            .filter(|t| now.saturating_duration_since(**t) < DROP_WINDOW)
            .count();
        reliability_score(
            self.stats.loss(),
            self.stats.mean(),
            self.stats.jitter(),
            u32::try_from(recent).unwrap_or(u32::MAX),
        )
    }

    /// Remembers a drop for the reliability score: only the last
    /// [`DROPS_COUNTED`](crate::quality::DROPS_COUNTED) within [`DROP_WINDOW`] count, so
    /// only they are kept, whatever else arrives or not.
    fn note_drop(&mut self, now: Instant) {
        self.drops.push_back(now);
        self.trim_drops(now);
    }

    fn trim_drops(&mut self, now: Instant) {
        let counted = crate::quality::DROPS_COUNTED as usize;
        while self.drops.len() > counted
            || self
                .drops
                .front()
                .is_some_and(|t| now.saturating_duration_since(*t) >= DROP_WINDOW)
        {
            self.drops.pop_front();
        }
    }

    fn update_quality(&mut self, now: Instant) {
        self.trim_drops(now);
        if self.stats.samples() == 0 {
            return;
        }
        let rtt = self.stats.mean().unwrap_or(Duration::MAX);
        let level = crate::quality::classify(rtt, self.stats.loss(), &self.config.quality);
        if let Some(quality) = self.quality.observe(level) {
            let reliability = self.reliability(now);
            self.events.push_back(Event::QualityChanged {
                quality,
                reliability,
            });
        }
    }
}

/// What a failed attempt says about the WebSocket itself, for the fallback decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum WsVerdict {
    /// Not a WebSocket attempt (polling, or no transport yet).
    NotWs,
    /// The WebSocket failed after reaching something: counts toward the fallback.
    Failed,
    /// Nothing listens at all: polling would fail the same way, so it does not count.
    Refused,
    /// WebSockets cannot be used here: fall back at once.
    Blocked,
}

#[cfg(test)]
mod tests;
