//! Attacks on the flow control of `flow_control.rs`: producers held up by sessions
//! nobody will ever read, a chatty client starving a waiting producer, the polling
//! transport, the resume budget's accounting, and aging by silence.

mod support;

use std::time::Duration;

use futures_util::StreamExt as _;
use support::*;
use tether_core::close::codes;
use tether_core::protocol::{Envelope, ResumeLimits};
use tokio_tungstenite::tungstenite::Message;

/// Two clients of one user: A (replaced with 4409, which it obeys: it never comes back)
/// left its session full of unacknowledged pushes. A producer waiting for room for
/// every client of the user must not wait for A, whose messages only age out after
/// `max_age` (two minutes): B, the user's live client, gets its message at once.
#[tokio::test]
async fn a_replaced_clients_full_session_does_not_hold_up_send_to_user_wait() {
    bounded(60, async {
        let server = start(config()).await;
        let addr = server.addr();
        let hub = server.hub().clone();
        let bearer = token("two-tabs");
        let window = ResumeLimits::default().max_messages;
        let a = Client::new(0xa1);
        let (mut ws_a, _) = a.open(addr, "", Some(&bearer)).await;
        for n in 1..=window {
            assert_eq!(hub.send_to_user_wait("two-tabs", format!("s{n}")).await, 1);
        }
        let mut b = Client::new(0xb2);
        let (mut ws_b, _) = b.open(addr, "", Some(&bearer)).await;
        assert_eq!(close_code(&mut ws_a).await, Some(4409), "A is replaced");
        let sent = tokio::time::timeout(STEP, hub.send_to_user_wait("two-tabs", "for b"))
            .await
            .expect("the live client is not held up by the replaced one's session");
        assert!(sent >= 1);
        let (got, _) = b.collect(&mut ws_b, 1).await;
        assert_eq!(texts(&got), ["for b"]);
        close(ws_b).await;
        server.shutdown().await;
    })
    .await;
}

/// The polling transport, past its window: the request that overflows what is held is
/// answered as a lost transport (503), and nothing else in that request is taken: not
/// a resend after an Ack that made room, however well-formed. The next Hello's Welcome
/// names exactly what was taken, and the server took each message once.
#[tokio::test]
async fn a_poll_request_past_the_window_takes_nothing_after_it() {
    bounded(60, async {
        let server = start(config()).await;
        let mut tap = server.hub().tap();
        let addr = server.addr();
        let bearer = token("poll-pushy");
        let window = ResumeLimits::default().max_messages as u64;
        let mut c = Client::new(0x9011);
        let (status, _) = c.poll(addr, "send", "", &bearer, &[c.hello()]).await;
        assert_eq!(status, hyper::StatusCode::OK);
        // A window of messages taken (their echoes fill the resume buffer), then a
        // window held.
        for _ in 0..2 {
            let batch: Vec<Envelope> = (0..window)
                .map(|_| {
                    let n = c.send_seq + 1;
                    c.msg(&format!("m{n}"))
                })
                .collect();
            let (status, answer) = c.poll(addr, "send", "", &bearer, &batch).await;
            assert_eq!(status, hyper::StatusCode::OK);
            assert!(
                !answer
                    .iter()
                    .any(|e| matches!(e, Envelope::Ack { seq } if *seq > window)),
                "{answer:?}"
            );
        }
        // One past the window, then an Ack of every echo and a resend of the first
        // held message, in the same request.
        let past = c.msg("past");
        let resend = Envelope::Msg {
            seq: window + 1,
            payload: format!("m{}", window + 1).into(),
        };
        let (status, _) = c
            .poll(
                addr,
                "send",
                "",
                &bearer,
                &[past, Envelope::Ack { seq: window }, resend],
            )
            .await;
        assert_eq!(status, hyper::StatusCode::SERVICE_UNAVAILABLE);
        let mut delivered = Vec::new();
        while let Ok(d) = tap.try_recv() {
            delivered.push(d.payload);
        }
        let want: Vec<String> = (1..=window).map(|n| format!("m{n}")).collect();
        assert_eq!(
            delivered.len(),
            want.len(),
            "nothing taken past the overflow: {:?}",
            texts(&delivered).last()
        );
        assert_eq!(texts(&delivered), want);

        c.recv_seq = window;
        let (status, answer) = c.poll(addr, "send", "", &bearer, &[c.hello()]).await;
        assert_eq!(status, hyper::StatusCode::OK);
        assert!(
            matches!(
                answer.first(),
                Some(Envelope::Welcome { recv_seq, resumed: true, .. }) if *recv_seq == window
            ),
            "{answer:?}"
        );
        server.shutdown().await;
    })
    .await;
}

