//! The harness: one [`Connection`], inside the drivers' own [`Dispatcher`], driven the way
//! a real driver drives it, on virtual time, against the simulated network and server.
//!
//! Each step jumps the clock to the earliest of the dispatcher's `poll_timeout()` and the
//! agenda (network deliveries, scheduled faults, user actions, server messages), feeds
//! that one input to the dispatcher, drains `poll_command()`, `poll_event()` and
//! `poll_completion()` until empty, performs each command as a driver would, and checks
//! every invariant (the dispatcher's tables and answers included). The drive loop is
//! bounded: a cap on steps, and a livelock detector that fails the run when too many
//! steps pass without virtual time moving.

use tether_core::rng::Rng;
use tether_core::{
    Config, Connection, DeliveryError, Duration, Event, Hint, MessageId, Payload, RequestId,
    SendError, State, Token, TokenPlacement, TransportFailure, TransportId,
};
use tether_dispatch::transport::SocketEvent;
use tether_dispatch::{Command, Completion, Dispatcher, Handles};

use crate::check::{Checker, Violation};
use crate::clock::{Agenda, Clock};
use crate::net::{LinkKind, Net};
use crate::rand::Draw;
use crate::server::{
    make_token, numbered_payload, Party, PollArrival, Server, ServerOut, ServerWire,
};
use crate::trace::Trace;

/// What the simulated driver keeps in the dispatcher: nothing to cancel or write through
/// (the network is the agenda), and callers by number (a confirmed send by its message's
/// number, a `close()` by the order of the calls).
#[derive(Clone, Copy, Debug)]
pub struct SimHandles;

impl Handles for SimHandles {
    type Task = ();
    type Socket = ();
    type Sent = u64;
    type Flushed = u64;
    type Closed = u64;
}

/// After the core closes a WebSocket whose close frame cannot get through, how long the
/// driver waits before dropping it (as the native driver's `CLOSE_GRACE`).
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// How the token provider behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenMode {
    /// Answers with a fresh token after a short delay.
    Normal,
    /// Answers with an error.
    Fail,
    /// Never answers (the core's fetch timeout must fire).
    Hang,
}

/// A fault, injected now or at a scheduled time.
#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    /// Connects and polls are refused (or no longer).
    Refuse(bool),
    /// Connects get no answer (or do again).
    Hang(bool),
    /// WebSocket upgrades fail like this while polls work; `None` lifts it.
    Blocked(Option<TransportFailure>),
    /// Extra one-way latency from now on (zero ends a spike).
    Latency(Duration),
    /// The server closes the current transport with this code (`None`: abnormally),
    /// after a retry hint of this many ms (protocol mode).
    ServerDrop {
        /// Close code.
        code: Option<u16>,
        /// `R` envelope sent first.
        retry_ms: Option<u64>,
    },
    /// The network resets the current transport: both ends see an error.
    NetReset,
    /// The current transport goes half-open: nothing gets through, nobody is told (until
    /// the OS gives up on it much later).
    Stall,
    /// The server restarts: its sockets die, it refuses connections for `downtime`, and
    /// with `lose_state` it forgets every session.
    Restart {
        /// How long it is down.
        downtime: Duration,
        /// Sessions are lost.
        lose_state: bool,
        /// Going away (1001, frames in flight still arrive) rather than a crash.
        graceful: bool,
    },
    /// The server rejects every token (or stops doing so).
    AuthOutage(bool),
    /// The server closes the current WebSocket with 4401.
    Revoke,
    /// The token provider changes behaviour.
    Tokens(TokenMode),
    /// The network goes away (`handle_hint(Offline)`), stalling or resetting the current
    /// transport.
    Offline {
        /// Reset (the OS noticed) rather than stall.
        reset: bool,
    },
    /// The network is back (`handle_hint(Online)`).
    Online,
    /// A platform hint alone.
    Hint(Hint),
    /// The client process sleeps this long: no timer fires, nothing reaches it, then
    /// everything it missed arrives at once.
    Sleep {
        /// How long.
        duration: Duration,
        /// The socket died meanwhile (a NAT forgot it): it is half-open on wake.
        stall: bool,
    },
}

/// Something the user does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UserAction {
    /// `send` this many messages at once.
    Send(u32),
    /// `close(1000, "bye")`.
    Close,
    /// `reconnect()`.
    Reconnect,
}

/// Everything that can be due at a virtual time.
#[derive(Clone, Debug)]
pub enum SimEvent {
    /// The WebSocket handshake of this transport completes (or fails) now.
    ConnectDone(TransportId),
    /// A frame reaches the server.
    ToServer(TransportId, Payload),
    /// The server learns the WebSocket closed.
    ServerSeesClose(TransportId),
    /// A frame reaches the client.
    ToClient(TransportId, Payload),
    /// The client learns its WebSocket closed.
    ClientSeesClose(TransportId, Option<u16>, String),
    /// The client's WebSocket failed.
    ClientSeesFailure(TransportId, TransportFailure),
    /// A polling request reaches the server.
    PollArrives {
        /// The polling session (not visible to the server).
        tid: TransportId,
        /// The client's id from the URL.
        client_id: Option<u64>,
        /// The transport's number from the URL (`t`).
        attempt: Option<u64>,
        /// The token presented.
        token: Option<String>,
        /// The session's secret presented (the `Tether-Session` header).
        secret: Option<tether_core::protocol::SessionSecret>,
        /// The request.
        request: RequestId,
        /// Its batch.
        body: Vec<u8>,
    },
    /// A polling response reaches the client.
    PollAnswer(TransportId, RequestId, Result<Vec<u8>, TransportFailure>),
    /// The token provider answers.
    TokenAnswer(RequestId, Result<Token, String>),
    /// The server checks a WebSocket's token against its expiry.
    TokenDue(TransportId),
    /// The operating system gives up on a half-open socket.
    OsReset(TransportId),
    /// The server accepts connections again.
    ServerUp,
    /// The client process wakes from a sleep.
    Wake,
    /// A fault.
    Fault(Fault),
    /// A user action.
    User(UserAction),
    /// The server application sends a message.
    ServerApp,
    /// The adversary tries to reach the client's session: a forged Hello (on a
    /// WebSocket or a polling request) or a polling request with a guessed `t`.
    Adversary,
    /// The slow reader takes the next message from the application's queue.
    AppRead,
    /// The driver has wound down a WebSocket the core closed: it is gone.
    SocketGone(TransportId),
}

impl SimEvent {
    /// Events the client must be awake for.
    fn needs_client(&self) -> bool {
        match self {
            SimEvent::ConnectDone(_)
            | SimEvent::ToClient(..)
            | SimEvent::ClientSeesClose(..)
            | SimEvent::ClientSeesFailure(..)
            | SimEvent::PollAnswer(..)
            | SimEvent::TokenAnswer(..)
            | SimEvent::AppRead
            | SimEvent::SocketGone(_)
            | SimEvent::User(_) => true,
            SimEvent::Fault(f) => matches!(
                f,
                Fault::Hint(_) | Fault::Offline { .. } | Fault::Online | Fault::Sleep { .. }
            ),
            _ => false,
        }
    }

    /// Scheduled faults, user actions and server messages: none after healing.
    fn is_scripted(&self) -> bool {
        matches!(
            self,
            SimEvent::Fault(_) | SimEvent::User(_) | SimEvent::ServerApp | SimEvent::Adversary
        )
    }
}

