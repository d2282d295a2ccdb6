//! The web driver against the reference server, through the fault harness, in Node and
//! in headless Chromium (the same tests; scripts/test-wasm.sh runs both).
#![cfg(all(target_arch = "wasm32", target_os = "unknown"))]

mod support;

use std::cell::Cell;
use std::rc::Rc;

use support::{config, dispatch, fault, http_url, pause, post_json, tag, until, within, ws_url};
use tether_core::{
    AuthConfig, Duration, Event, FallbackConfig, HeartbeatConfig, Hint, Instant, Payload, State,
    Token, TokenPlacement,
};
use tether_web::{Client, DeliveryError, Events};
use wasm_bindgen::prelude::*;
use wasm_bindgen_test::wasm_bindgen_test;

fn connected(e: &Event) -> bool {
    matches!(
        e,
        Event::StateChanged {
            to: State::Connected,
            ..
        }
    )
}

fn text(e: &Event) -> Option<&str> {
    match e {
        Event::Message(Payload::Text(t)) => Some(t),
        _ => None,
    }
}

/// The next `n` text messages.
async fn texts(events: &mut Events, n: usize, ms: u32) -> Vec<String> {
    let mut got = Vec::new();
    within(ms, &format!("{n} messages"), async {
        while got.len() < n {
            match events.recv().await {
                Some(Event::Message(Payload::Text(t))) => got.push(t.to_string()),
                Some(_) => {}
                None => break,
            }
        }
    })
    .await;
    got
}

/// A Rust program using tether-web directly, with a config that fixes no seed: each client
/// draws its own entropy (`crypto.getRandomValues`), so two are two clients with their own
/// id. Until the driver drew it, every such client presented the core's constant one.
#[wasm_bindgen_test]
async fn two_clients_from_default_configs_have_their_own_ids() {
    let url = ws_url(&tag("ids"), "/ws");
    let config = || {
        tether_core::Config::builder(url.as_str())
            .protocol()
            .build()
            .unwrap()
    };
    let a = Client::connect(config()).unwrap();
    let b = Client::connect(config()).unwrap();
    assert_ne!(a.client_id(), b.client_id(), "one client id for two");
    a.close(1000, "done").await;
    b.close(1000, "done").await;
}

/// A poll answer that never ends (here: 64 MiB with no Content-Length) is read no further
/// than the limit native uses too (`http_body_limit`, 1 MiB for 1 KiB messages) and fails
/// the request with `MessageTooLarge`, as on native.
#[wasm_bindgen_test]
async fn a_poll_body_that_never_ends_fails_at_the_limit_as_on_native() {
    use tether_core::TransportFailure;
    use tether_dispatch::transport::{http_body_limit, Transport};
    let fetch = support::endless_fetch(1024);
    let transport = tether_web::WebTransport::new()
        .fetch(fetch.clone())
        .max_message_bytes(1024);
    let result = within(
        10_000,
        "the poll",
        transport.post(http_url(&tag("body"), "/poll"), vec![], vec![]),
    )
    .await;
    let limit = http_body_limit(1024);
    match result {
        Err(TransportFailure::MessageTooLarge { size }) => {
            assert!(size > limit && size <= limit + 64 * 1024, "{size}");
        }
        other => panic!("{other:?}"),
    }
    let pulled = js_sys::Reflect::get(&fetch, &"pulled".into())
        .unwrap()
        .as_f64()
        .unwrap();
    assert!(
        pulled < 64.0,
        "read {pulled} chunks of 1024: not stopped at the limit"
    );
}

/// Waits (10 s at most) until the harness sees no open WebSocket of `tag`.
async fn no_socket_open(tag: &str) {
    let url = format!("http://{}/__harness/idle?tag={tag}", support::harness());
    let answer = post_json(&url, "").await;
    assert!(answer.contains("\"open\":0"), "still open: {answer}");
}

