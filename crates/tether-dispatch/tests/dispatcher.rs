//! The dispatcher's tables and answers, driven by hand.

use tether_core::{
    BackoffConfig, Config, Connection, DeliveryError, DropReason, Duration, Entropy, Event,
    FallbackConfig, Instant, MessageId, Payload, QueueConfig, State, TerminalReason,
    TransportFailure, TransportId,
};
use tether_dispatch::transport::SocketEvent;
use tether_dispatch::{Command, Completion, Dispatcher, Handles};

/// Tasks and callers by number, sockets by name.
#[derive(Debug)]
struct Test;
impl Handles for Test {
    type Task = u32;
    type Socket = &'static str;
    type Sent = u32;
    type Flushed = u32;
    type Closed = u32;
}

const WELCOME: &str = "W 1 0 0 0123456789abcdef0123456789abcdef";

fn dispatcher(config: Config, now: Instant) -> Dispatcher<Test> {
    let mut conn = Connection::new(config, now, Entropy::fixed(7)).unwrap();
    conn.connect(now);
    Dispatcher::new(conn, now)
}

/// Drains the commands, registering every task it starts with number `task`.
fn commands(d: &mut Dispatcher<Test>, task: u32) -> Vec<Command<Test>> {
    let mut out = Vec::new();
    while let Some(command) = d.poll_command() {
        match &command {
            Command::Connect { id, .. } => d.track_connect(*id, task),
            Command::HttpRequest { request, .. } => d.track_http_request(*request, task),
            Command::FetchToken { request } => d.track_token(*request, task),
            _ => {}
        }
        out.push(command);
    }
    while d.poll_event().is_some() {}
    out
}

fn completions(d: &mut Dispatcher<Test>) -> Vec<Completion<Test>> {
    std::iter::from_fn(|| d.poll_completion()).collect()
}

fn connect_id(commands: &[Command<Test>]) -> TransportId {
    commands
        .iter()
        .find_map(|c| match c {
            Command::Connect { id, .. } => Some(*id),
            _ => None,
        })
        .expect("a Connect")
}

/// An open socket "s" on a protocol-mode connection that was welcomed.
fn open(now: Instant) -> (Dispatcher<Test>, TransportId) {
    let config = Config::builder("ws://127.0.0.1:9/ws")
        .protocol()
        .build()
        .unwrap();
    let mut d = dispatcher(config, now);
    let id = connect_id(&commands(&mut d, 1));
    assert!(d.handle_opened(now, id, || "s"));
    d.handle_socket(now, id, SocketEvent::Frame(Payload::Text(WELCOME.into())));
    commands(&mut d, 0);
    assert_eq!(d.connection().state(), State::Connected);
    (d, id)
}

#[test]
fn an_abandoned_attempt_is_cancelled_and_its_late_socket_refused() {
    let now = Instant::now();
    let config = Config::builder("ws://127.0.0.1:9/ws").build().unwrap();
    let mut d = dispatcher(config, now);
    let id = connect_id(&commands(&mut d, 41));
    assert!(d.awaits_open(id));
    let mut waiter = None;
    d.close(now, 1000, "bye", true, 3);
    let after = commands(&mut d, 0);
    assert!(
        matches!(after.as_slice(), [Command::Abandon { id: a, attempt: Some(41) }] if *a == id),
        "{after:?}"
    );
    // The attempt opens after all: nothing is made of it, and nothing reaches the core.
    assert!(!d.handle_opened(now, id, || {
        waiter = Some(());
        "late"
    }));
    assert_eq!(waiter, None, "the socket is not set up");
    d.handle_connect_failed(now, id, TransportFailure::Refused);
    assert!(d.is_idle());
    assert!(matches!(
        completions(&mut d)[..],
        [Completion::Closed { waiter: 3 }]
    ));
}

#[test]
fn a_close_hands_the_socket_back_with_a_sendable_code_and_answers_once_it_is_gone() {
    let now = Instant::now();
    let (mut d, id) = open(now);
    let long = "é".repeat(100);
    d.close(now, 1001, &long, true, 8);
    let closes = commands(&mut d, 0);
    match closes.as_slice() {
        [Command::Close {
            socket,
            id: closed,
            code,
            reason,
        }] => {
            assert_eq!((*socket, *closed, *code), ("s", id, 1000));
            assert_eq!(reason.len(), 122, "cut at a character boundary");
        }
        other => panic!("{other:?}"),
    }
    assert!(
        completions(&mut d).is_empty(),
        "the socket is still closing"
    );
    // What the socket says now is not the core's business any more.
    assert_eq!(
        d.handle_socket(
            now,
            id,
            SocketEvent::Closed {
                code: None,
                reason: String::new()
            }
        ),
        None
    );
    assert!(d.socket(id).is_none());
    d.handle_socket_gone(id);
    assert!(d.is_idle());
    assert!(matches!(
        completions(&mut d)[..],
        [Completion::Closed { waiter: 8 }]
    ));
    assert!(completions(&mut d).is_empty(), "answered once");
}

