//! The listening socket, with a listen backlog sized for a reconnect storm.
//!
//! When a node restarts, every client it had reconnects within a second or two. Connections
//! the accept loop has not taken yet wait in the kernel's accept queue, whose length is the
//! listen backlog; past it the kernel drops the SYN and that client waits for its SYN retry
//! (1 s, then 2 s, ...). std, mio and so `tokio::net::TcpListener::bind` listen with 128, which
//! a restart of a node holding thousands of sessions overflows at once.

use std::io;
use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpSocket};

/// Asked of `listen(2)` by default: more than any restart storm needs. Linux caps it at
/// `net.core.somaxconn` (4096 by default since 5.4), which `serve` reports when it does.
pub const DEFAULT_LISTEN_BACKLOG: u32 = 65_535;

/// Where Linux keeps the cap on every listen backlog.
const SOMAXCONN: &str = "/proc/sys/net/core/somaxconn";

/// Binds `addr` (with `SO_REUSEADDR`, as `TcpListener::bind` does, so a restart can bind
/// while the old sockets sit in TIME_WAIT) and listens with `backlog`.
pub fn bind(addr: SocketAddr, backlog: u32) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    #[cfg(not(windows))]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(backlog)
}

/// The kernel's cap on listen backlogs (`net.core.somaxconn`), where it can be read.
pub fn kernel_max_backlog() -> Option<u32> {
    std::fs::read_to_string(SOMAXCONN).ok()?.trim().parse().ok()
}

/// The backlog in effect when `asked` is requested under a kernel cap of `cap`.
pub fn effective_backlog(asked: u32, cap: Option<u32>) -> u32 {
    cap.map_or(asked, |cap| asked.min(cap))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kernel_cap_bounds_the_backlog() {
        assert_eq!(effective_backlog(65_535, Some(4096)), 4096);
        assert_eq!(effective_backlog(1000, Some(4096)), 1000);
        assert_eq!(effective_backlog(1000, None), 1000);
    }
}