/// A slow reader that keeps its sends coming (its echoes always wait for room, as a
/// client whose queue stays full does): every Ack it sends makes room that its own held
/// messages take at once. A producer waiting in `send_to_user_wait` must still get in
/// after a bounded number of those Acks, not wait until the client stops talking.
#[tokio::test]
async fn a_chatty_slow_reader_does_not_starve_a_waiting_producer() {
    bounded(60, async {
        let server = start(config()).await;
        let addr = server.addr();
        let hub = server.hub().clone();
        let window = ResumeLimits::default().max_messages as u64;
        const HELD: u64 = 500;
        const STEP_N: u64 = 100;
        let mut c = Client::new(0xc3);
        let (mut ws, _) = c.open(addr, "", Some(&token("chatty"))).await;
        for n in 1..=window + HELD {
            let m = c.msg(&format!("m{n}"));
            send(&mut ws, m).await;
        }
        send(&mut ws, Envelope::Ping { id: 1 }).await;
        let (first, acked) = read_to_pong(&mut c, &mut ws, 1).await;
        assert_eq!((first.len() as u64, acked), (window, window));

        let push = tokio::spawn(async move { hub.send_to_user_wait("chatty", "push").await });
        let mut read_acked = 0;
        let mut pushed = false;
        for round in 0..20u64 {
            // Acknowledge the oldest 100 echoes read, and send 100 more: what is held
            // stays at 500.
            read_acked += STEP_N;
            send(&mut ws, Envelope::Ack { seq: read_acked }).await;
            for _ in 0..STEP_N {
                let n = c.send_seq + 1;
                let m = c.msg(&format!("m{n}"));
                send(&mut ws, m).await;
            }
            send(&mut ws, Envelope::Ping { id: round + 2 }).await;
            let (got, _) = read_to_pong(&mut c, &mut ws, round + 2).await;
            if got.iter().any(|p| p == "push") {
                pushed = true;
                break;
            }
        }
        assert!(pushed, "the producer got in while the client kept talking");
        assert_eq!(push.await.unwrap(), 1);
        // The client's held messages go on: every one is echoed once acknowledged.
        for id in 100..120 {
            send(&mut ws, Envelope::Ack { seq: c.recv_seq }).await;
            send(&mut ws, Envelope::Ping { id }).await;
            let (_, acked) = read_to_pong(&mut c, &mut ws, id).await;
            if acked == c.send_seq {
                break;
            }
        }
        assert_eq!(c.recv_seq, c.send_seq + 1, "every echo and the push");
        close(ws).await;
        server.shutdown().await;
    })
    .await;
}