/// A frame over the limit native uses too (`frame_limit`: 1,088 bytes for 1 KiB messages;
/// a text frame by its UTF-8 length, not its length in JavaScript: "é" is 2 bytes and 1
/// unit, an emoji 4 bytes and 2 units) fails the socket with `MessageTooLarge`, and the
/// socket is ended, as on native; frames at the limit are read.
#[wasm_bindgen_test]
async fn a_frame_over_the_limit_fails_the_socket_as_on_native() {
    use tether_core::TransportFailure;
    use tether_dispatch::transport::Transport;
    use tether_dispatch::transport::{frame_limit, SocketEvent, SocketReader, SocketWriter};
    let limit = frame_limit(1024);
    // The limit from a config, as a transport given to the client should be made.
    let limits = config("ws://127.0.0.1:1/ws")
        .max_message_bytes(1024)
        .build()
        .unwrap();
    let transport = tether_web::WebTransport::for_config(&limits);
    let at_limit = || {
        [
            Payload::from("é".repeat(limit / 2)),
            Payload::from("😀".repeat(limit / 4)),
            Payload::from(vec![7u8; limit]),
        ]
    };
    let over = [
        (Payload::from("é".repeat(limit / 2 + 1)), limit + 2),
        (Payload::from("😀".repeat(limit / 4 + 1)), limit + 4),
        (Payload::from(vec![7u8; limit + 1]), limit + 1),
    ];
    for (over, size) in over {
        let tag = tag("frame-limit");
        let (mut writer, mut reader) = within(
            5000,
            "the socket",
            transport.connect(ws_url(&tag, "/echo"), vec![], vec![]),
        )
        .await
        .expect("open");
        for frame in at_limit() {
            writer.send(frame.clone()).await.expect("sent");
            let echo = within(5000, "the echo", reader.next()).await;
            assert_eq!(echo, SocketEvent::Frame(frame), "at the limit: read");
        }
        writer.send(over).await.expect("sent");
        let event = within(5000, "the echo over the limit", reader.next()).await;
        assert_eq!(
            event,
            SocketEvent::Failed(TransportFailure::MessageTooLarge { size })
        );
        // Ended by the transport, its halves still held.
        no_socket_open(&tag).await;
    }
}

#[wasm_bindgen(inline_js = r#"
// A WebSocket constructor whose sockets open, receive one binary frame of `bytes` bytes
// and stay open; `ended` counts the sockets closed.
export function oneFrameSocket(bytes) {
  const ctor = class {
    constructor() {
      this.readyState = 0;
      setTimeout(() => {
        this.readyState = 1;
        this.onopen({});
        this.onmessage({ data: new ArrayBuffer(bytes) });
      }, 0);
    }
    send() {}
    close() {
      if (this.readyState < 2) ctor.ended += 1;
      this.readyState = 3;
    }
  };
  ctor.ended = 0;
  return ctor;
}
"#)]
extern "C" {
    #[wasm_bindgen(js_name = oneFrameSocket)]
    fn one_frame_socket(bytes: u32) -> JsValue;
}

/// The frame over the limit is not copied into wasm memory on its way to being refused:
/// a 48 MiB one grows the memory by far less than 48 MiB (wasm memory never shrinks, so
/// a copy would show).
#[wasm_bindgen_test]
async fn a_frame_over_the_limit_is_not_copied_into_wasm_memory() {
    use tether_core::TransportFailure;
    use tether_dispatch::transport::{SocketEvent, SocketReader, Transport};
    let memory = || {
        wasm_bindgen::memory()
            .unchecked_into::<js_sys::WebAssembly::Memory>()
            .buffer()
            .unchecked_into::<js_sys::ArrayBuffer>()
            .byte_length()
    };
    let size = 48 << 20;
    let ctor = one_frame_socket(size);
    let transport = tether_web::WebTransport::new()
        .websocket_constructor(ctor.clone())
        .max_message_bytes(1024);
    let before = memory();
    let (_writer, mut reader) = within(
        5000,
        "the socket",
        transport.connect("ws://one-frame.invalid/".to_owned(), vec![], vec![]),
    )
    .await
    .expect("open");
    match within(5000, "the frame", reader.next()).await {
        SocketEvent::Failed(TransportFailure::MessageTooLarge { size: seen }) => {
            assert_eq!(seen, size as usize);
        }
        // Not printed whole.
        SocketEvent::Frame(frame) => panic!("taken in: a frame of {} bytes", frame.len()),
        other => panic!("{other:?}"),
    }
    let grown = memory() - before;
    assert!(grown < 8 << 20, "wasm memory grew by {grown} bytes");
    let ended = js_sys::Reflect::get(&ctor, &"ended".into()).unwrap();
    assert_eq!(ended.as_f64(), Some(1.0), "the socket was ended");
}

