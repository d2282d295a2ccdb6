//! The routes: WebSocket upgrades, HTTP polling, tokens, health and metrics.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Query, Request, State};
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::{Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use http_body_util::BodyExt as _;
use serde::{Deserialize, Serialize};
use tether_core::protocol::{decode_batch, encode_batch, Envelope, SessionSecret, SESSION_HEADER};
use tracing::{debug, warn};

use tether_core::endpoint::{ConnId, PollError, PollRequest, SessionKey, TokenRefused};

use crate::hub::Principal;
use crate::server::{App, ConnSlot};
use crate::token::{valid_user, TokenError, MAX_USER_LEN};
use crate::ws::{self, Mode};

type AppState = Arc<App>;

pub(crate) fn router(app: AppState) -> Router {
    Router::new()
        .route("/ws", get(ws_protocol))
        .route("/echo", get(ws_echo))
        .route("/poll", post(poll))
        .route("/api/token", post(issue_token))
        .route("/api/health", get(health))
        .route("/api/websocket/metrics", get(metrics))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(Arc::clone(&app), gate))
        .layer(middleware::from_fn_with_state(Arc::clone(&app), cors))
        .with_state(app)
}

/// While the server is frozen, requests wait here unanswered.
async fn gate(State(app): State<AppState>, request: Request, next: Next) -> Response {
    app.thawed().await;
    next.run(request).await
}

/// Origins: a request whose `Origin` is not allowed ([`crate::ServerConfig::allowed_origins`],
/// same-origin, or localhost in dev mode) gets 403 before any route runs, so no
/// WebSocket, poll or token request of a foreign page gets through; an allowed one gets
/// CORS headers naming it (never `*`). Requests without `Origin` (native clients,
/// same-origin `GET`s) pass untouched. Credentials travel in headers or the query, never
/// in cookies.
async fn cors(State(app): State<AppState>, request: Request, next: Next) -> Response {
    let origin = match request.headers().get(header::ORIGIN) {
        None => None,
        Some(value) => {
            let host = request
                .headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok());
            match value.to_str() {
                Ok(origin) if app.config.origin_allowed(origin, host) => Some(value.clone()),
                _ => {
                    debug!(
                        path = request.uri().path(),
                        "request from a foreign origin refused"
                    );
                    if matches!(request.uri().path(), "/ws" | "/echo") {
                        app.hub.metrics.attempt();
                        app.hub.metrics.refused();
                    }
                    return error(StatusCode::FORBIDDEN, "origin not allowed");
                }
            }
        }
    };
    let mut response = if request.method() == Method::OPTIONS {
        StatusCode::NO_CONTENT.into_response()
    } else {
        next.run(request).await
    };
    let h = response.headers_mut();
    h.append(header::VARY, HeaderValue::from_static("origin"));
    if let Some(origin) = origin {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
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
    }
    response
}

/// Whether the request carries the admin credential (`Authorization: Bearer <admin
/// token>`); never without a configured admin token.
pub(crate) fn is_admin(admin_token: Option<&crate::Secret>, headers: &HeaderMap) -> bool {
    let Some(expected) = admin_token else {
        return false;
    };
    bearer(headers).is_ok_and(|t| t.is_some_and(|t| expected.matches(t.as_bytes())))
}

/// The `Authorization: Bearer` token, if the header is there.
fn bearer(headers: &HeaderMap) -> Result<Option<&str>, TokenError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value.to_str().map_err(|_| TokenError::Malformed)?;
    let (scheme, token) = value.split_once(' ').ok_or(TokenError::Malformed)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(TokenError::Malformed);
    }
    Ok(Some(token.trim()))
}

/// Reads a request body of at most `limit` bytes within the body timeout: 413 past the
/// limit, 408 past the time.
async fn read_body(app: &App, body: Body, limit: usize) -> Result<Bytes, Response> {
    let limited = http_body_util::Limited::new(body, limit);
    match tokio::time::timeout(app.config.body_read_timeout, limited.collect()).await {
        Err(_) => Err(error(StatusCode::REQUEST_TIMEOUT, "request body too slow")),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(error(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("request body above {limit} bytes"),
        )),
        Ok(Err(_)) => Err(error(StatusCode::BAD_REQUEST, "request body unreadable")),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
    }
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
            AuthError::Invalid(ref e) => e.to_string(),
        };
        self.into_response_with(&message)
    }

    fn into_response_with(self, message: &str) -> Response {
        let mut r = error(StatusCode::UNAUTHORIZED, message);
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
    let header_token = bearer(headers).map_err(AuthError::Invalid)?;
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
    slot: Option<Extension<ConnSlot>>,
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
        slot.map(|s| s.0),
    )
}

async fn ws_echo(
    State(app): State<AppState>,
    Query(q): Query<WsQuery>,
    slot: Option<Extension<ConnSlot>>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    upgrade_socket(
        app,
        q.access_token,
        &headers,
        upgrade,
        Mode::Plain,
        slot.map(|s| s.0),
    )
}