/// Knobs of the harness that are not the core's configuration.
#[derive(Clone, Debug)]
pub struct Params {
    /// Fixed part of the one-way latency.
    pub base_latency: Duration,
    /// Random part of the one-way latency.
    pub jitter: Duration,
    /// Lifetime of each token the provider hands out.
    pub token_ttl: Duration,
    /// Largest padding of a message, in bytes.
    pub pad_max: usize,
    /// Share of binary messages.
    pub binary_share: f64,
    /// A half-open socket is reset by the OS after this long.
    pub os_reset_after: Duration,
    /// Most steps in one run.
    pub max_steps: u64,
    /// Most steps without virtual time moving.
    pub livelock_steps: u64,
    /// Record a trace (for failures).
    pub trace: bool,
    /// Lines of trace kept.
    pub trace_lines: usize,
    /// Keep every event and action with its time (for scenario tests).
    pub record: bool,
    /// The application reads one message from its queue per this much virtual time;
    /// `None`: it reads each one as it arrives.
    pub slow_reader: Option<Duration>,
    /// Seed of the network, the provider and the payloads.
    pub seed: u64,
    /// The server's resume limits, with an application that waits for room in them
    /// before it sends (as `Hub::send_to_user_wait` does); `None`: limits so large that
    /// only a lost session resets the numbering, and an application that never waits.
    pub server_limits: Option<tether_core::protocol::ResumeLimits>,
    /// The platform cannot tell a refused connect from a failure on the way (a browser
    /// cannot): a WebSocket or polling request to a server that is down fails as
    /// `Network`, not `Refused`, so the failures of a restart count toward the fallback.
    pub browser: bool,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            base_latency: Duration::from_millis(20),
            jitter: Duration::from_millis(10),
            token_ttl: Duration::from_secs(60),
            pad_max: 16,
            binary_share: 0.2,
            os_reset_after: Duration::from_secs(90),
            max_steps: 2_000_000,
            livelock_steps: 20_000,
            trace: false,
            trace_lines: 200,
            record: false,
            slow_reader: None,
            seed: 1,
            server_limits: None,
            browser: false,
        }
    }
}

/// Counts of what happened, for scenario tests and the summary.
#[derive(Clone, Debug, Default)]
pub struct Counters {
    /// `Open` actions.
    pub opens: u32,
    /// `Poll` actions.
    pub polls: u32,
    /// `FetchToken` actions.
    pub fetches: u32,
    /// `Close` actions.
    pub closes: u32,
    /// Frames written by the client (`Send` actions).
    pub frames_out: u64,
    /// Steps taken.
    pub steps: u64,
    /// Moves the adversary made (forged Hellos and polling requests).
    pub adversary: u64,
    /// Callers the dispatcher answered (confirmed sends, `close()` calls).
    pub answered: u64,
}

/// The application's side of its event queue: what it has not read yet.
#[derive(Clone, Debug, Default)]
pub struct Reader {
    /// Payload sizes of the messages queued and not yet read, oldest first.
    pub unread: std::collections::VecDeque<u64>,
    /// An `AppRead` is scheduled.
    reading: bool,
    /// Messages read so far.
    pub read: u64,
    /// The most messages ever waiting.
    pub peak: usize,
}

/// One simulated world: a client connection, the network, the server, the checker.
pub struct Sim {
    /// Virtual time.
    pub clock: Clock,
    agenda: Agenda<SimEvent>,
    /// The connection under test, in its dispatcher.
    pub dispatch: Dispatcher<SimHandles>,
    /// Confirmed sends not answered yet: message number → id.
    confirming: std::collections::BTreeMap<u64, MessageId>,
    /// `close()` calls not answered yet, and the number of the next.
    closing: (std::collections::BTreeSet<u64>, u64),
    config: Config,
    /// The network.
    pub net: Net,
    /// The server.
    pub server: Server,
    /// The invariant checker.
    pub check: Checker,
    /// The trace.
    pub trace: Trace,
    params: Params,
    rng: Rng,
    token_serial: u64,
    /// How the token provider behaves now.
    pub token_mode: TokenMode,
    asleep_until: Option<Duration>,
    next_number: u64,
    still_steps: u64,
    sent_this_step: bool,
    /// Draws the adversary's choices (apart from the rest, so the network and the
    /// payloads draw the same with or without it).
    adversary_rng: Rng,
    /// Adversary connections opened so far.
    adversary_conns: u64,
    /// `Server::fresh_client_sessions` when last looked at.
    fresh_seen: u64,
    last_time: Duration,
    /// What happened, counted.
    pub counters: Counters,

    /// The application's queue of messages, as the slow reader sees it.
    pub reader: Reader,
    /// What the driver has not read from the socket because the core paused reading
    /// (frames and closes, in order), handed over once it reads again.
    unread_socket: std::collections::VecDeque<SimEvent>,

    /// Every event with its virtual time (when `Params::record`).
    pub events: Vec<(Duration, Event)>,
    /// Every command with its virtual time (when `Params::record`).
    pub actions: Vec<(Duration, Command<SimHandles>)>,
}

macro_rules! trace {
    ($sim:expr, $kind:expr, $($arg:tt)*) => {
        if $sim.trace.enabled() {
            let at = $sim.clock.elapsed();
            $sim.trace.line(at, $kind, format_args!($($arg)*));
        }
    };
}

impl Sim {
    /// A world around a connection made with `config`.
    pub fn new(config: Config, params: Params) -> Result<Self, tether_core::ConfigError> {
        let clock = Clock::new();
        let conn = Connection::new(
            config.clone(),
            clock.now(),
            tether_core::Entropy::fixed(params.seed),
        )?;
        let wire = match &config.wire {
            tether_core::WireMode::Protocol => ServerWire::Protocol,
            tether_core::WireMode::Plain { heartbeat } => ServerWire::Plain {
                heartbeat: heartbeat.clone(),
            },
            _ => ServerWire::Plain { heartbeat: None },
        };
        Ok(Sim {
            agenda: Agenda::new(),
            net: Net::new(
                params.seed ^ 0x6e65_7477,
                params.base_latency,
                params.jitter,
            ),
            server: {
                let mut server = Server::new(wire, config.auth.is_some(), params.seed);
                if let Some(limits) = params.server_limits {
                    server.wait_for_room(limits);
                }
                server
            },
            check: Checker::new(&config),
            trace: Trace::new(params.trace, params.trace_lines),
            rng: Rng::new(params.seed ^ 0x7573_6572),
            token_serial: 0,
            token_mode: TokenMode::Normal,
            asleep_until: None,
            next_number: 0,
            still_steps: 0,
            sent_this_step: false,
            adversary_rng: Rng::new(params.seed ^ 0xad7e_5a11),
            adversary_conns: 0,
            fresh_seen: 0,
            last_time: Duration::ZERO,
            counters: Counters::default(),

            reader: Reader::default(),
            unread_socket: std::collections::VecDeque::new(),
            events: Vec::new(),
            actions: Vec::new(),
            dispatch: Dispatcher::new(conn, clock.now()),
            confirming: std::collections::BTreeMap::new(),
            closing: (std::collections::BTreeSet::new(), 0),
            clock,
            config,
            params,
        })
    }

    /// The connection under test.
    #[must_use]
    pub fn conn(&self) -> &Connection {
        self.dispatch.connection()
    }

    /// Callers still waiting: confirmed sends and `close()` calls.
    #[must_use]
    pub fn waiting_callers(&self) -> (usize, usize) {
        (self.confirming.len(), self.closing.0.len())
    }

