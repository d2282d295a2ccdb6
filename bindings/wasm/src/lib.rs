//! # tether-wasm
//!
//! The WebAssembly of the npm package `tether-wasm` (and so of `@tether/client`): the
//! Tether core ([`tether_core::Connection`]) and its dispatcher
//! ([`tether_dispatch::Dispatcher`]) behind plain `extern "C"` exports of numbers and
//! bytes (`tw_*`), for the package's driver written in JavaScript (`js/driver.js`: the
//! sockets, requests, timers and promises). No wasm-bindgen, js-sys or web-sys: every
//! decision about the connection is the core's, as in the native and Rust browser
//! drivers; the JavaScript only does I/O and turns the answers into objects.
//!
//! What crosses: the options (numbers in `f64` slots, strings and payloads as bytes,
//! packed by `js/options.js` and checked by the core), every input a driver feeds the
//! dispatcher, and every command, event and completion, drained into one byte buffer in
//! the wasm's memory; JavaScript owns every handle (tasks, sockets, waiters) as a `u32`.
//! `src/ffi/` documents each export; `js/wire.js` is the other side of the layout.
//!
//! [`names`] and [`texts`] are the numbers both sides agree on (the options' field codes
//! and the error messages' templates), with tests against the core on every target.
#![warn(missing_docs)]
// The docs link to items of the wasm build; on other targets those do not exist.
#![cfg_attr(
    not(all(target_arch = "wasm32", target_os = "unknown")),
    allow(rustdoc::broken_intra_doc_links)
)]

pub mod names;
pub mod texts;

#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
mod ffi;