/// A producer waiting for two full sessions of a user keeps room for its message in
/// each: the live client's Acks make room that its held messages take all but one
/// message's worth of (it is held up by no more than the producer's message, however
/// long the producer waits for the other client); and a producer that gives up gives
/// that room back: the next held message goes on at once, with its Ack, without the
/// client having to send anything more.
#[tokio::test]
async fn a_waiting_producer_keeps_one_messages_room_and_gives_it_back_when_it_stops() {
    bounded(60, async {
        let server = start(config()).await;
        let addr = server.addr();
        let hub = server.hub().clone();
        let bearer = token("gone-and-here");
        let window = ResumeLimits::default().max_messages as u64;
        // Client A fills its session with pushes it never acknowledges, and goes.
        let a = Client::new(0xa0);
        let (ws_a, _) = a.open(addr, "", Some(&bearer)).await;
        for n in 1..=window {
            assert_eq!(hub.send_to_user("gone-and-here", format!("s{n}")), 1);
        }
        drop(ws_a);
        // Client B fills its own with echoes, and sends 100 more that are held.
        let mut b = Client::new(0xb0);
        let (mut ws_b, _) = b.open(addr, "", Some(&bearer)).await;
        for n in 1..=window + 100 {
            let m = b.msg(&format!("m{n}"));
            send(&mut ws_b, m).await;
        }
        send(&mut ws_b, Envelope::Ping { id: 1 }).await;
        let (echoes, acked) = read_to_pong(&mut b, &mut ws_b, 1).await;
        assert_eq!((echoes.len() as u64, acked), (window, window));
        // A producer waits for both (A never makes room).
        let producer = hub.clone();
        let wait = tokio::spawn(async move {
            let send = producer.send_to_user_wait("gone-and-here", "never");
            tokio::time::timeout(Duration::from_millis(500), send).await
        });
        tokio::task::yield_now().await;
        // B acknowledges 100 echoes: 99 of its held messages go on, one message's room
        // is kept.
        send(&mut ws_b, Envelope::Ack { seq: 100 }).await;
        send(&mut ws_b, Envelope::Ping { id: 2 }).await;
        let (more, acked) = read_to_pong(&mut b, &mut ws_b, 2).await;
        let want: Vec<String> = (window + 1..window + 100)
            .map(|n| format!("m{n}"))
            .collect();
        assert_eq!(more, want);
        assert_eq!(acked, window + 99);
        assert!(wait.await.unwrap().is_err(), "A never makes room");
        // The producer gave up: the last held message goes on by itself.
        let last = b.wait_ack(&mut ws_b, window + 100).await;
        let last = if last.is_empty() {
            b.collect(&mut ws_b, 1).await.0
        } else {
            last
        };
        assert_eq!(texts(&last), [format!("m{}", window + 100)]);
        close(ws_b).await;
        server.shutdown().await;
    })
    .await;
}

/// Resume messages age by the client's silence: a connected client that reads nothing
/// but keeps pinging keeps them past `max_age` (it resumes them after a reconnect); one
/// that stays silent as long loses them (its next Hello is a reset).
#[tokio::test]
async fn a_pinging_client_keeps_its_unacked_messages_past_max_age_and_a_silent_one_does_not() {
    bounded(60, async {
        let mut cfg = config();
        cfg.resume_limits.max_age = Duration::from_millis(500);
        cfg.sweep_interval = Duration::from_millis(50);
        let server = start(cfg).await;
        let addr = server.addr();
        let hub = server.hub().clone();
        for (user, pings) in [("pinger", true), ("mute", false)] {
            let bearer = token(user);
            let mut c = Client::new(0x5e);
            let (mut ws, _) = c.open(addr, "", Some(&bearer)).await;
            for n in 1..=3 {
                assert_eq!(hub.send_to_user(user, format!("s{n}")), 1);
            }
            let (got, _) = c.collect(&mut ws, 3).await;
            assert_eq!(texts(&got), ["s1", "s2", "s3"]);
            // Three times max_age on the clock, with or without a ping every 100 ms.
            for id in 1..=15 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                if pings {
                    send(&mut ws, Envelope::Ping { id }).await;
                    assert_eq!(recv(&mut ws).await, Envelope::Pong { id });
                }
            }
            drop(ws);
            // The client lost what it read: it asks for all three again.
            c.recv_seq = 0;
            let (mut ws, welcome) = c.open(addr, "", Some(&bearer)).await;
            if pings {
                assert!(
                    matches!(welcome, Envelope::Welcome { resumed: true, .. }),
                    "{welcome:?}"
                );
                let (again, _) = c.collect(&mut ws, 3).await;
                assert_eq!(texts(&again), ["s1", "s2", "s3"]);
            } else {
                assert!(
                    matches!(welcome, Envelope::Welcome { resumed: false, .. }),
                    "a silent client's messages aged out: {welcome:?}"
                );
            }
            close(ws).await;
        }
        server.shutdown().await;
    })
    .await;
}

