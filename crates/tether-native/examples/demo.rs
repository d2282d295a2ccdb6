//! The Tether demo (`cargo demo`): an embedded reference server and a native client in
//! protocol mode, put through real faults on 127.0.0.1:
//!
//! 1. steady traffic;
//! 2. the server killed and started again a second later (sessions kept);
//! 3. a half-open network: the connection stays open but nothing gets through;
//! 4. a token that expires and is refreshed on the open connection;
//! 5. WebSockets blocked: HTTP polling takes over, then the WebSocket comes back.
//!
//! It prints a line per change, and ends with one line
//! `summary: sent=N delivered=N lost=0 duplicated=0 reconnects=K fallback=used`, counted
//! by the server against what the client sent, and by the client against what the
//! server echoed. It exits non-zero if anything was lost or duplicated.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tether_native::{
    AuthConfig, Client, Config, Event, FallbackConfig, Instant, Metrics, Payload, SendError, State,
    Token,
};
use tether_server::{Hub, RunningServer, Secret, Server, ServerConfig, TokenAuthority};
use tether_testkit::{FaultProxy, Mode};
use tokio::sync::{mpsc, watch};
use tokio::time::{sleep, timeout};
use tracing_subscriber::EnvFilter;

/// Token lifetime: short, so the demo sees it refreshed (at half its life, since the
/// one-minute lead is longer than the whole lifetime).
const TOKEN_TTL: Duration = Duration::from_secs(12);
const SEND_EVERY: Duration = Duration::from_millis(40);

