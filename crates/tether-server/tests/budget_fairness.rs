//! The server-wide resume budget charges whoever holds the most: another user's flood
//! (here through a room) cannot push a user's session out. Before, the sessions detached
//! longest ago went first, whoever filled the budget: a user offline for a moment lost
//! her session to another user's room traffic (found by the attacker helper).

mod support;

use support::*;
use tether_core::protocol::Envelope;
use tether_server::ServerConfig;

fn resumed(welcome: &Envelope) -> bool {
    matches!(welcome, Envelope::Welcome { resumed: true, .. })
}

/// PROTOCOL.md 13: another user cannot do anything to a client's sessions. Ten accounts,
/// each with its `max_sessions_per_user` detached sessions in one room, and two room
/// messages of 500 KiB fill the budget: their sessions go, and alice, offline for a
/// moment with a message pending, resumes with it.
#[tokio::test]
async fn another_users_flood_cannot_evict_a_session_through_the_resume_budget() {
    bounded(60, async {
        let server = start(config()).await;
        let addr = server.addr();
        let alice = token("alice");
        let mut victim = Client::new(0xa11ce);
        let (ws, _) = victim.open(addr, "", Some(&alice)).await;
        close(ws).await;
        assert_eq!(server.hub().send_to_user("alice", "news"), 1);

        // 10 accounts of mallory's, 8 sessions each in room "flood", all detached.
        let per_user = ServerConfig::default().max_sessions_per_user as u64;
        for u in 0..10u64 {
            let t = token(&format!("mallory{u}"));
            for s in 0..per_user {
                let c = Client::new(0xbad000 + u * 100 + s);
                let (ws, _) = c.open(addr, "?room=flood", Some(&t)).await;
                drop(ws);
            }
        }
        let mut sender = Client::new(0x5e);
        let (mut ws, _) = sender
            .open(addr, "?room=flood", Some(&token("mallory-sender")))
            .await;
        let body = "x".repeat(500 << 10);
        for _ in 0..2 {
            let m = sender.msg(&body);
            send(&mut ws, m).await;
            sender.wait_ack(&mut ws, sender.send_seq).await;
        }
        let m = server.hub().memory();
        eprintln!("after the flood: {m:?}");
        drop(ws);

        let (mut ws, welcome) = victim.open(addr, "", Some(&alice)).await;
        assert!(
            resumed(&welcome),
            "another user's room traffic dropped alice's session: {welcome:?}"
        );
        let (got, _) = victim.collect(&mut ws, 1).await;
        assert_eq!(texts(&got), ["news"]);
        server.shutdown().await;
    })
    .await;
}
