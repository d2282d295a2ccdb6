//! Attacks on the flow control of `flow_control.rs`: producers held up by sessions
//! nobody will ever read, a chatty client starving a waiting producer, the polling
//! transport, the resume budget's accounting, and aging by silence.

mod support;

use support::*;
use tether_core::protocol::{Envelope, ResumeLimits};

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
