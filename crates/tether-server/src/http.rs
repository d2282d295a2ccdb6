//! The routes: WebSocket upgrades, HTTP polling, tokens, health and metrics.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{DefaultBodyLimit, Query, Request, State};
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::{Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tether_core::protocol::{decode_batch, encode_batch, Envelope, SessionSecret, SESSION_HEADER};
use tracing::{debug, warn};

use crate::hub::{PollError, Principal};
use crate::server::App;
use crate::token::{valid_user, TokenError, MAX_USER_LEN};
use crate::ws::{self, Mode};

type AppState = Arc<App>;

pub(crate) fn router(app: AppState) -> Router {
    let body_limit = app.config.max_poll_body_bytes;
    Router::new()
        .route("/ws", get(ws_protocol))
        .route("/echo", get(ws_echo))
        .route("/poll", post(poll))
        .route("/api/token", post(issue_token))
        .route("/api/health", get(health))
        .route("/api/websocket/metrics", get(metrics))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn_with_state(Arc::clone(&app), gate))
        .layer(middleware::from_fn(cors))
        .with_state(app)
}

/// While the server is frozen, requests wait here unanswered.
async fn gate(State(app): State<AppState>, request: Request, next: Next) -> Response {
    app.thawed().await;
    next.run(request).await
}

/// Permissive CORS, so browser pages on other origins (the demo, tests) can poll and
/// fetch tokens and metrics. Tokens travel in headers or the query, never in cookies.
async fn cors(request: Request, next: Next) -> Response {
    let mut response = if request.method() == Method::OPTIONS {
        StatusCode::NO_CONTENT.into_response()
    } else {
        next.run(request).await
    };
    let h = response.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST, OPTIONS"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("authorization, content-type, tether-session"),
    );
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("600"),
    );
    response
}

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "not found")
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(ErrorBody { error: message })).into_response()
}

/// Why a request has no principal.
#[derive(Debug)]
enum AuthError {
    Missing,
    Invalid(TokenError),
}

impl AuthError {
    fn into_response(self) -> Response {
        let message = match self {
            AuthError::Missing => "missing token".to_owned(),
            AuthError::Invalid(e) => e.to_string(),
        };
        let mut r = error(StatusCode::UNAUTHORIZED, &message);
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        r
    }
}

/// The caller: `Authorization: Bearer <token>` first, then `?access_token=`; without
/// either, an anonymous `dev-temp-…` user in dev mode.
fn authenticate(
    app: &App,
    headers: &HeaderMap,
    query_token: Option<&str>,
) -> Result<Principal, AuthError> {
    let header_token = match headers.get(header::AUTHORIZATION) {
        None => None,
        Some(value) => {
            let value = value
                .to_str()
                .map_err(|_| AuthError::Invalid(TokenError::Malformed))?;
            let (scheme, token) = value
                .split_once(' ')
                .ok_or(AuthError::Invalid(TokenError::Malformed))?;
            if !scheme.eq_ignore_ascii_case("bearer") {
                return Err(AuthError::Invalid(TokenError::Malformed));
            }
            Some(token.trim())
        }
    };
    match header_token.or(query_token) {
        Some(token) => {
            let claims = app.tokens.verify(token).map_err(AuthError::Invalid)?;
            Ok(Principal {
                user: claims.user.clone(),
                claims: Some(claims),
            })
        }
        None if app.config.dev_mode => Ok(Principal {
            user: crate::dev_user(),
            claims: None,
        }),
        None => Err(AuthError::Missing),
    }
}

/// The `room` query parameter: absent or empty means echo.
fn room_of(room: Option<String>) -> Result<Option<String>, &'static str> {
    match room {
        None => Ok(None),
        Some(r) if r.is_empty() => Ok(None),
        Some(r) if r.len() > MAX_USER_LEN || r.chars().any(char::is_control) => {
            Err("room names are 1–128 bytes without control characters")
        }
        Some(r) => Ok(Some(r)),
    }
}

#[derive(Deserialize)]
struct WsQuery {
    access_token: Option<String>,
    room: Option<String>,
}

