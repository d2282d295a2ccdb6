//! Bad input from the user and from the server: a configuration that makes no sense is
//! a typed error naming its field; a server that sends garbage, breaks the protocol's
//! rules or sends a message over the size limit gets a typed error event, and the client
//! replaces the socket (or discards the message) and carries on, exactly once. The
//! misbehaving servers are `support::rogue`; a message far over the limit is tried on
//! the reference server too.

mod support;

use std::sync::Arc;
use std::time::Duration;

use tether_core::protocol::DecodeError;
use tether_core::{
    AuthConfig, Config, ConfigError, ConfigField, ConfigProblem, Event, FallbackConfig,
    HeartbeatConfig, ProtocolViolation, TetherError, Token, TokenPlacement,
};
use tether_native::{BuildError, Client};
use tether_server::Hub;
use tokio_tungstenite::tungstenite::Message;

use support::reference::{self, Recorder, Tokens};
use support::rogue::{Fault, RogueServer};
use support::{config, within, Seen};

/// A valid protocol-mode config, to break one field of.
fn valid() -> Config {
    config("127.0.0.1:9".parse().unwrap())
        .protocol()
        .build()
        .unwrap()
}

#[tokio::test]
async fn each_invalid_setting_is_a_typed_error_naming_its_field() {
    use ConfigProblem::*;
    type Break = Box<dyn Fn(&mut Config)>;
    let cases: Vec<(Break, ConfigField, ConfigProblem)> = vec![
        (
            Box::new(|c| c.url = "ws://127.0.0.1:99999/ws".into()),
            ConfigField::Url,
            MalformedUrl,
        ),
        (
            Box::new(|c| c.url = "ws://127.0.0.1:0/ws".into()),
            ConfigField::Url,
            MalformedUrl,
        ),
        (
            Box::new(|c| c.url = "ws://exa mple.com/ws".into()),
            ConfigField::Url,
            MalformedUrl,
        ),
        (
            Box::new(|c| c.url = String::new()),
            ConfigField::Url,
            NotWebSocketUrl,
        ),
        (
            Box::new(|c| c.protocols = vec!["two words".into()]),
            ConfigField::Protocols,
            InvalidSubprotocol,
        ),
        (
            Box::new(|c| c.connect_timeout = Duration::ZERO),
            ConfigField::ConnectTimeout,
            Zero,
        ),
        (
            Box::new(|c| c.backoff.factor = f64::NAN),
            ConfigField::BackoffFactor,
            OutOfRange {
                expected: "a number from 1.0 to 100.0",
            },
        ),
        (
            Box::new(|c| c.backoff.initial_delay = c.backoff.max_delay * 2),
            ConfigField::BackoffInitialDelay,
            MustNotExceed {
                other: ConfigField::BackoffMaxDelay,
            },
        ),
        (
            Box::new(|c| c.backoff.max_attempts = Some(0)),
            ConfigField::BackoffMaxAttempts,
            Zero,
        ),
        (
            Box::new(|c| {
                c.heartbeat = Some(HeartbeatConfig {
                    interval: Duration::from_secs(1),
                    timeout: Duration::from_secs(2),
                    max_missed: 2,
                })
            }),
            ConfigField::HeartbeatTimeout,
            MustNotExceed {
                other: ConfigField::HeartbeatInterval,
            },
        ),
        (
            Box::new(|c| c.queue.max_messages = 0),
            ConfigField::QueueMaxMessages,
            Zero,
        ),
        (
            Box::new(|c| c.fallback = Some(FallbackConfig::new("ws://127.0.0.1:9/poll"))),
            ConfigField::FallbackPollUrl,
            NotHttpUrl,
        ),
        (
            Box::new(|c| {
                c.wire = tether_core::WireMode::Plain { heartbeat: None };
                c.fallback = Some(FallbackConfig::new("http://127.0.0.1:9/poll"));
            }),
            ConfigField::Fallback,
            NeedsProtocol,
        ),
        (
            Box::new(|c| {
                c.auth = Some(AuthConfig {
                    placement: TokenPlacement::Query("access token".into()),
                    ..AuthConfig::default()
                })
            }),
            ConfigField::AuthPlacement,
            InvalidQueryName,
        ),
        (Box::new(|c| c.ack_every = 0), ConfigField::AckEvery, Zero),
    ];
    for (break_it, field, problem) in cases {
        let mut config = valid();
        break_it(&mut config);
        let expected = ConfigError { field, problem };
        // Edited after `build()`: the client validates again.
        let err = Client::builder(config)
            .token_provider(|| async { Err::<Token, _>("unused".to_owned()) })
            .spawn()
            .unwrap_err();
        assert_eq!(err, BuildError::Config(expected.clone()), "{field}");
        assert!(err.to_string().contains(field.as_str()), "{err}");
        let source = std::error::Error::source(&err).map(ToString::to_string);
        assert_eq!(source, Some(expected.to_string()));
    }
}

