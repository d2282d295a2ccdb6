//! Tether's native client through server faults on 127.0.0.1, with the default
//! configuration (protocol mode, reference server `/ws` in dev mode): reconnect time
//! after a restart and messages lost meanwhile, half-open detection, and a herd of 500
//! clients coming back after a restart; then the same restart and herd with a few other
//! backoff settings. Not a test: run with
//! `cargo bench -p tether-native --bench resilience`; BENCHMARKS.md says how to read it.
//!
//! The server runs in this process on a runtime of its own (its own two threads), so a
//! restart keeps its `Hub` (sessions resume) and `Hub::tap` sees every delivered message.

use std::collections::HashMap;
use std::error::Error;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tether_core::{BackoffConfig, Config, Event, Jitter, Payload, State};
use tether_native::Client;
use tether_server::{Hub, RunningServer, Server, ServerConfig};
use tokio::runtime::Runtime;
use tokio::time::{sleep, timeout};

type Result<T, E = Box<dyn Error + Send + Sync>> = std::result::Result<T, E>;

/// Restarts measured; the figure is the median over every restart of every client of a
/// setting.
const RESTARTS: usize = 7;
/// Clients per setting through the restarts: more samples of the same distribution
/// (a client's next attempt after the server is back), at a load the server does not
/// notice.
const PER_SETTING: usize = 8;
/// How long the server stays down.
const OUTAGE: Duration = Duration::from_secs(1);
/// Connected this long before each kill: past the core's 3 s after which a connection
/// forgets earlier failures, so every restart starts from the first backoff step, as
/// after a long uptime.
const UPTIME: Duration = Duration::from_millis(3_500);
/// A message every this often from each restart client, outages included.
const SEND_EVERY: Duration = Duration::from_millis(20);
/// Clients frozen at once, connected `STAGGER` apart so their heartbeats are out of
/// phase: together they cover every moment of the heartbeat cycle a freeze can hit.
const FROZEN_CLIENTS: usize = 20;
const STAGGER: Duration = Duration::from_millis(200);
const HERD: usize = 500;
/// The window of the herd's peak.
const WINDOW: Duration = Duration::from_millis(100);
/// How often the server's connection count is sampled.
const SAMPLE_EVERY: Duration = Duration::from_millis(5);
/// Bound of every wait.
const WAIT: Duration = Duration::from_secs(30);

/// Backoff settings measured: the default first, then alternatives.
fn settings() -> Vec<(&'static str, BackoffConfig)> {
    let full = |initial_ms, factor, max_ms| BackoffConfig {
        initial_delay: Duration::from_millis(initial_ms),
        factor,
        max_delay: Duration::from_millis(max_ms),
        jitter: Jitter::Full,
        max_attempts: None,
    };
    vec![
        ("default 1s x1.5 max 2s", BackoffConfig::default()),
        (
            "500ms x1.5 max 10s (the former default)",
            full(500, 1.5, 10_000),
        ),
        ("500ms x1.5 max 2s", full(500, 1.5, 2_000)),
        ("900ms x1.5 max 2s", full(900, 1.5, 2_000)),
    ]
}

fn main() -> Result<()> {
    let server_rt = runtime()?;
    let clients_rt = runtime()?;
    let servers = Servers {
        rt: server_rt.handle().clone(),
    };
    clients_rt.block_on(bench(&servers))
}

/// Two workers, as on the project machine, whatever the core count.
fn runtime() -> Result<Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

