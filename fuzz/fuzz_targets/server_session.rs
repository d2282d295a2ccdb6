//! The server's side of a session (`ServerSession`) fed what a hostile client can send:
//! Hellos with any secret (none, the session's, another), any `recv_seq`, session and
//! attempt up to `u64::MAX`; any frame, decoded or not; time steps up to `Duration::MAX`;
//! resume limits from tiny to huge. No panic, and what it reports stays consistent: the
//! resume buffer within its count limit, a refused Hello changes nothing, a sent message
//! carries the session's latest number.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tether_core::protocol::{Envelope, HelloRefused, ResumeLimits, ServerSession, SessionSecret};
use tether_core::time::later;
use tether_core::{Duration, Instant, Payload};

fn number(b: u8, small: u64) -> u64 {
    match b % 4 {
        0 => u64::MAX,
        1 => u64::MAX - u64::from(b >> 2),
        _ => small,
    }
}

fn duration(b: u8) -> Duration {
    match b % 5 {
        0 => Duration::MAX,
        1 => Duration::from_secs(u64::MAX / 3),
        2 => Duration::ZERO,
        _ => Duration::from_millis(u64::from(b) * 37),
    }
}

fuzz_target!(|data: &[u8]| {
    let [a, b, c, data @ ..] = data else { return };
    let limits = ResumeLimits {
        max_messages: match a % 3 {
            0 => usize::MAX,
            1 => 0,
            _ => usize::from(*a),
        },
        max_age: duration(*b),
        ..ResumeLimits::default()
    };
    let secret = SessionSecret::from_bytes([*c; 16]);
    let mut now = Instant::now();
    let mut s = ServerSession::new(number(*c, 1), secret.clone(), limits);
    let mut data = data;
    while let [op, arg, rest @ ..] = data {
        data = rest;
        let (op, arg) = (*op, *arg);
        match op % 7 {
            0 | 1 => {
                let secret = match arg % 3 {
                    0 => None,
                    1 => Some(secret.clone()),
                    _ => Some(SessionSecret::from_bytes([arg; 16])),
                };
                let (x, y, z) = match data {
                    [x, y, z, rest @ ..] => {
                        data = rest;
                        (*x, *y, *z)
                    }
                    _ => (0, 0, 0),
                };
                let before = (s.session(), s.recv_seq(), s.last_sent_seq(), s.buffered(), s.latest_attempt());
                let r = s.hello(now, secret, number(x, u64::from(x >> 2)), number(y, u64::from(y >> 2)), number(z, u64::from(z >> 2)));
                match r {
                    Ok(frames) => {
                        assert!(matches!(frames.first(), Some(Envelope::Welcome { .. })));
                    }
                    Err(HelloRefused::NotOwner | HelloRefused::Stale(_)) => {
                        let after = (s.session(), s.recv_seq(), s.last_sent_seq(), s.buffered(), s.latest_attempt());
                        assert_eq!(before, after, "a refused Hello changed the session");
                    }
                    Err(_) => {}
                }
            }
            2 => {
                let n = usize::from(arg % 24).min(data.len());
                let frame = if arg & 0x80 == 0 {
                    Payload::Text(String::from_utf8_lossy(&data[..n]).into_owned())
                } else {
                    Payload::Binary(data[..n].to_vec())
                };
                data = &data[n..];
                if let Ok(envelope) = Envelope::decode(frame) {
                    let _ = s.receive(now, envelope);
                }
            }
            3 => {
                let big = data.first().copied().unwrap_or(0);
                data = data.get(1..).unwrap_or(&[]);
                let e = match arg % 6 {
                    0 => Envelope::Msg { seq: number(big, u64::from(big >> 2)).max(1), payload: Payload::Text("m".into()) },
                    1 => Envelope::Ack { seq: number(big, u64::from(big >> 2)) },
                    2 => Envelope::Ping { id: number(big, 1) },
                    3 => Envelope::Pong { id: number(big, 1) },
                    4 => Envelope::Retry { after_ms: number(big, 1) },
                    _ => Envelope::Welcome { session: number(big, 1), recv_seq: number(big, 0), resumed: true, secret: secret.clone() },
                };
                let _ = s.receive(now, e);
            }
            4 => {
                let sent = s.send(now, Payload::Text(format!("s{arg}")));
                let Envelope::Msg { seq, .. } = sent else { panic!("send made {sent:?}") };
                assert_eq!(seq, s.last_sent_seq());
            }
            5 => {
                now = later(now, duration(arg));
                s.expire(now);
                let _ = s.next_expiry();
            }
            _ => {
                let _ = s.take_ack();
            }
        }
        assert!(s.buffered() <= limits.max_messages);
    }
});
