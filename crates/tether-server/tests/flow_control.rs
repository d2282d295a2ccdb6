//! Flow control from a slow reader back to its sender, with the default settings: the
//! server takes a client message in only when its echo has room in the session's
//! resume buffer, so a client that acknowledges nothing makes its own sends wait (its
//! queue fills with unacknowledged messages) instead of losing echoes to a trimmed
//! buffer. Before, the 1,025th unacknowledged echo pushed the first out, and the
//! client's next reconnect ended in a session reset.

mod support;

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Waker};

use futures_util::StreamExt as _;
use support::*;
use tether_core::protocol::{Envelope, ResumeLimits};

fn resumed(welcome: &Envelope) -> bool {
    matches!(welcome, Envelope::Welcome { resumed: true, .. })
}

/// 1,500 messages from a client that acknowledges nothing: 1,024 (the resume buffer's
/// default) are echoed and acknowledged, the rest wait unacknowledged; one Ack lets them
/// all through, and a reconnect still resumes: nothing was trimmed.
#[tokio::test]
async fn echoes_wait_for_a_client_that_acknowledges_nothing_and_none_is_dropped() {
    bounded(60, async {
        let server = start(config()).await;
        let mut tap = server.hub().tap();
        let addr = server.addr();
        let bearer = token("slow");
        let window = ResumeLimits::default().max_messages;
        const SENT: usize = 1_500;
        let mut client = Client::new(0x51);
        let (mut ws, _) = client.open(addr, "", Some(&bearer)).await;
        for n in 1..=SENT {
            let m = client.msg(&format!("m{n}"));
            send(&mut ws, m).await;
        }
        send(&mut ws, Envelope::Ping { id: 1 }).await;
        let (first, acked) = read_to_pong(&mut client, &mut ws, 1).await;
        let want: Vec<String> = (1..=SENT).map(|n| format!("m{n}")).collect();
        assert_eq!(first, want[..window], "echoes up to the window, in order");
        assert_eq!(acked, window as u64, "the rest are not taken in yet");

        // Acknowledging the first 1,024 echoes makes room for the rest.
        send(&mut ws, Envelope::Ack { seq: window as u64 }).await;
        send(&mut ws, Envelope::Ping { id: 2 }).await;
        let (rest, acked) = read_to_pong(&mut client, &mut ws, 2).await;
        assert_eq!(rest, want[window..], "the held ones, in order");
        assert_eq!(acked, SENT as u64);

        // The unacknowledged echoes are all still there for a reconnect.
        drop(ws);
        client.recv_seq = window as u64;
        let (mut ws, welcome) = client.open(addr, "", Some(&bearer)).await;
        assert!(resumed(&welcome), "{welcome:?}");
        let (again, _) = client.collect(&mut ws, SENT - window).await;
        assert_eq!(texts(&again), want[window..]);

        let mut delivered = Vec::new();
        while let Ok(d) = tap.try_recv() {
            delivered.push(d.payload);
        }
        assert_eq!(texts(&delivered), want, "the server took each message once");
        close(ws).await;
        server.shutdown().await;
    })
    .await;
}

