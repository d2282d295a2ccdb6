//! The reference server (crates/tether-server) for tests: started and restarted on
//! 127.0.0.1, tokens signed with the tests' secret and counted, and a tally of what
//! arrived where.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tether_core::{AuthConfig, DropReason, Event, Instant, MessageId, Payload, State, Token};
use tether_native::{Client, ClientBuilder, Events, TokenProvider};
use tether_server::{Delivered, Hub, RunningServer, Secret, Server, ServerConfig, TokenAuthority};
use tokio::sync::mpsc::UnboundedReceiver;

use super::within;

/// Signs every token of these tests.
pub const SECRET: &[u8] = b"tether-native fault tests";

/// A server config on a free port of 127.0.0.1, checking tokens signed with [`SECRET`].
pub fn server_config() -> ServerConfig {
    let mut config = ServerConfig::default();
    config.bind = "127.0.0.1:0".parse().unwrap();
    config.secret = Secret::new(SECRET);
    // Tokens expire when they say (no clock-skew leeway): a test of refreshes knows
    // the old token no longer holds the connection.
    config.token_leeway = Duration::ZERO;
    config
}

/// Starts a server with `config` serving `hub`.
pub async fn start(config: &ServerConfig, hub: &Arc<Hub>) -> RunningServer {
    within(
        "the server to start",
        Server::start(config.clone(), hub.clone()),
    )
    .await
    .expect("the server starts")
}

/// Starts a server again on `addr` with the same hub: its sessions live on.
pub async fn restart(config: &ServerConfig, addr: SocketAddr, hub: &Arc<Hub>) -> RunningServer {
    let mut config = config.clone();
    config.bind = addr;
    start(&config, hub).await
}

/// A token provider for one user that counts its calls; the first `forged` calls answer
/// a token the server refuses.
#[derive(Clone)]
pub struct Tokens {
    authority: Arc<TokenAuthority>,
    user: &'static str,
    ttl: Duration,
    forged: usize,
    calls: Arc<AtomicUsize>,
}

impl Tokens {
    /// Valid tokens for `user`, each living `ttl` (and saying so in `expires_at`).
    pub fn new(user: &'static str, ttl: Duration) -> Self {
        Tokens {
            authority: Arc::new(TokenAuthority::new(Secret::new(SECRET))),
            user,
            ttl,
            forged: 0,
            calls: Arc::default(),
        }
    }

    /// The first `n` tokens are forged.
    pub fn forged_first(mut self, n: usize) -> Self {
        self.forged = n;
        self
    }

    /// Tokens handed out so far.
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// The provider to give the client.
    pub fn provider(&self) -> impl TokenProvider {
        let tokens = self.clone();
        move || {
            let call = tokens.calls.fetch_add(1, Ordering::SeqCst);
            let value = if call < tokens.forged {
                Ok("forged.token".to_owned())
            } else {
                tokens
                    .authority
                    .issue(tokens.user, tokens.ttl)
                    .map_err(|e| e.to_string())
            };
            let expires_at = Some(Instant::now() + tokens.ttl);
            std::future::ready(value.map(|value| Token { value, expires_at }))
        }
    }

    /// A protocol-mode client of the server at `addr` with these tokens (the tests'
    /// backoff, see [`super::config`]).
    pub fn protocol_client(&self, addr: SocketAddr) -> ClientBuilder {
        Client::builder(
            super::config(addr)
                .protocol()
                .auth(AuthConfig::default())
                .build()
                .unwrap(),
        )
        .token_provider(self.provider())
    }
}

/// How many times each text payload arrived.
#[derive(Debug, Default)]
pub struct Tally(HashMap<String, u32>);

impl Tally {
    /// Counts one arrival.
    pub fn add(&mut self, payload: &Payload) {
        let Payload::Text(text) = payload else {
            panic!("a binary payload: {payload:?}")
        };
        *self.0.entry(text.to_string()).or_default() += 1;
    }

