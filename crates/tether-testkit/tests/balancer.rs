//! Balancer against in-test upstreams that name themselves, every wait bounded.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use tether_testkit::Balancer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;

/// Generous: only reached when something is broken.
const PATIENCE: Duration = Duration::from_secs(10);

async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    timeout(PATIENCE, future)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

/// An upstream that writes its `name` on every connection, then echoes until EOF.
async fn upstream(name: u8) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                if socket.write_all(&[name]).await.is_err() {
                    return;
                }
                let (mut read, mut write) = socket.split();
                let _ = tokio::io::copy(&mut read, &mut write).await;
            });
        }
    });
    addr
}

/// An address where nothing listens: connecting is refused.
async fn dead() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

/// Connects through the balancer and returns the name of the upstream reached (and the
/// open stream).
async fn reach(balancer: &Balancer) -> (u8, TcpStream) {
    let mut stream = within("connect", TcpStream::connect(balancer.addr()))
        .await
        .unwrap();
    let mut name = [0u8; 1];
    within("the upstream's name", stream.read_exact(&mut name))
        .await
        .unwrap();
    (name[0], stream)
}

async fn names(balancer: &Balancer, n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(reach(balancer).await.0);
    }
    out
}

#[tokio::test]
async fn connections_go_round_robin_and_bytes_pass_both_ways() {
    let ups = [upstream(0).await, upstream(1).await, upstream(2).await];
    let balancer = Balancer::start(ups).await.unwrap();
    assert_eq!(names(&balancer, 7).await, [0, 1, 2, 0, 1, 2, 0]);

    let (_, mut stream) = reach(&balancer).await;
    stream.write_all(b"through").await.unwrap();
    let mut echoed = [0u8; 7];
    within("echo", stream.read_exact(&mut echoed))
        .await
        .unwrap();
    assert_eq!(&echoed, b"through");

    let counts: Vec<u64> = balancer.upstreams().iter().map(|u| u.connections).collect();
    assert_eq!(counts, [3, 3, 2]);
    balancer.stop().await;
}

#[tokio::test]
async fn an_upstream_that_refuses_is_skipped_and_the_rotation_stays_fair() {
    let (a, gone, c) = (upstream(0).await, dead().await, upstream(2).await);
    let balancer = Balancer::start([a, gone, c]).await.unwrap();
    assert_eq!(names(&balancer, 6).await, [0, 2, 0, 2, 0, 2]);
    let taken: Vec<u64> = balancer.upstreams().iter().map(|u| u.connections).collect();
    assert_eq!(taken, [3, 0, 3]);
}

#[tokio::test]
async fn upstreams_change_at_runtime_and_open_connections_stay_up() {
    let (a, b) = (upstream(0).await, upstream(1).await);
    let balancer = Balancer::start([a, b]).await.unwrap();
    let (first, mut on_a) = reach(&balancer).await;
    assert_eq!(first, 0);

    // A rolling restart of `a`: marked down, then back; `c` added, `b` removed.
    assert!(balancer.set_down(a, true));
    assert_eq!(names(&balancer, 3).await, [1, 1, 1]);
    let c = upstream(2).await;
    balancer.add(c).unwrap();
    balancer.add(c).unwrap(); // already there: nothing changes
    assert_eq!(balancer.upstreams().len(), 3);
    assert!(balancer.set_down(a, false));
    assert!(balancer.remove(b));
    assert!(!balancer.remove(b));
    assert!(!balancer.set_down(b, true));
    let got = names(&balancer, 4).await;
    assert_eq!(got.iter().filter(|&&n| n == 0).count(), 2, "{got:?}");
    assert_eq!(got.iter().filter(|&&n| n == 2).count(), 2, "{got:?}");

    // The connection made before all this still reaches `a`.
    on_a.write_all(b"x").await.unwrap();
    let mut echoed = [0u8; 1];
    within("echo on the old connection", on_a.read_exact(&mut echoed))
        .await
        .unwrap();
    assert_eq!(&echoed, b"x");
    assert!(balancer.add("192.0.2.1:80".parse().unwrap()).is_err());
}

#[tokio::test]
async fn with_no_upstream_taking_it_a_connection_is_closed() {
    let balancer = Balancer::start([dead().await, dead().await]).await.unwrap();
    let mut stream = within("connect", TcpStream::connect(balancer.addr()))
        .await
        .unwrap();
    let mut buf = [0u8; 1];
    let read = within("the close", stream.read(&mut buf)).await;
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");

    let a = upstream(0).await;
    balancer.add(a).unwrap();
    balancer.set_down(a, true);
    let mut stream = TcpStream::connect(balancer.addr()).await.unwrap();
    let read = within("the close", stream.read(&mut buf)).await;
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "every upstream down: {read:?}"
    );
}

#[tokio::test]
async fn stopping_closes_the_listener_and_every_connection() {
    let balancer = Balancer::start([upstream(0).await]).await.unwrap();
    let addr = balancer.addr();
    let (_, mut stream) = reach(&balancer).await;
    balancer.stop().await;
    let mut buf = [0u8; 1];
    let read = within("the close", stream.read(&mut buf)).await;
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    assert!(TcpStream::connect(addr).await.is_err(), "nothing listens");
}
