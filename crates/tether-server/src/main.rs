//! `tether-server`: the reference server from the command line.
//!
//! Prints `listening on ADDR` on stdout (one line, flushed) as soon as it listens; logs
//! go to stderr. Ctrl-C or SIGTERM drains it: it stops listening, closes every
//! WebSocket with 1012 after a retry hint spread over `--drain-window` (default 10s),
//! answers polls with 503 and `Retry-After`, and exits once every client is gone or the
//! window (plus `close_grace`) is over. A second Ctrl-C or SIGTERM during the drain
//! stops it at once (every socket dropped).
//!
//! With `--admin ADDR` (a loopback address; for tests and demos only; it needs
//! `--admin-token`) it also prints `admin listening on ADDR` and serves there, to
//! requests with `Authorization: Bearer <admin token>` only (401 otherwise; a cross-site
//! form cannot set that header):
//!
//! | route | what |
//! |---|---|
//! | `POST /restart?down_ms=N` | kill the server as if the process died (listener and every socket dropped, no close frames), wait N ms (default 1000), listen again on the same address with the same sessions; answers once listening |
//! | `POST /stop`, `POST /start` | the two halves of a restart, for a test that acts while the server is down |
//! | `POST /freeze`, `POST /thaw` | stop reading and answering anything while every TCP connection stays open (a half-open server, as clients see it), then serve again; `{"frozen":bool}` (409 while stopped) |
//! | `GET /delivered` | `{"total":N,"texts":{"text":count,…}}`: every client message delivered to the application (exactly once per message sent, unless a session was lost), counted since the start |

