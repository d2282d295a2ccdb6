//! Draining a client: every command, event and completion, then the timer, written
//! into the answer buffer (`js/driver.js` and `js/decode.js` read them).

use tether_core::{
    Cause, CauseKind, DeliveryError, DropReason, Event, Quality, SendError, State, TerminalReason,
    TetherError, TransportFailure, TransportId,
};
use tether_dispatch::{Command, Completion};

use super::*;

// ---------------------------------------------------------------------------------------
// Draining: commands, events, completions, then the timer.

/// Drains everything the client has for JavaScript into `tw_out` and returns its length,
/// after telling the dispatcher that every message it handed out is read: the package has
/// listeners only, which take each message as it is emitted (no reader of events that
/// could fall behind), and the core resumes reading and acknowledging on that report.
/// Records:
/// 1 a command, 2 an event, 3 a completion (each a tag, then its fields), then 0 and
/// the trailer: the next timeout (ms, NaN: none), whether to read the sockets, whether
/// the client is finished, whether the waiting sends should look for room again
/// (`Dispatcher::poll_room`).
#[no_mangle]
pub extern "C" fn tw_drain(c: u32, now: f64) -> usize {
    answer(|w| {
        let Some(d) = client(c) else { return };
        d.handle_unread(at(now), 0, 0);
        loop {
            let mut busy = false;
            while let Some(command) = d.poll_command() {
                busy = true;
                w.u8(1);
                command_record(w, command);
            }
            while let Some(event) = d.poll_event() {
                busy = true;
                w.u8(2);
                event_record(w, &event);
            }
            while let Some(completion) = d.poll_completion() {
                busy = true;
                completion_record(w, completion);
            }
            if !busy {
                break;
            }
        }
        w.u8(0);
        w.opt(d.poll_timeout().map(ms_of));
        w.u8(u8::from(d.connection().wants_read()));
        w.u8(u8::from(d.is_finished()));
        w.u8(u8::from(d.poll_room()));
    })
}

fn id(w: &mut Writer, id: TransportId) {
    w.f64(id.0 as f64);
}

fn headers(w: &mut Writer, headers: &[(String, String)]) {
    w.u32(headers.len() as u32);
    for (name, value) in headers {
        w.str(name);
        w.str(value);
    }
}

fn command_record(w: &mut Writer, command: Command<Js>) {
    match command {
        Command::Connect {
            id: i,
            url,
            protocols,
            headers: h,
        } => {
            w.u8(0);
            id(w, i);
            w.str(&url);
            w.u32(protocols.len() as u32);
            for p in &protocols {
                w.str(p);
            }
            headers(w, &h);
        }
        Command::Send {
            socket,
            id: i,
            frame,
        } => {
            w.u8(1);
            w.u32(socket);
            id(w, i);
            w.payload(&frame);
        }
        Command::Ping { socket, id: i } => {
            w.u8(2);
            w.u32(socket);
            id(w, i);
        }
        Command::Close {
            socket,
            id: i,
            code,
            reason,
        } => {
            // What every platform's WebSocket sends (tether_dispatch::close::sendable).
            let (code, reason) = tether_dispatch::close::sendable(code, &reason);
            w.u8(3);
            w.u32(socket);
            id(w, i);
            w.u32(u32::from(code));
            w.str(reason);
        }
        Command::Cancel(task) => {
            w.u8(4);
            w.u32(task);
        }
        Command::Abandon { id: i, attempt } => {
            w.u8(5);
            id(w, i);
            w.opt(attempt.map(f64::from));
        }
        Command::PollingEnded { id: i } => {
            w.u8(6);
            id(w, i);
        }
        Command::HttpRequest {
            id: i,
            request,
            kind,
            url,
            headers: h,
            body,
        } => {
            w.u8(7);
            id(w, i);
            w.f64(request.0 as f64);
            w.u8(u8::from(kind == tether_core::HttpRequestKind::Receive));
            w.str(&url);
            headers(w, &h);
            w.bytes(&body);
        }
        Command::FetchToken { request } => {
            w.u8(8);
            w.f64(request.0 as f64);
        }
        _ => w.u8(9),
    }
}

pub(super) fn state(s: State) -> u8 {
    match s {
        State::Disconnected => 0,
        State::Connecting => 1,
        State::Connected => 2,
        State::Reconnecting => 3,
        State::Error => 4,
        _ => 5,
    }
}

pub(super) fn quality(q: Quality) -> u8 {
    match q {
        Quality::Excellent => 0,
        Quality::Good => 1,
        Quality::Fair => 2,
        Quality::Poor => 3,
        _ => 4,
    }
}

