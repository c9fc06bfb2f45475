//! The Redis a chaos run's nodes share: one server (its kill is a restart from its
//! append-only file), or a primary with a replica behind three Sentinels (its kill is a
//! failover: the replica is promoted, the old primary comes back as a replica).

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use tim_test_support::SentinelGroup;

use crate::redis::{Persistence, Redis};

pub enum Topology {
    Single(Redis),
    Sentinel(SentinelGroup),
}

impl Topology {
    pub fn start(dir: &Path, sentinel: bool) -> Topology {
        if sentinel {
            Topology::Sentinel(SentinelGroup::start())
        } else {
            Topology::Single(Redis::start(dir, Persistence::AofAlways))
        }
    }

    /// What `timd --redis` gets.
    pub fn url(&self) -> String {
        match self {
            Topology::Single(r) => r.url(),
            Topology::Sentinel(g) => g.url(),
        }
    }

    pub fn describe(&self) -> &'static str {
        match self {
            Topology::Single(_) => "one Redis, AOF fsynced at every write (--appendfsync always)",
            Topology::Sentinel(_) => {
                "a Redis primary and its replica behind 3 Sentinels (AOF, appendfsync always)"
            }
        }
    }

    /// The primary's address now.
    pub fn primary(&self) -> SocketAddr {
        match self {
            Topology::Single(r) => r.addr,
            Topology::Sentinel(g) => SocketAddr::from(([127, 0, 0, 1], g.primary_port())),
        }
    }

    /// One command on the primary.
    pub fn command(&self, args: &[&str]) -> Option<String> {
        crate::redis::command(self.primary(), args)
    }

    /// kill -9 of the primary: one server starts again from its files after `down`; behind
    /// Sentinel the replica is promoted (waited for), then the old primary starts again and
    /// the Sentinels make it the new primary's replica. What happened, for the log.
    pub fn kill_primary(&mut self, down: Duration) -> String {
        match self {
            Topology::Single(r) => {
                r.kill9_and_restart(down);
                "restarted from its AOF".into()
            }
            Topology::Sentinel(g) => {
                let old = g.primary_port();
                let new = g.fail_over();
                if let Some(s) = g.servers.iter_mut().find(|s| s.port() == old) {
                    s.start_again();
                }
                format!("failed over {old} -> {new}, {old} back as a replica")
            }
        }
    }
}
