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

use support::{config, next_event, within, EchoServer};

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
    /// Answers and keeps each connection open until the client ends it.
    async fn start(answer: &'static str) -> Recorder {
        Recorder::serve(answer, true).await
    }

    /// Answers and closes each connection.
    #[cfg(feature = "polling")]
    async fn start_closing(answer: &'static str) -> Recorder {
        Recorder::serve(answer, false).await
    }

    async fn serve(answer: &'static str, hold: bool) -> Recorder {
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
                if hold {
                    let _ = stream.read(&mut [0u8; 1]).await;
                }
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
            "the proxy refused the tunnel: HTTP 407 (proxy authentication required)".into()
        ))
    );

    // A refusal with a body (squid's HTML page) is reported by its status; a proxy
    // that talks past a 200, one that is not HTTP at all, and one whose status line
    // only looks like a 200.
    for (answer, expected) in [
        (
            "HTTP/1.1 403 Forbidden\r\nContent-Type: text/html\r\nContent-Length: 24\r\n\r\n<html>forbidden</html>\r\n",
            "the proxy refused the tunnel: HTTP 403",
        ),
        (
            "HTTP/1.0 407 Proxy Authentication Required\r\nContent-Length: 5\r\n\r\nlogin",
            "the proxy refused the tunnel: HTTP 407 (proxy authentication required)",
        ),
        (
            "HTTP/1.1 2000 OK\r\n\r\n",
            "the proxy's answer to CONNECT is not HTTP",
        ),
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
        t.post("http://127.0.0.1:9/poll?op=recv".into(), vec![], vec![]),
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
        t.post(format!("http://{addr}/poll"), vec![], vec![]),
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
            t.post(format!("http://{}/poll", server.addr), vec![], vec![]),
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

// What a hostile peer or a careless application may do to these options.

/// A config for `addr` with fast retries and the given connect timeout.
fn quick(addr: &str, connect_timeout: std::time::Duration) -> tether_core::Config {
    config(addr.parse().unwrap())
        .connect_timeout(connect_timeout)
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_rewrite_hook_that_panics_fails_the_attempt_at_once() {
    let echo = EchoServer::start().await;
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let transport = NativeTransport::new().rewrite(move |_: &mut Outgoing| {
        counted.fetch_add(1, Ordering::SeqCst);
        panic!("the application's hook is broken");
    });
    // A connect timeout far beyond the test's wait: only a failure reported at once
    // schedules the next attempt in time.
    let client = Client::builder(quick(
        &echo.addr.to_string(),
        std::time::Duration::from_secs(600),
    ))
    .transport(transport)
    .spawn()
    .unwrap();
    let mut events = client.events();
    next_event(&mut events, "a retry after the panic", |e| {
        matches!(e, Event::ReconnectScheduled { .. })
    })
    .await;
    assert!(calls.load(Ordering::SeqCst) >= 1);
    assert_eq!(echo.connections(), 0);
    client.close_now(1000, "done").await;
}

#[cfg(feature = "rustls")]
#[tokio::test]
async fn a_url_rewritten_to_wss_gets_tls() {
    // Records the first bytes the client sends.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut first = [0u8; 1];
        stream.read_exact(&mut first).await.unwrap();
        first[0]
    });
    let transport = NativeTransport::new().rewrite(|o: &mut Outgoing| {
        o.url = o.url.replacen("ws://", "wss://", 1);
    });
    let r = within(
        "connect",
        transport.connect(format!("ws://{addr}/ws"), vec![], vec![]),
    )
    .await;
    // The server never answers the handshake: the attempt fails, but only after the
    // client started TLS (a handshake record, 0x16) for the URL it was given.
    let first = within("the first byte", server).await.unwrap();
    assert_eq!(first, 0x16, "not a TLS record");
    assert!(r.is_err());
}

#[tokio::test]
async fn a_connector_that_never_answers_is_bounded_by_the_connect_timeout() {
    let transport = NativeTransport::new().connector(|_target: Target| async {
        std::future::pending::<std::io::Result<Dialed>>().await
    });
    let client = Client::builder(quick("127.0.0.1:9", std::time::Duration::from_millis(200)))
        .transport(transport)
        .spawn()
        .unwrap();
    let mut events = client.events();
    next_event(&mut events, "a retry after the timeout", |e| {
        matches!(e, Event::ReconnectScheduled { .. })
    })
    .await;
    client.close_now(1000, "done").await;
}

