//! HTTP polling: the same sessions as the WebSocket, moved between transports with
//! nothing lost or duplicated.

mod support;

use std::time::{Duration, Instant};

use hyper::StatusCode;
use support::*;
use tether_core::protocol::Envelope;
use tether_core::Payload;

/// Splits a poll answer into messages (checked in order) and the highest Ack.
fn take_all(c: &mut Client, envelopes: &[Envelope]) -> (Vec<Payload>, Option<u64>) {
    let mut msgs = Vec::new();
    let mut ack = None;
    for e in envelopes {
        match e {
            Envelope::Msg { .. } => msgs.push(c.take(e)),
            Envelope::Ack { seq } => ack = Some(*seq),
            _ => {}
        }
    }
    (msgs, ack)
}

#[tokio::test]
async fn send_and_recv_round_trip() {
    bounded(20, async {
        let server = start(config()).await;
        let addr = server.addr();
        let token = token("polly");
        let mut c = Client::new(0xfeed);

        let (status, answer) = c.poll(addr, "send", "", &token, &[c.hello()]).await;
        assert_eq!(status, StatusCode::OK);
        assert!(matches!(
            answer.as_slice(),
            [Envelope::Welcome {
                recv_seq: 0,
                resumed: false,
                ..
            }]
        ));

        let (m1, m2) = (c.msg("a"), c.msg("b"));
        let (status, answer) = c
            .poll(
                addr,
                "send",
                "",
                &token,
                &[m1, m2, Envelope::Ping { id: 3 }],
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        // Control frames only: the echoes wait for op=recv.
        assert_eq!(answer, [Envelope::Pong { id: 3 }, Envelope::Ack { seq: 2 }]);

        let (status, answer) = c.poll(addr, "recv", "", &token, &[]).await;
        assert_eq!(status, StatusCode::OK);
        let (msgs, _) = take_all(&mut c, &answer);
        assert_eq!(texts(&msgs), ["a", "b"]);

        // Nothing pending: the request is held, up to wait_ms.
        let started = Instant::now();
        let (status, answer) = c
            .poll(
                addr,
                "recv",
                "&wait_ms=300",
                &token,
                &[Envelope::Ack { seq: 2 }],
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        assert!(answer.is_empty(), "{answer:?}");
        assert!(started.elapsed() >= Duration::from_millis(250));

        // A held recv wakes as soon as a message is ready.
        let hub = std::sync::Arc::clone(server.hub());
        let pusher = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(150)).await;
            hub.send_to_user("polly", "pushed")
        });
        let started = Instant::now();
        let (_, answer) = c.poll(addr, "recv", "&wait_ms=3000", &token, &[]).await;
        assert!(started.elapsed() < Duration::from_millis(2000));
        assert_eq!(pusher.await.unwrap(), 1);
        let (msgs, _) = take_all(&mut c, &answer);
        assert_eq!(texts(&msgs), ["pushed"]);

        // Unknown client: 503 (start a transport with Hello); bad query: 400.
        let (status, _) = poll(addr, 0x999, "recv", "&t=1", &token, &[]).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        let (status, _) = poll(addr, 0x999, "dance", "&t=1", &token, &[]).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn session_moves_from_websocket_to_polling_and_back_without_loss() {
    bounded(20, async {
        let server = start(config()).await;
        let addr = server.addr();
        let token = token("mover");
        let mut c = Client::new(0x5150);

        // WebSocket: two messages, echoes read, only the first acknowledged.
        let (mut ws, welcome) = c.open(addr, "", Some(&token)).await;
        let Envelope::Welcome { session, .. } = welcome else {
            unreachable!()
        };
        let (a, b) = (c.msg("a"), c.msg("b"));
        send(&mut ws, a).await;
        send(&mut ws, b).await;
        let mut echoes = Vec::new();
        while echoes.len() < 2 {
            if let m @ Envelope::Msg { .. } = recv(&mut ws).await {
                echoes.push(m);
            }
        }
        c.take(&echoes[0]);
        send(&mut ws, Envelope::Ack { seq: 1 }).await;
        drop(ws);
        // While the client is away the server has more to say.
        assert_eq!(server.hub().send_to_user("mover", "while away"), 1);

        // Polling: Hello resumes; the unacked echo and the push come in the answer.
        let (status, answer) = c.poll(addr, "send", "", &token, &[c.hello()]).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            answer[0],
            Envelope::Welcome {
                session,
                recv_seq: 2,
                resumed: true,
                secret: c.secret.get().expect("a secret")
            }
        );
        let (msgs, _) = take_all(&mut c, &answer[1..]);
        assert_eq!(texts(&msgs), ["b", "while away"]);

        let m = c.msg("c");
        let (_, answer) = c.poll(addr, "send", "", &token, &[m]).await;
        assert_eq!(answer, [Envelope::Ack { seq: 3 }]);
        let (_, answer) = c.poll(addr, "recv", "", &token, &[]).await;
        let (msgs, _) = take_all(&mut c, &answer);
        assert_eq!(texts(&msgs), ["c"]);
        // The client does not ack "c" before switching back.
        let unacked_seq = c.recv_seq;
        c.recv_seq -= 1;
        assert_eq!(server.hub().send_to_user("mover", "late"), 1);

        // Back to the WebSocket: "c" and "late" again (the client dropped "c"), in order.
        let (mut ws, welcome) = c.open(addr, "", Some(&token)).await;
        assert_eq!(
            welcome,
            Envelope::Welcome {
                session,
                recv_seq: 3,
                resumed: true,
                secret: c.secret.get().expect("a secret")
            }
        );
        let (msgs, _) = c.collect(&mut ws, 2).await;
        assert_eq!(texts(&msgs), ["c", "late"]);
        assert_eq!(c.recv_seq, unacked_seq + 1);

        // The polling transport was detached by the WebSocket's Hello.
        let (status, _) = c.poll(addr, "recv", "", &token, &[]).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        close(ws).await;
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn replaced_polling_client_gets_409() {
    bounded(20, async {
        let server = start(config()).await;
        let addr = server.addr();
        let token = token("quinn");
        let old = Client::new(1);
        let (status, _) = old.poll(addr, "send", "", &token, &[old.hello()]).await;
        assert_eq!(status, StatusCode::OK);
        let newer = Client::new(2);
        let (_ws, _) = newer.open(addr, "", Some(&token)).await;
        let (status, _) = old.poll(addr, "recv", "", &token, &[]).await;
        assert_eq!(status, StatusCode::CONFLICT);
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn idle_polling_transport_is_detached() {
    bounded(20, async {
        let mut cfg = config();
        cfg.idle_limit = Duration::from_millis(300);
        cfg.sweep_interval = Duration::from_millis(50);
        let server = start(cfg).await;
        let addr = server.addr();
        let token = token("rita");
        let c = Client::new(3);
        let (status, _) = c.poll(addr, "send", "", &token, &[c.hello()]).await;
        assert_eq!(status, StatusCode::OK);
        tokio::time::sleep(Duration::from_millis(600)).await;
        let (status, _) = c.poll(addr, "recv", "", &token, &[]).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        // A new Hello resumes the session.
        let (_, answer) = c.poll(addr, "send", "", &token, &[c.hello()]).await;
        assert!(matches!(answer[0], Envelope::Welcome { resumed: true, .. }));
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_poller_that_falls_behind_is_detached_and_resumes_everything() {
    bounded(20, async {
        let mut cfg = config();
        cfg.max_queued_frames = 3;
        let server = start(cfg).await;
        let addr = server.addr();
        let token = token("slow");
        let mut c = Client::new(4);
        let (status, _) = c.poll(addr, "send", "", &token, &[c.hello()]).await;
        assert_eq!(status, StatusCode::OK);
        for i in 1..=5 {
            server.hub().send_to_user("slow", format!("n{i}"));
        }
        let (status, _) = c.poll(addr, "recv", "", &token, &[]).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        let (_, answer) = c.poll(addr, "send", "", &token, &[c.hello()]).await;
        assert!(matches!(answer[0], Envelope::Welcome { resumed: true, .. }));
        let (msgs, _) = take_all(&mut c, &answer[1..]);
        assert_eq!(texts(&msgs), ["n1", "n2", "n3", "n4", "n5"]);
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn requests_of_an_abandoned_polling_transport_get_410() {
    bounded(20, async {
        let server = start(config()).await;
        let addr = server.addr();
        let token = token("sam");
        let mut c = Client::new(0x5a);
        let (status, _) = c.poll(addr, "send", "", &token, &[c.hello()]).await;
        assert_eq!(status, StatusCode::OK);
        let old = c.attempt.get();
        // The client gives up on that transport and starts another.
        let (status, answer) = c.poll(addr, "send", "", &token, &[c.hello()]).await;
        assert_eq!(status, StatusCode::OK);
        assert!(matches!(answer[0], Envelope::Welcome { resumed: true, .. }));

        // Requests of the old transport arrive late: 410, and nothing changes.
        let t_old = format!("&t={old}");
        let ping = [Envelope::Ping { id: 1 }];
        let secret = c.secret.get();
        let (status, _) = poll_with(addr, c.client_id, "send", &t_old, &token, secret, &ping).await;
        assert_eq!(status, StatusCode::GONE);
        let late_hello = Envelope::Hello {
            client_id: c.client_id,
            recv_seq: 0,
            session: 0,
            attempt: old,
            secret,
        };
        let late = [late_hello];
        let (status, _) = poll_with(addr, c.client_id, "send", &t_old, &token, secret, &late).await;
        assert_eq!(status, StatusCode::GONE);

        // The current transport goes on.
        let m = c.msg("y");
        let (status, answer) = c.poll(addr, "send", "", &token, &[m]).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(answer, [Envelope::Ack { seq: 1 }]);
        let (_, answer) = c.poll(addr, "recv", "", &token, &[]).await;
        let (msgs, _) = take_all(&mut c, &answer);
        assert_eq!(texts(&msgs), ["y"]);

        // Every request names its transport, and a Hello's is the request's.
        let (status, _) = poll(addr, c.client_id, "recv", "", &token, &[]).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let hello = c.hello();
        let t_other = format!("&t={}", c.attempt.get() + 1);
        let (status, _) = poll(addr, c.client_id, "send", &t_other, &token, &[hello]).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let (status, _) = c.poll(addr, "recv", "", &token, &[]).await;
        assert_eq!(
            status,
            StatusCode::SERVICE_UNAVAILABLE,
            "that Hello attached nothing"
        );
        server.shutdown().await;
    })
    .await;
}