#[test]
fn the_end_of_a_socket_hands_it_back_and_stale_frames_are_dropped() {
    let now = Instant::now();
    let (mut d, id) = open(now);
    let end = SocketEvent::Failed(TransportFailure::Network("reset".into()));
    assert_eq!(d.handle_socket(now, id, end), Some("s"));
    assert!(!d.is_idle(), "closing until reported gone");
    assert_eq!(d.connection().state(), State::Reconnecting);
    let before = d.connection().metrics(now).messages_in;
    d.handle_socket(
        now,
        id,
        SocketEvent::Frame(Payload::Text("M 1 late".into())),
    );
    assert_eq!(d.connection().metrics(now).messages_in, before);
    d.handle_socket_gone(id);
    assert!(d.is_idle());
}

#[test]
fn confirmations_are_answered_by_acknowledgements_and_drops_in_any_order() {
    let now = Instant::now();
    let (mut d, id) = open(now);
    let ids: Vec<MessageId> = (0..3)
        .map(|n| d.send_confirmed(now, format!("m{n}").into(), n).unwrap())
        .collect();
    let frames = commands(&mut d, 0);
    assert_eq!(
        frames
            .iter()
            .filter(|c| matches!(c, Command::Send { socket: "s", .. }))
            .count(),
        3
    );
    // The server acknowledges the first two.
    d.handle_socket(now, id, SocketEvent::Frame(Payload::Text("A 2".into())));
    commands(&mut d, 0);
    let mut answered: Vec<(u32, Result<MessageId, DeliveryError>)> = completions(&mut d)
        .into_iter()
        .map(|c| match c {
            Completion::Sent { waiter, result } => (waiter, result),
            other => panic!("{other:?}"),
        })
        .collect();
    answered.sort_by_key(|(w, _)| *w);
    assert_eq!(answered, [(0, Ok(ids[0])), (1, Ok(ids[1]))]);
    // Closing at once drops the third.
    d.close(now, 1000, "bye", true, 9);
    commands(&mut d, 0);
    let rest = completions(&mut d);
    assert!(
        rest.iter().any(|c| matches!(
            c,
            Completion::Sent {
                waiter: 2,
                result: Err(DeliveryError::Dropped(_))
            }
        )),
        "{rest:?}"
    );
}

#[test]
fn answers_known_at_once_are_returned_at_once() {
    let now = Instant::now();
    let plain = Config::builder("ws://127.0.0.1:9/ws").build().unwrap();
    let mut d = dispatcher(plain, now);
    assert!(matches!(
        d.send_confirmed(now, "x".into(), 1),
        Err(Completion::Sent {
            waiter: 1,
            result: Err(DeliveryError::Unconfirmable)
        })
    ));
    // Nothing unsent was sent before: a flush is done at once.
    let (mut d, _) = open(now);
    assert!(matches!(
        d.flush(4),
        Some(Completion::Flushed {
            waiter: 4,
            result: Ok(())
        })
    ));
    d.connection_mut().send(now, "y").unwrap();
    assert!(d.flush(5).is_none(), "waits for the acknowledgement");
    let gone: Vec<_> = d.abandon_waiters().collect();
    assert!(matches!(
        gone[..],
        [Completion::Flushed {
            waiter: 5,
            result: Err(DeliveryError::ClientGone)
        }]
    ));
}

#[test]
fn a_polling_session_ends_with_its_requests_cancelled() {
    let mut now = Instant::now();
    let mut fallback = FallbackConfig::new("http://127.0.0.1:9/poll");
    fallback.after_failures = 1;
    let config = Config::builder("ws://127.0.0.1:9/ws")
        .protocol()
        .fallback(fallback)
        .build()
        .unwrap();
    let mut d = dispatcher(config, now);
    let id = connect_id(&commands(&mut d, 1));
    d.handle_connect_failed(now, id, TransportFailure::Blocked);
    let mut poll = None;
    for _ in 0..20 {
        for command in commands(&mut d, 77) {
            if let Command::HttpRequest {
                id, request, url, ..
            } = command
            {
                assert!(url.starts_with("http://127.0.0.1:9/poll"), "{url}");
                poll = Some((id, request));
            }
        }
        if poll.is_some() {
            break;
        }
        now = d.poll_timeout().expect("a timer");
        d.handle_timeout(now);
    }
    let (session, request) = poll.expect("polling started");
    assert!(!d.is_idle());
    d.close(now, 1000, "bye", true, 1);
    let ended = commands(&mut d, 0);
    assert!(
        ended.iter().any(|c| matches!(c, Command::Cancel(77))),
        "{ended:?}"
    );
    assert!(
        matches!(ended.last(), Some(Command::PollingEnded { id }) if *id == session),
        "{ended:?}"
    );
    assert!(d.is_idle());
    // Its answer, late, is dropped here.
    d.handle_http_response(now, request, Ok(Vec::new()));
    assert!(matches!(
        completions(&mut d)[..],
        [Completion::Closed { waiter: 1 }]
    ));
}

#[test]
fn the_last_handle_dropped_closes_once() {
    let now = Instant::now();
    let (mut d, _) = open(now);
    d.handle_client_dropped(now);
    assert!(d.client_dropped());
    assert!(d.connection().is_closing() || d.connection().state() == State::Closed);
    d.handle_client_dropped(now);
    assert!(d.client_dropped());
}

