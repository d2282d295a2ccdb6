//! One WebSocket connection: `/ws` (the Tether protocol) or `/echo` (plain echo).
//!
//! ```text
//!   upgrade (token checked)
//!        │
//!        ▼            first frame not Hello,
//!   ┌─────────┐       undecodable frame        ┌─────────┐
//!   │ awaiting│ ─────────────────────────────► │ closing │ ── close frame sent, the
//!   │  Hello  │       idle limit (4408),       │ (code)  │    client's awaited for
//!   └─────────┘       token expiry (4401), …   └─────────┘    `close_grace`, then gone
//!        │ Hello: attached to its session           ▲
//!        ▼ (Welcome + resend queued)                │ 4400 4401 4403 4408 4409
//!   ┌─────────┐ ────────────────────────────────────┘ 1000 (detached) 1001 (shutdown)
//!   │  open   │                                       1009 (too big) 1013 (too slow)
//!   └─────────┘ ── client's close frame or lost connection ──► gone    1012 (drain)
//! ```
//!
//! `/echo` sockets start in `open`. A kill drops a socket in any state at once.
//!
//! Two tasks per socket: this one reads, runs the timers (idle limit, token expiry,
//! latency probes) and decides when to close; a writer drains the socket's queue, so a
//! client that stops reading cannot stall the reader or its timers.

use std::future::pending;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{FutureExt as _, SinkExt as _, StreamExt as _};
use tether_core::close::codes;
use tether_core::protocol::Envelope;
use tether_core::{Bytes, Payload, Text};
use tokio::sync::mpsc;
use tokio::time::{sleep_until, Interval};
use tracing::debug;

use tether_core::endpoint::{ConnId, Greeting, TokenRefused};

use crate::hub::{ConnStats, Principal, Route};
use crate::outbound::{CloseRequest, OutQueue, Outbound, QueueReader, SocketLink};
use crate::server::App;
use crate::server::ConnSlot;

/// Most frames handled in one go before the timers get a look in.
const DRAIN_BATCH: usize = 64;
/// Longest close reason a close frame can carry.
const MAX_REASON: usize = 123;

/// What a socket speaks.
#[derive(Clone, Debug)]
pub(crate) enum Mode {
    /// The Tether protocol; `room` from the `room` query parameter.
    Protocol { room: Option<String> },
    /// Verbatim echo, `ping` → `pong`.
    Plain,
}

