//! Making and forgetting a client, what comes back from the network, the timer and the
//! page, and the user's calls.

use tether_core::{
    Connection, Duration, Entropy, Hint, Payload, RequestId, Token, TransportFailure, TransportId,
};
use tether_dispatch::transport::SocketEvent;
use tether_dispatch::Dispatcher;

use super::drain::{completion_record, send_error};
#[cfg(feature = "handoff")]
use super::options::session;
use super::options::{config, violation};
use super::*;

/// `new TetherClient(url, options)`: the input is the options (see `config`), then 16
/// random bytes (`crypto.getRandomValues`), whether the transport answers pings with
/// pongs (Node's `ws`: 1; a browser: 0), and the session to resume (a flag, then it).
/// Returns the client's number, or -1 with the error in `tw_out`: 1 and a violation (see
/// `violation`), 2 and a handoff error (0 not protocol, 1 no session, 2 numbering, 3 not
/// a session). The client connects at once: drain it.
#[no_mangle]
pub extern "C" fn tw_new(now: f64) -> i32 {
    let mut r = Reader::input();
    let made = config(&mut r).map_err(|e| answer(|w| violation(w, &e)));
    let Ok(config) = made else {
        return -1;
    };
    let mut seed = [0u8; 16];
    for (to, from) in seed.iter_mut().zip(r.take(16)) {
        *to = *from;
    }
    let entropy = Entropy::from_bytes(seed);
    let pings = r.u8() == 1;
    let now = at(now);
    let resume = r.u8() == 1;
    #[cfg(feature = "handoff")]
    let conn = if resume {
        let Some(handoff) = session(&mut r) else {
            answer(|w| {
                w.u8(2);
                w.u8(3);
            });
            return -1;
        };
        Connection::resume(config, now, entropy, handoff).map_err(|e| {
            answer(|w| match e {
                tether_core::HandoffError::Config(e) => violation(w, &e),
                e => {
                    w.u8(2);
                    w.u8(match e {
                        tether_core::HandoffError::NotProtocol => 0,
                        tether_core::HandoffError::NoSession => 1,
                        _ => 2,
                    });
                }
            });
        })
    } else {
        Connection::new(config, now, entropy).map_err(|e| {
            answer(|w| violation(w, &e));
        })
    };
    #[cfg(not(feature = "handoff"))]
    let conn = {
        let _ = resume;
        Connection::new(config, now, entropy).map_err(|e| {
            answer(|w| violation(w, &e));
        })
    };
    let Ok(mut conn) = conn else {
        return -1;
    };
    conn.use_control_pings(pings);
    conn.connect(now);
    let d = Box::new(Dispatcher::new(conn, now));
    let clients = CLIENTS.get();
    match clients.iter().position(Option::is_none) {
        Some(i) => {
            clients[i] = Some(d);
            i as i32
        }
        None => {
            clients.push(Some(d));
            clients.len() as i32 - 1
        }
    }
}

/// Forgets a client (after `tw_client_dropped` and its close, or at once).
#[no_mangle]
pub extern "C" fn tw_free(c: u32) {
    if let Some(slot) = CLIENTS.get().get_mut(c as usize) {
        *slot = None;
    }
}

// ---------------------------------------------------------------------------------------
// What comes back from the network, the timer and the page.

/// A failure from its kind, two numbers and (Network, Tls) the input as text: 0 refused,
/// 1 network, 2 HTTP (status, Retry-After ms or NaN), 3 TLS, 4 blocked, 5 timeout,
/// 6 message too large (size).
fn failure(kind: u32, a: f64, b: f64) -> TransportFailure {
    match kind {
        0 => TransportFailure::Refused,
        1 => TransportFailure::Network(input_text()),
        2 => TransportFailure::Http {
            status: a as u16,
            retry_after: (!b.is_nan()).then(|| Duration::from_micros((b * 1000.0) as u64)),
        },
        3 => TransportFailure::Tls(input_text()),
        4 => TransportFailure::Blocked,
        6 => TransportFailure::MessageTooLarge { size: a as usize },
        _ => TransportFailure::Timeout,
    }
}

