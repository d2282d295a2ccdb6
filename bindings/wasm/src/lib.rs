//! # tether-wasm
//!
//! The wasm-bindgen exports of Tether for JavaScript (browsers and Node): the
//! `TetherClient` class over [`tether_web::Client`], `setLogLevel`, and the self-test's
//! criteria and verdicts (the npm package's `selfTest` measures, the core judges). The
//! wrapper (`js/options.js`) reads the options, checks their types and packs them into
//! numbers; they are made into a [`tether_core::Config`] here and checked by the core. A
//! wrong type throws a `TypeError`, an unacceptable value a `RangeError`, each naming the
//! option (the core's violations are put in words by the wrapper). Nothing here unwraps:
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

/// talc in place of the standard library's dlmalloc: smaller code, the same memory per
/// idle client (BENCHMARKS.md, "Size of the npm package").
#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
#[global_allocator]
static TALC: talc::wasm::WasmDynamicTalc = talc::wasm::new_wasm_dynamic_allocator();
pub mod texts;

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
