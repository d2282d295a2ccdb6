//! Secrets never reach the logs: with every log of every crate on (tracing, and the
//! `log` records of tungstenite and reqwest, which tracing-subscriber forwards), a
//! socket and polls through a proxy with a password, a token in the URL and in
//! `Authorization`, and an application header. One exception, outside this crate:
//! tungstenite logs the whole upgrade request at TRACE (target
//! `tungstenite::handshake::client`); the crate docs ("Logs") say so and give the
//! filter used here.

use std::io::Write;
use std::sync::{Arc, Mutex};

use tether_dispatch::transport::Transport;
use tether_native::transport::Proxy;
use tether_native::NativeTransport;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn no_secret_in_any_log() {
    let logs = Buffer::default();
    let writer = logs.clone();
    // The filter the crate docs recommend: everything, except tungstenite's TRACE
    // record of the upgrade request.
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            "trace,tungstenite::handshake::client=debug",
        ))
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .try_init()
        .unwrap();

    // A proxy that tunnels nothing: it answers 200 to CONNECT and then the upgrade with
    // 503 (for sockets), and 503 to forwarded polls.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                loop {
                    let Ok(n) = stream.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    let answer: &[u8] = if buf.starts_with(b"CONNECT ") {
                        b"HTTP/1.1 200 Connection established\r\n\r\n"
                    } else {
                        b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n"
                    };
                    if stream.write_all(answer).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    let t = NativeTransport::new()
        .header("X-Api-Key", "k-s3cr3t-key")
        .unwrap()
        .proxy(Proxy::http(&format!("http://alice:hunter2@{addr}")).unwrap());
    let auth = vec![("Authorization".to_owned(), "Bearer t0k3n-h".to_owned())];
    let r = t
        .connect(
            "ws://127.0.0.1:9/ws?access_token=t0k3n-q".into(),
            vec![],
            auth.clone(),
        )
        .await;
    assert!(r.is_err());
    let r = t
        .post(
            "http://127.0.0.1:9/poll?access_token=t0k3n-q".into(),
            auth.clone(),
            vec![],
        )
        .await;
    assert!(r.is_err());
    let r = t
        .post(
            "https://127.0.0.1:9/poll?access_token=t0k3n-q".into(),
            auth,
            vec![],
        )
        .await;
    assert!(r.is_err());
    server.abort();
    let text = String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned();
    // Everything else was logged, at TRACE: the check saw the traffic.
    assert!(text.contains("TRACE"), "{text}");
    // base64("alice:hunter2") is YWxpY2U6aHVudGVyMg==
    for secret in [
        "hunter2",
        "YWxpY2U6aHVudGVyMg",
        "t0k3n-h",
        "t0k3n-q",
        "k-s3cr3t-key",
    ] {
        assert!(!text.contains(secret), "{secret} in the logs");
    }
}
