//! The client login session, sans-IO (in the manner of `quinn-proto`).
//!
//! [`Session`] holds no socket, no clock and no JS. A driver feeds it commands
//! ([`Session::login`], [`Session::logout`], [`Session::destroy`]), socket happenings
//! ([`Session::handle_open`], [`Session::handle_frame`], [`Session::handle_close`]) and the time
//! ([`Session::handle_timeout`]), then drains what to do ([`Session::poll_io`]), what to tell
//! the page ([`Session::poll_event`]) and when to wake it next ([`Session::poll_timeout`]).
//! The browser SDK and the native client are two such drivers; tests drive it in virtual time.
//!
//! Every command returns an [`OpId`]; its outcome always arrives later as [`Event::Done`], so a
//! driver can settle every Promise from one place.

#![no_std]
extern crate alloc;

mod backoff;
mod session;

pub use session::*;