/// A protocol-mode client of `server` with fast retries, that has already queued
/// `before`.
fn client_of(server: &RogueServer, max_message_bytes: usize) -> (Client, Recorder) {
    let config = config(server.addr)
        .protocol()
        .max_message_bytes(max_message_bytes)
        .build()
        .unwrap();
    let client = Client::builder(config).event_buffer(1024).spawn().unwrap();
    let events = Recorder::new(client.events());
    client.send("before").unwrap();
    (client, events)
}

/// After a fault on the first connection: the client is connected again, and both
/// `before` and `after` made the round trip exactly once each.
async fn carries_on(client: &Client, server: &mut RogueServer, events: &mut Recorder) {
    within("an ack", client.send_confirmed("after"))
        .await
        .unwrap();
    events.until_message("after").await;
    events
        .messages
        .assert_exactly_once("echoes", ["before", "after"]);
    let mut delivered = Vec::new();
    while delivered.last() != Some(&"after".to_owned()) {
        if let Seen::Text(text) = server.seen().await {
            delivered.push(text);
        }
    }
    assert_eq!(delivered, ["before", "after"]);
    assert_eq!(client.metrics().queue_depth, 0);
    assert!(events.logged(|e| matches!(e, Event::Stopped(_))).is_empty());
}

#[tokio::test]
async fn garbage_from_the_server_is_a_protocol_error_and_the_socket_is_replaced() {
    let cases = [
        (
            Message::text("this is not tether"),
            DecodeError::UnknownTag(b't'),
        ),
        (Message::text(""), DecodeError::Empty),
        (Message::text("M 0 zero"), DecodeError::ZeroSeq),
        (Message::text("A 1 2"), DecodeError::TrailingData),
        (Message::text("O x"), DecodeError::BadNumber("id")),
        (
            Message::binary(vec![0xff, 1, 2]),
            DecodeError::UnknownTag(0xff),
        ),
        (
            Message::binary(b"A 1".to_vec()),
            DecodeError::WrongFrameType,
        ),
        (Message::binary(vec![b'M', 0, 1]), DecodeError::Truncated),
    ];
    for (frame, expected) in cases {
        let mut server = RogueServer::start(vec![Fault::Garbage(frame.clone())]).await;
        let (client, mut events) = client_of(&server, 1 << 20);
        let error = events
            .until("the error", |e| matches!(e, Event::Error(_)))
            .await;
        assert_eq!(
            error,
            Event::Error(TetherError::Protocol(expected.clone())),
            "{frame:?}"
        );
        let lost = events
            .until("the disconnect", |e| {
                matches!(e, Event::Disconnected { .. })
            })
            .await;
        let Event::Disconnected { cause, .. } = lost else {
            unreachable!()
        };
        assert_eq!(cause.code, Some(4400), "{frame:?}: {cause}");
        events.until_connected().await;
        carries_on(&client, &mut server, &mut events).await;
        assert_eq!(server.connections(), 2, "{frame:?}");
        within("close", client.close(1000, "done")).await;
        server.stop().await;
    }
}

