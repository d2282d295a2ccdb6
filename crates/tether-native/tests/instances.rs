//! The native client in protocol mode against two reference server instances sharing
//! their sessions through Redis (`Hub::with_redis`), behind a balancer: the instance the
//! client is on dies mid-traffic, the client reconnects through the balancer to the
//! other, and every message arrives exactly once, both ways.
//!
//! Starts its own `redis-server` on a free loopback port (scripts/test.sh installs it);
//! fails without it.

mod support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tether_core::{Event, State};
use tether_server::Hub;
use tokio::net::{TcpListener, TcpStream};

use support::reference::{self, Tally, Tokens};
use support::within;
use tether_testkit::redis::RedisServer;

const HOUR: Duration = Duration::from_secs(3600);

/// A TCP balancer with one upstream at a time: new connections go to the current one.
struct Balancer {
    addr: SocketAddr,
    upstream: Arc<Mutex<SocketAddr>>,
    task: tokio::task::JoinHandle<()>,
}

impl Balancer {
    async fn start(upstream: SocketAddr) -> Balancer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let upstream = Arc::new(Mutex::new(upstream));
        let current = Arc::clone(&upstream);
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let to = *current.lock().unwrap();
                tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(to).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Balancer {
            addr,
            upstream,
            task,
        }
    }

    fn route_to(&self, upstream: SocketAddr) {
        *self.upstream.lock().unwrap() = upstream;
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_whose_instance_dies_resumes_on_another_and_loses_nothing() {
    const N: usize = 200;
    let redis = RedisServer::start().await;
    let url = redis.url();
    let hub_a = Hub::with_redis(&url, Some("a")).await.expect("redis");
    let hub_b = Hub::with_redis(&url, Some("b")).await.expect("redis");
    let config = reference::server_config();
    let mut a = Some(reference::start(&config, &hub_a).await);
    let b = reference::start(&config, &hub_b).await;
    let balancer = Balancer::start(a.as_ref().expect("started").addr()).await;
    let mut tap_a = hub_a.tap();
    let mut tap_b = hub_b.tap();

    let tokens = Tokens::new("mover", HOUR);
    let client = tokens.protocol_client(balancer.addr).spawn().unwrap();
    let mut events = client.events();
    support::wait_state(&client, State::Connected).await;

    // Traffic both ways: the client's messages (echoed) and the server's own.
    let sender = {
        let client = client.clone();
        tokio::spawn(async move {
            for n in 1..=N {
                client.send_wait(format!("c{n}")).await.expect("accepted");
                tokio::task::yield_now().await;
            }
        })
    };
    let mut from_server = 0usize;
    let mut got = Tally::default();
    let mut seen = 0usize;
    let mut moved = false;
    let read = tokio::time::timeout(Duration::from_secs(30), async {
        // N echoes and N server messages.
        while seen < 2 * N {
            // The application's own messages: half on A, the rest once the client
            // is on B.
            if !moved && from_server < N / 2 {
                from_server += 1;
                hub_a.send_to_user("mover", format!("s{from_server}"));
            } else if moved && from_server < N && hub_b.sessions() > 0 {
                from_server += 1;
                hub_b.send_to_user("mover", format!("s{from_server}"));
            }
            let event = tokio::select! {
                e = events.recv() => e,
                () = tokio::time::sleep(Duration::from_millis(20)) => continue,
            };
            match event {
                Some(Event::Message(p)) => {
                    got.add(&p);
                    seen += 1;
                    if seen == N / 2 && !moved {
                        // Mid-traffic: A dies; the balancer sends new connections to B.
                        // What the application handed to A is in Redis first (the
                        // application's sends return before it is: `Hub::persisted`).
                        hub_a.persisted().await;
                        balancer.route_to(b.addr());
                        // (its hub lives on: a late write of its is refused by Redis).
                        if let Some(a) = a.take() {
                            a.kill().await;
                        }
                        moved = true;
                    }
                }
                Some(Event::SessionReset { .. }) => panic!("the session was reset"),
                Some(_) => {}
                None => panic!("the event stream ended"),
            }
        }
    })
    .await;
    assert!(
        read.is_ok(),
        "timed out with {seen} messages; {:?}",
        client.metrics()
    );
    within("the sender", sender).await.unwrap();
    let want_client: Vec<String> = (1..=N)
        .map(|n| format!("c{n}"))
        .chain((1..=N).map(|n| format!("s{n}")))
        .collect();
    got.assert_exactly_once("at the client", want_client.iter().map(String::as_str));
    // At the servers: every client message delivered once, by A or by B.
    let mut delivered = Tally::default();
    let want: Vec<String> = (1..=N).map(|n| format!("c{n}")).collect();
    within("every client message at the servers", async {
        let mut count = 0;
        while count < N {
            let d = tokio::select! {
                Some(d) = tap_a.recv() => d,
                Some(d) = tap_b.recv() => d,
            };
            delivered.add(&d.payload);
            count += 1;
        }
    })
    .await;
    while let Ok(d) = tap_a.try_recv() {
        delivered.add(&d.payload);
    }
    while let Ok(d) = tap_b.try_recv() {
        delivered.add(&d.payload);
    }
    delivered.assert_exactly_once("at the servers", want.iter().map(String::as_str));
    assert!(client.metrics().reconnects >= 1);
    within("close", client.close(1000, "done")).await;
    b.shutdown().await;
    drop(redis);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_clients_behind_a_round_robin_balancer_lose_nothing_when_an_instance_dies() {
    const CLIENTS: usize = 20;
    const EACH: usize = 20;
    let redis = RedisServer::start().await;
    let url = redis.url();
    let config = reference::server_config();
    let mut hubs = Vec::new();
    let mut servers = Vec::new();
    for name in ["a", "b", "c"] {
        let hub = Hub::with_redis(&url, Some(name)).await.expect("redis");
        servers.push(Some(reference::start(&config, &hub).await));
        hubs.push(hub);
    }
    let addrs: Vec<SocketAddr> = servers.iter().flatten().map(|s| s.addr()).collect();
    let balancer = tether_testkit::Balancer::start(addrs.clone())
        .await
        .unwrap();
    let taps: Vec<_> = hubs.iter().map(|h| h.tap()).collect();

    let (half_tx, mut half_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let (killed_tx, killed_rx) = tokio::sync::watch::channel(false);
    let mut tasks = Vec::new();
    for k in 0..CLIENTS {
        let user: &'static str = Box::leak(format!("user{k}").into_boxed_str());
        let client = Tokens::new(user, HOUR)
            .protocol_client(balancer.addr())
            .spawn()
            .unwrap();
        let half_tx = half_tx.clone();
        let mut killed = killed_rx.clone();
        tasks.push(tokio::spawn(async move {
            let mut events = client.events();
            support::wait_state(&client, State::Connected).await;
            let text = |n: usize| format!("{user}-{n}");
            for n in 1..=EACH / 2 {
                client.send(text(n)).expect("queued");
            }
            half_tx.send(()).unwrap();
            killed.wait_for(|k| *k).await.unwrap();
            for n in EACH / 2 + 1..=EACH {
                client.send(text(n)).expect("queued");
            }
            let mut got = Tally::default();
            let mut seen = 0;
            while seen < EACH {
                match events.recv().await {
                    Some(Event::Message(p)) => {
                        got.add(&p);
                        seen += 1;
                    }
                    Some(Event::SessionReset { .. }) => panic!("{user}: session reset"),
                    Some(_) => {}
                    None => panic!("{user}: event stream ended"),
                }
            }
            let want: Vec<String> = (1..=EACH).map(text).collect();
            got.assert_exactly_once(user, want.iter().map(String::as_str));
            client.close(1000, "done").await;
        }));
    }
    within("every client's first half", async {
        for _ in 0..CLIENTS {
            half_rx.recv().await.unwrap();
        }
    })
    .await;
    // Instance a dies; its clients (round robin: a third) reconnect through the
    // balancer to b or c.
    assert!(hubs[0].connections() > 0, "some clients are on a");
    if let Some(a) = servers[0].take() {
        a.kill().await;
    }
    killed_tx.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(30), async {
        for t in tasks {
            t.await.expect("a client task");
        }
    })
    .await
    .expect("every client done");
    // At the servers, together: every message delivered exactly once.
    let mut delivered = Tally::default();
    let [mut ta, mut tb, mut tc]: [_; 3] = taps.try_into().expect("three taps");
    within("every message at the servers", async {
        for _ in 0..CLIENTS * EACH {
            let d = tokio::select! {
                Some(d) = ta.recv() => d,
                Some(d) = tb.recv() => d,
                Some(d) = tc.recv() => d,
            };
            delivered.add(&d.payload);
        }
    })
    .await;
    for tap in [&mut ta, &mut tb, &mut tc] {
        while let Ok(d) = tap.try_recv() {
            delivered.add(&d.payload);
        }
    }
    let want: Vec<String> = (0..CLIENTS)
        .flat_map(|k| (1..=EACH).map(move |n| format!("user{k}-{n}")))
        .collect();
    delivered.assert_exactly_once("at the servers", want.iter().map(String::as_str));
    balancer.stop().await;
    for s in servers.into_iter().flatten() {
        s.shutdown().await;
    }
    drop(redis);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_instance_hands_its_client_to_another_through_redis() {
    let redis = RedisServer::start().await;
    let url = redis.url();
    let config = reference::server_config();
    let hub_a = Hub::with_redis(&url, Some("a")).await.expect("redis");
    let hub_b = Hub::with_redis(&url, Some("b")).await.expect("redis");
    let first = reference::start(&config, &hub_a).await;
    let second = reference::start(&config, &hub_b).await;
    // Only the first behind the balancer at first, so the client lands there.
    let balancer = tether_testkit::Balancer::start([first.addr()])
        .await
        .unwrap();
    let client = Tokens::new("drained", HOUR)
        .protocol_client(balancer.addr())
        .spawn()
        .unwrap();
    let mut events = reference::Recorder::new(client.events());
    events.until_connected().await;
    balancer.add(second.addr()).unwrap();
    let mut tap_a = hub_a.tap();
    let mut tap_b = hub_b.tap();
    let mut at_servers = Tally::default();
    for n in 1..=10 {
        client.send(format!("m{n}")).unwrap();
    }
    reference::tap_until(&mut tap_a, &mut at_servers, "m10").await;
    events.until_message("m10").await;

    // A drains (1012 with a hint); the client comes back through the balancer to B,
    // which has the session only from Redis.
    let (all_gone, _) = tokio::join!(first.drain(Duration::from_millis(500)), async {
        events
            .until("the reconnect after the drain", |e| {
                matches!(e, Event::ReconnectScheduled { .. })
            })
            .await
    });
    assert!(all_gone, "the client left the draining instance");
    first.shutdown().await;
    for n in 11..=20 {
        client.send(format!("m{n}")).unwrap();
    }
    events.until_connected().await;
    reference::tap_until(&mut tap_b, &mut at_servers, "m20").await;
    events.until_message("m20").await;
    while let Ok(d) = tap_a.try_recv() {
        at_servers.add(&d.payload);
    }
    let expected: Vec<String> = (1..=20).map(|n| format!("m{n}")).collect();
    at_servers.assert_exactly_once("at the servers", expected.iter().map(String::as_str));
    events
        .messages
        .assert_exactly_once("echoes at the client", expected.iter().map(String::as_str));
    assert!(
        events
            .logged(|e| matches!(e, Event::SessionReset { .. }))
            .is_empty(),
        "resumed on B, not reset"
    );
    within("close", client.close(1000, "done")).await;
    second.shutdown().await;
    balancer.stop().await;
    drop(redis);
}
