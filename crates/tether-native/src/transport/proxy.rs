//! HTTP proxies: which requests go through one (the proxy URLs and the `NO_PROXY` list),
//! and the `CONNECT` tunnel that carries a WebSocket through it.
//!
//! Nothing here is read from the environment unless the application asks for it with
//! [`Proxy::from_env`]: a library that silently follows `HTTPS_PROXY` surprises the
//! service whose environment was set for something else.

use std::fmt;
use std::net::IpAddr;

use tether_core::TransportFailure;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::http::Uri;

use super::failure;

/// The longest answer to `CONNECT` read from a proxy (status line and headers).
const MAX_CONNECT_ANSWER: usize = 8 * 1024;

/// Which proxy carries the sockets and polling requests of a [`super::NativeTransport`]:
/// an HTTP proxy reached with `CONNECT` (for `ws://` and `wss://`) and used as the HTTP
/// proxy of the polling fallback, with the hosts that bypass it.
///
/// ```
/// use tether_native::transport::Proxy;
///
/// let proxy = Proxy::http("http://user:secret@proxy.internal:3128")?
///     .no_proxy("localhost, 127.0.0.1, .svc.cluster.local");
/// assert!(proxy.bypasses("api.svc.cluster.local"));
/// assert!(!proxy.bypasses("example.com"));
/// # Ok::<(), tether_native::transport::ProxyError>(())
/// ```
#[derive(Clone, Default)]
pub struct Proxy {
    /// For `ws://` and `http://`.
    plain: Option<Endpoint>,
    /// For `wss://` and `https://`.
    secure: Option<Endpoint>,
    no_proxy: NoProxy,
}

/// Why a proxy setting was refused. The setting's text is never repeated: it may carry
/// a password.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxyError {
    /// The environment variable the setting came from ([`Proxy::from_env`]).
    pub variable: Option<&'static str>,
    /// What is wrong with it.
    pub problem: ProxyProblem,
}

/// What is wrong with a proxy URL.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProxyProblem {
    /// Not a URL.
    Malformed,
    /// Only `http://` proxies are supported (the scheme given, lowercased).
    UnsupportedScheme(String),
    /// The URL names no host.
    NoHost,
    /// The port is not a number from 1 to 65535.
    InvalidPort,
    /// The environment variable is not valid UTF-8 ([`Proxy::from_env`]).
    NotUnicode,
}

impl fmt::Display for ProxyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid proxy")?;
        if let Some(variable) = self.variable {
            write!(f, " in {variable}")?;
        }
        match &self.problem {
            ProxyProblem::Malformed => f.write_str(": not a URL"),
            ProxyProblem::UnsupportedScheme(scheme) => {
                write!(f, ": only http:// proxies are supported, not {scheme}://")
            }
            ProxyProblem::NoHost => f.write_str(": no host"),
            ProxyProblem::InvalidPort => f.write_str(": the port is not from 1 to 65535"),
            ProxyProblem::NotUnicode => f.write_str(": not valid UTF-8"),
        }
    }
}

impl std::error::Error for ProxyError {}

impl Proxy {
    /// Every request through the HTTP proxy at `url` (`http://[user:password@]host[:port]`,
    /// port 80 by default; a URL without a scheme is taken as `http://`, as curl does).
    /// A user and password become a `Proxy-Authorization: Basic` header.
    pub fn http(url: &str) -> Result<Proxy, ProxyError> {
        let endpoint = Endpoint::parse(url).map_err(|problem| ProxyError {
            variable: None,
            problem,
        })?;
        Ok(Proxy {
            plain: Some(endpoint.clone()),
            secure: Some(endpoint),
            no_proxy: NoProxy::default(),
        })
    }

