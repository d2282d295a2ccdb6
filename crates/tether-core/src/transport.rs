//! The transport traits every driver implements (WebSocket and HTTP polling), shared by
//! the native and the browser drivers. Futures are `Send` on native targets and need not
//! be in the browser ([`MaybeSend`]).

/// `Send` on native targets; nothing on `wasm32-unknown-unknown`, where JavaScript
/// values cannot cross threads.
#[cfg(not(all(target_arch = "wasm32", target_os = "unknown")))]
pub trait MaybeSend: Send {}
#[cfg(not(all(target_arch = "wasm32", target_os = "unknown")))]
impl<T: Send + ?Sized> MaybeSend for T {}

/// `Send` on native targets; nothing on `wasm32-unknown-unknown`, where JavaScript
/// values cannot cross threads.
#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
pub trait MaybeSend {}
#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
impl<T: ?Sized> MaybeSend for T {}