    /// The configuration of the connection.
    #[must_use]
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Virtual time since the start.
    #[must_use]
    pub fn now(&self) -> Duration {
        self.clock.elapsed()
    }

    /// Schedules `event` at virtual time `at` (now, if `at` has passed).
    pub fn schedule(&mut self, at: Duration, event: SimEvent) {
        let at = at.max(self.clock.elapsed());
        self.agenda.push(at, event);
    }

    /// Schedules `event` `after` from now.
    pub fn schedule_in(&mut self, after: Duration, event: SimEvent) {
        self.schedule(self.clock.elapsed() + after, event);
    }

    /// The user calls `connect()`.
    pub fn connect(&mut self) -> Result<(), Violation> {
        trace!(self, "user", "connect()");
        self.dispatch.connection_mut().connect(self.clock.now());
        self.settle()
    }

    /// The user does `action` now.
    pub fn user(&mut self, action: UserAction) -> Result<(), Violation> {
        self.apply(SimEvent::User(action))?;
        self.settle()
    }

    /// Injects `fault` now.
    pub fn inject(&mut self, fault: Fault) -> Result<(), Violation> {
        self.apply(SimEvent::Fault(fault))?;
        self.settle()
    }

    /// The server application sends one message now.
    pub fn server_send(&mut self) -> Result<(), Violation> {
        self.apply(SimEvent::ServerApp)?;
        self.settle()
    }

    // ----- the drive loop --------------------------------------------------------------

    /// Serves the next input (a core timer or an agenda item). `Ok(false)` when nothing
    /// at all is pending.
    pub fn step(&mut self) -> Result<bool, Violation> {
        let now = self.clock.elapsed();
        let timer = match self.asleep_until {
            Some(_) => None,
            None => self
                .dispatch
                .poll_timeout()
                .map(|t| self.clock.offset_of(t).max(now)),
        };
        let event = self.agenda.next_at();
        let use_timer = match (timer, event) {
            (None, None) => return Ok(false),
            (Some(t), Some(e)) => t < e,
            (Some(_), None) => true,
            (None, Some(_)) => false,
        };
        if use_timer {
            let at = timer.expect("timer");
            self.clock.advance_to(at);
            if self.trace.enabled() {
                let which = self.conn().next_timer().map(|(t, _)| t);
                trace!(self, "timer", "{which:?}");
            }
            self.dispatch.handle_timeout(self.clock.now());
        } else {
            let (at, ev) = self.agenda.pop().expect("event");
            if let Some(wake) = self.asleep_until {
                if ev.needs_client() && at < wake {
                    self.agenda.push(wake, ev);
                    return Ok(true);
                }
            }
            self.clock.advance_to(at);
            self.apply(ev)?;
        }
        self.settle()?;
        self.counters.steps += 1;
        if self.counters.steps > self.params.max_steps {
            return Err(Violation {
                invariant: "bounded run",
                detail: format!("more than {} steps", self.params.max_steps),
            });
        }
        if self.clock.elapsed() == self.last_time {
            self.still_steps += 1;
            if self.still_steps > self.params.livelock_steps {
                return Err(Violation {
                    invariant: "no livelock",
                    detail: format!(
                        "{} steps without virtual time moving (next timer {:?})",
                        self.still_steps,
                        self.conn().next_timer().map(|(t, _)| t)
                    ),
                });
            }
        } else {
            self.still_steps = 0;
            self.last_time = self.clock.elapsed();
        }
        Ok(true)
    }

    /// Runs every input due up to virtual time `until`, then moves the clock there.
    pub fn run_until(&mut self, until: Duration) -> Result<(), Violation> {
        loop {
            let timer = match self.asleep_until {
                Some(_) => None,
                None => self
                    .dispatch
                    .poll_timeout()
                    .map(|t| self.clock.offset_of(t)),
            };
            let next = match (timer, self.agenda.next_at()) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            match next {
                Some(at) if at <= until => {
                    self.step()?;
                }
                _ => break,
            }
        }
        self.clock.advance_to(until);
        Ok(())
    }

    /// Runs for `d` of virtual time.
    pub fn run_for(&mut self, d: Duration) -> Result<(), Violation> {
        self.run_until(self.clock.elapsed() + d)
    }

    /// Runs until `done` holds (checked after every step), failing after `limit` of
    /// virtual time or when nothing is left to do.
    pub fn run_until_true(
        &mut self,
        limit: Duration,
        what: &'static str,
        mut done: impl FnMut(&Sim) -> bool,
    ) -> Result<(), Violation> {
        let deadline = self.clock.elapsed() + limit;
        loop {
            if done(self) {
                return Ok(());
            }
            if self.clock.elapsed() > deadline {
                return Err(Violation {
                    invariant: what,
                    detail: format!("not reached within {limit:?}; {}", self.describe()),
                });
            }
            if !self.step()? {
                return Err(Violation {
                    invariant: what,
                    detail: format!("nothing left to do; {}", self.describe()),
                });
            }
        }
    }

    /// A one-line picture of the world, for failure messages.
    #[must_use]
    pub fn describe(&self) -> String {
        let m = self.conn().metrics(self.clock.now());
        format!(
            "state {}, queue {}, fallback {}, terminal {:?}, next timer {:?}, agenda {}, net {:?}, server up {}",
            m.state,
            m.queue_depth,
            m.fallback_active,
            m.terminal_reason,
            self.conn().next_timer().map(|(t, _)| t),
            self.agenda.len(),
            self.net.conditions,
            self.server.up,
        )
    }

    /// After an input: drain the core's outputs until empty, acting on each, then check.
    fn settle(&mut self) -> Result<(), Violation> {
        loop {
            let mut progressed = false;
            while let Some(command) = self.dispatch.poll_command() {
                progressed = true;
                self.perform(command)?;
            }
            while let Some(event) = self.dispatch.poll_event() {
                progressed = true;
                self.observe(event)?;
            }
            while let Some(completion) = self.dispatch.poll_completion() {
                progressed = true;
                self.complete(completion)?;
            }
            if !progressed {
                break;
            }
        }
        if self.conn().wants_read() && !self.unread_socket.is_empty() {
            // Reading again: what waited in the sockets comes in, in order, now.
            let now = self.clock.elapsed();
            for event in std::mem::take(&mut self.unread_socket) {
                self.agenda.push(now, event);
            }
        }
        self.after_step()
    }

    fn after_step(&mut self) -> Result<(), Violation> {
        if self.server.fresh_client_sessions != self.fresh_seen {
            // Not the first session: the client's newest Hello got a fresh one.
            if self.fresh_seen > 0 || self.server.fresh_client_sessions > 1 {
                self.check.session_abandoned();
            }
            self.fresh_seen = self.server.fresh_client_sessions;
        }
        if let Some(fault) = self.server.faults.first() {
            return Err(Violation {
                invariant: "the client follows the protocol",
                detail: fault.0.clone(),
            });
        }
        self.check.server_received(&self.server.app.received)?;
        if self.conn().state() != self.check.state {
            return Err(Violation {
                invariant: "state changes chain",
                detail: format!(
                    "state() is {} but the events say {}",
                    self.conn().state(),
                    self.check.state
                ),
            });
        }
        // `metrics()` is most of a step's cost (it computes percentiles), so the queue
        // bounds are read after every step that called `send()` (the only input that
        // adds to the queue) and, as a black-box safety net, every 16th step.
        if std::mem::take(&mut self.sent_this_step) || self.counters.steps % 16 == 0 {
            let m = self.conn().metrics(self.clock.now());
            self.check.queue(m.queue_depth, m.queue_bytes)?;
            let waiting = self.reader.unread.len() as u64;
            let bytes: u64 = self.reader.unread.iter().sum();
            if (m.unread_messages, m.unread_bytes) != (waiting, bytes) {
                return Err(Violation {
                    invariant: "unread counts what the application has not read",
                    detail: format!(
                        "the core counts {} messages / {} bytes, the application's queue holds {waiting} / {bytes}",
                        m.unread_messages, m.unread_bytes
                    ),
                });
            }
        }
        Ok(())
    }