fn drop_reason(r: DropReason) -> u8 {
    match r {
        DropReason::Overflow => 0,
        DropReason::Expired => 1,
        DropReason::Unconfirmed => 3,
        _ => 2,
    }
}

/// A cause's kind: its index in `CauseKind::ALL`.
fn cause_kind(w: &mut Writer, kind: CauseKind) {
    w.u8(CauseKind::ALL.iter().position(|k| *k == kind).unwrap_or(0) as u8);
}

/// `{ kind, code, status, reason }`: the kind (see `cause_kind`).
fn cause(w: &mut Writer, c: &Cause) {
    cause_kind(w, c.kind);
    w.opt(c.code.map(f64::from));
    w.opt(c.status.map(f64::from));
    w.str(&c.reason);
}

/// A stop: 0 user closed (code, reason), 1 auth rejected, 2 replaced, 3 fatal (a
/// cause), 4 gave up (attempts, the last cause), 5 driver failed (why).
pub(super) fn terminal(w: &mut Writer, t: &TerminalReason) {
    match t {
        TerminalReason::UserClosed { code, reason } => {
            w.u8(0);
            w.u32(u32::from(*code));
            w.str(reason);
        }
        TerminalReason::AuthRejected(c) => {
            w.u8(1);
            cause(w, c);
        }
        TerminalReason::Replaced(c) => {
            w.u8(2);
            cause(w, c);
        }
        TerminalReason::Fatal(c) => {
            w.u8(3);
            cause(w, c);
        }
        TerminalReason::GaveUp { attempts, last } => {
            w.u8(4);
            w.u32(*attempts);
            cause(w, last);
        }
        TerminalReason::DriverFailed(why) => {
            w.u8(5);
            w.str(why);
        }
        _ => {
            w.u8(5);
            w.str("");
        }
    }
}

/// A failure as an `attempt-failed` error shows it: the kind of its cause (see `cause`),
/// then its text.
fn failure_record(w: &mut Writer, f: &TransportFailure) {
    cause_kind(w, f.kind());
    w.str(&f.text());
}

/// A decode error: its variant's index, a number, a name (for `UnsupportedVersion`, the
/// version received, then this protocol's version).
fn decode_error(w: &mut Writer, e: &tether_core::protocol::DecodeError) {
    use tether_core::protocol::DecodeError;
    let (t, a, name): (u8, u64, &str) = match e {
        DecodeError::Empty => (0, 0, ""),
        DecodeError::UnknownTag(tag) => (1, u64::from(*tag), ""),
        DecodeError::MissingField(name) => (2, 0, name),
        DecodeError::BadNumber(name) => (3, 0, name),
        DecodeError::Truncated => (4, 0, ""),
        DecodeError::WrongFrameType => (5, 0, ""),
        DecodeError::ZeroSeq => (6, 0, ""),
        DecodeError::TrailingData => (7, 0, ""),
        DecodeError::UnknownRecordKind(k) => (8, u64::from(*k), ""),
        DecodeError::InvalidUtf8 => (9, 0, ""),
        DecodeError::UnsupportedVersion(v) => (10, *v, ""),
        _ => (11, 0, ""),
    };
    w.u8(t);
    w.u64(a);
    w.str(name);
    if t == 10 {
        w.u64(tether_core::protocol::PROTOCOL_VERSION);
    }
}

/// An `error` event: 0 protocol (a decode error), 1 violation (its index), 2 message too
/// large (size), 3 token unavailable (why), 4 attempt failed (a failure), 5 poll body (a
/// decode error).
fn tether_error(w: &mut Writer, e: &TetherError) {
    use tether_core::ProtocolViolation as V;
    match e {
        TetherError::Protocol(d) => {
            w.u8(0);
            decode_error(w, d);
        }
        TetherError::ProtocolViolation(v) => {
            w.u8(1);
            w.u8(match v {
                V::WelcomeOutsideHandshake => 0,
                V::MessageBeforeWelcome => 1,
                V::SequenceGap => 2,
                V::AckOfUnsent => 3,
                _ => 4,
            });
        }
        TetherError::MessageTooLarge { size } => {
            w.u8(2);
            w.f64(*size as f64);
        }
        TetherError::TokenUnavailable(why) => {
            w.u8(3);
            w.str(why);
        }
        TetherError::AttemptFailed(f) => {
            w.u8(4);
            failure_record(w, f);
        }
        TetherError::PollBody(d) => {
            w.u8(5);
            decode_error(w, d);
        }
        _ => w.u8(6),
    }
}

