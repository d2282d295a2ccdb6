//! The multi-instance suite (issue 14): three reference server instances sharing their
//! sessions through one Redis, behind the testkit's round-robin [`Balancer`], with
//! native clients in protocol mode:
//!
//! - 200 clients sending and receiving through kills of one instance at a time, then a
//!   rolling restart (drain) of all three;
//! - a room whose members are on all three instances;
//! - Redis itself restarted mid-traffic;
//! - one user connecting through two (then three) instances;
//! - clients on HTTP polling whose requests land on every instance, through a kill.
//!
//! Each instance is a [`tether_server::Server`] of this process with its own [`Hub`]
//! on Redis (its own sessions, writer and subscriber: only Redis is shared) and its own
//! instance id. A kill drops the server without a drain *and* its hub, as the death of
//! the process would; a restart starts a fresh hub and server on the same port, as a
//! new process would. Every test starts its own `redis-server` on a free loopback port
//! (`--save '' --appendonly no`) and stops everything at the end. Without
//! `redis-server` the tests fail: scripts/test.sh installs it.

mod support;

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tether_core::{
    AuthConfig, BackoffConfig, Config, Event, FallbackConfig, Jitter, MessageId, State,
    TerminalReason,
};
use tether_native::Client;
use tether_server::{Delivered, Hub, RunningServer, ServerConfig};
use tether_testkit::Balancer;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::sync::mpsc::{self, UnboundedReceiver, UnboundedSender};
use tokio::task::JoinHandle;

use support::reference::{self, Tally, Tokens};
use tether_testkit::redis::RedisServer;

const HOUR: Duration = Duration::from_secs(3600);
/// Bound of each wait here: 200 clients moving at once on a shared 2-core machine take
/// longer than the other suites' 10 s.
const LONG: Duration = Duration::from_secs(30);

/// `fut`, or a test failure naming `what` after [`LONG`].
async fn bounded<T>(what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(LONG, fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out waiting for {what}"),
    }
}

// ---------------------------------------------------------------------------------------
// Three instances on Redis behind a balancer.

const NAMES: [&str; 3] = ["a", "b", "c"];

struct Node {
    name: &'static str,
    addr: SocketAddr,
    /// `None` while the instance is dead.
    hub: Option<Arc<Hub>>,
    server: Option<RunningServer>,
}

struct Cluster {
    redis: Option<RedisServer>,
    redis_port: u16,
    config: ServerConfig,
    nodes: Vec<Node>,
    balancer: Balancer,
    /// Every instance's tap, merged (each hub's, the restarted ones' too).
    taps: UnboundedSender<Delivered>,
    delivered: UnboundedReceiver<Delivered>,
}

impl Cluster {
    async fn start() -> Cluster {
        let redis = RedisServer::start().await;
        let mut config = reference::server_config();
        config.store = Some(redis.url());
        let (taps, delivered) = mpsc::unbounded_channel();
        let mut nodes = Vec::new();
        for name in NAMES {
            let bind = "127.0.0.1:0".parse().unwrap();
            let (hub, server) = start_instance(&config, name, bind, &taps).await;
            nodes.push(Node {
                name,
                addr: server.addr(),
                hub: Some(hub),
                server: Some(server),
            });
        }
        let balancer = Balancer::start(nodes.iter().map(|n| n.addr))
            .await
            .expect("the balancer starts");
        Cluster {
            redis_port: redis.port,
            redis: Some(redis),
            config,
            nodes,
            balancer,
            taps,
            delivered,
        }
    }

    fn redis(&self) -> &RedisServer {
        self.redis.as_ref().expect("redis runs")
    }

    /// The instance dies: no drain, no close frames, its hub gone with it; the
    /// balancer then skips it (as its health check would).
    async fn kill(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        node.server.take().expect("running").kill().await;
        node.hub = None;
        self.balancer.set_down(node.addr, true);
    }

    /// The instance drains (its clients told to come back within `window`), stops, and
    /// a new one starts in its place. Returns whether every connection left in time.
    async fn drain_and_restart(&mut self, i: usize, window: Duration) -> bool {
        let node = &mut self.nodes[i];
        let server = node.server.take().expect("running");
        let all_gone = server.drain(window).await;
        self.balancer.set_down(node.addr, true);
        server.shutdown().await;
        node.hub = None;
        self.restart(i).await;
        all_gone
    }

