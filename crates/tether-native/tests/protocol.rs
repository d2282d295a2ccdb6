//! Protocol mode against a small server built on the core's `ServerSession`.

mod support;

use std::time::Duration;

use tether_core::{DropReason, Event, Payload, State};
use tether_native::{Client, DeliveryError};

use support::{config, next_event, wait_state, within, ProtocolServer, Seen};

#[tokio::test]
async fn send_confirmed_resolves_on_the_acknowledgement() {
    let mut server = ProtocolServer::start(Some(Duration::ZERO)).await;
    let client = Client::connect(config(server.addr).protocol().build().unwrap()).unwrap();
    let mut events = client.events();

    // Sent before the connection exists: queued, then written and acknowledged.
    let id = within("the acknowledgement", client.send_confirmed("first"))
        .await
        .unwrap();
    assert_eq!(server.seen().await, Seen::Text("first".into()));
    let echo = next_event(&mut events, "the echo", |e| matches!(e, Event::Message(_))).await;
    assert_eq!(echo, Event::Message(Payload::Text("first".into())));
    next_event(&mut events, "delivered", |e| *e == Event::Delivered { id }).await;

    let id2 = within(
        "the second acknowledgement",
        client.send_confirmed(vec![9u8]),
    )
    .await
    .unwrap();
    assert!(id2 > id);
    assert_eq!(client.metrics().queue_depth, 0);
}

#[tokio::test]
async fn close_waits_for_acknowledgements_then_closes() {
    let mut server = ProtocolServer::start(Some(Duration::from_millis(100))).await;
    let client = Client::connect(config(server.addr).protocol().build().unwrap()).unwrap();
    let mut events = client.events();
    wait_state(&client, State::Connected).await;

    let id = client.send("last words").unwrap();
    assert_eq!(server.seen().await, Seen::Text("last words".into()));
    within("close", client.close(1000, "done")).await;
    // The acknowledgement came in while closing: delivered, then the close frame.
    next_event(&mut events, "delivered", |e| *e == Event::Delivered { id }).await;
    assert_eq!(
        server.seen().await,
        Seen::Close(Some((1000, "done".into())))
    );
}

#[tokio::test]
async fn close_gives_up_on_acknowledgements_after_the_linger() {
    let mut server = ProtocolServer::start(None).await;
    let config = config(server.addr)
        .protocol()
        .close_linger(Duration::from_millis(200))
        .build()
        .unwrap();
    let client = Client::connect(config).unwrap();
    wait_state(&client, State::Connected).await;

    let pending = {
        let client = client.clone();
        tokio::spawn(async move { client.send_confirmed("never acked").await })
    };
    assert_eq!(server.seen().await, Seen::Text("never acked".into()));
    within("close", client.close(1000, "done")).await;
    assert_eq!(
        within("the confirmation", pending).await.unwrap(),
        Err(DeliveryError::Dropped(DropReason::Unconfirmed))
    );
    assert_eq!(
        server.seen().await,
        Seen::Close(Some((1000, "done".into())))
    );
}

#[tokio::test]
async fn messages_survive_a_dropped_connection_exactly_once() {
    let mut server = ProtocolServer::start(Some(Duration::ZERO)).await;
    let client = Client::connect(config(server.addr).protocol().build().unwrap()).unwrap();
    let mut events = client.events();
    wait_state(&client, State::Connected).await;
    within("an ack", client.send_confirmed("one"))
        .await
        .unwrap();
    assert_eq!(server.seen().await, Seen::Text("one".into()));

    server.drop_connections();
    next_event(&mut events, "the disconnect", |e| {
        matches!(e, Event::Disconnected { .. })
    })
    .await;
    let two = client.send("two").unwrap();
    next_event(&mut events, "delivered after the reconnect", |e| {
        *e == Event::Delivered { id: two }
    })
    .await;
    assert_eq!(server.seen().await, Seen::Text("two".into()));
    let m = client.metrics();
    assert_eq!((m.reconnects, m.messages_out, m.queue_depth), (1, 2, 0));
}
