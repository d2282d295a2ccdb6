//! Any polling body: decoding never panics and round-trips.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tether_core::protocol::{decode_batch, encode_batch};

fuzz_target!(|data: &[u8]| {
    if let Ok(frames) = decode_batch(data) {
        assert_eq!(decode_batch(&encode_batch(&frames)), Ok(frames));
    }
});