type Result<T, E = Box<dyn std::error::Error + Send + Sync>> = std::result::Result<T, E>;

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")),
        )
        .init();
    let start = tokio::time::Instant::now();
    let secret = Secret::random();
    let hub = Arc::new(Hub::new());
    let mut delivered = hub.tap();
    let server_config = {
        let mut c = ServerConfig::default();
        c.bind = "127.0.0.1:0".parse()?;
        c.secret = secret.clone();
        c
    };
    let server = Server::start(server_config.clone(), hub.clone()).await?;
    let server_addr = server.addr();
    // Every WebSocket goes through a fault proxy; polling goes straight to the server.
    let proxy = FaultProxy::start(server_addr)?;
    println!(
        "demo: reference server on {server_addr}, WebSocket through a fault proxy on {}",
        proxy.addr()
    );

    let authority = Arc::new(TokenAuthority::new(secret));
    let token_calls = Arc::new(AtomicU64::new(0));
    let config = Config::builder(format!("ws://{}/ws", proxy.addr()))
        .protocol()
        .auth(AuthConfig::default())
        .fallback(FallbackConfig::new(format!("http://{server_addr}/poll")))
        .build()?;
    let client = {
        let (authority, calls) = (authority.clone(), token_calls.clone());
        Client::builder(config)
            .token_provider(move || {
                let (authority, calls) = (authority.clone(), calls.clone());
                async move {
                    calls.fetch_add(1, Ordering::Relaxed);
                    let value = authority
                        .issue("demo", TOKEN_TTL)
                        .map_err(|e| e.to_string())?;
                    Ok(Token {
                        value,
                        expires_at: Some(Instant::now() + TOKEN_TTL),
                    })
                }
            })
            // The demo counts every echo from the event stream: let no burst overflow it.
            .event_buffer(1 << 16)
            .spawn()?
    };

    // What the client sees, on one task: prints the live line and counts echoes.
    let (seen_tx, seen_rx) = watch::channel(Seen::default());
    let printer = tokio::spawn(watch_events(client.clone(), start, seen_tx));

    // Steady traffic until told to stop.
    let (stop_tx, mut stop_rx) = mpsc::channel::<()>(1);
    let sender = {
        let client = client.clone();
        tokio::spawn(async move {
            let mut sent = 0u64;
            loop {
                tokio::select! {
                    _ = stop_rx.recv() => break,
                    _ = sleep(SEND_EVERY) => {}
                }
                match client.send(format!("c{}", sent + 1)) {
                    Ok(_) => sent += 1,
                    Err(SendError::QueueFull { .. }) => {} // try again next tick
                    Err(e) => {
                        eprintln!("demo: send failed: {e}");
                        break;
                    }
                }
            }
            sent
        })
    };

    let mut state = client.state_watch();
    phase(start, "steady traffic");
    sleep(Duration::from_secs(3)).await;

    phase(start, "the server is killed, and back after 1 s");
    server.kill().await;
    // A dead server refuses connections; the proxy in front of it does the same.
    proxy.set_mode(Mode::Refuse).await?;
    sleep(Duration::from_secs(1)).await;
    let server = restart(&server_config, server_addr, &hub).await?;
    proxy.set_mode(Mode::Pass).await?;
    wait_state(&mut state, State::Connected, Duration::from_secs(10)).await?;
    sleep(Duration::from_secs(1)).await;

    phase(
        start,
        "half-open: the network stalls, the socket stays open",
    );
    proxy.set_mode(Mode::Stall).await?;
    let stalled = tokio::time::Instant::now();
    // Disconnected passes at once into Reconnecting: wait for leaving Connected.
    timeout(
        Duration::from_secs(20),
        state.wait_for(|s| *s != State::Connected),
    )
    .await
    .map_err(|_| "the stalled socket was never declared dead")??;
    println!(
        "demo: half-open socket declared dead after {:.1} s",
        stalled.elapsed().as_secs_f64()
    );
    proxy.set_mode(Mode::Pass).await?;
    wait_state(&mut state, State::Connected, Duration::from_secs(10)).await?;

    phase(start, "token expiry: refreshed on the open connection");
    let mut seen = seen_rx.clone();
    let refreshes = seen.borrow().token_refreshes;
    timeout(TOKEN_TTL, seen.wait_for(|s| s.token_refreshes > refreshes))
        .await
        .map_err(|_| "no token refresh")??;
    sleep(Duration::from_secs(1)).await;

    phase(start, "WebSockets blocked: HTTP polling takes over");
    // A middlebox that kills every WebSocket it sees: connections are accepted, then reset.
    proxy.set_mode(Mode::Reset).await?;
    timeout(Duration::from_secs(15), seen.wait_for(|s| s.fallback_used))
        .await
        .map_err(|_| "no fallback")??;
    wait_state(&mut state, State::Connected, Duration::from_secs(10)).await?;
    sleep(Duration::from_secs(3)).await;
    phase(start, "WebSockets allowed again: upgrade back");
    proxy.set_mode(Mode::Pass).await?;
    timeout(Duration::from_secs(30), seen.wait_for(|s| s.upgraded_back))
        .await
        .map_err(|_| "no upgrade back")??;
    sleep(Duration::from_secs(2)).await;

    phase(start, "draining: every message acknowledged and echoed");
    stop_tx.send(()).await.ok();
    let sent = sender.await?;
    let mut server_got: HashMap<u64, u32> = HashMap::new();
    let drained = timeout(Duration::from_secs(15), async {
        loop {
            while let Ok(d) = delivered.try_recv() {
                if let Some(n) = number(&d.payload) {
                    *server_got.entry(n).or_default() += 1;
                }
            }
            let echoes = seen.borrow().echoes.len() as u64;
            if client.metrics().queue_depth == 0
                && server_got.len() as u64 >= sent
                && echoes >= server_got.len() as u64
            {
                break;
            }
            // Wake on the next echo, or look again shortly for acks and deliveries.
            let _ = timeout(Duration::from_millis(50), seen.changed()).await;
        }
    })
    .await;
    if drained.is_err() {
        eprintln!("demo: not everything drained within 15 s");
    }
    client.close(1000, "demo done").await;
    let metrics = client.metrics();
    let seen = seen_rx.borrow().clone();
    printer.abort();
    server.shutdown().await;
    proxy.shutdown().await;

    let delivered = server_got.len() as u64;
    let dup_server: u64 = server_got.values().map(|c| u64::from(c - 1)).sum();
    let dup_client: u64 = seen.echoes.values().map(|c| u64::from(c - 1)).sum();
    let lost_to_server = (1..=sent).filter(|n| !server_got.contains_key(n)).count() as u64;
    let lost_to_client = server_got
        .keys()
        .filter(|n| !seen.echoes.contains_key(n))
        .count() as u64;
    let lost = lost_to_server + lost_to_client;
    let duplicated = dup_server + dup_client;
    println!(
        "demo: {} token requests, {} token refreshes, {} echoes received, {:.1} s",
        token_calls.load(Ordering::Relaxed),
        seen.token_refreshes,
        seen.echoes.len(),
        start.elapsed().as_secs_f64()
    );
    println!(
        "summary: sent={sent} delivered={delivered} lost={lost} duplicated={duplicated} reconnects={} fallback={}",
        metrics.reconnects,
        if seen.fallback_used { "used" } else { "unused" }
    );
    if lost > 0 || duplicated > 0 || !seen.fallback_used {
        std::process::exit(1);
    }
    Ok(())
}

