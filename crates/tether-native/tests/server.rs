//! The native client against the reference server (crates/tether-server): protocol mode
//! with real tokens, a server restart, an auth rejection and the HTTP polling fallback.

mod support;

use std::sync::Arc;
use std::time::Duration;

use tether_core::{AuthConfig, Event, FallbackConfig, Payload, State, TerminalReason, Token};
use tether_native::Client;
use tether_server::{Hub, RunningServer, Secret, Server, ServerConfig, TokenAuthority};
use tokio::net::TcpListener;

use support::{config, next_event, wait_state, within};

const SECRET: &[u8] = b"tether-native tests";

async fn start_server(bind: std::net::SocketAddr, hub: Arc<Hub>) -> RunningServer {
    let mut config = ServerConfig::default();
    config.bind = bind;
    config.secret = Secret::new(SECRET);
    within("the server", Server::start(config, hub))
        .await
        .unwrap()
}

/// A token provider minting valid tokens for `user`.
fn tokens(user: &'static str) -> impl Fn() -> std::future::Ready<Result<Token, String>> {
    let authority = TokenAuthority::new(Secret::new(SECRET));
    move || {
        std::future::ready(
            authority
                .issue(user, Duration::from_secs(60))
                .map(|value| Token {
                    value,
                    expires_at: None,
                })
                .map_err(|e| e.to_string()),
        )
    }
}

#[tokio::test]
async fn protocol_mode_survives_a_server_restart() {
    let hub = Arc::new(Hub::new());
    let server = start_server("127.0.0.1:0".parse().unwrap(), hub.clone()).await;
    let addr = server.addr();
    let config = config(addr)
        .protocol()
        .auth(AuthConfig::default())
        .build()
        .unwrap();
    let client = Client::builder(config)
        .token_provider(tokens("alice"))
        .spawn()
        .unwrap();
    let mut events = client.events();

    within("an ack", client.send_confirmed("one"))
        .await
        .unwrap();
    let echo = next_event(&mut events, "the echo", |e| matches!(e, Event::Message(_))).await;
    assert_eq!(echo, Event::Message(Payload::Text("one".into())));

    // The process dies; its sessions live on in the hub, as across a restart that keeps
    // them.
    server.kill().await;
    next_event(&mut events, "the disconnect", |e| {
        matches!(e, Event::Disconnected { .. })
    })
    .await;
    let two = client.send("two").unwrap();
    let server = start_server(addr, hub).await;
    // The acknowledgement and the echo, in either order.
    let (mut delivered, mut echoed) = (false, false);
    while !(delivered && echoed) {
        match next_event(&mut events, "the delivery and the echo", |_| true).await {
            Event::Delivered { id } if id == two => delivered = true,
            Event::Message(p) => {
                assert_eq!(p, Payload::Text("two".into()));
                echoed = true;
            }
            _ => {}
        }
    }
    let m = client.metrics();
    assert_eq!((m.reconnects, m.messages_in, m.queue_depth), (1, 2, 0));

    within("close", client.close(1000, "done")).await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_bad_token_stops_with_auth_rejected() {
    let server = start_server("127.0.0.1:0".parse().unwrap(), Arc::new(Hub::new())).await;
    let config = config(server.addr())
        .protocol()
        .auth(AuthConfig::default())
        .build()
        .unwrap();
    let client = Client::builder(config)
        .token_provider(|| async {
            Ok::<_, String>(Token {
                value: "forged".into(),
                expires_at: None,
            })
        })
        .spawn()
        .unwrap();
    let mut events = client.events();
    let stopped = next_event(&mut events, "the stop", |e| matches!(e, Event::Stopped(_))).await;
    let Event::Stopped(TerminalReason::AuthRejected(cause)) = stopped else {
        panic!("{stopped:?}")
    };
    assert_eq!(cause.status, Some(401));
    assert_eq!(client.state(), State::Error);
    server.shutdown().await;
}

#[tokio::test]
async fn falls_back_to_http_polling_when_websockets_fail() {
    let server = start_server("127.0.0.1:0".parse().unwrap(), Arc::new(Hub::new())).await;
    // WebSockets go to a middlebox that accepts and drops every connection (a port where
    // nothing listens would be an outage, which does not count toward the fallback);
    // polling reaches the server.
    let middlebox = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let nowhere = middlebox.local_addr().unwrap();
    let dropper = tokio::spawn(async move {
        while let Ok((stream, _)) = middlebox.accept().await {
            drop(stream);
        }
    });
    let mut fallback = FallbackConfig::new(format!("http://{}/poll", server.addr()));
    fallback.after_failures = 1;
    let config = config(nowhere)
        .protocol()
        .auth(AuthConfig::default())
        .fallback(fallback)
        .build()
        .unwrap();
    let client = Client::builder(config)
        .token_provider(tokens("bob"))
        .spawn()
        .unwrap();
    let mut events = client.events();
    next_event(&mut events, "the fallback", |e| {
        *e == Event::FallbackChanged { active: true }
    })
    .await;
    wait_state(&client, State::Connected).await;
    assert!(client.metrics().fallback_active);

    within("an ack over polling", client.send_confirmed("polled"))
        .await
        .unwrap();
    let echo = next_event(&mut events, "the echo", |e| matches!(e, Event::Message(_))).await;
    assert_eq!(echo, Event::Message(Payload::Text("polled".into())));
    // Every request after the polling Hello proved the session (Tether-Session): the
    // server answered each one, none with the 503 that would have started over.
    let metrics = client.metrics();
    assert_eq!(
        (metrics.reconnects, metrics.state),
        (0, State::Connected),
        "{metrics:?}"
    );

    within("close", client.close(1000, "done")).await;
    dropper.abort();
    server.shutdown().await;
}
