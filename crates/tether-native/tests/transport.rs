//! `NativeTransport` alone: what each failure maps to, what goes on the wire.

mod support;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tether_core::{Payload, TransportFailure};
use tether_dispatch::transport::{SocketEvent, SocketReader, SocketWriter, Transport};
use tether_native::NativeTransport;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

use support::within;

/// A one-shot HTTP server: reads one request, answers `response`, hands the request over.
async fn http_once(response: &'static str) -> (String, oneshot::Receiver<(String, Vec<u8>)>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let (head, body) = read_request(&mut stream).await;
        stream.write_all(response.as_bytes()).await.unwrap();
        let _ = tx.send((head, body));
        // Keep the socket open until the client has read the answer.
        let _ = stream.read(&mut [0u8; 1]).await;
    });
    (addr.to_string(), rx)
}

async fn read_request(stream: &mut TcpStream) -> (String, Vec<u8>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    let head_end = loop {
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "request cut short");
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8(buf[..head_end].to_vec()).unwrap();
    let length = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().unwrap())
        })
        .unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "body cut short");
        body.extend_from_slice(&chunk[..n]);
    }
    (head, body)
}

/// An address where nothing listens, held for as long as the socket lives: a
/// socket bound but never listening keeps its port from every other test, and
/// a connect to it is refused. (Binding a listener and dropping it would free
/// the port for a test running alongside, which could then answer on it.)
fn refusing_addr() -> (tokio::net::TcpSocket, String) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = socket.local_addr().unwrap().to_string();
    (socket, addr)
}

#[tokio::test]
async fn nothing_listening_is_refused() {
    let (_held, addr) = refusing_addr();
    let t = NativeTransport::new();
    let ws = within(
        "connect",
        t.connect(format!("ws://{addr}/"), vec![], vec![]),
    )
    .await;
    assert_eq!(ws.err(), Some(TransportFailure::Refused));
    let poll = within(
        "poll",
        t.post(format!("http://{addr}/poll"), vec![], vec![]),
    )
    .await;
    assert_eq!(poll, Err(TransportFailure::Refused));
}

#[tokio::test]
async fn an_http_answer_to_the_upgrade_keeps_status_and_retry_after() {
    let (addr, _) = http_once(
        "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 7\r\nContent-Length: 0\r\n\r\n",
    )
    .await;
    let t = NativeTransport::new();
    let r = within(
        "connect",
        t.connect(format!("ws://{addr}/ws"), vec![], vec![]),
    )
    .await;
    assert_eq!(
        r.err(),
        Some(TransportFailure::Http {
            status: 503,
            retry_after: Some(Duration::from_secs(7))
        })
    );

    let (addr, _) = http_once("HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n").await;
    let r = within(
        "connect",
        t.connect(format!("ws://{addr}/ws"), vec![], vec![]),
    )
    .await;
    assert_eq!(
        r.err(),
        Some(TransportFailure::Http {
            status: 401,
            retry_after: None
        })
    );
}

#[tokio::test]
async fn a_server_that_does_not_speak_tls_is_a_tls_failure() {
    // A plain HTTP server that talks first, as soon as the TCP connection is up.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let _ = stream
            .write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            .await;
        let _ = stream.read(&mut [0u8; 1024]).await;
    });
    let t = NativeTransport::new();
    let r = within(
        "connect",
        t.connect(format!("wss://{addr}/ws"), vec![], vec![]),
    )
    .await;
    assert!(matches!(r, Err(TransportFailure::Tls(_))), "{:?}", r.err());
}

#[tokio::test]
async fn a_malformed_url_fails_without_echoing_it() {
    let t = NativeTransport::new();
    let r = t
        .connect("ws://h:99999/?access_token=s3cr3t".into(), vec![], vec![])
        .await;
    let Err(TransportFailure::Network(text)) = r else {
        panic!("{:?}", r.err())
    };
    assert!(!text.contains("s3cr3t"), "{text}");
    let r = t
        .post("http://h:99999/?access_token=s3cr3t".into(), vec![], vec![])
        .await;
    let Err(TransportFailure::Network(text)) = r else {
        panic!("{r:?}")
    };
    assert!(!text.contains("s3cr3t"), "{text}");
}

#[tokio::test]
async fn poll_posts_the_body_with_headers_and_returns_the_answer() {
    let (addr, request) =
        http_once("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc").await;
    let t = NativeTransport::new();
    let body = within(
        "poll",
        t.post(
            format!("http://{addr}/poll?client=ab&op=send"),
            vec![("Authorization".into(), "Bearer s3cr3t".into())],
            b"\x00\x00\x00\x00\x03A 1".to_vec(),
        ),
    )
    .await;
    assert_eq!(body, Ok(b"abc".to_vec()));
    let (head, sent) = within("the request", request).await.unwrap();
    assert!(
        head.starts_with("POST /poll?client=ab&op=send HTTP/1.1\r\n"),
        "{head}"
    );
    let head = head.to_ascii_lowercase();
    assert!(head.contains("authorization: bearer s3cr3t\r\n"), "{head}");
    assert!(
        head.contains("content-type: application/octet-stream\r\n"),
        "{head}"
    );
    assert_eq!(sent, b"\x00\x00\x00\x00\x03A 1");
}

