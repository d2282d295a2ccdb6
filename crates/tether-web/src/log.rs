//! Logs to the JavaScript console.
//!
//! The driver logs attempts (URLs without their query), sockets opened and closed,
//! reconnects, fallback switches and stops; tokens, headers and query strings never.
//!
//! With the `tracing` feature (the default) the logs go through `tracing`, and
//! [`set_level`] installs a tiny subscriber that forwards them to the console. Without it
//! (the npm package's build) the dispatcher and the driver hand each line here as a
//! static message and a few numbers and names (see `tether_dispatch::log`), written out
//! without `core::fmt`: values read as their stable names (`cause=refused`, not
//! `cause=close 1006 (…)`), and `debug` and `trace` lines exist only with
//! `debug_assertions`.

use std::sync::atomic::{AtomicU8, Ordering};

pub use tether_dispatch::log::Level;
use wasm_bindgen::prelude::*;

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_namespace = console, js_name = debug)]
    fn console_debug(line: &str);
    #[wasm_bindgen(js_namespace = console, js_name = info)]
    fn console_info(line: &str);
    #[wasm_bindgen(js_namespace = console, js_name = warn)]
    fn console_warn(line: &str);
    #[wasm_bindgen(js_namespace = console, js_name = error)]
    fn console_error(line: &str);
}

/// The level in force: 0 off, 1 error … 5 trace (`Level as u8`).
static LEVEL: AtomicU8 = AtomicU8::new(0);

/// Forwards Tether's logs at `level` and above to the console (`console.debug`, `.info`,
/// `.warn`, `.error`); `None` turns them off. May be called again to change the level.
/// False when another `tracing` subscriber was installed already (it gets the logs).
///
/// ```no_run
/// tether_web::log::set_level(Some(tether_web::log::Level::Info));
/// ```
pub fn set_level(level: Option<Level>) -> bool {
    LEVEL.store(level.map_or(0, |l| l as u8), Ordering::Relaxed);
    #[cfg(feature = "tracing")]
    {
        let ours = tracing::subscriber::set_global_default(traced::Console).is_ok()
            || tracing::dispatcher::get_default(|d| d.is::<traced::Console>());
        tracing::callsite::rebuild_interest_cache();
        ours
    }
    #[cfg(not(feature = "tracing"))]
    true
}

/// Writes `text` to the console method of `level`.
fn write(level: Level, text: &str) {
    match level {
        Level::Error => console_error(text),
        Level::Warn => console_warn(text),
        Level::Info => console_info(text),
        _ => console_debug(text),
    }
}

/// Whether lines at `level` are wanted.
#[cfg(not(feature = "tracing"))]
pub(crate) fn enabled(level: Level) -> bool {
    level as u8 <= LEVEL.load(Ordering::Relaxed)
}

/// Writes one line, `tether: message key=value …`, with no `core::fmt`.
#[cfg(not(feature = "tracing"))]
pub(crate) fn line(
    level: Level,
    message: &str,
    fields: &[(&'static str, tether_dispatch::log::Value<'_>)],
) {
    use tether_dispatch::log::Value;
    let mut text = String::from("tether: ");
    text.push_str(message);
    for (key, value) in fields {
        text.push(' ');
        text.push_str(key);
        text.push('=');
        match *value {
            Value::Number(n) => tether_core::text::push_decimal(&mut text, n),
            Value::Hex(n) => tether_core::text::push_hex(&mut text, n),
            Value::Bool(b) => text.push_str(if b { "true" } else { "false" }),
            Value::Text(t) => text.push_str(t),
            _ => text.push('?'),
        }
    }
    write(level, &text);
}

/// `value` in decimal (128 bits: what `tracing` may record).
#[cfg(feature = "tracing")]
fn push_decimal(out: &mut String, mut value: u128) {
    let mut digits = [0u8; 39];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    for &d in &digits[start..] {
        out.push(char::from(d));
    }
}

/// The `tracing` subscriber.
#[cfg(feature = "tracing")]
mod traced {
    use std::fmt::{self, Write};
    use std::sync::atomic::Ordering;

