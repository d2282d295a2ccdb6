//! `tether-server`: the reference server from the command line.
//!
//! Prints `listening on ADDR` on stdout (one line, flushed) as soon as it listens; logs
//! go to stderr. Ctrl-C or SIGTERM stops it gracefully (WebSockets closed with 1001).

use std::io::{IsTerminal as _, Write as _};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use tether_server::{Hub, Secret, Server, ServerConfig};
use tracing_subscriber::filter::Targets;
use tracing_subscriber::prelude::*;

/// Reference server of the Tether reconnecting WebSocket protocol.
#[derive(Parser, Debug)]
#[command(name = "tether-server", version)]
struct Args {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:8080")]
    bind: SocketAddr,
    /// HMAC secret for tokens (default: random, so tokens die with the process).
    #[arg(long, env = "TETHER_SECRET", hide_env_values = true)]
    secret: Option<String>,
    /// Accept clients without a token as anonymous dev-temp-<id> users. Never in production.
    #[arg(long)]
    dev_allow_anonymous: bool,
    /// Close WebSockets silent for this many seconds (4408).
    #[arg(long, default_value_t = 30)]
    idle_secs: u64,
    /// Lifetime of tokens from POST /api/token that name none, in seconds.
    #[arg(long, default_value_t = 3600)]
    token_ttl_secs: u64,
    /// Forget sessions without a transport after this many seconds.
    #[arg(long, default_value_t = 300)]
    session_ttl_secs: u64,
    /// Longest hold of an op=recv poll, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    poll_hold_ms: u64,
    /// Largest WebSocket message accepted, in bytes (bigger: close 1009).
    #[arg(long, default_value_t = 1 << 20)]
    max_frame_bytes: usize,
    /// Log filter, e.g. `info` or `tether_server=debug,info`.
    #[arg(long, env = "RUST_LOG", default_value = "info")]
    log: String,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let filter: Targets = match args.log.parse() {
        Ok(f) => f,
        Err(e) => {
            eprintln!("invalid --log filter: {e}");
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::stderr().is_terminal())
                .with_filter(filter),
        )
        .init();

    let mut config = ServerConfig::default();
    config.bind = args.bind;
    match args.secret {
        Some(s) => config.secret = Secret::new(s),
        None => tracing::warn!(
            "no --secret or TETHER_SECRET: using a random one, tokens will not survive a restart"
        ),
    }
    config.dev_mode = args.dev_allow_anonymous;
    config.idle_limit = Duration::from_secs(args.idle_secs);
    config.token_ttl = Duration::from_secs(args.token_ttl_secs);
    config.max_token_ttl = config.max_token_ttl.max(config.token_ttl);
    config.session_ttl = Duration::from_secs(args.session_ttl_secs);
    config.poll_hold = Duration::from_millis(args.poll_hold_ms);
    config.max_frame_bytes = args.max_frame_bytes;

    let server = match Server::start(config, Arc::new(Hub::new())).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("tether-server: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "listening on {}", server.addr());
    let _ = stdout.flush();
    drop(stdout);

    stop_signal().await;
    server.shutdown().await;
    ExitCode::SUCCESS
}

/// Ctrl-C, or SIGTERM on Unix.
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
