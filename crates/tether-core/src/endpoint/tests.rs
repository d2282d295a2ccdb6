//! The endpoint's rules, one at a time, without a server around them.

use super::*;
use crate::protocol::{HelloRefused, ResumeLimits, SessionSecret};

fn endpoint(config: EndpointConfig) -> Endpoint {
    let mut counter = 0u8;
    Endpoint::new(
        config,
        Box::new(move |buf: &mut [u8]| {
            for b in buf {
                counter = counter.wrapping_add(1);
                *b = counter;
            }
        }),
    )
}

fn drain(e: &mut Endpoint) -> Vec<Output> {
    std::iter::from_fn(|| e.poll_output()).collect()
}

fn hello(client_id: u64, attempt: u64, secret: Option<SessionSecret>) -> Greeting {
    Greeting {
        client_id,
        recv_seq: 0,
        session: 0,
        attempt,
        secret,
    }
}

fn welcome_secret(outs: &[Output]) -> SessionSecret {
    outs.iter()
        .find_map(|o| match o {
            Output::Send { frame, .. } => match Envelope::decode(frame.clone()) {
                Ok(Envelope::Welcome { secret, .. }) => Some(secret),
                _ => None,
            },
            _ => None,
        })
        .expect("a Welcome")
}

fn no_token(_: &str) -> Result<(), TokenRefused> {
    Ok(())
}

#[test]
fn a_newer_transport_of_the_client_detaches_the_older_with_1000_and_a_stale_hello_changes_nothing()
{
    let now = Instant::now();
    let mut e = endpoint(EndpointConfig::default());
    let a = e.open_socket(Peer::User("ann".into()));
    e.handle_socket_hello(now, a, hello(1, 1, None), None)
        .unwrap();
    let secret = welcome_secret(&drain(&mut e));
    let b = e.open_socket(Peer::User("ann".into()));
    e.handle_socket_hello(now, b, hello(1, 3, Some(secret)), None)
        .unwrap();
    let outs = drain(&mut e);
    assert!(outs.contains(&Output::Close {
        conn: a,
        code: 1000,
        reason: "a newer transport of this client took over"
    }));
    assert_eq!(e.sessions(), 1);
    // Transport 2's Hello arrives late.
    let c = e.open_socket(Peer::User("ann".into()));
    let late = e.handle_socket_hello(now, c, hello(1, 2, Some(secret)), None);
    assert!(matches!(
        late,
        Err(HelloError::Refused(HelloRefused::Stale(_)))
    ));
    assert!(drain(&mut e).is_empty(), "a stale Hello changes nothing");
    let key = e.sessions_of("ann", 1).pop().unwrap();
    assert_eq!(e.session(&key).unwrap().attached(), Some(b));
}

#[test]
fn another_client_of_the_user_replaces_the_older_transport_with_4409() {
    let now = Instant::now();
    let mut e = endpoint(EndpointConfig::default());
    let a = e.open_socket(Peer::User("bob".into()));
    e.handle_socket_hello(now, a, hello(1, 1, None), None)
        .unwrap();
    drain(&mut e);
    let b = e.open_socket(Peer::User("bob".into()));
    e.handle_socket_hello(now, b, hello(2, 1, None), None)
        .unwrap();
    let outs = drain(&mut e);
    assert!(outs.contains(&Output::Replaced { conn: a, by: b }));
    assert!(outs.contains(&Output::Close {
        conn: a,
        code: 4409,
        reason: "replaced by a newer connection"
    }));
    let old = e.sessions_of("bob", 1).pop().unwrap();
    assert!(e.session(&old).unwrap().replaced());
    // Nobody waits for the replaced client: the newest session of client 1 is none.
    assert_eq!(e.newest_session("bob", 1, |_| true), None);
    // Anonymous transports never replace each other.
    let c = e.open_socket(Peer::Anonymous);
    let d = e.open_socket(Peer::Anonymous);
    e.handle_socket_hello(now, c, hello(3, 1, None), None)
        .unwrap();
    e.handle_socket_hello(now, d, hello(4, 1, None), None)
        .unwrap();
    assert!(!drain(&mut e)
        .iter()
        .any(|o| matches!(o, Output::Close { .. } | Output::Replaced { .. })));
}

#[test]
fn a_poll_request_without_the_secret_reaches_no_session_and_a_stale_one_gets_410() {
    let now = Instant::now();
    let mut e = endpoint(EndpointConfig::default());
    let request = |attempt, proof, envelopes| PollRequest {
        peer: Peer::Anonymous,
        client_id: 9,
        attempt,
        proof,
        room: None,
        envelopes,
    };
    let hello_env = |attempt| Envelope::Hello {
        client_id: 9,
        recv_seq: 0,
        session: 0,
        attempt,
        secret: None,
    };
    let x = e
        .handle_poll(now, request(2, None, vec![hello_env(2)]), &mut no_token)
        .unwrap();
    assert!(x.opened);
    let secret = x.key.secret;
    assert_eq!(
        e.handle_poll(now, request(2, None, vec![]), &mut no_token)
            .map(|x| x.conn),
        Err(PollError::NoTransport)
    );
    assert!(e
        .handle_poll(now, request(2, Some(secret), vec![]), &mut no_token)
        .is_ok());
    assert_eq!(
        e.handle_poll(now, request(1, Some(secret), vec![]), &mut no_token)
            .map(|x| x.conn),
        Err(PollError::Stale)
    );
    assert_eq!(PollError::Stale.status(), 410);
    // Messages wait for the transport's next recv.
    assert!(e.send_to_session(now, &x.key, Payload::from("s1")));
    assert_eq!(e.take_pending(now, x.conn, &x.key).unwrap().len(), 1);
}

