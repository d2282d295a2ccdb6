//! Sessions belong to the client holding their secret (PROTOCOL.md 4.1 and 12): each
//! test is an attack on another client's session that must fail against a real server.
//! Before protocol version 2 a session was found by (user, client id) alone, so every
//! one of these succeeded.

mod support;

use hyper::StatusCode;
use support::*;
use tether_core::protocol::{Envelope, SessionSecret};

/// The next envelope that is not a Pong: proves nothing was queued before `Pong { id }`
/// (the server answers a Ping at once, after what it already queued).
async fn nothing_queued(ws: &mut Ws, id: u64) {
    send(ws, Envelope::Ping { id }).await;
    let next = recv(ws).await;
    assert_eq!(
        next,
        Envelope::Pong { id },
        "something came before the Pong"
    );
}

fn welcome_parts(welcome: &Envelope) -> (u64, bool, SessionSecret) {
    match welcome {
        Envelope::Welcome {
            session,
            resumed,
            secret,
            ..
        } => (*session, *resumed, *secret),
        other => panic!("expected a Welcome, got {other:?}"),
    }
}

#[tokio::test]
async fn a_strangers_hello_with_the_victims_client_id_gets_nothing_and_locks_nobody_out() {
    bounded(30, async {
        let server = start(config()).await;
        let addr = server.addr();
        let alice = token("alice");
        let mut victim = Client::new(0xa11ce);
        let (mut ws, welcome) = victim.open(addr, "", Some(&alice)).await;
        let (session, _, secret) = welcome_parts(&welcome);
        // Unacknowledged: the echo of "mine" and two pushes, buffered for the victim.
        let m = victim.msg("mine");
        send(&mut ws, m).await;
        victim.wait_ack(&mut ws, 1).await;
        assert_eq!(server.hub().send_to_user("alice", "news 1"), 1);
        assert_eq!(server.hub().send_to_user("alice", "news 2"), 1);
        drop(ws);
        victim.recv_seq = 0;

        // Everything a stranger can learn (the client id is in the metrics, the session
        // id in the traffic) or choose: session 0 or the victim's, the highest transport
        // number, no secret or a made-up one; as another user, or with a token of
        // alice's own.
        let guessed = SessionSecret::from_bytes([0x5a; 16]);
        let mallory = token("mallory");
        let forgeries = [
            (&mallory, 0, None, 1),
            (&mallory, session, Some(guessed), u64::MAX),
            (&alice, 0, None, u64::MAX),
            (&alice, session, Some(guessed), u64::MAX),
        ];
        for (i, (bearer, named, proof, attempt)) in forgeries.into_iter().enumerate() {
            let mut ws = connect(addr, "/ws", Some(bearer)).await;
            send(
                &mut ws,
                Envelope::Hello {
                    client_id: victim.client_id,
                    recv_seq: 0,
                    session: named,
                    attempt,
                    secret: proof,
                },
            )
            .await;
            let (theirs, resumed, their_secret) = welcome_parts(&recv(&mut ws).await);
            assert!(!resumed, "forgery {i} resumed a session");
            assert_ne!(theirs, session, "forgery {i} got the victim's session");
            assert_ne!(their_secret, secret, "forgery {i} got the victim's secret");
            // Not one of the victim's messages: the first thing after the Welcome is
            // the answer to a Ping.
            nothing_queued(&mut ws, i as u64).await;
            // An Ack for messages this fresh session never sent is a protocol error.
            send(&mut ws, Envelope::Ack { seq: 3 }).await;
            assert_eq!(close_code(&mut ws).await, Some(4400), "forgery {i}");
        }

        // The victim comes back on its next transport (2, far below u64::MAX): its
        // session is as it left it, with everything unacknowledged.
        let (mut ws, welcome) = victim.open(addr, "", Some(&alice)).await;
        let (again, resumed, same_secret) = welcome_parts(&welcome);
        assert_eq!((again, resumed), (session, true));
        assert_eq!(same_secret, secret);
        let (got, _) = victim.collect(&mut ws, 3).await;
        assert_eq!(texts(&got), ["mine", "news 1", "news 2"]);
        close(ws).await;
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn another_users_forged_hello_does_not_disturb_a_connected_client() {
    bounded(30, async {
        let server = start(config()).await;
        let addr = server.addr();
        let bob = token("bob");
        let mut victim = Client::new(0xb0b);
        let (mut ws, welcome) = victim.open(addr, "", Some(&bob)).await;
        let (session, _, _) = welcome_parts(&welcome);
        let mut forged = connect(addr, "/ws", Some(&token("eve"))).await;
        send(
            &mut forged,
            Envelope::Hello {
                client_id: victim.client_id,
                recv_seq: 0,
                session,
                attempt: u64::MAX,
                secret: None,
            },
        )
        .await;
        assert!(!welcome_parts(&recv(&mut forged).await).1);
        // The victim's socket carries on, in its numbering.
        let m = victim.msg("still mine");
        send(&mut ws, m).await;
        let (got, _) = victim.collect(&mut ws, 1).await;
        assert_eq!(texts(&got), ["still mine"]);
        // eve's session got none of it.
        nothing_queued(&mut forged, 1).await;
        close(forged).await;
        close(ws).await;
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn guessed_poll_requests_without_the_secret_read_and_ack_nothing() {
    bounded(30, async {
        let server = start(config()).await;
        let addr = server.addr();
        let pat = token("pat");
        let mut victim = Client::new(0x9a7);
        let (status, answer) = victim.poll(addr, "send", "", &pat, &[victim.hello()]).await;
        assert_eq!(status, StatusCode::OK);
        let (_, _, secret) = welcome_parts(&answer[0]);
        assert_eq!(server.hub().send_to_user("pat", "p1"), 1);
        assert_eq!(server.hub().send_to_user("pat", "p2"), 1);

        // The attacker knows the client id and guesses `t` (small numbers: they count
        // the client's transports), without the secret or with a made-up one, as pat
        // or as someone else; some requests try to acknowledge what is buffered.
        let mallory = token("mallory");
        let wrong = Some(SessionSecret::from_bytes([0x77; 16]));
        for t in 0..=4u64 {
            for bearer in [&pat, &mallory] {
                for proof in [None, wrong] {
                    for (op, body) in [("recv", vec![]), ("send", vec![Envelope::Ack { seq: 2 }])] {
                        let query = format!("&t={t}");
                        let (status, got) =
                            poll_with(addr, victim.client_id, op, &query, bearer, proof, &body)
                                .await;
                        assert_eq!(
                            status,
                            StatusCode::SERVICE_UNAVAILABLE,
                            "t={t} {op} proof={}",
                            proof.is_some()
                        );
                        assert!(got.is_empty());
                    }
                }
            }
        }
        // A header that is not a secret at all is refused as malformed.
        let (status, _) = support::http(
            addr,
            hyper::Method::POST,
            &format!("/poll?client={:x}&op=recv&t=1", victim.client_id),
            &[
                ("authorization", &format!("Bearer {pat}")),
                ("tether-session", "1"),
            ],
            Vec::new(),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);

        // A stranger's polling Hello with the victim's client id gets a fresh session.
        let forged = Envelope::Hello {
            client_id: victim.client_id,
            recv_seq: 0,
            session: 0,
            attempt: 9,
            secret: wrong,
        };
        let (status, answer) = poll_with(
            addr,
            victim.client_id,
            "send",
            "&t=9",
            &mallory,
            None,
            &[forged],
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(answer.len(), 1, "a Welcome and nothing else: {answer:?}");
        let (_, resumed, theirs) = welcome_parts(&answer[0]);
        assert!(!resumed);
        assert_ne!(theirs, secret);

        // Nothing was read or acknowledged away: the victim's transport gets both.
        let (status, answer) = victim.poll(addr, "recv", "&wait_ms=0", &pat, &[]).await;
        assert_eq!(status, StatusCode::OK);
        let got: Vec<_> = answer
            .iter()
            .filter(|e| matches!(e, Envelope::Msg { .. }))
            .map(|e| victim.take(e))
            .collect();
        assert_eq!(texts(&got), ["p1", "p2"]);
        server.shutdown().await;
    })
    .await;
}
