//! Servers that attack the native client. Each test starts a malicious server on
//! 127.0.0.1 whose first connections run a script (an absurd number, a retry hint of
//! centuries, a Welcome that lies, a flood, a frame that never ends, an HTTP answer that
//! never ends); later connections reach a well-behaved protocol server. Each asserts the
//! typed error the client reports, and that it survives: its task answers, it reconnects,
//! every message queued before or during the attack reaches the good server exactly once
//! (or is reported `Dropped`), and `close()` returns.
//!
//! Covered elsewhere: garbage frames, a second Welcome, an ack of the unsent, a gap and
//! oversized frames (`bad_input.rs`, on `support::rogue`); `Retry-After: 2^64 − 1` with
//! the default cap (`bad_input.rs`).

mod support;

use std::collections::{HashSet, VecDeque};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tether_core::protocol::DecodeError;
use tether_core::{
    ConfigBuilder, Event, FallbackConfig, HeartbeatConfig, MessageId, ProtocolViolation, State,
    TerminalReason, TetherError, TransportFailure,
};
use tether_native::Client;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use support::reference::Recorder;
use support::{within, ProtocolServer, Seen};

/// What one hostile connection does with its TCP stream.
type Script = Box<dyn FnOnce(TcpStream) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

fn script<F, Fut>(f: F) -> Script
where
    F: FnOnce(TcpStream) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    Box::new(move |stream| Box::pin(f(stream)))
}

/// A server on 127.0.0.1 whose `n`-th connection runs `scripts[n]`; once they are used
/// up, connections are passed on to a well-behaved [`ProtocolServer`].
struct Hostile {
    addr: SocketAddr,
    good: ProtocolServer,
    accepted: Arc<AtomicUsize>,
    tasks: JoinSet<()>,
}

