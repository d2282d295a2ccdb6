//! Ten thousand messages each way through 32 forced disconnects, against the
//! reference server behind a FaultProxy: nothing lost, nothing twice, nothing out of
//! order. Alone in its test binary, so its load does not skew the timing tests.

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tether_core::{AuthConfig, Event, MessageId, Payload, SendError, State};
use tether_native::{Client, Events};
use tether_server::Hub;
use tether_testkit::{FaultProxy, Mode};
use tokio::sync::{watch, Notify};

use support::config;
use support::reference::{self, Tokens};

/// Messages each way.
const MESSAGES: u64 = 10_000;
/// Forced disconnects, spread evenly over the traffic.
const FAULTS: u64 = 32;
/// Server messages pushed ahead of what the client has received.
const PUSH_WINDOW: u64 = 500;
/// The whole run, on a slow machine.
const BUDGET: Duration = Duration::from_secs(120);
const USER: &str = "endurance";

/// What the client has seen so far, kept by the task reading its events.
#[derive(Clone, Debug, Default)]
struct Progress {
    /// Echoes `c1..=echoes` arrived, in order.
    echoes: u64,
    /// Server messages `s1..=pushes` arrived, in order.
    pushes: u64,
    /// The echo of the final `end`.
    ended: bool,
    /// Messages confirmed (`Delivered`), each once.
    delivered: u64,
    disconnects: u64,
    failed_attempts: u64,
    connected: bool,
    /// Anything out of order, twice, or lost (a session reset).
    violations: Vec<String>,
}

/// Reads every event of the client, checks order and uniqueness, and publishes the
/// counts; wakes `delivered` on each acknowledgement.
async fn read_events(
    mut events: Events,
    progress: watch::Sender<Progress>,
    delivered: Arc<Notify>,
) -> u64 {
    let mut confirmed: HashMap<MessageId, u32> = HashMap::new();
    while let Some(event) = events.recv().await {
        progress.send_modify(|p| match &event {
            Event::Message(Payload::Text(text)) => {
                let (counter, n) = match (text.strip_prefix('c'), text.strip_prefix('s')) {
                    (Some(n), _) => (&mut p.echoes, n.parse::<u64>().ok()),
                    (_, Some(n)) => (&mut p.pushes, n.parse::<u64>().ok()),
                    _ if text == "end" => {
                        p.ended = true;
                        return;
                    }
                    _ => (&mut p.echoes, None),
                };
                match n {
                    Some(n) if n == *counter + 1 => *counter = n,
                    _ => p.violations.push(format!("{text:?} after {}", *counter)),
                }
            }
            Event::Message(other) => p.violations.push(format!("unexpected {other:?}")),
            Event::Delivered { id } => {
                let count = confirmed.entry(*id).or_default();
                *count += 1;
                if *count == 1 {
                    p.delivered += 1;
                } else {
                    p.violations.push(format!("{id:?} delivered {count} times"));
                }
                delivered.notify_one();
            }
            Event::Dropped { id, reason } => {
                p.violations.push(format!("{id:?} dropped: {reason:?}"));
            }
            Event::SessionReset { resent } => {
                p.violations
                    .push(format!("session reset ({resent} resent)"));
            }
            // Not connected from here on, though the state changes only with the next
            // event: a fault must never be aimed at a connection that is already gone.
            Event::Disconnected { .. } => {
                p.disconnects += 1;
                p.connected = false;
            }
            Event::Error(tether_core::TetherError::AttemptFailed(_)) => p.failed_attempts += 1,
            Event::Error(e) => p.violations.push(format!("error: {e}")),
            Event::Stopped(reason) => p.violations.push(format!("stopped: {reason}")),
            Event::StateChanged { to, .. } => p.connected = *to == State::Connected,
            _ => {}
        });
    }
    events.missed()
}

