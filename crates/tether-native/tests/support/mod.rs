//! Test helpers: bounded waits, and small tokio-tungstenite servers on 127.0.0.1 (an echo
//! server, and a protocol server on the core's `ServerSession`). [`reference`] runs the
//! reference server (crates/tether-server) and counts what arrives; [`rogue`] is a server
//! that breaks the protocol on purpose.
#![allow(dead_code, clippy::result_large_err)]

pub mod reference;
pub mod rogue;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tether_core::{BackoffConfig, Config, ConfigBuilder, Event, Jitter, State};
use tether_native::{Client, Events};
use tokio::net::TcpListener;
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

/// Every wait in these tests is bounded by this.
pub const WAIT: Duration = Duration::from_secs(10);

/// `fut`, or a test failure naming `what` after [`WAIT`].
pub async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(WAIT, fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out waiting for {what}"),
    }
}

/// The first event matching `pred`, skipping others.
pub async fn next_event(
    events: &mut Events,
    what: &str,
    mut pred: impl FnMut(&Event) -> bool,
) -> Event {
    within(what, async {
        loop {
            match events.recv().await {
                Some(e) if pred(&e) => return e,
                Some(_) => {}
                None => panic!("event stream ended while waiting for {what}"),
            }
        }
    })
    .await
}

/// Waits until the client is in `state`.
pub async fn wait_state(client: &Client, state: State) {
    let mut watch = client.state_watch();
    within(&format!("state {state}"), watch.wait_for(|s| *s == state))
        .await
        .expect("the client task ended");
}

/// A config for `addr` with fast retries.
pub fn config(addr: SocketAddr) -> ConfigBuilder {
    Config::builder(format!("ws://{addr}/ws")).backoff(BackoffConfig {
        initial_delay: Duration::from_millis(20),
        factor: 2.0,
        max_delay: Duration::from_millis(100),
        jitter: Jitter::Full,
        max_attempts: None,
    })
}

/// What the server saw of one upgrade request.
#[derive(Clone, Debug, Default)]
pub struct Handshake {
    pub path: String,
    pub protocol: Option<String>,
    pub authorization: Option<String>,
}

/// What the server saw over one connection's life.
#[derive(Clone, Debug, PartialEq)]
pub enum Seen {
    Text(String),
    Binary(Vec<u8>),
    Close(Option<(u16, String)>),
}

/// An echo server: answers every text and binary message with itself, accepts the first
/// subprotocol offered, and records handshakes and what arrives.
pub struct EchoServer {
    pub addr: SocketAddr,
    tasks: JoinSet<()>,
    kick: broadcast::Sender<u16>,
    pub handshakes: Arc<Mutex<Vec<Handshake>>>,
    seen: mpsc::UnboundedReceiver<Seen>,
}

impl EchoServer {
    /// On a fresh port.
    pub async fn start() -> EchoServer {
        Self::start_on("127.0.0.1:0".parse().unwrap()).await
    }

