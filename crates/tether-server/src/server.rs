//! Listening, serving, and the server's life: start, freeze/thaw, drain, shutdown, kill.

use core::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::config::{ConfigError, ServerConfig};
use crate::drain::DrainPlan;
use crate::hub::Hub;
use crate::token::TokenAuthority;

/// Why the server did not start.
#[derive(Debug)]
#[non_exhaustive]
pub enum ServerError {
    /// The configuration is invalid.
    Config(ConfigError),
    /// The address could not be bound (in use, no permission, …).
    Bind(std::io::Error),
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerError::Config(e) => write!(f, "invalid configuration: {e}"),
            ServerError::Bind(e) => write!(f, "cannot listen: {e}"),
        }
    }
}

impl std::error::Error for ServerError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ServerError::Config(e) => Some(e),
            ServerError::Bind(e) => Some(e),
        }
    }
}

impl From<ConfigError> for ServerError {
    fn from(e: ConfigError) -> Self {
        ServerError::Config(e)
    }
}

/// A one-way flag tasks can wait on.
#[derive(Debug)]
pub(crate) struct Flag(watch::Sender<bool>);

impl Flag {
    fn new() -> Self {
        Flag(watch::Sender::new(false))
    }

    pub(crate) fn set(&self, value: bool) {
        self.0.send_replace(value);
    }

    pub(crate) fn get(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once the flag is `value`.
    pub(crate) async fn wait(&self, value: bool) {
        let mut rx = self.0.subscribe();
        // The sender lives as long as `self`, so this only ends when the value matches.
        let _ = rx.wait_for(|v| *v == value).await;
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<bool> {
        self.0.subscribe()
    }
}

/// Counts the tasks of one server so `shutdown` and `kill` can wait for them.
#[derive(Debug, Default)]
pub(crate) struct Tracker {
    count: AtomicUsize,
    idle: Notify,
}

/// Held by a tracked task; dropping it (even when the task is aborted) checks out.
pub(crate) struct TaskGuard(Arc<App>);

impl Drop for TaskGuard {
    fn drop(&mut self) {
        if self.0.tracker.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.tracker.idle.notify_waiters();
        }
    }
}

impl Tracker {
    async fn wait_idle(&self) {
        loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.count.load(Ordering::Acquire) == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// Everything a request handler or connection task of one running server shares.
#[derive(Debug)]
pub(crate) struct App {
    pub(crate) config: ServerConfig,
    pub(crate) hub: Arc<Hub>,
    pub(crate) tokens: TokenAuthority,
    /// One permit per open TCP connection ([`ServerConfig::max_connections`]).
    connections: Arc<Semaphore>,
    pub(crate) started: Instant,
    /// Graceful shutdown requested.
    pub(crate) shutdown: Flag,
    /// Kill requested: drop everything now.
    pub(crate) killed: Flag,
    /// Frozen: read and answer nothing.
    pub(crate) frozen: Flag,
    /// Draining: accept nothing new, send every client elsewhere ([`RunningServer::drain`]).
    pub(crate) draining: Flag,
    /// Set once, before `draining`.
    drain_plan: OnceLock<DrainPlan>,
    /// The listener is closed (the accept loop ended).
    listener_closed: Flag,
    tracker: Tracker,
}

impl App {
    /// Registers a task until the guard drops.
    pub(crate) fn track(self: &Arc<Self>) -> TaskGuard {
        self.tracker.count.fetch_add(1, Ordering::AcqRel);
        TaskGuard(Arc::clone(self))
    }

    /// Resolves when the server is not frozen.
    pub(crate) async fn thawed(&self) {
        self.frozen.wait(false).await;
    }

    /// While draining, the delay for the next client told to come back (spread over the
    /// drain window, see [`crate::drain`]); `None` when not draining.
    pub(crate) fn drain_delay(&self) -> Option<Duration> {
        self.drain_plan.get().map(DrainPlan::next_delay)
    }
}

/// The reference server. See [`Server::start`].
#[derive(Debug)]
pub struct Server;

impl Server {
    /// Validates `config`, binds `config.bind` and starts serving with `hub`'s state.
    /// Returns once the listener is bound, so [`RunningServer::addr`] is usable at once.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use tether_server::{Hub, Server, ServerConfig};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), tether_server::ServerError> {
    /// let mut config = ServerConfig::default();
    /// config.bind = "127.0.0.1:0".parse().expect("an address");
    /// let hub = Arc::new(Hub::new());
    ///
    /// let server = Server::start(config.clone(), Arc::clone(&hub)).await?;
    /// let addr = server.addr();
    /// server.kill().await; // as if the process died
    ///
    /// // Same port, same hub: clients resume their sessions.
    /// config.bind = addr;
    /// let server = Server::start(config, hub).await?;
    /// server.shutdown().await;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn start(config: ServerConfig, hub: Arc<Hub>) -> Result<RunningServer, ServerError> {
        config.validate()?;
        let listener = TcpListener::bind(config.bind)
            .await
            .map_err(ServerError::Bind)?;
        let addr = listener.local_addr().map_err(ServerError::Bind)?;
        if cleartext_exposed(addr, config.behind_tls) {
            warn!(
                %addr,
                "listening on a non-loopback address without TLS: tokens and messages \
                 cross the network in clear text; put a TLS proxy in front (and pass \
                 --behind-tls) or bind to 127.0.0.1"
            );
        }
        if config.dev_mode {
            warn!(
                "DEV MODE: clients without a token are ACCEPTED as anonymous dev-temp-<id> \
                 users; never run this in production"
            );
        }
        let app = Arc::new(App {
            tokens: config.token_authority(),
            connections: Arc::new(Semaphore::new(config.max_connections)),
            config,
            hub,
            started: Instant::now(),
            shutdown: Flag::new(),
            killed: Flag::new(),
            frozen: Flag::new(),
            draining: Flag::new(),
            drain_plan: OnceLock::new(),
            listener_closed: Flag::new(),
            tracker: Tracker::default(),
        });
        app.hub.configure(&app.config);
        let router = crate::http::router(Arc::clone(&app));
        let accept = tokio::spawn(accept_loop(Arc::clone(&app), listener, router));
        let sweeper = tokio::spawn(sweep_loop(Arc::clone(&app)));
        info!(%addr, "listening");
        Ok(RunningServer {
            addr,
            app,
            accept,
            sweeper,
        })
    }
}

/// A started server. Stop it with [`shutdown`](Self::shutdown) or
/// [`kill`](Self::kill); dropping it kills it.
///
/// ```
/// use std::sync::Arc;
/// use tether_server::{Hub, Server, ServerConfig};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), tether_server::ServerError> {
/// let mut config = ServerConfig::default();
/// config.bind = "127.0.0.1:0".parse().expect("an address");
/// let server = Server::start(config, Arc::new(Hub::new())).await?;
///
/// // Half-open, as a client sees it: connections stay up, nothing is answered, and a
/// // client's heartbeat should declare the socket dead.
/// server.freeze();
/// assert!(server.is_frozen());
/// server.thaw();
///
/// server.shutdown().await; // WebSockets get 1001
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct RunningServer {
    addr: SocketAddr,
    app: Arc<App>,
    accept: JoinHandle<()>,
    sweeper: JoinHandle<()>,
}

impl RunningServer {
    /// The address the server listens on (with the real port when bound to port 0).
    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The hub the server serves from.
    #[must_use]
    pub fn hub(&self) -> &Arc<Hub> {
        &self.app.hub
    }

