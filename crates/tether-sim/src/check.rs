//! The invariant checker: fed every action, event and delivery of a run, it fails the
//! schedule at the first broken promise.
//!
//! What it holds the core to (DESIGN.md, "Testing strategy"):
//! - never two transports open or being opened at once (an `Open`, or the first `Poll`
//!   of a transport id, opens it; a `Close` action, or the network reporting it closed
//!   or failed, ends it), and frames only on an open one;
//! - every `ReconnectScheduled` delay not chosen by a server hint within
//!   `Backoff::bounds(attempt)` and at most `max_delay`;
//! - every `StateChanged` starts where the previous one ended and is legal
//!   (`State::can_become`);
//! - every `AttemptStarted` numbered 1 (counting starts over) or one more than the last;
//! - the queue within `max_messages` and `max_bytes`;
//! - both directions in order without duplicates (protocol mode; in plain mode too,
//!   where messages may be lost but never repeated or reordered);
//! - in protocol mode, every message `send` accepted ends delivered to the server
//!   application or reported `Dropped`, never both and never neither, and every server
//!   message reaches the client.
//!
//! The one documented exception (PROTOCOL.md, section 11): when the server restarts and
//! loses its sessions, client messages it had delivered but the client had not seen
//! acknowledged may arrive once more each, and server messages the client had not yet
//! received may be lost. [`Checker::lossy_restart`] grants exactly those allowances.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;

use tether_core::backoff::Backoff;
use tether_core::{
    Config, DropReason, Duration, Event, MessageId, OverflowPolicy, Payload, QueueConfig, State,
    TerminalReason, TransportId,
};

use crate::server::message_number;

/// A broken invariant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// Which invariant.
    pub invariant: &'static str,
    /// What exactly happened.
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.invariant, self.detail)
    }
}

fn violation<T>(invariant: &'static str, detail: String) -> Result<T, Violation> {
    Err(Violation { invariant, detail })
}

/// What became of a message the user sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Delivered,
    Dropped(DropReason),
}

/// Faults injected so far that may legitimately stop the connection.
#[derive(Clone, Copy, Debug, Default)]
pub struct Excuses {
    /// The server rejected every token for a while (or revoked one).
    pub auth_outage: bool,
    /// WebSockets were blocked while no polling fallback was configured.
    pub blocked_without_fallback: bool,
    /// The user called `close()`.
    pub user_closed: bool,
}

/// Tracks one run.
#[derive(Debug)]
pub struct Checker {
    protocol: bool,
    backoff: Backoff,
    max_delay: Duration,
    max_attempts: bool,
    queue: QueueConfig,
    /// The last state reported.
    pub state: State,
    /// The connection has been `Connected` (in protocol mode: it took a Welcome, so it
    /// holds a session's secret from then on).
    pub ever_connected: bool,
    live: BTreeSet<TransportId>,
    established: BTreeSet<TransportId>,
    /// Transports that carried polling requests.
    polling: HashSet<TransportId>,
    /// A polling transport waiting, idle, while a WebSocket probe is out: it does not
    /// count as open, and must not poll until the probe ended.
    parked: Option<TransportId>,
    ended: HashSet<TransportId>,
    /// What may explain a stop.
    pub excuses: Excuses,

    numbers: HashMap<MessageId, u64>,
    outcome: HashMap<MessageId, Outcome>,
    ids: HashMap<u64, MessageId>,
    server_count: HashMap<u64, u32>,
    server_max: u64,
    server_seen: usize,
    dup_allowance: HashMap<u64, u32>,

    server_sent: BTreeSet<u64>,
    client_got: HashSet<u64>,
    client_max: u64,
    may_lose: HashSet<u64>,
    lossy_restarts: u32,
    session_resets: u32,
    /// The number of the last `AttemptStarted`.
    last_attempt: u32,
}