impl Hostile {
    async fn start(scripts: Vec<Script>) -> Hostile {
        let good = ProtocolServer::start(Some(Duration::ZERO)).await;
        let target = good.addr;
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        let mut tasks = JoinSet::new();
        tasks.spawn(async move {
            let mut scripts = VecDeque::from(scripts);
            let mut served = JoinSet::new();
            while let Ok((mut stream, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                match scripts.pop_front() {
                    Some(script) => {
                        served.spawn(script(stream));
                    }
                    None => {
                        served.spawn(async move {
                            let Ok(mut upstream) = TcpStream::connect(target).await else {
                                return;
                            };
                            let _ = tokio::io::copy_bidirectional(&mut stream, &mut upstream).await;
                        });
                    }
                }
            }
        });
        Hostile {
            addr,
            good,
            accepted,
            tasks,
        }
    }

    /// TCP connections accepted so far, hostile or not.
    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    async fn stop(mut self) {
        self.tasks.shutdown().await;
        self.good.stop().await;
    }
}

/// The secret of every hostile Welcome.
const SECRET: &str = "0123456789abcdef0123456789abcdef";

fn welcome(session: u64, recv_seq: u64, resumed: bool) -> Message {
    Message::text(format!(
        "W {session} {recv_seq} {} {SECRET}",
        u8::from(resumed)
    ))
}

/// Upgrades and reads the Hello.
async fn greet(stream: TcpStream) -> Option<WebSocketStream<TcpStream>> {
    let mut ws = tokio_tungstenite::accept_async(stream).await.ok()?;
    match ws.next().await {
        Some(Ok(Message::Text(hello))) if hello.starts_with("H ") => Some(ws),
        _ => None,
    }
}

/// Reads (and ignores) everything until the client goes.
async fn drain(ws: &mut WebSocketStream<TcpStream>) {
    while let Some(Ok(_)) = ws.next().await {}
}

/// Upgrades, sends `frames`, then reads until the client goes.
fn frames_then_hold(frames: Vec<Message>) -> Script {
    script(move |stream| async move {
        let Some(mut ws) = greet(stream).await else {
            return;
        };
        for frame in frames {
            if ws.send(frame).await.is_err() {
                return;
            }
        }
        drain(&mut ws).await;
    })
}

/// Upgrades, sends `frames`, then closes with 1001.
fn frames_then_close(frames: Vec<Message>) -> Script {
    script(move |stream| async move {
        let Some(mut ws) = greet(stream).await else {
            return;
        };
        for frame in frames {
            if ws.send(frame).await.is_err() {
                return;
            }
        }
        let _ = ws.close(None).await;
        drain(&mut ws).await;
    })
}

/// Upgrades, welcomes, then writes `bytes` as they are on the TCP stream (frames the
/// WebSocket library would refuse to send).
fn raw_after_welcome(bytes: Vec<u8>) -> Script {
    script(move |stream| async move {
        let Some(mut ws) = greet(stream).await else {
            return;
        };
        if ws.send(welcome(7, 0, false)).await.is_err() {
            return;
        }
        let tcp = ws.get_mut();
        let _ = tcp.write_all(&bytes).await;
        let _ = tcp.read(&mut [0u8; 1024]).await;
    })
}

/// A protocol client of `addr` with fast retries and a roomy event buffer, its events
/// recorded, and `before` queued before it connects.
fn client_of(
    addr: SocketAddr,
    tweak: impl FnOnce(ConfigBuilder) -> ConfigBuilder,
) -> (Client, Recorder, Vec<MessageId>) {
    let config = tweak(support::config(addr).protocol()).build().unwrap();
    let client = Client::builder(config)
        .event_buffer(1 << 14)
        .spawn()
        .unwrap();
    let events = Recorder::new(client.events());
    let before = client.send("before").unwrap();
    (client, events, vec![before])
}

/// After the attack: the task answers, the client reaches the good server and every
/// message sent (`ids`, with `before` first), and `after` too, arrives there exactly once
/// and is confirmed exactly once; `close()` returns and nothing was dropped.
async fn survives(client: Client, mut events: Recorder, mut server: Hostile, ids: Vec<MessageId>) {
    let _ = client.metrics();
    let after = within("an ack of after", client.send_confirmed("after"))
        .await
        .expect("after was confirmed");
    let mut at_server = Vec::new();
    while at_server.last().map(String::as_str) != Some("after") {
        if let Seen::Text(text) = server.good.seen().await {
            at_server.push(text);
        }
    }
    let unique: HashSet<_> = at_server.iter().collect();
    assert_eq!(unique.len(), at_server.len(), "duplicates: {at_server:?}");
    assert!(at_server.contains(&"before".to_owned()), "{at_server:?}");
    within("close", client.close(1000, "done")).await;
    assert_eq!(client.state(), State::Closed);
    drop(client);
    events.until_the_end().await;
    let mut confirmed = ids;
    confirmed.push(after);
    events.assert_delivered_once(&confirmed);
    assert!(events.dropped.is_empty(), "{:?}", events.dropped);
    let stops = events.logged(|e| matches!(e, Event::Stopped(_)));
    assert!(
        matches!(
            stops[..],
            [Event::Stopped(TerminalReason::UserClosed {
                code: 1000,
                ..
            })]
        ),
        "{:?}",
        events.log
    );
    server.stop().await;
}

/// The client is alive but cannot reach a good server soon: its task answers, `close()`
/// returns, and each of `ids` is reported exactly once, delivered or dropped.
async fn alive_and_accounted(client: Client, mut events: Recorder, ids: &[MessageId]) {
    assert_eq!(client.metrics().queue_depth, ids.len());
    within("close", client.close(1000, "done")).await;
    assert_eq!(client.state(), State::Closed);
    drop(client);
    events.until_the_end().await;
    for id in ids {
        let delivered = events.delivered.get(id).copied().unwrap_or(0) as usize;
        let dropped = events.dropped.iter().filter(|(d, _)| d == id).count();
        assert_eq!(
            delivered + dropped,
            1,
            "{id:?}: {events:?}",
            events = events.log
        );
    }
}

/// The first `Error` event, and the `Disconnected` or `ReconnectScheduled` that follows.
async fn error(events: &mut Recorder) -> TetherError {
    match events
        .until("an error", |e| matches!(e, Event::Error(_)))
        .await
    {
        Event::Error(e) => e,
        _ => unreachable!(),
    }
}

async fn scheduled(events: &mut Recorder) -> (Duration, bool) {
    match events
        .until("a scheduled reconnect", |e| {
            matches!(e, Event::ReconnectScheduled { .. })
        })
        .await
    {
        Event::ReconnectScheduled { delay, hinted, .. } => (delay, hinted),
        _ => unreachable!(),
    }
}

#[tokio::test]
async fn a_retry_envelope_of_u64_max_is_cut_to_max_retry_hint() {
    let hint = Message::text(format!("R {}", u64::MAX));
    // With the default cap, 60 s: the client waits, and lives.
    let server = Hostile::start(vec![frames_then_close(vec![
        welcome(7, 0, false),
        hint.clone(),
    ])])
    .await;
    let (client, mut events, ids) = client_of(server.addr, |b| b);
    assert_eq!(
        scheduled(&mut events).await,
        (Duration::from_secs(60), true)
    );
    alive_and_accounted(client, events, &ids).await;
    server.stop().await;

    // With a cap of 200 ms the client is back within it, and nothing is lost.
    let server = Hostile::start(vec![frames_then_close(vec![welcome(7, 0, false), hint])]).await;
    let (client, mut events, ids) = client_of(server.addr, |b| {
        b.max_retry_hint(Duration::from_millis(200))
    });
    assert_eq!(
        scheduled(&mut events).await,
        (Duration::from_millis(200), true)
    );
    // The first connection's Connected came before the hint; this is the second's.
    events.until_connected().await;
    assert_eq!(server.accepted(), 2);
    survives(client, events, server, ids).await;
}

/// An HTTP server answering the upgrade with 503 and `retry_after`.
fn busy(retry_after: &'static str) -> Script {
    script(move |mut stream| async move {
        let mut head = Vec::new();
        let mut chunk = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut chunk).await {
                Ok(n) if n > 0 => head.extend_from_slice(&chunk[..n]),
                _ => return,
            }
        }
        let answer = format!(
            "HTTP/1.1 503 Service Unavailable\r\nRetry-After: {retry_after}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        let _ = stream.write_all(answer.as_bytes()).await;
        let _ = stream.read(&mut chunk).await;
    })
}

