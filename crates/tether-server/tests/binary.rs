//! The `tether-server` binary: announces its address, serves, stops on SIGTERM/kill.

mod support;

use std::process::Stdio;

use support::*;
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::Command;

#[tokio::test]
async fn binary_prints_its_address_and_serves() {
    bounded(30, async {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tether-server"))
            .args([
                "--bind",
                "127.0.0.1:0",
                "--dev-allow-anonymous",
                "--log",
                "warn",
            ])
            .env("TETHER_SECRET", SECRET)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("the binary starts");
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).await.unwrap();
        let addr: std::net::SocketAddr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .parse()
            .unwrap();

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
