//! The driver's socket plumbing against a transport double the test plays the server of:
//! the order of writes (written at once when the writer is idle, behind a write still
//! under way otherwise), writes caused by events that came together, backpressure, and a
//! socket that ends with a write pending. No network: these run anywhere the wasm tests
//! run (scripts/test-wasm.sh runs them in Node and in headless Chromium).
#![cfg(all(target_arch = "wasm32", target_os = "unknown"))]

#[allow(dead_code)]
mod support;

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::{poll_fn, ready, Future};
use std::rc::Rc;
use std::task::{Poll, Waker};

use support::{pause, until, within};
use tether_core::{
    BackoffConfig, Cause, CauseKind, Config, ConfigBuilder, Duration, Event, Jitter, Payload,
    State, TransportFailure,
};
use tether_dispatch::transport::{MaybeSend, SocketEvent, SocketReader, SocketWriter, Transport};
use tether_web::{Client, Events};
use wasm_bindgen_test::wasm_bindgen_test;

/// One socket at a time, both ends in the test's hands.
#[derive(Default)]
struct Wire {
    /// What the client wrote, in order: the text of each frame, `close <code>`.
    written: RefCell<Vec<String>>,
    /// While set, a write stays under way until it is cleared.
    hold: Cell<bool>,
    held: RefCell<Option<Waker>>,
    /// What the server sends, handed to the client's reader one event at a time.
    inbound: RefCell<VecDeque<SocketEvent>>,
    reader: RefCell<Option<Waker>>,
    /// Events the reader took.
    reads: Cell<usize>,
    /// The server closed the socket: writes fail, as on a closed WebSocket.
    ended: Cell<bool>,
    connects: Cell<u32>,
    /// Each new socket's writes fail from the start (a socket closed before its `close`
    /// event is handled).
    dead_on_arrival: Cell<bool>,
    /// The server answers a close at once (its close event comes on the socket).
    echo_close: Cell<bool>,
    /// Socket halves dropped (a WebSocket is released once both are).
    halves_dropped: Cell<u32>,
}

impl Wire {
    fn written(&self) -> Vec<String> {
        self.written.borrow().clone()
    }

    /// The server sends `events`, all at once. With an end among them the socket is
    /// closed from now on, as a WebSocket is before its `close` event is handled.
    fn deliver(&self, events: impl IntoIterator<Item = SocketEvent>) {
        let mut inbound = self.inbound.borrow_mut();
        for event in events {
            if event.is_end() {
                self.ended.set(true);
            }
            inbound.push_back(event);
        }
        drop(inbound);
        if let Some(waker) = self.reader.borrow_mut().take() {
            waker.wake();
        }
    }

    fn release(&self) {
        self.hold.set(false);
        if let Some(waker) = self.held.borrow_mut().take() {
            waker.wake();
        }
    }
}

struct Double(Rc<Wire>);
/// A socket's halves, with the number of the connection they belong to: a replaced
/// socket's writes fail and its reader ends.
struct Writer(Rc<Wire>, u32);
struct Reader(Rc<Wire>, u32);

impl Transport for Double {
    type Writer = Writer;
    type Reader = Reader;

    fn connect(
        &self,
        _url: String,
        _protocols: Vec<String>,
        _headers: Vec<(String, String)>,
    ) -> impl Future<Output = Result<(Writer, Reader), TransportFailure>> + MaybeSend {
        let wire = &self.0;
        wire.connects.set(wire.connects.get() + 1);
        wire.ended.set(wire.dead_on_arrival.get());
        // The previous socket's reader (if still reading) finds its socket gone.
        wire.inbound.borrow_mut().clear();
        if let Some(waker) = wire.reader.borrow_mut().take() {
            waker.wake();
        }
        let socket = wire.connects.get();
        ready(Ok((
            Writer(wire.clone(), socket),
            Reader(wire.clone(), socket),
        )))
    }

