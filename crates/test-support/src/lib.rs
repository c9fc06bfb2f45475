//! What the native test suites share (`crates/server/tests`, `crates/client/tests`,
//! `crates/timd-bin/tests`), so each suite's `tests/common` only adds what is its own.
//!
//! - [`app`]: the test app (SDKAppID, key, UserSigs) and the wait bound.
//! - [`server`]: a real `timd` served in the test's own process ([`Server`]).
//! - [`ws`]: a raw WebSocket client speaking the frames ([`Ws`], [`send`], [`recv`], ...),
//!   and the round-trip barrier ([`round_trip`], [`expect_untouched`]).
//! - [`redis`]: a real `redis-server` process ([`RedisServer`]).
//! - [`node`]: a real `timd` binary process ([`TimdNode`]); [`bin`] finds the binary.
//! - [`receiver`]: a State.StateChange callback receiver that records what it gets.

pub mod app;
pub mod bin;
pub mod haproxy;
pub mod http;
pub mod node;
pub mod ports;
pub mod process;
pub mod receiver;
pub mod redis;
pub mod sentinel;
pub mod server;
pub mod wait;
pub mod ws;

pub use app::{now, sig, APP, KEY, WAIT};
pub use bin::timd_bin;
pub use haproxy::Haproxy;
pub use node::{TimdNode, TimdNodeBuilder};
pub use receiver::{Answer, Receiver};
pub use redis::RedisServer;
pub use sentinel::{ClusterGroup, SentinelGroup, SlotMove};
pub use server::{EmbeddedProbe, Server};
pub use wait::eventually;
pub use ws::{
    expect_untouched, login, login_ok, recv, recv_close, recv_close_within, recv_error, round_trip,
    send, send_text, Ws,
};