#[tokio::test]
async fn a_retry_after_far_in_the_future_is_cut_to_max_retry_hint() {
    // The latest date the format can spell, and delay-seconds of 2^64 − 1.
    for header in ["Fri, 31 Dec 9999 23:59:59 GMT", "18446744073709551615"] {
        let server = Hostile::start(vec![busy(header)]).await;
        let (client, mut events, ids) = client_of(server.addr, |b| b);
        let failure = error(&mut events).await;
        let TetherError::AttemptFailed(TransportFailure::Http {
            status: 503,
            retry_after: Some(after),
        }) = failure
        else {
            panic!("{header}: {failure:?}")
        };
        assert!(after > Duration::from_secs(365 * 24 * 3600), "{after:?}");
        assert_eq!(
            scheduled(&mut events).await,
            (Duration::from_secs(60), true),
            "{header}"
        );
        alive_and_accounted(client, events, &ids).await;
        server.stop().await;

        let server = Hostile::start(vec![busy(header)]).await;
        let (client, mut events, ids) = client_of(server.addr, |b| {
            b.max_retry_hint(Duration::from_millis(200))
        });
        assert_eq!(
            scheduled(&mut events).await,
            (Duration::from_millis(200), true),
            "{header}"
        );
        events.until_connected().await;
        survives(client, events, server, ids).await;
    }
}

/// The connect timeout covers the whole way to the Welcome: a server that accepts TCP
/// and never answers the upgrade, and one that upgrades and never welcomes, both fail
/// the attempt with `AttemptFailed(Timeout)`; the client retries and gets through.
#[tokio::test]
async fn silence_before_the_welcome_is_a_connect_timeout_and_a_retry() {
    let mute_tcp = || {
        script(|mut stream| async move {
            let mut buf = [0u8; 1024];
            while let Ok(n) = stream.read(&mut buf).await {
                if n == 0 {
                    return;
                }
            }
        })
    };
    let mute_ws = || frames_then_hold(Vec::new());
    for (what, scripts) in [
        ("no upgrade", vec![mute_tcp(), mute_tcp()]),
        ("no Welcome", vec![mute_ws(), mute_ws()]),
    ] {
        let server = Hostile::start(scripts).await;
        let started = Instant::now();
        let (client, mut events, ids) = client_of(server.addr, |b| {
            b.connect_timeout(Duration::from_millis(300))
        });
        for _ in 0..2 {
            assert_eq!(
                error(&mut events).await,
                TetherError::AttemptFailed(TransportFailure::Timeout),
                "{what}"
            );
            let _ = scheduled(&mut events).await;
        }
        events.until_connected().await;
        assert!(started.elapsed() >= Duration::from_millis(600), "{what}");
        assert_eq!(server.accepted(), 3, "{what}");
        survives(client, events, server, ids).await;
    }
}