    fn post(
        &self,
        _url: String,
        _headers: Vec<(String, String)>,
        _body: Vec<u8>,
    ) -> impl Future<Output = Result<Vec<u8>, TransportFailure>> + MaybeSend {
        ready(Err(TransportFailure::Blocked))
    }
}

impl SocketWriter for Writer {
    fn send(
        &mut self,
        frame: Payload,
    ) -> impl Future<Output = Result<(), TransportFailure>> + MaybeSend {
        let wire = self.0.clone();
        let failed = wire.ended.get() || wire.connects.get() != self.1;
        if !failed {
            let text = match &frame {
                Payload::Text(t) => t.to_string(),
                Payload::Binary(b) => format!("{} bytes", b.len()),
            };
            wire.written.borrow_mut().push(text);
        }
        poll_fn(move |cx| {
            if failed {
                return Poll::Ready(Err(TransportFailure::Network("not open".to_owned())));
            }
            if wire.hold.get() {
                *wire.held.borrow_mut() = Some(cx.waker().clone());
                return Poll::Pending;
            }
            Poll::Ready(Ok(()))
        })
    }

    fn close(&mut self, code: u16, _reason: String) -> impl Future<Output = ()> + MaybeSend {
        if self.0.connects.get() == self.1 {
            self.0.written.borrow_mut().push(format!("close {code}"));
            if self.0.echo_close.get() {
                self.0.deliver([SocketEvent::Closed {
                    code: Some(code),
                    reason: String::new(),
                }]);
            }
        } else {
            self.0
                .written
                .borrow_mut()
                .push(format!("close {code} (socket {})", self.1));
        }
        ready(())
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.0.halves_dropped.set(self.0.halves_dropped.get() + 1);
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        self.0.halves_dropped.set(self.0.halves_dropped.get() + 1);
    }
}

impl SocketReader for Reader {
    fn next(&mut self) -> impl Future<Output = SocketEvent> + MaybeSend {
        let wire = self.0.clone();
        let socket = self.1;
        poll_fn(move |cx| {
            if wire.connects.get() != socket {
                return Poll::Ready(SocketEvent::Closed {
                    code: None,
                    reason: "replaced".to_owned(),
                });
            }
            let Some(event) = wire.inbound.borrow_mut().pop_front() else {
                *wire.reader.borrow_mut() = Some(cx.waker().clone());
                return Poll::Pending;
            };
            wire.reads.set(wire.reads.get() + 1);
            Poll::Ready(event)
        })
    }
}

/// A plain-mode client on a new wire, connected.
async fn connected(unread: Option<usize>) -> (Client<Double>, Events, Rc<Wire>) {
    let mut config = support::config("ws://double.invalid/").heartbeat(None);
    if let Some(messages) = unread {
        config = config.unread_limits(messages, 1 << 20);
    }
    connected_with(config).await
}

/// A client made with `config` on a new wire, connected.
async fn connected_with(config: ConfigBuilder) -> (Client<Double>, Events, Rc<Wire>) {
    let config: Config = config.build().expect("config");
    let wire = Rc::new(Wire::default());
    let client = Client::builder(config)
        .transport(Double(wire.clone()))
        .page_hints(false)
        .spawn()
        .expect("client");
    let mut events = client.events();
    until(&mut events, 2000, "connected", |e| {
        matches!(
            e,
            Event::StateChanged {
                to: State::Connected,
                ..
            }
        )
    })
    .await;
    // The socket's tasks have run once: its writer waits for writes.
    pause(0).await;
    (client, events, wire)
}

fn text(s: &str) -> SocketEvent {
    SocketEvent::Frame(Payload::from(s.to_owned()))
}

fn texts(wire: &Wire) -> Vec<String> {
    wire.written()
}

/// The cause of the next `Disconnected`.
async fn disconnected(events: &mut Events) -> Cause {
    match until(events, 2000, "disconnected", |e| {
        matches!(e, Event::Disconnected { .. })
    })
    .await
    {
        Event::Disconnected { cause, .. } => cause,
        _ => unreachable!(),
    }
}