#[tokio::test]
async fn a_proxy_that_never_ends_its_answer_is_bounded() {
    // Too long: refused at 8 KiB, however slowly it comes.
    let huge: &'static str = Box::leak(
        format!(
            "HTTP/1.1 200 OK\r\n{}",
            "X-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n".repeat(400)
        )
        .into_boxed_str(),
    );
    let proxy = Recorder::start(huge).await;
    let t = NativeTransport::new().proxy(Proxy::http(&proxy.addr).unwrap());
    let r = within(
        "connect",
        t.connect("ws://127.0.0.1:9/ws".into(), vec![], vec![]),
    )
    .await;
    assert_eq!(
        r.err(),
        Some(TransportFailure::Network(
            "the proxy's answer to CONNECT is longer than 8 KiB".into()
        ))
    );

    // Never finished and never too long: the core's connect timeout ends the attempt.
    let silent = Recorder::start("HTTP/1.1 200 OK\r\n").await;
    let client = Client::builder(quick("127.0.0.1:9", std::time::Duration::from_millis(200)))
        .transport(NativeTransport::new().proxy(Proxy::http(&silent.addr).unwrap()))
        .spawn()
        .unwrap();
    let mut events = client.events();
    next_event(&mut events, "a retry after the timeout", |e| {
        matches!(e, Event::ReconnectScheduled { .. })
    })
    .await;
    client.close_now(1000, "done").await;
}

#[tokio::test]
async fn a_proxy_answering_byte_by_byte_still_tunnels() {
    let echo = EchoServer::start().await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy_addr = listener.local_addr().unwrap().to_string();
    let mut task = JoinSet::new();
    task.spawn(async move {
        let (mut client, _) = listener.accept().await.unwrap();
        let head = read_head(&mut client).await;
        let target = head.split(' ').nth(1).unwrap().to_owned();
        assert!(target.starts_with("127.0.0.1:"), "{target}");
        let mut server = TcpStream::connect(target).await.unwrap();
        for byte in b"HTTP/1.1 200 Connection established\r\n\r\n" {
            client.write_all(&[*byte]).await.unwrap();
            client.flush().await.unwrap();
            tokio::task::yield_now().await;
        }
        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
    });
    echo_round_trip(
        format!("ws://{}/ws", echo.addr),
        NativeTransport::new().proxy(Proxy::http(&proxy_addr).unwrap()),
    )
    .await;
}

/// Whatever a proxy answers, a failed poll through it names neither the proxy's user
/// and password nor the URL's token: plain HTTP (forwarded) and HTTPS (a tunnel).
/// (An answer that never ends is the core's to bound: its `request_timeout`.)
#[cfg(feature = "polling")]
#[tokio::test]
async fn proxy_credentials_never_show_in_polling_failures() {
    for answer in [
        "garbage that is not HTTP\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
        "HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n",
        "",
    ] {
        let proxy = Recorder::start_closing(answer).await;
        let t = NativeTransport::new()
            .proxy(Proxy::http(&format!("http://alice:hunter2@{}", proxy.addr)).unwrap());
        let schemes: &[&str] = if cfg!(feature = "rustls-webpki-roots") {
            &["http", "https"]
        } else {
            &["http"]
        };
        for scheme in schemes {
            let url = format!("{scheme}://127.0.0.1:9/poll?token=t0k3n");
            let r = within("poll", t.post(url, vec![], vec![])).await;
            let text = format!("{r:?}");
            assert!(r.is_err(), "{answer:?} {scheme}: {text}");
            for secret in ["hunter2", "alice", "t0k3n"] {
                assert!(!text.contains(secret), "{secret} in {text}");
            }
        }
        assert!(!format!("{t:?}").contains("hunter2"));
    }
}

