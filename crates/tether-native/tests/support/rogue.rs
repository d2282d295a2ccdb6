//! A misbehaving Tether server: speaks just enough of the protocol (PROTOCOL.md) to
//! welcome a client, acknowledge and echo its text messages and resume its session, and
//! breaks the rules once, on the connection the test says.
//!
//! It reads only the first two fields of a Hello (`H <client id> <recv_seq> …`), so it
//! does not care what else a Hello carries.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

use super::{within, Seen};

/// How one connection breaks the protocol.
#[derive(Clone, Debug)]
pub enum Fault {
    /// A frame that is not an envelope, right after the Welcome.
    Garbage(Message),
    /// A message instead of the Welcome.
    MessageBeforeWelcome,
    /// A second Welcome, after the first.
    SecondWelcome,
    /// An Ack of a message the client never sent.
    AckOfTheUnsent,
    /// A message that skips a sequence number.
    Gap,
    /// The next server message, of this many bytes, numbered and kept for resend like
    /// any other.
    LargeMessage(usize),
    /// A text frame of this many bytes that is not an envelope, sent once and forgotten.
    LargeFrame(usize),
}

/// The secret in every Welcome of the rogue server.
const WELCOME_SECRET: &str = "0123456789abcdef0123456789abcdef";

/// The one session the server keeps (every client is the same client to it).
#[derive(Debug, Default)]
struct Session {
    greeted: bool,
    /// Client messages received in order.
    recv_seq: u64,
    /// Server messages sent, `sent[i]` numbered `i + 1`; kept for resend.
    sent: Vec<String>,
}

impl Session {
    /// The Welcome for a Hello with `recv_seq`, then what the client has not received.
    fn welcome(&mut self, recv_seq: u64) -> Vec<Message> {
        let (mut out, from) = if self.greeted {
            let w = format!("W 1 {} 1 {WELCOME_SECRET}", self.recv_seq);
            (vec![Message::text(w)], recv_seq)
        } else {
            self.greeted = true;
            (vec![Message::text(format!("W 1 0 0 {WELCOME_SECRET}"))], 0)
        };
        for (i, payload) in self.sent.iter().enumerate().skip(from as usize) {
            out.push(Message::text(format!("M {} {payload}", i + 1)));
        }
        out
    }

    /// Numbers a server message.
    fn send(&mut self, payload: String) -> Message {
        self.sent.push(payload);
        let seq = self.sent.len();
        Message::text(format!("M {seq} {}", self.sent[seq - 1]))
    }

    /// What `fault` sends after the Welcome.
    fn fault(&mut self, fault: &Fault) -> Vec<Message> {
        match fault {
            Fault::Garbage(frame) => vec![frame.clone()],
            Fault::MessageBeforeWelcome => Vec::new(),
            Fault::SecondWelcome => vec![Message::text(format!("W 1 0 0 {WELCOME_SECRET}"))],
            Fault::AckOfTheUnsent => vec![Message::text(format!("A {}", self.recv_seq + 1000))],
            Fault::Gap => {
                let seq = self.sent.len() + 2;
                vec![Message::text(format!("M {seq} skipped one"))]
            }
            Fault::LargeMessage(size) => vec![self.send("x".repeat(*size))],
            Fault::LargeFrame(size) => vec![Message::text("x".repeat(*size))],
        }
    }

    /// Answers one frame from the client.
    fn answer(&mut self, frame: &str) -> Answer {
        let mut fields = frame.splitn(3, ' ');
        let (tag, first) = (fields.next(), fields.next());
        let number = first.and_then(|n| n.parse::<u64>().ok());
        match (tag, number) {
            (Some("M"), Some(seq)) => {
                let payload = fields.next().unwrap_or("").to_owned();
                if seq == self.recv_seq + 1 {
                    self.recv_seq = seq;
                    let ack = Message::text(format!("A {seq}"));
                    let echo = self.send(payload.clone());
                    Answer::Deliver(payload, vec![ack, echo])
                } else if seq <= self.recv_seq {
                    Answer::Reply(vec![Message::text(format!("A {}", self.recv_seq))])
                } else {
                    Answer::Close
                }
            }
            (Some("P"), Some(id)) => Answer::Reply(vec![Message::text(format!("O {id}"))]),
            (Some("A" | "T"), _) => Answer::Reply(Vec::new()),
            _ => Answer::Close,
        }
    }
}