#[test]
fn an_echo_without_room_holds_the_message_unacknowledged_until_an_ack_makes_room() {
    let now = Instant::now();
    let config = EndpointConfig {
        resume_limits: ResumeLimits {
            max_messages: 1,
            ..ResumeLimits::default()
        },
        ..EndpointConfig::default()
    };
    let mut e = endpoint(config);
    let a = e.open_socket(Peer::Anonymous);
    e.handle_socket_hello(now, a, hello(1, 1, None), None)
        .unwrap();
    drain(&mut e);
    let msg = |seq: u64| Envelope::Msg {
        seq,
        payload: Payload::from(format!("c{seq}")),
    };
    e.handle_socket_envelope(now, a, msg(1), &mut no_token)
        .unwrap();
    e.handle_socket_envelope(now, a, msg(2), &mut no_token)
        .unwrap();
    let delivered = |outs: &[Output]| {
        outs.iter()
            .filter(|o| matches!(o, Output::Delivered { .. }))
            .count()
    };
    assert_eq!(delivered(&drain(&mut e)), 1, "the second echo has no room");
    let key = e.sessions_of("", 1).pop().unwrap();
    assert_eq!(e.session(&key).unwrap().held(), 1);
    e.handle_socket_envelope(now, a, Envelope::Ack { seq: 1 }, &mut no_token)
        .unwrap();
    assert_eq!(delivered(&drain(&mut e)), 1, "the Ack made room");
    assert_eq!(e.session(&key).unwrap().held(), 0);
}

#[test]
fn the_resume_budget_drops_detached_sessions_first() {
    let now = Instant::now();
    let config = EndpointConfig {
        resume_budget_bytes: 3 * SESSION_COST,
        echo: false,
        ..EndpointConfig::default()
    };
    let mut e = endpoint(config);
    let a = e.open_socket(Peer::User("u".into()));
    e.handle_socket_hello(now, a, hello(1, 1, None), None)
        .unwrap();
    e.handle_closed(now, a, Some(1000), "bye");
    let b = e.open_socket(Peer::User("v".into()));
    e.handle_socket_hello(now, b, hello(2, 1, None), None)
        .unwrap();
    drain(&mut e);
    assert_eq!(e.send_to_user(now, "v", &Payload::from("x".repeat(600))), 1);
    let outs = drain(&mut e);
    assert!(outs.iter().any(|o| matches!(
        o,
        Output::SessionDropped { key, attached: false, .. } if key.user == "u"
    )));
    assert_eq!(e.sessions(), 1);
    assert_eq!(e.memory().sessions_dropped, 1);
}

#[test]
fn a_room_message_goes_to_every_member_and_membership_outlives_the_transport() {
    let now = Instant::now();
    let mut e = endpoint(EndpointConfig::default());
    let a = e.open_socket(Peer::Anonymous);
    let b = e.open_socket(Peer::Anonymous);
    let lobby = Some("lobby".to_owned());
    e.handle_socket_hello(now, a, hello(1, 1, None), lobby.clone())
        .unwrap();
    e.handle_socket_hello(now, b, hello(2, 1, None), lobby)
        .unwrap();
    drain(&mut e);
    // b goes away; its session stays in the room and keeps what it is sent.
    e.handle_closed(now, b, None, "lost");
    drain(&mut e);
    let msg = Envelope::Msg {
        seq: 1,
        payload: Payload::from("hi"),
    };
    e.handle_socket_envelope(now, a, msg, &mut no_token)
        .unwrap();
    let outs = drain(&mut e);
    let to_a = outs
        .iter()
        .filter(|o| matches!(o, Output::Send { conn, message: true, .. } if *conn == a))
        .count();
    assert_eq!(to_a, 1, "the sender's own copy");
    let kb = e.sessions_of("", 2).pop().unwrap();
    assert_eq!(e.session(&kb).unwrap().protocol().buffered(), 1);
    assert_eq!(e.broadcast(now, "lobby", &Payload::from("server")), 2);
    assert_eq!(e.broadcast(now, "nobody", &Payload::from("server")), 0);
}