    // ----- the driver: actions ---------------------------------------------------------

    fn perform(&mut self, command: Command<SimHandles>) -> Result<(), Violation> {
        let now = self.clock.elapsed();
        trace!(self, "action", "{}", brief_command(&command));
        if self.params.record {
            self.actions.push((now, command.clone()));
        }
        match command {
            Command::FetchToken { request } => {
                self.dispatch.track_token(request, ());
                self.counters.fetches += 1;
                let delay = self.rng.millis(5, 150);
                match self.token_mode {
                    TokenMode::Normal => {
                        self.token_serial += 1;
                        let expiry = now + delay + self.params.token_ttl;
                        let token = Token {
                            value: make_token(self.token_serial, expiry),
                            expires_at: Some(self.clock.at(expiry)),
                        };
                        self.schedule_in(delay, SimEvent::TokenAnswer(request, Ok(token)));
                    }
                    TokenMode::Fail => self.schedule_in(
                        delay,
                        SimEvent::TokenAnswer(request, Err("token service unavailable".into())),
                    ),
                    TokenMode::Hang => {}
                }
            }
            Command::Connect {
                id, url, headers, ..
            } => {
                self.dispatch.track_connect(id, ());
                self.counters.opens += 1;
                self.check.opening(id)?;
                let token = self.token_of(&url, &headers);
                self.net.add(id, LinkKind::Ws, token, None);
                let handshake = self.net.latency() + self.net.latency();
                self.schedule_in(handshake, SimEvent::ConnectDone(id));
            }
            Command::Send { id, frame, .. } => {
                self.counters.frames_out += 1;
                self.check.frame_out(id)?;
                if self.check.ever_connected && self.config.is_protocol() {
                    if let Ok(tether_core::protocol::Envelope::Hello { secret: None, .. }) =
                        tether_core::protocol::Envelope::decode(frame.clone())
                    {
                        return Err(Violation {
                            invariant: "the client proves its session",
                            detail: format!("a Hello without the session's secret on {id:?}"),
                        });
                    }
                }
                let Some(link) = self.net.link(id) else {
                    return Ok(());
                };
                if link.stalled || self.net.conditions.offline {
                    return Ok(());
                }
                let at = self.net.up_arrival(id, now);
                self.schedule(at, SimEvent::ToServer(id, frame));
            }
            Command::Close { id, .. } => {
                self.counters.closes += 1;
                self.check.closed_by_core(id)?;
                // The driver drops the socket once the server answered the close, or
                // after its grace when the close cannot get through.
                let mut gone = now + CLOSE_GRACE;
                if let Some(link) = self.net.link_mut(id) {
                    link.client_open = false;
                    if link.kind == LinkKind::Ws && !link.stalled {
                        // The close frame follows the frames already written.
                        let at = self.net.up_arrival(id, now);
                        self.schedule(at, SimEvent::ServerSeesClose(id));
                        gone = gone.min(at + self.params.base_latency);
                    }
                }
                self.schedule(gone, SimEvent::SocketGone(id));
            }
            Command::Abandon { id, .. } | Command::PollingEnded { id } => {
                self.counters.closes += 1;
                self.check.closed_by_core(id)?;
                if let Some(link) = self.net.link_mut(id) {
                    link.client_open = false;
                    if link.kind == LinkKind::Ws && !link.stalled {
                        let at = self.net.up_arrival(id, now);
                        self.schedule(at, SimEvent::ServerSeesClose(id));
                    }
                }
            }
            // Nothing runs to be stopped: the answers still come, and are dropped.
            Command::Cancel(()) => {}
            Command::HttpRequest {
                id,
                request,
                url,
                headers,
                body,
                ..
            } => {
                self.dispatch.track_http_request(request, ());
                self.counters.polls += 1;
                // What the server reads: the session's proof in its request header.
                let session = headers
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(tether_core::protocol::SESSION_HEADER))
                    .and_then(|(_, v)| {
                        tether_core::protocol::SessionSecret::from_hex(v.as_bytes())
                    });
                self.check.poll(id)?;
                if session.is_none() && self.check.ever_connected && self.config.is_protocol() {
                    return Err(Violation {
                        invariant: "the client proves its session",
                        detail: format!("poll request {request:?} without the session's secret"),
                    });
                }
                if self.net.link(id).is_none() {
                    let token = self.token_of(&url, &headers);
                    let client =
                        query(&url, "client").and_then(|c| u64::from_str_radix(&c, 16).ok());
                    self.net.add(id, LinkKind::Poll, token, client);
                    if let Some(l) = self.net.link_mut(id) {
                        l.established = true;
                    }
                }
                let token = self.token_of(&url, &headers);
                let attempt = query(&url, "t").and_then(|t| t.parse().ok());
                let link = self.net.link_mut(id).expect("added");
                link.requests.push(request);
                let client_id = link.client_id;
                if link.stalled || self.net.conditions.hang {
                    return Ok(());
                }
                if self.net.conditions.offline {
                    let d = self.rng.millis(1, 50);
                    self.schedule_in(
                        d,
                        SimEvent::PollAnswer(
                            id,
                            request,
                            Err(TransportFailure::Network("network unreachable".into())),
                        ),
                    );
                    return Ok(());
                }
                let lat = self.net.latency();
                self.schedule_in(
                    lat,
                    SimEvent::PollArrives {
                        tid: id,
                        client_id,
                        attempt,
                        token,
                        secret: session,
                        request,
                        body,
                    },
                );
            }
            other => {
                return Err(Violation {
                    invariant: "known actions",
                    detail: format!("the harness does not know {other:?}"),
                })
            }
        }
        Ok(())
    }

    fn token_of(&self, url: &str, headers: &[(String, String)]) -> Option<String> {
        match &self.config.auth.as_ref()?.placement {
            TokenPlacement::Header => headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("authorization"))
                .and_then(|(_, v)| v.strip_prefix("Bearer "))
                .map(str::to_owned),
            TokenPlacement::Query(name) => query(url, name),
            _ => None,
        }
    }

    // ----- the user ----------------------------------------------------------------------

    fn observe(&mut self, event: Event) -> Result<(), Violation> {
        trace!(self, "event", "{}", brief_event(&event));
        self.check.event(&event)?;
        if let Event::Message(payload) = &event {
            let size = payload.len() as u64;
            match self.params.slow_reader {
                None => {
                    self.reader.read += 1;
                    self.dispatch.handle_unread(self.clock.now(), 0, 0);
                }
                Some(every) => {
                    self.reader.unread.push_back(size);
                    self.reader.peak = self.reader.peak.max(self.reader.unread.len());
                    if !self.reader.reading {
                        self.reader.reading = true;
                        self.schedule_in(every, SimEvent::AppRead);
                    }
                }
            }
        }
        if self.params.record {
            self.events.push((self.clock.elapsed(), event));
        }
        Ok(())
    }

    /// A caller's answer from the dispatcher: each once, and right.
    fn complete(&mut self, completion: Completion<SimHandles>) -> Result<(), Violation> {
        self.counters.answered += 1;
        match completion {
            Completion::Sent { waiter, result } => {
                trace!(self, "user", "send_confirmed c{waiter} -> {result:?}");
                let Some(id) = self.confirming.remove(&waiter) else {
                    return Err(Violation {
                        invariant: "each caller is answered once",
                        detail: format!("confirmed send c{waiter} answered again: {result:?}"),
                    });
                };
                // The answer agrees with the events: delivered, or dropped for the same
                // reason; or the connection stopped with an error (it stays retained).
                let fate = self.check.fate(id);
                let agrees = match &result {
                    Ok(acked) => *acked == id && fate == Some(Ok(())),
                    Err(DeliveryError::Dropped(reason)) => fate == Some(Err(*reason)),
                    Err(DeliveryError::Stopped(_)) => {
                        fate.is_none() && self.conn().state() == State::Error
                    }
                    Err(_) => false,
                };
                if !agrees {
                    return Err(Violation {
                        invariant: "a confirmation agrees with the events",
                        detail: format!(
                            "c{waiter} ({id:?}) answered {result:?}, events say {fate:?}"
                        ),
                    });
                }
            }
            Completion::Closed { waiter } => {
                trace!(self, "user", "close() #{waiter} returns");
                if !self.closing.0.remove(&waiter) {
                    return Err(Violation {
                        invariant: "each caller is answered once",
                        detail: format!("close() #{waiter} answered again"),
                    });
                }
                let open = self
                    .net
                    .current()
                    .into_iter()
                    .filter(|t| self.net.link(*t).is_some_and(|l| l.client_open))
                    .count();
                if self.conn().state() == State::Closed && open > 0 {
                    return Err(Violation {
                        invariant: "close() returns once nothing is open",
                        detail: format!("close() #{waiter} returned with {open} transports open"),
                    });
                }
            }
            other => {
                return Err(Violation {
                    invariant: "known completions",
                    detail: format!("the harness waits for no {other:?}"),
                })
            }
        }
        Ok(())
    }

    // ----- the world: agenda items -----------------------------------------------------

    /// How the platform reports a connect nothing listens to.
    fn refused(&self) -> TransportFailure {
        if self.params.browser {
            TransportFailure::Network("connection failed".into())
        } else {
            TransportFailure::Refused
        }
    }

    fn apply(&mut self, event: SimEvent) -> Result<(), Violation> {
        let now = self.clock.now();
        let at = self.clock.elapsed();
        match event {
            SimEvent::ConnectDone(tid) => {
                let Some(link) = self.net.link(tid) else {
                    return Ok(());
                };
                if !link.client_open {
                    return Ok(()); // abandoned by the client
                }
                let token = link.token.clone();
                let c = self.net.conditions.clone();
                let failure = if c.offline {
                    if self.rng.chance(0.5) {
                        return Ok(()); // no route: the SYN goes nowhere
                    }
                    Some(TransportFailure::Network("network unreachable".into()))
                } else if c.hang {
                    return Ok(());
                } else if let Some(f) = c.ws_blocked {
                    Some(f)
                } else if c.refuse || !self.server.up {
                    Some(self.refused())
                } else {
                    match self
                        .server
                        .accept_ws(tid, token.as_deref(), at, Party::Client)
                    {
                        Ok(outs) => {
                            trace!(self, "net", "{tid:?} open");
                            self.net.link_mut(tid).expect("link").established = true;
                            self.check.established(tid);
                            self.dispatch.handle_opened(now, tid, || ());
                            self.server_outs(outs);
                            None
                        }
                        Err(f) => Some(f),
                    }
                };
                if let Some(f) = failure {
                    trace!(self, "net", "{tid:?} connect failed: {f}");
                    self.client_failure(tid, f);
                }
            }
            SimEvent::ToServer(tid, frame) => {
                if self.net.link(tid).is_some_and(|l| l.stalled) || !self.server.has_ws(tid) {
                    return Ok(());
                }
                trace!(self, "server", "{tid:?} <- {}", brief_payload(&frame));
                let outs = self.server.ws_frame(now, at, tid, frame);
                self.server_outs(outs);
            }
            SimEvent::ServerSeesClose(tid) => {
                trace!(self, "server", "{tid:?} closed");
                self.server.ws_closed(tid);
            }
            SimEvent::ToClient(tid, frame) => {
                let Some(link) = self.net.link(tid) else {
                    return Ok(());
                };
                if !link.client_open || link.stalled {
                    return Ok(());
                }
                if !self.conn().wants_read() {
                    // The driver does not read the socket: the frame waits in it.
                    self.unread_socket.push_back(SimEvent::ToClient(tid, frame));
                    return Ok(());
                }
                trace!(self, "input", "frame {tid:?} {}", brief_payload(&frame));
                self.dispatch
                    .handle_socket(now, tid, SocketEvent::Frame(frame));
            }
            SimEvent::ClientSeesClose(tid, code, reason) => {
                if !self.conn().wants_read() {
                    // Read after the frames before it, once the driver reads again.
                    self.unread_socket
                        .push_back(SimEvent::ClientSeesClose(tid, code, reason));
                    return Ok(());
                }
                let Some(link) = self.net.link_mut(tid) else {
                    return Ok(());
                };
                if !link.client_open {
                    return Ok(());
                }
                link.client_open = false;
                self.check.ended(tid);
                trace!(self, "input", "closed {tid:?} {code:?} {reason:?}");
                self.dispatch
                    .handle_socket(now, tid, SocketEvent::Closed { code, reason });
                // The reader ended, and the writer with it.
                self.dispatch.handle_socket_gone(tid);
            }
            SimEvent::ClientSeesFailure(tid, failure) => {
                let open = self.net.link(tid).is_some_and(|l| l.client_open);
                if open {
                    self.client_failure(tid, failure);
                }
            }
            SimEvent::PollArrives {
                tid,
                client_id,
                attempt,
                token,
                secret,
                request,
                body,
            } => {
                let result = if !self.server.up || self.net.conditions.refuse {
                    Err(self.refused())
                } else {
                    let (result, outs) = self.server.poll(PollArrival {
                        now,
                        at,
                        client_id,
                        attempt,
                        token: token.as_deref(),
                        proof: secret,
                        party: Party::Client,
                        body: &body,
                    });
                    self.server_outs(outs);
                    result
                };
                if self.trace.enabled() {
                    let shown = match &result {
                        Ok(b) => format!("{} bytes", b.len()),
                        Err(e) => e.to_string(),
                    };
                    trace!(
                        self,
                        "server",
                        "poll {tid:?} {request:?} ({} bytes) -> {shown}",
                        body.len()
                    );
                }
                let lat = self.net.latency();
                self.schedule_in(lat, SimEvent::PollAnswer(tid, request, result));
            }
            SimEvent::PollAnswer(tid, request, result) => {
                let Some(link) = self.net.link_mut(tid) else {
                    return Ok(());
                };
                if link.stalled && result.is_ok() {
                    return Ok(());
                }
                link.requests.retain(|r| *r != request);
                trace!(
                    self,
                    "input",
                    "poll response {request:?} {}",
                    match &result {
                        Ok(b) => format!("ok {} bytes", b.len()),
                        Err(e) => format!("error {e}"),
                    }
                );
                self.dispatch.handle_http_response(now, request, result);
            }
            SimEvent::TokenAnswer(request, result) => {
                trace!(
                    self,
                    "input",
                    "token {}",
                    if result.is_ok() { "ok" } else { "error" }
                );
                // Like a real provider, a fetch the core gave up on may still answer, late.
                self.dispatch.handle_token(now, request, result);
            }
            SimEvent::TokenDue(tid) => {
                let outs = self.server.token_due(tid, at);
                if !outs.is_empty() {
                    trace!(self, "server", "{tid:?} token expired");
                }
                self.server_outs(outs);
            }
            SimEvent::OsReset(tid) => {
                let stalled_and_open = self
                    .net
                    .link(tid)
                    .is_some_and(|l| l.stalled && l.client_open);
                if stalled_and_open {
                    self.server.ws_closed(tid);
                    self.client_failure(
                        tid,
                        TransportFailure::Network("connection timed out".into()),
                    );
                }
            }
            SimEvent::ServerUp => {
                trace!(self, "server", "up");
                self.server.up = true;
            }
            SimEvent::Wake => {
                if self.asleep_until.is_some_and(|w| w <= at) {
                    trace!(self, "input", "wake");
                    self.asleep_until = None;
                    // The driver's overdue timer fires first; what arrived meanwhile follows.
                    self.dispatch.handle_timeout(now);
                }
            }
            SimEvent::AppRead => {
                if let (Some(size), Some(every)) =
                    (self.reader.unread.pop_front(), self.params.slow_reader)
                {
                    self.reader.read += 1;
                    trace!(self, "user", "reads a message ({size} bytes)");
                    let unread: u64 = self.reader.unread.iter().sum();
                    self.dispatch
                        .handle_unread(now, self.reader.unread.len() as u64, unread);
                    if self.reader.unread.is_empty() {
                        self.reader.reading = false;
                    } else {
                        self.schedule_in(every, SimEvent::AppRead);
                    }
                } else {
                    self.reader.reading = false;
                }
            }
            SimEvent::SocketGone(tid) => self.dispatch.handle_socket_gone(tid),
            SimEvent::Fault(fault) => self.fault(fault)?,
            SimEvent::User(action) => self.user_action(action)?,
            SimEvent::Adversary => self.adversary()?,
            SimEvent::ServerApp => {
                let pad = self.rng.range(0, self.params.pad_max as u64) as usize;
                let binary = self.rng.chance(self.params.binary_share);
                let (number, outs) =
                    self.server
                        .app_send(now, self.dispatch.connection().client_id(), pad, binary);
                if let Some(n) = number {
                    trace!(self, "server", "app sends s{n}");
                    self.check.server_sent(n);
                }
                self.server_outs(outs);
            }
        }
        Ok(())
    }

    /// The adversary's move: it knows the client's id, its session id and its newest
    /// transport number (metrics, traffic), never the secret. Whatever it sends, it
    /// reads none of the client's messages, gets none of its secrets, and changes
    /// nothing of its sessions.
    fn adversary(&mut self) -> Result<(), Violation> {
        if !self.config.is_protocol() || !self.server.up {
            return Ok(());
        }
        use tether_core::protocol::{encode_batch, Envelope, SessionSecret};
        let now = self.clock.now();
        let at = self.clock.elapsed();
        let (session_id, attempt) = self.server.client_view();
        let victim = self.conn().client_id();
        let r = &mut self.adversary_rng;
        let random_secret = |r: &mut Rng| {
            let mut bytes = [0u8; SessionSecret::BYTES];
            for chunk in bytes.chunks_mut(8) {
                chunk.copy_from_slice(&r.next_u64().to_le_bytes());
            }
            SessionSecret::from_bytes(bytes)
        };
        let client_id = if r.chance(0.8) { victim } else { r.next_u64() };
        let secret = r.chance(0.5).then(|| random_secret(r));
        let proof = r.chance(0.5).then(|| random_secret(r));
        let recv_seq = match r.range(0, 3) {
            0 => 0,
            1 => r.range(1, 50),
            _ => u64::MAX,
        };
        let session = match r.range(0, 2) {
            0 => 0,
            1 => session_id,
            _ => r.next_u64() >> 11,
        };
        let hello_attempt = match r.range(0, 3) {
            0 => u64::MAX,
            1 => attempt.saturating_add(1),
            2 => attempt,
            _ => r.range(0, 1000),
        };
        let guessed_t = match r.range(0, 2) {
            0 => attempt,
            1 => u64::MAX,
            _ => r.range(0, attempt.saturating_add(2)),
        };
        let kind = r.range(0, 2);
        let ack = r.chance(0.5).then(|| r.range(0, 20));
        let hello = Envelope::Hello {
            client_id,
            recv_seq,
            session,
            attempt: hello_attempt,
            secret,
        };
        self.adversary_conns += 1;
        self.counters.adversary += 1;
        let token = make_token(
            u64::MAX - self.adversary_conns,
            at + Duration::from_secs(3600),
        );
        trace!(
            self,
            "adversary",
            "move {kind}: {hello:?}, t {guessed_t}, ack {ack:?}"
        );
        let before = self.server.client_fingerprint();
        match kind {
            0 => {
                let tid = TransportId((1 << 62) | self.adversary_conns);
                let Ok(outs) = self
                    .server
                    .accept_ws(tid, Some(&token), at, Party::Adversary)
                else {
                    return Ok(());
                };
                self.adversary_outs(outs)?;
                let outs = self.server.ws_frame(now, at, tid, hello.encode());
                self.adversary_outs(outs)?;
                if let Some(seq) = ack {
                    let outs = self
                        .server
                        .ws_frame(now, at, tid, Envelope::Ack { seq }.encode());
                    self.adversary_outs(outs)?;
                }
                self.server.ws_closed(tid);
            }
            1 => {
                let mut frames = vec![hello.encode()];
                frames.extend(ack.map(|seq| Envelope::Ack { seq }.encode()));
                let (result, outs) = self.server.poll(PollArrival {
                    now,
                    at,
                    client_id: Some(client_id),
                    attempt: Some(hello_attempt),
                    token: Some(&token),
                    proof,
                    party: Party::Adversary,
                    body: &encode_batch(&frames),
                });
                self.adversary_outs(outs)?;
                if let Ok(body) = result {
                    self.adversary_reads(&body)?;
                }
            }
            _ => {
                let frames: Vec<_> = ack
                    .map(|seq| Envelope::Ack { seq }.encode())
                    .into_iter()
                    .collect();
                let (result, outs) = self.server.poll(PollArrival {
                    now,
                    at,
                    client_id: Some(victim),
                    attempt: Some(guessed_t),
                    token: Some(&token),
                    proof,
                    party: Party::Adversary,
                    body: &encode_batch(&frames),
                });
                self.adversary_outs(outs)?;
                match result {
                    Err(TransportFailure::Http {
                        status: 401 | 503, ..
                    }) => {}
                    other => {
                        return Err(Violation {
                            invariant: "a poll request without the secret reaches no session",
                            detail: format!("t {guessed_t} answered {other:?}"),
                        })
                    }
                }
            }
        }
        let after = self.server.client_fingerprint();
        if before != after {
            return Err(Violation {
                invariant: "the adversary changes nothing of the client's sessions",
                detail: format!("{before:?} became {after:?}"),
            });
        }
        Ok(())
    }

    /// What the server did for the adversary: frames to it are checked, anything else
    /// (it must be nothing) goes to the network as usual.
    fn adversary_outs(&mut self, outs: Vec<ServerOut>) -> Result<(), Violation> {
        let mut rest = Vec::new();
        for out in outs {
            match out {
                ServerOut::Send(tid, frame) if tid.0 >> 62 == 1 => {
                    self.adversary_reads(&tether_core::protocol::encode_batch(&[frame]))?;
                }
                ServerOut::Close(tid, ..) | ServerOut::WatchToken(tid, _) if tid.0 >> 62 == 1 => {}
                other => rest.push(other),
            }
        }
        self.server_outs(rest);
        Ok(())
    }

    /// Frames that reached the adversary (a poll batch): no message, no client secret.
    fn adversary_reads(&mut self, batch: &[u8]) -> Result<(), Violation> {
        use tether_core::protocol::{decode_batch, Envelope};
        let frames = decode_batch(batch).unwrap_or_default();
        for frame in frames {
            match Envelope::decode(frame) {
                Ok(Envelope::Msg { seq, .. }) => {
                    return Err(Violation {
                        invariant: "the adversary reads nothing",
                        detail: format!("it got message seq {seq}"),
                    })
                }
                Ok(Envelope::Welcome { secret, .. }) if self.server.is_client_secret(&secret) => {
                    return Err(Violation {
                        invariant: "the adversary reads nothing",
                        detail: "it got a Welcome with the client's secret".into(),
                    })
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The client's transport `tid` failed (told now).
    fn client_failure(&mut self, tid: TransportId, failure: TransportFailure) {
        if let Some(link) = self.net.link_mut(tid) {
            if !link.client_open {
                return;
            }
            link.client_open = false;
        }
        self.check.ended(tid);
        trace!(self, "input", "failed {tid:?} {failure}");
        let now = self.clock.now();
        if self.dispatch.awaits_open(tid) {
            self.dispatch.handle_connect_failed(now, tid, failure);
        } else {
            self.dispatch
                .handle_socket(now, tid, SocketEvent::Failed(failure));
            // The socket is dropped with its reader.
            self.dispatch.handle_socket_gone(tid);
        }
    }

    fn server_outs(&mut self, outs: Vec<ServerOut>) {
        let now = self.clock.elapsed();
        for out in outs {
            match out {
                ServerOut::Send(tid, frame) => {
                    if self.net.link(tid).is_some_and(|l| !l.stalled) {
                        let at = self.net.down_arrival(tid, now);
                        self.schedule(at, SimEvent::ToClient(tid, frame));
                    }
                }
                ServerOut::Close(tid, code, reason) => {
                    trace!(self, "server", "closes {tid:?} {code:?} {reason}");
                    if self.net.link(tid).is_some_and(|l| !l.stalled) {
                        let at = self.net.down_arrival(tid, now);
                        self.schedule(at, SimEvent::ClientSeesClose(tid, code, reason));
                    }
                }
                ServerOut::WatchToken(tid, at) => self.schedule(at, SimEvent::TokenDue(tid)),
            }
        }
    }

    // ----- faults and the user -----------------------------------------------------------

    fn fault(&mut self, fault: Fault) -> Result<(), Violation> {
        trace!(self, "fault", "{fault:?}");
        let now = self.clock.now();
        let current = self.net.current();
        match fault {
            Fault::Refuse(on) => self.net.conditions.refuse = on,
            Fault::Hang(on) => self.net.conditions.hang = on,
            Fault::Blocked(f) => {
                if f == Some(TransportFailure::Blocked) && self.config.fallback.is_none() {
                    self.check.excuses.blocked_without_fallback = true;
                }
                self.net.conditions.ws_blocked = f;
            }
            Fault::Latency(d) => self.net.conditions.extra_latency = d,
            Fault::ServerDrop { code, retry_ms } => {
                let Some(tid) = current else { return Ok(()) };
                let link = self.net.link(tid).expect("current");
                if link.kind == LinkKind::Poll {
                    if let Some(c) = link.client_id {
                        self.server.detach(c);
                    }
                } else if self.server.has_ws(tid) {
                    let mut outs = Vec::new();
                    if let (Some(ms), true) = (retry_ms, self.config.is_protocol()) {
                        outs.push(ServerOut::Send(
                            tid,
                            tether_core::protocol::Envelope::Retry { after_ms: ms }.encode(),
                        ));
                    }
                    self.server.ws_closed(tid);
                    outs.push(ServerOut::Close(tid, code, "server dropped it".into()));
                    self.server_outs(outs);
                }
            }
            Fault::NetReset => {
                if let Some(tid) = current {
                    self.reset_link(tid);
                }
            }
            Fault::Stall => {
                if let Some(tid) = current {
                    self.stall_link(tid);
                }
            }
            Fault::Restart {
                downtime,
                lose_state,
                graceful,
            } => {
                let open = self.server.crash(lose_state);
                for tid in open {
                    let Some(link) = self.net.link_mut(tid) else {
                        continue;
                    };
                    if graceful {
                        let at = self.net.down_arrival(tid, self.clock.elapsed());
                        self.schedule(
                            at,
                            SimEvent::ClientSeesClose(tid, Some(1001), "going away".into()),
                        );
                    } else {
                        link.stalled = true;
                        let lat = self.net.latency();
                        self.schedule_in(
                            lat,
                            SimEvent::ClientSeesClose(tid, None, "connection reset".into()),
                        );
                    }
                }
                if lose_state {
                    self.check.lossy_restart();
                }
                self.schedule_in(downtime, SimEvent::ServerUp);
            }
            Fault::AuthOutage(on) => {
                if on {
                    self.check.excuses.auth_outage = true;
                }
                self.server.reject_tokens = on;
            }
            Fault::Revoke => {
                if self.config.auth.is_some() {
                    if let Some(tid) = current.filter(|t| self.server.has_ws(*t)) {
                        self.check.excuses.auth_outage = true;
                        self.server.ws_closed(tid);
                        self.server_outs(vec![ServerOut::Close(
                            tid,
                            Some(4401),
                            "token revoked".into(),
                        )]);
                    }
                }
            }
            Fault::Tokens(mode) => self.token_mode = mode,
            Fault::Offline { reset } => {
                self.net.conditions.offline = true;
                if let Some(tid) = current {
                    if reset {
                        self.reset_link(tid);
                    } else {
                        self.stall_link(tid);
                    }
                }
                self.dispatch
                    .connection_mut()
                    .handle_hint(now, Hint::Offline);
            }
            Fault::Online => {
                self.net.conditions.offline = false;
                self.dispatch
                    .connection_mut()
                    .handle_hint(now, Hint::Online);
            }
            Fault::Hint(h) => self.dispatch.connection_mut().handle_hint(now, h),
            Fault::Sleep { duration, stall } => {
                if stall {
                    if let Some(tid) = current {
                        self.stall_link(tid);
                    }
                }
                let wake = self.clock.elapsed() + duration;
                self.asleep_until = Some(wake);
                self.schedule(wake, SimEvent::Wake);
            }
        }
        Ok(())
    }

    /// Both ends of `tid` see an error; what was in flight is gone.
    fn reset_link(&mut self, tid: TransportId) {
        let Some(link) = self.net.link_mut(tid) else {
            return;
        };
        if link.stalled {
            return;
        }
        link.stalled = true;
        let kind = link.kind;
        let requests = std::mem::take(&mut link.requests);
        let d = self.rng.millis(0, 20);
        match kind {
            LinkKind::Ws => {
                self.schedule_in(
                    d,
                    SimEvent::ClientSeesFailure(
                        tid,
                        TransportFailure::Network("connection reset".into()),
                    ),
                );
                let lat = self.net.latency();
                self.schedule_in(lat, SimEvent::ServerSeesClose(tid));
            }
            LinkKind::Poll => {
                for r in requests {
                    self.schedule_in(
                        d,
                        SimEvent::PollAnswer(
                            tid,
                            r,
                            Err(TransportFailure::Network("connection reset".into())),
                        ),
                    );
                }
            }
        }
    }

    /// `tid` goes half-open; the OS resets a WebSocket much later.
    fn stall_link(&mut self, tid: TransportId) {
        let Some(link) = self.net.link_mut(tid) else {
            return;
        };
        if link.stalled {
            return;
        }
        link.stalled = true;
        if link.kind == LinkKind::Ws {
            let after = self.params.os_reset_after;
            self.schedule_in(after, SimEvent::OsReset(tid));
        }
    }

    fn user_action(&mut self, action: UserAction) -> Result<(), Violation> {
        trace!(self, "user", "{action:?}");
        let now = self.clock.now();
        match action {
            UserAction::Send(count) => {
                for _ in 0..count {
                    let _ = self.send_one()?;
                }
            }
            UserAction::Close => {
                self.check.excuses.user_closed = true;
                let waiter = self.closing.1;
                self.closing.1 += 1;
                self.closing.0.insert(waiter);
                self.dispatch.close(now, 1000, "bye", false, waiter);
            }
            UserAction::Reconnect => self.dispatch.connection_mut().reconnect(now),
        }
        Ok(())
    }

    /// The user sends the next numbered message now: `send`'s answer, with the message
    /// tracked by the checker when accepted.
    pub fn send_one(&mut self) -> Result<Result<MessageId, SendError>, Violation> {
        self.next_number += 1;
        let n = self.next_number;
        let pad = self.rng.range(0, self.params.pad_max as u64) as usize;
        let binary = self.rng.chance(self.params.binary_share);
        let payload = numbered_payload(b'c', n, pad, binary);
        self.sent_this_step = true;
        let now = self.clock.now();
        // Every fourth message in protocol mode waits for its confirmation, as
        // `send_confirmed` does.
        let result = if self.config.is_protocol() && n % 4 == 0 {
            match self.dispatch.send_confirmed(now, payload, n) {
                Ok(id) => {
                    self.confirming.insert(n, id);
                    Ok(id)
                }
                Err(Completion::Sent {
                    result: Err(DeliveryError::Rejected(e)),
                    ..
                }) => Err(e),
                Err(other) => {
                    return Err(Violation {
                        invariant: "a refused confirmed send says why",
                        detail: format!("c{n}: {other:?}"),
                    })
                }
            }
        } else {
            self.dispatch.connection_mut().send(now, payload)
        };
        match &result {
            Ok(id) => {
                trace!(self, "user", "send c{n} -> {id:?}");
                self.check.sent(*id, n)?;
            }
            Err(e) => {
                trace!(self, "user", "send c{n} refused: {e}");
            }
        }
        self.settle()?;
        Ok(result)
    }

    // ----- the end -----------------------------------------------------------------------

    /// Ends every fault: the network is healthy and online, the server up and accepting
    /// tokens, the provider answering, the client awake; half-open sockets are reset (as
    /// the OS eventually does); scripted faults, user actions and server messages still
    /// scheduled are cancelled; a stopped connection is restarted with `reconnect()`.
    pub fn heal(&mut self) -> Result<(), Violation> {
        trace!(self, "heal", "the network heals");
        self.agenda.retain(|e| !e.is_scripted());
        if let Some(wake) = self.asleep_until {
            // What the sleeping client missed is queued for its wake: let it wake first.
            self.run_until(wake)?;
        }
        let was_offline = self.net.conditions.offline;
        self.net.conditions = Default::default();
        self.server.up = true;
        self.server.reject_tokens = false;
        self.token_mode = TokenMode::Normal;
        let stalled: Vec<TransportId> = self
            .net
            .current()
            .into_iter()
            .filter(|t| self.net.link(*t).is_some_and(|l| l.stalled))
            .collect();
        for tid in stalled {
            self.server.ws_closed(tid);
            let link = self.net.link_mut(tid).expect("link");
            let requests = std::mem::take(&mut link.requests);
            if link.kind == LinkKind::Ws {
                self.schedule_in(
                    Duration::from_millis(1),
                    SimEvent::ClientSeesFailure(
                        tid,
                        TransportFailure::Network("connection timed out".into()),
                    ),
                );
            }
            for r in requests {
                self.schedule_in(
                    Duration::from_millis(1),
                    SimEvent::PollAnswer(tid, r, Err(TransportFailure::Timeout)),
                );
            }
        }
        let now = self.clock.now();
        if was_offline {
            self.dispatch
                .connection_mut()
                .handle_hint(now, Hint::Online);
        }
        if self.conn().state().is_stopped() {
            let reason = self.conn().terminal_reason().cloned();
            trace!(self, "user", "reconnect() after {reason:?}");
            self.dispatch.connection_mut().reconnect(now);
        }
        self.settle()
    }

    /// Protocol mode: connected, nothing retained, every message accounted for both
    /// ways. Plain mode: connected with an empty queue.
    #[must_use]
    pub fn quiescent(&self) -> bool {
        if self.conn().state() != State::Connected {
            return false;
        }
        if self.config.is_protocol()
            && !(self.check.server_messages_done() && self.check.client_messages_done())
        {
            return false;
        }
        self.conn().metrics(self.clock.now()).queue_depth == 0
    }
}

/// The value of query parameter `name` in `url` (no percent-decoding needed for the
/// values the simulation makes).
fn query(url: &str, name: &str) -> Option<String> {
    let (_, q) = url.split_once('?')?;
    q.split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

fn brief_payload(p: &Payload) -> String {
    // Hello and Welcome frames end with the session's secret: not in a trace either.
    if let Payload::Text(s) = p {
        if s.starts_with("H ") || s.starts_with("W ") {
            if let Some((fields, last)) = s.rsplit_once(' ') {
                if last.len() == 32 {
                    return format!("{:?}", format!("{fields} <secret>"));
                }
            }
        }
    }
    match p {
        Payload::Text(s) if s.len() > 40 => format!("{:?}…", &s[..40]),
        Payload::Text(s) => format!("{s:?}"),
        Payload::Binary(b) => format!("<{} bytes {:02x?}…>", b.len(), &b[..b.len().min(9)]),
    }
}

fn brief_command(c: &Command<SimHandles>) -> String {
    match c {
        Command::Send { id, frame, .. } => format!("Send {id:?} {}", brief_payload(frame)),
        Command::HttpRequest {
            id,
            request,
            kind,
            body,
            ..
        } => {
            let frames = tether_core::protocol::decode_batch(body)
                .map(|f| f.iter().map(brief_payload).collect::<Vec<_>>().join(", "))
                .unwrap_or_else(|e| format!("bad batch {e}"));
            format!("Poll {id:?} {request:?} {kind:?} [{frames}]")
        }
        Command::Connect { id, .. } => format!("Connect {id:?}"),
        other => format!("{other:?}"),
    }
}

fn brief_event(e: &Event) -> String {
    match e {
        Event::Message(p) => format!("Message {}", brief_payload(p)),
        other => format!("{other:?}"),
    }
}
