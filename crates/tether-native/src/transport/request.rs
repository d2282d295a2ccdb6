//! What every request carries beyond the core's own: the application's headers, and
//! its rewriting of each attempt's URL and headers (sticky routing, a signed URL).

use std::fmt;
use std::sync::Arc;

use tether_core::TransportFailure;
use tokio_tungstenite::tungstenite::http::header::{HeaderName, HeaderValue};

/// Headers the WebSocket handshake or HTTP itself sets: an application value would
/// break the upgrade or smuggle a second request. `authorization` is the token
/// provider's; `content-type` is the polling body's (an application's would be sent
/// as a second one, and the server would have to pick).
const RESERVED: &[&str] = &[
    "authorization",
    "connection",
    "content-length",
    "content-type",
    "host",
    "proxy-authorization",
    "transfer-encoding",
    "upgrade",
];

/// Why a request header was refused. The value is never repeated: it may be a secret.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HeaderError {
    /// Not a valid HTTP header name.
    InvalidName,
    /// The value of this header has characters HTTP does not allow (a line break).
    InvalidValue(String),
    /// This header belongs to the handshake, to HTTP or to the token provider.
    Reserved(String),
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeaderError::InvalidName => f.write_str("invalid request header name"),
            HeaderError::InvalidValue(name) => write!(f, "invalid value of header {name}"),
            HeaderError::Reserved(name) => write!(
                f,
                "header {name} cannot be set: it belongs to the WebSocket handshake, to \
                 HTTP or to the token provider"
            ),
        }
    }
}

impl std::error::Error for HeaderError {}

/// `name: value` checked: a valid, unreserved name and a valid value.
pub(crate) fn header(name: &str, value: &str) -> Result<(HeaderName, HeaderValue), HeaderError> {
    let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| HeaderError::InvalidName)?;
    if RESERVED.contains(&name.as_str()) || name.as_str().starts_with("sec-websocket-") {
        return Err(HeaderError::Reserved(name.as_str().to_owned()));
    }
    let mut value = HeaderValue::from_str(value)
        .map_err(|_| HeaderError::InvalidValue(name.as_str().to_owned()))?;
    value.set_sensitive(true);
    Ok((name, value))
}

/// Which request a [`Outgoing`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RequestKind {
    /// A WebSocket attempt (its upgrade request).
    WebSocket,
    /// One request of the HTTP polling fallback.
    Poll,
}

/// A request about to leave, given to the transport's
/// [`rewrite`](super::NativeTransport::rewrite) hook: its URL and the headers added to
/// the core's own (`Authorization` from the token provider, which the hook cannot
/// change). The application's fixed headers are in `headers` already.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Outgoing {
    /// A WebSocket attempt or a polling request.
    pub kind: RequestKind,
    /// The URL, query included (the token's, when it is placed there).
    pub url: String,
    /// Extra headers, in order; names are checked as
    /// [`NativeTransport::header`](super::NativeTransport::header) checks them, and a
    /// bad one fails the request.
    pub headers: Vec<(String, String)>,
}

type RewriteFn = dyn Fn(&mut Outgoing) + Send + Sync;

/// The application's additions to every request.
#[derive(Clone, Default)]
pub(crate) struct Additions {
    pub(crate) headers: Vec<(HeaderName, HeaderValue)>,
    pub(crate) rewrite: Option<Arc<RewriteFn>>,
}

impl fmt::Debug for Additions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Header values may be secrets: names only.
        let names: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("Additions")
            .field("headers", &names)
            .field("rewrite", &self.rewrite.is_some())
            .finish()
    }
}

impl Additions {
    /// The URL and the full header list of a request: the core's headers, then the
    /// application's, then what its hook changed.
    pub(crate) fn apply(
        &self,
        kind: RequestKind,
        url: String,
        core_headers: Vec<(String, String)>,
    ) -> Result<(String, Vec<(HeaderName, HeaderValue)>), TransportFailure> {
        let mut out = Vec::with_capacity(core_headers.len() + self.headers.len());
        for (name, value) in core_headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| TransportFailure::Network("invalid request header name".into()))?;
            let mut value = HeaderValue::from_str(&value).map_err(|_| {
                TransportFailure::Network(format!("invalid value of header {name}"))
            })?;
            value.set_sensitive(true);
            out.push((name, value));
        }
        let Some(rewrite) = &self.rewrite else {
            out.extend(self.headers.iter().cloned());
            return Ok((url, out));
        };
        let mut outgoing = Outgoing {
            kind,
            url,
            headers: self
                .headers
                .iter()
                .map(|(n, v)| {
                    (
                        n.as_str().to_owned(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect(),
        };
        rewrite(&mut outgoing);
        for (name, value) in &outgoing.headers {
            out.push(header(name, value).map_err(|e| TransportFailure::Network(e.to_string()))?);
        }
        Ok((outgoing.url, out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handshake_http_and_token_headers_are_reserved() {
        for name in [
            "Host",
            "connection",
            "Upgrade",
            "Sec-WebSocket-Key",
            "sec-websocket-protocol",
            "Authorization",
            "Content-Length",
            "Transfer-Encoding",
            "Proxy-Authorization",
            "CONTENT-TYPE",
            "tRaNsFeR-eNcOdInG",
        ] {
            assert_eq!(
                header(name, "x").err(),
                Some(HeaderError::Reserved(name.to_ascii_lowercase())),
                "{name}"
            );
        }
        assert_eq!(
            header("bad name", "x").err(),
            Some(HeaderError::InvalidName)
        );
        assert_eq!(
            header("X-Ok", "a\r\nInjected: 1").err(),
            Some(HeaderError::InvalidValue("x-ok".into()))
        );
        assert!(header("X-Route", "eu-1").is_ok());
    }

    #[test]
    fn the_hook_sees_the_applications_headers_and_its_output_is_checked() {
        let additions = Additions {
            headers: vec![header("X-App", "1").unwrap()],
            rewrite: Some(Arc::new(|o: &mut Outgoing| {
                assert_eq!(o.headers, vec![("x-app".to_owned(), "1".to_owned())]);
                o.url.push_str("?instance=b");
                o.headers.push(("X-Kind".into(), format!("{:?}", o.kind)));
            })),
        };
        let (url, headers) = additions
            .apply(
                RequestKind::Poll,
                "http://h/poll".into(),
                vec![("authorization".into(), "Bearer t".into())],
            )
            .unwrap();
        assert_eq!(url, "http://h/poll?instance=b");
        let names: Vec<_> = headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["authorization", "x-app", "x-kind"]);
        assert_eq!(headers[2].1, "Poll");

        let smuggler = Additions {
            headers: vec![],
            rewrite: Some(Arc::new(|o: &mut Outgoing| {
                o.headers.push(("Host".into(), "evil".into()));
            })),
        };
        let e = smuggler
            .apply(RequestKind::WebSocket, "ws://h/".into(), vec![])
            .unwrap_err();
        assert!(
            matches!(&e, TransportFailure::Network(m) if m.contains("header host cannot be set")),
            "{e:?}"
        );
    }
}