#[wasm_bindgen_test]
async fn echoes_text_and_binary_and_flushes_what_was_queued_while_connecting() {
    let tag = tag("echo");
    let client = Client::connect(config(&ws_url(&tag, "/echo")).build().unwrap()).unwrap();
    let mut events = client.events();
    assert_eq!(client.state(), State::Connecting);
    // Queued: nothing is open yet.
    client.send("hello").unwrap();
    client.send(vec![0u8, 1, 2, 255]).unwrap();
    assert_eq!(client.metrics().queue_depth, 2);
    until(&mut events, 5000, "connected", connected).await;
    let first = until(&mut events, 5000, "the text echo", |e| {
        matches!(e, Event::Message(_))
    })
    .await;
    assert_eq!(first, Event::Message(Payload::Text("hello".into())));
    let second = until(&mut events, 5000, "the binary echo", |e| {
        matches!(e, Event::Message(_))
    })
    .await;
    assert_eq!(second, Event::Message(Payload::from(vec![0, 1, 2, 255])));
    let m = client.metrics();
    assert_eq!((m.messages_out, m.messages_in, m.queue_depth), (2, 2, 0));
    client.close(1000, "done").await;
    assert_eq!(client.state(), State::Closed);
    assert!(
        client.send("late").is_err(),
        "a closed client refuses sends"
    );
}

#[wasm_bindgen_test]
async fn measures_rtt_and_reports_quality() {
    let tag = tag("rtt");
    let config = config(&ws_url(&tag, "/echo"))
        .plain_heartbeat("ping", "pong")
        .heartbeat(Some(HeartbeatConfig {
            interval: Duration::from_millis(100),
            timeout: Duration::from_millis(90),
            max_missed: 3,
        }))
        .build()
        .unwrap();
    let client = Client::connect(config).unwrap();
    let mut events = client.events();
    let event = until(&mut events, 8000, "a quality level", |e| {
        matches!(e, Event::QualityChanged { .. })
    })
    .await;
    let Event::QualityChanged { reliability, .. } = event else {
        unreachable!()
    };
    assert!(reliability > 0);
    let m = client.metrics();
    let rtt = m.rtt_mean.expect("a mean RTT once quality is known");
    assert!(
        rtt < std::time::Duration::from_secs(1),
        "RTT on loopback: {rtt:?}"
    );
    assert!(m.rtt.is_some() && m.rtt_p50.is_some() && m.rtt_p99.is_some());
    assert!(client.quality().is_some());
    assert_eq!(m.loss, 0.0);
    client.close(1000, "").await;
}

