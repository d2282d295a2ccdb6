//! Graceful drain (`RunningServer::drain`): nothing new is accepted, every client is
//! told to come back (1012 after an `R` hint spread over the window), and the drain
//! ends as soon as they are gone.

mod support;

use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use support::*;
use tether_core::protocol::Envelope;
use tokio_tungstenite::tungstenite::Message;

/// What a draining server told one socket: its retry hints and its close code. Reads
/// until the connection ends, which also sends the client's answer to the close.
async fn told(ws: &mut Ws) -> (Vec<u64>, Option<u16>) {
    let mut hints = Vec::new();
    let mut code = None;
    tokio::time::timeout(STEP, async {
        while let Some(Ok(message)) = ws.next().await {
            match message {
                Message::Text(t) => {
                    if let Ok(Envelope::Retry { after_ms }) =
                        Envelope::decode(t.as_str().to_owned().into())
                    {
                        hints.push(after_ms);
                    }
                }
                Message::Close(frame) => code = frame.map(|f| u16::from(f.code)),
                _ => {}
            }
        }
    })
    .await
    .expect("the server ended the connection");
    (hints, code)
}

#[tokio::test]
async fn a_drain_sends_every_client_away_with_hints_spread_over_the_window() {
    const CLIENTS: u64 = 8;
    bounded(30, async {
        let server = start(config()).await;
        let addr = server.addr();
        let window = Duration::from_secs(8);
        let mut sockets = Vec::new();
        for i in 0..CLIENTS {
            let user = format!("drained-{i}");
            let (ws, _) = Client::new(100 + i)
                .open(addr, "", Some(&token(&user)))
                .await;
            sockets.push(ws);
        }
        let mut echo = connect(addr, "/echo", Some(&token("plain"))).await;
        assert!(!server.is_draining());

        let started = Instant::now();
        let (all_gone, (told_protocol, told_echo)) = tokio::join!(server.drain(window), async {
            let mut told_protocol = Vec::new();
            for ws in &mut sockets {
                told_protocol.push(told(ws).await);
            }
            (told_protocol, told(&mut echo).await)
        });
        let took = started.elapsed();
        assert!(all_gone, "every connection ended");
        assert!(server.is_draining());
        assert!(
            took < window,
            "the drain ends when the clients are gone, not at the end of the window ({took:?})"
        );

        let mut hints = Vec::new();
        for (got, code) in told_protocol {
            assert_eq!(code, Some(1012), "service restart");
            assert_eq!(got.len(), 1, "one hint before the close: {got:?}");
            hints.push(got[0]);
        }
        let window_ms = window.as_millis() as u64;
        assert!(hints.iter().all(|&h| h < window_ms), "{hints:?}");
        assert!(hints.iter().any(|&h| h != hints[0]), "{hints:?}");
        // Eight clients, eight eighths of the window: one each.
        let mut eighths: Vec<u64> = hints.iter().map(|h| h * 8 / window_ms).collect();
        eighths.sort_unstable();
        assert_eq!(eighths, (0..8).collect::<Vec<_>>(), "{hints:?}");
        // A plain socket speaks no Tether: no hint, the close code alone.
        assert_eq!(told_echo, (Vec::new(), Some(1012)));

        // Nothing new is accepted: the balancer in front sends it elsewhere.
        assert!(tokio::net::TcpStream::connect(addr).await.is_err());
        // The sessions stay in the hub, for the instance the clients come back to.
        assert_eq!(server.hub().sessions(), CLIENTS as usize);
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_server_without_sockets_drains_at_once_and_polling_clients_go_elsewhere() {
    bounded(30, async {
        let server = start(config()).await;
        let addr = server.addr();
        let user = token("poller");
        let c = Client::new(7);
        let (status, welcome) = c.poll(addr, "recv", "", &user, &[c.hello()]).await;
        assert_eq!(status, hyper::StatusCode::OK);
        assert!(matches!(welcome.first(), Some(Envelope::Welcome { .. })));

        let started = Instant::now();
        assert!(server.drain(Duration::from_secs(30)).await);
        assert!(started.elapsed() < Duration::from_secs(10));
        // The polling client's next request finds nothing listening here (through a
        // balancer: the next instance); its session stays in the hub.
        assert!(tokio::net::TcpStream::connect(addr).await.is_err());
        assert_eq!(server.hub().sessions(), 1);

        // A second call only waits again, and shutdown still works after a drain.
        assert!(server.drain(Duration::from_secs(30)).await);
        server.shutdown().await;
    })
    .await;
}

/// A poll request on a connection the server took before the drain, completed after
/// it began, is answered 503 with its share of the window in `Retry-After`, and the
/// connection is closed after the answer.
#[tokio::test]
async fn a_request_completed_during_the_drain_gets_503_with_retry_after() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    bounded(30, async {
        let server = start(config()).await;
        let addr = server.addr();
        let mut early = tokio::net::TcpStream::connect(addr).await.unwrap();
        let head = format!(
            "POST /poll?client=2a&op=recv&t=1 HTTP/1.1\r\nhost: {addr}\r\n\
             authorization: Bearer {}\r\n",
            token("late")
        );
        early.write_all(head.as_bytes()).await.unwrap();
        // Connections are accepted in order: once a later one is served, `early` was
        // taken too.
        assert_eq!(get_json(addr, "/api/health").await["status"], "ok");

        let window = Duration::from_secs(8);
        let (all_gone, answer) = tokio::join!(server.drain(window), async {
            assert!(server.is_draining());
            early.write_all(b"content-length: 0\r\n\r\n").await.unwrap();
            let mut answer = String::new();
            tokio::time::timeout(STEP, early.read_to_string(&mut answer))
                .await
                .expect("the answer, then the end of the connection")
                .unwrap();
            answer
        });
        assert!(all_gone);
        assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
        let retry_after: u64 = answer
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("retry-after: ")
                    .map(str::to_owned)
            })
            .unwrap_or_else(|| panic!("no Retry-After: {answer}"))
            .trim()
            .parse()
            .unwrap();
        assert!(retry_after <= window.as_secs(), "{retry_after}");
        server.shutdown().await;
    })
    .await;
}