impl Checker {
    /// A checker for a connection made with `config`.
    #[must_use]
    pub fn new(config: &Config) -> Self {
        Checker {
            protocol: config.is_protocol(),
            backoff: Backoff::new(config.backoff.clone()),
            max_delay: config.backoff.max_delay,
            max_attempts: config.backoff.max_attempts.is_some(),
            queue: config.queue.clone(),
            state: State::Disconnected,
            ever_connected: false,
            live: BTreeSet::new(),
            established: BTreeSet::new(),
            polling: HashSet::new(),
            parked: None,
            ended: HashSet::new(),
            excuses: Excuses::default(),
            numbers: HashMap::new(),
            outcome: HashMap::new(),
            ids: HashMap::new(),
            server_count: HashMap::new(),
            server_max: 0,
            server_seen: 0,
            dup_allowance: HashMap::new(),
            server_sent: BTreeSet::new(),
            client_got: HashSet::new(),
            client_max: 0,
            may_lose: HashSet::new(),
            lossy_restarts: 0,
            session_resets: 0,
            last_attempt: 0,
        }
    }

    // ----- transports ------------------------------------------------------------------

    /// The core asked to open `id` (an `Open`, or the first `Poll` of a polling session).
    pub fn opening(&mut self, id: TransportId) -> Result<(), Violation> {
        if self.live.contains(&id) {
            return Ok(());
        }
        if self.ended.contains(&id) {
            return violation(
                "one transport at a time",
                format!("{id:?} used again after it ended"),
            );
        }
        if self.parked == Some(id) {
            return violation(
                "one transport at a time",
                format!("{id:?} polled while the WebSocket probe is out"),
            );
        }
        if let Some(&other) = self.live.iter().next() {
            // A WebSocket probe may open while polling waits on its transport (parked:
            // idle, polling nothing until the probe ended).
            let probe = !self.polling.contains(&id) && self.polling.contains(&other);
            if !probe || self.live.len() > 1 || self.parked.is_some() {
                return violation(
                    "one transport at a time",
                    format!("{id:?} opened while {other:?} is still open or opening"),
                );
            }
            self.live.remove(&other);
            self.parked = Some(other);
        }
        self.live.insert(id);
        Ok(())
    }

    /// The first `Poll` of `id` opens it, later ones must be on it.
    pub fn poll(&mut self, id: TransportId) -> Result<(), Violation> {
        if !self.live.contains(&id) {
            self.polling.insert(id);
        }
        if let Err(e) = self.opening(id) {
            self.polling.remove(&id);
            return Err(e);
        }
        self.established.insert(id);
        Ok(())
    }

    /// `id` is gone: a parked polling transport is taken up again once the probe it
    /// waited for is gone.
    fn gone(&mut self, id: TransportId) {
        if self.parked == Some(id) {
            self.parked = None;
        } else if self.live.is_empty() {
            if let Some(parked) = self.parked.take() {
                self.live.insert(parked);
            }
        }
    }

    /// The simulated network told the core `id` is open.
    pub fn established(&mut self, id: TransportId) {
        if self.live.contains(&id) {
            self.established.insert(id);
        }
    }

    /// The core wrote a frame on `id`.
    pub fn frame_out(&mut self, id: TransportId) -> Result<(), Violation> {
        if !self.established.contains(&id) {
            return violation(
                "frames only on an open transport",
                format!("Send on {id:?}, which is not open"),
            );
        }
        Ok(())
    }

    /// The core closed `id`.
    pub fn closed_by_core(&mut self, id: TransportId) -> Result<(), Violation> {
        if self.parked == Some(id) {
            // The probe was welcomed: the waiting polling transport is closed.
            self.parked = None;
            self.established.remove(&id);
            self.ended.insert(id);
            return Ok(());
        }
        if !self.live.remove(&id) {
            return violation(
                "one transport at a time",
                format!("Close of {id:?}, which is not open or opening"),
            );
        }
        self.established.remove(&id);
        self.ended.insert(id);
        self.gone(id);
        Ok(())
    }

    /// The network told the core `id` closed or failed.
    pub fn ended(&mut self, id: TransportId) {
        self.live.remove(&id);
        self.established.remove(&id);
        self.ended.insert(id);
        self.gone(id);
    }

    /// Transports open or being opened.
    #[must_use]
    pub fn live(&self) -> usize {
        self.live.len()
    }

    // ----- messages --------------------------------------------------------------------