/// A `track_*` of the dispatcher: the task JavaScript started for a command (0 connect,
/// 1 poll request, 2 token fetch), to cancel it by.
#[no_mangle]
pub extern "C" fn tw_track(c: u32, what: u32, id: f64, task: u32) {
    let Some(d) = client(c) else { return };
    match what {
        0 => d.track_connect(TransportId(id as u64), task),
        #[cfg(feature = "polling")]
        1 => d.track_http_request(RequestId(id as u64), task),
        #[cfg(feature = "token")]
        2 => d.track_token(RequestId(id as u64), task),
        _ => {}
    }
}

/// Socket `id` opened; JavaScript's number for it is `socket`. False when the core no
/// longer wants it (close it).
#[no_mangle]
pub extern "C" fn tw_opened(c: u32, now: f64, id: f64, socket: u32) -> bool {
    client(c).is_some_and(|d| d.handle_opened(at(now), TransportId(id as u64), || socket))
}

/// Socket `id`'s connect failed (see `failure`).
#[no_mangle]
pub extern "C" fn tw_connect_failed(c: u32, now: f64, id: f64, kind: u32, a: f64, b: f64) {
    if let Some(d) = client(c) {
        d.handle_connect_failed(at(now), TransportId(id as u64), failure(kind, a, b));
    }
}

/// What socket `id` saw: 0 a text frame (the input), 1 a binary frame (the input), 2 a
/// pong, 3 closed (`a`: the code or NaN; the input: the reason), 4 failed (`a`: the
/// failure's kind, `b` its number; see `failure`). Returns the socket released at its
/// end (JavaScript's number), or -1.
#[no_mangle]
pub extern "C" fn tw_socket(c: u32, now: f64, id: f64, what: u32, a: f64, b: f64) -> i64 {
    let Some(d) = client(c) else { return -1 };
    let event = match what {
        0 => SocketEvent::Frame(Payload::from(input_text())),
        1 => SocketEvent::Frame(Payload::from(IN.get().clone())),
        2 => SocketEvent::Pong,
        3 => SocketEvent::Closed {
            code: (!a.is_nan()).then_some(a as u16),
            reason: input_text(),
        },
        _ => SocketEvent::Failed(failure(a as u32, b, f64::NAN)),
    };
    d.handle_socket(at(now), TransportId(id as u64), event)
        .map_or(-1, i64::from)
}

/// Socket `id` is gone (closed after `Close`, or ended).
#[no_mangle]
pub extern "C" fn tw_socket_gone(c: u32, id: f64) {
    if let Some(d) = client(c) {
        d.handle_socket_gone(TransportId(id as u64));
    }
}

/// A poll request's answer: `ok` and the body (the input), or the failure (see
/// `failure`: its kind and two numbers).
#[cfg(feature = "polling")]
#[no_mangle]
pub extern "C" fn tw_http_response(
    c: u32,
    now: f64,
    request: f64,
    ok: bool,
    kind: u32,
    a: f64,
    b: f64,
) {
    if let Some(d) = client(c) {
        let result = if ok {
            Ok(IN.get().clone())
        } else {
            Err(failure(kind, a, b))
        };
        d.handle_http_response(at(now), RequestId(request as u64), result);
    }
}

/// The token provider's answer: `ok` and the token (the input) valid for `expires_ms`
/// more (NaN: unknown), or what went wrong (the input).
#[cfg(feature = "token")]
#[no_mangle]
pub extern "C" fn tw_token(c: u32, now: f64, request: f64, ok: bool, expires_ms: f64) {
    if let Some(d) = client(c) {
        let text = input_text();
        let now = at(now);
        let result = if ok {
            Ok(Token {
                value: text,
                expires_at: (!expires_ms.is_nan()).then(|| {
                    tether_core::time::later(now, Duration::from_millis(expires_ms as u64))
                }),
            })
        } else {
            Err(text)
        };
        d.handle_token(now, RequestId(request as u64), result);
    }
}

/// The timer fired.
#[no_mangle]
pub extern "C" fn tw_timeout(c: u32, now: f64) {
    if let Some(d) = client(c) {
        d.handle_timeout(at(now));
    }
}

/// A page hint: 0 online, 1 offline, 2 visible, 3 hidden, 4 resumed (after a freeze).
#[no_mangle]
pub extern "C" fn tw_hint(c: u32, now: f64, hint: u32) {
    if let Some(d) = client(c) {
        let hint = match hint {
            0 => Hint::Online,
            1 => Hint::Offline,
            2 => Hint::Visible,
            3 => Hint::Hidden,
            _ => Hint::Resumed,
        };
        d.connection_mut().handle_hint(at(now), hint);
    }
}

