//! Arbitrary sequences of inputs — user calls, transport events, garbage frames, poll
//! bodies, tokens, hints and time jumps — on arbitrary valid configurations never panic,
//! never open two transports, only make legal state changes and keep the queue bounded.
//! (cargo-fuzz targets in `fuzz/` do the same coverage-guided.)

use std::collections::BTreeSet;

use proptest::prelude::*;
use tether_core::protocol::{encode_batch, Envelope, SessionSecret};
use tether_core::{
    Action, AuthConfig, BackoffConfig, Config, Connection, Duration, Event, FallbackConfig,
    HeartbeatConfig, Hint, Instant, Jitter, OverflowPolicy, Payload, QueueConfig, RequestId, State,
    Token, TransportFailure, TransportId,
};

#[derive(Clone, Debug)]
enum Input {
    Connect,
    Reconnect,
    Send(Vec<u8>, bool),
    Close(u16),
    CloseNow(u16),
    DriverFailure,
    AppRead(u64, u64),
    Advance(u64),
    Jump(u64),
    Hint(u8),
    Opened(u8),
    Frame(u8, Payload),
    Closed(u8, Option<u16>),
    Failed(u8, u8),
    Poll(u8, Option<Vec<u8>>),
    Token(bool, u64),
}

fn envelope() -> impl Strategy<Value = Envelope> {
    let n = 0u64..12;
    prop_oneof![
        (n.clone(), n.clone(), any::<bool>()).prop_map(|(session, recv_seq, resumed)| {
            Envelope::Welcome {
                session,
                recv_seq,
                resumed,
                secret: SessionSecret::from_bytes([session as u8; 16]),
            }
        }),
        (1u64..12, "[a-z]{0,8}").prop_map(|(seq, s)| Envelope::Msg {
            seq,
            payload: Payload::from(s)
        }),
        n.clone().prop_map(|seq| Envelope::Ack { seq }),
        n.clone().prop_map(|id| Envelope::Ping { id }),
        n.clone().prop_map(|id| Envelope::Pong { id }),
        (0u64..5000).prop_map(|after_ms| Envelope::Retry { after_ms }),
        (n.clone(), n.clone(), n).prop_map(|(recv_seq, session, attempt)| Envelope::Hello {
            client_id: 1,
            recv_seq,
            session,
            attempt,
            secret: None,
        }),
    ]
}

fn frame() -> impl Strategy<Value = Payload> {
    prop_oneof![
        4 => envelope().prop_map(|e| e.encode()),
        1 => any::<Vec<u8>>().prop_map(Payload::from),
        1 => ".{0,12}".prop_map(Payload::from),
        1 => Just(Payload::Text("pong".into())),
    ]
}

fn input() -> impl Strategy<Value = Input> {
    prop_oneof![
        2 => Just(Input::Connect),
        1 => Just(Input::Reconnect),
        4 => (proptest::collection::vec(any::<u8>(), 0..20), any::<bool>()).prop_map(|(b, t)| Input::Send(b, t)),
        1 => prop_oneof![Just(1000u16), Just(4000u16), any::<u16>()].prop_map(Input::Close),
        1 => prop_oneof![Just(1000u16), Just(4000u16)].prop_map(Input::CloseNow),
        1 => Just(Input::DriverFailure),
        1 => (0u64..64, 0u64..4).prop_map(|(bytes, count)| Input::AppRead(bytes, count)),
        6 => (0u64..15_000).prop_map(Input::Advance),
        1 => (0u64..600_000).prop_map(Input::Jump),
        1 => any::<u8>().prop_map(Input::Hint),
        5 => any::<u8>().prop_map(Input::Opened),
        8 => (any::<u8>(), frame()).prop_map(|(i, f)| Input::Frame(i, f)),
        2 => (any::<u8>(), proptest::option::of(prop_oneof![Just(1000u16), Just(1006), Just(1008), Just(1009), Just(4409), Just(4401), any::<u16>()])).prop_map(|(i, c)| Input::Closed(i, c)),
        2 => (any::<u8>(), any::<u8>()).prop_map(|(i, f)| Input::Failed(i, f)),
        5 => (any::<u8>(), proptest::option::of(prop_oneof![
            proptest::collection::vec(envelope(), 0..4).prop_map(|es| encode_batch(&es.iter().map(Envelope::encode).collect::<Vec<_>>())),
            any::<Vec<u8>>(),
        ])).prop_map(|(i, b)| Input::Poll(i, b)),
        2 => (any::<bool>(), 0u64..600).prop_map(|(ok, s)| Input::Token(ok, s)),
    ]
}