#[test]
fn a_replaced_polling_transport_answers_409() {
    let now = Instant::now();
    let mut e = endpoint(EndpointConfig::default());
    let opening = |client_id: u64| PollRequest {
        peer: Peer::User("carol".into()),
        client_id,
        attempt: 1,
        proof: None,
        room: None,
        envelopes: vec![Envelope::Hello {
            client_id,
            recv_seq: 0,
            session: 0,
            attempt: 1,
            secret: None,
        }],
    };
    let first = e.handle_poll(now, opening(1), &mut no_token).unwrap();
    e.handle_poll(now, opening(2), &mut no_token).unwrap();
    let outs = drain(&mut e);
    assert!(outs.iter().any(|o| matches!(
        o,
        Output::Ended { conn, code: Some(4409), .. } if *conn == first.conn
    )));
    let again = PollRequest {
        proof: Some(first.key.secret),
        envelopes: Vec::new(),
        ..opening(1)
    };
    let refused = e.handle_poll(now, again, &mut no_token).map(|x| x.conn);
    assert_eq!(refused, Err(PollError::Replaced));
    assert_eq!(PollError::Replaced.status(), 409);
    assert_eq!(
        e.take_pending(now, first.conn, &first.key),
        Err(PollError::Replaced)
    );
}

#[test]
fn a_waiting_producer_keeps_room_so_the_clients_echoes_cannot_starve_it() {
    let now = Instant::now();
    let config = EndpointConfig {
        resume_limits: ResumeLimits {
            max_messages: 1,
            ..ResumeLimits::default()
        },
        ..EndpointConfig::default()
    };
    let mut e = endpoint(config);
    let a = e.open_socket(Peer::User("dan".into()));
    e.handle_socket_hello(now, a, hello(1, 1, None), None)
        .unwrap();
    assert_eq!(e.send_to_user(now, "dan", &Payload::from("s1")), 1);
    drain(&mut e);
    let news = Payload::from("news");
    let mut reservation = Reservation::new(news.len());
    assert_eq!(
        e.try_send_to_user(now, "dan", &news, &mut reservation),
        None
    );
    assert!(!reservation.is_empty());
    // The Ack makes room; the client's message that came first is held for the producer.
    let msg = Envelope::Msg {
        seq: 1,
        payload: Payload::from("c1"),
    };
    e.handle_socket_envelope(now, a, msg, &mut no_token)
        .unwrap();
    e.handle_socket_envelope(now, a, Envelope::Ack { seq: 1 }, &mut no_token)
        .unwrap();
    let key = e.sessions_of("dan", 1).pop().unwrap();
    assert_eq!(e.session(&key).unwrap().held(), 1);
    assert_eq!(
        e.try_send_to_user(now, "dan", &news, &mut reservation),
        Some(1)
    );
    assert!(reservation.is_empty());
    // The producer went first; the held echo waits for the next Ack.
    assert_eq!(e.session(&key).unwrap().held(), 1);
    e.handle_socket_envelope(now, a, Envelope::Ack { seq: 2 }, &mut no_token)
        .unwrap();
    assert_eq!(e.session(&key).unwrap().held(), 0);
}

/// Only an Ack counts server messages as acknowledged (the server's `messages_out`):
/// messages that expired from the resume buffer unacknowledged (the client silent for
/// `max_age`) are not counted when the client's next envelope comes, whatever it is.
#[test]
fn expired_messages_are_not_counted_as_acknowledged() {
    let now = Instant::now();
    let config = EndpointConfig {
        resume_limits: ResumeLimits {
            max_age: Duration::from_secs(5),
            ..ResumeLimits::default()
        },
        ..EndpointConfig::default()
    };
    let mut e = endpoint(config);
    let a = e.open_socket(Peer::User("eve".into()));
    e.handle_socket_hello(now, a, hello(1, 1, None), None)
        .unwrap();
    for text in ["s1", "s2", "s3"] {
        assert_eq!(e.send_to_user(now, "eve", &Payload::from(text)), 1);
    }
    drain(&mut e);
    let acknowledged = |outs: &[Output]| -> u64 {
        outs.iter()
            .map(|o| match o {
                Output::Acknowledged { messages, .. } => *messages,
                _ => 0,
            })
            .sum()
    };
    // One acknowledged for real.
    e.handle_socket_envelope(now, a, Envelope::Ack { seq: 1 }, &mut no_token)
        .unwrap();
    assert_eq!(acknowledged(&drain(&mut e)), 1);
    // Silent past max_age: the two others expire; a Ping is no acknowledgement.
    let later = now + Duration::from_secs(6);
    e.handle_socket_envelope(later, a, Envelope::Ping { id: 7 }, &mut no_token)
        .unwrap();
    assert_eq!(acknowledged(&drain(&mut e)), 0, "expired, not acknowledged");
    // Nor is an Ack that names what already expired.
    e.handle_socket_envelope(later, a, Envelope::Ack { seq: 3 }, &mut no_token)
        .unwrap();
    assert_eq!(acknowledged(&drain(&mut e)), 0);
}