use std::collections::HashMap;
use std::io::{IsTerminal as _, Write as _};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::extract::{Query, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse as _, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use clap::Parser;
use serde::Deserialize;
use serde_json::{json, Value};
use tether_core::Payload;
use tether_server::{Hub, PublicKey, RunningServer, Secret, Server, ServerConfig, ServerError};
use tracing::warn;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::prelude::*;

/// Reference server of the Tether reconnecting WebSocket protocol.
#[derive(Parser, Debug)]
#[command(name = "tether-server", version)]
struct Args {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:8080")]
    bind: SocketAddr,
    /// HS256 secret for tokens (default: random, so tokens die with the process).
    #[arg(long, env = "TETHER_SECRET", hide_env_values = true)]
    secret: Option<String>,
    /// PEM public key (RSA or EC P-256) checking RS256/ES256 tokens; repeatable.
    #[arg(long, value_name = "FILE")]
    jwt_public_key: Vec<std::path::PathBuf>,
    /// JWKS document whose RS256/ES256 keys check tokens; repeatable.
    #[arg(long, value_name = "FILE")]
    jwks: Vec<std::path::PathBuf>,
    /// Required `iss` of every token.
    #[arg(long)]
    token_issuer: Option<String>,
    /// Required `aud` of every token.
    #[arg(long)]
    token_audience: Option<String>,
    /// Clock skew allowed on `exp` and `nbf`, in seconds.
    #[arg(long, default_value_t = 30)]
    token_leeway_secs: u64,
    /// The admin credential (`Authorization: Bearer <it>`) for POST /api/token, the
    /// per-connection metrics and the --admin routes.
    #[arg(long, env = "TETHER_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Serve POST /api/token (token minting for tests and demos; needs --admin-token).
    #[arg(long)]
    enable_token_endpoint: bool,
    /// Dev mode: accept clients without a token as anonymous dev-temp-<id> users and
    /// allow http://localhost:* and http://127.0.0.1:* origins. Never in production.
    #[arg(long, alias = "dev")]
    dev_allow_anonymous: bool,
    /// An origin (scheme://host[:port]) allowed to connect from a browser; repeatable.
    #[arg(long, value_name = "ORIGIN")]
    allow_origin: Vec<String>,
    /// TLS is terminated in front of this server: no warning for a non-loopback --bind.
    #[arg(long)]
    behind_tls: bool,
    /// Most open TCP connections (HTTP and WebSocket); more are closed at accept.
    #[arg(long, default_value_t = 10_000)]
    max_connections: usize,
    /// Seconds a client may take to send a request's headers.
    #[arg(long, default_value_t = 10)]
    header_timeout_secs: u64,
    /// Seconds a client may take to send a request's body.
    #[arg(long, default_value_t = 10)]
    body_timeout_secs: u64,
    /// Frames queued for one socket before it is closed as too slow (1013).
    #[arg(long, default_value_t = 4096)]
    max_queued_frames: usize,
    /// Bytes queued for one socket before it is closed as too slow (1013).
    #[arg(long, default_value_t = 4 << 20)]
    max_queued_bytes: usize,
    /// Unacknowledged messages kept per session for resend.
    #[arg(long, default_value_t = 1024)]
    resume_max_messages: usize,
    /// Bytes of unacknowledged messages kept per session for resend.
    #[arg(long, default_value_t = 1 << 20)]
    resume_max_bytes: usize,
    /// Bytes of every session's resend buffer together (then the oldest detached
    /// sessions are dropped).
    #[arg(long, default_value_t = 64 << 20)]
    resume_budget_bytes: usize,
    /// Sessions kept per user.
    #[arg(long, default_value_t = 8)]
    max_sessions_per_user: usize,
    /// Largest poll request body, in bytes (bigger: 413).
    #[arg(long, default_value_t = 4 << 20)]
    max_poll_body_bytes: usize,
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
    /// Share sessions between instances through Redis, e.g. redis://127.0.0.1:6379
    /// (default: in this process only).
    #[arg(long, value_name = "URL")]
    store: Option<String>,
    /// This instance's id (health, metrics, owner of its sessions in the store).
    #[arg(long, value_name = "ID")]
    instance_id: Option<String>,
    /// On SIGTERM or Ctrl-C, the window over which clients are told to come back (to
    /// another instance behind the balancer): `500ms`, `10s`, `2m`, or plain seconds.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    drain_window: Duration,
    /// Log filter, e.g. `info` or `tether_server=debug,info`.
    #[arg(long, env = "RUST_LOG", default_value = "info")]
    log: String,
    /// Serve the admin routes (restart keeping sessions, delivered counts) on this
    /// loopback address, e.g. 127.0.0.1:0. For tests and demos only: whoever reaches it
    /// can cut every connection.
    #[arg(long, value_name = "ADDR")]
    admin: Option<SocketAddr>,
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
    for path in &args.jwt_public_key {
        match std::fs::read(path).map(|pem| PublicKey::from_pem(&pem)) {
            Ok(Ok(key)) => config.public_keys.push(key),
            Ok(Err(e)) => return usage(&format!("--jwt-public-key {}: {e}", path.display())),
            Err(e) => return usage(&format!("--jwt-public-key {}: {e}", path.display())),
        }
    }
    for path in &args.jwks {
        match std::fs::read(path).map(|json| PublicKey::from_jwks(&json)) {
            Ok(Ok(keys)) => config.public_keys.extend(keys),
            Ok(Err(e)) => return usage(&format!("--jwks {}: {e}", path.display())),
            Err(e) => return usage(&format!("--jwks {}: {e}", path.display())),
        }
    }
    config.token_issuer = args.token_issuer;
    config.token_audience = args.token_audience;
    config.token_leeway = Duration::from_secs(args.token_leeway_secs);
    config.admin_token = args.admin_token.map(Secret::new);
    config.token_endpoint = args.enable_token_endpoint;
    config.dev_mode = args.dev_allow_anonymous;
    config.allowed_origins = args.allow_origin;
    config.behind_tls = args.behind_tls;
    config.max_connections = args.max_connections;
    config.header_read_timeout = Duration::from_secs(args.header_timeout_secs);
    config.body_read_timeout = Duration::from_secs(args.body_timeout_secs);
    config.max_queued_frames = args.max_queued_frames;
    config.max_queued_bytes = args.max_queued_bytes;
    config.resume_limits.max_messages = args.resume_max_messages;
    config.resume_limits.max_bytes = args.resume_max_bytes;
    config.resume_budget_bytes = args.resume_budget_bytes;
    config.max_sessions_per_user = args.max_sessions_per_user;
    config.max_poll_body_bytes = args.max_poll_body_bytes;
    config.idle_limit = Duration::from_secs(args.idle_secs);
    config.token_ttl = Duration::from_secs(args.token_ttl_secs);
    config.max_token_ttl = config.max_token_ttl.max(config.token_ttl);
    config.session_ttl = Duration::from_secs(args.session_ttl_secs);
    config.poll_hold = Duration::from_millis(args.poll_hold_ms);
    config.max_frame_bytes = args.max_frame_bytes;
    config.store = args.store;
    config.instance_id = args.instance_id;

    if args.admin.is_some_and(|a| !a.ip().is_loopback()) {
        return usage("--admin must be a loopback address");
    }
    if args.admin.is_some() && config.admin_token.is_none() {
        return usage("--admin needs --admin-token (or TETHER_ADMIN_TOKEN)");
    }
    if let Err(e) = config.validate() {
        return usage(&e.to_string());
    }
    let hub = match &config.store {
        None => Arc::new(Hub::new()),
        Some(url) => match Hub::with_redis(url, config.instance_id.as_deref()).await {
            Ok(hub) => hub,
            Err(e) => {
                eprintln!("tether-server: {e}");
                return ExitCode::FAILURE;
            }
        },
    };
    let server = match Server::start(config.clone(), Arc::clone(&hub)).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("tether-server: {e}");
            return ExitCode::FAILURE;
        }
    };
    announce(&format!("listening on {}", server.addr()));

    let Some(admin_addr) = args.admin else {
        stop_signal().await;
        drain_then_stop(server, args.drain_window).await;
        return ExitCode::SUCCESS;
    };
    // A restart listens on the port the first start got.
    config.bind = server.addr();
    let admin = Arc::new(Admin::new(config, hub, server));
    let listener = match tokio::net::TcpListener::bind(admin_addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("tether-server: cannot listen on --admin {admin_addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Ok(addr) = listener.local_addr() {
        announce(&format!("admin listening on {addr}"));
    }
    let routes = Router::new()
        .route("/restart", post(restart))
        .route("/stop", post(stop))
        .route("/start", post(start))
        .route("/freeze", post(freeze))
        .route("/thaw", post(thaw))
        .route("/delivered", get(delivered))
        .layer(middleware::from_fn_with_state(
            Arc::clone(&admin),
            admin_only,
        ))
        .with_state(Arc::clone(&admin));
    tokio::select! {
        () = stop_signal() => {}
        r = axum::serve(listener, routes) => {
            if let Err(e) = r {
                eprintln!("tether-server: admin listener failed: {e}");
            }
        }
    }
    if let Some(server) = admin.server.lock().await.take() {
        drain_then_stop(server, args.drain_window).await;
    }
    ExitCode::SUCCESS
}

