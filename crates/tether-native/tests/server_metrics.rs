//! The reference server's metrics against what its clients saw: every message counted
//! once each way through a server restart (resends and replays included), and an
//! attempt the client abandoned before its handshake is not a failure of the server.

mod support;

use std::sync::Arc;
use std::time::Duration;

use tether_core::Event;
use tether_server::{Hub, Secret, TokenAuthority};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

use support::reference::{self, Tally, Tokens, SECRET};
use support::within;

const HOUR: Duration = Duration::from_secs(3600);

type Socket = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

/// A raw WebSocket to `/ws` with `Authorization: Bearer <token>`, upgraded and nothing
/// sent: what a client is before its Hello.
async fn upgraded(addr: std::net::SocketAddr, token: &str) -> Socket {
    let mut request = format!("ws://{addr}/ws").into_client_request().unwrap();
    request.headers_mut().insert(
        "authorization",
        HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
    );
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    within("upgrade", tokio_tungstenite::client_async(request, tcp))
        .await
        .unwrap()
        .0
}

/// Waits, without polling, until `done` holds of the hub.
async fn until_hub(hub: &Hub, what: &str, done: impl Fn(&Hub) -> bool) {
    let mut changes = hub.changes();
    within(what, async {
        loop {
            changes.borrow_and_update();
            if done(hub) {
                return;
            }
            changes.changed().await.unwrap();
        }
    })
    .await;
}

#[tokio::test]
async fn messages_are_counted_once_each_way_through_a_restart() {
    const CLIENTS: usize = 3;
    const EACH: usize = 40;
    let hub = Arc::new(Hub::new());
    let server_config = reference::server_config();
    let server = reference::start(&server_config, &hub).await;
    let addr = server.addr();
    let mut clients = Vec::new();
    for n in 0..CLIENTS {
        let user: &'static str = Box::leak(format!("counted-{n}").into_boxed_str());
        let tokens = Tokens::new(user, HOUR);
        let client = tokens.protocol_client(addr).spawn().unwrap();
        let events = client.events();
        clients.push((client, events, Tally::default()));
    }
    // Half before the restart, half during it (queued, then resent), all echoed.
    for (n, (client, _, _)) in clients.iter().enumerate() {
        for i in 0..EACH / 2 {
            client.send(format!("c{n}-m{i}")).unwrap();
        }
    }
    server.kill().await;
    for (n, (client, _, _)) in clients.iter().enumerate() {
        for i in EACH / 2..EACH {
            client.send(format!("c{n}-m{i}")).unwrap();
        }
    }
    let server = reference::restart(&server_config, addr, &hub).await;
    for (client, events, tally) in &mut clients {
        within("every echo", async {
            let mut got = 0;
            while got < EACH {
                if let Some(Event::Message(p)) = events.recv().await {
                    tally.add(&p);
                    got += 1;
                }
            }
        })
        .await;
        // The acknowledgements of those echoes go out before the close.
        within("close", client.close(1000, "done")).await;
    }
    for (n, (_, _, tally)) in clients.iter().enumerate() {
        tally.assert_exactly_once(
            "echoes",
            (0..EACH)
                .map(|i| format!("c{n}-m{i}"))
                .collect::<Vec<_>>()
                .iter()
                .map(String::as_str),
        );
    }
    let total = (CLIENTS * EACH) as u64;
    until_hub(&hub, "every acknowledgement counted", |h| {
        h.metrics().messages_out_total >= total && h.connections() == 0
    })
    .await;
    let m = hub.metrics();
    assert_eq!(m.messages_in_total, total, "client messages, once each");
    assert_eq!(
        m.messages_out_total, total,
        "echoes the clients received, once each"
    );
    drop(server);
}

#[tokio::test]
async fn a_handshake_the_client_abandons_is_not_a_server_failure() {
    let hub = Arc::new(Hub::new());
    let server = reference::start(&reference::server_config(), &hub).await;
    let token = TokenAuthority::new(Secret::new(SECRET))
        .issue("walker", HOUR)
        .unwrap();
    // Upgraded, then gone without a Hello: an attempt given up (say, after the client's
    // connect timeout while the server was frozen).
    let socket = upgraded(server.addr(), &token).await;
    until_hub(&hub, "the connection", |h| h.connections() == 1).await;
    drop(socket);
    until_hub(&hub, "the connection to end", |h| h.connections() == 0).await;
    let m = hub.metrics();
    assert_eq!(m.total_connections, 1);
    assert_eq!(m.abandoned_connections, 1);
    assert_eq!(m.failed_connections, 0);
    assert_eq!(m.connection_reliability, 100.0);

    // A refused token still is a failure.
    let mut forged = format!("ws://{}/ws", server.addr())
        .into_client_request()
        .unwrap();
    forged
        .headers_mut()
        .insert("authorization", HeaderValue::from_static("Bearer forged"));
    let tcp = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
    assert!(tokio_tungstenite::client_async(forged, tcp).await.is_err());
    let m = hub.metrics();
    assert_eq!((m.total_connections, m.failed_connections), (2, 1));
    // Of the attempts that count (the abandoned one does not), none succeeded.
    assert_eq!(m.connection_reliability, 0.0);
}

/// Before its Hello a client decides only how its own leaving counts: a close the server
/// made for a protocol error stays a failure even if the client then closes with 1000,
/// and a client that closes with an error code fails its attempt rather than abandoning it.
#[tokio::test]
async fn a_client_cannot_pass_a_failed_handshake_off_as_abandoned() {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
    use tokio_tungstenite::tungstenite::protocol::CloseFrame;
    use tokio_tungstenite::tungstenite::Message;

    let hub = Arc::new(Hub::new());
    let server = reference::start(&reference::server_config(), &hub).await;
    let token = TokenAuthority::new(Secret::new(SECRET))
        .issue("mallory", HOUR)
        .unwrap();
    let connect = || upgraded(server.addr(), &token);
    // Garbage instead of a Hello, then at once a normal close.
    let mut socket = connect().await;
    socket.send(Message::text("not a hello")).await.unwrap();
    let _ = socket
        .send(Message::Close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "bye".into(),
        })))
        .await;
    until_hub(&hub, "the garbage connection to end", |h| {
        h.metrics().failed_connections + h.metrics().abandoned_connections == 1
    })
    .await;
    drop(socket);
    let m = hub.metrics();
    assert_eq!((m.failed_connections, m.abandoned_connections), (1, 0));

    // An error close before the Hello is the client's failure, not an abandoned attempt.
    let mut socket = connect().await;
    socket
        .send(Message::Close(Some(CloseFrame {
            code: CloseCode::Library(4000),
            reason: "broken".into(),
        })))
        .await
        .unwrap();
    until_hub(&hub, "the second connection to end", |h| {
        h.metrics().failed_connections + h.metrics().abandoned_connections == 2
    })
    .await;
    drop(socket);
    let m = hub.metrics();
    assert_eq!((m.failed_connections, m.abandoned_connections), (2, 0));
    assert_eq!(m.total_connections, 2);
}