/// Every event, every field the npm package's events carry. The tag is the event's index
/// in `EVENTS` of bindings/wasm/src/emitter.js, 13 for
/// one the package does not export.
fn event_record(w: &mut Writer, e: &Event) {
    use tether_core::AttemptKind;
    match e {
        Event::StateChanged { from, to } => {
            w.u8(0);
            w.u8(state(*from));
            w.u8(state(*to));
        }
        Event::Message(p) => {
            w.u8(1);
            w.payload(p);
        }
        Event::Disconnected {
            cause: c,
            connected_for,
        } => {
            w.u8(10);
            cause(w, c);
            w.ms(*connected_for);
        }
        Event::AttemptStarted { attempt, kind } => {
            w.u8(3);
            w.u32(*attempt);
            w.u8(match kind {
                AttemptKind::WebSocket => 0,
                AttemptKind::Polling => 1,
                _ => 2,
            });
        }
        Event::ReconnectScheduled {
            attempt,
            delay,
            hinted,
        } => {
            w.u8(4);
            w.u32(*attempt);
            w.ms(*delay);
            w.u8(u8::from(*hinted));
        }
        Event::QualityChanged {
            quality: q,
            reliability,
        } => {
            w.u8(2);
            w.u8(quality(*q));
            w.u8(*reliability);
        }
        Event::FallbackChanged { active } => {
            w.u8(5);
            w.u8(u8::from(*active));
        }
        Event::Delivered { id } => {
            w.u8(7);
            w.f64(id.0 as f64);
        }
        Event::Dropped { id, reason } => {
            w.u8(8);
            w.f64(id.0 as f64);
            w.u8(drop_reason(*reason));
        }
        Event::SessionReset { resent } => {
            w.u8(11);
            w.f64(*resent as f64);
        }
        Event::TokenRefreshed => w.u8(12),
        Event::Error(e) => {
            w.u8(6);
            tether_error(w, e);
        }
        Event::Stopped(t) => {
            w.u8(9);
            terminal(w, t);
        }
        _ => w.u8(13),
    }
}

/// A refusal of `send`: 0 queue full (messages, bytes), 1 too large (size, max),
/// 2 stopped (the state), 3 closing.
pub(super) fn send_error(w: &mut Writer, e: &SendError) {
    match e {
        SendError::QueueFull { messages, bytes } => {
            w.u8(0);
            w.f64(*messages as f64);
            w.f64(*bytes as f64);
        }
        SendError::TooLarge { size, max } => {
            w.u8(1);
            w.f64(*size as f64);
            w.f64(*max as f64);
        }
        SendError::Stopped(s) => {
            w.u8(2);
            w.u8(state(*s));
        }
        _ => w.u8(3),
    }
}

/// A delivery's failure: 0 rejected (a send error), 1 unconfirmable, 2 dropped (the
/// reason), 3 stopped (a stop), 4 client gone.
fn delivery_error(w: &mut Writer, e: &DeliveryError) {
    match e {
        DeliveryError::Rejected(e) => {
            w.u8(0);
            send_error(w, e);
        }
        DeliveryError::Unconfirmable => w.u8(1),
        DeliveryError::Dropped(r) => {
            w.u8(2);
            w.u8(drop_reason(*r));
        }
        DeliveryError::Stopped(t) => {
            w.u8(3);
            terminal(w, t);
        }
        _ => w.u8(4),
    }
}

/// 3, then 0 sent (waiter, 1 and the id, or 0 and the error), 1 flushed (waiter, 1, or
/// 0 and the error), 2 closed (waiter).
pub(super) fn completion_record(w: &mut Writer, completion: Completion<Js>) {
    w.u8(3);
    match completion {
        Completion::Sent { waiter, result } => {
            w.u8(0);
            waited(w, waiter, result, |w, id| w.f64(id.0 as f64));
        }
        Completion::Flushed { waiter, result } => {
            w.u8(1);
            waited(w, waiter, result, |_, ()| {});
        }
        Completion::Closed { waiter } => {
            w.u8(2);
            w.u32(waiter);
        }
        _ => w.u8(3),
    }
}

/// A waiter's completion after its kind: the waiter, then 1 and what `ok` writes of the
/// value, or 0 and the error.
fn waited<T>(
    w: &mut Writer,
    waiter: u32,
    result: Result<T, DeliveryError>,
    ok: impl FnOnce(&mut Writer, T),
) {
    w.u32(waiter);
    match result {
        Ok(v) => {
            w.u8(1);
            ok(w, v);
        }
        Err(e) => {
            w.u8(0);
            delivery_error(w, &e);
        }
    }
}
