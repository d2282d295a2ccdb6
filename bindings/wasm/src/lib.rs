//! # tether-wasm
//!
//! The wasm-bindgen exports of Tether for JavaScript (browsers and Node): the
//! `TetherClient` class over [`tether_web::Client`], `setLogLevel`, and the self-test's
//! criteria and verdicts (the npm package's `selfTest` measures, the core judges). Options are read
//! into a [`tether_core::Config`] and checked; a wrong type throws a `TypeError`, an
//! unacceptable value a `RangeError`, each naming the option. Nothing here unwraps:
//! every export returns a `Result`, so no input reaches a panic.
//!
//! The TypeScript declarations (`TetherOptions`, `TetherEventMap`, `TetherMetrics`, ...)
//! are in this crate's `typescript_custom_section`, and the generated `.d.ts` carries
//! every method's documentation.
#![warn(missing_docs)]
// The docs link to items of the browser build; on other targets those do not exist.
#![cfg_attr(
    not(all(target_arch = "wasm32", target_os = "unknown")),
    allow(rustdoc::broken_intra_doc_links)
)]

pub mod names;

#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
mod convert;
#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
mod errors;
#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
mod exports;
#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
mod handoff;
#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
mod options;
#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
mod selftest;

#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
pub use exports::{set_log_level, TetherClient};
#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
pub use selftest::self_test_criteria;
