//! The reference server across instances (issue 14): messages per second through one
//! instance and through three behind the testkit's round-robin `Balancer` (echo, and a
//! room whose members are on every instance), the round trip added by the Redis store
//! over the in-memory one, and the memory of an idle session in Redis. Not a test: run
//! with `cargo bench -p tether-native --bench cluster`; BENCHMARKS.md says how to read it.
//!
//! Starts its own `redis-server` on a free loopback port (`--save '' --appendonly no`);
//! fails without it. The instances are servers of this process on a runtime of their
//! own (two threads), each with its own `Hub` (only Redis is shared); the clients
//! (native, protocol mode, dev mode: no tokens) run on another two-thread runtime.
//! Every wait is bounded.

use std::error::Error;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tether_core::{Config, Event, State};
use tether_native::Client;
use tether_server::{Hub, RunningServer, Server, ServerConfig};
use tether_testkit::redis::RedisServer as Redis;
use tether_testkit::Balancer;
use tokio::runtime::Runtime;
use tokio::sync::mpsc;
use tokio::time::timeout;

type Result<T, E = Box<dyn Error + Send + Sync>> = std::result::Result<T, E>;

/// Echo clients, and messages each sends (in bursts of `BURST`, each burst echoed
/// before the next).
const ECHO_CLIENTS: usize = 30;
const ECHO_EACH: usize = 2000;
const BURST: usize = 50;
/// Room members, and messages each sends (each reaches every member).
const MEMBERS: usize = 30;
const ROOM_EACH: usize = 200;
/// Round trips measured one after the other, per store.
const ROUND_TRIPS: usize = 5000;
/// Round trips before those, not counted (connections and caches warm).
const WARM_UP: usize = 500;
/// Idle sessions whose memory in Redis is measured.
const IDLE: usize = 1000;
/// Bound of every wait.
const WAIT: Duration = Duration::from_secs(60);

fn runtime() -> Result<Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

async fn bounded<T>(what: &str, fut: impl std::future::Future<Output = T>) -> Result<T> {
    timeout(WAIT, fut)
        .await
        .map_err(|_| format!("timed out: {what}").into())
}

/// Instances on the server runtime: with Redis at `url` (each its own hub), or one in
/// memory.
struct Instances {
    servers: Vec<RunningServer>,
    _hubs: Vec<Arc<Hub>>,
}

async fn instances(server_rt: &Runtime, url: Option<String>, n: usize) -> Result<Instances> {
    let mut servers = Vec::new();
    let mut hubs = Vec::new();
    for i in 0..n {
        let url = url.clone();
        let (hub, server) = server_rt
            .spawn(async move {
                let hub = match &url {
                    Some(url) => Hub::with_redis(url, Some(&format!("bench{i}"))).await?,
                    None => Arc::new(Hub::new()),
                };
                let mut config = ServerConfig::default();
                config.bind = "127.0.0.1:0".parse()?;
                config.dev_mode = true;
                config.store = url;
                config.instance_id = Some(format!("bench{i}"));
                // Room fan-out: every member's queue takes a burst of every member.
                config.max_queued_frames = 1 << 16;
                let server = Server::start(config, Arc::clone(&hub)).await?;
                Ok::<_, Box<dyn Error + Send + Sync>>((hub, server))
            })
            .await??;
        hubs.push(hub);
        servers.push(server);
    }
    Ok(Instances {
        servers,
        _hubs: hubs,
    })
}

impl Instances {
    fn addrs(&self) -> Vec<SocketAddr> {
        self.servers.iter().map(RunningServer::addr).collect()
    }

    async fn stop(self, server_rt: &Runtime) -> Result<()> {
        for s in self.servers {
            server_rt.spawn(s.shutdown()).await?;
        }
        Ok(())
    }
}

/// `n` protocol clients of `url`, connected, each with a channel of its messages' arrival.
async fn clients(url: &str, n: usize) -> Result<(Vec<Client>, mpsc::UnboundedReceiver<usize>)> {
    let (tx, rx) = mpsc::unbounded_channel();
    let mut out = Vec::new();
    for i in 0..n {
        let c = Client::builder(Config::builder(url).protocol().build()?)
            .event_buffer(1 << 16)
            .spawn()?;
        let mut events = c.events();
        let tx = tx.clone();
        tokio::spawn(async move {
            while let Some(e) = events.recv().await {
                if matches!(e, Event::Message(_)) && tx.send(i).is_err() {
                    return;
                }
            }
        });
        out.push(c);
    }
    for c in &out {
        let mut state = c.state_watch();
        bounded(
            "a client to connect",
            state.wait_for(|s| *s == State::Connected),
        )
        .await??;
    }
    Ok((out, rx))
}

async fn close(clients: Vec<Client>) -> Result<()> {
    for c in clients {
        bounded("a close", c.close(1000, "done")).await?;
    }
    Ok(())
}

