//! Logs to the JavaScript console: a tiny `tracing` subscriber.
//!
//! The driver logs attempts (URLs without their query), sockets opened and closed,
//! reconnects, fallback switches and stops; tokens, headers and query strings never.

use std::fmt::{self, Write};
use std::sync::atomic::{AtomicU8, Ordering};

use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};
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

/// The level in force: 0 off, 1 error … 5 trace.
static LEVEL: AtomicU8 = AtomicU8::new(0);

fn rank(level: Level) -> u8 {
    match level {
        Level::ERROR => 1,
        Level::WARN => 2,
        Level::INFO => 3,
        Level::DEBUG => 4,
        Level::TRACE => 5,
    }
}

/// Forwards Tether's logs at `level` and above to the console (`console.debug`, `.info`,
/// `.warn`, `.error`); `None` turns them off. May be called again to change the level.
/// False when another `tracing` subscriber was installed already (it gets the logs).
///
/// ```no_run
/// tether_web::log::set_level(Some(tracing::Level::INFO));
/// ```
pub fn set_level(level: Option<Level>) -> bool {
    LEVEL.store(level.map_or(0, rank), Ordering::Relaxed);
    let ours = tracing::subscriber::set_global_default(Console).is_ok()
        || tracing::dispatcher::get_default(|d| d.is::<Console>());
    tracing::callsite::rebuild_interest_cache();
    ours
}

struct Console;

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

/// `value` in decimal.
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

impl Subscriber for Console {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        rank(*metadata.level()) <= LEVEL.load(Ordering::Relaxed)
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
        match *event.metadata().level() {
            Level::ERROR => console_error(&text),
            Level::WARN => console_warn(&text),
            Level::INFO => console_info(&text),
            _ => console_debug(&text),
        }
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}

#[cfg(test)]
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