/// Sends `c1..=MESSAGES` as fast as the queue takes them; on a full queue, waits for
/// an acknowledgement and tries again. Answers how often the queue was full.
/// How far each side may run once `faults` faults are done: a little past the next
/// fault's due point, and never to the end before the last fault, however fast the
/// machine is (the faults must land in the traffic, not after it).
fn allowance(faults: u64) -> u64 {
    if faults >= FAULTS {
        MESSAGES
    } else {
        (faults + 1) * 3 * MESSAGES / (4 * FAULTS) + MESSAGES / (8 * FAULTS)
    }
}

async fn send_all(client: Client, delivered: Arc<Notify>, mut gate: watch::Receiver<u64>) -> u64 {
    let mut full = 0;
    for n in 1..=MESSAGES {
        gate.wait_for(|f| n <= allowance(*f))
            .await
            .expect("the fault loop is alive");
        loop {
            match client.send(format!("c{n}")) {
                Ok(_) => break,
                Err(SendError::QueueFull { .. }) => {
                    full += 1;
                    // Bounded: a lost wakeup costs a retry, not the test.
                    let _ = tokio::time::timeout(Duration::from_millis(200), delivered.notified())
                        .await;
                }
                Err(e) => panic!("c{n} refused: {e}"),
            }
        }
    }
    full
}

/// Pushes `s1..=MESSAGES` to the user from the server side, at most `PUSH_WINDOW` ahead
/// of what the client has received.
async fn push_all(
    hub: Arc<Hub>,
    mut progress: watch::Receiver<Progress>,
    mut gate: watch::Receiver<u64>,
) {
    for n in 1..=MESSAGES {
        gate.wait_for(|f| n <= allowance(*f))
            .await
            .expect("the fault loop is alive");
        progress
            .wait_for(|p| n <= p.pushes + PUSH_WINDOW)
            .await
            .expect("the event reader is alive");
        assert_eq!(
            hub.send_to_user_wait(USER, format!("s{n}")).await,
            1,
            "one session"
        );
    }
}

