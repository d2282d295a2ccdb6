//! Test helpers: a small tokio-tungstenite echo server on 127.0.0.1, and bounded waits.
//!
//! Stands in for the reference server (crates/tether-server) until the native tests run
//! against it.
#![allow(dead_code, clippy::result_large_err)]

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
    let mut watch = client.state();
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
