//! [`NativeTransport`]: the [`Transport`] of native targets. WebSockets through
//! tokio-tungstenite over tokio's TCP (or an HTTP proxy's `CONNECT` tunnel, or the
//! application's [connector](NativeTransport::connector)), with TLS for `wss://` from
//! rustls or the platform's library (as the crate's features choose); HTTP polling
//! through reqwest (the `polling` feature).

mod dial;
mod failure;
mod proxy;
mod request;
mod tls;
mod ws;

use std::future::Future;
use std::sync::Arc;
#[cfg(feature = "polling")]
use std::sync::OnceLock;

use tether_core::{Config, TransportFailure};
use tether_dispatch::transport::{MaybeSend, Transport};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

pub use dial::{Dialed, Stream, Target};
pub use proxy::{Proxy, ProxyError, ProxyProblem};
pub use request::{HeaderError, Outgoing, RequestKind};
pub use ws::{WsReader, WsWriter};

/// Read buffer of each socket. Small, because most clients are idle most of the time and
/// tungstenite allocates it eagerly (its default, 128 KiB, would dominate the memory of an
/// idle client); larger messages still arrive, in more reads. The driver does the
/// upgrade itself so that this is the only read buffer a socket keeps (tungstenite's
/// handshake would keep its own 4 KiB one).
pub const DEFAULT_READ_BUFFER: usize = 1024;

/// Bytes of frames buffered before they are written, when the driver writes a burst (its
/// frames are flushed together once the burst is written; a single frame is flushed at
/// once). The buffer grows only as far as a burst needs.
pub(crate) const WRITE_BUFFER: usize = 16 * 1024;

/// The native [`Transport`]: cheap to clone, and meant to be shared. Clients made from
/// clones of one `NativeTransport` share its TLS configuration and its HTTP connection
/// pool.
///
/// ```
/// use tether_native::{Config, NativeTransport};
///
/// let config = Config::builder("wss://example.com/ws").build()?;
/// let transport = NativeTransport::for_config(&config).read_buffer_size(8 * 1024);
/// # let _ = transport;
/// # Ok::<(), tether_native::ConfigError>(())
/// ```
#[derive(Clone, Debug)]
pub struct NativeTransport {
    ws: WebSocketConfig,
    tls: tls::TlsChoice,
    dialer: dial::Dialer,
    additions: request::Additions,
    max_poll_body: usize,
    #[cfg(feature = "polling")]
    http: Arc<OnceLock<Result<reqwest::Client, String>>>,
}

impl Default for NativeTransport {
    fn default() -> Self {
        NativeTransport {
            ws: WebSocketConfig::default()
                .read_buffer_size(DEFAULT_READ_BUFFER)
                .write_buffer_size(WRITE_BUFFER),
            tls: tls::TlsChoice::default(),
            dialer: dial::Dialer::default(),
            additions: request::Additions::default(),
            max_poll_body: 0,
            #[cfg(feature = "polling")]
            http: Arc::default(),
        }
        .max_message_bytes(16 << 20)
    }
}

impl NativeTransport {
    /// A transport with the default settings: 1 KiB read buffer, 16 MiB messages, the
    /// TLS the crate's features chose (the webpki roots by default).
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// A transport whose limits follow `config` (its `max_message_bytes`).
    #[must_use]
    pub fn for_config(config: &Config) -> Self {
        Self::default().max_message_bytes(config.max_message_bytes)
    }

    /// Bytes read from the socket at a time, allocated once per socket (1 KiB by default).
    /// A larger buffer takes more of a burst of small messages per read (fewer system
    /// calls) at this cost in memory per socket. Payloads of 1 KiB or more are handed to
    /// the application in this buffer, uncopied (the socket then reads into a new one);
    /// smaller ones are copied out.
    #[must_use]
    pub fn read_buffer_size(mut self, bytes: usize) -> Self {
        self.ws = self.ws.read_buffer_size(bytes.max(1));
        self
    }

    /// The largest message accepted from the server: a larger one fails the socket.
    /// Poll responses may be four times this (a batch of several messages), and at least
    /// 1 MiB; a larger one (or one that never ends) fails the request with
    /// [`TransportFailure::MessageTooLarge`] once it passes the limit.
    #[must_use]
    pub fn max_message_bytes(mut self, bytes: usize) -> Self {
        let frame = tether_dispatch::transport::frame_limit(bytes);
        self.ws = self
            .ws
            .max_message_size(Some(frame))
            .max_frame_size(Some(frame));
        self.max_poll_body = tether_dispatch::transport::http_body_limit(bytes);
        self
    }

    /// rustls settings of `wss://` sockets and `https://` polling (custom roots, client
    /// certificates), used whatever else the features enable (the last of this and
    /// `native_tls_connector` wins). Without this, rustls' `ring`
    /// provider with the roots of the `rustls-webpki-roots` and `rustls-native-roots`
    /// features. Needs the `rustls` feature.
    #[cfg(feature = "rustls")]
    #[must_use]
    pub fn tls_config(mut self, config: std::sync::Arc<rustls::ClientConfig>) -> Self {
        self.tls = tls::TlsChoice::Rustls(config);
        #[cfg(feature = "polling")]
        {
            self.http = Arc::default();
        }
        self
    }