    /// The proxy the environment names, as curl reads it: `https_proxy` (or `HTTPS_PROXY`)
    /// for `wss://` and `https://`, `http_proxy` (or `HTTP_PROXY`) for `ws://` and
    /// `http://`, `all_proxy` (or `ALL_PROXY`) for either when its own is unset, and
    /// `no_proxy` (or `NO_PROXY`) for the hosts that bypass it. `None` when no proxy
    /// variable is set (or all are empty).
    ///
    /// In a CGI program (`REQUEST_METHOD` set), `HTTP_PROXY` is ignored: there it is
    /// the request's `Proxy:` header, which the client chose ("httpoxy"; reqwest and Go
    /// do the same, curl never reads `HTTP_PROXY`).
    ///
    /// A variable that is not valid UTF-8 is an error, not an unset variable: requests
    /// meant for a proxy would otherwise connect directly. `ALL_PROXY` is read only
    /// when a scheme's own variable is unset (a `socks5://` one beside `HTTPS_PROXY`
    /// and `HTTP_PROXY` is no error).
    pub fn from_env() -> Result<Option<Proxy>, ProxyError> {
        Self::from_lookup(|name| std::env::var(name))
    }

    /// [`Proxy::from_env`] over any source of variables (tests give a map).
    fn from_lookup(
        lookup: impl Fn(&str) -> Result<String, std::env::VarError>,
    ) -> Result<Option<Proxy>, ProxyError> {
        let read = |names: &[&'static str]| -> Result<Option<(&'static str, String)>, ProxyError> {
            for &name in names {
                match lookup(name) {
                    Ok(value) if !value.trim().is_empty() => {
                        return Ok(Some((name, value.trim().to_owned())));
                    }
                    Ok(_) | Err(std::env::VarError::NotPresent) => {}
                    Err(std::env::VarError::NotUnicode(_)) => {
                        return Err(ProxyError {
                            variable: Some(name),
                            problem: ProxyProblem::NotUnicode,
                        })
                    }
                }
            }
            Ok(None)
        };
        let parse = |names: &[&'static str]| -> Result<Option<Endpoint>, ProxyError> {
            read(names)?
                .map(|(variable, value)| {
                    Endpoint::parse(&value).map_err(|problem| ProxyError {
                        variable: Some(variable),
                        problem,
                    })
                })
                .transpose()
        };
        let cgi = !matches!(
            lookup("REQUEST_METHOD"),
            Err(std::env::VarError::NotPresent)
        );
        let plain = parse(if cgi {
            &["http_proxy"]
        } else {
            &["http_proxy", "HTTP_PROXY"]
        })?;
        let secure = parse(&["https_proxy", "HTTPS_PROXY"])?;
        let (plain, secure) = if plain.is_none() || secure.is_none() {
            let all = parse(&["all_proxy", "ALL_PROXY"])?;
            (plain.or_else(|| all.clone()), secure.or(all))
        } else {
            (plain, secure)
        };
        if plain.is_none() && secure.is_none() {
            return Ok(None);
        }
        let no_proxy = read(&["no_proxy", "NO_PROXY"])?
            .map(|(_, list)| NoProxy::parse(&list))
            .unwrap_or_default();
        Ok(Some(Proxy {
            plain,
            secure,
            no_proxy,
        }))
    }

    /// Hosts that connect directly, as `NO_PROXY` lists them: comma-separated host
    /// names (each also matching its subdomains; a leading `.` or `*.` is allowed), IP
    /// addresses, CIDR ranges (`10.0.0.0/8`), or `*` for every host; case and a
    /// trailing `.` do not matter. A port after a name or an address is ignored.
    /// Replaces the list given before.
    #[must_use]
    pub fn no_proxy(mut self, list: &str) -> Proxy {
        self.no_proxy = NoProxy::parse(list);
        self
    }

    /// Whether requests to `host` connect directly.
    #[must_use]
    pub fn bypasses(&self, host: &str) -> bool {
        self.no_proxy.matches(host)
    }

    /// The proxy for a request to `host`, or `None` to connect directly.
    pub(crate) fn for_host(&self, host: &str, secure: bool) -> Option<&Endpoint> {
        let endpoint = if secure { &self.secure } else { &self.plain };
        endpoint.as_ref().filter(|_| !self.bypasses(host))
    }

    /// The proxy URL for the polling client (reqwest), credentials included.
    #[cfg(feature = "polling")]
    pub(crate) fn url_for(&self, host: &str, secure: bool) -> Option<String> {
        self.for_host(host, secure).map(Endpoint::url)
    }
}