/// A Welcome whose secret is not 32 hex digits, or missing, is a frame that does not
/// decode: a protocol error, the socket is replaced.
#[tokio::test]
async fn a_welcome_with_a_bogus_or_absent_secret_is_a_protocol_error() {
    let cases = [
        ("W 7 0 0 not-a-secret", DecodeError::BadSecret),
        ("W 7 0 0 0123456789abcdef", DecodeError::BadSecret),
        ("W 7 0 0", DecodeError::MissingField("secret")),
    ];
    for (frame, expected) in cases {
        let server = Hostile::start(vec![frames_then_hold(vec![Message::text(frame)])]).await;
        let (client, mut events, ids) = client_of(server.addr, |b| b);
        assert_eq!(
            error(&mut events).await,
            TetherError::Protocol(expected),
            "{frame}"
        );
        events.until_connected().await;
        assert_eq!(server.accepted(), 2);
        // The secret of the lying server was never taken: the good server welcomes a
        // client with none and starts afresh, so there is no session to reset.
        assert!(events
            .logged(|e| matches!(e, Event::SessionReset { .. }))
            .is_empty());
        survives(client, events, server, ids).await;
    }
}

/// A Welcome that claims more of the client's messages than it sent, or names session
/// 0, is not a continuation of the client's session: the client treats it as a new one
/// (`SessionReset`) and sends everything unacknowledged again, so nothing is lost.
#[tokio::test]
async fn a_welcome_that_lies_about_the_session_loses_nothing() {
    for (lie, what) in [
        (welcome(7, u64::MAX, true), "recv_seq above what was sent"),
        (welcome(7, 1000, true), "recv_seq above what was sent"),
        (welcome(0, 1, true), "session 0"),
    ] {
        // First connection: a session (7) in which `before` goes out unacknowledged.
        let first = script(|stream| async move {
            let Some(mut ws) = greet(stream).await else {
                return;
            };
            let _ = ws.send(welcome(7, 0, false)).await;
            while let Some(Ok(m)) = ws.next().await {
                if m.to_text().is_ok_and(|t| t.starts_with("M 1 ")) {
                    break;
                }
            }
            let _ = ws.close(None).await;
            drain(&mut ws).await;
        });
        let server = Hostile::start(vec![first, frames_then_close(vec![lie])]).await;
        let (client, mut events, ids) = client_of(server.addr, |b| b);
        let reset = events
            .until("a session reset", |e| {
                matches!(e, Event::SessionReset { .. })
            })
            .await;
        assert_eq!(reset, Event::SessionReset { resent: 1 }, "{what}");
        events.until_connected().await;
        survives(client, events, server, ids).await;
    }
}

/// Numbers at the edge of their type, where the client expects small ones: each is a
/// protocol violation, the socket is replaced with the session kept.
#[tokio::test]
async fn an_ack_or_message_numbered_u64_max_is_a_protocol_violation() {
    for (frame, expected) in [
        (format!("A {}", u64::MAX), ProtocolViolation::AckOfUnsent),
        (format!("M {} x", u64::MAX), ProtocolViolation::SequenceGap),
    ] {
        let server = Hostile::start(vec![frames_then_hold(vec![
            welcome(7, 0, false),
            Message::text(frame.clone()),
        ])])
        .await;
        let (client, mut events, ids) = client_of(server.addr, |b| b);
        assert_eq!(
            error(&mut events).await,
            TetherError::ProtocolViolation(expected),
            "{frame}"
        );
        let lost = events
            .until("the disconnect", |e| {
                matches!(e, Event::Disconnected { .. })
            })
            .await;
        let Event::Disconnected { cause, .. } = lost else {
            unreachable!()
        };
        assert_eq!(cause.code, Some(4400), "{frame}");
        survives(client, events, server, ids).await;
    }
}