async fn bench(servers: &Servers) -> Result<()> {
    let settings = settings();
    println!(
        "resilience: protocol mode, reference server /ws (dev mode) on its own runtime, 127.0.0.1"
    );

    println!(
        "restart: the server killed and back after {OUTAGE:?}, {RESTARTS} times; {PER_SETTING} \
         clients per setting, connected {UPTIME:?} before each kill, each sending a message \
         every {SEND_EVERY:?}"
    );
    let restarts = restarts(servers, &settings).await?;
    for (name, r) in settings.iter().map(|(n, _)| n).zip(&restarts) {
        let mut samples = r.samples_ms.clone();
        samples.sort_unstable();
        println!(
            "  {name:<28} reconnect median {:>4} ms, p90 {:>4} ms, max {:>4} ms ({} samples); sent {} ({} during outages), lost {}, duplicated {}",
            median(samples.clone()),
            samples[samples.len() * 9 / 10],
            samples.last().copied().unwrap_or_default(),
            samples.len(),
            r.sent,
            r.sent_during_outage,
            r.lost,
            r.duplicated
        );
    }

    println!(
        "half-open: the server frozen; {FROZEN_CLIENTS} default clients connected {STAGGER:?} apart"
    );
    let frozen = half_open(servers).await?;
    println!(
        "  declared dead after min {} ms, median {} ms, max {} ms",
        frozen.first().copied().unwrap_or_default(),
        frozen.get(frozen.len() / 2).copied().unwrap_or_default(),
        frozen.last().copied().unwrap_or_default()
    );

    println!(
        "herd: {HERD} clients in this process, the server killed and back after {OUTAGE:?}; \
         peak = most in any {WINDOW:?} window after it is back"
    );
    let mut herds = Vec::new();
    for (name, backoff) in &settings {
        let h = herd(servers, backoff.clone()).await?;
        println!(
            "  {name:<28} server peak {:>3}, client peak {:>3}, all connected after {:>4} ms, reconnect median {:>4} ms, p90 {:>4} ms",
            h.server_peak, h.client_peak, h.all_ms, h.median_ms, h.p90_ms
        );
        herds.push(h);
    }

    let (r, h) = (&restarts[0], &herds[0]);
    println!(
        "resilience reconnect_ms={} halfopen_ms={} herd_peak_per_100ms={} herd_all_ms={} lost={}",
        median(r.samples_ms.clone()),
        frozen.last().copied().unwrap_or_default(),
        h.server_peak,
        h.all_ms,
        r.lost
    );
    Ok(())
}

// ----- the server --------------------------------------------------------------------

/// Starts and stops reference servers on their own runtime.
struct Servers {
    rt: tokio::runtime::Handle,
}

impl Servers {
    async fn start(&self, hub: &Arc<Hub>, addr: SocketAddr) -> Result<RunningServer> {
        let mut config = ServerConfig::default();
        config.bind = addr;
        config.dev_mode = true;
        let hub = hub.clone();
        Ok(self.rt.spawn(Server::start(config, hub)).await??)
    }

    async fn kill(&self, server: RunningServer) -> Result<()> {
        Ok(self.rt.spawn(server.kill()).await?)
    }
}

fn any_port() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

fn config(addr: SocketAddr, backoff: BackoffConfig) -> Result<Config> {
    Ok(Config::builder(format!("ws://{addr}/ws"))
        .protocol()
        .backoff(backoff)
        .build()?)
}

async fn wait_state(client: &Client, pred: impl FnMut(&State) -> bool) -> Result<()> {
    timeout(WAIT, client.state_watch().wait_for(pred)).await??;
    Ok(())
}