async fn ws_protocol(
    State(app): State<AppState>,
    Query(q): Query<WsQuery>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    let room = match room_of(q.room) {
        Ok(r) => r,
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
    upgrade_socket(
        app,
        q.access_token,
        &headers,
        upgrade,
        Mode::Protocol { room },
    )
}

async fn ws_echo(
    State(app): State<AppState>,
    Query(q): Query<WsQuery>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    upgrade_socket(app, q.access_token, &headers, upgrade, Mode::Plain)
}

fn upgrade_socket(
    app: AppState,
    query_token: Option<String>,
    headers: &HeaderMap,
    upgrade: WebSocketUpgrade,
    mode: Mode,
) -> Response {
    app.hub.metrics.attempt();
    let principal = match authenticate(&app, headers, query_token.as_deref()) {
        Ok(p) => p,
        Err(e) => {
            app.hub.metrics.refused();
            debug!(reason = ?e, "WebSocket upgrade refused");
            return e.into_response();
        }
    };
    let limit = app.config.max_frame_bytes;
    let failed = Arc::clone(&app);
    upgrade
        .max_message_size(limit)
        .max_frame_size(limit)
        .on_failed_upgrade(move |e| {
            failed.hub.metrics.refused();
            warn!(error = %e, "WebSocket upgrade failed");
        })
        .on_upgrade(move |socket| ws::run(app, socket, principal, mode))
}

#[derive(Deserialize)]
struct PollQuery {
    client: Option<String>,
    op: Option<String>,
    /// The polling transport's number (its Hello's `attempt`).
    t: Option<u64>,
    wait_ms: Option<u64>,
    room: Option<String>,
    access_token: Option<String>,
}

/// `POST /poll?client=<hex>&op=send|recv&t=<transport>`, with the session's secret in
/// `Tether-Session` once a Welcome gave one: see PROTOCOL.md 3.2.
///
/// Numbered messages only ever travel in `op=recv` answers (and after a Hello, in the
/// Hello's own answer): a client may have a send and a recv in flight at once, and
/// their answers may arrive in either order, so splitting them could reorder messages.
async fn poll(
    State(app): State<AppState>,
    Query(q): Query<PollQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(client_id) = q
        .client
        .as_deref()
        .and_then(|c| u64::from_str_radix(c, 16).ok())
    else {
        return error(StatusCode::BAD_REQUEST, "client must be a hex client id");
    };
    let receive = match q.op.as_deref() {
        Some("send") => false,
        Some("recv") => true,
        _ => return error(StatusCode::BAD_REQUEST, "op must be send or recv"),
    };
    let Some(attempt) = q.t else {
        return error(
            StatusCode::BAD_REQUEST,
            "t must be the polling transport's number",
        );
    };
    let room = match room_of(q.room) {
        Ok(r) => r,
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
    let proof = match headers.get(SESSION_HEADER) {
        None => None,
        Some(value) => match SessionSecret::from_hex(value.as_bytes()) {
            Some(secret) => Some(secret),
            None => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "Tether-Session must be the session's secret: 32 hex digits",
                )
            }
        },
    };
    let envelopes = match decode_batch(&body).and_then(|frames| {
        frames
            .into_iter()
            .map(Envelope::decode)
            .collect::<Result<Vec<_>, _>>()
    }) {
        Ok(e) => e,
        Err(e) => return error(StatusCode::BAD_REQUEST, &format!("invalid poll body: {e}")),
    };
    let principal = match authenticate(&app, &headers, q.access_token.as_deref()) {
        Ok(p) => p,
        Err(e) => {
            if matches!(envelopes.first(), Some(Envelope::Hello { .. })) {
                app.hub.metrics.attempt();
                app.hub.metrics.refused();
            }
            return e.into_response();
        }
    };
    let check = |token: &str| app.tokens.verify(token);
    let exchange = match app.hub.poll_exchange(
        &principal,
        client_id,
        attempt,
        proof,
        room,
        envelopes,
        &app.config,
        &check,
    ) {
        Ok(x) => x,
        Err(e) => return poll_error(e),
    };
    let mut frames = exchange.frames;
    if receive {
        let hold = q.wait_ms.map_or(app.config.poll_hold, |ms| {
            app.config.poll_hold.min(Duration::from_millis(ms))
        });
        app.hub.poll_in_flight(exchange.conn, true);
        let held =
            hold_for_messages(&app, exchange.conn, &exchange.key, &exchange.notify, hold).await;
        app.hub.poll_in_flight(exchange.conn, false);
        match held {
            Ok(pending) => frames.extend(pending),
            Err(e) => return poll_error(e),
        }
        // A freeze that began while the request was held still answers nothing.
        app.thawed().await;
    }
    (
        [(header::CONTENT_TYPE, "application/octet-stream")],
        encode_batch(&frames),
    )
        .into_response()
}

