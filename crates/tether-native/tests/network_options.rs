//! The knobs of `NativeTransport` between the client and the network: an HTTP proxy
//! (`CONNECT` for sockets, forwarding for polls), the hosts that bypass it, custom
//! headers, per-request rewriting and the application's connector.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tether_core::{Event, Payload, TransportFailure};
use tether_dispatch::transport::Transport;
use tether_native::transport::{Dialed, Outgoing, Proxy, RequestKind, Target};
use tether_native::{Client, NativeTransport};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use support::{next_event, within, EchoServer};

/// Reads one request head (up to the blank line) from `stream`.
async fn read_head(stream: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "request cut short");
        buf.extend_from_slice(&chunk[..n]);
        if buf.windows(4).any(|w| w == b"\r\n\r\n") {
            return String::from_utf8(buf).unwrap();
        }
    }
}

/// A server that records each request head and answers `answer` to each.
struct Recorder {
    addr: String,
    heads: Arc<Mutex<Vec<String>>>,
    _task: JoinSet<()>,
}

impl Recorder {
    async fn start(answer: &'static str) -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let heads = Arc::new(Mutex::new(Vec::new()));
        let mut task = JoinSet::new();
        let seen = heads.clone();
        task.spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let head = read_head(&mut stream).await;
                seen.lock().unwrap().push(head);
                let _ = stream.write_all(answer.as_bytes()).await;
                let _ = stream.read(&mut [0u8; 1]).await;
            }
        });
        Recorder {
            addr,
            heads,
            _task: task,
        }
    }

    fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }
}

/// An HTTP proxy that tunnels `CONNECT` to loopback targets only (anything else is
/// refused with 403: no test may reach beyond 127.0.0.1), recording each request head.
struct ConnectProxy {
    addr: String,
    heads: Arc<Mutex<Vec<String>>>,
    _task: JoinSet<()>,
}

impl ConnectProxy {
    async fn start() -> ConnectProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let heads = Arc::new(Mutex::new(Vec::new()));
        let mut task = JoinSet::new();
        let seen = heads.clone();
        task.spawn(async move {
            let mut tunnels = JoinSet::new();
            while let Ok((mut client, _)) = listener.accept().await {
                let seen = seen.clone();
                tunnels.spawn(async move {
                    let head = read_head(&mut client).await;
                    seen.lock().unwrap().push(head.clone());
                    let target = head
                        .strip_prefix("CONNECT ")
                        .and_then(|rest| rest.split(' ').next())
                        .filter(|t| t.starts_with("127.0.0.1:"))
                        .map(str::to_owned);
                    let Some(target) = target else {
                        let _ = client
                            .write_all(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
                            .await;
                        return;
                    };
                    let mut server = TcpStream::connect(target).await.unwrap();
                    client
                        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                        .await
                        .unwrap();
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                });
            }
        });
        ConnectProxy {
            addr,
            heads,
            _task: task,
        }
    }

    fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }
}

/// Connects a client with `transport` to the echo server at `url`, and checks a message
/// makes the round trip.
async fn echo_round_trip(url: String, transport: NativeTransport) {
    let config = tether_core::Config::builder(url).build().unwrap();
    let client = Client::builder(config)
        .transport(transport)
        .spawn()
        .unwrap();
    let mut events = client.events();
    next_event(
        &mut events,
        "connected",
        |e| matches!(e, Event::StateChanged { to, .. } if *to == tether_core::State::Connected),
    )
    .await;
    client.send("through").unwrap();
    next_event(
        &mut events,
        "the echo",
        |e| matches!(e, Event::Message(Payload::Text(t)) if t == "through"),
    )
    .await;
    within("close", client.close(1000, "done")).await;
}

