//! The server's life: kill and restart (keeping or losing state), graceful shutdown,
//! freeze and thaw; health and metrics.

mod support;

use std::sync::Arc;
use std::time::Duration;

use support::*;
use tether_core::protocol::Envelope;
use tether_server::Hub;

#[tokio::test]
async fn kill_and_restart_on_the_same_port_with_the_same_hub_resumes() {
    bounded(30, async {
        let hub = Arc::new(Hub::new());
        let server = start_with(config(), Arc::clone(&hub)).await;
        let addr = server.addr();
        let token = token("sam");
        let mut c = Client::new(0x77);
        let (mut ws, welcome) = c.open(addr, "", Some(&token)).await;
        let Envelope::Welcome { session, .. } = welcome else {
            unreachable!()
        };
        let m = c.msg("before");
        send(&mut ws, m).await;
        c.wait_ack(&mut ws, 1).await;

        server.kill().await;
        // The socket is gone without a close frame.
        assert_eq!(close_code(&mut ws).await, None);
        // While the server is down, the hub still takes messages for the session.
        hub.send_to_user("sam", "while down");

        let mut cfg = config();
        cfg.bind = addr;
        let server = start_with(cfg, Arc::clone(&hub)).await;
        assert_eq!(server.addr(), addr);
        let (mut ws, welcome) = c.open(addr, "", Some(&token)).await;
        assert_eq!(
            welcome,
            Envelope::Welcome {
                session,
                recv_seq: 1,
                resumed: true,
                secret: c.secret.get().expect("a secret")
            }
        );
        // "before" was received (but never acked): only the newer message comes.
        let (got, _) = c.collect(&mut ws, 1).await;
        assert_eq!(texts(&got), ["while down"]);
        server.kill().await;

        // Restart with a fresh hub: the session is gone, numbering starts over.
        let mut cfg = config();
        cfg.bind = addr;
        let server = start(cfg).await;
        let (_ws, welcome) = c.open(addr, "", Some(&token)).await;
        assert!(matches!(
            welcome,
            Envelope::Welcome {
                recv_seq: 0,
                resumed: false,
                ..
            }
        ));
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn graceful_shutdown_closes_with_1001() {
    bounded(20, async {
        let server = start(config()).await;
        let addr = server.addr();
        let c = Client::new(1);
        let (mut ws, _) = c.open(addr, "", Some(&token("tom"))).await;
        let mut echo = connect(addr, "/echo", Some(&token("uma"))).await;
        let stopping = tokio::spawn(server.shutdown());
        assert_eq!(close_code(&mut ws).await, Some(1001));
        assert_eq!(close_code(&mut echo).await, Some(1001));
        stopping.await.unwrap();
        assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    })
    .await;
}

#[tokio::test]
async fn frozen_server_answers_nothing_until_thawed() {
    bounded(20, async {
        let server = start(config()).await;
        let addr = server.addr();
        let c = Client::new(2);
        let (mut ws, _) = c.open(addr, "", Some(&token("vic"))).await;
        server.freeze();
        assert!(server.is_frozen());
        send(&mut ws, Envelope::Ping { id: 1 }).await;
        let silent = tokio::time::timeout(Duration::from_millis(400), recv(&mut ws)).await;
        assert!(silent.is_err(), "a frozen server answered");
        // HTTP waits too.
        let health = tokio::spawn(async move { get_json(addr, "/api/health").await });
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!health.is_finished());

        server.thaw();
        assert_eq!(recv(&mut ws).await, Envelope::Pong { id: 1 });
        assert_eq!(health.await.unwrap()["status"], "ok");
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn health_and_metrics_json() {
    bounded(20, async {
        let mut cfg = config();
        cfg.latency_probe_interval = Some(Duration::from_millis(100));
        let server = start(cfg).await;
        let addr = server.addr();
        let health = get_json(addr, "/api/health").await;
        assert_eq!(health["status"], "ok");
        assert!(health["uptime_secs"].is_u64());

        let token = token("wes");
        let mut c = Client::new(0xc0ffee);
        let (mut ws, _) = c.open(addr, "?room=ops", Some(&token)).await;
        for text in ["x", "y"] {
            let m = c.msg(text);
            send(&mut ws, m).await;
        }
        c.collect(&mut ws, 2).await;
        // A server message counts as out once the client acknowledges it; the Pong
        // says the Ack was taken.
        send(&mut ws, Envelope::Ack { seq: 2 }).await;
        send(&mut ws, Envelope::Ping { id: 9 }).await;
        read_to_pong(&mut c, &mut ws, 9).await;
        let _ = try_connect(addr, "/ws", Some("bad")).await;
        // Let a latency probe go round (the client answers while reading).
        let reader = tokio::spawn(async move {
            let _ = tokio::time::timeout(Duration::from_millis(400), async {
                while next_data(&mut ws).await.is_some() {}
            })
            .await;
            ws
        });
        let ws = reader.await.unwrap();

        // Without the admin credential: the counts, no per-connection data.
        let public = get_json(addr, "/api/websocket/metrics").await;
        assert_eq!(public["connections"], serde_json::json!([]));
        assert_eq!(public["active_connections"], 1);
        let m = get_json_admin(addr, "/api/websocket/metrics").await;
        for key in [
            "clients",
            "total_connections",
            "active_connections",
            "failed_connections",
            "connection_reliability",
            "error_rate",
            "average_latency_ms",
            "average_uptime_secs",
            "messages_in_total",
            "messages_out_total",
            "messages_in_per_sec",
            "messages_out_per_sec",
            "sessions",
            "connections",
        ] {
            assert!(m.get(key).is_some(), "missing {key} in {m}");
        }
        assert_eq!(m["clients"], 1);
        assert_eq!(m["active_connections"], 1);
        assert_eq!(m["total_connections"], 2);
        assert_eq!(m["failed_connections"], 1);
        assert_eq!(m["connection_reliability"], 50.0);
        assert_eq!(m["messages_in_total"], 2);
        assert_eq!(m["messages_out_total"], 2);
        assert!(m["messages_in_per_sec"].as_f64().unwrap() > 0.0);
        assert!(m["average_latency_ms"].as_f64().unwrap() > 0.0, "{m}");
        let conn = &m["connections"][0];
        assert_eq!(conn["user"], "wes");
        assert_eq!(conn["client_id"], "c0ffee");
        assert_eq!(conn["transport"], "ws");
        assert_eq!(conn["room"], "ops");
        assert_eq!(conn["messages_in"], 2);
        assert_eq!(conn["messages_out"], 2);
        assert!(conn["connected_at"].as_u64().unwrap() > 1_600_000_000_000);
        close(ws).await;
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn unused_sessions_are_forgotten_after_session_ttl() {
    bounded(20, async {
        let mut cfg = config();
        cfg.session_ttl = Duration::from_millis(300);
        cfg.sweep_interval = Duration::from_millis(50);
        let server = start(cfg).await;
        let addr = server.addr();
        let token = token("xena");
        let mut c = Client::new(9);
        let (mut ws, _) = c.open(addr, "", Some(&token)).await;
        let m = c.msg("kept for a while");
        send(&mut ws, m).await;
        c.wait_ack(&mut ws, 1).await;
        close(ws).await;
        assert_eq!(server.hub().sessions(), 1);

        // Within the TTL the session resumes...
        let (ws, welcome) = c.open(addr, "", Some(&token)).await;
        assert!(matches!(welcome, Envelope::Welcome { resumed: true, .. }));
        close(ws).await;
        // ...after it, it is gone and the client gets a reset.
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert_eq!(server.hub().sessions(), 0);
        let (ws, welcome) = c.open(addr, "", Some(&token)).await;
        assert!(matches!(
            welcome,
            Envelope::Welcome {
                recv_seq: 0,
                resumed: false,
                ..
            }
        ));
        close(ws).await;
        server.shutdown().await;
    })
    .await;
}
