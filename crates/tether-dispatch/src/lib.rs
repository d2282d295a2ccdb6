//! # tether-dispatch
//!
//! What every Tether driver shares, without any I/O: the transport traits a driver's
//! network implements ([`transport`]).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod transport;
