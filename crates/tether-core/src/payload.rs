//! What the application sends and receives: text or binary, in shared buffers.
//!
//! Both kinds are reference-counted [`Bytes`]: cloning a payload (the queue's retained
//! copy, every event reader's), slicing the Tether envelope off a received frame, and
//! handing a payload to a WebSocket library that writes `Bytes` (tungstenite) copy no
//! bytes. A driver may pass on the buffer its socket read into (the native one does for
//! large frames). The browser build has a smaller `Bytes` of its own (below).

use core::fmt;
use core::ops::Deref;

#[cfg(not(all(target_arch = "wasm32", target_os = "unknown")))]
use bytes::Buf as _;
#[cfg(not(all(target_arch = "wasm32", target_os = "unknown")))]
pub use bytes::Bytes;
#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
pub use web::Bytes;

/// One application message, exactly as the user sent it or the server wrote it.
///
/// ```
/// use tether_core::Payload;
///
/// let text = Payload::from("hello");
/// assert_eq!(text.as_str(), Some("hello"));
/// assert_eq!(text.as_bytes(), b"hello");
///
/// let binary = Payload::from(vec![1, 2, 3]);
/// assert_eq!(binary.as_str(), None);
/// assert_eq!(binary.len(), 3);
/// // Clones share the buffer.
/// assert_eq!(binary.clone().as_bytes().as_ptr(), binary.as_bytes().as_ptr());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Payload {
    /// A UTF-8 text message.
    Text(Text),
    /// A binary message.
    Binary(Bytes),
}

impl Payload {
    /// Size in bytes, as counted against the queue's byte limit.
    #[must_use]
    pub fn len(&self) -> usize {
        self.as_bytes().len()
    }

    /// True when the payload has no bytes.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bytes of either kind (a text's UTF-8).
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Payload::Text(t) => t.as_bytes(),
            Payload::Binary(b) => b,
        }
    }

    /// The text of a text message; `None` for a binary one.
    #[must_use]
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Payload::Text(t) => Some(t.as_str()),
            Payload::Binary(_) => None,
        }
    }

    /// True for a text message.
    #[must_use]
    pub fn is_text(&self) -> bool {
        matches!(self, Payload::Text(_))
    }

    /// The bytes of either kind, sharing the buffer.
    #[must_use]
    pub fn into_bytes(self) -> Bytes {
        match self {
            Payload::Text(t) => t.into_bytes(),
            Payload::Binary(b) => b,
        }
    }
}

impl From<Text> for Payload {
    fn from(t: Text) -> Self {
        Payload::Text(t)
    }
}

impl From<String> for Payload {
    fn from(s: String) -> Self {
        Payload::Text(s.into())
    }
}

impl From<&str> for Payload {
    fn from(s: &str) -> Self {
        Payload::Text(s.into())
    }
}

impl From<Bytes> for Payload {
    fn from(b: Bytes) -> Self {
        Payload::Binary(b)
    }
}

impl From<Vec<u8>> for Payload {
    fn from(b: Vec<u8>) -> Self {
        Payload::Binary(b.into())
    }
}

impl From<&[u8]> for Payload {
    fn from(b: &[u8]) -> Self {
        Payload::Binary(Bytes::copy_from_slice(b))
    }
}

/// UTF-8 text in a shared buffer: [`Bytes`] known to hold valid UTF-8. Reads as a
/// `&str` (it dereferences to `str`); clones and [`skip`](Text::skip) share
/// the buffer.
///
/// ```
/// use tether_core::Text;
///
/// let text = Text::from("héllo");
/// assert_eq!(text, "héllo");
/// assert!(text.starts_with("hé"));
/// assert!(Text::try_from(vec![0xff]).is_err());
/// ```
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Text(Bytes);

/// Bytes that are not UTF-8, refused by [`Text::try_from`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct NotUtf8;

impl fmt::Display for NotUtf8 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not valid UTF-8")
    }
}

impl std::error::Error for NotUtf8 {}

impl Text {
    /// Text of a `'static` string (with no allocation, except in the browser build).
    #[must_use]
    pub fn from_static(s: &'static str) -> Self {
        Text(Bytes::from_static(s.as_bytes()))
    }

    /// The text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        // SAFETY: every constructor checks or inherits UTF-8 validity (`From<String>`,
        // `From<&str>`, `from_static`, `TryFrom` validating, `skip` to a char
        // boundary), and the bytes are never mutated.
        #[allow(unsafe_code)]
        unsafe {
            core::str::from_utf8_unchecked(&self.0)
        }
    }

    /// The UTF-8 bytes, sharing the buffer.
    #[must_use]
    pub fn into_bytes(self) -> Bytes {
        self.0
    }

    /// The UTF-8 bytes, borrowed as [`Bytes`].
    #[must_use]
    pub fn as_shared_bytes(&self) -> &Bytes {
        &self.0
    }

    /// The text from byte `start` on, in the same buffer: no copy, no allocation (a
    /// copy in the browser build). `None` when `start` is past the end or not at a
    /// character boundary.
    #[must_use]
    pub fn skip(mut self, start: usize) -> Option<Text> {
        if !self.as_str().is_char_boundary(start) {
            return None;
        }
        self.0.advance(start);
        Some(self)
    }
}