/// Waits for the client to be connected again, then for what that set going.
async fn connected_again(events: &mut Events) {
    until(events, 3000, "connected again", |e| {
        matches!(
            e,
            Event::StateChanged {
                to: State::Connected,
                ..
            }
        )
    })
    .await;
    pause(0).await;
}

#[wasm_bindgen_test]
async fn an_idle_writer_writes_within_send_and_a_busy_one_keeps_the_order() {
    let (client, _events, wire) = connected(None).await;
    client.send("a").expect("send");
    assert_eq!(texts(&wire), ["a"], "written within send()");

    // A write under way: what follows waits behind it, in order.
    wire.hold.set(true);
    client.send("b").expect("send");
    client.send("c").expect("send");
    client.send("d").expect("send");
    assert_eq!(texts(&wire), ["a", "b"]);
    pause(0).await;
    assert_eq!(texts(&wire), ["a", "b"], "c and d wait for b's write");
    wire.release();
    within(2000, "c and d written", async {
        while wire.written().len() < 4 {
            pause(0).await;
        }
    })
    .await;
    assert_eq!(texts(&wire), ["a", "b", "c", "d"]);
    client.send("e").expect("send");
    assert_eq!(texts(&wire), ["a", "b", "c", "d", "e"], "idle again");
}

#[wasm_bindgen_test]
async fn replies_to_events_that_came_together_go_out_in_order_after_them() {
    let (client, mut events, wire) = connected(None).await;
    let replier = client.clone();
    let seen = Rc::new(RefCell::new(Vec::new()));
    let written_when = seen.clone();
    let probe = wire.clone();
    let _replies = client.on_event(move |e| {
        if let Event::Message(Payload::Text(t)) = e {
            // What was written when this message was handed out.
            written_when.borrow_mut().push(probe.written().len());
            replier.send(format!("re {t}")).expect("send");
        }
    });
    wire.deliver([text("1"), text("2"), text("3")]);
    let _ = until(
        &mut events,
        2000,
        "the last message",
        |e| matches!(e, Event::Message(Payload::Text(t)) if &**t == "3"),
    )
    .await;
    assert_eq!(texts(&wire), ["re 1", "re 2", "re 3"]);
    assert_eq!(*seen.borrow(), [0, 0, 0], "written after the batch");

    // One at a time, each reply is written before the next message comes.
    wire.deliver([text("4")]);
    let _ = until(
        &mut events,
        2000,
        "message 4",
        |e| matches!(e, Event::Message(Payload::Text(t)) if &**t == "4"),
    )
    .await;
    assert_eq!(texts(&wire).last().map(String::as_str), Some("re 4"));
}

#[wasm_bindgen_test]
async fn a_reader_behind_stops_the_socket_being_read() {
    let (_client, mut events, wire) = connected(Some(4)).await;
    wire.deliver((0..20).map(|i| text(&i.to_string())));
    // Everything the client would read now is read once the event loop turns.
    pause(0).await;
    let read = wire.reads.get();
    assert!(
        (4..20).contains(&read),
        "reading stopped at the limit, read {read}"
    );
    let mut got = Vec::new();
    within(2000, "all 20 messages", async {
        while got.len() < 20 {
            match events.recv().await {
                Some(Event::Message(Payload::Text(t))) => got.push(t.to_string()),
                Some(_) => {}
                None => break,
            }
        }
    })
    .await;
    let want: Vec<String> = (0..20).map(|i| i.to_string()).collect();
    assert_eq!(got, want, "nothing lost, in order");
    assert_eq!(wire.reads.get(), 20);
}

#[wasm_bindgen_test]
async fn a_socket_ending_with_a_write_under_way_reports_its_close() {
    let (client, mut events, wire) = connected(None).await;
    wire.hold.set(true);
    client.send("held").expect("send");
    client.send("queued").expect("send");
    wire.deliver([SocketEvent::Closed {
        code: Some(4000),
        reason: "bye".to_owned(),
    }]);
    let cause = disconnected(&mut events).await;
    assert_eq!((cause.kind, cause.code), (CauseKind::Closed, Some(4000)));
    wire.release();
    // The next socket writes at once again.
    connected_again(&mut events).await;
    assert_eq!(wire.connects.get(), 2);
    client.send("after").expect("send");
    assert_eq!(texts(&wire).last().map(String::as_str), Some("after"));
}

