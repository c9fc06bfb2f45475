//! Sessions held at scale: `--sessions` logged-in users (one Web session each, so no policy
//! kicks) over `--hold-nodes` nodes on one Redis, driven by `--workers` client processes.
//! Prints timd's and Redis's memory per session, the steady load on Redis (heartbeats and
//! node rounds), then the restart run, and how far the same setup would go.

use std::time::{Duration, Instant};

use crate::redis::Redis;
use crate::sys::mib;
use crate::timd::Common;

use super::nodes::{cluster_flags, Load, Nodes};
use super::workers::Workers;
use super::{restarts, HoldArgs};

/// This machine's memory, for "how far": from /proc/meminfo.
fn mem_total() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            let line = m.lines().find(|l| l.starts_with("MemTotal:"))?.to_owned();
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .map_or(0, |kib| kib * 1024)
}

pub async fn run(common: &Common, redis: &Redis, args: &HoldArgs, lease_ms: u32) -> bool {
    let n = args.sessions.unwrap_or(100_000);
    // Every process may open 20,000 files at most: ≤ 16,700 sessions per node and per client.
    let per_process = 16_700;
    let node_count = args.hold_nodes.unwrap_or(6).max(n.div_ceil(per_process));
    let worker_count = args.workers.unwrap_or(6).max(n.div_ceil(per_process));
    let nodes_flags = cluster_flags(&redis.url(), lease_ms);
    let mut nodes = Nodes::start(common, node_count, &nodes_flags).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle_rss = nodes.rss();
    let mem0 = redis.info_u64("memory", "used_memory");
    let per_node: Vec<usize> = (0..node_count)
        .map(|i| (0..n).filter(|g| g % node_count == i).count())
        .collect();
    println!(
        "  hold: {n} sessions (one Web user each) on {node_count} nodes, {worker_count} client processes \
         ({}-{} sessions each), lease {lease_ms} ms (node rounds every {} ms), heartbeat 25 s (timd's default)",
        n / worker_count,
        n.div_ceil(worker_count),
        lease_ms / 6
    );
    let ips = args
        .ips_per_worker
        .unwrap_or_else(|| n.div_ceil(worker_count).div_ceil(5_000));
    let mut workers = Workers::spawn(worker_count, n, &nodes.urls(), ips, args.login_concurrency);
    match (workers.binds[0].first(), workers.binds[worker_count - 1].last()) {
        (Some(first), Some(last)) => println!(
            "    client source addresses: {first} … {last} ({ips} per process, bound before connect)"
        ),
        _ => println!("    client source address: 127.0.0.1 (the kernel picks; no bind)"),
    }
    let t0 = Instant::now();
    let (ok_logins, failed) = workers.ready().await;
    let wall = t0.elapsed();
    println!(
        "    {ok_logins} logged in ({failed} failed) in {:.1} s: {:.0} logins/s over {node_count} nodes",
        wall.as_secs_f64(),
        ok_logins as f64 / wall.as_secs_f64()
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let online = nodes.metric("timd_sessions_online", "").await as usize;
    let conns = nodes.metric("timd_ws_connections", "").await as usize;
    let full_rss = nodes.rss();
    let mem1 = redis.info_u64("memory", "used_memory");
    let status = workers.status().await;
    let per = |b: u64| b as f64 / 1024.0 / n as f64;
    println!(
        "    nodes report {online} sessions online, {conns} connections; clients report {} connected",
        status.connected
    );
    println!(
        "    timd RSS: {:.0} MiB idle ({node_count} nodes), {:.0} MiB held: {:.2} KiB per session (sum / sessions), \
         {:.2} KiB per session above idle (target <= 8 KiB)",
        mib(idle_rss),
        mib(full_rss),
        per(full_rss),
        per(full_rss.saturating_sub(idle_rss))
    );
    println!(
        "    Redis used_memory: {:.1} MiB -> {:.1} MiB: {:.0} B per session (target <= 1 KiB); Redis RSS {:.0} MiB",
        mib(mem0),
        mib(mem1),
        mem1.saturating_sub(mem0) as f64 / n as f64,
        mib(redis.rss().unwrap_or(0))
    );
    println!(
        "    client processes' RSS: {:.0} MiB: {:.2} KiB per session (tim-client: a task, a session core, a socket each)",
        mib(status.rss),
        per(status.rss)
    );

    // Steady state: heartbeats go to the nodes only; the node rounds (one script per node
    // every lease/6) are the Redis load.
    let window = Duration::from_millis(lease_ms as u64).max(Duration::from_secs(args.window_secs));
    let renew0 = nodes.metric("timd_lease_renewals", "result=\"ok\"").await;
    let failed0 = nodes
        .metric("timd_lease_renewals", "result=\"failed\"")
        .await;
    let load = Load::measure(redis, &nodes, tokio::time::sleep(window)).await;
    let (secs, cmds, evalsha, rcpu, tcpu) = (
        load.secs,
        load.commands,
        load.evalsha,
        load.redis_cpu,
        load.nodes_cpu,
    );
    let renewals = nodes.metric("timd_lease_renewals", "result=\"ok\"").await - renew0;
    let renew_failed = nodes
        .metric("timd_lease_renewals", "result=\"failed\"")
        .await
        - failed0;
    println!(
        "    steady load over {secs:.0} s (>= 1 lease): Redis {:.0} commands/s (total_commands_processed; \
         {:.0} EVALSHA/s), {:.1} node lease renewals/s ({renew_failed} failed), Redis CPU {:.1}% of a core, \
         timd CPU {:.1}% of a core (all nodes: heartbeats + rounds)",
        cmds as f64 / secs,
        evalsha as f64 / secs,
        renewals / secs,
        rcpu * 100.0 / secs,
        tcpu * 100.0 / secs
    );

    let mut ok = failed == 0 && status.connected == n && online == n;
    if !args.no_restart {
        ok &= restarts::run(
            &mut nodes,
            &mut workers,
            &per_node,
            &args.modes,
            Duration::from_secs(args.timeout_secs),
            Duration::from_millis(lease_ms as u64 / 3),
        )
        .await;
    }

    // How far: what each session costs on this machine, and what runs out first.
    let per_session = full_rss.saturating_sub(idle_rss) as f64 / n as f64
        + mem1.saturating_sub(mem0) as f64 / n as f64
        + status.rss as f64 / n as f64;
    let redis_core = rcpu / secs;
    println!(
        "  how far: {:.1} KiB per session all told (timd + Redis + the client processes) -> {:.0} sessions in \
         this machine's {:.0} GiB; Redis at {:.1}% of its one core for {n} sessions -> ~{:.0} sessions \
         before the steady load alone saturates it (lease {lease_ms} ms); 1,000,000 sessions need >= {} nodes \
         and >= {} client processes at 20,000 files each",
        per_session / 1024.0,
        mem_total() as f64 / per_session,
        mem_total() as f64 / 1073741824.0,
        redis_core * 100.0,
        if redis_core > 0.0 { n as f64 / redis_core } else { f64::INFINITY },
        1_000_000usize.div_ceil(per_process),
        1_000_000usize.div_ceil(per_process)
    );
    if !ok {
        println!("  timd logs: {}", nodes.logs());
    }
    workers.quit().await;
    ok
}