/// Messages the client acknowledges through a resuming Hello's `recv_seq` (received,
/// the Ack not sent before the transport broke) are counted acknowledged, once.
#[test]
fn a_resuming_hello_counts_what_its_recv_seq_acknowledges() {
    let now = Instant::now();
    let mut e = endpoint(EndpointConfig::default());
    let a = e.open_socket(Peer::User("fay".into()));
    e.handle_socket_hello(now, a, hello(1, 1, None), None)
        .unwrap();
    let outs = drain(&mut e);
    let secret = welcome_secret(&outs);
    let session = outs
        .iter()
        .find_map(|o| match o {
            Output::Send { frame, .. } => match Envelope::decode(frame.clone()) {
                Ok(Envelope::Welcome { session, .. }) => Some(session),
                _ => None,
            },
            _ => None,
        })
        .unwrap();
    for text in ["s1", "s2", "s3"] {
        assert_eq!(e.send_to_user(now, "fay", &Payload::from(text)), 1);
    }
    drain(&mut e);
    let acknowledged = |outs: &[Output]| -> u64 {
        outs.iter()
            .map(|o| match o {
                Output::Acknowledged { messages, .. } => *messages,
                _ => 0,
            })
            .sum()
    };
    // The client got two of them; its new transport's Hello says so.
    let b = e.open_socket(Peer::User("fay".into()));
    let resume = Greeting {
        client_id: 1,
        recv_seq: 2,
        session,
        attempt: 2,
        secret: Some(secret),
    };
    e.handle_socket_hello(now, b, resume, None).unwrap();
    assert_eq!(acknowledged(&drain(&mut e)), 2);
    // The third, acknowledged by an Ack: one more, nothing counted twice.
    e.handle_socket_envelope(now, b, Envelope::Ack { seq: 3 }, &mut no_token)
        .unwrap();
    assert_eq!(acknowledged(&drain(&mut e)), 1);
}

mod sequences {
    use super::*;
    use proptest::prelude::*;

    /// One input from a hostile mix of clients: three users (one anonymous), three
    /// client ids, secrets the endpoint gave out or made up.
    #[derive(Clone, Debug)]
    enum Op {
        Open(u8),
        Hello {
            conn: u8,
            client: u8,
            attempt: u8,
            secret: Option<u8>,
            room: bool,
        },
        Msg {
            conn: u8,
            seq: u8,
            bytes: u8,
        },
        Ack {
            conn: u8,
            seq: u8,
        },
        Auth {
            conn: u8,
            ok: bool,
        },
        FlushAck(u8),
        Close(u8),
        Poll {
            user: u8,
            client: u8,
            attempt: u8,
            proof: Option<u8>,
            hello: bool,
            acks: Vec<u8>,
        },
        Take(u8),
        SendToUser(u8),
        Wait(u8),
        Broadcast,
        Sweep(u8),
        Advance(u8),
    }

    fn arb_op() -> impl Strategy<Value = Op> {
        let small = || 0..4u8;
        prop_oneof![
            small().prop_map(Op::Open),
            (
                small(),
                small(),
                small(),
                proptest::option::of(small()),
                any::<bool>()
            )
                .prop_map(|(conn, client, attempt, secret, room)| Op::Hello {
                    conn,
                    client,
                    attempt,
                    secret,
                    room
                }),
            (small(), 0..6u8, 0..200u8).prop_map(|(conn, seq, bytes)| Op::Msg { conn, seq, bytes }),
            (small(), 0..6u8).prop_map(|(conn, seq)| Op::Ack { conn, seq }),
            (small(), any::<bool>()).prop_map(|(conn, ok)| Op::Auth { conn, ok }),
            small().prop_map(Op::FlushAck),
            small().prop_map(Op::Close),
            (
                small(),
                small(),
                small(),
                proptest::option::of(small()),
                any::<bool>(),
                proptest::collection::vec(0..6u8, 0..3)
            )
                .prop_map(|(user, client, attempt, proof, hello, acks)| Op::Poll {
                    user,
                    client,
                    attempt,
                    proof,
                    hello,
                    acks
                }),
            small().prop_map(Op::Take),
            small().prop_map(Op::SendToUser),
            small().prop_map(Op::Wait),
            Just(Op::Broadcast),
            small().prop_map(Op::Sweep),
            small().prop_map(Op::Advance),
        ]
    }

    fn peer(n: u8) -> Peer {
        match n % 3 {
            0 => Peer::Anonymous,
            1 => Peer::User("u1".into()),
            _ => Peer::User("u2".into()),
        }
    }

