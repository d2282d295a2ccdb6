//! Any sequence of inputs to a connection: no panic (debug assertions on: illegal state
//! changes and a second transport panic), and the queue stays within its limits. The
//! config comes from the input too, durations up to `Duration::MAX` and counts up to
//! their type's maximum, and so do retry hints (`R`, `Retry-After`), token expiries, time
//! steps and sequence numbers: every deadline the core computes must saturate.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tether_core::config::{HeartbeatConfig, OverflowPolicy};
use tether_core::protocol::{Envelope, SessionSecret};
use tether_core::{
    Action, AuthConfig, Config, Connection, Duration, FallbackConfig, Hint, Instant, Payload,
    RequestId, Token, TransportFailure, TransportId,
};

/// A duration from one byte: mostly small, often at the edges of the type.
fn duration(b: u8) -> Duration {
    match b % 8 {
        0 => Duration::MAX,
        1 => Duration::MAX - Duration::from_nanos(1),
        2 => Duration::from_secs(u64::MAX / 2),
        3 => Duration::from_millis(u64::MAX),
        4 => Duration::from_secs(1 << 40),
        5 => Duration::from_nanos(u64::from(b)),
        _ => Duration::from_millis(u64::from(b) * 10),
    }
}

/// A count from one byte: small, or the type's maximum.
fn count(b: u8) -> u64 {
    match b % 4 {
        0 => u64::MAX,
        1 => u64::MAX - u64::from(b),
        _ => u64::from(b),
    }
}