fn median(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

/// Most of `times` (sorted) within any `WINDOW`.
fn peak(times: &[Instant]) -> usize {
    let mut end = 0;
    let mut best = 0;
    for (start, t) in times.iter().enumerate() {
        while end < times.len() && times[end] < *t + WINDOW {
            end += 1;
        }
        best = best.max(end - start);
    }
    best
}

fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

// ----- restarts ----------------------------------------------------------------------

struct Restarts {
    /// Milliseconds from the server listening again to Connected: every client of the
    /// setting, every restart.
    samples_ms: Vec<u64>,
    sent: u64,
    sent_during_outage: u64,
    lost: u64,
    duplicated: u64,
}

/// `PER_SETTING` clients per setting, all through the same restarts; each sends numbered
/// messages throughout, and the server's tap says which arrived.
async fn restarts(servers: &Servers, settings: &[(&str, BackoffConfig)]) -> Result<Vec<Restarts>> {
    let hub = Arc::new(Hub::new());
    let mut delivered = hub.tap();
    let mut server = servers.start(&hub, any_port()).await?;
    let addr = server.addr();
    let down = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    // (setting, client, its sender)
    let mut clients = Vec::new();
    for (setting, (_, backoff)) in settings.iter().enumerate() {
        for k in 0..PER_SETTING {
            let client = Client::connect(config(addr, backoff.clone())?)?;
            let (c, down, stop) = (client.clone(), down.clone(), stop.clone());
            let sender = tokio::spawn(async move {
                let (mut sent, mut during_outage) = (0u64, 0u64);
                while !stop.load(Ordering::SeqCst) {
                    if c.send(format!("{setting}-{k}-{}", sent + 1)).is_ok() {
                        sent += 1;
                        during_outage += u64::from(down.load(Ordering::SeqCst));
                    }
                    sleep(SEND_EVERY).await;
                }
                (sent, during_outage)
            });
            clients.push((setting, client, sender));
        }
    }
    let mut results: Vec<Restarts> = settings
        .iter()
        .map(|_| Restarts {
            samples_ms: Vec::new(),
            sent: 0,
            sent_during_outage: 0,
            lost: 0,
            duplicated: 0,
        })
        .collect();
    for _ in 0..RESTARTS {
        for (_, c, _) in &clients {
            wait_state(c, |s| *s == State::Connected).await?;
        }
        sleep(UPTIME).await;
        servers.kill(server).await?;
        down.store(true, Ordering::SeqCst);
        for (_, c, _) in &clients {
            wait_state(c, |s| *s != State::Connected).await?;
        }
        sleep(OUTAGE).await;
        server = servers.start(&hub, addr).await?;
        let back = Instant::now();
        down.store(false, Ordering::SeqCst);
        let waits: Vec<_> = clients
            .iter()
            .map(|(setting, c, _)| {
                let (setting, c) = (*setting, c.clone());
                tokio::spawn(async move {
                    wait_state(&c, |s| *s == State::Connected).await?;
                    Ok::<_, Box<dyn Error + Send + Sync>>((setting, ms(back.elapsed())))
                })
            })
            .collect();
        for wait in waits {
            let (setting, ms) = wait.await??;
            results[setting].samples_ms.push(ms);
        }
    }
    stop.store(true, Ordering::SeqCst);
    let mut sent = Vec::new();
    for (setting, c, sender) in clients {
        let (n, during_outage) = sender.await?;
        results[setting].sent += n;
        results[setting].sent_during_outage += during_outage;
        sent.push((setting, c, n));
    }
    // Everything acknowledged, then a moment for the tap.
    for (_, c, _) in &sent {
        timeout(WAIT, async {
            while c.metrics().queue_depth > 0 {
                sleep(Duration::from_millis(10)).await;
            }
        })
        .await?;
    }
    sleep(Duration::from_millis(200)).await;
    let mut seen: HashMap<String, u32> = HashMap::new();
    while let Ok(d) = delivered.try_recv() {
        if let Payload::Text(t) = d.payload {
            *seen.entry(t.to_string()).or_default() += 1;
        }
    }
    for (k, (setting, c, n)) in sent.iter().enumerate() {
        let k = k % PER_SETTING;
        for number in 1..=*n {
            match seen.get(&format!("{setting}-{k}-{number}")) {
                None => results[*setting].lost += 1,
                Some(times) => results[*setting].duplicated += u64::from(times - 1),
            }
        }
        c.close(1000, "done").await;
    }
    servers.kill(server).await?;
    Ok(results)
}

// ----- half-open ---------------------------------------------------------------------

/// Milliseconds from the freeze until each client left Connected, sorted.
async fn half_open(servers: &Servers) -> Result<Vec<u64>> {
    let hub = Arc::new(Hub::new());
    let server = servers.start(&hub, any_port()).await?;
    let mut clients = Vec::new();
    for _ in 0..FROZEN_CLIENTS {
        let client = Client::connect(config(server.addr(), BackoffConfig::default())?)?;
        wait_state(&client, |s| *s == State::Connected).await?;
        clients.push(client);
        sleep(STAGGER).await;
    }
    server.freeze();
    let frozen = Instant::now();
    let waits: Vec<_> = clients
        .iter()
        .map(|c| {
            let c = c.clone();
            tokio::spawn(async move {
                wait_state(&c, |s| *s != State::Connected).await?;
                Ok::<_, Box<dyn Error + Send + Sync>>(ms(frozen.elapsed()))
            })
        })
        .collect();
    let mut dead = Vec::new();
    for wait in waits {
        dead.push(wait.await??);
    }
    server.thaw();
    drop(clients);
    servers.kill(server).await?;
    dead.sort_unstable();
    Ok(dead)
}

// ----- herd --------------------------------------------------------------------------

struct Herd {
    server_peak: usize,
    client_peak: usize,
    all_ms: u64,
    median_ms: u64,
    p90_ms: u64,
}

/// What one herd client's events say: when it scheduled attempts, and when it connected.
#[derive(Default)]
struct Seen {
    attempts: Vec<Instant>,
    connected: Vec<Instant>,
}

async fn herd(servers: &Servers, backoff: BackoffConfig) -> Result<Herd> {
    let hub = Arc::new(Hub::new());
    let server = servers.start(&hub, any_port()).await?;
    let addr = server.addr();
    let mut clients = Vec::new();
    let mut seen = Vec::new();
    for _ in 0..HERD {
        let client = Client::connect(config(addr, backoff.clone())?)?;
        let log = Arc::new(Mutex::new(Seen::default()));
        let mut events = client.events();
        let l = log.clone();
        tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                let now = Instant::now();
                let mut l = l.lock().unwrap_or_else(|e| e.into_inner());
                match event {
                    Event::ReconnectScheduled { delay, .. } => l.attempts.push(now + delay),
                    Event::StateChanged {
                        to: State::Connected,
                        ..
                    } => l.connected.push(now),
                    _ => {}
                }
            }
        });
        clients.push(client);
        seen.push(log);
    }
    for c in &clients {
        wait_state(c, |s| *s == State::Connected).await?;
    }
    sleep(UPTIME).await;
    servers.kill(server).await?;
    for c in &clients {
        wait_state(c, |s| *s != State::Connected).await?;
    }
    sleep(OUTAGE).await;

    // The server's count of connection attempts (WebSocket upgrades: `total_connections`),
    // sampled from a thread of its own.
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (hub, sampling) = (hub.clone(), sampling.clone());
        std::thread::spawn(move || {
            let mut samples = Vec::new();
            let until = Instant::now() + WAIT;
            while sampling.load(Ordering::SeqCst) && Instant::now() < until {
                samples.push((Instant::now(), hub.metrics().total_connections));
                std::thread::sleep(SAMPLE_EVERY);
            }
            samples
        })
    };
    let server = servers.start(&hub, addr).await?;
    let back = Instant::now();
    timeout(WAIT, async {
        while clients.iter().any(|c| c.state() != State::Connected) {
            sleep(Duration::from_millis(10)).await;
        }
    })
    .await?;
    sleep(WINDOW).await;
    sampling.store(false, Ordering::SeqCst);
    let samples = sampler.join().map_err(|_| "the sampler panicked")?;

    // Attempts the server saw, spread over the samples' times: the count rose by `n`
    // between two samples, so `n` attempts in that interval, at its end (5 ms apart).
    let mut server_attempts = Vec::new();
    for pair in samples.windows(2) {
        let ((_, before), (at, after)) = (pair[0], pair[1]);
        if at >= back {
            server_attempts.extend(std::iter::repeat_n(at, (after - before) as usize));
        }
    }
    let mut client_attempts = Vec::new();
    let mut reconnect_ms = Vec::new();
    for log in &seen {
        let l = log.lock().unwrap_or_else(|e| e.into_inner());
        client_attempts.extend(l.attempts.iter().filter(|t| **t >= back));
        if let Some(t) = l.connected.iter().find(|t| **t >= back) {
            reconnect_ms.push(ms(t.duration_since(back)));
        }
    }
    client_attempts.sort_unstable();
    reconnect_ms.sort_unstable();
    if reconnect_ms.len() != HERD {
        return Err(format!("{} of {HERD} clients reconnected", reconnect_ms.len()).into());
    }
    drop(clients);
    servers.kill(server).await?;
    Ok(Herd {
        server_peak: peak(&server_attempts),
        client_peak: peak(&client_attempts),
        all_ms: reconnect_ms.last().copied().unwrap_or_default(),
        median_ms: reconnect_ms[HERD / 2],
        p90_ms: reconnect_ms[HERD * 9 / 10],
    })
}