    /// Stops reading and answering anything while keeping every TCP connection open
    /// (a half-open connection, as seen by clients). New requests are accepted by the
    /// kernel and left waiting. Timers on the server's side stop too.
    pub fn freeze(&self) {
        info!("frozen: reading and answering nothing");
        self.app.frozen.set(true);
    }

    /// Ends [`freeze`](Self::freeze): buffered frames and waiting requests are served.
    pub fn thaw(&self) {
        info!("thawed");
        self.app.hub.touch_polls();
        self.app.frozen.set(false);
    }

    /// Whether the server is frozen.
    #[must_use]
    pub fn is_frozen(&self) -> bool {
        self.app.frozen.get()
    }

    /// Graceful drain, for a rolling restart behind a load balancer: the listener
    /// closes (new connections are refused, so the balancer sends them to another
    /// instance), every WebSocket is closed with 1012 "service restart" after an
    /// `R <after_ms>` retry hint (protocol sockets that said Hello), held polls answer,
    /// and every poll or upgrade request still arriving on an open HTTP connection gets
    /// 503 with `Retry-After`. The hints are spread over `window` (see
    /// PROTOCOL.md, section 10) so the clients come back to the other instances a few at
    /// a time, not all at once. Sessions stay in the hub.
    ///
    /// Returns once every connection is gone, or after `window` plus
    /// [`ServerConfig::close_grace`] and half a second at most; `true` when every
    /// connection was gone. Then stop the server ([`shutdown`](Self::shutdown) closes
    /// what is left with 1001). A second call only waits again; the first window holds.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use tether_server::{Hub, Server, ServerConfig};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), tether_server::ServerError> {
    /// let mut config = ServerConfig::default();
    /// config.bind = "127.0.0.1:0".parse().expect("an address");
    /// let server = Server::start(config, Arc::new(Hub::new())).await?;
    /// // On SIGTERM: clients are told to come back within 10 s, to another instance.
    /// let all_gone = server.drain(Duration::from_secs(10)).await;
    /// assert!(all_gone);
    /// server.shutdown().await;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn drain(&self, window: Duration) -> bool {
        let window = self
            .app
            .drain_plan
            .get_or_init(|| {
                info!(addr = %self.addr, ?window, "draining");
                DrainPlan::new(window, crate::rand::u64())
            })
            .window();
        self.app.frozen.set(false);
        self.app.draining.set(true);
        let limit = window
            .saturating_add(self.app.config.close_grace)
            .saturating_add(Duration::from_millis(500));
        let gone = tokio::time::timeout(limit, async {
            // From here on connecting is refused: the balancer goes to the next instance.
            self.app.listener_closed.wait(true).await;
            self.app.tracker.wait_idle().await;
        })
        .await
        .is_ok();
        if gone {
            info!(addr = %self.addr, "drained: every connection is gone");
        } else {
            warn!(addr = %self.addr, "connections still open at the end of the drain window");
        }
        gone
    }

