//! The `tether-server` binary: announces its address, serves, stops on SIGTERM/kill.

mod support;

use std::process::Stdio;

use support::*;
use tether_core::protocol::Envelope;
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::Command;

#[tokio::test]
async fn binary_prints_its_address_and_serves() {
    bounded(30, async {
        let (mut child, addr) =
            support::spawn_binary(&["--dev-allow-anonymous", "--log", "warn"], true).await;

        assert_eq!(get_json(addr, "/api/health").await["status"], "ok");
        // The secret came from the environment; dev mode lets anonymous clients in.
        let c = Client::new(42);
        let (_ws, _) = c.open(addr, "", Some(&token("zoe"))).await;
        let (_anon, _) = Client::new(43).open(addr, "", None).await;

        child.start_kill().unwrap();
        child.wait().await.unwrap();
        let mut stderr = String::new();
        tokio::io::AsyncReadExt::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr)
            .await
            .unwrap();
        assert!(stderr.contains("DEV MODE"), "{stderr}");
        assert!(!stderr.contains(&token("zoe")[..20]), "a token was logged");
    })
    .await;
}

#[tokio::test]
async fn admin_routes_need_the_admin_token_in_a_header() {
    bounded(30, async {
        // Without an admin token the admin listener does not start at all.
        let status = Command::new(env!("CARGO_BIN_EXE_tether-server"))
            .args(["--bind", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
            .env_remove("TETHER_ADMIN_TOKEN")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await
            .unwrap();
        assert_eq!(status.code(), Some(2));

        let mut child = Command::new(env!("CARGO_BIN_EXE_tether-server"))
            .args([
                "--bind",
                "127.0.0.1:0",
                "--admin",
                "127.0.0.1:0",
                "--log",
                "warn",
            ])
            .env("TETHER_ADMIN_TOKEN", ADMIN)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("the binary starts");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut admin_addr = None;
        while admin_addr.is_none() {
            let line = lines.next_line().await.unwrap().expect("a line");
            if let Some(a) = line.strip_prefix("admin listening on ") {
                admin_addr = Some(a.parse::<std::net::SocketAddr>().unwrap());
            }
        }
        let admin = admin_addr.unwrap();
        // What a cross-site form can send: no Authorization header.
        for (method, path, content_type) in [
            (
                hyper::Method::POST,
                "/stop",
                "application/x-www-form-urlencoded",
            ),
            (hyper::Method::POST, "/restart?down_ms=0", "text/plain"),
            (hyper::Method::GET, "/delivered", "text/plain"),
        ] {
            let (status, _) = http(
                admin,
                method,
                path,
                &[("content-type", content_type)],
                Vec::new(),
            )
            .await;
            assert_eq!(status, hyper::StatusCode::UNAUTHORIZED, "{path}");
        }
        let wrong = "Bearer not the admin token";
        let (status, _) = http(
            admin,
            hyper::Method::GET,
            "/delivered",
            &[("authorization", wrong)],
            Vec::new(),
        )
        .await;
        assert_eq!(status, hyper::StatusCode::UNAUTHORIZED);
        let auth = format!("Bearer {ADMIN}");
        let (status, body) = http(
            admin,
            hyper::Method::GET,
            "/delivered",
            &[("authorization", &auth)],
            Vec::new(),
        )
        .await;
        assert_eq!(
            status,
            hyper::StatusCode::OK,
            "{}",
            String::from_utf8_lossy(&body)
        );
        child.start_kill().unwrap();
        child.wait().await.unwrap();
    })
    .await;
}

#[cfg(unix)]
#[tokio::test]
async fn sigterm_drains_clients_away_with_1012_and_exits() {
    bounded(30, async {
        let (mut child, addr) =
            support::spawn_binary(&["--drain-window", "3s", "--log", "warn"], false).await;
        let c = Client::new(5);
        let (mut ws, _) = c.open(addr, "", Some(&token("sam"))).await;

        support::sigterm(&child).await;
        match recv(&mut ws).await {
            Envelope::Retry { after_ms } => assert!(after_ms < 3000, "{after_ms}"),
            other => panic!("expected a retry hint, got {other:?}"),
        }
        assert_eq!(close_code(&mut ws).await, Some(1012));
        drop(ws);
        let status = child.wait().await.unwrap();
        assert!(status.success(), "{status}");
    })
    .await;
}