#[wasm_bindgen_test]
async fn flushes_the_queue_in_order_after_a_reconnect() {
    let tag = tag("queue");
    let client = Client::connect(config(&ws_url(&tag, "/echo")).build().unwrap()).unwrap();
    let mut events = client.events();
    until(&mut events, 5000, "connected", connected).await;
    fault("block", &tag).await;
    fault("drop", &tag).await;
    until(&mut events, 5000, "the drop", |e| {
        matches!(e, Event::Disconnected { .. })
    })
    .await;
    // Attempts now fail (503): everything sent waits in the queue.
    until(
        &mut events,
        5000,
        "a failed attempt",
        |e| matches!(e, Event::ReconnectScheduled { attempt, .. } if *attempt >= 2),
    )
    .await;
    let sent: Vec<String> = (0..30).map(|i| format!("queued-{i}")).collect();
    for s in &sent {
        client.send(s.as_str()).unwrap();
    }
    assert_eq!(client.metrics().queue_depth, 30);
    fault("unblock", &tag).await;
    until(&mut events, 5000, "reconnected", connected).await;
    assert_eq!(texts(&mut events, 30, 5000).await, sent);
    assert_eq!(client.metrics().reconnects, 1);
    client.close(1000, "").await;
}

#[wasm_bindgen_test]
async fn reconnects_after_the_server_restarts() {
    let tag = tag("restart");
    let client = Client::connect(config(&ws_url(&tag, "/ws")).protocol().build().unwrap()).unwrap();
    let mut events = client.events();
    until(&mut events, 5000, "connected", connected).await;
    client.send("before").unwrap();
    assert_eq!(texts(&mut events, 1, 5000).await, ["before"]);
    fault("restart", "").await;
    until(&mut events, 5000, "the drop", |e| {
        matches!(e, Event::Disconnected { .. })
    })
    .await;
    until(
        &mut events,
        8000,
        "reconnected to the new server",
        connected,
    )
    .await;
    client.send("after").unwrap();
    assert_eq!(texts(&mut events, 1, 5000).await, ["after"]);
    assert!(client.metrics().reconnects >= 1);
    client.close(1000, "").await;
}