/// Never shows credentials.
impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Proxy")
            .field("plain", &self.plain)
            .field("secure", &self.secure)
            .field("no_proxy", &self.no_proxy)
            .finish()
    }
}

/// One proxy server.
#[derive(Clone)]
pub(crate) struct Endpoint {
    host: String,
    port: u16,
    /// `user:password` as written in the URL (still percent-encoded), if any.
    userinfo: Option<String>,
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)?;
        if self.userinfo.is_some() {
            f.write_str(" (with credentials)")?;
        }
        Ok(())
    }
}

impl Endpoint {
    fn parse(url: &str) -> Result<Endpoint, ProxyProblem> {
        let url = url.trim();
        let with_scheme;
        let url = if url.contains("://") {
            url
        } else {
            with_scheme = format!("http://{url}");
            &with_scheme
        };
        let uri: Uri = url.parse().map_err(|_| ProxyProblem::Malformed)?;
        match uri.scheme_str() {
            Some(s) if s.eq_ignore_ascii_case("http") => {}
            Some(s) => return Err(ProxyProblem::UnsupportedScheme(s.to_ascii_lowercase())),
            None => return Err(ProxyProblem::Malformed),
        }
        let authority = uri.authority().ok_or(ProxyProblem::NoHost)?;
        let host = authority.host();
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        if host.is_empty() {
            return Err(ProxyProblem::NoHost);
        }
        // `http://proxy:99999` must not quietly become port 80 (`Authority::port` is
        // `None` for it, as for no port at all): the port as written. An empty one is
        // the default, as in curl.
        let host_port = authority.as_str().rsplit('@').next().unwrap_or_default();
        let written = match host_port.rsplit_once(']') {
            Some((_, after)) => after.strip_prefix(':'),
            None => host_port.split_once(':').map(|(_, port)| port),
        };
        let port = match written {
            None | Some("") => 80,
            Some(digits) => digits
                .parse::<u16>()
                .ok()
                .filter(|&p| p != 0 && digits.bytes().all(|b| b.is_ascii_digit()))
                .ok_or(ProxyProblem::InvalidPort)?,
        };
        // `http://@proxy` has no credentials, not an empty user.
        let userinfo = authority
            .as_str()
            .rsplit_once('@')
            .map(|(info, _)| info.to_owned())
            .filter(|info| !info.is_empty());
        Ok(Endpoint {
            host: host.to_owned(),
            port,
            userinfo,
        })
    }

    #[cfg(feature = "polling")]
    fn url(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        match &self.userinfo {
            Some(info) => format!("http://{info}@{host}:{}", self.port),
            None => format!("http://{host}:{}", self.port),
        }
    }

    /// `Proxy-Authorization`'s value, if the URL had credentials.
    fn authorization(&self) -> Option<String> {
        let info = self.userinfo.as_deref()?;
        let (user, password) = info.split_once(':').unwrap_or((info, ""));
        let mut plain = percent_decode(user);
        plain.push(b':');
        plain.extend(percent_decode(password));
        Some(format!("Basic {}", base64(&plain)))
    }

    /// A TCP connection to the proxy, tunnelled with `CONNECT` to `host:port`.
    pub(crate) async fn tunnel(
        &self,
        host: &str,
        port: u16,
    ) -> Result<TcpStream, TransportFailure> {
        let mut tcp = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| failure::from_io(&e))?;
        let _ = tcp.set_nodelay(true);
        let target = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let mut request = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
        if let Some(authorization) = self.authorization() {
            request.push_str("Proxy-Authorization: ");
            request.push_str(&authorization);
            request.push_str("\r\n");
        }
        request.push_str("\r\n");
        tcp.write_all(request.as_bytes())
            .await
            .map_err(|e| failure::from_io(&e))?;
        let (answer, after) = read_answer(&mut tcp).await?;
        match status(&answer) {
            // Nothing may follow a 2xx head: the server on the other side speaks only
            // after the client, so bytes there mean a confused proxy. (A refusal may
            // well have a body: its status is what matters.)
            Some(200..=299) if after > 0 => Err(proxy_failure(
                "the proxy sent data after its answer to CONNECT",
            )),
            Some(200..=299) => Ok(tcp),
            Some(407) => Err(proxy_failure(
                "the proxy refused the tunnel: HTTP 407 (proxy authentication required)",
            )),
            Some(code) => Err(TransportFailure::Network(format!(
                "the proxy refused the tunnel: HTTP {code}"
            ))),
            None => Err(proxy_failure("the proxy's answer to CONNECT is not HTTP")),
        }
    }
}

