//! The wire protocol between the SDK (or any native client) and `timd`, plus the public
//! names and codes both sides must agree on.
//!
//! Frames are JSON text messages on one WebSocket at `/ws`. Enums are *externally* tagged
//! (`{"login":{...}}`, `"ping"`) on purpose: serde deserializes that shape without buffering,
//! which keeps the wasm SDK small (no `Content` machinery) and parsing cheap on the server.
#![no_std]
extern crate alloc;

pub mod codes;
pub mod frame;
pub mod names;

pub use codes::*;
pub use frame::*;
pub use names::*;
