//! The client against a real WebSocket server on 127.0.0.1.

mod support;

use tether_core::{
    AttemptKind, AuthConfig, ConfigField, ConfigProblem, Event, Payload, SendError, State,
    TerminalReason, Token,
};
use tether_native::{BuildError, Client, DeliveryError};
use tokio::net::TcpListener;

use support::{config, next_event, wait_state, within, EchoServer, Seen};

#[tokio::test]
async fn connects_and_echoes_in_plain_mode() {
    let mut server = EchoServer::start().await;
    let client = Client::connect(config(server.addr).build().unwrap()).unwrap();
    let mut events = client.events();
    wait_state(&client, State::Connected).await;

    client.send("hello").unwrap();
    client.send(vec![1u8, 2, 3]).unwrap();
    assert_eq!(server.seen().await, Seen::Text("hello".into()));
    assert_eq!(server.seen().await, Seen::Binary(vec![1, 2, 3]));
    let got = next_event(&mut events, "the echo", |e| matches!(e, Event::Message(_))).await;
    assert_eq!(got, Event::Message(Payload::Text("hello".into())));
    let got = next_event(&mut events, "the binary echo", |e| {
        matches!(e, Event::Message(_))
    })
    .await;
    assert_eq!(got, Event::Message(Payload::from(vec![1, 2, 3])));

    let m = client.metrics();
    assert_eq!((m.messages_out, m.messages_in), (2, 2));
    assert_eq!(m.state, State::Connected);
}