/// The proxy's answer up to its blank line, and how many bytes came after it.
async fn read_answer(tcp: &mut TcpStream) -> Result<(Vec<u8>, usize), TransportFailure> {
    let mut answer = Vec::with_capacity(256);
    let mut chunk = [0u8; 512];
    loop {
        let n = tcp
            .read(&mut chunk)
            .await
            .map_err(|e| failure::from_io(&e))?;
        if n == 0 {
            return Err(proxy_failure(
                "the proxy closed the connection before answering CONNECT",
            ));
        }
        // Only the new bytes (and the three before them) can complete the blank line:
        // scanning the whole answer on every read is quadratic for a proxy that sends
        // a byte at a time.
        let from = answer.len().saturating_sub(3);
        answer.extend_from_slice(&chunk[..n]);
        if let Some(at) = answer[from..].windows(4).position(|w| w == b"\r\n\r\n") {
            let end = from + at + 4;
            let after = answer.len() - end;
            answer.truncate(end);
            return Ok((answer, after));
        }
        if answer.len() > MAX_CONNECT_ANSWER {
            return Err(proxy_failure(
                "the proxy's answer to CONNECT is longer than 8 KiB",
            ));
        }
    }
}

/// The status code of `HTTP/1.x NNN[ reason]`: three digits, then a space or the end
/// of the line (`HTTP/1.1 2000` is no 200).
fn status(answer: &[u8]) -> Option<u16> {
    let rest = answer.strip_prefix(b"HTTP/1.")?;
    let code = rest.get(2..5)?;
    if !rest[0].is_ascii_digit()
        || rest.get(1) != Some(&b' ')
        || !code.iter().all(u8::is_ascii_digit)
        || !matches!(rest.get(5), Some(b' ' | b'\r'))
    {
        return None;
    }
    std::str::from_utf8(code).ok()?.parse().ok()
}

fn proxy_failure(what: &str) -> TransportFailure {
    TransportFailure::Network(what.to_owned())
}

/// The hosts that bypass the proxy.
#[derive(Clone, Debug, Default)]
struct NoProxy {
    everything: bool,
    names: Vec<String>,
    ranges: Vec<(IpAddr, u8)>,
}

impl NoProxy {
    fn parse(list: &str) -> NoProxy {
        let mut out = NoProxy::default();
        for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            if entry == "*" {
                out.everything = true;
                continue;
            }
            // `[v6]`, `[v6]:port` and `[v6]/bits`.
            let bare = match entry.strip_prefix('[').and_then(|e| e.split_once(']')) {
                Some((inside, bits)) if bits.starts_with('/') => format!("{inside}{bits}"),
                Some((inside, _)) => inside.to_owned(),
                None => entry.to_owned(),
            };
            let bare = bare.as_str();
            if let Some(range) = cidr(bare) {
                out.ranges.push(range);
                continue;
            }
            if let Ok(ip) = bare.parse::<IpAddr>() {
                out.ranges.push(host_range(ip));
                continue;
            }
            // A port is ignored, after an IPv4 address too (`10.0.0.1:8080`).
            let name = bare.split(':').next().unwrap_or(bare);
            if let Ok(ip) = name.parse::<IpAddr>() {
                out.ranges.push(host_range(ip));
                continue;
            }
            // `example.com.` is `example.com`, as hosts are matched.
            let name = name
                .trim_start_matches("*.")
                .trim_start_matches('.')
                .trim_end_matches('.');
            if !name.is_empty() {
                out.names.push(name.to_ascii_lowercase());
            }
        }
        out
    }

    fn matches(&self, host: &str) -> bool {
        if self.everything {
            return true;
        }
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        if let Ok(ip) = host.parse::<IpAddr>() {
            return self
                .ranges
                .iter()
                .any(|&(net, bits)| in_range(ip, net, bits));
        }
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.names.iter().any(|name| {
            host == *name
                || (host.len() > name.len()
                    && host.ends_with(name.as_str())
                    && host.as_bytes()[host.len() - name.len() - 1] == b'.')
        })
    }
}