/// What handling one read did.
enum Step {
    Continue,
    /// Close with this code and reason.
    Close(u16, String),
    /// The client sent a close frame (with this code).
    PeerClosed(Option<u16>),
    /// The connection is gone without a close frame.
    Lost(&'static str),
}

/// How the connection ended, for the logs and metrics.
struct End {
    code: Option<u16>,
    reason: String,
}

/// Serves one upgraded socket until it closes or the server is killed.
pub(crate) async fn run(
    app: Arc<App>,
    socket: WebSocket,
    principal: Principal,
    mode: Mode,
    slot: Option<ConnSlot>,
) {
    let _guard = app.track();
    // Counts against the connection cap until the socket is gone.
    let _slot = slot;
    if app.killed.get() {
        return;
    }
    let route = match mode {
        Mode::Protocol { .. } => Route::Ws,
        Mode::Plain => Route::Echo,
    };
    let (out_tx, out_rx) = mpsc::unbounded_channel();
    let (ctl_tx, ctl_rx) = mpsc::unbounded_channel();
    let link = SocketLink {
        out: out_tx,
        ctl: ctl_tx,
        queue: app.hub.out_queue(&app.config),
    };
    let (id, stats) = app.hub.open_socket(&principal, route, link.clone());
    let (sink, stream) = socket.split();
    let writer = tokio::spawn(write_loop(
        Arc::clone(&app),
        sink,
        out_rx,
        Arc::clone(&link.queue),
        // Protocol messages are counted as acknowledged (the hub); plain ones as written.
        (route == Route::Echo).then(|| Arc::clone(&stats)),
    ));
    let token_deadline = principal.claims.as_ref().map(deadline_of);
    let mut conn = Socket {
        app: Arc::clone(&app),
        id,
        principal,
        mode,
        greeted: false,
        stream,
        link,
        ctl: ctl_rx,
        stats,
        last_seen: Instant::now(),
        token_deadline,
        probe_sent: None,
        probe_counter: 0,
    };
    let end = tokio::select! {
        biased;
        () = app.killed.wait(true) => None,
        end = conn.drive() => Some(end),
    };
    match end {
        None => {
            writer.abort();
            app.hub.close_socket(id, None, "server killed");
        }
        Some(end) => {
            app.hub.close_socket(id, end.code, &end.reason);
            drop(conn);
            let mut writer = writer;
            if tokio::time::timeout(app.config.close_grace, &mut writer)
                .await
                .is_err()
            {
                writer.abort();
            }
        }
    }
}

/// When a token's claims run out, on the monotonic clock.
fn deadline_of(claims: &crate::token::Claims) -> Instant {
    crate::after(Instant::now(), claims.remaining(SystemTime::now()))
}

async fn write_loop(
    app: Arc<App>,
    mut sink: SplitSink<WebSocket, Message>,
    rx: mpsc::UnboundedReceiver<Outbound>,
    queue: Arc<OutQueue>,
    plain: Option<Arc<ConnStats>>,
) {
    let _guard = app.track();
    // Whatever way this ends, what is still queued stops counting (before the tracker
    // says the connection is gone).
    let mut rx = QueueReader::new(rx, Arc::clone(&queue));
    while let Some(item) = rx.recv().await {
        queue.taken(&item);
        // Closing as too slow: what is queued is dropped (the session's resume buffer
        // keeps the messages), only the close frame goes out.
        if queue.overflowed() && !matches!(item, Outbound::Close(..)) {
            continue;
        }
        if app.frozen.get() {
            tokio::select! {
                () = app.thawed() => {}
                () = app.killed.wait(true) => return,
            }
        }
        let (message, counted, last) = match item {
            Outbound::Msg(p) => (to_message(p), true, false),
            Outbound::Control(p) => (to_message(p), false, false),
            Outbound::Ping(data) => (Message::Ping(data.into()), false, false),
            Outbound::Close(code, reason) => (
                Message::Close(Some(CloseFrame {
                    code,
                    reason: reason.into(),
                })),
                false,
                true,
            ),
        };
        // Batch writes: flush only when nothing else is queued.
        let written = if rx.is_empty() || last {
            sink.send(message).await
        } else {
            sink.feed(message).await
        };
        if written.is_err() {
            return;
        }
        if let (true, Some(stats)) = (counted, &plain) {
            app.hub.count_plain(stats, 0, 1);
        }
        if last {
            return;
        }
    }
}

/// Both sides hold `Bytes`: the payload goes out and comes in without a copy (a text
/// is checked as UTF-8 again when it changes type, which cannot fail).
fn to_message(payload: Payload) -> Message {
    match payload {
        Payload::Text(t) => Message::Text(Utf8Bytes::try_from(t.into_bytes()).unwrap_or_default()),
        Payload::Binary(b) => Message::Binary(b),
    }
}

fn to_payload(message: Message) -> Option<Payload> {
    match message {
        Message::Text(t) => Text::try_from(Bytes::from(t)).ok().map(Payload::Text),
        Message::Binary(b) => Some(Payload::Binary(b)),
        _ => None,
    }
}

/// The close code RFC 6455 (7.4.1) gives a read error, if the connection can still
/// take a close frame: 1009 for a message above the size limit, 1007 for a text
/// message that is not UTF-8, 1002 for a protocol violation (an unmasked client frame,
/// a bad opcode, a fragmented control frame, …).
fn close_code_of(err: &axum::Error) -> Option<(u16, &'static str)> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(err);
    while let Some(e) = source {
        match e.downcast_ref::<tungstenite::Error>() {
            Some(tungstenite::Error::Capacity(_)) => {
                return Some((codes::MESSAGE_TOO_BIG, "message too big"))
            }
            Some(tungstenite::Error::Utf8(_)) => {
                return Some((1007, "invalid UTF-8 in a text message"))
            }
            Some(tungstenite::Error::Protocol(p)) => {
                use tungstenite::error::ProtocolError as P;
                return match p {
                    // The peer is gone: there is no one to send a close frame to.
                    P::ResetWithoutClosingHandshake | P::SendAfterClosing => None,
                    _ => Some((1002, "protocol error")),
                };
            }
            _ => {}
        }
        source = e.source();
    }
    None
}

fn clip(reason: &str) -> String {
    let mut end = reason.len().min(MAX_REASON);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    reason[..end].to_owned()
}

struct Socket {
    app: Arc<App>,
    id: ConnId,
    principal: Principal,
    mode: Mode,
    /// A Hello arrived (protocol mode).
    greeted: bool,
    stream: SplitStream<WebSocket>,
    link: SocketLink,
    ctl: mpsc::UnboundedReceiver<CloseRequest>,
    stats: Arc<ConnStats>,
    /// Last frame from the client.
    last_seen: Instant,
    token_deadline: Option<Instant>,
    /// The latency probe in flight: its payload and when it left.
    probe_sent: Option<([u8; 8], Instant)>,
    probe_counter: u64,
}

impl Socket {
    async fn drive(&mut self) -> End {
        let app = Arc::clone(&self.app);
        let idle_limit = app.config.idle_limit;
        let mut probe: Option<Interval> = app.config.latency_probe_interval.map(|every| {
            let mut i = tokio::time::interval_at(crate::after(Instant::now(), every).into(), every);
            i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            i
        });
        let mut frozen = app.frozen.subscribe();
        loop {
            if app.frozen.get() {
                tokio::select! {
                    () = app.shutdown.wait(true) => {
                        return self.close(codes::GOING_AWAY, "server shutting down").await;
                    }
                    () = app.thawed() => {}
                }
                // The server was not listening: the client's silence does not count.
                self.last_seen = Instant::now();
                self.probe_sent = None;
                if let Some(p) = probe.as_mut() {
                    p.reset();
                }
                continue;
            }
            let idle_at = crate::after(self.last_seen, idle_limit);
            let token_at = self.token_deadline;
            let step = tokio::select! {
                biased;
                _ = frozen.changed() => continue,
                () = app.shutdown.wait(true) => {
                    return self.close(codes::GOING_AWAY, "server shutting down").await;
                }
                () = app.draining.wait(true) => return self.come_back_later().await,
                Some(req) = self.ctl.recv() => {
                    return self.close(req.code, req.reason).await;
                }
                next = self.stream.next() => {
                    if !self.greeted {
                        self.load_session(&next).await;
                    }
                    self.on_read(next)
                }
                () = sleep_until(idle_at.into()) => {
                    return self.close(codes::IDLE_TIMEOUT, "idle timeout").await;
                }
                () = async {
                    match token_at {
                        Some(at) => sleep_until(at.into()).await,
                        None => pending().await,
                    }
                } => {
                    return self.close(codes::UNAUTHORIZED, "token expired").await;
                }
                () = async {
                    match probe.as_mut() {
                        Some(p) => { p.tick().await; }
                        None => pending().await,
                    }
                } => {
                    self.send_probe();
                    Step::Continue
                }
            };
            let mut step = step;
            // Handle what else is already readable, then acknowledge once.
            for _ in 0..DRAIN_BATCH {
                if !matches!(step, Step::Continue) {
                    break;
                }
                match self.stream.next().now_or_never() {
                    Some(next) => step = self.on_read(next),
                    None => break,
                }
            }
            match step {
                Step::Continue => {
                    if self.greeted {
                        self.app.hub.flush_ack(self.id);
                    }
                }
                Step::Close(code, reason) => {
                    if self.greeted {
                        self.app.hub.flush_ack(self.id);
                    }
                    return self.close(code, &reason).await;
                }
                Step::PeerClosed(code) => {
                    self.drain().await;
                    return End {
                        code,
                        reason: "closed by the client".into(),
                    };
                }
                Step::Lost(reason) => {
                    return End {
                        code: None,
                        reason: reason.into(),
                    };
                }
            }
        }
    }

