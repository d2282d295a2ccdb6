//! Instances as real processes: the `tether-server` binary with `--store redis://…`,
//! killed with SIGKILL while it works. An in-process kill lets the instance's store
//! writer finish its round; a dead process stops wherever it is, between any two of its
//! steps.
//!
//! Each test starts its own `redis-server` on a free loopback port and kills every
//! process it started. Without `redis-server` the tests fail: they do not skip.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::StreamExt as _;
use tether_core::protocol::Envelope;
use tether_core::Payload;
use tokio::process::Child;
use tokio_tungstenite::tungstenite::Message;

use support::{bounded, send, token, Client, Ws};
use tether_testkit::redis::RedisServer as Redis;

/// One instance: the binary on a free port, sharing `redis`.
async fn spawn(redis: &Redis, id: &str) -> (Child, SocketAddr) {
    let url = redis.url();
    support::spawn_binary(
        &[
            "--log",
            "error",
            "--instance-id",
            id,
            "--drain-window",
            "200ms",
            "--store",
            &url,
        ],
        false,
    )
    .await
}

/// Reads `client`'s server messages (in order) until it has `n` in all or `limit`
/// passes without one; returns the new ones as text.
async fn read_up_to(client: &mut Client, ws: &mut Ws, n: u64, limit: Duration) -> Vec<String> {
    let mut got = Vec::new();
    while client.recv_seq < n {
        let Ok(Some(Ok(frame))) = tokio::time::timeout(limit, ws.next()).await else {
            break;
        };
        let frame = match frame {
            Message::Text(t) => Payload::from(t.as_str().to_owned()),
            Message::Binary(b) => Payload::from(b.to_vec()),
            _ => continue,
        };
        if let m @ Envelope::Msg { .. } = Envelope::decode(frame).expect("an envelope") {
            match client.take(&m) {
                Payload::Text(t) => got.push(t.to_string()),
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    got
}

/// Says Hello on a new socket to `addr` and sends again what the Welcome says the
/// session has not received (PROTOCOL.md 6.2); returns the socket and that number.
async fn resume(client: &Client, addr: SocketAddr, query: &str, bearer: &str) -> (Ws, u64) {
    let (mut ws, welcome) = client.open(addr, query, Some(bearer)).await;
    let Envelope::Welcome { recv_seq, .. } = welcome else {
        unreachable!()
    };
    for i in recv_seq + 1..=client.send_seq {
        send(
            &mut ws,
            Envelope::Msg {
                seq: i,
                payload: format!("p{i}").into(),
            },
        )
        .await;
    }
    (ws, recv_seq)
}

/// How the sender's instance goes.
#[derive(Clone, Copy)]
enum Stop {
    /// SIGKILL: it dies wherever it is.
    Kill,
    /// SIGTERM: it drains (1012 and a retry hint to each client) and exits.
    Term,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_messages_survive_sigkills_of_their_senders_instance() {
    room_messages_survive(Stop::Kill, 6).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_messages_survive_drains_of_their_senders_instance() {
    room_messages_survive(Stop::Term, 3).await;
}

/// Q listens in a room on B; P talks in it on A, which is stopped `rounds` times (a
/// new A each time) while P's messages go through it. Every message reaches both,
/// once, in order.
async fn room_messages_survive(stop: Stop, rounds: usize) {
    bounded(120, async {
        let redis = Redis::start().await;
        let (mut b, b_addr) = spawn(&redis, "b").await;
        let mut q = Client::new(0x51);
        let (mut on_b, _) = q.open(b_addr, "?room=lobby", Some(&token("q"))).await;
        let p_bearer = token("p");
        let mut p = Client::new(0x50);
        const BURST: u64 = 40;
        let mut p_got = Vec::new();
        for round in 0..rounds {
            let (mut a, a_addr) = spawn(&redis, "a").await;
            let (mut on_a, had) = resume(&p, a_addr, "?room=lobby", &p_bearer).await;
            for _ in 0..BURST {
                let m = p.msg(&format!("p{}", p.send_seq + 1));
                send(&mut on_a, m).await;
            }
            // Stop A while it works: once it echoed five messages it had not had. (P's
            // messages are all the room has: P's n-th server message is the echo of its
            // n-th.)
            p_got.extend(read_up_to(&mut p, &mut on_a, had + 5, support::STEP).await);
            assert!(p.recv_seq >= had + 5, "round {round}: A echoes nothing new");
            match stop {
                Stop::Kill => a.start_kill().unwrap(),
                Stop::Term => {
                    support::sigterm(&a).await;
                    // What A sends until it closes the socket (1012) is P's too.
                    p_got.extend(read_up_to(&mut p, &mut on_a, u64::MAX, support::STEP).await);
                }
            }
            let status = tokio::time::timeout(support::STEP, a.wait())
                .await
                .expect("A exits")
                .unwrap();
            if matches!(stop, Stop::Term) {
                assert!(
                    status.success(),
                    "a drained instance exits cleanly: {status}"
                );
            }
        }
        // P comes back to B, which has the room's other member.
        let (mut p_on_b, _) = resume(&p, b_addr, "?room=lobby", &p_bearer).await;
        let total = p.send_seq;
        let want: Vec<String> = (1..=total).map(|i| format!("p{i}")).collect();
        p_got.extend(read_up_to(&mut p, &mut p_on_b, total, support::STEP).await);
        assert_eq!(p_got, want, "P's room echoes: each once, in order");
        let q_got = read_up_to(&mut q, &mut on_b, total, support::STEP).await;
        let missing: Vec<&String> = want.iter().filter(|m| !q_got.contains(m)).collect();
        assert!(
            missing.is_empty(),
            "Q, on the other instance, never got {missing:?} (of {total})"
        );
        assert_eq!(q_got, want, "Q got each once, in order");
        // Nothing more for Q (a duplicate would be queued before the Pong).
        send(&mut on_b, Envelope::Ping { id: 7 }).await;
        let (extra, _) = support::read_to_pong(&mut q, &mut on_b, 7).await;
        assert!(extra.is_empty(), "{extra:?}");
        b.start_kill().unwrap();
        b.wait().await.unwrap();
        redis.stop().await;
    })
    .await;
}
