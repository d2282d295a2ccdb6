//! Tether's native client against a raw tokio-tungstenite client, on 127.0.0.1: pipelined
//! throughput, sequential round trips, and memory per idle client. Not a test: run with
//! `cargo bench -p tether-native --bench compare`; BENCHMARKS.md says how to read it.
//!
//! Three process roles share this binary, chosen by `TETHER_BENCH_ROLE`:
//! - (unset) the bench: starts a server child, measures, starts an idle child per
//!   variant, prints the figures and the `ratio` line;
//! - `server`: the reference server (`/echo`, `/ws`, dev mode) and a minimal
//!   tokio-tungstenite echo server, until its stdin closes;
//! - `idle`: opens `IDLE_CLIENTS` clients of one variant and reports its own RSS before
//!   and after, so that neither the server nor earlier variants (whose freed memory the
//!   allocator keeps) pollute the figure.

use std::alloc::{GlobalAlloc, Layout, System};
use std::error::Error;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicIsize, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{FutureExt, SinkExt, StreamExt};
use tether_core::{Config, Event, SendError, State};
use tether_native::Client;
use tether_server::{Hub, Server, ServerConfig};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

type Result<T, E = Box<dyn Error + Send + Sync>> = std::result::Result<T, E>;

/// Messages of each throughput run.
const MESSAGES: usize = 100_000;
/// Throughput rounds; each client's best counts.
const THROUGHPUT_RUNS: usize = 5;
/// Round trips measured, after `WARMUP` unmeasured ones.
const ROUND_TRIPS: usize = 10_000;
const WARMUP: usize = 1_000;
const BLOCK: usize = 1_000;
/// Idle clients per memory variant, opened `BATCH` at a time.
const IDLE_CLIENTS: usize = 1_000;
const BATCH: usize = 100;
/// How long idle clients sit before the second RSS reading: longer than the heartbeat
/// interval (4 s) and the server's latency probe (5 s), so both have run.
const SETTLE: Duration = Duration::from_secs(6);
/// Bound of every wait.
const WAIT: Duration = Duration::from_secs(60);
/// 64 bytes.
const PAYLOAD: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const ROLE: &str = "TETHER_BENCH_ROLE";

fn main() -> Result<()> {
    match std::env::var(ROLE).as_deref() {
        Ok("server") => runtime()?.block_on(serve()),
        Ok("idle") => {
            let variant = std::env::var("TETHER_BENCH_VARIANT")?;
            let url = std::env::var("TETHER_BENCH_URL")?;
            runtime()?.block_on(idle(&variant, &url))
        }
        // On a worker, as an application's tasks are.
        _ => runtime()?.block_on(async { tokio::spawn(bench()).await? }),
    }
}

/// Two workers, as on the project machine, whatever the core count.
fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

// ----- the bench ---------------------------------------------------------------------