    /// Whether [`drain`](Self::drain) was called.
    #[must_use]
    pub fn is_draining(&self) -> bool {
        self.app.draining.get()
    }

    /// Graceful stop: the listener closes, every WebSocket is closed with 1001, held
    /// polls answer, and connections get [`ServerConfig::close_grace`] to finish before
    /// the rest is dropped. Sessions stay in the hub.
    pub async fn shutdown(mut self) {
        info!(addr = %self.addr, "shutting down");
        self.app.frozen.set(false);
        self.app.shutdown.set(true);
        let grace = self.app.config.close_grace;
        if tokio::time::timeout(
            grace + Duration::from_millis(500),
            self.app.tracker.wait_idle(),
        )
        .await
        .is_err()
        {
            warn!("connections still open after the grace period: dropping them");
        }
        self.stop_now().await;
    }

    /// Abrupt stop, as if the process died: the listener and every socket are dropped
    /// at once, without close frames or answers. Sessions stay in the hub.
    pub async fn kill(mut self) {
        info!(addr = %self.addr, "killed");
        self.stop_now().await;
    }

    async fn stop_now(&mut self) {
        self.app.killed.set(true);
        self.accept.abort();
        self.sweeper.abort();
        // Awaiting the aborted task makes sure the listener is closed on return.
        let _ = (&mut self.accept).await;
        if tokio::time::timeout(Duration::from_secs(5), self.app.tracker.wait_idle())
            .await
            .is_err()
        {
            warn!("some connection tasks did not stop");
        }
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        self.app.killed.set(true);
        self.accept.abort();
        self.sweeper.abort();
    }
}

async fn accept_loop(app: Arc<App>, listener: TcpListener, router: axum::Router) {
    serve_listener(&app, listener, router).await;
    app.listener_closed.set(true);
}

/// Accepts until the server stops or drains; the listener is closed on return.
async fn serve_listener(app: &Arc<App>, listener: TcpListener, router: axum::Router) {
    loop {
        let accepted = tokio::select! {
            biased;
            () = app.killed.wait(true) => break,
            () = app.shutdown.wait(true) => break,
            () = app.draining.wait(true) => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // Past the cap the connection is closed at once: a flood of idle or half-sent
        // requests cannot take every file descriptor.
        let Ok(permit) = Arc::clone(&app.connections).try_acquire_owned() else {
            debug!(%peer, "connection cap reached: connection closed");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let guard = app.track();
        let app = Arc::clone(app);
        // The permit lives as long as the connection, an upgraded WebSocket included:
        // each request carries it to its handler.
        let slot = ConnSlot(Arc::new(permit));
        let service = TowerToHyperService::new(tower::ServiceExt::map_request(
            router.clone(),
            move |mut request: axum::extract::Request<hyper::body::Incoming>| {
                request.extensions_mut().insert(slot.clone());
                request
            },
        ));
        tokio::spawn(async move {
            let _guard = guard;
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(app.config.header_read_timeout)
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            tokio::pin!(conn);
            tokio::select! {
                biased;
                () = app.killed.wait(true) => return,
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        debug!(%peer, error = %e, "http connection ended with an error");
                    }
                    return;
                }
                () = app.shutdown.wait(true) => conn.as_mut().graceful_shutdown(),
                // Keep-alive connections end after their current request, so the
                // client's next one goes through the balancer to another instance.
                () = app.draining.wait(true) => conn.as_mut().graceful_shutdown(),
            }
            tokio::select! {
                biased;
                () = app.killed.wait(true) => {}
                _ = conn.as_mut() => {}
            }
        });
    }
    debug!("listener closed");
}

/// Whether the server is reachable beyond this machine with nothing saying TLS is in
/// front of it (a warning at start).
fn cleartext_exposed(addr: SocketAddr, behind_tls: bool) -> bool {
    !addr.ip().is_loopback() && !behind_tls
}

/// Held while a TCP connection (or the WebSocket it became) is open.
#[derive(Clone, Debug)]
pub(crate) struct ConnSlot(#[allow(dead_code)] Arc<OwnedSemaphorePermit>);

async fn sweep_loop(app: Arc<App>) {
    let mut tick = tokio::time::interval(app.config.sweep_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if app.frozen.get() {
            continue;
        }
        app.hub.sweep(app.config.idle_limit, app.config.session_ttl);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_non_loopback_addresses_without_tls_are_exposed() {
        let any: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        let public: SocketAddr = "[2001:db8::1]:443".parse().unwrap();
        let local: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let local6: SocketAddr = "[::1]:8080".parse().unwrap();
        assert!(cleartext_exposed(any, false));
        assert!(cleartext_exposed(public, false));
        assert!(!cleartext_exposed(any, true));
        assert!(!cleartext_exposed(local, false));
        assert!(!cleartext_exposed(local6, false));
    }
}
