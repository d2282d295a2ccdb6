//! The native client in protocol mode against the reference server (crates/tether-server),
//! through tether-testkit's FaultProxy where a fault needs it: a server restart, a
//! half-open network, token expiry, auth rejection, blocked WebSockets, a full queue, a
//! second client of the same user, and a close with messages in flight.
//!
//! Deliveries are counted at the server with `Hub::tap` and at the client from its
//! events. Every count ends with a sentinel message: the protocol keeps order, so once
//! the sentinel is in, every earlier message (and any duplicate of one) is too.

mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tether_core::{
    AttemptKind, AuthConfig, DropReason, Event, FallbackConfig, HeartbeatConfig, Instant,
    OverflowPolicy, QueueConfig, SendError, State, TerminalReason, TetherError, TransportFailure,
};
use tether_native::{Client, DeliveryError};
use tether_server::Hub;
use tether_testkit::{FaultProxy, Mode};
use tokio::sync::oneshot;

use support::reference::{self, tap_until, Recorder, Tally, Tokens};
use support::{config, wait_state, within};

/// Lifetime of tokens in tests that are not about expiry.
const HOUR: Duration = Duration::from_secs(3600);

/// `prefix1`, `prefix2`, … for each number in `range`.
fn texts(prefix: &str, range: std::ops::RangeInclusive<u64>) -> Vec<String> {
    range.map(|i| format!("{prefix}{i}")).collect()
}

fn strs(texts: &[String]) -> impl Iterator<Item = &str> {
    texts.iter().map(String::as_str)
}

/// A protocol-mode client config for `addr`'s `/ws` with fast retries and auth.
fn protocol_config(addr: std::net::SocketAddr) -> tether_core::ConfigBuilder {
    config(addr).protocol().auth(AuthConfig::default())
}

/// A client of `config` with `tokens`, and an event buffer no test here can overflow.
/// A fault proxy to `to` that delays everything by `delay`.
async fn delaying_proxy(to: std::net::SocketAddr, delay: Duration) -> FaultProxy {
    let proxy = FaultProxy::start(to).unwrap();
    within("delay", proxy.set_mode(Mode::Delay(delay)))
        .await
        .unwrap();
    proxy
}

fn spawn(config: tether_core::ConfigBuilder, tokens: &Tokens) -> Client {
    Client::builder(config.build().unwrap())
        .token_provider(tokens.provider())
        .event_buffer(1 << 14)
        .spawn()
        .unwrap()
}