fn upgrade_socket(
    app: AppState,
    query_token: Option<String>,
    headers: &HeaderMap,
    upgrade: WebSocketUpgrade,
    mode: Mode,
    slot: Option<ConnSlot>,
) -> Response {
    if let Some(refused) = draining(&app) {
        return refused;
    }
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
        .on_upgrade(move |socket| ws::run(app, socket, principal, mode, slot))
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
    body: Body,
) -> Response {
    if let Some(refused) = draining(&app) {
        return refused;
    }
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
    // Who asks comes first: an unauthenticated client gets nothing read or decoded.
    let principal = match authenticate(&app, &headers, q.access_token.as_deref()) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
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
    let body = match read_body(&app, body, app.config.max_poll_body_bytes).await {
        Ok(b) => b,
        Err(r) => return r,
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
    let current = principal.claims.as_ref().map(|c| c.user.clone());
    let mut check = |token: &str| match app.tokens.verify(token) {
        Err(_) => Err(TokenRefused::Invalid),
        Ok(claims) if current.as_ref().is_some_and(|u| *u != claims.user) => {
            Err(TokenRefused::OtherUser)
        }
        Ok(_) => Ok(()),
    };
    let request = PollRequest {
        peer: principal.peer(),
        client_id,
        attempt,
        proof,
        room,
        envelopes,
    };
    if let Some(Envelope::Hello {
        client_id,
        attempt,
        secret,
        ..
    }) = request.envelopes.first()
    {
        // With a shared store: the session may come from another instance.
        app.hub
            .load(&request.peer, *client_id, *attempt, *secret)
            .await;
    }
    let exchange = match app.hub.poll_exchange(&principal, request, &mut check) {
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
    // With a shared store, nothing leaves before the state behind it is written.
    app.hub.persisted().await;
    (
        [(header::CONTENT_TYPE, "application/octet-stream")],
        encode_batch(&frames),
    )
        .into_response()
}

/// Waits up to `hold` for messages for a polling transport.
async fn hold_for_messages(
    app: &App,
    conn: ConnId,
    key: &SessionKey,
    notify: &tokio::sync::Notify,
    hold: Duration,
) -> Result<Vec<tether_core::Payload>, PollError> {
    let deadline = crate::after(Instant::now(), hold);
    loop {
        let pending = app.hub.take_pending(conn, key)?;
        if !pending.is_empty()
            || Instant::now() >= deadline
            || app.shutdown.get()
            || app.draining.get()
        {
            return Ok(pending);
        }
        tokio::select! {
            () = notify.notified() => {}
            () = tokio::time::sleep_until(deadline.into()) => {}
            () = app.shutdown.wait(true) => {}
            () = app.draining.wait(true) => {}
        }
    }
}

/// While the server drains, a request still arriving on an open HTTP connection gets
/// 503 with the client's share of the drain window as `Retry-After` (whole seconds,
/// rounded up): the client comes back later, through the balancer, to another instance.
fn draining(app: &App) -> Option<Response> {
    if !app.draining.get() {
        return None;
    }
    let delay = app.drain_delay().unwrap_or_default();
    let secs = delay.as_millis().div_ceil(1000);
    let mut response = error(StatusCode::SERVICE_UNAVAILABLE, "service restart");
    if let Ok(value) = HeaderValue::from_str(&secs.to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    Some(response)
}

fn poll_error(e: PollError) -> Response {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
    error(status, &e.to_string())
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

/// `POST /api/token`: token minting for tests and demos. Off unless
/// [`crate::ServerConfig::token_endpoint`] (404), and then only for the admin credential
/// (401), checked before the body is read.
async fn issue_token(State(app): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    if !app.config.token_endpoint {
        return not_found().await;
    }
    if !is_admin(app.config.admin_token.as_ref(), &headers) {
        return AuthError::Missing.into_response_with("the admin token is required");
    }
    let body = match read_body(&app, body, 64 << 10).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let request: TokenRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                r#"expected {"user":"…","ttl_secs":N}"#,
            )
        }
    };
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
    /// `ok`, or `degraded` while the shared store does not answer (connected clients
    /// are still served; a move to another instance may not resume).
    status: &'static str,
    uptime_secs: u64,
    instance: String,
    /// `memory` or `redis`.
    store: &'static str,
    /// Whether the store answered last time (always true in memory).
    store_reachable: bool,
}

async fn health(State(app): State<AppState>) -> Json<Health> {
    let reachable = app.hub.store_reachable();
    Json(Health {
        status: if reachable == Some(false) {
            "degraded"
        } else {
            "ok"
        },
        uptime_secs: app.started.elapsed().as_secs(),
        instance: app.hub.instance(),
        store: if reachable.is_some() {
            "redis"
        } else {
            "memory"
        },
        store_reachable: reachable.unwrap_or(true),
    })
}

/// Aggregates for anyone; the per-connection list (users, client ids, rooms) only for
/// the admin credential.
async fn metrics(State(app): State<AppState>, headers: HeaderMap) -> Response {
    let mut snapshot = app.hub.metrics();
    if !is_admin(app.config.admin_token.as_ref(), &headers) {
        snapshot.connections = Vec::new();
    }
    Json(snapshot).into_response()
}
