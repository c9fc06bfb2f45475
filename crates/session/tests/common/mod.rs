//! What the session core's virtual-time suites share: draining its queues, the server's
//! `login_ok`, and a command's failure among the events.
#![allow(dead_code)] // each suite uses its own part

use tim_proto::{LoginOk, ServerFrame};
use tim_session::{Event, Io, OpId, SdkError, Session};

pub fn drain_io(s: &mut Session) -> Vec<Io> {
    std::iter::from_fn(|| s.poll_io()).collect()
}

pub fn drain_events(s: &mut Session) -> Vec<Event> {
    std::iter::from_fn(|| s.poll_event()).collect()
}

/// The server's answer to login `seq`: ticket `ticket`, a 25 s heartbeat, an hour to expiry.
pub fn login_ok(seq: u32, ticket: &str) -> ServerFrame {
    ServerFrame::LoginOk(LoginOk {
        seq,
        ticket: ticket.into(),
        heartbeat_ms: 25_000,
        expire_at: 2_000_000_000,
        expires_in: 3_600,
    })
}

/// The failure `op` settled with, among `events`.
pub fn failure(events: &[Event], op: OpId) -> SdkError {
    events
        .iter()
        .find_map(|e| match e {
            Event::Done {
                op: o,
                result: Err(e),
            } if *o == op => Some(e.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("op {op} did not fail: {events:?}"))
}
