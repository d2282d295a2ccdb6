//! Any frame, text or binary: decoding never panics, and what decodes re-encodes to a
//! frame that decodes to the same envelope.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tether_core::protocol::Envelope;
use tether_core::Payload;

fuzz_target!(|data: &[u8]| {
    let frame = match data.split_first() {
        Some((0, rest)) => Payload::Binary(rest.to_vec()),
        _ => Payload::Text(String::from_utf8_lossy(data).into_owned()),
    };
    if let Ok(envelope) = Envelope::decode(frame) {
        assert_eq!(Envelope::decode(envelope.encode()), Ok(envelope));
    }
});