    /// A new instance (fresh hub, same id and port) where `i` was.
    async fn restart(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        assert!(node.server.is_none(), "{} still runs", node.name);
        let (hub, server) = start_instance(&self.config, node.name, node.addr, &self.taps).await;
        node.hub = Some(hub);
        node.server = Some(server);
        self.balancer.set_down(node.addr, false);
    }

    fn hubs(&self) -> impl Iterator<Item = &Arc<Hub>> {
        self.nodes.iter().filter_map(|n| n.hub.as_ref())
    }

    /// Which live instance `user`'s client is attached to (its Hello done), if any.
    fn attached(&self) -> HashMap<String, usize> {
        let mut at = HashMap::new();
        for (i, node) in self.nodes.iter().enumerate() {
            let Some(hub) = &node.hub else { continue };
            for c in hub.metrics().connections {
                if c.client_id.is_some() {
                    at.insert(c.user, i);
                }
            }
        }
        at
    }

    async fn stop(mut self) {
        for node in &mut self.nodes {
            if let Some(server) = node.server.take() {
                server.shutdown().await;
            }
            node.hub = None;
        }
        self.balancer.stop().await;
        if let Some(redis) = self.redis.take() {
            redis.stop().await;
        }
    }
}

/// Starts instance `name` on `bind` with a hub of its own on Redis; its tap feeds `taps`.
async fn start_instance(
    config: &ServerConfig,
    name: &str,
    bind: SocketAddr,
    taps: &UnboundedSender<Delivered>,
) -> (Arc<Hub>, RunningServer) {
    let url = config.store.clone().expect("a store");
    let hub = bounded(
        "the hub to connect to redis",
        Hub::with_redis(&url, Some(name)),
    )
    .await
    .expect("the hub connects to redis");
    let mut tap = hub.tap();
    let taps = taps.clone();
    // Ends when the hub goes (the instance died).
    tokio::spawn(async move {
        while let Some(d) = tap.recv().await {
            if taps.send(d).is_err() {
                return;
            }
        }
    });
    let mut config = config.clone();
    config.bind = bind;
    config.instance_id = Some(name.to_owned());
    let server = reference::start(&config, &hub).await;
    (hub, server)
}

/// Waits until `done` holds, looking again whenever an instance's hub tells of a change
/// (a connection opened or ended, a message or acknowledgement counted).
async fn until_hubs(cluster: &Cluster, what: &str, done: impl Fn(&Cluster) -> bool) {
    let mut changes: Vec<_> = cluster.hubs().map(|h| h.changes()).collect();
    bounded(what, async {
        loop {
            for c in &mut changes {
                c.mark_unchanged();
            }
            if done(cluster) {
                return;
            }
            let any = changes.iter_mut().map(|c| Box::pin(c.changed()));
            let _ = futures_util::future::select_all(any).await;
        }
    })
    .await;
}