#[tokio::test]
async fn first_events_reader_misses_nothing() {
    let server = EchoServer::start().await;
    let client = Client::connect(config(server.addr).build().unwrap()).unwrap();
    wait_state(&client, State::Connected).await;
    // Subscribed only now, yet it sees the connection from the start.
    let mut events = client.events();
    let first = next_event(&mut events, "the first event", |_| true).await;
    assert_eq!(
        first,
        Event::StateChanged {
            from: State::Disconnected,
            to: State::Connecting
        }
    );
    let second = next_event(&mut events, "the first attempt", |_| true).await;
    assert_eq!(
        second,
        Event::AttemptStarted {
            attempt: 1,
            kind: AttemptKind::WebSocket
        }
    );
    next_event(&mut events, "connected", |e| {
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

#[tokio::test]
async fn reconnects_after_the_server_closes_the_socket() {
    let mut server = EchoServer::start().await;
    let client = Client::connect(config(server.addr).build().unwrap()).unwrap();
    let mut events = client.events();
    wait_state(&client, State::Connected).await;

    server.kick(1001);
    let lost = next_event(&mut events, "the disconnect", |e| {
        matches!(e, Event::Disconnected { .. })
    })
    .await;
    let Event::Disconnected { cause, .. } = lost else {
        unreachable!()
    };
    assert_eq!((cause.code, cause.reason.as_str()), (Some(1001), "kicked"));
    let Event::ReconnectScheduled { attempt, .. } =
        next_event(&mut events, "the reconnect to be scheduled", |e| {
            matches!(e, Event::ReconnectScheduled { .. })
        })
        .await
    else {
        unreachable!()
    };
    let started = next_event(&mut events, "the next attempt", |e| {
        matches!(e, Event::AttemptStarted { .. })
    })
    .await;
    assert_eq!(
        started,
        Event::AttemptStarted {
            attempt: attempt + 1,
            kind: AttemptKind::WebSocket
        },
        "a connection lost early counts on"
    );
    next_event(&mut events, "connected again", |e| {
        matches!(
            e,
            Event::StateChanged {
                to: State::Connected,
                ..
            }
        )
    })
    .await;
    assert_eq!(server.connections(), 2);
    assert_eq!(client.metrics().reconnects, 1);

    client.send("still here").unwrap();
    assert_eq!(server.seen().await, Seen::Text("still here".into()));
}

#[tokio::test]
async fn reconnects_when_the_server_restarts_on_the_same_port() {
    let server = EchoServer::start().await;
    let client = Client::connect(config(server.addr).build().unwrap()).unwrap();
    let mut events = client.events();
    wait_state(&client, State::Connected).await;

    let addr = server.stop().await;
    next_event(&mut events, "the disconnect", |e| {
        matches!(e, Event::Disconnected { .. })
    })
    .await;
    // Attempts fail while nothing listens (refused), and go on.
    next_event(&mut events, "a refused attempt", |e| {
        matches!(
            e,
            Event::Error(tether_core::TetherError::AttemptFailed(
                tether_core::TransportFailure::Refused
            ))
        )
    })
    .await;

    let mut server = EchoServer::start_on(addr).await;
    next_event(&mut events, "connected again", |e| {
        matches!(
            e,
            Event::StateChanged {
                to: State::Connected,
                ..
            }
        )
    })
    .await;
    client.send("after restart").unwrap();
    assert_eq!(server.seen().await, Seen::Text("after restart".into()));
}

#[tokio::test]
async fn invalid_config_is_a_typed_error() {
    let mut bad = config("127.0.0.1:9".parse().unwrap()).build().unwrap();
    bad.url = "http://127.0.0.1:9/ws".into();
    let err = Client::connect(bad).unwrap_err();
    let BuildError::Config(e) = err else {
        panic!("{err:?}")
    };
    assert_eq!(
        (e.field, e.problem),
        (ConfigField::Url, ConfigProblem::NotWebSocketUrl)
    );

    let mut bad = config("127.0.0.1:9".parse().unwrap()).build().unwrap();
    bad.url = "ws:///no-host".into();
    assert!(matches!(
        Client::connect(bad),
        Err(BuildError::Config(e)) if e.problem == ConfigProblem::MalformedUrl
    ));

    let mut bad = config("127.0.0.1:9".parse().unwrap()).build().unwrap();
    bad.max_message_bytes = 0;
    assert!(
        matches!(Client::connect(bad), Err(BuildError::Config(e)) if e.field == ConfigField::MaxMessageBytes)
    );

    let auth = config("127.0.0.1:9".parse().unwrap())
        .auth(AuthConfig::default())
        .build()
        .unwrap();
    assert_eq!(
        Client::connect(auth).unwrap_err(),
        BuildError::NoTokenProvider
    );
}

#[test]
fn needs_a_tokio_runtime() {
    let config = config("127.0.0.1:9".parse().unwrap()).build().unwrap();
    assert_eq!(Client::connect(config).unwrap_err(), BuildError::NoRuntime);
}

#[tokio::test]
async fn subprotocol_and_authorization_reach_the_server() {
    let server = EchoServer::start().await;
    let config = config(server.addr)
        .protocols(["tether.v1", "chat"])
        .auth(AuthConfig::default())
        .build()
        .unwrap();
    let client = Client::builder(config)
        .token_provider(|| async {
            Ok::<_, String>(Token {
                value: "s3cr3t".into(),
                expires_at: None,
            })
        })
        .spawn()
        .unwrap();
    wait_state(&client, State::Connected).await;
    let hs = server.handshakes.lock().unwrap()[0].clone();
    assert_eq!(hs.protocol.as_deref(), Some("tether.v1, chat"));
    assert_eq!(hs.authorization.as_deref(), Some("Bearer s3cr3t"));
    assert_eq!(hs.path, "/ws", "no token in the URL with header placement");
}

#[tokio::test]
async fn token_in_the_query_when_so_placed() {
    let server = EchoServer::start().await;
    let config = config(server.addr)
        .auth(AuthConfig {
            placement: tether_core::TokenPlacement::Query("access_token".into()),
            ..AuthConfig::default()
        })
        .build()
        .unwrap();
    let client = Client::builder(config)
        .token_provider(|| async {
            Ok::<_, String>(Token {
                value: "a b".into(),
                expires_at: None,
            })
        })
        .spawn()
        .unwrap();
    wait_state(&client, State::Connected).await;
    let hs = server.handshakes.lock().unwrap()[0].clone();
    assert_eq!(hs.path, "/ws?access_token=a%20b");
    assert_eq!(hs.authorization, None);
}

#[tokio::test]
async fn sends_while_disconnected_are_flushed_in_order() {
    // A free port with nothing on it yet.
    let addr = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let client = Client::connect(config(addr).build().unwrap()).unwrap();
    let mut events = client.events();
    next_event(&mut events, "a failed attempt", |e| {
        matches!(e, Event::ReconnectScheduled { .. })
    })
    .await;
    for i in 0..20 {
        client.send(format!("m{i}")).unwrap();
    }
    assert_eq!(client.metrics().queue_depth, 20);

    let mut server = EchoServer::start_on(addr).await;
    for i in 0..20 {
        assert_eq!(server.seen().await, Seen::Text(format!("m{i}")));
    }
    for i in 0..20 {
        let got = next_event(&mut events, "an echo", |e| matches!(e, Event::Message(_))).await;
        assert_eq!(got, Event::Message(Payload::from(format!("m{i}"))));
    }
    assert_eq!(client.metrics().queue_depth, 0);
}

#[tokio::test]
async fn close_resolves_once_the_socket_is_closed() {
    let mut server = EchoServer::start().await;
    let client = Client::connect(config(server.addr).build().unwrap()).unwrap();
    let mut events = client.events();
    wait_state(&client, State::Connected).await;

    within("close", client.close(1000, "bye")).await;
    assert_eq!(client.state(), State::Closed);
    assert_eq!(server.seen().await, Seen::Close(Some((1000, "bye".into()))));
    let stopped = next_event(&mut events, "the stop", |e| matches!(e, Event::Stopped(_))).await;
    assert_eq!(
        stopped,
        Event::Stopped(TerminalReason::UserClosed {
            code: 1000,
            reason: "bye".into()
        })
    );
    assert_eq!(client.send("late"), Err(SendError::Stopped(State::Closed)));
    // Closing again is immediate.
    within("a second close", client.close(1000, "again")).await;

    // And the client can start again.
    client.reconnect();
    wait_state(&client, State::Connected).await;
    client.send("back").unwrap();
    assert_eq!(server.seen().await, Seen::Text("back".into()));
}

#[tokio::test]
async fn close_resolves_while_nothing_is_reachable() {
    let addr = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let client = Client::connect(config(addr).build().unwrap()).unwrap();
    client.send("never").unwrap();
    let mut events = client.events();
    within("close", client.close(1000, "giving up")).await;
    let dropped = next_event(&mut events, "the drop", |e| {
        matches!(e, Event::Dropped { .. })
    })
    .await;
    assert!(matches!(
        dropped,
        Event::Dropped {
            reason: tether_core::DropReason::Stopped,
            ..
        }
    ));
}

#[tokio::test]
async fn dropping_every_handle_closes_the_socket() {
    let mut server = EchoServer::start().await;
    let client = Client::connect(config(server.addr).build().unwrap()).unwrap();
    wait_state(&client, State::Connected).await;
    let clone = client.clone();
    drop(client);
    clone.send("from the clone").unwrap();
    assert_eq!(server.seen().await, Seen::Text("from the clone".into()));
    let mut events = clone.events();
    drop(clone);
    assert_eq!(
        server.seen().await,
        Seen::Close(Some((1000, "client dropped".into())))
    );
    // The task ends and the stream with it.
    within("the event stream to end", async {
        while events.recv().await.is_some() {}
    })
    .await;
}

#[tokio::test]
async fn send_confirmed_needs_the_protocol() {
    let server = EchoServer::start().await;
    let client = Client::connect(config(server.addr).build().unwrap()).unwrap();
    assert_eq!(
        client.send_confirmed("x").await,
        Err(DeliveryError::Unconfirmable)
    );
}

#[tokio::test]
async fn an_oversized_send_is_refused_at_once() {
    let server = EchoServer::start().await;
    let client =
        Client::connect(config(server.addr).max_message_bytes(8).build().unwrap()).unwrap();
    assert_eq!(
        client.send("123456789"),
        Err(SendError::TooLarge { size: 9, max: 8 })
    );
}

#[test]
fn handles_are_send_and_sync() {
    fn check<T: Send + Sync + Clone + 'static>() {}
    check::<Client>();
    fn send<T: Send>() {}
    send::<tether_native::Events>();
}

/// A runtime of its own, for the tests of a client that outlives the one it was made on.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn a_client_outliving_its_runtime_never_hangs() {
    let first = runtime();
    let addr = "127.0.0.1:9".parse().unwrap();
    let client = first
        .block_on(async { Client::connect(config(addr).protocol().build().unwrap()) })
        .unwrap();
    drop(first);
    runtime().block_on(async {
        assert_eq!(
            within("a confirmation", client.send_confirmed("x")).await,
            Err(DeliveryError::ClientGone)
        );
        within("close", client.close(1000, "bye")).await;
    });
}

/// A `send_wait` waiting for room in a client whose runtime is gone is told that none
/// will come (`QueueFull`, what `send` says of a full queue), rather than waiting for a
/// drain that no task will make: both one waiting when the task went and one called after.
#[test]
fn a_send_wait_on_a_client_outliving_its_runtime_never_hangs() {
    let first = runtime();
    let addr = "127.0.0.1:9".parse().unwrap();
    let queue = tether_core::QueueConfig {
        max_messages: 1,
        ..Default::default()
    };
    let client = first
        .block_on(async { Client::connect(config(addr).queue(queue).build().unwrap()) })
        .unwrap();
    let queued = "fills the queue";
    client.send(queued).unwrap();
    let full = Err(SendError::QueueFull {
        messages: 1,
        bytes: queued.len(),
    });
    // Waits on a thread of its own (a runtime that outlives the client's), and is waiting
    // (polled once: no room) before the client's runtime goes.
    let (polled, is_waiting) = std::sync::mpsc::channel();
    let waiting = std::thread::spawn({
        let client = client.clone();
        move || {
            runtime().block_on(async {
                let mut wait = Box::pin(client.send_wait("waits"));
                std::future::poll_fn(|cx| {
                    let poll = std::future::Future::poll(wait.as_mut(), cx);
                    assert!(poll.is_pending(), "no room: it waits");
                    std::task::Poll::Ready(())
                })
                .await;
                polled.send(()).unwrap();
                within("send_wait", wait).await
            })
        }
    });
    is_waiting.recv().unwrap();
    drop(first);
    assert_eq!(waiting.join().unwrap(), full);
    runtime().block_on(async {
        assert_eq!(within("send_wait", client.send_wait("later")).await, full);
    });
}

/// A user's transport that panics (a bug in it) fails the attempt it was making, with a
/// typed error event, and the client goes on retrying; it does not take the client down.
#[tokio::test]
async fn a_transport_that_panics_fails_its_attempt_not_the_client() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use tether_core::{TetherError, TransportFailure};
    use tether_dispatch::transport::Transport;
    use tether_native::NativeTransport;

    struct Panicking(Arc<AtomicUsize>);
    impl Transport for Panicking {
        type Writer = <NativeTransport as Transport>::Writer;
        type Reader = <NativeTransport as Transport>::Reader;
        fn connect(
            &self,
            _url: String,
            _protocols: Vec<String>,
            _headers: Vec<(String, String)>,
        ) -> impl std::future::Future<Output = Result<(Self::Writer, Self::Reader), TransportFailure>>
               + Send {
            let calls = self.0.clone();
            async move {
                calls.fetch_add(1, Ordering::SeqCst);
                if calls.load(Ordering::SeqCst) > 0 {
                    panic!("a bug in the transport");
                }
                Err(TransportFailure::Refused)
            }
        }
        async fn post(
            &self,
            _url: String,
            _headers: Vec<(String, String)>,
            _body: Vec<u8>,
        ) -> Result<Vec<u8>, TransportFailure> {
            Err(TransportFailure::Refused)
        }
    }

    let calls = Arc::new(AtomicUsize::new(0));
    let client = Client::builder(config("127.0.0.1:9".parse().unwrap()).build().unwrap())
        .transport(Panicking(calls.clone()))
        .spawn()
        .unwrap();
    let mut events = client.events();
    for _ in 0..2 {
        let failed = next_event(&mut events, "a failed attempt", |e| {
            matches!(e, Event::Error(TetherError::AttemptFailed(_)))
        })
        .await;
        assert_eq!(
            failed,
            Event::Error(TetherError::AttemptFailed(TransportFailure::Network(
                "the transport panicked".into()
            )))
        );
    }
    assert!(calls.load(Ordering::SeqCst) >= 2, "it tried again");
    assert!(!client.metrics().state.is_stopped());
    within("close", client.close(1000, "done")).await;
}
