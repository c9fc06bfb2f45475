//! Free loopback ports for the process fixtures.

use std::net::TcpListener;

/// A loopback port nothing listens on right now. Another process may take it before the
/// caller binds it: the fixtures retry on "address in use".
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}
