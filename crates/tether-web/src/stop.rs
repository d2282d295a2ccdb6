//! Why a connection stopped, in words.
//!
//! The core's `Display` of [`TerminalReason`] quotes the close reason with `{:?}`, and
//! `Debug` of a string brings the Unicode printable tables (16 kB) into a wasm build.
//! This is the same text with plain quotes; once the core's `Display` does without
//! `{:?}`, this can go.

use tether_core::{Cause, TerminalReason};

fn cause(c: &Cause) -> String {
    let mut text = match (c.code, c.status) {
        (Some(code), _) => format!("close {code}"),
        (None, Some(status)) => format!("HTTP {status}"),
        (None, None) => "no code".to_owned(),
    };
    if !c.reason.is_empty() {
        text.push_str(" (");
        text.push_str(&c.reason);
        text.push(')');
    }
    text
}

/// `reason` in words, as the core says it, without `Debug` formatting.
///
/// ```
/// use tether_core::TerminalReason;
/// let reason = TerminalReason::UserClosed { code: 1000, reason: "bye".into() };
/// assert_eq!(tether_web::stop::describe(&reason), "closed by the user (code 1000, \"bye\")");
/// ```
#[must_use]
pub fn describe(reason: &TerminalReason) -> String {
    match reason {
        TerminalReason::UserClosed { code, reason } => {
            format!("closed by the user (code {code}, \"{reason}\")")
        }
        TerminalReason::AuthRejected(c) => format!("authentication rejected: {}", cause(c)),
        TerminalReason::Replaced(c) => format!(
            "replaced by a newer connection of the same user: {}",
            cause(c)
        ),
        TerminalReason::Fatal(c) => format!("fatal: {}", cause(c)),
        TerminalReason::GaveUp { attempts, last } => format!(
            "gave up after {attempts} failed attempts; last: {}",
            cause(last)
        ),
        _ => "stopped".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::describe;
    use tether_core::{Cause, TerminalReason};

    #[test]
    fn says_what_the_core_says() {
        let cause = Cause {
            code: Some(4409),
            status: None,
            reason: "newer".into(),
        };
        for reason in [
            TerminalReason::UserClosed {
                code: 1000,
                reason: "bye".into(),
            },
            TerminalReason::AuthRejected(cause.clone()),
            TerminalReason::Replaced(cause.clone()),
            TerminalReason::Fatal(Cause::default()),
            TerminalReason::GaveUp {
                attempts: 3,
                last: Cause {
                    status: Some(503),
                    ..Cause::default()
                },
            },
        ] {
            assert_eq!(describe(&reason), reason.to_string());
        }
    }
}