/// What the client saw, shared with the phases.
#[derive(Clone, Debug, Default)]
struct Seen {
    /// Echo number → how often it arrived.
    echoes: HashMap<u64, u32>,
    token_refreshes: u32,
    fallback_used: bool,
    upgraded_back: bool,
}

fn number(payload: &Payload) -> Option<u64> {
    match payload {
        Payload::Text(t) => t.strip_prefix('c')?.parse().ok(),
        Payload::Binary(_) => None,
    }
}

fn phase(start: tokio::time::Instant, what: &str) {
    println!("[{:>5.1}s] ---- {what} ----", start.elapsed().as_secs_f64());
}

async fn restart(config: &ServerConfig, addr: SocketAddr, hub: &Arc<Hub>) -> Result<RunningServer> {
    let mut config = config.clone();
    config.bind = addr;
    Ok(Server::start(config, hub.clone()).await?)
}

async fn wait_state(
    state: &mut watch::Receiver<State>,
    want: State,
    within: Duration,
) -> Result<()> {
    timeout(within, state.wait_for(|s| *s == want))
        .await
        .map_err(|_| format!("not {want} within {within:?}"))??;
    Ok(())
}

/// Prints one line per change, and counts echoes, refreshes and fallback.
async fn watch_events(client: Client, start: tokio::time::Instant, seen: watch::Sender<Seen>) {
    let mut events = client.events();
    while let Some(event) = events.recv().await {
        let what = match &event {
            Event::Message(p) => {
                if let Some(n) = number(p) {
                    seen.send_modify(|s| *s.echoes.entry(n).or_default() += 1);
                }
                continue;
            }
            Event::StateChanged { from, to } => format!("{from} -> {to}"),
            Event::Disconnected {
                cause,
                connected_for,
            } => format!("lost after {:.1} s: {cause}", connected_for.as_secs_f64()),
            Event::ReconnectScheduled { attempt, delay, .. } => {
                format!("retry {attempt} in {} ms", delay.as_millis())
            }
            Event::QualityChanged {
                quality,
                reliability,
            } => format!("quality {quality}, reliability {reliability}"),
            Event::FallbackChanged { active } => {
                if *active {
                    seen.send_modify(|s| s.fallback_used = true);
                    "HTTP polling fallback on".into()
                } else {
                    seen.send_modify(|s| s.upgraded_back = true);
                    "back on the WebSocket".into()
                }
            }
            Event::TokenRefreshed => {
                seen.send_modify(|s| s.token_refreshes += 1);
                "token refreshed on the open connection".into()
            }
            Event::SessionReset { resent } => format!("session reset, {resent} resent"),
            Event::Error(e) => format!("{e}"),
            Event::Stopped(reason) => format!("stopped: {reason}"),
            Event::AttemptStarted { attempt, kind } => {
                format!("attempt {attempt} ({})", kind.as_str())
            }
            Event::Delivered { .. } | Event::Dropped { .. } => continue,
            other => format!("{other:?}"),
        };
        println!("{} | {what}", live_line(start, &client.metrics()));
    }
}

fn live_line(start: tokio::time::Instant, m: &Metrics) -> String {
    let rtt = m.rtt.map_or("-".to_string(), |r| {
        format!("{:.1}ms", r.as_secs_f64() * 1000.0)
    });
    let quality = m.quality.map_or("-".to_string(), |q| q.to_string());
    format!(
        "[{:>5.1}s] state={:<12} attempt={} rtt={:<7} quality={:<9} queue={:<3}{}",
        start.elapsed().as_secs_f64(),
        m.state,
        m.attempt,
        rtt,
        quality,
        m.queue_depth,
        if m.fallback_active { " polling" } else { "" }
    )
}