#[wasm_bindgen_test]
async fn asks_the_token_provider_before_every_attempt() {
    let tag = tag("token");
    let calls = Rc::new(Cell::new(0u32));
    let counter = calls.clone();
    let token_url = http_url(&tag, "/api/token");
    let user = format!("user-{tag}");
    let config = config(&ws_url(&tag, "/ws"))
        .protocol()
        .auth(AuthConfig {
            placement: TokenPlacement::Query("access_token".into()),
            ..AuthConfig::default()
        })
        .build()
        .unwrap();
    let client = Client::builder(config)
        .token_provider(move || {
            counter.set(counter.get() + 1);
            let (url, user) = (token_url.clone(), user.clone());
            async move {
                let body = post_json(&url, &format!(r#"{{"user":"{user}","ttl_secs":600}}"#)).await;
                let start = body.find(r#""token":""#).ok_or(body.clone())? + 9;
                let end = start + body[start..].find('"').ok_or(body.clone())?;
                Ok(Token {
                    value: body[start..end].to_owned(),
                    expires_at: Some(Instant::now() + Duration::from_secs(600)),
                })
            }
        })
        .spawn()
        .unwrap();
    let mut events = client.events();
    until(&mut events, 5000, "connected with a token", connected).await;
    assert_eq!(calls.get(), 1);
    for round in 2..=3 {
        fault("drop", &tag).await;
        until(&mut events, 5000, "the drop", |e| {
            matches!(e, Event::Disconnected { .. })
        })
        .await;
        until(
            &mut events,
            5000,
            "reconnected with a fresh token",
            connected,
        )
        .await;
        assert_eq!(calls.get(), round, "one token per attempt");
    }
    client.send("authenticated").unwrap();
    assert_eq!(texts(&mut events, 1, 5000).await, ["authenticated"]);
    client.close(1000, "").await;
}

#[wasm_bindgen_test]
async fn falls_back_to_polling_and_upgrades_back() {
    let tag = tag("poll");
    let mut fallback = FallbackConfig::new(http_url(&tag, "/poll"));
    fallback.after_failures = 2;
    fallback.min_interval = Duration::from_millis(20);
    fallback.max_interval = Duration::from_millis(200);
    fallback.probe_interval = Duration::from_millis(300);
    fault("block", &tag).await;
    let config = config(&ws_url(&tag, "/ws"))
        .protocol()
        .fallback(fallback)
        .build()
        .unwrap();
    let client = Client::connect(config).unwrap();
    let mut events = client.events();
    until(&mut events, 5000, "the fallback", |e| {
        *e == Event::FallbackChanged { active: true }
    })
    .await;
    until(&mut events, 5000, "connected over polling", connected).await;
    assert!(client.metrics().fallback_active);
    client.send("over polling").unwrap();
    assert_eq!(texts(&mut events, 1, 5000).await, ["over polling"]);
    fault("unblock", &tag).await;
    until(&mut events, 5000, "the upgrade back", |e| {
        *e == Event::FallbackChanged { active: false }
    })
    .await;
    assert!(!client.metrics().fallback_active);
    client.send("over the websocket").unwrap();
    assert_eq!(texts(&mut events, 1, 5000).await, ["over the websocket"]);
    client.close(1000, "").await;
}

#[wasm_bindgen_test]
async fn delivers_exactly_once_in_order_across_forced_disconnects() {
    let tag = tag("reliable");
    let client = Client::connect(config(&ws_url(&tag, "/ws")).protocol().build().unwrap()).unwrap();
    let mut events = client.events();
    // A second reader, for the state: `events` keeps every message for the end.
    let mut states = client.events();
    until(&mut states, 5000, "connected", connected).await;
    const N: usize = 300;
    let mut confirmations = Vec::new();
    for round in 0..4 {
        if round > 0 {
            // Each drop hits a live socket: wait for the reconnection after the last one.
            until(&mut states, 5000, "reconnected", connected).await;
        }
        for i in round * 75..(round + 1) * 75 {
            confirmations.push(client.send_confirmed(format!("m{i}")));
            if i % 10 == 9 {
                pause(5).await;
            }
        }
        if round < 3 {
            fault("drop", &tag).await;
        }
    }
    let mut delivered = Vec::new();
    for confirmation in confirmations {
        delivered.push(
            within(10_000, "every acknowledgement", confirmation)
                .await
                .unwrap()
                .0,
        );
    }
    let expected: Vec<u64> = (1..=N as u64).collect();
    assert_eq!(delivered, expected, "each message acknowledged once");
    let echoes = texts(&mut events, N, 10_000).await;
    let sent: Vec<String> = (0..N).map(|i| format!("m{i}")).collect();
    assert_eq!(echoes, sent, "every echo once, in order");
    assert_eq!(client.metrics().reconnects, 3, "the drops happened");
    client.close(1000, "").await;
    // Nothing more arrives: no duplicate was waiting.
    while let Some(e) = events.try_recv() {
        assert!(text(&e).is_none(), "a duplicate: {e:?}");
    }
}

#[wasm_bindgen_test]
async fn detects_a_half_open_socket_and_reconnects() {
    let tag = tag("stall");
    let config = config(&ws_url(&tag, "/echo"))
        .plain_heartbeat("ping", "pong")
        .heartbeat(Some(HeartbeatConfig {
            interval: Duration::from_millis(100),
            timeout: Duration::from_millis(100),
            max_missed: 2,
        }))
        .build()
        .unwrap();
    let client = Client::connect(config).unwrap();
    let mut events = client.events();
    until(&mut events, 5000, "connected", connected).await;
    fault("stall", &tag).await;
    let started = Instant::now();
    until(&mut events, 3000, "the dead socket noticed", |e| {
        matches!(e, Event::Disconnected { .. })
    })
    .await;
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
    until(&mut events, 5000, "reconnected", connected).await;
    client.send("alive").unwrap();
    assert_eq!(texts(&mut events, 1, 5000).await, ["alive"]);
    client.close(1000, "").await;
}

#[wasm_bindgen_test]
async fn follows_offline_and_online() {
    let tag = tag("online");
    fault("block", &tag).await;
    let client = Client::connect(config(&ws_url(&tag, "/echo")).build().unwrap()).unwrap();
    let mut events = client.events();
    until(&mut events, 5000, "a failed attempt", |e| {
        matches!(e, Event::ReconnectScheduled { .. })
    })
    .await;
    // In a page the window's events drive it; in Node there are none, so say it directly.
    let page = dispatch("offline");
    if !page {
        client.hint(Hint::Offline);
    }
    until(&mut events, 5000, "no attempts while offline", |e| {
        matches!(
            e,
            Event::StateChanged {
                to: State::Disconnected,
                ..
            }
        )
    })
    .await;
    fault("unblock", &tag).await;
    assert_eq!(
        client.state(),
        State::Disconnected,
        "still waiting for the network"
    );
    if page {
        dispatch("online");
    } else {
        client.hint(Hint::Online);
    }
    until(&mut events, 5000, "connected once online", connected).await;
    client.close(1000, "").await;
}

#[wasm_bindgen_test]
async fn confirmed_sends_fail_in_plain_mode_and_after_close_now_and_close_delivers_first() {
    let tag = tag("confirm");
    let plain = Client::connect(config(&ws_url(&tag, "/echo")).build().unwrap()).unwrap();
    assert_eq!(
        plain.send_confirmed("x").await,
        Err(DeliveryError::Unconfirmable)
    );
    plain.close(1000, "").await;
    let reliable =
        Client::connect(config(&ws_url(&tag, "/ws")).protocol().build().unwrap()).unwrap();
    let pending = reliable.send_confirmed("never written");
    reliable.close_now(1000, "").await;
    assert!(matches!(pending.await, Err(DeliveryError::Dropped(_))));
    assert!(matches!(
        reliable.send_confirmed("after").await,
        Err(DeliveryError::Rejected(_))
    ));
    // close() delivers what was sent before it, then closes.
    let lingering =
        Client::connect(config(&ws_url(&tag, "/ws")).protocol().build().unwrap()).unwrap();
    let pending = lingering.send_confirmed("written before the close");
    let flushed = lingering.flush();
    lingering.close(1000, "").await;
    assert!(pending.await.is_ok(), "delivered by close()");
    assert_eq!(flushed.await, Ok(()));
    assert_eq!(lingering.state(), tether_core::State::Closed);
}

/// `send_wait` fails with `send`'s other refusals, closing among them: one already waiting
/// for room when `close` is called is told at once, as `has_room_for` says yes from then
/// on. The waiting sends looked again only after a drain that did something, and the
/// close's did nothing (its message unacknowledged on a stalled socket): it waited until
/// the linger ran out or the dead socket was noticed.
#[wasm_bindgen_test]
async fn a_send_wait_waiting_when_close_is_called_fails_with_closing_at_once() {
    let tag = tag("wait-close");
    let config = config(&ws_url(&tag, "/ws"))
        .protocol()
        .close_linger(Duration::from_secs(60))
        .queue(tether_core::QueueConfig {
            max_messages: 1,
            ..Default::default()
        })
        .build()
        .unwrap();
    let client = Client::connect(config).unwrap();
    let mut events = client.events();
    until(&mut events, 5000, "connected", connected).await;
    fault("stall", &tag).await;
    client.send("never acknowledged").unwrap();
    let mut waiting = std::pin::pin!(client.send_wait("waits"));
    // Polled once: it finds no room and waits.
    let first = std::future::poll_fn(|cx| {
        std::task::Poll::Ready(std::future::Future::poll(waiting.as_mut(), cx))
    })
    .await;
    assert!(
        first.is_pending(),
        "no room yet, and it did not wait: {first:?}"
    );
    let closing = client.close(1000, "bye");
    let refused = within(3000, "the waiting send's refusal", waiting).await;
    assert_eq!(refused, Err(tether_core::SendError::Closing));
    client.close_now(1000, "bye").await;
    closing.await;
}
