//! A protocol session handed from one client to the next (`Client::handoff`,
//! `ClientBuilder::resume`), as the browser's tabs do, against the reference server on
//! 127.0.0.1: the next client proves the same session, and what the first one's
//! application took is not delivered again.

mod support;

use std::sync::Arc;
use std::time::Duration;

use tether_core::{Event, HandoffError, Payload};
use tether_native::{BuildError, Client, Events};
use tether_server::Hub;

use support::reference::{self, Tokens};
use support::{config, within};

/// The next echo's text.
async fn echo(events: &mut Events) -> String {
    loop {
        match events.recv().await.expect("the client is running") {
            Event::Message(Payload::Text(text)) => return text.to_string(),
            Event::SessionReset { .. } => panic!("the session was reset"),
            _ => {}
        }
    }
}

#[tokio::test]
async fn a_session_handed_off_goes_on_in_the_next_client_exactly_once() {
    let hub = Arc::new(Hub::new());
    let server = reference::start(&reference::server_config(), &hub).await;
    let tokens = Tokens::new("handoff", Duration::from_secs(3600));
    let first = tokens.protocol_client(server.addr()).spawn().unwrap();
    let mut events = first.events();
    assert!(
        first.handoff().is_none(),
        "nothing to hand off before a Welcome"
    );
    within("the first send", first.send_confirmed("one"))
        .await
        .unwrap();
    assert_eq!(within("the first echo", echo(&mut events)).await, "one");
    let session = first.handoff().expect("a welcomed session");
    let id = first.client_id();
    // Closed at once: a client that lingers would take the session back.
    first.close_now(1000, "handed off").await;

    let next = tokens
        .protocol_client(server.addr())
        .resume(session)
        .spawn()
        .unwrap();
    let mut events = next.events();
    assert_eq!(
        next.client_id(),
        id,
        "the same client, as the server knows it"
    );
    within("the next send", next.send_confirmed("two"))
        .await
        .unwrap();
    // "one" was taken by the first client's application: it does not come again.
    assert_eq!(within("the next echo", echo(&mut events)).await, "two");
    next.close(1000, "done").await;
}

#[tokio::test]
async fn a_handoff_into_plain_mode_is_refused_at_spawn() {
    let hub = Arc::new(Hub::new());
    let server = reference::start(&reference::server_config(), &hub).await;
    let tokens = Tokens::new("handoff-plain", Duration::from_secs(3600));
    let first = tokens.protocol_client(server.addr()).spawn().unwrap();
    within("a confirmed send", first.send_confirmed("x"))
        .await
        .unwrap();
    let session = first.handoff().expect("a welcomed session");
    first.close_now(1000, "done").await;
    let plain = Client::builder(config(server.addr()).build().unwrap()).resume(session);
    assert!(matches!(
        plain.spawn(),
        Err(BuildError::Handoff(HandoffError::NotProtocol))
    ));
}
