//! Random bytes and ids from the operating system.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};

/// Fills `buf` with random bytes. If the OS source fails (it does not on supported
/// systems), falls back to std's randomly keyed SipHash rather than panicking.
pub(crate) fn fill(buf: &mut [u8]) {
    if getrandom::fill(buf).is_ok() {
        return;
    }
    for chunk in buf.chunks_mut(8) {
        let mut h = RandomState::new().build_hasher();
        h.write_usize(chunk.len());
        let bytes = h.finish().to_le_bytes();
        chunk.copy_from_slice(&bytes[..chunk.len()]);
    }
}

/// A random `u64`.
pub(crate) fn u64() -> u64 {
    let mut b = [0u8; 8];
    fill(&mut b);
    u64::from_le_bytes(b)
}
