//! Helpers shared by the integration tests: a server on 127.0.0.1:0, a raw WebSocket
//! client (tokio-tungstenite), a minimal HTTP client (hyper), and a tiny protocol
//! client that keeps its `recv_seq`.
#![allow(dead_code)]

use std::cell::Cell;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tether_core::protocol::{decode_batch, encode_batch, Envelope, SessionSecret};
use tether_core::Payload;
use tether_server::{Hub, RunningServer, Secret, Server, ServerConfig, TokenAuthority};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const SECRET: &str = "integration test secret";
/// The admin credential of [`config`].
pub const ADMIN: &str = "integration test admin token";
/// How long one read may take before a test fails.
pub const STEP: Duration = Duration::from_secs(5);

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Runs a test body with a hard time limit.
pub async fn bounded<F: Future<Output = ()>>(limit_secs: u64, body: F) {
    tokio::time::timeout(Duration::from_secs(limit_secs), body)
        .await
        .expect("test exceeded its time limit");
}

/// A config for tests: the defaults but a free port, a fixed secret, an admin token, no
/// latency probes, and a shorter close grace.
pub fn config() -> ServerConfig {
    let mut c = ServerConfig::default();
    c.bind = "127.0.0.1:0".parse().unwrap();
    c.secret = Secret::new(SECRET);
    c.admin_token = Some(Secret::new(ADMIN));
    c.latency_probe_interval = None;
    c.close_grace = Duration::from_millis(500);
    c
}

pub async fn start(config: ServerConfig) -> RunningServer {
    start_with(config, Arc::new(Hub::new())).await
}

pub async fn start_with(config: ServerConfig, hub: Arc<Hub>) -> RunningServer {
    Server::start(config, hub).await.expect("server starts")
}

pub fn tokens() -> TokenAuthority {
    TokenAuthority::new(Secret::new(SECRET))
}

pub fn token(user: &str) -> String {
    tokens().issue(user, Duration::from_secs(600)).unwrap()
}

/// Opens a WebSocket to `path` (with its query), with `Authorization: Bearer` if given.
pub async fn try_connect(
    addr: SocketAddr,
    path: &str,
    bearer: Option<&str>,
) -> Result<Ws, tungstenite::Error> {
    let mut request = format!("ws://{addr}{path}").into_client_request()?;
    if let Some(t) = bearer {
        request
            .headers_mut()
            .insert("authorization", format!("Bearer {t}").parse().unwrap());
    }
    let (ws, _) = tokio::time::timeout(STEP, tokio_tungstenite::connect_async(request))
        .await
        .expect("connect timed out")?;
    Ok(ws)
}

pub async fn connect(addr: SocketAddr, path: &str, bearer: Option<&str>) -> Ws {
    try_connect(addr, path, bearer).await.expect("connects")
}

/// The HTTP status of an upgrade the server refuses.
pub async fn refused(addr: SocketAddr, path: &str, bearer: Option<&str>) -> u16 {
    match try_connect(addr, path, bearer).await {
        Err(tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(other) => panic!("expected an HTTP refusal, got {other}"),
        Ok(_) => panic!("the upgrade was accepted"),
    }
}

pub async fn send_frame(ws: &mut Ws, frame: Payload) {
    let message = match frame {
        Payload::Text(s) => Message::Text(s.as_str().into()),
        Payload::Binary(b) => Message::Binary(b),
    };
    ws.send(message).await.expect("send");
}

pub async fn send(ws: &mut Ws, envelope: Envelope) {
    send_frame(ws, envelope.encode()).await;
}

/// The next data frame (control frames skipped); `None` when a close frame or the end
/// came instead.
pub async fn next_data(ws: &mut Ws) -> Option<Payload> {
    loop {
        let next = tokio::time::timeout(STEP, ws.next())
            .await
            .expect("read timed out");
        match next {
            Some(Ok(Message::Text(t))) => return Some(Payload::from(t.as_str().to_owned())),
            Some(Ok(Message::Binary(b))) => return Some(Payload::from(b.to_vec())),
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
            Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return None,
        }
    }
}

pub async fn recv(ws: &mut Ws) -> Envelope {
    let frame = next_data(ws).await.expect("a frame, not the end");
    Envelope::decode(frame).expect("a valid envelope")
}

/// Reads until the server's close frame; returns its code (`None`: ended without one).
pub async fn close_code(ws: &mut Ws) -> Option<u16> {
    close_code_within(ws, STEP).await
}

pub async fn close_code_within(ws: &mut Ws, limit: Duration) -> Option<u16> {
    tokio::time::timeout(limit, async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return None,
            }
        }
    })
    .await
    .expect("no close within the limit")
}