/// Thousands of WebSocket pings and pongs, Tether pings and unsolicited Tether pongs: the
/// client answers every Tether ping, stays on the socket, and its messages go through.
#[tokio::test]
async fn a_flood_of_pings_and_pongs_is_answered_and_survived() {
    const FLOOD: u64 = 3000;
    let (answers_tx, mut answers) = mpsc::unbounded_channel();
    let flood = script(move |stream| async move {
        let Some(mut ws) = greet(stream).await else {
            return;
        };
        let _ = ws.feed(welcome(7, 0, false)).await;
        for i in 0..FLOOD {
            let _ = ws
                .feed(Message::Ping(i.to_be_bytes().to_vec().into()))
                .await;
            let _ = ws.feed(Message::Pong(vec![1; 100].into())).await;
            let _ = ws.feed(Message::text(format!("P {i}"))).await;
            let _ = ws.feed(Message::text(format!("O {}", u64::MAX - i))).await;
        }
        let _ = ws.feed(Message::text(format!("P {}", u64::MAX))).await;
        if ws.flush().await.is_err() {
            return;
        }
        let mut answered = 0u64;
        while let Some(Ok(m)) = ws.next().await {
            let Ok(text) = m.to_text() else { continue };
            if text == format!("O {}", u64::MAX) {
                break;
            }
            if text.starts_with("O ") {
                answered += 1;
            }
        }
        let _ = answers_tx.send(answered);
        let _ = ws.close(None).await;
        drain(&mut ws).await;
    });
    let server = Hostile::start(vec![flood]).await;
    let (client, mut events, ids) = client_of(server.addr, |b| b);
    let answered = within("the flood's answers", answers.recv()).await;
    assert_eq!(answered, Some(FLOOD));
    // Replaced only because the server closed it (a close frame without a code), not
    // for anything the flood did.
    let lost = events
        .until("the disconnect", |e| {
            matches!(e, Event::Disconnected { .. })
        })
        .await;
    let Event::Disconnected { cause, .. } = lost else {
        unreachable!()
    };
    assert_eq!(cause.code, None, "{cause}");
    assert!(events.logged(|e| matches!(e, Event::Error(_))).is_empty());
    survives(client, events, server, ids).await;
}

/// A close frame the RFC forbids (a code no endpoint may send, a reason past the
/// 125-byte control-frame limit): the socket ends, the client reconnects.
#[tokio::test]
async fn an_invalid_close_frame_ends_the_socket_and_the_client_reconnects() {
    let close = |code: u16, reason: &[u8]| {
        let mut frame = vec![0x88];
        let len = reason.len() + 2;
        if len < 126 {
            frame.push(len as u8);
        } else {
            frame.push(126);
            frame.extend_from_slice(&(len as u16).to_be_bytes());
        }
        frame.extend_from_slice(&code.to_be_bytes());
        frame.extend_from_slice(reason);
        frame
    };
    // A code out of the RFC's ranges is read as 1002 (protocol error); a frame that
    // breaks the framing fails the socket with a network error.
    for (what, bytes, code, reason) in [
        (
            "code 999",
            close(999, b"bad"),
            Some(1002),
            "Protocol violation",
        ),
        (
            "code 1005 on the wire",
            close(1005, b""),
            Some(1002),
            "Protocol violation",
        ),
        (
            "code 5000",
            close(5000, b""),
            Some(1002),
            "Protocol violation",
        ),
        (
            "200-byte reason",
            close(1000, &[b'r'; 200]),
            None,
            "Control frame too big",
        ),
        (
            "reason not UTF-8",
            close(1000, &[0xff, 0xfe]),
            None,
            "UTF-8",
        ),
    ] {
        let server = Hostile::start(vec![raw_after_welcome(bytes)]).await;
        let (client, mut events, ids) = client_of(server.addr, |b| b);
        let lost = events
            .until("the disconnect", |e| {
                matches!(e, Event::Disconnected { .. })
            })
            .await;
        let Event::Disconnected { cause, .. } = lost else {
            unreachable!()
        };
        assert_eq!(cause.code, code, "{what}: {cause:?}");
        assert!(cause.reason.contains(reason), "{what}: {cause:?}");
        events.until_connected().await;
        survives(client, events, server, ids).await;
    }
}

