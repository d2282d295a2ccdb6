//! Hostile clients against a server with default settings (plus the few flags a test
//! names): each test is an attack from issue 9, asserting that it fails and that
//! legitimate clients lose nothing.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use hyper::{Method, StatusCode};
use support::*;
use tether_core::protocol::Envelope;
use tether_server::{PublicKey, ServerConfig, TokenAuthority, TokenError};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

const EVIL: &str = "https://evil.example";

fn admin_header() -> String {
    format!("Bearer {ADMIN}")
}

async fn mint(addr: SocketAddr, auth: Option<&str>, content_type: &str) -> StatusCode {
    let mut headers = vec![("content-type", content_type)];
    if let Some(a) = auth {
        headers.push(("authorization", a));
    }
    http(
        addr,
        Method::POST,
        "/api/token",
        &headers,
        br#"{"user":"victim","ttl_secs":60}"#.to_vec(),
    )
    .await
    .0
}

#[tokio::test]
async fn token_minting_is_off_by_default_and_admin_only_when_on() {
    bounded(20, async {
        // Defaults: no endpoint at all, whatever the caller sends.
        let server = start(config()).await;
        let addr = server.addr();
        assert_eq!(
            mint(addr, None, "application/json").await,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            mint(addr, Some(&admin_header()), "application/json").await,
            StatusCode::NOT_FOUND
        );
        server.shutdown().await;

        // Enabled: only the admin credential mints.
        let mut cfg = config();
        cfg.token_endpoint = true;
        let server = start(cfg).await;
        let addr = server.addr();
        for (auth, content_type) in [
            (None, "application/json"),
            (None, "application/x-www-form-urlencoded"),
            (Some("Bearer wrong admin token"), "application/json"),
            (Some(format!("Basic {ADMIN}").as_str()), "application/json"),
            (Some(SECRET), "text/plain"),
        ] {
            assert_eq!(
                mint(addr, auth, content_type).await,
                StatusCode::UNAUTHORIZED,
                "{auth:?}"
            );
        }
        assert_eq!(
            mint(addr, Some(&admin_header()), "application/json").await,
            StatusCode::OK
        );
        server.shutdown().await;

        // The endpoint cannot be turned on without an admin credential.
        let mut cfg = config();
        cfg.token_endpoint = true;
        cfg.admin_token = None;
        assert!(tether_server::Server::start(cfg, Default::default())
            .await
            .is_err());
    })
    .await;
}

#[tokio::test]
async fn metrics_without_the_admin_credential_name_no_user_or_client() {
    bounded(20, async {
        let server = start(config()).await;
        let addr = server.addr();
        let c = Client::new(0xfeed_beef);
        let (_ws, _) = c
            .open(addr, "?room=secret-room", Some(&token("alice-secret")))
            .await;
        for auth in [
            None,
            Some("Bearer nope".to_owned()),
            Some(format!("Bearer {}", token("alice-secret"))),
        ] {
            let headers: Vec<(&str, &str)> = auth
                .as_deref()
                .map(|a| vec![("authorization", a)])
                .unwrap_or_default();
            let (status, body) = http(
                addr,
                Method::GET,
                "/api/websocket/metrics",
                &headers,
                Vec::new(),
            )
            .await;
            assert_eq!(status, StatusCode::OK);
            let text = String::from_utf8_lossy(&body);
            for leak in ["alice-secret", "feedbeef", "secret-room"] {
                assert!(!text.contains(leak), "{leak} leaked to {auth:?}: {text}");
            }
            let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(json["active_connections"], 1, "the counts stay public");
        }
        let admin = get_json_admin(addr, "/api/websocket/metrics").await;
        assert_eq!(admin["connections"][0]["user"], "alice-secret");
        assert_eq!(admin["connections"][0]["client_id"], "feedbeef");
        server.shutdown().await;
    })
    .await;
}