pub async fn close(mut ws: Ws) {
    let _ = ws
        .close(Some(tungstenite::protocol::CloseFrame {
            code: CloseCode::Normal,
            reason: "bye".into(),
        }))
        .await;
}

/// A protocol client: says Hello (naming the session of the last Welcome, on a new
/// transport number each time), keeps `recv_seq`, numbers its messages.
pub struct Client {
    pub client_id: u64,
    pub recv_seq: u64,
    pub send_seq: u64,
    /// The session of the last Welcome (0: none yet).
    pub session: Cell<u64>,
    /// The transport number of the last Hello.
    pub attempt: Cell<u64>,
    /// The secret of the last Welcome, proven in every Hello and poll request.
    pub secret: Cell<Option<SessionSecret>>,
}

impl Client {
    pub fn new(client_id: u64) -> Self {
        Client {
            client_id,
            recv_seq: 0,
            send_seq: 0,
            session: Cell::new(0),
            attempt: Cell::new(0),
            secret: Cell::new(None),
        }
    }

    /// The Hello of a new transport.
    pub fn hello(&self) -> Envelope {
        self.attempt.set(self.attempt.get() + 1);
        Envelope::Hello {
            client_id: self.client_id,
            recv_seq: self.recv_seq,
            session: self.session.get(),
            attempt: self.attempt.get(),
            secret: self.secret.get(),
        }
    }

    /// Remembers the session a Welcome names.
    pub fn welcomed(&self, welcome: &Envelope) {
        if let Envelope::Welcome {
            session, secret, ..
        } = welcome
        {
            self.session.set(*session);
            self.secret.set(Some(*secret));
        }
    }

    /// One poll request on the transport of the last Hello (`t` is its number); a
    /// Welcome in the answer is remembered.
    pub async fn poll(
        &self,
        addr: SocketAddr,
        op: &str,
        extra_query: &str,
        token: &str,
        envelopes: &[Envelope],
    ) -> (StatusCode, Vec<Envelope>) {
        let query = format!("&t={}{extra_query}", self.attempt.get());
        let answer = poll_with(
            addr,
            self.client_id,
            op,
            &query,
            token,
            self.secret.get(),
            envelopes,
        )
        .await;
        if let Some(w) = answer.1.first() {
            self.welcomed(w);
        }
        answer
    }

    pub fn msg(&mut self, text: &str) -> Envelope {
        self.send_seq += 1;
        Envelope::Msg {
            seq: self.send_seq,
            payload: text.into(),
        }
    }

    /// Opens `/ws` (with `query`), says Hello, returns the socket and the Welcome.
    pub async fn open(
        &self,
        addr: SocketAddr,
        query: &str,
        bearer: Option<&str>,
    ) -> (Ws, Envelope) {
        let mut ws = connect(addr, &format!("/ws{query}"), bearer).await;
        send(&mut ws, self.hello()).await;
        let welcome = recv(&mut ws).await;
        assert!(
            matches!(welcome, Envelope::Welcome { .. }),
            "expected Welcome, got {welcome:?}"
        );
        self.welcomed(&welcome);
        (ws, welcome)
    }

    /// Records a server message as received, checking it is the next in order.
    pub fn take(&mut self, envelope: &Envelope) -> Payload {
        match envelope {
            Envelope::Msg { seq, payload } => {
                assert_eq!(*seq, self.recv_seq + 1, "server message out of order");
                self.recv_seq = *seq;
                payload.clone()
            }
            other => panic!("expected a message, got {other:?}"),
        }
    }