#[tokio::test]
async fn a_valid_envelope_out_of_place_is_a_protocol_violation_and_the_socket_is_replaced() {
    let cases = [
        (
            Fault::SecondWelcome,
            ProtocolViolation::WelcomeOutsideHandshake,
        ),
        (Fault::AckOfTheUnsent, ProtocolViolation::AckOfUnsent),
        (Fault::Gap, ProtocolViolation::SequenceGap),
        (
            Fault::MessageBeforeWelcome,
            ProtocolViolation::MessageBeforeWelcome,
        ),
    ];
    for (fault, expected) in cases {
        let mut server = RogueServer::start(vec![fault.clone()]).await;
        let (client, mut events) = client_of(&server, 1 << 20);
        let error = events
            .until("the error", |e| matches!(e, Event::Error(_)))
            .await;
        assert_eq!(
            error,
            Event::Error(TetherError::ProtocolViolation(expected)),
            "{fault:?}"
        );
        // The client says why as it closes.
        loop {
            match server.seen().await {
                Seen::Close(close) => {
                    assert_eq!(
                        close,
                        Some((4400, expected.as_str().to_owned())),
                        "{fault:?}"
                    );
                    break;
                }
                Seen::Text(text) => assert_eq!(text, "before", "{fault:?}"),
                other => panic!("{other:?}"),
            }
        }
        events.until_connected().await;
        within("an ack", client.send_confirmed("after"))
            .await
            .unwrap();
        events.until_message("after").await;
        events
            .messages
            .assert_exactly_once("echoes", ["before", "after"]);
        assert_eq!(client.metrics().queue_depth, 0);
        assert_eq!(server.connections(), 2, "{fault:?}");
        within("close", client.close(1000, "done")).await;
        server.stop().await;
    }
}

#[tokio::test]
async fn a_message_over_the_size_limit_is_discarded_with_a_typed_error() {
    const MAX: usize = 1000;
    // Just over the limit: the frame fits the transport's envelope allowance, so the
    // core sees it, discards it and says so.
    let mut server = RogueServer::start(vec![Fault::LargeMessage(MAX + 10)]).await;
    let (client, mut events) = client_of(&server, MAX);
    let error = events
        .until("the error", |e| matches!(e, Event::Error(_)))
        .await;
    assert_eq!(
        error,
        Event::Error(TetherError::MessageTooLarge { size: MAX + 10 })
    );
    carries_on(&client, &mut server, &mut events).await;
    // On the same socket all along.
    assert_eq!(server.connections(), 1);
    assert!(events
        .logged(|e| matches!(e, Event::Disconnected { .. }))
        .is_empty());
    let m = client.metrics();
    assert_eq!((m.messages_in, m.reconnects), (2, 0));
    within("close", client.close(1000, "done")).await;
    server.stop().await;
}

/// Far over the limit, the transport refuses the frame and the socket fails: a typed
/// error says so, and the client reconnects.
#[tokio::test]
async fn a_frame_far_over_the_size_limit_fails_the_socket_and_the_client_carries_on() {
    const MAX: usize = 1000;
    let mut server = RogueServer::start(vec![Fault::LargeFrame(64 * MAX)]).await;
    let (client, mut events) = client_of(&server, MAX);
    let error = events
        .until("the error", |e| matches!(e, Event::Error(_)))
        .await;
    let Event::Error(TetherError::MessageTooLarge { size }) = error else {
        panic!("{error:?}")
    };
    assert!(size >= 64 * MAX, "{size}");
    let lost = events
        .until("the disconnect", |e| {
            matches!(e, Event::Disconnected { .. })
        })
        .await;
    let Event::Disconnected { cause, .. } = lost else {
        unreachable!()
    };
    assert!(cause.reason.contains("over the limit"), "{cause}");
    events.until_connected().await;
    carries_on(&client, &mut server, &mut events).await;
    assert_eq!(server.connections(), 2);
    within("close", client.close(1000, "done")).await;
    server.stop().await;
}

