//! `--parts liveness`: what idle sessions cost, per-node liveness (this build's `timd`)
//! against per-session leases (`--old-timd`: a build from before, e.g. commit 34c5648), in
//! one run on the same machine: Redis commands/s and Redis CPU with 10k, 50k and 100k idle
//! sessions held, node CPU per idle session, cross-node kick delivery, and how long a
//! `kill -9`'d node's slots stay taken (the dead-node bound).

use std::time::{Duration, Instant};

use serde_json::json;
use tim_client::{Client, Config, Platform};

use crate::http;
use crate::redis::{Persistence, Redis};
use crate::stats::summary;
use crate::sys::{sig, APP};
use crate::timd::Common;

use super::nodes::{cluster_flags, Load, Nodes};
use super::workers::Workers;

/// One design's figures.
struct Figures {
    /// Per size: (sessions, Redis commands/s, Redis CPU %, nodes' CPU %, node CPU µs per
    /// second per session, EVALSHA/s).
    idle: Vec<(usize, f64, f64, f64, f64, f64)>,
    /// Cross-node kick delivery (p50, p99) ms.
    kick: Option<(f64, f64)>,
    /// kill -9 to the slot free, as seen from another node's REST.
    dead: Option<Duration>,
}

pub struct LivenessArgs<'a> {
    pub new: &'a Common,
    pub old: Option<&'a Common>,
    pub sizes: &'a [usize],
    pub lease_ms: u32,
    pub window: Duration,
    pub kicks: usize,
    pub login_concurrency: usize,
}

pub async fn run(args: LivenessArgs<'_>) -> bool {
    let mut designs = vec![("per-node (this build)", args.new)];
    if let Some(old) = args.old {
        designs.insert(0, ("per-session (--old-timd)", old));
    } else {
        println!("  liveness: no --old-timd given: this build only");
    }
    println!(
        "  liveness: idle sessions {:?}, lease {} ms, window {:.0} s per size; {} cross-node kicks; kill -9 bound",
        args.sizes,
        args.lease_ms,
        args.window.as_secs_f64(),
        args.kicks
    );
    let mut ok = true;
    let mut all = Vec::new();
    for (name, common) in &designs {
        println!("  == {name}: {}", common.binary().display());
        let mut figures = Figures {
            idle: Vec::new(),
            kick: None,
            dead: None,
        };
        for &n in args.sizes {
            match idle(common, n, &args).await {
                Some(row) => figures.idle.push(row),
                None => ok = false,
            }
        }
        figures.kick = kick(common, args.lease_ms, args.kicks).await;
        figures.dead = dead_bound(common, args.lease_ms).await;
        ok &= figures.kick.is_some() && figures.dead.is_some();
        all.push((name, figures));
    }
    println!("  liveness summary (lease {} ms):", args.lease_ms);
    for (name, f) in &all {
        for (n, cmds, rcpu, tcpu, per, evalsha) in &f.idle {
            println!(
                "    {name:<26} {n:>7} idle sessions: Redis {cmds:>8.0} commands/s ({evalsha:.0} EVALSHA/s), \
                 Redis CPU {rcpu:>5.1}% of a core, nodes {tcpu:>5.1}% of a core = {per:.2} µs CPU per second per idle session"
            );
        }
        match f.kick {
            Some((p50, p99)) => {
                println!("    {name:<26} cross-node kick delivery p50 {p50:.2} ms, p99 {p99:.2} ms")
            }
            None => println!("    {name:<26} cross-node kicks: FAILED"),
        }
        match f.dead {
            Some(d) => println!(
                "    {name:<26} kill -9 of a node -> its slot free on another node after {:.2} s",
                d.as_secs_f64()
            ),
            None => println!("    {name:<26} dead-node bound: FAILED"),
        }
    }
    ok
}