    /// On `addr` (to restart on the same port).
    pub async fn start_on(addr: SocketAddr) -> EchoServer {
        let listener = TcpListener::bind(addr).await.expect("bind");
        let addr = listener.local_addr().unwrap();
        let (kick, _) = broadcast::channel(4);
        let handshakes = Arc::new(Mutex::new(Vec::new()));
        let (seen_tx, seen) = mpsc::unbounded_channel();
        let mut tasks = JoinSet::new();
        let (kick2, hs) = (kick.clone(), handshakes.clone());
        tasks.spawn(async move {
            let mut connections = JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                let (hs, seen, mut kicked) = (hs.clone(), seen_tx.clone(), kick2.subscribe());
                connections.spawn(async move {
                    let callback = |req: &Request, mut resp: Response| {
                        let header = |name: &str| {
                            req.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
                        };
                        let protocol = header("sec-websocket-protocol");
                        if let Some(p) = &protocol {
                            let first = p.split(',').next().unwrap_or("").trim().to_owned();
                            resp.headers_mut()
                                .insert("sec-websocket-protocol", HeaderValue::from_str(&first).unwrap());
                        }
                        hs.lock().unwrap().push(Handshake {
                            path: req.uri().to_string(),
                            protocol,
                            authorization: header("authorization"),
                        });
                        Ok(resp)
                    };
                    let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(stream, callback).await else {
                        return;
                    };
                    loop {
                        tokio::select! {
                            msg = ws.next() => match msg {
                                Some(Ok(Message::Text(t))) => {
                                    let _ = seen.send(Seen::Text(t.as_str().to_owned()));
                                    if ws.send(Message::Text(t)).await.is_err() { return; }
                                }
                                Some(Ok(Message::Binary(b))) => {
                                    let _ = seen.send(Seen::Binary(b.to_vec()));
                                    if ws.send(Message::Binary(b)).await.is_err() { return; }
                                }
                                Some(Ok(Message::Close(frame))) => {
                                    let _ = seen.send(Seen::Close(
                                        frame.map(|f| (u16::from(f.code), f.reason.as_str().to_owned())),
                                    ));
                                    // tungstenite answers the close; read until the end.
                                    while let Some(Ok(_)) = ws.next().await {}
                                    return;
                                }
                                Some(Ok(_)) => {}
                                _ => return,
                            },
                            code = kicked.recv() => {
                                let code = code.unwrap_or(1001);
                                let frame = CloseFrame { code: CloseCode::from(code), reason: "kicked".into() };
                                let _ = ws.close(Some(frame)).await;
                                while let Some(Ok(_)) = ws.next().await {}
                                return;
                            }
                        }
                    }
                });
            }
        });
        EchoServer {
            addr,
            tasks,
            kick,
            handshakes,
            seen,
        }
    }

    /// Closes every open socket from the server side with `code`.
    pub fn kick(&self, code: u16) {
        let _ = self.kick.send(code);
    }

    /// Stops listening and drops every connection without a close frame (a crash).
    pub async fn stop(mut self) -> SocketAddr {
        self.tasks.shutdown().await;
        self.addr
    }

    /// The next thing that arrived on any connection.
    pub async fn seen(&mut self) -> Seen {
        within("the server to receive", self.seen.recv())
            .await
            .expect("server gone")
    }

    /// Number of handshakes so far.
    pub fn connections(&self) -> usize {
        self.handshakes.lock().unwrap().len()
    }
}

/// A Tether protocol server built on the core's `ServerSession`: welcomes, echoes every
/// message back (numbered), answers pings, and acknowledges after `ack_delay` (never,
/// with `None`). Sessions outlive connections, keyed by client id.
pub struct ProtocolServer {
    pub addr: SocketAddr,
    tasks: JoinSet<()>,
    seen: mpsc::UnboundedReceiver<Seen>,
    drop_all: broadcast::Sender<()>,
}

