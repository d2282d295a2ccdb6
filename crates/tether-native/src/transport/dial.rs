//! The byte stream under a WebSocket: direct TCP, a `CONNECT` tunnel through a proxy, or
//! whatever the application's connector opens (a Unix socket, a custom TLS stack).

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;

use tether_core::TransportFailure;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use super::failure;
use super::proxy::Proxy;
use super::tls::Tls;

/// A byte stream a WebSocket can run over: anything tokio can read and write.
pub trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Stream for T {}

/// Where a socket is to be opened: what a [`super::NativeTransport::connector`] is asked
/// for, each attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Target {
    /// The URL's host (an IPv6 address without brackets).
    pub host: String,
    /// The URL's port, or the scheme's (80, 443).
    pub port: u16,
    /// `wss://`: the stream must carry TLS, Tether's ([`Dialed::plain`]) or the
    /// connector's own ([`Dialed::secured`]).
    pub secure: bool,
}

/// What a connector opened.
pub struct Dialed {
    stream: Box<dyn Stream>,
    secured: bool,
}

impl Dialed {
    /// A stream without TLS: for a `wss://` URL, Tether's TLS (the transport's rustls or
    /// native-tls settings) runs over it, with the URL's host as the server name.
    pub fn plain(stream: impl Stream + 'static) -> Dialed {
        Dialed {
            stream: Box::new(stream),
            secured: false,
        }
    }

    /// A stream that is already what the WebSocket runs over: the connector did the TLS
    /// itself (a custom TLS stack), or the URL is `ws://`.
    pub fn secured(stream: impl Stream + 'static) -> Dialed {
        Dialed {
            stream: Box::new(stream),
            secured: true,
        }
    }
}

impl fmt::Debug for Dialed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dialed")
            .field("secured", &self.secured)
            .finish_non_exhaustive()
    }
}

type DialFuture = Pin<Box<dyn Future<Output = io::Result<Dialed>> + Send>>;

/// The application's connector.
#[derive(Clone)]
pub(crate) struct Connector(Arc<dyn Fn(Target) -> DialFuture + Send + Sync>);

impl Connector {
    pub(crate) fn new<F, Fut>(connect: F) -> Connector
    where
        F: Fn(Target) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = io::Result<Dialed>> + Send + 'static,
    {
        Connector(Arc::new(move |target| Box::pin(connect(target))))
    }
}

impl fmt::Debug for Connector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Connector(..)")
    }
}

/// How sockets are opened: the connector if there is one, else TCP (through the proxy
/// unless the host bypasses it).
#[derive(Clone, Debug, Default)]
pub(crate) struct Dialer {
    pub(crate) proxy: Option<Proxy>,
    pub(crate) connector: Option<Connector>,
}

impl Dialer {
    /// The stream for `target`, with TLS when it is `secure`.
    pub(crate) async fn open(
        &self,
        target: Target,
        tls: Result<Tls, TransportFailure>,
    ) -> Result<Box<dyn Stream>, TransportFailure> {
        let (stream, secured) = match &self.connector {
            Some(Connector(connect)) => {
                let dialed = connect(target.clone())
                    .await
                    .map_err(|e| failure::from_io(&e))?;
                (dialed.stream, dialed.secured)
            }
            None => {
                let tcp = match self
                    .proxy
                    .as_ref()
                    .and_then(|p| p.for_host(&target.host, target.secure))
                {
                    Some(proxy) => proxy.tunnel(&target.host, target.port).await?,
                    None => {
                        let tcp = TcpStream::connect((target.host.as_str(), target.port))
                            .await
                            .map_err(|e| failure::from_io(&e))?;
                        // Frames are small and latency matters more than packet count
                        // (pings measure RTT).
                        let _ = tcp.set_nodelay(true);
                        tcp
                    }
                };
                (Box::new(tcp) as Box<dyn Stream>, false)
            }
        };
        if target.secure && !secured {
            tls?.connect(target.host, stream).await
        } else {
            Ok(stream)
        }
    }
}