/// Header injection, by every way in: the application's fixed headers, the rewrite
/// hook's headers and URL, and the core's own headers (a token with a line break). Each
/// fails before a byte is sent, with an error naming no value.
#[tokio::test]
async fn no_way_in_lets_a_line_break_or_a_reserved_header_onto_the_wire() {
    use tether_native::transport::HeaderError;

    for value in [
        "v\r\nInjected: 1",
        "v\nInjected: 1",
        "v\rX",
        "nul\0",
        "del\u{7f}",
    ] {
        assert_eq!(
            NativeTransport::new().header("X-A", value).err(),
            Some(HeaderError::InvalidValue("x-a".into())),
            "{value:?}"
        );
    }
    for name in ["", "X A", "X:A", "X-A\r\nInjected", "caf\u{e9}"] {
        assert_eq!(
            NativeTransport::new().header(name, "v").err(),
            Some(HeaderError::InvalidName),
            "{name:?}"
        );
    }
    for name in [
        "hOsT",
        "SEC-WEBSOCKET-VERSION",
        "Content-Type",
        "PROXY-AUTHORIZATION",
    ] {
        assert!(
            matches!(
                NativeTransport::new().header(name, "v").err(),
                Some(HeaderError::Reserved(_))
            ),
            "{name}"
        );
    }

    let server =
        Recorder::start("HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n").await;
    let ws = format!("ws://{}/ws", server.addr);
    type Hook = fn(&mut Outgoing);
    let hooks: [Hook; 3] = [
        |o| o.headers.push(("X-B".into(), "v\r\nHost: evil".into())),
        |o| o.headers.push(("hOsT".into(), "evil".into())),
        |o| o.url.push_str("\r\nHost: evil"),
    ];
    for hook in hooks {
        let t = NativeTransport::new().rewrite(hook);
        let r = within("connect", t.connect(ws.clone(), vec![], vec![])).await;
        let text = format!("{r:?}");
        assert!(r.is_err(), "{text}");
        assert!(!text.contains("evil"), "{text}");
        #[cfg(feature = "polling")]
        {
            let poll = format!("http://{}/poll", server.addr);
            let r = within("poll", t.post(poll, vec![], vec![])).await;
            assert!(!format!("{r:?}").contains("evil"), "{r:?}");
        }
    }
    let r = within(
        "connect",
        NativeTransport::new().connect(
            ws.clone(),
            vec![],
            vec![("Authorization".into(), "Bearer s3cr3t\r\nX-Evil: 1".into())],
        ),
    )
    .await;
    let text = format!("{r:?}");
    assert!(r.is_err() && !text.contains("s3cr3t"), "{text}");

    // Whatever reached the server (a poll whose URL the HTTP client cleaned up) carries
    // no injected line.
    for head in server.heads() {
        let lower = head.to_ascii_lowercase();
        assert!(!lower.contains("\r\nhost: evil"), "{head}");
        assert!(!lower.contains("x-evil"), "{head}");
        assert!(
            !head.starts_with("GET "),
            "a WebSocket attempt got through: {head}"
        );
    }
}

/// The proxy learns where the tunnel goes and the proxy's own credentials, nothing
/// else: not the token, not the application's headers, not the URL's path or query
/// (which may carry the token). An IPv6 target is bracketed.
#[tokio::test]
async fn the_connect_request_tells_the_proxy_only_the_target() {
    let proxy = Recorder::start("HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n").await;
    let t = NativeTransport::new()
        .header("X-Api-Key", "k-secret")
        .unwrap()
        .proxy(Proxy::http(&proxy.addr).unwrap());
    for (url, target) in [
        ("ws://[::1]:9/ws?access_token=t0k3n", "[::1]:9"),
        (
            "wss://Example.Test/ws?access_token=t0k3n",
            "Example.Test:443",
        ),
    ] {
        let r = within(
            "connect",
            t.connect(
                url.into(),
                vec![],
                vec![("Authorization".into(), "Bearer t0k3n".into())],
            ),
        )
        .await;
        assert_eq!(
            r.err(),
            Some(TransportFailure::Network(
                "the proxy refused the tunnel: HTTP 403".into()
            ))
        );
        let head = proxy.heads().pop().unwrap();
        assert_eq!(
            head,
            format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n")
        );
    }
}
