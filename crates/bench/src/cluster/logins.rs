//! Logins/s from one client process: an embedded node (no Redis) against cluster mode with
//! 1, 2 and 3 nodes on one Redis, in the same run; the client spreads its logins over the
//! nodes round-robin. CPU per login is timd's (all nodes) and Redis's.

use std::time::Instant;

use crate::logins::{destroy_all, log_in_all};
use crate::redis::Redis;
use crate::timd::Common;

use super::nodes::{cluster_flags, Nodes};

/// One configuration's first-time and returning login rates.
struct Rates {
    first: f64,
    returning: f64,
    /// timd CPU per login (all nodes, both rounds), µs.
    cpu_us: f64,
}

pub async fn run(
    common: &Common,
    redis: &Redis,
    lease_ms: u32,
    max_nodes: usize,
    n: usize,
    concurrency: usize,
) {
    println!(
        "  logins/s: {n} Web users per configuration, {concurrency} in flight, one client process; \
         first-time accounts, then the same users again (returning) after a logout"
    );
    let embedded = configuration(common, None, lease_ms, 1, n, concurrency, "e").await;
    for nodes in 1..=max_nodes {
        let r = configuration(
            common,
            Some(redis),
            lease_ms,
            nodes,
            n,
            concurrency,
            &format!("c{nodes}-"),
        )
        .await;
        println!(
            "    cluster x{nodes}: per node {:.2}x embedded (first-time), {:.2}x (returning); total {:.2}x / {:.2}x (target per node >= 0.5x)",
            r.first / nodes as f64 / embedded.first,
            r.returning / nodes as f64 / embedded.returning,
            r.first / embedded.first,
            r.returning / embedded.returning,
        );
        // Every node, Redis and the client share this machine's cores: the wall-clock
        // ratio per node falls with the node count whatever a node costs. What a node
        // would do on a core of its own is the CPU cost per login.
        println!(
            "    cluster x{nodes}: timd CPU per login {:.1} µs vs embedded {:.1} µs: a node on a core of its own \
             does {:.2}x embedded's logins/s",
            r.cpu_us, embedded.cpu_us, embedded.cpu_us / r.cpu_us
        );
    }
}

async fn configuration(
    common: &Common,
    redis: Option<&Redis>,
    lease_ms: u32,
    nodes: usize,
    n: usize,
    concurrency: usize,
    prefix: &str,
) -> Rates {
    let flags = redis.map_or(Vec::new(), |r| cluster_flags(&r.url(), lease_ms));
    let cluster = Nodes::start(common, nodes, &flags).await;
    let urls = cluster.urls();
    let name = match redis {
        None => "embedded (no --redis)".to_owned(),
        Some(_) => format!("cluster x{nodes} on one Redis"),
    };
    let mut rates = [0.0; 2];
    let mut cpu_total = 0.0;
    for (round, what) in ["first-time", "returning"].iter().enumerate() {
        let (cpu0, redis0) = (cluster.cpu(), redis.and_then(Redis::cpu));
        let t0 = Instant::now();
        let clients = log_in_all(&urls, prefix, n, concurrency, round).await;
        let wall = t0.elapsed();
        let cpu = cluster.cpu().saturating_sub(cpu0);
        let redis_cpu = redis
            .and_then(Redis::cpu)
            .zip(redis0)
            .map(|(b, a)| b.saturating_sub(a));
        rates[round] = n as f64 / wall.as_secs_f64();
        cpu_total += cpu.as_secs_f64();
        println!(
            "    {name}, {what}: {:.0} logins/s ({:.2} s); timd CPU {:.1} µs/login{}",
            rates[round],
            wall.as_secs_f64(),
            cpu.as_secs_f64() * 1e6 / n as f64,
            redis_cpu.map_or(String::new(), |c| format!(
                ", Redis CPU {:.1} µs/login",
                c.as_secs_f64() * 1e6 / n as f64
            ))
        );
        destroy_all(clients, concurrency).await;
    }
    Rates {
        first: rates[0],
        returning: rates[1],
        cpu_us: cpu_total * 1e6 / (2 * n) as f64,
    }
}
