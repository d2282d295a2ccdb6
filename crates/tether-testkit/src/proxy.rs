use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::{JoinHandle, JoinSet};
use tracing::{debug, warn};

use crate::connection;
use crate::Mode;

const BACKLOG: u32 = 128;

/// A loopback TCP proxy that forwards to one upstream address and injects the
/// faults described by [`Mode`].
///
/// It listens on `127.0.0.1` on a port of its own. [`shutdown`](Self::shutdown)
/// or dropping it stops the listener and every connection task; none outlives it.
///
/// ```
/// use tether_testkit::{FaultProxy, Mode};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// let server = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// let proxy = FaultProxy::start(server.local_addr()?)?;
/// let client = tokio::net::TcpStream::connect(proxy.addr()).await?;
/// proxy.set_mode(Mode::Reset).await?; // `client` now reads a connection reset
/// # drop(client);
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    commands: mpsc::UnboundedSender<Command>,
    supervisor: JoinHandle<()>,
}

/// What connection tasks watch: the mode, and how many times `reset_all` was called.
#[derive(Clone, Copy, Debug)]
pub(crate) struct State {
    pub(crate) mode: Mode,
    pub(crate) resets: u64,
}

#[derive(Debug)]
struct Shared {
    state: watch::Sender<State>,
    live: AtomicUsize,
    accepted: AtomicU64,
}

#[derive(Debug)]
enum Command {
    SetMode(Mode, oneshot::Sender<io::Result<()>>),
    Shutdown,
}

impl FaultProxy {
    /// Starts a proxy in [`Mode::Pass`] on `127.0.0.1` (a free port) forwarding to
    /// `upstream`, which must be a loopback address.
    ///
    /// Must be called within a Tokio runtime.
    ///
    /// ```
    /// use tether_testkit::FaultProxy;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// let server = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    /// let proxy = FaultProxy::start(server.local_addr()?)?;
    /// assert!(FaultProxy::start("192.0.2.1:80".parse().unwrap()).is_err());
    /// # Ok(())
    /// # }
    /// ```
    pub fn start(upstream: SocketAddr) -> io::Result<Self> {
        if !upstream.ip().is_loopback() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("fault proxy upstream {upstream} is not a loopback address"),
            ));
        }
        let listener = bind_reusable((Ipv4Addr::LOCALHOST, 0).into())?.listen(BACKLOG)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            state: watch::Sender::new(State {
                mode: Mode::Pass,
                resets: 0,
            }),
            live: AtomicUsize::new(0),
            accepted: AtomicU64::new(0),
        });
        let (commands, receiver) = mpsc::unbounded_channel();
        let supervisor = tokio::spawn(supervise(
            listener,
            addr,
            upstream,
            Arc::clone(&shared),
            receiver,
        ));
        debug!(%addr, %upstream, "fault proxy started");
        Ok(Self {
            addr,
            shared,
            commands,
            supervisor,
        })
    }

    /// The address clients connect to; it stays the same across [`Mode::Refuse`].
    ///
    /// ```
    /// # use tether_testkit::FaultProxy;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// # let server = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    /// let proxy = FaultProxy::start(server.local_addr()?)?;
    /// assert!(proxy.addr().ip().is_loopback());
    /// # Ok(())
    /// # }
    /// ```
    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The current mode.
    ///
    /// ```
    /// # use tether_testkit::{FaultProxy, Mode};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// # let server = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    /// let proxy = FaultProxy::start(server.local_addr()?)?;
    /// assert_eq!(proxy.mode(), Mode::Pass);
    /// # Ok(())
    /// # }
    /// ```
    #[must_use]
    pub fn mode(&self) -> Mode {
        self.shared.state.borrow().mode
    }

    /// Switches to `mode` for existing and new connections.
    ///
    /// On return the listener reflects the mode (connects are refused in
    /// [`Mode::Refuse`] and accepted otherwise); connection tasks apply it as soon
    /// as they are scheduled. Fails, staying in `Refuse`, if the port cannot be
    /// listened on again.
    ///
    /// ```
    /// # use tether_testkit::{FaultProxy, Mode};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// # let server = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    /// let proxy = FaultProxy::start(server.local_addr()?)?;
    /// proxy.set_mode(Mode::Refuse).await?;
    /// let refused = tokio::net::TcpStream::connect(proxy.addr()).await.unwrap_err();
    /// assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
    /// proxy.set_mode(Mode::Pass).await?;
    /// tokio::net::TcpStream::connect(proxy.addr()).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn set_mode(&self, mode: Mode) -> io::Result<()> {
        let (done, applied) = oneshot::channel();
        let stopped = || io::Error::other("fault proxy stopped");
        self.commands
            .send(Command::SetMode(mode, done))
            .map_err(|_| stopped())?;
        applied.await.map_err(|_| stopped())?
    }

    /// Resets (RST) every existing connection once, keeping the mode.
    ///
    /// ```
    /// # use tether_testkit::FaultProxy;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// # let server = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    /// let proxy = FaultProxy::start(server.local_addr()?)?;
    /// proxy.reset_all(); // a server restart, as clients see it
    /// # Ok(())
    /// # }
    /// ```
    pub fn reset_all(&self) {
        debug!(addr = %self.addr, "resetting all connections");
        self.shared.state.send_modify(|state| state.resets += 1);
    }

    /// How many proxied connections are open now (accepted and not yet closed or
    /// reset).
    ///
    /// ```
    /// # use tether_testkit::FaultProxy;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// # let server = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    /// let proxy = FaultProxy::start(server.local_addr()?)?;
    /// assert_eq!(proxy.connections(), 0);
    /// # Ok(())
    /// # }
    /// ```
    #[must_use]
    pub fn connections(&self) -> usize {
        self.shared.live.load(Ordering::SeqCst)
    }

    /// How many connections have been accepted since the start, including those
    /// reset on accept in [`Mode::Reset`].
    ///
    /// ```
    /// # use tether_testkit::FaultProxy;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// # let server = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    /// let proxy = FaultProxy::start(server.local_addr()?)?;
    /// assert_eq!(proxy.total_accepted(), 0);
    /// # Ok(())
    /// # }
    /// ```
    #[must_use]
    pub fn total_accepted(&self) -> u64 {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// Stops listening and closes every connection, returning once all of the
    /// proxy's tasks have ended. Dropping the proxy does the same without waiting.
    ///
    /// ```
    /// # use tether_testkit::FaultProxy;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// # let server = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    /// let proxy = FaultProxy::start(server.local_addr()?)?;
    /// let addr = proxy.addr();
    /// proxy.shutdown().await;
    /// assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    /// # Ok(())
    /// # }
    /// ```
    pub async fn shutdown(mut self) {
        let _ = self.commands.send(Command::Shutdown);
        let _ = (&mut self.supervisor).await;
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        // Dropping the supervisor's future drops its JoinSet, which aborts the
        // connection tasks.
        self.supervisor.abort();
    }
}