impl Deref for Text {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Text {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<[u8]> for Text {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl core::borrow::Borrow<str> for Text {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self.as_str(), f)
    }
}

impl From<String> for Text {
    fn from(s: String) -> Self {
        Text(Bytes::from(s))
    }
}

impl From<&String> for Text {
    fn from(s: &String) -> Self {
        Text::from(s.as_str())
    }
}

impl From<&str> for Text {
    fn from(s: &str) -> Self {
        Text(Bytes::copy_from_slice(s.as_bytes()))
    }
}

impl From<Text> for String {
    fn from(t: Text) -> Self {
        t.as_str().to_owned()
    }
}

impl From<Text> for Bytes {
    fn from(t: Text) -> Self {
        t.0
    }
}

impl TryFrom<Bytes> for Text {
    type Error = NotUtf8;

    /// Checks that the bytes are UTF-8; no copy.
    fn try_from(b: Bytes) -> Result<Self, NotUtf8> {
        match core::str::from_utf8(&b) {
            Ok(_) => Ok(Text(b)),
            Err(_) => Err(NotUtf8),
        }
    }
}

impl TryFrom<Vec<u8>> for Text {
    type Error = NotUtf8;

    fn try_from(b: Vec<u8>) -> Result<Self, NotUtf8> {
        String::from_utf8(b).map(Text::from).map_err(|_| NotUtf8)
    }
}

impl PartialEq<str> for Text {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Text {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<String> for Text {
    fn eq(&self, other: &String) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<Text> for str {
    fn eq(&self, other: &Text) -> bool {
        self == other.as_str()
    }
}

impl PartialEq<Text> for &str {
    fn eq(&self, other: &Text) -> bool {
        *self == other.as_str()
    }
}

impl PartialEq<Text> for String {
    fn eq(&self, other: &Text) -> bool {
        self == other.as_str()
    }
}

/// The browser build's [`Bytes`]: the methods of `bytes::Bytes` that Tether uses, over a
/// reference-counted buffer. The `bytes` crate would add 1.3 kB gzip to the npm package
/// (measured with `npm run size`), and a browser's payloads are copied from and to
/// JavaScript at the boundary anyway. Clones share the buffer; a slice is a copy.
#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
mod web {
    use std::sync::Arc;

    /// Shared bytes: a reference-counted buffer.
    #[derive(Clone, Default)]
    pub struct Bytes(Arc<Vec<u8>>);

    impl Bytes {
        /// Bytes of a `'static` slice (copied, unlike `bytes::Bytes::from_static`).
        #[must_use]
        pub fn from_static(b: &'static [u8]) -> Self {
            Self::copy_from_slice(b)
        }

        /// A copy of `b`.
        #[must_use]
        pub fn copy_from_slice(b: &[u8]) -> Self {
            Self::from(b.to_vec())
        }

        /// Drops the first `n` bytes (with a copy, unlike `bytes::Buf::advance`). Panics
        /// past the end, as `bytes::Buf::advance` does.
        pub fn advance(&mut self, n: usize) {
            *self = Self::copy_from_slice(&self.0[n..]);
        }
    }

    impl core::ops::Deref for Bytes {
        type Target = [u8];

        fn deref(&self) -> &[u8] {
            &self.0
        }
    }

    impl AsRef<[u8]> for Bytes {
        fn as_ref(&self) -> &[u8] {
            self
        }
    }

    impl From<Vec<u8>> for Bytes {
        fn from(buf: Vec<u8>) -> Self {
            Bytes(Arc::new(buf))
        }
    }

    impl From<String> for Bytes {
        fn from(s: String) -> Self {
            Self::from(s.into_bytes())
        }
    }

    impl From<Bytes> for Vec<u8> {
        fn from(b: Bytes) -> Self {
            b.to_vec()
        }
    }

    impl PartialEq for Bytes {
        fn eq(&self, other: &Self) -> bool {
            **self == **other
        }
    }

    impl Eq for Bytes {}

    impl PartialOrd for Bytes {
        fn partial_cmp(&self, other: &Self) -> Option<core::cmp::Ordering> {
            Some(self.cmp(other))
        }
    }

    impl Ord for Bytes {
        fn cmp(&self, other: &Self) -> core::cmp::Ordering {
            (**self).cmp(&**other)
        }
    }

    impl core::hash::Hash for Bytes {
        fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
            (**self).hash(state);
        }
    }

    impl core::fmt::Debug for Bytes {
        fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            core::fmt::Debug::fmt(&**self, f)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_share_and_respect_char_boundaries() {
        let t = Text::from("M 1 é");
        let ptr = t.as_ptr();
        let s = t.clone().skip(4).unwrap();
        assert_eq!(s, "é");
        assert_eq!(s.as_ptr(), ptr.wrapping_add(4));
        assert!(t.clone().skip(5).is_none());
        assert!(t.clone().skip(7).is_none());
        assert_eq!(t.skip(6).unwrap(), "");
    }

    #[test]
    fn conversions_check_utf8() {
        assert_eq!(Text::try_from(Bytes::from_static(b"ok")).unwrap(), "ok");
        assert_eq!(Text::try_from(Bytes::from_static(&[0xc3])), Err(NotUtf8));
        assert_eq!(String::from(Text::from_static("x")), "x");
        assert_eq!(format!("{:?}", Payload::from("a\"b")), "Text(\"a\\\"b\")");
    }
}