#[tokio::test]
async fn messages_sent_across_a_server_restart_arrive_exactly_once() {
    let hub = Arc::new(Hub::new());
    let mut tap = hub.tap();
    let server_config = reference::server_config();
    let server = reference::start(&server_config, &hub).await;
    let addr = server.addr();
    let client = spawn(protocol_config(addr), &Tokens::new("restart", HOUR));
    let mut events = Recorder::new(client.events());

    let mut ids = Vec::new();
    for text in texts("m", 1..=10) {
        ids.push(within("an ack", client.send_confirmed(text)).await.unwrap());
    }
    // Written just before the server dies: acknowledged or not, they are retained.
    for text in texts("m", 11..=20) {
        ids.push(client.send(text).unwrap());
    }
    server.kill().await;
    events
        .until("the disconnect", |e| {
            matches!(e, Event::Disconnected { .. })
        })
        .await;
    // Queued while nothing listens.
    for text in texts("m", 21..=30) {
        ids.push(client.send(text).unwrap());
    }
    events
        .until("a refused attempt", |e| {
            *e == Event::Error(TetherError::AttemptFailed(TransportFailure::Refused))
        })
        .await;

    let server = reference::restart(&server_config, addr, &hub).await;
    ids.push(client.send("end").unwrap());
    let mut expected = texts("m", 1..=30);
    expected.push("end".into());
    let mut delivered = Tally::default();
    tap_until(&mut tap, &mut delivered, "end").await;
    delivered.assert_exactly_once("at the server", strs(&expected));

    events.until_message("end").await;
    events
        .messages
        .assert_exactly_once("echoes", strs(&expected));
    events
        .until("the last confirmation", |e| {
            *e == Event::Delivered {
                id: *ids.last().unwrap(),
            }
        })
        .await;
    events.assert_delivered_once(&ids);
    assert!(events
        .logged(|e| matches!(e, Event::SessionReset { .. }))
        .is_empty());
    assert_eq!(events.missed(), 0);
    let m = client.metrics();
    assert_eq!((m.reconnects, m.queue_depth), (1, 0));
    within("close", client.close(1000, "done")).await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_half_open_socket_is_declared_dead_within_the_heartbeat_bounds() {
    let heartbeat = HeartbeatConfig {
        interval: Duration::from_millis(400),
        timeout: Duration::from_millis(200),
        max_missed: 3,
    };
    // The stall starts just before a ping (that ping and the next max_missed - 1 go
    // unanswered), or just after one was answered (the next max_missed do). The lower
    // bound allows for a ping written before the stall whose pong it swallowed; the
    // upper one for a busy machine.
    let n = heartbeat.max_missed;
    let lower = heartbeat.interval * (n - 1) + heartbeat.timeout - Duration::from_millis(50);
    let upper = heartbeat.interval * n + heartbeat.timeout + Duration::from_millis(400);

    let hub = Arc::new(Hub::new());
    let mut tap = hub.tap();
    let server = reference::start(&reference::server_config(), &hub).await;
    let proxy = FaultProxy::start(server.addr()).unwrap();
    let config = protocol_config(proxy.addr())
        .heartbeat(Some(heartbeat))
        .connect_timeout(Duration::from_millis(500));
    let client = spawn(config, &Tokens::new("half-open", HOUR));
    let mut events = Recorder::new(client.events());
    within("an ack", client.send_confirmed("before"))
        .await
        .unwrap();

    let mut state = client.state_watch();
    let stalled = Instant::now();
    within("the stall", proxy.set_mode(Mode::Stall))
        .await
        .unwrap();
    tokio::time::timeout(upper * 2, state.wait_for(|s| *s != State::Connected))
        .await
        .expect("the half-open socket was never declared dead")
        .unwrap();
    let took = stalled.elapsed();
    assert!(
        (lower..=upper).contains(&took),
        "declared dead after {took:?}, expected within {lower:?}..={upper:?}"
    );
    let lost = events
        .until("the disconnect", |e| {
            matches!(e, Event::Disconnected { .. })
        })
        .await;
    let Event::Disconnected { cause, .. } = lost else {
        unreachable!()
    };
    assert!(cause.reason.contains("half-open"), "{cause}");

    // Written into the stall, resent after it: once at the server all the same.
    client.send("during").unwrap();
    within("pass", proxy.set_mode(Mode::Pass)).await.unwrap();
    events.until_connected().await;
    within("an ack", client.send_confirmed("end"))
        .await
        .unwrap();
    let mut delivered = Tally::default();
    tap_until(&mut tap, &mut delivered, "end").await;
    delivered.assert_exactly_once("at the server", ["before", "during", "end"]);
    within("close", client.close(1000, "done")).await;
    proxy.shutdown().await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_short_lived_token_is_refreshed_without_a_disconnect() {
    // The refresh lead (60 s) is longer than the lifetime: refreshed at half-life.
    const TTL: Duration = Duration::from_secs(3);
    let hub = Arc::new(Hub::new());
    let mut tap = hub.tap();
    let server = reference::start(&reference::server_config(), &hub).await;
    let tokens = Tokens::new("refresh", TTL);
    let client = spawn(protocol_config(server.addr()), &tokens);
    let mut events = Recorder::new(client.events());
    events.until_connected().await;
    let since = Instant::now();

    // The server closes with 4401 a connection whose token expires: three refreshes take
    // longer than the first token lives, so the connection is alive on refreshed tokens.
    for n in 1..=3 {
        events
            .until(&format!("refresh {n}"), |e| *e == Event::TokenRefreshed)
            .await;
        within(
            "an ack",
            client.send_confirmed(format!("after refresh {n}")),
        )
        .await
        .unwrap();
    }
    assert!(since.elapsed() > TTL, "{:?}", since.elapsed());
    let mut delivered = Tally::default();
    tap_until(&mut tap, &mut delivered, "after refresh 3").await;
    delivered.assert_exactly_once(
        "at the server",
        ["after refresh 1", "after refresh 2", "after refresh 3"],
    );

    // Never left Connected, and nothing closed the socket.
    let trouble = events.logged(|e| {
        matches!(
            e,
            Event::StateChanged { .. }
                | Event::Disconnected { .. }
                | Event::Error(_)
                | Event::Stopped(_)
        )
    });
    assert_eq!(
        trouble,
        [
            &Event::StateChanged {
                from: State::Disconnected,
                to: State::Connecting
            },
            &Event::StateChanged {
                from: State::Connecting,
                to: State::Connected
            }
        ],
        "only the first connect"
    );
    assert_eq!(client.state(), State::Connected);
    assert_eq!(tokens.calls(), 4, "one token to connect, three refreshes");
    let m = client.metrics();
    assert_eq!((m.reconnects, m.last_close_code), (0, None));
    assert_eq!(hub.metrics().total_connections, 1);
    within("close", client.close(1000, "done")).await;
    server.shutdown().await;
}

#[tokio::test]
async fn auth_rejection_stops_after_exactly_one_refreshed_token() {
    let server = reference::start(&reference::server_config(), &Arc::new(Hub::new())).await;
    // The proxy counts connection attempts.
    let proxy = FaultProxy::start(server.addr()).unwrap();
    let tokens = Tokens::new("mallory", HOUR).forged_first(usize::MAX);
    let client = spawn(protocol_config(proxy.addr()), &tokens);
    let mut events = Recorder::new(client.events());

    let stopped = events
        .until("the stop", |e| matches!(e, Event::Stopped(_)))
        .await;
    let Event::Stopped(TerminalReason::AuthRejected(cause)) = stopped else {
        panic!("{stopped:?}")
    };
    assert_eq!(cause.status, Some(401));
    let rejected = events.logged(|e| {
        matches!(
            e,
            Event::Error(TetherError::AttemptFailed(TransportFailure::Http {
                status: 401,
                ..
            }))
        )
    });
    assert_eq!(rejected.len(), 2, "{:?}", events.log);
    assert_eq!(tokens.calls(), 2, "the first token and one refreshed token");
    assert_eq!(proxy.total_accepted(), 2);
    assert_eq!(client.state(), State::Error);

    // And nothing after: no third token, no third attempt.
    let mut state = client.state_watch();
    let quiet = tokio::time::timeout(
        Duration::from_millis(500),
        state.wait_for(|s| *s != State::Error),
    )
    .await;
    assert!(quiet.is_err(), "the client left Error: {quiet:?}");
    assert_eq!((tokens.calls(), proxy.total_accepted()), (2, 2));
    assert_eq!(
        client.send("x"),
        Err(SendError::Stopped(State::Error)),
        "stopped until reconnect()"
    );
    proxy.shutdown().await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_rejected_token_is_refreshed_once_and_the_fresh_one_connects() {
    let server = reference::start(&reference::server_config(), &Arc::new(Hub::new())).await;
    let proxy = FaultProxy::start(server.addr()).unwrap();
    let tokens = Tokens::new("rotated", HOUR).forged_first(1);
    let client = spawn(protocol_config(proxy.addr()), &tokens);
    let mut events = Recorder::new(client.events());
    events.until_connected().await;
    within("an ack", client.send_confirmed("in")).await.unwrap();
    let errors = events.logged(|e| matches!(e, Event::Error(_)));
    assert_eq!(
        errors,
        [&Event::Error(TetherError::AttemptFailed(
            TransportFailure::Http {
                status: 401,
                retry_after: None
            }
        ))]
    );
    assert_eq!((tokens.calls(), proxy.total_accepted()), (2, 2));
    within("close", client.close(1000, "done")).await;
    proxy.shutdown().await;
    server.shutdown().await;
}

/// Sends `c1`, `c2`, … every `every` until told to stop, retrying a full queue; counts
/// what it sent in `sent` and answers the last number when stopped.
fn steady_sender(
    client: Client,
    every: Duration,
    sent: Arc<AtomicU64>,
) -> (oneshot::Sender<()>, tokio::task::JoinHandle<u64>) {
    let (stop, mut stopped) = oneshot::channel();
    let task = tokio::spawn(async move {
        let mut n = 0;
        let mut tick = tokio::time::interval(every);
        loop {
            tokio::select! {
                _ = &mut stopped => return n,
                _ = tick.tick() => {}
            }
            match client.send(format!("c{}", n + 1)) {
                Ok(_) => {
                    n += 1;
                    sent.store(n, Ordering::SeqCst);
                }
                Err(SendError::QueueFull { .. }) => {} // again on the next tick
                Err(e) => panic!("send failed: {e}"),
            }
        }
    });
    (stop, task)
}

#[tokio::test]
async fn blocked_websockets_fall_back_to_polling_and_upgrade_back_without_loss() {
    let hub = Arc::new(Hub::new());
    let mut tap = hub.tap();
    let server = reference::start(&reference::server_config(), &hub).await;
    // WebSockets go through the proxy; polling straight to the server.
    let proxy = FaultProxy::start(server.addr()).unwrap();
    let mut fallback = FallbackConfig::new(format!("http://{}/poll", server.addr()));
    fallback.after_failures = 2;
    fallback.min_interval = Duration::from_millis(20);
    fallback.max_interval = Duration::from_millis(200);
    fallback.probe_interval = Duration::from_millis(300);
    fallback.probe_timeout = Duration::from_millis(500);
    let config = protocol_config(proxy.addr()).fallback(fallback);
    let client = spawn(config, &Tokens::new("polling", HOUR));
    let mut events = Recorder::new(client.events());
    events.until_connected().await;

    let sent = Arc::new(AtomicU64::new(0));
    let (stop, sender) = steady_sender(client.clone(), Duration::from_millis(10), sent.clone());
    // Some traffic on the WebSocket, `c{n}` in flight.
    let soon = |n: u64| format!("c{}", sent.load(Ordering::SeqCst) + n);
    events.until_message(&soon(10)).await;

    // A middlebox that resets every WebSocket.
    within("reset", proxy.set_mode(Mode::Reset)).await.unwrap();
    events
        .until("the fallback", |e| {
            *e == Event::FallbackChanged { active: true }
        })
        .await;
    events.until_connected().await;
    assert!(client.metrics().fallback_active);
    // Messages sent after the switch come back over polling.
    events.until_message(&soon(20)).await;
    assert!(client.metrics().fallback_active);

    within("pass", proxy.set_mode(Mode::Pass)).await.unwrap();
    events
        .until("the upgrade back", |e| {
            *e == Event::FallbackChanged { active: false }
        })
        .await;
    events.until_message(&soon(20)).await;
    assert!(!client.metrics().fallback_active);

    stop.send(()).unwrap();
    let total = within("the sender", sender).await.unwrap();
    client.send("end").unwrap();
    let mut expected = texts("c", 1..=total);
    expected.push("end".into());
    let mut delivered = Tally::default();
    tap_until(&mut tap, &mut delivered, "end").await;
    delivered.assert_exactly_once("at the server", strs(&expected));
    events.until_message("end").await;
    events
        .messages
        .assert_exactly_once("echoes", strs(&expected));
    assert!(events
        .logged(|e| matches!(e, Event::SessionReset { .. }))
        .is_empty());
    assert_eq!(events.missed(), 0);
    within("close", client.close(1000, "done")).await;
    proxy.shutdown().await;
    server.shutdown().await;
}

/// The server's WebSocket path fails for a moment (a proxy resets every WebSocket, as a
/// browser sees a server restart), long enough for the polling trial; it is back by the
/// time the trial's Hello is answered (polling goes through a proxy that delays it). The
/// application sends every 10 ms throughout. The trial's WebSocket probe is welcomed
/// (the steady sender does not keep it from going): the fallback is never reported, the
/// session goes on on the WebSocket, the server ends the polling transport (one
/// connection left), and every message arrives exactly once both ways.
#[tokio::test]
async fn a_polling_trial_whose_probe_is_welcomed_ends_on_the_websocket_without_loss() {
    let hub = Arc::new(Hub::new());
    let mut tap = hub.tap();
    let server = reference::start(&reference::server_config(), &hub).await;
    let ws_proxy = FaultProxy::start(server.addr()).unwrap();
    let poll_proxy = delaying_proxy(server.addr(), Duration::from_millis(300)).await;
    let mut fallback = FallbackConfig::new(format!("http://{}/poll", poll_proxy.addr()));
    fallback.after_failures = 2;
    let config = protocol_config(ws_proxy.addr()).fallback(fallback);
    let client = spawn(config, &Tokens::new("trial", HOUR));
    let mut events = Recorder::new(client.events());
    events.until_connected().await;
    let sent = Arc::new(AtomicU64::new(0));
    let (stop, sender) = steady_sender(client.clone(), Duration::from_millis(10), sent.clone());
    let soon = |n: u64| format!("c{}", sent.load(Ordering::SeqCst) + n);
    events.until_message(&soon(5)).await;

    within("reset", ws_proxy.set_mode(Mode::Reset))
        .await
        .unwrap();
    events
        .until("the polling trial", |e| {
            matches!(
                e,
                Event::AttemptStarted {
                    kind: AttemptKind::Polling,
                    ..
                }
            )
        })
        .await;
    // Back before the trial's Hello is answered; that answer resends what the server
    // sent meanwhile, so an Ack is owed before the probe (and sends could have kept
    // polling busy).
    assert_eq!(hub.send_to_user("trial", "s1"), 1);
    within("pass", ws_proxy.set_mode(Mode::Pass)).await.unwrap();
    events.until_connected().await;
    let probes = events.logged(|e| {
        matches!(
            e,
            Event::AttemptStarted {
                kind: AttemptKind::Probe,
                ..
            }
        )
    });
    assert_eq!(probes.len(), 1, "the trial probed: {:?}", events.log);
    assert!(!client.metrics().fallback_active);
    // The server ended the trial's polling transport: the WebSocket is all that is left.
    let mut changes = hub.changes();
    within("one connection", async {
        while hub.connections() != 1 {
            changes.changed().await.unwrap();
        }
    })
    .await;
    events.until_message(&soon(5)).await;

    stop.send(()).unwrap();
    let total = within("the sender", sender).await.unwrap();
    client.send("end").unwrap();
    let mut expected = texts("c", 1..=total);
    expected.push("end".into());
    let mut delivered = Tally::default();
    tap_until(&mut tap, &mut delivered, "end").await;
    delivered.assert_exactly_once("at the server", strs(&expected));
    events.until_message("end").await;
    expected.push("s1".into());
    events
        .messages
        .assert_exactly_once("echoes and s1", strs(&expected));
    assert!(events
        .logged(|e| matches!(e, Event::FallbackChanged { .. }))
        .is_empty());
    assert!(events
        .logged(|e| matches!(e, Event::SessionReset { .. }))
        .is_empty());
    assert_eq!(events.missed(), 0);
    within("close", client.close(1000, "done")).await;
    ws_proxy.shutdown().await;
    poll_proxy.shutdown().await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_full_queue_refuses_new_messages_and_delivers_the_rest() {
    let hub = Arc::new(Hub::new());
    let mut tap = hub.tap();
    let server = reference::start(&reference::server_config(), &hub).await;
    let proxy = FaultProxy::start(server.addr()).unwrap();
    within("refuse", proxy.set_mode(Mode::Refuse))
        .await
        .unwrap();
    let config = protocol_config(proxy.addr()).queue(QueueConfig {
        max_messages: 5,
        overflow: OverflowPolicy::RejectNew,
        ..QueueConfig::default()
    });
    let client = spawn(config, &Tokens::new("queue", HOUR));
    let mut events = Recorder::new(client.events());
    events
        .until("a refused attempt", |e| {
            *e == Event::Error(TetherError::AttemptFailed(TransportFailure::Refused))
        })
        .await;

    let kept = texts("m", 1..=5);
    let ids: Vec<_> = kept
        .iter()
        .map(|text| client.send(text.as_str()).unwrap())
        .collect();
    let full = SendError::QueueFull {
        messages: 5,
        bytes: 10,
    };
    assert_eq!(client.send("m6"), Err(full.clone()));
    assert_eq!(
        client.send_confirmed("m6").await,
        Err(DeliveryError::Rejected(full))
    );
    assert_eq!(client.metrics().queue_depth, 5);

    within("pass", proxy.set_mode(Mode::Pass)).await.unwrap();
    // Messages written but not yet acknowledged still count against the queue.
    events
        .until("the last confirmation", |e| {
            *e == Event::Delivered { id: ids[4] }
        })
        .await;
    events.assert_delivered_once(&ids);
    within("an ack", client.send_confirmed("end"))
        .await
        .unwrap();
    let mut delivered = Tally::default();
    tap_until(&mut tap, &mut delivered, "end").await;
    delivered.assert_exactly_once("at the server", strs(&kept).chain(["end"]));
    assert!(events.dropped.is_empty(), "{:?}", events.dropped);
    within("close", client.close(1000, "done")).await;
    proxy.shutdown().await;
    server.shutdown().await;
}

#[tokio::test]
async fn drop_oldest_reports_exactly_the_dropped_messages() {
    let hub = Arc::new(Hub::new());
    let mut tap = hub.tap();
    let server = reference::start(&reference::server_config(), &hub).await;
    let proxy = FaultProxy::start(server.addr()).unwrap();
    within("refuse", proxy.set_mode(Mode::Refuse))
        .await
        .unwrap();
    let config = protocol_config(proxy.addr()).queue(QueueConfig {
        max_messages: 5,
        overflow: OverflowPolicy::DropOldest,
        ..QueueConfig::default()
    });
    let client = spawn(config, &Tokens::new("drop-oldest", HOUR));
    let mut events = Recorder::new(client.events());
    events
        .until("a refused attempt", |e| {
            *e == Event::Error(TetherError::AttemptFailed(TransportFailure::Refused))
        })
        .await;

    let ids: Vec<_> = texts("m", 1..=8)
        .into_iter()
        .map(|text| client.send(text).unwrap())
        .collect();
    assert_eq!(client.metrics().queue_depth, 5);
    within("pass", proxy.set_mode(Mode::Pass)).await.unwrap();
    events
        .until("the last confirmation", |e| {
            *e == Event::Delivered { id: ids[7] }
        })
        .await;
    let overflowed: Vec<_> = ids[..3]
        .iter()
        .map(|id| (*id, DropReason::Overflow))
        .collect();
    assert_eq!(events.dropped, overflowed);
    events.assert_delivered_once(&ids[3..]);
    for id in &ids[..3] {
        assert!(!events.delivered.contains_key(id), "{id:?} was dropped");
    }

    within("an ack", client.send_confirmed("end"))
        .await
        .unwrap();
    let mut delivered = Tally::default();
    tap_until(&mut tap, &mut delivered, "end").await;
    delivered.assert_exactly_once("at the server", strs(&texts("m", 4..=8)).chain(["end"]));
    within("close", client.close(1000, "done")).await;
    proxy.shutdown().await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_newer_client_of_the_same_user_replaces_the_older_for_good() {
    let hub = Arc::new(Hub::new());
    let mut tap = hub.tap();
    let server = reference::start(&reference::server_config(), &hub).await;
    // One proxy per client, to count each one's connection attempts.
    let (older_proxy, newer_proxy) = (
        FaultProxy::start(server.addr()).unwrap(),
        FaultProxy::start(server.addr()).unwrap(),
    );
    let tokens = Tokens::new("carol", HOUR);
    // Different seeds, different client ids: two instances of the app.
    let older = spawn(protocol_config(older_proxy.addr()).seed(1), &tokens);
    let mut older_events = Recorder::new(older.events());
    within("an ack", older.send_confirmed("from the older"))
        .await
        .unwrap();

    let newer = spawn(protocol_config(newer_proxy.addr()).seed(2), &tokens);
    let mut newer_events = Recorder::new(newer.events());
    let stopped = older_events
        .until("the older to stop", |e| matches!(e, Event::Stopped(_)))
        .await;
    let Event::Stopped(TerminalReason::Replaced(cause)) = stopped else {
        panic!("{stopped:?}")
    };
    assert_eq!(cause.code, Some(4409), "{cause}");
    assert_eq!(older.state(), State::Error);
    within("an ack", newer.send_confirmed("from the newer"))
        .await
        .unwrap();

    // The older does not fight back: no new attempt, however long we look.
    let mut state = older.state_watch();
    let quiet = tokio::time::timeout(
        Duration::from_secs(1),
        state.wait_for(|s| *s != State::Error),
    )
    .await;
    assert!(quiet.is_err(), "the older client left Error: {quiet:?}");
    assert_eq!(older_proxy.total_accepted(), 1);
    assert_eq!(older.send("again"), Err(SendError::Stopped(State::Error)));
    // The newer kept its connection all along.
    assert_eq!(newer.state(), State::Connected);
    assert_eq!(newer_proxy.total_accepted(), 1);
    newer_events.until_connected().await;
    assert!(newer_events
        .logged(|e| matches!(e, Event::Disconnected { .. }))
        .is_empty());

    let first = within("a delivery", tap.recv()).await.unwrap();
    let second = within("a delivery", tap.recv()).await.unwrap();
    assert_eq!(
        (first.payload, second.payload),
        ("from the older".into(), "from the newer".into())
    );
    assert_eq!(
        (first.user.as_str(), second.user.as_str()),
        ("carol", "carol")
    );
    assert_ne!(first.client_id, second.client_id);
    within("close", newer.close(1000, "done")).await;
    older_proxy.shutdown().await;
    newer_proxy.shutdown().await;
    server.shutdown().await;
}

/// Clients built without `.seed(…)` get their own client ids: two of one user are two
/// instances, and the newer replaces the older (4409). Until 00fdd85 every native client
/// presented the same id (`29b8d0ed396a0ea5`, from the core's constant default seed):
/// two of them took the session from each other on every Hello (close 1000) in an
/// endless reconnect loop, sharing one message numbering and one "random" backoff.
#[tokio::test]
async fn two_clients_built_from_default_configs_are_two_clients() {
    let hub = Arc::new(Hub::new());
    let mut tap = hub.tap();
    let server = reference::start(&reference::server_config(), &hub).await;
    let tokens = Tokens::new("dave", HOUR);
    let a = spawn(protocol_config(server.addr()), &tokens);
    within("an ack", a.send_confirmed("a")).await.unwrap();
    let b = spawn(protocol_config(server.addr()), &tokens);
    within("an ack", b.send_confirmed("b")).await.unwrap();
    let first = within("a delivery", tap.recv()).await.unwrap();
    let second = within("a delivery", tap.recv()).await.unwrap();
    assert_eq!((first.payload, second.payload), ("a".into(), "b".into()));
    assert_ne!(first.client_id, second.client_id, "one client id for two");
    // The newer replaced the older for good (4409), rather than a fight.
    let mut a_events = Recorder::new(a.events());
    a_events
        .until("the older to stop", |e| matches!(e, Event::Stopped(_)))
        .await;
    within("close", b.close(1000, "done")).await;
    server.shutdown().await;
}

#[tokio::test]
async fn close_resolves_after_every_message_sent_before_it_is_delivered() {
    let hub = Arc::new(Hub::new());
    let mut tap = hub.tap();
    let server = reference::start(&reference::server_config(), &hub).await;
    // Acknowledgements take a while: close has to wait for them.
    let proxy = delaying_proxy(server.addr(), Duration::from_millis(50)).await;
    let client = spawn(protocol_config(proxy.addr()), &Tokens::new("closer", HOUR));
    let events = client.events();
    wait_state(&client, State::Connected).await;

    let sent = texts("m", 1..=200);
    let ids: Vec<_> = sent
        .iter()
        .map(|text| client.send(text.as_str()).unwrap())
        .collect();
    within("close", client.close(1000, "bye")).await;

    // Already at the server, every one, before close resolved.
    let mut delivered = Tally::default();
    while let Ok(d) = tap.try_recv() {
        delivered.add(&d.payload);
    }
    delivered.assert_exactly_once("at the server", strs(&sent));
    assert_eq!(client.state(), State::Closed);

    // And each confirmed to the client, none dropped.
    drop(client);
    let mut events = Recorder::new(events);
    events.until_the_end().await;
    events.assert_delivered_once(&ids);
    assert!(events.dropped.is_empty(), "{:?}", events.dropped);
    proxy.shutdown().await;
    server.shutdown().await;
}