#[wasm_bindgen_test]
async fn an_end_that_came_with_messages_is_handled_before_their_replies_fail() {
    let (client, mut events, wire) = connected(None).await;
    let replier = client.clone();
    let _replies = client.on_event(move |e| {
        if let Event::Message(Payload::Text(t)) = e {
            let _ = replier.send(format!("re {t}"));
        }
    });
    wire.deliver([
        text("1"),
        SocketEvent::Closed {
            code: Some(4000),
            reason: "bye".to_owned(),
        },
    ]);
    let cause = disconnected(&mut events).await;
    // Not a failed write on the closed socket: the close, with its code.
    assert_eq!((cause.kind, cause.code), (CauseKind::Closed, Some(4000)));
    assert_eq!(cause.reason, "bye");
}

fn reply_to_messages(client: &Client<Double>) -> tether_web::Subscription {
    let replier = client.clone();
    client.on_event(move |e| {
        if let Event::Message(Payload::Text(t)) = e {
            let _ = replier.send(format!("re {t}"));
        }
    })
}

/// A listener that replies `re <text>` to every message and, at the message "2", calls
/// `close` on the client: what it returns is kept for the test to await.
fn reply_then_close_at_2<C: 'static>(
    client: &Client<Double>,
    close: impl Fn(&Client<Double>) -> C + 'static,
) -> (tether_web::Subscription, Rc<RefCell<Option<C>>>) {
    let actor = client.clone();
    let closing = Rc::new(RefCell::new(None));
    let kept = closing.clone();
    let listener = client.on_event(move |e| {
        if let Event::Message(Payload::Text(t)) = e {
            let _ = actor.send(format!("re {t}"));
            if &**t == "2" {
                *kept.borrow_mut() = Some(close(&actor));
            }
        }
    });
    (listener, closing)
}

#[wasm_bindgen_test]
async fn replies_are_not_left_corked_while_reading_is_paused() {
    // Reading stops in the middle of a batch (the events reader is behind): what the
    // messages read so far caused must go out now, not when reading resumes.
    let (client, mut events, wire) = connected(Some(3)).await;
    let _replies = reply_to_messages(&client);
    wire.deliver((0..12).map(|i| text(&i.to_string())));
    pause(0).await;
    pause(0).await;
    let read = wire.reads.get();
    assert!((3..12).contains(&read), "paused, read {read}");
    let replies = texts(&wire).len();
    assert_eq!(
        replies,
        read,
        "a reply for every message read: {:?}",
        texts(&wire)
    );
    // Resumed: the rest, and their replies, in order.
    let mut got = 0;
    within(2000, "all 12 messages", async {
        while got < 12 {
            if let Some(Event::Message(_)) = events.recv().await {
                got += 1;
            }
        }
    })
    .await;
    pause(0).await;
    let want: Vec<String> = (0..12).map(|i| format!("re {i}")).collect();
    assert_eq!(texts(&wire), want);
}

#[wasm_bindgen_test]
async fn a_close_queued_behind_frames_goes_out_after_them() {
    let (client, _events, wire) = connected(None).await;
    wire.hold.set(true);
    client.send("a").expect("send");
    client.send("b").expect("send");
    let closing = client.close(4001, "done");
    client.send("late").expect_err("closing");
    assert_eq!(texts(&wire), ["a"]);
    wire.release();
    within(2000, "the close", async {
        while !texts(&wire).iter().any(|w| w.starts_with("close")) {
            pause(0).await;
        }
    })
    .await;
    assert_eq!(texts(&wire), ["a", "b", "close 4001"]);
    wire.deliver([SocketEvent::Closed {
        code: Some(4001),
        reason: "done".to_owned(),
    }]);
    within(2000, "closed", closing).await;
}