    proptest! {
        /// Whatever a mix of clients sends, nothing panics, every session is attached
        /// to at most one live transport that points back at it, every bound holds
        /// after every step, and nothing is written on a transport that is gone.
        #[test]
        fn any_sequence_keeps_the_endpoint_consistent_and_bounded(
            ops in proptest::collection::vec(arb_op(), 0..80)
        ) {
            let t0 = Instant::now();
            let mut now = t0;
            let config = EndpointConfig {
                resume_limits: ResumeLimits {
                    max_messages: 3,
                    max_bytes: 400,
                    ..ResumeLimits::default()
                },
                resume_budget_bytes: 4 * SESSION_COST + 300,
                max_sessions_per_user: 2,
                max_poll_frames: 2,
                max_poll_bytes: 300,
                echo: true,
            };
            let mut e = endpoint(config);
            let mut sockets: Vec<ConnId> = Vec::new();
            let mut secrets: Vec<SessionSecret> = vec![SessionSecret::from_bytes([0xaa; 16])];
            let mut polls: Vec<(ConnId, SessionKey)> = Vec::new();
            let mut reservation = Reservation::new(10);
            let pick = |v: &[ConnId], n: u8| v.get(usize::from(n) % v.len().max(1)).copied();
            for op in ops {
                match op {
                    Op::Open(n) => sockets.push(e.open_socket(peer(n))),
                    Op::Hello { conn, client, attempt, secret, room } => {
                        if let Some(c) = pick(&sockets, conn) {
                            let secret = secret.and_then(|s| secrets.get(usize::from(s) % secrets.len()).copied());
                            let room = room.then(|| "r".to_owned());
                            let _ = e.handle_socket_hello(now, c, hello(u64::from(client), u64::from(attempt), secret), room);
                        }
                    }
                    Op::Msg { conn, seq, bytes } => {
                        if let Some(c) = pick(&sockets, conn) {
                            let payload = Payload::from("m".repeat(usize::from(bytes)));
                            let _ = e.handle_socket_envelope(now, c, Envelope::Msg { seq: u64::from(seq), payload }, &mut no_token);
                        }
                    }
                    Op::Ack { conn, seq } => {
                        if let Some(c) = pick(&sockets, conn) {
                            let _ = e.handle_socket_envelope(now, c, Envelope::Ack { seq: u64::from(seq) }, &mut no_token);
                        }
                    }
                    Op::Auth { conn, ok } => {
                        if let Some(c) = pick(&sockets, conn) {
                            let mut check = |_: &str| if ok { Ok(()) } else { Err(TokenRefused::Invalid) };
                            let _ = e.handle_socket_envelope(now, c, Envelope::Auth { token: "t".into() }, &mut check);
                        }
                    }
                    Op::FlushAck(conn) => {
                        if let Some(c) = pick(&sockets, conn) {
                            e.flush_ack(c);
                        }
                    }
                    Op::Close(conn) => {
                        if let Some(c) = pick(&sockets, conn) {
                            e.handle_closed(now, c, Some(1000), "bye");
                            sockets.retain(|s| *s != c);
                        }
                    }
                    Op::Poll { user, client, attempt, proof, hello: says_hello, acks } => {
                        let client_id = u64::from(client);
                        let attempt = u64::from(attempt);
                        let proof = proof.and_then(|s| secrets.get(usize::from(s) % secrets.len()).copied());
                        let mut envelopes = Vec::new();
                        if says_hello {
                            envelopes.push(Envelope::Hello { client_id, recv_seq: 0, session: 0, attempt, secret: proof });
                        }
                        envelopes.extend(acks.into_iter().map(|seq| Envelope::Ack { seq: u64::from(seq) }));
                        let request = PollRequest { peer: peer(user), client_id, attempt, proof, room: None, envelopes };
                        if let Ok(x) = e.handle_poll(now, request, &mut no_token) {
                            polls.push((x.conn, x.key));
                        }
                    }
                    Op::Take(n) => {
                        if let Some((conn, key)) = polls.get(usize::from(n) % polls.len().max(1)).cloned() {
                            let _ = e.take_pending(now, conn, &key);
                        }
                    }
                    Op::SendToUser(n) => {
                        e.send_to_user(now, if n % 2 == 0 { "u1" } else { "u2" }, &Payload::from("s".repeat(50)));
                    }
                    Op::Wait(n) => {
                        let user = if n % 2 == 0 { "u1" } else { "u2" };
                        if e.try_send_to_user(now, user, &Payload::from("w".repeat(10)), &mut reservation).is_some() {
                            reservation = Reservation::new(10);
                        }
                    }
                    Op::Broadcast => {
                        e.broadcast(now, "r", &Payload::from("b"));
                    }
                    Op::Sweep(n) => {
                        e.handle_sweep(now, Duration::from_secs(u64::from(n) * 10), Duration::from_secs(u64::from(n) * 20));
                    }
                    Op::Advance(n) => now += Duration::from_secs(u64::from(n) * 7),
                }
                let mut closed = Vec::new();
                while let Some(out) = e.poll_output() {
                    match out {
                        Output::Send { conn, .. } => {
                            prop_assert!(e.transport(conn).is_some() && !closed.contains(&conn), "a frame for a transport that is gone or closing");
                        }
                        Output::Close { conn, .. } => closed.push(conn),
                        Output::Attached { key, .. } if !secrets.contains(&key.secret) => {
                            secrets.push(key.secret);
                        }
                        _ => {}
                    }
                }
                for c in closed {
                    e.handle_closed(now, c, Some(1000), "closed");
                    sockets.retain(|s| *s != c);
                }
                while e.poll_output().is_some() {}
                // The bounds.
                prop_assert!(e.memory().resume_bytes <= config.resume_budget_bytes);
                for user in ["u1", "u2"] {
                    let mine = (0..4).map(|c| e.sessions_of(user, c).len()).sum::<usize>();
                    prop_assert!(mine <= config.max_sessions_per_user);
                }
                // Attachment points both ways, and no transport serves two sessions.
                let mut seen = HashSet::new();
                for client in 0..4 {
                    for user in ["", "u1", "u2"] {
                        for key in e.sessions_of(user, client) {
                            let record = e.session(&key).unwrap();
                            prop_assert!(record.protocol().buffered() <= 3);
                            if let Some(conn) = record.attached() {
                                prop_assert!(seen.insert(conn), "one transport, two sessions");
                                let view = e.transport(conn);
                                prop_assert!(view.is_some(), "attached to a transport that is gone");
                                prop_assert_eq!(view.unwrap().client_id, Some(client));
                            }
                        }
                    }
                }
            }
            e.stop_waiting(now, &mut reservation);
        }
    }
}

