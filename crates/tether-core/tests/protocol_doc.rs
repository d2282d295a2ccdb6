//! The frames PROTOCOL.md shows as examples (section 2.1) are valid, and written the way
//! a sender writes them.

use tether_core::protocol::Envelope;
use tether_core::Payload;

#[test]
fn the_example_frames_of_protocol_md_decode_and_encode_back() {
    let doc = include_str!("../../../PROTOCOL.md");
    let section = doc
        .split_once("Examples:\n\n```text\n")
        .expect("PROTOCOL.md has its examples block")
        .1;
    let block = section.split_once("```").expect("the block ends").0;
    let mut hello_seen = false;
    for line in block.lines() {
        let frame = Payload::from(line.to_owned());
        let envelope = Envelope::decode(frame.clone())
            .unwrap_or_else(|e| panic!("example {line:?} is invalid: {e}"));
        assert_eq!(
            envelope.encode(),
            frame,
            "example {line:?} re-encodes differently"
        );
        hello_seen |= matches!(envelope, Envelope::Hello { .. });
    }
    assert!(hello_seen && block.lines().count() >= 8);
}