/// Connects now (after `error` or `closed`, or ending a backoff wait).
#[no_mangle]
pub extern "C" fn tw_reconnect(c: u32, now: f64) {
    if let Some(d) = client(c) {
        d.connection_mut().reconnect(at(now));
    }
}

/// The application let go of the client (a FinalizationRegistry, or `free()`).
#[no_mangle]
pub extern "C" fn tw_client_dropped(c: u32, now: f64) {
    if let Some(d) = client(c) {
        d.handle_client_dropped(at(now));
    }
}

// ---------------------------------------------------------------------------------------
// The user's calls.

fn user_payload(binary: bool) -> Payload {
    if binary {
        Payload::from(IN.get().clone())
    } else {
        Payload::from(input_text())
    }
}

/// `send`: the input as text or binary. Returns the message's id, or -1 with the refusal
/// in `tw_out` (see `send_error`).
#[no_mangle]
pub extern "C" fn tw_send(c: u32, now: f64, binary: bool) -> f64 {
    let Some(d) = client(c) else { return -1.0 };
    match d.connection_mut().send(at(now), user_payload(binary)) {
        Ok(id) => id.0 as f64,
        Err(e) => {
            answer(|w| send_error(w, &e));
            -1.0
        }
    }
}

/// `sendWait`'s check before each try: whether the queue has room for `len` bytes.
#[no_mangle]
pub extern "C" fn tw_has_room(c: u32, len: usize) -> bool {
    client(c).is_some_and(|d| d.connection().has_room_for(len))
}

/// `sendConfirmed`: the input as text or binary, `waiter` JavaScript's number for the
/// promise. Returns the message's id, or -1 with its completion (a refusal) in `tw_out`.
#[no_mangle]
pub extern "C" fn tw_send_confirmed(c: u32, now: f64, binary: bool, waiter: u32) -> f64 {
    let Some(d) = client(c) else { return -1.0 };
    match d.send_confirmed(at(now), user_payload(binary), waiter) {
        Ok(id) => id.0 as f64,
        Err(completion) => {
            answer(|w| completion_record(w, completion));
            -1.0
        }
    }
}

/// Before a message of `size` bytes is copied in (a large one): 0 when `send` (or, with
/// `confirmed`, `sendConfirmed` for `waiter`) should be given it, else the length of its
/// refusal in `tw_out` (`send`'s error, or the waiter's completion), whatever its bytes.
#[no_mangle]
pub extern "C" fn tw_refusal(c: u32, size: f64, confirmed: bool, waiter: u32) -> usize {
    let Some(d) = client(c) else { return 0 };
    let size = size as usize;
    if confirmed {
        match d.refuse_confirmed(size, waiter) {
            Ok(_) => 0,
            Err(completion) => answer(|w| completion_record(w, completion)),
        }
    } else {
        match d.connection().refusal(size) {
            Some(e) => answer(|w| send_error(w, &e)),
            None => 0,
        }
    }
}

/// The limits JavaScript checks before it copies a message in: the largest message the
/// client sends or takes (`maxMessageBytes`), the largest frame it reads and the largest
/// poll response body (`tether_dispatch::transport::frame_limit`, `http_body_limit`), as
/// three numbers in `tw_out`.
#[no_mangle]
pub extern "C" fn tw_limits(c: u32) -> usize {
    answer(|w| {
        if let Some(d) = client(c) {
            let max = d.connection().config().max_message_bytes;
            w.f64(max as f64);
            w.f64(tether_dispatch::transport::frame_limit(max) as f64);
            w.f64(tether_dispatch::transport::http_body_limit(max) as f64);
        }
    })
}

/// `flush`: returns 0 while it waits, or the length of its completion in `tw_out`.
#[no_mangle]
pub extern "C" fn tw_flush(c: u32, waiter: u32) -> usize {
    let Some(d) = client(c) else { return 0 };
    match d.flush(waiter) {
        Some(completion) => answer(|w| completion_record(w, completion)),
        None => 0,
    }
}

/// `close` (`at_once`: `closeNow`) with `code` and the input as the reason.
#[no_mangle]
pub extern "C" fn tw_close(c: u32, now: f64, code: u32, at_once: bool, waiter: u32) {
    if let Some(d) = client(c) {
        let reason = input_text();
        d.close(at(now), code as u16, &reason, at_once, waiter);
    }
}