/// `GET /api/health` of one instance: its body.
async fn health(addr: SocketAddr) -> String {
    bounded("the health check", async {
        let mut s = TcpStream::connect(addr)
            .await
            .expect("the instance listens");
        s.write_all(b"GET /api/health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await
            .expect("written");
        let mut answer = Vec::new();
        s.read_to_end(&mut answer).await.expect("read");
        let answer = String::from_utf8_lossy(&answer).into_owned();
        answer
            .split_once("\r\n\r\n")
            .map(|(_, body)| body.to_owned())
            .unwrap_or(answer)
    })
    .await
}

/// Asks every instance's health check until each says `status` (bounded: nothing tells
/// of it but asking).
async fn until_health(cluster: &Cluster, status: &str) {
    let want = format!("\"status\":\"{status}\"");
    for node in &cluster.nodes {
        let mut last = String::new();
        for _ in 0..100 {
            last = health(node.addr).await;
            if last.contains(&want) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(last.contains(&want), "{}: {last}", node.name);
        assert!(last.contains("\"store\":\"redis\""), "{last}");
        assert!(
            last.contains(&format!("\"instance\":\"{}\"", node.name)),
            "{last}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Many clients, each of its own user, and what they got.

struct Fleet {
    users: Vec<&'static str>,
    clients: Vec<Client>,
    events: UnboundedReceiver<(usize, Event)>,
    readers: Vec<JoinHandle<u64>>,
    /// Per client: the messages from the server, and how many (duplicates count).
    got: Vec<Tally>,
    received: Vec<usize>,
    /// Per client: `Delivered` events by message id, and the ids sent.
    confirmed: Vec<HashMap<MessageId, u32>>,
    sent: Vec<Vec<MessageId>>,
    /// Per client: messages the application pushed to it.
    pushed: Vec<usize>,
    /// Per client: messages it sent.
    sent_count: Vec<usize>,
    resets: Vec<(usize, Event)>,
    dropped: Vec<(usize, Event)>,
    stopped: Vec<(usize, Event)>,
    disconnects: Vec<u32>,
}

/// A protocol-mode client of `url` with `user`'s tokens (the tests' fast backoff).
fn client(url: &str, user: &'static str, seed: Option<u64>) -> Client {
    client_with(url, user, seed, None)
}

/// [`client`], with an HTTP polling fallback if given.
fn client_with(
    url: &str,
    user: &'static str,
    seed: Option<u64>,
    fallback: Option<FallbackConfig>,
) -> Client {
    let mut config = Config::builder(url)
        .backoff(BackoffConfig {
            initial_delay: Duration::from_millis(20),
            factor: 2.0,
            max_delay: Duration::from_millis(200),
            jitter: Jitter::Full,
            max_attempts: None,
        })
        .protocol()
        .auth(AuthConfig::default());
    if let Some(seed) = seed {
        config = config.seed(seed);
    }
    if let Some(fallback) = fallback {
        config = config.fallback(fallback);
    }
    Client::builder(config.build().unwrap())
        .token_provider(Tokens::new(user, HOUR).provider())
        .event_buffer(8192)
        .spawn()
        .unwrap()
}

impl Fleet {
    /// `users` clients of `url` (`ws://…/ws[?room=…]`), each of its own user.
    fn spawn(url: &str, users: Vec<&'static str>) -> Fleet {
        Fleet::spawn_with(users, |user| client(url, user, None))
    }

    /// Clients made by `make`, one per user.
    fn spawn_with(users: Vec<&'static str>, make: impl Fn(&'static str) -> Client) -> Fleet {
        let (tx, events) = mpsc::unbounded_channel();
        let mut clients = Vec::new();
        let mut readers = Vec::new();
        for (i, user) in users.iter().enumerate() {
            let c = make(user);
            let mut ev = c.events();
            let tx = tx.clone();
            readers.push(tokio::spawn(async move {
                while let Some(e) = ev.recv().await {
                    let _ = tx.send((i, e));
                }
                ev.missed()
            }));
            clients.push(c);
        }
        let n = users.len();
        Fleet {
            users,
            clients,
            events,
            readers,
            got: (0..n).map(|_| Tally::default()).collect(),
            received: vec![0; n],
            confirmed: vec![HashMap::new(); n],
            sent: vec![Vec::new(); n],
            pushed: vec![0; n],
            sent_count: vec![0; n],
            resets: Vec::new(),
            dropped: Vec::new(),
            stopped: Vec::new(),
            disconnects: vec![0; n],
        }
    }

    fn record(&mut self, i: usize, e: Event) {
        match e {
            Event::Message(p) => {
                self.got[i].add(&p);
                self.received[i] += 1;
            }
            Event::Delivered { id } => *self.confirmed[i].entry(id).or_default() += 1,
            e @ Event::SessionReset { .. } => self.resets.push((i, e)),
            e @ Event::Dropped { .. } => self.dropped.push((i, e)),
            e @ Event::Stopped(_) => self.stopped.push((i, e)),
            Event::Disconnected { .. } => self.disconnects[i] += 1,
            _ => {}
        }
    }

    /// Takes events until `done` holds (looked at first, then after each event).
    async fn until(&mut self, what: &str, done: impl Fn(&Fleet) -> bool) {
        bounded(what, async {
            while !done(self) {
                let (i, e) = self.events.recv().await.expect("the readers live");
                self.record(i, e);
                while let Ok((i, e)) = self.events.try_recv() {
                    self.record(i, e);
                }
            }
        })
        .await;
    }

    async fn until_connected(&mut self) {
        self.until("every client connected", |f| {
            f.clients.iter().all(|c| c.state() == State::Connected)
        })
        .await;
    }

    /// Client `i` sends `text` (queued: it goes out when it can).
    fn send(&mut self, i: usize, text: String) {
        let id = self.clients[i].send(text).expect("accepted");
        self.sent[i].push(id);
        self.sent_count[i] += 1;
    }

    /// Every message each client should have so far (its echoes and the pushes to it)
    /// has arrived, and every message it sent is confirmed.
    fn settled(&self) -> bool {
        (0..self.clients.len()).all(|i| {
            self.received[i] >= self.sent_count[i] + self.pushed[i]
                && self.confirmed[i].len() >= self.sent[i].len()
        })
    }

    async fn until_settled(&mut self, what: &str) {
        self.until(what, Fleet::settled).await;
    }

    /// The application sends `text(i)` to each client of `targets`, through the
    /// instance its client is attached to; a client between instances gets it once it
    /// is attached again.
    async fn push(&mut self, cluster: &Cluster, targets: &[usize], text: impl Fn(usize) -> String) {
        let mut left: Vec<usize> = targets.to_vec();
        bounded("every push to be taken", async {
            while !left.is_empty() {
                let at = cluster.attached();
                left.retain(|&i| {
                    let Some(&node) = at.get(self.users[i]) else {
                        return true;
                    };
                    let hub = cluster.nodes[node].hub.as_ref().expect("live");
                    match hub.send_to_user(self.users[i], text(i)) {
                        0 => true,
                        1 => {
                            self.pushed[i] += 1;
                            false
                        }
                        n => panic!("{} sessions of {}", n, self.users[i]),
                    }
                });
                if !left.is_empty() {
                    // Some are between instances: wait for something to happen.
                    let (i, e) = self.events.recv().await.expect("the readers live");
                    self.record(i, e);
                }
            }
        })
        .await;
    }

    /// Asserts: every message once at each client (what `expected(i)` names), each
    /// message each client sent confirmed once, no reset, nothing dropped or stopped,
    /// no event missed.
    async fn assert_exactly_once(self, expected: impl Fn(usize) -> Vec<String>) -> Vec<u32> {
        for i in 0..self.clients.len() {
            let want = expected(i);
            self.got[i].assert_exactly_once(
                &format!("at client {}", self.users[i]),
                want.iter().map(String::as_str),
            );
            for id in &self.sent[i] {
                assert_eq!(
                    self.confirmed[i].get(id),
                    Some(&1),
                    "{}: Delivered events of {id:?}",
                    self.users[i]
                );
            }
        }
        assert!(self.resets.is_empty(), "sessions reset: {:?}", self.resets);
        assert!(self.dropped.is_empty(), "dropped: {:?}", self.dropped);
        assert!(self.stopped.is_empty(), "stopped: {:?}", self.stopped);
        for c in &self.clients {
            bounded("close", c.close(1000, "done")).await;
        }
        drop(self.clients);
        for r in self.readers {
            assert_eq!(bounded("a reader", r).await.unwrap(), 0, "events missed");
        }
        self.disconnects
    }
}

/// Takes the instances' deliveries until `n` arrived, then whatever else is already
/// there (a duplicate shows).
async fn delivered(cluster: &mut Cluster, n: usize, tally: &mut Tally) {
    bounded("the servers' deliveries", async {
        for _ in 0..n {
            let d = cluster.delivered.recv().await.expect("the taps live");
            tally.add(&d.payload);
        }
    })
    .await;
    while let Ok(d) = cluster.delivered.try_recv() {
        tally.add(&d.payload);
    }
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

// ---------------------------------------------------------------------------------------

/// 200 clients through a kill of each instance in turn, then a rolling restart of all
/// three: every echo and every push once at each client, every client message once at
/// the servers, no session reset.
///
/// Each round: the application pushes to every client (through the instance it is
/// on) and waits until they arrived; then every client queues its messages and at once
/// an instance dies (or drains) with them in flight both ways; then the application
/// pushes again, to each client wherever it is now; everything arrives. The pushes are
/// settled before the kill because `Hub::send_to_user` returns before the message is
/// in Redis: what an application hands to an instance in the milliseconds before it
/// dies dies with it (DEPLOYMENT.md).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_clients_through_kills_and_a_rolling_restart() {
    const CLIENTS: usize = 200;
    /// Messages each client sends per round, and pushes per half round.
    const SENDS: usize = 4;
    const PUSHES: usize = 2;
    let mut cluster = Cluster::start().await;
    let users: Vec<&'static str> = (0..CLIENTS).map(|i| leak(format!("u{i}"))).collect();
    let url = format!("ws://{}/ws", cluster.balancer.addr());
    let mut fleet = Fleet::spawn(&url, users.clone());
    fleet.until_connected().await;
    // Round-robin: each instance took a third of them.
    for hub in cluster.hubs() {
        let n = hub.connections();
        assert!((60..=73).contains(&n), "{n} connections on one instance");
    }

    let all: Vec<usize> = (0..CLIENTS).collect();
    let window = Duration::from_millis(1000);
    let mut expected_total = 0usize;
    for round in 0..6 {
        let victim = round % 3;
        fleet.push(&cluster, &all, |_| format!("s{round}.0")).await;
        fleet.push(&cluster, &all, |_| format!("s{round}.1")).await;
        fleet.until_settled("the pushes before the move").await;
        for (i, user) in users.iter().enumerate() {
            for j in 0..SENDS {
                fleet.send(i, format!("{user}/c{round}.{j}"));
            }
        }
        if round < 3 {
            cluster.kill(victim).await;
        } else {
            assert!(
                cluster.drain_and_restart(victim, window).await,
                "every client left the draining instance within the window"
            );
        }
        for j in PUSHES..2 * PUSHES {
            fleet
                .push(&cluster, &all, |_| format!("s{round}.{j}"))
                .await;
        }
        fleet.until_settled("every message of the round").await;
        expected_total += CLIENTS * SENDS;
        if round < 3 {
            cluster.restart(victim).await;
        }
        // One session per client in Redis, whatever the moves.
        assert_eq!(cluster.redis().sessions().await, CLIENTS as u64);
    }

    let mut at_servers = Tally::default();
    delivered(&mut cluster, expected_total, &mut at_servers).await;
    let want: Vec<String> = users
        .iter()
        .flat_map(|u| (0..6).flat_map(move |r| (0..SENDS).map(move |j| format!("{u}/c{r}.{j}"))))
        .collect();
    at_servers.assert_exactly_once("at the servers", want.iter().map(String::as_str));
    // The limits held: one session per client in all, at most one connection each.
    let sessions: usize = cluster.hubs().map(|h| h.sessions()).sum();
    let connections: usize = cluster.hubs().map(|h| h.connections()).sum();
    assert!(
        (CLIENTS..=2 * CLIENTS).contains(&sessions),
        "{sessions} sessions"
    );
    assert_eq!(connections, CLIENTS, "one connection per client");
    for hub in cluster.hubs() {
        assert!(hub.memory().resume_bytes < 1 << 20, "{:?}", hub.memory());
    }
    let reconnects: Vec<u32> = fleet
        .clients
        .iter()
        .map(|c| c.metrics().reconnects)
        .collect();
    let disconnects = fleet
        .assert_exactly_once(|i| {
            let u = users[i];
            (0..6)
                .flat_map(|r| {
                    (0..SENDS)
                        .map(move |j| format!("{u}/c{r}.{j}"))
                        .chain((0..2 * PUSHES).map(move |j| format!("s{r}.{j}")))
                })
                .collect()
        })
        .await;
    // Each client left an instance at most once per kill or drain of its instance
    // (six in all), with a few failed attempts at most.
    for (i, (d, r)) in disconnects.iter().zip(&reconnects).enumerate() {
        assert!(
            *d <= 6 && *r <= 12,
            "client {i}: {d} disconnects, {r} reconnects"
        );
    }
    assert!(
        disconnects.iter().all(|d| *d >= 1),
        "every client moved at least once"
    );
    cluster.stop().await;
}

/// A room with three members on each instance: every member's messages and the
/// application's broadcast (on one instance) reach every member once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_spans_three_instances() {
    const MEMBERS: usize = 9;
    const EACH: usize = 5;
    let mut cluster = Cluster::start().await;
    let url = format!("ws://{}/ws?room=lobby", cluster.balancer.addr());
    let users: Vec<&'static str> = (0..MEMBERS).map(|i| leak(format!("m{i}"))).collect();
    let mut fleet = Fleet::spawn(&url, users.clone());
    fleet.until_connected().await;
    for hub in cluster.hubs() {
        assert_eq!(hub.connections(), MEMBERS / 3, "members on every instance");
    }
    for j in 0..EACH {
        for (i, user) in users.iter().enumerate() {
            fleet.send(i, format!("{user}/{j}"));
        }
    }
    let from_app = cluster.nodes[1].hub.as_ref().expect("b").clone();
    for j in 0..3 {
        assert_eq!(from_app.broadcast("lobby", format!("app/{j}")), MEMBERS / 3);
    }
    let total = MEMBERS * EACH + 3;
    fleet
        .until("every room message at every member", |f| {
            f.received.iter().all(|&n| n >= total)
        })
        .await;
    // A last message from each: once they are in, anything sent twice would be too.
    for (i, user) in users.iter().enumerate() {
        fleet.send(i, format!("{user}/end"));
    }
    fleet
        .until("the last messages", |f| {
            f.received.iter().all(|&n| n >= total + MEMBERS)
        })
        .await;
    let mut at_servers = Tally::default();
    delivered(&mut cluster, MEMBERS * (EACH + 1), &mut at_servers).await;
    let want: Vec<String> = users
        .iter()
        .flat_map(|u| {
            (0..EACH)
                .map(|j| j.to_string())
                .chain(["end".into()])
                .map(move |j| format!("{u}/{j}"))
        })
        .collect();
    at_servers.assert_exactly_once("at the servers", want.iter().map(String::as_str));
    let mut room = want.clone();
    room.extend((0..3).map(|j| format!("app/{j}")));
    fleet.assert_exactly_once(|_| room.clone()).await;
    cluster.stop().await;
}

/// Redis stops mid-traffic: every instance goes on serving its connected clients (both
/// ways) and says `degraded`; Redis comes back empty: every instance says `ok` again
/// and writes its sessions again, so that a kill after it still loses nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_mid_traffic() {
    const CLIENTS: usize = 30;
    let mut cluster = Cluster::start().await;
    let users: Vec<&'static str> = (0..CLIENTS).map(|i| leak(format!("r{i}"))).collect();
    let url = format!("ws://{}/ws", cluster.balancer.addr());
    let mut fleet = Fleet::spawn(&url, users.clone());
    fleet.until_connected().await;
    until_health(&cluster, "ok").await;
    let all: Vec<usize> = (0..CLIENTS).collect();
    let phases = ["before", "down", "back", "moved"];
    for (p, phase) in phases.iter().enumerate() {
        for (i, user) in users.iter().enumerate() {
            for j in 0..5 {
                fleet.send(i, format!("{user}/{phase}{j}"));
            }
        }
        if p == 0 {
            // Redis dies with the clients' messages in flight.
            cluster.redis.take().expect("redis").stop().await;
        }
        fleet.push(&cluster, &all, |_| format!("s/{phase}")).await;
        fleet.until_settled(&format!("the messages {phase}")).await;
        match p {
            0 | 1 => until_health(&cluster, "degraded").await,
            2 => {
                // Every session is in the new Redis again: a move loses nothing.
                for _ in 0..100 {
                    if cluster.redis().sessions().await == CLIENTS as u64 {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                assert_eq!(cluster.redis().sessions().await, CLIENTS as u64);
                cluster.kill(0).await;
            }
            _ => {}
        }
        if p == 1 {
            cluster.redis = Some(RedisServer::start_on(cluster.redis_port).await);
            until_health(&cluster, "ok").await;
        }
    }
    let mut at_servers = Tally::default();
    delivered(&mut cluster, CLIENTS * 5 * phases.len(), &mut at_servers).await;
    let want: Vec<String> = users
        .iter()
        .flat_map(|u| {
            phases
                .iter()
                .flat_map(move |p| (0..5).map(move |j| format!("{u}/{p}{j}")))
        })
        .collect();
    at_servers.assert_exactly_once("at the servers", want.iter().map(String::as_str));
    fleet
        .assert_exactly_once(|i| {
            let u = users[i];
            phases
                .iter()
                .flat_map(|p| {
                    (0..5)
                        .map(move |j| format!("{u}/{p}{j}"))
                        .chain([format!("s/{p}")])
                })
                .collect()
        })
        .await;
    cluster.stop().await;
}

/// One user's three clients connect through the balancer, one after the other, so
/// each lands on another instance: each newer one replaces the older (close 4409, the
/// older stops for good), and the newest is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_user_through_several_instances_the_newest_wins() {
    let mut cluster = Cluster::start().await;
    let url = format!("ws://{}/ws", cluster.balancer.addr());
    let mut clients: Vec<(Client, tether_native::Events)> = Vec::new();
    for n in 0..3u64 {
        let c = client(&url, "dana", Some(n + 1));
        let events = c.events();
        support::wait_state(&c, State::Connected).await;
        bounded("an ack", c.send_confirmed(format!("from {n}")))
            .await
            .expect("confirmed");
        if let Some((_, older)) = clients.last_mut() {
            let stopped = support::next_event(older, "the older to stop", |e| {
                matches!(e, Event::Stopped(_))
            })
            .await;
            let Event::Stopped(TerminalReason::Replaced(cause)) = stopped else {
                panic!("{stopped:?}")
            };
            assert_eq!(cause.code, Some(4409), "{cause}");
        }
        clients.push((c, events));
    }
    // Each landed on another instance, and only the newest is connected anywhere.
    for u in cluster.balancer.upstreams() {
        assert_eq!(u.connections, 1, "{u:?}");
    }
    // (The replaced sockets' close handshakes may still be ending.)
    until_hubs(&cluster, "one connection in all", |c| {
        c.hubs().map(|h| h.connections()).sum::<usize>() == 1
    })
    .await;
    let newest = &clients.last().expect("three").0;
    bounded("an ack", newest.send_confirmed("still here"))
        .await
        .expect("confirmed");
    for (older, _) in &clients[..2] {
        assert_eq!(older.state(), State::Error);
        let m = older.metrics();
        assert_eq!(m.reconnects, 0, "the older does not fight back: {m:?}");
    }
    assert_eq!(
        cluster
            .balancer
            .upstreams()
            .iter()
            .map(|u| u.connections)
            .sum::<u64>(),
        3,
        "no new attempt by the replaced clients"
    );
    let mut at_servers = Tally::default();
    delivered(&mut cluster, 4, &mut at_servers).await;
    at_servers.assert_exactly_once(
        "at the servers",
        ["from 0", "from 1", "from 2", "still here"],
    );
    bounded("close", newest.close(1000, "done")).await;
    cluster.stop().await;
}

/// Clients on HTTP polling (their WebSockets go to a middlebox that drops every
/// connection) through the round-robin balancer: a poll request that lands on an
/// instance without the client's polling transport gets 503 and the next Hello resumes
/// the session there from Redis. Through a kill of one instance, every message once
/// both ways, no reset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_clients_move_between_instances() {
    const CLIENTS: usize = 6;
    let mut cluster = Cluster::start().await;
    let middlebox = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let nowhere = middlebox.local_addr().expect("address");
    let dropper = tokio::spawn(async move {
        while let Ok((stream, _)) = middlebox.accept().await {
            drop(stream);
        }
    });
    let poll_url = format!("http://{}/poll", cluster.balancer.addr());
    let users: Vec<&'static str> = (0..CLIENTS).map(|i| leak(format!("p{i}"))).collect();
    let mut fleet = Fleet::spawn_with(users.clone(), |user| {
        let mut fallback = FallbackConfig::new(poll_url.clone());
        fallback.after_failures = 1;
        client_with(&format!("ws://{nowhere}/ws"), user, None, Some(fallback))
    });
    fleet.until_connected().await;
    for c in &fleet.clients {
        assert!(c.metrics().fallback_active, "{:?}", c.metrics());
    }
    for round in 0..3 {
        for (i, user) in users.iter().enumerate() {
            for j in 0..5 {
                fleet.send(i, format!("{user}/{round}.{j}"));
            }
        }
        if round == 1 {
            cluster.kill(0).await;
        }
        fleet.until_settled("the echoes").await;
    }
    let mut at_servers = Tally::default();
    delivered(&mut cluster, CLIENTS * 15, &mut at_servers).await;
    let want: Vec<String> = users
        .iter()
        .flat_map(|u| (0..3).flat_map(move |r| (0..5).map(move |j| format!("{u}/{r}.{j}"))))
        .collect();
    at_servers.assert_exactly_once("at the servers", want.iter().map(String::as_str));
    // The requests went to every instance.
    for u in cluster.balancer.upstreams() {
        assert!(u.connections >= 1, "{u:?}");
    }
    for c in &fleet.clients {
        assert!(
            c.metrics().fallback_active,
            "still polling: {:?}",
            c.metrics()
        );
    }
    fleet
        .assert_exactly_once(|i| {
            let u = users[i];
            (0..3)
                .flat_map(|r| (0..5).map(move |j| format!("{u}/{r}.{j}")))
                .collect()
        })
        .await;
    dropper.abort();
    cluster.stop().await;
}
