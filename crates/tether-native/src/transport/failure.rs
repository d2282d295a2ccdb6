//! Faithful mapping of I/O, TLS, WebSocket and HTTP errors to [`TransportFailure`].
//!
//! Failure texts come from the error chain only: no URL (it may carry a token in its
//! query) and no header value ever gets into one.

#[cfg(feature = "polling")]
use std::error::Error as StdError;
use std::io;
use std::time::SystemTime;

use tether_core::{Duration, TransportFailure};
use tokio_tungstenite::tungstenite::error::CapacityError;
use tokio_tungstenite::tungstenite::http::HeaderMap;
use tokio_tungstenite::tungstenite::Error as WsError;

/// An I/O error from connecting or from the socket.
pub(crate) fn from_io(e: &io::Error) -> TransportFailure {
    use io::ErrorKind::*;
    match e.kind() {
        ConnectionRefused | HostUnreachable | NetworkUnreachable => TransportFailure::Refused,
        #[cfg(feature = "rustls")]
        _ => match rustls_inside(e) {
            Some(tls) => TransportFailure::Tls(tls.to_string()),
            None => TransportFailure::Network(e.to_string()),
        },
        #[cfg(not(feature = "rustls"))]
        _ => TransportFailure::Network(e.to_string()),
    }
}

/// The rustls error an I/O error carries, however deep (reqwest wraps tokio-rustls'
/// `io::Error` in another).
#[cfg(feature = "rustls")]
fn rustls_inside(e: &io::Error) -> Option<&rustls::Error> {
    let inner = e.get_ref()?;
    inner
        .downcast_ref::<rustls::Error>()
        .or_else(|| inner.downcast_ref::<io::Error>().and_then(rustls_inside))
}

/// An error from the WebSocket handshake or the open socket.
pub(crate) fn from_ws(e: WsError) -> TransportFailure {
    match e {
        WsError::Http(response) => TransportFailure::Http {
            status: response.status().as_u16(),
            retry_after: retry_after(response.headers()),
        },
        WsError::Io(e) => from_io(&e),
        WsError::Capacity(CapacityError::MessageTooLong { size, .. }) => {
            TransportFailure::MessageTooLarge { size }
        }
        other => TransportFailure::Network(other.to_string()),
    }
}

/// An error from the polling HTTP client.
#[cfg(feature = "polling")]
pub(crate) fn from_http(e: reqwest::Error) -> TransportFailure {
    let e = e.without_url();
    if e.is_timeout() {
        return TransportFailure::Timeout;
    }
    let mut source = e.source();
    while let Some(cause) = source {
        // A TLS error arrives inside an io::Error, whose `source()` skips it: `from_io`
        // looks inside (with rustls).
        if let Some(io) = cause.downcast_ref::<io::Error>() {
            if let failure @ (TransportFailure::Refused | TransportFailure::Tls(_)) = from_io(io) {
                return failure;
            }
        }
        #[cfg(feature = "rustls")]
        if let Some(tls) = cause.downcast_ref::<rustls::Error>() {
            return TransportFailure::Tls(tls.to_string());
        }
        #[cfg(feature = "native-tls")]
        if let Some(tls) = cause.downcast_ref::<native_tls::Error>() {
            return TransportFailure::Tls(tls.to_string());
        }
        source = cause.source();
    }
    TransportFailure::Network(chain(&e))
}

/// `error: cause: cause …`, for errors whose own text says little.
#[cfg(feature = "polling")]
fn chain(e: &dyn StdError) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The `Retry-After` header: delay-seconds or an HTTP date (RFC 9110 §10.2.3).
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get("retry-after")?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(
        at.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_tungstenite::tungstenite::http::HeaderValue;

    #[test]
    fn io_kinds() {
        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        assert_eq!(from_io(&refused), TransportFailure::Refused);
        let reset = io::Error::from(io::ErrorKind::ConnectionReset);
        assert!(matches!(from_io(&reset), TransportFailure::Network(_)));
        #[cfg(feature = "rustls")]
        let tls = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::General("bad cert".into()),
        );
        #[cfg(feature = "rustls")]
        assert!(matches!(from_io(&tls), TransportFailure::Tls(_)));
        #[cfg(feature = "rustls")]
        assert!(matches!(
            from_io(&io::Error::other(tls)),
            TransportFailure::Tls(_)
        ));
    }

    #[test]
    fn retry_after_forms() {
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert("retry-after", HeaderValue::from_static(" 7 "));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        h.insert(
            "retry-after",
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(
            retry_after(&h),
            Some(Duration::ZERO),
            "a past date means now"
        );
        let later = SystemTime::now() + Duration::from_secs(120);
        let date = httpdate::fmt_http_date(later);
        h.insert("retry-after", HeaderValue::from_str(&date).unwrap());
        let d = retry_after(&h).unwrap();
        assert!(
            d > Duration::from_secs(100) && d <= Duration::from_secs(120),
            "{d:?}"
        );
        h.insert("retry-after", HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&h), None);
        h.insert("retry-after", HeaderValue::from_static("-3"));
        assert_eq!(retry_after(&h), None);
    }
}
