//! Steady-state cost of the core per message: send → frame, and inbound frame → event,
//! in plain and protocol mode. Not a test: run with `cargo bench -p tether-core --bench core`.

use std::hint::black_box;
use std::time::Instant as Clock;

use tether_core::protocol::Envelope;
use tether_core::{Action, Config, Connection, Event, Instant, Payload, TransportId};

const MESSAGES: u64 = 1_000_000;
const ROUNDS: usize = 5;

fn connected(protocol: bool) -> (Connection, TransportId, Instant) {
    let now = Instant::now();
    let builder = Config::builder("ws://127.0.0.1:1/ws").heartbeat(None);
    let builder = if protocol {
        builder.protocol()
    } else {
        builder
    };
    let mut conn = Connection::new(
        builder.build().unwrap(),
        now,
        tether_core::Entropy::fixed(1),
    )
    .unwrap();
    conn.connect(now);
    let id = loop {
        if let Some(Action::Open { id, .. }) = conn.poll_action() {
            break id;
        }
    };
    conn.handle_opened(now, id);
    if protocol {
        conn.handle_frame(
            now,
            id,
            Envelope::Welcome {
                session: 1,
                recv_seq: 0,
                resumed: false,
                secret: tether_core::protocol::SessionSecret::from_bytes([1; 16]),
            }
            .encode(),
        );
    }
    while conn.poll_action().is_some() {}
    while conn.poll_event().is_some() {}
    (conn, id, now)
}

/// Nanoseconds per message: the best of a few rounds.
fn measure(mut round: impl FnMut() -> u64) -> f64 {
    (0..ROUNDS)
        .map(|_| {
            let start = Clock::now();
            let n = round();
            start.elapsed().as_nanos() as f64 / n as f64
        })
        .fold(f64::INFINITY, f64::min)
}

fn send(protocol: bool) -> f64 {
    let (mut conn, id, now) = connected(protocol);
    let payload = Payload::from("x".repeat(64));
    let mut sent = 0u64;
    measure(|| {
        for _ in 0..MESSAGES {
            conn.send(now, payload.clone()).unwrap();
            while let Some(a) = conn.poll_action() {
                black_box(a);
            }
            sent += 1;
            if protocol && sent % 32 == 0 {
                // The server's cumulative ack, as it would arrive.
                conn.handle_frame(now, id, Envelope::Ack { seq: sent }.encode());
                while let Some(e) = conn.poll_event() {
                    black_box(e);
                }
            }
        }
        MESSAGES
    })
}

fn receive(protocol: bool) -> f64 {
    let (mut conn, id, now) = connected(protocol);
    let body = "x".repeat(64);
    let mut seq = 0u64;
    measure(|| {
        for _ in 0..MESSAGES {
            seq += 1;
            let frame = if protocol {
                Envelope::Msg {
                    seq,
                    payload: Payload::from(body.clone()),
                }
                .encode()
            } else {
                Payload::from(body.clone())
            };
            conn.handle_frame(now, id, frame);
            while let Some(e) = conn.poll_event() {
                assert!(matches!(e, Event::Message(_)));
                black_box(e);
            }
            while let Some(a) = conn.poll_action() {
                black_box(a);
            }
        }
        MESSAGES
    })
}

fn main() {
    // Building the inbound frame (one 64-byte String and, in protocol mode, its
    // envelope) is the network's cost, not the core's: measured apart and subtracted.
    let body = "x".repeat(64);
    let make_plain = measure(|| {
        for _ in 0..MESSAGES {
            black_box(Payload::from(body.clone()));
        }
        MESSAGES
    });
    let make_protocol = measure(|| {
        for seq in 1..=MESSAGES {
            black_box(
                Envelope::Msg {
                    seq,
                    payload: Payload::from(body.clone()),
                }
                .encode(),
            );
        }
        MESSAGES
    });
    let plain_send = send(false);
    let protocol_send = send(true);
    let plain_recv = (receive(false) - make_plain).max(0.0);
    let protocol_recv = (receive(true) - make_protocol).max(0.0);
    println!(
        "core ns_per_message: plain_send={plain_send:.0} plain_recv={plain_recv:.0} \
         protocol_send={protocol_send:.0} protocol_recv={protocol_recv:.0}"
    );
}