/// Waits (within the budget) until the progress satisfies `pred`.
async fn until(
    watch: &mut watch::Receiver<Progress>,
    what: &str,
    pred: impl FnMut(&Progress) -> bool,
) -> Progress {
    let outcome = tokio::time::timeout(BUDGET, watch.wait_for(pred))
        .await
        .map(|r| r.map(|p| p.clone()));
    match outcome {
        Ok(Ok(p)) => p,
        Ok(Err(_)) => panic!("the event reader ended while waiting for {what}"),
        Err(_) => panic!("timed out waiting for {what}: {:?}", *watch.borrow()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_messages_each_way_survive_thirty_two_forced_disconnects() {
    let started = std::time::Instant::now();
    let hub = Arc::new(Hub::new());
    let mut tap = hub.tap();
    // The server's default limits: echoes wait for room in the resume buffer (the
    // client's sends wait meanwhile) and so does the pusher (`send_to_user_wait`), so a
    // resume never needs a message the server let go.
    let server_config = reference::server_config();
    let mut server = reference::start(&server_config, &hub).await;
    let addr = server.addr();
    let proxy = FaultProxy::start(addr).unwrap();
    let client_config = config(proxy.addr())
        .protocol()
        .auth(AuthConfig::default())
        .connect_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let client = Client::builder(client_config)
        .token_provider(Tokens::new(USER, Duration::from_secs(3600)).provider())
        // Every event of the run fits: the counts below see all of them.
        .event_buffer(1 << 16)
        .spawn()
        .unwrap();

    let (progress_tx, progress) = watch::channel(Progress::default());
    let delivered = Arc::new(Notify::new());
    let reader = tokio::spawn(read_events(client.events(), progress_tx, delivered.clone()));
    let mut watch = progress.clone();
    until(&mut watch, "the first connection", |p| p.connected).await;
    let (gate, faults_done) = watch::channel(0u64);
    let sender = tokio::spawn(send_all(client.clone(), delivered, faults_done.clone()));
    let pusher = tokio::spawn(push_all(hub.clone(), progress.clone(), faults_done));

    // Fault k once the traffic is k/FAULTS of the way through its first three quarters
    // (bursts after a reconnect must not outrun the faults), and only on a connected
    // client, so that each one is a disconnect of its own.
    let mut last_fault = Progress::default();
    for k in 1..=FAULTS {
        let due = 3 * (2 * MESSAGES) * k / (4 * FAULTS);
        let before = until(&mut watch, "traffic between faults", |p| {
            p.connected && p.echoes + p.pushes >= due
        })
        .await;
        let disconnected = |p: &Progress| p.disconnects > before.disconnects;
        last_fault = before.clone();
        match k % 8 {
            // The server dies, and comes back on the same port with the same hub.
            3 => {
                server.kill().await;
                until(&mut watch, "the disconnect after a kill", disconnected).await;
                server = reference::restart(&server_config, addr, &hub).await;
            }
            // A burst of resets: the socket and the next attempts.
            6 => {
                proxy.set_mode(Mode::Reset).await.unwrap();
                until(&mut watch, "a reset attempt", |p| {
                    disconnected(p) && p.failed_attempts > before.failed_attempts
                })
                .await;
                proxy.set_mode(Mode::Pass).await.unwrap();
            }
            // A reset of the socket.
            _ => proxy.reset_all(),
        }
        until(&mut watch, "the disconnect", disconnected).await;
        gate.send_replace(k);
    }

    let full = tokio::time::timeout(BUDGET, sender)
        .await
        .expect("the sender finished")
        .unwrap();
    tokio::time::timeout(BUDGET, pusher)
        .await
        .expect("the pusher finished")
        .unwrap();
    until(&mut watch, "every message", |p| {
        (p.echoes, p.pushes, p.delivered) == (MESSAGES, MESSAGES, MESSAGES)
            || !p.violations.is_empty()
    })
    .await;
    // The sentinel: in order behind everything, so any duplicate would be in by now.
    tokio::time::timeout(Duration::from_secs(10), client.send_confirmed("end"))
        .await
        .expect("the sentinel's acknowledgement")
        .unwrap();
    until(&mut watch, "the sentinel's echo and confirmation", |p| {
        p.ended && p.delivered == MESSAGES + 1
    })
    .await;

    let seen = progress.borrow().clone();
    assert!(seen.violations.is_empty(), "{:?}", seen.violations);
    assert_eq!(
        (seen.echoes, seen.pushes, seen.delivered),
        (MESSAGES, MESSAGES, MESSAGES + 1)
    );
    assert!(
        seen.disconnects >= 20,
        "only {} disconnects",
        seen.disconnects
    );
    assert!(
        last_fault.echoes + last_fault.pushes < 2 * MESSAGES,
        "the last fault came after the traffic"
    );
    assert!(full > 0, "the sender never met a full queue");
    // The server got every client message once, in order, then the sentinel.
    let mut expected = (1..=MESSAGES).map(|n| Payload::from(format!("c{n}")));
    let mut got = 0;
    while let Ok(d) = tap.try_recv() {
        match expected.next() {
            Some(want) => assert_eq!(d.payload, want, "delivery {}", got + 1),
            None => assert_eq!(d.payload, Payload::Text("end".into())),
        }
        got += 1;
    }
    assert_eq!(got, MESSAGES + 1);

    client.close(1000, "done").await;
    drop(client);
    let missed = tokio::time::timeout(Duration::from_secs(10), reader)
        .await
        .expect("the event stream ends with the client")
        .unwrap();
    assert_eq!(missed, 0, "the event reader fell behind");
    eprintln!(
        "{MESSAGES} each way, {} disconnects, queue full {full} times, {:.1} s",
        seen.disconnects,
        started.elapsed().as_secs_f64()
    );
    proxy.shutdown().await;
    server.shutdown().await;
}