/// A WebSocket upgrade with an `Origin` header: the HTTP status of a refusal, or 101.
async fn upgrade_with_origin(addr: SocketAddr, path: &str, origin: &str) -> u16 {
    let mut request = format!("ws://{addr}{path}").into_client_request().unwrap();
    request
        .headers_mut()
        .insert("origin", origin.parse().unwrap());
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {}", token("olga")).parse().unwrap(),
    );
    match tokio::time::timeout(STEP, tokio_tungstenite::connect_async(request))
        .await
        .expect("connect timed out")
    {
        Ok(_) => 101,
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => r.status().as_u16(),
        Err(e) => panic!("{e}"),
    }
}

async fn poll_with_origin(addr: SocketAddr, origin: &str) -> (StatusCode, Option<String>) {
    let auth = format!("Bearer {}", token("olga"));
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let request = hyper::Request::builder()
        .method(Method::POST)
        .uri("/poll?client=1&op=send&t=1")
        .header("host", addr.to_string())
        .header("origin", origin)
        .header("authorization", auth)
        .body(http_body_util::Full::new(hyper::body::Bytes::new()))
        .unwrap();
    let response = tokio::time::timeout(STEP, sender.send_request(request))
        .await
        .unwrap()
        .unwrap();
    let allow = response
        .headers()
        .get("access-control-allow-origin")
        .map(|v| v.to_str().unwrap().to_owned());
    (response.status(), allow)
}