    /// The server is draining: a client that said Hello gets its retry hint (its share
    /// of the drain window), then every socket is closed with 1012.
    async fn come_back_later(&mut self) -> End {
        if self.greeted {
            if let Some(delay) = self.app.drain_delay() {
                let after_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
                self.link
                    .push(Outbound::Control(Envelope::Retry { after_ms }.encode()));
            }
        }
        self.close(codes::SERVICE_RESTART, "service restart").await
    }

    /// Sends a close frame and waits (bounded) for the client's.
    async fn close(&mut self, code: u16, reason: &str) -> End {
        let reason = clip(reason);
        self.link.push(Outbound::Close(code, reason.clone()));
        self.drain().await;
        End {
            code: Some(code),
            reason,
        }
    }

    /// Reads until the connection ends, for at most the close grace period; reading is
    /// also what flushes tungstenite's automatic reply to a client's close frame.
    async fn drain(&mut self) {
        let grace = self.app.config.close_grace;
        let _ = tokio::time::timeout(grace, async {
            while let Some(Ok(_)) = self.stream.next().await {}
        })
        .await;
    }

    fn send_probe(&mut self) {
        self.probe_counter += 1;
        let data = self.probe_counter.to_be_bytes();
        self.probe_sent = Some((data, Instant::now()));
        self.link.push(Outbound::Ping(data.to_vec()));
    }

    /// With a shared store, before the socket's Hello is decided: the session it proves
    /// is loaded from the store if this instance does not have it (the client comes
    /// from another instance).
    async fn load_session(&self, next: &Option<Result<Message, axum::Error>>) {
        if self.app.hub.store_reachable().is_none() || !matches!(self.mode, Mode::Protocol { .. }) {
            return;
        }
        let Some(Ok(Message::Text(text))) = next else {
            return;
        };
        if let Ok(Envelope::Hello {
            client_id,
            attempt,
            secret,
            ..
        }) = Envelope::decode(Payload::from(text.as_str()))
        {
            self.app
                .hub
                .load(&self.principal.peer(), client_id, attempt, secret)
                .await;
        }
    }

