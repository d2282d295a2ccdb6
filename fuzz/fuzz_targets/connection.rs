//! Any sequence of inputs to a connection: no panic (debug assertions on: illegal state
//! changes and a second transport panic), and the queue stays within its limits.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tether_core::protocol::{Envelope, SessionSecret};
use tether_core::{
    Action, AuthConfig, Config, Connection, Duration, FallbackConfig, Hint, Instant, Payload,
    RequestId, Token, TransportFailure, TransportId,
};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, mut data)) = data.split_first() else { return };
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
    let config = b.seed(u64::from(mode)).build().unwrap();
    let limits = config.queue.clone();
    let mut now = Instant::now();
    let mut conn = Connection::new(config, now, tether_core::Entropy::fixed(1)).unwrap();
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
                now += Duration::from_millis(u64::from(arg) * 100);
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
                let e = match arg % 5 {
                    0 => Envelope::Welcome { session: 1, recv_seq: u64::from(arg / 5 % 4), resumed: arg & 1 == 1, secret: SessionSecret::from_bytes([arg; 16]) },
                    1 => Envelope::Msg { seq: u64::from(arg / 5 % 8) + 1, payload: Payload::Text("m".into()) },
                    2 => Envelope::Ack { seq: u64::from(arg / 5 % 8) },
                    3 => Envelope::Pong { id: u64::from(arg / 5 % 4) },
                    _ => Envelope::Retry { after_ms: u64::from(arg) * 10 },
                };
                conn.handle_frame(now, id, e.encode());
            }
            8 => conn.handle_closed(now, id, (arg != 0).then(|| 1000 + u16::from(arg) * 13), String::new()),
            9 => conn.handle_failed(now, id, match arg % 5 {
                0 => TransportFailure::Refused,
                3 => TransportFailure::MessageTooLarge { size: usize::from(arg) * 1000 },
                1 => TransportFailure::Blocked,
                2 => TransportFailure::Http { status: 400 + u16::from(arg % 110), retry_after: None },
                _ => TransportFailure::Timeout,
            }),
            10 => {
                if let Some(r) = requests.get(usize::from(arg) % requests.len().max(1)) {
                    let n = usize::from(arg % 32).min(data.len());
                    let body = data[..n].to_vec();
                    data = &data[n..];
                    conn.handle_poll_response(now, *r, if arg & 1 == 0 { Ok(body) } else { Err(TransportFailure::Refused) });
                }
            }
            11 => conn.handle_hint(now, [Hint::Online, Hint::Offline, Hint::Visible, Hint::Hidden, Hint::Resumed][usize::from(arg % 5)]),
            _ => conn.handle_token(now, fetches.get(usize::from(arg >> 1) % fetches.len().max(1)).copied().unwrap_or(RequestId(0)), if arg & 1 == 0 {
                Ok(Token { value: "t".into(), expires_at: Some(now + Duration::from_secs(u64::from(arg))) })
            } else {
                Err("no".into())
            }),
        }
        while let Some(action) = conn.poll_action() {
            match action {
                Action::Open { id, .. } => ids.push(id),
                Action::FetchToken { request } => fetches.push(request),
                Action::Poll { id, request, .. } => {
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
