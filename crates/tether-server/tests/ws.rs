//! The Tether protocol over WebSocket: handshake, echo, acks, resend, rooms, limits.

mod support;

use std::time::Duration;

use support::*;
use tether_core::protocol::Envelope;
use tether_core::Payload;

#[tokio::test]
async fn hello_welcome_then_echo_with_acks() {
    bounded(20, async {
        let server = start(config()).await;
        let token = token("alice");
        let mut c = Client::new(0xabc);
        let (mut ws, welcome) = c.open(server.addr(), "", Some(&token)).await;
        let Envelope::Welcome {
            recv_seq, resumed, ..
        } = welcome
        else {
            unreachable!()
        };
        assert_eq!((recv_seq, resumed), (0, false));

        for text in ["one", "two", "three"] {
            let m = c.msg(text);
            send(&mut ws, m).await;
        }
        send(&mut ws, Envelope::Ping { id: 9 }).await;
        let mut echoed = Vec::new();
        let mut acked = 0;
        let mut pong = false;
        while echoed.len() < 3 || acked < 3 || !pong {
            match recv(&mut ws).await {
                m @ Envelope::Msg { .. } => echoed.push(c.take(&m)),
                Envelope::Ack { seq } => acked = acked.max(seq),
                Envelope::Pong { id } => {
                    assert_eq!(id, 9);
                    pong = true;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(texts(&echoed), ["one", "two", "three"]);

        // Binary messages come back binary.
        send(
            &mut ws,
            Envelope::Msg {
                seq: 4,
                payload: Payload::from(vec![0, 1, 2, 255]),
            },
        )
        .await;
        let (got, _) = c.collect(&mut ws, 1).await;
        assert_eq!(got, [Payload::from(vec![0, 1, 2, 255])]);

        // A resent (duplicate) message is acked again, not echoed twice.
        send(
            &mut ws,
            Envelope::Msg {
                seq: 2,
                payload: "two".into(),
            },
        )
        .await;
        assert_eq!(recv(&mut ws).await, Envelope::Ack { seq: 4 });

        close(ws).await;
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn resend_after_reconnect_with_partial_ack() {
    bounded(20, async {
        let server = start(config()).await;
        let token = token("bob");
        let mut c = Client::new(7);
        let (mut ws, first) = c.open(server.addr(), "", Some(&token)).await;
        let Envelope::Welcome { session, .. } = first else {
            unreachable!()
        };
        for i in 1..=5 {
            let m = c.msg(&format!("m{i}"));
            send(&mut ws, m).await;
        }
        // Read all five echoes, but acknowledge only the first two.
        let mut got = Vec::new();
        while got.len() < 5 {
            if let m @ Envelope::Msg { .. } = recv(&mut ws).await {
                got.push(m);
            }
        }
        for m in &got[..2] {
            c.take(m);
        }
        send(&mut ws, Envelope::Ack { seq: 2 }).await;
        drop(ws); // the connection is lost, no close frame

        // The server still waits for acks of 3..=5; the client has 1..=2.
        let (mut ws, welcome) = c.open(server.addr(), "", Some(&token)).await;
        assert_eq!(
            welcome,
            Envelope::Welcome {
                session,
                recv_seq: 5,
                resumed: true,
                secret: c.secret.get().expect("a secret")
            }
        );
        let (resent, _) = c.collect(&mut ws, 3).await;
        assert_eq!(texts(&resent), ["m3", "m4", "m5"]);

        // Nothing more: a new message gets seq 6, so nothing was duplicated.
        let m = c.msg("m6");
        send(&mut ws, m).await;
        let (next, _) = c.collect(&mut ws, 1).await;
        assert_eq!(texts(&next), ["m6"]);
        assert_eq!(c.recv_seq, 6);

        close(ws).await;
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn garbage_and_protocol_violations_close_4400() {
    bounded(20, async {
        let server = start(config()).await;
        let addr = server.addr();
        let token = token("carol");

        // First frame is not a Hello.
        let mut ws = connect(addr, "/ws", Some(&token)).await;
        send_frame(&mut ws, Payload::Text("M 1 hi".into())).await;
        assert_eq!(close_code(&mut ws).await, Some(4400));

        // A frame that is no envelope at all.
        let mut ws = connect(addr, "/ws", Some(&token)).await;
        send_frame(&mut ws, Payload::Text("hello there".into())).await;
        assert_eq!(close_code(&mut ws).await, Some(4400));

        // Garbage after a good handshake.
        let c = Client::new(1);
        let (mut ws, _) = c.open(addr, "", Some(&token)).await;
        send_frame(&mut ws, Payload::from(vec![0xde, 0xad])).await;
        assert_eq!(close_code(&mut ws).await, Some(4400));

        // A gap in the client's numbering.
        let (mut ws, _) = c.open(addr, "", Some(&token)).await;
        send(
            &mut ws,
            Envelope::Msg {
                seq: 5,
                payload: "x".into(),
            },
        )
        .await;
        assert_eq!(close_code(&mut ws).await, Some(4400));

        // A second Hello.
        let (mut ws, _) = c.open(addr, "", Some(&token)).await;
        send(&mut ws, c.hello()).await;
        assert_eq!(close_code(&mut ws).await, Some(4400));

        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn oversized_message_closes_1009() {
    bounded(20, async {
        let mut cfg = config();
        cfg.max_frame_bytes = 1024;
        let server = start(cfg).await;
        let c = Client::new(2);
        let (mut ws, _) = c.open(server.addr(), "", Some(&token("dave"))).await;
        let big = format!("M 1 {}", "x".repeat(4096));
        send_frame(&mut ws, Payload::from(big)).await;
        assert_eq!(close_code(&mut ws).await, Some(1009));

        let mut echo = connect(server.addr(), "/echo", Some(&token("dave"))).await;
        send_frame(&mut echo, Payload::from(vec![0; 2048])).await;
        assert_eq!(close_code(&mut echo).await, Some(1009));
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn idle_connection_closes_4408() {
    bounded(20, async {
        let mut cfg = config();
        cfg.idle_limit = Duration::from_millis(400);
        let server = start(cfg).await;
        let c = Client::new(3);
        let (mut ws, _) = c.open(server.addr(), "", Some(&token("erin"))).await;
        let started = std::time::Instant::now();
        assert_eq!(close_code(&mut ws).await, Some(4408));
        assert!(started.elapsed() >= Duration::from_millis(300));

        // Traffic keeps a connection alive past the limit.
        let (mut ws, _) = c.open(server.addr(), "", Some(&token("erin"))).await;
        for id in 0..6 {
            tokio::time::sleep(Duration::from_millis(150)).await;
            send(&mut ws, Envelope::Ping { id }).await;
            assert_eq!(recv(&mut ws).await, Envelope::Pong { id });
        }
        assert_eq!(close_code(&mut ws).await, Some(4408));
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn newer_connection_of_same_user_replaces_older_4409() {
    bounded(20, async {
        let server = start(config()).await;
        let addr = server.addr();
        let token = token("frank");

        let laptop = Client::new(0x1a);
        let (mut old, _) = laptop.open(addr, "", Some(&token)).await;
        let phone = Client::new(0x2b);
        let (mut new, _) = phone.open(addr, "", Some(&token)).await;
        assert_eq!(close_code(&mut old).await, Some(4409));

        // A new transport of the *same* client only detaches the old one (1000).
        let (mut newer, welcome) = phone.open(addr, "", Some(&token)).await;
        assert!(matches!(welcome, Envelope::Welcome { resumed: true, .. }));
        assert_eq!(close_code(&mut new).await, Some(1000));

        // Another user is unaffected; /echo has no session and replaces nothing.
        let other = Client::new(0x3c);
        let (mut grace, _) = other.open(addr, "", Some(&support::token("grace"))).await;
        let mut echo = connect(addr, "/echo", Some(&token)).await;
        send(&mut newer, Envelope::Ping { id: 7 }).await;
        assert_eq!(recv(&mut newer).await, Envelope::Pong { id: 7 });
        send(&mut grace, Envelope::Ping { id: 1 }).await;
        assert_eq!(recv(&mut grace).await, Envelope::Pong { id: 1 });
        send_frame(&mut echo, "still here".into()).await;
        assert_eq!(next_data(&mut echo).await, Some("still here".into()));

        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn room_broadcasts_to_every_member() {
    bounded(20, async {
        let server = start(config()).await;
        let addr = server.addr();
        let mut ann = Client::new(10);
        let mut ben = Client::new(11);
        let (mut a, _) = ann.open(addr, "?room=lobby", Some(&token("ann"))).await;
        let (mut b, _) = ben.open(addr, "?room=lobby", Some(&token("ben"))).await;
        let mut outsider = Client::new(12);
        let (mut o, _) = outsider
            .open(addr, "?room=other", Some(&token("olga")))
            .await;

        let m = ann.msg("hi all");
        send(&mut a, m).await;
        let (got_a, _) = ann.collect(&mut a, 1).await;
        let (got_b, _) = ben.collect(&mut b, 1).await;
        assert_eq!(texts(&got_a), ["hi all"]);
        assert_eq!(texts(&got_b), ["hi all"]);

        let m = ben.msg("hello ann");
        send(&mut b, m).await;
        assert_eq!(texts(&ann.collect(&mut a, 1).await.0), ["hello ann"]);
        assert_eq!(texts(&ben.collect(&mut b, 1).await.0), ["hello ann"]);

        // The other room heard nothing; a server broadcast reaches it.
        assert_eq!(server.hub().broadcast("other", "only olga"), 1);
        assert_eq!(texts(&outsider.collect(&mut o, 1).await.0), ["only olga"]);

        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn plain_echo_and_ping_pong() {
    bounded(20, async {
        let server = start(config()).await;
        let mut ws = connect(server.addr(), "/echo", Some(&token("hank"))).await;
        send_frame(&mut ws, "ping".into()).await;
        assert_eq!(next_data(&mut ws).await, Some("pong".into()));
        send_frame(&mut ws, "M 1 not parsed here".into()).await;
        assert_eq!(next_data(&mut ws).await, Some("M 1 not parsed here".into()));
        send_frame(&mut ws, Payload::from(vec![1, 2, 3])).await;
        assert_eq!(next_data(&mut ws).await, Some(Payload::from(vec![1, 2, 3])));
        close(ws).await;
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_late_hello_from_an_abandoned_socket_changes_nothing() {
    bounded(20, async {
        let server = start(config()).await;
        let addr = server.addr();
        let token = token("lena");
        let mut c = Client::new(0x1a7e);
        let (first, _) = c.open(addr, "", Some(&token)).await;
        drop(first);
        // The client writes Hello on a socket, gives up on it, and opens another.
        let mut abandoned = connect(addr, "/ws", Some(&token)).await;
        let late_hello = c.hello();
        let (mut ws, _) = c.open(addr, "", Some(&token)).await;
        let m = c.msg("one");
        send(&mut ws, m).await;
        let (got, _) = c.collect(&mut ws, 1).await;
        assert_eq!(texts(&got), ["one"]);
        // The abandoned socket's Hello arrives last: refused with 1000.
        send(&mut abandoned, late_hello).await;
        assert_eq!(close_code(&mut abandoned).await, Some(1000));
        // The current socket carries on in the same numbering.
        let m = c.msg("two");
        send(&mut ws, m).await;
        let (got, _) = c.collect(&mut ws, 1).await;
        assert_eq!(texts(&got), ["two"]);
        close(ws).await;
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_client_that_missed_the_welcome_gets_everything_from_seq_1() {
    bounded(20, async {
        let server = start(config()).await;
        let addr = server.addr();
        let token = token("mia");
        let mut c = Client::new(0x3155);
        let (ws, welcome) = c.open(addr, "", Some(&token)).await;
        let Envelope::Welcome { session, .. } = welcome else {
            unreachable!()
        };
        drop(ws);
        assert_eq!(server.hub().send_to_user("mia", "a"), 1);
        assert_eq!(server.hub().send_to_user("mia", "b"), 1);
        // As if a reset's Welcome had never arrived: the client proves the session's
        // secret but names no numbering, and its recv_seq is from some older one. It
        // is not read as acknowledgements.
        c.session.set(0);
        c.recv_seq = 7;
        let (mut ws, welcome) = c.open(addr, "", Some(&token)).await;
        assert_eq!(
            welcome,
            Envelope::Welcome {
                session,
                recv_seq: 0,
                resumed: false,
                secret: c.secret.get().expect("a secret")
            }
        );
        c.recv_seq = 0;
        let (got, _) = c.collect(&mut ws, 2).await;
        assert_eq!(texts(&got), ["a", "b"]);
        close(ws).await;
        server.shutdown().await;
    })
    .await;
}