/// A server that trickles a frame one byte per 100 ms never completes a frame: no frame
/// is a sign of life, so the heartbeat declares the socket dead (`max_missed` pings
/// unanswered) long before the frame would end, and the client reconnects.
#[tokio::test]
async fn a_frame_trickled_byte_by_byte_does_not_keep_a_dead_socket_alive() {
    const PAYLOAD: usize = 100;
    let trickle = script(|stream| async move {
        let Some(mut ws) = greet(stream).await else {
            return;
        };
        if ws.send(welcome(7, 0, false)).await.is_err() {
            return;
        }
        let mut frame = vec![0x81, PAYLOAD as u8];
        frame.extend_from_slice(b"M 1 ");
        frame.resize(2 + PAYLOAD, b'x');
        let tcp = ws.get_mut();
        // Bounded: at most PAYLOAD + 2 bytes, 10 s.
        for byte in frame {
            if tcp.write_all(&[byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let server = Hostile::start(vec![trickle]).await;
    let heartbeat = HeartbeatConfig {
        interval: Duration::from_millis(200),
        timeout: Duration::from_millis(200),
        max_missed: 2,
    };
    let (client, mut events, ids) = client_of(server.addr, |b| b.heartbeat(Some(heartbeat)));
    events.until_connected().await;
    let connected = Instant::now();
    let lost = events
        .until("the disconnect", |e| {
            matches!(e, Event::Disconnected { .. })
        })
        .await;
    let Event::Disconnected { cause, .. } = lost else {
        unreachable!()
    };
    assert_eq!(cause.reason, "no answer to 2 pings (half-open)");
    // Two intervals and a timeout, give or take scheduling; the frame needed 10 s.
    let took = connected.elapsed();
    assert!(took < Duration::from_secs(3), "{took:?}");
    events.until_connected().await;
    survives(client, events, server, ids).await;
}

/// Reads one HTTP request (head and `Content-Length` body).
async fn read_request(stream: &mut TcpStream) -> Option<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_lowercase();
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    let mut have = buf.len() - head_end;
    while have < length {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        have += n;
    }
    Some(())
}

/// A protocol client of `server`, whose upgrade fails there (the HTTP server answers it
/// as it answers a poll), so that it falls back to polling after one failure; polls
/// time out after `timeout`, attempts after twice that (so that a poll's own timeout
/// is what a hanging poll runs into). Returns once the fallback is active.
async fn polling_client(
    server: SocketAddr,
    timeout: Duration,
) -> (Client, Recorder, Vec<MessageId>) {
    let mut fallback = FallbackConfig::new(format!("http://{server}/poll"));
    fallback.after_failures = 1;
    fallback.request_timeout = timeout;
    // The server upgrades no WebSocket: after one failure the client tries polling
    // (a fallback it reports only once polling answers, which these servers never do;
    // between polls it tries the WebSocket again).
    let (client, mut events, ids) = client_of(server, |b| {
        b.fallback(fallback)
            .max_message_bytes(1000)
            .connect_timeout(timeout * 2)
    });
    events
        .until("the WebSocket's failure", |e| {
            matches!(e, Event::Error(TetherError::AttemptFailed(_)))
        })
        .await;
    (client, events, ids)
}

/// Every poll answered by `answer`.
async fn poll_server(
    answer: impl Fn(TcpStream) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync + 'static,
) -> (SocketAddr, JoinSet<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut tasks = JoinSet::new();
    tasks.spawn(async move {
        let mut served = JoinSet::new();
        while let Ok((stream, _)) = listener.accept().await {
            served.spawn(answer(stream));
        }
    });
    (addr, tasks)
}

/// A poll answered 200 with a record that claims 2^32 − 1 bytes: the body does not
/// decode (`PollBody(Truncated)`), the client tries again.
#[tokio::test]
async fn a_poll_batch_record_of_u32_max_bytes_is_a_typed_error() {
    let (addr, mut tasks) = poll_server(|mut stream| {
        Box::pin(async move {
            if read_request(&mut stream).await.is_none() {
                return;
            }
            let body = [0u8, 0xff, 0xff, 0xff, 0xff, b'W', b' '];
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes()).await;
            let _ = stream.write_all(&body).await;
            let _ = stream.read(&mut [0u8; 64]).await;
        })
    })
    .await;
    let (client, mut events, ids) = polling_client(addr, Duration::from_secs(5)).await;
    let poll_error = events
        .until("the poll body error", |e| {
            matches!(e, Event::Error(TetherError::PollBody(_)))
        })
        .await;
    assert_eq!(
        poll_error,
        Event::Error(TetherError::PollBody(DecodeError::Truncated))
    );
    let _ = scheduled(&mut events).await;
    alive_and_accounted(client, events, &ids).await;
    tasks.shutdown().await;
}

/// A poll answered 200 with a body that never ends: the transport stops reading at its
/// bound (four times `max_message_bytes`, at least 1 MiB) and fails the request with
/// `MessageTooLarge`.
#[tokio::test]
async fn a_poll_body_that_never_ends_is_cut_at_the_limit() {
    // The most one answer got written before the client stopped reading it.
    let written = Arc::new(AtomicUsize::new(0));
    let counter = written.clone();
    let (addr, mut tasks) = poll_server(move |mut stream| {
        let counter = counter.clone();
        Box::pin(async move {
            if read_request(&mut stream).await.is_none() {
                return;
            }
            let head = "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n";
            if stream.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            // Bounded: 256 MiB at most, well past any limit.
            let chunk = vec![0u8; 64 * 1024];
            let mut mine = 0;
            for _ in 0..4096 {
                if stream.write_all(&chunk).await.is_err() {
                    return;
                }
                mine += chunk.len();
                counter.fetch_max(mine, Ordering::SeqCst);
            }
        })
    })
    .await;
    let (client, mut events, ids) = polling_client(addr, Duration::from_secs(5)).await;
    let failure = events
        .until("the poll failure", |e| {
            matches!(e, Event::Error(TetherError::AttemptFailed(_)))
        })
        .await;
    let Event::Error(TetherError::AttemptFailed(TransportFailure::MessageTooLarge { size })) =
        failure
    else {
        panic!("{failure:?} {:?}", events.log)
    };
    assert!(size > 1 << 20, "{size}");
    assert!(size <= (1 << 20) + 64 * 1024, "{size}");
    let _ = scheduled(&mut events).await;
    alive_and_accounted(client, events, &ids).await;
    tasks.shutdown().await;
    // Each answer was read only up to the limit: the server could write no more than
    // what the socket buffers hold past it (the client retries, so answers are many).
    let most = written.load(Ordering::SeqCst);
    assert!(most < 32 << 20, "one answer had {most} bytes written");
}

/// A poll answered 200 with a `Content-Length` of 1 TiB (and no body): refused from the
/// header, at once, not after waiting for a body that never comes.
#[tokio::test]
async fn a_poll_body_announced_over_the_limit_is_refused_from_its_header() {
    let (addr, mut tasks) = poll_server(|mut stream| {
        Box::pin(async move {
            if read_request(&mut stream).await.is_none() {
                return;
            }
            let head = "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: 1099511627776\r\n\r\n";
            let _ = stream.write_all(head.as_bytes()).await;
            let _ = stream.read(&mut [0u8; 64]).await;
        })
    })
    .await;
    // Polls time out after 5 s: the failure must come long before.
    let (client, mut events, ids) = polling_client(addr, Duration::from_secs(5)).await;
    let started = Instant::now();
    let failure = events
        .until("the poll failure", |e| {
            matches!(e, Event::Error(TetherError::AttemptFailed(_)))
        })
        .await;
    assert_eq!(
        failure,
        Event::Error(TetherError::AttemptFailed(
            TransportFailure::MessageTooLarge { size: 1 << 40 }
        ))
    );
    assert!(started.elapsed() < Duration::from_secs(4));
    alive_and_accounted(client, events, &ids).await;
    tasks.shutdown().await;
}

/// A poll that is never answered fails after `request_timeout` (before the attempt's
/// connect timeout) with `AttemptFailed(Timeout)`, and the client polls again.
#[tokio::test]
async fn a_poll_that_hangs_times_out() {
    let requests = Arc::new(AtomicUsize::new(0));
    let counter = requests.clone();
    let (addr, mut tasks) = poll_server(move |mut stream| {
        let counter = counter.clone();
        Box::pin(async move {
            if read_request(&mut stream).await.is_none() {
                return;
            }
            counter.fetch_add(1, Ordering::SeqCst);
            let _ = stream.read(&mut [0u8; 64]).await;
        })
    })
    .await;
    let (client, mut events, ids) = polling_client(addr, Duration::from_millis(300)).await;
    let started = Instant::now();
    for _ in 0..2 {
        let failure = events
            .until("the poll timeout", |e| {
                matches!(
                    e,
                    Event::Error(TetherError::AttemptFailed(TransportFailure::Timeout))
                )
            })
            .await;
        let _ = failure;
    }
    assert!(started.elapsed() >= Duration::from_millis(600));
    assert!(requests.load(Ordering::SeqCst) >= 2);
    alive_and_accounted(client, events, &ids).await;
    tasks.shutdown().await;
}