    /// A native-tls connector for `wss://` sockets and `https://` polling (the platform's
    /// TLS library with the application's settings), used whatever else the features
    /// enable. Without this (and without `tls_config`), native-tls
    /// with its defaults is used only when no rustls roots feature is on. Needs the
    /// `native-tls` feature.
    #[cfg(feature = "native-tls")]
    #[must_use]
    pub fn native_tls_connector(mut self, connector: native_tls::TlsConnector) -> Self {
        self.tls = tls::TlsChoice::NativeTls(connector);
        #[cfg(feature = "polling")]
        {
            self.http = Arc::default();
        }
        self
    }

    /// A header sent with every WebSocket upgrade and polling request (after the
    /// token's `Authorization`). Names of the handshake and of HTTP (`Host`,
    /// `Connection`, `Upgrade`, `Sec-WebSocket-*`, `Content-Length`,
    /// `Transfer-Encoding`, `Content-Type`), `Authorization` (the token provider's)
    /// and `Proxy-Authorization` (the proxy URL's) are refused, in any case. Values
    /// are never logged.
    ///
    /// ```
    /// use tether_native::NativeTransport;
    ///
    /// let transport = NativeTransport::new()
    ///     .header("X-Api-Key", "k-123")?
    ///     .header("User-Agent", "my-cli/1.0")?;
    /// # let _ = transport;
    /// # Ok::<(), tether_native::transport::HeaderError>(())
    /// ```
    pub fn header(mut self, name: &str, value: &str) -> Result<Self, HeaderError> {
        self.additions.headers.push(request::header(name, value)?);
        Ok(self)
    }

    /// Calls `rewrite` before every WebSocket attempt and every polling request, with
    /// the URL and the extra headers (the application's, from [`header`](Self::header))
    /// it may change: sticky routing to one instance, a signed URL, a header per
    /// attempt. The headers it leaves are checked as `header` checks them; a bad one
    /// fails that request (and the attempt, which the core retries as any failure).
    ///
    /// ```
    /// use tether_native::transport::{NativeTransport, Outgoing};
    ///
    /// // Come back to the instance that served the last attempt.
    /// let instance = std::sync::Arc::new(std::sync::Mutex::new(String::from("eu-1")));
    /// let transport = NativeTransport::new().rewrite(move |request: &mut Outgoing| {
    ///     let instance = instance.lock().unwrap();
    ///     request.headers.push(("X-Instance".into(), instance.clone()));
    /// });
    /// # let _ = transport;
    /// ```
    #[must_use]
    pub fn rewrite(mut self, rewrite: impl Fn(&mut Outgoing) + Send + Sync + 'static) -> Self {
        self.additions.rewrite = Some(Arc::new(rewrite));
        self
    }

    /// Sockets and polling requests go through this HTTP proxy (sockets with
    /// `CONNECT`), except to the hosts its `no_proxy` list names. Without this, nothing
    /// goes through a proxy, whatever the environment says: use
    /// [`Proxy::from_env`] to follow `HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY` and
    /// `NO_PROXY`.
    ///
    /// ```
    /// use tether_native::transport::{NativeTransport, Proxy};
    ///
    /// let mut transport = NativeTransport::new();
    /// if let Some(proxy) = Proxy::from_env()? {
    ///     transport = transport.proxy(proxy);
    /// }
    /// # Ok::<(), tether_native::transport::ProxyError>(())
    /// ```
    #[must_use]
    pub fn proxy(mut self, proxy: Proxy) -> Self {
        self.dialer.proxy = Some(proxy);
        #[cfg(feature = "polling")]
        {
            self.http = Arc::default();
        }
        self
    }

    /// Opens each WebSocket's byte stream with `connect` instead of TCP (and instead of
    /// the proxy): a Unix socket, a stream from another runtime, a custom TLS stack. It
    /// gets the URL's host and port; return [`Dialed::plain`] to have Tether's TLS run
    /// over the stream for `wss://`, or [`Dialed::secured`] when the stream is ready
    /// for the upgrade as it is. An error fails the attempt as a TCP error would
    /// (`ConnectionRefused` counts as refused). Polling requests do not use it (they
    /// use the proxy, if any).
    ///
    /// ```no_run
    /// use tether_native::transport::{Dialed, NativeTransport};
    ///
    /// let transport = NativeTransport::new().connector(|_target| async {
    ///     let socket = tokio::net::UnixStream::connect("/run/app/ws.sock").await?;
    ///     Ok(Dialed::secured(socket))
    /// });
    /// # let _ = transport;
    /// ```
    #[must_use]
    pub fn connector<F, Fut>(mut self, connect: F) -> Self
    where
        F: Fn(Target) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::io::Result<Dialed>> + Send + 'static,
    {
        self.dialer.connector = Some(dial::Connector::new(connect));
        self
    }