/// The frames queued for `conn`, decoded.
fn frames_to(outs: &[Output], conn: ConnId) -> Vec<Envelope> {
    outs.iter()
        .filter_map(|o| match o {
            Output::Send { conn: c, frame, .. } if *c == conn => {
                Envelope::decode(frame.clone()).ok()
            }
            _ => None,
        })
        .collect()
}

#[test]
fn a_session_exported_from_one_endpoint_resumes_on_another() {
    let now = Instant::now();
    let mut a = endpoint(EndpointConfig::default());
    let conn = a.open_socket(Peer::User("ann".into()));
    a.handle_socket_hello(now, conn, hello(7, 1, None), None)
        .unwrap();
    let secret = welcome_secret(&drain(&mut a));
    let key = a.sessions_of("ann", 7).pop().unwrap();
    // The client sent 2 messages (echoed: server messages 1 and 2) and read the first.
    for n in 1..=2 {
        let m = Envelope::Msg {
            seq: n,
            payload: format!("m{n}").into(),
        };
        a.handle_socket_envelope(now, conn, m, &mut no_token)
            .unwrap();
    }
    drain(&mut a);
    let session = a.session(&key).unwrap().protocol().session();
    let image = a.export_session(&key).unwrap();
    let bytes = image.encode();

    let mut b = endpoint(EndpointConfig::default());
    let image = SessionImage::decode(&bytes, ResumeLimits::default()).unwrap();
    assert!(b.import_session(now, &key, image.clone()));
    assert!(
        !b.import_session(now, &key, image),
        "an equal copy is not taken again"
    );
    let conn = b.open_socket(Peer::User("ann".into()));
    let resume = Greeting {
        client_id: 7,
        recv_seq: 1,
        session,
        attempt: 2,
        secret: Some(secret),
    };
    b.handle_socket_hello(now, conn, resume, None).unwrap();
    let frames = frames_to(&drain(&mut b), conn);
    assert_eq!(
        frames,
        [
            Envelope::Welcome {
                session,
                recv_seq: 2,
                resumed: true,
                secret
            },
            Envelope::Msg {
                seq: 2,
                payload: "m2".into()
            }
        ]
    );
}

#[test]
fn a_newer_image_replaces_an_older_local_copy_and_closes_its_transport() {
    let now = Instant::now();
    let mut e = endpoint(EndpointConfig::default());
    let conn = e.open_socket(Peer::User("ann".into()));
    e.handle_socket_hello(now, conn, hello(7, 1, None), None)
        .unwrap();
    drain(&mut e);
    let key = e.sessions_of("ann", 7).pop().unwrap();
    let mut newer = e.export_session(&key).unwrap();
    assert!(!e.import_session(now, &key, newer.clone()), "not newer");
    newer.latest_attempt = 5;
    assert!(e.import_session(now, &key, newer));
    assert!(drain(&mut e).contains(&Output::Close {
        conn,
        code: 1000,
        reason: "the session moved to another instance"
    }));
    assert_eq!(e.session(&key).unwrap().protocol().latest_attempt(), 5);
    assert_eq!(e.session(&key).unwrap().attached(), None);
}

#[test]
fn a_claim_on_another_instance_replaces_another_client_and_detaches_the_same_one() {
    let now = Instant::now();
    let mut e = endpoint(EndpointConfig::default());
    let conn = e.open_socket(Peer::User("ann".into()));
    e.handle_socket_hello(now, conn, hello(7, 1, None), None)
        .unwrap();
    drain(&mut e);
    assert!(e.claimed_elsewhere(now, "ann", 8));
    assert!(drain(&mut e).contains(&Output::Close {
        conn,
        code: 4409,
        reason: "replaced by a newer connection"
    }));
    let key = e.sessions_of("ann", 7).pop().unwrap();
    assert!(e.session(&key).unwrap().replaced());
    assert!(
        !e.claimed_elsewhere(now, "ann", 8),
        "nobody current any more"
    );

    let again = e.open_socket(Peer::User("ann".into()));
    e.handle_socket_hello(now, again, hello(9, 1, None), None)
        .unwrap();
    drain(&mut e);
    assert!(e.claimed_elsewhere(now, "ann", 9));
    assert!(drain(&mut e).contains(&Output::Close {
        conn: again,
        code: 1000,
        reason: "a newer transport of this client took over"
    }));
    assert!(!e.claimed_elsewhere(now, "bob", 1), "another user: nothing");
}