fn config() -> impl Strategy<Value = Config> {
    (
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        0u8..3,
        1usize..8,
        1usize..64,
        any::<bool>(),
        any::<u64>(),
    )
        .prop_map(
            |(
                protocol,
                fallback,
                auth,
                heartbeat,
                jitter,
                max_messages,
                max_bytes,
                drop_oldest,
                seed,
            )| {
                let mut b = Config::builder("ws://127.0.0.1:1/ws")
                    .seed(seed)
                    .backoff(BackoffConfig {
                        jitter: [Jitter::Full, Jitter::Decorrelated, Jitter::None]
                            [usize::from(jitter)],
                        max_attempts: if seed % 3 == 0 { Some(4) } else { None },
                        ..BackoffConfig::default()
                    })
                    .heartbeat(heartbeat.then(HeartbeatConfig::default))
                    .queue(QueueConfig {
                        max_messages,
                        max_bytes,
                        max_age: (seed % 2 == 0).then(|| Duration::from_secs(30)),
                        overflow: if drop_oldest {
                            OverflowPolicy::DropOldest
                        } else {
                            OverflowPolicy::RejectNew
                        },
                    })
                    .max_message_bytes(16);
                b = if protocol {
                    b.protocol()
                } else {
                    b.plain_heartbeat("ping", "pong")
                };
                if protocol && fallback {
                    b = b.fallback(FallbackConfig {
                        after_failures: 2,
                        ..FallbackConfig::new("http://127.0.0.1:1/poll")
                    });
                }
                if auth {
                    b = b.auth(AuthConfig::default());
                }
                b.build().expect("valid")
            },
        )
}

struct World {
    conn: Connection,
    now: Instant,
    state: State,
    /// Transports the core opened and has not closed, nor we reported gone.
    live: BTreeSet<TransportId>,
    /// Transports that carried polling requests.
    polling: BTreeSet<TransportId>,
    /// The polling transport waiting, idle, while a WebSocket probe is out: not open,
    /// and taken up again by its next request.
    parked: Option<TransportId>,
    known: Vec<TransportId>,
    requests: Vec<RequestId>,
    /// Token fetches asked for, oldest first.
    fetches: Vec<RequestId>,
    max_messages: usize,
    max_bytes: usize,
}

impl World {
    fn drain(&mut self) -> Result<(), TestCaseError> {
        while let Some(action) = self.conn.poll_action() {
            match action {
                Action::Open { id, .. } => {
                    // A WebSocket probe: the polling transport waits meanwhile.
                    if let Some(&other) = self.live.iter().next() {
                        if self.polling.contains(&other) && self.parked.is_none() {
                            self.live.remove(&other);
                            self.parked = Some(other);
                        }
                    }
                    self.live.insert(id);
                    self.known.push(id);
                }
                Action::FetchToken { request } => self.fetches.push(request),
                Action::HttpRequest { id, request, .. } => {
                    self.polling.insert(id);
                    if self.parked == Some(id) {
                        self.parked = None;
                        self.live.insert(id);
                    } else if !self.known.contains(&id) {
                        self.live.insert(id);
                        self.known.push(id);
                    }
                    self.requests.push(request);
                }
                Action::Close { id, .. } => {
                    if self.parked == Some(id) {
                        self.parked = None;
                    } else {
                        self.live.remove(&id);
                    }
                }
                _ => {}
            }
            prop_assert!(self.live.len() <= 1, "two transports: {:?}", self.live);
        }
        while let Some(event) = self.conn.poll_event() {
            if let Event::StateChanged { from, to } = event {
                prop_assert_eq!(from, self.state);
                prop_assert!(from.can_become(to), "{} -> {}", from, to);
                self.state = to;
            }
        }
        let m = self.conn.metrics(self.now);
        prop_assert!(m.queue_depth <= self.max_messages);
        prop_assert!(m.queue_bytes <= self.max_bytes);
        prop_assert_eq!(m.state, self.state);
        Ok(())
    }

