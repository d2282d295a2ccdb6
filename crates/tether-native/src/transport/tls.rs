//! TLS under `wss://` sockets and `https://` polling, as the crate's features choose:
//! rustls (`rustls`, with the roots of `rustls-webpki-roots` and `rustls-native-roots`)
//! or the platform's library (`native-tls`), which is the default only when no rustls
//! roots feature is on. A build with neither has no TLS: `can_tls` is false and a client
//! asked for a TLS URL is refused when it is made.

#[cfg(feature = "rustls")]
use std::sync::Arc;
#[cfg(any(
    feature = "rustls-webpki-roots",
    feature = "rustls-native-roots",
    feature = "native-tls"
))]
use std::sync::OnceLock;

use tether_core::TransportFailure;

use super::dial::Stream;

/// What the transport was told to use.
#[derive(Clone, Debug, Default)]
pub(crate) enum TlsChoice {
    /// What the features give.
    #[default]
    Default,
    /// The application's rustls configuration.
    #[cfg(feature = "rustls")]
    Rustls(Arc<rustls::ClientConfig>),
    /// The application's native-tls connector.
    #[cfg(feature = "native-tls")]
    NativeTls(native_tls::TlsConnector),
}

/// A TLS stack ready to connect.
pub(crate) enum Tls {
    #[cfg(feature = "rustls")]
    Rustls(Arc<rustls::ClientConfig>),
    #[cfg(feature = "native-tls")]
    NativeTls(native_tls::TlsConnector),
}

impl TlsChoice {
    /// Whether `wss://` and `https://` can work at all.
    pub(crate) fn available(&self) -> bool {
        match self {
            TlsChoice::Default => cfg!(any(
                feature = "rustls-webpki-roots",
                feature = "rustls-native-roots",
                feature = "native-tls"
            )),
            #[cfg(feature = "rustls")]
            TlsChoice::Rustls(_) => true,
            #[cfg(feature = "native-tls")]
            TlsChoice::NativeTls(_) => true,
        }
    }

    /// The stack to connect with.
    pub(crate) fn resolve(&self) -> Result<Tls, TransportFailure> {
        match self {
            TlsChoice::Default => default_tls().map_err(TransportFailure::Tls),
            #[cfg(feature = "rustls")]
            TlsChoice::Rustls(config) => Ok(Tls::Rustls(config.clone())),
            #[cfg(feature = "native-tls")]
            TlsChoice::NativeTls(connector) => Ok(Tls::NativeTls(connector.clone())),
        }
    }
}

impl Tls {
    /// The TLS handshake with `host` over `tcp` (TCP, a proxy's tunnel or a connector's
    /// stream).
    #[cfg_attr(
        not(any(feature = "rustls", feature = "native-tls")),
        allow(unused_variables, clippy::unused_async)
    )]
    pub(crate) async fn connect(
        self,
        host: String,
        tcp: Box<dyn Stream>,
    ) -> Result<Box<dyn Stream>, TransportFailure> {
        match self {
            #[cfg(feature = "rustls")]
            Tls::Rustls(config) => {
                let name = rustls::pki_types::ServerName::try_from(host)
                    .map_err(|_| TransportFailure::Tls("invalid server name".into()))?;
                let stream = tokio_rustls::TlsConnector::from(config)
                    .connect(name, tcp)
                    .await
                    .map_err(|e| super::failure::from_io(&e))?;
                Ok(Box::new(stream))
            }
            #[cfg(feature = "native-tls")]
            Tls::NativeTls(connector) => {
                let stream = tokio_native_tls::TlsConnector::from(connector)
                    .connect(&host, tcp)
                    .await
                    .map_err(|e| TransportFailure::Tls(e.to_string()))?;
                Ok(Box::new(stream))
            }
        }
    }

    /// The polling client's TLS: the same stack and settings as the sockets'.
    #[cfg(feature = "polling")]
    #[cfg_attr(
        not(any(feature = "rustls", feature = "native-tls")),
        allow(unused_variables)
    )]
    pub(crate) fn configure_http(self, builder: reqwest::ClientBuilder) -> reqwest::ClientBuilder {
        match self {
            #[cfg(feature = "rustls")]
            Tls::Rustls(config) => builder.use_preconfigured_tls((*config).clone()),
            #[cfg(feature = "native-tls")]
            Tls::NativeTls(connector) => builder.use_preconfigured_tls(connector),
        }
    }
}

/// The polling client's settings when no TLS can be had (`http://` only). With rustls in
/// the build, reqwest gets a configuration without roots: left alone, it would take the
/// process's default crypto provider, and panic when there is none.
#[cfg(feature = "polling")]
pub(crate) fn http_without_tls(
    builder: reqwest::ClientBuilder,
) -> Result<reqwest::ClientBuilder, String> {
    #[cfg(feature = "rustls")]
    {
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
        Ok(builder.use_preconfigured_tls(config))
    }
    #[cfg(not(feature = "rustls"))]
    {
        Ok(builder)
    }
}

/// Without a rustls roots feature and without native-tls.
#[cfg(not(any(
    feature = "rustls-webpki-roots",
    feature = "rustls-native-roots",
    feature = "native-tls"
)))]
fn default_tls() -> Result<Tls, String> {
    Err(if cfg!(feature = "rustls") {
        "no root certificates: enable tether-native's `rustls-webpki-roots` or \
         `rustls-native-roots` feature, or give NativeTransport::tls_config"
    } else {
        "no TLS in this build: enable one of tether-native's features \
         `rustls-webpki-roots`, `rustls-native-roots` or `native-tls`"
    }
    .to_owned())
}

/// rustls with the `ring` provider and the roots the features name (both when both are
/// on), made once. The provider is named rather than taken from the process default,
/// which panics when none or two are installed.
#[cfg(any(feature = "rustls-webpki-roots", feature = "rustls-native-roots"))]
fn default_tls() -> Result<Tls, String> {
    static CONFIG: OnceLock<Result<Arc<rustls::ClientConfig>, String>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            #[allow(unused_mut)]
            let mut roots = rustls::RootCertStore::empty();
            #[cfg(feature = "rustls-webpki-roots")]
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            #[cfg(feature = "rustls-native-roots")]
            {
                let found = rustls_native_certs::load_native_certs();
                let (added, _ignored) = roots.add_parsable_certificates(found.certs);
                if added == 0 && roots.is_empty() {
                    let why = found.errors.first().map(ToString::to_string);
                    return Err(format!(
                        "no root certificates found in the operating system's store{}",
                        why.map(|e| format!(": {e}")).unwrap_or_default()
                    ));
                }
            }
            rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .map(|b| Arc::new(b.with_root_certificates(roots).with_no_client_auth()))
            .map_err(|e| e.to_string())
        })
        .clone()
        .map(Tls::Rustls)
}

/// The platform's TLS library with its defaults (and the system's roots), made once.
#[cfg(all(
    feature = "native-tls",
    not(any(feature = "rustls-webpki-roots", feature = "rustls-native-roots"))
))]
fn default_tls() -> Result<Tls, String> {
    static CONNECTOR: OnceLock<Result<native_tls::TlsConnector, String>> = OnceLock::new();
    CONNECTOR
        .get_or_init(|| native_tls::TlsConnector::new().map_err(|e| e.to_string()))
        .clone()
        .map(Tls::NativeTls)
}