/// A server message over the transport's limit (`max_message_bytes` plus the envelope)
/// fails the socket. Unacknowledged, the server would resend it after every Hello and
/// the client would reconnect in a loop, every later message stuck behind it: refused a
/// second time at the same point, the core gives it up, the next Hello acknowledges it
/// and the session goes on.
#[tokio::test]
async fn a_server_message_over_the_transport_limit_does_not_wedge_the_session() {
    const MAX: usize = 1000;
    let hub = Arc::new(Hub::new());
    let server = reference::start(&reference::server_config(), &hub).await;
    let tokens = Tokens::new("erin", Duration::from_secs(3600));
    let config = config(server.addr())
        .protocol()
        .auth(AuthConfig::default())
        .max_message_bytes(MAX)
        .build()
        .unwrap();
    let client = Client::builder(config)
        .token_provider(tokens.provider())
        .event_buffer(1 << 14)
        .spawn()
        .unwrap();
    let mut events = Recorder::new(client.events());
    within("an ack", client.send_confirmed("hello"))
        .await
        .unwrap();

    assert_eq!(hub.send_to_user("erin", "x".repeat(5 * MAX)), 1);
    assert_eq!(hub.send_to_user("erin", "after"), 1);
    // A typed error for the message that could not be taken, and the session goes on.
    let error = events
        .until("the error", |e| matches!(e, Event::Error(_)))
        .await;
    let Event::Error(TetherError::MessageTooLarge { size }) = error else {
        panic!("{error:?}")
    };
    // The frame's size: the message and its envelope.
    assert!((5 * MAX..5 * MAX + 32).contains(&size), "{size}");
    events.until_message("after").await;
    // Refused on the first socket and on the second (the resend); the third takes the rest.
    assert_eq!(client.metrics().reconnects, 2);
    within("close", client.close(1000, "done")).await;
    server.shutdown().await;
}

/// A server answering every upgrade with 503 and `Retry-After: 2^64 − 1` panicked the
/// client's task ("overflow when adding duration to instant"): the client stayed in
/// `Connecting` for good while `send` still said `Ok`. The hint is cut to
/// `max_retry_hint` (60 s by default) and the client lives on.
#[tokio::test]
async fn a_retry_after_of_u64_max_waits_the_capped_hint_and_the_client_lives_on() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut head = Vec::new();
        let mut chunk = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "request cut short");
            head.extend_from_slice(&chunk[..n]);
        }
        let answer = format!(
            "HTTP/1.1 503 Service Unavailable\r\nRetry-After: {}\r\nContent-Length: 0\r\n\r\n",
            u64::MAX
        );
        stream.write_all(answer.as_bytes()).await.unwrap();
        let _ = stream.read(&mut chunk).await;
    });
    let client = Client::connect(config(addr).build().unwrap()).unwrap();
    let mut events = client.events();
    let scheduled = support::next_event(&mut events, "a scheduled reconnect", |e| {
        matches!(e, Event::ReconnectScheduled { .. })
    })
    .await;
    assert_eq!(
        scheduled,
        Event::ReconnectScheduled {
            attempt: 1,
            delay: Duration::from_secs(60),
            hinted: true
        }
    );
    // The task is alive: it answers metrics, takes sends, and closes.
    client.send("kept").unwrap();
    assert_eq!(client.metrics().queue_depth, 1);
    within("close", client.close(1000, "done")).await;
    assert_eq!(client.state(), tether_core::State::Closed);
    server.abort();
}

/// A token provider that panics before it returns its future (the closure, not the
/// future, panics) escaped the driver's guard: the fetch was never answered and the
/// client waited for its token fetch timeout. It is a failed fetch at once.
#[tokio::test]
async fn a_token_provider_that_panics_at_once_is_a_failed_fetch_at_once() {
    // A fetch timeout far beyond the test's wait: only an answer at once passes.
    let config = config("127.0.0.1:9".parse().unwrap())
        .auth(AuthConfig {
            fetch_timeout: Duration::from_secs(600),
            ..AuthConfig::default()
        })
        .build()
        .unwrap();
    let client = Client::builder(config)
        .token_provider(|| -> std::future::Ready<Result<Token, String>> {
            panic!("the application's provider is broken")
        })
        .spawn()
        .unwrap();
    let mut events = client.events();
    let error = support::next_event(&mut events, "the failed fetch", |e| {
        matches!(e, Event::Error(TetherError::TokenUnavailable(_)))
    })
    .await;
    assert_eq!(
        error,
        Event::Error(TetherError::TokenUnavailable(
            "the token provider panicked".into()
        ))
    );
    within("close", client.close_now(1000, "done")).await;
}
