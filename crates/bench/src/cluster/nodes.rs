//! Several `timd` nodes in cluster mode on one Redis, each on its own loopback port and in
//! its own directory, measured together (memory, CPU, `/metrics`).

use std::time::Duration;

use tempfile::TempDir;

use crate::http::metric_sum;
use crate::redis::Redis;
use crate::timd::{Common, Timd};

pub struct Nodes {
    pub nodes: Vec<Timd>,
    _dir: TempDir,
}

impl Nodes {
    /// Starts `n` nodes with `extra` flags (`--redis URL --lease-ms N` for cluster mode,
    /// nothing for an embedded node) and one Web instance per user (dual policy), one after
    /// another, each listening when this returns.
    pub async fn start(common: &Common, n: usize, extra: &[String]) -> Nodes {
        let mut flags: Vec<&str> = extra.iter().map(String::as_str).collect();
        flags.extend(["--web-instances", "1", "--login-policy", "dual"]);
        Nodes::start_with(common, n, &flags).await
    }

    /// Starts `n` nodes with exactly `flags` beside the bench's own (see [`Timd::start`]).
    pub async fn start_with(common: &Common, n: usize, flags: &[&str]) -> Nodes {
        let dir = tempfile::Builder::new()
            .prefix("tim-bench-nodes-")
            .tempdir()
            .expect("temp dir");
        let mut nodes = Vec::with_capacity(n);
        for i in 0..n {
            let node_dir = dir.path().join(format!("node-{i}"));
            std::fs::create_dir_all(&node_dir).expect("node dir");
            let common = Common {
                timd: common.timd.clone(),
                log: common
                    .log
                    .as_ref()
                    .map(|l| l.with_file_name(format!("node-{i}.log"))),
            };
            let mut timd = Timd::new(&common, &node_dir, flags);
            timd.start().await;
            nodes.push(timd);
        }
        Nodes { nodes, _dir: dir }
    }

    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(Timd::url).collect()
    }

    pub fn rss(&self) -> u64 {
        self.nodes.iter().filter_map(Timd::rss).sum()
    }

    pub fn cpu(&self) -> Duration {
        self.nodes.iter().filter_map(Timd::cpu).sum()
    }

    /// The sum over the nodes of metric `name` (samples whose labels contain `label`).
    pub async fn metric(&self, name: &str, label: &str) -> f64 {
        let mut sum = 0.0;
        for n in &self.nodes {
            if let Some(text) = n.metrics().await {
                sum += metric_sum(&text, name, label);
            }
        }
        sum
    }

    /// Where each node writes its log (to point at when something went wrong).
    pub fn logs(&self) -> String {
        self.nodes
            .iter()
            .map(|n| n.log.display().to_string())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// The flags of a cluster node on `redis_url`.
pub fn cluster_flags(redis_url: &str, lease_ms: u32) -> Vec<String> {
    vec![
        "--redis".into(),
        redis_url.into(),
        "--lease-ms".into(),
        lease_ms.to_string(),
    ]
}

/// Redis's and the nodes' load over a window.
pub struct Load {
    pub secs: f64,
    /// Commands Redis processed (`total_commands_processed`: a script and each command it
    /// calls).
    pub commands: u64,
    pub evalsha: u64,
    /// CPU seconds of Redis and of all the nodes.
    pub redis_cpu: f64,
    pub nodes_cpu: f64,
}

impl Load {
    /// Measures `redis` and `nodes` while `during` runs (a sleep: the steady window).
    pub async fn measure(redis: &Redis, nodes: &Nodes, during: impl std::future::Future) -> Load {
        let cmds0 = redis.info_u64("stats", "total_commands_processed");
        let evalsha0 = redis.calls("evalsha");
        let rcpu0 = redis.cpu();
        let tcpu0 = nodes.cpu();
        let t = std::time::Instant::now();
        during.await;
        Load {
            secs: t.elapsed().as_secs_f64(),
            commands: redis.info_u64("stats", "total_commands_processed") - cmds0,
            evalsha: redis.calls("evalsha") - evalsha0,
            redis_cpu: redis
                .cpu()
                .zip(rcpu0)
                .map_or(0.0, |(b, a)| b.saturating_sub(a).as_secs_f64()),
            nodes_cpu: nodes.cpu().saturating_sub(tcpu0).as_secs_f64(),
        }
    }
}
