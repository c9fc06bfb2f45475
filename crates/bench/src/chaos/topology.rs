//! The Redis a chaos run's nodes share: one server (its kill is a restart from its
//! append-only file), a primary with a replica behind three Sentinels (its kill is a
//! failover: the replica is promoted, the old primary comes back as a replica), or a Redis
//! Cluster of three primaries with a replica each (a shard's primary killed is that shard's
//! failover; a pause is one shard's; subscriptions are cut on every shard).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tim_test_support::{ClusterGroup, SentinelGroup};

use crate::redis::{Persistence, Redis};

/// Which Redis `--sentinel` / `--redis-cluster` asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Single,
    Sentinel,
    Cluster,
}

pub enum Topology {
    Single(Redis),
    Sentinel(SentinelGroup),
    Cluster(ClusterGroup),
}

impl Topology {
    pub fn start(dir: &Path, kind: Kind) -> Topology {
        match kind {
            Kind::Single => Topology::Single(Redis::start(dir, Persistence::AofAlways)),
            Kind::Sentinel => Topology::Sentinel(SentinelGroup::start()),
            Kind::Cluster => Topology::Cluster(ClusterGroup::start()),
        }
    }

    /// What `timd --redis` gets.
    pub fn url(&self) -> String {
        match self {
            Topology::Single(r) => r.url(),
            Topology::Sentinel(g) => g.url(),
            Topology::Cluster(g) => g.url(),
        }
    }

    pub fn describe(&self) -> &'static str {
        match self {
            Topology::Single(_) => "one Redis, AOF fsynced at every write (--appendfsync always)",
            Topology::Sentinel(_) => {
                "a Redis primary and its replica behind 3 Sentinels (AOF, appendfsync always)"
            }
            Topology::Cluster(_) => {
                "a Redis Cluster of 3 primaries with a replica each (node timeout 1 s, AOF, appendfsync always)"
            }
        }
    }

    /// The primaries' addresses now (one; one per shard in a Redis Cluster).
    pub fn primaries(&self) -> Vec<SocketAddr> {
        match self {
            Topology::Single(r) => vec![r.addr],
            Topology::Sentinel(g) => vec![loopback(g.primary_port())],
            Topology::Cluster(g) => g.primary_ports().into_iter().map(loopback).collect(),
        }
    }

    /// The primary a fault aimed at "the primary" hits: the only one, or the shard `pick`
    /// chooses (modulo the number of shards). None if no primary answers.
    fn primary(&self, pick: u64) -> Option<SocketAddr> {
        let all = self.primaries();
        (!all.is_empty()).then(|| all[pick_index(pick, all.len())])
    }

    /// `CLIENT PAUSE ms ALL` on the primary (of one shard, chosen by `pick`); what was
    /// paused, for the log.
    pub fn pause(&self, ms: u64, pick: u64) -> String {
        let Some(addr) = self.primary(pick) else {
            return ": no primary answered".into();
        };
        crate::redis::command(addr, &["CLIENT", "PAUSE", &ms.to_string(), "ALL"]);
        match self {
            Topology::Cluster(_) => format!(": the primary on {} for {ms} ms", addr.port()),
            _ => format!(" for {ms} ms"),
        }
    }

    /// `CLIENT KILL TYPE pubsub` on the primary, or on every server of a Redis Cluster
    /// (sharded subscriptions live on the shards' nodes).
    pub fn kill_subscriptions(&self) {
        let addrs: Vec<SocketAddr> = match self {
            Topology::Cluster(g) => g.servers.iter().map(|s| s.addr()).collect(),
            _ => self.primaries(),
        };
        for addr in addrs {
            crate::redis::command(addr, &["CLIENT", "KILL", "TYPE", "pubsub"]);
        }
    }

    /// kill -9 of the primary: one server starts again from its files after `down`; behind
    /// Sentinel the replica is promoted (waited for), then the old primary starts again and
    /// the Sentinels make it the new primary's replica; in a Redis Cluster the primary of
    /// the shard `pick` chooses is killed, its replica takes over (waited for), and the old
    /// one starts again and rejoins as its replica (waited for, in sync: the shard can fail
    /// over again). What happened, for the log.
    pub fn kill_primary(&mut self, down: Duration, pick: u64) -> String {
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
            Topology::Cluster(g) => {
                let ports = g.primary_ports();
                if ports.is_empty() {
                    return "no primary answered".into();
                }
                let old = ports[pick_index(pick, ports.len())];
                let new = g.fail_over_primary(old);
                std::thread::sleep(down);
                g.heal();
                format!("shard failed over {old} -> {new}, {old} back as its replica")
            }
        }
    }

    /// The Redis logs worth keeping when a run fails (the servers' own directories go
    /// with them; the single server's log is already in the run's directory).
    pub fn log_paths(&self) -> Vec<PathBuf> {
        match self {
            Topology::Single(_) => Vec::new(),
            Topology::Sentinel(g) => {
                let mut logs: Vec<PathBuf> = g.servers.iter().map(|s| s.log_path()).collect();
                logs.extend(g.log_paths());
                logs
            }
            Topology::Cluster(g) => g.log_paths(),
        }
    }
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Which of `n` targets a fault's `pick` hits.
fn pick_index(pick: u64, n: usize) -> usize {
    (pick % n as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::pick_index;

    #[test]
    fn every_shard_can_be_picked_and_none_beyond() {
        let hit: std::collections::BTreeSet<usize> = (0..30).map(|p| pick_index(p, 3)).collect();
        assert_eq!(hit.into_iter().collect::<Vec<_>>(), vec![0, 1, 2]);
        assert_eq!(pick_index(u64::MAX, 1), 0);
    }
}
