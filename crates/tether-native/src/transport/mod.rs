//! [`NativeTransport`]: the [`Transport`] of native targets. WebSockets through
//! tokio-tungstenite (`ws://`, and `wss://` over rustls with the webpki roots), HTTP
//! polling through reqwest (rustls too; no OpenSSL anywhere).

mod failure;
mod ws;

use std::future::Future;
use std::sync::{Arc, OnceLock};

use tether_core::transport::{MaybeSend, Transport};
use tether_core::{Config, TransportFailure};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

pub use ws::{WsReader, WsWriter};

/// Read buffer of each socket. Small, because most clients are idle most of the time and
/// tungstenite allocates it eagerly (its default, 128 KiB, would dominate the memory of an
/// idle client); larger messages still arrive, in more reads. No smaller size saves
/// memory: tungstenite keeps the buffer of its handshake, 4 KiB, as the read buffer.
pub const DEFAULT_READ_BUFFER: usize = 4 * 1024;

/// Bytes of frames buffered before they are written, when the driver writes a burst (its
/// frames are flushed together once the burst is written; a single frame is flushed at
/// once). The buffer grows only as far as a burst needs.
pub(crate) const WRITE_BUFFER: usize = 16 * 1024;

/// Room for the Tether envelope around a payload of `max_message_bytes` (`M <seq> `).
const ENVELOPE_ROOM: usize = 64;

/// The native [`Transport`]: cheap to clone, and meant to be shared. Clients made from
/// clones of one `NativeTransport` share its TLS configuration and its HTTP connection
/// pool.
///
/// ```
/// use tether_native::NativeTransport;
///
/// let config = tether_core::Config::builder("wss://example.com/ws").build()?;
/// let transport = NativeTransport::for_config(&config).read_buffer_size(8 * 1024);
/// # let _ = transport;
/// # Ok::<(), tether_core::ConfigError>(())
/// ```
#[derive(Clone, Debug)]
pub struct NativeTransport {
    ws: WebSocketConfig,
    tls: Option<Arc<rustls::ClientConfig>>,
    max_poll_body: usize,
    http: Arc<OnceLock<Result<reqwest::Client, String>>>,
}

impl Default for NativeTransport {
    fn default() -> Self {
        NativeTransport {
            ws: WebSocketConfig::default()
                .read_buffer_size(DEFAULT_READ_BUFFER)
                .write_buffer_size(WRITE_BUFFER),
            tls: None,
            max_poll_body: 0,
            http: Arc::default(),
        }
        .max_message_bytes(16 << 20)
    }
}

impl NativeTransport {
    /// A transport with the default settings: 4 KiB read buffer, 16 MiB messages, the
    /// webpki root certificates.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// A transport whose limits follow `config` (its `max_message_bytes`).
    #[must_use]
    pub fn for_config(config: &Config) -> Self {
        Self::default().max_message_bytes(config.max_message_bytes)
    }

    /// Bytes read from the socket at a time, allocated once per socket. Below 4 KiB this
    /// only shortens each read: the socket keeps the 4 KiB buffer of its handshake, which
    /// tungstenite makes its read buffer.
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
        let frame = bytes.saturating_add(ENVELOPE_ROOM);
        self.ws = self
            .ws
            .max_message_size(Some(frame))
            .max_frame_size(Some(frame));
        self.max_poll_body = tether_core::transport::poll_body_limit(bytes);
        self
    }

    /// TLS settings of `wss://` sockets and `https://` polling (custom roots, client
    /// certificates). Without this, the webpki roots with rustls' `ring` provider.
    #[must_use]
    pub fn tls_config(mut self, config: Arc<rustls::ClientConfig>) -> Self {
        self.tls = Some(config);
        self.http = Arc::default();
        self
    }

    fn tls(&self) -> Result<Arc<rustls::ClientConfig>, TransportFailure> {
        match &self.tls {
            Some(config) => Ok(config.clone()),
            None => default_tls().map_err(TransportFailure::Tls),
        }
    }

    fn http(&self) -> Result<reqwest::Client, TransportFailure> {
        let client = self.http.get_or_init(|| {
            let tls = self.tls().map_err(|e| e.to_string())?;
            reqwest::Client::builder()
                .use_preconfigured_tls((*tls).clone())
                // A redirect is an answer the core should see, not follow with a GET.
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .map_err(|e| e.to_string())
        });
        client.clone().map_err(TransportFailure::Network)
    }
}

/// The webpki roots with the `ring` provider, made once. The provider is named rather
/// than taken from the process default, which panics when none or two are installed.
fn default_tls() -> Result<Arc<rustls::ClientConfig>, String> {
    static CONFIG: OnceLock<Result<Arc<rustls::ClientConfig>, String>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let roots = rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            };
            rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .map(|b| Arc::new(b.with_root_certificates(roots).with_no_client_auth()))
            .map_err(|e| e.to_string())
        })
        .clone()
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
        let tls = if url.get(..4).is_some_and(|s| s.eq_ignore_ascii_case("wss:")) {
            self.tls()
        } else {
            Err(TransportFailure::Tls("not a TLS URL".into()))
        };
        ws::connect(self.ws, tls, url, protocols, headers)
    }

    fn poll(
        &self,
        url: String,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    ) -> impl Future<Output = Result<Vec<u8>, TransportFailure>> + MaybeSend {
        let client = self.http();
        let limit = self.max_poll_body;
        async move {
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
    }
}