    /// The HTTP client of the polling fallback, made once per transport (and its clones).
    #[cfg(feature = "polling")]
    fn http(&self) -> Result<reqwest::Client, TransportFailure> {
        let client = self.http.get_or_init(|| {
            // A redirect is an answer the core should see, not follow with a GET.
            let builder = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none());
            // The proxy the application chose, never one from the environment unasked:
            // sockets and polling go the same way.
            let builder = match self.dialer.proxy.clone() {
                Some(proxy) => builder.proxy(reqwest::Proxy::custom(move |url| {
                    proxy.url_for(url.host_str()?, url.scheme() == "https")
                })),
                None => builder.no_proxy(),
            };
            // Without TLS in this build, plain http:// still works (an https:// URL was
            // refused when the client was made: `can_tls`).
            let builder = match self.tls.resolve() {
                Ok(tls) => tls.configure_http(builder),
                Err(_) => tls::http_without_tls(builder)?,
            };
            builder.build().map_err(|e| e.to_string())
        });
        client.clone().map_err(TransportFailure::Network)
    }
}

impl Transport for NativeTransport {
    type Writer = WsWriter;
    type Reader = WsReader;

    fn connect(
        &self,
        url: String,
        protocols: Vec<String>,
        headers: Vec<(String, String)>,
    ) -> impl Future<Output = Result<(WsWriter, WsReader), TransportFailure>> + MaybeSend {
        let request = self
            .additions
            .apply(request::RequestKind::WebSocket, url, headers);
        // The URL as rewritten: a hook may move the attempt to wss://.
        let tls = match &request {
            Ok((url, _)) if url.get(..4).is_some_and(|s| s.eq_ignore_ascii_case("wss:")) => {
                self.tls.resolve()
            }
            _ => Err(TransportFailure::Tls("not a TLS URL".into())),
        };
        let (ws, dialer) = (self.ws, self.dialer.clone());
        async move {
            let (url, headers) = request?;
            ws::connect(ws, tls, dialer, url, protocols, headers).await
        }
    }

    fn post(
        &self,
        url: String,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    ) -> impl Future<Output = Result<Vec<u8>, TransportFailure>> + MaybeSend {
        #[cfg(feature = "polling")]
        {
            let request = self
                .additions
                .apply(request::RequestKind::Poll, url, headers);
            let (http, limit) = (self.http(), self.max_poll_body);
            async move {
                let (url, headers) = request?;
                poll(http, limit, url, headers, body).await
            }
        }
        #[cfg(not(feature = "polling"))]
        {
            // Unreachable through `Client`, which refuses a fallback without `can_post`.
            let _ = (url, headers, body);
            std::future::ready(Err(TransportFailure::Network(
                "HTTP polling is not in this build (tether-native's `polling` feature)".into(),
            )))
        }
    }

    fn can_post(&self) -> bool {
        cfg!(feature = "polling")
    }

    fn can_tls(&self) -> bool {
        self.tls.available()
    }

    fn can_ping(&self) -> bool {
        true
    }
}

/// One polling request through reqwest.
#[cfg(feature = "polling")]
async fn poll(
    client: Result<reqwest::Client, TransportFailure>,
    limit: usize,
    url: String,
    headers: Vec<(
        tokio_tungstenite::tungstenite::http::HeaderName,
        tokio_tungstenite::tungstenite::http::HeaderValue,
    )>,
    body: Vec<u8>,
) -> Result<Vec<u8>, TransportFailure> {
    let mut request = client?
        .post(url)
        .header("content-type", "application/octet-stream")
        .body(body);
    for (name, value) in headers {
        request = request.header(name, value);
    }
    let mut response = request.send().await.map_err(failure::from_http)?;
    let status = response.status();
    if !status.is_success() {
        return Err(TransportFailure::Http {
            status: status.as_u16(),
            retry_after: failure::retry_after(response.headers()),
        });
    }
    // A body over the limit fails as soon as it is known to be: from its
    // Content-Length, or once what arrived passes the limit (a body that never
    // ends is read no further).
    if let Some(size) = response.content_length() {
        if size > limit as u64 {
            return Err(TransportFailure::MessageTooLarge {
                size: usize::try_from(size).unwrap_or(usize::MAX),
            });
        }
    }
    let mut out = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(failure::from_http)? {
        let size = out.len().saturating_add(chunk.len());
        if size > limit {
            return Err(TransportFailure::MessageTooLarge { size });
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

#[cfg(all(test, feature = "polling"))]
mod tests {
    use super::*;

    /// A poll to a port where nothing listens fails as refused in every build with
    /// polling, including one with rustls but no roots (where reqwest must not be left to
    /// pick a crypto provider itself: it panics when none is installed).
    #[tokio::test]
    async fn a_poll_to_nothing_is_refused_in_every_build() {
        let t = NativeTransport::new();
        let r = t
            .post("http://127.0.0.1:9/poll".into(), vec![], vec![])
            .await;
        assert_eq!(r, Err(TransportFailure::Refused));
    }
}