#[wasm_bindgen_test]
async fn a_close_from_a_listener_in_a_batch_goes_out_after_the_replies_before_it() {
    let (client, mut events, wire) = connected(None).await;
    let (_listener, closing) = reply_then_close_at_2(&client, |c| c.close(4002, "enough"));
    wire.deliver([text("1"), text("2"), text("3")]);
    within(2000, "the close", async {
        while !texts(&wire).iter().any(|w| w.starts_with("close")) {
            pause(0).await;
        }
    })
    .await;
    assert_eq!(texts(&wire), ["re 1", "re 2", "close 4002"]);
    wire.deliver([SocketEvent::Closed {
        code: Some(4002),
        reason: "enough".to_owned(),
    }]);
    let closing = closing.borrow_mut().take().expect("closing");
    within(2000, "closed", closing).await;
    assert_eq!(client.state(), State::Closed);
    client.reconnect();
    connected_again(&mut events).await;
    assert_eq!(wire.connects.get(), 2);
    client.send("new").expect("send");
    assert_eq!(texts(&wire).last().map(String::as_str), Some("new"));
}

#[wasm_bindgen_test]
async fn a_batch_ending_in_a_failure_reports_it_and_the_next_socket_writes() {
    let (client, mut events, wire) = connected(None).await;
    let _replies = reply_to_messages(&client);
    wire.deliver([
        text("1"),
        text("2"),
        SocketEvent::Failed(TransportFailure::Network("reset".to_owned())),
    ]);
    let cause = disconnected(&mut events).await;
    assert_eq!(cause.kind, CauseKind::Network, "{cause:?}");
    connected_again(&mut events).await;
    client.send("after").expect("send");
    assert_eq!(texts(&wire).last().map(String::as_str), Some("after"));
}

#[wasm_bindgen_test]
async fn a_write_failing_within_send_from_a_listener_is_a_disconnect_not_a_panic() {
    // The writer runs within the drain (from a listener's send) and fails at once: the
    // failure re-enters the driver while it drains.
    let (client, mut events, wire) = connected(None).await;
    let sender = client.clone();
    let _on_connect = client.on_event(move |e| {
        if let Event::StateChanged {
            to: State::Connected,
            ..
        } = e
        {
            let _ = sender.send("hello");
        }
    });
    // Closed under the client, before the close event is read.
    wire.ended.set(true);
    client.send("into the void").expect("send");
    let cause = disconnected(&mut events).await;
    assert_eq!(cause.kind, CauseKind::Network, "{cause:?}");
    // The next sockets fail their first write (from the Connected listener) too, a few
    // times; then one works.
    wire.dead_on_arrival.set(true);
    within(3000, "two more sockets", async {
        while wire.connects.get() < 3 {
            pause(5).await;
        }
    })
    .await;
    wire.dead_on_arrival.set(false);
    until(&mut events, 5000, "connected and staying", |e| {
        matches!(
            e,
            Event::StateChanged {
                to: State::Connected,
                ..
            }
        )
    })
    .await;
    // Still alive: sends and writes work.
    within(3000, "a connected socket that writes", async {
        loop {
            if client.state() == State::Connected && client.send("alive").is_ok() {
                pause(0).await;
                if texts(&wire).last().map(String::as_str) == Some("alive") {
                    break;
                }
            }
            pause(5).await;
        }
    })
    .await;
}

