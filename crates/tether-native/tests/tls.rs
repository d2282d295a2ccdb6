//! `wss://` for real: a TLS WebSocket server on 127.0.0.1 with a self-signed certificate
//! for `localhost`, reached through each TLS stack the build has, with the application's
//! root; and refused by the default roots, which do not trust it.
#![cfg(any(feature = "rustls", feature = "native-tls"))]

mod support;

use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tether_core::{Config, Event, Payload, State, TransportFailure};
use tether_dispatch::transport::Transport;
use tether_native::{Client, NativeTransport};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use support::{next_event, within};

/// A TLS echo server for `localhost` on 127.0.0.1; its certificate (DER).
struct TlsEcho {
    port: u16,
    cert: Vec<u8>,
    _task: JoinSet<()>,
}

impl TlsEcho {
    async fn start() -> TlsEcho {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let der = cert.der().to_vec();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(der.clone())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut task = JoinSet::new();
        task.spawn(async move {
            let mut sockets = JoinSet::new();
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                sockets.spawn(async move {
                    // A client that does not trust the certificate ends here.
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let Ok(mut ws) = tokio_tungstenite::accept_async(tls).await else {
                        return;
                    };
                    while let Some(Ok(message)) = ws.next().await {
                        if message.is_text() || message.is_binary() {
                            let _ = ws.send(message).await;
                        }
                    }
                });
            }
        });
        TlsEcho {
            port,
            cert: der,
            _task: task,
        }
    }

    fn url(&self) -> String {
        format!("wss://localhost:{}/ws", self.port)
    }
}

async fn round_trip(url: String, transport: NativeTransport) {
    let config = Config::builder(url).build().unwrap();
    let client = Client::builder(config)
        .transport(transport)
        .spawn()
        .unwrap();
    let mut events = client.events();
    next_event(&mut events, "connected over TLS", |e| {
        matches!(
            e,
            Event::StateChanged {
                to: State::Connected,
                ..
            }
        )
    })
    .await;
    client.send("sealed").unwrap();
    next_event(
        &mut events,
        "the echo",
        |e| matches!(e, Event::Message(Payload::Text(t)) if t == "sealed"),
    )
    .await;
    within("close", client.close(1000, "done")).await;
}

#[cfg(feature = "rustls")]
#[tokio::test]
async fn rustls_with_the_applications_root() {
    let server = TlsEcho::start().await;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from(server.cert.clone()))
        .unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    round_trip(
        server.url(),
        NativeTransport::new().tls_config(Arc::new(config)),
    )
    .await;
}

#[cfg(feature = "native-tls")]
#[tokio::test]
async fn native_tls_with_the_applications_root() {
    let server = TlsEcho::start().await;
    let connector = native_tls::TlsConnector::builder()
        .add_root_certificate(native_tls::Certificate::from_der(&server.cert).unwrap())
        .build()
        .unwrap();
    round_trip(
        server.url(),
        NativeTransport::new().native_tls_connector(connector),
    )
    .await;
}

/// The build's default roots (webpki's, the system's) do not hold a self-signed
/// certificate: the attempt is a TLS failure, not a network error.
#[cfg(any(
    feature = "rustls-webpki-roots",
    feature = "rustls-native-roots",
    feature = "native-tls"
))]
#[tokio::test]
async fn the_default_roots_refuse_an_unknown_certificate() {
    let server = TlsEcho::start().await;
    let r = within(
        "connect",
        NativeTransport::new().connect(server.url(), vec![], vec![]),
    )
    .await;
    assert!(
        matches!(r.as_ref().err(), Some(TransportFailure::Tls(_))),
        "{:?}",
        r.err()
    );
    // A poll over the same TLS too: rustls' error came wrapped in an io::Error, whose
    // `source()` skips it, and the failure read as a network error.
    #[cfg(feature = "polling")]
    {
        let url = format!("https://localhost:{}/poll", server.port);
        let r = within("poll", NativeTransport::new().post(url, vec![], vec![])).await;
        assert!(matches!(&r, Err(TransportFailure::Tls(_))), "{r:?}");
    }
}

/// A connector's stream for `wss://`: `Dialed::plain` gets Tether's TLS (the URL's host
/// as the server name, the transport's roots), `Dialed::secured` is taken as it is,
/// whether the connector did the TLS itself or (wrongly) did none.
#[cfg(feature = "rustls")]
#[tokio::test]
async fn a_connectors_stream_gets_tethers_tls_only_when_plain() {
    use tether_native::transport::{Dialed, Target};

    let server = TlsEcho::start().await;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(server.cert.clone()))
        .unwrap();
    let config = Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth(),
    );
    // The name in the URL is only the server name: the connector dials 127.0.0.1.
    let dial = |target: Target| async move {
        assert_eq!((target.host.as_str(), target.secure), ("localhost", true));
        tokio::net::TcpStream::connect(("127.0.0.1", target.port)).await
    };

    let plain = NativeTransport::new()
        .tls_config(config.clone())
        .connector(move |target| async move { Ok(Dialed::plain(dial(target).await?)) });
    round_trip(server.url(), plain).await;

    let tls = tokio_rustls::TlsConnector::from(config.clone());
    let own_tls = NativeTransport::new().connector(move |target: Target| {
        let tls = tls.clone();
        async move {
            let tcp = dial(target).await?;
            let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
            Ok(Dialed::secured(tls.connect(name, tcp).await?))
        }
    });
    round_trip(server.url(), own_tls).await;

    // Declared secured but plain: the upgrade goes out in clear text and fails.
    let no_tls = NativeTransport::new()
        .tls_config(config)
        .connector(move |target| async move { Ok(Dialed::secured(dial(target).await?)) });
    let r = within("connect", no_tls.connect(server.url(), vec![], vec![])).await;
    assert!(r.is_err());
}
