//! What the soak runs against: one embedded `timd`, or several nodes in cluster mode on a
//! Redis of their own. Every node allows two Web instances (so a third login kicks the
//! earliest) and forgets an away slot after 5 s (so the away map turns over within a sample).

use std::net::SocketAddr;

use tempfile::TempDir;

use crate::cluster::nodes::{cluster_flags, Nodes};
use crate::redis::{Persistence, Redis};
use crate::timd::{Common, Timd};

pub struct Target {
    pub nodes: Nodes,
    pub redis: Option<Redis>,
    _dir: TempDir,
}

impl Target {
    pub async fn start(common: &Common, cluster: bool, nodes: usize, lease_ms: u32) -> Target {
        let dir = tempfile::Builder::new()
            .prefix("tim-bench-soak-")
            .tempdir()
            .expect("temp dir");
        let redis = cluster.then(|| Redis::start(dir.path(), Persistence::Aof));
        let mut flags: Vec<String> = ["--web-instances", "2", "--resume-grace-ms", "5000"]
            .map(String::from)
            .to_vec();
        if let Some(r) = &redis {
            flags.extend(cluster_flags(&r.url(), lease_ms));
        }
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        let count = if cluster { nodes.max(1) } else { 1 };
        Target {
            nodes: Nodes::start_with(common, count, &flags).await,
            redis,
            _dir: dir,
        }
    }

    pub fn timds(&self) -> &[Timd] {
        &self.nodes.nodes
    }

    pub fn urls(&self) -> Vec<String> {
        self.nodes.urls()
    }

    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.timds().iter().map(|n| n.addr).collect()
    }
}