    /// `send` accepted message `number` as `id`.
    pub fn sent(&mut self, id: MessageId, number: u64) -> Result<(), Violation> {
        if self.numbers.insert(id, number).is_some() {
            return violation(
                "unique message ids",
                format!("{id:?} returned twice by send"),
            );
        }
        self.ids.insert(number, id);
        Ok(())
    }

    /// The server application sent message `number`.
    pub fn server_sent(&mut self, number: u64) {
        self.server_sent.insert(number);
    }

    /// The server restarted and lost its sessions: grant the documented allowances.
    pub fn lossy_restart(&mut self) {
        self.lossy_restarts += 1;
        self.grant_reset_allowances();
    }

    /// The server made a fresh session for the client's newest Hello, abandoning one it
    /// had offered the client before (whose Welcome never reached it) or one it lost:
    /// server messages the client has not received may be lost (only that session had
    /// them). The client sent nothing in a session whose Welcome it never took, so
    /// nothing may come twice.
    pub fn session_abandoned(&mut self) {
        for &n in &self.server_sent {
            if !self.client_got.contains(&n) {
                self.may_lose.insert(n);
            }
        }
    }

    /// Client messages the server got whose acknowledgement the client has not seen may
    /// come once more; server messages the client has not received may be lost.
    fn grant_reset_allowances(&mut self) {
        for (&n, _) in self.server_count.iter() {
            let acked = self
                .ids
                .get(&n)
                .and_then(|id| self.outcome.get(id))
                .is_some_and(|o| *o == Outcome::Delivered);
            if !acked {
                *self.dup_allowance.entry(n).or_default() += 1;
            }
        }
        for &n in &self.server_sent {
            if !self.client_got.contains(&n) {
                self.may_lose.insert(n);
            }
        }
    }

    /// What the client's events said of message `id`: delivered (`Ok`), dropped, or nothing
    /// yet.
    #[must_use]
    pub fn fate(&self, id: MessageId) -> Option<Result<(), DropReason>> {
        match self.outcome.get(&id)? {
            Outcome::Delivered => Some(Ok(())),
            Outcome::Dropped(reason) => Some(Err(*reason)),
        }
    }

    /// Checks what the server application received since the last call.
    pub fn server_received(&mut self, received: &[u64]) -> Result<(), Violation> {
        while self.server_seen < received.len() {
            let n = received[self.server_seen];
            self.server_seen += 1;
            let Some(&id) = self.ids.get(&n) else {
                return violation(
                    "no phantom messages",
                    format!("server got c{n}, never accepted by send"),
                );
            };
            let count = self.server_count.entry(n).or_default();
            *count += 1;
            let count = *count;
            if let Some(Outcome::Dropped(reason)) = self.outcome.get(&id) {
                if *reason == DropReason::Unconfirmed {
                    continue; // it may or may not arrive: both are right
                }
                return violation(
                    "delivered or dropped, never both",
                    format!(
                        "server got c{n} ({id:?}), which the client reported Dropped({reason:?})"
                    ),
                );
            }
            if count > 1 {
                let allowed = self.dup_allowance.get(&n).copied().unwrap_or(0);
                if count > 1 + allowed || !self.protocol {
                    return violation(
                        "no duplicates (client to server)",
                        format!(
                            "server got c{n} {count} times (allowed {} after lossy restarts)",
                            1 + allowed
                        ),
                    );
                }
                continue;
            }
            if !self.protocol {
                // Plain mode promises no order across connections: the frames still in
                // flight on a closed socket may arrive after the new socket's.
                continue;
            }
            if n < self.server_max {
                return violation(
                    "in order (client to server)",
                    format!("server got c{n} after c{}", self.server_max),
                );
            }
            // Everything accepted before it went first, or was dropped.
            for m in self.server_max + 1..n {
                if let Some(mid) = self.ids.get(&m) {
                    if !self.server_count.contains_key(&m)
                        && !matches!(self.outcome.get(mid), Some(Outcome::Dropped(_)))
                    {
                        return violation(
                            "no loss (client to server)",
                            format!(
                                "server got c{n} but not c{m} ({mid:?}), which was not dropped"
                            ),
                        );
                    }
                }
            }
            self.server_max = n;
        }
        Ok(())
    }

