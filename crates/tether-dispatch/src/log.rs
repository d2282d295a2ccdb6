//! Where the dispatcher's logs go.
//!
//! With the `tracing` feature (the default) the dispatcher logs through
//! [`tracing`](https://docs.rs/tracing), with structured fields. Without it, each log line
//! goes to the driver's [`Handles::log`](crate::Handles::log) as a static message and a
//! few named [`Value`]s (numbers and short names, never formatted here): no `tracing`, no
//! `core::fmt` machinery, for a build where every byte counts (the npm package's wasm).
//! `debug` and `trace` lines are then compiled in only with `debug_assertions`, as
//! `tracing`'s `release_max_level_info` does. Tokens and query strings are never logged
//! either way (URLs go through [`redact`](crate::transport::redact)).
//!
//! ```
//! use tether_dispatch::log::{Level, Value};
//! assert!(Level::Warn < Level::Info);
//! let fields = [("transport", Value::Number(3)), ("cause", Value::Text("refused"))];
//! assert_eq!(fields.len(), 2);
//! ```

/// How much a line matters, most important first (`Error < Warn < … < Trace`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Something failed that the user should know about.
    Error = 1,
    /// A connection problem (the client goes on).
    Warn,
    /// The connection's life: attempts, sockets opened and closed, stops.
    Info,
    /// Details: state changes, hints, tokens.
    Debug,
    /// Every frame, poll and timer.
    Trace,
}

/// A field's value in a line without `tracing`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Value<'a> {
    /// A count, an id, milliseconds, a code.
    Number(u64),
    /// A number best read in hexadecimal (a client id).
    Hex(u64),
    /// A yes or no.
    Bool(bool),
    /// A stable name (a kind of cause, a state) or a redacted URL, a close reason.
    Text(&'a str),
}

#[cfg(not(feature = "tracing"))]
pub(crate) mod light {
    use super::Value;

    /// What a field's value is written as in a line without `tracing`: its stable name
    /// (the kind of a cause, a failure, a stop) rather than its `Display` text.
    pub(crate) trait Light {
        fn light(&self) -> Value<'_>;
    }

    macro_rules! numbers {
        ($($t:ty),*) => {$(
            impl Light for $t {
                fn light(&self) -> Value<'_> {
                    Value::Number(*self as u64)
                }
            }
        )*};
    }
    numbers!(u8, u16, u32, u64, usize);

    impl Light for bool {
        fn light(&self) -> Value<'_> {
            Value::Bool(*self)
        }
    }

    impl Light for str {
        fn light(&self) -> Value<'_> {
            Value::Text(self)
        }
    }

    impl Light for String {
        fn light(&self) -> Value<'_> {
            Value::Text(self)
        }
    }

    impl<T: Light + ?Sized> Light for &T {
        fn light(&self) -> Value<'_> {
            (**self).light()
        }
    }

    impl Light for tether_core::State {
        fn light(&self) -> Value<'_> {
            Value::Text(self.as_str())
        }
    }

    impl Light for tether_core::Cause {
        fn light(&self) -> Value<'_> {
            Value::Text(self.kind.as_str())
        }
    }

    impl Light for tether_core::TransportFailure {
        fn light(&self) -> Value<'_> {
            Value::Text(self.kind().as_str())
        }
    }

    impl Light for tether_core::TetherError {
        fn light(&self) -> Value<'_> {
            Value::Text(self.kind())
        }
    }

    impl Light for tether_core::TerminalReason {
        fn light(&self) -> Value<'_> {
            Value::Text(self.kind())
        }
    }

    impl Light for tether_core::DropReason {
        fn light(&self) -> Value<'_> {
            Value::Text(match self {
                tether_core::DropReason::Overflow => "overflow",
                tether_core::DropReason::Expired => "expired",
                tether_core::DropReason::Stopped => "stopped",
                tether_core::DropReason::Unconfirmed => "unconfirmed",
                _ => "dropped",
            })
        }
    }

    impl Light for tether_core::Timer {
        fn light(&self) -> Value<'_> {
            use tether_core::Timer;
            // `Debug`'s names, which this build does without.
            Value::Text(match self {
                Timer::Backoff => "Backoff",
                Timer::ConnectTimeout => "ConnectTimeout",
                Timer::TokenFetch => "TokenFetch",
                Timer::TokenRefresh => "TokenRefresh",
                Timer::Heartbeat => "Heartbeat",
                Timer::PongDeadline => "PongDeadline",
                Timer::Liveness => "Liveness",
                Timer::Ack => "Ack",
                Timer::PollReceive => "PollReceive",
                Timer::PollRequest => "PollRequest",
                Timer::UpgradeProbe => "UpgradeProbe",
                Timer::CloseLinger => "CloseLinger",
                Timer::QueueExpiry => "QueueExpiry",
                Timer::Stable => "Stable",
            })
        }
    }
}

/// Logs at `tracing`'s macro `$level` (with the `tracing` feature) or through the
/// driver's `Handles::log` at `$light` (without it). Takes `tracing`'s syntax: fields
/// (`key = value`, `key = %value`, `%key`, `key`), then the message. Used inside
/// `impl<H: Handles> Dispatcher<H>` only (it names `H`).
#[cfg(feature = "tracing")]
macro_rules! log {
    ($level:ident, $light:ident, $($t:tt)*) => {
        tracing::$level!($($t)*)
    };
}

#[cfg(not(feature = "tracing"))]
macro_rules! log {
    ($level:ident, $light:ident, $($t:tt)*) => {{
        let level = $crate::log::Level::$light;
        if (level <= $crate::log::Level::Info || cfg!(debug_assertions)) && H::logs(level) {
            light!(level; []; $($t)*);
        }
    }};
}

#[cfg(not(feature = "tracing"))]
macro_rules! light {
    ($level:ident; [$($f:tt)*]; $message:literal) => {
        H::log($level, $message, &[$($f)*])
    };
    ($level:ident; [$($f:tt)*]; $key:ident = % $value:expr, $($rest:tt)*) => {
        light!($level; [$($f)* (stringify!($key), $crate::log::light::Light::light(&$value)),]; $($rest)*)
    };
    ($level:ident; [$($f:tt)*]; $key:ident = $value:expr, $($rest:tt)*) => {
        light!($level; [$($f)* (stringify!($key), $crate::log::light::Light::light(&$value)),]; $($rest)*)
    };
    ($level:ident; [$($f:tt)*]; % $key:ident, $($rest:tt)*) => {
        light!($level; [$($f)* (stringify!($key), $crate::log::light::Light::light(&$key)),]; $($rest)*)
    };
    ($level:ident; [$($f:tt)*]; $key:ident, $($rest:tt)*) => {
        light!($level; [$($f)* (stringify!($key), $crate::log::light::Light::light(&$key)),]; $($rest)*)
    };
}

macro_rules! warn {
    ($($t:tt)*) => { log!(warn, Warn, $($t)*) };
}
macro_rules! info {
    ($($t:tt)*) => { log!(info, Info, $($t)*) };
}
macro_rules! debug {
    ($($t:tt)*) => { log!(debug, Debug, $($t)*) };
}
macro_rules! trace {
    ($($t:tt)*) => { log!(trace, Trace, $($t)*) };
}