    /// Asserts that each of `expected` arrived exactly once, and nothing else did.
    pub fn assert_exactly_once<'a>(&self, what: &str, expected: impl IntoIterator<Item = &'a str>) {
        let mut rest = self.0.clone();
        let mut lost = Vec::new();
        for text in expected {
            match rest.remove(text) {
                Some(1) => {}
                Some(n) => panic!("{what}: {text:?} arrived {n} times"),
                None => lost.push(text.to_owned()),
            }
        }
        assert!(lost.is_empty(), "{what}: lost {} ({lost:?})", lost.len());
        assert!(rest.is_empty(), "{what}: unexpected {rest:?}");
    }
}

/// Waits until the server delivered `text` (from any client), counting every delivery
/// on the way into `tally`.
pub async fn tap_until(tap: &mut UnboundedReceiver<Delivered>, tally: &mut Tally, text: &str) {
    within(&format!("the server to deliver {text:?}"), async {
        loop {
            let delivered = tap.recv().await.expect("the hub is alive");
            tally.add(&delivered.payload);
            if delivered.payload == Payload::Text(text.into()) {
                return;
            }
        }
    })
    .await;
}

/// A client's events, recorded while a test waits for some of them.
pub struct Recorder {
    events: Events,
    /// The messages from the server.
    pub messages: Tally,
    /// `Delivered` events, by message.
    pub delivered: HashMap<MessageId, u32>,
    /// `Dropped` events, in order.
    pub dropped: Vec<(MessageId, DropReason)>,
    /// Every other event, in order.
    pub log: Vec<Event>,
}

impl Recorder {
    pub fn new(events: Events) -> Self {
        Recorder {
            events,
            messages: Tally::default(),
            delivered: HashMap::new(),
            dropped: Vec::new(),
            log: Vec::new(),
        }
    }

    /// Records events until one matches `pred`, and returns it.
    pub async fn until(&mut self, what: &str, mut pred: impl FnMut(&Event) -> bool) -> Event {
        within(what, async {
            loop {
                let Some(event) = self.events.recv().await else {
                    panic!("event stream ended while waiting for {what}")
                };
                self.record(&event);
                if pred(&event) {
                    return event;
                }
            }
        })
        .await
    }

    /// Records events until the stream ends (the client is gone).
    pub async fn until_the_end(&mut self) {
        within("the event stream to end", async {
            while let Some(event) = self.events.recv().await {
                self.record(&event);
            }
        })
        .await;
    }

    fn record(&mut self, event: &Event) {
        match event {
            Event::Message(p) => self.messages.add(p),
            Event::Delivered { id } => *self.delivered.entry(*id).or_default() += 1,
            Event::Dropped { id, reason } => self.dropped.push((*id, *reason)),
            other => self.log.push(other.clone()),
        }
    }

    /// Records events until the client is connected (again).
    pub async fn until_connected(&mut self) {
        self.until("connected", |e| {
            matches!(
                e,
                Event::StateChanged {
                    to: State::Connected,
                    ..
                }
            )
        })
        .await;
    }

    /// Records events until the message `text` arrives.
    pub async fn until_message(&mut self, text: &str) {
        let want = Event::Message(Payload::Text(text.into()));
        self.until(&format!("the message {text:?}"), |e| *e == want)
            .await;
    }

    /// Recorded events (but messages, deliveries and drops) matching `pred`.
    pub fn logged(&self, pred: impl Fn(&Event) -> bool) -> Vec<&Event> {
        self.log.iter().filter(|e| pred(e)).collect()
    }

    /// Events this reader skipped because it fell behind: any would void the counts.
    pub fn missed(&self) -> u64 {
        self.events.missed()
    }

    /// Asserts that each of `ids` was confirmed exactly once.
    pub fn assert_delivered_once(&self, ids: &[MessageId]) {
        for id in ids {
            assert_eq!(
                self.delivered.get(id),
                Some(&1),
                "Delivered events of {id:?}"
            );
        }
    }
}