/// `config` with the fields the 16 bytes of `knobs` pick set to huge (or tiny) values;
/// an invalid result is left to `Connection::new` to refuse.
fn knobs(config: &mut Config, knobs: &[u8]) {
    let k = |i: usize| knobs.get(i).copied().unwrap_or(0);
    let on = u16::from_le_bytes([k(0), k(1)]);
    let set = |bit: u16| on & (1 << bit) != 0;
    if set(0) {
        config.connect_timeout = duration(k(2));
    }
    if set(1) {
        config.max_retry_hint = duration(k(3));
    }
    if set(2) {
        config.backoff.max_delay = duration(k(4));
        config.backoff.initial_delay = config.backoff.max_delay.min(duration(k(5)));
        config.backoff.factor = 1.0 + f64::from(k(6)) / 2.56;
        config.backoff.max_attempts = (k(6) & 1 == 1).then(|| count(k(7)) as u32);
    }
    if set(3) {
        let interval = duration(k(8));
        config.heartbeat = Some(HeartbeatConfig {
            interval,
            timeout: interval.min(duration(k(9))),
            max_missed: count(k(10)) as u32,
        });
    }
    if set(4) {
        config.queue.max_messages = count(k(11)) as usize;
        config.queue.max_bytes = count(k(12)) as usize;
        config.queue.overflow = if k(12) & 1 == 1 {
            OverflowPolicy::DropOldest
        } else {
            OverflowPolicy::RejectNew
        };
    }
    if set(5) {
        config.queue.max_age = Some(duration(k(13)));
    }
    if set(6) {
        config.ack_every = count(k(14)) as u32;
        config.ack_delay = duration(k(15));
    }
    if set(7) {
        config.close_linger = duration(k(2) ^ 0x55);
    }
    if set(8) {
        config.liveness_timeout = duration(k(3) ^ 0x55);
        config.resume_gap = duration(k(4) ^ 0x55);
    }
    if set(9) {
        if let Some(f) = &mut config.fallback {
            f.max_interval = duration(k(5) ^ 0x55);
            f.min_interval = f.max_interval.min(duration(k(6) ^ 0x55));
            f.probe_interval = duration(k(7) ^ 0x55);
            f.probe_timeout = duration(k(8) ^ 0x55);
            f.request_timeout = duration(k(9) ^ 0x55);
            f.after_failures = count(k(10) ^ 0x55) as u32;
        }
    }
    if set(10) {
        if let Some(a) = &mut config.auth {
            a.refresh_lead = duration(k(11) ^ 0x55);
            a.fetch_timeout = duration(k(12) ^ 0x55);
        }
    }
    if set(11) {
        config.quality.window = count(k(13) ^ 0x55) as usize;
        config.quality.hysteresis = count(k(14) ^ 0x55) as u32;
    }
    if set(12) {
        config.max_message_bytes = count(k(15) ^ 0x55) as usize;
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, data)) = data.split_first() else { return };
    let (settings, mut data) = data.split_at(data.len().min(16));
    let mut b = Config::builder("ws://127.0.0.1:1/ws").max_message_bytes(32);
    if mode & 1 == 1 {
        b = b.protocol();
        if mode & 2 == 2 {
            b = b.fallback(FallbackConfig::new("http://127.0.0.1:1/poll"));
        }
    } else {
        b = b.plain_heartbeat("ping", "pong");
    }
    if mode & 4 == 4 {
        b = b.auth(AuthConfig::default());
    }
    let mut config = b.seed(u64::from(mode)).build().unwrap();
    if mode & 8 == 8 {
        knobs(&mut config, settings);
    }
    let limits = config.queue.clone();
    let mut now = Instant::now();
    let Ok(mut conn) = Connection::new(config, now, tether_core::Entropy::fixed(1)) else {
        return;
    };
    let (mut ids, mut requests): (Vec<TransportId>, Vec<RequestId>) = (vec![], vec![]);
    let mut fetches: Vec<RequestId> = vec![];
    while let Some((&op, rest)) = data.split_first() {
        let (&arg, rest) = rest.split_first().unwrap_or((&0, &[]));
        data = rest;
        let id = ids.last().copied().unwrap_or(TransportId(u64::from(arg)));
        match op % 13 {
            0 => conn.connect(now),
            1 => conn.reconnect(now),
            2 => drop(conn.send(now, vec![arg; usize::from(arg % 40)])),
            3 => conn.close(now, 1000 + u16::from(arg), "fuzz"),
            4 => {
                // Mostly small steps; now and then to the next deadline, however far.
                now = match (arg, conn.poll_timeout()) {
                    (255, Some(at)) => at.max(now),
                    (254, _) => tether_core::time::later(now, duration(arg)),
                    _ => tether_core::time::later(now, Duration::from_millis(u64::from(arg) * 100)),
                };
                conn.handle_timeout(now);
            }
            5 => conn.handle_opened(now, id),
            6 => {
                let n = usize::from(arg % 16).min(data.len());
                let text = String::from_utf8_lossy(&data[..n]).into_owned();
                data = &data[n..];
                conn.handle_frame(now, id, Payload::Text(text));
            }
            7 => {
                let (&big, rest) = data.split_first().unwrap_or((&0, &[]));
                data = rest;
                // `big` odd: the number at the edge of its type instead of a small one.
                let n = |small: u64| if big & 1 == 1 { count(big >> 1) } else { small };
                let e = match arg % 6 {
                    0 => Envelope::Welcome { session: n(1) , recv_seq: n(u64::from(arg / 5 % 4)), resumed: arg & 1 == 1, secret: SessionSecret::from_bytes([arg; 16]) },
                    1 => Envelope::Msg { seq: n(u64::from(arg / 5 % 8) + 1).max(1), payload: Payload::Text("m".into()) },
                    2 => Envelope::Ack { seq: n(u64::from(arg / 5 % 8)) },
                    3 => Envelope::Pong { id: n(u64::from(arg / 5 % 4)) },
                    4 => Envelope::Ping { id: n(u64::from(arg)) },
                    _ => Envelope::Retry { after_ms: n(u64::from(arg) * 10) },
                };
                conn.handle_frame(now, id, e.encode());
            }
            8 => conn.handle_closed(now, id, (arg != 0).then(|| 1000 + u16::from(arg) * 13), String::new()),
            9 => conn.handle_failed(now, id, match arg % 5 {
                0 => TransportFailure::Refused,
                3 => TransportFailure::MessageTooLarge { size: usize::from(arg) * 1000 },
                1 => TransportFailure::Blocked,
                2 => TransportFailure::Http {
                    status: 400 + u16::from(arg % 110),
                    retry_after: (arg & 2 == 2).then(|| duration(arg >> 2)),
                },
                _ => TransportFailure::Timeout,
            }),
            10 => {
                if let Some(r) = requests.get(usize::from(arg) % requests.len().max(1)) {
                    let n = usize::from(arg % 32).min(data.len());
                    let body = data[..n].to_vec();
                    data = &data[n..];
                    let failure = match arg % 6 {
                        1 => TransportFailure::Refused,
                        3 => TransportFailure::Http { status: 503, retry_after: Some(duration(arg)) },
                        5 => TransportFailure::MessageTooLarge { size: usize::MAX },
                        _ => TransportFailure::Timeout,
                    };
                    conn.handle_http_response(now, *r, if arg % 2 == 0 { Ok(body) } else { Err(failure) });
                }
            }
            11 => conn.handle_hint(now, [Hint::Online, Hint::Offline, Hint::Visible, Hint::Hidden, Hint::Resumed][usize::from(arg % 5)]),
            _ => conn.handle_token(now, fetches.get(usize::from(arg >> 1) % fetches.len().max(1)).copied().unwrap_or(RequestId(0)), if arg & 1 == 0 {
                let expires_at = match arg % 8 {
                    0 => None,
                    1 => Some(tether_core::time::later(now, Duration::MAX)),
                    2 => Some(tether_core::time::later(now, duration(arg))),
                    _ => Some(tether_core::time::later(now, Duration::from_secs(u64::from(arg)))),
                };
                Ok(Token { value: "t".into(), expires_at })
            } else {
                Err("no".into())
            }),
        }
        while let Some(action) = conn.poll_action() {
            match action {
                Action::Open { id, .. } => ids.push(id),
                Action::FetchToken { request } => fetches.push(request),
                Action::HttpRequest { id, request, .. } => {
                    ids.push(id);
                    requests.push(request);
                }
                _ => {}
            }
        }
        while conn.poll_event().is_some() {}
        let m = conn.metrics(now);
        assert!(m.queue_depth <= limits.max_messages && m.queue_bytes <= limits.max_bytes);
    }
});