/// Drains the commands and the events, returning the events.
fn events(d: &mut Dispatcher<Test>) -> Vec<Event> {
    while d.poll_command().is_some() {}
    std::iter::from_fn(|| d.poll_event()).collect()
}

/// A protocol-mode connection that gives up after one attempt of 2 s, whose queued
/// messages expire after 10 s, with message 1 waiting for its confirmation (caller 1)
/// and a flush (caller 2) behind it; its one attempt never opens.
fn giving_up(now: Instant) -> (Dispatcher<Test>, MessageId) {
    let config = Config::builder("ws://127.0.0.1:9/ws")
        .protocol()
        .connect_timeout(Duration::from_secs(2))
        .backoff(BackoffConfig {
            max_attempts: Some(1),
            ..BackoffConfig::default()
        })
        .queue(QueueConfig {
            max_age: Some(Duration::from_secs(10)),
            ..QueueConfig::default()
        })
        .build()
        .unwrap();
    let mut d = dispatcher(config, now);
    commands(&mut d, 1);
    let id = d.send_confirmed(now, "m".into(), 1).unwrap();
    assert!(d.flush(2).is_none(), "the message is queued");
    (d, id)
}

/// The answers given: confirmed sends' and flushes', by caller.
type Answers = (
    Vec<(u32, Result<MessageId, DeliveryError>)>,
    Vec<(u32, Result<(), DeliveryError>)>,
);

fn answers(d: &mut Dispatcher<Test>) -> Answers {
    let (mut sent, mut flushed) = (Vec::new(), Vec::new());
    for c in completions(d) {
        match c {
            Completion::Sent { waiter, result } => sent.push((waiter, result)),
            Completion::Flushed { waiter, result } => flushed.push((waiter, result)),
            other => panic!("{other:?}"),
        }
    }
    (sent, flushed)
}

/// Stopped with an error, a message is still retained: its callers hear `Stopped` (it
/// goes out after a `reconnect()`).
#[test]
fn callers_of_a_message_retained_past_a_stop_hear_the_stop() {
    let now = Instant::now();
    let (mut d, id) = giving_up(now);
    d.handle_timeout(now + Duration::from_secs(2));
    let seen = events(&mut d);
    assert!(
        seen.iter()
            .any(|e| matches!(e, Event::Stopped(TerminalReason::GaveUp { .. }))),
        "{seen:?}"
    );
    assert_eq!(d.connection().oldest_undelivered(), Some(id), "retained");
    let (sent, flushed) = answers(&mut d);
    assert!(
        matches!(
            sent[..],
            [(
                1,
                Err(DeliveryError::Stopped(TerminalReason::GaveUp { .. }))
            )]
        ),
        "{sent:?}"
    );
    assert!(
        matches!(
            flushed[..],
            [(
                2,
                Err(DeliveryError::Stopped(TerminalReason::GaveUp { .. }))
            )]
        ),
        "{flushed:?}"
    );
}

/// Simulation seed 35847: the process slept through both the connect timeout (the last
/// attempt: the connection gives up) and the queue's `max_age`. The one late timeout
/// gives up, then expires the message: its callers hear what its event says, `Expired`,
/// not a stop that would claim it still retained.
#[test]
fn callers_of_a_message_dropped_in_the_step_that_stopped_hear_the_drop() {
    let now = Instant::now();
    let (mut d, id) = giving_up(now);
    d.handle_timeout(now + Duration::from_secs(60));
    let seen = events(&mut d);
    let stop = seen
        .iter()
        .position(|e| matches!(e, Event::Stopped(TerminalReason::GaveUp { .. })));
    let drop = seen.iter().position(|e| {
        *e == Event::Dropped {
            id,
            reason: DropReason::Expired,
        }
    });
    assert!(
        matches!((stop, drop), (Some(s), Some(d)) if s < d),
        "gave up, then expired: {seen:?}"
    );
    let (sent, flushed) = answers(&mut d);
    assert_eq!(
        sent,
        [(1, Err(DeliveryError::Dropped(DropReason::Expired)))]
    );
    assert_eq!(
        flushed,
        [(2, Err(DeliveryError::Dropped(DropReason::Expired)))]
    );
    assert!(completions(&mut d).is_empty(), "answered once");
}

/// A failed driver stops the connection and drops what it retained, in one step: the
/// callers hear the drop (nothing will ever send it), as the events say.
#[test]
fn callers_of_a_driver_that_failed_hear_the_drop() {
    let now = Instant::now();
    let (mut d, id) = giving_up(now);
    d.handle_driver_failure(now, "the task panicked");
    let seen = events(&mut d);
    assert!(
        seen.contains(&Event::Dropped {
            id,
            reason: DropReason::Stopped
        }),
        "{seen:?}"
    );
    let (sent, flushed) = answers(&mut d);
    assert_eq!(
        sent,
        [(1, Err(DeliveryError::Dropped(DropReason::Stopped)))]
    );
    assert_eq!(
        flushed,
        [(2, Err(DeliveryError::Dropped(DropReason::Stopped)))]
    );
}