#[test]
fn a_fan_out_a_session_had_before_it_moved_is_not_sent_again() {
    let now = Instant::now();
    let mut a = endpoint(EndpointConfig::default());
    a.set_fanout_origin(0xa);
    let conn = a.open_socket(Peer::User("ann".into()));
    a.handle_socket_hello(now, conn, hello(7, 1, None), Some("lobby".into()))
        .unwrap();
    drain(&mut a);
    assert_eq!(a.broadcast(now, "lobby", &"one".into()), 1);
    let outs = drain(&mut a);
    assert!(outs.iter().any(|o| matches!(
        o,
        Output::FannedOut { to: FanOut::Room(r), origin: 0xa, seq: 1, .. } if r == "lobby"
    )));
    // The session moves to B; A's fan-out 1 reaches B as well: not sent twice.
    let key = a.sessions_of("ann", 7).pop().unwrap();
    let image = a.export_session(&key).unwrap();
    assert_eq!(image.fanout, [(0xa, 1)]);
    let mut b = endpoint(EndpointConfig::default());
    b.set_fanout_origin(0xb);
    assert!(b.import_session(now, &key, image));
    let room = FanOut::Room("lobby".into());
    assert_eq!(b.receive_fanout(now, &room, &"one".into(), 0xa, 1), 0);
    assert_eq!(b.session(&key).unwrap().protocol().last_sent_seq(), 1);
    // A's next one is new to it.
    assert_eq!(b.receive_fanout(now, &room, &"two".into(), 0xa, 2), 1);
    assert_eq!(b.session(&key).unwrap().protocol().last_sent_seq(), 2);
    // Without an origin, nothing is tagged or reported.
    let mut plain = endpoint(EndpointConfig::default());
    plain.broadcast(now, "lobby", &"x".into());
    assert!(drain(&mut plain).is_empty());
}

#[test]
fn a_session_taken_over_gets_what_it_missed_once_or_a_reset_past_the_log() {
    let now = Instant::now();
    let mut a = endpoint(EndpointConfig::default());
    a.set_fanout_origin(0xa);
    a.fanout_seen((100, 0));
    let conn = a.open_socket(Peer::User("ann".into()));
    a.handle_socket_hello(now, conn, hello(7, 1, None), Some("lobby".into()))
        .unwrap();
    drain(&mut a);
    assert_eq!(a.broadcast(now, "lobby", &"one".into()), 1);
    let key = a.sessions_of("ann", 7).pop().unwrap();
    // Held by A, the session has had everything A took.
    a.fanout_seen((105, 0));
    let image = a.export_session(&key).unwrap();
    assert_eq!(image.mark, (105, 0));
    let room = FanOut::Room("lobby".into());
    // What the log holds after the mark: A's own "one" (had already), then B's to the
    // room, another room's, and one to the user: two are for it.
    let missed = vec![
        (room.clone(), Payload::from("one"), 0xa, 1),
        (room.clone(), Payload::from("two"), 0xb, 1),
        (FanOut::Room("other".into()), Payload::from("no"), 0xb, 2),
        (FanOut::User("ann".into()), Payload::from("three"), 0xb, 3),
    ];
    let mut b = endpoint(EndpointConfig::default());
    b.set_fanout_origin(0xb);
    assert!(b.import_session_replaying(now, &key, image.clone(), missed, (110, 0), false));
    let s = b.session(&key).unwrap().protocol();
    assert_eq!(s.last_sent_seq(), 3, "one, then two and three");
    assert_eq!(b.export_session(&key).unwrap().mark, (110, 0));
    // B's own broadcast made before the session was here, back through the log after
    // it was read: sent to the imported session, once; not to one made here since.
    let mut d = endpoint(EndpointConfig::default());
    d.set_fanout_origin(0xd);
    assert_eq!(d.broadcast(now, "lobby", &"late".into()), 0);
    assert!(d.import_session_replaying(now, &key, image.clone(), Vec::new(), (105, 0), false));
    let fresh = d.open_socket(Peer::User("bo".into()));
    d.handle_socket_hello(now, fresh, hello(8, 1, None), Some("lobby".into()))
        .unwrap();
    assert_eq!(d.receive_fanout(now, &room, &"late".into(), 0xd, 1), 1);
    assert_eq!(d.receive_fanout(now, &room, &"late".into(), 0xd, 1), 0);
    // Live again: B's fan-out 3 arriving through the subscription is not sent twice.
    assert_eq!(
        b.receive_fanout(now, &FanOut::User("ann".into()), &"three".into(), 0xb, 3),
        0
    );

    // Past the log's bound: the client's next Hello resets rather than losing silently.
    let old = image.session;
    let mut c = endpoint(EndpointConfig::default());
    assert!(c.import_session_replaying(now, &key, image, Vec::new(), (110, 0), true));
    let conn = c.open_socket(Peer::User("ann".into()));
    let resume = Greeting {
        client_id: 7,
        recv_seq: 1,
        session: old,
        attempt: 2,
        secret: Some(key.secret),
    };
    c.handle_socket_hello(now, conn, resume, Some("lobby".into()))
        .unwrap();
    let outs = drain(&mut c);
    let welcome = outs.iter().find_map(|o| match o {
        Output::Send { frame, .. } => match Envelope::decode(frame.clone()) {
            Ok(Envelope::Welcome {
                session, resumed, ..
            }) => Some((session, resumed)),
            _ => None,
        },
        _ => None,
    });
    let (session, resumed) = welcome.expect("a Welcome");
    assert!(!resumed && session != old, "a reset: {outs:?}");
}