    fn client_message(&mut self, payload: &Payload) -> Result<(), Violation> {
        let Some(n) = message_number(payload, b's') else {
            return violation("no phantom messages", format!("client got {payload:?}"));
        };
        if !self.server_sent.contains(&n) {
            return violation(
                "no phantom messages",
                format!("client got s{n}, never sent"),
            );
        }
        if !self.client_got.insert(n) {
            return violation(
                "no duplicates (server to client)",
                format!("client got s{n} twice"),
            );
        }
        if n < self.client_max {
            return violation(
                "in order (server to client)",
                format!("client got s{n} after s{}", self.client_max),
            );
        }
        if self.protocol {
            for m in self.client_max + 1..n {
                if self.server_sent.contains(&m) && !self.may_lose.contains(&m) {
                    return violation(
                        "no loss (server to client)",
                        format!("client got s{n} but never s{m}"),
                    );
                }
            }
        }
        self.client_max = n;
        Ok(())
    }

    // ----- events ----------------------------------------------------------------------

    /// One event from `poll_event`.
    pub fn event(&mut self, event: &Event) -> Result<(), Violation> {
        match event {
            Event::StateChanged { from, to } => {
                if *from != self.state {
                    return violation(
                        "state changes chain",
                        format!(
                            "StateChanged from {from} but the last state reported was {}",
                            self.state
                        ),
                    );
                }
                if !from.can_become(*to) {
                    return violation("legal transitions", format!("{from} -> {to}"));
                }
                self.state = *to;
                self.ever_connected |= *to == State::Connected;
            }
            Event::AttemptStarted { attempt, .. } => {
                // Counting starts over (1) or goes on (+1); it never skips or repeats.
                if *attempt != 1 && *attempt != self.last_attempt.saturating_add(1) {
                    return violation(
                        "attempts numbered in order",
                        format!("attempt {attempt} after attempt {}", self.last_attempt),
                    );
                }
                self.last_attempt = *attempt;
            }
            Event::ReconnectScheduled {
                attempt,
                delay,
                hinted,
            } => {
                if !hinted {
                    let (lo, hi) = self.backoff.bounds(*attempt);
                    if *delay < lo || *delay > hi || *delay > self.max_delay {
                        return violation(
                            "backoff within bounds",
                            format!(
                                "attempt {attempt}: delay {delay:?} outside {lo:?}..={hi:?} (max {:?})",
                                self.max_delay
                            ),
                        );
                    }
                }
                if *attempt == 0 {
                    return violation("backoff within bounds", "attempt 0 scheduled".into());
                }
            }
            Event::Message(payload) => self.client_message(payload)?,
            Event::Delivered { id } => {
                let Some(&n) = self.numbers.get(id) else {
                    return violation(
                        "no phantom messages",
                        format!("Delivered {id:?}, never sent"),
                    );
                };
                if let Some(o) = self.outcome.insert(*id, Outcome::Delivered) {
                    return violation(
                        "one outcome per message",
                        format!("Delivered {id:?} (c{n}) after {o:?}"),
                    );
                }
                if !self.protocol {
                    return violation("one outcome per message", "Delivered in plain mode".into());
                }
                if !self.server_count.contains_key(&n) {
                    return violation(
                        "acknowledged means delivered",
                        format!("Delivered {id:?} (c{n}) but the server never got it"),
                    );
                }
            }
            Event::Dropped { id, reason } => {
                let Some(&n) = self.numbers.get(id) else {
                    return violation("no phantom messages", format!("Dropped {id:?}, never sent"));
                };
                if let Some(o) = self.outcome.insert(*id, Outcome::Dropped(*reason)) {
                    return violation(
                        "one outcome per message",
                        format!("Dropped {id:?} (c{n}) after {o:?}"),
                    );
                }
                if self.protocol
                    && *reason != DropReason::Unconfirmed
                    && self.server_count.contains_key(&n)
                {
                    return violation(
                        "delivered or dropped, never both",
                        format!("Dropped({reason:?}) {id:?} (c{n}), which the server already got"),
                    );
                }
                let legal = match reason {
                    DropReason::Overflow => self.queue.overflow == OverflowPolicy::DropOldest,
                    DropReason::Expired => self.queue.max_age.is_some(),
                    DropReason::Stopped => self.excuses.user_closed,
                    // Or written before the server lost the session, then past `max_age`
                    // or pushed out of the full queue before it went again.
                    DropReason::Unconfirmed => {
                        self.excuses.user_closed
                            || (self.session_resets > 0
                                && (self.queue.max_age.is_some()
                                    || self.queue.overflow == OverflowPolicy::DropOldest))
                    }
                    _ => false,
                };
                if !legal {
                    return violation(
                        "drops have a cause",
                        format!("Dropped({reason:?}) {id:?} with queue {:?}", self.queue),
                    );
                }
            }
            Event::SessionReset { .. } => {
                self.session_resets += 1;
                // One reset per lost session at most: a server that resets again (a
                // reset Welcome that never arrived misread) loses messages.
                if self.session_resets > self.lossy_restarts {
                    return violation(
                        "sessions reset only when the server lost them",
                        format!(
                            "SessionReset #{} after {} lossy restarts",
                            self.session_resets, self.lossy_restarts
                        ),
                    );
                }
                // The client renumbers and resends what is unacknowledged: whatever of it
                // the server already delivered comes again.
                self.grant_reset_allowances();
            }
            Event::Stopped(reason) => {
                let excused = match reason {
                    TerminalReason::UserClosed { .. } => self.excuses.user_closed,
                    TerminalReason::AuthRejected(_) => self.excuses.auth_outage,
                    TerminalReason::GaveUp { .. } => self.max_attempts,
                    TerminalReason::Fatal(_) => self.excuses.blocked_without_fallback,
                    _ => false,
                };
                if !excused {
                    return violation(
                        "stops have a cause",
                        format!("Stopped({reason}) with no injected fault to explain it"),
                    );
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// The queue figures after a step.
    pub fn queue(&self, depth: usize, bytes: usize) -> Result<(), Violation> {
        if depth > self.queue.max_messages || bytes > self.queue.max_bytes {
            return violation(
                "queue within limits",
                format!(
                    "{depth} messages / {bytes} bytes retained; limits {} / {}",
                    self.queue.max_messages, self.queue.max_bytes
                ),
            );
        }
        Ok(())
    }

    // ----- the end ---------------------------------------------------------------------

    /// Every server message received (or allowed lost).
    #[must_use]
    pub fn server_messages_done(&self) -> bool {
        // Both sets hold only numbers the server sent.
        let lost = self
            .may_lose
            .iter()
            .filter(|n| !self.client_got.contains(n))
            .count();
        self.client_got.len() + lost == self.server_sent.len()
    }

    /// Every accepted message has its outcome.
    #[must_use]
    pub fn client_messages_done(&self) -> bool {
        // `outcome` holds only ids `send` accepted.
        self.outcome.len() == self.numbers.len()
    }

    /// The final accounting (protocol mode): nothing lost, nothing unexplained.
    pub fn finish(&self) -> Result<(), Violation> {
        if !self.protocol {
            return Ok(());
        }
        let mut ids: Vec<_> = self.numbers.iter().collect();
        ids.sort();
        for (id, n) in ids {
            let delivered = self.server_count.contains_key(n);
            match (self.outcome.get(id), delivered) {
                (Some(Outcome::Delivered), true)
                | (Some(Outcome::Dropped(DropReason::Unconfirmed)), _)
                | (Some(Outcome::Dropped(_)), false) => {}
                (o, d) => {
                    return violation(
                        "delivered or dropped (client to server)",
                        format!("c{n} ({id:?}): outcome {o:?}, server got it: {d}"),
                    )
                }
            }
        }
        for n in &self.server_sent {
            if !self.client_got.contains(n) && !self.may_lose.contains(n) {
                return violation(
                    "no loss (server to client)",
                    format!("s{n} never reached the client"),
                );
            }
        }
        Ok(())
    }

    /// Figures for the summary: (accepted sends, server messages, lossy restarts).
    #[must_use]
    pub fn figures(&self) -> (usize, usize, u32) {
        (
            self.numbers.len(),
            self.server_sent.len(),
            self.lossy_restarts,
        )
    }
}