    use tracing::field::{Field, Visit};
    use tracing::level_filters::LevelFilter;
    use tracing::span::{Attributes, Id, Record};
    use tracing::{Event, Metadata, Subscriber};

    use super::{push_decimal, write, Level, LEVEL};

    fn ours(level: tracing::Level) -> Level {
        match level {
            tracing::Level::ERROR => Level::Error,
            tracing::Level::WARN => Level::Warn,
            tracing::Level::INFO => Level::Info,
            tracing::Level::DEBUG => Level::Debug,
            tracing::Level::TRACE => Level::Trace,
        }
    }

    pub(super) struct Console;

    #[derive(Default)]
    struct Line {
        message: String,
        fields: String,
    }

    impl Visit for Line {
        fn record_str(&mut self, field: &Field, value: &str) {
            if field.name() == "message" {
                self.message.push_str(value);
            } else {
                let _ = write!(self.fields, " {}={}", field.name(), value);
            }
        }

        // Integers only: float formatting is large in wasm, and the driver logs none.
        fn record_f64(&mut self, field: &Field, value: f64) {
            self.record_i64(field, value as i64);
        }

        fn record_i64(&mut self, field: &Field, value: i64) {
            let _ = write!(self.fields, " {}={}", field.name(), value);
        }

        fn record_u64(&mut self, field: &Field, value: u64) {
            let _ = write!(self.fields, " {}={}", field.name(), value);
        }

        // The same text as `tracing`'s default (its `Debug`), without 128-bit formatting.
        fn record_i128(&mut self, field: &Field, value: i128) {
            let _ = write!(self.fields, " {}=", field.name());
            if value < 0 {
                self.fields.push('-');
            }
            push_decimal(&mut self.fields, value.unsigned_abs());
        }

        fn record_u128(&mut self, field: &Field, value: u128) {
            let _ = write!(self.fields, " {}=", field.name());
            push_decimal(&mut self.fields, value);
        }

        fn record_bool(&mut self, field: &Field, value: bool) {
            let _ = write!(self.fields, " {}={}", field.name(), value);
        }

        fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
            if field.name() == "message" {
                let _ = write!(self.message, "{value:?}");
            } else {
                let _ = write!(self.fields, " {}={:?}", field.name(), value);
            }
        }
    }

    impl Subscriber for Console {
        fn enabled(&self, metadata: &Metadata<'_>) -> bool {
            ours(*metadata.level()) as u8 <= LEVEL.load(Ordering::Relaxed)
                && metadata.target().starts_with("tether")
        }

        fn max_level_hint(&self) -> Option<LevelFilter> {
            Some(match LEVEL.load(Ordering::Relaxed) {
                0 => LevelFilter::OFF,
                1 => LevelFilter::ERROR,
                2 => LevelFilter::WARN,
                3 => LevelFilter::INFO,
                4 => LevelFilter::DEBUG,
                _ => LevelFilter::TRACE,
            })
        }

        fn new_span(&self, _: &Attributes<'_>) -> Id {
            Id::from_u64(1)
        }

        fn record(&self, _: &Id, _: &Record<'_>) {}

        fn record_follows_from(&self, _: &Id, _: &Id) {}

        fn event(&self, event: &Event<'_>) {
            let mut line = Line::default();
            event.record(&mut line);
            let text = format!("tether: {}{}", line.message, line.fields);
            write(ours(*event.metadata().level()), &text);
        }

        fn enter(&self, _: &Id) {}

        fn exit(&self, _: &Id) {}
    }
}

#[cfg(all(test, feature = "tracing"))]
mod tests {
    use wasm_bindgen_test::wasm_bindgen_test;

    #[wasm_bindgen_test]
    fn decimals_read_as_formatted() {
        for value in [0, 7, 10, 1234567890, u128::from(u64::MAX) + 1, u128::MAX] {
            let mut text = String::new();
            super::push_decimal(&mut text, value);
            assert_eq!(text, value.to_string());
        }
    }
}