/// A client that sends more than a window past the echoes waiting for it (a client
/// keeps at most its queue unacknowledged; this one ignores that) is closed with 1013,
/// and what it sent beyond the window was never taken: it sends it again after its next
/// Hello, and the server has every message exactly once.
#[tokio::test]
async fn a_client_sending_past_its_window_is_closed_1013_and_loses_nothing() {
    bounded(60, async {
        let server = start(config()).await;
        let mut tap = server.hub().tap();
        let addr = server.addr();
        let bearer = token("pushy");
        let window = ResumeLimits::default().max_messages;
        let sent = 2 * window + 1;
        let mut client = Client::new(0x52);
        let (mut ws, _) = client.open(addr, "", Some(&bearer)).await;
        for n in 1..=sent {
            let m = client.msg(&format!("m{n}"));
            send(&mut ws, m).await;
        }
        let mut echoes = Vec::new();
        let code = loop {
            match ws.next().await {
                Some(Ok(tokio_tungstenite::tungstenite::Message::Close(frame))) => {
                    break frame.map(|f| u16::from(f.code));
                }
                Some(Ok(tokio_tungstenite::tungstenite::Message::Text(t))) => {
                    if let Ok(m @ Envelope::Msg { .. }) =
                        Envelope::decode(tether_core::Payload::from(t.as_str().to_owned()))
                    {
                        echoes.push(client.take(&m));
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => break None,
            }
        };
        assert_eq!(code, Some(1013));
        assert_eq!(echoes.len(), window, "echoes up to the window");

        // The next Hello: the server took the first window's worth; the client resends
        // the rest, acknowledging as it goes.
        let (mut ws, welcome) = client.open(addr, "", Some(&bearer)).await;
        assert!(resumed(&welcome), "{welcome:?}");
        let Envelope::Welcome { recv_seq, .. } = welcome else {
            unreachable!()
        };
        assert_eq!(
            recv_seq, window as u64,
            "only what was taken is acknowledged"
        );
        for n in (recv_seq as usize + 1)..=sent {
            let m = Envelope::Msg {
                seq: n as u64,
                payload: format!("m{n}").into(),
            };
            send(&mut ws, m).await;
            if n % 256 == 0 {
                send(
                    &mut ws,
                    Envelope::Ack {
                        seq: client.recv_seq,
                    },
                )
                .await;
            }
        }
        send(
            &mut ws,
            Envelope::Ack {
                seq: client.recv_seq,
            },
        )
        .await;
        send(&mut ws, Envelope::Ping { id: 9 }).await;
        let mut acked = 0;
        while acked < sent as u64 {
            let (more, a) = read_to_pong(&mut client, &mut ws, 9).await;
            echoes.extend(more.into_iter().map(tether_core::Payload::from));
            acked = a;
            send(
                &mut ws,
                Envelope::Ack {
                    seq: client.recv_seq,
                },
            )
            .await;
            send(&mut ws, Envelope::Ping { id: 9 }).await;
        }
        let want: Vec<String> = (1..=sent).map(|n| format!("m{n}")).collect();
        let mut delivered = Vec::new();
        while let Ok(d) = tap.try_recv() {
            delivered.push(d.payload);
        }
        assert_eq!(texts(&delivered), want, "the server took each message once");
        close(ws).await;
        server.shutdown().await;
    })
    .await;
}

/// `send_to_user_wait` sends at once while the session has room and waits, sending
/// nothing, while it has none; the client's Ack lets it through.
#[tokio::test]
async fn send_to_user_wait_waits_for_the_clients_acknowledgement() {
    bounded(60, async {
        let server = start(config()).await;
        let addr = server.addr();
        let hub = server.hub().clone();
        let window = ResumeLimits::default().max_messages;
        let mut client = Client::new(0x53);
        let (mut ws, _) = client.open(addr, "", Some(&token("reader"))).await;
        for n in 1..=window {
            assert_eq!(hub.send_to_user_wait("reader", format!("s{n}")).await, 1);
        }
        let next = hub.send_to_user_wait("reader", "one more");
        let mut next = pin!(next);
        let mut cx = Context::from_waker(Waker::noop());
        assert!(
            next.as_mut().poll(&mut cx).is_pending(),
            "a full session makes the producer wait"
        );
        let (got, _) = client.collect(&mut ws, window).await;
        assert_eq!(got.len(), window);
        send(&mut ws, Envelope::Ack { seq: 1 }).await;
        let sent = tokio::time::timeout(STEP, next)
            .await
            .expect("the Ack made room");
        assert_eq!(sent, 1);
        let (last, _) = client.collect(&mut ws, 1).await;
        assert_eq!(texts(&last), ["one more"]);
        close(ws).await;
        server.shutdown().await;
    })
    .await;
}
