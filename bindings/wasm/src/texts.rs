//! The numbers of the error message templates of `errors.js` (`TEXTS`): the first of
//! each group. js/decode.js names a message by them (a test checks its numbers are these);
//! a test checks the templates against the core's `Display` text.

/// `SendError`: queue full, too large, stopped, closing.
pub const T_SEND: u32 = 0;
/// `DeliveryError`: rejected, unconfirmable, dropped, stopped, client gone.
pub const T_DELIVERY: u32 = 4;
/// `TerminalReason`: user closed, auth rejected, replaced, fatal, gave up, driver failed.
pub const T_TERMINAL: u32 = 9;
/// `Cause` (a function of code, status and reason).
pub const T_CAUSE: u32 = 15;
/// `TetherError`: protocol, violation, too large, token, attempt failed, poll body.
pub const T_TETHER: u32 = 16;
/// `DropReason`: overflow, expired, stopped, unconfirmed.
pub const T_DROP: u32 = 22;
/// `DecodeError`, in the order of its variants.
pub const T_DECODE: u32 = 26;
/// The driver's `BuildError`: no token provider, cannot poll, no TLS; then `HandoffError`:
/// not protocol, no session, misnumbered.
pub const T_BUILD: u32 = 38;

#[cfg(test)]
mod tests {
    use super::*;
    use tether_core::protocol::{DecodeError, PROTOCOL_VERSION};
    use tether_core::{
        Cause, DeliveryError, DropReason, HandoffError, ProtocolViolation, SendError, State,
        TerminalReason, TetherError, TransportFailure,
    };

    /// The entries of `TEXTS` in errors.js, in order: a template, or `None` for one
    /// written as a function.
    fn js_texts() -> Vec<Option<String>> {
        let source = include_str!("errors.js");
        let start = source.find("const TEXTS = [").expect("TEXTS in errors.js");
        let end = start + source[start..].find("\n];").expect("the end of TEXTS");
        source[start..end]
            .lines()
            .skip(1)
            .map(str::trim)
            .filter_map(|line| match line.chars().next() {
                Some(q @ ('\'' | '"')) => {
                    let body = line.trim_end_matches(',');
                    Some(Some(body.trim_matches(q).to_string()))
                }
                Some('(') => Some(None),
                _ => None,
            })
            .collect()
    }

    fn fill(template: &str, a: f64, b: f64, s: &str) -> String {
        template
            .replace("$a", &a.to_string())
            .replace("$b", &b.to_string())
            .replace("$s", s)
    }

    /// js/decode.js names the groups by the same numbers (it picks the templates).
    #[test]
    fn the_javascript_decoder_numbers_the_groups_alike() {
        let source = include_str!("../js/decode.js");
        for (name, value) in [
            ("T_SEND", T_SEND),
            ("T_DELIVERY", T_DELIVERY),
            ("T_TERMINAL", T_TERMINAL),
            ("T_CAUSE", T_CAUSE),
            ("T_TETHER", T_TETHER),
            ("T_DROP", T_DROP),
            ("T_DECODE", T_DECODE),
            ("T_BUILD", T_BUILD),
        ] {
            let line = format!("const {name} = {value};");
            assert!(source.contains(&line), "js/decode.js lacks `{line}`");
        }
    }