/// Whatever was held, resumed or overflowed, the resume budget's count comes back to
/// nothing once every session is forgotten.
#[tokio::test]
async fn the_resume_budget_returns_to_zero_after_held_and_overflowed_sessions_go() {
    bounded(60, async {
        let mut cfg = config();
        cfg.session_ttl = Duration::from_millis(300);
        cfg.idle_limit = Duration::from_millis(300);
        cfg.sweep_interval = Duration::from_millis(50);
        let server = start(cfg).await;
        let addr = server.addr();
        let hub = server.hub().clone();
        let window = ResumeLimits::default().max_messages;
        let body = "z".repeat(700);
        // A WebSocket client past its window (closed 1013), and one left with held
        // messages when it goes.
        for (user, sent) in [("ws-over", 2 * window + 1), ("ws-held", window + 10)] {
            let mut c = Client::new(0x77);
            let (mut ws, _) = c.open(addr, "", Some(&token(user))).await;
            for _ in 0..sent {
                let m = c.msg(&body);
                send(&mut ws, m).await;
            }
            if sent > 2 * window {
                assert_eq!(close_code(&mut ws).await, Some(1013));
            } else {
                send(&mut ws, Envelope::Ping { id: 1 }).await;
                let (echoes, _) = read_to_pong(&mut c, &mut ws, 1).await;
                assert_eq!(echoes.len(), window);
                close(ws).await;
            }
        }
        // A polling client with held messages that stops polling.
        let bearer = token("poll-held");
        let mut p = Client::new(0x78);
        let (status, _) = p.poll(addr, "send", "", &bearer, &[p.hello()]).await;
        assert_eq!(status, hyper::StatusCode::OK);
        let batch: Vec<Envelope> = (0..window + 10).map(|_| p.msg(&body)).collect();
        let (status, _) = p.poll(addr, "send", "", &bearer, &batch).await;
        assert_eq!(status, hyper::StatusCode::OK);
        assert!(hub.memory().resume_bytes > 0);
        // The sweeper forgets them (the polling transport after its idle limit).
        let deadline = tokio::time::Instant::now() + Duration::from_secs(45);
        while hub.sessions() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(hub.sessions(), 0);
        assert_eq!(hub.memory().resume_bytes, 0, "the budget's count drifted");
        server.shutdown().await;
    })
    .await;
}