/// After the first stop signal: drain over `window`, then stop; a second signal during
/// the drain stops at once.
async fn drain_then_stop(server: RunningServer, window: Duration) {
    let interrupted = tokio::select! {
        _ = server.drain(window) => false,
        () = stop_signal() => true,
    };
    if interrupted {
        warn!("second stop signal: stopping now");
        server.kill().await;
    } else {
        server.shutdown().await;
    }
}

/// `500ms`, `10s`, `2m`, or plain seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let n: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration such as 500ms, 10s or 2m"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" => n
            .checked_mul(60)
            .map(Duration::from_secs)
            .ok_or_else(|| format!("`{text}` is too long")),
        _ => Err(format!("`{text}`: the unit must be ms, s or m")),
    }
}

fn usage(message: &str) -> ExitCode {
    eprintln!("tether-server: {message}");
    ExitCode::from(2)
}

/// Every admin route needs `Authorization: Bearer <admin token>`: a header no
/// cross-site form or simple request can carry.
async fn admin_only(State(admin): AdminState, request: Request, next: Next) -> Response {
    let allowed = admin.config.admin_token.as_ref().is_some_and(|expected| {
        request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .is_some_and(|(scheme, token)| {
                scheme.eq_ignore_ascii_case("bearer") && expected.matches(token.trim().as_bytes())
            })
    });
    if !allowed {
        return (StatusCode::UNAUTHORIZED, "the admin token is required").into_response();
    }
    next.run(request).await
}