/// Echo messages per second through `url`: every client sends bursts, each echoed
/// before its next burst.
async fn echo_rate(url: &str) -> Result<f64> {
    let (clients, mut arrivals) = clients(url, ECHO_CLIENTS).await?;
    let payload = "x".repeat(64);
    let start = Instant::now();
    for _ in 0..ECHO_EACH / BURST {
        for c in &clients {
            for _ in 0..BURST {
                c.send(payload.as_str())?;
            }
        }
        bounded("a burst's echoes", async {
            for _ in 0..ECHO_CLIENTS * BURST {
                arrivals.recv().await.ok_or("clients gone")?;
            }
            Ok::<_, Box<dyn Error + Send + Sync>>(())
        })
        .await??;
    }
    let rate = (ECHO_CLIENTS * ECHO_EACH) as f64 / start.elapsed().as_secs_f64();
    close(clients).await?;
    Ok(rate)
}

/// Room deliveries per second through `url`: every member sends `ROOM_EACH`, each
/// reaches every member.
async fn room_rate(url: &str) -> Result<f64> {
    let (clients, mut arrivals) = clients(&format!("{url}?room=bench"), MEMBERS).await?;
    let start = Instant::now();
    for round in 0..ROOM_EACH {
        for c in &clients {
            c.send(format!("r{round}"))?;
        }
    }
    bounded("every room message at every member", async {
        for _ in 0..MEMBERS * MEMBERS * ROOM_EACH {
            arrivals.recv().await.ok_or("clients gone")?;
        }
        Ok::<_, Box<dyn Error + Send + Sync>>(())
    })
    .await??;
    let rate = (MEMBERS * MEMBERS * ROOM_EACH) as f64 / start.elapsed().as_secs_f64();
    close(clients).await?;
    Ok(rate)
}

/// p50 and p99 of one client's echo round trip, one message at a time, in µs.
async fn round_trips(url: &str) -> Result<(u128, u128)> {
    let (clients, mut arrivals) = clients(url, 1).await?;
    let mut samples = Vec::with_capacity(WARM_UP + ROUND_TRIPS);
    for _ in 0..WARM_UP + ROUND_TRIPS {
        let t = Instant::now();
        clients[0].send("ping")?;
        bounded("an echo", arrivals.recv())
            .await?
            .ok_or("client gone")?;
        samples.push(t.elapsed().as_micros());
    }
    samples.drain(..WARM_UP);
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    let p = (at(0.50), at(0.99));
    close(clients).await?;
    Ok(p)
}

/// Bytes of Redis memory per idle session (connected, nothing unacknowledged).
async fn idle_session_bytes(redis: &Redis, url: &str) -> Result<(u64, u64)> {
    let before = redis.used_memory().await;
    let stored_before = redis.sessions().await;
    let (clients, _arrivals) = clients(url, IDLE).await?;
    bounded("every session in redis", async {
        while redis.sessions().await < stored_before + IDLE as u64 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok::<_, Box<dyn Error + Send + Sync>>(())
    })
    .await??;
    let after = redis.used_memory().await;
    close(clients).await?;
    Ok((after.saturating_sub(before) / IDLE as u64, after - before))
}

fn main() -> Result<()> {
    let server_rt = runtime()?;
    let client_rt = runtime()?;
    client_rt.block_on(async {
        let redis = Redis::start().await;
        let url = |addr: SocketAddr| format!("ws://{addr}/ws");

        // In memory, one instance.
        let mem = instances(&server_rt, None, 1).await?;
        let mem_url = url(mem.addrs()[0]);
        let mem_echo = echo_rate(&mem_url).await?;
        let mem_room = room_rate(&mem_url).await?;
        let (mem_p50, mem_p99) = round_trips(&mem_url).await?;
        mem.stop(&server_rt).await?;

        // Redis, one instance.
        let one = instances(&server_rt, Some(redis.url()), 1).await?;
        let one_url = url(one.addrs()[0]);
        let one_echo = echo_rate(&one_url).await?;
        let one_room = room_rate(&one_url).await?;
        let (redis_p50, redis_p99) = round_trips(&one_url).await?;
        let (per_session, total) = idle_session_bytes(&redis, &one_url).await?;
        one.stop(&server_rt).await?;

        // Redis, three instances behind the balancer.
        let three = instances(&server_rt, Some(redis.url()), 3).await?;
        let balancer = Balancer::start(three.addrs()).await?;
        let three_url = url(balancer.addr());
        let three_echo = echo_rate(&three_url).await?;
        let three_room = room_rate(&three_url).await?;
        balancer.stop().await;
        three.stop(&server_rt).await?;

        println!(
            "cluster echo_msgs_per_s: memory_1={mem_echo:.0} redis_1={one_echo:.0} redis_3={three_echo:.0} \
             ({ECHO_CLIENTS} clients x {ECHO_EACH} msgs of 64 B, bursts of {BURST})"
        );
        println!(
            "cluster room_deliveries_per_s: memory_1={mem_room:.0} redis_1={one_room:.0} redis_3={three_room:.0} \
             ({MEMBERS} members x {ROOM_EACH} msgs, each to every member)"
        );
        println!(
            "cluster round_trip_us: memory p50={mem_p50} p99={mem_p99}; redis p50={redis_p50} p99={redis_p99}; \
             added p50={} p99={} ({ROUND_TRIPS} sequential echoes)",
            redis_p50 as i128 - mem_p50 as i128,
            redis_p99 as i128 - mem_p99 as i128
        );
        println!(
            "cluster redis_bytes_per_idle_session: {per_session} ({IDLE} sessions, used_memory +{total} B)"
        );
        Ok(())
    })
}