    fn pick(&self, i: u8) -> TransportId {
        // Mostly the newest transport, sometimes an old or unknown one.
        match (self.known.last(), i % 4) {
            (Some(id), 0..=2) => *id,
            (Some(_), _) => self.known[usize::from(i) % self.known.len()],
            (None, _) => TransportId(u64::from(i)),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn any_sequence_keeps_the_invariants(config in config(), inputs in proptest::collection::vec(input(), 1..120)) {
        let now = Instant::now();
        let max_messages = config.queue.max_messages;
        let max_bytes = config.queue.max_bytes;
        let mut w = World {
            conn: Connection::new(config, now, tether_core::Entropy::fixed(1)).unwrap(),
            now,
            state: State::Disconnected,
            live: BTreeSet::new(),
            polling: BTreeSet::new(),
            parked: None,
            known: Vec::new(),
            requests: Vec::new(),
            fetches: Vec::new(),
            max_messages,
            max_bytes,
        };
        // Sizes a waiting send may want room for (`poll_room`'s promise is checked for each).
        let sizes = [0, 1, 8, 64, 1000, max_bytes / 2, max_bytes];
        for input in inputs {
            let now = w.now;
            let room: Vec<bool> = sizes.iter().map(|&n| w.conn.has_room_for(n)).collect();
            match input {
                Input::Connect => w.conn.connect(now),
                Input::Reconnect => w.conn.reconnect(now),
                Input::Send(bytes, text) => {
                    let payload = if text {
                        Payload::from(String::from_utf8_lossy(&bytes).into_owned())
                    } else {
                        Payload::from(bytes)
                    };
                    let _ = w.conn.send(now, payload);
                }
                Input::Close(code) => w.conn.close(now, code, "test"),
                Input::CloseNow(code) => w.conn.close_now(now, code, "test"),
                Input::DriverFailure => w.conn.handle_driver_failure(now, "test"),
                Input::AppRead(bytes, count) => w.conn.handle_app_read(now, bytes, count),
                Input::Advance(ms) => {
                    let end = now + Duration::from_millis(ms);
                    let mut steps = 0;
                    while let Some(at) = w.conn.poll_timeout() {
                        if at > end {
                            break;
                        }
                        w.now = w.now.max(at);
                        w.conn.handle_timeout(w.now);
                        w.drain()?;
                        steps += 1;
                        prop_assert!(steps < 10_000, "livelock");
                    }
                    w.now = end;
                }
                Input::Jump(ms) => {
                    w.now = now + Duration::from_millis(ms);
                    w.conn.handle_timeout(w.now);
                }
                Input::Hint(h) => {
                    let hint = [Hint::Online, Hint::Offline, Hint::Visible, Hint::Hidden, Hint::Resumed][usize::from(h % 5)];
                    w.conn.handle_hint(now, hint);
                }
                Input::Opened(i) => {
                    let id = w.pick(i);
                    w.conn.handle_opened(now, id);
                }
                Input::Frame(i, frame) => {
                    let id = w.pick(i);
                    w.conn.handle_frame(now, id, frame);
                }
                Input::Closed(i, code) => {
                    let id = w.pick(i);
                    w.live.remove(&id);
                    w.conn.handle_closed(now, id, code, String::new());
                }
                Input::Failed(i, f) => {
                    let id = w.pick(i);
                    w.live.remove(&id);
                    let failure = match f % 7 {
                        0 => TransportFailure::Refused,
                        6 => TransportFailure::MessageTooLarge { size: usize::from(f) * 1000 },
                        1 => TransportFailure::Timeout,
                        2 => TransportFailure::Blocked,
                        3 => TransportFailure::Tls("x".into()),
                        4 => TransportFailure::Http { status: [401, 403, 404, 409, 429, 503][usize::from(f) % 6], retry_after: (f % 2 == 0).then(|| Duration::from_millis(u64::from(f) * 10)) },
                        _ => TransportFailure::Network("x".into()),
                    };
                    w.conn.handle_failed(now, id, failure);
                }
                Input::Poll(i, body) => {
                    let Some(request) = (!w.requests.is_empty()).then(|| w.requests[usize::from(i) % w.requests.len()]) else { continue };
                    let result = body.ok_or(TransportFailure::Http { status: 503, retry_after: None });
                    if result.is_err() {
                        // A failed request ends the polling session it belonged to.
                        if let Some(id) = w.known.last() { w.live.remove(id); }
                    }
                    w.conn.handle_http_response(now, request, result);
                }
                Input::Token(ok, secs) => {
                    let result = if ok {
                        Ok(Token { value: "t".into(), expires_at: Some(now + Duration::from_secs(secs)) })
                    } else {
                        Err("no".into())
                    };
                    // The newest fetch, or a stale one when `secs` is odd: ignored.
                    let pick = if secs % 2 == 1 { w.fetches.first() } else { w.fetches.last() };
                    let request = pick.copied().unwrap_or(RequestId(0));
                    w.conn.handle_token(now, request, result);
                }
            }
            w.drain()?;
            // A driver's waiting sends look again when `poll_room` says so: it must say
            // yes whenever room appeared for any size.
            let polled = w.conn.poll_room();
            for (&n, &before) in sizes.iter().zip(&room) {
                prop_assert!(
                    polled || before || !w.conn.has_room_for(n),
                    "room for {} bytes appeared and poll_room said no", n
                );
            }
        }
    }
}