/// The range of one address.
fn host_range(ip: IpAddr) -> (IpAddr, u8) {
    (ip, if ip.is_ipv4() { 32 } else { 128 })
}

fn cidr(entry: &str) -> Option<(IpAddr, u8)> {
    let (ip, bits) = entry.split_once('/')?;
    let ip: IpAddr = ip.parse().ok()?;
    let bits: u8 = bits.parse().ok()?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    (bits <= max).then_some((ip, bits))
}

fn in_range(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    let (ip, net, width) = match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(b)) => (u128::from(u32::from(a)), u128::from(u32::from(b)), 32),
        (IpAddr::V6(a), IpAddr::V6(b)) => (u128::from(a), u128::from(b), 128),
        (IpAddr::V6(a), IpAddr::V4(b)) => match a.to_ipv4_mapped() {
            Some(a) => (u128::from(u32::from(a)), u128::from(u32::from(b)), 32),
            None => return false,
        },
        (IpAddr::V4(_), IpAddr::V6(_)) => return false,
    };
    let shift = width - u32::from(bits);
    shift >= width || (ip >> shift) == (net >> shift)
}

fn percent_decode(s: &str) -> Vec<u8> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> shift & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(vars: &[(&str, &str)]) -> Result<Option<Proxy>, ProxyError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Proxy::from_lookup(|name| map.get(name).cloned().ok_or(std::env::VarError::NotPresent))
    }

    #[test]
    fn a_variable_that_is_not_unicode_is_an_error_not_an_unset_one() {
        // Read as unset, it sent everything meant for the proxy directly.
        for broken in ["HTTPS_PROXY", "no_proxy"] {
            let e = Proxy::from_lookup(|name| match name {
                _ if name == broken => Err(std::env::VarError::NotUnicode(
                    std::ffi::OsString::from("\u{fffd}"),
                )),
                "HTTPS_PROXY" | "HTTP_PROXY" => Ok("proxy:3128".into()),
                _ => Err(std::env::VarError::NotPresent),
            })
            .expect_err(broken);
            assert_eq!(e.variable, Some(broken));
            assert_eq!(e.problem, ProxyProblem::NotUnicode);
            assert_eq!(
                e.to_string(),
                format!("invalid proxy in {broken}: not valid UTF-8")
            );
        }
    }

    #[test]
    fn a_cgi_requests_proxy_header_is_not_taken_for_http_proxy() {
        // Under CGI, `Proxy: http://evil:1` in the request becomes HTTP_PROXY.
        let vars = [("REQUEST_METHOD", "GET"), ("HTTP_PROXY", "http://evil:1")];
        assert!(env(&vars).unwrap().is_none());
        let p = env(&[
            ("REQUEST_METHOD", "GET"),
            ("HTTP_PROXY", "http://evil:1"),
            ("http_proxy", "http://good:2"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(p.for_host("a.test", false).unwrap().host, "good");
        // Outside CGI the uppercase spelling is read as before.
        let p = env(&[("HTTP_PROXY", "http://upper:3")]).unwrap().unwrap();
        assert_eq!(p.for_host("a.test", false).unwrap().host, "upper");
    }

    #[test]
    fn all_proxy_is_read_only_when_a_scheme_needs_it() {
        // A SOCKS proxy for other tools beside HTTP ones for ours (a common shell setup).
        let p = env(&[
            ("HTTPS_PROXY", "http://s:1"),
            ("HTTP_PROXY", "http://p:2"),
            ("ALL_PROXY", "socks5://127.0.0.1:1080"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(p.for_host("a.test", true).unwrap().port, 1);
        assert_eq!(p.for_host("a.test", false).unwrap().port, 2);
        // Needed for ws:// here: its problem is reported.
        let e = env(&[
            ("HTTPS_PROXY", "http://s:1"),
            ("ALL_PROXY", "socks5://127.0.0.1:1080"),
        ])
        .unwrap_err();
        assert_eq!(e.variable, Some("ALL_PROXY"));
        assert_eq!(e.problem, ProxyProblem::UnsupportedScheme("socks5".into()));
    }

    #[test]
    fn a_port_out_of_range_is_refused_not_taken_as_80() {
        for bad in [
            "http://proxy:99999",
            "http://proxy:-1",
            "http://proxy:0",
            "proxy:65536",
        ] {
            assert_eq!(
                Proxy::http(bad).err().map(|e| e.problem),
                Some(ProxyProblem::InvalidPort),
                "{bad}"
            );
        }
        for (good, port) in [("http://proxy:", 80), ("proxy", 80), ("proxy:65535", 65535)] {
            let p = Proxy::http(good).unwrap();
            assert_eq!(p.for_host("a.test", true).unwrap().port, port, "{good}");
        }
        let e = env(&[("HTTP_PROXY", "http://u:pw@proxy:70000")]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid proxy in HTTP_PROXY: the port is not from 1 to 65535"
        );
    }

    #[test]
    fn an_empty_userinfo_sends_no_credentials() {
        let p = Proxy::http("http://@proxy:3128").unwrap();
        assert_eq!(p.for_host("a.test", true).unwrap().authorization(), None);
        let p = Proxy::http("http://u:@proxy:3128").unwrap();
        // base64("u:")
        assert_eq!(
            p.for_host("a.test", true)
                .unwrap()
                .authorization()
                .as_deref(),
            Some("Basic dTo=")
        );
    }

    #[test]
    fn no_variable_means_no_proxy() {
        assert!(env(&[]).unwrap().is_none());
        assert!(env(&[("HTTPS_PROXY", "  ")]).unwrap().is_none());
        assert!(env(&[("NO_PROXY", "*")]).unwrap().is_none());
    }

    #[test]
    fn each_scheme_reads_its_own_variable_then_all_proxy() {
        let p = env(&[
            ("HTTPS_PROXY", "http://secure.proxy:3128"),
            ("ALL_PROXY", "other.proxy:8080"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(p.for_host("a.test", true).unwrap().host, "secure.proxy");
        assert_eq!(p.for_host("a.test", true).unwrap().port, 3128);
        assert_eq!(p.for_host("a.test", false).unwrap().host, "other.proxy");
        assert_eq!(p.for_host("a.test", false).unwrap().port, 8080);
        // The lowercase spelling wins, as in curl.
        let p = env(&[
            ("https_proxy", "http://lower:1"),
            ("HTTPS_PROXY", "http://upper:2"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(p.for_host("a.test", true).unwrap().host, "lower");
        assert!(p.for_host("a.test", false).is_none());
    }

    #[test]
    fn a_bad_variable_is_named_and_its_value_is_not_repeated() {
        let e = env(&[("HTTPS_PROXY", "https://user:hunter2@proxy:443")])
            .err()
            .unwrap();
        assert_eq!(e.variable, Some("HTTPS_PROXY"));
        assert_eq!(e.problem, ProxyProblem::UnsupportedScheme("https".into()));
        let text = e.to_string();
        assert!(!text.contains("hunter2"), "{text}");
        assert_eq!(
            text,
            "invalid proxy in HTTPS_PROXY: only http:// proxies are supported, not https://"
        );
        for bad in ["http://", "http://:3128", "not a url at all"] {
            let e = Proxy::http(bad).expect_err(bad);
            assert_eq!(e.variable, None);
            assert!(
                matches!(e.problem, ProxyProblem::Malformed | ProxyProblem::NoHost),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn no_proxy_matches_names_subdomains_ips_and_ranges() {
        let p = Proxy::http("proxy:3128").unwrap().no_proxy(
            " localhost, .internal.test, *.svc.test, example.org:8443, 10.0.0.0/8, ::1, [fd00::]/8, 192.168.1.5 ",
        );
        for host in [
            "localhost",
            "LOCALHOST",
            "internal.test",
            "a.internal.test",
            "x.y.svc.test",
            "example.org",
            "api.example.org",
            "10.1.2.3",
            "::1",
            "[::1]",
            "fd12::1",
            "192.168.1.5",
            "::ffff:10.9.9.9",
        ] {
            assert!(p.bypasses(host), "{host} should bypass");
            assert!(p.for_host(host, true).is_none(), "{host}");
        }
        for host in [
            "example.com",
            "notlocalhost",
            "badinternal.test",
            "11.0.0.1",
            "192.168.1.6",
            "::2",
        ] {
            assert!(!p.bypasses(host), "{host} should go through the proxy");
            assert!(p.for_host(host, true).is_some(), "{host}");
        }
        assert!(Proxy::http("proxy:1")
            .unwrap()
            .no_proxy("*")
            .bypasses("anything.test"));
    }

    #[test]
    fn credentials_become_basic_authorization_and_never_show_in_debug() {
        let p = Proxy::http("http://al%40ice:p%3Ass@proxy.test:3128").unwrap();
        let endpoint = p.for_host("a.test", true).unwrap();
        // base64("al@ice:p:ss")
        assert_eq!(
            endpoint.authorization().as_deref(),
            Some("Basic YWxAaWNlOnA6c3M=")
        );
        let debug = format!("{p:?}");
        assert!(
            !debug.contains("p%3Ass") && !debug.contains("al%40ice"),
            "{debug}"
        );
        assert!(debug.contains("with credentials"), "{debug}");
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn no_proxy_entries_are_read_as_carelessly_as_they_are_written() {
        let p = Proxy::http("proxy:3128")
            .unwrap()
            .no_proxy("Example.COM., ,,*.Internal.Test:8080, [fe80::1]:443, 10.9.8.7:8080");
        for host in [
            "example.com",
            "example.com.",
            "API.example.com",
            "internal.test",
            "a.internal.test.",
            "fe80::1",
            "10.9.8.7",
        ] {
            assert!(p.bypasses(host), "{host} should bypass");
        }
        for host in [
            "evil-example.com",
            "example.com.evil",
            "xinternal.test",
            "fe80::2",
            "10.9.8.70",
        ] {
            assert!(!p.bypasses(host), "{host} should go through the proxy");
        }
    }

    #[test]
    fn a_proxy_host_no_http_client_could_reach_is_refused() {
        // The polling client (reqwest) would not parse these, and would then send its
        // requests directly, past the proxy.
        for bad in [
            "http://pro^xy:3128",
            "http://pro|xy:3128",
            "http://pro%zzxy:3128",
            "http://pro%2fxy:3128",
            "http://pro\\xy:3128",
            "http://pro{xy}:3128",
            "http://u:p@pro\"xy:3128",
        ] {
            if let Ok(p) = Proxy::http(bad) {
                panic!("{bad} accepted: {p:?}");
            }
        }
        for good in [
            "http://proxy.corp:3128",
            "http://my_proxy:1",
            "http://[::1]:8080",
            "10.0.0.1",
        ] {
            assert!(Proxy::http(good).is_ok(), "{good}");
        }
    }

    #[test]
    fn status_lines() {
        assert_eq!(
            status(b"HTTP/1.1 200 Connection established\r\n\r\n"),
            Some(200)
        );
        assert_eq!(
            status(b"HTTP/1.0 407 Proxy Authentication Required\r\n\r\n"),
            Some(407)
        );
        assert_eq!(status(b"HTTP/1.1 2x0 nope\r\n\r\n"), None);
        assert_eq!(status(b"SSH-2.0-OpenSSH\r\n\r\n"), None);
        assert_eq!(status(b"HTTP/1.1"), None);
        assert_eq!(status(b"HTTP/1.1 200\r\n\r\n"), Some(200));
        assert_eq!(status(b"HTTP/1.1 2000 OK\r\n\r\n"), None);
        assert_eq!(status(b"HTTP/1.1 200OK\r\n\r\n"), None);
        assert_eq!(status(b"HTTP/1.x 200 OK\r\n\r\n"), None);
        assert_eq!(status(b"HTTP/1.0 200"), None, "an unfinished line");
    }
}