    fn on_read(&mut self, next: Option<Result<Message, axum::Error>>) -> Step {
        let message = match next {
            None => return Step::Lost("connection lost"),
            Some(Err(e)) => {
                if let Some((code, reason)) = close_code_of(&e) {
                    debug!(conn = self.id.0, error = %e, code, "read failed: closing");
                    return Step::Close(code, reason.into());
                }
                debug!(conn = self.id.0, error = %e, "read failed");
                return Step::Lost("read error");
            }
            Some(Ok(m)) => m,
        };
        let now = Instant::now();
        match message {
            Message::Close(frame) => Step::PeerClosed(frame.map(|f| f.code)),
            Message::Pong(data) => {
                // Answers to our probes measure latency but are not the client's own
                // traffic, so they do not count against the idle limit.
                if let Some((sent, at)) = self.probe_sent {
                    if data.as_ref() == sent {
                        self.probe_sent = None;
                        let rtt = now.saturating_duration_since(at);
                        let us = u64::try_from(rtt.as_micros()).unwrap_or(u64::MAX).max(1);
                        self.stats.latency_us.store(us, Ordering::Relaxed);
                        self.app.hub.metrics.latency(now, rtt);
                    }
                }
                Step::Continue
            }
            Message::Ping(_) => {
                self.last_seen = now;
                Step::Continue
            }
            data => {
                self.last_seen = now;
                let Some(payload) = to_payload(data) else {
                    return Step::Continue;
                };
                match self.mode {
                    Mode::Plain => self.on_plain(payload),
                    Mode::Protocol { .. } => self.on_envelope(payload),
                }
            }
        }
    }

    fn on_plain(&mut self, payload: Payload) -> Step {
        self.app.hub.count_plain(&self.stats, 1, 0);
        if payload == Payload::Text("ping".into()) {
            self.link
                .push(Outbound::Control(Payload::Text("pong".into())));
        } else {
            self.link.push(Outbound::Msg(payload));
        }
        Step::Continue
    }

    fn on_envelope(&mut self, frame: Payload) -> Step {
        let envelope = match Envelope::decode(frame) {
            Ok(e) => e,
            Err(e) => return Step::Close(codes::PROTOCOL_ERROR, format!("invalid frame: {e}")),
        };
        // The endpoint refuses a second Hello, and anything else before the first.
        if let Envelope::Hello {
            client_id,
            recv_seq,
            session,
            attempt,
            secret,
        } = envelope
        {
            let room = match &self.mode {
                Mode::Protocol { room } => room.clone(),
                Mode::Plain => None,
            };
            let hello = Greeting {
                client_id,
                recv_seq,
                session,
                attempt,
                secret,
            };
            if let Err(refused) = self.app.hub.hello_socket(self.id, hello, room) {
                // Typically the client abandoned this socket before its Hello got here;
                // the session and its current transport are left alone.
                debug!(conn = self.id.0, %refused, "Hello refused");
                let reason = match &refused {
                    tether_core::endpoint::HelloError::Refused(_) => "stale transport".into(),
                    other => other.to_string(),
                };
                return Step::Close(refused.code(), reason);
            }
            self.greeted = true;
            return Step::Continue;
        }
        // A refreshed token (`T <token>`) is judged under the hub's lock, before
        // anything after it in the batch is taken.
        let tokens = &self.app.tokens;
        let current = self.principal.claims.as_ref().map(|c| c.user.clone());
        let mut refreshed = None;
        let mut rejected = None;
        let mut check = |token: &str| match tokens.verify(token) {
            Err(e) => {
                rejected = Some(e.to_string());
                Err(TokenRefused::Invalid)
            }
            Ok(claims) => match &current {
                // An anonymous dev-mode client keeps its identity and has no expiry.
                None => Ok(()),
                Some(user) if *user != claims.user => Err(TokenRefused::OtherUser),
                Some(_) => {
                    refreshed = Some(claims);
                    Ok(())
                }
            },
        };
        let result = self.app.hub.receive_socket(self.id, envelope, &mut check);
        if let Some(claims) = refreshed {
            self.token_deadline = Some(deadline_of(&claims));
            self.principal.claims = Some(claims);
        }
        match result {
            Ok(()) => Step::Continue,
            Err(e) => {
                let reason = match (&e, rejected) {
                    (
                        tether_core::endpoint::ReceiveError::Token(TokenRefused::Invalid),
                        Some(why),
                    ) => {
                        format!("refreshed token rejected: {why}")
                    }
                    _ => e.to_string(),
                };
                Step::Close(e.code(), reason)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_clipped_on_a_char_boundary() {
        assert_eq!(clip("short"), "short");
        let long = "é".repeat(100);
        let clipped = clip(&long);
        assert!(clipped.len() <= MAX_REASON);
        assert!(clipped.chars().all(|c| c == 'é'));
    }
}