    /// Reads until `n` server messages arrived; returns them and the highest Ack seen.
    pub async fn collect(&mut self, ws: &mut Ws, n: usize) -> (Vec<Payload>, Option<u64>) {
        let mut got = Vec::new();
        let mut ack = None;
        while got.len() < n {
            match recv(ws).await {
                m @ Envelope::Msg { .. } => got.push(self.take(&m)),
                Envelope::Ack { seq } => ack = Some(ack.unwrap_or(0).max(seq)),
                Envelope::Pong { .. } => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        (got, ack)
    }

    /// Reads until an Ack of at least `seq`.
    pub async fn wait_ack(&mut self, ws: &mut Ws, seq: u64) -> Vec<Payload> {
        let mut got = Vec::new();
        loop {
            match recv(ws).await {
                m @ Envelope::Msg { .. } => got.push(self.take(&m)),
                Envelope::Ack { seq: s } if s >= seq => return got,
                _ => {}
            }
        }
    }
}

/// Reads frames up to the Pong of `id`: the messages (taken in order, as text) and the
/// highest Ack before it. The server answers a Ping at once, so everything it had queued
/// for the socket came first.
pub async fn read_to_pong(client: &mut Client, ws: &mut Ws, id: u64) -> (Vec<String>, u64) {
    let mut got = Vec::new();
    let mut acked = 0;
    loop {
        match recv(ws).await {
            m @ Envelope::Msg { .. } => got.push(client.take(&m)),
            Envelope::Ack { seq } => acked = acked.max(seq),
            Envelope::Pong { id: p } if p == id => return (texts(&got), acked),
            Envelope::Pong { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

pub fn texts(payloads: &[Payload]) -> Vec<String> {
    payloads
        .iter()
        .map(|p| match p {
            Payload::Text(s) => s.to_string(),
            Payload::Binary(b) => format!("<{} bytes>", b.len()),
        })
        .collect()
}

/// One HTTP/1.1 request on a fresh connection.
pub async fn http(
    addr: SocketAddr,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> (StatusCode, Bytes) {
    tokio::time::timeout(STEP, async {
        let stream = TcpStream::connect(addr).await.expect("tcp connect");
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("http handshake");
        tokio::spawn(conn);
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header("host", addr.to_string());
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let response = sender
            .send_request(request.body(Full::new(Bytes::from(body))).unwrap())
            .await
            .expect("http request");
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        (status, body)
    })
    .await
    .expect("http request timed out")
}

pub async fn get_json(addr: SocketAddr, path: &str) -> serde_json::Value {
    get_json_with(addr, path, &[]).await
}

/// A GET with the admin credential.
pub async fn get_json_admin(addr: SocketAddr, path: &str) -> serde_json::Value {
    let auth = format!("Bearer {ADMIN}");
    get_json_with(addr, path, &[("authorization", &auth)]).await
}

pub async fn get_json_with(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> serde_json::Value {
    let (status, body) = http(addr, Method::GET, path, headers, Vec::new()).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).expect("JSON")
}

/// One poll request without a session's secret; returns the status and, on 200, the
/// decoded envelopes.
pub async fn poll(
    addr: SocketAddr,
    client_id: u64,
    op: &str,
    extra_query: &str,
    token: &str,
    envelopes: &[Envelope],
) -> (StatusCode, Vec<Envelope>) {
    poll_with(addr, client_id, op, extra_query, token, None, envelopes).await
}

/// One poll request proving `secret` (in `Tether-Session`) if given.
pub async fn poll_with(
    addr: SocketAddr,
    client_id: u64,
    op: &str,
    extra_query: &str,
    token: &str,
    secret: Option<SessionSecret>,
    envelopes: &[Envelope],
) -> (StatusCode, Vec<Envelope>) {
    let frames: Vec<Payload> = envelopes.iter().map(Envelope::encode).collect();
    let auth = format!("Bearer {token}");
    let proof = secret.map(|s| s.to_hex());
    let mut headers = vec![
        ("authorization", auth.as_str()),
        ("content-type", "application/octet-stream"),
    ];
    if let Some(proof) = &proof {
        headers.push(("tether-session", proof.as_str()));
    }
    let (status, body) = http(
        addr,
        Method::POST,
        &format!("/poll?client={client_id:x}&op={op}{extra_query}"),
        &headers,
        encode_batch(&frames),
    )
    .await;
    if status != StatusCode::OK {
        return (status, Vec::new());
    }
    let envelopes = decode_batch(&body)
        .expect("a poll batch")
        .into_iter()
        .map(|f| Envelope::decode(f).expect("an envelope"))
        .collect();
    (status, envelopes)
}

/// Starts the `tether-server` binary on a free loopback port with `args` (the test
/// secret in its environment; its stderr piped if `stderr`, else dropped) and waits
/// for the line that names its address. Killed when the [`Child`] is dropped.
///
/// [`Child`]: tokio::process::Child
pub async fn spawn_binary(args: &[&str], stderr: bool) -> (tokio::process::Child, SocketAddr) {
    use std::process::Stdio;
    use tokio::io::{AsyncBufReadExt as _, BufReader};
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_tether-server"))
        .args(["--bind", "127.0.0.1:0"])
        .args(args)
        .env("TETHER_SECRET", SECRET)
        .stdout(Stdio::piped())
        .stderr(if stderr {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .kill_on_drop(true)
        .spawn()
        .expect("the binary starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .await
        .expect("its first line");
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .parse()
        .expect("an address");
    (child, addr)
}

/// Sends SIGTERM to `child` (the `kill` command: no signal crate needed).
#[cfg(unix)]
pub async fn sigterm(child: &tokio::process::Child) {
    let pid = child.id().expect("running").to_string();
    let sent = tokio::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .expect("kill runs");
    assert!(sent.success(), "SIGTERM sent");
}