    #[test]
    fn the_javascript_texts_are_the_cores() {
        let texts = js_texts();
        let cause = Cause {
            code: Some(4401),
            reason: "token expired".into(),
            ..Cause::default()
        };
        let terminal = TerminalReason::DriverFailed("boom".into());
        // (template, a, b, s, the core's text)
        let mut cases: Vec<(u32, f64, f64, String, String)> = vec![
            (
                T_SEND,
                3.0,
                40.0,
                String::new(),
                SendError::QueueFull {
                    messages: 3,
                    bytes: 40,
                }
                .to_string(),
            ),
            (
                T_SEND + 1,
                9.0,
                8.0,
                String::new(),
                SendError::TooLarge { size: 9, max: 8 }.to_string(),
            ),
            (
                T_SEND + 2,
                0.0,
                0.0,
                "closed".into(),
                SendError::Stopped(State::Closed).to_string(),
            ),
            (
                T_SEND + 3,
                0.0,
                0.0,
                String::new(),
                SendError::Closing.to_string(),
            ),
            (
                T_DELIVERY,
                0.0,
                0.0,
                SendError::Closing.to_string(),
                DeliveryError::Rejected(SendError::Closing).to_string(),
            ),
            (
                T_DELIVERY + 1,
                0.0,
                0.0,
                String::new(),
                DeliveryError::Unconfirmable.to_string(),
            ),
            (
                T_DELIVERY + 2,
                0.0,
                0.0,
                DropReason::Expired.to_string(),
                DeliveryError::Dropped(DropReason::Expired).to_string(),
            ),
            (
                T_DELIVERY + 3,
                0.0,
                0.0,
                terminal.to_string(),
                DeliveryError::Stopped(terminal.clone()).to_string(),
            ),
            (
                T_DELIVERY + 4,
                0.0,
                0.0,
                String::new(),
                DeliveryError::ClientGone.to_string(),
            ),
            (
                T_TERMINAL,
                1000.0,
                0.0,
                "bye".into(),
                TerminalReason::UserClosed {
                    code: 1000,
                    reason: "bye".into(),
                }
                .to_string(),
            ),
            (
                T_TERMINAL + 1,
                0.0,
                0.0,
                cause.to_string(),
                TerminalReason::AuthRejected(cause.clone()).to_string(),
            ),
            (
                T_TERMINAL + 2,
                0.0,
                0.0,
                cause.to_string(),
                TerminalReason::Replaced(cause.clone()).to_string(),
            ),
            (
                T_TERMINAL + 3,
                0.0,
                0.0,
                cause.to_string(),
                TerminalReason::Fatal(cause.clone()).to_string(),
            ),
            (
                T_TERMINAL + 4,
                2.0,
                0.0,
                cause.to_string(),
                TerminalReason::GaveUp {
                    attempts: 2,
                    last: cause.clone(),
                }
                .to_string(),
            ),
            (
                T_TERMINAL + 5,
                0.0,
                0.0,
                "boom".into(),
                terminal.to_string(),
            ),
            (
                T_TETHER,
                0.0,
                0.0,
                DecodeError::Empty.to_string(),
                TetherError::Protocol(DecodeError::Empty).to_string(),
            ),
            (
                T_TETHER + 1,
                0.0,
                0.0,
                "sequence gap".into(),
                TetherError::ProtocolViolation(ProtocolViolation::SequenceGap).to_string(),
            ),
            (
                T_TETHER + 2,
                5.0,
                0.0,
                String::new(),
                TetherError::MessageTooLarge { size: 5 }.to_string(),
            ),
            (
                T_TETHER + 3,
                0.0,
                0.0,
                "down".into(),
                TetherError::TokenUnavailable("down".into()).to_string(),
            ),
            (
                T_TETHER + 4,
                0.0,
                0.0,
                TransportFailure::Refused.text(),
                TetherError::AttemptFailed(TransportFailure::Refused).to_string(),
            ),
            (
                T_TETHER + 5,
                0.0,
                0.0,
                DecodeError::Truncated.to_string(),
                TetherError::PollBody(DecodeError::Truncated).to_string(),
            ),
            (
                T_BUILD + 3,
                0.0,
                0.0,
                String::new(),
                HandoffError::NotProtocol.to_string(),
            ),
            (
                T_BUILD + 4,
                0.0,
                0.0,
                String::new(),
                HandoffError::NoSession.to_string(),
            ),
            (
                T_BUILD + 5,
                0.0,
                0.0,
                String::new(),
                HandoffError::Numbering.to_string(),
            ),
        ];
        for (i, reason) in [
            DropReason::Overflow,
            DropReason::Expired,
            DropReason::Stopped,
            DropReason::Unconfirmed,
        ]
        .into_iter()
        .enumerate()
        {
            cases.push((
                T_DROP + i as u32,
                0.0,
                0.0,
                String::new(),
                reason.to_string(),
            ));
        }
        let decodes = [
            (0, 0.0, "", DecodeError::Empty),
            (2, 0.0, "seq", DecodeError::MissingField("seq")),
            (3, 0.0, "ack", DecodeError::BadNumber("ack")),
            (4, 0.0, "", DecodeError::Truncated),
            (5, 0.0, "", DecodeError::WrongFrameType),
            (6, 0.0, "", DecodeError::ZeroSeq),
            (7, 0.0, "", DecodeError::TrailingData),
            (8, 7.0, "", DecodeError::UnknownRecordKind(7)),
            (9, 0.0, "", DecodeError::InvalidUtf8),
            (
                10,
                PROTOCOL_VERSION as f64,
                "9",
                DecodeError::UnsupportedVersion(9),
            ),
            (11, 0.0, "", DecodeError::BadSecret),
        ];
        for (i, a, s, e) in decodes {
            cases.push((T_DECODE + i, a, 0.0, s.into(), e.to_string()));
        }
        for (t, a, b, s, expected) in cases {
            let template = texts[t as usize]
                .as_ref()
                .expect("a template, not a function");
            assert_eq!(fill(template, a, b, &s), expected, "template {t}");
        }
        // Every template but the driver's BuildError texts (T_BUILD to T_BUILD + 2: tether-web
        // is no native dependency) is checked, and the functions (Cause, UnknownTag).
        assert_eq!(texts.len() as u32, T_BUILD + 6);
        assert!(texts[T_CAUSE as usize].is_none() && texts[T_DECODE as usize + 1].is_none());
    }
}