#[wasm_bindgen_test]
async fn close_now_from_a_listener_mid_batch_ends_the_socket_and_resolves() {
    let (client, _events, wire) = connected(None).await;
    wire.echo_close.set(true);
    let (_listener, closing) = reply_then_close_at_2(&client, |c| c.close_now(4004, "now"));
    wire.deliver([text("1"), text("2"), text("3")]);
    pause(0).await;
    let closing = closing.borrow_mut().take().expect("closing");
    within(3000, "closed", closing).await;
    assert_eq!(client.state(), State::Closed);
    let written = texts(&wire);
    assert_eq!(
        written.last().map(String::as_str),
        Some("close 4004"),
        "{written:?}"
    );
    assert!(
        !written.iter().any(|w| w == "re 3"),
        "nothing after close_now: {written:?}"
    );
    // Both halves of the socket are let go (a WebSocket is released, its function freed).
    within(2000, "the socket released", async {
        while wire.halves_dropped.get() < 2 {
            pause(5).await;
        }
    })
    .await;
}

#[wasm_bindgen_test]
async fn a_closed_client_lets_its_socket_go() {
    let (client, _events, wire) = connected(None).await;
    wire.echo_close.set(true);
    client.send("x").expect("send");
    within(3000, "closed", client.close(1000, "bye")).await;
    within(2000, "the socket released", async {
        while wire.halves_dropped.get() < 2 {
            pause(5).await;
        }
    })
    .await;
    assert_eq!(texts(&wire), ["x", "close 1000"]);
}

#[wasm_bindgen_test]
async fn a_write_failing_within_send_is_reported_after_send_returns() {
    // The writer runs within send(); when the write fails there (the socket was closing,
    // its close not read yet), no event may come from inside the call: listeners would
    // run within the caller's send() (a WebSocket-like API never fires from send()).
    let (client, mut events, wire) = connected(None).await;
    let inside = Rc::new(Cell::new(false));
    let heard = Rc::new(RefCell::new(Vec::new()));
    let (during, log) = (inside.clone(), heard.clone());
    let _listener = client.on_event(move |e| {
        if let Event::Disconnected { .. } = e {
            log.borrow_mut().push(during.get());
        }
    });
    wire.ended.set(true);
    inside.set(true);
    client.send("into a closing socket").expect("send");
    inside.set(false);
    until(&mut events, 2000, "disconnected", |e| {
        matches!(e, Event::Disconnected { .. })
    })
    .await;
    assert_eq!(*heard.borrow(), [false], "not from inside send()");
}

#[wasm_bindgen_test]
async fn closing_while_reading_is_paused_ends_the_socket() {
    // Reading paused (an events reader behind) when the client closes: the socket's end
    // must still be read, or the close never completes and the socket is never let go.
    let (client, _events, wire) = connected(Some(2)).await;
    wire.deliver((0..10).map(|i| text(&i.to_string())));
    pause(0).await;
    pause(0).await;
    assert!(wire.reads.get() < 10, "paused, read {}", wire.reads.get());
    wire.echo_close.set(true);
    within(3000, "closed now", client.close_now(1000, "bye")).await;
    assert_eq!(client.state(), State::Closed);
    within(2000, "the socket released", async {
        while wire.halves_dropped.get() < 2 {
            pause(5).await;
        }
    })
    .await;
}

#[wasm_bindgen_test]
async fn a_socket_whose_write_failed_is_let_go_at_once() {
    // The write fails and the socket's end never comes (a WebSocket whose closing
    // handshake never finishes): the socket is ended at once, as native and the npm
    // package's driver end it, or it would hold the client's close for good.
    let config = support::config("ws://double.invalid/")
        .heartbeat(None)
        .backoff(BackoffConfig {
            // No second socket (whose connect would end the first one's reader) meanwhile.
            initial_delay: Duration::from_secs(60),
            max_delay: Duration::from_secs(60),
            jitter: Jitter::None,
            ..BackoffConfig::default()
        });
    let (client, mut events, wire) = connected_with(config).await;
    wire.ended.set(true);
    client.send("into a closing socket").expect("send");
    let cause = disconnected(&mut events).await;
    assert_eq!(cause.kind, CauseKind::Network, "{cause:?}");
    within(2000, "closed", client.close(1000, "bye")).await;
    assert_eq!(client.state(), State::Closed);
    assert_eq!(wire.connects.get(), 1);
    assert_eq!(wire.halves_dropped.get(), 2, "the socket released");
}