#[tokio::test]
async fn poll_maps_a_non_2xx_status() {
    let (addr, _) = http_once(
        "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 3\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    )
    .await;
    let t = NativeTransport::new();
    let r = within(
        "poll",
        t.post(format!("http://{addr}/poll"), vec![], vec![]),
    )
    .await;
    assert_eq!(
        r,
        Err(TransportFailure::Http {
            status: 429,
            retry_after: Some(Duration::from_secs(3))
        })
    );

    // A redirect is reported, not followed.
    let (addr, _) = http_once(
        "HTTP/1.1 307 Temporary Redirect\r\nLocation: /elsewhere\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    )
    .await;
    let r = within(
        "poll",
        t.post(format!("http://{addr}/poll"), vec![], vec![]),
    )
    .await;
    assert!(
        matches!(r, Err(TransportFailure::Http { status: 307, .. })),
        "{r:?}"
    );
}

/// A WebSocket server for one connection, run by `script`.
async fn ws_once<F, Fut>(script: F) -> String
where
    F: FnOnce(tokio_tungstenite::WebSocketStream<TcpStream>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let ws = tokio_tungstenite::accept_async(stream).await.unwrap();
        script(ws).await;
    });
    format!("ws://{addr}/")
}

#[tokio::test]
async fn reader_reports_frames_then_the_close_code() {
    let url = ws_once(|mut ws| async move {
        ws.send(Message::Text("hi".into())).await.unwrap();
        ws.send(Message::Ping(vec![1].into())).await.unwrap();
        ws.send(Message::Binary(vec![7, 8].into())).await.unwrap();
        let frame = CloseFrame {
            code: CloseCode::from(4000),
            reason: "bye".into(),
        };
        ws.close(Some(frame)).await.unwrap();
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
    let (_w, mut r) = within(
        "connect",
        NativeTransport::new().connect(url, vec![], vec![]),
    )
    .await
    .unwrap();
    assert_eq!(
        within("a frame", r.next()).await,
        SocketEvent::Frame(Payload::Text("hi".into()))
    );
    assert_eq!(
        within("a frame", r.next()).await,
        SocketEvent::Frame(Payload::from(vec![7, 8]))
    );
    assert_eq!(
        within("the close", r.next()).await,
        SocketEvent::Closed {
            code: Some(4000),
            reason: "bye".into()
        }
    );
    // Called again by mistake: still an end, never a hang or a panic.
    assert!(within("after the end", r.next()).await.is_end());
}

#[tokio::test]
async fn a_dropped_connection_is_a_close_without_code() {
    let url = ws_once(|ws| async move { drop(ws) }).await;
    let (_w, mut r) = within(
        "connect",
        NativeTransport::new().connect(url, vec![], vec![]),
    )
    .await
    .unwrap();
    let end = within("the end", r.next()).await;
    assert!(
        matches!(
            end,
            SocketEvent::Closed { code: None, .. }
                | SocketEvent::Failed(TransportFailure::Network(_))
        ),
        "{end:?}"
    );
}

#[tokio::test]
async fn an_oversized_message_fails_the_socket() {
    let url = ws_once(|mut ws| async move {
        let _ = ws.send(Message::Binary(vec![0; 4096].into())).await;
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
    let t = NativeTransport::new().max_message_bytes(1000);
    let (_w, mut r) = within("connect", t.connect(url, vec![], vec![]))
        .await
        .unwrap();
    let end = within("the failure", r.next()).await;
    assert!(
        matches!(
            end,
            SocketEvent::Failed(TransportFailure::MessageTooLarge { size: 4096 })
        ),
        "{end:?}"
    );
}

#[tokio::test]
async fn writer_sends_frames_and_a_valid_close() {
    let (seen_tx, seen) = oneshot::channel();
    let url = ws_once(|mut ws| async move {
        let mut got = Vec::new();
        while let Some(Ok(m)) = ws.next().await {
            let end = m.is_close();
            got.push(m);
            if end {
                break;
            }
        }
        let _ = seen_tx.send(got);
    })
    .await;
    let (mut w, mut r) = within(
        "connect",
        NativeTransport::new().connect(url, vec![], vec![]),
    )
    .await
    .unwrap();
    w.send(Payload::Text("a".into())).await.unwrap();
    w.send(Payload::from(vec![1])).await.unwrap();
    // 1006 may not be sent: it becomes 1000; the reason is cut to 123 bytes.
    w.close(1006, "x".repeat(200)).await;
    let got = within("the server", seen).await.unwrap();
    assert_eq!(got[0], Message::Text("a".into()));
    assert_eq!(got[1], Message::Binary(vec![1].into()));
    let Message::Close(Some(frame)) = &got[2] else {
        panic!("{:?}", got[2])
    };
    assert_eq!((u16::from(frame.code), frame.reason.len()), (1000, 123));
    assert!(within("the reader's end", r.next()).await.is_end());
}

/// Stricter than browsers: tungstenite fails the handshake when subprotocols were offered
/// and the server chose none (a browser opens the socket with protocol ""). Reported as
/// a network failure, which the core retries.
#[tokio::test]
async fn a_server_choosing_no_offered_subprotocol_fails_the_attempt() {
    let url = ws_once(|ws| async move { drop(ws) }).await;
    let r = within(
        "connect",
        NativeTransport::new().connect(url, vec!["tether.v1".into()], vec![]),
    )
    .await;
    let Err(TransportFailure::Network(text)) = r else {
        panic!("{:?}", r.err())
    };
    assert!(text.contains("ubprotocol"), "{text}");
}