async fn bench() -> Result<()> {
    let server = ServerChild::start()?;
    let (reference, minimal) = (server.reference, server.minimal);
    println!(
        "compare: reference server {reference}, minimal echo server {minimal} (child process pid {})",
        server.child.id()
    );
    let echo = format!("ws://{reference}/echo");
    let minimal_echo = format!("ws://{minimal}/");
    let ws = format!("ws://{reference}/ws");

    // Every client is measured in turn, round after round, so that whatever else the
    // machine does falls on all of them alike.
    println!(
        "throughput: {MESSAGES} pipelined 64-byte messages, best of {THROUGHPUT_RUNS} interleaved rounds"
    );
    let peers = [
        Peer::Raw(echo.clone(), WebSocketConfig::default()),
        Peer::Raw(echo.clone(), read_buffer_4k()),
        Peer::Plain(echo.clone()),
        Peer::Protocol(ws.clone()),
        Peer::Raw(minimal_echo.clone(), WebSocketConfig::default()),
        Peer::Plain(minimal_echo.clone()),
    ];
    let names = [
        "raw tokio-tungstenite   /echo  ",
        "raw, 4 KiB read buffer  /echo  ",
        "tether plain            /echo  ",
        "tether protocol         /ws    ",
        "raw tokio-tungstenite   minimal",
        "tether plain            minimal",
    ];
    let server_pid = server.child.id();
    let mut best = [Throughput::default(); 6];
    for _ in 0..THROUGHPUT_RUNS {
        for (b, peer) in best.iter_mut().zip(&peers) {
            let (client_cpu, server_cpu) = (cpu_ns(std::process::id())?, cpu_ns(server_pid)?);
            let rate = peer.throughput().await?;
            if rate > b.rate {
                let per_message = |before, now| (now - before) as f64 / MESSAGES as f64;
                *b = Throughput {
                    rate,
                    client_ns: per_message(client_cpu, cpu_ns(std::process::id())?),
                    server_ns: per_message(server_cpu, cpu_ns(server_pid)?),
                };
            }
        }
    }
    for (name, b) in names.iter().zip(best) {
        println!(
            "  {name} {:>9.0} msg/s   CPU per message: client {:>5.0} ns, server {:>5.0} ns",
            b.rate, b.client_ns, b.server_ns
        );
    }
    let [raw, _, plain, protocol, ..] = best.map(|b| b.rate);
    // One more round, not timed, with every allocation of this process (the clients')
    // counted.
    println!("allocations per message (client process, one more round)");
    for (name, peer) in names.iter().zip(&peers) {
        ALLOC_CALLS.store(0, Ordering::SeqCst);
        COUNTING_CALLS.store(true, Ordering::SeqCst);
        peer.throughput().await?;
        COUNTING_CALLS.store(false, Ordering::SeqCst);
        let calls = ALLOC_CALLS.load(Ordering::SeqCst);
        println!("  {name} {:>6.2}", calls as f64 / MESSAGES as f64);
    }

    println!(
        "round trips: {ROUND_TRIPS} sequential per client in interleaved blocks of {BLOCK}, after {WARMUP} unmeasured"
    );
    let mut rtt_peers = [
        Peer::Raw(echo.clone(), WebSocketConfig::default())
            .open()
            .await?,
        Peer::Plain(echo.clone()).open().await?,
        Peer::Protocol(ws.clone()).open().await?,
    ];
    let mut micros: [Vec<u64>; 3] = Default::default();
    for peer in &mut rtt_peers {
        peer.round_trips(WARMUP, &mut Vec::new()).await?;
    }
    for _ in 0..ROUND_TRIPS / BLOCK {
        for (peer, m) in rtt_peers.iter_mut().zip(&mut micros) {
            peer.round_trips(BLOCK, m).await?;
        }
    }
    for peer in rtt_peers {
        peer.close().await;
    }
    let [raw_rtt, plain_rtt, protocol_rtt] = micros.map(percentiles);
    for (name, r) in [
        ("raw tokio-tungstenite  /echo", &raw_rtt),
        ("tether plain           /echo", &plain_rtt),
        ("tether protocol        /ws  ", &protocol_rtt),
    ] {
        println!("  {name}    p50 {:>4} µs  p99 {:>4} µs", r.p50, r.p99);
    }

    println!("memory: {IDLE_CLIENTS} connected idle clients, each variant in its own process");
    let mut per_client = Vec::new();
    for (variant, url) in [
        ("raw-default", &echo),
        ("raw-4k", &echo),
        ("tether-protocol", &ws),
        ("tether-plain-heartbeat", &echo),
    ] {
        let m = idle_child(variant, url)?;
        println!(
            "  {variant:<23} {:>6.0} B/client RSS, {:>6.0} B/client heap; heap by size: {}",
            m.rss_per_client, m.heap_per_client, m.heap_by_size
        );
        per_client.push((variant, m.rss_per_client));
    }
    let rss = |name: &str| {
        per_client
            .iter()
            .find(|(v, _)| *v == name)
            .map_or(0.0, |(_, b)| *b)
    };
    server.stop();

    println!(
        "ratio throughput_plain={:.2} throughput_protocol={:.2} rtt_p50={:.2} bytes_per_client={:.0}",
        plain / raw,
        protocol / raw,
        plain_rtt.p50 as f64 / raw_rtt.p50 as f64,
        rss("tether-protocol"),
    );
    Ok(())
}

/// Plain mode, the defaults (no heartbeat in plain mode unless asked).
fn plain_config(url: &str) -> Result<Config> {
    Ok(Config::builder(url).build()?)
}

/// Protocol mode, the defaults: heartbeat on, 1000 messages retained at most.
fn protocol_config(url: &str) -> Result<Config> {
    Ok(Config::builder(url).protocol().build()?)
}