#[test]
fn fan_outs_lost_to_an_endpoint_reset_the_sessions_they_could_reach_and_only_those() {
    let now = Instant::now();
    let mut e = endpoint(EndpointConfig::default());
    e.set_fanout_origin(0xe);
    // Ann in a room, and her session has one message unacknowledged; Bob (a user, no
    // room); an anonymous client in no room.
    let ann = e.open_socket(Peer::User("ann".into()));
    e.handle_socket_hello(now, ann, hello(7, 1, None), Some("lobby".into()))
        .unwrap();
    let bob = e.open_socket(Peer::User("bob".into()));
    e.handle_socket_hello(now, bob, hello(8, 1, None), None)
        .unwrap();
    let anon = e.open_socket(Peer::Anonymous);
    e.handle_socket_hello(now, anon, hello(9, 1, None), None)
        .unwrap();
    let outs = drain(&mut e);
    let ann_secret = frames_to(&outs, ann)
        .into_iter()
        .find_map(|f| match f {
            Envelope::Welcome { secret, .. } => Some(secret),
            _ => None,
        })
        .unwrap();
    assert_eq!(e.broadcast(now, "lobby", &"held".into()), 1);
    drain(&mut e);
    let key = e.sessions_of("ann", 7).pop().unwrap();
    let session = e.session(&key).unwrap().protocol().session();

    assert_eq!(e.fanout_lost(now, (50, 1)), 2, "ann's and bob's");
    assert_eq!(e.fanout_mark(), (50, 1));
    let mut closes: Vec<_> = drain(&mut e)
        .into_iter()
        .filter_map(|o| match o {
            Output::Close { conn, code, .. } => Some((conn, code)),
            _ => None,
        })
        .collect();
    closes.sort_by_key(|(conn, _)| *conn);
    assert_eq!(closes, [(ann, 1012), (bob, 1012)]);
    let s = e.session(&key).unwrap().protocol();
    assert_eq!((s.buffered(), s.buffered_bytes()), (0, 0));
    assert_eq!(e.export_session(&key).unwrap().mark, (50, 1));

    // Ann's client comes back having read nothing: it cannot resume, it is told.
    e.handle_closed(now, ann, Some(1012), "");
    let back = e.open_socket(Peer::User("ann".into()));
    let resume = Greeting {
        client_id: 7,
        recv_seq: 0,
        session,
        attempt: 2,
        secret: Some(ann_secret),
    };
    e.handle_socket_hello(now, back, resume, None).unwrap();
    let frames = frames_to(&drain(&mut e), back);
    assert!(
        matches!(frames.first(), Some(Envelope::Welcome { resumed: false, session: s, .. }) if *s != session),
        "{frames:?}"
    );
}

#[test]
fn with_a_shared_log_a_clients_room_message_reaches_the_members_here_only_through_it() {
    let now = Instant::now();
    let mut e = endpoint(EndpointConfig::default());
    e.set_fanout_origin(0xe0);
    let ann = e.open_socket(Peer::User("ann".into()));
    e.handle_socket_hello(now, ann, hello(7, 1, None), Some("lobby".into()))
        .unwrap();
    let bob = e.open_socket(Peer::User("bob".into()));
    e.handle_socket_hello(now, bob, hello(8, 1, None), Some("lobby".into()))
        .unwrap();
    drain(&mut e);
    let m = Envelope::Msg {
        seq: 1,
        payload: "hi".into(),
    };
    e.handle_socket_envelope(now, ann, m, &mut no_token)
        .unwrap();
    let outs = drain(&mut e);
    // Reported under the clients' origin, sent to no one yet (Ann's Ack aside).
    let (origin, seq) = outs
        .iter()
        .find_map(|o| match o {
            Output::FannedOut {
                origin,
                seq,
                from: Some(_),
                ..
            } => Some((*origin, *seq)),
            _ => None,
        })
        .expect("reported");
    assert_ne!(origin, 0xe0, "apart from the application's");
    for conn in [ann, bob] {
        assert!(
            !frames_to(&outs, conn)
                .iter()
                .any(|f| matches!(f, Envelope::Msg { .. })),
            "{outs:?}"
        );
    }
    // Carl joins before it comes back through the log: it was sent before he was.
    let carl = e.open_socket(Peer::User("carl".into()));
    e.handle_socket_hello(now, carl, hello(9, 1, None), Some("lobby".into()))
        .unwrap();
    drain(&mut e);
    let room = FanOut::Room("lobby".into());
    assert_eq!(
        e.receive_fanout(now, &room, &"hi".into(), origin, seq),
        2,
        "Ann and Bob"
    );
    assert_eq!(
        e.receive_fanout(now, &room, &"hi".into(), origin, seq),
        0,
        "once"
    );
    // The application's broadcasts still go out at once.
    assert_eq!(e.broadcast(now, "lobby", &"news".into()), 3);
    let outs = drain(&mut e);
    assert_eq!(
        frames_to(&outs, carl),
        [Envelope::Msg {
            seq: 1,
            payload: "news".into()
        }]
    );
}
