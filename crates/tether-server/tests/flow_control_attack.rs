//! Attacks on the flow control of `flow_control.rs`: producers held up by sessions
//! nobody will ever read, a chatty client starving a waiting producer, the polling
//! transport, the resume budget's accounting, and aging by silence.

mod support;

use support::*;
use tether_core::protocol::ResumeLimits;

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
