//! The close code and reason every driver puts in a close frame.

/// The longest close reason, in UTF-8 bytes (RFC 6455: 125 bytes of payload, 2 of code).
pub const MAX_REASON_BYTES: usize = 123;

/// `code` and `reason` as every platform can send them: a code other than 1000 or
/// 3000–4999 becomes 1000 (a browser's `WebSocket.close` throws on any other, so a native
/// client sends the same), and a reason longer than [`MAX_REASON_BYTES`] is cut at a
/// character boundary. The [`Dispatcher`](crate::Dispatcher) cleans every
/// [`Command::Close`](crate::Command::Close) with it, and the transports clean what they
/// are given with it again, so a transport used alone sends a valid frame too.
///
/// ```
/// use tether_dispatch::close::sendable;
///
/// assert_eq!(sendable(4409, "replaced"), (4409, "replaced"));
/// assert_eq!(sendable(1006, "abnormal").0, 1000); // reserved: never sent
/// assert_eq!(sendable(1001, "").0, 1000); // a browser refuses it
/// assert_eq!(sendable(1000, &"é".repeat(100)).1.len(), 122);
/// ```
#[must_use]
pub fn sendable(code: u16, reason: &str) -> (u16, &str) {
    let code = if code == 1000 || (3000..=4999).contains(&code) {
        code
    } else {
        1000
    };
    let mut end = reason.len().min(MAX_REASON_BYTES);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    // `get`, not indexing: no slicing panic (and its `Debug` formatting) in the wasm.
    (code, reason.get(..end).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_no_platform_refuses() {
        assert_eq!(sendable(1000, "bye"), (1000, "bye"));
        assert_eq!(sendable(4409, ""), (4409, ""));
        assert_eq!(sendable(3000, "").0, 3000);
        assert_eq!(sendable(4999, "").0, 4999);
        for refused in [0, 999, 1001, 1002, 1005, 1006, 1015, 2999, 5000, u16::MAX] {
            assert_eq!(sendable(refused, "").0, 1000, "{refused}");
        }
    }

    #[test]
    fn long_reasons_are_cut_at_a_character_boundary() {
        let ascii = "a".repeat(200);
        assert_eq!(sendable(1000, &ascii).1.len(), MAX_REASON_BYTES);
        let wide = "é".repeat(100); // two bytes each
        let cut = sendable(1000, &wide).1;
        assert_eq!(cut.len(), 122);
        assert!(cut.chars().all(|c| c == 'é'));
        let four = "😀".repeat(40); // four bytes each
        assert_eq!(sendable(1000, &four).1.len(), 120);
    }
}