enum Answer {
    Reply(Vec<Message>),
    /// A client message delivered, and the frames to send back.
    Deliver(String, Vec<Message>),
    /// The client broke the protocol: the test server gives up on the connection.
    Close,
}

/// A server on 127.0.0.1 whose `n`-th connection commits `faults[n]` (if any) and
/// otherwise behaves.
pub struct RogueServer {
    pub addr: SocketAddr,
    tasks: JoinSet<()>,
    seen: mpsc::UnboundedReceiver<Seen>,
    connections: Arc<AtomicUsize>,
}

impl RogueServer {
    pub async fn start(faults: Vec<Fault>) -> RogueServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().unwrap();
        let session = Arc::new(Mutex::new(Session::default()));
        let connections = Arc::new(AtomicUsize::new(0));
        let (seen_tx, seen) = mpsc::unbounded_channel();
        let mut tasks = JoinSet::new();
        let counter = connections.clone();
        tasks.spawn(async move {
            let mut served = JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                let n = counter.fetch_add(1, Ordering::SeqCst);
                let fault = faults.get(n).cloned();
                let (session, seen) = (session.clone(), seen_tx.clone());
                served.spawn(async move {
                    // Large frames go out whatever their size; the client is the one
                    // with a limit.
                    let config = WebSocketConfig::default()
                        .max_message_size(None)
                        .max_frame_size(None);
                    let Ok(mut ws) =
                        tokio_tungstenite::accept_async_with_config(stream, Some(config)).await
                    else {
                        return;
                    };
                    let recv_seq = match ws.next().await {
                        Some(Ok(Message::Text(hello))) if hello.starts_with("H ") => hello
                            .split(' ')
                            .nth(2)
                            .and_then(|n| n.parse::<u64>().ok())
                            .unwrap_or(0),
                        _ => return,
                    };
                    let greeting = {
                        let mut s = session.lock().unwrap();
                        match &fault {
                            Some(Fault::MessageBeforeWelcome) => {
                                vec![Message::text("M 1 too early")]
                            }
                            Some(f) => {
                                let mut out = s.welcome(recv_seq);
                                out.extend(s.fault(f));
                                out
                            }
                            None => s.welcome(recv_seq),
                        }
                    };
                    for frame in greeting {
                        if ws.send(frame).await.is_err() {
                            return;
                        }
                    }
                    while let Some(Ok(message)) = ws.next().await {
                        let answer = match message {
                            Message::Text(text) => session.lock().unwrap().answer(text.as_str()),
                            Message::Close(frame) => {
                                let _ = seen
                                    .send(Seen::Close(frame.map(|f| {
                                        (u16::from(f.code), f.reason.as_str().to_owned())
                                    })));
                                // tungstenite answers the close; read until the end.
                                while let Some(Ok(_)) = ws.next().await {}
                                return;
                            }
                            _ => continue,
                        };
                        let frames = match answer {
                            Answer::Reply(frames) => frames,
                            Answer::Deliver(payload, frames) => {
                                let _ = seen.send(Seen::Text(payload));
                                frames
                            }
                            Answer::Close => return,
                        };
                        for frame in frames {
                            if ws.send(frame).await.is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        RogueServer {
            addr,
            tasks,
            seen,
            connections,
        }
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// The next message delivered or close frame received, on any connection.
    pub async fn seen(&mut self) -> Seen {
        within("the rogue server to receive", self.seen.recv())
            .await
            .expect("server gone")
    }

    pub async fn stop(mut self) {
        self.tasks.shutdown().await;
    }
}