/// Waits up to `hold` for messages for a polling transport.
async fn hold_for_messages(
    app: &App,
    conn: crate::hub::ConnId,
    key: &crate::hub::SessionKey,
    notify: &tokio::sync::Notify,
    hold: Duration,
) -> Result<Vec<tether_core::Payload>, PollError> {
    let deadline = crate::after(Instant::now(), hold);
    loop {
        let pending = app.hub.take_pending(conn, key)?;
        if !pending.is_empty() || Instant::now() >= deadline || app.shutdown.get() {
            return Ok(pending);
        }
        tokio::select! {
            () = notify.notified() => {}
            () = tokio::time::sleep_until(deadline.into()) => {}
            () = app.shutdown.wait(true) => {}
        }
    }
}

fn poll_error(e: PollError) -> Response {
    match e {
        PollError::NoTransport => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "no polling transport for this client: start one with Hello",
        ),
        PollError::Replaced => error(
            StatusCode::CONFLICT,
            "replaced by a newer connection of the same user",
        ),
        PollError::Stale => error(
            StatusCode::GONE,
            "stale transport: the client has started a newer one",
        ),
        PollError::Protocol(reason) => error(
            StatusCode::BAD_REQUEST,
            &format!("protocol error: {reason}"),
        ),
        PollError::Unauthorized => error(StatusCode::UNAUTHORIZED, "refreshed token rejected"),
        PollError::Forbidden => error(StatusCode::FORBIDDEN, "refreshed token names another user"),
    }
}

#[derive(Deserialize)]
struct TokenRequest {
    user: String,
    ttl_secs: Option<u64>,
}

#[derive(Serialize)]
struct TokenResponse {
    token: String,
    expires_in: u64,
}

/// `POST /api/token`: open to anyone, for tests and demos (this is a reference server).
async fn issue_token(State(app): State<AppState>, Json(request): Json<TokenRequest>) -> Response {
    if !valid_user(&request.user) {
        return error(
            StatusCode::BAD_REQUEST,
            "user must be 1–128 bytes, without control characters or the dev-temp- prefix",
        );
    }
    let ttl = request
        .ttl_secs
        .map_or(app.config.token_ttl, Duration::from_secs);
    if ttl.is_zero() || ttl > app.config.max_token_ttl {
        return error(
            StatusCode::BAD_REQUEST,
            &format!(
                "ttl_secs must be between 1 and {}",
                app.config.max_token_ttl.as_secs()
            ),
        );
    }
    match app.tokens.issue(&request.user, ttl) {
        Ok(token) => Json(TokenResponse {
            token,
            expires_in: ttl.as_secs(),
        })
        .into_response(),
        Err(e) => error(StatusCode::BAD_REQUEST, &e.to_string()),
    }
}

#[derive(Serialize)]
struct Health {
    status: &'static str,
    uptime_secs: u64,
}

async fn health(State(app): State<AppState>) -> Json<Health> {
    Json(Health {
        status: "ok",
        uptime_secs: app.started.elapsed().as_secs(),
    })
}

async fn metrics(State(app): State<AppState>) -> Response {
    Json(app.hub.metrics()).into_response()
}