/// Holds `n` idle sessions (one Web user each) over enough nodes and client processes, and
/// measures Redis and the nodes over the window.
async fn idle(
    common: &Common,
    n: usize,
    args: &LivenessArgs<'_>,
) -> Option<(usize, f64, f64, f64, f64, f64)> {
    let dir = tempfile::Builder::new()
        .prefix("tim-bench-redis-")
        .tempdir()
        .expect("temp dir");
    let redis = Redis::start(dir.path(), Persistence::None);
    let per_process = 16_700;
    let count = n.div_ceil(per_process).max(2);
    let nodes = Nodes::start(common, count, &cluster_flags(&redis.url(), args.lease_ms)).await;
    let ips = n.div_ceil(count).div_ceil(5_000);
    let mut workers = Workers::spawn(count, n, &nodes.urls(), ips, args.login_concurrency, false);
    let t0 = Instant::now();
    let (logged_in, failed) = workers.ready().await;
    println!(
        "    {n} sessions on {count} nodes: {logged_in} logged in ({failed} failed) in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    // Settle (the logins' own tail), then the window.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let load = Load::measure(&redis, &nodes, tokio::time::sleep(args.window)).await;
    let status = workers.status().await;
    let rate = |x: f64| x / load.secs;
    println!(
        "      over {:.0} s: Redis {:.0} commands/s, {:.0} EVALSHA/s, Redis CPU {:.2}% of a core, \
         nodes {:.2}% of a core; clients connected {}",
        load.secs,
        rate(load.commands as f64),
        rate(load.evalsha as f64),
        rate(load.redis_cpu * 100.0),
        rate(load.nodes_cpu * 100.0),
        status.connected
    );
    workers.quit().await;
    (failed == 0 && status.connected == n).then(|| {
        (
            n,
            rate(load.commands as f64),
            rate(load.redis_cpu * 100.0),
            rate(load.nodes_cpu * 100.0),
            rate(load.nodes_cpu * 1e6) / n as f64,
            rate(load.evalsha as f64),
        )
    })
}

/// Cross-node kick delivery on 3 nodes: (p50, p99) ms.
async fn kick(common: &Common, lease_ms: u32, kicks: usize) -> Option<(f64, f64)> {
    let dir = tempfile::Builder::new()
        .prefix("tim-bench-redis-")
        .tempdir()
        .expect("temp dir");
    let redis = Redis::start(dir.path(), Persistence::None);
    let nodes = Nodes::start(common, 3, &cluster_flags(&redis.url(), lease_ms)).await;
    let urls = nodes.urls();
    let mut pairs = Vec::new();
    for i in 0..3 {
        pairs.push(
            crate::kick::KickPair::new(&urls[i], &urls[(i + 1) % 3], format!("live-cross-{i}"))
                .await,
        );
    }
    let mut delivery = Vec::with_capacity(kicks);
    for round in 0..kicks + 30 {
        match pairs[round % 3].kick().await {
            Ok(s) if round >= 30 => delivery.push(s.delivery),
            Ok(_) => {}
            Err(e) => {
                eprintln!("    {e}");
                return None;
            }
        }
    }
    let (p50, _, p99, _, _) = summary(&mut delivery);
    Some((p50, p99))
}

/// `kill -9` of the node holding a user's only Web session: how long until another node
/// sees the user offline (its slot free). Polled every 10 ms through REST.
async fn dead_bound(common: &Common, lease_ms: u32) -> Option<Duration> {
    let dir = tempfile::Builder::new()
        .prefix("tim-bench-redis-")
        .tempdir()
        .expect("temp dir");
    let redis = Redis::start(dir.path(), Persistence::None);
    let mut nodes = Nodes::start(common, 2, &cluster_flags(&redis.url(), lease_ms)).await;
    let urls = nodes.urls();
    let probe = Client::new(
        &urls[0],
        Config::new(APP, Platform::Web, "dead-probe-tab".into()),
    );
    probe.login("dead-probe", &sig("dead-probe")).await.ok()?;
    let other = nodes.nodes[1].addr;
    let path = format!(
        "/v4/openim/query_online_status?{}",
        crate::apps::admin_query()
    );
    let body = json!({"To_Account": ["dead-probe"]}).to_string();
    let status = || async {
        let answer = http::post(other, &path, &body).await?;
        let v: serde_json::Value = serde_json::from_str(&answer).ok()?;
        v["QueryResult"][0]["Status"].as_str().map(str::to_owned)
    };
    if status().await.as_deref() != Some("Online") {
        eprintln!("    dead-node bound: the probe is not online");
        return None;
    }
    let killed = nodes.nodes[0].stop(libc::SIGKILL).await;
    let limit = Duration::from_millis(u64::from(lease_ms) * 3);
    loop {
        if status().await.as_deref() == Some("Offline") {
            return Some(killed.elapsed());
        }
        if killed.elapsed() > limit {
            eprintln!("    dead-node bound: still online after {limit:?}");
            return None;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