/// tokio-tungstenite's defaults but for a 4 KiB read buffer, the native transport's.
fn read_buffer_4k() -> WebSocketConfig {
    WebSocketConfig::default().read_buffer_size(4 * 1024)
}

async fn raw_connect(url: &str, config: WebSocketConfig) -> Result<WebSocketStream<TcpStream>> {
    let request = url.into_client_request()?;
    let host = request.uri().host().ok_or("no host")?;
    let port = request.uri().port_u16().ok_or("no port")?;
    let tcp = TcpStream::connect((host, port)).await?;
    // As the native transport does: small frames, latency first.
    tcp.set_nodelay(true)?;
    let (ws, _) = tokio_tungstenite::client_async_with_config(request, tcp, Some(config)).await?;
    Ok(ws)
}

/// Messages per second: `MESSAGES` fed and flushed once (what `send_all` does with a
/// ready stream), echoes counted by a reader task.
async fn raw_throughput(url: &str, config: WebSocketConfig) -> Result<f64> {
    let ws = raw_connect(url, config).await?;
    let (mut sink, mut stream) = ws.split();
    let start = Instant::now();
    let reader = tokio::spawn(async move {
        let mut n = 0;
        while n < MESSAGES {
            match stream.next().await {
                Some(Ok(Message::Text(_))) => n += 1,
                Some(Ok(Message::Close(frame))) => {
                    return Err(format!(
                        "the echo server closed after {n} echoes: {frame:?}"
                    ))
                }
                Some(Ok(_)) => {}
                other => return Err(format!("the echo connection ended: {other:?}")),
            }
        }
        Ok(Instant::now())
    });
    for _ in 0..MESSAGES {
        sink.feed(Message::text(PAYLOAD.to_owned())).await?;
    }
    sink.flush().await?;
    let end = timeout(WAIT, reader).await???;
    let _ = sink.close().await;
    Ok(MESSAGES as f64 / end.duration_since(start).as_secs_f64())
}

