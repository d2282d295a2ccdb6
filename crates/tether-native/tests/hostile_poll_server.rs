//! A malicious polling server against a client whose application sends but is behind on
//! reading: every send poll's answer carries 1 MiB of new messages. Reading paused, the
//! client must not grow its unread queue without bound (it held 128 MiB after 100 sends
//! against a 1 MiB bound, until a paused client stopped issuing send polls too).

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tether_core::protocol::{decode_batch, encode_batch};
use tether_core::{FallbackConfig, Payload};
use tether_native::Client;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Reads one request; returns whether it is a send poll, and its body (None on EOF).
async fn read_body(stream: &mut TcpStream) -> Option<(bool, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 65536];
    let head_end = loop {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_lowercase();
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    while buf.len() - head_end < length {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let send = head.lines().next().is_some_and(|l| l.contains("op=send"));
    Some((send, buf[head_end..head_end + length].to_vec()))
}

const PER_ANSWER: usize = 8;
const PAYLOAD: usize = 128 << 10;

async fn serve(mut stream: TcpStream, next: Arc<AtomicU64>) {
    while let Some((send, body)) = read_body(&mut stream).await {
        if !send {
            // Receive polls wait, then come back empty: only send polls bring messages.
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let records = decode_batch(&body).unwrap_or_default();
        let mut out: Vec<Payload> = Vec::new();
        let mut max_seq = None;
        for r in &records {
            let Payload::Text(t) = r else { continue };
            if t.starts_with("H ") {
                next.store(0, Ordering::SeqCst);
                out.push(Payload::Text(
                    "W 1 0 0 0123456789abcdef0123456789abcdef".into(),
                ));
            } else if let Some(rest) = t.strip_prefix("M ") {
                max_seq = rest.split(' ').next().and_then(|s| s.parse::<u64>().ok());
            }
        }
        if let Some(seq) = max_seq {
            out.push(Payload::from(format!("A {seq}")));
        }
        // Every answer after the Welcome brings more messages.
        if send
            && !out
                .iter()
                .any(|p| matches!(p, Payload::Text(t) if t.starts_with("W ")))
        {
            let pad = "m".repeat(PAYLOAD);
            for _ in 0..PER_ANSWER {
                let seq = next.fetch_add(1, Ordering::SeqCst) + 1;
                out.push(Payload::from(format!("M {seq} {pad}")));
            }
        }
        let body = encode_batch(&out);
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        if stream.write_all(head.as_bytes()).await.is_err()
            || stream.write_all(&body).await.is_err()
        {
            return;
        }
    }
}

async fn server() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let next = Arc::new(AtomicU64::new(0));
    let task = tokio::spawn(async move {
        let mut served = tokio::task::JoinSet::new();
        while let Ok((stream, _)) = listener.accept().await {
            served.spawn(serve(stream, next.clone()));
        }
    });
    (addr, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_poll_answers_cannot_grow_a_paused_clients_memory_without_bound() {
    let (addr, task) = server().await;
    let mut fallback = FallbackConfig::new(format!("http://{addr}/poll"));
    fallback.after_failures = 1;
    let config = support::config(addr)
        .protocol()
        .fallback(fallback)
        .build()
        .unwrap();
    let bound = config.max_unread_bytes as u64;
    let client = Client::builder(config).spawn().unwrap();
    // The application keeps its event stream but is busy: it reads nothing.
    let events = client.events();
    support::wait_state(&client, tether_core::State::Connected).await;
    // It keeps sending (telemetry, say): 100 small messages, each acked.
    for n in 0..100 {
        support::within("send_wait", client.send_wait(format!("t{n}")))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let m = client.metrics();
    assert!(m.reading_paused, "{m:?}");
    eprintln!(
        "unread {} bytes ({} messages), peak {}",
        m.unread_bytes, m.unread_messages, m.unread_bytes_peak
    );
    // Generous: the bound, plus one full answer.
    let allowed = bound + (PER_ANSWER * (PAYLOAD + 64)) as u64;
    assert!(
        m.unread_bytes_peak <= allowed,
        "a paused client holds {} unread bytes (bound {bound}, allowed {allowed})",
        m.unread_bytes_peak
    );
    drop(events);
    client.close_now(1000, "bye").await;
    task.abort();
}