#[tokio::test]
async fn a_client_reaches_its_server_through_a_connect_proxy() {
    let echo = EchoServer::start().await;
    let proxy = ConnectProxy::start().await;
    let transport = NativeTransport::new()
        .proxy(Proxy::http(&format!("http://al%40ice:s3cret@{}", proxy.addr)).unwrap());
    echo_round_trip(format!("ws://{}/ws", echo.addr), transport).await;

    let heads = proxy.heads();
    assert_eq!(heads.len(), 1, "{heads:?}");
    let head = heads[0].to_ascii_lowercase();
    let target = echo.addr.to_string();
    assert!(
        heads[0].starts_with(&format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n")),
        "{head}"
    );
    // base64("al@ice:s3cret")
    assert!(
        head.contains("proxy-authorization: basic ywxaawnlonmzy3jlda=="),
        "{head}"
    );
    // The tunnel carries the upgrade untouched: the echo server saw it.
    assert_eq!(echo.handshakes.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn hosts_in_no_proxy_connect_directly() {
    let echo = EchoServer::start().await;
    let proxy = ConnectProxy::start().await;
    let transport = NativeTransport::new().proxy(
        Proxy::http(&proxy.addr)
            .unwrap()
            .no_proxy("localhost,127.0.0.0/8"),
    );
    echo_round_trip(format!("ws://{}/ws", echo.addr), transport).await;
    assert!(proxy.heads().is_empty(), "{:?}", proxy.heads());
}

#[tokio::test]
async fn a_proxy_that_will_not_tunnel_fails_the_attempt_with_its_status() {
    let t = |addr: &str| NativeTransport::new().proxy(Proxy::http(addr).unwrap());
    let refusing =
        Recorder::start("HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n")
            .await;
    let r = within(
        "connect",
        t(&refusing.addr).connect("ws://127.0.0.1:9/ws".into(), vec![], vec![]),
    )
    .await;
    assert_eq!(
        r.err(),
        Some(TransportFailure::Network(
            "the proxy refused the tunnel: HTTP 407".into()
        ))
    );

    // A proxy that talks past its answer, and one that is not HTTP at all.
    for (answer, expected) in [
        (
            "HTTP/1.1 200 OK\r\n\r\nunexpected",
            "the proxy sent data after its answer to CONNECT",
        ),
        (
            "SSH-2.0-OpenSSH_9.0\r\n\r\n",
            "the proxy's answer to CONNECT is not HTTP",
        ),
    ] {
        let odd = Recorder::start(answer).await;
        let r = within(
            "connect",
            t(&odd.addr).connect("ws://127.0.0.1:9/ws".into(), vec![], vec![]),
        )
        .await;
        assert_eq!(r.err(), Some(TransportFailure::Network(expected.into())));
    }
}

#[cfg(feature = "polling")]
#[tokio::test]
async fn polling_goes_through_the_same_proxy_and_bypasses_it_the_same_way() {
    let proxy = Recorder::start("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").await;
    let t = NativeTransport::new().proxy(
        Proxy::http(&format!("http://u:p@{}", proxy.addr))
            .unwrap()
            .no_proxy("127.0.0.2"),
    );
    // 127.0.0.1:9 is never contacted: the proxy answers for it.
    let r = within(
        "poll",
        t.poll("http://127.0.0.1:9/poll?op=recv".into(), vec![], vec![]),
    )
    .await;
    assert_eq!(r, Ok(b"ok".to_vec()));
    let heads = proxy.heads();
    assert_eq!(heads.len(), 1);
    assert!(
        heads[0].starts_with("POST http://127.0.0.1:9/poll?op=recv HTTP/1.1\r\n"),
        "{}",
        heads[0]
    );
    // base64("u:p")
    assert!(
        heads[0]
            .to_ascii_lowercase()
            .contains("proxy-authorization: basic dtpw"),
        "{}",
        heads[0]
    );

    // A bypassed host is asked directly (here: nothing listens, so refused).
    let (_held, addr) = {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        let addr = socket.local_addr().unwrap();
        (socket, addr)
    };
    let r = within(
        "poll",
        t.poll(format!("http://{addr}/poll"), vec![], vec![]),
    )
    .await;
    assert_eq!(r, Err(TransportFailure::Refused));
    assert_eq!(proxy.heads().len(), 1);
}

#[tokio::test]
async fn custom_headers_reach_the_upgrade_and_the_polls() {
    let server =
        Recorder::start("HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n").await;
    let t = NativeTransport::new()
        .header("X-Api-Key", "k-1")
        .unwrap()
        .header("User-Agent", "tests/1")
        .unwrap();
    let r = within(
        "connect",
        t.connect(
            format!("ws://{}/ws", server.addr),
            vec![],
            vec![("Authorization".into(), "Bearer t".into())],
        ),
    )
    .await;
    assert!(matches!(
        r.err(),
        Some(TransportFailure::Http { status: 503, .. })
    ));
    #[cfg(feature = "polling")]
    {
        let r = within(
            "poll",
            t.poll(format!("http://{}/poll", server.addr), vec![], vec![]),
        )
        .await;
        assert!(matches!(r, Err(TransportFailure::Http { status: 503, .. })));
    }
    let heads = server.heads();
    for head in &heads {
        let head = head.to_ascii_lowercase();
        assert!(head.contains("\r\nx-api-key: k-1\r\n"), "{head}");
        assert!(head.contains("\r\nuser-agent: tests/1\r\n"), "{head}");
    }
    assert!(heads[0]
        .to_ascii_lowercase()
        .contains("authorization: bearer t"));
    assert_eq!(heads.len(), if cfg!(feature = "polling") { 2 } else { 1 });
}

#[tokio::test]
async fn the_rewrite_hook_runs_before_every_request() {
    let server =
        Recorder::start("HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n").await;
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let t = NativeTransport::new()
        .header("X-App", "1")
        .unwrap()
        .rewrite(move |request: &mut Outgoing| {
            let n = counted.fetch_add(1, Ordering::SeqCst) + 1;
            assert_eq!(request.kind, RequestKind::WebSocket);
            request.url.push_str(&format!("?attempt={n}"));
            request.headers.push(("X-Attempt".into(), n.to_string()));
        });
    for _ in 0..2 {
        let r = within(
            "connect",
            t.connect(format!("ws://{}/ws", server.addr), vec![], vec![]),
        )
        .await;
        assert!(matches!(
            r.err(),
            Some(TransportFailure::Http { status: 503, .. })
        ));
    }
    let heads = server.heads();
    assert_eq!(heads.len(), 2);
    for (i, head) in heads.iter().enumerate() {
        let n = i + 1;
        assert!(
            head.starts_with(&format!("GET /ws?attempt={n} HTTP/1.1\r\n")),
            "{head}"
        );
        let head = head.to_ascii_lowercase();
        assert!(head.contains(&format!("\r\nx-attempt: {n}\r\n")), "{head}");
        assert!(head.contains("\r\nx-app: 1\r\n"), "{head}");
    }

    // A header the hook may not set fails the request before anything is sent.
    let t = NativeTransport::new().rewrite(|request: &mut Outgoing| {
        request
            .headers
            .push(("Sec-WebSocket-Key".into(), "forged".into()));
    });
    let r = within(
        "connect",
        t.connect(format!("ws://{}/ws", server.addr), vec![], vec![]),
    )
    .await;
    assert!(
        matches!(&r, Err(TransportFailure::Network(m)) if m.starts_with("header sec-websocket-key cannot be set")),
        "{:?}",
        r.err()
    );
    assert_eq!(server.heads().len(), 2);
}

#[cfg(unix)]
#[tokio::test]
async fn a_connector_opens_the_stream_over_a_unix_socket() {
    let echo = EchoServer::start().await;
    let dir = std::env::temp_dir().join(format!("tether-connector-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("ws.sock");
    let _ = std::fs::remove_file(&path);
    let listener = tokio::net::UnixListener::bind(&path).unwrap();
    let echo_addr = echo.addr;
    let mut bridge = JoinSet::new();
    bridge.spawn(async move {
        let mut tunnels = JoinSet::new();
        while let Ok((mut unix, _)) = listener.accept().await {
            tunnels.spawn(async move {
                let mut tcp = TcpStream::connect(echo_addr).await.unwrap();
                let _ = tokio::io::copy_bidirectional(&mut unix, &mut tcp).await;
            });
        }
    });

    let targets = Arc::new(Mutex::new(Vec::new()));
    let seen = targets.clone();
    let socket = path.clone();
    let transport = NativeTransport::new().connector(move |target: Target| {
        seen.lock().unwrap().push(target);
        let socket = socket.clone();
        async move {
            let stream = tokio::net::UnixStream::connect(socket).await?;
            Ok(Dialed::secured(stream))
        }
    });
    // The host is never resolved: the connector decides where the bytes go.
    echo_round_trip("ws://tether.invalid/ws".into(), transport).await;
    let targets = targets.lock().unwrap().clone();
    assert_eq!(targets.len(), 1);
    assert_eq!(
        (targets[0].host.as_str(), targets[0].port, targets[0].secure),
        ("tether.invalid", 80, false)
    );

    // The connector's error fails the attempt as TCP's would.
    let refused = NativeTransport::new().connector(|_| async {
        Err::<Dialed, _>(std::io::Error::from(std::io::ErrorKind::ConnectionRefused))
    });
    let r = within(
        "connect",
        refused.connect("ws://tether.invalid/ws".into(), vec![], vec![]),
    )
    .await;
    assert_eq!(r.err(), Some(TransportFailure::Refused));
    bridge.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn unusable_settings_are_typed_errors() {
    use tether_native::transport::{HeaderError, ProxyProblem};
    assert_eq!(
        NativeTransport::new().header("Host", "x").err(),
        Some(HeaderError::Reserved("host".into()))
    );
    assert_eq!(
        Proxy::http("socks5://127.0.0.1:1080")
            .err()
            .map(|e| e.problem),
        Some(ProxyProblem::UnsupportedScheme("socks5".into()))
    );
}