/// Messages per second through a Tether client: `send` in a loop, echoes counted from the
/// event stream. Protocol mode keeps the default queue limit (1000 retained, unacked
/// included): on `QueueFull` the sender waits for the next `Delivered`.
async fn tether_throughput(config: Config, protocol: bool) -> Result<f64> {
    let client = Client::builder(config)
        // Every echo is counted from the event stream: no burst may overflow it.
        .event_buffer(1 << 16)
        .spawn()?;
    wait_connected(&client).await?;
    let mut events = client.events();
    let delivered = Arc::new(Notify::new());
    let start = Instant::now();
    let reader = {
        let delivered = delivered.clone();
        tokio::spawn(async move {
            let mut n = 0;
            while n < MESSAGES {
                match events.recv().await {
                    Some(Event::Message(_)) => n += 1,
                    Some(Event::Delivered { .. }) => delivered.notify_one(),
                    Some(_) => {}
                    None => return Err("the client ended"),
                }
                if events.missed() > 0 {
                    return Err("the event reader fell behind");
                }
            }
            Ok(Instant::now())
        })
    };
    let mut sent = 0;
    while sent < MESSAGES {
        match client.send(PAYLOAD.to_owned()) {
            Ok(_) => sent += 1,
            Err(SendError::QueueFull { .. }) if protocol => {
                timeout(WAIT, delivered.notified()).await?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    let end = timeout(WAIT, reader).await???;
    client.close(1000, "done").await;
    Ok(MESSAGES as f64 / end.duration_since(start).as_secs_f64())
}

async fn wait_connected(client: &Client) -> Result<()> {
    let mut state = client.state_watch();
    timeout(WAIT, state.wait_for(|s| *s == State::Connected)).await??;
    Ok(())
}

struct Rtt {
    p50: u64,
    p99: u64,
}

fn percentiles(mut micros: Vec<u64>) -> Rtt {
    micros.sort_unstable();
    let at = |p: f64| micros[((micros.len() - 1) as f64 * p).round() as usize];
    Rtt {
        p50: at(0.50),
        p99: at(0.99),
    }
}

/// One throughput run: messages per second, and the CPU time (every thread, from
/// connecting to closing) each process spent per message.
#[derive(Clone, Copy, Default)]
struct Throughput {
    rate: f64,
    client_ns: f64,
    server_ns: f64,
}

/// CPU time of every thread of process `pid` so far, in nanoseconds (schedstat).
fn cpu_ns(pid: u32) -> Result<u64> {
    let mut total = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        // A thread may end between the listing and the read.
        if let Ok(stat) = std::fs::read_to_string(task?.path().join("schedstat")) {
            total += stat
                .split_whitespace()
                .next()
                .ok_or("empty schedstat")?
                .parse::<u64>()?;
        }
    }
    Ok(total)
}

/// A client under measurement, and how it is made.
enum Peer {
    /// tokio-tungstenite with this configuration.
    Raw(String, WebSocketConfig),
    /// Tether in plain mode, the defaults.
    Plain(String),
    /// Tether in protocol mode, the defaults.
    Protocol(String),
}

impl Peer {
    async fn throughput(&self) -> Result<f64> {
        match self {
            Peer::Raw(url, config) => raw_throughput(url, *config).await,
            Peer::Plain(url) => tether_throughput(plain_config(url)?, false).await,
            Peer::Protocol(url) => tether_throughput(protocol_config(url)?, true).await,
        }
    }

    async fn open(&self) -> Result<Open> {
        Ok(match self {
            Peer::Raw(url, config) => Open::Raw(Box::new(raw_connect(url, *config).await?)),
            Peer::Plain(url) | Peer::Protocol(url) => {
                let config = match self {
                    Peer::Protocol(_) => protocol_config(url)?,
                    _ => plain_config(url)?,
                };
                let client = Client::connect(config)?;
                wait_connected(&client).await?;
                let events = client.events();
                Open::Tether(client, events)
            }
        })
    }
}

/// A connected [`Peer`], for round trips.
enum Open {
    Raw(Box<WebSocketStream<TcpStream>>),
    Tether(Client, tether_native::Events),
}

impl Open {
    /// `n` round trips: send one message, wait for its echo; microseconds each.
    async fn round_trips(&mut self, n: usize, micros: &mut Vec<u64>) -> Result<()> {
        for _ in 0..n {
            let start = Instant::now();
            match self {
                Open::Raw(ws) => {
                    ws.send(Message::text(PAYLOAD.to_owned())).await?;
                    loop {
                        match timeout(WAIT, ws.next()).await? {
                            Some(Ok(Message::Text(_))) => break,
                            Some(Ok(_)) => {}
                            _ => return Err("the echo connection ended".into()),
                        }
                    }
                }
                Open::Tether(client, events) => {
                    client.send(PAYLOAD.to_owned())?;
                    loop {
                        match timeout(WAIT, events.recv()).await? {
                            Some(Event::Message(_)) => break,
                            Some(_) => {}
                            None => return Err("the client ended".into()),
                        }
                    }
                }
            }
            micros.push(start.elapsed().as_micros() as u64);
        }
        Ok(())
    }

    async fn close(self) {
        match self {
            Open::Raw(mut ws) => {
                let _ = SinkExt::close(&mut ws).await;
            }
            Open::Tether(client, _) => client.close(1000, "done").await,
        }
    }
}

// ----- the server child --------------------------------------------------------------

struct ServerChild {
    child: Child,
    reference: SocketAddr,
    minimal: SocketAddr,
}

impl ServerChild {
    fn start() -> Result<Self> {
        let mut child = Command::new(std::env::current_exe()?)
            .env(ROLE, "server")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let mut addrs = line.split_whitespace().filter_map(|w| w.split_once('='));
        let mut addr = |name: &str| -> Result<SocketAddr> {
            match addrs.next() {
                Some((n, a)) if n == name => Ok(a.parse()?),
                _ => Err(format!("the server child said {line:?}").into()),
            }
        };
        let reference = addr("reference")?;
        let minimal = addr("minimal")?;
        Ok(ServerChild {
            child,
            reference,
            minimal,
        })
    }

    /// Closes its stdin (it exits), then waits for it, boundedly.
    fn stop(mut self) {
        drop(self.child.stdin.take());
        for _ in 0..50 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn serve() -> Result<()> {
    let mut config = ServerConfig::default();
    config.bind = "127.0.0.1:0".parse()?;
    config.dev_mode = true;
    // Raw idle clients send nothing: keep them through the memory measurement.
    config.idle_limit = Duration::from_secs(600);
    // A pipelining client runs up to all its messages ahead of the server's writer; the
    // default (4096 queued frames) closes it with 1013 "client too slow".
    config.max_queued_frames = 2 * MESSAGES;
    // ... and as many bytes (payload plus envelope).
    config.max_queued_bytes = 2 * MESSAGES * (PAYLOAD.len() + 32);
    let server = Server::start(config, Arc::new(Hub::new())).await?;
    let minimal = TcpListener::bind("127.0.0.1:0").await?;
    println!(
        "reference={} minimal={}",
        server.addr(),
        minimal.local_addr()?
    );
    std::io::stdout().flush()?;
    tokio::spawn(minimal_echo(minimal));
    // Serve until the bench closes our stdin (or dies).
    tokio::task::spawn_blocking(|| {
        let _ = std::io::stdin().read_to_end(&mut Vec::new());
    })
    .await?;
    drop(server);
    Ok(())
}

/// The smallest fast echo server: echoes text and binary frames, flushing once per batch
/// of frames already read.
async fn minimal_echo(listener: TcpListener) {
    while let Ok((tcp, _)) = listener.accept().await {
        let _ = tcp.set_nodelay(true);
        tokio::spawn(async move {
            let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
                return;
            };
            while let Some(Ok(first)) = ws.next().await {
                let mut next = Some(first);
                for _ in 0..64 {
                    let Some(m) = next.take() else { break };
                    if (m.is_text() || m.is_binary()) && ws.feed(m).await.is_err() {
                        return;
                    }
                    match ws.next().now_or_never() {
                        Some(Some(Ok(m))) => next = Some(m),
                        Some(_) => return,
                        None => break,
                    }
                }
                if let Some(m) = next {
                    if (m.is_text() || m.is_binary()) && ws.feed(m).await.is_err() {
                        return;
                    }
                }
                if ws.flush().await.is_err() {
                    return;
                }
            }
        });
    }
}

// ----- the idle children -------------------------------------------------------------

struct IdleFigures {
    rss_per_client: f64,
    heap_per_client: f64,
    heap_by_size: String,
}

fn idle_child(variant: &str, url: &str) -> Result<IdleFigures> {
    let out = Command::new(std::env::current_exe()?)
        .env(ROLE, "idle")
        .env("TETHER_BENCH_VARIANT", variant)
        .env("TETHER_BENCH_URL", url)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!("idle child {variant} failed: {text}").into());
    }
    let field = |name: &str| -> Result<f64> {
        text.split_whitespace()
            .find_map(|w| w.strip_prefix(name)?.strip_prefix('='))
            .ok_or_else(|| format!("no {name} in {text:?}"))?
            .parse::<f64>()
            .map_err(Into::into)
    };
    let rss = field("rss_after")? - field("rss_before")?;
    let heap = field("heap")?;
    let by_size = text
        .split_once("by_size=")
        .map_or("", |(_, s)| s.trim())
        .replace(',', ", ");
    Ok(IdleFigures {
        rss_per_client: rss / IDLE_CLIENTS as f64,
        heap_per_client: heap / IDLE_CLIENTS as f64,
        heap_by_size: by_size,
    })
}

/// Opens `IDLE_CLIENTS` connected clients, lets them sit, and prints its RSS before and
/// after, the heap bytes they hold, and those bytes by allocation size (per client).
async fn idle(variant: &str, url: &str) -> Result<()> {
    let rss_before = rss_bytes()?;
    TRACKING.store(true, Ordering::SeqCst);
    let mut tether = Vec::new();
    let alive = Arc::new(AtomicUsize::new(0));
    for batch in 0..IDLE_CLIENTS / BATCH {
        let mut opening = Vec::new();
        for _ in 0..BATCH {
            match variant {
                "raw-default" | "raw-4k" => {
                    let config = if variant == "raw-4k" {
                        read_buffer_4k()
                    } else {
                        WebSocketConfig::default()
                    };
                    let (url, alive) = (url.to_owned(), alive.clone());
                    opening.push(tokio::spawn(async move {
                        let mut ws = raw_connect(&url, config).await?;
                        alive.fetch_add(1, Ordering::SeqCst);
                        // An idle client still reads: that answers the server's pings.
                        tokio::spawn(async move {
                            while let Some(Ok(_)) = ws.next().await {}
                            alive.fetch_sub(1, Ordering::SeqCst);
                        });
                        Ok::<_, Box<dyn Error + Send + Sync>>(())
                    }));
                }
                "tether-protocol" => {
                    tether.push(Client::connect(Config::builder(url).protocol().build()?)?);
                }
                "tether-plain-heartbeat" => {
                    let config = Config::builder(url)
                        .plain_heartbeat("ping", "pong")
                        .build()?;
                    tether.push(Client::connect(config)?);
                }
                _ => return Err(format!("unknown variant {variant}").into()),
            }
        }
        for task in opening {
            timeout(WAIT, task).await???;
        }
        for client in tether.iter().skip(batch * BATCH) {
            wait_connected(client).await?;
        }
    }
    tokio::time::sleep(SETTLE).await;
    let connected = if tether.is_empty() {
        alive.load(Ordering::SeqCst)
    } else {
        tether
            .iter()
            .filter(|c| c.state() == State::Connected)
            .count()
    };
    if connected != IDLE_CLIENTS {
        return Err(format!("only {connected} of {IDLE_CLIENTS} clients still connected").into());
    }
    let rss_after = rss_bytes()?;
    TRACKING.store(false, Ordering::SeqCst);
    let heap = LIVE_BYTES.load(Ordering::SeqCst);
    // The largest shares of the heap, as "size×allocations per client".
    let mut classes: Vec<(usize, isize)> = LIVE_BY_CLASS
        .iter()
        .enumerate()
        .map(|(class, n)| (class, n.load(Ordering::SeqCst)))
        .filter(|(_, n)| *n > 0)
        .collect();
    classes.sort_by_key(|(class, n)| std::cmp::Reverse(class_bytes(*class) as isize * n));
    let by_size: Vec<String> = classes
        .iter()
        .take(8)
        .map(|(class, n)| {
            let label = if *class == CLASSES - 1 {
                format!(">{}", class_bytes(*class - 1))
            } else {
                class_bytes(*class).to_string()
            };
            format!("{label}×{:.2}", *n as f64 / IDLE_CLIENTS as f64)
        })
        .collect();
    println!(
        "rss_before={rss_before} rss_after={rss_after} heap={heap} by_size={}",
        by_size.join(",")
    );
    std::io::stdout().flush()?;
    // Exit without tearing 1000 clients down one by one.
    std::process::exit(0);
}

/// Resident set size of this process, from /proc/self/status (VmRSS).
fn rss_bytes() -> Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .ok_or("no VmRSS")?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse::<u64>()?;
    Ok(kb * 1024)
}

