//! [`Balancer`]: a round-robin loopback TCP load balancer for multi-instance tests.
//!
//! ```text
//!   accept ──► next upstream in turn ──connect──► ok: bytes copied both ways until
//!                  ▲   (down ones skipped)   │         either side closes
//!                  └──── refused / timeout ──┘    tried at most once per upstream;
//!                                                 none left: the client is closed
//! ```

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use tracing::debug;

/// How long one upstream gets to accept a connection before the next is tried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// A loopback TCP load balancer: each new connection goes to the next upstream in
/// round-robin order. An upstream marked down is skipped; one that refuses the
/// connection (or does not answer within 2 s) is skipped for that connection and the
/// next is tried, each at most once; when none takes it the client's connection is
/// closed. The upstreams can be changed at any time (a rolling restart): a change
/// applies to new connections, and connections already made stay up.
///
/// It listens on `127.0.0.1` on a free port. [`stop`](Self::stop) or dropping it closes
/// the listener and every connection; none outlives it.
///
/// ```
/// use tether_testkit::Balancer;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// let a = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// let b = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// let balancer = Balancer::start([a.local_addr()?, b.local_addr()?]).await?;
/// // Point clients at `balancer.addr()`; during a rolling restart:
/// balancer.set_down(a.local_addr()?, true);
/// balancer.set_down(a.local_addr()?, false);
/// balancer.stop().await;
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Balancer {
    addr: SocketAddr,
    pool: Arc<Mutex<Pool>>,
    task: JoinHandle<()>,
}

/// One upstream and what the balancer knows of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Upstream {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Marked down: skipped without trying.
    pub down: bool,
    /// Connections it took through this balancer.
    pub connections: u64,
}

#[derive(Debug, Default)]
struct Pool {
    upstreams: Vec<Upstream>,
    /// Index of the upstream next in turn.
    next: usize,
}

impl Pool {
    /// The next upstream in turn that is not down, moving the turn past it; `None` when
    /// every one is down.
    fn take_turn(&mut self) -> Option<SocketAddr> {
        let n = self.upstreams.len();
        for _ in 0..n {
            let i = self.next % n;
            self.next = (i + 1) % n;
            if !self.upstreams[i].down {
                return Some(self.upstreams[i].addr);
            }
        }
        None
    }

    fn find(&mut self, addr: SocketAddr) -> Option<&mut Upstream> {
        self.upstreams.iter_mut().find(|u| u.addr == addr)
    }
}

fn lock(pool: &Mutex<Pool>) -> std::sync::MutexGuard<'_, Pool> {
    pool.lock().unwrap_or_else(PoisonError::into_inner)
}

fn not_loopback(addr: SocketAddr) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("balancer upstream {addr} is not a loopback address"),
    )
}

impl Balancer {
    /// Starts a balancer on `127.0.0.1` (a free port) over `upstreams`, in that order;
    /// each must be a loopback address. The list may be empty (connections are then
    /// closed until one is [added](Self::add)).
    ///
    /// Must be called within a Tokio runtime.
    ///
    /// ```
    /// use tether_testkit::Balancer;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// assert!(Balancer::start(["192.0.2.1:80".parse().unwrap()]).await.is_err());
    /// let balancer = Balancer::start([]).await?;
    /// assert!(balancer.upstreams().is_empty());
    /// # Ok(())
    /// # }
    /// ```
    pub async fn start(upstreams: impl IntoIterator<Item = SocketAddr>) -> io::Result<Self> {
        let mut pool = Pool::default();
        for addr in upstreams {
            if !addr.ip().is_loopback() {
                return Err(not_loopback(addr));
            }
            if !pool.upstreams.iter().any(|u| u.addr == addr) {
                pool.upstreams.push(Upstream {
                    addr,
                    down: false,
                    connections: 0,
                });
            }
        }
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let pool = Arc::new(Mutex::new(pool));
        let task = tokio::spawn(accept_loop(listener, Arc::clone(&pool)));
        debug!(%addr, "balancer started");
        Ok(Balancer { addr, pool, task })
    }

    /// The address clients connect to.
    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The upstreams in their round-robin order, with their state.
    #[must_use]
    pub fn upstreams(&self) -> Vec<Upstream> {
        lock(&self.pool).upstreams.clone()
    }

    /// Adds an upstream at the end of the order (up); adding one already there changes
    /// nothing. A non-loopback address is refused.
    ///
    /// ```
    /// # use tether_testkit::Balancer;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// let balancer = Balancer::start([]).await?;
    /// balancer.add("127.0.0.1:9".parse().unwrap())?;
    /// assert!(balancer.remove("127.0.0.1:9".parse().unwrap()));
    /// # Ok(())
    /// # }
    /// ```
    pub fn add(&self, addr: SocketAddr) -> io::Result<()> {
        if !addr.ip().is_loopback() {
            return Err(not_loopback(addr));
        }
        let mut pool = lock(&self.pool);
        if pool.find(addr).is_none() {
            pool.upstreams.push(Upstream {
                addr,
                down: false,
                connections: 0,
            });
        }
        Ok(())
    }

    /// Removes an upstream from the order (its open connections stay up); whether it
    /// was there.
    pub fn remove(&self, addr: SocketAddr) -> bool {
        let mut pool = lock(&self.pool);
        let before = pool.upstreams.len();
        pool.upstreams.retain(|u| u.addr != addr);
        let n = pool.upstreams.len();
        if n > 0 {
            pool.next %= n;
        } else {
            pool.next = 0;
        }
        n != before
    }

    /// Marks an upstream down (skipped by new connections, its open ones stay up) or up
    /// again; whether it is one of the upstreams.
    pub fn set_down(&self, addr: SocketAddr, down: bool) -> bool {
        match lock(&self.pool).find(addr) {
            Some(u) => {
                u.down = down;
                true
            }
            None => false,
        }
    }

    /// Stops the balancer: the listener and every connection through it are closed when
    /// this returns.
    pub async fn stop(mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
        debug!(addr = %self.addr, "balancer stopped");
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Owns the listener and, in a `JoinSet`, every connection: aborting it ends them all.
async fn accept_loop(listener: TcpListener, pool: Arc<Mutex<Pool>>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((client, peer)) => {
                    connections.spawn(serve(client, peer, Arc::clone(&pool)));
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    debug!(error = %e, "balancer accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn serve(mut client: TcpStream, peer: SocketAddr, pool: Arc<Mutex<Pool>>) {
    let tries = lock(&pool).upstreams.len();
    for _ in 0..tries {
        let Some(addr) = lock(&pool).take_turn() else {
            break;
        };
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
            Ok(Ok(mut upstream)) => {
                if let Some(u) = lock(&pool).find(addr) {
                    u.connections += 1;
                }
                let _ = client.set_nodelay(true);
                let _ = upstream.set_nodelay(true);
                debug!(%peer, upstream = %addr, "balanced");
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                return;
            }
            Ok(Err(e)) => debug!(upstream = %addr, error = %e, "upstream refused: next"),
            Err(_) => debug!(upstream = %addr, "upstream did not answer: next"),
        }
    }
    debug!(%peer, "no upstream took the connection: closed");
}