/// Counts a connection as live for as long as its task holds this.
pub(crate) struct LiveGuard(Arc<Shared>);

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.0.live.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Accepts connections and applies mode changes to the listener; owns the
/// connection tasks.
async fn supervise(
    listener: TcpListener,
    addr: SocketAddr,
    upstream: SocketAddr,
    shared: Arc<Shared>,
    mut commands: mpsc::UnboundedReceiver<Command>,
) {
    let mut port = Port::Listening(listener);
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            command = commands.recv() => match command {
                Some(Command::SetMode(mode, done)) => {
                    let switched = port.switch(mode, addr);
                    if switched.is_ok() {
                        debug!(%addr, ?mode, "mode set");
                        shared.state.send_modify(|state| state.mode = mode);
                    }
                    let _ = done.send(switched);
                }
                Some(Command::Shutdown) | None => break,
            },
            accepted = port.accept() => match accepted {
                Ok((client, peer)) => {
                    shared.accepted.fetch_add(1, Ordering::SeqCst);
                    if shared.state.borrow().mode == Mode::Reset {
                        debug!(%peer, "reset on accept");
                        connection::reset(&client);
                    } else {
                        debug!(%peer, "accepted");
                        shared.live.fetch_add(1, Ordering::SeqCst);
                        let live = LiveGuard(Arc::clone(&shared));
                        let state = shared.state.subscribe();
                        connections.spawn(connection::run(client, upstream, state, live));
                    }
                }
                Err(error) => warn!(%addr, %error, "accept failed"),
            },
            Some(_) = connections.join_next() => {}
        }
    }
    connections.shutdown().await;
    debug!(%addr, "fault proxy stopped");
}

/// The proxy's port: listening, or held by a bound socket that does not listen.
enum Port {
    Listening(TcpListener),
    Reserved(Option<TcpSocket>),
}

impl Port {
    async fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        match self {
            Port::Listening(listener) => listener.accept().await,
            Port::Reserved(_) => std::future::pending().await,
        }
    }

    fn switch(&mut self, mode: Mode, addr: SocketAddr) -> io::Result<()> {
        match (mode, &mut *self) {
            (Mode::Refuse, Port::Listening(_)) => {
                // Close the listener first: a port cannot be bound again while a
                // socket listens on it.
                *self = Port::Reserved(None);
                let reserved = bind_reusable(addr)
                    .inspect_err(|error| warn!(%addr, %error, "cannot reserve the port"));
                *self = Port::Reserved(reserved.ok());
            }
            (Mode::Refuse, Port::Reserved(_)) | (_, Port::Listening(_)) => {}
            (_, Port::Reserved(socket)) => {
                let socket = match socket.take() {
                    Some(socket) => socket,
                    None => bind_reusable(addr)?,
                };
                *self = Port::Listening(socket.listen(BACKLOG)?);
            }
        }
        Ok(())
    }
}

/// SO_REUSEADDR lets the port be bound again while connections accepted on it
/// (which inherit the option) or their TIME_WAIT remnants still exist.
fn bind_reusable(addr: SocketAddr) -> io::Result<TcpSocket> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    Ok(socket)
}