/// One line on stdout, flushed at once: scripts wait for it.
fn announce(line: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{line}");
    let _ = stdout.flush();
}

/// What the admin routes act on.
struct Admin {
    config: ServerConfig,
    hub: Arc<Hub>,
    /// `None` while stopped.
    server: tokio::sync::Mutex<Option<RunningServer>>,
    delivered: Arc<Mutex<Delivered>>,
}

#[derive(Default)]
struct Delivered {
    total: u64,
    texts: HashMap<String, u64>,
}

impl Admin {
    fn new(config: ServerConfig, hub: Arc<Hub>, server: RunningServer) -> Self {
        let delivered = Arc::new(Mutex::new(Delivered::default()));
        let mut tap = hub.tap();
        let counts = Arc::clone(&delivered);
        tokio::spawn(async move {
            while let Some(d) = tap.recv().await {
                let mut c = counts.lock().unwrap_or_else(PoisonError::into_inner);
                c.total += 1;
                if let Payload::Text(text) = d.payload {
                    *c.texts.entry(text).or_default() += 1;
                }
            }
        });
        Admin {
            config,
            hub,
            server: tokio::sync::Mutex::new(Some(server)),
            delivered,
        }
    }

    /// Drops the listener and every socket at once; sessions stay in the hub.
    async fn stop(&self) {
        if let Some(server) = self.server.lock().await.take() {
            server.kill().await;
        }
    }

    /// Listens again on the same address with the same hub (if stopped).
    async fn start(&self) -> Result<(), ServerError> {
        let mut server = self.server.lock().await;
        if server.is_none() {
            *server = Some(Server::start(self.config.clone(), Arc::clone(&self.hub)).await?);
        }
        Ok(())
    }

    /// Freezes or thaws the running server (see `RunningServer::freeze`).
    async fn set_frozen(&self, frozen: bool) -> Answer {
        let server = self.server.lock().await;
        let Some(server) = server.as_ref() else {
            return Err((StatusCode::CONFLICT, "the server is stopped".to_owned()));
        };
        if frozen {
            server.freeze();
        } else {
            server.thaw();
        }
        tracing::info!(frozen, "admin: freeze");
        Ok(Json(json!({ "frozen": server.is_frozen() })))
    }

    fn answer(&self, started: Result<(), ServerError>) -> Answer {
        started.map_err(|e| (StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
        Ok(Json(
            json!({ "listening": true, "addr": self.config.bind.to_string() }),
        ))
    }
}

type AdminState = State<Arc<Admin>>;
type Answer = Result<Json<Value>, (StatusCode, String)>;

async fn stop(State(admin): AdminState) -> Json<Value> {
    admin.stop().await;
    Json(json!({ "listening": false }))
}

async fn start(State(admin): AdminState) -> Answer {
    admin.answer(admin.start().await)
}

async fn freeze(State(admin): AdminState) -> Answer {
    admin.set_frozen(true).await
}

async fn thaw(State(admin): AdminState) -> Answer {
    admin.set_frozen(false).await
}

#[derive(Deserialize)]
struct RestartQuery {
    down_ms: Option<u64>,
}

async fn restart(State(admin): AdminState, Query(q): Query<RestartQuery>) -> Answer {
    let down_ms = q.down_ms.unwrap_or(1000).min(60_000);
    tracing::info!(down_ms, "admin: restart");
    admin.stop().await;
    tokio::time::sleep(Duration::from_millis(down_ms)).await;
    admin.answer(admin.start().await)
}

async fn delivered(State(admin): AdminState) -> Json<Value> {
    let d = admin
        .delivered
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    Json(json!({ "total": d.total, "texts": d.texts }))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_ms_s_m_or_plain_seconds() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("10h").is_err());
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration(&format!("{}m", u64::MAX)).is_err());
    }
}
