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

use support::redis::RedisServer;
use support::reference::{self, Tally, Tokens};
use support::within;

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
            if from_server < N / 2 {
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
