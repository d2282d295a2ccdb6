//! Tokens: the token endpoint, refusals before the upgrade, expiry and refresh on an
//! open connection, dev mode.

mod support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hyper::{Method, StatusCode};
use support::*;
use tether_core::protocol::Envelope;

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test]
async fn bad_missing_or_expired_token_is_401_before_upgrade() {
    bounded(20, async {
        let server = start(config()).await;
        let addr = server.addr();
        // Expired beyond the leeway (30 s by default).
        let expired = tokens().issue_until("ivy", unix_now() - 120).unwrap();
        let foreign = tether_server::TokenAuthority::new(tether_server::Secret::new("other"))
            .issue("ivy", Duration::from_secs(60))
            .unwrap();
        for path in ["/ws", "/echo"] {
            for bearer in [
                None,
                Some("garbage"),
                Some(expired.as_str()),
                Some(foreign.as_str()),
            ] {
                assert_eq!(refused(addr, path, bearer).await, 401, "{path} {bearer:?}");
            }
            let with_query = format!("{path}?access_token={expired}");
            assert_eq!(refused(addr, &with_query, None).await, 401);
        }
        // The query parameter works as well as the header.
        let good = token("ivy");
        let mut ws = connect(addr, &format!("/echo?access_token={good}"), None).await;
        send_frame(&mut ws, "ping".into()).await;
        assert_eq!(next_data(&mut ws).await, Some("pong".into()));

        // Polling follows the same rules.
        let (status, _) = poll(addr, 1, "send", "&t=1", "garbage", &[]).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn token_expiring_on_an_open_connection_closes_4401() {
    bounded(20, async {
        let mut cfg = config();
        cfg.token_leeway = Duration::ZERO;
        let server = start(cfg).await;
        let short = tokens().issue("jack", Duration::from_millis(1)).unwrap(); // valid for one to two seconds
        let c = Client::new(5);
        let (mut ws, _) = c.open(server.addr(), "", Some(&short)).await;
        let started = std::time::Instant::now();
        assert_eq!(
            close_code_within(&mut ws, Duration::from_secs(4)).await,
            Some(4401)
        );
        assert!(started.elapsed() <= Duration::from_secs(3));
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn refresh_extends_and_a_bad_refresh_closes_4401() {
    bounded(20, async {
        let mut cfg = config();
        cfg.token_leeway = Duration::ZERO;
        let server = start(cfg).await;
        let addr = server.addr();
        let short = tokens().issue("kim", Duration::from_millis(1)).unwrap();
        let mut c = Client::new(6);
        let (mut ws, _) = c.open(addr, "", Some(&short)).await;
        send(
            &mut ws,
            Envelope::Auth {
                token: token("kim"),
            },
        )
        .await;
        tokio::time::sleep(Duration::from_millis(2200)).await;
        // Still open past the first token's expiry.
        let m = c.msg("still here");
        send(&mut ws, m).await;
        assert_eq!(texts(&c.collect(&mut ws, 1).await.0), ["still here"]);

        send(
            &mut ws,
            Envelope::Auth {
                token: "junk".into(),
            },
        )
        .await;
        assert_eq!(close_code(&mut ws).await, Some(4401));

        // Another user's token is forbidden.
        let (mut ws, _) = c.open(addr, "", Some(&token("kim"))).await;
        send(
            &mut ws,
            Envelope::Auth {
                token: token("lee"),
            },
        )
        .await;
        assert_eq!(close_code(&mut ws).await, Some(4403));
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn dev_mode_accepts_anonymous_clients_as_separate_users() {
    bounded(20, async {
        let mut cfg = config();
        cfg.dev_mode = true;
        let server = start(cfg).await;
        let addr = server.addr();
        let a = Client::new(0x100);
        let b = Client::new(0x200);
        let (mut wa, _) = a.open(addr, "", None).await;
        let (mut wb, _) = b.open(addr, "", None).await;
        // Neither replaced the other.
        send(&mut wa, Envelope::Ping { id: 1 }).await;
        assert_eq!(recv(&mut wa).await, Envelope::Pong { id: 1 });
        send(&mut wb, Envelope::Ping { id: 2 }).await;
        assert_eq!(recv(&mut wb).await, Envelope::Pong { id: 2 });
        let users: Vec<String> = get_json_admin(addr, "/api/websocket/metrics").await
            ["connections"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["user"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(users.len(), 2);
        assert!(users.iter().all(|u| u.starts_with("dev-temp-")));
        assert_ne!(users[0], users[1]);

        // An anonymous client still resumes its session.
        drop(wa);
        let (_wa, welcome) = a.open(addr, "", None).await;
        assert!(matches!(welcome, Envelope::Welcome { resumed: true, .. }));

        // A token that is present but bad is refused even in dev mode.
        assert_eq!(refused(addr, "/ws", Some("garbage")).await, 401);
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn token_endpoint_issues_tokens_the_server_accepts() {
    bounded(20, async {
        let mut cfg = config();
        cfg.token_endpoint = true;
        let server = start(cfg).await;
        let addr = server.addr();
        let admin = format!("Bearer {ADMIN}");
        let (status, body) = http(
            addr,
            Method::POST,
            "/api/token",
            &[
                ("content-type", "application/json"),
                ("authorization", &admin),
            ],
            br#"{"user":"alice","ttl_secs":60}"#.to_vec(),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["expires_in"], 60);
        let token = json["token"].as_str().unwrap();
        let claims = tokens().verify(token).unwrap();
        assert_eq!(claims.user, "alice");
        let mut ws = connect(addr, "/echo", Some(token)).await;
        send_frame(&mut ws, "ping".into()).await;
        assert_eq!(next_data(&mut ws).await, Some("pong".into()));

        for bad in [
            r#"{"user":""}"#,
            r#"{"user":"dev-temp-1"}"#,
            r#"{"user":"a","ttl_secs":0}"#,
            r#"{"user":"a","ttl_secs":99999999}"#,
            r#"{"nope":1}"#,
            "not json",
        ] {
            let (status, _) = http(
                addr,
                Method::POST,
                "/api/token",
                &[
                    ("content-type", "application/json"),
                    ("authorization", &admin),
                ],
                bad.as_bytes().to_vec(),
            )
            .await;
            assert!(status.is_client_error(), "{bad}: {status}");
        }
        server.shutdown().await;
    })
    .await;
}