/// Bad sequence numbers among held messages: a zero seq is refused at once (4400)
/// and nothing held behind it is taken; a gap behind held messages is found when they
/// are taken, after the ones before it, and the server took each message once.
#[tokio::test]
async fn zero_seqs_and_gaps_among_held_messages_are_protocol_errors_and_nothing_is_taken_twice() {
    bounded(60, async {
        let server = start(config()).await;
        let mut tap = server.hub().tap();
        let addr = server.addr();
        let window = ResumeLimits::default().max_messages as u64;
        for (user, bad) in [("zero", 0u64), ("gap", window + 5)] {
            let bearer = token(user);
            let mut c = Client::new(0x2e);
            let (mut ws, _) = c.open(addr, "", Some(&bearer)).await;
            for n in 1..=window + 2 {
                let m = c.msg(&format!("m{n}"));
                send(&mut ws, m).await;
            }
            let m = Envelope::Msg {
                seq: bad,
                payload: "bad".into(),
            };
            send(&mut ws, m).await;
            // Acknowledging the echoes lets what is held go on (for the gap).
            send(&mut ws, Envelope::Ack { seq: window }).await;
            let mut echoes = 0;
            let code = loop {
                let next = tokio::time::timeout(STEP, ws.next())
                    .await
                    .expect("read timed out");
                match next {
                    Some(Ok(Message::Close(frame))) => break frame.map(|f| u16::from(f.code)),
                    Some(Ok(Message::Text(t))) => {
                        let frame = tether_core::Payload::from(t.as_str());
                        if let Ok(m @ Envelope::Msg { .. }) = Envelope::decode(frame) {
                            c.take(&m);
                            echoes += 1;
                        }
                    }
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => break None,
                }
            };
            assert_eq!(code, Some(codes::PROTOCOL_ERROR), "{user}");
            let mut delivered = Vec::new();
            while let Ok(d) = tap.try_recv() {
                delivered.push(d.payload);
            }
            let taken = if bad == 0 { window } else { window + 2 };
            assert_eq!(
                (delivered.len() as u64, echoes),
                (taken, taken),
                "{user}: taken once, up to the bad one"
            );
            let want: Vec<String> = (1..=taken).map(|n| format!("m{n}")).collect();
            assert_eq!(texts(&delivered), want);
            // The next Hello acknowledges exactly what was taken.
            let (_, welcome) = c.open(addr, "", Some(&bearer)).await;
            assert!(
                matches!(welcome, Envelope::Welcome { recv_seq, resumed: true, .. } if recv_seq == taken),
                "{user}: {welcome:?}"
            );
        }
        server.shutdown().await;
    })
    .await;
}

/// A Hello on a polling transport while messages are held on the client's WebSocket:
/// the WebSocket is detached (1000), its held messages are dropped unacknowledged (the
/// Welcome names only what was taken), and what the old socket still sends is ignored;
/// resent on the new transport, each message is taken once.
#[tokio::test]
async fn a_new_transport_drops_what_the_old_one_held_and_the_resend_is_taken_once() {
    bounded(60, async {
        let server = start(config()).await;
        let mut tap = server.hub().tap();
        let addr = server.addr();
        let bearer = token("switcher");
        let window = ResumeLimits::default().max_messages as u64;
        let mut c = Client::new(0x5a);
        let (mut ws, _) = c.open(addr, "", Some(&bearer)).await;
        for n in 1..=window + 50 {
            let m = c.msg(&format!("m{n}"));
            send(&mut ws, m).await;
        }
        send(&mut ws, Envelope::Ping { id: 1 }).await;
        let (echoes, acked) = read_to_pong(&mut c, &mut ws, 1).await;
        assert_eq!((echoes.len() as u64, acked), (window, window));
        // The client moves to polling, having read every echo.
        let (status, answer) = c.poll(addr, "send", "", &bearer, &[c.hello()]).await;
        assert_eq!(status, hyper::StatusCode::OK);
        assert!(
            matches!(answer.first(), Some(Envelope::Welcome { recv_seq, resumed: true, .. }) if *recv_seq == window),
            "{answer:?}"
        );
        // The old socket is told to go; an Ack it still sends makes no held message go.
        send(&mut ws, Envelope::Ack { seq: window }).await;
        assert_eq!(close_code(&mut ws).await, Some(codes::NORMAL));
        // The resend, on the new transport.
        let resend: Vec<Envelope> = (window + 1..=window + 50)
            .map(|n| Envelope::Msg {
                seq: n,
                payload: format!("m{n}").into(),
            })
            .collect();
        let (status, answer) = c.poll(addr, "send", "", &bearer, &resend).await;
        assert_eq!(status, hyper::StatusCode::OK);
        assert!(
            answer.contains(&Envelope::Ack { seq: window + 50 }),
            "{answer:?}"
        );
        let mut delivered = Vec::new();
        while let Ok(d) = tap.try_recv() {
            delivered.push(d.payload);
        }
        let want: Vec<String> = (1..=window + 50).map(|n| format!("m{n}")).collect();
        assert_eq!(delivered.len(), want.len());
        assert_eq!(texts(&delivered), want, "each message taken once");
        server.shutdown().await;
    })
    .await;
}