#[tokio::test]
async fn foreign_origins_cannot_open_sockets_or_poll() {
    bounded(30, async {
        let mut cfg = config();
        cfg.allowed_origins = vec!["https://app.example".into()];
        let server = start(cfg).await;
        let addr = server.addr();
        for path in ["/ws", "/echo"] {
            assert_eq!(upgrade_with_origin(addr, path, EVIL).await, 403, "{path}");
            assert_eq!(upgrade_with_origin(addr, path, "null").await, 403, "{path}");
            // Dev origins are not allowed outside dev mode.
            assert_eq!(
                upgrade_with_origin(addr, path, "http://localhost:3000").await,
                403
            );
            assert_eq!(
                upgrade_with_origin(addr, path, "https://app.example").await,
                101
            );
            // Same origin, and no origin at all (native clients), pass.
            assert_eq!(
                upgrade_with_origin(addr, path, &format!("http://{addr}")).await,
                101
            );
            let (_ws, _) = Client::new(1).open(addr, "", Some(&token("olga"))).await;
        }
        let (status, allow) = poll_with_origin(addr, EVIL).await;
        assert_eq!((status, allow), (StatusCode::FORBIDDEN, None));
        // An allowed origin gets CORS headers naming it, never `*`.
        let (status, allow) = poll_with_origin(addr, "https://app.example").await;
        assert_ne!(status, StatusCode::FORBIDDEN);
        assert_eq!(allow.as_deref(), Some("https://app.example"));
        // A preflight from a foreign page is refused too.
        let (status, _) = http(
            addr,
            Method::OPTIONS,
            "/api/token",
            &[("origin", EVIL), ("access-control-request-method", "POST")],
            Vec::new(),
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        server.shutdown().await;

        // Dev mode allows localhost pages.
        let mut cfg = config();
        cfg.dev_mode = true;
        let server = start(cfg).await;
        let addr = server.addr();
        assert_eq!(
            upgrade_with_origin(addr, "/ws", "http://localhost:3000").await,
            101
        );
        assert_eq!(
            upgrade_with_origin(addr, "/ws", "http://127.0.0.1:9999").await,
            101
        );
        assert_eq!(upgrade_with_origin(addr, "/ws", EVIL).await, 403);
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn echo_does_not_disconnect_the_users_protocol_client() {
    bounded(20, async {
        let server = start(config()).await;
        let addr = server.addr();
        let t = token("quinn");
        let c = Client::new(0x51);
        let (mut ws, _) = c.open(addr, "", Some(&t)).await;
        let mut echoes = Vec::new();
        for _ in 0..3 {
            let mut e = connect(addr, "/echo", Some(&t)).await;
            send_frame(&mut e, "ping".into()).await;
            assert_eq!(next_data(&mut e).await, Some("pong".into()));
            echoes.push(e);
        }
        send(&mut ws, Envelope::Ping { id: 9 }).await;
        assert_eq!(recv(&mut ws).await, Envelope::Pong { id: 9 });
        server.shutdown().await;
    })
    .await;
}

/// Bytes the server holds for one client, as the hub accounts them.
fn held(server: &tether_server::RunningServer) -> (usize, usize) {
    let m = server.hub().memory();
    (m.outbound_bytes, m.resume_bytes)
}

#[tokio::test]
async fn a_socket_that_never_reads_stays_within_its_byte_bound_and_is_closed_1013() {
    bounded(60, async {
        let mut cfg = config();
        // Long enough that the close frame is still waiting when the client reads.
        cfg.close_grace = Duration::from_secs(30);
        let limit = ServerConfig::default().max_queued_bytes;
        let frame = 64 << 10;
        let server = start(cfg).await;
        let addr = server.addr();
        let mut c = Client::new(0x5107);
        let (mut ws, _) = c.open(addr, "", Some(&token("sloth"))).await;
        // Each message comes back as an echo the client never reads: 32 MiB in all,
        // far beyond what the kernel's socket buffers hold.
        let body = "x".repeat(frame);
        let mut peak = 0;
        for _ in 0..512 {
            let m = c.msg(&body);
            send(&mut ws, m).await;
            peak = peak.max(held(&server).0);
        }
        assert!(
            peak <= limit,
            "queued {peak} bytes for one socket, limit {limit}"
        );
        // The resume buffer keeps its own bound (1 MiB by default).
        let resume = held(&server).1;
        assert!(resume <= (1 << 20) + 1024, "resume buffer {resume} bytes");
        // The client finally reads: what was written, then the close frame.
        assert_eq!(
            close_code_within(&mut ws, Duration::from_secs(30)).await,
            Some(1013)
        );
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn resume_buffers_are_bounded_per_session_and_a_resume_past_it_is_a_reset() {
    bounded(30, async {
        let server = start(config()).await;
        let addr = server.addr();
        let mut c = Client::new(0xb0f);
        let (mut ws, _) = c.open(addr, "", Some(&token("hoarder"))).await;
        // Five pushes of 400 KiB from a producer that does not wait, read but never
        // acknowledged: the buffer keeps what fits in 1 MiB.
        let body = "y".repeat(400 << 10);
        for _ in 0..5 {
            assert_eq!(server.hub().send_to_user("hoarder", body.as_str()), 1);
        }
        let (got, _) = c.collect(&mut ws, 5).await;
        assert_eq!(got.len(), 5);
        let resume = server.hub().memory().resume_bytes;
        assert!(resume <= (1 << 20) + 1024, "{resume}");
        // Two messages of 400 KiB whose echoes find no room: they wait unacknowledged
        // (within the same limits; past them the socket closes, flow_control.rs), and
        // memory stays bounded.
        for _ in 0..2 {
            let m = c.msg(&body);
            send(&mut ws, m).await;
        }
        send(&mut ws, Envelope::Ping { id: 1 }).await;
        let mut echoes = 0;
        loop {
            match recv(&mut ws).await {
                Envelope::Msg { .. } => echoes += 1,
                Envelope::Pong { .. } => break,
                _ => {}
            }
        }
        assert_eq!(echoes, 0, "no room while the pushes are unacknowledged");
        let resume = server.hub().memory().resume_bytes;
        assert!(resume <= 2 * (1 << 20) + 1024, "resume and held {resume}");
        drop(ws);
        // A client that says it has none of them cannot be brought up to date: it is
        // told so (a reset), never silently handed a partial resend.
        c.recv_seq = 0;
        let (_ws, welcome) = c.open(addr, "", Some(&token("hoarder"))).await;
        assert!(
            matches!(welcome, Envelope::Welcome { resumed: false, .. }),
            "{welcome:?}"
        );
        server.shutdown().await;
    })
    .await;
}

/// Waits (bounded) until the hub has no open connection.
async fn until_no_connections(server: &tether_server::RunningServer) {
    for _ in 0..500 {
        if server.hub().connections() == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("connections still open");
}

#[tokio::test]
async fn the_resume_budget_drops_the_oldest_detached_sessions_whole() {
    bounded(60, async {
        let server = start(config()).await;
        let addr = server.addr();
        let budget = ServerConfig::default().resume_budget_bytes;
        // 80 users, each with a detached session holding 900 KiB: 70 MiB wanted.
        let users: Vec<String> = (0..80).map(|i| format!("user{i:02}")).collect();
        let clients: Vec<Client> = (0..80).map(|i| Client::new(0x1000 + i)).collect();
        for (user, c) in users.iter().zip(&clients) {
            let (ws, _) = c.open(addr, "", Some(&token(user))).await;
            close(ws).await;
        }
        until_no_connections(&server).await;
        let body = "z".repeat(900 << 10);
        for user in &users {
            assert_eq!(server.hub().send_to_user(user, body.as_str()), 1);
            let m = server.hub().memory();
            assert!(m.resume_bytes <= budget, "{} > {budget}", m.resume_bytes);
        }
        let m = server.hub().memory();
        assert!(m.sessions_dropped >= 5, "{m:?}");
        assert_eq!(m.sessions as u64 + m.sessions_dropped, 80);
        // The first to leave lost its session and is told (a reset); the last resumes
        // and gets its message.
        let (_a, welcome) = clients[0].open(addr, "", Some(&token(&users[0]))).await;
        assert!(
            matches!(welcome, Envelope::Welcome { resumed: false, .. }),
            "{welcome:?}"
        );
        let mut last = Client::new(0x1000 + 79);
        last.session.set(clients[79].session.get());
        last.attempt.set(clients[79].attempt.get());
        last.secret.set(clients[79].secret.get());
        let (mut ws, welcome) = last.open(addr, "", Some(&token(&users[79]))).await;
        assert!(
            matches!(welcome, Envelope::Welcome { resumed: true, .. }),
            "{welcome:?}"
        );
        let (got, _) = last.collect(&mut ws, 1).await;
        assert_eq!(got.len(), 1);
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn sessions_per_user_are_bounded() {
    bounded(30, async {
        let server = start(config()).await;
        let addr = server.addr();
        let max = ServerConfig::default().max_sessions_per_user;
        let t = token("hydra");
        let clients: Vec<Client> = (0..20).map(|i| Client::new(0x700 + i)).collect();
        let mut open = Vec::new();
        for c in &clients {
            let (ws, _) = c.open(addr, "", Some(&t)).await;
            open.push(ws);
            assert!(server.hub().sessions() <= max);
        }
        assert_eq!(server.hub().sessions(), max);
        // The newest session is the one in use and stays; the oldest went first.
        let newest = clients.last().unwrap();
        let (_ws, welcome) = newest.open(addr, "", Some(&t)).await;
        assert!(matches!(welcome, Envelope::Welcome { resumed: true, .. }));
        // Another user is not affected by hydra's sessions.
        let (_other, _) = Client::new(1)
            .open(addr, "", Some(&token("heracles")))
            .await;
        assert_eq!(server.hub().sessions(), max + 1);
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn room_fan_out_is_bounded_and_a_member_that_cannot_keep_up_is_closed() {
    bounded(60, async {
        let mut cfg = config();
        cfg.close_grace = Duration::from_secs(30);
        let server = start(cfg).await;
        let addr = server.addr();
        let per_socket = ServerConfig::default().max_queued_bytes;
        let budget = ServerConfig::default().resume_budget_bytes;
        let slow = Client::new(0x510);
        let (mut slow_ws, _) = slow.open(addr, "?room=hall", Some(&token("slow"))).await;
        let mut reader = Client::new(0x2ead);
        let (mut reader_ws, _) = reader
            .open(addr, "?room=hall", Some(&token("reader")))
            .await;
        let mut sender = Client::new(0x5e);
        let (mut sender_ws, _) = sender
            .open(addr, "?room=hall", Some(&token("sender")))
            .await;

        let n = 300;
        let reading = tokio::spawn(async move {
            let mut got = 0;
            while got < n {
                if let Envelope::Msg { .. } = recv(&mut reader_ws).await {
                    got += 1;
                    let seq = reader.recv_seq + 1;
                    reader.recv_seq = seq;
                    send(&mut reader_ws, Envelope::Ack { seq }).await;
                }
            }
            got
        });
        let body = "r".repeat(64 << 10);
        let mut peak = (0, 0);
        for _ in 0..n {
            let m = sender.msg(&body);
            send(&mut sender_ws, m).await;
            // The sender is a member too: it reads its own copy and acknowledges.
            loop {
                if let m @ Envelope::Msg { .. } = recv(&mut sender_ws).await {
                    sender.take(&m);
                    send(
                        &mut sender_ws,
                        Envelope::Ack {
                            seq: sender.recv_seq,
                        },
                    )
                    .await;
                    break;
                }
            }
            let (o, r) = held(&server);
            peak = (peak.0.max(o), peak.1.max(r));
        }
        assert_eq!(
            reading.await.unwrap(),
            n,
            "a member that keeps up gets everything"
        );
        assert!(peak.0 <= 3 * per_socket, "queued {} bytes", peak.0);
        assert!(peak.1 <= budget, "resume {} bytes", peak.1);
        // 19 MiB went to the slow member, which read nothing: it was closed, the
        // server was not.
        assert_eq!(
            close_code_within(&mut slow_ws, Duration::from_secs(30)).await,
            Some(1013)
        );
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn slowloris_connections_are_closed_after_the_header_timeout_and_capped() {
    bounded(30, async {
        let mut cfg = config();
        cfg.header_read_timeout = Duration::from_millis(500);
        cfg.max_connections = 50;
        let server = start(cfg).await;
        let addr = server.addr();
        // 50 connections: half send part of a request, half send nothing.
        let mut lorises = Vec::new();
        for i in 0..50 {
            let mut s = TcpStream::connect(addr).await.unwrap();
            if i % 2 == 0 {
                s.write_all(b"GET /api/health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                    .await
                    .unwrap();
            }
            lorises.push(s);
        }
        // The cap is reached: one more is closed at once, without an answer.
        let mut extra = TcpStream::connect(addr).await.unwrap();
        let mut buf = [0u8; 256];
        let n = tokio::time::timeout(STEP, extra.read(&mut buf))
            .await
            .unwrap();
        assert!(matches!(n, Ok(0) | Err(_)), "over the cap: {n:?}");
        // Every half-sent request is cut after the header timeout.
        for (i, s) in lorises.iter_mut().enumerate() {
            let r = tokio::time::timeout(Duration::from_secs(5), async {
                let mut all = Vec::new();
                loop {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return all,
                        Ok(n) => all.extend_from_slice(&buf[..n]),
                    }
                }
            })
            .await
            .unwrap_or_else(|_| panic!("connection {i} still open"));
            assert!(
                r.is_empty() || r.starts_with(b"HTTP/1.1 408"),
                "{}",
                String::from_utf8_lossy(&r)
            );
        }
        // The slots are free again: a real request is served.
        assert_eq!(get_json(addr, "/api/health").await["status"], "ok");
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn poll_bodies_are_read_only_after_authentication_and_within_the_body_timeout() {
    bounded(20, async {
        let mut cfg = config();
        cfg.body_read_timeout = Duration::from_millis(500);
        let server = start(cfg).await;
        let addr = server.addr();
        // Garbage from a stranger: refused for who it is, not parsed.
        let (status, _) = http(
            addr,
            Method::POST,
            "/poll?client=1&op=send&t=1",
            &[],
            b"\xff\xfe garbage".to_vec(),
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        // A body that never finishes: 408.
        let mut s = TcpStream::connect(addr).await.unwrap();
        let head = format!(
            "POST /poll?client=1&op=send&t=1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Length: 1000\r\n\r\nabc",
            token("trickle")
        );
        s.write_all(head.as_bytes()).await.unwrap();
        let mut buf = vec![0u8; 1024];
        let n = tokio::time::timeout(STEP, s.read(&mut buf)).await.unwrap().unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 408"), "{}", String::from_utf8_lossy(&buf[..n]));
        server.shutdown().await;
    })
    .await;
}

/// A raw WebSocket handshake on `path`; returns the stream after the 101.
async fn raw_upgrade(addr: SocketAddr, path: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Authorization: Bearer {}\r\n\r\n",
        token("raw")
    );
    s.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        tokio::time::timeout(STEP, s.read_exact(&mut byte))
            .await
            .unwrap()
            .unwrap();
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    s
}

/// A text frame with `payload`, masked or not.
fn text_frame(payload: &[u8], masked: bool) -> Vec<u8> {
    let mut f = vec![0x81, payload.len() as u8 | if masked { 0x80 } else { 0 }];
    let key = [1u8, 2, 3, 4];
    if masked {
        f.extend_from_slice(&key);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    } else {
        f.extend_from_slice(payload);
    }
    f
}

/// Reads server frames until a close frame; returns its code (`None`: the connection
/// ended without one).
async fn raw_close_code(s: &mut TcpStream) -> Option<u16> {
    tokio::time::timeout(STEP, async {
        loop {
            let mut h = [0u8; 2];
            if s.read_exact(&mut h).await.is_err() {
                return None;
            }
            let mut len = u64::from(h[1] & 0x7f);
            if len == 126 {
                let mut l = [0u8; 2];
                s.read_exact(&mut l).await.ok()?;
                len = u64::from(u16::from_be_bytes(l));
            } else if len == 127 {
                let mut l = [0u8; 8];
                s.read_exact(&mut l).await.ok()?;
                len = u64::from_be_bytes(l);
            }
            let mut body = vec![0u8; len as usize];
            s.read_exact(&mut body).await.ok()?;
            if h[0] & 0x0f == 0x8 {
                return (body.len() >= 2).then(|| u16::from_be_bytes([body[0], body[1]]));
            }
        }
    })
    .await
    .expect("no close within the limit")
}

#[tokio::test]
async fn invalid_utf8_closes_1007_and_an_unmasked_frame_closes_1002() {
    bounded(20, async {
        let server = start(config()).await;
        let addr = server.addr();
        for path in ["/echo", "/ws"] {
            let mut s = raw_upgrade(addr, path).await;
            s.write_all(&text_frame(b"ok \xff\xfe", true))
                .await
                .unwrap();
            assert_eq!(raw_close_code(&mut s).await, Some(1007), "{path}");

            let mut s = raw_upgrade(addr, path).await;
            s.write_all(&text_frame(b"ping", false)).await.unwrap();
            assert_eq!(raw_close_code(&mut s).await, Some(1002), "{path}");
        }
        // A well-formed client is unaffected.
        let mut s = raw_upgrade(addr, "/echo").await;
        s.write_all(&text_frame(b"ping", true)).await.unwrap();
        let mut reply = [0u8; 6];
        s.read_exact(&mut reply).await.unwrap();
        assert_eq!(&reply, b"\x81\x04pong");
        server.shutdown().await;
    })
    .await;
}

#[derive(serde::Serialize)]
struct AppClaims<'a> {
    sub: &'a str,
    exp: u64,
    iss: &'a str,
    aud: &'a str,
}

fn app_token(
    alg: jsonwebtoken::Algorithm,
    private_pem: &[u8],
    kid: Option<&str>,
    sub: &str,
) -> String {
    let key = match alg {
        jsonwebtoken::Algorithm::RS256 => jsonwebtoken::EncodingKey::from_rsa_pem(private_pem),
        _ => jsonwebtoken::EncodingKey::from_ec_pem(private_pem),
    }
    .unwrap();
    let mut header = jsonwebtoken::Header::new(alg);
    header.kid = kid.map(str::to_owned);
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    jsonwebtoken::encode(
        &header,
        &AppClaims {
            sub,
            exp,
            iss: "https://auth.example",
            aud: "tether",
        },
        &key,
    )
    .unwrap()
}

const RSA_PRIVATE: &[u8] = include_bytes!("keys/rsa-private.pem");
const RSA_PUBLIC: &[u8] = include_bytes!("keys/rsa-public.pem");
const EC_PRIVATE: &[u8] = include_bytes!("keys/ec-private.pem");
const EC_PUBLIC: &[u8] = include_bytes!("keys/ec-public.pem");
const JWKS: &[u8] = include_bytes!("keys/jwks.json");

#[tokio::test]
async fn application_jwts_signed_with_rs256_or_es256_are_accepted_and_forgeries_are_not() {
    use jsonwebtoken::Algorithm::{ES256, RS256};
    bounded(20, async {
        let mut cfg = config();
        cfg.public_keys = vec![
            PublicKey::from_pem(RSA_PUBLIC).unwrap(),
            PublicKey::from_pem(EC_PUBLIC).unwrap(),
        ];
        cfg.token_issuer = Some("https://auth.example".into());
        cfg.token_audience = Some("tether".into());
        let server = start(cfg).await;
        let addr = server.addr();
        for (alg, pem) in [(RS256, RSA_PRIVATE), (ES256, EC_PRIVATE)] {
            let t = app_token(alg, pem, None, "app-user");
            let c = Client::new(0xa1);
            let (_ws, _) = c.open(addr, "", Some(&t)).await;
        }
        // HS256 with the public key as the secret (algorithm confusion), tokens of the
        // mint without the issuer, and another key pair's signature: all refused.
        let confused = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &AppClaims {
                sub: "x",
                exp: u64::MAX,
                iss: "https://auth.example",
                aud: "tether",
            },
            &jsonwebtoken::EncodingKey::from_secret(RSA_PUBLIC),
        )
        .unwrap();
        assert_eq!(refused(addr, "/ws", Some(&confused)).await, 401);
        assert_eq!(refused(addr, "/ws", Some(&token("no-issuer"))).await, 401);
        // Another user's claims under app-user's signature.
        let genuine = app_token(RS256, RSA_PRIVATE, None, "app-user");
        let other = app_token(RS256, RSA_PRIVATE, None, "admin");
        let g: Vec<&str> = genuine.split('.').collect();
        let o: Vec<&str> = other.split('.').collect();
        let tampered = format!("{}.{}.{}", g[0], o[1], g[2]);
        assert_eq!(refused(addr, "/ws", Some(&tampered)).await, 401);
        server.shutdown().await;
    })
    .await;

    // The same keys from a JWKS document, chosen by `kid`.
    let keys = PublicKey::from_jwks(JWKS).unwrap();
    assert_eq!(keys.len(), 2);
    let authority = TokenAuthority::verify_only(keys)
        .with_issuer(Some("https://auth.example".into()))
        .with_audience(Some("tether".into()));
    let t = app_token(ES256, EC_PRIVATE, Some("ec-1"), "jwks-user");
    assert_eq!(authority.verify(&t).unwrap().user, "jwks-user");
    let t = app_token(RS256, RSA_PRIVATE, Some("rsa-1"), "jwks-user");
    assert_eq!(authority.verify(&t).unwrap().user, "jwks-user");
    let t = app_token(RS256, RSA_PRIVATE, Some("rotated-away"), "jwks-user");
    assert_eq!(authority.verify(&t), Err(TokenError::UnknownKey));
}

#[tokio::test]
async fn a_poller_that_never_receives_stays_within_its_byte_bound() {
    bounded(30, async {
        let server = start(config()).await;
        let addr = server.addr();
        let limit = ServerConfig::default().max_queued_bytes;
        let t = token("hoover");
        let c = Client::new(0x9011);
        let (status, _) = c.poll(addr, "send", "", &t, &[c.hello()]).await;
        assert_eq!(status, StatusCode::OK);
        // 8 MiB of server messages for a client that never asks for them.
        let body = "p".repeat(256 << 10);
        for _ in 0..32 {
            server.hub().send_to_user("hoover", body.as_str());
            let m = server.hub().memory();
            assert!(m.poll_pending_bytes <= limit, "{m:?}");
            assert!(m.resume_bytes <= (1 << 20) + 1024, "{m:?}");
        }
        // It was detached as too slow; a new Hello is told what it can still get: the
        // resume buffer kept only the newest messages, so this is a reset.
        let (status, _) = c.poll(addr, "recv", "", &t, &[]).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        let (status, answer) = c.poll(addr, "send", "", &t, &[c.hello()]).await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            matches!(answer[0], Envelope::Welcome { resumed: false, .. }),
            "{:?}",
            answer[0]
        );
        server.shutdown().await;
    })
    .await;
}