impl ProtocolServer {
    pub async fn start(ack_delay: Option<Duration>) -> ProtocolServer {
        use std::collections::HashMap;
        use tether_core::protocol::{Envelope, ResumeLimits, ServerSession, SessionSecret};
        use tether_core::{Instant, Payload};

        fn frame(e: Envelope) -> Message {
            match e.encode() {
                Payload::Text(t) => Message::Text(t.as_str().into()),
                Payload::Binary(b) => Message::Binary(b),
            }
        }

        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().unwrap();
        let sessions: Arc<Mutex<HashMap<u64, ServerSession>>> = Arc::default();
        let (seen_tx, seen) = mpsc::unbounded_channel();
        let (drop_all, _) = broadcast::channel(4);
        let mut tasks = JoinSet::new();
        let dropper = drop_all.clone();
        tasks.spawn(async move {
            let mut connections = JoinSet::new();
            let mut next_session: u64 = 1;
            while let Ok((stream, _)) = listener.accept().await {
                let (sessions, seen) = (sessions.clone(), seen_tx.clone());
                let mut dropped = dropper.subscribe();
                next_session += 1;
                let session_id = next_session;
                connections.spawn(async move {
                    let Ok(ws) = tokio_tungstenite::accept_async(stream).await else {
                        return;
                    };
                    let (mut sink, mut stream) = ws.split();
                    let (out_tx, mut out) = mpsc::unbounded_channel::<Message>();
                    let writer = tokio::spawn(async move {
                        while let Some(m) = out.recv().await {
                            if sink.send(m).await.is_err() {
                                return;
                            }
                        }
                    });
                    let mut client = None;
                    loop {
                        let msg = tokio::select! {
                            msg = stream.next() => match msg {
                                Some(Ok(msg)) => msg,
                                _ => break,
                            },
                            _ = dropped.recv() => {
                                writer.abort();
                                return; // dropped without a close frame
                            }
                        };
                        let payload = match msg {
                            Message::Text(t) => Payload::from(t.as_str().to_owned()),
                            Message::Binary(b) => Payload::from(b.to_vec()),
                            Message::Close(f) => {
                                let _ =
                                    seen.send(Seen::Close(f.map(|f| {
                                        (u16::from(f.code), f.reason.as_str().to_owned())
                                    })));
                                break;
                            }
                            _ => continue,
                        };
                        let Ok(envelope) = Envelope::decode(payload) else {
                            break;
                        };
                        let now = Instant::now();
                        let mut sessions = sessions.lock().unwrap();
                        if let Envelope::Hello {
                            client_id,
                            recv_seq,
                            session,
                            attempt,
                            secret,
                        } = envelope
                        {
                            client = Some(client_id);
                            let s = sessions.entry(client_id).or_insert_with(|| {
                                // A test server: a secret made of the session id will do.
                                let secret = SessionSecret::from_bytes(
                                    [session_id.to_le_bytes(), client_id.to_le_bytes()]
                                        .concat()
                                        .try_into()
                                        .expect("16 bytes"),
                                );
                                ServerSession::new(session_id, secret, ResumeLimits::default())
                            });
                            // A stale transport (the client moved on), or not the session's
                            // client: just close it.
                            let Ok(welcome) = s.hello(now, secret, recv_seq, session, attempt)
                            else {
                                break;
                            };
                            for e in welcome {
                                let _ = out_tx.send(frame(e));
                            }
                            continue;
                        }
                        let Some(s) = client.and_then(|c| sessions.get_mut(&c)) else {
                            break;
                        };
                        let r = s.receive(now, envelope);
                        if let Some(reply) = r.reply {
                            let _ = out_tx.send(frame(reply));
                        }
                        if let Some(p) = r.deliver {
                            let _ = seen.send(match &p {
                                Payload::Text(t) => Seen::Text(t.to_string()),
                                Payload::Binary(b) => Seen::Binary(b.to_vec()),
                            });
                            let _ = out_tx.send(frame(s.send(now, p)));
                        }
                        if let (Some(delay), Some(ack)) = (ack_delay, s.take_ack()) {
                            let out_tx = out_tx.clone();
                            tokio::spawn(async move {
                                tokio::time::sleep(delay).await;
                                let _ = out_tx.send(frame(ack));
                            });
                        }
                    }
                    drop(out_tx);
                    let _ = writer.await;
                });
            }
        });
        ProtocolServer {
            addr,
            tasks,
            seen,
            drop_all,
        }
    }

    /// Drops every connection without a close frame; sessions are kept.
    pub fn drop_connections(&self) {
        let _ = self.drop_all.send(());
    }

    /// The next thing that arrived.
    pub async fn seen(&mut self) -> Seen {
        within("the server to receive", self.seen.recv())
            .await
            .expect("server gone")
    }

    pub async fn stop(mut self) {
        self.tasks.shutdown().await;
    }
}
