//! What a browser's `WebSocket.close(code, reason)` accepts without throwing.

/// The longest close reason, in UTF-8 bytes (RFC 6455: 125 bytes of payload, 2 of code).
pub(crate) const MAX_REASON_BYTES: usize = 123;

/// `code` and `reason` as a browser accepts them: a code other than 1000 or 3000–4999
/// becomes 1000, and a reason longer than 123 bytes is cut at a character boundary.
pub(crate) fn close_args(code: u16, reason: &str) -> (u16, &str) {
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
    fn codes_a_browser_refuses_become_1000() {
        assert_eq!(close_args(1000, "bye"), (1000, "bye"));
        assert_eq!(close_args(4409, ""), (4409, ""));
        assert_eq!(close_args(3000, "").0, 3000);
        assert_eq!(close_args(1001, "").0, 1000);
        assert_eq!(close_args(1006, "").0, 1000);
        assert_eq!(close_args(5000, "").0, 1000);
    }

    #[test]
    fn long_reasons_are_cut_at_a_character_boundary() {
        let ascii = "a".repeat(200);
        assert_eq!(close_args(1000, &ascii).1.len(), MAX_REASON_BYTES);
        let wide = "é".repeat(100); // two bytes each
        let cut = close_args(1000, &wide).1;
        assert_eq!(cut.len(), 122);
        assert!(cut.chars().all(|c| c == 'é'));
    }
}
