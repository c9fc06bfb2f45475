//! What the soak runs against: one embedded `timd`, or several nodes in cluster mode on a
//! Redis of their own. Every node allows two Web instances (so a third login kicks the
//! earliest) and forgets an away slot after 5 s (so the away map turns over within a sample).

use std::net::SocketAddr;

use tempfile::TempDir;

use crate::redis::{Persistence, Redis};
use crate::timd::{Common, Timd};

pub struct Target {
    pub nodes: Vec<Timd>,
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
        let mut extra: Vec<String> = ["--web-instances", "2", "--resume-grace-ms", "5000"]
            .map(String::from)
            .to_vec();
        if let Some(r) = &redis {
            extra.extend([
                "--redis".into(),
                r.url(),
                "--lease-ms".into(),
                lease_ms.to_string(),
            ]);
        }
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        let count = if cluster { nodes.max(1) } else { 1 };
        let mut started = Vec::with_capacity(count);
        for i in 0..count {
            let node_dir = dir.path().join(format!("node-{i}"));
            std::fs::create_dir_all(&node_dir).expect("node dir");
            let common = Common {
                timd: common.timd.clone(),
                log: common
                    .log
                    .as_ref()
                    .map(|l| l.with_file_name(format!("soak-node-{i}.log"))),
            };
            let mut timd = Timd::new(&common, &node_dir, &extra);
            timd.start().await;
            started.push(timd);
        }
        Target {
            nodes: started,
            redis,
            _dir: dir,
        }
    }

    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(Timd::url).collect()
    }

    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.nodes.iter().map(|n| n.addr).collect()
    }
}