// ----- heap accounting (idle children only) ------------------------------------------

/// Live heap bytes, and live allocations by size class, counted while `TRACKING` is on:
/// what an idle client's memory is made of; and allocation calls while `COUNTING_CALLS`
/// is on. Off, they cost two relaxed loads per call.
struct Counting;

static TRACKING: AtomicBool = AtomicBool::new(false);
/// Allocation calls (`alloc`, `alloc_zeroed`, `realloc`) while `COUNTING_CALLS` is on.
static COUNTING_CALLS: AtomicBool = AtomicBool::new(false);
static ALLOC_CALLS: AtomicUsize = AtomicUsize::new(0);
static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);
/// 16-byte classes up to 64 KiB, then one class for anything larger.
const CLASSES: usize = 4097;
static LIVE_BY_CLASS: [AtomicIsize; CLASSES] = [const { AtomicIsize::new(0) }; CLASSES];

fn class_of(size: usize) -> usize {
    size.div_ceil(16).min(CLASSES - 1)
}

fn class_bytes(class: usize) -> usize {
    class * 16
}

fn count(size: usize, delta: isize) {
    if delta > 0 && COUNTING_CALLS.load(Ordering::Relaxed) {
        ALLOC_CALLS.fetch_add(1, Ordering::Relaxed);
    }
    if TRACKING.load(Ordering::Relaxed) {
        LIVE_BYTES.fetch_add(delta * size as isize, Ordering::Relaxed);
        LIVE_BY_CLASS[class_of(size)].fetch_add(delta, Ordering::Relaxed);
    }
}

// SAFETY: every call is forwarded to the system allocator unchanged; the counting
// touches only atomics and never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size(), 1);
        System.alloc(layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout.size(), 1);
        System.alloc_zeroed(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count(layout.size(), -1);
        System.dealloc(ptr, layout);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(layout.size(), -1);
        count(new_size, 1);
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;
