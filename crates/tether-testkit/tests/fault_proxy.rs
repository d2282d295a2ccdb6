//! FaultProxy against an in-test echo server, every wait bounded.

use std::future::Future;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::time::Duration;

use tether_testkit::{FaultProxy, Mode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{timeout, Instant};

/// Generous: only reached when something is broken.
const PATIENCE: Duration = Duration::from_secs(10);
/// How long "nothing arrives" is watched for.
const QUIET: Duration = Duration::from_millis(300);

async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    timeout(PATIENCE, future)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

/// Echoes every connection until EOF, then closes its side.
async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut read, mut write) = socket.split();
                if tokio::io::copy(&mut read, &mut write).await.is_ok() {
                    let _ = write.shutdown().await;
                }
            });
        }
    });
    addr
}

async fn proxy() -> FaultProxy {
    FaultProxy::start(echo_server().await).unwrap()
}

async fn connect(proxy: &FaultProxy) -> TcpStream {
    within("connect", TcpStream::connect(proxy.addr()))
        .await
        .unwrap()
}

async fn round_trip(stream: &mut TcpStream, message: &[u8]) {
    stream.write_all(message).await.unwrap();
    let mut echoed = vec![0; message.len()];
    within("echo", stream.read_exact(&mut echoed))
        .await
        .unwrap();
    assert_eq!(echoed, message);
}

/// Echoes `len` bytes, writing and reading at once so neither side's buffers cap it.
async fn echo_bulk(stream: &mut TcpStream, len: usize) {
    let sent: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
    let (mut read, mut write) = stream.split();
    let mut received = vec![0; len];
    let (written, read) = within("bulk echo", async {
        tokio::join!(write.write_all(&sent), read.read_exact(&mut received))
    })
    .await;
    written.unwrap();
    read.unwrap();
    assert!(received == sent, "bulk echo corrupted or reordered");
}

/// The proxy reset the connection (RST).
async fn assert_reset(stream: &mut TcpStream) {
    let mut buf = [0; 16];
    let read = within("reset", stream.read(&mut buf)).await;
    assert_eq!(read.unwrap_err().kind(), ErrorKind::ConnectionReset);
}

/// The proxy closed the connection, by FIN or RST.
async fn assert_closed(stream: &mut TcpStream) {
    let mut buf = [0; 16];
    match within("close", stream.read(&mut buf)).await {
        Ok(0) => {}
        Err(error) => assert_eq!(error.kind(), ErrorKind::ConnectionReset),
        Ok(n) => panic!("read {n} bytes from a connection that should be closed"),
    }
}

async fn assert_silent(stream: &mut TcpStream) {
    let mut buf = [0; 16];
    if let Ok(read) = timeout(QUIET, stream.read(&mut buf)).await {
        panic!("a stalled connection returned {read:?}");
    }
}

#[tokio::test]
async fn pass_echoes_counts_and_forwards_close() {
    let proxy = proxy().await;
    let mut first = connect(&proxy).await;
    round_trip(&mut first, b"hello").await;
    let mut second = connect(&proxy).await;
    round_trip(&mut second, b"again").await;
    assert_eq!((proxy.connections(), proxy.total_accepted()), (2, 2));
    echo_bulk(&mut second, 3 << 20).await;

    first.shutdown().await.unwrap();
    let mut rest = Vec::new();
    within("forwarded close", first.read_to_end(&mut rest))
        .await
        .unwrap();
    assert!(rest.is_empty());
}

#[tokio::test]
async fn delay_adds_at_least_the_delay_each_way() {
    let delay = Duration::from_millis(100);
    let proxy = proxy().await;
    let mut client = connect(&proxy).await;
    proxy.set_mode(Mode::Delay(delay)).await.unwrap();

    let started = Instant::now();
    round_trip(&mut client, b"slow").await;
    assert!(started.elapsed() >= 2 * delay, "{:?}", started.elapsed());
    echo_bulk(&mut client, 3 << 20).await;
}

#[tokio::test]
async fn stall_holds_bytes_until_pass() {
    let proxy = proxy().await;
    let mut old = connect(&proxy).await;
    round_trip(&mut old, b"before").await;

    proxy.set_mode(Mode::Stall).await.unwrap();
    old.write_all(b"held").await.unwrap();
    assert_silent(&mut old).await;
    let mut new = connect(&proxy).await;
    new.write_all(b"new").await.unwrap();
    assert_silent(&mut new).await;

    // Stalled bytes were buffered, and go through in order once passing again.
    proxy.set_mode(Mode::Pass).await.unwrap();
    let mut held = [0; 4];
    within("held bytes", old.read_exact(&mut held))
        .await
        .unwrap();
    assert_eq!(&held, b"held");
    let mut held = [0; 3];
    within("held bytes", new.read_exact(&mut held))
        .await
        .unwrap();
    assert_eq!(&held, b"new");
    round_trip(&mut new, b"after").await;
}

#[tokio::test]
async fn reset_resets_existing_and_new_connections() {
    let proxy = proxy().await;
    let mut old = connect(&proxy).await;
    round_trip(&mut old, b"hi").await;

    proxy.set_mode(Mode::Reset).await.unwrap();
    assert_reset(&mut old).await;
    let mut new = connect(&proxy).await;
    assert_reset(&mut new).await;
    assert_eq!(proxy.total_accepted(), 2);
}

#[tokio::test]
async fn reset_all_resets_once_and_keeps_the_mode() {
    let proxy = proxy().await;
    let mut old = connect(&proxy).await;
    round_trip(&mut old, b"hi").await;

    proxy.reset_all();
    assert_reset(&mut old).await;
    assert_eq!(proxy.mode(), Mode::Pass);
    let mut new = connect(&proxy).await;
    round_trip(&mut new, b"still passing").await;
}

#[tokio::test]
async fn refuse_then_pass_listens_on_the_same_port() {
    let proxy = proxy().await;
    let addr = proxy.addr();
    let mut old = connect(&proxy).await;
    round_trip(&mut old, b"hi").await;

    proxy.set_mode(Mode::Refuse).await.unwrap();
    let refused = within("refusal", TcpStream::connect(addr)).await;
    assert_eq!(refused.unwrap_err().kind(), ErrorKind::ConnectionRefused);
    assert_reset(&mut old).await;

    proxy.set_mode(Mode::Pass).await.unwrap();
    assert_eq!(proxy.addr(), addr);
    let mut new = connect(&proxy).await;
    round_trip(&mut new, b"back").await;
}

#[tokio::test]
async fn shutdown_leaves_no_listener_and_closes_connections() {
    let proxy = proxy().await;
    let addr = proxy.addr();
    let mut client = connect(&proxy).await;
    round_trip(&mut client, b"hi").await;

    within("shutdown", proxy.shutdown()).await;
    let refused = within("refusal", TcpStream::connect(addr)).await;
    assert_eq!(refused.unwrap_err().kind(), ErrorKind::ConnectionRefused);
    assert_closed(&mut client).await;
}

#[tokio::test]
async fn drop_ends_every_connection_task() {
    let proxy = proxy().await;
    let mut client = connect(&proxy).await;
    round_trip(&mut client, b"hi").await;

    drop(proxy);
    assert_closed(&mut client).await;
}
